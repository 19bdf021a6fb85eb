//! The results webhook: every command result, enrollment, unenrollment, certificate renewal,
//! Autopilot link and profile state change is POSTed as signed JSON to `--webhook-url`.
//!
//! * **Recording** ([`crate::store::outbox`]): each event is appended to the device's outbox in
//!   the same store transaction as the change that causes it (the round commit, the
//!   enrollment, the renewal, the deletion), so a crash can never keep the change and lose the
//!   event, or the reverse. [`round_events`] derives a management round's events.
//! * **Delivery** ([`deliver`]): a background task per node, off every request path; one node
//!   at a time delivers (a lease record); per device strictly in order (the head of a device's
//!   outbox is removed only on a 2xx or when it is dead-lettered); at least once (a crash
//!   between the receiver's 2xx and the removal sends it again, with the same `event_id`);
//!   exponential backoff with jitter, capped; dead letters after `--webhook-max-attempts`
//!   attempts or `--webhook-max-age`.
//! * **Signature** ([`sign`]): `X-Winmdm-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//!   "<t>.<body>" keyed with the secret>` (Stripe's scheme; the timestamp stops replays).
//! * **HTTP** ([`client`]): hyper 1's HTTP/1.1 client over tokio-rustls on aws-lc-rs, the
//!   server certificate checked against the system roots plus `--webhook-ca`.

pub mod client;
pub mod deliver;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use serde_json::Value;

use crate::app::App;
use crate::store::outbox::{self, NewEvent};
use crate::store::{CommandRecord, CommandState, Device, DeviceState, StoreError};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-winmdm-signature";
/// The event id header (also in the body).
pub const EVENT_ID_HEADER: &str = "x-winmdm-event-id";
/// The event type header (also in the body).
pub const EVENT_TYPE_HEADER: &str = "x-winmdm-event-type";

/// Default `--webhook-max-attempts`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;
/// Default `--webhook-max-age` (seconds): 3 days.
pub const DEFAULT_MAX_AGE_SECS: u64 = 3 * 86_400;
/// Shortest secret accepted (bytes).
pub const MIN_SECRET_BYTES: usize = 16;
/// Largest secret accepted (bytes).
pub const MAX_SECRET_BYTES: usize = 4096;

/// The receiver's URL, parsed. `Debug` and `Display` leave out the query string (it may carry
/// a receiver's token).
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` (or `http` for a loopback host).
    pub https: bool,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query (`/` at least).
    pub path: String,
}

impl Target {
    /// Parses `--webhook-url`: `https://host[:port][/path]`; `http://` only for a loopback host
    /// (`localhost`, 127.0.0.0/8, `[::1]`), for a receiver on the same machine. No user
    /// information (it would end up in logs), no fragment.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?}: expected https://host[:port]/path"));
        };
        if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the URL is longer than 2048 bytes or contains spaces".into());
        }
        if url.contains('#') {
            return Err(format!("{url:?}: a fragment (#) is not sent; remove it"));
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(format!(
                "{url:?}: user information in the URL is not supported (use the signature)"
            ));
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let close = r.find(']').ok_or_else(|| format!("{url:?}: unclosed ["))?;
            let host = &r[..close];
            let port = match &r[close + 1..] {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{url:?}: bad port"))?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
        };
        let t = Target {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else if path.starts_with('?') {
                format!("/{path}")
            } else {
                path.to_string()
            },
        };
        if !https && !t.is_loopback() {
            return Err(format!(
                "{url:?}: plain http is accepted only for a loopback receiver \
                 (localhost, 127.0.0.0/8, [::1]); use https"
            ));
        }
        Ok(t)
    }

    /// Whether the host is this machine.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// `host[:port]` for the `Host` header.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({self})")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        // The path may carry a receiver's token in its query: logs show only the path.
        let path = self.path.split('?').next().unwrap_or("/");
        write!(f, "{scheme}://{}{path}", self.authority())
    }
}

/// A webhook secret: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
    /// The bytes, for signing only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `--webhook-secret-file` (read at start; surrounding white space trimmed).
    File(PathBuf),
    /// `WINMDM_WEBHOOK_SECRET`.
    Env(Secret),
}

