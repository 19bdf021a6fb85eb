//! SyncML parse/write throughput against quick-xml baselines.
//!
//! Data provenance: three messages generated deterministically at start by
//! `tests/syncml/gen.rs` in the shapes of PROTOCOL.md §6 and the Fleet device captures:
//! * `first_package` (~2 KB): a device's package 1 (SyncHdr with MaxMsgSize, Alerts
//!   1201/1224/1226, Replace of ./DevInfo and ./DevDetail nodes);
//! * `get_reply_50` (~30 KB): the device's reply to 50 Gets (Status + Results);
//! * `results_2000` (~3 MB): 2,000 Results, half base64 (certificates), half entity-escaped
//!   `Format xml` payloads.
//!
//! Per input: `quickxml_raw` (quick-xml `Reader` event loop counting Start/Empty), `quickxml_serde`
//! (quick-xml serde into owned structs), `winmdm_parse` (our typed parse), and `winmdm_write`
//! (our writer into a reused buffer; throughput counted on the written bytes).
//!
//! Run: `cargo bench --bench syncml -- --warm-up-time 1 --measurement-time 3`. Last run on the
//! shared 2-core project VM (2026-11-23, load ~7, so ±20 % or worse), first_package /
//! get_reply_50 / results_2000: our parse vs the raw quick-xml loop 1.14× / 1.64× / 1.96×
//! (earlier runs of the same code 1.1–1.7× on get_reply_50); vs quick-xml serde 5.7× / 9.5× /
//! 8.0×; writer 1.8 / 2.2 / 1.6 GB/s.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quick_xml::events::Event;
use serde::Deserialize;

#[path = "../tests/syncml/gen.rs"]
mod gen;

fn quickxml_count(xml: &[u8]) -> usize {
    let mut r = quick_xml::reader::Reader::from_reader(xml);
    let mut n = 0;
    loop {
        match r.read_event() {
            Ok(Event::Start(_) | Event::Empty(_)) => n += 1,
            Ok(Event::Eof) => return n,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

// Owned serde model (the usual way to read SyncML with quick-xml).
#[allow(dead_code)]
#[derive(Deserialize)]
struct SSyncMl {
    #[serde(rename = "SyncHdr")]
    hdr: SHdr,
    #[serde(rename = "SyncBody")]
    body: SBody,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SHdr {
    #[serde(rename = "VerDTD")]
    ver_dtd: String,
    ver_proto: String,
    #[serde(rename = "SessionID")]
    session_id: String,
    #[serde(rename = "MsgID")]
    msg_id: String,
    target: SLoc,
    source: SLoc,
    meta: Option<SMeta>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct SLoc {
    #[serde(rename = "LocURI")]
    loc_uri: String,
}

#[allow(dead_code)]
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct SMeta {
    format: Option<String>,
    #[serde(rename = "Type")]
    ty: Option<String>,
    max_msg_size: Option<String>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct SBody {
    #[serde(rename = "$value")]
    cmds: Vec<SCmd>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
enum SCmd {
    Alert(SGeneric),
    Status(SGeneric),
    Results(SGeneric),
    Replace(SGeneric),
    Get(SGeneric),
    Final,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SGeneric {
    #[serde(rename = "CmdID")]
    cmd_id: String,
    msg_ref: Option<String>,
    cmd_ref: Option<String>,
    cmd: Option<String>,
    data: Option<String>,
    #[serde(default, rename = "Item")]
    items: Vec<SItem>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SItem {
    target: Option<SLoc>,
    source: Option<SLoc>,
    meta: Option<SMeta>,
    data: Option<String>,
}

fn serde_parse(xml: &str) -> SSyncMl {
    quick_xml::de::from_str(xml).expect("serde parses")
}

fn bench(c: &mut Criterion) {
    let inputs = [
        ("first_package", gen::first_package()),
        ("get_reply_50", gen::get_reply(50)),
        ("results_2000", gen::large_results(2000)),
    ];
    for (name, xml) in &inputs {
        let bytes = xml.as_bytes();
        // Sanity: every reader sees the same message.
        let ours = winmdm::syncml::parse(bytes).expect("parses");
        let theirs = serde_parse(xml);
        assert_eq!(
            ours.body.commands.len() + 1,
            theirs.body.cmds.len(),
            "{name}"
        );
        assert!(quickxml_count(bytes) > 0);
        let mut out = Vec::new();
        winmdm::syncml::write(&ours, &mut out);
        eprintln!(
            "{name}: input {} bytes, written {} bytes",
            bytes.len(),
            out.len()
        );

        let mut g = c.benchmark_group(*name);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(BenchmarkId::new("quickxml_raw", bytes.len()), |b| {
            b.iter(|| quickxml_count(black_box(bytes)))
        });
        g.bench_function(BenchmarkId::new("quickxml_serde", bytes.len()), |b| {
            b.iter(|| serde_parse(black_box(xml)))
        });
        g.bench_function(BenchmarkId::new("winmdm_parse", bytes.len()), |b| {
            b.iter(|| winmdm::syncml::parse(black_box(bytes)).map(|m| m.body.commands.len()))
        });
        g.throughput(Throughput::Bytes(out.len() as u64));
        let mut buf = Vec::with_capacity(out.len());
        g.bench_function(BenchmarkId::new("winmdm_write", out.len()), |b| {
            b.iter(|| {
                buf.clear();
                winmdm::syncml::write(black_box(&ours), &mut buf);
                buf.len()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
