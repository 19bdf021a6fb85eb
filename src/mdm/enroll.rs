//! The enrollment flow (MS-MDE2): discovery, enrollment policy (MS-XCEP) and enrollment
//! (MS-WSTEP), from request bytes to response bytes.
//!
//! Every failure is an [`EnrollError`] carried in a [`Failure`] with the request's MessageID, so
//! the HTTP layer can answer the SOAP fault that `soap::fault` maps it to. No certificate leaves
//! this module unless the device record and the certificate serial were durably stored first.

use crate::app::App;
use crate::ca::{self, CaError, IssuedCert};
use crate::config::paths;
use crate::federation::{Principal, Stage};
use crate::soap::discovery::{self, DiscoverResponse};
use crate::soap::enroll::{self as wstep, EnrollRequest, EnrollmentType, RequestType};
use crate::soap::envelope::Credential;
use crate::soap::fault::EnrollError;
use crate::soap::policy::{self, PolicyConfig};
use crate::soap::provisioning::{self, CertStore as ProvCertStore, ProvisioningDoc};
use crate::store::{clip_bytes, CertRecord, Device, DeviceState, EnrollRefusal, User};

/// Longest enrollment context value stored (DeviceName, OSVersion, HWDevID...), in bytes.
pub const MAX_CONTEXT_VALUE: usize = 256;
/// MAC addresses stored per device at most.
pub const MAX_MACS: usize = 16;

/// Minimum RSA modulus accepted in a CSR, and advertised as `minimalKeyLength`.
pub const MIN_KEY_BITS: usize = 2048;

/// The `ValueType` of a PKCS#10 BinarySecurityToken (MS-WSTEP §3.1.4.1.2.6).
pub const PKCS10_VALUE_TYPE: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10";

/// A failed step: the error and the MessageID it answers.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: EnrollError,
    /// The request's `a:MessageID`, echoed as `a:RelatesTo`.
    pub relates_to: Option<String>,
}

impl Failure {
    fn new(error: EnrollError, relates_to: &Option<String>) -> Failure {
        Failure {
            error,
            relates_to: relates_to.clone(),
        }
    }
}

impl From<EnrollError> for Failure {
    fn from(error: EnrollError) -> Failure {
        Failure {
            error,
            relates_to: None,
        }
    }
}

/// Answers a `Discover` request (MS-MDE2 §3.1).
pub fn discover(app: &App, body: &[u8]) -> Result<Vec<u8>, Failure> {
    let req = discovery::parse_discover(body)?;
    let offered = |p: &str| {
        req.auth_policies
            .iter()
            .any(|a| a.trim().eq_ignore_ascii_case(p))
    };
    // `--auth-policy` decides (README): Federated when the device offers it and it is enabled
    // (preferred under `both`); otherwise OnPremise when enabled and offered (an empty list counts
    // as OnPremise). Certificate is not offered.
    let mode = app.cfg.auth_policy;
    let url = &app.cfg.public_url;
    let (policy, auth_url) = if mode.allows_federated() && offered("Federated") {
        ("Federated", Some(url.join(paths::AUTH)))
    } else if mode.allows_onpremise() && (req.auth_policies.is_empty() || offered("OnPremise")) {
        ("OnPremise", None)
    } else {
        return Err(Failure::new(
            EnrollError::NotSupported {
                reason: format!(
                    "device offered auth policies {:?}; this server accepts {}",
                    req.auth_policies,
                    match (mode.allows_onpremise(), mode.allows_federated()) {
                        (true, true) => "OnPremise and Federated",
                        (false, true) => "Federated only",
                        _ => "OnPremise only",
                    }
                ),
            },
            &req.message_id,
        ));
    };
    Ok(discovery::write_discover_response(&DiscoverResponse {
        relates_to: req.message_id.clone(),
        auth_policy: policy.into(),
        enrollment_version: discovery::negotiate_version(req.request_version.as_deref()).into(),
        policy_url: url.join(paths::POLICY),
        enrollment_url: url.join(paths::ENROLLMENT),
        auth_service_url: auth_url,
    }))
}

/// Answers `GetPolicies` (MS-XCEP §3.1.4.1) after authenticating the caller.
pub fn get_policies(app: &App, body: &[u8]) -> Result<Vec<u8>, Failure> {
    let req = policy::parse_get_policies(body)?;
    authenticate(app, &req.credential, Stage::Policy)
        .map_err(|e| Failure::new(e, &req.message_id))?;
    let validity = app.cfg.cert_validity.as_secs();
    Ok(policy::write_get_policies_response(
        req.message_id.as_deref(),
        &PolicyConfig {
            min_key_length: MIN_KEY_BITS as u32,
            validity_seconds: validity,
            // MS-XCEP renewalPeriodSeconds: the same window as WSTEP/Renew/RenewPeriod.
            renewal_seconds: u64::from(app.cfg.renewal.period_days) * 86_400,
        },
    ))
}

