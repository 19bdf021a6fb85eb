//! Enrollment errors and their SOAP 1.2 fault form (MS-MDE2 §2.2.10, PROTOCOL.md §5).
//!
//! Owns: [`EnrollError`] (every way an enrollment request can be refused) and the ONLY map from
//! it to the wire: `From<&EnrollError> for SoapFault`, [`write_fault`] and
//! [`EnrollError::http_status`]. Must not: log, do I/O, or put internal details (store/CA error
//! text) into what the device sees.
//!
//! Wire shape chosen (MS-MDE2 §2.2.10 example; Windows' own parser looks for
//! `//s:Fault//s:Detail//e:DeviceEnrollmentServiceError//e:ErrorType` with
//! `e` = `http://schemas.microsoft.com/windows/pki/2009/01/enrollment`, so the detail element
//! names are written in that exact case):
//!
//! ```text
//! s:Envelope/s:Header/{a:Action s:mustUnderstand="1", a:RelatesTo?}
//! s:Body/s:Fault/{s:Code/{s:Value s:Receiver, s:Subcode/s:Value <subcode>},
//!                 s:Reason/s:Text xml:lang="en-US",
//!                 s:Detail/DeviceEnrollmentServiceError/{ErrorType?, Message, TraceId?}}
//! ```

use super::envelope::{NS_ADDRESSING, NS_SOAP12};
use crate::xml::XmlWriter;

/// Namespace of `DeviceEnrollmentServiceError` (MS-MDE2 §2.2.10) and of MS-WSTEP elements.
pub const NS_ENROLLMENT_PKI: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment";

/// Reason text sent for [`EnrollError::EnrollmentServer`]: never the internal reason.
pub const GENERIC_SERVER_REASON: &str =
    "The enrollment server encountered an error. Try again later.";

/// Why an enrollment request (discovery, policy, enroll) is refused. Variants carry a `reason`
/// for logs; which of it reaches the device is decided only by `From<&EnrollError> for SoapFault`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    /// Malformed or unexpected message (bad XML, SOAP 1.1, missing element). `s:MessageFormat`,
    /// 0x80180001.
    #[error("message format: {reason}")]
    MessageFormat {
        /// What was wrong (safe to show: describes the peer's own message).
        reason: String,
    },
    /// User/device not recognised, e.g. wrong password. `s:Authentication`, 0x80180002.
    #[error("authentication failed: {reason}")]
    Authentication {
        /// Log text; the device gets a fixed text.
        reason: String,
    },
    /// Recognised but not allowed to enroll (disabled user…). `s:Authorization`, 0x80180003.
    #[error("not authorized: {reason}")]
    Authorization {
        /// Shown to the device.
        reason: String,
    },
    /// The PKCS#10 request is unusable (bad base64/DER, weak key, bad signature).
    /// `s:CertificateRequest`, 0x80180004.
    #[error("certificate request rejected: {reason}")]
    CertificateRequest {
        /// Shown to the device.
        reason: String,
    },
    /// Internal failure (store, CA). `s:EnrollmentServer`, 0x80180005. The device only sees
    /// [`GENERIC_SERVER_REASON`].
    #[error("enrollment server error: {reason}")]
    EnrollmentServer {
        /// Internal detail, for logs only.
        reason: String,
    },
    /// `wsse:Security` missing or unparsable. `a:InvalidSecurity`, 0x80180007.
    #[error("invalid security header: {reason}")]
    InvalidSecurity {
        /// Shown to the device.
        reason: String,
    },
    /// Platform/version not supported: `s:Authorization` + errortype `DeviceNotSupported`,
    /// 0x80180014.
    #[error("device not supported: {reason}")]
    DeviceNotSupported {
        /// Shown to the device.
        reason: String,
    },
    /// Requested operation not supported (RequestType, TokenType…): `s:Authorization` +
    /// errortype `NotSupported`, 0x80180015.
    #[error("not supported: {reason}")]
    NotSupported {
        /// Shown to the device.
        reason: String,
    },
    /// Renewal refused: `s:Authorization` + errortype `NotEligibleToRenew`, 0x80180016.
    #[error("not eligible to renew: {reason}")]
    NotEligibleToRenew {
        /// Shown to the device.
        reason: String,
    },
    /// Too many devices for this user: `s:Authorization` + errortype `DeviceCapReached`,
    /// 0x80180013.
    #[error("device cap reached: {reason}")]
    DeviceCapReached {
        /// Shown to the device.
        reason: String,
    },
    /// Service in maintenance: `s:EnrollmentServer` + errortype `InMaintenance`, 0x80180017.
    #[error("in maintenance: {reason}")]
    InMaintenance {
        /// Shown to the device.
        reason: String,
    },
    /// Too many password checks at once ([`crate::password_work`]): the credential was not
    /// looked at. On the wire it is MS-MDE2's only "try again later" fault, `s:EnrollmentServer`
    /// with errortype `InMaintenance` (0x80180017), with a fixed text ([`BUSY_REASON`]), HTTP
    /// 500 like every fault (so Windows reads it) and a `Retry-After` header
    /// ([`EnrollError::retry_after`]).
    #[error("busy: {reason}")]
    Busy {
        /// Log text; the device gets [`BUSY_REASON`].
        reason: String,
        /// Seconds to wait before retrying.
        retry_after_secs: u32,
    },
}

