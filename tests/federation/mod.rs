//! Issue #7: federated enrollment through our login page, Entra ID access tokens, and the Entra
//! terms-of-use page — end to end over HTTPS against a TestServer, with every refusal checked
//! for its fault and for the absence of any issued certificate.

use base64::Engine as _;
use serde_json::{json, Value};
use winmdm::ca::KeyAlgorithm;
use winmdm::federation::testing::{EntraKey, AUDIENCE, TENANT};
use winmdm::soap::client;
use winmdm::soap::envelope::Credential;

use crate::support::device::{element_text, fault_subcode, message_id, DeviceInfo, B64};
use crate::support::{Client, HttpResponse, TestServer};

const APPRU: &str = "ms-app://s-1-15-2-3506316738-1111-2222/";
const PASSWORD: &str = "correct horse battery";

fn now() -> i64 {
    use winmdm::clock::Clock as _;
    winmdm::clock::SystemClock.now_unix()
}

/// A server with `--auth-policy both` and Entra tokens validated against a JWKS file holding
/// `keys` (written to a temp dir that lives as long as the returned guard).
async fn server(keys: &[&EntraKey], auto_create: bool) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, EntraKey::jwks(keys)).expect("write jwks");
    let srv = TestServer::start_with(|o| {
        o.auth_policy = Some("both".into());
        o.entra_jwks = Some(jwks.display().to_string());
        o.entra_tenants = Some(TENANT.into());
        o.entra_audiences = Some(format!("{AUDIENCE},api://winmdm-app-id"));
        o.entra_device_role = Some("mdm_device".into());
        o.entra_auto_create_users = Some(auto_create);
    })
    .await;
    (srv, dir)
}

fn certs(srv: &TestServer) -> u64 {
    srv.app.store.count_certs().expect("count certs")
}

fn assert_fault(r: &HttpResponse, subcode: &str) {
    let body = r.text();
    assert_eq!(r.status, 500, "{body}");
    assert_eq!(fault_subcode(&body).as_deref(), Some(subcode), "{body}");
    assert!(
        element_text(&body, "TraceId").is_some_and(|t| !t.is_empty()),
        "fault without a trace id: {body}"
    );
    assert!(!body.contains("DeviceEnrollmentProvisionDoc"), "{body}");
}

async fn discover(c: &Client, upn: &str, offered: &[&str]) -> String {
    let r = c
        .soap(
            "/EnrollmentServer/Discovery.svc",
            winmdm::testkit::discover_xml(upn, "4.0", offered, &message_id()).as_bytes(),
        )
        .await;
    r.text()
}

async fn policy(c: &Client, cred: &Credential) -> HttpResponse {
    let url = "/EnrollmentServer/Policy.svc";
    c.soap(url, &client::get_policies_request(&message_id(), url, cred))
        .await
}

async fn rst(c: &Client, info: &DeviceInfo, cred: &Credential) -> HttpResponse {
    let url = "/EnrollmentServer/Enrollment.svc";
    let (csr, _) = winmdm::ca::testing::device_csr(&info.device_id, KeyAlgorithm::Rsa2048);
    c.soap(
        url,
        winmdm::testkit::rst_xml_with(info, &csr, url, &message_id(), cred).as_bytes(),
    )
    .await
}

/// The provisioning document of a successful RSTRC.
fn provisioning(r: &HttpResponse) -> String {
    assert_eq!(r.status, 200, "enroll: {}", r.text());
    let b64 = element_text(&r.text(), "BinarySecurityToken").expect("provisioning token");
    String::from_utf8(B64.decode(b64.trim()).expect("base64")).expect("utf-8")
}

