//! Windows compatibility of what the server puts on the wire (issue 24): which TLS handshakes
//! ask for a client certificate, the renewal periods, the certificate stores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;

use crate::support::device::{self, element_text, DeviceInfo, Provisioning};
use crate::support::TestServer;

/// A client-certificate resolver that records whether the server asked for a certificate
/// (rustls calls it only when a CertificateRequest arrived) and offers none.
#[derive(Debug, Default)]
struct Asked(AtomicBool);

impl ResolvesClientCert for Asked {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.store(true, Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The root of the server's TLS chain (what a client must trust).
fn tls_root(srv: &TestServer) -> CertificateDer<'static> {
    srv.app.tls.chain.last().expect("TLS chain").clone()
}

/// One HTTP/1.1 request over a fresh TLS connection to `port` with SNI `sni`. Returns (status,
/// whether the handshake carried a CertificateRequest).
async fn probe(srv: &TestServer, port: u16, sni: &str, method: &str, path: &str) -> (u16, bool) {
    let asked = Arc::new(Asked::default());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(tls_root(srv)).expect("root");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_cert_resolver(asked.clone());
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_string()).expect("name"), tcp)
        .await
        .expect("handshake");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("http");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", sni)
        .header("content-type", "application/soap+xml; charset=utf-8")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    (status, asked.0.load(Ordering::SeqCst))
}

/// The port of an `https://host:port/...` URL.
fn url_port(url: &str) -> u16 {
    let authority = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or("");
    authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(443)
}

const PUBLIC_PATHS: &[(&str, &str)] = &[
    ("GET", "/EnrollmentServer/Discovery.svc"),
    ("POST", "/EnrollmentServer/Discovery.svc"),
    ("POST", "/EnrollmentServer/Policy.svc"),
    ("POST", "/EnrollmentServer/Enrollment.svc"),
    ("GET", "/EnrollmentServer/Auth"),
    ("GET", "/EnrollmentServer/ToS"),
    ("GET", "/invite/x"),
    ("GET", "/api/v1/users"),
    ("GET", "/healthz"),
];

#[tokio::test]
async fn enrollment_endpoints_never_ask_for_a_client_certificate_management_does() {
    let srv = TestServer::start().await;
    for (method, path) in PUBLIC_PATHS {
        let (_, asked) = probe(&srv, srv.addr.port(), "localhost", method, path).await;
        assert!(
            !asked,
            "{method} {path}: the handshake sent a CertificateRequest (WinHTTP error 12044)"
        );
    }
    // The management endpoint is where the provisioning document sends the device.
    srv.create_user("tls@example.com", "pw-tls-1234").await;
    let e = device::enroll(
        &srv.client(),
        &DeviceInfo::new(1, "tls@example.com", "pw-tls-1234"),
    )
    .await;
    let mgmt_port = url_port(&e.mgmt_url);
    let (status, asked) = probe(
        &srv,
        mgmt_port,
        "localhost",
        "POST",
        "/ManagementServer/MDM.svc",
    )
    .await;
    assert!(
        asked,
        "the management endpoint asks for the device certificate"
    );
    assert!(
        status == 401 || status == 403 || status == 415,
        "no certificate, no management: {status}"
    );
    // Renewal is addressed to the mutual-TLS endpoint too.
    let prov = Provisioning::parse(&e.provisioning_doc);
    let server_url = prov.parm("ServerURL").expect("WSTEP/Renew ServerURL");
    assert_eq!(url_port(server_url), mgmt_port, "{server_url}");
    assert!(server_url.ends_with("/EnrollmentServer/Enrollment.svc"));
    let (_, asked) = probe(
        &srv,
        mgmt_port,
        "localhost",
        "POST",
        "/EnrollmentServer/Enrollment.svc",
    )
    .await;
    assert!(
        asked,
        "renewal (ROBO) authenticates with the device certificate"
    );
    // And the device's management session works there.
    let mut md = crate::support::mdm_device::ManagedDevice::new(&srv, &e);
    md.session().await;
    srv.stop().await;
}

