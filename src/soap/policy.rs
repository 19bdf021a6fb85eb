//! MS-XCEP `GetPolicies` (MS-MDE2 §3.3, PROTOCOL.md §3): request parsing and response writing.
//!
//! Owns the XCEP body shapes. Must not: check credentials (it only extracts them), or do I/O.
//!
//! The response is written in the `xs:sequence` order of `MS-XCEP.xsd` (`GetPoliciesResponse`
//! = `response`, `cAs`, `oIDs`; `Attributes` = commonName … extensions), with every nillable
//! element we do not use written as `xsi:nil="true"`. Windows reads only `minimalKeyLength`,
//! `hashAlgorithmOIDReference` (with `policySchema` 3) and `cryptoProviders` (Microsoft Learn); we advertise
//! SHA-256 (`2.16.840.1.101.3.4.2.1`, OID group 1 = hash algorithm, MS-XCEP §3.1.4.1.3.16).

use super::envelope::{Credential, Envelope, NS_ADDRESSING, NS_SOAP12};
use super::fault::EnrollError;
use crate::xml::{XmlWriter, NS_XSI};

/// XCEP body namespace.
pub const NS_XCEP: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy";
/// Request `a:Action`.
pub const ACTION_GET_POLICIES: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies";
/// Response `a:Action`.
pub const ACTION_GET_POLICIES_RESPONSE: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse";
/// SHA-256 OID advertised as the CSR hash algorithm.
pub const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
/// OID naming our single enrollment policy (certificate template, OID group 9). Minted under
/// the ITU-T X.667 UUID arc `2.25` so it needs no registration.
pub const POLICY_OID: &str = "2.25.300513079517403201983483995987579305963";
/// `oIDReferenceID` of [`POLICY_OID`] (referenced by `policyOIDReference`).
pub const POLICY_OID_REF: u32 = 1;
/// `oIDReferenceID` of [`OID_SHA256`] (referenced by `hashAlgorithmOIDReference`).
pub const SHA256_OID_REF: u32 = 2;
/// Key storage providers offered, in preference order (TPM first).
pub const CRYPTO_PROVIDERS: [&str; 2] = [
    "Microsoft Platform Crypto Provider",
    "Microsoft Software Key Storage Provider",
];

/// A parsed `GetPolicies` request. The body (`client/lastUpdate`, `preferredLanguage`,
/// `requestFilter`) is fixed and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRequest {
    /// `a:MessageID`.
    pub message_id: Option<String>,
    /// Credential from `wsse:Security` (required).
    pub credential: Credential,
}

/// Parse a `GetPolicies` POST body. Errors: bad XML / wrong body →
/// [`EnrollError::MessageFormat`]; missing or unparsable `wsse:Security` →
/// [`EnrollError::InvalidSecurity`].
pub fn parse_get_policies(body: &[u8]) -> Result<PolicyRequest, EnrollError> {
    let env = Envelope::parse(body)?;
    env.expect_payload(|ns| ns == NS_XCEP, "GetPolicies")?;
    let credential = env.require_credential()?;
    Ok(PolicyRequest {
        message_id: env.message_id.as_deref().map(str::to_owned),
        credential,
    })
}

/// Values of our single certificate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// `minimalKeyLength` in bits (2048).
    pub min_key_length: u32,
    /// `certificateValidity/validityPeriodSeconds`.
    pub validity_seconds: u64,
    /// `certificateValidity/renewalPeriodSeconds`.
    pub renewal_seconds: u64,
}

impl Default for PolicyConfig {
    /// 2048-bit keys, one year validity, renewal window 42 days (the CertificateStore CSP's
    /// default `RenewPeriod`).
    fn default() -> Self {
        PolicyConfig {
            min_key_length: 2048,
            validity_seconds: 365 * 24 * 3600,
            renewal_seconds: 42 * 24 * 3600,
        }
    }
}

fn nil(w: &mut XmlWriter, name: &str) {
    w.empty(name, &[("xsi:nil", "true")]);
}

