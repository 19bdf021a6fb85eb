//! What a command's record says and how big server messages are (issue 20 findings 3-7, issue 13
//! finding 6): inner statuses of Sequence/Atomic, 214/215/216, MaxMsgSize for every reply,
//! Alert 1225, lost Results, and bounded Results and sessions.

use serde_json::{json, Value};

use super::{commands, enrolled, post_ok, queue};
use crate::support::mdm_device::{hdr, ManagedDevice, Received, Reply};
use crate::support::TestServer;

/// A device message answering every command of `r` (but Alerts) with `code(cmd)`, plus `extra`.
#[allow(clippy::too_many_arguments)]
fn answer(
    d: &ManagedDevice,
    session: u32,
    msg: u32,
    max: Option<u32>,
    r: &Reply,
    code: impl Fn(&Received) -> u16,
    extra: &str,
    fin: bool,
) -> String {
    let m = &r.msg_id;
    let mut b = format!(
        r#"<Status><CmdID>1</CmdID><MsgRef>{m}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>"#
    );
    let mut id = 1;
    for c in r.commands.iter().filter(|c| c.verb != "Alert") {
        id += 1;
        b.push_str(&format!(
            r#"<Status><CmdID>{id}</CmdID><MsgRef>{m}</MsgRef><CmdRef>{}</CmdRef><Cmd>{}</Cmd><Data>{}</Data></Status>"#,
            c.cmd_id,
            c.verb,
            code(c)
        ));
    }
    b.push_str(extra);
    if fin {
        b.push_str("<Final/>");
    }
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody>{b}</SyncBody></SyncML>"#,
        hdr(session, msg, &d.device_id, max)
    )
}

fn by<'a>(cmds: &'a [Value], id: &str) -> &'a Value {
    cmds.iter()
        .find(|c| c["command_id"] == id)
        .unwrap_or_else(|| panic!("no command {id} in {cmds:?}"))
}

