//! Bulk enrollment end to end: the WCD package, its secret enrolling devices, revocation, and
//! issue 5's acceptance (three devices, device scope only, assignment, wipe).

use serde_json::json;

use super::{audit, make_token};
use crate::support::device::{self, DeviceInfo};
use crate::support::mdm_device::ManagedDevice;
use crate::support::TestServer;

const PROV_NS: &str = "urn:schemas-microsoft-com:windows-provisioning";
const PKG_NS: &str = "urn:schemas-Microsoft-com:Windows-ICD-Package-Config.v1.0";

/// What the test reads back from a downloaded customizations document.
struct Package {
    package_id: String,
    upn: String,
    secret: String,
    discovery: String,
}

async fn download(srv: &TestServer, upn: &str) -> Package {
    let r = srv
        .client()
        .request(
            "GET",
            &format!(
                "/api/v1/bulk-enrollment/package?upn={}",
                upn.replace('@', "%40")
            ),
            &[(
                "authorization",
                &format!("Bearer {}", crate::support::ADMIN_TOKEN),
            )],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/xml"));
    let xml = r.text();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed customizations XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "WindowsCustomizations");
    let text = |ns: &str, name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name((ns, name)))
            .and_then(|n| n.text())
            .unwrap_or_else(|| panic!("{name} missing: {xml}"))
            .to_string()
    };
    let guid = text(PKG_NS, "ID");
    assert!(
        guid.starts_with('{') && guid.ends_with('}') && guid.len() == 38,
        "{guid}"
    );
    assert_eq!(text(PKG_NS, "OwnerType"), "ITAdmin");
    assert_eq!(text(PKG_NS, "Rank"), "0");
    assert!(!text(PKG_NS, "Name").is_empty() && !text(PKG_NS, "Version").is_empty());
    let upn_node = doc
        .descendants()
        .find(|n| n.has_tag_name((PROV_NS, "UPN")))
        .expect("Settings/Customizations/Common/Workplace/Enrollments/UPN");
    let chain: Vec<&str> = upn_node
        .ancestors()
        .skip(1)
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name())
        .collect();
    assert_eq!(
        chain,
        [
            "Enrollments",
            "Workplace",
            "Common",
            "Customizations",
            "Settings",
            "WindowsCustomizations"
        ]
    );
    assert_eq!(text(PROV_NS, "AuthPolicy"), "OnPremise");
    let base = format!("https://localhost:{}", srv.addr.port());
    assert_eq!(
        text(PROV_NS, "PolicyServiceFullUrl"),
        format!("{base}/EnrollmentServer/Policy.svc")
    );
    assert_eq!(
        text(PROV_NS, "EnrollmentServiceFullUrl"),
        format!("{base}/EnrollmentServer/Enrollment.svc")
    );
    let package_id = r.headers["x-winmdm-package-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(guid, format!("{{{package_id}}}"));
    Package {
        package_id,
        upn: upn_node.attribute("Name").unwrap().to_string(),
        secret: text(PROV_NS, "Secret"),
        discovery: text(PROV_NS, "DiscoveryServiceFullUrl"),
    }
}

/// Sends an RST (no policy step) and returns the fault subcode, `None` on success.
async fn rst_fault(srv: &TestServer, n: u32, upn: &str, pw: &str) -> Option<String> {
    let info = DeviceInfo::new(n, upn, pw);
    let (csr, _) =
        winmdm::ca::testing::device_csr(&info.device_id, winmdm::ca::KeyAlgorithm::Rsa2048);
    let r = device::send_rst(
        &srv.client(),
        "/EnrollmentServer/Enrollment.svc",
        &info,
        &csr,
    )
    .await;
    device::fault_subcode(&r.text())
}

