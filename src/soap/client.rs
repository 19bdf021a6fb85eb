//! The device side of the same messages, for the in-process fake device and tools: builders of
//! requests shaped like the Windows 10 21H1 captures (PROTOCOL.md §2–4) and parsers of our
//! responses (DiscoverResponse, RSTRC, fault).
//!
//! Owns nothing the server needs at run time; the server never calls it. Must not: do I/O.

use super::discovery::{is_discovery_ns, DiscoverResponse, ACTION_DISCOVER, NS_DISCOVERY};
#[cfg(doc)]
use super::enroll::VALUE_TYPE_PKCS7;
use super::enroll::{
    AdditionalContext, ACTION_RST, ENCODING_BASE64, NS_AC, NS_WST, TOKEN_TYPE_DEVICE_ENROLLMENT,
    VALUE_TYPE_PKCS10,
};
use super::envelope::{
    decode_base64_lenient, Credential, Envelope, NS_ADDRESSING, NS_SOAP12, NS_WSSE, NS_WSU,
    PASSWORD_TEXT, VALUE_TYPE_ENTRA_JWT, VALUE_TYPE_USER_TOKEN,
};
use super::fault::{EnrollError, NS_ENROLLMENT_PKI};
use super::policy::{ACTION_GET_POLICIES, NS_XCEP};
use crate::xml::{XmlWriter, NS_XSI};
use base64::Engine as _;

/// The credential of a federated enrollment: the `wresult` the login page auto-POSTed, which
/// Windows base64-encodes into a `BinarySecurityToken` (PROTOCOL.md §3).
pub fn federated_credential(wresult: &str) -> Credential {
    Credential::BinarySecurityToken {
        value_type: VALUE_TYPE_USER_TOKEN.into(),
        encoding_type: Some(ENCODING_BASE64.into()),
        token: wresult.as_bytes().to_vec(),
    }
}

/// The credential of an Entra join / Autopilot enrollment: the compact Entra access token.
pub fn entra_credential(jwt: &str) -> Credential {
    Credential::BinarySecurityToken {
        value_type: VALUE_TYPE_ENTRA_JWT.into(),
        encoding_type: Some(ENCODING_BASE64.into()),
        token: jwt.as_bytes().to_vec(),
    }
}

fn header(w: &mut XmlWriter, action: &str, message_id: &str, to: &str) {
    w.leaf("a:Action", &[("s:mustUnderstand", "1")], action);
    w.leaf("a:MessageID", &[], message_id);
    w.open("a:ReplyTo", &[]);
    w.leaf(
        "a:Address",
        &[],
        "http://www.w3.org/2005/08/addressing/anonymous",
    );
    w.close("a:ReplyTo");
    w.leaf("a:To", &[("s:mustUnderstand", "1")], to);
}

fn security(w: &mut XmlWriter, cred: &Credential) {
    w.open("wsse:Security", &[("s:mustUnderstand", "1")]);
    match cred {
        Credential::UsernameToken { username, password } => {
            w.open("wsse:UsernameToken", &[("u:Id", "uuid-1")]);
            w.leaf("wsse:Username", &[], username);
            w.leaf("wsse:Password", &[("wsse:Type", PASSWORD_TEXT)], password);
            w.close("wsse:UsernameToken");
        }
        Credential::BinarySecurityToken {
            value_type,
            encoding_type,
            token,
        } => {
            let enc = encoding_type.as_deref().unwrap_or(ENCODING_BASE64);
            let b64 = base64::engine::general_purpose::STANDARD.encode(token);
            w.leaf(
                "wsse:BinarySecurityToken",
                &[("ValueType", value_type), ("EncodingType", enc)],
                &b64,
            );
        }
        Credential::None => {}
    }
    w.close("wsse:Security");
}

fn open_envelope(w: &mut XmlWriter) {
    w.open(
        "s:Envelope",
        &[
            ("xmlns:s", NS_SOAP12),
            ("xmlns:a", NS_ADDRESSING),
            ("xmlns:u", NS_WSU),
            ("xmlns:wsse", NS_WSSE),
            ("xmlns:wst", NS_WST),
            ("xmlns:ac", NS_AC),
        ],
    );
}

