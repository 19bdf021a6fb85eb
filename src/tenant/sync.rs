//! A sync pass and the worker that runs them.
//!
//! A pass, in order:
//! 0. on pulling passes, **catch up**: devices imported here since the connection but without
//!    tenant state (a crash between the import and its marking) are marked for import;
//! 1. **push devices**: deletions (`DELETE windowsAutopilotDeviceIdentities/{id}` and the
//!    import record, only for devices winmdm imported), then imports (`POST
//!    importedWindowsAutopilotDeviceIdentities`);
//! 2. **follow imports**: `GET importedWindowsAutopilotDeviceIdentities/{id}` until
//!    `state.deviceImportStatus` is `complete` (then the registered identity is found by serial
//!    number and the import record deleted) or `error` (its `deviceErrorCode`/`deviceErrorName`
//!    kept on the device);
//! 3. **device edits**: `updateDeviceProperties` for registered devices with a pending edit;
//! 4. **profiles**: create (`POST`), update (`PATCH`) or delete the deployment profiles winmdm
//!    created;
//! 5. **pull** (periodic, or on demand): every `windowsAutopilotDeviceIdentity`, paged; devices
//!    registered elsewhere are added here, known ones get the tenant's group tag, user and name
//!    when winmdm has no pending change for them, and devices gone from the tenant are removed.
//!
//! A dry run makes the same plan with reads only: nothing is written to the tenant or here.
//! A connection-level failure (token refused, Graph unreachable, still throttled) stops the
//! pass, is shown as the connection's last error, and leaves every change pending for the next
//! pass. A failure of one change is kept on that device or profile and retried up to
//! [`state::MAX_ATTEMPTS`] times.
//!
//! One pass at a time: on this node a mutex, across nodes sharing a store a lease record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::graph::{enc, Client, GraphError};
use super::shapes;
use super::state::{self, TenantDevice, TenantProfile, MAX_ATTEMPTS};
use crate::app::App;
use crate::autopilot::csv::{self, serial_key};
use crate::autopilot::devices::{AutopilotDevice, DEVICES as AP_DEVICES};
use crate::service::{blocking, ServiceError};
use crate::store::records::Kind;

const IMPORTED: &str = "/v1.0/deviceManagement/importedWindowsAutopilotDeviceIdentities";
const IDENTITIES: &str = "/v1.0/deviceManagement/windowsAutopilotDeviceIdentities";
const PROFILES: &str = "/beta/deviceManagement/windowsAutopilotDeploymentProfiles";

/// How long a node's claim on the pass holds.
const LEASE_SECS: i64 = 600;

/// The lease record (key [`state::KEY`]).
pub const LEASE: Kind<Lease> = Kind::new("tenant_lease");

/// A node's claim on running the sync pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Lease {
    /// The node.
    pub node: String,
    /// Until (Unix seconds).
    pub until: i64,
}

/// One change a pass made (or, dry, would make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What: `catch-up`, `import`, `poll`, `update`, `delete`, `profile-create`, `profile-update`,
    /// `profile-delete`, `pull-add`, `pull-update`, `pull-link`, `pull-remove`.
    pub action: String,
    /// Serial number or profile id.
    pub target: String,
    /// Details.
    pub detail: Value,
}

/// What a pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Nothing was written.
    pub dry_run: bool,
    /// The pass pulled the tenant's devices.
    pub pulled: bool,
    /// The changes, in order.
    pub changes: Vec<Change>,
    /// Changes that failed (the pass went on).
    pub failures: Vec<Change>,
    /// The connection-level failure that stopped the pass.
    pub error: Option<String>,
}

impl Report {
    fn add(&mut self, action: &str, target: &str, detail: Value) {
        self.changes.push(Change {
            action: action.into(),
            target: target.into(),
            detail,
        });
    }

    fn fail(&mut self, action: &str, target: &str, e: &GraphError) {
        self.failures.push(Change {
            action: action.into(),
            target: target.into(),
            detail: json!({ "error": e.to_string() }),
        });
    }
}

