//! Admin lifecycle: users (show, password change, disable), device deletion, device actions
//! (wipe, retire, …) followed through the fake device, and the audit log.

use serde_json::json;

use crate::manage::enrolled;
use crate::support::device::{self, DeviceInfo};
use crate::support::{TestServer, ADMIN_TOKEN};

async fn rst_fault(srv: &TestServer, n: u32, upn: &str, pw: &str) -> Option<String> {
    let info = DeviceInfo::new(n, upn, pw);
    let (csr, _) =
        winmdm::ca::testing::device_csr(&info.device_id, winmdm::ca::KeyAlgorithm::Rsa2048);
    let r = device::send_rst(
        &srv.client(),
        "/EnrollmentServer/Enrollment.svc",
        &info,
        &csr,
    )
    .await;
    device::fault_subcode(&r.text())
}

async fn action(srv: &TestServer, dev: &str, name: &str) -> (u16, serde_json::Value) {
    srv.admin(
        "POST",
        &format!("/api/v1/devices/{dev}/actions"),
        Some(json!({ "action": name })),
    )
    .await
}

async fn action_state(srv: &TestServer, dev: &str, id: &str) -> serde_json::Value {
    let (st, v) = srv
        .admin("GET", &format!("/api/v1/devices/{dev}/actions/{id}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

#[tokio::test]
async fn users_show_patch_password_disable_and_pages() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 61).await;
    let upn = "user61@example.com";
    let (st, u) = srv
        .admin("GET", "/api/v1/users/User61%40Example.com", None)
        .await;
    assert_eq!(st, 200, "{u}");
    assert_eq!(u["upn"], upn);
    assert_eq!(u["disabled"], false);
    assert_eq!(u["devices"], json!([d.device_id]));
    assert!(u.get("password_hash").is_none());
    let (st, _) = srv.admin("GET", "/api/v1/users/nobody@x.y", None).await;
    assert_eq!(st, 404);

    // Password change: the old password no longer enrolls, the new one does.
    let old_hash = srv.app.store.get_user(upn).unwrap().unwrap().password_hash;
    let (st, u) = srv
        .admin(
            "PATCH",
            &format!("/api/v1/users/{upn}"),
            Some(json!({"password": "new-pw-987"})),
        )
        .await;
    assert_eq!(st, 200, "{u}");
    let new_hash = srv.app.store.get_user(upn).unwrap().unwrap().password_hash;
    assert!(new_hash.starts_with("$argon2id$") && new_hash != old_hash);
    assert_eq!(
        rst_fault(&srv, 62, upn, "pw-123456").await.as_deref(),
        Some("s:Authentication")
    );
    device::enroll(&srv.client(), &DeviceInfo::new(63, upn, "new-pw-987")).await;

    // Disable: the right password gets s:Authorization; enable again: it enrolls.
    let (st, u) = srv
        .admin(
            "PATCH",
            &format!("/api/v1/users/{upn}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(u["disabled"], true);
    assert_eq!(
        rst_fault(&srv, 64, upn, "new-pw-987").await.as_deref(),
        Some("s:Authorization")
    );
    let (st, _) = srv
        .admin(
            "PATCH",
            &format!("/api/v1/users/{upn}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(st, 200);
    device::enroll(&srv.client(), &DeviceInfo::new(65, upn, "new-pw-987")).await;
    let (_, u) = srv
        .admin("GET", &format!("/api/v1/users/{upn}"), None)
        .await;
    assert_eq!(u["devices"].as_array().unwrap().len(), 3, "{u}");

    // Bad patches.
    for bad in [
        json!({}),
        json!({"password": ""}),
        json!({"disabled": "yes"}),
        json!({"password": "x", "role": "root"}),
    ] {
        let (st, body) = srv
            .admin("PATCH", &format!("/api/v1/users/{upn}"), Some(bad.clone()))
            .await;
        assert_eq!(st, 400, "{bad} → {body}");
    }
    let (st, _) = srv
        .admin(
            "PATCH",
            "/api/v1/users/nobody@x.y",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(st, 404);

    // Pagination of users: the old shape (key `users`) plus `next`.
    for i in 0..4 {
        srv.create_user(&format!("page{i}@example.com"), "pw-page-1")
            .await;
    }
    let (st, p1) = srv.admin("GET", "/api/v1/users?limit=2", None).await;
    assert_eq!(st, 200);
    assert_eq!(p1["users"].as_array().unwrap().len(), 2);
    let next = p1["next"].as_str().unwrap().to_string();
    let mut seen: Vec<String> = p1["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["upn"].as_str().unwrap().to_string())
        .collect();
    let mut cursor = Some(next);
    while let Some(c) = cursor {
        let (_, p) = srv
            .admin("GET", &format!("/api/v1/users?limit=2&cursor={c}"), None)
            .await;
        seen.extend(
            p["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["upn"].as_str().unwrap().to_string()),
        );
        cursor = p["next"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    let (_, all) = srv.admin("GET", "/api/v1/users", None).await;
    assert_eq!(all["users"].as_array().unwrap().len(), 5);
    assert!(all["next"].is_null());
    let (st, _) = srv.admin("GET", "/api/v1/users?limit=0", None).await;
    assert_eq!(st, 400);
    srv.stop().await;
}

#[tokio::test]
async fn wipe_reaches_the_device_and_follows_its_status_with_dedup() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 66).await;
    let id = d.device_id.clone();
    let (st, a) = action(&srv, &id, "wipe").await;
    assert_eq!(st, 202, "{a}");
    let wipe_id = a["action_id"].as_str().unwrap().to_string();
    assert!(wipe_id.starts_with("wipe-"), "{wipe_id}");
    assert!(a.get("existing").is_none());
    // A second wipe while the first is unanswered: the same action.
    let (st, again) = action(&srv, &id, "wipe").await;
    assert_eq!(st, 202);
    assert_eq!(again["action_id"], wipe_id.as_str());
    assert_eq!(again["existing"], true);
    // Non-destructive actions are not de-duplicated.
    let (_, s1) = action(&srv, &id, "sync").await;
    let (_, s2) = action(&srv, &id, "sync").await;
    assert_ne!(s1["action_id"], s2["action_id"]);
    let v = action_state(&srv, &id, &wipe_id).await;
    assert_eq!(v["state"], "pending");
    assert_eq!(v["action"], "wipe");
    assert!(v["status"].is_null() && v["completed_at"].is_null());

    let got = d.session().await;
    let wipes: Vec<_> = got.iter().filter(|c| c.verb == "Exec").collect();
    assert_eq!(wipes.len(), 1, "{got:?}");
    assert_eq!(
        wipes[0].target.as_deref(),
        Some("./Device/Vendor/MSFT/RemoteWipe/doWipe")
    );
    assert_eq!(wipes[0].format.as_deref(), Some("chr"));
    assert_eq!(wipes[0].data.as_deref(), Some("1"));
    assert_eq!(got.iter().filter(|c| c.verb == "Get").count(), 2);
    let v = action_state(&srv, &id, &wipe_id).await;
    assert_eq!(
        (v["state"].clone(), v["status"].clone()),
        (json!("done"), json!(200))
    );
    assert!(v["completed_at"].is_number() && v["created_at"].is_number());
    // Answered: a new wipe is a new action.
    let (_, a2) = action(&srv, &id, "wipe-protected").await;
    let wp = a2["action_id"].as_str().unwrap().to_string();
    assert!(wp.starts_with("wipe-protected-"));
    let (_, rb) = action(&srv, &id, "reboot").await;
    let rb = rb["action_id"].as_str().unwrap().to_string();
    d.status_for.insert(
        "./Device/Vendor/MSFT/RemoteWipe/doWipeProtected".into(),
        500,
    );
    let got = d.session().await;
    let targets: Vec<_> = got
        .iter()
        .map(|c| (c.target.clone().unwrap(), c.format.clone()))
        .collect();
    assert_eq!(
        targets,
        vec![
            (
                "./Device/Vendor/MSFT/RemoteWipe/doWipeProtected".to_string(),
                Some("chr".to_string())
            ),
            (
                "./Device/Vendor/MSFT/Reboot/RebootNow".to_string(),
                Some("null".to_string())
            ),
        ]
    );
    let v = action_state(&srv, &id, &wp).await;
    assert_eq!(
        (v["state"].clone(), v["status"].clone()),
        (json!("failed"), json!(500))
    );
    assert_eq!(action_state(&srv, &id, &rb).await["state"], "done");

    // Errors: unknown action, bad JSON, unknown field, unknown device / action.
    let (st, _) = action(&srv, &id, "format-c").await;
    assert_eq!(st, 400);
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{id}/actions"),
            Some(json!({"action": "wipe", "force": true})),
        )
        .await;
    assert_eq!(st, 400);
    let r = srv
        .client()
        .request(
            "POST",
            &format!("/api/v1/devices/{id}/actions"),
            &[
                ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
                ("content-type", "application/json"),
            ],
            b"{nope".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400);
    let (st, _) = action(&srv, "no-such-device", "wipe").await;
    assert_eq!(st, 404);
    let (st, _) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices/{id}/actions/wipe-00"),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = srv
        .admin(
            "GET",
            "/api/v1/devices/no-such-device/actions/wipe-00",
            None,
        )
        .await;
    assert_eq!(st, 404);
    srv.stop().await;
}

#[tokio::test]
async fn retire_then_the_unenroll_alert_unenrolls_and_further_actions_are_409() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 67).await;
    let id = d.device_id.clone();
    let (st, a) = action(&srv, &id, "retire").await;
    assert_eq!(st, 202);
    let rid = a["action_id"].as_str().unwrap().to_string();
    let (_, again) = action(&srv, &id, "retire").await;
    assert_eq!(again["action_id"], rid.as_str());
    let got = d.session().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].verb, "Exec");
    assert_eq!(
        got[0].target.as_deref(),
        Some("./Vendor/MSFT/DMClient/Provider/winmdm/Unenroll")
    );
    assert_eq!(got[0].format.as_deref(), Some("chr"));
    assert_eq!(action_state(&srv, &id, &rid).await["state"], "done");
    // The device then reports the user-requested unenrollment alert.
    let alert = r#"<Alert><CmdID>5</CmdID><Data>1226</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft:mdm.unenrollment.userrequest</Type><Format xmlns="syncml:metinf">int</Format></Meta><Data>1</Data></Item></Alert>"#;
    assert!(d.session_with(alert).await.is_empty());
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(dev["state"], "unenrolled");
    let serial = dev["cert_serial"].as_str().unwrap();
    assert!(srv
        .app
        .store
        .get_cert(serial)
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    let (st, body) = action(&srv, &id, "wipe").await;
    assert_eq!(st, 409, "{body}");
    srv.stop().await;
}

#[tokio::test]
async fn deleting_a_device_cancels_its_queue_revokes_and_locks_it_out() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 68).await;
    let other = enrolled(&srv, 69).await;
    let id = d.device_id.clone();
    assert!(d.session().await.is_empty());
    crate::manage::queue(
        &srv,
        &id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "q1"}),
    )
    .await;
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    let serial = dev["cert_serial"].as_str().unwrap().to_string();

    let (st, _) = srv
        .admin("DELETE", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = srv
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(st, 404);
    let (st, _) = srv
        .admin("DELETE", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(st, 404);
    assert!(srv.app.store.queued(&id).unwrap().is_empty(), "queue gone");
    assert_eq!(
        srv.app.store.get_command(&id, "q1").unwrap().unwrap().state,
        winmdm::store::CommandState::Cancelled
    );
    let c = srv.app.store.get_cert(&serial).unwrap().unwrap();
    assert!(c.revoked_at.is_some(), "certificate revoked");
    // Its certificate no longer opens a session.
    let r = d.post(&d.first_package(99, "")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let (st, _) = action(&srv, &id, "sync").await;
    assert_eq!(st, 404);
    // The other device is untouched.
    assert!(other.session_quiet().await);
    srv.stop().await;
}

#[tokio::test]
async fn audit_log_records_every_change_in_order() {
    let srv = TestServer::start().await;
    let (_, empty) = srv.admin("GET", "/api/v1/audit", None).await;
    assert_eq!(empty["entries"], json!([]));
    let d = enrolled(&srv, 70).await; // user.create
    let id = d.device_id.clone();
    srv.admin(
        "PATCH",
        "/api/v1/users/user70@example.com",
        Some(json!({"password": "another-pw-1"})),
    )
    .await; // user.update
    let cid = crate::manage::queue(
        &srv,
        &id,
        json!({"verb": "Get", "target": "./DevDetail/SwV"}),
    )
    .await; // command.enqueue
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/devices/{id}/commands/{cid}"),
            None,
        )
        .await; // command.cancel
    assert_eq!(st, 204);
    srv.admin("DELETE", &format!("/api/v1/devices/{id}/commands"), None)
        .await; // command.clear
    srv.admin(
        "POST",
        "/api/v1/commands",
        Some(json!({"device_ids": [id], "verb": "Get", "target": "./DevDetail/SwV"})),
    )
    .await; // command.bulk
    srv.admin(
        "PUT",
        &format!("/api/v1/devices/{id}/tenant-lockdown"),
        Some(json!({"require_network_in_oobe": true})),
    )
    .await; // device.tenant_lockdown
    action(&srv, &id, "wipe").await; // device.action
    action(&srv, &id, "wipe").await; // de-duplicated: no entry
    srv.admin("DELETE", &format!("/api/v1/devices/{id}"), None)
        .await; // device.delete
    srv.admin("DELETE", "/api/v1/users/user70@example.com", None)
        .await; // user.delete
                // Refused requests change nothing and log nothing.
    action(&srv, "nope", "wipe").await;
    srv.admin("DELETE", "/api/v1/users/user70@example.com", None)
        .await;

    let (st, log) = srv.admin("GET", "/api/v1/audit", None).await;
    assert_eq!(st, 200, "{log}");
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "user.create",
            "user.update",
            "command.enqueue",
            "command.cancel",
            "command.clear",
            "command.bulk",
            "device.tenant_lockdown",
            "device.action",
            "device.delete",
            "user.delete"
        ]
    );
    for e in entries {
        assert_eq!(e["actor"], "bootstrap");
        assert!(e["at"].is_number() && e["id"].is_number());
    }
    assert_eq!(entries[0]["target"], "user70@example.com");
    assert_eq!(entries[1]["detail"]["password_changed"], true);
    assert!(
        !log.to_string().contains("another-pw-1"),
        "no secrets in the log"
    );
    assert_eq!(entries[2]["target"], id.as_str());
    assert_eq!(entries[2]["detail"]["command_id"], cid.as_str());
    assert_eq!(entries[7]["detail"]["action"], "wipe");
    // Pages.
    let (_, p1) = srv.admin("GET", "/api/v1/audit?limit=4", None).await;
    assert_eq!(p1["entries"].as_array().unwrap().len(), 4);
    let next = p1["next"].as_str().unwrap();
    let (_, p2) = srv
        .admin(
            "GET",
            &format!("/api/v1/audit?limit=100&cursor={next}"),
            None,
        )
        .await;
    assert_eq!(p2["entries"].as_array().unwrap().len(), 6);
    assert_eq!(p2["entries"][0]["action"], "command.clear");
    assert!(p2["next"].is_null());
    let (st, _) = srv.admin("GET", "/api/v1/audit?cursor=abc", None).await;
    assert_eq!(st, 400);
    srv.stop().await;
}

