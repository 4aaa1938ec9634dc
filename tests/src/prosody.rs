//! Real Prosody servers for integration tests, started from a generated configuration on
//! loopback and killed on drop. Never the system service.
//!
//! One server can host several external components (XEP-0114); two servers on 127.0.N.2 and
//! 127.0.N.3 federate over s2s on port 5269, resolving each other through a `hoststxt` file
//! read by lua-unbound, so no DNS and no `/etc/hosts` edit is needed.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{Process, TempDir, free_port, integration_required, wait_for_port};

/// A component to declare on a server.
#[derive(Clone, Debug)]
pub struct ComponentSpec {
    /// Its domain, e.g. `incidents.alpha.test`.
    pub domain: String,
    /// Its shared secret.
    pub secret: String,
}

/// A running Prosody.
#[derive(Debug)]
pub struct Prosody {
    /// The host it serves.
    pub host: String,
    /// Where components connect.
    pub component_address: SocketAddr,
    /// Its address for c2s/s2s.
    pub ip: IpAddr,
    /// Where clients connect (plain, no TLS: tests only).
    pub c2s_address: SocketAddr,
    process: Option<Process>,
    /// Prosody opens its component port only when a component is declared.
    has_components: bool,
    dir: TempDir,
    config: String,
}

/// Whether Prosody is installed; in CI (`OSTRACON_REQUIRE_INTEGRATION=1`) its absence is a failure.
pub fn available() -> bool {
    let found = Command::new("prosody").arg("--help").output().is_ok() || Path::new("/usr/bin/prosody").exists();
    if !found {
        assert!(!integration_required(), "prosody is not installed but OSTRACON_REQUIRE_INTEGRATION=1");
        eprintln!("skipping: prosody is not installed (scripts/test installs it)");
    }
    found
}

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Prosody {
    /// One server for `hosts` on 127.0.0.1 with free ports and the given components.
    pub fn start(hosts: &[&str], components: &[ComponentSpec]) -> Self {
        Self::start_on(hosts, IpAddr::from([127, 0, 0, 1]), None, components)
    }

    /// A server bound to `ip`. With `hosts_file`, s2s is on port 5269 and names resolve through it.
    pub fn start_on(hosts: &[&str], ip: IpAddr, hosts_file: Option<&Path>, components: &[ComponentSpec]) -> Self {
        Self::start_configured(hosts, ip, hosts_file, components, "")
    }

    /// Like [`Prosody::start_on`], with `extra` appended to the configuration (say, a MUC
    /// component with its modules).
    pub fn start_configured(
        hosts: &[&str],
        ip: IpAddr,
        hosts_file: Option<&Path>,
        components: &[ComponentSpec],
        extra: &str,
    ) -> Self {
        let dir = TempDir::new("prosody");
        let base = dir.path();
        for sub in ["data", "certs"] {
            std::fs::create_dir_all(base.join(sub)).expect("prosody dirs");
        }
        let component_port = free_port();
        let (c2s, s2s) = if hosts_file.is_some() { (5222, 5269) } else { (free_port(), free_port()) };
        let mut config = format!(
            r#"run_as_root = {root}
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs"
log = {{ {{ levels = {{ min = "{level}" }}, to = "file", filename = "{dir}/prosody.log" }} }}
interfaces = {{ "{ip}" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
component_interfaces = {{ "{ip}" }}
component_ports = {{ {component_port} }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = false
s2s_require_encryption = false
s2s_secure_auth = false
allow_unencrypted_plain_auth = true
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "dialback"; "posix"; "admin_shell" }}
modules_disabled = {{ "tls" }}
"#,
            root = if is_root() { "true" } else { "false" },
            // Tests log every stanza (failures print the log); benchmarks log as an operator
            // would, since Prosody's debug log of every stanza costs it more than routing them.
            level = std::env::var("OSTRACON_PROSODY_LOG").unwrap_or_else(|_| "debug".to_owned()),
            dir = base.display(),
        );
        // Extra settings, for benchmarks that tune the server as an operator would.
        if let Ok(extra) = std::env::var("OSTRACON_PROSODY_EXTRA") {
            config.push_str(&extra);
            config.push('\n');
        }
        if let Some(file) = hosts_file {
            config.push_str(&format!(
                "unbound = {{ hoststxt = \"{}\", resolvconf = false, forward = \"127.0.0.1\" }}\n",
                file.display()
            ));
        }
        for host in hosts {
            config.push_str(&format!("VirtualHost \"{host}\"\n"));
        }
        for component in components {
            config.push_str(&format!(
                "Component \"{}\"\n    component_secret = \"{}\"\n",
                component.domain, component.secret
            ));
        }
        config.push_str(extra);
        let config_path = base.join("prosody.cfg.lua");
        std::fs::write(&config_path, &config).expect("write prosody config");
        let mut server = Self {
            host: hosts.first().copied().unwrap_or("localhost").to_owned(),
            component_address: SocketAddr::new(ip, component_port),
            has_components: !components.is_empty(),
            ip,
            c2s_address: SocketAddr::new(ip, c2s),
            process: None,
            config: config_path.display().to_string(),
            dir,
        };
        server.run();
        server
    }

    fn run(&mut self) {
        let mut command = Command::new("prosody");
        command.arg("-F").arg("--config").arg(&self.config);
        let log = self.dir.path().join("prosody-console.log");
        let process = Process::spawn("prosody", command, &log).expect("start prosody");
        let port = if self.has_components { self.component_address } else { self.c2s_address };
        assert!(
            wait_for_port(port, Duration::from_secs(20)),
            "prosody did not open its component (or c2s) port:\n{}\n{}",
            process.output(),
            std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
        );
        self.process = Some(process);
    }

    /// Stops the server (SIGKILL), as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.signal_and_wait("KILL");
        }
    }

    /// Starts it again with the same configuration and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Reloads the configuration (SIGHUP), as `prosodyctl reload` does.
    pub fn reload(&self) {
        if let Some(process) = &self.process {
            process.signal("HUP");
        }
    }

    /// Where the server keeps its files (for test fixtures such as firewall scripts).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates an account with `prosodyctl register`.
    pub fn register(&self, user: &str, host: &str, password: &str) {
        let output = Command::new("prosodyctl")
            .args(["--config", &self.config, "register", user, host, password])
            .output()
            .expect("run prosodyctl");
        assert!(
            output.status.success(),
            "prosodyctl register {user}@{host}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs one command in the running server's admin shell (`prosodyctl shell`) and returns
    /// what it printed.
    pub fn shell(&self, command: &str) -> String {
        let output = Command::new("prosodyctl")
            .args(["--config", &self.config, "shell", command])
            .output()
            .expect("run prosodyctl shell");
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    }

    /// Prosody's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }
}
