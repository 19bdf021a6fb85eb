//! `winmdm backup` / `winmdm restore` with the real binary against a server under load (issue
//! 16): devices run sessions, an admin task queues commands with client-chosen ids and new
//! devices enroll while the backup streams. Everything acknowledged before the backup started
//! (commands answered 201, certificates issued) must be in the restored store; the restored
//! data directory must serve the devices enrolled before (same CA, same TLS key, same token).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use winmdm::store::{CertStore, CommandQueue, DeviceStore};

use crate::support::device::{self, DeviceInfo, Enrolled};
use crate::support::mdm_device::ManagedDevice;
use crate::support::{TestServer, ADMIN_TOKEN};

const UPN: &str = "backup@example.com";
const PASSWORD: &str = "Backup-pass-1";
const PASSPHRASE: &str = "a passphrase of some length";

fn serial_of(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("device certificate");
    c.tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_ca_pem(srv: &TestServer, path: &Path) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(srv.app.ca.cert_der());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).expect("ascii"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    std::fs::write(path, pem).expect("write pem");
}

/// Runs the real binary; returns (success, stdout + stderr).
async fn winmdm(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_winmdm"));
        for (k, _) in std::env::vars() {
            if k.starts_with("WINMDM_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd.args(&args).output().expect("run winmdm");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_load_restores_every_acknowledged_command_and_serial() {
    let srv = TestServer::start().await;
    if srv.app.cfg.database_url.is_some() {
        println!(
            "SKIP: on PostgreSQL the store is backed up with pg_dump (covered by the embedded run)"
        );
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let ca = work.path().join("ca.pem");
    write_ca_pem(&srv, &ca);
    let pass = work.path().join("passphrase");
    std::fs::write(&pass, format!("{PASSPHRASE}\n")).expect("passphrase file");
    srv.create_user(UPN, PASSWORD).await;

    let mut devices = Vec::new();
    let serials: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    for n in 0..4 {
        let e = device::enroll(&srv.client(), &DeviceInfo::new(900 + n, UPN, PASSWORD)).await;
        serials
            .lock()
            .unwrap()
            .push((e.device_id.clone(), serial_of(&e.cert_der)));
        devices.push(e);
    }
    let first: Enrolled = device::enroll(&srv.client(), &DeviceInfo::new(899, UPN, PASSWORD)).await;
    serials
        .lock()
        .unwrap()
        .push((first.device_id.clone(), serial_of(&first.cert_der)));

    // The load: sessions, enqueues with ids, enrollments.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sessions = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for e in &devices {
        let mut d = ManagedDevice::new(&srv, e);
        let (stop, sessions) = (stop.clone(), sessions.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                d.session().await;
                sessions.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    {
        let (stop, acked, c) = (stop.clone(), acked.clone(), srv.client());
        let ids: Vec<String> = devices.iter().map(|e| e.device_id.clone()).collect();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let dev = &ids[(n % ids.len() as u64) as usize];
                let cid = format!("bk-{n:06}");
                let (st, body) = c
                    .admin(
                        "POST",
                        &format!("/api/v1/devices/{dev}/commands"),
                        Some(
                            json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": cid}),
                        ),
                        Some(ADMIN_TOKEN),
                    )
                    .await;
                assert_eq!(st, 201, "enqueue: {body}");
                acked.lock().unwrap().push((dev.clone(), cid));
                n += 1;
            }
        }));
    }
    {
        let (stop, serials, c) = (stop.clone(), serials.clone(), srv.client());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // One user per late device (a user may enroll 15 devices).
                let upn = format!("late{n}@example.com");
                let (st, body) = c
                    .admin(
                        "POST",
                        "/api/v1/users",
                        Some(json!({"upn": upn, "password": PASSWORD})),
                        Some(ADMIN_TOKEN),
                    )
                    .await;
                assert_eq!(st, 201, "user: {body}");
                let e = device::enroll(&c, &DeviceInfo::new(950 + n, &upn, PASSWORD)).await;
                serials
                    .lock()
                    .unwrap()
                    .push((e.device_id.clone(), serial_of(&e.cert_der)));
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // What was acknowledged before the backup starts must be in it.
    let cmds_before = acked.lock().unwrap().clone();
    let serials_before = serials.lock().unwrap().clone();
    let archive = work.path().join("winmdm.tar");
    let (ok, out) = winmdm(vec![
        "--server".into(),
        format!("https://localhost:{}", srv.addr.port()),
        "--token".into(),
        ADMIN_TOKEN.into(),
        "--ca-cert".into(),
        ca.display().to_string(),
        "backup".into(),
        "--out".into(),
        archive.display().to_string(),
        "--passphrase-file".into(),
        pass.display().to_string(),
    ])
    .await;
    assert!(ok, "winmdm backup: {out}");
    assert!(
        out.contains("(verified)") && out.contains("sealed"),
        "{out}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let (acked_total, enrolled_total) =
        (acked.lock().unwrap().len(), serials.lock().unwrap().len());
    println!(
        "backup under load: {} commands and {} certificates acknowledged before the backup; {acked_total} and {enrolled_total} by the end; {} sessions",
        cmds_before.len(),
        serials_before.len(),
        sessions.load(Ordering::Relaxed)
    );
    assert!(
        cmds_before.len() >= 10,
        "too little load: {}",
        cmds_before.len()
    );
    assert!(sessions.load(Ordering::Relaxed) >= 4);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "archive mode");
    srv.stop().await;

    // Without the passphrase: refused, and nothing usable is left behind.
    let restored = work.path().join("restored");
    let (ok, out) = winmdm(vec![
        "restore".into(),
        "--from".into(),
        archive.display().to_string(),
        "--data-dir".into(),
        restored.display().to_string(),
    ])
    .await;
    assert!(!ok && out.contains("passphrase"), "{out}");
    assert!(!restored.join("store.redb").exists());
    let (ok, out) = winmdm(vec![
        "restore".into(),
        "--from".into(),
        archive.display().to_string(),
        "--data-dir".into(),
        restored.display().to_string(),
        "--passphrase-file".into(),
        pass.display().to_string(),
    ])
    .await;
    assert!(ok, "winmdm restore: {out}");
    let mode = std::fs::metadata(restored.join("ca/ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "restored CA key mode");

    {
        let store = winmdm::store::redb::RedbStore::open(&restored).expect("restored store");
        for (dev, cid) in &cmds_before {
            assert!(
                store.get_command(dev, cid).expect("read").is_some(),
                "acknowledged command {dev}/{cid} missing from the restored store"
            );
        }
        for (dev, serial) in &serials_before {
            let cert = store.get_cert(serial).expect("read");
            assert_eq!(
                cert.map(|c| c.device_id),
                Some(dev.clone()),
                "issued certificate {serial} missing"
            );
            assert!(
                store.get_device(dev).expect("read").is_some(),
                "device {dev}"
            );
        }
    }

    // The restored directory serves the devices enrolled before: same CA, TLS key, store.
    let srv2 = TestServer::start_in(&restored, |_| {}).await;
    let mut d = ManagedDevice::new(&srv2, &first);
    d.session().await;
    let (st, v) = srv2
        .admin(
            "GET",
            &format!("/api/v1/devices/{}", devices[0].device_id),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = srv2
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/commands", devices[0].device_id),
            Some(json!({"verb": "Get", "target": "./DevDetail/SwV"})),
        )
        .await;
    assert_eq!(st, 201, "new ids after the restore do not collide");
    srv2.stop().await;
}

#[tokio::test]
async fn backup_needs_an_admin_token_and_refuses_a_short_passphrase() {
    let srv = TestServer::start().await;
    let (st, body) = srv
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "viewer", "role": "read-only"})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let viewer = body["token"].as_str().expect("token").to_string();
    let (st, _) = srv
        .client()
        .admin("POST", "/api/v1/backup", Some(json!({})), Some(&viewer))
        .await;
    assert_eq!(st, 403, "a read-only token must not carry the CA key away");
    let (st, _) = srv
        .client()
        .admin("POST", "/api/v1/backup", Some(json!({})), None)
        .await;
    assert_eq!(st, 401);
    let (st, v) = srv
        .admin(
            "POST",
            "/api/v1/backup",
            Some(json!({"passphrase": "short"})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    srv.stop().await;
}
