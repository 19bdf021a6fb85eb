//! The Microsoft tenant (issue #19): connect, state, disconnect, sync (or its dry run), the
//! Entra groups winmdm creates and the profiles' group assignments in the tenant. The Graph
//! work is in [`crate::tenant`]; this layer checks roles, validates input and audits.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{audit, blocking, Actor, ServiceError};
use crate::app::App;
use crate::autopilot::csv::serial_key;
use crate::store::records::Kind;
use crate::tenant::credential::{self, Stored};
use crate::tenant::graph::{enc, Client, GraphError};
use crate::tenant::shapes::{self, Membership};
use crate::tenant::state::{self, Connection, EntraGroup, TenantProfile};
use crate::tenant::sync::{self, Report};

/// The tenant the per-object records belong to (key [`state::KEY`]).
const BOUND: Kind<String> = Kind::new("tenant_bound");
/// Longest group display name.
pub const MAX_GROUP_NAME: usize = 256;
/// Most Entra groups winmdm keeps records of.
pub const MAX_GROUPS: usize = 10_000;

impl From<GraphError> for ServiceError {
    fn from(e: GraphError) -> ServiceError {
        match e {
            GraphError::NotConnected => ServiceError::Refused {
                reason:
                    "no Microsoft tenant is connected: winmdm tenant connect (PUT /api/v1/tenant)"
                        .into(),
            },
            e => ServiceError::Refused {
                reason: format!("Microsoft Graph: {e}"),
            },
        }
    }
}

/// What `PUT /api/v1/tenant` takes.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectInput {
    /// Entra tenant id (GUID).
    pub tenant_id: String,
    /// Application (client) id (GUID).
    pub client_id: String,
    /// PEM certificate registered on the app (with `private_key_pem`).
    pub certificate_pem: Option<String>,
    /// PEM RSA private key of the certificate.
    pub private_key_pem: Option<String>,
    /// Or a client secret.
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for ConnectInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectInput")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn guid(field: &str, v: &str) -> Result<String, ServiceError> {
    let v = v.trim().to_ascii_lowercase();
    let ok = v.len() == 36
        && v.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if !ok {
        return Err(ServiceError::Invalid {
            field: field.into(),
            reason: format!(
                "{field}: expected a GUID such as 00000000-0000-0000-0000-000000000000"
            ),
        });
    }
    Ok(v)
}

/// The connection's state, as the API shows it (no secret in it).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `connected`, `error` (connected, the last call failed) or `not_connected`.
    pub state: String,
    /// The connection.
    #[serde(flatten)]
    pub connection: Option<Connection>,
    /// The last connection-level failure (a refused token, Graph unreachable, a failed
    /// connect).
    pub last_error: Option<state::ErrorNote>,
    /// Devices with a change waiting to be pushed.
    pub pending_devices: usize,
    /// Devices whose import Microsoft refused.
    pub import_errors: usize,
    /// Profiles with a change waiting to be pushed.
    pub pending_profiles: usize,
    /// Login base URL.
    pub login_url: String,
    /// Graph base URL.
    pub graph_url: String,
    /// Periodic pull interval in seconds (`null`: on demand only).
    pub sync_interval_secs: Option<u64>,
}

/// The connection's state.
pub async fn status(app: &Arc<App>) -> Result<Status, ServiceError> {
    let a = app.clone();
    let (conn, err, devices, profiles) = blocking(move || {
        let s = a.store.records();
        Ok((
            state::connection(s)?,
            state::LAST_ERROR.get(s, state::KEY)?,
            state::DEVICES.all(s)?,
            state::PROFILES.all(s)?,
        ))
    })
    .await?;
    let st = match (&conn, &err) {
        (None, _) => "not_connected",
        (Some(_), Some(_)) => "error",
        (Some(_), None) => "connected",
    };
    Ok(Status {
        state: st.into(),
        connection: conn,
        last_error: err,
        pending_devices: devices.iter().filter(|(_, d)| d.pending.any()).count(),
        import_errors: devices
            .iter()
            .filter(|(_, d)| d.import_status.as_deref() == Some("error"))
            .count(),
        pending_profiles: profiles.iter().filter(|(_, p)| p.push || p.delete).count(),
        login_url: app.tenant.cfg.login_url.clone(),
        graph_url: app.tenant.cfg.graph_url.clone(),
        sync_interval_secs: app.tenant.cfg.sync_interval.map(|d| d.as_secs()),
    })
}

