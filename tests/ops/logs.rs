//! `--log-format json` on the real binary: every line of its output is one JSON object, and the
//! lines of a management round, an enrollment and an admin request carry their span's fields
//! (trace id, device id, session id, admin actor). Also the plain-HTTP `--metrics-listen`.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::child::{try_admin, ChildServer};
use crate::support::device::{self, message_id, policy_xml, DeviceInfo};
use crate::support::mdm_device::ManagedDevice;

/// The span named `name` among a line's spans.
fn span<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == name)
}

async fn plain_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn json_logs_carry_the_span_fields_and_metrics_listen_serves_plain_http() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut child = ChildServer::new(&tmp.path().join("data"), &tmp.path().join("server.log"));
    child.args = [
        "--log-format",
        "json",
        "--metrics-listen",
        &metrics_addr.to_string(),
        "--ca-key-algorithm",
        "ecdsa-p256",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    child.env.push(("RUST_LOG".into(), "info".into()));
    child.spawn();
    let c = child.wait_ready(Duration::from_secs(60)).await;

    // An admin call, a refused policy request (wrong password), an enrollment, a session.
    let upn = "logs@example.com";
    let (st, v) = try_admin(
        &c,
        "POST",
        "/api/v1/users",
        Some(json!({"upn": upn, "password": "pw-123456"})),
    )
    .await
    .expect("admin answers");
    assert_eq!(st, 201, "{v}");
    let policy_url = format!(
        "https://localhost:{}{}",
        child.addr.port(),
        winmdm::config::paths::POLICY
    );
    let r = c
        .soap(
            winmdm::config::paths::POLICY,
            policy_xml(upn, "wrong-password", &policy_url, &message_id()).as_bytes(),
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    let e = device::enroll(&c, &DeviceInfo::new(7, upn, "pw-123456")).await;
    let (st, v) = try_admin(
        &c,
        "POST",
        &format!("/api/v1/devices/{}/commands", e.device_id),
        Some(json!({"verb": "Get", "target": "./DevDetail/SwV"})),
    )
    .await
    .expect("admin answers");
    assert_eq!(st, 201, "{v}");
    let mut md = ManagedDevice::at(child.mgmt_addr, &e);
    assert_eq!(md.session().await.len(), 1);
    // A SyncML error status: message 3 of a session the server does not hold (409).
    let stray = md
        .first_package(99, "")
        .replace("<MsgID>1</MsgID>", "<MsgID>3</MsgID>");
    assert_eq!(md.post(&stray).await.status, 409);

    // --metrics-listen: plain HTTP, no token, GET /metrics only.
    let m = plain_get(metrics_addr, "/metrics").await;
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(
        m.contains("winmdm_management_sessions_started_total 1\n"),
        "{m}"
    );
    let other = plain_get(metrics_addr, "/api/v1/devices").await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");

    child.stop(Duration::from_secs(20));
    let log = std::fs::read_to_string(&child.log_path).unwrap();
    let mut lines = Vec::new();
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}\n{log}"));
        assert!(v.is_object(), "{l}");
        for k in ["timestamp", "level", "target", "message"] {
            assert!(v.get(k).is_some(), "no {k} in {l}");
        }
        lines.push(v);
    }
    assert!(lines.len() > 10, "{log}");
    let find = |what: &str, pred: &dyn Fn(&Value) -> bool| {
        lines
            .iter()
            .find(|l| pred(l))
            .unwrap_or_else(|| panic!("no log line for {what} in:\n{log}"))
            .clone()
    };
    let hexy = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.len() >= 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    // A management round: device id, session id and trace id of the `manage` span.
    let round = find("a management round", &|l| {
        l["message"] == "management round"
    });
    let sp = span(&round, "manage").expect("manage span");
    assert_eq!(sp["device_id"], e.device_id.as_str(), "{round}");
    assert_eq!(sp["session_id"], "1", "{round}");
    assert!(hexy(&sp["trace_id"]), "{round}");
    assert_eq!(round["span"]["name"], "manage", "{round}");
    // The enrollment: its span names the device once the request named it.
    let enrolled = find("the enrollment", &|l| {
        span(l, "enroll").is_some_and(|s| s["device_id"] == e.device_id.as_str())
    });
    assert!(
        hexy(&span(&enrolled, "enroll").unwrap()["trace_id"]),
        "{enrolled}"
    );
    // The refused policy request keeps its reason, and the trace id the device was sent.
    let refused = find("the refused policy request", &|l| {
        l["message"] == "enrollment request refused"
    });
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("authentication failed")),
        "{refused}"
    );
    assert_eq!(
        refused["trace_id"],
        span(&refused, "enroll").unwrap()["trace_id"],
        "{refused}"
    );
    assert!(
        r.text()
            .contains(refused["trace_id"].as_str().unwrap_or("?")),
        "the fault sent carries the logged trace id"
    );
    // The refused management message keeps its reason, in its device's span.
    let out_of_order = find("the refused management message", &|l| {
        l["message"] == "message refused: not applied"
    });
    assert_eq!(
        out_of_order["why"], "message of a session the server does not hold",
        "{out_of_order}"
    );
    let sp = span(&out_of_order, "manage").expect("manage span");
    assert_eq!(sp["device_id"], e.device_id.as_str(), "{out_of_order}");
    assert_eq!(sp["session_id"], "99", "{out_of_order}");
    // An admin request: the actor and trace id.
    let admin = find("an admin request", &|l| {
        span(l, "admin").is_some_and(|s| s["actor"] == "bootstrap")
    });
    assert!(hexy(&span(&admin, "admin").unwrap()["trace_id"]), "{admin}");
}
