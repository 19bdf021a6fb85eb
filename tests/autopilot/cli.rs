//! `winmdm autopilot …` against an in-process server.

use crate::support::cli::Cli;
use crate::support::TestServer;

/// Runs the CLI in-process: (exit code, output).
async fn run(cli: &Cli, args: &[&str]) -> (i32, String) {
    cli.run(args).await
}

#[tokio::test]
async fn cli_profiles_and_devices() {
    let srv = TestServer::start_with(|o| {
        o.tenant_id = Some(super::TENANT_ID.into());
        o.tenant_domain = Some(super::TENANT_DOMAIN.into());
    })
    .await;
    let cli = Cli::new(&srv);
    let dir = &cli.dir;
    let (code, out) = run(
        &cli,
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
        &cli,
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
    let (code, out) = run(&cli, &["autopilot", "profile", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("Kiosks") && out.contains("all groups") && out.contains("hololens"),
        "{out}"
    );
    let (code, out) = run(&cli, &["autopilot", "profile", "show", "kiosks"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("device_name_template") && out.contains("HL-%RAND:4%"),
        "{out}"
    );
    let file = dir.path().join("AutopilotConfigurationFile.json");
    let (code, out) = run(
        &cli,
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
        &cli,
        &["autopilot", "device", "import", csv.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported 1 Autopilot devices"), "{out}");
    assert!(out.contains("3    missing hardware hash"), "{out}");
    let (code, out) = run(
        &cli,
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
        &cli,
        &["--json", "autopilot", "device", "list", "--serial", "CLI"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["devices"][0]["device_name"], "LAB-01");
    assert_eq!(v["devices"][0]["group_tag"], serde_json::Value::Null);
    let (code, out) = run(
        &cli,
        &["autopilot", "device", "set", "cli-1", "--device-name", ""],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot be unset"), "{out}");
    let (code, _) = run(&cli, &["autopilot", "device", "rm", "CLI-1"]).await;
    assert_eq!(code, 0);
    let (code, out) = run(&cli, &["autopilot", "settings", "--tenant-lockdown", "on"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tenant_lockdown: true"), "{out}");
    let (code, _) = run(&cli, &["autopilot", "profile", "rm", "Kiosks"]).await;
    assert_eq!(code, 0);
    let (code, out) = run(&cli, &["autopilot", "profile", "show", "Kiosks"]).await;
    assert_eq!(code, 1, "{out}");
}
