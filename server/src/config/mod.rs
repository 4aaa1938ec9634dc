//! The configuration file (`ostracon.toml`): every section refuses unknown keys, every value
//! has a named default, and [`Config::check`] refuses insecure or inconsistent settings with
//! a message saying what to change.
//!
//! With no file at all, [`Config::default`] is the embedded setup: data under
//! `./ostracon-data`, SQLite there, HTTP on 127.0.0.1:8080, XMPP off.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use ostracon_protocol::ids::{BareJid, Cidr, Domain, Offender};
use ostracon_store::ledger::LedgerConfig;
use ostracon_store::policy::ListingPolicy;
use ostracon_store::scope::PeerScope;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

mod dnsbl;
mod reputation;
mod rtbl;

pub use dnsbl::DnsblSection;
pub use reputation::ReputationSection;
pub use rtbl::{PushTarget, RtblSection, RtblSettings};

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this node is and where it keeps its data.
    #[serde(default)]
    pub node: NodeSection,
    /// The HTTP listener.
    #[serde(default)]
    pub http: HttpSection,
    /// The database.
    #[serde(default)]
    pub database: DatabaseSection,
    /// Listing rules.
    #[serde(default)]
    pub lists: ListsSection,
    /// The reputation function and the listing quorum.
    #[serde(default)]
    pub reputation: ReputationSection,
    /// The XMPP component (absent: XMPP off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmpp: Option<XmppSection>,
    /// The XEP-0060 RTBL service on the component (needs `[xmpp]`).
    #[serde(default)]
    pub rtbl: RtblSection,
    /// The DNSBL zone (absent: no DNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnsbl: Option<DnsblSection>,
}

/// `[node]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The operator's XMPP domain.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Where the key, the admin token and (by default) the database live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

fn default_domain() -> String {
    "localhost".to_owned()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("ostracon-data")
}

impl Default for NodeSection {
    fn default() -> Self {
        Self { domain: default_domain(), data_dir: default_data_dir() }
    }
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Requests per second per client address (0 disables the limit).
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Burst per client address.
    #[serde(default = "default_burst")]
    pub rate_burst: u32,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the client;
    /// exempt from the per-client connection cap.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Open connections in all (accept waits at the cap); keep it under the open-file limit.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64); 0 disables.
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: usize,
    /// Seconds a client has to send a request's head; also how long an idle connection stays open.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// Seconds from a request's head to its answer.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
}

fn default_max_connections() -> usize {
    4_096
}

fn default_max_connections_per_client() -> usize {
    64
}

fn default_header_read_timeout() -> u64 {
    10
}

fn default_request_timeout() -> u64 {
    30
}

impl HttpSection {
    /// The listener's limits.
    pub fn limits(&self) -> ostracon_web::serve::HttpLimits {
        ostracon_web::serve::HttpLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs.max(1)),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs.max(1)),
            max_connections: self.max_connections.max(1),
            max_connections_per_ip: self.max_connections_per_client,
            exempt: self.trusted_proxies.clone(),
            ..ostracon_web::serve::HttpLimits::default()
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_rate() -> u32 {
    50
}

fn default_burst() -> u32 {
    200
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            rate_per_second: default_rate(),
            rate_burst: default_burst(),
            trusted_proxies: Vec::new(),
            max_connections: default_max_connections(),
            max_connections_per_client: default_max_connections_per_client(),
            header_read_timeout_secs: default_header_read_timeout(),
            request_timeout_secs: default_request_timeout(),
        }
    }
}

/// `[database]`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// `sqlite://…` or `postgres://…`; default: `DATA_DIR/ostracon.db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// This process's name among the replicas of the node on one PostgreSQL database, in
    /// `/healthz`; default: the host name and the HTTP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

impl fmt::Debug for DatabaseSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("DatabaseSection")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("replica", &self.replica)
            .finish()
    }
}

