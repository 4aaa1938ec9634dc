//! The XEP-0060 RTBL service on the component JID, in the xmppbl.org conventions that
//! Prosody's and ejabberd's mod_muc_rtbl and mod_anti_spam read (spec/blocklists.md, RTBL
//! service): what this node lists with action `block`, as payload-less items whose ids are
//! the data.
//!
//! Consumers subscribe and fetch the items once, at their own start-up, which is usually
//! before our component can be connected, and never ask again. So the service pushes:
//! - every committed change, to every subscriber, as it commits (adds grouped, one retract per
//!   event, never both in one event, since ejabberd reads only the first retract);
//! - on every (re)connect, the whole list and a retract for everything that left it since
//!   the subscriber was last known to be in sync, to every persisted and configured
//!   subscriber, chunked under the stanza limit.
//!
//! A subscriber counts as in sync through a change-feed position only when our server
//! answered a ping sent after the notifications: the component stream is processed in order,
//! so by then the server has routed them. A lost notification is therefore sent again by the
//! next replay, never skipped.
//!
//! **Ordering:** one lock covers reading the list and queueing what was read, for the live
//! pushes, the replays and the `items` answers alike. An answer computed before a change is
//! thus never queued after that change's notification, and mod_muc_rtbl, which replaces its
//! whole set with each answer, never loses an entry to a race.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minidom::Element;
use ostracon_protocol::ids::BareJid;
use ostracon_protocol::rtbl::RtblNode;
use ostracon_protocol::xml::errors::StanzaError;
use ostracon_protocol::xml::pubsub::{
    PubsubRequest, Subscriber, item_bytes, items_event, items_result, retract_event, subscription_result,
};
use ostracon_store::StoreError;
use ostracon_store::ledger::rtbl::{RtblSubscription, Subscribed, SubscriberCaps};
use ostracon_store::model::{ChangeOp, ListAction, ListChange};
use ostracon_store::traits::BlocklistStore as _;
use tokio::sync::watch;

use super::connection::LinkState;
use super::limits::Traffic;
use super::node::{XmppNode, service_unavailable};
use super::stanza::{attr, iq_error, iq_result, stanza};
use crate::config::RtblSettings;

/// Rows read from the database at a time while streaming a list.
const PAGE: u32 = 1_000;
/// How long to wait for the server's answer to the ping that confirms a push.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Lists are measured for the stanza-limit warning at most this often.
const MEASURE_EVERY: Duration = Duration::from_secs(10);

/// The service's state.
pub(super) struct RtblService {
    pub(super) settings: RtblSettings,
    /// The change-feed position pushed through, under the ordering lock (see the file doc).
    pushed: tokio::sync::Mutex<i64>,
    /// When the lists were last measured against the stanza limit.
    pub(super) measured: std::sync::Mutex<Option<Instant>>,
}

impl RtblService {
    /// The service with these settings, or none when no node is served.
    pub(super) fn new(settings: RtblSettings) -> Option<Self> {
        (!settings.nodes.is_empty()).then(|| Self {
            settings,
            pushed: tokio::sync::Mutex::new(0),
            measured: std::sync::Mutex::new(None),
        })
    }
}

/// Groups item ids into stanzas that stay under a byte budget.
struct Chunks {
    budget: usize,
    current: Vec<String>,
    bytes: usize,
    done: Vec<Vec<String>>,
}

impl Chunks {
    fn new(budget: usize) -> Self {
        Self { budget, current: Vec::new(), bytes: 0, done: Vec::new() }
    }

    fn push(&mut self, id: String) {
        let size = item_bytes(&id);
        if !self.current.is_empty() && self.bytes + size > self.budget {
            self.done.push(std::mem::take(&mut self.current));
            self.bytes = 0;
        }
        self.bytes += size;
        self.current.push(id);
    }

    /// The chunks completed so far.
    fn take_done(&mut self) -> Vec<Vec<String>> {
        std::mem::take(&mut self.done)
    }