/// Connects the tenant: the credential is checked, a token requested and the organization
/// read (its id must be the tenant id); then the credential is stored (0600) and the
/// connection recorded. A refusal is kept as the last error and answered as `Refused`.
pub async fn connect(
    app: &Arc<App>,
    actor: &Actor,
    input: ConnectInput,
) -> Result<Status, ServiceError> {
    actor.require_admin("PUT /api/v1/tenant")?;
    let tenant_id = guid("tenant_id", &input.tenant_id)?;
    let client_id = guid("client_id", &input.client_id)?;
    let stored = match (
        input.certificate_pem,
        input.private_key_pem,
        input.client_secret,
    ) {
        (Some(c), Some(k), None) => Stored::Certificate {
            certificate_pem: c,
            private_key_pem: k,
        },
        (None, None, Some(s)) => Stored::Secret { secret: s },
        _ => {
            return Err(ServiceError::Invalid {
                field: "credential".into(),
                reason: "credential: give certificate_pem with private_key_pem, or client_secret"
                    .into(),
            })
        }
    };
    let now = app.clock.now_unix();
    let cred = credential::load(&stored, now).map_err(|reason| ServiceError::Invalid {
        field: "credential".into(),
        reason: format!("credential: {reason}"),
    })?;
    let summary = cred.summary();
    let conn = Connection {
        tenant_id: tenant_id.clone(),
        client_id: client_id.clone(),
        credential: summary.clone(),
        organization: None,
        connected_at: now,
        connected_by: actor.name.clone(),
        last_sync: None,
        last_pull: None,
    };
    app.tenant.forget_token();
    let c = Client::new(app, conn.clone(), cred, &actor.name);
    let checked = async {
        c.token().await?;
        let org = c.get("/v1.0/organization").await?;
        let first = org["value"].get(0).cloned().unwrap_or(Value::Null);
        let id = first["id"].as_str().unwrap_or("").to_ascii_lowercase();
        if id != tenant_id {
            return Err(GraphError::Unexpected(format!(
                "the token is for organization {id:?}, not tenant {tenant_id}"
            )));
        }
        Ok(first["displayName"]
            .as_str()
            .map(|s| crate::store::clip_bytes(s, 256)))
    }
    .await;
    app.tenant.forget_token();
    let organization = match checked {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(tenant_id = %tenant_id, client_id = %client_id, error = %e, "tenant connect refused");
            let (a, msg) = (app.clone(), format!("connect failed: {e}"));
            blocking(move || Ok(state::note_error(a.store.records(), now, &msg)?)).await?;
            return Err(ServiceError::Refused {
                reason: format!(
                    "the tenant did not accept this connection: {e}. Check the tenant id, the \
                     application id, the certificate uploaded to the app registration (or the \
                     secret) and the admin consent"
                ),
            });
        }
    };
    let conn = Connection {
        organization,
        ..conn
    };
    let a = app.clone();
    let record = conn.clone();
    blocking(move || {
        let s = a.store.records();
        if BOUND
            .get(s, state::KEY)?
            .is_some_and(|t| t != record.tenant_id)
        {
            // Another tenant: the ids winmdm kept belong to the old one.
            for (k, _) in state::DEVICES.all(s)? {
                state::DEVICES.delete(s, &k)?;
            }
            for (k, _) in state::PROFILES.all(s)? {
                state::PROFILES.delete(s, &k)?;
            }
            for (k, _) in state::GROUPS.all(s)? {
                state::GROUPS.delete(s, &k)?;
            }
        }
        credential::save(&a.cfg.data_dir, &stored).map_err(|e| ServiceError::Internal {
            reason: format!("storing the tenant credential: {e}"),
        })?;
        BOUND.put(s, state::KEY, &record.tenant_id)?;
        state::CONNECTION.put(s, state::KEY, &record)?;
        state::clear_error(s)?;
        Ok(())
    })
    .await?;
    tracing::info!(tenant_id = %conn.tenant_id, client_id = %conn.client_id, kind = %summary.kind, "Microsoft tenant connected");
    audit(
        app,
        actor,
        "tenant.connect",
        &conn.tenant_id,
        json!({ "client_id": conn.client_id, "credential": summary.kind, "thumbprint": summary.thumbprint }),
    )
    .await;
    app.tenant.kick.notify_one();
    status(app).await
}

