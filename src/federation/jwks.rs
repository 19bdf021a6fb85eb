//! Entra signing keys: JWKS parsing (pure) and a cache over a file or an https URL.
//!
//! The cache is filled at the first use and refreshed when a token names a `kid` it does not
//! hold (Entra rotates keys), at most once per [`REFRESH_INTERVAL`] so a stream of tokens with
//! made-up `kid`s cannot make us hammer the key endpoint. A refresh that fails keeps the old keys.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::config::JwksSource;

/// Shortest time between two refreshes caused by unknown `kid`s.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// Time allowed for fetching a JWKS URL.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// An RSA public key from a JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaKey {
    /// Modulus, big-endian.
    pub n: Vec<u8>,
    /// Exponent, big-endian.
    pub e: Vec<u8>,
}

/// Why a JWKS could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Reading or fetching failed.
    #[error("cannot load JWKS from {source_name}: {reason}")]
    Load {
        /// File or URL.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// Not a JWKS document.
    #[error("invalid JWKS: {0}")]
    Invalid(String),
}

/// Parses a JWKS document: the RSA signing keys with a `kid` (keys with `use` other than `sig`,
/// or `alg` other than `RS256`, are skipped).
pub fn parse_jwks(doc: &[u8]) -> Result<HashMap<String, RsaKey>, JwksError> {
    let v: Value =
        serde_json::from_slice(doc).map_err(|e| JwksError::Invalid(format!("not JSON: {e}")))?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| JwksError::Invalid("no \"keys\" array".into()))?;
    let b64 = |k: &Value, name: &str| -> Option<Vec<u8>> {
        let s = k.get(name)?.as_str()?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()
            .filter(|b| !b.is_empty())
    };
    let mut out = HashMap::new();
    for k in keys {
        let field = |name: &str| k.get(name).and_then(Value::as_str);
        if field("kty") != Some("RSA") {
            continue;
        }
        if field("use").is_some_and(|u| u != "sig") || field("alg").is_some_and(|a| a != "RS256") {
            continue;
        }
        let (Some(kid), Some(n), Some(e)) = (field("kid"), b64(k, "n"), b64(k, "e")) else {
            continue;
        };
        out.insert(kid.to_string(), RsaKey { n, e });
    }
    Ok(out)
}

struct State {
    keys: HashMap<String, RsaKey>,
    last_load: Option<Instant>,
}

/// The key cache.
pub struct JwksCache {
    source: JwksSource,
    /// Trust anchors for a URL source; empty = the system bundle.
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// An empty cache over `source`. A file source is read now, so a bad path fails at start-up.
    pub fn new(source: JwksSource) -> Result<JwksCache, JwksError> {
        Self::with_roots(source, Vec::new())
    }

    /// As [`JwksCache::new`], trusting only `roots` (DER) for a URL source instead of the
    /// system bundle (private key servers, tests).
    pub fn with_roots(
        source: JwksSource,
        roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<JwksCache, JwksError> {
        let cache = JwksCache {
            source,
            roots,
            state: Mutex::new(State {
                keys: HashMap::new(),
                last_load: None,
            }),
        };
        if let JwksSource::File(_) = cache.source {
            let keys = cache.load()?;
            let mut st = cache.state.lock().unwrap_or_else(|p| p.into_inner());
            st.keys = keys;
            st.last_load = Some(Instant::now());
        }
        Ok(cache)
    }

    fn load(&self) -> Result<HashMap<String, RsaKey>, JwksError> {
        let bytes = match &self.source {
            JwksSource::File(p) => read_file(p)?,
            JwksSource::Url(u) => fetch_url(u, &self.roots)?,
        };
        parse_jwks(&bytes)
    }

    /// The key named `kid`, refreshing the cache (rate-limited) when it is unknown. `Ok(None)`:
    /// still unknown. Blocking (file or network I/O); call from a blocking context.
    pub fn key(&self, kid: &str) -> Result<Option<RsaKey>, JwksError> {
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(k) = st.keys.get(kid) {
                return Ok(Some(k.clone()));
            }
            if st.last_load.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
                tracing::debug!(
                    kid,
                    "unknown kid; JWKS refreshed recently, not refreshing again"
                );
                return Ok(None);
            }
            // Claim this refresh; the lock is not held during the I/O, so tokens with known
            // keys are verified meanwhile and concurrent unknown kids do not refresh again.
            st.last_load = Some(Instant::now());
        }
        let loaded = self.load();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match loaded {
            Ok(keys) => {
                tracing::info!(source = ?self.source, keys = keys.len(), "Entra JWKS (re)loaded");
                st.keys = keys;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Entra JWKS refresh failed; keeping the previous keys");
                if st.keys.is_empty() {
                    return Err(e);
                }
            }
        }
        Ok(st.keys.get(kid).cloned())
    }
}

