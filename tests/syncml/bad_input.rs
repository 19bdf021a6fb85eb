//! Hostile and broken input: each gives a typed error, within the limits, in well under a second.

use std::time::{Duration, Instant};

use winmdm::syncml::{parse, parse_fragment, parse_with_limits, Limits, ParseError};

use super::*;

const HDR: &str = "<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>T</LocURI></Target><Source><LocURI>S</LocURI></Source></SyncHdr>";

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    let el = t.elapsed();
    assert!(el < Duration::from_secs(1), "{what} took {el:?}");
    r
}

#[test]
fn every_truncation_is_an_error() {
    let docs = [
        String::from_utf8(read(&fixture_dir().join("03-device-results-payloads.xml"))).unwrap(),
        String::from_utf8(read(&fixture_dir().join("08-prefixed-namespaces-crlf.xml"))).unwrap(),
        gen::first_package(),
    ];
    for doc in docs {
        let end = doc.rfind("</").unwrap();
        timed("truncations", || {
            for cut in 0..=end {
                if !doc.is_char_boundary(cut) {
                    continue;
                }
                let r = parse(&doc.as_bytes()[..cut]);
                assert!(r.is_err(), "truncated at {cut} parsed");
            }
        });
        // Truncating at a non-char boundary is an InvalidUtf8 error, not a panic.
        if let Some(i) = doc
            .char_indices()
            .find(|(_, c)| c.len_utf8() > 1)
            .map(|(i, _)| i)
        {
            assert!(matches!(
                parse(&doc.as_bytes()[..i + 1]),
                Err(ParseError::InvalidUtf8 { .. })
            ));
        }
    }
}

#[test]
fn mismatched_tags() {
    let doc = gen::first_package().replacen("</Alert>", "</Replace>", 1);
    match timed("mismatch", || parse(doc.as_bytes())) {
        Err(ParseError::MismatchedTag {
            path,
            expected,
            found,
            ..
        }) => {
            assert_eq!(
                (path.as_str(), expected.as_str(), found.as_str()),
                ("SyncML/SyncBody/Alert", "Alert", "Replace")
            );
        }
        other => panic!("{other:?}"),
    }
    let doc = gen::first_package().replacen("</LocURI>", "</LocUri>", 1);
    assert!(matches!(
        parse(doc.as_bytes()),
        Err(ParseError::MismatchedTag { .. })
    ));
    let extra = format!("{}</SyncML>", gen::first_package());
    assert!(matches!(
        parse(extra.as_bytes()),
        Err(ParseError::TrailingContent { .. })
    ));
    assert!(matches!(
        parse(b"<SyncML><SyncHdr x></SyncHdr></SyncML>"),
        Err(ParseError::Syntax { .. })
    ));
    assert!(matches!(
        parse(b"<SyncML><SyncHdr a=\"<\"/></SyncML>"),
        Err(ParseError::Syntax { .. })
    ));
    assert!(matches!(
        parse(b"<SyncML><!-- a -- b --></SyncML>"),
        Err(ParseError::Syntax { .. })
    ));
    assert!(matches!(
        parse(b" <?xml version=\"1.0\"?><SyncML/>"),
        Err(ParseError::Syntax { .. })
    ));
}

#[test]
fn deep_nesting_10k() {
    let n = 10_000;
    let body = format!(
        "{}{}",
        "<Atomic><CmdID>1</CmdID>".repeat(n),
        "</Atomic>".repeat(n)
    );
    let doc =
        format!("<SyncML xmlns=\"SYNCML:SYNCML1.2\">{HDR}<SyncBody>{body}</SyncBody></SyncML>");
    match timed("deep atomic", || parse(doc.as_bytes())) {
        Err(ParseError::TooDeep { max, path }) => {
            assert_eq!(max, 32);
            assert!(path.starts_with("SyncML/SyncBody/Atomic/Atomic"), "{path}");
        }
        other => panic!("{other:?}"),
    }
    let frag = body.clone();
    assert!(matches!(
        timed("deep fragment", || parse_fragment(frag.as_bytes())),
        Err(ParseError::TooDeep { .. })
    ));
    // Unknown elements nested deeply are rejected at the first one.
    let doc = format!("<SyncML>{}{}</SyncML>", "<a>".repeat(n), "</a>".repeat(n));
    assert!(matches!(
        timed("deep unknown", || parse(doc.as_bytes())),
        Err(ParseError::UnexpectedElement { .. })
    ));
    let doc = format!("{}{}", "<SyncML>".repeat(n), "</SyncML>".repeat(n));
    assert!(timed("deep SyncML", || parse(doc.as_bytes())).is_err());
}

