//! Entry points for `fuzz/` and `tests/fuzz_corpus` (not a stable API).
#![doc(hidden)]

use std::sync::OnceLock;
use std::time::Duration;

use time::OffsetDateTime;

use super::{verify_csr, Ca, KeyAlgorithm, ABSOLUTE_MIN_RSA_BITS, DEFAULT_MIN_RSA_BITS};

/// DeviceID used when a request carries no (valid) DeviceID extension.
pub const FIXED_DEVICE_ID: &str = "FUZZ0000000000000000000000000001";

/// DeviceID of `certs/fuzz-device-p256.crt`.
pub const FUZZ_DEVICE_ID: &str = "FUZZDEVICE0000000000000000000001";

/// The content the `fuzz/seeds/cms_signature` signatures sign.
pub const SIGNED_CONTENT: &[u8] = br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr/></SyncML>"#;

const FUZZ_CA_CERT: &str = include_str!("../../certs/fuzz-ca-p256.crt");
const FUZZ_CA_KEY: &str = include_str!("../../certs/fuzz-ca-p256.key");

/// A fixed instant inside the validity of the fuzz CA and device certificates.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A P-256 CA generated once per process (issuing is fast with it).
pub fn generated_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        Ca::generate(KeyAlgorithm::EcdsaP256, "winmdm fuzz CA", now()).expect("P-256 CA")
    })
}

/// The fixed CA of `certs/fuzz-ca-p256.*` that signed the device certificate in the
/// `cms_signature` seeds.
pub fn fixed_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::from_pem(FUZZ_CA_CERT, FUZZ_CA_KEY).expect("bundled fuzz CA"))
}

/// Properties: `verify_csr` never panics (minimum 2048 and 1024 bits); a request that passes is
/// certified by a CA for its DeviceID extension (when that is a valid DeviceID) or a fixed id, and
/// the certificate parses back to that DeviceID and authenticates against the CA.
pub fn csr(data: &[u8]) {
    for min in [DEFAULT_MIN_RSA_BITS, ABSOLUTE_MIN_RSA_BITS] {
        let Ok(v) = verify_csr(data, min) else {
            continue;
        };
        let _ = (
            v.key_bits(),
            v.key_algorithm(),
            v.signature_alg(),
            v.subject_cn(),
        );
        let ca = generated_ca();
        let device_id = match v.device_id_ext() {
            Some(id) if super::check_device_id(id).is_ok() => {
                // The extension binds the request to its DeviceID: another id is refused.
                let other =
                    ca.issue_device_cert(&v, FIXED_DEVICE_ID, Duration::from_secs(60), now());
                assert!(
                    id.eq_ignore_ascii_case(FIXED_DEVICE_ID) || other.is_err(),
                    "certified a request for {id} as {FIXED_DEVICE_ID}"
                );
                id.to_string()
            }
            Some(id) => {
                let r = ca.issue_device_cert(&v, id, Duration::from_secs(60), now());
                assert!(r.is_err(), "certified an invalid DeviceID {id:?}");
                continue;
            }
            None => FIXED_DEVICE_ID.to_string(),
        };
        let cert = ca
            .issue_device_cert(&v, &device_id, Duration::from_secs(86_400), now())
            .unwrap_or_else(|e| panic!("verified request not certified for {device_id}: {e}"));
        let id = super::device_id_from_cert(&cert.der)
            .unwrap_or_else(|e| panic!("issued certificate does not parse: {e}"));
        assert_eq!(id.device_id, device_id);
        assert_eq!(id.serial_hex, cert.serial_hex);
        let auth = ca
            .authenticate_device_cert(&cert.der, now())
            .unwrap_or_else(|e| panic!("issued certificate not accepted by its CA: {e}"));
        assert_eq!(auth.device_id, device_id);
    }
}

/// Properties: the message-signature and renewal verifiers never panic on any bytes; whatever
/// they accept names the one device the fixed CA certified.
pub fn cms_signature(data: &[u8]) {
    let ca = fixed_ca();
    let now = now();
    if let Ok(id) = super::verify_detached_signature(ca, data, SIGNED_CONTENT, now) {
        assert_eq!(id.device_id, FUZZ_DEVICE_ID);
    }
    let _ = super::verify_detached_signature(ca, data, data, now);
    let header = String::from_utf8_lossy(data);
    if let Ok(id) = super::verify_signature_header(ca, &header, SIGNED_CONTENT, now) {
        assert_eq!(id.device_id, FUZZ_DEVICE_ID);
    }
    if let Ok((_, id)) = ca.verify_renewal(data, DEFAULT_MIN_RSA_BITS, now) {
        assert_eq!(id.device_id, FUZZ_DEVICE_ID);
    }
}
