//! `winmdm webhook status|dead-letters|show|redeliver|delete` against a server whose receiver
//! refuses everything (so every event becomes a dead letter at its first attempt).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Cli;
use crate::manage::enrolled;
use crate::support::receiver::{Receiver, FAIL, OK};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_subcommands_list_show_redeliver_and_delete_dead_letters() {
    let rx = Receiver::start(crate::webhook::SECRET.as_bytes()).await;
    rx.mode.store(FAIL, Ordering::SeqCst);
    let (srv, _ca) = crate::webhook::server(&rx, |o| o.webhook_max_attempts = Some(1)).await;
    let cli = Cli::new(&srv);
    let a = enrolled(&srv, 70).await;
    let b = enrolled(&srv, 71).await;
    let start = Instant::now();
    let listed = loop {
        let (code, out) = cli.run(&["--json", "webhook", "dead-letters"]).await;
        assert_eq!(code, 0, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v["dead_letters"].as_array().unwrap().len() == 2 {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id_of = |dev: &str| {
        listed["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["device_id"] == dev)
            .unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ida, idb) = (id_of(&a.device_id), id_of(&b.device_id));
    // The table names both, with their type and why they were given up.
    let (code, out) = cli.run(&["webhook", "dead-letters"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("EVENT ID"), "{out}");
    for id in [&ida, &idb] {
        let line = out.lines().find(|l| l.starts_with(id.as_str())).unwrap();
        assert!(
            line.contains("device.enrolled") && line.contains("HTTP 503"),
            "{line}"
        );
    }
    let (code, out) = cli.run(&["webhook", "show", &ida]).await;
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["body"]["device_id"], a.device_id.as_str());
    let (code, out) = cli.run(&["webhook", "status"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("dead_letters   2") || out.contains("dead_letters  2"),
        "{out}"
    );
    // Redeliver one to a receiver that works now; delete the other.
    rx.mode.store(OK, Ordering::SeqCst);
    let (code, out) = cli.run(&["webhook", "redeliver", &ida]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("queued again: {ida} (device.enrolled")),
        "{out}"
    );
    rx.wait_for(Duration::from_secs(30), "the redelivered event", |acc| {
        acc.iter().any(|d| d.event_id == ida)
    })
    .await;
    let (code, out) = cli.run(&["webhook", "delete", &idb]).await;
    assert_eq!((code, out.trim()), (0, format!("deleted: {idb}").as_str()));
    let (code, out) = cli.run(&["webhook", "delete", &idb]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("404") || out.contains("not found"), "{out}");
    let (code, out) = cli.run(&["--json", "webhook", "dead-letters"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["dead_letters"],
        serde_json::json!([])
    );
    srv.stop().await;
}
