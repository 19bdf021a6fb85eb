//! The Microsoft tenant integration (issue 19) end to end against the strict Graph stand-in
//! (`support/graph.rs`): connect (good certificate, wrong certificate, wrong audience, expired
//! assertion, secret), the Autopilot import state machine to "registered", a duplicate hardware
//! hash refused with Microsoft's error, edits, a device registered by an OEM pulled through
//! paging and a 429 storm, dry run, deletion (only what winmdm imported), a profile with its
//! OOBE settings and its assignment, a dynamic group's membership rule, a revoked credential
//! shown as a connection error with the local change kept and retried, and the secret never in
//! an answer or the audit log.

mod binary;
mod cli;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::autopilot::{hash, import, HEADER};
use crate::support::graph::GraphStandIn;
use crate::support::{TestClock, TestServer};

const TENANT: &str = "11111111-2222-4333-8444-555555555555";
const CLIENT: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

/// An app certificate (RSA) and its key, PEM.
struct AppCert {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn app_cert() -> AppCert {
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["winmdm-app".into()])
        .unwrap()
        .self_signed(&k)
        .unwrap();
    AppCert {
        cert_pem: cert.pem(),
        key_pem: k.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

async fn server_for(
    g: &GraphStandIn,
    dir: &std::path::Path,
    clock: Option<Arc<dyn winmdm::clock::Clock>>,
    login_url: Option<String>,
) -> TestServer {
    let ca = g.write_ca(dir);
    let url = g.url();
    let adjust = move |o: &mut winmdm::config::ServeOptions| {
        o.graph_login_url = Some(login_url.unwrap_or_else(|| url.clone()));
        o.graph_url = Some(url);
        o.graph_ca = Some(ca);
        // The test drives the passes (POST /api/v1/tenant/sync); the worker still runs
        // when kicked by a change.
        o.tenant_poll = Some("1h".into());
        o.tenant_sync_interval = Some("0".into());
    };
    match clock {
        Some(c) => TestServer::start_with_clock(c, adjust).await,
        None => TestServer::start_with(adjust).await,
    }
}

fn connect_body(c: &AppCert) -> Value {
    json!({"tenant_id": TENANT, "client_id": CLIENT, "certificate_pem": c.cert_pem, "private_key_pem": c.key_pem})
}

async fn sync(srv: &TestServer) -> Value {
    let (st, v) = srv.admin("POST", "/api/v1/tenant/sync", None).await;
    assert_eq!(st, 200, "{v}");
    v
}

/// Runs sync passes until `done(device view)` holds for `serial`.
async fn sync_until(
    srv: &TestServer,
    serial: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let rep = sync(srv).await;
        let (st, d) = srv
            .admin("GET", &format!("/api/v1/autopilot/devices/{serial}"), None)
            .await;
        if st == 200 && done(&d) {
            return d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{serial}: {what} not reached; device {d}; last pass {rep}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn csv(rows: &[(&str, String, &str)]) -> Vec<u8> {
    let mut t = format!("{HEADER}\r\n");
    for (serial, h, tag) in rows {
        t.push_str(&format!("{serial},,{h},{tag},\r\n"));
    }
    t.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_end_to_end_against_the_graph_stand_in() {
    let g = GraphStandIn::start(TENANT, CLIENT).await;
    let good = app_cert();
    let wrong = app_cert();
    g.register_cert(&good.der);
    let dir = tempfile::tempdir().unwrap();
    let srv = server_for(&g, dir.path(), None, None).await;

    // Not connected yet.
    let (st, v) = srv.admin("GET", "/api/v1/tenant", None).await;
    assert_eq!(
        (st, v["state"].as_str()),
        (200, Some("not_connected")),
        "{v}"
    );

    // A certificate the app does not have: refused, with Entra's reason kept as the state.
    let (st, v) = srv
        .admin("PUT", "/api/v1/tenant", Some(connect_body(&wrong)))
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("AADSTS700027"), "{v}");
    let (_, v) = srv.admin("GET", "/api/v1/tenant", None).await;
    assert_eq!(v["state"], "not_connected", "{v}");
    assert!(
        v["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("AADSTS700027"),
        "{v}"
    );
    assert!(
        !credential_file(&srv).exists(),
        "nothing stored for a refused credential"
    );

    // The registered certificate: connected, the organization read.
    let (st, v) = srv
        .admin("PUT", "/api/v1/tenant", Some(connect_body(&good)))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "connected", "{v}");
    assert_eq!(v["tenant_id"], TENANT);
    assert_eq!(v["organization"], "Contoso Stand-in");
    assert_eq!(v["credential"]["kind"], "certificate");
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &good.der);
    let hex: String = sha1.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(v["credential"]["thumbprint"], hex.as_str());
    assert!(!v.to_string().contains("PRIVATE KEY"), "{v}");
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(credential_file(&srv))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o600);
    }

    // Import two devices: they reach "registered" through the import state machine.
    let (h1, h2) = (hash(901, 64), hash(902, 64));
    let (st, v) = import(
        &srv,
        csv(&[
            ("TN-0001", h1.clone(), "Sales"),
            ("TN-0002", h2.clone(), ""),
        ]),
    )
    .await;
    assert_eq!((st, v["imported"].as_i64()), (200, Some(2)), "{v}");
    for serial in ["TN-0001", "TN-0002"] {
        let d = sync_until(&srv, serial, "registered", |d| {
            d["tenant"]["state"] == "registered"
        })
        .await;
        assert_eq!(d["tenant"]["import_status"], "complete", "{d}");
        assert_eq!(d["tenant"]["created_by_winmdm"], true);
    }
    let id1 = g.identity_by_serial("TN-0001").expect("TN-0001 registered")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        g.identity_by_serial("TN-0001").unwrap()["groupTag"],
        "Sales"
    );
    assert!(
        g.st().imported.is_empty(),
        "the import records winmdm created were cleaned up"
    );

