//! No panic on any input: truncations (every 7th byte) and single-byte mutations of every
//! captured and fixture request, fed to every parser. Each must return Ok or Err.

use winmdm::soap::{parse_discover, parse_get_policies, parse_rst};

use super::captures::ALL_REQUESTS;
use super::{capture, fixture};

fn all_parsers(input: &[u8]) {
    winmdm::soap::fuzzing::soap_envelope(input);
    let _ = parse_discover(input);
    let _ = parse_get_policies(input);
    let _ = parse_rst(input);
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for f in ALL_REQUESTS {
        if let Some(b) = capture(f) {
            v.push((f.to_string(), b));
        }
    }
    for f in [
        "discovery/discover-request-v9-trailing-slash-reordered.xml",
        "policy/get-policies-request.xml",
        "enroll/rst-issue-jwt-device-request.xml",
        "enroll/rst-renew-robo-request.xml",
    ] {
        v.push((f.to_string(), fixture(f)));
    }
    v
}

#[test]
fn soap_garbage_truncations_never_panic() {
    for (name, body) in corpus() {
        let mut n = 0;
        for cut in (0..body.len()).step_by(7) {
            let prefix = &body[..cut];
            all_parsers(prefix);
            // A strict prefix of a document is never a complete document (the root end tag
            // is the last thing), so no parser may accept it.
            assert!(
                parse_discover(prefix).is_err() || cut >= body.len() - 1,
                "{name} @ {cut}"
            );
            n += 1;
        }
        assert!(n > 10, "{name}");
    }
}

#[test]
fn soap_garbage_mutations_never_panic() {
    for (_name, body) in corpus() {
        for i in (0..body.len()).step_by(13) {
            for b in [b'<', b'&', b'>', b'"', 0xFF, 0x00, b'/'] {
                let mut m = body.clone();
                m[i] = b;
                all_parsers(&m);
            }
        }
    }
}

#[test]
fn soap_garbage_odd_inputs() {
    let huge_depth = "<a>".repeat(10_000);
    let many = format!("<a>{}</a>", "<b/>".repeat(100_000));
    for input in [
        &b""[..],
        b"\xEF\xBB\xBF",
        b"<",
        b"<?xml version=\"1.0\"?>",
        huge_depth.as_bytes(),
        many.as_bytes(),
        b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><x:y/></s:Body></s:Envelope>",
        b"<![CDATA[x]]>",
        b"&#0;",
        b"<a>&#xD800;</a>",
        b"<a>&#99999999999;</a>",
    ] {
        all_parsers(input);
        assert!(parse_rst(input).is_err());
    }
}
