//! The admin command line: `winmdm user|device|command|audit|tenant-lockdown|token|invite|bulk …` talk to a running
//! server's `/api/v1` over HTTPS (they never open the data directory: the embedded store is single-process).
//!
//! Exit codes: 0 success; 1 the server refused (its `{"error"}` text is printed) or a local
//! problem (no token, unreadable file); 2 connection/TLS failure or a usage error.

pub mod access;
pub mod apps;
pub mod autopilot;
pub mod backup;
pub mod http;
pub mod migrate;
pub mod tenant;
pub mod trace;
pub mod webhook;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};

use self::http::{Client, TransportError};

/// Default data directory the CLI looks in for the token and the CA.
pub const DEFAULT_DATA_DIR: &str = "./winmdm-data";

/// Options shared by every admin subcommand (given before the subcommand).
#[derive(Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// Admin API server URL.
    #[arg(
        long,
        env = "WINMDM_SERVER",
        default_value = "https://localhost:8443",
        value_name = "https://host:port"
    )]
    pub server: String,
    /// Admin bearer token (default: the content of --token-file).
    #[arg(long, env = "WINMDM_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the admin token (default: ./winmdm-data/admin-token if it exists).
    #[arg(long, env = "WINMDM_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM file with the CA certificate(s) to trust for the server's TLS certificate (default:
    /// the last certificate of ./winmdm-data/tls/server.pem, else ./winmdm-data/ca/ca.pem).
    /// System roots are never used.
    #[arg(long, env = "WINMDM_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// Print the server's JSON as is instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// The admin subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Enrollment users.
    User {
        /// What to do.
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Enrolled devices.
    Device {
        /// What to do.
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    /// Per-device OMA-DM command queues.
    Command {
        /// What to do.
        #[command(subcommand)]
        cmd: CommandCmd,
    },
    /// The audit log of admin changes (oldest first).
    Audit {
        /// Page size (1-1000).
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this cursor (the `next` of a previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow `next` cursors to the end.
        #[arg(long)]
        all: bool,
    },
    /// Named admin API tokens (create, list, revoke).
    Token {
        /// What to do.
        #[command(subcommand)]
        cmd: access::TokenCmd,
    },
    /// Invite a user to enroll: prints the landing page, deep link and message (--send e-mails it).
    Invite {
        /// The user's UPN.
        upn: String,
        /// E-mail the invitation to the UPN (needs --smtp-url on the server).
        #[arg(long)]
        send: bool,
        /// Validity in hours (default 72, at most 720).
        #[arg(long)]
        expires_in_hours: Option<u32>,
    },
    /// Invitations (list, revoke).
    Invitation {
        /// What to do.
        #[command(subcommand)]
        cmd: access::InvitationCmd,
    },
    /// Bulk-enrollment provisioning packages (download, revoke).
    Bulk {
        /// What to do.
        #[command(subcommand)]
        cmd: access::BulkCmd,
    },
    /// Windows Autopilot profiles, registered devices and settings.
    Autopilot {
        /// What to do.
        #[command(subcommand)]
        cmd: autopilot::AutopilotCmd,
    },
    /// Apps: upload/register MSI and MSIX packages, assign them to groups, install state.
    Apps {
        /// What to do.
        #[command(subcommand)]
        cmd: apps::AppsCmd,
    },
    /// The Enrollment Status Page: configurations, assignments, a device's progress.
    Esp {
        /// What to do.
        #[command(subcommand)]
        cmd: apps::EspCmd,
    },
    /// The Microsoft tenant (Graph): connect, status, sync, Entra groups, profile assignments.
    Tenant {
        /// What to do.
        #[command(subcommand)]
        cmd: tenant::TenantCmd,
    },
    /// The results webhook: its state and dead letters (list, show, redeliver, delete).
    Webhook {
        /// What to do.
        #[command(subcommand)]
        cmd: webhook::WebhookCmd,
    },
    /// Device traces: record a device's exchanges, read, export, delete them.
    Trace {
        /// What to do.
        #[command(subcommand)]
        cmd: trace::TraceCmd,
    },
    /// Queue TenantLockdown RequireNetworkInOOBE for a device.
    TenantLockdown {
        /// The DeviceID.
        device_id: String,
        /// `on` or `off`.
        state: OnOff,
    },
}

/// `on` or `off`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// `winmdm user …`.
#[derive(Subcommand, Debug, Clone)]
pub enum UserCmd {
    /// Create a user.
    Add {
        /// The user's UPN (e.g. alice@example.com).
        upn: String,
        /// Read the password from the first line of standard input.
        #[arg(
            long,
            conflicts_with = "password",
            required_unless_present = "password"
        )]
        password_stdin: bool,
        /// The password (visible in the process list: prefer --password-stdin).
        #[arg(long)]
        password: Option<String>,
    },
    /// List users (every page).
    List,
    /// Show one user and the devices they enrolled.
    Show {
        /// The user's UPN.
        upn: String,
    },
    /// Set a new password.
    SetPassword {
        /// The user's UPN.
        upn: String,
        /// Read the password from the first line of standard input.
        #[arg(
            long,
            conflicts_with = "password",
            required_unless_present = "password"
        )]
        password_stdin: bool,
        /// The password (visible in the process list: prefer --password-stdin).
        #[arg(long)]
        password: Option<String>,
    },
    /// Refuse the user's enrollments.
    Disable {
        /// The user's UPN.
        upn: String,
    },
    /// Allow the user's enrollments again.
    Enable {
        /// The user's UPN.
        upn: String,
    },
    /// Delete a user.
    #[command(alias = "delete")]
    Rm {
        /// The user's UPN.
        upn: String,
    },
}

