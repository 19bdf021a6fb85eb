//! Backups: one archive holding a consistent snapshot of the store and the data directory's key
//! files, and the restore that turns it back into a data directory.
//!
//! # Archive format (version 1)
//!
//! A POSIX tar file whose entries come in this order:
//! * `store/<table>/<n>.kv`: the raw records of every table ([`chunk`]), read from one
//!   snapshot of the store ([`crate::store::Snapshots`]): a single redb read transaction, so the
//!   archive is consistent while the server keeps writing. Absent for PostgreSQL, which is
//!   backed up with its own tools (`pg_dump`), see the README.
//! * `keys/<path>`: every other file of the data directory (CA and TLS keys and certificates,
//!   admin token, login-token key…), or, with a passphrase, one `keys.sealed` entry holding them
//!   as a tar sealed with AES-256-GCM under an argon2id key ([`crypt`]).
//! * `manifest.json`, **last**: format version, creation time, record counts per table, largest
//!   id, the SHA-256 of every other entry and the sealing parameters. A truncated archive has no
//!   manifest and is refused as a whole; a changed byte fails its entry's digest.
//!
//! Restoring checks everything before the target directory gets a single file: the records go
//! into a staging store, the keys are opened and checked, the counts compared; only then are
//! files moved into place (mode 0600 in a 0700 directory, each made durable).

pub mod chunk;
pub mod crypt;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::tx::{copy_all, CopyError, KvRead, RawImport, Table};
use crate::store::StoreError;

/// `format` of the manifest.
pub const FORMAT: &str = "winmdm-backup";
/// Version written.
pub const VERSION: u32 = 1;
/// Name of the manifest entry.
pub const MANIFEST: &str = "manifest.json";
const SEALED: &str = "keys.sealed";
/// Largest manifest accepted.
const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
/// Bound on the key files: count and total size (they are a few kilobytes in practice).
pub const MAX_KEY_FILES: usize = 256;
/// See [`MAX_KEY_FILES`].
pub const MAX_KEY_BYTES: u64 = 16 * 1024 * 1024;
/// Records read from the snapshot per page.
const PAGE: usize = 2_000;

/// Entries of the data directory that are the store or its by-products, not key files.
const NOT_KEYS: &[&str] = &[
    crate::store::redb::FILE_NAME,
    "store.redb.migrating",
    "store.migrating",
    crate::store::embedded::SLED_DIR,
    crate::store::embedded::SLED_MIGRATED_DIR,
    STAGING,
];
const STAGING: &str = ".restore-staging";

/// What an archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// Unix seconds when the snapshot was taken.
    pub created_at: i64,
    /// The winmdm version that wrote it.
    pub winmdm_version: String,
    /// The store part, or `None` when the store was not included (PostgreSQL).
    pub store: Option<StorePart>,
    /// Key files, relative to the data directory.
    pub key_files: Vec<String>,
    /// How the key files were sealed, when a passphrase was given.
    pub sealed: Option<crypt::Sealed>,
    /// SHA-256 (hex) of every other entry, by entry name.
    pub sha256: BTreeMap<String, String>,
}

/// The store part of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorePart {
    /// Records per table (every table, zero included).
    pub tables: BTreeMap<String, u64>,
    /// The largest id (audit entry, queue position) in the snapshot.
    pub max_id: u64,
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading the store, or writing the staging store, failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The archive is not a complete, unaltered winmdm backup.
    #[error("not a valid backup: {0}")]
    Invalid(String),
    /// Key sealing or opening failed.
    #[error(transparent)]
    Crypt(#[from] crypt::CryptError),
    /// The key files were sealed and no passphrase was given.
    #[error("the key files are encrypted: give the passphrase (--passphrase-file)")]
    NeedPassphrase,
    /// The target directory holds files already.
    #[error("{0} is not empty: restore only into a new or empty directory")]
    NotEmpty(String),
    /// The data directory holds more than a data directory should.
    #[error("{0}")]
    TooLarge(String),
}

fn io(what: &str, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io(format!("{what}: {e}"))
}

fn invalid(what: impl Into<String>) -> BackupError {
    BackupError::Invalid(what.into())
}

fn sha256_hex(b: &[u8]) -> String {
    crate::clock::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}

