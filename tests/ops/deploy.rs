//! The installation files in `examples/deploy/`: the default config file is what `winmdm serve
//! --config` accepts, the systemd unit passes `systemd-analyze verify`, and the Debian package
//! definition installs files that exist.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use winmdm::config::{LogFormat, ServeOptions};

use crate::support::child::ChildServer;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/deploy")
        .join(file)
}

#[tokio::test]
async fn the_default_config_file_is_accepted_by_serve_config() {
    let path = deploy("winmdm.toml");
    let cfg = ServeOptions::from_file(&path)
        .expect("the file parses")
        .resolve()
        .expect("the file is a valid configuration");
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:443");
    assert_eq!(
        cfg.mgmt_listen.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:444")
    );
    assert_eq!(cfg.data_dir, Path::new("/var/lib/winmdm"));
    assert_eq!(cfg.log_format, LogFormat::Json);
    assert_eq!(
        cfg.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9464")
    );
    assert_eq!(cfg.public_url.host, "enterpriseenrollment.example.com");

    // The real binary with --config: the file's settings apply (JSON logs) where no flag
    // overrides them (the test's ports, data directory and URLs).
    let tmp = tempfile::tempdir().unwrap();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = ChildServer::new(&tmp.path().join("data"), &tmp.path().join("server.log"));
    child.args = vec![
        "--config".into(),
        path.display().to_string(),
        "--metrics-listen".into(),
        metrics.to_string(),
        "--ca-key-algorithm".into(),
        "ecdsa-p256".into(),
    ];
    child.env.push(("RUST_LOG".into(), "info".into()));
    child.spawn();
    let c = child.wait_ready(Duration::from_secs(60)).await;
    let r = c.request("GET", "/readyz", &[], Vec::new()).await;
    assert_eq!(r.status, 200);
    child.stop(Duration::from_secs(20));
    let log = std::fs::read_to_string(&child.log_path).unwrap();
    assert!(log.contains("winmdm ready"), "{log}");
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("log_format = \"json\" from the file: {e}: {l}"));
    }
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let required = std::env::var("WINMDM_REQUIRE_SYSTEMD").as_deref() == Ok("1");
    let have = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            !required,
            "WINMDM_REQUIRE_SYSTEMD=1 but systemd-analyze is not installed (apt-get install systemd)"
        );
        println!("SKIP the_systemd_unit_passes_systemd_analyze_verify: no systemd-analyze");
        return;
    }
    // verify checks that ExecStart's binary exists: point it at the one cargo built.
    let unit = std::fs::read_to_string(deploy("winmdm.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/winmdm serve --config /etc/winmdm/winmdm.toml"));
    let unit = unit.replace("/usr/bin/winmdm", env!("CARGO_BIN_EXE_winmdm"));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("winmdm.service");
    std::fs::write(&file, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed: {err}");
    // verify exits 0 on unknown keys and bad values; it only warns.
    assert!(
        err.trim().is_empty(),
        "systemd-analyze verify warned:\n{err}"
    );

    // The hardening, as systemd scores it (offline mode: systemd 250 and later).
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().find_map(|l| {
        l.split("Overall exposure level for winmdm.service: ")
            .nth(1)
    }) {
        Some(rest) => {
            let score: f64 = rest
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unreadable score: {rest}"));
            assert!(score <= 2.0, "exposure {score} (0 best, 10 worst):\n{text}");
        }
        None => println!(
            "note: systemd-analyze security --offline not supported here: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
    for key in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=winmdm",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "SystemCallFilter=@system-service",
        "UMask=0077",
    ] {
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .any(|l| l == key),
            "{key}"
        );
    }
}

#[test]
fn the_debian_package_installs_the_binary_the_unit_and_the_config() {
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap(),
    )
    .unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().expect("assets");
    let mut dests = Vec::new();
    for a in assets {
        let a = a.as_array().expect("[source, dest, mode]");
        let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
        if !src.starts_with("target/") {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(src).is_file(),
                "{src} exists"
            );
        }
        dests.push(dest.to_string());
    }
    for want in [
        "usr/bin/",
        "lib/systemd/system/winmdm.service",
        "etc/winmdm/winmdm.toml",
    ] {
        assert!(dests.iter().any(|d| d == want), "{want} in {dests:?}");
    }
    let conf = deb["conf-files"].as_array().expect("conf-files");
    assert!(conf
        .iter()
        .any(|c| c.as_str() == Some("/etc/winmdm/winmdm.toml")));
}