fn read_file(p: &Path) -> Result<Vec<u8>, JwksError> {
    let err = |reason: String| JwksError::Load {
        source_name: p.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(p).map_err(|e| err(e.to_string()))?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(err(format!("larger than {MAX_JWKS_BYTES} bytes")));
    }
    Ok(bytes)
}

/// System trust anchors for the JWKS URL: `SSL_CERT_FILE`, else the usual distribution bundles.
fn system_roots() -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/ssl/cert.pem",
            ]
            .iter()
            .map(std::path::PathBuf::from),
        );
    for path in candidates {
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        for p in x509_parser::pem::Pem::iter_from_buffer(&pem).flatten() {
            if p.label == "CERTIFICATE" {
                let _ = store.add(rustls::pki_types::CertificateDer::from(p.contents));
            }
        }
        if !store.is_empty() {
            break;
        }
    }
    store
}

fn fetch_url(
    url: &str,
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<Vec<u8>, JwksError> {
    let err = |reason: String| JwksError::Load {
        source_name: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| err("not an https URL".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = crate::cli::http::parse_server(&format!("https://{authority}"))
        .map_err(|e| err(e.to_string()))?;
    let roots = if extra.is_empty() {
        system_roots()
    } else {
        let mut store = rustls::RootCertStore::empty();
        for r in extra {
            store
                .add(r.clone())
                .map_err(|e| err(format!("trust anchor: {e}")))?;
        }
        store
    };
    if roots.is_empty() {
        return Err(err("no system CA bundle found (set SSL_CERT_FILE)".into()));
    }
    let fut = fetch(host, port, path.to_string(), roots);
    let run = async { tokio::time::timeout(FETCH_TIMEOUT, fut).await };
    let res = match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(run),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err(e.to_string()))?
            .block_on(run),
    };
    res.map_err(|_| err(format!("no answer within {FETCH_TIMEOUT:?}")))?
        .map_err(err)
}

async fn fetch(
    host: String,
    port: u16,
    path: String,
    roots: rustls::RootCertStore,
) -> Result<Vec<u8>, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("GET")
        .uri(path)
        .header("host", host)
        .header("accept", "application/json")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != hyper::StatusCode::OK {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(body.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::testing::EntraKey;

    #[test]
    fn parse_skips_unusable_keys() {
        let k = EntraKey::generate("a");
        let mut doc = serde_json::json!({"keys": [
            k.jwk(),
            {"kty": "EC", "kid": "ec", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "bad", "n": "!!", "e": "AQAB"},
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(keys["a"].n, k.components().0);
        doc = serde_json::json!({"nokeys": []});
        assert!(parse_jwks(doc.to_string().as_bytes()).is_err());
        assert!(parse_jwks(b"not json").is_err());
    }

    #[test]
    fn unknown_kid_refresh_is_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let a = EntraKey::generate("a");
        let b = EntraKey::generate("b");
        std::fs::write(&path, EntraKey::jwks(&[&a])).unwrap();
        let cache = JwksCache::new(JwksSource::File(path.clone())).unwrap();
        assert!(cache.key("a").unwrap().is_some());
        // rotated on disk: "b" is not picked up before REFRESH_INTERVAL has passed
        std::fs::write(&path, EntraKey::jwks(&[&a, &b])).unwrap();
        assert_eq!(cache.key("b").unwrap(), None);
        cache.state.lock().unwrap().last_load = Instant::now().checked_sub(REFRESH_INTERVAL);
        assert!(
            cache.key("b").unwrap().is_some(),
            "refreshed on unknown kid"
        );
        assert!(JwksCache::new(JwksSource::File(dir.path().join("missing"))).is_err());
    }
}
