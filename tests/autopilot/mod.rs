//! Windows Autopilot: profile rules (one test per rule), the AutopilotConfigurationFile.json
//! export (goldens in protocol-fixtures/autopilot/), the hardware-hash CSV import (encodings,
//! bad rows, a 10,000-row file), device edits, and the end-to-end link of an enrolled device
//! through its SMBIOS serial number with TenantLockdown.
//!
//! `WINMDM_BLESS=1 cargo test --test main autopilot` rewrites the export goldens.

mod cli;
mod groups;
mod link;

use std::path::PathBuf;

use base64::Engine;
use serde_json::{json, Value};
use winmdm::autopilot::export::{self, Tenant};
use winmdm::autopilot::link::SERIAL_URI;
use winmdm::autopilot::profile::{AccountType, DeploymentMode, DeviceType, Profile, Visibility};
use winmdm::autopilot::{check_assignment, AssignmentError, GroupKind};

use crate::support::device::{self, DeviceInfo};
use crate::support::mdm_device::ManagedDevice;
use crate::support::{TestServer, ADMIN_TOKEN};

const TENANT_ID: &str = "8d3a1b2c-0f4e-4a6b-9c7d-112233445566";
const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";

fn user_driven() -> Value {
    json!({"name": "Sales laptops", "device_type": "windows-pc", "deployment_mode": "user-driven"})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

async fn create(srv: &TestServer, body: Value) -> (u16, Value) {
    srv.admin("POST", "/api/v1/autopilot/profiles", Some(body))
        .await
}

/// The profile is refused with 400, the JSON names `field`, and the message says `words`.
async fn refused(srv: &TestServer, body: Value, field: &str, words: &str) {
    let (st, v) = create(srv, body.clone()).await;
    assert_eq!(st, 400, "{body} → {v}");
    assert_eq!(v["field"], field, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains(words), "{msg:?} should say {words:?}");
}

#[tokio::test]
async fn rule_hololens_requires_self_deploying() {
    let srv = TestServer::start().await;
    let hl = json!({"name": "HL", "device_type": "hololens", "deployment_mode": "user-driven"});
    refused(
        &srv,
        hl.clone(),
        "deployment_mode",
        "HoloLens profiles must use the self-deploying",
    )
    .await;
    let (st, v) = create(&srv, with(hl, json!({"deployment_mode": "self-deploying"}))).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["device_type"], "hololens");
}

#[tokio::test]
async fn rule_device_type_and_mode_are_required_and_closed() {
    let srv = TestServer::start().await;
    refused(
        &srv,
        json!({"name": "x", "deployment_mode": "user-driven"}),
        "device_type",
        "windows-pc or hololens",
    )
    .await;
    refused(
        &srv,
        json!({"name": "x", "device_type": "windows-pc"}),
        "deployment_mode",
        "self-deploying or user-driven",
    )
    .await;
    refused(
        &srv,
        json!({"device_type": "windows-pc", "deployment_mode": "user-driven"}),
        "name",
        "needs a name",
    )
    .await;
    let (st, v) = create(&srv, with(user_driven(), json!({"device_type": "mac"}))).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["field"], "device_type", "{v}");
    assert!(v["error"].as_str().unwrap().contains("windows-pc"), "{v}");
}

#[tokio::test]
async fn rule_no_pre_provisioning_with_self_deploying() {
    let srv = TestServer::start().await;
    let body = with(
        user_driven(),
        json!({"deployment_mode": "self-deploying", "allow_pre_provisioning": true}),
    );
    refused(
        &srv,
        body,
        "allow_pre_provisioning",
        "not available with the self-deploying",
    )
    .await;
    let (st, v) = create(
        &srv,
        with(user_driven(), json!({"allow_pre_provisioning": true})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["allow_pre_provisioning"], true);
}

#[tokio::test]
async fn rule_language_is_os_default_or_a_locale() {
    let srv = TestServer::start().await;
    refused(
        &srv,
        with(user_driven(), json!({"language": "French"})),
        "language",
        "not a locale tag",
    )
    .await;
    let (st, v) = create(&srv, with(user_driven(), json!({"language": "os-default"}))).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["language"], Value::Null);
}

