//! Issue 5's admin surface: named tokens and roles over every route, invitations (landing page,
//! one-time use, e-mail), bulk-enrollment packages end to end, the device detail summary, the
//! CLI for all of it, and the error paths of every body-taking route.

mod bulk;
mod cli;
mod invitations;
mod tokens;

use serde_json::{json, Value};

use crate::support::{TestServer, ADMIN_TOKEN};

/// Creates a named token with the bootstrap token; returns the bearer string.
pub async fn make_token(srv: &TestServer, name: &str, role: &str) -> String {
    let (st, v) = srv
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": name, "role": role})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    v["token"].as_str().expect("token").to_string()
}

/// The audit log's entries (first 1000).
pub async fn audit(srv: &TestServer) -> Vec<Value> {
    let (st, v) = srv.admin("GET", "/api/v1/audit?limit=1000", None).await;
    assert_eq!(st, 200, "{v}");
    v["entries"].as_array().cloned().unwrap_or_default()
}

/// A raw request with the bootstrap token and a given body.
pub async fn raw(srv: &TestServer, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let r = srv
        .client()
        .request(
            method,
            path,
            &[
                ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
                ("content-type", "application/json"),
            ],
            body.to_vec(),
        )
        .await;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

#[tokio::test]
async fn device_detail_summarises_the_queue_and_the_certificate() {
    let srv = TestServer::start().await;
    let mut d = crate::manage::enrolled(&srv, 501).await;
    let id = d.device_id.clone();
    let (st, v) = srv
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["queue"],
        json!({"pending": 0, "sent": 0, "done": 0, "failed": 0, "not_applied": 0, "oldest_pending_at": null})
    );
    assert_eq!(v["certificate"]["serial"], v["cert_serial"]);
    assert_eq!(v["certificate"]["thumbprint"], v["cert_thumbprint"]);
    assert_eq!(v["certificate"]["not_after"], v["cert_not_after"]);
    assert!(v["certificate"]["issued_at"].is_number());
    assert!(v["certificate"]["revoked_at"].is_null());
    assert!(v["login_status"].is_null(), "no session yet: {v}");

    for (cid, target) in [
        ("a", "./DevDetail/SwV"),
        ("b", "./DevInfo/Man"),
        ("c", "./Vendor/MSFT/Policy/Config/Camera/AllowCamera"),
    ] {
        crate::manage::queue(
            &srv,
            &id,
            json!({"verb": "Get", "target": target, "command_id": cid}),
        )
        .await;
    }
    let (_, v) = srv
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(v["queue"]["pending"], 3, "{v}");
    let oldest = v["queue"]["oldest_pending_at"].as_i64().expect("oldest");
    let cmds = crate::manage::commands(&srv, &id).await;
    let min = cmds.iter().filter_map(|c| c["created_at"].as_i64()).min();
    assert_eq!(Some(oldest), min);

    d.status_for
        .insert("./Vendor/MSFT/Policy/Config/Camera/AllowCamera".into(), 404);
    d.session().await;
    let (_, v) = srv
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(
        v["queue"],
        json!({"pending": 0, "sent": 0, "done": 2, "failed": 1, "not_applied": 0, "oldest_pending_at": null}),
        "{v}"
    );
    assert_eq!(v["login_status"], "user");

    // A cancelled command is not counted; a deleted device's certificate shows as revoked only
    // through the CA (the device record is gone: 404).
    crate::manage::queue(
        &srv,
        &id,
        json!({"verb": "Get", "target": "./DevDetail/SwV"}),
    )
    .await;
    let (_, v) = srv
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(v["queue"]["pending"], 1);
    srv.admin("DELETE", &format!("/api/v1/devices/{id}/commands"), None)
        .await;
    let (_, v) = srv
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(v["queue"]["pending"], 0);
    assert_eq!(v["queue"]["done"], 2);
    let (st, _) = srv
        .admin("GET", "/api/v1/devices/no-such-device", None)
        .await;
    assert_eq!(st, 404);
    srv.stop().await;
}

