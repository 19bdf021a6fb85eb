//! Management load generator: N simulated enrolled devices check in over mutual TLS, each
//! session receiving the commands queued for it, against an in-process winmdm server (default)
//! or against running `winmdm serve` processes (`--target`).
//!
//! ```sh
//! cargo run --release --example loadgen -- --devices 1000 --sessions 5000 --concurrency 64 --commands 2
//! cargo run --release --example loadgen -- --devices 1000 --sessions 5000 --reuse     # keep-alive connections
//! cargo run --release --example loadgen -- --enqueue-only --devices 100000            # enqueue cost at scale
//! cargo run --release --example loadgen -- --soak --devices 10000 --rate 50 --seconds 1800 # soak, RSS over time
//! ```
//!
//! Each session is what Windows does: package 1 (Alert 1201, LoginStatus, DevInfo Replace), then
//! one message answering every command (Status, Results for Gets), until the server has nothing
//! more. Without `--reuse` every session opens a new TCP connection and makes a full TLS
//! handshake (resumption off; `--resume` lets each device resume its previous TLS session
//! instead); with `--reuse` each worker keeps one HTTP/1.1 connection per device it serves.
//! In-process, devices get EC P-256 identity keys issued straight by the CA into the store
//! (enrollment cost is not what this measures).
//! Traffic goes to 127.0.0.1 only; the run is bounded by `--sessions` and `--seconds`.
//!
//! External mode (`winmdm::testkit::load::run_external`), the server's CPU measured apart:
//!
//! ```sh
//! winmdm serve --data-dir /tmp/a --listen 127.0.0.1:28443 --public-url https://localhost:28443 &
//! WINMDM_ADMIN_TOKEN=$(cat /tmp/a/admin-token) loadgen --target https://localhost:28443 \
//!     --ca /tmp/a/ca/ca.pem --devices 500 --sessions 4000 --concurrency 64 --commands 2 --reuse \
//!     --server-pid $!
//! # several servers: devices spread round-robin; tokens and CAs one for all or one per target
//! loadgen --target https://localhost:28443,https://localhost:29443 --token $TA,$TB \
//!     --ca /tmp/a/ca/ca.pem,/tmp/b/ca/ca.pem …
//! ```
//!
//! - Accounts: on every target loadgen creates one bulk-enrollment account
//!   (`windows-bulkenroll-load-<random>@loadgen.example`, `POST /api/v1/users`; 409 accepted, for
//!   targets sharing a store) and downloads a provisioning package for it
//!   (`GET /api/v1/bulk-enrollment/package`), whose package secret its devices enroll with, as
//!   devices applying a `.ppkg` do. Bulk accounts are not subject to `--max-devices-per-user`.
//!   Each run leaves its account and its devices on the servers.
//! - Enrollment: device i through target i % n, discovery → policy → enrollment (MS-MDE2, XCEP,
//!   WSTEP) with a fresh EC P-256 key, `--enroll-concurrency` at once; sessions go to the
//!   provisioning document's w7 `ADDR`.
//! - Commands: before each pass, `--commands` per device through the admin API of the device's
//!   target (`POST /api/v1/devices/{id}/commands`), `--enqueue-concurrency` at once, timed apart.
//! - Sessions as in-process; `--hop` sends message k of a session to target (home + k) % n
//!   (nodes sharing one store; with one target it changes nothing).
//! - Report: sessions/s, p50/p99/max, errors by kind (first five printed), per target; with
//!   `--server-pid`, the servers' utime + stime (`/proc/<pid>/stat`) per phase: CPU-seconds per
//!   1,000 sessions and the share of one core, and this process's own CPU in the sessions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use winmdm::ca::{self, KeyAlgorithm};
use winmdm::mdm::commands::{self, NewCommand};
use winmdm::store::{CertRecord, Device, DeviceState};
use winmdm::testkit::load::{self, percentile, Endpoint, Mgmt, Sender};

