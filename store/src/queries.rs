//! The read queries behind [`crate::traits`], written once for both dialects.

use ostracon_protocol::envelope::SignedEnvelope;
use ostracon_protocol::ids::{BareJid, IncidentId, Offender};
use ostracon_protocol::incident::Incident;
use ostracon_protocol::log::record::AuditRecord;
use ostracon_protocol::log::seal::{LogLeaf, Opening};
use ostracon_protocol::time::Timestamp;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::model::{
    AllowEntry, EntryReason, EntryRecord, IncidentEffect, IncidentRecord, ListAction, ListChange, ListKind, OutboxItem,
    OutboxJob, PeerDelivery, PeerRecord, Scope, TokenRecord, offender_from_row, ts_from_row,
};
use crate::traits::{AuditLogStore, BlocklistStore, IncidentFilter, IncidentStore, OutboxStore, PeerStore, TokenStore};
use crate::{Result, Store, StoreError};

pub(crate) const INCIDENT_COLUMNS: &str = "seq, body, origin, provenance, share, decision, decision_reason, \
     received_at, updated_at, log_index, verb, counterpart";
pub(crate) const ENTRY_COLUMNS: &str =
    "id, kind, value, action, source, first_seen, updated_at, expires_at, listings, active, log_index";

/// The change feed's highest sequence number held (0 for an empty feed), on any executor (the
/// ledger reads it inside its transactions and snapshots).
pub(crate) async fn max_change_seq<'c>(executor: impl sqlx::Executor<'c, Database = sqlx::Any>) -> Result<i64> {
    Ok(sqlx::query("SELECT COALESCE(MAX(seq), 0) AS s FROM list_changes").fetch_one(executor).await?.try_get("s")?)
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

pub(crate) fn incident_from_row(row: &AnyRow) -> Result<IncidentRecord> {
    let body: String = row.try_get("body")?;
    let incident: Incident = serde_json::from_str(&body).map_err(|e| corrupt("incident body", e))?;
    let provenance: Option<String> = row.try_get("provenance")?;
    let provenance = provenance
        .map(|text| serde_json::from_str::<Vec<SignedEnvelope>>(&text))
        .transpose()
        .map_err(|e| corrupt("incident provenance", e))?;
    Ok(IncidentRecord {
        seq: row.try_get("seq")?,
        incident,
        origin: row.try_get::<String, _>("origin")?.parse()?,
        provenance,
        share: row.try_get::<i64, _>("share")? != 0,
        decision: row.try_get::<String, _>("decision")?.parse()?,
        decision_reason: row.try_get("decision_reason")?,
        received_at: ts_from_row(row.try_get("received_at")?)?,
        updated_at: ts_from_row(row.try_get("updated_at")?)?,
        log_index: u64::try_from(row.try_get::<i64, _>("log_index")?).map_err(|e| corrupt("log index", e))?,
        verb: row.try_get::<String, _>("verb")?.parse()?,
        counterpart: row.try_get("counterpart")?,
    })
}

pub(crate) fn entry_from_row(row: &AnyRow) -> Result<EntryRecord> {
    let kind: String = row.try_get("kind")?;
    let value: String = row.try_get("value")?;
    Ok(EntryRecord {
        id: row.try_get("id")?,
        offender: offender_from_row(&kind, &value)?,
        action: row.try_get::<String, _>("action")?.parse()?,
        source: row.try_get::<String, _>("source")?.parse()?,
        first_seen: ts_from_row(row.try_get("first_seen")?)?,
        updated_at: ts_from_row(row.try_get("updated_at")?)?,
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(ts_from_row).transpose()?,
        listings: u32::try_from(row.try_get::<i64, _>("listings")?).map_err(|e| corrupt("listings", e))?,
        active: row.try_get::<i64, _>("active")? != 0,
        log_index: u64::try_from(row.try_get::<i64, _>("log_index")?).map_err(|e| corrupt("log index", e))?,
    })
}

fn change_from_row(row: &AnyRow) -> Result<ListChange> {
    let kind: String = row.try_get("kind")?;
    let offender = offender_from_row(&kind, &row.try_get::<String, _>("value")?)?;
    Ok(ListChange {
        seq: row.try_get("seq")?,
        op: row.try_get::<String, _>("op")?.parse()?,
        list: ListKind::of(&offender),
        offender,
        action: row.try_get::<Option<String>, _>("action")?.map(|a| a.parse::<ListAction>()).transpose()?,
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(ts_from_row).transpose()?,
        at: ts_from_row(row.try_get("at")?)?,
        log_index: u64::try_from(row.try_get::<i64, _>("log_index")?).map_err(|e| corrupt("log index", e))?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scope: row.try_get::<String, _>("scope")?.parse::<Scope>()?,
        created_at: ts_from_row(row.try_get("created_at")?)?,
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(ts_from_row).transpose()?,
    })
}

fn outbox_from_row(row: &AnyRow) -> Result<OutboxItem> {
    Ok(OutboxItem {
        id: row.try_get("id")?,
        peer: BareJid::parse(&row.try_get::<String, _>("peer")?).map_err(|e| corrupt("outbox peer", e))?,
        job: OutboxJob::from_columns(
            &row.try_get::<String, _>("kind")?,
            &row.try_get::<String, _>("reference")?,
            &row.try_get::<String, _>("payload")?,
        )?,
        created_at: ts_from_row(row.try_get("created_at")?)?,
        next_attempt_at: ts_from_row(row.try_get("next_attempt_at")?)?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).map_err(|e| corrupt("attempts", e))?,
        state: row.try_get("state")?,
        last_error: row.try_get("last_error")?,
    })
}