/// MS-XCEP renewalPeriodSeconds and WSTEP/Renew/RenewPeriod, from one enrollment.
async fn renewal_periods(srv: &TestServer, n: u32) -> (u64, u64) {
    let upn = format!("renew{n}@example.com");
    srv.create_user(&upn, "pw-renew-1234").await;
    let info = DeviceInfo::new(n, &upn, "pw-renew-1234");
    let c = srv.client();
    let (policy_url, _) = device::discover_and_policy(&c, &info).await;
    let r = c
        .soap(
            &policy_url,
            device::policy_xml(
                &info.upn,
                &info.password,
                &policy_url,
                &device::message_id(),
            )
            .as_bytes(),
        )
        .await;
    let policy: u64 = element_text(&r.text(), "renewalPeriodSeconds")
        .expect("renewalPeriodSeconds")
        .parse()
        .expect("number");
    let e = device::enroll(&c, &info).await;
    let days: u64 = Provisioning::parse(&e.provisioning_doc)
        .parm("RenewPeriod")
        .expect("RenewPeriod")
        .parse()
        .expect("number");
    (policy, days)
}

#[tokio::test]
async fn policy_renewal_period_agrees_with_wstep_renew_period() {
    let srv = TestServer::start_with(|o| o.renew_period_days = Some(30)).await;
    let (policy, days) = renewal_periods(&srv, 2).await;
    assert_eq!(days, 30);
    assert_eq!(
        policy,
        30 * 86_400,
        "renewalPeriodSeconds = RenewPeriod days"
    );
    srv.stop().await;
    let srv = TestServer::start().await;
    let (policy, days) = renewal_periods(&srv, 3).await;
    assert_eq!(days, 42, "the CertificateStore CSP default");
    assert_eq!(policy, days * 86_400);
    srv.stop().await;
}

