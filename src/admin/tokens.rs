//! Admin API credentials: the bootstrap token and named tokens with a role.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/tokens` `{"name", "role": "admin"\|"read-only"\|"metrics"}` | 201 with `token` (shown once); 400; 409 name taken |
//! | GET | `/api/v1/tokens?limit=&cursor=` | 200 `{"tokens": [{"name","role","created_at","created_by"}], "next"}` |
//! | DELETE | `/api/v1/tokens/{name}` | 204 (refused from the next request on); 404 |
//!
//! A named token reads `wmdm_<name>_<secret>`: the name locates its record in one lookup (no scan,
//! no per-record comparison), then the secret's digest is compared in constant time. A `read-only`
//! token may call the GET routes except [`ADMIN_ONLY_GETS`] and gets 403 on everything else; a
//! `metrics` token may only read `GET /metrics` ([`crate::metrics::http`]). Every
//! request runs inside [`ACTOR`], so the audit log records which token did what.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::{blocking, json, json_body, no_content, page_query, ApiError};
use crate::app::App;
use crate::http::routes::Resp;
use crate::store::records::Kind;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenRole {
    /// Every route.
    Admin,
    /// GET routes only (except [`ADMIN_ONLY_GETS`]), and `GET /metrics`.
    ReadOnly,
    /// `GET /metrics` only (a Prometheus scraper's credential): 403 on every `/api/v1` route.
    Metrics,
}

/// A named token as stored: never the secret, only its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique name (`[a-z0-9][a-z0-9-]{0,62}`); the record's key and the audit actor.
    pub name: String,
    /// Its role.
    pub role: TokenRole,
    /// [`digest`] of the secret, lower hex.
    pub digest: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// The token that created it.
    pub created_by: String,
}

/// Named tokens, keyed by name.
pub const TOKENS: Kind<TokenRecord> = Kind::new("admin_token");

/// Prefix of every named token.
pub const PREFIX: &str = "wmdm_";
/// Actor name of the bootstrap token (`DATA_DIR/admin-token` or `WINMDM_ADMIN_TOKEN`); reserved.
pub const BOOTSTRAP: &str = "bootstrap";
/// GET routes a read-only token may not call: they mint a credential (each bulk-enrollment
/// package carries a new enrollment secret), which is a change, not a read.
pub const ADMIN_ONLY_GETS: &[&str] = &["/api/v1/bulk-enrollment/package"];

/// Who is calling: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Token name ([`BOOTSTRAP`] for the bootstrap token).
    pub name: String,
    /// Its role.
    pub role: TokenRole,
}

tokio::task_local! {
    /// The authenticated caller of the admin request being served (set by the router around
    /// each handler, so audit entries and assignments name the token without threading it
    /// through every handler).
    pub static ACTOR: Actor;
}

/// Name of the caller of the current admin request (`"admin"` outside one, e.g. in unit tests).
pub fn current_actor() -> String {
    ACTOR
        .try_with(|a| a.name.clone())
        .unwrap_or_else(|_| "admin".into())
}

/// The digest stored for a token secret: SHA-256 over a domain label and the secret.
///
/// Not argon2: these secrets are 256 random bits minted by us, not human passwords, so there is no
/// dictionary to slow down and a preimage search over 2^256 is out of reach even with a fast hash.
/// A fast hash lets every API request be verified in microseconds (argon2 would cost ~50 ms of
/// CPU per request and make the admin API a DoS lever). The label keeps these digests apart from
/// any other SHA-256 use (e.g. invitation links, [`crate::admin::invitations`]).
pub fn digest(label: &str, secret: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(label.as_bytes());
    ctx.update(&[0]);
    ctx.update(secret.as_bytes());
    crate::clock::hex(ctx.finish().as_ref())
}

const TOKEN_LABEL: &str = "winmdm admin token v1";