/// Loads the connection and its credential into a client acting as `actor`.
pub async fn client(app: &Arc<App>, actor: &str) -> Result<Client, GraphError> {
    let a = app.clone();
    let (conn, stored) = blocking(move || {
        let conn = state::connection(a.store.records())?;
        let stored = super::credential::read(&a.cfg.data_dir)
            .map_err(|reason| ServiceError::Internal { reason })?;
        Ok((conn, stored))
    })
    .await
    .map_err(|e| GraphError::Transport(e.to_string()))?;
    let conn = conn.ok_or(GraphError::NotConnected)?;
    let stored = stored.ok_or_else(|| {
        GraphError::Auth("the credential is not on this node (connect again here)".into())
    })?;
    let cred = super::credential::load(&stored, app.clock.now_unix()).map_err(GraphError::Auth)?;
    Ok(Client::new(app, conn, cred, actor))
}

async fn store<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&App) -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, GraphError> {
    let a = app.clone();
    blocking(move || f(&a))
        .await
        .map_err(|e| GraphError::Transport(format!("store: {e}")))
}

fn claim(app: &App) -> Result<Option<String>, ServiceError> {
    let now = app.clock.now_unix();
    let node = app.node_id.clone();
    let mut holder = None;
    LEASE.update(app.store.records(), state::KEY, |cur| {
        holder = None;
        match cur {
            Some(l) if l.until >= now && l.node != node => {
                holder = Some(l.node.clone());
                Ok(Some(l))
            }
            _ => Ok(Some(Lease {
                node: node.clone(),
                until: now + LEASE_SECS,
            })),
        }
    })?;
    Ok(holder)
}

fn release(app: &App) -> Result<(), ServiceError> {
    let node = app.node_id.clone();
    LEASE.update(app.store.records(), state::KEY, |cur| {
        Ok(cur.filter(|l| l.node != node))
    })?;
    Ok(())
}

/// Runs one pass as `actor` (pulling when `pull`), holding the pass lease. `Refused` when
/// another node holds it.
pub async fn run_pass(
    app: &Arc<App>,
    actor: &str,
    dry_run: bool,
    pull: bool,
) -> Result<Report, ServiceError> {
    let _local = app.tenant.pass.lock().await;
    if !dry_run {
        let a = app.clone();
        if let Some(node) = blocking(move || claim(&a)).await? {
            return Err(ServiceError::Refused {
                reason: format!("a tenant sync pass is running on node {node}; try again shortly"),
            });
        }
    }
    let mut report = Report {
        dry_run,
        pulled: pull,
        ..Report::default()
    };
    let outcome = pass(app, actor, dry_run, pull, &mut report).await;
    let now = app.clock.now_unix();
    let a = app.clone();
    let err = outcome.err();
    if let Some(e) = &err {
        tracing::warn!(error = %e, "tenant sync pass stopped");
        report.error = Some(e.to_string());
    }
    if !dry_run {
        let message = err.as_ref().map(|e| e.to_string());
        let not_connected = matches!(err, Some(GraphError::NotConnected));
        blocking(move || {
            let s = a.store.records();
            if !not_connected {
                match &message {
                    Some(m) => state::note_error(s, now, m)?,
                    None => {
                        state::clear_error(s)?;
                        state::CONNECTION.update(s, state::KEY, |c| {
                            Ok(c.map(|mut c| {
                                c.last_sync = Some(now);
                                if pull {
                                    c.last_pull = Some(now);
                                }
                                c
                            }))
                        })?;
                    }
                }
            }
            release(&a)
        })
        .await?;
    }
    tracing::info!(
        dry_run,
        pull,
        changes = report.changes.len(),
        failures = report.failures.len(),
        error = ?report.error,
        "tenant sync pass"
    );
    Ok(report)
}

