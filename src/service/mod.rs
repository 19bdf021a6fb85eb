//! The admin service layer: every admin operation as an HTTP-free function.
//!
//! The JSON API ([`crate::admin`]) and the web console ([`crate::ui`]) are two thin adapters over
//! this module (nanomdm's `api/` under `http/api/`). A service function takes the [`App`], the
//! acting token ([`Actor`]) and typed inputs, and returns a typed output or one [`ServiceError`].
//! It owns the rules an adapter must not be able to forget:
//!
//! * **role checks**: every function that changes something calls [`Actor::require_admin`], so a
//!   read-only token is refused here whatever the adapter shows or routes;
//! * **the audit log**: every change is appended ([`audit`]) with the token that acted;
//! * **validation** of the typed inputs (UPN syntax, password length, profile rules...).
//!
//! What it must not do: read a request, build a response, or know a status code. Each adapter
//! maps [`ServiceError`] in exactly one place (`admin::ApiError::status`, `ui::error_page`).

use std::sync::Arc;

use crate::app::App;
use crate::store::StoreError;

pub mod access;
pub mod apps;
pub mod autopilot;
pub mod backup;
pub mod bulk;
pub mod dashboard;
pub mod devices;
pub mod groups;
pub mod invitations;
mod mail;
pub mod tenant;
pub mod tokens;
pub mod traces;
pub mod users;
pub mod wcd;
pub mod webhook;

pub use access::{Actor, TokenRole};

/// Default page size of list operations.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page a caller may ask for.
pub const MAX_PAGE: usize = 1000;

/// A service failure. Adapters map it to their wire form in one place each.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Missing or wrong credential.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A valid token whose role does not allow this operation.
    #[error("{reason}")]
    Forbidden {
        /// Why.
        reason: String,
    },
    /// Unknown record.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The record exists already.
    #[error("{what} already exists")]
    Conflict {
        /// What.
        what: String,
    },
    /// The request conflicts with the record's current state (the reason as given).
    #[error("{reason}")]
    ConflictState {
        /// Why.
        reason: String,
    },
    /// The input is malformed.
    #[error("{reason}")]
    BadRequest {
        /// Why.
        reason: String,
    },
    /// One field breaks a rule (the field is named).
    #[error("{reason}")]
    Invalid {
        /// The input field.
        field: String,
        /// Why, for the admin.
        reason: String,
    },
    /// The operation conflicts with the current state (message as is).
    #[error("{reason}")]
    Refused {
        /// Why, for the admin.
        reason: String,
    },
    /// The store cannot be reached now: try again.
    #[error("the store is unavailable; try again later")]
    Unavailable {
        /// Logged, never shown.
        reason: String,
    },
    /// The server failed.
    #[error("internal error")]
    Internal {
        /// Logged, never shown.
        reason: String,
    },
}

impl ServiceError {
    /// A [`ServiceError::BadRequest`].
    pub fn bad(reason: impl Into<String>) -> ServiceError {
        ServiceError::BadRequest {
            reason: reason.into(),
        }
    }

    /// A [`ServiceError::NotFound`].
    pub fn not_found(what: impl Into<String>) -> ServiceError {
        ServiceError::NotFound { what: what.into() }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> ServiceError {
        match e {
            StoreError::AlreadyExists { what } => ServiceError::Conflict { what: what.into() },
            StoreError::Unavailable { reason } => ServiceError::Unavailable { reason },
            e => ServiceError::Internal {
                reason: e.to_string(),
            },
        }
    }
}

impl From<crate::mdm::commands::CommandError> for ServiceError {
    fn from(e: crate::mdm::commands::CommandError) -> ServiceError {
        use crate::mdm::commands::CommandError as C;
        match e {
            C::Invalid { reason } => ServiceError::BadRequest { reason },
            C::UnknownDevice { device_id } => ServiceError::NotFound {
                what: format!("device {device_id}"),
            },
            C::NotEnrolled { device_id } => ServiceError::Conflict {
                what: format!("device {device_id} is not enrolled; a command"),
            },
            C::Store(e) => e.into(),
        }
    }
}

impl From<crate::groups::GroupError> for ServiceError {
    fn from(e: crate::groups::GroupError) -> ServiceError {
        use crate::groups::GroupError;
        match e {
            GroupError::Invalid(reason) => ServiceError::BadRequest { reason },
            GroupError::InvalidSetting { index, reason } => ServiceError::Invalid {
                field: format!("settings[{index}]"),
                reason: format!("settings[{index}]: {reason}"),
            },
            GroupError::Query(q) => ServiceError::BadRequest {
                reason: q.to_string(),
            },
            GroupError::NotFound(what) => ServiceError::NotFound { what },
            GroupError::Conflict(reason) => ServiceError::ConflictState { reason },
            GroupError::Store(e) => e.into(),
        }
    }
}

/// One page of a list: the items and the cursor of the next page (`None` at the end).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page.
    pub next: Option<String>,
}

/// Runs store work off the async workers (inside the caller's span, so its log lines name the
/// actor and trace id).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    crate::wait::on_blocking_pool(f)
        .await
        .map_err(|e| ServiceError::Internal {
            reason: e.to_string(),
        })?
}

/// Appends one entry to the audit log after a successful change, naming the acting token (a
/// failure to do so is logged; the change stands).
pub async fn audit(
    app: &Arc<App>,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) {
    let entry = crate::store::AuditEntry {
        id: 0,
        at: app.clock.now_unix(),
        actor: actor.name.clone(),
        action: action.into(),
        target: target.into(),
        detail,
    };
    let a = app.clone();
    let r = blocking(move || Ok(a.store.append_audit(entry)?)).await;
    if let Err(e) = r {
        tracing::error!(error = %e, action, target, "audit entry not written");
    }
}

/// Checks and normalises a UPN.
pub fn validate_upn(upn: &str) -> Result<String, ServiceError> {
    crate::upn::parse(upn).map_err(|e| {
        tracing::warn!(upn = %crate::soap::envelope::clip(upn), error = %e, "admin request refused: bad UPN");
        ServiceError::BadRequest {
            reason: format!("upn: {}", e.0),
        }
    })
}

/// The user `upn`, which must exist (404) and be enabled (409: nothing is made `for_what`, e.g.
/// "an invitation"). Blocking: call inside [`blocking`].
pub(crate) fn enabled_user(
    app: &App,
    upn: &str,
    for_what: &str,
) -> Result<crate::store::User, ServiceError> {
    let user = app
        .store
        .get_user(upn)?
        .ok_or_else(|| ServiceError::not_found(format!("user {upn}")))?;
    if user.disabled {
        return Err(ServiceError::Conflict {
            what: format!("user {upn} is disabled; {for_what} for it"),
        });
    }
    Ok(user)
}
