//! Per-device state of an app, derived (never stored) from what the device told us:
//!
//! | state | when |
//! |---|---|
//! | `pending` | the install (or uninstall) command is queued, not sent yet (user scope: waits for LoginStatus `user`) |
//! | `downloading` | the device accepted `DownloadInstall`/`HostedInstall`, or reports Status 10/20/25 (MSI) |
//! | `installing` | Status 40/50/55 (MSI), 1 (MSIX) |
//! | `installed` | generic alert `com.microsoft.mdm.win32csp_install` with result 0 (3010/1641: restart needed), or Status 70 (MSI) / 3 (MSIX); `version` is the app's ProductVersion |
//! | `failed` | the alert's nonzero result, Status 30/60 (MSI) / 2 (MSIX) with `LastError`, or the device refused a command; `error_code` + `error` (meaning) |
//! | `not_applicable` | assigned but not for this device (reason) |
//! | `uninstalling` / `uninstalled` | the `Delete` of the app node is queued/sent / answered (404: it was not installed) |

use std::collections::HashMap;

use serde::Serialize;

use super::deliver::{self, Intent};
use super::{AppKind, AppRecord, APPS};
use crate::app::App;
use crate::profiles::reconcile::{self, DeployState, Deployment, DEPLOYMENTS};
use crate::profiles::Scope;
use crate::store::{CommandRecord, CommandState, DeviceAlert, StoreError};

/// `Meta/Type` of the generic alert an MSI install job sends when it ends.
pub const INSTALL_ALERT: &str = "Reversed-Domain-Name:com.microsoft.mdm.win32csp_install";
/// `Meta/Type` of the generic alert a `HostedInstall` sends when it ends (Enterprise app
/// management, "Alert for installation completion": Source the HostedInstall node, Data 0 or
/// the error code).
pub const HOSTED_INSTALL_ALERT: &str =
    "Reversed-Domain-Name:com.microsoft.mdm.EnterpriseHostedAppInstall.result";

/// The re-reads of an app's `Status`/`LastError` in later sessions (see [`super::poll`]) that
/// belong to the deployment being derived.
#[derive(Debug, Clone, Default)]
pub struct Polled {
    /// The newest `Get …/Status` of a later session.
    pub status: Option<CommandRecord>,
    /// The `Get …/LastError` that followed a failed Status.
    pub last_error: Option<CommandRecord>,
    /// Why polling stopped without a final state (the install is failed).
    pub gave_up: Option<String>,
}

/// Where an app is on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// Queued, not sent.
    Pending,
    /// The device accepted the job and is downloading.
    Downloading,
    /// Installing.
    Installing,
    /// Installed.
    Installed,
    /// Failed (see `error_code`).
    Failed,
    /// Not for this device.
    NotApplicable,
    /// Uninstall queued or sent.
    Uninstalling,
    /// Uninstalled (or was not installed).
    Uninstalled,
}

/// An app on one device, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceAppState {
    /// App.
    pub app_id: String,
    /// Device.
    pub device_id: String,
    /// Device or user install.
    pub scope: Scope,
    /// Required or uninstall.
    pub intent: Intent,
    /// State.
    pub state: AppState,
    /// Installed version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The device's error code (MSI/Win32 decimal, or HRESULT `0x...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What the code means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// More detail (not applicable, waiting for the user, restart needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Version of the managed profile delivered.
    pub profile_version: u32,
    /// Its commands.
    pub command_ids: Vec<String>,
    /// Last change of the deployment (Unix seconds).
    pub updated_at: i64,
}

/// A device error code, normalised: Win32/MSI codes in decimal, HRESULTs as `0x%08X`.
pub fn normalize_code(raw: &str) -> Option<(String, u32)> {
    let t = raw.trim();
    let v: u32 = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()?
    } else {
        let n: i64 = t.parse().ok()?;
        if n < 0 {
            (n as i32) as u32
        } else {
            u32::try_from(n).ok()?
        }
    };
    Some(if v > 0xFFFF {
        (format!("0x{v:08X}"), v)
    } else {
        (v.to_string(), v)
    })
}

