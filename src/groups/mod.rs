//! Device groups: *static* (explicit members) and *dynamic* (every device matching a
//! [`query`]). Membership lives in the record table under two keys so both directions are
//! paginated scans: `group_member` = `group_id \0 device_id` (a group's members, by DeviceID)
//! and `device_group` = `device_id \0 group_id` (a device's groups).
//!
//! [`on_device_changed`] is the one entry point when a device enrolls or its attributes change:
//! it re-evaluates the device's dynamic memberships and reconciles its profiles. A query edit
//! re-evaluates every device, paging through the device table and merging with the group's
//! member list (both ordered by DeviceID), then reconciles only the devices whose membership
//! changed.

pub mod query;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::store::records::Kind;
use crate::store::{Device, RecordOp, RecordStore, StoreError};

pub use query::{Query, QueryError};

/// Group records by id.
pub const GROUPS: Kind<Group> = Kind::new("group");
/// Unique group names (lower-case) → group id.
pub const GROUP_NAMES: Kind<String> = Kind::new("group_name");
/// `group_id \0 device_id` → membership.
pub const MEMBERS: Kind<Member> = Kind::new("group_member");
/// `device_id \0 group_id` → membership (reverse index).
pub const DEVICE_GROUPS: Kind<Member> = Kind::new("device_group");

/// Devices read per page when a query is evaluated over the fleet.
pub const EVAL_PAGE: usize = 1000;
/// Largest `device_ids` list of one static-members request.
pub const MAX_STATIC_BATCH: usize = 10_000;

/// Serialises membership changes and reconciliation within this process (a device hook and an
/// admin edit of the same group never interleave their read-modify-write).
pub(crate) static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a group's members are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// Members added and removed by an admin.
    Static,
    /// Members are the devices matching `query`.
    Dynamic,
}

/// A device group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Id (random hex).
    pub id: String,
    /// Unique name (case-insensitive).
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Static or dynamic.
    pub kind: GroupKind,
    /// The query of a dynamic group.
    #[serde(default)]
    pub query: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// One membership (stored under both keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// When the device joined (Unix seconds).
    pub since: i64,
}