/// The validated `--webhook-*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The receiver.
    pub target: Target,
    /// The HMAC key's source.
    pub secret: SecretSource,
    /// Extra PEM CA certificates trusted for the receiver (besides the system roots).
    pub ca: Option<PathBuf>,
    /// Attempts before an event is dead-lettered.
    pub max_attempts: u32,
    /// Age after which an undelivered event is dead-lettered.
    pub max_age: Duration,
}

/// The `--webhook-*` options as given.
#[derive(Debug, Clone, Default)]
pub struct WebhookOptions {
    /// `--webhook-url`.
    pub url: Option<String>,
    /// `--webhook-secret-file`.
    pub secret_file: Option<PathBuf>,
    /// `WINMDM_WEBHOOK_SECRET`.
    pub secret: Option<String>,
    /// `--webhook-ca`.
    pub ca: Option<PathBuf>,
    /// `--webhook-max-attempts`.
    pub max_attempts: Option<u32>,
    /// `--webhook-max-age`.
    pub max_age: Option<String>,
}

impl WebhookOptions {
    /// Validates; `Ok(None)` when no webhook is configured. Errors name the setting
    /// (`(field, reason)`).
    pub fn resolve(self) -> Result<Option<WebhookConfig>, (&'static str, String)> {
        let Some(url) = self.url.filter(|u| !u.trim().is_empty()) else {
            if self.secret_file.is_some() || self.ca.is_some() {
                return Err((
                    "webhook_url",
                    "--webhook-secret-file and --webhook-ca need --webhook-url".into(),
                ));
            }
            return Ok(None);
        };
        let target = Target::parse(url.trim()).map_err(|r| ("webhook_url", r))?;
        let secret =
            match (self.secret_file, self.secret.filter(|s| !s.is_empty())) {
                (Some(_), Some(_)) => return Err((
                    "webhook_secret_file",
                    "give the secret in --webhook-secret-file or WINMDM_WEBHOOK_SECRET, not both"
                        .into(),
                )),
                (Some(f), None) => SecretSource::File(f),
                (None, Some(s)) => {
                    check_secret(s.trim().as_bytes()).map_err(|r| ("webhook_secret", r))?;
                    SecretSource::Env(Secret(s.trim().as_bytes().to_vec()))
                }
                (None, None) => return Err((
                    "webhook_secret_file",
                    "--webhook-url needs a secret: --webhook-secret-file or WINMDM_WEBHOOK_SECRET"
                        .into(),
                )),
            };
        let max_attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=1000).contains(&max_attempts) {
            return Err((
                "webhook_max_attempts",
                format!("{max_attempts} is outside 1..=1000"),
            ));
        }
        let max_age = match self.max_age.as_deref() {
            None => Duration::from_secs(DEFAULT_MAX_AGE_SECS),
            Some(v) => crate::config::parse_retention(v)
                .map_err(|r| ("webhook_max_age", r))?
                .ok_or((
                    "webhook_max_age",
                    "0 is not allowed: give an age".to_string(),
                ))?,
        };
        Ok(Some(WebhookConfig {
            target,
            secret,
            ca: self.ca,
            max_attempts,
            max_age,
        }))
    }
}

fn check_secret(s: &[u8]) -> Result<(), String> {
    if s.len() < MIN_SECRET_BYTES || s.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "the secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes (it has {})",
            s.len()
        ));
    }
    Ok(())
}

/// Delivery counters: the seam for metrics (`winmdm_webhook_deliveries_total{outcome}`,
/// `winmdm_webhook_outbox_depth`). The deliverer only adds; readers take [`Stats::snapshot`].
#[derive(Debug, Default)]
pub struct Stats {
    /// Events acknowledged with a 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (connection error, timeout, non-2xx); the event is retried.
    pub failed: AtomicU64,
    /// Events moved to the dead letters by the deliverer.
    pub dead_lettered: AtomicU64,
    /// Pending events of every device, as last counted (about once a minute).
    pub outbox_depth: AtomicU64,
}

