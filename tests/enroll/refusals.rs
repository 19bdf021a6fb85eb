//! Every refused enrollment gets the right SOAP fault and no certificate.

use crate::support::device::{self, fault_subcode, DeviceInfo};
use crate::support::TestServer;
use winmdm::ca::KeyAlgorithm;

async fn setup() -> (TestServer, DeviceInfo, String) {
    let srv = TestServer::start().await;
    srv.create_user("eve@example.com", "right-password").await;
    let info = DeviceInfo::new(10, "eve@example.com", "right-password");
    let (_, enroll_url) = device::discover_and_policy(&srv.client(), &info).await;
    (srv, info, enroll_url)
}

async fn assert_nothing_issued(srv: &TestServer) {
    assert_eq!(
        srv.app.store.count_certs().unwrap(),
        0,
        "a certificate was recorded"
    );
    let (_, page) = srv.admin("GET", "/api/v1/devices", None).await;
    assert_eq!(
        page["devices"].as_array().map(|a| a.len()),
        Some(0),
        "a device was recorded"
    );
}

fn assert_fault(r: &crate::support::HttpResponse, subcode: &str) {
    let body = r.text();
    assert!(r.status >= 400, "fault with HTTP {}: {body}", r.status);
    assert_eq!(fault_subcode(&body).as_deref(), Some(subcode), "{body}");
    assert!(
        !body.contains("BinarySecurityToken"),
        "a fault must not carry a token"
    );
}

