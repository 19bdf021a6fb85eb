//! The reconciler: per device, compares the profiles its groups are assigned (desired) with the
//! deployments recorded for it (actual) and queues the difference through the command queue.
//!
//! * A desired, applicable profile not yet installed at its current version is queued: one
//!   command per operation, device-scope profiles before user-scope ones.
//! * A profile no longer desired (assignment or membership gone, profile deleted, no longer
//!   applicable) gets a `Delete` for every node it set that no profile still installed on the
//!   device sets; its unanswered commands are cancelled.
//! * A new version does both: the new operations, and `Delete` for nodes the old version set
//!   and nothing sets any more.
//! * User-scope profiles are `not_applicable` on bulk-enrolled devices; `device_types` limits
//!   apply the same way.
//!
//! Deployments are records `profile_deployment` = `profile_id \0 device_id` (the profile's
//! status list) with the reverse index `device_profile` = `device_id \0 profile_id`. Their
//! status is derived from the queued commands' state, like device actions: all `done` →
//! `applied`; any other answered state (4xx/5xx, 214/215/216, a failed nested command, a
//! server-side error) → `failed` (codes, states and, for an Atomic, the failing nested
//! LocURIs); some sent → `verifying`, else `pending`. Work is applied in chunks of [`CHUNK`] devices: one queue transaction and one
//! record batch per chunk.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::groups::{self, pair_key, scan_all_pairs, scan_pairs, GroupError, MEMBERS};
use crate::store::records::Kind;
use crate::store::{CommandRecord, CommandState, Device, DeviceState, RecordOp, StoreError};

use super::{Profile, Reconciled, Scope, ASSIGNMENTS, GROUP_PROFILES, PROFILES};

/// `profile_id \0 device_id` → deployment.
pub const DEPLOYMENTS: Kind<Deployment> = Kind::new("profile_deployment");
/// `device_id \0 profile_id` → `true` (reverse index).
pub const DEVICE_PROFILES: Kind<bool> = Kind::new("device_profile");

/// Devices per transaction.
pub const CHUNK: usize = 500;

/// Where a profile stands on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    /// Its operations are queued/delivered.
    Installed,
    /// Assigned but not for this device (reason given).
    NotApplicable,
    /// Taken off: its `Delete`s are queued/delivered.
    Removed,
}

/// One queued command of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// Command id.
    pub command_id: String,
    /// Its target LocURIs.
    pub targets: Vec<String>,
}

/// A profile's deployment on one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Profile.
    pub profile_id: String,
    /// Device.
    pub device_id: String,
    /// State.
    pub state: DeployState,
    /// Profile version installed (or removed).
    pub version: u32,
    /// Deliveries of this profile to this device so far, minus one (suffix of command ids).
    pub generation: u32,
    /// `enrolled_at` of the device it was delivered to (a re-enrollment delivers again).
    pub enrolled_at: i64,
    /// The install commands (`Installed`) or `Delete` commands (`Removed`).
    pub commands: Vec<Queued>,
    /// Nodes it set (`Installed`).
    pub sets: Vec<String>,
    /// Why not applicable.
    pub reason: Option<String>,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

fn command_id(pid: &str, version: u32, generation: u32, kind: &str, n: usize) -> String {
    let mut id = format!("profile-{pid}-v{version}-{kind}{n}");
    if generation > 0 {
        id.push_str(&format!("-r{generation}"));
    }
    id
}

/// Why `p` does not apply to `d`, if it does not.
pub fn not_applicable(p: &Profile, d: &Device) -> Option<String> {
    let kind = crate::groups::query::device_kind(d);
    if !p.device_types.is_empty() && !p.device_types.iter().any(|t| t == kind) {
        return Some(format!(
            "device type {kind} is not in the profile's device_types {:?}",
            p.device_types
        ));
    }
    if p.scope == Scope::User && d.bulk {
        return Some(
            "bulk-enrolled device: user-scope profiles are not delivered (device-level configuration only)"
                .into(),
        );
    }
    None
}

#[derive(Default)]
struct Batch {
    cancels: Vec<(String, String)>,
    commands: Vec<CommandRecord>,
    ops: Vec<RecordOp>,
}

