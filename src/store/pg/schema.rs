//! The schema: one SQL table per [`Table`], its key columns, the SQL of each operation, and
//! the versioned migrations.

use super::super::tx::Table;
use super::super::StoreError;

/// Migrations in order: (version, description, SQL). Never edit a released one: add the next.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "initial schema", V1)];

/// The newest schema version this binary knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Text keys sort as bytes (`COLLATE "C"`), like the embedded stores' keys, so paging is the
/// same on every backend. The primary keys are the only indexes the store's queries need:
/// every lookup is by key, every scan a key range or a key prefix.
const V1: &str = r#"
CREATE TABLE users (upn text COLLATE "C" PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE devices (device_id text COLLATE "C" PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE hw_index (hw_dev_id text COLLATE "C" PRIMARY KEY, device_id text COLLATE "C" NOT NULL);
CREATE TABLE certs (serial text COLLATE "C" PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE revoked (serial text COLLATE "C" PRIMARY KEY);
CREATE TABLE commands (
    device_id text COLLATE "C" NOT NULL,
    command_id text COLLATE "C" NOT NULL,
    doc jsonb NOT NULL,
    PRIMARY KEY (device_id, command_id)
);
CREATE TABLE queue (
    device_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    command_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE TABLE sessions (
    device_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    state bytea NOT NULL,
    PRIMARY KEY (device_id, session_id)
);
CREATE TABLE audit (id bigint PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE records (
    kind text COLLATE "C" NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE SEQUENCE winmdm_ids;
"#;

/// The type of a key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCol {
    /// UTF-8 text.
    Text,
    /// A u64 stored big-endian in the byte key, `bigint` in SQL.
    Int,
    /// Raw bytes (`bytea`, which sorts as bytes): keys that may hold `\0`, such as the
    /// generic records' composite keys (`group \0 device`).
    Bytes,
}

/// How the value is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValCol {
    /// JSON document (`jsonb`, read back as text).
    Json,
    /// Opaque bytes.
    Bytes,
    /// UTF-8 text.
    Text,
    /// No value column (the row's presence is the value, read as empty bytes).
    None,
}

/// One table's layout.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// SQL table name.
    pub name: &'static str,
    /// Key columns: one, or two (the byte key is `first \0 second`).
    pub keys: &'static [(&'static str, KeyCol)],
    /// Value column name and kind.
    pub val: (&'static str, ValCol),
}

/// The layout of `t`.
pub fn spec(t: Table) -> Spec {
    use KeyCol::{Bytes, Int, Text};
    let (keys, val): (&'static [(&'static str, KeyCol)], _) = match t {
        Table::Users => (&[("upn", Text)], ("doc", ValCol::Json)),
        Table::Devices => (&[("device_id", Text)], ("doc", ValCol::Json)),
        Table::HwIndex => (&[("hw_dev_id", Text)], ("device_id", ValCol::Text)),
        Table::Certs => (&[("serial", Text)], ("doc", ValCol::Json)),
        Table::Revoked => (&[("serial", Text)], ("", ValCol::None)),
        Table::Commands => (
            &[("device_id", Text), ("command_id", Text)],
            ("doc", ValCol::Json),
        ),
        Table::Queue => (
            &[("device_id", Text), ("seq", Int)],
            ("command_id", ValCol::Text),
        ),
        Table::Sessions => (
            &[("device_id", Text), ("session_id", Text)],
            ("state", ValCol::Bytes),
        ),
        Table::Audit => (&[("id", Int)], ("doc", ValCol::Json)),
        Table::Records => (&[("kind", Text), ("key", Bytes)], ("value", ValCol::Bytes)),
    };
    Spec {
        name: t.name(),
        keys,
        val,
    }
}

/// A key column's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVal {
    /// Text column.
    Text(String),
    /// bigint column.
    Int(i64),
    /// bytea column.
    Bytes(Vec<u8>),
}