    // A duplicate hardware hash under another serial: Microsoft's error on our record.
    let (st, v) = import(&srv, csv(&[("TN-DUP", h1.clone(), "")])).await;
    assert_eq!((st, v["imported"].as_i64()), (200, Some(1)), "{v}");
    let d = sync_until(&srv, "TN-DUP", "error", |d| d["tenant"]["state"] == "error").await;
    assert_eq!(d["tenant"]["device_error_code"], 806, "{d}");
    assert_eq!(d["tenant"]["device_error_name"], "ZtdDeviceAlreadyAssigned");
    assert!(g.identity_by_serial("TN-DUP").is_none());

    // An edit reaches the tenant.
    let (st, v) = srv
        .admin(
            "PATCH",
            "/api/v1/autopilot/devices/TN-0001",
            Some(json!({"group_tag": "Paris", "device_name": "PC-0001"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    sync(&srv).await;
    let i = g.identity_by_serial("TN-0001").unwrap();
    assert_eq!(
        (i["groupTag"].as_str(), i["displayName"].as_str()),
        (Some("Paris"), Some("PC-0001")),
        "{i}"
    );

    // A device imported here without its tenant mark (as after a crash between the two
    // writes): the next pulling pass catches it up.
    let app = srv.app.clone();
    tokio::task::spawn_blocking(move || {
        let rec = winmdm::autopilot::devices::AutopilotDevice {
            serial: "TN-CRASH".into(),
            product_id: None,
            hardware_hash: hash(903, 64),
            group_tag: None,
            assigned_user: None,
            user_friendly_name: None,
            device_name: None,
            linked_device_id: None,
            linked_at: None,
            imported_at: winmdm::clock::Clock::now_unix(&winmdm::clock::SystemClock),
            hash_check: None,
            conflicts: Vec::new(),
        };
        assert!(winmdm::autopilot::devices::DEVICES
            .insert_new(app.store.records(), "TN-CRASH", &rec)
            .unwrap());
    })
    .await
    .unwrap();
    sync_until(&srv, "TN-CRASH", "registered", |d| {
        d["tenant"]["state"] == "registered"
    })
    .await;
    assert!(g.identity_by_serial("TN-CRASH").is_some());

    // Devices registered by an OEM: pulled (pages of 2) through a 429 storm honoured.
    g.register_oem("OEM-0001", "Retail");
    g.register_oem("OEM-0002", "");
    g.st().throttle_next = 3;
    let t = Instant::now();
    let rep = sync(&srv).await;
    assert!(rep["error"].is_null(), "{rep}");
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "Retry-After: 1 honoured three times"
    );
    assert_eq!(g.st().throttled, 3);
    let (st, d) = srv
        .admin("GET", "/api/v1/autopilot/devices/OEM-0001", None)
        .await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["group_tag"], "Retail");
    assert_eq!(d["tenant"]["created_by_winmdm"], false);
    assert_eq!(d["tenant"]["state"], "registered");
    let pages = g
        .st()
        .log
        .iter()
        .filter(|(m, p, s)| {
            m == "GET" && p.contains("windowsAutopilotDeviceIdentities?$skiptoken=") && *s == 200
        })
        .count();
    assert!(pages >= 1, "the pull followed @odata.nextLink");

    // An edit is pushed by the worker on its own (kicked by the change, no sync asked).
    let (st, _) = srv
        .admin(
            "PATCH",
            "/api/v1/autopilot/devices/TN-0002",
            Some(json!({"group_tag": "Lyon"})),
        )
        .await;
    assert_eq!(st, 200);
    let start = Instant::now();
    while g.identity_by_serial("TN-0002").unwrap()["groupTag"] != "Lyon" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the worker did not push the edit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Dry run: the plan is shown, nothing is written on either side. (Pulls happen only in
    // asked-for passes here: the worker cannot change what the plan shows.)
    g.register_oem("OEM-0003", "Retail");
    {
        let mut st = g.st();
        let oem2 = st
            .identities
            .values_mut()
            .find(|v| v["serialNumber"] == "OEM-0002")
            .unwrap();
        oem2["groupTag"] = "Remote".into();
    }
    let writes = g.st().writes.len();
    let (st, plan) = srv
        .admin("POST", "/api/v1/tenant/sync?dry_run=true", None)
        .await;
    assert_eq!(st, 200, "{plan}");
    assert_eq!(plan["dry_run"], true);
    let actions: Vec<(String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_string(),
                c["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("pull-add".into(), "OEM-0003".into())),
        "{plan}"
    );
    assert!(
        actions.contains(&("pull-update".into(), "OEM-0002".into())),
        "{plan}"
    );
    assert_eq!(
        g.st().writes.len(),
        writes,
        "a dry run writes nothing to the tenant"
    );
    let (st, _) = srv
        .admin("GET", "/api/v1/autopilot/devices/OEM-0003", None)
        .await;
    assert_eq!(st, 404, "a dry run adds nothing here");
    let (_, d) = srv
        .admin("GET", "/api/v1/autopilot/devices/OEM-0002", None)
        .await;
    assert!(
        d["group_tag"].is_null(),
        "a dry run changes nothing here: {d}"
    );
    // The same pass for real.
    sync(&srv).await;
    let (st, _) = srv
        .admin("GET", "/api/v1/autopilot/devices/OEM-0003", None)
        .await;
    assert_eq!(st, 200);
    let (_, d) = srv
        .admin("GET", "/api/v1/autopilot/devices/OEM-0002", None)
        .await;
    assert_eq!(d["group_tag"], "Remote", "{d}");

    // Deletion: a device winmdm imported is deleted in the tenant; an OEM's is not winmdm's.
    let (st, v) = srv
        .admin("DELETE", "/api/v1/autopilot/devices/OEM-0001", None)
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("registered in the Microsoft tenant by someone else"),
        "{v}"
    );
    let (st, _) = srv
        .admin("DELETE", "/api/v1/autopilot/devices/TN-0001", None)
        .await;
    assert_eq!(st, 204);
    sync(&srv).await;
    assert!(
        !g.st().identities.contains_key(&id1),
        "TN-0001 deleted in the tenant"
    );
    assert!(g.identity_by_serial("OEM-0001").is_some());

    // A profile, created in the tenant with its OOBE settings, and a dynamic group it is
    // assigned to.
    let (st, p) = srv
        .admin(
            "POST",
            "/api/v1/autopilot/profiles",
            Some(json!({"name": "Sales PCs", "device_type": "windows-pc", "deployment_mode": "user-driven",
                        "user_account_type": "standard", "language": "fr-FR", "device_name_template": "SALES-%RAND:5%"})),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    sync(&srv).await;
    let prof = g
        .st()
        .profiles
        .values()
        .next()
        .cloned()
        .expect("profile created in the tenant");
    assert_eq!(
        prof["@odata.type"],
        "#microsoft.graph.azureADWindowsAutopilotDeploymentProfile"
    );
    assert_eq!(prof["displayName"], "Sales PCs");
    assert_eq!(prof["locale"], "fr-FR");
    assert_eq!(prof["deviceNameTemplate"], "SALES-%RAND:5%");
    assert_eq!(prof["outOfBoxExperienceSetting"]["userType"], "standard");
    assert_eq!(
        prof["outOfBoxExperienceSetting"]["deviceUsageType"],
        "singleUser"
    );
    assert_eq!(prof["outOfBoxExperienceSetting"]["eulaHidden"], true);
    let (st, grp) = srv
        .admin(
            "POST",
            "/api/v1/tenant/groups",
            Some(json!({"name": "Autopilot Sales", "group_tag": "Sales"})),
        )
        .await;
    assert_eq!(st, 201, "{grp}");
    let gid = grp["id"].as_str().unwrap().to_string();
    let remote = g
        .st()
        .groups
        .get(&gid)
        .cloned()
        .expect("group in the tenant");
    assert_eq!(
        remote["membershipRule"],
        r#"(device.devicePhysicalIds -any (_ -eq "[OrderID]:Sales"))"#
    );
    assert_eq!(remote["groupTypes"], json!(["DynamicMembership"]));
    assert_eq!(remote["membershipRuleProcessingState"], "On");
    let (st, a) = srv
        .admin(
            "POST",
            "/api/v1/tenant/profiles/Sales%20PCs/assignments",
            Some(json!({"group_id": gid})),
        )
        .await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["assignments"][0]["group_id"], gid.as_str());
    let assigned = g.st().assignments.clone();
    assert_eq!(assigned.len(), 1, "{assigned:?}");
    assert_eq!(assigned[0].1["target"]["groupId"], gid.as_str());
    // "Assign to all devices": one profile per tenant, as Microsoft allows.
    let (st, a) = srv
        .admin(
            "POST",
            "/api/v1/tenant/profiles/Sales%20PCs/assignments",
            Some(json!({"group_id": "all-devices"})),
        )
        .await;
    assert_eq!(st, 200, "{a}");
    assert!(g
        .st()
        .assignments
        .iter()
        .any(|(_, a)| a["target"]["@odata.type"] == "#microsoft.graph.allDevicesAssignmentTarget"));
    let (st, _) = srv
        .admin(
            "POST",
            "/api/v1/autopilot/profiles",
            Some(json!({"name": "Kiosks", "device_type": "windows-pc", "deployment_mode": "self-deploying"})),
        )
        .await;
    assert_eq!(st, 201);
    let (st, v) = srv
        .admin(
            "POST",
            "/api/v1/tenant/profiles/Kiosks/assignments",
            Some(json!({"group_id": "all-devices"})),
        )
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("already assigned to all devices"),
        "{v}"
    );
    // A static group with a registered device.
    let (st, sg) = srv
        .admin(
            "POST",
            "/api/v1/tenant/groups",
            Some(json!({"name": "Pilot", "devices": ["TN-0002"]})),
        )
        .await;
    assert_eq!(st, 201, "{sg}");
    assert_eq!(
        g.st().groups[sg["id"].as_str().unwrap()]["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // More devices for the static group; a dynamic group takes none.
    let path = format!(
        "/api/v1/tenant/groups/{}/members",
        sg["id"].as_str().unwrap()
    );
    let (st, v) = srv
        .admin(
            "POST",
            &path,
            Some(json!({"devices": ["OEM-0002", "TN-0002"]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["devices"], json!(["TN-0002", "OEM-0002"]), "{v}");
    assert_eq!(
        g.st().groups[sg["id"].as_str().unwrap()]["members"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (st, v) = srv
        .admin(
            "POST",
            &format!("/api/v1/tenant/groups/{gid}/members"),
            Some(json!({"devices": ["TN-0002"]})),
        )
        .await;
    assert_eq!(st, 409, "{v}");
    // Groups winmdm did not create are not its to delete.
    let (st, _) = srv
        .admin(
            "DELETE",
            "/api/v1/tenant/groups/99999999-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(st, 404);

    // A revoked credential: a connection error, the local change kept, retried once fixed.
    g.revoke();
    let (st, _) = srv
        .admin(
            "PATCH",
            "/api/v1/autopilot/devices/TN-0002",
            Some(json!({"group_tag": "Nantes"})),
        )
        .await;
    assert_eq!(st, 200);
    let rep = sync(&srv).await;
    assert!(
        rep["error"].as_str().unwrap().contains("AADSTS700027"),
        "{rep}"
    );
    let (_, s) = srv.admin("GET", "/api/v1/tenant", None).await;
    assert_eq!(s["state"], "error", "{s}");
    assert!(s["pending_devices"].as_i64().unwrap() >= 1, "{s}");
    let (_, d) = srv
        .admin("GET", "/api/v1/autopilot/devices/TN-0002", None)
        .await;
    assert_eq!(d["group_tag"], "Nantes");
    assert_eq!(d["tenant"]["pending"]["update"], true, "{d}");
    g.register_cert(&good.der);
    let rep = sync(&srv).await;
    assert!(rep["error"].is_null(), "{rep}");
    assert_eq!(
        g.identity_by_serial("TN-0002").unwrap()["groupTag"],
        "Nantes"
    );
    let (_, s) = srv.admin("GET", "/api/v1/tenant", None).await;
    assert_eq!(s["state"], "connected", "{s}");
    assert!(s["last_sync"].as_i64().is_some());

    // Every Graph write is in the audit log, by the admin token or the worker.
    let (_, audit) = srv.admin("GET", "/api/v1/audit?limit=1000", None).await;
    let graph_writes = audit["entries"]
        .as_array()
        .or_else(|| audit["audit"].as_array())
        .or_else(|| audit["items"].as_array())
        .unwrap_or_else(|| panic!("audit shape: {audit}"))
        .iter()
        .filter(|e| e["action"] == "tenant.graph")
        .count();
    assert_eq!(
        graph_writes,
        g.st().writes.len(),
        "one audit entry per accepted Graph write"
    );
    assert!(
        g.st()
            .refusals
            .iter()
            .all(|r| !r.contains("does not exist on type")),
        "{:?}",
        g.st().refusals
    );
}

fn credential_file(srv: &TestServer) -> std::path::PathBuf {
    srv.data_dir.join("tenant").join("credential.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_audience_and_expired_assertions_are_refused() {
    let g = GraphStandIn::start(TENANT, CLIENT).await;
    let c = app_cert();
    g.register_cert(&c.der);
    let dir = tempfile::tempdir().unwrap();
    // The login URL by another name: the assertion's aud is not the stand-in's endpoint.
    let other = format!("https://127.0.0.1:{}", g.port);
    let srv = server_for(&g, dir.path(), None, Some(other)).await;
    let (st, v) = srv
        .admin("PUT", "/api/v1/tenant", Some(connect_body(&c)))
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("AADSTS700212"), "{v}");
    drop(srv);
    // A server whose clock is an hour behind: its assertion has expired on arrival.
    let clock = TestClock::at(winmdm::clock::Clock::now_unix(&winmdm::clock::SystemClock) - 3600);
    let dir2 = tempfile::tempdir().unwrap();
    let srv = server_for(&g, dir2.path(), Some(Arc::new(clock)), None).await;
    let (st, v) = srv
        .admin("PUT", "/api/v1/tenant", Some(connect_body(&c)))
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("AADSTS700024"), "{v}");
    assert_eq!(g.st().tokens_issued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_secret_is_never_shown_and_a_read_only_token_cannot_connect() {
    const SECRET: &str = "Zx8Q~very-secret-client-secret-value";
    let g = GraphStandIn::start(TENANT, CLIENT).await;
    g.st().secret = Some(SECRET.into());
    let dir = tempfile::tempdir().unwrap();
    let srv = server_for(&g, dir.path(), None, None).await;
    let body = json!({"tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET});
    // A read-only token is refused before anything is read or stored.
    let (st, tok) = srv
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "viewer", "role": "read-only"})),
        )
        .await;
    assert_eq!(st, 201, "{tok}");
    let ro = tok["token"].as_str().unwrap().to_string();
    let (st, _) = srv
        .client()
        .admin("PUT", "/api/v1/tenant", Some(body.clone()), Some(&ro))
        .await;
    assert_eq!(st, 403);
    let (st, v) = srv.admin("PUT", "/api/v1/tenant", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["credential"]["kind"], "secret");
    let (_, status) = srv.admin("GET", "/api/v1/tenant", None).await;
    let (_, audit) = srv.admin("GET", "/api/v1/audit?limit=1000", None).await;
    for shown in [v.to_string(), status.to_string(), audit.to_string()] {
        assert!(!shown.contains(SECRET), "the secret leaked: {shown}");
    }
    assert!(audit.to_string().contains("tenant.connect"));
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(credential_file(&srv))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o600);
    }
    // Disconnect removes the stored secret.
    let (st, _) = srv.admin("DELETE", "/api/v1/tenant", None).await;
    assert_eq!(st, 204);
    assert!(!credential_file(&srv).exists());
    let (_, v) = srv.admin("GET", "/api/v1/tenant", None).await;
    assert_eq!(v["state"], "not_connected");
}

#[tokio::test]
async fn the_stand_in_refuses_what_graph_refuses() {
    // So that it tests winmdm rather than agreeing with it.
    let g = GraphStandIn::start(TENANT, CLIENT).await;
    g.st().tokens.insert("t0k".into(), i64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let http = winmdm::tenant::http::Http::new(Some(&g.write_ca(dir.path()))).unwrap();
    let auth = [("authorization", "Bearer t0k".to_string())];
    let post = |path: &str, body: Value| {
        let url = format!("{}{path}", g.url());
        let http = &http;
        let auth = &auth;
        async move {
            http.send(
                "POST",
                &url,
                auth,
                Some(("application/json", body.to_string().into_bytes())),
            )
            .await
            .unwrap()
        }
    };
    let imp = "/v1.0/deviceManagement/importedWindowsAutopilotDeviceIdentities";
    let good = json!({"@odata.type": "#microsoft.graph.importedWindowsAutopilotDeviceIdentity", "serialNumber": "S", "hardwareIdentifier": hash(1, 16)});
    let mut no_type = good.clone();
    no_type.as_object_mut().unwrap().remove("@odata.type");
    let mut wrong_name = good.clone();
    wrong_name["serial"] = "S".into();
    assert_eq!(post(imp, no_type).await.status, 400);
    assert_eq!(post(imp, wrong_name).await.status, 400);
    assert_eq!(post(imp, good).await.status, 201);
    // Deployment profiles live under /beta only.
    let prof = json!({"@odata.type": "#microsoft.graph.azureADWindowsAutopilotDeploymentProfile", "displayName": "P"});
    assert_eq!(
        post(
            "/v1.0/deviceManagement/windowsAutopilotDeploymentProfiles",
            prof.clone()
        )
        .await
        .status,
        400
    );
    assert_eq!(
        post(
            "/beta/deviceManagement/windowsAutopilotDeploymentProfiles",
            prof
        )
        .await
        .status,
        201
    );
    // An unknown or expired token.
    let a = http
        .send(
            "GET",
            &format!("{}/v1.0/organization", g.url()),
            &[("authorization", "Bearer nope".to_string())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 401);
    let e: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(e["error"]["code"], "InvalidAuthenticationToken");
}