    /// Every chunk, the last one too.
    fn finish(mut self) -> Vec<Vec<String>> {
        if !self.current.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

/// What a push sent, to confirm once the server has routed it.
struct Pushed {
    by_node: BTreeMap<RtblNode, Vec<RtblSubscription>>,
    through: i64,
}

/// One notification: items published, or one item retracted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Push {
    Items(Vec<String>),
    Retract(String),
}

/// Whether a change leaves its offender published (listed, with action `block`).
fn publishes(op: ChangeOp, action: Option<ListAction>) -> bool {
    op == ChangeOp::Add && action == Some(ListAction::Block)
}

/// Whether `element` is an IQ get or set carrying `<pubsub/>`, for the RTBL task.
pub(super) fn is_request(element: &Element) -> bool {
    element.name() == "iq"
        && matches!(element.attr("type"), Some("get" | "set"))
        && element.children().any(|child| child.is("pubsub", ostracon_protocol::xml::pubsub::PUBSUB_NS))
}

impl XmppNode {
    /// Handles RTBL requests one at a time, in the order they arrived.
    pub(super) async fn run_rtbl_requests(self: Arc<Self>, mut queued: tokio::sync::mpsc::Receiver<Element>) {
        while let Some(request) = queued.recv().await {
            self.handle(super::stream::Inbound::Stanza(request)).await;
        }
    }

    fn rtbl(&self) -> Option<&RtblService> {
        self.rtbl.as_ref()
    }

    /// The largest stanza to send: `[rtbl] max_stanza_bytes`, or less once the server closed
    /// the stream over a stanza that size (the link would otherwise drop on every replay).
    fn max_stanza_bytes(&self, service: &RtblService) -> usize {
        let configured = service.settings.max_stanza_bytes;
        self.status.stanza_ceiling().map_or(configured, |ceiling| ceiling.min(configured))
    }

    /// Bytes of a stanza's envelope around its items, measured on the real element, plus a
    /// margin for what the server adds when it routes it.
    fn envelope_bytes(&self, to: &str, id_attr: Option<&str>, node: RtblNode) -> usize {
        let mut probe = match id_attr {
            Some(id) => iq_result(&self.jid(), to, id, Some(items_result(node.name(), []))),
            None => self.notification(to, items_event(node.name(), [])),
        };
        if id_attr.is_none() {
            super::stanza::set(&mut probe, "id", "0000000000000000");
        }
        ostracon_protocol::xml::to_string(&probe).len() + 256
    }

    fn notification(&self, to: &str, event: Element) -> Element {
        let mut message = stanza("message", &[("from", &self.jid()), ("to", to)]);
        message.append_child(event);
        message
    }

    async fn send_pushes(&self, node: RtblNode, to: &Subscriber, pushes: &[Push]) {
        let to = to.to_string();
        for push in pushes {
            let event = match push {
                Push::Items(ids) => items_event(node.name(), ids.iter().map(String::as_str)),
                Push::Retract(id) => retract_event(node.name(), id),
            };
            self.send(self.notification(&to, event)).await;
        }
    }

    /// Whether `sender` may subscribe to or read the service.
    async fn may_use_rtbl(&self, service: &RtblService, sender: &BareJid) -> Result<bool, StanzaError> {
        if service.settings.public || service.settings.allow.iter().any(|domain| sender.domain().is_within(domain)) {
            return Ok(true);
        }
        Ok(self.peers().await?.is_buddy_server(sender))
    }

    /// Answers an IQ whose child is `<pubsub/>`: subscribe, unsubscribe or items.
    pub(super) async fn handle_pubsub(&self, iq: &Element, sender: &BareJid, pubsub: &Element) {
        let (Some(from), Some(id), Some(iq_type)) = (attr(iq, "from"), attr(iq, "id"), attr(iq, "type")) else {
            return;
        };
        let answer = match self.rtbl() {
            None => Err(service_unavailable()),
            Some(service) => self.answer_pubsub(service, sender, &from, &id, &iq_type, pubsub).await,
        };
        if let Err(error) = answer {
            tracing::debug!(sender = %sender, condition = error.condition, text = %error.text, "refused an RTBL request");
            self.send(iq_error(&self.jid(), &from, &id, &error)).await;
        }
    }

