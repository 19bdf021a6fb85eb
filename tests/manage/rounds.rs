//! Session lifecycle over HTTPS, as the device speaks it (raw SyncML): retransmissions, late
//! duplicates, out-of-order MsgIDs, a device that restarts or re-enrolls mid-session, and
//! overlapping sessions of one device (issues 20 and 23). See also `rounds_random` for the
//! seeded concurrency schedule.

use serde_json::json;

use super::{commands, enrolled, post_ok, queue};
use crate::support::device::{self, DeviceInfo};
use crate::support::mdm_device::{hdr, ManagedDevice, Reply};
use crate::support::{HttpResponse, TestServer};

/// A device message: `SyncHdr` for (session, msg) then `body`, with or without `Final`.
pub fn message(d: &ManagedDevice, session: u32, msg: u32, body: &str, is_final: bool) -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody>{body}{}</SyncBody></SyncML>"#,
        hdr(session, msg, &d.device_id, d.max_msg_size),
        if is_final { "<Final/>" } else { "" }
    )
}

/// `Status` for a server command.
pub fn status(id: u32, server_msg: &str, cmd_ref: &str, cmd: &str, code: u16) -> String {
    format!(
        r#"<Status><CmdID>{id}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>{cmd_ref}</CmdRef><Cmd>{cmd}</Cmd><Data>{code}</Data></Status>"#
    )
}

/// `Results` for a Get.
pub fn results(id: u32, server_msg: &str, cmd_ref: &str, uri: &str, value: &str) -> String {
    format!(
        r#"<Results><CmdID>{id}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>{cmd_ref}</CmdRef><Item><Source><LocURI>{uri}</LocURI></Source><Data>{value}</Data></Item></Results>"#
    )
}

/// A generic alert (1226) carrying `token` as its data.
pub fn generic_alert(id: u32, token: &str) -> String {
    format!(
        r#"<Alert><CmdID>{id}</CmdID><Data>1226</Data><Item><Source><LocURI>./Vendor/MSFT/Test</LocURI></Source><Meta><Type xmlns="syncml:metinf">com.example.test</Type></Meta><Data>{token}</Data></Item></Alert>"#
    )
}

/// Answers every command of `reply` with 200 (and Results for Gets), as the device does.
pub fn answers(reply: &Reply) -> String {
    let mut b = status(1, &reply.msg_id, "0", "SyncHdr", 200);
    let mut id = 1;
    for c in reply.commands.iter().filter(|c| c.verb != "Alert") {
        id += 1;
        b.push_str(&status(id, &reply.msg_id, &c.cmd_id, &c.verb, 200));
        if c.verb == "Get" {
            id += 1;
            let t = c.target.clone().unwrap_or_default();
            b.push_str(&results(id, &reply.msg_id, &c.cmd_id, &t, "v"));
        }
    }
    b
}

async fn command(srv: &TestServer, dev: &str, id: &str) -> serde_json::Value {
    commands(srv, dev)
        .await
        .into_iter()
        .find(|c| c["command_id"] == id)
        .unwrap_or_else(|| panic!("command {id} listed"))
}

async fn device_json(srv: &TestServer, dev: &str) -> serde_json::Value {
    let (st, body) = srv
        .admin("GET", &format!("/api/v1/devices/{dev}"), None)
        .await;
    assert_eq!(st, 200, "{body}");
    body
}

fn targets(r: &Reply) -> Vec<String> {
    r.commands.iter().filter_map(|c| c.target.clone()).collect()
}

// Issue 20, finding 1.
#[tokio::test]
async fn after_re_enrollment_package_1_is_processed_not_answered_from_the_old_session() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 301).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/Old/Setting", "format": "int", "data": "1", "command_id": "old-replace"}),
    )
    .await;
    let first = post_ok(&d, &d.first_package(1, "")).await;
    assert_eq!(
        targets(&first),
        vec!["./Vendor/MSFT/Policy/Config/Old/Setting"]
    );
    // Never answered: the device is reset and enrolls again; Windows restarts SessionIDs at 1.
    let e = device::enroll(
        &srv.client(),
        &DeviceInfo::new(301, "user301@example.com", "pw-123456"),
    )
    .await;
    assert_eq!(e.device_id, d.device_id);
    let mut d2 = ManagedDevice::new(&srv, &e);
    d2.login_status = "others".into();
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "new-get"}),
    )
    .await;
    let again = post_ok(&d2, &d2.first_package(1, "")).await;
    assert_ne!(again.raw, first.raw, "not the old session's stored reply");
    assert!(
        targets(&again).contains(&"./DevDetail/SwV".to_string()),
        "the Get queued after re-enrollment goes out: {}",
        again.raw
    );
    assert_eq!(
        device_json(&srv, &d.device_id).await["login_status"],
        "others",
        "the new package 1 was applied"
    );
}

