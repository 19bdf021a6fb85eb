//! Measures the PostgreSQL store: management rounds committed per second from N threads (each
//! a device of its own, one SERIALIZABLE transaction per round, as the server does), and the
//! cost of the synchronous bridge: one primary-key read through `PgStore` (caller thread drives
//! the client future, a private runtime owns the socket) against the same prepared read from
//! an async task on a tokio runtime.
//!
//! `cargo run --release --example pg_store_bench -- postgres://root@127.0.0.1/<scratch-db> [threads…]`
//! The database must be empty or hold only this benchmark's rows (it creates the schema).

use std::sync::Arc;
use std::time::Instant;

use winmdm::store::pg::{PgOptions, PgStore};
use winmdm::store::{
    CertRecord, CommandQueue, CommandRecord, CommandState, Device, DeviceStore, Round, RoundGuard,
    SessionIndex, SessionStore,
};

fn device(id: &str) -> Device {
    Device {
        device_id: id.into(),
        enrollment_type: "Full".into(),
        cert_serial: format!("s-{id}"),
        ..Default::default()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: pg_store_bench postgres://…/scratch-db [threads…]")?;
    let threads: Vec<usize> = {
        let v: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
        if v.is_empty() {
            vec![1, 4, 16]
        } else {
            v
        }
    };
    let max = threads.iter().copied().max().unwrap_or(1);
    let store = Arc::new(PgStore::connect(
        &url,
        &PgOptions {
            max_connections: max,
            ..PgOptions::default()
        },
    )?);
    let run = winmdm::clock::random_hex(3);
    for t in 0..max {
        let id = format!("bench-{run}-{t}");
        let cert = CertRecord {
            serial: format!("s-{id}"),
            device_id: id.clone(),
            thumbprint: "AB".into(),
            issued_at: 0,
            not_after: 0,
            revoked_at: None,
            revoke_reason: None,
        };
        store.record_enrollment(&device(&id), &cert, 0, None)?;
    }
    let secs = 3.0;
    for &n in &threads {
        let start = Instant::now();
        let done: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .map(|t| {
                    let store = store.clone();
                    let id = format!("bench-{run}-{t}");
                    s.spawn(move || {
                        let mut rounds = 0u64;
                        let mut generation = store
                            .get_session(&id, "")
                            .ok()
                            .flatten()
                            .and_then(|b| serde_json::from_slice::<SessionIndex>(&b).ok())
                            .map_or(0, |i| i.generation);
                        while start.elapsed().as_secs_f64() < secs {
                            let cid = format!("c{rounds}");
                            let Ok(winmdm::store::Enqueued::Created(mut cmd)) =
                                store.enqueue(CommandRecord {
                                    command_id: cid.clone(),
                                    device_id: id.clone(),
                                    verb: "Get".into(),
                                    syncml: "<Get/>".into(),
                                    ..Default::default()
                                })
                            else {
                                continue;
                            };
                            cmd.state = CommandState::Done;
                            let round = Round {
                                device: Some(device(&id)),
                                commands: vec![cmd],
                                read_states: vec![(cid, CommandState::Pending)],
                                session: Some((id.clone(), "1".into(), Some(vec![0; 512]))),
                                guard: Some(RoundGuard {
                                    device_id: id.clone(),
                                    generation,
                                    index: SessionIndex::default(),
                                    drop: Vec::new(),
                                }),
                                revoke: Vec::new(),
                                events: Vec::new(),
                                lazy_sync: false,
                            };
                            if store.commit_round(&round, 1).ok()
                                == Some(winmdm::store::RoundCommit::Committed)
                            {
                                generation += 1;
                                rounds += 1;
                            }
                        }
                        rounds
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        let el = start.elapsed().as_secs_f64();
        println!(
            "threads {n:>3}: {done} rounds (enqueue + commit_round) in {el:.1}s = {:.0} rounds/s",
            done as f64 / el
        );
    }

    // The bridge: PgStore::get_device (sync) vs the same read awaited on a tokio runtime.
    let id = format!("bench-{run}-0");
    let n = 5000;
    let t = Instant::now();
    for _ in 0..n {
        store.get_device(&id)?;
    }
    let sync_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let async_us = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let st = client
            .prepare("SELECT doc::text FROM devices WHERE device_id = $1")
            .await?;
        let t = Instant::now();
        for _ in 0..n {
            client.query_opt(&st, &[&id]).await?;
        }
        Ok::<_, tokio_postgres::Error>(t.elapsed().as_secs_f64() * 1e6 / n as f64)
    })?;
    println!(
        "get_device: {sync_us:.1} µs through the sync bridge (incl. pool checkout, JSON decode), \
         {async_us:.1} µs for the bare query awaited on tokio"
    );
    Ok(())
}
