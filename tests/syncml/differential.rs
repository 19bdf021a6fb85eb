//! Our parse agrees, item by item, with an independent reading by roxmltree: same commands in the
//! same order, same CmdIDs, LocURIs, Meta and Data after unescaping.

use std::collections::BTreeMap;

use winmdm::syncml::{parse, parse_fragment, Command, Item, Meta, SyncMl};

use super::*;

/// A neutral projection both readings are turned into.
#[derive(Debug, PartialEq, Default)]
struct Flat {
    name: String,
    /// Leaf children of the command (`CmdID`, `MsgRef`, `Data`, `TargetRef`…; repeated ones joined
    /// with `|`), `Meta/<field>`, flags as "".
    fields: BTreeMap<String, String>,
    items: Vec<BTreeMap<String, String>>,
    children: Vec<Flat>,
}

const COMMANDS: &[&str] = &[
    "Alert", "Status", "Results", "Get", "Add", "Replace", "Delete", "Exec", "Copy", "Atomic",
    "Sequence",
];

// ---------- roxmltree side ----------

fn text_of(n: roxmltree::Node) -> String {
    n.descendants()
        .filter(|d| d.is_text())
        .map(|d| d.text().unwrap_or(""))
        .collect()
}

fn rox_meta(n: roxmltree::Node, prefix: &str, out: &mut BTreeMap<String, String>) {
    for c in n.children().filter(|c| c.is_element()) {
        out.insert(format!("{prefix}Meta/{}", c.tag_name().name()), text_of(c));
    }
}

fn rox_item(n: roxmltree::Node) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for c in n.children().filter(|c| c.is_element()) {
        let name = c.tag_name().name();
        match name {
            "Target" | "Source" => {
                for l in c.children().filter(|l| l.is_element()) {
                    m.insert(format!("{name}/{}", l.tag_name().name()), text_of(l));
                }
            }
            "Meta" => rox_meta(c, "", &mut m),
            _ => {
                m.insert(name.to_string(), text_of(c));
            }
        }
    }
    m
}

fn rox_cmd(n: roxmltree::Node) -> Flat {
    let mut f = Flat {
        name: n.tag_name().name().to_string(),
        ..Flat::default()
    };
    for c in n.children().filter(|c| c.is_element()) {
        let name = c.tag_name().name();
        if COMMANDS.contains(&name) {
            f.children.push(rox_cmd(c));
        } else if name == "Item" {
            f.items.push(rox_item(c));
        } else if name == "Meta" {
            rox_meta(c, "", &mut f.fields);
        } else if name == "Cred" || name == "Chal" {
            for cc in c.children().filter(|c| c.is_element()) {
                if cc.tag_name().name() == "Meta" {
                    rox_meta(cc, &format!("{name}/"), &mut f.fields);
                } else {
                    f.fields
                        .insert(format!("{name}/{}", cc.tag_name().name()), text_of(cc));
                }
            }
        } else {
            let t = text_of(c);
            f.fields
                .entry(name.to_string())
                .and_modify(|v| {
                    v.push('|');
                    v.push_str(&t)
                })
                .or_insert(t);
        }
    }
    f
}

/// (header fields, commands, final) read by roxmltree from a full message.
fn rox_message(xml: &str) -> (BTreeMap<String, String>, Vec<Flat>, bool) {
    let doc = roxmltree::Document::parse(xml).expect("roxmltree parses the input");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "SyncML");
    let mut hdr = BTreeMap::new();
    let mut cmds = Vec::new();
    let mut fin = false;
    for part in root.children().filter(|c| c.is_element()) {
        match part.tag_name().name() {
            "SyncHdr" => {
                for c in part.children().filter(|c| c.is_element()) {
                    let name = c.tag_name().name();
                    match name {
                        "Target" | "Source" => {
                            for l in c.children().filter(|l| l.is_element()) {
                                hdr.insert(format!("{name}/{}", l.tag_name().name()), text_of(l));
                            }
                        }
                        "Meta" => rox_meta(c, "", &mut hdr),
                        "Cred" => {
                            for cc in c.children().filter(|c| c.is_element()) {
                                if cc.tag_name().name() == "Meta" {
                                    rox_meta(cc, "Cred/", &mut hdr);
                                } else {
                                    hdr.insert(
                                        format!("Cred/{}", cc.tag_name().name()),
                                        text_of(cc),
                                    );
                                }
                            }
                        }
                        _ => {
                            hdr.insert(name.to_string(), text_of(c));
                        }
                    }
                }
            }
            "SyncBody" => {
                for c in part.children().filter(|c| c.is_element()) {
                    if c.tag_name().name() == "Final" {
                        fin = true;
                    } else {
                        cmds.push(rox_cmd(c));
                    }
                }
            }
            other => panic!("unexpected {other}"),
        }
    }
    (hdr, cmds, fin)
}

