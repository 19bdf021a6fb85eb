//! Management sessions end to end: the fake device enrolls, checks in over mutual TLS, receives
//! the commands an admin queued, and answers them.

pub(crate) mod conformance;
mod payload;
pub(crate) mod retention;
mod rounds;
mod rounds_random;
mod security;

use serde_json::json;

use crate::support::device::{self, DeviceInfo};
use crate::support::mdm_device::{hdr, ManagedDevice, Reply};
use crate::support::TestServer;

pub async fn enrolled(srv: &TestServer, n: u32) -> ManagedDevice {
    let upn = format!("user{n}@example.com");
    let (st, _) = srv
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"upn": upn, "password": "pw-123456"})),
        )
        .await;
    assert!(st == 201 || st == 409);
    let e = device::enroll(&srv.client(), &DeviceInfo::new(n, &upn, "pw-123456")).await;
    ManagedDevice::new(srv, &e)
}

/// Posts a device message that must be answered 200, and parses the reply.
pub async fn post_ok(
    d: &crate::support::mdm_device::ManagedDevice,
    body: &str,
) -> crate::support::mdm_device::Reply {
    let r = d.post(body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    crate::support::mdm_device::Reply::parse(&r.text())
}

pub async fn commands(srv: &TestServer, dev: &str) -> Vec<serde_json::Value> {
    let (st, body) = srv
        .admin("GET", &format!("/api/v1/devices/{dev}/commands"), None)
        .await;
    assert_eq!(st, 200, "{body}");
    body["commands"].as_array().cloned().unwrap_or_default()
}

pub async fn queue(srv: &TestServer, dev: &str, cmd: serde_json::Value) -> String {
    let (st, body) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{dev}/commands"),
            Some(cmd),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    body["command_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn tenant_lockdown_and_get_are_delivered_once_and_answered() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 1).await;
    // First session: nothing queued; the device's inventory and login status are recorded.
    assert!(d.session().await.is_empty());
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    assert_eq!(dev["login_status"], "user");
    assert_eq!(dev["inventory"]["./DevInfo/Man"], "Contoso & Sons");
    assert!(dev["last_seen"].is_number());

    let (st, tl) = srv
        .admin(
            "PUT",
            &format!("/api/v1/devices/{}/tenant-lockdown", d.device_id),
            Some(json!({"require_network_in_oobe": true})),
        )
        .await;
    assert_eq!(st, 201, "{tl}");
    let get_id = queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "swv-1"}),
    )
    .await;
    assert_eq!(get_id, "swv-1");
    // The same client id again does not queue twice.
    let (st, again) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/commands", d.device_id),
            Some(json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "swv-1"})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(again["existing"], true);
    d.nodes
        .insert("./DevDetail/SwV".into(), "10.0.26100.2605".into());

    let got = d.session().await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].verb, "Replace");
    assert_eq!(
        got[0].target.as_deref(),
        Some("./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE")
    );
    assert_eq!(got[0].format.as_deref(), Some("bool"));
    assert_eq!(got[0].data.as_deref(), Some("true"));
    assert_eq!(got[1].verb, "Get");
    assert_eq!(got[1].target.as_deref(), Some("./DevDetail/SwV"));

    let cmds = commands(&srv, &d.device_id).await;
    assert_eq!(cmds.len(), 2);
    for c in &cmds {
        assert_eq!(c["state"], "done", "{c}");
        assert_eq!(c["status"], 200);
        assert!(c["completed_at"].is_number() && c["sent_at"].is_number());
    }
    let get = cmds.iter().find(|c| c["command_id"] == "swv-1").unwrap();
    assert_eq!(get["results"][0]["target"], "./DevDetail/SwV");
    assert_eq!(get["results"][0]["data"], "10.0.26100.2605");
    assert_eq!(get["results"][0]["format"], "chr");
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    assert_eq!(dev["tenant_lockdown"], true);
    assert_eq!(dev["inventory"]["./DevDetail/SwV"], "10.0.26100.2605");

    // Nothing is delivered twice.
    assert!(d.session().await.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn statuses_202_404_and_418_are_recorded_as_such() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 2).await;
    queue(&srv, &d.device_id, json!({"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/A/B", "format": "int", "data": "1", "command_id": "async"})).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Delete", "target": "./Vendor/MSFT/Missing", "command_id": "missing"}),
    )
    .await;
    queue(&srv, &d.device_id, json!({"verb": "Add", "target": "./Vendor/MSFT/Exists", "format": "chr", "data": "x", "command_id": "exists"})).await;
    d.status_for
        .insert("./Vendor/MSFT/Policy/Config/A/B".into(), 202);
    d.status_for.insert("./Vendor/MSFT/Missing".into(), 404);
    d.status_for.insert("./Vendor/MSFT/Exists".into(), 418);
    assert_eq!(d.session().await.len(), 3);
    let cmds = commands(&srv, &d.device_id).await;
    let by = |id: &str| cmds.iter().find(|c| c["command_id"] == id).unwrap().clone();
    assert_eq!(
        (by("async")["state"].clone(), by("async")["status"].clone()),
        (json!("done"), json!(202))
    );
    assert_eq!(
        (
            by("missing")["state"].clone(),
            by("missing")["status"].clone()
        ),
        (json!("failed"), json!(404))
    );
    assert_eq!(
        (
            by("exists")["state"].clone(),
            by("exists")["status"].clone()
        ),
        (json!("failed"), json!(418))
    );
    // Answered commands, failed or not, are never sent again (418 is reported, not retried).
    assert!(d.session().await.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn a_small_max_msg_size_splits_delivery_across_messages() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 3).await;
    let blob = "x".repeat(300);
    for i in 0..12 {
        queue(&srv, &d.device_id, json!({"verb": "Replace", "target": format!("./Vendor/MSFT/Test/N{i}"), "format": "chr", "data": blob, "command_id": format!("c{i:02}")})).await;
    }
    d.max_msg_size = Some(2000);
    let got = d.session().await;
    let targets: Vec<String> = got.iter().map(|c| c.target.clone().unwrap()).collect();
    let want: Vec<String> = (0..12)
        .map(|i| format!("./Vendor/MSFT/Test/N{i}"))
        .collect();
    assert_eq!(targets, want, "all delivered, once, in queue order");
    assert!(
        d.replies.len() >= 4,
        "split across messages: {} replies",
        d.replies.len()
    );
    for r in &d.replies {
        assert!(
            r.raw.len() <= 2000,
            "reply of {} bytes exceeds MaxMsgSize",
            r.raw.len()
        );
    }
    assert!(commands(&srv, &d.device_id)
        .await
        .iter()
        .all(|c| c["state"] == "done"));
    srv.stop().await;
}