impl Batch {
    fn queue(
        &mut self,
        d: &Device,
        id: String,
        verb: &str,
        syncml: String,
        targets: &[String],
        now: i64,
    ) {
        self.commands.push(CommandRecord {
            command_id: id,
            device_id: d.device_id.clone(),
            seq: 0,
            verb: verb.to_string(),
            target: targets.first().cloned(),
            syncml,
            user_scoped: targets.iter().any(|t| t.starts_with("./User/")),
            state: CommandState::Pending,
            status: None,
            results: Vec::new(),
            created_at: now,
            sent_at: None,
            completed_at: None,
            send_count: 0,
            ..CommandRecord::default()
        });
    }

    fn put(&mut self, dep: &Deployment) {
        self.ops
            .push(DEPLOYMENTS.put_op(&pair_key(&dep.profile_id, &dep.device_id), dep));
        self.ops
            .push(DEVICE_PROFILES.put_op(&pair_key(&dep.device_id, &dep.profile_id), &true));
    }

    fn drop_dep(&mut self, pid: &str, did: &str) {
        self.ops.push(DEPLOYMENTS.delete_op(&pair_key(pid, did)));
        self.ops
            .push(DEVICE_PROFILES.delete_op(&pair_key(did, pid)));
    }
}

type Cache = HashMap<String, Option<Profile>>;

fn cached<'c>(
    app: &App,
    cache: &'c mut Cache,
    pid: &str,
) -> Result<Option<&'c Profile>, StoreError> {
    if !cache.contains_key(pid) {
        let p = PROFILES.get(app.store.records(), pid)?;
        cache.insert(pid.to_string(), p);
    }
    Ok(cache.get(pid).and_then(Option::as_ref))
}

/// The deployments recorded for a device, by profile id.
pub fn deployments_of(app: &App, did: &str) -> Result<BTreeMap<String, Deployment>, StoreError> {
    let s = app.store.records();
    let mut out = BTreeMap::new();
    for (pid, _) in scan_all_pairs(s, DEVICE_PROFILES, did)? {
        if let Some(d) = DEPLOYMENTS.get(s, &pair_key(&pid, did))? {
            out.insert(pid, d);
        }
    }
    Ok(out)
}

/// Adds the `Delete`s of nodes in `old_sets` not in `keep` to the batch; returns them.
#[allow(clippy::too_many_arguments)]
fn deletes(
    b: &mut Batch,
    d: &Device,
    pid: &str,
    version: u32,
    generation: u32,
    old_sets: &[String],
    keep: &BTreeSet<String>,
    now: i64,
) -> Vec<Queued> {
    let mut out = Vec::new();
    for (n, t) in old_sets.iter().filter(|t| !keep.contains(*t)).enumerate() {
        let id = command_id(pid, version, generation, "del-", n + 1);
        let xml = delete_fragment(t);
        b.queue(d, id.clone(), "Delete", xml, std::slice::from_ref(t), now);
        out.push(Queued {
            command_id: id,
            targets: vec![t.clone()],
        });
    }
    out
}

