//! The server's key material on disk: the enrollment CA, the TLS server certificate and the
//! admin bootstrap token, created in the data directory on first start and reused afterwards.
//!
//! Layout (directories 0700, secrets 0600, never logged):
//! ```text
//! DATA_DIR/ca/ca.pem        enrollment CA certificate (name-constrained to the server's hosts)
//! DATA_DIR/ca/ca.key        its private key                     (0600)
//! DATA_DIR/tls/server.pem   TLS server certificate (EC P-256, signed by the CA) + CA
//! DATA_DIR/tls/server.key   its private key                     (0600)
//! DATA_DIR/tls/host         the host names the certificate was made for (comma-separated)
//! DATA_DIR/admin-token      admin bearer token, if WINMDM_ADMIN_TOKEN is unset (0600)
//! DATA_DIR/store.redb       the store (redb; see store::embedded for the move from sled)
//! ```
//! Every file is written atomically and durably ([`crate::fsio::write_atomic`]): after a power
//! cut it holds its old content or its new one, never a part.
//! An admin may supply their own CA and/or TLS certificate instead (config `ca_cert`/`tls_cert`);
//! those files are read in place, never copied.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::Ca;
use crate::clock::Clock;
use crate::config::Config;

/// Key material loaded at start.
pub struct Pki {
    /// The enrollment CA.
    pub ca: Ca,
    /// TLS server certificate chain (leaf first).
    pub tls_chain: Vec<CertificateDer<'static>>,
    /// TLS server private key.
    pub tls_key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

/// Failure to prepare key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The CA failed to generate, load or sign.
    #[error("certificate authority: {0}")]
    Ca(#[from] crate::ca::CaError),
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> PkiError {
    PkiError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Creates `dir` (and parents) with mode 0700 if missing, durably (each new directory's parent
/// is `fsync`ed).
pub fn ensure_private_dir(dir: &Path) -> Result<(), PkiError> {
    crate::fsio::create_dir_mode(dir, 0o700).map_err(|e| io_err(dir, e))
}

/// Writes a secret file with mode 0600 (from its creation), replacing any old one atomically
/// and durably ([`crate::fsio::write_atomic`]).
pub fn write_secret(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    crate::fsio::write_atomic(path, data, 0o600).map_err(|e| io_err(path, e))
}

/// Writes a public file (certificates, host names) atomically and durably, with the mode
/// `fs::write` would give (0666 less the umask).
fn write_public(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    crate::fsio::write_atomic(path, data, 0o666).map_err(|e| io_err(path, e))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| io_err(path, e))
}

/// The host names the server answers to: the public URL's host, then the management URL's
/// host when it differs. A generated CA is name-constrained to these, and a generated TLS
/// certificate names them.
pub fn server_hosts(cfg: &Config) -> Vec<String> {
    let mut hosts = vec![cfg.public_url.host.clone()];
    if cfg.mgmt_url.host != cfg.public_url.host {
        hosts.push(cfg.mgmt_url.host.clone());
    }
    hosts
}

/// Loads the CA and TLS material, generating what is missing.
pub fn load_or_create(cfg: &Config, clock: &dyn Clock) -> Result<Pki, PkiError> {
    ensure_private_dir(&cfg.data_dir)?;
    let hosts = server_hosts(cfg);
    let ca = match &cfg.ca_cert {
        Some((cert, key)) => Ca::from_pem(&read(cert)?, &read(key)?)?,
        None => {
            let dir = cfg.data_dir.join("ca");
            ensure_private_dir(&dir)?;
            let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
            if cert.exists() && key.exists() {
                Ca::from_pem(&read(&cert)?, &read(&key)?)?
            } else {
                let ca = Ca::generate_constrained(
                    cfg.ca_key_algorithm,
                    "winmdm enrollment CA",
                    &hosts,
                    clock.now(),
                )?;
                write_secret(&key, ca.key_pem().as_bytes())?;
                write_public(&cert, ca.cert_pem().as_bytes())?;
                tracing::info!(path = %cert.display(), algorithm = ?cfg.ca_key_algorithm, thumbprint = %ca.thumbprint(), hosts = ?hosts, "generated enrollment CA (name-constrained to these hosts, EKU serverAuth + clientAuth)");
                ca
            }
        }
    };
    let (chain_path, key_path) = match &cfg.tls_cert {
        Some((c, k)) => (c.clone(), k.clone()),
        None => {
            let dir = cfg.data_dir.join("tls");
            ensure_private_dir(&dir)?;
            let (c, k, h) = (
                dir.join("server.pem"),
                dir.join("server.key"),
                dir.join("host"),
            );
            let host = hosts.join(",");
            let current = fs::read_to_string(&h).ok();
            if !(c.exists() && k.exists() && current.as_deref() == Some(host.as_str())) {
                if let Some(out) = hosts.iter().find(|h| !ca.permits_host(h)) {
                    return Err(PkiError::Pem {
                        path: cfg.data_dir.join("ca").join("ca.pem"),
                        reason: format!(
                            "the enrollment CA is name-constrained to other host names than {out:?}, so it cannot issue this server's TLS certificate: give a certificate with --tls-cert/--tls-key, or move DATA_DIR/ca away to generate a new CA (every enrolled device must then enroll again)"
                        ),
                    });
                }
                // An EC P-256 key whatever the CA's algorithm: the server signs with it in
                // every full TLS handshake, and an RSA-2048 signature costs about 13 times a
                // P-256 one (README, "The handshake's own cost"). Every Windows 10/11 TLS stack
                // offers ECDSA suites.
                let (cert_pem, key_pem) =
                    ca.issue_server_cert(&hosts, crate::ca::KeyAlgorithm::EcdsaP256, clock.now())?;
                let root = match ca.intermediate_der() {
                    Some(_) => crate::ca::pem_encode("CERTIFICATE", ca.root_der()),
                    None => String::new(),
                };
                write_secret(&k, key_pem.as_bytes())?;
                write_public(&c, format!("{cert_pem}{}{root}", ca.cert_pem()).as_bytes())?;
                write_public(&h, host.as_bytes())?;
                tracing::info!(path = %c.display(), host = %host, "generated TLS server certificate signed by the enrollment CA");
            }
            (c, k)
        }
    };
    let tls_chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&chain_path)
        .map_err(|e| io_err(&chain_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::Pem {
            path: chain_path.clone(),
            reason: e.to_string(),
        })?;
    if tls_chain.is_empty() {
        return Err(PkiError::Pem {
            path: chain_path,
            reason: "no certificate found".into(),
        });
    }
    let tls_key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| PkiError::Pem {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    Ok(Pki {
        ca,
        tls_chain,
        tls_key,
    })
}

/// The admin bearer token: `env_token` if given, else the one in `DATA_DIR/admin-token`, else a
/// new random one written there (0600). Returns the token and, if it came from the file, its path.
pub fn admin_token(
    data_dir: &Path,
    env_token: Option<String>,
) -> Result<(String, Option<PathBuf>), PkiError> {
    if let Some(t) = env_token.filter(|t| !t.trim().is_empty()) {
        return Ok((t.trim().to_string(), None));
    }
    let path = data_dir.join("admin-token");
    if let Ok(t) = fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok((t.trim().to_string(), Some(path)));
        }
    }
    let token = crate::clock::random_hex(32);
    write_secret(&path, format!("{token}\n").as_bytes())?;
    Ok((token, Some(path)))
}

/// A TLS client configuration for calling out (the results webhook, Microsoft Graph): rustls on
/// aws-lc-rs, HTTP/1.1, trusting the system roots plus every PEM certificate in `ca`. `option`
/// names the `--…-ca` option in errors. Errors: `ca` unreadable or holding no certificate, or no
/// root trusted at all.
pub fn outbound_tls(ca: Option<&Path>, option: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        // A system root rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(c);
    }
    if let Some(path) = ca {
        let bad = |e: &dyn std::fmt::Display| format!("{option} {}: {e}", path.display());
        let mut n = 0;
        for c in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad(&"no PEM certificate in it"));
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "no root certificate is trusted (system store empty, no {option})"
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