/// The stored `kind` of an offender.
pub(crate) fn offender_kind(offender: &Offender) -> &'static str {
    offender.kind()
}

impl IncidentStore for Store {
    async fn incident(&self, id: &IncidentId) -> Result<Option<IncidentRecord>> {
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()).fetch_optional(self.pool()).await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    async fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<IncidentRecord>> {
        // Each optional filter is `($n IS NULL OR column = $n)`, so one statement serves all
        // combinations and values are always bound, never spliced into the SQL.
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE \
             ($1 IS NULL OR status = $1) AND ($2 IS NULL OR category = $2) AND ($3 IS NULL OR reporter = $3) \
                          AND ($4 IS NULL OR origin = $4) AND ($5 IS NULL OR decision = $5) AND seq < $6 \
             AND ($8 IS NULL OR verb = $8) ORDER BY seq DESC LIMIT $7"
        );
        let limit = i64::from(filter.limit.clamp(1, 500));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.status.clone())
            .bind(filter.category.clone())
            .bind(filter.reporter.clone())
            .bind(filter.origin.map(|o| o.as_str().to_owned()))
            .bind(filter.decision.map(|d| d.as_str().to_owned()))
            .bind(filter.before.unwrap_or(i64::MAX))
            .bind(limit)
            .bind(filter.verb.map(|v| v.as_str().to_owned()))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(incident_from_row).collect()
    }
}

