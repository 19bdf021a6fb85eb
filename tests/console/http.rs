//! The console's sessions, CSRF and headers over plain HTTPS (no browser: these run everywhere).

use crate::support::{HttpResponse, TestServer, ADMIN_TOKEN};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn cookie_of(r: &HttpResponse) -> String {
    let set = r
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("set-cookie")
        .to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    set.split(';').next().unwrap().to_string()
}

async fn sign_in(srv: &TestServer, token: &str) -> HttpResponse {
    srv.client()
        .request(
            "POST",
            "/ui/signin",
            &[FORM],
            format!("token={}", winmdm::ui::form::enc(token)).into_bytes(),
        )
        .await
}

async fn get(srv: &TestServer, path: &str, cookie: &str) -> HttpResponse {
    srv.client()
        .request("GET", path, &[("cookie", cookie)], Vec::new())
        .await
}

fn csrf_in(page: &str) -> String {
    let i = page.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    page[i..i + 64].to_string()
}

#[tokio::test]
async fn sessions_are_bound_to_their_token_and_bounded() {
    let srv = TestServer::start().await;
    // Not signed in: to the sign-in page; every answer has the security headers.
    let r = srv
        .client()
        .request("GET", "/ui/devices", &[], Vec::new())
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/ui/signin");
    let h = &r.headers;
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.contains_key("referrer-policy"));
    // Wrong tokens are refused.
    for bad in ["", "nope", "wmdm_ghost_abc", &"x".repeat(5000)] {
        assert_eq!(sign_in(&srv, bad).await.status, 401, "{bad:.20}");
    }

    // A named token's session ends when the token is revoked, and stays ended when a token of
    // the same name is created again (the session is bound to the secret, not the name).
    let (_, t) = srv
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(serde_json::json!({"name": "ops", "role": "admin"})),
        )
        .await;
    let token = t["token"].as_str().unwrap().to_string();
    let r = sign_in(&srv, &token).await;
    assert_eq!(r.status, 303);
    let cookie = cookie_of(&r);
    let page = get(&srv, "/ui/dashboard", &cookie).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("ops (admin)"));
    srv.admin("DELETE", "/api/v1/tokens/ops", None).await;
    srv.admin(
        "POST",
        "/api/v1/tokens",
        Some(serde_json::json!({"name": "ops", "role": "admin"})),
    )
    .await;
    let r = get(&srv, "/ui/dashboard", &cookie).await;
    assert_eq!(
        r.status, 303,
        "revoked, then re-created under the same name: still ended"
    );

    // Sessions per token are bounded: the oldest goes.
    let first = cookie_of(&sign_in(&srv, ADMIN_TOKEN).await);
    // Sessions are ordered by their sign-in second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut last = String::new();
    for _ in 0..winmdm::ui::session::MAX_SESSIONS_PER_TOKEN + 4 {
        last = cookie_of(&sign_in(&srv, ADMIN_TOKEN).await);
    }
    let (all, _) = winmdm::ui::session::SESSIONS
        .page(srv.app.store.records(), None, 1000)
        .unwrap();
    let bootstrap = all
        .iter()
        .filter(|(_, s)| s.token_name == "bootstrap")
        .count();
    assert_eq!(bootstrap, winmdm::ui::session::MAX_SESSIONS_PER_TOKEN);
    assert_eq!(get(&srv, "/ui/dashboard", &first).await.status, 303);
    assert_eq!(get(&srv, "/ui/dashboard", &last).await.status, 200);
    // The store holds no usable cookie: keys are digests of the session ids.
    let id = last.split('=').nth(1).unwrap();
    assert!(all.iter().all(|(k, _)| k != id));

    // CSRF and origin on POST.
    let page = get(&srv, "/ui/users", &last).await.text();
    let csrf = csrf_in(&page);
    let post = |fields: String, extra: Vec<(&'static str, String)>| {
        let c = srv.client();
        let last = last.clone();
        async move {
            let mut h: Vec<(&str, &str)> = vec![FORM, ("cookie", last.as_str())];
            for (k, v) in &extra {
                h.push((k, v.as_str()));
            }
            c.request("POST", "/ui/users", &h, fields.into_bytes())
                .await
        }
    };
    let body = |csrf: &str| format!("upn=zed%40example.com&password=pw&csrf={csrf}");
    assert_eq!(post(body(""), vec![]).await.status, 403, "no CSRF token");
    assert_eq!(
        post(body(&"0".repeat(64)), vec![]).await.status,
        403,
        "wrong CSRF token"
    );
    assert_eq!(
        post(body(&csrf), vec![("origin", "https://evil.example".into())])
            .await
            .status,
        403,
        "cross-site origin"
    );
    let (s, _) = srv
        .admin("GET", "/api/v1/users/zed%40example.com", None)
        .await;
    assert_eq!(s, 404, "nothing created by the refused posts");
    let r = post(body(&csrf), vec![]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let (s, _) = srv
        .admin("GET", "/api/v1/users/zed%40example.com", None)
        .await;
    assert_eq!(s, 200);
    srv.stop().await;
}