// ---------- our side ----------

fn put(m: &mut BTreeMap<String, String>, k: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v.to_string());
    }
}

fn our_meta(m: &Meta, prefix: &str, out: &mut BTreeMap<String, String>) {
    for (k, v) in [
        ("Format", &m.format),
        ("Type", &m.ty),
        ("Mark", &m.mark),
        ("Size", &m.size),
        ("Version", &m.version),
        ("NextNonce", &m.next_nonce),
        ("MaxMsgSize", &m.max_msg_size),
        ("MaxObjSize", &m.max_obj_size),
    ] {
        put(out, &format!("{prefix}Meta/{k}"), v.as_deref());
    }
}

fn our_item(it: &Item) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, l) in [("Target", &it.target), ("Source", &it.source)] {
        if let Some(l) = l {
            put(&mut m, &format!("{k}/LocURI"), Some(&l.loc_uri));
            put(&mut m, &format!("{k}/LocName"), l.loc_name.as_deref());
        }
    }
    if let Some(meta) = &it.meta {
        our_meta(meta, "", &mut m);
    }
    put(&mut m, "Data", it.data.as_deref());
    if it.more_data {
        put(&mut m, "MoreData", Some(""));
    }
    m
}

fn joined(v: &[std::borrow::Cow<str>]) -> Option<String> {
    (!v.is_empty()).then(|| v.join("|"))
}

fn our_cmd(c: &Command) -> Flat {
    let mut f = Flat {
        name: c.name().to_string(),
        ..Flat::default()
    };
    let fl = &mut f.fields;
    put(fl, "CmdID", c.cmd_id());
    let cred = |fl: &mut BTreeMap<String, String>, cred: &Option<winmdm::syncml::Cred>| {
        if let Some(cr) = cred {
            if let Some(m) = &cr.meta {
                our_meta(m, "Cred/", fl);
            }
            put(fl, "Cred/Data", Some(&cr.data));
        }
    };
    match c {
        Command::Alert(a) => {
            if a.no_resp {
                put(fl, "NoResp", Some(""));
            }
            cred(fl, &a.cred);
            put(fl, "Data", a.data.as_deref());
            put(fl, "Correlator", a.correlator.as_deref());
        }
        Command::Status(s) => {
            put(fl, "MsgRef", Some(&s.msg_ref));
            put(fl, "CmdRef", Some(&s.cmd_ref));
            put(fl, "Cmd", Some(&s.cmd));
            put(fl, "TargetRef", joined(&s.target_refs).as_deref());
            put(fl, "SourceRef", joined(&s.source_refs).as_deref());
            cred(fl, &s.cred);
            if let Some(ch) = &s.chal {
                our_meta(&ch.meta, "Chal/", fl);
            }
            put(fl, "Data", Some(&s.data));
        }
        Command::Results(r) => {
            put(fl, "MsgRef", r.msg_ref.as_deref());
            put(fl, "CmdRef", Some(&r.cmd_ref));
            if let Some(m) = &r.meta {
                our_meta(m, "", fl);
            }
            put(fl, "TargetRef", joined(&r.target_refs).as_deref());
            put(fl, "SourceRef", joined(&r.source_refs).as_deref());
        }
        Command::Get(x)
        | Command::Add(x)
        | Command::Replace(x)
        | Command::Delete(x)
        | Command::Exec(x)
        | Command::Copy(x) => {
            if x.no_resp {
                put(fl, "NoResp", Some(""));
            }
            cred(fl, &x.cred);
            if let Some(m) = &x.meta {
                our_meta(m, "", fl);
            }
            put(fl, "Correlator", x.correlator.as_deref());
        }
        Command::Atomic(x) | Command::Sequence(x) => {
            if x.no_resp {
                put(fl, "NoResp", Some(""));
            }
            if let Some(m) = &x.meta {
                our_meta(m, "", fl);
            }
            f.children = x.commands.iter().map(our_cmd).collect();
        }
    }
    f.items = c.items().iter().map(our_item).collect();
    f
}

