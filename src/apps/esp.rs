//! The Enrollment Status Page (ESP): which apps hold a freshly enrolled device (Autopilot,
//! OOBE) on the status page, for how long, and what the user may do on failure.
//!
//! An ESP configuration is assigned to device groups, or attached to Autopilot profiles (then
//! it applies to the devices the profile applies to). After every management round of a
//! device ([`after_round`]): if the device enrolled in the last [`START_WINDOW`] seconds during
//! OOBE and one of its groups has an ESP, winmdm queues the DMClient
//! `Provider/<ProviderID>/FirstSyncStatus` nodes (ExpectedMSIAppPackages,
//! ExpectedModernAppPackages, ExpectedPolicies, TimeOutUntilSyncFailure, BlockInStatusPage,
//! AllowCollectLogsButton, CustomErrorText, SkipDeviceStatusPage, SkipUserStatusPage) and
//! starts tracking the expected apps (those of the ESP's list assigned to the device) and the
//! expected configuration profiles (those of the ESP's list assigned to the device:
//! ExpectedPolicies lists the LocURIs they set). The device phase waits for the device-scope
//! items; the user phase for the user-scope ones (their commands, and the `./User` nodes, wait
//! for LoginStatus `user`). A phase whose apps are all installed and whose profiles are all
//! applied gets `ServerHasFinishedProvisioning` and `IsSyncDone` = true; a phase with an item
//! that ended in failure (an app's install failed: the install alert's error, a failed Status
//! with LastError, a refused command, polling given up; a profile the device refused) at once,
//! and a phase still unfinished when the timeout passes, gets `WasDeviceSuccessfullyProvisioned`
//! = 0 first (the page then shows failure with the CustomErrorText); the reason names the
//! items and their codes.

use serde::{Deserialize, Serialize};

use super::deliver::{self, Intent};
use super::state::{self, AppState};
use super::{AppKind, APPS};
use crate::app::App;
use crate::groups::{pair_key, scan_all_pairs, GroupError, GROUPS};
use crate::mdm::commands::{prepare, NewCommand};
use crate::profiles::Scope;
use crate::store::records::Kind;
use crate::store::{CommandRecord, CommandState, DeviceState, RecordOp, StoreError};

/// ESP configurations by id.
pub const ESPS: Kind<Esp> = Kind::new("esp");
/// `esp_id \0 group_id` → assigned at.
pub const ESP_GROUPS: Kind<i64> = Kind::new("esp_group");
/// `group_id \0 esp_id` → assigned at (reverse index).
pub const GROUP_ESPS: Kind<i64> = Kind::new("group_esp");
/// `autopilot_profile_id \0 esp_id` → attached at.
pub const AUTOPILOT_ESPS: Kind<i64> = Kind::new("autopilot_esp");
/// Per-device tracking, by device id.
pub const ESP_DEVICES: Kind<EspDevice> = Kind::new("esp_device");

/// How long after enrollment a device's first rounds start its ESP (seconds).
pub const START_WINDOW: i64 = 3600;
/// Most apps one ESP tracks.
pub const MAX_APPS: usize = 50;
/// Most configuration profiles one ESP tracks.
pub const MAX_PROFILES: usize = 50;
/// Most LocURIs one ExpectedPolicies list carries (one phase).
pub const MAX_POLICY_NODES: usize = 1000;
/// `CSP_LIST_DELIMITER` of the FirstSyncStatus lists.
pub const LIST_DELIMITER: char = '\u{F000}';

/// An ESP configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Esp {
    /// Id (random hex).
    pub id: String,
    /// Name.
    pub name: String,
    /// Apps that block (ids; those assigned to the device are tracked).
    pub apps: Vec<String>,
    /// Configuration profiles that block (ids; those assigned to the device are tracked).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// TimeOutUntilSyncFailure, minutes (1..=1440).
    pub timeout_minutes: u32,
    /// Whether the page blocks the device until done.
    pub block: bool,
    /// On failure the user may reset the device (BlockInStatusPage bit 1).
    pub allow_reset: bool,
    /// On failure the user may try again (bit 2).
    pub allow_retry: bool,
    /// On failure the user may continue anyway (bit 4).
    pub allow_continue: bool,
    /// AllowCollectLogsButton.
    pub allow_collect_logs: bool,
    /// CustomErrorText.
    pub custom_error_text: Option<String>,
    /// SkipDeviceStatusPage.
    pub skip_device_page: bool,
    /// SkipUserStatusPage.
    pub skip_user_page: bool,
    /// Autopilot profiles (ids) it is attached to: devices that profile applies to get it.
    #[serde(default)]
    pub autopilot_profiles: Vec<String>,
    /// Creation (Unix seconds).
    pub created_at: i64,
}

