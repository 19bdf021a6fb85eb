//! The admin CLI (`winmdm user|device|command|tenant-lockdown`) against a real in-process server,
//! through the library entry point and once through the binary.

use crate::manage::enrolled;
use crate::support::cli::Cli;
use crate::support::{TestServer, ADMIN_TOKEN};

mod webhook;

#[tokio::test]
async fn users_add_list_rm_and_conflict() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let out = cli
        .ok(&[
            "user",
            "add",
            "Alice@Example.com",
            "--password",
            "pw-123456",
        ])
        .await;
    assert_eq!(out, "created user alice@example.com\n");

    let (code, out) = cli
        .run(&["user", "add", "alice@example.com", "--password", "x"])
        .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("user alice@example.com already exists") && out.contains("409"),
        "{out}"
    );

    let out = cli.ok(&["user", "list"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("UPN"), "{out}");
    assert!(lines[0].contains("CREATED") && lines[0].contains("DISABLED"));
    assert!(lines[1].starts_with("alice@example.com  "), "{out}");
    assert!(lines[1].ends_with("false"), "{out}");
    // Columns are aligned: CREATED starts at the same offset in the header and the row.
    let col = lines[0].find("CREATED").unwrap();
    assert_eq!(&lines[1][col - 2..col], "  ");
    assert_ne!(&lines[1][col..col + 1], " ");

    let v = cli.json(&["user", "list"]).await;
    assert_eq!(v["users"][0]["upn"], "alice@example.com");

    assert_eq!(
        cli.ok(&["user", "rm", "alice@example.com"]).await,
        "deleted user alice@example.com\n"
    );
    let (code, out) = cli.run(&["user", "rm", "alice@example.com"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("user alice@example.com not found"), "{out}");
    let v = cli.json(&["user", "list"]).await;
    assert_eq!(v["users"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn devices_commands_and_tenant_lockdown() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let mut d1 = enrolled(&srv, 1).await;
    let d2 = enrolled(&srv, 2).await;
    let id = d1.device_id.clone();

    // device list: a table, one page with --limit 1 (and a hint), every page with --all.
    let out = cli.ok(&["device", "list"]).await;
    assert!(out.starts_with("DEVICE_ID"), "{out}");
    assert!(out.contains(&id) && out.contains(&d2.device_id), "{out}");
    assert!(out.contains("user1@example.com"), "{out}");
    let out = cli.ok(&["device", "list", "--limit", "1"]).await;
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("--cursor"), "{out}");
    let v = cli.json(&["device", "list", "--limit", "1", "--all"]).await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 2, "{v}");
    let v = cli.json(&["device", "list", "--limit", "1"]).await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["next"].is_string());

    // device show
    let out = cli.ok(&["device", "show", &id]).await;
    assert!(out.starts_with("FIELD"), "{out}");
    assert!(out.contains("device_id "), "{out}");
    assert!(
        out.contains("upn ") && out.contains("user1@example.com"),
        "{out}"
    );
    let v = cli.json(&["device", "show", &id]).await;
    assert_eq!(v["device_id"], id.as_str());
    let (code, out) = cli.run(&["device", "show", "no-such-device"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("device no-such-device not found"), "{out}");

    // command send / list / cancel
    let out = cli
        .ok(&[
            "command",
            "send",
            &id,
            "--verb",
            "Get",
            "--target",
            "./DevDetail/SwV",
            "--id",
            "get-swv",
        ])
        .await;
    assert_eq!(out, "queued command get-swv\n");
    let out = cli
        .ok(&[
            "command",
            "send",
            &id,
            "--verb",
            "Get",
            "--target",
            "./DevDetail/SwV",
            "--id",
            "get-swv",
        ])
        .await;
    assert_eq!(out, "command get-swv was already queued\n");
    let v = cli
        .json(&[
            "command",
            "send",
            &id,
            "--verb",
            "Replace",
            "--target",
            "./Vendor/MSFT/Policy/Config/Camera/AllowCamera",
            "--format",
            "int",
            "--data",
            "0",
        ])
        .await;
    let replace_id = v["command_id"].as_str().unwrap().to_string();
    let syncml = cli.dir.path().join("cmd.xml");
    std::fs::write(
        &syncml,
        "<Get><CmdID>1</CmdID><Item><Target><LocURI>./DevDetail/OEM</LocURI></Target></Item></Get>",
    )
    .unwrap();
    let out = cli
        .ok(&["command", "send", &id, "--syncml", syncml.to_str().unwrap()])
        .await;
    assert!(out.starts_with("queued command "), "{out}");
    let (code, out) = cli
        .run(&[
            "command",
            "send",
            &id,
            "--verb",
            "Frobnicate",
            "--target",
            "./X",
        ])
        .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 400"), "{out}");

    let out = cli.ok(&["command", "list", &id]).await;
    assert!(out.starts_with("COMMAND_ID"), "{out}");
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("get-swv") && out.contains("pending"), "{out}");

    assert_eq!(
        cli.ok(&["command", "cancel", &id, &replace_id]).await,
        format!("cancelled command {replace_id}\n")
    );
    let (code, out) = cli.run(&["command", "cancel", &id, &replace_id]).await;
    assert_eq!(code, 1);
    assert!(out.contains("409"), "{out}");
    assert_eq!(
        cli.ok(&["command", "cancel", &id]).await,
        "cancelled 2 command(s)\n"
    );

    // tenant-lockdown on, delivered in the next session and answered.
    let out = cli.ok(&["tenant-lockdown", &id, "on"]).await;
    assert!(
        out.starts_with(&format!(
            "queued TenantLockdown RequireNetworkInOOBE=true for {id}: command "
        )),
        "{out}"
    );
    d1.session().await;
    d1.session().await;
    let v = cli.json(&["command", "list", &id]).await;
    let tl = v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["target"]
                .as_str()
                .is_some_and(|t| t.contains("TenantLockdown"))
        })
        .unwrap_or_else(|| panic!("no TenantLockdown command: {v}"));
    assert_eq!(tl["state"], "done", "{v}");
    let out = cli.ok(&["command", "list", &id]).await;
    assert!(out.contains("done"), "{out}");
    let v = cli.json(&["device", "show", &id]).await;
    assert_eq!(v["tenant_lockdown"], true);
}

