//! Device groups, configuration profiles and the reconciler, end to end: the fake device enrolls,
//! joins groups (static, or dynamic through its attributes), receives the profiles assigned to
//! them in its sessions and the admin API shows each profile's status per device.

use serde_json::{json, Value};
use winmdm::groups::query::{parse, Query};

use crate::support::device::{self, DeviceInfo};
use crate::support::mdm_device::{ManagedDevice, Received};
use crate::support::TestServer;

async fn enroll_as(
    srv: &TestServer,
    n: u32,
    upn: &str,
    adjust: impl FnOnce(&mut DeviceInfo),
) -> ManagedDevice {
    let (st, _) = srv
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"upn": upn, "password": "pw-123456"})),
        )
        .await;
    assert!(st == 201 || st == 409);
    let mut info = DeviceInfo::new(n, upn, "pw-123456");
    adjust(&mut info);
    let e = device::enroll(&srv.client(), &info).await;
    ManagedDevice::new(srv, &e)
}

async fn ok(srv: &TestServer, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
    let (st, v) = srv.admin(method, path, body).await;
    assert_eq!(st, want, "{method} {path}: {v}");
    v
}

async fn group(srv: &TestServer, name: &str, query: Option<&str>) -> String {
    let mut b = json!({"name": name});
    if let Some(q) = query {
        b["query"] = q.into();
    }
    ok(srv, "POST", "/api/v1/groups", Some(b), 201).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn profile(srv: &TestServer, body: Value) -> String {
    ok(srv, "POST", "/api/v1/profiles", Some(body), 201).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn assign(srv: &TestServer, pid: &str, gid: &str) -> Value {
    ok(
        srv,
        "POST",
        &format!("/api/v1/profiles/{pid}/assignments"),
        Some(json!({"group_id": gid})),
        201,
    )
    .await
}

/// The status of profile `pid` on device `did`, from both status views (which must agree).
async fn status_of(srv: &TestServer, pid: &str, did: &str) -> Value {
    let v = ok(
        srv,
        "GET",
        &format!("/api/v1/devices/{did}/profiles"),
        None,
        200,
    )
    .await;
    let from_device = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["profile_id"] == pid)
        .cloned()
        .unwrap_or(Value::Null);
    let v = ok(
        srv,
        "GET",
        &format!("/api/v1/profiles/{pid}/status"),
        None,
        200,
    )
    .await;
    let from_profile = v["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["device_id"] == did)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(from_device, from_profile);
    from_device
}

fn targets(r: &[Received]) -> Vec<(String, String)> {
    r.iter()
        .map(|c| (c.verb.clone(), c.target.clone().unwrap_or_default()))
        .collect()
}

const CAMERA: &str = "./Vendor/MSFT/Policy/Config/Camera/AllowCamera";
const BT: &str = "./Vendor/MSFT/Policy/Config/Connectivity/AllowBluetooth";
const USER_START: &str = "./User/Vendor/MSFT/Policy/Config/Start/HideAppList";

#[test]
fn query_language_valid_invalid_and_precedence() {
    let d = winmdm::store::Device {
        device_id: "D".into(),
        os_edition: Some("135".into()),
        group_tag: Some("lab".into()),
        device_name: Some("HL-7".into()),
        ..Default::default()
    };
    let m = |q: &str| {
        Query::parse(q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .matches(&d)
    };
    assert!(m(r#"device_type == "hololens" and group_tag == "lab""#));
    assert!(m(
        r#"(device_type == "windows-pc" or group_tag == "lab") and name starts_with "hl-""#
    ));
    // `and` before `or`: (false and false) or true.
    assert!(m(
        r#"group_tag == "x" and group_tag == "y" or name contains "7""#
    ));
    // With parentheses the same words mean false and (false or true).
    assert!(!m(
        r#"group_tag == "x" and (group_tag == "y" or name contains "7")"#
    ));
    assert!(m(r#"not enrollment in ["bulk", "autopilot"]"#));
    assert!(m(r#"group_tag == "l\u{61}b" and user != "bob""#));
    for (q, col, needle) in [
        (r#"group_tag = "lab""#, 11, "expected `==`"),
        (r#"group_tag == 'lab'"#, 14, "unexpected character '\\''"),
        (r#"tag == "lab""#, 1, "unknown attribute `tag`"),
        (
            r#"group_tag "lab""#,
            11,
            "expected an operator after `group_tag`",
        ),
        (r#"group_tag == "lab" and"#, 23, "expected an attribute"),
        (r#"(group_tag == "lab""#, 20, "expected `)`"),
        (
            r#"enrollment == "manual""#,
            15,
            "expected one of \"user\", \"device\", \"bulk\", \"autopilot\"",
        ),
        (r#"group_tag in []"#, 15, "expected a string literal"),
        (
            r#"group_tag == "lab")"#,
            19,
            "expected `and`, `or` or end of query",
        ),
    ] {
        let e = parse(q).expect_err(q);
        assert_eq!(e.column, col, "{q}: {e}");
        assert!(e.message.contains(needle), "{q}: {e}");
    }
}

#[tokio::test]
async fn device_profile_arrives_in_the_first_session_and_is_applied_once() {
    let srv = TestServer::start().await;
    let all = group(&srv, "all pcs", Some(r#"device_type == "windows-pc""#)).await;
    let pid = profile(
        &srv,
        json!({"name": "camera off", "settings": [
            {"target": CAMERA, "format": "int", "data": "0"},
            {"target": BT, "format": "int", "data": "0"}
        ]}),
    )
    .await;
    let a = assign(&srv, &pid, &all).await;
    assert_eq!(a["devices"], 0, "nobody enrolled yet");

    let mut d = enroll_as(&srv, 1, "alice@example.com", |_| {}).await;
    let members = ok(
        &srv,
        "GET",
        &format!("/api/v1/groups/{all}/members"),
        None,
        200,
    )
    .await;
    assert_eq!(members["members"][0]["device_id"], d.device_id.as_str());
    assert_eq!(
        status_of(&srv, &pid, &d.device_id).await["status"],
        "pending"
    );

    let got = d.session().await;
    assert_eq!(
        targets(&got),
        vec![
            ("Replace".into(), CAMERA.into()),
            ("Replace".into(), BT.into())
        ]
    );
    assert_eq!(got[0].data.as_deref(), Some("0"));
    let st = status_of(&srv, &pid, &d.device_id).await;
    assert_eq!(st["status"], "applied", "{st}");
    assert_eq!(st["command_ids"][0], format!("profile-{pid}-v1-1"));
    // Applied means applied: neither another session nor another reconciliation sends it again.
    assert!(d.session().await.is_empty());
    let change = winmdm::groups::on_device_changed(&srv.app, &d.device_id).unwrap();
    assert_eq!(change.queued, 0);
    assert!(d.session().await.is_empty());

    // A re-push is a new version with new command ids.
    let v = ok(
        &srv,
        "POST",
        &format!("/api/v1/profiles/{pid}/push"),
        None,
        200,
    )
    .await;
    assert_eq!(v["version"], 2);
    assert_eq!(v["reconciled"]["queued"], 2);
    assert_eq!(
        status_of(&srv, &pid, &d.device_id).await["status"],
        "pending"
    );
    assert_eq!(d.session().await.len(), 2);
    let st = status_of(&srv, &pid, &d.device_id).await;
    assert_eq!(
        (st["status"].as_str(), st["version"].as_u64()),
        (Some("applied"), Some(2))
    );

    // A device that refuses a setting: failed, with its code and LocURI.
    let mut d2 = enroll_as(&srv, 2, "bob@example.com", |_| {}).await;
    d2.status_for.insert(BT.into(), 405);
    d2.session().await;
    let st = status_of(&srv, &pid, &d2.device_id).await;
    assert_eq!(st["status"], "failed", "{st}");
    assert_eq!(st["failures"][0]["status"], 405);
    assert_eq!(st["failures"][0]["targets"][0], BT);
}

#[tokio::test]
async fn user_profile_waits_for_a_signed_in_user_and_device_profiles_go_first() {
    let srv = TestServer::start().await;
    let all = group(&srv, "everyone", Some(r#"enrollment == "user""#)).await;
    // Created (and assigned) user-scope first: the device-scope one still goes out first.
    let user_p = profile(
        &srv,
        json!({"name": "start menu", "scope": "user", "settings": [{"target": USER_START, "format": "int", "data": "1"}]}),
    )
    .await;
    let dev_p = profile(
        &srv,
        json!({"name": "camera", "settings": [{"target": CAMERA, "format": "int", "data": "0"}]}),
    )
    .await;
    assign(&srv, &user_p, &all).await;
    assign(&srv, &dev_p, &all).await;

    let mut d = enroll_as(&srv, 3, "carol@example.com", |_| {}).await;
    d.login_status = "others".into();
    let got = d.session().await;
    assert_eq!(targets(&got), vec![("Replace".into(), CAMERA.into())]);
    let st = status_of(&srv, &user_p, &d.device_id).await;
    assert_eq!(st["status"], "pending");
    assert!(
        st["reason"].as_str().unwrap().contains("LoginStatus user"),
        "{st}"
    );

    d.login_status = "user".into();
    let got = d.session().await;
    assert_eq!(targets(&got), vec![("Replace".into(), USER_START.into())]);
    assert_eq!(
        status_of(&srv, &user_p, &d.device_id).await["status"],
        "applied"
    );
    assert_eq!(
        status_of(&srv, &dev_p, &d.device_id).await["status"],
        "applied"
    );
    assert!(d.session().await.is_empty());
}

#[tokio::test]
async fn dynamic_group_follows_the_group_tag_and_the_query() {
    let srv = TestServer::start().await;
    let mut d = enroll_as(&srv, 4, "dave@example.com", |_| {}).await;
    assert!(d.session().await.is_empty());
    let lab = group(&srv, "lab", Some(r#"group_tag == "lab""#)).await;
    let pid = profile(&srv, json!({"name": "lab camera", "settings": [{"target": CAMERA, "format": "int", "data": "2"}]})).await;
    assert_eq!(assign(&srv, &pid, &lab).await["devices"], 0);
    assert!(d.session().await.is_empty());

    // The Autopilot link sets the group tag (simulated here: store + the one entry point).
    let mut rec = srv.app.store.get_device(&d.device_id).unwrap().unwrap();
    rec.group_tag = Some("Lab".into());
    srv.app.store.put_device(&rec).unwrap();
    let change = winmdm::groups::on_device_changed(&srv.app, &d.device_id).unwrap();
    assert_eq!(change.joined, vec![lab.clone()]);
    assert_eq!(change.queued, 1);
    let got = d.session().await;
    assert_eq!(targets(&got), vec![("Replace".into(), CAMERA.into())]);
    assert_eq!(
        status_of(&srv, &pid, &d.device_id).await["status"],
        "applied"
    );

    // A query edit that excludes the device: it leaves, and the profile's node is deleted.
    let v = ok(
        &srv,
        "PATCH",
        &format!("/api/v1/groups/{lab}"),
        Some(json!({"query": "group_tag == \"lab\" and model starts_with \"hololens\""})),
        200,
    )
    .await;
    assert_eq!(v["evaluation"]["left"], 1, "{v}");
    let members = ok(
        &srv,
        "GET",
        &format!("/api/v1/groups/{lab}/members"),
        None,
        200,
    )
    .await;
    assert_eq!(members["members"], json!([]));
    assert_eq!(
        targets(&d.session().await),
        vec![("Delete".into(), CAMERA.into())]
    );
    assert_eq!(
        status_of(&srv, &pid, &d.device_id).await["status"],
        "removed"
    );

    // The model comes from the device's inventory (`./DevInfo/Mod` = "Virtual 7,1").
    let v = ok(
        &srv,
        "PATCH",
        &format!("/api/v1/groups/{lab}"),
        Some(json!({"query": "group_tag == \"lab\" and model starts_with \"virtual\""})),
        200,
    )
    .await;
    assert_eq!(v["evaluation"]["joined"], 1, "{v}");
    let got = d.session().await;
    assert_eq!(targets(&got), vec![("Replace".into(), CAMERA.into())]);
    let st = status_of(&srv, &pid, &d.device_id).await;
    assert_eq!(st["status"], "applied");
    assert_eq!(
        st["command_ids"][0],
        format!("profile-{pid}-v1-1-r1"),
        "a new delivery, new ids"
    );

    // Errors an admin sees.
    let (st, e) = srv
        .admin(
            "PATCH",
            &format!("/api/v1/groups/{lab}"),
            Some(json!({"query": "group_tag == lab"})),
        )
        .await;
    assert_eq!(st, 400);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("column 14: expected a string literal"),
        "{e}"
    );
    let (st, e) = srv
        .admin(
            "POST",
            &format!("/api/v1/groups/{lab}/members"),
            Some(json!({"device_ids": [d.device_id]})),
        )
        .await;
    assert_eq!(st, 409, "members of a dynamic group follow its query");
    assert_eq!(
        e["error"],
        "members of a dynamic group follow its query; they cannot be added or removed"
    );
    let (st, _) = srv
        .admin(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "LAB", "query": "state == \"enrolled\""})),
        )
        .await;
    assert_eq!(st, 409, "names are unique regardless of case");
    let (st, _) = srv.admin("GET", "/api/v1/groups/nope/members", None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn removing_an_assignment_deletes_only_nodes_no_other_profile_sets() {
    let srv = TestServer::start().await;
    let mut d = enroll_as(&srv, 5, "erin@example.com", |_| {}).await;
    let g = group(&srv, "static", None).await;
    let v = ok(
        &srv,
        "POST",
        &format!("/api/v1/groups/{g}/members"),
        Some(json!({"device_ids": [d.device_id]})),
        200,
    )
    .await;
    assert_eq!(v["joined"], 1);
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/groups/{g}/members"),
            Some(json!({"device_ids": ["NO-SUCH-DEVICE"]})),
        )
        .await;
    assert_eq!(st, 404);
    let a = profile(&srv, json!({"name": "a", "syncml": format!(
        "<Replace><CmdID>1</CmdID><Item><Target><LocURI>{CAMERA}</LocURI></Target><Meta><Format xmlns=\"syncml:metinf\">int</Format></Meta><Data>0</Data></Item></Replace>\
         <Add><CmdID>2</CmdID><Item><Target><LocURI>{BT}</LocURI></Target><Meta><Format xmlns=\"syncml:metinf\">int</Format></Meta><Data>0</Data></Item></Add>")})).await;
    let b = profile(
        &srv,
        json!({"name": "b", "settings": [{"target": BT, "format": "int", "data": "0"}]}),
    )
    .await;
    assign(&srv, &a, &g).await;
    assign(&srv, &b, &g).await;
    assert_eq!(d.session().await.len(), 3);

    let v = ok(
        &srv,
        "DELETE",
        &format!("/api/v1/profiles/{a}/assignments/{g}"),
        None,
        200,
    )
    .await;
    assert_eq!(v["queued"], 1, "{v}");
    let got = d.session().await;
    assert_eq!(
        targets(&got),
        vec![("Delete".into(), CAMERA.into())],
        "BT is still set by b"
    );
    assert_eq!(status_of(&srv, &a, &d.device_id).await["status"], "removed");
    assert_eq!(status_of(&srv, &b, &d.device_id).await["status"], "applied");
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/profiles/{a}/assignments/{g}"),
            None,
        )
        .await;
    assert_eq!(st, 404);

    // Taking the device out of the group removes b, and now BT goes too.
    ok(
        &srv,
        "DELETE",
        &format!("/api/v1/groups/{g}/members"),
        Some(json!({"device_ids": [d.device_id]})),
        200,
    )
    .await;
    assert_eq!(
        targets(&d.session().await),
        vec![("Delete".into(), BT.into())]
    );
}

#[tokio::test]
async fn bulk_devices_get_device_profiles_only() {
    let srv = TestServer::start().await;
    let all = group(&srv, "all", Some(r#"device_id starts_with "" "#)).await;
    let user_p = profile(&srv, json!({"name": "u", "scope": "user", "settings": [{"target": USER_START, "format": "int", "data": "1"}]})).await;
    let dev_p = profile(
        &srv,
        json!({"name": "d", "settings": [{"target": CAMERA, "format": "int", "data": "0"}]}),
    )
    .await;
    assign(&srv, &user_p, &all).await;
    assign(&srv, &dev_p, &all).await;
    let mut d = enroll_as(&srv, 6, "windows-bulkenroll-1@example.com", |_| {}).await;
    let got = d.session().await;
    assert_eq!(targets(&got), vec![("Replace".into(), CAMERA.into())]);
    let st = status_of(&srv, &user_p, &d.device_id).await;
    assert_eq!(st["status"], "not_applicable");
    assert!(
        st["reason"].as_str().unwrap().contains("bulk-enrolled"),
        "{st}"
    );
    assert!(d.session().await.is_empty());

    // device_types restrict the same way.
    let holo = profile(&srv, json!({"name": "h", "device_types": ["hololens"], "settings": [{"target": BT, "format": "int", "data": "0"}]})).await;
    assign(&srv, &holo, &all).await;
    let st = status_of(&srv, &holo, &d.device_id).await;
    assert_eq!(st["status"], "not_applicable");
    assert!(
        st["reason"].as_str().unwrap().contains("windows-pc"),
        "{st}"
    );
    let mut h = enroll_as(&srv, 7, "hana@example.com", |i| i.os_edition = "136".into()).await;
    let got = h.session().await;
    assert!(
        targets(&got).contains(&("Replace".into(), BT.into())),
        "{got:?}"
    );
    assert_eq!(
        status_of(&srv, &holo, &h.device_id).await["status"],
        "applied"
    );
}

#[tokio::test]
async fn escaped_and_cdata_payloads_arrive_exactly_and_are_not_resent() {
    let srv = TestServer::start().await;
    let mut d = enroll_as(&srv, 8, "fay@example.com", |_| {}).await;
    let g = group(&srv, "all", Some(r#"state == "enrolled""#)).await;
    let tricky = "<Policy a=\"1\">&amp; & < > ]]> <![CDATA[x]]></Policy>";
    let node2 = "./Vendor/MSFT/Policy/Config/ADMX_Test/Blob";
    let xml = format!(
        "<Replace><CmdID>7</CmdID><Item><Target><LocURI>{node2}</LocURI></Target><Meta><Format xmlns=\"syncml:metinf\">chr</Format></Meta>\
         <Data><![CDATA[<enabled/><data id=\"a&b\" value=\"]]]]><![CDATA[>\"/>]]></Data></Item></Replace>"
    );
    let pid = profile(&srv, json!({"name": "xml", "settings": [{"target": CAMERA, "format": "chr", "data": tricky}], "description": "escapes"})).await;
    let pid2 = profile(&srv, json!({"name": "cdata", "syncml": xml})).await;
    assign(&srv, &pid, &g).await;
    assign(&srv, &pid2, &g).await;
    let got = d.session().await;
    assert_eq!(got.len(), 2, "{got:?}");
    let by_target = |t: &str| {
        got.iter()
            .find(|c| c.target.as_deref() == Some(t))
            .unwrap()
            .data
            .clone()
    };
    assert_eq!(by_target(CAMERA).as_deref(), Some(tricky));
    assert_eq!(
        by_target(node2).as_deref(),
        Some("<enabled/><data id=\"a&b\" value=\"]]>\"/>")
    );
    assert_eq!(
        status_of(&srv, &pid, &d.device_id).await["status"],
        "applied"
    );
    assert_eq!(
        status_of(&srv, &pid2, &d.device_id).await["status"],
        "applied"
    );
    for _ in 0..2 {
        assert_eq!(
            winmdm::groups::on_device_changed(&srv.app, &d.device_id)
                .unwrap()
                .queued,
            0
        );
        assert!(
            d.session().await.is_empty(),
            "applied profiles are never resent"
        );
    }
    // Editing to the same operations is no new version; different data is.
    let v = ok(
        &srv,
        "PATCH",
        &format!("/api/v1/profiles/{pid}"),
        Some(json!({"settings": [{"target": CAMERA, "format": "chr", "data": tricky}]})),
        200,
    )
    .await;
    assert_eq!(
        (v["version"].as_u64(), v["reconciled"]["queued"].as_u64()),
        (Some(1), Some(0))
    );
    let v = ok(
        &srv,
        "PATCH",
        &format!("/api/v1/profiles/{pid}"),
        Some(json!({"settings": [{"target": CAMERA, "format": "chr", "data": "plain"}]})),
        200,
    )
    .await;
    assert_eq!(
        (v["version"].as_u64(), v["reconciled"]["queued"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(d.session().await[0].data.as_deref(), Some("plain"));
}

#[tokio::test]
async fn profile_validation_and_group_lifecycle() {
    let srv = TestServer::start().await;
    for (body, needle) in [
        (
            json!({"name": "x", "settings": [{"target": USER_START, "data": "1"}]}),
            "scope \\\"user\\\"",
        ),
        (
            json!({"name": "x", "scope": "user", "settings": [{"target": CAMERA, "data": "1"}]}),
            "./User/",
        ),
        (
            json!({"name": "x", "settings": [{"verb": "Get", "target": CAMERA}]}),
            "Get is not allowed",
        ),
        (
            json!({"name": "x", "syncml": "<Atomic><CmdID>1</CmdID><Replace><CmdID>2</CmdID><Item><Target><LocURI>./a</LocURI></Target></Item></Replace></Atomic><Atomic><CmdID>3</CmdID><Replace><CmdID>4</CmdID><Item><Target><LocURI>./b</LocURI></Target></Item></Replace></Atomic>"}),
            "at most one Atomic",
        ),
        (
            json!({"name": "x", "syncml": "<Replace><CmdID>1</CmdID>"}),
            "syncml",
        ),
        (json!({"name": "x"}), "syncml or settings is required"),
        (
            json!({"name": "x", "device_types": ["mac"], "settings": [{"target": CAMERA}]}),
            "device_types",
        ),
    ] {
        let (st, e) = srv
            .admin("POST", "/api/v1/profiles", Some(body.clone()))
            .await;
        assert_eq!(st, 400, "{body}: {e}");
        assert!(e.to_string().contains(needle), "{body}: {e}");
    }
    // A refused settings row is named (the console marks that row): its index, in the API's
    // `field`, for a rule of the command (a bad LocURI) as for a rule of the scope.
    for (settings, row, needle) in [
        (
            json!([{"target": CAMERA, "data": "1"}, {"target": "/Vendor/MSFT/X", "data": "1"}]),
            "settings[1]",
            "must not start with '/'",
        ),
        (
            json!([{"target": CAMERA, "data": "1"}, {"target": BT, "data": "1"}, {"target": USER_START, "data": "1"}]),
            "settings[2]",
            "user node",
        ),
    ] {
        let (st, e) = srv
            .admin(
                "POST",
                "/api/v1/profiles",
                Some(json!({"name": "rows", "settings": settings})),
            )
            .await;
        assert_eq!(st, 400, "{e}");
        assert_eq!(e["field"], row, "{e}");
        assert!(
            e["error"].as_str().unwrap().contains(needle),
            "{needle} in {e}"
        );
    }
    // An Atomic profile is one command; its failure names every LocURI inside.
    let mut d = enroll_as(&srv, 9, "gil@example.com", |_| {}).await;
    let g = group(&srv, "g", None).await;
    ok(
        &srv,
        "POST",
        &format!("/api/v1/groups/{g}/members"),
        Some(json!({"device_ids": [d.device_id]})),
        200,
    )
    .await;
    let pid = profile(&srv, json!({"name": "atomic", "syncml": format!(
        "<Atomic><CmdID>1</CmdID><Replace><CmdID>2</CmdID><Item><Target><LocURI>{CAMERA}</LocURI></Target><Data>0</Data></Item></Replace><Replace><CmdID>3</CmdID><Item><Target><LocURI>{BT}</LocURI></Target><Data>0</Data></Item></Replace></Atomic>")})).await;
    let p = ok(&srv, "GET", &format!("/api/v1/profiles/{pid}"), None, 200).await;
    assert_eq!(p["operations"].as_array().unwrap().len(), 1);
    assert_eq!(p["operations"][0]["sets"], json!([CAMERA, BT]));
    assign(&srv, &pid, &g).await;
    assert_eq!(
        ok(&srv, "GET", &format!("/api/v1/profiles/{pid}"), None, 200).await["assignments"],
        json!([g])
    );
    d.session().await;
    assert_eq!(
        status_of(&srv, &pid, &d.device_id).await["status"],
        "applied"
    );

    // Deleting the group takes the profile off its members.
    let (st, _) = srv
        .admin("DELETE", &format!("/api/v1/groups/{g}"), None)
        .await;
    assert_eq!(st, 204);
    let got = d.session().await;
    assert_eq!(
        targets(&got),
        vec![
            ("Delete".into(), CAMERA.into()),
            ("Delete".into(), BT.into())
        ]
    );
    assert_eq!(
        ok(&srv, "GET", &format!("/api/v1/profiles/{pid}"), None, 200).await["assignments"],
        json!([])
    );
    let (st, _) = srv.admin("GET", &format!("/api/v1/groups/{g}"), None).await;
    assert_eq!(st, 404);
    // Members are paginated.
    let e2 = enroll_as(&srv, 10, "hal@example.com", |_| {}).await;
    let all = group(&srv, "all", Some(r#"state == "enrolled""#)).await;
    let p1 = ok(
        &srv,
        "GET",
        &format!("/api/v1/groups/{all}/members?limit=1"),
        None,
        200,
    )
    .await;
    let next = p1["next"].as_str().unwrap().to_string();
    let p2 = ok(
        &srv,
        "GET",
        &format!("/api/v1/groups/{all}/members?limit=1&cursor={next}"),
        None,
        200,
    )
    .await;
    let mut ids = vec![
        p1["members"][0]["device_id"].clone(),
        p2["members"][0]["device_id"].clone(),
    ];
    ids.sort_by_key(|v| v.to_string());
    let mut want = vec![json!(d.device_id), json!(e2.device_id)];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(ids, want);
    assert!(p2["next"].is_null());
    // A deleted device leaves its groups.
    let (st, _) = srv
        .admin("DELETE", &format!("/api/v1/devices/{}", e2.device_id), None)
        .await;
    assert_eq!(st, 204);
    let m = ok(
        &srv,
        "GET",
        &format!("/api/v1/groups/{all}/members"),
        None,
        200,
    )
    .await;
    assert_eq!(m["members"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn routes_need_the_token_and_answer_405_and_404() {
    let srv = TestServer::start().await;
    let (st, _) = srv
        .client()
        .admin("GET", "/api/v1/groups", None, Some("wrong"))
        .await;
    assert_eq!(st, 401);
    for (m, path, want) in [
        ("PUT", "/api/v1/groups", 405),
        ("POST", "/api/v1/groups/g1", 405),
        ("PUT", "/api/v1/groups/g1/members", 405),
        ("GET", "/api/v1/groups/g1/other", 404),
        ("GET", "/api/v1/profiles/p1/assignments", 405),
        ("GET", "/api/v1/profiles/p1/push", 405),
        ("POST", "/api/v1/devices/d1/profiles", 405),
        ("GET", "/api/v1/profiles/p1/status/x", 404),
        ("GET", "/api/v1/groups/g1", 404),
        ("GET", "/api/v1/profiles/p1/status", 404),
        ("GET", "/api/v1/devices/d1/profiles", 404),
        ("POST", "/api/v1/profiles/p1/push", 404),
    ] {
        let (st, body) = srv.admin(m, path, None).await;
        assert_eq!(st, want, "{m} {path}: {body}");
    }
    let (st, v) = srv.admin("GET", "/api/v1/groups?limit=1", None).await;
    assert_eq!((st, v), (200, json!({"groups": [], "next": null})));
}
mod jobs;