impl Esp {
    /// The BlockInStatusPage value: 0 (not blocking) or the OR of the remediation bits.
    pub fn block_value(&self) -> u32 {
        if !self.block {
            return 0;
        }
        u32::from(self.allow_reset)
            | (u32::from(self.allow_retry) << 1)
            | (u32::from(self.allow_continue) << 2)
    }
}

/// An ESP as the admin gives it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EspInput {
    /// Name.
    pub name: String,
    /// Blocking app ids.
    #[serde(default)]
    pub apps: Vec<String>,
    /// Blocking configuration profile ids (not the managed profiles of apps: list the app).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Minutes (default 60).
    #[serde(default)]
    pub timeout_minutes: Option<u32>,
    /// Default true.
    #[serde(default)]
    pub block: Option<bool>,
    /// Default false.
    #[serde(default)]
    pub allow_reset: Option<bool>,
    /// Default true.
    #[serde(default)]
    pub allow_retry: Option<bool>,
    /// Default false.
    #[serde(default)]
    pub allow_continue: Option<bool>,
    /// Default true.
    #[serde(default)]
    pub allow_collect_logs: Option<bool>,
    /// Shown on failure.
    #[serde(default)]
    pub custom_error_text: Option<String>,
    /// Default false.
    #[serde(default)]
    pub skip_device_page: Option<bool>,
    /// Default false.
    #[serde(default)]
    pub skip_user_page: Option<bool>,
    /// Autopilot profiles (id or name) to attach it to.
    #[serde(default)]
    pub autopilot_profiles: Vec<String>,
}

fn invalid(m: impl Into<String>) -> GroupError {
    GroupError::Invalid(m.into())
}

/// Creates an ESP configuration.
pub fn create(app: &App, i: EspInput) -> Result<Esp, GroupError> {
    let esp = build(app, i, crate::clock::random_hex(8), app.clock.now_unix())?;
    let now = esp.created_at;
    let mut ops = vec![ESPS.put_op(&esp.id, &esp)];
    for p in &esp.autopilot_profiles {
        ops.push(AUTOPILOT_ESPS.put_op(&pair_key(p, &esp.id), &now));
    }
    app.store.records().apply_records(&ops)?;
    tracing::info!(esp_id = %esp.id, apps = esp.apps.len(), profiles = esp.profiles.len(), autopilot_profiles = esp.autopilot_profiles.len(), "ESP created");
    Ok(esp)
}

/// Replaces ESP `id`'s configuration with `i`, under the rules of [`create`]: its group
/// assignments stay, its Autopilot attachments become `i`'s. Devices already tracked finish
/// as they started.
pub fn update(app: &App, id: &str, i: EspInput) -> Result<Esp, GroupError> {
    let s = app.store.records();
    for _ in 0..8 {
        let old = get(app, id)?;
        let esp = build(app, i.clone(), old.id.clone(), old.created_at)?;
        let now = app.clock.now_unix();
        let mut ops = vec![
            RecordOp::Expect {
                kind: ESPS.name,
                key: old.id.clone(),
                value: Some(crate::store::tx::encode(&old)),
            },
            ESPS.put_op(&esp.id, &esp),
        ];
        for p in &old.autopilot_profiles {
            if !esp.autopilot_profiles.contains(p) {
                ops.push(AUTOPILOT_ESPS.delete_op(&pair_key(p, &esp.id)));
            }
        }
        for p in &esp.autopilot_profiles {
            if !old.autopilot_profiles.contains(p) {
                ops.push(AUTOPILOT_ESPS.put_op(&pair_key(p, &esp.id), &now));
            }
        }
        if s.apply_records(&ops)? {
            tracing::info!(esp_id = %esp.id, apps = esp.apps.len(), profiles = esp.profiles.len(), "ESP updated");
            return Ok(esp);
        }
    }
    Err(GroupError::Conflict(
        "the ESP changed meanwhile; try again".into(),
    ))
}

