//! Console sessions: sign-in with a token, the session cookie, CSRF tokens, sign-in limits.
//!
//! * **Records in the store** (kind [`SESSIONS`]), keyed by a digest of the cookie's random id,
//!   so any node behind a load balancer without affinity serves any session, and the store never
//!   holds a usable cookie.
//! * **Bound to the token**: a session records the token's name and the digest of its secret;
//!   every request re-checks them against the token's current record (or the bootstrap token),
//!   so revoking a token — or re-creating one with the same name — ends its sessions at once, and
//!   the role is the token's current role.
//! * **CSRF**: a synchronizer token per session, in a hidden field of every form and compared in
//!   constant time on every POST ([`check_csrf`]).
//! * **Sign-in limits**: the form is reachable without authentication, so attempts are bounded
//!   per node ([`SignInLimiter`]: a token bucket, and failures per client address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::service::tokens::{self, TOKENS};
use crate::service::{blocking, Actor, ServiceError, TokenRole};
use crate::store::records::Kind;

/// Name of the session cookie (`HttpOnly; Secure; SameSite=Strict; Path=/ui`).
pub const COOKIE: &str = "winmdm_ui";
/// A session's lifetime (seconds): it ends after this however active it is.
pub const LIFETIME_SECS: i64 = 12 * 3600;
/// Longest token accepted by the sign-in form.
pub const MAX_TOKEN_LEN: usize = 256;
/// Live sessions one token may hold; a sign-in beyond ends that token's oldest session (by
/// sign-in second; ties in any order), so the records are bounded by the number of tokens.
pub const MAX_SESSIONS_PER_TOKEN: usize = 20;

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiSession {
    /// The token's name ([`tokens::BOOTSTRAP`] for the bootstrap token).
    pub token_name: String,
    /// Digest of the token it was opened with (re-checked on every request).
    pub token_digest: String,
    /// The CSRF synchronizer token of its forms.
    pub csrf: String,
    /// Sign-in time (Unix seconds).
    pub created_at: i64,
    /// End (Unix seconds).
    pub expires_at: i64,
}

/// Sessions, keyed by [`session_key`] of the cookie value.
pub const SESSIONS: Kind<UiSession> = Kind::new("ui_session");

const SESSION_LABEL: &str = "winmdm console session v1";
const BOOTSTRAP_LABEL: &str = "winmdm bootstrap token v1";

/// The store key of a session id (its digest: the store holds no usable cookie).
pub fn session_key(id: &str) -> String {
    tokens::digest(SESSION_LABEL, id)
}

/// The binding recorded for a token: the named token's stored digest, or a digest of the
/// bootstrap token.
fn binding_of_bootstrap(app: &App) -> String {
    tokens::digest(BOOTSTRAP_LABEL, &app.admin_token)
}

/// A signed-in admin: who, and the CSRF token of their forms.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The token acting.
    pub actor: Actor,
    /// CSRF token of this session.
    pub csrf: String,
}

/// Opens a session for a valid token; returns the cookie value (the session id).
pub async fn sign_in(app: &Arc<App>, token: &str) -> Result<(String, Signed), ServiceError> {
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(ServiceError::Unauthorized);
    }
    let actor = crate::service::access::authenticate(app, token).await?;
    if actor.role == TokenRole::Metrics {
        tracing::info!(token = %actor.name, "console sign-in refused: a metrics token");
        return Err(ServiceError::Forbidden {
            reason:
                "a metrics token may only read /metrics; sign in with an admin or read-only token"
                    .into(),
        });
    }
    let binding = if actor.name == tokens::BOOTSTRAP {
        binding_of_bootstrap(app)
    } else {
        let (_, secret) = tokens::parse_token(token).ok_or(ServiceError::Unauthorized)?;
        tokens::token_digest(secret)
    };
    let id = crate::clock::random_hex(32);
    let now = app.clock.now_unix();
    let rec = UiSession {
        token_name: actor.name.clone(),
        token_digest: binding,
        csrf: crate::clock::random_hex(32),
        created_at: now,
        expires_at: now + LIFETIME_SECS,
    };
    let a = app.clone();
    let (key, r) = (session_key(&id), rec.clone());
    blocking(move || {
        sweep(&a, now, &r.token_name)?;
        if !SESSIONS.insert_new(a.store.records(), &key, &r)? {
            return Err(ServiceError::Internal {
                reason: "session id collision".into(),
            });
        }
        Ok(())
    })
    .await?;
    tracing::info!(token = %actor.name, "console sign-in");
    crate::service::audit(
        app,
        &actor,
        "console.sign_in",
        &actor.name,
        serde_json::json!({}),
    )
    .await;
    Ok((
        id,
        Signed {
            actor,
            csrf: rec.csrf,
        },
    ))
}

