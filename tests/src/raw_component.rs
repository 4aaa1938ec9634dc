//! A raw XEP-0114 component for hostile tests, written from XEP-0114 and RFC 6120 by hand: a
//! TCP socket, text, and SHA-1 for the handshake. It shares no code with the node's XMPP side,
//! so it sends exactly the bytes a test writes, however malformed, deep or large.
//!
//! What the server sends back is parsed with minidom's tree builder on rxml events (our
//! answers are shallow) and queued; tests wait for the stanza they expect by predicate.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use minidom::Element;
use minidom::tree_builder::TreeBuilder;
use rxml::{AsyncRawReader, RawEvent};
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// The namespace of component stanzas.
pub const COMPONENT_NS: &str = "jabber:component:accept";

/// One connected component.
pub struct RawComponent {
    jid: String,
    write: OwnedWriteHalf,
    inbox: mpsc::UnboundedReceiver<Element>,
    /// Received stanzas no wait has taken yet (answers may come in any order).
    held: std::collections::VecDeque<Element>,
    reader: tokio::task::JoinHandle<()>,
    next_id: u64,
}

impl Drop for RawComponent {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl RawComponent {
    /// Connects to the server's component port as `jid` with `secret`.
    pub async fn connect(address: SocketAddr, jid: &str, secret: &str) -> anyhow::Result<Self> {
        let socket = TcpStream::connect(address).await.context("connect to the component port")?;
        socket.set_nodelay(true)?;
        let (mut read, mut write) = socket.into_split();
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{COMPONENT_NS}' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{jid}'>"
        );
        write.write_all(header.as_bytes()).await?;
        // The server's header carries the stream id; read up to the end of its opening tag.
        let mut head = Vec::new();
        let id = loop {
            let mut byte = [0u8; 1];
            if read.read(&mut byte).await? == 0 {
                bail!("the server closed the stream before its header");
            }
            head.push(byte[0]);
            let text = String::from_utf8_lossy(&head);
            if let Some(start) = text.find("<stream:stream")
                && text[start..].contains('>')
            {
                break attribute(&text[start..], "id").context("the stream header has no id")?;
            }
            if head.len() > 8_192 {
                bail!("no stream header in the first 8 KiB");
            }
        };
        let digest = hex::encode(Sha1::digest(format!("{id}{secret}").as_bytes()));
        write.write_all(format!("<handshake>{digest}</handshake>").as_bytes()).await?;
        let (tx, mut inbox) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_stanzas(read, tx));
        let first = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .context("no answer to the handshake")?
            .context("the server closed the stream after the handshake")?;
        if first.name() != "handshake" {
            bail!("handshake refused: {}", String::from(&first));
        }
        Ok(Self { jid: jid.to_owned(), write, inbox, held: Default::default(), reader, next_id: 0 })
    }

    /// Our JID.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.write.write_all(bytes).await.context("write to the component stream")
    }

    /// A fresh stanza id.
    pub fn id(&mut self) -> String {
        self.next_id += 1;
        format!("raw-{}", self.next_id)
    }

    /// The first received stanza that `wanted` accepts, within `within`; the others are kept
    /// for later waits, since answers come in any order.
    pub async fn wait_for(&mut self, within: Duration, wanted: impl Fn(&Element) -> bool) -> Option<Element> {
        if let Some(position) = self.held.iter().position(&wanted) {
            return self.held.remove(position);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(element)) if wanted(&element) => return Some(element),
                Ok(Some(element)) => self.held.push_back(element),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The answer to the IQ with `id`, within 20 s.
    pub async fn answer_to(&mut self, id: &str) -> Option<Element> {
        self.wait_for(Duration::from_secs(20), |e| e.name() == "iq" && e.attr("id") == Some(id)).await
    }

    /// Sends an IQ with `payload` (XML text) from us to `to` and returns its answer.
    pub async fn iq(&mut self, to: &str, iq_type: &str, payload: &str) -> anyhow::Result<Element> {
        let id = self.id();
        let text = format!(
            "<iq xmlns='{COMPONENT_NS}' type='{iq_type}' from='{}' to='{to}' id='{id}'>{payload}</iq>",
            self.jid
        );
        self.send_raw(text.as_bytes()).await?;
        self.answer_to(&id).await.with_context(|| format!("no answer to {id}"))
    }

    /// Plays the peer side of a buddy request from `from`: answers its `subscribe` with
    /// `subscribed` and its key fetch with `keys` (a `<keys/>` element as text), then returns.
    pub async fn accept_buddy_request(&mut self, from: &str, keys: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let within = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wanted = |e: &Element| {
                (e.name() == "presence" && e.attr("type") == Some("subscribe"))
                    || (e.name() == "iq" && e.children().any(|c| c.name() == "keys"))
            };
            let Some(stanza) = self.wait_for(within, wanted).await else { bail!("{from} never fetched our keys") };
            if stanza.name() == "presence" {
                let answer =
                    format!("<presence xmlns='{COMPONENT_NS}' type='subscribed' from='{}' to='{from}'/>", self.jid);
                self.send_raw(answer.as_bytes()).await?;
                continue;
            }
            let id = stanza.attr("id").unwrap_or_default();
            let answer = format!(
                "<iq xmlns='{COMPONENT_NS}' type='result' from='{}' to='{from}' id='{id}'>{keys}</iq>",
                self.jid
            );
            return self.send_raw(answer.as_bytes()).await;
        }
    }

    /// Drops everything received so far.
    pub fn drain(&mut self) {
        self.held.clear();
        while self.inbox.try_recv().is_ok() {}
    }
}