/// `winmdm device …`.
#[derive(Subcommand, Debug, Clone)]
pub enum DeviceCmd {
    /// List devices (one page unless --all).
    List {
        /// Page size (1-1000).
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this cursor (the `next` of a previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow `next` cursors to the end.
        #[arg(long)]
        all: bool,
    },
    /// Show one device record.
    Show {
        /// The DeviceID.
        device_id: String,
    },
    /// Delete the device record: cancels its queue, revokes its certificate.
    #[command(alias = "delete")]
    Rm {
        /// The DeviceID.
        device_id: String,
    },
    /// Queue a remote wipe (RemoteWipe doWipe, or doWipeProtected with --protected).
    Wipe {
        /// The DeviceID.
        device_id: String,
        /// doWipeProtected: the wipe survives power loss (and may leave the device unbootable).
        #[arg(long)]
        protected: bool,
    },
    /// Queue a reboot (Reboot RebootNow).
    Reboot {
        /// The DeviceID.
        device_id: String,
    },
    /// Queue an unenrollment (DMClient Unenroll).
    Retire {
        /// The DeviceID.
        device_id: String,
    },
    /// Queue a harmless Get so the device answers at its next session.
    Sync {
        /// The DeviceID.
        device_id: String,
    },
    /// Assign a bulk-enrolled device to a real user.
    AssignUser {
        /// The DeviceID.
        device_id: String,
        /// The user's UPN.
        upn: String,
    },
    /// Hand a device to another user on purpose (audited): only the new owner may enroll its
    /// DeviceID again.
    SetOwner {
        /// The DeviceID.
        device_id: String,
        /// The new owner's UPN.
        upn: String,
    },
    /// Show the state of an action.
    Action {
        /// The DeviceID.
        device_id: String,
        /// The action id printed when it was queued.
        action_id: String,
    },
}

/// `winmdm command …`.
#[derive(Subcommand, Debug, Clone)]
pub enum CommandCmd {
    /// Queue a command for a device.
    Send {
        /// The DeviceID.
        device_id: String,
        /// `Get`, `Add`, `Replace`, `Delete` or `Exec`.
        #[arg(long, required_unless_present = "syncml")]
        verb: Option<String>,
        /// Target LocURI (e.g. ./Vendor/MSFT/…).
        #[arg(long)]
        target: Option<String>,
        /// Meta/Format (chr, int, bool, b64, xml, node…).
        #[arg(long)]
        format: Option<String>,
        /// Meta/Type (MIME type).
        #[arg(long = "type")]
        ty: Option<String>,
        /// Data.
        #[arg(long)]
        data: Option<String>,
        /// Client-chosen command id (idempotency key).
        #[arg(long)]
        id: Option<String>,
        /// A SyncML command fragment from a file (`-`: standard input) instead of the fields.
        #[arg(long, value_name = "FILE|-", conflicts_with_all = ["verb", "target", "format", "ty", "data"])]
        syncml: Option<String>,
    },
    /// List a device's commands and their results.
    List {
        /// The DeviceID.
        device_id: String,
    },
    /// Cancel one unanswered command, or all of them when no command id is given.
    Cancel {
        /// The DeviceID.
        device_id: String,
        /// The command id (omit to clear the queue).
        command_id: Option<String>,
    },
}

/// `winmdm` as the admin client parses it (`serve` lives in the binary).
#[derive(Parser, Debug)]
#[command(name = "winmdm", about = "winmdm admin client")]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    cmd: Command,
}