/// Splits `wmdm_<name>_<secret>`; names hold no `_`, so the split is unambiguous.
pub fn parse_token(t: &str) -> Option<(&str, &str)> {
    let (name, secret) = t.strip_prefix(PREFIX)?.split_once('_')?;
    (valid_name(name) && !secret.is_empty()).then_some((name, secret))
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Authenticates the bearer token of `req`: the bootstrap token, or a named token's record.
pub async fn authenticate(app: &Arc<App>, req: &Request<Incoming>) -> Result<Actor, ApiError> {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    let Some(token) = presented else {
        tracing::info!("admin request without a bearer token");
        return Err(ApiError::Unauthorized);
    };
    if crate::auth::constant_time_eq(token.as_bytes(), app.admin_token.as_bytes()) {
        return Ok(Actor {
            name: BOOTSTRAP.into(),
            role: TokenRole::Admin,
        });
    }
    let Some((name, secret)) = parse_token(&token) else {
        tracing::info!("admin request with a token that is neither the bootstrap token nor wmdm_<name>_<secret>");
        return Err(ApiError::Unauthorized);
    };
    let (name, secret) = (name.to_string(), secret.to_string());
    let a = app.clone();
    blocking(move || {
        let rec = TOKENS.get(a.store.records(), &name)?;
        let want = rec.as_ref().map(|r| r.digest.as_str()).unwrap_or("");
        let got = digest(TOKEN_LABEL, &secret);
        match rec {
            Some(r) if crate::auth::constant_time_eq(got.as_bytes(), want.as_bytes()) => {
                Ok(Actor {
                    name: r.name,
                    role: r.role,
                })
            }
            Some(_) => {
                tracing::info!(token = %name, "admin request with a wrong secret for this token name");
                Err(ApiError::Unauthorized)
            }
            None => {
                tracing::info!(token = %name, "admin request with an unknown or revoked token");
                Err(ApiError::Unauthorized)
            }
        }
    })
    .await
}

/// Refuses what a read-only or metrics token may not do (403).
pub fn authorize(actor: &Actor, method: &Method, path: &str) -> Result<(), ApiError> {
    match actor.role {
        TokenRole::Admin => return Ok(()),
        TokenRole::Metrics => {
            return Err(ApiError::Forbidden {
                reason: format!(
                    "token {:?} is a metrics token; it may only read /metrics",
                    actor.name
                ),
            })
        }
        TokenRole::ReadOnly => {}
    }
    let path = path.trim_end_matches('/');
    if *method == Method::GET && !ADMIN_ONLY_GETS.contains(&path) {
        return Ok(());
    }
    Err(ApiError::Forbidden {
        reason: format!(
            "token {:?} is read-only; {method} {path} needs an admin token",
            actor.name
        ),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: TokenRole,
}

/// A token as listed (no secret, no digest).
#[derive(Debug, Serialize)]
struct TokenView<'a> {
    name: &'a str,
    role: TokenRole,
    created_at: i64,
    created_by: &'a str,
}

impl<'a> From<&'a TokenRecord> for TokenView<'a> {
    fn from(r: &'a TokenRecord) -> Self {
        TokenView {
            name: &r.name,
            role: r.role,
            created_at: r.created_at,
            created_by: &r.created_by,
        }
    }
}

/// `POST /api/v1/tokens`.
pub async fn create(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let nt: NewToken = json_body(req).await?;
    if !valid_name(&nt.name) {
        return Err(ApiError::BadRequest {
            reason:
                "name must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
                    .into(),
        });
    }
    if nt.name == BOOTSTRAP {
        return Err(ApiError::Conflict {
            what: format!("token {BOOTSTRAP} (reserved for the bootstrap token)"),
        });
    }
    let secret = crate::clock::random_hex(32);
    let rec = TokenRecord {
        name: nt.name.clone(),
        role: nt.role,
        digest: digest(TOKEN_LABEL, &secret),
        created_at: app.clock.now_unix(),
        created_by: current_actor(),
    };
    let a = app.clone();
    let r = rec.clone();
    blocking(move || {
        if !TOKENS.insert_new(a.store.records(), &r.name, &r)? {
            return Err(ApiError::Conflict {
                what: format!("token {}", r.name),
            });
        }
        Ok(())
    })
    .await?;
    tracing::info!(token = %rec.name, role = ?rec.role, "admin token created");
    super::audit(
        &app,
        "token.create",
        &rec.name,
        serde_json::json!({ "role": rec.role }),
    )
    .await;
    let mut v = serde_json::to_value(TokenView::from(&rec)).unwrap_or_default();
    v["token"] = format!("{PREFIX}{}_{secret}", rec.name).into();
    Ok(json(StatusCode::CREATED, &v))
}

/// `GET /api/v1/tokens`.
pub async fn list(app: Arc<App>, query: &str) -> Result<Resp, ApiError> {
    let (limit, cursor) = page_query(query)?;
    let (recs, next) =
        blocking(move || Ok(TOKENS.page(app.store.records(), cursor.as_deref(), limit)?)).await?;
    let views: Vec<TokenView> = recs.iter().map(|(_, r)| TokenView::from(r)).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "tokens": views, "next": next }),
    ))
}