/// Checks `i` against the rules and makes it ESP `id`.
fn build(app: &App, i: EspInput, id: String, created_at: i64) -> Result<Esp, GroupError> {
    let name = i.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name must be 1-128 characters without control characters",
        ));
    }
    if i.apps.len() > MAX_APPS {
        return Err(invalid(format!("an ESP tracks at most {MAX_APPS} apps")));
    }
    let mut apps: Vec<String> = Vec::new();
    for a in &i.apps {
        super::get(app, a)?;
        if !apps.contains(a) {
            apps.push(a.clone());
        }
    }
    if i.profiles.len() > MAX_PROFILES {
        return Err(invalid(format!(
            "an ESP tracks at most {MAX_PROFILES} profiles"
        )));
    }
    let mut profiles: Vec<String> = Vec::new();
    for p in &i.profiles {
        let prof = crate::profiles::get(app, p)?;
        if let Some(a) = &prof.app {
            return Err(invalid(format!(
                "profile {p} delivers app {a}: list the app in apps instead"
            )));
        }
        if !profiles.contains(&prof.id) {
            profiles.push(prof.id);
        }
    }
    let timeout_minutes = i.timeout_minutes.unwrap_or(60);
    if !(1..=1440).contains(&timeout_minutes) {
        return Err(invalid(
            "timeout_minutes must be 1..=1440 (TimeOutUntilSyncFailure)",
        ));
    }
    if let Some(t) = &i.custom_error_text {
        if t.chars().count() > 1024 || t.chars().any(|c| c.is_control() && c != '\n') {
            return Err(invalid("custom_error_text must be at most 1024 characters"));
        }
    }
    if i.autopilot_profiles.len() > 16 {
        return Err(invalid(
            "an ESP is attached to at most 16 Autopilot profiles",
        ));
    }
    let mut autopilot_profiles: Vec<String> = Vec::new();
    for p in &i.autopilot_profiles {
        let found = crate::autopilot::profiles::find(app.store.records(), p)?
            .ok_or_else(|| GroupError::NotFound(format!("Autopilot profile {p}")))?;
        if !autopilot_profiles.contains(&found.id) {
            autopilot_profiles.push(found.id);
        }
    }
    let esp = Esp {
        autopilot_profiles,
        id,
        name,
        apps,
        profiles,
        timeout_minutes,
        block: i.block.unwrap_or(true),
        allow_reset: i.allow_reset.unwrap_or(false),
        allow_retry: i.allow_retry.unwrap_or(true),
        allow_continue: i.allow_continue.unwrap_or(false),
        allow_collect_logs: i.allow_collect_logs.unwrap_or(true),
        custom_error_text: i.custom_error_text,
        skip_device_page: i.skip_device_page.unwrap_or(false),
        skip_user_page: i.skip_user_page.unwrap_or(false),
        created_at,
    };
    if esp.block && esp.block_value() == 0 {
        return Err(invalid(
            "a blocking page needs at least one of allow_reset, allow_retry, allow_continue (BlockInStatusPage is their bit mask)",
        ));
    }
    Ok(esp)
}

/// Looks an ESP up.
pub fn get(app: &App, id: &str) -> Result<Esp, GroupError> {
    ESPS.get(app.store.records(), id)?
        .ok_or_else(|| GroupError::NotFound(format!("ESP {id}")))
}

/// Deletes an ESP and its assignments (devices being tracked keep their record).
pub fn delete(app: &App, id: &str) -> Result<(), GroupError> {
    let esp = get(app, id)?;
    let s = app.store.records();
    let mut ops = vec![ESPS.delete_op(id)];
    for p in &esp.autopilot_profiles {
        ops.push(AUTOPILOT_ESPS.delete_op(&pair_key(p, id)));
    }
    for (g, _) in scan_all_pairs(s, ESP_GROUPS, id)? {
        ops.push(ESP_GROUPS.delete_op(&pair_key(id, &g)));
        ops.push(GROUP_ESPS.delete_op(&pair_key(&g, id)));
    }
    s.apply_records(&ops)?;
    Ok(())
}

/// Assigns an ESP to a group (`false`: it was).
pub fn assign(app: &App, id: &str, group_id: &str) -> Result<bool, GroupError> {
    get(app, id)?;
    if GROUPS.get(app.store.records(), group_id)?.is_none() {
        return Err(GroupError::NotFound(format!("group {group_id}")));
    }
    let now = app.clock.now_unix();
    Ok(app.store.records().apply_records(&[
        ESP_GROUPS.expect_absent(&pair_key(id, group_id)),
        ESP_GROUPS.put_op(&pair_key(id, group_id), &now),
        GROUP_ESPS.put_op(&pair_key(group_id, id), &now),
    ])?)
}

