//! `winmdm::ca`: CSR verification against real Windows requests, issuance, CA lifecycle, TLS.

mod bench;
mod cms;
mod constraints;
mod issue;
mod lifecycle;
mod reject;
mod renew;
mod server;
mod windows;

use std::process::Command;

use time::OffsetDateTime;
use winmdm::ca::{Ca, KeyAlgorithm};

/// The Windows enrollment requests we hold captures of: (file under shared/conformance,
/// DeviceID in its 1.3.6.1.4.1.311.66.1.0 extension).
pub const CAPTURES: &[(&str, &str)] = &[
    (
        "peers/marcosd4h-mdm-poc/04-enroll-request.xml",
        "1E08C6E95D8BB843B1278FF45BC60CC6",
    ),
    (
        "fleet/trace-ngrok-05-device-rst-wstep-request-pkcs10.xml",
        "B5B954E81FBCB94EB79BD08BE625F4EE",
    ),
    (
        "fleet/trace-readme-05-device-rst-wstep-request-pkcs10.xml",
        "1E08C6E95D8BB843B1278FF45BC60CC6",
    ),
];

/// The PKCS#10 DER inside the `wsse:BinarySecurityToken` of a captured MS-WSTEP request, or
/// `None` (after printing `SKIP:`) when the capture is not on this machine.
pub fn capture_csr(rel: &str) -> Option<Vec<u8>> {
    let path = format!("{}/../shared/conformance/{rel}", env!("CARGO_MANIFEST_DIR"));
    let Ok(xml) = std::fs::read_to_string(&path) else {
        println!("SKIP: capture {path} not present");
        return None;
    };
    let tag = xml.find("BinarySecurityToken").expect("token element");
    let start = tag + xml[tag..].find('>').expect("token start") + 1;
    let end = start + xml[start..].find('<').expect("token end");
    let b64: String = xml[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    use base64::Engine as _;
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64 token"),
    )
}

/// The first capture (the PoC's Windows request), or `None` with a SKIP line.
pub fn windows_csr() -> Option<(Vec<u8>, &'static str)> {
    let (rel, id) = CAPTURES[0];
    capture_csr(rel).map(|d| (d, id))
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// CAs are slow to generate (RSA); share one of each kind across tests.
pub fn rsa_ca() -> &'static Ca {
    static CA: std::sync::OnceLock<Ca> = std::sync::OnceLock::new();
    CA.get_or_init(|| Ca::generate(KeyAlgorithm::Rsa2048, "winmdm test CA", now()).unwrap())
}

pub fn ec_ca() -> &'static Ca {
    static CA: std::sync::OnceLock<Ca> = std::sync::OnceLock::new();
    CA.get_or_init(|| Ca::generate(KeyAlgorithm::EcdsaP256, "winmdm test EC CA", now()).unwrap())
}

/// `Some(dir)` when an `openssl` binary runs here; otherwise prints SKIP.
pub fn openssl_dir(why: &str) -> Option<tempfile::TempDir> {
    match Command::new("openssl").arg("version").output() {
        Ok(o) if o.status.success() => Some(tempfile::tempdir().unwrap()),
        _ => {
            println!("SKIP: no openssl binary ({why})");
            None
        }
    }
}

/// Runs openssl with `args` in `dir`; returns (success, stdout+stderr).
pub fn openssl(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.success(), s)
}