#[tokio::test]
async fn a_read_only_session_is_refused_every_change_by_the_service() {
    let srv = TestServer::start().await;
    srv.create_user("kim@example.com", "Pa55word!").await;
    let (_, t) = srv
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(serde_json::json!({"name": "viewer", "role": "read-only"})),
        )
        .await;
    let cookie = cookie_of(&sign_in(&srv, t["token"].as_str().unwrap()).await);
    let page = get(&srv, "/ui/users/kim%40example.com", &cookie)
        .await
        .text();
    assert!(!page.contains("id=\"disable-user\""), "no button");
    let csrf = csrf_in(&page);
    for (path, fields) in [
        (
            "/ui/users",
            format!("upn=x%40example.com&password=p&csrf={csrf}"),
        ),
        (
            "/ui/users/kim%40example.com/state",
            format!("disabled=true&csrf={csrf}"),
        ),
        (
            "/ui/users/kim%40example.com/password",
            format!("password=new&csrf={csrf}"),
        ),
        ("/ui/users/kim%40example.com/delete", format!("csrf={csrf}")),
        (
            "/ui/users/kim%40example.com/invite",
            format!("hours=1&csrf={csrf}"),
        ),
        (
            "/ui/autopilot/settings",
            format!("tenant_lockdown=on&csrf={csrf}"),
        ),
        ("/ui/devices/NOPE/do", format!("do=wipe&csrf={csrf}")),
        ("/ui/tokens", format!("name=mine&role=admin&csrf={csrf}")),
        (
            "/ui/users/kim%40example.com/package",
            format!("csrf={csrf}"),
        ),
        ("/ui/tokens/viewer/revoke", format!("csrf={csrf}")),
    ] {
        let r = srv
            .client()
            .request(
                "POST",
                path,
                &[FORM, ("cookie", cookie.as_str())],
                fields.into_bytes(),
            )
            .await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(
            r.text().contains("read-only"),
            "{path}: the service's reason"
        );
    }
    let (_, u) = srv
        .admin("GET", "/api/v1/users/kim%40example.com", None)
        .await;
    assert_eq!(u["disabled"], false);
    let (_, a) = srv.admin("GET", "/api/v1/audit", None).await;
    let actions: Vec<&str> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "viewer")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["console.sign_in"],
        "the read-only token changed nothing"
    );
    srv.stop().await;
}

