//! The I/O shell: TLS listeners (rustls over tokio, TLS 1.2 and 1.3), hyper 1 for HTTP/1.1 and
//! HTTP/2, graceful shutdown.
//!
//! # Which handshakes ask for a client certificate
//!
//! Microsoft documents discovery and enrollment as "HTTPS (server authentication only)", and
//! WinHTTP fails a request whose server asks for a client certificate the application did not
//! provide (`ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED`, 12044). So two TLS configurations exist:
//! * **server-auth only** (no CertificateRequest): discovery, policy, enrollment, the login,
//!   terms and invitation pages, the admin API — everything on the main and admin listeners;
//! * **mutual TLS** (a CertificateRequest trusting only the enrollment CA; a missing
//!   certificate is answered by the handler, not by a TLS alert): the management endpoint and
//!   certificate renewal (ROBO), which authenticate with the device certificate.
//!
//! Devices reach the mutual-TLS configuration at `--mgmt-url`, which the provisioning document
//! writes as the w7 `ADDR` and the `WSTEP/Renew` `ServerURL`. Every listener reads the
//! ClientHello first (tokio-rustls' [`LazyConfigAcceptor`]) and picks the configuration:
//! the management listener (`--mgmt-listen`, by default the main port + 1) always uses mutual
//! TLS; the main listener uses it only when the SNI names the management host and that host
//! differs from the public host (`--mgmt-listen off` + `--mgmt-url https://<other name>`), so
//! one port can serve both by name. The verified peer certificate is captured per connection
//! in a [`Peer`] and handed to the router.

pub mod app_content;
pub mod body;
pub mod conn;
pub mod landing;
pub mod record;
pub mod routes;
pub mod stream;
pub mod throttle;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::LazyConfigAcceptor;

use crate::app::App;
use crate::config::ConnLimits;
use crate::metrics::{Listener, TlsFailure};
use conn::{ConnState, Conns, Tracked};

/// What we know about the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Remote address.
    pub addr: SocketAddr,
    /// The client certificate (leaf), already verified to chain to our CA, if one was presented.
    pub client_cert: Option<CertificateDer<'static>>,
    /// The device identity found in `client_cert` by the connection's first management
    /// request (see [`crate::mdm::identity::authenticate_on`]).
    pub identity: crate::mdm::identity::ConnectionIdentity,
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything but the mutual-TLS handshake (the admin API too unless an admin-only
    /// listener exists).
    Main {
        /// Whether `/api/v1` is served here.
        admin: bool,
    },
    /// Only the admin API.
    AdminOnly,
    /// The mutual-TLS endpoint: management and certificate renewal only.
    Management,
}

/// The two TLS configurations (see the [module docs](self)).
#[derive(Clone)]
pub struct TlsConfigs {
    /// Server authentication only: never sends a CertificateRequest.
    pub server_auth: Arc<ServerConfig>,
    /// Asks for a client certificate chaining to the enrollment CA (optional in the handshake;
    /// the management handler refuses a request without one).
    pub mutual: Arc<ServerConfig>,
}

