//! MS-WSTEP `RequestSecurityToken` parsing and `RequestSecurityTokenResponseCollection` writing
//! (MS-MDE2 §3.4, PROTOCOL.md §4).
//!
//! Owns: extracting the credential, request type, PKCS#10/PKCS#7 bytes and the
//! `ac:AdditionalContext` items from an RST; wrapping a provisioning document in an RSTRC.
//! Must not: verify the CSR (that is `ca/`), authenticate, or do I/O.

use base64::Engine as _;

use super::envelope::{
    decode_base64_lenient, Credential, Envelope, BASE64_BINARY_SUFFIX, NS_ADDRESSING, NS_SOAP12,
    NS_WSSE, NS_WSU,
};
use super::fault::{EnrollError, NS_ENROLLMENT_PKI};
use crate::xml::XmlWriter;

/// WS-Trust 1.3 namespace (`wst`).
pub const NS_WST: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
/// `ac:AdditionalContext` namespace.
pub const NS_AC: &str = "http://schemas.xmlsoap.org/ws/2006/12/authorization";
/// Request `a:Action`.
pub const ACTION_RST: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep";
/// Response `a:Action`.
pub const ACTION_RSTRC: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep";
/// `wst:TokenType` of an MDM enrollment.
pub const TOKEN_TYPE_DEVICE_ENROLLMENT: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken";
/// `ValueType` of the provisioning document in the RSTR.
pub const VALUE_TYPE_PROVISION_DOC: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc";
/// `ValueType` of a PKCS#10 CSR (Issue).
pub const VALUE_TYPE_PKCS10: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10";
/// `ValueType` of a PKCS#7-wrapped CSR (Renew), as PROTOCOL.md §4 (MS-WSTEP) writes it.
pub const VALUE_TYPE_PKCS7: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#PKCS7";
/// The same in the enrollment namespace, as Microsoft's certificate-renewal example writes it.
/// Both are accepted (see [`is_pkcs7_value_type`]).
pub const VALUE_TYPE_PKCS7_ENROLLMENT: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS7";

/// Whether a `BinarySecurityToken` `ValueType` names a PKCS#7 renewal token (either spelling).
pub fn is_pkcs7_value_type(v: &str) -> bool {
    let v = v.trim();
    v == VALUE_TYPE_PKCS7 || v == VALUE_TYPE_PKCS7_ENROLLMENT
}
/// `EncodingType` we write.
pub const ENCODING_BASE64: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary";

/// `wst:RequestType` (PROTOCOL §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// `…/ws-trust/200512/Issue`: first enrollment.
    Issue,
    /// `…/ws-trust/200512/Renew`: certificate renewal (ROBO).
    Renew,
    /// `…/ws-trust/200512/Recovery`: recovery re-enrollment.
    Recovery,
}

impl RequestType {
    fn from_uri(uri: &str) -> Option<Self> {
        match uri.strip_prefix(NS_WST)? {
            "/Issue" => Some(RequestType::Issue),
            "/Renew" => Some(RequestType::Renew),
            "/Recovery" => Some(RequestType::Recovery),
            _ => None,
        }
    }
}

/// `EnrollmentType` context item (PROTOCOL §4): where the device stores its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnrollmentType {
    /// User enrollment: certificate in `My/User`. The default.
    #[default]
    Full,
    /// Device enrollment (Entra join, device credential): certificate in `My/System`.
    Device,
}

/// The `ac:AdditionalContext` items of an RST.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdditionalContext {
    /// Every `(Name, Value)` in document order, repeats kept (e.g. several `MAC`).
    pub items: Vec<(String, String)>,
}

impl AdditionalContext {
    /// First value of `name` (names compared exactly, as Windows sends them).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of `name`, in order.
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.items
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `DeviceID`: the primary device key (= `./DevInfo/DevId`, SyncML `Source/LocURI`).
    pub fn device_id(&self) -> Option<&str> {
        self.get("DeviceID")
    }

    /// `HWDevID`.
    pub fn hw_dev_id(&self) -> Option<&str> {
        self.get("HWDevID")
    }

    /// `EnrollmentType`: `Device` (case-insensitive) → [`EnrollmentType::Device`]; anything
    /// else, or absent → [`EnrollmentType::Full`].
    pub fn enrollment_type(&self) -> EnrollmentType {
        match self.get("EnrollmentType") {
            Some(v) if v.trim().eq_ignore_ascii_case("device") => EnrollmentType::Device,
            _ => EnrollmentType::Full,
        }
    }

