//! The load tool's device side, shared by `examples/loadgen` (both modes) and the test suite:
//! TLS and HTTP/1.1 client plumbing, the OMA-DM session a simulated device runs (package 1, then
//! one message answering every command until the server has nothing more), and
//! [`run_external`]: simulated devices against one or several running `winmdm serve` processes.
//!
//! External mode, step by step:
//! 1. **Account.** On each target, `POST /api/v1/users` creates one bulk-enrollment account
//!    `windows-bulkenroll-load-<random>@loadgen.example` (409 is accepted: targets sharing one
//!    store), and `GET /api/v1/bulk-enrollment/package?upn=…` mints a package secret, read from the
//!    customizations' `Secret`. A bulk account is not subject to `--max-devices-per-user`, so one
//!    account enrolls any number of devices, as a provisioning package does in the field.
//! 2. **Enrollment** through the real endpoints of target `i % n` for device `i` (discovery →
//!    policy → RST with a fresh EC P-256 key, UsernameToken = the package secret), with bounded
//!    concurrency. The device's management endpoint is the provisioning document's w7 `ADDR`.
//! 3. **Passes.** Before each pass every device gets `commands` commands queued through the admin
//!    API of its target (`POST /api/v1/devices/{id}/commands`, bounded concurrency, timed apart),
//!    then `concurrency` workers run one session per device. With `hop`, message `k` of a session
//!    goes to the management endpoint of target `(home + k) % n` (the multi-node case).
//! 4. **Report**: sessions/s, latency percentiles, errors by kind, per target; with server pids,
//!    their CPU time (utime + stime of `/proc/<pid>/stat`) per phase.
//!
//! Not part of the stable API.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use crate::ca::KeyAlgorithm;
use crate::soap::client::{parse_discover_response, parse_rstr, Reply};
use crate::syncml::Command;

/// One side of an HTTP/1.1 client connection.
pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Longest wait for one request (connect, TLS, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A session still going after this many messages is an error (the server never ran dry).
const MAX_MESSAGES: u32 = 200;

/// Why a request or a session failed: a short `kind` to count by and the detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `connect`, `tls`, `http`, `timeout`, `http-<status>`, `syncml`, `enroll-fault`, …
    pub kind: String,
    /// What happened.
    pub detail: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: impl Into<String>, detail: impl fmt::Display) -> Failure {
        Failure {
            kind: kind.into(),
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Failure {}

/// Where to connect and which TLS name (and `Host`) to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Socket address.
    pub addr: SocketAddr,
    /// TLS server name and `Host` header.
    pub host: String,
}

/// A management endpoint: the provisioning document's `ADDR`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mgmt {
    /// Where to connect.
    pub to: Endpoint,
    /// Request path (with the query Windows sends).
    pub path: String,
    /// The `ADDR` URL: the `SyncHdr/Target/LocURI` of the device's messages.
    pub loc_uri: String,
}

impl Mgmt {
    /// An endpoint at `to` with the path and LocURI Windows uses for `ADDR` = `url`.
    pub fn new(to: Endpoint, url: &str) -> Mgmt {
        Mgmt {
            to,
            path: format!("{}?mode=Maintenance&Platform=WoA", path_of(url)),
            loc_uri: url.to_string(),
        }
    }
}

/// A rustls client on aws-lc-rs trusting `roots`, with `identity` as client certificate, and
/// session resumption off when `resume` is false (every connection a full handshake).
pub fn tls_client(
    roots: Arc<rustls::RootCertStore>,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    resume: bool,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((c, k)) => b.with_client_auth_cert(vec![c], k)?,
        None => b.with_no_client_auth(),
    };
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(cfg))
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .map_err(|_| Failure::new("timeout", format!("{what} took over {REQUEST_TIMEOUT:?}")))?
}

/// TLS connections [`connect`] made in this process, and how many of them resumed a session.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static RESUMED: AtomicU64 = AtomicU64::new(0);

/// (connections made by [`connect`], of which resumed) since the process started.
pub fn connections_made() -> (u64, u64) {
    (
        CONNECTIONS.load(Ordering::Relaxed),
        RESUMED.load(Ordering::Relaxed),
    )
}

/// A new TCP + TLS + HTTP/1.1 connection to `to`.
pub async fn connect(to: &Endpoint, cfg: Arc<rustls::ClientConfig>) -> Result<Sender, Failure> {
    timed("connect", async {
        let tcp = tokio::net::TcpStream::connect(to.addr)
            .await
            .map_err(|e| Failure::new("connect", format!("{}: {e}", to.addr)))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(to.host.clone()).map_err(|e| Failure::new("tls", e))?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::new("tls", e))?;
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            RESUMED.fetch_add(1, Ordering::Relaxed);
        }
        let (tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| Failure::new("http", e))?;
        tokio::spawn(conn);
        Ok(tx)
    })
    .await
}

/// One request on `tx`: (status, body).
pub async fn request(
    tx: &mut Sender,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, Bytes), Failure> {
    timed("request", async {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::new("http", e))?;
        tx.ready().await.map_err(|e| Failure::new("http", e))?;
        let resp = tx
            .send_request(req)
            .await
            .map_err(|e| Failure::new("http", e))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::new("http", e))?
            .to_bytes();
        Ok((status, body))
    })
    .await
}

