//! One battery, run against every store backend.

mod migrate;
mod pg_server;

use winmdm::store::mem::MemStore;
use winmdm::store::redb::RedbStore;
use winmdm::store::sled::SledStore;
use winmdm::store::{
    AuditEntry, Cancelled, CertRecord, CertStore, CommandQueue, CommandRecord, CommandState,
    Device, DeviceState, DeviceStore, Enqueued, Owner, Round, RoundCommit, RoundGuard,
    SessionIndex, Store, StoreError, User,
};

fn device(id: &str, hw: Option<&str>, serial: &str) -> Device {
    Device {
        device_id: id.into(),
        hw_dev_id: hw.map(str::to_string),
        upn: Some("u@example.com".into()),
        owner: Some(Owner::User {
            user_id: "u1".into(),
        }),
        enrollment_type: "Full".into(),
        device_type: Some("CIMClient_Windows".into()),
        os_version: None,
        os_edition: Some("72".into()),
        device_name: None,
        application_version: None,
        locale: None,
        macs: vec![],
        not_in_oobe: None,
        ux_initiated: None,
        cert_serial: serial.into(),
        cert_thumbprint: "AB".into(),
        cert_not_after: 2_000_000_000,
        enrolled_at: 1,
        state: DeviceState::Enrolled,
        ..Default::default()
    }
}

fn cert(serial: &str, device_id: &str) -> CertRecord {
    CertRecord {
        serial: serial.into(),
        device_id: device_id.into(),
        thumbprint: "AB".into(),
        issued_at: 1,
        not_after: 2_000_000_000,
        revoked_at: None,
        revoke_reason: None,
    }
}