fn code_by_target<'a>(codes: &'a [(&'a str, u16)]) -> impl Fn(&Received) -> u16 + 'a {
    move |c: &Received| match (c.verb.as_str(), c.target.as_deref()) {
        ("Atomic", _) => codes
            .iter()
            .find(|(t, _)| *t == "Atomic")
            .map_or(200, |x| x.1),
        ("Sequence", _) => codes
            .iter()
            .find(|(t, _)| *t == "Sequence")
            .map_or(200, |x| x.1),
        (_, Some(t)) => codes.iter().find(|(x, _)| *x == t).map_or(200, |x| x.1),
        _ => 200,
    }
}

const SEQ_OK: &str = "./Vendor/MSFT/Policy/Config/Seq/Ok";
const SEQ_MISSING: &str = "./Vendor/MSFT/Policy/Config/Seq/Missing";
const AT_ONE: &str = "./Vendor/MSFT/Policy/Config/Atom/One";
const AT_BAD: &str = "./Vendor/MSFT/Policy/Config/Atom/Bad";

fn replace(id: u32, target: &str) -> String {
    format!(
        r#"<Replace><CmdID>{id}</CmdID><Item><Target><LocURI>{target}</LocURI></Target><Meta><Format xmlns="syncml:metinf">int</Format></Meta><Data>1</Data></Item></Replace>"#
    )
}

#[tokio::test]
async fn failures_inside_a_sequence_or_an_atomic_are_recorded_per_command() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 40).await;
    let seq = format!(
        "<Sequence><CmdID>1</CmdID>{}{}</Sequence>",
        replace(2, SEQ_OK),
        replace(3, SEQ_MISSING)
    );
    let atomic = format!(
        "<Atomic><CmdID>1</CmdID>{}{}</Atomic>",
        replace(2, AT_ONE),
        replace(3, AT_BAD)
    );
    queue(
        &srv,
        &d.device_id,
        json!({"syncml": seq, "command_id": "seq"}),
    )
    .await;
    queue(
        &srv,
        &d.device_id,
        json!({"syncml": atomic, "command_id": "atomic"}),
    )
    .await;
    let r = post_ok(&d, &d.first_package(1, "")).await;
    let verbs: Vec<&str> = r.commands.iter().map(|c| c.verb.as_str()).collect();
    assert_eq!(
        verbs,
        ["Sequence", "Replace", "Replace", "Atomic", "Replace", "Replace"]
    );
    let codes = [
        ("Sequence", 200),
        (SEQ_MISSING, 404),
        ("Atomic", 507),
        (AT_ONE, 216),
        (AT_BAD, 500),
    ];
    let last = post_ok(
        &d,
        &answer(&d, 1, 2, None, &r, code_by_target(&codes), "", true),
    )
    .await;
    assert!(last.commands.is_empty(), "{}", last.raw);

    let cmds = commands(&srv, &d.device_id).await;
    let s = by(&cmds, "seq");
    assert_eq!(
        s["state"], "failed",
        "a Sequence with a 404 inside is not done: {s}"
    );
    assert_eq!(s["status"], 200);
    let inner: Vec<(Value, Value, Value)> = s["inner"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["verb"].clone(),
                i["targets"][0].clone(),
                i["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        inner,
        [
            (json!("Replace"), json!(SEQ_OK), json!(200)),
            (json!("Replace"), json!(SEQ_MISSING), json!(404))
        ]
    );
    assert_eq!(s["inner"][1]["cmd_id"], json!(r.commands[2].cmd_id));
    let a = by(&cmds, "atomic");
    assert_eq!(
        (a["state"].clone(), a["status"].clone()),
        (json!("failed"), json!(507))
    );
    let codes: Vec<(Value, Value)> = a["inner"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["targets"][0].clone(), i["status"].clone()))
        .collect();
    assert_eq!(
        codes,
        [(json!(AT_ONE), json!(216)), (json!(AT_BAD), json!(500))]
    );
    // A Sequence whose inner commands all succeed is done.
    let ok = format!(
        "<Sequence><CmdID>1</CmdID>{}</Sequence>",
        replace(2, SEQ_OK)
    );
    queue(
        &srv,
        &d.device_id,
        json!({"syncml": ok, "command_id": "seq-ok"}),
    )
    .await;
    let r = post_ok(&d, &d.first_package(2, "")).await;
    post_ok(&d, &answer(&d, 2, 2, None, &r, |_| 200, "", true)).await;
    let cmds = commands(&srv, &d.device_id).await;
    assert_eq!(by(&cmds, "seq-ok")["state"], "done");
    srv.stop().await;
}

