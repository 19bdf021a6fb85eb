//! Delivery of apps through the profile reconciler.
//!
//! An assignment of an app to a group with a scope (`device`, `user`) and an intent
//! (`required`, `uninstall`) is the assignment of the app's *managed profile*
//! `app-<app_id>-<scope>-<intent>` to that group. Its operations are the CSP commands below;
//! [`crate::profiles::reconcile`] queues them per member device (user scope waits for
//! LoginStatus `user`), and when the assignment or the membership goes it queues a `Delete` of
//! the node the profile "sets" — the app's node, which uninstalls the app. New content (a newer
//! ProductVersion) rebuilds the operations: a new profile version, delivered again.
//!
//! MSI (EnterpriseDesktopAppManagement CSP), `B` = `./{Device|User}/Vendor/MSFT/
//! EnterpriseDesktopAppManagement/MSI/%7B<ProductCode>%7D`:
//! `Add B/DownloadInstall`, `Exec B/DownloadInstall` (MsiInstallJob XML), `Get B/Status`,
//! `Get B/LastError`; uninstall: `Delete B`.
//!
//! MSIX (EnterpriseModernAppManagement CSP), `A` = `./{Device|User}/Vendor/MSFT/
//! EnterpriseModernAppManagement/AppInstallation/<PFN>`: `Add A`, `Exec A/HostedInstall`
//! (`<Application PackageUri="..."/>`), `Get A/Status`, `Get A/LastError`; uninstall:
//! `Delete ./{Device|User}/Vendor/MSFT/EnterpriseModernAppManagement/AppManagement/nonStore/<PFN>`.
//!
//! The download URL of an uploaded package is signed per device when the command is *sent*
//! ([`render`]): the stored command holds the placeholder `{winmdm-app-url:<app_id>}`.

use serde::{Deserialize, Serialize};

use super::{AppKind, AppRecord};
use crate::app::App;
use crate::groups::GroupError;
use crate::mdm::commands::{prepare, NewCommand};
use crate::profiles::{self, Operation, Profile, Scope, PROFILES, PROFILE_NAMES};
use crate::store::RecordOp;

/// What an assignment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Install (and keep installed; uninstalled when the assignment goes).
    #[default]
    Required,
    /// Uninstall.
    Uninstall,
}

impl Intent {
    fn as_str(self) -> &'static str {
        match self {
            Intent::Required => "required",
            Intent::Uninstall => "uninstall",
        }
    }
}

fn scope_str(s: Scope) -> &'static str {
    match s {
        Scope::Device => "device",
        Scope::User => "user",
    }
}

/// Every (scope, intent) pair.
pub const KINDS: [(Scope, Intent); 4] = [
    (Scope::Device, Intent::Required),
    (Scope::Device, Intent::Uninstall),
    (Scope::User, Intent::Required),
    (Scope::User, Intent::Uninstall),
];

/// Id of the managed profile of `app_id` for (scope, intent).
pub fn profile_id(app_id: &str, scope: Scope, intent: Intent) -> String {
    format!("app-{app_id}-{}-{}", scope_str(scope), intent.as_str())
}

/// The (app id, scope, intent) of a managed profile id.
pub fn parse_profile_id(pid: &str) -> Option<(&str, Scope, Intent)> {
    let rest = pid.strip_prefix("app-")?;
    let (rest, intent) = if let Some(r) = rest.strip_suffix("-required") {
        (r, Intent::Required)
    } else {
        (rest.strip_suffix("-uninstall")?, Intent::Uninstall)
    };
    let (app, scope) = if let Some(a) = rest.strip_suffix("-device") {
        (a, Scope::Device)
    } else {
        (rest.strip_suffix("-user")?, Scope::User)
    };
    Some((app, scope, intent))
}

/// The placeholder of the signed URL in stored commands.
pub fn url_placeholder(app_id: &str) -> String {
    format!("{{winmdm-app-url:{app_id}}}")
}

const PLACEHOLDER_START: &str = "{winmdm-app-url:";

fn root(scope: Scope) -> &'static str {
    match scope {
        Scope::Device => "./Device/Vendor/MSFT",
        Scope::User => "./User/Vendor/MSFT",
    }
}

