//! Microsoft tenant integration through Microsoft Graph: the connection (tenant id, app id and
//! its credential), Autopilot device import and sync, deployment profiles and Entra device
//! groups (issue #19).
//!
//! | module | role |
//! |---|---|
//! | [`credential`] | the app's certificate+key or client secret: parsed, checked, stored 0600 |
//! | [`assertion`] | the signed JWT client assertion (pure) |
//! | [`http`] | an HTTPS client on hyper + tokio-rustls (aws-lc-rs) |
//! | [`graph`] | token client (cached), Graph calls, paging, 429/Retry-After, error mapping |
//! | [`shapes`] | Graph JSON bodies and membership rules (pure) |
//! | [`state`] | the records: connection state, per-device/profile tenant state, created groups |
//! | [`sync`] | a sync pass (push pending changes, follow imports, pull), dry-run, the worker |
//!
//! What syncs in which direction:
//! * winmdm → tenant: imported Autopilot devices (`importedWindowsAutopilotDeviceIdentities`),
//!   their edits (`updateDeviceProperties`) and deletions (only devices winmdm imported),
//!   Autopilot profiles (`windowsAutopilotDeploymentProfiles`, /beta), their group assignments,
//!   Entra groups created from winmdm;
//! * tenant → winmdm: Autopilot devices registered elsewhere (OEM, partner, portal), and the
//!   group tag / user / name of known devices when winmdm has no pending change for them.
//!
//! Nothing in the tenant that winmdm did not create is deleted: device deletions go only to
//! devices winmdm imported, profile and group deletions only to objects whose id winmdm
//! recorded when it created them. Every Graph write is appended to the audit log
//! (`tenant.graph`), with the admin token's name or `tenant-sync` (the background worker).
//!
//! Microsoft's pages this module follows (routes and shapes):
//! * client credentials with a certificate assertion:
//!   <https://learn.microsoft.com/entra/identity-platform/certificate-credentials>,
//!   <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>
//! * `GET /v1.0/organization`: <https://learn.microsoft.com/graph/api/organization-list>
//! * `POST|GET|DELETE /v1.0/deviceManagement/importedWindowsAutopilotDeviceIdentities`:
//!   <https://learn.microsoft.com/graph/api/intune-enrollment-importedwindowsautopilotdeviceidentity-create?view=graph-rest-1.0>,
//!   <https://learn.microsoft.com/graph/api/resources/intune-enrollment-importedwindowsautopilotdeviceidentity?view=graph-rest-1.0>
//! * `GET|DELETE /v1.0/deviceManagement/windowsAutopilotDeviceIdentities`, `.../updateDeviceProperties`:
//!   <https://learn.microsoft.com/graph/api/resources/intune-enrollment-windowsautopilotdeviceidentity>,
//!   <https://learn.microsoft.com/graph/api/intune-enrollment-windowsautopilotdeviceidentity-updatedeviceproperties?view=graph-rest-1.0>
//! * `POST|PATCH|DELETE /beta/deviceManagement/windowsAutopilotDeploymentProfiles` and
//!   `.../assignments` (beta only):
//!   <https://learn.microsoft.com/graph/api/resources/intune-enrollment-azureadwindowsautopilotdeploymentprofile?view=graph-rest-beta>,
//!   <https://learn.microsoft.com/graph/api/resources/intune-enrollment-outofboxexperiencesetting?view=graph-rest-beta>,
//!   <https://learn.microsoft.com/graph/api/intune-enrollment-windowsautopilotdeploymentprofileassignment-create?view=graph-rest-beta>
//! * `POST|DELETE /v1.0/groups`, `POST /v1.0/groups/{id}/members/$ref`, `GET /v1.0/devices`:
//!   <https://learn.microsoft.com/graph/api/group-post-groups>,
//!   <https://learn.microsoft.com/graph/api/group-post-members>,
//!   <https://learn.microsoft.com/entra/identity/users/groups-dynamic-membership>,
//!   <https://learn.microsoft.com/autopilot/enrollment-autopilot> (the `[OrderID]`/`[ZTDId]` rules)
//! * paging and throttling: <https://learn.microsoft.com/graph/paging>,
//!   <https://learn.microsoft.com/graph/throttling>, errors: <https://learn.microsoft.com/graph/errors>

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

pub mod assertion;
pub mod credential;
pub mod graph;
pub mod http;
pub mod shapes;
pub mod state;
pub mod sync;

/// Default login (token) base URL: Microsoft's global cloud.
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
/// Default Graph base URL: Microsoft's global cloud.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
/// Default interval of the periodic pull of devices registered elsewhere.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(3600);
/// Default interval at which pending changes are pushed and imports followed.
pub const DEFAULT_POLL: Duration = Duration::from_secs(30);

/// The actor name of Graph writes the background worker makes.
pub const SYNC_ACTOR: &str = "tenant-sync";

/// Tenant options as given (`winmdm serve` flags or the config file).
#[derive(Debug, Clone, Default)]
pub struct TenantOptions {
    /// `--graph-login-url`.
    pub login_url: Option<String>,
    /// `--graph-url`.
    pub graph_url: Option<String>,
    /// `--graph-ca`.
    pub ca: Option<PathBuf>,
    /// `--tenant-sync-interval`.
    pub sync_interval: Option<String>,
    /// `--tenant-poll`.
    pub poll: Option<String>,
}

/// The resolved tenant options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// Login base URL (no trailing `/`).
    pub login_url: String,
    /// Graph base URL (no trailing `/`).
    pub graph_url: String,
    /// Extra PEM roots trusted for both.
    pub ca: Option<PathBuf>,
    /// Periodic pull interval (`None`: only on demand).
    pub sync_interval: Option<Duration>,
    /// How often pending changes are pushed and imports followed.
    pub poll: Duration,
}

