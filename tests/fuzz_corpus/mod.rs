//! The fuzz targets' properties on every seed (`fuzz/seeds/*/`), every protocol fixture
//! (`protocol-fixtures/**`) and, when present, every capture in `../shared/conformance/**`, so
//! the normal suite runs the targets' code without cargo-fuzz. Enrollment requests also feed
//! their decoded `BinarySecurityToken` to the CSR and CMS properties, and SyncML messages feed the
//! session property with their DeviceID replaced by the fuzz device's.

use std::path::{Path, PathBuf};

use base64::Engine;
use winmdm::ca::fuzzing as cafz;
use winmdm::mdm::fuzzing as mdmfz;

use crate::support::device::{element_text, B64};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Seeds of `target`, every protocol fixture and every capture (if present).
fn corpus(target: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    files_under(&root().join("fuzz/seeds").join(target), &mut out);
    assert!(!out.is_empty(), "no seeds for {target}");
    files_under(&root().join("protocol-fixtures"), &mut out);
    let shared = root().join("../shared/conformance");
    if shared.is_dir() {
        files_under(&shared, &mut out);
    } else {
        println!("SKIP captures for {target}: ../shared/conformance not found");
    }
    out
}

fn run(target: &str, f: impl Fn(&[u8])) {
    let files = corpus(target);
    for p in &files {
        let data = std::fs::read(p).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&data)));
        assert!(r.is_ok(), "{target} failed on {}", p.display());
    }
    println!("{target}: {} inputs", files.len());
}

/// Base64 `BinarySecurityToken`s of the enrollment requests among the inputs.
fn security_tokens(target: &str) -> Vec<Vec<u8>> {
    corpus(target)
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|xml| element_text(&xml, "BinarySecurityToken"))
        .filter_map(|b64| B64.decode(b64.trim().replace(['\r', '\n', ' '], "")).ok())
        .collect()
}

#[test]
fn soap_envelope_on_corpus() {
    run("soap_envelope", winmdm::soap::fuzzing::soap_envelope);
}

#[test]
fn syncml_roundtrip_on_corpus() {
    run("session_steps", winmdm::syncml::fuzzing::roundtrip);
}

#[test]
fn csr_on_corpus_and_captured_windows_csrs() {
    run("csr", cafz::csr);
    let tokens = security_tokens("csr");
    for t in &tokens {
        cafz::csr(t);
    }
    println!("csr: {} decoded BinarySecurityTokens", tokens.len());
}

#[test]
fn csr_seeds_are_accepted_and_certified() {
    for (seed, min) in [
        ("ec-p256.der", 2048),
        ("rsa2048-deviceid-ext.der", 2048),
        ("rsa1024.der", 1024),
    ] {
        let der = std::fs::read(root().join("fuzz/seeds/csr").join(seed)).unwrap();
        winmdm::ca::verify_csr(&der, min).unwrap_or_else(|e| panic!("{seed}: {e}"));
        cafz::csr(&der);
    }
}

#[test]
fn cms_signature_on_corpus() {
    run("cms_signature", cafz::cms_signature);
    for t in security_tokens("cms_signature") {
        cafz::cms_signature(&t);
    }
}

#[test]
fn cms_seeds_verify_against_the_fixed_ca() {
    let seeds = root().join("fuzz/seeds/cms_signature");
    let ca = cafz::fixed_ca();
    for seed in ["detached-attrs.der", "detached-noattr.der"] {
        let der = std::fs::read(seeds.join(seed)).unwrap();
        let id = winmdm::ca::verify_detached_signature(ca, &der, cafz::SIGNED_CONTENT, cafz::now())
            .unwrap_or_else(|e| panic!("{seed}: {e}"));
        assert_eq!(id.device_id, cafz::FUZZ_DEVICE_ID);
    }
    let header = std::fs::read_to_string(seeds.join("header-attrs.b64")).unwrap();
    winmdm::ca::verify_signature_header(ca, &header, cafz::SIGNED_CONTENT, cafz::now())
        .expect("header seed");
    let renewal = std::fs::read(seeds.join("renewal.der")).unwrap();
    let (_, id) = ca
        .verify_renewal(&renewal, 2048, cafz::now())
        .expect("renewal seed");
    assert_eq!(id.device_id, cafz::FUZZ_DEVICE_ID);
}

#[test]
fn admin_json_on_corpus() {
    run("admin_json", mdmfz::admin_json);
}

#[test]
fn session_steps_on_corpus_with_the_fuzz_device_id() {
    run("session_steps", |data| {
        let _ = mdmfz::session_steps(data);
        // Captured and fixture messages name their own device: play them as the fuzz device.
        if let Ok(m) = winmdm::syncml::parse(data) {
            let id = m.hdr.source.loc_uri.trim().to_string();
            if !id.is_empty() {
                let text = String::from_utf8_lossy(data).replace(&id, mdmfz::DEVICE_ID);
                let _ = mdmfz::session_steps(text.as_bytes());
            }
        }
    });
}

#[test]
fn session_seeds_are_accepted_message_by_message() {
    let mut files = Vec::new();
    files_under(&root().join("fuzz/seeds/session_steps"), &mut files);
    for p in files {
        let data = std::fs::read(&p).unwrap();
        let messages = data.split(|b| *b == 0).count();
        assert_eq!(
            mdmfz::session_steps(&data),
            messages,
            "{}: every message accepted",
            p.display()
        );
    }
}

#[test]
fn group_query_on_corpus() {
    run("group_query", winmdm::groups::query::fuzz);
    // The seeds are real queries: all but the truncated one parse.
    let mut files = Vec::new();
    files_under(&root().join("fuzz/seeds/group_query"), &mut files);
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        let parsed = winmdm::groups::query::parse(&text);
        let truncated = p.file_name().is_some_and(|n| n == "truncated.txt");
        assert_eq!(parsed.is_err(), truncated, "{}: {parsed:?}", p.display());
    }
}
