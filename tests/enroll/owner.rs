//! Who owns a device (issue 13, findings 1, 2, 5 and 8): a DeviceID or HWDevID is a claim, never
//! authority over an enrollment another principal owns.

use serde_json::{json, Value};
use winmdm::ca::KeyAlgorithm;

use crate::support::device::{self, fault_subcode, DeviceInfo};
use crate::support::mdm_device::ManagedDevice;
use crate::support::TestServer;

async fn device_json(srv: &TestServer, id: &str) -> Value {
    let (st, v) = srv
        .admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

async fn queue_wifi(srv: &TestServer, id: &str, command_id: &str) -> u16 {
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{id}/commands"),
            Some(json!({
                "verb": "Replace",
                "target": "./Vendor/MSFT/WiFi/Profile/Corp/WlanXml",
                "data": "<WLANProfile>psk=corp-secret</WLANProfile>",
                "command_id": command_id,
            })),
        )
        .await;
    st
}

/// Full enrollment steps for `info`, returning the RST answer (fault or not).
async fn try_enroll(srv: &TestServer, info: &DeviceInfo) -> crate::support::HttpResponse {
    let (_, url) = device::discover_and_policy(&srv.client(), info).await;
    let (csr, _) = winmdm::ca::testing::device_csr(&info.device_id, KeyAlgorithm::Rsa2048);
    device::send_rst(&srv.client(), &url, info, &csr).await
}

fn assert_authorization_fault(r: &crate::support::HttpResponse) {
    let body = r.text();
    assert!(r.status >= 400, "refused, got HTTP {}: {body}", r.status);
    assert_eq!(
        fault_subcode(&body).as_deref(),
        Some("s:Authorization"),
        "{body}"
    );
    assert!(!body.contains("BinarySecurityToken"), "no certificate");
}

