//! A running federation: real `ostracon` processes (each with its own SQLite under one temp
//! directory), their XEP-0114 components on one Prosody or spread over several Prosody
//! servers federating over s2s (loopback addresses, names from a `hoststxt` file), and the
//! buddy relations a topology names, made through the operator API as an operator would.
//!
//! Everything it starts is killed when the [`Federation`] is dropped (on success, failure,
//! panic or Ctrl-C, which drops the future that owns it), and the directory is removed.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::topology::Topology;
use super::{HarnessError, Progress, Result};
use crate::prosody::{ComponentSpec, Prosody};
use crate::{Process, TempDir, free_port, wait_for_port};

/// The admin token every node of a harness federation is started with.
pub const TOKEN: &str = "ost_harness-admin-token";

/// What to start.
#[derive(Clone, Debug)]
pub struct FederationSpec {
    /// The `ostracon` binary the nodes run.
    pub binary: PathBuf,
    /// How many honest nodes (`n0.test` ... ).
    pub nodes: usize,
    /// Extra nodes an attacker runs (`sybil0.test` ...), not part of the topology.
    pub attackers: usize,
    /// Prosody servers: 1 hosts every component; more federate over s2s.
    pub servers: usize,
    /// Buddy relations among the honest nodes.
    pub topology: Topology,
    /// The trust each honest node gives its buddies.
    pub trust: String,
    /// Extra `[reputation]` lines for every node's configuration.
    pub reputation: String,
    /// Extra `[lists]` lines for every node's configuration.
    pub lists: String,
    /// Extra `[xmpp]` lines for every node's configuration.
    pub xmpp: String,
    /// A PostgreSQL server's admin URL (`postgres://user@host:port/db`): the nodes share it,
    /// each with a database of its own created for the run. `None`: each its own SQLite.
    pub postgres: Option<String>,
}

/// One node process and how to reach it.
#[derive(Debug)]
pub struct NodeHandle {
    /// `n3.test` or `sybil0.test`.
    pub domain: String,
    /// `incidents.n3.test`.
    pub component: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its configuration file.
    pub config: PathBuf,
    /// Which Prosody server it uses.
    pub server: usize,
    process: Option<Process>,
    log: PathBuf,
    restarts: u32,
}

/// A running federation.
pub struct Federation {
    /// Honest nodes first, then the attacker's.
    pub nodes: Vec<NodeHandle>,
    /// How many of `nodes` are honest.
    pub honest: usize,
    /// The buddy relations made, as node indexes.
    pub edges: Vec<(usize, usize)>,
    servers: Vec<Prosody>,
    client: reqwest::Client,
    spec: FederationSpec,
    // Held only to be removed on drop; last, so after the processes that use it.
    _dir: TempDir,
}