/// Disconnects: the connection and the stored credential are removed (the records of what
/// winmdm created in the tenant are kept, for a later connection to the same tenant).
pub async fn disconnect(app: &Arc<App>, actor: &Actor) -> Result<(), ServiceError> {
    actor.require_admin("DELETE /api/v1/tenant")?;
    let a = app.clone();
    let gone = blocking(move || {
        let s = a.store.records();
        // An update, not a take: it retries when a sync pass writes `last_sync` meanwhile.
        let mut gone = None;
        state::CONNECTION.update(s, state::KEY, |c| {
            gone = c;
            Ok(None)
        })?;
        state::clear_error(s)?;
        credential::remove(&a.cfg.data_dir).map_err(|e| ServiceError::Internal {
            reason: format!("removing the tenant credential: {e}"),
        })?;
        Ok(gone)
    })
    .await?;
    app.tenant.forget_token();
    let conn = gone.ok_or_else(|| ServiceError::not_found("tenant connection"))?;
    tracing::info!(tenant_id = %conn.tenant_id, "Microsoft tenant disconnected");
    audit(app, actor, "tenant.disconnect", &conn.tenant_id, json!({})).await;
    Ok(())
}

/// Runs a sync pass now (pulling the tenant's devices), or only shows it (`dry_run`).
pub async fn sync(app: &Arc<App>, actor: &Actor, dry_run: bool) -> Result<Report, ServiceError> {
    actor.require_admin("POST /api/v1/tenant/sync")?;
    let report = sync::run_pass(app, &actor.name, dry_run, true).await?;
    if !dry_run {
        audit(
            app,
            actor,
            "tenant.sync",
            "tenant",
            json!({ "changes": report.changes.len(), "failures": report.failures.len(), "error": report.error }),
        )
        .await;
    }
    Ok(report)
}

/// A device's state in the tenant, if it has one.
pub async fn device_state(app: &Arc<App>, serial: &str) -> Result<Option<Value>, ServiceError> {
    let (a, k) = (app.clone(), serial_key(serial));
    blocking(move || Ok(state::DEVICES.get(a.store.records(), &k)?.map(|d| d.view()))).await
}

/// What `POST /api/v1/tenant/groups` takes: a name and exactly one membership.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupInput {
    /// Display name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Dynamic on this Autopilot group tag.
    pub group_tag: Option<String>,
    /// Dynamic on this ZTDId.
    pub ztd_id: Option<String>,
    /// Dynamic on every Autopilot device.
    #[serde(default)]
    pub all_autopilot: bool,
    /// Static with these devices (serial numbers, registered in the tenant).
    pub devices: Option<Vec<String>>,
}

fn bad_field(field: &str, reason: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field: field.into(),
        reason: format!("{field}: {}", reason.into()),
    }
}

fn text(field: &str, v: &str, max: usize) -> Result<String, ServiceError> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(bad_field(
            field,
            format!("give 1 to {max} characters without control characters"),
        ));
    }
    Ok(v.to_string())
}

