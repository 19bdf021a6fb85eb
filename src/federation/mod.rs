//! Token authentication for enrollment (issue #7): the federated login page of our own
//! ([`sts`], [`web`]), Entra ID access tokens ([`jwt`], [`jwks`]) and the Entra terms-of-use page
//! ([`web`]).
//!
//! Owns: turning a WS-Security `BinarySecurityToken` into a [`Principal`] ([`authenticate_token`])
//! and the state this needs ([`Federation`]: the login-token key, the JWKS cache, the terms text).
//! Every refusal is an [`EnrollError`] whose reason names exactly why ("token expired", "aud
//! mismatch"...); the HTTP layer logs it with a trace id and answers the SOAP fault.
//!
//! Token kinds (PROTOCOL.md §3):
//! * `…/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken` — our login token (the
//!   `wresult` the device received from our page): accepted when `--auth-policy` allows
//!   federated; checked at policy, consumed at enrollment ([`sts`]).
//! * `urn:ietf:params:oauth:token-type:jwt` — an Entra access token: accepted when
//!   `--entra-jwks` is set; validated by the rules in [`jwt`]. Entra tokens are bearer tokens
//!   reused by Windows within their lifetime, so they are not single-use here.

pub mod jwks;
pub mod jwt;
pub mod sts;
pub mod testing;
pub mod web;

use crate::app::App;
use crate::config::Config;
use crate::soap::envelope::{VALUE_TYPE_ENTRA_JWT, VALUE_TYPE_USER_TOKEN};
use crate::soap::fault::EnrollError;
use crate::store::User;

pub use sts::Stage;

/// Default terms of use (when `--tos-file` is not given).
pub const DEFAULT_TOS: &str = "<p>This device will be managed by your organization. Your \
administrator can install apps, apply settings and security policies, and remove the \
organization's data from it. Your personal files are not read.</p>";

/// Largest `--tos-file` accepted.
pub const MAX_TOS_BYTES: usize = 256 * 1024;

/// The federation state kept by the [`App`].
#[derive(Debug)]
pub struct Federation {
    /// Login-token signer.
    pub sts: sts::Sts,
    /// Entra signing keys, when Entra tokens are enabled.
    pub jwks: Option<jwks::JwksCache>,
    /// Terms-of-use fragment (trusted operator HTML).
    pub tos_html: String,
}

