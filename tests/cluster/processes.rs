//! Three real `winmdm serve` processes on three loopback port pairs, one PostgreSQL database
//! and copies of one data directory (node 1's, copied after its first start): enrollment,
//! queueing and check-in on different nodes, a session whose messages go round the nodes, one
//! device in two sessions on two nodes at once, a password change seen by every node at once;
//! no command lost and none delivered again after its Status was recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::child::{send, try_admin, ChildServer};
use crate::support::device::{self, fault_subcode, policy_xml, DeviceInfo, Enrolled};
use crate::support::mdm_device::{hdr, ManagedDevice, Reply};
use crate::support::pg::TestDb;
use crate::support::Client;

pub(super) const READY: Duration = Duration::from_secs(60);
/// Target prefix of the test's commands; the rest of the LocURI is the command id.
pub(super) const PREFIX: &str = "./Vendor/MSFT/Cluster/";

/// Copies directory `from` into `to` (files and sub-directories, with their permissions).
pub(super) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// What the devices received and which of their Statuses the server is known to have recorded,
/// over every session and node.
#[derive(Default)]
pub(super) struct Ledger {
    /// (command id, when the request whose reply carried it was sent).
    pub(super) deliveries: Vec<(String, Instant)>,
    /// Command id → when the reply to the message carrying its Status arrived (recorded).
    pub(super) recorded: BTreeMap<String, Instant>,
}