#[test]
fn billion_laughs() {
    let doc = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr/><SyncBody><Alert><CmdID>1</CmdID><Data>&lol9;</Data></Alert></SyncBody></SyncML>"#;
    assert!(matches!(
        timed("laughs", || parse(doc.as_bytes())),
        Err(ParseError::DoctypeForbidden { offset: 22 })
    ));
    // Without the DOCTYPE the entity is simply unknown.
    let doc = doc.split_once("]>\n").unwrap().1.replace("<SyncHdr/>", HDR);
    match parse(doc.as_bytes()) {
        Err(ParseError::UnknownEntity { entity, path, .. }) => {
            assert_eq!(entity, "lol9");
            assert_eq!(path, "SyncML/SyncBody/Alert/Data");
        }
        other => panic!("{other:?}"),
    }
    // External entity attempt.
    let xxe = br#"<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><SyncML>&xxe;</SyncML>"#;
    assert!(matches!(
        parse(xxe),
        Err(ParseError::DoctypeForbidden { .. })
    ));
}

#[test]
fn invalid_utf8() {
    let mut doc = gen::first_package().into_bytes();
    let i = doc.len() / 2;
    doc[i] = 0xFF;
    assert_eq!(
        timed("utf8", || parse(&doc)),
        Err(ParseError::InvalidUtf8 { offset: i })
    );
    assert!(matches!(
        parse_fragment(b"<Get>\xC3\x28</Get>"),
        Err(ParseError::InvalidUtf8 { offset: 5 })
    ));
}

fn ten_mb_doc() -> Vec<u8> {
    let item = "<Item><Source><LocURI>./DevDetail/SwV</LocURI></Source><Data>10.0.19043.2364</Data></Item>";
    let mut doc = String::from("<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>T</LocURI></Target><Source><LocURI>S</LocURI></Source></SyncHdr><SyncBody><Results><CmdID>1</CmdID><CmdRef>1</CmdRef>");
    while doc.len() < 10 << 20 {
        doc.push_str(item);
    }
    doc.push_str("</Results></SyncBody></SyncML>");
    doc.into_bytes()
}

#[test]
fn ten_mb_of_items() {
    let doc = ten_mb_doc();
    assert!(
        matches!(timed("10MB default", || parse(&doc)), Err(ParseError::InputTooLarge { max, .. }) if max == 8 << 20)
    );
    let limits = Limits {
        max_input_bytes: 16 << 20,
        ..Limits::default()
    };
    match timed("10MB items", || parse_with_limits(&doc, &limits)) {
        Err(ParseError::TooManyItems { max, path }) => {
            assert_eq!(max, 20_000);
            assert_eq!(path, "SyncML/SyncBody/Results");
        }
        other => panic!("{other:?}"),
    }
    let many_cmds = "<Get><CmdID>1</CmdID><Item/></Get>".repeat(20_000);
    let doc = format!("<SyncML>{HDR}<SyncBody>{many_cmds}</SyncBody></SyncML>");
    assert!(matches!(
        timed("many commands", || parse(doc.as_bytes())),
        Err(ParseError::TooManyCommands { max: 10_000, .. })
    ));
}

#[test]
fn error_messages_name_the_path() {
    let doc = gen::first_package().replacen("<Data>user</Data>", "<Data>a &bogus; b</Data>", 1);
    let e = parse(doc.as_bytes()).unwrap_err();
    assert_eq!(e.path(), Some("SyncML/SyncBody/Alert/Item/Data"));
    let s = e.to_string();
    assert!(
        s.starts_with("SyncML/SyncBody/Alert/Item/Data: unknown entity &bogus;"),
        "{s}"
    );
    let e = parse(b"").unwrap_err();
    assert_eq!(e.to_string(), "(document): unexpected end of input");
}
