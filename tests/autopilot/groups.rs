//! Autopilot with device groups and configuration profiles, end to end through the fake device:
//! the Autopilot link puts the device into dynamic groups (`enrollment == "autopilot"`,
//! `group_tag == …`), the Autopilot profile assigned to its group decides TenantLockdown, the
//! groups' device profiles arrive in its first sessions, the user profile waits for a signed-in
//! user, and editing the Autopilot record's group tag moves the device between groups and pushes
//! the new group's profile. Assignment rules: unknown groups and Windows PC profiles on HoloLens
//! groups are refused.

use serde_json::{json, Value};
use winmdm::autopilot::convert::HWDATA_URI;
use winmdm::autopilot::link::SERIAL_URI;

use super::{enrolled_device, hash, import, user_driven, HEADER};
use crate::support::mdm_device::Received;
use crate::support::TestServer;

const CAMERA: &str = "./Vendor/MSFT/Policy/Config/Camera/AllowCamera";
const LYON_WIFI: &str = "./Vendor/MSFT/Policy/Config/Wifi/AllowAutoConnectToWiFiSenseHotspots";
const USER_START: &str = "./User/Vendor/MSFT/Policy/Config/Start/HideRecentJumplists";
const TENANT_LOCKDOWN: &str = "./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE";

async fn ok(srv: &TestServer, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
    let (st, v) = srv.admin(method, path, body).await;
    assert_eq!(st, want, "{method} {path}: {v}");
    v
}

async fn group(srv: &TestServer, name: &str, query: &str) -> String {
    let v = ok(
        srv,
        "POST",
        "/api/v1/groups",
        Some(json!({"name": name, "query": query})),
        201,
    )
    .await;
    v["id"].as_str().expect("group id").to_string()
}

async fn profile_for(srv: &TestServer, gid: &str, body: Value) -> String {
    let v = ok(srv, "POST", "/api/v1/profiles", Some(body), 201).await;
    let pid = v["id"].as_str().expect("profile id").to_string();
    ok(
        srv,
        "POST",
        &format!("/api/v1/profiles/{pid}/assignments"),
        Some(json!({"group_id": gid})),
        201,
    )
    .await;
    pid
}

