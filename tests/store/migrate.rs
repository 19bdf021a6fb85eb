//! `winmdm migrate`: an embedded store copied into PostgreSQL, table by table (here an older
//! sled data directory, which is first moved to redb as a start would).

use winmdm::store::pg::{PgOptions, PgStore};
use winmdm::store::sled::SledStore;
use winmdm::store::tx::{KvRead, Table};
use winmdm::store::{
    AuditEntry, AuditStore, CommandQueue, Round, RoundGuard, SessionIndex, SessionStore, Store,
    User, UserStore,
};

use super::{cert, command, device};
use crate::support::pg::TestDb;

/// A sled store with something in every table (more rows than one copy page in one of them).
pub(crate) fn populate(s: &dyn Store) {
    for i in 0..3 {
        s.create_user(&User {
            upn: format!("u{i}@example.com"),
            id: String::new(),
            password_hash: "$argon2id$x".into(),
            created_at: i,
            disabled: i == 2,
        })
        .unwrap();
    }
    s.record_enrollment(&device("D1", Some("H1"), "01"), &cert("01", "D1"), 1, None)
        .unwrap();
    s.record_enrollment(&device("D1", Some("H1"), "02"), &cert("02", "D1"), 2, None)
        .unwrap();
    s.record_enrollment(&device("D2", None, "03"), &cert("03", "D2"), 3, None)
        .unwrap();
    for i in 0..(winmdm::cli::migrate::PAGE + 20) {
        s.enqueue(command("D1", &format!("c{i:04}"))).unwrap();
    }
    s.cancel("D1", "c0001", 4).unwrap();
    let round = Round {
        session: Some(("D1".into(), "7".into(), Some(vec![0, 1, 2, 255]))),
        guard: Some(RoundGuard {
            device_id: "D1".into(),
            generation: 0,
            index: SessionIndex::default(),
            drop: Vec::new(),
        }),
        ..Round::default()
    };
    assert_eq!(
        s.commit_round(&round, 5).unwrap(),
        winmdm::store::RoundCommit::Committed
    );
    for i in 0..4 {
        s.append_audit(AuditEntry {
            id: 0,
            at: i,
            actor: "admin".into(),
            action: "user.create".into(),
            target: format!("u{i}"),
            detail: serde_json::json!({"n": i, "nested": {"a": [1, 2]}}),
        })
        .unwrap();
    }
    winmdm::store::records::Kind::<String>::new("token")
        .put(s.records(), "t1", &"secret-hash".to_string())
        .unwrap();
}

/// Every row of `t`, values as JSON where the table holds JSON (PostgreSQL's jsonb keeps the
/// meaning, not the bytes), else as bytes.
pub(crate) fn rows(s: &dyn KvRead, t: Table) -> Vec<(Vec<u8>, serde_json::Value)> {
    let json = matches!(
        t,
        Table::Users | Table::Devices | Table::Certs | Table::Commands | Table::Audit
    );
    s.scan_after(t, None, 100_000)
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let v = if json {
                serde_json::from_slice(&v).unwrap()
            } else {
                serde_json::json!(v)
            };
            (k, v)
        })
        .collect()
}