/// A management POST; anything but 200 is a `http-<status>` failure.
pub async fn post_syncml(tx: &mut Sender, to: &Mgmt, body: String) -> Result<Bytes, Failure> {
    let (st, body) = request(
        tx,
        "POST",
        &to.to.host,
        &to.path,
        &[("content-type", "application/vnd.syncml.dm+xml")],
        body.into_bytes(),
    )
    .await?;
    if st != 200 {
        return Err(Failure::new(
            format!("http-{st}"),
            format!("{} answered {st}", to.loc_uri),
        ));
    }
    Ok(body)
}

/// Package 1 of a session as Windows sends it: Alert 1201, LoginStatus, DevInfo.
pub fn package1(id: &str, session: u32, loc_uri: &str) -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>1</MsgID><Target><LocURI>{loc_uri}</LocURI></Target><Source><LocURI>{id}</LocURI></Source><Meta><MaxMsgSize xmlns="syncml:metinf">65535</MaxMsgSize></Meta></SyncHdr><SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert><Alert><CmdID>3</CmdID><Data>1224</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft/MDM/LoginStatus</Type></Meta><Data>user</Data></Item></Alert><Replace><CmdID>4</CmdID><Item><Source><LocURI>./DevInfo/DevId</LocURI></Source><Data>{id}</Data></Item><Item><Source><LocURI>./DevInfo/Man</LocURI></Source><Data>Load Inc.</Data></Item><Item><Source><LocURI>./DevInfo/DmV</LocURI></Source><Data>1.3</Data></Item></Replace><Final/></SyncBody></SyncML>"#
    )
}

/// The device's answer to a server reply (a Status per command, Results for each Get) and the
/// number of commands it answers; `None` when the reply carries no command (the session ends).
pub fn answer(
    id: &str,
    session: u32,
    msg: u32,
    loc_uri: &str,
    reply: &[u8],
) -> Result<Option<(String, usize)>, Failure> {
    let parsed = crate::syncml::parse(reply).map_err(|e| Failure::new("syncml", e))?;
    let server_msg = parsed.hdr.msg_id.to_string();
    let mut body = format!(
        r#"<Status><CmdID>1</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>"#
    );
    let mut n = 1;
    let mut commands = 0;
    for c in &parsed.body.commands {
        if matches!(c, Command::Status(_) | Command::Alert(_)) {
            continue;
        }
        commands += 1;
        n += 1;
        let cmd_id = c.cmd_id().unwrap_or("0");
        body.push_str(&format!(
            r#"<Status><CmdID>{n}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>{cmd_id}</CmdRef><Cmd>{}</Cmd><Data>200</Data></Status>"#,
            c.name()
        ));
        if let Command::Get(g) = c {
            n += 1;
            let t = g
                .items
                .first()
                .and_then(|i| i.target.as_ref())
                .map(|t| t.loc_uri.to_string())
                .unwrap_or_default();
            body.push_str(&format!(
                r#"<Results><CmdID>{n}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>{cmd_id}</CmdRef><Item><Source><LocURI>{t}</LocURI></Source><Data>10.0.26100.1</Data></Item></Results>"#
            ));
        }
    }
    if commands == 0 {
        return Ok(None);
    }
    Ok(Some((
        format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{msg}</MsgID><Target><LocURI>{loc_uri}</LocURI></Target><Source><LocURI>{id}</LocURI></Source></SyncHdr><SyncBody>{body}<Final/></SyncBody></SyncML>"#
        ),
        commands,
    )))
}

/// One management session of device `id`: message `k` (from 0) goes to `route[k % route.len()]`
/// (one entry: every message to the same endpoint), each on the connection kept in the same
/// slot of `conns` (opened when empty or closed; left there for the next session). Returns the
/// number of commands the device received and answered.
pub async fn session(
    id: &str,
    client: &Arc<rustls::ClientConfig>,
    route: &[&Mgmt],
    conns: &mut [Option<Sender>],
    session_id: u32,
) -> Result<usize, Failure> {
    if route.is_empty() || conns.len() < route.len() {
        return Err(Failure::new("config", "no management endpoint"));
    }
    let mut body = package1(id, session_id, &route[0].loc_uri);
    let mut received = 0;
    for k in 0..MAX_MESSAGES {
        let slot = k as usize % route.len();
        let to = route[slot];
        let mut tx = match conns[slot].take() {
            Some(tx) if !tx.is_closed() => tx,
            _ => connect(&to.to, client.clone()).await?,
        };
        let reply = post_syncml(&mut tx, to, body)
            .await
            .map_err(|e| Failure::new(e.kind, format!("message {}: {}", k + 1, e.detail)))?;
        conns[slot] = Some(tx);
        let next = route[(slot + 1) % route.len()];
        match answer(id, session_id, k + 2, &next.loc_uri, &reply)? {
            Some((b, n)) => {
                received += n;
                body = b;
            }
            None => return Ok(received),
        }
    }
    Err(Failure::new(
        "session-too-long",
        format!("the server was still sending commands after {MAX_MESSAGES} messages"),
    ))
}

/// The `p` quantile (0–1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The path of a URL (`/` when it has none).
pub fn path_of(url: &str) -> String {
    url.split_once("://")
        .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_string()))
        .unwrap_or_else(|| "/".into())
}