fn form_encode(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                winmdm::federation::web::percent_encode(k),
                winmdm::federation::web::percent_encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// The value of the `name="…"` input of an HTML page.
fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    let v = rest.find("value=\"")? + 7;
    let end = rest[v..].find('"')?;
    Some(
        rest[v..v + end]
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
}

/// Signs in on the login page as a WAB would; returns the page the POST answered.
async fn sign_in(c: &Client, auth_url: &str, appru: &str, upn: &str, pw: &str) -> HttpResponse {
    c.request(
        "POST",
        auth_url,
        &[("content-type", "application/x-www-form-urlencoded")],
        form_encode(&[("appru", appru), ("upn", upn), ("password", pw)]),
    )
    .await
}

/// The `wresult` of an auto-POST page, checking that it posts to `appru`.
fn wresult(page: &HttpResponse, appru: &str) -> String {
    let html = page.text();
    assert_eq!(page.status, 200, "{html}");
    assert!(
        html.contains(&format!("action=\"{appru}\"")),
        "auto-POST must target appru: {html}"
    );
    assert!(
        html.contains("<script>") && html.contains("type=\"submit\""),
        "{html}"
    );
    input_value(&html, "wresult").expect("wresult in the auto-POST page")
}

#[tokio::test]
async fn sts_flow_enrolls_end_to_end_and_the_token_cannot_be_replayed() {
    let (srv, _keys) = server(&[], false).await;
    srv.create_user("alice@contoso.com", PASSWORD).await;
    let c = srv.client();
    // Discovery: the device offers both, the server prefers Federated under `both`.
    let body = discover(&c, "alice@contoso.com", &["OnPremise", "Federated"]).await;
    assert_eq!(
        element_text(&body, "AuthPolicy").as_deref(),
        Some("Federated"),
        "{body}"
    );
    let auth_url = element_text(&body, "AuthenticationServiceUrl").expect("auth url");
    assert_eq!(
        auth_url,
        format!(
            "https://localhost:{}/EnrollmentServer/Auth",
            srv.addr.port()
        )
    );
    // The WAB opens the page.
    let q = format!(
        "{auth_url}?appru={}&login_hint={}",
        winmdm::federation::web::percent_encode(APPRU),
        winmdm::federation::web::percent_encode("Alice@Contoso.com")
    );
    let page = c.request("GET", &q, &[], vec![]).await;
    let html = page.text();
    assert_eq!(page.status, 200, "{html}");
    assert_eq!(
        page.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/html; charset=utf-8")
    );
    assert!(html.contains("<html lang=\"en\">"), "{html}");
    assert!(html.contains("<label for=\"upn\">") && html.contains("<label for=\"password\">"));
    assert!(
        !html.contains("http://") && !html.contains("src="),
        "no external resources: {html}"
    );
    assert_eq!(
        input_value(&html, "upn").as_deref(),
        Some("Alice@Contoso.com")
    );
    assert_eq!(input_value(&html, "appru").as_deref(), Some(APPRU));
    // A wrong password shows the form again, with no token.
    let bad = sign_in(&c, &auth_url, APPRU, "alice@contoso.com", "nope").await;
    assert!(bad.text().contains("role=\"alert\""), "{}", bad.text());
    assert!(input_value(&bad.text(), "wresult").is_none());
    // The right one answers the auto-POST page.
    let ok = sign_in(&c, &auth_url, APPRU, "Alice@Contoso.com", PASSWORD).await;
    let token = wresult(&ok, APPRU);
    let cred = client::federated_credential(&token);
    // Policy, then enrollment, with the token as BinarySecurityToken.
    let r = policy(&c, &cred).await;
    assert_eq!(r.status, 200, "policy: {}", r.text());
    let info = DeviceInfo::new(701, "alice@contoso.com", "");
    let doc = provisioning(&rst(&c, &info, &cred).await);
    assert!(
        doc.contains("value=\"alice@contoso.com\""),
        "UPN in DMClient: {doc}"
    );
    assert_eq!(certs(&srv), 1);
    let dev = srv
        .app
        .store
        .get_device(&info.device_id)
        .unwrap()
        .expect("device");
    assert_eq!(dev.upn.as_deref(), Some("alice@contoso.com"));
    // Replay after the enrollment: refused at enrollment and at policy, no certificate.
    let again = DeviceInfo::new(702, "alice@contoso.com", "");
    assert_fault(&rst(&c, &again, &cred).await, "s:Authentication");
    assert_fault(&policy(&c, &cred).await, "s:Authentication");
    assert_eq!(certs(&srv), 1, "a replayed token issued a certificate");
    let e = winmdm::federation::authenticate_token(
        &srv.app,
        winmdm::soap::envelope::VALUE_TYPE_USER_TOKEN,
        token.as_bytes(),
        winmdm::federation::Stage::Enroll,
    )
    .expect_err("replay");
    assert!(e.to_string().contains("already used (replay)"), "{e}");
    // The consumption survives a restart.
    let srv = srv.restart().await;
    let c = srv.client();
    assert_fault(&rst(&c, &again, &cred).await, "s:Authentication");
    assert_eq!(certs(&srv), 1);
    srv.stop().await;
}

#[tokio::test]
async fn login_page_refusals() {
    let (srv, _keys) = server(&[], false).await;
    srv.create_user("bob@contoso.com", PASSWORD).await;
    srv.create_user("carol@contoso.com", PASSWORD).await;
    let (st, body) = srv
        .admin(
            "PATCH",
            "/api/v1/users/carol@contoso.com",
            Some(json!({"disabled": true})),
        )
        .await;
    let c = srv.client();
    let auth = "/EnrollmentServer/Auth";
    // appru that is not ms-app:// — 400 page, no form, on GET and on POST.
    for appru in [
        "https://evil.example/steal",
        "javascript:alert(1)",
        "",
        "ms-app://x\"><script>",
    ] {
        let q = format!(
            "{auth}?appru={}",
            winmdm::federation::web::percent_encode(appru)
        );
        let r = c.request("GET", &q, &[], vec![]).await;
        assert_eq!(r.status, 400, "{appru}: {}", r.text());
        assert!(!r.text().contains("<form"), "{}", r.text());
        let r = sign_in(&c, auth, appru, "bob@contoso.com", PASSWORD).await;
        assert_eq!(r.status, 400, "{appru}");
        assert!(input_value(&r.text(), "wresult").is_none());
    }
    // A login hint with markup is escaped, never interpreted.
    let q = format!(
        "{auth}?appru={}&login_hint=%3Cscript%3Ex%3C%2Fscript%3E%22",
        winmdm::federation::web::percent_encode(APPRU)
    );
    let r = c.request("GET", &q, &[], vec![]).await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("<script>x"), "{}", r.text());
    assert!(r.text().contains("&lt;script&gt;x&lt;/script&gt;&quot;"));
    // Password guessing on the login page locks bob's password: then even the right one gets
    // the wrong-password page and no token, until an admin sets a new password.
    for i in 0..5 {
        let r = sign_in(&c, auth, APPRU, "bob@contoso.com", &format!("guess-{i}")).await;
        assert!(input_value(&r.text(), "wresult").is_none());
    }
    let r = sign_in(&c, auth, APPRU, "bob@contoso.com", PASSWORD).await;
    assert!(
        input_value(&r.text(), "wresult").is_none(),
        "locked: {}",
        r.text()
    );
    assert!(r.text().contains("The user name or password is incorrect."));
    let (st2, _) = srv
        .admin(
            "PATCH",
            "/api/v1/users/bob@contoso.com",
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(st2, 200);
    let r = sign_in(&c, auth, APPRU, "bob@contoso.com", PASSWORD).await;
    assert!(
        input_value(&r.text(), "wresult").is_some(),
        "unlocked: {}",
        r.text()
    );
    // Unknown user, disabled user: no token.
    let r = sign_in(&c, auth, APPRU, "nobody@contoso.com", PASSWORD).await;
    assert!(input_value(&r.text(), "wresult").is_none());
    if st == 200 {
        let r = sign_in(&c, auth, APPRU, "carol@contoso.com", PASSWORD).await;
        assert!(input_value(&r.text(), "wresult").is_none(), "{}", r.text());
        assert!(r.text().contains("disabled"));
    } else {
        panic!("could not disable carol: {st} {body}");
    }
    // A token made with another key, or a tampered one, is refused at policy.
    let ok = sign_in(&c, auth, APPRU, "bob@contoso.com", PASSWORD).await;
    let token = wresult(&ok, APPRU);
    let forged = winmdm::federation::sts::Sts::with_key(b"attacker")
        .issue(
            &winmdm::store::mem::MemStore::new(),
            "bob@contoso.com",
            now(),
        )
        .unwrap();
    assert_fault(
        &policy(&c, &client::federated_credential(&forged)).await,
        "s:Authentication",
    );
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        r#"{{"upn":"carol@contoso.com","nonce":"00","iat":{0},"exp":{1}}}"#,
        now(),
        now() + 600
    ));
    let tampered = parts.join(".");
    assert_fault(
        &policy(&c, &client::federated_credential(&tampered)).await,
        "s:Authentication",
    );
    let info = DeviceInfo::new(710, "bob@contoso.com", "");
    assert_fault(
        &rst(&c, &info, &client::federated_credential(&tampered)).await,
        "s:Authentication",
    );
    assert_eq!(certs(&srv), 0);
    // The genuine token still works (policy checks, enrollment consumes).
    assert_eq!(
        policy(&c, &client::federated_credential(&token))
            .await
            .status,
        200
    );
    provisioning(&rst(&c, &info, &client::federated_credential(&token)).await);
    assert_eq!(certs(&srv), 1);
    srv.stop().await;
}

