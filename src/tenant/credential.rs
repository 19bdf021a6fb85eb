//! The app registration's credential: a certificate with its RSA private key (preferred, as
//! <https://learn.microsoft.com/entra/identity-platform/certificate-credentials> describes) or a
//! client secret. Checked when given (the key must be the certificate's, the certificate in its
//! validity), stored in `<data dir>/tenant/credential.json` with mode 0600 through
//! [`crate::fsio::write_atomic`], never logged (`Debug` hides it) and never returned by the API:
//! only its kind and the certificate's thumbprints are shown.

use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// Longest client secret accepted.
pub const MAX_SECRET: usize = 1024;
/// Longest PEM text accepted (certificate or key).
pub const MAX_PEM: usize = 64 * 1024;

/// The credential as stored (and as the API receives it).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stored {
    /// A certificate registered on the app, with its private key.
    Certificate {
        /// PEM certificate.
        certificate_pem: String,
        /// PEM private key (PKCS#8 or PKCS#1 RSA).
        private_key_pem: String,
    },
    /// A client secret.
    Secret {
        /// The secret's value.
        secret: String,
    },
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stored::Certificate { .. } => f.write_str("Certificate(<hidden>)"),
            Stored::Secret { .. } => f.write_str("Secret(<hidden>)"),
        }
    }
}

/// A certificate credential ready to sign.
pub struct Certificate {
    /// The certificate (DER).
    pub der: Vec<u8>,
    key: RsaKeyPair,
    /// SHA-1 thumbprint, upper-case hex (what the Entra portal shows).
    pub thumbprint: String,
    /// Base64url SHA-256 thumbprint (the assertion's `x5t#S256`).
    pub x5t_s256: String,
    /// End of validity (Unix seconds).
    pub not_after: i64,
}

impl Certificate {
    /// The RSA key pair.
    pub fn key(&self) -> &RsaKeyPair {
        &self.key
    }
}

/// A loaded credential.
pub enum Credential {
    /// Certificate and key.
    Certificate(Certificate),
    /// Client secret.
    Secret(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Certificate(c) => write!(f, "Certificate({})", c.thumbprint),
            Credential::Secret(_) => f.write_str("Secret(<hidden>)"),
        }
    }
}

/// What the API and CLI show of a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// `certificate` or `secret`.
    pub kind: String,
    /// SHA-1 thumbprint (certificate only).
    pub thumbprint: Option<String>,
    /// SHA-256 thumbprint, base64url (certificate only).
    pub thumbprint_sha256: Option<String>,
    /// End of the certificate's validity (Unix seconds).
    pub not_after: Option<i64>,
}