impl Ledger {
    /// Deliveries asked for after the command's Status was recorded (must be none).
    pub(super) fn after_status(&self) -> Vec<String> {
        self.deliveries
            .iter()
            .filter(|(id, sent)| self.recorded.get(id).is_some_and(|r| sent > r))
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub(super) fn delivered(&self) -> BTreeSet<String> {
        self.deliveries.iter().map(|(id, _)| id.clone()).collect()
    }
}

/// One OMA-DM session of `md`'s device whose message `k` goes to `clients[(first + k) % n]`
/// (the device's identity, each node's management listener). Answers Status 200 to everything
/// (and Results to a Get). Returns the number of server messages, or the HTTP error.
async fn session(
    md: &ManagedDevice,
    clients: &[Client],
    first: usize,
    session: u32,
    ledger: &Mutex<Ledger>,
) -> Result<usize, String> {
    session_retrying(md, clients, first, session, ledger, 0).await
}

/// As [`session`]; a message that gets no answer or a 503 (node killed, database away) is sent
/// again to the next node, as a load balancer fails over, up to `retries` times, 50 ms apart.
pub(super) async fn session_retrying(
    md: &ManagedDevice,
    clients: &[Client],
    mut first: usize,
    session: u32,
    ledger: &Mutex<Ledger>,
    retries: u32,
) -> Result<usize, String> {
    let path = format!("{}?mode=Maintenance&Platform=WoA", md.mgmt_path);
    let mut body = md.first_package(session, "");
    let mut pending_status: Vec<String> = Vec::new();
    for k in 0..60usize {
        let mut tries = 0;
        let (r, sent) = loop {
            let c = &clients[(first + k) % clients.len()];
            let sent = Instant::now();
            let r = send(
                c,
                "POST",
                &path,
                &[
                    ("content-type", "application/vnd.syncml.dm+xml"),
                    ("user-agent", "MSFT OMA DM Client/1.2.0.1"),
                ],
                body.as_bytes().to_vec(),
            )
            .await;
            match r {
                Some(r) if r.status != 503 => break (r, sent),
                _ if tries < retries => {
                    tries += 1;
                    first += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(r) => break (r, sent),
                None => return Err(format!("session {session} message {}: no answer", k + 1)),
            }
        };
        if r.status != 200 {
            return Err(format!(
                "session {session} message {}: HTTP {}: {}",
                k + 1,
                r.status,
                r.text()
            ));
        }
        let reply = Reply::parse(&r.text());
        assert_eq!(reply.session_id, session.to_string());
        let now = Instant::now();
        let mut l = ledger.lock().unwrap();
        for id in pending_status.drain(..) {
            l.recorded.entry(id).or_insert(now);
        }
        let cmds: Vec<_> = reply
            .commands
            .iter()
            .filter(|c| c.verb != "Alert")
            .cloned()
            .collect();
        if cmds.is_empty() {
            return Ok(k + 1);
        }
        let mut b = format!(
            r#"<Status><CmdID>1</CmdID><MsgRef>{}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>"#,
            reply.msg_id
        );
        let mut n = 1;
        for c in &cmds {
            let id = c
                .target
                .as_deref()
                .and_then(|t| t.strip_prefix(PREFIX))
                .map(str::to_string);
            if let Some(id) = &id {
                l.deliveries.push((id.clone(), sent));
                pending_status.push(id.clone());
            }
            n += 1;
            b.push_str(&format!(
                r#"<Status><CmdID>{n}</CmdID><MsgRef>{}</MsgRef><CmdRef>{}</CmdRef><Cmd>{}</Cmd><Data>200</Data></Status>"#,
                reply.msg_id, c.cmd_id, c.verb
            ));
            if c.verb == "Get" {
                n += 1;
                b.push_str(&format!(
                    r#"<Results><CmdID>{n}</CmdID><MsgRef>{}</MsgRef><CmdRef>{}</CmdRef><Item><Source><LocURI>{}</LocURI></Source><Data>v</Data></Item></Results>"#,
                    reply.msg_id,
                    c.cmd_id,
                    c.target.as_deref().unwrap_or_default()
                ));
            }
        }
        drop(l);
        body = format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody>{b}<Final/></SyncBody></SyncML>"#,
            hdr(session, k as u32 + 2, &md.device_id, md.max_msg_size)
        );
    }
    Err(format!("session {session} did not end after 60 messages"))
}

/// Queues `ids` through `admin` (a Replace each, with `pad` bytes of data).
pub(super) async fn queue(admin: &Client, dev: &str, ids: &[String], pad: usize) {
    for id in ids {
        let (st, b) = try_admin(
            admin,
            "POST",
            &format!("/api/v1/devices/{dev}/commands"),
            Some(json!({"verb": "Replace", "target": format!("{PREFIX}{id}"),
                "format": "chr", "data": "x".repeat(pad), "command_id": id})),
        )
        .await
        .expect("admin answers");
        assert_eq!(st, 201, "{b}");
    }
}

/// Command id → state, as `admin`'s node reports the device's history.
pub(super) async fn states(admin: &Client, dev: &str) -> BTreeMap<String, String> {
    let (st, b) = try_admin(
        admin,
        "GET",
        &format!("/api/v1/devices/{dev}/commands"),
        None,
    )
    .await
    .expect("admin answers");
    assert_eq!(st, 200, "{b}");
    b["commands"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["command_id"].as_str().unwrap_or_default().to_string(),
                c["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// GetPolicies with `upn`/`password` through `c`: `Ok` if answered, the fault subcode if not.
async fn policies(c: &Client, upn: &str, password: &str) -> Result<(), String> {
    let r = send(
        c,
        "POST",
        "/EnrollmentServer/Policy.svc",
        &[("content-type", "application/soap+xml; charset=utf-8")],
        policy_xml(upn, password, "x", "urn:uuid:1").into_bytes(),
    )
    .await
    .expect("policy answers");
    match fault_subcode(&r.text()) {
        None if r.status == 200 => Ok(()),
        sub => Err(format!("{} {}", r.status, sub.unwrap_or_default())),
    }
}

/// The device of `e`, with one management client per node (its identity on each).
pub(super) fn clients_for(e: &Enrolled, nodes: &[&ChildServer]) -> Vec<Client> {
    nodes
        .iter()
        .map(|n| ManagedDevice::at(n.addr, e).client)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_database_act_as_one_server() {
    let Some(db) = TestDb::create("three nodes on one database") else {
        return;
    };
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(120), run(&db))
        .await
        .expect("cluster test within 120 s");
    println!("cluster test: {:?}", t0.elapsed());
}

async fn run(db: &TestDb) {
    let tmp = tempfile::tempdir().unwrap();
    let node = |i: usize| {
        let mut n = ChildServer::new(
            &tmp.path().join(format!("data{i}")),
            &tmp.path().join(format!("node{i}.log")),
        );
        n.env
            .push(("WINMDM_DATABASE_URL".to_string(), db.url.clone()));
        n
    };
    // Node 1 prepares the data directory; the others start on copies of it.
    let mut n1 = node(1);
    n1.spawn();
    let a1 = n1.wait_ready(READY).await;
    let (mut n2, mut n3) = (node(2), node(3));
    copy_dir(&n1.data_dir, &n2.data_dir);
    copy_dir(&n1.data_dir, &n3.data_dir);
    n2.spawn();
    n3.spawn();
    let a2 = n2.wait_ready(READY).await;
    let a3 = n3.wait_ready(READY).await;
    assert_eq!(n1.ca_der(), n2.ca_der(), "one CA");
    for a in [&a1, &a2, &a3] {
        let r = send(a, "GET", "/readyz", &[], vec![])
            .await
            .expect("readyz");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let (st, b) = try_admin(
        &a1,
        "POST",
        "/api/v1/users",
        Some(json!({"upn": "ops@contoso.com", "password": "Old-passw0rd"})),
    )
    .await
    .unwrap();
    assert_eq!(st, 201, "{b}");

    // Enroll through node 1 (and a second device through node 2), queue through node 2's
    // admin API, check in through node 3: the certificate node 1 issued is accepted there.
    let e = device::enroll(&a1, &DeviceInfo::new(1, "ops@contoso.com", "Old-passw0rd")).await;
    let e2 = device::enroll(&a2, &DeviceInfo::new(2, "ops@contoso.com", "Old-passw0rd")).await;
    let dev = e.device_id.clone();
    let ledger = Mutex::new(Ledger::default());
    let (st, b) = try_admin(
        &a2,
        "POST",
        &format!("/api/v1/devices/{dev}/commands"),
        Some(json!({"verb": "Get", "target": format!("{PREFIX}first-get"), "command_id": "first-get"})),
    )
    .await
    .unwrap();
    assert_eq!(st, 201, "{b}");
    let mut md = ManagedDevice::at(n3.addr, &e);
    let on3 = clients_for(&e, &[&n3]);
    session(&md, &on3, 0, 1, &ledger).await.unwrap();
    assert_eq!(
        states(&a1, &dev).await.get("first-get").map(String::as_str),
        Some("done")
    );
    // Node 1 accepts the certificate node 2 issued.
    let md2 = ManagedDevice::at(n1.addr, &e2);
    let on1 = clients_for(&e2, &[&n1]);
    session(&md2, &on1, 0, 1, &ledger).await.unwrap();

    // A session whose messages go round the three nodes (small messages: many of them).
    let all = clients_for(&e, &[&n1, &n2, &n3]);
    let hop: Vec<String> = (0..12).map(|i| format!("hop-{i:02}")).collect();
    queue(&a2, &dev, &hop, 300).await;
    md.max_msg_size = Some(1400);
    let msgs = session(&md, &all, 0, 2, &ledger).await.unwrap();
    assert!(
        msgs >= 4,
        "the session went round the nodes: {msgs} messages"
    );

    // The same device in two sessions at once, on node 1 and node 2.
    let conc: Vec<String> = (0..20).map(|i| format!("conc-{i:02}")).collect();
    queue(&a3, &dev, &conc, 300).await;
    let (r1, r2) = tokio::join!(
        session(&md, &all, 0, 3, &ledger),
        session(&md, &all, 1, 4, &ledger)
    );
    println!("two sessions at once: {r1:?} / {r2:?}");
    // Whatever either left (a session refused or cut short), a later one on node 3 delivers.
    session(&md, &all, 2, 5, &ledger).await.unwrap();

    // A password change on node 3 refuses the old password on nodes 1 and 2 at once.
    policies(&a1, "ops@contoso.com", "Old-passw0rd")
        .await
        .unwrap();
    let (st, b) = try_admin(
        &a3,
        "PATCH",
        "/api/v1/users/ops@contoso.com",
        Some(json!({"password": "New-passw0rd"})),
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "{b}");
    for a in [&a1, &a2] {
        let r = policies(a, "ops@contoso.com", "Old-passw0rd").await;
        assert!(
            r.as_ref().is_err_and(|e| e.ends_with("s:Authentication")),
            "{r:?}"
        );
        policies(a, "ops@contoso.com", "New-passw0rd")
            .await
            .unwrap();
    }

    // None lost, none delivered after its Status was recorded.
    let l = ledger.into_inner().unwrap();
    let queued: BTreeSet<String> = std::iter::once("first-get".to_string())
        .chain(hop)
        .chain(conc)
        .collect();
    assert_eq!(l.delivered(), queued, "every queued command delivered");
    assert_eq!(
        l.after_status(),
        Vec::<String>::new(),
        "delivered after its Status"
    );
    for a in [&a1, &a2, &a3] {
        let s = states(a, &dev).await;
        let done: BTreeSet<String> = s
            .iter()
            .filter(|(_, st)| st.as_str() == "done")
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(done, queued, "every node sees every command done: {s:?}");
    }
    println!(
        "cluster: {} deliveries of {} commands; hopping session {msgs} messages",
        l.deliveries.len(),
        queued.len()
    );
    for n in [&mut n1, &mut n2, &mut n3] {
        n.stop(Duration::from_secs(10));
    }
}
