//! Issue 13, finding 7: an Autopilot registration is linked only on the device's Results to the
//! server's own Gets, its hardware hash must agree with the imported one, and a contested serial
//! is a conflict shown to the admin rather than a first-come link.

use base64::Engine;
use serde_json::{json, Value};
use winmdm::autopilot::convert::HWDATA_URI;
use winmdm::autopilot::link::SERIAL_URI;

use super::{enrolled_device, hash, import, HEADER};
use crate::support::TestServer;

async fn registration(srv: &TestServer, serial: &str) -> Value {
    let (st, v) = srv
        .admin("GET", &format!("/api/v1/autopilot/devices/{serial}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

async fn device(srv: &TestServer, id: &str) -> Value {
    srv.admin("GET", &format!("/api/v1/devices/{id}"), None)
        .await
        .1
}

async fn audit_actions(srv: &TestServer) -> Vec<Value> {
    let (_, a) = srv.admin("GET", "/api/v1/audit?limit=1000", None).await;
    a["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn an_unsolicited_serial_number_links_nothing() {
    let srv = TestServer::start().await;
    let csv = format!("{HEADER}\r\nVICTIM-0001,,{},Finance,\r\n", hash(21, 64));
    assert_eq!(import(&srv, csv.into_bytes()).await.0, 200);

    // Mallory's device reports, unasked, the serial printed on someone else's box.
    let mut mallory = enrolled_device(&srv, 171).await;
    mallory
        .nodes
        .insert(SERIAL_URI.into(), "MALLORY-OWN-1".into());
    let unasked = format!(
        r#"<Replace><CmdID>7</CmdID><Item><Source><LocURI>{SERIAL_URI}</LocURI></Source><Data>VICTIM-0001</Data></Item></Replace>"#
    );
    mallory.session_with(&unasked).await;
    let d = device(&srv, &mallory.device_id).await;
    assert_eq!(d["autopilot_serial"], Value::Null, "{d}");
    assert_eq!(d["group_tag"], Value::Null);
    assert_eq!(
        registration(&srv, "VICTIM-0001").await["linked_device_id"],
        Value::Null
    );

    // The real device answers the server's Get with that serial: linked.
    let mut real = enrolled_device(&srv, 172).await;
    real.nodes.insert(SERIAL_URI.into(), "VICTIM-0001".into());
    real.session().await;
    let d = device(&srv, &real.device_id).await;
    assert_eq!(d["autopilot_serial"], "VICTIM-0001", "{d}");
    assert_eq!(d["group_tag"], "Finance");
    let r = registration(&srv, "VICTIM-0001").await;
    assert_eq!(r["linked_device_id"], real.device_id.as_str());
    assert_eq!(
        r["hash_check"], "unverified",
        "a synthetic hash cannot be compared"
    );
    srv.stop().await;
}

/// A hardware hash shaped like a real one (see `src/autopilot/hwhash.rs`), written here rather
/// than with the server's code: `OA`, a 32-byte header holding the capture time, then fields
/// (u16 type, u16 length with the 4-byte head, value): CPU vendor (3), SMBIOS UUID (12), serial
/// (14), manufacturer (15), product (17), TPM EK public key (25).
fn oa_hash(serial: &str, uuid: u8, tpm: u8, capture_time: u32) -> String {
    let mut raw = b"OA\x06\x04\x01\x00\x1c\x00\x00\x00\x0a\x00\xe8\x03".to_vec();
    raw.extend_from_slice(&capture_time.to_le_bytes());
    raw.resize(32, 0);
    let text = |s: &str| [s.as_bytes(), &[0]].concat();
    let fields: [(u16, Vec<u8>); 6] = [
        (3, text("GenuineIntel")),
        (12, vec![uuid; 16]),
        (14, text(serial)),
        (15, text("HP")),
        (17, text("HP EliteBook 840 G8 Notebook PC")),
        (25, vec![tpm; 256]),
    ];
    for (ty, v) in fields {
        raw.extend_from_slice(&ty.to_le_bytes());
        raw.extend_from_slice(&(v.len() as u16 + 4).to_le_bytes());
        raw.extend_from_slice(&v);
    }
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[tokio::test]
async fn a_serial_with_another_hardware_hash_is_a_conflict_for_the_admin() {
    let srv = TestServer::start().await;
    let serial = "5CG2HASH01";
    let imported = oa_hash(serial, 1, 2, 1_650_000_000);
    let csv = format!("{HEADER}\r\n{serial},,{imported},Sales,\r\n");
    assert_eq!(import(&srv, csv.into_bytes()).await.0, 200);

    // An impostor reports the serial, and a hardware hash of other hardware, first.
    let mut impostor = enrolled_device(&srv, 173).await;
    impostor.nodes.insert(SERIAL_URI.into(), serial.into());
    impostor
        .nodes
        .insert(HWDATA_URI.into(), oa_hash(serial, 9, 8, 1_700_000_000));
    impostor.session().await;
    assert_eq!(
        device(&srv, &impostor.device_id).await["autopilot_serial"],
        Value::Null
    );
    let r = registration(&srv, serial).await;
    assert_eq!(r["linked_device_id"], Value::Null, "{r}");
    assert_eq!(
        r["conflicts"][0]["device_id"],
        impostor.device_id.as_str(),
        "{r}"
    );
    let entries = audit_actions(&srv).await;
    let c = entries
        .iter()
        .find(|e| e["action"] == "autopilot.link_conflict")
        .unwrap_or_else(|| panic!("conflict audited: {entries:?}"));
    assert_eq!(c["detail"]["device_id"], impostor.device_id.as_str());
    let (_, list) = srv.admin("GET", "/api/v1/autopilot/devices", None).await;
    assert_eq!(
        list["devices"][0]["conflicts"].as_array().map(Vec::len),
        Some(1)
    );

    // The real device (another capture of the same hardware: other time, same fields) links.
    let mut real = enrolled_device(&srv, 174).await;
    real.nodes.insert(SERIAL_URI.into(), serial.into());
    real.nodes
        .insert(HWDATA_URI.into(), oa_hash(serial, 1, 2, 1_710_000_000));
    real.session().await;
    let d = device(&srv, &real.device_id).await;
    assert_eq!(d["autopilot_serial"], serial, "{d}");
    assert_eq!(d["group_tag"], "Sales");
    let r = registration(&srv, serial).await;
    assert_eq!(r["linked_device_id"], real.device_id.as_str());
    assert_eq!(r["hash_check"], "match");

    // A second device with the right hash while the first is enrolled: a conflict, not a link.
    let mut twin = enrolled_device(&srv, 175).await;
    twin.nodes.insert(SERIAL_URI.into(), serial.into());
    twin.nodes
        .insert(HWDATA_URI.into(), oa_hash(serial, 1, 2, 1_720_000_000));
    twin.session().await;
    assert_eq!(
        device(&srv, &twin.device_id).await["autopilot_serial"],
        Value::Null
    );
    let r = registration(&srv, serial).await;
    assert_eq!(r["linked_device_id"], real.device_id.as_str());
    assert!(r["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["device_id"] == twin.device_id.as_str()));

    // The admin resolves it: the registration goes to the twin, the conflicts are cleared.
    let (st, r) = srv
        .admin(
            "PATCH",
            &format!("/api/v1/autopilot/devices/{serial}"),
            Some(json!({"linked_device_id": twin.device_id})),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["linked_device_id"], twin.device_id.as_str());
    assert_eq!(r["conflicts"], json!([]));
    assert_eq!(device(&srv, &twin.device_id).await["group_tag"], "Sales");
    assert_eq!(
        device(&srv, &real.device_id).await["autopilot_serial"],
        Value::Null
    );
    let (st, _) = srv
        .admin(
            "PATCH",
            &format!("/api/v1/autopilot/devices/{serial}"),
            Some(json!({"linked_device_id": "NO-SUCH-DEVICE"})),
        )
        .await;
    assert_eq!(st, 400);
    srv.stop().await;
}