/// `[lists]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListsSection {
    /// First-listing TTL for low-severity incidents (seconds).
    #[serde(default = "ttl_low")]
    pub base_ttl_low_secs: i64,
    /// ... medium.
    #[serde(default = "ttl_medium")]
    pub base_ttl_medium_secs: i64,
    /// ... high.
    #[serde(default = "ttl_high")]
    pub base_ttl_high_secs: i64,
    /// Each relisting multiplies the TTL by this.
    #[serde(default = "escalation")]
    pub escalation_factor: i64,
    /// Longest TTL.
    #[serde(default = "max_ttl")]
    pub max_ttl_secs: i64,
    /// How long tombstones stay in the change feed.
    #[serde(default = "horizon")]
    pub tombstone_horizon_secs: i64,
    /// The widest IPv4 block a peer's report may list (wider ones wait for the operator).
    #[serde(default = "widest_ipv4")]
    pub peer_widest_ipv4_prefix: u8,
    /// The widest IPv6 block a peer's report may list.
    #[serde(default = "widest_ipv6")]
    pub peer_widest_ipv6_prefix: u8,
    /// Refuse the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
    /// 2001:db8::/32) from peers. Only test federations turn this off.
    #[serde(default = "refuse_documentation")]
    pub refuse_documentation_ranges: bool,
    /// Never listed from a peer's report: addresses, blocks or domains (your XMPP server's
    /// addresses, say). The node's own domain and component are always protected.
    #[serde(default)]
    pub protected: Vec<String>,
    /// The brake: entries one peer's reports may list or delist per hour; the rest waits for
    /// the operator (`ostracon held`).
    #[serde(default = "peer_hourly_budget")]
    pub peer_hourly_budget: u32,
}

fn peer_hourly_budget() -> u32 {
    PeerScope::default().hourly_budget
}
fn widest_ipv4() -> u8 {
    PeerScope::default().widest_ipv4_prefix
}
fn widest_ipv6() -> u8 {
    PeerScope::default().widest_ipv6_prefix
}
fn refuse_documentation() -> bool {
    PeerScope::default().refuse_documentation
}

fn ttl_low() -> i64 {
    ListingPolicy::default().base_ttl_low_secs
}
fn ttl_medium() -> i64 {
    ListingPolicy::default().base_ttl_medium_secs
}
fn ttl_high() -> i64 {
    ListingPolicy::default().base_ttl_high_secs
}
fn escalation() -> i64 {
    ListingPolicy::default().escalation_factor
}
fn max_ttl() -> i64 {
    ListingPolicy::default().max_ttl_secs
}
fn horizon() -> i64 {
    ListingPolicy::default().tombstone_horizon_secs
}

impl Default for ListsSection {
    fn default() -> Self {
        let policy = ListingPolicy::default();
        Self {
            base_ttl_low_secs: policy.base_ttl_low_secs,
            base_ttl_medium_secs: policy.base_ttl_medium_secs,
            base_ttl_high_secs: policy.base_ttl_high_secs,
            escalation_factor: policy.escalation_factor,
            max_ttl_secs: policy.max_ttl_secs,
            tombstone_horizon_secs: policy.tombstone_horizon_secs,
            peer_widest_ipv4_prefix: widest_ipv4(),
            peer_widest_ipv6_prefix: widest_ipv6(),
            refuse_documentation_ranges: refuse_documentation(),
            protected: Vec::new(),
            peer_hourly_budget: peer_hourly_budget(),
        }
    }
}

impl ListsSection {
    /// As the store's policy.
    pub fn policy(&self) -> ListingPolicy {
        ListingPolicy {
            base_ttl_low_secs: self.base_ttl_low_secs,
            base_ttl_medium_secs: self.base_ttl_medium_secs,
            base_ttl_high_secs: self.base_ttl_high_secs,
            escalation_factor: self.escalation_factor,
            max_ttl_secs: self.max_ttl_secs,
            tombstone_horizon_secs: self.tombstone_horizon_secs,
        }
    }
}

/// `[xmpp]`: the node as an XEP-0114 component of the operator's server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppSection {
    /// The component JID, e.g. `incidents.example.org`.
    pub component: String,
    /// The server's component port, e.g. `127.0.0.1:5347`.
    pub server: String,
    /// File holding the shared secret (preferred: keeps the secret out of this file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The shared secret inline (only if this file is private).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Approve incoming buddy requests without the operator. Off unless set: XEP-0267 says
    /// servers must not approve without their administrator unless explicitly configured.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_approve: bool,
    /// XEP-0157 abuse addresses announced in disco (`xmpp:abuse@example.org`, `mailto:…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abuse_addresses: Vec<String>,
    /// How many times a report may be forwarded between buddies (0: never forward; at most 7).
    /// It bounds both what we forward and the chains we accept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub forward_hops: u8,
}