#[tokio::test]
async fn another_user_cannot_take_over_an_enrolled_device_id() {
    let srv = TestServer::start().await;
    srv.create_user("alice@example.com", "pw-alice-1").await;
    srv.create_user("mallory@example.com", "pw-mallory-1").await;
    let alice = DeviceInfo::new(201, "alice@example.com", "pw-alice-1");
    let e = device::enroll(&srv.client(), &alice).await;
    let mut alice_dev = ManagedDevice::new(&srv, &e);
    assert_eq!(queue_wifi(&srv, &alice.device_id, "wifi-1").await, 201);
    let certs_before = srv.app.store.count_certs().unwrap();

    // Mallory, with her own password, claims Alice's DeviceID (context item and CSR).
    let mut mallory = DeviceInfo::new(202, "mallory@example.com", "pw-mallory-1");
    mallory.device_id = alice.device_id.clone();
    let r = try_enroll(&srv, &mallory).await;
    assert_authorization_fault(&r);
    assert_eq!(
        srv.app.store.count_certs().unwrap(),
        certs_before,
        "no certificate issued"
    );

    // Nothing of Alice's enrollment moved: owner, certificate, queue.
    let v = device_json(&srv, &alice.device_id).await;
    assert_eq!(v["upn"], "alice@example.com");
    assert_eq!(v["state"], "enrolled");
    assert_eq!(v["certificate"]["revoked_at"], Value::Null, "{v}");
    assert_eq!(v["queue"]["pending"], 1);
    let got = alice_dev.session().await;
    assert!(
        got.iter()
            .any(|c| c.data.as_deref() == Some("<WLANProfile>psk=corp-secret</WLANProfile>")),
        "Alice's device still gets its command: {got:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_same_user_re_enrolls_and_an_admin_transfer_hands_the_device_over() {
    let srv = TestServer::start().await;
    srv.create_user("alice@example.com", "pw-alice-1").await;
    srv.create_user("bob@example.com", "pw-bob-1").await;
    let alice = DeviceInfo::new(203, "alice@example.com", "pw-alice-1");
    let first = device::enroll(&srv.client(), &alice).await;
    assert_eq!(queue_wifi(&srv, &alice.device_id, "wifi-2").await, 201);

    // Reset / re-join by the same user: works as before (old certificate revoked, queue kept).
    let second = device::enroll(&srv.client(), &alice).await;
    let v = device_json(&srv, &alice.device_id).await;
    assert_eq!(v["queue"]["pending"], 1, "{v}");
    let old = ManagedDevice::new(&srv, &first);
    let r = old.post(&old.first_package(9, "")).await;
    assert_eq!(r.status, 403, "the superseded certificate is revoked");
    let mut new = ManagedDevice::new(&srv, &second);
    assert!(!new.session().await.is_empty());

    // Bob cannot take it by himself...
    let mut bob = DeviceInfo::new(204, "bob@example.com", "pw-bob-1");
    bob.device_id = alice.device_id.clone();
    assert_authorization_fault(&try_enroll(&srv, &bob).await);

    // ...until an admin hands it to him (audited); then Alice no longer may.
    let (st, v) = srv
        .admin(
            "PUT",
            &format!("/api/v1/devices/{}/owner", alice.device_id),
            Some(json!({"upn": "bob@example.com"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["upn"], "bob@example.com");
    let (st, v) = srv
        .admin(
            "PUT",
            &format!("/api/v1/devices/{}/owner", alice.device_id),
            Some(json!({"upn": "nobody@example.com"})),
        )
        .await;
    assert_eq!(st, 404, "{v}");
    let (_, audit) = srv.admin("GET", "/api/v1/audit?limit=1000", None).await;
    let t = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "device.transfer")
        .cloned()
        .expect("device.transfer audited");
    assert_eq!(t["detail"]["from_upn"], "alice@example.com");
    assert_eq!(t["detail"]["to_upn"], "bob@example.com");
    let e = device::enroll(&srv.client(), &bob).await;
    assert_eq!(e.device_id, alice.device_id);
    assert_authorization_fault(&try_enroll(&srv, &alice).await);
    srv.stop().await;
}

#[tokio::test]
async fn a_hwdevid_claimed_by_another_user_leaves_their_device_alone() {
    let srv = TestServer::start().await;
    srv.create_user("alice@example.com", "pw-alice-1").await;
    srv.create_user("mallory@example.com", "pw-mallory-1").await;
    let alice = DeviceInfo::new(205, "alice@example.com", "pw-alice-1");
    let e = device::enroll(&srv.client(), &alice).await;
    let mut alice_dev = ManagedDevice::new(&srv, &e);

    // Mallory enrolls her own new DeviceID Y, claiming Alice's HWDevID.
    let mut mallory = DeviceInfo::new(206, "mallory@example.com", "pw-mallory-1");
    mallory.hw_dev_id = alice.hw_dev_id.clone();
    device::enroll(&srv.client(), &mallory).await;

    let v = device_json(&srv, &alice.device_id).await;
    assert_eq!(v["state"], "enrolled", "{v}");
    assert_eq!(v["certificate"]["revoked_at"], Value::Null, "{v}");
    assert_eq!(
        queue_wifi(&srv, &alice.device_id, "wifi-3").await,
        201,
        "the admin can still queue for Alice's device"
    );
    let got = alice_dev.session().await;
    assert!(!got.is_empty(), "Alice's device is still managed");

    // The same user re-joining with a new DeviceID on the same hardware still replaces it.
    let mut again = DeviceInfo::new(207, "alice@example.com", "pw-alice-1");
    again.hw_dev_id = alice.hw_dev_id.clone();
    device::enroll(&srv.client(), &again).await;
    let v = device_json(&srv, &alice.device_id).await;
    assert_eq!(v["state"], "unenrolled", "{v}");
    srv.stop().await;
}

#[tokio::test]
async fn a_user_may_enroll_at_most_max_devices_per_user() {
    let srv = TestServer::start_with(|o| o.max_devices_per_user = Some(2)).await;
    srv.create_user("carol@example.com", "pw-carol-1").await;
    let infos: Vec<DeviceInfo> = (0..3)
        .map(|i| DeviceInfo::new(210 + i, "carol@example.com", "pw-carol-1"))
        .collect();
    device::enroll(&srv.client(), &infos[0]).await;
    device::enroll(&srv.client(), &infos[1]).await;
    assert_authorization_fault(&try_enroll(&srv, &infos[2]).await);
    // Re-enrolling one of hers is not a new device.
    device::enroll(&srv.client(), &infos[1]).await;
    // A deleted device frees its place.
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/devices/{}", infos[0].device_id),
            None,
        )
        .await;
    assert_eq!(st, 204);
    device::enroll(&srv.client(), &infos[2]).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_deleted_users_devices_stay_managed_as_orphans_and_a_new_same_upn_account_owns_none() {
    let srv = TestServer::start().await;
    srv.create_user("dave@example.com", "pw-dave-1").await;
    let dave = DeviceInfo::new(220, "dave@example.com", "pw-dave-1");
    let e = device::enroll(&srv.client(), &dave).await;
    let mut dev = ManagedDevice::new(&srv, &e);
    let (_, u) = srv
        .admin("GET", "/api/v1/users/dave@example.com", None)
        .await;
    assert_eq!(u["devices"], json!([dave.device_id]));
    assert_eq!(
        device_json(&srv, &dave.device_id).await["owner_status"],
        "active"
    );

    // Disabled: still managed, shown as such.
    let (st, _) = srv
        .admin(
            "PATCH",
            "/api/v1/users/dave@example.com",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        device_json(&srv, &dave.device_id).await["owner_status"],
        "disabled"
    );

    // Deleted: still managed (commands delivered), shown as orphaned.
    let (st, _) = srv
        .admin("DELETE", "/api/v1/users/dave@example.com", None)
        .await;
    assert_eq!(st, 204);
    assert_eq!(queue_wifi(&srv, &dave.device_id, "wifi-4").await, 201);
    let got = dev.session().await;
    assert!(got.iter().any(|c| c.verb == "Replace"), "{got:?}");
    let v = device_json(&srv, &dave.device_id).await;
    assert_eq!(v["owner_status"], "orphaned", "{v}");
    let (_, page) = srv
        .admin("GET", "/api/v1/devices?owner_status=orphaned", None)
        .await;
    assert_eq!(page["devices"][0]["device_id"], dave.device_id.as_str());

    // A new account with the same UPN owns none of it.
    srv.create_user("dave@example.com", "pw-dave-2").await;
    let (_, u) = srv
        .admin("GET", "/api/v1/users/dave@example.com", None)
        .await;
    assert_eq!(u["devices"], json!([]), "{u}");
    let (_, page) = srv
        .admin("GET", "/api/v1/devices?user=dave@example.com", None)
        .await;
    assert_eq!(page["devices"], json!([]), "{page}");
    assert_eq!(
        device_json(&srv, &dave.device_id).await["owner_status"],
        "orphaned"
    );
    let mut again = dave.clone();
    again.password = "pw-dave-2".into();
    assert_authorization_fault(&try_enroll(&srv, &again).await);
    srv.stop().await;
}
