//! The RTBL service's bookkeeping: who subscribes to which pubsub node, how far each has been
//! sent the change feed, and the entries each node publishes.
//!
//! Subscriptions are delivery state, like the outbox's progress: they say nothing about the
//! lists, so they change without an audit leaf. They are kept across restarts because RTBL
//! consumers subscribe once, at their own start-up, and never again.
//!
//! A node publishes only what this node itself lists with action `block`: never quarantine or
//! observe, and never what still waits for a quorum (that is not an entry yet).

use ostracon_protocol::ids::Offender;
use ostracon_protocol::rtbl::RtblNode;
use ostracon_protocol::time::Timestamp;
use ostracon_protocol::xml::pubsub::Subscriber;
use sqlx::Row as _;

use super::Ledger;
use crate::model::offender_from_row;
use crate::traits::BlocklistStore as _;
use crate::{Result, Store, StoreError};

/// Caps on subscriptions, so the table a stranger can grow stays bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriberCaps {
    /// Subscriptions in all.
    pub total: u32,
    /// Subscriptions from one domain (ejabberd subscribes one full JID per cluster node).
    pub per_domain: u32,
}

impl Default for SubscriberCaps {
    fn default() -> Self {
        Self { total: 1_000, per_domain: 16 }
    }
}

/// What a subscribe did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// A new subscription.
    Added,
    /// It existed already (a reload subscribes again: idempotent).
    Already,
    /// Over [`SubscriberCaps`]: refused.
    OverCap,
}

/// One subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtblSubscription {
    /// The pubsub node.
    pub node: RtblNode,
    /// Where its notifications go, exactly as subscribed.
    pub jid: Subscriber,
    /// When it subscribed.
    pub subscribed_at: Timestamp,
    /// The change-feed position it is known to have been sent everything up to.
    pub synced_through: i64,
}

impl Ledger {
    /// Subscribes `jid` to `node`, idempotently, within `caps`; a new subscriber counts as
    /// synced through the feed's current end (it fetches the items itself).
    pub async fn rtbl_subscribe(
        &self,
        node: RtblNode,
        jid: &Subscriber,
        caps: SubscriberCaps,
        now: Timestamp,
    ) -> Result<Subscribed> {
        let _writer = self.writer.lock().await;
        let (node_name, jid_text, domain) = (node.name(), jid.to_string(), jid.bare().domain().as_str());
        let exists = sqlx::query("SELECT 1 AS one FROM rtbl_subscribers WHERE node = $1 AND jid = $2")
            .bind(node_name)
            .bind(&jid_text)
            .fetch_optional(self.store.pool())
            .await?;
        if exists.is_some() {
            return Ok(Subscribed::Already);
        }
        let counts = sqlx::query(
            "SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN domain = $1 THEN 1 ELSE 0 END), 0) AS here \
             FROM rtbl_subscribers",
        )
        .bind(domain)
        .fetch_one(self.store.pool())
        .await?;
        let (total, here): (i64, i64) = (counts.try_get("total")?, counts.try_get("here")?);
        if total >= i64::from(caps.total) || here >= i64::from(caps.per_domain) {
            return Ok(Subscribed::OverCap);
        }
        let through = self.store.last_change_seq().await?;
        sqlx::query(
            "INSERT INTO rtbl_subscribers (node, jid, domain, subscribed_at, synced_through) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (node, jid) DO NOTHING",
        )
        .bind(node_name)
        .bind(&jid_text)
        .bind(domain)
        .bind(now.unix())
        .bind(through)
        .execute(self.store.pool())
        .await?;
        Ok(Subscribed::Added)
    }