// Issue 20, finding 2.
#[tokio::test]
async fn a_retransmitted_final_message_gets_the_identical_reply() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 302).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "g1"}),
    )
    .await;
    let r1 = post_ok(&d, &d.first_package(5, "")).await;
    assert_eq!(r1.commands.len(), 1);
    let last = message(&d, 5, 2, &answers(&r1), true);
    let r2 = post_ok(&d, &last).await;
    assert!(r2.commands.is_empty(), "nothing more: the session ends");
    // A command queued now must not go out under SessionID 5 with a CmdID already used there.
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/A/B", "format": "int", "data": "1", "command_id": "r1"}),
    )
    .await;
    // The reply was lost; Windows sends its final message again.
    let again = d.post(&last).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.text(), r2.raw, "byte-identical reply");
    let c = command(&srv, &d.device_id, "r1").await;
    assert_eq!(c["state"], "pending", "{c}");
    assert_eq!(command(&srv, &d.device_id, "g1").await["state"], "done");
    // The next session delivers it.
    d.next_session = 6;
    let got = d.session().await;
    assert_eq!(got.len(), 1);
    assert_eq!(command(&srv, &d.device_id, "r1").await["state"], "done");
}

// Issue 20, finding 8.
#[tokio::test]
async fn late_and_skipped_msg_ids_are_refused_and_never_applied_twice() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 303).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "g"}),
    )
    .await;
    let r1 = post_ok(&d, &d.first_package(3, "")).await;
    let get = r1.commands[0].cmd_id.clone();
    // Message 2: the Status and Results of the Get, package not final (more to come).
    let m2 = message(
        &d,
        3,
        2,
        &format!(
            "{}{}{}",
            status(1, &r1.msg_id, "0", "SyncHdr", 200),
            status(2, &r1.msg_id, &get, "Get", 200),
            results(3, &r1.msg_id, &get, "./DevDetail/SwV", "10.0.1")
        ),
        false,
    );
    let r2 = post_ok(&d, &m2).await;
    // Message 4 before 3: a MsgID that skips one is refused and changes nothing.
    let m4 = message(&d, 3, 4, &generic_alert(2, "four"), true);
    assert!(refused(&d.post(&m4).await));
    let m3 = message(
        &d,
        3,
        3,
        &format!(
            "{}{}",
            status(1, &r2.msg_id, "0", "SyncHdr", 200),
            generic_alert(2, "three")
        ),
        true,
    );
    let r3 = post_ok(&d, &m3).await;
    assert_ne!(r3.msg_id, r2.msg_id);
    // A late copy of message 2 arrives: refused, its Results are not added again.
    assert!(refused(&d.post(&m2).await));
    let c = command(&srv, &d.device_id, "g").await;
    assert_eq!(c["results"].as_array().map(Vec::len), Some(1), "{c}");
    let dev = device_json(&srv, &d.device_id).await;
    let tokens: Vec<_> = dev["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["data"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(tokens, vec!["three"], "message 4 was never applied");
}

// Issue 23, finding 1 (deterministic interleaving; the random schedule is in `rounds_random`).
#[tokio::test]
async fn an_older_overlapping_session_is_wound_down_and_loses_nothing() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 304).await;
    for i in 0..6 {
        queue(
            &srv,
            &d.device_id,
            json!({"verb": "Replace", "target": format!("./Vendor/MSFT/Policy/Config/T/N{i}"), "format": "int", "data": "1", "command_id": format!("c{i}")}),
        )
        .await;
    }
    let a1 = post_ok(&d, &d.first_package(10, "")).await;
    assert_eq!(a1.commands.len(), 6);
    // The device starts another session while the first is still in flight.
    let b1 = post_ok(&d, &d.first_package(11, "")).await;
    assert_eq!(b1.commands.len(), 6, "unanswered commands go out again");
    // The older session answers: its Statuses count, but it gets nothing new and ends.
    let a2 = post_ok(&d, &message(&d, 10, 2, &answers(&a1), true)).await;
    assert_eq!(a2.msg_id, "2", "MsgID never reused within a SessionID");
    assert!(a2.commands.is_empty(), "{}", a2.raw);
    for c in commands(&srv, &d.device_id).await {
        assert_eq!(c["state"], "done", "{c}");
    }
    // The newer session's answers for the same commands change nothing, and it ends.
    let b2 = post_ok(&d, &message(&d, 11, 2, &answers(&b1), true)).await;
    assert!(b2.commands.is_empty());
    d.next_session = 12;
    assert!(d.session().await.is_empty(), "nothing left behind");
    for c in commands(&srv, &d.device_id).await {
        assert_eq!(
            (c["state"].clone(), c["send_count"].clone()),
            (json!("done"), json!(2))
        );
    }
}