#[tokio::test]
async fn rule_keyboard_needs_a_language() {
    let srv = TestServer::start().await;
    refused(
        &srv,
        with(user_driven(), json!({"auto_configure_keyboard": true})),
        "auto_configure_keyboard",
        "language other than",
    )
    .await;
    let body = with(
        user_driven(),
        json!({"auto_configure_keyboard": true, "language": "fr-FR"}),
    );
    let (st, v) = create(&srv, body).await;
    assert_eq!(st, 201, "{v}");
}

#[tokio::test]
async fn rule_device_name_template() {
    let srv = TestServer::start().await;
    let t = |t: &str| with(user_driven(), json!({ "device_name_template": t }));
    refused(
        &srv,
        t("CONTOSO-DESK-%RAND:4%"),
        "device_name_template",
        "at most 15",
    )
    .await;
    refused(
        &srv,
        t("PC_%SERIAL%"),
        "device_name_template",
        "letters, digits and hyphens",
    )
    .await;
    refused(&srv, t("%RAND:8%"), "device_name_template", "digits only").await;
    refused(
        &srv,
        t("PC-%USER%"),
        "device_name_template",
        "%SERIAL% or %RAND:n%",
    )
    .await;
    let (st, v) = create(&srv, t("CONTOSO-%SERIAL%")).await;
    assert_eq!(st, 201, "{v}");
}

#[tokio::test]
async fn rule_license_terms_only_user_driven() {
    let srv = TestServer::start().await;
    let body = with(
        user_driven(),
        json!({"deployment_mode": "self-deploying", "license_terms": "show"}),
    );
    refused(
        &srv,
        body,
        "license_terms",
        "only possible in user-driven mode",
    )
    .await;
    let (st, v) = create(&srv, with(user_driven(), json!({"license_terms": "show"}))).await;
    assert_eq!(st, 201, "{v}");
}

