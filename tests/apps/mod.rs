//! Apps end to end: an MSI built by wixl (protocol-fixtures/apps) is uploaded, assigned to a
//! dynamic group, delivered through the reconciler, downloaded by the fake Windows device from
//! the signed URL (with ranges), installed, reported back with the generic alert, upgraded and
//! uninstalled; failures carry the MSI code and its meaning; download tokens are checked.

pub(crate) mod esp;
mod windows;

use serde_json::{json, Value};

use crate::support::device::{self, DeviceInfo};
use crate::support::mdm_device::{ManagedDevice, Received};
use crate::support::TestServer;
use windows::{Outcome, WindowsApps, HASH_MISMATCH};

pub(crate) const PRODUCT: &str = "{6F7CB29F-1319-4816-B345-0856916EB801}";
pub(crate) const NODE: &str =
    "./Device/Vendor/MSFT/EnterpriseDesktopAppManagement/MSI/%7B6F7CB29F-1319-4816-B345-0856916EB801%7D";

pub(crate) fn fixture(version: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("protocol-fixtures/apps/winmdm-test-{version}.msi"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sha256_hex(b: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

pub(crate) async fn ok(
    srv: &TestServer,
    method: &str,
    path: &str,
    body: Option<Value>,
    want: u16,
) -> Value {
    let (st, v) = srv.admin(method, path, body).await;
    assert_eq!(st, want, "{method} {path}: {v}");
    v
}

/// Creates a group (`POST /api/v1/groups`, expecting 201) and returns its id.
pub(crate) async fn new_group(srv: &TestServer, body: Value) -> String {
    ok(srv, "POST", "/api/v1/groups", Some(body), 201).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends a file to the admin API (`POST /api/v1/apps`, `PUT …/content`).
pub(crate) async fn send(
    srv: &TestServer,
    method: &str,
    path: &str,
    data: Vec<u8>,
) -> (u16, Value) {
    let auth = format!("Bearer {}", crate::support::ADMIN_TOKEN);
    let r = srv
        .client()
        .request(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/octet-stream"),
            ],
            data,
        )
        .await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn enroll(srv: &TestServer, n: u32, upn: &str) -> ManagedDevice {
    let (st, _) = srv
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"upn": upn, "password": "pw-123456"})),
        )
        .await;
    assert!(st == 201 || st == 409);
    let e = device::enroll(&srv.client(), &DeviceInfo::new(n, upn, "pw-123456")).await;
    ManagedDevice::new(srv, &e)
}

async fn state_on(srv: &TestServer, app_id: &str, did: &str) -> Value {
    let v = ok(
        srv,
        "GET",
        &format!("/api/v1/devices/{did}/apps"),
        None,
        200,
    )
    .await;
    let on_device = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["app_id"] == app_id && s["intent"] == "required")
        .cloned()
        .unwrap_or(Value::Null);
    let v = ok(
        srv,
        "GET",
        &format!("/api/v1/apps/{app_id}/devices"),
        None,
        200,
    )
    .await;
    let per_app = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["device_id"] == did && s["intent"] == "required")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(on_device, per_app, "the two views agree");
    on_device
}