/// Why a command failed; decides the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered with an error status (exit 1).
    Api { status: u16, message: String },
    /// A local problem: no token, unreadable file… (exit 1).
    Local(String),
    /// No HTTP answer (exit 2).
    Transport(String),
}

impl Failure {
    fn code(&self) -> i32 {
        match self {
            Failure::Api { .. } | Failure::Local(_) => 1,
            Failure::Transport(_) => 2,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Api { status, message } => write!(f, "{message} (HTTP {status})"),
            Failure::Local(m) | Failure::Transport(m) => f.write_str(m),
        }
    }
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Failure {
        Failure::Transport(e.to_string())
    }
}

/// Parses `args` (including the program name) and runs the admin command; results and errors
/// are written to `out`. Returns the process exit code.
pub fn run<I, T>(args: I, out: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => execute_to(&cli.client, cli.cmd, out, None),
        Err(e) => {
            let _ = write!(out, "{}", e.render());
            e.exit_code()
        }
    }
}

/// Runs one parsed admin command: results to `out`, errors to `err`. Returns the exit code.
pub fn execute(client: &ClientArgs, cmd: Command, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    execute_to(client, cmd, out, Some(err))
}

fn execute_to(
    client: &ClientArgs,
    cmd: Command,
    out: &mut dyn Write,
    err: Option<&mut dyn Write>,
) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let w: &mut dyn Write = match err {
                Some(e) => e,
                None => out,
            };
            let _ = writeln!(w, "winmdm: cannot start the runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(run_command(client, cmd, out));
    match result {
        Ok(()) => 0,
        Err(f) => {
            let w: &mut dyn Write = match err {
                Some(e) => e,
                None => out,
            };
            let _ = writeln!(w, "winmdm: error: {f}");
            f.code()
        }
    }
}

/// The admin API client the options describe (server, token, CA to trust).
pub(crate) fn client(a: &ClientArgs) -> Result<Client, Failure> {
    Ok(Client::new(
        &a.server,
        resolve_token(a)?,
        resolve_roots(a)?,
    )?)
}

/// The token: `--token`/env, else `--token-file`, else `./winmdm-data/admin-token`.
fn resolve_token(a: &ClientArgs) -> Result<String, Failure> {
    if let Some(t) = a.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(t.to_string());
    }
    let default = Path::new(DEFAULT_DATA_DIR).join("admin-token");
    let path = match &a.token_file {
        Some(p) => p.clone(),
        None if default.is_file() => default,
        None => {
            return Err(Failure::Local(
                "no admin token: pass --token (WINMDM_ADMIN_TOKEN) or --token-file \
                 (WINMDM_TOKEN_FILE), or run where ./winmdm-data/admin-token exists"
                    .into(),
            ))
        }
    };
    let t = std::fs::read_to_string(&path)
        .map_err(|e| Failure::Local(format!("reading token file {}: {e}", path.display())))?;
    let t = t.trim();
    if t.is_empty() {
        return Err(Failure::Local(format!(
            "token file {} is empty",
            path.display()
        )));
    }
    Ok(t.to_string())
}

