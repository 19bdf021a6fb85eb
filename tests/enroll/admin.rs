//! The admin API as an admin sees it: the token, users, and device listing.

use crate::support::device::{self, DeviceInfo};
use crate::support::{TestServer, ADMIN_TOKEN};
use serde_json::json;

#[tokio::test]
async fn every_admin_route_needs_the_token() {
    let srv = TestServer::start().await;
    let c = srv.client();
    for (m, p) in [
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("DELETE", "/api/v1/users/a"),
        ("GET", "/api/v1/devices"),
        ("GET", "/api/v1/devices/x"),
        ("GET", "/api/v1/nope"),
    ] {
        let (st, body) = c
            .admin(m, p, Some(json!({"upn": "x@y.z", "password": "p"})), None)
            .await;
        assert_eq!(st, 401, "{m} {p} without token: {body}");
        let (st, _) = c
            .admin(
                m,
                p,
                Some(json!({"upn": "x@y.z", "password": "p"})),
                Some("wrong-token"),
            )
            .await;
        assert_eq!(st, 401, "{m} {p} with a wrong token");
    }
    let r = c
        .request(
            "GET",
            "/api/v1/users",
            &[("authorization", "Basic Zm9vOmJhcg==")],
            vec![],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert!(
        srv.app.store.list_users().unwrap().is_empty(),
        "nothing was created"
    );
    srv.stop().await;
}

#[tokio::test]
async fn users_crud_with_conflicts_and_validation() {
    let srv = TestServer::start().await;
    let (st, u) = srv
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"upn": "Frank@Example.com", "password": "pw-frank"})),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(u["upn"], "frank@example.com");
    assert!(
        u.get("password_hash").is_none() && u.get("password").is_none(),
        "no secrets in answers"
    );
    let (st, _) = srv
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"upn": "frank@example.com", "password": "x"})),
        )
        .await;
    assert_eq!(st, 409);
    let stored = srv
        .app
        .store
        .get_user("frank@example.com")
        .unwrap()
        .unwrap();
    assert!(
        stored.password_hash.starts_with("$argon2id$"),
        "argon2id hash stored"
    );
    assert!(!stored.password_hash.contains("pw-frank"));
    for bad in [
        json!({"upn": "", "password": "x"}),
        json!({"upn": "a b", "password": "x"}),
        json!({"upn": "g@x", "password": ""}),
        json!({"upn": "g@x"}),
        json!({"upn": "g@x", "password": "x", "role": "root"}),
        json!([1, 2]),
    ] {
        let (st, body) = srv.admin("POST", "/api/v1/users", Some(bad.clone())).await;
        assert_eq!(st, 400, "{bad} → {body}");
        assert!(body["error"].is_string());
    }
    let r = srv
        .client()
        .request(
            "POST",
            "/api/v1/users",
            &[
                ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
                ("content-type", "application/json"),
            ],
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400);
    let (st, list) = srv.admin("GET", "/api/v1/users", None).await;
    assert_eq!(st, 200);
    assert_eq!(list["users"].as_array().unwrap().len(), 1);
    let (st, _) = srv
        .admin("DELETE", "/api/v1/users/frank%40example.com", None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = srv
        .admin("DELETE", "/api/v1/users/frank@example.com", None)
        .await;
    assert_eq!(st, 404);
    let (st, _) = srv.admin("PATCH", "/api/v1/users", None).await;
    assert_eq!(st, 405);
    srv.stop().await;
}

#[tokio::test]
async fn deleted_user_can_no_longer_enroll() {
    let srv = TestServer::start().await;
    srv.create_user("gina@example.com", "pw-gina-1").await;
    let (st, _) = srv
        .admin("DELETE", "/api/v1/users/gina@example.com", None)
        .await;
    assert_eq!(st, 204);
    let info = DeviceInfo::new(20, "gina@example.com", "pw-gina-1");
    let (csr, _) =
        winmdm::ca::testing::device_csr(&info.device_id, winmdm::ca::KeyAlgorithm::Rsa2048);
    let r = device::send_rst(
        &srv.client(),
        "/EnrollmentServer/Enrollment.svc",
        &info,
        &csr,
    )
    .await;
    assert_eq!(
        device::fault_subcode(&r.text()).as_deref(),
        Some("s:Authentication")
    );
    srv.stop().await;
}