fn win32_meaning(c: u32) -> Option<&'static str> {
    Some(match c {
        0 => "success",
        2 => "the system cannot find the file specified",
        5 => "access denied",
        1601 => "the Windows Installer service could not be accessed",
        1602 => "the user cancelled the installation",
        1603 => "fatal error during installation",
        1605 => "this action is only valid for products that are currently installed",
        1618 => "another installation is already in progress",
        1619 => "the installation package could not be opened",
        1620 => "the installation package could not be opened (not a valid package)",
        1624 => "error applying transforms",
        1625 => "the installation is forbidden by system policy",
        1633 => "this installation package is not supported on this processor type",
        1638 => "another version of this product is already installed",
        1639 => "invalid command line argument",
        1641 => "the installer has initiated a restart",
        3010 => "a restart is required to complete the install",
        _ => return None,
    })
}

/// What a device error code means, when known.
pub fn meaning(code: u32) -> Option<String> {
    if code <= 0xFFFF {
        return win32_meaning(code).map(str::to_string);
    }
    let known = match code {
        0x8009_1007 => {
            Some("the hash of the downloaded file does not match FileHash (CRYPT_E_HASH_VALUE)")
        }
        0x8019_0193 => Some("the download was refused: HTTP 403 (BG_E_HTTP_ERROR_403)"),
        0x8019_0194 => Some("the download URL was not found: HTTP 404 (BG_E_HTTP_ERROR_404)"),
        0x8020_0010 => {
            Some("the download failed: the server cannot be reached (BG_E_NETWORK_DISCONNECTED)")
        }
        0x8007_2EE7 => Some("the server name could not be resolved"),
        0x8007_3CF0 => Some("the package could not be opened (ERROR_INSTALL_OPEN_PACKAGE_FAILED)"),
        0x8007_3CF3 => Some(
            "the package failed update, dependency or conflict validation (ERROR_INSTALL_RESOLVE_DEPENDENCY_FAILED)",
        ),
        0x800B_0109 => Some(
            "the package's signature chains to a root the device does not trust (CERT_E_UNTRUSTEDROOT)",
        ),
        _ => None,
    };
    if let Some(k) = known {
        return Some(k.into());
    }
    // HRESULT_FROM_WIN32: 0x8007xxxx.
    if code & 0xFFFF_0000 == 0x8007_0000 {
        let w = code & 0xFFFF;
        return Some(match win32_meaning(w) {
            Some(m) => format!("{m} (Win32 error {w})"),
            None => format!("Win32 error {w}"),
        });
    }
    None
}

/// Whether a code is an install success (0, or success with a restart pending).
fn success(code: u32) -> Option<Option<&'static str>> {
    match code {
        0 => Some(None),
        3010 | 0x8007_0BC2 => Some(Some(
            "installed; a restart is required to complete it (3010)",
        )),
        1641 | 0x8007_0669 => Some(Some("installed; the installer started a restart (1641)")),
        _ => None,
    }
}

/// `%7B`/`%7D` → braces, upper-case: LocURIs compare equal however the braces were written.
pub(crate) fn norm_uri(s: &str) -> String {
    s.trim()
        .replace("%7B", "{")
        .replace("%7b", "{")
        .replace("%7D", "}")
        .replace("%7d", "}")
        .to_ascii_uppercase()
}

fn result_data(c: Option<&CommandRecord>) -> Option<String> {
    let c = c?;
    if c.state != CommandState::Done {
        return None;
    }
    c.results.first().and_then(|r| r.data.clone())
}

