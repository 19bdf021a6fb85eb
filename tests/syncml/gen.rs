//! Deterministic SyncML message generators, shared by the tests and `benches/syncml.rs`
//! (included there with `#[path]`). Messages are built as text, independently of the writer, in
//! the shapes of PROTOCOL.md §6 and the real captures (indentation, `xmlns="syncml:metinf"` on Meta
//! children).
#![allow(dead_code)]

use std::fmt::Write;

/// splitmix64: small, deterministic.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const DEVICE: &str = "B5B954E81FBCB94EB79BD08BE625F4EE";
const SERVER: &str = "https://mdm.example.com/ManagementServer/MDM.svc";

fn hdr(out: &mut String, session: u32, msg: u32, from_device: bool, max_msg_size: bool) {
    let (t, s) = if from_device {
        (SERVER, DEVICE)
    } else {
        (DEVICE, SERVER)
    };
    let _ = write!(
        out,
        "<SyncML xmlns=\"SYNCML:SYNCML1.2\">\n  <SyncHdr>\n    <VerDTD>1.2</VerDTD>\n    <VerProto>DM/1.2</VerProto>\n    <SessionID>{session}</SessionID>\n    <MsgID>{msg}</MsgID>\n    <Target>\n      <LocURI>{t}</LocURI>\n    </Target>\n    <Source>\n      <LocURI>{s}</LocURI>\n    </Source>\n"
    );
    if max_msg_size {
        out.push_str("    <Meta>\n      <MaxMsgSize xmlns=\"syncml:metinf\">524288</MaxMsgSize>\n    </Meta>\n");
    }
    out.push_str("  </SyncHdr>\n  <SyncBody>\n");
}

fn status(out: &mut String, id: usize, msg_ref: u32, cmd_ref: usize, cmd: &str, code: u16) {
    let _ = write!(
        out,
        "    <Status>\n      <CmdID>{id}</CmdID>\n      <MsgRef>{msg_ref}</MsgRef>\n      <CmdRef>{cmd_ref}</CmdRef>\n      <Cmd>{cmd}</Cmd>\n      <Data>{code}</Data>\n    </Status>\n"
    );
}

fn results_item(out: &mut String, id: usize, cmd_ref: usize, uri: &str, format: &str, data: &str) {
    let _ = write!(
        out,
        "    <Results>\n      <CmdID>{id}</CmdID>\n      <MsgRef>1</MsgRef>\n      <CmdRef>{cmd_ref}</CmdRef>\n      <Item>\n        <Source>\n          <LocURI>{uri}</LocURI>\n        </Source>\n        <Meta>\n          <Format xmlns=\"syncml:metinf\">{format}</Format>\n          <Type xmlns=\"syncml:metinf\">text/plain</Type>\n        </Meta>\n        <Data>{data}</Data>\n      </Item>\n    </Results>\n"
    );
}

fn end(out: &mut String) {
    out.push_str("    <Final/>\n  </SyncBody>\n</SyncML>\n");
}

const DEVDETAIL: &[(&str, &str)] = &[
    ("./DevDetail/SwV", "10.0.19043.2364"),
    ("./DevDetail/HwV", "VMware7,1"),
    ("./DevDetail/OEM", "VMware, Inc."),
    ("./DevDetail/FwV", "VMW71.00V.18227214.B64.2106252220"),
    ("./DevDetail/DevTyp", "VMware7,1"),
    (
        "./DevDetail/Ext/Microsoft/OSPlatform",
        "Windows 10 Enterprise",
    ),
    ("./DevDetail/Ext/Microsoft/DeviceName", "DESKTOP-0A1B2C3"),
    ("./DevDetail/Ext/Microsoft/TotalStorage", "61035"),
    ("./DevDetail/Ext/Microsoft/TotalRAM", "4095"),
    (
        "./DevDetail/Ext/Microsoft/LocalTime",
        "2026-11-23T16:11:09.0000000-00:00",
    ),
];

