//! The webhook outbox on every backend: events written in the transaction of the change that
//! causes them (and not at all when it does not commit), per-device order, the delivery side's
//! head / finish / failure / dead-letter / redeliver operations, and the bounds.

use winmdm::store::outbox::{self, EventType, NewEvent, Redeliver, MAX_PENDING_PER_DEVICE};
use winmdm::store::{
    CommandState, RecordStore, RenewOutcome, RenewalCommit, ResultItem, Round, RoundCommit,
    RoundGuard, SessionIndex, Store,
};

use super::{cert, command, device, on_pg, MemStore, RedbStore, SledStore};

fn all_pending(s: &dyn RecordStore, device_id: &str) -> Vec<outbox::OutboxEvent> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .scan_records(outbox::OUTBOX, after.as_deref(), 100)
            .unwrap();
        for (k, v) in &page {
            if k.starts_with(&format!("{device_id}\0")) {
                out.push(serde_json::from_slice(v).unwrap());
            }
        }
        match page.last() {
            Some((k, _)) if page.len() == 100 => after = Some(k.clone()),
            _ => return out,
        }
    }
}

fn types(s: &dyn RecordStore, device_id: &str) -> Vec<String> {
    all_pending(s, device_id)
        .into_iter()
        .map(|e| e.ty)
        .collect()
}

