//! Passphrase encryption of a backup's key files: argon2id derives a 256-bit key from the
//! passphrase and a random salt, AES-256-GCM seals the bytes with a random nonce. The parameters,
//! salt and nonce travel in the manifest; the passphrase never does.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine;
use serde::{Deserialize, Serialize};

const AAD: &[u8] = b"winmdm-backup-keys-v1";
/// argon2id memory cost (KiB), time cost and lanes used for new backups.
const M_KIB: u32 = 64 * 1024;
const T: u32 = 3;
const P: u32 = 1;
/// Largest parameters accepted when restoring (a hostile manifest must not ask for gigabytes).
const MAX_M_KIB: u32 = 1024 * 1024;
const MAX_T: u32 = 16;

/// How the key files were sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Always `argon2id`.
    pub kdf: String,
    /// argon2 memory cost, KiB.
    pub m_kib: u32,
    /// argon2 iterations.
    pub t: u32,
    /// argon2 lanes.
    pub p: u32,
    /// Salt, base64.
    pub salt: String,
    /// Always `aes-256-gcm`.
    pub cipher: String,
    /// Nonce, base64.
    pub nonce: String,
}

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptError {
    /// Wrong passphrase, or the sealed bytes were changed.
    #[error("cannot decrypt the key files: wrong passphrase, or the archive was altered")]
    Open,
    /// The manifest names parameters we do not use or accept.
    #[error("unsupported key encryption: {0}")]
    Unsupported(String),
    /// The system could not provide what was needed (random bytes, memory).
    #[error("key encryption failed: {0}")]
    System(String),
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn derive(pass: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32], CryptError> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| CryptError::Unsupported(format!("argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    a.hash_password_into(pass, salt, &mut key)
        .map_err(|e| CryptError::System(format!("argon2: {e}")))?;
    Ok(key)
}

fn aead(key: &[u8; 32]) -> Result<LessSafeKey, CryptError> {
    let k = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptError::System("AES key".into()))?;
    Ok(LessSafeKey::new(k))
}

/// Seals `plain` under `passphrase`.
pub fn seal(passphrase: &str, mut plain: Vec<u8>) -> Result<(Sealed, Vec<u8>), CryptError> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| CryptError::System("random salt".into()))?;
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| CryptError::System("random nonce".into()))?;
    let key = derive(passphrase.as_bytes(), &salt, M_KIB, T, P)?;
    aead(&key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(AAD),
            &mut plain,
        )
        .map_err(|_| CryptError::System("AES-GCM seal".into()))?;
    let sealed = Sealed {
        kdf: "argon2id".into(),
        m_kib: M_KIB,
        t: T,
        p: P,
        salt: b64().encode(salt),
        cipher: "aes-256-gcm".into(),
        nonce: b64().encode(nonce),
    };
    Ok((sealed, plain))
}

/// Opens what [`seal`] made.
pub fn open(passphrase: &str, s: &Sealed, mut sealed: Vec<u8>) -> Result<Vec<u8>, CryptError> {
    if s.kdf != "argon2id" || s.cipher != "aes-256-gcm" {
        return Err(CryptError::Unsupported(format!("{} + {}", s.kdf, s.cipher)));
    }
    if s.m_kib > MAX_M_KIB || s.t > MAX_T || s.p == 0 || s.p > 16 {
        return Err(CryptError::Unsupported(format!(
            "argon2 m={} KiB t={} p={} exceeds what restore accepts",
            s.m_kib, s.t, s.p
        )));
    }
    let salt = b64()
        .decode(&s.salt)
        .map_err(|_| CryptError::Unsupported("salt is not base64".into()))?;
    let nonce: [u8; NONCE_LEN] = b64()
        .decode(&s.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| CryptError::Unsupported("nonce".into()))?;
    let key = derive(passphrase.as_bytes(), &salt, s.m_kib, s.t, s.p)?;
    let n = aead(&key)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(AAD),
            &mut sealed,
        )
        .map_err(|_| CryptError::Open)?
        .len();
    sealed.truncate(n);
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_wrong_passphrase_and_tamper() {
        let (s, c) = seal("correct horse", b"the CA key".to_vec()).unwrap();
        assert_ne!(&c[..10], b"the CA key");
        assert_eq!(open("correct horse", &s, c.clone()).unwrap(), b"the CA key");
        assert_eq!(open("wrong", &s, c.clone()), Err(CryptError::Open));
        let mut t = c.clone();
        t[0] ^= 1;
        assert_eq!(open("correct horse", &s, t), Err(CryptError::Open));
        let greedy = Sealed {
            m_kib: 8 * 1024 * 1024,
            ..s.clone()
        };
        assert!(matches!(
            open("correct horse", &greedy, c),
            Err(CryptError::Unsupported(_))
        ));
    }
}
