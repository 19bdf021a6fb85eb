//! SyncML codec tests (issue 3): fixtures and real captures round-trip, agree with roxmltree, and
//! bad input fails fast with typed errors.

mod bad_input;
mod differential;
pub mod gen;
mod model;
mod roundtrip;

use std::path::{Path, PathBuf};

/// `../shared/conformance` relative to the crate root.
pub fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance")
}

/// `protocol-fixtures/syncml`.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol-fixtures/syncml")
}

fn xml_files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "xml")
                        && p.file_name().and_then(|n| n.to_str()).is_some_and(&keep)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Full SyncML messages captured from real devices, or `None` (after printing SKIP) if absent.
pub fn conformance_messages() -> Option<Vec<PathBuf>> {
    let dir = conformance_dir();
    if !dir.exists() {
        println!(
            "SKIP: {} not found; conformance captures not checked",
            dir.display()
        );
        return None;
    }
    let mut v = xml_files(&dir.join("fleet"), |n| {
        n.starts_with("trace-") && n.contains("syncml")
    });
    v.extend(xml_files(&dir.join("peers/marcosd4h-mdm-poc"), |n| {
        n.starts_with("05-") || n.starts_with("06-")
    }));
    assert!(v.len() >= 9, "expected the SyncML captures, found {v:?}");
    Some(v)
}

/// Command fragments from Fleet (`poc-cmd-*`, `profile-*`), or `None` if absent.
pub fn conformance_fragments() -> Option<Vec<PathBuf>> {
    let dir = conformance_dir().join("fleet");
    if !dir.exists() {
        println!(
            "SKIP: {} not found; Fleet fragments not checked",
            dir.display()
        );
        return None;
    }
    let v = xml_files(&dir, |n| {
        n.starts_with("poc-cmd-") || n.starts_with("profile-")
    });
    assert!(v.len() >= 15, "expected the Fleet fragments, found {v:?}");
    Some(v)
}

/// Our own full-message fixtures (always present).
pub fn fixture_messages() -> Vec<PathBuf> {
    let v = xml_files(&fixture_dir(), |_| true);
    assert!(v.len() >= 8, "fixtures missing: {v:?}");
    v
}

/// Our own fragment fixtures.
pub fn fixture_fragments() -> Vec<PathBuf> {
    let v = xml_files(&fixture_dir().join("fragments"), |_| true);
    assert!(v.len() >= 3);
    v
}

/// The Fleet `poc-cmd-*` samples use `<A:Format>` without declaring `A`. We decided the parser
/// stays strict (UnboundPrefix) and the caller fixes the input: declare `A` as `syncml:metinf` on
/// each such element, which is what Fleet's server effectively sends.
pub fn fix_undeclared_a_prefix(s: &str) -> String {
    if s.contains("xmlns:A=") {
        return s.to_string();
    }
    s.replace("<A:Format>", "<A:Format xmlns:A=\"syncml:metinf\">")
        .replace("<A:Type>", "<A:Type xmlns:A=\"syncml:metinf\">")
}

pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