#[tokio::test]
async fn new_routes_need_the_token() {
    let srv = TestServer::start().await;
    let c = srv.client();
    for (m, p) in [
        ("GET", "/api/v1/users/a@b.c"),
        ("PATCH", "/api/v1/users/a@b.c"),
        ("DELETE", "/api/v1/devices/x"),
        ("POST", "/api/v1/devices/x/actions"),
        ("GET", "/api/v1/devices/x/actions/wipe-00"),
        ("GET", "/api/v1/audit"),
    ] {
        let (st, body) = c.admin(m, p, Some(json!({"action": "wipe"})), None).await;
        assert_eq!(st, 401, "{m} {p}: {body}");
        let (st, _) = c
            .admin(m, p, Some(json!({"action": "wipe"})), Some("wrong"))
            .await;
        assert_eq!(st, 401, "{m} {p} wrong token");
    }
    let (st, _) = srv.admin("PUT", "/api/v1/audit", None).await;
    assert_eq!(st, 405);
    let (_, log) = srv.admin("GET", "/api/v1/audit", None).await;
    assert_eq!(log["entries"], json!([]));
    srv.stop().await;
}

/// Issue 5: a bulk account enrolls three devices; they refuse user-scoped commands; one is
/// assigned to a real user; a device enrolled by a normal user cannot be assigned.
#[tokio::test]
async fn bulk_account_enrolls_many_devices_that_take_device_scope_only() {
    use crate::support::device::{self, DeviceInfo};
    use serde_json::json;
    let srv = crate::support::TestServer::start().await;
    srv.create_user("windows-bulkenroll@contoso.com", "ppkg-secret-1")
        .await;
    srv.create_user("zoe@contoso.com", "pw-zoe-1234").await;
    let c = srv.client();
    let mut bulk = Vec::new();
    for n in 300..303 {
        let info = DeviceInfo::new(n, "windows-bulkenroll@contoso.com", "ppkg-secret-1");
        device::enroll(&c, &info).await;
        bulk.push(info.device_id);
    }
    let normal = DeviceInfo::new(303, "zoe@contoso.com", "pw-zoe-1234");
    device::enroll(&c, &normal).await;
    for id in &bulk {
        let (_, d) = srv
            .admin("GET", &format!("/api/v1/devices/{id}"), None)
            .await;
        assert_eq!(d["bulk"], true, "{d}");
        let (st, body) = srv
            .admin("POST", &format!("/api/v1/devices/{id}/commands"), Some(json!({"verb": "Replace", "target": "./User/Vendor/MSFT/Policy/Config/Start/HideSleep", "format": "int", "data": "1"})))
            .await;
        assert_eq!(st, 400, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("bulk-enrolled"),
            "{body}"
        );
        let (st, _) = srv
            .admin("POST", &format!("/api/v1/devices/{id}/commands"), Some(json!({"verb": "Replace", "target": "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera", "format": "int", "data": "0"})))
            .await;
        assert_eq!(st, 201, "device-scope commands are fine");
    }
    let (_, r) = srv
        .admin("POST", "/api/v1/commands", Some(json!({"device_ids": [bulk[0], normal.device_id], "verb": "Get", "target": "./User/Vendor/MSFT/Policy/Result/A/B"})))
        .await;
    assert!(r["results"][&bulk[0]]["error"].is_string(), "{r}");
    assert!(
        r["results"][&normal.device_id]["command_id"].is_string(),
        "{r}"
    );
    let (st, d) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/assign-user", bulk[1]),
            Some(json!({"upn": "Zoe@Contoso.com"})),
        )
        .await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["assigned_user"]["upn"], "zoe@contoso.com");
    assert_eq!(d["assigned_user"]["by"], "bootstrap");
    assert!(d["assigned_user"]["at"].is_number());
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/assign-user", normal.device_id),
            Some(json!({"upn": "zoe@contoso.com"})),
        )
        .await;
    assert_eq!(st, 409, "only bulk-enrolled devices can be assigned");
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/assign-user", bulk[2]),
            Some(json!({"upn": "nobody@contoso.com"})),
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/assign-user", bulk[2]),
            Some(json!({"upn": "zoe@contoso.com", "x": 1})),
        )
        .await;
    assert_eq!(st, 400);
    let (_, audit) = srv.admin("GET", "/api/v1/audit?limit=1000", None).await;
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "device.assign_user" && e["target"] == bulk[1].as_str()));
    srv.stop().await;
}