/// `./{Device|User}/Vendor/MSFT/EnterpriseDesktopAppManagement/MSI/%7B<GUID>%7D`: the
/// ProductCode with its braces escaped, as in the CSP page's examples.
pub fn msi_node(scope: Scope, product_code: &str) -> String {
    let inner = product_code.trim_start_matches('{').trim_end_matches('}');
    format!(
        "{}/EnterpriseDesktopAppManagement/MSI/%7B{inner}%7D",
        root(scope)
    )
}

/// `./{Device|User}/Vendor/MSFT/EnterpriseModernAppManagement/AppInstallation/<PFN>`.
pub fn msix_install_node(scope: Scope, pfn: &str) -> String {
    format!(
        "{}/EnterpriseModernAppManagement/AppInstallation/{pfn}",
        root(scope)
    )
}

/// `./{Device|User}/Vendor/MSFT/EnterpriseModernAppManagement/AppManagement/nonStore/<PFN>`.
pub fn msix_app_node(scope: Scope, pfn: &str) -> String {
    format!(
        "{}/EnterpriseModernAppManagement/AppManagement/nonStore/{pfn}",
        root(scope)
    )
}

/// XML text escaping (element text and attribute values).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The URL a device downloads `rec` from: the external URL, or the placeholder of a signed
/// URL of winmdm.
fn content_url(rec: &AppRecord) -> String {
    match &rec.url {
        Some(u) => u.clone(),
        None => url_placeholder(&rec.id),
    }
}

/// The MsiInstallJob document of the `DownloadInstall` `Exec`.
pub fn msi_install_job(rec: &AppRecord) -> String {
    format!(
        "<MsiInstallJob id=\"{id}\"><Product Version=\"{ver}\"><Download><ContentURLList><ContentURL>{url}</ContentURL></ContentURLList></Download><Validation><FileHash>{hash}</FileHash></Validation><Enforcement><CommandLine>{cmd}</CommandLine><TimeOut>{to}</TimeOut><RetryCount>{rc}</RetryCount><RetryInterval>{ri}</RetryInterval></Enforcement></Product></MsiInstallJob>",
        id = esc(rec.product_code.as_deref().unwrap_or("")),
        ver = esc(rec.product_version.as_deref().unwrap_or("")),
        url = esc(&content_url(rec)),
        hash = rec.sha256.to_ascii_uppercase(),
        cmd = esc(&rec.command_line),
        to = rec.timeout_minutes,
        rc = rec.retry_count,
        ri = rec.retry_interval_minutes,
    )
}

fn op(
    verb: &str,
    target: &str,
    format: Option<&str>,
    ty: Option<&str>,
    data: Option<String>,
    sets: Vec<String>,
) -> Result<Operation, GroupError> {
    let rec = prepare(
        "",
        NewCommand {
            verb: Some(verb.into()),
            target: Some(target.into()),
            format: format.map(str::to_string),
            ty: ty.map(str::to_string),
            data,
            command_id: Some("app".into()),
            ..NewCommand::default()
        },
        0,
    )
    .map_err(|e| GroupError::Invalid(e.to_string()))?;
    Ok(Operation {
        verb: rec.verb,
        syncml: rec.syncml,
        targets: vec![target.to_string()],
        sets,
    })
}

