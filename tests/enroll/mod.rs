//! End-to-end enrollment over real TLS: the fake device, the captured Windows requests, and every
//! refusal a device or an admin would notice.

mod admin;
pub(crate) mod conformance;
mod hardening;
mod owner;
mod refusals;

use rcgen::PublicKeyData;
use x509_parser::prelude::*;

use crate::support::device::{self, DeviceInfo, Provisioning};
use crate::support::TestServer;

/// Upper-case hex SHA-1, as Windows names certificates in the provisioning document.
pub fn sha1_upper(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

#[tokio::test]
async fn fake_device_enrolls_and_gets_a_valid_identity() {
    let srv = TestServer::start().await;
    srv.create_user("alice@example.com", "S3cret!pass").await;
    let info = DeviceInfo::new(1, "Alice@Example.com", "S3cret!pass");
    let before = srv.app.clock.now_unix();
    let e = device::enroll(&srv.client(), &info).await;
    let prov = Provisioning::parse(&e.provisioning_doc);

    // The root in the provisioning doc is our CA, named by its thumbprint.
    assert_eq!(e.root_der, srv.app.ca.cert_der());
    assert_eq!(prov.root_thumbprint, sha1_upper(&e.root_der));
    assert_eq!(prov.client_thumbprint, sha1_upper(&e.cert_der));
    assert_eq!(
        prov.client_store, "User",
        "EnrollmentType Full goes to My/User"
    );

    // The certificate chains to that root, certifies the CSR's key, and is a client-auth cert.
    let (_, root) = X509Certificate::from_der(&e.root_der).expect("root parses");
    let (_, cert) = X509Certificate::from_der(&e.cert_der).expect("cert parses");
    cert.verify_signature(Some(root.public_key()))
        .expect("cert signed by the root");
    assert_eq!(cert.issuer(), root.subject());
    assert_eq!(
        cert.public_key().raw,
        e.key.subject_public_key_info().as_slice(),
        "cert certifies the CSR key"
    );
    let eku = cert
        .extended_key_usage()
        .expect("eku ok")
        .expect("eku present")
        .value;
    assert!(eku.client_auth && !eku.server_auth);
    let ku = cert.key_usage().expect("ku ok").expect("ku present").value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    assert!(!cert.is_ca());
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    assert_eq!(
        cn,
        vec![info.device_id.as_str()],
        "subject bound to DeviceID"
    );
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    assert!(
        nb <= before && before - nb <= 600,
        "NotBefore at most minutes in the past: {nb} vs {before}"
    );
    assert!((na - nb - 365 * 86_400).abs() <= 900, "one-year validity");
    assert_eq!(cert.raw_serial().len(), 16, "128-bit serial");

    // w7 application points at our (mutual-TLS) management endpoint and at the certificate.
    assert_eq!(
        e.mgmt_url,
        format!(
            "https://localhost:{}/ManagementServer/MDM.svc",
            srv.mgmt_addr.expect("management listener").port()
        )
    );
    assert_eq!(prov.parm("APPID"), Some("w7"));
    assert_eq!(prov.parm("PROVIDER-ID"), Some("winmdm"));
    let crit = prov
        .parm("SSLCLIENTCERTSEARCHCRITERIA")
        .expect("search criteria");
    assert!(
        crit.contains(&info.device_id) && crit.contains("Stores=My%5CUser"),
        "{crit}"
    );
    // Renewal (ROBO) is on by default: advertised with the CSP's default period.
    assert_eq!(prov.parm("ROBOSupport"), Some("true"));
    assert_eq!(prov.parm("RenewPeriod"), Some("42"));
    assert_eq!(prov.parm("RetryInterval"), Some("7"));
    assert!(
        prov.parm("IntervalForFirstSetOfRetries").is_some(),
        "poll schedule present"
    );

    // The device record and the certificate serial are stored.
    let (st, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", info.device_id), None)
        .await;
    assert_eq!(st, 200, "{dev}");
    assert_eq!(dev["upn"], "alice@example.com");
    assert_eq!(dev["hw_dev_id"], info.hw_dev_id.as_str());
    assert_eq!(dev["enrollment_type"], "Full");
    assert_eq!(dev["device_name"], info.device_name.as_str());
    assert_eq!(dev["os_edition"], "72");
    assert_eq!(dev["state"], "enrolled");
    assert_eq!(
        dev["macs"].as_array().map(|a| a.len()),
        Some(2),
        "MACs de-duplicated"
    );
    assert_eq!(dev["cert_thumbprint"], prov.client_thumbprint.as_str());
    let serial = dev["cert_serial"].as_str().expect("serial").to_string();
    assert_eq!(serial, winmdm::clock::hex(cert.raw_serial()));
    assert!(srv.app.store.get_cert(&serial).expect("store").is_some());
    srv.stop().await;
}

#[tokio::test]
async fn device_enrollment_type_goes_to_the_system_store() {
    let srv = TestServer::start().await;
    srv.create_user("kiosk@example.com", "pw-kiosk-1").await;
    let mut info = DeviceInfo::new(2, "kiosk@example.com", "pw-kiosk-1");
    info.enrollment_type = "Device";
    let e = device::enroll(&srv.client(), &info).await;
    let prov = Provisioning::parse(&e.provisioning_doc);
    assert_eq!(prov.client_store, "System");
    let crit = prov.parm("SSLCLIENTCERTSEARCHCRITERIA").expect("criteria");
    assert!(crit.contains("Stores=My%5CSystem"), "{crit}");
    srv.stop().await;
}

#[tokio::test]
async fn windows_11_request_version_9_is_accepted() {
    let srv = TestServer::start().await;
    srv.create_user("bob@example.com", "pw-bob-123").await;
    let mut info = DeviceInfo::new(3, "bob@example.com", "pw-bob-123");
    info.request_version = "9.0".into();
    let e = device::enroll(&srv.client(), &info).await;
    assert!(!e.cert_der.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn re_enrollment_replaces_the_record_and_revokes_the_old_certificate() {
    let srv = TestServer::start().await;
    srv.create_user("carol@example.com", "pw-carol-1").await;
    let info = DeviceInfo::new(4, "carol@example.com", "pw-carol-1");
    let c = srv.client();
    let first = device::enroll(&c, &info).await;
    let (_, d1) = srv
        .admin("GET", &format!("/api/v1/devices/{}", info.device_id), None)
        .await;
    let second = device::enroll(&c, &info).await;
    assert_ne!(first.cert_der, second.cert_der);
    let (_, d2) = srv
        .admin("GET", &format!("/api/v1/devices/{}", info.device_id), None)
        .await;
    let (s1, s2) = (
        d1["cert_serial"].as_str().unwrap(),
        d2["cert_serial"].as_str().unwrap(),
    );
    assert_ne!(s1, s2);
    let old = srv
        .app
        .store
        .get_cert(s1)
        .unwrap()
        .expect("old serial still recorded");
    assert!(old.revoked_at.is_some(), "old certificate revoked");
    assert!(srv
        .app
        .store
        .get_cert(s2)
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());

    // Same hardware under a new DeviceID (e.g. after a reset): the old record is unenrolled.
    let mut again = info.clone();
    again.device_id = "A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0".into();
    device::enroll(&c, &again).await;
    let (_, old_dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", info.device_id), None)
        .await;
    assert_eq!(old_dev["state"], "unenrolled");
    assert!(srv
        .app
        .store
        .get_cert(s2)
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    let revoked = srv.app.store.list_revoked().unwrap();
    assert_eq!(revoked.len(), 2);
    srv.stop().await;
}

#[tokio::test]
async fn restart_keeps_users_devices_and_the_ca() {
    let srv = TestServer::start().await;
    srv.create_user("dave@example.com", "pw-dave-12").await;
    let info = DeviceInfo::new(5, "dave@example.com", "pw-dave-12");
    let e = device::enroll(&srv.client(), &info).await;
    let ca_before = srv.app.ca.cert_der().to_vec();
    let srv = srv.restart().await;
    assert_eq!(
        srv.app.ca.cert_der(),
        ca_before.as_slice(),
        "same CA after restart"
    );
    let (st, page) = srv.admin("GET", "/api/v1/devices", None).await;
    assert_eq!(st, 200);
    assert_eq!(page["devices"][0]["device_id"], info.device_id.as_str());
    let (_, users) = srv.admin("GET", "/api/v1/users", None).await;
    assert_eq!(users["users"][0]["upn"], "dave@example.com");
    // The user can still authenticate, and the new certificate chains to the same root.
    let e2 = device::enroll(&srv.client(), &info).await;
    assert_eq!(e2.root_der, e.root_der);
    srv.stop().await;
}

#[tokio::test]
async fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let srv = TestServer::start().await;
    for f in ["ca/ca.key", "tls/server.key"] {
        let mode = std::fs::metadata(srv.data_dir.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f} mode {mode:o}");
    }
    for d in ["ca", "tls"] {
        let dir_mode = std::fs::metadata(srv.data_dir.join(d))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700, "{d}/ mode {dir_mode:o}");
    }
    // A data dir we create ourselves is private too.
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("new-data-dir");
    winmdm::pki::ensure_private_dir(&fresh).unwrap();
    assert_eq!(
        std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // Without WINMDM_ADMIN_TOKEN, a generated token is written 0600 and reused.
    let (t1, path) = winmdm::pki::admin_token(tmp.path(), None).unwrap();
    let path = path.expect("token file");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (t2, _) = winmdm::pki::admin_token(tmp.path(), None).unwrap();
    assert_eq!(t1, t2);
    assert_eq!(t1.len(), 64);
    srv.stop().await;
}

#[tokio::test]
async fn admin_supplied_ca_and_tls_certificate_are_used_in_place() {
    let keys = tempfile::tempdir().unwrap();
    let now = ::time::OffsetDateTime::now_utc();
    let ca = winmdm::ca::Ca::generate(
        winmdm::ca::KeyAlgorithm::EcdsaP256,
        "Contoso Device CA",
        now,
    )
    .unwrap();
    let (tls_cert, tls_key) = ca
        .issue_server_cert(
            &["localhost".to_string()],
            winmdm::ca::KeyAlgorithm::EcdsaP256,
            now,
        )
        .unwrap();
    let p = |n: &str| keys.path().join(n);
    std::fs::write(p("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(p("ca.key"), ca.key_pem()).unwrap();
    std::fs::write(p("tls.pem"), format!("{tls_cert}{}", ca.cert_pem())).unwrap();
    std::fs::write(p("tls.key"), tls_key).unwrap();
    let srv = TestServer::start_with(|o| {
        o.ca_cert = Some(p("ca.pem"));
        o.ca_key = Some(p("ca.key"));
        o.tls_cert = Some(p("tls.pem"));
        o.tls_key = Some(p("tls.key"));
    })
    .await;
    assert_eq!(srv.app.ca.cert_der(), ca.cert_der());
    assert!(
        !srv.data_dir.join("ca").exists(),
        "a supplied CA is not copied into the data dir"
    );
    assert!(!srv.data_dir.join("tls").exists());
    srv.create_user("ivy@example.com", "pw-ivy-123").await;
    let e = device::enroll(
        &srv.client(),
        &DeviceInfo::new(40, "ivy@example.com", "pw-ivy-123"),
    )
    .await;
    assert_eq!(e.root_der, ca.cert_der());
    let (_, root) = X509Certificate::from_der(&e.root_der).unwrap();
    let (_, cert) = X509Certificate::from_der(&e.cert_der).unwrap();
    cert.verify_signature(Some(root.public_key()))
        .expect("issued by the supplied CA");
    srv.stop().await;
}

#[tokio::test]
async fn an_ecdsa_p256_ca_enrolls_devices_too() {
    let srv = TestServer::start_with(|o| o.ca_key_algorithm = Some("ecdsa-p256".into())).await;
    srv.create_user("jo@example.com", "pw-jo-1234").await;
    let e = device::enroll(
        &srv.client(),
        &DeviceInfo::new(41, "jo@example.com", "pw-jo-1234"),
    )
    .await;
    let (_, root) = X509Certificate::from_der(&e.root_der).unwrap();
    let (_, cert) = X509Certificate::from_der(&e.cert_der).unwrap();
    assert_eq!(
        root.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "EC CA key"
    );
    cert.verify_signature(Some(root.public_key())).unwrap();
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.1",
        "device key stays RSA"
    );
    srv.stop().await;
}

/// The binary as a user runs it: `winmdm serve` in an empty directory creates `./winmdm-data`,
/// serves, and stops cleanly on SIGTERM.
#[tokio::test]
async fn serve_binary_starts_on_defaults_and_stops_on_sigterm() {
    let cwd = tempfile::tempdir().unwrap();
    // The server also binds the next port (its management listener by default): take a port
    // whose neighbour is free too, or a test running beside this one may hold it.
    let port = (0..100)
        .find_map(|_| {
            let a = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            let p = a.local_addr().ok()?.port();
            let _b = std::net::TcpListener::bind(("127.0.0.1", p.checked_add(1)?)).ok()?;
            Some(p)
        })
        .expect("two free adjacent ports");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(cwd.path())
        .env_remove("WINMDM_ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let data = cwd.path().join("winmdm-data");
    let mut up = false;
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("server exited ({status}) before listening: {err}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "server did not start");
    let root = std::fs::read_to_string(data.join("ca/ca.pem")).unwrap();
    let root = rustls::pki_types::pem::PemObject::from_pem_slice(root.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer| c.to_vec())
        .unwrap();
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let c = crate::support::Client::new(format!("127.0.0.1:{port}").parse().unwrap(), root, None);
    let (st, _) = c
        .admin("GET", "/api/v1/users", None, Some(token.trim()))
        .await;
    assert_eq!(st, 200, "generated admin token works");
    let r = c
        .request("GET", "/EnrollmentServer/Discovery.svc", &[], vec![])
        .await;
    assert_eq!(r.status, 200);
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("server did not stop within 15 s of SIGTERM")
    });
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    // The logging thread's queue was written out at exit, the last line included.
    assert!(log.contains("shutting down: no new connections"), "{log}");
    // stderr is a pipe, not a terminal: plain text, no colour codes.
    assert!(
        !log.contains('\x1b'),
        "ANSI escape codes in a log that is not a terminal: {log:?}"
    );
    assert!(!log.contains("BEGIN"), "no key material in the log");
}
