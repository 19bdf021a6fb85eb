//! A device can only ever act as itself: every way of presenting the wrong certificate fails and
//! delivers nothing.

use serde_json::json;

use super::{commands, enrolled, queue};
use crate::support::mdm_device::ManagedDevice;
use crate::support::{Client, TestServer};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use winmdm::ca::{Ca, KeyAlgorithm};

async fn pending_get(srv: &TestServer, d: &ManagedDevice) {
    queue(
        srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "secret"}),
    )
    .await;
}

async fn still_pending(srv: &TestServer, d: &ManagedDevice) {
    let c = &commands(srv, &d.device_id).await[0];
    assert_eq!(c["state"], "pending", "a command was delivered: {c}");
    assert_eq!(c["send_count"], 0);
}

/// A client presenting a fresh one-day certificate for `d`'s DeviceID issued by `ca` at `at`.
fn client_with_cert_from(
    ca: &Ca,
    srv: &TestServer,
    d: &ManagedDevice,
    at: time::OffsetDateTime,
) -> Client {
    let (csr, key) = winmdm::ca::testing::device_csr(&d.device_id, KeyAlgorithm::EcdsaP256);
    let csr = winmdm::ca::verify_csr(&csr, 2048).unwrap();
    let cert = ca
        .issue_device_cert(
            &csr,
            &d.device_id,
            std::time::Duration::from_secs(86_400),
            at,
        )
        .unwrap();
    let id = (
        vec![CertificateDer::from(cert.der)],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    );
    Client::new(srv.addr, d.client_root(), Some(id))
}

/// Sends package 1 with `client`; returns the HTTP status, or None if TLS refused the connection.
async fn try_session(d: &ManagedDevice, client: &Client) -> Option<u16> {
    client
        .try_request(
            "POST",
            &d.mgmt_path,
            &[("content-type", "application/vnd.syncml.dm+xml")],
            d.first_package(1, "").into_bytes(),
        )
        .await
        .map(|r| r.status)
}

#[tokio::test]
async fn no_client_certificate_is_401() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 30).await;
    pending_get(&srv, &d).await;
    let st = try_session(&d, &srv.client()).await;
    assert_eq!(st, Some(401));
    still_pending(&srv, &d).await;
    srv.stop().await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 31).await;
    pending_get(&srv, &d).await;
    let now = time::OffsetDateTime::now_utc();
    let rogue = Ca::generate(KeyAlgorithm::EcdsaP256, "rogue CA", now).unwrap();
    let client = client_with_cert_from(&rogue, &srv, &d, now);
    let st = try_session(&d, &client).await;
    assert_ne!(st, Some(200), "rogue certificate accepted");
    still_pending(&srv, &d).await;
    srv.stop().await;
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 32).await;
    pending_get(&srv, &d).await;
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let client = client_with_cert_from(&srv.app.ca, &srv, &d, long_ago);
    let st = try_session(&d, &client).await;
    assert_ne!(st, Some(200), "expired certificate accepted");
    still_pending(&srv, &d).await;
    srv.stop().await;
}

#[tokio::test]
async fn revoked_certificate_is_403_even_on_a_resumed_connection() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 33).await;
    assert!(
        d.session_quiet().await,
        "the certificate works before revocation"
    );
    pending_get(&srv, &d).await;
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    srv.app
        .store
        .revoke_cert(dev["cert_serial"].as_str().unwrap(), "test", 1)
        .unwrap();
    // The same client config (TLS session tickets cached) reconnects and resumes.
    let st = try_session(&d, &d.client).await;
    assert_eq!(st, Some(403));
    still_pending(&srv, &d).await;
    srv.stop().await;
}

#[tokio::test]
async fn one_devices_certificate_cannot_speak_for_another() {
    let srv = TestServer::start().await;
    let a = enrolled(&srv, 34).await;
    let b = enrolled(&srv, 35).await;
    pending_get(&srv, &b).await;
    // A's certificate, B's DeviceID in SyncHdr/Source.
    let body = b.first_package(1, "");
    let r = a
        .client
        .request(
            "POST",
            &a.mgmt_path,
            &[("content-type", "application/vnd.syncml.dm+xml")],
            body.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 403);
    still_pending(&srv, &b).await;
    srv.stop().await;
}

