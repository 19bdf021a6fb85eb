//! `winmdm autopilot …` against an in-process server.

use std::path::PathBuf;

use base64::Engine;

use crate::support::{TestServer, ADMIN_TOKEN};

/// Runs the CLI in-process: (exit code, output).
async fn run(srv: &TestServer, ca: &std::path::Path, args: &[&str]) -> (i32, String) {
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
        (code, String::from_utf8(out).expect("utf-8 output"))
    })
    .await
    .expect("join")
}

fn ca_pem(srv: &TestServer, dir: &std::path::Path) -> PathBuf {
    let b64 = base64::engine::general_purpose::STANDARD.encode(srv.app.ca.cert_der());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem).expect("write pem");
    path
}

#[tokio::test]
async fn cli_profiles_and_devices() {
    let srv = TestServer::start_with(|o| {
        o.tenant_id = Some(super::TENANT_ID.into());
        o.tenant_domain = Some(super::TENANT_DOMAIN.into());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_pem(&srv, dir.path());
    let (code, out) = run(
        &srv,
        &ca,
        &[
            "autopilot",
            "profile",
            "add",
            "Kiosks",
            "--device-type",
            "hololens",
            "--mode",
            "self-deploying",
            "--name-template",
            "HL-%RAND:4%",
            "--all-groups",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("created Autopilot profile Kiosks"), "{out}");
    // A rule broken: the server's message, exit 1.
    let (code, out) = run(
        &srv,
        &ca,
        &[
            "autopilot",
            "profile",
            "add",
            "Bad",
            "--device-type",
            "hololens",
            "--mode",
            "user-driven",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("self-deploying") && out.contains("HTTP 400"),
        "{out}"
    );
    let (code, out) = run(&srv, &ca, &["autopilot", "profile", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("Kiosks") && out.contains("all groups") && out.contains("hololens"),
        "{out}"
    );
    let (code, out) = run(&srv, &ca, &["autopilot", "profile", "show", "kiosks"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("device_name_template") && out.contains("HL-%RAND:4%"),
        "{out}"
    );
    let file = dir.path().join("AutopilotConfigurationFile.json");
    let (code, out) = run(
        &srv,
        &ca,
        &[
            "autopilot",
            "profile",
            "export",
            "Kiosks",
            "-o",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(v["CloudAssignedTenantDomain"], super::TENANT_DOMAIN);

    // Devices: a UTF-16 file as PowerShell writes it.
    let csv = dir.path().join("hashes.csv");
    let text = format!(
        "{}\r\nCLI-1,,{},Lab,\r\nCLI-2,,,Lab,\r\n",
        super::HEADER,
        super::hash(5, 48)
    );
    std::fs::write(&csv, super::utf16le_bom(&text)).unwrap();
    let (code, out) = run(
        &srv,
        &ca,
        &["autopilot", "device", "import", csv.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported 1 Autopilot devices"), "{out}");
    assert!(out.contains("3    missing hardware hash"), "{out}");
    let (code, out) = run(
        &srv,
        &ca,
        &[
            "autopilot",
            "device",
            "set",
            "cli-1",
            "--device-name",
            "LAB-01",
            "--group-tag",
            "",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let (_, out) = run(
        &srv,
        &ca,
        &["--json", "autopilot", "device", "list", "--serial", "CLI"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["devices"][0]["device_name"], "LAB-01");
    assert_eq!(v["devices"][0]["group_tag"], serde_json::Value::Null);
    let (code, out) = run(
        &srv,
        &ca,
        &["autopilot", "device", "set", "cli-1", "--device-name", ""],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot be unset"), "{out}");
    let (code, _) = run(&srv, &ca, &["autopilot", "device", "rm", "CLI-1"]).await;
    assert_eq!(code, 0);
    let (code, out) = run(
        &srv,
        &ca,
        &["autopilot", "settings", "--tenant-lockdown", "on"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tenant_lockdown: true"), "{out}");
    let (code, _) = run(&srv, &ca, &["autopilot", "profile", "rm", "Kiosks"]).await;
    assert_eq!(code, 0);
    let (code, out) = run(&srv, &ca, &["autopilot", "profile", "show", "Kiosks"]).await;
    assert_eq!(code, 1, "{out}");
}