fn delete_fragment(target: &str) -> String {
    use crate::syncml::{Command, Item, ItemCommand, Location};
    let cmd = Command::Delete(ItemCommand::new(
        "1",
        [Item {
            target: Some(Location::new(target.to_string())),
            ..Item::default()
        }],
    ));
    let mut out = Vec::new();
    crate::syncml::write_fragment(std::slice::from_ref(&cmd), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Cancels the deployment's commands that are still unanswered. Not read here: the cancel, in
/// the chunk's transaction, leaves answered (and unknown) commands as they are.
fn cancel_unanswered(b: &mut Batch, dep: &Deployment) {
    for q in &dep.commands {
        b.cancels
            .push((dep.device_id.clone(), q.command_id.clone()));
    }
}

/// Plans one device into the batch.
fn plan(
    app: &App,
    did: &str,
    cache: &mut Cache,
    b: &mut Batch,
    now: i64,
) -> Result<(), StoreError> {
    let s = app.store.records();
    let existing = deployments_of(app, did)?;
    let Some(d) = app.store.get_device(did)? else {
        // The device record is gone: so are its deployments.
        for pid in existing.keys() {
            b.drop_dep(pid, did);
        }
        return Ok(());
    };
    if d.state != DeviceState::Enrolled {
        return Ok(());
    }
    let mut desired = BTreeSet::new();
    for gid in groups::groups_of(s, did)? {
        for (pid, _) in scan_all_pairs(s, GROUP_PROFILES, &gid)? {
            desired.insert(pid);
        }
    }
    let mut install: Vec<Profile> = Vec::new();
    let mut na: BTreeMap<String, (u32, String)> = BTreeMap::new();
    for pid in &desired {
        let Some(p) = cached(app, cache, pid)? else {
            continue;
        };
        match not_applicable(p, &d) {
            None => install.push(p.clone()),
            Some(reason) => {
                na.insert(pid.clone(), (p.version, reason));
            }
        }
    }
    // Device scope first, then user scope (the queue keeps this order).
    install.sort_by(|a, b| (a.scope, &a.id).cmp(&(b.scope, &b.id)));
    let keep: BTreeSet<String> = install
        .iter()
        .flat_map(|p| p.sets().map(str::to_string))
        .collect();
    let installing: BTreeSet<&str> = install.iter().map(|p| p.id.as_str()).collect();

    // Profiles leaving (or not applicable).
    for (pid, dep) in &existing {
        if installing.contains(pid.as_str()) {
            continue;
        }
        let (state, reason) = match na.get(pid) {
            Some((_, r)) => (DeployState::NotApplicable, Some(r.clone())),
            None => (DeployState::Removed, None),
        };
        if dep.state == DeployState::Installed {
            cancel_unanswered(b, dep);
            let cmds = deletes(
                b,
                &d,
                pid,
                dep.version,
                dep.generation,
                &dep.sets,
                &keep,
                now,
            );
            b.put(&Deployment {
                state,
                commands: cmds,
                sets: Vec::new(),
                reason,
                updated_at: now,
                ..dep.clone()
            });
        } else if dep.state != state || dep.reason != reason {
            let mut nd = dep.clone();
            nd.state = state;
            nd.reason = reason;
            nd.updated_at = now;
            if state == DeployState::NotApplicable {
                nd.commands.clear();
            }
            b.put(&nd);
        }
    }
    for (pid, (version, reason)) in &na {
        if !existing.contains_key(pid) {
            b.put(&Deployment {
                profile_id: pid.clone(),
                device_id: did.to_string(),
                state: DeployState::NotApplicable,
                version: *version,
                generation: 0,
                enrolled_at: d.enrolled_at,
                commands: Vec::new(),
                sets: Vec::new(),
                reason: Some(reason.clone()),
                updated_at: now,
            });
        }
    }
    // Profiles to install or upgrade.
    for p in &install {
        let dep = existing.get(&p.id);
        let installed =
            dep.filter(|x| x.state == DeployState::Installed && x.enrolled_at == d.enrolled_at);
        if installed.is_some_and(|x| x.version == p.version) {
            continue;
        }
        let generation = match (dep, installed) {
            (None, _) => 0,
            (Some(x), Some(_)) => x.generation,
            (Some(x), None) => x.generation + 1,
        };
        let mut cmds = Vec::new();
        if let Some(old) = installed {
            cancel_unanswered(b, old);
            cmds.extend(deletes(
                b, &d, &p.id, p.version, generation, &old.sets, &keep, now,
            ));
        }
        for (n, op) in p.operations.iter().enumerate() {
            let id = command_id(&p.id, p.version, generation, "", n + 1);
            b.queue(
                &d,
                id.clone(),
                &op.verb,
                op.syncml.clone(),
                &op.targets,
                now,
            );
            cmds.push(Queued {
                command_id: id,
                targets: op.targets.clone(),
            });
        }
        b.put(&Deployment {
            profile_id: p.id.clone(),
            device_id: did.to_string(),
            state: DeployState::Installed,
            version: p.version,
            generation,
            enrolled_at: d.enrolled_at,
            commands: cmds,
            sets: p.sets().map(str::to_string).collect(),
            reason: None,
            updated_at: now,
        });
    }
    Ok(())
}

/// Writes a chunk's plan as one transaction: cancels, new commands, deployment records.
fn apply(app: &App, b: Batch, now: i64) -> Result<usize, StoreError> {
    if b.cancels.is_empty() && b.commands.is_empty() && b.ops.is_empty() {
        return Ok(0);
    }
    let applied = app
        .store
        .apply_changes(
            crate::store::tx::ChangeSet {
                cancels: b.cancels,
                commands: b.commands,
                ops: b.ops,
            },
            now,
        )?
        .ok_or_else(|| StoreError::Backend {
            reason: "reconcile: a record precondition failed".into(),
        })?;
    let mut queued = 0;
    for e in applied.enqueued {
        if let crate::store::Enqueued::Created(c) = e {
            tracing::debug!(device_id = %c.device_id, command_id = %c.command_id, "profile command queued");
            queued += 1;
        }
    }
    Ok(queued)
}

fn run(app: &App, ids: &[String], take_lock: bool) -> Result<usize, GroupError> {
    let mut queued = 0;
    for chunk in ids.chunks(CHUNK) {
        let _g = take_lock.then(groups::lock);
        let now = app.clock.now_unix();
        let mut cache = Cache::new();
        let mut b = Batch::default();
        for did in chunk {
            plan(app, did, &mut cache, &mut b, now)?;
        }
        queued += apply(app, b, now)?;
    }
    Ok(queued)
}

/// Reconciles these devices; returns how many commands were queued.
pub fn devices(app: &App, ids: &[String]) -> Result<usize, GroupError> {
    run(app, ids, true)
}

/// As [`devices`], for a caller that holds the groups lock already.
pub(crate) fn devices_locked(app: &App, ids: &[String]) -> Result<usize, GroupError> {
    run(app, ids, false)
}

/// Reconciles every device a profile concerns: members of the groups it is assigned to and
/// devices that have a deployment of it.
pub fn profile(app: &App, pid: &str) -> Result<Reconciled, GroupError> {
    let s = app.store.records();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for (gid, _) in scan_all_pairs(s, ASSIGNMENTS, pid)? {
        let mut after: Option<String> = None;
        loop {
            let page = scan_pairs(s, MEMBERS, &gid, after.as_deref(), 1000)?;
            let done = page.len() < 1000;
            after = page.last().map(|(d, _)| d.clone());
            ids.extend(page.into_iter().map(|(d, _)| d));
            if done {
                break;
            }
        }
    }
    let mut after: Option<String> = None;
    loop {
        let page = scan_pairs(s, DEPLOYMENTS, pid, after.as_deref(), 1000)?;
        let done = page.len() < 1000;
        after = page.last().map(|(d, _)| d.clone());
        ids.extend(page.into_iter().map(|(d, _)| d));
        if done {
            break;
        }
    }
    let ids: Vec<String> = ids.into_iter().collect();
    let queued = devices(app, &ids)?;
    Ok(Reconciled {
        devices: ids.len(),
        queued,
    })
}

/// A failed command of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failure {
    /// Command id.
    pub command_id: String,
    /// Its LocURIs.
    pub targets: Vec<String>,
    /// The device's status code (`null`: cancelled).
    pub status: Option<u16>,
    /// The command's state (`failed`, `cancelled`, `cancelled_by_device`, `not_executed`,
    /// `rolled_back`).
    pub state: CommandState,
    /// For an `Atomic`: the nested commands the device did not apply, with their LocURIs and
    /// codes (the one that failed, and those rolled back with 216).
    #[serde(default)]
    pub failed: Vec<FailedNode>,
    /// Why the server failed it, when the device did not.
    #[serde(default)]
    pub error: Option<String>,
}

/// One LocURI of a failed command and the device's code for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailedNode {
    /// The LocURI.
    pub target: String,
    /// Verb of the nested command.
    pub verb: String,
    /// The device's code (`null`: no Status received).
    pub status: Option<u16>,
}

