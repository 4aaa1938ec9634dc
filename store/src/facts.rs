//! Reputation facts as stored (spec/reputation.md): the kinds of fact, reading what the node
//! knows about a domain into a [`Subject`], and the reads of the score table (one domain,
//! the sorted and paged list).
//!
//! Facts are written by the ledger in the same transaction as the decision that taught them
//! (`ledger::standing`); this module only reads. A domain's facts are one index range
//! (`subject` holds the labels reversed), so gathering them costs what that domain's own
//! history costs, never the whole table.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ostracon_protocol::ids::Domain;
use ostracon_protocol::incident::Severity;
use ostracon_protocol::time::Timestamp;
use serde::Serialize;
use sqlx::{AnyConnection, Row as _};

use crate::model::ts_from_row;
use crate::reputation::{Fact, ReputationParams, Subject, reversed};
use crate::{Result, Store, StoreError};

/// Most facts read for one score: the newest. Older ones have decayed by then (a domain
/// with a thousand recent incidents is at the bottom of the scale either way), and the cap
/// keeps a score's cost bounded whatever a domain's history.
pub const FACTS_PER_SCORE: i64 = 1_000;

/// What a fact records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FactKind {
    /// An accepted incident about the domain, its users or its IPs.
    Incident,
    /// The domain's node answered our request.
    RequestAnswered,
    /// The domain's node left our request unanswered past the deadline.
    RequestIgnored,
    /// A report the domain's node issued was corroborated by an independent reporter.
    Corroborated,
    /// A report the domain's node issued was retracted by it.
    Retracted,
    /// A report the domain's node issued was contradicted by our operator.
    Contradicted,
}

crate::model::text_enum!(FactKind {
    Incident => "incident",
    RequestAnswered => "request-answered",
    RequestIgnored => "request-ignored",
    Corroborated => "corroborated",
    Retracted => "retracted",
    Contradicted => "contradicted",
});

/// The `WHERE` clause that selects a domain's subtree by its reversed form: the domain itself
/// or anything below it (`example.a` or `example.a.*`). `.` sorts just before `/`, so the
/// range holds exactly the names that continue with a dot.
pub(crate) const SUBTREE: &str = "(subject = $1 OR (subject >= $2 AND subject < $3))";

/// The three bind values for [`SUBTREE`].
pub(crate) fn subtree_bounds(domain: &str) -> [String; 3] {
    let rev = reversed(domain);
    [rev.clone(), format!("{rev}."), format!("{rev}/")]
}

/// Reads everything the node holds about `domain` (and its subdomains) for
/// [`crate::reputation::score`]: the newest facts, its buddy relation, buddies' XEP-0275
/// opinions weighted by our trust in each, and the operator's override.
pub(crate) async fn load_subject(conn: &mut AnyConnection, domain: &str, params: &ReputationParams) -> Result<Subject> {
    load_evidence(conn, domain, params, Evidence::All).await
}

/// Which facts a score is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Everything we hold: our own view.
    All,
    /// What we would stand behind in public (our XEP-0275 answers): incidents behind a live
    /// listing (our own, or ones that reached the quorum), and our own observations; no
    /// single peer's unconfirmed accusation, and no buddy's opinion passed on as ours.
    QuorumBacked,
}

