//! The real binary (`winmdm serve` with `--graph-*` and `--tenant-*` flags) against the Graph
//! stand-in, with no sync asked for: the worker follows an import to "registered" by itself
//! and the periodic pull brings a device an OEM registered.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{app_cert, connect_body, CLIENT, TENANT};
use crate::autopilot::{hash, HEADER};
use crate::support::child::{send, try_admin, ChildServer};
use crate::support::graph::GraphStandIn;
use crate::support::ADMIN_TOKEN;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_syncs_on_its_own() {
    let g = GraphStandIn::start(TENANT, CLIENT).await;
    let app = app_cert();
    g.register_cert(&app.der);
    let dir = tempfile::tempdir().unwrap();
    let ca = g.write_ca(dir.path());
    let data = dir.path().join("data");
    let mut child = ChildServer::new(&data, &dir.path().join("winmdm.log"));
    child.args = vec![
        "--graph-login-url".into(),
        g.url(),
        "--graph-url".into(),
        g.url(),
        "--graph-ca".into(),
        ca.display().to_string(),
        "--tenant-poll".into(),
        "1s".into(),
        "--tenant-sync-interval".into(),
        "2s".into(),
    ];
    // Debug logs: the key and the secret must not be in them either.
    child.env = vec![("RUST_LOG".into(), "winmdm=debug".into())];
    child.spawn();
    let c = child.wait_ready(Duration::from_secs(60)).await;
    let (st, v) = try_admin(&c, "PUT", "/api/v1/tenant", Some(connect_body(&app)))
        .await
        .unwrap();
    assert_eq!(st, 200, "{v}\n{}", child.log_tail());

    let auth = format!("Bearer {ADMIN_TOKEN}");
    let body = format!("{HEADER}\r\nBIN-0001,,{},Sales,\r\n", hash(4242, 64)).into_bytes();
    let r = send(
        &c,
        "POST",
        "/api/v1/autopilot/devices",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "text/csv"),
        ],
        body,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    g.register_oem("OEM-BIN", "Retail");

    let start = Instant::now();
    loop {
        let (_, d) = try_admin(&c, "GET", "/api/v1/autopilot/devices/BIN-0001", None)
            .await
            .unwrap();
        let (st, oem) = try_admin(&c, "GET", "/api/v1/autopilot/devices/OEM-BIN", None)
            .await
            .unwrap();
        if d["tenant"]["state"] == "registered" && st == 200 {
            assert_eq!(oem["group_tag"], "Retail");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not synced on its own: {d} {oem}\n{}",
            child.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, s) = try_admin(&c, "GET", "/api/v1/tenant", None).await.unwrap();
    assert_eq!(s["state"], "connected", "{s}");
    assert!(s["last_pull"].as_i64().is_some(), "{s}");
    let audit: Value = try_admin(&c, "GET", "/api/v1/audit?limit=1000", None)
        .await
        .unwrap()
        .1;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "tenant.graph" && e["actor"] == "tenant-sync"),
        "the worker's writes are audited as tenant-sync"
    );

    // Reconnect with a client secret, then read the whole log.
    const SECRET: &str = "Qz7~binary-test-client-secret-value";
    g.st().secret = Some(SECRET.into());
    let (st, _) = try_admin(&c, "DELETE", "/api/v1/tenant", None)
        .await
        .unwrap();
    assert_eq!(st, 204);
    let body = json!({"tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET});
    let (st, v) = try_admin(&c, "PUT", "/api/v1/tenant", Some(body))
        .await
        .unwrap();
    assert_eq!(st, 200, "{v}");
    let (st, rep) = try_admin(&c, "POST", "/api/v1/tenant/sync", None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{rep}");
    child.stop(Duration::from_secs(10));
    let log = std::fs::read_to_string(dir.path().join("winmdm.log")).unwrap();
    assert!(
        log.contains("Microsoft tenant connected"),
        "debug log written"
    );
    assert!(!log.contains(SECRET), "the client secret is in the log");
    assert!(
        !log.contains("PRIVATE KEY"),
        "the private key is in the log"
    );
    // Nor any line of the key's base64 body.
    for line in app
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
    {
        assert!(
            !log.contains(line),
            "a line of the private key is in the log"
        );
    }
}