fn failure(q: &Queued, c: &CommandRecord) -> Failure {
    let failed = c
        .inner
        .iter()
        .filter(|i| i.failed())
        .flat_map(|i| {
            i.targets.iter().map(|t| FailedNode {
                target: t.clone(),
                verb: i.verb.clone(),
                status: i.status,
            })
        })
        .collect();
    Failure {
        command_id: q.command_id.clone(),
        targets: q.targets.clone(),
        status: c.status,
        state: c.state,
        failed,
        error: c.error.clone(),
    }
}

/// A profile's status on one device, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// Profile.
    pub profile_id: String,
    /// Device.
    pub device_id: String,
    /// Profile version.
    pub version: u32,
    /// `pending`, `verifying`, `applied`, `failed`, `not_applicable`, `removing` or `removed`.
    pub status: String,
    /// Why (not applicable, or held for a user session).
    pub reason: Option<String>,
    /// Commands the device refused (or that were cancelled).
    pub failures: Vec<Failure>,
    /// Command ids of this deployment.
    pub command_ids: Vec<String>,
    /// Last change of the deployment (Unix seconds).
    pub updated_at: i64,
}

/// Derives a deployment's status from its commands' state.
pub fn status(app: &App, dep: &Deployment) -> Result<Status, StoreError> {
    status_with(dep, |id| app.store.get_command(&dep.device_id, id))
}