/// A `Discover` request as Windows sends it (MS-MDE2 §3.1.4.1.1.1).
pub fn discover_request(
    message_id: &str,
    to: &str,
    email: &str,
    request_version: &str,
    auth_policies: &[&str],
) -> Vec<u8> {
    let mut w = XmlWriter::new();
    w.open(
        "s:Envelope",
        &[("xmlns:a", NS_ADDRESSING), ("xmlns:s", NS_SOAP12)],
    );
    w.open("s:Header", &[]);
    header(&mut w, ACTION_DISCOVER, message_id, to);
    w.close("s:Header");
    w.open("s:Body", &[]);
    w.open("Discover", &[("xmlns", NS_DISCOVERY)]);
    w.open("request", &[("xmlns:i", NS_XSI)]);
    w.leaf("EmailAddress", &[], email);
    w.leaf("RequestVersion", &[], request_version);
    w.leaf("DeviceType", &[], "CIMClient_Windows");
    w.leaf("ApplicationVersion", &[], "10.0.19043.2364");
    w.leaf("OSEdition", &[], "72");
    w.open("AuthPolicies", &[]);
    for p in auth_policies {
        w.leaf("AuthPolicy", &[], p);
    }
    w.close("AuthPolicies");
    w.close("request");
    w.close("Discover");
    w.close("s:Body");
    w.close("s:Envelope");
    w.finish().into_bytes()
}

/// A `GetPolicies` request (MS-XCEP §3.1.4.1.1.1) carrying `cred`.
pub fn get_policies_request(message_id: &str, to: &str, cred: &Credential) -> Vec<u8> {
    let mut w = XmlWriter::new();
    open_envelope(&mut w);
    w.open("s:Header", &[]);
    header(&mut w, ACTION_GET_POLICIES, message_id, to);
    security(&mut w, cred);
    w.close("s:Header");
    w.open("s:Body", &[("xmlns:xsi", NS_XSI)]);
    w.open("GetPolicies", &[("xmlns", NS_XCEP)]);
    w.open("client", &[]);
    w.empty("lastUpdate", &[("xsi:nil", "true")]);
    w.empty("preferredLanguage", &[("xsi:nil", "true")]);
    w.close("client");
    w.empty("requestFilter", &[("xsi:nil", "true")]);
    w.close("GetPolicies");
    w.close("s:Body");
    w.close("s:Envelope");
    w.finish().into_bytes()
}

/// An Issue `RequestSecurityToken` (MS-WSTEP §3.1.4.1.2) with a PKCS#10 `csr_der`.
pub fn rst_issue_request(
    message_id: &str,
    to: &str,
    cred: &Credential,
    csr_der: &[u8],
    context: &AdditionalContext,
) -> Vec<u8> {
    rst_request(
        message_id,
        to,
        Some(cred),
        "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue",
        VALUE_TYPE_PKCS10,
        csr_der,
        context,
    )
}

/// A Renew `RequestSecurityToken` as a device sends it for ROBO renewal (MS-MDE2 §3.5): sent
/// over TLS with the current certificate as client certificate, `token_der` of `value_type`
/// (normally [`VALUE_TYPE_PKCS7`]: the new PKCS#10 in a SignedData signed with the current
/// key, see `ca::testing::renewal_token`), and a `wsse:Security` header only when `cred` is
/// given (ROBO needs none).
pub fn rst_renew_request(
    message_id: &str,
    to: &str,
    cred: Option<&Credential>,
    token_der: &[u8],
    value_type: &str,
    context: &AdditionalContext,
) -> Vec<u8> {
    rst_request(
        message_id,
        to,
        cred,
        "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew",
        value_type,
        token_der,
        context,
    )
}

fn rst_request(
    message_id: &str,
    to: &str,
    cred: Option<&Credential>,
    request_type: &str,
    value_type: &str,
    token_der: &[u8],
    context: &AdditionalContext,
) -> Vec<u8> {
    let mut w = XmlWriter::new();
    open_envelope(&mut w);
    w.open("s:Header", &[]);
    header(&mut w, ACTION_RST, message_id, to);
    if let Some(cred) = cred {
        security(&mut w, cred);
    }
    w.close("s:Header");
    w.open("s:Body", &[]);
    w.open("wst:RequestSecurityToken", &[]);
    w.leaf("wst:TokenType", &[], TOKEN_TYPE_DEVICE_ENROLLMENT);
    w.leaf("wst:RequestType", &[], request_type);
    w.leaf(
        "wsse:BinarySecurityToken",
        &[("ValueType", value_type), ("EncodingType", ENCODING_BASE64)],
        &base64::engine::general_purpose::STANDARD.encode(token_der),
    );
    w.open("ac:AdditionalContext", &[("xmlns", NS_AC)]);
    for (name, value) in &context.items {
        w.open("ac:ContextItem", &[("Name", name)]);
        w.leaf("ac:Value", &[], value);
        w.close("ac:ContextItem");
    }
    w.close("ac:AdditionalContext");
    w.close("wst:RequestSecurityToken");
    w.close("s:Body");
    w.close("s:Envelope");
    w.finish().into_bytes()
}