/// Every CERTIFICATE block of a PEM file, in order.
fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::Local(format!("reading {}: {e}", path.display())))?;
    let mut certs = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        let pem =
            pem.map_err(|e| Failure::Local(format!("parsing PEM {}: {e}", path.display())))?;
        if pem.label == "CERTIFICATE" {
            certs.push(CertificateDer::from(pem.contents));
        }
    }
    if certs.is_empty() {
        return Err(Failure::Local(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The CA(s) to trust: `--ca-cert`, else the top of the server's TLS chain, else the CA.
fn resolve_roots(a: &ClientArgs) -> Result<Vec<CertificateDer<'static>>, Failure> {
    if let Some(p) = &a.ca_cert {
        return pem_certs(p);
    }
    let data = Path::new(DEFAULT_DATA_DIR);
    let chain = data.join("tls").join("server.pem");
    if chain.is_file() {
        let mut certs = pem_certs(&chain)?;
        return Ok(certs.pop().into_iter().collect());
    }
    let ca = data.join("ca").join("ca.pem");
    if ca.is_file() {
        return pem_certs(&ca);
    }
    Err(Failure::Local(
        "no CA certificate to trust: pass --ca-cert (WINMDM_CA_CERT); system roots are not used"
            .into(),
    ))
}

/// Percent-encodes a path segment (keeps unreserved characters and `@`).
fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// One API call: the parsed JSON body (`Null` when empty) of a 2xx answer, or the failure.
async fn call(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(Vec<u8>, Value), Failure> {
    let r = c.request(method, path, body.as_ref()).await?;
    let v: Value = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
    };
    if (200..300).contains(&r.status) {
        Ok((r.body, v))
    } else {
        let message = v
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string());
        Err(Failure::Api {
            status: r.status,
            message,
        })
    }
}

fn w(out: &mut dyn Write, s: &str) -> Result<(), Failure> {
    out.write_all(s.as_bytes())
        .map_err(|e| Failure::Local(format!("writing output: {e}")))
}

fn raw(out: &mut dyn Write, body: &[u8]) -> Result<(), Failure> {
    if body.is_empty() {
        return Ok(());
    }
    w(out, &String::from_utf8_lossy(body))?;
    w(out, "\n")
}

fn read_input(spec: &str, what: &str) -> Result<String, Failure> {
    let mut s = String::new();
    if spec == "-" {
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::Local(format!("reading {what} from standard input: {e}")))?;
    } else {
        s = std::fs::read_to_string(spec)
            .map_err(|e| Failure::Local(format!("reading {what} {spec}: {e}")))?;
    }
    Ok(s)
}

async fn run_command(a: &ClientArgs, cmd: Command, out: &mut dyn Write) -> Result<(), Failure> {
    if let Command::Trace {
        cmd: cmd @ trace::TraceCmd::Replay { requeue, .. },
    } = cmd
    {
        let token = if requeue {
            Some(resolve_token(a)?)
        } else {
            None
        };
        return trace::run_replay(&a.server, resolve_roots(a)?, token, cmd, out).await;
    }
    let c = client(a)?;
    match cmd {
        Command::User { cmd } => user(&c, a.json, cmd, out).await,
        Command::Device { cmd } => device(&c, a.json, cmd, out).await,
        Command::Command { cmd } => command(&c, a.json, cmd, out).await,
        Command::Audit { limit, cursor, all } => audit(&c, a.json, limit, cursor, all, out).await,
        Command::Token { cmd } => access::token(&c, a.json, cmd, out).await,
        Command::Invite {
            upn,
            send,
            expires_in_hours,
        } => access::invite(&c, a.json, upn, send, expires_in_hours, out).await,
        Command::Invitation { cmd } => access::invitation(&c, a.json, cmd, out).await,
        Command::Bulk { cmd } => access::bulk(&c, a.json, cmd, out).await,
        Command::Autopilot { cmd } => autopilot::run(&c, a.json, cmd, out).await,
        Command::Webhook { cmd } => webhook::run(&c, a.json, cmd, out).await,
        Command::Apps { cmd } => apps::run(&c, a.json, cmd, out).await,
        Command::Esp { cmd } => apps::esp(&c, a.json, cmd, out).await,
        Command::Trace { cmd } => trace::run(&c, a.json, cmd, out).await,
        Command::Tenant { cmd } => tenant::run(&c, a.json, cmd, out).await,
        Command::TenantLockdown { device_id, state } => {
            let on = state == OnOff::On;
            let (body, v) = call(
                &c,
                "PUT",
                &format!("/api/v1/devices/{}/tenant-lockdown", enc(&device_id)),
                Some(json!({ "require_network_in_oobe": on })),
            )
            .await?;
            if a.json {
                return raw(out, &body);
            }
            w(
                out,
                &format!(
                    "queued TenantLockdown RequireNetworkInOOBE={on} for {device_id}: command {}\n",
                    str_of(&v["command_id"])
                ),
            )
        }
    }
}