/// The operations of the managed profile of `rec` for (scope, intent).
pub fn operations(
    rec: &AppRecord,
    scope: Scope,
    intent: Intent,
) -> Result<Vec<Operation>, GroupError> {
    let missing = |w: &str| GroupError::Invalid(format!("app {} has no {w}", rec.id));
    match (rec.kind, intent) {
        (AppKind::Msi, _) => {
            let pc = rec
                .product_code
                .as_deref()
                .ok_or_else(|| missing("product_code"))?;
            let b = msi_node(scope, pc);
            if intent == Intent::Uninstall {
                return Ok(vec![op("Delete", &b, None, None, None, Vec::new())?]);
            }
            let di = format!("{b}/DownloadInstall");
            Ok(vec![
                // The CSP page: "The Add command is required to precede the Exec command".
                op("Add", &di, None, None, None, vec![b.clone()])?,
                op(
                    "Exec",
                    &di,
                    Some("xml"),
                    Some("text/plain"),
                    Some(msi_install_job(rec)),
                    Vec::new(),
                )?,
                op("Get", &format!("{b}/Status"), None, None, None, Vec::new())?,
                op(
                    "Get",
                    &format!("{b}/LastError"),
                    None,
                    None,
                    None,
                    Vec::new(),
                )?,
            ])
        }
        (AppKind::Msix, _) => {
            let pfn = rec
                .package_family_name
                .as_deref()
                .ok_or_else(|| missing("package_family_name"))?;
            let installed = msix_app_node(scope, pfn);
            if intent == Intent::Uninstall {
                return Ok(vec![op(
                    "Delete",
                    &installed,
                    None,
                    None,
                    None,
                    Vec::new(),
                )?]);
            }
            let a = msix_install_node(scope, pfn);
            // An uploaded package's URL carries its revision: new content of the same family
            // (an upgrade) changes the command, so the reconciler delivers it again (an
            // MsiInstallJob changes by itself: version and hash). The download ignores it.
            let uri = match &rec.url {
                Some(u) => u.clone(),
                None => format!("{}&rev={}", url_placeholder(&rec.id), rec.revision),
            };
            Ok(vec![
                op("Add", &a, None, None, None, vec![installed])?,
                op(
                    "Exec",
                    &format!("{a}/HostedInstall"),
                    Some("xml"),
                    None,
                    Some(format!("<Application PackageUri=\"{}\" />", esc(&uri))),
                    Vec::new(),
                )?,
                op("Get", &format!("{a}/Status"), None, None, None, Vec::new())?,
                op(
                    "Get",
                    &format!("{a}/LastError"),
                    None,
                    None,
                    None,
                    Vec::new(),
                )?,
            ])
        }
    }
}

/// Creates or updates the managed profile of `rec` for (scope, intent): a new version when
/// its operations changed. Returns the profile.
pub fn ensure_profile(
    app: &App,
    rec: &AppRecord,
    scope: Scope,
    intent: Intent,
) -> Result<Profile, GroupError> {
    let pid = profile_id(&rec.id, scope, intent);
    let ops = operations(rec, scope, intent)?;
    let s = app.store.records();
    let now = app.clock.now_unix();
    for _ in 0..8 {
        let old = PROFILES.get(s, &pid)?;
        let (prof, mut batch) = match &old {
            Some(o) if o.operations == ops => return Ok(o.clone()),
            Some(o) => {
                let p = Profile {
                    operations: ops.clone(),
                    version: o.version + 1,
                    updated_at: now,
                    ..o.clone()
                };
                let expect = RecordOp::Expect {
                    kind: PROFILES.name,
                    key: pid.clone(),
                    value: Some(crate::store::tx::encode(o)),
                };
                (p, vec![expect])
            }
            None => {
                let name = format!("app:{}:{}:{}", rec.id, scope_str(scope), intent.as_str());
                let p = Profile {
                    id: pid.clone(),
                    name: name.clone(),
                    description: Some(format!(
                        "{} ({} {})",
                        rec.name,
                        scope_str(scope),
                        intent.as_str()
                    )),
                    scope,
                    device_types: if rec.kind == AppKind::Msi {
                        vec!["windows-pc".into()]
                    } else {
                        Vec::new()
                    },
                    version: 1,
                    operations: ops.clone(),
                    created_at: now,
                    updated_at: now,
                    app: Some(rec.id.clone()),
                };
                let batch = vec![
                    PROFILES.expect_absent(&pid),
                    PROFILE_NAMES.expect_absent(&name),
                    PROFILE_NAMES.put_op(&name, &pid),
                ];
                (p, batch)
            }
        };
        batch.push(PROFILES.put_op(&pid, &prof));
        if s.apply_records(&batch)? {
            tracing::info!(profile_id = %pid, version = prof.version, "app profile written");
            return Ok(prof);
        }
    }
    Err(GroupError::Conflict(format!(
        "profile {pid} changed meanwhile; try again"
    )))
}