/// (host, port) of an https URL.
pub fn host_port(url: &str) -> Result<(String, u16), Failure> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| Failure::new("config", format!("not an https URL: {url}")))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        // [::1]:8443
        let (h, p) = v6
            .split_once("]:")
            .ok_or_else(|| Failure::new("config", format!("no port in {url}")))?;
        let port = p
            .parse()
            .map_err(|_| Failure::new("config", format!("bad port in {url}")))?;
        return Ok((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse()
                .map_err(|_| Failure::new("config", format!("bad port in {url}")))?,
        )),
        None => Ok((authority.to_string(), 443)),
    }
}

/// Resolves `host:port` to the first address that accepts a TCP connection (`localhost` may
/// resolve to `::1` while a server listens on 127.0.0.1 only).
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, Failure> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Failure::new("resolve", format!("{host}: {e}")))?
        .collect();
    let mut last = format!("{host} does not resolve");
    for a in addrs {
        match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(a)).await
        {
            Ok(Ok(_)) => return Ok(a),
            Ok(Err(e)) => last = format!("{a}: {e}"),
            Err(_) => last = format!("{a}: connect timed out"),
        }
    }
    Err(Failure::new("connect", last))
}

/// utime + stime of process `pid` in seconds (`/proc/<pid>/stat`, in USER_HZ = 100 ticks per
/// second on Linux), threads that already exited included; `None` if unreadable.
pub fn process_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields restart after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `rest` starts at field 3.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// CPU seconds of all `pids` together; `None` if any is unreadable.
fn cpu_of(pids: &[u32]) -> Option<f64> {
    pids.iter()
        .map(|p| process_cpu_seconds(&p.to_string()))
        .sum()
}

/// What [`run_external`] does.
#[derive(Debug, Clone)]
pub struct ExternalOptions {
    /// Base URLs of the servers' public listeners (`https://host:port`).
    pub targets: Vec<String>,
    /// Admin tokens: one for all targets, or one per target.
    pub tokens: Vec<String>,
    /// CA certificates trusted for the servers' TLS.
    pub roots: Vec<CertificateDer<'static>>,
    /// Simulated devices (device `i` enrolls through target `i % n`).
    pub devices: usize,
    /// Sessions in total.
    pub sessions: usize,
    /// Concurrent sessions.
    pub concurrency: usize,
    /// Commands queued per device before each pass.
    pub commands: usize,
    /// Bytes of data per `Replace`.
    pub size: usize,
    /// Keep one connection per device (and target) between sessions.
    pub reuse: bool,
    /// Without `reuse`: let each device resume its previous TLS session (a ticket from its last
    /// connection), as a device returning within the ticket's lifetime can.
    pub resume: bool,
    /// Each message of a session goes to the next target.
    pub hop: bool,
    /// Session phase deadline.
    pub seconds: u64,
    /// Concurrent enrollments.
    pub enroll_concurrency: usize,
    /// Concurrent admin requests when queueing commands.
    pub enqueue_concurrency: usize,
    /// Server processes whose CPU time is measured per phase.
    pub server_pids: Vec<u32>,
    /// Print a line as each phase ends.
    pub verbose: bool,
}

impl Default for ExternalOptions {
    fn default() -> Self {
        ExternalOptions {
            targets: vec![],
            tokens: vec![],
            roots: vec![],
            devices: 200,
            sessions: 2000,
            concurrency: 32,
            commands: 1,
            size: 64,
            reuse: false,
            resume: false,
            hop: false,
            seconds: 600,
            enroll_concurrency: 16,
            enqueue_concurrency: 32,
            server_pids: vec![],
            verbose: false,
        }
    }
}

/// Errors counted by kind, with the first few in full.
#[derive(Debug, Default, Clone)]
pub struct Errors {
    /// kind → count.
    pub by_kind: BTreeMap<String, usize>,
    /// The first few, as printed.
    pub first: Vec<String>,
}

impl Errors {
    fn add(&mut self, f: &Failure) {
        *self.by_kind.entry(f.kind.clone()).or_default() += 1;
        if self.first.len() < 5 {
            self.first.push(f.to_string());
        }
    }

    /// Errors in all.
    pub fn total(&self) -> usize {
        self.by_kind.values().sum()
    }

    fn merge(&mut self, o: &Errors) {
        for (k, n) in &o.by_kind {
            *self.by_kind.entry(k.clone()).or_default() += n;
        }
        for f in &o.first {
            if self.first.len() < 5 {
                self.first.push(f.clone());
            }
        }
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.by_kind.is_empty() {
            return write!(f, "0");
        }
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        write!(f, "{} ({})", self.total(), kinds.join(" "))
    }
}

/// Per target: what happened to the devices enrolled through it.
#[derive(Debug, Default, Clone)]
pub struct TargetReport {
    /// The target's URL.
    pub url: String,
    /// Devices enrolled through it.
    pub enrolled: usize,
    /// Enrollment errors.
    pub enroll_errors: Errors,
    /// Commands its admin API accepted.
    pub enqueued: usize,
    /// Enqueue errors.
    pub enqueue_errors: Errors,
    /// Session latencies of its devices, sorted.
    pub latencies: Vec<Duration>,
    /// Commands its devices received and answered.
    pub received: usize,
    /// Session errors.
    pub session_errors: Errors,
}

