//! The real `ostracon` binary end to end: `init`, `config check`, `serve`, the operator CLI
//! verbs, every published format, lookups, and `ostracon verify` — which must accept the real
//! node and reject a tampered snapshot, altered log leaves and a rewritten history.
//! Also: an acknowledged incident survives `kill -9`, and SIGTERM shuts down cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response};
use ostracon_tests::{Process, TempDir, free_port, wait_for_port};
use serde_json::{Value, json};

const TOKEN: &str = "ost_integration-admin-token";

fn ostracon() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ostracon"));
    command.env_remove("OSTRACON_CONFIG").env_remove("OSTRACON_URL").env_remove("OSTRACON_TOKEN");
    command
}

fn run(args: &[&str]) -> Output {
    ostracon().args(args).output().expect("run ostracon")
}

fn ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "ostracon {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

struct Node {
    dir: TempDir,
    config: PathBuf,
    address: SocketAddr,
    process: Option<Process>,
}

impl Node {
    fn init(label: &str) -> Self {
        let dir = TempDir::new(label);
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let data = dir.path().join("data");
        let output = ostracon()
            .env("OSTRACON_ADMIN_TOKEN", TOKEN)
            .args(["init", "--data", data.to_str().unwrap(), "--domain", "ops.example", "--http", &address.to_string()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains(TOKEN), "a token fixed by the environment is not printed");
        let config = data.join("ostracon.toml");
        Self { dir, config, address, process: None }
    }

    fn start(&mut self) {
        let mut command = ostracon();
        command.args(["serve", "--config", self.config.to_str().unwrap()]).env("RUST_LOG", "info");
        let log = self.dir.path().join(format!("serve-{}.log", self.process.is_some() as u8));
        let process = Process::spawn("ostracon serve", command, &log).unwrap();
        assert!(wait_for_port(self.address, Duration::from_secs(20)), "node did not start:\n{}", process.output());
        self.process = Some(process);
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn cli(&self, args: &[&str]) -> Value {
        let mut full: Vec<&str> = args.to_vec();
        let url = self.url();
        full.extend(["--url", &url, "--token", TOKEN]);
        serde_json::from_str(&ok(&full)).unwrap()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = raw_get(&format!("{}{path}", self.url()));
        (status, String::from_utf8(body).unwrap())
    }
}

fn verify(url: &str, checkpoint: &Path) -> Output {
    run(&["verify", url, "--checkpoint", checkpoint.to_str().unwrap()])
}

/// A plain HTTP/1.0 GET over std: status, headers, body (no chunking with HTTP/1.0).
fn raw_get(url: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    (status, headers, bytes[split + 4..].to_vec())
}

/// A proxy in front of a node that rewrites some responses, to play a dishonest publisher.
async fn start_proxy(upstream: String, tamper: fn(&str, Vec<u8>) -> Vec<u8>) -> SocketAddr {
    #[derive(Clone)]
    struct Proxy {
        upstream: String,
        tamper: fn(&str, Vec<u8>) -> Vec<u8>,
    }
    async fn forward(State(proxy): State<Proxy>, request: Request<Body>) -> Response<Body> {
        let path = request.uri().path_and_query().map_or("/".to_owned(), ToString::to_string);
        let (status, headers, body) = tokio::task::spawn_blocking({
            let url = format!("{}{path}", proxy.upstream);
            move || raw_get(&url)
        })
        .await
        .unwrap();
        let mut response = Response::builder().status(status);
        for (name, value) in headers {
            if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("transfer-encoding") {
                response = response.header(name, value);
            }
        }
        response.body(Body::from((proxy.tamper)(&path, body))).unwrap()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(forward).with_state(Proxy { upstream, tamper });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_end_to_end() {
    let mut node = Node::init("cli");
    let checked = ok(&["config", "check", "--config", node.config.to_str().unwrap()]);
    assert!(checked.contains(&format!("configuration ok: {}", node.config.display())), "{checked}");
    let defaults = run(&["config", "check"]);
    assert!(String::from_utf8_lossy(&defaults.stdout).contains("built-in defaults were checked"), "{defaults:?}");
    node.start();
    // `serve` runs with glibc's mmap threshold fixed, so a snapshot's memory is returned when
    // it is freed (the same process: it executed itself with the variable).
    let pid = node.process.as_ref().unwrap().id();
    let environment = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        environment.split(|&b| b == 0).any(|v| v == b"MALLOC_MMAP_THRESHOLD_=1048576"),
        "{}",
        String::from_utf8_lossy(&environment)
    );

    // Operator verbs through the CLI.
    let submitted = node.cli(&[
        "incident",
        "submit",
        "--offender",
        "192.0.2.7",
        "--offender",
        "198.51.100.0/24",
        "--offender",
        "bot@bad.example",
        "--offender",
        "spam.example",
        "--category",
        "muc-abuse",
        "--severity",
        "high",
        "--description",
        "join flood",
        "--share",
    ]);
    let id = submitted["id"].as_str().unwrap().to_owned();
    assert_eq!(submitted["listed"].as_array().unwrap().len(), 4);
    let second = node.cli(&["incident", "submit", "--offender", "203.0.113.9", "--category", "spam", "--ttl", "3600"]);
    node.cli(&["allow", "add", "192.0.2.200", "--note", "our monitoring"]);
    node.cli(&["deny", "add", "abuse.example", "--action", "quarantine"]);
    // The fingerprint operators compare: `key show` and /.well-known/ostracon say the same.
    let shown = ok(&["key", "show", "--config", node.config.to_str().unwrap()]);
    let (_, well_known) = node.get("/.well-known/ostracon");
    let well_known: Value = serde_json::from_str(&well_known).unwrap();
    let fingerprint = well_known["keys"][0]["fingerprint"].as_str().unwrap();
    assert!(shown.contains(&format!("fingerprint {fingerprint}")), "{shown}\n{well_known}");
    // Errors that say what to do, and help that fits the verb.
    let bare = run(&["verify", &node.address.to_string()]);
    assert!(String::from_utf8_lossy(&bare.stderr).contains("add http:// or https://"), "{bare:?}");
    let allow_help = ok(&["allow", "add", "--help"]);
    let deny_help = ok(&["deny", "add", "--help"]);
    assert!(allow_help.contains("--note") && !allow_help.contains("--action"), "{allow_help}");
    assert!(deny_help.contains("--action") && !deny_help.contains("--note"), "{deny_help}");
    let token = node.cli(&["token", "create", "short-lived", "--scope", "submit"]);
    assert!(token["token"].is_string(), "{token}");
    assert_eq!(node.cli(&["token", "revoke", "short-lived"]), json!({ "revoked": "short-lived" }));

    let listed = node.cli(&["incident", "list"]);
    assert_eq!(listed["incidents"].as_array().unwrap().len(), 2);
    assert_eq!(listed["incidents"][1]["effect"]["listed"], 4, "what the first incident lists now");
    let filtered = node.cli(&["incident", "list", "--decision", "accepted", "--origin", "local", "--verb", "report"]);
    assert_eq!(filtered["incidents"].as_array().unwrap().len(), 2);
    assert!(node.cli(&["incident", "list", "--decision", "pending"])["incidents"].as_array().unwrap().is_empty());
    let bad = run(&["incident", "list", "--status", "bogus", "--url", &node.url()]);
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && said.contains("new") && said.contains("retracted"), "valid values: {said}");
    assert_eq!(node.cli(&["incident", "show", &id])["incident"]["description"], "join flood");
    let lookup = node.cli(&["lookup", "ip", "198.51.100.77"]);
    assert_eq!(lookup["listed"], true);
    assert_eq!(lookup["matches"][0]["why"]["reasons"][0]["incident"], id.as_str());

    // Every format of every list.
    for kind in ["ip", "jid", "domain"] {
        for format in ["json", "txt", "ndjson", "csv"] {
            let (status, body) = node.get(&format!("/v1/blocklist?kind={kind}&format={format}"));
            assert_eq!(status, 200, "{kind} {format}: {body}");
        }
    }
    let (_, ips) = node.get("/v1/blocklist?kind=ip&format=txt");
    // CIDRs first, then addresses (ordered by kind, then value).
    assert_eq!(ips, "198.51.100.0/24\n192.0.2.7\n203.0.113.9\n");
    // Plain text carries `block` entries only: the quarantined abuse.example asks for more.
    let (_, domains) = node.get("/v1/blocklist?kind=domain&format=txt");
    assert_eq!(domains, "spam.example\n");
    let (_, domains) = node.get("/v1/blocklist?kind=domain&format=txt&action=all");
    assert_eq!(domains, "abuse.example\nspam.example\n");
    // The same lists as files, for ejabberd's spam filter or a firewall loader: written when
    // they change, left alone when they do not.
    let file = node.dir.path().join("spam_domains.txt");
    let url = node.url();
    let export = |extra: &[&str]| {
        let mut args = vec!["export", "--kind", "domain", "--file", file.to_str().unwrap(), "--url", &url];
        args.extend_from_slice(extra);
        ok(&args)
    };
    assert!(export(&[]).contains("written, 1 entries"), "{}", export(&[]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "spam.example\n");
    assert!(export(&[]).contains("unchanged, 1 entries"));
    assert!(export(&["--action", "all"]).contains("written, 2 entries"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "abuse.example\nspam.example\n");

    // verify accepts the honest node, saves the checkpoint, and sees growth next time.
    let checkpoint = node.dir.path().join("checkpoint.txt");
    let output = verify(&node.url(), &checkpoint);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(checkpoint.exists());
    node.cli(&["incident", "retract", second["id"].as_str().unwrap()]);
    // The operator's note and the allowed address are not public facts: the public log holds
    // the allow entry sealed, `log show` opens it, and erasing the opening keeps verify passing.
    let (_, public_log) = node.get("/v1/log/entries?start=0");
    assert!(!public_log.contains("our monitoring") && !public_log.contains("192.0.2.200"), "{public_log}");
    let log = node.cli(&["log", "show", "--start", "0", "--count", "1000"]);
    let allow_leaf = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["opening"]["record"]["note"] == "our monitoring")
        .unwrap_or_else(|| panic!("no opened allow leaf: {log}"));
    let index = allow_leaf["index"].as_u64().unwrap();
    let erased = node.cli(&["log", "erase", &index.to_string()]);
    assert_eq!(erased["erased"], index, "{erased}");
    let log = node.cli(&["log", "show", "--start", &index.to_string(), "--count", "1"]);
    assert!(log["entries"][0].get("opening").is_none() && log["entries"][0]["record"]["sealed"].is_string(), "{log}");
    let output = verify(&node.url(), &checkpoint);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("only grew"));
    for kind in ["jid", "domain"] {
        assert!(run(&["verify", &node.url(), "--kind", kind]).status.success());
    }

    // A dishonest publisher: the snapshot is changed after signing.
    let proxy = start_proxy(node.url(), |path, body| {
        if path.starts_with("/v1/blocklist?") {
            String::from_utf8(body).unwrap().replace("192.0.2.7", "192.0.2.8").into_bytes()
        } else {
            body
        }
    })
    .await;
    let output = verify(&format!("http://{proxy}"), &node.dir.path().join("c2.txt"));
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("snapshot signature does not verify"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A dishonest publisher: log leaves served differ from the signed log.
    let proxy = start_proxy(node.url(), |path, body| {
        if path.starts_with("/v1/log/entries") {
            let mut page: Value = serde_json::from_slice(&body).unwrap();
            page["entries"][1]["leaf"] = Value::String(base64_of(br#"{"event":"allow-removed"}"#));
            serde_json::to_vec(&page).unwrap()
        } else {
            body
        }
    })
    .await;
    let output = verify(&format!("http://{proxy}"), &node.dir.path().join("c3.txt"));
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("do not hash to the signed checkpoint root"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // kill -9 right after an acknowledged submission: nothing is lost.
    let acknowledged = node.cli(&["incident", "submit", "--offender", "192.0.2.99", "--category", "brute-force"]);
    node.process.as_mut().unwrap().signal_and_wait("KILL");
    node.start();
    let shown = node.cli(&["incident", "show", acknowledged["id"].as_str().unwrap()]);
    assert_eq!(shown["decision"], "accepted");
    let (_, ips) = node.get("/v1/blocklist?kind=ip&format=txt");
    assert!(ips.contains("192.0.2.99"));
    let output = verify(&node.url(), &checkpoint);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // A key rotation while the node runs: the CLI asks the node, which switches at once; the
    // checkpoint saved under the old key still verifies the log's growth, with no restart.
    let before = node.get("/.well-known/ostracon").1;
    let running = ok(&["key", "rotate", "--config", node.config.to_str().unwrap()]);
    assert!(running.contains("signs with the new key from now on"), "{running}");
    let after: Value = serde_json::from_str(&node.get("/.well-known/ostracon").1).unwrap();
    assert_eq!(after["keys"].as_array().unwrap().len(), 2, "{before} -> {after}");
    let output = verify(&node.url(), &checkpoint);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let second = run(&["serve", "--config", node.config.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains(&format!("cannot listen on {}", node.address)), "the address in use is named: {said}");
    // On another port, the same data directory is still refused.
    let elsewhere = node.dir.path().join("second.toml");
    let text = std::fs::read_to_string(&node.config).unwrap();
    let other = SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::fs::write(&elsewhere, text.replace(&node.address.to_string(), &other.to_string())).unwrap();
    let second = run(&["serve", "--config", elsewhere.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("a running node holds"), "one node per data directory: {said}");
    // From another data directory, the running node's SQLite database is refused too: SQLite
    // serves one process (replicas share PostgreSQL).
    let data = node.dir.path().join("data");
    let database = format!("url = \"sqlite://{}\"", data.join("ostracon.db").display());
    let other_data = node.dir.path().join("other-data");
    let mut sharing = text
        .replace(&node.address.to_string(), &other.to_string())
        .replace(data.to_str().unwrap(), other_data.to_str().unwrap());
    sharing = match sharing.contains("\n[database]\n") {
        true => sharing.replace("\n[database]\n", &format!("\n[database]\n{database}\n")),
        false => format!("{sharing}\n[database]\n{database}\n"),
    };
    let sharing_config = node.dir.path().join("sharing.toml");
    std::fs::write(&sharing_config, sharing).unwrap();
    let second = run(&["serve", "--config", sharing_config.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("another process serves the SQLite database"), "{said}");
    let status = node.process.as_mut().unwrap().signal_and_wait("TERM").unwrap();
    assert!(status.success(), "SIGTERM shuts down cleanly: {status:?}");
    let rotated = ok(&["key", "rotate", "--config", node.config.to_str().unwrap()]);
    assert!(rotated.contains("new key"), "{rotated}");
    node.start();
    let output = verify(&node.url(), &checkpoint);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // A reader who pinned the first key follows the two signed rotations in the log to the
    // key that signs now; a key that never signed a rotation leads nowhere.
    let first_key: Value = serde_json::from_str(&before).unwrap();
    let first_key = first_key["keys"][0]["key"].as_str().unwrap().to_owned();
    let pinned = run(&["verify", &node.url(), "--key", &first_key]);
    let said = String::from_utf8_lossy(&pinned.stdout);
    assert!(pinned.status.success(), "{}", String::from_utf8_lossy(&pinned.stderr));
    assert!(said.contains("followed 2 signed key rotations from the pinned key"), "{said}");
    let stranger = ostracon_protocol::keys::NodeKey::from_seed(&[5; 32]).public().to_base64();
    let refused = run(&["verify", &node.url(), "--key", &stranger]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("no rotation signed in its log leads there from the pinned key"), "{said}");

    // A forked log: history is rewritten behind the node's back (same key, same size).
    let status = node.process.as_mut().unwrap().signal_and_wait("TERM").unwrap();
    assert!(status.success(), "SIGTERM shuts down cleanly: {status:?}");
    rewrite_first_leaf(&node.dir.path().join("data/ostracon.db")).await;
    node.start();
    let output = verify(&node.url(), &checkpoint);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not an extension of the saved checkpoint"), "{stderr}");

    // SIGHUP (systemctl reload): a new rate limit applies at once; a changed list policy is
    // named as waiting for a restart; a broken file changes nothing.
    let text = std::fs::read_to_string(&node.config).unwrap();
    let limited = text
        .replace("rate_per_second = 50", "rate_per_second = 1")
        .replace("rate_burst = 200", "rate_burst = 1")
        .replace("escalation_factor = 2", "escalation_factor = 3");
    assert_ne!(limited, text, "the init config has the keys this test edits:\n{text}");
    std::fs::write(&node.config, &limited).unwrap();
    let process = node.process.as_ref().unwrap();
    process.signal("HUP");
    let reloaded = wait_until(|| process.output().contains("configuration reloaded"));
    assert!(reloaded, "{}", process.output());
    assert!(process.output().contains("setting=\"[lists]\""), "{}", process.output());
    let statuses: Vec<u16> = (0..3).map(|_| node.get("/v1/log/checkpoint").0).collect();
    assert!(statuses.contains(&429), "rate 1/s, burst 1: {statuses:?}");
    std::fs::write(&node.config, "[http\n").unwrap();
    process.signal("HUP");
    assert!(wait_until(|| process.output().contains("configuration not reloaded")), "{}", process.output());
}

/// Polls `check` for up to 10 s.
fn wait_until(check: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Replaces leaf 0 with another valid record (and its hash), as an operator rewriting
/// history behind the log's back would.
async fn rewrite_first_leaf(db: &Path) {
    let store = ostracon_store::Store::open(&format!("sqlite://{}", db.display())).await.unwrap();
    let forged = br#"{"at":"2026-01-01T00:00:00Z","event":"incident-retracted","id":"ops.example:00000000-0000-0000-0000-000000000000"}"#;
    sqlx::query("UPDATE audit_log SET leaf = $1, leaf_hash = $2 WHERE idx = 0")
        .bind(forged.to_vec())
        .bind(ostracon_protocol::log::merkle::leaf_hash(forged).to_vec())
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test]
async fn reputation_and_policy_verbs() {
    let mut node = Node::init("cli-reputation");
    node.start();
    for user in ["a@spam.example", "b@spam.example"] {
        node.cli(&["incident", "submit", "--offender", user, "--category", "spam", "--severity", "high"]);
    }
    node.cli(&["incident", "submit", "--offender", "c@meh.example", "--category", "spam", "--severity", "low"]);

    // Scores are kept as incidents arrive, worst first.
    let list = node.cli(&["reputation", "list"]);
    assert_eq!(list["total"], 2, "{list}");
    assert_eq!(list["scores"][0]["domain"], "spam.example", "{list}");
    assert_eq!(list["scores"][0]["components"]["incidents"], -40, "{list}");
    let best = node.cli(&["reputation", "list", "--order", "best", "--limit", "1"]);
    assert_eq!((&best["scores"][0]["domain"], &best["next_offset"]), (&json!("meh.example"), &json!(1)), "{best}");

    // The operator fixes a score: the domain entry follows at once, and is audited.
    let shown = node.cli(&["reputation", "spam.example"]);
    assert_eq!((shown["score"].as_i64(), &shown["overridden"]), (Some(-28), &json!(false)), "{shown}");
    let set = node.cli(&["reputation", "override", "spam.example", "-80", "--note", "open relay"]);
    assert_eq!(set["listed"], json!(["spam.example"]), "{set}");
    let shown = node.cli(&["reputation", "spam.example"]);
    assert_eq!((shown["score"].as_i64(), &shown["override"]["note"]), (Some(-80), &json!("open relay")), "{shown}");
    let lookup = node.cli(&["lookup", "domain", "spam.example"]);
    assert_eq!(lookup["matches"][0]["why"]["source"], "reputation", "{lookup}");
    let cleared = node.cli(&["reputation", "clear", "spam.example"]);
    assert_eq!(cleared["delisted"], json!(["spam.example"]), "{cleared}");

    // A bad score and a missing override are clear errors, not panics.
    let output = run(&["reputation", "override", "spam.example", "500", "--url", &node.url(), "--token", TOKEN]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("[-100, 100]"), "{output:?}");
    let output = run(&["reputation", "clear", "spam.example", "--url", &node.url(), "--token", TOKEN]);
    assert!(!output.status.success());

    // The dry run: our own reports (weight 1.0) would not list at a threshold of 2.
    let run = node.cli(&["policy", "dry-run", "--threshold", "2"]);
    assert_eq!(run["would_delist"].as_array().unwrap().len(), 3, "{run}");
    assert_eq!((&run["threshold_now"], &run["threshold"]), (&json!(1.0), &json!(2.0)), "one unit for weights: {run}");
    assert_eq!(run["would_delist"][0]["total_weight"], 1.0, "{run}");
    assert_eq!(node.cli(&["lookup", "jid", "a@spam.example"])["listed"], true, "a dry run changes nothing");
}

/// The shipped binary depends only on product crates: never the test crate (the harness is its
/// own binary, `ostracon-harness`) and never the XMPP library the tests use as a peer.
#[test]
fn the_shipped_binary_depends_only_on_product_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["tree", "-p", "ostracon", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).unwrap();
    let names: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(names.contains(&"ostracon-store") && names.contains(&"axum"), "unexpected tree:\n{tree}");
    for banned in ["ostracon-tests", "tokio-xmpp", "xmpp-parsers", "anyhow"] {
        assert!(!names.contains(&banned), "the shipped binary depends on {banned}:\n{tree}");
    }
}

/// `init` stages everything and moves it into place: a failure leaves nothing (beside a new
/// directory or inside an existing empty one), a retry works, and the component secret can
/// come from a file.
#[test]
fn a_failed_init_leaves_nothing_and_the_retry_works() {
    let dir = TempDir::new("init");
    let data = dir.path().join("node");
    let data_arg = data.to_str().unwrap();
    // No database at that address: the store cannot open after the key was made.
    let failing_init = || {
        let args = [
            "init",
            "--data",
            data_arg,
            "--domain",
            "ops.example",
            "--database",
            "postgres://postgres@127.0.0.1:1/none",
        ];
        assert!(!run(&args).status.success());
    };
    failing_init();
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "a failed init left {left:?}");

    // An empty directory, as the Debian package makes it, is staged inside and filled.
    std::fs::create_dir(&data).unwrap();
    failing_init();
    let left: Vec<_> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "a failed init left {left:?} in the existing directory");

    // An init killed mid-way (no Drop) left its staging directory: that is no node.
    std::fs::create_dir(data.join(".init-deadbeef")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "a-component-secret-from-a-file\n").unwrap();
    let made = ok(&[
        "init",
        "--data",
        data_arg,
        "--domain",
        "ops.example",
        "--xmpp",
        "127.0.0.1:5347",
        "--secret-file",
        secret.to_str().unwrap(),
    ]);
    assert!(made.contains("ostracon.toml"), "{made}");
    assert_eq!(
        std::fs::read_to_string(data.join("component.secret")).unwrap().trim(),
        "a-component-secret-from-a-file"
    );
    let config = std::fs::read_to_string(data.join("ostracon.toml")).unwrap();
    assert!(config.contains(&data.join("component.secret").display().to_string()), "final paths: {config}");
    assert!(!config.contains(".init-"), "no staging path in the configuration: {config}");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o750, "others lose access to the data directory");
    let staged: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(staged.is_empty(), "staging left behind: {staged:?}");
    assert!(
        ok(&["config", "check", "--config", data.join("ostracon.toml").to_str().unwrap()]).contains("configuration ok")
    );

    // `--secret-file -` reads the secret from standard input (as `... | sudo -u ostracon ostracon init`).
    let piped = dir.path().join("piped");
    let mut child = ostracon()
        .args(["init", "--data", piped.to_str().unwrap(), "--domain", "ops.example", "--xmpp", "127.0.0.1:5347"])
        .args(["--secret-file", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"a-component-secret-from-stdin\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        std::fs::read_to_string(piped.join("component.secret")).unwrap().trim(),
        "a-component-secret-from-stdin"
    );

    // At a terminal, `-` asks for the secret (`script` gives it a terminal). That it is not
    // echoed is rpassword's to keep; asserting it here would race the terminal, which echoes
    // what arrives before rpassword turns echo off right after printing the prompt.
    let prompted = dir.path().join("prompted");
    let command = format!(
        "{} init --data {} --domain ops.example --xmpp 127.0.0.1:5347 --secret-file -",
        env!("CARGO_BIN_EXE_ostracon"),
        prompted.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Typed once the prompt is up.
    // A prompt that never comes fails the test instead of hanging it.
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = Command::new("kill").args(["-9", &pid]).status();
    });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 256];
        let mut typed = Some(child.stdin.take().unwrap());
        loop {
            let n = std::io::Read::read(&mut stdout, &mut buffer).unwrap_or(0);
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
            if String::from_utf8_lossy(&seen).contains("secret (the one")
                && let Some(mut stdin) = typed.take()
            {
                stdin.write_all(b"typed-at-a-terminal\n").unwrap();
            }
        }
        (child.wait().unwrap(), String::from_utf8_lossy(&seen).into_owned())
    });
    let (status, shown) = reader.join().unwrap();
    assert!(status.success() && shown.contains("component secret"), "{shown}");
    assert_eq!(std::fs::read_to_string(prompted.join("component.secret")).unwrap().trim(), "typed-at-a-terminal");

    let again = run(&["init", "--data", data_arg, "--domain", "ops.example"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a node"), "{again:?}");
}

/// Every listing verb prints a table for people (`-o text`, the default on a terminal) and
/// the API's JSON for scripts (the default when piped), from the same answer.
#[test]
fn people_get_tables_and_scripts_get_json() {
    let mut node = Node::init("cli-output");
    // A threshold of two full reporters: the operator's own report waits for a quorum.
    let config = std::fs::read_to_string(&node.config).unwrap();
    std::fs::write(&node.config, config.replace("listing_threshold = 1.0", "listing_threshold = 2.0")).unwrap();
    node.start();
    let text = |args: &[&str]| {
        let url = node.url();
        let mut full = args.to_vec();
        full.extend(["-o", "text", "--url", &url, "--token", TOKEN]);
        ok(&full)
    };
    let submitted =
        node.cli(&["incident", "submit", "--offender", "192.0.2.7", "--category", "spam", "--severity", "high"]);
    let id = submitted["id"].as_str().unwrap().to_owned();
    assert!(submitted["refused"][0]["why"].as_str().unwrap().contains("awaiting a quorum"), "{submitted}");

    // What awaits a quorum: the weights in the one unit every route uses.
    let candidates = node.cli(&["candidates"]);
    assert_eq!((&candidates["total"], &candidates["candidates"][0]["why"]["threshold"]), (&json!(1), &json!(2.0)));
    let table = text(&["candidates"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["VALUE", "KIND", "WEIGHT", "THRESHOLD", "REPORTERS"]);
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["192.0.2.7", "ip", "1.0", "2.0", "ops.example=1.0"]);

    // The incident table keeps the id whole (it is what the next command takes).
    let table = text(&["incident", "list"]);
    let row = table.lines().nth(1).unwrap();
    assert!(row.contains(&id) && row.contains("192.0.2.7") && row.contains("spam"), "{table}");
    assert_eq!(node.cli(&["incident", "list"])["incidents"][0]["id"], json!(id), "piped, it is JSON");

    // The log table opens sealed leaves for the operator and marks them.
    node.cli(&["allow", "add", "198.51.100.0/24", "--note", "office range"]);
    let log = text(&["log", "show"]);
    let allow = log.lines().find(|l| l.contains("allow-added")).unwrap_or_default();
    assert!(allow.contains("198.51.100.0/24") && allow.contains("yes") && allow.contains("office range"), "{log}");
    assert!(text(&["allow", "list"]).lines().nth(1).is_some_and(|l| l.starts_with("198.51.100.0/24")));

    // One thing reads as indented fields; nothing reads as a sentence, not as `null`.
    let lookup = text(&["lookup", "ip", "192.0.2.7"]);
    assert!(lookup.contains("\nlisted      no\n") && lookup.contains("\n  threshold     2.0\n"), "{lookup}");
    assert_eq!(text(&["peers", "list"]), "no peers (ostracon peers add JID)\n");
    assert_eq!(text(&["outbox"]), "the outbox is empty\n");

    // A bad value names the valid ones; a missing peer says so.
    let bad = run(&["incident", "list", "--status", "lost", "--url", &node.url(), "--token", TOKEN]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("[possible values: new, updated, resolved, retracted]"),
        "{bad:?}"
    );
    let missing = run(&["peers", "revoke", "incidents.nobody.example", "--url", &node.url(), "--token", TOKEN]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"), "{missing:?}");
}