    /// Ends a subscription; false if there was none (unsubscribing twice is not an error).
    pub async fn rtbl_unsubscribe(&self, node: RtblNode, jid: &Subscriber) -> Result<bool> {
        let done = sqlx::query("DELETE FROM rtbl_subscribers WHERE node = $1 AND jid = $2")
            .bind(node.name())
            .bind(jid.to_string())
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records that these subscribers of `node` have been sent everything through `through`
    /// (a position never moves back).
    pub async fn rtbl_synced(&self, node: RtblNode, jids: &[Subscriber], through: i64) -> Result<()> {
        let mut tx = self.store.begin_write().await?;
        for jid in jids {
            sqlx::query(
                "UPDATE rtbl_subscribers SET synced_through = $1 WHERE node = $2 AND jid = $3 AND synced_through < $1",
            )
            .bind(through)
            .bind(node.name())
            .bind(jid.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Every subscription, by node and JID.
    pub async fn rtbl_subscriptions(&self) -> Result<Vec<RtblSubscription>> {
        let rows =
            sqlx::query("SELECT node, jid, subscribed_at, synced_through FROM rtbl_subscribers ORDER BY node, jid")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|row| {
                let node: String = row.try_get("node")?;
                let jid: String = row.try_get("jid")?;
                Ok(RtblSubscription {
                    node: RtblNode::from_name(&node)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown RTBL node {node:?}")))?,
                    jid: Subscriber::parse(&jid)
                        .map_err(|e| StoreError::Corrupt(format!("subscriber {jid:?}: {e}")))?,
                    subscribed_at: Timestamp::from_unix(row.try_get("subscribed_at")?)
                        .ok_or_else(|| StoreError::Corrupt(format!("subscriber {jid:?}: a time out of range")))?,
                    synced_through: row.try_get("synced_through")?,
                })
            })
            .collect()
    }

    /// A page of the entries `node` carries, by entry id after `after`: the ones it publishes
    /// (`published`: active, action `block`) or the ones it does not (delisted, or listed
    /// with another action), which a replay retracts.
    pub async fn rtbl_entries(
        &self,
        node: RtblNode,
        published: bool,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Offender)>> {
        let kinds = node.entry_kinds();
        let first = kinds.first().copied().unwrap_or("jid");
        let second = kinds.get(1).copied().unwrap_or(first);
        let listed = "(active = 1 AND action = 'block')";
        let sql = format!(
            "SELECT id, kind, value FROM entries WHERE (kind = $1 OR kind = $2) AND {}{listed} AND id > $3 \
             ORDER BY id LIMIT $4",
            if published { "" } else { "NOT " }
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(first)
            .bind(second)
            .bind(after)
            .bind(i64::from(limit.clamp(1, 10_000)))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let offender =
                    offender_from_row(&row.try_get::<String, _>("kind")?, &row.try_get::<String, _>("value")?)?;
                Ok((row.try_get("id")?, offender))
            })
            .collect()
    }

    /// How many items `node` publishes and about how many bytes they take in one `items`
    /// result, to tell whether one result still carries the whole list (counted in SQL,
    /// so a large list is not read to measure it; non-ASCII domains count one byte a letter).
    pub async fn rtbl_size(&self, node: RtblNode) -> Result<(u64, u64)> {
        let rows = sqlx::query(
            "SELECT kind, COUNT(*) AS n, COALESCE(SUM(LENGTH(value)), 0) AS chars, \
             COALESCE(SUM(CASE WHEN value LIKE '%:%' THEN 1 ELSE 0 END), 0) AS v6 FROM entries \
             WHERE active = 1 AND action = 'block' GROUP BY kind",
        )
        .fetch_all(self.pool())
        .await?;
        let (mut count, mut bytes) = (0u64, 0u64);
        for row in rows {
            let kind: String = row.try_get("kind")?;
            if !node.entry_kinds().contains(&kind.as_str()) {
                continue;
            }
            let [n, chars, v6] = ["n", "chars", "v6"]
                .map(|column| row.try_get::<i64, _>(column).map(|value| u64::try_from(value).unwrap_or(0)));
            let (n, chars, v6) = (n?, chars?, v6?);
            let id_bytes = match (node, kind.as_str()) {
                (RtblNode::MucBansSha256 | RtblNode::SpamSourceJidsSha256, _) => n * 64,
                // A single address gains its prefix length: `/32` or `/128`.
                (RtblNode::SpamSourceIps, "ip") => chars + n * 3 + v6,
                _ => chars,
            };
            count += n;
            bytes += id_bytes + n * ostracon_protocol::xml::pubsub::ITEM_OVERHEAD_BYTES as u64;
        }
        Ok((count, bytes))
    }
}
