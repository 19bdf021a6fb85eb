//! Device authentication for the management endpoint: TLS client certificate → [`DeviceAuthenticated`].
//!
//! The binding (see `ca`): a device certificate's subject CN is the DeviceID it was issued to, and
//! the store records every serial with its DeviceID. A request is a device's only if its TLS client
//! certificate (already verified by rustls to chain to our CA and be within its validity) is one
//! we issued, is not revoked, is the current certificate of an enrolled device with that DeviceID
//! (or, after a renewal, the replaced one during its grace period, see `mdm::renew`), and —
//! checked by the session layer — the SyncML `SyncHdr/Source/LocURI` names the same device.
//! This is checked on every request, not once per connection: TLS resumption keeps the original
//! certificate even after it was revoked. What cannot change while a connection lives — the
//! certificate's structure and the CA's signature on it — is checked once per connection
//! ([`ConnectionIdentity`]); its validity period and the store's binding on every request.

use std::sync::OnceLock;

use crate::ca::{Ca, CaError, CertIdentity};
use crate::store::{DeviceState, Store, StoreError};

/// Proof that a request comes from an enrolled device holding its current certificate. Only
/// [`authenticate`] makes one.
#[derive(Debug, Clone)]
pub struct DeviceAuthenticated {
    device_id: String,
    serial: String,
}

impl DeviceAuthenticated {
    /// The DeviceID.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Serial of the certificate presented.
    pub fn serial(&self) -> &str {
        &self.serial
    }
}

/// Why a request is not a device's.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No client certificate in the TLS handshake.
    #[error("no client certificate presented")]
    NoCertificate,
    /// The certificate cannot be read.
    #[error("client certificate unreadable: {reason}")]
    Malformed {
        /// Parser message.
        reason: String,
    },
    /// Not issued by our CA, outside its validity, or not a client-auth device certificate.
    #[error("client certificate rejected: {reason}")]
    Rejected {
        /// The CA's reason.
        reason: String,
    },
    /// Not a serial we issued.
    #[error("client certificate {serial} was not issued by this server")]
    UnknownCertificate {
        /// Serial.
        serial: String,
    },
    /// Revoked (re-enrollment, unenrollment, deletion).
    #[error("client certificate {serial} is revoked")]
    Revoked {
        /// Serial.
        serial: String,
    },
    /// Its subject does not match the DeviceID it was issued to.
    #[error("client certificate {serial} subject does not match its device")]
    Mismatch {
        /// Serial.
        serial: String,
    },
    /// The certificate was replaced by a renewal and its grace period is over (see
    /// `mdm::renew`): the device must use its new certificate.
    #[error("client certificate {serial} was replaced by a renewal and its grace period ended")]
    GraceOver {
        /// Serial.
        serial: String,
    },
    /// The device is unknown, unenrolled, or holds a newer certificate.
    #[error("device {device_id} is not enrolled with certificate {serial}")]
    NotEnrolled {
        /// DeviceID.
        device_id: String,
        /// Serial.
        serial: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl AuthError {
    /// HTTP status: 401 without a certificate, 503 while the store is unavailable (500 for a
    /// corrupt record), else 403.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::NoCertificate => 401,
            AuthError::Store(e) if e.is_unavailable() => 503,
            AuthError::Store(_) => 500,
            _ => 403,
        }
    }
}

/// Authenticates the holder of `cert_der` (the TLS client certificate) at time `now`: the CA
/// re-checks issuer, signature, validity and EKU (defence in depth behind rustls), then the store
/// decides whether that serial is the current, unrevoked certificate of an enrolled device.
pub fn authenticate(
    store: &dyn Store,
    ca: &Ca,
    cert_der: Option<&[u8]>,
    now: i64,
) -> Result<DeviceAuthenticated, AuthError> {
    let der = cert_der.ok_or(AuthError::NoCertificate)?;
    let id = ca.authenticate_device_cert(der, at(now)).map_err(ca_err)?;
    bound_device(store, id, now)
}

