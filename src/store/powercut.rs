//! A redb storage for power-cut tests: nothing reaches the file before redb asks for a sync.
//!
//! Writes and length changes are kept in memory (reads see them) and replayed to the file, then
//! `fdatasync`ed, only when redb calls `sync_data` — which it does exactly when a commit must be
//! durable. Killing the process therefore loses everything that was not synced, as a power cut
//! loses what sits in the page cache and the disk's volatile cache: a server that acknowledged
//! a write before its sync loses acknowledged data under `SIGKILL`, which the crash test
//! (`tests/crash`, run in this mode) detects. A kill in the middle of a replay leaves a part of
//! the unsynced writes in the file, as a power cut during write-back does.
//!
//! Selected by the environment variable [`ENV`] = `1` (tests only; the server logs a warning).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// Environment variable that selects this storage for `<data-dir>/store.redb`.
pub const ENV: &str = "WINMDM_TEST_POWER_CUT_STORE";

#[derive(Debug)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug)]
struct State {
    /// The file as redb sees it (synced content plus pending changes).
    image: Vec<u8>,
    /// Changes since the last sync, in order.
    pending: Vec<Op>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct SyncOnlyFile {
    file: File,
    state: Mutex<State>,
}

impl SyncOnlyFile {
    /// Opens (or creates) `path`.
    pub fn open(path: &Path) -> io::Result<SyncOnlyFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let image = std::fs::read(path)?;
        Ok(SyncOnlyFile {
            file,
            state: Mutex::new(State {
                image,
                pending: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn range(offset: u64, len: usize, image_len: usize) -> io::Result<(usize, usize)> {
    let start = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
    let end = start
        .checked_add(len)
        .ok_or_else(|| io::Error::other("range too large"))?;
    if end > image_len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "read past the end of the storage",
        ));
    }
    Ok((start, end))
}

impl redb::StorageBackend for SyncOnlyFile {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.lock().image.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let s = self.lock();
        let (start, end) = range(offset, out.len(), s.image.len())?;
        out.copy_from_slice(&s.image[start..end]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let n = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        let mut s = self.lock();
        s.image.resize(n, 0);
        s.pending.push(Op::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut s = self.lock();
        for op in s.pending.drain(..) {
            match op {
                Op::Write(off, data) => self.file.write_all_at(&data, off)?,
                Op::SetLen(len) => self.file.set_len(len)?,
            }
        }
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut s = self.lock();
        let (start, end) = range(offset, data.len(), s.image.len())?;
        s.image[start..end].copy_from_slice(data);
        s.pending.push(Op::Write(offset, data.to_vec()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend;

    #[test]
    fn unsynced_writes_never_reach_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        let s = SyncOnlyFile::open(&p).unwrap();
        s.set_len(8).unwrap();
        s.write(0, b"abcd").unwrap();
        let mut out = [0u8; 4];
        s.read(0, &mut out).unwrap();
        assert_eq!(&out, b"abcd", "reads see pending writes");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"",
            "nothing written before a sync"
        );
        s.sync_data().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abcd\0\0\0\0");
        s.write(4, b"efgh").unwrap();
        drop(s); // a "power cut": the pending write is gone
        assert_eq!(std::fs::read(&p).unwrap(), b"abcd\0\0\0\0");
        assert!(SyncOnlyFile::open(&p).unwrap().read(6, &mut out).is_err());
    }
}
