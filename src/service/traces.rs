//! Device traces, the admin side: start and stop recording for a device or a group's members,
//! list, read (as a conversation), export and delete traces.
//!
//! Rules owned here: only an admin token starts, stops, reads, exports or deletes a trace (a
//! trace shows everything a device reported, which a read-only token should not get in bulk);
//! reading and exporting are audited like changes; the window and session count are bounded
//! ([`trace::MAX_DURATION_SECS`], [`trace::MAX_SESSIONS`]); a device keeps at most
//! [`trace::MAX_TRACES_PER_DEVICE`] traces (starting one more deletes the oldest finished
//! one); at most [`trace::MAX_ACTIVE_RULES`] devices are traced at once.

use std::sync::Arc;

use serde::Deserialize;

use super::{audit, blocking, Actor, ServiceError};
use crate::app::App;
use crate::groups::pair_key;
use crate::trace::{
    self, record, view, Stopped, Trace, TraceMeta, UserRule, DEVICE_TRACES, RULES, TRACES,
    USER_RULES,
};

/// What an admin asks for when starting a trace.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartTrace {
    /// Recording window in minutes (default 60, at most 7 days).
    pub minutes: Option<u32>,
    /// OMA-DM sessions to record (default 10, at most 1,000).
    pub sessions: Option<u32>,
    /// Why (kept with the trace, at most 500 characters).
    pub note: Option<String>,
}

/// What an admin asks for when tracing a user's next enrollments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartUserTrace {
    /// Enrollments to trace (default 1, at most 20).
    pub enrollments: Option<u32>,
    /// Each device trace's window, and the rule's own, in minutes (default 60).
    pub minutes: Option<u32>,
    /// Each device trace's OMA-DM sessions (default 10).
    pub sessions: Option<u32>,
    /// Why.
    pub note: Option<String>,
}

/// Traces the next enrollments of a user: each successful enrollment of a device owned by the
/// user (per the device record the enrollment wrote, not what the request claimed) starts a
/// device trace that includes that enrollment and the discovery and policy exchanges before it.
pub async fn start_user(
    app: &Arc<App>,
    actor: &Actor,
    upn: &str,
    req: StartUserTrace,
) -> Result<UserRule, ServiceError> {
    actor.require_admin(&format!("POST /api/v1/users/{upn}/trace"))?;
    let upn = super::validate_upn(upn)?.to_lowercase();
    let (secs, sessions, note) = window(&StartTrace {
        minutes: req.minutes,
        sessions: req.sessions,
        note: req.note.clone(),
    })?;
    let enrollments = req.enrollments.unwrap_or(1);
    if enrollments == 0 || enrollments > trace::MAX_USER_ENROLLMENTS {
        return Err(ServiceError::bad(format!(
            "enrollments must be between 1 and {}",
            trace::MAX_USER_ENROLLMENTS
        )));
    }
    let (a, act, u) = (app.clone(), actor.clone(), upn.clone());
    let rule = blocking(move || {
        let store = a.store.records();
        if a.store.get_user(&u)?.is_none() {
            return Err(ServiceError::not_found(format!("user {u}")));
        }
        if USER_RULES.list(store, None, trace::MAX_ACTIVE_RULES)?.len() >= trace::MAX_ACTIVE_RULES {
            return Err(ServiceError::ConflictState {
                reason: format!("{} users are being traced already", trace::MAX_ACTIVE_RULES),
            });
        }
        let rule = UserRule {
            enrollments_left: enrollments,
            window_secs: secs,
            max_sessions: sessions,
            until: a.clock.now_unix() + secs,
            started_by: act.name.clone(),
            note,
        };
        USER_RULES.put(store, &u, &rule)?;
        a.tracer.note_user_rule(&u, Some(rule.clone()));
        Ok(rule)
    })
    .await?;
    audit(
        app,
        actor,
        "trace.start_user",
        &upn,
        serde_json::json!({ "enrollments": enrollments, "until": rule.until, "sessions": sessions }),
    )
    .await;
    Ok(rule)
}