/// Derives the state of one app deployment. `commands` by command id; `alerts` of the device.
pub fn derive(
    dep: &Deployment,
    commands: &HashMap<String, CommandRecord>,
    alerts: &[DeviceAlert],
    rec: Option<&AppRecord>,
    held_reason: Option<String>,
    polled: Option<&Polled>,
) -> Option<DeviceAppState> {
    let (app_id, scope, intent) = deliver::parse_profile_id(&dep.profile_id)?;
    let mut out = DeviceAppState {
        app_id: app_id.to_string(),
        device_id: dep.device_id.clone(),
        scope,
        intent,
        state: AppState::Pending,
        version: None,
        error_code: None,
        error: None,
        reason: None,
        profile_version: dep.version,
        command_ids: dep.commands.iter().map(|q| q.command_id.clone()).collect(),
        updated_at: dep.updated_at,
    };
    let cmd = |verb: &str, suffix: &str| {
        dep.commands.iter().find_map(|q| {
            let c = commands.get(&q.command_id)?;
            (c.verb == verb && q.targets.iter().any(|t| t.ends_with(suffix))).then_some(c)
        })
    };
    let refused = |out: &mut DeviceAppState, c: &CommandRecord| {
        out.state = AppState::Failed;
        match c.status {
            Some(s) => {
                out.error_code = Some(s.to_string());
                out.error = Some(format!(
                    "the device answered {s} to {} {}",
                    c.verb,
                    c.target.as_deref().unwrap_or("")
                ));
            }
            None => {
                out.error = Some(
                    c.error
                        .clone()
                        .unwrap_or_else(|| format!("command {} was {:?}", c.command_id, c.state)),
                );
            }
        }
    };
    let sent = |c: &CommandRecord| c.state != CommandState::Pending || c.send_count > 0;
    let deleting = dep.state == DeployState::Removed || intent == Intent::Uninstall;
    if dep.state == DeployState::NotApplicable {
        out.state = AppState::NotApplicable;
        out.reason = dep.reason.clone();
        return Some(out);
    }
    if deleting {
        let Some(c) = cmd("Delete", "") else {
            // Nothing to delete (no node was set): it is gone.
            out.state = AppState::Uninstalled;
            return Some(out);
        };
        match c.state {
            CommandState::Done => out.state = AppState::Uninstalled,
            CommandState::Failed if c.status == Some(404) => {
                out.state = AppState::Uninstalled;
                out.reason = Some("the app was not installed (404)".into());
            }
            CommandState::Pending if !sent(c) => {
                out.state = AppState::Pending;
                out.reason = held_reason;
            }
            CommandState::Pending | CommandState::Sent => out.state = AppState::Uninstalling,
            _ => refused(&mut out, c),
        }
        return Some(out);
    }
    let Some(exec) = cmd("Exec", "Install") else {
        return Some(out);
    };
    if let Some(add) = cmd("Add", "") {
        // 418 (already exists): the node is there from an earlier delivery; the Exec decides.
        if matches!(add.state, CommandState::Failed) && add.status != Some(418) {
            refused(&mut out, add);
            return Some(out);
        }
    }
    match exec.state {
        CommandState::Pending if !sent(exec) => {
            out.reason = held_reason;
            return Some(out);
        }
        CommandState::Pending | CommandState::Sent | CommandState::Done => {}
        _ => {
            refused(&mut out, exec);
            return Some(out);
        }
    }
    let kind = rec.map_or(AppKind::Msi, |r| r.kind);
    let version = rec.and_then(|r| r.product_version.clone());
    // 1. The generic alert of the install job (MSI), after the Exec was sent.
    let since = exec.sent_at.unwrap_or(exec.created_at);
    let target = exec.target.as_deref().map(norm_uri).unwrap_or_default();
    let alert_type = match kind {
        AppKind::Msi => INSTALL_ALERT,
        AppKind::Msix => HOSTED_INSTALL_ALERT,
    };
    let alert = alerts.iter().rev().find(|a| {
        a.alert_type.as_deref() == Some(alert_type)
            && a.at >= since
            && a.source.as_deref().map(norm_uri).as_deref() == Some(target.as_str())
    });
    if let Some(a) = alert {
        let raw = a.data.as_deref().unwrap_or("").trim();
        match normalize_code(raw) {
            Some((code, v)) => match success(v).filter(|_| kind == AppKind::Msi || v == 0) {
                Some(note) => {
                    out.state = AppState::Installed;
                    out.version = version;
                    out.reason = note.map(str::to_string);
                }
                None => {
                    out.state = AppState::Failed;
                    out.error = Some(meaning(v).unwrap_or_else(|| "unknown error".into()));
                    out.error_code = Some(code);
                }
            },
            None => {
                out.state = AppState::Failed;
                out.error_code = Some(raw.chars().take(64).collect());
                out.error = Some("the install alert carried no numeric result".into());
            }
        }
        return Some(out);
    }
    // 2. The Status node read back: the newest answered read (a later session's re-read, else
    // the one sent with the install).
    let polled_status = polled
        .and_then(|p| p.status.as_ref())
        .filter(|c| matches!(c.state, CommandState::Done | CommandState::Failed));
    let status_get = polled_status.or_else(|| cmd("Get", "/Status"));
    if kind == AppKind::Msix
        && status_get.is_some_and(|c| c.state == CommandState::Failed && c.status == Some(404))
    {
        // "Once an install is successful this node is cleaned up" (Enterprise app management).
        out.state = AppState::Installed;
        out.version = version;
        out.reason = Some(
            "the AppInstallation node is gone (404): Windows removes it after a successful install"
                .into(),
        );
        return Some(out);
    }
    let status = result_data(status_get);
    let last_error = result_data(polled.and_then(|p| p.last_error.as_ref()))
        .or_else(|| result_data(cmd("Get", "/LastError")));
    let fail_with_last_error = |out: &mut DeviceAppState, what: &str| {
        out.state = AppState::Failed;
        match last_error.as_deref().and_then(normalize_code) {
            Some((code, v)) if v != 0 => {
                out.error = Some(meaning(v).unwrap_or_else(|| what.to_string()));
                out.error_code = Some(code);
            }
            _ => out.error = Some(what.to_string()),
        }
    };
    match (kind, status.as_deref().map(str::trim)) {
        (AppKind::Msi, Some("10" | "20" | "25")) => out.state = AppState::Downloading,
        (AppKind::Msi, Some("48")) => {
            out.state = AppState::Pending;
            out.reason = Some("the device waits for a user session (Status 48)".into());
        }
        (AppKind::Msi, Some("40" | "50" | "55")) => out.state = AppState::Installing,
        (AppKind::Msi, Some("30")) => fail_with_last_error(&mut out, "download failed (Status 30)"),
        (AppKind::Msi, Some("60")) => {
            fail_with_last_error(&mut out, "enforcement failed (Status 60)")
        }
        (AppKind::Msi, Some("70")) | (AppKind::Msix, Some("3")) => {
            out.state = AppState::Installed;
            out.version = version;
        }
        (AppKind::Msix, Some("1")) => out.state = AppState::Installing,
        (AppKind::Msix, Some("2")) => {
            fail_with_last_error(&mut out, "installation failed (Status 2)")
        }
        _ => out.state = AppState::Downloading,
    }
    if let Some(why) = polled.and_then(|p| p.gave_up.as_ref()) {
        if matches!(
            out.state,
            AppState::Pending | AppState::Downloading | AppState::Installing
        ) {
            out.state = AppState::Failed;
            out.reason = None;
            out.error = Some(why.clone());
        }
    }
    Some(out)
}