#[tokio::test]
async fn discovery_follows_the_auth_policy_setting() {
    // Default (not configured for federated): OnPremise even when Federated is offered; a
    // Federated-only device is told NotSupported; the login page does not exist.
    let srv = TestServer::start().await;
    let c = srv.client();
    let body = discover(&c, "a@contoso.com", &["OnPremise", "Federated"]).await;
    assert_eq!(
        element_text(&body, "AuthPolicy").as_deref(),
        Some("OnPremise")
    );
    assert!(element_text(&body, "AuthenticationServiceUrl").is_none());
    let body = discover(&c, "a@contoso.com", &["Federated"]).await;
    assert_eq!(
        element_text(&body, "ErrorType").as_deref(),
        Some("NotSupported"),
        "{body}"
    );
    let q = format!(
        "/EnrollmentServer/Auth?appru={}",
        winmdm::federation::web::percent_encode(APPRU)
    );
    assert_eq!(c.request("GET", &q, &[], vec![]).await.status, 404);
    // A login-token credential is refused when federated is off.
    let t = winmdm::federation::sts::Sts::with_key(b"k")
        .issue(srv.app.store.records(), "a@contoso.com", now())
        .unwrap();
    assert_fault(
        &policy(&c, &client::federated_credential(&t)).await,
        "s:Authentication",
    );
    srv.stop().await;
    // Federated only: OnPremise-only devices are refused, passwords are refused.
    let srv = TestServer::start_with(|o| o.auth_policy = Some("federated".into())).await;
    srv.create_user("d@contoso.com", PASSWORD).await;
    let c = srv.client();
    let body = discover(&c, "d@contoso.com", &["OnPremise", "Federated"]).await;
    assert_eq!(
        element_text(&body, "AuthPolicy").as_deref(),
        Some("Federated")
    );
    let body = discover(&c, "d@contoso.com", &["OnPremise"]).await;
    assert_eq!(
        element_text(&body, "ErrorType").as_deref(),
        Some("NotSupported"),
        "{body}"
    );
    let pw = Credential::UsernameToken {
        username: "d@contoso.com".into(),
        password: PASSWORD.into(),
    };
    assert_fault(&policy(&c, &pw).await, "s:Authentication");
    srv.stop().await;
    // Both: an OnPremise-only device still gets OnPremise.
    let srv = TestServer::start_with(|o| o.auth_policy = Some("both".into())).await;
    let body = discover(&srv.client(), "d@contoso.com", &["OnPremise"]).await;
    assert_eq!(
        element_text(&body, "AuthPolicy").as_deref(),
        Some("OnPremise")
    );
    srv.stop().await;
}

