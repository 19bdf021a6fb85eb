//! Reconciliation at scale: a dynamic group of `--members` devices (plus `--others` that do not
//! match) in a sled store, a two-setting profile assigned to it, and the time of each step.
//!
//! ```sh
//! cargo run --release --example reconcile_load -- --members 100000 --others 10000
//! ```
//!
//! Steps timed: creating the group (the query evaluated over every device record, paged), the
//! assignment (one command per setting queued for every member, in chunks of
//! `profiles::reconcile::CHUNK` devices per transaction), a second reconciliation (nothing to
//! queue: the idempotent path), a re-push (new version, new command ids), one device's
//! `groups::on_device_changed`, a query edit that drops the 1 % HoloLens devices (their
//! settings deleted), and removing the assignment (Deletes queued).

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use winmdm::groups::{self, NewGroup};
use winmdm::profiles::{self, ProfileInput, Setting};
use winmdm::store::{Device, DeviceState};

#[derive(Parser, Debug)]
struct Args {
    /// Devices matching the group's query.
    #[arg(long, default_value_t = 100_000)]
    members: usize,
    /// Devices not matching it.
    #[arg(long, default_value_t = 10_000)]
    others: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let cfg = winmdm::config::ServeOptions {
        listen: Some("127.0.0.1:0".parse()?),
        public_url: Some("https://localhost:8443".into()),
        data_dir: Some(tmp.path().to_path_buf()),
        ca_key_algorithm: Some("ecdsa-p256".into()),
        ..Default::default()
    }
    .resolve()?;
    let app = Arc::new(winmdm::app::App::open(cfg, Some("load".into()))?);
    let now = app.clock.now_unix();
    let total = args.members + args.others;

    let t = Instant::now();
    // 16 writers: their commits share syncs (group commit), so seeding is not one fsync a device.
    let device = |i: usize| Device {
        device_id: format!("{i:032X}"),
        upn: Some("load@example.com".into()),
        enrollment_type: "Full".into(),
        device_type: Some("CIMClient_Windows".into()),
        os_edition: Some(if i.is_multiple_of(100) { "136" } else { "72" }.into()),
        // Members and others interleave, so the group is not one contiguous key range.
        group_tag: Some(
            if i.is_multiple_of((total / args.others.max(1)).max(1)) && args.others > 0 {
                "office".into()
            } else {
                "lab".into()
            },
        ),
        enrolled_at: now,
        state: DeviceState::Enrolled,
        ..Default::default()
    };
    std::thread::scope(|s| -> Result<(), winmdm::store::StoreError> {
        let hs: Vec<_> = (0..16)
            .map(|w| {
                let (app, device) = (&app, &device);
                s.spawn(move || -> Result<(), winmdm::store::StoreError> {
                    for i in (w..total).step_by(16) {
                        app.store.put_device(&device(i))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| winmdm::store::StoreError::Backend {
                reason: "a seeding thread panicked".into(),
            })??;
        }
        Ok(())
    })?;
    println!("created {total} device records in {:.2?}", t.elapsed());

    let t = Instant::now();
    let (g, ev) = groups::create(
        &app,
        NewGroup {
            name: "lab".into(),
            description: None,
            query: Some(
                r#"group_tag == "lab" and device_type in ["windows-pc", "hololens"]"#.into(),
            ),
        },
    )?;
    println!(
        "dynamic group: evaluated {} devices, {} joined, in {:.2?}",
        ev.scanned,
        ev.joined,
        t.elapsed()
    );

    let setting = |target: &str| Setting {
        verb: None,
        target: target.into(),
        format: Some("int".into()),
        ty: None,
        data: Some("0".into()),
    };
    let p = profiles::create(
        &app,
        ProfileInput {
            name: Some("camera and bluetooth off".into()),
            settings: Some(vec![
                setting("./Vendor/MSFT/Policy/Config/Camera/AllowCamera"),
                setting("./Vendor/MSFT/Policy/Config/Connectivity/AllowBluetooth"),
            ]),
            ..Default::default()
        },
    )?;
    // CPU seconds of this process: wall time on a busy 2-core machine mostly measures the others.
    let cpu = || winmdm::testkit::load::process_cpu_seconds("self").unwrap_or(0.0);
    let step = |name: &str, (t, c0): (Instant, f64), r: &profiles::Reconciled| {
        let el = t.elapsed();
        let c = cpu() - c0;
        println!(
            "{name}: {} devices reconciled, {} commands queued, in {:.2?} wall, {c:.2} s CPU ({:.1} µs CPU per device)",
            r.devices,
            r.queued,
            el,
            c * 1e6 / r.devices.max(1) as f64
        );
    };
    let t = (Instant::now(), cpu());
    let (_, r) = profiles::assign(&app, &p.id, &g.id)?;
    step("assign", t, &r);
    let t = (Instant::now(), cpu());
    let r = profiles::reconcile::profile(&app, &p.id)?;
    step("reconcile again (idempotent)", t, &r);
    let t = (Instant::now(), cpu());
    let (_, r) = profiles::update(&app, &p.id, ProfileInput::default(), true)?;
    step("re-push (v2)", t, &r);
    let one = format!("{:032X}", 1);
    let t = Instant::now();
    let c = groups::on_device_changed(&app, &one)?;
    println!(
        "on_device_changed for one device: {:.2?} (queued {})",
        t.elapsed(),
        c.queued
    );
    let t = Instant::now();
    let (page, _) = profiles::reconcile::status_page(&app, &p.id, None, 100)?;
    println!(
        "first status page ({} devices, status {:?}) in {:.2?}",
        page.len(),
        page.first().map(|s| s.status.clone()),
        t.elapsed()
    );
    let t = Instant::now();
    let (_, ev) = groups::patch(
        &app,
        &g.id,
        groups::GroupPatch {
            query: Some(r#"group_tag == "lab" and device_type == "windows-pc""#.into()),
            ..Default::default()
        },
    )?;
    println!(
        "query edit (HoloLens leave): evaluated {} devices, {} left, {} commands queued, in {:.2?}",
        ev.scanned,
        ev.left,
        ev.queued,
        t.elapsed()
    );
    let t = (Instant::now(), cpu());
    let r = profiles::unassign(&app, &p.id, &g.id)?;
    step("unassign (Deletes)", t, &r);
    Ok(())
}