/// Reason text sent for [`EnrollError::Busy`].
pub const BUSY_REASON: &str = "The enrollment server is busy. Try again in a few seconds.";

impl EnrollError {
    /// Shorthand for [`EnrollError::MessageFormat`].
    pub fn format(reason: impl Into<String>) -> Self {
        EnrollError::MessageFormat {
            reason: reason.into(),
        }
    }

    /// HTTP status to send with the fault: always **500**.
    ///
    /// Decision: SOAP 1.2 Part 2 §7.5.2.2 maps `env:Receiver` faults to 500, and every fault we
    /// write uses `s:Receiver` (MS-MDE2 §2.2.10 example); Microsoft's WCF enrollment services
    /// answer faults with 500 too. (Fleet answers 200, observed working; Windows reads the body either way.)
    pub fn http_status(&self) -> u16 {
        500
    }

    /// Seconds for a `Retry-After` header sent with the fault, when the refusal is temporary
    /// ([`EnrollError::Busy`]).
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            EnrollError::Busy {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// SOAP 1.2 `s:Code/s:Value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// `s:Sender`: the message was at fault.
    Sender,
    /// `s:Receiver`: what MS-MDE2 §2.2.10 uses for every enrollment fault.
    Receiver,
}

impl FaultCode {
    /// Prefixed QName as written (`s` = SOAP 1.2 envelope namespace).
    pub fn as_qname(self) -> &'static str {
        match self {
            FaultCode::Sender => "s:Sender",
            FaultCode::Receiver => "s:Receiver",
        }
    }
}

/// `a:Action` of a fault message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// `http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher/fault`
    /// (MS-WSTEP §4.1.4 example; what WCF-based Microsoft servers send). Default choice.
    Dispatcher,
    /// `http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep` (MS-MDE2
    /// §2.2.10 example, shown lower-cased there).
    Rstrc,
    /// `http://www.w3.org/2005/08/addressing/soap/fault` (WS-Addressing 1.0 SOAP binding).
    Addressing,
}

impl FaultAction {
    /// The action URI.
    pub fn uri(self) -> &'static str {
        match self {
            FaultAction::Dispatcher => {
                "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher/fault"
            }
            FaultAction::Rstrc => "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep",
            FaultAction::Addressing => "http://www.w3.org/2005/08/addressing/soap/fault",
        }
    }
}

/// A SOAP fault ready to write (MS-MDE2 §2.2.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    /// `s:Code/s:Value`.
    pub code: FaultCode,
    /// `s:Subcode/s:Value` as a prefixed QName: `s:` subcodes are in the SOAP 1.2 namespace,
    /// `a:` ones in WS-Addressing (both prefixes are declared on the envelope).
    pub subcode: &'static str,
    /// `s:Reason/s:Text` (device-visible; Windows 20H2+ shows it for `CustomServerError`).
    pub reason: String,
    /// `DeviceEnrollmentServiceError/ErrorType`, when the fault has one.
    pub errortype: Option<&'static str>,
    /// The HRESULT Windows reports for this fault (documentation/logging; not on the wire).
    pub hresult: u32,
    /// `DeviceEnrollmentServiceError/TraceId` (logged on the device), when the caller has one.
    pub trace_id: Option<String>,
}

impl SoapFault {
    /// Attach a trace id (e.g. the request id logged on the server).
    pub fn with_trace_id(mut self, id: impl Into<String>) -> Self {
        self.trace_id = Some(id.into());
        self
    }
}

