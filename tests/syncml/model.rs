//! What the model holds for known inputs; the documented parser decisions; writer golden output.

use std::borrow::Cow;

use winmdm::syncml::*;

use super::*;

const MINI_HDR: &str = "<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>T</LocURI></Target><Source><LocURI>S</LocURI></Source></SyncHdr>";

fn msg(body: &str) -> String {
    format!("<SyncML xmlns=\"SYNCML:SYNCML1.2\">{MINI_HDR}<SyncBody>{body}</SyncBody></SyncML>")
}

#[test]
fn real_package1_capture() {
    let Some(_) = conformance_messages() else {
        return;
    };
    let p =
        conformance_dir().join("fleet/trace-ngrok-09-device-syncml-s2m1-alert1226-unenroll.xml");
    let bytes = read(&p);
    let m = parse(&bytes).unwrap();
    assert_eq!(m.hdr.session_id(), Some(2));
    assert_eq!(m.hdr.msg_id(), Some(1));
    assert_eq!(m.hdr.source.loc_uri, "B5B954E81FBCB94EB79BD08BE625F4EE");
    assert!(m.body.is_final);
    let names: Vec<_> = m.body.commands.iter().map(Command::name).collect();
    assert_eq!(names, ["Alert", "Alert", "Alert", "Replace"]);
    let Command::Alert(a) = &m.body.commands[2] else {
        panic!()
    };
    assert_eq!(a.code(), Some(1226));
    let meta = a.items[0].meta.as_ref().unwrap();
    assert_eq!(
        meta.ty.as_deref(),
        Some("com.microsoft:mdm.unenrollment.userrequest")
    );
    assert_eq!(meta.format.as_deref(), Some("int"));
    let Command::Replace(r) = &m.body.commands[3] else {
        panic!()
    };
    assert_eq!(r.items.len(), 5);
    assert_eq!(r.items[1].source.as_ref().unwrap().loc_uri, "./DevInfo/Man");
    assert_eq!(r.items[1].data.as_deref(), Some("VMware, Inc."));
    // Plain text is borrowed from the input.
    assert!(matches!(r.items[1].data, Some(Cow::Borrowed(_))));
}