/// Removes an ESP's assignment to a group.
pub fn unassign(app: &App, id: &str, group_id: &str) -> Result<(), GroupError> {
    if ESP_GROUPS
        .get(app.store.records(), &pair_key(id, group_id))?
        .is_none()
    {
        return Err(GroupError::NotFound(format!(
            "assignment of ESP {id} to group {group_id}"
        )));
    }
    app.store.records().apply_records(&[
        ESP_GROUPS.delete_op(&pair_key(id, group_id)),
        GROUP_ESPS.delete_op(&pair_key(group_id, id)),
    ])?;
    Ok(())
}

/// The groups an ESP is assigned to.
pub fn groups(app: &App, id: &str) -> Result<Vec<String>, GroupError> {
    Ok(scan_all_pairs(app.store.records(), ESP_GROUPS, id)?
        .into_iter()
        .map(|(g, _)| g)
        .collect())
}

/// One app the ESP waits for on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// App.
    pub app_id: String,
    /// Device phase or user phase.
    pub scope: Scope,
    /// The node listed in ExpectedMSIAppPackages / ExpectedModernAppPackages.
    pub node: String,
}

/// One configuration profile the ESP waits for on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedPolicy {
    /// The profile.
    pub profile_id: String,
    /// Device phase or user phase (the profile's scope).
    pub scope: Scope,
    /// The LocURIs listed in ExpectedPolicies (the nodes the profile sets).
    pub nodes: Vec<String>,
}

/// How a phase ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// When (Unix seconds).
    pub at: i64,
    /// All expected apps installed.
    pub success: bool,
    /// Why (timeout: the apps not installed).
    pub reason: String,
}

/// A device's ESP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EspDevice {
    /// The ESP.
    pub esp_id: String,
    /// Device.
    pub device_id: String,
    /// The enrollment it tracks.
    pub enrolled_at: i64,
    /// First round seen (the timeout counts from here).
    pub started_at: i64,
    /// Timeout (minutes) when it started.
    pub timeout_minutes: u32,
    /// The apps waited for.
    pub expected: Vec<Expected>,
    /// The configuration profiles waited for.
    #[serde(default)]
    pub expected_policies: Vec<ExpectedPolicy>,
    /// Device phase end.
    pub device: Option<Released>,
    /// User phase end (`None` while waiting; no user apps: ends with the device phase).
    pub user: Option<Released>,
    /// Commands queued for it.
    pub command_ids: Vec<String>,
}

/// A device's ESP progress, as the admin sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Tracking record.
    #[serde(flatten)]
    pub tracking: EspDevice,
    /// `device`, `user` (waiting for the user's apps) or `done`.
    pub phase: String,
    /// When the timeout releases the device (Unix seconds).
    pub deadline: i64,
    /// Each expected app's state.
    pub items: Vec<serde_json::Value>,
    /// Each expected profile's state (`pending`, `verifying`, `applied`, `failed`, ...).
    pub policies: Vec<serde_json::Value>,
}

/// Where an expected profile stands on a device: the reconciler's status of its deployment
/// (`missing` when there is none any more) and, when it failed, what the device answered.
fn policy_state(
    app: &App,
    device_id: &str,
    profile_id: &str,
) -> Result<(String, Option<String>), StoreError> {
    let Some(dep) = crate::profiles::reconcile::DEPLOYMENTS
        .get(app.store.records(), &pair_key(profile_id, device_id))?
    else {
        return Ok(("missing".into(), None));
    };
    let st = crate::profiles::reconcile::status(app, &dep)?;
    let error = st.failures.first().map(|f| {
        let what = f
            .failed
            .first()
            .map(|n| n.target.clone())
            .or_else(|| f.targets.first().cloned())
            .unwrap_or_default();
        match (f.status, &f.error) {
            (Some(code), _) => format!("the device answered {code} for {what}"),
            (None, Some(e)) => format!("{e} ({what})"),
            (None, None) => format!("command {} was {:?} ({what})", f.command_id, f.state),
        }
    });
    Ok((st.status, error))
}

