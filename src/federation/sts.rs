//! The federated login token (`wresult`) our login page issues and the policy and enrollment
//! endpoints accept as `BinarySecurityToken` (ValueType `…/DeviceEnrollmentUserToken`).
//!
//! Form: `wmsts1.<base64url(JSON {upn, nonce, iat, exp})>.<base64url(HMAC-SHA256)>`. The HMAC
//! key is 32 random bytes in `DATA_DIR/sts-key` (mode 0600), created on first start.
//!
//! Decision — HMAC rather than the CA key: only this server ever verifies the token, so a
//! symmetric MAC is enough, is fast, needs no ASN.1, and keeps the CA key (which may be an
//! operator-supplied enterprise CA) used for certificates only. Deleting the file rotates the
//! key and invalidates every outstanding token and nothing else.
//!
//! Decision — single use: every issued token is also recorded in the store (record kind
//! [`GRANTS`], key `<exp>-<nonce>`), which survives restarts. Windows presents the same token at
//! GetPolicies and then at RequestSecurityToken, so policy only *checks* that the grant exists,
//! and enrollment *takes* it (atomic read-and-delete) before any certificate is issued. A token
//! presented again after an enrollment (or after a failed enrollment attempt) finds no grant and
//! is refused. Expired grants are pruned when new tokens are issued.

use aws_lc_rs::hmac;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::store::records::Kind;
use crate::store::{RecordStore, StoreError};

/// Token prefix (format version).
pub const PREFIX: &str = "wmsts1";
/// Lifetime of an issued token, in seconds.
pub const TOKEN_TTL_SECS: i64 = 600;
/// Name of the key file in the data directory.
pub const KEY_FILE: &str = "sts-key";

/// The recorded grant of an issued, not yet used token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The user it was issued to.
    pub upn: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
}

/// Outstanding grants, keyed `<exp zero-padded>-<nonce>` so expired ones sort first.
pub const GRANTS: Kind<Grant> = Kind::new("sts_grant");

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    upn: String,
    nonce: String,
    iat: i64,
    exp: i64,
}

/// Why a login token was refused (the `Display` text is logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsError {
    /// Not a token of ours.
    #[error("malformed login token: {0}")]
    Malformed(&'static str),
    /// MAC does not verify (forged, tampered, or made with another key).
    #[error("login token signature invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("login token expired (exp {exp}, now {now})")]
    Expired {
        /// Expiry.
        exp: i64,
        /// Server time.
        now: i64,
    },
    /// No outstanding grant: already used for an enrollment, or never issued here.
    #[error("login token already used (replay) or unknown")]
    Replayed,
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

impl From<StoreError> for StsError {
    fn from(e: StoreError) -> Self {
        StsError::Store(e.to_string())
    }
}

/// Where the token is being presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// GetPolicies: the grant must exist; it is kept.
    Policy,
    /// RequestSecurityToken: the grant is consumed.
    Enroll,
}

/// Issues and verifies login tokens.
pub struct Sts {
    key: hmac::Key,
}

impl std::fmt::Debug for Sts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sts(..)")
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Sts {
    /// A signer with this raw key.
    pub fn with_key(raw: &[u8]) -> Sts {
        Sts {
            key: hmac::Key::new(hmac::HMAC_SHA256, raw),
        }
    }

    /// Loads `DATA_DIR/sts-key`, creating it (32 random bytes, hex, mode 0600) when absent.
    pub fn load_or_create(data_dir: &std::path::Path) -> Result<Sts, crate::pki::PkiError> {
        let path = data_dir.join(KEY_FILE);
        if let Ok(t) = std::fs::read_to_string(&path) {
            let t = t.trim();
            if t.len() >= 64 {
                return Ok(Sts::with_key(t.as_bytes()));
            }
        }
        let key = crate::clock::random_hex(32);
        crate::pki::write_secret(&path, format!("{key}\n").as_bytes())?;
        Ok(Sts::with_key(key.as_bytes()))
    }

    /// Issues a token for `upn` at `now` and records its grant.
    pub fn issue(&self, store: &dyn RecordStore, upn: &str, now: i64) -> Result<String, StsError> {
        prune(store, now);
        let p = Payload {
            upn: upn.to_string(),
            nonce: crate::clock::random_hex(16),
            iat: now,
            exp: now + TOKEN_TTL_SECS,
        };
        let json = serde_json::to_vec(&p).map_err(|e| StsError::Store(e.to_string()))?;
        let input = format!("{PREFIX}.{}", b64(&json));
        let tag = hmac::sign(&self.key, input.as_bytes());
        let inserted = GRANTS.insert_new(
            store,
            &grant_key(p.exp, &p.nonce),
            &Grant {
                upn: p.upn.clone(),
                exp: p.exp,
            },
        )?;
        if !inserted {
            return Err(StsError::Store("nonce collision".into()));
        }
        Ok(format!("{input}.{}", b64(tag.as_ref())))
    }

    /// Verifies `token` at `now` for `stage`; returns the UPN it was issued to.
    pub fn verify(
        &self,
        store: &dyn RecordStore,
        token: &[u8],
        now: i64,
        stage: Stage,
    ) -> Result<String, StsError> {
        let p = self.check(token, now)?;
        let key = grant_key(p.exp, &p.nonce);
        let grant = match stage {
            Stage::Policy => GRANTS.get(store, &key)?,
            Stage::Enroll => GRANTS.take(store, &key)?,
        };
        match grant {
            Some(g) if g.upn == p.upn => Ok(p.upn),
            _ => Err(StsError::Replayed),
        }
    }

    /// MAC and expiry (no store access).
    fn check(&self, token: &[u8], now: i64) -> Result<Payload, StsError> {
        if token.len() > 4096 {
            return Err(StsError::Malformed("too long"));
        }
        let text = std::str::from_utf8(token)
            .map_err(|_| StsError::Malformed("not UTF-8"))?
            .trim();
        let mut parts = text.split('.');
        let (Some(prefix), Some(body), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(StsError::Malformed("not three dot-separated segments"));
        };
        if prefix != PREFIX {
            return Err(StsError::Malformed("unknown token version"));
        }
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StsError::Malformed("signature is not base64url"))?;
        hmac::verify(&self.key, format!("{prefix}.{body}").as_bytes(), &tag)
            .map_err(|_| StsError::BadSignature)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| StsError::Malformed("payload is not base64url"))?;
        let p: Payload =
            serde_json::from_slice(&json).map_err(|_| StsError::Malformed("payload"))?;
        if now >= p.exp {
            return Err(StsError::Expired { exp: p.exp, now });
        }
        Ok(p)
    }
}