/// CPU seconds used by the server processes in each phase.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerCpu {
    /// Enrollment.
    pub enroll: f64,
    /// Queueing commands.
    pub enqueue: f64,
    /// Sessions.
    pub sessions: f64,
}

/// The outcome of [`run_external`].
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Per target, in `targets` order.
    pub targets: Vec<TargetReport>,
    /// Whether the run used reused connections.
    pub reuse: bool,
    /// Whether new connections could resume a TLS session.
    pub resume: bool,
    /// Management connections opened in the session phases, and how many of them resumed.
    pub connections: (u64, u64),
    /// Whether sessions hopped between targets.
    pub hop: bool,
    /// Concurrent sessions.
    pub concurrency: usize,
    /// Commands per device per pass.
    pub commands: usize,
    /// Wall time of the enrollment phase.
    pub enroll_time: Duration,
    /// Wall time spent queueing commands (all passes).
    pub enqueue_time: Duration,
    /// Wall time of the session phases (all passes, without queueing).
    pub session_time: Duration,
    /// Server CPU, when pids were given and readable.
    pub server_cpu: Option<ServerCpu>,
    /// This process's CPU in the session phases.
    pub own_session_cpu: Option<f64>,
    /// With a new handshake per session: the handshake-crypto bound, measured after the
    /// sessions on this machine.
    pub handshake_bound: Option<super::handshake::Bound>,
}

impl Report {
    /// All session latencies, sorted.
    pub fn latencies(&self) -> Vec<Duration> {
        let mut v: Vec<Duration> = self
            .targets
            .iter()
            .flat_map(|t| t.latencies.iter().copied())
            .collect();
        v.sort();
        v
    }

    /// Successful sessions.
    pub fn sessions(&self) -> usize {
        self.targets.iter().map(|t| t.latencies.len()).sum()
    }

    /// Devices enrolled.
    pub fn enrolled(&self) -> usize {
        self.targets.iter().map(|t| t.enrolled).sum()
    }

    /// Commands accepted by the admin APIs.
    pub fn enqueued(&self) -> usize {
        self.targets.iter().map(|t| t.enqueued).sum()
    }

    /// Commands the devices received.
    pub fn received(&self) -> usize {
        self.targets.iter().map(|t| t.received).sum()
    }

    fn merged(&self, pick: impl Fn(&TargetReport) -> &Errors) -> Errors {
        let mut e = Errors::default();
        for t in &self.targets {
            e.merge(pick(t));
        }
        e
    }

    /// Enrollment errors, all targets.
    pub fn enroll_errors(&self) -> Errors {
        self.merged(|t| &t.enroll_errors)
    }

    /// Enqueue errors, all targets.
    pub fn enqueue_errors(&self) -> Errors {
        self.merged(|t| &t.enqueue_errors)
    }

    /// Session errors, all targets.
    pub fn session_errors(&self) -> Errors {
        self.merged(|t| &t.session_errors)
    }
}

fn rate(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lat = self.latencies();
        let (enrolled, enqueued, sessions) = (self.enrolled(), self.enqueued(), self.sessions());
        writeln!(
            f,
            "mode={}{} targets={} devices={} sessions={} concurrency={} commands/session={}",
            mode_name(self.reuse, self.resume),
            if self.hop { "+hop" } else { "" },
            self.targets.len(),
            enrolled,
            sessions,
            self.concurrency,
            self.commands
        )?;
        writeln!(
            f,
            "enroll: {enrolled} devices in {:.2?} ({:.1}/s), errors={}",
            self.enroll_time,
            rate(enrolled, self.enroll_time),
            self.enroll_errors()
        )?;
        writeln!(
            f,
            "enqueue: {enqueued} commands in {:.2?} ({:.0}/s), errors={}",
            self.enqueue_time,
            rate(enqueued, self.enqueue_time),
            self.enqueue_errors()
        )?;
        writeln!(
            f,
            "sessions/s={:.0} p50={:.1} ms p99={:.1} ms max={:.1} ms (session time {:.2?}) errors={} commands received={}",
            rate(sessions, self.session_time),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default()),
            self.session_time,
            self.session_errors(),
            self.received()
        )?;
        for t in &self.targets {
            writeln!(
                f,
                "  target {}: enrolled={} sessions={} ({:.0}/s) p50={:.1} ms p99={:.1} ms errors={} received={}",
                t.url,
                t.enrolled,
                t.latencies.len(),
                rate(t.latencies.len(), self.session_time),
                ms(percentile(&t.latencies, 0.5)),
                ms(percentile(&t.latencies, 0.99)),
                t.session_errors,
                t.received
            )?;
        }
        for e in self
            .enroll_errors()
            .first
            .iter()
            .chain(&self.enqueue_errors().first)
            .chain(&self.session_errors().first)
        {
            writeln!(f, "  error: {e}")?;
        }
        if let Some(c) = self.server_cpu {
            // With nothing enqueued the phase's CPU is the server's idle work, not a cost per
            // command.
            let per_command = match enqueued {
                0 => String::new(),
                n => format!(" ({:.0} µs per command)", c.enqueue * 1e6 / n as f64),
            };
            writeln!(
                f,
                "server CPU: sessions {:.2} s = {:.3} CPU-s per 1,000 sessions, {:.0} % of one core; enroll {:.2} s ({:.1} ms per device); enqueue {:.2} s{per_command}",
                c.sessions,
                c.sessions * 1000.0 / sessions.max(1) as f64,
                100.0 * c.sessions / self.session_time.as_secs_f64().max(1e-9),
                c.enroll,
                c.enroll * 1e3 / enrolled.max(1) as f64,
                c.enqueue,
            )?;
        }
        if !self.reuse {
            let (made, resumed) = self.connections;
            writeln!(
                f,
                "management connections in the sessions: {made}, {resumed} resumed a TLS session ({:.0} %)",
                100.0 * resumed as f64 / made.max(1) as f64
            )?;
        }
        if let Some(c) = self.own_session_cpu {
            writeln!(
                f,
                "load generator CPU in the sessions: {c:.2} s ({:.0} % of one core)",
                100.0 * c / self.session_time.as_secs_f64().max(1e-9)
            )?;
        }
        if let Some(b) = self.handshake_bound {
            let per_session_cpu = self.server_cpu.map(|c| c.sessions / sessions.max(1) as f64);
            write!(
                f,
                "{}",
                handshake_line(&b, rate(sessions, self.session_time), per_session_cpu)
            )?;
        }
        Ok(())
    }
}