impl Store {
    /// How deliveries to `peer` are going (reads on the outbox's per-peer index). A presence
    /// is delivered once sent, so only answered items count as having reached the peer.
    pub async fn peer_delivery(&self, peer: &str) -> Result<PeerDelivery> {
        let row = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM outbox WHERE peer = $1 AND state = 'pending') AS pending, \
             (SELECT MIN(created_at) FROM outbox WHERE peer = $1 AND state = 'pending') AS oldest, \
             (SELECT MAX(attempts) FROM outbox WHERE peer = $1 AND state = 'pending') AS attempts, \
             (SELECT COUNT(*) FROM outbox WHERE peer = $1 AND state = 'failed') AS failed, \
             (SELECT MAX(next_attempt_at) FROM outbox WHERE peer = $1 AND state = 'delivered' \
              AND kind <> 'presence') AS delivered",
        )
        .bind(peer)
        .fetch_one(self.pool())
        .await?;
        let count = |name: &str| -> Result<u64> {
            Ok(row.try_get::<Option<i64>, _>(name)?.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
        };
        let at = |name: &str| -> Result<Option<Timestamp>> {
            Ok(row.try_get::<Option<i64>, _>(name)?.and_then(Timestamp::from_unix))
        };
        let last_error = sqlx::query(
            "SELECT last_error FROM outbox WHERE peer = $1 AND state IN ('pending', 'failed') \
             AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(peer)
        .fetch_optional(self.pool())
        .await?
        .map(|row| row.try_get::<String, _>("last_error"))
        .transpose()?;
        let mut delivery = PeerDelivery {
            status: "",
            pending: count("pending")?,
            oldest_pending_at: at("oldest")?,
            attempts: count("attempts")?,
            failed: count("failed")?,
            last_delivered_at: at("delivered")?,
            last_error,
        };
        delivery.status = delivery.status();
        Ok(delivery)
    }

    /// The outbox as the operator reads it: newest first, one peer's or one state's if asked,
    /// paged by id (`before`: the last id of the previous page). `limit` is capped at 500.
    pub async fn outbox_items(
        &self,
        peer: Option<&str>,
        state: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query(
            "SELECT id, peer, kind, reference, payload, created_at, next_attempt_at, attempts, state, last_error \
             FROM outbox WHERE ($1 IS NULL OR peer = $1) AND ($2 IS NULL OR state = $2) AND id < $3 \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(peer)
        .bind(state)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit.min(500)))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    /// To whom one incident went and how (its report, request, response, forward and inquiry
    /// rows), oldest first, at most `limit` (capped at 500) and whether there were more.
    pub async fn incident_deliveries(&self, incident: &IncidentId, limit: u32) -> Result<(Vec<OutboxItem>, bool)> {
        let limit = i64::from(limit.clamp(1, 500));
        let rows = sqlx::query(
            "SELECT id, peer, kind, reference, payload, created_at, next_attempt_at, attempts, state, last_error \
             FROM outbox WHERE reference = $1 AND kind IN ('report', 'request', 'response', 'forward', 'inquiry') \
             ORDER BY id LIMIT $2",
        )
        .bind(incident.to_string())
        .bind(limit + 1)
        .fetch_all(self.pool())
        .await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        let items = rows.iter().take(usize::try_from(limit).unwrap_or(usize::MAX)).map(outbox_from_row);
        Ok((items.collect::<Result<_>>()?, more))
    }

    /// Offenders with accepted evidence that has not (yet) made a quorum, the most recently
    /// contributed to first, with how many there are in all. `limit` is capped at 100.
    pub async fn candidates(&self, limit: u32, offset: u32) -> Result<(u64, Vec<(Offender, Vec<EntryReason>)>)> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT kind, value FROM candidate_reasons GROUP BY kind, value) AS waiting",
        )
        .fetch_one(self.pool())
        .await?;
        let rows = sqlx::query(
            "SELECT kind, value, MAX(added_at) AS latest FROM candidate_reasons GROUP BY kind, value \
             ORDER BY latest DESC, kind, value LIMIT $1 OFFSET $2",
        )
        .bind(i64::from(limit.min(100)))
        .bind(i64::from(offset))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let offender = offender_from_row(&row.try_get::<String, _>("kind")?, &row.try_get::<String, _>("value")?)?;
            let reasons = self.candidate_reasons(&offender).await?;
            out.push((offender, reasons));
        }
        Ok((u64::try_from(total).unwrap_or(0), out))
    }

    /// What incident `id` does to our lists now (three indexed counts).
    pub async fn incident_effect(&self, id: &IncidentId) -> Result<IncidentEffect> {
        let row = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM entry_reasons r JOIN entries e ON e.id = r.entry_id \
              WHERE r.incident_id = $1 AND e.active = 1) AS listed, \
             (SELECT COUNT(*) FROM candidate_reasons WHERE incident_id = $1 AND weight_milli > 0) AS waiting, \
             (SELECT COUNT(*) FROM held_changes WHERE incident_id = $1 AND change = 'list') AS held",
        )
        .bind(id.to_string())
        .fetch_one(self.pool())
        .await?;
        let count = |name: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0)) };
        Ok(IncidentEffect { listed: count("listed")?, waiting: count("waiting")?, held: count("held")? })
    }
}