#[tokio::test]
async fn package_secret_enrolls_until_revoked() {
    let srv = TestServer::start().await;
    let bulk = "windows-bulkenroll-lab@contoso.com";
    srv.create_user(bulk, "account-pw-1").await;
    srv.create_user("henry@contoso.com", "pw-henry-1").await;
    let p = download(&srv, "Windows-BulkEnroll-Lab@Contoso.com").await;
    assert_eq!(p.upn, bulk);
    assert_eq!(
        p.discovery,
        format!(
            "https://localhost:{}/EnrollmentServer/Discovery.svc",
            srv.addr.port()
        )
    );
    assert_ne!(p.secret, "account-pw-1");
    // The store keeps an argon2id hash, never the secret.
    for (_, v) in srv
        .app
        .store
        .records()
        .scan_records("bulk_package_secret", None, 100)
        .unwrap()
    {
        let s = String::from_utf8_lossy(&v);
        assert!(!s.contains(&p.secret) && s.contains("$argon2id$"));
    }
    // A device applying the package enrolls with UPN + secret, end to end.
    let e = device::enroll(&srv.client(), &DeviceInfo::new(521, &p.upn, &p.secret)).await;
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", e.device_id), None)
        .await;
    assert_eq!(dev["bulk"], true);
    assert_eq!(dev["upn"], bulk);
    // A second package has its own secret; both work; the account password still works.
    let p2 = download(&srv, bulk).await;
    assert_ne!(p2.secret, p.secret);
    assert_ne!(p2.package_id, p.package_id);
    assert_eq!(rst_fault(&srv, 522, bulk, &p2.secret).await, None);
    assert_eq!(rst_fault(&srv, 523, bulk, "account-pw-1").await, None);
    // The user shows its packages, never their secrets.
    let (_, u) = srv
        .admin("GET", &format!("/api/v1/users/{bulk}"), None)
        .await;
    let ids: Vec<&str> = u["bulk_packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["package_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{u}");
    assert!(ids.contains(&p.package_id.as_str()) && ids.contains(&p2.package_id.as_str()));
    assert!(!u.to_string().contains(&p.secret));

    // Revoke the first: its secret gets the authentication fault, the second still enrolls.
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/bulk-enrollment/packages/{}", p.package_id),
            None,
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(
        rst_fault(&srv, 524, bulk, &p.secret).await.as_deref(),
        Some("s:Authentication")
    );
    assert_eq!(rst_fault(&srv, 525, bulk, &p2.secret).await, None);
    // Guessing at the (public) bulk UPN locks its account password, not the package secrets:
    // provisioning goes on.
    for i in 0..5 {
        assert_eq!(
            rst_fault(&srv, 530, bulk, &format!("guess-{i}"))
                .await
                .as_deref(),
            Some("s:Authentication")
        );
    }
    assert_eq!(
        rst_fault(&srv, 531, bulk, "account-pw-1").await.as_deref(),
        Some("s:Authentication"),
        "the account password is locked"
    );
    assert_eq!(rst_fault(&srv, 532, bulk, &p2.secret).await, None);
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/bulk-enrollment/packages/{}", p.package_id),
            None,
        )
        .await;
    assert_eq!(st, 404);
    // A secret of one account does not open another, and a forged secret with a real id fails.
    srv.create_user("windows-bulkenroll-other@contoso.com", "other-pw-1")
        .await;
    assert_eq!(
        rst_fault(
            &srv,
            526,
            "windows-bulkenroll-other@contoso.com",
            &p2.secret
        )
        .await
        .as_deref(),
        Some("s:Authentication")
    );
    let forged = format!("{}.{}", p2.package_id, "0".repeat(48));
    assert_eq!(
        rst_fault(&srv, 527, bulk, &forged).await.as_deref(),
        Some("s:Authentication")
    );

    // Errors: not a bulk account, unknown user, disabled, missing/unknown parameters, read-only.
    let c = srv.client();
    for (q, want) in [
        ("upn=henry%40contoso.com", 400),
        ("upn=windows-bulkenroll-ghost%40contoso.com", 404),
        ("", 400),
        ("upn=windows-bulkenroll-lab%40contoso.com&x=1", 400),
        ("upn=%zz", 400),
    ] {
        let (st, v) = srv
            .admin("GET", &format!("/api/v1/bulk-enrollment/package?{q}"), None)
            .await;
        assert_eq!(st, want, "{q}: {v}");
        assert!(v["error"].is_string());
    }
    srv.admin(
        "PATCH",
        "/api/v1/users/windows-bulkenroll-other@contoso.com",
        Some(json!({"disabled": true})),
    )
    .await;
    let (st, _) = srv
        .admin(
            "GET",
            "/api/v1/bulk-enrollment/package?upn=windows-bulkenroll-other%40contoso.com",
            None,
        )
        .await;
    assert_eq!(st, 409);
    let ro = make_token(&srv, "viewer", "read-only").await;
    let (st, _) = c
        .admin(
            "GET",
            &format!("/api/v1/bulk-enrollment/package?upn={bulk}"),
            None,
            Some(&ro),
        )
        .await;
    assert_eq!(st, 403, "a read-only token cannot mint enrollment secrets");

    // Audit: minted and revoked, with the package id, never the secret.
    let entries = audit(&srv).await;
    let pk: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("bulk."))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["detail"]["package_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pk,
        [
            ("bulk.package", p.package_id.as_str()),
            ("bulk.package", p2.package_id.as_str()),
            ("bulk.package_revoke", p.package_id.as_str()),
        ]
    );
    assert!(!serde_json::to_string(&entries)
        .unwrap()
        .contains(&p2.secret));

    // Deleting the account drops its package secrets: a re-created account does not inherit them.
    srv.admin("DELETE", &format!("/api/v1/users/{bulk}"), None)
        .await;
    srv.create_user(bulk, "new-account-pw").await;
    assert_eq!(
        rst_fault(&srv, 528, bulk, &p2.secret).await.as_deref(),
        Some("s:Authentication")
    );
    let (_, u) = srv
        .admin("GET", &format!("/api/v1/users/{bulk}"), None)
        .await;
    assert_eq!(u["bulk_packages"], json!([]));
    srv.stop().await;
}