// Issue 23, finding 2.
#[tokio::test]
async fn a_late_copy_of_a_middle_message_does_not_end_the_live_session() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 305).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "g1"}),
    )
    .await;
    let r1 = post_ok(&d, &d.first_package(20, "")).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/OEM", "command_id": "g2"}),
    )
    .await;
    let m2 = message(
        &d,
        20,
        2,
        &format!("{}{}", answers(&r1), generic_alert(10, "m2")),
        true,
    );
    let r2 = post_ok(&d, &m2).await;
    assert_eq!(targets(&r2), vec!["./DevDetail/OEM"]);
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/X/Y", "format": "int", "data": "1", "command_id": "r"}),
    )
    .await;
    let r3 = post_ok(&d, &message(&d, 20, 3, &answers(&r2), true)).await;
    assert_eq!(targets(&r3), vec!["./Vendor/MSFT/Policy/Config/X/Y"]);
    // The delayed copy of message 2.
    assert_eq!(d.post(&m2).await.status, 409);
    let r4 = post_ok(&d, &message(&d, 20, 4, &answers(&r3), true)).await;
    assert_eq!(r4.msg_id, "4", "the live session goes on");
    assert!(r4.commands.is_empty());
    let r = command(&srv, &d.device_id, "r").await;
    assert_eq!(
        (r["state"].clone(), r["send_count"].clone()),
        (json!("done"), json!(1))
    );
    let g1 = command(&srv, &d.device_id, "g1").await;
    assert_eq!(g1["results"].as_array().map(Vec::len), Some(1));
    let alerts = device_json(&srv, &d.device_id).await["alerts"].clone();
    assert_eq!(alerts.as_array().map(Vec::len), Some(1), "{alerts}");
}

// Issue 23, finding 3.
#[tokio::test]
async fn a_late_copy_of_the_previous_sessions_final_message_leaves_the_current_one_alone() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 306).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "g"}),
    )
    .await;
    let a1 = post_ok(&d, &d.first_package(30, "")).await;
    let a_final = message(&d, 30, 2, &answers(&a1), true);
    let a2 = post_ok(&d, &a_final).await;
    assert!(a2.commands.is_empty());
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/X/Y", "format": "int", "data": "1", "command_id": "r"}),
    )
    .await;
    let b1 = post_ok(&d, &d.first_package(31, "")).await;
    assert_eq!(targets(&b1), vec!["./Vendor/MSFT/Policy/Config/X/Y"]);
    // The previous session's final message arrives again, late: it gets its own reply.
    let late = d.post(&a_final).await;
    assert_eq!(late.status, 200);
    assert_eq!(late.text(), a2.raw);
    let b2 = post_ok(&d, &message(&d, 31, 2, &answers(&b1), true)).await;
    assert_eq!(b2.msg_id, "2");
    assert!(b2.commands.is_empty(), "{}", b2.raw);
    let r = command(&srv, &d.device_id, "r").await;
    assert_eq!(
        (r["state"].clone(), r["send_count"].clone()),
        (json!("done"), json!(1))
    );
}