async fn atomic_profile(srv: &TestServer, syncml: &str) -> String {
    let (st, g) = srv
        .admin(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "all-pcs", "query": "device_type == \"windows-pc\""})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let (st, p) = srv
        .admin(
            "POST",
            "/api/v1/profiles",
            Some(json!({"name": "atomic policy", "syncml": syncml})),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    let (st, body) = srv
        .admin(
            "POST",
            &format!("/api/v1/profiles/{pid}/assignments"),
            Some(json!({"group_id": g["id"]})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    pid
}

async fn profile_status(srv: &TestServer, pid: &str, did: &str) -> Value {
    let (st, v) = srv
        .admin("GET", &format!("/api/v1/profiles/{pid}/status"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    v["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["device_id"] == did)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_profile_status_names_the_failing_locuris_of_its_atomic() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 41).await;
    let atomic = format!(
        "<Atomic><CmdID>1</CmdID>{}{}</Atomic>",
        replace(2, AT_ONE),
        replace(3, AT_BAD)
    );
    let pid = atomic_profile(&srv, &atomic).await;
    let r = post_ok(&d, &d.first_package(1, "")).await;
    assert_eq!(r.commands.first().map(|c| c.verb.as_str()), Some("Atomic"));
    let codes = [("Atomic", 507), (AT_ONE, 216), (AT_BAD, 500)];
    post_ok(
        &d,
        &answer(&d, 1, 2, None, &r, code_by_target(&codes), "", true),
    )
    .await;
    let st = profile_status(&srv, &pid, &d.device_id).await;
    assert_eq!(st["status"], "failed", "{st}");
    let f = &st["failures"][0];
    assert_eq!(f["status"], 507, "{st}");
    let failed: Vec<(Value, Value)> = f["failed"]
        .as_array()
        .unwrap_or_else(|| panic!("no failing LocURIs named: {st}"))
        .iter()
        .map(|n| (n["target"].clone(), n["status"].clone()))
        .collect();
    assert_eq!(
        failed,
        [(json!(AT_ONE), json!(216)), (json!(AT_BAD), json!(500))]
    );
    srv.stop().await;
}

#[tokio::test]
async fn statuses_214_215_216_are_not_done_and_not_applied() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 42).await;
    for (id, code) in [("c214", 214), ("c215", 215), ("c216", 216)] {
        let t = format!("./Vendor/MSFT/Policy/Config/Codes/{id}");
        queue(
            &srv,
            &d.device_id,
            json!({"verb": "Replace", "target": t, "format": "int", "data": "1", "command_id": id}),
        )
        .await;
        d.status_for.insert(t, code);
    }
    // A profile setting answered 215 (the user declined) is not applied.
    let cam = "./Vendor/MSFT/Policy/Config/Camera/AllowCamera";
    let pid = atomic_profile(&srv, &replace(1, cam)).await;
    d.status_for.insert(cam.into(), 215);
    assert_eq!(d.session().await.len(), 4);
    let cmds = commands(&srv, &d.device_id).await;
    for (id, state, code) in [
        ("c214", "cancelled_by_device", 214),
        ("c215", "not_executed", 215),
        ("c216", "rolled_back", 216),
    ] {
        let c = by(&cmds, id);
        assert_eq!(
            (c["state"].clone(), c["status"].clone()),
            (json!(state), json!(code)),
            "{c}"
        );
    }
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    assert_eq!(dev["queue"]["done"], 0, "{dev}");
    assert_eq!(dev["queue"]["not_applied"], 4, "{dev}");
    let st = profile_status(&srv, &pid, &d.device_id).await;
    assert_eq!(st["status"], "failed", "{st}");
    assert_eq!(st["failures"][0]["state"], "not_executed", "{st}");
    // Terminal: not sent again.
    assert!(d.session().await.is_empty());
    srv.stop().await;
}

/// Queues `data` as one Replace and runs sessions at `max` until it is delivered; every reply
/// must fit and the device must reassemble exactly `data`.
async fn deliver_within(srv: &TestServer, d: &mut ManagedDevice, id: &str, data: &str, max: u32) {
    let target = format!("./Vendor/MSFT/Policy/Config/Big/{id}");
    queue(srv, &d.device_id, json!({"verb": "Replace", "target": target, "format": "chr", "data": data, "command_id": id})).await;
    d.max_msg_size = Some(max);
    let got = d.session().await;
    assert!(
        got.iter()
            .filter(|c| c.target.as_deref() == Some(&target))
            .count()
            > 1,
        "sent in chunks"
    );
    for r in &d.replies {
        assert!(
            r.raw.len() <= max as usize,
            "{id}: reply of {} bytes exceeds MaxMsgSize {max}",
            r.raw.len()
        );
    }
    assert_eq!(
        d.assembled.get(&target).map(String::as_str),
        Some(data),
        "{id}"
    );
    let cmds = commands(srv, &d.device_id).await;
    assert_eq!(by(&cmds, id)["state"], "done");
}

#[tokio::test]
async fn large_object_chunks_never_exceed_the_announced_max_msg_size() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 43).await;
    assert!(d.session().await.is_empty());
    deliver_within(&srv, &mut d, "small", &"x".repeat(3000), 1024).await;
    deliver_within(&srv, &mut d, "amps", &"&".repeat(6000), 4096).await;
    let mixed: String = (0..400).map(|i| format!("<a v=\"{i}&\"/>é")).collect();
    deliver_within(&srv, &mut d, "mixed", &mixed, 2500).await;
    srv.stop().await;
}

#[tokio::test]
async fn raw_syncml_chunks_without_a_cmdid_fit_exactly() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 44).await;
    assert!(d.session().await.is_empty());
    let data = "y".repeat(12_000);
    let t = "./Vendor/MSFT/Policy/Config/Raw/Blob";
    queue(&srv, &d.device_id, json!({"syncml": format!("<Replace><Item><Target><LocURI>{t}</LocURI></Target><Data>{data}</Data></Item></Replace>"), "command_id": "raw"})).await;
    d.max_msg_size = Some(3000);
    let got = d.session().await;
    assert!(got.len() >= 4, "{}", got.len());
    for r in &d.replies {
        assert!(r.raw.len() <= 3000, "reply of {} bytes", r.raw.len());
    }
    assert_eq!(d.assembled.get(t), Some(&data));
    srv.stop().await;
}

