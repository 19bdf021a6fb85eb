//! The Enrollment Status Page end to end on the Autopilot path: the device registered with a
//! group tag enrolls, its linking session puts it into the dynamic group the ESP and the app are
//! assigned to, and the FirstSyncStatus nodes arrive with the app's commands in that same,
//! first session (the server keeps it going with a keep-alive `Get`); the device is
//! released (ServerHasFinishedProvisioning, IsSyncDone) once the app is installed — marked
//! failed at once when the install fails, or after the timeout when it never ends.

use std::sync::Arc;

use serde_json::{json, Value};
use winmdm::autopilot::link::SERIAL_URI;

use super::windows::{Outcome, WindowsApps};
use super::{fixture, msix_package, new_group, ok, send, NODE, NOTES_PFN, PRODUCT};
use crate::autopilot::{enrolled_device, hash, import, HEADER};
use crate::support::mdm_device::Received;
use crate::support::{TestClock, TestServer};

fn first_sync(srv: &TestServer, node: &str) -> String {
    format!(
        "./Device/Vendor/MSFT/DMClient/Provider/{}/FirstSyncStatus/{node}",
        srv.app.cfg.provider_id
    )
}

fn data_of<'r>(got: &'r [Received], target: &str) -> Option<&'r str> {
    got.iter()
        .find(|c| c.target.as_deref() == Some(target))
        .and_then(|c| c.data.as_deref())
}

/// Sessions until the server has nothing more; every command received.
async fn drain(win: &mut WindowsApps) -> Vec<Received> {
    let mut all = Vec::new();
    for _ in 0..6 {
        let got = win.session().await;
        if got.is_empty() {
            break;
        }
        all.extend(got);
    }
    all
}

pub(crate) async fn setup(
    srv: &TestServer,
    serial: &str,
    n: u32,
    esp: Value,
) -> (WindowsApps, String, String) {
    setup_with(srv, serial, n, esp, fixture("1.0.0")).await
}

/// [`setup`] with another package (an MSIX).
async fn setup_with(
    srv: &TestServer,
    serial: &str,
    n: u32,
    esp: Value,
    package: Vec<u8>,
) -> (WindowsApps, String, String) {
    let (st, app) = send(srv, "POST", "/api/v1/apps", package).await;
    assert_eq!(st, 201, "{app}");
    let app_id = app["id"].as_str().unwrap().to_string();
    let gid = new_group(
        srv,
        json!({"name": "esp lab", "query": "group_tag == \"esp-lab\""}),
    )
    .await;
    ok(
        srv,
        "POST",
        &format!("/api/v1/apps/{app_id}/assignments"),
        Some(json!({"group_id": gid})),
        201,
    )
    .await;
    let mut body = esp;
    body["apps"] = json!([app_id]);
    // `"via": "autopilot"`: attached to the Autopilot profile of the group, not to the group.
    let via_autopilot = body
        .as_object_mut()
        .and_then(|o| o.remove("via"))
        .is_some_and(|v| v == "autopilot");
    if via_autopilot {
        ok(
            srv,
            "POST",
            "/api/v1/autopilot/profiles",
            Some(json!({"name": "esp kiosks", "device_type": "windows-pc", "deployment_mode": "user-driven", "groups": [gid]})),
            201,
        )
        .await;
        body["autopilot_profiles"] = json!(["esp kiosks"]);
    }
    let esp = ok(srv, "POST", "/api/v1/esp", Some(body), 201).await;
    let esp_id = esp["id"].as_str().unwrap().to_string();
    if via_autopilot {
        assert_eq!(
            esp["autopilot_profiles"].as_array().map(Vec::len),
            Some(1),
            "{esp}"
        );
    } else {
        ok(
            srv,
            "POST",
            &format!("/api/v1/esp/{esp_id}/assignments"),
            Some(json!({"group_id": gid})),
            201,
        )
        .await;
    }
    (
        autopilot_device(srv, serial, n, "esp-lab").await,
        app_id,
        esp_id,
    )
}

