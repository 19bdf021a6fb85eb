//! At least once across a SIGKILL of the real binary: events recorded while the receiver was
//! down survive a kill, and a kill in the middle of deliveries loses nothing (an event whose 2xx
//! came in just before the kill may arrive twice, with the same `event_id`); each device's
//! events still arrive in order (by first arrival).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::{expected, sequence, SECRET};
use crate::support::child::{try_admin, try_enroll, ChildServer};
use crate::support::device::DeviceInfo;
use crate::support::mdm_device::ManagedDevice;
use crate::support::receiver::{Receiver, OK};

async fn queue(c: &crate::support::Client, dev: &str, ids: impl Iterator<Item = String>) {
    for id in ids {
        let (st, v) = try_admin(
            c,
            "POST",
            &format!("/api/v1/devices/{dev}/commands"),
            Some(json!({"verb": "Replace", "target": format!("./Vendor/MSFT/Test/{id}"), "format": "int", "data": "1", "command_id": id})),
        )
        .await
        .expect("server up");
        assert_eq!(st, 201, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_sigkill_and_are_delivered_at_least_once_in_order() {
    let mut rx = Receiver::start(SECRET.as_bytes()).await;
    rx.stop(); // down at first: everything waits in the outbox
    let dir = tempfile::tempdir().unwrap();
    let ca = rx.write_ca(dir.path());
    let mut child = ChildServer::new(&dir.path().join("data"), &dir.path().join("child.log"));
    child.env = vec![
        ("WINMDM_WEBHOOK_URL".into(), rx.url()),
        ("WINMDM_WEBHOOK_SECRET".into(), SECRET.into()),
        ("WINMDM_WEBHOOK_CA".into(), ca.display().to_string()),
    ];
    child.spawn();
    let c = child.wait_ready(Duration::from_secs(60)).await;
    let (st, _) = try_admin(
        &c,
        "POST",
        "/api/v1/users",
        Some(json!({"upn": "hook@example.com", "password": "pw-123456"})),
    )
    .await
    .unwrap();
    assert_eq!(st, 201);
    let e = try_enroll(&c, &DeviceInfo::new(40, "hook@example.com", "pw-123456"))
        .await
        .expect("enrolled");
    let mut d = ManagedDevice::at(child.addr, &e);
    queue(&c, &d.device_id, (0..5).map(|i| format!("k{i:02}"))).await;
    assert_eq!(d.session().await.len(), 5);
    // Recorded, not delivered: kill -9 now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill();
    assert!(rx.deliveries().is_empty());
    rx.mode.store(OK, Ordering::SeqCst);
    rx.restart().await;
    child.spawn();
    let c = child.wait_ready(Duration::from_secs(60)).await;
    let t = std::time::Instant::now();
    // Within 20 s: the restarted server takes its dead predecessor's delivery lease at once
    // (the embedded store has one process) instead of waiting 30 s for it to expire.
    rx.wait_for(
        Duration::from_secs(20),
        "the 6 events recorded before the kill",
        |acc| acc.len() == 6,
    )
    .await;
    assert_eq!(sequence(&rx.accepted(), &d.device_id), expected(5, "k"));
    println!(
        "webhook crash: 6 events recorded before the kill delivered {:?} after the restart",
        t.elapsed()
    );

    // Now a kill in the middle of deliveries: the receiver is slow, so the kill lands while
    // events are being sent.
    rx.delay_ms.store(150, Ordering::SeqCst);
    queue(&c, &d.device_id, (5..25).map(|i| format!("k{i:02}"))).await;
    d.client = crate::support::Client::new(child.addr, d.client_root(), d.client_identity());
    assert_eq!(d.session().await.len(), 20);
    rx.wait_for(
        Duration::from_secs(60),
        "a few of the 20 new events",
        |acc| acc.len() >= 9,
    )
    .await;
    child.kill();
    let before_restart = rx.accepted().len();
    assert!(
        before_restart < 26,
        "all delivered before the kill: the kill proves nothing"
    );
    rx.delay_ms.store(0, Ordering::SeqCst);
    child.spawn();
    child.wait_ready(Duration::from_secs(60)).await;
    rx.wait_for(Duration::from_secs(60), "all 26 events", |acc| {
        acc.len() == 26
    })
    .await;
    assert_eq!(sequence(&rx.accepted(), &d.device_id), expected(25, "k"));
    let all = rx.deliveries();
    assert!(all.iter().all(|x| x.verified));
    let dups = all.iter().filter(|x| x.answered == 200).count() - 26;
    println!(
        "webhook crash: {} requests, {} accepted before the 2nd kill, {} duplicates after it",
        all.len(),
        before_restart,
        dups
    );
    assert!(dups <= 8, "{dups} duplicates");
    child.stop(Duration::from_secs(10));
}
