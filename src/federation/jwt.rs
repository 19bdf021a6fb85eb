//! Compact JWS (JWT) parsing and the Entra ID access-token rules. Pure: no I/O, no clock.
//!
//! Validation order (a token is trusted only after its signature):
//! 1. shape: three base64url segments, JSON header and claims ([`parse`]);
//! 2. `alg` must be exactly `RS256` — `none`, `HS*`, `ES*`, `PS*` are refused before any key is
//!    looked up, so a public key can never be used as an HMAC secret (key confusion);
//! 3. RSA PKCS#1 v1.5 SHA-256 signature with the JWKS key named by `kid` ([`Parsed::verify`],
//!    aws-lc-rs, 2048–8192-bit moduli);
//! 4. claims ([`check_claims`]): `exp` (required) and `nbf` with [`SKEW_SECS`] tolerance; `aud`
//!    (string or array) among the configured audiences; `tid` among the configured tenants and
//!    `iss` exactly `https://sts.windows.net/<tid>/` or `https://login.microsoftonline.com/<tid>/v2.0`
//!    for that same `tid`; then the token kind:
//!    * **user token** — has `scp` and `idtyp` is not `app`: `scp` (space-separated) must contain
//!      the configured scope; the user is `upn`, else `preferred_username` (required);
//!    * **app-only token** — `idtyp` = `app`, or no `scp` at all: accepted only when a device role
//!      is configured and `roles` contains it; it identifies no user (device-only enrollment).

use base64::Engine as _;
use serde_json::Value;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const SKEW_SECS: i64 = 300;

/// Largest token accepted, in bytes (Entra access tokens are 1–3 KB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a JWT was refused. The `Display` text is the precise reason logged by the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a compact JWS with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` other than RS256.
    #[error("token alg {0:?} not allowed (RS256 only)")]
    Algorithm(String),
    /// No `kid` in the header.
    #[error("token header has no kid")]
    NoKid,
    /// `kid` not in the JWKS (after a refresh).
    #[error("unknown signing key kid {0:?}")]
    UnknownKid(String),
    /// The signature does not verify with the named key.
    #[error("token signature invalid")]
    BadSignature,
    /// `exp` missing.
    #[error("token has no exp")]
    NoExp,
    /// Past `exp` (+ skew).
    #[error("token expired (exp {exp}, now {now})")]
    Expired {
        /// `exp` claim.
        exp: i64,
        /// Server time.
        now: i64,
    },
    /// Before `nbf` (− skew).
    #[error("token not yet valid (nbf {nbf}, now {now})")]
    NotYetValid {
        /// `nbf` claim.
        nbf: i64,
        /// Server time.
        now: i64,
    },
    /// `aud` not among the configured audiences.
    #[error("aud mismatch: {0:?} is not a configured audience")]
    Audience(Vec<String>),
    /// `tid` missing or not allowed.
    #[error("tenant {0:?} is not allowed")]
    Tenant(String),
    /// `iss` is not the Entra issuer of the token's tenant.
    #[error("issuer {0:?} is not the Entra issuer of the token's tenant")]
    Issuer(String),
    /// User token without the required delegated scope.
    #[error("scp {0:?} lacks the required scope")]
    Scope(String),
    /// User token without `upn`/`preferred_username`.
    #[error("user token has neither upn nor preferred_username")]
    NoUpn,
    /// App-only token refused (not configured, or role missing).
    #[error("app-only token refused: {0}")]
    AppOnly(String),
}

/// The JOSE header fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg`.
    pub alg: String,
    /// `kid`, if present.
    pub kid: Option<String>,
}

/// A split, decoded, not yet verified token.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Decoded header.
    pub header: Header,
    /// Decoded claims object.
    pub claims: serde_json::Map<String, Value>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

fn b64url(seg: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(seg.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed(format!("{what} is not base64url")))
}