/// A copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::delivered`].
    pub delivered: u64,
    /// See [`Stats::failed`].
    pub failed: u64,
    /// See [`Stats::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`Stats::outbox_depth`].
    pub outbox_depth: u64,
}

impl Stats {
    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            outbox_depth: self.outbox_depth.load(Ordering::Relaxed),
        }
    }
}

/// The running webhook: settings, key, HTTP client and counters.
pub struct Webhook {
    /// Settings.
    pub cfg: WebhookConfig,
    secret: Secret,
    /// The HTTP client.
    pub client: client::Client,
    /// Delivery counters.
    pub stats: Arc<Stats>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("target", &self.cfg.target.to_string())
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Reads the secret file and the CA file and builds the client.
    pub fn open(cfg: &WebhookConfig) -> Result<Webhook, String> {
        let secret = match &cfg.secret {
            SecretSource::Env(s) => s.clone(),
            SecretSource::File(path) => {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(m) = std::fs::metadata(path) {
                    if m.permissions().mode() & 0o077 != 0 {
                        tracing::warn!(path = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777), "the webhook secret file can be read by other users: chmod 600 it");
                    }
                }
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("--webhook-secret-file {}: {e}", path.display()))?;
                let text = String::from_utf8_lossy(&bytes);
                let s = text.trim().as_bytes().to_vec();
                check_secret(&s)
                    .map_err(|r| format!("--webhook-secret-file {}: {r}", path.display()))?;
                Secret(s)
            }
        };
        let client = client::Client::new(&cfg.target, cfg.ca.as_deref())?;
        Ok(Webhook {
            cfg: cfg.clone(),
            secret,
            client,
            stats: Arc::new(Stats::default()),
        })
    }

    /// The signature header value for `body` sent at `t`.
    pub fn signature(&self, t: i64, body: &[u8]) -> String {
        sign(self.secret.expose(), t, body)
    }
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={t},v1={}", crate::clock::hex(ctx.sign().as_ref()))
}