/// How a run's sessions reach the server: `reuse` (one kept-alive connection per device),
/// `new-handshake` (a new connection and a full TLS handshake per session) or `resumption` (a
/// new connection per session resuming the device's previous TLS session).
pub fn mode_name(reuse: bool, resume: bool) -> &'static str {
    match (reuse, resume) {
        (true, _) => "reuse",
        (false, false) => "new-handshake",
        (false, true) => "resumption",
    }
}

/// The report's lines on the handshake-crypto bound: the sessions/s reached as a share of it,
/// and (with the server's CPU per session) the share of that CPU the handshake's crypto is.
pub fn handshake_line(
    b: &super::handshake::Bound,
    sessions_per_s: f64,
    server_cpu_per_session: Option<f64>,
) -> String {
    let mut out = format!(
        "{b}\nsessions/s = {:.1} % of the bound",
        100.0 * sessions_per_s / b.per_second().max(1e-9)
    );
    if let Some(cpu) = server_cpu_per_session {
        out.push_str(&format!(
            "; server CPU per session {:.0} µs, of which the handshake's crypto is {:.0} µs ({:.0} %)",
            cpu * 1e6,
            b.per_handshake().as_secs_f64() * 1e6,
            100.0 * b.per_handshake().as_secs_f64() / cpu.max(1e-9)
        ));
    }
    out.push('\n');
    out
}

/// A target: its public endpoint and admin token.
struct Target {
    url: String,
    public: Endpoint,
    token: String,
}

/// An enrolled simulated device.
struct Device {
    id: String,
    home: usize,
    client: Arc<rustls::ClientConfig>,
    /// Index into the management endpoints.
    mgmt: usize,
}

async fn admin(
    tx: &mut Sender,
    t: &Target,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, Bytes), Failure> {
    let auth = format!("Bearer {}", t.token);
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    request(tx, method, &t.public.host, path, &headers, body).await
}

fn text_of(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find("</")?;
    Some(xml[start..end].trim().to_string())
}

/// Creates the bulk account on `t` (409: a target sharing the store made it) and mints a
/// package secret.
async fn bulk_secret(
    t: &Target,
    roots: &Arc<rustls::RootCertStore>,
    upn: &str,
) -> Result<String, Failure> {
    let cfg = tls_client(roots.clone(), None, true).map_err(|e| Failure::new("tls", e))?;
    let mut tx = connect(&t.public, cfg).await?;
    let password = crate::clock::random_hex(16);
    let (st, body) = admin(
        &mut tx,
        t,
        "POST",
        "/api/v1/users",
        Some(serde_json::json!({"upn": upn, "password": password})),
    )
    .await?;
    if st != 201 && st != 409 {
        return Err(Failure::new(
            format!("admin-{st}"),
            format!(
                "{}: create {upn}: {}",
                t.url,
                String::from_utf8_lossy(&body)
            ),
        ));
    }
    let (st, body) = admin(
        &mut tx,
        t,
        "GET",
        &format!("/api/v1/bulk-enrollment/package?upn={upn}"),
        None,
    )
    .await?;
    if st != 200 {
        return Err(Failure::new(
            format!("admin-{st}"),
            format!(
                "{}: package for {upn}: {}",
                t.url,
                String::from_utf8_lossy(&body)
            ),
        ));
    }
    text_of(&String::from_utf8_lossy(&body), "Secret")
        .ok_or_else(|| Failure::new("package", "no Secret in the customizations"))
}

/// What enrollment gives a device: certificate, key (PKCS#8) and `ADDR`.
struct Identity {
    cert: Vec<u8>,
    key: Vec<u8>,
    addr: String,
}

