//! `winmdm backup` and `winmdm restore` (see [`crate::backup`] for the archive).
//!
//! * `winmdm backup --out FILE` asks the running server (`POST /api/v1/backup`, admin token) for
//!   an archive and streams it to `FILE.partial`; the file is then read back and verified
//!   (digests, manifest, counts, and the sealed keys with the passphrase), made durable and
//!   renamed to `FILE`. `--data-dir DIR` backs up a *stopped* server's directory directly.
//! * `winmdm restore --from FILE --data-dir DIR` rebuilds a data directory (new or empty) from
//!   an archive; `--database-url` puts the store into an empty PostgreSQL database instead.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ClientArgs;
use crate::backup::{self, Manifest, RestoreOptions, StoreTarget, WriteOptions};

/// `winmdm backup` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The archive to write (must not exist; mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Seal the key files with the passphrase in this file (first line, 12 to 1024 characters).
    #[arg(long, env = "WINMDM_BACKUP_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Back up this data directory of a stopped server directly, instead of asking the running
    /// server through its admin API.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `winmdm restore` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The archive written by `winmdm backup`.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The data directory to create (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The passphrase the key files were sealed with (file, first line).
    #[arg(long, env = "WINMDM_BACKUP_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Restore the store into this empty PostgreSQL database instead of the data directory.
    #[arg(long, value_name = "postgres://…")]
    pub database_url: Option<String>,
    /// Only read and check the archive; write nothing.
    #[arg(long)]
    pub verify_only: bool,
}

/// How long the download may stall.
const IDLE: Duration = Duration::from_secs(120);

fn read_passphrase(p: &Option<PathBuf>) -> Result<Option<String>, String> {
    let Some(path) = p else { return Ok(None) };
    let s = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the passphrase file {}: {e}", path.display()))?;
    let line = s.lines().next().unwrap_or("").to_string();
    crate::service::backup::check_passphrase(&line)?;
    Ok(Some(line))
}

fn partial(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// `winmdm backup`.
pub fn backup(
    client: &ClientArgs,
    a: &BackupArgs,
    out: &mut dyn Write,
) -> Result<Manifest, String> {
    if a.out.exists() {
        return Err(format!(
            "{} exists: choose a new file name",
            a.out.display()
        ));
    }
    let passphrase = read_passphrase(&a.passphrase_file)?;
    let tmp = partial(&a.out);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let written = match &a.data_dir {
        Some(dir) => offline(dir, passphrase.clone(), &mut file),
        None => online(client, passphrase.clone(), &mut file),
    };
    let result = written.and_then(|()| {
        file.sync_all()
            .map_err(|e| format!("syncing {}: {e}", tmp.display()))?;
        let r = std::fs::File::open(&tmp).map_err(|e| format!("reading {}: {e}", tmp.display()))?;
        let m = backup::verify(std::io::BufReader::new(r), &RestoreOptions { passphrase })
            .map_err(|e| format!("the archive does not verify: {e}"))?;
        std::fs::rename(&tmp, &a.out)
            .map_err(|e| format!("renaming to {}: {e}", a.out.display()))?;
        let parent = a
            .out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        crate::fsio::sync_dir(parent).map_err(|e| format!("syncing {}: {e}", parent.display()))?;
        Ok(m)
    });
    let m = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let _ = writeln!(out, "wrote {} (verified):", a.out.display());
    report(&m, out);
    Ok(m)
}

fn report(m: &Manifest, out: &mut dyn Write) {
    match &m.store {
        Some(s) => {
            let total: u64 = s.tables.values().sum();
            let _ = writeln!(out, "  store: {total} records");
            for (t, n) in &s.tables {
                let _ = writeln!(out, "    {t:<10} {n:>10}");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "  store: not included (PostgreSQL: back the database up with pg_dump, see the README)"
            );
        }
    }
    let _ = writeln!(
        out,
        "  key files ({}): {}",
        if m.sealed.is_some() {
            "sealed with the passphrase"
        } else {
            "NOT encrypted: keep this file as safe as the CA key"
        },
        m.key_files.join(", ")
    );
}

fn offline(dir: &Path, passphrase: Option<String>, file: &mut std::fs::File) -> Result<(), String> {
    if !dir.join(crate::store::redb::FILE_NAME).is_file() {
        return Err(format!(
            "no store in {} (expected a winmdm data directory)",
            dir.display()
        ));
    }
    let store = crate::store::redb::RedbStore::open(dir).map_err(|e| {
        format!("opening the store in {}: {e} (if the server is running, run `winmdm backup` without --data-dir to back it up through its API)", dir.display())
    })?;
    let snap = crate::store::Snapshots::snapshot(&store).map_err(|e| e.to_string())?;
    let now = crate::clock::Clock::now_unix(&crate::clock::SystemClock);
    let w = std::io::BufWriter::new(file);
    backup::write(snap.as_deref(), dir, now, &WriteOptions { passphrase }, w)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn online(
    client: &ClientArgs,
    passphrase: Option<String>,
    file: &mut std::fs::File,
) -> Result<(), String> {
    let c = super::client(client).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let body = match passphrase {
        Some(p) => serde_json::json!({ "passphrase": p }),
        None => serde_json::json!({}),
    };
    let mut w = std::io::BufWriter::new(file);
    let r = rt
        .block_on(c.download("POST", "/api/v1/backup", &body, &mut w, IDLE))
        .map_err(|e| e.to_string())?;
    if !(200..300).contains(&r.status) {
        let msg = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
        return Err(format!("{msg} (HTTP {})", r.status));
    }
    w.flush().map_err(|e| format!("writing the archive: {e}"))
}

/// `winmdm restore`.
pub fn restore(a: &RestoreArgs, out: &mut dyn Write) -> Result<Manifest, String> {
    let passphrase = read_passphrase(&a.passphrase_file)?;
    let open = || {
        std::fs::File::open(&a.from)
            .map(std::io::BufReader::new)
            .map_err(|e| format!("reading {}: {e}", a.from.display()))
    };
    let opts = RestoreOptions { passphrase };
    if a.verify_only {
        let m = backup::verify(open()?, &opts).map_err(|e| e.to_string())?;
        let _ = writeln!(out, "{} verifies:", a.from.display());
        report(&m, out);
        return Ok(m);
    }
    let m = match &a.database_url {
        None => backup::restore(open()?, &a.data_dir, StoreTarget::Embedded, &opts),
        Some(url) => {
            let pg =
                crate::store::pg::PgStore::connect(url, &crate::store::pg::PgOptions::default())
                    .map_err(|e| {
                        format!("connecting to {}: {e}", crate::store::pg::redact_url(url))
                    })?;
            backup::restore(open()?, &a.data_dir, StoreTarget::Into(&pg), &opts)
        }
    }
    .map_err(|e| e.to_string())?;
    let _ = writeln!(
        out,
        "restored {} into {}{}:",
        a.from.display(),
        a.data_dir.display(),
        a.database_url
            .as_deref()
            .map(|u| format!(" and {}", crate::store::pg::redact_url(u)))
            .unwrap_or_default()
    );
    report(&m, out);
    if m.store.is_none() {
        let _ = writeln!(
            out,
            "  the archive holds no store: restore the database with pg_restore first"
        );
    }
    Ok(m)
}
