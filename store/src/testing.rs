//! Throwaway stores for tests on both backends, and the `battery!` macro that runs a test on
//! each: a SQLite file in a temporary directory, and a fresh database in the PostgreSQL
//! cluster `TEST_DATABASE_URL` names (`scripts/test` starts one).
//! With `OSTRACON_REQUIRE_INTEGRATION=1` a missing PostgreSQL is a failure, not a skip.
//! Compiled only with the `testing` feature, which only test builds enable.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::Store;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A store on one backend, removed when dropped.
pub struct Throwaway {
    /// What opens it again.
    pub url: String,
    /// The store.
    pub store: Store,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Database { admin: String, name: String },
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin, name } => {
                // Best effort; the throwaway cluster is deleted at the end of the run anyway.
                let (admin, name) = (admin.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                        return;
                    };
                    runtime.block_on(async {
                        if let Ok(pool) = sqlx::AnyPool::connect(&admin).await {
                            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

fn unique() -> String {
    format!("{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst))
}

impl Throwaway {
    /// A SQLite store in a new temporary directory.
    ///
    /// # Panics
    /// When the store cannot be created: the test cannot run.
    pub async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("ostracon-store-{}", unique()));
        let url = format!("sqlite://{}/node.db", dir.display());
        let store = Store::open(&url).await.expect("a SQLite store in a temporary directory");
        Self { url, store, cleanup: Cleanup::File(dir) }
    }

    /// A store in a new database of the `TEST_DATABASE_URL` cluster, or None without one.
    ///
    /// # Panics
    /// When the cluster is named but cannot be used, or is required and not named.
    pub async fn postgres() -> Option<Self> {
        let Some(admin) = std::env::var("TEST_DATABASE_URL").ok() else {
            assert!(
                std::env::var("OSTRACON_REQUIRE_INTEGRATION").as_deref() != Ok("1"),
                "TEST_DATABASE_URL is not set but OSTRACON_REQUIRE_INTEGRATION=1: PostgreSQL tests must run"
            );
            eprintln!("skipping PostgreSQL: TEST_DATABASE_URL is not set (scripts/test sets it)");
            return None;
        };
        sqlx::any::install_default_drivers();
        let name = format!("ostracon_test_{}", unique());
        let pool = sqlx::AnyPool::connect(&admin).await.expect("connect to TEST_DATABASE_URL");
        let create = format!("CREATE DATABASE {name}");
        sqlx::query(sqlx::AssertSqlSafe(create)).execute(&pool).await.expect("a fresh database");
        pool.close().await;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        let store = Store::open(&url).await.expect("a store in the fresh database");
        Some(Self { url, store, cleanup: Cleanup::Database { admin, name } })
    }
}

/// Runs each named `async fn NAME(backend: Throwaway)` of the calling module twice, as
/// `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! battery {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name($crate::testing::Throwaway::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() {
                if let Some(backend) = $crate::testing::Throwaway::postgres().await { super::$name(backend).await }
            })*
        }
    };
}
