//! Device traces end to end: a user rule traces the next enrollment (with the discovery and
//! policy exchanges before it), two OMA-DM sessions (one carrying a large object) are
//! recorded, a third is not; the trace is read through the API and the CLI, exported, and the
//! password appears nowhere in the store, the API's answers or the export.

use serde_json::json;

mod console;
mod folder;

use crate::manage::{enrolled, queue};
use crate::support::cli::Cli;
use crate::support::device::{self, DeviceInfo};
use crate::support::mdm_device::ManagedDevice;
use crate::support::TestServer;

const PASSWORD: &str = "Tr4ce-Pass-864209";

/// Every byte under `dir` (the store's files, keys, logs).
fn all_bytes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn an_enrollment_and_two_sessions_are_recorded_redacted_shown_and_exported() {
    let srv = TestServer::start().await;
    let upn = "tracy@example.com";
    srv.create_user(upn, PASSWORD).await;
    let (st, rule) = srv
        .admin(
            "POST",
            &format!("/api/v1/users/{upn}/trace"),
            Some(json!({"sessions": 2, "note": "first enrollment"})),
        )
        .await;
    assert_eq!(st, 201, "{rule}");
    assert_eq!(rule["enrollments_left"], 1);

    let e = device::enroll(&srv.client(), &DeviceInfo::new(71, upn, PASSWORD)).await;
    let mut d = ManagedDevice::new(&srv, &e);
    let dev = d.device_id.clone();
    queue(
        &srv,
        &dev,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "swv"}),
    )
    .await;
    d.session().await;
    // Session 2 carries a server → device large object (MaxMsgSize 4 KiB, 14 KB of data).
    d.max_msg_size = Some(4096);
    let big: String = (0..14_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    queue(
        &srv,
        &dev,
        json!({"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/Big/Blob", "format": "chr", "data": big, "command_id": "big"}),
    )
    .await;
    d.session().await;
    assert_eq!(
        d.assembled.get("./Vendor/MSFT/Policy/Config/Big/Blob"),
        Some(&big)
    );
    // Session 3 is past the trace's two sessions: not recorded.
    queue(
        &srv,
        &dev,
        json!({"verb": "Get", "target": "./DevDetail/OEM", "command_id": "third"}),
    )
    .await;
    d.session().await;

    let (st, list) = srv
        .admin("GET", &format!("/api/v1/devices/{dev}/traces"), None)
        .await;
    assert_eq!(st, 200, "{list}");
    let traces = list["traces"].as_array().expect("traces");
    assert_eq!(traces.len(), 1, "{list}");
    let meta = &traces[0];
    let tid = meta["id"].as_str().expect("id").to_string();
    assert_eq!(meta["sessions"], 2, "{meta}");
    assert_eq!(meta["stopped"], "sessions", "{meta}");
    assert!(meta["note"].as_str().unwrap().contains(upn), "{meta}");

    let (st, v) = srv
        .admin("GET", &format!("/api/v1/devices/{dev}/traces/{tid}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    let conv = v["conversation"].as_array().expect("conversation");
    let endpoints: Vec<&str> = conv
        .iter()
        .map(|t| t["endpoint"].as_str().unwrap())
        .collect();
    // The GET probe and POST of discovery and the policy exchange, matched by address, then
    // the enrollment, then OMA-DM messages.
    let first_mgmt = endpoints
        .iter()
        .position(|e| *e == "management")
        .expect("management");
    assert_eq!(
        &endpoints[..first_mgmt],
        &["discovery", "discovery", "policy", "enrollment"],
        "{endpoints:?}"
    );
    assert!(conv[0]["correlated"].as_bool().unwrap());
    assert!(!conv[3]["correlated"].as_bool().unwrap_or(false));
    assert_eq!(
        conv[3]["server"]["summary"],
        "RequestSecurityTokenResponseCollection"
    );
    let sessions: std::collections::BTreeSet<&str> = conv
        .iter()
        .filter_map(|t| t["session_id"].as_str())
        .collect();
    assert_eq!(
        sessions.len(),
        2,
        "third session not recorded: {sessions:?}"
    );
    // Our Get, with the device's answer matched to it, and the command id it delivered.
    let get_turn = conv
        .iter()
        .find(|t| {
            t["delivered"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == "swv"))
        })
        .expect("the turn that delivered swv");
    let get = get_turn["server"]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["verb"] == "Get")
        .expect("Get");
    assert_eq!(get["targets"][0], "./DevDetail/SwV");
    assert_eq!(get["answer"]["code"], 200, "{get}");
    assert!(!get["answer"]["meaning"].as_str().unwrap().is_empty());
    // The large object went out in chunks: several answers delivered "big", each 213'd but the
    // last.
    let big_turns: Vec<_> = conv
        .iter()
        .filter(|t| {
            t["delivered"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == "big"))
        })
        .collect();
    assert!(big_turns.len() >= 3, "{} chunks", big_turns.len());
    let codes: Vec<u64> = big_turns
        .iter()
        .filter_map(|t| {
            t["server"]["commands"]
                .as_array()?
                .iter()
                .find(|c| c["verb"] == "Replace")?["answer"]["code"]
                .as_u64()
        })
        .collect();
    assert_eq!(codes.last(), Some(&200), "{codes:?}");
    // ... and shown reassembled where its last chunk went out.
    let objects: Vec<&serde_json::Value> = conv
        .iter()
        .filter_map(|t| t["server"]["objects"].as_array())
        .flatten()
        .collect();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0]["locuri"], "./Vendor/MSFT/Policy/Config/Big/Blob");
    assert_eq!(objects[0]["bytes"], 14_000);
    assert_eq!(objects[0]["chunks"].as_u64(), Some(codes.len() as u64));
    assert!(
        codes[..codes.len() - 1].iter().all(|c| *c == 213),
        "{codes:?}"
    );

    // The export parses as the documented format and holds every exchange.
    let cli = Cli::new(&srv);
    let file = cli.dir.path().join("trace.ndjson");
    let out = cli
        .ok(&["trace", "export", &dev, &tid, "-o", file.to_str().unwrap()])
        .await;
    assert!(out.contains("wrote"), "{out}");
    let text = std::fs::read_to_string(&file).expect("export");
    let parsed = winmdm::trace::Trace::parse(&text).expect("export parses");
    assert_eq!(
        parsed.exchanges.len() as u64,
        meta["exchanges"].as_u64().unwrap()
    );
    assert_eq!(parsed.header.device_id.as_deref(), Some(dev.as_str()));
    let policy = &parsed.exchanges[2];
    assert!(
        policy.request.body.contains("[redacted]</wsse:Password>"),
        "{}",
        policy.request.body
    );
    // CLI list and show.
    let out = cli.ok(&["trace", "list", &dev]).await;
    assert!(
        out.contains(&tid) && out.contains("stopped: sessions"),
        "{out}"
    );
    let out = cli.ok(&["trace", "show", &dev, &tid]).await;
    assert!(out.contains("enrollment HTTP 200"), "{out}");
    assert!(
        out.contains("Get") && out.contains("./DevDetail/SwV → 200"),
        "{out}"
    );

    // Reading and exporting are audited.
    let (_, audit) = srv.admin("GET", "/api/v1/audit?limit=100", None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .or_else(|| audit["audit"].as_array())
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    for a in ["trace.start_user", "trace.read", "trace.export"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }

    // The password is nowhere: not in the API's answer, the export, or any file of the store.
    assert!(!v.to_string().contains(PASSWORD));
    assert!(!text.contains(PASSWORD));

    // Replayed against a fresh server (same user, commands queued again), every message is
    // accepted.
    let fresh = TestServer::start().await;
    fresh.create_user(upn, PASSWORD).await;
    let fcli = Cli::new(&fresh);
    let replay = |file: std::path::PathBuf| {
        let fcli = &fcli;
        async move {
            fcli.run(&[
                "trace",
                "replay",
                file.to_str().unwrap(),
                "--password",
                PASSWORD,
                "--requeue",
            ])
            .await
        }
    };
    let (code, out) = replay(file.clone()).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.ends_with(": accepted")).count(),
        parsed.exchanges.len(),
        "{out}"
    );
    // One recorded answer changed (our Status for the device's SyncHdr says 212, the server
    // said 200): that message, and only it, differs, saying where.
    let turn = get_turn["seq"].as_u64().unwrap() as usize;
    let mut bad = parsed.clone();
    let answer = &mut bad.exchanges[turn - 1].response.body;
    let hdr_ok = "<Cmd>SyncHdr</Cmd><Data>200</Data>";
    assert!(answer.contains(hdr_ok), "{answer}");
    *answer = answer.replacen(hdr_ok, "<Cmd>SyncHdr</Cmd><Data>212</Data>", 1);
    let bad_file = cli.dir.path().join("bad.ndjson");
    std::fs::write(&bad_file, bad.to_ndjson()).unwrap();
    let again = TestServer::start().await;
    again.create_user(upn, PASSWORD).await;
    let acli = Cli::new(&again);
    let (code, out) = acli
        .run(&[
            "trace",
            "replay",
            bad_file.to_str().unwrap(),
            "--password",
            PASSWORD,
            "--requeue",
        ])
        .await;
    assert_eq!(code, 1, "{out}");
    let differs: Vec<&str> = out.lines().filter(|l| l.contains(": differs:")).collect();
    assert_eq!(differs.len(), 1, "{out}");
    assert!(
        differs[0].starts_with(&format!("#{turn} management: differs:")),
        "{out}"
    );
    assert!(
        differs[0].contains("recorded `Status SyncHdr cmdref=0")
            && differs[0].contains("code=212`, got `Status SyncHdr cmdref=0")
            && differs[0].ends_with("code=200`"),
        "{out}"
    );
    fresh.stop().await;
    again.stop().await;
    let data_dir = srv.data_dir.clone();
    let _kept = srv.stop().await;
    let files = all_bytes(&data_dir);
    assert!(!files.is_empty());
    for (p, b) in files {
        assert!(
            !contains(&b, PASSWORD.as_bytes()),
            "the password is in {}",
            p.display()
        );
    }
}

