//! The one store: a sqlx `Any` pool over SQLite (the embedded default: one file in WAL mode)
//! or PostgreSQL, chosen by URL, with one migration folder per dialect.
//!
//! Queries are written once with `$n` placeholders and portable types (TEXT, BIGINT, BLOB/BYTEA),
//! which both dialects run; only the DDL differs. Time is stored as unix seconds.
//!
//! On PostgreSQL several replicas of one node may share the database: every write transaction
//! takes one advisory lock, so their writes serialise, commits notify [`COMMIT_CHANNEL`], and
//! the replica holding [`LinkHold`] is the one that runs the XMPP link.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor as _, Row as _};

use crate::Result;

/// The SQL dialect behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (embedded).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// What [`Store::commit_listener`] returns: PostgreSQL's listener on its own connection.
pub type CommitListener = sqlx::postgres::PgListener;

/// The channel every commit that appends to the log notifies, with the committing store's
/// [`Store::instance`] as payload.
pub const COMMIT_CHANNEL: &str = "ostracon_commits";

/// The transaction-level advisory lock every write takes on PostgreSQL ("ostr" and 1).
const WRITER_LOCK: i64 = 0x6f73_7472_0000_0001;

/// The session-level advisory lock of the replica that holds the XMPP link ("ostr" and 2).
const LINK_LOCK: i64 = 0x6f73_7472_0000_0002;

/// The database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// The URL, for the commit listener's own connection (it may hold a password: never
    /// printed).
    url: Arc<str>,
    /// This process's store among the replicas, random: the payload of its commit
    /// notifications, so it can tell its own from the others'.
    instance: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dialect", &self.dialect).finish_non_exhaustive()
    }
}

/// The XMPP link's lock, held on a connection of its own: PostgreSQL releases it when that
/// session ends, so a replica that dies (even by kill -9) hands the link on.
pub struct LinkHold {
    connection: sqlx::AnyConnection,
}