impl KeyVal {
    /// As a statement parameter.
    pub fn param(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            KeyVal::Text(s) => s,
            KeyVal::Int(i) => i,
            KeyVal::Bytes(b) => b,
        }
    }

    fn to_bytes(&self, out: &mut Vec<u8>) {
        match self {
            KeyVal::Text(s) => out.extend_from_slice(s.as_bytes()),
            KeyVal::Int(i) => out.extend_from_slice(&(*i as u64).to_be_bytes()),
            KeyVal::Bytes(b) => out.extend_from_slice(b),
        }
    }
}

fn corrupt(reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: "key",
        reason: reason.into(),
    }
}

fn col(kind: KeyCol, b: &[u8]) -> Result<KeyVal, StoreError> {
    match kind {
        KeyCol::Text => std::str::from_utf8(b)
            .map(|s| KeyVal::Text(s.to_string()))
            .map_err(|_| corrupt("not UTF-8")),
        KeyCol::Bytes => Ok(KeyVal::Bytes(b.to_vec())),
        KeyCol::Int => {
            let a: [u8; 8] = b
                .try_into()
                .map_err(|_| corrupt("integer key is not 8 bytes"))?;
            i64::try_from(u64::from_be_bytes(a))
                .map(KeyVal::Int)
                .map_err(|_| corrupt("integer key out of range"))
        }
    }
}

/// Splits a byte key of `s` into its column values.
pub fn split_key(s: &Spec, k: &[u8]) -> Result<Vec<KeyVal>, StoreError> {
    match s.keys {
        [(_, a)] => Ok(vec![col(*a, k)?]),
        [(_, a), (_, b)] => {
            let i = k
                .iter()
                .position(|c| *c == 0)
                .ok_or_else(|| corrupt(format!("{} key without separator", s.name)))?;
            Ok(vec![col(*a, &k[..i])?, col(*b, &k[i + 1..])?])
        }
        _ => Err(corrupt("table without key columns")),
    }
}

/// Joins column values back into the byte key.
pub fn join_key(vals: &[KeyVal]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, v) in vals.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        v.to_bytes(&mut out);
    }
    out
}

/// The SQL of every operation on one table.
#[derive(Debug, Clone)]
pub struct Sql {
    /// Layout.
    pub spec: Spec,
    /// `SELECT value WHERE key = …`.
    pub get: String,
    /// Insert or replace.
    pub upsert: String,
    /// `DELETE WHERE key = …`.
    pub delete: String,
    /// Keys and values in key order, `LIMIT $1`.
    pub scan_first: String,
    /// Keys and values strictly after the key params, in key order, `LIMIT $n`.
    pub scan_after: String,
    /// Two-column tables: the rows whose first column equals `$1`, in key order.
    pub scan_first_col: String,
    /// Rows whose first column starts with `$1`, in key order.
    pub scan_starts: String,
}

impl Sql {
    /// Builds the statements of `t`.
    pub fn of(t: Table) -> Sql {
        let s = spec(t);
        let keys: Vec<&str> = s.keys.iter().map(|k| k.0).collect();
        let key_list = keys.join(", ");
        let where_eq = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = ${}", i + 1))
            .collect::<Vec<_>>()
            .join(" AND ");
        let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        let val_sel = match s.val.1 {
            ValCol::Json => format!("{}::text", s.val.0),
            ValCol::Bytes | ValCol::Text => s.val.0.to_string(),
            ValCol::None => "NULL::bytea".to_string(),
        };
        let n = keys.len();
        let upsert = match s.val.1 {
            ValCol::None => format!(
                "INSERT INTO {} ({key_list}) VALUES ({}) ON CONFLICT DO NOTHING",
                s.name,
                placeholders.join(", ")
            ),
            v => {
                let p = match v {
                    ValCol::Json => format!("${}::text::jsonb", n + 1),
                    _ => format!("${}", n + 1),
                };
                format!(
                    "INSERT INTO {} ({key_list}, {val}) VALUES ({}, {p}) \
                     ON CONFLICT ({key_list}) DO UPDATE SET {val} = EXCLUDED.{val}",
                    s.name,
                    placeholders.join(", "),
                    val = s.val.0
                )
            }
        };
        let order = format!("ORDER BY {key_list}");
        Sql {
            get: format!("SELECT {val_sel} FROM {} WHERE {where_eq}", s.name),
            upsert,
            delete: format!("DELETE FROM {} WHERE {where_eq}", s.name),
            scan_first: format!(
                "SELECT {key_list}, {val_sel} FROM {} {order} LIMIT $1",
                s.name
            ),
            scan_after: format!(
                "SELECT {key_list}, {val_sel} FROM {} WHERE ({key_list}) > ({}) {order} LIMIT ${}",
                s.name,
                placeholders.join(", "),
                n + 1
            ),
            scan_first_col: format!(
                "SELECT {key_list}, {val_sel} FROM {} WHERE {} = $1 {order}",
                s.name, keys[0]
            ),
            scan_starts: format!(
                "SELECT {key_list}, {val_sel} FROM {} WHERE starts_with({}, $1) {order}",
                s.name, keys[0]
            ),
            spec: s,
        }
    }
}