    /// Does the request; the answer is sent here on success (an `items` answer may be
    /// followed by notifications, under the ordering lock).
    async fn answer_pubsub(
        &self,
        service: &RtblService,
        sender: &BareJid,
        from: &str,
        id: &str,
        iq_type: &str,
        pubsub: &Element,
    ) -> Result<(), StanzaError> {
        if !self.limits.admit(sender, Traffic::Pubsub, Instant::now()) {
            self.status.add(super::connection::Counter::RateLimited, 1);
            return Err(StanzaError::rate_limited());
        }
        let request = PubsubRequest::parse(pubsub, iq_type, sender).map_err(|error| StanzaError::from_error(&error))?;
        let name = match &request {
            PubsubRequest::Subscribe { node, .. }
            | PubsubRequest::Unsubscribe { node, .. }
            | PubsubRequest::Items { node } => node,
        };
        let Some(node) = RtblNode::from_name(name).filter(|node| service.settings.nodes.contains(node)) else {
            return Err(StanzaError {
                error_type: "cancel",
                condition: "item-not-found",
                app_condition: None,
                text: format!("no node {name}"),
            });
        };
        if !self.may_use_rtbl(service, sender).await? {
            return Err(StanzaError {
                error_type: "auth",
                condition: "forbidden",
                app_condition: None,
                text: "this list is open to its operator's own server and buddies".to_owned(),
            });
        }
        let unavailable = |error: StoreError| {
            tracing::warn!(%error, "RTBL request failed on the database");
            service_unavailable()
        };
        match request {
            PubsubRequest::Subscribe { jid, .. } => {
                let now = self.env.now();
                match self.ledger.rtbl_subscribe(node, &jid, service.settings.caps, now).await.map_err(unavailable)? {
                    Subscribed::Added => tracing::info!(subscriber = %jid, node = node.name(), "RTBL subscriber added"),
                    Subscribed::Already => {}
                    Subscribed::OverCap => {
                        return Err(StanzaError {
                            error_type: "wait",
                            condition: "resource-constraint",
                            app_condition: None,
                            text: "too many subscriptions".to_owned(),
                        });
                    }
                }
                let result = iq_result(&self.jid(), from, id, Some(subscription_result(node.name(), &jid, true)));
                self.send(result).await;
            }
            PubsubRequest::Unsubscribe { jid, .. } => {
                if self.ledger.rtbl_unsubscribe(node, &jid).await.map_err(unavailable)? {
                    tracing::info!(subscriber = %jid, node = node.name(), "RTBL subscriber left");
                }
                let result = iq_result(&self.jid(), from, id, Some(subscription_result(node.name(), &jid, false)));
                self.send(result).await;
            }
            PubsubRequest::Items { .. } => {
                let requester = Subscriber::parse(from).map_err(|error| StanzaError::from_error(&error))?;
                // Asking for the items subscribes too: a consumer's subscribe, sent as its
                // module loads, is lost when its server's s2s is not up yet, while the items
                // request, sent once the server has started, arrives (seen with Prosody).
                let now = self.env.now();
                let subscribed = self.ledger.rtbl_subscribe(node, &requester, service.settings.caps, now).await;
                if subscribed.map_err(unavailable)? == Subscribed::Added {
                    tracing::info!(subscriber = %requester, node = node.name(), "RTBL subscriber added by its items request");
                }
                let _order = service.pushed.lock().await;
                self.send_items(service, node, &requester, id).await.map_err(unavailable)?;
            }
        }
        Ok(())
    }