#[test]
fn status_202_capture() {
    let Some(_) = conformance_messages() else {
        return;
    };
    let p = conformance_dir().join("fleet/trace-readme-09-device-syncml-s1m2-status-202.xml");
    let bytes = read(&p);
    let m = parse(&bytes).unwrap();
    let codes: Vec<_> = m
        .body
        .commands
        .iter()
        .map(|c| match c {
            Command::Status(s) => (s.cmd.to_string(), s.cmd_ref(), s.code()),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        codes[1],
        (
            "Replace".into(),
            Some(5),
            Some(StatusCode::ACCEPTED_FOR_PROCESSING)
        )
    );
    assert_eq!(codes[0].2, Some(StatusCode::OK));
}

#[test]
fn escaped_xml_and_cdata_come_out_as_meant() {
    let b = read(&fixture_dir().join("03-device-results-payloads.xml"));
    let m = parse(&b).unwrap();
    let Command::Results(r) = &m.body.commands[4] else {
        panic!()
    };
    let d = r.items[0].data.as_deref().unwrap();
    assert!(
        d.starts_with("<Certificates><Certificate Thumbprint=\"CDD4EE"),
        "{d}"
    );
    assert!(matches!(r.items[0].data, Some(Cow::Owned(_))));
    let Command::Results(r) = &m.body.commands[5] else {
        panic!()
    };
    assert_eq!(
        r.items[0].data.as_deref(),
        Some(r#"<enabled/><data id="ExecutionPolicy" value="AllSigned"/>"#)
    );
    assert!(
        matches!(r.items[0].data, Some(Cow::Borrowed(_))),
        "CDATA alone is borrowed"
    );
    assert_eq!(r.items[2].data.as_deref(), Some("café 🦀 R&D"));
    // The Status with msft:originalerror: attribute ignored, code read.
    let Command::Status(s) = &m.body.commands[2] else {
        panic!()
    };
    assert_eq!(s.code(), Some(StatusCode::NOT_FOUND));
}

#[test]
fn fleet_cdata_profile_keeps_whitespace_around_cdata() {
    let Some(files) = conformance_fragments() else {
        return;
    };
    let p = files
        .iter()
        .find(|p| p.to_string_lossy().contains("powershell"))
        .unwrap();
    let b = read(p);
    let cmds = parse_fragment(&b).unwrap();
    let d = cmds[0].items()[0].data.as_deref().unwrap();
    assert!(
        d.trim()
            .starts_with("<enabled/><data id=\"ExecutionPolicy\""),
        "{d:?}"
    );
    assert!(d.starts_with("\n      <enabled/>"), "{d:?}");
    assert_eq!(cmds[0].cmd_id(), None, "profiles leave CmdID to the server");
}

#[test]
fn fleet_fragments_with_undeclared_prefix_are_rejected_then_fixed() {
    let Some(files) = conformance_fragments() else {
        return;
    };
    let p = files
        .iter()
        .find(|p| p.to_string_lossy().contains("atomic-add-exec"))
        .unwrap();
    let raw = read(p);
    match parse_fragment(&raw) {
        Err(ParseError::UnboundPrefix { path, prefix, .. }) => {
            assert_eq!(prefix, "A");
            assert_eq!(path, "Atomic/Exec/Item/Meta");
        }
        other => panic!("{other:?}"),
    }
    let fixed = fix_undeclared_a_prefix(std::str::from_utf8(&raw).unwrap());
    let cmds = parse_fragment(fixed.as_bytes()).unwrap();
    let Command::Atomic(a) = &cmds[0] else {
        panic!()
    };
    assert_eq!(a.commands.len(), 2);
    let Command::Exec(e) = &a.commands[1] else {
        panic!()
    };
    assert_eq!(
        e.items[0].meta.as_ref().unwrap().format.as_deref(),
        Some("xml")
    );
    assert!(e.items[0]
        .data
        .as_deref()
        .unwrap()
        .starts_with("<MsiInstallJob id=\"{90413BF7"));
    // Fleet's UUID-like placeholder CmdIDs are accepted.
    let p = files
        .iter()
        .find(|p| p.to_string_lossy().contains("get-devdetail-swv"))
        .unwrap();
    let b = read(p);
    let cmds = parse_fragment(&b).unwrap();
    assert_eq!(cmds[0].cmd_id(), Some("xxcmdidxx"));
}

#[test]
fn unknown_elements_are_rejected_everywhere() {
    for (body, path, el) in [
        ("<Sync><CmdID>1</CmdID></Sync>", "SyncML/SyncBody", "Sync"),
        (
            "<Get><CmdID>1</CmdID><Lang>en</Lang><Item/></Get>",
            "SyncML/SyncBody/Get",
            "Lang",
        ),
        (
            "<Get><CmdID>1</CmdID><Item><Foo/></Item></Get>",
            "SyncML/SyncBody/Get/Item",
            "Foo",
        ),
        (
            "<Get><CmdID>1</CmdID><Item><Meta><Anchor/></Meta></Item></Get>",
            "SyncML/SyncBody/Get/Item/Meta",
            "Anchor",
        ),
        (
            "<Get><CmdID>1</CmdID><Item><Data><x/></Data></Item></Get>",
            "SyncML/SyncBody/Get/Item/Data",
            "x",
        ),
        (
            "<Add><CmdID>1</CmdID><Correlator>c</Correlator><Item/></Add>",
            "SyncML/SyncBody/Add",
            "Correlator",
        ),
        (
            "<Final/><Get><CmdID>1</CmdID><Item/></Get>",
            "SyncML/SyncBody",
            "Get",
        ),
    ] {
        match parse(msg(body).as_bytes()) {
            Err(ParseError::UnexpectedElement {
                path: p, element, ..
            }) => {
                assert_eq!((p.as_str(), element.as_str()), (path, el), "{body}")
            }
            other => panic!("{body}: {other:?}"),
        }
    }
    let foreign = msg("<Get xmlns=\"urn:other\"><CmdID>1</CmdID><Item/></Get>");
    assert!(matches!(
        parse(foreign.as_bytes()),
        Err(ParseError::ForeignNamespace { .. })
    ));
    let metinf_item = msg("<Get><CmdID>1</CmdID><Item xmlns=\"syncml:metinf\"/></Get>");
    assert!(matches!(
        parse(metinf_item.as_bytes()),
        Err(ParseError::UnexpectedElement { .. })
    ));
}

#[test]
fn structure_rules() {
    type Check = fn(&ParseError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("<Get><Item/></Get>", |e| matches!(e, ParseError::MissingElement { element: "CmdID", .. })),
        ("<Get><CmdID>1</CmdID></Get>", |e| matches!(e, ParseError::MissingElement { element: "Item", .. })),
        ("<Get><CmdID>1</CmdID><CmdID>2</CmdID><Item/></Get>", |e| {
            matches!(e, ParseError::DuplicateElement { element: "CmdID", .. })
        }),
        ("<Get><CmdID>1</CmdID><Item><Data>a</Data><Data>b</Data></Item></Get>", |e| {
            matches!(e, ParseError::DuplicateElement { element: "Data", .. })
        }),
        ("<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd></Status>", |e| {
            matches!(e, ParseError::MissingElement { element: "Data", .. })
        }),
        ("<Atomic><CmdID>1</CmdID></Atomic>", |e| matches!(e, ParseError::MissingElement { element: "command", .. })),
        ("<Get>text<CmdID>1</CmdID><Item/></Get>", |e| matches!(e, ParseError::UnexpectedText { .. })),
        ("<Final>x</Final>", |e| matches!(e, ParseError::UnexpectedText { .. })),
    ];
    for (body, ok) in cases {
        let e = parse(msg(body).as_bytes()).unwrap_err();
        assert!(ok(&e), "{body}: {e:?}");
        assert!(
            e.path().unwrap_or("").starts_with("SyncML/SyncBody"),
            "{body}: {e}"
        );
    }
    // Order inside Item is free; the writer restores DTD order.
    let src = msg("<Get><Item><Data>d</Data><Meta><Format>chr</Format></Meta><Target><LocURI>./x</LocURI></Target></Item><CmdID>9</CmdID></Get>");
    let m = parse(src.as_bytes()).unwrap();
    let mut out = Vec::new();
    write(&m, &mut out);
    let s = String::from_utf8(out).unwrap();
    assert!(s.contains("<Get><CmdID>9</CmdID><Item><Target><LocURI>./x</LocURI></Target><Meta><Format xmlns=\"syncml:metinf\">chr</Format></Meta><Data>d</Data></Item></Get>"), "{s}");
    // An empty body is accepted.
    assert!(parse(msg("").as_bytes()).unwrap().body.commands.is_empty());
    // Root must be SyncML.
    assert!(matches!(
        parse(b"<Foo/>"),
        Err(ParseError::NotSyncMl { .. })
    ));
    assert!(matches!(
        parse_fragment(b"  <!-- -->  "),
        Err(ParseError::NoCommands)
    ));
}

#[test]
fn writer_golden_and_escaping() {
    let mut m = SyncMl::default();
    m.hdr.ver_dtd = "1.2".into();
    m.hdr.ver_proto = "DM/1.2".into();
    m.hdr.session_id = "1".into();
    m.hdr.msg_id = "1".into();
    m.hdr.target = Location::new("DEV");
    m.hdr.source = Location::new("https://mdm.example/MDM.svc");
    m.body.commands.push(Command::Status(Status {
        cmd_id: Some("1".into()),
        msg_ref: "1".into(),
        cmd_ref: "0".into(),
        cmd: "SyncHdr".into(),
        data: "200".into(),
        ..Status::default()
    }));
    let item = Item {
        target: Some(Location::new("./Vendor/MSFT/Policy/Config/X")),
        meta: Some(Meta {
            format: Some("xml".into()),
            ..Meta::default()
        }),
        data: Some("<a b=\"c\">&amp;\r\n</a>".into()),
        ..Item::default()
    };
    m.body
        .commands
        .push(Command::Replace(ItemCommand::new("2", [item])));
    m.body.is_final = true;
    let out = m.to_vec();
    let expected = concat!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>"#,
        r#"<SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>DEV</LocURI></Target>"#,
        r#"<Source><LocURI>https://mdm.example/MDM.svc</LocURI></Source></SyncHdr><SyncBody>"#,
        r#"<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>"#,
        r#"<Replace><CmdID>2</CmdID><Item><Target><LocURI>./Vendor/MSFT/Policy/Config/X</LocURI></Target>"#,
        r#"<Meta><Format xmlns="syncml:metinf">xml</Format></Meta>"#,
        "<Data>&lt;a b=\"c\"&gt;&amp;amp;&#13;\n&lt;/a&gt;</Data></Item></Replace><Final/></SyncBody></SyncML>"
    );
    assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
    assert_eq!(written_len(&m), expected.len());
    assert_eq!(parse(&out).unwrap(), m);
    // roxmltree reads the same Data back.
    let doc = roxmltree::Document::parse(expected).unwrap();
    let data = doc.descendants().rfind(|n| n.has_tag_name("Data")).unwrap();
    assert_eq!(data.text(), Some("<a b=\"c\">&amp;\r\n</a>"));
}

#[test]
fn typed_accessors() {
    let b = read(&fixture_dir().join("06-auth-md5-challenge.xml"));
    let m = parse(&b).unwrap();
    assert_eq!(m.hdr.max_msg_size(), Some(65536));
    assert_eq!(m.hdr.meta.as_ref().unwrap().max_obj_size(), Some(4_194_304));
    assert_eq!(
        m.hdr
            .cred
            .as_ref()
            .unwrap()
            .meta
            .as_ref()
            .unwrap()
            .ty
            .as_deref(),
        Some("syncml:auth-md5")
    );
    let Command::Status(s) = &m.body.commands[0] else {
        panic!()
    };
    assert_eq!(s.code(), Some(StatusCode::INVALID_CREDENTIALS));
    assert_eq!(
        s.chal.as_ref().unwrap().meta.next_nonce.as_deref(),
        Some("bm9uY2UtMTIzNDU=")
    );
    assert_eq!(
        &s.target_refs[..],
        ["https://mdm.example.com/ManagementServer/MDM.svc"]
    );
    let b = read(&fixture_dir().join("07-large-object-chunk.xml"));
    let m = parse(&b).unwrap();
    assert!(!m.body.is_final);
    let Command::Results(r) = &m.body.commands[2] else {
        panic!()
    };
    assert!(r.items[0].more_data);
    assert_eq!(r.items[0].meta.as_ref().unwrap().size(), Some(1_048_576));
    let src = msg("<Alert><CmdID>6e4b1c2a</CmdID><Data> 1201 </Data></Alert>");
    let m = parse(src.as_bytes()).unwrap();
    let Command::Alert(a) = &m.body.commands[0] else {
        panic!()
    };
    assert_eq!(a.code(), Some(1201));
    assert_eq!(m.body.commands[0].cmd_id(), Some("6e4b1c2a"));
}

#[test]
fn crlf_and_prefixes_fixture() {
    let b = read(&fixture_dir().join("08-prefixed-namespaces-crlf.xml"));
    assert!(b.windows(2).any(|w| w == b"\r\n"), "fixture must keep CRLF");
    let m = parse(&b).unwrap();
    let Command::Replace(r) = &m.body.commands[0] else {
        panic!()
    };
    assert_eq!(r.items[0].data.as_deref(), Some("multi\nline  text"));
    assert_eq!(
        r.items[0].meta.as_ref().unwrap().ty.as_deref(),
        Some("text/plain")
    );
}
