//! The XEP-0114 component stream to the operator's XMPP server.
//!
//! One task reads (through [`StanzaReader`], which bounds every stanza while reading) and hands
//! stanzas to the node; the link loop writes what the node sends, pings the server on an
//! interval shorter than the silence after which the link is presumed dead, and reconnects with
//! exponential backoff and jitter. Reading never waits for writing, and never sleeps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use minidom::Element;
use ostracon_protocol::component::handshake_digest;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};

use super::stanza::{STANZA_NS, stanza};
use ostracon_protocol::xml::stream::{STREAM_NS, StanzaLimits};

use super::limits::{SenderLimits, gate};
use super::stream::{Inbound, StanzaReader};
use crate::error::ServerError;

/// Connection state, for `/healthz` and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not configured.
    Off = 0,
    /// Connecting or waiting to reconnect.
    Connecting = 1,
    /// Authenticated and exchanging stanzas.
    Online = 2,
    /// Another replica of this node holds the link (PostgreSQL replicas have one between
    /// them); this one takes it over if that one goes away.
    Standby = 3,
}

/// Counted events of the XMPP side, for `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Stanzas read within bounds.
    StanzasIn,
    /// Stanzas written.
    StanzasOut,
    /// Bytes read from the server, as the parser consumed them.
    BytesIn,
    /// Bytes written.
    BytesOut,
    /// Stanzas over a size, depth or count bound, answered with an error.
    StanzasRefused,
    /// Stanzas dropped without an answer (over a bound and not answerable, or answers no one
    /// waits for).
    StanzasDropped,
    /// IQ answers whose sender is not the peer we asked, or whose id we never sent.
    UnmatchedAnswers,
    /// Stanzas refused because their sender or its domain was over its rate.
    RateLimited,
}

impl Counter {
    const ALL: [Self; 8] = [
        Self::StanzasIn,
        Self::StanzasOut,
        Self::BytesIn,
        Self::BytesOut,
        Self::StanzasRefused,
        Self::StanzasDropped,
        Self::UnmatchedAnswers,
        Self::RateLimited,
    ];

    /// The Prometheus name and help text.
    pub fn describe(self) -> (&'static str, &'static str) {
        match self {
            Self::StanzasIn => ("ostracon_xmpp_stanzas_received_total", "Stanzas received on the XMPP link."),
            Self::StanzasOut => ("ostracon_xmpp_stanzas_sent_total", "Stanzas sent on the XMPP link."),
            Self::BytesIn => ("ostracon_xmpp_received_bytes_total", "Bytes read from the XMPP link."),
            Self::BytesOut => ("ostracon_xmpp_sent_bytes_total", "Bytes written to the XMPP link."),
            Self::StanzasRefused => {
                ("ostracon_xmpp_stanzas_refused_total", "Stanzas over a size, depth or element bound, answered.")
            }
            Self::StanzasDropped => {
                ("ostracon_xmpp_stanzas_dropped_total", "Stanzas dropped unanswered (unanswerable or unexpected).")
            }
            Self::UnmatchedAnswers => {
                ("ostracon_xmpp_unmatched_answers_total", "IQ answers not from the peer asked, or to no request.")
            }
            Self::RateLimited => ("ostracon_xmpp_rate_limited_total", "Stanzas refused for a sender over its rate."),
        }
    }
}

/// What happened with one peer, counted per peer for `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// The peer confirmed a delivery (an IQ result; a presence once sent).
    Delivered,
    /// A delivery attempt failed (an error answer, a timeout); it is retried.
    Failed,
    /// We refused a stanza from this buddy (its answer carries the condition).
    Refused,
}

/// Buddies tallied one by one (only buddies are); past this many, the rest are counted
/// together as `other`.
pub const MAX_TALLIED_PEERS: usize = 10_000;

