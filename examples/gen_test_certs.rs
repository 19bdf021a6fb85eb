//! Writes a throw-away PKI for manual testing: a CA, a TLS server certificate and one device
//! certificate (with its key), all as PEM.
//!
//! ```text
//! cargo run --example gen_test_certs -- [OUT_DIR] [HOST...]
//! ```
//!
//! `OUT_DIR` defaults to `target/test-certs`, the hosts to `localhost 127.0.0.1`. The device is
//! `CN=1E08C6E95D8BB843B1278FF45BC60CC6` (the DeviceID of the Windows capture in
//! `shared/conformance`). Never use these files in production.

use std::path::PathBuf;
use std::time::Duration;

use winmdm::ca::{testing, verify_csr, Ca, KeyAlgorithm};

const DEVICE_ID: &str = "1E08C6E95D8BB843B1278FF45BC60CC6";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "target/test-certs".into()));
    let mut hosts: Vec<String> = args.collect();
    if hosts.is_empty() {
        hosts = vec!["localhost".into(), "127.0.0.1".into()];
    }
    std::fs::create_dir_all(&out)?;
    let now = time::OffsetDateTime::now_utc();

    let ca = Ca::generate(KeyAlgorithm::Rsa2048, "winmdm test CA", now)?;
    let (server_pem, server_key) = ca.issue_server_cert(&hosts, KeyAlgorithm::EcdsaP256, now)?;
    let (csr_der, device_key) = testing::device_csr(DEVICE_ID, KeyAlgorithm::Rsa2048);
    let csr = verify_csr(&csr_der, 2048)?;
    let device = ca.issue_device_cert(&csr, DEVICE_ID, Duration::from_secs(365 * 86400), now)?;

    let files = [
        ("ca.pem", ca.cert_pem()),
        ("ca.key", ca.key_pem()),
        ("server.pem", format!("{server_pem}{}", ca.cert_pem())),
        ("server.key", server_key),
        ("device.pem", device.pem.clone()),
        ("device.key", device_key.serialize_pem()),
    ];
    for (name, body) in files {
        std::fs::write(out.join(name), body)?;
    }
    println!(
        "wrote {} (CA thumbprint {}, device serial {}, hosts {:?})",
        out.display(),
        ca.thumbprint(),
        device.serial_hex,
        hosts
    );
    Ok(())
}