impl BlocklistStore for Store {
    async fn entries_by_id(&self, ids: &[i64]) -> Result<Vec<EntryRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        // Lookups return a handful of ids; one indexed point query each keeps the SQL portable.
        for id in ids {
            let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = $1");
            if let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(*id).fetch_optional(self.pool()).await? {
                out.push(entry_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn entry(&self, offender: &Offender) -> Result<Option<EntryRecord>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE kind = $1 AND value = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(offender_kind(offender))
            .bind(offender.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn entry_reasons(&self, entry_id: i64) -> Result<Vec<EntryReason>> {
        let rows = sqlx::query(
            "SELECT incident_id, reporter, weight_milli, added_at FROM entry_reasons WHERE entry_id = $1 \
             ORDER BY added_at, incident_id",
        )
        .bind(entry_id)
        .fetch_all(self.pool())
        .await?;
        reasons_from_rows(&rows)
    }

    async fn candidate_reasons(&self, offender: &Offender) -> Result<Vec<EntryReason>> {
        let rows = sqlx::query(
            "SELECT incident_id, reporter, weight_milli, added_at FROM candidate_reasons WHERE kind = $1 AND value = $2 \
             ORDER BY added_at, incident_id",
        )
        .bind(offender_kind(offender))
        .bind(offender.to_string())
        .fetch_all(self.pool())
        .await?;
        reasons_from_rows(&rows)
    }

    async fn operator_entries(&self) -> Result<Vec<EntryRecord>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE active = 1 AND source = 'operator' ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.pool()).await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn active_entries(&self) -> Result<Vec<EntryRecord>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE active = 1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.pool()).await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn changes_since(&self, since: i64, list: Option<ListKind>, limit: u32) -> Result<Vec<ListChange>> {
        let kinds = list.map_or(&["ip", "cidr", "jid", "domain"][..], ListKind::entry_kinds);
        let first = kinds.first().copied().unwrap_or("ip");
        let second = kinds.get(1).copied().unwrap_or(first);
        let sql = "SELECT seq, kind, value, op, action, expires_at, at, log_index FROM list_changes \
                   WHERE seq > $1 AND (kind = $2 OR kind = $3 OR $4 = 0) ORDER BY seq LIMIT $5";
        let rows = sqlx::query(sql)
            .bind(since)
            .bind(first)
            .bind(second)
            .bind(i64::from(list.is_some()))
            .bind(i64::from(limit.clamp(1, 10_001)))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn last_change_seq(&self) -> Result<i64> {
        Ok(self.change_feed_bounds().await?.1)
    }

    async fn change_feed_bounds(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT value FROM meta WHERE key = 'changes_pruned_through') AS pruned, \
             (SELECT COALESCE(MAX(seq), 0) FROM list_changes) AS last",
        )
        .fetch_one(self.pool())
        .await?;
        let pruned = match row.try_get::<Option<String>, _>("pruned")? {
            Some(value) => value.parse().map_err(|e| corrupt("meta", e))?,
            None => 0,
        };
        // An empty table after pruning still has a position: the pruned cursor.
        Ok((pruned, row.try_get::<i64, _>("last")?.max(pruned)))
    }

    async fn pruned_through(&self) -> Result<i64> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = 'changes_pruned_through'")
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => row.try_get::<String, _>("value")?.parse().map_err(|e| corrupt("meta", e)),
            None => Ok(0),
        }
    }

    async fn allow_entries(&self) -> Result<Vec<AllowEntry>> {
        let rows =
            sqlx::query("SELECT kind, value, note, created_at, log_index FROM allow_entries ORDER BY kind, value")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|row| {
                Ok(AllowEntry {
                    offender: offender_from_row(
                        &row.try_get::<String, _>("kind")?,
                        &row.try_get::<String, _>("value")?,
                    )?,
                    note: row.try_get("note")?,
                    created_at: ts_from_row(row.try_get("created_at")?)?,
                    log_index: u64::try_from(row.try_get::<i64, _>("log_index")?).map_err(|e| corrupt("log", e))?,
                })
            })
            .collect()
    }
}

impl AuditLogStore for Store {
    async fn leaf_count(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_log").fetch_one(self.pool()).await?;
        u64::try_from(row.try_get::<i64, _>("n")?).map_err(|e| corrupt("leaf count", e))
    }