/// Shared view of the link state and the counters.
#[derive(Debug, Default)]
pub struct LinkStatus {
    state: AtomicU8,
    counters: [AtomicU64; Counter::ALL.len()],
    /// Per peer: delivered, failed, refused (bounded by [`MAX_TALLIED_PEERS`]).
    peers: std::sync::Mutex<BTreeMap<String, [u64; 3]>>,
    /// Why the link is not up, in words an operator can act on; None while online.
    last_error: std::sync::Mutex<Option<String>>,
    /// What the operator should know while the link works.
    warnings: std::sync::Mutex<Vec<String>>,
    /// The largest stanza written on the current link, in bytes.
    largest_out: AtomicU64,
    /// A stanza size the server refused (0: none yet): senders of large stanzas stay under
    /// half of it until the node restarts.
    refused_size: AtomicU64,
}

impl LinkStatus {
    /// Records why the link is down (None once it is up).
    pub fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    /// Why the link is down, if it is.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The largest stanza size the server is known to accept, if it refused one: the server
    /// closed the stream after a stanza of twice this size.
    pub fn stanza_ceiling(&self) -> Option<usize> {
        match self.refused_size.load(Ordering::Relaxed) {
            0 => None,
            refused => usize::try_from(refused / 2).ok(),
        }
    }

    /// The link ended: if the server closed the stream as malformed or against its policy
    /// right after a large stanza, that stanza was over its size limit (Prosody says
    /// `not-well-formed` for `stanza-too-large`); remember it, so the next link does not end
    /// the same way, over and over.
    fn link_ended(&self, reason: &ServerError) {
        let largest = self.largest_out.swap(0, Ordering::Relaxed);
        let malformed = matches!(
            reason,
            ServerError::StreamClosed { condition: Some(c) } if c == "not-well-formed" || c == "policy-violation"
        );
        if malformed && largest > LARGE_STANZA_BYTES {
            let known = self.refused_size.load(Ordering::Relaxed);
            let refused = if known == 0 { largest } else { known.min(largest) };
            self.refused_size.store(refused, Ordering::Relaxed);
            tracing::warn!(
                bytes = largest,
                "the XMPP server closed the stream after a {largest}-byte stanza: large stanzas now stay under {} bytes; \
                 set [rtbl] max_stanza_bytes under the server's stanza size limit",
                refused / 2
            );
        }
    }

    /// Replaces the warnings; true if they changed.
    pub fn set_warnings(&self, warnings: Vec<String>) -> bool {
        let mut current = self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = *current != warnings;
        *current = warnings;
        changed
    }