#[tokio::test]
async fn bulk_packages_are_downloaded_listed_and_revoked_on_the_user_page() {
    let srv = TestServer::start().await;
    let upn = "windows-bulkenroll-lab@example.com";
    srv.create_user(upn, "Pa55word!").await;
    let cookie = cookie_of(&sign_in(&srv, ADMIN_TOKEN).await);
    let href = format!("/ui/users/{}", winmdm::ui::form::enc(upn));
    let page = get(&srv, &href, &cookie).await.text();
    assert!(page.contains("id=\"download-package\""));
    let csrf = csrf_in(&page);
    let r = srv
        .client()
        .request(
            "POST",
            &format!("{href}/package"),
            &[FORM, ("cookie", cookie.as_str())],
            format!("csrf={csrf}").into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"customizations-"));
    let (_, u) = srv
        .admin(
            "GET",
            &format!("/api/v1/users/{}", winmdm::ui::form::enc(upn)),
            None,
        )
        .await;
    let id = u["bulk_packages"][0]["package_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        r.text().contains(&id),
        "the customizations carry the package"
    );
    let page = get(&srv, &href, &cookie).await.text();
    assert!(page.contains(&id), "listed on the user page");
    let r = srv
        .client()
        .request(
            "POST",
            &format!("/ui/packages/{id}/revoke"),
            &[FORM, ("cookie", cookie.as_str())],
            format!("csrf={csrf}&back={}", winmdm::ui::form::enc(&href)).into_bytes(),
        )
        .await;
    assert_eq!(r.status, 303);
    let (_, u) = srv
        .admin(
            "GET",
            &format!("/api/v1/users/{}", winmdm::ui::form::enc(upn)),
            None,
        )
        .await;
    assert_eq!(u["bulk_packages"].as_array().map(Vec::len), Some(0), "{u}");
    // An ordinary user's page offers no package.
    srv.create_user("ann@example.com", "Pa55word!").await;
    let page = get(&srv, "/ui/users/ann%40example.com", &cookie)
        .await
        .text();
    assert!(!page.contains("download-package"));
    srv.stop().await;
}

