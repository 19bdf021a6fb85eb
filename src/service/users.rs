//! Users (enrollment accounts): create, list, read with their devices, update, delete; and the
//! audit log.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{audit, blocking, validate_upn, Actor, Page, ServiceError, MAX_PAGE};
use crate::app::App;
use crate::store::{normalize_upn, StoreError, User};

/// A user as shown (never the hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserView {
    /// UPN (lower-case).
    pub upn: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Whether enrollment is refused.
    pub disabled: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            upn: u.upn.clone(),
            created_at: u.created_at,
            disabled: u.disabled,
        }
    }
}

/// A user with what an admin looks for next.
#[derive(Debug, Clone, Serialize)]
pub struct UserDetail {
    /// The user.
    #[serde(flatten)]
    pub user: UserView,
    /// DeviceIDs of the devices this account owns.
    pub devices: Vec<String>,
    /// Bulk-enrollment packages of a bulk account.
    pub bulk_packages: Vec<super::bulk::PackageView>,
    /// Recent wrong passwords (the guessing lock).
    pub password_failures: Option<crate::lockout::Failures>,
}

/// A change to a user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// New password.
    pub password: Option<String>,
    /// Disable (`true`) or enable (`false`).
    pub disabled: Option<bool>,
}

fn check_password(pw: &str) -> Result<(), ServiceError> {
    if pw.is_empty() || pw.len() > 1024 {
        return Err(ServiceError::bad("password must be 1-1024 bytes"));
    }
    Ok(())
}

/// Creates a user with a password.
pub async fn create(
    app: &Arc<App>,
    actor: &Actor,
    upn: &str,
    password: String,
) -> Result<UserView, ServiceError> {
    actor.require_admin("POST /api/v1/users")?;
    let upn = validate_upn(upn)?;
    check_password(&password)?;
    let a = app.clone();
    let user = blocking(move || {
        let app = a;
        if app.store.get_user(&upn)?.is_some() {
            return Err(ServiceError::Conflict {
                what: format!("user {upn}"),
            });
        }
        let hash = crate::auth::hash_password(&password).map_err(|e| ServiceError::Internal {
            reason: format!("argon2: {e}"),
        })?;
        let user = User {
            upn,
            id: crate::owner::new_user_id(),
            password_hash: hash,
            created_at: app.clock.now_unix(),
            disabled: false,
        };
        app.store.create_user(&user).map_err(|e| match e {
            StoreError::AlreadyExists { .. } => ServiceError::Conflict {
                what: format!("user {}", user.upn),
            },
            e => e.into(),
        })?;
        tracing::info!(upn = %user.upn, "user created");
        Ok(user)
    })
    .await?;
    audit(app, actor, "user.create", &user.upn, serde_json::json!({})).await;
    Ok(UserView::from(&user))
}

/// One page of users, by UPN; `search` keeps those whose UPN contains it.
pub async fn list(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
    search: Option<String>,
) -> Result<Page<UserView>, ServiceError> {
    let a = app.clone();
    let users = blocking(move || Ok(a.store.list_users()?)).await?;
    let search = search.map(|s| s.to_lowercase());
    let mut views: Vec<UserView> = users
        .iter()
        .filter(|u| cursor.as_deref().is_none_or(|c| u.upn.as_str() > c))
        .filter(|u| search.as_deref().is_none_or(|s| u.upn.contains(s)))
        .take(limit + 1)
        .map(UserView::from)
        .collect();
    let next = if views.len() > limit {
        views.truncate(limit);
        views.last().map(|u| u.upn.clone())
    } else {
        None
    };
    Ok(Page { items: views, next })
}