/// Write a `GetPoliciesResponse` envelope (well-formed, `policySchema` 3, XSD order).
pub fn write_get_policies_response(relates_to: Option<&str>, cfg: &PolicyConfig) -> Vec<u8> {
    let mut w = XmlWriter::new();
    w.open(
        "s:Envelope",
        &[("xmlns:s", NS_SOAP12), ("xmlns:a", NS_ADDRESSING)],
    );
    w.open("s:Header", &[]);
    w.leaf(
        "a:Action",
        &[("s:mustUnderstand", "1")],
        ACTION_GET_POLICIES_RESPONSE,
    );
    if let Some(r) = relates_to {
        w.leaf("a:RelatesTo", &[], r);
    }
    w.close("s:Header");
    w.open(
        "s:Body",
        &[
            ("xmlns:xsi", NS_XSI),
            ("xmlns:xsd", "http://www.w3.org/2001/XMLSchema"),
        ],
    );
    w.open("GetPoliciesResponse", &[("xmlns", NS_XCEP)]);
    // response: policyID, policyFriendlyName, nextUpdateHours, policiesNotChanged, policies
    w.open("response", &[]);
    w.leaf("policyID", &[], "");
    nil(&mut w, "policyFriendlyName");
    nil(&mut w, "nextUpdateHours");
    nil(&mut w, "policiesNotChanged");
    w.open("policies", &[]);
    w.open("policy", &[]);
    w.leaf("policyOIDReference", &[], &POLICY_OID_REF.to_string());
    nil(&mut w, "cAs");
    w.open("attributes", &[]);
    w.leaf("commonName", &[], "WinMDM Device");
    w.leaf("policySchema", &[], "3");
    w.open("certificateValidity", &[]);
    w.leaf(
        "validityPeriodSeconds",
        &[],
        &cfg.validity_seconds.to_string(),
    );
    w.leaf(
        "renewalPeriodSeconds",
        &[],
        &cfg.renewal_seconds.to_string(),
    );
    w.close("certificateValidity");
    w.open("permission", &[]);
    w.leaf("enroll", &[], "true");
    w.leaf("autoEnroll", &[], "false");
    w.close("permission");
    w.open("privateKeyAttributes", &[]);
    w.leaf("minimalKeyLength", &[], &cfg.min_key_length.to_string());
    nil(&mut w, "keySpec");
    nil(&mut w, "keyUsageProperty");
    nil(&mut w, "permissions");
    nil(&mut w, "algorithmOIDReference");
    w.open("cryptoProviders", &[]);
    for p in CRYPTO_PROVIDERS {
        w.leaf("provider", &[], p);
    }
    w.close("cryptoProviders");
    w.close("privateKeyAttributes");
    w.open("revision", &[]);
    w.leaf("majorRevision", &[], "1");
    w.leaf("minorRevision", &[], "0");
    w.close("revision");
    nil(&mut w, "supersededPolicies");
    nil(&mut w, "privateKeyFlags");
    nil(&mut w, "subjectNameFlags");
    nil(&mut w, "enrollmentFlags");
    nil(&mut w, "generalFlags");
    w.leaf(
        "hashAlgorithmOIDReference",
        &[],
        &SHA256_OID_REF.to_string(),
    );
    nil(&mut w, "rARequirements");
    nil(&mut w, "keyArchivalAttributes");
    nil(&mut w, "extensions");
    w.close("attributes");
    w.close("policy");
    w.close("policies");
    w.close("response");
    nil(&mut w, "cAs");
    w.open("oIDs", &[]);
    for (value, group, id, name) in [
        (POLICY_OID, "9", POLICY_OID_REF, "WinMDM Device"),
        (OID_SHA256, "1", SHA256_OID_REF, "sha256"),
    ] {
        w.open("oID", &[]);
        w.leaf("value", &[], value);
        w.leaf("group", &[], group);
        w.leaf("oIDReferenceID", &[], &id.to_string());
        w.leaf("defaultName", &[], name);
        w.close("oID");
    }
    w.close("oIDs");
    w.close("GetPoliciesResponse");
    w.close("s:Body");
    w.close("s:Envelope");
    w.finish().into_bytes()
}