async fn user(
    c: &Client,
    json_out: bool,
    cmd: UserCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let disabled = matches!(cmd, UserCmd::Disable { .. });
    match cmd {
        UserCmd::Add {
            upn,
            password_stdin,
            password,
        } => {
            let password = match (password, password_stdin) {
                (Some(p), _) => p,
                (None, _) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).map_err(|e| {
                        Failure::Local(format!("reading the password from standard input: {e}"))
                    })?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let (body, v) = call(
                c,
                "POST",
                "/api/v1/users",
                Some(json!({ "upn": upn, "password": password })),
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("created user {}\n", str_of(&v["upn"])))
        }
        UserCmd::List => {
            let (users, body, pages) = pages(c, "/api/v1/users", "users", None, None, true).await?;
            if json_out {
                return pages_json(out, "users", &users, &body, pages);
            }
            let rows = users
                .iter()
                .map(|u| {
                    vec![
                        str_of(&u["upn"]),
                        time_of(&u["created_at"]),
                        str_of(&u["disabled"]),
                    ]
                })
                .collect();
            w(out, &table(&["UPN", "CREATED", "DISABLED"], rows))
        }
        UserCmd::Show { upn } => {
            let (body, v) = call(c, "GET", &format!("/api/v1/users/{}", enc(&upn)), None).await?;
            if json_out {
                return raw(out, &body);
            }
            let devices: Vec<String> = items(&v["devices"]).map(str_of).collect();
            let rows = vec![
                vec!["upn".into(), str_of(&v["upn"])],
                vec!["created_at".into(), time_of(&v["created_at"])],
                vec!["disabled".into(), str_of(&v["disabled"])],
                vec![
                    "devices".into(),
                    if devices.is_empty() {
                        "-".into()
                    } else {
                        devices.join(" ")
                    },
                ],
            ];
            w(out, &table(&["FIELD", "VALUE"], rows))
        }
        UserCmd::SetPassword {
            upn,
            password_stdin: _,
            password,
        } => {
            let password = match password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).map_err(|e| {
                        Failure::Local(format!("reading the password from standard input: {e}"))
                    })?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let (body, v) = call(
                c,
                "PATCH",
                &format!("/api/v1/users/{}", enc(&upn)),
                Some(json!({ "password": password })),
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(
                out,
                &format!("password changed for {}\n", str_of(&v["upn"])),
            )
        }
        UserCmd::Disable { upn } | UserCmd::Enable { upn } => {
            let (body, v) = call(
                c,
                "PATCH",
                &format!("/api/v1/users/{}", enc(&upn)),
                Some(json!({ "disabled": disabled })),
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            let what = if disabled { "disabled" } else { "enabled" };
            w(out, &format!("{what} user {}\n", str_of(&v["upn"])))
        }
        UserCmd::Rm { upn } => {
            let (body, _) =
                call(c, "DELETE", &format!("/api/v1/users/{}", enc(&upn)), None).await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("deleted user {upn}\n"))
        }
    }
}