pub(crate) fn commands_of(
    app: &App,
    dep: &Deployment,
) -> Result<HashMap<String, CommandRecord>, StoreError> {
    let mut m = HashMap::new();
    for q in &dep.commands {
        if let Some(c) = app.store.get_command(&dep.device_id, &q.command_id)? {
            m.insert(q.command_id.clone(), c);
        }
    }
    Ok(m)
}

fn state_of(
    app: &App,
    dep: &Deployment,
    alerts: &[DeviceAlert],
) -> Result<Option<DeviceAppState>, StoreError> {
    let Some((app_id, _, _)) = deliver::parse_profile_id(&dep.profile_id) else {
        return Ok(None);
    };
    let rec = APPS.get(app.store.records(), app_id)?;
    let held = reconcile::status(app, dep)?.reason;
    let polled = super::poll::polled(app, dep)?;
    Ok(derive(
        dep,
        &commands_of(app, dep)?,
        alerts,
        rec.as_ref(),
        held,
        polled.as_ref(),
    ))
}

/// Every app on one device.
pub fn device_states(app: &App, device_id: &str) -> Result<Vec<DeviceAppState>, StoreError> {
    let alerts = app
        .store
        .get_device(device_id)?
        .map(|d| d.alerts)
        .unwrap_or_default();
    let mut out = Vec::new();
    for dep in reconcile::deployments_of(app, device_id)?.values() {
        if let Some(s) = state_of(app, dep, &alerts)? {
            out.push(s);
        }
    }
    Ok(out)
}