#[tokio::test]
async fn entra_user_token_enrolls() {
    let key = EntraKey::generate("kid-1");
    let (srv, _keys) = server(&[&key], true).await;
    let c = srv.client();
    let token = key.sign(&EntraKey::user_claims("Dana@Contoso.com", now()));
    let cred = client::entra_credential(&token);
    assert_eq!(policy(&c, &cred).await.status, 200);
    let info = DeviceInfo::new(720, "dana@contoso.com", "");
    let doc = provisioning(&rst(&c, &info, &cred).await);
    assert!(doc.contains("value=\"dana@contoso.com\""), "{doc}");
    assert_eq!(certs(&srv), 1);
    // Auto-created: enabled, and no password opens the login page for it.
    let u = srv
        .app
        .store
        .get_user("dana@contoso.com")
        .unwrap()
        .expect("user created");
    assert!(!u.disabled);
    assert!(!winmdm::auth::verify_password("", &u.password_hash));
    let dev = srv
        .app
        .store
        .get_device(&info.device_id)
        .unwrap()
        .expect("device");
    assert_eq!(dev.upn.as_deref(), Some("dana@contoso.com"));
    srv.stop().await;
}

#[tokio::test]
async fn entra_app_only_token_enrolls_a_device_without_user() {
    let key = EntraKey::generate("kid-1");
    let (srv, _keys) = server(&[&key], false).await;
    let c = srv.client();
    let cred = client::entra_credential(&key.sign(&EntraKey::app_claims("mdm_device", now())));
    assert_eq!(policy(&c, &cred).await.status, 200);
    // A user-scoped (Full) enrollment with an app-only token is not allowed.
    let full = DeviceInfo::new(730, "", "");
    assert_fault(&rst(&c, &full, &cred).await, "s:Authorization");
    assert_eq!(certs(&srv), 0);
    let mut info = DeviceInfo::new(731, "", "");
    info.enrollment_type = "Device";
    let doc = provisioning(&rst(&c, &info, &cred).await);
    assert!(
        doc.contains("My%5CSystem") && !doc.contains("My%5CUser"),
        "{doc}"
    );
    let dev = srv
        .app
        .store
        .get_device(&info.device_id)
        .unwrap()
        .expect("device");
    assert_eq!(dev.upn, None);
    assert_eq!(dev.enrollment_type, "Device");
    // Without the role: refused.
    let cred = client::entra_credential(&key.sign(&EntraKey::app_claims("other_role", now())));
    let mut info = DeviceInfo::new(732, "", "");
    info.enrollment_type = "Device";
    assert_fault(&rst(&c, &info, &cred).await, "s:Authentication");
    assert_eq!(certs(&srv), 1);
    srv.stop().await;
}