/// Answers a WS-Trust `RequestSecurityToken` (MS-WSTEP; MS-MDE2 §3.4): authenticates, verifies the
/// CSR, issues the identity certificate, records the device, and returns the RSTRC with the
/// provisioning document. Renew/Recovery requests go to [`super::renew::renew`], authenticated
/// by `client_cert` (the connection's TLS client certificate).
pub fn enroll(app: &App, body: &[u8], client_cert: Option<&[u8]>) -> Result<Vec<u8>, Failure> {
    let req = wstep::parse_rst(body)?;
    let mid = req.message_id.clone();
    if req.request_type != RequestType::Issue {
        return super::renew::renew(app, &req, client_cert).map_err(|e| Failure::new(e, &mid));
    }
    enroll_inner(app, &req).map_err(|e| Failure::new(e, &mid))
}

fn enroll_inner(app: &App, req: &EnrollRequest) -> Result<Vec<u8>, EnrollError> {
    let principal = authenticate(app, &req.credential, Stage::Enroll)?;
    if req.csr_value_type.trim() != PKCS10_VALUE_TYPE {
        return Err(EnrollError::CertificateRequest {
            reason: format!(
                "BinarySecurityToken ValueType {:?} is not PKCS#10",
                req.csr_value_type
            ),
        });
    }
    let csr = ca::verify_csr(&req.csr_der, MIN_KEY_BITS).map_err(|e| ca_to_enroll(&e))?;
    let ctx = &req.context;
    let device_id = match (ctx.device_id(), csr.device_id_ext()) {
        (Some(c), Some(x)) if !c.eq_ignore_ascii_case(x) => {
            return Err(EnrollError::CertificateRequest {
                reason: format!(
                    "CSR DeviceID extension {x:?} differs from ContextItem DeviceID {c:?}"
                ),
            })
        }
        (Some(c), _) => c.to_string(),
        (None, Some(x)) => x.to_string(),
        (None, None) => {
            return Err(EnrollError::MessageFormat {
                reason: "no DeviceID in AdditionalContext or CSR".into(),
            })
        }
    };
    validate_device_id(&device_id)?;
    tracing::Span::current().record("device_id", device_id.as_str());
    let enrollment_type = ctx.enrollment_type();
    if principal.user().is_none() && enrollment_type != EnrollmentType::Device {
        return Err(EnrollError::Authorization {
            reason: "an app-only token can only enroll with EnrollmentType Device".into(),
        });
    }
    let owner = crate::owner::of(&principal);
    if matches!(&owner, crate::store::Owner::User { user_id } if user_id.is_empty()) {
        return Err(EnrollError::EnrollmentServer {
            reason: "the account has no id yet (restart the server to migrate the store)".into(),
        });
    }
    // A DeviceID is a claim: checked here before any certificate is made, and again inside the
    // enrollment transaction (concurrent enrollments).
    let claimant = Device {
        owner: Some(owner.clone()),
        ..Device::default()
    };
    if let Some(existing) =
        app.store
            .get_device(&device_id)
            .map_err(|e| EnrollError::EnrollmentServer {
                reason: format!("store: {e}"),
            })?
    {
        if !crate::store::may_reenroll(&existing, &claimant) {
            return Err(owned_by_another(
                &device_id,
                &principal,
                existing.owner.as_ref(),
            ));
        }
    }
    let now = app.clock.now();
    let cert = app
        .ca
        .issue_device_cert(&csr, &device_id, app.cfg.cert_validity, now)
        .map_err(|e| ca_to_enroll(&e))?;
    let mut device = device_record(
        req,
        &device_id,
        principal.user(),
        &cert,
        enrollment_type,
        now.unix_timestamp(),
    );
    device.owner = Some(owner);
    let record = CertRecord {
        serial: cert.serial_hex.clone(),
        device_id: device_id.clone(),
        thumbprint: cert.thumbprint.clone(),
        issued_at: now.unix_timestamp(),
        not_after: cert.not_after.unix_timestamp(),
        revoked_at: None,
        revoke_reason: None,
    };
    let outcome = app
        .store
        .record_enrollment(
            &device,
            &record,
            now.unix_timestamp(),
            app.cfg.max_devices_per_user,
        )
        .map_err(|e| EnrollError::EnrollmentServer {
            reason: format!("store: {e}"),
        })?;
    match &outcome.refused {
        None => {}
        Some(EnrollRefusal::OwnedByAnother { owner }) => {
            return Err(owned_by_another(&device_id, &principal, owner.as_ref()));
        }
        Some(EnrollRefusal::TooManyDevices { limit }) => {
            tracing::warn!(device_id = %device_id, upn = ?principal.user().map(|u| &u.upn), limit, "enrollment refused: the user has reached --max-devices-per-user");
            return Err(EnrollError::Authorization {
                reason: format!(
                    "{:?} already has {limit} enrolled devices (--max-devices-per-user)",
                    principal.user().map(|u| u.upn.as_str()).unwrap_or("")
                ),
            });
        }
    }
    if let Some(user) = principal.user() {
        crate::service::invitations::mark_used(app, &user.upn, &device_id, now.unix_timestamp());
    }
    tracing::info!(
        device_id = %device_id, upn = ?principal.user().map(|u| &u.upn), serial = %cert.serial_hex,
        enrollment_type = ?enrollment_type, replaced = ?outcome.replaced, revoked = ?outcome.revoked,
        "device enrolled"
    );
    crate::autopilot::link::on_enrolled(app, &device);
    for id in std::iter::once(&device_id).chain(&outcome.replaced) {
        let _ = crate::groups::on_device_changed(app, id); // groups + profiles (errors logged)
    }
    let doc = provisioning_doc(app, &device, &cert, enrollment_type);
    let expires = now + time::Duration::minutes(5);
    Ok(wstep::write_rstr(
        req.message_id.as_deref(),
        doc.as_bytes(),
        &crate::clock::rfc3339(now.unix_timestamp()),
        &crate::clock::rfc3339(expires.unix_timestamp()),
    ))
}