/// Issue 5's acceptance, with devices enrolled the way a provisioning package does it.
#[tokio::test]
async fn three_package_devices_device_scope_assignment_and_wipe() {
    let srv = TestServer::start().await;
    let bulk = "windows-bulkenroll@fabrikam.com";
    srv.create_user(bulk, "unused-account-pw").await;
    srv.create_user("ivy@fabrikam.com", "pw-ivy-123").await;
    let p = download(&srv, bulk).await;
    let c = srv.client();
    let mut devices = Vec::new();
    for n in 531..534 {
        let e = device::enroll(&c, &DeviceInfo::new(n, bulk, &p.secret)).await;
        devices.push(ManagedDevice::new(&srv, &e));
    }
    let normal = device::enroll(&c, &DeviceInfo::new(534, "ivy@fabrikam.com", "pw-ivy-123")).await;
    let ids: Vec<String> = devices.iter().map(|d| d.device_id.clone()).collect();
    for id in &ids {
        let (st, v) = srv
            .admin(
                "POST",
                &format!("/api/v1/devices/{id}/commands"),
                Some(json!({"verb": "Replace", "target": "./User/Vendor/MSFT/Policy/Config/Start/HideSleep", "format": "int", "data": "1"})),
            )
            .await;
        assert_eq!(st, 400, "user-scoped command refused: {v}");
    }
    let (st, d) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/assign-user", ids[0]),
            Some(json!({"upn": "ivy@fabrikam.com"})),
        )
        .await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["assigned_user"]["upn"], "ivy@fabrikam.com");
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/assign-user", normal.device_id),
            Some(json!({"upn": "ivy@fabrikam.com"})),
        )
        .await;
    assert_eq!(st, 409, "a non-bulk device cannot be assigned");

    // Wipe the assigned device: its next session carries RemoteWipe doWipe; the action follows
    // the device's Status.
    let (st, a) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/actions", ids[0]),
            Some(json!({"action": "wipe"})),
        )
        .await;
    assert_eq!(st, 202, "{a}");
    let aid = a["action_id"].as_str().unwrap().to_string();
    let (_, v) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices/{}/actions/{aid}", ids[0]),
            None,
        )
        .await;
    assert_eq!(v["state"], "pending");
    let got = devices[0].session().await;
    let wipes: Vec<_> = got.iter().filter(|c| c.verb == "Exec").collect();
    assert_eq!(wipes.len(), 1, "{got:?}");
    assert_eq!(
        wipes[0].target.as_deref(),
        Some("./Device/Vendor/MSFT/RemoteWipe/doWipe")
    );
    let (_, v) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices/{}/actions/{aid}", ids[0]),
            None,
        )
        .await;
    assert_eq!(
        (v["state"].clone(), v["status"].clone()),
        (json!("done"), json!(200))
    );
    // A failing wipe on another device is reported as failed with its code.
    let (_, a2) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/actions", ids[1]),
            Some(json!({"action": "wipe"})),
        )
        .await;
    devices[1]
        .status_for
        .insert("./Device/Vendor/MSFT/RemoteWipe/doWipe".into(), 500);
    devices[1].session().await;
    let (_, v) = srv
        .admin(
            "GET",
            &format!(
                "/api/v1/devices/{}/actions/{}",
                ids[1],
                a2["action_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        (v["state"].clone(), v["status"].clone()),
        (json!("failed"), json!(500))
    );
    // The third device got nothing.
    assert!(devices[2].session().await.is_empty());
    srv.stop().await;
}

/// Issue 13, finding 12: a bulk device is assigned to its real user, never to another generic
/// `windows-bulkenroll` account; and a bulk device belongs to the account that enrolled it.
#[tokio::test]
async fn a_bulk_device_is_never_assigned_to_another_bulk_account() {
    let srv = TestServer::start().await;
    let bulk = "windows-bulkenroll@fabrikam.com";
    let other = "windows-bulkenroll-lab@fabrikam.com";
    srv.create_user(bulk, "unused-account-pw").await;
    srv.create_user(other, "unused-account-pw2").await;
    srv.create_user("jo@fabrikam.com", "pw-jo-12345").await;
    let p = download(&srv, bulk).await;
    let info = DeviceInfo::new(541, bulk, &p.secret);
    let e = device::enroll(&srv.client(), &info).await;
    let path = format!("/api/v1/devices/{}/assign-user", e.device_id);
    let (st, v) = srv.admin("POST", &path, Some(json!({"upn": other}))).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["field"], "upn");
    let (st, v) = srv.admin("POST", &path, Some(json!({"upn": bulk}))).await;
    assert_eq!(st, 400, "not to its own bulk account either: {v}");
    let (_, d) = srv
        .admin("GET", &format!("/api/v1/devices/{}", e.device_id), None)
        .await;
    assert_eq!(d["assigned_user"], serde_json::Value::Null, "{d}");

    // Another bulk account's package cannot take the device over by its DeviceID.
    let p2 = download(&srv, other).await;
    let mut stolen = DeviceInfo::new(542, other, &p2.secret);
    stolen.device_id = e.device_id.clone();
    assert_eq!(
        rst_fault_for(&srv, &stolen).await.as_deref(),
        Some("s:Authorization")
    );
    // Re-provisioning with the same account works; so does its assigned real user re-enrolling.
    device::enroll(&srv.client(), &info).await;
    let (st, v) = srv
        .admin("POST", &path, Some(json!({"upn": "jo@fabrikam.com"})))
        .await;
    assert_eq!(st, 200, "{v}");
    let mut jo = DeviceInfo::new(543, "jo@fabrikam.com", "pw-jo-12345");
    jo.device_id = e.device_id.clone();
    device::enroll(&srv.client(), &jo).await;
    srv.stop().await;
}

async fn rst_fault_for(srv: &TestServer, info: &DeviceInfo) -> Option<String> {
    let (_, url) = device::discover_and_policy(&srv.client(), info).await;
    let (csr, _) =
        winmdm::ca::testing::device_csr(&info.device_id, winmdm::ca::KeyAlgorithm::Rsa2048);
    let r = device::send_rst(&srv.client(), &url, info, &csr).await;
    device::fault_subcode(&r.text())
}