#[tokio::test]
async fn wrong_password_is_an_authentication_fault() {
    let (srv, mut info, url) = setup().await;
    info.password = "wrong-password".into();
    let (csr, _) = winmdm::ca::testing::device_csr(&info.device_id, KeyAlgorithm::Rsa2048);
    let r = device::send_rst(&srv.client(), &url, &info, &csr).await;
    assert_fault(&r, "s:Authentication");
    // Policy refuses too.
    let r = srv
        .client()
        .soap(
            "/EnrollmentServer/Policy.svc",
            device::policy_xml(&info.upn, "nope", "x", "urn:uuid:1").as_bytes(),
        )
        .await;
    assert_fault(&r, "s:Authentication");
    info.upn = "nobody@example.com".into();
    let r = device::send_rst(&srv.client(), &url, &info, &csr).await;
    assert_fault(&r, "s:Authentication");
    assert_nothing_issued(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn malformed_csr_is_a_certificate_request_fault() {
    let (srv, info, url) = setup().await;
    let r = device::send_rst(&srv.client(), &url, &info, b"this is not DER").await;
    assert_fault(&r, "s:CertificateRequest");
    let (csr, _) = winmdm::ca::testing::device_csr(&info.device_id, KeyAlgorithm::Rsa2048);
    let r = device::send_rst(&srv.client(), &url, &info, &csr[..csr.len() / 2]).await;
    assert_fault(&r, "s:CertificateRequest");
    assert_nothing_issued(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn weak_key_is_refused() {
    let (srv, info, url) = setup().await;
    let csr = winmdm::ca::testing::rsa1024_csr();
    let r = device::send_rst(&srv.client(), &url, &info, &csr).await;
    assert_fault(&r, "s:CertificateRequest");
    assert!(
        r.text().contains("1024"),
        "reason names the key size: {}",
        r.text()
    );
    assert_nothing_issued(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn tampered_csr_signature_is_refused() {
    let (srv, info, url) = setup().await;
    let (mut csr, _) = winmdm::ca::testing::device_csr(&info.device_id, KeyAlgorithm::Rsa2048);
    let last = csr.len() - 1;
    csr[last] ^= 0x01;
    let r = device::send_rst(&srv.client(), &url, &info, &csr).await;
    assert_fault(&r, "s:CertificateRequest");
    assert_nothing_issued(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn csr_for_another_device_id_is_refused() {
    let (srv, info, url) = setup().await;
    let (csr, _) =
        winmdm::ca::testing::device_csr("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", KeyAlgorithm::Rsa2048);
    let r = device::send_rst(&srv.client(), &url, &info, &csr).await;
    assert_fault(&r, "s:CertificateRequest");
    assert_nothing_issued(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn garbage_xml_and_dtds_are_message_format_faults() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&lol2;</s:Body></s:Envelope>"#;
    let bad_utf8: &[u8] = b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>\xff\xfe</s:Body></s:Envelope>";
    let deep = "<a>".repeat(50_000);
    for path in [
        "/EnrollmentServer/Discovery.svc",
        "/EnrollmentServer/Policy.svc",
        "/EnrollmentServer/Enrollment.svc",
    ] {
        for body in [
            b"<<<not xml".as_slice(),
            b"",
            bomb.as_bytes(),
            bad_utf8,
            deep.as_bytes(),
            b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>",
        ] {
            let r = c.soap(path, body).await;
            let sub = fault_subcode(&r.text());
            assert!(
                matches!(
                    sub.as_deref(),
                    Some("s:MessageFormat") | Some("a:InvalidSecurity")
                ),
                "{path} answered {} {:?} to garbage",
                r.status,
                r.text()
            );
        }
    }
    assert_nothing_issued(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn wrong_content_type_and_huge_bodies_are_refused_cleanly() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let xml = device::discover_xml("a@b.c", "4.0", &["OnPremise"], "urn:uuid:1");
    let r = c
        .request(
            "POST",
            "/EnrollmentServer/Discovery.svc",
            &[("content-type", "text/plain")],
            xml.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(fault_subcode(&r.text()).as_deref(), Some("s:MessageFormat"));
    let huge = vec![b'a'; 2 * 1024 * 1024];
    let r = c.soap("/EnrollmentServer/Enrollment.svc", &huge).await;
    assert_eq!(r.status, 413);
    assert_eq!(fault_subcode(&r.text()).as_deref(), Some("s:MessageFormat"));
    let r = c
        .request("PUT", "/EnrollmentServer/Discovery.svc", &[], vec![])
        .await;
    assert_eq!(r.status, 405);
    // The server still serves after all that.
    let r = c
        .soap(
            "/EnrollmentServer/Discovery.svc",
            device::discover_xml("a@b.c", "4.0", &["OnPremise"], "urn:uuid:2").as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn discovery_without_on_premise_is_refused() {
    let srv = TestServer::start().await;
    let r = srv
        .client()
        .soap(
            "/EnrollmentServer/Discovery.svc",
            device::discover_xml("a@b.c", "4.0", &["Federated"], "urn:uuid:3").as_bytes(),
        )
        .await;
    assert!(r.status >= 400);
    assert!(fault_subcode(&r.text()).is_some(), "{}", r.text());
    srv.stop().await;
}

#[tokio::test]
async fn disabled_users_cannot_enroll() {
    let srv = TestServer::start().await;
    // Disable through the store (the admin endpoint for it comes with the admin surface work).
    let user = winmdm::store::User {
        upn: "mallory@example.com".into(),
        id: String::new(),
        password_hash: winmdm::auth::hash_password("pw-mallory").unwrap(),
        created_at: 0,
        disabled: true,
    };
    srv.app.store.create_user(&user).unwrap();
    let info = DeviceInfo::new(11, "mallory@example.com", "pw-mallory");
    let (csr, _) = winmdm::ca::testing::device_csr(&info.device_id, KeyAlgorithm::Rsa2048);
    let r = device::send_rst(
        &srv.client(),
        "/EnrollmentServer/Enrollment.svc",
        &info,
        &csr,
    )
    .await;
    assert_fault(&r, "s:Authorization");
    assert_nothing_issued(&srv).await;
    srv.stop().await;
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_password_with_back_off() {
    use std::sync::Arc;
    use winmdm::clock::{Clock, SystemClock};
    let t0 = SystemClock.now_unix();
    let clock = crate::support::TestClock::at(t0);
    let srv = TestServer::start_with_clock(Arc::new(clock.clone()), |_| {}).await;
    srv.create_user("mallory-target@example.com", "right-password")
        .await;
    let policy = |upn: &str, pw: &str| {
        let (c, body) = (
            srv.client(),
            device::policy_xml(upn, pw, "x", "urn:uuid:1").into_bytes(),
        );
        async move { c.soap("/EnrollmentServer/Policy.svc", &body).await }
    };
    let upn = "mallory-target@example.com";
    let failures = || winmdm::lockout::failures(&srv.app, upn).unwrap();
    // Four wrong guesses: counted, the right password still works and clears the count.
    for i in 1..=4 {
        assert_fault(
            &policy(upn, &format!("guess-{i}")).await,
            "s:Authentication",
        );
    }
    assert_eq!(failures().map(|f| (f.count, f.locked_until)), Some((4, 0)));
    assert_eq!(policy(upn, "right-password").await.status, 200);
    assert_eq!(failures(), None);
    // Five in a row lock the password for 30 s: the right one is refused like a wrong one.
    for i in 1..=5 {
        assert_fault(
            &policy(upn, &format!("guess-{i}")).await,
            "s:Authentication",
        );
    }
    assert_eq!(failures().map(|f| f.locked_until), Some(t0 + 30));
    let (_, user) = srv
        .admin("GET", &format!("/api/v1/users/{upn}"), None)
        .await;
    assert_eq!(user["password_failures"]["count"], 5, "{user}");
    let locked = policy(upn, "right-password").await;
    assert_fault(&locked, "s:Authentication");
    let wrong = policy(upn, "guess-6").await;
    assert_eq!(
        device::fault_without_trace(&locked.text()),
        device::fault_without_trace(&wrong.text()),
        "a locked password and a wrong one get the same answer"
    );
    assert_eq!(
        failures().map(|f| f.count),
        Some(5),
        "guesses during a lock are not even looked at"
    );
    // After the lock one more wrong guess doubles it; after that the right password works.
    clock.set(t0 + 31);
    assert_fault(&policy(upn, "guess-7").await, "s:Authentication");
    assert_eq!(failures().map(|f| f.locked_until), Some(t0 + 31 + 60));
    clock.set(t0 + 31 + 61);
    assert_eq!(policy(upn, "right-password").await.status, 200);
    assert_eq!(failures(), None);
    // An admin's new password ends a lock at once.
    for i in 1..=5 {
        assert_fault(
            &policy(upn, &format!("guess-{i}")).await,
            "s:Authentication",
        );
    }
    let (st, _) = srv
        .admin(
            "PATCH",
            &format!("/api/v1/users/{upn}"),
            Some(serde_json::json!({"password": "new-password"})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(failures(), None);
    assert_eq!(policy(upn, "new-password").await.status, 200);
    // Unknown users are never counted (nothing to fill the store with).
    for _ in 0..6 {
        assert_fault(&policy("ghost@example.com", "x").await, "s:Authentication");
    }
    assert_eq!(
        winmdm::lockout::failures(&srv.app, "ghost@example.com").unwrap(),
        None
    );
    srv.stop().await;
}