#[tokio::test]
async fn entra_token_refusals_issue_no_certificate() {
    let key = EntraKey::generate("kid-1");
    let stranger = EntraKey::generate("kid-unknown");
    let (srv, _keys) = server(&[&key], false).await;
    srv.create_user("erin@contoso.com", PASSWORD).await;
    let c = srv.client();
    let t = now();
    let good = EntraKey::user_claims("erin@contoso.com", t);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let other_tenant = "0b1c2d3e-0000-4000-8000-00000000beef";
    let tampered = {
        let tok = key.sign(&good);
        let mut parts: Vec<String> = tok.split('.').map(str::to_string).collect();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(with("upn", json!("ceo@contoso.com")).to_string());
        parts.join(".")
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            key.sign(&with("exp", json!(t - 3600))),
            "token expired",
        ),
        (
            "not yet valid",
            key.sign(&with("nbf", json!(t + 3600))),
            "not yet valid",
        ),
        (
            "wrong audience",
            key.sign(&with("aud", json!("https://graph.microsoft.com"))),
            "aud mismatch",
        ),
        (
            "wrong tenant",
            key.sign(
                &with("tid", json!(other_tenant))
                    .as_object()
                    .map(|m| {
                        let mut m = m.clone();
                        m.insert(
                            "iss".into(),
                            json!(format!("https://sts.windows.net/{other_tenant}/")),
                        );
                        Value::Object(m)
                    })
                    .unwrap(),
            ),
            "is not allowed",
        ),
        (
            "wrong issuer",
            key.sign(&with(
                "iss",
                json!(format!("https://sts.windows.net/{other_tenant}/")),
            )),
            "is not the Entra issuer",
        ),
        (
            "missing scope",
            key.sign(&with("scp", json!("User.Read"))),
            "lacks the required scope",
        ),
        ("unknown kid", stranger.sign(&good), "unknown signing key"),
        (
            "alg none",
            EntraKey::unsigned("none", Some("kid-1"), &good, b""),
            "alg \"none\" not allowed",
        ),
        (
            "HS256 with the public key",
            key.hs256_with_public_key(&good),
            "alg \"HS256\" not allowed",
        ),
        ("tampered payload", tampered, "signature invalid"),
        (
            "unknown user",
            key.sign(&with("upn", json!("zed@contoso.com"))),
            "unknown user",
        ),
        ("not a JWT", "garbage".into(), "malformed token"),
    ];
    for (i, (what, token, reason)) in cases.iter().enumerate() {
        let cred = client::entra_credential(token);
        let r = policy(&c, &cred).await;
        assert_fault(&r, "s:Authentication");
        let info = DeviceInfo::new(740 + i as u32, "erin@contoso.com", "");
        let r = rst(&c, &info, &cred).await;
        assert_fault(&r, "s:Authentication");
        // The logged reason says precisely why.
        let e = winmdm::federation::authenticate_token(
            &srv.app,
            winmdm::soap::envelope::VALUE_TYPE_ENTRA_JWT,
            token.as_bytes(),
            winmdm::federation::Stage::Enroll,
        )
        .expect_err(what);
        assert!(
            matches!(e, winmdm::soap::EnrollError::Authentication { .. })
                && e.to_string().contains(reason),
            "{what}: {e}"
        );
        assert_eq!(certs(&srv), 0, "{what} issued a certificate");
    }
    // The genuine token works, so the refusals above were about the token.
    let info = DeviceInfo::new(760, "erin@contoso.com", "");
    provisioning(&rst(&c, &info, &client::entra_credential(&key.sign(&good))).await);
    assert_eq!(certs(&srv), 1);
    // A disabled user is not authorized.
    let (st, _) = srv
        .admin(
            "PATCH",
            "/api/v1/users/erin@contoso.com",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(st, 200);
    let info = DeviceInfo::new(761, "erin@contoso.com", "");
    assert_fault(
        &rst(&c, &info, &client::entra_credential(&key.sign(&good))).await,
        "s:Authorization",
    );
    assert_eq!(certs(&srv), 1);
    srv.stop().await;
}