/// The allocator `winmdm serve` uses (see src/main.rs), so that in-process runs and the soak
/// measure the server as it runs.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
struct Args {
    /// Simulated enrolled devices.
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Sessions to run in total (bounded).
    #[arg(long, default_value_t = 2000)]
    sessions: usize,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Commands queued per device before each pass over the devices.
    #[arg(long, default_value_t = 1)]
    commands: usize,
    /// Bytes of data per queued command.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Keep one connection per device (no new TLS handshake per session).
    #[arg(long)]
    reuse: bool,
    /// A new connection per session that resumes the device's previous TLS session (a device
    /// returning within the server's ticket lifetime); without it every new connection makes a
    /// full handshake.
    #[arg(long, conflicts_with = "reuse")]
    resume: bool,
    /// Stop after this many seconds even if sessions remain.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Only measure enqueueing one command for every device (records made directly in the store).
    #[arg(long)]
    enqueue_only: bool,
    /// Soak mode: for `--seconds`, start sessions at `--rate` per second on random devices
    /// (each gets `--commands` fresh commands queued just before its session) and print one
    /// line per `--report-every` seconds: sessions/s, p50/p99, errors, RSS, store size.
    #[arg(long)]
    soak: bool,
    /// Soak: sessions started per second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Soak: seconds per report line.
    #[arg(long, default_value_t = 60)]
    report_every: u64,
    /// The server's `--command-retention` (e.g. `5m`: answered commands older than five minutes
    /// are deleted by the background sweep, every 30 s); the server's default otherwise.
    #[arg(long)]
    command_retention: Option<String>,
    /// The server's `--store-cache-mb`.
    #[arg(long)]
    store_cache_mb: Option<u64>,
    /// Alternate passes with the in-process per-device round lock on and off (the store's
    /// optimistic check stays on) and report sessions/s of each: what the lock costs.
    #[arg(long)]
    compare_round_lock: bool,
    /// Alternate passes with metrics recording on and off (`Metrics::set_enabled`; the store
    /// is wrapped either way) and report sessions/s of each: what recording the metrics costs.
    #[arg(long)]
    compare_metrics: bool,
    /// Alternate passes with every device traced (device traces: each exchange recorded,
    /// redacted, in the store) and with nothing traced, and report sessions/s of each: what
    /// recording costs. At most 1,000 devices (the trace rule bound).
    #[arg(long)]
    compare_tracing: bool,
    /// External mode: drive these running `winmdm serve` processes (their public base URLs,
    /// comma-separated) instead of an in-process server. Devices enroll through the real
    /// endpoints, device i through target i % n.
    #[arg(long, value_delimiter = ',')]
    target: Vec<String>,
    /// External mode: admin token (one for all targets, or comma-separated, one per target);
    /// default the content of `./winmdm-data/admin-token`.
    #[arg(
        long,
        env = "WINMDM_ADMIN_TOKEN",
        hide_env_values = true,
        value_delimiter = ','
    )]
    token: Vec<String>,
    /// External mode: PEM file(s) with the CA(s) the servers' TLS chains to (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "./winmdm-data/ca/ca.pem")]
    ca: Vec<std::path::PathBuf>,
    /// External mode: each message of a session goes to the next target's management endpoint
    /// (targets sharing one store; with one target it changes nothing).
    #[arg(long)]
    hop: bool,
    /// External mode: server process ids (comma-separated) whose CPU time is measured.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// External mode: concurrent enrollments.
    #[arg(long, default_value_t = 16)]
    enroll_concurrency: usize,
    /// In process: bound the runtime's blocking threads (tokio's default is 512; rounds and
    /// enqueues waiting on a group commit each hold one).
    #[arg(long)]
    max_blocking_threads: Option<usize>,
    /// Concurrent writers queueing commands (external mode: admin requests).
    #[arg(long, default_value_t = 32)]
    enqueue_concurrency: usize,
}

struct Sim {
    id: String,
    client: Arc<rustls::ClientConfig>,
}

