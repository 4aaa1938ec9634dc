//! Reading a server's stanzas in tests: parsed with minidom's tree builder on rxml events
//! (what servers send tests is shallow) and queued, so a test waits for the stanza it
//! expects by predicate, in whatever order stanzas come.

use std::collections::VecDeque;
use std::time::Duration;

use minidom::Element;
use minidom::tree_builder::TreeBuilder;
use rxml::{AsyncRawReader, RawEvent};
use tokio::io::BufReader;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

/// Stanzas read from one stream, in a background task that ends with the stream or the inbox.
pub struct Inbox {
    received: mpsc::UnboundedReceiver<Element>,
    /// Received stanzas no wait has taken yet.
    held: VecDeque<Element>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Inbox {
    /// Reads stanzas from `read`, whose stream header was consumed already: the parser is
    /// seeded with one in `namespace`.
    pub fn read(read: OwnedReadHalf, namespace: &str) -> Self {
        let (tx, received) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_stanzas(read, tx, namespace.to_owned()));
        Self { received, held: VecDeque::new(), reader }
    }

    /// The first received stanza that `wanted` accepts, within `within`; the others are kept
    /// for later waits, since answers come in any order.
    pub async fn wait_for(&mut self, within: Duration, wanted: impl Fn(&Element) -> bool) -> Option<Element> {
        if let Some(position) = self.held.iter().position(&wanted) {
            return self.held.remove(position);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.received.recv()).await {
                Ok(Some(element)) if wanted(&element) => return Some(element),
                Ok(Some(element)) => self.held.push_back(element),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Drops everything received so far.
    pub fn drain(&mut self) {
        self.held.clear();
        while self.received.try_recv().is_ok() {}
    }
}

/// The value of `name='...'` or `name="..."` in an element's opening tag.
pub fn attribute(tag: &str, name: &str) -> Option<String> {
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

async fn read_stanzas(read: OwnedReadHalf, inbox: mpsc::UnboundedSender<Element>, namespace: String) {
    let seeded = std::io::Cursor::new(
        format!("<stream:stream xmlns='{namespace}' xmlns:stream='http://etherx.jabber.org/streams'>").into_bytes(),
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