impl LinkHold {
    /// Whether the session holding the lock is still there; after an error the lock is gone
    /// (or soon will be) and the link must stop.
    pub async fn check(&mut self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&mut self.connection).await?;
        Ok(())
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies pending migrations.
    ///
    /// `sqlite://PATH` (or a bare path ending in `.db`) selects SQLite; `postgres://…` PostgreSQL.
    pub async fn open(url: &str) -> Result<Self> {
        install_default_drivers();
        let (url, dialect) = normalise_url(url);
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match dialect {
            Dialect::Sqlite => {
                if let Some(parent) = sqlite_path(&url).and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(&parent).map_err(|e| crate::StoreError::Unavailable(sqlx::Error::Io(e)))?;
                }
                options
                    .max_connections(8)
                    // A connection to a local file does not go stale: sqlx's ping before
                    // each acquire was one more round trip through the connection's
                    // worker thread for every read.
                    .test_before_acquire(false)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            // WAL lets readers (snapshots, lookups) run beside the one writer.
                            // synchronous=NORMAL survives a process crash (kill -9); only a power
                            // loss can drop the last commits. Lookups and lists are served from
                            // memory, so each connection keeps 512 KiB of pages instead of
                            // SQLite's 2 MiB, which the kernel's page cache holds anyway: at 1M
                            // entries that was 7 MB of resting memory once start-up's reads had
                            // used several connections, and writes ran no slower without it.
                            connection
                                .execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                                     PRAGMA cache_size = -512;",
                                )
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Dialect::Postgres => options.max_connections(16).connect(&url).await?,
        };
        let migrator = match dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.run(&pool).await?;
        let instance = format!("{:016x}", rand::random::<u64>());
        Ok(Self { pool, dialect, url: url.into(), instance: instance.into() })
    }

    /// The pool, for the query modules.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first fails with `SQLITE_BUSY`,
    /// without waiting, when another connection writes before it does (the outbox updates
    /// run beside the ledger's writer).
    ///
    /// On PostgreSQL it takes the node's writer lock (transaction-level, released at commit or
    /// rollback), so writes from several replicas serialise and leaf indexes never collide.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITER_LOCK).execute(&mut *tx).await?;
                Ok(tx)
            }
        }
    }

    /// Tells the replicas following this database that this store committed.
    ///
    /// A NOTIFY gives its transaction an id and a commit record; committed asynchronously it
    /// is not flushed, so it costs no disk wait (a notification need not survive a crash: a
    /// follower's poll finds what it announced). One round trip: the instance is hex we made.
    pub async fn announce_commit(&self) -> Result<()> {
        let sql = format!(
            "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_notify('{COMMIT_CHANNEL}', '{}'); COMMIT;",
            self.instance
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&self.pool).await?;
        Ok(())
    }

    /// The payload of this store's commit notifications.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// A read-only transaction that sees one state of the database throughout: on PostgreSQL
    /// `REPEATABLE READ` (each statement of a default transaction would see the commits made
    /// since the previous one), on SQLite a deferred transaction, which reads one WAL snapshot.
    pub async fn begin_snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin().await,
            Dialect::Postgres => self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await,
        }
    }

    /// [`Store::begin_write`] for a write that appends to the log, with, on PostgreSQL, the
    /// log's size in the database once the writer lock is held (a replica whose memory holds
    /// fewer leaves must catch up first). The size is read by a statement after the lock's,
    /// so it sees every commit made before the lock was granted; both travel in one round
    /// trip.
    pub async fn begin_log_write(&self) -> Result<(sqlx::Transaction<'static, sqlx::Any>, Option<u64>)> {
        if self.dialect != Dialect::Postgres {
            return Ok((self.begin_write().await?, None));
        }
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock({WRITER_LOCK})) AS writer; \
             SELECT COALESCE(MAX(idx) + 1, 0) AS size FROM audit_log"
        );
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
        let size = rows
            .iter()
            .find_map(|row| row.try_get::<i64, _>("size").ok())
            .ok_or_else(|| crate::StoreError::Corrupt("the log's size was not returned".to_owned()))?;
        Ok((tx, Some(u64::try_from(size).unwrap_or(0))))
    }

    /// On PostgreSQL, a listener for [`COMMIT_CHANNEL`] on a connection of its own (it
    /// reconnects by itself); on SQLite, `None`: one process serves the file.
    pub async fn commit_listener(&self) -> Result<Option<CommitListener>> {
        if self.dialect != Dialect::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen(COMMIT_CHANNEL).await?;
        Ok(Some(listener))
    }

    /// Takes the XMPP link's lock if no other replica holds it. On SQLite, always: one
    /// process serves the file.
    pub async fn try_hold_link(&self) -> Result<Option<LinkHold>> {
        let mut connection = self.pool.acquire().await?;
        if self.dialect == Dialect::Postgres {
            let held: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS held")
                .bind(LINK_LOCK)
                .fetch_one(&mut *connection)
                .await?
                .try_get("held")?;
            if !held {
                return Ok(None);
            }
        }
        // Out of the pool: the lock lives exactly as long as this session.
        Ok(Some(LinkHold { connection: connection.detach() }))
    }

    /// Which dialect this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A trivial query: is the database answering?
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool (waits for connections to finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The file a SQLite URL (or bare path) names; `None` for PostgreSQL and in-memory databases.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let (url, dialect) = normalise_url(url);
    if dialect != Dialect::Sqlite {
        return None;
    }
    sqlite_path(&url).map(std::path::PathBuf::from)
}

/// Accepts `sqlite:` URLs, bare file paths and PostgreSQL URLs; SQLite files are created on demand.
fn normalise_url(url: &str) -> (String, Dialect) {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return (url.to_owned(), Dialect::Postgres);
    }
    let mut url = if url.starts_with("sqlite:") { url.to_owned() } else { format!("sqlite://{url}") };
    if !url.contains("mode=") {
        url.push_str(if url.contains('?') { "&mode=rwc" } else { "?mode=rwc" });
    }
    (url, Dialect::Sqlite)
}

/// The file path of a SQLite URL.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && !path.starts_with(":memory:")).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_dialect() {
        assert_eq!(normalise_url("postgres://u@h/db"), ("postgres://u@h/db".to_owned(), Dialect::Postgres));
        assert_eq!(normalise_url("data/node.db"), ("sqlite://data/node.db?mode=rwc".to_owned(), Dialect::Sqlite));
        assert_eq!(normalise_url("sqlite:///abs/x.db?mode=ro").0, "sqlite:///abs/x.db?mode=ro");
        assert_eq!(sqlite_path("sqlite://data/node.db?mode=rwc"), Some("data/node.db"));
    }
}