#[tokio::test]
async fn commands_sent_without_an_answer_go_out_again_next_session() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 4).await;
    queue(&srv, &d.device_id, json!({"verb": "Exec", "target": "./Vendor/MSFT/Reboot/RebootNow", "format": "null", "command_id": "reboot"})).await;
    // Session 1: the device receives the command but never answers (connection lost).
    let r = d.post(&d.first_package(1, "")).await;
    let reply = Reply::parse(&r.text());
    assert_eq!(reply.commands.len(), 1);
    let c = &commands(&srv, &d.device_id).await[0];
    assert_eq!(c["state"], "sent");
    // A retransmission of the same message gets the same reply and changes nothing.
    let r2 = d.post(&d.first_package(1, "")).await;
    assert_eq!(r2.text(), r.text());
    assert_eq!(commands(&srv, &d.device_id).await[0]["send_count"], 1);
    // Session 2: it goes out again, is answered, and is then done.
    let mut d = d;
    d.next_session = 2;
    let got = d.session().await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].target.as_deref(),
        Some("./Vendor/MSFT/Reboot/RebootNow")
    );
    let c = &commands(&srv, &d.device_id).await[0];
    assert_eq!(
        (c["state"].clone(), c["send_count"].clone()),
        (json!("done"), json!(2))
    );
    assert!(d.session().await.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn user_scoped_commands_wait_for_a_signed_in_user() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 5).await;
    queue(&srv, &d.device_id, json!({"verb": "Replace", "target": "./User/Vendor/MSFT/Policy/Config/Start/HideSleep", "format": "int", "data": "1", "command_id": "user-1"})).await;
    queue(&srv, &d.device_id, json!({"verb": "Replace", "target": "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera", "format": "int", "data": "0", "command_id": "dev-1"})).await;
    d.login_status = "others".into();
    let got = d.session().await;
    assert_eq!(
        got.iter()
            .map(|c| c.target.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera"]
    );
    let held = commands(&srv, &d.device_id)
        .await
        .into_iter()
        .find(|c| c["command_id"] == "user-1")
        .unwrap();
    assert_eq!(held["state"], "pending");
    d.login_status = "user".into();
    let got = d.session().await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].target.as_deref(),
        Some("./User/Vendor/MSFT/Policy/Config/Start/HideSleep")
    );
    srv.stop().await;
}