/// The `--json` output of a listing read with [`pages`]: the server's answer as it is when it
/// came in one page, else every page's items under `key` with `"next": null`.
fn pages_json(
    out: &mut dyn Write,
    key: &str,
    found: &[Value],
    body: &[u8],
    pages: usize,
) -> Result<(), Failure> {
    if pages > 1 {
        let mut merged = serde_json::Map::new();
        merged.insert(key.to_string(), Value::Array(found.to_vec()));
        merged.insert("next".to_string(), Value::Null);
        return w(out, &format!("{}\n", Value::Object(merged)));
    }
    raw(out, body)
}

/// Fetches a paginated list (`key` holds the items): one page, or every page when `all`.
/// Returns the items, the last raw body and how many pages were read.
async fn pages(
    c: &Client,
    base: &str,
    key: &str,
    limit: Option<usize>,
    cursor: Option<String>,
    all: bool,
) -> Result<(Vec<Value>, Vec<u8>, usize), Failure> {
    let mut found: Vec<Value> = Vec::new();
    let mut cursor = cursor;
    let mut n = 0;
    loop {
        let mut q = Vec::new();
        if let Some(l) = limit {
            q.push(format!("limit={l}"));
        }
        if let Some(cur) = &cursor {
            q.push(format!("cursor={}", enc(cur)));
        }
        let path = if q.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", q.join("&"))
        };
        let (body, v) = call(c, "GET", &path, None).await?;
        n += 1;
        found.extend(items(&v[key]).cloned());
        match v["next"].as_str() {
            Some(next) if all => cursor = Some(next.to_string()),
            _ => return Ok((found, body, n)),
        }
    }
}

async fn audit(
    c: &Client,
    json_out: bool,
    limit: Option<usize>,
    cursor: Option<String>,
    all: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (entries, body, n) = pages(c, "/api/v1/audit", "entries", limit, cursor, all).await?;
    if json_out {
        return pages_json(out, "entries", &entries, &body, n);
    }
    let next = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["next"].as_str().map(str::to_string));
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                str_of(&e["id"]),
                time_of(&e["at"]),
                str_of(&e["actor"]),
                str_of(&e["action"]),
                str_of(&e["target"]),
                str_of(&e["detail"]),
            ]
        })
        .collect();
    w(
        out,
        &table(&["ID", "AT", "ACTOR", "ACTION", "TARGET", "DETAIL"], rows),
    )?;
    if let (Some(n), false) = (next, all) {
        w(out, &format!("more entries: --cursor {n} (or --all)\n"))?;
    }
    Ok(())
}

/// Queues a device action and prints its id.
async fn device_action(
    c: &Client,
    json_out: bool,
    device_id: &str,
    action: &str,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (body, v) = call(
        c,
        "POST",
        &format!("/api/v1/devices/{}/actions", enc(device_id)),
        Some(json!({ "action": action })),
    )
    .await?;
    if json_out {
        return raw(out, &body);
    }
    let id = str_of(&v["action_id"]);
    if v["existing"] == true {
        w(
            out,
            &format!("{action} already pending for {device_id}: action {id}\n"),
        )
    } else {
        w(
            out,
            &format!("queued {action} for {device_id}: action {id}\n"),
        )
    }
}

