//! The store part of a backup: raw records of one table, packed into chunks.
//!
//! A chunk is a sequence of records, each `key length (u32 big-endian) · key · value length
//! (u32 big-endian) · value`, exactly as the store holds them (every backend shares one record
//! encoding, see [`crate::store::tx`]). Chunks are at most [`MAX_CHUNK`] bytes so that neither
//! writing nor restoring ever holds more than one chunk in memory. Pure functions only.

use crate::store::tx::KvPairs;

/// Largest chunk written or accepted.
pub const MAX_CHUNK: usize = 8 * 1024 * 1024;

/// Why a chunk could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// The chunk ends inside a record.
    #[error("chunk truncated at byte {0}")]
    Truncated(usize),
}

/// Appends one record to `buf`.
pub fn push(buf: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    buf.extend_from_slice(&(k.len() as u32).to_be_bytes());
    buf.extend_from_slice(k);
    buf.extend_from_slice(&(v.len() as u32).to_be_bytes());
    buf.extend_from_slice(v);
}

/// Bytes one record takes in a chunk.
pub fn record_len(k: &[u8], v: &[u8]) -> usize {
    8 + k.len() + v.len()
}

/// Every record of a chunk, in order.
pub fn parse(mut b: &[u8]) -> Result<KvPairs, ChunkError> {
    let total = b.len();
    let mut out = Vec::new();
    let take = |b: &mut &[u8]| -> Result<Vec<u8>, ChunkError> {
        let at = total - b.len();
        let (len, rest) = b
            .split_first_chunk::<4>()
            .ok_or(ChunkError::Truncated(at))?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(ChunkError::Truncated(at));
        }
        let (field, rest) = rest.split_at(len);
        *b = rest;
        Ok(field.to_vec())
    };
    while !b.is_empty() {
        let k = take(&mut b)?;
        let v = take(&mut b)?;
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut b = Vec::new();
        push(&mut b, b"k1", b"value one");
        push(&mut b, b"", b"");
        push(&mut b, b"k\0\xff", &[7u8; 300]);
        assert_eq!(
            b.len(),
            record_len(b"k1", b"value one")
                + record_len(b"", b"")
                + record_len(b"k\0\xff", &[7; 300])
        );
        let kv = parse(&b).unwrap();
        assert_eq!(kv.len(), 3);
        assert_eq!(kv[0], (b"k1".to_vec(), b"value one".to_vec()));
        assert_eq!(kv[2].1.len(), 300);
        for cut in 1..b.len() {
            if let Ok(kv) = parse(&b[..cut]) {
                // Only a cut at a record boundary parses, and it yields a prefix.
                assert!(kv.len() < 3, "cut {cut}");
            }
        }
        assert_eq!(parse(&b[..3]), Err(ChunkError::Truncated(0)));
        assert_eq!(parse(&[0, 0, 0, 9, 1]), Err(ChunkError::Truncated(0)));
    }
}