    /// The `items` answer: as many items as one stanza carries, then the rest as
    /// notifications to the requester (an answer replaces a consumer's set; what follows adds).
    async fn send_items(
        &self,
        service: &RtblService,
        node: RtblNode,
        requester: &Subscriber,
        id: &str,
    ) -> Result<(), StoreError> {
        let to = requester.to_string();
        let max = self.max_stanza_bytes(service);
        let mut chunks = Chunks::new(max.saturating_sub(self.envelope_bytes(&to, Some(id), node)));
        let event_budget = max.saturating_sub(self.envelope_bytes(&to, None, node));
        let mut answered = false;
        let send = async |chunk: Vec<String>, answered: &mut bool, chunks: &mut Chunks| {
            if *answered {
                self.send_pushes(node, requester, &[Push::Items(chunk)]).await;
            } else {
                let ids = chunk.iter().map(String::as_str);
                self.send(iq_result(&self.jid(), &to, id, Some(items_result(node.name(), ids)))).await;
                *answered = true;
                chunks.budget = event_budget;
            }
        };
        let mut after = 0;
        loop {
            let page = self.ledger.store().rtbl_entries(node, true, after, PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            for item in page.iter().filter_map(|(_, offender)| node.item_id(offender)) {
                chunks.push(item);
                for chunk in chunks.take_done() {
                    send(chunk, &mut answered, &mut chunks).await;
                }
            }
        }
        let rest = std::mem::replace(&mut chunks, Chunks::new(event_budget)).finish();
        if rest.is_empty() && !answered {
            send(Vec::new(), &mut answered, &mut chunks).await;
        }
        for chunk in rest {
            send(chunk, &mut answered, &mut chunks).await;
        }
        Ok(())
    }

    /// Pushes what the lists do until `stop`: each committed change as it commits, and the
    /// whole list on every (re)connect of the link (counted by `links`).
    pub async fn run_rtbl(self: Arc<Self>, mut links: watch::Receiver<u64>, mut stop: watch::Receiver<bool>) {
        let Some(service) = self.rtbl() else { return };
        let mut lists = self.ledger.watch_lists();
        loop {
            match self.start_rtbl(service).await {
                Ok(()) => break,
                Err(error) => tracing::warn!(%error, "RTBL service cannot read its subscribers; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.changed() => return,
            }
        }
        // The lists are measured after every push and on this tick, so a warning also comes
        // and goes with expiries and with a lowered stanza ceiling.
        let mut tick = tokio::time::interval(MEASURE_EVERY);
        loop {
            let pushed = tokio::select! {
                _ = tick.tick() => Ok(None),
                changed = links.changed() => match changed {
                    Ok(()) => self.replay(service).await,
                    Err(_) => return,
                },
                changed = lists.changed() => match changed {
                    Ok(()) if self.status.get() == LinkState::Online => self.push_changes(service).await,
                    // Offline: the replay on the next connect carries it.
                    Ok(()) => Ok(None),
                    Err(_) => return,
                },
                _ = stop.changed() => return,
            };
            match pushed {
                // Confirmed apart, so a server slow to answer never holds the next push.
                Ok(Some(pushed)) => drop(tokio::spawn(Arc::clone(&self).confirm(pushed))),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "RTBL push failed on the database; the next change or reconnect retries")
                }
            }
            self.measure(service).await;
        }
    }

    /// Persists the configured subscribers and starts the live pushes at the feed's end
    /// (the first connect's replay carries what came before).
    async fn start_rtbl(&self, service: &RtblService) -> Result<(), StoreError> {
        self.start_rtbl_subscribers(service).await?;
        *service.pushed.lock().await = self.ledger.store().last_change_seq().await?;
        Ok(())
    }