async fn device(
    c: &Client,
    json_out: bool,
    cmd: DeviceCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        DeviceCmd::List { limit, cursor, all } => {
            let mut devices: Vec<Value> = Vec::new();
            let mut cursor = cursor;
            let mut last_body;
            let next = loop {
                let mut q = Vec::new();
                if let Some(l) = limit {
                    q.push(format!("limit={l}"));
                }
                if let Some(cur) = &cursor {
                    q.push(format!("cursor={}", enc(cur)));
                }
                let path = if q.is_empty() {
                    "/api/v1/devices".to_string()
                } else {
                    format!("/api/v1/devices?{}", q.join("&"))
                };
                let (body, v) = call(c, "GET", &path, None).await?;
                last_body = body;
                devices.extend(items(&v["devices"]).cloned());
                let next = v["next"].as_str().map(str::to_string);
                match next {
                    Some(n) if all => cursor = Some(n),
                    n => break n,
                }
            };
            if json_out {
                if all {
                    let merged = json!({ "devices": devices, "next": Value::Null });
                    return w(out, &format!("{merged}\n"));
                }
                return raw(out, &last_body);
            }
            let rows = devices
                .iter()
                .map(|d| {
                    vec![
                        str_of(&d["device_id"]),
                        str_of(&d["device_name"]),
                        str_of(&d["upn"]),
                        str_of(&d["os_version"]),
                        str_of(&d["state"]),
                        str_of(&d["login_status"]),
                        time_of(&d["last_seen"]),
                    ]
                })
                .collect();
            w(
                out,
                &table(
                    &[
                        "DEVICE_ID",
                        "NAME",
                        "UPN",
                        "OS",
                        "STATE",
                        "LOGIN",
                        "LAST_SEEN",
                    ],
                    rows,
                ),
            )?;
            if let Some(n) = next {
                w(
                    out,
                    &format!("more devices: --cursor {n} (or --all to list every page)\n"),
                )?;
            }
            Ok(())
        }
        DeviceCmd::Show { device_id } => {
            let (body, v) = call(
                c,
                "GET",
                &format!("/api/v1/devices/{}", enc(&device_id)),
                None,
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            let mut rows = Vec::new();
            if let Value::Object(m) = &v {
                for (k, val) in m {
                    match val {
                        Value::Object(inner) if !inner.is_empty() => {
                            for (ik, iv) in inner {
                                rows.push(vec![format!("{k} {ik}"), str_of(iv)]);
                            }
                        }
                        _ if k.ends_with("_at") || k == "last_seen" => {
                            rows.push(vec![k.clone(), time_of(val)])
                        }
                        _ => rows.push(vec![k.clone(), str_of(val)]),
                    }
                }
            }
            w(out, &table(&["FIELD", "VALUE"], rows))
        }
        DeviceCmd::Rm { device_id } => {
            let (body, _) = call(
                c,
                "DELETE",
                &format!("/api/v1/devices/{}", enc(&device_id)),
                None,
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("deleted device {device_id}\n"))
        }
        DeviceCmd::Wipe {
            device_id,
            protected,
        } => {
            let action = if protected { "wipe-protected" } else { "wipe" };
            device_action(c, json_out, &device_id, action, out).await
        }
        DeviceCmd::Reboot { device_id } => {
            device_action(c, json_out, &device_id, "reboot", out).await
        }
        DeviceCmd::Retire { device_id } => {
            device_action(c, json_out, &device_id, "retire", out).await
        }
        DeviceCmd::Sync { device_id } => device_action(c, json_out, &device_id, "sync", out).await,
        DeviceCmd::AssignUser { device_id, upn } => {
            let (body, _) = call(
                c,
                "POST",
                &format!("/api/v1/devices/{}/assign-user", enc(&device_id)),
                Some(serde_json::json!({ "upn": upn })),
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("device {device_id} assigned to {upn}\n"))
        }
        DeviceCmd::SetOwner { device_id, upn } => {
            let (body, _) = call(
                c,
                "PUT",
                &format!("/api/v1/devices/{}/owner", enc(&device_id)),
                Some(serde_json::json!({ "upn": upn })),
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("device {device_id} now belongs to {upn}\n"))
        }
        DeviceCmd::Action {
            device_id,
            action_id,
        } => {
            let (body, v) = call(
                c,
                "GET",
                &format!(
                    "/api/v1/devices/{}/actions/{}",
                    enc(&device_id),
                    enc(&action_id)
                ),
                None,
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            let rows = vec![vec![
                str_of(&v["action_id"]),
                str_of(&v["action"]),
                str_of(&v["state"]),
                str_of(&v["status"]),
                time_of(&v["created_at"]),
                time_of(&v["completed_at"]),
            ]];
            w(
                out,
                &table(
                    &[
                        "ACTION_ID",
                        "ACTION",
                        "STATE",
                        "STATUS",
                        "CREATED",
                        "COMPLETED",
                    ],
                    rows,
                ),
            )
        }
    }
}

async fn command(
    c: &Client,
    json_out: bool,
    cmd: CommandCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        CommandCmd::Send {
            device_id,
            verb,
            target,
            format,
            ty,
            data,
            id,
            syncml,
        } => {
            let mut m = serde_json::Map::new();
            if let Some(spec) = syncml {
                m.insert("syncml".into(), read_input(&spec, "SyncML")?.into());
            }
            for (k, v) in [
                ("verb", verb),
                ("target", target),
                ("format", format),
                ("type", ty),
                ("data", data),
                ("command_id", id),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v.into());
                }
            }
            let (body, v) = call(
                c,
                "POST",
                &format!("/api/v1/devices/{}/commands", enc(&device_id)),
                Some(Value::Object(m)),
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            let cid = str_of(&v["command_id"]);
            if v["existing"].as_bool() == Some(true) {
                w(out, &format!("command {cid} was already queued\n"))
            } else {
                w(out, &format!("queued command {cid}\n"))
            }
        }
        CommandCmd::List { device_id } => {
            let (body, v) = call(
                c,
                "GET",
                &format!("/api/v1/devices/{}/commands", enc(&device_id)),
                None,
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            let rows = items(&v["commands"])
                .map(|cmd| {
                    let results: Vec<String> = items(&cmd["results"])
                        .map(|r| format!("{}={}", str_of(&r["target"]), str_of(&r["data"])))
                        .collect();
                    vec![
                        str_of(&cmd["command_id"]),
                        str_of(&cmd["verb"]),
                        str_of(&cmd["target"]),
                        str_of(&cmd["state"]),
                        str_of(&cmd["status"]),
                        time_of(&cmd["created_at"]),
                        results.join(" "),
                    ]
                })
                .collect();
            w(
                out,
                &table(
                    &[
                        "COMMAND_ID",
                        "VERB",
                        "TARGET",
                        "STATE",
                        "STATUS",
                        "CREATED",
                        "RESULTS",
                    ],
                    rows,
                ),
            )
        }
        CommandCmd::Cancel {
            device_id,
            command_id,
        } => match command_id {
            Some(cid) => {
                let (body, _) = call(
                    c,
                    "DELETE",
                    &format!("/api/v1/devices/{}/commands/{}", enc(&device_id), enc(&cid)),
                    None,
                )
                .await?;
                if json_out {
                    return raw(out, &body);
                }
                w(out, &format!("cancelled command {cid}\n"))
            }
            None => {
                let (body, v) = call(
                    c,
                    "DELETE",
                    &format!("/api/v1/devices/{}/commands", enc(&device_id)),
                    None,
                )
                .await?;
                if json_out {
                    return raw(out, &body);
                }
                w(
                    out,
                    &format!("cancelled {} command(s)\n", str_of(&v["cancelled"])),
                )
            }
        },
    }
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().map(|a| a.iter()).into_iter().flatten()
}