/// Signs `body` as Windows does with RequireMessageSigning (detached CMS, SHA-256) using openssl.
fn sign_with_openssl(d: &ManagedDevice, body: &str) -> Option<String> {
    use base64::Engine;
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        println!("SKIP: openssl not found");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let pem = |label: &str, der: &[u8]| {
        let body: Vec<String> = b64
            .encode(der)
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            body.join("\n")
        )
    };
    std::fs::write(dir.path().join("cert.pem"), pem("CERTIFICATE", &d.cert_der)).unwrap();
    std::fs::write(dir.path().join("key.pem"), pem("PRIVATE KEY", &d.key_der)).unwrap();
    std::fs::write(dir.path().join("body.xml"), body).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256", "-signer",
        ])
        .arg(dir.path().join("cert.pem"))
        .arg("-inkey")
        .arg(dir.path().join("key.pem"))
        .arg("-in")
        .arg(dir.path().join("body.xml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(b64.encode(out.stdout))
}

#[tokio::test]
async fn message_signature_authenticates_behind_a_tls_terminating_proxy() {
    let srv = TestServer::start_with(|o| o.message_signing = Some(true)).await;
    let d = enrolled(&srv, 36).await;
    pending_get(&srv, &d).await;
    let body = d.first_package(1, "");
    let Some(sig) = sign_with_openssl(&d, &body) else {
        return;
    };
    let anon = srv.client();
    let ct = ("content-type", "application/vnd.syncml.dm+xml");
    // Unsigned, no certificate: 401.
    let r = anon
        .request("POST", &d.mgmt_path, &[ct], body.clone().into_bytes())
        .await;
    assert_eq!(r.status, 401);
    // A signature over another body: 403, nothing delivered.
    let other = d.first_package(2, "");
    let r = anon
        .request(
            "POST",
            &d.mgmt_path,
            &[ct, ("mdm-signature", &sig)],
            other.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 403);
    still_pending(&srv, &d).await;
    // Signed by the device's identity certificate: accepted and the command is delivered.
    let r = anon
        .request(
            "POST",
            &d.mgmt_path,
            &[ct, ("MDM-Signature", &sig)],
            body.clone().into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("./DevDetail/SwV"), "{}", r.text());
    srv.stop().await;

    // With message signing off (the default) the header is ignored: no certificate, no entry.
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 37).await;
    let body = d.first_package(1, "");
    let Some(sig) = sign_with_openssl(&d, &body) else {
        return;
    };
    let r = srv
        .client()
        .request(
            "POST",
            &d.mgmt_path,
            &[ct, ("mdm-signature", &sig)],
            body.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 401);
    srv.stop().await;
}

#[tokio::test]
async fn hostile_syncml_from_an_authenticated_device_gets_clean_errors() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 38).await;
    pending_get(&srv, &d).await;
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><SyncML xmlns="SYNCML:SYNCML1.2">&b;</SyncML>"#;
    let deep = format!(
        "<SyncML xmlns=\"SYNCML:SYNCML1.2\">{}",
        "<SyncBody>".repeat(20_000)
    );
    let no_msgid = d
        .first_package(1, "")
        .replace("<MsgID>1</MsgID>", "<MsgID>x</MsgID>");
    let truncated = d.first_package(1, "");
    let truncated = &truncated[..truncated.len() / 2];
    for body in [
        b"garbage".as_slice(),
        b"",
        bomb.as_bytes(),
        deep.as_bytes(),
        b"<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr>\xff</SyncHdr></SyncML>",
        no_msgid.as_bytes(),
        truncated.as_bytes(),
    ] {
        let r = d
            .client
            .request(
                "POST",
                &d.mgmt_path,
                &[("content-type", "application/vnd.syncml.dm+xml")],
                body.to_vec(),
            )
            .await;
        assert_eq!(
            r.status,
            400,
            "{:?} → {} {}",
            String::from_utf8_lossy(&body[..body.len().min(40)]),
            r.status,
            r.text()
        );
    }
    let ct = d
        .client
        .request(
            "POST",
            &d.mgmt_path,
            &[("content-type", "application/vnd.syncml.dm+wbxml")],
            d.first_package(1, "").into_bytes(),
        )
        .await;
    assert_eq!(ct.status, 415);
    let huge = vec![b'a'; 2 * 1024 * 1024];
    let r = d
        .client
        .request(
            "POST",
            &d.mgmt_path,
            &[("content-type", "application/vnd.syncml.dm+xml")],
            huge,
        )
        .await;
    assert_eq!(r.status, 413);
    still_pending(&srv, &d).await;
    // The device can still run a normal session afterwards.
    let mut d = d;
    let got = d.session().await;
    assert_eq!(got.len(), 1);
    srv.stop().await;
}

