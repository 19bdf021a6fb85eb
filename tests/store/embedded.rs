//! The embedded store: group commit under concurrent writers, and the one-time move of an older
//! sled data directory to redb (issue 22).

use std::sync::Arc;

use winmdm::store::embedded::{self, SLED_DIR, SLED_MIGRATED_DIR};
use winmdm::store::redb::{RedbStore, FILE_NAME};
use winmdm::store::sled::SledStore;
use winmdm::store::{
    AuditEntry, AuditStore, CertStore, CommandQueue, DeviceStore, Enqueued, Round, SessionStore,
    UserStore,
};

use super::{cert, command, device};

#[test]
fn concurrent_writers_share_commits_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(RedbStore::open(dir.path()).unwrap());
    const THREADS: usize = 16;
    const EACH: usize = 40;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let dev = format!("T{t}");
                    match s.enqueue(command(&dev, &format!("c{i}"))).unwrap() {
                        Enqueued::Created(_) => {}
                        other => panic!("{other:?}"),
                    }
                    let round = Round {
                        session: Some((dev, format!("{i}"), Some(vec![b'x'; 64]))),
                        ..Round::default()
                    };
                    s.commit_round(&round, 1).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = s.commit_stats();
    assert_eq!(stats.writes, (THREADS * EACH * 2) as u64, "{stats:?}");
    assert!(
        stats.commits < stats.writes && stats.max_batch >= 2,
        "concurrent writers must share commits: {stats:?}"
    );
    drop(s);
    // Everything acknowledged is there after a reopen, queue order per device kept.
    let s = RedbStore::open(dir.path()).unwrap();
    for t in 0..THREADS {
        let q = s.queued(&format!("T{t}")).unwrap();
        let ids: Vec<String> = q.into_iter().map(|c| c.command_id).collect();
        let want: Vec<String> = (0..EACH).map(|i| format!("c{i}")).collect();
        assert_eq!(ids, want);
        assert!(s
            .get_session(&format!("T{t}"), &format!("{}", EACH - 1))
            .unwrap()
            .is_some());
    }
}

/// Rounds committed asynchronously (the committer thread) share batches with writers on
/// their own threads, every one is acknowledged only once committed, and the file can be
/// opened again as soon as the last handle is dropped (the committer holds none while idle).
#[test]
fn async_rounds_share_batches_with_blocking_writers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(RedbStore::open(dir.path()).unwrap());
    const TASKS: usize = 32;
    const THREADS: usize = 4;
    const EACH: usize = 25;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let dev = format!("B{t}");
                    assert!(matches!(
                        s.enqueue(command(&dev, &format!("c{i}"))).unwrap(),
                        Enqueued::Created(_)
                    ));
                }
            })
        })
        .collect();
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let s = s.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let round = Round {
                            session: Some((format!("A{t}"), format!("{i}"), Some(vec![b'x'; 64]))),
                            ..Round::default()
                        };
                        let r = s.commit_round_async(round, 1).await.unwrap();
                        assert_eq!(r, winmdm::store::RoundCommit::Committed);
                        // Acknowledged means visible.
                        assert!(s
                            .get_session(&format!("A{t}"), &format!("{i}"))
                            .unwrap()
                            .is_some());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    for h in threads {
        h.join().unwrap();
    }
    let stats = s.commit_stats();
    assert_eq!(stats.writes, ((TASKS + THREADS) * EACH) as u64, "{stats:?}");
    assert!(
        stats.commits < stats.writes && stats.max_batch >= 2,
        "async writers must share commits: {stats:?}"
    );
    drop(s);
    let s = RedbStore::open(dir.path()).expect("the file is free once the last handle is gone");
    for t in 0..TASKS {
        for i in 0..EACH {
            assert!(s
                .get_session(&format!("A{t}"), &format!("{i}"))
                .unwrap()
                .is_some());
        }
    }
    for t in 0..THREADS {
        assert_eq!(s.queued(&format!("B{t}")).unwrap().len(), EACH);
    }
    drop(rt);
}

