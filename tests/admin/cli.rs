//! `winmdm token|invite|invitation|bulk` against an in-process server.

use crate::support::cli::Cli;
use crate::support::TestServer;

#[tokio::test]
async fn cli_tokens_invitations_and_packages() {
    let srv = TestServer::start().await;
    let cli = Cli::new(&srv);
    let (code, out) = cli
        .run(&["token", "create", "helpdesk", "--role", "read-only"])
        .await;
    assert_eq!(code, 0, "{out}");
    let token = out
        .lines()
        .find(|l| l.starts_with("wmdm_helpdesk_"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let (code, out) = cli.run(&["token", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("helpdesk") && out.contains("read-only") && out.contains("bootstrap"),
        "{out}"
    );
    assert!(!out.contains(&token));
    // The read-only token reads but cannot write (exit 1, the server's reason).
    let (code, out) = cli.run_as(&token, &["user", "list"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli
        .run_as(&token, &["user", "add", "x@example.com", "--password", "p"])
        .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("read-only") && out.contains("HTTP 403"),
        "{out}"
    );

    srv.create_user("jo@example.com", "pw-jo-1234").await;
    let (code, out) = cli.run(&["invite", "jo@example.com"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ms-device-enrollment:?mode=mdm&username=jo%40example.com"),
        "{out}"
    );
    assert!(out.contains("/enroll/invite/") && out.contains("Enroll only in device management"));
    let (code, out) = cli.run(&["invite", "jo@example.com", "--send"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("e-mail NOT sent: no SMTP server configured"),
        "{out}"
    );
    let (code, out) = cli.run(&["invite", "nobody@example.com"]).await;
    assert_eq!(code, 1);
    assert!(out.contains("HTTP 404"), "{out}");
    let (code, out) = cli.run(&["invitation", "list"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.matches("jo@example.com").count(), 2, "{out}");
    let id = out
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let (code, out) = cli.run(&["invitation", "revoke", &id]).await;
    assert_eq!(code, 0, "{out}");
    let (_, out) = cli.run(&["invitation", "list"]).await;
    assert!(out.contains("revoked"), "{out}");

    srv.create_user("windows-bulkenroll-cli@example.com", "pw-bulk-1")
        .await;
    let file = cli.dir.path().join("customizations.xml");
    let (code, out) = cli
        .run(&[
            "bulk",
            "package",
            "windows-bulkenroll-cli@example.com",
            "--out",
            file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, 0, "{out}");
    let xml = std::fs::read_to_string(&file).unwrap();
    assert!(xml.contains("<Secret>") && xml.contains("windows-bulkenroll-cli@example.com"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (_, out) = cli
        .run(&[
            "--json",
            "user",
            "show",
            "windows-bulkenroll-cli@example.com",
        ])
        .await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let pid = v["bulk_packages"][0]["package_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out) = cli.run(&["bulk", "revoke", &pid]).await;
    assert_eq!(code, 0, "{out}");
    let (code, _) = cli.run(&["bulk", "revoke", &pid]).await;
    assert_eq!(code, 1);

    let (code, out) = cli.run(&["token", "revoke", "helpdesk"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli.run_as(&token, &["user", "list"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 401"));
    srv.stop().await;
}