async fn load_evidence(
    conn: &mut AnyConnection,
    domain: &str,
    params: &ReputationParams,
    evidence: Evidence,
) -> Result<Subject> {
    let [rev, low, high] = subtree_bounds(domain);
    let backed = match evidence {
        Evidence::All => "",
        Evidence::QuorumBacked => {
            " AND (kind <> 'incident' OR EXISTS (SELECT 1 FROM entry_reasons r WHERE r.incident_id = reputation_facts.reference))"
        }
    };
    let sql = format!(
        "SELECT kind, at, severity, weight_milli, reference FROM reputation_facts WHERE {SUBTREE}{backed} \
         ORDER BY at DESC, id DESC LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(rev)
        .bind(low)
        .bind(high)
        .bind(FACTS_PER_SCORE)
        .fetch_all(&mut *conn)
        .await?;
    let mut facts = Vec::with_capacity(rows.len());
    // One incident about a domain and its subdomains is one fact for the domain.
    let mut seen = std::collections::BTreeSet::new();
    for row in rows {
        let kind: String = row.try_get("kind")?;
        if !seen.insert((kind.clone(), row.try_get::<String, _>("reference")?)) {
            continue;
        }
        let at = ts_from_row(row.try_get("at")?)?;
        facts.push(match kind.parse::<FactKind>()? {
            FactKind::Incident => {
                let severity: Option<String> = row.try_get("severity")?;
                let severity = Severity::parse(severity.as_deref().unwrap_or("medium"))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Fact::Incident { at, severity, weight_milli: row.try_get("weight_milli")? }
            }
            FactKind::RequestAnswered => Fact::RequestAnswered { at },
            FactKind::RequestIgnored => Fact::RequestIgnored { at },
            FactKind::Corroborated => Fact::Corroborated { at },
            FactKind::Retracted => Fact::Retracted { at },
            FactKind::Contradicted => Fact::Contradicted { at },
        });
    }
    // Our buddies' opinions, each weighted by our trust in the buddy that gave it.
    let rows = if evidence == Evidence::QuorumBacked {
        Vec::new()
    } else {
        sqlx::query(
            "SELECT s.num, p.trust FROM peer_scores s JOIN peers p ON p.jid = s.peer \
         WHERE s.subject = $1 AND p.state = 'buddy' ORDER BY s.peer",
        )
        .bind(domain)
        .fetch_all(&mut *conn)
        .await?
    };
    for row in rows {
        let trust: String = row.try_get("trust")?;
        let weight_milli = match trust.parse::<crate::model::Trust>()? {
            crate::model::Trust::Accept => params.accept_weight_milli,
            crate::model::Trust::AutoApply => params.auto_apply_weight_milli,
            crate::model::Trust::Observe => continue,
        };
        facts.push(Fact::Opinion { num: row.try_get("num")?, weight_milli });
    }
    let buddy_since: Option<i64> = sqlx::query(
        "SELECT MIN(created_at) AS since FROM peers WHERE state = 'buddy' AND (domain = $1 OR domain LIKE $2 ESCAPE '\\')",
    )
    .bind(domain)
    .bind(format!("%.{}", like_escape(domain)))
    .fetch_one(&mut *conn)
    .await?
    .try_get("since")?;
    let operator_override: Option<i64> = sqlx::query("SELECT score FROM reputation_overrides WHERE domain = $1")
        .bind(domain)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get("score"))
        .transpose()?;
    Ok(Subject { buddy_since: buddy_since.map(ts_from_row).transpose()?, operator_override, facts })
}

/// Escapes LIKE wildcards (`_` is allowed in domains) with `\`.
pub(crate) fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// A stored score: what the ledger computed when a fact last touched the domain, or when the
/// maintenance pass last refreshed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScoreRow {
    /// The domain.
    pub domain: String,
    /// Its score in [-100, 100].
    pub score: i64,
    /// The raw sum behind it.
    pub raw: i64,
    /// The raw sum's parts.
    pub components: BTreeMap<String, i64>,
    /// Its standing as a reporter (the score without incidents about its users).
    pub reporter_score: i64,
    /// How many facts it was computed from.
    pub facts: i64,
    /// When.
    pub computed_at: Timestamp,
}

/// Which end of the scale a listing starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreOrder {
    /// Lowest scores first (the domains to worry about).
    Worst,
    /// Highest first.
    Best,
}

/// An operator's fixed score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScoreOverride {
    /// The fixed score.
    pub score: i64,
    /// The operator's note.
    pub note: String,
    /// When it was set.
    pub set_at: Timestamp,
}