async fn pass(
    app: &Arc<App>,
    actor: &str,
    dry: bool,
    pull: bool,
    r: &mut Report,
) -> Result<(), GraphError> {
    let c = client(app, actor).await?;
    // Validates the credential first, so a revoked one stops here with nothing half done.
    c.token().await?;
    // 0. On pulling passes: devices imported here since the connection that have no tenant
    // state (a crash between the local import and its marking) are imported too.
    if pull {
        catch_up(app, c.connection().connected_at, dry, r).await?;
    }
    let devices = store(app, |a| Ok(state::DEVICES.all(a.store.records())?)).await?;
    // 1. Deletions and imports.
    for (key, d) in &devices {
        if !d.pending.any() || d.attempts >= MAX_ATTEMPTS {
            continue;
        }
        if d.pending.delete {
            r.add(
                "delete",
                &d.serial,
                json!({ "autopilot_id": d.autopilot_id }),
            );
            if !dry {
                let res = delete_device(&c, d).await;
                settle(app, key, d.rev, res, r, "delete", |d| {
                    if d.pending.import {
                        // Imported again meanwhile: start over.
                        d.pending.delete = false;
                        d.autopilot_id = None;
                        d.import_id = None;
                        d.import_status = None;
                        false
                    } else {
                        true
                    }
                })
                .await?;
            }
            continue;
        }
        if d.pending.import && d.import_id.is_none() {
            let k = key.clone();
            let Some(local) =
                store(app, move |a| Ok(AP_DEVICES.get(a.store.records(), &k)?)).await?
            else {
                r.add(
                    "drop",
                    &d.serial,
                    json!({ "reason": "deleted here before it was sent" }),
                );
                if !dry {
                    let k = key.clone();
                    store(app, move |a| {
                        Ok(state::DEVICES.delete(a.store.records(), &k)?)
                    })
                    .await?;
                }
                continue;
            };
            r.add("import", &d.serial, json!({ "group_tag": local.group_tag }));
            if !dry {
                let res = c
                    .call("POST", IMPORTED, Some(&shapes::import_body(&local)))
                    .await;
                let res = res.and_then(|(_, v)| {
                    let id = v["id"]
                        .as_str()
                        .filter(|s| !s.is_empty() && s.len() <= 128)
                        .ok_or_else(|| GraphError::Unexpected("import answer without id".into()))?
                        .to_string();
                    let status = v["state"]["deviceImportStatus"]
                        .as_str()
                        .map(str::to_string);
                    Ok((id, status))
                });
                match res {
                    Ok((id, status)) => {
                        let k = key.clone();
                        store(app, move |a| {
                            state::DEVICES.update(a.store.records(), &k, |cur| {
                                Ok(cur.map(|mut d| {
                                    d.import_id = Some(id.clone());
                                    d.import_status = status.clone().or(Some("unknown".into()));
                                    d.pending.import = false;
                                    d.attempts = 0;
                                    d.last_error = None;
                                    d
                                }))
                            })?;
                            Ok(())
                        })
                        .await?;
                    }
                    Err(e) => failed(app, key, r, "import", &d.serial, e).await?,
                }
            }
        }
    }
    // 2. Imports in progress.
    let devices = store(app, |a| Ok(state::DEVICES.all(a.store.records())?)).await?;
    for (key, d) in &devices {
        if !d.import_in_progress() || d.pending.delete {
            continue;
        }
        if dry {
            r.add("poll", &d.serial, json!({ "import_id": d.import_id }));
            continue;
        }
        let import_id = d.import_id.clone().unwrap_or_default();
        match follow_import(&c, d, &import_id).await {
            Ok(next) => {
                if next.import_status != d.import_status || next.autopilot_id != d.autopilot_id {
                    r.add(
                        "poll",
                        &d.serial,
                        json!({ "import_status": next.import_status, "autopilot_id": next.autopilot_id,
                                "device_error_code": next.error_code, "device_error_name": next.error_name }),
                    );
                }
                let k = key.clone();
                store(app, move |a| {
                    state::DEVICES.update(a.store.records(), &k, |cur| {
                        Ok(cur.map(|mut d| {
                            d.import_status = next.import_status.clone();
                            d.error_code = next.error_code;
                            d.error_name = next.error_name.clone();
                            if next.autopilot_id.is_some() {
                                d.autopilot_id = next.autopilot_id.clone();
                            }
                            d
                        }))
                    })?;
                    Ok(())
                })
                .await?;
            }
            Err(e) => failed(app, key, r, "poll", &d.serial, e).await?,
        }
    }
    // 3. Edits of registered devices.
    let devices = store(app, |a| Ok(state::DEVICES.all(a.store.records())?)).await?;
    for (key, d) in &devices {
        if !d.pending.update || d.pending.delete || d.attempts >= MAX_ATTEMPTS {
            continue;
        }
        let Some(id) = d.autopilot_id.clone() else {
            continue;
        };
        let k = key.clone();
        let Some(local) = store(app, move |a| Ok(AP_DEVICES.get(a.store.records(), &k)?)).await?
        else {
            continue;
        };
        let body = shapes::update_body(&local);
        r.add("update", &d.serial, body.clone());
        if !dry {
            let res = c
                .call(
                    "POST",
                    &format!("{IDENTITIES}/{}/updateDeviceProperties", enc(&id)),
                    Some(&body),
                )
                .await
                .map(|_| ());
            settle(app, key, d.rev, res, r, "update", |d| {
                d.pending.update = false;
                false
            })
            .await?;
        }
    }
    // 4. Profiles.
    let profiles = store(app, |a| Ok(state::PROFILES.all(a.store.records())?)).await?;
    for (id, p) in &profiles {
        if !(p.push || p.delete) || p.attempts >= MAX_ATTEMPTS {
            continue;
        }
        if let Err(e) = push_profile(app, &c, id, p, dry, r).await {
            if e.is_connection() {
                return Err(e);
            }
            r.fail("profile", id, &e);
            let (k, msg) = (id.clone(), e.to_string());
            store(app, move |a| {
                state::PROFILES.update(a.store.records(), &k, |cur| {
                    Ok(cur.map(|mut p| {
                        p.attempts += 1;
                        p.last_error = Some(msg.clone());
                        p
                    }))
                })?;
                Ok(())
            })
            .await?;
        }
    }
    // 5. Pull.
    if pull {
        pull_devices(app, &c, dry, r).await?;
    }
    Ok(())
}

