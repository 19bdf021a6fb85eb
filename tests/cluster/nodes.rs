//! Two nodes (two in-process servers, or two `App`s) on one PostgreSQL database: password
//! checks, the command-history sweep and the job sweep.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::json;
use winmdm::app::App;
use winmdm::config::ServeOptions;
use winmdm::jobs::{self, JobKind};

use crate::support::device::{fault_subcode, policy_xml};
use crate::support::pg::TestDb;
use crate::support::{TestServer, ADMIN_TOKEN};

const POLICY: &str = "/EnrollmentServer/Policy.svc";

/// `Ok(())` if GetPolicies with `upn`/`password` is answered, the fault subcode otherwise.
async fn policies(srv: &TestServer, upn: &str, password: &str) -> Result<(), String> {
    let r = srv
        .client()
        .soap(
            POLICY,
            policy_xml(upn, password, "x", "urn:uuid:1").as_bytes(),
        )
        .await;
    let body = r.text();
    if r.status == 200 && fault_subcode(&body).is_none() {
        Ok(())
    } else {
        Err(format!(
            "{} {}",
            r.status,
            fault_subcode(&body).unwrap_or_default()
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_or_disable_on_one_node_takes_effect_on_the_other_at_once() {
    let Some(db) = TestDb::create("password change across nodes") else {
        return;
    };
    let url = db.url.clone();
    let a = TestServer::start_with(|o| o.database_url = Some(url.parse().unwrap())).await;
    let url = db.url.clone();
    let b = TestServer::start_with(|o| o.database_url = Some(url.parse().unwrap())).await;
    let upn = "ada@contoso.com";
    a.create_user(upn, "old-Passw0rd!").await;
    // B checks the password (and remembers the success in its cache), twice.
    policies(&b, upn, "old-Passw0rd!").await.unwrap();
    policies(&b, upn, "old-Passw0rd!").await.unwrap();

    let (st, body) = a
        .admin(
            "PATCH",
            &format!("/api/v1/users/{upn}"),
            Some(json!({"password": "new-Passw0rd!"})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let r = policies(&b, upn, "old-Passw0rd!").await;
    assert!(
        r.as_ref().is_err_and(|e| e.ends_with("s:Authentication")),
        "the old password is refused by the other node at once: {r:?}"
    );
    policies(&b, upn, "new-Passw0rd!").await.unwrap();

    let (st, body) = a
        .admin(
            "PATCH",
            &format!("/api/v1/users/{upn}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let r = policies(&b, upn, "new-Passw0rd!").await;
    assert!(
        r.as_ref().is_err_and(|e| e.ends_with("s:Authorization")),
        "a user disabled on A is refused by B at once: {r:?}"
    );
    a.stop().await;
    b.stop().await;
}

/// A node (an `App`, no listener) on database `url` with its own data directory.
fn node(url: &str, dir: &std::path::Path) -> App {
    let opts = ServeOptions {
        data_dir: Some(dir.to_path_buf()),
        database_url: Some(url.parse().expect("url")),
        ..ServeOptions::default()
    };
    App::open(opts.resolve().expect("config"), Some(ADMIN_TOKEN.into())).expect("app opens")
}

/// Runs `f(node)` for both nodes at the same moment, each on a blocking thread of the runtime.
async fn at_once<T: Send + 'static>(
    nodes: [Arc<App>; 2],
    f: impl Fn(&Arc<App>) -> T + Send + Sync + 'static,
) -> [T; 2] {
    let f = Arc::new(f);
    let gate = Arc::new(Barrier::new(2));
    let hs = nodes.map(|app| {
        let (f, gate) = (f.clone(), gate.clone());
        tokio::task::spawn_blocking(move || {
            gate.wait();
            f(&app)
        })
    });
    let [x, y] = hs;
    [x.await.expect("join"), y.await.expect("join")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sweeping_history_at_once_delete_and_report_each_command_once() {
    let Some(db) = TestDb::create("retention sweep on two nodes") else {
        return;
    };
    const DAY: i64 = 86_400;
    const DEVICES: usize = 6;
    const PER_DEVICE: usize = 500;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (url, p1, p2) = (
        db.url.clone(),
        d1.path().to_path_buf(),
        d2.path().to_path_buf(),
    );
    let (a, b) = tokio::task::spawn_blocking(move || {
        let (a, b) = (node(&url, &p1), node(&url, &p2));
        assert_ne!(a.node_id, b.node_id);
        // Finished commands 100 days old: all past a 30-day retention.
        let old = winmdm::clock::SystemClock.now_unix() - 100 * DAY;
        for d in 0..DEVICES {
            crate::manage::retention::finished_history(&a, &format!("SWEEP-{d}"), PER_DEVICE, old);
        }
        (Arc::new(a), Arc::new(b))
    })
    .await
    .unwrap();
    use winmdm::clock::Clock;
    let now = winmdm::clock::SystemClock.now_unix();
    let [ra, rb] = at_once([a.clone(), b.clone()], move |app| {
        winmdm::mdm::retention::sweep(app, now, Duration::from_secs(30 * DAY as u64))
    })
    .await;
    let (ra, rb) = (ra.expect("node A's sweep"), rb.expect("node B's sweep"));
    let all = DEVICES * PER_DEVICE;
    assert_eq!(
        (ra.deleted + rb.deleted, ra.scanned + rb.scanned),
        (all, all),
        "each command deleted and reported once: A {ra:?}, B {rb:?}"
    );
    let left = tokio::task::spawn_blocking(move || a.store.scan_commands(None, 10).unwrap())
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    // The lease was released: a later sweep on either node runs (and finds nothing).
    let s = tokio::task::spawn_blocking(move || {
        winmdm::mdm::retention::sweep(&b, now, Duration::from_secs(30 * DAY as u64)).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(s, winmdm::mdm::retention::Sweep::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sweeping_jobs_at_once_take_up_each_job_once() {
    let Some(db) = TestDb::create("job sweep on two nodes") else {
        return;
    };
    const JOBS: usize = 40;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (url, p1, p2) = (
        db.url.clone(),
        d1.path().to_path_buf(),
        d2.path().to_path_buf(),
    );
    let (a, b) = tokio::task::spawn_blocking(move || {
        let (a, b) = (node(&url, &p1), node(&url, &p2));
        for i in 0..JOBS {
            jobs::create(
                &a,
                JobKind::ReconcileProfile {
                    profile_id: format!("no-such-profile-{i}"),
                    reason: "assign".into(),
                },
                "bootstrap",
            )
            .unwrap();
        }
        (Arc::new(a), Arc::new(b))
    })
    .await
    .unwrap();
    let [ra, rb] = at_once([a.clone(), b.clone()], jobs::sweep).await;
    let (ra, rb) = (ra.expect("node A's sweep"), rb.expect("node B's sweep"));
    assert_eq!(
        ra + rb,
        JOBS,
        "each job taken up by one node: A took {ra}, B took {rb}"
    );
    // Every job runs to its end (its profile does not exist: nothing to do) before the
    // database goes.
    let mut list = Vec::new();
    for _ in 0..200 {
        let a = a.clone();
        list = tokio::task::spawn_blocking(move || jobs::list(&a, None, 1_000).unwrap())
            .await
            .unwrap();
        if list.iter().all(|j| j.state == jobs::JobState::Done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(list.len(), JOBS);
    assert!(
        list.iter()
            .all(|j| j.state == jobs::JobState::Done && j.lease.is_none()),
        "{list:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_admins_get_503_with_retry_after_while_the_database_is_unreachable() {
    let Some(db) = TestDb::create("database unreachable") else {
        return;
    };
    let url = db.url.clone();
    let srv = TestServer::start_with(|o| o.database_url = Some(url.parse().unwrap())).await;
    let mut d = crate::manage::enrolled(&srv, 1).await;
    assert!(d.session().await.is_empty());
    // The database refuses new connections and every open one is ended (as while it restarts).
    let server = crate::support::pg::server_url();
    let name = db.name().to_string();
    crate::support::pg::exec(
        &server,
        format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ),
    )
    .unwrap();
    let r = d.post(&d.first_package(90, "")).await;
    assert_eq!(r.status, 503, "management while the database is away");
    assert!(
        r.headers.get("retry-after").is_some(),
        "Retry-After: {:?}",
        r.headers
    );
    let (st, body) = srv
        .admin("GET", &format!("/api/v1/devices/{}", d.device_id), None)
        .await;
    assert_eq!(st, 503, "admin API while the database is away: {body}");
    crate::support::pg::exec(
        &server,
        format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    )
    .unwrap();
    // Back: the node reconnects by itself.
    assert!(d.session().await.is_empty());
    srv.stop().await;
}