#[tokio::test]
async fn rule_privacy_settings_only_user_driven() {
    let srv = TestServer::start().await;
    let body = with(
        user_driven(),
        json!({"deployment_mode": "self-deploying", "privacy_settings": "hide"}),
    );
    refused(
        &srv,
        body,
        "privacy_settings",
        "only possible in user-driven mode",
    )
    .await;
    let (st, v) = create(
        &srv,
        with(user_driven(), json!({"privacy_settings": "show"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
}

#[tokio::test]
async fn rule_change_account_options_only_user_driven_standard() {
    let srv = TestServer::start().await;
    let admin = with(
        user_driven(),
        json!({"user_account_type": "administrator", "change_account_options": "hide"}),
    );
    refused(
        &srv,
        admin,
        "change_account_options",
        "standard user account",
    )
    .await;
    let sd = with(
        user_driven(),
        json!({"deployment_mode": "self-deploying", "change_account_options": "hide"}),
    );
    refused(&srv, sd, "change_account_options", "user-driven").await;
    let ok = with(
        user_driven(),
        json!({"user_account_type": "standard", "change_account_options": "show"}),
    );
    let (st, v) = create(&srv, ok).await;
    assert_eq!(st, 201, "{v}");
}

#[tokio::test]
async fn rule_names_are_unique() {
    let srv = TestServer::start().await;
    let (st, first) = create(&srv, user_driven()).await;
    assert_eq!(st, 201);
    let (st, v) = create(&srv, with(user_driven(), json!({"name": "SALES LAPTOPS"}))).await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("already exists"),
        "{v}"
    );
    // Renaming another profile onto the name is refused too; renaming the profile itself works.
    let (_, other) = create(&srv, with(user_driven(), json!({"name": "Other"}))).await;
    let path = format!(
        "/api/v1/autopilot/profiles/{}",
        other["id"].as_str().unwrap()
    );
    let (st, _) = srv.admin("PUT", &path, Some(user_driven())).await;
    assert_eq!(st, 409);
    let path = format!(
        "/api/v1/autopilot/profiles/{}",
        first["id"].as_str().unwrap()
    );
    let (st, v) = srv
        .admin(
            "PUT",
            &path,
            Some(with(user_driven(), json!({"name": "Sales PCs"}))),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // The old name is free again, and the profile is found by its new name.
    assert_eq!(create(&srv, user_driven()).await.0, 201);
    let (st, v) = srv
        .admin("GET", "/api/v1/autopilot/profiles/sales%20pcs", None)
        .await;
    assert_eq!((st, v["id"].clone()), (200, first["id"].clone()));
}

#[tokio::test]
async fn rule_one_profile_for_all_groups_even_concurrently() {
    let srv = TestServer::start().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = srv.client();
        let body = with(
            user_driven(),
            json!({"name": format!("All {i}"), "all_groups": true}),
        );
        tasks.push(tokio::spawn(async move {
            c.admin(
                "POST",
                "/api/v1/autopilot/profiles",
                Some(body),
                Some(ADMIN_TOKEN),
            )
            .await
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        let (st, v) = t.await.unwrap();
        match st {
            201 => created.push(v),
            409 => assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .contains("already assigned to all groups"),
                "{v}"
            ),
            other => panic!("{other}: {v}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one all-groups profile");
    // Moving the assignment: unassign, then another profile may take it.
    let id = created[0]["id"].as_str().unwrap().to_string();
    let name = created[0]["name"].as_str().unwrap().to_string();
    let (st, v) = create(
        &srv,
        with(user_driven(), json!({"name": "Late", "all_groups": true})),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    let path = format!("/api/v1/autopilot/profiles/{id}");
    let (st, _) = srv
        .admin(
            "PUT",
            &path,
            Some(with(user_driven(), json!({"name": name}))),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        create(
            &srv,
            with(user_driven(), json!({"name": "Late", "all_groups": true}))
        )
        .await
        .0,
        201
    );
    // Deleting the holder frees the slot.
    let (_, late) = srv
        .admin("GET", "/api/v1/autopilot/profiles/Late", None)
        .await;
    let path = format!(
        "/api/v1/autopilot/profiles/{}",
        late["id"].as_str().unwrap()
    );
    assert_eq!(srv.admin("DELETE", &path, None).await.0, 204);
    assert_eq!(srv.admin("GET", &path, None).await.0, 404);
    assert_eq!(
        create(
            &srv,
            with(user_driven(), json!({"name": "Later", "all_groups": true}))
        )
        .await
        .0,
        201
    );
}

fn fixed_profile(mode: DeploymentMode) -> Profile {
    let base = Profile {
        id: "3f2504e0-4f89-41d3-9a0c-0305e82c3301".into(),
        name: "Sales laptops".into(),
        description: None,
        device_type: DeviceType::WindowsPc,
        deployment_mode: mode,
        allow_pre_provisioning: false,
        user_account_type: AccountType::Standard,
        language: Some("fr-FR".into()),
        auto_configure_keyboard: true,
        device_name_template: Some("CONTOSO-%SERIAL%".into()),
        convert_all_targeted: true,
        license_terms: None,
        privacy_settings: Some(Visibility::Show),
        change_account_options: Some(Visibility::Hide),
        tenant_lockdown: None,
        groups: vec!["g-sales".into()],
        all_groups: false,
        created_at: 0,
        updated_at: 0,
    };
    match mode {
        DeploymentMode::UserDriven => base,
        DeploymentMode::SelfDeploying => Profile {
            id: "6ba7b810-9dad-41d1-80b4-00c04fd430c8".into(),
            name: "Kiosks".into(),
            language: None,
            auto_configure_keyboard: false,
            device_name_template: Some("KIOSK-%RAND:5%".into()),
            privacy_settings: None,
            change_account_options: None,
            ..base
        },
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("protocol-fixtures/autopilot")
}

fn golden(name: &str, actual: &str) {
    let p = fixtures().join(name);
    if std::env::var("WINMDM_BLESS").as_deref() == Ok("1") {
        std::fs::write(&p, actual).unwrap();
        println!("blessed {}", p.display());
        return;
    }
    let expected = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "golden {} missing ({e}); run with WINMDM_BLESS=1",
            p.display()
        )
    });
    assert_eq!(
        expected,
        actual,
        "golden mismatch for {} (WINMDM_BLESS=1 if intended)",
        p.display()
    );
}

fn tenant() -> Tenant {
    Tenant {
        id: TENANT_ID.into(),
        domain: TENANT_DOMAIN.into(),
    }
}

#[test]
fn export_golden_user_driven() {
    let p = fixed_profile(DeploymentMode::UserDriven);
    let text = export::write(&p, &tenant());
    golden("user-driven.AutopilotConfigurationFile.json", &text);
    let v: Value = serde_json::from_str(&text).unwrap();
    // Standard user (2) + privacy shown (no 4) + EULA hidden (16) + keyboard (1024) + 8 + 256.
    assert_eq!(v["CloudAssignedOobeConfig"], 2 + 16 + 1024 + 8 + 256);
    assert_eq!(v["CloudAssignedForcedEnrollment"], 1);
    assert_eq!(v["ZtdCorrelationId"], p.id);
    assert_eq!(v["CloudAssignedLanguage"], "fr-FR");
    let inner: Value =
        serde_json::from_str(v["CloudAssignedAadServerData"].as_str().unwrap()).unwrap();
    assert_eq!(
        inner["ZeroTouchConfig"]["CloudAssignedTenantDomain"],
        TENANT_DOMAIN
    );
    assert_eq!(inner["ZeroTouchConfig"]["ForcedEnrollment"], 1);
}

#[test]
fn export_golden_self_deploying() {
    let p = fixed_profile(DeploymentMode::SelfDeploying);
    let text = export::write(&p, &tenant());
    golden("self-deploying.AutopilotConfigurationFile.json", &text);
    let v: Value = serde_json::from_str(&text).unwrap();
    // Self-deploying: EULA and privacy never shown, TPM bits, no language.
    assert_eq!(v["CloudAssignedOobeConfig"], 2 + 4 + 8 + 16 + 32 + 64 + 256);
    assert!(v.get("CloudAssignedLanguage").is_none());
    assert_eq!(v["CloudAssignedDeviceName"], "KIOSK-%RAND:5%");
}

#[tokio::test]
async fn export_over_the_api_needs_the_tenant() {
    let srv = TestServer::start().await;
    let (_, p) = create(&srv, user_driven()).await;
    let path = format!(
        "/api/v1/autopilot/profiles/{}/export",
        p["id"].as_str().unwrap()
    );
    let (st, v) = srv.admin("GET", &path, None).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--tenant-id"), "{v}");

    let srv = TestServer::start_with(|o| {
        o.tenant_id = Some(TENANT_ID.into());
        o.tenant_domain = Some(TENANT_DOMAIN.into());
    })
    .await;
    let body = with(
        user_driven(),
        json!({"device_name_template": "SALES-%SERIAL%"}),
    );
    let (_, p) = create(&srv, body).await;
    let id = p["id"].as_str().unwrap();
    let r = srv
        .client()
        .request(
            "GET",
            &format!("/api/v1/autopilot/profiles/{id}/export"),
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("AutopilotConfigurationFile.json"));
    let profile: Profile = serde_json::from_value(p.clone()).unwrap();
    assert_eq!(r.text(), export::write(&profile, &tenant()));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["ZtdCorrelationId"], id);
    assert_eq!(v["CloudAssignedTenantId"], TENANT_ID);
    assert_eq!(v["CloudAssignedDeviceName"], "SALES-%SERIAL%");
    // Unknown profile.
    let (st, _) = srv
        .admin("GET", "/api/v1/autopilot/profiles/nope/export", None)
        .await;
    assert_eq!(st, 404);
}

#[test]
fn windows_pc_profile_cannot_go_to_a_hololens_group() {
    let pc = fixed_profile(DeploymentMode::UserDriven);
    let e = check_assignment(&pc, GroupKind::HoloLens).unwrap_err();
    assert!(matches!(
        e,
        AssignmentError::WindowsPcProfileOnHoloLensGroup { .. }
    ));
    assert!(e.to_string().contains("HoloLens group"));
    assert!(check_assignment(&pc, GroupKind::Standard).is_ok());
    let hl = Profile {
        device_type: DeviceType::Hololens,
        ..fixed_profile(DeploymentMode::SelfDeploying)
    };
    assert!(check_assignment(&hl, GroupKind::HoloLens).is_ok());
}

// ---- devices ----

pub(crate) const HEADER: &str =
    "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag,Assigned User";

/// A base64 hash of `n` raw bytes, different per seed (real ones are ~3,000 bytes, ~4,000
/// base64 characters).
pub(crate) fn hash(seed: u32, n: usize) -> String {
    let raw: Vec<u8> = (0..n).map(|i| (i as u32 * 31 + seed * 7) as u8).collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

pub(crate) async fn import(srv: &TestServer, body: Vec<u8>) -> (u16, Value) {
    let r = srv
        .client()
        .request(
            "POST",
            "/api/v1/autopilot/devices",
            &[
                ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
                ("content-type", "text/csv"),
            ],
            body,
        )
        .await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn utf16le_bom(text: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xFE];
    b.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    b
}

#[tokio::test]
async fn import_good_and_bad_rows_in_powershell_utf16() {
    let srv = TestServer::start().await;
    let h = hash(1, 64);
    let text = format!(
        "{HEADER}\r\n\
         PF1A2B3C,00330-80000-00000-AA123,{h},Sales,ann@contoso.com\r\n\
         PF9Z8Y7X,,,Sales,\r\n\
         \"PF-QUOTED\",,\"{h}\",\"Sales, Paris\",\r\n\
         pf1a2b3c,,{h},,\r\n\
         PFBAD,,@@@,,\r\n"
    );
    let (st, v) = import(&srv, utf16le_bom(&text)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["imported"], 2, "{v}");
    assert_eq!(
        v["errors"],
        json!([
            {"row": 3, "error": "missing hardware hash"},
            {"row": 5, "error": "duplicate device serial number \"pf1a2b3c\" (also on row 2)"},
            {"row": 6, "error": "hardware hash is not base64"}
        ])
    );
    // A second file with a registered serial: row error, the rest imported (UTF-8 with BOM, LF).
    let mut again = vec![0xEF, 0xBB, 0xBF];
    again.extend(format!("{HEADER}\nPF1A2B3C,,{h},,\nPFNEW,,{h},,\n").as_bytes());
    let (st, v) = import(&srv, again).await;
    assert_eq!(st, 200);
    assert_eq!(v["imported"], 1);
    assert_eq!(
        v["errors"],
        json!([{"row": 2, "error": "device serial number \"PF1A2B3C\" is already registered"}])
    );
    // The quoted group tag kept its comma; the hash is only in the single-device view.
    let (st, v) = srv
        .admin("GET", "/api/v1/autopilot/devices/pf-quoted", None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["group_tag"], "Sales, Paris");
    assert_eq!(v["hardware_hash"], h);
    let (_, list) = srv.admin("GET", "/api/v1/autopilot/devices", None).await;
    assert_eq!(list["devices"].as_array().unwrap().len(), 3);
    assert!(list["devices"][0].get("hardware_hash").is_none());
    // Whole-file problems are 400s.
    let (st, v) = import(&srv, b"Serial,Hash\nA,B\n".to_vec()).await;
    assert_eq!(st, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Device Serial Number"),
        "{v}"
    );
    let (st, _) = import(&srv, vec![0xFF, 0xFE, 0x41]).await;
    assert_eq!(st, 400);
    let (st, v) = srv
        .admin(
            "POST",
            "/api/v1/autopilot/devices",
            Some(json!({"csv": "x"})),
        )
        .await;
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().contains("text/csv"));
}

#[tokio::test]
async fn import_ten_thousand_devices_with_real_sized_hashes() {
    let srv = TestServer::start().await;
    let mut text = String::from(HEADER);
    text.push_str("\r\n");
    for i in 0..10_000u32 {
        let tag = if i % 2 == 0 { "Even" } else { "Odd" };
        text.push_str(&format!("SN{i:08},,{},{tag},\r\n", hash(i, 3000)));
    }
    let bytes = text.into_bytes();
    let mb = bytes.len() as f64 / 1e6;
    let t = std::time::Instant::now();
    let (st, v) = import(&srv, bytes).await;
    let took = t.elapsed();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["imported"], 10_000, "{}", v["errors"]);
    println!("imported 10,000 Autopilot devices ({mb:.1} MB of CSV, 4,000-character hashes) in {took:.2?}");
    // Filtered, paginated listing: 5,000 "Odd" devices in pages of 1,000.
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/autopilot/devices?group_tag=odd&limit=1000".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, page) = srv.admin("GET", &path, None).await;
        assert_eq!(st, 200, "{page}");
        for d in page["devices"].as_array().unwrap() {
            assert_eq!(d["group_tag"], "Odd");
        }
        seen += page["devices"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, 5_000);
    let (_, page) = srv
        .admin("GET", "/api/v1/autopilot/devices?serial=sn0000012", None)
        .await;
    let serials: Vec<&str> = page["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap())
        .collect();
    assert_eq!(
        serials,
        (120..130)
            .map(|i| format!("SN{i:08}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn edit_rules_and_delete() {
    let srv = TestServer::start().await;
    let (st, _) = import(
        &srv,
        format!("{HEADER}\nS-EDIT,,{},,\n", hash(3, 32)).into_bytes(),
    )
    .await;
    assert_eq!(st, 200);
    let path = "/api/v1/autopilot/devices/s-edit";
    let patch = |v: Value| srv.admin("PATCH", path, Some(v));
    let (st, v) = patch(json!({"user_friendly_name": "Ann"})).await;
    assert_eq!(
        (st, v["field"].as_str()),
        (400, Some("user_friendly_name")),
        "{v}"
    );
    let (st, v) = patch(json!({"user": "Ann@Contoso.com", "user_friendly_name": "Ann D."})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            v["assigned_user"].as_str(),
            v["user_friendly_name"].as_str()
        ),
        (Some("ann@contoso.com"), Some("Ann D."))
    );
    let (st, v) = patch(json!({"device_name": "BAD NAME"})).await;
    assert_eq!((st, v["field"].as_str()), (400, Some("device_name")), "{v}");
    let (st, v) = patch(json!({"device_name": "1234"})).await;
    assert_eq!((st, v["field"].as_str()), (400, Some("device_name")), "{v}");
    let (st, v) = patch(json!({"device_name": "SALES-PC-01"})).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = patch(json!({"device_name": null})).await;
    assert_eq!((st, v["field"].as_str()), (400, Some("device_name")), "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("cannot be unset once set"));
    let (st, v) = patch(json!({"group_tag": "Finance", "user": null})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["user_friendly_name"],
        Value::Null,
        "the greeting goes with the user"
    );
    assert_eq!(v["device_name"], "SALES-PC-01");
    let (st, _) = patch(json!({"nonsense": 1})).await;
    assert_eq!(st, 400);
    let (st, _) = srv
        .admin(
            "PATCH",
            "/api/v1/autopilot/devices/none",
            Some(json!({"group_tag": "x"})),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(srv.admin("DELETE", path, None).await.0, 204);
    assert_eq!(srv.admin("DELETE", path, None).await.0, 404);
    assert_eq!(srv.admin("GET", path, None).await.0, 404);
}

pub(crate) async fn enrolled_device(srv: &TestServer, n: u32) -> ManagedDevice {
    let upn = format!("ap{n}@contoso.com");
    srv.create_user(&upn, "pw-123456").await;
    let e = device::enroll(&srv.client(), &DeviceInfo::new(n, &upn, "pw-123456")).await;
    ManagedDevice::new(srv, &e)
}

#[tokio::test]
async fn enrolled_device_is_linked_by_serial_and_gets_tenant_lockdown_in_its_first_session() {
    let srv = TestServer::start().await;
    let (st, _) = import(
        &srv,
        format!("{HEADER}\r\n5CG0001XYZ,,{},Kiosk-Paris,\r\n", hash(9, 64)).into_bytes(),
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = srv
        .admin(
            "PUT",
            "/api/v1/autopilot/settings",
            Some(json!({"tenant_lockdown": true})),
        )
        .await;
    assert_eq!(
        (st, v["tenant_lockdown"].as_bool()),
        (200, Some(true)),
        "{v}"
    );

    let mut d = enrolled_device(&srv, 61).await;
    d.nodes.insert(SERIAL_URI.into(), "5cg0001xyz".into());
    let got = d.session().await;
    let verbs: Vec<(&str, Option<&str>)> = got
        .iter()
        .map(|c| (c.verb.as_str(), c.target.as_deref()))
        .collect();
    assert_eq!(verbs[0], ("Get", Some(SERIAL_URI)), "{verbs:?}");
    let tl = got
        .iter()
        .find(|c| c.target.as_deref() == Some("./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE"))
        .unwrap_or_else(|| panic!("TenantLockdown in the first session: {verbs:?}"));
    assert_eq!(
        (tl.verb.as_str(), tl.data.as_deref(), tl.format.as_deref()),
        ("Replace", Some("true"), Some("bool"))
    );

    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    assert_eq!(
        dev["autopilot_serial"], "5CG0001XYZ",
        "marked as enrolled through Autopilot"
    );
    assert_eq!(dev["group_tag"], "Kiosk-Paris");
    assert_eq!(dev["tenant_lockdown"], true);
    let (_, ap) = srv
        .admin("GET", "/api/v1/autopilot/devices/5CG0001XYZ", None)
        .await;
    assert_eq!(ap["linked_device_id"], d.device_id.as_str());
    let (_, linked) = srv
        .admin("GET", "/api/v1/autopilot/devices?linked=true", None)
        .await;
    assert_eq!(linked["devices"].as_array().unwrap().len(), 1);
    // Answered once, never sent again.
    assert!(d.session().await.is_empty());

    // The admin's group tag edit reaches the linked device.
    let (st, _) = srv
        .admin(
            "PATCH",
            "/api/v1/autopilot/devices/5CG0001XYZ",
            Some(json!({"group_tag": "Kiosk-Lyon"})),
        )
        .await;
    assert_eq!(st, 200);
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    assert_eq!(dev["group_tag"], "Kiosk-Lyon");
    let (_, audit) = srv.admin("GET", "/api/v1/audit?limit=1000", None).await;
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "autopilot.link"));
}

#[tokio::test]
async fn unregistered_serials_are_not_linked_and_profiles_override_the_global_setting() {
    let srv = TestServer::start().await;
    let (st, _) = import(
        &srv,
        format!(
            "{HEADER}\r\nREG-1,,{},,\r\nREG-2,,{},,\r\n",
            hash(1, 64),
            hash(2, 64)
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(st, 200);
    // Global on, but the all-groups Windows PC profile turns it off.
    srv.admin(
        "PUT",
        "/api/v1/autopilot/settings",
        Some(json!({"tenant_lockdown": true})),
    )
    .await;
    let (st, _) = create(
        &srv,
        with(
            user_driven(),
            json!({"all_groups": true, "tenant_lockdown": false}),
        ),
    )
    .await;
    assert_eq!(st, 201);

    // A device whose serial is not registered: asked, not linked, no lockdown.
    let mut stranger = enrolled_device(&srv, 62).await;
    stranger
        .nodes
        .insert(SERIAL_URI.into(), "NOT-REGISTERED".into());
    let got = stranger.session().await;
    assert_eq!(got.len(), 2, "the serial and hardware-hash Gets: {got:?}");
    let (_, dev) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices/{}", stranger.device_id),
            None,
        )
        .await;
    assert_eq!(dev["autopilot_serial"], Value::Null);
    assert_eq!(dev["inventory"][SERIAL_URI], "NOT-REGISTERED");

    // A registered one under the profile: linked, but the profile says no TenantLockdown.
    let mut d = enrolled_device(&srv, 63).await;
    d.nodes.insert(SERIAL_URI.into(), "REG-1".into());
    let got = d.session().await;
    assert!(
        got.iter()
            .all(|c| !c.target.as_deref().unwrap_or("").contains("TenantLockdown")),
        "{got:?}"
    );
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    assert_eq!(dev["autopilot_serial"], "REG-1");
    assert_eq!(dev["tenant_lockdown"], Value::Null);

    // Another device claiming the same serial is refused the link.
    let mut twin = enrolled_device(&srv, 64).await;
    twin.nodes.insert(SERIAL_URI.into(), "REG-1".into());
    twin.session().await;
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", twin.device_id), None)
        .await;
    assert_eq!(dev["autopilot_serial"], Value::Null);
    let (_, ap) = srv
        .admin("GET", "/api/v1/autopilot/devices/REG-1", None)
        .await;
    assert_eq!(ap["linked_device_id"], d.device_id.as_str());

    // The profile switches TenantLockdown on: already-linked devices get it queued.
    let (_, p) = srv
        .admin("GET", "/api/v1/autopilot/profiles/Sales%20laptops", None)
        .await;
    let path = format!("/api/v1/autopilot/profiles/{}", p["id"].as_str().unwrap());
    let (st, _) = srv
        .admin(
            "PUT",
            &path,
            Some(with(
                user_driven(),
                json!({"all_groups": true, "tenant_lockdown": true}),
            )),
        )
        .await;
    assert_eq!(st, 200);
    let got = d.session().await;
    assert!(
        got.iter().any(|c| c.target.as_deref()
            == Some("./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE")
            && c.data.as_deref() == Some("true")),
        "{got:?}"
    );
}

#[tokio::test]
async fn no_serial_request_without_registered_devices() {
    let srv = TestServer::start().await;
    let mut d = enrolled_device(&srv, 65).await;
    assert!(d.session().await.is_empty());
}

#[tokio::test]
async fn hololens_devices_only_take_hololens_profiles() {
    let srv = TestServer::start().await;
    let csv = format!(
        "{HEADER}\r\nHL-0001,,{},Lab,\r\nPC-0001,,{},Lab,\r\n",
        hash(7, 64),
        hash(8, 64)
    );
    assert_eq!(import(&srv, csv.into_bytes()).await.0, 200);
    // The all-groups profile is for Windows PCs and asks for TenantLockdown; globally it is off.
    let body = with(
        user_driven(),
        json!({"all_groups": true, "tenant_lockdown": true}),
    );
    assert_eq!(create(&srv, body).await.0, 201);

    // A HoloLens 2 (OSEdition 136, Windows Holographic for Business) enrolls.
    srv.create_user("hl@contoso.com", "pw-123456").await;
    let mut info = DeviceInfo::new(66, "hl@contoso.com", "pw-123456");
    info.os_edition = "136".into();
    let e = device::enroll(&srv.client(), &info).await;
    let mut hl = ManagedDevice::new(&srv, &e);
    hl.nodes.insert(SERIAL_URI.into(), "HL-0001".into());
    let got = hl.session().await;
    assert!(
        got.iter()
            .all(|c| !c.target.as_deref().unwrap_or("").contains("TenantLockdown")),
        "{got:?}"
    );
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", hl.device_id), None)
        .await;
    assert_eq!(dev["os_edition"], "136");
    assert_eq!(dev["autopilot_serial"], "HL-0001", "linked all the same");
    assert_eq!(
        dev["tenant_lockdown"],
        Value::Null,
        "the Windows PC profile does not apply"
    );

    // A PC under the same profile gets it.
    let mut pc = enrolled_device(&srv, 67).await;
    pc.nodes.insert(SERIAL_URI.into(), "PC-0001".into());
    let got = pc.session().await;
    assert!(
        got.iter()
            .any(|c| c.target.as_deref()
                == Some("./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE")),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_device_that_enrolls_again_is_asked_and_linked_again() {
    let srv = TestServer::start().await;
    let csv = format!("{HEADER}\r\nRE-0001,,{},Desk,\r\n", hash(4, 64));
    assert_eq!(import(&srv, csv.into_bytes()).await.0, 200);
    srv.create_user("re@contoso.com", "pw-123456").await;
    let info = DeviceInfo::new(68, "re@contoso.com", "pw-123456");
    for round in 0..2 {
        let e = device::enroll(&srv.client(), &info).await;
        let mut d = ManagedDevice::new(&srv, &e);
        d.nodes.insert(SERIAL_URI.into(), "RE-0001".into());
        let got = d.session().await;
        assert_eq!(
            got.first().and_then(|c| c.target.as_deref()),
            Some(SERIAL_URI),
            "enrollment {round}: {got:?}"
        );
        let (_, dev) = srv
            .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
            .await;
        assert_eq!(dev["autopilot_serial"], "RE-0001", "enrollment {round}");
        assert_eq!(dev["group_tag"], "Desk");
    }
}