/// Stops tracing a user's next enrollments (traces already started go on).
pub async fn stop_user(app: &Arc<App>, actor: &Actor, upn: &str) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/users/{upn}/trace"))?;
    let upn = upn.trim().to_lowercase();
    let (a, u) = (app.clone(), upn.clone());
    blocking(move || {
        if !USER_RULES.delete(a.store.records(), &u)? {
            return Err(ServiceError::not_found(format!(
                "enrollment trace rule of user {u}"
            )));
        }
        a.tracer.note_user_rule(&u, None);
        Ok(())
    })
    .await?;
    audit(app, actor, "trace.stop_user", &upn, serde_json::json!({})).await;
    Ok(())
}

fn window(req: &StartTrace) -> Result<(i64, u32, Option<String>), ServiceError> {
    let secs = match req.minutes {
        None => trace::DEFAULT_DURATION_SECS,
        Some(0) => return Err(ServiceError::bad("minutes must be at least 1")),
        Some(m) => i64::from(m) * 60,
    };
    if secs > trace::MAX_DURATION_SECS {
        return Err(ServiceError::bad(format!(
            "minutes must be at most {}",
            trace::MAX_DURATION_SECS / 60
        )));
    }
    let sessions = req.sessions.unwrap_or(trace::DEFAULT_SESSIONS);
    if sessions == 0 || sessions > trace::MAX_SESSIONS {
        return Err(ServiceError::bad(format!(
            "sessions must be between 1 and {}",
            trace::MAX_SESSIONS
        )));
    }
    let note = req.note.as_ref().map(|n| n.trim().to_string());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > trace::MAX_NOTE)
    {
        return Err(ServiceError::bad(format!(
            "note must be at most {} characters",
            trace::MAX_NOTE
        )));
    }
    Ok((secs, sessions, note.filter(|n| !n.is_empty())))
}

/// Starts recording `device_id` (blocking). Refuses a device already being traced.
fn start_one(
    app: &App,
    actor: &Actor,
    device_id: &str,
    secs: i64,
    sessions: u32,
    note: Option<String>,
) -> Result<TraceMeta, ServiceError> {
    let store = app.store.records();
    if app.store.get_device(device_id)?.is_none() {
        return Err(ServiceError::not_found(format!("device {device_id}")));
    }
    if let Some(rule) = RULES.get(store, device_id)? {
        return Err(ServiceError::ConflictState {
            reason: format!(
                "device {device_id} is already being traced (trace {}); stop it first",
                rule.trace_id
            ),
        });
    }
    if RULES.list(store, None, trace::MAX_ACTIVE_RULES)?.len() >= trace::MAX_ACTIVE_RULES {
        return Err(ServiceError::ConflictState {
            reason: format!(
                "{} devices are being traced already; stop some first",
                trace::MAX_ACTIVE_RULES
            ),
        });
    }
    // Keep at most MAX_TRACES_PER_DEVICE: drop the oldest finished ones.
    let mut old = record::traces_of(store, device_id)?;
    while old.len() >= trace::MAX_TRACES_PER_DEVICE {
        let Some(pos) = old.iter().rposition(|m| m.stopped.is_some()) else {
            break;
        };
        let m = old.remove(pos);
        record::delete_trace(store, &m.id, device_id)?;
    }
    let now = app.clock.now_unix();
    let (meta, rule) = TraceMeta::start(device_id, &actor.name, now, secs, sessions, note);
    let ops = [
        RULES.expect_absent(device_id),
        RULES.put_op(device_id, &rule),
        TRACES.put_op(&meta.id, &meta),
        DEVICE_TRACES.put_op(&pair_key(device_id, &meta.id), &true),
    ];
    if !store.apply_records(&ops)? {
        return Err(ServiceError::ConflictState {
            reason: format!("device {device_id} is already being traced"),
        });
    }
    app.tracer.note_rule(device_id, Some(rule));
    Ok(meta)
}

