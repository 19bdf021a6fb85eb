//! The console's Apps and Enrollment Status Page pages in Chromium: an MSI built by wixl
//! (protocol-fixtures/apps) uploaded through the page shows its ProductCode; a package over
//! `--app-max-mb` and a file that is not an MSI are refused on the form; an external app with
//! a bad SHA-256 gets the error against that field; the app is assigned to a group and its
//! per-device state is shown on the app and device pages; an ESP with a bad timeout gets the
//! error against that field, is then saved, edited and assigned; the device page shows a
//! device's ESP progress; a read-only token sees these pages with no control, and its forged
//! posts (uploads included) get 403.

use std::time::Duration;

use serde_json::{json, Value};
use winmdm::testkit::DeviceInfo;

use super::{base, page_csrf, post_from_page, sign_in, start};
use crate::apps::{fixture, send, PRODUCT};
use crate::support::browser::{Browser, By};
use crate::support::device;
use crate::support::mdm_device::ManagedDevice;
use crate::support::{TestServer, ADMIN_TOKEN};

/// Waits until the text of `css` satisfies `ok` (the page after a submit).
async fn wait_text(b: &Browser, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut said = String::new();
    for _ in 0..200 {
        if b.has(css).await {
            said = b.text(css).await;
            if ok(&said) {
                return said;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    said
}

/// Posts a multipart upload from the page (same origin, with the session cookie): `csrf`
/// (omitted when `None`) then a file part; returns the HTTP status (0: a redirect).
async fn upload_from_page(b: &Browser, path: &str, csrf: Option<&str>) -> u16 {
    let csrf_line = match csrf {
        Some(c) => format!("f.append('csrf', {c:?});"),
        None => String::new(),
    };
    let v = b
        .eval(&format!(
            "var f = new FormData(); {csrf_line} f.append('file', new Blob(['MZ not an msi']), 'x.msi'); \
             return fetch({path:?}, {{method: 'POST', body: f, redirect: 'manual'}}).then(r => r.status)"
        ))
        .await;
    v.as_u64().expect("status") as u16
}

async fn api(srv: &TestServer, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = srv.admin(method, path, body).await;
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

fn attr_js(id: &str, what: &str) -> String {
    format!("return document.getElementById({id:?}).{what}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_apps_and_esp_in_chromium() {
    let srv = TestServer::start_with(|o| o.app_max_mb = Some(1)).await;
    let Some(b) = Browser::start(&srv.app.tls.chain[0]).await else {
        return;
    };
    let url = base(&srv);
    srv.create_user("ann@example.com", "Pa55word!").await;
    let info = DeviceInfo::new(91, "ann@example.com", "Pa55word!");
    let enrolled = device::enroll(&srv.client(), &info).await;
    let mut dev = ManagedDevice::new(&srv, &enrolled);
    dev.session().await;
    let did = info.device_id.clone();
    let gid = api(
        &srv,
        "POST",
        "/api/v1/groups",
        Some(json!({"name": "Kiosks"})),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    api(
        &srv,
        "POST",
        &format!("/api/v1/groups/{gid}/members"),
        Some(json!({"device_ids": [did]})),
    )
    .await;
    sign_in(&b, &srv, ADMIN_TOKEN).await;
    let dir = tempfile::tempdir().unwrap();

    // A package over --app-max-mb (1 MiB here): refused against the file field, nothing kept.
    let big = dir.path().join("big.msi");
    std::fs::write(&big, vec![0x5Au8; (1 << 20) + 4096]).unwrap();
    b.driver.goto(format!("{url}/ui/apps")).await.unwrap();
    b.type_in(By::Id("up-name"), "Too big").await;
    b.type_in(By::Id("up-file"), big.to_str().unwrap()).await;
    b.click(By::Id("upload-app")).await;
    let err = wait_text(&b, "#up-file-error", |t| !t.is_empty()).await;
    assert!(err.contains("larger than the limit of 1 MiB"), "{err:?}");
    assert_eq!(
        b.eval(&attr_js("up-file", "getAttribute('aria-invalid')"))
            .await,
        "true"
    );
    assert_eq!(b.eval(&attr_js("up-name", "value")).await, "Too big");
    // A file that is not an MSI: the service's reason, against the file field.
    let txt = dir.path().join("hello.msi");
    std::fs::write(&txt, b"MZ\x90\x00 not an msi").unwrap();
    b.driver.goto(format!("{url}/ui/apps")).await.unwrap();
    b.type_in(By::Id("up-file"), txt.to_str().unwrap()).await;
    b.click(By::Id("upload-app")).await;
    let err = wait_text(&b, "#up-file-error", |t| !t.is_empty()).await;
    assert!(err.contains("not a valid MSI"), "{err:?}");
    // An upload without the CSRF token is refused before anything is stored.
    assert_eq!(upload_from_page(&b, "/ui/apps/upload", None).await, 403);
    let (_, list) = srv.admin("GET", "/api/v1/apps", None).await;
    assert_eq!(list["apps"].as_array().map(Vec::len), Some(0), "{list}");
    let chunks = srv
        .app
        .store
        .records()
        .scan_records("app_chunk", None, 10)
        .unwrap();
    assert!(chunks.is_empty(), "{} chunks left", chunks.len());

    // The MSI built by the tests' wixl fixture: uploaded through the page, its ProductCode shown.
    let msi = dir.path().join("winmdm-test-1.0.0.msi");
    std::fs::write(&msi, fixture("1.0.0")).unwrap();
    b.driver.goto(format!("{url}/ui/apps")).await.unwrap();
    b.type_in(By::Id("up-file"), msi.to_str().unwrap()).await;
    b.click(By::Id("upload-app")).await;
    let pc = wait_text(&b, "#app-product-code", |t| !t.is_empty()).await;
    assert_eq!(pc, PRODUCT);
    assert_eq!(b.text("#app-name").await, "winmdm test app");
    assert_eq!(b.text("#app-version").await, "1.0.0");
    assert!(b.text(".notice").await.contains("Uploaded"));
    let app_id = b.text("#app-id").await;
    let (_, a) = srv
        .admin("GET", &format!("/api/v1/apps/{app_id}"), None)
        .await;
    assert_eq!(a["product_code"], PRODUCT, "{a}");
    assert_eq!(b.text("#app-sha256").await, a["sha256"].as_str().unwrap());
    b.shot("app").await;

    // An external app with a bad SHA-256: the service's rule, against that field.
    b.driver.goto(format!("{url}/ui/apps")).await.unwrap();
    b.type_in(By::Id("x-name"), "Viewer").await;
    b.type_in(By::Id("x-url"), "https://downloads.example.com/viewer.msi")
        .await;
    b.type_in(By::Id("x-sha256"), "abc123").await;
    b.type_in(
        By::Id("x-product_code"),
        "{11111111-2222-3333-4444-555555555555}",
    )
    .await;
    b.type_in(By::Id("x-product_version"), "2.1").await;
    b.click(By::Id("register-app")).await;
    let err = wait_text(&b, "#x-sha256-error", |t| !t.is_empty()).await;
    assert_eq!(err, "sha256 must be 64 hex digits");
    assert_eq!(
        b.eval(&attr_js("x-sha256", "getAttribute('aria-invalid')"))
            .await,
        "true"
    );
    assert_eq!(b.text("#x-url-error").await, "", "only the bad field");
    assert_eq!(
        b.eval(&attr_js("x-url", "value")).await,
        "https://downloads.example.com/viewer.msi"
    );
    b.shot("apps-external-error").await;
    // Fixed: registered.
    let sha = "ab".repeat(32);
    b.eval(&format!(
        "document.getElementById('x-sha256').value = {sha:?}; return 0"
    ))
    .await;
    b.click(By::Id("register-app")).await;
    let ext_id = wait_text(&b, "#app-id", |t| !t.is_empty() && t != app_id).await;
    assert_eq!(b.text("#app-kind").await, "MSI (external)");

    // Assign the uploaded app to the group, device context, required.
    b.driver
        .goto(format!("{url}/ui/apps/{app_id}"))
        .await
        .unwrap();
    b.click(By::Css(&format!("#assign-group option[value='{gid}']")))
        .await;
    b.click(By::Css("#assign-scope option[value='device']"))
        .await;
    b.click(By::Css("#assign-intent option[value='required']"))
        .await;
    b.click(By::Id("assign")).await;
    let assigned = wait_text(&b, "#assignments", |t| t.contains("Kiosks")).await;
    assert!(
        assigned.contains("device") && assigned.contains("required"),
        "{assigned}"
    );
    let (_, a) = srv
        .admin("GET", &format!("/api/v1/apps/{app_id}"), None)
        .await;
    assert_eq!(a["assignments"][0]["group_id"], gid.as_str(), "{a}");
    // The device checks in: the app page shows its state, linked to the device page.
    for _ in 0..50 {
        let (_, st) = srv
            .admin("GET", &format!("/api/v1/devices/{did}/apps"), None)
            .await;
        if st["apps"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dev.session().await;
    let (_, st) = srv
        .admin("GET", &format!("/api/v1/devices/{did}/apps"), None)
        .await;
    let want = st["apps"][0]["state"]
        .as_str()
        .expect("a state")
        .replace('_', " ");
    b.driver.refresh().await.unwrap();
    let row = b
        .text(&format!("#app-states tr[data-device='{did}']"))
        .await;
    assert!(row.contains(&want), "{want} in {row}");
    b.click(By::Css(&format!("#app-states a[href='/ui/devices/{did}']")))
        .await;
    b.wait_path(&format!("/ui/devices/{did}")).await;
    let on_device = b
        .text(&format!("#device-apps tr[data-app='{app_id}']"))
        .await;
    assert!(
        on_device.contains("winmdm test app") && on_device.contains(&want),
        "{on_device}"
    );
    b.driver.goto(format!("{url}/ui/apps")).await.unwrap();
    let counts = b
        .text(&format!("#apps tr[data-app='{app_id}'] .counts"))
        .await;
    assert_eq!(counts, format!("1 {want}"));

    // An ESP with a bad timeout: refused against that field, the form kept.
    b.driver.goto(format!("{url}/ui/esp")).await.unwrap();
    b.click(By::Id("new-esp")).await;
    b.type_in(By::Id("e-name"), "Kiosk ESP").await;
    b.type_in(By::Id("e-timeout_minutes"), "0").await;
    b.click(By::Id(&format!("e-app-{app_id}"))).await;
    b.type_in(By::Id("e-custom_error_text"), "Call the help desk.")
        .await;
    b.click(By::Id("save-esp")).await;
    let err = wait_text(&b, "#e-timeout_minutes-error", |t| !t.is_empty()).await;
    assert!(err.contains("timeout_minutes must be 1..=1440"), "{err:?}");
    assert_eq!(
        b.eval(&attr_js(
            "e-timeout_minutes",
            "getAttribute('aria-invalid')"
        ))
        .await,
        "true"
    );
    assert_eq!(b.eval(&attr_js("e-name", "value")).await, "Kiosk ESP");
    assert_eq!(
        b.eval(&attr_js(&format!("e-app-{app_id}"), "checked"))
            .await,
        true
    );
    b.shot("esp-form-error").await;
    let (_, esps) = srv.admin("GET", "/api/v1/esp", None).await;
    assert_eq!(esps["esp"].as_array().map(Vec::len), Some(0), "{esps}");
    b.eval("document.getElementById('e-timeout_minutes').value = '30'; return 0")
        .await;
    b.click(By::Id("save-esp")).await;
    let timeout = wait_text(&b, "#esp-timeout", |t| !t.is_empty()).await;
    assert_eq!(timeout, "30 minutes");
    assert!(b.text("#esp-apps").await.contains("winmdm test app"));
    let esp_id = b.text("#esp-id").await;
    // Assigned to the group, then edited: the assignment stays.
    b.click(By::Css(&format!("#assign-group option[value='{gid}']")))
        .await;
    b.click(By::Id("assign")).await;
    wait_text(&b, "#esp-groups", |t| t.contains("Kiosks")).await;
    // A configuration profile made meanwhile is offered as blocking (ExpectedPolicies).
    let (st, prof) = srv
        .admin(
            "POST",
            "/api/v1/profiles",
            Some(json!({"name": "Camera off", "settings": [{"target": "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera", "format": "int", "data": "0"}]})),
        )
        .await;
    assert_eq!(st, 201, "{prof}");
    let pid = prof["id"].as_str().unwrap().to_string();
    b.click(By::Id("edit-esp")).await;
    b.wait_path(&format!("/ui/esp/{esp_id}/edit")).await;
    b.eval("document.getElementById('e-timeout_minutes').value = '45'; return 0")
        .await;
    b.click(By::Id("e-allow_continue")).await;
    b.click(By::Id(&format!("e-policy-{pid}"))).await;
    b.click(By::Id("save-esp")).await;
    let timeout = wait_text(&b, "#esp-timeout", |t| t == "45 minutes").await;
    assert_eq!(timeout, "45 minutes");
    assert!(
        b.text("#esp-policies").await.contains("Camera off"),
        "the blocking profile is on the ESP's page"
    );
    let (_, e) = srv
        .admin("GET", &format!("/api/v1/esp/{esp_id}"), None)
        .await;
    assert_eq!(e["timeout_minutes"], 45, "{e}");
    assert_eq!(e["allow_continue"], true, "{e}");
    assert_eq!(e["custom_error_text"], "Call the help desk.", "{e}");
    assert_eq!(e["groups"], json!([gid]), "{e}");
    assert_eq!(e["profiles"], json!([pid]), "{e}");
    b.shot("esp").await;

    // The new form's ticks are what the service gives an ESP named and nothing else.
    let d = api(
        &srv,
        "POST",
        "/api/v1/esp",
        Some(json!({"name": "Defaults"})),
    )
    .await;
    b.driver.goto(format!("{url}/ui/esp/new")).await.unwrap();
    for k in [
        "block",
        "allow_reset",
        "allow_retry",
        "allow_continue",
        "allow_collect_logs",
        "skip_device_page",
        "skip_user_page",
    ] {
        assert_eq!(
            b.eval(&attr_js(&format!("e-{k}"), "checked")).await,
            d[k],
            "{k}"
        );
    }

    // Delete behind a confirmation naming what goes.
    let did_esp = d["id"].as_str().unwrap();
    b.driver
        .goto(format!("{url}/ui/esp/{did_esp}"))
        .await
        .unwrap();
    b.click(By::Id("delete-esp")).await;
    let q = b.text("#confirm-question").await;
    assert!(q.contains("Defaults") && q.contains(did_esp), "{q}");
    b.click(By::Id("confirm")).await;
    b.wait_path("/ui/esp").await;
    assert!(!b.text("#esps").await.contains("Defaults"));
    b.driver
        .goto(format!("{url}/ui/apps/{ext_id}"))
        .await
        .unwrap();
    b.click(By::Id("delete-app")).await;
    let q = b.text("#confirm-question").await;
    assert!(q.contains("Viewer") && q.contains(&ext_id), "{q}");
    b.click(By::Id("confirm")).await;
    b.wait_path("/ui/apps").await;
    let (s, _) = srv
        .admin("GET", &format!("/api/v1/apps/{ext_id}"), None)
        .await;
    assert_eq!(s, 404);

    // Every change is in the audit log.
    b.driver.goto(format!("{url}/ui/audit")).await.unwrap();
    let audit = b.text("#audit").await;
    for action in [
        "app.create",
        "app.assign",
        "app.delete",
        "esp.create",
        "esp.assign",
        "esp.update",
        "esp.delete",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    b.quit().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_device_page_shows_esp_progress() {
    let Some((srv, b)) = start().await else {
        return;
    };
    let url = base(&srv);
    let (mut win, app_id, esp_id) = crate::apps::esp::setup(
        &srv,
        "SER-UI-ESP-1",
        93,
        json!({"name": "kiosk esp", "timeout_minutes": 30}),
    )
    .await;
    let did = win.dev.device_id.clone();
    // The first session starts the ESP (FirstSyncStatus nodes, the app's install job).
    win.session().await;
    let (_, p) = srv
        .admin("GET", &format!("/api/v1/devices/{did}/esp"), None)
        .await;
    assert_eq!(p["esp_id"], esp_id.as_str(), "{p}");
    sign_in(&b, &srv, ADMIN_TOKEN).await;
    b.driver
        .goto(format!("{url}/ui/devices/{did}"))
        .await
        .unwrap();
    assert_eq!(b.text("#esp-phase").await, p["phase"].as_str().unwrap());
    let esp = b.text("#device-esp").await;
    assert!(
        esp.contains("kiosk esp") && esp.contains("30 minutes"),
        "{esp}"
    );
    let items = b.text("#esp-items").await;
    let state = p["items"][0]["state"]
        .as_str()
        .map_or("not delivered yet".to_string(), |s| s.replace('_', " "));
    assert!(
        items.contains("winmdm test app") && items.contains(&state),
        "{state} in {items}"
    );
    assert!(b.text("#device-apps").await.contains("winmdm test app"));
    assert!(
        b.has(&format!("#esp-items a[href='/ui/apps/{app_id}']"))
            .await
    );
    b.eval("document.getElementById('esp-h').scrollIntoView(); return 0")
        .await;
    b.shot("device-esp").await;
    b.quit().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_read_only_sees_apps_and_esp_without_controls() {
    let Some((srv, b)) = start().await else {
        return;
    };
    let url = base(&srv);
    let (s, a) = send(&srv, "POST", "/api/v1/apps", fixture("1.0.0")).await;
    assert_eq!(s, 201, "{a}");
    let app_id = a["id"].as_str().unwrap().to_string();
    let gid = api(&srv, "POST", "/api/v1/groups", Some(json!({"name": "Lab"}))).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    api(
        &srv,
        "POST",
        &format!("/api/v1/apps/{app_id}/assignments"),
        Some(json!({"group_id": gid})),
    )
    .await;
    let e = api(
        &srv,
        "POST",
        "/api/v1/esp",
        Some(json!({"name": "Lab ESP", "apps": [app_id]})),
    )
    .await;
    let esp_id = e["id"].as_str().unwrap().to_string();
    api(
        &srv,
        "POST",
        &format!("/api/v1/esp/{esp_id}/assignments"),
        Some(json!({"group_id": gid})),
    )
    .await;
    let t = api(
        &srv,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "auditor", "role": "read-only"})),
    )
    .await;
    sign_in(&b, &srv, t["token"].as_str().unwrap()).await;

    // Everything shown, nothing that changes anything.
    let controls = "#upload-form, #external-form, #delete-app, #content-form, #assign-form, \
                    .unassign, #new-esp, #edit-esp, #delete-esp, #esp-form, form[method=post]:not([action='/ui/signout']), \
                    input[type=file], button:not(.link)";
    b.driver.goto(format!("{url}/ui/apps")).await.unwrap();
    assert!(b.text("#apps").await.contains("winmdm test app"));
    assert!(!b.has(controls).await, "no app control for read-only");
    b.driver
        .goto(format!("{url}/ui/apps/{app_id}"))
        .await
        .unwrap();
    assert_eq!(b.text("#app-product-code").await, PRODUCT);
    assert!(b.text("#assignments").await.contains("Lab"));
    assert!(!b.has(controls).await, "no app control for read-only");
    b.shot("read-only-app").await;
    b.driver.goto(format!("{url}/ui/esp")).await.unwrap();
    assert!(b.text("#esps").await.contains("Lab ESP"));
    assert!(!b.has(controls).await, "no ESP control for read-only");
    b.driver
        .goto(format!("{url}/ui/esp/{esp_id}"))
        .await
        .unwrap();
    assert!(b.text("#esp-groups").await.contains("Lab"));
    assert!(!b.has(controls).await, "no ESP control for read-only");
    for page in [
        format!("/ui/apps/{app_id}/confirm?do=delete"),
        format!("/ui/esp/{esp_id}/confirm?do=delete"),
        "/ui/esp/new".to_string(),
        format!("/ui/esp/{esp_id}/edit"),
    ] {
        b.driver.goto(format!("{url}{page}")).await.unwrap();
        assert_eq!(b.text("h1").await, "Not allowed", "{page}");
        assert!(!b.has("#confirm, #esp-form").await, "{page}");
    }

    // Forged posts with the session's own CSRF token: the service refuses them (403).
    let csrf = page_csrf(&b).await;
    for (path, fields) in [
        (
            "/ui/apps".to_string(),
            format!("name=X&url=https%3A%2F%2Fe.example%2Fx.msi&sha256={}&product_code=%7B11111111-2222-3333-4444-555555555555%7D&product_version=1.0&csrf={csrf}", "ab".repeat(32)),
        ),
        (
            format!("/ui/apps/{app_id}/unassign"),
            format!("group_id={gid}&csrf={csrf}"),
        ),
        (
            format!("/ui/apps/{app_id}/assign"),
            format!("group_id={gid}&intent=uninstall&csrf={csrf}"),
        ),
        (format!("/ui/apps/{app_id}/do"), format!("do=delete&csrf={csrf}")),
        ("/ui/esp".to_string(), format!("name=Evil&csrf={csrf}")),
        (
            format!("/ui/esp/{esp_id}"),
            format!("name=Evil&timeout_minutes=5&csrf={csrf}"),
        ),
        (
            format!("/ui/esp/{esp_id}/unassign"),
            format!("group_id={gid}&csrf={csrf}"),
        ),
        (format!("/ui/esp/{esp_id}/do"), format!("do=delete&csrf={csrf}")),
    ] {
        assert_eq!(post_from_page(&b, &path, &fields).await, 403, "{path}");
    }
    assert_eq!(
        upload_from_page(&b, "/ui/apps/upload", Some(&csrf)).await,
        403
    );
    assert_eq!(
        upload_from_page(&b, &format!("/ui/apps/{app_id}/content"), Some(&csrf)).await,
        403
    );
    let (_, list) = srv.admin("GET", "/api/v1/apps", None).await;
    assert_eq!(list["apps"].as_array().map(Vec::len), Some(1), "{list}");
    let (_, a) = srv
        .admin("GET", &format!("/api/v1/apps/{app_id}"), None)
        .await;
    assert_eq!(a["assignments"].as_array().map(Vec::len), Some(1), "{a}");
    assert_eq!(a["revision"], 1, "{a}");
    let (_, e) = srv
        .admin("GET", &format!("/api/v1/esp/{esp_id}"), None)
        .await;
    assert_eq!(e["name"], "Lab ESP", "{e}");
    assert_eq!(e["groups"], json!([gid]), "{e}");
    let (_, esps) = srv.admin("GET", "/api/v1/esp", None).await;
    assert_eq!(esps["esp"].as_array().map(Vec::len), Some(1), "{esps}");
    b.quit().await;
    srv.stop().await;
}
