//! Signed download URLs: Windows fetches an app package with BITS, which does not present the
//! MDM client certificate, so the URL itself carries the authority to download: a token binding
//! (app id, device id, expiry) with HMAC-SHA256 under a server key.
//!
//! Token: `base64url(device_id) "." expiry "." base64url(tag)`, tag over
//! `winmdm-app-content\0<app_id>\0<device_id>\0<expiry>`. The key is `DATA_DIR/app-url-key`
//! (32 random bytes as hex, mode 0600), created on first start. Nodes sharing a store must
//! share this file (like the CA key) so that any node serves a URL another node signed.

use aws_lc_rs::hmac;
use base64::Engine;

/// The key file in the data directory.
pub const KEY_FILE: &str = "app-url-key";

const DOMAIN: &str = "winmdm-app-content";

/// Longest device id accepted in a token.
const MAX_DEVICE_ID: usize = 256;

/// Signs and verifies download tokens.
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

/// Why a token was refused (logged, never told to the client beyond 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the token's shape.
    #[error("malformed token")]
    Malformed,
    /// The tag does not match (forged, or signed for another app or device).
    #[error("bad signature (forged, or for another app or device)")]
    BadSignature,
    /// Past its expiry.
    #[error("expired at {0}")]
    Expired(i64),
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn input(app_id: &str, device_id: &str, exp: i64) -> String {
    format!("{DOMAIN}\0{app_id}\0{device_id}\0{exp}")
}

impl Signer {
    /// A signer with this raw key.
    pub fn with_key(raw: &[u8]) -> Signer {
        Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, raw),
        }
    }

    /// A signer with a random key (tests, fuzzing).
    pub fn random() -> Signer {
        Signer::with_key(crate::clock::random_hex(32).as_bytes())
    }

    /// Loads `DATA_DIR/app-url-key`, creating it (mode 0600) when absent.
    pub fn load_or_create(data_dir: &std::path::Path) -> Result<Signer, crate::pki::PkiError> {
        let path = data_dir.join(KEY_FILE);
        if let Ok(t) = std::fs::read_to_string(&path) {
            let t = t.trim();
            if t.len() >= 64 {
                return Ok(Signer::with_key(t.as_bytes()));
            }
        }
        let key = crate::clock::random_hex(32);
        crate::pki::write_secret(&path, format!("{key}\n").as_bytes())?;
        Ok(Signer::with_key(key.as_bytes()))
    }

    /// A token letting `device_id` download `app_id` until `exp` (Unix seconds).
    pub fn sign(&self, app_id: &str, device_id: &str, exp: i64) -> String {
        let tag = hmac::sign(&self.key, input(app_id, device_id, exp).as_bytes());
        format!("{}.{exp}.{}", b64(device_id.as_bytes()), b64(tag.as_ref()))
    }

    /// Checks `token` for `app_id` at `now`; returns the device id it was signed for.
    pub fn verify(&self, app_id: &str, token: &str, now: i64) -> Result<String, TokenError> {
        let mut parts = token.split('.');
        let (Some(d), Some(e), Some(t), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let dec = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| TokenError::Malformed)
        };
        let device = String::from_utf8(dec(d)?).map_err(|_| TokenError::Malformed)?;
        if device.is_empty() || device.len() > MAX_DEVICE_ID {
            return Err(TokenError::Malformed);
        }
        if e.is_empty() || e.len() > 12 || !e.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::Malformed);
        }
        let exp: i64 = e.parse().map_err(|_| TokenError::Malformed)?;
        let tag = dec(t)?;
        hmac::verify(&self.key, input(app_id, &device, exp).as_bytes(), &tag)
            .map_err(|_| TokenError::BadSignature)?;
        if now >= exp {
            return Err(TokenError::Expired(exp));
        }
        Ok(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_app_device_and_expiry() {
        let s = Signer::random();
        let t = s.sign("app1", "dev-A", 1000);
        assert_eq!(s.verify("app1", &t, 999).unwrap(), "dev-A");
        assert_eq!(s.verify("app1", &t, 1000), Err(TokenError::Expired(1000)));
        assert_eq!(s.verify("app2", &t, 10), Err(TokenError::BadSignature));
        // Another device's id with this tag; a later expiry with this tag.
        let parts: Vec<&str> = t.split('.').collect();
        let other = format!("{}.{}.{}", b64(b"dev-B"), parts[1], parts[2]);
        assert_eq!(s.verify("app1", &other, 10), Err(TokenError::BadSignature));
        let later = format!("{}.{}.{}", parts[0], 99_999, parts[2]);
        assert_eq!(s.verify("app1", &later, 10), Err(TokenError::BadSignature));
        // Another key.
        assert_eq!(
            Signer::random().verify("app1", &t, 10),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            "a.b",
            "a.1.c.d",
            "!!.1.x",
            &format!("{}.-1.{}", parts[0], parts[2]),
        ] {
            assert_eq!(
                s.verify("app1", bad, 10),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }
}