fn is_zero(value: &u8) -> bool {
    *value == 0
}

impl fmt::Debug for XmppSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XmppSection")
            .field("component", &self.component)
            .field("server", &self.server)
            .field("secret_file", &self.secret_file)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("auto_approve", &self.auto_approve)
            .field("abuse_addresses", &self.abuse_addresses)
            .field("forward_hops", &self.forward_hops)
            .finish()
    }
}

/// How serious a finding of [`Config::check`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The node refuses to start.
    Error,
    /// Allowed, but the operator should know.
    Warning,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{label}: {}", self.message)
    }
}

/// The file name `init` writes inside the data directory.
pub const CONFIG_FILE: &str = "ostracon.toml";
/// The admin token file.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The component secret file `init` writes.
pub const SECRET_FILE: &str = "component.secret";

impl Config {
    /// Reads and parses a file. Relative data directories are taken relative to the file.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ServerError::Io { path: path.to_path_buf(), source })?;
        let mut config: Self =
            toml::from_str(&text).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        if config.node.data_dir.is_relative()
            && let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            config.node.data_dir = parent.join(&config.node.data_dir);
        }
        Ok(config)
    }

    /// The component JID, when XMPP is configured.
    pub fn component(&self) -> Result<Option<BareJid>, ServerError> {
        self.xmpp
            .as_ref()
            .map(|xmpp| BareJid::parse(&xmpp.component))
            .transpose()
            .map_err(|e| ServerError::Config(format!("[xmpp] component: {e}")))
    }

    /// How the ledger names and signs its log and what it lets peers list: the node's own
    /// domain and component are always out of a peer's scope.
    pub fn ledger_config(&self) -> Result<LedgerConfig, ServerError> {
        let lists = &self.lists;
        let mut scope = PeerScope {
            widest_ipv4_prefix: lists.peer_widest_ipv4_prefix,
            widest_ipv6_prefix: lists.peer_widest_ipv6_prefix,
            refuse_documentation: lists.refuse_documentation_ranges,
            protected_domains: vec![Domain::parse(&self.node.domain).map_err(|e| ServerError::Config(e.to_string()))?],
            protected_networks: Vec::new(),
            hourly_budget: lists.peer_hourly_budget,
        };
        if let Some(component) = self.component()? {
            scope.protected_domains.push(component.domain().clone());
        }
        for value in &lists.protected {
            match Offender::parse(value).map_err(|e| ServerError::Config(format!("[lists] protected: {e}")))? {
                Offender::Ip(ip) => scope.protected_networks.push(Cidr::from_net(ipnet::IpNet::from(ip))),
                Offender::Cidr(cidr) => scope.protected_networks.push(cidr),
                Offender::Domain(domain) => scope.protected_domains.push(domain),
                Offender::Jid(jid) => {
                    return Err(ServerError::Config(format!(
                        "[lists] protected: {jid} is a JID; name an address or a domain"
                    )));
                }
            }
        }
        Ok(LedgerConfig {
            origin: format!("{}/ostracon", self.node.domain),
            key_name: self.node.domain.clone(),
            policy: lists.policy(),
            reputation: self.reputation.params(),
            scope,
        })
    }

    /// The database URL (default: SQLite in the data directory).
    pub fn database_url(&self) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.node.data_dir.join("ostracon.db").display()))
    }

    /// The HTTP base URL CLI verbs talk to.
    pub fn api_url(&self) -> String {
        let listen = self.http.listen;
        let host = if listen.ip().is_unspecified() { "127.0.0.1".to_owned() } else { listen.ip().to_string() };
        if listen.is_ipv6() && !listen.ip().is_unspecified() {
            format!("http://[{host}]:{}", listen.port())
        } else {
            format!("http://{host}:{}", listen.port())
        }
    }

    /// The component secret, from the file or inline.
    pub fn xmpp_secret(&self) -> Result<Option<String>, ServerError> {
        let Some(xmpp) = &self.xmpp else { return Ok(None) };
        if let Some(path) = &xmpp.secret_file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ServerError::Io { path: path.clone(), source })?;
            return Ok(Some(text.trim().to_owned()));
        }
        Ok(xmpp.secret.clone())
    }

    /// Checks the configuration as loaded from `file` (if any). Errors mean "refuse to start".
    pub fn check(&self, file: Option<&Path>) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut error = |message: String| findings.push(Finding { severity: Severity::Error, message });
        let domain = Domain::parse(&self.node.domain);
        if let Err(e) = &domain {
            error(format!("[node] domain: {e}"));
        }
        for problem in self.reputation.problems() {
            error(problem);
        }
        let lists = &self.lists;
        for (name, value) in [
            ("base_ttl_low_secs", lists.base_ttl_low_secs),
            ("base_ttl_medium_secs", lists.base_ttl_medium_secs),
            ("base_ttl_high_secs", lists.base_ttl_high_secs),
            ("max_ttl_secs", lists.max_ttl_secs),
            ("tombstone_horizon_secs", lists.tombstone_horizon_secs),
        ] {
            if value <= 0 {
                error(format!("[lists] {name} must be positive (is {value})"));
            }
        }
        if lists.escalation_factor < 1 {
            error(format!("[lists] escalation_factor must be at least 1 (is {})", lists.escalation_factor));
        }
        if lists.base_ttl_low_secs > lists.max_ttl_secs
            || lists.base_ttl_medium_secs > lists.max_ttl_secs
            || lists.base_ttl_high_secs > lists.max_ttl_secs
        {
            error("[lists] a base TTL is longer than max_ttl_secs".to_owned());
        }
        if self.http.rate_per_second > 0 && self.http.rate_burst == 0 {
            error("[http] rate_burst must be at least 1 when rate limiting is on".to_owned());
        }
        // Trusting everyone's X-Forwarded-For lets any client pick its own rate bucket.
        if let Some(wide) = self.http.trusted_proxies.iter().find(|net| net.prefix_len() < 8) {
            error(format!(
                "[http] trusted_proxies: {wide} would let any client forge X-Forwarded-For; list your proxies' addresses"
            ));
        }
        if let Err(problem) = self.ledger_config() {
            error(problem.to_string());
        }
        if self.http.max_connections == 0 {
            error("[http] max_connections must be at least 1".to_owned());
        }
        if let Some(Err(problem)) = self.dnsbl.as_ref().map(|dnsbl| dnsbl.settings(&self.node.domain)) {
            error(problem);
        }
        let file_mode = file.and_then(|path| std::fs::metadata(path).ok()).map(|m| m.permissions().mode() & 0o777);
        let file_is_private = file_mode.is_none_or(|mode| mode & 0o077 == 0);
        if let Some(url) = &self.database.url {
            if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                error(format!(
                    "[database] url must start with sqlite:, postgres:// or postgresql:// (is {:?})",
                    redact(url)
                ));
            }
            if url_has_password(url) && !file_is_private {
                error("[database] url contains a password but the configuration file is readable by other users; chmod 600 it or use a password file (PGPASSFILE)".to_owned());
            }
        }
        if let Some(xmpp) = &self.xmpp {
            match BareJid::parse(&xmpp.component) {
                Ok(component) if !component.is_domain() => {
                    error(format!("[xmpp] component {:?} must be a domain JID (no localpart)", xmpp.component));
                }
                Ok(component) => {
                    if let Ok(domain) = &domain
                        && !component.domain().is_within(domain)
                    {
                        error(format!(
                            "[xmpp] component {} is not under the node's domain {domain}; peers check that reports from the component speak for the domain",
                            component
                        ));
                    }
                }
                Err(e) => error(format!("[xmpp] component: {e}")),
            }
            if let Ok(domain) = &domain
                && let Err(problems) = self.rtbl.settings(domain)
            {
                problems.into_iter().for_each(&mut error);
            }
            if xmpp.forward_hops > 7 {
                error(format!("[xmpp] forward_hops is at most 7 (is {})", xmpp.forward_hops));
            }
            for address in &xmpp.abuse_addresses {
                let scheme_ok = ["xmpp:", "mailto:", "https:"].iter().any(|s| address.starts_with(s));
                if !scheme_ok || address.len() > 256 || address.chars().any(char::is_whitespace) {
                    error(format!("[xmpp] abuse address {address:?} must be an xmpp:, mailto: or https: URI"));
                }
            }
            if xmpp.server.parse::<SocketAddr>().is_err() {
                error(format!(
                    "[xmpp] server must be HOST:PORT of the component listener, e.g. 127.0.0.1:5347 (is {:?})",
                    xmpp.server
                ));
            }
            match (&xmpp.secret, &xmpp.secret_file) {
                (Some(_), Some(_)) => error("[xmpp] set secret or secret_file, not both".to_owned()),
                (None, None) => error("[xmpp] needs secret_file (or secret)".to_owned()),
                (Some(secret), None) => {
                    if !file_is_private {
                        error("[xmpp] secret is inline but the configuration file is readable by other users; move it to secret_file or chmod 600 the file".to_owned());
                    }
                    if secret.len() < 16 {
                        error(
                            "[xmpp] secret is shorter than 16 characters; XEP-0114 has no other protection".to_owned(),
                        );
                    }
                }
                (None, Some(path)) => match std::fs::metadata(path) {
                    Err(e) => error(format!("[xmpp] secret_file {}: {e}", path.display())),
                    Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                        error(format!(
                            "[xmpp] secret_file {} is readable by other users; chmod 600 it",
                            path.display()
                        ));
                    }
                    Ok(_) => {
                        if std::fs::read_to_string(path).map(|s| s.trim().len()).unwrap_or(0) < 16 {
                            error(format!("[xmpp] secret in {} is shorter than 16 characters", path.display()));
                        }
                    }
                },
            }
        }
        let key_path = self.node.data_dir.join(crate::keyfile::KEY_FILE);
        if let Ok(meta) = std::fs::metadata(&key_path)
            && meta.permissions().mode() & 0o077 != 0
        {
            error(format!("{} is readable by other users; chmod 600 it", key_path.display()));
        }
        if let Ok(meta) = std::fs::metadata(&self.node.data_dir)
            && meta.permissions().mode() & 0o002 != 0
        {
            error(format!("data directory {} is world-writable", self.node.data_dir.display()));
        }
        let mut warn = |message: String| findings.push(Finding { severity: Severity::Warning, message });
        if !self.http.listen.ip().is_loopback() {
            warn(format!(
                "[http] listen {} is reachable from the network: put a TLS-terminating proxy in front so operator tokens never cross the network in clear",
                self.http.listen
            ));
        }
        if self.http.rate_per_second == 0 {
            warn("[http] rate limiting is off (rate_per_second = 0)".to_owned());
        }
        if self.xmpp.as_ref().is_some_and(|x| x.auto_approve) {
            warn(
                "[xmpp] auto_approve is on: any node that asks becomes an observe-only buddy without the operator"
                    .to_owned(),
            );
        }
        if self.xmpp.is_none() {
            warn("[xmpp] is not configured: the node publishes lists but exchanges nothing with peers".to_owned());
        }
        findings
    }
}

