//! Who owns a device (issue 13): an enrollment belongs to the principal whose credential made it,
//! named by a server-assigned id, never by a value the device or the user sends.
//!
//! * [`of`] maps an authenticated [`Principal`] to the [`Owner`] stored on the device record:
//!   a user account (password, federated login page, Entra user token, `windows-bulkenroll`
//!   account with a package secret) by its immutable [`User::id`]; an app-only Entra token by
//!   (tenant, application).
//! * The rule itself ([`crate::store::may_reenroll`]) is applied inside the enrollment
//!   transaction (`store::tx::record_enrollment`): only the same owner enrolls a DeviceID again;
//!   another principal gets `s:Authorization` until an admin deletes the device or transfers it
//!   ([`transfer`]). A HWDevID only ever replaces records of the same owner.
//! * [`status`] says whether the owner still exists: a deleted user's devices stay managed but are
//!   shown `orphaned`; an account created later with the same UPN has another id, so it owns none
//!   of them.
//! * [`migrate`] gives ids to accounts created before ids existed and owners to their devices,
//!   once at start-up.

use serde::{Deserialize, Serialize};

use crate::federation::Principal;
use crate::store::records::Kind;
use crate::store::{Device, DeviceState, Owner, Store, StoreError, User};

/// A fresh [`User::id`]: 128 random bits.
pub fn new_user_id() -> String {
    crate::clock::random_hex(16)
}

/// The owner an enrollment by `p` records.
pub fn of(p: &Principal) -> Owner {
    match p {
        Principal::User(u) => Owner::User {
            user_id: u.id.clone(),
        },
        Principal::Device { app, tenant } => Owner::EntraApp {
            tenant: tenant.clone(),
            app: app.clone(),
        },
    }
}

/// Whether a device's owner still exists, as the admin API shows it (`owner_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerStatus {
    /// The owning account exists and is enabled.
    Active,
    /// The owning account exists but is disabled: the device stays managed.
    Disabled,
    /// The owning account was deleted (or never known): the device stays managed, nobody can
    /// enroll its DeviceID again until an admin transfers or deletes it.
    Orphaned,
    /// A device-only enrollment (Entra application): no user.
    DeviceOnly,
}

/// The [`OwnerStatus`] of `d`, looking its owner up in `store`.
pub fn status(store: &dyn Store, d: &Device) -> Result<OwnerStatus, StoreError> {
    match &d.owner {
        Some(Owner::EntraApp { .. }) => Ok(OwnerStatus::DeviceOnly),
        None if d.upn.is_none() => Ok(OwnerStatus::DeviceOnly),
        None => Ok(OwnerStatus::Orphaned),
        Some(Owner::User { user_id }) => {
            let Some(upn) = &d.upn else {
                return Ok(OwnerStatus::Orphaned);
            };
            Ok(match store.get_user(upn)? {
                Some(u) if u.id == *user_id && !u.id.is_empty() => {
                    if u.disabled {
                        OwnerStatus::Disabled
                    } else {
                        OwnerStatus::Active
                    }
                }
                _ => OwnerStatus::Orphaned,
            })
        }
    }
}

/// Whether `d` is owned by `user` (the account itself, not merely one with the same UPN).
pub fn owned_by(d: &Device, user: &User) -> bool {
    !user.id.is_empty() && matches!(&d.owner, Some(Owner::User { user_id }) if *user_id == user.id)
}

/// Hands `d` to `user` (an admin's decision): the owner, the UPN and the bulk flag follow the
/// new account, a bulk assignment is dropped. The device keeps its certificate and queue; the new
/// owner may enroll the DeviceID again (and the old one no longer may).
pub fn transfer(d: &mut Device, user: &User) {
    d.owner = Some(Owner::User {
        user_id: user.id.clone(),
    });
    d.upn = Some(user.upn.clone());
    d.bulk = crate::store::is_bulk_account(&user.upn);
    d.assigned_user = None;
}

/// Runs [`migrate`] once per store: a marker record says it ran, so later starts do not page
/// through every device again.
pub fn migrate_once(store: &dyn Store, now: i64) -> Result<(), StoreError> {
    let done: Kind<i64> = Kind::new("store_migration");
    if done.get(store.records(), "owner-v1")?.is_some() {
        return Ok(());
    }
    migrate(store)?;
    done.put(store.records(), "owner-v1", &now)
}

/// Start-up migration of stores written before owners existed: every account without an id gets
/// one, and every device without an owner whose UPN names an existing account is given to that
/// account (its bulk assignment gets the assignee's id), and each account without a per-user
/// device index gets one. Returns (accounts, devices) updated.
pub fn migrate(store: &dyn Store) -> Result<(usize, usize), StoreError> {
    let mut users = 0;
    for mut u in store.list_users()? {
        if u.id.is_empty() {
            u.id = new_user_id();
            if store.update_user(&u)? {
                users += 1;
            }
        }
    }
    let mut devices = 0;
    let mut owned: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_devices(after.as_deref(), 500)?;
        let Some(last) = page.last() else { break };
        after = Some(last.device_id.clone());
        for mut d in page {
            let mut changed = false;
            if d.owner.is_none() {
                if let Some(u) = d.upn.as_deref().map(|u| store.get_user(u)).transpose()? {
                    if let Some(u) = u.filter(|u| !u.id.is_empty()) {
                        d.owner = Some(Owner::User { user_id: u.id });
                        changed = true;
                    }
                }
            }
            if let Some(a) = d.assigned_user.as_mut().filter(|a| a.user_id.is_empty()) {
                if let Some(u) = store.get_user(&a.upn)?.filter(|u| !u.id.is_empty()) {
                    a.user_id = u.id;
                    changed = true;
                }
            }
            if changed {
                store.put_device(&d)?;
                devices += 1;
            }
            if let (Some(Owner::User { user_id }), false, DeviceState::Enrolled) =
                (&d.owner, d.bulk, d.state)
            {
                owned
                    .entry(user_id.clone())
                    .or_default()
                    .push(d.device_id.clone());
            }
        }
    }
    // The per-user index `--max-devices-per-user` counts with, for stores written before it.
    let index: Kind<Vec<String>> = Kind::new(crate::store::tx::OWNED_DEVICES);
    for (user_id, ids) in owned {
        index.insert_new(store.records(), &user_id, &ids)?;
    }
    if users + devices > 0 {
        tracing::info!(
            users,
            devices,
            "owner migration: ids given to older accounts, owners to their devices"
        );
    }
    Ok((users, devices))
}
