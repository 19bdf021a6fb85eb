//! Throughput figures, printed (not asserted). Run with
//! `cargo test --test main ca::bench -- --ignored --nocapture` (add `--release` for release).

use std::time::{Duration, Instant};

use winmdm::ca::{testing, verify_csr, KeyAlgorithm};

use super::{ec_ca, now, rsa_ca};

fn rate(label: &str, mut f: impl FnMut()) {
    f(); // warm up
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_secs(2) {
        f();
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:<48} {:>9.0} ops/s  ({n} in {secs:.2} s)",
        f64::from(n) / secs
    );
}

#[test]
#[ignore = "benchmark: prints ops/s"]
fn ca_bench_verify_and_issue() {
    let (der, id) = super::windows_csr().unwrap_or_else(|| {
        let (d, _) = testing::device_csr("1E08C6E95D8BB843B1278FF45BC60CC6", KeyAlgorithm::Rsa2048);
        (d, "1E08C6E95D8BB843B1278FF45BC60CC6")
    });
    let (rsa, ec) = (rsa_ca(), ec_ca());
    let csr = verify_csr(&der, 2048).unwrap();
    let day = Duration::from_secs(86400);
    println!(
        "profile: {}",
        if cfg!(debug_assertions) {
            "debug (deps opt-level 1)"
        } else {
            "release"
        }
    );
    rate("verify_csr (Windows RSA-2048, sha1RSA)", || {
        verify_csr(&der, 2048).unwrap();
    });
    rate("issue_device_cert, RSA-2048 CA", || {
        rsa.issue_device_cert(&csr, id, day, now()).unwrap();
    });
    rate("issue_device_cert, P-256 CA", || {
        ec.issue_device_cert(&csr, id, day, now()).unwrap();
    });
    rate("verify + issue, RSA-2048 CA", || {
        let c = verify_csr(&der, 2048).unwrap();
        rsa.issue_device_cert(&c, id, day, now()).unwrap();
    });
    rate("verify + issue, P-256 CA", || {
        let c = verify_csr(&der, 2048).unwrap();
        ec.issue_device_cert(&c, id, day, now()).unwrap();
    });
    for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256] {
        let t = Instant::now();
        winmdm::ca::Ca::generate(alg, "bench", now()).unwrap();
        println!(
            "{:<48} {:>9.1} ms (one run)",
            format!("Ca::generate({alg})"),
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let cert = ec.issue_device_cert(&csr, id, day, now()).unwrap();
    rate("authenticate_device_cert, P-256 CA", || {
        ec.authenticate_device_cert(&cert.der, now()).unwrap();
    });
}
