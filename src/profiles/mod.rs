//! Configuration profiles: a named, versioned set of CSP operations (`Add`/`Replace`/`Delete`/
//! `Exec`, optionally one `Atomic`) for the device or the user scope, assigned to device groups
//! and delivered by the [`reconcile`]r through the ordinary command queue.
//!
//! A profile is given either as SyncML fragments (parsed with the SyncML codec and stored
//! re-serialised canonically, so escaped text and CDATA come out as the exact data) or as a list
//! of `{target, format, type, data}` settings (each a `Replace`, or the given `verb`). Every
//! operation becomes one queued command whose id is `profile-<id>-v<version>-<n>` (a later
//! delivery to the same device after a removal or re-enrollment appends `-r<generation>`), so a
//! re-run of the reconciler queues nothing twice; editing the operations or `push` bumps the
//! version and so the ids.

pub mod reconcile;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::groups::{pair_key, scan_all_pairs, GroupError, GROUPS};
use crate::mdm::commands::{prepare, NewCommand};
use crate::store::records::Kind;
use crate::store::RecordOp;
use crate::syncml::{self, Command};

/// Profile records by id.
pub const PROFILES: Kind<Profile> = Kind::new("profile");
/// Unique profile names (lower-case) → id.
pub const PROFILE_NAMES: Kind<String> = Kind::new("profile_name");
/// `profile_id \0 group_id` → assignment.
pub const ASSIGNMENTS: Kind<Assigned> = Kind::new("profile_assignment");
/// `group_id \0 profile_id` → assignment (reverse index).
pub const GROUP_PROFILES: Kind<Assigned> = Kind::new("group_profile");

/// Most operations in one profile.
pub const MAX_OPERATIONS: usize = 200;
/// Largest profile request body.
pub const MAX_PROFILE_BODY: usize = 1024 * 1024;

/// Where a profile applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Device-wide nodes (`./Device/...`, `./Vendor/...`).
    #[default]
    Device,
    /// The signed-in user's nodes (`./User/...`): delivered once the device reports LoginStatus
    /// `user`, never to bulk-enrolled devices.
    User,
}

/// One CSP operation of a profile, ready to queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// `Add`, `Replace`, `Delete`, `Exec` or `Atomic`.
    pub verb: String,
    /// Canonical SyncML fragment (CmdIDs are assigned when sent).
    pub syncml: String,
    /// Every target LocURI of the operation (inside an `Atomic` too).
    pub targets: Vec<String>,
    /// The nodes it sets (`Add`/`Replace` targets): deleted when the profile is removed and no
    /// other profile of the device sets them.
    pub sets: Vec<String>,
}

/// A configuration profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Id (random hex).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Device or user scope.
    pub scope: Scope,
    /// Device types it is limited to (`windows-pc`, `hololens`); empty: all.
    #[serde(default)]
    pub device_types: Vec<String>,
    /// Bumped by every edit of the operations and by `push`.
    pub version: u32,
    /// The operations, in delivery order.
    pub operations: Vec<Operation>,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Last change (Unix seconds).
    pub updated_at: i64,
    /// The app whose assignment this profile delivers ([`crate::apps::deliver`]): such a
    /// profile is managed through `/api/v1/apps`, not edited or assigned as a profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

impl Profile {
    /// Every node the profile sets.
    pub fn sets(&self) -> impl Iterator<Item = &str> {
        self.operations
            .iter()
            .flat_map(|o| o.sets.iter().map(String::as_str))
    }
}

/// An assignment of a profile to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assigned {
    /// When (Unix seconds).
    pub at: i64,
}

/// One setting of the list form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    /// `Replace` (default), `Add`, `Delete` or `Exec`.
    #[serde(default)]
    pub verb: Option<String>,
    /// Target LocURI.
    pub target: String,
    /// `Meta/Format`.
    #[serde(default)]
    pub format: Option<String>,
    /// `Meta/Type`.
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    /// `Data`.
    #[serde(default)]
    pub data: Option<String>,
}

