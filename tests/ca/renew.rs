//! MS-WSTEP renewal tokens (PKCS#7 SignedData around the new PKCS#10), made with OpenSSL.

use std::time::Duration;

use winmdm::ca::{testing, verify_csr, CaError, KeyAlgorithm};

use super::{now, openssl, openssl_dir, rsa_ca};

const DEV: &str = "1E08C6E95D8BB843B1278FF45BC60CC6";

#[test]
fn ca_renewal_tokens_from_openssl_cms() {
    let Some(dir) = openssl_dir("CMS renewal tokens") else {
        return;
    };
    let d = dir.path();
    let ca = rsa_ca();
    // The device's current certificate and key.
    let (old_csr, old_key) = testing::device_csr(DEV, KeyAlgorithm::Rsa2048);
    let old = ca
        .issue_device_cert(
            &verify_csr(&old_csr, 2048).unwrap(),
            DEV,
            Duration::from_secs(86400),
            now(),
        )
        .unwrap();
    std::fs::write(d.join("old.pem"), &old.pem).unwrap();
    std::fs::write(d.join("old.key"), old_key.serialize_pem()).unwrap();
    // The new request, wrapped.
    let (new_csr, _) = testing::device_csr(DEV, KeyAlgorithm::Rsa2048);
    std::fs::write(d.join("new.der"), &new_csr).unwrap();
    let sign = |out: &str, extra: &[&str]| -> Vec<u8> {
        let mut a = vec![
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-outform",
            "DER",
            "-in",
            "new.der",
            "-signer",
            "old.pem",
            "-inkey",
            "old.key",
            "-out",
            out,
        ];
        a.extend_from_slice(extra);
        let (ok, msg) = openssl(d, &a);
        assert!(ok, "{msg}");
        std::fs::read(d.join(out)).unwrap()
    };
    for (name, extra) in [
        ("attrs-sha256.p7", &["-md", "sha256"][..]),
        ("attrs-sha1.p7", &["-md", "sha1"][..]),
        ("noattr.p7", &["-md", "sha256", "-noattr"][..]),
        ("keyid.p7", &["-md", "sha256", "-keyid"][..]),
    ] {
        let p7 = sign(name, extra);
        let (csr, id) = ca
            .verify_renewal(&p7, 2048, now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            csr.spki_der(),
            verify_csr(&new_csr, 2048).unwrap().spki_der()
        );
        assert_eq!(id.device_id, DEV);
        assert_eq!(id.serial_hex, old.serial_hex);
        // No flipped byte panics, and none changes what gets certified: a flip is either
        // refused or lands in unsigned bookkeeping (e.g. the digestAlgorithms set).
        for i in 0..p7.len() {
            let mut bad = p7.clone();
            bad[i] ^= 0x01;
            if let Ok((c, who)) = ca.verify_renewal(&bad, 2048, now()) {
                assert_eq!(c.spki_der(), csr.spki_der(), "{name}: flip at {i}");
                assert_eq!(who.serial_hex, old.serial_hex, "{name}: flip at {i}");
            }
        }
        // Not after the old certificate expired, and not for another CA.
        let late = now() + time::Duration::days(2);
        assert!(matches!(
            ca.verify_renewal(&p7, 2048, late),
            Err(CaError::CertRejected { .. })
        ));
        assert!(super::ec_ca().verify_renewal(&p7, 2048, now()).is_err());
    }
    // A new request naming another device is refused.
    let (other, _) =
        testing::device_csr("B5B954E81FBCB94EB79BD08BE625F4EE", KeyAlgorithm::EcdsaP256);
    std::fs::write(d.join("new.der"), &other).unwrap();
    let p7 = sign("other.p7", &["-md", "sha256"]);
    assert!(matches!(
        ca.verify_renewal(&p7, 2048, now()),
        Err(CaError::DeviceIdMismatch { .. })
    ));
    assert!(ca.verify_renewal(b"", 2048, now()).is_err());
    assert!(ca.verify_renewal(&new_csr, 2048, now()).is_err());
}