#[tokio::test]
async fn unenroll_alert_unenrolls_and_revokes_with_and_without_metinf() {
    for (n, alert) in [
        (
            6,
            r#"<Alert><CmdID>5</CmdID><Data>1226</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft:mdm.unenrollment.userrequest</Type><Format xmlns="syncml:metinf">int</Format></Meta><Data>1</Data></Item></Alert>"#,
        ),
        (
            7,
            r#"<Alert><CmdID>5</CmdID><Data>1226</Data><Item><Meta xmlns=""><Type>com.microsoft:mdm.unenrollment.userrequest</Type></Meta><Source><LocURI></LocURI></Source><Data>1</Data></Item></Alert>"#,
        ),
    ] {
        let srv = TestServer::start().await;
        let mut d = enrolled(&srv, n).await;
        queue(
            &srv,
            &d.device_id,
            json!({"verb": "Get", "target": "./DevDetail/SwV"}),
        )
        .await;
        let got = d.session_with(alert).await;
        assert!(
            got.is_empty(),
            "nothing is sent to a device that unenrolls: {got:?}"
        );
        let (_, dev) = srv
            .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
            .await;
        assert_eq!(dev["state"], "unenrolled", "variant {n}");
        assert_eq!(
            dev["alerts"][0]["alert_type"],
            "com.microsoft:mdm.unenrollment.userrequest"
        );
        let serial = dev["cert_serial"].as_str().unwrap();
        assert!(srv
            .app
            .store
            .get_cert(serial)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some());
        // The certificate no longer opens a session.
        let r = d.post(&d.first_package(99, "")).await;
        assert_eq!(r.status, 403);
        srv.stop().await;
    }
}

#[tokio::test]
async fn restart_mid_session_continues_the_queue() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 8).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "g1"}),
    )
    .await;
    let r = d.post(&d.first_package(1, "")).await;
    let reply = Reply::parse(&r.text());
    let get = &reply.commands[0];
    let srv = srv.restart().await;
    let d = ManagedDevice {
        client: crate::support::Client::new(srv.addr, d.client_root(), d.client_identity()),
        ..d
    };
    let msg2 = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Status><CmdID>1</CmdID><MsgRef>{m}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status><Status><CmdID>2</CmdID><MsgRef>{m}</MsgRef><CmdRef>{c}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status><Results><CmdID>3</CmdID><MsgRef>{m}</MsgRef><CmdRef>{c}</CmdRef><Item><Source><LocURI>./DevDetail/SwV</LocURI></Source><Data>10.0.1</Data></Item></Results><Final/></SyncBody></SyncML>"#,
        hdr(1, 2, &d.device_id, None),
        m = reply.msg_id,
        c = get.cmd_id
    );
    let r = d.post(&msg2).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let reply2 = Reply::parse(&r.text());
    assert_eq!(reply2.msg_id, "2", "server MsgID continues after restart");
    let c = &commands(&srv, &d.device_id).await[0];
    assert_eq!(c["state"], "done");
    assert_eq!(c["results"][0]["data"], "10.0.1");
    srv.stop().await;
}

