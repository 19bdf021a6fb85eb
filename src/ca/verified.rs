//! Which certificates already showed a good CA signature: [`VerifiedCerts`].
//!
//! The management endpoint re-checks the CA's signature on a device certificate behind rustls
//! (defence in depth, [`Ca::authenticate_device_cert`](super::Ca::authenticate_device_cert)):
//! one more ECDSA or RSA verification per connection, as much as a third of a new handshake's
//! public-key work. A certificate's bytes never change, so a signature that verified once for
//! these exact bytes verifies again: the CA remembers the SHA-256 of each certificate whose
//! signature it checked, and checks the signature of bytes it has not seen. Everything that
//! depends on time or on the store (validity period, revocation, the device binding) is still
//! checked on every request.
//!
//! Bounded: two generations of at most [`VerifiedCerts::GENERATION`] digests each (about 4 MB
//! at most). When the current one is full it becomes the previous one and the oldest is
//! dropped, so a device that connects at least once per generation stays remembered and a
//! burst of new certificates costs verifications, never memory.

use std::collections::HashSet;
use std::sync::Mutex;

/// SHA-256 of a DER certificate.
pub(super) type Digest = [u8; 32];

/// The digest [`VerifiedCerts`] keys on.
pub(super) fn digest(der: &[u8]) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[derive(Default)]
struct Generations {
    current: HashSet<Digest>,
    previous: HashSet<Digest>,
}

/// Digests of certificates whose CA signature verified (see the [module docs](self)).
#[derive(Default)]
pub(super) struct VerifiedCerts(Mutex<Generations>);

impl VerifiedCerts {
    /// Most digests per generation.
    pub(super) const GENERATION: usize = 50_000;

    /// Whether the certificate with this digest verified before.
    pub(super) fn contains(&self, d: &Digest) -> bool {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.current.contains(d) || g.previous.contains(d)
    }

    /// Remembers a certificate whose signature just verified.
    pub(super) fn insert(&self, d: Digest) {
        self.insert_bounded(d, Self::GENERATION)
    }

    fn insert_bounded(&self, d: Digest, generation: usize) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.current.len() >= generation {
            g.previous = std::mem::take(&mut g.current);
        }
        g.current.insert(d);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.current.len() + g.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_two_generations_and_stays_bounded() {
        let v = VerifiedCerts::default();
        let d = |i: u32| digest(&i.to_be_bytes());
        for i in 0..10 {
            v.insert_bounded(d(i), 4);
        }
        // 0..3 and 4..7 were rotated out; 8, 9 are current, 4..7 previous.
        assert_eq!(v.len(), 6);
        assert!(!v.contains(&d(3)));
        assert!(v.contains(&d(4)) && v.contains(&d(7)) && v.contains(&d(9)));
        assert!(!v.contains(&d(10)));
    }
}
