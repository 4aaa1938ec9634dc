//! The XEP-0114 component stream to the operator's XMPP server.
//!
//! tokio-xmpp's `Component` ends its stream on any read error, including the soft read
//! timeout of an idle link, so this loop treats "no stanza" as "check liveness": it sends a
//! XEP-0199 ping to the server on an interval shorter than the read timeout, and reconnects
//! with exponential backoff and jitter when a send fails or the link stays silent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use minidom::Element;
use tokio::sync::{mpsc, watch};
use tokio_xmpp::Component;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::xmlstream::Timeouts;
use xmpp_parsers::stanza::Stanza;

/// Connection state, for `/healthz` and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not configured.
    Off = 0,
    /// Connecting or waiting to reconnect.
    Connecting = 1,
    /// Authenticated and exchanging stanzas.
    Online = 2,
}

/// Shared view of the link state and its traffic.
#[derive(Debug, Default)]
pub struct LinkStatus(AtomicU8, Traffic);

/// Stanzas and bytes through the link since start (all streams).
#[derive(Debug, Default)]
struct Traffic {
    stanzas_in: AtomicU64,
    stanzas_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl LinkStatus {
    /// Records a state.
    pub fn set(&self, state: LinkState) {
        self.0.store(state as u8, Ordering::SeqCst);
    }

    /// Stanzas in, stanzas out, bytes in, bytes out, since start.
    pub fn traffic(&self) -> [u64; 4] {
        let t = &self.1;
        [&t.stanzas_in, &t.stanzas_out, &t.bytes_in, &t.bytes_out].map(|c| c.load(Ordering::Relaxed))
    }

    fn count(&self, incoming: bool, element: &Element) {
        let bytes = String::from(element).len() as u64;
        let (stanzas, total) =
            if incoming { (&self.1.stanzas_in, &self.1.bytes_in) } else { (&self.1.stanzas_out, &self.1.bytes_out) };
        stanzas.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The current state.
    pub fn get(&self) -> LinkState {
        match self.0.load(Ordering::SeqCst) {
            2 => LinkState::Online,
            1 => LinkState::Connecting,
            _ => LinkState::Off,
        }
    }

    /// As text.
    pub fn as_str(&self) -> &'static str {
        match self.get() {
            LinkState::Off => "off",
            LinkState::Connecting => "connecting",
            LinkState::Online => "online",
        }
    }
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct LinkConfig {
    /// The component JID (a domain).
    pub component: String,
    /// The server's component listener.
    pub server: SocketAddr,
    /// The shared secret (never logged).
    pub secret: String,
    /// The server's domain, pinged to keep the link alive.
    pub server_domain: String,
}

impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("component", &self.component)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Read timeout of the stream; the keepalive runs well inside it.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Keepalive interval.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// Silence after which the link is presumed dead.
const DEAD_AFTER: Duration = Duration::from_secs(90);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs the link until `stop` turns true: incoming stanzas go to `incoming`, stanzas from
/// `outgoing` are sent. Stanzas queued while offline wait in the channel (the durable copy is
/// in the outbox table).
pub async fn run(
    config: LinkConfig,
    status: Arc<LinkStatus>,
    online: Arc<tokio::sync::Notify>,
    incoming: mpsc::Sender<Element>,
    mut outgoing: mpsc::Receiver<Element>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        status.set(LinkState::Connecting);
        let timeouts = Timeouts { read_timeout: READ_TIMEOUT, response_timeout: Duration::from_secs(30) };
        let connect = Component::new_plaintext(
            &config.component,
            &config.secret,
            DnsConfig::addr(&config.server.to_string()),
            timeouts,
        );
        let connected = tokio::select! {
            result = tokio::time::timeout(Duration::from_secs(15), connect) => result,
            _ = stop.changed() => return,
        };
        match connected {
            Ok(Ok(mut component)) => {
                failures = 0;
                status.set(LinkState::Online);
                // Answers to IQs sent on an earlier stream may never come: let waiters retry now.
                online.notify_waiters();
                tracing::info!(component = %config.component, server = %config.server, "XMPP component online");
                let reason = serve_link(&config, &status, &mut component, &incoming, &mut outgoing, &mut stop).await;
                status.set(LinkState::Connecting);
                if reason.is_none() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), component.send_end()).await;
                    return;
                }
                tracing::warn!(reason = reason.unwrap_or_default(), "XMPP link lost; reconnecting");
            }
            Ok(Err(error)) => tracing::warn!(%error, server = %config.server, "XMPP component could not connect"),
            Err(_) => tracing::warn!(server = %config.server, "XMPP component connection timed out"),
        }
        failures = failures.saturating_add(1);
        let delay = backoff(failures, rand::random::<f64>());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Exponential backoff from 0.5 s to [`MAX_BACKOFF`], scaled by a jitter factor in 0.5..1.5
