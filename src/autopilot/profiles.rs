//! Autopilot profiles in the record table, with their two invariants kept atomically:
//! names are unique (case-insensitively; an index kind `autopilot_profile_name` maps the
//! lower-cased name to the id) and at most one profile is assigned to all groups (the single
//! key `autopilot_all_groups/profile` holds its id). Every write is one `apply_records` batch
//! whose `Expect`s make it fail, changing nothing, when another writer got there first.

use crate::store::records::{Kind, RecordOp, RecordStore};
use crate::store::tx::{decode, encode};
use crate::store::StoreError;

use super::profile::Profile;

/// Profiles by id.
pub const PROFILES: Kind<Profile> = Kind::new("autopilot_profile");
/// Lower-cased name → profile id.
pub const PROFILE_NAMES: Kind<String> = Kind::new("autopilot_profile_name");
/// `profile` → id of the profile assigned to all groups.
pub const ALL_GROUPS: Kind<String> = Kind::new("autopilot_all_groups");
const ALL_GROUPS_KEY: &str = "profile";

/// Why a profile write was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProfileStoreError {
    /// Another profile has this name.
    #[error("an Autopilot profile named {0:?} already exists")]
    NameTaken(String),
    /// Another profile is assigned to all groups.
    #[error("the Autopilot profile {0:?} is already assigned to all groups; only one profile can be (unassign it first)")]
    AllGroupsTaken(String),
    /// No such profile.
    #[error("Autopilot profile {0} not found")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Looks a profile up by id, else by name.
pub fn find(s: &dyn RecordStore, id_or_name: &str) -> Result<Option<Profile>, StoreError> {
    if let Some(p) = PROFILES.get(s, id_or_name)? {
        return Ok(Some(p));
    }
    match PROFILE_NAMES.get(s, &name_key(id_or_name))? {
        Some(id) => PROFILES.get(s, &id),
        None => Ok(None),
    }
}

/// Every profile, ordered by name.
pub fn all(s: &dyn RecordStore) -> Result<Vec<Profile>, StoreError> {
    let mut v: Vec<Profile> = PROFILES.all(s)?.into_iter().map(|(_, p)| p).collect();
    v.sort_by_key(|p| name_key(&p.name));
    Ok(v)
}

/// The profile assigned to all groups, if any.
pub fn all_groups_profile(s: &dyn RecordStore) -> Result<Option<Profile>, StoreError> {
    match ALL_GROUPS.get(s, ALL_GROUPS_KEY)? {
        Some(id) => PROFILES.get(s, &id),
        None => Ok(None),
    }
}

/// Explains a refused batch: which invariant the other writer holds.
fn why_refused(s: &dyn RecordStore, p: &Profile) -> Result<ProfileStoreError, StoreError> {
    if let Some(owner) = PROFILE_NAMES.get(s, &name_key(&p.name))? {
        if owner != p.id {
            return Ok(ProfileStoreError::NameTaken(p.name.clone()));
        }
    }
    if p.all_groups {
        if let Some(owner) = ALL_GROUPS.get(s, ALL_GROUPS_KEY)? {
            if owner != p.id {
                let name = PROFILES.get(s, &owner)?.map(|o| o.name).unwrap_or(owner);
                return Ok(ProfileStoreError::AllGroupsTaken(name));
            }
        }
    }
    Err(StoreError::Backend {
        reason: format!("Autopilot profile {}: concurrent change", p.id),
    })
}

/// Stores a new profile.
pub fn create(s: &dyn RecordStore, p: &Profile) -> Result<(), ProfileStoreError> {
    let mut ops = vec![
        PROFILES.expect_absent(&p.id),
        PROFILES.put_op(&p.id, p),
        PROFILE_NAMES.expect_absent(&name_key(&p.name)),
        PROFILE_NAMES.put_op(&name_key(&p.name), &p.id),
    ];
    if p.all_groups {
        ops.push(ALL_GROUPS.expect_absent(ALL_GROUPS_KEY));
        ops.push(ALL_GROUPS.put_op(ALL_GROUPS_KEY, &p.id));
    }
    if s.apply_records(&ops)? {
        return Ok(());
    }
    Err(why_refused(s, p)?)
}

/// Replaces profile `new.id` (its settings, name and assignments) with `new`; `f` builds `new`
/// from the current record, and is called again if another writer changed it meanwhile.
pub fn replace(
    s: &dyn RecordStore,
    id: &str,
    mut f: impl FnMut(&Profile) -> Profile,
) -> Result<(Profile, Profile), ProfileStoreError> {
    for _ in 0..16 {
        let raw = s
            .get_record(PROFILES.name, id)?
            .ok_or_else(|| ProfileStoreError::NotFound(id.to_string()))?;
        let old: Profile = decode(PROFILES.name, &raw)?;
        let new = f(&old);
        let mut ops = vec![
            RecordOp::Expect {
                kind: PROFILES.name,
                key: id.to_string(),
                value: Some(raw),
            },
            PROFILES.put_op(id, &new),
        ];
        let (old_name, new_name) = (name_key(&old.name), name_key(&new.name));
        if old_name != new_name {
            ops.push(expect_value(PROFILE_NAMES, &old_name, &old.id));
            ops.push(PROFILE_NAMES.delete_op(&old_name));
            ops.push(PROFILE_NAMES.expect_absent(&new_name));
            ops.push(PROFILE_NAMES.put_op(&new_name, &new.id));
        }
        match (old.all_groups, new.all_groups) {
            (false, true) => {
                ops.push(ALL_GROUPS.expect_absent(ALL_GROUPS_KEY));
                ops.push(ALL_GROUPS.put_op(ALL_GROUPS_KEY, &new.id));
            }
            (true, false) => {
                ops.push(expect_value(ALL_GROUPS, ALL_GROUPS_KEY, &old.id));
                ops.push(ALL_GROUPS.delete_op(ALL_GROUPS_KEY));
            }
            _ => {}
        }
        if s.apply_records(&ops)? {
            return Ok((old, new));
        }
        // Refused: an invariant held by another profile, or the record changed under us.
        match why_refused(s, &new) {
            Ok(e) => return Err(e),
            Err(_) => continue,
        }
    }
    Err(StoreError::Backend {
        reason: format!("Autopilot profile {id}: too much contention"),
    }
    .into())
}

/// Deletes a profile, its name and its all-groups assignment; the deleted record, or `None`.
pub fn delete(s: &dyn RecordStore, id: &str) -> Result<Option<Profile>, StoreError> {
    for _ in 0..16 {
        let Some(raw) = s.get_record(PROFILES.name, id)? else {
            return Ok(None);
        };
        let old: Profile = decode(PROFILES.name, &raw)?;
        let mut ops = vec![
            RecordOp::Expect {
                kind: PROFILES.name,
                key: id.to_string(),
                value: Some(raw),
            },
            PROFILES.delete_op(id),
            PROFILE_NAMES.delete_op(&name_key(&old.name)),
        ];
        if old.all_groups {
            ops.push(expect_value(ALL_GROUPS, ALL_GROUPS_KEY, &old.id));
            ops.push(ALL_GROUPS.delete_op(ALL_GROUPS_KEY));
        }
        if s.apply_records(&ops)? {
            return Ok(Some(old));
        }
    }
    Err(StoreError::Backend {
        reason: format!("Autopilot profile {id}: too much contention"),
    })
}

fn expect_value(kind: Kind<String>, key: &str, value: &str) -> RecordOp {
    RecordOp::Expect {
        kind: kind.name,
        key: key.to_string(),
        value: Some(encode(&value.to_string())),
    }
}
