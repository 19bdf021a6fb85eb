//! The cluster under SIGKILLs: three `winmdm serve` processes on one PostgreSQL database,
//! devices checking in (each message to the next node, failing over as a load balancer does),
//! an admin queueing through any node and devices enrolling, while nodes are SIGKILLed and
//! restarted at random moments and the database goes away once (a restart of PostgreSQL when
//! nobody else uses the server, else every connection of the test database terminated).
//!
//! Run by hand: it may restart the PostgreSQL server, which other tests (and other users of the
//! server) would feel. `WINMDM_CLUSTER_CRASH=1 cargo test --test main cluster::crash --
//! --nocapture`; `WINMDM_CLUSTER_CRASH_KILLS` (default 8), `WINMDM_CLUSTER_CRASH_SEED`,
//! `WINMDM_CLUSTER_CRASH_PG=restart|terminate|auto` (default `auto`: restart only when no other
//! database of the server has a connection).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::processes::{clients_for, copy_dir, session_retrying, states, Ledger, PREFIX, READY};
use crate::support::child::{try_admin, try_enroll, ChildServer};
use crate::support::device::{DeviceInfo, Enrolled};
use crate::support::mdm_device::ManagedDevice;
use crate::support::pg::{exec, server_url, TestDb};
use crate::support::Client;

const DEVICES: u32 = 4;
const LATE: u32 = 3;

/// xorshift64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