/// Every route with an id in its path answers 404 `{"error"}` for an unknown id (with an otherwise
/// valid request), and changes nothing.
#[tokio::test]
async fn every_route_with_an_id_answers_404_for_an_unknown_one() {
    let srv = TestServer::start().await;
    srv.create_user("known@example.com", "pw-known-1").await;
    let d = crate::manage::enrolled(&srv, 503).await;
    let before = audit(&srv).await.len();
    let mut checked = 0;
    for (m, t) in winmdm::admin::ROUTES {
        if !t.contains('{') {
            continue;
        }
        let body = match (*m, *t) {
            ("PATCH", t)
                if t.starts_with("/api/v1/groups") || t.starts_with("/api/v1/profiles") =>
            {
                Some(json!({"description": "x"}))
            }
            ("POST", "/api/v1/tenant/groups/{group_id}/members") => {
                Some(json!({"devices": ["NO-SUCH-SERIAL"]}))
            }
            ("POST" | "DELETE", t) if t.ends_with("/members") => {
                Some(json!({"device_ids": ["no-such-device"]}))
            }
            ("POST", t) if t.ends_with("/assignments") => {
                Some(json!({"group_id": "no-such-group"}))
            }
            ("PATCH", t) if t.starts_with("/api/v1/autopilot/devices") => {
                Some(json!({"group_tag": "x"}))
            }
            ("PATCH", _) => Some(json!({"disabled": true})),
            ("POST", t) if t.ends_with("/actions") => Some(json!({"action": "sync"})),
            ("POST", t) if t.ends_with("/commands") => {
                Some(json!({"verb": "Get", "target": "./DevDetail/SwV"}))
            }
            ("POST", t) if t.ends_with("/assign-user") => Some(json!({"upn": "known@example.com"})),
            ("PUT", t) if t.ends_with("/owner") => Some(json!({"upn": "known@example.com"})),
            ("PUT", t) if t.starts_with("/api/v1/autopilot/profiles") => Some(
                json!({"name": "p", "device_type": "windows-pc", "deployment_mode": "user-driven"}),
            ),
            ("PUT", "/api/v1/esp/{esp_id}") => Some(json!({"name": "e"})),
            ("PUT", _) => Some(json!({"require_network_in_oobe": true})),
            _ => None,
        };
        // Unknown device everywhere, and for the routes under a known device, an unknown child.
        let mut paths = vec![t
            .replace("{upn}", "nobody%40example.com")
            .replace("{device_id}", "no-such-device")
            .replace("{command_id}", "no-such-command")
            .replace("{action_id}", "no-such-action")
            .replace("{token_name}", "no-such-token")
            .replace("{invitation_id}", "inv-none")
            .replace("{package_id}", "00000000-0000-4000-8000-000000000000")
            .replace("{group_id}", "no-such-group")
            .replace("{profile_id}", "no-such-profile")
            .replace("{profile}", "no-such-profile")
            .replace("{serial}", "NO-SUCH-SERIAL")
            .replace("{app_id}", "no-such-app")
            .replace("{esp_id}", "no-such-esp")];
        if t.contains("{command_id}") || t.contains("{action_id}") {
            paths.push(
                t.replace("{device_id}", &d.device_id)
                    .replace("{command_id}", "no-such-command")
                    .replace("{action_id}", "no-such-action"),
            );
        }
        for path in paths {
            let (st, v) = srv.admin(m, &path, body.clone()).await;
            assert_eq!(st, 404, "{m} {path}: {v}");
            assert!(v["error"].as_str().unwrap().contains("not found"), "{v}");
            checked += 1;
        }
    }
    assert!(checked >= 17, "{checked}");
    // A known user assigned to an unknown device, and an unknown user to a non-bulk device.
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/assign-user", d.device_id),
            Some(json!({"upn": "nobody@example.com"})),
        )
        .await;
    assert_eq!(st, 409, "the device is checked first: not bulk-enrolled");
    assert_eq!(audit(&srv).await.len(), before);
    srv.stop().await;
}