/// A Windows device registered for Autopilot with `serial` and group `tag`, then enrolled in
/// OOBE (no user signed in yet; it answers the serial-number `Get` the Autopilot link sends).
async fn autopilot_device(srv: &TestServer, serial: &str, n: u32, tag: &str) -> WindowsApps {
    let (st, _) = import(
        srv,
        format!("{HEADER}\r\n{serial},,{},{tag},\r\n", hash(n, 64)).into_bytes(),
    )
    .await;
    assert_eq!(st, 200);
    let mut d = enrolled_device(srv, n).await;
    d.nodes.insert(SERIAL_URI.into(), serial.into());
    d.login_status = "others".into();
    WindowsApps::new(d, srv.client())
}

#[tokio::test]
async fn esp_blocks_until_the_app_is_installed_then_releases() {
    let srv = TestServer::start().await;
    let (mut win, app_id, esp_id) = setup(
        &srv,
        "SER-ESP-01",
        81,
        json!({"name": "kiosk esp", "timeout_minutes": 30, "allow_continue": true, "custom_error_text": "Call the help desk at 555-0100."}),
    )
    .await;
    let did = win.dev.device_id.clone();
    // The first session links the device to its Autopilot record (serial, hardware data):
    // its group tag puts it into the group, which queues the ESP nodes and the app; a
    // keep-alive Get keeps that first session going, so they arrive in it.
    let first = win.session().await;
    assert_eq!(first[0].target.as_deref(), Some(SERIAL_URI));
    assert!(
        first
            .iter()
            .any(|c| c.verb == "Get" && c.target.as_deref() == Some("./DevInfo/DmV")),
        "the keep-alive Get: {first:?}"
    );
    let expected = format!("{NODE}/Status;1");
    assert_eq!(
        data_of(&first, &first_sync(&srv, "ExpectedMSIAppPackages")),
        Some(expected.as_str())
    );
    assert_eq!(
        data_of(&first, &first_sync(&srv, "TimeOutUntilSyncFailure")),
        Some("30")
    );
    // Not blocking-only: retry (2) + continue anyway (4).
    assert_eq!(
        data_of(&first, &first_sync(&srv, "BlockInStatusPage")),
        Some("6")
    );
    assert_eq!(
        data_of(&first, &first_sync(&srv, "AllowCollectLogsButton")),
        Some("true")
    );
    assert_eq!(
        data_of(&first, &first_sync(&srv, "CustomErrorText")),
        Some("Call the help desk at 555-0100.")
    );
    assert_eq!(
        data_of(&first, &first_sync(&srv, "SkipDeviceStatusPage")),
        Some("false")
    );
    assert_eq!(
        data_of(&first, &first_sync(&srv, "SkipUserStatusPage")),
        Some("false")
    );
    assert!(first.iter().any(
        |c| c.verb == "Exec" && c.target.as_deref() == Some(&format!("{NODE}/DownloadInstall"))
    ));
    assert!(
        data_of(&first, &first_sync(&srv, "IsSyncDone")).is_none(),
        "not released before the install"
    );
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["esp_id"], esp_id.as_str());
    assert_eq!(p["phase"], "device", "{p}");
    assert_eq!(win.jobs.len(), 1);

    // The install alert arrives (its session has nothing to send); the next session releases
    // the device phase.
    assert!(win.session().await.is_empty());
    assert_eq!(
        ok(
            &srv,
            "GET",
            &format!("/api/v1/devices/{did}/esp"),
            None,
            200
        )
        .await["items"][0]["state"],
        "installed"
    );
    let next = win.session().await;
    assert_eq!(
        data_of(&next, &first_sync(&srv, "ServerHasFinishedProvisioning")),
        Some("true"),
        "{next:?}"
    );
    assert_eq!(
        data_of(&next, &first_sync(&srv, "IsSyncDone")),
        Some("true")
    );
    assert!(data_of(&next, &first_sync(&srv, "WasDeviceSuccessfullyProvisioned")).is_none());
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["phase"], "done", "{p}");
    assert_eq!(p["device"]["success"], true);
    assert_eq!(p["items"][0]["app_id"], app_id.as_str());
    assert_eq!(p["items"][0]["state"], "installed");
    // Nothing more: released once.
    assert!(drain(&mut win).await.is_empty());
}