fn table_by_name(name: &str) -> Option<Table> {
    Table::ALL.into_iter().find(|t| t.name() == name)
}

/// Key files of `data_dir`: every regular file outside the store, relative paths in order.
pub fn key_files(data_dir: &Path) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut Vec<(String, Vec<u8>)>,
        total: &mut u64,
    ) -> Result<(), BackupError> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| io(&format!("reading {}", dir.display()), e))?
            .collect::<Result<_, _>>()
            .map_err(|e| io(&format!("reading {}", dir.display()), e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let name = e.file_name().to_string_lossy().into_owned();
            if dir == root && (NOT_KEYS.contains(&name.as_str()) || name.starts_with(".backup")) {
                continue;
            }
            let ty = e
                .file_type()
                .map_err(|e| io(&format!("reading {}", path.display()), e))?;
            if ty.is_dir() {
                walk(root, &path, out, total)?;
            } else if ty.is_file() {
                let rel = rel
                    .to_str()
                    .ok_or_else(|| BackupError::Io(format!("{} is not UTF-8", rel.display())))?;
                let bytes = std::fs::read(&path)
                    .map_err(|e| io(&format!("reading {}", path.display()), e))?;
                *total += bytes.len() as u64;
                if out.len() >= MAX_KEY_FILES || *total > MAX_KEY_BYTES {
                    return Err(BackupError::TooLarge(format!(
                        "the data directory {} holds more than {MAX_KEY_FILES} files or {MAX_KEY_BYTES} bytes besides the store: move what is not winmdm's out of it",
                        root.display()
                    )));
                }
                out.push((rel.to_string(), bytes));
            } else {
                tracing::warn!(path = %path.display(), "backup: skipping what is neither a file nor a directory");
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(data_dir, data_dir, &mut out, &mut 0)?;
    Ok(out)
}

/// A relative path from an archive that stays inside the directory it is restored into.
fn safe_rel(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty() && p.len() <= 512).then_some(out)
}

fn header(size: u64, mtime: i64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime.max(0) as u64);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

struct Out<W: Write> {
    tar: tar::Builder<W>,
    sha: BTreeMap<String, String>,
    now: i64,
}

impl<W: Write> Out<W> {
    fn entry(&mut self, name: &str, data: &[u8]) -> Result<(), BackupError> {
        let mut h = header(data.len() as u64, self.now);
        self.tar
            .append_data(&mut h, name, data)
            .map_err(|e| io("writing the archive", e))?;
        self.sha.insert(name.to_string(), sha256_hex(data));
        Ok(())
    }
}

/// Options of [`write`].
#[derive(Default)]
pub struct WriteOptions {
    /// Seal the key files under this passphrase.
    pub passphrase: Option<String>,
}

impl std::fmt::Debug for WriteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOptions")
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Writes a backup of `snapshot` (the store as of one instant, or `None` for a store backed up
/// by its own tools) and of `data_dir`'s key files to `out`.
pub fn write(
    snapshot: Option<&dyn KvRead>,
    data_dir: &Path,
    now: i64,
    opts: &WriteOptions,
    out: impl Write,
) -> Result<Manifest, BackupError> {
    let mut o = Out {
        tar: tar::Builder::new(out),
        sha: BTreeMap::new(),
        now,
    };
    o.tar.mode(tar::HeaderMode::Deterministic);
    let store = match snapshot {
        Some(s) => Some(write_store(s, &mut o)?),
        None => None,
    };
    let keys = key_files(data_dir)?;
    let key_names: Vec<String> = keys.iter().map(|(n, _)| n.clone()).collect();
    let sealed = match &opts.passphrase {
        None => {
            for (name, bytes) in &keys {
                o.entry(&format!("keys/{name}"), bytes)?;
            }
            None
        }
        Some(pass) => {
            let mut inner = tar::Builder::new(Vec::new());
            for (name, bytes) in &keys {
                let mut h = header(bytes.len() as u64, now);
                inner
                    .append_data(&mut h, name, bytes.as_slice())
                    .map_err(|e| io("packing the key files", e))?;
            }
            let plain = inner
                .into_inner()
                .map_err(|e| io("packing the key files", e))?;
            let (params, sealed) = crypt::seal(pass, plain)?;
            o.entry(SEALED, &sealed)?;
            Some(params)
        }
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        created_at: now,
        winmdm_version: env!("CARGO_PKG_VERSION").into(),
        store,
        key_files: key_names,
        sealed,
        sha256: o.sha.clone(),
    };
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| io("manifest", e))?;
    let mut h = header(body.len() as u64, now);
    o.tar
        .append_data(&mut h, MANIFEST, body.as_slice())
        .map_err(|e| io("writing the archive", e))?;
    let mut w = o
        .tar
        .into_inner()
        .map_err(|e| io("finishing the archive", e))?;
    w.flush().map_err(|e| io("finishing the archive", e))?;
    Ok(manifest)
}

/// The archive as a [`RawImport`] target of [`copy_all`] (the same paging, id tracking and count
/// check as a migration): each table's records go into chunk entries of at most
/// [`chunk::MAX_CHUNK`] bytes, `store/<table>/<n>.kv`.
struct ChunkTarget<'o, W: Write> {
    out: RefCell<&'o mut Out<W>>,
    /// The table being written, its last part number and the chunk being filled.
    open: RefCell<Option<(Table, u32, Vec<u8>)>>,
    counts: RefCell<BTreeMap<Table, u64>>,
    /// The archive error behind a failed import (reported instead of its store wrapping).
    failed: RefCell<Option<BackupError>>,
}

