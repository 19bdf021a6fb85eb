//! The admin web console in a real headless Chromium (see `support::browser`): sign-in, users,
//! a fake Windows device enrolling and checking in, TenantLockdown from the device page, the
//! read-only role, CSRF, and device-reported values shown as text.

mod apps;
pub(crate) mod http;
mod pages;

use std::time::Duration;

use winmdm::testkit::DeviceInfo;

use crate::support::browser::{Browser, By};
use crate::support::device;
use crate::support::mdm_device::ManagedDevice;
use crate::support::{TestServer, ADMIN_TOKEN};

/// A model name a hostile device could report: must appear as text, never run.
const HOSTILE_MODEL: &str = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>";

fn base(srv: &TestServer) -> String {
    format!("https://localhost:{}", srv.addr.port())
}

async fn start() -> Option<(TestServer, Browser)> {
    let srv = TestServer::start().await;
    let b = Browser::start(&srv.app.tls.chain[0]).await?;
    Some((srv, b))
}

/// Signs in through the form with `token`; returns after the dashboard loaded.
async fn sign_in(b: &Browser, srv: &TestServer, token: &str) {
    b.driver
        .goto(format!("{}/ui/", base(srv)))
        .await
        .expect("goto");
    b.wait_path("/ui/signin").await;
    b.type_in(By::Id("token"), token).await;
    b.click(By::Id("signin")).await;
    b.wait_path("/ui/dashboard").await;
    assert_eq!(b.text("h1").await, "Dashboard");
}

/// Submits a form POST from the page itself (same origin, with the session cookie), with the
/// fields given; returns the HTTP status.
async fn post_from_page(b: &Browser, path: &str, fields: &str) -> u16 {
    let v = b
        .eval(&format!(
            "return fetch({path:?}, {{method: 'POST', headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: {fields:?}, redirect: 'manual'}}).then(r => r.status)"
        ))
        .await;
    v.as_u64().expect("status") as u16
}