#[tokio::test]
async fn esp_fails_at_once_when_an_install_fails_with_the_error_text() {
    let now = winmdm::clock::Clock::now_unix(&winmdm::clock::SystemClock);
    let clock = TestClock::at(now);
    let srv = TestServer::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    let (mut win, app_id, _esp) = setup(
        &srv,
        "SER-ESP-02",
        82,
        json!({"name": "strict esp", "timeout_minutes": 5, "custom_error_text": "Setup failed: call IT.", "via": "autopilot"}),
    )
    .await;
    win.outcome.insert(PRODUCT.into(), Outcome::Fails1603);
    let did = win.dev.device_id.clone();
    // The Autopilot link and, in the same first session, the ESP nodes.
    let first = win.session().await;
    assert_eq!(
        data_of(&first, &first_sync(&srv, "CustomErrorText")),
        Some("Setup failed: call IT.")
    );
    assert_eq!(
        data_of(&first, &first_sync(&srv, "BlockInStatusPage")),
        Some("2")
    );
    assert!(data_of(&first, &first_sync(&srv, "IsSyncDone")).is_none());
    // The install job's alert reports 1603: the phase fails at once, long before the
    // five-minute timeout (the clock does not move), the page shows the custom error text.
    // (The alert's own session has nothing to send; the failure goes out in the next one.)
    assert!(win.session().await.is_empty());
    let got = drain(&mut win).await;
    let failed = first_sync(&srv, "WasDeviceSuccessfullyProvisioned");
    let finished = first_sync(&srv, "ServerHasFinishedProvisioning");
    let done = first_sync(&srv, "IsSyncDone");
    let t: Vec<&str> = got
        .iter()
        .filter_map(|c| c.target.as_deref())
        .filter(|t| t.contains("/FirstSyncStatus/"))
        .collect();
    assert_eq!(
        t,
        vec![failed.as_str(), finished.as_str(), done.as_str()],
        "failure first, then the release: {got:?}"
    );
    assert_eq!(data_of(&got, &failed), Some("0"));
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["phase"], "done", "{p}");
    assert_eq!(p["items"][0]["state"], "failed");
    assert_eq!(p["items"][0]["error"], "fatal error during installation");
    assert_eq!(p["device"]["success"], false);
    assert_eq!(
        p["device"]["reason"],
        format!("failed: app {app_id} (1603: fatal error during installation)").as_str(),
        "{p}"
    );
    assert!(drain(&mut win).await.is_empty(), "released once");
}

/// An MSIX still installing after the session that delivered it: later sessions read its
/// Status again (one Get per session) until the device reports it installed (the node gone),
/// and the ESP releases the device then, without waiting for its timeout.
#[tokio::test]
async fn esp_follows_an_msix_install_until_the_device_reports_it_installed() {
    let (srv, mut win, app_id, a) = msix_esp("SER-ESP-06", 86).await;
    let did = win.dev.device_id.clone();
    let status = format!("{a}/Status");
    let reads = |got: &[Received]| {
        got.iter()
            .filter(|c| c.verb == "Get" && c.target.as_deref() == Some(status.as_str()))
            .count()
    };
    // Still installing: each later session reads Status once more; nothing is released.
    for _ in 0..2 {
        let got = win.session().await;
        assert_eq!(reads(&got), 1, "{got:?}");
        assert!(data_of(&got, &first_sync(&srv, "IsSyncDone")).is_none());
    }
    let states = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/apps"),
        None,
        200,
    )
    .await;
    assert!(states.to_string().contains("\"installing\""), "{states}");
    // Windows finishes and removes the AppInstallation node (no alert): the next read answers
    // 404, the app is installed, and the page is released as a success.
    win.finish_hosted(NOTES_PFN, 0, false);
    let mut got = win.session().await;
    assert_eq!(reads(&got), 1);
    got.extend(drain(&mut win).await);
    assert_eq!(
        data_of(&got, &first_sync(&srv, "IsSyncDone")),
        Some("true"),
        "{got:?}"
    );
    assert!(data_of(&got, &first_sync(&srv, "WasDeviceSuccessfullyProvisioned")).is_none());
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["phase"], "done", "{p}");
    assert_eq!(p["device"]["success"], true, "{p}");
    assert_eq!(p["items"][0]["app_id"], app_id.as_str());
    assert_eq!(p["items"][0]["state"], "installed");
    // Final: no more reads.
    assert!(drain(&mut win).await.is_empty());
}

