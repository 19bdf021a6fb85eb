//! Enrollment benchmarks.
//!
//! * `enroll_step/*`: the CPU work of one enrollment — argon2id password check, PKCS#10 verify,
//!   certificate signing, provisioning document — each alone and together, with an RSA-2048 CA
//!   (the default) and a P-256 CA. Baseline: a bare aws-lc-rs RSA-2048 PKCS#1 SHA-256 signature,
//!   the floor of any RSA CA's signing step.
//! * `round_over_tls/*`: a whole discovery → policy → enrollment round against the real server on
//!   loopback TLS (three new TLS connections, as Windows makes). Baseline: three TLS handshakes +
//!   `GET /healthz`, the transport floor of the round.
//!
//! Inputs are generated at start: a fresh RSA-2048 device key and a Windows-shaped CSR
//! (`winmdm::ca::testing::device_csr`), user `bench@example.com`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::{CertificateDer, ServerName};
use winmdm::ca::{self, Ca, KeyAlgorithm};
use winmdm::soap::provisioning::{self, CertStore, PollSchedule, ProvisioningDoc};

const DEVICE: &str = "BE0C0000000000000000000000000001";

fn doc(ca: &Ca, cert: &ca::IssuedCert) -> String {
    let ct = ca.thumbprint();
    provisioning::build(&ProvisioningDoc {
        root_ca_der: ca.cert_der(),
        root_thumbprint: &ct,
        intermediate_ca: None,
        client_cert_der: &cert.der,
        client_thumbprint: &cert.thumbprint,
        cert_store: CertStore::MyUser,
        provider_id: "winmdm",
        name: "winmdm",
        mgmt_url: "https://localhost:8443/ManagementServer/MDM.svc",
        client_cert_subject: &cert.subject,
        poll: PollSchedule::default(),
        ent_dmid: DEVICE,
        ent_device_name: Some("DESKTOP-BENCH"),
        upn: Some("bench@example.com"),
        renew: None,
    })
}

fn enroll_step(c: &mut Criterion) {
    let now = time::OffsetDateTime::now_utc();
    let (csr, _) = ca::testing::device_csr(DEVICE, KeyAlgorithm::Rsa2048);
    let rsa = Ca::generate(KeyAlgorithm::Rsa2048, "bench RSA CA", now).expect("rsa ca");
    let ec = Ca::generate(KeyAlgorithm::EcdsaP256, "bench P-256 CA", now).expect("ec ca");
    let phc = winmdm::auth::hash_password("correct horse battery").expect("hash");
    let year = Duration::from_secs(365 * 86_400);
    let verified = ca::verify_csr(&csr, 2048).expect("csr");
    let issued = rsa
        .issue_device_cert(&verified, DEVICE, year, now)
        .expect("issue");

    let mut g = c.benchmark_group("enroll_step");
    g.bench_function("argon2id_verify", |b| {
        b.iter(|| assert!(winmdm::auth::verify_password("correct horse battery", &phc)))
    });
    let cache = winmdm::auth::VerifyCache::new();
    let work = winmdm::password_work::PasswordWork::new(1, std::time::Duration::from_secs(5));
    g.bench_function("argon2id_verify_cached", |b| {
        b.iter(|| {
            assert_eq!(
                cache.verify(&work, "bench@example.com", "correct horse battery", &phc),
                Ok(true)
            )
        })
    });
    g.bench_function("csr_verify", |b| {
        b.iter(|| ca::verify_csr(&csr, 2048).expect("csr"))
    });
    g.bench_function("sign/rsa2048_ca", |b| {
        b.iter(|| {
            rsa.issue_device_cert(&verified, DEVICE, year, now)
                .expect("issue")
        })
    });
    g.bench_function("sign/p256_ca", |b| {
        b.iter(|| {
            ec.issue_device_cert(&verified, DEVICE, year, now)
                .expect("issue")
        })
    });
    g.bench_function("provisioning_doc", |b| b.iter(|| doc(&rsa, &issued)));
    for (name, ca) in [("rsa2048_ca", &rsa), ("p256_ca", &ec)] {
        g.bench_function(format!("verify+sign+doc/{name}"), |b| {
            b.iter(|| {
                let v = ca::verify_csr(&csr, 2048).expect("csr");
                let cert = ca.issue_device_cert(&v, DEVICE, year, now).expect("issue");
                doc(ca, &cert)
            })
        });
    }
    // Baseline: one raw RSA-2048 signature over a certificate-sized TBS.
    let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(
        &KeyAlgorithm::Rsa2048
            .generate_key()
            .expect("key")
            .serialize_der(),
    )
    .expect("rsa key");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let tbs = vec![0x5au8; 900];
    g.bench_function("baseline/raw_rsa2048_sign", |b| {
        b.iter(|| {
            let mut sig = vec![0u8; key.public_modulus_len()];
            key.sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                &tbs,
                &mut sig,
            )
            .expect("sign");
            sig
        })
    });
    g.finish();
}