    async fn leaves(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>, Timestamp)>> {
        let rows = sqlx::query("SELECT idx, leaf, at FROM audit_log WHERE idx >= $1 AND idx < $2 ORDER BY idx")
            .bind(i64::try_from(start).unwrap_or(i64::MAX))
            .bind(i64::try_from(end).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let idx: i64 = row.try_get("idx")?;
                Ok((
                    u64::try_from(idx).map_err(|e| corrupt("audit log", e))?,
                    row.try_get("leaf")?,
                    ts_from_row(row.try_get("at")?)?,
                ))
            })
            .collect()
    }

    async fn openings(&self, start: u64, end: u64) -> Result<Vec<(u64, Opening)>> {
        let rows = sqlx::query("SELECT idx, salt, record FROM log_openings WHERE idx >= $1 AND idx < $2 ORDER BY idx")
            .bind(i64::try_from(start).unwrap_or(i64::MAX))
            .bind(i64::try_from(end).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let idx: i64 = row.try_get("idx")?;
                let salt: Vec<u8> = row.try_get("salt")?;
                let record: Vec<u8> = row.try_get("record")?;
                Ok((
                    u64::try_from(idx).map_err(|e| corrupt("log opening", e))?,
                    Opening {
                        salt: salt
                            .try_into()
                            .map_err(|_| StoreError::Corrupt("opening salt is not 32 bytes".to_owned()))?,
                        record: AuditRecord::from_leaf(&record)?,
                    },
                ))
            })
            .collect()
    }
}

impl Store {
    /// Leaves `start..end` as the operator reads them: each sealed leaf opened while its
    /// opening is kept, and still sealed once it was erased.
    pub async fn opened_leaves(&self, start: u64, end: u64) -> Result<Vec<(u64, LogLeaf)>> {
        let mut openings: std::collections::HashMap<u64, Opening> =
            self.openings(start, end).await?.into_iter().collect();
        self.leaves(start, end)
            .await?
            .into_iter()
            .map(|(index, bytes, _)| {
                let leaf = LogLeaf::from_leaf(&bytes)?;
                match (&leaf, openings.remove(&index)) {
                    (LogLeaf::Sealed(sealed), Some(opening)) if opening.opens(sealed) => {
                        Ok((index, LogLeaf::Open(opening.record)))
                    }
                    (_, None) => Ok((index, leaf)),
                    (_, Some(_)) => {
                        Err(StoreError::Corrupt(format!("the opening kept for log leaf {index} does not open it")))
                    }
                }
            })
            .collect()
    }
}

impl OutboxStore for Store {
    async fn peers_with_due_work(&self, now: Timestamp, limit: u32) -> Result<Vec<BareJid>> {
        let rows = sqlx::query(
            "SELECT DISTINCT peer FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY peer LIMIT $2",
        )
        .bind(now.unix())
        .bind(i64::from(limit.clamp(1, 100_000)))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| BareJid::parse(&row.try_get::<String, _>("peer")?).map_err(|e| corrupt("outbox peer", e)))
            .collect()
    }

    async fn due_for(&self, peer: &BareJid, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>> {
        // Fresh rows before retries: a backlog of failing rows never holds back new work.
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE peer = $1 AND state = 'pending' AND next_attempt_at <= $2 \
             ORDER BY attempts > 0, id LIMIT $3",
        )
        .bind(peer.to_string())
        .bind(now.unix())
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn outbox_for(&self, peer: &str, limit: u32) -> Result<Vec<OutboxItem>> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE peer = $1 ORDER BY id DESC LIMIT $2")
            .bind(peer)
            .bind(i64::from(limit.clamp(1, 10_000)))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(outbox_from_row).collect()
    }
}

impl TokenStore for Store {
    async fn create_token(&self, name: &str, scope: Scope, hash: &[u8; 32], now: Timestamp) -> Result<TokenRecord> {
        let row = sqlx::query(
            "INSERT INTO tokens (name, scope, hash, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, name, scope, created_at, revoked_at",
        )
        .bind(name)
        .bind(scope.as_str())
        .bind(hash.to_vec())
        .bind(now.unix())
        .fetch_one(self.pool())
        .await
        .map_err(|error| match StoreError::from(error) {
            StoreError::Conflict { .. } => StoreError::Conflict { what: format!("token {name:?}") },
            other => other,
        })?;
        token_from_row(&row)
    }