/// Assigns app `rec` to `group_id` with (scope, intent), replacing another (scope, intent) of
/// the app on that group. Returns whether it is new, and the managed profiles to reconcile.
pub fn assign(
    app: &App,
    rec: &AppRecord,
    group_id: &str,
    scope: Scope,
    intent: Intent,
) -> Result<(bool, Vec<String>), GroupError> {
    if crate::groups::GROUPS
        .get(app.store.records(), group_id)?
        .is_none()
    {
        return Err(GroupError::NotFound(format!("group {group_id}")));
    }
    let prof = ensure_profile(app, rec, scope, intent)?;
    let mut touched = vec![prof.id.clone()];
    for (s, i) in KINDS {
        if (s, i) == (scope, intent) {
            continue;
        }
        let other = profile_id(&rec.id, s, i);
        if profiles::ASSIGNMENTS
            .get(
                app.store.records(),
                &crate::groups::pair_key(&other, group_id),
            )?
            .is_some()
        {
            profiles::unassign_any(app, &other, group_id)?;
            touched.push(other);
        }
    }
    let created = profiles::assign_any(app, &prof.id, group_id)?;
    Ok((created, touched))
}

/// Removes every assignment of app `app_id` to `group_id`; the profiles to reconcile
/// (`NotFound` when there was none).
pub fn unassign(app: &App, app_id: &str, group_id: &str) -> Result<Vec<String>, GroupError> {
    let mut touched = Vec::new();
    for (s, i) in KINDS {
        let pid = profile_id(app_id, s, i);
        if profiles::ASSIGNMENTS
            .get(
                app.store.records(),
                &crate::groups::pair_key(&pid, group_id),
            )?
            .is_some()
        {
            profiles::unassign_any(app, &pid, group_id)?;
            touched.push(pid);
        }
    }
    if touched.is_empty() {
        return Err(GroupError::NotFound(format!(
            "assignment of app {app_id} to group {group_id}"
        )));
    }
    Ok(touched)
}

/// One assignment of an app.
#[derive(Debug, Clone, Serialize)]
pub struct Assignment {
    /// The group.
    pub group_id: String,
    /// Device or user.
    pub scope: Scope,
    /// Required or uninstall.
    pub intent: Intent,
}

/// The assignments of app `app_id`.
pub fn assignments(app: &App, app_id: &str) -> Result<Vec<Assignment>, GroupError> {
    let mut out = Vec::new();
    for (scope, intent) in KINDS {
        let pid = profile_id(app_id, scope, intent);
        for (group_id, _) in
            crate::groups::scan_all_pairs(app.store.records(), profiles::ASSIGNMENTS, &pid)?
        {
            out.push(Assignment {
                group_id,
                scope,
                intent,
            });
        }
    }
    Ok(out)
}

/// Rebuilds the existing managed profiles of `rec` (after new content); the ones changed.
pub fn refresh(app: &App, rec: &AppRecord) -> Result<Vec<String>, GroupError> {
    let mut out = Vec::new();
    for (scope, intent) in KINDS {
        let pid = profile_id(&rec.id, scope, intent);
        if PROFILES.get(app.store.records(), &pid)?.is_some() {
            ensure_profile(app, rec, scope, intent)?;
            out.push(pid);
        }
    }
    Ok(out)
}

/// Deletes the managed profiles of app `app_id` (devices get the app's node deleted by the
/// reconciliation that follows); the profiles to reconcile.
pub fn remove_profiles(app: &App, app_id: &str) -> Result<Vec<String>, GroupError> {
    let mut out = Vec::new();
    for (scope, intent) in KINDS {
        let pid = profile_id(app_id, scope, intent);
        if let Some(p) = PROFILES.get(app.store.records(), &pid)? {
            profiles::delete_any(app, &p)?;
            out.push(pid);
        }
    }
    Ok(out)
}