/// What a receiver does with a request: the `t` and every `v1` of `header`, the timestamp
/// within `tolerance_secs` of `now`, and one `v1` equal (in constant time) to the HMAC of
/// `"<t>." + body`. (Used by the tests' receiver; the README shows the same in Python.)
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut t: Option<i64> = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse().ok(),
            Some(("v1", v)) => sigs.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else {
        return false;
    };
    if (now - t).abs() > tolerance_secs {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut msg = Vec::with_capacity(body.len() + 12);
    msg.extend_from_slice(t.to_string().as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    sigs.iter()
        .any(|s| unhex(s).is_some_and(|tag| hmac::verify(&key, &msg, &tag).is_ok()))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The webhook events a management round causes: each command it brings to a final state
/// (`command.completed`), the device's own unenroll alert (`device.unenrolled`), an Autopilot
/// link made in the round (`autopilot.linked`), and each profile whose status on the device the
/// round changes (`profile.state_changed`). `read` is each changed command's state as the round
/// read it (the commit checks it still holds, so the comparison is exact).
pub fn round_events(
    app: &App,
    before: &Device,
    after: &Device,
    commands: &[CommandRecord],
    read: &[(String, CommandState)],
) -> Result<Vec<NewEvent>, StoreError> {
    let mut out = Vec::new();
    let prior = |id: &str| read.iter().find(|(c, _)| c == id).map(|(_, s)| *s);
    // In queue order: the order the commands were queued (and sent) in.
    let mut completed: Vec<&CommandRecord> = commands
        .iter()
        .filter(|c| c.state.is_terminal() && prior(&c.command_id).is_none_or(|p| !p.is_terminal()))
        .collect();
    completed.sort_by_key(|c| c.seq);
    out.extend(completed.into_iter().map(outbox::command_completed));
    if before.state == DeviceState::Enrolled && after.state == DeviceState::Unenrolled {
        out.push(outbox::device_unenrolled(after, "user_request", None));
    }
    if before.autopilot_serial.is_none() && after.autopilot_serial.is_some() {
        out.push(outbox::autopilot_linked(after));
    }
    let profile_ids: BTreeSet<&str> = commands
        .iter()
        .filter_map(|c| profile_of(&c.command_id))
        .collect();
    if !profile_ids.is_empty() && outbox::is_enabled(app.store.records())? {
        out.extend(profile_events(
            app,
            &after.device_id,
            &profile_ids,
            commands,
        )?);
    }
    Ok(out)
}

/// The profile id in a profile command's id (`profile-<id>-v<version>-…`).
fn profile_of(command_id: &str) -> Option<&str> {
    let rest = command_id.strip_prefix("profile-")?;
    let (pid, _) = rest.split_once("-v")?;
    (!pid.is_empty()).then_some(pid)
}

fn profile_events(
    app: &App,
    device_id: &str,
    profile_ids: &BTreeSet<&str>,
    commands: &[CommandRecord],
) -> Result<Vec<NewEvent>, StoreError> {
    use crate::profiles::reconcile::{status_with, DEPLOYMENTS};
    let mut out = Vec::new();
    for pid in profile_ids {
        let key = crate::groups::pair_key(pid, device_id);
        let Some(dep) = DEPLOYMENTS.get(app.store.records(), &key)? else {
            continue;
        };
        if !dep
            .commands
            .iter()
            .any(|q| commands.iter().any(|c| c.command_id == q.command_id))
        {
            continue;
        }
        let was = status_with(&dep, |id| app.store.get_command(device_id, id))?;
        let now = status_with(&dep, |id| {
            match commands.iter().find(|c| c.command_id == id) {
                Some(c) => Ok(Some(c.clone())),
                None => app.store.get_command(device_id, id),
            }
        })?;
        if was.status != now.status {
            let mut fields = match serde_json::to_value(&now) {
                Ok(Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            fields.remove("device_id");
            fields.insert("previous_status".into(), Value::from(was.status));
            out.push(outbox::profile_state_changed(device_id, fields));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("https://hooks.example.com/winmdm?k=1").unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.path.as_str()),
            (true, "hooks.example.com", 443, "/winmdm?k=1")
        );
        assert_eq!(t.to_string(), "https://hooks.example.com/winmdm");
        assert!(!format!("{t:?}").contains("k=1"));
        let t = Target::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!((t.port, t.path.as_str()), (9000, "/"));
        assert!(Target::parse("http://[::1]:9000/x").is_ok());
        assert!(Target::parse("http://localhost/x").is_ok());
        for bad in [
            "http://example.com/x",
            "http://10.0.0.1/x",
            "ftp://x",
            "https://user:pw@example.com/",
            "https://:443/",
            "https://example.com:0/",
            "https://example.com:99999/",
            "https://example.com/#frag",
            "https://exa mple.com/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signature_round_trip_and_wrong_secret() {
        let body = br#"{"event_id":"x"}"#;
        let h = sign(b"0123456789abcdef", 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert!(verify(b"0123456789abcdef", &h, body, 1_700_000_100, 300));
        assert!(!verify(b"0123456789abcdeX", &h, body, 1_700_000_100, 300));
        assert!(!verify(b"0123456789abcdef", &h, b"{}", 1_700_000_100, 300));
        assert!(!verify(b"0123456789abcdef", &h, body, 1_700_001_000, 300));
        assert!(!verify(b"0123456789abcdef", "t=x,v1=zz", body, 0, 300));
    }

    #[test]
    fn options() {
        let o = |url: &str, secret: Option<&str>| WebhookOptions {
            url: Some(url.into()),
            secret: secret.map(str::to_string),
            ..WebhookOptions::default()
        };
        assert!(o("https://h/x", None).resolve().is_err());
        assert!(o("https://h/x", Some("short")).resolve().is_err());
        let c = o("https://h/x", Some("0123456789abcdef0123"))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(c.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert!(!format!("{c:?}").contains("0123456789abcdef0123"));
        assert_eq!(WebhookOptions::default().resolve().unwrap(), None);
        assert_eq!(profile_of("profile-ab12-v3-op0-r1"), Some("ab12"));
        assert_eq!(profile_of("cmd-1"), None);
    }
}