#[tokio::test]
async fn entra_tokens_are_refused_when_not_configured() {
    let key = EntraKey::generate("kid-1");
    let srv = TestServer::start().await;
    let cred = client::entra_credential(&key.sign(&EntraKey::user_claims("a@contoso.com", now())));
    assert_fault(&policy(&srv.client(), &cred).await, "s:Authentication");
    srv.stop().await;
}

async fn tos_post(c: &Client, redirect: &str, action: &str) -> HttpResponse {
    c.request(
        "POST",
        "/EnrollmentServer/ToS",
        &[("content-type", "application/x-www-form-urlencoded")],
        form_encode(&[
            ("redirect_uri", redirect),
            ("client-request-id", "3f2a-77"),
            ("action", action),
        ]),
    )
    .await
}

#[tokio::test]
async fn terms_of_use_accept_decline_and_bad_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let tos = dir.path().join("tos.html");
    std::fs::write(
        &tos,
        "<p>Contoso acceptable use: <strong>be nice</strong>.</p>",
    )
    .unwrap();
    let srv = TestServer::start_with(|o| o.tos_file = Some(tos.clone())).await;
    let c = srv.client();
    let redirect = "ms-appx-web://Microsoft.AAD.BrokerPlugin/winmdm";
    let q = format!(
        "/EnrollmentServer/ToS?redirect_uri={}&client-request-id=3f2a-77&api-version=1.0",
        winmdm::federation::web::percent_encode(redirect)
    );
    let r = c
        .request("GET", &q, &[("authorization", "Bearer x.y.z")], vec![])
        .await;
    let html = r.text();
    assert_eq!(r.status, 200, "{html}");
    assert!(html.contains("<strong>be nice</strong>"), "{html}");
    assert!(html.contains("value=\"accept\"") && html.contains("value=\"decline\""));
    assert_eq!(
        input_value(&html, "redirect_uri").as_deref(),
        Some(redirect)
    );
    // Accept.
    let r = tos_post(&c, redirect, "accept").await;
    assert_eq!(r.status, 302);
    let loc = r
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_string();
    let prefix = format!("{redirect}?IsAccepted=true&OpaqueBlob=");
    assert!(loc.starts_with(&prefix), "{loc}");
    let blob = &loc[prefix.len()..];
    assert!(
        !blob.is_empty()
            && blob
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    // Decline.
    let r = tos_post(&c, redirect, "decline").await;
    assert_eq!(r.status, 302);
    let loc = r
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap();
    assert!(
        loc.starts_with(&format!(
            "{redirect}?IsAccepted=false&error=access_denied&error_description="
        )),
        "{loc}"
    );
    // Redirects elsewhere: 400, no redirect, no form.
    for bad in [
        "https://evil.example/cb",
        "ms-app://x",
        "javascript:alert(1)",
    ] {
        let q = format!(
            "/EnrollmentServer/ToS?redirect_uri={}",
            winmdm::federation::web::percent_encode(bad)
        );
        let r = c.request("GET", &q, &[], vec![]).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(!r.text().contains("<form"));
        let r = tos_post(&c, bad, "accept").await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.headers.get("location").is_none());
    }
    srv.stop().await;
}

