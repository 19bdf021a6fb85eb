//! Certificate renewal (ROBO, "renew on behalf of"): MS-WSTEP `RequestSecurityToken` with
//! `RequestType` `http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew` (MS-MDE2 §3.5;
//! PROTOCOL.md §4 "Renewal / recovery").
//!
//! # What the device does
//!
//! The provisioning document advertises `CertificateStore/My/WSTEP/Renew` (`ROBOSupport`,
//! `RenewPeriod`, `RetryInterval`; [`renew_block`]). `RenewPeriod` days before its MDM
//! certificate expires, the device generates a new key, wraps the PKCS#10 in a PKCS#7
//! `SignedData` signed with the current certificate's key, and POSTs the RST to the enrollment
//! URL over TLS with the current certificate as client certificate (no password). It installs
//! the certificate from the response and uses it for its next OMA-DM session; on failure it
//! retries every `RetryInterval` days.
//!
//! # What the server checks ([`renew`])
//!
//! 1. Renewal is enabled; `Recovery` is refused (see below).
//! 2. A TLS client certificate was presented (else `s:Authentication`).
//! 3. It has not expired (else `NotEligibleToRenew`, see below), and it authenticates exactly as
//!    on the management endpoint ([`identity::authenticate`]: issued by us, not revoked, the
//!    current certificate of an enrolled device, or the one its last renewal replaced while that
//!    is still accepted). Failures: `NotEligibleToRenew`.
//! 4. It is inside its renewal window (`not_after − RenewPeriod`), else `NotEligibleToRenew`.
//! 5. The token: PKCS#7 (either `ValueType` spelling) must verify ([`Ca::verify_renewal`]) and be
//!    signed by **the same certificate** as the TLS client certificate (else
//!    `NotEligibleToRenew`); a bare PKCS#10 is also accepted (the TLS handshake already proved
//!    possession of the old key, the CSR signature proves the new one).
//! 6. Every DeviceID the request states names the authenticated device: the CSR's DeviceID
//!    extension, else its subject CN (`<DeviceID>` or Windows' `<GUID>!<DeviceID>`); the
//!    `DeviceID` context item when sent (else `s:CertificateRequest`).
//!
//! Then the CA issues a certificate for the same DeviceID, and one store transaction
//! ([`crate::store::DeviceStore::record_renewal`]) records it as the device's current
//! certificate, keeps the replaced one as `Device::previous_cert` with a grace deadline, and
//! appends the renewal to `Device::renewals`. Only then does the response leave.
//!
//! # The old certificate
//!
//! Both certificates authenticate until the device's first management session with the new one:
//! that session's commit revokes the old one in the same transaction ([`settle_round`]). If the
//! device never uses the new one, the old one is refused once the grace period
//! (`--renew-grace-days`) is over and revoked at the device's next session. A device that lost
//! the response renews again with the old certificate while it is accepted: the unused
//! certificate of the first renewal is revoked and a new one issued (the grace deadline stays).
//! Everything lives in the device record, so a restart changes nothing.
//!
//! # Expired certificates (decision)
//!
//! Refused with `NotEligibleToRenew`; the device must enroll again. Reasons: ROBO is defined as
//! authentication by the *current, valid* MDM certificate (MS-MDE2 §3.5; Microsoft's
//! certificate-renewal guidance: no automatic renewal after expiry); an expired certificate
//! proves nothing a stolen old key could not. The spec's way back for a device whose
//! certificate is unusable is `RequestType` `Recovery`, which a device only sends when the
//! server set DMClient `Recovery/AllowRecovery` or executed `Recovery/InitiateRecovery`; this
//! server does neither, so `Recovery` requests get `NotSupported`. (An expired client
//! certificate normally already fails the TLS handshake; the check here covers clock skew and
//! TLS-terminating setups.)

use crate::app::App;
use crate::ca::{self, CaError, CsrVerified};
use crate::config::Config;
use crate::soap::enroll::{self as wstep, EnrollRequest, RequestType, VALUE_TYPE_PKCS10};
use crate::soap::fault::EnrollError;
use crate::soap::provisioning::{self, CertStore, RenewConfig, RenewalDoc};
use crate::store::{CertRecord, Device, DeviceState, RenewOutcome, RenewalCommit};

use super::enroll::MIN_KEY_BITS;
use super::identity::{self, AuthError};

/// The `WSTEP/Renew` block written into provisioning documents: `Some` only when renewal is
/// enabled. `ServerURL` is the enrollment path on the mutual-TLS management endpoint
/// (`--mgmt-url`): renewal authenticates with the device certificate, and only that listener
/// asks for one.
pub fn renew_block(cfg: &Config) -> Option<RenewConfig> {
    let r = &cfg.renewal;
    r.enabled.then(|| RenewConfig {
        server_url: Some(cfg.mgmt_url.join(crate::config::paths::ENROLLMENT)),
        renew_period_days: r.period_days,
        retry_interval_days: r.retry_days,
        robo_support: true,
    })
}