/// Start-up failure of the federation state.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The login-token key file.
    #[error(transparent)]
    Key(#[from] crate::pki::PkiError),
    /// The JWKS file.
    #[error(transparent)]
    Jwks(#[from] jwks::JwksError),
    /// The terms-of-use file.
    #[error("terms of use file {path}: {reason}")]
    Tos {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl Federation {
    /// In-memory state with a random key, no Entra keys and the default terms (fuzzing, tests).
    pub fn ephemeral() -> Federation {
        Federation {
            sts: sts::Sts::with_key(crate::clock::random_hex(32).as_bytes()),
            jwks: None,
            tos_html: DEFAULT_TOS.to_string(),
        }
    }

    /// Loads (or creates) the key, the JWKS (a file source is read now) and the terms text.
    /// `clock` schedules the JWKS reloads.
    pub fn open(
        cfg: &Config,
        clock: std::sync::Arc<dyn crate::clock::Clock>,
    ) -> Result<Federation, FederationError> {
        let sts = sts::Sts::load_or_create(&cfg.data_dir)?;
        let jwks = match &cfg.entra {
            Some(e) => Some(jwks::JwksCache::with_clock(
                e.jwks.clone(),
                Vec::new(),
                clock,
            )?),
            None => None,
        };
        let tos_html = match &cfg.tos_file {
            None => DEFAULT_TOS.to_string(),
            Some(p) => {
                let err = |reason: String| FederationError::Tos {
                    path: p.display().to_string(),
                    reason,
                };
                let bytes = std::fs::read(p).map_err(|e| err(e.to_string()))?;
                if bytes.len() > MAX_TOS_BYTES {
                    return Err(err(format!("larger than {MAX_TOS_BYTES} bytes")));
                }
                String::from_utf8(bytes).map_err(|_| err("not UTF-8".into()))?
            }
        };
        Ok(Federation {
            sts,
            jwks,
            tos_html,
        })
    }
}

/// Who an enrollment credential speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user (password, login token or delegated Entra token).
    User(User),
    /// A device-only Entra enrollment (app-only token): no user.
    Device {
        /// The Entra application that obtained the token (`appid`/`azp`).
        app: String,
        /// Its tenant (`tid`).
        tenant: String,
    },
}

impl Principal {
    /// The user, if any.
    pub fn user(&self) -> Option<&User> {
        match self {
            Principal::User(u) => Some(u),
            Principal::Device { .. } => None,
        }
    }
}

fn auth(reason: impl std::fmt::Display) -> EnrollError {
    EnrollError::Authentication {
        reason: reason.to_string(),
    }
}

fn server(reason: impl std::fmt::Display) -> EnrollError {
    EnrollError::EnrollmentServer {
        reason: reason.to_string(),
    }
}

/// Authenticates a `BinarySecurityToken` credential presented at `stage`.
pub fn authenticate_token(
    app: &App,
    value_type: &str,
    token: &[u8],
    stage: Stage,
) -> Result<Principal, EnrollError> {
    let now = app.clock.now_unix();
    match value_type.trim() {
        VALUE_TYPE_USER_TOKEN => {
            if !app.cfg.auth_policy.allows_federated() {
                return Err(auth(
                    "federated login tokens are not enabled (--auth-policy onpremise)",
                ));
            }
            let upn = app
                .federation
                .sts
                .verify(app.store.records(), token, now, stage)
                .map_err(|e| match e {
                    sts::StsError::Store(s) => server(format!("store: {s}")),
                    e => auth(e),
                })?;
            existing_user(app, &upn).map(Principal::User)
        }
        VALUE_TYPE_ENTRA_JWT => entra(app, token, now),
        other => Err(auth(format!(
            "token authentication with ValueType {:?} is not supported",
            crate::soap::envelope::clip(other)
        ))),
    }
}

fn existing_user(app: &App, upn: &str) -> Result<User, EnrollError> {
    let upn = crate::upn::parse(upn).map_err(auth)?;
    let user = app
        .store
        .get_user(&upn)
        .map_err(|e| server(format!("store: {e}")))?
        .ok_or_else(|| auth(format!("unknown user {upn:?}")))?;
    if user.disabled {
        return Err(EnrollError::Authorization {
            reason: format!("user {upn:?} is disabled"),
        });
    }
    Ok(user)
}

fn entra(app: &App, token: &[u8], now: i64) -> Result<Principal, EnrollError> {
    let (Some(cfg), Some(cache)) = (&app.cfg.entra, &app.federation.jwks) else {
        return Err(auth("Entra ID tokens are not enabled (--entra-jwks)"));
    };
    let parsed = jwt::parse(token).map_err(auth)?;
    let kid = parsed.require_rs256().map_err(auth)?;
    let key = cache
        .key(kid)
        .map_err(|e| server(format!("Entra keys: {e}")))?
        .ok_or_else(|| auth(jwt::JwtError::UnknownKid(crate::soap::envelope::clip(kid))))?;
    parsed.verify(&key.n, &key.e).map_err(auth)?;
    let rules = jwt::ClaimRules {
        tenants: &cfg.tenants,
        audiences: &cfg.audiences,
        scope: &cfg.scope,
        device_role: cfg.device_role.as_deref(),
    };
    match jwt::check_claims(&parsed.claims, &rules, now).map_err(auth)? {
        jwt::Subject::App { app: a, tid } => {
            tracing::info!(app = %a, %tid, "app-only Entra token accepted (device enrollment)");
            Ok(Principal::Device {
                app: a,
                tenant: tid,
            })
        }
        jwt::Subject::User { upn, tid } => {
            // The same rules as every other UPN: an Entra name that could spell a local user
            // in another way (or hide characters) maps to nobody.
            let upn = crate::upn::parse(&upn).map_err(auth)?;
            match existing_user(app, &upn) {
                Err(EnrollError::Authentication { .. }) if cfg.auto_create_users => {
                    let user = User {
                        upn: upn.clone(),
                        id: crate::owner::new_user_id(),
                        // Not a PHC string: no password ever verifies against it.
                        password_hash: "!entra-no-password".into(),
                        created_at: now,
                        disabled: false,
                    };
                    match app.store.create_user(&user) {
                        Ok(()) => {
                            tracing::info!(%upn, %tid, "user created from an Entra token");
                            Ok(Principal::User(user))
                        }
                        // Created concurrently by the other request of this enrollment.
                        Err(crate::store::StoreError::AlreadyExists { .. }) => {
                            existing_user(app, &upn).map(Principal::User)
                        }
                        Err(e) => Err(server(format!("store: {e}"))),
                    }
                }
                other => other.map(Principal::User),
            }
        }
    }
}