fn serial_of(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("certificate");
    c.tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Connections to other databases of the server than `ours` (other users of the server).
fn others_connected(ours: &str) -> Option<u64> {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "root", "-d", "postgres", "-Atc"])
        .arg(format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname IS NOT NULL \
             AND datname <> '{ours}' AND pid <> pg_backend_pid()"
        ))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Takes the database away once: `restart` (the whole server) or `terminate` (every
/// connection of database `db`). Returns what was done.
fn database_outage(db: &TestDb, mode: &str) -> String {
    let restart = match mode {
        "restart" => true,
        "terminate" => false,
        _ => others_connected(db.name()) == Some(0),
    };
    if restart {
        let t = Instant::now();
        let st = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", "15", "main", "restart"])
            .status();
        assert!(
            st.as_ref().is_ok_and(|s| s.success()),
            "pg_ctlcluster restart: {st:?}"
        );
        format!("PostgreSQL restarted ({:?})", t.elapsed())
    } else {
        exec(
            &server_url(),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                db.name()
            ),
        )
        .expect("terminate");
        "every connection of the test database terminated (the server is shared)".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_sigkills_and_a_database_outage_lose_nothing() {
    if std::env::var("WINMDM_CLUSTER_CRASH").as_deref() != Ok("1") {
        println!("SKIP: set WINMDM_CLUSTER_CRASH=1 to run the cluster crash test (it may restart PostgreSQL)");
        return;
    }
    let Some(db) = TestDb::create("cluster crash") else {
        return;
    };
    let kills: u32 = env_or("WINMDM_CLUSTER_CRASH_KILLS", 8);
    let seed: u64 = env_or("WINMDM_CLUSTER_CRASH_SEED", 20_261_204);
    let mode = std::env::var("WINMDM_CLUSTER_CRASH_PG").unwrap_or_else(|_| "auto".into());
    println!("cluster crash test: {kills} kills, seed {seed}, database outage: {mode}");
    let limit = Duration::from_secs(180 + 20 * u64::from(kills));
    tokio::time::timeout(limit, run(&db, kills, seed, &mode))
        .await
        .unwrap_or_else(|_| panic!("cluster crash test exceeded {limit:?}"));
}

async fn run(db: &TestDb, kills: u32, seed: u64, mode: &str) {
    let t0 = Instant::now();
    let mut rng = Rng(seed | 1);
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
    let mut nodes = vec![node(0)];
    nodes[0].spawn();
    let mut admins = vec![nodes[0].wait_ready(READY).await];
    for i in 1..3 {
        let n = node(i);
        copy_dir(&nodes[0].data_dir, &n.data_dir);
        nodes.push(n);
        nodes[i].spawn();
        admins.push(nodes[i].wait_ready(READY).await);
    }
    let (st, b) = try_admin(
        &admins[0],
        "POST",
        "/api/v1/users",
        Some(json!({"upn": "crash@contoso.com", "password": "pw-123456"})),
    )
    .await
    .unwrap();
    assert_eq!(st, 201, "{b}");
    let refs: Vec<&ChildServer> = nodes.iter().collect();
    let mut enrolled: Vec<Enrolled> = Vec::new();
    for n in 0..DEVICES {
        let info = DeviceInfo::new(300 + n, "crash@contoso.com", "pw-123456");
        enrolled.push(crate::support::device::enroll(&admins[n as usize % 3], &info).await);
    }
    let ids: Vec<String> = enrolled.iter().map(|e| e.device_id.clone()).collect();
    let devices: Vec<(ManagedDevice, Vec<Client>)> = enrolled
        .iter()
        .map(|e| {
            let mut md = ManagedDevice::at(nodes[0].addr, e);
            md.max_msg_size = Some(2000);
            (md, clients_for(e, &refs))
        })
        .collect();
    drop(refs);

    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let acked = Arc::new(Mutex::new(BTreeSet::<(usize, String)>::new()));
    // The admin: one command at a time to a random device through the next node; a request
    // without an answer (or a 503) goes again, same id, to the next node.
    let admin = {
        let (stop, acked, admins, ids) = (stop.clone(), acked.clone(), admins.clone(), ids.clone());
        let mut rng = Rng(seed ^ 0xAD);
        tokio::spawn(async move {
            let (mut attempts, mut cut) = (0u64, 0u64);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let d = rng.below(ids.len() as u64) as usize;
                let id = format!("c{n:05}");
                let mut k = rng.below(3) as usize;
                loop {
                    attempts += 1;
                    let r = try_admin(
                        &admins[k % 3],
                        "POST",
                        &format!("/api/v1/devices/{}/commands", ids[d]),
                        Some(json!({"verb": "Replace", "target": format!("{PREFIX}{id}"),
                            "format": "chr", "data": "x", "command_id": id})),
                    )
                    .await;
                    match r {
                        Some((201 | 200, _)) => {
                            acked.lock().unwrap().insert((d, id.clone()));
                            break;
                        }
                        // No answer, or the database away (503): the same id again,
                        // idempotent.
                        Some((503, _)) | None => {
                            cut += 1;
                            k += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Some((st, b)) => panic!("enqueue {id}: {st} {b}"),
                    }
                }
                tokio::time::sleep(rng.ms(5, 30)).await;
            }
            (attempts, cut)
        })
    };
    let mut workers = Vec::new();
    for (i, (md, clients)) in devices.into_iter().enumerate() {
        let (stop, ledger) = (stop.clone(), ledger.clone());
        let mut rng = Rng(seed ^ (i as u64 + 7));
        workers.push(tokio::spawn(async move {
            let (mut ok, mut aborted, mut s) = (0u32, Vec::new(), 1u32);
            while !stop.load(Ordering::Relaxed) {
                let first = rng.below(3) as usize;
                match session_retrying(&md, &clients, first, s, &ledger, 40).await {
                    Ok(_) => ok += 1,
                    Err(e) => aborted.push(e),
                }
                s += 1;
                tokio::time::sleep(rng.ms(0, 40)).await;
            }
            (md, clients, ok, aborted, s)
        }));
    }
    let late = {
        let admins = admins.clone();
        let mut rng = Rng(seed ^ 0xE1);
        tokio::spawn(async move {
            let mut out = Vec::new();
            for j in 0..LATE {
                tokio::time::sleep(rng.ms(200, 1500)).await;
                let info = DeviceInfo::new(400 + j, "crash@contoso.com", "pw-123456");
                let mut k = j as usize;
                let e = loop {
                    if let Some(e) = try_enroll(&admins[k % 3], &info).await {
                        break e;
                    }
                    k += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                out.push(e);
            }
            out
        })
    };

    let mut restarts = Vec::new();
    let mut outage = String::new();
    for k in 0..kills {
        tokio::time::sleep(rng.ms(300, 1500)).await;
        if k == kills / 2 {
            outage = tokio::task::block_in_place(|| database_outage(db, mode));
            println!("{:?}: {outage}", t0.elapsed());
        }
        let i = rng.below(3) as usize;
        nodes[i].kill();
        tokio::time::sleep(rng.ms(0, 300)).await;
        let t = Instant::now();
        nodes[i].spawn();
        nodes[i].wait_ready(READY).await;
        restarts.push(t.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (attempts, cut) = admin.await.unwrap();
    let late = late.await.unwrap();
    let mut ended = Vec::new();
    for w in workers {
        ended.push(w.await.unwrap());
    }

    // Drain: sessions until each device gets nothing (one message).
    let mut s_total = (0u32, 0usize);
    for (md, clients, ok, aborted, s) in &mut ended {
        s_total.0 += *ok;
        s_total.1 += aborted.len();
        let mut drained = false;
        for _ in 0..20 {
            *s += 1;
            if session_retrying(md, clients, 0, *s, &ledger, 0)
                .await
                .unwrap()
                == 1
            {
                drained = true;
                break;
            }
        }
        assert!(drained, "{} not drained", md.device_id);
    }
    let (delivered, after, redelivered) = {
        let l = ledger.lock().unwrap();
        let delivered = l.delivered();
        let n = l.deliveries.len() - delivered.len();
        (delivered, l.after_status(), n)
    };
    let acked = acked.lock().unwrap().clone();
    let lost: Vec<_> = acked
        .iter()
        .filter(|(_, id)| !delivered.contains(id))
        .collect();
    let mut not_done = Vec::new();
    for (d, dev) in ids.iter().enumerate() {
        let st = states(&admins[d % 3], dev).await;
        for (_, id) in acked.iter().filter(|(x, _)| *x == d) {
            if st.get(id).map(String::as_str) != Some("done") {
                not_done.push(format!("{dev}/{id}: {:?}", st.get(id)));
            }
        }
    }
    // Every issued certificate recorded: the devices hold the serial the store has.
    let mut serials_bad = Vec::new();
    for e in enrolled.iter().chain(late.iter()) {
        let (st, rec) = try_admin(
            &admins[0],
            "GET",
            &format!("/api/v1/devices/{}", e.device_id),
            None,
        )
        .await
        .unwrap();
        if st != 200 || rec["cert_serial"] != serial_of(&e.cert_der).as_str() {
            serials_bad.push(format!("{}: {st} {rec}", e.device_id));
        }
    }
    let slowest = restarts.iter().max().copied().unwrap_or_default();
    println!(
        "cluster crash: {:?}; {kills} kills (slowest restart {slowest:?}), {outage}; \
         {} commands acknowledged ({attempts} POSTs, {cut} cut or 503), {} delivered, {} lost, \
         {} delivered after their Status was recorded, {redelivered} re-deliveries before it, \
         {} not done; {} sessions completed, {} given up; {} certificates issued ({} late), {} \
         not recorded",
        t0.elapsed(),
        acked.len(),
        acked
            .iter()
            .filter(|(_, id)| delivered.contains(id))
            .count(),
        lost.len(),
        after.len(),
        not_done.len(),
        s_total.0,
        s_total.1,
        enrolled.len() + late.len(),
        late.len(),
        serials_bad.len(),
    );
    for (md, _, _, aborted, _) in &ended {
        for e in aborted.iter().take(3) {
            println!("  {} gave up: {e}", md.device_id);
        }
    }
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(after.is_empty(), "delivered after Status: {after:?}");
    assert!(not_done.is_empty(), "{not_done:?}");
    assert!(serials_bad.is_empty(), "{serials_bad:?}");
    for n in &mut nodes {
        n.stop(Duration::from_secs(10));
    }
}