impl<W: Write> ChunkTarget<'_, W> {
    fn entry(&self, t: Table, part: u32, buf: &[u8]) -> Result<(), StoreError> {
        let name = format!("store/{}/{part:06}.kv", t.name());
        self.out.borrow_mut().entry(&name, buf).map_err(|e| {
            let reason = e.to_string();
            *self.failed.borrow_mut() = Some(e);
            StoreError::Backend { reason }
        })
    }

    /// Writes the last chunk of the open table.
    fn flush(&self) -> Result<(), StoreError> {
        match self.open.borrow_mut().take() {
            Some((t, part, buf)) if !buf.is_empty() => self.entry(t, part + 1, &buf),
            _ => Ok(()),
        }
    }
}

impl<W: Write> RawImport for ChunkTarget<'_, W> {
    fn import(&self, t: Table, kv: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        if self
            .open
            .borrow()
            .as_ref()
            .is_some_and(|(open, _, _)| *open != t)
        {
            self.flush()?;
        }
        let mut open = self.open.borrow_mut();
        let (_, part, buf) = open.get_or_insert_with(|| (t, 0, Vec::new()));
        for (k, v) in kv {
            if !buf.is_empty() && buf.len() + chunk::record_len(k, v) > chunk::MAX_CHUNK {
                *part += 1;
                self.entry(t, *part, buf)?;
                buf.clear();
            }
            chunk::push(buf, k, v);
        }
        *self.counts.borrow_mut().entry(t).or_default() += kv.len() as u64;
        Ok(())
    }

    fn count(&self, t: Table) -> Result<u64, StoreError> {
        Ok(self.counts.borrow().get(&t).copied().unwrap_or(0))
    }

    fn raise_ids_above(&self, _floor: u64) -> Result<(), StoreError> {
        // The largest id goes into the manifest (`Copied::max_id`); restore raises it.
        Ok(())
    }
}

fn write_store<W: Write>(s: &dyn KvRead, o: &mut Out<W>) -> Result<StorePart, BackupError> {
    let target = ChunkTarget {
        out: RefCell::new(o),
        open: RefCell::new(None),
        counts: RefCell::new(BTreeMap::new()),
        failed: RefCell::new(None),
    };
    let copied = copy_all(s, &target, PAGE).and_then(|c| {
        target.flush()?;
        Ok(c)
    });
    let copied = match copied {
        Ok(c) => c,
        Err(e) => {
            return Err(match target.failed.take() {
                Some(archive) => archive,
                None => match e {
                    CopyError::Store(e) => BackupError::Store(e),
                    e => BackupError::Io(e.to_string()),
                },
            })
        }
    };
    Ok(StorePart {
        tables: copied
            .tables
            .iter()
            .map(|(t, n)| (t.name().to_string(), *n))
            .collect(),
        max_id: copied.max_id,
    })
}