/// [`status`] with the commands read through `command` (by command id): the webhook derives
/// the status a management round leaves from the round's own command records.
pub fn status_with(
    dep: &Deployment,
    mut command: impl FnMut(&str) -> Result<Option<CommandRecord>, StoreError>,
) -> Result<Status, StoreError> {
    let mut failures = Vec::new();
    let (mut done, mut sent, mut held) = (0, 0, 0);
    for q in &dep.commands {
        let Some(c) = command(&q.command_id)? else {
            continue;
        };
        match c.state {
            CommandState::Done => done += 1,
            // Only `done` is applied: 214/215/216 and server-side failures are failures.
            CommandState::Failed
            | CommandState::Cancelled
            | CommandState::CancelledByDevice
            | CommandState::NotExecuted
            | CommandState::RolledBack => failures.push(failure(q, &c)),
            CommandState::Sent => sent += 1,
            CommandState::Pending => {
                if c.send_count > 0 {
                    sent += 1;
                } else if c.user_scoped {
                    held += 1;
                }
            }
        }
    }
    let all = dep.commands.len();
    let mut reason = dep.reason.clone();
    let status = match dep.state {
        DeployState::NotApplicable => "not_applicable",
        DeployState::Removed if done + failures.len() == all => "removed",
        DeployState::Removed => "removing",
        DeployState::Installed if !failures.is_empty() => "failed",
        DeployState::Installed if done == all => "applied",
        DeployState::Installed if sent > 0 || done > 0 => "verifying",
        DeployState::Installed => {
            if held > 0 {
                reason = Some(
                    "user-scope commands wait until the device reports LoginStatus user".into(),
                );
            }
            "pending"
        }
    };
    Ok(Status {
        profile_id: dep.profile_id.clone(),
        device_id: dep.device_id.clone(),
        version: dep.version,
        status: status.into(),
        reason,
        failures,
        command_ids: dep.commands.iter().map(|q| q.command_id.clone()).collect(),
        updated_at: dep.updated_at,
    })
}

/// One page of a profile's per-device status, after DeviceID `after`.
pub fn status_page(
    app: &App,
    pid: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Status>, Option<String>), StoreError> {
    let mut page = scan_pairs(app.store.records(), DEPLOYMENTS, pid, after, limit + 1)?;
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|(d, _)| d.clone())
    } else {
        None
    };
    let out = page
        .iter()
        .map(|(_, dep)| status(app, dep))
        .collect::<Result<_, _>>()?;
    Ok((out, next))
}

/// Every profile's status on one device.
pub fn device_status(app: &App, did: &str) -> Result<Vec<Status>, StoreError> {
    deployments_of(app, did)?
        .values()
        .map(|dep| status(app, dep))
        .collect()
}

/// Where a resumable reconciliation of one profile is (see [`profile_step`]): the members of
/// each assigned group in group order, then every device holding a deployment of the profile.
/// A device in several of these lists is reconciled more than once, which changes nothing
/// (reconciling is idempotent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileCursor {
    /// The assigned group being walked; `None` before the first one.
    pub group: Option<String>,
    /// The groups are done; walking deployments.
    #[serde(default)]
    pub deployments: bool,
    /// Last device reconciled in the current list.
    pub after: Option<String>,
    /// Everything walked.
    #[serde(default)]
    pub finished: bool,
}