fn device_record(id: &str, serial: &str, thumb: &str, not_after: i64, now: i64) -> Device {
    Device {
        device_id: id.into(),
        hw_dev_id: None,
        upn: Some("load@example.com".into()),
        enrollment_type: "Full".into(),
        device_type: Some("CIMClient_Windows".into()),
        os_version: Some("10.0.26100.1".into()),
        os_edition: Some("72".into()),
        device_name: None,
        application_version: None,
        locale: None,
        macs: vec![],
        not_in_oobe: None,
        ux_initiated: None,
        cert_serial: serial.into(),
        cert_thumbprint: thumb.into(),
        cert_not_after: not_after,
        enrolled_at: now,
        state: DeviceState::Enrolled,
        ..Default::default()
    }
}

/// `--target`: the simulated devices against running servers ([`load::run_external`]).
fn external(args: &Args, rt: &tokio::runtime::Runtime) -> Result<(), Box<dyn std::error::Error>> {
    if args.soak || args.enqueue_only || args.compare_round_lock || args.compare_tracing {
        return Err(
            "--soak, --enqueue-only, --compare-round-lock and --compare-tracing are in-process only"
                .into(),
        );
    }
    let tokens = if args.token.is_empty() {
        let t = std::fs::read_to_string("./winmdm-data/admin-token")
            .map_err(|e| format!("no --token and ./winmdm-data/admin-token: {e}"))?;
        vec![t.trim().to_string()]
    } else {
        args.token.clone()
    };
    let opts = load::ExternalOptions {
        targets: args.target.clone(),
        tokens,
        roots: load::read_pem_certs(&args.ca)?,
        devices: args.devices,
        sessions: args.sessions,
        concurrency: args.concurrency,
        commands: args.commands,
        size: args.size,
        reuse: args.reuse,
        resume: args.resume,
        hop: args.hop,
        seconds: args.seconds,
        enroll_concurrency: args.enroll_concurrency,
        enqueue_concurrency: args.enqueue_concurrency,
        server_pids: args.server_pid.clone(),
        verbose: true,
    };
    let report = rt.block_on(load::run_external(&opts))?;
    print!("{report}");
    Ok(())
}

/// The in-process server's management endpoint.
fn in_process_mgmt(addr: SocketAddr) -> Mgmt {
    Mgmt::new(
        Endpoint {
            addr,
            host: "localhost".into(),
        },
        "https://localhost/ManagementServer/MDM.svc",
    )
}

