//! SOAP 1.2 envelope, WS-Addressing header fields and the WS-Security credential.
//!
//! Owns: splitting a request into `a:Action`, `a:MessageID`, `a:To`, the optional
//! `wsse:Security` header (reduced to a [`Credential`]) and the body element (PROTOCOL.md §2–4;
//! MS-MDE2 §2.1 / MS-WSTEP §2.1 require SOAP 1.2). Must not: know any endpoint's body, check
//! passwords, or do I/O.
//!
//! Rules: the root must be `{http://www.w3.org/2003/05/soap-envelope}Envelope`; a SOAP 1.1
//! envelope (`http://schemas.xmlsoap.org/soap/envelope/`) is refused with
//! [`EnrollError::MessageFormat`]. Matching is by namespace URI + local name, any prefix.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;

use super::fault::EnrollError;
use crate::xml::{self, Element, XmlError};

/// SOAP 1.2 envelope namespace (`s`).
pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// SOAP 1.1 envelope namespace (refused).
pub const NS_SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// WS-Addressing 1.0 namespace (`a`).
pub const NS_ADDRESSING: &str = "http://www.w3.org/2005/08/addressing";
/// WS-Security 1.0 secext namespace (`wsse`, `o`).
pub const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// WS-Security 1.0 utility namespace (`u`, `wsu`).
pub const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
/// `wsse:Password/@Type` for clear-text passwords (the only type Windows sends, PROTOCOL §3).
pub const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
/// `BinarySecurityToken/@ValueType` of a federated login token (the `wresult` of the
/// AuthenticationServiceUrl page; PROTOCOL.md §3).
pub const VALUE_TYPE_USER_TOKEN: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken";
/// `BinarySecurityToken/@ValueType` of an Entra ID access token (base64 of the compact JWT).
pub const VALUE_TYPE_ENTRA_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `EncodingType` suffix for base64 (`…secext-1.0.xsd#base64binary`; compared case-insensitively).
pub const BASE64_BINARY_SUFFIX: &str = "#base64binary";

/// The client credential carried in `wsse:Security` (PROTOCOL.md §3 table).
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `wsse:UsernameToken` (OnPremise, ppkg bulk; ROBO may send an empty password).
    UsernameToken {
        /// `wsse:Username` (UPN as typed).
        username: String,
        /// `wsse:Password` text (PasswordText); empty when the element is absent.
        password: String,
    },
    /// `wsse:BinarySecurityToken` in the header (Federated WAB token, Entra JWT, X509v3).
    BinarySecurityToken {
        /// `ValueType` attribute (empty when absent).
        value_type: String,
        /// `EncodingType` attribute.
        encoding_type: Option<String>,
        /// Base64-decoded token bytes.
        token: Vec<u8>,
    },
    /// A `wsse:Security` header without either token (e.g. only a `u:Timestamp`).
    None,
}

impl fmt::Debug for Credential {
    /// Redacts secrets: the password and token bytes are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::UsernameToken { username, password } => f
                .debug_struct("UsernameToken")
                .field("username", username)
                .field(
                    "password",
                    &format_args!("<{} chars>", password.chars().count()),
                )
                .finish(),
            Credential::BinarySecurityToken {
                value_type,
                encoding_type,
                token,
            } => f
                .debug_struct("BinarySecurityToken")
                .field("value_type", value_type)
                .field("encoding_type", encoding_type)
                .field("token", &format_args!("<{} bytes>", token.len()))
                .finish(),
            Credential::None => f.write_str("None"),
        }
    }
}

/// The parsed `wsse:Security` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security<'a> {
    /// Credential found in the header.
    pub credential: Credential,
    /// `u:Timestamp/u:Created`, if present.
    pub created: Option<Cow<'a, str>>,
    /// `u:Timestamp/u:Expires`, if present.
    pub expires: Option<Cow<'a, str>>,
}

/// A parsed SOAP 1.2 request envelope.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// `a:Action` (trimmed).
    pub action: Option<Cow<'a, str>>,
    /// `a:MessageID` (trimmed); echo it as `a:RelatesTo`. Not unique across devices.
    pub message_id: Option<Cow<'a, str>>,
    /// `a:To` (trimmed).
    pub to: Option<Cow<'a, str>>,
    /// `a:RelatesTo` (trimmed; present in responses, read by [`super::client`]).
    pub relates_to: Option<Cow<'a, str>>,
    /// `wsse:Security`, when the header carries one.
    pub security: Option<Security<'a>>,
    body: Element,
}

