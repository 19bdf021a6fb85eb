//! The HTTPS client of the tenant integration: hyper 1's HTTP/1.1 client connection over
//! tokio-rustls with the aws-lc-rs provider (as the webhook's client), the system roots plus the
//! PEM certificates of `--graph-ca`, a few idle connections kept per host, every step under a
//! timeout and every answer's body bounded.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::webhook::Target;

/// TCP connect and TLS handshake, together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One request, from sending to the end of the answer's body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer body read.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;
const MAX_IDLE: usize = 8;

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `Retry-After` in seconds, when given as a number.
    pub retry_after: Option<u64>,
    /// The body.
    pub body: Bytes,
}

/// The client.
pub struct Http {
    tls: tokio_rustls::TlsConnector,
    idle: Mutex<Vec<(String, SendRequest<Full<Bytes>>)>>,
}

impl Http {
    /// A client trusting the system roots plus the PEM certificates in `ca`.
    pub fn new(ca: Option<&Path>) -> Result<Http, String> {
        let config = crate::pki::outbound_tls(ca, "--graph-ca")?;
        Ok(Http {
            tls: tokio_rustls::TlsConnector::from(config),
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self, t: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
        let name =
            ServerName::try_from(t.host.clone()).map_err(|e| format!("host {:?}: {e}", t.host))?;
        let step = async {
            let tcp = TcpStream::connect((t.host.as_str(), t.port))
                .await
                .map_err(|e| format!("connect {}: {e}", t.authority()))?;
            let _ = tcp.set_nodelay(true);
            let stream = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls {}: {e}", t.authority()))?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("http: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(send)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, step)
            .await
            .map_err(|_| {
                format!(
                    "no connection to {} within {}s",
                    t.authority(),
                    CONNECT_TIMEOUT.as_secs()
                )
            })?
    }

    fn take_idle(&self, authority: &str) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(i) = idle.iter().position(|(a, _)| a == authority) {
            let (_, s) = idle.swap_remove(i);
            if !s.is_closed() && s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, authority: String, s: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((authority, s));
        }
    }

    /// Sends one request to the https `url`; `headers` are (lower-case name, value).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Answer, String> {
        let t = Target::parse(url)?;
        if !t.https {
            return Err(format!("{url}: only https is used"));
        }
        let reused = self.take_idle(&t.authority());
        let was_reused = reused.is_some();
        match self
            .send_on(reused, &t, method, headers, body.clone())
            .await
        {
            Err(e) if was_reused && e.starts_with("send:") => {
                self.send_on(None, &t, method, headers, body).await
            }
            r => r,
        }
    }

    async fn send_on(
        &self,
        conn: Option<SendRequest<Full<Bytes>>>,
        t: &Target,
        method: &str,
        headers: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Answer, String> {
        let mut send = match conn {
            Some(s) => s,
            None => self.connect(t).await?,
        };
        let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(t.path.as_str())
            .header(hyper::header::HOST, t.authority())
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("winmdm/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        let payload = match body {
            Some((ct, bytes)) => {
                b = b.header(hyper::header::CONTENT_TYPE, ct);
                Bytes::from(bytes)
            }
            None => Bytes::new(),
        };
        let request = b
            .body(Full::new(payload))
            .map_err(|e| format!("request: {e}"))?;
        let exchange = async {
            let resp = send
                .send_request(request)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("answer body: {e}"))?
                .to_bytes();
            Ok::<_, String>(Answer {
                status,
                retry_after,
                body,
            })
        };
        let a = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))??;
        self.put_idle(t.authority(), send);
        Ok(a)
    }
}