/// Where [`restore`] puts the store.
pub enum StoreTarget<'a> {
    /// A new embedded store in the target directory.
    Embedded,
    /// Another (empty) store, such as a PostgreSQL database.
    Into(&'a dyn RawImportEmpty),
}

/// A store [`restore`] can fill: raw imports, and a check that it is empty first.
pub trait RawImportEmpty: RawImport {
    /// Whether the store holds no record.
    fn is_empty_store(&self) -> Result<bool, StoreError>;
}

impl RawImportEmpty for crate::store::pg::PgStore {
    fn is_empty_store(&self) -> Result<bool, StoreError> {
        self.is_empty()
    }
}

/// Options of [`restore`].
#[derive(Default)]
pub struct RestoreOptions {
    /// The passphrase the key files were sealed with.
    pub passphrase: Option<String>,
}

/// Reads a whole archive and checks it without writing anything: every entry's digest, the
/// manifest, the chunks' structure and record counts, and (with the passphrase) the sealed keys.
pub fn verify(r: impl Read, opts: &RestoreOptions) -> Result<Manifest, BackupError> {
    let mut sink = CountingSink::default();
    let read = read_archive(r, &mut sink)?;
    finish_keys(&read, opts.passphrase.as_deref(), true)?;
    check_counts(&read.manifest, &sink.counts)?;
    Ok(read.manifest)
}

/// Restores the archive read from `r` into `data_dir` (which must not exist or be empty); the
/// store goes into `store` (a new embedded store in `data_dir`, or e.g. an empty PostgreSQL
/// database). Nothing lands in `data_dir` unless the whole archive checks out.
pub fn restore(
    r: impl Read,
    data_dir: &Path,
    store: StoreTarget<'_>,
    opts: &RestoreOptions,
) -> Result<Manifest, BackupError> {
    if data_dir.exists() {
        let mut it = std::fs::read_dir(data_dir)
            .map_err(|e| io(&format!("reading {}", data_dir.display()), e))?;
        if it.next().is_some() {
            return Err(BackupError::NotEmpty(data_dir.display().to_string()));
        }
    }
    crate::fsio::create_dir_mode(data_dir, 0o700)
        .map_err(|e| io("creating the data directory", e))?;
    let staging = data_dir.join(STAGING);
    let result = restore_staged(r, data_dir, &staging, store, opts);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn restore_staged(
    r: impl Read,
    data_dir: &Path,
    staging: &Path,
    store: StoreTarget<'_>,
    opts: &RestoreOptions,
) -> Result<Manifest, BackupError> {
    crate::fsio::create_dir(staging).map_err(|e| io("creating the staging directory", e))?;
    let embedded = match &store {
        StoreTarget::Embedded => Some(crate::store::redb::RedbStore::open(staging)?),
        StoreTarget::Into(s) => {
            if !s.is_empty_store()? {
                return Err(invalid(
                    "the target database is not empty: restore only into a new, empty database",
                ));
            }
            None
        }
    };
    let target: &dyn RawImport = match (&store, &embedded) {
        (StoreTarget::Into(s), _) => *s,
        (StoreTarget::Embedded, Some(e)) => e,
        (StoreTarget::Embedded, None) => return Err(invalid("no store to restore into")),
    };
    let mut sink = ImportSink {
        to: target,
        counts: BTreeMap::new(),
    };
    let read = read_archive(r, &mut sink)?;
    let keys = finish_keys(&read, opts.passphrase.as_deref(), false)?;
    check_counts(&read.manifest, &sink.counts)?;
    if let Some(part) = &read.manifest.store {
        target.raise_ids_above(part.max_id)?;
        for (name, n) in &part.tables {
            let t = table_by_name(name).ok_or_else(|| invalid(format!("unknown table {name}")))?;
            let have = target.count(t)?;
            if have != *n {
                return Err(invalid(format!(
                    "table {name}: {have} records after the restore, the manifest says {n}"
                )));
            }
        }
    }
    // Everything checked: move the files into place.
    for (rel, bytes) in &keys {
        let rel = safe_rel(rel).ok_or_else(|| invalid(format!("key file path {rel:?}")))?;
        let path = data_dir.join(&rel);
        if let Some(parent) = path.parent() {
            crate::fsio::create_dir_mode(parent, 0o700)
                .map_err(|e| io("creating a directory", e))?;
        }
        crate::fsio::write_atomic(&path, bytes, 0o600)
            .map_err(|e| io(&format!("writing {}", path.display()), e))?;
    }
    if let Some(e) = embedded {
        drop(e);
        let file = crate::store::redb::FILE_NAME;
        std::fs::rename(staging.join(file), data_dir.join(file))
            .map_err(|e| io("moving the restored store into place", e))?;
    }
    std::fs::remove_dir_all(staging).map_err(|e| io("removing the staging directory", e))?;
    crate::fsio::sync_dir(data_dir).map_err(|e| io("syncing the data directory", e))?;
    Ok(read.manifest)
}

/// Receives the store chunks of an archive as they are read.
trait ChunkSink {
    fn chunk(&mut self, t: Table, kv: crate::store::tx::KvPairs) -> Result<(), BackupError>;
}

#[derive(Default)]
struct CountingSink {
    counts: BTreeMap<String, u64>,
}

impl ChunkSink for CountingSink {
    fn chunk(&mut self, t: Table, kv: crate::store::tx::KvPairs) -> Result<(), BackupError> {
        *self.counts.entry(t.name().to_string()).or_default() += kv.len() as u64;
        Ok(())
    }
}

struct ImportSink<'a> {
    to: &'a dyn RawImport,
    counts: BTreeMap<String, u64>,
}

