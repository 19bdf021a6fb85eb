//! Bulk-enrollment provisioning packages: mint (the WCD customizations of
//! [`super::wcd`] with a fresh package secret), list per account, revoke.
//!
//! The store keeps only password *hashes*, so a package cannot carry the account's password.
//! Instead every download mints a fresh random **package secret** for the account, stored
//! argon2id-hashed as an extra credential of that account (kind [`SECRETS`], key
//! `<upn> <package_id>`), and audit-logged with the package id. The secret reads
//! `<package_id>.<random>`, so enrollment finds the one record to check from the secret itself
//! ([`verify_package_secret`]): a wrong password costs at most one extra argon2id run, however
//! many packages exist. Revoking a package deletes its record; `GET /api/v1/users/{upn}` lists
//! the package ids (never secrets).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::wcd;
use super::{audit, blocking, enabled_user, validate_upn, Actor, ServiceError};
use crate::app::App;
use crate::config::paths;
use crate::store::records::Kind;
use crate::store::{is_bulk_account, RecordOp, Store, StoreError};

/// One package secret of a bulk account (argon2id hash only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSecret {
    /// The package id (the GUID of the package's `PackageConfig/ID`).
    pub package_id: String,
    /// The bulk account.
    pub upn: String,
    /// argon2id PHC string of the secret.
    pub secret_hash: String,
    /// Mint time (Unix seconds).
    pub created_at: i64,
    /// The admin token that downloaded it.
    pub created_by: String,
}

/// Package secrets, keyed `<upn> <package_id>` (UPNs hold no spaces, so one account's records
/// are contiguous in key order).
pub const SECRETS: Kind<PackageSecret> = Kind::new("bulk_package_secret");
/// Index: package id → UPN (for revocation by id).
pub const PACKAGE_IDS: Kind<String> = Kind::new("bulk_package_id");

fn secret_key(upn: &str, package_id: &str) -> String {
    format!("{upn} {package_id}")
}

/// A package as `GET /api/v1/users/{upn}` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageView {
    /// Package id.
    pub package_id: String,
    /// Mint time.
    pub created_at: i64,
    /// Who downloaded it.
    pub created_by: String,
}

fn secrets_of(store: &dyn Store, upn: &str) -> Result<Vec<(String, PackageSecret)>, StoreError> {
    let prefix = format!("{upn} ");
    let mut out = Vec::new();
    let mut after = upn.to_string();
    loop {
        let page = SECRETS.list(store.records(), Some(&after), 100)?;
        let full = page.len() == 100;
        for (k, v) in page {
            if !k.starts_with(&prefix) {
                return Ok(out);
            }
            after = k.clone();
            out.push((k, v));
        }
        if !full {
            return Ok(out);
        }
    }
}

/// The packages of `upn` (none for ordinary accounts).
pub fn packages_of(store: &dyn Store, upn: &str) -> Result<Vec<PackageView>, StoreError> {
    Ok(secrets_of(store, upn)?
        .into_iter()
        .map(|(_, s)| PackageView {
            package_id: s.package_id,
            created_at: s.created_at,
            created_by: s.created_by,
        })
        .collect())
}

/// Deletes every package secret of `upn` (when the user is deleted).
pub fn forget_user(store: &dyn Store, upn: &str) -> Result<(), StoreError> {
    let mut ops = Vec::new();
    for (k, s) in secrets_of(store, upn)? {
        ops.push(SECRETS.delete_op(&k));
        ops.push(PACKAGE_IDS.delete_op(&s.package_id));
    }
    if !ops.is_empty() {
        store.records().apply_records(&ops)?;
        tracing::info!(%upn, removed = ops.len() / 2, "bulk package secrets of a deleted user removed");
    }
    Ok(())
}

/// Whether `password` is an unrevoked package secret of the bulk account `upn` (called by the
/// enrollment password check before the account password, outside the guessing lock). Store
/// errors count as "no". The argon2id check runs on a permit of the global password-work bound
/// ([`crate::password_work`]): `Err` when none is free in time.
pub fn verify_package_secret(
    app: &App,
    upn: &str,
    password: &str,
) -> Result<bool, crate::password_work::Busy> {
    if !is_bulk_account(upn) {
        return Ok(false);
    }
    let Some((package_id, rest)) = password.split_once('.') else {
        return Ok(false);
    };
    if package_id.len() != 36 || rest.is_empty() {
        return Ok(false);
    }
    match SECRETS.get(app.store.records(), &secret_key(upn, package_id)) {
        Ok(Some(s)) => {
            let ok =
                app.password_cache
                    .verify(&app.password_work, upn, password, &s.secret_hash)?;
            if ok {
                tracing::info!(%upn, %package_id, "bulk account authenticated with a package secret");
            }
            Ok(ok)
        }
        Ok(None) => {
            tracing::info!(%upn, %package_id, "package secret of an unknown or revoked package");
            Ok(false)
        }
        Err(e) => {
            tracing::error!(%upn, error = %e, "package secret lookup failed");
            Ok(false)
        }
    }
}