/// Finds local devices imported since `since` (with a hardware hash) that have no tenant state
/// and marks them for import.
async fn catch_up(app: &Arc<App>, since: i64, dry: bool, r: &mut Report) -> Result<(), GraphError> {
    let missed = store(app, move |a| {
        let s = a.store.records();
        let mut missed = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = AP_DEVICES.list(s, after.as_deref(), 500)?;
            let Some((last, _)) = page.last() else {
                return Ok(missed);
            };
            after = Some(last.clone());
            for (key, d) in page {
                if d.imported_at >= since
                    && !d.hardware_hash.is_empty()
                    && state::DEVICES.get(s, &key)?.is_none()
                {
                    missed.push(d.serial);
                }
            }
        }
    })
    .await?;
    for serial in &missed {
        r.add(
            "import",
            serial,
            json!({ "reason": "imported here without tenant state" }),
        );
    }
    if !dry && !missed.is_empty() {
        let now = app.clock.now_unix();
        store(app, move |a| {
            state::on_devices_imported(a.store.records(), &missed, now)?;
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// Records the result of a push: on success `done` edits the record (returns `true` to
/// delete it) when no local change came meanwhile; on failure the error is kept.
async fn settle(
    app: &Arc<App>,
    key: &str,
    rev: u64,
    res: Result<(), GraphError>,
    r: &mut Report,
    action: &str,
    done: impl Fn(&mut TenantDevice) -> bool + Send + 'static,
) -> Result<(), GraphError> {
    match res {
        Ok(()) => {
            let k = key.to_string();
            store(app, move |a| {
                state::DEVICES.update(a.store.records(), &k, |cur| {
                    let Some(mut d) = cur else { return Ok(None) };
                    d.attempts = 0;
                    d.last_error = None;
                    if d.rev != rev && !d.pending.delete {
                        // Changed meanwhile: pushed again next pass.
                        return Ok(Some(d));
                    }
                    Ok(if done(&mut d) { None } else { Some(d) })
                })?;
                Ok(())
            })
            .await
        }
        Err(e) => {
            let serial = key.to_string();
            failed(app, key, r, action, &serial, e).await
        }
    }
}

async fn failed(
    app: &Arc<App>,
    key: &str,
    r: &mut Report,
    action: &str,
    serial: &str,
    e: GraphError,
) -> Result<(), GraphError> {
    if e.is_connection() {
        return Err(e);
    }
    r.fail(action, serial, &e);
    let (k, msg) = (key.to_string(), e.to_string());
    store(app, move |a| {
        state::DEVICES.update(a.store.records(), &k, |cur| {
            Ok(cur.map(|mut d| {
                d.attempts += 1;
                d.last_error = Some(msg.clone());
                d
            }))
        })?;
        Ok(())
    })
    .await
}

fn ok_if_gone(r: Result<(u16, Value), GraphError>) -> Result<(), GraphError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

async fn delete_device(c: &Client, d: &TenantDevice) -> Result<(), GraphError> {
    if !d.created_by_winmdm {
        return Ok(());
    }
    if let Some(id) = &d.autopilot_id {
        ok_if_gone(
            c.call("DELETE", &format!("{IDENTITIES}/{}", enc(id)), None)
                .await,
        )?;
    }
    if let Some(id) = &d.import_id {
        ok_if_gone(
            c.call("DELETE", &format!("{IMPORTED}/{}", enc(id)), None)
                .await,
        )?;
    }
    Ok(())
}

/// The registered identity with exactly this serial number, if Graph lists one.
pub async fn find_identity(c: &Client, serial: &str) -> Result<Option<String>, GraphError> {
    let filter = format!("contains(serialNumber,'{}')", serial.replace('\'', "''"));
    let found = c
        .list(&format!("{IDENTITIES}?$filter={}", enc(&filter)))
        .await?;
    Ok(found
        .iter()
        .filter_map(shapes::remote_device)
        .find(|r| serial_key(&r.serial) == serial_key(serial))
        .map(|r| r.id))
}

async fn follow_import(
    c: &Client,
    d: &TenantDevice,
    import_id: &str,
) -> Result<TenantDevice, GraphError> {
    let mut next = d.clone();
    let v = match c.get(&format!("{IMPORTED}/{}", enc(import_id))).await {
        Ok(v) => v,
        Err(e) if e.is_not_found() => {
            // Gone (cleaned up after completion by someone): is the device registered?
            next.autopilot_id = find_identity(c, &d.serial).await?;
            if next.autopilot_id.is_some() {
                next.import_status = Some("complete".into());
            }
            return Ok(next);
        }
        Err(e) => return Err(e),
    };
    let st = &v["state"];
    let status = st["deviceImportStatus"]
        .as_str()
        .filter(|s| s.len() <= 32)
        .unwrap_or("unknown")
        .to_string();
    next.error_code = st["deviceErrorCode"].as_i64().filter(|c| *c != 0);
    next.error_name = st["deviceErrorName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(|s| crate::store::clip_bytes(s, 256));
    if status == "complete" {
        next.autopilot_id = find_identity(c, &d.serial).await?;
        if next.autopilot_id.is_some() {
            // The import record has served: delete it (winmdm created it).
            ok_if_gone(
                c.call("DELETE", &format!("{IMPORTED}/{}", enc(import_id)), None)
                    .await,
            )?;
        }
    }
    if status == "error" {
        tracing::warn!(serial = %d.serial, code = ?next.error_code, name = ?next.error_name, "Autopilot import refused by Microsoft");
    }
    next.import_status = Some(status);
    Ok(next)
}

async fn push_profile(
    app: &Arc<App>,
    c: &Client,
    id: &str,
    p: &TenantProfile,
    dry: bool,
    r: &mut Report,
) -> Result<(), GraphError> {
    let k = id.to_string();
    if p.delete {
        r.add(
            "profile-delete",
            id,
            json!({ "graph_id": p.graph_id, "name": p.name }),
        );
        if dry {
            return Ok(());
        }
        if let Some(g) = &p.graph_id {
            for a in &p.assignments {
                if let Some(aid) = &a.assignment_id {
                    ok_if_gone(
                        c.call(
                            "DELETE",
                            &format!("{PROFILES}/{}/assignments/{}", enc(g), enc(aid)),
                            None,
                        )
                        .await,
                    )?;
                }
            }
            ok_if_gone(
                c.call("DELETE", &format!("{PROFILES}/{}", enc(g)), None)
                    .await,
            )?;
        }
        let rev = p.rev;
        return store(app, move |a| {
            state::PROFILES.update(
                a.store.records(),
                &k,
                |cur| Ok(cur.filter(|p| p.rev != rev)),
            )?;
            Ok(())
        })
        .await;
    }
    let kk = k.clone();
    let Some(local) = store(app, move |a| {
        Ok(crate::autopilot::profiles::PROFILES.get(a.store.records(), &kk)?)
    })
    .await?
    else {
        return Ok(());
    };
    let body = shapes::profile_body(&local);
    let graph_id = match &p.graph_id {
        None => {
            r.add("profile-create", id, json!({ "name": local.name }));
            if dry {
                return Ok(());
            }
            let (_, v) = c.call("POST", PROFILES, Some(&body)).await?;
            Some(
                v["id"]
                    .as_str()
                    .filter(|s| !s.is_empty() && s.len() <= 128)
                    .ok_or_else(|| GraphError::Unexpected("profile answer without id".into()))?
                    .to_string(),
            )
        }
        Some(g) => {
            r.add(
                "profile-update",
                id,
                json!({ "name": local.name, "graph_id": g }),
            );
            if dry {
                return Ok(());
            }
            c.call("PATCH", &format!("{PROFILES}/{}", enc(g)), Some(&body))
                .await?;
            None
        }
    };
    let rev = p.rev;
    store(app, move |a| {
        state::PROFILES.update(a.store.records(), &k, |cur| {
            Ok(cur.map(|mut p| {
                if let Some(g) = &graph_id {
                    p.graph_id = Some(g.clone());
                }
                if p.rev == rev {
                    p.push = false;
                }
                p.attempts = 0;
                p.last_error = None;
                p
            }))
        })?;
        Ok(())
    })
    .await
}

/// Pushes one profile now (before an assignment), whatever the worker's schedule.
pub async fn push_profile_now(
    app: &Arc<App>,
    c: &Client,
    id: &str,
) -> Result<Option<TenantProfile>, GraphError> {
    let k = id.to_string();
    let Some(p) = store(
        app,
        move |a| Ok(state::PROFILES.get(a.store.records(), &k)?),
    )
    .await?
    else {
        return Ok(None);
    };
    if p.push || p.graph_id.is_none() {
        let mut r = Report::default();
        push_profile(app, c, id, &p, false, &mut r).await?;
    }
    let k = id.to_string();
    store(
        app,
        move |a| Ok(state::PROFILES.get(a.store.records(), &k)?),
    )
    .await
}

fn pulled_record(r: &shapes::RemoteDevice, now: i64) -> AutopilotDevice {
    let user = r
        .user
        .clone()
        .map(|u| u.to_lowercase())
        .filter(|u| csv::valid_upn(u));
    AutopilotDevice {
        serial: crate::store::clip_bytes(&r.serial, 128),
        product_id: r
            .product_key
            .clone()
            .map(|p| crate::store::clip_bytes(&p, 64)),
        // Graph does not list hardware hashes: the link checks the serial only
        // (`hash_check` becomes `unverified`).
        hardware_hash: String::new(),
        group_tag: r
            .group_tag
            .clone()
            .filter(|t| csv::check_group_tag(t).is_ok()),
        user_friendly_name: r
            .addressable_user_name
            .clone()
            .filter(|_| user.is_some())
            .map(|n| crate::store::clip_bytes(&n, 128)),
        assigned_user: user,
        device_name: r
            .display_name
            .clone()
            .filter(|n| crate::autopilot::names::check_name(n).is_ok()),
        linked_device_id: None,
        linked_at: None,
        imported_at: now,
        hash_check: None,
        conflicts: Vec::new(),
    }
}

/// The tenant's values for the fields winmdm shows, where they differ from `l` (valid ones
/// only).
fn differences(l: &AutopilotDevice, r: &shapes::RemoteDevice) -> Option<AutopilotDevice> {
    let p = pulled_record(r, l.imported_at);
    let mut n = l.clone();
    n.group_tag = p.group_tag;
    n.assigned_user = p.assigned_user;
    n.user_friendly_name = p.user_friendly_name;
    if p.device_name.is_some() {
        n.device_name = p.device_name;
    }
    (n != *l).then_some(n)
}

async fn pull_devices(
    app: &Arc<App>,
    c: &Client,
    dry: bool,
    r: &mut Report,
) -> Result<(), GraphError> {
    let remote: Vec<shapes::RemoteDevice> = c
        .list(IDENTITIES)
        .await?
        .iter()
        .filter_map(shapes::remote_device)
        .collect();
    let now = app.clock.now_unix();
    let mut added = 0usize;
    let mut seen = std::collections::HashSet::new();
    for rd in &remote {
        let key = serial_key(&rd.serial);
        seen.insert(rd.id.clone());
        let k = key.clone();
        let (t, l) = store(app, move |a| {
            let s = a.store.records();
            Ok((state::DEVICES.get(s, &k)?, AP_DEVICES.get(s, &k)?))
        })
        .await?;
        if t.as_ref().is_some_and(|t| t.pending.delete) {
            continue;
        }
        match l {
            None => {
                r.add(
                    "pull-add",
                    &rd.serial,
                    json!({ "autopilot_id": rd.id, "group_tag": rd.group_tag }),
                );
                if dry {
                    continue;
                }
                let rec = pulled_record(rd, now);
                let (k, id) = (key.clone(), rd.id.clone());
                let serial = rec.serial.clone();
                let inserted = store(app, move |a| {
                    let s = a.store.records();
                    if !AP_DEVICES.insert_new(s, &k, &rec)? {
                        return Ok(false);
                    }
                    state::DEVICES.update(s, &k, |cur| {
                        let mut d = cur.unwrap_or_else(|| TenantDevice {
                            serial: serial.clone(),
                            created_by_winmdm: false,
                            import_id: None,
                            import_status: None,
                            error_code: None,
                            error_name: None,
                            autopilot_id: None,
                            pending: state::Pending::default(),
                            rev: 0,
                            attempts: 0,
                            last_error: None,
                            updated_at: now,
                        });
                        d.autopilot_id = Some(id.clone());
                        d.updated_at = now;
                        Ok(Some(d))
                    })?;
                    Ok(true)
                })
                .await?;
                if inserted {
                    added += 1;
                }
            }
            Some(l) => {
                let known = t.as_ref().and_then(|t| t.autopilot_id.clone());
                if known.as_deref() != Some(rd.id.as_str()) {
                    r.add("pull-link", &rd.serial, json!({ "autopilot_id": rd.id }));
                    if !dry {
                        let (k, id, serial) = (key.clone(), rd.id.clone(), l.serial.clone());
                        store(app, move |a| {
                            state::DEVICES.update(a.store.records(), &k, |cur| {
                                let mut d = cur.unwrap_or_else(|| TenantDevice {
                                    serial: serial.clone(),
                                    created_by_winmdm: false,
                                    import_id: None,
                                    import_status: None,
                                    error_code: None,
                                    error_name: None,
                                    autopilot_id: None,
                                    pending: state::Pending::default(),
                                    rev: 0,
                                    attempts: 0,
                                    last_error: None,
                                    updated_at: now,
                                });
                                d.autopilot_id = Some(id.clone());
                                if d.import_status.as_deref() != Some("error")
                                    && d.import_id.is_some()
                                {
                                    d.import_status = Some("complete".into());
                                }
                                d.updated_at = now;
                                Ok(Some(d))
                            })?;
                            Ok(())
                        })
                        .await?;
                    }
                }
                let pending = t.as_ref().is_some_and(|t| t.pending.any());
                if pending {
                    continue;
                }
                if let Some(n) = differences(&l, rd) {
                    r.add(
                        "pull-update",
                        &rd.serial,
                        json!({ "group_tag": n.group_tag, "user": n.assigned_user, "device_name": n.device_name }),
                    );
                    if !dry {
                        let k = key.clone();
                        store(app, move |a| {
                            let rec = AP_DEVICES.update(a.store.records(), &k, |cur| {
                                Ok(cur.map(|mut c| {
                                    c.group_tag = n.group_tag.clone();
                                    c.assigned_user = n.assigned_user.clone();
                                    c.user_friendly_name = n.user_friendly_name.clone();
                                    c.device_name = n.device_name.clone();
                                    c
                                }))
                            })?;
                            if let Some(rec) = rec {
                                crate::service::autopilot::sync_linked(a, &rec)?;
                            }
                            Ok(())
                        })
                        .await?;
                    }
                }
            }
        }
    }
    // Registered devices gone from the tenant: removed here too.
    let known = store(app, |a| Ok(state::DEVICES.all(a.store.records())?)).await?;
    for (key, t) in known {
        let Some(id) = &t.autopilot_id else { continue };
        // Only devices registered elsewhere: one winmdm imported is never removed here
        // because a list did not show it (yet).
        if seen.contains(id) || t.pending.any() || t.created_by_winmdm {
            continue;
        }
        r.add("pull-remove", &t.serial, json!({ "autopilot_id": id }));
        if !dry {
            store(app, move |a| {
                let s = a.store.records();
                AP_DEVICES.delete(s, &key)?;
                state::DEVICES.delete(s, &key)?;
                Ok(())
            })
            .await?;
        }
    }
    if added > 0 {
        store(app, |a| {
            let (linked, asked) = crate::autopilot::convert::link_after_import(a)?;
            tracing::info!(linked, asked, "tenant pull: enrolled devices linked");
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// The worker of a node: every `--tenant-poll` (or at once when kicked) pushes pending
/// changes and follows imports; every `--tenant-sync-interval` also pulls. Skips quietly when
/// no tenant is connected or this node lacks the credential.
pub async fn run(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let poll = app.tenant.cfg.poll;
    let interval = app.tenant.cfg.sync_interval;
    let mut last_pull: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = app.tenant.kick.notified() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let a = app.clone();
        let ready = blocking(move || {
            Ok(state::connection(a.store.records())?.is_some()
                && super::credential::path(&a.cfg.data_dir).exists())
        })
        .await;
        match ready {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "tenant worker: store unavailable");
                continue;
            }
        }
        let pull = interval.is_some_and(|i| last_pull.is_none_or(|t| t.elapsed() >= i));
        match run_pass(&app, super::SYNC_ACTOR, false, pull).await {
            Ok(rep) if rep.error.is_none() && pull => last_pull = Some(Instant::now()),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "tenant worker: pass skipped"),
        }
        // Do not spin when kicked in a burst.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
