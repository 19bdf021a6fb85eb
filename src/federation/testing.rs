//! Test helpers: a locally generated "Entra" signing key, JWKS and tokens. Not part of the
//! supported API.
#![doc(hidden)]

use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use serde_json::{json, Value};

/// The tenant the helpers issue tokens for.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The audience (App ID URI) the helpers issue tokens for.
pub const AUDIENCE: &str = "https://mdm.contoso.com";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An RSA-2048 signing key with a `kid`.
pub struct EntraKey {
    /// Key id written in the JWKS and token headers.
    pub kid: String,
    key: aws_lc_rs::rsa::KeyPair,
}

impl EntraKey {
    /// A fresh key.
    ///
    /// # Panics
    /// If key generation fails (test helper).
    pub fn generate(kid: &str) -> EntraKey {
        EntraKey {
            kid: kid.to_string(),
            key: aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .expect("RSA key generation"),
        }
    }

    /// The public key as (`n`, `e`) big-endian bytes.
    pub fn components(&self) -> (Vec<u8>, Vec<u8>) {
        let p = self.key.public_key();
        (
            p.modulus().big_endian_without_leading_zero().to_vec(),
            p.exponent().big_endian_without_leading_zero().to_vec(),
        )
    }

    /// The public key's DER (PKCS#1), e.g. as a forged HMAC secret.
    pub fn public_der(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// This key as a JWK object.
    pub fn jwk(&self) -> Value {
        let (n, e) = self.components();
        json!({"kty": "RSA", "use": "sig", "kid": self.kid, "n": b64(&n), "e": b64(&e)})
    }

    /// A JWKS document holding `keys`.
    pub fn jwks(keys: &[&EntraKey]) -> String {
        json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
    }

    /// An RS256 token with `claims`.
    ///
    /// # Panics
    /// If signing fails (test helper).
    pub fn sign(&self, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(json!({"typ": "JWT", "alg": "RS256", "kid": self.kid})
                .to_string()
                .as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("sign");
        format!("{input}.{}", b64(&sig))
    }

    /// A token with any header `alg`/`kid` and the given raw signature bytes.
    pub fn unsigned(alg: &str, kid: Option<&str>, claims: &Value, sig: &[u8]) -> String {
        let mut h = json!({"typ": "JWT", "alg": alg});
        if let Some(k) = kid {
            h["kid"] = json!(k);
        }
        format!(
            "{}.{}.{}",
            b64(h.to_string().as_bytes()),
            b64(claims.to_string().as_bytes()),
            b64(sig)
        )
    }

    /// An HS256 token whose HMAC secret is this key's public key (the key-confusion attack).
    pub fn hs256_with_public_key(&self, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(json!({"typ": "JWT", "alg": "HS256", "kid": self.kid})
                .to_string()
                .as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.public_der());
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    }

    /// Claims of a valid delegated (user) token for `upn`, issued at `now` for one hour.
    pub fn user_claims(upn: &str, now: i64) -> Value {
        json!({
            "aud": AUDIENCE,
            "iss": format!("https://sts.windows.net/{TENANT}/"),
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "tid": TENANT,
            "oid": "5e1b3b6f-0000-4000-8000-000000000001",
            "scp": "mdm_delegation",
            "upn": upn,
            "ver": "1.0",
        })
    }

    /// Claims of a valid app-only token carrying `role`, issued at `now` for one hour.
    pub fn app_claims(role: &str, now: i64) -> Value {
        json!({
            "aud": AUDIENCE,
            "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "tid": TENANT,
            "idtyp": "app",
            "azp": "0000000a-0000-0000-c000-000000000000",
            "roles": [role],
            "ver": "2.0",
        })
    }
}
