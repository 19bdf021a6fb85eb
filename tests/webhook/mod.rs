//! The results webhook end to end (issue 16): a local HTTPS receiver with its own test CA
//! (`--webhook-ca`) checks every signature, the order of each device's events, delivery at least
//! once across a receiver that is down, hangs or fails, and across a SIGKILL of the real binary,
//! dead letters and their redelivery through the API, and that a hanging receiver never slows a
//! device's session.

mod crash;

use std::time::{Duration, Instant};

use serde_json::json;

use crate::manage::{enrolled, queue};
use crate::support::receiver::{Delivery, Receiver, FAIL, HANG, OK};
use crate::support::{TestServer, ADMIN_TOKEN};

pub const SECRET: &str = "whsec-test-0123456789abcdef";

/// A server whose webhook posts to `rx` (the receiver's CA in a temporary file kept with it).
pub async fn server(
    rx: &Receiver,
    adjust: impl FnOnce(&mut winmdm::config::ServeOptions),
) -> (TestServer, tempfile::TempDir) {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = rx.write_ca(ca_dir.path());
    let srv = TestServer::start_with(|o| {
        o.webhook_url = Some(rx.url());
        o.webhook_secret = Some(SECRET.into());
        o.webhook_ca = Some(ca);
        adjust(o);
    })
    .await;
    (srv, ca_dir)
}