fn battery(s: &dyn Store) {
    // Users: create, conflict (case-insensitive), get, list, delete.
    let u = User {
        upn: "A@Example.com".into(),
        id: String::new(),
        password_hash: "$argon2id$x".into(),
        created_at: 5,
        disabled: false,
    };
    s.create_user(&u).unwrap();
    assert!(matches!(
        s.create_user(&u),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(s.get_user("a@example.COM").unwrap().unwrap().created_at, 5);
    assert_eq!(s.list_users().unwrap().len(), 1);
    assert!(s.delete_user("a@example.com").unwrap());
    assert!(!s.delete_user("a@example.com").unwrap());
    assert!(s.get_user("a@example.com").unwrap().is_none());

    // Enrollment records device + cert; re-enrollment revokes the old cert.
    let out = s
        .record_enrollment(&device("D1", Some("H1"), "01"), &cert("01", "D1"), 10, None)
        .unwrap();
    assert!(out.replaced.is_empty() && out.revoked.is_empty());
    let out = s
        .record_enrollment(&device("D1", Some("H1"), "02"), &cert("02", "D1"), 11, None)
        .unwrap();
    assert_eq!(out.replaced, vec!["D1".to_string()]);
    assert_eq!(out.revoked, vec!["01".to_string()]);
    assert_eq!(s.get_cert("01").unwrap().unwrap().revoked_at, Some(11));
    assert_eq!(s.get_device("D1").unwrap().unwrap().cert_serial, "02");

    // Same hardware, new DeviceID: the old record is unenrolled and its cert revoked.
    let out = s
        .record_enrollment(&device("D2", Some("H1"), "03"), &cert("03", "D2"), 12, None)
        .unwrap();
    assert_eq!(out.replaced, vec!["D1".to_string()]);
    assert_eq!(out.revoked, vec!["02".to_string()]);
    assert_eq!(
        s.get_device("D1").unwrap().unwrap().state,
        DeviceState::Unenrolled
    );
    assert_eq!(
        s.get_device("D2").unwrap().unwrap().state,
        DeviceState::Enrolled
    );

    // Every issued serial is recorded; revocation list; idempotent revoke; unknown serial.
    assert_eq!(s.count_certs().unwrap(), 3);
    let mut revoked: Vec<String> = s
        .list_revoked()
        .unwrap()
        .into_iter()
        .map(|c| c.serial)
        .collect();
    revoked.sort();
    assert_eq!(revoked, vec!["01", "02"]);
    assert!(s.revoke_cert("03", "admin", 20).unwrap());
    assert!(s.revoke_cert("03", "again", 30).unwrap());
    assert_eq!(
        s.get_cert("03").unwrap().unwrap().revoked_at,
        Some(20),
        "first revocation time kept"
    );
    assert!(!s.revoke_cert("99", "unknown", 20).unwrap());
    s.put_cert(&cert("04", "D2")).unwrap();
    assert_eq!(s.count_certs().unwrap(), 4);

    // Paging is ordered and exclusive of the cursor.
    for i in 0..5 {
        let id = format!("P{i}");
        s.record_enrollment(
            &device(&id, None, &format!("p{i}")),
            &cert(&format!("p{i}"), &id),
            1,
            None,
        )
        .unwrap();
    }
    let all: Vec<String> = s
        .list_devices(None, 100)
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(all, vec!["D1", "D2", "P0", "P1", "P2", "P3", "P4"]);
    let page: Vec<String> = s
        .list_devices(Some("P1"), 2)
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(page, vec!["P2", "P3"]);
    assert!(s.list_devices(Some("P4"), 2).unwrap().is_empty());
}

fn command(device: &str, id: &str) -> CommandRecord {
    CommandRecord {
        command_id: id.into(),
        device_id: device.into(),
        seq: 0,
        verb: "Replace".into(),
        target: Some("./Vendor/MSFT/TenantLockdown/RequireNetworkInOOBE".into()),
        syncml: "<Replace/>".into(),
        user_scoped: false,
        state: CommandState::Pending,
        status: None,
        results: vec![],
        created_at: 1,
        sent_at: None,
        completed_at: None,
        send_count: 0,
        ..CommandRecord::default()
    }
}

/// `CommandQueue::queue_stats`: unanswered commands by (verb, state), the oldest pending one,
/// answered ones left out, and the limit honoured and reported.
fn queue_stats_battery(s: &dyn Store) {
    let empty = s.queue_stats(1000).unwrap();
    assert!(empty.counts.is_empty() && empty.oldest_pending.is_none() && empty.complete);
    let cmd = |d: &str, id: &str, verb: &str, at: i64| CommandRecord {
        verb: verb.into(),
        created_at: at,
        ..command(d, id)
    };
    for c in [
        cmd("D1", "a", "Replace", 10),
        cmd("D1", "b", "Get", 5),
        cmd("D2", "c", "Exec", 7),
        cmd("D2", "d", "Get", 1),
        cmd("D3", "e", "Replace", 3),
    ] {
        assert!(matches!(s.enqueue(c).unwrap(), Enqueued::Created(_)));
    }
    // D1/a and D3/e sent, D2/d answered (it leaves the queue), D3/e then cancelled.
    let mut changed = Vec::new();
    let mut read = Vec::new();
    for (d, id, to) in [
        ("D1", "a", CommandState::Sent),
        ("D2", "d", CommandState::Done),
        ("D3", "e", CommandState::Sent),
    ] {
        let mut c = s.get_command(d, id).unwrap().unwrap();
        read.push((c.command_id.clone(), c.state));
        c.state = to;
        changed.push(c);
    }
    for c in changed {
        let round = Round {
            read_states: read
                .iter()
                .filter(|(id, _)| *id == c.command_id)
                .cloned()
                .collect(),
            commands: vec![c],
            ..Round::default()
        };
        assert_eq!(s.commit_round(&round, 20).unwrap(), RoundCommit::Committed);
    }
    assert_eq!(s.cancel("D3", "e", 21).unwrap(), Cancelled::Cancelled);
    let st = s.queue_stats(1000).unwrap();
    let want: std::collections::BTreeMap<(String, CommandState), u64> = [
        (("Replace".to_string(), CommandState::Sent), 1),
        (("Get".to_string(), CommandState::Pending), 1),
        (("Exec".to_string(), CommandState::Pending), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(st.counts, want);
    assert_eq!(st.oldest_pending, Some(5), "D1/b, the oldest pending");
    assert!(st.complete);
    // Exactly as many as the limit: complete; fewer allowed than there are: not.
    assert!(s.queue_stats(3).unwrap().complete);
    let cut = s.queue_stats(2).unwrap();
    assert!(!cut.complete);
    assert!(cut.counts.values().sum::<u64>() <= 2);
}

fn queue_battery(s: &dyn Store) {
    let Enqueued::Created(a) = s.enqueue(command("D1", "a")).unwrap() else {
        panic!("a not created")
    };
    let Enqueued::Created(b) = s.enqueue(command("D1", "b")).unwrap() else {
        panic!("b not created")
    };
    assert!(b.seq > a.seq, "queue order");
    s.enqueue(command("D2", "a")).unwrap();
    // The same id twice does not queue twice.
    assert!(matches!(
        s.enqueue(command("D1", "a")).unwrap(),
        Enqueued::Existing(_)
    ));
    let ids = |v: Vec<CommandRecord>| v.into_iter().map(|c| c.command_id).collect::<Vec<_>>();
    assert_eq!(ids(s.queued("D1").unwrap()), vec!["a", "b"]);
    assert_eq!(ids(s.queued("D2").unwrap()), vec!["a"]);

    // A sent command stays queued; an answered one leaves the queue but stays in history.
    let mut a2 = s.get_command("D1", "a").unwrap().unwrap();
    a2.state = CommandState::Sent;
    let round = Round {
        commands: vec![a2.clone()],
        session: Some(("D1".into(), "7".into(), Some(b"state".to_vec()))),
        ..Round::default()
    };
    s.commit_round(&round, 5).unwrap();
    assert_eq!(
        s.get_session("D1", "7").unwrap().as_deref(),
        Some(b"state".as_slice())
    );
    assert_eq!(ids(s.queued("D1").unwrap()), vec!["a", "b"]);
    a2.state = CommandState::Done;
    a2.status = Some(200);
    let round = Round {
        commands: vec![a2],
        session: Some(("D1".into(), "7".into(), None)),
        ..Round::default()
    };
    s.commit_round(&round, 6).unwrap();
    assert!(s.get_session("D1", "7").unwrap().is_none());
    assert_eq!(ids(s.queued("D1").unwrap()), vec!["b"]);
    assert_eq!(ids(s.list_commands("D1").unwrap()), vec!["a", "b"]);
    assert_eq!(s.get_command("D1", "a").unwrap().unwrap().status, Some(200));

    // Cancel: only unanswered commands.
    assert_eq!(
        s.cancel("D1", "a", 7).unwrap(),
        Cancelled::AlreadyFinal(CommandState::Done)
    );
    assert_eq!(s.cancel("D1", "zz", 7).unwrap(), Cancelled::NotFound);
    assert_eq!(s.cancel("D1", "b", 7).unwrap(), Cancelled::Cancelled);
    assert!(s.queued("D1").unwrap().is_empty());
    s.enqueue(command("D1", "c")).unwrap();
    s.enqueue(command("D1", "d")).unwrap();
    assert_eq!(s.clear("D1", 8).unwrap(), 2);
    assert!(s.queued("D1").unwrap().is_empty());
    assert_eq!(
        ids(s.queued("D2").unwrap()),
        vec!["a"],
        "other devices untouched"
    );

    // The history walk: every device's commands in (device, id) order, page by page.
    let pairs = |v: Vec<CommandRecord>| {
        v.into_iter()
            .map(|c| format!("{}/{}", c.device_id, c.command_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pairs(s.scan_commands(None, 10).unwrap()),
        vec!["D1/a", "D1/b", "D1/c", "D1/d", "D2/a"]
    );
    assert_eq!(
        pairs(s.scan_commands(None, 2).unwrap()),
        vec!["D1/a", "D1/b"]
    );
    assert_eq!(
        pairs(s.scan_commands(Some(("D1", "b")), 2).unwrap()),
        vec!["D1/c", "D1/d"]
    );
    assert!(s.scan_commands(Some(("D2", "a")), 2).unwrap().is_empty());
    // Deleting history: answered/cancelled ones go, the unanswered and unknown are skipped.
    let del = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(d, c)| (d.to_string(), c.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        s.delete_finished(&del(&[("D1", "a"), ("D1", "b"), ("D2", "a"), ("D1", "zz")]))
            .unwrap(),
        2
    );
    assert_eq!(ids(s.list_commands("D1").unwrap()), vec!["c", "d"]);
    assert_eq!(ids(s.queued("D2").unwrap()), vec!["a"], "pending survives");
    assert!(s.get_command("D1", "a").unwrap().is_none());
    // The id can be queued again, as a new command.
    assert!(matches!(
        s.enqueue(command("D1", "a")).unwrap(),
        Enqueued::Created(_)
    ));
    assert_eq!(ids(s.queued("D1").unwrap()), vec!["a"]);

    // Cancelling in bulk: only the unanswered ones count, unknown and final ones are skipped.
    s.enqueue(command("D3", "x")).unwrap();
    s.enqueue(command("D3", "y")).unwrap();
    s.enqueue(command("D3", "w")).unwrap();
    assert_eq!(s.cancel("D3", "w", 19).unwrap(), Cancelled::Cancelled);
    assert_eq!(
        s.cancel_many(
            &del(&[("D3", "x"), ("D3", "zz"), ("D3", "w"), ("D3", "y")]),
            20
        )
        .unwrap(),
        2
    );
    assert!(s.queued("D3").unwrap().is_empty());
    let x = s.get_command("D3", "x").unwrap().unwrap();
    assert_eq!(
        (x.state, x.completed_at),
        (CommandState::Cancelled, Some(20))
    );
    assert_eq!(
        s.get_command("D3", "w").unwrap().unwrap().completed_at,
        Some(19),
        "a final command is left as it was"
    );
    assert_eq!(
        ids(s.queued("D1").unwrap()),
        vec!["a"],
        "other devices untouched"
    );
}

/// User updates, device deletion and the audit log.
fn lifecycle_battery(s: &dyn Store) {
    // update_user replaces an existing user only.
    let mut u = User {
        upn: "b@example.com".into(),
        id: String::new(),
        password_hash: "$argon2id$old".into(),
        created_at: 5,
        disabled: false,
    };
    assert!(!s.update_user(&u).unwrap(), "no such user yet");
    assert!(s.get_user("b@example.com").unwrap().is_none());
    s.create_user(&u).unwrap();
    u.password_hash = "$argon2id$new".into();
    u.disabled = true;
    assert!(s.update_user(&u).unwrap());
    let got = s.get_user("B@example.com").unwrap().unwrap();
    assert_eq!(got.password_hash, "$argon2id$new");
    assert!(got.disabled);

    // delete_device: record gone, unanswered commands cancelled (history kept), sessions
    // dropped, certificate revoked, hardware index freed; other devices untouched.
    s.record_enrollment(&device("X1", Some("HX"), "x1"), &cert("x1", "X1"), 1, None)
        .unwrap();
    s.record_enrollment(&device("X10", None, "x10"), &cert("x10", "X10"), 1, None)
        .unwrap();
    s.enqueue(command("X1", "q1")).unwrap();
    s.enqueue(command("X1", "q2")).unwrap();
    s.enqueue(command("X10", "q1")).unwrap();
    let mut done = s.get_command("X1", "q1").unwrap().unwrap();
    done.state = CommandState::Done;
    done.status = Some(200);
    let session = |dev: &str, sid: &str| Round {
        session: Some((dev.into(), sid.into(), Some(b"x".to_vec()))),
        ..Round::default()
    };
    s.commit_round(
        &Round {
            commands: vec![done],
            ..session("X1", "1")
        },
        2,
    )
    .unwrap();
    s.commit_round(&session("X1", "2"), 2).unwrap();
    s.commit_round(&session("X10", "1"), 2).unwrap();
    assert!(s.delete_device("X1", 50).unwrap());
    assert!(!s.delete_device("X1", 51).unwrap(), "already gone");
    assert!(!s.delete_device("nope", 51).unwrap());
    assert!(s.get_device("X1").unwrap().is_none());
    assert!(s.queued("X1").unwrap().is_empty());
    let hist = s.list_commands("X1").unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(
        hist[0].state,
        CommandState::Done,
        "answered ones stay as they were"
    );
    assert_eq!(hist[1].state, CommandState::Cancelled);
    assert_eq!(hist[1].completed_at, Some(50));
    assert!(s.get_session("X1", "1").unwrap().is_none());
    assert!(s.get_session("X1", "2").unwrap().is_none());
    let c = s.get_cert("x1").unwrap().unwrap();
    assert_eq!(c.revoked_at, Some(50));
    assert!(s.list_revoked().unwrap().iter().any(|c| c.serial == "x1"));
    assert!(s.get_device("X10").unwrap().is_some());
    assert_eq!(s.queued("X10").unwrap().len(), 1);
    assert!(s.get_session("X10", "1").unwrap().is_some());
    assert!(s.get_cert("x10").unwrap().unwrap().revoked_at.is_none());
    // The hardware id is free again: a new enrollment with it replaces nothing.
    let out = s
        .record_enrollment(&device("X2", Some("HX"), "x2"), &cert("x2", "X2"), 60, None)
        .unwrap();
    assert!(out.replaced.is_empty(), "{out:?}");

    // Audit: ids increase, listing is ordered and paged after a cursor.
    assert!(s.list_audit(None, 10).unwrap().is_empty());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            s.append_audit(AuditEntry {
                id: 0,
                at: 100 + i,
                actor: "admin".into(),
                action: format!("a{i}"),
                target: "t".into(),
                detail: serde_json::json!({"i": i}),
            })
            .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let all = s.list_audit(None, 100).unwrap();
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["a0", "a1", "a2", "a3", "a4"]);
    assert_eq!(all[2].id, ids[2]);
    assert_eq!(all[2].detail["i"], 2);
    let page = s.list_audit(Some(ids[1]), 2).unwrap();
    let actions: Vec<&str> = page.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["a2", "a3"]);
    assert!(s.list_audit(Some(ids[4]), 10).unwrap().is_empty());
}

/// The optimistic check of a management round: a stale generation or a command changed since
/// the round read it makes the whole round a conflict that writes nothing; re-enrollment drops
/// the device's sessions and bumps the generation.
fn round_guard_battery(s: &dyn Store) {
    s.record_enrollment(&device("G1", None, "g1"), &cert("g1", "G1"), 1, None)
        .unwrap();
    s.enqueue(command("G1", "a")).unwrap();
    let guard = |generation: u64, sid: &str| RoundGuard {
        device_id: "G1".into(),
        generation,
        index: SessionIndex {
            generation: 0,
            current: Some(sid.into()),
            sessions: vec![(sid.into(), 5)],
        },
        drop: Vec::new(),
    };
    let mut a = s.get_command("G1", "a").unwrap().unwrap();
    a.state = CommandState::Sent;
    let round = |cmd: CommandRecord, seen: CommandState, g: u64, sid: &str| Round {
        commands: vec![cmd],
        read_states: vec![("a".into(), seen)],
        session: Some(("G1".into(), sid.into(), Some(sid.as_bytes().to_vec()))),
        guard: Some(guard(g, sid)),
        ..Round::default()
    };
    assert_eq!(
        s.commit_round(&round(a.clone(), CommandState::Pending, 0, "1"), 5)
            .unwrap(),
        RoundCommit::Committed
    );
    let index: SessionIndex =
        serde_json::from_slice(&s.get_session("G1", "").unwrap().unwrap()).unwrap();
    assert_eq!((index.generation, index.current.as_deref()), (1, Some("1")));
    // A second round that read generation 0 (before the first committed) writes nothing.
    let mut done = a.clone();
    done.state = CommandState::Done;
    assert_eq!(
        s.commit_round(&round(done.clone(), CommandState::Pending, 0, "2"), 6)
            .unwrap(),
        RoundCommit::Conflict
    );
    assert!(s.get_session("G1", "2").unwrap().is_none());
    assert_eq!(
        s.get_command("G1", "a").unwrap().unwrap().state,
        CommandState::Sent
    );
    // A command cancelled after the round read it: conflict, the cancel stands.
    assert_eq!(s.cancel("G1", "a", 7).unwrap(), Cancelled::Cancelled);
    assert_eq!(
        s.commit_round(&round(done, CommandState::Sent, 1, "1"), 8)
            .unwrap(),
        RoundCommit::Conflict
    );
    assert_eq!(
        s.get_command("G1", "a").unwrap().unwrap().state,
        CommandState::Cancelled
    );
    // Re-enrollment drops the sessions and bumps the generation.
    assert!(s.get_session("G1", "1").unwrap().is_some());
    s.record_enrollment(&device("G1", None, "g2"), &cert("g2", "G1"), 9, None)
        .unwrap();
    assert!(s.get_session("G1", "1").unwrap().is_none());
    let index: SessionIndex =
        serde_json::from_slice(&s.get_session("G1", "").unwrap().unwrap()).unwrap();
    assert_eq!((index.generation, index.sessions.len()), (2, 0));
}

#[test]
fn mem_store_round_guard() {
    round_guard_battery(&MemStore::new());
}

#[test]
fn sled_store_round_guard() {
    round_guard_battery(&SledStore::temporary().unwrap());
}

#[test]
fn redb_store_round_guard() {
    round_guard_battery(&RedbStore::temporary().unwrap());
}

/// Issue 13: the ownership rules of `record_enrollment`, on every backend.
fn owner_battery(s: &dyn Store) {
    use winmdm::store::EnrollRefusal;
    let owned = |id: &str, hw: Option<&str>, serial: &str, user: &str| Device {
        owner: Some(Owner::User {
            user_id: user.into(),
        }),
        ..device(id, hw, serial)
    };
    let out = s
        .record_enrollment(
            &owned("O1", Some("HO"), "o1", "u1"),
            &cert("o1", "O1"),
            1,
            None,
        )
        .unwrap();
    assert_eq!(out.refused, None);
    // Another owner claiming the DeviceID: refused, nothing written.
    let out = s
        .record_enrollment(&owned("O1", None, "o2", "u2"), &cert("o2", "O1"), 2, None)
        .unwrap();
    assert!(
        matches!(out.refused, Some(EnrollRefusal::OwnedByAnother { .. })),
        "{out:?}"
    );
    assert!(
        s.get_cert("o2").unwrap().is_none(),
        "no certificate recorded"
    );
    assert!(s.get_cert("o1").unwrap().unwrap().revoked_at.is_none());
    assert_eq!(s.get_device("O1").unwrap().unwrap().cert_serial, "o1");
    // Another owner's new DeviceID with the same HWDevID: recorded, O1 untouched.
    let out = s
        .record_enrollment(
            &owned("O2", Some("HO"), "o3", "u2"),
            &cert("o3", "O2"),
            3,
            None,
        )
        .unwrap();
    assert!(out.replaced.is_empty() && out.refused.is_none(), "{out:?}");
    assert_eq!(
        s.get_device("O1").unwrap().unwrap().state,
        DeviceState::Enrolled
    );
    // The same owner's new DeviceID on that hardware replaces O1 (the index still names O1).
    let out = s
        .record_enrollment(
            &owned("O3", Some("HO"), "o4", "u1"),
            &cert("o4", "O3"),
            4,
            None,
        )
        .unwrap();
    assert_eq!(out.replaced, vec!["O1".to_string()]);
    assert_eq!(
        s.get_device("O2").unwrap().unwrap().state,
        DeviceState::Enrolled
    );
    // The per-owner cap: re-enrolling is not a new device; deleting frees a place.
    let cap = Some(1);
    assert!(s
        .record_enrollment(&owned("C1", None, "c1", "u3"), &cert("c1", "C1"), 5, cap)
        .unwrap()
        .refused
        .is_none());
    let out = s
        .record_enrollment(&owned("C2", None, "c2", "u3"), &cert("c2", "C2"), 6, cap)
        .unwrap();
    assert_eq!(
        out.refused,
        Some(EnrollRefusal::TooManyDevices { limit: 1 })
    );
    assert!(s.get_device("C2").unwrap().is_none());
    assert!(s
        .record_enrollment(&owned("C1", None, "c3", "u3"), &cert("c3", "C1"), 7, cap)
        .unwrap()
        .refused
        .is_none());
    assert!(s.delete_device("C1", 8).unwrap());
    assert!(s
        .record_enrollment(&owned("C2", None, "c4", "u3"), &cert("c4", "C2"), 9, cap)
        .unwrap()
        .refused
        .is_none());
}

/// `enqueue_gated_many` (device checks in the enqueue's transaction) and `apply_changes`
/// (cancels, new commands and records as one transaction).
fn changes_battery(s: &dyn Store) {
    use winmdm::store::records::Kind;
    use winmdm::store::tx::ChangeSet;
    s.put_device(&device("G1", None, "01")).unwrap();
    let mut gone = device("G2", None, "02");
    gone.state = DeviceState::Unenrolled;
    s.put_device(&gone).unwrap();
    let mut bulk = device("G3", None, "03");
    bulk.bulk = true;
    s.put_device(&bulk).unwrap();
    let user = |d: &str, id: &str| {
        let mut c = command(d, id);
        c.user_scoped = true;
        c
    };
    let out = s
        .enqueue_gated_many(vec![
            command("G1", "g1"),
            command("G2", "g2"),
            command("NOPE", "g3"),
            user("G3", "g4"),
            command("G3", "g5"),
            command("G1", "g1"),
        ])
        .unwrap();
    let kinds: Vec<String> = out
        .iter()
        .map(|r| match r {
            Ok(Enqueued::Created(_)) => "created".to_string(),
            Ok(Enqueued::Existing(_)) => "existing".to_string(),
            Err(e) => format!("{e:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "NotEnrolled",
            "NotFound",
            "DeviceScopeOnly",
            "created",
            "existing"
        ]
    );
    assert_eq!(s.queued("G2").unwrap().len(), 0);
    assert!(s.get_command("NOPE", "g3").unwrap().is_none());

    // One transaction: records, cancels (unknown and final ones left alone), commands.
    let marks: Kind<String> = Kind::new("mark");
    let before = s.queued("G1").unwrap();
    let applied = s
        .apply_changes(
            ChangeSet {
                cancels: vec![("G1".into(), "g1".into()), ("G1".into(), "unknown".into())],
                commands: vec![command("G1", "n1"), command("G1", "n2")],
                ops: vec![marks.put_op("k", &"v".to_string())],
            },
            7,
        )
        .unwrap()
        .expect("applied");
    assert_eq!(applied.cancelled, 1);
    assert_eq!(applied.enqueued.len(), 2);
    let seqs: Vec<u64> = applied
        .enqueued
        .iter()
        .map(|e| match e {
            Enqueued::Created(c) => c.seq,
            Enqueued::Existing(c) => panic!("{c:?} existed"),
        })
        .collect();
    assert!(seqs[0] < seqs[1] && seqs[0] > before.last().unwrap().seq);
    let g1 = s.get_command("G1", "g1").unwrap().unwrap();
    assert_eq!(g1.state, CommandState::Cancelled);
    assert_eq!(g1.completed_at, Some(7));
    let q: Vec<String> = s
        .queued("G1")
        .unwrap()
        .into_iter()
        .map(|c| c.command_id)
        .collect();
    assert_eq!(q, ["n1", "n2"]);
    assert_eq!(marks.get(s.records(), "k").unwrap().as_deref(), Some("v"));
    // A failed Expect writes nothing.
    let none = s
        .apply_changes(
            ChangeSet {
                cancels: vec![("G1".into(), "n1".into())],
                commands: vec![command("G1", "n3")],
                ops: vec![
                    marks.expect_absent("k"),
                    marks.put_op("k", &"w".to_string()),
                ],
            },
            8,
        )
        .unwrap();
    assert!(none.is_none());
    assert_eq!(s.queued("G1").unwrap().len(), 2);
    assert!(s.get_command("G1", "n3").unwrap().is_none());
    assert_eq!(marks.get(s.records(), "k").unwrap().as_deref(), Some("v"));
}

#[test]
fn mem_store_battery() {
    owner_battery(&MemStore::new());
    battery(&MemStore::new());
    queue_battery(&MemStore::new());
    lifecycle_battery(&MemStore::new());
    changes_battery(&MemStore::new());
    queue_stats_battery(&MemStore::new());
}

#[test]
fn sled_store_battery() {
    owner_battery(&SledStore::temporary().unwrap());
    battery(&SledStore::temporary().unwrap());
    queue_battery(&SledStore::temporary().unwrap());
    lifecycle_battery(&SledStore::temporary().unwrap());
    changes_battery(&SledStore::temporary().unwrap());
    queue_stats_battery(&SledStore::temporary().unwrap());
}

#[test]
fn redb_store_battery() {
    owner_battery(&RedbStore::temporary().unwrap());
    battery(&RedbStore::temporary().unwrap());
    queue_battery(&RedbStore::temporary().unwrap());
    lifecycle_battery(&RedbStore::temporary().unwrap());
    changes_battery(&RedbStore::temporary().unwrap());
    queue_stats_battery(&RedbStore::temporary().unwrap());
}

#[test]
fn redb_store_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let seq = {
        let s = RedbStore::open(dir.path()).unwrap();
        s.record_enrollment(&device("D1", Some("H1"), "01"), &cert("01", "D1"), 10, None)
            .unwrap();
        match s.enqueue(command("D1", "a")).unwrap() {
            Enqueued::Created(c) => c.seq,
            other => panic!("{other:?}"),
        }
    };
    let s = RedbStore::open(dir.path()).unwrap();
    assert_eq!(s.get_device("D1").unwrap().unwrap().cert_serial, "01");
    assert_eq!(s.count_certs().unwrap(), 1);
    // Ids keep growing across a reopen (queue order and audit paging rely on it).
    match s.enqueue(command("D1", "b")).unwrap() {
        Enqueued::Created(c) => assert!(c.seq > seq, "{} after {seq}", c.seq),
        other => panic!("{other:?}"),
    }
    let queued: Vec<String> = s
        .queued("D1")
        .unwrap()
        .into_iter()
        .map(|c| c.command_id)
        .collect();
    assert_eq!(queued, ["a", "b"]);
}

#[test]
fn sled_store_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.record_enrollment(&device("D1", Some("H1"), "01"), &cert("01", "D1"), 10, None)
            .unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.get_device("D1").unwrap().unwrap().cert_serial, "01");
    assert_eq!(s.count_certs().unwrap(), 1);
}

fn records_battery(s: &dyn Store) {
    use winmdm::store::records::Kind;
    const K: Kind<(String, u32)> = Kind::new("thing");
    const OTHER: Kind<u32> = Kind::new("thing2");
    let r = s.records();
    assert_eq!(K.get(r, "a").unwrap(), None);
    assert!(K.insert_new(r, "a", &("x".into(), 1)).unwrap());
    assert!(
        !K.insert_new(r, "a", &("y".into(), 2)).unwrap(),
        "unique key"
    );
    assert_eq!(K.get(r, "a").unwrap(), Some(("x".into(), 1)));
    for k in ["c", "b", "d"] {
        K.put(r, k, &(k.into(), 0)).unwrap();
    }
    // A kind whose name extends another's must not leak into its scans.
    OTHER.put(r, "a", &9).unwrap();
    let keys: Vec<String> = K.all(r).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["a", "b", "c", "d"]);
    let page: Vec<String> = K
        .list(r, Some("a"), 2)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(page, ["b", "c"]);
    // Single use: the second take finds nothing.
    assert_eq!(K.take(r, "b").unwrap(), Some(("b".into(), 0)));
    assert_eq!(K.take(r, "b").unwrap(), None);
    let new = K
        .update(r, "c", |v| Ok(v.map(|(s, n)| (s, n + 5))))
        .unwrap();
    assert_eq!(new, Some(("c".into(), 5)));
    assert!(K.delete(r, "c").unwrap());
    assert!(!K.delete(r, "c").unwrap());
    // A failed precondition changes nothing in the batch.
    let ops = [K.put_op("z", &("z".into(), 1)), K.expect_absent("a")];
    assert!(!r.apply_records(&ops).unwrap());
    assert_eq!(K.get(r, "z").unwrap(), None);
    assert_eq!(OTHER.get(r, "a").unwrap(), Some(9));
    // Composite keys (`group \0 device`, as the groups keep them) hold a NUL byte.
    const PAIRS: Kind<u32> = Kind::new("pairs");
    for (k, v) in [("g1\0d2", 2), ("g1", 0), ("g1\0d1", 1), ("g2\0d1", 3)] {
        PAIRS.put(r, k, &v).unwrap();
    }
    assert_eq!(PAIRS.get(r, "g1\0d1").unwrap(), Some(1));
    let keys: Vec<String> = PAIRS.all(r).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["g1", "g1\0d1", "g1\0d2", "g2\0d1"]);
    let page: Vec<String> = PAIRS
        .list(r, Some("g1\0d1"), 10)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(page, ["g1\0d2", "g2\0d1"]);
    assert!(PAIRS.delete(r, "g1\0d2").unwrap());
}