/// The refusal of an enrollment whose DeviceID another principal owns (logged here).
fn owned_by_another(
    device_id: &str,
    principal: &Principal,
    owner: Option<&crate::store::Owner>,
) -> EnrollError {
    tracing::warn!(
        device_id,
        upn = ?principal.user().map(|u| &u.upn),
        owner = ?owner,
        "enrollment refused: this DeviceID is enrolled by another principal (an admin must delete or transfer it first)"
    );
    EnrollError::Authorization {
        reason: format!(
            "DeviceID {device_id} belongs to another enrollment; an admin must delete or transfer it"
        ),
    }
}

fn device_record(
    req: &EnrollRequest,
    device_id: &str,
    user: Option<&User>,
    cert: &IssuedCert,
    enrollment_type: EnrollmentType,
    now: i64,
) -> Device {
    let ctx = &req.context;
    // Context items are stored on the record: each is bounded (issue 13).
    let own = |v: Option<&str>| v.map(|v| clip_bytes(v, MAX_CONTEXT_VALUE));
    let mut macs: Vec<String> = Vec::new();
    for m in ctx.macs() {
        if macs.len() == MAX_MACS {
            break;
        }
        let m = clip_bytes(m, 64);
        if !macs.contains(&m) {
            macs.push(m);
        }
    }
    // The HWDevID is an index key: an overlong one is dropped, never cut (cut ones could collide).
    let hw_dev_id = ctx.hw_dev_id().filter(|h| h.len() <= MAX_CONTEXT_VALUE);
    if hw_dev_id.is_none() && ctx.hw_dev_id().is_some() {
        tracing::info!(
            device_id,
            "HWDevID longer than {MAX_CONTEXT_VALUE} bytes; not recorded"
        );
    }
    Device {
        device_id: device_id.to_string(),
        hw_dev_id: hw_dev_id.map(str::to_string),
        upn: user.map(|u| u.upn.clone()),
        enrollment_type: match enrollment_type {
            EnrollmentType::Full => "Full".into(),
            EnrollmentType::Device => "Device".into(),
        },
        device_type: own(ctx.device_type()),
        os_version: own(ctx.os_version()),
        os_edition: own(ctx.os_edition()),
        device_name: own(ctx.device_name()),
        application_version: own(ctx.application_version()),
        locale: own(ctx.locale()),
        macs,
        not_in_oobe: ctx.bool_item("NotInOobe"),
        ux_initiated: ctx.bool_item("UXInitiated"),
        cert_serial: cert.serial_hex.clone(),
        cert_thumbprint: cert.thumbprint.clone(),
        cert_not_after: cert.not_after.unix_timestamp(),
        enrolled_at: now,
        state: DeviceState::Enrolled,
        bulk: user.is_some_and(|u| crate::store::is_bulk_account(&u.upn)),
        ..Default::default()
    }
}