#[tokio::test]
async fn traces_are_admin_only_per_device_and_bounded() {
    let srv = TestServer::start().await;
    let a = enrolled(&srv, 72).await;
    let b = enrolled(&srv, 73).await;
    // A device no one traces records nothing.
    let (st, list) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices/{}/traces", a.device_id),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(list["traces"], json!([]));
    let (st, t) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/trace", a.device_id),
            Some(json!({"minutes": 5})),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let tid = t["id"].as_str().unwrap().to_string();
    // Twice: 409.
    let (st, _) = srv
        .admin(
            "POST",
            &format!("/api/v1/devices/{}/trace", a.device_id),
            None,
        )
        .await;
    assert_eq!(st, 409);
    // Bounds on the window and the sessions.
    for bad in [
        json!({"minutes": 0}),
        json!({"minutes": 100_000}),
        json!({"sessions": 0}),
        json!({"colour": 1}),
    ] {
        let (st, body) = srv
            .admin(
                "POST",
                &format!("/api/v1/devices/{}/trace", b.device_id),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(st, 400, "{bad}: {body}");
    }
    // A's trace is not B's: 404 under B's path.
    let (st, _) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices/{}/traces/{tid}", b.device_id),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/devices/{}/traces/{tid}", b.device_id),
            None,
        )
        .await;
    assert_eq!(st, 404);
    // A read-only token reads devices but not traces.
    let cli = Cli::new(&srv);
    let out = cli
        .ok(&["token", "create", "viewer", "--role", "read-only"])
        .await;
    let viewer = out
        .lines()
        .find(|l| l.starts_with("wmdm_viewer_"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let (code, out) = cli.run_as(&viewer, &["trace", "list", &a.device_id]).await;
    assert_eq!(code, 1, "{out}");
    let (code, _) = cli.run_as(&viewer, &["trace", "stop", &a.device_id]).await;
    assert_eq!(code, 1);
    // Only A's sessions are recorded.
    let mut a = a;
    let mut b = b;
    a.session().await;
    b.session().await;
    let (_, v) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices/{}/traces/{tid}", a.device_id),
            None,
        )
        .await;
    let conv = v["conversation"].as_array().unwrap();
    assert!(!conv.is_empty());
    assert!(conv.iter().all(|t| t["endpoint"] == "management"));
    let (_, lb) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices/{}/traces", b.device_id),
            None,
        )
        .await;
    assert_eq!(lb["traces"], json!([]));
    // Stop, then the next session is not recorded; delete removes it.
    let (st, stopped) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/devices/{}/trace", a.device_id),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(stopped["stopped"], "admin");
    let n = stopped["exchanges"].as_u64().unwrap();
    a.session().await;
    let (_, v) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices/{}/traces/{tid}", a.device_id),
            None,
        )
        .await;
    assert_eq!(v["conversation"].as_array().unwrap().len() as u64, n);
    let (st, _) = srv
        .admin(
            "DELETE",
            &format!("/api/v1/devices/{}/traces/{tid}", a.device_id),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _) = srv
        .admin(
            "GET",
            &format!("/api/v1/devices/{}/traces/{tid}", a.device_id),
            None,
        )
        .await;
    assert_eq!(st, 404);
    srv.stop().await;
}
