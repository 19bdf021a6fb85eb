//! Invitations: answer shape, landing page (HTML, 404/410), one-time use by enrollment, expiry,
//! revocation, errors, and the e-mail through a fake SMTP server.

use serde_json::{json, Value};

use super::audit;
use crate::support::device::{self, DeviceInfo};
use crate::support::smtp::fake_smtp;
use crate::support::{HttpResponse, TestServer};

async fn invite(srv: &TestServer, body: Value) -> (u16, Value) {
    srv.admin("POST", "/api/v1/invitations", Some(body)).await
}

async fn landing(srv: &TestServer, url: &str) -> HttpResponse {
    srv.client().request("GET", url, &[], vec![]).await
}

fn list_entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

#[tokio::test]
async fn invitation_landing_page_and_one_time_use() {
    let srv = TestServer::start().await;
    srv.create_user("Dana+Ops@Example.com", "pw-dana-1").await;
    srv.create_user("eve@example.com", "pw-eve-12").await;
    let (st, inv) = invite(&srv, json!({"upn": "dana+ops@example.com"})).await;
    assert_eq!(st, 201, "{inv}");
    let base = format!("https://localhost:{}", srv.addr.port());
    let discovery = format!("{base}/EnrollmentServer/Discovery.svc");
    let deep = format!(
        "ms-device-enrollment:?mode=mdm&username=dana%2Bops%40example.com&servername={discovery}"
    );
    assert_eq!(inv["deep_link"], deep.as_str());
    assert_eq!(inv["upn"], "dana+ops@example.com");
    assert_eq!(inv["sent"], false);
    let landing_url = inv["landing_url"].as_str().unwrap().to_string();
    let token = landing_url
        .strip_prefix(&format!("{base}/enroll/invite/"))
        .expect("landing URL on the public URL")
        .to_string();
    assert_eq!(token.len(), 64);
    let expires = inv["expires_at"].as_i64().unwrap();
    let now = srv.app.clock.now_unix();
    assert!((expires - now - 72 * 3600).abs() < 60, "default 72 h");
    let msg = inv["message"].as_str().unwrap();
    for part in [
        deep.as_str(),
        landing_url.as_str(),
        "Settings > Accounts > Access work or school",
        "Enroll only in device management",
        "dana+ops@example.com",
    ] {
        assert!(msg.contains(part), "message lacks {part:?}: {msg}");
    }
    let id = inv["id"].as_str().unwrap().to_string();

    // The store keeps only a digest of the link token.
    let r = srv.app.store.records();
    for kind in ["invitation", "invitation_token", "invitation_user"] {
        for (k, v) in r.scan_records(kind, None, 1000).unwrap() {
            assert!(!k.contains(&token) && !String::from_utf8_lossy(&v).contains(&token));
        }
    }

    // The landing page: no admin token needed, accessible HTML, escaped.
    let page = landing(&srv, &landing_url).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.headers["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    assert_eq!(page.headers["cache-control"], "no-store");
    let html = page.text();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("<title>") && html.contains("<h1>") && html.contains("<h2>"));
    assert!(!html.contains("<script"));
    let escaped_link = deep.replace('&', "&amp;");
    assert!(
        html.contains(&format!("href=\"{escaped_link}\"")),
        "deep link button: {html}"
    );
    assert!(html.contains("Enroll only in device management"));
    assert!(html.contains("<strong>dana+ops@example.com</strong>"));
    assert_eq!(html.matches("<li>").count(), 3, "three steps");

    // Unknown, malformed and other-method requests.
    let other = format!("{base}/enroll/invite/{}", "a".repeat(64));
    let r404 = landing(&srv, &other).await;
    assert_eq!(r404.status, 404);
    assert!(r404.text().contains("<html lang=\"en\">"));
    assert_eq!(
        landing(&srv, &format!("{base}/enroll/invite/x"))
            .await
            .status,
        404
    );
    assert_eq!(
        landing(
            &srv,
            &format!("{base}/enroll/invite/{}", token.to_uppercase())
        )
        .await
        .status,
        404
    );

    // Another user's enrollment does not use it; the invited user's does.
    device::enroll(
        &srv.client(),
        &DeviceInfo::new(511, "eve@example.com", "pw-eve-12"),
    )
    .await;
    assert_eq!(landing(&srv, &landing_url).await.status, 200);
    let info = DeviceInfo::new(512, "dana+ops@example.com", "pw-dana-1");
    device::enroll(&srv.client(), &info).await;
    let used = landing(&srv, &landing_url).await;
    assert_eq!(used.status, 410, "{}", used.text());
    assert!(used.text().contains("already used"));
    let (_, list) = srv.admin("GET", "/api/v1/invitations", None).await;
    let e = list_entry(&list, &id);
    assert_eq!(e["state"], "used");
    assert_eq!(e["used_by_device"], info.device_id.as_str());
    assert!(e["used_at"].is_number());
    let (st, v) = srv
        .admin("DELETE", &format!("/api/v1/invitations/{id}"), None)
        .await;
    assert_eq!(st, 409, "a used invitation cannot be revoked: {v}");

    // A new invitation after that enrollment is open; revoked → 410; revoke twice → 409.
    let (_, inv2) = invite(
        &srv,
        json!({"upn": "dana+ops@example.com", "expires_in_hours": 1}),
    )
    .await;
    let url2 = inv2["landing_url"].as_str().unwrap().to_string();
    assert_eq!(landing(&srv, &url2).await.status, 200);
    let id2 = inv2["id"].as_str().unwrap().to_string();
    let (st, _) = srv
        .admin("DELETE", &format!("/api/v1/invitations/{id2}"), None)
        .await;
    assert_eq!(st, 204);
    let gone = landing(&srv, &url2).await;
    assert_eq!(gone.status, 410);
    assert!(gone.text().contains("revoked"));
    let (st, _) = srv
        .admin("DELETE", &format!("/api/v1/invitations/{id2}"), None)
        .await;
    assert_eq!(st, 409);
    let (st, _) = srv
        .admin("DELETE", "/api/v1/invitations/inv-nope", None)
        .await;
    assert_eq!(st, 404);

    // Expired (the clock moved past expires_at) → 410 and listed as expired.
    let (_, inv3) = invite(&srv, json!({"upn": "eve@example.com"})).await;
    let id3 = inv3["id"].as_str().unwrap().to_string();
    winmdm::admin::invitations::INVITES
        .update(srv.app.store.records(), &id3, |i| {
            Ok(i.map(|i| winmdm::admin::invitations::Invitation {
                expires_at: now - 1,
                ..i
            }))
        })
        .unwrap();
    let expired = landing(&srv, inv3["landing_url"].as_str().unwrap()).await;
    assert_eq!(expired.status, 410);
    assert!(expired.text().contains("expired"));
    // An expired invitation is not "used" by a later enrollment.
    device::enroll(
        &srv.client(),
        &DeviceInfo::new(513, "eve@example.com", "pw-eve-12"),
    )
    .await;
    let (_, list) = srv.admin("GET", "/api/v1/invitations?limit=2", None).await;
    assert_eq!(list["invitations"].as_array().unwrap().len(), 2);
    let next = list["next"].as_str().expect("a second page").to_string();
    let (_, p2) = srv
        .admin("GET", &format!("/api/v1/invitations?cursor={next}"), None)
        .await;
    let e3 = list_entry(&p2, &id3);
    assert_eq!(e3["state"], "expired");
    assert!(e3["used_at"].is_null());
    // Oldest first across pages.
    let ids: Vec<String> = list["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["invitations"].as_array().unwrap())
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [id.clone(), id2.clone(), id3.clone()]);

    // A user disabled after the invitation: the page refuses (410).
    let (_, inv4) = invite(&srv, json!({"upn": "eve@example.com"})).await;
    srv.admin(
        "PATCH",
        "/api/v1/users/eve@example.com",
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(
        landing(&srv, inv4["landing_url"].as_str().unwrap())
            .await
            .status,
        410
    );

    // Creation errors.
    for (body, want) in [
        (json!({"upn": "nobody@example.com"}), 404),
        (json!({"upn": "eve@example.com"}), 409),
        (
            json!({"upn": "dana+ops@example.com", "expires_in_hours": 0}),
            400,
        ),
        (
            json!({"upn": "dana+ops@example.com", "expires_in_hours": 721}),
            400,
        ),
        (
            json!({"upn": "dana+ops@example.com", "expires_in_hours": -1}),
            400,
        ),
        (json!({"upn": "a b"}), 400),
        (
            json!({"upn": "dana+ops@example.com", "send_email": "yes"}),
            400,
        ),
    ] {
        let (st, v) = invite(&srv, body.clone()).await;
        assert_eq!(st, want, "{body} → {v}");
        assert!(v["error"].is_string());
    }
    let actions: Vec<String> = audit(&srv)
        .await
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("invitation."))
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        [
            "invitation.create",
            "invitation.create",
            "invitation.revoke",
            "invitation.create",
            "invitation.create"
        ]
    );
    srv.stop().await;
}