impl Default for TenantConfig {
    fn default() -> TenantConfig {
        TenantConfig {
            login_url: DEFAULT_LOGIN_URL.into(),
            graph_url: DEFAULT_GRAPH_URL.into(),
            ca: None,
            sync_interval: Some(DEFAULT_SYNC_INTERVAL),
            poll: DEFAULT_POLL,
        }
    }
}

fn base_url(field: &'static str, v: &str) -> Result<String, (&'static str, String)> {
    let v = v.trim().trim_end_matches('/');
    let t = crate::webhook::Target::parse(v).map_err(|e| (field, e))?;
    if !t.https {
        return Err((
            field,
            format!("{v:?}: Microsoft Graph is only reached over https"),
        ));
    }
    if t.path != "/" && !t.path.is_empty() {
        return Err((
            field,
            format!("{v:?}: give the base URL only, without a path"),
        ));
    }
    Ok(v.to_string())
}

/// Longest interval accepted.
const MAX_INTERVAL: Duration = Duration::from_secs(30 * 86_400);

/// `0` (`None`) or a number with `s`, `m`, `h` or `d`, from 1 s to 30 days.
fn interval(field: &'static str, v: &str) -> Result<Option<Duration>, (&'static str, String)> {
    let v = v.trim();
    if v == "0" {
        return Ok(None);
    }
    let bad = || {
        (
            field,
            format!("{v:?}: expected 0 or a number with s, m, h or d (e.g. 30s, 1h), at most 30d"),
        )
    };
    let split = v.len().saturating_sub(1);
    let (num, unit) = (v.get(..split).unwrap_or(""), v.get(split..).unwrap_or(""));
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = Duration::from_secs(n.saturating_mul(scale));
    if d.is_zero() || d > MAX_INTERVAL {
        return Err(bad());
    }
    Ok(Some(d))
}

impl TenantOptions {
    /// Applies defaults and validates (the field at fault and why).
    pub fn resolve(self) -> Result<TenantConfig, (&'static str, String)> {
        let d = TenantConfig::default();
        let login_url = match self.login_url.as_deref() {
            Some(v) => base_url("graph_login_url", v)?,
            None => d.login_url,
        };
        let graph_url = match self.graph_url.as_deref() {
            Some(v) => base_url("graph_url", v)?,
            None => d.graph_url,
        };
        let sync_interval = match self.sync_interval.as_deref() {
            Some(v) => interval("tenant_sync_interval", v)?,
            None => d.sync_interval,
        };
        let poll = match self.poll.as_deref() {
            Some(v) => interval("tenant_poll", v)?.ok_or((
                "tenant_poll",
                "0 is not allowed: give an interval".to_string(),
            ))?,
            None => d.poll,
        };
        Ok(TenantConfig {
            login_url,
            graph_url,
            ca: self.ca,
            sync_interval,
            poll,
        })
    }
}

/// The node's tenant runtime: the HTTPS client, the cached access token and the worker's
/// wake-up.
pub struct Runtime {
    /// Resolved options.
    pub cfg: TenantConfig,
    http: Mutex<Option<std::sync::Arc<http::Http>>>,
    pub(crate) token: Mutex<Option<graph::CachedToken>>,
    /// Wakes the worker (a change to push).
    pub kick: tokio::sync::Notify,
    /// One sync pass at a time on this node.
    pub(crate) pass: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime for `cfg` (the HTTPS client is built on first use).
    pub fn new(cfg: TenantConfig) -> Runtime {
        Runtime {
            cfg,
            http: Mutex::new(None),
            token: Mutex::new(None),
            kick: tokio::sync::Notify::new(),
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// The HTTPS client (system roots plus `--graph-ca`).
    pub fn http(&self) -> Result<std::sync::Arc<http::Http>, String> {
        let mut h = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = h.as_ref() {
            return Ok(c.clone());
        }
        let c = std::sync::Arc::new(http::Http::new(self.cfg.ca.as_deref())?);
        *h = Some(c.clone());
        Ok(c)
    }

    /// Forgets the cached access token (a new credential, a disconnect, a 401).
    pub fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_resolve_with_checks() {
        let c = TenantOptions {
            sync_interval: Some("2s".into()),
            poll: Some("1s".into()),
            graph_url: Some("https://graph.microsoft.us/".into()),
            ..TenantOptions::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.sync_interval, Some(Duration::from_secs(2)));
        assert_eq!(c.poll, Duration::from_secs(1));
        assert_eq!(c.graph_url, "https://graph.microsoft.us");
        assert_eq!(c.login_url, DEFAULT_LOGIN_URL);
        let off = TenantOptions {
            sync_interval: Some("0".into()),
            ..TenantOptions::default()
        };
        assert_eq!(off.resolve().unwrap().sync_interval, None);
        for (o, field) in [
            (
                TenantOptions {
                    poll: Some("0".into()),
                    ..Default::default()
                },
                "tenant_poll",
            ),
            (
                TenantOptions {
                    poll: Some("31d".into()),
                    ..Default::default()
                },
                "tenant_poll",
            ),
            (
                TenantOptions {
                    graph_url: Some("http://graph.microsoft.com".into()),
                    ..Default::default()
                },
                "graph_url",
            ),
            (
                TenantOptions {
                    login_url: Some("https://login.microsoftonline.com/tenant".into()),
                    ..Default::default()
                },
                "graph_login_url",
            ),
        ] {
            assert_eq!(o.resolve().unwrap_err().0, field);
        }
    }
}