fn not_eligible(reason: impl Into<String>) -> EnrollError {
    EnrollError::NotEligibleToRenew {
        reason: reason.into(),
    }
}

/// Answers a renewal (or recovery) RST. `client_cert` is the TLS client certificate of the
/// connection, if any. Returns the RSTRC with the new certificate.
pub fn renew(
    app: &App,
    req: &EnrollRequest,
    client_cert: Option<&[u8]>,
) -> Result<Vec<u8>, EnrollError> {
    if req.request_type == RequestType::Recovery {
        return Err(EnrollError::NotSupported {
            reason: "recovery is not offered by this server (DMClient Recovery/AllowRecovery \
                     is never set); enroll the device again"
                .into(),
        });
    }
    if !app.cfg.renewal.enabled {
        return Err(EnrollError::NotSupported {
            reason: "certificate renewal is disabled on this server".into(),
        });
    }
    let der = client_cert.ok_or_else(|| EnrollError::Authentication {
        reason: "renewal without a TLS client certificate (ROBO authenticates with the \
                 device's current MDM certificate)"
            .into(),
    })?;
    let now = app.clock.now();
    let now_unix = now.unix_timestamp();

    // Expiry first, so the device learns why (authenticate() would only say "rejected").
    let presented = ca::device_id_from_cert(der)
        .map_err(|e| not_eligible(format!("client certificate unusable: {e}")))?;
    if now > presented.not_after {
        return Err(not_eligible(format!(
            "certificate {} expired at {}; an expired MDM certificate cannot be renewed, \
             enroll the device again",
            presented.serial_hex,
            crate::clock::rfc3339(presented.not_after.unix_timestamp())
        )));
    }
    let auth =
        identity::authenticate(app.store.as_ref(), &app.ca, Some(der), now_unix).map_err(|e| {
            match e {
                AuthError::Store(s) => EnrollError::EnrollmentServer {
                    reason: format!("store: {s}"),
                },
                other => not_eligible(other.to_string()),
            }
        })?;
    let opens = presented.not_after - time::Duration::days(i64::from(app.cfg.renewal.period_days));
    if now < opens {
        return Err(not_eligible(format!(
            "certificate {} is not due for renewal before {}",
            auth.serial(),
            crate::clock::rfc3339(opens.unix_timestamp())
        )));
    }

    tracing::Span::current().record("device_id", auth.device_id());
    let csr = renewal_csr(app, req, auth.serial(), now)?;
    check_device_ids(req, &csr, auth.device_id())?;

    let cert = app
        .ca
        .issue_device_cert(&csr, auth.device_id(), app.cfg.cert_validity, now)
        .map_err(|e| ca_fault(&e))?;
    let commit = RenewalCommit {
        device_id: auth.device_id().to_string(),
        presented_serial: auth.serial().to_string(),
        cert: CertRecord {
            serial: cert.serial_hex.clone(),
            device_id: auth.device_id().to_string(),
            thumbprint: cert.thumbprint.clone(),
            issued_at: now_unix,
            not_after: cert.not_after.unix_timestamp(),
            revoked_at: None,
            revoke_reason: None,
        },
        grace_until: now_unix.saturating_add(app.cfg.renewal.grace_secs),
    };
    let outcome =
        app.store
            .record_renewal(&commit, now_unix)
            .map_err(|e| EnrollError::EnrollmentServer {
                reason: format!("store: {e}"),
            })?;
    let RenewOutcome::Renewed { device, revoked } = outcome else {
        return Err(not_eligible(
            "the device record changed during the renewal (re-enrolled, deleted or renewed \
             concurrently)",
        ));
    };
    tracing::info!(
        device_id = %device.device_id, old_serial = %auth.serial(), new_serial = %cert.serial_hex,
        grace_until = commit.grace_until, revoked = ?revoked, "certificate renewed"
    );
    let doc = provisioning::build_renewal(&RenewalDoc {
        client_cert_der: &cert.der,
        client_thumbprint: &cert.thumbprint,
        cert_store: cert_store_of(&device),
        renew: renew_block(&app.cfg),
    });
    let expires = now + time::Duration::minutes(5);
    Ok(wstep::write_rstr(
        req.message_id.as_deref(),
        doc.as_bytes(),
        &crate::clock::rfc3339(now_unix),
        &crate::clock::rfc3339(expires.unix_timestamp()),
    ))
}

