//! Crash safety of the real server binary (issue 8): `winmdm serve` runs as a child process on a
//! temporary data dir; simulated devices enroll, then run OMA-DM sessions while an admin task
//! queues commands with client-chosen ids, and the test SIGKILLs the child at random moments
//! (seeded xorshift) and restarts it on the same data dir and port. At the end (after a graceful
//! stop, a clean restart and sessions until every queue is drained) it checks and prints:
//!
//! * every command the server acknowledged (201, or 200 `existing` for an id whose first POST was
//!   cut by a kill) is present after every restart, and `done` and delivered after draining;
//! * no command is delivered again once the device has seen the server's reply to the message
//!   carrying its Status 200; re-delivery of a command whose Status may not have been recorded
//!   (the round was cut by a kill) is allowed (at-least-once) and counted;
//! * every device's certificate serial is the one recorded (`GET /api/v1/devices/{id}`, and the
//!   sled store opened after the child exited), including 3 devices that enroll while the kills
//!   go on (an enrollment cut by a kill is retried with a new key, as Windows does);
//! * the store opens after every kill (the child restarts and answers `/healthz`, and every
//!   acknowledged command is listed), and the child logs no panic and no ERROR.
//!
//! A device whose request fails either retransmits the same message (up to 40 times, 50 ms
//! apart) or gives the session up and starts a new one; both are what DMClient may do.
//! The devices behave like DMClient with a mixed queue: every third command is a `Get` answered
//! with `Results` (the data is the command id, checked at the end), one command in five (chosen by
//! its id) is refused with 404 (it must end `failed` with 404, never retried), and half the
//! devices announce `MaxMsgSize` 1400 so the server splits its commands over several messages.
//! Limits: a kill lands inside a handler only by chance (a few re-deliveries per 20 kills), no
//! large objects, and an admin POST is only rarely cut mid-request (the `200 existing` path).
//!
//! **Power cuts** (issue 22): by default the child's store runs on
//! `winmdm::store::powercut::SyncOnlyFile`, where nothing reaches the file before the store asks
//! for an `fdatasync`; each SIGKILL then throws away every write that was not synced, as a power
//! cut throws away the page cache and the disk's write cache (a kill during a sync leaves part of
//! the unsynced writes, as a cut during write-back does). A server that answered before its sync
//! would lose acknowledged commands here. `WINMDM_CRASH_MODE=kill` runs the store on the plain
//! file instead (what a process crash keeps: the page cache survives).
//!
//! Default: 5 kills. Longer runs: `WINMDM_CRASH_KILLS=20 cargo test --test main crash -- --nocapture`;
//! the seed is `WINMDM_CRASH_SEED` (decimal, printed on every run so a failure can be replayed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use winmdm::store::{CertStore, DeviceStore};

use crate::support::child::{send, try_admin, try_enroll, ChildServer};
use crate::support::device::{self, DeviceInfo, Enrolled};
use crate::support::mdm_device::{hdr, ManagedDevice, Reply};
use crate::support::Client;

/// Target prefix of the test's commands; the rest of the LocURI is the command id.
const PREFIX: &str = "./Vendor/MSFT/Crash/";
const DEVICES: u32 = 4;
/// Devices enrolled while the kills go on.
const LATE_DEVICES: u32 = 3;
const READY_LIMIT: Duration = Duration::from_secs(60);

/// xorshift64: reproducible randomness without a crate.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// The status a device answers for command `id`: 404 for one id in five, else 200.
fn device_status(id: &str) -> u16 {
    let h = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    if h % 5 == 0 {
        404
    } else {
        200
    }
}

/// Whether the admin worker queues command `n` as a `Get` (every third).
fn is_get(id: &str) -> bool {
    id.strip_prefix('c')
        .and_then(|r| r.get(..5))
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n % 3 == 0)
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn serial_of(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("device certificate");
    hex_lower(c.tbs_certificate.raw_serial())
}

