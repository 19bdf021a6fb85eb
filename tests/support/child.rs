//! The real `winmdm` binary as a child process, for crash tests: start `winmdm serve` on a data
//! dir and a fixed loopback port, wait until it answers, SIGKILL it, start it again on the same
//! dir and port. Plus a request function that reports connection failures instead of panicking
//! (the server may die under any request).

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Client, HttpResponse, ADMIN_TOKEN};

/// Longest a single request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A `winmdm serve` child process on 127.0.0.1:<port>.
pub struct ChildServer {
    pub addr: SocketAddr,
    /// The mutual-TLS management listener (`--mgmt-listen`).
    pub mgmt_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// stdout + stderr of every start, appended.
    pub log_path: PathBuf,
    child: Option<Child>,
    /// How many times the binary was started.
    pub starts: u32,
    /// Extra environment for the child (the parent's `WINMDM_*` variables are not passed).
    pub env: Vec<(String, String)>,
    /// Extra `serve` arguments, after the ones every child gets.
    pub args: Vec<String>,
}

impl ChildServer {
    /// Picks a free loopback port; does not start anything yet.
    pub fn new(data_dir: &Path, log_path: &Path) -> ChildServer {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let m = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mgmt_addr = m.local_addr().expect("addr");
        drop((l, m));
        super::register_mgmt(addr, mgmt_addr);
        ChildServer {
            addr,
            mgmt_addr,
            data_dir: data_dir.to_path_buf(),
            log_path: log_path.to_path_buf(),
            child: None,
            starts: 0,
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Starts the binary (it must not be running).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "child already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("child log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_winmdm"));
        for (k, _) in std::env::vars() {
            if k.starts_with("WINMDM_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--public-url")
            .arg(format!("https://localhost:{}", self.addr.port()))
            .arg("--mgmt-listen")
            .arg(self.mgmt_addr.to_string())
            .arg("--mgmt-url")
            .arg(format!("https://localhost:{}", self.mgmt_addr.port()))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("WINMDM_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn winmdm"));
        self.starts += 1;
    }

    /// The last few KiB of the child's output.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read(&self.log_path).unwrap_or_default();
        let from = s.len().saturating_sub(8192);
        String::from_utf8_lossy(&s[from..]).into_owned()
    }

    /// The enrollment CA (DER) from `DATA_DIR/ca/ca.pem`, once the server wrote it.
    pub fn ca_der(&self) -> Option<Vec<u8>> {
        let pem = std::fs::read(self.data_dir.join("ca/ca.pem")).ok()?;
        let (_, p) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
        Some(p.contents)
    }

    /// Waits until `GET /healthz` answers 200 over TLS; returns a client trusting the CA.
    /// Panics with the child's output if it exits or does not answer within `limit`.
    pub async fn wait_ready(&mut self, limit: Duration) -> Client {
        let start = Instant::now();
        loop {
            let child = self.child.as_mut().expect("child started");
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                panic!(
                    "winmdm exited ({st}) before answering (start #{}):\n{}",
                    self.starts,
                    self.log_tail()
                );
            }
            if start.elapsed() > limit {
                self.kill();
                panic!(
                    "winmdm did not answer within {limit:?} (start #{}):\n{}",
                    self.starts,
                    self.log_tail()
                );
            }
            if let Some(root) = self.ca_der() {
                let c = Client::new(self.addr, root, None);
                if let Some(r) = send(&c, "GET", "/healthz", &[], vec![]).await {
                    if r.status == 200 {
                        return c;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (graceful stop), waiting up to `limit`; SIGKILL after that. Returns the exit
    /// status, `None` if it had to be killed.
    pub fn stop(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            let start = Instant::now();
            while start.elapsed() < limit {
                if let Ok(Some(st)) = c.try_wait() {
                    return Some(st);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
        super::unregister_mgmt(self.addr, self.mgmt_addr);
    }
}

/// As [`Client::try_request`], but a refused or reset connection, or a request taking longer
/// than [`REQUEST_TIMEOUT`], is `None` instead of a panic.
pub async fn send(
    c: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Option<HttpResponse> {
    tokio::time::timeout(REQUEST_TIMEOUT, send_inner(c, method, path, headers, body))
        .await
        .ok()
        .flatten()
}

async fn send_inner(
    c: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Option<HttpResponse> {
    c.try_request(method, path, headers, body).await
}

/// An admin API call that may fail: `None` if the connection failed.
pub async fn try_admin(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Option<(u16, serde_json::Value)> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let body = body
        .map(|b| serde_json::to_vec(&b).expect("json"))
        .unwrap_or_default();
    let r = send(c, method, path, &headers, body).await?;
    let v = if r.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap_or_else(|_| serde_json::Value::String(r.text()))
    };
    Some((r.status, v))
}

/// The whole enrollment (discovery, policy, RST) as [`super::device::enroll`], but `None` as
/// soon as a request fails or is refused (the server was killed under it). A new key and CSR
/// per call, as Windows makes on a new attempt.
pub async fn try_enroll(
    c: &Client,
    info: &super::device::DeviceInfo,
) -> Option<super::device::Enrolled> {
    use super::device::{
        discover_xml, element_text, message_id, policy_xml, rst_xml, Enrolled, Provisioning, B64,
    };
    use base64::Engine;
    let soap = [("content-type", "application/soap+xml; charset=utf-8")];
    let body = discover_xml(
        &info.upn,
        &info.request_version,
        &["OnPremise", "Federated"],
        &message_id(),
    );
    let r = send(
        c,
        "POST",
        "/EnrollmentServer/Discovery.svc",
        &soap,
        body.into_bytes(),
    )
    .await?;
    if r.status != 200 {
        return None;
    }
    let policy_url = element_text(&r.text(), "EnrollmentPolicyServiceUrl")?;
    let enroll_url = element_text(&r.text(), "EnrollmentServiceUrl")?;
    let path = |u: &str| {
        u.split_once("://")
            .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_string()))
            .unwrap_or_default()
    };
    let body = policy_xml(&info.upn, &info.password, &policy_url, &message_id());
    let r = send(c, "POST", &path(&policy_url), &soap, body.into_bytes()).await?;
    if r.status != 200 {
        return None;
    }
    let (csr, key) =
        winmdm::ca::testing::device_csr(&info.device_id, winmdm::ca::KeyAlgorithm::Rsa2048);
    let body = rst_xml(info, &csr, &enroll_url, &message_id());
    let r = send(c, "POST", &path(&enroll_url), &soap, body.into_bytes()).await?;
    if r.status != 200 {
        return None;
    }
    let b64 = element_text(&r.text(), "BinarySecurityToken")?;
    let doc = String::from_utf8(B64.decode(b64.trim()).ok()?).ok()?;
    let prov = Provisioning::parse(&doc);
    Some(Enrolled {
        device_id: info.device_id.clone(),
        cert_der: prov.client_cert.clone(),
        key,
        root_der: prov.root_cert.clone(),
        mgmt_url: prov.addr.clone(),
        provisioning_doc: doc,
    })
}
