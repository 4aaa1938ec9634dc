//! The listing quorum inside the ledger's transactions (spec/reputation.md, Listing quorum).
//!
//! A contribution that cannot list an offender alone (a peer's weight is below the threshold)
//! waits as a candidate until independent reporters' weights reach the threshold; then the
//! offender is listed with every contribution as a reason. A retraction, or a reporter whose
//! reputation fell below `ignore_below`, can leave a listed entry short of the quorum: it
//! leaves the list and its remaining reasons wait as candidates again.
//!
//! Independence is judged on the incident's issuer (the node that signed it), never on the
//! `reporter` field an issuer fills in.

use std::collections::HashMap;

use ostracon_protocol::ids::{BareJid, IncidentId, Offender};
use ostracon_protocol::log::record::AuditRecord;
use sqlx::Row as _;

use super::{Batch, LedgerConfig, Listing, MemoryOp};
use crate::facts::FactKind;
use crate::model::{EntryRecord, EntrySource};
use crate::policy::ListingPolicy;
use crate::queries::{ENTRY_COLUMNS, entry_from_row, offender_kind};
use crate::reputation::{Quorum, independence_key, quorum, server_domain};
use crate::{Result, StoreError};

/// One contribution already held about an offender.
#[derive(Clone, Debug)]
pub(super) struct Evidence {
    pub(super) incident_id: String,
    /// The domain of the node that issued the incident.
    pub(super) issuer: String,
    pub(super) weight_milli: i64,
    /// Waiting as a candidate (not yet a reason of a live entry).
    pub(super) candidate: bool,
}

/// The issuer domain of a stored incident id (`issuer:uuid`).
pub(super) fn issuer_of(incident_id: &str) -> Result<String> {
    IncidentId::parse(incident_id)
        .map(|id| id.issuer().to_string())
        .map_err(|e| StoreError::Corrupt(format!("incident id {incident_id:?}: {e}")))
}

/// Contributions from rows with `incident_id` and `weight_milli`.
fn evidence_of(rows: &[sqlx::any::AnyRow], candidate: bool) -> Result<Vec<Evidence>> {
    rows.iter()
        .map(|row| {
            let incident_id: String = row.try_get("incident_id")?;
            Ok(Evidence {
                issuer: issuer_of(&incident_id)?,
                incident_id,
                weight_milli: row.try_get("weight_milli")?,
                candidate,
            })
        })
        .collect()
}

/// The quorum of a set of contributions.
pub(super) fn quorum_of<'a>(evidence: impl IntoIterator<Item = &'a Evidence>, config: &LedgerConfig) -> Quorum {
    quorum(evidence.into_iter().map(|e| (e.issuer.as_str(), e.weight_milli)), &config.reputation)
}

/// How a short quorum reads in the audit log and in refusals.
fn awaiting(q: &Quorum) -> String {
    format!(
        "awaiting a quorum: {}.{:03} of {}.{:03} from {} independent reporter(s)",
        q.total_milli / 1_000,
        q.total_milli % 1_000,
        q.threshold_milli / 1_000,
        q.threshold_milli % 1_000,
        q.weights.len()
    )
}

impl Batch {
    /// Whether `issuer` is a remote node (facts about our own domain are not kept).
    pub(super) fn is_remote(&self, issuer: &str) -> bool {
        issuer != self.home && !issuer.ends_with(&format!(".{}", self.home))
    }

    /// The evidence held about each offender of `chunk`: the reasons of its live entry, and its
    /// candidates that are still within the window.
    pub(super) async fn evidence(
        &mut self,
        chunk: &[&Listing<'_>],
        existing: &HashMap<Offender, EntryRecord>,
        config: &LedgerConfig,
    ) -> Result<HashMap<Offender, Vec<Evidence>>> {
        let mut held: HashMap<Offender, Vec<Evidence>> = HashMap::new();
        let live: HashMap<i64, &Offender> =
            existing.values().filter(|e| e.active).map(|e| (e.id, &e.offender)).collect();
        if !live.is_empty() {
            let mut sql =
                "SELECT entry_id, incident_id, weight_milli FROM entry_reasons WHERE entry_id IN (".to_owned();
            for (i, _) in live.iter().enumerate() {
                sql.push_str(if i == 0 { "" } else { ", " });
                sql.push_str(&self.placeholder(i + 1));
            }
            sql.push(')');
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in live.keys() {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *self.tx).await? {
                let entry_id: i64 = row.try_get("entry_id")?;
                let incident_id: String = row.try_get("incident_id")?;
                let Some(offender) = live.get(&entry_id) else { continue };
                held.entry((*offender).clone()).or_default().push(Evidence {
                    issuer: issuer_of(&incident_id)?,
                    incident_id,
                    weight_milli: row.try_get("weight_milli")?,
                    candidate: false,
                });
            }
        }
        let window_start = self.now.unix() - config.reputation.candidate_window_secs;
        let mut sql =
            "SELECT kind, value, incident_id, weight_milli FROM candidate_reasons WHERE added_at >= ".to_owned();
        sql.push_str(&self.placeholder(1));
        sql.push_str(" AND (kind, value) IN (VALUES ");
        super::push_placeholders(&mut sql, self.dialect, chunk.len(), 2, 2);
        sql.push(')');
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window_start);
        for listing in chunk {
            query = query.bind(offender_kind(listing.offender)).bind(listing.offender.to_string());
        }
        for row in query.fetch_all(&mut *self.tx).await? {
            let offender = crate::model::offender_from_row(
                &row.try_get::<String, _>("kind")?,
                &row.try_get::<String, _>("value")?,
            )?;
            let incident_id: String = row.try_get("incident_id")?;
            held.entry(offender).or_default().push(Evidence {
                issuer: issuer_of(&incident_id)?,
                incident_id,
                weight_milli: row.try_get("weight_milli")?,
                candidate: true,
            });
        }
        Ok(held)
    }