/// Resolves serial numbers to the directory object ids of their Entra devices.
async fn device_objects(
    app: &Arc<App>,
    c: &Client,
    serials: &[String],
) -> Result<Vec<String>, ServiceError> {
    let mut out = Vec::new();
    for serial in serials {
        let k = serial_key(serial);
        let a = app.clone();
        let t = blocking(move || Ok(state::DEVICES.get(a.store.records(), &k)?)).await?;
        let Some(id) = t.and_then(|t| t.autopilot_id) else {
            return Err(bad_field(
                "devices",
                format!("{serial} is not registered in the tenant (yet)"),
            ));
        };
        let ident = c
            .get(&format!(
                "/v1.0/deviceManagement/windowsAutopilotDeviceIdentities/{}",
                enc(&id)
            ))
            .await?;
        let aad = ident["azureActiveDirectoryDeviceId"]
            .as_str()
            .filter(|s| !s.is_empty() && *s != "00000000-0000-0000-0000-000000000000")
            .ok_or_else(|| {
                bad_field(
                    "devices",
                    format!("{serial} has no Entra device object yet (Autopilot creates it shortly after registration)"),
                )
            })?
            .to_string();
        let filter = format!("deviceId eq '{}'", aad.replace('\'', "''"));
        let found = c
            .get(&format!(
                "/v1.0/devices?$filter={}&$select=id",
                enc(&filter)
            ))
            .await?;
        let obj = found["value"]
            .get(0)
            .and_then(|d| d["id"].as_str())
            .ok_or_else(|| bad_field("devices", format!("no Entra device {aad} for {serial}")))?;
        out.push(obj.to_string());
    }
    Ok(out)
}

