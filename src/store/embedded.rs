//! Opening the embedded store of a data directory, and the one-time move from sled.
//!
//! Versions before redb kept their store in `<data-dir>/db/` (sled 0.34, whose `flush()` is not
//! an `fsync`). The first start of this version copies every table into `<data-dir>/store.redb`:
//! it writes `store.redb.migrating`, checks that every table holds as many records as in sled,
//! makes it durable, renames it to `store.redb`, and only then renames `db/` to
//! `db.sled-migrated/` (kept for the admin to delete). A crash at any step leaves either the
//! untouched sled store (the copy starts again) or a complete `store.redb`.

use std::path::{Path, PathBuf};

use super::redb::{RedbStore, FILE_NAME};
use super::sled::SledStore;
use super::tx::Copied;
use super::StoreError;

/// The sled directory of older versions.
pub const SLED_DIR: &str = "db";
/// Where the sled directory goes once migrated.
pub const SLED_MIGRATED_DIR: &str = "db.sled-migrated";
const MIGRATING: &str = "store.redb.migrating";

/// Records copied per transaction.
const PAGE: usize = 2_000;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        reason: e.to_string(),
    }
}

/// Opens `<data_dir>/store.redb`, migrating an older sled store first if there is one.
pub fn open(data_dir: &Path, cache_bytes: u64) -> Result<RedbStore, StoreError> {
    crate::fsio::create_dir(data_dir).map_err(backend)?;
    let sled_dir = data_dir.join(SLED_DIR);
    let target = data_dir.join(FILE_NAME);
    if sled_dir.is_dir() {
        if target.exists() {
            // A migration finished but the old directory was not renamed yet.
            retire_sled(data_dir)?;
        } else {
            let m = migrate_sled(data_dir, cache_bytes)?;
            let total: u64 = m.tables.iter().map(|(_, n)| n).sum();
            let tables: Vec<(&str, u64)> = m.tables.iter().map(|(t, n)| (t.name(), *n)).collect();
            tracing::info!(
                records = total,
                tables = ?tables,
                from = %sled_dir.display(),
                to = %target.display(),
                "store: migrated the sled store to redb; the old directory is kept as {SLED_MIGRATED_DIR}"
            );
        }
    }
    RedbStore::open_with_cache(data_dir, cache_bytes)
}

fn retire_sled(data_dir: &Path) -> Result<(), StoreError> {
    let to: PathBuf = data_dir.join(SLED_MIGRATED_DIR);
    if to.exists() {
        return Err(backend(format!(
            "both {} and {} exist next to {FILE_NAME}: move one away",
            data_dir.join(SLED_DIR).display(),
            to.display()
        )));
    }
    std::fs::rename(data_dir.join(SLED_DIR), &to).map_err(backend)?;
    crate::fsio::sync_dir(data_dir).map_err(backend)
}

/// Copies the sled store of `data_dir` into a new `store.redb` (see the module docs).
pub fn migrate_sled(data_dir: &Path, cache_bytes: u64) -> Result<Copied, StoreError> {
    let staging = data_dir.join("store.migrating");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(backend)?;
    }
    let from = SledStore::open_with_cache(&data_dir.join(SLED_DIR), cache_bytes)?;
    let to = RedbStore::open_with_cache(&staging, cache_bytes)?;
    let m = super::tx::copy_all(&from, &to, PAGE).map_err(|e| match e {
        super::tx::CopyError::Store(e) => e,
        e => backend(format!("migration check failed: {e}")),
    })?;
    drop(to);
    drop(from);
    // staging/store.redb → data_dir/store.redb, through a name that says it is not finished.
    let tmp = data_dir.join(MIGRATING);
    std::fs::rename(staging.join(FILE_NAME), &tmp).map_err(backend)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(backend)?;
    std::fs::rename(&tmp, data_dir.join(FILE_NAME)).map_err(backend)?;
    crate::fsio::sync_dir(data_dir).map_err(backend)?;
    let _ = std::fs::remove_dir_all(&staging);
    retire_sled(data_dir)?;
    Ok(m)
}