    /// Splits `chunk` into the listings to make now and the contributions that must wait: a
    /// contribution from incidents that cannot list alone, to an offender not listed, lists only
    /// if it completes a quorum with the candidates held; otherwise it is stored as a candidate
    /// and a `listing-refused` leaf gives the numbers.
    pub(super) async fn apply_quorum<'l, 'a>(
        &mut self,
        chunk: &[&'l Listing<'a>],
        existing: &HashMap<Offender, EntryRecord>,
        held: &HashMap<Offender, Vec<Evidence>>,
        config: &LedgerConfig,
    ) -> Result<Vec<&'l Listing<'a>>> {
        let mut kept = Vec::with_capacity(chunk.len());
        for listing in chunk {
            let live = existing.get(listing.offender).is_some_and(|e| e.active);
            let Some((incident, reporter, weight)) = listing.reason else {
                kept.push(*listing);
                continue;
            };
            if live || listing.source != EntrySource::Incidents || weight >= config.reputation.listing_threshold_milli {
                kept.push(*listing);
                continue;
            }
            let new = Evidence {
                incident_id: incident.to_string(),
                issuer: incident.issuer().to_string(),
                weight_milli: weight,
                candidate: true,
            };
            let q = quorum_of(held.get(listing.offender).into_iter().flatten().chain([&new]), config);
            if q.listed {
                kept.push(*listing);
                continue;
            }
            sqlx::query(
                "INSERT INTO candidate_reasons (kind, value, incident_id, reporter, weight_milli, severity, action, added_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (kind, value, incident_id) DO NOTHING",
            )
            .bind(offender_kind(listing.offender))
            .bind(listing.offender.to_string())
            .bind(incident.to_string())
            .bind(reporter.to_string())
            .bind(weight)
            .bind(listing.severity.as_str())
            .bind(listing.action.as_str())
            .bind(self.now.unix())
            .execute(&mut *self.tx)
            .await?;
            let why = awaiting(&q);
            self.leaf(&AuditRecord::ListingRefused {
                at: self.now,
                offender: listing.offender.clone(),
                incident: incident.clone(),
                why: why.clone(),
            })?;
            self.applied.refused.push((listing.offender.clone(), why));
        }
        Ok(kept)
    }