    /// What the operator should know while the link works.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Records a state.
    pub fn set(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::SeqCst);
    }

    /// Adds to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one event of `peer`'s.
    pub fn count_peer(&self, peer: &str, event: PeerEvent) {
        let mut peers = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = if peers.len() < MAX_TALLIED_PEERS || peers.contains_key(peer) { peer } else { "other" };
        peers.entry(key.to_owned()).or_default()[event as usize] += 1;
    }

    /// Every tallied peer with its (delivered, failed, refused) counts.
    pub fn peer_tallies(&self) -> Vec<(String, [u64; 3])> {
        let peers = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        peers.iter().map(|(peer, counts)| (peer.clone(), *counts)).collect()
    }

    /// One counter's value.
    pub fn value(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// Every counter as (name, help, value).
    pub fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        Counter::ALL
            .iter()
            .map(|&counter| {
                let (name, help) = counter.describe();
                (name, help, self.value(counter))
            })
            .collect()
    }

    /// The current state.
    pub fn get(&self) -> LinkState {
        match self.state.load(Ordering::SeqCst) {
            3 => LinkState::Standby,
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
            LinkState::Standby => "standby",
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
    /// The shared secret (never logged), re-read on SIGHUP.
    pub secret: ComponentSecret,
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

/// The component secret, shared by the link and the SIGHUP reload: a new secret is used from
/// the next handshake on (an online link stays up; a failing one retries with it).
#[derive(Clone, Default)]
pub struct ComponentSecret(Arc<std::sync::RwLock<String>>);

impl ComponentSecret {
    /// Holds `secret`.
    pub fn new(secret: String) -> Self {
        Self(Arc::new(std::sync::RwLock::new(secret)))
    }

    /// The current secret.
    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Replaces the secret; says whether it changed.
    pub fn replace(&self, secret: String) -> bool {
        let mut current = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = *current != secret;
        *current = secret;
        changed
    }
}

/// How long connecting and the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keepalive interval.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// A stanza at least this large that the server closes the stream over was over its limit;
/// smaller ones were malformed for another reason.
const LARGE_STANZA_BYTES: u64 = 64 * 1024;
/// Silence after which the link is presumed dead.
const DEAD_AFTER: Duration = Duration::from_secs(90);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs the link until `stop` turns true: incoming stanzas go to `incoming`, stanzas from
/// `outgoing` are sent, and `online` counts the links established. Stanzas queued while offline wait in the channel (the durable copy is
/// in the outbox table).
pub async fn run(
    config: LinkConfig,
    status: Arc<LinkStatus>,
    online: watch::Sender<u64>,
    incoming: mpsc::Sender<Inbound>,
    mut outgoing: mpsc::Receiver<Element>,
    limits: Arc<SenderLimits>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        status.set(LinkState::Connecting);
        let connected = tokio::select! {
            result = tokio::time::timeout(CONNECT_TIMEOUT, connect(&config, Arc::clone(&limits))) => result,
            _ = stop.changed() => return,
        };
        match connected {
            Ok(Ok((reader, writer))) => {
                failures = 0;
                status.set(LinkState::Online);
                status.set_error(None);
                // Answers to IQs sent on an earlier stream may never come: let waiters retry
                // now; and what consumers missed meanwhile is pushed again.
                online.send_modify(|links| *links += 1);
                tracing::info!(component = %config.component, server = %config.server, "XMPP component online");
                let ended = serve_link(&config, &status, reader, writer, &incoming, &mut outgoing, &mut stop).await;
                status.set(LinkState::Connecting);
                match ended {
                    None => return,
                    Some(reason) => {
                        status.link_ended(&reason);
                        tracing::warn!(%reason, "XMPP link lost; reconnecting");
                        status.set_error(Some(format!("the link was lost: {reason}")));
                    }
                }
            }
            Ok(Err(error)) => {
                let diagnosis = diagnose(&error, &config);
                tracing::warn!(server = %config.server, "XMPP component could not connect: {diagnosis}");
                status.set_error(Some(diagnosis));
            }
            Err(_) => {
                let diagnosis = format!(
                    "no answer from {} within {} s: is it the XMPP server's component port?",
                    config.server,
                    CONNECT_TIMEOUT.as_secs()
                );
                tracing::warn!(server = %config.server, "XMPP component could not connect: {diagnosis}");
                status.set_error(Some(diagnosis));
            }
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

/// Opens the stream and runs the XEP-0114 handshake; stanzas over their sender's rate are
/// refused at their head.
async fn connect(
    config: &LinkConfig,
    limits: Arc<SenderLimits>,
) -> Result<(StanzaReader<OwnedReadHalf>, OwnedWriteHalf), ServerError> {
    let socket = TcpStream::connect(config.server).await.map_err(ServerError::Stream)?;
    socket.set_nodelay(true).map_err(ServerError::Stream)?;
    let (read, mut write) = socket.into_split();
    let opening = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{STANZA_NS}' xmlns:stream='{STREAM_NS}' to='{}'>",
        xml_escape(&config.component)
    );
    write.write_all(opening.as_bytes()).await.map_err(ServerError::Stream)?;
    let mut reader = StanzaReader::with_gate(read, StanzaLimits::default(), gate(limits));
    let id = reader.read_header().await?;
    let handshake = format!("<handshake>{}</handshake>", handshake_digest(&id, &config.secret.get()));
    write.write_all(handshake.as_bytes()).await.map_err(ServerError::Stream)?;
    match reader.next().await? {
        Inbound::Stanza(element) if element.name() == "handshake" && element.ns() == STANZA_NS => Ok((reader, write)),
        Inbound::Stanza(element) if element.name() == "error" && element.ns() == STREAM_NS => {
            Err(ServerError::HandshakeRefused { condition: stream_error_condition(&element) })
        }
        _ => Err(ServerError::StreamHeader("the server answered the handshake with something else")),
    }
}

/// Connects and completes the component handshake once, then closes: `ostracon check`'s test
/// of the XMPP server, with the same diagnosis the running link gives.
pub async fn check_handshake(config: &LinkConfig) -> Result<(), String> {
    let limits = Arc::new(SenderLimits::new(super::limits::SenderRates::default()));
    match tokio::time::timeout(CONNECT_TIMEOUT, connect(config, limits)).await {
        Ok(Ok((_reader, mut writer))) => {
            let _ = writer.write_all(b"</stream:stream>").await;
            Ok(())
        }
        Ok(Err(error)) => Err(diagnose(&error, config)),
        Err(_) => Err(format!("no answer from {} within {} s", config.server, CONNECT_TIMEOUT.as_secs())),
    }
}

/// Why connecting failed, said so that the operator knows what to change (the conditions
/// Prosody and ejabberd send for a missing component, a wrong secret, a second login).
fn diagnose(error: &ServerError, config: &LinkConfig) -> String {
    let (component, server) = (&config.component, config.server);
    let condition = match error {
        ServerError::HandshakeRefused { condition } | ServerError::StreamClosed { condition: Some(condition) } => {
            Some(condition.as_str())
        }
        _ => None,
    };
    match (condition, error) {
        (Some("host-unknown"), _) => format!(
            "the XMPP server at {server} has no component {component} (host-unknown): add Component \"{component}\" \
             with its component_secret to its configuration and reload it"
        ),
        (Some("not-authorized"), _) => format!(
            "the XMPP server at {server} refused the secret for {component} (not-authorized): make [xmpp] \
             secret_file hold the component_secret of Component \"{component}\""
        ),
        (Some("conflict"), _) => format!(
            "another connection is logged in as {component} (conflict): is a second node running with this component?"
        ),
        (_, ServerError::Stream(io)) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "nothing listens at {server} ({io}): is the XMPP server running, with its component port there \
             (Prosody: component_ports)?"
        ),
        (_, other) => other.to_string(),
    }
}

/// The defined condition of a `stream:error`.
pub(super) fn stream_error_condition(error: &Element) -> String {
    error.children().find(|c| c.name() != "text").map_or_else(|| "no condition".to_owned(), |c| c.name().to_owned())
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('\'', "&apos;")
}

/// Serves one connected stream; `None` means "stop requested", `Some(reason)` "reconnect".
async fn serve_link(
    config: &LinkConfig,
    status: &Arc<LinkStatus>,
    reader: StanzaReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
    incoming: &mpsc::Sender<Inbound>,
    outgoing: &mut mpsc::Receiver<Element>,
    stop: &mut watch::Receiver<bool>,
) -> Option<ServerError> {
    let started = Instant::now();
    let heard = Arc::new(AtomicU64::new(0));
    let mut reading = tokio::spawn(read_stanzas(
        reader,
        Arc::clone(status),
        incoming.clone(),
        started,
        Arc::clone(&heard),
        config.server_domain.clone(),
    ));
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    let reason = loop {
        tokio::select! {
            ended = &mut reading => break ended.unwrap_or(Some(ServerError::StreamClosed { condition: None })),
            element = outgoing.recv() => match element {
                Some(element) => {
                    if let Err(error) = write(status, &mut writer, &element).await {
                        break Some(error);
                    }
                }
                None => break None,
            },
            _ = keepalive.tick() => {
                let silent = started.elapsed().saturating_sub(Duration::from_millis(heard.load(Ordering::Relaxed)));
                if silent > DEAD_AFTER {
                    break Some(ServerError::NoAnswer { secs: DEAD_AFTER.as_secs() });
                }
                if let Err(error) = write(status, &mut writer, &ping(config)).await {
                    break Some(error);
                }
            }
            _ = stop.changed() => break None,
        }
    };
    reading.abort();
    if reason.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(2), writer.write_all(b"</stream:stream>")).await;
    }
    reason
}

