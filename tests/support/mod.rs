//! Shared test helpers: an in-process server on a loopback port, an HTTPS client, and the fake
//! Windows device (`device.rs`).
#![allow(dead_code)]

pub mod browser;
pub mod child;
pub mod cli;
pub mod device;
pub mod graph;
pub mod mdm_device;
pub mod pg;
pub mod receiver;
pub mod smtp;
pub mod webdriver;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use winmdm::app::App;
use winmdm::config::ServeOptions;
use winmdm::http::Server;

/// The admin token every test server uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Installs a tracing subscriber once (logs shown for failing tests only).
pub fn subscribe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("winmdm=debug")),
            )
            .with_test_writer()
            .try_init();
    });
}

/// Where the shared captures live, or `None` (with a printed SKIP line) if absent.
pub fn conformance_dir(what: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance");
    if p.is_dir() {
        Some(p)
    } else {
        println!("SKIP {what}: ../shared/conformance not found next to the project");
        None
    }
}

/// Main listener address → mutual-TLS management listener address, for every server a test
/// started (in process or as a child). The server asks for a client certificate only on its
/// management endpoint (`--mgmt-url`, the provisioning document's w7 `ADDR`), so a [`Client`]
/// that presents a device certificate goes there; one without goes to the main listener.
fn mgmt_routes() -> &'static Mutex<HashMap<SocketAddr, SocketAddr>> {
    static ROUTES: OnceLock<Mutex<HashMap<SocketAddr, SocketAddr>>> = OnceLock::new();
    ROUTES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Records that the server listening on `main` serves management (mutual TLS) on `mgmt`.
/// Both ports are bound by that server now, so any route naming either of them belongs to a
/// server that is gone (one dropped without [`TestServer::stop`], a test that panicked) and
/// is forgotten: a stale route whose management port is this server's main port would send
/// clients with a certificate to the wrong listener.
pub fn register_mgmt(main: SocketAddr, mgmt: SocketAddr) {
    let mut routes = mgmt_routes().lock().unwrap_or_else(|p| p.into_inner());
    routes.retain(|k, v| ![main, mgmt].contains(k) && ![main, mgmt].contains(v));
    routes.insert(main, mgmt);
}

/// Forgets the route `main` → `mgmt` (its server stopped: its ports may be handed out again),
/// unless a newer server took `main` since.
pub fn unregister_mgmt(main: SocketAddr, mgmt: SocketAddr) {
    let mut routes = mgmt_routes().lock().unwrap_or_else(|p| p.into_inner());
    if routes.get(&main) == Some(&mgmt) {
        routes.remove(&main);
    }
}

/// The management (mutual-TLS) address of the server whose main listener is `main`, if it has
/// a separate one.
pub fn mgmt_addr(main: SocketAddr) -> Option<SocketAddr> {
    mgmt_routes()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&main)
        .copied()
}

/// Where a client presenting a device certificate to `addr` goes: the management listener of
/// the server whose main listener is `addr`, else `addr` itself (a management listener already,
/// or a server without a separate one). Routes are kept current by [`register_mgmt`].
pub fn mgmt_target(addr: SocketAddr) -> SocketAddr {
    mgmt_addr(addr).unwrap_or(addr)
}

/// A server running in this process on 127.0.0.1:<random port>.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The mutual-TLS management listener (`None` with `--mgmt-listen off`).
    pub mgmt_addr: Option<SocketAddr>,
    pub app: Arc<App>,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The database of a server on PostgreSQL (see [`pg_suite_db`]).
    pg: Option<Arc<pg::TestDb>>,
}

/// With `WINMDM_TEST_STORE=postgres`, every `TestServer` without a `database_url` of its own
/// runs on a fresh PostgreSQL database, one per data directory (kept for servers started again
/// on that directory while it exists; the next run drops what a process left at its end): the
/// whole suite on that backend.
fn pg_suite_db(dir: &Path) -> Option<Arc<pg::TestDb>> {
    if std::env::var("WINMDM_TEST_STORE").as_deref() != Ok("postgres") {
        return None;
    }
    static BY_DIR: OnceLock<Mutex<HashMap<PathBuf, Arc<pg::TestDb>>>> = OnceLock::new();
    let mut m = BY_DIR
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(db) = m.get(dir) {
        return Some(db.clone());
    }
    // A database outlives its servers while its data directory exists (a test may start
    // another server on it), and is dropped with the last server once the directory is gone.
    m.retain(|d, _| d.exists());
    let db = Arc::new(pg::TestDb::create("suite on PostgreSQL")?);
    m.insert(dir.to_path_buf(), db.clone());
    Some(db)
}

