//! The synchronous bridge to `tokio-postgres` and a bounded connection pool.
//!
//! The store traits are synchronous and are called from `spawn_blocking` threads and plain
//! threads. The sockets live on a small tokio runtime owned by the store (its connection
//! tasks do all the I/O); a caller drives the client side of a query (which only talks to its
//! connection task through channels) with [`block_on`], a park/unpark executor on the calling
//! thread. Unlike `Runtime::block_on` or the `postgres` crate, that cannot panic with "cannot
//! start a runtime from within a runtime" whatever thread it is called from.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls, Statement};

use crate::store::StoreError;

/// Runs `f` to completion on the calling thread (parking between polls).
pub use crate::wait::block_on;

/// One pooled connection and its prepared statements.
pub struct Conn {
    /// The client.
    pub client: Client,
    /// Statements prepared on it, by SQL text.
    pub stmts: HashMap<String, Statement>,
}

/// Prepares `sql` once per connection.
pub fn prepared(
    client: &impl tokio_postgres::GenericClient,
    stmts: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, tokio_postgres::Error> {
    if let Some(s) = stmts.get(sql) {
        return Ok(s.clone());
    }
    let s = block_on(client.prepare(sql))?;
    stmts.insert(sql.to_string(), s.clone());
    Ok(s)
}

struct State {
    idle: Vec<Conn>,
    total: usize,
}

/// A bounded pool: at most `max` connections; a caller waits up to `wait` for one.
pub struct Pool {
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    cfg: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    max: usize,
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Never blocks, so dropping the store inside an async context cannot panic.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        reason: e.to_string(),
    }
}

/// The database cannot be reached now ([`StoreError::Unavailable`]).
pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        reason: e.to_string(),
    }
}

/// The TLS connector for `sslmode=require`: rustls on aws-lc-rs, the system's roots plus the
/// PEM file named by `PGSSLROOTCERT` (libpq's variable), chain and host name verified.
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        // A system root rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(c);
    }
    if let Some(path) = std::env::var_os("PGSSLROOTCERT") {
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&path)
            .map_err(|e| backend(format!("PGSSLROOTCERT: {e}")))?
        {
            let c = c.map_err(|e| backend(format!("PGSSLROOTCERT: {e}")))?;
            roots
                .add(c)
                .map_err(|e| backend(format!("PGSSLROOTCERT: {e}")))?;
        }
    }
    if roots.is_empty() {
        return Err(backend(
            "sslmode=require but no trusted root certificate (system store empty, PGSSLROOTCERT unset)",
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(backend)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A checked-out connection; goes back to the pool when dropped (or is discarded if closed).
pub struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    /// Whether it was reused from the idle list (a stale one may fail its first statement).
    pub reused: bool,
    broken: bool,
}

impl Lease<'_> {
    /// Drops the connection instead of returning it to the pool, and every idle one with it
    /// (the database closed this one: a restart or failover closed the others too).
    pub fn discard(mut self) {
        self.broken = true;
        let stale = {
            let mut st = self.pool.lock();
            let stale = std::mem::take(&mut st.idle);
            st.total -= stale.len();
            stale
        };
        drop(stale);
    }

    /// The connection.
    pub fn conn(&mut self) -> &mut Conn {
        // Only `Drop` takes it out.
        self.conn
            .as_mut()
            .expect("lease holds its connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        match self.conn.take() {
            Some(c) if !self.broken && !c.client.is_closed() => st.idle.push(c),
            _ => st.total -= 1,
        }
        drop(st);
        self.pool.freed.notify_one();
    }
}

impl Pool {
    /// A pool for `cfg` (nothing connected yet). `sslmode=require` uses TLS; `disable` and
    /// `prefer` (the default) connect in plain text: an unverified TLS is not offered.
    pub fn new(
        cfg: tokio_postgres::Config,
        max: usize,
        wait: Duration,
    ) -> Result<Pool, StoreError> {
        let tls = match cfg.get_ssl_mode() {
            SslMode::Require => Some(tls_connector()?),
            _ => None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("winmdm-pg")
            .enable_all()
            .build()
            .map_err(backend)?;
        let mut cfg = cfg;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(10));
        }
        // A database that vanished from the network (no reset) fails the calls waiting on it
        // within about half a minute instead of holding their threads for hours.
        if cfg.get_tcp_user_timeout().is_none() {
            cfg.tcp_user_timeout(Duration::from_secs(30));
        }
        if cfg.get_keepalives_idle() > Duration::from_secs(30) {
            cfg.keepalives_idle(Duration::from_secs(30));
            cfg.keepalives_interval(Duration::from_secs(5));
            cfg.keepalives_retries(3);
        }
        Ok(Pool {
            handle: rt.handle().clone(),
            rt: Some(rt),
            cfg,
            tls,
            max: max.max(1),
            wait,
            state: Mutex::new(State {
                idle: Vec::new(),
                total: 0,
            }),
            freed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a new connection (its connection task runs on the pool's runtime).
    fn connect(&self) -> Result<Conn, StoreError> {
        let cfg = self.cfg.clone();
        let tls = self.tls.clone();
        let task = self.handle.spawn(async move {
            let client = match tls {
                Some(tls) => {
                    let (client, conn) = cfg.connect(tls).await?;
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::warn!(error = %e, "PostgreSQL connection ended");
                        }
                    });
                    client
                }
                None => {
                    let (client, conn) = cfg.connect(NoTls).await?;
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::warn!(error = %e, "PostgreSQL connection ended");
                        }
                    });
                    client
                }
            };
            Ok::<_, tokio_postgres::Error>(client)
        });
        let client = block_on(task)
            .map_err(backend)?
            .map_err(|e| unavailable(format!("connecting to PostgreSQL: {e}")))?;
        Ok(Conn {
            client,
            stmts: HashMap::new(),
        })
    }

    /// A connection: an idle one, a new one while fewer than `max` exist, or the first one
    /// freed within the wait.
    pub fn get(&self) -> Result<Lease<'_>, StoreError> {
        let deadline = std::time::Instant::now() + self.wait;
        let mut st = self.lock();
        loop {
            while let Some(c) = st.idle.pop() {
                if c.client.is_closed() {
                    st.total -= 1;
                    continue;
                }
                return Ok(Lease {
                    pool: self,
                    conn: Some(c),
                    reused: true,
                    broken: false,
                });
            }
            if st.total < self.max {
                st.total += 1;
                drop(st);
                return match self.connect() {
                    Ok(c) => Ok(Lease {
                        pool: self,
                        conn: Some(c),
                        reused: false,
                        broken: false,
                    }),
                    Err(e) => {
                        self.lock().total -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(unavailable(format!(
                    "no PostgreSQL connection free within {:?} ({} in use)",
                    self.wait, self.max
                )));
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.max
    }
}
