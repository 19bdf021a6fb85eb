//! Command history retention: old answered and cancelled commands leave the history, unanswered
//! ones and the ones a profile deployment reports on stay, and the background sweep runs by
//! itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use winmdm::clock::{Clock, SystemClock};

use super::{commands, enrolled, queue};
use crate::support::{TestClock, TestServer};

const DAY: i64 = 86_400;
const CAMERA: &str = "./Vendor/MSFT/Policy/Config/Camera/AllowCamera";

fn ids(cmds: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = cmds
        .iter()
        .map(|c| c["command_id"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn sweep_deletes_only_old_finished_commands_nothing_still_needed() {
    let real = SystemClock.now_unix();
    let clock = TestClock::at(real - 40 * DAY);
    let srv = TestServer::start_with_clock(Arc::new(clock.clone()), |o| {
        o.command_retention = Some("30d".into());
    })
    .await;
    let mut d = enrolled(&srv, 1).await;
    assert!(d.session().await.is_empty());
    let dev = d.device_id.clone();

    // A profile: its command must outlive the retention (the deployment reports on it).
    let (_, g) = srv
        .admin(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "all", "query": "device_type == \"windows-pc\""})),
        )
        .await;
    let (_, p) = srv
        .admin(
            "POST",
            "/api/v1/profiles",
            Some(json!({"name": "camera off", "settings": [
                {"target": CAMERA, "format": "int", "data": "0"}]})),
        )
        .await;
    let pid = p["id"].as_str().unwrap().to_string();
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/profiles/{pid}/assignments"),
            Some(json!({"group_id": g["id"]})),
        )
        .await;
    assert_eq!(st, 201);
    queue(
        &srv,
        &dev,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "old-get"}),
    )
    .await;
    queue(
        &srv,
        &dev,
        json!({"verb": "Replace", "target": "./Vendor/MSFT/Soak/A", "format": "chr", "data": "x", "command_id": "old-replace"}),
    )
    .await;
    queue(
        &srv,
        &dev,
        json!({"verb": "Get", "target": "./DevDetail/OEM", "command_id": "old-cancelled"}),
    )
    .await;
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/devices/{dev}/commands/old-cancelled"),
            None,
        )
        .await;
    assert!(st == 200 || st == 204, "cancel: {st}");
    assert_eq!(
        d.session().await.len(),
        3,
        "two commands and the profile's setting"
    );
    // Queued after the session: unanswered however old it gets.
    queue(
        &srv,
        &dev,
        json!({"verb": "Get", "target": "./DevDetail/FwV", "command_id": "old-pending"}),
    )
    .await;
    let before = ids(&commands(&srv, &dev).await);
    assert_eq!(before.len(), 5, "{before:?}");
    let profile_cmd = before
        .iter()
        .find(|c| c.starts_with("profile-"))
        .cloned()
        .unwrap();

    let sweep = || {
        winmdm::mdm::retention::sweep(
            &srv.app,
            clock.now_unix(),
            Duration::from_secs(30 * DAY as u64),
        )
        .unwrap()
    };
    // 25 days on: nothing is older than 30 days yet.
    clock.set(real - 15 * DAY);
    let s = sweep();
    assert_eq!((s.deleted, s.kept), (0, 0));
    assert!(
        s.full_walk,
        "a store's first sweep walks its history once: {s:?}"
    );
    // 35 days on: the three finished ones go; the profile's and the pending one stay. The sweep
    // reads the index: the four finished commands, not the pending one.
    clock.set(real - 5 * DAY);
    let s = sweep();
    assert_eq!(
        (s.scanned, s.deleted, s.kept, s.full_walk),
        (4, 3, 1, false)
    );
    assert_eq!(
        ids(&commands(&srv, &dev).await),
        vec!["old-pending".to_string(), profile_cmd.clone()]
    );
    let (_, st) = srv
        .admin("GET", &format!("/api/v1/devices/{dev}/profiles"), None)
        .await;
    assert_eq!(st["profiles"][0]["status"], "applied", "{st}");
    let (_, detail) = srv
        .admin("GET", &format!("/api/v1/devices/{dev}"), None)
        .await;
    assert_eq!(detail["queue"]["pending"], 1, "{detail}");

    // A deleted id can be used again, and the old pending command is still delivered.
    queue(
        &srv,
        &dev,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "old-get"}),
    )
    .await;
    let got = d.session().await;
    let mut targets: Vec<_> = got.iter().filter_map(|r| r.target.clone()).collect();
    targets.sort();
    assert_eq!(targets, vec!["./DevDetail/FwV", "./DevDetail/SwV"]);
    // A second sweep finds nothing more to do, and reads nothing: the kept command is looked at
    // again one retention later.
    let s = sweep();
    assert_eq!((s.scanned, s.deleted), (0, 0), "{s:?}");

    // A retention period after the first walk the sweep walks the history again; the kept
    // command still has exactly one index entry (the index sweeps move it, the walk leaves it).
    clock.set(real + 27 * DAY);
    let s = sweep();
    assert!(s.full_walk && s.kept == 1, "{s:?}");
    let entries = srv
        .app
        .store
        .records()
        .scan_records(winmdm::store::finished::KIND, None, 100)
        .unwrap();
    let of_profile = entries
        .iter()
        .filter(|(k, _)| {
            winmdm::store::finished::parse(k).is_some_and(|(_, _, c)| c == profile_cmd)
        })
        .count();
    assert_eq!(of_profile, 1, "{entries:?}");
}

