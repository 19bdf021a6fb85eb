//! MS-MDE2 §3.1 discovery: `Discover` request parsing and `DiscoverResponse` writing.
//!
//! Owns the discovery body shapes (PROTOCOL.md §2, schema `MS-MDE2-discovery.xsd`) and the
//! version negotiation rule. Must not: decide which auth policy or URLs to offer (the caller
//! does), or do I/O.
//!
//! Parsing rules: the body namespace is accepted with and without a trailing `/` (docs put one,
//! Windows sends none, observed); the children of `Discover/request` are an `xsd:all` (any order);
//! unknown children are ignored.

use super::envelope::{Envelope, NS_ADDRESSING, NS_SOAP12};
use super::fault::EnrollError;
use crate::xml::XmlWriter;

/// Discovery body namespace as Windows sends it (no trailing slash).
pub const NS_DISCOVERY: &str = "http://schemas.microsoft.com/windows/management/2012/01/enrollment";
/// Request `a:Action`.
pub const ACTION_DISCOVER: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/Discover";
/// Response `a:Action`.
pub const ACTION_DISCOVER_RESPONSE: &str = "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse";
/// The highest `EnrollmentVersion` we speak (no attestation claims, PROTOCOL §2).
pub const MAX_ENROLLMENT_VERSION: &str = "4.0";

/// True for the discovery namespace, with or without a trailing `/`.
pub fn is_discovery_ns(ns: &str) -> bool {
    ns.strip_suffix('/').unwrap_or(ns) == NS_DISCOVERY
}

/// A parsed `Discover` request (MS-MDE2 §3.1.4.1.1.1). All fields are the trimmed element text;
/// absent elements are `None` / empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoverRequest {
    /// `a:MessageID`, to echo as `a:RelatesTo`.
    pub message_id: Option<String>,
    /// `EmailAddress`: the UPN/e-mail the user typed (may be `domain\user`).
    pub email: Option<String>,
    /// `RequestVersion` as sent (`4.0` on Win10 21H1, `9.0` on Win11 25H2); see
    /// [`negotiate_version`].
    pub request_version: Option<String>,
    /// `DeviceType` (`CIMClient_Windows`, `WindowsPhone`).
    pub device_type: Option<String>,
    /// `ApplicationVersion` (OS build, dotted quad).
    pub application_version: Option<String>,
    /// `OSEdition` (decimal product type, MS-MDE2 §2.2.9.6).
    pub os_edition: Option<String>,
    /// `AuthPolicies/AuthPolicy` values in order (`OnPremise`, `Federated`, `Certificate`).
    pub auth_policies: Vec<String>,
}

impl DiscoverRequest {
    /// True when the client offered `policy` (`OnPremise`, `Federated`, `Certificate`;
    /// compared case-insensitively).
    pub fn offers(&self, policy: &str) -> bool {
        self.auth_policies
            .iter()
            .any(|p| p.eq_ignore_ascii_case(policy))
    }
}

