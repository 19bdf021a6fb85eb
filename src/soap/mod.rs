//! SOAP layer of Windows MDM enrollment: MS-MDE2 discovery (§3.1), MS-XCEP `GetPolicies`
//! (§3.3), MS-WSTEP `RequestSecurityToken` (§3.4), the wap-provisioningdoc (§2.2.9) and SOAP
//! faults (§2.2.10). Reference: `PROTOCOL.md` §1–5.
//!
//! Owns: bytes in → typed request, typed response → bytes, and the single error→fault map.
//! Must not: do I/O, read clocks, touch the store or the CA, check passwords, or depend on
//! hyper. Every parser goes through [`crate::xml`] (bounded, no DTD, namespace-aware) and
//! returns [`EnrollError`]; none panics on any input.
//!
//! Typical use by the HTTP layer: `parse_*` → on `Err(e)` answer
//! `write_fault(&SoapFault::from(&e), message_id, FaultAction::Dispatcher)` with status
//! `e.http_status()` and `Content-Type: application/soap+xml; charset=utf-8`
//! ([`CONTENT_TYPE`]); use [`peek_message_id`] for the `a:RelatesTo` when parsing failed.
//!
//! Decisions (where PROTOCOL.md leaves a choice):
//! * Faults: `s:Code` is always `s:Receiver` (MS-MDE2 §2.2.10 example); the detail element is
//!   spelled `DeviceEnrollmentServiceError/ErrorType/Message/TraceId` (the case Windows' XPath
//!   uses); HTTP status 500 for every fault ([`EnrollError::http_status`]); default action
//!   [`FaultAction::Dispatcher`] (WCF's fault action).
//! * Discovery: any `RequestVersion` ≥ 1.0 is accepted; we answer `min(requested, 4.0)`,
//!   and `4.0` when the value is absent or unparsable ([`negotiate_version`]).
//! * Policy: SHA-256 (`2.16.840.1.101.3.4.2.1`, OID group 1) as the CSR hash; TPM provider
//!   first, software KSP second ([`policy`]).
//! * Provisioning: no `WSTEP/Renew` unless asked; APPAUTH entries are fixed dummies (TLS client
//!   certificates authenticate the device) ([`provisioning`]).
//! * The Action header is not enforced by the parsers: the body element decides.

pub mod client;
pub mod discovery;
pub mod enroll;
pub mod envelope;
pub mod fault;
pub mod policy;
pub mod provisioning;

pub use discovery::{
    negotiate_version, parse_discover, write_discover_response, DiscoverRequest, DiscoverResponse,
};
pub use enroll::{
    parse_rst, write_rstr, AdditionalContext, EnrollRequest, EnrollmentType, RequestType,
};
pub use envelope::{peek_message_id, Credential, Envelope, Security};
pub use fault::{write_fault, EnrollError, FaultAction, FaultCode, SoapFault};
pub use policy::{parse_get_policies, write_get_policies_response, PolicyConfig, PolicyRequest};
pub use provisioning::{CertStore, PollSchedule, ProvisioningDoc, RenewConfig};

/// `Content-Type` of every enrollment request and response (SOAP 1.2 over HTTP).
pub const CONTENT_TYPE: &str = "application/soap+xml; charset=utf-8";

/// Entry points for fuzz targets (`fuzz/`, outside the workspace): each must never panic.
#[doc(hidden)]
pub mod fuzzing {
    /// Feed `data` to every request parser and, when one succeeds, to the matching writer.
    pub fn soap_envelope(data: &[u8]) {
        let _ = super::client::parse_discover_response(data);
        let _ = super::client::parse_rstr(data);
        if let Ok(d) = super::parse_discover(data) {
            let _ = super::negotiate_version(d.request_version.as_deref());
        }
        crate::federation::jwt::fuzz(data);
        if let Ok(p) = super::parse_get_policies(data) {
            if let super::Credential::BinarySecurityToken { token, .. } = &p.credential {
                crate::federation::jwt::fuzz(token);
            }
            let _ = super::write_get_policies_response(
                p.message_id.as_deref(),
                &super::PolicyConfig::default(),
            );
        }
        if let Err(e) = super::parse_rst(data) {
            let f = super::SoapFault::from(&e);
            let _ = super::write_fault(
                &f,
                super::peek_message_id(data).as_deref(),
                super::FaultAction::Dispatcher,
            );
        }
    }
}