/// Why a group operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// Invalid request.
    #[error("{0}")]
    Invalid(String),
    /// One row of a profile's settings list is invalid (0-based `index`).
    #[error("settings[{index}]: {reason}")]
    InvalidSetting {
        /// The row.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The query does not parse.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// No such record.
    #[error("{0} not found")]
    NotFound(String),
    /// Conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// `a \0 b`
pub fn pair_key(a: &str, b: &str) -> String {
    format!("{a}\0{b}")
}

/// Up to `limit` records of `kind` whose key starts with `prefix \0`, after `after` (the part
/// following the separator), as (suffix, value).
pub fn scan_pairs<T: Serialize + serde::de::DeserializeOwned>(
    s: &dyn RecordStore,
    kind: Kind<T>,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, T)>, StoreError> {
    let head = pair_key(prefix, "");
    let mut cursor = pair_key(prefix, after.unwrap_or(""));
    let mut out = Vec::new();
    // The table only stops at the end of the kind: read small pages and stop at the first key
    // outside the prefix, so a device with two groups costs two records, not a page.
    let mut chunk = limit.clamp(1, 16);
    loop {
        let page = s.scan_records(kind.name, Some(&cursor), chunk)?;
        let n = page.len();
        for (k, v) in page {
            let Some(rest) = k.strip_prefix(&head) else {
                return Ok(out);
            };
            out.push((rest.to_string(), crate::store::tx::decode(kind.name, &v)?));
            if out.len() >= limit {
                return Ok(out);
            }
            cursor = k;
        }
        if n < chunk {
            return Ok(out);
        }
        chunk = (chunk * 4).min(limit - out.len()).max(1);
    }
}

/// Every record of `kind` under `prefix`, as (suffix, value).
pub fn scan_all_pairs<T: Serialize + serde::de::DeserializeOwned>(
    s: &dyn RecordStore,
    kind: Kind<T>,
    prefix: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut out: Vec<(String, T)> = Vec::new();
    loop {
        let after = out.last().map(|(k, _)| k.clone());
        let page = scan_pairs(s, kind, prefix, after.as_deref(), 1000)?;
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// The ids of the groups `device_id` belongs to.
pub fn groups_of(s: &dyn RecordStore, device_id: &str) -> Result<Vec<String>, StoreError> {
    Ok(scan_all_pairs(s, DEVICE_GROUPS, device_id)?
        .into_iter()
        .map(|(g, _)| g)
        .collect())
}

fn join_ops(group_id: &str, device_id: &str, now: i64) -> [RecordOp; 2] {
    let m = Member { since: now };
    [
        MEMBERS.put_op(&pair_key(group_id, device_id), &m),
        DEVICE_GROUPS.put_op(&pair_key(device_id, group_id), &m),
    ]
}

fn leave_ops(group_id: &str, device_id: &str) -> [RecordOp; 2] {
    [
        MEMBERS.delete_op(&pair_key(group_id, device_id)),
        DEVICE_GROUPS.delete_op(&pair_key(device_id, group_id)),
    ]
}

/// What [`on_device_changed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceChange {
    /// Groups the device joined.
    pub joined: Vec<String>,
    /// Groups the device left.
    pub left: Vec<String>,
    /// Commands queued by the reconciliation.
    pub queued: usize,
}

/// THE entry point after a device enrolled or its attributes changed (inventory, login status,
/// group tag / Autopilot link, assigned user, unenrollment, deletion): re-evaluates its dynamic
/// memberships, then reconciles its profiles. Errors are logged here too, so hooks may ignore
/// them.
pub fn on_device_changed(app: &App, device_id: &str) -> Result<DeviceChange, GroupError> {
    let r = device_changed(app, device_id);
    match &r {
        Ok(c) if !c.joined.is_empty() || !c.left.is_empty() || c.queued > 0 => {
            tracing::info!(device_id, joined = ?c.joined, left = ?c.left, queued = c.queued, "device groups re-evaluated")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(device_id, error = %e, "device groups/profiles not re-evaluated")
        }
    }
    r
}

fn device_changed(app: &App, device_id: &str) -> Result<DeviceChange, GroupError> {
    let s = app.store.records();
    let _g = lock();
    let device = app.store.get_device(device_id)?;
    let groups: BTreeMap<String, Group> = GROUPS.all(s)?.into_iter().collect();
    let current: BTreeSet<String> = groups_of(s, device_id)?.into_iter().collect();
    let mut change = DeviceChange::default();
    let mut ops = Vec::new();
    let now = app.clock.now_unix();
    for (gid, g) in &groups {
        let member = match (&device, g.kind) {
            (None, _) => false,
            (Some(_), GroupKind::Static) => current.contains(gid),
            (Some(d), GroupKind::Dynamic) => match g.query.as_deref().map(Query::parse) {
                Some(Ok(q)) => q.matches(d),
                Some(Err(e)) => {
                    tracing::error!(group_id = %gid, error = %e, "stored group query no longer parses");
                    current.contains(gid)
                }
                None => false,
            },
        };
        match (member, current.contains(gid)) {
            (true, false) => {
                ops.extend(join_ops(gid, device_id, now));
                change.joined.push(gid.clone());
            }
            (false, true) => {
                ops.extend(leave_ops(gid, device_id));
                change.left.push(gid.clone());
            }
            _ => {}
        }
    }
    // Memberships of groups that no longer exist.
    for gid in current.iter().filter(|g| !groups.contains_key(*g)) {
        ops.extend(leave_ops(gid, device_id));
        change.left.push(gid.clone());
    }
    if !ops.is_empty() {
        s.apply_records(&ops)?;
    }
    change.queued = crate::profiles::reconcile::devices_locked(app, &[device_id.to_string()])?;
    Ok(change)
}

/// Whether a device record changed in a way group queries or profile delivery can notice
/// (inventory, login status, state, user, Autopilot link…; not `last_seen` or alerts).
pub fn attributes_changed(a: &Device, b: &Device) -> bool {
    a.inventory != b.inventory
        || a.login_status != b.login_status
        || a.state != b.state
        || a.upn != b.upn
        || a.assigned_user != b.assigned_user
        || a.bulk != b.bulk
        || a.group_tag != b.group_tag
        || a.autopilot_serial != b.autopilot_serial
        || a.device_type != b.device_type
        || a.os_edition != b.os_edition
        || a.os_version != b.os_version
        || a.device_name != b.device_name
        || a.enrolled_at != b.enrolled_at
}

/// A new group as the admin sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// A query makes the group dynamic.
    #[serde(default)]
    pub query: Option<String>,
}

/// A change to a group.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New query (dynamic groups only).
    #[serde(default)]
    pub query: Option<String>,
}

