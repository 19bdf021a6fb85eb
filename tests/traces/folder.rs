//! Traces as regression tests, replayed by the same code users get (`winmdm trace replay`):
//!
//! * every trace file in `protocol-fixtures/traces/` (recorded by winmdm, or a HAR) is replayed
//!   against a fresh server, with the trace's user created with [`FIXTURE_PASSWORD`] and the
//!   recorded commands queued again: every message must be `accepted`;
//! * the complete captured Windows flow in `../shared/conformance/peers/marcosd4h-mdm-poc/`
//!   (discovery, policy, enrollment, two OMA-DM messages, answered there by another server) is
//!   turned into a trace and replayed: no message may be `refused` or `skipped` (its answers
//!   come from another server, so they may differ);
//! * every captured device OMA-DM message of `../shared/conformance/` becomes a trace per
//!   DeviceID, replayed over mutual TLS with a device enrolled under that DeviceID: none may be
//!   `refused` (the table of `tests/replay` checks their answers in more detail).

use std::path::{Path, PathBuf};

use winmdm::trace::format::{Endpoint, Exchange, Header, Message, Trace, FORMAT, VERSION};
use winmdm::trace::replay::{self, Options, Verdict};

use crate::enroll::conformance::server_with_capture_users;
use crate::manage::conformance::device_with_id;
use crate::support::device::element_text;
use crate::support::{conformance_dir, TestServer, ADMIN_TOKEN};

/// The password the fixture runner gives the trace's user (the trace's own is redacted).
pub const FIXTURE_PASSWORD: &str = "Fixture-replay-pw-1";

fn options(srv: &TestServer, requeue: bool) -> Options {
    Options {
        server: format!("https://localhost:{}", srv.addr.port()),
        roots: vec![srv.app.ca.cert_der().to_vec().into()],
        password: Some(FIXTURE_PASSWORD.into()),
        admin_token: requeue.then(|| ADMIN_TOKEN.to_string()),
        ..Options::default()
    }
}

fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol-fixtures/traces");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson" || e == "har"))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn every_fixture_trace_replays_accepted() {
    let files = fixture_files();
    assert!(
        !files.is_empty(),
        "protocol-fixtures/traces/ holds no trace"
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let trace = Trace::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let srv = TestServer::start().await;
        let upn = trace
            .exchanges
            .iter()
            .find_map(|x| element_text(&x.request.body, "Username"));
        if let Some(upn) = &upn {
            srv.create_user(upn, FIXTURE_PASSWORD).await;
        }
        let lines = replay::replay(&trace, &options(&srv, true))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let report: Vec<String> = lines.iter().map(ToString::to_string).collect();
        println!("{}:\n  {}", f.display(), report.join("\n  "));
        assert_eq!(lines.len(), trace.exchanges.len());
        assert!(
            lines.iter().all(|l| l.verdict == Verdict::Accepted),
            "{}:\n{}",
            f.display(),
            report.join("\n")
        );
        srv.stop().await;
    }
}

fn exchange(
    seq: u32,
    endpoint: Endpoint,
    method: &str,
    path: &str,
    req: &str,
    resp: &str,
) -> Exchange {
    let ct = match endpoint {
        Endpoint::Management => "application/vnd.syncml.dm+xml",
        _ => "application/soap+xml; charset=utf-8",
    };
    Exchange {
        seq,
        at_ms: 0,
        endpoint,
        method: method.into(),
        path: path.into(),
        status: 200,
        took_us: 0,
        request: Message {
            headers: if req.is_empty() {
                Vec::new()
            } else {
                vec![("content-type".into(), ct.into())]
            },
            body: req.into(),
            ..Message::default()
        },
        response: Message {
            body: resp.into(),
            ..Message::default()
        },
        session_id: winmdm::trace::syncml_session(req),
        delivered: Vec::new(),
        correlated: false,
    }
}

