//! The console's profile, group, refused-enrollment and Autopilot-device pages in Chromium: a
//! profile row with a bad OMA-URI is refused against that row; a valid profile is assigned to a
//! static group whose member was picked on the group page, pushed behind a confirmation naming
//! it, and after the device checks in its per-device status shows the failing LocURI and code;
//! a dynamic group's query error is shown inline and the preview counts the devices; a refused
//! enrollment is counted on the dashboard with its reason; an Autopilot device is edited with
//! the seed's rules shown while typing.

use std::time::Duration;

use winmdm::testkit::DeviceInfo;

use super::{base, sign_in, start};
use crate::support::browser::{Browser, By};
use crate::support::device;
use crate::support::mdm_device::ManagedDevice;
use crate::support::ADMIN_TOKEN;

const CORTANA: &str = "./Device/Vendor/MSFT/Policy/Config/Experience/AllowCortana";
const CAMERA: &str = "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera";

/// Waits until the text of `css` satisfies `ok` (live regions filled by our script).
async fn wait_text(b: &Browser, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut said = String::new();
    for _ in 0..100 {
        said = b.text(css).await;
        if ok(&said) {
            return said;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    said
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_profiles_groups_and_refusals_in_chromium() {
    let started = std::time::Instant::now();
    let Some((srv, b)) = start().await else {
        return;
    };
    let url = base(&srv);
    srv.create_user("ann@example.com", "Pa55word!").await;
    srv.create_user("bob@example.com", "Pa55word!").await;
    let info = DeviceInfo::new(81, "ann@example.com", "Pa55word!");
    let enrolled = device::enroll(&srv.client(), &info).await;
    let mut dev = ManagedDevice::new(&srv, &enrolled);
    dev.session().await;
    let id = info.device_id.clone();
    sign_in(&b, &srv, ADMIN_TOKEN).await;

    // A profile whose first row has a bad OMA-URI: refused, the error against that row.
    b.driver.goto(format!("{url}/ui/profiles")).await.unwrap();
    b.click(By::Id("new-profile")).await;
    b.type_in(By::Id("p-name"), "Lockdown").await;
    b.type_in(
        By::Id("r0_target"),
        "/Vendor/MSFT/Policy/Config/Experience/AllowCortana",
    )
    .await;
    b.type_in(By::Id("r0_format"), "int").await;
    b.type_in(By::Id("r0_data"), "0").await;
    b.type_in(By::Id("r1_target"), CAMERA).await;
    b.type_in(By::Id("r1_format"), "int").await;
    b.type_in(By::Id("r1_data"), "0").await;
    b.click(By::Id("save-profile")).await;
    let row_error = b.text("#r0_error").await;
    assert!(
        row_error.contains("must not start with '/'"),
        "the row's own error: {row_error:?}"
    );
    assert!(b.text("#profile-error").await.contains("Row 1"));
    assert!(!b.has("#r1_error").await, "the good row has no error");
    assert_eq!(
        b.eval("return document.getElementById('r0_target').getAttribute('aria-invalid')")
            .await,
        "true"
    );
    assert_eq!(
        b.eval("return document.getElementById('r1_target').value")
            .await,
        CAMERA,
        "the rows are kept"
    );
    b.eval("document.getElementById('rows-h').scrollIntoView(); return 0")
        .await;
    b.shot("profile-row-error").await;
    let (_, list) = srv.admin("GET", "/api/v1/profiles", None).await;
    assert_eq!(list["profiles"].as_array().map(Vec::len), Some(0), "{list}");
    // Fixed: saved, and its page shows it.
    b.eval(&format!(
        "document.getElementById('r0_target').value = {CORTANA:?}; return 0"
    ))
    .await;
    b.click(By::Id("save-profile")).await;
    assert_eq!(b.text("#profile-name").await, "Lockdown");
    assert_eq!(b.text("#profile-version").await, "1");
    let pid = b.text("#profile-id").await;
    let ops = b.text("#operations").await;
    assert!(ops.contains(CORTANA) && ops.contains(CAMERA), "{ops}");

    // A static group; its member is picked from the device list on the group's page.
    b.driver.goto(format!("{url}/ui/groups")).await.unwrap();
    b.type_in(By::Id("g-name"), "Pilot").await;
    b.click(By::Id("create-group")).await;
    b.text(".notice").await;
    b.click(By::PartialLinkText("Pilot")).await;
    assert_eq!(b.text("#group-kind").await, "static");
    b.click(By::Css(&format!("#picks input[value='{id}']")))
        .await;
    b.click(By::Id("add-members")).await;
    assert!(b.text(".notice").await.contains("added"));
    assert!(b.text("#members").await.contains(&id));
    b.shot("group-members").await;
    let gid = b.text("#group-id").await;
    let (_, members) = srv
        .admin("GET", &format!("/api/v1/groups/{gid}/members"), None)
        .await;
    assert_eq!(members["members"][0]["device_id"], id, "{members}");

    // Assign the profile to it, then push behind a confirmation naming the profile.
    b.driver
        .goto(format!("{url}/ui/profiles/{pid}"))
        .await
        .unwrap();
    b.click(By::Css("#assign-group option")).await;
    b.click(By::Id("assign")).await;
    assert!(b.text(".notice").await.contains("Assigned"));
    assert!(b.text("#assignments").await.contains("Pilot"));
    b.click(By::Id("push-profile")).await;
    let q = b.text("#confirm-question").await;
    assert!(q.contains("Lockdown") && q.contains(&pid), "{q}");
    b.click(By::Id("confirm")).await;
    assert!(b.text(".notice").await.contains("Pushed"));
    assert_eq!(b.text("#profile-version").await, "2");

    // The device checks in and refuses the camera setting: the status names LocURI and code.
    dev.status_for.insert(CAMERA.to_string(), 405);
    let got = dev.session().await;
    assert!(
        got.iter().any(|c| c.target.as_deref() == Some(CAMERA)),
        "{got:?}"
    );
    b.driver.refresh().await.unwrap();
    let row = b
        .driver
        .find(By::Css(&format!("#profile-status tr[data-device='{id}']")))
        .await
        .expect("the device's status row");
    let status = row
        .find(By::Css("td.status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(status, "failed");
    let failures = row
        .find(By::Css("td.failures"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        failures.contains(CAMERA) && failures.contains("405") && !failures.contains(CORTANA),
        "{failures}"
    );
    let (_, api) = srv
        .admin("GET", &format!("/api/v1/profiles/{pid}/status"), None)
        .await;
    assert_eq!(api["statuses"][0]["status"], "failed", "{api}");
    b.eval("document.getElementById('status-h').scrollIntoView(); return 0")
        .await;
    b.shot("profile-status").await;

    // A dynamic group: the preview counts the devices; a broken query is refused inline.
    b.driver.goto(format!("{url}/ui/groups")).await.unwrap();
    b.type_in(By::Id("g-name"), "Enterprise").await;
    b.type_in(By::Id("g-query"), "os_edition == \"72\"").await;
    let said = wait_text(&b, "#g-preview", |s| s.contains("match")).await;
    assert_eq!(said, "1 of 1 devices match now.");
    b.click(By::Id("create-group")).await;
    b.text(".notice").await;
    b.click(By::PartialLinkText("Enterprise")).await;
    assert_eq!(b.text("#group-kind").await, "dynamic");
    assert!(b.text("#members").await.contains(&id));
    assert!(
        !b.has("#picks").await,
        "no member picking in a dynamic group"
    );
    b.eval("document.getElementById('g-query').value = ''; return 0")
        .await;
    b.type_in(By::Id("g-query"), "os_edition == and").await;
    let live = wait_text(&b, "#g-preview", |s| s.starts_with("Column")).await;
    assert!(live.starts_with("Column"), "live: {live:?}");
    b.click(By::Id("save-group")).await;
    let inline = b.text("#group-error").await;
    assert!(inline.contains("column"), "inline on submit: {inline:?}");
    assert_eq!(
        b.eval("return document.getElementById('g-query').value")
            .await,
        "os_edition == and",
        "the query is kept for fixing"
    );
    let (_, g) = srv.admin("GET", "/api/v1/groups", None).await;
    assert!(g.to_string().contains("os_edition == \\\"72\\\""), "{g}");

    // Bob enrolls a device whose DeviceID ann owns: refused, counted with its reason.
    let stolen = DeviceInfo::new(81, "bob@example.com", "Pa55word!");
    let c = srv.client();
    let (_, enroll_url) = device::discover_and_policy(&c, &stolen).await;
    let (csr, _key) =
        winmdm::ca::testing::device_csr(&stolen.device_id, winmdm::ca::KeyAlgorithm::Rsa2048);
    let r = device::send_rst(&c, &enroll_url, &stolen, &csr).await;
    assert_ne!(r.status, 200, "refused: {}", r.text());
    b.driver.goto(format!("{url}/ui/dashboard")).await.unwrap();
    assert_eq!(b.text("#refused").await, "1");
    assert_eq!(b.text("#refused-kinds").await, "Authorization: 1");
    b.shot("dashboard-refused").await;
    b.click(By::Css("a[href='/ui/enrollments/refused']")).await;
    let reason = b.text("#refusals td.reason").await;
    assert!(
        reason.contains(&id) && reason.contains("belongs to another enrollment"),
        "{reason}"
    );
    let (s, api) = srv.admin("GET", "/api/v1/enrollments/refused", None).await;
    assert_eq!(s, 200);
    assert_eq!(api["count"], 1, "{api}");
    assert_eq!(api["by_kind"]["Authorization"], 1);
    assert_eq!(api["refusals"][0]["endpoint"], "enrollment");
    assert!(
        !api.to_string().contains("Pa55word!"),
        "never the password: {api}"
    );

    // An Autopilot device: the seed's rules while typing, the server's on save, then saved.
    let csv = format!(
        "{}\r\nAP-EDIT-1,,{},,\r\n",
        crate::autopilot::HEADER,
        crate::autopilot::hash(9, 64)
    );
    let r = c
        .request(
            "POST",
            "/api/v1/autopilot/devices",
            &[
                ("content-type", "text/csv"),
                ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
            ],
            csv.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    b.driver.goto(format!("{url}/ui/autopilot")).await.unwrap();
    b.click(By::PartialLinkText("AP-EDIT-1")).await;
    b.type_in(By::Id("d-device_name"), "KIOSK-0000000000001")
        .await;
    let live = wait_text(&b, "#derr-device_name", |s| !s.is_empty()).await;
    assert!(live.contains("15"), "live: {live:?}");
    b.type_in(By::Id("d-user_friendly_name"), "Front desk")
        .await;
    let live = b.text("#derr-user_friendly_name").await;
    assert!(live.contains("set user first"), "live: {live:?}");
    b.click(By::Id("ap-device-save")).await;
    assert!(
        b.text("#ap-device-error").await.contains("Not saved"),
        "refused on save too"
    );
    b.eval("document.getElementById('d-device_name').value = 'KIOSK-01'; return 0")
        .await;
    b.type_in(By::Id("d-user"), "ann@example.com").await;
    b.type_in(By::Id("d-group_tag"), "Lobby").await;
    b.click(By::Id("ap-device-save")).await;
    assert!(b.text(".notice").await.contains("Saved"));
    let (_, d) = srv
        .admin("GET", "/api/v1/autopilot/devices/AP-EDIT-1", None)
        .await;
    assert_eq!(d["device_name"], "KIOSK-01", "{d}");
    assert_eq!(d["assigned_user"], "ann@example.com");
    assert_eq!(d["user_friendly_name"], "Front desk");
    assert_eq!(d["group_tag"], "Lobby");

    // The new pages fit a phone's width.
    b.driver.set_window_rect(0, 0, 390, 844).await.unwrap();
    for page in [
        format!("/ui/profiles/{pid}"),
        format!("/ui/groups/{gid}"),
        "/ui/profiles/new".to_string(),
    ] {
        b.driver.goto(format!("{url}{page}")).await.unwrap();
        let overflow = b
            .eval("return document.documentElement.scrollWidth > window.innerWidth + 1")
            .await;
        assert_eq!(overflow, false, "{page} wider than a phone");
    }
    b.driver.set_window_rect(0, 0, 1280, 800).await.unwrap();

    // Everything is in the audit log with the acting token.
    let (_, audit) = srv.admin("GET", "/api/v1/audit?limit=200", None).await;
    let audit = audit.to_string();
    for action in [
        "profile.create",
        "group.members.add",
        "profile.assign",
        "profile.push",
        "autopilot.device.update",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    eprintln!("console pages: {:.1} s", started.elapsed().as_secs_f64());
    b.quit().await;
    srv.stop().await;
}