/// Whether a database URL carries a password: in its user information (`user:secret@host`) or
/// as a `password` query parameter, which libpq and sqlx both accept.
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_user_information = address.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'));
    in_user_information
        || query.split('&').any(|pair| pair.split('=').next().is_some_and(|key| key.eq_ignore_ascii_case("password")))
}

fn redact(url: &str) -> String {
    if url_has_password(url) { "<url with password>".to_owned() } else { url.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_found_in_the_user_information_and_in_the_query() {
        assert!(url_has_password("postgres://ostracon:secret@db.example/ostracon"));
        assert!(url_has_password("postgres://ostracon@db.example/ostracon?sslmode=require&password=secret"));
        assert!(url_has_password("postgresql://db.example/ostracon?PASSWORD=secret"));
        assert!(!url_has_password("postgres://ostracon@db.example/ostracon?sslmode=require"));
        assert!(!url_has_password("sqlite:///var/lib/ostracon/ostracon.db"));
        assert_eq!(redact("postgres://u@h/db?password=secret"), "<url with password>");
    }

    #[test]
    fn trusting_every_address_as_a_proxy_is_refused() {
        let mut config = Config::default();
        config.http.trusted_proxies = vec!["0.0.0.0/0".parse().unwrap()];
        assert!(
            config.check(None).iter().any(|f| f.severity == Severity::Error && f.message.contains("trusted_proxies"))
        );
        config.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(!config.check(None).iter().any(|f| f.message.contains("trusted_proxies")));
    }

    #[test]
    fn defaults_are_the_embedded_setup_and_pass() {
        let config = Config::default();
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url(), "sqlite://ostracon-data/ostracon.db");
        assert!(config.check(None).iter().all(|f| f.severity == Severity::Warning));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = toml::from_str::<Config>("[node]\ndomian = \"x\"\n").unwrap_err().to_string();
        assert!(error.contains("domian"), "{error}");
    }

    #[test]
    fn the_example_configuration_parses_and_is_consistent() {
        let config: Config = toml::from_str(include_str!("../../../ostracon.example.toml")).unwrap();
        assert_eq!(config.node.domain, "example.org");
        let errors: Vec<_> = config.check(None).into_iter().filter(|f| f.severity == Severity::Error).collect();
        // The example names a secret file that does not exist on this machine; nothing else may fail.
        assert!(errors.iter().all(|f| f.message.contains("secret_file")), "{errors:?}");
        let dnsbl = config.dnsbl.as_ref().expect("the example shows [dnsbl]").settings("example.org").unwrap();
        assert_eq!((dnsbl.zone.as_str(), dnsbl.nameserver.as_str()), ("bl.example.org", "ns.bl.example.org"));
        let mut bad = config.dnsbl.clone().unwrap();
        bad.zone = "no zone".into();
        assert!(bad.settings("example.org").is_err());
    }

    #[test]
    fn insecure_and_inconsistent_settings_are_refused() {
        let mut config = Config::default();
        config.node.domain = "example.org".into();
        config.xmpp = Some(XmppSection {
            component: "incidents.other.org".into(),
            server: "localhost".into(),
            secret_file: None,
            secret: Some("short".into()),
            auto_approve: false,
            abuse_addresses: vec!["http://nope".into()],
            forward_hops: 9,
        });
        config.reputation.ignore_below = 5;
        config.reputation.category_weights.insert("nonsense".into(), 1.0);
        config.lists.escalation_factor = 0;
        config.lists.base_ttl_high_secs = config.lists.max_ttl_secs + 1;
        config.database.url = Some("mysql://x".into());
        let messages: Vec<String> =
            config.check(None).into_iter().filter(|f| f.severity == Severity::Error).map(|f| f.message).collect();
        for expected in [
            "not under the node's domain",
            "HOST:PORT",
            "shorter than 16",
            "escalation_factor",
            "max_ttl_secs",
            "url must start",
            "abuse address",
            "forward_hops",
            "ignore_below",
            "unknown category",
        ] {
            assert!(messages.iter().any(|m| m.contains(expected)), "missing {expected:?} in {messages:?}");
        }
        assert!(!format!("{config:?}").contains("short"), "secrets are redacted in Debug");
    }

    #[test]
    fn a_policy_in_which_one_accept_buddy_lists_alone_is_refused() {
        let refused = |adjust: fn(&mut Config)| {
            let mut config = Config::default();
            adjust(&mut config);
            config.check(None).iter().any(|f| f.severity == Severity::Error && f.message.contains("list alone"))
        };
        assert!(!refused(|_| {}), "the defaults keep the quorum");
        assert!(refused(|c| c.reputation.accept_weight = 1.5));
        assert!(refused(|c| c.reputation.listing_threshold = 0.4));
        assert!(refused(|c| {
            c.reputation.category_weights.insert("spam".into(), 2.0);
        }));
        assert!(!refused(|c| {
            c.reputation.category_weights.insert("spam".into(), 1.5);
        }));
    }
}