impl From<XmlError> for EnrollError {
    fn from(e: XmlError) -> Self {
        EnrollError::MessageFormat {
            reason: e.to_string(),
        }
    }
}

impl<'a> Envelope<'a> {
    /// Parse a request body (bounded; see [`crate::xml`]).
    ///
    /// Errors: any XML problem, a non-SOAP-1.2 root or a missing `s:Body` →
    /// [`EnrollError::MessageFormat`]; an unparsable `wsse:Security` →
    /// [`EnrollError::InvalidSecurity`].
    pub fn parse(input: &'a [u8]) -> Result<Envelope<'a>, EnrollError> {
        let root = xml::parse(input)?;
        if root.local != "Envelope" {
            return Err(EnrollError::format(format!(
                "root element is '{}', expected s:Envelope",
                clip(&root.local)
            )));
        }
        match root.ns.as_deref() {
            Some(NS_SOAP12) => {}
            Some(NS_SOAP11) => return Err(EnrollError::format(
                "SOAP 1.1 envelope; SOAP 1.2 (http://www.w3.org/2003/05/soap-envelope) required",
            )),
            _ => {
                return Err(EnrollError::format(
                    "Envelope is not in the SOAP 1.2 namespace",
                ))
            }
        }
        let mut action = None;
        let mut message_id = None;
        let mut to = None;
        let mut relates_to = None;
        let mut security = None;
        let mut body = None;
        for child in root.children {
            if child.is(NS_SOAP12, "Header") {
                for h in &child.children {
                    if h.is(NS_ADDRESSING, "Action") {
                        action = Some(Cow::Owned(h.text_trimmed().to_owned()));
                    } else if h.is(NS_ADDRESSING, "MessageID") {
                        message_id = Some(Cow::Owned(h.text_trimmed().to_owned()));
                    } else if h.is(NS_ADDRESSING, "To") {
                        to = Some(Cow::Owned(h.text_trimmed().to_owned()));
                    } else if h.is(NS_ADDRESSING, "RelatesTo") {
                        relates_to = Some(Cow::Owned(h.text_trimmed().to_owned()));
                    } else if h.is(NS_WSSE, "Security") && security.is_none() {
                        security = Some(parse_security(h)?);
                    }
                }
            } else if child.is(NS_SOAP12, "Body") && body.is_none() {
                body = Some(child);
            }
        }
        let body = body.ok_or_else(|| EnrollError::format("missing s:Body"))?;
        Ok(Envelope {
            action,
            message_id,
            to,
            relates_to,
            security,
            body,
        })
    }

    /// The first element inside `s:Body` (the operation element).
    pub fn payload(&self) -> Option<&Element> {
        self.body.children.first()
    }

    /// The operation element, which must be `{ns}local`; else [`EnrollError::MessageFormat`].
    pub fn expect_payload(
        &self,
        ns_ok: impl Fn(&str) -> bool,
        local: &str,
    ) -> Result<&Element, EnrollError> {
        match self.payload() {
            Some(p) if p.local == local && p.ns.as_deref().is_some_and(ns_ok) => Ok(p),
            Some(p) => Err(EnrollError::format(format!(
                "s:Body holds '{}', expected {local}",
                clip(&p.local)
            ))),
            None => Err(EnrollError::format(format!(
                "s:Body is empty, expected {local}"
            ))),
        }
    }

    /// The credential, requiring a `wsse:Security` header (policy and enroll endpoints):
    /// absent → [`EnrollError::InvalidSecurity`].
    pub fn require_credential(&self) -> Result<Credential, EnrollError> {
        self.security
            .as_ref()
            .map(|s| s.credential.clone())
            .ok_or_else(|| EnrollError::InvalidSecurity {
                reason: "missing wsse:Security header".into(),
            })
    }
}

/// Best-effort `a:MessageID` of a request that may have failed to parse further, so a fault can
/// still carry `a:RelatesTo`. `None` if the envelope itself is unreadable.
pub fn peek_message_id(body: &[u8]) -> Option<String> {
    Envelope::parse(body)
        .ok()?
        .message_id
        .map(|m| m.into_owned())
}

fn invalid_security(reason: impl Into<String>) -> EnrollError {
    EnrollError::InvalidSecurity {
        reason: reason.into(),
    }
}

/// Attribute by local name, unprefixed or in the WS-Security namespace (Windows writes
/// `wsse:Type`, the profile says `Type`).
fn wsse_attr<'e>(el: &'e Element, local: &str) -> Option<&'e str> {
    el.attr(None, local)
        .or_else(|| el.attr(Some(NS_WSSE), local))
}

