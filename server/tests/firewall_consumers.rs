//! Firewalls consuming our lists, unmodified, in a network namespace this test creates: the
//! Debian `crowdsec-firewall-bouncer` (ipset mode) and `crowdsec-custom-bouncer` on the
//! decision stream, `nft -f` on `format=nft`, `ipset restore` on `format=ipset`, and real
//! fail2ban feeding incidents through `contrib/fail2ban`.
//!
//! Everything runs inside the namespace through `nsenter`: the real `ostracon` binary, the
//! bouncers, fail2ban, and the tools that read the kernel's sets. The bouncers come from
//! `apt-get download` unpacked under `target/consumers/root` (scripts/test does it), never
//! from the `crowdsec` package, whose set-up registers online and fails offline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ostracon_tests::{Process, TempDir, integration_required};
use serde_json::{Value, json};

const TOKEN: &str = "ost_firewall-consumers-admin";
/// The node's HTTP address inside the namespace (which is empty, so any port is free).
const LISTEN: &str = "127.0.0.1:18080";

/// Where scripts/test unpacks the bouncer packages.
fn consumers_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/consumers/root")
}

/// A network namespace of our own, held open by a sleeping process.
struct Namespace {
    holder: Process,
    path: String,
}

impl Namespace {
    /// Creates it, or says why it cannot (no CAP_SYS_ADMIN, no `unshare`).
    fn create(dir: &Path) -> Result<Self, String> {
        let mut command = Command::new("unshare");
        command.args(["-n", "--", "sleep", "3600"]);
        let holder = Process::spawn("namespace holder", command, &dir.join("holder.log"))
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let path = format!("/proc/{}/ns/net", holder.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        // The holder has entered its namespace once its link differs from ours.
        let ours = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        while std::fs::read_link(&path).ok().is_none_or(|link| link == ours) {
            if Instant::now() > deadline {
                return Err(format!("unshare -n did not create a namespace: {}", holder.output()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let namespace = Self { holder, path };
        namespace.ok(&["ip", "link", "set", "lo", "up"]);
        Ok(namespace)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net={}", self.path)).arg("--").args(args);
        command.env_remove("OSTRACON_CONFIG").env_remove("OSTRACON_URL").env_remove("OSTRACON_TOKEN");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?} in the namespace failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn spawn(&self, name: &str, args: &[&str], log: &Path) -> Process {
        Process::spawn(name, self.command(args), log).unwrap()
    }

    /// One HTTP call to the node, by curl inside the namespace: (status, body).
    fn http(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, String) {
        let url = format!("http://{LISTEN}{path}");
        let mut args = vec!["curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method];
        let auth = token.map(|token| format!("Authorization: Bearer {token}"));
        if let Some(auth) = &auth {
            args.extend(["-H", auth]);
        }
        let body = body.map(|body| body.to_string());
        if let Some(body) = &body {
            args.extend(["-H", "Content-Type: application/json", "--data", body]);
        }
        args.push(&url);
        let out = self.ok(&args);
        let (body, status) = out.rsplit_once('\n').unwrap();
        (status.trim().parse().unwrap(), body.to_owned())
    }

    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, text) = self.http(method, path, Some(TOKEN), body);
        assert!((200..300).contains(&status), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn member(&self, set: &str, value: &str) -> bool {
        self.run(&["ipset", "test", set, value]).status.success()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.holder.signal("KILL");
    }
}

/// Polls `check` for up to 30 s (the bouncers poll every second here).
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The namespace, or the reason it cannot be had: a failure in CI, a skip by hand.
fn namespace_or_skip(dir: &Path) -> Option<Namespace> {
    let missing: Vec<&str> = ["unshare", "nsenter", "ipset", "nft", "curl", "fail2ban-server", "dig"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
        })
        .collect();
    let bouncer = consumers_root().join("usr/bin/crowdsec-firewall-bouncer");
    let reason = if !missing.is_empty() {
        Some(format!("missing {missing:?}"))
    } else if !bouncer.exists() {
        Some(format!("no {} (scripts/test unpacks it)", bouncer.display()))
    } else {
        None
    };
    let namespace = match reason {
        Some(reason) => Err(reason),
        None => Namespace::create(dir),
    };
    match namespace {
        Ok(namespace) => Some(namespace),
        Err(reason) if integration_required() => panic!("firewall consumer test cannot run: {reason}"),
        Err(reason) => {
            eprintln!("skipping the firewall consumer test: {reason}");
            None
        }
    }
}

/// Makes and starts a node inside the namespace, with `extra` appended to its configuration.
fn start_node(namespace: &Namespace, dir: &Path, extra: &str) -> Process {
    let data = dir.join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_ostracon"))
        .env_remove("OSTRACON_CONFIG")
        .env("OSTRACON_ADMIN_TOKEN", TOKEN)
        .args(["init", "--data", data.to_str().unwrap(), "--domain", "ops.example", "--http", LISTEN])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let config = data.join("ostracon.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(extra);
    std::fs::write(&config, text).unwrap();
    let node = namespace.spawn(
        "ostracon serve",
        &[env!("CARGO_BIN_EXE_ostracon"), "serve", "--config", config.to_str().unwrap()],
        &dir.join("node.log"),
    );
    eventually("the node to listen", || {
        namespace.run(&["curl", "-sf", "-o", "/dev/null", &format!("http://{LISTEN}/healthz")]).status.success()
    });
    node
}

fn token(namespace: &Namespace, name: &str, scope: &str) -> String {
    let created = namespace.admin("POST", "/v1/tokens", Some(json!({ "name": name, "scope": scope })));
    created["token"].as_str().unwrap().to_owned()
}

fn deny(namespace: &Namespace, value: &str) {
    namespace.admin("POST", "/v1/deny", Some(json!({ "value": value, "action": "block" })));
}

#[test]
fn firewalls_load_our_lists_unmodified() {
    let dir = TempDir::new("firewall-consumers");
    let Some(namespace) = namespace_or_skip(dir.path()) else { return };
    let _node = start_node(&namespace, dir.path(), "");
    let root = consumers_root();

    deny(&namespace, "192.0.2.7");
    deny(&namespace, "198.51.100.0/24");
    deny(&namespace, "2001:db8::7");
    namespace.admin("POST", "/v1/deny", Some(json!({ "value": "203.0.113.5", "action": "quarantine" })));

    // The firewall bouncer, ipset mode: it fills sets the operator made.
    namespace.ok(&["ipset", "create", "ostr-v4", "hash:net", "timeout", "300"]);
    namespace.ok(&["ipset", "create", "ostr-v6", "hash:net", "timeout", "300", "family", "inet6"]);
    let firewall_key = token(&namespace, "firewall", "bouncer");
    let firewall_yaml = dir.path().join("firewall.yaml");
    std::fs::write(
        &firewall_yaml,
        format!(
            "mode: ipset\nupdate_frequency: 1s\ndaemonize: false\nlog_mode: stdout\nlog_level: info\n\
             api_url: http://{LISTEN}/\napi_key: {firewall_key}\ndisable_ipv6: false\n\
             supported_decisions_types:\n  - ban\nblacklists_ipv4: ostr-v4\nblacklists_ipv6: ostr-v6\n\
             ipset_type: nethash\nprometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: 60601\n"
        ),
    )
    .unwrap();
    let firewall_bin = root.join("usr/bin/crowdsec-firewall-bouncer");
    let firewall = namespace.spawn(
        "crowdsec-firewall-bouncer",
        &[firewall_bin.to_str().unwrap(), "-c", firewall_yaml.to_str().unwrap()],
        &dir.path().join("firewall-bouncer.log"),
    );

    // The custom bouncer, calling a script with add/del.
    let calls = dir.path().join("custom-calls.txt");
    let script = dir.path().join("custom.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$1 $2 $3 $4\" >> {}\n", calls.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let custom_key = token(&namespace, "custom", "bouncer");
    let custom_yaml = dir.path().join("custom.yaml");
    std::fs::write(
        &custom_yaml,
        format!(
            "bin_path: {}\nfeed_via_stdin: false\ntotal_retries: 0\nscenarios_containing: []\n\
             scenarios_not_containing: []\norigins: []\nupdate_frequency: 1s\ncache_retention_duration: 1s\n\
             daemonize: false\nlog_mode: stdout\nlog_level: info\napi_url: http://{LISTEN}/\napi_key: {custom_key}\n\
             prometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: 60602\n",
            script.display()
        ),
    )
    .unwrap();
    let custom_bin = root.join("usr/bin/crowdsec-custom-bouncer");
    let custom = namespace.spawn(
        "crowdsec-custom-bouncer",
        &[custom_bin.to_str().unwrap(), "-c", custom_yaml.to_str().unwrap()],
        &dir.path().join("custom-bouncer.log"),
    );

    let read_calls = || std::fs::read_to_string(&calls).unwrap_or_default();
    eventually("the listed IPv4 address in the kernel set", || namespace.member("ostr-v4", "192.0.2.7"));
    eventually("the listed /24 in the kernel set", || namespace.member("ostr-v4", "198.51.100.200"));
    eventually("the listed IPv6 address in the kernel set", || namespace.member("ostr-v6", "2001:db8::7"));
    assert!(!namespace.member("ostr-v4", "203.0.113.5"), "a quarantined entry is no ban");
    assert!(!namespace.member("ostr-v4", "192.0.2.8"));
    let timeout = namespace.ok(&["ipset", "list", "ostr-v4"]);
    assert!(timeout.contains("198.51.100.0/24 timeout"), "{timeout}");
    eventually("the custom bouncer's add calls", || {
        let calls = read_calls();
        calls.contains("add 192.0.2.7 ") && calls.contains("add 198.51.100.0/24 ") && calls.contains("add 2001:db8::7 ")
    });
    assert!(read_calls().contains("ostracon/operator"), "{}", read_calls());

    // A delisting leaves the set and reaches the script as del.
    let (status, _) = namespace.http("DELETE", "/v1/deny?value=192.0.2.7", Some(TOKEN), None);
    assert_eq!(status, 204);
    eventually("the delisted address to leave the kernel set", || !namespace.member("ostr-v4", "192.0.2.7"));
    assert!(namespace.member("ostr-v4", "198.51.100.9"), "the rest stays");
    eventually("the custom bouncer's del call", || read_calls().contains("del 192.0.2.7 "));
    drop((firewall, custom));

    // nft: our transaction loads as is, and a rule of the operator's drops a listed source.
    let (status, nft) = namespace.http("GET", "/v1/blocklist?kind=ip&format=nft", None, None);
    assert_eq!(status, 200);
    let nft_file = dir.path().join("ostracon.nft");
    std::fs::write(&nft_file, &nft).unwrap();
    namespace.ok(&["nft", "-f", nft_file.to_str().unwrap()]);
    // Loading again replaces the contents in one transaction.
    namespace.ok(&["nft", "-f", nft_file.to_str().unwrap()]);
    namespace.ok(&["nft", "add chain inet ostracon input { type filter hook input priority filter - 5; }"]);
    namespace.ok(&["nft", "add rule inet ostracon input ip saddr @blocked4 drop"]);
    namespace.ok(&["nft", "add rule inet ostracon input ip6 saddr @blocked6 drop"]);
    let listed = namespace.ok(&["nft", "list set inet ostracon blocked4"]);
    assert!(listed.contains("198.51.100.0/24") && !listed.contains("192.0.2.7"), "{listed}");
    namespace.ok(&["ip", "addr", "add", "198.51.100.9/32", "dev", "lo"]);
    namespace.ok(&["ip", "addr", "add", "203.0.113.9/32", "dev", "lo"]);
    let from = |source: &str| {
        namespace
            .run(&[
                "curl",
                "-sf",
                "-m",
                "2",
                "-o",
                "/dev/null",
                "--interface",
                source,
                &format!("http://{LISTEN}/healthz"),
            ])
            .status
            .success()
    };
    assert!(from("203.0.113.9"), "an unlisted source reaches the node");
    assert!(!from("198.51.100.9"), "a listed source is dropped by the set");

    // ipset restore: fresh sets filled and swapped in, then loaded again over them.
    let (_, ipset) = namespace.http("GET", "/v1/blocklist?kind=ip&format=ipset", None, None);
    let ipset_file = dir.path().join("ostracon.ipset");
    std::fs::write(&ipset_file, &ipset).unwrap();
    for _ in 0..2 {
        let output =
            namespace.command(&["ipset", "restore"]).stdin(std::fs::File::open(&ipset_file).unwrap()).output().unwrap();
        assert!(output.status.success(), "ipset restore: {}", String::from_utf8_lossy(&output.stderr));
    }
    assert!(namespace.member("ostracon-v4", "198.51.100.9") && namespace.member("ostracon-v6", "2001:db8::7"));
    assert!(!namespace.member("ostracon-v4", "192.0.2.7"));
    let sets = namespace.ok(&["ipset", "list", "-n"]);
    assert!(!sets.contains("-new"), "the fresh sets are gone after the swap: {sets}");

    // fail2ban bans from a Prosody auth-failure line and the ban becomes a shared incident.
    let submit = token(&namespace, "fail2ban", "submit");
    let f2b = dir.path().join("fail2ban");
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/fail2ban");
    for sub in ["action.d", "filter.d"] {
        std::fs::create_dir_all(f2b.join(sub)).unwrap();
        for file in std::fs::read_dir(contrib.join(sub)).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, f2b.join(sub).join(file.file_name().unwrap())).unwrap();
        }
    }
    let run = f2b.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let log = run.join("prosody.log");
    std::fs::write(&log, "").unwrap();
    std::fs::write(
        f2b.join("fail2ban.conf"),
        format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {r}/fail2ban.log\nsocket = {r}/fail2ban.sock\n\
             pidfile = {r}/fail2ban.pid\ndbfile = :memory:\nsyslogsocket = auto\nallowipv6 = auto\ndbpurgeage = 1d\n",
            r = run.display()
        ),
    )
    .unwrap();
    std::fs::write(
        f2b.join("jail.local"),
        format!(
            "[DEFAULT]\nbackend = polling\nusedns = no\n[ostracon-prosody]\nenabled = true\nfilter = ostracon-prosody\n\
             logpath = {}\nmaxretry = 3\nfindtime = 10m\nbantime = 1h\n\
             action = ostracon[ostracon_url=\"http://{LISTEN}\", ostracon_token=\"{submit}\"]\n",
            log.display()
        ),
    )
    .unwrap();
    let conf = f2b.to_str().unwrap();
    let _fail2ban = namespace.spawn(
        "fail2ban-server",
        &["fail2ban-server", "-f", "-x", "-c", conf],
        &dir.path().join("fail2ban.out"),
    );
    eventually("fail2ban's jail to start", || {
        namespace.run(&["fail2ban-client", "-c", conf, "status", "ostracon-prosody"]).status.success()
    });
    let stamp =
        String::from_utf8(Command::new("date").env("LC_ALL", "C").arg("+%b %d %H:%M:%S").output().unwrap().stdout)
            .unwrap();
    let mut lines = String::new();
    for session in 1..=3 {
        lines.push_str(&format!(
            "{} c2s55d0b1d0a0f{session}\tinfo\tFailed authentication attempt (not-authorized) for user alice@ops.example from IP: 192.0.2.99\n",
            stamp.trim()
        ));
    }
    std::fs::write(&log, lines).unwrap();
    eventually("the banned address on our list", || {
        namespace.http("GET", "/v1/blocklist?kind=ip&format=txt", None, None).1.lines().any(|line| line == "192.0.2.99")
    });
    let incidents = namespace.admin("GET", "/v1/incidents", None);
    let text = incidents.to_string();
    assert!(text.contains("192.0.2.99") && text.contains("fail2ban jail ostracon-prosody: 3 failures"), "{text}");
    let _ = namespace.run(&["fail2ban-client", "-c", conf, "stop"]);
}

/// `dig` against the zone inside the namespace: the whole answer, as dig prints it.
/// Runs of blanks become one space, since dig aligns its columns with tabs or spaces.
fn dig(namespace: &Namespace, name: &str, rtype: &str) -> String {
    spaced(&namespace.ok(&["dig", "@127.0.0.1", "-p", "53", "+norecurse", "+time=2", "+tries=1", name, rtype]))
}

fn spaced(text: &str) -> String {
    text.lines().map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

fn status(answer: &str) -> &str {
    answer.split("status: ").nth(1).and_then(|rest| rest.split(',').next()).unwrap_or("none")
}

/// The name RFC 5782 clients ask for an IPv6 address.
fn nibbles(ip: &str, zone: &str) -> String {
    let ip: std::net::Ipv6Addr = ip.parse().unwrap();
    let hex = format!("{:032x}", u128::from(ip));
    let reversed: Vec<String> = hex.chars().rev().map(String::from).collect();
    format!("{}.{zone}", reversed.join("."))
}

#[test]
fn the_dnsbl_zone_answers_dig_and_follows_the_list() {
    let dir = TempDir::new("dnsbl");
    let Some(namespace) = namespace_or_skip(dir.path()) else { return };
    let _node = start_node(
        &namespace,
        dir.path(),
        "\n[dnsbl]\nlisten = \"127.0.0.1:53\"\nzone = \"bl.test\"\ndomain_zone = \"dbl.test\"\n\
         lookup_url = \"https://bl.ops.example\"\n",
    );
    deny(&namespace, "192.0.2.7");
    deny(&namespace, "198.51.100.0/24");
    deny(&namespace, "2001:db8::7");
    deny(&namespace, "spam.example");
    namespace.admin("POST", "/v1/deny", Some(json!({ "value": "203.0.113.5", "action": "quarantine" })));
    let listed = |answer: &str| status(answer) == "NOERROR" && answer.contains("IN A 127.0.0.2");
    let negative =
        |answer: &str| status(answer) == "NXDOMAIN" && answer.contains("IN SOA ns.bl.test. hostmaster.bl.test.");

    eventually("the zone to answer a listed address", || listed(&dig(&namespace, "7.2.0.192.bl.test", "A")));
    // Any address inside a listed block, an IPv6 address, and the domain zone.
    assert!(listed(&dig(&namespace, "200.100.51.198.bl.test", "A")));
    let v6 = dig(&namespace, &nibbles("2001:db8::7", "bl.test"), "A");
    assert!(listed(&v6), "{v6}");
    assert!(listed(&dig(&namespace, "spam.example.dbl.test", "A")));
    // Misses: NXDOMAIN with the SOA, so resolvers cache them.
    let miss = dig(&namespace, "8.2.0.192.bl.test", "A");
    assert!(negative(&miss), "{miss}");
    assert!(negative(&dig(&namespace, "5.113.0.203.bl.test", "A")), "a quarantined address is no listing");
    assert!(negative(&dig(&namespace, "not.an.address.bl.test", "A")));
    assert_eq!(status(&dig(&namespace, "ham.example.dbl.test", "A")), "NXDOMAIN");
    // TXT: why, and where to look.
    let txt = dig(&namespace, "7.2.0.192.bl.test", "TXT");
    assert!(
        txt.contains("Listed by ops.example (operator); see https://bl.ops.example/v1/lookup/ip/192.0.2.7"),
        "{txt}"
    );
    // RFC 5782 section 5's test entries.
    assert!(listed(&dig(&namespace, "2.0.0.127.bl.test", "A")));
    assert!(negative(&dig(&namespace, "1.0.0.127.bl.test", "A")));
    assert!(listed(&dig(&namespace, &nibbles("::ffff:7f00:2", "bl.test"), "A")));
    assert!(negative(&dig(&namespace, &nibbles("::ffff:7f00:1", "bl.test"), "A")));
    assert!(listed(&dig(&namespace, "test.dbl.test", "A")));
    assert_eq!(status(&dig(&namespace, "invalid.dbl.test", "A")), "NXDOMAIN");
    // The apex, and names outside our zones.
    let soa = dig(&namespace, "bl.test", "SOA");
    assert!(status(&soa) == "NOERROR" && soa.contains("flags: qr aa"), "{soa}");
    assert!(dig(&namespace, "bl.test", "NS").contains("IN NS ns.bl.test."));
    assert_eq!(status(&dig(&namespace, "example.com", "A")), "REFUSED");
    // Over TCP too.
    let tcp = spaced(&namespace.ok(&[
        "dig",
        "@127.0.0.1",
        "+tcp",
        "+norecurse",
        "+time=2",
        "+tries=1",
        "7.2.0.192.bl.test",
        "A",
    ]));
    assert!(listed(&tcp), "{tcp}");
    // Malformed or unusual queries get their defined codes, and the zone keeps answering.
    let no_question = spaced(&namespace.ok(&["dig", "@127.0.0.1", "+header-only", "+time=2", "+tries=1", "bl.test"]));
    assert_eq!(status(&no_question), "FORMERR", "{no_question}");
    let notify =
        spaced(&namespace.ok(&["dig", "@127.0.0.1", "+opcode=notify", "+time=2", "+tries=1", "bl.test", "SOA"]));
    assert_eq!(status(&notify), "NOTIMP", "{notify}");
    let chaos =
        spaced(&namespace.ok(&["dig", "@127.0.0.1", "-c", "CH", "+time=2", "+tries=1", "7.2.0.192.bl.test", "A"]));
    assert_eq!(status(&chaos), "REFUSED", "{chaos}");
    let edns1 = spaced(&namespace.ok(&[
        "dig",
        "@127.0.0.1",
        "+edns=1",
        "+noednsneg",
        "+time=2",
        "+tries=1",
        "7.2.0.192.bl.test",
        "A",
    ]));
    assert_eq!(status(&edns1), "BADVERS", "{edns1}");
    // Raw datagrams: five bytes are no query and get nothing; a header whose question does
    // not parse gets FORMERR with its id.
    let raw = namespace.ok(&[
        "python3",
        "-c",
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\n\
         s.sendto(b'\\x01\\x02\\x03\\x04\\x05', ('127.0.0.1', 53))\n\
         try:\n    s.recv(512); print('short: answered')\nexcept socket.timeout:\n    print('short: silent')\n\
         s.sendto(b'\\xbe\\xef\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x3fxx', ('127.0.0.1', 53))\n\
         r = s.recv(512); print('garbage:', r[:2].hex(), r[3] & 15)\n",
    ]);
    assert_eq!(raw.trim(), "short: silent\ngarbage: beef 1", "{raw}");
    assert!(listed(&dig(&namespace, "7.2.0.192.bl.test", "A")), "the zone answers after malformed queries");

    // A delisting and a new listing show in the zone as soon as they commit.
    let (code, _) = namespace.http("DELETE", "/v1/deny?value=192.0.2.7", Some(TOKEN), None);
    assert_eq!(code, 204);
    deny(&namespace, "192.0.2.8");
    eventually("the delisting in the zone", || negative(&dig(&namespace, "7.2.0.192.bl.test", "A")));
    eventually("the new listing in the zone", || listed(&dig(&namespace, "8.2.0.192.bl.test", "A")));
}