impl ChunkSink for ImportSink<'_> {
    fn chunk(&mut self, t: Table, kv: crate::store::tx::KvPairs) -> Result<(), BackupError> {
        *self.counts.entry(t.name().to_string()).or_default() += kv.len() as u64;
        for page in kv.chunks(PAGE) {
            self.to.import(t, page)?;
        }
        Ok(())
    }
}

struct ReadArchive {
    manifest: Manifest,
    /// Plain key files, or the sealed blob.
    keys: Vec<(String, Vec<u8>)>,
    sealed: Option<Vec<u8>>,
}

fn read_archive(r: impl Read, sink: &mut dyn ChunkSink) -> Result<ReadArchive, BackupError> {
    let mut ar = tar::Archive::new(r);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut keys = Vec::new();
    let mut key_bytes = 0u64;
    let mut sealed = None;
    let mut manifest: Option<Manifest> = None;
    for entry in ar.entries().map_err(|e| invalid(format!("tar: {e}")))? {
        let mut entry = entry.map_err(|e| invalid(format!("tar: {e}")))?;
        if manifest.is_some() {
            return Err(invalid("entries after the manifest"));
        }
        let name = entry
            .path()
            .map_err(|e| invalid(format!("entry name: {e}")))?
            .to_str()
            .ok_or_else(|| invalid("entry name is not UTF-8"))?
            .to_string();
        let size = entry
            .header()
            .size()
            .map_err(|e| invalid(format!("{name}: {e}")))?;
        let limit = if name == MANIFEST {
            MAX_MANIFEST
        } else if name.starts_with("store/") {
            chunk::MAX_CHUNK as u64
        } else {
            MAX_KEY_BYTES
        };
        if size > limit {
            return Err(invalid(format!("{name}: {size} bytes, more than {limit}")));
        }
        let mut data = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(limit + 1)
            .read_to_end(&mut data)
            .map_err(|e| invalid(format!("{name}: {e}")))?;
        if data.len() as u64 != size {
            return Err(invalid(format!("{name}: truncated")));
        }
        if name == MANIFEST {
            let m: Manifest =
                serde_json::from_slice(&data).map_err(|e| invalid(format!("manifest: {e}")))?;
            if m.format != FORMAT || m.version != VERSION {
                return Err(invalid(format!(
                    "{} version {} (this winmdm reads {FORMAT} version {VERSION})",
                    m.format, m.version
                )));
            }
            manifest = Some(m);
            continue;
        }
        if seen.insert(name.clone(), sha256_hex(&data)).is_some() {
            return Err(invalid(format!("{name} appears twice")));
        }
        if let Some(rest) = name.strip_prefix("store/") {
            let table = rest
                .split_once('/')
                .and_then(|(t, _)| table_by_name(t))
                .ok_or_else(|| invalid(format!("{name}: unknown table")))?;
            let kv = chunk::parse(&data).map_err(|e| invalid(format!("{name}: {e}")))?;
            sink.chunk(table, kv)?;
        } else if let Some(rel) = name.strip_prefix("keys/") {
            if safe_rel(rel).is_none() {
                return Err(invalid(format!("{name}: path leaves the data directory")));
            }
            key_bytes += size;
            if keys.len() >= MAX_KEY_FILES || key_bytes > MAX_KEY_BYTES {
                return Err(invalid("too many or too large key files"));
            }
            keys.push((rel.to_string(), data));
        } else if name == SEALED {
            sealed = Some(data);
        } else {
            return Err(invalid(format!("unexpected entry {name}")));
        }
    }
    let manifest =
        manifest.ok_or_else(|| invalid("no manifest: the archive is truncated or not a backup"))?;
    if manifest.sha256 != seen {
        let missing: Vec<_> = manifest
            .sha256
            .iter()
            .filter(|(k, v)| seen.get(*k) != Some(*v))
            .map(|(k, _)| k.as_str())
            .collect();
        let extra: Vec<_> = seen
            .keys()
            .filter(|k| !manifest.sha256.contains_key(*k))
            .map(String::as_str)
            .collect();
        return Err(invalid(format!(
            "entries missing or altered: {missing:?}; not in the manifest: {extra:?}"
        )));
    }
    Ok(ReadArchive {
        manifest,
        keys,
        sealed,
    })
}

