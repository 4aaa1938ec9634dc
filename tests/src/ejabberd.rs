//! A real ejabberd (Debian's 23.01 and ejabberd-mod-spam-filter) for integration tests,
//! started from a generated configuration in its own directories on a loopback address of
//! the test's choosing, stopped on drop. Never the system service.
//!
//! ejabberd resolves A/AAAA records through libc, so it runs in a mount namespace of its own
//! (`unshare -m`) where `/etc/hosts` names the test's servers and `/etc/resolv.conf` points at
//! an address with no DNS server (SRV lookups fail at once); the host's files are untouched.
//! That needs root, as the package's `ejabberdctl` does (it runs the node as `ejabberd`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Process, TempDir, free_port, integration_required, wait_for_port};

/// Where Debian installs ejabberd's modules.
const EBIN: &str = "/usr/lib/x86_64-linux-gnu/ejabberd-23.01-1/ebin";

/// Whether ejabberd and mod_spam_filter are installed and we may run them (root); in CI
/// (`OSTRACON_REQUIRE_INTEGRATION=1`) anything missing is a failure.
pub fn available() -> bool {
    let installed =
        Path::new("/usr/sbin/ejabberdctl").exists() && Path::new(EBIN).join("mod_spam_filter.beam").exists();
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !(installed && root) {
        let why = if installed { "it needs root (a mount namespace, and ejabberdctl su's)" } else { "not installed" };
        assert!(!integration_required(), "ejabberd tests cannot run ({why}) but OSTRACON_REQUIRE_INTEGRATION=1");
        eprintln!("skipping: ejabberd with mod_spam_filter: {why} (scripts/test installs it)");
    }
    installed && root
}

/// A running ejabberd.
pub struct Ejabberd {
    /// The host it serves.
    pub host: String,
    /// Where clients connect (plain, no TLS: tests only).
    pub c2s_address: SocketAddr,
    dir: TempDir,
    process: Option<Process>,
}

impl Ejabberd {
    /// Serves `host` on `ip` (s2s on 5269) with mod_spam_filter reading `spam_jids_file`;
    /// `hosts` is the `/etc/hosts` its namespace sees (other servers' names).
    pub fn start(host: &str, ip: IpAddr, hosts: &str, spam_jids_file: &Path) -> Self {
        let dir = TempDir::new("ejabberd");
        let base = dir.path();
        for sub in ["logs", "spool", "run"] {
            std::fs::create_dir_all(base.join(sub)).expect("ejabberd dirs");
        }
        let c2s = free_port();
        let config = format!(
            r#"hosts:
  - "{host}"
loglevel: info
log_rotate_count: 0
listen:
  -
    port: {c2s}
    ip: "{ip}"
    module: ejabberd_c2s
    starttls_required: false
  -
    port: 5269
    ip: "{ip}"
    module: ejabberd_s2s_in
s2s_use_starttls: false
auth_method: internal
auth_password_format: plain
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
shaper_rules:
  c2s_shaper: none
modules:
  mod_disco: {{}}
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
  mod_spam_filter:
    spam_jids_file: "{jids}"
"#,
            jids = spam_jids_file.display()
        );
        std::fs::write(base.join("ejabberd.yml"), config).expect("write ejabberd.yml");
        let node = format!("ostracon_test_{}_{}@localhost", std::process::id(), c2s);
        std::fs::write(
            base.join("ejabberdctl.cfg"),
            format!(
                "ERLANG_NODE={node}\nEJABBERD_PID_PATH={}/run/ejabberd.pid\nINET_DIST_INTERFACE=127.0.0.1\n",
                base.display()
            ),
        )
        .expect("write ejabberdctl.cfg");
        std::fs::write(base.join("hosts"), format!("127.0.0.1 localhost\n{hosts}")).expect("write hosts");
        // No DNS server listens there: SRV lookups fail at once and ejabberd falls back to A.
        std::fs::write(base.join("resolv.conf"), "nameserver 127.0.0.1\n").expect("write resolv.conf");
        let status = Command::new("chown").args(["-R", "ejabberd:ejabberd"]).arg(base).status().expect("chown");
        assert!(status.success(), "chown the ejabberd directories");
        let mut server = Self { host: host.to_owned(), c2s_address: SocketAddr::new(ip, c2s), dir, process: None };
        server.run();
        server
    }

    fn ctl_args(&self) -> Vec<String> {
        let base = self.dir.path().display();
        vec![
            "--config-dir".into(),
            base.to_string(),
            "--config".into(),
            format!("{base}/ejabberd.yml"),
            "--ctl-config".into(),
            format!("{base}/ejabberdctl.cfg"),
            "--logs".into(),
            format!("{base}/logs"),
            "--spool".into(),
            format!("{base}/spool"),
        ]
    }

    fn run(&mut self) {
        let base = self.dir.path();
        let ctl = self.ctl_args().iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ");
        let script = format!(
            "mount --bind '{hosts}' /etc/hosts && mount --bind '{resolv}' /etc/resolv.conf && exec ejabberdctl {ctl} foreground",
            hosts = base.join("hosts").display(),
            resolv = base.join("resolv.conf").display(),
        );
        let mut command = Command::new("unshare");
        command.args(["-m", "sh", "-c", &script]);
        let process = Process::spawn("ejabberd", command, &base.join("console.log")).expect("start ejabberd");
        assert!(
            wait_for_port(self.c2s_address, Duration::from_secs(60)),
            "ejabberd did not open its c2s port:\n{}\n{}",
            process.output(),
            self.log()
        );
        self.process = Some(process);
    }

    /// Runs `ejabberdctl` with this server's configuration.
    pub fn ctl(&self, args: &[&str]) -> String {
        let output = Command::new("ejabberdctl").args(self.ctl_args()).args(args).output().expect("run ejabberdctl");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "ejabberdctl {args:?}: {text}");
        text
    }

    /// Creates an account.
    pub fn register(&self, user: &str, password: &str) {
        self.ctl(&["register", user, &self.host, password]);
    }

    /// `ejabberdctl reload_spam_filter_files HOST`: mod_spam_filter reads its files again.
    pub fn reload_spam_filter(&self) -> String {
        self.ctl(&["reload_spam_filter_files", &self.host])
    }

    /// ejabberd's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/ejabberd.log")).unwrap_or_default()
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        // The node runs as `ejabberd` under su: stop it through its own control channel, then
        // make sure nothing of it is left.
        let _ = Command::new("ejabberdctl").args(self.ctl_args()).arg("stop").output();
        if let Some(mut process) = self.process.take() {
            process.signal_and_wait("KILL");
        }
        let _ = Command::new("pkill").args(["-f", &self.path().display().to_string()]).status();
    }
}