fn grant_key(exp: i64, nonce: &str) -> String {
    format!("{:012}-{nonce}", exp.max(0))
}

/// Deletes up to 64 expired grants (oldest first). Best effort: failures are only logged.
fn prune(store: &dyn RecordStore, now: i64) {
    match GRANTS.list(store, None, 64) {
        Ok(items) => {
            for (k, g) in items {
                if g.exp > now {
                    break;
                }
                let _ = GRANTS.delete(store, &k);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not prune expired login grants"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;

    #[test]
    fn issue_verify_policy_then_enroll_once() {
        let store = MemStore::new();
        let sts = Sts::with_key(b"k");
        let t = sts.issue(&store, "a@b.c", 1000).unwrap();
        for _ in 0..2 {
            assert_eq!(
                sts.verify(&store, t.as_bytes(), 1001, Stage::Policy)
                    .unwrap(),
                "a@b.c"
            );
        }
        assert_eq!(
            sts.verify(&store, t.as_bytes(), 1002, Stage::Enroll)
                .unwrap(),
            "a@b.c"
        );
        for st in [Stage::Enroll, Stage::Policy] {
            assert_eq!(
                sts.verify(&store, t.as_bytes(), 1003, st),
                Err(StsError::Replayed)
            );
        }
    }

    #[test]
    fn refusals() {
        let store = MemStore::new();
        let sts = Sts::with_key(b"k");
        let t = sts.issue(&store, "a@b.c", 1000).unwrap();
        assert!(matches!(
            sts.verify(&store, t.as_bytes(), 1000 + TOKEN_TTL_SECS, Stage::Policy),
            Err(StsError::Expired { .. })
        ));
        let other = Sts::with_key(b"other");
        assert_eq!(
            other.verify(&store, t.as_bytes(), 1001, Stage::Policy),
            Err(StsError::BadSignature)
        );
        // tampered payload (another UPN) keeps the old MAC
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(br#"{"upn":"ceo@b.c","nonce":"00","iat":1000,"exp":1600}"#),
            parts[2]
        );
        assert_eq!(
            sts.verify(&store, forged.as_bytes(), 1001, Stage::Policy),
            Err(StsError::BadSignature)
        );
        for bad in [&b"x"[..], b"wmsts2.a.b", b"wmsts1.a.!!", &[0xff]] {
            assert!(matches!(
                sts.verify(&store, bad, 1001, Stage::Policy),
                Err(StsError::Malformed(_))
            ));
        }
        // a valid MAC without a recorded grant (e.g. the store was restored) is refused
        let store2 = MemStore::new();
        assert_eq!(
            sts.verify(&store2, t.as_bytes(), 1001, Stage::Policy),
            Err(StsError::Replayed)
        );
    }

    #[test]
    fn expired_grants_are_pruned() {
        let store = MemStore::new();
        let sts = Sts::with_key(b"k");
        sts.issue(&store, "a@b.c", 1000).unwrap();
        sts.issue(&store, "a@b.c", 5000).unwrap();
        assert_eq!(GRANTS.list(&store, None, 10).unwrap().len(), 1);
    }

    #[test]
    fn key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = MemStore::new();
        let a = Sts::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let t = a.issue(&store, "a@b.c", 1000).unwrap();
        let b = Sts::load_or_create(dir.path()).unwrap();
        assert!(b.verify(&store, t.as_bytes(), 1001, Stage::Policy).is_ok());
    }
}