    /// Persists the configured subscribers (`[[rtbl.push]]`), outside the caps.
    async fn start_rtbl_subscribers(&self, service: &RtblService) -> Result<(), StoreError> {
        let unbounded = SubscriberCaps { total: u32::MAX, per_domain: u32::MAX };
        for (node, jid) in &service.settings.push {
            self.ledger.rtbl_subscribe(*node, jid, unbounded, self.env.now()).await?;
        }
        Ok(())
    }

    /// The subscriptions of every served node, by node.
    async fn subscribers_by_node(
        &self,
        service: &RtblService,
    ) -> Result<BTreeMap<RtblNode, Vec<RtblSubscription>>, StoreError> {
        let mut by_node: BTreeMap<RtblNode, Vec<RtblSubscription>> = BTreeMap::new();
        for subscription in self.ledger.store().rtbl_subscriptions().await? {
            if service.settings.nodes.contains(&subscription.node) {
                by_node.entry(subscription.node).or_default().push(subscription);
            }
        }
        Ok(by_node)
    }

    /// The byte budget for the items of one notification to any of `subscribers`.
    fn event_budget(&self, service: &RtblService, node: RtblNode, subscribers: &[RtblSubscription]) -> usize {
        let longest = subscribers.iter().map(|s| s.jid.to_string()).max_by_key(String::len).unwrap_or_default();
        self.max_stanza_bytes(service).saturating_sub(self.envelope_bytes(&longest, None, node))
    }

    /// Pushes the changes committed since the last push; returns what to confirm.
    async fn push_changes(&self, service: &RtblService) -> Result<Option<Pushed>, StoreError> {
        let by_node = self.subscribers_by_node(service).await?;
        let mut pushed = service.pushed.lock().await;
        let start = *pushed;
        loop {
            let changes = self.ledger.store().changes_since(*pushed, None, PAGE).await?;
            let Some(last) = changes.last() else { break };
            let last = last.seq;
            for (node, subscribers) in &by_node {
                let pushes = pushes_for(*node, &changes, self.event_budget(service, *node, subscribers));
                for subscriber in subscribers {
                    self.send_pushes(*node, &subscriber.jid, &pushes).await;
                }
            }
            *pushed = last;
        }
        let through = *pushed;
        Ok((through > start).then_some(Pushed { by_node, through }))
    }

    /// On a (re)connect: to every subscriber, a retract for what left its node since it was
    /// last in sync, then the whole list.
    async fn replay(&self, service: &RtblService) -> Result<Option<Pushed>, StoreError> {
        let store = self.ledger.store();
        // A configured subscriber stays one even if it unsubscribed meanwhile (a module
        // unload, or a reload whose subscribe was lost).
        self.start_rtbl_subscribers(service).await?;
        let by_node = self.subscribers_by_node(service).await?;
        let mut pushed = service.pushed.lock().await;
        let (pruned, through) = store.change_feed_bounds().await?;
        for (node, subscribers) in &by_node {
            let node = *node;
            for subscriber in subscribers {
                let retracts = self.retracts_since(node, subscriber.synced_through, through, pruned).await?;
                let pushes: Vec<Push> = retracts.into_iter().map(Push::Retract).collect();
                self.send_pushes(node, &subscriber.jid, &pushes).await;
            }
            let mut chunks = Chunks::new(self.event_budget(service, node, subscribers));
            let (mut after, mut items) = (0, 0usize);
            loop {
                let page = store.rtbl_entries(node, true, after, PAGE).await?;
                let Some((last, _)) = page.last() else { break };
                after = *last;
                for item in page.iter().filter_map(|(_, offender)| node.item_id(offender)) {
                    items += 1;
                    chunks.push(item);
                }
                let full: Vec<Push> = chunks.take_done().into_iter().map(Push::Items).collect();
                for subscriber in subscribers {
                    self.send_pushes(node, &subscriber.jid, &full).await;
                }
            }
            let rest: Vec<Push> = chunks.finish().into_iter().map(Push::Items).collect();
            for subscriber in subscribers {
                self.send_pushes(node, &subscriber.jid, &rest).await;
            }
            tracing::info!(
                node = node.name(),
                subscribers = subscribers.len(),
                items,
                "RTBL list pushed after connecting"
            );
        }
        *pushed = through;
        Ok(Some(Pushed { by_node, through }))
    }

