//! `winmdm migrate --from <data-dir> --to postgres://…`: copies every table of an embedded
//! store into an empty PostgreSQL database and verifies the row counts.
//!
//! The copy is written over [`KvRead`] (raw key/value pages in key order), so it does not care
//! which embedded backend the source is; rows go in through the PostgreSQL store's own
//! transaction (its [`crate::store::tx::RawImport`]), which maps each key onto the table's columns. The
//! database's id sequence is moved above the largest copied id (audit entries, queue
//! positions), so new ids keep increasing. The server must be stopped while it runs.

use std::path::Path;

use crate::store::pg::{PgOptions, PgStore};
pub use crate::store::tx::Copied;
use crate::store::tx::{copy_all, CopyError, KvRead};
use crate::store::StoreError;

/// Rows per transaction.
pub const PAGE: usize = 500;

/// Why the migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The target holds data already.
    #[error("the target database is not empty: migrate only into a new, empty database")]
    NotEmpty,
    /// The source has no store.
    #[error("no store in {0} (expected the data directory of a stopped winmdm)")]
    NoSource(String),
    /// Reading or writing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The copy failed, or a table's count differs from the source's after it.
    #[error(transparent)]
    Copy(#[from] CopyError),
}

/// Copies every table of `src` into `dst` (which must be empty) and verifies the counts.
pub fn copy_store(src: &dyn KvRead, dst: &PgStore) -> Result<Copied, MigrateError> {
    if !dst.is_empty()? {
        return Err(MigrateError::NotEmpty);
    }
    Ok(copy_all(src, dst, PAGE)?)
}

/// `winmdm migrate`: opens the embedded store of `data_dir` (`<data-dir>/store.redb`; an older
/// sled `<data-dir>/db` is first moved to it, as a start would) and the database at `url`,
/// copies, verifies, and writes a per-table report to `out`.
pub fn run(
    data_dir: &Path,
    url: &str,
    out: &mut dyn std::io::Write,
) -> Result<Copied, MigrateError> {
    let has_store = data_dir.join(crate::store::redb::FILE_NAME).is_file()
        || data_dir.join(crate::store::embedded::SLED_DIR).is_dir();
    if !has_store {
        return Err(MigrateError::NoSource(data_dir.display().to_string()));
    }
    let src = crate::store::embedded::open(data_dir, crate::store::redb::DEFAULT_CACHE_BYTES)?;
    let dst = PgStore::connect(url, &PgOptions::default())?;
    let copied = copy_store(&src, &dst)?;
    let _ = writeln!(
        out,
        "copied {} into {}:",
        data_dir.display(),
        crate::store::pg::redact_url(url)
    );
    for (t, n) in &copied.tables {
        let _ = writeln!(out, "  {:<10} {n:>10} rows (verified)", t.name());
    }
    let _ = writeln!(out, "next id above {}", copied.max_id);
    Ok(copied)
}