/// A minted package: its id and the WCD customizations XML (which carries the secret: shown once).
#[derive(Debug, Clone)]
pub struct Package {
    /// The package id.
    pub package_id: String,
    /// `customizations-<first 8 of the id>.xml`.
    pub file_name: String,
    /// The customizations XML.
    pub xml: String,
}

/// Mints a package for the bulk account `upn` (a credential: admin tokens only).
pub async fn package(app: &Arc<App>, actor: &Actor, upn: &str) -> Result<Package, ServiceError> {
    actor.require_admin("GET /api/v1/bulk-enrollment/package")?;
    let upn = validate_upn(upn)?;
    if !is_bulk_account(&upn) {
        return Err(ServiceError::bad(format!(
            "{upn} is not a bulk-enrollment account (its UPN must start with {})",
            crate::store::BULK_UPN_PREFIX
        )));
    }
    let package_id = wcd::random_guid();
    let secret = format!("{package_id}.{}", crate::clock::random_hex(24));
    let rec = PackageSecret {
        package_id: package_id.clone(),
        upn: upn.clone(),
        secret_hash: String::new(),
        created_at: app.clock.now_unix(),
        created_by: actor.name.clone(),
    };
    let a = app.clone();
    let s = secret.clone();
    blocking(move || {
        enabled_user(&a, &rec.upn, "a package")?;
        let rec = PackageSecret {
            secret_hash: crate::auth::hash_password(&s).map_err(|e| ServiceError::Internal {
                reason: format!("argon2: {e}"),
            })?,
            ..rec
        };
        let ops = [
            SECRETS.expect_absent(&secret_key(&rec.upn, &rec.package_id)),
            PACKAGE_IDS.expect_absent(&rec.package_id),
            SECRETS.put_op(&secret_key(&rec.upn, &rec.package_id), &rec),
            PACKAGE_IDS.put_op(&rec.package_id, &rec.upn),
        ];
        if !a.store.records().apply_records(&ops)? {
            return Err(ServiceError::Internal {
                reason: "package id collision".into(),
            });
        }
        Ok(())
    })
    .await?;
    tracing::info!(%upn, %package_id, "bulk-enrollment package minted");
    audit(
        app,
        actor,
        "bulk.package",
        &upn,
        serde_json::json!({ "package_id": package_id }),
    )
    .await;
    let url = &app.cfg.public_url;
    let short = &package_id[..8];
    let xml = wcd::customizations_xml(&wcd::BulkPackage {
        guid: &package_id,
        name: &format!("winmdm-bulk-{short}"),
        version: "1.0",
        upn: &upn,
        secret: &secret,
        discovery_url: &url.join(paths::DISCOVERY),
        policy_url: &url.join(paths::POLICY),
        enrollment_url: &url.join(paths::ENROLLMENT),
    });
    Ok(Package {
        file_name: format!("customizations-{short}.xml"),
        package_id,
        xml,
    })
}

/// Revokes a package: its secret no longer enrolls.
pub async fn revoke(app: &Arc<App>, actor: &Actor, package_id: &str) -> Result<(), ServiceError> {
    actor.require_admin(&format!(
        "DELETE /api/v1/bulk-enrollment/packages/{package_id}"
    ))?;
    let a = app.clone();
    let id = package_id.to_string();
    let upn = blocking(move || {
        let r = a.store.records();
        for _ in 0..8 {
            let Some(upn) = PACKAGE_IDS.get(r, &id)? else {
                return Ok(None);
            };
            let key = secret_key(&upn, &id);
            let ops = [
                RecordOp::Expect {
                    kind: PACKAGE_IDS.name,
                    key: id.clone(),
                    value: r.get_record(PACKAGE_IDS.name, &id)?,
                },
                SECRETS.delete_op(&key),
                PACKAGE_IDS.delete_op(&id),
            ];
            if r.apply_records(&ops)? {
                return Ok(Some(upn));
            }
        }
        Err(ServiceError::Internal {
            reason: format!("package {id}: too much contention"),
        })
    })
    .await?;
    let Some(upn) = upn else {
        return Err(ServiceError::not_found(format!("package {package_id}")));
    };
    tracing::info!(%upn, %package_id, "bulk-enrollment package revoked");
    audit(
        app,
        actor,
        "bulk.package_revoke",
        &upn,
        serde_json::json!({ "package_id": package_id }),
    )
    .await;
    Ok(())
}
