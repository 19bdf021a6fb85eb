//! The console's trace pages over HTTPS: start tracing from the device page, the device checks
//! in, the trace page shows the conversation with our command's status code, the export is the
//! trace file; a read-only session sees no trace section and its forged start is refused.

use crate::console::http::{cookie_of, csrf_in, get, sign_in, FORM};
use crate::manage::{enrolled, queue};
use crate::support::{TestServer, ADMIN_TOKEN};

#[tokio::test]
async fn tracing_from_the_device_page() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 74).await;
    let dev = d.device_id.clone();
    let cookie = cookie_of(&sign_in(&srv, ADMIN_TOKEN).await);
    let page = get(&srv, &format!("/ui/devices/{dev}"), &cookie)
        .await
        .text();
    assert!(page.contains("id=\"trace-start\""), "{page}");
    let csrf = csrf_in(&page);
    let post = |body: String| {
        let c = cookie.clone();
        let srv = &srv;
        let dev = dev.clone();
        async move {
            srv.client()
                .request(
                    "POST",
                    &format!("/ui/devices/{dev}/trace"),
                    &[FORM, ("cookie", c.as_str())],
                    body.into_bytes(),
                )
                .await
        }
    };
    // A bad number is refused with the field's reason, nothing started.
    let r = post(format!("csrf={csrf}&do=start&minutes=soon&sessions=2")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("minutes must be a whole number"));
    // Without the CSRF token: refused.
    let r = post("do=start&minutes=5&sessions=2".into()).await;
    assert_eq!(r.status, 403);
    let r = post(format!(
        "csrf={csrf}&do=start&minutes=5&sessions=2&note=why+%3Cb%3E"
    ))
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let page = get(&srv, &format!("/ui/devices/{dev}"), &cookie)
        .await
        .text();
    assert!(page.contains("id=\"trace-stop\""), "{page}");
    queue(
        &srv,
        &dev,
        serde_json::json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "console-swv"}),
    )
    .await;
    d.session().await;
    let page = get(&srv, &format!("/ui/devices/{dev}"), &cookie)
        .await
        .text();
    let i = page
        .find(&format!("/ui/devices/{dev}/traces/"))
        .expect("trace link");
    let href: String = page[i..].chars().take_while(|c| *c != '"').collect();
    let trace = get(&srv, &href, &cookie).await;
    assert_eq!(trace.status, 200);
    let t = trace.text();
    assert!(t.contains("#1 management"), "{t}");
    assert!(t.contains("./DevDetail/SwV"), "{t}");
    assert!(
        t.contains("200 "),
        "the Get's status code with its meaning: {t}"
    );
    assert!(t.contains("console-swv"), "delivered from the queue: {t}");
    assert!(
        t.contains("why &#60;b&#62;") && !t.contains("why <b>"),
        "the note is escaped: {t}"
    );
    let export = get(&srv, &format!("{href}/export"), &cookie).await;
    assert_eq!(export.status, 200);
    assert_eq!(export.headers["content-type"], "application/x-ndjson");
    let parsed = winmdm::trace::Trace::parse(&export.text()).expect("the export parses");
    assert_eq!(parsed.header.device_id.as_deref(), Some(dev.as_str()));
    // Stop from the page.
    let page = get(&srv, &format!("/ui/devices/{dev}"), &cookie)
        .await
        .text();
    let r = post(format!("csrf={}&do=stop", csrf_in(&page))).await;
    assert_eq!(r.status, 303);
    let page = get(&srv, &format!("/ui/devices/{dev}"), &cookie)
        .await
        .text();
    assert!(page.contains("stopped (admin)"), "{page}");

    // A read-only session: no trace section, the trace page and a forged start are refused.
    let (st, tok) = srv
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(serde_json::json!({"name": "viewer", "role": "read-only"})),
        )
        .await;
    assert_eq!(st, 201, "{tok}");
    let ro = cookie_of(&sign_in(&srv, tok["token"].as_str().unwrap()).await);
    let page = get(&srv, &format!("/ui/devices/{dev}"), &ro).await.text();
    assert!(
        !page.contains("traces-h") && !page.contains(&href),
        "{page}"
    );
    assert_eq!(get(&srv, &href, &ro).await.status, 403);
    let r = srv
        .client()
        .request(
            "POST",
            &format!("/ui/devices/{dev}/trace"),
            &[FORM, ("cookie", ro.as_str())],
            format!("csrf={}&do=start", csrf_in(&page)).into_bytes(),
        )
        .await;
    assert_eq!(r.status, 403);
    srv.stop().await;
}
