//! Reputation inside the ledger's transactions (spec/reputation.md): recording facts as
//! decisions teach them, rescoring exactly the domains a transaction touched, and the
//! server-level consequences of a score (a domain entry for a server that scores low and
//! ignores our requests; withdrawing the weight of a reporter whose score fell to
//! `ignore_below`). Also the maintenance that time alone requires: requests that went
//! unanswered, stale scores, candidates past their window.
//!
//! Incremental by construction: a transaction rescores only the domains its facts are about
//! (and their parents), each from at most [`crate::facts::FACTS_PER_SCORE`] facts, so the
//! cost of a decision does not grow with the node's history.

use ostracon_protocol::ids::{Domain, Offender};
use ostracon_protocol::incident::Severity;
use ostracon_protocol::log::record::AuditRecord;
use ostracon_protocol::time::Timestamp;
use sqlx::Row as _;

use super::{Applied, Batch, Ledger, Listing, MemoryOp};
use crate::facts::{FactKind, like_escape, load_subject};
use crate::model::{EntrySource, ListAction};
use crate::reputation::{Explained, recommends_domain_entry, reporter_score, reversed, score, scored_ancestors};
use crate::{Result, StoreError};

/// Most domains one maintenance pass rescores (keeps its transaction short).
const REFRESH_BATCH: i64 = 500;

/// A score is refreshed by maintenance once it is this old: decay moves a score by at most
/// a few points a day with the default half-life.
const SCORE_MAX_AGE_SECS: i64 = 86_400;

impl Batch {
    /// Records a fact about `domain` (once per kind and reference) and marks its score, and
    /// its parents', for rescoring at commit.
    pub(super) async fn fact(
        &mut self,
        domain: &str,
        kind: FactKind,
        severity: Option<Severity>,
        weight_milli: i64,
        reference: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO reputation_facts (subject, kind, at, severity, weight_milli, reference) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject, kind, reference) DO NOTHING",
        )
        .bind(reversed(domain))
        .bind(kind.as_str())
        .bind(self.now.unix())
        .bind(severity.map(|s| s.as_str().to_owned()))
        .bind(weight_milli)
        .bind(reference)
        .execute(&mut *self.tx)
        .await?;
        self.touch(domain);
        Ok(())
    }

    /// Records an incident fact about `domain` from `reporter` (its independence key), unless
    /// that reporter already gave one about `domain` within `window_secs`: however many
    /// reports one reporter sends, it moves a domain's score by one fact per window.
    pub(super) async fn incident_fact(
        &mut self,
        domain: &str,
        reporter: &str,
        severity: Severity,
        weight_milli: i64,
        reference: &str,
        window_secs: i64,
    ) -> Result<bool> {
        let recent = sqlx::query(
            "SELECT 1 AS one FROM reputation_facts WHERE subject = $1 AND reporter = $2 AND kind = 'incident' \
             AND at > $3 LIMIT 1",
        )
        .bind(reversed(domain))
        .bind(reporter)
        .bind(self.now.unix() - window_secs)
        .fetch_optional(&mut *self.tx)
        .await?;
        if recent.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO reputation_facts (subject, kind, at, severity, weight_milli, reference, reporter) \
             VALUES ($1, 'incident', $2, $3, $4, $5, $6) ON CONFLICT (subject, kind, reference) DO NOTHING",
        )
        .bind(reversed(domain))
        .bind(self.now.unix())
        .bind(severity.as_str())
        .bind(weight_milli)
        .bind(reference)
        .bind(reporter)
        .execute(&mut *self.tx)
        .await?;
        self.touch(domain);
        Ok(true)
    }

    /// Whether a first answer to our request `request` was already counted.
    pub(super) async fn answered(&mut self, request: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM reputation_facts WHERE reference = $1 AND kind = 'request-answered' LIMIT 1",
        )
        .bind(request)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.is_some())
    }

    /// Marks `domain` and its parents for rescoring at commit.
    pub(super) fn touch(&mut self, domain: &str) {
        for scored in scored_ancestors(domain) {
            self.touched.insert(scored.to_owned());
        }
    }

    /// Drops every fact an incident gave (its retraction removes its contribution), marking
    /// the domains they were about for rescoring.
    pub(super) async fn forget_facts(&mut self, reference: &str) -> Result<()> {
        let rows = sqlx::query("SELECT DISTINCT subject FROM reputation_facts WHERE reference = $1")
            .bind(reference)
            .fetch_all(&mut *self.tx)
            .await?;
        for row in rows {
            let subject: String = row.try_get("subject")?;
            self.touch(&reversed(&subject));
        }
        sqlx::query("DELETE FROM reputation_facts WHERE reference = $1").bind(reference).execute(&mut *self.tx).await?;
        Ok(())
    }
}

