//! A throw-away PostgreSQL database per test, on the server named by
//! `WINMDM_TEST_DATABASE_URL` (default `postgres://root@127.0.0.1:5432/postgres`).
//!
//! [`TestDb::create`] returns `None` after printing `SKIP: PostgreSQL not reachable at …` when
//! the server cannot be reached, unless `WINMDM_REQUIRE_POSTGRES=1`, then it panics. The
//! database is dropped when the [`TestDb`] is (also when the test fails).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use winmdm::store::pg::{redact_url, PgOptions, PgStore};

/// The server the PostgreSQL tests use.
pub fn server_url() -> String {
    std::env::var("WINMDM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_string())
}

/// `url` naming database `db` instead.
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_at(url.find("://").map_or(0, |i| i + 3));
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let query = tail.find('?').map_or("", |q| &tail[q..]);
    format!("{scheme}{authority}/{db}{query}")
}

/// Runs `sql` (statements, no result) on the database `url` names, on a thread of
/// its own with its own runtime (callable from any context).
pub fn exec(url: &str, sql: String) -> Result<(), String> {
    run_on(url, sql, false).map(|_| ())
}

/// The test databases on the server.
fn query_names(url: &str) -> Result<Vec<String>, String> {
    run_on(
        url,
        "SELECT datname FROM pg_database WHERE datname LIKE 'winmdm\\_test\\_%'".into(),
        true,
    )
}

/// Runs `sql`; with `rows`, one query whose first column (text) is returned.
fn run_on(url: &str, sql: String, rows: bool) -> Result<Vec<String>, String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let mut cfg: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
            cfg.connect_timeout(std::time::Duration::from_secs(5));
            let (client, conn) = cfg
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let task = tokio::spawn(conn);
            let r = if rows {
                client
                    .query(&sql, &[])
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|rs| {
                        rs.iter()
                            .map(|r| r.try_get::<_, String>(0).map_err(|e| e.to_string()))
                            .collect()
                    })
            } else {
                client
                    .batch_execute(&sql)
                    .await
                    .map(|_| Vec::new())
                    .map_err(|e| e.to_string())
            };
            drop(client);
            let _ = task.await;
            r
        })
    })
    .join()
    .map_err(|_| "admin thread panicked".to_string())?
}

/// A database created for one test and dropped after it.
pub struct TestDb {
    /// URL of the new database.
    pub url: String,
    server: String,
    name: String,
}

impl TestDb {
    /// Creates `winmdm_test_<random>` (ICU `en-US` collation where available); `None` (test skipped) if the server is unreachable.
    pub fn create(test: &str) -> Option<TestDb> {
        static N: AtomicU64 = AtomicU64::new(0);
        let server = server_url();
        static ORPHANS: std::sync::Once = std::sync::Once::new();
        ORPHANS.call_once(|| Self::drop_orphans(&server));
        let name = format!(
            "winmdm_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            winmdm::clock::random_hex(4)
        );
        // A linguistic default collation (where the server has ICU), so the tests see that the
        // store's keys sort as bytes whatever the database's default.
        let created = exec(
            &server,
            format!(
                "CREATE DATABASE {name} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' \
                 LOCALE 'C.UTF-8' TEMPLATE template0"
            ),
        )
        .or_else(|_| exec(&server, format!("CREATE DATABASE {name}")));
        match created {
            Ok(()) => Some(TestDb {
                url: with_database(&server, &name),
                server,
                name,
            }),
            Err(e) => {
                let msg = format!("PostgreSQL not reachable at {} ({e})", redact_url(&server));
                if std::env::var("WINMDM_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                    panic!("{test}: {msg}, and WINMDM_REQUIRE_POSTGRES=1");
                }
                println!("SKIP: {msg} — {test} not run");
                None
            }
        }
    }

    /// Drops the test databases of test processes that are gone (killed, or a suite run that
    /// kept its databases to the end).
    fn drop_orphans(server: &str) {
        let Ok(list) = query_names(server) else {
            return;
        };
        for name in list {
            let pid = name
                .strip_prefix("winmdm_test_")
                .and_then(|r| r.split('_').next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = exec(
                        server,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    );
                }
            }
        }
    }

    /// A store on this database.
    pub fn store(&self) -> PgStore {
        PgStore::connect(&self.url, &PgOptions::default()).expect("connect to the test database")
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Err(e) = exec(
            &self.server,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}