/// What a device reads from a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFault {
    /// `s:Subcode/s:Value` text (e.g. `s:Authentication`).
    pub subcode: String,
    /// `s:Reason/s:Text`.
    pub reason: String,
    /// `DeviceEnrollmentServiceError/ErrorType`, if present.
    pub errortype: Option<String>,
}

/// A response is either the expected message or a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// The expected message.
    Ok(T),
    /// A SOAP fault.
    Fault(ParsedFault),
}

fn fault_of(env: &Envelope<'_>) -> Option<ParsedFault> {
    let f = env.payload().filter(|p| p.is(NS_SOAP12, "Fault"))?;
    let text = |e: Option<&crate::xml::Element>| e.map(|e| e.text_trimmed().to_owned());
    Some(ParsedFault {
        subcode: text(
            f.child(NS_SOAP12, "Code")
                .and_then(|c| c.child(NS_SOAP12, "Subcode"))
                .and_then(|c| c.child(NS_SOAP12, "Value")),
        )
        .unwrap_or_default(),
        reason: text(
            f.child(NS_SOAP12, "Reason")
                .and_then(|r| r.child(NS_SOAP12, "Text")),
        )
        .unwrap_or_default(),
        errortype: text(
            f.child(NS_SOAP12, "Detail")
                .and_then(|d| d.child(NS_ENROLLMENT_PKI, "DeviceEnrollmentServiceError"))
                .and_then(|d| d.child(NS_ENROLLMENT_PKI, "ErrorType")),
        ),
    })
}

/// Parse a `DiscoverResponse` (or a fault).
pub fn parse_discover_response(body: &[u8]) -> Result<Reply<DiscoverResponse>, EnrollError> {
    let env = Envelope::parse(body)?;
    if let Some(f) = fault_of(&env) {
        return Ok(Reply::Fault(f));
    }
    let result = env
        .expect_payload(is_discovery_ns, "DiscoverResponse")?
        .child_where(is_discovery_ns, "DiscoverResult")
        .ok_or_else(|| EnrollError::format("missing DiscoverResult"))?;
    let get = |n: &str| {
        result
            .child_where(is_discovery_ns, n)
            .map(|e| e.text_trimmed().to_owned())
    };
    Ok(Reply::Ok(DiscoverResponse {
        relates_to: env.relates_to.as_deref().map(str::to_owned),
        auth_policy: get("AuthPolicy").unwrap_or_default(),
        enrollment_version: get("EnrollmentVersion").unwrap_or_default(),
        policy_url: get("EnrollmentPolicyServiceUrl").unwrap_or_default(),
        enrollment_url: get("EnrollmentServiceUrl").unwrap_or_default(),
        auth_service_url: get("AuthenticationServiceUrl"),
    }))
}

/// Parse an RSTRC (or a fault) and return the decoded provisioning document bytes.
pub fn parse_rstr(body: &[u8]) -> Result<Reply<Vec<u8>>, EnrollError> {
    let env = Envelope::parse(body)?;
    if let Some(f) = fault_of(&env) {
        return Ok(Reply::Fault(f));
    }
    let bst = env
        .expect_payload(|ns| ns == NS_WST, "RequestSecurityTokenResponseCollection")?
        .child(NS_WST, "RequestSecurityTokenResponse")
        .and_then(|r| r.child(NS_WST, "RequestedSecurityToken"))
        .and_then(|r| r.child(NS_WSSE, "BinarySecurityToken"))
        .ok_or_else(|| EnrollError::format("missing RequestedSecurityToken/BinarySecurityToken"))?;
    decode_base64_lenient(&bst.text)
        .map(Reply::Ok)
        .map_err(|_| EnrollError::format("provisioning document is not base64"))
}