#[test]
fn mem_store_records() {
    records_battery(&MemStore::new());
}

#[test]
fn sled_store_records() {
    records_battery(&SledStore::temporary().unwrap());
}

#[test]
fn redb_store_records() {
    records_battery(&RedbStore::temporary().unwrap());
}

mod embedded;
mod outbox;

// ---- PostgreSQL: the same batteries, each on a database of its own ----

use crate::support::pg::TestDb;
use winmdm::store::pg::{PgOptions, PgStore};

/// Runs `f` on a fresh store in a fresh database (skipped, saying so, without a server).
fn on_pg(test: &str, f: impl FnOnce(&PgStore)) {
    let Some(db) = TestDb::create(test) else {
        return;
    };
    f(&db.store());
}

#[test]
fn pg_store_battery() {
    on_pg("pg_store_battery/owner", |s| owner_battery(s));
    on_pg("pg_store_battery/battery", |s| battery(s));
    on_pg("pg_store_battery/queue", |s| queue_battery(s));
    on_pg("pg_store_battery/lifecycle", |s| lifecycle_battery(s));
    on_pg("pg_store_battery/changes", |s| changes_battery(s));
    on_pg("pg_store_battery/queue_stats", |s| queue_stats_battery(s));
}

#[test]
fn pg_store_round_guard() {
    on_pg("pg_store_round_guard", |s| round_guard_battery(s));
}

