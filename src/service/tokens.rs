//! Named admin tokens with a role: create (the secret shown once), list, revoke.
//!
//! A named token reads `wmdm_<name>_<secret>`: the name locates its record in one lookup (no scan,
//! no per-record comparison), then the secret's digest is compared in constant time
//! ([`super::access::authenticate`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{audit, blocking, Actor, Page, ServiceError, TokenRole};
use crate::app::App;
use crate::store::records::Kind;

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

/// The digest stored for a token secret: SHA-256 over a domain label and the secret.
///
/// Not argon2: these secrets are 256 random bits minted by us, not human passwords, so there is no
/// dictionary to slow down and a preimage search over 2^256 is out of reach even with a fast hash.
/// A fast hash lets every API request be verified in microseconds (argon2 would cost ~50 ms of
/// CPU per request and make the admin API a DoS lever). The label keeps these digests apart from
/// any other SHA-256 use (e.g. invitation links, [`super::invitations`]).
pub fn digest(label: &str, secret: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(label.as_bytes());
    ctx.update(&[0]);
    ctx.update(secret.as_bytes());
    crate::clock::hex(ctx.finish().as_ref())
}

const TOKEN_LABEL: &str = "winmdm admin token v1";

/// The digest of a named token's secret.
pub fn token_digest(secret: &str) -> String {
    digest(TOKEN_LABEL, secret)
}

/// Splits `wmdm_<name>_<secret>`; names hold no `_`, so the split is unambiguous.
pub fn parse_token(t: &str) -> Option<(&str, &str)> {
    let (name, secret) = t.strip_prefix(PREFIX)?.split_once('_')?;
    (valid_name(name) && !secret.is_empty()).then_some((name, secret))
}

/// Whether `name` is a valid token name.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A token as listed (no secret, no digest).
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    /// Name.
    pub name: String,
    /// Role.
    pub role: TokenRole,
    /// Creation time.
    pub created_at: i64,
    /// Creator.
    pub created_by: String,
}

impl From<&TokenRecord> for TokenView {
    fn from(r: &TokenRecord) -> Self {
        TokenView {
            name: r.name.clone(),
            role: r.role,
            created_at: r.created_at,
            created_by: r.created_by.clone(),
        }
    }
}

/// A new token: its listing and the secret token string, shown once.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    /// The record as listed.
    pub view: TokenView,
    /// `wmdm_<name>_<secret>`.
    pub token: String,
}

/// Creates a named token.
pub async fn create(
    app: &Arc<App>,
    actor: &Actor,
    name: String,
    role: TokenRole,
) -> Result<CreatedToken, ServiceError> {
    actor.require_admin("POST /api/v1/tokens")?;
    if !valid_name(&name) {
        return Err(ServiceError::bad(
            "name must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ));
    }
    if name == BOOTSTRAP {
        return Err(ServiceError::Conflict {
            what: format!("token {BOOTSTRAP} (reserved for the bootstrap token)"),
        });
    }
    let secret = crate::clock::random_hex(32);
    let rec = TokenRecord {
        name: name.clone(),
        role,
        digest: token_digest(&secret),
        created_at: app.clock.now_unix(),
        created_by: actor.name.clone(),
    };
    let a = app.clone();
    let r = rec.clone();
    blocking(move || {
        if !TOKENS.insert_new(a.store.records(), &r.name, &r)? {
            return Err(ServiceError::Conflict {
                what: format!("token {}", r.name),
            });
        }
        Ok(())
    })
    .await?;
    tracing::info!(token = %rec.name, role = ?rec.role, "admin token created");
    audit(
        app,
        actor,
        "token.create",
        &rec.name,
        serde_json::json!({ "role": rec.role }),
    )
    .await;
    Ok(CreatedToken {
        view: TokenView::from(&rec),
        token: format!("{PREFIX}{}_{secret}", rec.name),
    })
}

/// One page of tokens, by name.
pub async fn list(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<TokenView>, ServiceError> {
    let a = app.clone();
    let (recs, next) =
        blocking(move || Ok(TOKENS.page(a.store.records(), cursor.as_deref(), limit)?)).await?;
    Ok(Page {
        items: recs.iter().map(|(_, r)| TokenView::from(r)).collect(),
        next,
    })
}

/// Revokes a token: the record goes, so the token fails from the next request on (and every
/// console session bound to it ends).
pub async fn revoke(app: &Arc<App>, actor: &Actor, name: String) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/tokens/{name}"))?;
    let a = app.clone();
    let n = name.clone();
    let existed = blocking(move || Ok(TOKENS.delete(a.store.records(), &n)?)).await?;
    if !existed {
        return Err(ServiceError::not_found(format!("token {name}")));
    }
    tracing::info!(token = %name, "admin token revoked");
    audit(app, actor, "token.revoke", &name, serde_json::json!({})).await;
    Ok(())
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
}