    /// After offenders were listed: their candidates become reasons of the entry, and
    /// contributions from independent reporters corroborate each other (a fact for each remote
    /// issuer, once per report).
    pub(super) async fn after_listing(
        &mut self,
        listed: &[&Listing<'_>],
        ids: &HashMap<Offender, i64>,
        held: &HashMap<Offender, Vec<Evidence>>,
        config: &LedgerConfig,
    ) -> Result<()> {
        for listing in listed {
            let Some(evidence) = held.get(listing.offender) else { continue };
            if evidence.iter().any(|e| e.candidate) {
                let id = *ids.get(listing.offender).ok_or_else(|| StoreError::Corrupt("no entry id".to_owned()))?;
                sqlx::query(
                    "INSERT INTO entry_reasons (entry_id, incident_id, reporter, weight_milli, added_at) \
                     SELECT $1, incident_id, reporter, weight_milli, added_at FROM candidate_reasons \
                     WHERE kind = $2 AND value = $3 ON CONFLICT (entry_id, incident_id) DO NOTHING",
                )
                .bind(id)
                .bind(offender_kind(listing.offender))
                .bind(listing.offender.to_string())
                .execute(&mut *self.tx)
                .await?;
                sqlx::query("DELETE FROM candidate_reasons WHERE kind = $1 AND value = $2")
                    .bind(offender_kind(listing.offender))
                    .bind(listing.offender.to_string())
                    .execute(&mut *self.tx)
                    .await?;
            }
            // Only contributions that carry weight corroborate or are corroborated: Sybils
            // agreeing with each other earn nothing.
            let Some((incident, _, weight)) = listing.reason else { continue };
            if weight <= 0 {
                continue;
            }
            let issuer = incident.issuer().to_string();
            let voice = independence_key(&issuer, &config.reputation);
            let mut corroborated = false;
            for other in evidence
                .iter()
                .filter(|e| e.weight_milli > 0 && independence_key(&e.issuer, &config.reputation) != voice)
            {
                corroborated = true;
                if self.is_remote(&other.issuer) {
                    let domain = server_domain(&other.issuer).to_owned();
                    self.fact(&domain, FactKind::Corroborated, None, 0, &other.incident_id).await?;
                }
            }
            if corroborated && self.is_remote(&issuer) {
                self.fact(server_domain(&issuer), FactKind::Corroborated, None, 0, &incident.to_string()).await?;
            }
        }
        Ok(())
    }

    /// Re-checks the quorum of entries whose reasons changed (a retraction, a reporter whose
    /// weight fell to 0): an entry from incidents that no longer has one leaves the list with
    /// `why`, and its remaining reasons wait as candidates.
    pub(super) async fn requorum(&mut self, entry_ids: &[i64], why: &str, config: &LedgerConfig) -> Result<()> {
        for &entry_id in entry_ids {
            let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = $1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(entry_id).fetch_one(&mut *self.tx).await?;
            let entry = entry_from_row(&row)?;
            if !entry.active || entry.source != EntrySource::Incidents {
                continue;
            }
            let rows = sqlx::query("SELECT incident_id, weight_milli FROM entry_reasons WHERE entry_id = $1")
                .bind(entry_id)
                .fetch_all(&mut *self.tx)
                .await?;
            let evidence = evidence_of(&rows, false)?;
            if quorum_of(&evidence, config).listed {
                continue;
            }
            sqlx::query(
                "INSERT INTO candidate_reasons (kind, value, incident_id, reporter, weight_milli, severity, action, added_at) \
                 SELECT $1, $2, r.incident_id, r.reporter, r.weight_milli, i.severity, $3, r.added_at \
                 FROM entry_reasons r JOIN incidents i ON i.id = r.incident_id WHERE r.entry_id = $4 \
                 ON CONFLICT (kind, value, incident_id) DO NOTHING",
            )
            .bind(offender_kind(&entry.offender))
            .bind(entry.offender.to_string())
            .bind(entry.action.as_str())
            .bind(entry_id)
            .execute(&mut *self.tx)
            .await?;
            sqlx::query("DELETE FROM entry_reasons WHERE entry_id = $1").bind(entry_id).execute(&mut *self.tx).await?;
            self.delist(&entry, why).await?;
        }
        Ok(())
    }

    /// Keeps a refused contribution as a candidate of weight 0: it never counts toward a
    /// quorum, and it is what an allow entry contradicts.
    pub(super) async fn weightless_candidate(
        &mut self,
        offender: &Offender,
        incident: &ostracon_protocol::incident::Incident,
        action: crate::model::ListAction,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO candidate_reasons (kind, value, incident_id, reporter, weight_milli, severity, action, added_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7) ON CONFLICT (kind, value, incident_id) DO NOTHING",
        )
        .bind(offender_kind(offender))
        .bind(offender.to_string())
        .bind(incident.id.to_string())
        .bind(incident.reporter.to_string())
        .bind(incident.severity.as_str())
        .bind(action.as_str())
        .bind(self.now.unix())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// The operator changed how much `peer`'s reports weigh (its trust) from `old_milli` to
    /// `new_milli`: the contributions of the incidents it issued, live and waiting, are scaled
    /// to the new weight; entries that no longer have a quorum leave the list, and candidates
    /// that now complete one are listed.
    pub(super) async fn reweigh(
        &mut self,
        peer: &BareJid,
        (old_milli, new_milli): (i64, i64),
        config: &LedgerConfig,
    ) -> Result<()> {
        // A weight of 0 left no contributions to scale: its reports were ignored.
        if old_milli <= 0 || old_milli == new_milli {
            return Ok(());
        }
        // The incidents it issued: ids `ISSUER:uuid`, a range of the index (`;` follows `:`).
        let (from, to) = (format!("{}:", peer.domain()), format!("{};", peer.domain()));
        for table in ["entry_reasons", "candidate_reasons"] {
            let sql = format!(
                "UPDATE {table} SET weight_milli = weight_milli * $1 / $2 WHERE incident_id >= $3 AND incident_id < $4"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(new_milli)
                .bind(old_milli)
                .bind(&from)
                .bind(&to)
                .execute(&mut *self.tx)
                .await?;
        }
        // The entries it contributed to: their reasons' weights changed.
        let rows =
            sqlx::query("SELECT DISTINCT entry_id FROM entry_reasons WHERE incident_id >= $1 AND incident_id < $2")
                .bind(&from)
                .bind(&to)
                .fetch_all(&mut *self.tx)
                .await?;
        let ids = rows.iter().map(|row| row.try_get("entry_id")).collect::<std::result::Result<Vec<i64>, _>>()?;
        self.ops.extend(ids.iter().map(|id| MemoryOp::Reasons(*id)));
        if new_milli < old_milli {
            return self.requorum(&ids, "quorum", config).await;
        }
        let window_start = self.now.unix() - config.reputation.candidate_window_secs;
        let rows = sqlx::query(
            "SELECT kind, value, incident_id, weight_milli FROM candidate_reasons \
             WHERE incident_id >= $1 AND incident_id < $2 AND added_at >= $3",
        )
        .bind(&from)
        .bind(&to)
        .bind(window_start)
        .fetch_all(&mut *self.tx)
        .await?;
        for row in rows {
            let offender = crate::model::offender_from_row(
                &row.try_get::<String, _>("kind")?,
                &row.try_get::<String, _>("value")?,
            )?;
            // Only where the candidates held now make a quorum: the others wait as before,
            // with no new leaf.
            let held = sqlx::query(
                "SELECT incident_id, weight_milli FROM candidate_reasons WHERE kind = $1 AND value = $2 AND added_at >= $3",
            )
            .bind(offender_kind(&offender))
            .bind(offender.to_string())
            .bind(window_start)
            .fetch_all(&mut *self.tx)
            .await?;
            if !quorum_of(&evidence_of(&held, true)?, config).listed {
                continue;
            }
            let incident_id = IncidentId::parse(&row.try_get::<String, _>("incident_id")?)
                .map_err(|e| StoreError::Corrupt(format!("candidate incident id: {e}")))?;
            let Some(record) = self.stored_incident(&incident_id).await? else { continue };
            let incident = &record.incident;
            let listing = Listing {
                offender: &offender,
                action: ListingPolicy::action_for(incident.action),
                expires: incident.expires,
                severity: incident.severity,
                source: EntrySource::Incidents,
                reason: Some((&incident.id, &incident.reporter, row.try_get("weight_milli")?)),
            };
            self.list_many(&[listing], config).await?;
        }
        Ok(())
    }

    /// The operator allowed `offender`: every remote report that asked to list it (the live
    /// entry's reasons and the candidates) is contradicted, a fact against its issuer, and the
    /// candidates are dropped.
    pub(super) async fn contradict(&mut self, offender: &Offender, entry: Option<&EntryRecord>) -> Result<()> {
        let mut incident_ids: Vec<String> = Vec::new();
        if let Some(entry) = entry.filter(|e| e.active) {
            let rows = sqlx::query("SELECT incident_id FROM entry_reasons WHERE entry_id = $1")
                .bind(entry.id)
                .fetch_all(&mut *self.tx)
                .await?;
            for row in rows {
                incident_ids.push(row.try_get("incident_id")?);
            }
        }
        let rows = sqlx::query("SELECT incident_id FROM candidate_reasons WHERE kind = $1 AND value = $2")
            .bind(offender_kind(offender))
            .bind(offender.to_string())
            .fetch_all(&mut *self.tx)
            .await?;
        for row in rows {
            incident_ids.push(row.try_get("incident_id")?);
        }
        // The domain the allowed offender belongs to no longer carries those reports.
        let named = match offender {
            Offender::Jid(jid) => Some(jid.domain().to_string()),
            Offender::Domain(domain) => Some(domain.to_string()),
            Offender::Ip(_) | Offender::Cidr(_) => None,
        };
        for incident_id in incident_ids {
            if let Some(domain) = &named {
                sqlx::query("DELETE FROM reputation_facts WHERE subject = $1 AND kind = 'incident' AND reference = $2")
                    .bind(crate::reputation::reversed(domain))
                    .bind(&incident_id)
                    .execute(&mut *self.tx)
                    .await?;
                self.touch(domain);
            }
            let issuer = issuer_of(&incident_id)?;
            if self.is_remote(&issuer) {
                self.fact(server_domain(&issuer), FactKind::Contradicted, None, 0, &incident_id).await?;
            }
        }
        sqlx::query("DELETE FROM candidate_reasons WHERE kind = $1 AND value = $2")
            .bind(offender_kind(offender))
            .bind(offender.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// A positional placeholder for this dialect.
    fn placeholder(&self, n: usize) -> String {
        match self.dialect {
            crate::db::Dialect::Sqlite => "?".to_owned(),
            crate::db::Dialect::Postgres => format!("${n}"),
        }
    }
}