/// A JSON value as a table cell: strings bare, `null` as `-`, the rest as compact JSON.
fn str_of(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        other => other.to_string(),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SSZ` (UTC); anything else as [`str_of`].
fn time_of(v: &Value) -> String {
    let Some(t) = v.as_i64() else {
        return str_of(v);
    };
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => t.to_string(),
    }
}

/// Aligned columns separated by two spaces; the last column is not padded.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let clean = |s: &str| s.replace(['\n', '\r', '\t'], " ");
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut s = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut l = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            l.push_str(c);
            if i + 1 < n {
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                l.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    line(headers.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).take(headers.len()).collect());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "LONGER"],
            vec![
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "two\nlines".into()],
            ],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    two lines\n");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(enc("alice@example.com"), "alice@example.com");
        assert_eq!(enc("a b/c%"), "a%20b%2Fc%25");
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(time_of(&json!(0)), "1970-01-01 00:00:00Z");
        assert_eq!(time_of(&Value::Null), "-");
    }

    #[test]
    fn usage_errors_exit_2() {
        let mut out = Vec::new();
        assert_eq!(run(["winmdm", "user", "frobnicate"], &mut out), 2);
        let mut out = Vec::new();
        assert_eq!(run(["winmdm", "user", "add", "a@b.c"], &mut out), 2);
    }
}