/// Every route that takes a JSON body: malformed JSON and unknown fields are 400 `{"error"}`,
/// wrong Content-Type is 400, and nothing is written to the audit log.
#[tokio::test]
async fn every_body_route_refuses_bad_json_and_unknown_fields() {
    let srv = TestServer::start().await;
    srv.create_user("body@example.com", "pw-body-1").await;
    let d = crate::manage::enrolled(&srv, 502).await;
    let id = d.device_id.as_str();
    let before = audit(&srv).await.len();
    let mut cases: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/api/v1/users".into(),
            json!({"upn": "x@y.z", "password": "p", "admin": true}),
        ),
        (
            "PATCH",
            "/api/v1/users/body@example.com".into(),
            json!({"disabled": true, "x": 1}),
        ),
        (
            "POST",
            format!("/api/v1/devices/{id}/actions"),
            json!({"action": "sync", "x": 1}),
        ),
        (
            "POST",
            format!("/api/v1/devices/{id}/commands"),
            json!({"verb": "Get", "target": "./DevDetail/SwV", "x": 1}),
        ),
        (
            "POST",
            "/api/v1/commands".into(),
            json!({"device_ids": [id], "verb": "Get", "target": "./DevDetail/SwV", "x": 1}),
        ),
        (
            "PUT",
            format!("/api/v1/devices/{id}/tenant-lockdown"),
            json!({"require_network_in_oobe": true, "x": 1}),
        ),
        (
            "POST",
            format!("/api/v1/devices/{id}/assign-user"),
            json!({"upn": "body@example.com", "x": 1}),
        ),
        (
            "POST",
            "/api/v1/tokens".into(),
            json!({"name": "t1", "role": "admin", "x": 1}),
        ),
        (
            "POST",
            "/api/v1/invitations".into(),
            json!({"upn": "body@example.com", "x": 1}),
        ),
        (
            "POST",
            "/api/v1/groups".into(),
            json!({"name": "g", "x": 1}),
        ),
        (
            "PATCH",
            "/api/v1/groups/no-such-group".into(),
            json!({"name": "g", "x": 1}),
        ),
        (
            "POST",
            "/api/v1/groups/no-such-group/members".into(),
            json!({"device_ids": [], "x": 1}),
        ),
        (
            "POST",
            "/api/v1/profiles".into(),
            json!({"name": "p", "settings": [], "x": 1}),
        ),
        (
            "PATCH",
            "/api/v1/profiles/no-such-profile".into(),
            json!({"description": "p", "x": 1}),
        ),
        (
            "POST",
            "/api/v1/profiles/no-such-profile/assignments".into(),
            json!({"group_id": "g", "x": 1}),
        ),
    ];
    cases.extend([
        (
            "POST",
            "/api/v1/autopilot/profiles".into(),
            json!({"name": "p", "device_type": "windows-pc", "deployment_mode": "user-driven", "x": 1}),
        ),
        (
            "PUT",
            "/api/v1/autopilot/profiles/nope".into(),
            json!({"name": "p", "device_type": "windows-pc", "deployment_mode": "user-driven", "x": 1}),
        ),
        (
            "PUT",
            "/api/v1/autopilot/settings".into(),
            json!({"tenant_lockdown": true, "x": 1}),
        ),
        (
            "PATCH",
            "/api/v1/autopilot/devices/NOPE".into(),
            json!({"group_tag": "t", "x": 1}),
        ),
        ("POST", "/api/v1/backup".into(), json!({"x": 1})),
        (
            "POST",
            "/api/v1/apps".into(),
            json!({"name": "a", "url": "https://x.example/a.msi", "sha256": "ab", "x": 1}),
        ),
        (
            "POST",
            "/api/v1/apps/nope/assignments".into(),
            json!({"group_id": "g", "x": 1}),
        ),
        ("POST", "/api/v1/esp".into(), json!({"name": "e", "x": 1})),
        ("PUT", "/api/v1/esp/nope".into(), json!({"name": "e", "x": 1})),
        (
            "POST",
            "/api/v1/esp/nope/assignments".into(),
            json!({"group_id": "g", "x": 1}),
        ),
        (
            "POST",
            "/api/v1/devices/no-such-device/trace".into(),
            json!({"minutes": 5, "x": 1}),
        ),
        (
            "POST",
            "/api/v1/groups/no-such-group/trace".into(),
            json!({"minutes": 5, "x": 1}),
        ),
        (
            "POST",
            "/api/v1/users/nobody@example.com/trace".into(),
            json!({"enrollments": 1, "x": 1}),
        ),
        (
            "PUT",
            "/api/v1/tenant".into(),
            json!({"tenant_id": "11111111-2222-4333-8444-555555555555", "client_id": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "client_secret": "s", "x": 1}),
        ),
        (
            "POST",
            "/api/v1/tenant/groups".into(),
            json!({"name": "g", "group_tag": "t", "x": 1}),
        ),
        (
            "POST",
            "/api/v1/tenant/groups/no-such-group/members".into(),
            json!({"devices": ["S"], "x": 1}),
        ),
        (
            "POST",
            "/api/v1/tenant/profiles/nope/assignments".into(),
            json!({"group_id": "all-devices", "x": 1}),
        ),
    ]);
    // Routes that take no JSON body: push, a dead letter's redelivery and a tenant sync have
    // none, the Autopilot import takes the CSV file itself (its refusals are in
    // `autopilot::import_good_and_bad_rows_in_powershell_utf16`).
    let bodyless = [
        "/api/v1/profiles/{profile_id}/push",
        "/api/v1/autopilot/devices",
        "/api/v1/webhook/dead-letters/{event_id}/redeliver",
        // The MSI file itself (refusals in `apps::upload_refuses_what_is_not_an_msi_and_reads_the_identity`).
        "/api/v1/apps/{app_id}/content",
        "/api/v1/tenant/sync",
    ];
    // Every body-taking route of ROUTES is in the table.
    for (m, t) in winmdm::admin::ROUTES {
        if matches!(*m, "POST" | "PUT" | "PATCH") && !bodyless.contains(t) {
            let prefix = t.split('{').next().unwrap();
            assert!(
                cases
                    .iter()
                    .any(|(cm, p, _)| cm == m && p.starts_with(prefix)),
                "{m} {t} has no bad-body case"
            );
        }
    }
    for (m, path, unknown) in &cases {
        let (st, v) = raw(&srv, m, path, b"{\"nope").await;
        assert_eq!(st, 400, "{m} {path} bad JSON: {v}");
        assert!(v["error"].is_string(), "{v}");
        let (st, v) = raw(&srv, m, path, b"[1,2]").await;
        assert_eq!(st, 400, "{m} {path} JSON array: {v}");
        let (st, v) = srv.admin(m, path, Some(unknown.clone())).await;
        assert_eq!(st, 400, "{m} {path} unknown field: {v}");
        assert!(v["error"].is_string(), "{v}");
        let r = srv
            .client()
            .request(
                m,
                path,
                &[
                    ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
                    ("content-type", "text/plain"),
                ],
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(r.status, 400, "{m} {path} text/plain");
    }
    assert_eq!(audit(&srv).await.len(), before, "refusals are not audited");
    srv.stop().await;
}