#[tokio::test]
async fn max_msg_size_of_package_1_holds_for_the_whole_session() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 45).await;
    let t = "./Vendor/MSFT/Policy/Config/Pkg1/Blob";
    queue(&srv, &d.device_id, json!({"verb": "Replace", "target": t, "format": "chr", "data": "z".repeat(20_000), "command_id": "p1"})).await;
    let mut dev = d;
    dev.max_msg_size = Some(2000);
    let mut r = post_ok(&dev, &dev.first_package(1, "")).await;
    let mut msg = 1;
    let mut replies = 1;
    while !r.commands.is_empty() {
        assert!(
            r.raw.len() <= 2000,
            "reply {replies} of {} bytes",
            r.raw.len()
        );
        msg += 1;
        // Later messages do not repeat MaxMsgSize.
        let body = answer(
            &dev,
            1,
            msg,
            None,
            &r,
            |c| if c.more_data { 213 } else { 200 },
            "",
            true,
        );
        r = post_ok(&dev, &body).await;
        replies += 1;
        assert!(replies < 100, "session does not end");
    }
    assert!(replies > 10, "{replies} replies");
    let cmds = commands(&srv, &dev.device_id).await;
    assert_eq!(by(&cmds, "p1")["state"], "done");
    srv.stop().await;
}

#[tokio::test]
async fn an_atomic_larger_than_max_msg_size_fails_without_being_sent() {
    let srv = TestServer::start().await;
    let mut d = enrolled(&srv, 46).await;
    let big = "<Atomic><CmdID>1</CmdID>".to_string()
        + &(0..20)
            .map(|i| replace(i + 2, &format!("./Vendor/MSFT/Policy/Config/Many/N{i}")))
            .collect::<String>()
        + "</Atomic>";
    queue(
        &srv,
        &d.device_id,
        json!({"syncml": big, "command_id": "too-big"}),
    )
    .await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "next"}),
    )
    .await;
    d.max_msg_size = Some(2000);
    let got = d.session().await;
    assert!(
        got.iter().all(|c| c.verb != "Atomic"),
        "the Atomic went out: {got:?}"
    );
    assert!(d.replies.iter().all(|r| r.raw.len() <= 2000));
    let cmds = commands(&srv, &d.device_id).await;
    let c = by(&cmds, "too-big");
    assert_eq!(c["state"], "failed", "{c}");
    assert_eq!(c["send_count"], 0);
    assert!(
        c["error"]
            .as_str()
            .is_some_and(|e| e.contains("MaxMsgSize")),
        "{c}"
    );
    assert_eq!(by(&cmds, "next")["state"], "done", "the queue goes on");
    srv.stop().await;
}