/// Issue 13, finding 5: what a device reports is stored bounded. Each session carries a 1226
/// alert with 700 kB of `Data`, a 1224 LoginStatus of 50 kB and inventory with 40 kB values
/// and 2 kB node names: the record stays small.
#[tokio::test]
async fn device_reported_alerts_and_inventory_are_stored_bounded() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 1301).await;
    let big = "A".repeat(700 * 1024);
    let value = "é".repeat(20 * 1024);
    let long_uri = format!("./DevDetail/Ext/{}", "x".repeat(2048));
    for i in 0..8 {
        d.login_status = "u".repeat(50 * 1024);
        let extra = format!(
            r#"<Alert><CmdID>5</CmdID><Data>1226</Data><Item><Source><LocURI>./Vendor/{src}</LocURI></Source><Meta><Type xmlns="syncml:metinf">com.example.{i}.{ty}</Type></Meta><Data>{big}</Data></Item></Alert><Replace><CmdID>6</CmdID><Item><Source><LocURI>./DevDetail/SwV</LocURI></Source><Data>{value}</Data></Item><Item><Source><LocURI>{long_uri}</LocURI></Source><Data>v</Data></Item></Replace>"#,
            src = "s".repeat(4096),
            ty = "t".repeat(4096),
        );
        d.session_with(&extra).await;
    }
    let dev = srv.app.store.get_device(&d.device_id).unwrap().unwrap();
    let bytes = serde_json::to_vec(&dev).unwrap().len();
    assert!(bytes < 128 * 1024, "device record is {bytes} bytes");
    assert_eq!(dev.alerts.len(), 8);
    for a in &dev.alerts {
        assert!(a.data.as_ref().unwrap().len() <= 1024);
        assert!(a.source.as_ref().unwrap().len() <= 256);
        assert!(a.alert_type.as_ref().unwrap().len() <= 256);
    }
    assert!(dev.login_status.as_ref().unwrap().len() <= 16);
    let swv = &dev.inventory["./DevDetail/SwV"];
    assert!(
        swv.len() <= 4096 && swv.chars().all(|c| c == 'é'),
        "cut at a character boundary"
    );
    assert!(
        dev.inventory.keys().all(|k| k.len() <= 256),
        "overlong node names are not stored"
    );
    let (st, page) = srv.admin("GET", "/api/v1/devices", None).await;
    assert_eq!(st, 200);
    assert!(page.to_string().len() < 128 * 1024);
    srv.stop().await;
}

/// Windows sends a session's messages on one kept connection. The CA's checks of the connection's
/// certificate are made once per connection (`identity::ConnectionIdentity`), but its
/// revocation and its validity period are still decided on every request: a certificate revoked
/// or expired while the connection stays open gets 403 on the next message.
#[tokio::test]
async fn a_kept_connection_is_refused_once_its_certificate_is_revoked_or_expired() {
    use winmdm::clock::Clock;
    use winmdm::testkit::load;
    let clock = crate::support::TestClock::at(time::OffsetDateTime::now_utc().unix_timestamp());
    let srv = TestServer::start_with_clock(std::sync::Arc::new(clock.clone()), |_| {}).await;
    let d = enrolled(&srv, 36).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(d.root_der.clone())).unwrap();
    let tls = load::tls_client(
        std::sync::Arc::new(roots),
        Some((
            CertificateDer::from(d.cert_der.clone()),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(d.key_der.clone())),
        )),
        false,
    )
    .unwrap();
    let to = load::Endpoint {
        addr: srv.mgmt_addr.expect("management listener"),
        host: "localhost".into(),
    };
    // Expiry: one connection, a message before and one after the certificate's NotAfter.
    let mut tx = load::connect(&to, tls.clone()).await.unwrap();
    assert_eq!(post(&d, &mut tx, 1).await, 200);
    assert_eq!(post(&d, &mut tx, 2).await, 200, "the same connection again");
    clock.set(clock.now_unix() + 366 * 86_400);
    assert_eq!(
        post(&d, &mut tx, 3).await,
        403,
        "expired while the connection stayed open"
    );
    clock.set(clock.now_unix() - 366 * 86_400);
    assert_eq!(
        post(&d, &mut tx, 4).await,
        200,
        "valid again at the earlier time"
    );

    // Revocation: the connection's next message after the certificate was revoked.
    pending_get(&srv, &d).await;
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    srv.app
        .store
        .revoke_cert(dev["cert_serial"].as_str().unwrap(), "test", 1)
        .unwrap();
    assert_eq!(
        post(&d, &mut tx, 5).await,
        403,
        "revoked while the connection stayed open"
    );
    still_pending(&srv, &d).await;
    srv.stop().await;
}

/// Package 1 of session `session` of `d` on the kept connection `tx`: the HTTP status.
async fn post(d: &ManagedDevice, tx: &mut winmdm::testkit::load::Sender, session: u32) -> u16 {
    winmdm::testkit::load::request(
        tx,
        "POST",
        "localhost",
        &d.mgmt_path,
        &[("content-type", "application/vnd.syncml.dm+xml")],
        d.first_package(session, "").into_bytes(),
    )
    .await
    .expect("request on the kept connection")
    .0
}
