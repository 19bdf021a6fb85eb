//! The real Windows requests from the captures.

use std::time::Duration;

use winmdm::ca::{verify_csr, CaError};

use super::{capture_csr, ec_ca, now, rsa_ca, CAPTURES};

#[test]
fn ca_windows_captures_verify_and_yield_device_id() {
    for (rel, device_id) in CAPTURES {
        let Some(der) = capture_csr(rel) else {
            continue;
        };
        let csr = verify_csr(&der, 2048).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(csr.device_id_ext(), Some(*device_id), "{rel}");
        assert_eq!(csr.key_bits(), 2048);
        assert_eq!(csr.key_algorithm(), "RSA");
        assert_eq!(csr.signature_alg(), "sha1RSA");
        // The client-chosen CN: "<GUID prefix>!<DeviceID>\0", kept for logging only.
        let cn = csr.subject_cn().unwrap();
        assert!(cn.ends_with(&format!("!{device_id}\0")), "{cn:?}");
        // The SPKI handed to issuance is the request's, byte for byte.
        assert!(der
            .windows(csr.spki_der().len())
            .any(|w| w == csr.spki_der()));
    }
}

#[test]
fn ca_windows_capture_uses_the_oiw_sha1_oid() {
    // Guard the premise of the test above: the capture really is signed under 1.3.14.3.2.29
    // (06 05 2b 0e 03 02 1d), which rcgen's own CSR parser refuses.
    let Some((der, _)) = super::windows_csr() else {
        return;
    };
    let oiw = [0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1d];
    assert!(der.windows(oiw.len()).any(|w| w == oiw));
    let rcgen_view = rcgen::CertificateSigningRequestParams::from_der(&der.as_slice().into());
    assert!(
        rcgen_view.is_err(),
        "rcgen learnt to parse it: simplify csr.rs"
    );
}

#[test]
fn ca_windows_capture_issues_with_rsa_and_ec_cas() {
    let Some((der, device_id)) = super::windows_csr() else {
        return;
    };
    let csr = verify_csr(&der, 2048).unwrap();
    let validity = Duration::from_secs(365 * 86400);
    for ca in [rsa_ca(), ec_ca()] {
        let t = now();
        let cert = ca.issue_device_cert(&csr, device_id, validity, t).unwrap();
        super::issue::check_device_cert(ca, &cert, &csr, device_id, validity, t);
    }
}

#[test]
fn ca_windows_capture_refuses_another_device_id() {
    let Some((der, _)) = super::windows_csr() else {
        return;
    };
    let csr = verify_csr(&der, 2048).unwrap();
    let err = rsa_ca()
        .issue_device_cert(
            &csr,
            "B5B954E81FBCB94EB79BD08BE625F4EE",
            Duration::from_secs(3600),
            now(),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::DeviceIdMismatch { .. }), "{err}");
    assert!(err.is_peer_fault());
    // Case differences in the hex DeviceID are tolerated; the CN keeps the caller's form.
    let cert = rsa_ca()
        .issue_device_cert(
            &csr,
            "1e08c6e95d8bb843b1278ff45bc60cc6",
            Duration::from_secs(3600),
            now(),
        )
        .unwrap();
    assert_eq!(cert.subject, "CN=1e08c6e95d8bb843b1278ff45bc60cc6");
}