fn results(
    m: &str,
    cmd_ref: &str,
    id: u32,
    source: &str,
    data: &str,
    size: Option<usize>,
    more: bool,
) -> String {
    let meta = size
        .map(|n| format!(r#"<Meta><Size xmlns="syncml:metinf">{n}</Size></Meta>"#))
        .unwrap_or_default();
    let more = if more { "<MoreData/>" } else { "" };
    format!(
        r#"<Results><CmdID>{id}</CmdID><MsgRef>{m}</MsgRef><CmdRef>{cmd_ref}</CmdRef><Item><Source><LocURI>{source}</LocURI></Source>{meta}<Data>{data}</Data>{more}</Item></Results>"#
    )
}

#[tokio::test]
async fn a_new_large_object_before_the_previous_ended_gets_alert_1225() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 47).await;
    let hw = "./DevDetail/Ext/DeviceHardwareData";
    let swv = "./DevDetail/SwV";
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": hw, "command_id": "hw"}),
    )
    .await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": swv, "command_id": "swv"}),
    )
    .await;
    let r = post_ok(&d, &d.first_package(1, "")).await;
    let (c_hw, c_swv) = (r.commands[0].cmd_id.clone(), r.commands[1].cmd_id.clone());
    // Statuses, then the first chunk of the hardware hash (1000 bytes declared).
    let extra = results(&r.msg_id, &c_hw, 9, hw, &"A".repeat(300), Some(1000), true);
    let r2 = post_ok(&d, &answer(&d, 1, 2, None, &r, |_| 200, &extra, false)).await;
    assert!(
        r2.statuses.iter().any(|s| s.1 == "Results" && s.2 == "213"),
        "{}",
        r2.raw
    );
    // A new object starts before the hardware hash ended.
    let body = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Status><CmdID>1</CmdID><MsgRef>{m}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>{}</SyncBody></SyncML>"#,
        hdr(1, 3, &d.device_id, None),
        results(
            &r2.msg_id,
            &c_swv,
            2,
            swv,
            &"B".repeat(100),
            Some(200),
            true
        ),
        m = r2.msg_id
    );
    let r3 = post_ok(&d, &body).await;
    let alert = r3
        .commands
        .iter()
        .find(|c| c.verb == "Alert" && c.data.as_deref() == Some("1225"));
    assert!(alert.is_some(), "no Alert 1225: {}", r3.raw);
    assert!(
        r3.raw
            .contains(&format!("<Source><LocURI>{hw}</LocURI></Source>")),
        "{}",
        r3.raw
    );
    let cmds = commands(&srv, &d.device_id).await;
    let c = by(&cmds, "hw");
    assert_ne!(c["state"], "done", "{c}");
    assert_eq!(c["state"], "failed", "{c}");
    assert!(
        c["error"].as_str().is_some_and(|e| e.contains("1225")),
        "{c}"
    );
    assert_eq!(c["results"], json!([]));
    srv.stop().await;
}