fn parse_security(sec: &Element) -> Result<Security<'static>, EnrollError> {
    let mut credential = Credential::None;
    if let Some(bst) = sec.child(NS_WSSE, "BinarySecurityToken") {
        let encoding_type = wsse_attr(bst, "EncodingType").map(str::to_owned);
        if let Some(enc) = &encoding_type {
            if !enc.to_ascii_lowercase().ends_with(BASE64_BINARY_SUFFIX) {
                return Err(invalid_security(
                    "unsupported BinarySecurityToken EncodingType",
                ));
            }
        }
        let token = decode_base64_lenient(&bst.text)
            .map_err(|_| invalid_security("BinarySecurityToken is not valid base64"))?;
        credential = Credential::BinarySecurityToken {
            value_type: wsse_attr(bst, "ValueType").unwrap_or("").to_owned(),
            encoding_type,
            token,
        };
    } else if let Some(ut) = sec.child(NS_WSSE, "UsernameToken") {
        let username = ut
            .child(NS_WSSE, "Username")
            .ok_or_else(|| invalid_security("UsernameToken without wsse:Username"))?
            .text_trimmed()
            .to_owned();
        let password = match ut.child(NS_WSSE, "Password") {
            Some(p) => {
                if let Some(t) = wsse_attr(p, "Type") {
                    if t.trim() != PASSWORD_TEXT {
                        return Err(invalid_security(
                            "unsupported wsse:Password Type (only PasswordText)",
                        ));
                    }
                }
                p.text.clone()
            }
            None => String::new(),
        };
        credential = Credential::UsernameToken { username, password };
    }
    let ts = sec.child(NS_WSU, "Timestamp");
    let get = |name| {
        ts.and_then(|t| t.child(NS_WSU, name))
            .map(|e| Cow::Owned(e.text_trimmed().to_owned()))
    };
    Ok(Security {
        credential,
        created: get("Created"),
        expires: get("Expires"),
    })
}

/// Decode base64 as devices send it: ASCII whitespace anywhere is ignored, padding optional.
pub fn decode_base64_lenient(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(compact.as_bytes())
}

/// At most 64 characters of a peer-supplied string, for error messages.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap11_is_message_format() {
        let x = br#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>"#;
        assert!(matches!(
            Envelope::parse(x),
            Err(EnrollError::MessageFormat { .. })
        ));
    }

    #[test]
    fn password_type_prefixed_or_not() {
        for attr in ["Type", "wsse:Type"] {
            let x = format!(
                r#"<s:Envelope xmlns:s="{NS_SOAP12}" xmlns:wsse="{NS_WSSE}"><s:Header><wsse:Security><wsse:UsernameToken><wsse:Username>u</wsse:Username><wsse:Password {attr}="{PASSWORD_TEXT}">p w</wsse:Password></wsse:UsernameToken></wsse:Security></s:Header><s:Body/></s:Envelope>"#
            );
            let env = Envelope::parse(x.as_bytes()).unwrap();
            assert_eq!(
                env.require_credential().unwrap(),
                Credential::UsernameToken {
                    username: "u".into(),
                    password: "p w".into()
                }
            );
        }
    }

    #[test]
    fn debug_redacts_password() {
        let c = Credential::UsernameToken {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn lenient_base64() {
        assert_eq!(decode_base64_lenient("QU\r\n JD").unwrap(), b"ABC");
        assert_eq!(decode_base64_lenient("QQ").unwrap(), b"A");
        assert!(decode_base64_lenient("Q!==").is_err());
    }
}
