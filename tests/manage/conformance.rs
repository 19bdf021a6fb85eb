//! Every captured device SyncML message in `../shared/conformance/` gets a well-formed answer,
//! replayed in order against the real server with a fake device holding the captured DeviceID
//! (our own key and certificate stand in for the device's, which the capture does not hold).

use serde_json::json;

use super::{commands, queue};
use crate::support::device::{self, DeviceInfo};
use crate::support::mdm_device::{ManagedDevice, Reply};
use crate::support::{conformance_dir, TestServer};

pub(crate) async fn device_with_id(srv: &TestServer, id: &str) -> ManagedDevice {
    let (st, _) = srv
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"upn": "cap@example.com", "password": "pw-capture"})),
        )
        .await;
    assert!(st == 201 || st == 409);
    let mut info = DeviceInfo::new(0, "cap@example.com", "pw-capture");
    info.device_id = id.to_string();
    let e = device::enroll(&srv.client(), &info).await;
    ManagedDevice::new(srv, &e)
}

fn read(dir: &std::path::Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Package 1 then the 202 statuses, as a real Windows 10 21H1 sent them: the two Personalization
/// Replace commands we queue get CmdIDs 5 and 6 (as the PoC's did), so the device's 202s land on them.
#[tokio::test]
async fn captured_session_with_202_statuses_completes_our_commands() {
    let Some(dir) = conformance_dir("captured OMA-DM sessions") else {
        return;
    };
    for (first, second) in [
        (
            "fleet/trace-readme-07-device-syncml-s1m1-alert1201-1224-devinfo.xml",
            "fleet/trace-readme-09-device-syncml-s1m2-status-202.xml",
        ),
        (
            "peers/marcosd4h-mdm-poc/05-manage-msg1-request.xml",
            "peers/marcosd4h-mdm-poc/06-manage-msg2-request.xml",
        ),
    ] {
        let srv = TestServer::start().await;
        let d = device_with_id(&srv, "1E08C6E95D8BB843B1278FF45BC60CC6").await;
        for (t, v) in [
            ("DesktopImageUrl", "https://example.com/d.jpg"),
            ("LockScreenImageUrl", "https://example.com/l.jpg"),
        ] {
            queue(&srv, &d.device_id, json!({"verb": "Replace", "target": format!("./Vendor/MSFT/Personalization/{t}"), "format": "chr", "data": v, "command_id": t})).await;
        }
        let r1 = d.post(&read(&dir, first)).await;
        assert_eq!(r1.status, 200, "{first}: {}", r1.text());
        let reply = Reply::parse(&r1.text());
        let ids: Vec<(String, String)> = reply
            .commands
            .iter()
            .map(|c| (c.cmd_id.clone(), c.verb.clone()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("5".into(), "Replace".into()),
                ("6".into(), "Replace".into())
            ],
            "{}",
            reply.raw
        );
        assert_eq!(
            reply.statuses.len(),
            4,
            "SyncHdr + 2 Alerts + Replace acknowledged: {}",
            reply.raw
        );
        let r2 = d.post(&read(&dir, second)).await;
        assert_eq!(r2.status, 200, "{second}: {}", r2.text());
        let end = Reply::parse(&r2.text());
        assert!(end.commands.is_empty(), "session ends: {}", end.raw);
        for c in commands(&srv, &d.device_id).await {
            assert_eq!(
                (c["state"].clone(), c["status"].clone()),
                (json!("done"), json!(202)),
                "{c}"
            );
        }
        let (_, dev) = srv
            .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
            .await;
        assert_eq!(dev["inventory"]["./DevInfo/Man"], "VMware, Inc.");
        assert_eq!(dev["login_status"], "user");
        println!("accepted {first} → {second}");
        srv.stop().await;
    }
}

#[tokio::test]
async fn captured_fleet_sessions_including_the_unenroll_alert() {
    let Some(dir) = conformance_dir("captured OMA-DM sessions") else {
        return;
    };
    let srv = TestServer::start().await;
    let d = device_with_id(&srv, "B5B954E81FBCB94EB79BD08BE625F4EE").await;
    let r = d
        .post(&read(
            &dir,
            "fleet/trace-ngrok-07-device-syncml-s1m1-alert1201-1224-devinfo.xml",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let reply = Reply::parse(&r.text());
    assert!(reply.commands.is_empty());
    assert_eq!(
        reply
            .statuses
            .iter()
            .map(|s| s.1.as_str())
            .collect::<Vec<_>>(),
        vec!["SyncHdr", "Alert", "Alert", "Replace"]
    );
    let r = d
        .post(&read(
            &dir,
            "fleet/trace-ngrok-09-device-syncml-s2m1-alert1226-unenroll.xml",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    assert_eq!(dev["state"], "unenrolled");
    println!("accepted fleet/trace-ngrok-07, fleet/trace-ngrok-09 (device unenrolled)");
    srv.stop().await;
}