impl From<&EnrollError> for SoapFault {
    fn from(e: &EnrollError) -> Self {
        let (subcode, errortype, hresult, reason): (_, _, u32, String) = match e {
            EnrollError::MessageFormat { reason } => {
                ("s:MessageFormat", None, 0x8018_0001, reason.clone())
            }
            EnrollError::Authentication { .. } => (
                "s:Authentication",
                None,
                0x8018_0002,
                "The user name or password is incorrect.".to_owned(),
            ),
            EnrollError::Authorization { reason } => {
                ("s:Authorization", None, 0x8018_0003, reason.clone())
            }
            EnrollError::CertificateRequest { reason } => {
                ("s:CertificateRequest", None, 0x8018_0004, reason.clone())
            }
            EnrollError::EnrollmentServer { .. } => (
                "s:EnrollmentServer",
                None,
                0x8018_0005,
                GENERIC_SERVER_REASON.to_owned(),
            ),
            EnrollError::InvalidSecurity { reason } => {
                ("a:InvalidSecurity", None, 0x8018_0007, reason.clone())
            }
            EnrollError::DeviceCapReached { reason } => (
                "s:Authorization",
                Some("DeviceCapReached"),
                0x8018_0013,
                reason.clone(),
            ),
            EnrollError::DeviceNotSupported { reason } => (
                "s:Authorization",
                Some("DeviceNotSupported"),
                0x8018_0014,
                reason.clone(),
            ),
            EnrollError::NotSupported { reason } => (
                "s:Authorization",
                Some("NotSupported"),
                0x8018_0015,
                reason.clone(),
            ),
            EnrollError::NotEligibleToRenew { reason } => (
                "s:Authorization",
                Some("NotEligibleToRenew"),
                0x8018_0016,
                reason.clone(),
            ),
            EnrollError::InMaintenance { reason } => (
                "s:EnrollmentServer",
                Some("InMaintenance"),
                0x8018_0017,
                reason.clone(),
            ),
            EnrollError::Busy { .. } => (
                "s:EnrollmentServer",
                Some("InMaintenance"),
                0x8018_0017,
                BUSY_REASON.to_owned(),
            ),
        };
        SoapFault {
            code: FaultCode::Receiver,
            subcode,
            reason,
            errortype,
            hresult,
            trace_id: None,
        }
    }
}

/// Write a SOAP 1.2 fault envelope (shape in the module docs). `relates_to` is the request's
/// `a:MessageID` when it could be read.
pub fn write_fault(fault: &SoapFault, relates_to: Option<&str>, action: FaultAction) -> Vec<u8> {
    let mut w = XmlWriter::new();
    w.open(
        "s:Envelope",
        &[("xmlns:s", NS_SOAP12), ("xmlns:a", NS_ADDRESSING)],
    );
    w.open("s:Header", &[]);
    w.leaf("a:Action", &[("s:mustUnderstand", "1")], action.uri());
    if let Some(r) = relates_to {
        w.leaf("a:RelatesTo", &[], r);
    }
    w.close("s:Header");
    w.open("s:Body", &[]);
    w.open("s:Fault", &[]);
    w.open("s:Code", &[]);
    w.leaf("s:Value", &[], fault.code.as_qname());
    w.open("s:Subcode", &[]);
    w.leaf("s:Value", &[], fault.subcode);
    w.close("s:Subcode");
    w.close("s:Code");
    w.open("s:Reason", &[]);
    w.leaf("s:Text", &[("xml:lang", "en-US")], &fault.reason);
    w.close("s:Reason");
    w.open("s:Detail", &[]);
    w.open(
        "DeviceEnrollmentServiceError",
        &[("xmlns", NS_ENROLLMENT_PKI)],
    );
    if let Some(t) = fault.errortype {
        w.leaf("ErrorType", &[], t);
    }
    w.leaf("Message", &[], &fault.reason);
    if let Some(t) = &fault.trace_id {
        w.leaf("TraceId", &[], t);
    }
    w.close("DeviceEnrollmentServiceError");
    w.close("s:Detail");
    w.close("s:Fault");
    w.close("s:Body");
    w.close("s:Envelope");
    w.finish().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_does_not_leak() {
        let e = EnrollError::EnrollmentServer {
            reason: "sled: /var/lib/winmdm/db corrupted".into(),
        };
        let f = SoapFault::from(&e);
        assert_eq!(f.subcode, "s:EnrollmentServer");
        let xml = String::from_utf8(write_fault(&f, None, FaultAction::Dispatcher)).unwrap();
        assert!(!xml.contains("sled"), "{xml}");
        let wrong_pw = EnrollError::Authentication {
            reason: "user bob: bad password hunter2".into(),
        };
        let xml = write_fault(&SoapFault::from(&wrong_pw), None, FaultAction::Dispatcher);
        assert!(!String::from_utf8(xml).unwrap().contains("hunter2"));
    }

    #[test]
    fn errortype_variants_keep_authorization_subcode() {
        let f = SoapFault::from(&EnrollError::DeviceNotSupported { reason: "x".into() });
        assert_eq!(
            (f.subcode, f.errortype, f.hresult),
            ("s:Authorization", Some("DeviceNotSupported"), 0x8018_0014)
        );
        let f = SoapFault::from(&EnrollError::InvalidSecurity { reason: "x".into() });
        assert_eq!((f.subcode, f.hresult), ("a:InvalidSecurity", 0x8018_0007));
    }

    #[test]
    fn busy_is_in_maintenance_with_retry_after() {
        let e = EnrollError::Busy {
            reason: "42 waiting for user bob".into(),
            retry_after_secs: 5,
        };
        let f = SoapFault::from(&e);
        assert_eq!(
            (f.subcode, f.errortype, f.hresult, f.reason.as_str()),
            (
                "s:EnrollmentServer",
                Some("InMaintenance"),
                0x8018_0017,
                BUSY_REASON
            )
        );
        assert_eq!((e.http_status(), e.retry_after()), (500, Some(5)));
        assert_eq!(EnrollError::format("x").retry_after(), None);
    }
}