/// The CSRF token in the current page's forms.
async fn page_csrf(b: &Browser) -> String {
    b.eval("return document.querySelector('input[name=csrf]').value")
        .await
        .as_str()
        .expect("csrf")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_end_to_end_in_chromium() {
    let started = std::time::Instant::now();
    let Some((srv, b)) = start().await else {
        return;
    };
    let url = base(&srv);

    // Sign in with the bootstrap token; the cookie is HttpOnly (not visible to scripts).
    sign_in(&b, &srv, ADMIN_TOKEN).await;
    assert_eq!(b.eval("return document.cookie").await, "");
    b.shot("dashboard-empty").await;

    // Create a user with the Users page form.
    b.driver.goto(format!("{url}/ui/users")).await.unwrap();
    b.type_in(By::Id("upn"), "ann@example.com").await;
    b.type_in(By::Id("password"), "Pa55word!").await;
    b.click(By::Id("create-user")).await;
    assert_eq!(b.text("#user-upn").await, "ann@example.com");
    assert_eq!(b.text("#user-state").await, "enabled");
    // A rule broken on the form is shown on the form.
    b.driver.goto(format!("{url}/ui/users")).await.unwrap();
    b.type_in(By::Id("upn"), "ann@example.com").await;
    b.type_in(By::Id("password"), "x").await;
    b.click(By::Id("create-user")).await;
    assert!(b.text("#create-error").await.contains("already exists"));
    b.shot("users").await;

    // Invite ann: the link is shown once, listed as open on her page, then revoked there.
    b.driver
        .goto(format!("{url}/ui/users/ann%40example.com"))
        .await
        .unwrap();
    b.click(By::Id("invite")).await;
    assert_eq!(b.text("#inv-upn").await, "ann@example.com");
    let link = b
        .eval("return document.getElementById('inv-link').value")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(link.starts_with(&format!("{url}/enroll/invite/")), "{link}");
    let landing = link.trim_start_matches(&url).to_string();
    let r = srv.client().request("GET", &landing, &[], Vec::new()).await;
    assert_eq!(r.status, 200, "the landing page answers before revocation");
    b.shot("invitation").await;
    b.driver
        .goto(format!("{url}/ui/users/ann%40example.com"))
        .await
        .unwrap();
    assert_eq!(b.text("#invitations .inv-state").await, "open");
    b.click(By::Css("#invitations button.revoke")).await;
    b.text(".notice").await;
    assert_eq!(b.text("#invitations .inv-state").await, "revoked");
    let r = srv.client().request("GET", &landing, &[], Vec::new()).await;
    assert_eq!(r.status, 410, "a revoked invitation's page is gone");

    // The test's fake Windows device enrolls as ann and checks in, reporting a hostile model.
    let info = DeviceInfo::new(71, "ann@example.com", "Pa55word!");
    let enrolled = device::enroll(&srv.client(), &info).await;
    let mut dev = ManagedDevice::new(&srv, &enrolled);
    let esc = HOSTILE_MODEL
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    dev.session_with(&format!(
        "<Replace><CmdID>9</CmdID><Item><Source><LocURI>./DevInfo/Mod</LocURI></Source><Data>{esc}</Data></Item></Replace>"
    ))
    .await;

    // It appears on the list; search finds it by DeviceID.
    b.driver.goto(format!("{url}/ui/devices")).await.unwrap();
    let list = b.text("#devices").await;
    assert!(list.contains(&info.device_id), "{list}");
    b.type_in(By::Id("q"), &info.device_id[24..]).await;
    b.click(By::Css("form.filters button")).await;
    for _ in 0..200 {
        let q = b
            .eval("return new URL(location.href).searchParams.get('q')")
            .await;
        if q == info.device_id[24..] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.text("#q").await, "");
    assert_eq!(
        b.eval("return document.getElementById('q').value").await,
        info.device_id[24..],
        "the search is kept in the box"
    );
    assert!(b.text("#devices").await.contains(&info.device_id));
    b.shot("devices").await;
    b.driver
        .find(By::PartialLinkText(&info.device_name))
        .await
        .or(b.driver.find(By::Css("#devices a")).await)
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(b.text("#device-id").await, info.device_id);

    // The hostile model is text: not run, no element made of it.
    let inv = b.text("#inventory").await;
    assert!(inv.contains(HOSTILE_MODEL), "model shown as text: {inv}");
    assert_ne!(b.eval("return document.title").await, "pwned");
    assert_eq!(
        b.eval("return document.querySelectorAll('main script, main img').length")
            .await,
        0
    );

    // Queue TenantLockdown from its page, through the confirmation that names the device.
    b.click(By::Id("action-tenant-lockdown-on")).await;
    let q = b.text("#confirm-question").await;
    assert!(
        q.contains(&info.device_id) && q.contains("ann@example.com"),
        "{q}"
    );
    b.shot("confirm-tenant-lockdown").await;
    b.click(By::Id("confirm")).await;
    b.wait_path(&format!("/ui/devices/{}", info.device_id))
        .await;
    assert!(b.text(".notice").await.contains("Queued"));
    let row = b.text("#commands tbody tr").await;
    assert!(
        row.contains("TenantLockdown") && row.contains("pending"),
        "{row}"
    );

    // The device checks in; the page shows the command done with status 200.
    let got = dev.session().await;
    assert!(
        got.iter().any(|c| c
            .target
            .as_deref()
            .is_some_and(|t| t.contains("TenantLockdown"))),
        "TenantLockdown delivered: {got:?}"
    );
    b.driver.refresh().await.unwrap();
    let cmd = b
        .driver
        .find(By::XPath(
            "//table[@id='commands']//tr[contains(., 'TenantLockdown')]",
        ))
        .await
        .unwrap();
    assert_eq!(
        cmd.find(By::Css("td.state"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "done"
    );
    assert_eq!(
        cmd.find(By::Css("td.status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "200"
    );
    b.shot("device").await;
    b.eval("document.getElementById('cmd-h').scrollIntoView(); return 0")
        .await;
    b.shot("device-commands").await;

    // Everything the console changed is in the audit log with the token that acted.
    b.driver.goto(format!("{url}/ui/audit")).await.unwrap();
    let audit = b.text("#audit").await;
    for action in [
        "console.sign_in",
        "user.create",
        "invitation.create",
        "invitation.revoke",
        "device.tenant_lockdown",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    assert!(audit.contains("bootstrap"));
    b.shot("audit").await;

    // A form post without the CSRF token is refused, and changes nothing.
    let id = &info.device_id;
    b.driver
        .goto(format!("{url}/ui/devices/{id}"))
        .await
        .unwrap();
    assert_eq!(
        post_from_page(&b, &format!("/ui/devices/{id}/do"), "do=reboot").await,
        403
    );
    assert_eq!(
        post_from_page(&b, &format!("/ui/devices/{id}/do"), "do=reboot&csrf=00").await,
        403
    );
    let (_, cmds) = srv
        .admin("GET", &format!("/api/v1/devices/{id}/commands"), None)
        .await;
    assert!(
        !cmds.to_string().contains("Reboot"),
        "no reboot queued by a post without CSRF: {cmds}"
    );
    // With the token it goes through (the same request otherwise).
    let csrf = page_csrf(&b).await;
    assert_eq!(
        post_from_page(
            &b,
            &format!("/ui/devices/{id}/do"),
            &format!("do=reboot&csrf={csrf}")
        )
        .await,
        0, // an opaque redirect (303) under redirect: 'manual'
    );

    // The dashboard counts it.
    b.driver.goto(format!("{url}/ui/dashboard")).await.unwrap();
    assert_eq!(b.text("#enrolled").await, "1");
    assert_eq!(b.text("#seen").await, "1");
    b.shot("dashboard").await;

    // A dynamic group: the query editor says what is wrong while typing, then how many match.
    b.driver.goto(format!("{url}/ui/groups")).await.unwrap();
    b.type_in(By::Id("g-name"), "Enterprise").await;
    let q = b.driver.find(By::Id("g-query")).await.unwrap();
    q.send_keys("os_edition ==").await.unwrap();
    let mut said = String::new();
    for _ in 0..100 {
        said = b.text("#g-preview").await;
        if said.starts_with("Column") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        said.starts_with("Column"),
        "syntax error shown inline: {said:?}"
    );
    q.send_keys(" \"72\"").await.unwrap();
    for _ in 0..100 {
        said = b.text("#g-preview").await;
        if said.contains("match") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(said, "1 of 1 devices match now.");
    b.shot("groups").await;
    b.click(By::Id("create-group")).await;
    b.text(".notice").await;
    assert!(b.text("#groups").await.contains("Enterprise"));

    // A phone-sized window still shows the device page without a horizontal page scroll.
    b.driver.set_window_rect(0, 0, 390, 844).await.unwrap();
    b.driver
        .goto(format!("{url}/ui/devices/{id}"))
        .await
        .unwrap();
    let overflow = b
        .eval("return document.documentElement.scrollWidth > window.innerWidth + 1")
        .await;
    assert_eq!(overflow, false, "page wider than a phone");
    b.shot("device-phone").await;

    // Sign out ends the session: the next page asks to sign in again.
    b.driver.set_window_rect(0, 0, 1280, 800).await.unwrap();
    b.driver.goto(format!("{url}/ui/dashboard")).await.unwrap();
    b.click(By::Css("form[action='/ui/signout'] button")).await;
    b.wait_path("/ui/signin").await;
    b.driver.goto(format!("{url}/ui/dashboard")).await.unwrap();
    b.wait_path("/ui/signin").await;

    eprintln!(
        "console end to end: {:.1} s, screenshots in {}",
        started.elapsed().as_secs_f64(),
        b.shots_dir().display()
    );
    b.quit().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_read_only_sees_no_buttons_and_forged_posts_get_403() {
    let Some((srv, b)) = start().await else {
        return;
    };
    let url = base(&srv);
    srv.create_user("bob@example.com", "Pa55word!").await;
    let info = DeviceInfo::new(72, "bob@example.com", "Pa55word!");
    let enrolled = device::enroll(&srv.client(), &info).await;
    let mut dev = ManagedDevice::new(&srv, &enrolled);
    dev.session().await;
    let (s, t) = srv
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(serde_json::json!({"name": "auditor", "role": "read-only"})),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let token = t["token"].as_str().unwrap().to_string();
    let (s, p) = srv
        .admin(
            "POST",
            "/api/v1/profiles",
            Some(serde_json::json!({"name": "Audited", "settings": [{"target": "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera", "format": "int", "data": "0"}]})),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    let (s, g) = srv
        .admin(
            "POST",
            "/api/v1/groups",
            Some(serde_json::json!({"name": "Static one"})),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let (s, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/groups/{gid}/members"),
            Some(serde_json::json!({"device_ids": [info.device_id]})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/profiles/{pid}/assignments"),
            Some(serde_json::json!({"group_id": gid})),
        )
        .await;
    assert!(s == 201 || s == 202, "{s}");

    sign_in(&b, &srv, &token).await;
    assert!(b.text("header .who").await.contains("auditor (read-only)"));
    let id = &info.device_id;
    b.driver
        .goto(format!("{url}/ui/devices/{id}"))
        .await
        .unwrap();
    assert_eq!(b.text("#device-id").await, *id);
    assert!(
        !b.has("#actions-h").await,
        "no Actions section for read-only"
    );
    assert!(
        !b.has("a.button, form[action*='/do']").await,
        "no action button"
    );
    b.driver.goto(format!("{url}/ui/users")).await.unwrap();
    assert!(!b.has("#create-user").await, "no create form for read-only");
    b.driver
        .goto(format!("{url}/ui/users/bob%40example.com"))
        .await
        .unwrap();
    assert!(!b.has("#disable-user, #delete-user, #set-password").await);
    b.shot("read-only-user").await;

    // The profile and group pages: everything shown, nothing that changes anything.
    b.driver.goto(format!("{url}/ui/profiles")).await.unwrap();
    assert!(b.text("#profiles").await.contains("Audited"));
    assert!(!b.has("#new-profile").await);
    b.driver
        .goto(format!("{url}/ui/profiles/{pid}"))
        .await
        .unwrap();
    assert!(b.text("#assignments").await.contains("Static one"));
    assert!(
        !b.has("#edit-profile, #push-profile, #delete-profile, #assign-form, .unassign, form[action*='/ui/profiles/']")
            .await,
        "no profile control for read-only"
    );
    b.driver
        .goto(format!("{url}/ui/groups/{gid}"))
        .await
        .unwrap();
    assert!(b.text("#members").await.contains(id.as_str()));
    assert!(
        !b.has(
            "#group-form, #add-form, #picks, #remove-members, #delete-group, input[type=checkbox]"
        )
        .await,
        "no group control for read-only"
    );
    b.driver
        .goto(format!("{url}/ui/profiles/new"))
        .await
        .unwrap();
    assert!(
        !b.has("#profile-form").await,
        "no profile form for read-only"
    );
    for page in [
        format!("/ui/profiles/{pid}/confirm?do=push"),
        format!("/ui/groups/{gid}/confirm?do=delete"),
    ] {
        b.driver.goto(format!("{url}{page}")).await.unwrap();
        assert!(!b.has("#confirm").await, "no confirm button: {page}");
        assert_eq!(b.text("h1").await, "Not allowed", "{page}");
    }
    b.driver.goto(format!("{url}/ui/autopilot")).await.unwrap();
    assert!(!b.has("#ap-new-profile").await);

    // A forged post with the session's own CSRF token: the service refuses it (403).
    let csrf = page_csrf(&b).await;
    for (path, fields) in [
        (
            format!("/ui/devices/{id}/do"),
            format!("do=wipe&csrf={csrf}"),
        ),
        (
            format!("/ui/devices/{id}/do"),
            format!("do=tenant-lockdown-on&csrf={csrf}"),
        ),
        (
            "/ui/users".to_string(),
            format!("upn=eve%40example.com&password=x&csrf={csrf}"),
        ),
        (
            "/ui/users/bob%40example.com/state".to_string(),
            format!("disabled=true&csrf={csrf}"),
        ),
        (
            format!("/ui/profiles/{pid}/do"),
            format!("do=push&csrf={csrf}"),
        ),
        (
            format!("/ui/profiles/{pid}/unassign"),
            format!("group_id={gid}&csrf={csrf}"),
        ),
        (
            format!("/ui/groups/{gid}/members"),
            format!("op=remove&device={id}&csrf={csrf}"),
        ),
        (
            "/ui/profiles".to_string(),
            format!("name=Evil&r0_target=.%2FDevice%2FVendor%2FMSFT%2FX&csrf={csrf}"),
        ),
    ] {
        assert_eq!(post_from_page(&b, &path, &fields).await, 403, "{path}");
    }
    let (_, u) = srv
        .admin("GET", "/api/v1/users/bob%40example.com", None)
        .await;
    assert_eq!(u["disabled"], false);
    let (s, _) = srv
        .admin("GET", "/api/v1/users/eve%40example.com", None)
        .await;
    assert_eq!(s, 404);
    let (_, cmds) = srv
        .admin("GET", &format!("/api/v1/devices/{id}/commands"), None)
        .await;
    assert!(!cmds.to_string().contains("RemoteWipe"), "{cmds}");
    let (_, p) = srv
        .admin("GET", &format!("/api/v1/profiles/{pid}"), None)
        .await;
    assert_eq!(p["version"], 1, "not pushed: {p}");
    assert_eq!(p["assignments"][0], gid.as_str(), "still assigned: {p}");
    let (_, m) = srv
        .admin("GET", &format!("/api/v1/groups/{gid}/members"), None)
        .await;
    assert_eq!(m["members"].as_array().map(Vec::len), Some(1), "{m}");

    // Revoking the token ends the session at the next request.
    let (s, _) = srv.admin("DELETE", "/api/v1/tokens/auditor", None).await;
    assert_eq!(s, 204);
    b.driver.goto(format!("{url}/ui/devices")).await.unwrap();
    b.wait_path("/ui/signin").await;

    // A wrong token is refused on the form.
    b.type_in(By::Id("token"), "wmdm_auditor_nope").await;
    b.click(By::Id("signin")).await;
    assert!(b.text("#signin-error").await.contains("not valid"));
    tokio::time::sleep(Duration::from_millis(1)).await;
    b.quit().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_autopilot_csv_row_errors_and_profile_rules() {
    let Some((srv, b)) = start().await else {
        return;
    };
    let url = base(&srv);
    sign_in(&b, &srv, ADMIN_TOKEN).await;

    // A hardware-hash CSV with one bad row: the good rows are imported, the bad one is shown
    // with its content and its error.
    let h = crate::autopilot::hash(5, 64);
    let csv = format!(
        "{}\r\nCSV-GOOD-1,,{h},Kiosk,\r\nCSV-BAD-2,,not base64 at all!,Kiosk,\r\nCSV-GOOD-3,,{},,\r\n",
        crate::autopilot::HEADER,
        crate::autopilot::hash(6, 64)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hashes.csv");
    std::fs::write(&file, &csv).unwrap();
    b.driver.goto(format!("{url}/ui/autopilot")).await.unwrap();
    b.type_in(By::Id("csv"), file.to_str().unwrap()).await;
    b.click(By::Id("ap-import")).await;
    assert_eq!(b.text("#ap-imported").await, "2");
    assert_eq!(b.text("#ap-refused").await, "1");
    let bad = b
        .driver
        .find(By::Css("#ap-row-errors tr[data-row='3']"))
        .await
        .expect("row 3 (the header is row 1) is listed");
    let text = bad.text().await.unwrap();
    assert!(text.contains("CSV-BAD-2"), "the row's content: {text}");
    let err = bad
        .find(By::Css(".row-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The error is the CSV reader's own for that row (one implementation of the rule).
    let parsed = winmdm::autopilot::csv::parse(csv.as_bytes(), 100).unwrap();
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(parsed.errors[0].row, 3);
    assert_eq!(err, parsed.errors[0].error);
    let (_, api) = srv.admin("GET", "/api/v1/autopilot/devices", None).await;
    assert_eq!(api["devices"].as_array().map(Vec::len), Some(2), "{api}");
    let devices = b.text("#ap-devices").await;
    assert!(
        devices.contains("CSV-GOOD-1") && devices.contains("CSV-GOOD-3"),
        "{devices}"
    );
    b.eval("document.getElementById('ap-report').scrollIntoView(); return 0")
        .await;
    b.shot("autopilot-import").await;

    // A profile breaking a seed rule: said while filling the form, refused on save, and why.
    b.click(By::Id("ap-new-profile")).await;
    b.text("#ap-profile").await;
    b.type_in(By::Id("f-name"), "HoloLens kiosk").await;
    b.click(By::Css("#f-device_type option[value='hololens']"))
        .await;
    let live = b.text("#err-deployment_mode").await;
    assert!(
        live.contains("self-deploying"),
        "live rule message: {live:?}"
    );
    assert_eq!(
        b.eval("return document.getElementById('f-deployment_mode').getAttribute('aria-invalid')")
            .await,
        "true"
    );
    b.shot("autopilot-profile-rule").await;
    b.click(By::Id("ap-save")).await;
    let refused = b.text("#ap-error").await;
    assert!(
        refused.contains("HoloLens profiles must use the self-deploying deployment mode"),
        "{refused}"
    );
    assert_eq!(
        b.eval("return document.getElementById('f-name').value")
            .await,
        "HoloLens kiosk"
    );
    let (_, profiles) = srv.admin("GET", "/api/v1/autopilot/profiles", None).await;
    assert_eq!(
        profiles["profiles"].as_array().map(Vec::len),
        Some(0),
        "{profiles}"
    );
    // Fixed: the message goes as soon as the rule holds, and the profile is saved.
    b.click(By::Css("#f-deployment_mode option[value='self-deploying']"))
        .await;
    assert_eq!(
        b.eval("return document.getElementById('err-deployment_mode').textContent")
            .await,
        ""
    );
    b.click(By::Id("ap-save")).await;
    b.wait_path("/ui/autopilot").await;
    assert!(b.text("#ap-profiles").await.contains("HoloLens kiosk"));
    let (_, profiles) = srv.admin("GET", "/api/v1/autopilot/profiles", None).await;
    assert_eq!(profiles["profiles"][0]["deployment_mode"], "self-deploying");
    b.quit().await;
    srv.stop().await;
}