/// Splits and decodes a compact JWS. Never panics on any input.
pub fn parse(token: &[u8]) -> Result<Parsed, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed(format!(
            "longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(token)
        .map_err(|_| JwtError::Malformed("not UTF-8".into()))?
        .trim();
    let mut parts = text.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed(
            "not three dot-separated segments".into(),
        ));
    };
    let header: Value = serde_json::from_slice(&b64url(h, "header")?)
        .map_err(|_| JwtError::Malformed("header is not JSON".into()))?;
    let Value::Object(header) = header else {
        return Err(JwtError::Malformed("header is not a JSON object".into()));
    };
    let claims: Value = serde_json::from_slice(&b64url(c, "claims")?)
        .map_err(|_| JwtError::Malformed("claims are not JSON".into()))?;
    let Value::Object(claims) = claims else {
        return Err(JwtError::Malformed("claims are not a JSON object".into()));
    };
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        _ => return Err(JwtError::Malformed("header has no alg".into())),
    };
    let kid = match header.get("kid") {
        Some(Value::String(k)) => Some(k.clone()),
        None => None,
        Some(_) => return Err(JwtError::Malformed("kid is not a string".into())),
    };
    Ok(Parsed {
        header: Header { alg, kid },
        claims,
        signing_input: format!("{h}.{c}").into_bytes(),
        signature: b64url(s, "signature")?,
    })
}

impl Parsed {
    /// Step 2: the algorithm rule. Returns the `kid` to look up.
    pub fn require_rs256(&self) -> Result<&str, JwtError> {
        if self.header.alg != "RS256" {
            return Err(JwtError::Algorithm(self.header.alg.clone()));
        }
        self.header.kid.as_deref().ok_or(JwtError::NoKid)
    }

    /// Step 3: RS256 signature check with the RSA public key (`n`, `e` big-endian).
    pub fn verify(&self, n: &[u8], e: &[u8]) -> Result<(), JwtError> {
        self.require_rs256()?;
        let key = aws_lc_rs::signature::RsaPublicKeyComponents { n, e };
        key.verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.signing_input,
            &self.signature,
        )
        .map_err(|_| JwtError::BadSignature)
    }
}

/// What the claim rules are checked against.
#[derive(Debug, Clone)]
pub struct ClaimRules<'a> {
    /// Allowed tenant ids (lower-case GUIDs).
    pub tenants: &'a [String],
    /// Allowed audiences (exact match).
    pub audiences: &'a [String],
    /// Required delegated scope of user tokens.
    pub scope: &'a str,
    /// Required app role of app-only tokens (`None`: refuse them).
    pub device_role: Option<&'a str>,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A user token: the UPN as in the token.
    User {
        /// `upn` or `preferred_username`.
        upn: String,
        /// Tenant id.
        tid: String,
    },
    /// An app-only token (device enrollment without a user).
    App {
        /// `appid`/`azp`/`oid`, whichever is present first (for logs).
        app: String,
        /// Tenant id.
        tid: String,
    },
}

fn num(claims: &serde_json::Map<String, Value>, name: &str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| JwtError::Malformed(format!("{name} is not a number"))),
        Some(_) => Err(JwtError::Malformed(format!("{name} is not a number"))),
    }
}

fn str_claim<'c>(claims: &'c serde_json::Map<String, Value>, name: &str) -> Option<&'c str> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Step 4: the claim rules (module docs), at Unix time `now`. Call only after [`Parsed::verify`].
pub fn check_claims(
    claims: &serde_json::Map<String, Value>,
    rules: &ClaimRules<'_>,
    now: i64,
) -> Result<Subject, JwtError> {
    let exp = num(claims, "exp")?.ok_or(JwtError::NoExp)?;
    if now > exp.saturating_add(SKEW_SECS) {
        return Err(JwtError::Expired { exp, now });
    }
    if let Some(nbf) = num(claims, "nbf")? {
        if now.saturating_add(SKEW_SECS) < nbf {
            return Err(JwtError::NotYetValid { nbf, now });
        }
    }
    let auds: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(v)) => v
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if !auds.iter().any(|a| rules.audiences.iter().any(|c| c == a)) {
        return Err(JwtError::Audience(auds));
    }
    let tid = str_claim(claims, "tid").unwrap_or("").to_ascii_lowercase();
    if tid.is_empty() || !rules.tenants.contains(&tid) {
        return Err(JwtError::Tenant(tid));
    }
    let iss = str_claim(claims, "iss").unwrap_or("");
    let v1 = format!("https://sts.windows.net/{tid}/");
    let v2 = format!("https://login.microsoftonline.com/{tid}/v2.0");
    if !(iss.eq_ignore_ascii_case(&v1) || iss.eq_ignore_ascii_case(&v2)) {
        return Err(JwtError::Issuer(iss.to_string()));
    }
    let scp = str_claim(claims, "scp");
    let app_only = str_claim(claims, "idtyp") == Some("app") || scp.is_none();
    if app_only {
        let Some(role) = rules.device_role else {
            return Err(JwtError::AppOnly(
                "no device role is configured (--entra-device-role)".into(),
            ));
        };
        let has_role = claims
            .get("roles")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|x| x.as_str() == Some(role)));
        if !has_role {
            return Err(JwtError::AppOnly(format!("roles lack {role:?}")));
        }
        let app = ["appid", "azp", "oid"]
            .iter()
            .find_map(|c| str_claim(claims, c))
            .unwrap_or("")
            .to_string();
        return Ok(Subject::App { app, tid });
    }
    let scp = scp.unwrap_or("");
    if !scp.split(' ').any(|s| s == rules.scope) {
        return Err(JwtError::Scope(scp.to_string()));
    }
    let upn = str_claim(claims, "upn")
        .or_else(|| str_claim(claims, "preferred_username"))
        .ok_or(JwtError::NoUpn)?;
    Ok(Subject::User {
        upn: upn.to_string(),
        tid,
    })
}

