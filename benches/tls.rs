//! The server's side of one new mutual-TLS 1.3 handshake, against the handshake-crypto bound
//! (issue 15), measured in the same run.
//!
//! A device (EC P-256 key, certificate issued by the server's P-256 CA) and the server's own
//! rustls configuration (`winmdm::http::tls_configs`, the management endpoint's) complete a
//! handshake over in-memory buffers, with no socket and no HTTP. Only the server's calls are
//! timed (`read_tls`, `process_new_packets`, `write_tls`): its ECDSA signature, both
//! verifications, the X25519 exchange, the key schedule, record protection and the session
//! ticket. The device offers what Windows offers first (`TLS_AES_256_GCM_SHA384`: rustls'
//! client order is the same), with resumption off, so every handshake is a full one.
//!
//! * `server_handshake/this_server`: the configuration `winmdm serve` uses (AES-128-GCM /
//!   SHA-256 chosen by the server, one stateless ticket);
//! * `server_handshake/rustls_defaults`: the same certificates with rustls' defaults (the
//!   client's suite order, so AES-256-GCM / SHA-384, and two tickets kept in a 256-entry
//!   cache): the baseline;
//! * `server_handshake/no_ticket`: this server's choice without any ticket (what a ticket costs);
//! * `server_handshake/resumed`: this server, the device resuming with the ticket of its
//!   previous handshake (no signature, no certificate verification: the X25519 exchange, the
//!   ticket's decryption and a new ticket);
//! * `identity/first_sight` and `identity/seen_before`: the management endpoint's check of the
//!   certificate on a connection's first request (`Ca::authenticate_device_cert`: parse,
//!   validity, EKU, SHA-1 thumbprint, and the CA signature again for bytes it has not verified
//!   before), for a certificate never presented and for one presented on an earlier connection;
//! * `server_handshake_rsa_ca/*`: the default RSA-2048 CA with an RSA-2048 device key (what
//!   Windows' CSRs carry): the TLS certificate the server generates (EC P-256) against an
//!   RSA-2048 one;
//! * `bound/crypto`: the bound itself (`testkit::handshake`), printed with the ratios at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use winmdm::ca::{self, KeyAlgorithm};

const DEVICE: &str = "BE0C0000000000000000000000000002";

/// One full handshake; returns the time spent in the server's calls.
fn handshake(server_cfg: &Arc<ServerConfig>, client_cfg: &Arc<ClientConfig>) -> Duration {
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(client_cfg.clone(), name).expect("client");
    let mut server = ServerConnection::new(server_cfg.clone()).expect("server");
    let mut spent = Duration::ZERO;
    let mut to_server = Vec::with_capacity(4096);
    let mut to_client = Vec::with_capacity(4096);
    for _ in 0..16 {
        to_server.clear();
        while client.wants_write() {
            client.write_tls(&mut to_server).expect("client write");
        }
        let t = Instant::now();
        let mut rd = &to_server[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).expect("server read");
            server.process_new_packets().expect("server process");
        }
        to_client.clear();
        while server.wants_write() {
            server.write_tls(&mut to_client).expect("server write");
        }
        spent += t.elapsed();
        let mut rd = &to_client[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).expect("client read");
            client.process_new_packets().expect("client process");
        }
        if !client.is_handshaking()
            && !server.is_handshaking()
            && !client.wants_write()
            && to_client.is_empty()
        {
            assert!(
                server.peer_certificates().is_some_and(|c| !c.is_empty()),
                "the server saw the device certificate"
            );
            return spent;
        }
    }
    panic!("handshake did not finish");
}

/// A server whose CA has the key algorithm `ca` (`--ca-key-algorithm`), and a device holding a
/// certificate it issued for a fresh `device` key.
struct Setup {
    app: winmdm::app::App,
    _dir: tempfile::TempDir,
    csr: ca::CsrVerified,
    cert: ca::IssuedCert,
    key: PrivateKeyDer<'static>,
}

impl Setup {
    fn new(ca: &str, device: KeyAlgorithm, now: time::OffsetDateTime) -> Setup {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = winmdm::config::ServeOptions {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            public_url: Some("https://localhost:8443".into()),
            ca_key_algorithm: Some(ca.into()),
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        }
        .resolve()
        .expect("cfg");
        let app = winmdm::app::App::open(cfg, Some("bench-token".into())).expect("app");
        let (der, key) = ca::testing::device_csr(DEVICE, device);
        let csr = ca::verify_csr(&der, 2048).expect("csr");
        let cert = app
            .ca
            .issue_device_cert(&csr, DEVICE, Duration::from_secs(86_400), now)
            .expect("issue");
        Setup {
            app,
            _dir: dir,
            csr,
            cert,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// The device's TLS client (`resume`: it keeps and offers its last session ticket).
    fn client(&self, resume: bool) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.app.ca.cert_der().to_vec()))
            .expect("root");
        winmdm::testkit::load::tls_client(
            Arc::new(roots),
            Some((
                CertificateDer::from(self.cert.der.clone()),
                self.key.clone_key(),
            )),
            resume,
        )
        .expect("client")
    }
}