async fn post(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: String,
) -> (u16, Vec<u8>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("http");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/soap+xml; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("req");
    let resp = tx.send_request(req).await.expect("send");
    let st = resp.status().as_u16();
    (
        st,
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
}

fn round_over_tls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let tmp = tempfile::tempdir().expect("tmp");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cfg = winmdm::config::ServeOptions {
        listen: Some(addr),
        public_url: Some(format!("https://localhost:{}", addr.port())),
        mgmt_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(tmp.path().to_path_buf()),
        ..Default::default()
    }
    .resolve()
    .expect("cfg");
    let app = Arc::new(winmdm::app::App::open(cfg, Some("bench-token".into())).expect("app"));
    app.store
        .create_user(&winmdm::store::User {
            upn: "bench@example.com".into(),
            id: String::new(),
            password_hash: winmdm::auth::hash_password("pw-bench").expect("hash"),
            created_at: 0,
            disabled: false,
        })
        .expect("user");
    let server = rt
        .block_on(async { winmdm::http::Server::from_listener(app.clone(), listener) })
        .expect("server");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(app.ca.cert_der().to_vec()))
        .expect("root");
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let info = winmdm::testkit::DeviceInfo::new(1, "bench@example.com", "pw-bench");
    let (csr, _) = ca::testing::device_csr(&info.device_id, KeyAlgorithm::Rsa2048);
    let discover = winmdm::testkit::discover_xml(&info.upn, "4.0", &["OnPremise"], "urn:uuid:1");
    let policy = winmdm::testkit::policy_xml(&info.upn, &info.password, "x", "urn:uuid:2");
    let rst = winmdm::testkit::rst_xml(&info, &csr, "x", "urn:uuid:3");

    let mut g = c.benchmark_group("round_over_tls");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    // Each round is a new device's first enrollment: it pays one argon2id check (policy), the
    // enrollment request then hits the cache, as a real device's would seconds later.
    g.bench_function("discover+policy+enroll", |b| {
        b.iter(|| {
            app.password_cache.clear();
            rt.block_on(async {
                let (a, _) = post(
                    addr,
                    client.clone(),
                    "POST",
                    "/EnrollmentServer/Discovery.svc",
                    discover.clone(),
                )
                .await;
                let (p, _) = post(
                    addr,
                    client.clone(),
                    "POST",
                    "/EnrollmentServer/Policy.svc",
                    policy.clone(),
                )
                .await;
                let (e, body) = post(
                    addr,
                    client.clone(),
                    "POST",
                    "/EnrollmentServer/Enrollment.svc",
                    rst.clone(),
                )
                .await;
                assert_eq!(
                    (a, p, e),
                    (200, 200, 200),
                    "{}",
                    String::from_utf8_lossy(&body)
                );
            })
        })
    });
    g.bench_function("baseline/3x_tls_handshake+healthz", |b| {
        b.iter(|| {
            rt.block_on(async {
                for _ in 0..3 {
                    let (s, _) = post(addr, client.clone(), "GET", "/healthz", String::new()).await;
                    assert_eq!(s, 200);
                }
            })
        })
    });
    g.finish();
    let _ = stop.send(());
    let _ = rt.block_on(task);
}

criterion_group!(benches, enroll_step, round_over_tls);
criterion_main!(benches);
