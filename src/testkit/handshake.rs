//! The handshake-crypto bound (issue 15): the public-key work one server-side mutual-TLS 1.3
//! handshake does with an ECDSA P-256 certificate (what `--ca-key-algorithm ecdsa-p256` gives the
//! server and the devices) and the X25519 key exchange rustls negotiates by default, timed with
//! aws-lc-rs — the same library rustls uses here, so the figure is what our handshakes pay, not
//! another library's:
//!
//! - one X25519 key generation and one agreement (the key share);
//! - one ECDSA P-256 / SHA-256 signature (the server's `CertificateVerify`);
//! - two ECDSA P-256 verifications: the CA's signature on the device certificate (the chain
//!   check) and the device's `CertificateVerify`.
//!
//! Hashing, HKDF and record encryption are left out (they cost a few µs), so the bound is
//! optimistic: no real handshake reaches it.

use std::time::{Duration, Instant};

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey as PeerKey, X25519};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};

/// What one server-side handshake's public-key work costs on one core.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// One ECDSA P-256 signature.
    pub sign: Duration,
    /// One ECDSA P-256 verification.
    pub verify: Duration,
    /// One X25519 key generation + agreement.
    pub key_exchange: Duration,
    /// Cores the bound counts ([`std::thread::available_parallelism`]).
    pub cores: usize,
}

impl Bound {
    /// One handshake's crypto: a signature, two verifications and a key exchange.
    pub fn per_handshake(&self) -> Duration {
        self.sign + self.verify * 2 + self.key_exchange
    }

    /// Handshakes per second all cores could do if they did nothing else.
    pub fn per_second(&self) -> f64 {
        self.cores as f64 / self.per_handshake().as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "handshake-crypto bound: {:.1} µs per server handshake (ECDSA P-256 sign {:.1} µs, 2 × verify {:.1} µs, X25519 {:.1} µs) = {:.0} handshakes/s on {} core(s)",
            micros(self.per_handshake()),
            micros(self.sign),
            micros(self.verify),
            micros(self.key_exchange),
            self.per_second(),
            self.cores
        )
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Times each operation on this thread for about `each` (at least 50 iterations), after a
/// short warm-up. Errors only if aws-lc-rs cannot make a key (never expected).
pub fn measure(each: Duration) -> Result<Bound, String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|e| format!("P-256 key: {e}"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .map_err(|e| format!("P-256 key: {e}"))?;
    // A TLS 1.3 CertificateVerify signs 64 spaces, a context string and a SHA-256 transcript.
    let message = [0x20u8; 130];
    let signature = key
        .sign(&rng, &message)
        .map_err(|e| format!("P-256 sign: {e}"))?;
    let public =
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());
    let peer = EphemeralPrivateKey::generate(&X25519, &rng)
        .and_then(|k| k.compute_public_key())
        .map_err(|e| format!("X25519 key: {e}"))?;
    let peer = peer.as_ref().to_vec();

    let sign = time(each, || key.sign(&rng, &message).is_ok())?;
    let verify = time(each, || public.verify(&message, signature.as_ref()).is_ok())?;
    let key_exchange = time(each, || {
        let Ok(k) = EphemeralPrivateKey::generate(&X25519, &rng) else {
            return false;
        };
        if k.compute_public_key().is_err() {
            return false;
        }
        agreement::agree_ephemeral(k, PeerKey::new(&X25519, &peer), (), |secret| {
            Ok(secret.len())
        })
        .is_ok()
    })?;
    Ok(Bound {
        sign,
        verify,
        key_exchange,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// The mean time of `op` run repeatedly for about `each`.
fn time(each: Duration, mut op: impl FnMut() -> bool) -> Result<Duration, String> {
    for _ in 0..10 {
        if !op() {
            return Err("a crypto operation failed".into());
        }
    }
    let started = Instant::now();
    let mut n: u32 = 0;
    while n < 50 || started.elapsed() < each {
        if !op() {
            return Err("a crypto operation failed".into());
        }
        n += 1;
    }
    Ok(started.elapsed() / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_adds_up_its_operations() {
        let b = measure(Duration::from_millis(5)).unwrap();
        assert!(b.sign > Duration::ZERO && b.verify > Duration::ZERO);
        assert_eq!(b.per_handshake(), b.sign + b.verify * 2 + b.key_exchange);
        let one_core = Bound { cores: 1, ..b };
        assert!((one_core.per_second() * 2.0 - Bound { cores: 2, ..b }.per_second()).abs() < 1e-6);
        assert!(b.to_string().starts_with("handshake-crypto bound: "));
    }
}