/// How one session ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Completed and received nothing.
    Empty,
    /// Completed after receiving commands.
    Completed,
    /// A request failed (server down) and the device gave the session up.
    Aborted,
}

/// What a device received, and which of its Statuses it knows the server recorded.
#[derive(Default)]
struct Ledger {
    /// Command id → how many times it was received.
    delivered: BTreeMap<String, u32>,
    /// Commands whose Status 200 went in a message the server answered: recorded for sure.
    confirmed: BTreeSet<String>,
    /// Deliveries after a confirmed Status (must stay empty).
    dup_after_status: Vec<String>,
    /// Deliveries of a command already received whose Status was not confirmed.
    redeliveries: u32,
}

impl Ledger {
    /// The device received command `id` in `session`.
    fn received(&mut self, id: &str, session: u32) {
        let n = self.delivered.entry(id.to_string()).or_insert(0);
        if *n > 0 {
            if self.confirmed.contains(id) {
                self.dup_after_status.push(format!(
                    "{id} delivered again (delivery #{}) in session {session} after its Status was recorded",
                    *n + 1
                ));
            } else {
                self.redeliveries += 1;
            }
        }
        *n += 1;
    }

    /// The server answered the message carrying the Statuses of `ids`.
    fn confirm(&mut self, ids: impl IntoIterator<Item = String>) {
        self.confirmed.extend(ids);
    }
}

/// A simulated device with its own bookkeeping of what it received.
struct CrashDevice {
    md: ManagedDevice,
    cert_serial: String,
    rng: Rng,
    ledger: Ledger,
    sessions_ok: u32,
    sessions_aborted: u32,
    retransmits: u32,
    /// Unexpected HTTP answers (must stay empty).
    errors: Vec<String>,
    /// Sessions whose commands came in more than one server message.
    split_sessions: u32,
}

impl CrashDevice {
    fn new(srv: &ChildServer, e: &Enrolled, seed: u64) -> CrashDevice {
        let md = ManagedDevice::at(srv.addr, e);
        CrashDevice {
            cert_serial: serial_of(&e.cert_der),
            md,
            rng: Rng::new(seed),
            ledger: Ledger::default(),
            sessions_ok: 0,
            sessions_aborted: 0,
            retransmits: 0,
            errors: Vec::new(),
            split_sessions: 0,
        }
    }

