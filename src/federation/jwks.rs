//! Entra signing keys: JWKS parsing (pure) and a cache over a file or an https URL.
//!
//! The cache is filled at the first use (a file source: at start) and then re-read on a
//! schedule: a loaded key set is fresh for the `Cache-Control: max-age` its server sent (less
//! any `Age`), at least [`MIN_FRESH`] and at most [`MAX_FRESH`] (one day; a file, or an answer
//! without `max-age`, gets [`MAX_FRESH`]). The first use after that reloads it before any key
//! is handed out, so a key removed from the JWKS stops being trusted at most `MAX_FRESH` after
//! the removal. A token naming a `kid` the cache does not hold (Entra rotates keys) also reloads,
//! at most once per [`REFRESH_INTERVAL`], so a stream of tokens with made-up `kid`s cannot make
//! us hammer the key endpoint; the first load and scheduled reloads do not count against that
//! limit. A reload that fails keeps the old keys (logged) and is retried at most once per
//! [`REFRESH_INTERVAL`]. Time comes from the injected [`Clock`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::clock::{Clock, SystemClock};
use crate::config::JwksSource;

/// Shortest time between two refreshes caused by unknown `kid`s (and between retries of a
/// failed load).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Longest time a loaded key set is used without reloading it.
pub const MAX_FRESH: Duration = Duration::from_secs(86_400);
/// Shortest freshness given to a key set, whatever `Cache-Control` says (`no-cache`, `max-age=0`).
pub const MIN_FRESH: Duration = Duration::from_secs(60);
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
    /// The keys are reloaded at the first use from then on (Unix seconds; 0: never loaded).
    fresh_until: i64,
    /// Last reload caused by an unknown `kid` (Unix seconds).
    last_kid_refresh: Option<i64>,
    /// Last failed load (Unix seconds).
    last_failure: Option<i64>,
}

/// Why a load happens (logs).
#[derive(Debug, Clone, Copy)]
enum Reason {
    Scheduled,
    UnknownKid,
}

/// What a load produced: the keys and how long they stay fresh.
struct Loaded {
    keys: HashMap<String, RsaKey>,
    fresh_for: Duration,
}

/// The key cache.
pub struct JwksCache {
    source: JwksSource,
    /// Trust anchors for a URL source; empty = the system bundle.
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Held during a load, so concurrent requests wait for it instead of loading again.
    loading: Mutex<()>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
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
        Self::with_clock(source, roots, Arc::new(SystemClock))
    }

    /// As [`JwksCache::with_roots`], with an injected clock (the server passes its own).
    pub fn with_clock(
        source: JwksSource,
        roots: Vec<rustls::pki_types::CertificateDer<'static>>,
        clock: Arc<dyn Clock>,
    ) -> Result<JwksCache, JwksError> {
        let cache = JwksCache {
            source,
            roots,
            clock,
            state: Mutex::new(State {
                keys: HashMap::new(),
                fresh_until: 0,
                last_kid_refresh: None,
                last_failure: None,
            }),
            loading: Mutex::new(()),
        };
        if let JwksSource::File(_) = cache.source {
            let loaded = cache.load()?;
            let now = cache.clock.now_unix();
            let mut st = cache.state.lock().unwrap_or_else(|p| p.into_inner());
            st.keys = loaded.keys;
            st.fresh_until = now.saturating_add(secs(loaded.fresh_for));
        }
        Ok(cache)
    }

    fn load(&self) -> Result<Loaded, JwksError> {
        let (bytes, max_age) = match &self.source {
            JwksSource::File(p) => (read_file(p)?, None),
            JwksSource::Url(u) => fetch_url(u, &self.roots)?,
        };
        Ok(Loaded {
            keys: parse_jwks(&bytes)?,
            fresh_for: max_age.unwrap_or(MAX_FRESH).clamp(MIN_FRESH, MAX_FRESH),
        })
    }

    /// Until when (Unix seconds) the current keys are used without reloading (0: not loaded).
    pub fn fresh_until(&self) -> i64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fresh_until
    }

    /// Whether a load is due for this reason now (under the state lock).
    fn due(st: &State, reason: Reason, now: i64) -> bool {
        let interval = secs(REFRESH_INTERVAL);
        let recent = |t: Option<i64>| t.is_some_and(|t| now.saturating_sub(t) < interval);
        if recent(st.last_failure) {
            return false;
        }
        match reason {
            Reason::Scheduled => st.fresh_until <= now,
            Reason::UnknownKid => !recent(st.last_kid_refresh),
        }
    }

    /// Loads the key set if still due once the load lock is held (another thread may have
    /// loaded it meanwhile). Errors only when there are no keys at all.
    fn refresh(&self, reason: Reason) -> Result<(), JwksError> {
        let _loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_unix();
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !Self::due(&st, reason, now) {
                return Ok(());
            }
            if let Reason::UnknownKid = reason {
                st.last_kid_refresh = Some(now);
            }
        }
        let loaded = self.load();
        let now = self.clock.now_unix();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match loaded {
            Ok(l) => {
                let removed = st.keys.keys().filter(|k| !l.keys.contains_key(*k)).count();
                tracing::info!(source = ?self.source, ?reason, keys = l.keys.len(), removed, fresh_for_secs = l.fresh_for.as_secs(), "Entra JWKS (re)loaded");
                st.keys = l.keys;
                st.fresh_until = now.saturating_add(secs(l.fresh_for));
                st.last_failure = None;
                Ok(())
            }
            Err(e) => {
                st.last_failure = Some(now);
                if st.keys.is_empty() {
                    tracing::warn!(error = %e, "Entra JWKS could not be loaded");
                    return Err(e);
                }
                tracing::warn!(error = %e, stale_since = st.fresh_until, "Entra JWKS reload failed; keeping the previous keys, retrying in a minute");
                Ok(())
            }
        }
    }

    /// The key named `kid`: the key set is reloaded first when its freshness is over, and
    /// again (rate-limited) when `kid` is unknown. `Ok(None)`: still unknown. Blocking (file or
    /// network I/O); call from a blocking context.
    pub fn key(&self, kid: &str) -> Result<Option<RsaKey>, JwksError> {
        let now = self.clock.now_unix();
        let due = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            Self::due(&st, Reason::Scheduled, now)
        };
        if due {
            self.refresh(Reason::Scheduled)?;
        }
        {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(k) = st.keys.get(kid) {
                return Ok(Some(k.clone()));
            }
            if !Self::due(&st, Reason::UnknownKid, now) {
                tracing::debug!(
                    kid,
                    "unknown kid; JWKS refreshed recently, not refreshing again"
                );
                return Ok(None);
            }
        }
        self.refresh(Reason::UnknownKid)?;
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(st.keys.get(kid).cloned())
    }
}