fn validate_name(name: &str) -> Result<String, GroupError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) {
        return Err(GroupError::Invalid(
            "name must be 1-128 characters without control characters".into(),
        ));
    }
    Ok(n.to_string())
}

fn validate_description(d: &Option<String>) -> Result<(), GroupError> {
    if d.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(GroupError::Invalid(
            "description must be at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

/// The outcome of evaluating a query over the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// Devices examined.
    pub scanned: usize,
    /// Devices that joined.
    pub joined: usize,
    /// Devices that left.
    pub left: usize,
    /// Commands the reconciliation queued.
    pub queued: usize,
}

/// Creates a group (a dynamic one is evaluated over every device at once).
pub fn create(app: &App, ng: NewGroup) -> Result<(Group, Evaluation), GroupError> {
    let name = validate_name(&ng.name)?;
    validate_description(&ng.description)?;
    let kind = match &ng.query {
        Some(q) => {
            Query::parse(q)?;
            GroupKind::Dynamic
        }
        None => GroupKind::Static,
    };
    let now = app.clock.now_unix();
    let g = Group {
        id: crate::clock::random_hex(8),
        name: name.clone(),
        description: ng.description,
        kind,
        query: ng.query,
        created_at: now,
        updated_at: now,
    };
    let s = app.store.records();
    let ok = s.apply_records(&[
        GROUP_NAMES.expect_absent(&name.to_lowercase()),
        GROUP_NAMES.put_op(&name.to_lowercase(), &g.id),
        GROUPS.put_op(&g.id, &g),
    ])?;
    if !ok {
        return Err(GroupError::Conflict(format!(
            "a group named {name:?} already exists"
        )));
    }
    let ev = if kind == GroupKind::Dynamic {
        evaluate(app, &g)?
    } else {
        Evaluation::default()
    };
    tracing::info!(group_id = %g.id, name = %g.name, kind = ?g.kind, joined = ev.joined, "group created");
    Ok((g, ev))
}

/// Looks a group up.
pub fn get(app: &App, id: &str) -> Result<Group, GroupError> {
    GROUPS
        .get(app.store.records(), id)?
        .ok_or_else(|| GroupError::NotFound(format!("group {id}")))
}

/// Renames, re-describes or re-queries a group; a new query is evaluated over every device.
pub fn patch(app: &App, id: &str, p: GroupPatch) -> Result<(Group, Evaluation), GroupError> {
    let s = app.store.records();
    let old = get(app, id)?;
    let mut g = old.clone();
    let mut ops = Vec::new();
    if let Some(n) = &p.name {
        let n = validate_name(n)?;
        if n.to_lowercase() != old.name.to_lowercase() {
            ops.push(GROUP_NAMES.expect_absent(&n.to_lowercase()));
            ops.push(GROUP_NAMES.put_op(&n.to_lowercase(), &g.id));
            ops.push(GROUP_NAMES.delete_op(&old.name.to_lowercase()));
        }
        g.name = n;
    }
    if p.description.is_some() {
        validate_description(&p.description)?;
        g.description = p.description;
    }
    let requery = match &p.query {
        Some(q) if g.kind == GroupKind::Static => {
            let _ = q;
            return Err(GroupError::Conflict(
                "a static group has no query (create a dynamic group instead)".into(),
            ));
        }
        Some(q) => {
            Query::parse(q)?;
            let changed = g.query.as_deref() != Some(q.as_str());
            g.query = Some(q.clone());
            changed
        }
        None => false,
    };
    g.updated_at = app.clock.now_unix();
    ops.push(RecordOp::Expect {
        kind: GROUPS.name,
        key: g.id.clone(),
        value: Some(crate::store::tx::encode(&old)),
    });
    ops.push(GROUPS.put_op(&g.id, &g));
    if !s.apply_records(&ops)? {
        return Err(GroupError::Conflict(
            "the name is taken, or the group changed meanwhile".into(),
        ));
    }
    let ev = if requery {
        evaluate(app, &g)?
    } else {
        Evaluation::default()
    };
    tracing::info!(group_id = %g.id, requery, joined = ev.joined, left = ev.left, "group updated");
    Ok((g, ev))
}

/// Deletes a group, its memberships and its profile assignments, then reconciles its former
/// members (their profiles from this group are removed).
pub fn delete(app: &App, id: &str) -> Result<Evaluation, GroupError> {
    let g = get(app, id)?;
    let s = app.store.records();
    let mut ev = Evaluation::default();
    let mut affected = Vec::new();
    {
        let _g = lock();
        let assignments = scan_all_pairs(s, crate::profiles::GROUP_PROFILES, id)?;
        let mut ops = vec![
            GROUPS.delete_op(id),
            GROUP_NAMES.delete_op(&g.name.to_lowercase()),
        ];
        for (pid, _) in &assignments {
            ops.extend(crate::profiles::unassign_ops(pid, id));
        }
        s.apply_records(&ops)?;
        loop {
            let page = scan_pairs(s, MEMBERS, id, None, EVAL_PAGE)?;
            if page.is_empty() {
                break;
            }
            let mut ops = Vec::with_capacity(page.len() * 2);
            for (did, _) in &page {
                ops.extend(leave_ops(id, did));
                affected.push(did.clone());
            }
            s.apply_records(&ops)?;
        }
    }
    ev.left = affected.len();
    ev.queued = crate::profiles::reconcile::devices(app, &affected)?;
    tracing::info!(group_id = %id, members = ev.left, queued = ev.queued, "group deleted");
    Ok(ev)
}

/// Re-evaluates a dynamic group over every device (paged, merged with the member list), then
/// reconciles the devices whose membership changed.
pub fn evaluate(app: &App, g: &Group) -> Result<Evaluation, GroupError> {
    let q = Query::parse(g.query.as_deref().unwrap_or(""))?;
    let s = app.store.records();
    let mut ev = Evaluation::default();
    let mut changed: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let now = app.clock.now_unix();
    loop {
        let _g = lock();
        let devices = app.store.list_devices(after.as_deref(), EVAL_PAGE)?;
        let Some(last) = devices.last() else { break };
        let last = last.device_id.clone();
        // Current members in (after, last].
        let mut members: BTreeSet<String> = BTreeSet::new();
        let mut cur = after.clone();
        loop {
            let page = scan_pairs(s, MEMBERS, &g.id, cur.as_deref(), EVAL_PAGE)?;
            let n = page.len();
            let mut past = false;
            for (did, _) in page {
                if did > last {
                    past = true;
                    break;
                }
                cur = Some(did.clone());
                members.insert(did);
            }
            if past || n < EVAL_PAGE {
                break;
            }
        }
        let mut ops = Vec::new();
        for d in &devices {
            ev.scanned += 1;
            let want = q.matches(d);
            let have = members.remove(&d.device_id);
            if want && !have {
                ops.extend(join_ops(&g.id, &d.device_id, now));
                ev.joined += 1;
                changed.push(d.device_id.clone());
            } else if !want && have {
                ops.extend(leave_ops(&g.id, &d.device_id));
                ev.left += 1;
                changed.push(d.device_id.clone());
            }
        }
        // Members without a device record any more.
        for did in members {
            ops.extend(leave_ops(&g.id, &did));
            ev.left += 1;
            changed.push(did);
        }
        if !ops.is_empty() {
            s.apply_records(&ops)?;
        }
        if devices.len() < EVAL_PAGE {
            break;
        }
        after = Some(last);
    }
    // Members after the last device (deleted devices at the end of the key space).
    loop {
        let _g = lock();
        let page = scan_pairs(s, MEMBERS, &g.id, after.as_deref(), EVAL_PAGE)?;
        if page.is_empty() {
            break;
        }
        let mut ops = Vec::new();
        for (did, _) in page {
            if app.store.get_device(&did)?.is_none() {
                ops.extend(leave_ops(&g.id, &did));
                ev.left += 1;
                changed.push(did.clone());
            }
            after = Some(did);
        }
        s.apply_records(&ops)?;
    }
    ev.queued = reconcile_if_assigned(app, &g.id, &changed)?;
    Ok(ev)
}

/// Reconciles `changed` devices after their membership of `group_id` changed; a group with no
/// profile assigned changes nothing they should have.
fn reconcile_if_assigned(
    app: &App,
    group_id: &str,
    changed: &[String],
) -> Result<usize, GroupError> {
    let assigned = !scan_pairs(
        app.store.records(),
        crate::profiles::GROUP_PROFILES,
        group_id,
        None,
        1,
    )?
    .is_empty();
    if assigned && !changed.is_empty() {
        crate::profiles::reconcile::devices(app, changed)
    } else {
        Ok(0)
    }
}

/// Adds (`add`) or removes existing devices as static members; returns how many changed.
pub fn set_static(
    app: &App,
    id: &str,
    device_ids: &[String],
    add: bool,
) -> Result<Evaluation, GroupError> {
    let g = get(app, id)?;
    if g.kind != GroupKind::Static {
        return Err(GroupError::Conflict(
            "members of a dynamic group follow its query; they cannot be added or removed".into(),
        ));
    }
    if device_ids.is_empty() || device_ids.len() > MAX_STATIC_BATCH {
        return Err(GroupError::Invalid(format!(
            "device_ids must hold 1..={MAX_STATIC_BATCH} ids"
        )));
    }
    let s = app.store.records();
    let now = app.clock.now_unix();
    let mut changed = Vec::new();
    {
        let _g = lock();
        let mut ops = Vec::new();
        for did in device_ids.iter().collect::<BTreeSet<_>>() {
            let is_member = MEMBERS.get(s, &pair_key(id, did))?.is_some();
            if add {
                if app.store.get_device(did)?.is_none() {
                    return Err(GroupError::NotFound(format!("device {did}")));
                }
                if !is_member {
                    ops.extend(join_ops(id, did, now));
                    changed.push(did.clone());
                }
            } else if is_member {
                ops.extend(leave_ops(id, did));
                changed.push(did.clone());
            }
        }
        if !ops.is_empty() {
            s.apply_records(&ops)?;
        }
    }
    let queued = reconcile_if_assigned(app, id, &changed)?;
    let n = changed.len();
    Ok(Evaluation {
        scanned: device_ids.len(),
        joined: if add { n } else { 0 },
        left: if add { 0 } else { n },
        queued,
    })
}

/// A page of members (DeviceID, membership) and the cursor of the next page.
pub type MemberPage = (Vec<(String, Member)>, Option<String>);

/// The groups `device` belongs to with its attributes as they are in memory now: its static
/// memberships, and every dynamic group whose query matches it. Unlike [`groups_of`] this does
/// not wait for the stored membership to be re-evaluated, so a round that has just changed the
/// device (an Autopilot link setting `group_tag`) already sees the groups it is joining.
pub fn matching_groups(app: &App, device: &Device) -> Result<Vec<String>, StoreError> {
    let s = app.store.records();
    let stored: BTreeSet<String> = groups_of(s, &device.device_id)?.into_iter().collect();
    Ok(GROUPS
        .all(s)?
        .into_iter()
        .filter(|(gid, g)| match g.kind {
            GroupKind::Static => stored.contains(gid),
            GroupKind::Dynamic => g
                .query
                .as_deref()
                .and_then(|q| Query::parse(q).ok())
                .is_some_and(|q| q.matches(device)),
        })
        .map(|(gid, _)| gid)
        .collect())
}

/// Whether `g` holds HoloLens devices only: a dynamic group whose query requires
/// `device_type == "hololens"`, or a static group whose members (at least one) are all HoloLens.
/// An Autopilot profile for Windows PCs may not be assigned to such a group.
pub fn is_hololens_group(app: &App, g: &Group) -> Result<bool, GroupError> {
    match g.kind {
        GroupKind::Dynamic => Ok(g
            .query
            .as_deref()
            .and_then(|q| Query::parse(q).ok())
            .is_some_and(|q| q.expr().implies_eq(query::Attr::DeviceType, "hololens"))),
        GroupKind::Static => {
            let s = app.store.records();
            let (mut any, mut after) = (false, None::<String>);
            loop {
                let page = scan_pairs(s, MEMBERS, &g.id, after.as_deref(), 500)?;
                for (device_id, _) in &page {
                    any = true;
                    match app.store.get_device(device_id)? {
                        Some(d) if query::is_hololens(&d) => {}
                        _ => return Ok(false),
                    }
                }
                match page.last() {
                    Some((last, _)) if page.len() == 500 => after = Some(last.clone()),
                    _ => return Ok(any),
                }
            }
        }
    }
}

/// One page of a group's members (DeviceIDs, ordered), with the cursor of the next page.
pub fn members(
    app: &App,
    id: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<MemberPage, GroupError> {
    get(app, id)?;
    let mut page = scan_pairs(app.store.records(), MEMBERS, id, after, limit + 1)?;
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|(d, _)| d.clone())
    } else {
        None
    };
    Ok((page, next))
}