    /// The ids of `node` whose last change in `(since, through]` left them unpublished; when
    /// the feed no longer reaches back to `since`, every id the node does not publish.
    async fn retracts_since(
        &self,
        node: RtblNode,
        since: i64,
        through: i64,
        pruned: i64,
    ) -> Result<Vec<String>, StoreError> {
        let store = self.ledger.store();
        let mut retracts = Vec::new();
        if since < pruned {
            let mut after = 0;
            loop {
                let page = store.rtbl_entries(node, false, after, PAGE).await?;
                let Some((last, _)) = page.last() else { break };
                after = *last;
                retracts.extend(page.iter().filter_map(|(_, offender)| node.item_id(offender)));
            }
            return Ok(retracts);
        }
        let mut last_state: BTreeMap<String, bool> = BTreeMap::new();
        let mut cursor = since;
        while cursor < through {
            let changes = store.changes_since(cursor, None, PAGE).await?;
            let Some(last) = changes.last() else { break };
            cursor = last.seq;
            for change in changes.iter().filter(|c| c.seq <= through) {
                if let Some(id) = node.item_id(&change.offender) {
                    last_state.insert(id, publishes(change.op, change.action));
                }
            }
        }
        retracts.extend(last_state.into_iter().filter(|(_, published)| !published).map(|(id, _)| id));
        Ok(retracts)
    }

    /// Marks the subscribers in sync through `through` once our server answered a ping sent
    /// after their notifications (it has routed them by then); without an answer they stay
    /// where they were, and the next replay sends more than needed rather than less.
    async fn confirm(self: Arc<Self>, pushed: Pushed) {
        let Pushed { by_node, through } = pushed;
        if by_node.is_empty() {
            return;
        }
        let server = BareJid::from_domain(self.settings.server_domain.clone());
        let ping = Element::bare("ping", super::node::PING_NS);
        if let Err(error) = self.request(&server, "get", ping, SYNC_TIMEOUT).await {
            tracing::debug!(%error, "no answer to the ping confirming an RTBL push; subscribers stay where they were");
            return;
        }
        for (node, subscribers) in by_node {
            let jids: Vec<Subscriber> = subscribers.iter().map(|s| s.jid.clone()).collect();
            if let Err(error) = self.ledger.rtbl_synced(node, &jids, through).await {
                tracing::warn!(%error, "cannot record RTBL subscribers as in sync");
            }
        }
    }