#[tokio::test]
async fn large_object_from_the_device_is_reassembled() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 9).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/Ext/DeviceHardwareData", "command_id": "hw"}),
    )
    .await;
    let r = Reply::parse(&d.post(&d.first_package(1, "")).await.text());
    let c = r.commands[0].cmd_id.clone();
    let whole = "ABCDEFGHIJ".repeat(50);
    let (a, b) = whole.split_at(200);
    let m = r.msg_id.clone();
    let chunk1 = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Status><CmdID>1</CmdID><MsgRef>{m}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status><Status><CmdID>2</CmdID><MsgRef>{m}</MsgRef><CmdRef>{c}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status><Results><CmdID>3</CmdID><MsgRef>{m}</MsgRef><CmdRef>{c}</CmdRef><Item><Source><LocURI>./DevDetail/Ext/DeviceHardwareData</LocURI></Source><Meta><Size xmlns="syncml:metinf">{n}</Size></Meta><Data>{a}</Data><MoreData/></Item></Results></SyncBody></SyncML>"#,
        hdr(1, 2, &d.device_id, None),
        n = whole.len()
    );
    let r2 = Reply::parse(&d.post(&chunk1).await.text());
    assert!(
        r2.statuses.iter().any(|s| s.1 == "Results" && s.2 == "213"),
        "213 for a chunk: {}",
        r2.raw
    );
    assert!(
        r2.commands
            .iter()
            .any(|c| c.verb == "Alert" && c.data.as_deref() == Some("1222")),
        "asks for the next message: {}",
        r2.raw
    );
    let m = r2.msg_id.clone();
    let chunk2 = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Status><CmdID>1</CmdID><MsgRef>{m}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status><Results><CmdID>2</CmdID><MsgRef>{m}</MsgRef><CmdRef>{c}</CmdRef><Item><Source><LocURI>./DevDetail/Ext/DeviceHardwareData</LocURI></Source><Data>{b}</Data></Item></Results><Final/></SyncBody></SyncML>"#,
        hdr(1, 3, &d.device_id, None)
    );
    let r3 = Reply::parse(&d.post(&chunk2).await.text());
    assert!(
        r3.statuses.iter().any(|s| s.1 == "Results" && s.2 == "200"),
        "{}",
        r3.raw
    );
    let cmd = &commands(&srv, &d.device_id).await[0];
    assert_eq!(
        cmd["results"][0]["data"].as_str().map(str::len),
        Some(whole.len())
    );
    assert_eq!(cmd["results"][0]["data"], whole.as_str());
    srv.stop().await;
}

#[tokio::test]
async fn admin_command_api_validates_and_cancels() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 10).await;
    let dev = d.device_id.clone();
    for bad in [
        json!({"verb": "Replace"}),
        json!({"verb": "Frobnicate", "target": "./a"}),
        json!({"verb": "Get", "target": "/abs"}),
        json!({"syncml": "<Replace><CmdID>1</CmdID></Replace>"}),
        json!({"syncml": "<oops"}),
        json!({"verb": "Get", "target": "./a", "colour": "red"}),
    ] {
        let (st, body) = srv
            .admin(
                "POST",
                &format!("/api/v1/devices/{dev}/commands"),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(st, 400, "{bad} → {body}");
    }
    let (st, _) = srv
        .admin(
            "POST",
            "/api/v1/devices/NOPE/commands",
            Some(json!({"verb": "Get", "target": "./a"})),
        )
        .await;
    assert_eq!(st, 404);
    let a = queue(&srv, &dev, json!({"syncml": "<Atomic><CmdID>77</CmdID><Replace><CmdID>78</CmdID><Item><Target><LocURI>./Vendor/MSFT/A</LocURI></Target><Data>&lt;enabled/&gt;</Data></Item></Replace><Replace><CmdID>79</CmdID><Item><Target><LocURI>./Vendor/MSFT/B</LocURI></Target><Data><![CDATA[<data id=\"x\" value=\"1&2\"/>]]></Data></Item></Replace></Atomic>"})).await;
    let b = queue(
        &srv,
        &dev,
        json!({"verb": "Get", "target": "./DevDetail/SwV"}),
    )
    .await;
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/devices/{dev}/commands/{b}"),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/devices/{dev}/commands/{b}"),
            None,
        )
        .await;
    assert_eq!(st, 409, "already cancelled");
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/devices/{dev}/commands/unknown"),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let mut d = d;
    let got = d.session().await;
    assert_eq!(
        got.iter().map(|c| c.verb.as_str()).collect::<Vec<_>>(),
        vec!["Atomic", "Replace", "Replace"]
    );
    assert_eq!(
        got[1].data.as_deref(),
        Some("<enabled/>"),
        "escaped XML arrives as the admin meant it"
    );
    assert_eq!(
        got[2].data.as_deref(),
        Some("<data id=\"x\" value=\"1&2\"/>")
    );
    let cmds = commands(&srv, &dev).await;
    assert_eq!(
        cmds.iter().find(|c| c["command_id"] == a.as_str()).unwrap()["state"],
        "done"
    );
    queue(
        &srv,
        &dev,
        json!({"verb": "Get", "target": "./DevDetail/SwV"}),
    )
    .await;
    queue(
        &srv,
        &dev,
        json!({"verb": "Get", "target": "./DevDetail/OEM"}),
    )
    .await;
    let (st, body) = srv
        .admin("DELETE", &format!("/api/v1/devices/{dev}/commands"), None)
        .await;
    assert_eq!((st, body["cancelled"].clone()), (200, json!(2)));
    assert!(
        d.session().await.is_empty(),
        "a cleared queue delivers nothing"
    );
    srv.stop().await;
}

