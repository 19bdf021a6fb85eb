//! The admin CLI run in-process against a test server (`winmdm::cli::run` with `--server`,
//! `--token` and `--ca-cert` set), for every test module that drives `winmdm …` commands.

use std::path::PathBuf;

use base64::Engine;

use super::{TestServer, ADMIN_TOKEN};

/// The server's CA as a PEM file in `dir`.
pub fn ca_pem(srv: &TestServer, dir: &std::path::Path) -> PathBuf {
    let b64 = base64::engine::general_purpose::STANDARD.encode(srv.app.ca.cert_der());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem).expect("write pem");
    path
}

/// A CLI bound to one server (its CA file lives in a temp dir kept with it).
pub struct Cli {
    /// `--server`.
    pub server: String,
    /// `--token`.
    pub token: String,
    /// `--ca-cert`.
    pub ca: PathBuf,
    /// Holds the CA file (and any file a test writes there).
    pub dir: tempfile::TempDir,
}

impl Cli {
    /// A CLI for `srv` with the bootstrap admin token.
    pub fn new(srv: &TestServer) -> Cli {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca_pem(srv, dir.path());
        Cli {
            server: format!("https://localhost:{}", srv.addr.port()),
            token: ADMIN_TOKEN.into(),
            ca,
            dir,
        }
    }

    /// Runs `winmdm --server … --token <token> --ca-cert … <args>`: (exit code, output).
    pub async fn run_as(&self, token: &str, args: &[&str]) -> (i32, String) {
        let mut all: Vec<String> = vec![
            "winmdm".into(),
            "--server".into(),
            self.server.clone(),
            "--token".into(),
            token.into(),
            "--ca-cert".into(),
            self.ca.display().to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let code = winmdm::cli::run(all, &mut out);
            (code, String::from_utf8(out).expect("utf-8 output"))
        })
        .await
        .expect("join")
    }

    /// Runs with this CLI's token.
    pub async fn run(&self, args: &[&str]) -> (i32, String) {
        self.run_as(&self.token.clone(), args).await
    }

    /// Runs and asserts exit code 0.
    pub async fn ok(&self, args: &[&str]) -> String {
        let (code, out) = self.run(args).await;
        assert_eq!(code, 0, "winmdm {args:?}: {out}");
        out
    }

    /// Runs with `--json` and parses the output.
    pub async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}
