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
//! `e.http_status()` and `Content-Type: application/soap+xml; charset=utf-8`.

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
pub use envelope::{Credential, Envelope, Security};
pub use fault::{write_fault, EnrollError, FaultAction, FaultCode, SoapFault};
pub use policy::{parse_get_policies, write_get_policies_response, PolicyConfig, PolicyRequest};
pub use provisioning::{CertStore, PollSchedule, ProvisioningDoc, RenewConfig};

/// `Content-Type` of every enrollment request and response (SOAP 1.2 over HTTP).
pub const CONTENT_TYPE: &str = "application/soap+xml; charset=utf-8";
