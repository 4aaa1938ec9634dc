//! What memory keeps to explain each listed entry without the database: the reasons of every
//! entry the quorum listed, beside its row in the index, shared between entries whose reasons
//! are the same, and the explanation of each shared set rendered once.
//!
//! Start-up reads every active entry's reasons with its row. A commit that changes any
//! entry's reasons re-reads them inside its transaction and installs them in the step that
//! moves the index, so what memory holds is what the database holds after that commit.
//! A replica cannot tell whose reasons another replica changed (a reporter's new weight moves
//! no entry's log index), so following forgets them all; a lookup then reads them from the
//! database and offers them back, and they are kept only if no commit moved memory since the
//! read began (the epoch).
//!
//! Sharing is what keeps this inside the memory budget: one report of a thousand addresses
//! gives a thousand entries one set, and each entry pays for a pointer.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use futures_util::TryStreamExt as _;
use ostracon_protocol::ids::{BareJid, IncidentId, Offender};
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _};

use crate::model::{EntryReason, EntrySource, Listed, ts_from_row};
use crate::queries::entry_from_row;
use crate::{Result, StoreError};

/// What memory keeps of one listed entry: the row snapshots publish, and its reasons when the
/// quorum listed it (`None` for other sources, and while a replica has not read them again).
#[derive(Clone, Debug)]
pub struct Indexed {
    /// The published row.
    pub listed: Listed,
    /// Why it is listed.
    pub reasons: Option<Arc<Reasons>>,
}

/// The reasons one or more entries are listed for, in the order the database gives them
/// (when added, then by incident), with the explanation rendered from them once.
#[derive(Debug)]
pub struct Reasons {
    reasons: Box<[EntryReason]>,
    rendered: OnceLock<Box<str>>,
}

impl Reasons {
    /// The set of `reasons`, not yet rendered.
    pub fn new(reasons: Vec<EntryReason>) -> Self {
        Self { reasons: reasons.into_boxed_slice(), rendered: OnceLock::new() }
    }

    /// The reasons.
    pub fn list(&self) -> &[EntryReason] {
        &self.reasons
    }

    /// Their explanation, rendered by `render` the first time it is asked for. The renderer
    /// depends only on the reasons and the node's reputation parameters, which do not change
    /// while it runs, so the first rendering stays true.
    pub fn rendered(&self, render: impl FnOnce(&[EntryReason]) -> String) -> &str {
        self.rendered.get_or_init(|| render(&self.reasons).into_boxed_str())
    }
}

/// Shares equal sets among the entries read in one pass. Keyed by the rows as stored, so a
/// set shared by a thousand entries is parsed once.
#[derive(Default)]
struct Sharing {
    sets: HashMap<Vec<StoredReason>, Arc<Reasons>>,
}

/// One reason as its row stores it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct StoredReason {
    incident_id: String,
    reporter: String,
    weight_milli: i64,
    added_at: i64,
}

impl StoredReason {
    fn parse(&self) -> Result<EntryReason> {
        let corrupt = |e: ostracon_protocol::Error| StoreError::Corrupt(format!("reason: {e}"));
        Ok(EntryReason {
            incident_id: IncidentId::parse(&self.incident_id).map_err(corrupt)?,
            reporter: BareJid::parse(&self.reporter).map_err(corrupt)?,
            weight_milli: self.weight_milli,
            added_at: ts_from_row(self.added_at)?,
        })
    }
}

impl Sharing {
    fn share(&mut self, mut stored: Vec<StoredReason>) -> Result<Arc<Reasons>> {
        // The database's order for one entry's reasons; sorted here, so the query needs no
        // sort over every joined row.
        stored.sort_by(|a, b| (a.added_at, &a.incident_id).cmp(&(b.added_at, &b.incident_id)));
        if let Some(set) = self.sets.get(&stored) {
            return Ok(Arc::clone(set));
        }
        let set = Arc::new(Reasons::new(stored.iter().map(StoredReason::parse).collect::<Result<_>>()?));
        self.sets.insert(stored, Arc::clone(&set));
        Ok(set)
    }
}