fn outbox_battery(s: &dyn Store) {
    let r = s.records();
    // Off: changes record no events.
    s.record_enrollment(&device("D0", None, "00"), &cert("00", "D0"), 5, None)
        .unwrap();
    assert!(outbox::heads(r, None, 10).unwrap().0.is_empty());

    outbox::set_enabled(r, true).unwrap();
    assert!(outbox::is_enabled(r).unwrap());
    // Enrollment, then the same hardware under a new DeviceID: D1 unenrolled (replaced), D2 enrolled.
    s.record_enrollment(&device("D1", Some("H1"), "01"), &cert("01", "D1"), 10, None)
        .unwrap();
    s.record_enrollment(&device("D2", Some("H1"), "02"), &cert("02", "D2"), 11, None)
        .unwrap();
    assert_eq!(types(r, "D1"), ["device.enrolled", "device.unenrolled"]);
    assert_eq!(types(r, "D2"), ["device.enrolled"]);
    let d1 = all_pending(r, "D1");
    assert_eq!(d1[1].fields["reason"], "replaced");
    assert_eq!(d1[1].fields["replaced_by"], "D2");
    assert_eq!(d1[0].seq + 1, d1[1].seq);
    assert_ne!(d1[0].event_id, d1[1].event_id);
    assert_eq!(d1[0].event_id.len(), 32);

    // A round's events go with its commit; a round that conflicts writes none of them.
    let mut c = command("D2", "c1");
    c.state = CommandState::Done;
    c.status = Some(200);
    c.results = vec![ResultItem {
        target: Some("./DevDetail/SwV".into()),
        format: Some("chr".into()),
        ty: None,
        data: Some("10.0.22631".into()),
    }];
    let conflicting = Round {
        events: vec![outbox::command_completed(&c)],
        guard: Some(RoundGuard {
            device_id: "D2".into(),
            generation: 7,
            index: SessionIndex::default(),
            drop: vec![],
        }),
        ..Round::default()
    };
    assert_eq!(
        s.commit_round(&conflicting, 20).unwrap(),
        RoundCommit::Conflict
    );
    assert_eq!(types(r, "D2"), ["device.enrolled"]);
    let ok = Round {
        events: vec![outbox::command_completed(&c)],
        guard: Some(RoundGuard {
            device_id: "D2".into(),
            generation: 0,
            index: SessionIndex::default(),
            drop: vec![],
        }),
        ..Round::default()
    };
    assert_eq!(s.commit_round(&ok, 20).unwrap(), RoundCommit::Committed);
    assert_eq!(types(r, "D2"), ["device.enrolled", "command.completed"]);
    let body: serde_json::Value = serde_json::from_slice(&all_pending(r, "D2")[1].body()).unwrap();
    assert_eq!(body["type"], "command.completed");
    assert_eq!(body["device_id"], "D2");
    assert_eq!(body["created_at"], 20);
    assert_eq!(body["command_id"], "c1");
    assert_eq!(body["status"], 200);
    assert_eq!(body["state"], "done");
    assert_eq!(body["results"][0]["data"], "10.0.22631");
    assert_eq!(
        all_pending(r, "D2")[1].body(),
        all_pending(r, "D2")[1].body()
    );

    // Renewal and deletion.
    let out = s
        .record_renewal(
            &RenewalCommit {
                device_id: "D2".into(),
                presented_serial: "02".into(),
                cert: cert("05", "D2"),
                grace_until: 100,
            },
            30,
        )
        .unwrap();
    assert!(matches!(out, RenewOutcome::Renewed { .. }));
    assert!(s.delete_device("D2", 40).unwrap());
    assert_eq!(
        types(r, "D2"),
        [
            "device.enrolled",
            "command.completed",
            "certificate.renewed",
            "device.unenrolled"
        ]
    );
    let d2 = all_pending(r, "D2");
    assert_eq!(d2[2].fields["old_serial"], "02");
    assert_eq!(d2[2].fields["new_serial"], "05");
    assert_eq!(d2[3].fields["reason"], "deleted");
    assert_eq!(outbox::pending(r, "D2").unwrap(), 4);
    assert_eq!(outbox::depth(r).unwrap(), 6);

    // Heads: the oldest event of each device, in DeviceID order, paged.
    let (h, next) = outbox::heads(r, None, 1).unwrap();
    assert_eq!((h.len(), h[0].device_id.as_str()), (1, "D1"));
    let (h2, _) = outbox::heads(r, next.as_deref(), 10).unwrap();
    assert_eq!(h2.len(), 1);
    assert_eq!((h2[0].device_id.as_str(), h2[0].seq), ("D2", d2[0].seq));
    assert_eq!(outbox::heads(r, None, 10).unwrap().0.len(), 2);

    // Acknowledging the head makes the next one the head; twice is a no-op.
    assert!(outbox::finish(r, &d2[0], None, 50).unwrap());
    assert!(!outbox::finish(r, &d2[0], None, 50).unwrap());
    assert_eq!(
        outbox::head(r, "D2").unwrap().unwrap().event_id,
        d2[1].event_id
    );
    assert_eq!(outbox::pending(r, "D2").unwrap(), 3);

    // A failed attempt is recorded on the event.
    let f = outbox::record_failure(r, &d2[1], "HTTP 503", 99)
        .unwrap()
        .unwrap();
    assert_eq!((f.attempts, f.next_attempt_at), (1, 99));
    assert_eq!(f.last_error.as_deref(), Some("HTTP 503"));

    // Dead letter, listed, redelivered at the end with the same id and body, deleted.
    assert!(outbox::finish(r, &f, Some("gave up"), 60).unwrap());
    assert_eq!(outbox::dead_count(r).unwrap(), 1);
    let (dead, _) = outbox::dead_letters(r, None, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, d2[1].event_id);
    assert_eq!(dead[0].dead_reason.as_deref(), Some("gave up"));
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(
        outbox::head(r, "D2").unwrap().unwrap().event_id,
        d2[2].event_id
    );
    let Redeliver::Queued(back) = outbox::redeliver(r, &d2[1].event_id).unwrap() else {
        panic!("not redelivered");
    };
    assert_eq!(back.event_id, d2[1].event_id);
    assert_eq!(back.attempts, 0);
    assert_eq!(back.body(), d2[1].body());
    assert_eq!(outbox::dead_count(r).unwrap(), 0);
    assert_eq!(
        outbox::redeliver(r, &d2[1].event_id).unwrap(),
        Redeliver::NotFound
    );
    let ids: Vec<String> = all_pending(r, "D2")
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(
        ids,
        [
            d2[2].event_id.clone(),
            d2[3].event_id.clone(),
            d2[1].event_id.clone()
        ]
    );
    let again = outbox::head(r, "D2").unwrap().unwrap();
    assert!(outbox::finish(r, &again, Some("x"), 70).unwrap());
    assert!(outbox::delete_dead(r, &again.event_id).unwrap());
    assert!(!outbox::delete_dead(r, &again.event_id).unwrap());
    assert_eq!(outbox::dead_count(r).unwrap(), 0);

    // Bounds: a full outbox moves the device's oldest events to the dead letters; one event's
    // fields are cut to MAX_EVENT_BYTES.
    let mut big = command("D3", "big");
    big.state = CommandState::Done;
    big.results = vec![ResultItem {
        target: None,
        format: None,
        ty: None,
        data: Some("x".repeat(200_000)),
    }];
    let mut events: Vec<NewEvent> = (0..MAX_PENDING_PER_DEVICE + 2)
        .map(|i| NewEvent {
            ty: EventType::CommandCompleted,
            device_id: "D3".into(),
            fields: serde_json::json!({ "n": i }).as_object().unwrap().clone(),
        })
        .collect();
    events.push(outbox::command_completed(&big));
    let burst = Round {
        events,
        ..Round::default()
    };
    assert_eq!(s.commit_round(&burst, 80).unwrap(), RoundCommit::Committed);
    assert_eq!(outbox::pending(r, "D3").unwrap(), MAX_PENDING_PER_DEVICE);
    assert_eq!(outbox::dead_count(r).unwrap(), 3);
    let (dead, _) = outbox::dead_letters(r, None, 10).unwrap();
    let mut ns: Vec<i64> = dead
        .iter()
        .map(|e| e.fields["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, [0, 1, 2]);
    assert!(dead[0]
        .dead_reason
        .as_deref()
        .unwrap()
        .contains("outbox full"));
    let head = outbox::head(r, "D3").unwrap().unwrap();
    assert_eq!(head.fields["n"], 3);
    let last = all_pending(r, "D3").pop().unwrap();
    assert_eq!(last.fields["command_id"], "big");
    assert_eq!(last.fields["results_truncated"], true);
    assert!(last.body().len() < outbox::MAX_EVENT_BYTES);
    assert_eq!(
        outbox::redeliver(r, &dead[0].event_id).unwrap(),
        Redeliver::Full
    );
    // The dead-letter bound deletes the oldest.
    assert_eq!(outbox::prune_dead(r, 1).unwrap(), 2);
    assert_eq!(outbox::dead_count(r).unwrap(), 1);
    assert_eq!(outbox::dead_letters(r, None, 10).unwrap().0.len(), 1);

    // Off again: nothing more is recorded.
    outbox::set_enabled(r, false).unwrap();
    s.record_enrollment(&device("D4", None, "09"), &cert("09", "D4"), 90, None)
        .unwrap();
    assert!(types(r, "D4").is_empty());
}

#[test]
fn mem_store_outbox() {
    outbox_battery(&MemStore::new());
}

#[test]
fn sled_store_outbox() {
    outbox_battery(&SledStore::temporary().unwrap());
}

#[test]
fn redb_store_outbox() {
    outbox_battery(&RedbStore::temporary().unwrap());
}

#[test]
fn pg_store_outbox() {
    on_pg("pg_store_outbox", |s| outbox_battery(s));
}