/// An MSIX whose install ends in failure, reported by the HostedInstall alert: the phase fails
/// at once with the app and its code.
#[tokio::test]
async fn esp_fails_at_once_on_the_msix_install_alert() {
    let (srv, mut win, app_id, _a) = msix_esp("SER-ESP-07", 87).await;
    let did = win.dev.device_id.clone();
    // 0x80073CF3: package failed updates, dependency or conflict validation.
    win.finish_hosted(NOTES_PFN, 0x8007_3CF3u32 as i32 as i64, true);
    // The alert's session (no re-read: it reports the install), then the failure.
    assert!(win.session().await.is_empty());
    let got = drain(&mut win).await;
    assert_eq!(
        data_of(&got, &first_sync(&srv, "WasDeviceSuccessfullyProvisioned")),
        Some("0"),
        "{got:?}"
    );
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["items"][0]["state"], "failed", "{p}");
    assert_eq!(p["device"]["success"], false);
    let reason = p["device"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("failed: app {app_id} (0x80073CF3")),
        "{reason}"
    );
}

/// An install that never reaches a final state is read again once per session, and failed
/// (with the reason) once 24 hours passed since the install command; no more reads then, and
/// the ESP fails on it.
#[tokio::test]
async fn an_install_never_final_is_failed_after_a_day() {
    let now = winmdm::clock::Clock::now_unix(&winmdm::clock::SystemClock);
    let clock = TestClock::at(now);
    let srv = TestServer::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    let (srv, mut win, app_id, a) = msix_esp_on(srv, "SER-ESP-08", 88).await;
    let did = win.dev.device_id.clone();
    let status = format!("{a}/Status");
    let got = win.session().await;
    assert!(got
        .iter()
        .any(|c| c.verb == "Get" && c.target.as_deref() == Some(status.as_str())));
    clock.set(now + 24 * 3600 + 1);
    let got = drain(&mut win).await;
    assert!(
        !got.iter()
            .any(|c| c.target.as_deref() == Some(status.as_str())),
        "no more reads: {got:?}"
    );
    assert_eq!(
        data_of(&got, &first_sync(&srv, "WasDeviceSuccessfullyProvisioned")),
        Some("0")
    );
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["items"][0]["state"], "failed", "{p}");
    let why =
        "no final install state after 1 status re-reads and 24 hours (last state: installing)";
    assert_eq!(p["items"][0]["error"], why, "{p}");
    assert_eq!(
        p["device"]["reason"],
        format!("failed: app {app_id} ({why})").as_str()
    );
}

/// An ESP naming an uploaded MSIX whose HostedInstall leaves it installing; after the first
/// session (ESP nodes, HostedInstall, Status 1). Returns the server, the device, the app id
/// and the device's AppInstallation node.
async fn msix_esp(serial: &str, n: u32) -> (TestServer, WindowsApps, String, String) {
    msix_esp_on(TestServer::start().await, serial, n).await
}

async fn msix_esp_on(
    srv: TestServer,
    serial: &str,
    n: u32,
) -> (TestServer, WindowsApps, String, String) {
    msix_esp_with(
        srv,
        serial,
        n,
        json!({"name": "msix esp", "timeout_minutes": 30}),
    )
    .await
}

async fn msix_esp_with(
    srv: TestServer,
    serial: &str,
    n: u32,
    esp: Value,
) -> (TestServer, WindowsApps, String, String) {
    let (mut win, app_id, _esp) = setup_with(&srv, serial, n, esp, msix_package("1.2.3.0")).await;
    win.hosted_async = true;
    let did = win.dev.device_id.clone();
    let a =
        format!("./Device/Vendor/MSFT/EnterpriseModernAppManagement/AppInstallation/{NOTES_PFN}");
    let first = win.session().await;
    assert_eq!(
        data_of(&first, &first_sync(&srv, "ExpectedModernAppPackages")),
        Some(format!("{a}/Status;1").as_str())
    );
    assert!(first
        .iter()
        .any(|c| c.verb == "Exec" && c.target.as_deref() == Some(&format!("{a}/HostedInstall"))));
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["phase"], "device", "{p}");
    // (The fake device answers the Get sent with the Exec before it starts the install.)
    assert!(
        ["downloading", "installing"].contains(&p["items"][0]["state"].as_str().unwrap()),
        "{p}"
    );
    (srv, win, app_id, a)
}