/// Authenticates a request that arrived without a TLS client certificate (behind a
/// TLS-terminating proxy) by the device's own message signature: the `MDM-Signature` header, a
/// detached CMS SignedData over the body made with the device's identity certificate (DMClient
/// `RequireMessageSigning`). The same binding rules apply to the signer's certificate.
pub fn authenticate_signed(
    store: &dyn Store,
    ca: &Ca,
    signature_header: &str,
    body: &[u8],
    now: i64,
) -> Result<DeviceAuthenticated, AuthError> {
    let id =
        crate::ca::verify_signature_header(ca, signature_header, body, at(now)).map_err(ca_err)?;
    bound_device(store, id, now)
}

/// What one connection's client certificate was found to be, kept for the connection's later
/// requests (the certificate of a TLS connection never changes): one CA signature check and
/// two certificate parses per connection instead of per request.
#[derive(Debug, Clone, Default)]
pub struct ConnectionIdentity(OnceLock<CertIdentity>);

/// [`authenticate`] for a request on a connection: the CA's checks of `cert_der` come from
/// `memo` when an earlier request of the connection passed them; the validity period is checked
/// against `now` and the store's binding (revocation, current certificate) is read every time.
pub fn authenticate_on(
    store: &dyn Store,
    ca: &Ca,
    cert_der: Option<&[u8]>,
    now: i64,
    memo: &ConnectionIdentity,
) -> Result<DeviceAuthenticated, AuthError> {
    let der = cert_der.ok_or(AuthError::NoCertificate)?;
    let id = match memo.0.get() {
        Some(id) => {
            let t = at(now);
            if t < id.not_before {
                return Err(AuthError::Rejected {
                    reason: "not yet valid".into(),
                });
            }
            if t > id.not_after {
                return Err(AuthError::Rejected {
                    reason: "expired".into(),
                });
            }
            id.clone()
        }
        None => {
            let id = ca.authenticate_device_cert(der, at(now)).map_err(ca_err)?;
            let _ = memo.0.set(id.clone());
            id
        }
    };
    bound_device(store, id, now)
}

fn at(now: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn ca_err(e: CaError) -> AuthError {
    match e {
        CaError::CertMalformed { reason } => AuthError::Malformed { reason },
        other => AuthError::Rejected {
            reason: other.to_string(),
        },
    }
}

/// The store's half: the serial is ours, unrevoked, and the current certificate of the enrolled
/// device named by its CN — or the certificate its last renewal replaced, until the device uses
/// the new one or the grace period ends (`Device::previous_cert`).
fn bound_device(
    store: &dyn Store,
    id: crate::ca::CertIdentity,
    now: i64,
) -> Result<DeviceAuthenticated, AuthError> {
    let serial = id.serial_hex;
    let cn = id.device_id;
    let rec = store
        .get_cert(&serial)?
        .ok_or_else(|| AuthError::UnknownCertificate {
            serial: serial.clone(),
        })?;
    if rec.revoked_at.is_some() {
        return Err(AuthError::Revoked { serial });
    }
    if rec.device_id != cn {
        return Err(AuthError::Mismatch { serial });
    }
    let not_enrolled = || AuthError::NotEnrolled {
        device_id: cn.clone(),
        serial: serial.clone(),
    };
    // Only the binding: the round reads the whole record again under the device's lock.
    let device = store.get_device_binding(&cn)?.ok_or_else(not_enrolled)?;
    if device.state != DeviceState::Enrolled {
        return Err(not_enrolled());
    }
    let authenticated = |serial: String| {
        Ok(DeviceAuthenticated {
            device_id: cn.clone(),
            serial,
        })
    };
    if device.cert_serial == serial {
        return authenticated(serial);
    }
    match &device.previous_cert {
        Some(p) if p.serial == serial && now <= p.grace_until => authenticated(serial),
        Some(p) if p.serial == serial => Err(AuthError::GraceOver { serial }),
        _ => Err(not_enrolled()),
    }
}