impl Federation {
    /// Starts the servers and nodes, waits until every node is online, and makes the buddy
    /// relations of the topology.
    pub async fn start(spec: &FederationSpec, progress: &Progress) -> Result<Self> {
        if spec.nodes < 2 {
            return Err(HarnessError::Setup("a federation needs at least 2 nodes".into()));
        }
        let dir = TempDir::new("harness");
        let total = spec.nodes + spec.attackers;
        let domains: Vec<String> = (0..total)
            .map(|i| if i < spec.nodes { format!("n{i}.test") } else { format!("sybil{}.test", i - spec.nodes) })
            .collect();
        let servers_wanted = spec.servers.clamp(1, total);
        let server_of = |i: usize| i % servers_wanted;
        let mut servers = Vec::with_capacity(servers_wanted);
        progress.say(&format!("starting {servers_wanted} Prosody server(s) for {total} nodes"));
        if servers_wanted == 1 {
            let hosts: Vec<&str> = domains.iter().map(String::as_str).collect();
            servers.push(Prosody::start(&hosts, &specs(&domains)));
        } else {
            // A loopback /24 of our own so parallel runs do not fight over port 5269.
            let net = 10 + (std::process::id() % 200) as u8;
            let ip = |s: usize| IpAddr::from([127, net, 1, 2 + s as u8]);
            let hosts_file = dir.path().join("hosts");
            let lines: String =
                domains.iter().enumerate().map(|(i, d)| format!("{} {d} incidents.{d}\n", ip(server_of(i)))).collect();
            std::fs::write(&hosts_file, lines)?;
            for s in 0..servers_wanted {
                let mine: Vec<String> =
                    domains.iter().enumerate().filter(|(i, _)| server_of(*i) == s).map(|(_, d)| d.clone()).collect();
                let hosts: Vec<&str> = mine.iter().map(String::as_str).collect();
                servers.push(Prosody::start_on(&hosts, ip(s), Some(&hosts_file), &specs(&mine)));
            }
        }
        let databases = match &spec.postgres {
            Some(admin) => Some(create_databases(admin, total).await?),
            None => None,
        };
        let mut nodes = Vec::with_capacity(total);
        // `free_port` can hand out a port twice when asked many times in a row; a collision
        // would leave a node unable to listen, so every port of the run is distinct.
        let mut taken: std::collections::BTreeSet<u16> = servers.iter().map(|s| s.component_address.port()).collect();
        for (i, domain) in domains.iter().enumerate() {
            let server = server_of(i);
            let database = databases.as_ref().map(|d| d[i].as_str());
            let port = loop {
                let port = free_port();
                if taken.insert(port) {
                    break port;
                }
            };
            let extra = Extra { reputation: &spec.reputation, lists: &spec.lists, xmpp: &spec.xmpp };
            nodes.push(write_node(dir.path(), domain, server, &servers[server], extra, database, port)?);
        }
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let mut federation = Self {
            nodes,
            honest: spec.nodes,
            edges: spec.topology.edges(spec.nodes),
            servers,
            client,
            spec: spec.clone(),
            _dir: dir,
        };
        progress.say(&format!("starting {total} nodes"));
        for i in 0..total {
            federation.spawn(i)?;
        }
        for i in 0..total {
            federation.wait_online(i, Duration::from_secs(60)).await?;
        }
        progress.say(&format!("making {} buddy relations ({})", federation.edges.len(), spec.topology));
        let edges = federation.edges.clone();
        let trust = spec.trust.clone();
        for chunk in edges.chunks(8) {
            let pending = chunk.iter().map(|&(a, b)| federation.make_buddies(a, b, &trust, &trust));
            for result in futures_util::future::join_all(pending).await {
                result?;
            }
        }
        Ok(federation)
    }