#[tokio::test]
async fn wrong_token_exits_1_and_unreachable_server_exits_2() {
    let srv = TestServer::start().await;
    let mut cli = Cli::new(&srv);
    cli.token = "wrong".into();
    let (code, out) = cli.run(&["user", "list"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("missing or invalid bearer token"), "{out}");
    assert!(out.contains("401"), "{out}");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    cli.token = ADMIN_TOKEN.into();
    cli.server = format!("https://127.0.0.1:{port}");
    let (code, out) = cli.run(&["user", "list"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot connect"), "{out}");

    // A server whose certificate the CA file does not vouch for: a TLS failure, exit 2.
    let other = TestServer::start().await;
    let mut cli = Cli::new(&other);
    cli.server = format!("https://localhost:{}", srv.addr.port());
    let (code, out) = cli.run(&["user", "list"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("TLS"), "{out}");
}

#[tokio::test]
async fn openapi_document_is_served_behind_the_token() {
    let srv = TestServer::start().await;
    let (st, doc) = srv.admin("GET", "/api/v1/openapi.json", None).await;
    assert_eq!(st, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.0.3");
    for (m, p) in winmdm::admin::ROUTES {
        assert!(
            doc["paths"][p][m.to_ascii_lowercase()].is_object(),
            "{m} {p} missing"
        );
    }
    let (st, _) = srv
        .client()
        .admin("GET", "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn the_binary_runs_admin_subcommands() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let (server, ca) = (cli.server.clone(), cli.ca.clone());
    let cwd = tempfile::tempdir().unwrap();
    let cwd_path = cwd.path().to_path_buf();
    let run = move |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_winmdm"))
            .current_dir(&cwd_path)
            .env_remove("WINMDM_ADMIN_TOKEN")
            .env_remove("WINMDM_TOKEN_FILE")
            .env_remove("WINMDM_CA_CERT")
            .env("WINMDM_SERVER", &server)
            .env("RUST_LOG", "off")
            .args(args)
            .output()
            .expect("run winmdm")
    };
    let token = cwd.path().join("token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).unwrap();
    let args = |rest: &[&str]| {
        let mut a = vec![
            "--token-file".to_string(),
            token.display().to_string(),
            "--ca-cert".to_string(),
            ca.display().to_string(),
        ];
        a.extend(rest.iter().map(|s| s.to_string()));
        a
    };
    let add = args(&["user", "add", "bob@example.com", "--password", "pw"]);
    let list = args(&["--json", "user", "list"]);
    let dup = args(&["user", "add", "bob@example.com", "--password", "pw"]);
    let (a, l, d) = tokio::task::spawn_blocking({
        let run = run.clone();
        move || (run(add), run(list), run(dup))
    })
    .await
    .unwrap();
    assert_eq!(a.status.code(), Some(0), "{a:?}");
    assert_eq!(
        String::from_utf8_lossy(&a.stdout),
        "created user bob@example.com\n"
    );
    assert_eq!(l.status.code(), Some(0), "{l:?}");
    let v: serde_json::Value = serde_json::from_slice(&l.stdout).expect("JSON");
    assert_eq!(v["users"][0]["upn"], "bob@example.com");
    assert_eq!(d.status.code(), Some(1), "{d:?}");
    assert!(d.stdout.is_empty());
    assert!(String::from_utf8_lossy(&d.stderr).contains("already exists"));

    // Defaults: ./winmdm-data/admin-token and the top of ./winmdm-data/tls/server.pem.
    let data = cwd.path().join("winmdm-data");
    std::fs::create_dir_all(data.join("tls")).unwrap();
    std::fs::copy(
        srv.data_dir.join("tls").join("server.pem"),
        data.join("tls").join("server.pem"),
    )
    .unwrap();
    std::fs::write(data.join("admin-token"), ADMIN_TOKEN).unwrap();
    let o = tokio::task::spawn_blocking(move || run(vec!["user".to_string(), "list".to_string()]))
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("bob@example.com"));

    // --password-stdin reads the first line of standard input.
    let bin_server = format!("https://localhost:{}", srv.addr.port());
    let dir = cwd.path().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_winmdm"))
            .current_dir(&dir)
            .env_remove("WINMDM_ADMIN_TOKEN")
            .env_remove("WINMDM_TOKEN_FILE")
            .env_remove("WINMDM_CA_CERT")
            .env("RUST_LOG", "off")
            .args(["--server", &bin_server, "user", "add", "carol@example.com"])
            .arg("--password-stdin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn winmdm");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"pw-from-stdin\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let user = srv
        .app
        .store
        .get_user("carol@example.com")
        .unwrap()
        .unwrap();
    assert!(winmdm::auth::verify_password(
        "pw-from-stdin",
        &user.password_hash
    ));
    drop(cli);
}

#[tokio::test]
async fn user_show_set_password_disable_enable() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let d = enrolled(&srv, 71).await;
    let upn = "user71@example.com";
    let out = cli.ok(&["user", "show", upn]).await;
    assert!(out.starts_with("FIELD"), "{out}");
    assert!(out.contains(&d.device_id), "{out}");
    let v = cli.json(&["user", "show", upn]).await;
    assert_eq!(v["devices"][0], d.device_id.as_str());
    let (code, out) = cli.run(&["user", "show", "nobody@example.com"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("not found") && out.contains("404"), "{out}");

    let before = srv.app.store.get_user(upn).unwrap().unwrap().password_hash;
    assert_eq!(
        cli.ok(&["user", "set-password", upn, "--password", "pw-new-71"])
            .await,
        format!("password changed for {upn}\n")
    );
    let after = srv.app.store.get_user(upn).unwrap().unwrap().password_hash;
    assert_ne!(before, after);
    assert!(winmdm::auth::verify_password("pw-new-71", &after));

    assert_eq!(
        cli.ok(&["user", "disable", upn]).await,
        format!("disabled user {upn}\n")
    );
    assert!(srv.app.store.get_user(upn).unwrap().unwrap().disabled);
    let v = cli.json(&["user", "enable", upn]).await;
    assert_eq!(v["disabled"], false);
    assert!(!srv.app.store.get_user(upn).unwrap().unwrap().disabled);
    srv.stop().await;
}

#[tokio::test]
async fn device_actions_rm_and_audit() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let mut d = enrolled(&srv, 72).await;
    let id = d.device_id.clone();

    let out = cli.ok(&["device", "wipe", &id]).await;
    assert!(
        out.starts_with(&format!("queued wipe for {id}: action wipe-")),
        "{out}"
    );
    let action_id = out.trim().rsplit(' ').next().unwrap().to_string();
    let out = cli.ok(&["device", "wipe", &id]).await;
    assert_eq!(
        out,
        format!("wipe already pending for {id}: action {action_id}\n")
    );
    let v = cli.json(&["device", "wipe", &id, "--protected"]).await;
    assert!(v["action_id"]
        .as_str()
        .unwrap()
        .starts_with("wipe-protected-"));
    let v = cli.json(&["device", "reboot", &id]).await;
    assert_eq!(v["action"], "reboot");
    let v = cli.json(&["device", "sync", &id]).await;
    assert_eq!(v["action"], "sync");
    let got = d.session().await;
    assert_eq!(got.len(), 4, "{got:?}");
    let out = cli.ok(&["device", "action", &id, &action_id]).await;
    assert!(out.starts_with("ACTION_ID"), "{out}");
    assert!(
        out.contains(&action_id) && out.contains("done") && out.contains("200"),
        "{out}"
    );
    let v = cli.json(&["device", "retire", &id]).await;
    assert_eq!(v["action"], "retire");

    assert_eq!(
        cli.ok(&["device", "rm", &id]).await,
        format!("deleted device {id}\n")
    );
    let (code, out) = cli.run(&["device", "rm", &id]).await;
    assert_eq!(code, 1);
    assert!(out.contains("not found"), "{out}");
    let (code, _) = cli.run(&["device", "reboot", &id]).await;
    assert_eq!(code, 1);

    let out = cli.ok(&["audit"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("ACTION"),
        "{out}"
    );
    assert!(
        out.contains("device.action") && out.contains("device.delete"),
        "{out}"
    );
    assert!(out.contains("user.create"), "{out}");
    let v = cli.json(&["audit"]).await;
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"user.create"));
    assert_eq!(actions.last(), Some(&"device.delete"));
    let v = cli.json(&["audit", "--limit", "2", "--all"]).await;
    assert_eq!(v["entries"].as_array().unwrap().len(), actions.len());
    let out = cli.ok(&["audit", "--limit", "2"]).await;
    assert!(out.contains("--cursor"), "{out}");
    srv.stop().await;
}

#[tokio::test]
async fn device_assign_user_for_bulk_enrolled_devices() {
    let srv = TestServer::start().await;
    srv.create_user("windows-bulkenroll-lab@contoso.com", "ppkg-1")
        .await;
    srv.create_user("amy@contoso.com", "pw-amy-1").await;
    let info = crate::support::device::DeviceInfo::new(
        320,
        "windows-bulkenroll-lab@contoso.com",
        "ppkg-1",
    );
    crate::support::device::enroll(&srv.client(), &info).await;
    let cli = Cli::new(&srv);
    let out = cli
        .ok(&["device", "assign-user", &info.device_id, "amy@contoso.com"])
        .await;
    assert!(out.contains("assigned to amy@contoso.com"), "{out}");
    let v = cli.json(&["device", "show", &info.device_id]).await;
    assert_eq!(v["assigned_user"]["upn"], "amy@contoso.com");
    let (code, out) = cli
        .run(&[
            "device",
            "assign-user",
            &info.device_id,
            "ghost@contoso.com",
        ])
        .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("404"), "{out}");
    srv.stop().await;
}

/// Issue 13: `winmdm device set-owner` hands a device to another user on purpose.
#[tokio::test]
async fn device_set_owner_hands_a_device_to_another_user() {
    let srv = TestServer::start().await;
    srv.create_user("ann@contoso.com", "pw-ann-1").await;
    srv.create_user("ben@contoso.com", "pw-ben-1").await;
    let info = crate::support::device::DeviceInfo::new(321, "ann@contoso.com", "pw-ann-1");
    crate::support::device::enroll(&srv.client(), &info).await;
    let cli = Cli::new(&srv);
    let out = cli
        .ok(&["device", "set-owner", &info.device_id, "ben@contoso.com"])
        .await;
    assert!(out.contains("now belongs to ben@contoso.com"), "{out}");
    let v = cli.json(&["device", "show", &info.device_id]).await;
    assert_eq!(v["upn"], "ben@contoso.com");
    assert_eq!(v["owner_status"], "active");
    let (code, out) = cli
        .run(&["device", "set-owner", &info.device_id, "ghost@contoso.com"])
        .await;
    assert_eq!(code, 1, "{out}");
    srv.stop().await;
}
