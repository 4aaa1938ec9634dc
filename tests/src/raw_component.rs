//! A raw XEP-0114 component for hostile tests, written from XEP-0114 and RFC 6120 by hand: a
//! TCP socket, text, and SHA-1 for the handshake. It shares no code with the node's XMPP side,
//! so it sends exactly the bytes a test writes, however malformed, deep or large.
//!
//! What the server sends back is read by [`Inbox`]; tests wait for the stanza they expect
//! by predicate.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use minidom::Element;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

use crate::stanzas::{Inbox, attribute};

/// The namespace of component stanzas.
pub const COMPONENT_NS: &str = "jabber:component:accept";

/// One connected component.
pub struct RawComponent {
    jid: String,
    write: OwnedWriteHalf,
    inbox: Inbox,
    next_id: u64,
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
        let mut inbox = Inbox::read(read, COMPONENT_NS);
        let first = inbox
            .wait_for(Duration::from_secs(10), |_| true)
            .await
            .context("no answer to the handshake, or the server closed the stream")?;
        if first.name() != "handshake" {
            bail!("handshake refused: {}", String::from(&first));
        }
        Ok(Self { jid: jid.to_owned(), write, inbox, next_id: 0 })
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

    /// The first received stanza that `wanted` accepts, within `within` (see [`Inbox`]).
    pub async fn wait_for(&mut self, within: Duration, wanted: impl Fn(&Element) -> bool) -> Option<Element> {
        self.inbox.wait_for(within, wanted).await
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
        self.inbox.drain();
    }
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