/// One session of `sim` on its kept connection (see [`load::session`]).
async fn session(
    mgmt: &Mgmt,
    sim: &Sim,
    conn: &mut Option<Sender>,
    session: u32,
) -> Result<usize, load::Failure> {
    load::session(
        &sim.id,
        &sim.client,
        &[mgmt],
        std::slice::from_mut(conn),
        session,
    )
    .await
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.max_blocking_threads {
        rt.max_blocking_threads(n.max(1));
    }
    let rt = rt.build()?;
    if !args.target.is_empty() {
        return external(&args, &rt);
    }
    let tmp = tempfile::tempdir()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let cfg = winmdm::config::ServeOptions {
        listen: Some(addr),
        public_url: Some(format!("https://localhost:{}", addr.port())),
        // Management (mutual TLS) on its own listener, on any free port (read back below).
        mgmt_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(tmp.path().to_path_buf()),
        ca_key_algorithm: Some("ecdsa-p256".into()),
        command_retention: args.command_retention.clone(),
        store_cache_mb: args.store_cache_mb,
        ..Default::default()
    }
    .resolve()?;
    let app = Arc::new(winmdm::app::App::open(cfg, Some("load".into()))?);
    let now = time::OffsetDateTime::now_utc();

    if args.enqueue_only {
        let t = Instant::now();
        // 16 writers: their commits are grouped (one fsync covers many records).
        let per = args.devices.div_ceil(16).max(1);
        std::thread::scope(|s| -> Result<(), Box<dyn std::error::Error>> {
            let hs: Vec<_> = (0..args.devices)
                .step_by(per)
                .map(|start| {
                    let app = app.clone();
                    let end = (start + per).min(args.devices);
                    s.spawn(move || -> Result<(), winmdm::store::StoreError> {
                        for i in start..end {
                            let id = format!("{:032X}", i);
                            let mut d = device_record(
                                &id,
                                &format!("s{i}"),
                                "00",
                                now.unix_timestamp() + 86_400,
                                now.unix_timestamp(),
                            );
                            if i % 100 == 0 {
                                d.os_edition = Some("136".into()); // 1 % HoloLens: a sparse filter
                            }
                            app.store.put_device(&d)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in hs {
                h.join().map_err(|_| "a seeding thread panicked")??;
            }
            Ok(())
        })?;
        println!(
            "created {} device records in {:.2?}",
            args.devices,
            t.elapsed()
        );
        use winmdm::store::{filtered_devices, DeviceFilter, DeviceState};
        let list = |name: &str, f: DeviceFilter| -> Result<(), Box<dyn std::error::Error>> {
            let t = Instant::now();
            let (first, _) = filtered_devices(app.store.as_ref(), None, 100, &f, 20_000)?;
            let first_t = t.elapsed();
            let t = Instant::now();
            let (mut n, mut pages, mut cursor) = (0usize, 0usize, None::<String>);
            loop {
                let (page, next) =
                    filtered_devices(app.store.as_ref(), cursor.as_deref(), 100, &f, 20_000)?;
                n += page.len();
                pages += 1;
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            println!(
                "list {name}: first page ({} devices) {:.2?}; all {n} matches in {pages} requests {:.2?}",
                first.len(),
                first_t,
                t.elapsed()
            );
            Ok(())
        };
        list("no filter", DeviceFilter::default())?;
        let dense = DeviceFilter {
            state: Some(DeviceState::Enrolled),
            ..Default::default()
        };
        list("state=enrolled (dense)", dense)?;
        let sparse = DeviceFilter {
            os_edition: Some("136".into()),
            ..Default::default()
        };
        list("os_edition=136 (1 %)", sparse)?;
        let ids: Vec<String> = (0..args.devices).map(|i| format!("{:032X}", i)).collect();
        let req = NewCommand {
            verb: Some("Replace".into()),
            target: Some(commands::TENANT_LOCKDOWN_URI.into()),
            format: Some("bool".into()),
            data: Some("true".into()),
            ..NewCommand::default()
        };
        let t = Instant::now();
        let out = commands::enqueue_many(&app, &ids, req.clone())?;
        let el = t.elapsed();
        println!(
            "bulk: queued TenantLockdown for {} devices in one call in {:.2?} ({:.1} µs per device)",
            out.len(),
            el,
            el.as_secs_f64() * 1e6 / args.devices as f64
        );
        let n = args.devices.min(2000);
        let t = Instant::now();
        for id in &ids[..n] {
            commands::enqueue(&app, id, req.clone())?;
        }
        let el = t.elapsed();
        println!(
            "one by one: {} devices in {:.2?} ({:.1} µs per device, one durable commit each)",
            n,
            el,
            el.as_secs_f64() * 1e6 / n as f64
        );
        // What a metrics scrape pays for the queue gauges when nothing is cached.
        let t = Instant::now();
        let st = app.store.queue_stats(winmdm::metrics::QUEUE_SCAN_LIMIT)?;
        let el = t.elapsed();
        let counted: u64 = st.counts.values().sum();
        println!(
            "queue_stats: {counted} unanswered commands counted in {el:.2?} ({:.2} µs each, complete={})",
            el.as_secs_f64() * 1e6 / counted.max(1) as f64,
            st.complete
        );
        return Ok(());
    }

    // Enroll the simulated devices directly through the CA and the store.
    let t = Instant::now();
    let mut sims = Vec::with_capacity(args.devices);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(app.ca.cert_der().to_vec()))?;
    let roots = Arc::new(roots);
    for i in 0..args.devices {
        let id = format!("{:032X}", 0x10AD_0000_0000u64 + i as u64);
        let (csr, key) = ca::testing::device_csr(&id, KeyAlgorithm::EcdsaP256);
        let v = ca::verify_csr(&csr, 2048)?;
        let cert = app
            .ca
            .issue_device_cert(&v, &id, Duration::from_secs(86_400 * 30), now)?;
        let rec = CertRecord {
            serial: cert.serial_hex.clone(),
            device_id: id.clone(),
            thumbprint: cert.thumbprint.clone(),
            issued_at: now.unix_timestamp(),
            not_after: cert.not_after.unix_timestamp(),
            revoked_at: None,
            revoke_reason: None,
        };
        let dev = device_record(
            &id,
            &cert.serial_hex,
            &cert.thumbprint,
            rec.not_after,
            now.unix_timestamp(),
        );
        app.store
            .record_enrollment(&dev, &rec, now.unix_timestamp(), None)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let client = load::tls_client(
            roots.clone(),
            Some((CertificateDer::from(cert.der), key)),
            args.resume,
        )?;
        sims.push(Sim { id, client });
    }
    println!("enrolled {} devices in {:.2?}", args.devices, t.elapsed());

    let server =
        rt.block_on(async { winmdm::http::Server::from_listener(app.clone(), listener) })?;
    // The simulated devices talk to the mutual-TLS management listener.
    let addr = server
        .mgmt_addr()
        .ok_or("the server has no management listener")?;
    let mgmt = Arc::new(in_process_mgmt(addr));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = rt.spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let sims = Arc::new(sims);
    if args.soak {
        let r = rt.block_on(soak(&args, mgmt, app.clone(), sims, tmp.path()));
        let _ = stop.send(());
        let _ = rt.block_on(server_task);
        return r;
    }
    // One kept-alive connection per device when --reuse (a device's next session reuses it).
    let conns: Arc<Vec<tokio::sync::Mutex<Option<Sender>>>> = Arc::new(
        (0..args.devices)
            .map(|_| tokio::sync::Mutex::new(None))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let data = "x".repeat(args.size);
    let rss_start = rss_kib();
    let started = Instant::now();
    let mut enqueue_time = Duration::ZERO;
    let mut enqueued = 0usize;
    // Bytes this process caused to be written to disk during the session phases.
    let mut session_disk_bytes = 0u64;
    // (commits, writers they carried) of the embedded store during the session phases.
    let mut session_commits = (0u64, 0u64, 0u64);
    // (sessions, session time) with the round lock on / off, for --compare-round-lock.
    let mut by_lock = [(0usize, Duration::ZERO); 2];
    // (sessions, session time) with metrics recording on / off, for --compare-metrics.
    let mut by_metrics = [(0usize, Duration::ZERO); 2];
    // (sessions, session time) with every device traced / none, for --compare-tracing.
    let mut by_tracing = [(0usize, Duration::ZERO); 2];
    let admin = winmdm::service::Actor {
        name: "loadgen".into(),
        role: winmdm::service::TokenRole::Admin,
    };
    let lat: Vec<Duration> = rt.block_on(async {
        let mut all = Vec::new();
        let passes = args.sessions.div_ceil(args.devices.max(1));
        for pass in 0..passes {
            if Instant::now() > deadline {
                break;
            }
            let t = Instant::now();
            // `--enqueue-concurrency` writers at once, as admins' requests would arrive: their
            // commits are grouped.
            let mut work = Vec::new();
            for s in sims.iter() {
                for k in 0..args.commands {
                    let verb = if k % 2 == 0 { "Replace" } else { "Get" };
                    work.push((
                        s.id.clone(),
                        NewCommand {
                            verb: Some(verb.into()),
                            target: Some(format!("./Vendor/MSFT/Load/P{pass}/N{k}")),
                            format: (verb == "Replace").then(|| "chr".to_string()),
                            data: (verb == "Replace").then(|| data.clone()),
                            ..NewCommand::default()
                        },
                    ));
                }
            }
            enqueued += work.len();
            let per = work.len().div_ceil(args.enqueue_concurrency.max(1)).max(1);
            let mut writers = Vec::new();
            while !work.is_empty() {
                let chunk: Vec<_> = work.drain(..per.min(work.len())).collect();
                let app = app.clone();
                writers.push(tokio::task::spawn_blocking(move || {
                    chunk
                        .into_iter()
                        .try_for_each(|(id, req)| commands::enqueue(&app, &id, req).map(|_| ()))
                }));
            }
            for w in writers {
                w.await??;
            }
            enqueue_time += t.elapsed();
            let in_pass = (args.sessions - pass * args.devices).min(args.devices);
            let lock_on = !args.compare_round_lock || pass % 2 == 0;
            winmdm::mdm::session::set_round_lock(lock_on);
            let metrics_on = !args.compare_metrics || pass % 2 == 1;
            app.metrics.set_enabled(metrics_on);
            let tracing_on = args.compare_tracing && pass % 2 == 1;
            if tracing_on {
                for s in sims.iter() {
                    let opts = winmdm::service::traces::StartTrace {
                        minutes: Some(600),
                        sessions: Some(winmdm::trace::MAX_SESSIONS),
                        note: None,
                    };
                    winmdm::service::traces::start(&app, &admin, &s.id, opts).await?;
                }
            }
            let pass_started = Instant::now();
            let disk_before = disk_write_bytes();
            let commits_before = app.metrics.commit_stats();
            let before = all.len();
            next.store(0, Ordering::SeqCst);
            let mut workers = Vec::new();
            for _ in 0..args.concurrency {
                let (sims, next, errors, conns, mgmt) = (
                    sims.clone(),
                    next.clone(),
                    errors.clone(),
                    conns.clone(),
                    mgmt.clone(),
                );
                let reuse = args.reuse;
                workers.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= in_pass || Instant::now() > deadline {
                            return lat;
                        }
                        let mut conn = if reuse {
                            conns[i].lock().await.take()
                        } else {
                            None
                        };
                        let t = Instant::now();
                        match session(&mgmt, &sims[i], &mut conn, (pass + 1) as u32).await {
                            Ok(_) => lat.push(t.elapsed()),
                            Err(e) => {
                                if errors.fetch_add(1, Ordering::SeqCst) < 5 {
                                    eprintln!("session error: {e}");
                                }
                            }
                        }
                        if reuse {
                            *conns[i].lock().await = conn;
                        }
                    }
                }));
            }
            for w in workers {
                all.extend(w.await.unwrap_or_default());
            }
            session_disk_bytes += disk_write_bytes().saturating_sub(disk_before);
            if let (Some(a), Some(b)) = (commits_before, app.metrics.commit_stats()) {
                session_commits.0 += b.commits - a.commits;
                session_commits.1 += b.writes - a.writes;
                session_commits.2 += b.lazy - a.lazy;
            }
            if pass > 0 {
                // (Pass 0 is warm-up: it opens the connections --reuse keeps.)
                let slot = &mut by_lock[usize::from(!lock_on)];
                slot.0 += all.len() - before;
                slot.1 += pass_started.elapsed();
                let slot = &mut by_metrics[usize::from(!metrics_on)];
                slot.0 += all.len() - before;
                slot.1 += pass_started.elapsed();
                let slot = &mut by_tracing[usize::from(!tracing_on)];
                slot.0 += all.len() - before;
                slot.1 += pass_started.elapsed();
            }
            if tracing_on {
                for s in sims.iter() {
                    winmdm::service::traces::stop(&app, &admin, &s.id).await?;
                }
            }
        }
        winmdm::mdm::session::set_round_lock(true);
        app.metrics.set_enabled(true);
        Ok::<_, Box<dyn std::error::Error>>(all)
    })?;
    let wall = started.elapsed() - enqueue_time;
    let mut lat = lat;
    lat.sort();
    println!(
        "mode={} devices={} sessions={} concurrency={} commands/session={} errors={}",
        load::mode_name(args.reuse, args.resume),
        args.devices,
        lat.len(),
        args.concurrency,
        args.commands,
        errors.load(Ordering::SeqCst)
    );
    println!(
        "sessions/s={:.0} p50={:.2?} p99={:.2?} max={:.2?} (session time {:.2?}, enqueue {} commands in {:.2?})",
        lat.len() as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default(),
        wall,
        enqueued,
        enqueue_time
    );
    if !args.reuse {
        // In process every connection `load::connect` made is a device's management session.
        let (made, resumed) = load::connections_made();
        println!(
            "management connections: {made}, {resumed} resumed a TLS session ({:.0} %)",
            100.0 * resumed as f64 / made.max(1) as f64
        );
    }
    if !args.reuse && !args.resume {
        // In process the machine's cores also run the devices' side of each handshake (the
        // same operations again): half the bound is the ceiling here.
        let b = winmdm::testkit::handshake::measure(Duration::from_millis(300))?;
        print!(
            "{}",
            load::handshake_line(&b, lat.len() as f64 / wall.as_secs_f64(), None)
        );
    }
    println!(
        "disk: {} bytes written during the session phases, {} bytes per session (/proc/self/io write_bytes)",
        session_disk_bytes,
        session_disk_bytes / (lat.len().max(1) as u64)
    );
    if session_commits.0 + session_commits.2 > 0 {
        let all = session_commits.0 + session_commits.2;
        println!(
            "store: {} group commits during the session phases ({} durable, {} lazy: no sync), {:.1} writers each, {:.2} durable commits per session",
            all,
            session_commits.0,
            session_commits.2,
            session_commits.1 as f64 / all as f64,
            session_commits.0 as f64 / lat.len().max(1) as f64
        );
    }
    if args.compare_round_lock {
        for (name, (n, t)) in [("on", by_lock[0]), ("off", by_lock[1])] {
            println!(
                "round lock {name}: {n} sessions in {t:.2?}: sessions/s={:.0}",
                n as f64 / t.as_secs_f64().max(1e-9)
            );
        }
    }
    if args.compare_metrics {
        for (name, (n, t)) in [("on", by_metrics[0]), ("off", by_metrics[1])] {
            println!(
                "metrics {name}: {n} sessions in {t:.2?}: sessions/s={:.0}",
                n as f64 / t.as_secs_f64().max(1e-9)
            );
        }
    }
    if args.compare_tracing {
        for (name, (n, t)) in [
            ("every device traced", by_tracing[0]),
            ("nothing traced", by_tracing[1]),
        ] {
            println!(
                "{name}: {n} sessions in {t:.2?}: sessions/s={:.0}",
                n as f64 / t.as_secs_f64().max(1e-9)
            );
        }
    }
    println!("rss start={} KiB end={} KiB", rss_start, rss_kib());
    let _ = stop.send(());
    let _ = rt.block_on(server_task);
    Ok(())
}

/// `write_bytes` of /proc/self/io: bytes this process caused to be sent to the storage layer.
fn disk_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Soak: a steady session rate on random devices for `--seconds`, reported per interval.
async fn soak(
    args: &Args,
    mgmt: Arc<Mgmt>,
    app: Arc<winmdm::app::App>,
    sims: Arc<Vec<Sim>>,
    data_dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::Mutex;
    let lat: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.seconds);
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    // Session n starts at `started + n × period`: an absolute schedule, so the timer's
    // millisecond granularity does not lower the rate (an interval of 1.1 ms ran at ~790/s).
    let mut due = tokio::time::Instant::from_std(started);
    let mut next_report = started + Duration::from_secs(args.report_every);
    let mut rng_state = 0x9E37_79B9_7F4A_7C15u64;
    let (mut total_sessions, mut total_errors) = (0usize, 0usize);
    let mut session_no = 0u32;
    let data = "x".repeat(args.size);
    println!(
        "soak: {} devices, {} sessions/s target, {} commands per session, {} s; RSS is the whole process (server + simulated devices)",
        sims.len(),
        args.rate,
        args.commands,
        args.seconds
    );
    println!("t_s\tsessions\tsessions_per_s\tp50_ms\tp99_ms\terrors\tin_flight\trss_kib\tstore_kib\tcommand_msgs");
    let mut all: Vec<Duration> = Vec::new();
    while Instant::now() < end {
        tokio::time::sleep_until(due).await;
        due += period;
        // xorshift: a fixed, reproducible device order.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let i = (rng_state % sims.len() as u64) as usize;
        session_no = session_no.wrapping_add(1);
        {
            let (sims, app, lat, errors, received, in_flight, mgmt) = (
                sims.clone(),
                app.clone(),
                lat.clone(),
                errors.clone(),
                received.clone(),
                in_flight.clone(),
                mgmt.clone(),
            );
            let (commands_n, data, sess) = (args.commands, data.clone(), session_no);
            in_flight.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let id = sims[i].id.clone();
                for k in 0..commands_n {
                    let verb = if k % 2 == 0 { "Replace" } else { "Get" };
                    let req = NewCommand {
                        verb: Some(verb.into()),
                        target: Some(format!("./Vendor/MSFT/Soak/S{sess}/N{k}")),
                        format: (verb == "Replace").then(|| "chr".to_string()),
                        data: (verb == "Replace").then(|| data.clone()),
                        ..NewCommand::default()
                    };
                    let (app, id) = (app.clone(), id.clone());
                    let r = tokio::task::spawn_blocking(move || commands::enqueue(&app, &id, req))
                        .await;
                    if !matches!(r, Ok(Ok(_))) {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let t = Instant::now();
                let mut conn = None;
                match session(&mgmt, &sims[i], &mut conn, sess).await {
                    Ok(n) => {
                        received.fetch_add(n, Ordering::SeqCst);
                        lat.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(t.elapsed());
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::SeqCst) < 5 {
                            eprintln!("session error: {e}");
                        }
                    }
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        }
        if Instant::now() >= next_report {
            let mut v = std::mem::take(&mut *lat.lock().unwrap_or_else(|p| p.into_inner()));
            v.sort();
            let errs = errors.swap(0, Ordering::SeqCst);
            total_sessions += v.len();
            total_errors += errs;
            println!(
                "{}\t{}\t{:.1}\t{:.1}\t{:.1}\t{}\t{}\t{}\t{}\t{}",
                started.elapsed().as_secs(),
                v.len(),
                v.len() as f64 / args.report_every as f64,
                percentile(&v, 0.5).as_secs_f64() * 1e3,
                percentile(&v, 0.99).as_secs_f64() * 1e3,
                errs,
                in_flight.load(Ordering::SeqCst),
                rss_kib(),
                dir_size(data_dir) / 1024,
                received.load(Ordering::SeqCst),
            );
            all.extend(v);
            next_report += Duration::from_secs(args.report_every);
        }
    }
    // Let the last sessions finish.
    for _ in 0..300 {
        if in_flight.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rest = std::mem::take(&mut *lat.lock().unwrap_or_else(|p| p.into_inner()));
    total_sessions += rest.len();
    total_errors += errors.swap(0, Ordering::SeqCst);
    all.extend(rest);
    all.sort();
    println!(
        "soak total: {} sessions in {:.0} s ({:.1}/s), p50={:.1} ms p99={:.1} ms max={:.1} ms, errors={}, commands delivered={}, rss end={} KiB",
        total_sessions,
        started.elapsed().as_secs_f64(),
        total_sessions as f64 / started.elapsed().as_secs_f64(),
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        total_errors,
        received.load(Ordering::SeqCst),
        rss_kib()
    );
    Ok(())
}
