//! Background jobs (issue 15): a profile's reconciliation runs as a job with progress, answers
//! 202 when it outlasts `--job-wait-ms`, is taken up again when the node holding it died, and is
//! held by one node at a time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use winmdm::jobs::{self, Job, JobKind, JobState, Lease, JOBS};
use winmdm::profiles::reconcile::ProfileCursor;
use winmdm::store::{Device, DeviceState};

use super::{group, ok, profile};
use crate::support::TestServer;

/// `n` enrolled device records tagged `lab`, written by 16 threads (their commits are grouped).
async fn devices(srv: &TestServer, n: usize) -> Vec<String> {
    let store = srv.app.store.clone();
    tokio::task::spawn_blocking(move || {
        let ids: Vec<String> = (0..n).map(|i| format!("JOB{i:029}")).collect();
        std::thread::scope(|s| {
            for chunk in ids.chunks(n.div_ceil(16).max(1)) {
                let store = store.clone();
                s.spawn(move || {
                    for id in chunk {
                        store
                            .put_device(&Device {
                                device_id: id.clone(),
                                enrollment_type: "Full".into(),
                                device_type: Some("CIMClient_Windows".into()),
                                os_edition: Some("72".into()),
                                group_tag: Some("lab".into()),
                                state: DeviceState::Enrolled,
                                ..Default::default()
                            })
                            .unwrap();
                    }
                });
            }
        });
        ids
    })
    .await
    .unwrap()
}

async fn wait_done(srv: &TestServer, url: &str) -> Value {
    for _ in 0..600 {
        let v = ok(srv, "GET", url, None, 200).await;
        if v["state"] == "done" || v["state"] == "failed" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {url} did not finish");
}

fn setting_profile(name: &str) -> Value {
    json!({"name": name, "settings": [{"target": "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera", "format": "int", "data": "0"}]})
}

#[tokio::test]
async fn a_long_reconciliation_answers_202_and_reports_progress_until_done() {
    let srv = TestServer::start_with(|o| o.job_wait_ms = Some(0)).await;
    let ids = devices(&srv, 2_300).await;
    let gid = group(&srv, "lab", Some(r#"group_tag == "lab""#)).await;
    let pid = profile(&srv, setting_profile("camera off")).await;
    let v = ok(
        &srv,
        "POST",
        &format!("/api/v1/profiles/{pid}/assignments"),
        Some(json!({"group_id": gid})),
        202,
    )
    .await;
    let url = v["job"]["url"].as_str().unwrap().to_string();
    assert_eq!(v["job"]["kind"]["type"], "reconcile_profile");
    let done = wait_done(&srv, &url).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["total"], 2_300, "{done}");
    assert_eq!(done["done"], 2_300, "{done}");
    assert_eq!(done["queued"], 2_300, "{done}");
    assert!(done["errors"].as_array().unwrap().is_empty());
    // Every device got its command, once.
    for id in [&ids[0], &ids[1_234], &ids[2_299]] {
        assert_eq!(srv.app.store.queued(id).unwrap().len(), 1, "{id}");
    }
    // The job is listed; the audit entry names it.
    let list = ok(&srv, "GET", "/api/v1/jobs", None, 200).await;
    assert!(list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["url"] == url.as_str()));
    let audit = ok(&srv, "GET", "/api/v1/audit?limit=100", None, 200).await;
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "profile.assign" && e["detail"]["job_id"] == done["id"]));
    ok(&srv, "GET", "/api/v1/jobs/nope", None, 404).await;

    // Unassigning is a job too; every device gets the Delete.
    let v = ok(
        &srv,
        "DELETE",
        &format!("/api/v1/profiles/{pid}/assignments/{gid}"),
        None,
        202,
    )
    .await;
    let done = wait_done(&srv, v["job"]["url"].as_str().unwrap()).await;
    assert_eq!(
        (done["done"].as_u64(), done["state"].as_str()),
        (Some(2_300), Some("done"))
    );
    let q = srv.app.store.queued(&ids[7]).unwrap();
    assert_eq!(
        q.len(),
        1,
        "the unanswered Replace cancelled, a Delete queued"
    );
    assert_eq!(q[0].verb, "Delete");
}