#[test]
fn pg_store_records() {
    on_pg("pg_store_records", |s| records_battery(s));
}

/// Keys sort as bytes on every backend, so a page boundary is the same everywhere: upper case
/// before lower case, a key before its extensions, multi-byte UTF-8 last.
fn paging_order_battery(s: &dyn Store) -> (Vec<String>, Vec<String>, Vec<String>) {
    use winmdm::store::records::Kind;
    const K: Kind<u32> = Kind::new("order");
    let ids = [
        "b", "B", "a b", "a", "ab", "é", "Z", "a-", "a_", "~", "a\u{7f}",
    ];
    for (i, id) in ids.iter().enumerate() {
        let serial = format!("s{i}");
        s.record_enrollment(&device(id, None, &serial), &cert(&serial, id), 1, None)
            .unwrap();
        K.put(s.records(), id, &(i as u32)).unwrap();
        s.enqueue(command("b", id)).unwrap();
    }
    let mut devices = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.list_devices(after.as_deref(), 3).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|d| d.device_id.clone());
        devices.extend(page.into_iter().map(|d| d.device_id));
    }
    let mut records = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = K.list(s.records(), after.as_deref(), 4).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(k, _)| k.clone());
        records.extend(page.into_iter().map(|(k, _)| k));
    }
    let mut commands = Vec::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let page = s
            .scan_commands(after.as_ref().map(|(d, c)| (d.as_str(), c.as_str())), 2)
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page
            .last()
            .map(|c| (c.device_id.clone(), c.command_id.clone()));
        commands.extend(page.into_iter().map(|c| c.command_id));
    }
    let mut sorted: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    assert_eq!(devices, sorted, "devices in byte order");
    assert_eq!(records, sorted, "records in byte order");
    assert_eq!(commands, sorted, "commands in byte order");
    (devices, records, commands)
}