/// The group assigned to `pid` after `after` (in id order), if any.
fn next_group(app: &App, pid: &str, after: Option<&str>) -> Result<Option<String>, StoreError> {
    Ok(scan_pairs(app.store.records(), ASSIGNMENTS, pid, after, 1)?
        .into_iter()
        .next()
        .map(|(g, _)| g))
}

/// Whether `did` is a member of one of `groups` that comes before `before` (all of them when
/// `before` is `None`): such a device was (or will be) reconciled with that group.
fn covered(
    app: &App,
    groups: &[String],
    did: &str,
    before: Option<&str>,
) -> Result<bool, StoreError> {
    for g in groups {
        if before.is_some_and(|b| g.as_str() >= b) {
            break;
        }
        if MEMBERS
            .get(app.store.records(), &pair_key(g, did))?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn assigned_groups(app: &App, pid: &str) -> Result<Vec<String>, StoreError> {
    Ok(scan_all_pairs(app.store.records(), ASSIGNMENTS, pid)?
        .into_iter()
        .map(|(g, _)| g)
        .collect())
}

/// How many devices a full walk of [`profile_step`] reconciles: the `total` of a
/// reconciliation job (each device once, as [`profile`] counts them).
pub fn profile_visits(app: &App, pid: &str) -> Result<u64, StoreError> {
    let mut cursor = ProfileCursor::default();
    let mut n = 0u64;
    while !cursor.finished {
        n += walk(app, pid, &mut cursor, 1000)?.len() as u64;
    }
    Ok(n)
}

/// Reconciles the next (at most) `limit` devices of profile `pid`'s walk from `cursor`, and
/// moves the cursor past them. Returns (devices reconciled, commands queued);
/// `cursor.finished` says when the walk is complete. Each call is a few store transactions:
/// a crash between calls loses nothing (the next call from the last saved cursor redoes at
/// most one step, and reconciling is idempotent).
pub fn profile_step(
    app: &App,
    pid: &str,
    cursor: &mut ProfileCursor,
    limit: usize,
) -> Result<(usize, usize), GroupError> {
    let ids = walk(app, pid, cursor, limit)?;
    let queued = devices(app, &ids)?;
    Ok((ids.len(), queued))
}

/// The next devices of the walk (each device once: a member of an earlier assigned group is
/// skipped in a later one, and in the deployments).
fn walk(
    app: &App,
    pid: &str,
    cursor: &mut ProfileCursor,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let s = app.store.records();
    let groups = assigned_groups(app, pid)?;
    let mut ids: Vec<String> = Vec::new();
    while ids.len() < limit && !cursor.finished {
        let want = limit - ids.len();
        let (page, before): (Vec<String>, Option<String>) = if cursor.deployments {
            let p = scan_pairs(s, DEPLOYMENTS, pid, cursor.after.as_deref(), want)?
                .into_iter()
                .map(|(d, _)| d)
                .collect();
            (p, None)
        } else {
            let gid = match &cursor.group {
                Some(g) => g.clone(),
                None => match next_group(app, pid, None)? {
                    Some(g) => {
                        cursor.group = Some(g.clone());
                        g
                    }
                    None => {
                        cursor.deployments = true;
                        cursor.after = None;
                        continue;
                    }
                },
            };
            let p = scan_pairs(s, MEMBERS, &gid, cursor.after.as_deref(), want)?
                .into_iter()
                .map(|(d, _)| d)
                .collect();
            (p, Some(gid))
        };
        let short = page.len() < want;
        if let Some(last) = page.last() {
            cursor.after = Some(last.clone());
        }
        for did in page {
            let skip = match &before {
                Some(gid) => covered(app, &groups, &did, Some(gid))?,
                None => covered(app, &groups, &did, None)?,
            };
            if !skip {
                ids.push(did);
            }
        }
        if short {
            // This list is done: the next group, then the deployments, then the end.
            cursor.after = None;
            if cursor.deployments {
                cursor.finished = true;
            } else {
                match next_group(app, pid, cursor.group.as_deref())? {
                    Some(g) => cursor.group = Some(g),
                    None => cursor.deployments = true,
                }
            }
        }
    }
    Ok(ids)
}