/// The client certificate (`My` store) and the w7 `ADDR` of a provisioning document.
pub fn provisioning_parts(doc: &str) -> Option<(Vec<u8>, String)> {
    use base64::Engine as _;
    let my = doc.find("type=\"My\"")?;
    let enc = doc[my..].find("EncodedCertificate")? + my;
    let v = doc[enc..].find("value=\"")? + enc + 7;
    let end = doc[v..].find('"')? + v;
    let cert = base64::engine::general_purpose::STANDARD
        .decode(&doc[v..end])
        .ok()?;
    let a = doc.find("name=\"ADDR\" value=\"")? + 19;
    let addr = doc[a..a + doc[a..].find('"')?].to_string();
    Some((cert, addr))
}

/// Discovery → policy → enrollment of `info` through `t`, as Windows does it, with a new EC
/// P-256 key.
async fn enroll_one(
    t: &Target,
    cfg: Arc<rustls::ClientConfig>,
    info: &super::DeviceInfo,
) -> Result<Identity, Failure> {
    let soap = [("content-type", "application/soap+xml; charset=utf-8")];
    let host = &t.public.host;
    let mut tx = connect(&t.public, cfg).await?;
    let (st, body) = request(
        &mut tx,
        "POST",
        host,
        "/EnrollmentServer/Discovery.svc",
        &soap,
        super::discover_xml(&info.upn, "4.0", &["OnPremise"], &super::message_id()).into_bytes(),
    )
    .await?;
    let disc = match parse_discover_response(&body) {
        Ok(Reply::Ok(d)) if st == 200 => d,
        Ok(Reply::Fault(f)) => {
            return Err(Failure::new(
                "discovery-fault",
                format!("{}: {}", f.subcode, f.reason),
            ))
        }
        _ => {
            return Err(Failure::new(
                format!("discovery-{st}"),
                "no DiscoverResponse",
            ))
        }
    };
    let (st, _) = request(
        &mut tx,
        "POST",
        host,
        &path_of(&disc.policy_url),
        &soap,
        super::policy_xml(
            &info.upn,
            &info.password,
            &disc.policy_url,
            &super::message_id(),
        )
        .into_bytes(),
    )
    .await?;
    if st != 200 {
        return Err(Failure::new(format!("policy-{st}"), "GetPolicies refused"));
    }
    let (csr, key) = crate::ca::testing::device_csr(&info.device_id, KeyAlgorithm::EcdsaP256);
    let (st, body) = request(
        &mut tx,
        "POST",
        host,
        &path_of(&disc.enrollment_url),
        &soap,
        super::rst_xml(info, &csr, &disc.enrollment_url, &super::message_id()).into_bytes(),
    )
    .await?;
    let doc = match parse_rstr(&body) {
        Ok(Reply::Ok(d)) if st == 200 => d,
        Ok(Reply::Fault(f)) => {
            return Err(Failure::new(
                "enroll-fault",
                format!("{}: {}", f.subcode, f.reason),
            ))
        }
        _ => return Err(Failure::new(format!("enroll-{st}"), "no RSTRC")),
    };
    let doc = String::from_utf8_lossy(&doc);
    let (cert, addr) = provisioning_parts(&doc)
        .ok_or_else(|| Failure::new("provisioning", "no client certificate or ADDR"))?;
    Ok(Identity {
        cert,
        key: key.serialize_der(),
        addr,
    })
}

/// Runs `f(0)` … `f(n - 1)` as tasks, at most `limit` at once; their outputs in index order
/// (`Err` for a task that panicked).
async fn bounded<T, F, Fut>(n: usize, limit: usize, f: F) -> Vec<Result<T, Failure>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let f = Arc::new(f);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (sem, f) = (sem.clone(), f.clone());
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            f(i).await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.map_err(|e| Failure::new("panic", e)));
    }
    out
}