#[tokio::test]
async fn invitation_email_goes_through_smtp() {
    let (smtp, seen) = fake_smtp().await;
    let srv = TestServer::start_with(|o| {
        o.smtp_url = Some(format!("smtp://127.0.0.1:{}", smtp.port()));
        o.smtp_from = Some("Contoso MDM <mdm@contoso.com>".into());
        o.service_name = Some("Contoso MDM".into());
    })
    .await;
    srv.create_user("frank@contoso.com", "pw-frank-1").await;
    let (st, inv) = invite(
        &srv,
        json!({"upn": "frank@contoso.com", "send_email": true}),
    )
    .await;
    assert_eq!(st, 201, "{inv}");
    assert_eq!(inv["sent"], true, "{inv}");
    let deep = inv["deep_link"].as_str().unwrap();
    {
        let s = seen.lock().unwrap();
        assert!(
            s.commands
                .iter()
                .any(|c| c.eq_ignore_ascii_case("RCPT TO:<frank@contoso.com>")),
            "{:?}",
            s.commands
        );
        assert!(s
            .commands
            .iter()
            .any(|c| c.eq_ignore_ascii_case("MAIL FROM:<mdm@contoso.com>")));
        let headers: Vec<&str> = s.data.split("\r\n\r\n").next().unwrap().lines().collect();
        assert!(
            headers.iter().any(|h| h.starts_with("From:")
                && h.contains("<mdm@contoso.com>")
                && h.contains("Contoso MDM")),
            "{headers:?}"
        );
        assert!(headers.contains(&"To: frank@contoso.com"), "{headers:?}");
        assert!(
            headers.contains(&"Subject: Enroll your Windows device in Contoso MDM"),
            "{headers:?}"
        );
        let body = s.data.split_once("\r\n\r\n").unwrap().1;
        assert!(body.contains(deep), "body lacks the deep link: {body}");
        assert!(body.contains(inv["landing_url"].as_str().unwrap()));
    }
    let (_, list) = srv.admin("GET", "/api/v1/invitations", None).await;
    assert_eq!(list["invitations"][0]["sent"], true);
    // Not asked to send: nothing goes out.
    let n = seen.lock().unwrap().commands.len();
    let (_, inv2) = invite(&srv, json!({"upn": "frank@contoso.com"})).await;
    assert_eq!(inv2["sent"], false);
    assert_eq!(seen.lock().unwrap().commands.len(), n);
    assert!(
        !seen
            .lock()
            .unwrap()
            .commands
            .iter()
            .any(|c| c.starts_with("AUTH")),
        "no credentials configured, no AUTH"
    );
    srv.stop().await;

    // With a user in the URL and its password (WINMDM_SMTP_PASSWORD): AUTH PLAIN with both.
    let (smtp, seen) = fake_smtp().await;
    let srv = TestServer::start_with(|o| {
        o.smtp_url = Some(format!("smtp://mailer@127.0.0.1:{}", smtp.port()));
        o.smtp_from = Some("mdm@contoso.com".into());
        o.smtp_password = Some("mail-pw-1".into());
    })
    .await;
    srv.create_user("frank@contoso.com", "pw-frank-1").await;
    let (st, inv) = invite(
        &srv,
        json!({"upn": "frank@contoso.com", "send_email": true}),
    )
    .await;
    assert_eq!((st, inv["sent"].clone()), (201, json!(true)), "{inv}");
    let plain = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        b"\0mailer\0mail-pw-1",
    );
    assert!(
        seen.lock()
            .unwrap()
            .commands
            .contains(&format!("AUTH PLAIN {plain}")),
        "{:?}",
        seen.lock().unwrap().commands
    );
    srv.stop().await;

    // Without SMTP configured, or with an unreachable server: 201, sent false, the reason, the text.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let srv = TestServer::start_with(|o| {
        o.smtp_url = Some(format!("smtp://127.0.0.1:{dead_port}"));
        o.smtp_from = Some("mdm@contoso.com".into());
    })
    .await;
    srv.create_user("gina@contoso.com", "pw-gina-1").await;
    let (st, inv) = invite(&srv, json!({"upn": "gina@contoso.com", "send_email": true})).await;
    assert_eq!(st, 201, "{inv}");
    assert_eq!(inv["sent"], false);
    assert!(
        inv["send_error"].as_str().unwrap().contains("SMTP"),
        "{inv}"
    );
    assert!(inv["message"]
        .as_str()
        .unwrap()
        .contains("ms-device-enrollment:"));
    srv.stop().await;
    let srv = TestServer::start().await;
    srv.create_user("gina@contoso.com", "pw-gina-1").await;
    let (st, inv) = invite(&srv, json!({"upn": "gina@contoso.com", "send_email": true})).await;
    assert_eq!(st, 201);
    assert_eq!(inv["sent"], false);
    assert!(
        inv["send_error"].as_str().unwrap().contains("no SMTP"),
        "{inv}"
    );
    srv.stop().await;
}