/// A metrics token scrapes `/metrics` and nothing else: no console session, no API route.
#[tokio::test]
async fn a_metrics_token_gets_no_console_session() {
    let srv = TestServer::start().await;
    let (st, t) = srv
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(serde_json::json!({"name": "prom", "role": "metrics"})),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let token = t["token"].as_str().unwrap().to_string();
    let r = sign_in(&srv, &token).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.headers.get("set-cookie").is_none(), "no session cookie");
    let (st, _) = srv
        .client()
        .admin("GET", "/api/v1/devices", None, Some(&token))
        .await;
    assert_eq!(st, 403);
    let r = srv
        .client()
        .request(
            "GET",
            "/metrics",
            &[("authorization", &format!("Bearer {token}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn the_user_page_sends_the_invitation_by_email() {
    let (smtp, seen) = crate::support::smtp::fake_smtp().await;
    let srv = TestServer::start_with(|o| {
        o.smtp_url = Some(format!("smtp://127.0.0.1:{}", smtp.port()));
        o.smtp_from = Some("Contoso MDM <mdm@contoso.com>".into());
    })
    .await;
    srv.create_user("hana@contoso.com", "pw-hana-1").await;
    let cookie = cookie_of(&sign_in(&srv, ADMIN_TOKEN).await);
    let page = get(&srv, "/ui/users/hana%40contoso.com", &cookie).await;
    assert_eq!(page.status, 200);
    let page = page.text();
    assert!(
        page.contains("name=\"send_email\"") && !page.contains("no SMTP server configured"),
        "the send box is offered"
    );
    let csrf = csrf_in(&page);
    let r = srv
        .client()
        .request(
            "POST",
            "/ui/users/hana%40contoso.com/invite",
            &[FORM, ("cookie", &cookie)],
            format!("csrf={csrf}&send_email=true").into_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let shown = r.text();
    assert!(shown.contains("id=\"inv-sent\""), "said sent: {shown}");
    let i = shown
        .find("id=\"inv-link\" readonly value=\"")
        .expect("link")
        + 30;
    let link = &shown[i..i + shown[i..].find('"').unwrap()];
    assert!(link.contains("/enroll/invite/"), "{link}");
    // The message the SMTP server received carries that very link, to that user.
    let (commands, data) = {
        let seen = seen.lock().unwrap();
        (seen.commands.clone(), seen.data.clone())
    };
    assert!(
        commands
            .iter()
            .any(|c| c.eq_ignore_ascii_case("RCPT TO:<hana@contoso.com>")),
        "{commands:?}"
    );
    assert!(data.contains(link), "link in the mail: {data}");
    // And the audit log says the console's token sent it.
    let (_, audit) = srv.admin("GET", "/api/v1/audit", None).await;
    assert!(audit.to_string().contains("invitation.create"), "{audit}");
    srv.stop().await;
}

/// `apply_records` calls the store has answered so far (the metrics' count).
fn record_writes(srv: &TestServer) -> u64 {
    let text = srv.app.metrics.render(&srv.app);
    text.lines()
        .find(|l| {
            l.contains("store_operation_duration_seconds_count")
                && l.contains("op=\"apply_records\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map(|n| n as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn refused_enrollments_are_bounded_and_cost_no_store_write_each() {
    use winmdm::mdm::refusals::{self, MAX_KEPT, REFUSALS, WINDOW_SECS};
    // The real time: the TLS layer checks the certificates (issued at the app clock's time)
    // against it.
    let now = winmdm::clock::Clock::now_unix(&winmdm::clock::SystemClock);
    let clock = crate::support::TestClock::at(now);
    let srv = TestServer::start_with_clock(std::sync::Arc::new(clock.clone()), |_| {}).await;
    let before = record_writes(&srv);
    let started = std::time::Instant::now();
    // More refused requests than the bound, unauthenticated (a wrong Content-Type: refused
    // before the body is read), each with a long reason.
    let c = srv.client();
    let junk = "x".repeat(2000);
    let n = MAX_KEPT as usize + 200;
    for _ in 0..n {
        let r = c
            .request(
                "POST",
                "/EnrollmentServer/Discovery.svc",
                &[("content-type", junk.as_str())],
                Vec::new(),
            )
            .await;
        assert_eq!(r.status, 415);
    }
    let writes = record_writes(&srv) - before;
    let ticks = started.elapsed().as_secs() / refusals::FLUSH_EVERY.as_secs() + 2;
    assert!(
        writes <= ticks,
        "{n} refusals cost {writes} store writes (at most one per flush: {ticks})"
    );
    // The API shows the newest MAX_KEPT, and the store holds no more than that.
    let (s, api) = srv.admin("GET", "/api/v1/enrollments/refused", None).await;
    assert_eq!(s, 200, "{api}");
    assert_eq!(api["count"], MAX_KEPT, "bounded: {}", api["count"]);
    assert_eq!(api["by_kind"]["MessageFormat"], MAX_KEPT);
    let first = &api["refusals"][0];
    assert_eq!(first["endpoint"], "discovery");
    assert!(
        first["detail"].as_str().unwrap().len() <= refusals::MAX_DETAIL,
        "clipped: {first}"
    );
    let stored = REFUSALS.all(srv.app.store.records()).unwrap();
    assert_eq!(stored.len() as u64, MAX_KEPT);
    // A second wave wraps the ring instead of growing the store.
    for _ in 0..10 {
        c.request(
            "POST",
            "/EnrollmentServer/Discovery.svc",
            &[("content-type", "text/plain")],
            Vec::new(),
        )
        .await;
    }
    let (_, api) = srv.admin("GET", "/api/v1/enrollments/refused", None).await;
    assert_eq!(api["count"], MAX_KEPT);
    assert_eq!(
        REFUSALS.all(srv.app.store.records()).unwrap().len() as u64,
        MAX_KEPT
    );
    // A day later they are out of the window, and pruned from the store.
    clock.set(now + WINDOW_SECS + 1);
    let (_, api) = srv.admin("GET", "/api/v1/enrollments/refused", None).await;
    assert_eq!(api["count"], 0, "{api}");
    assert_eq!(refusals::prune(&srv.app).unwrap() as u64, MAX_KEPT);
    assert!(REFUSALS.all(srv.app.store.records()).unwrap().is_empty());
    srv.stop().await;
}
