//! What memory keeps to explain each listed entry without the database: the reasons of every
//! entry the quorum listed, beside its row in the index, shared between entries whose reasons
//! are the same, and the explanation of each shared set rendered once.
//!
//! Start-up reads every active entry's row without its reasons, and the node serves at once;
//! the reasons are then read a chunk of entries at a time ([`super::Ledger::load_reasons`]),
//! and until an entry's are in, a lookup of it reads them itself. A commit that changes the
//! reasons of a few entries re-reads them inside its transaction and installs them in the
//! step that moves the index, so what memory holds is what the database holds after that
//! commit; a bulk commit forgets its entries' reasons instead, for lookups to read back.
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
use crate::queries::{ENTRY_COLUMNS, entry_from_row};
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
pub(super) struct Sharing {
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
    /// The shared set for an entry of `source`: only the quorum's entries keep reasons.
    fn share_for(&mut self, source: EntrySource, stored: Vec<StoredReason>) -> Result<Option<Arc<Reasons>>> {
        match source {
            EntrySource::Incidents => self.share(stored).map(Some),
            EntrySource::Operator | EntrySource::Reputation => Ok(None),
        }
    }

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

/// Every active entry's row, read in one pass on `executor` (start-up), its reasons not yet.
pub(super) async fn read_rows<'c>(
    executor: impl sqlx::Executor<'c, Database = Any>,
    mut visit: impl FnMut(Offender, Indexed),
) -> Result<()> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE active = 1");
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(executor);
    while let Some(row) = rows.try_next().await? {
        let entry = entry_from_row(&row)?;
        visit(entry.offender.clone(), Indexed { listed: Listed::from(&entry), reasons: None });
    }
    Ok(())
}

/// Entries whose reasons one read after start-up takes, by id: a chunk is a few
/// milliseconds of work, and installing it holds memory's write lock that long.
pub(super) const LOAD_CHUNK: i64 = 20_000;

/// The reasons of the active entries with ids in `after + 1 ..= after + LOAD_CHUNK`, each
/// with the offender its row sits under, sets shared through `sharing` (kept across chunks).
pub(super) async fn read_reasons(
    pool: &sqlx::AnyPool,
    after: i64,
    sharing: &mut Sharing,
) -> Result<Vec<(Offender, i64, Option<Arc<Reasons>>)>> {
    // Inactive entries are skipped here, not in the statement: SQLite would otherwise walk
    // the index on `active` for every chunk instead of the id range.
    let sql = "SELECT e.id, e.kind, e.value, e.source, e.active, r.incident_id, r.reporter, r.weight_milli, \
               r.added_at FROM entries e LEFT JOIN entry_reasons r ON r.entry_id = e.id AND e.source = 'incidents' \
               WHERE e.id > $1 AND e.id <= $2 ORDER BY e.id";
    let mut rows = sqlx::query(sql).bind(after).bind(after + LOAD_CHUNK).fetch(pool);
    let mut read = Vec::new();
    let mut current: Option<(Offender, i64, EntrySource, Vec<StoredReason>)> = None;
    while let Some(row) = rows.try_next().await? {
        if row.try_get::<i64, _>("active")? == 0 {
            continue;
        }
        let id: i64 = row.try_get("id")?;
        if current.as_ref().is_none_or(|(_, current, _, _)| *current != id) {
            if let Some((offender, id, source, stored)) = current.take() {
                read.push((offender, id, sharing.share_for(source, stored)?));
            }
            let offender = crate::model::offender_from_row(
                &row.try_get::<String, _>("kind")?,
                &row.try_get::<String, _>("value")?,
            )?;
            current = Some((offender, id, row.try_get::<String, _>("source")?.parse()?, Vec::new()));
        }
        if let (Some((_, _, _, stored)), Some(reason)) = (current.as_mut(), stored_reason(&row)?) {
            stored.push(reason);
        }
    }
    if let Some((offender, id, source, stored)) = current.take() {
        read.push((offender, id, sharing.share_for(source, stored)?));
    }
    Ok(read)
}

/// How many entries one statement names (their ids are written into it).
const REREAD_CHUNK: usize = 5_000;

/// Most entries whose reasons a commit reads back. A bulk report of a thousand offenders
/// would spend a tenth of its commit reading back rows lookups may never ask for, so past
/// this its entries' reasons are forgotten instead, and the first lookup of each reads them.
const EAGER_REREAD: usize = 64;

/// An entry a commit changed, as the commit knows it: its offender and source.
pub(super) type Known = HashMap<i64, (Offender, EntrySource)>;

/// The reasons of the entries among `ids`, read in the commit's transaction after its
/// writes, each with the offender its row sits under (reasons `None`, forgotten, past
/// [`EAGER_REREAD`] entries): `None` if `ids` is empty (the commit changed no reasons).
/// `known` holds the entries the commit listed; the others' offenders are read, and those
/// no longer active are left out.
pub(super) async fn reread(
    tx: &mut sqlx::Transaction<'static, Any>,
    mut ids: Vec<i64>,
    mut known: Known,
) -> Result<Option<Vec<(Offender, i64, Option<Arc<Reasons>>)>>> {
    if ids.is_empty() {
        return Ok(None);
    }
    ids.sort_unstable();
    ids.dedup();
    let unknown: Vec<i64> = ids.iter().copied().filter(|id| !known.contains_key(id)).collect();
    for chunk in unknown.chunks(REREAD_CHUNK) {
        let sql =
            format!("SELECT id, kind, value, source FROM entries WHERE active = 1 AND id IN ({})", id_list(chunk));
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut **tx).await? {
            let offender = crate::model::offender_from_row(
                &row.try_get::<String, _>("kind")?,
                &row.try_get::<String, _>("value")?,
            )?;
            known.insert(row.try_get("id")?, (offender, row.try_get::<String, _>("source")?.parse()?));
        }
    }
    let wanted: Vec<i64> = ids
        .into_iter()
        .filter(|id| known.get(id).is_some_and(|(_, source)| *source == EntrySource::Incidents))
        .collect();
    if wanted.len() > EAGER_REREAD {
        return Ok(Some(known.into_iter().map(|(id, (offender, _))| (offender, id, None)).collect()));
    }
    let mut stored: HashMap<i64, Vec<StoredReason>> = HashMap::new();
    for chunk in wanted.chunks(REREAD_CHUNK) {
        let sql = format!(
            "SELECT entry_id, incident_id, reporter, weight_milli, added_at FROM entry_reasons WHERE entry_id IN ({})",
            id_list(chunk)
        );
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut **tx).await? {
            if let Some(reason) = stored_reason(&row)? {
                stored.entry(row.try_get("entry_id")?).or_default().push(reason);
            }
        }
    }
    let mut sharing = Sharing::default();
    let mut read = Vec::with_capacity(known.len());
    for (id, (offender, source)) in known {
        let reasons = sharing.share_for(source, stored.remove(&id).unwrap_or_default())?;
        read.push((offender, id, reasons));
    }
    Ok(Some(read))
}

/// Entry ids for an `IN (...)` list: integers the store assigned, so they are written into
/// the statement (a bound list would need one placeholder each, past SQLite's limit).
fn id_list(ids: &[i64]) -> String {
    let mut list = String::with_capacity(ids.len() * 8);
    for (n, id) in ids.iter().enumerate() {
        if n > 0 {
            list.push(',');
        }
        list.push_str(itoa::Buffer::new().format(*id));
    }
    list
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