/// Starts a trace of one device.
pub async fn start(
    app: &Arc<App>,
    actor: &Actor,
    device_id: &str,
    req: StartTrace,
) -> Result<TraceMeta, ServiceError> {
    actor.require_admin(&format!("POST /api/v1/devices/{device_id}/trace"))?;
    let (secs, sessions, note) = window(&req)?;
    let (a, act, d) = (app.clone(), actor.clone(), device_id.to_string());
    let meta = blocking(move || start_one(&a, &act, &d, secs, sessions, note)).await?;
    tracing::info!(device_id, trace_id = %meta.id, until = meta.until, sessions, "device trace started");
    audit(
        app,
        actor,
        "trace.start",
        device_id,
        serde_json::json!({ "trace_id": meta.id, "until": meta.until, "sessions": sessions }),
    )
    .await;
    Ok(meta)
}

/// Starts a trace of every member of a group (at most [`trace::MAX_ACTIVE_RULES`]); members
/// already traced are skipped and reported.
pub async fn start_group(
    app: &Arc<App>,
    actor: &Actor,
    group_id: &str,
    req: StartTrace,
) -> Result<(Vec<TraceMeta>, Vec<String>), ServiceError> {
    actor.require_admin(&format!("POST /api/v1/groups/{group_id}/trace"))?;
    let (secs, sessions, note) = window(&req)?;
    let (a, act, g) = (app.clone(), actor.clone(), group_id.to_string());
    let (started, skipped) = blocking(move || {
        let store = a.store.records();
        if crate::groups::GROUPS.get(store, &g)?.is_none() {
            return Err(ServiceError::not_found(format!("group {g}")));
        }
        let members = crate::groups::scan_pairs(
            store,
            crate::groups::MEMBERS,
            &g,
            None,
            trace::MAX_ACTIVE_RULES + 1,
        )?;
        if members.len() > trace::MAX_ACTIVE_RULES {
            return Err(ServiceError::bad(format!(
                "group {g} has more than {} members; trace a smaller group",
                trace::MAX_ACTIVE_RULES
            )));
        }
        let mut started = Vec::new();
        let mut skipped = Vec::new();
        for (device_id, _) in members {
            match start_one(&a, &act, &device_id, secs, sessions, note.clone()) {
                Ok(m) => started.push(m),
                Err(
                    ServiceError::ConflictState { reason }
                    | ServiceError::NotFound { what: reason },
                ) => skipped.push(format!("{device_id}: {reason}")),
                Err(e) => return Err(e),
            }
        }
        Ok((started, skipped))
    })
    .await?;
    audit(
        app,
        actor,
        "trace.start_group",
        group_id,
        serde_json::json!({
            "traces": started.iter().map(|m| &m.id).collect::<Vec<_>>(),
            "skipped": skipped.len(),
        }),
    )
    .await;
    Ok((started, skipped))
}

/// Stops a device's recording (the trace is kept). Returns the stopped trace.
pub async fn stop(
    app: &Arc<App>,
    actor: &Actor,
    device_id: &str,
) -> Result<TraceMeta, ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/devices/{device_id}/trace"))?;
    let (a, d) = (app.clone(), device_id.to_string());
    let meta = blocking(move || {
        a.tracer
            .stop(a.store.records(), a.clock.now_unix(), &d, Stopped::Admin)?
            .ok_or_else(|| ServiceError::not_found(format!("active trace of device {d}")))
    })
    .await?;
    audit(
        app,
        actor,
        "trace.stop",
        device_id,
        serde_json::json!({ "trace_id": meta.id }),
    )
    .await;
    Ok(meta)
}