    /// One session. On a failed request the device either retransmits the same message (as
    /// DMClient retries; up to `retries` times, 50 ms apart) or gives the session up.
    async fn session(&mut self, retries: u32) -> Outcome {
        let session = self.md.next_session;
        self.md.next_session += 1;
        let path = format!("{}?mode=Maintenance&Platform=WoA", self.md.mgmt_path);
        let mut body = self.md.first_package(session, "");
        // Ids whose Status 200 is in `body`.
        let mut statuses_in_body: Vec<String> = Vec::new();
        let mut received_any = false;
        for msg in 2..60u32 {
            let retransmit = self.rng.below(2) == 0;
            let mut tries = 0;
            let r = loop {
                let r = send(
                    &self.md.client,
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
                    Some(r) => break Some(r),
                    None if retransmit && tries < retries => {
                        tries += 1;
                        self.retransmits += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    None => break None,
                }
            };
            let Some(r) = r else {
                self.sessions_aborted += 1;
                return Outcome::Aborted;
            };
            if r.status != 200 {
                self.errors.push(format!(
                    "session {session} msg {}: HTTP {}: {}",
                    msg - 1,
                    r.status,
                    r.text()
                ));
                self.sessions_aborted += 1;
                return Outcome::Aborted;
            }
            let reply = Reply::parse(&r.text());
            assert_eq!(reply.session_id, session.to_string(), "SessionID echoed");
            // The server answered the message carrying these Statuses: they are recorded.
            self.ledger.confirm(statuses_in_body.drain(..));
            let cmds: Vec<_> = reply
                .commands
                .iter()
                .filter(|c| c.verb != "Alert")
                .cloned()
                .collect();
            if cmds.is_empty() {
                // Every earlier reply carried commands: `msg - 2` of them.
                if msg - 2 > 1 {
                    self.split_sessions += 1;
                }
                self.sessions_ok += 1;
                return if received_any {
                    Outcome::Completed
                } else {
                    Outcome::Empty
                };
            }
            received_any = true;
            let mut b = format!(
                r#"<Status><CmdID>1</CmdID><MsgRef>{}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>"#,
                reply.msg_id
            );
            let mut cmd_id = 1;
            for c in &cmds {
                let id = c
                    .target
                    .as_deref()
                    .and_then(|t| t.strip_prefix(PREFIX))
                    .map(str::to_string);
                let code = id.as_deref().map_or(200, device_status);
                if let Some(id) = &id {
                    self.ledger.received(id, session);
                    statuses_in_body.push(id.clone());
                }
                cmd_id += 1;
                b.push_str(&format!(
                    r#"<Status><CmdID>{cmd_id}</CmdID><MsgRef>{}</MsgRef><CmdRef>{}</CmdRef><Cmd>{}</Cmd><Data>{code}</Data></Status>"#,
                    reply.msg_id,
                    c.cmd_id,
                    c.verb
                ));
                if c.verb == "Get" && code == 200 {
                    cmd_id += 1;
                    b.push_str(&format!(
                        r#"<Results><CmdID>{cmd_id}</CmdID><MsgRef>{}</MsgRef><CmdRef>{}</CmdRef><Item><Source><LocURI>{PREFIX}{}</LocURI></Source><Data>{}</Data></Item></Results>"#,
                        reply.msg_id,
                        c.cmd_id,
                        id.as_deref().unwrap_or_default(),
                        id.as_deref().unwrap_or_default()
                    ));
                }
            }
            body = format!(
                r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody>{b}<Final/></SyncBody></SyncML>"#,
                hdr(session, msg, &self.md.device_id, self.md.max_msg_size)
            );
        }
        panic!("session {session} did not end after 60 messages");
    }
}

#[derive(Default)]
struct AdminStats {
    attempted: u64,
    created: u64,
    existing_after_cut: u64,
    cut: u64,
    errors: Vec<String>,
}

/// Queues commands with unique client-chosen ids until `stop`; an id whose POST was cut by a
/// kill is retried (idempotent) until the server answers. Acknowledged ids go to `acked`.
async fn admin_worker(
    client: Client,
    devices: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<BTreeSet<String>>>>,
    mut rng: Rng,
) -> AdminStats {
    let mut st = AdminStats::default();
    let mut retry: Vec<(usize, String)> = Vec::new();
    let started = Instant::now();
    let mut n = 0u64;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && retry.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "admin worker ran 10 minutes"
        );
        let (dev, id, again) = match retry.pop() {
            Some((d, id)) => (d, id, true),
            None if stopping || n >= 5000 => break,
            None => {
                n += 1;
                let d = rng.below(devices.len() as u64) as usize;
                st.attempted += 1;
                (d, format!("c{n:05}-d{d}"), false)
            }
        };
        let r = try_admin(
            &client,
            "POST",
            &format!("/api/v1/devices/{}/commands", devices[dev]),
            Some(if is_get(&id) {
                json!({"verb": "Get", "target": format!("{PREFIX}{id}"), "command_id": id})
            } else {
                json!({
                    "verb": "Replace",
                    "target": format!("{PREFIX}{id}"),
                    "format": "int",
                    "data": "1",
                    "command_id": id,
                })
            }),
        )
        .await;
        match r {
            Some((201, b)) if b["command_id"] == id.as_str() => {
                st.created += 1;
                acked.lock().unwrap()[dev].insert(id);
            }
            Some((200, b)) if again && b["existing"] == true => {
                st.existing_after_cut += 1;
                acked.lock().unwrap()[dev].insert(id);
            }
            None => {
                st.cut += 1;
                retry.push((dev, id));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some((s, b)) => st.errors.push(format!("POST {id}: {s} {b}")),
        }
        tokio::time::sleep(rng.ms(2, 25)).await;
    }
    st
}

