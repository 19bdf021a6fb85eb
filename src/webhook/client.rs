//! The webhook's HTTP client: hyper 1's HTTP/1.1 client connection over tokio-rustls (aws-lc-rs),
//! a few idle connections kept for reuse, every step under a timeout so a slow or silent
//! receiver costs the deliverer at most [`REQUEST_TIMEOUT`] per attempt (and never a device's
//! session: delivery runs on its own task).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::Target;

/// TCP connect and TLS handshake, together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request, from sending to the end of the answer's body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the answer's body read (and thrown away) at most.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Idle connections kept.
const MAX_IDLE: usize = 8;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Post {
    /// Header name → value (lower-case names).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// A client for one receiver.
pub struct Client {
    target: Target,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target.to_string())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `target`, trusting the system roots plus the PEM certificates in `ca`.
    pub fn new(target: &Target, ca: Option<&Path>) -> Result<Client, String> {
        let tls = if target.https {
            let config = crate::pki::outbound_tls(ca, "--webhook-ca").map_err(|e| {
                if e.starts_with("no root") {
                    format!("the webhook uses https but {e}")
                } else {
                    e
                }
            })?;
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| format!("--webhook-url host {:?}: {e}", target.host))?;
            Some((tokio_rustls::TlsConnector::from(config), name))
        } else {
            None
        };
        Ok(Client {
            target: target.clone(),
            tls,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let addr = (self.target.host.as_str(), self.target.port);
        let step = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => {
                    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                        .await
                        .map_err(|e| format!("http: {e}"))?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    Ok(send)
                }
                Some((tls, name)) => {
                    let stream = tls
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| format!("tls: {e}"))?;
                    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| format!("http: {e}"))?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    Ok(send)
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, step)
            .await
            .map_err(|_| format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()))?
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() && s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, s: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }

    /// POSTs `req`; the answer's status code, or why there is none.
    pub async fn post(&self, req: &Post) -> Result<u16, String> {
        let reused = self.take_idle();
        let was_reused = reused.is_some();
        match self.post_on(reused, req).await {
            // A kept connection the receiver closed meanwhile: once more on a fresh one.
            Err(e) if was_reused && e.starts_with("send:") => self.post_on(None, req).await,
            r => r,
        }
    }

    async fn post_on(
        &self,
        conn: Option<SendRequest<Full<Bytes>>>,
        req: &Post,
    ) -> Result<u16, String> {
        let mut send = match conn {
            Some(s) => s,
            None => self.connect().await?,
        };
        let mut b = hyper::Request::post(self.target.path.as_str())
            .header(hyper::header::HOST, self.target.authority())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("winmdm/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &req.headers {
            b = b.header(*k, v.as_str());
        }
        let request = b
            .body(Full::new(Bytes::from(req.body.clone())))
            .map_err(|e| format!("request: {e}"))?;
        let exchange = async {
            let resp = send
                .send_request(request)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = resp.status().as_u16();
            // Read the answer (bounded) so the connection can be used again.
            let whole = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .is_ok();
            Ok::<_, String>((status, whole))
        };
        let (status, whole) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))??;
        if whole {
            self.put_idle(send);
        }
        Ok(status)
    }
}
