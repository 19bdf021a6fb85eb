//! The generic record table: one key space per record *kind* (`"token"`, `"invitation"`,
//! `"autopilot_profile"`...) so a feature can keep its own typed records without adding a
//! table and trait methods to every backend.
//!
//! A backend implements [`RecordStore`] (three calls); features use the typed helpers below
//! ([`Kind`]). [`RecordStore::apply_records`] applies a batch atomically and only when every
//! [`RecordOp::Expect`] holds, which gives insert-if-absent (unique names), single-use
//! consumption (expect the value, then delete) and compare-and-swap updates.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::tx::{decode, encode, Table, Tx};
use super::StoreError;

/// One operation of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOp {
    /// Writes `value` at (`kind`, `key`).
    Put {
        /// Record kind.
        kind: &'static str,
        /// Key within the kind.
        key: String,
        /// Encoded record.
        value: Vec<u8>,
    },
    /// Deletes (`kind`, `key`) (no error when absent).
    Delete {
        /// Record kind.
        kind: &'static str,
        /// Key within the kind.
        key: String,
    },
    /// Precondition: (`kind`, `key`) currently holds exactly `value` (`None`: is absent).
    Expect {
        /// Record kind.
        kind: &'static str,
        /// Key within the kind.
        key: String,
        /// The value it must hold, or `None` for "absent".
        value: Option<Vec<u8>>,
    },
}