impl Drop for TestServer {
    /// A server gives up its route when it goes, by [`TestServer::stop`] or dropped by a test
    /// that ends early or panics: its ports may be handed out again.
    fn drop(&mut self) {
        if let Some(m) = self.mgmt_addr {
            unregister_mgmt(self.addr, m);
        }
    }
}

impl TestServer {
    /// Starts a server on a fresh data dir.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh data dir, letting the test adjust the options.
    pub async fn start_with(adjust: impl FnOnce(&mut ServeOptions)) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, adjust).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `dir` (kept by the caller).
    pub async fn start_in(dir: &Path, adjust: impl FnOnce(&mut ServeOptions)) -> TestServer {
        Self::start_in_with_clock(dir, Arc::new(winmdm::clock::SystemClock), adjust).await
    }

    /// Starts a server on a fresh data dir whose application clock is `clock` (the TLS layer
    /// keeps checking certificate validity against the real time).
    pub async fn start_with_clock(
        clock: Arc<dyn winmdm::clock::Clock>,
        adjust: impl FnOnce(&mut ServeOptions),
    ) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in_with_clock(&dir, clock, adjust).await;
        s._tmp = Some(tmp);
        s
    }

    /// As [`TestServer::start_in`], with an injected application clock.
    pub async fn start_in_with_clock(
        dir: &Path,
        clock: Arc<dyn winmdm::clock::Clock>,
        adjust: impl FnOnce(&mut ServeOptions),
    ) -> TestServer {
        subscribe();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mgmt_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mgmt = mgmt_listener.local_addr().expect("addr");
        let mut opts = ServeOptions {
            listen: Some(addr),
            public_url: Some(format!("https://localhost:{}", addr.port())),
            mgmt_listen: Some(mgmt.to_string()),
            mgmt_url: Some(format!("https://localhost:{}", mgmt.port())),
            data_dir: Some(dir.to_path_buf()),
            ..ServeOptions::default()
        };
        let pg = pg_suite_db(dir);
        if let Some(db) = &pg {
            opts.database_url = Some(db.url.parse().expect("url"));
        }
        adjust(&mut opts);
        let pg =
            pg.filter(|db| opts.database_url.as_ref().map(|u| u.expose()) == Some(db.url.as_str()));
        let cfg = opts.resolve().expect("config");
        // A test that chose its own management listener (or none) gets what it asked for.
        let mgmt_listener = (cfg.mgmt_listen == Some(mgmt)).then_some(mgmt_listener);
        let app = tokio::task::spawn_blocking(move || {
            App::open_with_clock(cfg, Some(ADMIN_TOKEN.into()), clock)
        })
        .await
        .expect("join")
        .expect("app opens");
        let app = Arc::new(app);
        let server = match mgmt_listener {
            Some(m) => Server::from_listeners(app.clone(), listener, Some(m)),
            None => Server::from_listener(app.clone(), listener),
        }
        .expect("server");
        let mgmt_addr = server.mgmt_addr();
        if let Some(m) = mgmt_addr {
            register_mgmt(addr, m);
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            mgmt_addr,
            app,
            data_dir: dir.to_path_buf(),
            _tmp: None,
            stop: Some(tx),
            task: Some(task),
            pg,
        }
    }

    /// Stops the server and waits until it released the data dir.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        // Wait for the last Arc<App> (held by finishing connection tasks) to go, so sled's lock is free.
        let weak = Arc::downgrade(&self.app);
        let tmp = self._tmp.take();
        drop(self);
        for _ in 0..200 {
            if weak.strong_count() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(weak.strong_count(), 0, "server did not release the app");
        tmp
    }

    /// Stops the listeners and the node's background loops (the job sweep among them) and keeps
    /// the `App` open, for a test that drives the `App` alone and must not race those loops.
    pub async fn halt(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Some(m) = self.mgmt_addr {
            unregister_mgmt(self.addr, m);
        }
    }

    /// Stops and starts again on the same data dir.
    pub async fn restart(self) -> TestServer {
        let dir = self.data_dir.clone();
        let keep = self.pg.clone();
        let tmp = self.stop().await;
        let mut s = Self::start_in(&dir, |_| {}).await;
        drop(keep);
        s._tmp = tmp;
        s
    }

    /// A client that trusts this server's CA and presents no certificate.
    pub fn client(&self) -> Client {
        Client::new(self.addr, self.app.ca.cert_der().to_vec(), None)
    }

    /// An admin API call with the right token.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.client()
            .admin(method, path, body, Some(ADMIN_TOKEN))
            .await
    }

    /// Creates an enrollment user through the admin API.
    pub async fn create_user(&self, upn: &str, password: &str) {
        let (st, body) = self
            .admin(
                "POST",
                "/api/v1/users",
                Some(serde_json::json!({"upn": upn, "password": password})),
            )
            .await;
        assert_eq!(st, 201, "create user: {body}");
    }
}