#[test]
fn a_failing_writer_leaves_the_batch_and_others_commit() {
    let s = Arc::new(RedbStore::temporary().unwrap());
    let user = winmdm::store::User {
        upn: "a@x.test".into(),
        id: String::new(),
        password_hash: "h".into(),
        created_at: 1,
        disabled: false,
    };
    s.create_user(&user).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            let user = user.clone();
            std::thread::spawn(move || {
                // Half of the writers fail (the user exists), half succeed.
                if i % 2 == 0 {
                    assert!(s.create_user(&user).is_err());
                } else {
                    s.put_cert(&cert(&format!("s{i}"), "D")).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(s.count_certs().unwrap(), 4);
    assert_eq!(s.list_users().unwrap().len(), 1);
}

#[test]
fn an_older_sled_data_directory_is_migrated_once() {
    let data = tempfile::tempdir().unwrap();
    let (seq, audit_id) = {
        let old = SledStore::open(&data.path().join(SLED_DIR)).unwrap();
        for i in 0..30 {
            let id = format!("M{i:02}");
            old.record_enrollment(
                &device(&id, Some(&format!("H{i}")), &format!("s{i}")),
                &cert(&format!("s{i}"), &id),
                10,
                None,
            )
            .unwrap();
        }
        old.revoke_cert("s3", "test", 11).unwrap();
        let seq = match old.enqueue(command("M01", "a")).unwrap() {
            Enqueued::Created(c) => c.seq,
            other => panic!("{other:?}"),
        };
        let audit_id = old.append_audit(audit()).unwrap();
        (seq, audit_id)
    };
    let s = embedded::open(data.path(), 8 << 20).unwrap();
    assert!(data.path().join(FILE_NAME).exists());
    assert!(!data.path().join(SLED_DIR).exists());
    assert!(data.path().join(SLED_MIGRATED_DIR).is_dir());
    assert_eq!(s.list_devices(None, 100).unwrap().len(), 30);
    assert_eq!(s.count_certs().unwrap(), 30);
    assert_eq!(s.list_revoked().unwrap().len(), 1);
    assert_eq!(s.get_device("M07").unwrap().unwrap().cert_serial, "s7");
    assert_eq!(s.queued("M01").unwrap().len(), 1);
    // New ids continue above the migrated ones.
    match s.enqueue(command("M01", "b")).unwrap() {
        Enqueued::Created(c) => assert!(c.seq > seq),
        other => panic!("{other:?}"),
    }
    assert!(s.append_audit(audit()).unwrap() > audit_id);
    drop(s);
    // A second start opens the redb store as it is: nothing copied again.
    let s = embedded::open(data.path(), 8 << 20).unwrap();
    assert_eq!(s.queued("M01").unwrap().len(), 2);
}

#[test]
fn a_migration_interrupted_after_the_copy_is_finished_at_next_start() {
    let data = tempfile::tempdir().unwrap();
    {
        let old = SledStore::open(&data.path().join(SLED_DIR)).unwrap();
        old.put_cert(&cert("k1", "D")).unwrap();
    }
    embedded::migrate_sled(data.path(), 8 << 20).unwrap();
    // Simulate a crash between the rename of store.redb and the rename of the sled directory.
    std::fs::rename(
        data.path().join(SLED_MIGRATED_DIR),
        data.path().join(SLED_DIR),
    )
    .unwrap();
    let s = embedded::open(data.path(), 8 << 20).unwrap();
    assert_eq!(s.count_certs().unwrap(), 1);
    assert!(!data.path().join(SLED_DIR).exists());
}

fn audit() -> AuditEntry {
    AuditEntry {
        id: 0,
        at: 12,
        actor: "admin".into(),
        action: "test".into(),
        target: "M01".into(),
        detail: serde_json::Value::Null,
    }
}

/// A lazy round (an empty check-in, `Round::lazy_sync`) is committed without a sync: later
/// transactions see it at once, a power cut before the next sync loses it (and only it), and a
/// durable commit or `sync_lazy` after it makes it survive.
#[test]
fn lazy_rounds_skip_the_sync_until_the_next_durable_commit() {
    use winmdm::store::powercut::SyncOnlyFile;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let open =
        || RedbStore::open_with_backend(SyncOnlyFile::open(&path).unwrap(), 16 << 20).unwrap();
    let session = |sid: &str, lazy: bool| Round {
        session: Some(("D".into(), sid.into(), Some(sid.as_bytes().to_vec()))),
        lazy_sync: lazy,
        ..Round::default()
    };
    let present = |s: &RedbStore, sid: &str| s.get_session("D", sid).unwrap().is_some();

    // 1. durable, then lazy: the lazy one is visible, its commit made no sync.
    let s = open();
    s.commit_round(&session("durable-1", false), 1).unwrap();
    let before = s.commit_stats();
    s.commit_round(&session("lazy-1", true), 1).unwrap();
    let after = s.commit_stats();
    assert_eq!(
        (after.commits - before.commits, after.lazy - before.lazy),
        (0, 1),
        "{after:?}"
    );
    assert!(present(&s, "lazy-1"), "visible before any sync");
    // A power cut now (the process dies: nothing more reaches the file).
    std::mem::forget(s);
    let s = open();
    assert!(present(&s, "durable-1"));
    assert!(
        !present(&s, "lazy-1"),
        "a lazy round is lost by a cut before the next sync"
    );

    // 2. lazy, then a durable commit: both survive the cut.
    s.commit_round(&session("lazy-2", true), 1).unwrap();
    s.commit_round(&session("durable-2", false), 1).unwrap();
    // 3. lazy, then the node's periodic sync: it survives too.
    s.commit_round(&session("lazy-3", true), 1).unwrap();
    assert!(s.sync_lazy().unwrap(), "there was a lazy commit to sync");
    assert!(!s.sync_lazy().unwrap(), "and nothing after it");
    std::mem::forget(s);
    let s = open();
    for sid in ["durable-1", "lazy-2", "durable-2", "lazy-3"] {
        assert!(present(&s, sid), "{sid} survives the cut");
    }
}