/// Storage of generic records. Every backend implements it.
pub trait RecordStore: Send + Sync {
    /// Reads one record.
    fn get_record(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` records of `kind` with keys strictly after `after`, in key order.
    fn scan_records(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Applies `ops` atomically and durably. Returns `false`, changing nothing, when an
    /// [`RecordOp::Expect`] does not hold.
    fn apply_records(&self, ops: &[RecordOp]) -> Result<bool, StoreError>;
    /// Whether the backend can serve requests now (`GET /readyz`): by default one read; a
    /// database backend also checks that its schema is the one this binary expects.
    fn check_ready(&self) -> Result<(), StoreError> {
        self.get_record("readyz", "").map(|_| ())
    }
}

/// The key of a record in [`Table::Records`]: `kind \0 key`.
pub fn record_key(kind: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + 1 + key.len());
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Splits a [`record_key`] back into its key part.
pub fn key_part(kind: &str, full: &[u8]) -> Result<String, StoreError> {
    let rest = full.get(kind.len() + 1..).ok_or(StoreError::Corrupt {
        what: "record key",
        reason: "shorter than its kind".into(),
    })?;
    String::from_utf8(rest.to_vec()).map_err(|_| StoreError::Corrupt {
        what: "record key",
        reason: "not UTF-8".into(),
    })
}

/// Applies a batch inside a backend transaction (shared by every backend).
pub fn apply_in_tx<X: Tx>(tx: &X, ops: &[RecordOp]) -> Result<bool, X::E> {
    for op in ops {
        if let RecordOp::Expect { kind, key, value } = op {
            if tx.get(Table::Records, &record_key(kind, key))? != *value {
                return Ok(false);
            }
        }
    }
    for op in ops {
        match op {
            RecordOp::Put { kind, key, value } => {
                tx.insert(Table::Records, &record_key(kind, key), value.clone())?
            }
            RecordOp::Delete { kind, key } => tx.remove(Table::Records, &record_key(kind, key))?,
            RecordOp::Expect { .. } => {}
        }
    }
    Ok(true)
}

/// A page of keyed records and the cursor of the next page (see [`Kind::page`]).
pub type Page<T> = (Vec<(String, T)>, Option<String>);

/// A typed view of one record kind: `Kind::<Invitation>::new("invitation")`.
#[derive(Debug)]
pub struct Kind<T> {
    /// The kind's name: stable, it is part of every stored key.
    pub name: &'static str,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for Kind<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Kind<T> {}

impl<T: Serialize + DeserializeOwned> Kind<T> {
    /// The kind called `name`.
    pub const fn new(name: &'static str) -> Kind<T> {
        Kind {
            name,
            _t: std::marker::PhantomData,
        }
    }

    /// Reads and decodes one record.
    pub fn get(&self, s: &dyn RecordStore, key: &str) -> Result<Option<T>, StoreError> {
        s.get_record(self.name, key)?
            .map(|v| decode(self.name, &v))
            .transpose()
    }

    /// Writes one record unconditionally.
    pub fn put(&self, s: &dyn RecordStore, key: &str, value: &T) -> Result<(), StoreError> {
        s.apply_records(&[self.put_op(key, value)]).map(|_| ())
    }

    /// Writes one record only if the key is free; `false` when it already exists.
    pub fn insert_new(
        &self,
        s: &dyn RecordStore,
        key: &str,
        value: &T,
    ) -> Result<bool, StoreError> {
        s.apply_records(&[self.expect_absent(key), self.put_op(key, value)])
    }

    /// Deletes one record; `false` when it did not exist.
    pub fn delete(&self, s: &dyn RecordStore, key: &str) -> Result<bool, StoreError> {
        match s.get_record(self.name, key)? {
            None => Ok(false),
            Some(old) => s.apply_records(&[
                RecordOp::Expect {
                    kind: self.name,
                    key: key.to_string(),
                    value: Some(old),
                },
                self.delete_op(key),
            ]),
        }
    }

    /// Atomically reads and deletes a record (single use): `None` when it was absent or
    /// another caller took it first.
    pub fn take(&self, s: &dyn RecordStore, key: &str) -> Result<Option<T>, StoreError> {
        let Some(old) = s.get_record(self.name, key)? else {
            return Ok(None);
        };
        let value = decode(self.name, &old)?;
        let ops = [
            RecordOp::Expect {
                kind: self.name,
                key: key.to_string(),
                value: Some(old),
            },
            self.delete_op(key),
        ];
        Ok(if s.apply_records(&ops)? {
            Some(value)
        } else {
            None
        })
    }

    /// Read-modify-write with optimistic retries: `f` gets the current value (or `None`) and
    /// returns the new one (`None` deletes). Returns what was written.
    pub fn update(
        &self,
        s: &dyn RecordStore,
        key: &str,
        mut f: impl FnMut(Option<T>) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        for attempt in 0..64u32 {
            if attempt >= 2 {
                // Lost twice in a row: many writers on this key (a lockout counter under a
                // guessing burst). A random pause that grows with the losses spreads them out
                // instead of letting the same few win every race.
                backoff(attempt);
            }
            let old = s.get_record(self.name, key)?;
            let current = old.as_deref().map(|v| decode(self.name, v)).transpose()?;
            let new = f(current)?;
            let mut ops = vec![RecordOp::Expect {
                kind: self.name,
                key: key.to_string(),
                value: old,
            }];
            ops.push(match &new {
                Some(v) => self.put_op(key, v),
                None => self.delete_op(key),
            });
            if s.apply_records(&ops)? {
                return Ok(new);
            }
        }
        Err(StoreError::Backend {
            reason: format!("{}: too much contention on {key}", self.name),
        })
    }

    /// Up to `limit` decoded records with keys after `after`, in key order.
    pub fn list(
        &self,
        s: &dyn RecordStore,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StoreError> {
        s.scan_records(self.name, after, limit)?
            .into_iter()
            .map(|(k, v)| Ok((k, decode(self.name, &v)?)))
            .collect()
    }

    /// One page of at most `limit` records after `after`, with the cursor of the next page
    /// (`None` on the last page): the shape every paginated admin list answers.
    pub fn page(
        &self,
        s: &dyn RecordStore,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<T>, StoreError> {
        let mut page = self.list(s, after, limit.saturating_add(1))?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok((page, next))
    }

    /// Every record of the kind (use only for kinds that stay small).
    pub fn all(&self, s: &dyn RecordStore) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        loop {
            let after = out.last().map(|(k, _): &(String, T)| k.clone());
            let page = self.list(s, after.as_deref(), 1000)?;
            let done = page.len() < 1000;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// A [`RecordOp::Put`] of `value` (for batches).
    pub fn put_op(&self, key: &str, value: &T) -> RecordOp {
        RecordOp::Put {
            kind: self.name,
            key: key.to_string(),
            value: encode(value),
        }
    }

    /// A [`RecordOp::Delete`] (for batches).
    pub fn delete_op(&self, key: &str) -> RecordOp {
        RecordOp::Delete {
            kind: self.name,
            key: key.to_string(),
        }
    }

    /// A precondition that the key is absent (for batches).
    pub fn expect_absent(&self, key: &str) -> RecordOp {
        RecordOp::Expect {
            kind: self.name,
            key: key.to_string(),
            value: None,
        }
    }
}

/// Sleeps a random 0–`50 µs × 2^attempt` (at most 6.4 ms) before retry `attempt` of an
/// optimistic update that keeps losing to other writers.
fn backoff(attempt: u32) {
    let cap = 50u64 << attempt.min(7);
    std::thread::sleep(std::time::Duration::from_micros(crate::clock::jitter(cap)));
}