/// A user, its devices, bulk packages and recent password failures.
pub async fn get(app: &Arc<App>, upn: &str) -> Result<UserDetail, ServiceError> {
    let upn = normalize_upn(upn);
    let a = app.clone();
    blocking(move || {
        let app = a;
        let Some(user) = app.store.get_user(&upn)? else {
            return Err(ServiceError::not_found(format!("user {upn}")));
        };
        // Every device record this account owns (a scan: fine at this scale). Devices of a
        // deleted account with the same UPN are not this account's.
        let mut devices = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = app.store.list_devices(after.as_deref(), MAX_PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.device_id.clone());
            devices.extend(
                page.into_iter()
                    .filter(|d| crate::owner::owned_by(d, &user))
                    .map(|d| d.device_id),
            );
        }
        Ok(UserDetail {
            user: UserView::from(&user),
            devices,
            bulk_packages: super::bulk::packages_of(app.store.as_ref(), &upn)?,
            password_failures: crate::lockout::failures(&app, &upn)?,
        })
    })
    .await
}

/// Sets a user's password and/or disables or enables it.
pub async fn update(
    app: &Arc<App>,
    actor: &Actor,
    upn: &str,
    p: UserPatch,
) -> Result<UserView, ServiceError> {
    actor.require_admin(&format!("PATCH /api/v1/users/{upn}"))?;
    let upn = normalize_upn(upn);
    if p.password.is_none() && p.disabled.is_none() {
        return Err(ServiceError::bad("give password and/or disabled"));
    }
    if let Some(pw) = &p.password {
        check_password(pw)?;
    }
    let detail = serde_json::json!({
        "password_changed": p.password.is_some(),
        "disabled": p.disabled,
    });
    let a = app.clone();
    let user = blocking(move || {
        let not_found = || ServiceError::not_found(format!("user {upn}"));
        let mut user = a.store.get_user(&upn)?.ok_or_else(not_found)?;
        if let Some(pw) = &p.password {
            user.password_hash =
                crate::auth::hash_password(pw).map_err(|e| ServiceError::Internal {
                    reason: format!("argon2: {e}"),
                })?;
        }
        if let Some(d) = p.disabled {
            user.disabled = d;
        }
        if !a.store.update_user(&user)? {
            return Err(not_found());
        }
        // A new password, or re-enabling the user, ends a lock from wrong passwords.
        if p.password.is_some() || p.disabled == Some(false) {
            crate::lockout::clear(&a, &upn)?;
        }
        tracing::info!(upn = %user.upn, "user updated");
        Ok(user)
    })
    .await?;
    audit(app, actor, "user.update", &user.upn, detail).await;
    Ok(UserView::from(&user))
}

/// Deletes a user (its bulk package secrets and password-failure record go with it).
pub async fn delete(app: &Arc<App>, actor: &Actor, upn: &str) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/users/{upn}"))?;
    let upn = normalize_upn(upn);
    let existed = blocking({
        let (upn, app) = (upn.clone(), app.clone());
        move || {
            let existed = app.store.delete_user(&upn)?;
            // A later user of the same UPN must not inherit the old account's package secrets.
            super::bulk::forget_user(app.store.as_ref(), &upn)?;
            crate::lockout::clear(&app, &upn)?;
            Ok(existed)
        }
    })
    .await?;
    if !existed {
        return Err(ServiceError::not_found(format!("user {upn}")));
    }
    tracing::info!(%upn, "user deleted");
    audit(app, actor, "user.delete", &upn, serde_json::json!({})).await;
    Ok(())
}

/// One page of the audit log.
#[derive(Debug, Serialize, Deserialize)]
pub struct AuditPage {
    /// Entries, oldest first.
    pub entries: Vec<crate::store::AuditEntry>,
    /// Cursor of the next page, `null` at the end.
    pub next: Option<String>,
}

/// One page of the audit log after entry `after`.
pub async fn audit_log(
    app: &Arc<App>,
    after: Option<u64>,
    limit: usize,
) -> Result<AuditPage, ServiceError> {
    let a = app.clone();
    blocking(move || {
        let mut entries = a.store.list_audit(after, limit + 1)?;
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| e.id.to_string())
        } else {
            None
        };
        Ok(AuditPage { entries, next })
    })
    .await
}