#[tokio::test]
async fn esp_user_phase_waits_for_the_user_and_their_apps() {
    let srv = TestServer::start().await;
    let (st, app) = send(&srv, "POST", "/api/v1/apps", fixture("1.0.0")).await;
    assert_eq!(st, 201);
    let app_id = app["id"].as_str().unwrap().to_string();
    let gid = new_group(
        &srv,
        json!({"name": "esp users", "query": "group_tag == \"esp-user\""}),
    )
    .await;
    ok(
        &srv,
        "POST",
        &format!("/api/v1/apps/{app_id}/assignments"),
        Some(json!({"group_id": gid, "scope": "user"})),
        201,
    )
    .await;
    let esp = ok(
        &srv,
        "POST",
        "/api/v1/esp",
        Some(json!({"name": "user esp", "apps": [app_id]})),
        201,
    )
    .await;
    let esp_id = esp["id"].as_str().unwrap().to_string();
    ok(
        &srv,
        "POST",
        &format!("/api/v1/esp/{esp_id}/assignments"),
        Some(json!({"group_id": gid})),
        201,
    )
    .await;
    let mut win = autopilot_device(&srv, "SER-ESP-03", 83, "esp-user").await;
    let did = win.dev.device_id.clone();
    // The Autopilot link, the device phase's nodes and its release in the first session.
    let before_user = drain(&mut win).await;
    let user_list = format!(
        "./User/Vendor/MSFT/DMClient/Provider/{}/FirstSyncStatus/ExpectedMSIAppPackages",
        srv.app.cfg.provider_id
    );
    // No device-scope app: the device phase is released; the user's list and app wait.
    assert_eq!(
        data_of(&before_user, &first_sync(&srv, "TimeOutUntilSyncFailure")),
        Some("60")
    );
    assert_eq!(
        data_of(&before_user, &first_sync(&srv, "IsSyncDone")),
        Some("true")
    );
    assert!(data_of(&before_user, &user_list).is_none());
    assert!(!before_user.iter().any(|c| c.verb == "Exec"));
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["phase"], "user", "{p}");
    // The user signs in: the user's list and the per-user install arrive; its alert releases
    // the user phase on the ./User nodes.
    win.dev.login_status = "user".into();
    // (The alert's own session has nothing to send; the release comes in the next one.)
    let mut user = drain(&mut win).await;
    user.extend(drain(&mut win).await);
    let user_node = NODE.replace("./Device/", "./User/");
    assert_eq!(
        data_of(&user, &user_list),
        Some(format!("{user_node}/Status;1").as_str())
    );
    assert!(user.iter().any(|c| c.verb == "Exec"
        && c.target.as_deref() == Some(&format!("{user_node}/DownloadInstall"))));
    let user_done = format!(
        "./User/Vendor/MSFT/DMClient/Provider/{}/FirstSyncStatus/IsSyncDone",
        srv.app.cfg.provider_id
    );
    assert_eq!(data_of(&user, &user_done), Some("true"), "{user:?}");
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["phase"], "done", "{p}");
    assert_eq!(p["user"]["success"], true);
}

const SMARTSCREEN: &str = "./Device/Vendor/MSFT/Policy/Config/Browser/AllowSmartScreen";
const CAMERA: &str = "./Vendor/MSFT/Policy/Config/Camera/AllowCamera";
const PRINTER: &str = "./User/Vendor/MSFT/Policy/Config/Education/DefaultPrinterName";