    /// `DeviceType`.
    pub fn device_type(&self) -> Option<&str> {
        self.get("DeviceType")
    }

    /// `DeviceName`.
    pub fn device_name(&self) -> Option<&str> {
        self.get("DeviceName")
    }

    /// `OSVersion`.
    pub fn os_version(&self) -> Option<&str> {
        self.get("OSVersion")
    }

    /// `OSEdition`.
    pub fn os_edition(&self) -> Option<&str> {
        self.get("OSEdition")
    }

    /// `ApplicationVersion`.
    pub fn application_version(&self) -> Option<&str> {
        self.get("ApplicationVersion")
    }

    /// `Locale`.
    pub fn locale(&self) -> Option<&str> {
        self.get("Locale")
    }

    /// All `MAC` values (duplicates kept).
    pub fn macs(&self) -> impl Iterator<Item = &str> + '_ {
        self.get_all("MAC")
    }

    /// A boolean item: `true`/`1` → `Some(true)`, `false`/`0` → `Some(false)` (case-insensitive,
    /// trimmed); absent or anything else → `None`.
    pub fn bool_item(&self, name: &str) -> Option<bool> {
        let v = self.get(name)?.trim();
        if v.eq_ignore_ascii_case("true") || v == "1" {
            Some(true)
        } else if v.eq_ignore_ascii_case("false") || v == "0" {
            Some(false)
        } else {
            None
        }
    }
}

/// A parsed `wst:RequestSecurityToken`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollRequest {
    /// `a:MessageID`.
    pub message_id: Option<String>,
    /// Credential from `wsse:Security` (required, except for Renew/Recovery: [`Credential::None`] then).
    pub credential: Credential,
    /// `wst:RequestType`.
    pub request_type: RequestType,
    /// `wst:TokenType`, if sent.
    pub token_type: Option<String>,
    /// `ValueType` of the body's `wsse:BinarySecurityToken` ([`VALUE_TYPE_PKCS10`] for Issue,
    /// [`VALUE_TYPE_PKCS7`] for Renew); empty when absent. Not checked here.
    pub csr_value_type: String,
    /// Base64-decoded token (DER PKCS#10 or PKCS#7). Never empty.
    pub csr_der: Vec<u8>,
    /// `ac:AdditionalContext`.
    pub context: AdditionalContext,
}

/// Parse an RST POST body.
///
/// Errors: bad XML, wrong body, missing `wst:RequestType` or `wsse:BinarySecurityToken` →
/// [`EnrollError::MessageFormat`]; missing/unparsable `wsse:Security` →
/// [`EnrollError::InvalidSecurity`]; unknown RequestType → [`EnrollError::NotSupported`];
/// empty or non-base64 token → [`EnrollError::CertificateRequest`].
pub fn parse_rst(body: &[u8]) -> Result<EnrollRequest, EnrollError> {
    let env = Envelope::parse(body)?;
    let rst = env.expect_payload(|ns| ns == NS_WST, "RequestSecurityToken")?;

    let request_type_uri = rst
        .child(NS_WST, "RequestType")
        .map(|e| e.text_trimmed())
        .ok_or_else(|| EnrollError::format("missing required element wst:RequestType"))?;
    let request_type =
        RequestType::from_uri(request_type_uri).ok_or_else(|| EnrollError::NotSupported {
            reason: "unsupported wst:RequestType".into(),
        })?;
    // A renewal (ROBO) is authenticated by the TLS client certificate alone; its wsse:Security
    // holds at most a timestamp or an empty-password token, and may be missing (so may a
    // Recovery's, which is then refused for what it is rather than for its header).
    let credential = match (env.require_credential(), request_type) {
        (Err(_), RequestType::Renew | RequestType::Recovery) => Credential::None,
        (c, _) => c?,
    };
    let token_type = rst
        .child(NS_WST, "TokenType")
        .map(|e| e.text_trimmed().to_owned());

    let bst = rst
        .child(NS_WSSE, "BinarySecurityToken")
        .ok_or_else(|| EnrollError::format("missing required element wsse:BinarySecurityToken"))?;
    let attr = |n| bst.attr(None, n).or_else(|| bst.attr(Some(NS_WSSE), n));
    if let Some(enc) = attr("EncodingType") {
        if !enc.to_ascii_lowercase().ends_with(BASE64_BINARY_SUFFIX) {
            return Err(EnrollError::CertificateRequest {
                reason: "unsupported BinarySecurityToken EncodingType".into(),
            });
        }
    }
    let csr_der =
        decode_base64_lenient(&bst.text).map_err(|_| EnrollError::CertificateRequest {
            reason: "BinarySecurityToken is not valid base64".into(),
        })?;
    if csr_der.is_empty() {
        return Err(EnrollError::CertificateRequest {
            reason: "BinarySecurityToken is empty".into(),
        });
    }

    let mut context = AdditionalContext::default();
    if let Some(ac) = rst.child(NS_AC, "AdditionalContext") {
        for item in ac.children_named(NS_AC, "ContextItem") {
            let name = item.attr(None, "Name").unwrap_or("").to_owned();
            let value = item
                .child(NS_AC, "Value")
                .map(|v| v.text_trimmed().to_owned())
                .unwrap_or_default();
            context.items.push((name, value));
        }
    }

    Ok(EnrollRequest {
        message_id: env.message_id.as_deref().map(str::to_owned),
        credential,
        request_type,
        token_type,
        csr_value_type: attr("ValueType").unwrap_or("").to_owned(),
        csr_der,
        context,
    })
}