fn dmclient(app: &App, scope: Scope) -> String {
    let root = match scope {
        Scope::Device => "./Device/Vendor/MSFT",
        Scope::User => "./User/Vendor/MSFT",
    };
    format!(
        "{root}/DMClient/Provider/{}/FirstSyncStatus",
        app.cfg.provider_id
    )
}

fn command(
    device_id: &str,
    id: String,
    target: &str,
    format: &str,
    data: &str,
    now: i64,
) -> Result<CommandRecord, StoreError> {
    let mut c = prepare(
        device_id,
        NewCommand {
            verb: Some("Replace".into()),
            target: Some(target.into()),
            format: Some(format.into()),
            data: Some(data.into()),
            command_id: Some(id),
            ..NewCommand::default()
        },
        now,
    )
    .map_err(|e| StoreError::Backend {
        reason: format!("ESP command: {e}"),
    })?;
    c.user_scoped = target.starts_with("./User/");
    c.state = CommandState::Pending;
    Ok(c)
}

/// The node an expected app is tracked by.
fn expected_node(kind: AppKind, scope: Scope, rec: &super::AppRecord) -> Option<String> {
    match kind {
        AppKind::Msi => rec
            .product_code
            .as_deref()
            .map(|pc| format!("{}/Status;1", deliver::msi_node(scope, pc))),
        AppKind::Msix => rec
            .package_family_name
            .as_deref()
            .map(|pfn| format!("{}/Status;1", deliver::msix_install_node(scope, pfn))),
    }
}

/// The LocURIs ExpectedPolicies lists for profile `p`: the nodes it sets (`Add`/`Replace`
/// targets), or, for a profile that only runs `Exec`s, its targets; in profile order, once each.
fn policy_nodes(p: &crate::profiles::Profile) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in p.sets() {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    if out.is_empty() {
        for o in p.operations.iter().filter(|o| o.verb != "Delete") {
            for t in &o.targets {
                if !out.contains(t) {
                    out.push(t.clone());
                }
            }
        }
    }
    out
}