#[tokio::test]
async fn certificate_stores_follow_the_documented_rules_for_full_and_device() {
    let srv = TestServer::start().await;
    srv.create_user("stores@example.com", "pw-stores-123").await;
    for (n, kind, store) in [(4, "Full", "User"), (5, "Device", "System")] {
        let mut info = DeviceInfo::new(n, "stores@example.com", "pw-stores-123");
        info.enrollment_type = kind;
        let e = device::enroll(&srv.client(), &info).await;
        let prov = Provisioning::parse(&e.provisioning_doc);
        assert_eq!(prov.client_store, store, "{kind}: My/{store}");
        assert_eq!(
            prov.parm("SSLCLIENTCERTSEARCHCRITERIA"),
            Some(format!("Subject=CN%3D{}&Stores=My%5C{store}", info.device_id).as_str()),
            "{kind}"
        );
        // The self-signed CA is the root; no intermediate.
        assert_eq!(prov.root_cert, srv.app.ca.cert_der());
        assert!(!e.provisioning_doc.contains(r#"<characteristic type="CA">"#));
    }
    srv.stop().await;
}

#[tokio::test]
async fn management_by_sni_on_the_public_port() {
    let srv = TestServer::start_with(|o| {
        let public = o.public_url.clone().expect("public url");
        let port = public.rsplit(':').next().expect("port").to_string();
        o.mgmt_url = Some(format!("https://mgmt.localhost:{port}"));
        o.mgmt_listen = Some("off".into());
    })
    .await;
    assert_eq!(srv.mgmt_addr, None, "no second listener");
    let port = srv.addr.port();
    for (method, path) in PUBLIC_PATHS {
        let (_, asked) = probe(&srv, port, "localhost", method, path).await;
        assert!(!asked, "{method} {path} with the public name");
    }
    let (status, asked) = probe(
        &srv,
        port,
        "mgmt.localhost",
        "POST",
        "/ManagementServer/MDM.svc",
    )
    .await;
    assert!(asked, "the management name gets the CertificateRequest");
    assert!(status == 401 || status == 403 || status == 415, "{status}");
    let (status, _) = probe(
        &srv,
        port,
        "mgmt.localhost",
        "GET",
        "/EnrollmentServer/Discovery.svc",
    )
    .await;
    assert_eq!(
        status, 404,
        "only management and renewal behind the management name"
    );
    srv.create_user("sni@example.com", "pw-sni-12345").await;
    let e = device::enroll(
        &srv.client(),
        &DeviceInfo::new(8, "sni@example.com", "pw-sni-12345"),
    )
    .await;
    assert_eq!(
        e.mgmt_url,
        format!("https://mgmt.localhost:{port}/ManagementServer/MDM.svc")
    );
    srv.stop().await;
}

/// A client-session store that counts the TLS 1.3 tickets the server sends.
#[derive(Debug)]
struct CountingTickets {
    inner: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl rustls::client::ClientSessionStore for CountingTickets {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_tls13_ticket(name, value)
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// What one connection negotiated: the cipher suite, and whether it resumed.
async fn negotiate(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
) -> (rustls::CipherSuite, Option<rustls::HandshakeKind>) {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let suite = tls
        .get_ref()
        .1
        .negotiated_cipher_suite()
        .expect("suite")
        .suite();
    let kind = tls.get_ref().1.handshake_kind();
    // One request, so that the client reads what the server sent after the handshake (the
    // session tickets).
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("http");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/healthz")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let _ = resp.into_body().collect().await;
    (suite, kind)
}

/// Windows offers `TLS_AES_256_GCM_SHA384` first (TLS 1.3) and `…_AES_256_GCM_SHA384` first
/// (TLS 1.2), as rustls' client does. Both listeners choose AES-128-GCM with SHA-256 (the
/// cheaper handshake, `http::tls_configs`), send one stateless session ticket, and resume with
/// it however many handshakes happened in between.
#[tokio::test]
async fn the_server_picks_aes_128_gcm_sends_one_ticket_and_resumes() {
    let srv = TestServer::start().await;
    let mgmt = srv.mgmt_addr.expect("management listener").port();
    for port in [srv.addr.port(), mgmt] {
        let store = Arc::new(CountingTickets {
            inner: rustls::client::ClientSessionMemoryCache::new(8),
            tickets: Default::default(),
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(tls_root(&srv)).expect("root");
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        assert_eq!(
            cfg.crypto_provider().cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "the client prefers AES-256, as Windows does"
        );
        cfg.resumption = rustls::client::Resumption::store(store.clone());
        let cfg = Arc::new(cfg);
        let (suite, kind) = negotiate(port, cfg.clone()).await;
        assert_eq!(
            suite,
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            "port {port}"
        );
        assert_eq!(kind, Some(rustls::HandshakeKind::Full));
        assert_eq!(
            store.tickets.load(Ordering::SeqCst),
            1,
            "one ticket, port {port}"
        );
        let (suite, kind) = negotiate(port, cfg.clone()).await;
        assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(kind, Some(rustls::HandshakeKind::Resumed), "port {port}");
        // The ticket holds the session (nothing kept on the server): the device still resumes
        // after 300 other devices' handshakes (a 256-entry session cache would have lost it).
        let mut others = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        others.resumption = rustls::client::Resumption::disabled();
        let others = tokio_rustls::TlsConnector::from(Arc::new(others));
        for _ in 0..300 {
            let tcp = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            // The server makes its ticket when it reads this handshake's Finished, already sent.
            let _ = others
                .connect(ServerName::try_from("localhost").expect("name"), tcp)
                .await
                .expect("handshake");
        }
        let (_, kind) = negotiate(port, cfg).await;
        assert_eq!(
            kind,
            Some(rustls::HandshakeKind::Resumed),
            "port {port}, after 300 other handshakes"
        );

        let tls12 = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let (suite, _) = negotiate(port, Arc::new(tls12)).await;
        assert!(
            matches!(
                suite,
                rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                    | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            ),
            "TLS 1.2 on port {port}: {suite:?}"
        );
    }
    srv.stop().await;
}

/// The TLS certificate the server generates has an EC P-256 key even under the default RSA-2048
/// CA: the server signs with it in every full handshake (README, "The handshake's own cost").
#[tokio::test]
async fn the_generated_tls_certificate_has_a_p256_key_under_an_rsa_ca() {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let srv = TestServer::start().await;
    let key_oid = |der: &[u8]| {
        let (_, c) = X509Certificate::from_der(der).expect("certificate");
        c.public_key().algorithm.algorithm.to_id_string()
    };
    assert_eq!(
        key_oid(srv.app.ca.cert_der()),
        "1.2.840.113549.1.1.1",
        "RSA CA"
    );
    assert_eq!(
        key_oid(&srv.app.tls.chain[0]),
        "1.2.840.10045.2.1",
        "EC server key"
    );
    // And the management endpoint answers over it.
    let (status, asked) = probe(
        &srv,
        srv.mgmt_addr.expect("management").port(),
        "localhost",
        "POST",
        "/ManagementServer/MDM.svc",
    )
    .await;
    assert!(asked && (status == 401 || status == 415), "{status}");
    srv.stop().await;
}
