//! Durable file-system steps: what a power cut may not undo.
//!
//! A file's data is durable after `fsync`/`fdatasync` of the file; its *name* (a create or a
//! rename) is durable only after `fsync` of the directory that holds it.
//!
//! Every file winmdm writes outside its store goes through [`write_atomic`]: a new temporary
//! file beside the target (created exclusively, with its final mode), filled, `fsync`ed, renamed
//! over the target, then the directory `fsync`ed. After a power cut the target holds either its
//! old content or the new one, never a prefix, and a secret is never readable by anyone else,
//! not even for a moment.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `fsync`s the directory `dir`, making the creation, removal or renaming of its entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Creates `dir` (and missing parents) if it does not exist, and makes each created entry
/// durable by syncing its parent directory.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    create_dir_mode(dir, 0o777)
}

/// As [`create_dir`], each directory it creates made with `mode` (before the umask, as
/// `mkdir(2)`): 0o700 for the data directory and its sub-directories. An existing directory
/// is left as it is.
pub fn create_dir_mode(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty directory path",
        ));
    }
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_mode(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(parent_of(dir))
}

/// The directory holding `path` (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces (or creates) the file `path` with `bytes`, atomically and durably: a temporary file
/// in the same directory is created exclusively (`O_EXCL`) with `mode` (before the umask, as
/// `open(2)`; 0o600 for a secret, so it is never readable by others), written, `fsync`ed,
/// renamed over `path`, and the directory is `fsync`ed. On any error before the rename the
/// temporary file is removed and `path` is untouched.
///
/// `path` must name a file (not end in `..` or `/`) in an existing directory; an existing
/// target that is not a regular file (a directory, a device, a FIFO) is refused. A symbolic
/// link at `path` is replaced by the new file, not written through.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, mode, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the content written by `fill` (the seam the tests use to fail a write
/// half-way).
fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names a directory", path.display()),
        ));
    }
    match fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} exists and is not a regular file: not replaced",
                    path.display()
                ),
            ))
        }
        _ => {}
    }
    let dir = parent_of(path);
    let (tmp, mut file) = create_temp(dir, name, mode)?;
    let written = fill(&mut file)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// The number in the next temporary file's name.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Creates a new temporary file `.<name>.tmp-<pid>-<n>` in `dir`, exclusively, with `mode`.
fn create_temp(dir: &Path, name: &std::ffi::OsStr, mode: u32) -> io::Result<(PathBuf, fs::File)> {
    let mut last = None;
    for _ in 0..16 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
        let tmp = dir.join(tmp_name);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            // Left behind by an earlier process with the same pid (a crash): pick another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_dir_makes_parents_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a/b/c");
        create_dir(&d).unwrap();
        assert!(d.is_dir());
        create_dir(&d).unwrap();
        sync_dir(&d).unwrap();
        assert!(sync_dir(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn create_dir_mode_is_private_for_every_created_level() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("data/ca");
        create_dir_mode(&d, 0o700).unwrap();
        for p in [tmp.path().join("data"), d.clone()] {
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", p.display());
        }
        assert!(create_dir_mode(Path::new(""), 0o700).is_err());
        // A file in the way is an error, not a panic.
        fs::write(tmp.path().join("f"), b"x").unwrap();
        assert!(create_dir_mode(&tmp.path().join("f/sub"), 0o700).is_err());
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_content_with_mode_and_leaves_no_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("secret");
        write_atomic(&p, b"first", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(mode_of(&p), 0o600);
        // Replacing: new content, still 0600, even when the old file had wider permissions.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"second, longer", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second, longer");
        assert_eq!(mode_of(&p), 0o600);
        write_atomic(&tmp.path().join("public"), b"cert", 0o644).unwrap();
        assert_eq!(mode_of(&tmp.path().join("public")), 0o644);
        assert_eq!(entries(tmp.path()), ["public", "secret"]);
    }

    #[test]
    fn the_file_is_private_from_its_creation() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("key");
        let mut seen = None;
        write_atomic_with(&p, 0o600, |f| {
            // Before a single byte is written, the (temporary) file is already 0600 and it is
            // not the target.
            seen = Some(f.metadata()?.permissions().mode() & 0o777);
            assert!(!p.exists());
            f.write_all(b"k")
        })
        .unwrap();
        assert_eq!(seen, Some(0o600));
        assert_eq!(fs::read(&p).unwrap(), b"k");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary_one() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("ca.key");
        write_atomic(&p, b"old key", 0o600).unwrap();
        let err = write_atomic_with(&p, 0o600, |f| {
            f.write_all(b"half of a new k")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(&p).unwrap(), b"old key");
        assert_eq!(entries(tmp.path()), ["ca.key"]);
    }

    #[test]
    fn a_read_only_directory_keeps_the_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("ro");
        fs::create_dir(&d).unwrap();
        let p = d.join("admin-token");
        write_atomic(&p, b"old", 0o600).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o500)).unwrap();
        let r = write_atomic(&p, b"new", 0o600);
        let probe = fs::File::create(d.join("probe"));
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        if probe.is_ok() {
            // root (CAP_DAC_OVERRIDE) writes into a read-only directory: nothing to test here,
            // the injected failure above covers the same path.
            println!("SKIP read-only directory: running with CAP_DAC_OVERRIDE");
            return;
        }
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(&d), ["admin-token"]);
    }

    #[test]
    fn bad_paths_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        // No file name.
        assert!(write_atomic(Path::new("/"), b"x", 0o600).is_err());
        assert!(write_atomic(&d.join(".."), b"x", 0o600).is_err());
        assert!(write_atomic(Path::new(""), b"x", 0o600).is_err());
        let mut slash = d.join("f").into_os_string();
        slash.push("/");
        assert!(write_atomic(Path::new(&slash), b"x", 0o600).is_err());
        // Missing directory.
        assert!(write_atomic(&d.join("missing/f"), b"x", 0o600).is_err());
        // An existing directory or a device is not replaced.
        fs::create_dir(d.join("sub")).unwrap();
        assert!(write_atomic(&d.join("sub"), b"x", 0o600).is_err());
        assert!(d.join("sub").is_dir());
        assert!(write_atomic(Path::new("/dev/null"), b"x", 0o600).is_err());
        assert_eq!(entries(d), ["sub"]);
    }

    #[test]
    fn a_symlink_is_replaced_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        fs::write(d.join("elsewhere"), b"keep").unwrap();
        std::os::unix::fs::symlink(d.join("elsewhere"), d.join("link")).unwrap();
        write_atomic(&d.join("link"), b"new", 0o600).unwrap();
        assert_eq!(fs::read(d.join("elsewhere")).unwrap(), b"keep");
        assert!(fs::symlink_metadata(d.join("link")).unwrap().is_file());
        assert_eq!(fs::read(d.join("link")).unwrap(), b"new");
    }

    #[test]
    fn a_stale_temporary_name_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        // What a crashed earlier process with the same pid could have left: the next names
        // this process would pick.
        let next = NEXT.load(Ordering::Relaxed);
        for i in next..next + 8 {
            fs::write(
                d.join(format!(".f.tmp-{}-{i}", std::process::id())),
                b"stale",
            )
            .unwrap();
        }
        write_atomic(&d.join("f"), b"fresh", 0o600).unwrap();
        assert_eq!(fs::read(d.join("f")).unwrap(), b"fresh");
    }
}