#[test]
fn pg_migrate_copies_every_table_and_refuses_a_non_empty_target() {
    let Some(db) = TestDb::create("pg_migrate_copies_every_table") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let max_seq;
    {
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        populate(&s);
        max_seq = s.list_commands("D1").unwrap().last().unwrap().seq;
    }
    let mut out = Vec::new();
    let copied = winmdm::cli::migrate::run(dir.path(), &db.url, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("commands") && out.contains("verified"),
        "{out}"
    );
    // The sled directory was first moved to the embedded redb store, as a start would, and that
    // store was the copy's source.
    assert!(dir
        .path()
        .join(winmdm::store::embedded::SLED_MIGRATED_DIR)
        .is_dir());
    let src = winmdm::store::redb::RedbStore::open(dir.path()).unwrap();
    let dst = PgStore::connect(&db.url, &PgOptions::default()).unwrap();
    for (t, n) in &copied.tables {
        let a = rows(&src, *t);
        assert!(!a.is_empty(), "{t:?} has rows in the source");
        assert_eq!(a.len() as u64, *n);
        assert_eq!(a, rows(&dst, *t), "{t:?} copied as is");
    }
    // The store works on the copy: queue order and history, the session, new ids above old.
    let cmds = dst.list_commands("D1").unwrap();
    assert_eq!(cmds.len(), winmdm::cli::migrate::PAGE + 20);
    assert_eq!(dst.queued("D1").unwrap().len(), cmds.len() - 1);
    assert_eq!(
        dst.get_session("D1", "7").unwrap(),
        Some(vec![0, 1, 2, 255])
    );
    assert!(dst.get_user("u2@example.com").unwrap().unwrap().disabled);
    let new = dst.enqueue(command("D1", "after-migration")).unwrap();
    let winmdm::store::Enqueued::Created(new) = new else {
        panic!("{new:?}")
    };
    assert!(new.seq > max_seq, "{} > {max_seq}", new.seq);
    let audit_id = dst
        .append_audit(AuditEntry {
            id: 0,
            at: 9,
            actor: "a".into(),
            action: "x".into(),
            target: "y".into(),
            detail: serde_json::Value::Null,
        })
        .unwrap();
    assert!(dst
        .list_audit(None, 100)
        .unwrap()
        .iter()
        .all(|e| e.id <= audit_id));
    drop(src);

    // A second run into the now non-empty database is refused by the binary, changing nothing.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .args(["migrate", "--from"])
        .arg(dir.path())
        .args(["--to", &db.url])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(dst.list_commands("D1").unwrap().len(), cmds.len() + 1);
}

/// A backup archive of a populated embedded store, restored into PostgreSQL and into a new data
/// directory: every table row for row, and new ids above the restored ones.
#[test]
fn backup_restores_every_table_into_redb_and_postgresql() {
    use winmdm::backup::{self, RestoreOptions, StoreTarget, WriteOptions};
    let dir = tempfile::tempdir().unwrap();
    let src = winmdm::store::redb::RedbStore::open(dir.path()).unwrap();
    populate(&src);
    std::fs::write(dir.path().join("admin-token"), "t").unwrap();
    let snap = winmdm::store::Snapshots::snapshot(&src).unwrap().unwrap();
    let mut archive = Vec::new();
    let m = backup::write(
        Some(snap.as_ref()),
        dir.path(),
        1,
        &WriteOptions::default(),
        &mut archive,
    )
    .unwrap();
    drop(snap);
    let max_seq = src.list_commands("D1").unwrap().last().unwrap().seq;
    let check = |dst: &dyn KvRead| {
        for t in Table::ALL {
            assert_eq!(rows(&src, t), rows(dst, t), "{t:?}");
            assert_eq!(
                m.store.as_ref().unwrap().tables[t.name()],
                rows(&src, t).len() as u64
            );
        }
    };
    let to = tempfile::tempdir().unwrap();
    let restored = to.path().join("data");
    backup::restore(
        archive.as_slice(),
        &restored,
        StoreTarget::Embedded,
        &RestoreOptions::default(),
    )
    .unwrap();
    {
        let r = winmdm::store::redb::RedbStore::open(&restored).unwrap();
        check(&r);
        let winmdm::store::Enqueued::Created(new) =
            r.enqueue(command("D1", "after-restore")).unwrap()
        else {
            panic!("not created")
        };
        assert!(new.seq > max_seq, "{} > {max_seq}", new.seq);
    }
    let Some(db) = TestDb::create("backup_restores_into_postgresql") else {
        return;
    };
    let pg = PgStore::connect(&db.url, &PgOptions::default()).unwrap();
    let keys_dir = to.path().join("pg-keys");
    backup::restore(
        archive.as_slice(),
        &keys_dir,
        StoreTarget::Into(&pg),
        &RestoreOptions::default(),
    )
    .unwrap();
    check(&pg);
    let winmdm::store::Enqueued::Created(new) = pg.enqueue(command("D1", "after-restore")).unwrap()
    else {
        panic!("not created")
    };
    assert!(new.seq > max_seq, "{} > {max_seq}", new.seq);
    assert_eq!(std::fs::read(keys_dir.join("admin-token")).unwrap(), b"t");
    // Never into a database that holds data.
    let again = to.path().join("again");
    let e = backup::restore(
        archive.as_slice(),
        &again,
        StoreTarget::Into(&pg),
        &RestoreOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
}