/// The stored command text with the download URL placeholder replaced by a URL signed for
/// `device_id` (valid `--app-url-ttl` from `now`); `None` when the command has none. Only
/// commands of app profiles are rendered.
pub fn render(
    app: &App,
    device_id: &str,
    command_id: &str,
    syncml: &str,
    now: i64,
) -> Option<String> {
    if !command_id.starts_with("profile-app-") || !syncml.contains(PLACEHOLDER_START) {
        return None;
    }
    // The expiry is rounded up to the hour so that every chunk of one command (sent over
    // several messages) carries the same text.
    let hour = 3600;
    let exp = (now.div_euclid(hour) + 1)
        .saturating_mul(hour)
        .saturating_add(app.cfg.apps.url_ttl.as_secs() as i64);
    let mut out = String::with_capacity(syncml.len() + 256);
    let mut rest = syncml;
    while let Some(i) = rest.find(PLACEHOLDER_START) {
        out.push_str(&rest[..i]);
        let after = &rest[i + PLACEHOLDER_START.len()..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let app_id = &after[..end];
        if app_id.is_empty() || !app_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            out.push_str(&rest[i..i + PLACEHOLDER_START.len()]);
            rest = after;
            continue;
        }
        let token = app.app_urls.sign(app_id, device_id, exp);
        out.push_str(&format!(
            "{}/apps/{app_id}/content?token={token}",
            app.cfg.public_url.base
        ));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// An app record for unit tests.
#[cfg(test)]
pub(crate) fn tests_record() -> AppRecord {
    tests::record(AppKind::Msi)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn record(kind: AppKind) -> AppRecord {
        AppRecord {
            id: "a1".into(),
            name: "n".into(),
            kind,
            content_id: Some("c".into()),
            url: None,
            size: Some(1),
            sha256: "ab".repeat(32),
            product_code: Some("{6F7CB29F-1319-4816-B345-0856916EB801}".into()),
            product_version: Some("1.0.0".into()),
            publisher: None,
            upgrade_code: None,
            package_family_name: Some("Contoso.App_8wekyb3d8bbwe".into()),
            command_line: "/quiet".into(),
            timeout_minutes: 10,
            retry_count: 3,
            retry_interval_minutes: 5,
            revision: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// Every node the operations use is listed in protocol-fixtures/apps/nodes.json (with its
    /// source page), and every listed app node is used.
    #[test]
    fn nodes_are_the_documented_ones() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../protocol-fixtures/apps/nodes.json")).unwrap();
        let listed: Vec<(String, String)> = doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["verb"].as_str().unwrap().to_string(),
                    n["path"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let generic = |t: &str| {
            t.replace("./Device/", "./{Scope}/")
                .replace("./User/", "./{Scope}/")
                .replace("%7B6F7CB29F-1319-4816-B345-0856916EB801%7D", "{ProductID}")
                .replace("Contoso.App_8wekyb3d8bbwe", "{PackageFamilyName}")
        };
        let mut used = std::collections::BTreeSet::new();
        for kind in [AppKind::Msi, AppKind::Msix] {
            for (scope, intent) in KINDS {
                for op in operations(&record(kind), scope, intent).unwrap() {
                    for t in &op.targets {
                        let key = (op.verb.clone(), generic(t));
                        assert!(listed.contains(&key), "{key:?} is not in nodes.json");
                        used.insert(key);
                    }
                }
            }
        }
        for (verb, path) in &listed {
            if path.contains("AppManagement") && verb != "Alert" && path.contains("{Scope}") {
                assert!(
                    used.contains(&(verb.clone(), path.clone())),
                    "{verb} {path} listed but unused"
                );
            }
        }
        // The MsiInstallJob carries the schema's elements.
        let job = msi_install_job(&record(AppKind::Msi));
        for e in [
            "<ContentURLList><ContentURL>",
            "<FileHash>ABAB",
            "<CommandLine>/quiet",
            "<TimeOut>10",
            "<RetryCount>3",
            "<RetryInterval>5",
        ] {
            assert!(job.contains(e), "{e} in {job}");
        }
        assert!(job.contains(&url_placeholder("a1")));
    }

    #[test]
    fn profile_ids_round_trip() {
        for (s, i) in KINDS {
            let pid = profile_id("ab12", s, i);
            assert_eq!(parse_profile_id(&pid), Some(("ab12", s, i)));
        }
        assert_eq!(parse_profile_id("p1"), None);
        assert_eq!(parse_profile_id("app-x-device"), None);
    }
}