    /// Measures the lists against the stanza limit (at most every [`MEASURE_EVERY`]) and
    /// says so in `/healthz`, `/v1/status` and the log when one outgrows one `items` answer.
    pub(super) async fn measure(&self, service: &RtblService) {
        {
            let mut measured = service.measured.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if measured.is_some_and(|at| at.elapsed() < MEASURE_EVERY) {
                return;
            }
            *measured = Some(Instant::now());
        }
        let mut warnings = Vec::new();
        for node in &service.settings.nodes {
            let Ok((items, bytes)) = self.ledger.store().rtbl_size(*node).await else { return };
            let max = self.max_stanza_bytes(service);
            let budget = max.saturating_sub(self.envelope_bytes("", Some(""), *node));
            if bytes > budget as u64 {
                warnings.push(format!(
                    "RTBL node {} has {items} items ({bytes} bytes), more than one items answer of {} bytes \
                     carries ([rtbl] max_stanza_bytes): the rest follows as notifications, but a consumer whose \
                     server limits stanzas lower drops the link; raise Prosody's component_stanza_size_limit \
                     (and s2s_stanza_size_limit for remote consumers) with max_stanza_bytes",
                    node.name(),
                    max
                ));
            }
        }
        if let Some(ceiling) = self.status.stanza_ceiling().filter(|c| *c < service.settings.max_stanza_bytes) {
            warnings.push(format!(
                "the XMPP server closed the stream after a stanza of about {} bytes: RTBL stanzas stay under {ceiling} \
                 bytes until the node restarts; set [rtbl] max_stanza_bytes under the server's stanza size limit",
                ceiling * 2
            ));
        }
        if self.status.set_warnings(warnings.clone()) {
            for warning in &warnings {
                tracing::warn!("{warning}");
            }
        }
    }
}

/// The notifications for a page of changes to `node`, in order: adds grouped under
/// `budget`, each retract alone.
fn pushes_for(node: RtblNode, changes: &[ListChange], budget: usize) -> Vec<Push> {
    let mut pushes = Vec::new();
    let mut chunks = Chunks::new(budget);
    for change in changes {
        let Some(id) = node.item_id(&change.offender) else { continue };
        if publishes(change.op, change.action) {
            chunks.push(id);
        } else {
            let pending = std::mem::replace(&mut chunks, Chunks::new(budget));
            pushes.extend(pending.finish().into_iter().map(Push::Items));
            pushes.push(Push::Retract(id));
        }
    }
    pushes.extend(chunks.finish().into_iter().map(Push::Items));
    pushes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_under_their_budget_and_keep_order() {
        let mut chunks = Chunks::new(3 * item_bytes("aa"));
        for id in ["aa", "bb", "cc", "dd", "ee"] {
            chunks.push(id.to_owned());
        }
        assert_eq!(chunks.finish(), [vec!["aa", "bb", "cc"], vec!["dd", "ee"]]);
        let mut tiny = Chunks::new(1);
        tiny.push("larger-than-the-budget".to_owned());
        assert_eq!(tiny.finish(), [vec!["larger-than-the-budget"]], "one item always goes, alone");
    }

    #[test]
    fn only_a_block_listing_publishes() {
        assert!(publishes(ChangeOp::Add, Some(ListAction::Block)));
        assert!(!publishes(ChangeOp::Add, Some(ListAction::Quarantine)));
        assert!(!publishes(ChangeOp::Add, Some(ListAction::Observe)));
        assert!(!publishes(ChangeOp::Remove, None));
    }
}

#[cfg(test)]
mod pushes {
    use super::*;
    use ostracon_protocol::ids::Offender;
    use ostracon_protocol::time::Timestamp;

    fn change(seq: i64, op: ChangeOp, offender: &str, action: Option<ListAction>) -> ListChange {
        ListChange {
            seq,
            op,
            list: ostracon_store::model::ListKind::Jid,
            offender: Offender::parse(offender).unwrap(),
            action,
            expires_at: None,
            at: Timestamp::from_unix(0).unwrap(),
            log_index: 0,
        }
    }

    #[test]
    fn adds_group_and_every_retract_stands_alone_in_order() {
        let block = Some(ListAction::Block);
        let changes = [
            change(1, ChangeOp::Add, "a@x.example", block),
            change(2, ChangeOp::Add, "b@x.example", block),
            change(3, ChangeOp::Remove, "a@x.example", None),
            change(4, ChangeOp::Add, "c@x.example", Some(ListAction::Quarantine)),
            change(5, ChangeOp::Add, "192.0.2.1", block),
            change(6, ChangeOp::Add, "a@x.example", block),
        ];
        let id = |jid: &str| ostracon_protocol::rtbl::sha256_hex(jid);
        let pushes = pushes_for(RtblNode::SpamSourceJidsSha256, &changes, 10_000);
        assert_eq!(
            pushes,
            [
                Push::Items(vec![id("a@x.example"), id("b@x.example")]),
                Push::Retract(id("a@x.example")),
                Push::Retract(id("c@x.example")),
                Push::Items(vec![id("a@x.example")]),
            ],
            "a downgrade to quarantine retracts; an address is not in a JID node"
        );
    }
}