/// Creates an Entra security group in the tenant (dynamic on a group tag, a ZTDId or every
/// Autopilot device; or static with chosen devices) and records that winmdm created it.
pub async fn create_group(
    app: &Arc<App>,
    actor: &Actor,
    input: GroupInput,
) -> Result<EntraGroup, ServiceError> {
    actor.require_admin("POST /api/v1/tenant/groups")?;
    let name = text("name", &input.name, MAX_GROUP_NAME)?;
    let description = input
        .description
        .as_deref()
        .map(|d| text("description", d, 1024))
        .transpose()?;
    let chosen = [
        input.group_tag.is_some(),
        input.ztd_id.is_some(),
        input.all_autopilot,
        input.devices.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if chosen != 1 {
        return Err(bad_field(
            "membership",
            "give exactly one of group_tag, ztd_id, all_autopilot or devices",
        ));
    }
    let c = sync::client(app, &actor.name).await?;
    let membership = if let Some(t) = &input.group_tag {
        Membership::GroupTag(t.trim().to_string())
    } else if let Some(z) = &input.ztd_id {
        Membership::ZtdId(z.trim().to_string())
    } else if input.all_autopilot {
        Membership::AllAutopilot
    } else {
        let serials = input.devices.clone().unwrap_or_default();
        if serials.is_empty() || serials.len() > shapes::MAX_STATIC_MEMBERS {
            return Err(bad_field(
                "devices",
                format!("give 1 to {} serial numbers", shapes::MAX_STATIC_MEMBERS),
            ));
        }
        Membership::Static(device_objects(app, &c, &serials).await?)
    };
    let rule = membership.rule().map_err(|e| bad_field("membership", e))?;
    let a = app.clone();
    if blocking(move || Ok(state::GROUPS.all(a.store.records())?.len())).await? >= MAX_GROUPS {
        return Err(ServiceError::Refused {
            reason: format!("winmdm keeps at most {MAX_GROUPS} Entra groups"),
        });
    }
    let nickname = shapes::mail_nickname(&name, &crate::clock::random_hex(3));
    let body = shapes::group_body(
        &name,
        description.as_deref(),
        &nickname,
        &membership,
        &app.tenant.cfg.graph_url,
    )
    .map_err(|e| bad_field("membership", e))?;
    let (_, v) = c.call("POST", "/v1.0/groups", Some(&body)).await?;
    let id = v["id"]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or_else(|| ServiceError::Refused {
            reason: "Microsoft Graph: the group answer has no id".into(),
        })?
        .to_string();
    let g = EntraGroup {
        id: id.clone(),
        display_name: name,
        mail_nickname: nickname,
        kind: if rule.is_some() { "dynamic" } else { "static" }.into(),
        membership_rule: rule,
        devices: input.devices.unwrap_or_default(),
        created_at: app.clock.now_unix(),
        created_by: actor.name.clone(),
    };
    let (a, rec) = (app.clone(), g.clone());
    blocking(move || Ok(state::GROUPS.put(a.store.records(), &rec.id, &rec)?)).await?;
    tracing::info!(group_id = %g.id, kind = %g.kind, "Entra group created");
    audit(
        app,
        actor,
        "tenant.group.create",
        &g.id,
        json!({ "name": g.display_name, "kind": g.kind, "membership_rule": g.membership_rule }),
    )
    .await;
    Ok(g)
}

/// The Entra groups winmdm created.
pub async fn list_groups(app: &Arc<App>) -> Result<Vec<EntraGroup>, ServiceError> {
    let a = app.clone();
    blocking(move || {
        Ok(state::GROUPS
            .all(a.store.records())?
            .into_iter()
            .map(|(_, g)| g)
            .collect())
    })
    .await
}

/// Most serial numbers kept on a static group's record.
pub const MAX_GROUP_DEVICES: usize = 10_000;

/// Adds devices (serial numbers registered in the tenant) to a static Entra group winmdm
/// created: `POST /v1.0/groups/{id}/members/$ref` for each
/// (<https://learn.microsoft.com/graph/api/group-post-members>).
pub async fn add_group_members(
    app: &Arc<App>,
    actor: &Actor,
    id: &str,
    serials: Vec<String>,
) -> Result<EntraGroup, ServiceError> {
    actor.require_admin(&format!("POST /api/v1/tenant/groups/{id}/members"))?;
    if serials.is_empty() || serials.len() > shapes::MAX_STATIC_MEMBERS {
        return Err(bad_field(
            "devices",
            format!("give 1 to {} serial numbers", shapes::MAX_STATIC_MEMBERS),
        ));
    }
    let (a, k) = (app.clone(), id.to_string());
    let g = blocking(move || Ok(state::GROUPS.get(a.store.records(), &k)?))
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("Entra group {id} created by winmdm")))?;
    if g.kind != "static" {
        return Err(ServiceError::Refused {
            reason: format!(
                "Entra group {id} is dynamic: its members follow its rule {}",
                g.membership_rule.as_deref().unwrap_or("")
            ),
        });
    }
    let c = sync::client(app, &actor.name).await?;
    let objects = device_objects(app, &c, &serials).await?;
    for obj in &objects {
        let body = json!({ "@odata.id": format!("{}/v1.0/directoryObjects/{obj}", app.tenant.cfg.graph_url) });
        match c
            .call(
                "POST",
                &format!("/v1.0/groups/{}/members/$ref", enc(&g.id)),
                Some(&body),
            )
            .await
        {
            Ok(_) => {}
            // Already a member: what was asked holds.
            Err(GraphError::Api {
                status: 400,
                message,
                ..
            }) if message.contains("already exist") => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (a, k, added) = (app.clone(), g.id.clone(), serials.clone());
    let updated = blocking(move || {
        Ok(state::GROUPS.update(a.store.records(), &k, |cur| {
            Ok(cur.map(|mut g| {
                for s in &added {
                    if g.devices.len() < MAX_GROUP_DEVICES
                        && !g.devices.iter().any(|d| serial_key(d) == serial_key(s))
                    {
                        g.devices.push(s.clone());
                    }
                }
                g
            }))
        })?)
    })
    .await?
    .ok_or_else(|| ServiceError::not_found(format!("Entra group {id} created by winmdm")))?;
    audit(
        app,
        actor,
        "tenant.group.members",
        &updated.id,
        json!({ "added": serials }),
    )
    .await;
    Ok(updated)
}

/// Deletes an Entra group winmdm created (any other id is 404: not winmdm's to delete).
pub async fn delete_group(app: &Arc<App>, actor: &Actor, id: &str) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/tenant/groups/{id}"))?;
    let (a, k) = (app.clone(), id.to_string());
    let g = blocking(move || Ok(state::GROUPS.get(a.store.records(), &k)?))
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("Entra group {id} created by winmdm")))?;
    let c = sync::client(app, &actor.name).await?;
    match c
        .call("DELETE", &format!("/v1.0/groups/{}", enc(&g.id)), None)
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let (a, k) = (app.clone(), g.id.clone());
    blocking(move || Ok(state::GROUPS.delete(a.store.records(), &k)?)).await?;
    audit(
        app,
        actor,
        "tenant.group.delete",
        &g.id,
        json!({ "name": g.display_name }),
    )
    .await;
    Ok(())
}

