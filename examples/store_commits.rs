//! Commits per second of the embedded stores, in one run: redb with group commit (every commit
//! `fdatasync`ed) against sled 0.34 (`flush()`, i.e. `sync_file_range`: not power-loss durable),
//! with 1 to 64 threads each committing management rounds (a session-state write and a command
//! state change, as a real round does) on a file in a temporary directory.
//!
//! ```sh
//! cargo run --release --example store_commits -- --seconds 3
//! cargo run --release --example store_commits -- --seconds 3 --webhook   # redb with and without
//!                                                  # a webhook event in every round (the outbox)
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use winmdm::store::redb::RedbStore;
use winmdm::store::sled::SledStore;
use winmdm::store::{CommandRecord, CommandState, Enqueued, Round, Store};

#[derive(Parser, Debug)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    threads: Vec<usize>,
    /// Measure redb again with webhook recording on: each round also appends the
    /// `command.completed` event of its command to the device's outbox (instead of sled).
    #[arg(long)]
    webhook: bool,
}

fn round(store: &dyn Store, dev: &str, n: u64, events: bool) -> Round {
    let id = format!("c{n}");
    let cmd = CommandRecord {
        command_id: id.clone(),
        device_id: dev.into(),
        verb: "Replace".into(),
        syncml: "<Replace/>".into(),
        state: CommandState::Pending,
        created_at: 1,
        ..CommandRecord::default()
    };
    let queued = match store.enqueue(cmd) {
        Ok(Enqueued::Created(c)) | Ok(Enqueued::Existing(c)) => c,
        Err(e) => panic!("enqueue: {e}"),
    };
    let mut done = queued;
    done.state = CommandState::Done;
    done.status = Some(200);
    Round {
        events: if events {
            vec![winmdm::store::outbox::command_completed(&done)]
        } else {
            Vec::new()
        },
        commands: vec![done],
        session: Some((dev.into(), format!("s{n}"), Some(vec![b'x'; 512]))),
        ..Round::default()
    }
}

fn measure(name: &str, store: Arc<dyn Store>, threads: usize, secs: u64, events: bool) {
    let rounds = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (store, rounds) = (store.clone(), rounds.clone());
            std::thread::spawn(move || {
                let dev = format!("DEV{t}");
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let r = round(store.as_ref(), &dev, n, events);
                    store.commit_round(&r, 2).expect("commit");
                    n += 1;
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    let n = rounds.load(Ordering::Relaxed);
    let s = t0.elapsed().as_secs_f64();
    // Each round is two writes (the enqueue and the round commit).
    println!(
        "{name:<28} threads={threads:<3} rounds/s={:>7.0} writes/s={:>7.0}",
        n as f64 / s,
        2.0 * n as f64 / s
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    for &threads in &args.threads {
        let dir = tempfile::tempdir()?;
        let redb = Arc::new(RedbStore::open(dir.path())?);
        measure(
            "redb (fdatasync, grouped)",
            redb.clone(),
            threads,
            args.seconds,
            false,
        );
        let st = redb.commit_stats();
        println!(
            "{:<28} commits={} writes={} writes/commit={:.1} max batch={}",
            "",
            st.commits,
            st.writes,
            st.writes as f64 / st.commits.max(1) as f64,
            st.max_batch
        );
        drop(redb);
        let dir = tempfile::tempdir()?;
        if args.webhook {
            let redb = Arc::new(RedbStore::open(dir.path())?);
            winmdm::store::outbox::set_enabled(redb.as_ref(), true)?;
            measure(
                "redb + webhook events",
                redb.clone(),
                threads,
                args.seconds,
                true,
            );
            println!(
                "{:<28} events pending={}",
                "",
                winmdm::store::outbox::depth(redb.as_ref())?
            );
            continue;
        }
        let sled = Arc::new(SledStore::open(dir.path())?);
        measure(
            "sled (flush, not durable)",
            sled,
            threads,
            args.seconds,
            false,
        );
    }
    Ok(())
}