/// `max-age` of a `Cache-Control` value, less `Age` (RFC 9111 §4.2); `None` without
/// `max-age`, zero for `no-cache`/`no-store`.
pub fn freshness(cache_control: Option<&str>, age: Option<&str>) -> Option<Duration> {
    let cc = cache_control?;
    let mut max_age = None;
    for d in cc.split(',') {
        let d = d.trim().to_ascii_lowercase();
        if d == "no-cache" || d == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    let age = age.and_then(|a| a.trim().parse::<u64>().ok()).unwrap_or(0);
    max_age.map(|m| Duration::from_secs(m.saturating_sub(age)))
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

/// Fetches `url`: the body and the freshness its headers give ([`freshness`]).
fn fetch_url(
    url: &str,
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<(Vec<u8>, Option<Duration>), JwksError> {
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
) -> Result<(Vec<u8>, Option<Duration>), String> {
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
    let header = |name: hyper::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let fresh = freshness(
        header(hyper::header::CACHE_CONTROL).as_deref(),
        header(hyper::header::AGE).as_deref(),
    );
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((body.to_bytes().to_vec(), fresh))
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
        struct Manual(std::sync::atomic::AtomicI64);
        impl Clock for Manual {
            fn now_unix(&self) -> i64 {
                self.0.load(std::sync::atomic::Ordering::SeqCst)
            }
        }
        let clock = Arc::new(Manual(1_000_000.into()));
        let cache =
            JwksCache::with_clock(JwksSource::File(path.clone()), Vec::new(), clock.clone())
                .unwrap();
        assert!(cache.key("a").unwrap().is_some());
        assert_eq!(cache.fresh_until(), 1_000_000 + 86_400, "a file: one day");
        // rotated on disk: the first unknown kid re-reads (loading at start did not count)…
        std::fs::write(&path, EntraKey::jwks(&[&a, &b])).unwrap();
        assert!(
            cache.key("b").unwrap().is_some(),
            "refreshed on unknown kid"
        );
        // …but the next one within REFRESH_INTERVAL does not.
        let c = EntraKey::generate("c");
        std::fs::write(&path, EntraKey::jwks(&[&a, &b, &c])).unwrap();
        assert_eq!(cache.key("c").unwrap(), None);
        clock
            .0
            .store(1_000_000 + 60, std::sync::atomic::Ordering::SeqCst);
        assert!(cache.key("c").unwrap().is_some());
        assert!(JwksCache::new(JwksSource::File(dir.path().join("missing"))).is_err());
    }

    #[test]
    fn cache_control_freshness() {
        let f = |cc: Option<&str>, age: Option<&str>| freshness(cc, age).map(|d| d.as_secs());
        assert_eq!(f(Some("public, max-age=86400"), None), Some(86_400));
        assert_eq!(f(Some("max-age=3600"), Some("600")), Some(3_000));
        assert_eq!(f(Some("max-age=10"), Some("600")), Some(0));
        assert_eq!(f(Some("no-cache"), None), Some(0));
        assert_eq!(f(Some("public"), None), None);
        assert_eq!(f(None, Some("5")), None);
    }
}