/// so that many nodes restarted together do not reconnect in lockstep.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << failures.min(7)).min(MAX_BACKOFF);
    base.mul_f64(0.5 + jitter.clamp(0.0, 1.0))
}

/// Serves one connected stream; `None` means "stop requested", `Some(reason)` "reconnect".
async fn serve_link<C: tokio_xmpp::connect::ServerConnector>(
    config: &LinkConfig,
    status: &LinkStatus,
    component: &mut Component<C>,
    incoming: &mpsc::Sender<Element>,
    outgoing: &mut mpsc::Receiver<Element>,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            stanza = component.next() => match stanza {
                Some(stanza) => {
                    last_heard = Instant::now();
                    let element = Element::from(stanza);
                    status.count(true, &element);
                    if incoming.send(element).await.is_err() {
                        return None;
                    }
                }
                None => {
                    // A soft timeout or a dead stream: probe, and give up if it stays silent.
                    if last_heard.elapsed() > DEAD_AFTER {
                        return Some("no traffic, not even ping answers".to_owned());
                    }
                    if let Err(error) = send(status, component, ping(config)).await {
                        return Some(format!("send failed: {error}"));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            element = outgoing.recv() => match element {
                Some(element) => {
                    if let Err(error) = send(status, component, element).await {
                        return Some(format!("send failed: {error}"));
                    }
                }
                None => return None,
            },
            _ = keepalive.tick() => {
                if last_heard.elapsed() > DEAD_AFTER {
                    return Some("no traffic, not even ping answers".to_owned());
                }
                if let Err(error) = send(status, component, ping(config)).await {
                    return Some(format!("keepalive failed: {error}"));
                }
            }
            _ = stop.changed() => return None,
        }
    }
}

async fn send<C: tokio_xmpp::connect::ServerConnector>(
    status: &LinkStatus,
    component: &mut Component<C>,
    element: Element,
) -> Result<(), String> {
    status.count(false, &element);
    let stanza = Stanza::try_from(element).map_err(|e| format!("not a stanza: {e}"))?;
    component.send_stanza(stanza).await.map_err(|e| e.to_string())
}

/// A XEP-0199 ping to the server: its answer proves the link is alive.
fn ping(config: &LinkConfig) -> Element {
    let mut iq = Element::bare("iq", xmpp_parsers::ns::DEFAULT_NS);
    let attrs = [
        ("type", "get"),
        ("from", config.component.as_str()),
        ("to", config.server_domain.as_str()),
        ("id", "keepalive"),
    ];
    for (name, value) in attrs {
        iq.set_attr(
            minidom::rxml::Namespace::NONE,
            minidom::rxml::NcName::try_from(name).expect("static name"),
            value.to_owned(),
        );
    }
    iq.append_child(Element::bare("ping", "urn:xmpp:ping"));
    iq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(30, 0.5), MAX_BACKOFF);
        assert!(backoff(3, 0.0) < backoff(3, 1.0));
        assert!(backoff(30, 1.0) <= MAX_BACKOFF.mul_f64(1.5));
    }
}