#[test]
fn pg_paging_order_matches_sled() {
    let on_sled = paging_order_battery(&SledStore::temporary().unwrap());
    on_pg("pg_paging_order_matches_sled", |s| {
        assert_eq!(paging_order_battery(s), on_sled);
    });
}

/// Many threads committing rounds of one device and enqueuing to it at once: every
/// serialization failure is retried inside the store, no command is lost, the generation counts
/// every committed round.
#[test]
fn pg_concurrent_rounds_and_enqueues() {
    use winmdm::store::{CommandQueue, SessionStore};
    let Some(db) = TestDb::create("pg_concurrent_rounds_and_enqueues") else {
        return;
    };
    let s = std::sync::Arc::new(
        PgStore::connect(
            &db.url,
            &PgOptions {
                max_connections: 8,
                ..PgOptions::default()
            },
        )
        .unwrap(),
    );
    s.record_enrollment(&device("C1", None, "c1"), &cert("c1", "C1"), 1, None)
        .unwrap();
    let threads = 8;
    let per = 15;
    let committed = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let s = s.clone();
            let committed = &committed;
            scope.spawn(move || {
                for i in 0..per {
                    s.enqueue(command("C1", &format!("t{t}-{i}"))).unwrap();
                    // Read the index, then commit a round guarded by what was read.
                    let generation = s
                        .get_session("C1", "")
                        .unwrap()
                        .map(|b| {
                            serde_json::from_slice::<SessionIndex>(&b)
                                .unwrap()
                                .generation
                        })
                        .unwrap_or(0);
                    let round = Round {
                        session: Some(("C1".into(), format!("{t}"), Some(vec![i as u8]))),
                        guard: Some(RoundGuard {
                            device_id: "C1".into(),
                            generation,
                            index: SessionIndex::default(),
                            drop: Vec::new(),
                        }),
                        ..Round::default()
                    };
                    if s.commit_round(&round, 2).unwrap() == RoundCommit::Committed {
                        committed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let index: SessionIndex =
        serde_json::from_slice(&s.get_session("C1", "").unwrap().unwrap()).unwrap();
    let committed = committed.load(std::sync::atomic::Ordering::SeqCst);
    assert!(committed > 0);
    assert_eq!(
        index.generation, committed,
        "one generation per committed round"
    );
    let queued = s.queued("C1").unwrap();
    assert_eq!(queued.len(), threads * per, "no enqueue lost");
    let mut seqs: Vec<u64> = queued.iter().map(|c| c.seq).collect();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        threads * per,
        "queue positions unique and ordered"
    );
}

/// Migrations: a second start finds the schema current; a database migrated by a newer binary
/// is refused.
#[test]
fn pg_migrations_refuse_a_newer_schema() {
    let Some(db) = TestDb::create("pg_migrations_refuse_a_newer_schema") else {
        return;
    };
    let s = db.store();
    let v = s.schema_version().unwrap();
    assert_eq!(v, winmdm::store::pg::schema::latest());
    s.check_schema().unwrap();
    drop(s);
    let s = db.store();
    assert_eq!(s.schema_version().unwrap(), v, "nothing applied twice");
    drop(s);
    // A newer binary's migration.
    crate::support::pg::exec(
        &db.url,
        format!(
            "INSERT INTO schema_migrations (version, description) VALUES ({}, 'from the future')",
            v + 1
        ),
    )
    .unwrap();
    let err = PgStore::connect(&db.url, &PgOptions::default()).unwrap_err();
    assert!(err.to_string().contains("newer than this binary"), "{err}");
}

/// The store is synchronous; a call made on an async worker (which the server avoids) blocks
/// that thread but must not panic ("cannot start a runtime from within a runtime").
#[tokio::test(flavor = "current_thread")]
async fn pg_store_called_on_an_async_worker_does_not_panic() {
    let Some(db) = TestDb::create("pg_store_called_on_an_async_worker_does_not_panic") else {
        return;
    };
    let s = db.store();
    s.put_cert(&cert("a1", "A1")).unwrap();
    assert_eq!(s.count_certs().unwrap(), 1);
    drop(s);
}

/// Connections the database closed (a restart, a failover, an administrator's
/// `pg_terminate_backend`) are replaced: the next calls succeed without an error.
#[test]
fn pg_store_reconnects_after_the_database_closed_its_connections() {
    use winmdm::store::CommandQueue;
    let Some(db) = TestDb::create("pg_store_reconnects") else {
        return;
    };
    let s = std::sync::Arc::new(db.store());
    s.record_enrollment(&device("R1", None, "r1"), &cert("r1", "R1"), 1, None)
        .unwrap();
    // Several pooled connections, all idle.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let s = s.clone();
            scope.spawn(move || s.get_device("R1").unwrap());
        }
    });
    for round in 0..3 {
        crate::support::pg::exec(
            &crate::support::pg::server_url(),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{}' AND pid <> pg_backend_pid()",
                db.name()
            ),
        )
        .unwrap();
        assert!(
            s.get_device("R1").unwrap().is_some(),
            "read after kill {round}"
        );
        s.enqueue(command("R1", &format!("k{round}"))).unwrap();
        s.put_cert(&cert(&format!("x{round}"), "R1")).unwrap();
    }
    assert_eq!(s.queued("R1").unwrap().len(), 3);
}

/// One hot record updated by many threads at once (as the lockout counter is under a password
/// guessing burst): every serialization failure is retried, no increment is lost.
#[test]
fn pg_hot_record_under_contention_loses_no_update() {
    use winmdm::store::records::Kind;
    const COUNTER: Kind<u64> = Kind::new("counter");
    let Some(db) = TestDb::create("pg_hot_record_under_contention") else {
        return;
    };
    let s = db.store();
    let (threads, each) = (40, 3);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let s = &s;
            scope.spawn(move || {
                for _ in 0..each {
                    COUNTER
                        .update(s.records(), "hot", |v| Ok(Some(v.unwrap_or(0) + 1)))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(
        COUNTER.get(s.records(), "hot").unwrap(),
        Some(threads * each)
    );
}