// Issue 23, finding 4.
#[tokio::test]
async fn a_duplicated_213_does_not_skip_a_chunk_of_a_large_object() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 307).await;
    d.max_msg_size = Some(4096);
    let data: String = (0..14_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let target = "./Vendor/MSFT/Policy/Config/Big/Blob";
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Replace", "target": target, "format": "chr", "data": data, "command_id": "big"}),
    )
    .await;
    let mut reply = post_ok(&d, &d.first_package(40, "")).await;
    let mut got = String::new();
    let mut sent: Vec<String> = Vec::new();
    for msg in 2..40 {
        let Some(c) = reply.commands.iter().find(|c| c.verb == "Replace") else {
            break;
        };
        got.push_str(c.data.as_deref().unwrap_or(""));
        let code = if c.more_data { 213 } else { 200 };
        let mut body = status(1, &reply.msg_id, "0", "SyncHdr", 200);
        body.push_str(&status(2, &reply.msg_id, &c.cmd_id, "Replace", code));
        let m = message(&d, 40, msg, &body, true);
        reply = post_ok(&d, &m).await;
        if msg == 3 {
            // A network copy of message 2 (the 213 for the first chunk) arrives late; whatever
            // its answer, the device never sees it.
            d.post(&sent[0]).await;
        }
        sent.push(m);
    }
    assert_eq!(got.len(), data.len(), "the device got every chunk");
    assert_eq!(got, data);
    let c = command(&srv, &d.device_id, "big").await;
    assert_eq!(c["state"], "done", "{c}");
}

/// A message that acknowledges an earlier chunk again (same CmdID) does not move the send
/// position: the command is not reported done with data missing.
#[tokio::test]
async fn a_213_for_an_earlier_chunk_does_not_advance_the_large_object() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 308).await;
    d.max_msg_size = Some(4096);
    let data = "x".repeat(14_000);
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/Big/Blob", "format": "chr", "data": data, "command_id": "big"}),
    )
    .await;
    let r1 = post_ok(&d, &d.first_package(41, "")).await;
    let c1 = r1.commands[0].cmd_id.clone();
    let ack = |server_msg: &str, cmd: &str| {
        format!(
            "{}{}",
            status(1, server_msg, "0", "SyncHdr", 200),
            status(2, server_msg, cmd, "Replace", 213)
        )
    };
    let r2 = post_ok(&d, &message(&d, 41, 2, &ack(&r1.msg_id, &c1), true)).await;
    assert_eq!(r2.commands.len(), 1, "second chunk");
    // The device's next message acknowledges chunk 1 again instead of chunk 2.
    let r3 = post_ok(&d, &message(&d, 41, 3, &ack(&r2.msg_id, &c1), true)).await;
    assert!(
        r3.commands.is_empty(),
        "no third chunk without the second acknowledged: {}",
        r3.raw
    );
    let c = command(&srv, &d.device_id, "big").await;
    assert_ne!(c["state"], "done", "{c}");
    // The next session sends the whole object again.
    d.next_session = 42;
    d.session().await;
    assert_eq!(
        d.assembled.get("./Vendor/MSFT/Policy/Config/Big/Blob"),
        Some(&data)
    );
    assert_eq!(command(&srv, &d.device_id, "big").await["state"], "done");
}

// Issue 23, finding 5.
#[tokio::test]
async fn a_new_package_1_reusing_session_and_msg_id_is_processed() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 309).await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Replace", "target": "./User/Vendor/MSFT/Policy/Config/U/V", "format": "int", "data": "1", "command_id": "user"}),
    )
    .await;
    d.login_status = "others".into();
    let first = post_ok(&d, &d.first_package(50, "")).await;
    assert!(first.commands.is_empty(), "no user signed in yet");
    // The device reboots mid-session and starts again: same SessionID and MsgID, new content.
    d.login_status = "user".into();
    let second = post_ok(&d, &d.first_package(50, &generic_alert(9, "after-reboot"))).await;
    assert_ne!(second.raw, first.raw, "not the cached reply");
    assert_ne!(
        second.msg_id, first.msg_id,
        "our MsgID is never reused in SessionID 50"
    );
    assert_eq!(
        targets(&second),
        vec!["./User/Vendor/MSFT/Policy/Config/U/V"]
    );
    let dev = device_json(&srv, &d.device_id).await;
    assert_eq!(dev["login_status"], "user");
    assert_eq!(dev["alerts"][0]["data"], "after-reboot");
    // A byte-identical copy of the new package 1 is a retransmission: same reply.
    let again = d
        .post(&d.first_package(50, &generic_alert(9, "after-reboot")))
        .await;
    assert_eq!(again.text(), second.raw);
}

/// What a refused message looks like on the wire: 409 and no body.
pub fn refused(r: &HttpResponse) -> bool {
    r.status == 409 && r.body.is_empty()
}
