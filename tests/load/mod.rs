//! `loadgen --target`'s code path ([`winmdm::testkit::load::run_external`]) against real servers:
//! enrollment through the public endpoints with a bulk account, commands queued through the
//! admin API, sessions on the management listener, reports per target.

use rustls::pki_types::CertificateDer;
use winmdm::testkit::load::{run_external, ExternalOptions};

use crate::support::{TestServer, ADMIN_TOKEN};

fn opts(servers: &[&TestServer]) -> ExternalOptions {
    ExternalOptions {
        targets: servers
            .iter()
            .map(|s| format!("https://localhost:{}", s.addr.port()))
            .collect(),
        tokens: vec![ADMIN_TOKEN.into()],
        roots: servers
            .iter()
            .map(|s| CertificateDer::from(s.app.ca.cert_der().to_vec()))
            .collect(),
        devices: 6,
        sessions: 12,
        concurrency: 3,
        commands: 2,
        enroll_concurrency: 3,
        enqueue_concurrency: 4,
        server_pids: vec![std::process::id()],
        ..ExternalOptions::default()
    }
}

/// Every command of `device` the admin API lists, as (state, status).
async fn states(s: &TestServer, device: &str) -> Vec<(String, String)> {
    let (st, body) = s
        .admin("GET", &format!("/api/v1/devices/{device}/commands"), None)
        .await;
    assert_eq!(st, 200, "{body}");
    body["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| (c["state"].to_string(), c["status"].to_string()))
        .collect()
}

async fn devices(s: &TestServer) -> Vec<serde_json::Value> {
    let (st, body) = s.admin("GET", "/api/v1/devices?limit=1000", None).await;
    assert_eq!(st, 200, "{body}");
    body["devices"].as_array().expect("devices").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_enroll_and_run_sessions_against_a_running_server() {
    let s = TestServer::start().await;
    for reuse in [false, true] {
        let o = ExternalOptions {
            reuse,
            ..opts(&[&s])
        };
        let r = run_external(&o).await.expect("run");
        println!("{r}");
        assert_eq!(r.enrolled(), 6, "{r}");
        assert_eq!(r.sessions(), 12, "{r}");
        assert_eq!(r.enqueued(), 24, "{r}");
        assert_eq!(
            r.received(),
            24,
            "every queued command reached its device: {r}"
        );
        assert_eq!(r.session_errors().total(), 0, "{r}");
        assert!(r.server_cpu.is_some(), "{r}");
    }
    // Enrolled through the endpoints as bulk devices, 12 in all (two runs, fresh ids each).
    let list = devices(&s).await;
    assert_eq!(list.len(), 12);
    for d in &list {
        assert_eq!(d["bulk"], true, "{d}");
        let id = d["device_id"].as_str().expect("id");
        let st = states(&s, id).await;
        assert_eq!(st.len(), 4, "two passes of two commands: {st:?}");
        assert!(
            st.iter()
                .all(|(state, status)| state == "\"done\"" && status == "200"),
            "{st:?}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_spread_round_robin_over_two_servers() {
    let (a, b) = (TestServer::start().await, TestServer::start().await);
    let o = ExternalOptions {
        devices: 5,
        sessions: 10,
        reuse: true,
        ..opts(&[&a, &b])
    };
    let r = run_external(&o).await.expect("run");
    println!("{r}");
    assert_eq!(r.session_errors().total(), 0, "{r}");
    assert_eq!(
        r.targets
            .iter()
            .map(|t| (t.enrolled, t.latencies.len(), t.received))
            .collect::<Vec<_>>(),
        vec![(3, 6, 12), (2, 4, 8)],
        "{r}"
    );
    assert_eq!(devices(&a).await.len(), 3);
    assert_eq!(devices(&b).await.len(), 2);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hop_with_one_target_changes_nothing_and_a_wrong_token_is_reported() {
    let s = TestServer::start().await;
    let o = ExternalOptions {
        hop: true,
        devices: 2,
        sessions: 4,
        ..opts(&[&s])
    };
    let r = run_external(&o).await.expect("run");
    assert_eq!((r.sessions(), r.received()), (4, 8), "{r}");
    let o = ExternalOptions {
        tokens: vec!["wrong".into()],
        ..opts(&[&s])
    };
    let e = run_external(&o).await.expect_err("refused");
    assert_eq!(e.kind, "admin-401", "{e}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hop_sends_each_message_of_a_session_to_the_next_target() {
    // Two nodes sharing the CA but not the store: the second message of every session goes to
    // the node that does not know the device, which refuses it.
    let a = TestServer::start().await;
    let (cert, key) = (a.data_dir.join("ca/ca.pem"), a.data_dir.join("ca/ca.key"));
    let b = TestServer::start_with(|o| {
        o.ca_cert = Some(cert);
        o.ca_key = Some(key);
    })
    .await;
    let base = ExternalOptions {
        devices: 4,
        sessions: 4,
        reuse: true,
        ..opts(&[&a, &b])
    };
    let r = run_external(&base).await.expect("run");
    assert_eq!((r.sessions(), r.session_errors().total()), (4, 0), "{r}");
    let r = run_external(&ExternalOptions { hop: true, ..base })
        .await
        .expect("run");
    println!("{r}");
    assert_eq!(r.sessions(), 0, "{r}");
    assert_eq!(r.session_errors().by_kind.get("http-403"), Some(&4), "{r}");
    // Devices of a are refused by b's management listener at message 2, and the other way round.
    let other = [b.mgmt_addr, a.mgmt_addr].map(|m| m.expect("mgmt").port());
    for (t, port) in r.targets.iter().zip(other) {
        assert_eq!(t.session_errors.total(), 2, "{r}");
        for f in &t.session_errors.first {
            let at = format!(
                "message 2: https://localhost:{port}/ManagementServer/MDM.svc answered 403"
            );
            assert!(f.contains(&at), "{f}");
        }
    }
    a.stop().await;
    b.stop().await;
}