/// A group on group tag `tag` with the given profiles (`(name, scope, settings)`) assigned,
/// an ESP `esp` naming them assigned to it, and device `n` registered with that tag and
/// enrolled in OOBE. Returns the device and the profile ids.
async fn setup_profiles(
    srv: &TestServer,
    serial: &str,
    n: u32,
    tag: &str,
    profiles: &[(&str, &str, Value)],
    esp: Value,
) -> (WindowsApps, Vec<String>) {
    let gid = new_group(
        srv,
        json!({"name": format!("{tag} group"), "query": format!("group_tag == \"{tag}\"")}),
    )
    .await;
    let mut pids = Vec::new();
    for (name, scope, settings) in profiles {
        let pid = ok(
            srv,
            "POST",
            "/api/v1/profiles",
            Some(json!({"name": name, "scope": scope, "settings": settings})),
            201,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        ok(
            srv,
            "POST",
            &format!("/api/v1/profiles/{pid}/assignments"),
            Some(json!({"group_id": gid})),
            201,
        )
        .await;
        pids.push(pid);
    }
    let mut body = esp;
    body["profiles"] = json!(pids);
    let esp = ok(srv, "POST", "/api/v1/esp", Some(body), 201).await;
    assert_eq!(esp["profiles"], json!(pids), "{esp}");
    let esp_id = esp["id"].as_str().unwrap().to_string();
    ok(
        srv,
        "POST",
        &format!("/api/v1/esp/{esp_id}/assignments"),
        Some(json!({"group_id": gid})),
        201,
    )
    .await;
    (autopilot_device(srv, serial, n, tag).await, pids)
}

fn position(got: &[Received], verb: &str, target: &str) -> usize {
    got.iter()
        .position(|c| c.verb == verb && c.target.as_deref() == Some(target))
        .unwrap_or_else(|| panic!("{verb} {target} not received: {got:?}"))
}

#[tokio::test]
async fn esp_expected_policies_wait_for_the_profiles_of_each_phase() {
    let srv = TestServer::start().await;
    let (mut win, pids) = setup_profiles(
        &srv,
        "SER-ESP-04",
        84,
        "esp-pol",
        &[
            (
                "kiosk lockdown",
                "device",
                json!([{"target": SMARTSCREEN, "format": "int", "data": "1"}, {"target": CAMERA, "format": "int", "data": "0"}]),
            ),
            (
                "lab printer",
                "user",
                json!([{"target": PRINTER, "format": "chr", "data": "lab-1"}]),
            ),
        ],
        json!({"name": "policy esp", "timeout_minutes": 30}),
    )
    .await;
    let did = win.dev.device_id.clone();
    // Before the user signs in: the device list names the device profile's LocURIs (as the
    // profile sends them), the phase is released once they are applied, the user's list and
    // profile wait.
    let before_user = drain(&mut win).await;
    let expected = format!("{SMARTSCREEN}\u{F000}{CAMERA}");
    assert_eq!(
        data_of(&before_user, &first_sync(&srv, "ExpectedPolicies")),
        Some(expected.as_str()),
        "{before_user:?}"
    );
    let done = position(&before_user, "Replace", &first_sync(&srv, "IsSyncDone"));
    assert!(
        position(&before_user, "Replace", SMARTSCREEN) < done
            && position(&before_user, "Replace", CAMERA) < done,
        "released after the profile: {before_user:?}"
    );
    let user_node = |node: &str| {
        format!(
            "./User/Vendor/MSFT/DMClient/Provider/{}/FirstSyncStatus/{node}",
            srv.app.cfg.provider_id
        )
    };
    assert!(data_of(&before_user, &user_node("ExpectedPolicies")).is_none());
    assert!(data_of(&before_user, PRINTER).is_none());
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["phase"], "user", "{p}");
    assert_eq!(p["device"]["success"], true, "{p}");
    assert_eq!(p["policies"][0]["profile_id"], pids[0].as_str());
    assert_eq!(p["policies"][0]["state"], "applied", "{p}");
    assert_eq!(p["policies"][0]["nodes"], json!([SMARTSCREEN, CAMERA]));
    assert_eq!(p["policies"][1]["profile_id"], pids[1].as_str());
    assert_eq!(p["policies"][1]["scope"], "user");
    assert_eq!(p["policies"][1]["state"], "pending", "{p}");
    // Still waiting a session later: nothing is released without the user's profile.
    assert!(drain(&mut win).await.is_empty());

    // The user signs in: their list, the profile, and then the user phase's release.
    win.dev.login_status = "user".into();
    let mut user = drain(&mut win).await;
    user.extend(drain(&mut win).await);
    assert_eq!(
        data_of(&user, &user_node("ExpectedPolicies")),
        Some(PRINTER),
        "{user:?}"
    );
    assert!(
        position(&user, "Replace", PRINTER) < position(&user, "Replace", &user_node("IsSyncDone")),
        "{user:?}"
    );
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["phase"], "done", "{p}");
    assert_eq!(p["user"]["success"], true);
    assert_eq!(p["policies"][1]["state"], "applied", "{p}");
}