#[tokio::test]
async fn devices_are_listed_page_by_page() {
    let srv = TestServer::start().await;
    srv.create_user("hank@example.com", "pw-hank-1").await;
    let c = srv.client();
    let mut ids = Vec::new();
    for n in 0..5 {
        let info = DeviceInfo::new(100 + n, "hank@example.com", "pw-hank-1");
        device::enroll(&c, &info).await;
        ids.push(info.device_id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/devices?limit=2&cursor={c}"),
            None => "/api/v1/devices?limit=2".into(),
        };
        let (st, page) = srv.admin("GET", &q, None).await;
        assert_eq!(st, 200, "{page}");
        let devs = page["devices"].as_array().unwrap();
        assert!(devs.len() <= 2);
        seen.extend(
            devs.iter()
                .map(|d| d["device_id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every device once, in order");
    for bad in [
        "/api/v1/devices?limit=0",
        "/api/v1/devices?limit=100000",
        "/api/v1/devices?limit=x",
        "/api/v1/devices?colour=red",
    ] {
        let (st, _) = srv.admin("GET", bad, None).await;
        assert_eq!(st, 400, "{bad}");
    }
    let (st, body) = srv.admin("GET", "/api/v1/devices/UNKNOWN", None).await;
    assert_eq!(st, 404, "{body}");
    srv.stop().await;
}

#[tokio::test]
async fn admin_listen_moves_the_admin_api_off_the_device_listener() {
    crate::support::subscribe();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = winmdm::config::ServeOptions {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(tmp.path().to_path_buf()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let app = std::sync::Arc::new(winmdm::app::App::open(cfg, Some(ADMIN_TOKEN.into())).unwrap());
    let server = winmdm::http::Server::bind(app.clone()).await.unwrap();
    let (main, admin) = (server.local_addr().unwrap(), server.admin_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let root = app.ca.cert_der().to_vec();
    let on_main = crate::support::Client::new(main, root.clone(), None);
    let on_admin = crate::support::Client::new(admin, root, None);
    let (st, _) = on_main
        .admin("GET", "/api/v1/users", None, Some(ADMIN_TOKEN))
        .await;
    assert_eq!(st, 404, "admin API must not be on the device listener");
    let (st, body) = on_admin
        .admin("GET", "/api/v1/users", None, Some(ADMIN_TOKEN))
        .await;
    assert_eq!(st, 200, "{body}");
    let r = on_admin
        .request("GET", "/EnrollmentServer/Discovery.svc", &[], vec![])
        .await;
    assert_eq!(
        r.status, 404,
        "device endpoints are not on the admin listener"
    );
    let r = on_main
        .request("GET", "/EnrollmentServer/Discovery.svc", &[], vec![])
        .await;
    assert_eq!(r.status, 200);
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn devices_can_be_filtered() {
    let srv = TestServer::start().await;
    srv.create_user("kim@example.com", "pw-kim-123").await;
    srv.create_user("lee@example.com", "pw-lee-123").await;
    let c = srv.client();
    let kim1 = DeviceInfo::new(200, "kim@example.com", "pw-kim-123");
    let mut kim2 = DeviceInfo::new(201, "kim@example.com", "pw-kim-123");
    kim2.enrollment_type = "Device";
    let lee = DeviceInfo::new(202, "lee@example.com", "pw-lee-123");
    for i in [&kim1, &kim2, &lee] {
        device::enroll(&c, i).await;
    }
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, p) = srv
        .admin("GET", "/api/v1/devices?user=KIM%40example.com", None)
        .await;
    assert_eq!(
        ids(&p),
        vec![kim1.device_id.clone(), kim2.device_id.clone()]
    );
    let (_, p) = srv
        .admin("GET", "/api/v1/devices?enrollment_type=device", None)
        .await;
    assert_eq!(ids(&p), vec![kim2.device_id.clone()]);
    let (_, p) = srv.admin("GET", "/api/v1/devices?user=lee%40example.com&state=enrolled&device_type=CIMClient_Windows&os_edition=72", None).await;
    assert_eq!(ids(&p), vec![lee.device_id.clone()]);
    let (_, p) = srv
        .admin("GET", "/api/v1/devices?state=unenrolled", None)
        .await;
    assert!(ids(&p).is_empty());
    // Never-seen devices count as "last seen before" any time, and not as "seen after".
    let (_, p) = srv
        .admin("GET", "/api/v1/devices?last_seen_before=4000000000", None)
        .await;
    assert_eq!(ids(&p).len(), 3);
    let (_, p) = srv
        .admin("GET", "/api/v1/devices?last_seen_after=0", None)
        .await;
    assert!(ids(&p).is_empty());
    // Paging through a filter visits each match once.
    let (_, p1) = srv
        .admin(
            "GET",
            "/api/v1/devices?user=kim%40example.com&limit=1",
            None,
        )
        .await;
    let next = p1["next"].as_str().unwrap().to_string();
    let (_, p2) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices?user=kim%40example.com&limit=1&cursor={next}"),
            None,
        )
        .await;
    assert_eq!(
        [ids(&p1), ids(&p2)].concat(),
        vec![kim1.device_id.clone(), kim2.device_id.clone()]
    );
    for bad in ["state=gone", "last_seen_after=yesterday", "colour=red"] {
        let (st, _) = srv
            .admin("GET", &format!("/api/v1/devices?{bad}"), None)
            .await;
        assert_eq!(st, 400, "{bad}");
    }
    srv.stop().await;
}
