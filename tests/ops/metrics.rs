//! `GET /metrics`: the counters an enrollment and a management session move, and who may scrape.

use std::time::Duration;

use serde_json::json;

use super::{must, value};
use crate::admin::make_token;
use crate::support::{TestServer, ADMIN_TOKEN};

async fn scrape_with(srv: &TestServer, token: Option<&str>) -> (u16, String, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let r = srv
        .client()
        .request("GET", "/metrics", &headers, Vec::new())
        .await;
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (r.status, ct, r.text())
}

async fn scrape(srv: &TestServer) -> String {
    let (st, _, body) = scrape_with(srv, Some(ADMIN_TOKEN)).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    body
}

#[tokio::test]
async fn a_scrape_after_an_enrollment_and_a_session_shows_the_counters_moved() {
    let srv = TestServer::start().await;
    srv.app.metrics.set_queue_stats_ttl(Duration::ZERO);
    let before = scrape(&srv).await;
    assert_eq!(
        value(&before, "winmdm_management_rounds_total{outcome=\"ok\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &before,
            "winmdm_queue_commands{verb=\"Replace\",state=\"pending\"}"
        ),
        Some(0.0)
    );

    // A refused enrollment request (garbage to discovery) and a real enrollment.
    let r = srv
        .client()
        .soap("/EnrollmentServer/Discovery.svc", b"not xml")
        .await;
    assert_eq!(r.status, 500);
    let mut dev = crate::manage::enrolled(&srv, 1).await;
    let id = dev.device_id.clone();
    for cmd in [
        json!({"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/Camera/AllowCamera", "format": "int", "data": "0"}),
        json!({"verb": "Get", "target": "./DevDetail/SwV"}),
    ] {
        crate::manage::queue(&srv, &id, cmd).await;
    }
    let mid = scrape(&srv).await;
    for (series, want) in [
        ("winmdm_enrollment_requests_total{endpoint=\"discovery\",outcome=\"fault\",fault=\"MessageFormat\"}", 1.0),
        ("winmdm_enrollment_requests_total{endpoint=\"discovery\",outcome=\"ok\",fault=\"none\"}", 1.0),
        ("winmdm_enrollment_requests_total{endpoint=\"policy\",outcome=\"ok\",fault=\"none\"}", 1.0),
        ("winmdm_enrollment_requests_total{endpoint=\"enrollment\",outcome=\"ok\",fault=\"none\"}", 1.0),
        ("winmdm_commands_total{from=\"new\",to=\"pending\"}", 2.0),
        ("winmdm_queue_commands{verb=\"Replace\",state=\"pending\"}", 1.0),
        ("winmdm_queue_commands{verb=\"Get\",state=\"pending\"}", 1.0),
        ("winmdm_queue_stats_complete", 1.0),
    ] {
        assert_eq!(must(&mid, series), want, "{series}");
    }
    assert!(must(&mid, "winmdm_password_checks_total{result=\"verified\"}") >= 1.0);
    assert!(must(&mid, "winmdm_queue_oldest_pending_age_seconds") >= 0.0);
    assert_eq!(must(&mid, "winmdm_password_checks_running"), 0.0);

    // Not TLS at all on the main listener: a handshake failure, by reason.
    {
        use tokio::io::AsyncWriteExt;
        let mut t = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        t.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let _ = tokio::io::AsyncReadExt::read(&mut t, &mut buf).await;
    }
    let received = dev.session().await;
    assert_eq!(received.len(), 2, "both commands delivered");
    let after = scrape(&srv).await;
    let rounds = must(&after, "winmdm_management_rounds_total{outcome=\"ok\"}");
    assert!(
        rounds >= 2.0,
        "a session of at least two messages: {rounds}"
    );
    assert_eq!(
        must(&after, "winmdm_management_round_duration_seconds_count"),
        rounds
    );
    for (series, want) in [
        ("winmdm_management_sessions_started_total", 1.0),
        (
            "winmdm_management_sessions_ended_total{outcome=\"completed\"}",
            1.0,
        ),
        ("winmdm_commands_total{from=\"pending\",to=\"sent\"}", 2.0),
        ("winmdm_commands_total{from=\"sent\",to=\"done\"}", 2.0),
        (
            "winmdm_queue_commands{verb=\"Replace\",state=\"pending\"}",
            0.0,
        ),
        ("winmdm_queue_commands{verb=\"Get\",state=\"sent\"}", 0.0),
        ("winmdm_queue_oldest_pending_age_seconds", 0.0),
    ] {
        assert_eq!(must(&after, series), want, "{series}");
    }
    assert!(
        must(
            &after,
            "winmdm_tls_handshakes_total{listener=\"management\"}"
        ) >= 1.0
    );
    assert_eq!(
        must(
            &after,
            "winmdm_tls_handshake_failures_total{listener=\"main\",reason=\"protocol\"}"
        ),
        1.0
    );
    assert!(
        must(
            &after,
            "winmdm_store_operation_duration_seconds_count{op=\"commit_round\"}"
        ) >= rounds
    );
    if srv.app.cfg.database_url.is_none() {
        // The embedded store's group commits (absent on PostgreSQL).
        assert!(must(&after, "winmdm_store_commits_total") >= 1.0);
        assert!(must(&after, "winmdm_store_commit_batch_size_count") >= 1.0);
    }
    assert!(after.contains(&format!(
        "winmdm_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
}

#[tokio::test]
async fn a_scrape_without_a_token_is_refused_and_each_role_behaves_as_documented() {
    let srv = TestServer::start().await;
    let prom = make_token(&srv, "prometheus", "metrics").await;
    let ro = make_token(&srv, "auditor", "read-only").await;
    // No token, a garbage token, a wrong secret: 401 with the Bearer challenge, no metrics.
    let (name, _) = prom.rsplit_once('_').unwrap();
    let wrong = format!("{name}_{}", "0".repeat(64));
    for t in [None, Some("garbage"), Some(wrong.as_str())] {
        let (st, _, body) = scrape_with(&srv, t).await;
        assert_eq!(st, 401, "{t:?}: {body}");
        assert!(!body.contains("winmdm_"), "{body}");
    }
    // metrics, read-only and admin tokens may scrape.
    for t in [prom.as_str(), ro.as_str(), ADMIN_TOKEN] {
        let (st, ct, body) = scrape_with(&srv, Some(t)).await;
        assert_eq!(st, 200, "{body}");
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        assert!(body.contains("winmdm_management_rounds_total"));
    }
    // A metrics token opens nothing else.
    let c = srv.client();
    for (m, p, body) in [
        ("GET", "/api/v1/devices", None),
        ("GET", "/api/v1/openapi.json", None),
        (
            "POST",
            "/api/v1/users",
            Some(json!({"upn": "x@example.com", "password": "pw"})),
        ),
        (
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "mine", "role": "admin"})),
        ),
    ] {
        let (st, v) = c.admin(m, p, body, Some(&prom)).await;
        assert_eq!(st, 403, "{m} {p} with a metrics token: {v}");
    }
    let (st, v) = srv
        .admin("GET", "/api/v1/users/x%40example.com", None)
        .await;
    assert_eq!(st, 404, "nothing was created: {v}");
    // Only GET.
    let r = c
        .request(
            "POST",
            "/metrics",
            &[("authorization", &format!("Bearer {prom}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 405);
}