impl Credential {
    /// Its summary (no secret in it).
    pub fn summary(&self) -> Summary {
        match self {
            Credential::Certificate(c) => Summary {
                kind: "certificate".into(),
                thumbprint: Some(c.thumbprint.clone()),
                thumbprint_sha256: Some(c.x5t_s256.clone()),
                not_after: Some(c.not_after),
            },
            Credential::Secret(_) => Summary {
                kind: "secret".into(),
                thumbprint: None,
                thumbprint_sha256: None,
                not_after: None,
            },
        }
    }
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Checks a stored or submitted credential and loads it; `now` checks the certificate's
/// validity. The error is for the admin (it never quotes the key or the secret).
pub fn load(s: &Stored, now: i64) -> Result<Credential, String> {
    match s {
        Stored::Secret { secret } => {
            let t = secret.trim();
            if t.is_empty() || t.len() > MAX_SECRET || t.chars().any(char::is_control) {
                return Err(format!(
                    "client secret: give 1 to {MAX_SECRET} characters without control characters"
                ));
            }
            Ok(Credential::Secret(t.to_string()))
        }
        Stored::Certificate {
            certificate_pem,
            private_key_pem,
        } => {
            if certificate_pem.len() > MAX_PEM || private_key_pem.len() > MAX_PEM {
                return Err(format!("certificate and key: at most {MAX_PEM} bytes each"));
            }
            let cert = CertificateDer::from_pem_slice(certificate_pem.as_bytes())
                .map_err(|e| format!("certificate: not a PEM certificate ({e})"))?;
            let key = match PrivateKeyDer::from_pem_slice(private_key_pem.as_bytes())
                .map_err(|_| "private key: not a PEM private key".to_string())?
            {
                PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
                PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
                _ => {
                    return Err(
                        "private key: Microsoft Entra certificate credentials are RSA keys (PKCS#8 or PKCS#1)"
                            .into(),
                    )
                }
            }
            .map_err(|_| "private key: not a usable RSA private key (2048 bits or more)".to_string())?;
            let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
                .map_err(|e| format!("certificate: cannot be parsed ({e})"))?;
            let spki = x509.public_key().subject_public_key.data.as_ref();
            use aws_lc_rs::signature::KeyPair as _;
            if spki != key.public_key().as_ref() {
                return Err("the private key does not belong to the certificate".into());
            }
            let not_after = x509.validity().not_after.timestamp();
            let not_before = x509.validity().not_before.timestamp();
            if now > not_after {
                return Err(format!(
                    "certificate: expired at {} (Unix time); upload a new one to the app registration",
                    not_after
                ));
            }
            if now < not_before {
                return Err("certificate: not valid yet".into());
            }
            let der = cert.as_ref().to_vec();
            let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
            let thumbprint = sha1
                .as_ref()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>();
            let x5t_s256 = b64url(digest::digest(&digest::SHA256, &der).as_ref());
            Ok(Credential::Certificate(Certificate {
                der,
                key,
                thumbprint,
                x5t_s256,
                not_after,
            }))
        }
    }
}

/// Where the credential is kept.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("tenant").join("credential.json")
}

/// Stores the credential (0600, atomically).
pub fn save(data_dir: &Path, s: &Stored) -> std::io::Result<()> {
    let p = path(data_dir);
    if let Some(dir) = p.parent() {
        crate::fsio::create_dir_mode(dir, 0o700)?;
    }
    let bytes = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    crate::fsio::write_atomic(&p, &bytes, 0o600)
}

/// Reads the stored credential (`None` when there is none).
pub fn read(data_dir: &Path) -> Result<Option<Stored>, String> {
    let p = path(data_dir);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{}: unreadable ({e})", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// Removes the stored credential (no error when absent).
pub fn remove(data_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(data_dir)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let s = Stored::Secret {
            secret: "hunter2-very-secret".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        let c = load(&s, 0).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.summary().kind, "secret");
    }

    #[test]
    fn empty_or_control_secrets_are_refused() {
        for bad in ["", "  ", "a\u{1}b"] {
            assert!(load(&Stored::Secret { secret: bad.into() }, 0).is_err());
        }
    }

    #[test]
    fn a_key_must_belong_to_its_certificate() {
        let k1 = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let k2 = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["winmdm-test".into()]).unwrap();
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(1);
        let cert = params.self_signed(&k1).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let good = Stored::Certificate {
            certificate_pem: cert.pem(),
            private_key_pem: k1.serialize_pem(),
        };
        let c = load(&good, now).unwrap();
        let s = c.summary();
        assert_eq!(s.kind, "certificate");
        assert_eq!(s.thumbprint.as_deref().map(str::len), Some(40));
        let wrong = Stored::Certificate {
            certificate_pem: cert.pem(),
            private_key_pem: k2.serialize_pem(),
        };
        let e = load(&wrong, now).unwrap_err();
        assert!(e.contains("does not belong"), "{e}");
        assert!(load(&good, now + 2 * 86_400)
            .unwrap_err()
            .contains("expired"));
    }

    #[test]
    fn stored_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = Stored::Secret {
            secret: "abc".into(),
        };
        save(dir.path(), &s).unwrap();
        let m = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o600);
        assert_eq!(read(dir.path()).unwrap(), Some(s));
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }
}
