//! Who acts: the [`Actor`] a credential stands for, and the role check every change passes.
//!
//! A credential is the bootstrap token (`DATA_DIR/admin-token` or `WINMDM_ADMIN_TOKEN`) or a named
//! token `wmdm_<name>_<secret>` ([`super::tokens`]). [`authenticate`] turns one into an
//! [`Actor`]; the JSON API calls it for each request's bearer token, the console for the token a
//! session cookie is bound to, on every request (so revoking the token ends the session).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::tokens::{self, TOKENS};
use super::{blocking, ServiceError};
use crate::app::App;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenRole {
    /// Everything.
    Admin,
    /// Reads only (and `GET /metrics`).
    ReadOnly,
    /// `GET /metrics` only (a Prometheus scraper's credential): refused by every admin API
    /// route and by the console.
    Metrics,
}

/// Who is acting: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Token name ([`tokens::BOOTSTRAP`] for the bootstrap token).
    pub name: String,
    /// Its role.
    pub role: TokenRole,
}

impl Actor {
    /// The bootstrap token's actor.
    pub fn bootstrap() -> Actor {
        Actor {
            name: tokens::BOOTSTRAP.into(),
            role: TokenRole::Admin,
        }
    }

    /// Refuses a change to a read-only token: 403 in the API, a message in the console. `what`
    /// names the operation ("POST /api/v1/users" or "create a user").
    pub fn require_admin(&self, what: &str) -> Result<(), ServiceError> {
        if self.role == TokenRole::Admin {
            return Ok(());
        }
        tracing::info!(token = %self.name, role = ?self.role, operation = %what, "change refused: not an admin token");
        let kind = match self.role {
            TokenRole::Metrics => "a metrics token",
            _ => "read-only",
        };
        Err(ServiceError::Forbidden {
            reason: format!(
                "token {:?} is {kind}; {what} needs an admin token",
                self.name
            ),
        })
    }
}

/// Authenticates a presented token: the bootstrap token, or a named token's record (digest
/// compared in constant time).
pub async fn authenticate(app: &Arc<App>, token: &str) -> Result<Actor, ServiceError> {
    let token = token.trim();
    if crate::auth::constant_time_eq(token.as_bytes(), app.admin_token.as_bytes()) {
        return Ok(Actor::bootstrap());
    }
    let Some((name, secret)) = tokens::parse_token(token) else {
        tracing::info!(
            "admin credential that is neither the bootstrap token nor wmdm_<name>_<secret>"
        );
        return Err(ServiceError::Unauthorized);
    };
    let (name, secret) = (name.to_string(), secret.to_string());
    let a = app.clone();
    blocking(move || {
        let rec = TOKENS.get(a.store.records(), &name)?;
        let want = rec.as_ref().map(|r| r.digest.as_str()).unwrap_or("");
        let got = tokens::token_digest(&secret);
        match rec {
            Some(r) if crate::auth::constant_time_eq(got.as_bytes(), want.as_bytes()) => {
                Ok(Actor {
                    name: r.name,
                    role: r.role,
                })
            }
            Some(_) => {
                tracing::info!(token = %name, "admin credential with a wrong secret for this token name");
                Err(ServiceError::Unauthorized)
            }
            None => {
                tracing::info!(token = %name, "admin credential of an unknown or revoked token");
                Err(ServiceError::Unauthorized)
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_may_not_change() {
        let ro = Actor {
            name: "r".into(),
            role: TokenRole::ReadOnly,
        };
        let e = ro.require_admin("create a user").unwrap_err();
        assert!(matches!(e, ServiceError::Forbidden { .. }), "{e:?}");
        assert!(e.to_string().contains("read-only"));
        assert!(Actor::bootstrap().require_admin("x").is_ok());
    }
}