/// A device's first package (~2 KB): SyncHdr with MaxMsgSize, Alerts 1201/1224/1226, Replace of
/// ./DevInfo and ./DevDetail nodes (PROTOCOL.md §6 "Package 1", MS-MDM §4).
pub fn first_package() -> String {
    let mut o = String::new();
    hdr(&mut o, 1, 1, true, true);
    o.push_str("    <Alert>\n      <CmdID>2</CmdID>\n      <Data>1201</Data>\n    </Alert>\n");
    o.push_str("    <Alert>\n      <CmdID>3</CmdID>\n      <Data>1224</Data>\n      <Item>\n        <Meta>\n          <Type xmlns=\"syncml:metinf\">com.microsoft/MDM/LoginStatus</Type>\n        </Meta>\n        <Data>user</Data>\n      </Item>\n    </Alert>\n");
    o.push_str("    <Alert>\n      <CmdID>4</CmdID>\n      <Data>1226</Data>\n      <Item>\n        <Meta>\n          <Type xmlns=\"syncml:metinf\">com.microsoft:mdm.unenrollment.userrequest</Type>\n          <Format xmlns=\"syncml:metinf\">int</Format>\n        </Meta>\n        <Data>1</Data>\n      </Item>\n    </Alert>\n");
    o.push_str("    <Replace>\n      <CmdID>5</CmdID>\n");
    let devinfo = [
        ("./DevInfo/DevId", DEVICE),
        ("./DevInfo/Man", "VMware, Inc."),
        ("./DevInfo/Mod", "VMware7,1"),
        ("./DevInfo/DmV", "1.3"),
        ("./DevInfo/Lang", "en-US"),
    ];
    for (uri, v) in devinfo.iter().chain(DEVDETAIL[..5].iter()) {
        let _ = write!(
            o,
            "      <Item>\n        <Source>\n          <LocURI>{uri}</LocURI>\n        </Source>\n        <Data>{}</Data>\n      </Item>\n",
            esc(v)
        );
    }
    o.push_str("    </Replace>\n");
    end(&mut o);
    o
}

/// A device reply to 50 `Get`s (~30 KB): SyncHdr Status, 50 Status 200, 50 Results.
pub fn get_reply(n: usize) -> String {
    let mut o = String::new();
    hdr(&mut o, 1, 2, true, false);
    status(&mut o, 1, 1, 0, "SyncHdr", 200);
    let mut id = 2;
    for i in 0..n {
        status(&mut o, id, 1, i + 2, "Get", 200);
        id += 1;
    }
    for i in 0..n {
        let (uri, v) = DEVDETAIL[i % DEVDETAIL.len()];
        results_item(&mut o, id, i + 2, uri, "chr", &esc(v));
        id += 1;
    }
    end(&mut o);
    o
}

/// An MsiInstallJob-like XML document (the `Format xml` payloads of PROTOCOL.md §7), ~`len` bytes.
fn xml_payload(r: &mut Rng, len: usize) -> String {
    let mut s = format!(
        "<MsiInstallJob id=\"{{{:08X}-7D99-482E-A7FB-C6616CC871FC}}\"><Product Version=\"1.0.0.0\">",
        r.next() as u32
    );
    while s.len() < len {
        let _ = write!(
            s,
            "<Download><ContentURLList><ContentURL>https://cdn.example.com/pkg/{:016x}.msi?a=1&amp;b=2</ContentURL></ContentURLList></Download><Validation><FileHash>{:016X}{:016X}</FileHash></Validation>",
            r.next(),
            r.next(),
            r.next()
        );
    }
    s.push_str("</Product></MsiInstallJob>");
    s
}