/// Server start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS configuration was rejected.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Binding a socket failed.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Builds both rustls configurations: our TLS certificate, TLS 1.3 + 1.2, ALPN h2 +
/// http/1.1; the mutual one requests client certificates trusting only the enrollment CA.
///
/// Two choices differ from rustls' defaults, both for the cost of a new handshake (measured by
/// `cargo bench --bench tls`):
/// * **AES-128-GCM first, in the server's order.** Windows (and rustls) clients list
///   `TLS_AES_256_GCM_SHA384` first; honouring that puts a SHA-384 key schedule in every
///   handshake, and SHA-384 has no instruction-set help on x86 where SHA-256 does (SHA-NI).
///   AES-128-GCM with SHA-256 is the suite every TLS 1.3 client must implement and matches the
///   128-bit strength of the P-256 keys the handshake authenticates with.
/// * **One stateless session ticket, not two stateful ones.** rustls' default keeps resumable
///   sessions in a 256-entry in-memory cache, so a fleet's device coming back after more than
///   256 other handshakes (a fraction of a second under load) finds its session gone and pays a
///   full handshake. Here each listener's tickets carry the session, encrypted under a key of
///   that process's own (rustls' `Ticketer`: rotated every 6 hours, a ticket lives 12), so any
///   device returning to the same node within 12 hours can resume (with the default poll
///   schedule: every check-in of the first hours after enrollment, at sign-in, after a push; not
///   the daily one after that) and the server stores nothing. A device opens
///   one connection at a time, so one ticket per handshake is enough. A resumed connection
///   carries the certificate of the full handshake it resumes; the management endpoint checks
///   that certificate against the store on every request (revocation, renewal), as for any
///   connection.
pub fn tls_configs(app: &App) -> Result<TlsConfigs, ServeError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        _ => 1,
    });
    let provider = Arc::new(provider);
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(app.ca.cert_der().to_vec()))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let builder = || {
        ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    };
    let mut mutual = builder()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(app.tls.chain.clone(), app.tls.key.clone_key())?;
    mutual.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    mutual.ignore_client_order = true;
    mutual.send_tls13_tickets = 1;
    // Each configuration its own ticket key: a ticket of the server-auth listener never resumes
    // on the mutual-TLS one.
    mutual.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    let mut server_auth = builder()?
        .with_no_client_auth()
        .with_single_cert(app.tls.chain.clone(), app.tls.key.clone_key())?;
    server_auth.alpn_protocols = mutual.alpn_protocols.clone();
    server_auth.ignore_client_order = true;
    server_auth.send_tls13_tickets = 1;
    server_auth.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(TlsConfigs {
        server_auth: Arc::new(server_auth),
        mutual: Arc::new(mutual),
    })
}

/// The mutual-TLS configuration (the one the management endpoint uses).
pub fn tls_config(app: &App) -> Result<Arc<ServerConfig>, ServeError> {
    Ok(tls_configs(app)?.mutual)
}

/// The configuration and role for a connection on a `listener` listener whose ClientHello
/// named `sni`.
fn choose(
    listener: Role,
    sni: Option<&str>,
    mgmt_sni: Option<&str>,
    tls: &TlsConfigs,
) -> (Arc<ServerConfig>, Role) {
    match listener {
        Role::Management => (tls.mutual.clone(), Role::Management),
        Role::Main { .. }
            if sni.is_some() && sni.map(str::to_ascii_lowercase).as_deref() == mgmt_sni =>
        {
            (tls.mutual.clone(), Role::Management)
        }
        other => (tls.server_auth.clone(), other),
    }
}

/// A bound, not yet running server.
pub struct Server {
    app: Arc<App>,
    tls: TlsConfigs,
    listeners: Vec<(TcpListener, Role)>,
    /// `--metrics-listen`: plain HTTP, `GET /metrics` only.
    metrics: Option<TcpListener>,
}

