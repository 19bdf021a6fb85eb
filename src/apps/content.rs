//! App package bytes in the store, in chunks of [`CHUNK`] bytes, so that every node sharing
//! the store serves them: records of kind `app_chunk` keyed `<content_id>/<index:08>`. A
//! content id is fresh per upload; the app record names it only once every chunk is written,
//! and a failed upload deletes what it wrote.

use std::io::{Read, Seek, SeekFrom};

use crate::store::records::RecordStore;
use crate::store::{RecordOp, StoreError};

/// Record kind of content chunks.
pub const CHUNK_KIND: &str = "app_chunk";
/// Bytes per chunk.
pub const CHUNK: usize = 1 << 20;

fn key(content_id: &str, index: u64) -> String {
    format!("{content_id}/{index:08}")
}

/// Writes one upload's chunks as they fill.
pub struct ContentWriter {
    /// The content id.
    pub content_id: String,
    next: u64,
    buf: Vec<u8>,
}

impl ContentWriter {
    /// A writer for a fresh content id.
    pub fn new() -> ContentWriter {
        ContentWriter {
            content_id: crate::clock::random_hex(12),
            next: 0,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    /// Buffers `data`; returns the full chunks to store (each a `(key, bytes)`).
    pub fn push(&mut self, mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let room = CHUNK - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == CHUNK {
                out.push(self.take());
            }
        }
        out
    }

    /// The last, partial chunk (if any).
    pub fn finish(&mut self) -> Option<(String, Vec<u8>)> {
        (!self.buf.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> (String, Vec<u8>) {
        let k = key(&self.content_id, self.next);
        self.next += 1;
        (
            k,
            std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)),
        )
    }
}

impl Default for ContentWriter {
    fn default() -> Self {
        ContentWriter::new()
    }
}

/// Stores chunks (one transaction each: a chunk is up to 1 MiB).
pub fn put_chunks(s: &dyn RecordStore, chunks: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
    for (k, v) in chunks {
        s.apply_records(&[RecordOp::Put {
            kind: CHUNK_KIND,
            key: k,
            value: v,
        }])?;
    }
    Ok(())
}

/// Deletes every chunk of `content_id`, in batches.
pub fn delete(s: &dyn RecordStore, content_id: &str) -> Result<u64, StoreError> {
    let prefix = format!("{content_id}/");
    let mut n = 0;
    loop {
        // Keys only matter; read a few at a time (values are up to a chunk each).
        let page = s.scan_records(CHUNK_KIND, Some(&prefix), 16)?;
        let keys: Vec<String> = page
            .into_iter()
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
            .collect();
        if keys.is_empty() {
            return Ok(n);
        }
        n += keys.len() as u64;
        let ops: Vec<RecordOp> = keys
            .into_iter()
            .map(|key| RecordOp::Delete {
                kind: CHUNK_KIND,
                key,
            })
            .collect();
        s.apply_records(&ops)?;
    }
}

/// Reads chunk `index` of `content_id`.
pub fn chunk(s: &dyn RecordStore, content_id: &str, index: u64) -> Result<Vec<u8>, StoreError> {
    s.get_record(CHUNK_KIND, &key(content_id, index))?
        .ok_or_else(|| StoreError::Corrupt {
            what: "app content",
            reason: format!("chunk {index} of {content_id} is missing"),
        })
}

/// A [`Read`] + [`Seek`] view of stored content (the MSI parser reads the compound file
/// through it without holding the package in memory).
pub struct ContentReader<'s> {
    store: &'s dyn RecordStore,
    content_id: String,
    size: u64,
    pos: u64,
    cached: Option<(u64, Vec<u8>)>,
}

impl<'s> ContentReader<'s> {
    /// A reader of `size` bytes of `content_id`.
    pub fn new(store: &'s dyn RecordStore, content_id: &str, size: u64) -> ContentReader<'s> {
        ContentReader {
            store,
            content_id: content_id.to_string(),
            size,
            pos: 0,
            cached: None,
        }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || out.is_empty() {
            return Ok(0);
        }
        let index = self.pos / CHUNK as u64;
        if self.cached.as_ref().map(|c| c.0) != Some(index) {
            let c = chunk(self.store, &self.content_id, index).map_err(std::io::Error::other)?;
            self.cached = Some((index, c));
        }
        let Some((_, c)) = &self.cached else {
            return Ok(0);
        };
        let off = (self.pos % CHUNK as u64) as usize;
        let avail = c.len().saturating_sub(off);
        if avail == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "app content chunk shorter than expected",
            ));
        }
        let n = avail.min(out.len()).min((self.size - self.pos) as usize);
        out[..n].copy_from_slice(&c[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ContentReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let p = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match p {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_through_the_reader() {
        let s = crate::store::mem::MemStore::new();
        let data: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        let mut w = ContentWriter::new();
        let mut chunks = Vec::new();
        for part in data.chunks(70_000) {
            chunks.extend(w.push(part));
        }
        chunks.extend(w.finish());
        assert_eq!(chunks.len(), 3);
        put_chunks(&s, chunks).unwrap();
        let mut r = ContentReader::new(&s, &w.content_id, data.len() as u64);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        r.seek(SeekFrom::Start(CHUNK as u64 - 2)).unwrap();
        let mut four = [0u8; 4];
        r.read_exact(&mut four).unwrap();
        assert_eq!(&four, &data[CHUNK - 2..CHUNK + 2]);
        assert_eq!(delete(&s, &w.content_id).unwrap(), 3);
        assert!(chunk(&s, &w.content_id, 0).is_err());
    }
}