#[tokio::test]
async fn throttled_devices_get_429_with_retry_after() {
    let srv = TestServer::start_with(|o| {
        o.management_rate = Some(1);
        o.retry_after = Some(120);
    })
    .await;
    let d = enrolled(&srv, 11).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "g"}),
    )
    .await;
    let first = d.post(&d.first_package(1, "")).await;
    assert_eq!(first.status, 200);
    let second = d.post(&d.first_package(2, "")).await;
    assert_eq!(second.status, 429);
    assert_eq!(
        second
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("120")
    );
    // A throttled request changes nothing: the command was sent once, in the first session.
    assert_eq!(commands(&srv, &d.device_id).await[0]["send_count"], 1);
    srv.stop().await;
}

#[tokio::test]
async fn a_command_larger_than_max_msg_size_goes_as_a_large_object() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 12).await;
    // An ADMX-style payload with characters that need escaping, ~9 KB.
    let big: String = (0..300)
        .map(|i| format!("<data id=\"k{i}\" value=\"a&b\"/>"))
        .collect();
    queue(&srv, &d.device_id, json!({"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/Big/Blob", "format": "chr", "data": big, "command_id": "big"})).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "after"}),
    )
    .await;
    d.max_msg_size = Some(3000);
    let got = d.session().await;
    let chunks: Vec<_> = got
        .iter()
        .filter(|c| c.target.as_deref() == Some("./Vendor/MSFT/Policy/Config/Big/Blob"))
        .collect();
    assert!(chunks.len() >= 4, "sent in {} chunks", chunks.len());
    assert_eq!(
        chunks[0].size.as_deref(),
        Some(big.len().to_string().as_str()),
        "first chunk declares the size"
    );
    assert!(
        chunks[..chunks.len() - 1].iter().all(|c| c.more_data),
        "MoreData on all but the last"
    );
    assert!(!chunks[chunks.len() - 1].more_data);
    assert_eq!(
        d.assembled.get("./Vendor/MSFT/Policy/Config/Big/Blob"),
        Some(&big),
        "device reassembles exactly the data"
    );
    for r in &d.replies {
        assert!(
            r.raw.len() <= 3000,
            "reply of {} bytes exceeds MaxMsgSize",
            r.raw.len()
        );
    }
    assert_eq!(
        got.last().and_then(|c| c.target.as_deref()),
        Some("./DevDetail/SwV"),
        "the queue continues after the object"
    );
    let cmds = commands(&srv, &d.device_id).await;
    assert!(
        cmds.iter()
            .all(|c| c["state"] == "done" && c["status"] == 200),
        "{cmds:?}"
    );
    assert!(d.session().await.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn one_command_for_many_devices_in_one_request() {
    let srv = TestServer::start().await;
    let mut a = enrolled(&srv, 13).await;
    let mut b = enrolled(&srv, 14).await;
    let ids = json!([a.device_id, b.device_id, "UNKNOWNDEVICE"]);
    let (st, body) = srv.admin("POST", "/api/v1/commands", Some(json!({"device_ids": ids, "verb": "Replace", "target": "./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE", "format": "bool", "data": "true", "command_id": "fleet-tl"}))).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["results"][&a.device_id]["command_id"], "fleet-tl");
    assert_eq!(body["results"][&a.device_id]["existing"], false);
    assert_eq!(
        body["results"]["UNKNOWNDEVICE"]["error"],
        "device not found"
    );
    // Repeating the request queues nothing new.
    let (_, again) = srv.admin("POST", "/api/v1/commands", Some(json!({"device_ids": [a.device_id], "verb": "Replace", "target": "./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE", "format": "bool", "data": "true", "command_id": "fleet-tl"}))).await;
    assert_eq!(again["results"][&a.device_id]["existing"], true);
    for d in [&mut a, &mut b] {
        let got = d.session().await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].data.as_deref(), Some("true"));
    }
    for bad in [
        json!({"verb": "Get", "target": "./a"}),
        json!({"device_ids": [], "verb": "Get", "target": "./a"}),
        json!({"device_ids": ["x"], "verb": "Get", "target": "./a", "bogus": 1}),
        json!({"device_ids": ["x"], "verb": "Get"}),
    ] {
        let (st, body) = srv
            .admin("POST", "/api/v1/commands", Some(bad.clone()))
            .await;
        assert_eq!(st, 400, "{bad} → {body}");
    }
    srv.stop().await;
}