/// Runs `winmdm --server … --token … --ca-cert … <args>` in-process: (exit code, output).
async fn cli(srv: &TestServer, args: &[&str]) -> (i32, String) {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(srv.app.ca.cert_der());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let mut all: Vec<String> = vec![
        "winmdm".into(),
        "--server".into(),
        format!("https://localhost:{}", srv.addr.port()),
        "--token".into(),
        crate::support::ADMIN_TOKEN.into(),
        "--ca-cert".into(),
        ca.display().to_string(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let code = winmdm::cli::run(all, &mut out);
        (code, String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .unwrap()
}

fn verbs(r: &[Received]) -> Vec<(String, String)> {
    r.iter()
        .map(|c| (c.verb.clone(), c.target.clone().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn upload_refuses_what_is_not_an_msi_and_reads_the_identity() {
    let srv = TestServer::start_with(|o| o.app_max_mb = Some(1)).await;
    let (st, v) = send(
        &srv,
        "POST",
        "/api/v1/apps",
        b"MZ\x90\x00 not an msi".to_vec(),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not a valid MSI"),
        "{v}"
    );
    let (st, _) = send(&srv, "POST", "/api/v1/apps", vec![0u8; (1 << 20) + 1]).await;
    assert_eq!(st, 413);
    // Nothing of the refused uploads stays in the store.
    let left = srv
        .app
        .store
        .records()
        .scan_records("app_chunk", None, 10)
        .unwrap();
    assert!(left.is_empty(), "{} chunks left", left.len());

    let msi = fixture("1.0.0");
    let (st, v) = send(
        &srv,
        "POST",
        "/api/v1/apps?command_line=%2Fquiet%20REBOOT%3DReallySuppress",
        msi.clone(),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["kind"], "msi");
    assert_eq!(v["name"], "winmdm test app");
    assert_eq!(v["product_code"], PRODUCT);
    assert_eq!(v["product_version"], "1.0.0");
    assert_eq!(v["publisher"], "winmdm tests");
    assert_eq!(v["sha256"], sha256_hex(&msi));
    assert_eq!(v["size"], msi.len());
    assert_eq!(v["command_line"], "/quiet REBOOT=ReallySuppress");
    let id = v["id"].as_str().unwrap();
    let list = ok(&srv, "GET", "/api/v1/apps", None, 200).await;
    assert_eq!(list["apps"][0]["id"], id);
    // An older or unrelated file is no upgrade.
    let (st, v) = send(&srv, "PUT", &format!("/api/v1/apps/{id}/content"), msi).await;
    assert_eq!(st, 409, "{v}");
    // External registration: MSIX by manifest identity (PublisherId computed).
    let v = ok(&srv, "POST", "/api/v1/apps", Some(json!({
        "kind": "msix", "name": "Calculator", "url": "https://cdn.example.com/calc.msix",
        "sha256": "ab".repeat(32), "package_name": "Microsoft.WindowsCalculator",
        "publisher": "CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US"
    })), 201).await;
    assert_eq!(
        v["package_family_name"],
        "Microsoft.WindowsCalculator_8wekyb3d8bbwe"
    );
    let (st, _) = srv.admin("POST", "/api/v1/apps", Some(json!({"name": "x", "url": "http://plain", "sha256": "ab".repeat(32), "product_code": PRODUCT, "product_version": "1.0"}))).await;
    assert_eq!(st, 400);
    ok(&srv, "DELETE", &format!("/api/v1/apps/{id}"), None, 200).await;
    assert!(srv
        .app
        .store
        .records()
        .scan_records("app_chunk", None, 10)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn msi_is_delivered_downloaded_installed_upgraded_and_uninstalled() {
    let srv = TestServer::start().await;
    let dev = enroll(&srv, 1, "ann@example.com").await;
    let did = dev.device_id.clone();
    let mut win = WindowsApps::new(dev, srv.client());
    assert!(win.session().await.is_empty());

    let (st, app) = send(&srv, "POST", "/api/v1/apps", fixture("1.0.0")).await;
    assert_eq!(st, 201, "{app}");
    let app_id = app["id"].as_str().unwrap().to_string();
    let gid = new_group(&srv, json!({"name": "ann's pcs", "query": "device_type == \"windows-pc\" and user == \"ann@example.com\""})).await;
    let v = ok(
        &srv,
        "POST",
        &format!("/api/v1/apps/{app_id}/assignments"),
        Some(json!({"group_id": gid})),
        201,
    )
    .await;
    assert_eq!(v["jobs"][0]["queued"], 4, "{v}");
    assert_eq!(state_on(&srv, &app_id, &did).await["state"], "pending");
    // The managed profile is visible but changes only through the app.
    let pid = format!("app-{app_id}-device-required");
    let p = ok(&srv, "GET", &format!("/api/v1/profiles/{pid}"), None, 200).await;
    assert_eq!(p["app"], app_id.as_str());
    let (st, _) = srv
        .admin("DELETE", &format!("/api/v1/profiles/{pid}"), None)
        .await;
    assert_eq!(st, 409);
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/profiles/{pid}/assignments"),
            Some(json!({"group_id": gid})),
        )
        .await;
    assert_eq!(st, 409);

    // Session 1: Add, Exec DownloadInstall, Get Status, Get LastError, in that order.
    win.initialized(&format!("{NODE}/DownloadInstall"));
    let got = win.session().await;
    assert_eq!(
        verbs(&got),
        vec![
            ("Add".into(), format!("{NODE}/DownloadInstall")),
            ("Exec".into(), format!("{NODE}/DownloadInstall")),
            ("Get".into(), format!("{NODE}/Status")),
            ("Get".into(), format!("{NODE}/LastError")),
        ]
    );
    assert_eq!(got[1].format.as_deref(), Some("xml"));
    let job = win.jobs[0].clone();
    assert_eq!(job.id, PRODUCT);
    assert_eq!(job.version, "1.0.0");
    assert_eq!(job.command_line, "/quiet");
    assert_eq!(job.downloaded, fixture("1.0.0"));
    assert!(
        job.url.starts_with(&format!(
            "{}/apps/{app_id}/content?token=",
            srv.app.cfg.public_url.base
        )),
        "{}",
        job.url
    );
    // Status read back in that session: 10 (initialized) → downloading.
    assert_eq!(state_on(&srv, &app_id, &did).await["state"], "downloading");

    // The download URL: no certificate needed; the token is the authority.
    let http = srv.client();
    let token = job.url.split("token=").nth(1).unwrap().to_string();
    let get = |path: String| {
        let http = http.clone();
        async move { http.request("GET", &path, &[], Vec::new()).await.status }
    };
    assert_eq!(
        get(format!("/apps/{app_id}/content?token={token}")).await,
        200
    );
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        get(format!("/apps/{app_id}/content?token={forged}")).await,
        403
    );
    assert_eq!(get(format!("/apps/{app_id}/content")).await, 403);
    let now = srv.app.clock.now_unix();
    let expired = srv.app.app_urls.sign(&app_id, &did, now - 1);
    assert_eq!(
        get(format!("/apps/{app_id}/content?token={expired}")).await,
        403
    );
    // Another device's token: validly signed, but that device has no install of the app.
    let other = enroll(&srv, 2, "bob@example.com").await;
    let theirs = srv.app.app_urls.sign(&app_id, &other.device_id, now + 3600);
    assert_eq!(
        get(format!("/apps/{app_id}/content?token={theirs}")).await,
        403
    );
    // The device id swapped into ann's token: the signature no longer matches.
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine;
    let swapped = format!(
        "{}.{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other.device_id.as_bytes()),
        parts[1],
        parts[2]
    );
    assert_eq!(
        get(format!("/apps/{app_id}/content?token={swapped}")).await,
        403
    );
    let r = http
        .request(
            "GET",
            &format!("/apps/{app_id}/content?token={token}"),
            &[("range", "bytes=999999-")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.headers["content-range"].to_str().unwrap(),
        format!("bytes */{}", job.downloaded.len())
    );
    let r = http
        .request(
            "GET",
            &format!("/apps/{app_id}/content?token={token}"),
            &[("range", "bytes=-16")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, job.downloaded[job.downloaded.len() - 16..]);

    // Session 2 carries the alert: installed, with the version.
    assert!(win.session().await.is_empty());
    let s = state_on(&srv, &app_id, &did).await;
    assert_eq!(s["state"], "installed", "{s}");
    assert_eq!(s["version"], "1.0.0");
    let (code, text) = cli(&srv, &["apps", "devices", &app_id]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&did) && text.contains("installed") && text.contains("1.0.0"),
        "{text}"
    );

    // Upgrade: a newer ProductVersion of the same product goes to the assigned devices.
    let (st, v) = send(
        &srv,
        "PUT",
        &format!("/api/v1/apps/{app_id}/content"),
        fixture("1.1.0"),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["product_version"], "1.1.0");
    assert_eq!(v["revision"], 2);
    let got = win.session().await;
    assert!(got.iter().any(|c| c.verb == "Exec"), "{got:?}");
    assert!(
        !got.iter().any(|c| c.verb == "Delete"),
        "same ProductCode: no uninstall first"
    );
    assert_eq!(win.jobs[1].version, "1.1.0");
    assert_eq!(win.jobs[1].downloaded, fixture("1.1.0"));
    win.session().await;
    let s = state_on(&srv, &app_id, &did).await;
    assert_eq!(
        (s["state"].as_str(), s["version"].as_str()),
        (Some("installed"), Some("1.1.0")),
        "{s}"
    );

    // Unassignment uninstalls: Delete of the product node, as the CSP page shows.
    ok(
        &srv,
        "DELETE",
        &format!("/api/v1/apps/{app_id}/assignments/{gid}"),
        None,
        200,
    )
    .await;
    let got = win.session().await;
    assert_eq!(verbs(&got), vec![("Delete".into(), NODE.to_string())]);
    let v = ok(
        &srv,
        "GET",
        &format!("/api/v1/devices/{did}/apps"),
        None,
        200,
    )
    .await;
    assert_eq!(v["apps"][0]["state"], "uninstalled", "{v}");
    // And the URL stops working for it.
    assert_eq!(
        get(format!("/apps/{app_id}/content?token={token}")).await,
        403
    );
}

#[tokio::test]
async fn failed_installs_carry_the_code_and_its_meaning() {
    let srv = TestServer::start().await;
    let dev = enroll(&srv, 3, "cid@example.com").await;
    let did = dev.device_id.clone();
    let mut win = WindowsApps::new(dev, srv.client());
    let (_, app) = send(&srv, "POST", "/api/v1/apps", fixture("1.0.0")).await;
    let app_id = app["id"].as_str().unwrap().to_string();
    let gid = new_group(&srv, json!({"name": "static"})).await;
    ok(
        &srv,
        "POST",
        &format!("/api/v1/groups/{gid}/members"),
        Some(json!({"device_ids": [did]})),
        200,
    )
    .await;
    win.outcome.insert(PRODUCT.into(), Outcome::Fails1603);
    ok(
        &srv,
        "POST",
        &format!("/api/v1/apps/{app_id}/assignments"),
        Some(json!({"group_id": gid})),
        201,
    )
    .await;
    win.session().await;
    assert_eq!(win.jobs[0].code, 1603);
    win.session().await;
    let s = state_on(&srv, &app_id, &did).await;
    assert_eq!(s["state"], "failed", "{s}");
    assert_eq!(s["error_code"], "1603");
    assert_eq!(s["error"], "fatal error during installation");

    // A tampered download: the device's hash check fails (CRYPT_E_HASH_VALUE); a re-upload
    // (upgrade) re-delivers.
    win.outcome.insert(PRODUCT.into(), Outcome::CorruptDownload);
    let (st, _) = send(
        &srv,
        "PUT",
        &format!("/api/v1/apps/{app_id}/content"),
        fixture("1.1.0"),
    )
    .await;
    assert_eq!(st, 200);
    win.session().await;
    assert_eq!(win.jobs[1].code, HASH_MISMATCH);
    win.session().await;
    let s = state_on(&srv, &app_id, &did).await;
    assert_eq!(s["state"], "failed", "{s}");
    assert_eq!(s["error_code"], "0x80091007");
    assert!(s["error"].as_str().unwrap().contains("hash"), "{s}");
}

const MS_PUBLISHER: &str =
    "CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US";
/// Windows' family name for `Contoso.Notes` by that publisher (PublisherId 8wekyb3d8bbwe).
pub(crate) const NOTES_PFN: &str = "Contoso.Notes_8wekyb3d8bbwe";

/// A ZIP of `files`, deflated, the way MakeAppx stores package files.
fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn appx_manifest(root: &str, version: &str, padding: usize) -> Vec<u8> {
    let ns = if root == "Bundle" {
        "http://schemas.microsoft.com/appx/2013/bundle"
    } else {
        "http://schemas.microsoft.com/appx/manifest/foundation/windows10"
    };
    let mut m = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><{root} xmlns="{ns}"><Identity Name="Contoso.Notes" Publisher="{MS_PUBLISHER}" Version="{version}" ProcessorArchitecture="x64"/><Properties><DisplayName>Contoso Notes</DisplayName><PublisherDisplayName>Contoso</PublisherDisplayName></Properties></{root}>"#
    )
    .into_bytes();
    m.extend(std::iter::repeat_n(b'\n', padding));
    m
}

/// An .msix: the manifest, a block map and a "binary" large enough for ranged downloads.
pub(crate) fn msix_package(version: &str) -> Vec<u8> {
    let exe: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    zip_of(&[
        ("AppxManifest.xml", &appx_manifest("Package", version, 0)),
        ("AppxBlockMap.xml", b"<BlockMap/>"),
        ("Notes.exe", &exe),
    ])
}

#[tokio::test]
async fn msix_upload_reads_the_manifest_and_is_delivered_by_hosted_install() {
    let srv = TestServer::start().await;
    // Refused: a ZIP without a manifest, a manifest that decompresses past 1 MiB (a small
    // upload), neither ZIP nor compound file.
    let (st, v) = send(&srv, "POST", "/api/v1/apps", zip_of(&[("a.txt", b"hi")])).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not a valid MSIX/APPX package")
            && v["error"].as_str().unwrap().contains("AppxManifest.xml"),
        "{v}"
    );
    let bomb = zip_of(&[(
        "AppxManifest.xml",
        &appx_manifest("Package", "1.0.0.0", 8 << 20),
    )]);
    assert!(bomb.len() < 100_000);
    let (st, v) = send(&srv, "POST", "/api/v1/apps", bomb).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("manifest"), "{v}");
    let (st, v) = send(
        &srv,
        "POST",
        "/api/v1/apps",
        b"PK\x03\x04 cut short".to_vec(),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(srv
        .app
        .store
        .records()
        .scan_records("app_chunk", None, 10)
        .unwrap()
        .is_empty());

    // A bundle: the identity comes from AppxMetadata/AppxBundleManifest.xml.
    let bundle = zip_of(&[
        ("Contoso.Notes_1.2.3.0_x64.msix", &msix_package("1.2.3.0")),
        (
            "AppxMetadata/AppxBundleManifest.xml",
            &appx_manifest("Bundle", "1.2.3.0", 0),
        ),
    ]);
    let (st, v) = send(&srv, "POST", "/api/v1/apps?name=Notes%20bundle", bundle).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (
            v["kind"].as_str(),
            v["package_family_name"].as_str(),
            v["name"].as_str()
        ),
        (Some("msix"), Some(NOTES_PFN), Some("Notes bundle"))
    );

    // The package: identity from AppxManifest.xml, name from its DisplayName.
    let pkg = msix_package("1.2.3.0");
    let (st, app) = send(&srv, "POST", "/api/v1/apps", pkg.clone()).await;
    assert_eq!(st, 201, "{app}");
    assert_eq!(app["kind"], "msix");
    assert_eq!(app["name"], "Contoso Notes");
    assert_eq!(app["package_family_name"], NOTES_PFN);
    assert_eq!(app["publisher"], MS_PUBLISHER);
    assert_eq!(app["product_version"], "1.2.3.0");
    assert_eq!(app["product_code"], Value::Null);
    assert_eq!(app["sha256"], sha256_hex(&pkg));
    assert_eq!(app["size"], pkg.len());
    let app_id = app["id"].as_str().unwrap().to_string();

    // Assigned to a group: Add AppInstallation/{PFN}, Exec HostedInstall with our signed URL,
    // Gets of Status and LastError; the URL serves the uploaded bytes.
    let dev = enroll(&srv, 4, "dan@example.com").await;
    let did = dev.device_id.clone();
    let mut win = WindowsApps::new(dev, srv.client());
    let gid = new_group(&srv, json!({"name": "notes"})).await;
    ok(
        &srv,
        "POST",
        &format!("/api/v1/groups/{gid}/members"),
        Some(json!({"device_ids": [did]})),
        200,
    )
    .await;
    ok(
        &srv,
        "POST",
        &format!("/api/v1/apps/{app_id}/assignments"),
        Some(json!({"group_id": gid})),
        201,
    )
    .await;
    let a =
        format!("./Device/Vendor/MSFT/EnterpriseModernAppManagement/AppInstallation/{NOTES_PFN}");
    let got = win.session().await;
    assert_eq!(
        verbs(&got),
        vec![
            ("Add".into(), a.clone()),
            ("Exec".into(), format!("{a}/HostedInstall")),
            ("Get".into(), format!("{a}/Status")),
            ("Get".into(), format!("{a}/LastError")),
        ]
    );
    assert_eq!(win.hosted.len(), 1);
    let job = win.hosted[0].clone();
    assert_eq!(job.pfn, NOTES_PFN);
    assert!(
        job.url.starts_with(&format!(
            "{}/apps/{app_id}/content?token=",
            srv.app.cfg.public_url.base
        )),
        "{}",
        job.url
    );
    assert_eq!(job.downloaded, pkg, "the URL serves the uploaded package");

    // A newer Version of the same family is an upgrade, delivered again; an equal one is not.
    let (st, v) = send(
        &srv,
        "PUT",
        &format!("/api/v1/apps/{app_id}/content"),
        msix_package("1.2.3.0"),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    let newer = msix_package("1.3.0.0");
    let (st, v) = send(
        &srv,
        "PUT",
        &format!("/api/v1/apps/{app_id}/content"),
        newer.clone(),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["revision"].as_u64(), v["product_version"].as_str()),
        (Some(2), Some("1.3.0.0"))
    );
    let got = win.session().await;
    assert!(
        got.iter()
            .any(|c| c.verb == "Exec" && c.target.as_deref() == Some(&format!("{a}/HostedInstall"))),
        "{got:?}"
    );
    assert_eq!(win.hosted[1].downloaded, newer);
    // An MSI is no new content for an MSIX app.
    let (st, v) = send(
        &srv,
        "PUT",
        &format!("/api/v1/apps/{app_id}/content"),
        fixture("1.1.0"),
    )
    .await;
    assert_eq!(st, 400, "{v}");
}