fn b64_payload(r: &mut Rng, raw_len: usize) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..raw_len).map(|_| r.next() as u8).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A reply with `n` Results, half base64 (certificates), half entity-escaped XML (~1.5 KB each;
/// ~3 MB for 2,000).
pub fn large_results(n: usize) -> String {
    let mut r = Rng(42);
    let mut o = String::new();
    hdr(&mut o, 3, 2, true, false);
    status(&mut o, 1, 1, 0, "SyncHdr", 200);
    for i in 0..n {
        let id = i + 2;
        if i % 2 == 0 {
            let uri = format!(
                "./Vendor/MSFT/CertificateStore/My/User/{:040X}/EncodedCertificate",
                r.next()
            );
            results_item(&mut o, id, id, &uri, "b64", &b64_payload(&mut r, 800));
        } else {
            let uri = format!(
                "./Vendor/MSFT/EnterpriseDesktopAppManagement/MSI/%7B{:08X}%7D/Status",
                r.next() as u32
            );
            results_item(&mut o, id, id, &uri, "xml", &esc(&xml_payload(&mut r, 800)));
        }
    }
    end(&mut o);
    o
}

/// A reply with `commands` Results of `items_per` items each, no escaped text (allocation tests).
pub fn plain_results(commands: usize, items_per: usize) -> String {
    let mut o = String::new();
    hdr(&mut o, 1, 2, true, false);
    status(&mut o, 1, 1, 0, "SyncHdr", 200);
    for c in 0..commands {
        let _ = write!(
            o,
            "<Results><CmdID>{}</CmdID><MsgRef>1</MsgRef><CmdRef>{}</CmdRef>",
            c + 2,
            c + 2
        );
        for i in 0..items_per {
            let (uri, v) = DEVDETAIL[i % DEVDETAIL.len()];
            let _ = write!(o, "<Item><Source><LocURI>{uri}</LocURI></Source><Meta><Format xmlns=\"syncml:metinf\">chr</Format></Meta><Data>{v}</Data></Item>");
        }
        o.push_str("</Results>\n");
    }
    end(&mut o);
    o
}

// ---- random messages for the differential test and the fuzz seeds ----

const TEXTS: &[&str] = &[
    "1",
    "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera",
    "a & b",
    "<Enabled/>",
    "x > y < z",
    "quote \" and ' apostrophe",
    "unicode: é ü 日本 🦀",
    "  spaced  ",
    "",
    "line1\nline2",
    "line1\r\nline2",
    "tab\there",
    "]]",
    "%7B90413bf7%7D",
];

/// Writes `s` as XML text in one of several equivalent encodings.
fn text(r: &mut Rng, s: &str) -> String {
    match r.below(6) {
        0 if !s.contains("]]>") && !s.contains('\r') => format!("<![CDATA[{s}]]>"),
        1 => s
            .chars()
            .map(|c| match c {
                '&' => "&#38;".to_string(),
                '<' => "&#x3C;".to_string(),
                '>' => "&gt;".to_string(),
                '\r' => "&#13;".to_string(),
                c => c.to_string(),
            })
            .collect(),
        2 if s.len() > 2 && s.is_char_boundary(1) && !s.contains('\r') => {
            let (a, b) = s.split_at(1);
            format!("{}<!-- split -->{}", esc(a), esc(b))
        }
        _ => esc(s).replace('\r', "&#13;"),
    }
}

fn rand_text(r: &mut Rng) -> String {
    let s = *r.pick(TEXTS);
    text(r, s)
}

fn leaf(o: &mut String, r: &mut Rng, tag: &str) {
    let t = rand_text(r);
    let _ = write!(o, "<{tag}>{t}</{tag}>");
}

fn meta(o: &mut String, r: &mut Rng) {
    o.push_str("<Meta>");
    let fields = [
        "Format",
        "Type",
        "Mark",
        "Size",
        "Version",
        "NextNonce",
        "MaxMsgSize",
        "MaxObjSize",
    ];
    for f in fields {
        if r.chance(35) {
            let t = rand_text(r);
            match r.below(4) {
                0 => {
                    let _ = write!(o, "<{f} xmlns=\"syncml:metinf\">{t}</{f}>");
                }
                1 => {
                    let _ = write!(o, "<m:{f} xmlns:m=\"syncml:metinf\">{t}</m:{f}>");
                }
                2 => {
                    let _ = write!(o, "<{f}>{t}</{f}>");
                }
                _ => {
                    let _ = write!(o, "<{f} xmlns='syncml:metinf' >{t}</{f} >");
                }
            }
        }
    }
    o.push_str("</Meta>");
}

fn loc(o: &mut String, r: &mut Rng, tag: &str) {
    let _ = write!(o, "<{tag}>");
    leaf(o, r, "LocURI");
    if r.chance(20) {
        leaf(o, r, "LocName");
    }
    let _ = write!(o, "</{tag}>");
}

fn item(o: &mut String, r: &mut Rng) {
    let mut parts: Vec<String> = Vec::new();
    let mut p = String::new();
    if r.chance(60) {
        loc(&mut p, r, "Target");
        parts.push(std::mem::take(&mut p));
    }
    if r.chance(40) {
        loc(&mut p, r, "Source");
        parts.push(std::mem::take(&mut p));
    }
    if r.chance(50) {
        meta(&mut p, r);
        parts.push(std::mem::take(&mut p));
    }
    if r.chance(70) {
        leaf(&mut p, r, "Data");
        parts.push(std::mem::take(&mut p));
    }
    if r.chance(10) {
        parts.push(if r.chance(50) {
            "<MoreData/>".into()
        } else {
            "<MoreData></MoreData>".into()
        });
    }
    // Any order: the parser does not enforce DTD order inside Item.
    for i in (1..parts.len()).rev() {
        parts.swap(i, r.below(i as u64 + 1) as usize);
    }
    o.push_str("<Item>");
    for p in parts {
        o.push_str(&p);
        if r.chance(30) {
            o.push_str("\n   ");
        }
    }
    o.push_str("</Item>");
}

fn cmd_id(o: &mut String, r: &mut Rng) {
    let id = if r.chance(80) {
        r.below(1000).to_string()
    } else {
        "6e4b1c2a-0f0e-4c5b-9a51-3b2c1d0e9f87".to_string()
    };
    let _ = write!(o, "<CmdID>{id}</CmdID>");
}

fn command(o: &mut String, r: &mut Rng, depth: u32) {
    let kinds: &[&str] = if depth < 3 {
        &[
            "Alert", "Status", "Results", "Get", "Add", "Replace", "Delete", "Exec", "Copy",
            "Atomic", "Sequence",
        ]
    } else {
        &[
            "Alert", "Status", "Results", "Get", "Add", "Replace", "Delete", "Exec", "Copy",
        ]
    };
    let k = *r.pick(kinds);
    let _ = write!(o, "<{k}>");
    cmd_id(o, r);
    match k {
        "Status" => {
            leaf(o, r, "MsgRef");
            leaf(o, r, "CmdRef");
            let _ = write!(o, "<Cmd>{}</Cmd>", r.pick(&["SyncHdr", "Get", "Replace"]));
            for _ in 0..r.below(3) {
                leaf(o, r, "TargetRef");
            }
            for _ in 0..r.below(2) {
                leaf(o, r, "SourceRef");
            }
            if r.chance(10) {
                o.push_str("<Chal>");
                meta(o, r);
                o.push_str("</Chal>");
            }
            let _ = write!(o, "<Data>{}</Data>", r.pick(&["200", "202", "404", "500"]));
            for _ in 0..r.below(2) {
                item(o, r);
            }
        }
        "Results" => {
            if r.chance(70) {
                leaf(o, r, "MsgRef");
            }
            leaf(o, r, "CmdRef");
            if r.chance(20) {
                meta(o, r);
            }
            for _ in 0..1 + r.below(3) {
                item(o, r);
            }
        }
        "Alert" => {
            if r.chance(10) {
                o.push_str("<NoResp/>");
            }
            if r.chance(10) {
                o.push_str("<Cred>");
                if r.chance(50) {
                    meta(o, r);
                }
                leaf(o, r, "Data");
                o.push_str("</Cred>");
            }
            if r.chance(90) {
                let _ = write!(o, "<Data>{}</Data>", r.pick(&["1201", "1224", "1226"]));
            }
            if r.chance(10) {
                leaf(o, r, "Correlator");
            }
            for _ in 0..r.below(3) {
                item(o, r);
            }
        }
        "Atomic" | "Sequence" => {
            if r.chance(20) {
                meta(o, r);
            }
            for _ in 0..1 + r.below(3) {
                command(o, r, depth + 1);
            }
        }
        _ => {
            if r.chance(10) {
                o.push_str("<NoResp/>");
            }
            if r.chance(20) {
                meta(o, r);
            }
            if k == "Exec" && r.chance(30) {
                leaf(o, r, "Correlator");
            }
            for _ in 0..1 + r.below(3) {
                item(o, r);
            }
        }
    }
    let _ = write!(o, "</{k}>");
    if r.chance(30) {
        o.push_str("\n  <!-- c -->\n");
    }
}

/// A random but valid message: every command kind, optional fields, escaping variants, CDATA,
/// comments, prefixed and unprefixed namespaces, Item children in any order.
pub fn random_message(seed: u64) -> String {
    let mut r = Rng(seed);
    let mut o = String::new();
    if r.chance(50) {
        o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    }
    let prefixed = r.chance(20);
    if prefixed {
        o.push_str("<s:SyncML xmlns:s=\"SYNCML:SYNCML1.2\" xmlns=\"SYNCML:SYNCML1.2\">");
    } else {
        o.push_str("<SyncML xmlns=\"SYNCML:SYNCML1.2\">");
    }
    o.push_str("<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>");
    leaf(&mut o, &mut r, "SessionID");
    let _ = write!(o, "<MsgID>{}</MsgID>", r.below(10));
    loc(&mut o, &mut r, "Target");
    loc(&mut o, &mut r, "Source");
    if r.chance(20) {
        leaf(&mut o, &mut r, "RespURI");
    }
    if r.chance(30) {
        meta(&mut o, &mut r);
    }
    o.push_str(
        "</SyncHdr>\n<SyncBody xmlns:msft=\"http://schemas.microsoft.com/MobileDevice/MDM\">\n",
    );
    for _ in 0..r.below(12) {
        command(&mut o, &mut r, 0);
    }
    if r.chance(80) {
        o.push_str("<Final/>");
    }
    o.push_str("</SyncBody>");
    o.push_str(if prefixed {
        "</s:SyncML>\n"
    } else {
        "</SyncML>\n"
    });
    o
}