/// Every active entry, or the active entries among `ids`, each with its row and reasons,
/// read in one pass on `executor` and given to `visit` in entry id order.
pub(super) async fn read<'c>(
    executor: impl sqlx::Executor<'c, Database = Any>,
    ids: Option<&[i64]>,
    mut visit: impl FnMut(Offender, Indexed),
) -> Result<()> {
    let mut sql = "SELECT e.id, e.kind, e.value, e.action, e.source, e.first_seen, e.updated_at, e.expires_at, \
         e.listings, e.active, e.log_index, r.incident_id, r.reporter, r.weight_milli, r.added_at \
         FROM entries e LEFT JOIN entry_reasons r ON r.entry_id = e.id AND e.source = 'incidents' \
         WHERE e.active = 1"
        .to_owned();
    if let Some(ids) = ids {
        if ids.is_empty() {
            return Ok(());
        }
        // Entry ids are integers the store assigned, so they are written into the statement
        // (a bound list would need one placeholder each, past SQLite's limit for large commits).
        sql.push_str(" AND e.id IN (");
        for (n, id) in ids.iter().enumerate() {
            if n > 0 {
                sql.push(',');
            }
            sql.push_str(itoa::Buffer::new().format(*id));
        }
        sql.push(')');
    }
    sql.push_str(" ORDER BY e.id");
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(executor);
    let mut sharing = Sharing::default();
    let mut current: Option<(Offender, Listed, Vec<StoredReason>)> = None;
    while let Some(row) = rows.try_next().await? {
        let id: i64 = row.try_get("id")?;
        if current.as_ref().is_none_or(|(_, listed, _)| listed.id != id) {
            if let Some(done) = current.take() {
                finish(&mut sharing, done, &mut visit)?;
            }
            let entry = entry_from_row(&row)?;
            current = Some((entry.offender.clone(), Listed::from(&entry), Vec::new()));
        }
        if let (Some((_, _, stored)), Some(reason)) = (current.as_mut(), stored_reason(&row)?) {
            stored.push(reason);
        }
    }
    if let Some(done) = current.take() {
        finish(&mut sharing, done, &mut visit)?;
    }
    Ok(())
}

/// How many entries one reading names (their ids are written into the statement).
const REREAD_CHUNK: usize = 5_000;

/// The rows and reasons of the entries among `ids` still active, read in the commit's
/// transaction after its writes; `None` if `ids` is empty (the commit changed no reasons).
pub(super) async fn reread(
    tx: &mut sqlx::Transaction<'static, Any>,
    mut ids: Vec<i64>,
) -> Result<Option<Vec<(Offender, Indexed)>>> {
    if ids.is_empty() {
        return Ok(None);
    }
    ids.sort_unstable();
    ids.dedup();
    let mut read = Vec::new();
    for chunk in ids.chunks(REREAD_CHUNK) {
        self::read(&mut **tx, Some(chunk), |offender, row| read.push((offender, row))).await?;
    }
    Ok(Some(read))
}

fn stored_reason(row: &AnyRow) -> Result<Option<StoredReason>> {
    let Some(incident_id) = row.try_get::<Option<String>, _>("incident_id")? else { return Ok(None) };
    Ok(Some(StoredReason {
        incident_id,
        reporter: row.try_get("reporter")?,
        weight_milli: row.try_get("weight_milli")?,
        added_at: row.try_get("added_at")?,
    }))
}

fn finish(
    sharing: &mut Sharing,
    (offender, listed, stored): (Offender, Listed, Vec<StoredReason>),
    visit: &mut impl FnMut(Offender, Indexed),
) -> Result<()> {
    let reasons = match listed.source {
        EntrySource::Incidents => Some(sharing.share(stored)?),
        EntrySource::Operator | EntrySource::Reputation => None,
    };
    visit(offender, Indexed { listed, reasons });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(incident: &str, added_at: i64) -> StoredReason {
        StoredReason {
            incident_id: format!("a.example:{incident}"),
            reporter: "ops@a.example".to_owned(),
            weight_milli: 1000,
            added_at,
        }
    }

    #[test]
    fn equal_sets_are_shared_sorted_as_the_database_sorts_them_and_rendered_once() {
        let mut sharing = Sharing::default();
        let first = "0b8f3a4e-8a4b-4f70-9f0a-1f6a1f0c2e01";
        let second = "0b8f3a4e-8a4b-4f70-9f0a-1f6a1f0c2e02";
        let one = sharing.share(vec![stored(second, 5), stored(first, 5)]).unwrap();
        let other = sharing.share(vec![stored(first, 5), stored(second, 5)]).unwrap();
        assert!(Arc::ptr_eq(&one, &other), "one set for both entries");
        let ids: Vec<String> = one.list().iter().map(|r| r.incident_id.to_string()).collect();
        assert_eq!(ids, [format!("a.example:{first}"), format!("a.example:{second}")]);
        let later = sharing.share(vec![stored(first, 9), stored(second, 5)]).unwrap();
        assert!(!Arc::ptr_eq(&one, &later));
        assert_eq!(later.list()[0].incident_id.to_string(), format!("a.example:{second}"));
        let mut renders = 0;
        for _ in 0..3 {
            assert_eq!(
                one.rendered(|reasons| {
                    renders += 1;
                    format!("{} reasons", reasons.len())
                }),
                "2 reasons"
            );
        }
        assert_eq!(renders, 1);
        assert!(sharing.share(vec![StoredReason { reporter: "not a jid@@".to_owned(), ..stored(first, 1) }]).is_err());
    }
}