    /// Starts (or restarts) node `i`'s process.
    fn spawn(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let mut command = Command::new(&self.spec.binary);
        command
            .args(["serve", "--config"])
            .arg(&node.config)
            .env("OSTRACON_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .env_remove("OSTRACON_CONFIG");
        let log = node.log.with_extension(format!("{}.log", node.restarts));
        node.restarts += 1;
        let process = Process::spawn(&format!("ostracon {}", node.domain), command, &log)?;
        let address: SocketAddr = node
            .url
            .trim_start_matches("http://")
            .parse()
            .map_err(|_| HarnessError::Setup(format!("bad node address {}", node.url)))?;
        if !wait_for_port(address, Duration::from_secs(30)) {
            return Err(HarnessError::Node(format!("{} did not start:\n{}", node.domain, process.output())));
        }
        node.process = Some(process);
        Ok(())
    }

    /// Waits until node `i`'s XMPP link is up; on failure the error carries the end of the
    /// node's own log.
    pub async fn wait_online(&self, i: usize, within: Duration) -> Result<()> {
        let what = format!("{} online", self.nodes[i].domain);
        match self.wait_for(i, &what, "/healthz", within, |h| h["xmpp"] == "online").await {
            Ok(_) => Ok(()),
            Err(HarnessError::Timeout { what, last }) => {
                let log = self.nodes[i].process.as_ref().map(Process::output).unwrap_or_default();
                let tail: String = log.chars().rev().take(1500).collect::<Vec<_>>().into_iter().rev().collect();
                Err(HarnessError::Timeout { what, last: format!("{last}; node log ends:\n{tail}") })
            }
            Err(other) => Err(other),
        }
    }

    /// Makes `a` and `b` buddies: `a` asks with `trust_a`, `b`'s operator approves with
    /// `trust_b`, and both pin each other's keys.
    pub async fn make_buddies(&self, a: usize, b: usize, trust_a: &str, trust_b: &str) -> Result<()> {
        let (a_jid, b_jid) = (self.nodes[a].component.clone(), self.nodes[b].component.clone());
        let (status, body) =
            self.call(a, reqwest::Method::POST, "/v1/peers", Some(json!({ "jid": b_jid, "trust": trust_a }))).await?;
        if status != 202 {
            return Err(HarnessError::Node(format!("{} could not ask {b_jid}: {status} {body}", self.nodes[a].domain)));
        }
        let within = Duration::from_secs(60);
        let seen = self
            .wait_for(b, &format!("{a_jid}'s request with keys"), "/v1/peers", within, |p| {
                peer(p, &a_jid).is_some_and(|x| (x["state"] == "pending" || x["state"] == "buddy") && has_keys(x))
            })
            .await?;
        // Already a buddy (seen once under heavy load at 50 nodes): nothing left to approve.
        if peer(&seen, &a_jid).is_some_and(|x| x["state"] == "pending") {
            let path = format!("/v1/peers/{a_jid}/approve");
            let (status, body) = self.call(b, reqwest::Method::POST, &path, Some(json!({ "trust": trust_b }))).await?;
            if status != 200 {
                return Err(HarnessError::Node(format!(
                    "{} could not approve {a_jid}: {status} {body}",
                    self.nodes[b].domain
                )));
            }
        }
        self.wait_for(a, &format!("{b_jid} as a buddy with keys"), "/v1/peers", within, |p| {
            peer(p, &b_jid).is_some_and(|x| x["state"] == "buddy" && has_keys(x))
        })
        .await?;
        Ok(())
    }

    /// An operator API call on node `i`: status and JSON body (`Null` if none).
    pub async fn call(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut request = self.client.request(method, format!("{}{path}", self.nodes[i].url)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// `GET path` on node `i`, its JSON body.
    pub async fn get(&self, i: usize, path: &str) -> Result<Value> {
        Ok(self.call(i, reqwest::Method::GET, path, None).await?.1)
    }

    /// Polls `path` on node `i` until `check` holds, or fails after `within`.
    pub async fn wait_for(
        &self,
        i: usize,
        what: &str,
        path: &str,
        within: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let value = self.get(i, path).await.unwrap_or(Value::Null);
            if check(&value) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{what} at {}", self.nodes[i].domain),
                    last: value.to_string().chars().take(600).collect(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills node `i` (SIGKILL, as a crash would).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut process) = self.nodes[i].process.take() {
            process.signal_and_wait("KILL");
        }
    }

    /// Starts node `i` again with the same configuration and data.
    pub async fn restart_node(&mut self, i: usize) -> Result<()> {
        self.kill_node(i);
        self.spawn(i)?;
        self.wait_online(i, Duration::from_secs(90)).await
    }

    /// Restarts node `i` with its configuration file rewritten by `edit`.
    pub async fn restart_with(&mut self, i: usize, edit: impl FnOnce(String) -> String) -> Result<()> {
        self.kill_node(i);
        let path = &self.nodes[i].config;
        let text = std::fs::read_to_string(path)?;
        std::fs::write(path, edit(text))?;
        self.restart_node(i).await
    }

    /// Runs `ostracon ARGS --config <node i's configuration>` to completion (node verbs that
    /// work on the data directory, such as `key rotate`).
    pub fn run_verb(&self, i: usize, args: &[&str]) -> Result<String> {
        let output = Command::new(&self.spec.binary)
            .args(args)
            .arg("--config")
            .arg(&self.nodes[i].config)
            .env_remove("OSTRACON_CONFIG")
            .output()?;
        if !output.status.success() {
            return Err(HarnessError::Node(format!(
                "ostracon {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Where node `i`'s component logs in to its Prosody, and with which secret: what a thief
    /// of its configuration holds.
    pub fn component_login(&self, i: usize) -> (SocketAddr, String) {
        let node = &self.nodes[i];
        (self.servers[node.server].component_address, format!("{}-harness-secret", node.domain))
    }

    /// Stops Prosody server `s` (SIGKILL).
    pub fn stop_server(&mut self, s: usize) {
        self.servers[s].stop();
    }

    /// Starts Prosody server `s` again.
    pub fn restart_server(&mut self, s: usize) {
        self.servers[s].restart();
    }

    /// How many Prosody servers run.
    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// Node `i`'s XMPP traffic so far: stanzas in, stanzas out, bytes in, bytes out (from
    /// its `/metrics`).
    pub async fn traffic(&self, i: usize) -> Result<[u64; 4]> {
        let text = self.client.get(format!("{}/metrics", self.nodes[i].url)).send().await?.text().await?;
        let read = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse::<u64>().ok()))
                .unwrap_or(0)
        };
        Ok([
            read("ostracon_xmpp_stanzas_received_total "),
            read("ostracon_xmpp_stanzas_sent_total "),
            read("ostracon_xmpp_received_bytes_total "),
            read("ostracon_xmpp_sent_bytes_total "),
        ])
    }

    /// Node `i`'s peak resident memory (VmHWM) in KiB, if it runs.
    pub fn peak_rss_kib(&self, i: usize) -> Option<u64> {
        let pid = self.nodes[i].process.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find_map(|line| line.strip_prefix("VmHWM:")?.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

fn specs(domains: &[String]) -> Vec<ComponentSpec> {
    domains
        .iter()
        .map(|d| ComponentSpec { domain: format!("incidents.{d}"), secret: format!("{d}-harness-secret") })
        .collect()
}

/// Creates one database per node on the PostgreSQL server `admin` names and returns their
/// URLs. They are named after this process and dropped by whoever owns the server (the
/// test script's throwaway cluster is deleted whole).
async fn create_databases(admin: &str, count: usize) -> Result<Vec<String>> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(admin).await.map_err(|e| HarnessError::Setup(format!("PostgreSQL: {e}")))?;
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    let mut urls = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("ostracon_harness_{}_{}_{i}", std::process::id(), unique());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .map_err(|e| HarnessError::Setup(format!("PostgreSQL: {e}")))?;
        urls.push(format!("{base}/{name}"));
    }
    pool.close().await;
    Ok(urls)
}

/// A number unique within this process (two federations may start one after the other).
fn unique() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// Extra lines for sections of every node's configuration.
#[derive(Clone, Copy)]
struct Extra<'a> {
    reputation: &'a str,
    lists: &'a str,
    xmpp: &'a str,
}

/// Writes node `domain`'s configuration (mode 0600: it holds the component secret).
fn write_node(
    base: &Path,
    domain: &str,
    server: usize,
    prosody: &Prosody,
    Extra { reputation, lists, xmpp }: Extra<'_>,
    database: Option<&str>,
    port: u16,
) -> Result<NodeHandle> {
    use std::os::unix::fs::PermissionsExt as _;
    let data = base.join(domain);
    std::fs::create_dir_all(&data)?;
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let config = data.join("ostracon.toml");
    let text = format!(
        "[node]\ndomain = \"{domain}\"\ndata_dir = \"{data}\"\n\n[http]\nlisten = \"{listen}\"\nrate_per_second = 0\n\n\
         [lists]\n# The scenarios' offenders are in the documentation ranges.\nrefuse_documentation_ranges = false\n{lists}\n\n\
         [xmpp]\ncomponent = \"incidents.{domain}\"\nserver = \"{component}\"\nsecret = \"{domain}-harness-secret\"\n{xmpp}\n\n\
         [reputation]\n{reputation}\n{database}",
        data = data.display(),
        component = prosody.component_address,
        database = database.map_or(String::new(), |url| format!("\n[database]\nurl = \"{url}\"\n")),
    );
    std::fs::write(&config, text)?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
    Ok(NodeHandle {
        domain: domain.to_owned(),
        component: format!("incidents.{domain}"),
        url: format!("http://{listen}"),
        config,
        server,
        process: None,
        log: data.join("node"),
        restarts: 0,
    })
}

/// The peer `jid` in a `/v1/peers` answer.
pub fn peer<'a>(peers: &'a Value, jid: &str) -> Option<&'a Value> {
    peers["peers"].as_array()?.iter().find(|p| p["jid"] == jid)
}

fn has_keys(peer: &Value) -> bool {
    peer["keys"].as_array().is_some_and(|keys| !keys.is_empty())
}
