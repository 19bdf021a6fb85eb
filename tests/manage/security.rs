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
    let (csr, key) = winmdm::ca::testing::device_csr(&d.device_id, KeyAlgorithm::EcdsaP256);
    let csr = winmdm::ca::verify_csr(&csr, 2048).unwrap();
    let cert = rogue
        .issue_device_cert(
            &csr,
            &d.device_id,
            std::time::Duration::from_secs(86_400),
            now,
        )
        .unwrap();
    let id = (
        vec![CertificateDer::from(cert.der)],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    );
    let client = Client::new(srv.addr, d.client_root(), Some(id));
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
    let (csr, key) = winmdm::ca::testing::device_csr(&d.device_id, KeyAlgorithm::EcdsaP256);
    let csr = winmdm::ca::verify_csr(&csr, 2048).unwrap();
    let cert = srv
        .app
        .ca
        .issue_device_cert(
            &csr,
            &d.device_id,
            std::time::Duration::from_secs(86_400),
            long_ago,
        )
        .unwrap();
    let id = (
        vec![CertificateDer::from(cert.der)],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    );
    let client = Client::new(srv.addr, d.client_root(), Some(id));
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