/// The new request out of the token: a PKCS#7 signed by the TLS client certificate, or a
/// bare PKCS#10.
fn renewal_csr(
    app: &App,
    req: &EnrollRequest,
    tls_serial: &str,
    now: time::OffsetDateTime,
) -> Result<CsrVerified, EnrollError> {
    let vt = req.csr_value_type.trim();
    if wstep::is_pkcs7_value_type(vt) {
        let (csr, signer) = app
            .ca
            .verify_renewal(&req.csr_der, MIN_KEY_BITS, now)
            .map_err(|e| ca_fault(&e))?;
        if signer.serial_hex != tls_serial {
            return Err(not_eligible(format!(
                "renewal token signed by certificate {} but the TLS client certificate is {}",
                signer.serial_hex, tls_serial
            )));
        }
        Ok(csr)
    } else if vt == VALUE_TYPE_PKCS10 {
        ca::verify_csr(&req.csr_der, MIN_KEY_BITS).map_err(|e| ca_fault(&e))
    } else {
        Err(EnrollError::CertificateRequest {
            reason: format!("BinarySecurityToken ValueType {vt:?} is neither PKCS#7 nor PKCS#10"),
        })
    }
}

/// Every DeviceID the request states must be the authenticated device's.
fn check_device_ids(
    req: &EnrollRequest,
    csr: &CsrVerified,
    device_id: &str,
) -> Result<(), EnrollError> {
    let differs = |what: &str, v: &str| EnrollError::CertificateRequest {
        reason: format!("{what} {v:?} is not the authenticated device {device_id:?}"),
    };
    if let Some(c) = req.context.device_id() {
        if !c.trim().eq_ignore_ascii_case(device_id) {
            return Err(differs("ContextItem DeviceID", c));
        }
    }
    match csr.device_id_ext() {
        Some(x) if x.eq_ignore_ascii_case(device_id) => Ok(()),
        Some(x) => Err(differs("CSR DeviceID extension", x)),
        None => {
            let cn = csr.subject_cn().unwrap_or("").trim_end_matches('\0');
            let named = cn.rsplit('!').next().unwrap_or("");
            if named.eq_ignore_ascii_case(device_id) {
                Ok(())
            } else {
                Err(differs("CSR subject (no DeviceID extension)", cn))
            }
        }
    }
}

fn cert_store_of(device: &Device) -> CertStore {
    if device.enrollment_type.eq_ignore_ascii_case("Device") {
        CertStore::MySystem
    } else {
        CertStore::MyUser
    }
}

fn ca_fault(e: &CaError) -> EnrollError {
    if e.is_peer_fault() {
        EnrollError::CertificateRequest {
            reason: e.to_string(),
        }
    } else {
        EnrollError::EnrollmentServer {
            reason: format!("CA: {e}"),
        }
    }
}

/// Settles the replaced certificate at the end of a management round authenticated with
/// `presented_serial`: when the device used its new certificate, when the grace period is over,
/// or when the device unenrolled, the previous certificate is queued for revocation (in the
/// round's own transaction; `commit_round` then clears `previous_cert`).
pub fn settle_round(
    device: &mut Device,
    presented_serial: &str,
    revoke: &mut Vec<(String, String)>,
    now: i64,
) {
    let Some(p) = &device.previous_cert else {
        return;
    };
    let reason = if now > p.grace_until {
        "superseded by renewal: grace period over"
    } else if presented_serial == device.cert_serial {
        "superseded by renewal: the device used its new certificate"
    } else if device.state == DeviceState::Unenrolled {
        "unenrolled by the user"
    } else {
        return;
    };
    tracing::info!(device_id = %device.device_id, serial = %p.serial, reason, "retiring the certificate replaced by renewal");
    revoke.push((p.serial.clone(), reason.to_string()));
    device.previous_cert = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PreviousCert;

    fn device() -> Device {
        Device {
            device_id: "D".into(),
            cert_serial: "new".into(),
            previous_cert: Some(PreviousCert {
                serial: "old".into(),
                thumbprint: "AB".into(),
                not_after: 100,
                grace_until: 50,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn settle_round_rules() {
        // Old certificate inside the grace period: kept.
        let (mut d, mut r) = (device(), vec![]);
        settle_round(&mut d, "old", &mut r, 10);
        assert!(r.is_empty() && d.previous_cert.is_some());
        // New certificate used: old revoked.
        settle_round(&mut d, "new", &mut r, 10);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, "old");
        assert!(d.previous_cert.is_none());
        // Grace over.
        let (mut d, mut r) = (device(), vec![]);
        settle_round(&mut d, "old", &mut r, 51);
        assert_eq!(r[0].0, "old");
        // Unenrolled from the old certificate.
        let (mut d, mut r) = (device(), vec![]);
        d.state = DeviceState::Unenrolled;
        settle_round(&mut d, "old", &mut r, 10);
        assert_eq!(r[0].0, "old");
        // Nothing to settle.
        let (mut d, mut r) = (Device::default(), vec![]);
        settle_round(&mut d, "x", &mut r, 10);
        assert!(r.is_empty());
    }
}