#[tokio::test]
async fn a_get_whose_results_were_lost_is_not_done() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 48).await;
    let swv = "./DevDetail/SwV";
    let hw = "./DevDetail/Ext/DeviceHardwareData";
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": swv, "command_id": "no-results"}),
    )
    .await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": hw, "command_id": "mismatch"}),
    )
    .await;
    let r = post_ok(&d, &d.first_package(1, "")).await;
    let c_hw = r.commands[1].cmd_id.clone();
    // 200 for both; the hash declares 50 bytes and sends 10; SwV never sends Results.
    let extra = results(&r.msg_id, &c_hw, 9, hw, "0123456789", Some(50), false);
    let r2 = post_ok(&d, &answer(&d, 1, 2, None, &r, |_| 200, &extra, true)).await;
    assert!(
        r2.statuses.iter().any(|s| s.1 == "Results" && s.2 == "424"),
        "{}",
        r2.raw
    );
    let cmds = commands(&srv, &d.device_id).await;
    for id in ["no-results", "mismatch"] {
        let c = by(&cmds, id);
        assert_eq!(c["state"], "failed", "{c}");
        assert!(
            c["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("results lost")),
            "{c}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn results_for_an_answered_command_are_ignored_and_bounded() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 49).await;
    let swv = "./DevDetail/SwV";
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": swv, "command_id": "get"}),
    )
    .await;
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/Many", "command_id": "many"}),
    )
    .await;
    let r = post_ok(&d, &d.first_package(1, "")).await;
    let (c_get, c_many) = (r.commands[0].cmd_id.clone(), r.commands[1].cmd_id.clone());
    let items: String = (0..300)
        .map(|i| format!(r#"<Item><Source><LocURI>./DevDetail/Many/{i}</LocURI></Source><Data>{i}</Data></Item>"#))
        .collect();
    let many = format!(
        r#"<Results><CmdID>8</CmdID><MsgRef>{m}</MsgRef><CmdRef>{c_many}</CmdRef>{items}</Results>"#,
        m = r.msg_id
    );
    let extra = results(&r.msg_id, &c_get, 9, swv, "10.0.1", None, false) + &many;
    // No Final: the device keeps the session open and resends the same Results.
    let mut reply = post_ok(&d, &answer(&d, 1, 2, None, &r, |_| 200, &extra, false)).await;
    for msg in 3..8 {
        let body = format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Status><CmdID>1</CmdID><MsgRef>{m}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>{}</SyncBody></SyncML>"#,
            hdr(1, msg, &d.device_id, None),
            results(&reply.msg_id, &c_get, 2, swv, "10.0.1", None, false),
            m = reply.msg_id
        );
        reply = post_ok(&d, &body).await;
    }
    let cmds = commands(&srv, &d.device_id).await;
    let c = by(&cmds, "get");
    assert_eq!(c["state"], "done");
    assert_eq!(c["results"].as_array().map(Vec::len), Some(1), "{c}");
    let m = by(&cmds, "many");
    assert_eq!(
        m["results"].as_array().map(Vec::len),
        Some(winmdm::mdm::manage::MAX_RESULTS_PER_COMMAND)
    );
    assert_eq!(m["results_truncated"], true);
    srv.stop().await;
}

#[tokio::test]
async fn a_session_has_a_bounded_number_of_messages() {
    let srv = TestServer::start().await;
    let d = enrolled(&srv, 50).await;
    let limit = winmdm::mdm::manage::MAX_MESSAGES_PER_SESSION;
    let mut reply = post_ok(&d, &d.first_package(1, "")).await;
    let status_only = |msg: u32, m: &str, extra: &str| {
        format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Status><CmdID>1</CmdID><MsgRef>{m}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>{extra}</SyncBody></SyncML>"#,
            hdr(1, msg, &d.device_id, None)
        )
    };
    // The device never sends Final: every reply asks for the next message, until the bound.
    let evil = r#"<Replace><CmdID>2</CmdID><Item><Source><LocURI>./DevInfo/Man</LocURI></Source><Data>Evil</Data></Item></Replace>"#;
    let mut msg = 1;
    let over = loop {
        msg += 1;
        assert!(
            msg <= limit + 2,
            "no abort after {msg} messages: {}",
            reply.raw
        );
        let r = post_ok(&d, &status_only(msg, &reply.msg_id, "")).await;
        if r.commands
            .iter()
            .any(|c| c.verb == "Alert" && c.data.as_deref() == Some("1223"))
        {
            break r;
        }
        assert!(
            r.commands.iter().any(|c| c.data.as_deref() == Some("1222")),
            "{}",
            r.raw
        );
        reply = r;
    };
    assert!(msg >= limit, "aborted early, at message {msg}");
    let again = post_ok(&d, &status_only(msg + 1, &over.msg_id, evil)).await;
    assert!(
        again
            .commands
            .iter()
            .any(|c| c.data.as_deref() == Some("1223")),
        "the session stays aborted: {}",
        again.raw
    );
    let (_, dev) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    assert_eq!(
        dev["inventory"]["./DevInfo/Man"], "Contoso & Sons",
        "over the bound nothing is applied"
    );
    srv.stop().await;
}