/// `DELETE /api/v1/tokens/{name}`: the record goes, so the token fails from the next request.
pub async fn revoke(app: Arc<App>, name: String) -> Result<Resp, ApiError> {
    let a = app.clone();
    let n = name.clone();
    let existed = blocking(move || Ok(TOKENS.delete(a.store.records(), &n)?)).await?;
    if !existed {
        return Err(ApiError::NotFound {
            what: format!("token {name}"),
        });
    }
    tracing::info!(token = %name, "admin token revoked");
    super::audit(&app, "token.revoke", &name, serde_json::json!({})).await;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_format_round_trips_and_rejects_garbage() {
        assert_eq!(parse_token("wmdm_ci-bot_abc"), Some(("ci-bot", "abc")));
        assert_eq!(parse_token("wmdm_ci_a_b"), Some(("ci", "a_b")));
        for bad in [
            "",
            "wmdm_",
            "wmdm_x",
            "wmdm_x_",
            "wmdm__s",
            "wmdm_Bad_s",
            "xmdm_a_b",
            "wmdm_-a_s",
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
        let long = format!("wmdm_{}_s", "a".repeat(64));
        assert_eq!(parse_token(&long), None);
    }

    #[test]
    fn digests_are_labelled() {
        assert_eq!(digest("a", "s"), digest("a", "s"));
        assert_ne!(digest("a", "s"), digest("b", "s"));
        assert_eq!(digest("a", "s").len(), 64);
    }

    #[test]
    fn read_only_may_only_read() {
        let ro = Actor {
            name: "r".into(),
            role: TokenRole::ReadOnly,
        };
        assert!(authorize(&ro, &Method::GET, "/api/v1/devices").is_ok());
        assert!(authorize(&ro, &Method::POST, "/api/v1/users").is_err());
        assert!(authorize(&ro, &Method::GET, "/api/v1/bulk-enrollment/package").is_err());
        let admin = Actor {
            name: "a".into(),
            role: TokenRole::Admin,
        };
        assert!(authorize(&admin, &Method::DELETE, "/api/v1/tokens/x").is_ok());
    }

    #[test]
    fn metrics_tokens_may_call_no_api_route() {
        let m = Actor {
            name: "prom".into(),
            role: TokenRole::Metrics,
        };
        assert!(authorize(&m, &Method::GET, "/api/v1/devices").is_err());
        assert!(authorize(&m, &Method::GET, "/api/v1/openapi.json").is_err());
        assert!(authorize(&m, &Method::POST, "/api/v1/users").is_err());
        assert!(crate::metrics::http::may_scrape(TokenRole::Metrics));
        assert!(crate::metrics::http::may_scrape(TokenRole::ReadOnly));
    }
}