/// The device's traces, newest first.
pub async fn list(
    app: &Arc<App>,
    actor: &Actor,
    device_id: &str,
) -> Result<Vec<TraceMeta>, ServiceError> {
    actor.require_admin(&format!("GET /api/v1/devices/{device_id}/traces"))?;
    let (a, d) = (app.clone(), device_id.to_string());
    blocking(move || {
        let traces = record::traces_of(a.store.records(), &d)?;
        // A deleted device keeps its traces; an id never seen is unknown.
        if traces.is_empty() && a.store.get_device(&d)?.is_none() {
            return Err(ServiceError::not_found(format!("device {d}")));
        }
        Ok(traces)
    })
    .await
}

fn load(app: &App, device_id: &str, trace_id: &str) -> Result<Trace, ServiceError> {
    let store = app.store.records();
    let meta = TRACES
        .get(store, trace_id)?
        .filter(|m| m.device_id == device_id)
        .ok_or_else(|| {
            ServiceError::not_found(format!("trace {trace_id} of device {device_id}"))
        })?;
    let exchanges = record::read_exchanges(store, trace_id)?;
    Ok(Trace {
        header: trace::format::Header {
            format: trace::format::FORMAT.into(),
            version: trace::format::VERSION,
            id: meta.id.clone(),
            device_id: Some(meta.device_id.clone()),
            started_at: meta.started_at,
            source: format!("winmdm {}", env!("CARGO_PKG_VERSION")),
            redacted: true,
            note: meta.note.clone(),
        },
        exchanges,
    })
}

/// One trace: its summary and its conversation. Audited (a trace shows what the device sent).
pub async fn get(
    app: &Arc<App>,
    actor: &Actor,
    device_id: &str,
    trace_id: &str,
) -> Result<(TraceMeta, Vec<view::Turn>), ServiceError> {
    actor.require_admin(&format!(
        "GET /api/v1/devices/{device_id}/traces/{trace_id}"
    ))?;
    let (a, d, t) = (app.clone(), device_id.to_string(), trace_id.to_string());
    let (meta, turns) = blocking(move || {
        let trace = load(&a, &d, &t)?;
        let meta = TRACES
            .get(a.store.records(), &t)?
            .ok_or_else(|| ServiceError::not_found(format!("trace {t}")))?;
        Ok((meta, view::conversation(&trace.exchanges)))
    })
    .await?;
    audit(
        app,
        actor,
        "trace.read",
        device_id,
        serde_json::json!({ "trace_id": trace_id }),
    )
    .await;
    Ok((meta, turns))
}

/// One trace in the file format (NDJSON). Audited.
pub async fn export(
    app: &Arc<App>,
    actor: &Actor,
    device_id: &str,
    trace_id: &str,
) -> Result<String, ServiceError> {
    actor.require_admin(&format!(
        "GET /api/v1/devices/{device_id}/traces/{trace_id}/export"
    ))?;
    let (a, d, t) = (app.clone(), device_id.to_string(), trace_id.to_string());
    let text = blocking(move || Ok(load(&a, &d, &t)?.to_ndjson())).await?;
    audit(
        app,
        actor,
        "trace.export",
        device_id,
        serde_json::json!({ "trace_id": trace_id, "bytes": text.len() }),
    )
    .await;
    Ok(text)
}

/// Deletes a trace (stopping it first if it is recording).
pub async fn delete(
    app: &Arc<App>,
    actor: &Actor,
    device_id: &str,
    trace_id: &str,
) -> Result<(), ServiceError> {
    actor.require_admin(&format!(
        "DELETE /api/v1/devices/{device_id}/traces/{trace_id}"
    ))?;
    let (a, d, t) = (app.clone(), device_id.to_string(), trace_id.to_string());
    blocking(move || {
        let store = a.store.records();
        if TRACES.get(store, &t)?.is_none_or(|m| m.device_id != d) {
            return Err(ServiceError::not_found(format!("trace {t} of device {d}")));
        }
        record::delete_trace(store, &t, &d)?;
        a.tracer.load(store)?;
        Ok(())
    })
    .await?;
    audit(
        app,
        actor,
        "trace.delete",
        device_id,
        serde_json::json!({ "trace_id": trace_id }),
    )
    .await;
    Ok(())
}
