//! `winmdm migrate --from <data-dir> --to postgres://…`: copies every table of an embedded
//! store into an empty PostgreSQL database and verifies the row counts.
//!
//! The copy is written over [`KvRead`] (raw key/value pages in key order), so it does not care
//! which embedded backend the source is; rows go in through the PostgreSQL store's own
//! transaction ([`PgStore::put_raw`]), which maps each key onto the table's columns. The
//! database's id sequence is moved above the largest copied id (audit entries, queue
//! positions), so new ids keep increasing. The server must be stopped while it runs.

use std::path::Path;

use crate::store::pg::{PgOptions, PgStore};
use crate::store::tx::{decode, KvRead, Table};
use crate::store::{CommandRecord, StoreError};

/// Rows per transaction.
pub const PAGE: usize = 500;

/// What was copied: rows per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// (table, rows), every table in [`Table::ALL`] order.
    pub tables: Vec<(Table, u64)>,
    /// The largest id (audit entry or queue position) copied.
    pub max_id: u64,
}

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
    /// After the copy a table's count differs from the source's.
    #[error("verification failed: table {table} has {target} rows in PostgreSQL, {source_rows} in the source")]
    Mismatch {
        /// The table.
        table: &'static str,
        /// Rows read from the source.
        source_rows: u64,
        /// Rows counted in the target.
        target: u64,
    },
}

fn be_u64(b: &[u8]) -> Option<u64> {
    b.try_into().ok().map(u64::from_be_bytes)
}

/// Copies every table of `src` into `dst` (which must be empty) and verifies the counts.
pub fn copy_store(src: &dyn KvRead, dst: &PgStore) -> Result<Copied, MigrateError> {
    if !dst.is_empty()? {
        return Err(MigrateError::NotEmpty);
    }
    let mut tables = Vec::new();
    let mut max_id = 0u64;
    for t in Table::ALL {
        let mut n = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = src.scan_after(t, after.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            for (k, v) in &page {
                let id = match t {
                    Table::Audit => be_u64(k),
                    Table::Queue => k
                        .iter()
                        .position(|c| *c == 0)
                        .and_then(|i| be_u64(&k[i + 1..])),
                    Table::Commands => Some(decode::<CommandRecord>("command", v)?.seq),
                    _ => None,
                };
                max_id = max_id.max(id.unwrap_or(0));
            }
            dst.put_raw(t, &page)?;
            n += page.len() as u64;
            if page.len() < PAGE {
                break;
            }
        }
        tables.push((t, n));
    }
    dst.bump_ids_above(max_id)?;
    for (t, n) in &tables {
        let target = dst.count(*t)?;
        if target != *n {
            return Err(MigrateError::Mismatch {
                table: t.name(),
                source_rows: *n,
                target,
            });
        }
    }
    Ok(Copied { tables, max_id })
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