impl Ledger {
    /// Rescores the domains the batch touched, stores the scores, and applies their
    /// consequences, inside the batch's transaction.
    pub(super) async fn rescore_touched(&self, batch: &mut Batch) -> Result<()> {
        let params = &self.config.reputation;
        while let Some(domain) = batch.touched.pop_first() {
            let subject = load_subject(&mut batch.tx, &domain, params).await?;
            let explained = score(&subject, params, batch.now);
            let as_reporter = reporter_score(&subject, params, batch.now).score;
            let previous: Option<i64> = sqlx::query("SELECT reporter_score FROM reputation_scores WHERE domain = $1")
                .bind(&domain)
                .fetch_optional(&mut *batch.tx)
                .await?
                .map(|row| row.try_get("reporter_score"))
                .transpose()?;
            let components =
                serde_json::to_string(&explained.components).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO reputation_scores (domain, score, raw, components, facts, computed_at, reporter_score) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (domain) DO UPDATE SET score = excluded.score, \
                 raw = excluded.raw, components = excluded.components, facts = excluded.facts, \
                 computed_at = excluded.computed_at, reporter_score = excluded.reporter_score",
            )
            .bind(&domain)
            .bind(explained.score)
            .bind(explained.raw)
            .bind(components)
            .bind(subject.facts.len() as i64)
            .bind(batch.now.unix())
            .bind(as_reporter)
            .execute(&mut *batch.tx)
            .await?;
            if batch.is_remote(&domain) {
                self.apply_consequences(batch, &domain, &explained, as_reporter, previous).await?;
            }
        }
        Ok(())
    }

    /// A domain entry while the score recommends one; the weight of the domain's reports
    /// withdrawn when its standing as a reporter falls to `ignore_below`.
    async fn apply_consequences(
        &self,
        batch: &mut Batch,
        domain: &str,
        explained: &Explained,
        as_reporter: i64,
        previous: Option<i64>,
    ) -> Result<()> {
        let params = &self.config.reputation;
        let offender = Offender::Domain(Domain::parse(domain)?);
        let recommended = recommends_domain_entry(explained, params) && !self.is_allowed(&offender);
        let entry = batch.entry(&offender).await?;
        match entry {
            Some(entry) if entry.active && !recommended && entry.source == EntrySource::Reputation => {
                batch.delist(&entry, "reputation").await?;
            }
            Some(entry) if entry.active => {}
            _ if recommended => {
                let listing = Listing {
                    offender: &offender,
                    action: ListAction::Block,
                    expires: None,
                    severity: Severity::High,
                    source: EntrySource::Reputation,
                    reason: None,
                };
                batch.list_many(&[listing], &self.config).await?;
            }
            _ => {}
        }
        let ignored_now = as_reporter <= params.ignore_below;
        if ignored_now && previous.is_none_or(|before| before > params.ignore_below) {
            self.withdraw_reports_of(batch, domain).await?;
        }
        Ok(())
    }

    /// The domain's reporter weight fell to 0: its contributions to entries and candidates
    /// weigh nothing from now on, and entries left without a quorum leave the list.
    async fn withdraw_reports_of(&self, batch: &mut Batch, domain: &str) -> Result<()> {
        // Incident ids start with their issuer's domain: `domain:` or `sub.domain:`.
        let exact = format!("{}:%", like_escape(domain));
        let below = format!("%.{}:%", like_escape(domain));
        let filter = "(incident_id LIKE $1 ESCAPE '\\' OR incident_id LIKE $2 ESCAPE '\\')";
        let entry_ids: Vec<i64> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT entry_id FROM entry_reasons WHERE {filter} ORDER BY entry_id"
        )))
        .bind(&exact)
        .bind(&below)
        .fetch_all(&mut *batch.tx)
        .await?
        .iter()
        .map(|row| row.try_get("entry_id"))
        .collect::<std::result::Result<_, _>>()?;
        batch.ops.extend(entry_ids.iter().map(|id| MemoryOp::Reasons(*id)));
        for table in ["entry_reasons", "candidate_reasons"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET weight_milli = 0 WHERE {filter}")))
                .bind(&exact)
                .bind(&below)
                .execute(&mut *batch.tx)
                .await?;
        }
        batch.requorum(&entry_ids, "quorum", &self.config).await
    }

    /// Maintenance for what time alone changes: requests past their deadline become
    /// `request-ignored` facts, candidates past their window are dropped, and the stalest
    /// scores are recomputed (decay; a domain entry ends when its score recovers). Returns
    /// how many scores were refreshed.
    pub async fn maintain_reputation(&self, now: Timestamp) -> Result<usize> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let params = &self.config.reputation;
        let deadline = now.unix() - params.request_deadline_secs;
        // Requests we sent more than the deadline ago (and less than a half-life before that,
        // older ones no longer matter) with no answer recorded.
        let rows = sqlx::query(
            "SELECT o.peer, o.reference FROM outbox o WHERE o.kind = 'request' AND o.created_at <= $1 \
             AND o.created_at > $2 AND NOT EXISTS (SELECT 1 FROM reputation_facts f WHERE f.reference = o.reference \
             AND f.kind IN ('request-answered', 'request-ignored')) ORDER BY o.id LIMIT $3",
        )
        .bind(deadline)
        .bind(deadline - params.half_life_secs)
        .bind(REFRESH_BATCH)
        .fetch_all(&mut *batch.tx)
        .await?;
        for row in rows {
            let peer: String = row.try_get("peer")?;
            let reference: String = row.try_get("reference")?;
            let domain = peer.rsplit_once('@').map_or(peer.as_str(), |(_, d)| d).to_owned();
            batch
                .fact(crate::reputation::server_domain(&domain), FactKind::RequestIgnored, None, 0, &reference)
                .await?;
        }
        sqlx::query("DELETE FROM candidate_reasons WHERE added_at < $1")
            .bind(now.unix() - params.candidate_window_secs)
            .execute(&mut *batch.tx)
            .await?;
        let stale =
            sqlx::query("SELECT domain FROM reputation_scores WHERE computed_at <= $1 ORDER BY computed_at LIMIT $2")
                .bind(now.unix() - SCORE_MAX_AGE_SECS)
                .bind(REFRESH_BATCH)
                .fetch_all(&mut *batch.tx)
                .await?;
        let refreshed = stale.len();
        for row in stale {
            batch.touched.insert(row.try_get("domain")?);
        }
        self.commit(batch).await?;
        Ok(refreshed)
    }

    /// Recomputes every stored score at `now`, in transactions of [`REFRESH_BATCH`] domains
    /// (after a parameter change; and the benchmark of a full recomputation). Returns how
    /// many domains were scored.
    pub async fn recompute_scores(&self, now: Timestamp) -> Result<usize> {
        let mut after = String::new();
        let mut total = 0;
        loop {
            let _writer = self.writer.lock().await;
            let mut batch = self.begin(now).await?;
            let rows = sqlx::query("SELECT domain FROM reputation_scores WHERE domain > $1 ORDER BY domain LIMIT $2")
                .bind(&after)
                .bind(REFRESH_BATCH)
                .fetch_all(&mut *batch.tx)
                .await?;
            if rows.is_empty() {
                return Ok(total);
            }
            for row in rows {
                let domain: String = row.try_get("domain")?;
                after.clone_from(&domain);
                batch.touched.insert(domain);
                total += 1;
            }
            self.commit(batch).await?;
        }
    }

    /// The operator fixes a domain's score (`Some`) or removes the fixed score (`None`); the
    /// domain is rescored and its consequences applied in the same transaction.
    pub async fn set_reputation_override(
        &self,
        domain: &Domain,
        fixed: Option<(i64, &str)>,
        now: Timestamp,
    ) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        match fixed {
            Some((score, note)) => {
                if !(-100..=100).contains(&score) {
                    return Err(StoreError::Rejected(format!("a score is in [-100, 100] (is {score})")));
                }
                let log_index = batch.leaf(&AuditRecord::ReputationOverridden {
                    at: now,
                    domain: domain.clone(),
                    score,
                    note: note.to_owned(),
                })?;
                sqlx::query(
                    "INSERT INTO reputation_overrides (domain, score, note, set_at, log_index) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (domain) DO UPDATE SET score = excluded.score, note = excluded.note, \
                     set_at = excluded.set_at, log_index = excluded.log_index",
                )
                .bind(domain.as_str())
                .bind(score)
                .bind(note)
                .bind(now.unix())
                .bind(log_index as i64)
                .execute(&mut *batch.tx)
                .await?;
            }
            None => {
                let removed = sqlx::query("DELETE FROM reputation_overrides WHERE domain = $1")
                    .bind(domain.as_str())
                    .execute(&mut *batch.tx)
                    .await?;
                if removed.rows_affected() == 0 {
                    return Err(StoreError::NotFound { what: format!("reputation override for {domain}") });
                }
                batch.leaf(&AuditRecord::ReputationOverrideCleared { at: now, domain: domain.clone() })?;
            }
        }
        batch.touched.insert(domain.to_string());
        self.commit(batch).await
    }
}
