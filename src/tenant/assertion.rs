//! The client assertion of the OAuth 2.0 client-credentials grant with a certificate, as
//! <https://learn.microsoft.com/entra/identity-platform/certificate-credentials> specifies it:
//! a JWT whose header is `{"alg":"PS256","typ":"JWT","x5t#S256":<base64url SHA-256 of the
//! certificate's DER>}` and whose claims are `aud` = the token endpoint, `iss` = `sub` = the
//! client (application) id, a unique `jti`, `nbf`, `iat` and `exp` (10 minutes later), signed
//! with the certificate's RSA key (RSASSA-PSS SHA-256, aws-lc-rs).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::RSA_PSS_SHA256;
use base64::Engine;

use super::credential::Certificate;

/// Lifetime of an assertion (seconds).
pub const LIFETIME: i64 = 600;

/// `client_assertion_type` of a JWT bearer assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The signed assertion for `client_id` at token endpoint `aud`, made at `now` with id `jti`.
pub fn sign(
    cert: &Certificate,
    client_id: &str,
    aud: &str,
    now: i64,
    jti: &str,
) -> Result<String, String> {
    let header = serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": cert.x5t_s256});
    let claims = serde_json::json!({
        "aud": aud,
        "iss": client_id,
        "sub": client_id,
        "jti": jti,
        "nbf": now,
        "iat": now,
        "exp": now + LIFETIME,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = cert.key();
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PSS_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| "the private key could not sign the client assertion".to_string())?;
    Ok(format!("{signing_input}.{}", b64(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::credential::{load, Credential, Stored};

    #[test]
    fn assertion_verifies_with_the_certificate_and_carries_the_documented_claims() {
        let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["app".into()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let Credential::Certificate(c) = load(
            &Stored::Certificate {
                certificate_pem: cert.pem(),
                private_key_pem: k.serialize_pem(),
            },
            now,
        )
        .unwrap() else {
            panic!("certificate expected")
        };
        let aud = "https://login.example/tid/oauth2/v2.0/token";
        let jwt = sign(&c, "app-id", aud, 1000, "j1").unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let dec = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let h: serde_json::Value = serde_json::from_slice(&dec(parts[0])).unwrap();
        assert_eq!(h["alg"], "PS256");
        assert_eq!(h["x5t#S256"], c.x5t_s256.as_str());
        let p: serde_json::Value = serde_json::from_slice(&dec(parts[1])).unwrap();
        assert_eq!(p["aud"], aud);
        assert_eq!(p["iss"], "app-id");
        assert_eq!(p["sub"], "app-id");
        assert_eq!(p["exp"], 1000 + LIFETIME);
        let (_, x) = x509_parser::parse_x509_certificate(&c.der).unwrap();
        let pk = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
            x.public_key().subject_public_key.data.as_ref(),
        );
        let input = format!("{}.{}", parts[0], parts[1]);
        pk.verify(input.as_bytes(), &dec(parts[2])).unwrap();
    }
}