/// The key files, opened if sealed; checks they are the ones the manifest lists.
fn finish_keys(
    read: &ReadArchive,
    passphrase: Option<&str>,
    verify_only: bool,
) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    let keys = match (&read.manifest.sealed, &read.sealed) {
        (None, None) => read.keys.clone(),
        (Some(params), Some(blob)) => {
            let Some(pass) = passphrase else {
                if verify_only {
                    return Ok(Vec::new());
                }
                return Err(BackupError::NeedPassphrase);
            };
            let plain = crypt::open(pass, params, blob.clone())?;
            let mut out = Vec::new();
            let mut inner = tar::Archive::new(plain.as_slice());
            for e in inner
                .entries()
                .map_err(|e| invalid(format!("sealed keys: {e}")))?
            {
                let mut e = e.map_err(|e| invalid(format!("sealed keys: {e}")))?;
                let name = e
                    .path()
                    .map_err(|e| invalid(format!("sealed keys: {e}")))?
                    .to_str()
                    .ok_or_else(|| invalid("sealed key name is not UTF-8"))?
                    .to_string();
                if safe_rel(&name).is_none() || out.len() >= MAX_KEY_FILES {
                    return Err(invalid(format!("sealed key file {name:?}")));
                }
                let mut b = Vec::new();
                e.read_to_end(&mut b)
                    .map_err(|e| invalid(format!("sealed keys: {e}")))?;
                out.push((name, b));
            }
            out
        }
        _ => {
            return Err(invalid(
                "the manifest and the key entries disagree on sealing",
            ))
        }
    };
    let names: Vec<&String> = keys.iter().map(|(n, _)| n).collect();
    let listed: Vec<&String> = read.manifest.key_files.iter().collect();
    if names != listed {
        return Err(invalid(format!(
            "key files {names:?} differ from the manifest's {listed:?}"
        )));
    }
    Ok(keys)
}

