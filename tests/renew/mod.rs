//! Certificate renewal (ROBO) end to end: Renew RSTs over mutual TLS built the way Windows
//! builds them (PKCS#7 around the new PKCS#10, signed with the current key), the grace period
//! of the replaced certificate, refusals, the `WSTEP/Renew` block of the provisioning document,
//! and the store transaction behind it on both backends.
//!
//! Time: the application runs on a [`TestClock`] starting six days in the past, devices get
//! ten-day certificates with a five-day renewal window and a one-day grace period. The TLS layer
//! checks validity against the real time, so every certificate used here is valid *now*; the
//! application clock is what moves in and out of the windows.

use std::sync::Arc;

use base64::Engine;
use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use winmdm::ca::{testing, KeyAlgorithm};
use winmdm::clock::{Clock, FixedClock, SystemClock};
use winmdm::config::ServeOptions;
use winmdm::soap::client::{parse_rstr, rst_renew_request, ParsedFault, Reply};
use winmdm::soap::enroll::{
    AdditionalContext, VALUE_TYPE_PKCS10, VALUE_TYPE_PKCS7, VALUE_TYPE_PKCS7_ENROLLMENT,
};
use winmdm::soap::Credential;
use winmdm::store::mem::MemStore;
use winmdm::store::sled::SledStore;
use winmdm::store::{CertRecord, Device, DeviceState, RenewOutcome, RenewalCommit, Round, Store};

use crate::support::device::{self, DeviceInfo, Enrolled, B64};
use crate::support::mdm_device::ManagedDevice;
use crate::support::{conformance_dir, Client, HttpResponse, TestClock, TestServer};

const DAY: i64 = 86_400;
const ENROLL_PATH: &str = "/EnrollmentServer/Enrollment.svc";
const OTHER_DEVICE: &str = "B5B954E81FBCB94EB79BD08BE625F4EE";

fn options(o: &mut ServeOptions) {
    o.cert_validity_days = Some(10);
    o.renew_period_days = Some(5);
    o.renew_retry_days = Some(2);
    o.renew_grace_days = Some(1);
}

/// A server whose clock shows six days ago; returns it, its clock and the real time.
async fn server() -> (TestServer, TestClock, i64) {
    let real = SystemClock.now_unix();
    let clock = TestClock::at(real - 6 * DAY);
    let srv = TestServer::start_with_clock(Arc::new(clock.clone()), options).await;
    (srv, clock, real)
}

async fn enroll(srv: &TestServer, n: u32) -> Enrolled {
    enroll_as(srv, n, "Full").await
}

async fn enroll_as(srv: &TestServer, n: u32, enrollment_type: &'static str) -> Enrolled {
    let mut info = DeviceInfo::new(n, &format!("renew{n}@example.com"), "Renewal-Passw0rd");
    info.enrollment_type = enrollment_type;
    srv.create_user(&info.upn, &info.password).await;
    device::enroll(&srv.client(), &info).await
}

/// The device side of one certificate: DER and key.
struct Identity<'a> {
    cert: &'a [u8],
    key: &'a KeyPair,
}

fn id(e: &Enrolled) -> Identity<'_> {
    Identity {
        cert: &e.cert_der,
        key: &e.key,
    }
}