fn our_message(m: &SyncMl) -> (BTreeMap<String, String>, Vec<Flat>, bool) {
    let h = &m.hdr;
    let mut hdr = BTreeMap::new();
    put(&mut hdr, "VerDTD", Some(&h.ver_dtd));
    put(&mut hdr, "VerProto", Some(&h.ver_proto));
    put(&mut hdr, "SessionID", Some(&h.session_id));
    put(&mut hdr, "MsgID", Some(&h.msg_id));
    for (k, l) in [("Target", &h.target), ("Source", &h.source)] {
        put(&mut hdr, &format!("{k}/LocURI"), Some(&l.loc_uri));
        put(&mut hdr, &format!("{k}/LocName"), l.loc_name.as_deref());
    }
    put(&mut hdr, "RespURI", h.resp_uri.as_deref());
    if h.no_resp {
        put(&mut hdr, "NoResp", Some(""));
    }
    if let Some(c) = &h.cred {
        if let Some(m) = &c.meta {
            our_meta(m, "Cred/", &mut hdr);
        }
        put(&mut hdr, "Cred/Data", Some(&c.data));
    }
    if let Some(m) = &h.meta {
        our_meta(m, "", &mut hdr);
    }
    (
        hdr,
        m.body.commands.iter().map(our_cmd).collect(),
        m.body.is_final,
    )
}

fn agree_message(name: &str, xml: &str) -> usize {
    let ours = parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let theirs = rox_message(xml);
    let mine = our_message(&ours);
    assert_eq!(mine.0, theirs.0, "{name}: header");
    assert_eq!(mine.2, theirs.2, "{name}: Final");
    assert_eq!(mine.1.len(), theirs.1.len(), "{name}: command count");
    for (i, (a, b)) in mine.1.iter().zip(&theirs.1).enumerate() {
        assert_eq!(a, b, "{name}: command #{i}");
    }
    mine.1.len()
}

fn agree_fragment(name: &str, xml: &str) -> usize {
    let ours = parse_fragment(xml.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
    // roxmltree needs one root: wrap it (test side only).
    let wrapped = format!("<Fragment>{xml}</Fragment>");
    let doc = roxmltree::Document::parse(&wrapped).expect("roxmltree parses the fragment");
    let theirs: Vec<Flat> = doc
        .root_element()
        .children()
        .filter(|c| c.is_element())
        .map(rox_cmd)
        .collect();
    let mine: Vec<Flat> = ours.iter().map(our_cmd).collect();
    assert_eq!(mine, theirs, "{name}");
    mine.len()
}

#[test]
fn agrees_with_roxmltree_on_fixtures() {
    let mut n = 0;
    for p in fixture_messages() {
        n += agree_message(
            &p.display().to_string(),
            &String::from_utf8(read(&p)).unwrap(),
        );
    }
    for p in fixture_fragments() {
        n += agree_fragment(
            &p.display().to_string(),
            &String::from_utf8(read(&p)).unwrap(),
        );
    }
    assert!(n > 30, "{n}");
}

#[test]
fn agrees_with_roxmltree_on_conformance_captures() {
    let Some(files) = conformance_messages() else {
        return;
    };
    for p in files {
        agree_message(
            &p.display().to_string(),
            &String::from_utf8(read(&p)).unwrap(),
        );
    }
    let Some(files) = conformance_fragments() else {
        return;
    };
    for p in files {
        let s = fix_undeclared_a_prefix(&String::from_utf8(read(&p)).unwrap());
        agree_fragment(&p.display().to_string(), &s);
    }
}

#[test]
fn agrees_with_roxmltree_on_generated_messages() {
    agree_message("first_package", &gen::first_package());
    agree_message("get_reply", &gen::get_reply(50));
    agree_message("large_results", &gen::large_results(50));
    let mut n = 0;
    for seed in 0..500 {
        n += agree_message(
            &format!("random_message({seed})"),
            &gen::random_message(seed),
        );
    }
    assert!(n > 1000, "{n}");
}

#[test]
fn agrees_with_roxmltree_on_written_output() {
    // The writer's output is read the same way by roxmltree (namespaces, escaping).
    for seed in 0..200 {
        let src = gen::random_message(seed);
        let m = parse(src.as_bytes()).unwrap();
        let out = String::from_utf8(m.to_vec()).unwrap();
        agree_message(&format!("written random_message({seed})"), &out);
        let doc = roxmltree::Document::parse(&out).unwrap();
        assert_eq!(
            doc.root_element().tag_name().namespace(),
            Some("SYNCML:SYNCML1.2")
        );
        for n in doc
            .descendants()
            .filter(|n| n.is_element() && n.parent().is_some_and(|p| p.has_tag_name("Meta")))
        {
            assert_eq!(n.tag_name().namespace(), Some("syncml:metinf"));
        }
    }
}
