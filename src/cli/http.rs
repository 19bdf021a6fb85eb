//! A small HTTPS/1.1 client for the admin API: one connection per request, rustls trusting only
//! the configured CA (no system roots).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// How long connecting (TCP + TLS) and each request may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A request that did not get an HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server URL is not `https://host[:port]`.
    #[error("invalid server URL {0:?}: expected https://host[:port]")]
    BadUrl(String),
    /// TCP, TLS or HTTP failed.
    #[error("{0}")]
    Connect(String),
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// The admin API server: where it is and how to trust and authenticate to it.
#[derive(Clone)]
pub struct Client {
    host: String,
    port: u16,
    token: String,
    cfg: Arc<rustls::ClientConfig>,
}

/// Splits `https://host[:port][/]` into host and port (443 by default); IPv6 in brackets.
pub fn parse_server(url: &str) -> Result<(String, u16), TransportError> {
    let bad = || TransportError::BadUrl(url.to_string());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None => 443,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

impl Client {
    /// A client for `server` (`https://host[:port]`) trusting only `roots`.
    pub fn new(
        server: &str,
        token: String,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Client, TransportError> {
        let (host, port) = parse_server(server)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store
                .add(r)
                .map_err(|e| TransportError::Connect(format!("CA certificate: {e}")))?;
        }
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Connect(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Client {
            host,
            port,
            token,
            cfg: Arc::new(cfg),
        })
    }

    /// Sends one request with the bearer token; `body` is sent as JSON when given.
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, TransportError> {
        let body = match body {
            Some(v) => Some((
                "application/json",
                serde_json::to_vec(v)
                    .map_err(|e| TransportError::Connect(format!("encoding a request: {e}")))?,
            )),
            None => None,
        };
        self.request_bytes(method, path_and_query, body, TIMEOUT)
            .await
    }

    /// Sends one request whose body is `(content type, bytes)`, waiting at most `timeout`.
    pub async fn request_bytes(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<(&str, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        tokio::time::timeout(timeout, self.request_inner(method, path_and_query, body))
            .await
            .map_err(|_| TransportError::Connect(format!("no answer within {timeout:?}")))?
    }

    /// Sends one request with a JSON body and writes a 2xx answer's body to `sink` as it
    /// arrives (each frame within `idle`); any other answer comes back whole, as from
    /// [`Client::request`]. Returns the status and, for a 2xx, an empty body.
    pub async fn download(
        &self,
        method: &str,
        path_and_query: &str,
        body: &serde_json::Value,
        sink: &mut dyn std::io::Write,
        idle: Duration,
    ) -> Result<Response, TransportError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| TransportError::Connect(format!("encoding a request: {e}")))?;
        let resp = tokio::time::timeout(
            TIMEOUT,
            self.send(method, path_and_query, Some(("application/json", bytes))),
        )
        .await
        .map_err(|_| TransportError::Connect(format!("no answer within {TIMEOUT:?}")))??;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        if !(200..300).contains(&status) {
            let b = tokio::time::timeout(TIMEOUT, body.collect())
                .await
                .map_err(|_| TransportError::Connect("the error answer did not arrive".into()))?
                .map_err(|e| TransportError::Connect(format!("reading the answer: {e}")))?;
            return Ok(Response {
                status,
                body: b.to_bytes().to_vec(),
            });
        }
        loop {
            let frame = tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| {
                    TransportError::Connect(format!("the transfer stalled for {idle:?}"))
                })?;
            match frame {
                None => break,
                Some(Err(e)) => {
                    return Err(TransportError::Connect(format!(
                        "the transfer was cut: {e}"
                    )))
                }
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        sink.write_all(&d).map_err(|e| {
                            TransportError::Connect(format!("writing the download: {e}"))
                        })?;
                    }
                }
            }
        }
        Ok(Response {
            status,
            body: Vec::new(),
        })
    }

    async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, TransportError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            TransportError::Connect(format!("{what} {}:{}: {e}", self.host, self.port))
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| err("cannot connect to", &e))?;
        let name =
            ServerName::try_from(self.host.clone()).map_err(|e| err("invalid server name", &e))?;
        let tls = tokio_rustls::TlsConnector::from(self.cfg.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| err("TLS handshake with", &e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| err("HTTP with", &e))?;
        tokio::spawn(conn);
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", host_header)
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json");
        let bytes = match body {
            Some((ct, b)) => {
                req = req.header("content-type", ct);
                b
            }
            None => Vec::new(),
        };
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| err("building a request for", &e))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| err("request to", &e))
    }

    async fn request_inner(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Response, TransportError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            TransportError::Connect(format!("{what} {}:{}: {e}", self.host, self.port))
        };
        let resp = self.send(method, path_and_query, body).await?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err("reading the answer of", &e))?
            .to_bytes()
            .to_vec();
        Ok(Response { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            parse_server("https://localhost:8443").unwrap(),
            ("localhost".into(), 8443)
        );
        assert_eq!(
            parse_server("https://mdm.example.com/").unwrap(),
            ("mdm.example.com".into(), 443)
        );
        assert_eq!(parse_server("https://[::1]:9").unwrap(), ("::1".into(), 9));
        assert!(parse_server("http://localhost").is_err());
        assert!(parse_server("https://h:x").is_err());
        assert!(parse_server("https://h/api").is_err());
    }
}