/// An application clock a test moves by hand.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<std::sync::atomic::AtomicI64>);

impl TestClock {
    /// A clock showing `unix`.
    pub fn at(unix: i64) -> TestClock {
        TestClock(Arc::new(std::sync::atomic::AtomicI64::new(unix)))
    }

    /// Moves it to `unix`.
    pub fn set(&self, unix: i64) {
        self.0.store(unix, std::sync::atomic::Ordering::SeqCst);
    }
}

impl winmdm::clock::Clock for TestClock {
    fn now_unix(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An HTTP response as the tests see it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTPS/1.1 client over rustls: a new connection per request.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
}

impl Client {
    /// Trusts `root_der`; presents `(chain, key)` if given. A client with a certificate talks
    /// to the server's mutual-TLS management listener (see [`register_mgmt`]): the only one
    /// that asks for it.
    pub fn new(
        addr: SocketAddr,
        root_der: Vec<u8>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Client {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(root_der)).expect("root");
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let (cfg, addr) = match identity {
            Some((chain, key)) => (
                b.with_client_auth_cert(chain, key).expect("client cert"),
                mgmt_target(addr),
            ),
            None => (b.with_no_client_auth(), addr),
        };
        Client {
            addr,
            cfg: Arc::new(cfg),
        }
    }

    /// Sends one request; `path` may be a full URL (only its path+query is used).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> HttpResponse {
        match self.try_request(method, path, headers, body).await {
            Some(r) => r,
            None => panic!("{method} {path}: connection failed"),
        }
    }

    /// As [`Client::request`], but `None` when the connection, TLS or HTTP fails (a refused
    /// connection or certificate, a server killed mid-request).
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Option<HttpResponse> {
        let path = match path.strip_prefix("https://") {
            Some(rest) => rest
                .find('/')
                .map(|i| rest[i..].to_string())
                .unwrap_or_else(|| "/".into()),
            None => path.to_string(),
        };
        let tcp = TcpStream::connect(self.addr).await.ok()?;
        let connector = tokio_rustls::TlsConnector::from(self.cfg.clone());
        let tls = connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .ok()?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let resp = sender.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.ok()?.to_bytes().to_vec();
        Some(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// POSTs a SOAP 1.2 body.
    pub async fn soap(&self, path: &str, body: &[u8]) -> HttpResponse {
        self.request(
            "POST",
            path,
            &[("content-type", "application/soap+xml; charset=utf-8")],
            body.to_vec(),
        )
        .await
    }

    /// An admin API call; returns status and JSON (Null if no body).
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let body = body
            .map(|b| serde_json::to_vec(&b).expect("json"))
            .unwrap_or_default();
        let r = self.request(method, path, &headers, body).await;
        let v = if r.body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&r.body).unwrap_or_else(|_| serde_json::Value::String(r.text()))
        };
        (r.status, v)
    }
}

#[test]
fn a_stale_route_does_not_send_a_new_servers_main_port_elsewhere() {
    let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let b: SocketAddr = "127.0.0.1:2".parse().expect("addr");
    let c: SocketAddr = "127.0.0.1:3".parse().expect("addr");
    // A server on a (management b) went away without saying so; a new one got b as its main port.
    register_mgmt(a, b);
    register_mgmt(b, c);
    assert_eq!(
        mgmt_target(b),
        c,
        "b's clients with a certificate go to its management port"
    );
    assert_eq!(mgmt_target(c), c);
    assert_eq!(mgmt_target(a), a, "the stale route is gone");
    // The old server's late unregister does not remove the new one's route.
    unregister_mgmt(b, a);
    assert_eq!(mgmt_target(b), c);
    unregister_mgmt(b, c);
    assert_eq!(mgmt_target(b), b);
}
