//! `winmdm tenant …` as the README shows it, through the CLI's library entry point against an
//! in-process server and the Graph stand-in.

use std::path::Path;

use base64::Engine;

use super::{app_cert, server_for, CLIENT, TENANT};
use crate::autopilot::{hash, HEADER};
use crate::support::graph::GraphStandIn;
use crate::support::{TestServer, ADMIN_TOKEN};

async fn run(srv: &TestServer, ca: &Path, args: &[&str]) -> (i32, String) {
    let mut all: Vec<String> = vec![
        "winmdm".into(),
        "--server".into(),
        format!("https://localhost:{}", srv.addr.port()),
        "--token".into(),
        ADMIN_TOKEN.into(),
        "--ca-cert".into(),
        ca.display().to_string(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let code = winmdm::cli::run(all, &mut out);
        (code, String::from_utf8(out).unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_commands_from_the_readme() {
    let g = GraphStandIn::start(TENANT, CLIENT).await;
    let app = app_cert();
    g.register_cert(&app.der);
    let dir = tempfile::tempdir().unwrap();
    let srv = server_for(&g, dir.path(), None, None).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(srv.app.ca.cert_der());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let ca = dir.path().join("server-ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let (crt, key) = (dir.path().join("app.crt"), dir.path().join("app.key"));
    std::fs::write(&crt, &app.cert_pem).unwrap();
    std::fs::write(&key, &app.key_pem).unwrap();

    let (code, out) = run(&srv, &ca, &["tenant", "status"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("not_connected"), "{out}");
    let (code, out) = run(
        &srv,
        &ca,
        &[
            "tenant",
            "connect",
            "--tenant-id",
            TENANT,
            "--client-id",
            CLIENT,
            "--certificate",
            crt.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("connected") && out.contains("Contoso Stand-in"),
        "{out}"
    );
    assert!(!out.contains("PRIVATE KEY"));

    let csv = dir.path().join("hashes.csv");
    std::fs::write(
        &csv,
        format!("{HEADER}\r\nCLI-0001,,{},Sales,\r\n", hash(77, 64)),
    )
    .unwrap();
    let (code, out) = run(
        &srv,
        &ca,
        &["autopilot", "device", "import", csv.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    // The import kicked the worker: it registers the device on its own; let it finish so
    // that only the dry run runs while the tenant's writes are counted.
    let start = std::time::Instant::now();
    while g.identity_by_serial("CLI-0001").is_none() || !g.st().imported.is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "import not followed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    g.register_oem("OEM-CLI", "Retail");
    let writes = g.st().writes.len();
    let (code, out) = run(&srv, &ca, &["tenant", "sync", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pull-add") && out.contains("OEM-CLI"), "{out}");
    assert!(out.contains("dry run: nothing written"), "{out}");
    assert_eq!(g.st().writes.len(), writes);
    let (code, out) = run(&srv, &ca, &["tenant", "sync"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(g.identity_by_serial("CLI-0001").is_some(), "{out}");
    let (code, out) = run(
        &srv,
        &ca,
        &[
            "tenant",
            "group",
            "create",
            "--name",
            "Autopilot Sales",
            "--group-tag",
            "Sales",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(r#"(device.devicePhysicalIds -any (_ -eq "[OrderID]:Sales"))"#),
        "{out}"
    );
    let (code, out) = run(&srv, &ca, &["tenant", "group", "list"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Autopilot Sales") && out.contains("dynamic"),
        "{out}"
    );

    // A revoked credential: `sync` fails (exit 1) and says the changes are kept.
    g.revoke();
    let (code, out) = run(&srv, &ca, &["tenant", "sync"]).await;
    assert_eq!(code, 1, "{out}");
    let (code, out) = run(&srv, &ca, &["tenant", "status"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("error") && out.contains("AADSTS700027"),
        "{out}"
    );

    let (code, out) = run(&srv, &ca, &["tenant", "disconnect"]).await;
    assert_eq!(code, 0, "{out}");
    let (_, out) = run(&srv, &ca, &["tenant", "status"]).await;
    assert!(out.contains("not_connected"), "{out}");
}
