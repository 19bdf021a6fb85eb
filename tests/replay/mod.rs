//! Conformance replay table: every captured device→server message in `../shared/conformance/`
//! (discovery, policy, enrollment with the real Windows CSR, each OMA-DM device message) is
//! posted to an in-process server and its answer checked structurally. Prints
//! `message → accepted / answer summary` and fails on any rejection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::enroll::conformance::{captures, context_item, server_with_capture_users};
use crate::manage::conformance::device_with_id;
use crate::support::device::element_text;
use crate::support::mdm_device::{ManagedDevice, Reply};
use crate::support::{conformance_dir, TestServer};

struct Row {
    message: String,
    accepted: bool,
    summary: String,
}

fn rel(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}

/// Device OMA-DM messages, in capture order (file names sort by session and message).
pub(crate) fn syncml_captures(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["fleet", "peers/marcosd4h-mdm-poc"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let device = name.contains("-device-syncml-")
                    || (name.contains("-manage-msg") && name.ends_with("-request.xml"));
                if device {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// Structural check of a SOAP answer: HTTP 200, well-formed, `s:Envelope` root, no Fault, and
/// the expected element in the body.
fn soap_row(dir: &Path, f: &Path, status: u16, xml: &str, expect: &str) -> Row {
    let mut problems = Vec::new();
    if status != 200 {
        problems.push(format!("HTTP {status}"));
    }
    match roxmltree::Document::parse(xml) {
        Ok(doc) => {
            let root = doc.root_element().tag_name().name();
            if root != "Envelope" {
                problems.push(format!("root <{root}>"));
            }
            if doc.descendants().any(|n| n.tag_name().name() == "Fault") {
                problems.push(format!(
                    "Fault {}",
                    element_text(xml, "Value").unwrap_or_default()
                ));
            }
            if !doc.descendants().any(|n| n.tag_name().name() == expect) {
                problems.push(format!("no <{expect}>"));
            }
        }
        Err(e) => problems.push(format!("not XML: {e}")),
    }
    let accepted = problems.is_empty();
    let summary = if accepted {
        format!("200 Envelope/{expect}")
    } else {
        problems.join("; ")
    };
    Row {
        message: rel(dir, f),
        accepted,
        summary,
    }
}

#[tokio::test]
async fn every_captured_device_message_is_accepted() {
    let Some(dir) = conformance_dir("conformance replay table") else {
        return;
    };
    let mut rows = Vec::new();

    // SOAP: one server, the users the captures log in with.
    let soap: Vec<(PathBuf, &str, &str)> = [
        (
            "discover",
            "/EnrollmentServer/Discovery.svc",
            "DiscoverResponse",
        ),
        (
            "policy",
            "/EnrollmentServer/Policy.svc",
            "GetPoliciesResponse",
        ),
        (
            "enroll",
            "/EnrollmentServer/Enrollment.svc",
            "RequestSecurityTokenResponseCollection",
        ),
    ]
    .iter()
    .flat_map(|(kind, path, expect)| {
        captures(&dir, kind)
            .into_iter()
            .map(move |f| (f, *path, *expect))
    })
    .collect();
    let files: Vec<PathBuf> = soap.iter().map(|(f, _, _)| f.clone()).collect();
    let srv = server_with_capture_users(&files).await;
    for (f, path, expect) in &soap {
        let body = std::fs::read(f).unwrap();
        // An enrollment on a server of its own, as it was captured: two captures enroll the
        // same DeviceID as different users of different servers (one server refuses that).
        let own = if *expect == "RequestSecurityTokenResponseCollection" {
            Some(server_with_capture_users(std::slice::from_ref(f)).await)
        } else {
            None
        };
        let r = own
            .as_ref()
            .unwrap_or(&srv)
            .client()
            .soap(path, &body)
            .await;
        if let Some(own) = own {
            own.stop().await;
        }
        let mut row = soap_row(&dir, f, r.status, &r.text(), expect);
        if row.accepted && *expect == "RequestSecurityTokenResponseCollection" {
            let req = String::from_utf8_lossy(&body);
            let id = context_item(&req, "DeviceID").unwrap_or_default();
            row.summary.push_str(&format!(", certificate for {id}"));
        }
        rows.push(row);
    }
    srv.stop().await;

    // OMA-DM: a fake device enrolled with each capture's DeviceID (our key stands in for the
    // device's), the messages posted in capture order.
    let srv = TestServer::start().await;
    let mut devices: BTreeMap<String, ManagedDevice> = BTreeMap::new();
    for f in syncml_captures(&dir) {
        let body = std::fs::read_to_string(&f).unwrap();
        let id = winmdm::syncml::parse(body.as_bytes())
            .map(|m| m.hdr.source.loc_uri.trim().to_string())
            .unwrap_or_else(|e| panic!("{}: capture does not parse: {e}", f.display()));
        if !devices.contains_key(&id) {
            let d = device_with_id(&srv, &id).await;
            devices.insert(id.clone(), d);
        }
        let r = devices[&id].post(&body).await;
        let text = r.text();
        let mut problems = Vec::new();
        if r.status != 200 {
            problems.push(format!("HTTP {}", r.status));
        }
        let summary = match roxmltree::Document::parse(&text) {
            Ok(doc) if doc.root_element().tag_name().name() == "SyncML" => {
                let reply = Reply::parse(&text);
                match reply.statuses.first() {
                    Some((r, cmd, code)) if r == "0" && cmd == "SyncHdr" && code == "200" => {}
                    other => problems.push(format!("first Status {other:?}")),
                }
                let verbs: Vec<&str> = reply.commands.iter().map(|c| c.verb.as_str()).collect();
                format!(
                    "200 SyncML: {} Status ({}), commands [{}]{}",
                    reply.statuses.len(),
                    reply
                        .statuses
                        .iter()
                        .map(|s| format!("{} {}", s.1, s.2))
                        .collect::<Vec<_>>()
                        .join(", "),
                    verbs.join(", "),
                    if reply.is_final { ", Final" } else { "" }
                )
            }
            Ok(doc) => {
                problems.push(format!("root <{}>", doc.root_element().tag_name().name()));
                String::new()
            }
            Err(e) => {
                problems.push(format!("not XML: {e}"));
                String::new()
            }
        };
        let accepted = problems.is_empty();
        rows.push(Row {
            message: rel(&dir, &f),
            accepted,
            summary: if accepted {
                summary
            } else {
                format!(
                    "{}: {}",
                    problems.join("; "),
                    text.chars().take(200).collect::<String>()
                )
            },
        });
    }
    srv.stop().await;

    let width = rows.iter().map(|r| r.message.len()).max().unwrap_or(0);
    println!("{:width$}  result", "message");
    for r in &rows {
        println!(
            "{:width$}  {} / {}",
            r.message,
            if r.accepted { "accepted" } else { "REJECTED" },
            r.summary
        );
    }
    let kinds = ["discover", "policy", "enroll"]
        .iter()
        .map(|k| captures(&dir, k).len())
        .collect::<Vec<_>>();
    assert!(
        kinds.iter().all(|n| *n >= 1) && syncml_captures(&dir).len() >= 2,
        "expected captures of every kind: {kinds:?}"
    );
    // Nothing that looks like a device→server capture is left out of the table.
    for sub in ["fleet", "peers/marcosd4h-mdm-poc"] {
        for e in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let looks_device =
                name.ends_with(".xml") && (name.contains("-device-") || name.contains("-request"));
            let listed = rows.iter().any(|r| r.message == rel(&dir, &e.path()));
            assert!(!looks_device || listed, "capture {name} not replayed");
        }
    }
    let rejected: Vec<&str> = rows
        .iter()
        .filter(|r| !r.accepted)
        .map(|r| r.message.as_str())
        .collect();
    assert!(rejected.is_empty(), "rejected: {rejected:?}");
}
