//! `ostracon check`, in the spirit of `prosodyctl check`: the configuration, the component
//! secret, the component handshake against the configured XMPP server (or, while the node
//! runs, its own link), and each peer's reachability as the running node sees it.

use std::path::Path;

use crate::client::ApiClient;
use crate::config::{ADMIN_TOKEN_FILE, Config, Severity};
use crate::keyfile;
use crate::xmpp::connection::{LinkConfig, check_handshake};

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Whether it is fine.
    pub ok: bool,
    /// What was checked.
    pub what: String,
    /// What was found, and for a problem what to do.
    pub detail: String,
}

fn line(ok: bool, what: &str, detail: impl Into<String>) -> Checked {
    Checked { ok, what: what.to_owned(), detail: detail.into() }
}

/// Runs every check for the configuration at `path` (None: the built-in defaults).
pub async fn check(config: &Config, path: Option<&Path>) -> Vec<Checked> {
    let mut out = Vec::new();
    let findings = config.check(path);
    let errors: Vec<String> =
        findings.iter().filter(|f| f.severity == Severity::Error).map(|f| f.message.clone()).collect();
    let source = path.map_or_else(|| "the built-in defaults (no --config)".to_owned(), |p| p.display().to_string());
    if errors.is_empty() {
        out.push(line(true, "configuration", source));
    } else {
        out.push(line(false, "configuration", format!("{source}: {}", errors.join("; "))));
    }
    for warning in findings.iter().filter(|f| f.severity == Severity::Warning) {
        out.push(line(true, "configuration", format!("warning: {}", warning.message)));
    }
    let Some(xmpp) = &config.xmpp else {
        out.push(line(true, "xmpp", "not configured: the node serves lists and takes reports over HTTP only"));
        return out;
    };
    let secret = match config.xmpp_secret() {
        Ok(Some(secret)) => {
            out.push(line(true, "component secret", "readable"));
            secret
        }
        Ok(None) => {
            out.push(line(false, "component secret", "[xmpp] has neither secret_file nor secret"));
            return out;
        }
        Err(error) => {
            out.push(line(false, "component secret", error.to_string()));
            return out;
        }
    };
    match keyfile::hold(&config.node.data_dir, "check") {
        // Nobody runs on this data: try the handshake ourselves.
        Ok(_lock) => {
            let Ok(server) = xmpp.server.parse() else {
                out.push(line(false, "xmpp server", format!("{:?} is not HOST:PORT", xmpp.server)));
                return out;
            };
            let link = LinkConfig {
                component: xmpp.component.clone(),
                server,
                secret: crate::xmpp::connection::ComponentSecret::new(secret),
                server_domain: config.node.domain.clone(),
            };
            match check_handshake(&link).await {
                Ok(()) => out.push(line(
                    true,
                    "xmpp server",
                    format!("{server} accepts component {} with this secret", xmpp.component),
                )),
                Err(diagnosis) => out.push(line(false, "xmpp server", diagnosis)),
            }
            out.push(line(true, "peers", "the node is not running: start it to check its peers"));
        }
        // The running node holds the component: ask it how its link and peers are.
        Err(_) => out.extend(running_node(config).await),
    }
    out
}

async fn running_node(config: &Config) -> Vec<Checked> {
    let token = std::fs::read_to_string(config.node.data_dir.join(ADMIN_TOKEN_FILE)).ok().map(|t| t.trim().to_owned());
    let status = match ApiClient::new(&config.api_url(), token) {
        Ok(client) => client.json(reqwest::Method::GET, "/v1/status", None).await,
        Err(error) => Err(error),
    };
    let status = match status {
        Ok(status) => status,
        Err(error) => return vec![line(false, "node", format!("running, but its API did not answer: {error}"))],
    };
    let mut out = Vec::new();
    let xmpp = &status["xmpp"];
    match (xmpp["state"].as_str(), xmpp["last_error"].as_str()) {
        (Some("online"), _) => out.push(line(true, "xmpp server", "the running node's link is online")),
        (state, error) => out.push(line(
            false,
            "xmpp server",
            format!("the running node's link is {}: {}", state.unwrap_or("unknown"), error.unwrap_or("no error yet")),
        )),
    }
    for warning in xmpp["warnings"].as_array().into_iter().flatten() {
        out.push(line(true, "xmpp", format!("warning: {}", warning.as_str().unwrap_or("?"))));
    }
    for peer in status["peers"].as_array().into_iter().flatten() {
        let (jid, delivery) = (peer["jid"].as_str().unwrap_or("?"), &peer["delivery"]);
        let state = delivery["status"].as_str().unwrap_or("?");
        let detail = match delivery["last_error"].as_str() {
            Some(error) => format!("{} ({state}; last error: {error})", peer["state"].as_str().unwrap_or("?")),
            None => format!("{} ({state})", peer["state"].as_str().unwrap_or("?")),
        };
        out.push(line(state != "unreachable", &format!("peer {jid}"), detail));
    }
    out
}