#[tokio::test]
async fn within_the_wait_the_answer_is_the_finished_reconciliation() {
    let srv = TestServer::start().await;
    devices(&srv, 30).await;
    let gid = group(&srv, "lab", Some(r#"group_tag == "lab""#)).await;
    let pid = profile(&srv, setting_profile("camera off")).await;
    let v = ok(
        &srv,
        "POST",
        &format!("/api/v1/profiles/{pid}/assignments"),
        Some(json!({"group_id": gid})),
        201,
    )
    .await;
    assert_eq!(
        (v["devices"].as_u64(), v["queued"].as_u64()),
        (Some(30), Some(30))
    );
    assert_eq!(v["job"]["state"], "done");
}

/// A job record as a node that died mid-way would have left it.
fn orphan(pid: &str, lease: Option<Lease>, cursor: ProfileCursor, done: u64) -> Job {
    Job {
        id: format!("orphan-{}", lease.is_some()),
        kind: JobKind::ReconcileProfile {
            profile_id: pid.into(),
            reason: "assign".into(),
        },
        state: JobState::Running,
        total: 500,
        done,
        queued: done,
        errors: vec![],
        attempts: 0,
        actor: "bootstrap".into(),
        created_at: 1,
        updated_at: 1,
        finished_at: None,
        lease,
        cursor,
        counted: true,
    }
}

#[tokio::test]
async fn a_job_whose_node_died_is_resumed_from_its_cursor_and_a_held_one_is_left_alone() {
    let srv = TestServer::start().await;
    let ids = devices(&srv, 500).await;
    let gid = group(&srv, "lab", Some(r#"group_tag == "lab""#)).await;
    let pid = profile(&srv, setting_profile("camera off")).await;
    // Assign through the records only (no job), then leave two jobs as dead or live nodes would.
    let app = srv.app.clone();
    let (p2, g2) = (pid.clone(), gid.clone());
    tokio::task::spawn_blocking(move || {
        winmdm::profiles::assign_record(&app, &p2, &g2).unwrap();
        let now = app.clock.now_unix();
        // Died at device 200: its lease ran out.
        let dead = orphan(
            &p2,
            Some(Lease {
                node: "dead-node".into(),
                until: now - 1,
            }),
            ProfileCursor {
                group: Some(g2.clone()),
                deployments: false,
                after: Some(format!("JOB{:029}", 199)),
                finished: false,
            },
            200,
        );
        JOBS.put(app.store.records(), &dead.id, &dead).unwrap();
        // Held by a live node: nobody else may take it.
        let live = orphan(&p2, None, ProfileCursor::default(), 0);
        let live = Job {
            id: "held".into(),
            lease: Some(Lease {
                node: "other-node".into(),
                until: now + 3_600,
            }),
            ..live
        };
        JOBS.put(app.store.records(), &live.id, &live).unwrap();
        assert!(
            jobs::claim(&app, "held").unwrap().is_none(),
            "a held job is not claimed"
        );
    })
    .await
    .unwrap();
    // The node's sweep (at start and every few seconds) takes up the dead node's job.
    let app = srv.app.clone();
    tokio::task::spawn_blocking(move || jobs::sweep(&app).unwrap())
        .await
        .unwrap();
    let v = wait_done(&srv, "/api/v1/jobs/orphan-true").await;
    assert_eq!(v["done"], 500, "{v}");
    // Devices after the cursor were reconciled; the ones before it were not (the dead node had
    // done them — in this test it did not really, which shows the job resumed, not restarted).
    assert_eq!(srv.app.store.queued(&ids[200]).unwrap().len(), 1);
    assert_eq!(srv.app.store.queued(&ids[499]).unwrap().len(), 1);
    assert!(srv.app.store.queued(&ids[199]).unwrap().is_empty());
    let held = ok(&srv, "GET", "/api/v1/jobs/held", None, 200).await;
    assert_eq!(
        (held["state"].as_str(), held["done"].as_u64()),
        (Some("running"), Some(0))
    );
}

#[tokio::test]
async fn concurrent_claims_give_a_job_to_exactly_one() {
    let mut srv = TestServer::start().await;
    // The node's own sweep would take the queued job too (at start, and every few seconds): it
    // must not be a ninth contender the test does not count.
    srv.halt().await;
    let app = srv.app.clone();
    tokio::task::spawn_blocking(move || {
        let j = jobs::create(
            &app,
            JobKind::ReconcileProfile {
                profile_id: "none".into(),
                reason: "assign".into(),
            },
            "bootstrap",
        )
        .unwrap();
        let app = Arc::new(app);
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let (app, id) = (app.clone(), j.id.clone());
                    s.spawn(move || jobs::claim(&app, &id).unwrap().is_some() as usize)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
    })
    .await
    .unwrap();
}