/// The accepted events of `device`, as (type, command id or "").
pub fn sequence(acc: &[Delivery], device: &str) -> Vec<(String, String)> {
    acc.iter()
        .filter(|d| d.device_id == device)
        .map(|d| {
            (
                d.event_type.clone(),
                d.body["command_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn expected(n: usize, prefix: &str) -> Vec<(String, String)> {
    let mut v = vec![("device.enrolled".to_string(), String::new())];
    v.extend((0..n).map(|i| ("command.completed".to_string(), format!("{prefix}{i:02}"))));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_signed_complete_and_in_order_per_device_despite_failures() {
    let rx = Receiver::start(SECRET.as_bytes()).await;
    // Every third request fails: each device's later events must wait for the retried one.
    rx.fail_every.store(3, std::sync::atomic::Ordering::SeqCst);
    let (srv, _ca) = server(&rx, |_| {}).await;
    let mut a = enrolled(&srv, 1).await;
    let mut b = enrolled(&srv, 2).await;
    for d in [&a, &b] {
        for i in 0..6 {
            let verb = if i % 3 == 0 { "Get" } else { "Replace" };
            queue(
                &srv,
                &d.device_id,
                json!({"verb": verb, "target": format!("./Vendor/MSFT/Test/N{i}"), "format": "chr", "data": "v", "command_id": format!("c{i:02}")}),
            )
            .await;
        }
    }
    a.nodes
        .insert("./Vendor/MSFT/Test/N0".into(), "zero".into());
    a.status_for.insert("./Vendor/MSFT/Test/N4".into(), 404);
    // Two sessions each, interleaved: commands answered over several rounds.
    assert_eq!(a.session().await.len(), 6);
    assert_eq!(b.session().await.len(), 6);
    rx.wait_for(Duration::from_secs(60), "all 14 events", |acc| {
        acc.len() == 14
    })
    .await;
    let acc = rx.accepted();
    assert_eq!(sequence(&acc, &a.device_id), expected(6, "c"));
    assert_eq!(sequence(&acc, &b.device_id), expected(6, "c"));
    // Retries happened, and every request (failed or not) carried a valid signature, which a
    // receiver with another secret rejects.
    let all = rx.deliveries();
    assert!(all.len() >= 14 + 4, "{} requests", all.len());
    for d in &all {
        assert!(d.verified, "bad signature on {:?}", d.event_id);
        assert!(!crate::support::receiver::verify(
            b"another-secret-0123456789",
            &d.signature,
            &d.raw,
            d.body["created_at"].as_i64().unwrap()
        ));
        // A retried event is the same bytes with the same id.
        let first = all.iter().find(|x| x.event_id == d.event_id).unwrap();
        assert_eq!(first.raw, d.raw);
        assert_eq!(d.body["event_id"], d.event_id.as_str());
        assert_eq!(d.body["type"], d.event_type.as_str());
        assert!(d.body["created_at"].is_i64());
    }
    // Payloads: enrollment and results.
    let enrolled_a = acc
        .iter()
        .find(|d| d.device_id == a.device_id && d.event_type == "device.enrolled")
        .unwrap();
    assert_eq!(enrolled_a.body["upn"], "user1@example.com");
    assert_eq!(enrolled_a.body["enrollment_type"], "Full");
    assert!(enrolled_a.body["cert_serial"].as_str().unwrap().len() >= 16);
    let get = acc
        .iter()
        .find(|d| d.device_id == a.device_id && d.body["command_id"] == "c00")
        .unwrap();
    assert_eq!(get.body["verb"], "Get");
    assert_eq!(get.body["status"], 200);
    assert_eq!(get.body["state"], "done");
    assert_eq!(get.body["results"][0]["target"], "./Vendor/MSFT/Test/N0");
    assert_eq!(get.body["results"][0]["data"], "zero");
    let refused = acc
        .iter()
        .find(|d| d.device_id == a.device_id && d.body["command_id"] == "c04")
        .unwrap();
    assert_eq!(refused.body["status"], 404);
    assert_eq!(refused.body["state"], "failed");
    // The API shows the webhook and its counts.
    let w = status_when(&srv, |w| w["delivered"] == 14 && w["pending"] == 0).await;
    assert_eq!(w["configured"], true);
    assert_eq!(w["url"], rx.url());
    assert_eq!(w["pending"], 0);
    assert_eq!(w["delivered"], 14);
    assert!(w["failed"].as_u64().unwrap() >= 4);
    assert!(!w.to_string().contains(SECRET));
    // The same counts in the Prometheus metrics (every failed attempt here was retried).
    let r = srv
        .client()
        .request(
            "GET",
            "/metrics",
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let value = |line: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line} in {text}"))
    };
    assert_eq!(
        value("winmdm_webhook_deliveries_total{outcome=\"delivered\"}"),
        14
    );
    assert_eq!(
        value("winmdm_webhook_deliveries_total{outcome=\"retry\"}"),
        w["failed"].as_u64().unwrap()
    );
    assert_eq!(
        value("winmdm_webhook_deliveries_total{outcome=\"dead_letter\"}"),
        0
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_then_absent_receiver_delays_events_but_never_a_session_and_loses_nothing() {
    let mut rx = Receiver::start(SECRET.as_bytes()).await;
    rx.mode.store(HANG, std::sync::atomic::Ordering::SeqCst);
    let (srv, _ca) = server(&rx, |_| {}).await;
    let mut d = enrolled(&srv, 3).await;
    for i in 0..5 {
        queue(
            &srv,
            &d.device_id,
            json!({"verb": "Replace", "target": format!("./Vendor/MSFT/Test/H{i}"), "format": "int", "data": "1", "command_id": format!("h{i:02}")}),
        )
        .await;
    }
    // The deliverer is stuck on the enrollment event (the receiver never answers): sessions
    // still answer at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    assert_eq!(d.session().await.len(), 5);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "session took {took:?}");
    // The receiver goes away entirely (connections refused), then comes back.
    rx.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, w) = srv.admin("GET", "/api/v1/webhook", None).await;
    assert_eq!(w["pending"], 6, "{w}");
    assert!(rx.accepted().is_empty());
    rx.mode.store(OK, std::sync::atomic::Ordering::SeqCst);
    rx.restart().await;
    // Backoff: at most a few seconds after the last failure (2^n capped, jittered).
    rx.wait_for(
        Duration::from_secs(60),
        "6 events after the outage",
        |acc| acc.len() == 6,
    )
    .await;
    assert_eq!(sequence(&rx.accepted(), &d.device_id), expected(5, "h"));
    let w = status_when(&srv, |w| w["pending"] == 0).await;
    assert!(w["failed"].as_u64().unwrap() >= 1, "{w}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_redelivered_and_deleted() {
    let rx = Receiver::start(SECRET.as_bytes()).await;
    rx.mode.store(FAIL, std::sync::atomic::Ordering::SeqCst);
    let (srv, _ca) = server(&rx, |o| o.webhook_max_attempts = Some(2)).await;
    let mut d = enrolled(&srv, 4).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Replace", "target": "./Vendor/MSFT/Test/D", "format": "int", "data": "1", "command_id": "d00"}),
    )
    .await;
    d.session().await;
    // The device leaves management by itself (unenroll alert).
    d.session_with(r#"<Alert><CmdID>5</CmdID><Data>1226</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft:mdm.unenrollment.userrequest</Type><Format xmlns="syncml:metinf">int</Format></Meta><Data>1</Data></Item></Alert>"#).await;
    // Each of the three events fails twice and is dead-lettered, which unblocks the next.
    let start = Instant::now();
    let dead = loop {
        let (st, v) = srv
            .admin("GET", "/api/v1/webhook/dead-letters?limit=10", None)
            .await;
        assert_eq!(st, 200, "{v}");
        let list = v["dead_letters"].as_array().unwrap().clone();
        if list.len() == 3 {
            break list;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Listed by event id: creation time (to the second), then random.
    let mut types: Vec<&str> = dead.iter().map(|e| e["type"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(
        types,
        ["command.completed", "device.enrolled", "device.unenrolled"]
    );
    let of = |t: &str| dead.iter().find(|e| e["type"] == t).unwrap().clone();
    let dead = [
        of("device.enrolled"),
        of("command.completed"),
        of("device.unenrolled"),
    ];
    for e in &dead {
        assert_eq!(e["attempts"], 2, "{e}");
        assert!(
            e["dead_reason"].as_str().unwrap().contains("HTTP 503"),
            "{e}"
        );
        assert_eq!(e["body"]["event_id"], e["event_id"]);
    }
    assert_eq!(dead[2]["body"]["reason"], "user_request");
    assert_eq!(rx.deliveries().len(), 6);
    let id0 = dead[0]["event_id"].as_str().unwrap();
    let id1 = dead[1]["event_id"].as_str().unwrap();
    let (st, one) = srv
        .admin("GET", &format!("/api/v1/webhook/dead-letters/{id0}"), None)
        .await;
    assert_eq!((st, &one["event_id"]), (200, &dead[0]["event_id"]));
    // Redeliver one once the receiver works again: the same event id and body arrive.
    rx.mode.store(OK, std::sync::atomic::Ordering::SeqCst);
    let (st, v) = srv
        .admin(
            "POST",
            &format!("/api/v1/webhook/dead-letters/{id1}/redeliver"),
            None,
        )
        .await;
    assert_eq!(st, 202, "{v}");
    rx.wait_for(Duration::from_secs(30), "the redelivered event", |acc| {
        acc.len() == 1
    })
    .await;
    let got = &rx.accepted()[0];
    assert_eq!(got.event_id, id1);
    let failed_first = rx
        .deliveries()
        .into_iter()
        .find(|x| x.event_id == id1)
        .unwrap();
    assert_eq!(got.raw, failed_first.raw);
    assert!(got.verified);
    // Delete another; both are gone from the list, unknown ids are 404.
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/webhook/dead-letters/{id0}"),
            None,
        )
        .await;
    assert_eq!(st, 204);
    for (m, p) in [
        ("DELETE", format!("/api/v1/webhook/dead-letters/{id0}")),
        (
            "POST",
            format!("/api/v1/webhook/dead-letters/{id1}/redeliver"),
        ),
        ("GET", "/api/v1/webhook/dead-letters/not-an-id".to_string()),
    ] {
        let (st, _) = srv.admin(m, &p, None).await;
        assert_eq!(st, 404, "{m} {p}");
    }
    let (_, v) = srv.admin("GET", "/api/v1/webhook/dead-letters", None).await;
    assert_eq!(v["dead_letters"].as_array().unwrap().len(), 1);
    // Both changes are in the audit log.
    let (_, audit) = srv.admin("GET", "/api/v1/audit", None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"webhook.redeliver"), "{actions:?}");
    assert!(
        actions.contains(&"webhook.dead_letter.delete"),
        "{actions:?}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webhook_nothing_is_recorded() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 5).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Replace", "target": "./Vendor/MSFT/Test/X", "format": "int", "data": "1", "command_id": "x"}),
    )
    .await;
    d.session().await;
    let (st, w) = srv.admin("GET", "/api/v1/webhook", None).await;
    assert_eq!(st, 200);
    assert_eq!(w["configured"], false);
    assert_eq!(w["pending"], 0);
    srv.stop().await;
}

/// The README's Python verification snippet, run as written against a request the server
/// signed, and against the same request with a wrong secret or a changed body.
#[test]
fn readme_verification_snippet_accepts_our_signature_only() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- webhook-verify-python -->")
        .expect("README marker <!-- webhook-verify-python -->");
    let block = &readme[start..];
    let code_start = block.find("```python\n").expect("python block") + "```python\n".len();
    let code_end = block[code_start..].find("```").unwrap() + code_start;
    let code = &block[code_start..code_end];
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if std::process::Command::new(&python)
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("WINMDM_REQUIRE_PYTHON").is_err(),
            "WINMDM_REQUIRE_PYTHON is set but {python} cannot run"
        );
        println!("SKIP readme_verification_snippet: no {python}");
        return;
    }
    let body = br#"{"event_id":"0065a1b2c3d4e5f60718293a4b5c6d7e","type":"command.completed","created_at":1733356800,"device_id":"D1","status":200}"#;
    let now = winmdm::clock::Clock::now_unix(&winmdm::clock::SystemClock);
    let header = winmdm::webhook::sign(SECRET.as_bytes(), now, body);
    let run = |secret: &str, header: &str, body: &[u8]| -> bool {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("verify.py");
        std::fs::write(
            &script,
            format!(
                "{code}\nimport sys\nbody = open(sys.argv[3], 'rb').read()\nprint('OK' if verify(sys.argv[1].encode(), sys.argv[2], body) else 'BAD')\n"
            ),
        )
        .unwrap();
        let body_path = dir.path().join("body.json");
        std::fs::write(&body_path, body).unwrap();
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(secret)
            .arg(header)
            .arg(&body_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        match String::from_utf8_lossy(&out.stdout).trim() {
            "OK" => true,
            "BAD" => false,
            other => panic!("snippet printed {other:?}"),
        }
    };
    assert!(run(SECRET, &header, body));
    assert!(!run("whsec-wrong-0123456789abcdef", &header, body));
    assert!(!run(SECRET, &header, br#"{"event_id":"tampered"}"#));
    let old = winmdm::webhook::sign(SECRET.as_bytes(), now - 3600, body);
    assert!(!run(SECRET, &old, body), "a stale timestamp is refused");

    // The openssl lines print the v1 value of a good signature.
    let start = readme
        .find("<!-- webhook-verify-shell -->")
        .expect("README marker <!-- webhook-verify-shell -->");
    let block = &readme[start..];
    let code_start = block.find("```sh\n").expect("sh block") + "```sh\n".len();
    let code_end = block[code_start..].find("```").unwrap() + code_start;
    let shell = &block[code_start..code_end];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body.json"), body).unwrap();
    std::fs::write(dir.path().join("webhook-secret"), SECRET).unwrap();
    let out = match std::process::Command::new("bash")
        .arg("-c")
        .arg(shell)
        .env("SIG", &header)
        .current_dir(dir.path())
        .output()
    {
        Ok(o) if o.status.success() => o,
        other => {
            assert!(
                std::env::var("WINMDM_REQUIRE_PYTHON").is_err(),
                "the README's openssl lines did not run: {other:?}"
            );
            println!("SKIP readme openssl lines: {other:?}");
            return;
        }
    };
    let v1 = header.split("v1=").nth(1).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), v1);
}

/// Two nodes on one PostgreSQL database: one delivers (the lease), the other none; when the
/// holder stops, the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_one_node_delivers_at_a_time_and_another_takes_over() {
    let Some(db) = crate::support::pg::TestDb::create("webhook on two nodes") else {
        return;
    };
    let rx = Receiver::start(SECRET.as_bytes()).await;
    let url = db.url.clone();
    let (a, _ca_a) = server(&rx, |o| o.database_url = Some(url.parse().unwrap())).await;
    let url = db.url.clone();
    let (b, _ca_b) = server(&rx, |o| o.database_url = Some(url.parse().unwrap())).await;
    let mut d = enrolled(&a, 60).await;
    for i in 0..8 {
        queue(
            &a,
            &d.device_id,
            json!({"verb": "Replace", "target": format!("./Vendor/MSFT/Test/P{i}"), "format": "int", "data": "1", "command_id": format!("p{i:02}")}),
        )
        .await;
    }
    assert_eq!(d.session().await.len(), 8);
    rx.wait_for(Duration::from_secs(60), "9 events", |acc| acc.len() == 9)
        .await;
    assert_eq!(sequence(&rx.accepted(), &d.device_id), expected(8, "p"));
    // The receiver logs a request before its answer reaches the node that counts it.
    let start = Instant::now();
    let (da, dbn) = loop {
        let (da, dbn) = (delivered(&a).await, delivered(&b).await);
        if da + dbn == 9 || start.elapsed() > Duration::from_secs(10) {
            break (da, dbn);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(da + dbn, 9, "a {da}, b {dbn}");
    assert!(da == 0 || dbn == 0, "both nodes delivered: a {da}, b {dbn}");
    assert_eq!(rx.deliveries().len(), 9, "no event sent twice");
    // The holder stops (releasing its lease); the other delivers what comes next.
    let (holder, other) = if da > 0 { (a, b) } else { (b, a) };
    holder.stop().await;
    let e = enrolled(&other, 61).await;
    rx.wait_for(Duration::from_secs(60), "the next enrollment", |acc| {
        acc.iter().any(|x| x.device_id == e.device_id)
    })
    .await;
    let start = Instant::now();
    while delivered(&other).await == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the remaining node never counted a delivery"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    other.stop().await;
}

async fn delivered(s: &TestServer) -> u64 {
    s.admin("GET", "/api/v1/webhook", None).await.1["delivered"]
        .as_u64()
        .unwrap()
}

/// `GET /api/v1/webhook` once `ready` holds for it (the receiver logs a request before its
/// answer reaches the node, which then counts it and removes the event): panics after 10 s.
async fn status_when(
    srv: &TestServer,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (st, w) = srv.admin("GET", "/api/v1/webhook", None).await;
        assert_eq!(st, 200, "{w}");
        if ready(&w) {
            return w;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{w}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