/// The Autopilot profiles' state in the tenant.
pub async fn list_profiles(app: &Arc<App>) -> Result<Vec<TenantProfile>, ServiceError> {
    let a = app.clone();
    blocking(move || {
        Ok(state::PROFILES
            .all(a.store.records())?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    })
    .await
}

fn group_id(v: &str) -> Result<String, ServiceError> {
    let v = v.trim();
    if v == shapes::ALL_DEVICES {
        return Ok(v.to_string());
    }
    if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(bad_field(
            "group_id",
            "expected an Entra group object id (GUID)",
        ));
    }
    Ok(v.to_ascii_lowercase())
}

/// Assigns an Autopilot profile (created in the tenant first if needed) to an Entra group.
pub async fn assign_profile(
    app: &Arc<App>,
    actor: &Actor,
    profile: &str,
    group: &str,
) -> Result<TenantProfile, ServiceError> {
    actor.require_admin(&format!(
        "POST /api/v1/tenant/profiles/{profile}/assignments"
    ))?;
    // An unknown profile is 404 whatever the group.
    let p = super::autopilot::get_profile(app, profile).await?;
    let gid = group_id(group)?;
    if gid == shapes::ALL_DEVICES {
        // Microsoft allows one all-devices profile per tenant.
        let (a, me) = (app.clone(), p.id.clone());
        let other = blocking(move || {
            Ok(state::PROFILES
                .all(a.store.records())?
                .into_iter()
                .find(|(id, t)| {
                    *id != me
                        && t.assignments
                            .iter()
                            .any(|x| x.group_id == shapes::ALL_DEVICES)
                })
                .map(|(_, t)| t.name))
        })
        .await?;
        if let Some(name) = other {
            return Err(ServiceError::Refused {
                reason: format!(
                    "the profile {name:?} is already assigned to all devices; Microsoft allows one"
                ),
            });
        }
    }
    let c = sync::client(app, &actor.name).await?;
    let (a, id, name) = (app.clone(), p.id.clone(), p.name.clone());
    blocking(move || {
        let s = a.store.records();
        if state::PROFILES.get(s, &id)?.is_none() {
            state::on_profile_changed(s, &id, &name, a.clock.now_unix())?;
        }
        Ok(())
    })
    .await?;
    let tp = sync::push_profile_now(app, &c, &p.id)
        .await?
        .ok_or_else(|| super::autopilot::profile_not_found(profile))?;
    let Some(graph_id) = tp.graph_id.clone() else {
        return Err(ServiceError::Refused {
            reason: "the profile could not be created in the tenant".into(),
        });
    };
    if tp.assignments.iter().any(|x| x.group_id == gid) {
        return Ok(tp);
    }
    if tp.assignments.len() >= state::MAX_ASSIGNMENTS {
        return Err(ServiceError::Refused {
            reason: format!("at most {} assignments per profile", state::MAX_ASSIGNMENTS),
        });
    }
    let (_, v) = c
        .call(
            "POST",
            &format!(
                "/beta/deviceManagement/windowsAutopilotDeploymentProfiles/{}/assignments",
                enc(&graph_id)
            ),
            Some(&shapes::assignment_body(&gid)),
        )
        .await?;
    let assignment_id = v["id"]
        .as_str()
        .filter(|s| s.len() <= 256)
        .map(str::to_string);
    let (a, id, g2) = (app.clone(), p.id.clone(), gid.clone());
    let updated = blocking(move || {
        Ok(state::PROFILES.update(a.store.records(), &id, |cur| {
            Ok(cur.map(|mut t| {
                if !t.assignments.iter().any(|x| x.group_id == g2) {
                    t.assignments.push(state::Assignment {
                        group_id: g2.clone(),
                        assignment_id: assignment_id.clone(),
                    });
                }
                t
            }))
        })?)
    })
    .await?
    .ok_or_else(|| super::autopilot::profile_not_found(profile))?;
    audit(
        app,
        actor,
        "tenant.profile.assign",
        &p.id,
        json!({ "group_id": gid, "graph_id": graph_id }),
    )
    .await;
    Ok(updated)
}