/// On the embedded store a management round runs on its request's task and waits for its
/// commit without a thread of its own: with the blocking pool's only thread taken, a device
/// still gets its command and answers it (two durable commits).
#[test]
fn rounds_need_no_blocking_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let srv = TestServer::start().await;
        if srv.app.metrics.commit_stats().is_none() {
            eprintln!("SKIP rounds_need_no_blocking_thread: not on the embedded store");
            return;
        }
        let mut d = enrolled(&srv, 42).await;
        assert!(d.session().await.is_empty());
        // A command whose answer changes nothing group membership depends on (group changes
        // are evaluated on the blocking pool after the round).
        queue(
            &srv,
            &d.device_id,
            json!({"verb": "Replace", "target": "./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE", "format": "bool", "data": "true"}),
        )
        .await;
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (taken, is_taken) = tokio::sync::oneshot::channel::<()>();
        let blocker = tokio::task::spawn_blocking(move || {
            let _ = taken.send(());
            let _ = held.recv_timeout(std::time::Duration::from_secs(60));
        });
        is_taken.await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(15), d.session()).await;
        release.send(()).ok();
        blocker.await.unwrap();
        let got = got.expect("the session must not wait for a blocking thread");
        assert_eq!(got.len(), 1, "{got:?}");
        let cmds = commands(&srv, &d.device_id).await;
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0]["state"], "done", "{cmds:?}");
        srv.stop().await;
    });
}

/// A session with nothing to do does not wait for the disk (its round is lazy, see
/// `Round::lazy_sync`); the first session (new inventory), a session delivering a command and
/// the one answering it do. Embedded store only (PostgreSQL commits every round alike).
#[tokio::test]
async fn only_empty_check_ins_skip_the_sync() {
    let srv = TestServer::start().await;
    let Some(_) = srv.app.metrics.commit_stats() else {
        eprintln!("SKIP only_empty_check_ins_skip_the_sync: not on the embedded store");
        return;
    };
    let stats = || srv.app.metrics.commit_stats().unwrap_or_default();
    let mut d = enrolled(&srv, 40).await;
    let s0 = stats();
    assert!(d.session().await.is_empty());
    let s1 = stats();
    assert_eq!(
        s1.lazy_writes, s0.lazy_writes,
        "the first session records the inventory: {s1:?}"
    );
    // The same inventory again, nothing queued: a lazy round.
    assert!(d.session().await.is_empty());
    let s2 = stats();
    assert_eq!(
        s2.lazy_writes - s1.lazy_writes,
        1,
        "an empty check-in does not ask to wait for the disk: {s2:?}"
    );
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    assert!(dev["last_seen"].is_number(), "and is visible at once");
    // A command: delivered in one round, answered in the next; both wait for the disk.
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV"}),
    )
    .await;
    let s3 = stats();
    assert_eq!(d.session().await.len(), 1);
    let s4 = stats();
    assert_eq!(
        s4.lazy_writes, s3.lazy_writes,
        "delivering and answering are durable: {s4:?}"
    );
    srv.stop().await;
}