/// Parse a discovery POST body. Errors: [`EnrollError::MessageFormat`] for bad XML, a non-SOAP
/// 1.2 envelope, or a body that is not `Discover/request`.
pub fn parse_discover(body: &[u8]) -> Result<DiscoverRequest, EnrollError> {
    let env = Envelope::parse(body)?;
    let discover = env.expect_payload(is_discovery_ns, "Discover")?;
    let request = discover
        .child_where(is_discovery_ns, "request")
        .ok_or_else(|| EnrollError::format("missing required element Discover/request"))?;
    let mut out = DiscoverRequest {
        message_id: env.message_id.as_deref().map(str::to_owned),
        ..DiscoverRequest::default()
    };
    for c in &request.children {
        if !c.ns.as_deref().is_some_and(is_discovery_ns) {
            continue;
        }
        let text = || Some(c.text_trimmed().to_owned());
        match c.local.as_str() {
            "EmailAddress" => out.email = text(),
            "RequestVersion" => out.request_version = text(),
            "DeviceType" => out.device_type = text(),
            "ApplicationVersion" => out.application_version = text(),
            "OSEdition" => out.os_edition = text(),
            "AuthPolicies" => {
                out.auth_policies = c
                    .children_where(is_discovery_ns, "AuthPolicy")
                    .map(|p| p.text_trimmed().to_owned())
                    .collect();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Choose the `EnrollmentVersion` to answer (MS-MDE2 §3.1.4.1.1.2: must not exceed the client's
/// `RequestVersion`).
///
/// Every `RequestVersion` ≥ 1.0 is accepted, written as an `xsd:decimal` (`4.0`, `4`, `9.0`,
/// `+5.1`, surrounding whitespace). The answer is `min(requested, 4.0)` rounded down to a whole
/// version: ≥ 4 → `"4.0"`, ≥ 3 → `"3.0"`, ≥ 2 → `"2.0"`, otherwise `"1.0"`.
///
/// Decision for absent or unparsable values (including negative ones): `"4.0"`. Every Windows
/// build that can use this server (Windows 10 1703+) speaks 4.0, and refusing discovery over a
/// version string would strand the user with no useful error.
pub fn negotiate_version(request_version: Option<&str>) -> &'static str {
    match request_version.and_then(decimal_whole_part) {
        None => MAX_ENROLLMENT_VERSION,
        Some(v) if v >= 4 => "4.0",
        Some(3) => "3.0",
        Some(2) => "2.0",
        Some(_) => "1.0",
    }
}

/// Whole part of a non-negative `xsd:decimal` literal (saturating), or `None` if not one.
fn decimal_whole_part(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(int.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// What to answer a `Discover` with (MS-MDE2 §3.1.4.1.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverResponse {
    /// The request's `a:MessageID`.
    pub relates_to: Option<String>,
    /// `AuthPolicy`: one of the policies the client offered.
    pub auth_policy: String,
    /// `EnrollmentVersion`, normally [`negotiate_version`]'s answer.
    pub enrollment_version: String,
    /// `EnrollmentPolicyServiceUrl` (MS-XCEP endpoint); omitted from the response when empty
    /// (the element is optional, MS-MDE2 §3.1.4.1.1.2).
    pub policy_url: String,
    /// `EnrollmentServiceUrl` (MS-WSTEP endpoint).
    pub enrollment_url: String,
    /// `AuthenticationServiceUrl`, for `Federated` only.
    pub auth_service_url: Option<String>,
}

/// Write a `DiscoverResponse` envelope. Element order follows the accepted capture
/// (`02-discovery-post-response.xml`): AuthPolicy, EnrollmentVersion,
/// EnrollmentPolicyServiceUrl, EnrollmentServiceUrl, then AuthenticationServiceUrl.
pub fn write_discover_response(r: &DiscoverResponse) -> Vec<u8> {
    let mut w = XmlWriter::new();
    w.open(
        "s:Envelope",
        &[("xmlns:s", NS_SOAP12), ("xmlns:a", NS_ADDRESSING)],
    );
    w.open("s:Header", &[]);
    w.leaf(
        "a:Action",
        &[("s:mustUnderstand", "1")],
        ACTION_DISCOVER_RESPONSE,
    );
    if let Some(rel) = &r.relates_to {
        w.leaf("a:RelatesTo", &[], rel);
    }
    w.close("s:Header");
    w.open("s:Body", &[]);
    w.open("DiscoverResponse", &[("xmlns", NS_DISCOVERY)]);
    w.open("DiscoverResult", &[]);
    w.leaf("AuthPolicy", &[], &r.auth_policy);
    w.leaf("EnrollmentVersion", &[], &r.enrollment_version);
    if !r.policy_url.is_empty() {
        w.leaf("EnrollmentPolicyServiceUrl", &[], &r.policy_url);
    }
    w.leaf("EnrollmentServiceUrl", &[], &r.enrollment_url);
    if let Some(a) = &r.auth_service_url {
        w.leaf("AuthenticationServiceUrl", &[], a);
    }
    w.close("DiscoverResult");
    w.close("DiscoverResponse");
    w.close("s:Body");
    w.close("s:Envelope");
    w.finish().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for (req, want) in [
            (Some("4.0"), "4.0"),
            (Some("4"), "4.0"),
            (Some("9.0"), "4.0"),
            (Some(" +5.1 "), "4.0"),
            (Some("3.0"), "3.0"),
            (Some("3.5"), "3.0"),
            (Some("2.0"), "2.0"),
            (Some("1.0"), "1.0"),
            (Some("99999999999999999999999.0"), "4.0"),
            (Some("abc"), "4.0"),
            (Some("-4.0"), "4.0"),
            (Some("."), "4.0"),
            (None, "4.0"),
        ] {
            assert_eq!(negotiate_version(req), want, "{req:?}");
        }
    }

    #[test]
    fn trailing_slash_namespace() {
        assert!(is_discovery_ns(NS_DISCOVERY));
        assert!(is_discovery_ns(&format!("{NS_DISCOVERY}/")));
        assert!(!is_discovery_ns(&format!("{NS_DISCOVERY}//")));
    }
}