async fn status(srv: &TestServer, pid: &str, did: &str) -> String {
    let v = ok(
        srv,
        "GET",
        &format!("/api/v1/devices/{did}/profiles"),
        None,
        200,
    )
    .await;
    v["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .find(|p| p["profile_id"] == pid)
        .map(|p| p["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| "absent".into())
}

fn targets(r: &[Received]) -> Vec<&str> {
    r.iter().filter_map(|c| c.target.as_deref()).collect()
}

#[tokio::test]
async fn autopilot_device_joins_its_groups_and_gets_their_profiles_and_tenant_lockdown() {
    let srv = TestServer::start().await;
    let autopilot = group(&srv, "autopilot", r#"enrollment == "autopilot""#).await;
    let lyon = group(&srv, "lyon kiosks", r#"group_tag == "kiosk-lyon""#).await;
    let camera = profile_for(
        &srv,
        &autopilot,
        json!({"name": "camera off", "settings": [{"target": CAMERA, "format": "int", "data": "0"}]}),
    )
    .await;
    let start = profile_for(
        &srv,
        &autopilot,
        json!({"name": "start", "scope": "user", "settings": [{"target": USER_START, "format": "int", "data": "1"}]}),
    )
    .await;
    let wifi = profile_for(
        &srv,
        &lyon,
        json!({"name": "lyon wifi", "settings": [{"target": LYON_WIFI, "format": "int", "data": "0"}]}),
    )
    .await;
    // TenantLockdown is off globally; only the Autopilot profile of the `autopilot` group asks
    // for it, so it arrives only if the device's groups are resolved in its linking round.
    ok(
        &srv,
        "POST",
        "/api/v1/autopilot/profiles",
        Some(
            json!({"name": "kiosks", "device_type": "windows-pc", "deployment_mode": "user-driven",
                   "groups": [autopilot], "tenant_lockdown": true}),
        ),
        201,
    )
    .await;
    let (st, _) = import(
        &srv,
        format!("{HEADER}\r\nSER-LYON-01,,{},Kiosk-Paris,\r\n", hash(3, 64)).into_bytes(),
    )
    .await;
    assert_eq!(st, 200);

    let mut d = enrolled_device(&srv, 71).await;
    d.nodes.insert(SERIAL_URI.into(), "SER-LYON-01".into());
    d.login_status = "others".into();
    // First session: the serial Get, then (same session) TenantLockdown, then the device
    // profile of the group the link put it in; the user profile is held.
    let got = d.session().await;
    let t = targets(&got);
    assert_eq!(t.first(), Some(&SERIAL_URI), "{t:?}");
    assert!(t.contains(&TENANT_LOCKDOWN), "TenantLockdown: {t:?}");
    let mut more = d.session().await;
    let mut all: Vec<String> = t.iter().map(|s| s.to_string()).collect();
    all.extend(targets(&more).iter().map(|s| s.to_string()));
    assert!(all.iter().any(|x| x == CAMERA), "camera profile: {all:?}");
    assert!(
        !all.iter().any(|x| x == USER_START),
        "user profile held: {all:?}"
    );
    assert!(
        !all.iter().any(|x| x == LYON_WIFI),
        "not in Lyon yet: {all:?}"
    );
    if !more.is_empty() {
        more = d.session().await;
        assert!(more.is_empty(), "{:?}", targets(&more));
    }
    assert_eq!(status(&srv, &camera, &d.device_id).await, "applied");
    assert_eq!(status(&srv, &start, &d.device_id).await, "pending");
    assert_eq!(status(&srv, &wifi, &d.device_id).await, "absent");

    // A user signs in: the user profile follows.
    d.login_status = "user".into();
    let got = d.session().await;
    assert_eq!(targets(&got), vec![USER_START]);
    assert_eq!(status(&srv, &start, &d.device_id).await, "applied");

    // The admin moves the Autopilot record to Lyon: the device joins the dynamic group and
    // gets its profile at the next session.
    ok(
        &srv,
        "PATCH",
        "/api/v1/autopilot/devices/SER-LYON-01",
        Some(json!({"group_tag": "Kiosk-Lyon"})),
        200,
    )
    .await;
    let members = ok(
        &srv,
        "GET",
        &format!("/api/v1/groups/{lyon}/members"),
        None,
        200,
    )
    .await;
    assert!(
        members.to_string().contains(&d.device_id),
        "Lyon members: {members}"
    );
    let got = d.session().await;
    assert_eq!(targets(&got), vec![LYON_WIFI]);
    assert_eq!(status(&srv, &wifi, &d.device_id).await, "applied");
    srv.stop().await;
}

#[tokio::test]
async fn autopilot_profiles_only_go_to_existing_groups_of_their_device_type() {
    let srv = TestServer::start().await;
    let holo = group(
        &srv,
        "hololens lab",
        r#"device_type == "hololens" and group_tag == "lab""#,
    )
    .await;
    let pcs = group(&srv, "pcs", r#"device_type == "windows-pc""#).await;
    let mut body = user_driven();
    body["name"] = "pc profile".into();
    body["groups"] = json!([holo]);
    let (st, v) = srv
        .admin("POST", "/api/v1/autopilot/profiles", Some(body.clone()))
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("HoloLens"), "{v}");
    body["groups"] = json!(["no-such-group"]);
    let (st, v) = srv
        .admin("POST", "/api/v1/autopilot/profiles", Some(body.clone()))
        .await;
    assert_eq!((st, v["field"].as_str()), (400, Some("groups")), "{v}");
    body["groups"] = json!([pcs]);
    assert_eq!(
        srv.admin("POST", "/api/v1/autopilot/profiles", Some(body))
            .await
            .0,
        201
    );
    // A HoloLens profile may go to the HoloLens group.
    let (st, v) = srv
        .admin(
            "POST",
            "/api/v1/autopilot/profiles",
            Some(json!({"name": "holo", "device_type": "hololens",
                        "deployment_mode": "self-deploying", "groups": [holo]})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    srv.stop().await;
}

#[tokio::test]
async fn convert_all_targeted_registers_enrolled_devices_from_what_they_report() {
    use base64::Engine;
    let srv = TestServer::start().await;
    // Enrolled before any Autopilot profile or registration exists: nothing is asked.
    let mut d = enrolled_device(&srv, 72).await;
    assert!(d.session().await.is_empty());
    // A real hash is ~4,000 base64 characters; this one is longer than the 4 KB the inventory
    // keeps, so it must come from the Get's stored Results.
    let raw: Vec<u8> = (0..4_500u32).map(|i| (i * 7 % 251) as u8).collect();
    let hash = base64::engine::general_purpose::STANDARD.encode(&raw);
    assert!(hash.len() > 4096);
    d.nodes.insert(SERIAL_URI.into(), "CONV-0001".into());
    d.nodes.insert(HWDATA_URI.into(), hash.clone());
    ok(
        &srv,
        "POST",
        "/api/v1/autopilot/profiles",
        Some(json!({"name": "convert all", "device_type": "windows-pc",
                    "deployment_mode": "user-driven", "all_groups": true,
                    "convert_all_targeted": true, "tenant_lockdown": true})),
        201,
    )
    .await;
    // Saving the converting profile asks the enrolled device for its serial and hash; the
    // answers register it, link it, and its profile's TenantLockdown follows.
    let got = d.session().await;
    let t = targets(&got);
    assert!(t.contains(&SERIAL_URI), "{t:?}");
    assert!(t.contains(&HWDATA_URI), "{t:?}");
    let rec = ok(
        &srv,
        "GET",
        "/api/v1/autopilot/devices/CONV-0001",
        None,
        200,
    )
    .await;
    assert_eq!(
        rec["hardware_hash"],
        hash.as_str(),
        "the full hash is registered"
    );
    assert_eq!(rec["linked_device_id"], d.device_id.as_str());
    let dev = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{}", d.device_id),
        None,
        200,
    )
    .await;
    assert_eq!(dev["autopilot_serial"], "CONV-0001");
    let all: Vec<String> = {
        let mut v: Vec<String> = t.iter().map(|s| s.to_string()).collect();
        v.extend(targets(&d.session().await).iter().map(|s| s.to_string()));
        v
    };
    assert!(all.iter().any(|x| x == TENANT_LOCKDOWN), "{all:?}");
    let audit = ok(&srv, "GET", "/api/v1/audit?limit=1000", None, 200).await;
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "autopilot.convert" && e["target"] == "CONV-0001"));
    // A device whose profile does not convert is left alone.
    ok(
        &srv,
        "PUT",
        "/api/v1/autopilot/profiles/convert%20all",
        Some(json!({"name": "convert all", "device_type": "windows-pc",
                    "deployment_mode": "user-driven", "all_groups": true})),
        200,
    )
    .await;
    let mut e = enrolled_device(&srv, 73).await;
    e.nodes.insert(SERIAL_URI.into(), "CONV-0002".into());
    e.session().await;
    assert_eq!(
        srv.admin("GET", "/api/v1/autopilot/devices/CONV-0002", None)
            .await
            .0,
        404
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_device_enrolled_before_its_import_is_linked_at_its_next_session() {
    let srv = TestServer::start().await;
    let mut d = enrolled_device(&srv, 74).await;
    d.nodes.insert(SERIAL_URI.into(), "LATE-0001".into());
    assert!(d.session().await.is_empty(), "nothing registered yet");
    let (st, _) = import(
        &srv,
        format!("{HEADER}\r\nLATE-0001,,{},Late-Tag,\r\n", hash(5, 64)).into_bytes(),
    )
    .await;
    assert_eq!(st, 200);
    let got = d.session().await;
    assert_eq!(targets(&got), vec![SERIAL_URI, HWDATA_URI]);
    let dev = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{}", d.device_id),
        None,
        200,
    )
    .await;
    assert_eq!(
        (dev["autopilot_serial"].as_str(), dev["group_tag"].as_str()),
        (Some("LATE-0001"), Some("Late-Tag"))
    );
    // A second import finds the serial already reported: linked at once, nothing asked.
    let mut e = enrolled_device(&srv, 75).await;
    e.nodes.insert(SERIAL_URI.into(), "LATE-0002".into());
    let got = e.session().await;
    assert_eq!(
        targets(&got),
        vec![SERIAL_URI, HWDATA_URI],
        "asked: a device is registered"
    );
    let (st, _) = import(
        &srv,
        format!("{HEADER}\r\nLATE-0002,,{},,\r\n", hash(6, 64)).into_bytes(),
    )
    .await;
    assert_eq!(st, 200);
    let rec = ok(
        &srv,
        "GET",
        "/api/v1/autopilot/devices/LATE-0002",
        None,
        200,
    )
    .await;
    assert_eq!(rec["linked_device_id"], e.device_id.as_str());
    assert!(e.session().await.is_empty());
    srv.stop().await;
}