/// A profile as the admin sends it (create), or the fields to change (PATCH).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileInput {
    /// Unique name.
    #[serde(default)]
    pub name: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// `device` (default) or `user`.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// `windows-pc` and/or `hololens`; empty or absent: all.
    #[serde(default)]
    pub device_types: Option<Vec<String>>,
    /// SyncML fragments.
    #[serde(default)]
    pub syncml: Option<String>,
    /// Settings list.
    #[serde(default)]
    pub settings: Option<Vec<Setting>>,
}

fn invalid(m: impl Into<String>) -> GroupError {
    GroupError::Invalid(m.into())
}

fn collect(cmd: &Command<'_>, targets: &mut Vec<String>, sets: &mut Vec<String>) {
    match cmd {
        Command::Atomic(c) | Command::Sequence(c) => {
            c.commands.iter().for_each(|i| collect(i, targets, sets))
        }
        c => {
            for t in c.items().iter().filter_map(|i| i.target.as_ref()) {
                let t = t.loc_uri.trim().to_string();
                if matches!(c, Command::Add(_) | Command::Replace(_)) && !sets.contains(&t) {
                    sets.push(t.clone());
                }
                targets.push(t);
            }
        }
    }
}

/// Validates one command through the admin-command rules and returns it as an operation.
fn operation(req: NewCommand) -> Result<Operation, GroupError> {
    let rec = prepare("", req, 0).map_err(|e| invalid(e.to_string()))?;
    let parsed = syncml::parse_fragment(rec.syncml.as_bytes())
        .map_err(|e| invalid(format!("syncml: {e}")))?;
    let (mut targets, mut sets) = (Vec::new(), Vec::new());
    for c in &parsed {
        match c {
            Command::Get(_) => return Err(invalid("a profile sets state: Get is not allowed")),
            Command::Sequence(_) => {
                return Err(invalid(
                    "Sequence is not allowed in a profile (operations are sent in order already)",
                ))
            }
            _ => {}
        }
        collect(c, &mut targets, &mut sets);
    }
    Ok(Operation {
        verb: rec.verb,
        syncml: rec.syncml,
        targets,
        sets,
    })
}

/// Builds the operations of `syncml` or `settings` (exactly one given) for `scope`.
pub fn operations(
    syncml_text: Option<&str>,
    settings: Option<&[Setting]>,
    scope: Scope,
) -> Result<Vec<Operation>, GroupError> {
    let ops: Vec<Operation> = match (syncml_text, settings) {
        (Some(_), Some(_)) => return Err(invalid("give either syncml or settings, not both")),
        (None, None) => return Err(invalid("syncml or settings is required")),
        (Some(x), None) => {
            let cmds = syncml::parse_fragment(x.as_bytes())
                .map_err(|e| invalid(format!("syncml: {e}")))?;
            if cmds
                .iter()
                .filter(|c| matches!(c, Command::Atomic(_)))
                .count()
                > 1
            {
                return Err(invalid("a profile holds at most one Atomic"));
            }
            let mut out = Vec::with_capacity(cmds.len());
            for c in &cmds {
                let mut one = Vec::new();
                syncml::write_fragment(std::slice::from_ref(c), &mut one);
                out.push(operation(NewCommand {
                    syncml: Some(String::from_utf8_lossy(&one).into_owned()),
                    command_id: Some("profile".into()),
                    ..NewCommand::default()
                })?);
            }
            out
        }
        (None, Some(list)) => list
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let verb = s.verb.clone().unwrap_or_else(|| "Replace".into());
                let row = |e: GroupError| match e {
                    GroupError::Invalid(reason) => GroupError::InvalidSetting { index, reason },
                    e => e,
                };
                if verb == "Get" {
                    return Err(row(invalid("a profile sets state: Get is not allowed")));
                }
                let op = operation(NewCommand {
                    verb: Some(verb),
                    target: Some(s.target.clone()),
                    format: s.format.clone(),
                    ty: s.ty.clone(),
                    data: s.data.clone(),
                    command_id: Some("profile".into()),
                    ..NewCommand::default()
                })
                .map_err(row)?;
                check_scope(&op, scope).map_err(row)?;
                Ok(op)
            })
            .collect::<Result<_, _>>()?,
    };
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        return Err(invalid(format!(
            "a profile holds 1..={MAX_OPERATIONS} operations"
        )));
    }
    for op in &ops {
        check_scope(op, scope)?;
    }
    Ok(ops)
}