/// A tiny HTTPS server (its own CA, certificate for `localhost`) answering `body` with 200 at
/// `/keys` and 404 elsewhere, counting requests. Returns its port and the CA certificate.
async fn jwks_server(
    body: std::sync::Arc<std::sync::Mutex<String>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (u16, Vec<u8>) {
    jwks_server_with(body, hits, Default::default()).await
}

/// As [`jwks_server`], answering with `Cache-Control: <cache_control>` when it is set.
async fn jwks_server_with(
    body: std::sync::Arc<std::sync::Mutex<String>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    cache_control: std::sync::Arc<std::sync::Mutex<Option<String>>>,
) -> (u16, Vec<u8>) {
    use http_body_util::Full;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let (body, hits, cc) = (body.clone(), hits.clone(), cache_control.clone());
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let ok = req.uri().path() == "/keys";
                    let text = body.lock().unwrap().clone();
                    let cc = cc.lock().unwrap().clone();
                    async move {
                        let mut r = hyper::Response::new(Full::new(bytes::Bytes::from(if ok {
                            text
                        } else {
                            String::new()
                        })));
                        if !ok {
                            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                        }
                        if let Some(v) = cc {
                            r.headers_mut().insert(
                                "cache-control",
                                hyper::header::HeaderValue::from_str(&v).unwrap(),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc),
            );
        }
    });
    (port, ca.der().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_is_fetched_over_https_cached_and_not_hammered() {
    use std::sync::atomic::Ordering;
    use winmdm::config::JwksSource;
    use winmdm::federation::jwks::JwksCache;
    let a = EntraKey::generate("a");
    let b = EntraKey::generate("b");
    let body = std::sync::Arc::new(std::sync::Mutex::new(EntraKey::jwks(&[&a])));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (port, ca) = jwks_server(body.clone(), hits.clone()).await;
    let roots = vec![rustls::pki_types::CertificateDer::from(ca)];
    let cache = std::sync::Arc::new(
        JwksCache::with_roots(
            JwksSource::Url(format!("https://localhost:{port}/keys")),
            roots.clone(),
        )
        .unwrap(),
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a URL is fetched on first use, not at start"
    );
    let key = |c: std::sync::Arc<JwksCache>, kid: &'static str| async move {
        tokio::task::spawn_blocking(move || c.key(kid))
            .await
            .unwrap()
    };
    let got = key(cache.clone(), "a").await.unwrap().expect("key a");
    assert_eq!(got.n, a.components().0);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(key(cache.clone(), "a").await.unwrap().is_some());
    assert_eq!(hits.load(Ordering::SeqCst), 1, "cached");
    // Rotation on the server: the first load does not count against the unknown-kid limit…
    *body.lock().unwrap() = EntraKey::jwks(&[&a, &b]);
    assert!(key(cache.clone(), "b").await.unwrap().is_some());
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // …but a second unknown kid within the minute does not fetch again.
    let c = EntraKey::generate("c");
    *body.lock().unwrap() = EntraKey::jwks(&[&a, &b, &c]);
    for _ in 0..5 {
        assert_eq!(key(cache.clone(), "c").await.unwrap(), None);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "unknown kids are rate limited"
    );
    // A fresh cache sees the rotated set.
    let fresh = std::sync::Arc::new(
        JwksCache::with_roots(
            JwksSource::Url(format!("https://localhost:{port}/keys")),
            roots.clone(),
        )
        .unwrap(),
    );
    assert!(key(fresh, "b").await.unwrap().is_some());
    // 404, or a server we do not trust: an error, not keys.
    let missing = std::sync::Arc::new(
        JwksCache::with_roots(
            JwksSource::Url(format!("https://localhost:{port}/nope")),
            roots,
        )
        .unwrap(),
    );
    assert!(key(missing, "a").await.is_err());
    let other_ca = {
        let k = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&k).unwrap().der().clone()
    };
    let untrusted = std::sync::Arc::new(
        JwksCache::with_roots(
            JwksSource::Url(format!("https://localhost:{port}/keys")),
            vec![other_ca],
        )
        .unwrap(),
    );
    assert!(key(untrusted, "a").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_is_reloaded_on_schedule_so_a_removed_key_stops_being_trusted() {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    use winmdm::config::JwksSource;
    use winmdm::federation::jwks::JwksCache;
    let t0 = 1_900_000_000;
    let clock = crate::support::TestClock::at(t0);
    let a = EntraKey::generate("a");
    let b = EntraKey::generate("b");
    let body = Arc::new(Mutex::new(EntraKey::jwks(&[&a, &b])));
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cc = Arc::new(Mutex::new(Some("public, max-age=3600".to_string())));
    let (port, ca) = jwks_server_with(body.clone(), hits.clone(), cc.clone()).await;
    let cache = Arc::new(
        JwksCache::with_clock(
            JwksSource::Url(format!("https://localhost:{port}/keys")),
            vec![rustls::pki_types::CertificateDer::from(ca)],
            Arc::new(clock.clone()),
        )
        .unwrap(),
    );
    let key = |c: Arc<JwksCache>, kid: &'static str| async move {
        tokio::task::spawn_blocking(move || c.key(kid))
            .await
            .unwrap()
            .unwrap()
    };
    assert!(key(cache.clone(), "a").await.is_some());
    assert_eq!(cache.fresh_until(), t0 + 3600, "max-age honoured");
    // Microsoft removes key a. Within max-age it is still used (no fetch)…
    *body.lock().unwrap() = EntraKey::jwks(&[&b]);
    clock.set(t0 + 3599);
    assert!(key(cache.clone(), "a").await.is_some());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // …and once max-age has passed the key set is reloaded before any key is handed out.
    clock.set(t0 + 3600);
    assert!(
        key(cache.clone(), "a").await.is_none(),
        "a removed key is no longer trusted"
    );
    assert!(key(cache.clone(), "b").await.is_some());
    assert!(hits.load(Ordering::SeqCst) >= 2);
    // A max-age longer than a day is capped at one day; none at all means one day.
    *cc.lock().unwrap() = Some("max-age=31536000".into());
    clock.set(t0 + 10_000);
    assert!(key(cache.clone(), "b").await.is_some());
    assert_eq!(cache.fresh_until(), t0 + 10_000 + 86_400, "at most a day");
    *cc.lock().unwrap() = None;
    clock.set(t0 + 10_000 + 86_400);
    assert!(key(cache.clone(), "b").await.is_some());
    assert_eq!(cache.fresh_until(), t0 + 10_000 + 2 * 86_400);
}
