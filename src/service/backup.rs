//! The rules of an online backup (`POST /api/v1/backup`, [`crate::backup`] writes the archive):
//! admin tokens only (a read-only token would walk away with the CA key), a passphrase of 12 to
//! 1024 characters if one is given, one backup at a time per node, and an audit entry.

use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{audit, Actor, ServiceError};
use crate::app::App;

/// Shortest passphrase accepted.
pub const MIN_PASSPHRASE: usize = 12;

/// Checks a passphrase's length (in characters).
pub fn check_passphrase(p: &str) -> Result<(), String> {
    let n = p.chars().count();
    if !(MIN_PASSPHRASE..=1024).contains(&n) {
        return Err(format!(
            "passphrase: {MIN_PASSPHRASE} to 1024 characters (got {n})"
        ));
    }
    Ok(())
}

fn running() -> Arc<Semaphore> {
    static ONE: OnceLock<Arc<Semaphore>> = OnceLock::new();
    ONE.get_or_init(|| Arc::new(Semaphore::new(1))).clone()
}

/// May `actor` start a backup now? The permit is held until the archive is written.
pub fn begin(
    actor: &Actor,
    passphrase: Option<&str>,
) -> Result<OwnedSemaphorePermit, ServiceError> {
    actor.require_admin("take a backup")?;
    if let Some(p) = passphrase {
        check_passphrase(p).map_err(ServiceError::bad)?;
    }
    running()
        .try_acquire_owned()
        .map_err(|_| ServiceError::ConflictState {
            reason: "a backup is already running on this node".into(),
        })
}

/// Records the backup in the audit log.
pub async fn audited(app: &Arc<App>, actor: &Actor, encrypted: bool, store_included: bool) {
    audit(
        app,
        actor,
        "backup",
        "store",
        serde_json::json!({"encrypted": encrypted, "store_included": store_included}),
    )
    .await;
}