/// The value parameter of an upsert.
pub enum ValParam {
    /// Text / JSON text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl ValParam {
    /// Converts stored bytes for column kind `v`.
    pub fn of(v: ValCol, bytes: Vec<u8>) -> Result<Option<ValParam>, StoreError> {
        match v {
            ValCol::None => Ok(None),
            ValCol::Bytes => Ok(Some(ValParam::Bytes(bytes))),
            ValCol::Json | ValCol::Text => String::from_utf8(bytes)
                .map(|s| Some(ValParam::Text(s)))
                .map_err(|_| StoreError::Corrupt {
                    what: "value",
                    reason: "not UTF-8".into(),
                }),
        }
    }

    /// As a statement parameter.
    pub fn param(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            ValParam::Text(s) => s,
            ValParam::Bytes(b) => b,
        }
    }
}

/// Reads the value column (index `i`) of a row.
pub fn row_val(
    v: ValCol,
    row: &tokio_postgres::Row,
    i: usize,
) -> Result<Vec<u8>, tokio_postgres::Error> {
    Ok(match v {
        ValCol::None => Vec::new(),
        ValCol::Bytes => row.try_get::<_, Vec<u8>>(i)?,
        ValCol::Json | ValCol::Text => row.try_get::<_, String>(i)?.into_bytes(),
    })
}

/// Reads the key columns (the first ones) of a row back into the byte key.
pub fn row_key(s: &Spec, row: &tokio_postgres::Row) -> Result<Vec<u8>, tokio_postgres::Error> {
    let mut vals = Vec::with_capacity(s.keys.len());
    for (i, (_, kind)) in s.keys.iter().enumerate() {
        vals.push(match kind {
            KeyCol::Text => KeyVal::Text(row.try_get(i)?),
            KeyCol::Int => KeyVal::Int(row.try_get(i)?),
            KeyCol::Bytes => KeyVal::Bytes(row.try_get(i)?),
        });
    }
    Ok(join_key(&vals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_columns() {
        let q = spec(Table::Queue);
        let k = crate::store::device_key("dev", &42u64.to_be_bytes());
        let cols = split_key(&q, &k).unwrap();
        assert_eq!(cols, vec![KeyVal::Text("dev".into()), KeyVal::Int(42)]);
        assert_eq!(join_key(&cols), k);
        let s = spec(Table::Sessions);
        let k = crate::store::device_key("dev", b"");
        assert_eq!(
            split_key(&s, &k).unwrap(),
            vec![KeyVal::Text("dev".into()), KeyVal::Text(String::new())]
        );
        assert!(split_key(&s, b"no-separator").is_err());
        assert!(split_key(&spec(Table::Audit), b"short").is_err());
        assert!(split_key(&spec(Table::Audit), &u64::MAX.to_be_bytes()).is_err());
    }
}