/// One page of an app's per-device states; the cursor is `<n>:<device_id>` (n: the
/// (scope, intent) index in [`deliver::KINDS`]).
pub fn app_states_page(
    app: &App,
    app_id: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<DeviceAppState>, Option<String>), StoreError> {
    let (mut k, mut after): (usize, Option<String>) = match cursor.and_then(|c| c.split_once(':')) {
        Some((n, d)) => (n.parse().unwrap_or(0), Some(d.to_string())),
        None => (0, None),
    };
    let mut out = Vec::new();
    while k < deliver::KINDS.len() {
        let (scope, intent) = deliver::KINDS[k];
        let pid = deliver::profile_id(app_id, scope, intent);
        let want = limit - out.len();
        let page = crate::groups::scan_pairs(
            app.store.records(),
            DEPLOYMENTS,
            &pid,
            after.as_deref(),
            want + 1,
        )?;
        let more = page.len() > want;
        for (did, dep) in page.into_iter().take(want) {
            let alerts = app
                .store
                .get_device(&did)?
                .map(|d| d.alerts)
                .unwrap_or_default();
            if let Some(s) = state_of(app, &dep, &alerts)? {
                out.push(s);
            }
            after = Some(did);
        }
        if more {
            return Ok((out, after.map(|d| format!("{k}:{d}"))));
        }
        k += 1;
        after = None;
        if out.len() >= limit {
            return Ok((out, (k < deliver::KINDS.len()).then(|| format!("{k}:"))));
        }
    }
    Ok((out, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::profiles::reconcile::Queued;

    fn cmd(
        id: &str,
        verb: &str,
        target: &str,
        state: CommandState,
        status: Option<u16>,
        data: Option<&str>,
    ) -> CommandRecord {
        CommandRecord {
            command_id: id.into(),
            device_id: "d1".into(),
            verb: verb.into(),
            target: Some(target.into()),
            state,
            status,
            results: data
                .map(|d| {
                    vec![crate::store::ResultItem {
                        target: Some(target.into()),
                        format: None,
                        ty: None,
                        data: Some(d.into()),
                    }]
                })
                .unwrap_or_default(),
            created_at: 100,
            sent_at: Some(100),
            send_count: 1,
            ..CommandRecord::default()
        }
    }

    fn dep(pid: &str, state: DeployState, cmds: &[&CommandRecord]) -> Deployment {
        Deployment {
            profile_id: pid.into(),
            device_id: "d1".into(),
            state,
            version: 1,
            generation: 0,
            enrolled_at: 1,
            commands: cmds
                .iter()
                .map(|c| Queued {
                    command_id: c.command_id.clone(),
                    targets: vec![c.target.clone().unwrap_or_default()],
                })
                .collect(),
            sets: Vec::new(),
            reason: None,
            updated_at: 1,
        }
    }

    fn derive_of(
        d: &Deployment,
        cmds: &[&CommandRecord],
        alerts: &[DeviceAlert],
    ) -> DeviceAppState {
        let m = cmds
            .iter()
            .map(|c| (c.command_id.clone(), (*c).clone()))
            .collect();
        derive(d, &m, alerts, None, None, None).unwrap()
    }

    const B: &str = "./Device/Vendor/MSFT/EnterpriseDesktopAppManagement/MSI/%7BAF9257BA-6BBD-4624-AA9B-0182D50292C3%7D";

    /// Without the alert, the Status and LastError read back decide; the alert wins over them,
    /// and matches however the braces are written; an uninstall answered 404 is uninstalled.
    #[test]
    fn derive_from_status_last_error_and_alert() {
        let di = format!("{B}/DownloadInstall");
        let add = cmd("c1", "Add", &di, CommandState::Done, Some(200), None);
        let exec = cmd("c2", "Exec", &di, CommandState::Done, Some(202), None);
        let st60 = cmd(
            "c3",
            "Get",
            &format!("{B}/Status"),
            CommandState::Done,
            Some(200),
            Some("60"),
        );
        let le = cmd(
            "c4",
            "Get",
            &format!("{B}/LastError"),
            CommandState::Done,
            Some(200),
            Some("-2147023293"),
        );
        let all = [&add, &exec, &st60, &le];
        let d = dep("app-a1-device-required", DeployState::Installed, &all);
        let s = derive_of(&d, &all, &[]);
        assert_eq!(s.state, AppState::Failed);
        assert_eq!(s.error_code.as_deref(), Some("0x80070643"));
        assert_eq!(
            s.error.as_deref(),
            Some("fatal error during installation (Win32 error 1603)")
        );
        let st50 = cmd(
            "c3",
            "Get",
            &format!("{B}/Status"),
            CommandState::Done,
            Some(200),
            Some("50"),
        );
        assert_eq!(
            derive_of(&d, &[&add, &exec, &st50, &le], &[]).state,
            AppState::Installing
        );
        let st48 = cmd(
            "c3",
            "Get",
            &format!("{B}/Status"),
            CommandState::Done,
            Some(200),
            Some("48"),
        );
        assert_eq!(
            derive_of(&d, &[&add, &exec, &st48, &le], &[]).state,
            AppState::Pending
        );
        // The alert (braces unescaped, as in the CSP page's example) after the Exec: installed.
        let alert = DeviceAlert {
            alert_type: Some(INSTALL_ALERT.into()),
            source: Some("./Device/Vendor/MSFT/EnterpriseDesktopAppManagement/MSI/{AF9257BA-6BBD-4624-AA9B-0182D50292C3}/DownloadInstall".into()),
            data: Some("3010".into()),
            at: 150,
        };
        let s = derive_of(&d, &all, std::slice::from_ref(&alert));
        assert_eq!(s.state, AppState::Installed);
        assert!(s.reason.unwrap().contains("restart"));
        // An alert from before this Exec was sent is an older job's.
        let old = DeviceAlert { at: 50, ..alert };
        assert_eq!(derive_of(&d, &all, &[old]).state, AppState::Failed);
        // The device refused the Exec.
        let refused = cmd("c2", "Exec", &di, CommandState::Failed, Some(405), None);
        let s = derive_of(&d, &[&add, &refused], &[]);
        assert_eq!(
            (s.state, s.error_code.as_deref()),
            (AppState::Failed, Some("405"))
        );
        // Not sent yet: pending.
        let queued = CommandRecord {
            state: CommandState::Pending,
            send_count: 0,
            sent_at: None,
            ..exec.clone()
        };
        assert_eq!(
            derive_of(&d, &[&add, &queued], &[]).state,
            AppState::Pending
        );
        // Uninstall: Delete answered 404 → uninstalled (it was not there).
        let del = cmd("c9", "Delete", B, CommandState::Failed, Some(404), None);
        let u = dep("app-a1-device-uninstall", DeployState::Installed, &[&del]);
        let s = derive_of(&u, &[&del], &[]);
        assert_eq!(s.state, AppState::Uninstalled);
        assert_eq!(s.intent, Intent::Uninstall);
        // MSIX status values.
        let pfn =
            "./Device/Vendor/MSFT/EnterpriseModernAppManagement/AppInstallation/C.A_8wekyb3d8bbwe";
        let mexec = cmd(
            "m2",
            "Exec",
            &format!("{pfn}/HostedInstall"),
            CommandState::Done,
            Some(200),
            None,
        );
        let mst = cmd(
            "m3",
            "Get",
            &format!("{pfn}/Status"),
            CommandState::Done,
            Some(200),
            Some("3"),
        );
        let md = dep(
            "app-m1-device-required",
            DeployState::Installed,
            &[&mexec, &mst],
        );
        let m = [&mexec, &mst]
            .iter()
            .map(|c| (c.command_id.clone(), (*c).clone()))
            .collect();
        let rec = AppRecord {
            kind: AppKind::Msix,
            ..crate::apps::deliver::tests_record()
        };
        assert_eq!(
            derive(&md, &m, &[], Some(&rec), None, None).unwrap().state,
            AppState::Installed
        );
    }

    /// MSIX: the HostedInstall alert (not the MSI one) ends the install; a later session's
    /// Status re-read wins over the one sent with the install, 404 there means the node was
    /// cleaned up after success, a failed re-read takes the re-read LastError, and polling
    /// given up fails an unfinished install.
    #[test]
    fn derive_msix_from_the_alert_and_the_re_reads() {
        let pfn =
            "./Device/Vendor/MSFT/EnterpriseModernAppManagement/AppInstallation/C.A_8wekyb3d8bbwe";
        let hosted = format!("{pfn}/HostedInstall");
        let exec = cmd("m2", "Exec", &hosted, CommandState::Done, Some(200), None);
        let st = |id: &str, state, status, data| {
            cmd(id, "Get", &format!("{pfn}/Status"), state, status, data)
        };
        let st1 = st("m3", CommandState::Done, Some(200), Some("1"));
        let d = dep(
            "app-m1-device-required",
            DeployState::Installed,
            &[&exec, &st1],
        );
        let m: HashMap<String, CommandRecord> = [&exec, &st1]
            .iter()
            .map(|c| (c.command_id.clone(), (*c).clone()))
            .collect();
        let rec = AppRecord {
            kind: AppKind::Msix,
            ..crate::apps::deliver::tests_record()
        };
        let of = |alerts: &[DeviceAlert], p: Option<&Polled>| {
            derive(&d, &m, alerts, Some(&rec), None, p).unwrap()
        };
        assert_eq!(of(&[], None).state, AppState::Installing);
        let alert = |ty: &str, data: &str| DeviceAlert {
            alert_type: Some(ty.into()),
            source: Some(hosted.clone()),
            data: Some(data.into()),
            at: 150,
        };
        assert_eq!(
            of(&[alert(HOSTED_INSTALL_ALERT, "0")], None).state,
            AppState::Installed
        );
        let s = of(&[alert(HOSTED_INSTALL_ALERT, "-2147009293")], None);
        assert_eq!(
            (s.state, s.error_code.as_deref()),
            (AppState::Failed, Some("0x80073CF3"))
        );
        assert!(s.error.unwrap().contains("dependency"));
        // The MSI job's alert type is not an MSIX result.
        assert_eq!(
            of(&[alert(INSTALL_ALERT, "0")], None).state,
            AppState::Installing
        );
        // Re-reads.
        let re = |c: CommandRecord| Polled {
            status: Some(c),
            ..Polled::default()
        };
        let gone = st("p1", CommandState::Failed, Some(404), None);
        let s = of(&[], Some(&re(gone)));
        assert_eq!(s.state, AppState::Installed);
        assert!(s.reason.unwrap().contains("404"));
        let unanswered = st("p1", CommandState::Sent, None, None);
        assert_eq!(of(&[], Some(&re(unanswered))).state, AppState::Installing);
        let failed = Polled {
            last_error: Some(cmd(
                "p2",
                "Get",
                &format!("{pfn}/LastError"),
                CommandState::Done,
                Some(200),
                Some("-2146762487"),
            )),
            ..re(st("p1", CommandState::Done, Some(200), Some("2")))
        };
        let s = of(&[], Some(&failed));
        assert_eq!(
            (s.state, s.error_code.as_deref()),
            (AppState::Failed, Some("0x800B0109"))
        );
        let given_up = Polled {
            gave_up: Some("no final install state after 48 status re-reads".into()),
            ..re(st("p1", CommandState::Done, Some(200), Some("1")))
        };
        let s = of(&[], Some(&given_up));
        assert_eq!(s.state, AppState::Failed);
        assert!(s.error.unwrap().contains("48 status re-reads"));
        // A final state is not overridden by giving up.
        let done = Polled {
            gave_up: Some("x".into()),
            ..re(st("p1", CommandState::Done, Some(200), Some("3")))
        };
        assert_eq!(of(&[], Some(&done)).state, AppState::Installed);
    }

    #[test]
    fn codes_and_meanings() {
        assert_eq!(normalize_code("1603"), Some(("1603".into(), 1603)));
        assert_eq!(
            normalize_code("-2147024891"),
            Some(("0x80070005".into(), 0x8007_0005))
        );
        assert_eq!(
            normalize_code("0x80070002"),
            Some(("0x80070002".into(), 0x8007_0002))
        );
        assert_eq!(normalize_code("x"), None);
        assert_eq!(
            meaning(1603).as_deref(),
            Some("fatal error during installation")
        );
        assert_eq!(
            meaning(0x8007_0643).as_deref(),
            Some("fatal error during installation (Win32 error 1603)")
        );
        assert!(meaning(0x8009_1007).unwrap().contains("hash"));
        assert_eq!(
            meaning(0x8007_0002).as_deref(),
            Some("the system cannot find the file specified (Win32 error 2)")
        );
    }
}