fn check_counts(m: &Manifest, read: &BTreeMap<String, u64>) -> Result<(), BackupError> {
    let Some(part) = &m.store else {
        if read.is_empty() {
            return Ok(());
        }
        return Err(invalid(
            "store records present but the manifest lists no store",
        ));
    };
    for (name, n) in &part.tables {
        let got = read.get(name).copied().unwrap_or(0);
        if got != *n {
            return Err(invalid(format!(
                "table {name}: {got} records in the archive, the manifest says {n}"
            )));
        }
    }
    if let Some(extra) = read.keys().find(|k| !part.tables.contains_key(*k)) {
        return Err(invalid(format!(
            "records of table {extra} not in the manifest"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;
    use crate::store::tx::KvRead;

    #[test]
    fn paths_stay_inside() {
        assert_eq!(safe_rel("ca/ca.key"), Some(PathBuf::from("ca/ca.key")));
        for bad in ["", "/etc/passwd", "../x", "ca/../../x", "a/./b/..", "./"] {
            assert!(safe_rel(bad).is_none(), "{bad:?}");
        }
    }

    fn sample() -> (tempfile::TempDir, MemStore) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ca")).unwrap();
        std::fs::write(dir.path().join("ca/ca.key"), b"secret key").unwrap();
        std::fs::write(dir.path().join("admin-token"), b"tok").unwrap();
        std::fs::write(dir.path().join(crate::store::redb::FILE_NAME), b"not a key").unwrap();
        let s = MemStore::new();
        s.import(Table::Users, &[(b"a@x".to_vec(), b"{}".to_vec())])
            .unwrap();
        (dir, s)
    }

    #[test]
    fn archive_round_trip_checks_everything() {
        let (dir, s) = sample();
        let snap = s.snapshot_view();
        let mut ar = Vec::new();
        let m = write(
            Some(&snap as &dyn KvRead),
            dir.path(),
            1_700_000_000,
            &WriteOptions::default(),
            &mut ar,
        )
        .unwrap();
        assert_eq!(m.key_files, vec!["admin-token", "ca/ca.key"]);
        assert_eq!(m.store.as_ref().unwrap().tables["users"], 1);
        assert_eq!(
            verify(ar.as_slice(), &RestoreOptions::default()).unwrap(),
            m
        );
        // Truncation anywhere, or one changed byte in an entry, is refused.
        for cut in [100, ar.len() / 2, ar.len() - 1200] {
            assert!(
                verify(&ar[..cut], &RestoreOptions::default()).is_err(),
                "cut {cut}"
            );
        }
        let pos = ar.windows(10).position(|w| w == b"secret key").unwrap();
        let mut bad = ar.clone();
        bad[pos] ^= 1;
        let e = verify(bad.as_slice(), &RestoreOptions::default()).unwrap_err();
        assert!(e.to_string().contains("altered"), "{e}");
        // Restore into a new directory: files 0600, store counts checked.
        let to = tempfile::tempdir().unwrap();
        let target = to.path().join("restored");
        restore(
            ar.as_slice(),
            &target,
            StoreTarget::Embedded,
            &RestoreOptions::default(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(target.join("ca/ca.key")).unwrap(),
            b"secret key"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(target.join("ca/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!target.join(STAGING).exists());
        let r = crate::store::redb::RedbStore::open(&target).unwrap();
        assert_eq!(r.count(Table::Users).unwrap(), 1);
        drop(r);
        // Never over an existing directory.
        assert!(matches!(
            restore(
                ar.as_slice(),
                &target,
                StoreTarget::Embedded,
                &RestoreOptions::default()
            ),
            Err(BackupError::NotEmpty(_))
        ));
    }

    #[test]
    fn sealed_keys_need_the_passphrase() {
        let (dir, s) = sample();
        let snap = s.snapshot_view();
        let mut ar = Vec::new();
        let opts = WriteOptions {
            passphrase: Some("pw one".into()),
        };
        write(Some(&snap as &dyn KvRead), dir.path(), 1, &opts, &mut ar).unwrap();
        assert!(!ar.windows(10).any(|w| w == b"secret key"));
        let to = tempfile::tempdir().unwrap();
        let e = restore(
            ar.as_slice(),
            &to.path().join("a"),
            StoreTarget::Embedded,
            &RestoreOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, BackupError::NeedPassphrase), "{e}");
        assert!(!to
            .path()
            .join("a")
            .join(crate::store::redb::FILE_NAME)
            .exists());
        let wrong = RestoreOptions {
            passphrase: Some("pw two".into()),
        };
        assert!(restore(
            ar.as_slice(),
            &to.path().join("b"),
            StoreTarget::Embedded,
            &wrong
        )
        .is_err());
        let right = RestoreOptions {
            passphrase: Some("pw one".into()),
        };
        restore(
            ar.as_slice(),
            &to.path().join("c"),
            StoreTarget::Embedded,
            &right,
        )
        .unwrap();
        assert_eq!(
            std::fs::read(to.path().join("c/ca/ca.key")).unwrap(),
            b"secret key"
        );
    }
}