#[tokio::test]
async fn esp_fails_at_once_on_a_failed_profile_with_the_error_text() {
    let now = winmdm::clock::Clock::now_unix(&winmdm::clock::SystemClock);
    let clock = TestClock::at(now);
    let srv = TestServer::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    let (mut win, pids) = setup_profiles(
        &srv,
        "SER-ESP-05",
        85,
        "esp-polfail",
        &[(
            "smartscreen",
            "device",
            json!([{"target": SMARTSCREEN, "format": "int", "data": "1"}]),
        )],
        json!({"name": "strict policy esp", "timeout_minutes": 5, "custom_error_text": "Policies failed: call IT."}),
    )
    .await;
    // The device refuses the setting.
    win.dev.status_for.insert(SMARTSCREEN.into(), 500);
    let did = win.dev.device_id.clone();
    // The refusal fails the phase at once (the clock does not move; the timeout is five
    // minutes away): WasDeviceSuccessfullyProvisioned = 0, then the release, after the refused
    // Replace, in the same first sessions.
    let first = drain(&mut win).await;
    assert_eq!(
        data_of(&first, &first_sync(&srv, "ExpectedPolicies")),
        Some(SMARTSCREEN)
    );
    assert_eq!(
        data_of(&first, &first_sync(&srv, "CustomErrorText")),
        Some("Policies failed: call IT.")
    );
    let failed = first_sync(&srv, "WasDeviceSuccessfullyProvisioned");
    let finished = first_sync(&srv, "ServerHasFinishedProvisioning");
    let done = first_sync(&srv, "IsSyncDone");
    assert_eq!(data_of(&first, &failed), Some("0"), "{first:?}");
    let f = position(&first, "Replace", &failed);
    assert!(position(&first, "Replace", SMARTSCREEN) < f);
    assert!(f < position(&first, "Replace", &finished));
    assert!(f < position(&first, "Replace", &done));
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["phase"], "done", "{p}");
    assert_eq!(p["policies"][0]["state"], "failed", "{p}");
    assert!(
        p["policies"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("500") && e.contains(SMARTSCREEN)),
        "{p}"
    );
    assert_eq!(p["device"]["success"], false);
    let reason = p["device"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("failed: profile {} (failed: ", pids[0]))
            && reason.contains("500")
            && reason.contains(SMARTSCREEN),
        "{reason}"
    );
    let (code, text) = super::cli(&srv, &["esp", "progress", &did]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("PROFILE") && text.contains(&pids[0]) && text.contains("failed"),
        "{text}"
    );
    // Released once.
    assert!(drain(&mut win).await.is_empty());
}