impl Server {
    /// Binds the main listener, the mutual-TLS management listener (unless `--mgmt-listen
    /// off`) and the admin listener if configured.
    pub async fn bind(app: Arc<App>) -> Result<Server, ServeError> {
        let tls = tls_configs(&app)?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|e| ServeError::Bind {
                addr,
                reason: e.to_string(),
            })
        };
        let mut listeners = vec![(
            bind(app.cfg.listen).await?,
            Role::Main {
                admin: app.cfg.admin_listen.is_none(),
            },
        )];
        if let Some(a) = app.cfg.mgmt_listen {
            listeners.push((bind(a).await?, Role::Management));
        }
        if let Some(a) = app.cfg.admin_listen {
            listeners.push((bind(a).await?, Role::AdminOnly));
        }
        let metrics = match app.cfg.metrics_listen {
            Some(addr) => {
                Some(
                    crate::metrics::http::bind(addr)
                        .await
                        .map_err(|e| ServeError::Bind {
                            addr,
                            reason: e.to_string(),
                        })?,
                )
            }
            None => None,
        };
        Ok(Server {
            app,
            tls,
            listeners,
            metrics,
        })
    }

    /// Serves the main role on an already bound listener, plus the management listener bound
    /// now at `--mgmt-listen` (unless off; read its port with [`Server::mgmt_addr`]). No
    /// separate admin listener.
    pub fn from_listener(
        app: Arc<App>,
        listener: std::net::TcpListener,
    ) -> Result<Server, ServeError> {
        let mgmt = match app.cfg.mgmt_listen {
            Some(a) => Some(
                std::net::TcpListener::bind(a).map_err(|e| ServeError::Bind {
                    addr: a,
                    reason: e.to_string(),
                })?,
            ),
            None => None,
        };
        Server::from_listeners(app, listener, mgmt)
    }

    /// Serves the main role on `main` and mutual TLS on `mgmt`, both already bound (tests bind
    /// port 0 first to learn the ports for the public and management URLs). No separate admin
    /// listener.
    pub fn from_listeners(
        app: Arc<App>,
        main: std::net::TcpListener,
        mgmt: Option<std::net::TcpListener>,
    ) -> Result<Server, ServeError> {
        let tls = tls_configs(&app)?;
        let tokio_listener = |l: std::net::TcpListener| {
            let addr = l.local_addr().map_err(|e| ServeError::Bind {
                addr: app.cfg.listen,
                reason: e.to_string(),
            })?;
            let bind_err = |e: std::io::Error| ServeError::Bind {
                addr,
                reason: e.to_string(),
            };
            l.set_nonblocking(true).map_err(bind_err)?;
            TcpListener::from_std(l).map_err(bind_err)
        };
        let mut listeners = vec![(tokio_listener(main)?, Role::Main { admin: true })];
        if let Some(m) = mgmt {
            listeners.push((tokio_listener(m)?, Role::Management));
        }
        let metrics = match app.cfg.metrics_listen {
            Some(a) => Some(tokio_listener(std::net::TcpListener::bind(a).map_err(
                |e| ServeError::Bind {
                    addr: a,
                    reason: e.to_string(),
                },
            )?)?),
            None => None,
        };
        Ok(Server {
            app,
            tls,
            listeners,
            metrics,
        })
    }

    /// The bound address of the main listener (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listeners
            .first()
            .and_then(|(l, _)| l.local_addr().ok())
    }

    /// The bound address of the mutual-TLS management listener, if there is one.
    pub fn mgmt_addr(&self) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(_, r)| *r == Role::Management)
            .and_then(|(l, _)| l.local_addr().ok())
    }

    /// The bound address of the admin listener, if separate.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(_, r)| *r == Role::AdminOnly)
            .and_then(|(l, _)| l.local_addr().ok())
    }

    /// The bound address of the plain-HTTP metrics listener, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (up to 10 s).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let graceful = Arc::new(hyper_util::server::graceful::GracefulShutdown::new());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let limits = self.app.cfg.conn;
        let limit = Arc::new(Semaphore::new(limits.max_connections));
        let conns = Conns::new();
        let mut tasks = Vec::new();
        for (listener, role) in self.listeners {
            if let Ok(a) = listener.local_addr() {
                tracing::info!(addr = %a, ?role, "listening (TLS)");
            }
            tasks.push(tokio::spawn(accept_loop(
                listener,
                role,
                self.app.clone(),
                self.tls.clone(),
                graceful.clone(),
                stop_rx.clone(),
                limit.clone(),
                conns.clone(),
            )));
        }
        if let Some(l) = self.metrics {
            tasks.push(tokio::spawn(crate::metrics::http::serve_plain(
                l,
                self.app.clone(),
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(crate::jobs::run(
            self.app.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::store::sync_lazy_loop(
            self.app.store.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::mdm::refusals::run(
            self.app.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::trace::record::run(
            self.app.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::tenant::sync::run(
            self.app.clone(),
            stop_rx.clone(),
        )));
        if let Some(wh) = self.app.webhook.clone() {
            tasks.push(tokio::spawn(crate::webhook::deliver::run(
                self.app.clone(),
                wh,
                stop_rx.clone(),
            )));
        }
        if let Some(retention) = self.app.cfg.command_retention {
            tasks.push(tokio::spawn(crate::mdm::retention::run(
                self.app.clone(),
                retention,
                stop_rx.clone(),
            )));
        }
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        let graceful = Arc::try_unwrap(graceful)
            .unwrap_or_else(|_| hyper_util::server::graceful::GracefulShutdown::new());
        if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within 10 s");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: TcpListener,
    role: Role,
    app: Arc<App>,
    acceptor: TlsConfigs,
    graceful: Arc<hyper_util::server::graceful::GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    limit: Arc<Semaphore>,
    conns: Arc<Conns>,
) {
    let limits = app.cfg.conn;
    loop {
        let (tcp, addr) = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: make room by closing the idlest connection, then wait for its
                // slot (or any other that frees first).
                match conns.evict_idlest() {
                    Some(idle) => tracing::info!(
                        %addr,
                        idle_ms = idle.as_millis() as u64,
                        open = conns.len(),
                        "connection limit reached: closing the idlest connection"
                    ),
                    None => tracing::warn!(
                        %addr,
                        open = conns.len(),
                        "connection limit reached and every connection is busy: waiting"
                    ),
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let guard = conns.register();
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let state = guard.state.clone();
            let serve = serve_connection(
                Tracked::new(tcp, state.clone()),
                addr,
                role,
                app,
                acceptor,
                watcher,
                state.clone(),
                limits,
            );
            tokio::select! {
                _ = serve => {}
                _ = state.kill.notified() => {
                    tracing::debug!(%addr, "connection evicted to admit a new one");
                }
                _ = conn::idle_expired(&state, limits.idle_timeout) => {
                    tracing::debug!(%addr, idle_s = limits.idle_timeout.as_secs(), "idle connection closed");
                }
            }
            drop(guard);
        });
    }
}

/// One connection: TLS handshake (bounded), then HTTP/1.1 or HTTP/2 until the client is done.
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    tcp: Tracked<tokio::net::TcpStream>,
    addr: SocketAddr,
    role: Role,
    app: Arc<App>,
    acceptor: TlsConfigs,
    watcher: hyper_util::server::graceful::Watcher,
    state: Arc<ConnState>,
    limits: ConnLimits,
) {
    // SNI routing to the mutual-TLS configuration only when management has its own host name.
    let mgmt_sni = (app.cfg.mgmt_url.host != app.cfg.public_url.host)
        .then(|| app.cfg.mgmt_url.host.to_ascii_lowercase());
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let (config, role) = choose(
            role,
            start.client_hello().server_name(),
            mgmt_sni.as_deref(),
            &acceptor,
        );
        start.into_stream(config).await.map(|s| (s, role))
    };
    let listener = match role {
        Role::Main { .. } => Listener::Main,
        Role::Management => Listener::Management,
        Role::AdminOnly => Listener::Admin,
    };
    let (tls, role) = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = TlsFailure::of(&e);
            tracing::debug!(%addr, error = %e, reason = reason.as_str(), "TLS handshake failed");
            app.metrics.handshake(listener, Some(reason));
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            app.metrics.handshake(listener, Some(TlsFailure::Timeout));
            return;
        }
    };
    app.metrics.handshake(listener, None);
    let client_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    let peer = Arc::new(Peer {
        addr,
        client_cert,
        identity: Default::default(),
    });
    let svc = service_fn(move |req| {
        let (app, peer) = (app.clone(), peer.clone());
        let busy = state.request();
        async move {
            let resp = routes::handle(app, peer, role, req).await;
            drop(busy);
            Ok::<_, std::convert::Infallible>(stream::into_wire(resp))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%addr, error = %e, "connection ended with an error");
    }
}