/// Simulated devices against running servers: see the module documentation.
pub async fn run_external(opts: &ExternalOptions) -> Result<Report, Failure> {
    if opts.targets.is_empty() {
        return Err(Failure::new("config", "no target"));
    }
    if opts.tokens.len() != 1 && opts.tokens.len() != opts.targets.len() {
        return Err(Failure::new(
            "config",
            format!(
                "{} tokens for {} targets: give one for all or one per target",
                opts.tokens.len(),
                opts.targets.len()
            ),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in &opts.roots {
        roots
            .add(c.clone())
            .map_err(|e| Failure::new("config", format!("CA certificate: {e}")))?;
    }
    let roots = Arc::new(roots);
    let mut targets = Vec::new();
    for (i, url) in opts.targets.iter().enumerate() {
        let url = url.trim_end_matches('/').to_string();
        let (host, port) = host_port(&url)?;
        let addr = resolve(&host, port).await?;
        targets.push(Target {
            url,
            public: Endpoint { addr, host },
            token: opts.tokens[if opts.tokens.len() == 1 { 0 } else { i }].clone(),
        });
    }
    let targets = Arc::new(targets);
    let n = targets.len();
    let mut report = Report {
        targets: targets
            .iter()
            .map(|t| TargetReport {
                url: t.url.clone(),
                ..Default::default()
            })
            .collect(),
        reuse: opts.reuse,
        resume: opts.resume && !opts.reuse,
        hop: opts.hop,
        concurrency: opts.concurrency,
        commands: opts.commands,
        ..Default::default()
    };
    let cpu0 = cpu_of(&opts.server_pids).filter(|_| !opts.server_pids.is_empty());

    // 1. One bulk account, a package secret per target.
    let run = crate::clock::random_hex(4).to_uppercase();
    let upn = format!("windows-bulkenroll-load-{run}@loadgen.example");
    let mut secrets = Vec::new();
    for t in targets.iter() {
        secrets.push(bulk_secret(t, &roots, &upn).await?);
    }
    let secrets = Arc::new(secrets);

    // 2. Enrollment, device i through target i % n.
    let t0 = Instant::now();
    let public_cfg = tls_client(roots.clone(), None, true).map_err(|e| Failure::new("tls", e))?;
    let results = {
        let (targets, secrets, upn, run) =
            (targets.clone(), secrets.clone(), upn.clone(), run.clone());
        bounded(opts.devices, opts.enroll_concurrency, move |i| {
            let (targets, secrets, cfg) = (targets.clone(), secrets.clone(), public_cfg.clone());
            let mut info = super::DeviceInfo::new(i as u32, &upn, &secrets[i % n]);
            info.device_id = format!("10AD{run}{i:020X}");
            info.hw_dev_id = format!("{:064X}", 0x10AD_0000_0000u64 + i as u64);
            info.device_name = format!("LOAD-{i:06}");
            async move {
                let r = enroll_one(&targets[i % n], cfg, &info).await;
                (info.device_id, r)
            }
        })
        .await
    };
    report.enroll_time = t0.elapsed();
    let cpu1 = cpu_of(&opts.server_pids);
    let mut mgmts: Vec<Mgmt> = Vec::new();
    let mut mgmt_of_target: Vec<Option<usize>> = vec![None; n];
    let mut devices = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let home = i % n;
        let (id, ident) = match r {
            Ok((id, Ok(x))) => (id, x),
            Ok((_, Err(e))) | Err(e) => {
                report.targets[home].enroll_errors.add(&e);
                continue;
            }
        };
        let mgmt = match mgmts.iter().position(|m| m.loc_uri == ident.addr) {
            Some(m) => m,
            None => {
                let (host, port) = host_port(&ident.addr)?;
                let addr = if host.eq_ignore_ascii_case(&targets[home].public.host) {
                    SocketAddr::new(targets[home].public.addr.ip(), port)
                } else {
                    resolve(&host, port).await?
                };
                mgmts.push(Mgmt::new(Endpoint { addr, host }, &ident.addr));
                mgmts.len() - 1
            }
        };
        mgmt_of_target[home].get_or_insert(mgmt);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ident.key));
        let client = tls_client(
            roots.clone(),
            Some((CertificateDer::from(ident.cert), key)),
            opts.resume,
        )
        .map_err(|e| Failure::new("tls", e))?;
        report.targets[home].enrolled += 1;
        devices.push(Device {
            id,
            home,
            client,
            mgmt,
        });
    }
    if opts.verbose {
        println!(
            "enrolled {} devices through {n} target(s) in {:.2?} ({} errors)",
            devices.len(),
            report.enroll_time,
            report.enroll_errors().total()
        );
    }
    if devices.is_empty() {
        return Err(Failure::new(
            "enroll",
            format!("no device enrolled: {}", report.enroll_errors()),
        ));
    }
    // Hop routes: the management endpoint of every target, starting from the device's own.
    let hop_mgmts: Vec<usize> = if opts.hop {
        mgmt_of_target
            .iter()
            .enumerate()
            .map(|(t, m)| {
                m.ok_or_else(|| {
                    Failure::new(
                        "config",
                        format!("--hop: no device enrolled through target {t}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?
    } else {
        vec![]
    };

    // 3. Passes.
    let devices = Arc::new(devices);
    let mgmts = Arc::new(mgmts);
    let hop_mgmts = Arc::new(hop_mgmts);
    let slots = if opts.hop { n } else { 1 };
    let conns: Arc<Vec<tokio::sync::Mutex<Vec<Option<Sender>>>>> = Arc::new(
        (0..devices.len())
            .map(|_| tokio::sync::Mutex::new((0..slots).map(|_| None).collect()))
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(opts.seconds);
    let data = "x".repeat(opts.size);
    let per_target: Arc<Vec<Mutex<TargetReport>>> = Arc::new(
        (0..n)
            .map(|_| Mutex::new(TargetReport::default()))
            .collect(),
    );
    let (mut cpu_enqueue, mut cpu_sessions, mut own_sessions) = (0.0, 0.0, 0.0);
    let admin_cfg = tls_client(roots.clone(), None, true).map_err(|e| Failure::new("tls", e))?;
    let passes = opts.sessions.div_ceil(devices.len());
    for pass in 0..passes {
        if Instant::now() > deadline {
            break;
        }
        // Queue the pass's commands through each device's target.
        let t = Instant::now();
        let c0 = cpu_of(&opts.server_pids);
        let jobs = devices.len() * opts.commands;
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..opts.enqueue_concurrency.max(1).min(jobs.max(1)) {
            let (devices, targets, next, per_target, cfg, data) = (
                devices.clone(),
                targets.clone(),
                next.clone(),
                per_target.clone(),
                admin_cfg.clone(),
                data.clone(),
            );
            let commands = opts.commands;
            workers.push(tokio::spawn(async move {
                let mut conns: Vec<Option<Sender>> = (0..n).map(|_| None).collect();
                loop {
                    let j = next.fetch_add(1, Ordering::SeqCst);
                    if j >= jobs {
                        return;
                    }
                    let (d, k) = (&devices[j / commands], j % commands);
                    let t = &targets[d.home];
                    let body = if k % 2 == 0 {
                        serde_json::json!({"verb": "Replace", "target": format!("./Vendor/MSFT/Load/P{pass}/N{k}"), "format": "chr", "data": data})
                    } else {
                        serde_json::json!({"verb": "Get", "target": format!("./Vendor/MSFT/Load/P{pass}/N{k}")})
                    };
                    let r = async {
                        let mut tx = match conns[d.home].take() {
                            Some(tx) if !tx.is_closed() => tx,
                            _ => connect(&t.public, cfg.clone()).await?,
                        };
                        let path = format!("/api/v1/devices/{}/commands", d.id);
                        let (st, b) = admin(&mut tx, t, "POST", &path, Some(body)).await?;
                        conns[d.home] = Some(tx);
                        if st != 201 {
                            return Err(Failure::new(
                                format!("admin-{st}"),
                                format!("enqueue for {}: {}", d.id, String::from_utf8_lossy(&b)),
                            ));
                        }
                        Ok(())
                    }
                    .await;
                    let mut rep = per_target[d.home].lock().unwrap_or_else(|p| p.into_inner());
                    match r {
                        Ok(()) => rep.enqueued += 1,
                        Err(e) => rep.enqueue_errors.add(&e),
                    }
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
        report.enqueue_time += t.elapsed();
        let c1 = cpu_of(&opts.server_pids);
        if let (Some(a), Some(b)) = (c0, c1) {
            cpu_enqueue += b - a;
        }

        // The sessions of this pass.
        let in_pass = (opts.sessions - pass * devices.len()).min(devices.len());
        let started = Instant::now();
        let made0 = connections_made();
        let own0 = process_cpu_seconds("self");
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..opts.concurrency.max(1) {
            let (devices, mgmts, hop_mgmts, next, conns, per_target) = (
                devices.clone(),
                mgmts.clone(),
                hop_mgmts.clone(),
                next.clone(),
                conns.clone(),
                per_target.clone(),
            );
            let reuse = opts.reuse;
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= in_pass || Instant::now() > deadline {
                        return;
                    }
                    let d = &devices[i];
                    let route: Vec<&Mgmt> = if hop_mgmts.is_empty() {
                        vec![&mgmts[d.mgmt]]
                    } else {
                        (0..n)
                            .map(|k| &mgmts[hop_mgmts[(d.home + k) % n]])
                            .collect()
                    };
                    let mut slots = if reuse {
                        std::mem::take(&mut *conns[i].lock().await)
                    } else {
                        Vec::new()
                    };
                    slots.resize_with(route.len(), || None);
                    let t = Instant::now();
                    let r = session(&d.id, &d.client, &route, &mut slots, (pass + 1) as u32).await;
                    let el = t.elapsed();
                    {
                        let mut rep = per_target[d.home].lock().unwrap_or_else(|p| p.into_inner());
                        match r {
                            Ok(got) => {
                                rep.latencies.push(el);
                                rep.received += got;
                            }
                            Err(e) => rep.session_errors.add(&e),
                        }
                    }
                    if reuse {
                        *conns[i].lock().await = slots;
                    }
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
        report.session_time += started.elapsed();
        let made1 = connections_made();
        report.connections.0 += made1.0 - made0.0;
        report.connections.1 += made1.1 - made0.1;
        let c2 = cpu_of(&opts.server_pids);
        if let (Some(a), Some(b)) = (c1, c2) {
            cpu_sessions += b - a;
        }
        if let (Some(a), Some(b)) = (own0, process_cpu_seconds("self")) {
            own_sessions += b - a;
        }
    }
    for (t, p) in report.targets.iter_mut().zip(per_target.iter()) {
        let p = std::mem::take(&mut *p.lock().unwrap_or_else(|p| p.into_inner()));
        t.enqueued = p.enqueued;
        t.enqueue_errors = p.enqueue_errors;
        t.latencies = p.latencies;
        t.latencies.sort();
        t.received = p.received;
        t.session_errors = p.session_errors;
    }
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        report.server_cpu = Some(ServerCpu {
            enroll: b - a,
            enqueue: cpu_enqueue,
            sessions: cpu_sessions,
        });
    }
    report.own_session_cpu = Some(own_sessions);
    // The bound is a full handshake's: it says nothing of resumed ones.
    if !opts.reuse && !opts.resume {
        report.handshake_bound = super::handshake::measure(Duration::from_millis(300)).ok();
    }
    Ok(report)
}

/// Reads every certificate of PEM files (for `--ca`).
pub fn read_pem_certs(
    paths: &[std::path::PathBuf],
) -> Result<Vec<CertificateDer<'static>>, Failure> {
    use rustls::pki_types::pem::PemObject;
    let mut out = Vec::new();
    for p in paths {
        for c in CertificateDer::pem_file_iter(p)
            .map_err(|e| Failure::new("config", format!("{}: {e}", p.display())))?
        {
            out.push(c.map_err(|e| Failure::new("config", format!("{}: {e}", p.display())))?);
        }
    }
    if out.is_empty() {
        return Err(Failure::new("config", "no certificate in the --ca files"));
    }
    Ok(out)
}