impl Store {
    /// What the node knows about `domain`, for [`crate::reputation::score`].
    pub async fn reputation_subject(&self, domain: &Domain, params: &ReputationParams) -> Result<Subject> {
        let mut conn = self.pool().acquire().await?;
        load_subject(&mut conn, domain.as_str(), params).await
    }

    /// What the node would stand behind about `domain` in public ([`Evidence::QuorumBacked`]).
    pub async fn backed_reputation_subject(&self, domain: &Domain, params: &ReputationParams) -> Result<Subject> {
        let mut conn = self.pool().acquire().await?;
        load_evidence(&mut conn, domain.as_str(), params, Evidence::QuorumBacked).await
    }

    /// Stored scores, sorted by score (ties by domain), `limit` from `offset`, and how many
    /// domains have one.
    pub async fn reputation_scores(&self, order: ScoreOrder, limit: i64, offset: i64) -> Result<(Vec<ScoreRow>, i64)> {
        let direction = match order {
            ScoreOrder::Worst => "ASC",
            ScoreOrder::Best => "DESC",
        };
        let sql = format!(
            "SELECT domain, score, raw, components, facts, computed_at, reporter_score FROM reputation_scores \
             ORDER BY score {direction}, domain LIMIT $1 OFFSET $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).bind(offset).fetch_all(self.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let components: String = row.try_get("components")?;
            out.push(ScoreRow {
                domain: row.try_get("domain")?,
                score: row.try_get("score")?,
                raw: row.try_get("raw")?,
                components: serde_json::from_str(&components).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                facts: row.try_get("facts")?,
                reporter_score: row.try_get("reporter_score")?,
                computed_at: ts_from_row(row.try_get("computed_at")?)?,
            });
        }
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM reputation_scores").fetch_one(self.pool()).await?.try_get("n")?;
        Ok((out, total))
    }

    /// The stored standing of `domain` as a reporter and when it was computed, if any fact
    /// about it is held (one indexed row: the node's reputation gate reads it per report).
    pub async fn stored_reporter_score(&self, domain: &Domain) -> Result<Option<(i64, Timestamp)>> {
        let row = sqlx::query("SELECT reporter_score, computed_at FROM reputation_scores WHERE domain = $1")
            .bind(domain.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| Ok((row.try_get("reporter_score")?, ts_from_row(row.try_get("computed_at")?)?))).transpose()
    }

    /// When this node queued the request `request` for `peer`, if it did (a response to it
    /// is an answer we asked for, within the request's deadline).
    pub async fn request_sent_at(
        &self,
        peer: &str,
        request: &ostracon_protocol::ids::IncidentId,
    ) -> Result<Option<Timestamp>> {
        let row = sqlx::query(
            "SELECT MIN(created_at) AS at FROM outbox WHERE kind = 'request' AND peer = $1 AND reference = $2",
        )
        .bind(peer)
        .bind(request.to_string())
        .fetch_one(self.pool())
        .await?;
        row.try_get::<Option<i64>, _>("at")?.map(ts_from_row).transpose()
    }

    /// Whether this node queued its report `incident` for `peer` (only those may be asked about).
    pub async fn report_shared_with(&self, peer: &str, incident: &ostracon_protocol::ids::IncidentId) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM outbox WHERE kind IN ('report', 'response') AND peer = $1 AND reference = $2 LIMIT 1",
        )
        .bind(peer)
        .bind(incident.to_string())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// The operator's fixed score for `domain`, if any.
    pub async fn reputation_override(&self, domain: &Domain) -> Result<Option<ScoreOverride>> {
        let row = sqlx::query("SELECT score, note, set_at FROM reputation_overrides WHERE domain = $1")
            .bind(domain.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| {
            Ok(ScoreOverride {
                score: row.try_get("score")?,
                note: row.try_get("note")?,
                set_at: ts_from_row(row.try_get("set_at")?)?,
            })
        })
        .transpose()
    }
}