fn client(srv: &TestServer, tls: Option<&Identity<'_>>) -> Client {
    Client::new(
        srv.addr,
        srv.app.ca.cert_der().to_vec(),
        tls.map(|t| {
            (
                vec![CertificateDer::from(t.cert.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(t.key.serialize_der())),
            )
        }),
    )
}

/// A Renew RST body for `device_id` carrying `token` (of `value_type`).
fn renew_body(device_id: &str, token: &[u8], value_type: &str) -> Vec<u8> {
    let context = AdditionalContext {
        items: vec![
            ("DeviceID".into(), device_id.into()),
            ("EnrollmentType".into(), "Full".into()),
            ("DeviceType".into(), "CIMClient_Windows".into()),
            ("ApplicationVersion".into(), "10.0.26100.1".into()),
        ],
    };
    rst_renew_request(
        &device::message_id(),
        &format!("https://localhost{ENROLL_PATH}"),
        None,
        token,
        value_type,
        &context,
    )
}

/// What Windows sends: a new key and CSR for `device_id`, wrapped in PKCS#7 signed by `signer`.
fn windows_token(device_id: &str, signer: &Identity<'_>) -> (Vec<u8>, KeyPair) {
    let (csr, key) = testing::device_csr(device_id, KeyAlgorithm::Rsa2048);
    (testing::renewal_token(&csr, signer.cert, signer.key), key)
}

async fn post(srv: &TestServer, tls: Option<&Identity<'_>>, body: Vec<u8>) -> HttpResponse {
    client(srv, tls).soap(ENROLL_PATH, &body).await
}

/// The new certificate of a successful renewal (installed in `My/User`); panics with the fault
/// otherwise.
fn renewed_cert(r: &HttpResponse) -> Vec<u8> {
    renewed_cert_in(r, "User")
}

/// As [`renewed_cert`], for a certificate installed in `My/<scope>`.
fn renewed_cert_in(r: &HttpResponse, scope: &str) -> Vec<u8> {
    assert_eq!(r.status, 200, "renewal refused: {}", r.text());
    let Ok(Reply::Ok(doc)) = parse_rstr(&r.body) else {
        panic!("not an RSTRC: {}", r.text())
    };
    let doc = String::from_utf8(doc).expect("UTF-8 provisioning document");
    let x = roxmltree::Document::parse(&doc).expect("provisioning document is XML");
    let chars = |n: roxmltree::Node<'_, '_>| -> Vec<String> {
        n.children()
            .filter(|c| c.has_tag_name("characteristic"))
            .map(|c| c.attribute("type").unwrap_or("").to_string())
            .collect()
    };
    let store = x
        .root_element()
        .first_element_child()
        .expect("CertificateStore");
    assert_eq!(store.attribute("type"), Some("CertificateStore"));
    assert_eq!(
        chars(x.root_element()),
        ["CertificateStore"],
        "a renewal document holds only the certificate store: {doc}"
    );
    assert_eq!(chars(store), ["My"], "no root in a renewal: {doc}");
    let my = store.first_element_child().expect("My");
    let user = my
        .children()
        .find(|c| c.attribute("type") == Some(scope))
        .unwrap_or_else(|| panic!("My/{scope} in {doc}"));
    let kids = chars(user);
    assert_eq!(kids.len(), 2, "{doc}");
    assert_eq!(kids[1], "PrivateKeyContainer");
    let cert = user
        .first_element_child()
        .expect("thumbprint characteristic");
    let der = B64
        .decode(
            cert.first_element_child()
                .and_then(|p| p.attribute("value"))
                .expect("EncodedCertificate"),
        )
        .expect("base64 certificate");
    assert_eq!(
        kids[0],
        winmdm::ca::thumbprint(&der),
        "thumbprint characteristic"
    );
    der
}

fn fault(r: &HttpResponse) -> ParsedFault {
    match parse_rstr(&r.body) {
        Ok(Reply::Fault(f)) => f,
        other => panic!("expected a fault, got {other:?}: {}", r.text()),
    }
}

fn assert_fault(r: &HttpResponse, subcode: &str, errortype: Option<&str>) {
    let f = fault(r);
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(f.subcode, subcode, "{f:?}");
    assert_eq!(f.errortype.as_deref(), errortype, "{f:?}");
}

fn serial_of(der: &[u8]) -> String {
    winmdm::ca::device_id_from_cert(der).unwrap().serial_hex
}

fn cn_of(der: &[u8]) -> String {
    winmdm::ca::device_id_from_cert(der).unwrap().device_id
}

async fn device_json(srv: &TestServer, id: &str) -> serde_json::Value {
    let (st, d) = srv
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(st, 200, "{d}");
    d
}

fn certs(srv: &TestServer) -> u64 {
    srv.app.store.count_certs().unwrap()
}

fn revoked(srv: &TestServer, serial: &str) -> Option<String> {
    let c = srv
        .app
        .store
        .get_cert(serial)
        .unwrap()
        .expect("cert record");
    c.revoked_at.map(|_| c.revoke_reason.unwrap_or_default())
}

/// The device after a renewal: same id, new certificate and key.
fn renewed(e: &Enrolled, cert_der: Vec<u8>, key: KeyPair) -> Enrolled {
    Enrolled {
        device_id: e.device_id.clone(),
        cert_der,
        key,
        root_der: e.root_der.clone(),
        provisioning_doc: String::new(),
        mgmt_url: e.mgmt_url.clone(),
    }
}

#[tokio::test]
async fn renew_end_to_end_old_cert_until_first_new_session() {
    let (srv, clock, real) = server().await;
    let e = enroll(&srv, 1).await;
    let mut old_md = ManagedDevice::new(&srv, &e);
    old_md.session().await;
    let old_serial = serial_of(&e.cert_der);

    // Not due yet (six days before expiry, the window is five): refused, nothing issued.
    let before = certs(&srv);
    let (token, _) = windows_token(&e.device_id, &id(&e));
    let r = post(
        &srv,
        Some(&id(&e)),
        renew_body(&e.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:Authorization", Some("NotEligibleToRenew"));
    assert!(fault(&r).reason.contains("not due"), "{:?}", fault(&r));
    assert_eq!(certs(&srv), before);

    // Inside the window: renewed.
    clock.set(real);
    let (token, new_key) = windows_token(&e.device_id, &id(&e));
    let r = post(
        &srv,
        Some(&id(&e)),
        renew_body(&e.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert!(
        r.headers.get("content-length").is_some(),
        "RSTRC needs Content-Length"
    );
    if let Some(v) = crate::soap::xsd::validate("renewal RSTRC", &r.body) {
        v.unwrap_or_else(|e| panic!("renewal RSTRC does not validate: {e}"));
    }
    let new_der = renewed_cert(&r);
    let new_serial = serial_of(&new_der);
    assert_eq!(cn_of(&new_der), e.device_id);
    assert_ne!(new_serial, old_serial);
    assert_eq!(certs(&srv), before + 1);

    // Admin view: current = new, previous = old with its grace deadline, one renewal.
    let d = device_json(&srv, &e.device_id).await;
    assert_eq!(d["cert_serial"], new_serial.as_str());
    assert_eq!(d["previous_cert"]["serial"], old_serial.as_str());
    assert_eq!(d["previous_cert"]["grace_until"], real + DAY);
    assert_eq!(d["renewals"].as_array().unwrap().len(), 1);
    assert_eq!(d["renewals"][0]["old_serial"], old_serial.as_str());
    assert_eq!(d["renewals"][0]["new_serial"], new_serial.as_str());
    assert_eq!(d["renewals"][0]["at"], real);

    // The old certificate keeps working until the first session with the new one.
    old_md.session().await;
    assert_eq!(revoked(&srv, &old_serial), None);
    let d = device_json(&srv, &e.device_id).await;
    assert_eq!(d["previous_cert"]["serial"], old_serial.as_str());

    // First session with the new certificate: the old one is revoked in that commit.
    let mut new_md = ManagedDevice::new(&srv, &renewed(&e, new_der.clone(), new_key));
    new_md.session().await;
    assert!(revoked(&srv, &old_serial).is_some_and(|r| r.contains("used its new certificate")));
    let d = device_json(&srv, &e.device_id).await;
    assert!(d["previous_cert"].is_null(), "{d}");
    assert_eq!(d["renewals"].as_array().unwrap().len(), 1);

    // From now on the old certificate is refused by the management endpoint…
    let r = old_md.post(&old_md.first_package(77, "")).await;
    assert_eq!(r.status, 403);
    // …and cannot renew (revoked).
    let before = certs(&srv);
    let (token, _) = windows_token(&e.device_id, &id(&e));
    let r = post(
        &srv,
        Some(&id(&e)),
        renew_body(&e.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:Authorization", Some("NotEligibleToRenew"));
    assert_eq!(certs(&srv), before);
    // The new one goes on working.
    new_md.session().await;
}

#[tokio::test]
async fn renewal_refusals_issue_nothing() {
    let (srv, clock, real) = server().await;
    let a = enroll(&srv, 2).await;
    let b = enroll(&srv, 3).await;
    let c = enroll_as(&srv, 10, "Device").await;
    clock.set(real);
    let before = certs(&srv);

    // No client certificate.
    let (token, _) = windows_token(&a.device_id, &id(&a));
    let r = post(
        &srv,
        None,
        renew_body(&a.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:Authentication", None);

    // A's TLS certificate carrying B's genuine renewal token (CSR for B signed by B).
    let (token, _) = windows_token(&b.device_id, &id(&b));
    let r = post(
        &srv,
        Some(&id(&a)),
        renew_body(&a.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:Authorization", Some("NotEligibleToRenew"));
    assert!(
        fault(&r).reason.contains("signed by certificate"),
        "{:?}",
        fault(&r)
    );

    // B's certificate (TLS and signature) asking for a certificate for A.
    let (token, _) = windows_token(&a.device_id, &id(&b));
    let r = post(
        &srv,
        Some(&id(&b)),
        renew_body(&a.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:CertificateRequest", None);

    // A's own certificate, but a CSR naming another DeviceID.
    let (token, _) = windows_token(OTHER_DEVICE, &id(&a));
    let r = post(
        &srv,
        Some(&id(&a)),
        renew_body(&a.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:CertificateRequest", None);
    // …or a ContextItem naming another device.
    let (token, _) = windows_token(&a.device_id, &id(&a));
    let r = post(
        &srv,
        Some(&id(&a)),
        renew_body(OTHER_DEVICE, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:CertificateRequest", None);

    // A token that is not PKCS#7 under a PKCS#7 ValueType, and an unknown ValueType.
    let (csr, _) = testing::device_csr(&a.device_id, KeyAlgorithm::Rsa2048);
    let r = post(
        &srv,
        Some(&id(&a)),
        renew_body(&a.device_id, &csr, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:CertificateRequest", None);
    let r = post(
        &srv,
        Some(&id(&a)),
        renew_body(&a.device_id, &csr, "urn:x#CMC"),
    )
    .await;
    assert_fault(&r, "s:CertificateRequest", None);

    // Recovery is not offered.
    let (token, _) = windows_token(&a.device_id, &id(&a));
    let body = String::from_utf8(renew_body(&a.device_id, &token, VALUE_TYPE_PKCS7))
        .unwrap()
        .replace("200512/Renew", "200512/Recovery");
    let r = post(&srv, Some(&id(&a)), body.into_bytes()).await;
    assert_fault(&r, "s:Authorization", Some("NotSupported"));

    // A revoked certificate cannot renew.
    srv.app
        .store
        .revoke_cert(&serial_of(&a.cert_der), "test", real)
        .unwrap();
    let (token, _) = windows_token(&a.device_id, &id(&a));
    let r = post(
        &srv,
        Some(&id(&a)),
        renew_body(&a.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:Authorization", Some("NotEligibleToRenew"));
    assert_eq!(
        certs(&srv),
        before,
        "a refused renewal issued a certificate"
    );
    assert!(device_json(&srv, &a.device_id).await["renewals"]
        .as_array()
        .unwrap()
        .is_empty());

    // Both spellings of the PKCS#7 ValueType, and a bare PKCS#10 over mTLS, are accepted.
    let (token, key) = windows_token(&b.device_id, &id(&b));
    let r = post(
        &srv,
        Some(&id(&b)),
        renew_body(&b.device_id, &token, VALUE_TYPE_PKCS7_ENROLLMENT),
    )
    .await;
    let b2 = renewed(&b, renewed_cert(&r), key);
    let (csr, key) = testing::device_csr(&c.device_id, KeyAlgorithm::EcdsaP256);
    let r = post(
        &srv,
        Some(&id(&c)),
        renew_body(&c.device_id, &csr, VALUE_TYPE_PKCS10),
    )
    .await;
    // A device enrollment's certificate lives in My/System, and so does its renewal.
    let c2 = renewed(&c, renewed_cert_in(&r, "System"), key);
    assert_eq!(certs(&srv), before + 2);
    for (old, new) in [(&b, b2), (&c, c2)] {
        let d = device_json(&srv, &old.device_id).await;
        assert_eq!(
            d["previous_cert"]["serial"],
            serial_of(&old.cert_der).as_str()
        );
        ManagedDevice::new(&srv, &new).session().await;
        assert!(revoked(&srv, &serial_of(&old.cert_der)).is_some());
    }
}

/// A device that lost the response renews again with its old certificate: the unused
/// certificate of the first renewal is retired, the grace deadline is not extended.
#[tokio::test]
async fn renewing_again_from_the_old_certificate_retires_the_unused_one() {
    let (srv, clock, real) = server().await;
    let e = enroll(&srv, 4).await;
    clock.set(real);
    // This one carries the header shape of Microsoft's ROBO example (a UsernameToken naming the
    // device, empty password): ignored, the TLS client certificate is the credential.
    let (token, _lost_key) = windows_token(&e.device_id, &id(&e));
    let body = rst_renew_request(
        &device::message_id(),
        &format!("https://localhost{ENROLL_PATH}"),
        Some(&Credential::UsernameToken {
            username: e.device_id.clone(),
            password: String::new(),
        }),
        &token,
        VALUE_TYPE_PKCS7,
        &AdditionalContext::default(),
    );
    let r = post(&srv, Some(&id(&e)), body).await;
    let lost = serial_of(&renewed_cert(&r));
    // (Not later than a few minutes: the TLS layer checks NotBefore against the real time.)
    clock.set(real + 60);
    let (token, key) = windows_token(&e.device_id, &id(&e));
    let r = post(
        &srv,
        Some(&id(&e)),
        renew_body(&e.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    let second = renewed_cert(&r);
    assert!(revoked(&srv, &lost).is_some_and(|r| r.contains("never used")));
    let d = device_json(&srv, &e.device_id).await;
    assert_eq!(d["cert_serial"], serial_of(&second).as_str());
    assert_eq!(
        d["previous_cert"]["serial"],
        serial_of(&e.cert_der).as_str()
    );
    assert_eq!(d["previous_cert"]["grace_until"], real + DAY);
    assert_eq!(d["renewals"].as_array().unwrap().len(), 2);
    ManagedDevice::new(&srv, &renewed(&e, second, key))
        .session()
        .await;
    assert!(revoked(&srv, &serial_of(&e.cert_der)).is_some());
}

/// The grace period ends on a restarted server (state is in the store, not in memory): the old
/// certificate is refused, and revoked at the device's next session with the new one.
#[tokio::test]
async fn grace_period_expiry_after_a_restart_with_a_fixed_clock() {
    let (srv, clock, real) = server().await;
    let e = enroll(&srv, 5).await;
    clock.set(real);
    let (token, key) = windows_token(&e.device_id, &id(&e));
    let r = post(
        &srv,
        Some(&id(&e)),
        renew_body(&e.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    let new = renewed(&e, renewed_cert(&r), key);
    let old_serial = serial_of(&e.cert_der);

    // Just before the end of the grace period (restart on a fixed clock): still accepted.
    let dir = srv.data_dir.clone();
    let tmp = srv.stop().await;
    let srv =
        TestServer::start_in_with_clock(&dir, Arc::new(FixedClock(real + DAY)), options).await;
    let old_md = ManagedDevice::new(&srv, &e);
    assert!(
        old_md.session_quiet().await,
        "old certificate refused inside its grace period"
    );
    let tmp2 = srv.stop().await;
    assert!(tmp2.is_none());

    // One second later: refused (and not yet revoked: nothing happened since).
    let srv =
        TestServer::start_in_with_clock(&dir, Arc::new(FixedClock(real + DAY + 1)), options).await;
    let old_md = ManagedDevice::new(&srv, &e);
    let r = old_md.post(&old_md.first_package(9, "")).await;
    assert_eq!(r.status, 403);
    assert_eq!(revoked(&srv, &old_serial), None);
    // Nor can it renew.
    let (token, _) = windows_token(&e.device_id, &id(&e));
    let r = post(
        &srv,
        Some(&id(&e)),
        renew_body(&e.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:Authorization", Some("NotEligibleToRenew"));
    // The device's next session with its new certificate revokes the old one.
    ManagedDevice::new(&srv, &new).session().await;
    assert!(revoked(&srv, &old_serial).is_some_and(|r| r.contains("grace period over")));
    assert!(device_json(&srv, &e.device_id).await["previous_cert"].is_null());
    srv.stop().await;
    drop(tmp);
}

/// Decision (README "Certificate renewal", `mdm::renew`): an expired certificate cannot renew.
#[tokio::test]
async fn expired_certificate_is_not_eligible_to_renew() {
    let (srv, clock, real) = server().await;
    let e = enroll(&srv, 6).await;
    // The certificate ends at real + 4 days (application time); TLS (real time) still takes it.
    clock.set(real + 4 * DAY + 600);
    let before = certs(&srv);
    let (token, _) = windows_token(&e.device_id, &id(&e));
    let r = post(
        &srv,
        Some(&id(&e)),
        renew_body(&e.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:Authorization", Some("NotEligibleToRenew"));
    assert!(fault(&r).reason.contains("expired"), "{:?}", fault(&r));
    assert_eq!(certs(&srv), before);
    // The management endpoint refuses it too; the device has to enroll again.
    let md = ManagedDevice::new(&srv, &e);
    assert_eq!(md.post(&md.first_package(3, "")).await.status, 403);
}

fn renew_parms(doc: &str) -> Option<Vec<(String, String, String)>> {
    let x = roxmltree::Document::parse(doc).unwrap();
    let renew = x
        .descendants()
        .find(|n| n.attribute("type") == Some("WSTEP"))?
        .children()
        .find(|n| n.attribute("type") == Some("Renew"))?;
    Some(
        renew
            .children()
            .filter(|p| p.has_tag_name("parm"))
            .map(|p| {
                let a = |k| p.attribute(k).unwrap_or("").to_string();
                (a("name"), a("value"), a("datatype"))
            })
            .collect(),
    )
}

#[tokio::test]
async fn provisioning_document_advertises_renewal_only_when_enabled() {
    let (on, _, _) = server().await;
    let e = enroll(&on, 7).await;
    let parms = renew_parms(&e.provisioning_doc).expect("WSTEP/Renew block");
    let p = |n: &str, v: &str, t: &str| (n.to_string(), v.to_string(), t.to_string());
    assert_eq!(
        parms,
        [
            // Renewal authenticates with the device certificate: the mutual-TLS endpoint.
            p(
                "ServerURL",
                &format!(
                    "https://localhost:{}/EnrollmentServer/Enrollment.svc",
                    on.mgmt_addr.expect("management listener").port()
                ),
                "string"
            ),
            p("ROBOSupport", "true", "boolean"),
            p("RenewPeriod", "5", "integer"),
            p("RetryInterval", "2", "integer"),
        ]
    );
    // The block sits under CertificateStore/My, beside the client certificate.
    let x = roxmltree::Document::parse(&e.provisioning_doc).unwrap();
    let wstep = x
        .descendants()
        .find(|n| n.attribute("type") == Some("WSTEP"))
        .unwrap();
    let my = wstep.parent_element().unwrap();
    assert_eq!(my.attribute("type"), Some("My"));
    assert_eq!(
        my.parent_element().unwrap().attribute("type"),
        Some("CertificateStore")
    );
    on.stop().await;

    let off = TestServer::start_with(|o| o.renewal = Some("off".into())).await;
    let e = enroll(&off, 8).await;
    assert!(renew_parms(&e.provisioning_doc).is_none());
    assert!(!e.provisioning_doc.contains("WSTEP"));
    let (token, _) = windows_token(&e.device_id, &id(&e));
    let before = certs(&off);
    let r = post(
        &off,
        Some(&id(&e)),
        renew_body(&e.device_id, &token, VALUE_TYPE_PKCS7),
    )
    .await;
    assert_fault(&r, "s:Authorization", Some("NotSupported"));
    assert_eq!(certs(&off), before);
}

/// Every (path, parm name, datatype) and characteristic of `doc` under `CertificateStore/My`
/// and `DMClient`, with thumbprints written `{SHA1}` and the provider id `{P}`.
fn signatures(doc: &str) -> std::collections::BTreeSet<(String, String, String)> {
    let x = roxmltree::Document::parse(doc).expect("provisioning document XML");
    let mut out = std::collections::BTreeSet::new();
    fn walk(
        n: roxmltree::Node<'_, '_>,
        path: &mut Vec<String>,
        out: &mut std::collections::BTreeSet<(String, String, String)>,
    ) {
        for c in n.children().filter(|c| c.is_element()) {
            if c.has_tag_name("characteristic") {
                let t = c.attribute("type").unwrap_or("");
                let parent = path.last().map(String::as_str).unwrap_or("");
                let grand = path.len().checked_sub(2).map(|i| path[i].as_str());
                let t = match (grand, parent) {
                    (Some("My"), "User" | "System") if t != "PrivateKeyContainer" => "{SHA1}",
                    (Some("DMClient"), "Provider") => "{P}",
                    _ => t,
                };
                path.push(t.to_string());
                let p = path.join("/");
                if p.starts_with("CertificateStore/My") || p.starts_with("DMClient") {
                    out.insert((p, String::new(), String::new()));
                }
                walk(c, path, out);
                path.pop();
            } else if c.has_tag_name("parm") {
                let p = path.join("/");
                if p.starts_with("CertificateStore/My") || p.starts_with("DMClient") {
                    out.insert((
                        p,
                        c.attribute("name").unwrap_or("").to_string(),
                        c.attribute("datatype").unwrap_or("").to_string(),
                    ));
                }
            }
        }
    }
    walk(x.root_element(), &mut Vec::new(), &mut out);
    out
}

/// Our provisioning document against what Windows was seen to accept: every characteristic and
/// parm (name + datatype) under `CertificateStore/My` and `DMClient` of each captured document
/// also appears in ours. The captures carry no `WSTEP/Renew` block, so that block is checked
/// against the documented skeleton in `../shared/PROTOCOL.md` (names and datatypes).
#[tokio::test]
async fn provisioning_document_fields_match_the_captures() {
    let Some(dir) = conformance_dir("provisioning document vs captures") else {
        return;
    };
    let (srv, _, _) = server().await;
    let e = enroll(&srv, 9).await;
    let ours = signatures(&e.provisioning_doc);

    let mut captured = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for f in std::fs::read_dir(&d).unwrap().flatten() {
            let p = f.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            if text.contains("<wap-provisioningdoc") {
                let start = text.find("<wap-provisioningdoc").unwrap();
                let end = text.rfind("</wap-provisioningdoc>").unwrap() + 22;
                captured.push((p.clone(), text[start..end].to_string()));
            } else if text.contains("DeviceEnrollmentProvisionDoc") {
                if let Some(b64) = device::element_text(&text, "BinarySecurityToken") {
                    if let Ok(doc) = B64.decode(b64.trim()) {
                        captured.push((p.clone(), String::from_utf8_lossy(&doc).into_owned()));
                    }
                }
            }
        }
    }
    assert!(!captured.is_empty(), "no captured provisioning document");
    for (path, doc) in &captured {
        let theirs = signatures(doc);
        assert!(
            theirs
                .iter()
                .any(|(p, _, _)| p.starts_with("CertificateStore/My")),
            "{}: no CertificateStore/My",
            path.display()
        );
        for s in &theirs {
            assert!(ours.contains(s), "{}: ours lacks {s:?}", path.display());
        }
        println!("{}: {} fields match", path.display(), theirs.len());
    }

    let protocol = std::fs::read_to_string(dir.join("../PROTOCOL.md")).unwrap_or_default();
    let (Some(start), Some(end)) = (
        protocol.find("<wap-provisioningdoc"),
        protocol.find("</wap-provisioningdoc>"),
    ) else {
        println!("SKIP WSTEP/Renew skeleton: ../shared/PROTOCOL.md has none");
        return;
    };
    let skeleton = signatures(&protocol[start..end + 22]);
    let renew: Vec<_> = skeleton
        .iter()
        .filter(|(p, _, _)| p.starts_with("CertificateStore/My/WSTEP"))
        .collect();
    assert!(renew.len() >= 4, "skeleton WSTEP/Renew: {renew:?}");
    for s in renew {
        assert!(ours.contains(s), "ours lacks skeleton {s:?}");
    }
    // DMClient parms we write have the skeleton's datatypes.
    for s in skeleton
        .iter()
        .filter(|(p, n, _)| p.starts_with("DMClient") && !n.is_empty())
    {
        if let Some(o) = ours.iter().find(|(p, n, _)| *p == s.0 && *n == s.1) {
            assert_eq!(o, s, "datatype of {}", s.1);
        }
    }
}

/// A session that loaded the device before a concurrent renewal must not undo it when it
/// commits; the renewal transaction itself is conditional on the presented certificate.
fn renewal_store_battery(s: &dyn Store) {
    let cert = |serial: &str| CertRecord {
        serial: serial.into(),
        device_id: "D1".into(),
        thumbprint: serial.to_uppercase(),
        issued_at: 1,
        not_after: 1000,
        revoked_at: None,
        revoke_reason: None,
    };
    let dev = Device {
        device_id: "D1".into(),
        owner: Some(winmdm::store::Owner::User {
            user_id: "u1".into(),
        }),
        enrollment_type: "Full".into(),
        cert_serial: "01".into(),
        cert_thumbprint: "01".into(),
        cert_not_after: 1000,
        state: DeviceState::Enrolled,
        ..Default::default()
    };
    s.record_enrollment(&dev, &cert("01"), 1, None).unwrap();
    let commit = |presented: &str, new: &str| RenewalCommit {
        device_id: "D1".into(),
        presented_serial: presented.into(),
        cert: cert(new),
        grace_until: 500,
    };
    let stale_session = s.get_device("D1").unwrap().unwrap();
    let RenewOutcome::Renewed { device, revoked } =
        s.record_renewal(&commit("01", "02"), 10).unwrap()
    else {
        panic!("renewal not recorded")
    };
    assert!(revoked.is_empty());
    assert_eq!(device.cert_serial, "02");
    // Unknown or other presented serials change nothing.
    assert_eq!(
        s.record_renewal(&commit("99", "03"), 11).unwrap(),
        RenewOutcome::Stale
    );
    assert!(s.get_cert("03").unwrap().is_none());
    // A round built from the pre-renewal record keeps the renewal.
    let mut d = stale_session.clone();
    d.last_seen = Some(20);
    s.commit_round(
        &Round {
            device: Some(d),
            ..Default::default()
        },
        20,
    )
    .unwrap();
    let now = s.get_device("D1").unwrap().unwrap();
    assert_eq!((now.cert_serial.as_str(), now.last_seen), ("02", Some(20)));
    assert_eq!(now.previous_cert.as_ref().unwrap().serial, "01");
    assert_eq!(now.renewals.len(), 1);
    // The same through the asynchronous commit (the embedded store's committer thread).
    let mut d = stale_session.clone();
    d.last_seen = Some(21);
    let round = Round {
        device: Some(d),
        ..Default::default()
    };
    winmdm::wait::block_on(s.commit_round_async(round, 21)).unwrap();
    let now = s.get_device("D1").unwrap().unwrap();
    assert_eq!((now.cert_serial.as_str(), now.last_seen), ("02", Some(21)));
    assert_eq!(now.previous_cert.as_ref().unwrap().serial, "01");
    assert_eq!(now.renewals.len(), 1);
    // The binding the management endpoint authenticates with is the record's.
    let binding = s.get_device_binding("D1").unwrap().unwrap();
    assert_eq!(binding, winmdm::store::DeviceBinding::from(&now));
    assert_eq!(
        (
            binding.cert_serial.as_str(),
            binding.previous_cert.unwrap().serial.as_str()
        ),
        ("02", "01")
    );
    assert!(s.get_device_binding("D9").unwrap().is_none());
    // Retiring the previous certificate through a round clears it and revokes it.
    s.commit_round(
        &Round {
            device: Some(now),
            revoke: vec![("01".into(), "used new".into())],
            ..Default::default()
        },
        30,
    )
    .unwrap();
    let now = s.get_device("D1").unwrap().unwrap();
    assert!(now.previous_cert.is_none());
    assert_eq!(
        s.get_device_binding("D1").unwrap().unwrap(),
        winmdm::store::DeviceBinding::from(&now)
    );
    assert!(s.get_cert("01").unwrap().unwrap().revoked_at.is_some());
    // A revoked certificate cannot be the base of a renewal.
    assert_eq!(
        s.record_renewal(&commit("01", "04"), 31).unwrap(),
        RenewOutcome::Stale
    );
    // Renewing again from the current certificate retires the previous one.
    s.record_renewal(&commit("02", "05"), 40).unwrap();
    let RenewOutcome::Renewed { revoked, device } =
        s.record_renewal(&commit("05", "06"), 41).unwrap()
    else {
        panic!("second renewal not recorded")
    };
    assert_eq!(revoked, ["02"]);
    assert_eq!(device.previous_cert.unwrap().serial, "05");
    assert_eq!(device.renewals.len(), 3);
    // Deleting the device revokes both certificates of a pending renewal.
    assert!(s.delete_device("D1", 50).unwrap());
    assert!(s.get_device_binding("D1").unwrap().is_none());
    for serial in ["05", "06"] {
        assert!(
            s.get_cert(serial).unwrap().unwrap().revoked_at.is_some(),
            "{serial}"
        );
    }
    // Re-enrolling a device with a pending renewal revokes both of its certificates too.
    let d2 = |serial: &str| Device {
        device_id: "D2".into(),
        cert_serial: serial.into(),
        ..dev.clone()
    };
    let cert2 = |serial: &str| CertRecord {
        device_id: "D2".into(),
        ..cert(serial)
    };
    s.record_enrollment(&d2("21"), &cert2("21"), 60, None)
        .unwrap();
    s.record_renewal(
        &RenewalCommit {
            device_id: "D2".into(),
            presented_serial: "21".into(),
            cert: cert2("22"),
            grace_until: 500,
        },
        61,
    )
    .unwrap();
    let out = s
        .record_enrollment(&d2("23"), &cert2("23"), 62, None)
        .unwrap();
    assert_eq!(out.revoked, ["22", "21"]);
    assert!(s.get_device("D2").unwrap().unwrap().previous_cert.is_none());
}

#[test]
fn renewal_store_transaction_mem() {
    renewal_store_battery(&MemStore::new());
}

#[test]
fn renewal_store_transaction_redb() {
    renewal_store_battery(&winmdm::store::redb::RedbStore::temporary().unwrap());
}

#[test]
fn renewal_store_transaction_sled() {
    renewal_store_battery(&SledStore::temporary().unwrap());
}

#[test]
fn renewal_store_transaction_pg() {
    let Some(db) = crate::support::pg::TestDb::create("renewal_store_transaction_pg") else {
        return;
    };
    renewal_store_battery(&db.store());
}