/// The ESP of a device: one assigned to its groups (the first by id), else one attached to
/// the Autopilot profile that applies to it.
fn esp_for(app: &App, d: &crate::store::Device) -> Result<Option<Esp>, StoreError> {
    let s = app.store.records();
    let mut ids: Vec<String> = Vec::new();
    for g in crate::groups::groups_of(s, &d.device_id)? {
        ids.extend(
            scan_all_pairs(s, GROUP_ESPS, &g)?
                .into_iter()
                .map(|(e, _)| e),
        );
    }
    ids.sort();
    if ids.is_empty() {
        if let Some(p) = crate::autopilot::applicable_profile(app, d)? {
            ids.extend(
                scan_all_pairs(s, AUTOPILOT_ESPS, &p.id)?
                    .into_iter()
                    .map(|(e, _)| e),
            );
        }
    }
    for id in ids {
        if let Some(e) = ESPS.get(s, &id)? {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

/// Whether an ESP may still start for `d` (enrolled in the last [`START_WINDOW`] seconds, in
/// OOBE, not bulk, none tracked yet, and some ESP exists): the management round then keeps a
/// session going that may bring the device into an ESP's group, so that the ESP nodes arrive
/// in the device's first session.
pub fn may_start(app: &App, d: &crate::store::Device, now: i64) -> Result<bool, StoreError> {
    if now - d.enrolled_at > START_WINDOW || d.not_in_oobe == Some(true) || d.bulk {
        return Ok(false);
    }
    let s = app.store.records();
    if ESP_DEVICES
        .get(s, &d.device_id)?
        .is_some_and(|t| t.enrolled_at == d.enrolled_at)
    {
        return Ok(false);
    }
    Ok(!ESPS.page(s, None, 1)?.0.is_empty())
}

/// Whether [`after_round`] has anything to do for `device_id` (two reads): it is tracked, or
/// an ESP exists that could start for it. Most rounds of a fleet without ESPs stop here.
pub fn may_act(app: &App, device_id: &str) -> Result<bool, StoreError> {
    Ok(ESP_DEVICES.get(app.store.records(), device_id)?.is_some() || any_esp(app)?)
}

/// Whether any ESP exists (none: no ESP can start).
fn any_esp(app: &App) -> Result<bool, StoreError> {
    Ok(!ESPS.page(app.store.records(), None, 1)?.0.is_empty())
}

/// Starts or advances the ESP of a device after one of its management rounds.
pub fn after_round(app: &App, device_id: &str) -> Result<(), StoreError> {
    let s = app.store.records();
    let tracking = ESP_DEVICES.get(s, device_id)?;
    if tracking.is_none() && !any_esp(app)? {
        return Ok(());
    }
    let Some(d) = app.store.get_device(device_id)? else {
        return Ok(());
    };
    if d.state != DeviceState::Enrolled {
        return Ok(());
    }
    let now = app.clock.now_unix();
    let tracking = tracking.filter(|t| t.enrolled_at == d.enrolled_at);
    let mut t = match tracking {
        Some(t) => t,
        None => {
            if now - d.enrolled_at > START_WINDOW || d.not_in_oobe == Some(true) || d.bulk {
                return Ok(());
            }
            let Some(esp) = esp_for(app, &d)? else {
                return Ok(());
            };
            return start(app, &esp, &d, now);
        }
    };
    if t.device.is_some() && t.user.is_some() {
        return Ok(());
    }
    let states = state::device_states(app, device_id)?;
    let installed = |e: &Expected| {
        states.iter().any(|s| {
            s.app_id == e.app_id
                && s.scope == e.scope
                && s.intent == Intent::Required
                && s.state == AppState::Installed
        })
    };
    let deadline = t.started_at + i64::from(t.timeout_minutes) * 60;
    let mut cmds = Vec::new();
    for scope in [Scope::Device, Scope::User] {
        let done = match scope {
            Scope::Device => t.device.is_some(),
            Scope::User => t.user.is_some(),
        };
        if done {
            continue;
        }
        let items: Vec<&Expected> = t.expected.iter().filter(|e| e.scope == scope).collect();
        let policies: Vec<&ExpectedPolicy> = t
            .expected_policies
            .iter()
            .filter(|p| p.scope == scope)
            .collect();
        if scope == Scope::User && items.is_empty() && policies.is_empty() {
            // No user apps: the user phase ends with the device phase.
            if let Some(r) = t.device.clone() {
                t.user = Some(r);
            }
            continue;
        }
        if scope == Scope::User && t.device.is_none() {
            continue; // the user phase follows the device phase
        }
        let missing: Vec<String> = items
            .iter()
            .filter(|e| !installed(e))
            .map(|e| e.app_id.clone())
            .collect();
        // Items whose install or command ended in failure: the phase fails at once.
        let mut failed: Vec<String> = items
            .iter()
            .filter_map(|e| {
                let s = states.iter().find(|s| {
                    s.app_id == e.app_id
                        && s.scope == e.scope
                        && s.intent == Intent::Required
                        && s.state == AppState::Failed
                })?;
                let what = s.error.as_deref().unwrap_or("failed");
                Some(match &s.error_code {
                    Some(c) => format!("app {} ({c}: {what})", e.app_id),
                    None => format!("app {} ({what})", e.app_id),
                })
            })
            .collect();
        let mut unapplied: Vec<String> = Vec::new();
        for p in &policies {
            let (state, error) = policy_state(app, device_id, &p.profile_id)?;
            if state != "applied" {
                let text = match error {
                    Some(e) => format!("{} ({state}: {e})", p.profile_id),
                    None => format!("{} ({state})", p.profile_id),
                };
                if state == "failed" {
                    failed.push(format!("profile {text}"));
                }
                unapplied.push(text);
            }
        }
        let release = if missing.is_empty() && unapplied.is_empty() {
            Some(Released {
                at: now,
                success: true,
                reason: "every expected app is installed and every expected profile applied".into(),
            })
        } else if !failed.is_empty() {
            Some(Released {
                at: now,
                success: false,
                reason: format!("failed: {}", failed.join(", ")),
            })
        } else if now >= deadline {
            let mut reason = format!("timeout after {} minutes", t.timeout_minutes);
            if !missing.is_empty() {
                reason.push_str(&format!("; not installed: {}", missing.join(", ")));
            }
            if !unapplied.is_empty() {
                reason.push_str(&format!("; profiles not applied: {}", unapplied.join(", ")));
            }
            Some(Released {
                at: now,
                success: false,
                reason,
            })
        } else {
            None
        };
        let Some(r) = release else { continue };
        let base = dmclient(app, scope);
        let tag = match scope {
            Scope::Device => "device",
            Scope::User => "user",
        };
        let pfx = format!("esp-{}-{}-{tag}", t.esp_id, t.enrolled_at);
        if !r.success {
            cmds.push(command(
                device_id,
                format!("{pfx}-failed"),
                &format!("{base}/WasDeviceSuccessfullyProvisioned"),
                "int",
                "0",
                now,
            )?);
        }
        cmds.push(command(
            device_id,
            format!("{pfx}-finished"),
            &format!("{base}/ServerHasFinishedProvisioning"),
            "bool",
            "true",
            now,
        )?);
        cmds.push(command(
            device_id,
            format!("{pfx}-done"),
            &format!("{base}/IsSyncDone"),
            "bool",
            "true",
            now,
        )?);
        tracing::info!(device_id, esp_id = %t.esp_id, phase = tag, success = r.success, reason = %r.reason, "ESP phase released");
        match scope {
            Scope::Device => t.device = Some(r),
            Scope::User => t.user = Some(r),
        }
    }
    if t.user.is_none()
        && t.device.is_some()
        && !t.expected.iter().any(|e| e.scope == Scope::User)
        && !t.expected_policies.iter().any(|p| p.scope == Scope::User)
    {
        t.user = t.device.clone();
    }
    t.command_ids
        .extend(cmds.iter().map(|c| c.command_id.clone()));
    write(app, &t, cmds, now)
}

fn write(app: &App, t: &EspDevice, cmds: Vec<CommandRecord>, now: i64) -> Result<(), StoreError> {
    app.store.apply_changes(
        crate::store::tx::ChangeSet {
            cancels: Vec::new(),
            commands: cmds,
            ops: vec![ESP_DEVICES.put_op(&t.device_id, t)],
        },
        now,
    )?;
    Ok(())
}

/// Queues the FirstSyncStatus nodes and starts tracking.
fn start(app: &App, esp: &Esp, d: &crate::store::Device, now: i64) -> Result<(), StoreError> {
    let s = app.store.records();
    let mut expected = Vec::new();
    for app_id in &esp.apps {
        let Some(rec) = APPS.get(s, app_id)? else {
            continue;
        };
        for scope in [Scope::Device, Scope::User] {
            let pid = deliver::profile_id(app_id, scope, Intent::Required);
            let dep =
                crate::profiles::reconcile::DEPLOYMENTS.get(s, &pair_key(&pid, &d.device_id))?;
            if !dep.is_some_and(|x| x.state == crate::profiles::reconcile::DeployState::Installed) {
                continue;
            }
            if let Some(node) = expected_node(rec.kind, scope, &rec) {
                expected.push(Expected {
                    app_id: app_id.clone(),
                    scope,
                    node,
                });
            }
        }
    }
    let mut policies: Vec<ExpectedPolicy> = Vec::new();
    for pid in &esp.profiles {
        let Some(p) = crate::profiles::PROFILES.get(s, pid)? else {
            continue;
        };
        let dep = crate::profiles::reconcile::DEPLOYMENTS.get(s, &pair_key(pid, &d.device_id))?;
        if !dep.is_some_and(|x| x.state == crate::profiles::reconcile::DeployState::Installed) {
            continue;
        }
        policies.push(ExpectedPolicy {
            profile_id: pid.clone(),
            scope: p.scope,
            nodes: policy_nodes(&p),
        });
    }
    let pfx = format!("esp-{}-{}", esp.id, d.enrolled_at);
    let mut cmds = Vec::new();
    let dev = dmclient(app, Scope::Device);
    let list = |scope: Scope, kind: AppKind| {
        expected
            .iter()
            .filter(|e| {
                e.scope == scope
                    && APPS
                        .get(s, &e.app_id)
                        .ok()
                        .flatten()
                        .is_some_and(|r| r.kind == kind)
            })
            .map(|e| e.node.clone())
            .collect::<Vec<_>>()
            .join(&LIST_DELIMITER.to_string())
    };
    let mut n = 0;
    let mut add = |cmds: &mut Vec<CommandRecord>,
                   target: String,
                   format: &str,
                   data: String|
     -> Result<(), StoreError> {
        n += 1;
        cmds.push(command(
            &d.device_id,
            format!("{pfx}-{n}"),
            &target,
            format,
            &data,
            now,
        )?);
        Ok(())
    };
    for scope in [Scope::Device, Scope::User] {
        let base = dmclient(app, scope);
        for (node, kind) in [
            ("ExpectedMSIAppPackages", AppKind::Msi),
            ("ExpectedModernAppPackages", AppKind::Msix),
        ] {
            let v = list(scope, kind);
            if !v.is_empty() {
                add(&mut cmds, format!("{base}/{node}"), "chr", v)?;
            }
        }
        let mut nodes: Vec<&str> = Vec::new();
        for n in policies
            .iter()
            .filter(|p| p.scope == scope)
            .flat_map(|p| p.nodes.iter())
        {
            if !nodes.contains(&n.as_str()) {
                nodes.push(n);
            }
        }
        if nodes.len() > MAX_POLICY_NODES {
            tracing::warn!(device_id = %d.device_id, esp_id = %esp.id, nodes = nodes.len(), "ExpectedPolicies cut to {MAX_POLICY_NODES} LocURIs (the profiles are still tracked)");
            nodes.truncate(MAX_POLICY_NODES);
        }
        if !nodes.is_empty() {
            add(
                &mut cmds,
                format!("{base}/ExpectedPolicies"),
                "chr",
                nodes.join(&LIST_DELIMITER.to_string()),
            )?;
        }
    }
    add(
        &mut cmds,
        format!("{dev}/TimeOutUntilSyncFailure"),
        "int",
        esp.timeout_minutes.to_string(),
    )?;
    add(
        &mut cmds,
        format!("{dev}/BlockInStatusPage"),
        "int",
        esp.block_value().to_string(),
    )?;
    add(
        &mut cmds,
        format!("{dev}/AllowCollectLogsButton"),
        "bool",
        esp.allow_collect_logs.to_string(),
    )?;
    if let Some(t) = &esp.custom_error_text {
        add(
            &mut cmds,
            format!("{dev}/CustomErrorText"),
            "chr",
            t.clone(),
        )?;
    }
    add(
        &mut cmds,
        format!("{dev}/SkipDeviceStatusPage"),
        "bool",
        esp.skip_device_page.to_string(),
    )?;
    add(
        &mut cmds,
        format!("{dev}/SkipUserStatusPage"),
        "bool",
        esp.skip_user_page.to_string(),
    )?;
    let t = EspDevice {
        esp_id: esp.id.clone(),
        device_id: d.device_id.clone(),
        enrolled_at: d.enrolled_at,
        started_at: now,
        timeout_minutes: esp.timeout_minutes,
        expected,
        expected_policies: policies,
        device: None,
        user: None,
        command_ids: cmds.iter().map(|c| c.command_id.clone()).collect(),
    };
    tracing::info!(device_id = %d.device_id, esp_id = %esp.id, expected = t.expected.len(), policies = t.expected_policies.len(), "ESP started: FirstSyncStatus nodes queued");
    write(app, &t, cmds, now)?;
    // Nothing to wait for: release at once.
    if t.expected.is_empty() && t.expected_policies.is_empty() {
        return after_round(app, &d.device_id);
    }
    Ok(())
}

/// A device's ESP progress (`None`: no ESP tracked).
pub fn progress(app: &App, device_id: &str) -> Result<Option<Progress>, StoreError> {
    let Some(t) = ESP_DEVICES.get(app.store.records(), device_id)? else {
        return Ok(None);
    };
    let states = state::device_states(app, device_id)?;
    let items = t
        .expected
        .iter()
        .map(|e| {
            let st = states
                .iter()
                .find(|s| s.app_id == e.app_id && s.scope == e.scope && s.intent == Intent::Required);
            serde_json::json!({"app_id": e.app_id, "scope": e.scope, "node": e.node, "state": st.map(|s| s.state), "error": st.and_then(|s| s.error.clone())})
        })
        .collect();
    let mut policies = Vec::new();
    for p in &t.expected_policies {
        let (state, error) = policy_state(app, device_id, &p.profile_id)?;
        policies.push(serde_json::json!({"profile_id": p.profile_id, "scope": p.scope, "nodes": p.nodes, "state": state, "error": error}));
    }
    let phase = match (&t.device, &t.user) {
        (None, _) => "device",
        (Some(_), None) => "user",
        (Some(_), Some(_)) => "done",
    };
    Ok(Some(Progress {
        deadline: t.started_at + i64::from(t.timeout_minutes) * 60,
        phase: phase.into(),
        items,
        policies,
        tracking: t,
    }))
}