/// The server's commands of a device: id → (state, status, first result's data).
async fn server_commands_full(
    c: &Client,
    dev: &str,
) -> BTreeMap<String, (String, Option<u64>, Option<String>)> {
    let (st, b) = try_admin(c, "GET", &format!("/api/v1/devices/{dev}/commands"), None)
        .await
        .expect("list commands after restart");
    assert_eq!(st, 200, "{b}");
    b["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| {
            (
                c["command_id"].as_str().unwrap_or_default().to_string(),
                (
                    c["state"].as_str().unwrap_or_default().to_string(),
                    c["status"].as_u64(),
                    c["results"][0]["data"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

/// The server's commands of a device: id → state.
async fn server_commands(c: &Client, dev: &str) -> BTreeMap<String, String> {
    let (st, b) = try_admin(c, "GET", &format!("/api/v1/devices/{dev}/commands"), None)
        .await
        .expect("list commands after restart");
    assert_eq!(st, 200, "{b}");
    b["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| {
            (
                c["command_id"].as_str().unwrap_or_default().to_string(),
                c["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Every acknowledged command is still there, pending, sent or done.
async fn check_none_lost(c: &Client, devices: &[String], acked: &[BTreeSet<String>], when: &str) {
    for (i, dev) in devices.iter().enumerate() {
        let have = server_commands(c, dev).await;
        for id in &acked[i] {
            match have.get(id).map(String::as_str) {
                Some("pending" | "sent" | "done" | "failed") => {}
                other => panic!("{when}: acknowledged command {id} of {dev} is {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_command_and_repeats_no_answered_one() {
    let kills: u32 = std::env::var("WINMDM_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("WINMDM_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_123);
    let power_cut = std::env::var("WINMDM_CRASH_MODE").as_deref() != Ok("kill");
    println!(
        "crash test: {kills} {}, seed {seed} (WINMDM_CRASH_KILLS, WINMDM_CRASH_SEED, WINMDM_CRASH_MODE)",
        if power_cut { "power cuts (SIGKILL of a store that writes only at fdatasync)" } else { "kills" }
    );
    let t0 = Instant::now();
    let limit = Duration::from_secs(120 + 20 * u64::from(kills));
    tokio::time::timeout(limit, run(kills, seed, power_cut, t0))
        .await
        .unwrap_or_else(|_| panic!("crash test exceeded {limit:?}"));
}

async fn run(kills: u32, seed: u64, power_cut: bool, t0: Instant) {
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut srv = ChildServer::new(&data, &tmp.path().join("winmdm.log"));
    if power_cut {
        srv.env
            .push((winmdm::store::powercut::ENV.to_string(), "1".to_string()));
    }
    srv.spawn();
    let admin = srv.wait_ready(READY_LIMIT).await;

    // Enrollment (no kills yet).
    let mut devices = Vec::new();
    for n in 0..DEVICES {
        let upn = format!("crash{n}@example.com");
        let (st, b) = try_admin(
            &admin,
            "POST",
            "/api/v1/users",
            Some(json!({"upn": upn, "password": "pw-123456"})),
        )
        .await
        .expect("create user");
        assert_eq!(st, 201, "{b}");
        let e = device::enroll(&admin, &DeviceInfo::new(100 + n, &upn, "pw-123456")).await;
        let mut d = CrashDevice::new(&srv, &e, seed ^ u64::from(n + 1));
        if n % 2 == 1 {
            d.md.max_msg_size = Some(1400);
        }
        devices.push(d);
    }
    let ids: Vec<String> = devices.iter().map(|d| d.md.device_id.clone()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(vec![BTreeSet::new(); ids.len()]));
    let admin_task = tokio::spawn(admin_worker(
        admin.clone(),
        ids.clone(),
        stop.clone(),
        acked.clone(),
        Rng::new(seed ^ 0xAD),
    ));
    let mut dev_tasks = Vec::new();
    for mut d in devices {
        let stop = stop.clone();
        dev_tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                n += 1;
                let pause = if d.session(40).await == Outcome::Aborted {
                    Duration::from_millis(50)
                } else {
                    d.rng.ms(0, 20)
                };
                tokio::time::sleep(pause).await;
            }
            d
        }));
    }

    let enroller = {
        let c = admin.clone();
        let mut rng = Rng::new(seed ^ 0xE1);
        tokio::spawn(async move {
            let mut out = Vec::new();
            let mut attempts = 0u32;
            for j in 0..LATE_DEVICES {
                tokio::time::sleep(rng.ms(100, 800)).await;
                let info = DeviceInfo::new(200 + j, "crash0@example.com", "pw-123456");
                let mut got = None;
                for _ in 0..400 {
                    attempts += 1;
                    if let Some(e) = try_enroll(&c, &info).await {
                        got = Some(e);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                out.push(got.expect("late enrollment never succeeded"));
            }
            (out, attempts)
        })
    };
    let mut restarts = Vec::new();
    for k in 0..kills {
        tokio::time::sleep(rng.ms(150, 1200)).await;
        srv.kill();
        tokio::time::sleep(rng.ms(0, 150)).await;
        let t = Instant::now();
        srv.spawn();
        let c = srv.wait_ready(READY_LIMIT).await;
        restarts.push(t.elapsed());
        let snapshot = acked.lock().unwrap().clone();
        check_none_lost(&c, &ids, &snapshot, &format!("after kill {}", k + 1)).await;
    }
    // Some work on the last incarnation, then stop the load.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let stats = admin_task.await.expect("admin worker");
    let (late, enroll_attempts) = enroller.await.expect("enroller");
    let mut devices = Vec::new();
    for t in dev_tasks {
        devices.push(t.await.expect("device worker"));
    }

    // A graceful stop and a clean restart, then sessions until every queue is empty.
    let status = srv.stop(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "graceful stop: {status:?}\n{}",
        srv.log_tail()
    );
    srv.spawn();
    let admin = srv.wait_ready(READY_LIMIT).await;
    for d in &mut devices {
        let mut drained = false;
        for _ in 0..20 {
            match d.session(0).await {
                Outcome::Empty => {
                    drained = true;
                    break;
                }
                Outcome::Completed => {}
                Outcome::Aborted => panic!(
                    "{}: session failed while draining: {:?}",
                    d.md.device_id, d.errors
                ),
            }
        }
        assert!(drained, "{} not drained after 20 sessions", d.md.device_id);
    }

    // Devices enrolled under kills: recorded with the serial they hold, and they can check in.
    let mut late_devices = Vec::new();
    let mut problems = Vec::new();
    for (j, e) in late.iter().enumerate() {
        let mut d = CrashDevice::new(&srv, e, seed ^ (0x1A7E + j as u64));
        if d.session(0).await != Outcome::Empty {
            problems.push(format!(
                "late device {}: session {:?}",
                d.md.device_id, d.errors
            ));
        }
        let (st, rec) = try_admin(
            &admin,
            "GET",
            &format!("/api/v1/devices/{}", d.md.device_id),
            None,
        )
        .await
        .expect("device record");
        if st != 200 || rec["cert_serial"] != d.cert_serial.as_str() || rec["state"] != "enrolled" {
            problems.push(format!(
                "late device {}: {st} {rec}, holds {}",
                d.md.device_id, d.cert_serial
            ));
        }
        late_devices.push(d);
    }

    // Checks.
    let acked = acked.lock().unwrap().clone();
    println!(
        "{:<34} {:>6} {:>9} {:>6} {:>5} {:>6} {:>5} {:>8} {:>8} {:>6}",
        "device",
        "acked",
        "delivered",
        "ended",
        "lost",
        "redel",
        "dups",
        "sess_ok",
        "aborted",
        "cert"
    );
    let (mut a_total, mut d_total, mut lost_total, mut redel_total, mut dup_total) =
        (0, 0, 0, 0, 0);
    for (i, d) in devices.iter().enumerate() {
        let full = server_commands_full(&admin, &d.md.device_id).await;
        // What each acknowledged command must end as: its state, status and Get result.
        for id in &acked[i] {
            let want_status = device_status(id);
            let want_state = if want_status == 200 { "done" } else { "failed" };
            let want_result = (is_get(id) && want_status == 200).then(|| id.clone());
            match full.get(id) {
                Some((state, status, result))
                    if state == want_state
                        && *status == Some(u64::from(want_status))
                        && *result == want_result => {}
                other => problems.push(format!(
                    "{}: {id} ended {other:?}, expected {want_state}/{want_status} result {want_result:?}",
                    d.md.device_id
                )),
            }
        }
        let have: BTreeMap<String, String> =
            full.into_iter().map(|(k, (st, _, _))| (k, st)).collect();
        let delivered = acked[i]
            .iter()
            .filter(|id| d.ledger.delivered.contains_key(*id))
            .count();
        let done = acked[i]
            .iter()
            .filter(|id| matches!(have.get(*id).map(String::as_str), Some("done" | "failed")))
            .count();
        let lost = acked[i]
            .iter()
            .filter(|id| {
                !d.ledger.delivered.contains_key(*id)
                    || !matches!(have.get(*id).map(String::as_str), Some("done" | "failed"))
            })
            .count();
        let (st, rec) = try_admin(
            &admin,
            "GET",
            &format!("/api/v1/devices/{}", d.md.device_id),
            None,
        )
        .await
        .expect("device record");
        assert_eq!(st, 200, "{rec}");
        let cert_ok = rec["cert_serial"] == d.cert_serial.as_str() && rec["state"] == "enrolled";
        println!(
            "{:<34} {:>6} {:>9} {:>6} {:>5} {:>6} {:>5} {:>8} {:>8} {:>6}",
            d.md.device_id,
            acked[i].len(),
            delivered,
            done,
            lost,
            d.ledger.redeliveries,
            d.ledger.dup_after_status.len(),
            d.sessions_ok,
            d.sessions_aborted,
            if cert_ok { "ok" } else { "WRONG" }
        );
        if !cert_ok {
            problems.push(format!(
                "{}: recorded {rec}, device has {}",
                d.md.device_id, d.cert_serial
            ));
        }
        problems.extend(d.errors.iter().map(|e| format!("{}: {e}", d.md.device_id)));
        problems.extend(
            d.ledger
                .dup_after_status
                .iter()
                .map(|e| format!("{}: {e}", d.md.device_id)),
        );
        // Anything the server has that the device never saw, or that is not done.
        for (id, state) in &have {
            if state != "done" && state != "failed" {
                problems.push(format!(
                    "{}: {id} is {state} after draining",
                    d.md.device_id
                ));
            }
        }
        a_total += acked[i].len();
        d_total += delivered;
        lost_total += lost;
        redel_total += d.ledger.redeliveries;
        dup_total += d.ledger.dup_after_status.len();
    }
    let retransmits: u32 = devices.iter().map(|d| d.retransmits).sum();
    let split: u32 = devices.iter().map(|d| d.split_sessions).sum();
    let gets = acked.iter().flatten().filter(|id| is_get(id)).count();
    let refused = acked
        .iter()
        .flatten()
        .filter(|id| device_status(id) != 200)
        .count();
    println!(
        "mix: {gets} Gets answered with Results, {refused} commands refused with 404, {split} sessions split over several messages (MaxMsgSize 1400)"
    );
    assert!(
        kills < 5 || (gets > 0 && refused > 0 && split > 0),
        "the run did not exercise Gets, refusals and split sessions"
    );
    let aborted: u32 = devices.iter().map(|d| d.sessions_aborted).sum();
    let restart_max = restarts.iter().max().copied().unwrap_or_default();
    println!(
        "admin: attempted {}, 201 {}, 200 existing after a cut POST {}, failed POST attempts {}; devices: {} retransmissions, {} sessions given up; restarts: max {:?}",
        stats.attempted, stats.created, stats.existing_after_cut, stats.cut, retransmits, aborted, restart_max
    );
    println!(
        "kills survived: {kills}, commands acknowledged: {a_total}, delivered: {d_total}, lost: {lost_total}, duplicates after recorded status: {dup_total}, re-deliveries (at-least-once): {redel_total}, run time: {:.1?}",
        t0.elapsed()
    );
    problems.extend(stats.errors.iter().cloned());

    // The store, opened after the child exited: every device's serial is recorded, not revoked.
    let status = srv.stop(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "final stop: {status:?}"
    );
    let store = winmdm::store::redb::RedbStore::open(&data).expect("store opens");
    for d in devices.iter().chain(&late_devices) {
        let cert = store.get_cert(&d.cert_serial).expect("get_cert");
        match cert {
            Some(c) if c.device_id == d.md.device_id && c.revoked_at.is_none() => {}
            other => problems.push(format!(
                "{}: cert {} in store: {other:?}",
                d.md.device_id, d.cert_serial
            )),
        }
        let dev = store.get_device(&d.md.device_id).expect("get_device");
        if dev.as_ref().map(|x| x.cert_serial.as_str()) != Some(d.cert_serial.as_str()) {
            problems.push(format!("{}: device record {dev:?}", d.md.device_id));
        }
    }
    // The child's own output (RUST_LOG=warn): no panic, no error, across all starts.
    let log = std::fs::read_to_string(&srv.log_path).unwrap_or_default();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("panicked") || l.contains("ERROR"))
        .collect();
    println!(
        "child log: {} lines over {} starts, {} with a panic or ERROR",
        log.lines().count(),
        srv.starts,
        bad.len()
    );
    problems.extend(bad.iter().map(|l| format!("child log: {l}")));
    let certs = store.count_certs().expect("count");
    println!(
        "certificates: {} devices hold one ({} enrolled under kills in {enroll_attempts} attempts), all recorded and current; {certs} recorded in all",
        devices.len() + late_devices.len(),
        late_devices.len()
    );
    assert!(
        certs >= u64::from(DEVICES + LATE_DEVICES),
        "fewer certificates recorded than devices hold"
    );
    assert_eq!(srv.starts, kills + 2, "starts");
    assert_eq!(lost_total, 0, "acknowledged commands lost: {problems:#?}");
    assert_eq!(
        dup_total, 0,
        "duplicates after a recorded Status: {problems:#?}"
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(a_total > 0 && d_total == a_total, "nothing exercised");
}

/// The bookkeeping itself: a repeat before the Status was confirmed is at-least-once, a repeat
/// after it is a duplicate.
#[test]
fn ledger_tells_redelivery_from_duplicate() {
    let mut l = Ledger::default();
    l.received("a", 1);
    l.received("a", 2); // the reply to its Status never arrived: allowed
    assert_eq!((l.redeliveries, l.dup_after_status.len()), (1, 0));
    l.confirm(["a".to_string()]);
    l.received("a", 3);
    assert_eq!((l.redeliveries, l.dup_after_status.len()), (1, 1));
    l.received("b", 3);
    assert_eq!(l.delivered["b"], 1);
    assert_eq!((l.redeliveries, l.dup_after_status.len()), (1, 1));
}