/// At each sign-in: deletes sessions past their end, and the oldest sessions of `token` beyond
/// [`MAX_SESSIONS_PER_TOKEN`] - 1 (room for the new one).
fn sweep(app: &App, now: i64, token: &str) -> Result<(), ServiceError> {
    let r = app.store.records();
    let mut mine: Vec<(i64, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = SESSIONS.page(r, cursor.as_deref(), 1000)?;
        for (k, s) in page {
            if s.expires_at <= now {
                SESSIONS.delete(r, &k)?;
            } else if s.token_name == token {
                mine.push((s.created_at, k));
            }
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    if mine.len() >= MAX_SESSIONS_PER_TOKEN {
        mine.sort();
        let excess = mine.len() + 1 - MAX_SESSIONS_PER_TOKEN;
        for (_, k) in mine.into_iter().take(excess) {
            SESSIONS.delete(r, &k)?;
        }
        tracing::info!(%token, excess, "console: oldest sessions of a token ended (bound per token)");
    }
    Ok(())
}

/// The session of a cookie value, re-checked against its token; `None` when there is none, it
/// expired, or its token was revoked (the record is then deleted).
pub async fn current(app: &Arc<App>, id: &str) -> Result<Option<Signed>, ServiceError> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let a = app.clone();
    let key = session_key(id);
    blocking(move || {
        let r = a.store.records();
        let Some(s) = SESSIONS.get(r, &key)? else {
            return Ok(None);
        };
        let now = a.clock.now_unix();
        let role = if s.expires_at <= now {
            None
        } else if s.token_name == tokens::BOOTSTRAP {
            let want = binding_of_bootstrap(&a);
            crate::auth::constant_time_eq(want.as_bytes(), s.token_digest.as_bytes())
                .then_some(TokenRole::Admin)
        } else {
            TOKENS.get(r, &s.token_name)?.and_then(|t| {
                (crate::auth::constant_time_eq(t.digest.as_bytes(), s.token_digest.as_bytes())
                    && t.role != TokenRole::Metrics)
                    .then_some(t.role)
            })
        };
        let Some(role) = role else {
            tracing::info!(token = %s.token_name, "console session ended: expired, or its token was revoked");
            SESSIONS.delete(r, &key)?;
            return Ok(None);
        };
        Ok(Some(Signed {
            actor: Actor {
                name: s.token_name,
                role,
            },
            csrf: s.csrf,
        }))
    })
    .await
}

/// Ends a session.
pub async fn sign_out(app: &Arc<App>, id: &str) -> Result<(), ServiceError> {
    let a = app.clone();
    let key = session_key(id);
    blocking(move || {
        SESSIONS.delete(a.store.records(), &key)?;
        Ok(())
    })
    .await
}

/// Whether the form's CSRF token is the session's (constant time).
pub fn check_csrf(s: &Signed, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| crate::auth::constant_time_eq(p.as_bytes(), s.csrf.as_bytes()))
}

/// The `Set-Cookie` value opening a session.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age={LIFETIME_SECS}")
}

/// The `Set-Cookie` value ending a session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// The session cookie's value in a `Cookie` header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// Bounds sign-in attempts on this node: a token bucket over all attempts, and at most
/// [`SignInLimiter::MAX_FAILURES`] failures per client address per window.
#[derive(Debug)]
pub struct SignInLimiter {
    bucket: crate::http::throttle::Throttle,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    window: Duration,
}

impl SignInLimiter {
    /// Failures one address may have per window.
    pub const MAX_FAILURES: u32 = 10;
    /// Addresses tracked at most (beyond, the oldest windows are dropped).
    pub const MAX_ADDRESSES: usize = 4096;

    /// A limiter of `rate` attempts per second (burst `burst`), failures counted per `window`.
    pub fn new(rate: u32, burst: u32, window: Duration) -> SignInLimiter {
        SignInLimiter {
            bucket: crate::http::throttle::Throttle::new(rate, burst),
            failures: Mutex::new(HashMap::new()),
            window,
        }
    }

    /// A node's limiter (10 attempts/s, burst 60; failures per 10 minutes).
    pub fn per_node() -> SignInLimiter {
        SignInLimiter::new(10, 60, Duration::from_secs(600))
    }

    /// Whether an attempt from `ip` may be checked now.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let blocked = {
            let m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            m.get(&ip).is_some_and(|(n, since)| {
                *n >= Self::MAX_FAILURES && now.duration_since(*since) < self.window
            })
        };
        !blocked && self.bucket.try_acquire()
    }

    /// Counts a failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= Self::MAX_ADDRESSES && !m.contains_key(&ip) {
            let window = self.window;
            m.retain(|_, (_, since)| now.duration_since(*since) < window);
            if m.len() >= Self::MAX_ADDRESSES {
                // Still full of live windows: forget the oldest one.
                if let Some(oldest) = m.iter().min_by_key(|(_, (_, s))| *s).map(|(k, _)| *k) {
                    m.remove(&oldest);
                }
            }
        }
        let e = m.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= self.window {
            *e = (0, now);
        }
        e.0 += 1;
    }

    /// Forgets the failures of `ip` (after a successful sign-in).
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing() {
        assert_eq!(cookie_value("a=1; winmdm_ui=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("winmdm_uix=abc"), None);
        assert_eq!(cookie_value(""), None);
        assert!(set_cookie("x").contains("HttpOnly; Secure; SameSite=Strict"));
        assert!(set_cookie("x").contains("Path=/ui"));
    }

    #[test]
    fn failures_block_one_address_only_and_the_map_is_bounded() {
        let l = SignInLimiter::new(1000, 1000, Duration::from_secs(600));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..SignInLimiter::MAX_FAILURES {
            assert!(l.allow(a));
            l.failed(a);
        }
        assert!(!l.allow(a), "blocked after MAX_FAILURES");
        assert!(l.allow(b), "another address is not");
        for i in 0..(SignInLimiter::MAX_ADDRESSES as u32 + 100) {
            l.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(l.failures.lock().unwrap().len() <= SignInLimiter::MAX_ADDRESSES);
    }

    #[test]
    fn the_bucket_bounds_attempts() {
        let l = SignInLimiter::new(1, 3, Duration::from_secs(600));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed = (0..10).filter(|_| l.allow(a)).count();
        assert_eq!(allowed, 3);
    }
}