#[tokio::test]
async fn esp_refuses_unknown_and_app_managed_profiles() {
    let srv = TestServer::start().await;
    let (st, v) = srv
        .admin(
            "POST",
            "/api/v1/esp",
            Some(json!({"name": "x", "profiles": ["nope"]})),
        )
        .await;
    assert_eq!(st, 404, "{v}");
    let (st, app) = send(&srv, "POST", "/api/v1/apps", fixture("1.0.0")).await;
    assert_eq!(st, 201);
    let gid = new_group(&srv, json!({"name": "g"})).await;
    let app_id = app["id"].as_str().unwrap();
    ok(
        &srv,
        "POST",
        &format!("/api/v1/apps/{app_id}/assignments"),
        Some(json!({"group_id": gid})),
        201,
    )
    .await;
    let (st, v) = srv
        .admin(
            "POST",
            "/api/v1/esp",
            Some(json!({"name": "x", "profiles": [format!("app-{app_id}-device-required")]})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let many: Vec<String> = (0..51).map(|i| format!("p{i}")).collect();
    let (st, v) = srv
        .admin(
            "POST",
            "/api/v1/esp",
            Some(json!({"name": "x", "profiles": many})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
}

/// An app still installing when the ESP's timeout passes (the device never reports an end):
/// the next session releases the device as failed — `WasDeviceSuccessfullyProvisioned` 0, then
/// the release — with the configured CustomErrorText, and the reason names the timeout and the
/// app.
#[tokio::test]
async fn esp_releases_an_unfinished_install_after_the_timeout_with_the_error_text() {
    let now = winmdm::clock::Clock::now_unix(&winmdm::clock::SystemClock);
    let clock = TestClock::at(now);
    let srv = TestServer::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    let (srv, mut win, app_id, _a) = msix_esp_with(
        srv,
        "SER-ESP-10",
        90,
        json!({"name": "slow esp", "timeout_minutes": 10, "custom_error_text": "Still installing: call IT."}),
    )
    .await;
    let did = win.dev.device_id.clone();
    // Before the timeout: still held.
    clock.set(now + 9 * 60);
    let got = win.session().await;
    assert!(
        data_of(&got, &first_sync(&srv, "IsSyncDone")).is_none(),
        "{got:?}"
    );
    // Past it: released as failed with the error text the ESP was given.
    clock.set(now + 11 * 60);
    let mut got = win.session().await;
    got.extend(drain(&mut win).await);
    let failed = first_sync(&srv, "WasDeviceSuccessfullyProvisioned");
    let finished = first_sync(&srv, "ServerHasFinishedProvisioning");
    let done = first_sync(&srv, "IsSyncDone");
    let t: Vec<&str> = got
        .iter()
        .filter_map(|c| c.target.as_deref())
        .filter(|t| t.contains("/FirstSyncStatus/"))
        .collect();
    assert_eq!(
        t,
        vec![failed.as_str(), finished.as_str(), done.as_str()],
        "failure first, then the release: {got:?}"
    );
    assert_eq!(data_of(&got, &failed), Some("0"));
    let p = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/esp"),
        None,
        200,
    )
    .await;
    assert_eq!(p["phase"], "done", "{p}");
    assert_eq!(p["device"]["success"], false, "{p}");
    let reason = p["device"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("timeout after 10 minutes") && reason.contains(&app_id),
        "{p}"
    );
    let (_, e) = srv
        .admin(
            "GET",
            &format!("/api/v1/esp/{}", p["esp_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(e["custom_error_text"], "Still installing: call IT.", "{e}");
    // Released once (the app's own Status is still read in later sessions).
    let later = win.session().await;
    assert!(
        !later
            .iter()
            .filter_map(|c| c.target.as_deref())
            .any(|t| t.contains("/FirstSyncStatus/")),
        "released once: {later:?}"
    );
}

/// `winmdm esp update` replaces an ESP's settings through `PUT /api/v1/esp/{id}` and keeps its
/// group assignments; `esp create` takes the same flags.
#[tokio::test]
async fn cli_updates_an_esp_and_keeps_its_assignments() {
    let srv = TestServer::start().await;
    let gid = new_group(&srv, json!({"name": "kiosks"})).await;
    let (code, text) = super::cli(
        &srv,
        &[
            "esp",
            "create",
            "--name",
            "first",
            "--timeout-minutes",
            "30",
        ],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("created ESP "), "{text}");
    let esp_id = text["created ESP ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let (code, text) = super::cli(&srv, &["esp", "assign", &esp_id, &gid]).await;
    assert_eq!(code, 0, "{text}");
    let (code, text) = super::cli(
        &srv,
        &[
            "esp",
            "update",
            &esp_id,
            "--name",
            "second",
            "--timeout-minutes",
            "15",
            "--allow-reset",
            "--no-retry",
            "--no-collect-logs",
            "--skip-device-page",
            "--custom-error-text",
            "Call IT.",
        ],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with(&format!("updated ESP {esp_id} \"second\"")),
        "{text}"
    );
    let esp = ok(&srv, "GET", &format!("/api/v1/esp/{esp_id}"), None, 200).await;
    assert_eq!(esp["name"], "second", "{esp}");
    assert_eq!(esp["timeout_minutes"], 15, "{esp}");
    assert_eq!(esp["allow_reset"], true, "{esp}");
    assert_eq!(esp["allow_retry"], false, "{esp}");
    assert_eq!(esp["allow_collect_logs"], false, "{esp}");
    assert_eq!(esp["skip_device_page"], true, "{esp}");
    assert_eq!(esp["block"], true, "{esp}");
    assert_eq!(esp["custom_error_text"], "Call IT.", "{esp}");
    assert_eq!(esp["groups"], json!([gid]), "{esp}");
    // An unknown ESP: the API's 404, a non-zero exit.
    let (code, text) = super::cli(&srv, &["esp", "update", "nope", "--name", "x"]).await;
    assert_ne!(code, 0, "{text}");
}