/// The value of `name='...'` or `name="..."` in an element's opening tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let end = tag.find('>')?;
    let tag = &tag[..end];
    for quote in ['\'', '"'] {
        let marker = format!(" {name}={quote}");
        if let Some(start) = tag.find(&marker) {
            let rest = &tag[start + marker.len()..];
            return rest.find(quote).map(|close| rest[..close].to_owned());
        }
    }
    None
}

/// The error conditions of an answer: (defined condition, our application condition).
pub fn conditions(answer: &Element) -> (Option<String>, Option<String>) {
    let Some(error) = answer.children().find(|c| c.name() == "error") else { return (None, None) };
    let defined = error
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
        .map(|c| c.name().to_owned());
    let app = error.children().find(|c| c.ns() == "urn:x-ostracon:errors:0").map(|c| c.name().to_owned());
    (defined, app)
}

/// Reads stanzas after the handshake was sent; the stream header was consumed already, so
/// the parser is seeded with it.
async fn read_stanzas(read: OwnedReadHalf, inbox: mpsc::UnboundedSender<Element>) {
    let seeded = std::io::Cursor::new(
        format!("<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='http://etherx.jabber.org/streams'>").into_bytes(),
    );
    let mut reader = AsyncRawReader::new(BufReader::new(tokio::io::AsyncReadExt::chain(seeded, read)));
    let mut builder = TreeBuilder::new();
    loop {
        let Ok(Some(event)) = reader.read().await else { return };
        // Whitespace between stanzas would otherwise become text of the stream element.
        if builder.depth() == 1 && matches!(event, RawEvent::Text(..)) {
            continue;
        }
        let closes_stanza = builder.depth() == 2 && matches!(event, RawEvent::ElementFoot(_));
        if builder.process_event(event).is_err() {
            return;
        }
        if closes_stanza
            && let Some(stanza) = builder.unshift_child()
            && inbox.send(stanza).is_err()
        {
            return;
        }
    }
}

/// A signed XEP-0268 report of incident `number` with `status`, naming one offender.
pub fn signed_report(
    key: &ostracon_protocol::keys::NodeKey,
    signer: &str,
    at: ostracon_protocol::time::Timestamp,
    number: u128,
    nonce: u128,
    status: ostracon_protocol::incident::Status,
    offender: &str,
) -> Element {
    use ostracon_protocol::ids::{BareJid, IncidentId, Offender};
    use ostracon_protocol::incident::{Category, Incident, ReportClaim, Severity};
    let signer = BareJid::parse(signer).unwrap();
    let incident = Incident {
        id: IncidentId::new(signer.domain().clone(), uuid::Uuid::from_u128(number)),
        reporter: signer.clone(),
        status,
        category: Category::Spam,
        severity: Severity::Low,
        offenders: vec![Offender::parse(offender).unwrap()],
        start: at,
        end: None,
        reported: at,
        description: "raw".to_owned(),
        evidence: vec![],
        action: None,
        expires: None,
        related: None,
        history: vec![],
    };
    let chain = ostracon_protocol::envelope::sign(
        &ReportClaim(incident.clone()),
        key,
        &signer,
        at,
        ostracon_protocol::envelope::Nonce::from_bytes(&nonce.to_le_bytes()),
    )
    .unwrap();
    ostracon_protocol::xml::xep0268::IncidentPayload::Report { incident, signed: Some(chain) }.to_element()
}