#[tokio::test]
async fn the_captured_windows_flow_replays_without_a_refusal() {
    let Some(dir) = conformance_dir("the captured Windows flow as a trace") else {
        return;
    };
    let d = dir.join("peers/marcosd4h-mdm-poc");
    let read = |n: &str| std::fs::read_to_string(d.join(n)).unwrap_or_default();
    let steps = [
        (
            Endpoint::Discovery,
            "GET",
            "/EnrollmentServer/Discovery.svc",
            "",
            "",
        ),
        (
            Endpoint::Discovery,
            "POST",
            "/EnrollmentServer/Discovery.svc",
            "02-discovery-post-request.xml",
            "02-discovery-post-response.xml",
        ),
        (
            Endpoint::Policy,
            "POST",
            "/EnrollmentServer/Policy.svc",
            "03-policy-request.xml",
            "03-policy-response.xml",
        ),
        (
            Endpoint::Enrollment,
            "POST",
            "/EnrollmentServer/Enrollment.svc",
            "04-enroll-request.xml",
            "04-enroll-response.xml",
        ),
        (
            Endpoint::Management,
            "POST",
            "/ManagementServer/MDM.svc",
            "05-manage-msg1-request.xml",
            "05-manage-msg1-response.xml",
        ),
        (
            Endpoint::Management,
            "POST",
            "/ManagementServer/MDM.svc",
            "06-manage-msg2-request.xml",
            "06-manage-msg2-response.xml",
        ),
    ];
    let exchanges: Vec<Exchange> = steps
        .iter()
        .enumerate()
        .map(|(i, (ep, m, p, rq, rs))| {
            let req = if rq.is_empty() {
                String::new()
            } else {
                read(rq)
            };
            let resp = if rs.is_empty() {
                String::new()
            } else {
                read(rs)
            };
            exchange(i as u32 + 1, *ep, m, p, &req, &resp)
        })
        .collect();
    let device_id = exchanges
        .iter()
        .find_map(|x| winmdm::trace::syncml_source(&x.request.body));
    assert!(device_id.is_some(), "the capture's DeviceID");
    let trace = Trace {
        header: Header {
            format: FORMAT.into(),
            version: VERSION,
            id: "marcosd4h-mdm-poc".into(),
            device_id,
            started_at: 0,
            source: "conformance".into(),
            redacted: false,
            note: None,
        },
        exchanges,
    };
    // The capture's own password is in it: the server gets the capture's user.
    let files = vec![d.join("03-policy-request.xml")];
    let srv = server_with_capture_users(&files).await;
    let mut opts = options(&srv, false);
    opts.password = None;
    let lines = replay::replay(&trace, &opts).await.expect("replay");
    let report: Vec<String> = lines.iter().map(ToString::to_string).collect();
    println!("captured Windows flow:\n  {}", report.join("\n  "));
    assert_eq!(lines.len(), 6);
    for l in &lines {
        assert!(
            !matches!(l.verdict, Verdict::Refused(_) | Verdict::Skipped(_)),
            "{}",
            report.join("\n")
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_captured_omadm_messages_replay_without_a_refusal() {
    let Some(dir) = conformance_dir("the captured OMA-DM messages as traces") else {
        return;
    };
    // One trace per recording (`fleet/trace-ngrok-…`, `fleet/trace-readme-…`, the peer's
    // folder) and device: two recordings of one device reuse its SessionIDs, which a server
    // rightly refuses as late copies once the URLs are rewritten alike.
    let mut by_device: std::collections::BTreeMap<(String, String), Vec<Exchange>> =
        Default::default();
    for f in crate::replay::syncml_captures(&dir) {
        let body = std::fs::read_to_string(&f).unwrap();
        let id = winmdm::trace::syncml_source(&body)
            .unwrap_or_else(|| panic!("{}: no DeviceID", f.display()));
        let rel = f.strip_prefix(&dir).unwrap_or(&f).display().to_string();
        let recording = rel
            .rsplit_once('/')
            .map(|(folder, name)| match name.strip_prefix("trace-") {
                Some(rest) => format!("{folder}/trace-{}", rest.split('-').next().unwrap_or("")),
                None => folder.to_string(),
            })
            .unwrap_or(rel);
        let list = by_device.entry((recording, id)).or_default();
        let seq = list.len() as u32 + 1;
        list.push(exchange(
            seq,
            Endpoint::Management,
            "POST",
            "/ManagementServer/MDM.svc",
            &body,
            "",
        ));
    }
    assert!(!by_device.is_empty(), "OMA-DM captures");
    let mut total = 0;
    for ((recording, id), exchanges) in by_device {
        let srv = TestServer::start().await;
        let mgmt = crate::support::mgmt_target(srv.addr);
        let d = device_with_id(&srv, &id).await;
        let trace = Trace {
            header: Header {
                format: FORMAT.into(),
                version: VERSION,
                id: format!("conformance-{id}"),
                device_id: Some(id.clone()),
                started_at: 0,
                source: "conformance".into(),
                redacted: false,
                note: None,
            },
            exchanges,
        };
        let mut opts = options(&srv, false);
        opts.server = format!("https://localhost:{}", mgmt.port());
        opts.same_device_id = true;
        opts.identity = Some((d.cert_der.clone(), d.key_der.clone()));
        let lines = replay::replay(&trace, &opts).await.expect("replay");
        let report: Vec<String> = lines.iter().map(ToString::to_string).collect();
        println!("{recording} ({id}):\n  {}", report.join("\n  "));
        assert_eq!(lines.len(), trace.exchanges.len());
        for l in &lines {
            assert!(
                !matches!(l.verdict, Verdict::Refused(_) | Verdict::Skipped(_)),
                "{recording} ({id}): {}",
                report.join("\n")
            );
        }
        total += lines.len();
        srv.stop().await;
    }
    assert!(total >= 5, "{total} messages");
}
