//! SOAP enrollment layer: captured device requests, structure of our responses against the
//! captured accepted responses, own fixtures + goldens, tamper and garbage batteries, and XSD
//! validation with xmllint (when installed).

mod captures;
mod fixtures;
mod garbage;
mod roundtrip;
mod structure;
mod tamper;
mod windows_compat;
pub(crate) mod xsd;

use std::collections::BTreeSet;
use std::path::PathBuf;

/// `../shared/conformance` (read-only captures; never copied into the repo).
pub fn conformance_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/conformance"
    ))
}

/// `../shared/schemas`.
pub fn schemas_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/schemas"))
}

/// `protocol-fixtures/` of this repo.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/protocol-fixtures"))
}

/// Read a conformance file; `None` (after printing `SKIP: …`) when absent.
pub fn capture(rel: &str) -> Option<Vec<u8>> {
    let p = conformance_dir().join(rel);
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(e) => {
            println!("SKIP: conformance file {} unavailable: {e}", p.display());
            None
        }
    }
}

/// Read one of our fixtures (must exist).
pub fn fixture(rel: &str) -> Vec<u8> {
    let p = fixtures_dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// Compare `actual` with the golden file `rel` byte for byte; with `WINMDM_BLESS=1` rewrite it.
pub fn golden(rel: &str, actual: &[u8]) {
    let p = fixtures_dir().join(rel);
    if std::env::var("WINMDM_BLESS").as_deref() == Ok("1") {
        std::fs::write(&p, actual).unwrap();
        println!("blessed {}", p.display());
        return;
    }
    let expected = std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "golden {} missing ({e}); run with WINMDM_BLESS=1 to create",
            p.display()
        )
    });
    if expected != actual {
        panic!(
            "golden mismatch for {}\n--- expected\n{}\n--- actual\n{}\n(rerun with WINMDM_BLESS=1 if the change is intended)",
            p.display(),
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(actual)
        );
    }
}

/// Every element path `{ns}local/{ns}local/…` of a document, as a set.
pub fn element_paths(xml: &str) -> BTreeSet<String> {
    let doc = roxmltree::Document::parse(xml).expect("well-formed XML");
    let mut out = BTreeSet::new();
    fn walk(n: roxmltree::Node, prefix: &str, out: &mut BTreeSet<String>) {
        for c in n.children().filter(|c| c.is_element()) {
            let name = c.tag_name();
            let p = format!(
                "{prefix}/{{{}}}{}",
                name.namespace().unwrap_or(""),
                name.name()
            );
            out.insert(p.clone());
            walk(c, &p, out);
        }
    }
    walk(doc.root(), "", &mut out);
    out
}

/// Namespace-aware text of the first descendant `{ns}local`.
pub fn text_of(xml: &str, ns: &str, local: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    doc.descendants()
        .find(|n| {
            n.is_element() && n.tag_name().name() == local && n.tag_name().namespace() == Some(ns)
        })
        .map(|n| n.text().unwrap_or("").to_string())
}