fn provisioning_doc(app: &App, device: &Device, cert: &IssuedCert, et: EnrollmentType) -> String {
    let root_thumb = crate::ca::thumbprint(app.ca.root_der());
    let ca_thumb = app.ca.thumbprint();
    provisioning::build(&ProvisioningDoc {
        root_ca_der: app.ca.root_der(),
        root_thumbprint: &root_thumb,
        intermediate_ca: app.ca.intermediate_der().map(|d| (d, ca_thumb.as_str())),
        client_cert_der: &cert.der,
        client_thumbprint: &cert.thumbprint,
        cert_store: match et {
            EnrollmentType::Full => ProvCertStore::MyUser,
            EnrollmentType::Device => ProvCertStore::MySystem,
        },
        provider_id: &app.cfg.provider_id,
        name: &app.cfg.service_name,
        mgmt_url: &app.cfg.mgmt_url.join(paths::MANAGEMENT),
        client_cert_subject: &cert.subject,
        poll: app.cfg.poll,
        ent_dmid: &device.device_id,
        ent_device_name: device.device_name.as_deref(),
        upn: device.upn.as_deref(),
        renew: super::renew::renew_block(&app.cfg),
    })
}

/// DeviceIDs become certificate CNs, SyncML LocURIs and URL path segments: keep them plain.
fn validate_device_id(id: &str) -> Result<(), EnrollError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '{' | '}'));
    if ok {
        Ok(())
    } else {
        Err(EnrollError::MessageFormat {
            reason: format!(
                "DeviceID {:?} is not 1-128 characters of [A-Za-z0-9-_.{{}}]",
                id
            ),
        })
    }
}

/// Checks the WS-Security credential: a password against the user store, a token through
/// [`crate::federation`].
fn authenticate(app: &App, cred: &Credential, stage: Stage) -> Result<Principal, EnrollError> {
    match cred {
        Credential::UsernameToken { username, password } => {
            if !app.cfg.auth_policy.allows_onpremise() {
                return Err(EnrollError::Authentication {
                    reason: "password authentication is disabled (--auth-policy federated)".into(),
                });
            }
            let upn = crate::upn::parse(username).map_err(|e| EnrollError::Authentication {
                reason: format!("{e} ({:?})", crate::soap::envelope::clip(username)),
            })?;
            let user = app
                .store
                .get_user(&upn)
                .map_err(|e| EnrollError::EnrollmentServer {
                    reason: format!("store: {e}"),
                })?;
            let Some(user) = user else {
                crate::lockout::equalise_unknown(app, password).map_err(|b| busy(&upn, b))?;
                return Err(EnrollError::Authentication {
                    reason: format!("unknown user {upn:?}"),
                });
            };
            // A bulk account also accepts its unrevoked provisioning-package secrets. They are
            // random 256-bit values, so they skip the guessing lock: somebody guessing at the
            // (public) bulk UPN must not stop a provisioning run.
            let secret = crate::service::bulk::verify_package_secret(app, &user.upn, password)
                .map_err(|b| busy(&upn, b))?;
            let verdict = if secret {
                crate::lockout::Verdict::Accepted
            } else {
                crate::lockout::check(app, &upn, password, &user.password_hash).map_err(
                    |e| match e {
                        crate::lockout::CheckError::Busy(b) => busy(&upn, b),
                        crate::lockout::CheckError::Store(e) => EnrollError::EnrollmentServer {
                            reason: format!("store: {e}"),
                        },
                    },
                )?
            };
            if let Some(reason) = refusal(&upn, verdict) {
                return Err(EnrollError::Authentication { reason });
            }
            if user.disabled {
                return Err(EnrollError::Authorization {
                    reason: format!("user {upn:?} is disabled"),
                });
            }
            Ok(Principal::User(user))
        }
        Credential::BinarySecurityToken {
            value_type, token, ..
        } => crate::federation::authenticate_token(app, value_type, token, stage),
        Credential::None => Err(EnrollError::InvalidSecurity {
            reason: "no UsernameToken in wsse:Security".into(),
        }),
    }
}

/// A password check refused because every password-work permit is busy.
fn busy(upn: &str, b: crate::password_work::Busy) -> EnrollError {
    EnrollError::Busy {
        reason: format!("password of {upn:?} not checked: {b}"),
        retry_after_secs: b.retry_after_secs,
    }
}

/// Why a password check failed, for the log (`None`: accepted). The device gets the same fault
/// either way.
pub(crate) fn refusal(upn: &str, v: crate::lockout::Verdict) -> Option<String> {
    use crate::lockout::Verdict;
    match v {
        Verdict::Accepted => None,
        Verdict::Wrong {
            count,
            locked_until: None,
        } => Some(format!("wrong password for {upn:?} ({count} in a row)")),
        Verdict::Wrong {
            count,
            locked_until: Some(t),
        } => Some(format!(
            "wrong password for {upn:?} ({count} in a row): its passwords are refused until {t} (Unix time)"
        )),
        Verdict::Locked { until } => Some(format!(
            "password of {upn:?} locked after repeated wrong passwords, until {until} (Unix time); not checked"
        )),
    }
}

fn ca_to_enroll(e: &CaError) -> EnrollError {
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