fn bench(c: &mut Criterion) {
    let now = time::OffsetDateTime::now_utc();
    let p256 = Setup::new("ecdsa-p256", KeyAlgorithm::EcdsaP256, now);
    let (app, cert) = (&p256.app, &p256.cert);

    let ours = winmdm::http::tls_configs(app).expect("tls").mutual;
    // rustls' defaults with the same certificates and client verifier.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(app.ca.cert_der().to_vec()))
        .expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots.clone()),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .expect("verifier");
    let mut defaults = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(app.tls.chain.clone(), app.tls.key.clone_key())
        .expect("defaults");
    defaults.alpn_protocols = ours.alpn_protocols.clone();
    let defaults = Arc::new(defaults);
    let mut no_ticket = (*ours).clone();
    no_ticket.send_tls13_tickets = 0;
    let no_ticket = Arc::new(no_ticket);

    let client = p256.client(false);
    // A device returning with the ticket of its previous connection.
    let resuming = p256.client(true);

    let mut g = c.benchmark_group("server_handshake");
    g.sample_size(30).measurement_time(Duration::from_secs(6));
    for (label, cfg) in [
        ("this_server", &ours),
        ("rustls_defaults", &defaults),
        ("no_ticket", &no_ticket),
    ] {
        g.bench_function(label, |b| {
            b.iter_custom(|n| (0..n).map(|_| handshake(cfg, &client)).sum())
        });
    }
    g.bench_function("resumed", |b| {
        b.iter_custom(|n| (0..n).map(|_| handshake(&ours, &resuming)).sum())
    });
    g.finish();

    // Windows' usual setup: the default RSA-2048 CA and an RSA-2048 device key, with the TLS
    // certificate the server generates (EC P-256) and with an RSA-2048 one (what it generated
    // before, and what a certificate from a public CA often is).
    let rsa = Setup::new("rsa2048", KeyAlgorithm::Rsa2048, now);
    let generated = winmdm::http::tls_configs(&rsa.app).expect("tls").mutual;
    let (srv_pem, srv_key) = rsa
        .app
        .ca
        .issue_server_cert(&["localhost".into()], KeyAlgorithm::Rsa2048, now)
        .expect("server cert");
    let srv_chain = CertificateDer::pem_slice_iter(srv_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let srv_key = PrivateKeyDer::from_pem_slice(srv_key.as_bytes()).expect("key");
    let certified =
        rustls::sign::CertifiedKey::from_der(srv_chain, srv_key, generated.crypto_provider())
            .expect("certified key");
    let mut rsa_tls = (*generated).clone();
    rsa_tls.cert_resolver = Arc::new(rustls::sign::SingleCertAndKey::from(certified));
    let rsa_tls = Arc::new(rsa_tls);
    let rsa_client = rsa.client(false);
    let mut g = c.benchmark_group("server_handshake_rsa_ca");
    g.sample_size(30).measurement_time(Duration::from_secs(6));
    g.bench_function("generated_p256_tls_cert", |b| {
        b.iter_custom(|n| (0..n).map(|_| handshake(&generated, &rsa_client)).sum())
    });
    g.bench_function("rsa2048_tls_cert", |b| {
        b.iter_custom(|n| (0..n).map(|_| handshake(&rsa_tls, &rsa_client)).sum())
    });
    g.finish();

    let mut g = c.benchmark_group("identity");
    g.bench_function("first_sight", |b| {
        b.iter_batched(
            || {
                app.ca
                    .issue_device_cert(&p256.csr, DEVICE, Duration::from_secs(86_400), now)
                    .expect("issue")
                    .der
            },
            |der| {
                app.ca
                    .authenticate_device_cert(&der, now)
                    .expect("identity")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("seen_before", |b| {
        b.iter(|| {
            app.ca
                .authenticate_device_cert(&cert.der, now)
                .expect("identity")
        })
    });
    g.finish();

    // The ratios, from a direct measurement of each (criterion's own report has the spread).
    let bound = winmdm::testkit::handshake::measure(Duration::from_millis(300)).expect("bound");
    let per = |cfg: &Arc<ServerConfig>| {
        let n = 400;
        let total: Duration = (0..n).map(|_| handshake(cfg, &client)).sum();
        total / n
    };
    let ours_t = per(&ours);
    let defaults_t = per(&defaults);
    let crypto = bound.per_handshake().as_secs_f64();
    println!("{bound}");
    for (label, t) in [("this_server", ours_t), ("rustls_defaults", defaults_t)] {
        println!(
            "server_handshake/{label}: {:.1} µs, {:.2}× the bound's {:.1} µs ({:.0} % of the bound's rate)",
            t.as_secs_f64() * 1e6,
            t.as_secs_f64() / crypto,
            crypto * 1e6,
            100.0 * crypto / t.as_secs_f64()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