/// Reads until the stream ends, handing each stanza to the node; returns why it ended
/// (`None`: the node is gone). Back-pressure from the node's channel slows reading, and with
/// it the server (TCP flow control); nothing here waits for anything else.
async fn read_stanzas(
    mut reader: StanzaReader<OwnedReadHalf>,
    status: Arc<LinkStatus>,
    incoming: mpsc::Sender<Inbound>,
    started: Instant,
    heard: Arc<AtomicU64>,
    server_domain: String,
) -> Option<ServerError> {
    let mut counted: u64 = reader.bytes_read();
    loop {
        let item = match reader.next().await {
            Ok(item) => item,
            Err(error) => return Some(error),
        };
        status.add(Counter::BytesIn, reader.bytes_read() - counted);
        counted = reader.bytes_read();
        heard.store(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        if let Inbound::Stanza(element) = &item {
            if element.ns() == STREAM_NS {
                let condition = (element.name() == "error").then(|| stream_error_condition(element));
                return Some(ServerError::StreamClosed { condition });
            }
            status.add(Counter::StanzasIn, 1);
            // The answer to our keep-alive ping has done its work by arriving (`heard`); the
            // node never asked anything, so it is not handed on as an unmatched answer.
            if is_keepalive_answer(element, &server_domain) {
                continue;
            }
        }
        if incoming.send(item).await.is_err() {
            return None;
        }
    }
}

async fn write(status: &LinkStatus, writer: &mut OwnedWriteHalf, element: &Element) -> Result<(), ServerError> {
    let mut bytes = Vec::with_capacity(512);
    element.write_to(&mut bytes).map_err(|e| ServerError::Stream(std::io::Error::other(e)))?;
    writer.write_all(&bytes).await.map_err(ServerError::Stream)?;
    status.add(Counter::StanzasOut, 1);
    status.add(Counter::BytesOut, bytes.len() as u64);
    status.largest_out.fetch_max(bytes.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// The id of our keep-alive pings.
const KEEPALIVE_ID: &str = "keepalive";

/// A XEP-0199 ping to the server: its answer proves the link is alive.
fn ping(config: &LinkConfig) -> Element {
    let mut iq = stanza(
        "iq",
        &[("type", "get"), ("from", &config.component), ("to", &config.server_domain), ("id", KEEPALIVE_ID)],
    );
    iq.append_child(Element::bare("ping", "urn:xmpp:ping"));
    iq
}

/// Whether `element` is the server's answer (result or error) to a keep-alive ping.
fn is_keepalive_answer(element: &Element, server_domain: &str) -> bool {
    element.name() == "iq"
        && matches!(element.attr("type"), Some("result" | "error"))
        && element.attr("id") == Some(KEEPALIVE_ID)
        && element.attr("from") == Some(server_domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_closed_over_a_large_stanza_lowers_the_ceiling_and_nothing_else_does() {
        let status = LinkStatus::default();
        let closed = |condition: &str| ServerError::StreamClosed { condition: Some(condition.to_owned()) };
        status.largest_out.store(40_000, Ordering::Relaxed);
        status.link_ended(&closed("not-well-formed"));
        assert_eq!(status.stanza_ceiling(), None, "a small stanza was malformed for another reason");
        status.largest_out.store(900_000, Ordering::Relaxed);
        status.link_ended(&ServerError::NoAnswer { secs: 90 });
        assert_eq!(status.stanza_ceiling(), None, "a silent server says nothing about sizes");
        status.largest_out.store(900_000, Ordering::Relaxed);
        status.link_ended(&closed("not-well-formed"));
        assert_eq!(status.stanza_ceiling(), Some(450_000));
        status.largest_out.store(600_000, Ordering::Relaxed);
        status.link_ended(&closed("policy-violation"));
        assert_eq!(status.stanza_ceiling(), Some(300_000), "it only comes down");
        assert_eq!(status.largest_out.load(Ordering::Relaxed), 0, "each link counts its own");
    }

    #[test]
    fn only_the_servers_answer_to_a_keepalive_is_taken_as_one() {
        let answer = |from: &str, id: &str| -> Element {
            format!("<iq xmlns='{STANZA_NS}' type='result' from='{from}' id='{id}'/>").parse().unwrap()
        };
        assert!(is_keepalive_answer(&answer("example.org", "keepalive"), "example.org"));
        assert!(!is_keepalive_answer(&answer("incidents.evil.example", "keepalive"), "example.org"));
        assert!(!is_keepalive_answer(&answer("example.org", "q-1"), "example.org"));
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(30, 0.5), MAX_BACKOFF);
        assert!(backoff(3, 0.0) < backoff(3, 1.0));
        assert!(backoff(30, 1.0) <= MAX_BACKOFF.mul_f64(1.5));
    }
}