/// Every target of `op` is a node of `scope` (`./User/...` for the user scope, anything else
/// for the device scope).
fn check_scope(op: &Operation, scope: Scope) -> Result<(), GroupError> {
    for t in &op.targets {
        let user = t.starts_with("./User/");
        match scope {
            Scope::User if !user => {
                return Err(invalid(format!(
                    "a user-scope profile targets ./User/... only; {t:?} is not"
                )))
            }
            Scope::Device if user => {
                return Err(invalid(format!(
                    "{t:?} is a user node: give the profile scope \"user\""
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The profile's operations as settings rows (`verb`, `target`, `format`, `type`, `data`), when
/// every operation is one command with one target (what the settings form makes); `None` when
/// one is not (an `Atomic`, several items): it is edited as SyncML.
pub fn settings_of(p: &Profile) -> Option<Vec<Setting>> {
    p.operations
        .iter()
        .map(|op| {
            let cmds = syncml::parse_fragment(op.syncml.as_bytes()).ok()?;
            let [cmd] = cmds.as_slice() else { return None };
            let c = match cmd {
                Command::Add(c) | Command::Replace(c) | Command::Delete(c) | Command::Exec(c) => c,
                _ => return None,
            };
            let [item] = c.items.as_slice() else {
                return None;
            };
            let meta = item.meta.as_ref().or(c.meta.as_ref());
            let text = |t: Option<&syncml::Text<'_>>| t.map(|t| t.to_string());
            Some(Setting {
                verb: Some(cmd.name().to_string()),
                target: item.target.as_ref()?.loc_uri.trim().to_string(),
                format: text(meta.and_then(|m| m.format.as_ref())),
                ty: text(meta.and_then(|m| m.ty.as_ref())),
                data: text(item.data.as_ref()),
            })
        })
        .collect()
}

fn validate_device_types(v: &[String]) -> Result<Vec<String>, GroupError> {
    let mut out: Vec<String> = Vec::new();
    for t in v {
        let t = t.trim().to_ascii_lowercase();
        if !matches!(t.as_str(), "windows-pc" | "hololens") {
            return Err(invalid(format!(
                "device_types holds windows-pc and/or hololens, not {t:?}"
            )));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn validate_name(name: &str) -> Result<String, GroupError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) {
        return Err(invalid(
            "name must be 1-128 characters without control characters",
        ));
    }
    Ok(n.to_string())
}

/// Creates a profile (version 1; not assigned to any group yet).
pub fn create(app: &App, p: ProfileInput) -> Result<Profile, GroupError> {
    let name = validate_name(p.name.as_deref().unwrap_or(""))?;
    if p.description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(invalid("description must be at most 1024 bytes"));
    }
    let scope = p.scope.unwrap_or_default();
    let operations = operations(p.syncml.as_deref(), p.settings.as_deref(), scope)?;
    let now = app.clock.now_unix();
    let prof = Profile {
        id: crate::clock::random_hex(8),
        name: name.clone(),
        description: p.description,
        scope,
        device_types: validate_device_types(p.device_types.as_deref().unwrap_or(&[]))?,
        version: 1,
        operations,
        created_at: now,
        updated_at: now,
        app: None,
    };
    let key = name.to_lowercase();
    let ok = app.store.records().apply_records(&[
        PROFILE_NAMES.expect_absent(&key),
        PROFILE_NAMES.put_op(&key, &prof.id),
        PROFILES.put_op(&prof.id, &prof),
    ])?;
    if !ok {
        return Err(GroupError::Conflict(format!(
            "a profile named {name:?} already exists"
        )));
    }
    tracing::info!(profile_id = %prof.id, name = %prof.name, scope = ?prof.scope, operations = prof.operations.len(), "profile created");
    Ok(prof)
}

/// Looks a profile up.
pub fn get(app: &App, id: &str) -> Result<Profile, GroupError> {
    PROFILES
        .get(app.store.records(), id)?
        .ok_or_else(|| GroupError::NotFound(format!("profile {id}")))
}

/// What an edit did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reconciled {
    /// Devices reconciled.
    pub devices: usize,
    /// Commands queued.
    pub queued: usize,
}

/// Edits a profile: new operations or scope bump the version (`bump` forces a new version: a
/// re-push). The devices concerned still need reconciling (a job, or [`update`]).
pub fn update_record(
    app: &App,
    id: &str,
    p: ProfileInput,
    bump: bool,
) -> Result<Profile, GroupError> {
    let s = app.store.records();
    let old = get(app, id)?;
    not_managed(&old)?;
    let mut prof = old.clone();
    let mut ops = Vec::new();
    if let Some(n) = &p.name {
        let n = validate_name(n)?;
        if n.to_lowercase() != old.name.to_lowercase() {
            ops.push(PROFILE_NAMES.expect_absent(&n.to_lowercase()));
            ops.push(PROFILE_NAMES.put_op(&n.to_lowercase(), &prof.id));
            ops.push(PROFILE_NAMES.delete_op(&old.name.to_lowercase()));
        }
        prof.name = n;
    }
    if let Some(d) = p.description {
        if d.len() > 1024 {
            return Err(invalid("description must be at most 1024 bytes"));
        }
        prof.description = Some(d);
    }
    if let Some(t) = &p.device_types {
        prof.device_types = validate_device_types(t)?;
    }
    let mut new_version = bump;
    if p.syncml.is_some() || p.settings.is_some() || p.scope.is_some() {
        let scope = p.scope.unwrap_or(old.scope);
        if p.syncml.is_some() || p.settings.is_some() {
            prof.operations = operations(p.syncml.as_deref(), p.settings.as_deref(), scope)?;
        } else if scope != old.scope {
            return Err(invalid(
                "changing the scope needs new operations (syncml or settings) for that scope",
            ));
        }
        prof.scope = scope;
        new_version |= prof.operations != old.operations || prof.scope != old.scope;
    }
    if new_version {
        prof.version = old.version + 1;
    }
    prof.updated_at = app.clock.now_unix();
    ops.push(RecordOp::Expect {
        kind: PROFILES.name,
        key: prof.id.clone(),
        value: Some(crate::store::tx::encode(&old)),
    });
    ops.push(PROFILES.put_op(&prof.id, &prof));
    if !s.apply_records(&ops)? {
        return Err(GroupError::Conflict(
            "the name is taken, or the profile changed meanwhile".into(),
        ));
    }
    tracing::info!(profile_id = %prof.id, version = prof.version, "profile updated");
    Ok(prof)
}

/// Edits a profile ([`update_record`]), then reconciles every device concerned in this call.
pub fn update(
    app: &App,
    id: &str,
    p: ProfileInput,
    bump: bool,
) -> Result<(Profile, Reconciled), GroupError> {
    let prof = update_record(app, id, p, bump)?;
    let r = reconcile::profile(app, &prof.id)?;
    Ok((prof, r))
}

/// Deletes a profile and reconciles every device that had it (the removal), in this call.
pub fn delete(app: &App, id: &str) -> Result<Reconciled, GroupError> {
    delete_record(app, id)?;
    reconcile::profile(app, id)
}

/// Deletes a profile and its assignments; the devices that had it still need reconciling.
pub fn delete_record(app: &App, id: &str) -> Result<(), GroupError> {
    let prof = get(app, id)?;
    not_managed(&prof)?;
    delete_any(app, &prof)
}

/// Refuses a profile that delivers an app (it changes through `/api/v1/apps`).
pub fn not_managed(p: &Profile) -> Result<(), GroupError> {
    match &p.app {
        Some(a) => Err(GroupError::Conflict(format!(
            "profile {} delivers app {a}: change it through /api/v1/apps/{a}",
            p.id
        ))),
        None => Ok(()),
    }
}

/// Deletes a profile record (managed or not) and its assignments.
pub(crate) fn delete_any(app: &App, prof: &Profile) -> Result<(), GroupError> {
    let id = prof.id.as_str();
    let s = app.store.records();
    let mut ops = vec![
        PROFILES.delete_op(id),
        PROFILE_NAMES.delete_op(&prof.name.to_lowercase()),
    ];
    for (gid, _) in scan_all_pairs(s, ASSIGNMENTS, id)? {
        ops.extend(unassign_ops(id, &gid));
    }
    s.apply_records(&ops)?;
    tracing::info!(profile_id = %id, "profile deleted");
    Ok(())
}

/// Record ops removing the assignment of `profile_id` to `group_id`.
pub fn unassign_ops(profile_id: &str, group_id: &str) -> [RecordOp; 2] {
    [
        ASSIGNMENTS.delete_op(&pair_key(profile_id, group_id)),
        GROUP_PROFILES.delete_op(&pair_key(group_id, profile_id)),
    ]
}

/// Assigns a profile to a group and reconciles the group's members in this call. `false`: it
/// already was.
pub fn assign(app: &App, id: &str, group_id: &str) -> Result<(bool, Reconciled), GroupError> {
    let created = assign_record(app, id, group_id)?;
    let r = reconcile::profile(app, id)?;
    tracing::info!(profile_id = %id, group_id, created, devices = r.devices, queued = r.queued, "profile assigned");
    Ok((created, r))
}

/// Records the assignment of a profile to a group (`false`: it already was); the members still
/// need reconciling.
pub fn assign_record(app: &App, id: &str, group_id: &str) -> Result<bool, GroupError> {
    not_managed(&get(app, id)?)?;
    assign_any(app, id, group_id)
}

/// [`assign_record`] for any profile, managed ones too ([`crate::apps::deliver`]).
pub(crate) fn assign_any(app: &App, id: &str, group_id: &str) -> Result<bool, GroupError> {
    get(app, id)?;
    if GROUPS.get(app.store.records(), group_id)?.is_none() {
        return Err(GroupError::NotFound(format!("group {group_id}")));
    }
    let a = Assigned {
        at: app.clock.now_unix(),
    };
    let key = pair_key(id, group_id);
    let created = app.store.records().apply_records(&[
        ASSIGNMENTS.expect_absent(&key),
        ASSIGNMENTS.put_op(&key, &a),
        GROUP_PROFILES.put_op(&pair_key(group_id, id), &a),
    ])?;
    Ok(created)
}

/// Removes an assignment and reconciles in this call (the profile's settings are deleted from
/// devices no other assignment covers). `NotFound` when it was not assigned.
pub fn unassign(app: &App, id: &str, group_id: &str) -> Result<Reconciled, GroupError> {
    unassign_record(app, id, group_id)?;
    let r = reconcile::profile(app, id)?;
    tracing::info!(profile_id = %id, group_id, devices = r.devices, queued = r.queued, "profile unassigned");
    Ok(r)
}

/// Removes an assignment (`NotFound` when it was not assigned); the devices still need
/// reconciling.
pub fn unassign_record(app: &App, id: &str, group_id: &str) -> Result<(), GroupError> {
    not_managed(&get(app, id)?)?;
    unassign_any(app, id, group_id)
}

/// [`unassign_record`] for any profile, managed ones too ([`crate::apps::deliver`]).
pub(crate) fn unassign_any(app: &App, id: &str, group_id: &str) -> Result<(), GroupError> {
    get(app, id)?;
    let key = pair_key(id, group_id);
    if ASSIGNMENTS.get(app.store.records(), &key)?.is_none() {
        return Err(GroupError::NotFound(format!(
            "assignment of profile {id} to group {group_id}"
        )));
    }
    // reconcile::profile covers every device holding a deployment of the profile, so the
    // members of this group are reconciled although the assignment is gone.
    app.store
        .records()
        .apply_records(&unassign_ops(id, group_id))?;
    Ok(())
}

/// The groups a profile is assigned to.
pub fn assignments(app: &App, id: &str) -> Result<Vec<String>, GroupError> {
    Ok(scan_all_pairs(app.store.records(), ASSIGNMENTS, id)?
        .into_iter()
        .map(|(g, _)| g)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect())
}
