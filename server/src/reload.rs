//! SIGHUP (`systemctl reload ostracon`): re-reads the configuration file and applies what can
//! change while the node runs, the HTTP rate limits, the trusted proxies and the component
//! secret; it names every other changed setting as waiting for a restart. A file that does
//! not load or check is refused as a whole, and the node runs on unchanged.

use std::path::Path;

use ostracon_web::{AppState, WebConfig};

use crate::config::{Config, Severity};
use crate::xmpp::connection::ComponentSecret;

/// What one reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Settings now in force.
    pub applied: Vec<&'static str>,
    /// Changed settings that take effect at the next restart.
    pub need_restart: Vec<&'static str>,
}

/// The part of the configuration the web side re-reads.
pub fn web_config(config: &Config) -> WebConfig {
    WebConfig {
        rate_per_second: config.http.rate_per_second,
        rate_burst: config.http.rate_burst,
        trusted_proxies: config.http.trusted_proxies.clone(),
    }
}

/// The `[xmpp]` section but its secret, which a reload applies.
fn without_secret(config: &Config) -> Option<crate::config::XmppSection> {
    config.xmpp.clone().map(|mut xmpp| {
        (xmpp.secret, xmpp.secret_file) = (None, None);
        xmpp
    })
}

/// Re-reads `path` against the configuration the node runs with (`running`, updated to what
/// was applied). Errors say why nothing was applied.
pub fn reload(
    path: &Path,
    running: &mut Config,
    state: &AppState,
    secret: Option<&ComponentSecret>,
) -> Result<Reloaded, String> {
    let new = Config::load(path).map_err(|e| e.to_string())?;
    let errors: Vec<String> =
        new.check(Some(path)).into_iter().filter(|f| f.severity == Severity::Error).map(|f| f.message).collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let mut done = Reloaded::default();
    let new_secret = new.xmpp_secret().map_err(|e| e.to_string())?;
    let http_changed = (new.http.rate_per_second, new.http.rate_burst, &new.http.trusted_proxies)
        != (running.http.rate_per_second, running.http.rate_burst, &running.http.trusted_proxies);
    if http_changed {
        state.reload(&web_config(&new));
        done.applied.push("[http] rate_per_second, rate_burst and trusted_proxies");
    }
    if let (Some(secret), Some(new_secret)) = (secret, new_secret)
        && secret.replace(new_secret)
    {
        done.applied.push("[xmpp] component secret (used from the next handshake)");
    }
    let restart = [
        ("[node]", running.node != new.node),
        ("[http] listen, connection limits and timeouts", {
            let mut same = new.http.clone();
            (same.rate_per_second, same.rate_burst, same.trusted_proxies) =
                (running.http.rate_per_second, running.http.rate_burst, running.http.trusted_proxies.clone());
            same != running.http
        }),
        ("[database]", running.database != new.database),
        ("[lists]", running.lists != new.lists),
        ("[reputation]", running.reputation != new.reputation),
        ("[xmpp] component, server and peering settings", without_secret(running) != without_secret(&new)),
    ];
    done.need_restart = restart.into_iter().filter(|(_, changed)| *changed).map(|(what, _)| what).collect();
    running.http.rate_per_second = new.http.rate_per_second;
    running.http.rate_burst = new.http.rate_burst;
    running.http.trusted_proxies = new.http.trusted_proxies;
    Ok(done)
}
