//! A plain XMPP client for tests, written from RFC 6120 by hand: TCP with no TLS (the test
//! servers allow it), SASL PLAIN, resource binding, initial presence, then stanzas as text. It plays the user
//! a consumer of our lists refuses or lets in: joining a room, sending a message.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use minidom::Element;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::stanzas::Inbox;

/// The client stanza namespace.
pub const CLIENT_NS: &str = "jabber:client";
/// XEP-0045.
const MUC_NS: &str = "http://jabber.org/protocol/muc";

/// One signed-in client.
pub struct Client {
    /// Its full JID, as bound.
    pub jid: String,
    write: OwnedWriteHalf,
    inbox: Inbox,
}

/// Reads until the text read so far contains `marker`; returns that text.
async fn read_until(read: &mut OwnedReadHalf, marker: &str) -> anyhow::Result<String> {
    let mut text = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if read.read(&mut byte).await? == 0 {
            bail!("the server closed the stream; read: {}", String::from_utf8_lossy(&text));
        }
        text.push(byte[0]);
        if text.ends_with(marker.as_bytes()) {
            return Ok(String::from_utf8_lossy(&text).into_owned());
        }
        if text.len() > 64 * 1024 {
            bail!("no {marker} in the first 64 KiB");
        }
    }
}

fn header(host: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{CLIENT_NS}' xmlns:stream='http://etherx.jabber.org/streams' \
         to='{host}' version='1.0'>"
    )
}

impl Client {
    /// Signs in as `user@host` with `password` at `address`.
    pub async fn login(address: SocketAddr, user: &str, host: &str, password: &str) -> anyhow::Result<Self> {
        let socket = TcpStream::connect(address).await.context("connect to c2s")?;
        socket.set_nodelay(true)?;
        let (mut read, mut write) = socket.into_split();
        let within = Duration::from_secs(10);
        write.write_all(header(host).as_bytes()).await?;
        tokio::time::timeout(within, read_until(&mut read, "</stream:features>")).await??;
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        let auth = format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>");
        write.write_all(auth.as_bytes()).await?;
        // Both `<success/>` and `<failure>…</failure>` end in "s>" or "/>"; read to the first '>'
        // after the verdict's name.
        let verdict = tokio::time::timeout(within, read_until(&mut read, "xmpp-sasl'")).await??;
        if !verdict.contains("<success") {
            bail!("{user}@{host} could not sign in: {verdict}");
        }
        write.write_all(header(host).as_bytes()).await?;
        tokio::time::timeout(within, read_until(&mut read, "</stream:features>")).await??;
        let mut inbox = Inbox::read(read, CLIENT_NS);
        let bind = "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>test</resource></bind></iq>";
        write.write_all(bind.as_bytes()).await?;
        let bound = inbox
            .wait_for(within, |e| e.name() == "iq" && e.attr("id") == Some("bind"))
            .await
            .context("no answer to the resource binding")?;
        let jid = bound
            .children()
            .flat_map(Element::children)
            .find(|c| c.name() == "jid")
            .map(Element::text)
            .context("the binding answer has no JID")?;
        // Available, as a client is once signed in: messages to the bare JID reach it.
        write.write_all(b"<presence/>").await?;
        Ok(Self { jid, write, inbox })
    }

    /// Sends a stanza as text.
    pub async fn send(&mut self, xml: &str) -> anyhow::Result<()> {
        self.write.write_all(xml.as_bytes()).await.context("write to c2s")
    }

    /// The first stanza `wanted` accepts within `within`.
    pub async fn wait_for(&mut self, within: Duration, wanted: impl Fn(&Element) -> bool) -> Option<Element> {
        self.inbox.wait_for(within, wanted).await
    }

    /// Joins `room/nick`: `Ok` on the room's self-presence, `Err(condition)` when the room
    /// refuses (`forbidden` for a banned user).
    pub async fn join(&mut self, occupant: &str) -> anyhow::Result<Result<(), String>> {
        self.send(&format!("<presence to='{occupant}'><x xmlns='{MUC_NS}'/></presence>")).await?;
        let answer = self
            .wait_for(Duration::from_secs(10), |e| e.name() == "presence" && e.attr("from") == Some(occupant))
            .await
            .with_context(|| format!("no answer from {occupant}"))?;
        if answer.attr("type") == Some("error") {
            return Ok(Err(error_condition(&answer).unwrap_or_else(|| "error".to_owned())));
        }
        Ok(Ok(()))
    }

    /// Leaves `room/nick` and waits for the room to confirm.
    pub async fn leave(&mut self, occupant: &str) -> anyhow::Result<()> {
        self.send(&format!("<presence to='{occupant}' type='unavailable'/>")).await?;
        self.wait_for(Duration::from_secs(10), |e| {
            e.name() == "presence" && e.attr("from") == Some(occupant) && e.attr("type") == Some("unavailable")
        })
        .await
        .with_context(|| format!("{occupant} did not confirm the leave"))?;
        Ok(())
    }
}

/// The defined condition of an error stanza.
fn error_condition(stanza: &Element) -> Option<String> {
    let error = stanza.children().find(|c| c.name() == "error")?;
    error.children().find(|c| c.name() != "text").map(|c| c.name().to_owned())
}

/// Sends a chat message `id` from `from` to `to`'s bare JID and says how it went within
/// `within`: `Some(condition)` when the sender got an error back, `None` when `to` received it.
pub async fn chat(from: &mut Client, to: &mut Client, id: &str, within: Duration) -> Option<String> {
    let target = to.jid.split('/').next().unwrap_or_default().to_owned();
    from.send(&format!("<message type='chat' to='{target}' id='{id}'><body>{id}</body></message>"))
        .await
        .expect("send a chat message");
    let delivered = to.wait_for(within, |m| m.name() == "message" && m.attr("id") == Some(id));
    let bounced = from.wait_for(within, |m| m.name() == "message" && m.attr("type") == Some("error"));
    tokio::select! {
        Some(_) = delivered => None,
        Some(error) = bounced => error_condition(&error),
        else => panic!("message {id} neither delivered nor bounced"),
    }
}