/// Fuzz entry (called by the `soap_envelope` target): parse, then every rule; never panics.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    if let Ok(p) = parse(data) {
        let _ = p.require_rs256();
        let tenants = ["72f988bf-86f1-41af-91ab-2d7cd011db47".to_string()];
        let audiences = ["https://mdm.contoso.com".to_string()];
        let rules = ClaimRules {
            tenants: &tenants,
            audiences: &audiences,
            scope: "mdm_delegation",
            device_role: Some("mdm_device"),
        };
        let _ = check_claims(&p.claims, &rules, 1_800_000_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::testing::{EntraKey, TENANT};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn rules<'a>(t: &'a [String], a: &'a [String], role: Option<&'a str>) -> ClaimRules<'a> {
        ClaimRules {
            tenants: t,
            audiences: a,
            scope: "mdm_delegation",
            device_role: role,
        }
    }

    fn base() -> serde_json::Map<String, Value> {
        let Value::Object(m) = EntraKey::user_claims("Alice@Contoso.com", NOW) else {
            unreachable!()
        };
        m
    }

    fn check(c: &serde_json::Map<String, Value>, role: Option<&str>) -> Result<Subject, JwtError> {
        let t = vec![TENANT.to_string()];
        let a = vec![
            "https://mdm.contoso.com".to_string(),
            "app-id-1".to_string(),
        ];
        check_claims(c, &rules(&t, &a, role), NOW)
    }

    #[test]
    fn user_token_ok_and_upn_fallback() {
        assert_eq!(
            check(&base(), None),
            Ok(Subject::User {
                upn: "Alice@Contoso.com".into(),
                tid: TENANT.into()
            })
        );
        let mut c = base();
        c.remove("upn");
        c.insert("preferred_username".into(), json!("bob@contoso.com"));
        assert!(
            matches!(check(&c, None), Ok(Subject::User { upn, .. }) if upn == "bob@contoso.com")
        );
        c.remove("preferred_username");
        assert_eq!(check(&c, None), Err(JwtError::NoUpn));
    }

    #[test]
    fn exp_and_nbf_with_skew() {
        let mut c = base();
        c.insert("exp".into(), json!(NOW - SKEW_SECS));
        assert!(check(&c, None).is_ok(), "inside skew");
        c.insert("exp".into(), json!(NOW - SKEW_SECS - 1));
        assert!(matches!(check(&c, None), Err(JwtError::Expired { .. })));
        c.remove("exp");
        assert_eq!(check(&c, None), Err(JwtError::NoExp));
        c.insert("exp".into(), json!("soon"));
        assert!(matches!(check(&c, None), Err(JwtError::Malformed(_))));
        let mut c = base();
        c.insert("nbf".into(), json!(NOW + SKEW_SECS));
        assert!(check(&c, None).is_ok());
        c.insert("nbf".into(), json!(NOW + SKEW_SECS + 1));
        assert!(matches!(check(&c, None), Err(JwtError::NotYetValid { .. })));
    }

    #[test]
    fn audience_string_or_array() {
        let mut c = base();
        c.insert("aud".into(), json!(["other", "app-id-1"]));
        assert!(check(&c, None).is_ok());
        c.insert("aud".into(), json!("https://graph.microsoft.com"));
        assert!(matches!(check(&c, None), Err(JwtError::Audience(_))));
        c.remove("aud");
        assert!(matches!(check(&c, None), Err(JwtError::Audience(_))));
    }

    #[test]
    fn tenant_and_issuer_must_agree() {
        let other = "11111111-2222-3333-4444-555555555555";
        let mut c = base();
        c.insert("tid".into(), json!(other));
        c.insert(
            "iss".into(),
            json!(format!("https://sts.windows.net/{other}/")),
        );
        assert_eq!(check(&c, None), Err(JwtError::Tenant(other.into())));
        c.remove("tid");
        assert!(matches!(check(&c, None), Err(JwtError::Tenant(_))));
        // allowed tid, but issuer of another tenant (CVE-2026-24899 shape)
        let mut c = base();
        c.insert(
            "iss".into(),
            json!(format!("https://sts.windows.net/{other}/")),
        );
        assert!(matches!(check(&c, None), Err(JwtError::Issuer(_))));
        c.insert(
            "iss".into(),
            json!("https://evil.example/".to_string() + TENANT + "/"),
        );
        assert!(matches!(check(&c, None), Err(JwtError::Issuer(_))));
        c.insert(
            "iss".into(),
            json!(format!("https://login.microsoftonline.com/{TENANT}/v2.0")),
        );
        assert!(check(&c, None).is_ok());
    }

    #[test]
    fn scope_is_a_whole_word() {
        let mut c = base();
        c.insert("scp".into(), json!("openid mdm_delegation_x"));
        assert!(matches!(check(&c, None), Err(JwtError::Scope(_))));
        c.insert("scp".into(), json!("openid mdm_delegation"));
        assert!(check(&c, None).is_ok());
    }

    #[test]
    fn app_only_needs_the_configured_role() {
        let mut c = base();
        c.remove("scp");
        c.remove("upn");
        c.insert("idtyp".into(), json!("app"));
        c.insert("appid".into(), json!("autopilot-app"));
        assert!(matches!(check(&c, None), Err(JwtError::AppOnly(_))));
        assert!(matches!(
            check(&c, Some("mdm_device")),
            Err(JwtError::AppOnly(_))
        ));
        c.insert("roles".into(), json!(["mdm_device"]));
        assert_eq!(
            check(&c, Some("mdm_device")),
            Ok(Subject::App {
                app: "autopilot-app".into(),
                tid: TENANT.into()
            })
        );
        // idtyp=app wins even when a scp is present
        c.insert("scp".into(), json!("mdm_delegation"));
        assert!(matches!(check(&c, None), Err(JwtError::AppOnly(_))));
    }

    #[test]
    fn signature_alg_and_shape() {
        let k = EntraKey::generate("k1");
        let claims = EntraKey::user_claims("a@contoso.com", NOW);
        let tok = k.sign(&claims);
        let p = parse(tok.as_bytes()).unwrap();
        assert_eq!(p.require_rs256(), Ok("k1"));
        let (n, e) = k.components();
        assert_eq!(p.verify(&n, &e), Ok(()));
        // another key
        let k2 = EntraKey::generate("k1");
        let (n2, e2) = k2.components();
        assert_eq!(p.verify(&n2, &e2), Err(JwtError::BadSignature));
        // tampered claims
        let mut parts: Vec<&str> = tok.split('.').collect();
        let evil = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&EntraKey::user_claims("ceo@contoso.com", NOW)).unwrap());
        parts[1] = &evil;
        let p = parse(parts.join(".").as_bytes()).unwrap();
        assert_eq!(p.verify(&n, &e), Err(JwtError::BadSignature));
        // none / HS256
        for alg in ["none", "HS256", "RS512", "rs256"] {
            let t = EntraKey::unsigned(alg, Some("k1"), &claims, b"sig");
            let p = parse(t.as_bytes()).unwrap();
            assert_eq!(p.require_rs256(), Err(JwtError::Algorithm(alg.into())));
            assert_eq!(p.verify(&n, &e), Err(JwtError::Algorithm(alg.into())));
        }
        let t = EntraKey::unsigned("RS256", None, &claims, b"sig");
        assert_eq!(
            parse(t.as_bytes()).unwrap().require_rs256(),
            Err(JwtError::NoKid)
        );
        for bad in [
            &b""[..],
            b"a.b",
            b"a.b.c.d",
            b"!!.e30.x",
            b"e30.W10.AA",
            &[0xff, 0x2e],
        ] {
            assert!(matches!(parse(bad), Err(JwtError::Malformed(_))), "{bad:?}");
        }
        assert!(parse(&vec![b'a'; MAX_TOKEN_BYTES + 1]).is_err());
    }
}
