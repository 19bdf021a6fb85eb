//! The whole server on PostgreSQL: a real `TestServer` started with `database_url`.

use serde_json::json;

use crate::manage::{commands, enrolled, queue};
use crate::support::pg::TestDb;
use crate::support::TestServer;
use winmdm::store::{CommandState, DeviceStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_server_enrolls_queues_and_delivers() {
    let Some(db) = TestDb::create("pg_server_enrolls_queues_and_delivers") else {
        return;
    };
    let url = db.url.clone();
    let srv = TestServer::start_with(|o| o.database_url = Some(url.parse().unwrap())).await;
    let mut d = enrolled(&srv, 1).await;
    let id = queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "swv-pg"}),
    )
    .await;
    d.nodes
        .insert("./DevDetail/SwV".into(), "10.0.26100.1".into());
    let got = d.session().await;
    assert!(
        got.iter()
            .any(|r| r.target.as_deref() == Some("./DevDetail/SwV")),
        "{got:?}"
    );
    let cmds = commands(&srv, &d.device_id).await;
    let c = cmds
        .iter()
        .find(|c| c["command_id"] == id.as_str())
        .unwrap();
    assert_eq!(c["state"], "done", "{c}");
    assert_eq!(c["results"][0]["data"], "10.0.26100.1");

    // It is all in the database, not in the data directory.
    assert!(
        !srv.data_dir.join("db").exists(),
        "no embedded store opened"
    );
    let dir = srv.data_dir.clone();
    let tmp = srv.stop().await;
    let device_id = d.device_id.clone();
    let url = db.url.clone();
    let (dev, cmd) = tokio::task::spawn_blocking(move || {
        let s = winmdm::store::pg::PgStore::connect(&url, &Default::default()).unwrap();
        let cmd = winmdm::store::CommandQueue::get_command(&s, &device_id, "swv-pg").unwrap();
        (s.get_device(&device_id).unwrap(), cmd)
    })
    .await
    .unwrap();
    assert!(dev.is_some_and(|d| d.last_seen.is_some()));
    assert_eq!(cmd.map(|c| c.state), Some(CommandState::Done));

    // A restarted node on the same database knows the device and manages it.
    let url = db.url.clone();
    let srv = TestServer::start_in(&dir, |o| o.database_url = Some(url.parse().unwrap())).await;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    d.client = crate::support::Client::new(
        srv.addr,
        d.root_der.clone(),
        Some((
            vec![CertificateDer::from(d.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(d.key_der.clone())),
        )),
    );
    queue(
        &srv,
        &d.device_id,
        json!({"verb": "Get", "target": "./DevDetail/SwV", "command_id": "swv-pg-2"}),
    )
    .await;
    d.session().await;
    let cmds = commands(&srv, &d.device_id).await;
    assert!(cmds.iter().all(|c| c["state"] == "done"), "{cmds:?}");
    assert_eq!(cmds.len(), 2);
    srv.stop().await;
    drop(tmp);
}

/// `GET /readyz`: 200 while the database answers at this binary's schema; 503 with
/// `Retry-After` when the schema is newer than the binary or the database is gone. `/healthz`
/// stays 200 (the process is alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_server_readyz_follows_the_database() {
    let Some(db) = TestDb::create("pg_server_readyz_follows_the_database") else {
        return;
    };
    let url = db.url.clone();
    let srv = TestServer::start_with(|o| o.database_url = Some(url.parse().unwrap())).await;
    let c = srv.client();
    let r = c.request("GET", "/readyz", &[], vec![]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready"));
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        crate::support::pg::exec(
            &url,
            "INSERT INTO schema_migrations (version, description) VALUES (1000, 'newer')".into(),
        )
    })
    .await
    .unwrap()
    .unwrap();
    let r = c.request("GET", "/readyz", &[], vec![]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.headers.contains_key("retry-after"));
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        crate::support::pg::exec(
            &url,
            "DELETE FROM schema_migrations WHERE version = 1000".into(),
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(c.request("GET", "/readyz", &[], vec![]).await.status, 200);
    // The database dropped under the running server.
    let name = db.name().to_string();
    tokio::task::spawn_blocking(move || {
        crate::support::pg::exec(
            &crate::support::pg::server_url(),
            format!("DROP DATABASE {name} WITH (FORCE)"),
        )
    })
    .await
    .unwrap()
    .unwrap();
    let r = c.request("GET", "/readyz", &[], vec![]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(c.request("GET", "/healthz", &[], vec![]).await.status, 200);
    srv.stop().await;
}

/// The database gone under a running server: a device's message gets 503 with `Retry-After`
/// (come back later), not a 500 and not a panic; the node itself stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_server_tells_devices_to_retry_while_the_database_is_gone() {
    let Some(db) = TestDb::create("pg_server_tells_devices_to_retry") else {
        return;
    };
    let url = db.url.clone();
    let srv = TestServer::start_with(|o| {
        o.database_url = Some(url.parse().unwrap());
        o.retry_after = Some(42);
    })
    .await;
    let d = enrolled(&srv, 1).await;
    let name = db.name().to_string();
    tokio::task::spawn_blocking(move || {
        crate::support::pg::exec(
            &crate::support::pg::server_url(),
            format!("DROP DATABASE {name} WITH (FORCE)"),
        )
    })
    .await
    .unwrap()
    .unwrap();
    let r = d.post(&d.first_package(7, "")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("42")
    );
    let c = srv.client();
    assert_eq!(c.request("GET", "/healthz", &[], vec![]).await.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn readyz_on_the_embedded_store() {
    let srv = TestServer::start().await;
    let r = srv.client().request("GET", "/readyz", &[], vec![]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready"));
    srv.stop().await;
}