/// Queues `n` commands for `dev` and cancels them at `at`: finished history.
pub(crate) fn finished_history(app: &winmdm::app::App, dev: &str, n: usize, at: i64) {
    let cmds = (0..n)
        .map(|i| winmdm::store::CommandRecord {
            command_id: format!("h{i:04}"),
            device_id: dev.to_string(),
            verb: "Get".into(),
            target: Some("./DevDetail/SwV".into()),
            syncml: "<Get/>".into(),
            state: winmdm::store::CommandState::Pending,
            created_at: at,
            ..Default::default()
        })
        .collect();
    app.store.enqueue_many(cmds).unwrap();
    assert_eq!(app.store.clear(dev, at).unwrap(), n);
}

#[tokio::test]
async fn a_sweep_reads_only_the_history_it_deletes() {
    let srv = TestServer::start().await;
    let app = srv.app.clone();
    tokio::task::spawn_blocking(move || {
        use winmdm::store::finished;
        let now = SystemClock.now_unix();
        let retention = Duration::from_secs(30 * DAY as u64);
        let sweep = |at: i64| winmdm::mdm::retention::sweep(&app, at, retention).unwrap();
        // History from before the index: old and recent commands without entries.
        finished_history(&app, "RET-OLD", 40, now - 100 * DAY);
        finished_history(&app, "RET-NEW", 200, now - DAY);
        let entries = app
            .store
            .records()
            .scan_records(finished::KIND, None, 10_000)
            .unwrap();
        assert_eq!(entries.len(), 240, "every finished command has its entry");
        let drop: Vec<_> = entries
            .iter()
            .map(|(k, _)| winmdm::store::records::RecordOp::Delete {
                kind: finished::KIND,
                key: k.clone(),
            })
            .collect();
        assert!(app.store.records().apply_records(&drop).unwrap());
        // The first sweep walks it all once, deletes the old ones and indexes the rest.
        let s = sweep(now);
        assert_eq!(
            (s.scanned, s.deleted, s.full_walk),
            (240, 40, true),
            "{s:?}"
        );
        // Then a sweep reads only what is due.
        let s = sweep(now);
        assert_eq!((s.scanned, s.deleted, s.full_walk), (0, 0, false), "{s:?}");
        finished_history(&app, "RET-LATER", 25, now - 60 * DAY);
        let s = sweep(now);
        assert_eq!((s.scanned, s.deleted), (25, 25), "{s:?}");
        // Within the retention, the index: an entry-less finished command (a node of an older
        // version) is not seen...
        finished_history(&app, "RET-UNINDEXED", 5, now - 60 * DAY);
        let unindexed: Vec<_> = (0..5)
            .map(|i| winmdm::store::records::RecordOp::Delete {
                kind: finished::KIND,
                key: finished::key(now - 60 * DAY, "RET-UNINDEXED", &format!("h{i:04}")),
            })
            .collect();
        assert!(app.store.records().apply_records(&unindexed).unwrap());
        let s = sweep(now + DAY);
        assert_eq!((s.scanned, s.deleted, s.full_walk), (0, 0, false), "{s:?}");
        // ...until the walk once per retention period, a month later, when the recent ones are
        // due too.
        let s = sweep(now + 31 * DAY);
        assert_eq!(
            (s.scanned, s.deleted, s.full_walk),
            (205, 205, true),
            "{s:?}"
        );
        assert!(app.store.scan_commands(None, 10).unwrap().is_empty());
        let left = app
            .store
            .records()
            .scan_records(finished::KIND, None, 10)
            .unwrap();
        assert!(left.is_empty(), "entries left behind: {left:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_server_sweeps_in_the_background() {
    let real = SystemClock.now_unix();
    let clock = TestClock::at(real - DAY);
    // One minute of retention: the task sweeps every 6 s.
    let srv = TestServer::start_with_clock(Arc::new(clock.clone()), |o| {
        o.command_retention = Some("1m".into());
    })
    .await;
    let mut d = enrolled(&srv, 2).await;
    let dev = d.device_id.clone();
    queue(
        &srv,
        &dev,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "bg-1"}),
    )
    .await;
    assert_eq!(d.session().await.len(), 1);
    assert_eq!(commands(&srv, &dev).await.len(), 1);
    clock.set(real);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !commands(&srv, &dev).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the background sweep did not delete the answered command"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
