//! A webhook receiver for tests: HTTPS on 127.0.0.1 with a certificate from its own test CA
//! (give `ca_pem` to `--webhook-ca`), recording every request and checking its signature with
//! the receiver's secret, the way the README tells integrators to.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    pub device_id: String,
    pub body: serde_json::Value,
    pub raw: Vec<u8>,
    pub signature: String,
    /// The signature checked out with the receiver's secret.
    pub verified: bool,
    /// The status the receiver answered.
    pub answered: u16,
}

/// What the receiver does with a request.
pub const OK: u16 = 200;
/// Answer 503.
pub const FAIL: u16 = 503;
/// Never answer (the connection stays open until the client gives up).
pub const HANG: u16 = 0;

pub struct Receiver {
    pub port: u16,
    pub ca_pem: String,
    secret: Vec<u8>,
    /// Status to answer (or [`HANG`]).
    pub mode: Arc<AtomicU16>,
    /// Answer 503 to every n-th request (0: never), whatever `mode` says.
    pub fail_every: Arc<AtomicU64>,
    /// Wait this long before answering each request (milliseconds).
    pub delay_ms: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    pub log: Arc<Mutex<Vec<Delivery>>>,
    acceptor: tokio_rustls::TlsAcceptor,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// Starts a receiver checking signatures with `secret`.
    pub async fn start(secret: &[u8]) -> Receiver {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut r = Receiver {
            port,
            ca_pem: ca.pem(),
            secret: secret.to_vec(),
            mode: Arc::new(AtomicU16::new(OK)),
            fail_every: Arc::new(AtomicU64::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicU64::new(0)),
            log: Arc::new(Mutex::new(Vec::new())),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
            task: None,
        };
        r.serve(listener);
        r
    }

    /// `https://localhost:<port>/hook`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/hook", self.port)
    }

    /// Writes the CA certificate to `dir/receiver-ca.pem` and returns the path.
    pub fn write_ca(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let p = dir.join("receiver-ca.pem");
        std::fs::write(&p, &self.ca_pem).unwrap();
        p
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let delay = self.delay_ms.clone();
        let (acceptor, mode, fail_every, requests, log, secret) = (
            self.acceptor.clone(),
            self.mode.clone(),
            self.fail_every.clone(),
            self.requests.clone(),
            self.log.clone(),
            self.secret.clone(),
        );
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let delay = delay.clone();
                let (acceptor, mode, fail_every, requests, log, secret) = (
                    acceptor.clone(),
                    mode.clone(),
                    fail_every.clone(),
                    requests.clone(),
                    log.clone(),
                    secret.clone(),
                );
                conns.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let delay = delay.clone();
                            let (mode, fail_every, requests, log, secret) = (
                                mode.clone(),
                                fail_every.clone(),
                                requests.clone(),
                                log.clone(),
                                secret.clone(),
                            );
                            async move {
                                let h = |n: &str| {
                                    req.headers()
                                        .get(n)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or("")
                                        .to_string()
                                };
                                let signature = h("x-winmdm-signature");
                                let event_id = h("x-winmdm-event-id");
                                let event_type = h("x-winmdm-event-type");
                                let raw =
                                    req.into_body().collect().await.unwrap().to_bytes().to_vec();
                                let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                                let every = fail_every.load(Ordering::SeqCst);
                                let mut answered = mode.load(Ordering::SeqCst);
                                if every > 0 && n % every == 0 {
                                    answered = FAIL;
                                }
                                let wait = delay.load(Ordering::SeqCst);
                                if wait > 0 {
                                    tokio::time::sleep(Duration::from_millis(wait)).await;
                                }
                                if answered == HANG {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                }
                                let now =
                                    winmdm::clock::Clock::now_unix(&winmdm::clock::SystemClock);
                                let verified = verify(&secret, &signature, &raw, now);
                                let body: serde_json::Value =
                                    serde_json::from_slice(&raw).unwrap_or_default();
                                log.lock().unwrap().push(Delivery {
                                    event_id,
                                    event_type,
                                    device_id: body["device_id"].as_str().unwrap_or("").into(),
                                    body,
                                    raw,
                                    signature,
                                    verified,
                                    answered,
                                });
                                let mut r = hyper::Response::new(Full::new(bytes::Bytes::new()));
                                *r.status_mut() = hyper::StatusCode::from_u16(answered).unwrap();
                                Ok::<_, std::convert::Infallible>(r)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        }));
    }

    /// Closes the listener and every connection: the receiver is down (connections refused).
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("receiver port {} not free again: {e}", self.port),
            }
        };
        self.serve(listener);
    }

    /// Every request so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().unwrap().clone()
    }

    /// Requests answered 2xx: the receiver's accepted events, in arrival order, the first of each
    /// event id only.
    pub fn accepted(&self) -> Vec<Delivery> {
        let mut seen = std::collections::HashSet::new();
        self.deliveries()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered) && seen.insert(d.event_id.clone()))
            .collect()
    }

    /// Waits until `done(accepted)` holds; panics after `limit`.
    pub async fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Delivery]) -> bool) {
        let start = Instant::now();
        loop {
            let acc = self.accepted();
            if done(&acc) {
                return;
            }
            if start.elapsed() > limit {
                let seen: Vec<(String, String)> = acc
                    .iter()
                    .map(|d| (d.device_id.clone(), d.event_type.clone()))
                    .collect();
                panic!("receiver: {what} not within {limit:?}; accepted so far: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The README's verification: `t` within 5 minutes, HMAC-SHA256 over `"<t>." + body`.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64) -> bool {
    winmdm::webhook::verify(secret, header, body, now, 300)
}
