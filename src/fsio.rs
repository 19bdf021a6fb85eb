//! Durable file-system steps: what a power cut may not undo.
//!
//! A file's data is durable after `fsync`/`fdatasync` of the file; its *name* (a create or a
//! rename) is durable only after `fsync` of the directory that holds it.

use std::fs;
use std::io;
use std::path::Path;

/// `fsync`s the directory `dir`, making the creation, removal or renaming of its entries durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Creates `dir` (and missing parents) if it does not exist, and makes each created entry
/// durable by syncing its parent directory.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