    async fn put_token(&self, name: &str, scope: Scope, hash: &[u8; 32], now: Timestamp) -> Result<TokenRecord> {
        let row = sqlx::query(
            "INSERT INTO tokens (name, scope, hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET scope = excluded.scope, hash = excluded.hash, \
             created_at = excluded.created_at, revoked_at = NULL \
             RETURNING id, name, scope, created_at, revoked_at",
        )
        .bind(name)
        .bind(scope.as_str())
        .bind(hash.to_vec())
        .bind(now.unix())
        .fetch_one(self.pool())
        .await?;
        token_from_row(&row)
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<(TokenRecord, Vec<u8>)>> {
        let row = sqlx::query(
            "SELECT id, name, scope, created_at, revoked_at, hash FROM tokens WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash.to_vec())
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| Ok((token_from_row(&row)?, row.try_get::<Vec<u8>, _>("hash")?))).transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query("SELECT id, name, scope, created_at, revoked_at FROM tokens ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, name: &str, now: Timestamp) -> Result<bool> {
        let result = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(now.unix())
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

pub(crate) fn peer_from_row(row: &AnyRow) -> Result<PeerRecord> {
    let keys: String = row.try_get("keys")?;
    Ok(PeerRecord {
        jid: BareJid::parse(&row.try_get::<String, _>("jid")?).map_err(|e| corrupt("peer", e))?,
        state: row.try_get::<String, _>("state")?.parse()?,
        trust: row.try_get::<String, _>("trust")?.parse()?,
        keys: serde_json::from_str(&keys).map_err(|e| corrupt("peer keys", e))?,
        created_at: ts_from_row(row.try_get("created_at")?)?,
        updated_at: ts_from_row(row.try_get("updated_at")?)?,
    })
}

impl PeerStore for Store {
    async fn peer(&self, jid: &BareJid) -> Result<Option<PeerRecord>> {
        let row =
            sqlx::query("SELECT * FROM peers WHERE jid = $1").bind(jid.to_string()).fetch_optional(self.pool()).await?;
        row.as_ref().map(peer_from_row).transpose()
    }

    async fn peers(&self) -> Result<Vec<PeerRecord>> {
        let rows = sqlx::query("SELECT * FROM peers ORDER BY jid").fetch_all(self.pool()).await?;
        rows.iter().map(peer_from_row).collect()
    }

    async fn put_peer_score(&self, peer: &str, subject: &str, num: i64, at: Timestamp) -> Result<()> {
        sqlx::query(
            "INSERT INTO peer_scores (peer, subject, num, received_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (peer, subject) DO UPDATE SET num = excluded.num, received_at = excluded.received_at",
        )
        .bind(peer)
        .bind(subject)
        .bind(num)
        .bind(at.unix())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn peer_scores(&self, subject: &str) -> Result<Vec<(String, i64, Timestamp)>> {
        let rows = sqlx::query("SELECT peer, num, received_at FROM peer_scores WHERE subject = $1 ORDER BY peer")
            .bind(subject)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("peer")?, row.try_get("num")?, ts_from_row(row.try_get("received_at")?)?)))
            .collect()
    }
}

/// Reasons (of an entry, or candidates) from their rows.
fn reasons_from_rows(rows: &[AnyRow]) -> Result<Vec<EntryReason>> {
    rows.iter()
        .map(|row| {
            Ok(EntryReason {
                incident_id: IncidentId::parse(&row.try_get::<String, _>("incident_id")?)
                    .map_err(|e| corrupt("reason", e))?,
                reporter: BareJid::parse(&row.try_get::<String, _>("reporter")?).map_err(|e| corrupt("reason", e))?,
                weight_milli: row.try_get("weight_milli")?,
                added_at: ts_from_row(row.try_get("added_at")?)?,
            })
        })
        .collect()
}