/// Write the RSTRC carrying `provisioning_doc` (UTF-8 wap-provisioningdoc bytes, base64-encoded
/// here) with `RequestID` 0 and a `u:Timestamp` of `created`/`expires` (ISO 8601 UTC strings
/// supplied by the caller's clock). Shape: PROTOCOL.md §4, as accepted by Windows 10 21H1.
pub fn write_rstr(
    relates_to: Option<&str>,
    provisioning_doc: &[u8],
    created: &str,
    expires: &str,
) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(provisioning_doc);
    let mut w = XmlWriter::new();
    w.open(
        "s:Envelope",
        &[
            ("xmlns:s", NS_SOAP12),
            ("xmlns:a", NS_ADDRESSING),
            ("xmlns:u", NS_WSU),
        ],
    );
    w.open("s:Header", &[]);
    w.leaf("a:Action", &[("s:mustUnderstand", "1")], ACTION_RSTRC);
    if let Some(r) = relates_to {
        w.leaf("a:RelatesTo", &[], r);
    }
    w.open(
        "o:Security",
        &[("xmlns:o", NS_WSSE), ("s:mustUnderstand", "1")],
    );
    w.open("u:Timestamp", &[("u:Id", "_0")]);
    w.leaf("u:Created", &[], created);
    w.leaf("u:Expires", &[], expires);
    w.close("u:Timestamp");
    w.close("o:Security");
    w.close("s:Header");
    w.open("s:Body", &[]);
    w.open(
        "RequestSecurityTokenResponseCollection",
        &[("xmlns", NS_WST)],
    );
    w.open("RequestSecurityTokenResponse", &[]);
    w.leaf("TokenType", &[], TOKEN_TYPE_DEVICE_ENROLLMENT);
    w.leaf("DispositionMessage", &[("xmlns", NS_ENROLLMENT_PKI)], "");
    w.open("RequestedSecurityToken", &[]);
    w.leaf(
        "BinarySecurityToken",
        &[
            ("xmlns", NS_WSSE),
            ("ValueType", VALUE_TYPE_PROVISION_DOC),
            ("EncodingType", ENCODING_BASE64),
        ],
        &b64,
    );
    w.close("RequestedSecurityToken");
    w.leaf("RequestID", &[("xmlns", NS_ENROLLMENT_PKI)], "0");
    w.close("RequestSecurityTokenResponse");
    w.close("RequestSecurityTokenResponseCollection");
    w.close("s:Body");
    w.close("s:Envelope");
    w.finish().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_helpers() {
        let c = AdditionalContext {
            items: vec![
                ("EnrollmentType".into(), "DEVICE".into()),
                ("A".into(), "True".into()),
                ("B".into(), "0".into()),
                ("C".into(), "maybe".into()),
                ("MAC".into(), "1".into()),
                ("MAC".into(), "1".into()),
            ],
        };
        assert_eq!(c.enrollment_type(), EnrollmentType::Device);
        assert_eq!(c.bool_item("A"), Some(true));
        assert_eq!(c.bool_item("B"), Some(false));
        assert_eq!(c.bool_item("C"), None);
        assert_eq!(c.bool_item("D"), None);
        assert_eq!(c.macs().count(), 2);
        assert_eq!(
            AdditionalContext::default().enrollment_type(),
            EnrollmentType::Full
        );
    }

    #[test]
    fn request_types() {
        assert_eq!(
            RequestType::from_uri("http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew"),
            Some(RequestType::Renew)
        );
        assert_eq!(
            RequestType::from_uri("http://docs.oasis-open.org/ws-sx/ws-trust/200512/Validate"),
            None
        );
    }
}
