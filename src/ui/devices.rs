//! Console pages of devices: the list (search, filters, pages) and the device page with its
//! actions, each behind a confirmation page that names the device.

use askama::Template;
use hyper::{Method, StatusCode};

use super::form::enc;
use super::{
    confirm_page, error_page, html, notice, plain, redirect, Confirm, Ctx, Nav, Time, PAGE,
};
use crate::app::App;
use crate::http::body::Resp;
use crate::service::devices as svc;
use crate::store::{CommandState, Device, DeviceFilter, DeviceState};

/// One row of the list.
struct Row {
    href: String,
    name: String,
    id: String,
    user: String,
    owner_note: String,
    model: String,
    state: &'static str,
    last_seen: Option<Time>,
}

#[derive(Template)]
#[template(path = "ui/devices.html")]
struct ListPage {
    nav: Option<Nav>,
    notice: Option<String>,
    q: String,
    state: String,
    owner: String,
    rows: Vec<Row>,
    first_href: Option<String>,
    next_href: Option<String>,
}

/// A device action offered on its page.
struct ActionLink {
    key: &'static str,
    label: &'static str,
    danger: bool,
    href: String,
}

/// What each action does: (key, button label, question, dangerous).
const ACTIONS: &[(&str, &str, &str, bool)] = &[
    ("sync", "Sync", "Ask the device to check in now", false),
    ("reboot", "Reboot", "Restart the device", false),
    (
        "tenant-lockdown-on",
        "TenantLockdown on",
        "Require a network connection during the out-of-box experience (TenantLockdown RequireNetworkInOOBE = true) on",
        false,
    ),
    (
        "tenant-lockdown-off",
        "TenantLockdown off",
        "Stop requiring a network connection in the out-of-box experience (TenantLockdown RequireNetworkInOOBE = false) on",
        false,
    ),
    ("retire", "Retire", "Remove the company data and unenroll", true),
    ("wipe", "Wipe", "Erase everything on", true),
    (
        "wipe-protected",
        "Protected wipe",
        "Erase everything (protected wipe: cannot be cancelled by a power cut) on",
        true,
    ),
    ("delete", "Delete record", "Delete the record of (the device is no longer managed; its certificate is revoked)", true),
];

fn display_name(d: &Device) -> String {
    d.device_name
        .clone()
        .or_else(|| {
            d.inventory
                .get("./DevDetail/Ext/Microsoft/DeviceName")
                .cloned()
        })
        .unwrap_or_else(|| d.device_id.clone())
}

fn device_href(id: &str) -> String {
    format!("/ui/devices/{}", enc(id))
}

pub(super) async fn route(ctx: &Ctx, method: &Method) -> Resp {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["devices"]) => list(ctx).await,
        (&Method::GET, ["devices", id]) => page(ctx, id).await,
        (&Method::GET, ["devices", id, "confirm"]) => confirm(ctx, id).await,
        (&Method::POST, ["devices", id, "do"]) => act(ctx, id).await,
        (&Method::POST, ["devices", id, "trace"]) => super::traces::act(ctx, id).await,
        (&Method::GET, ["devices", id, "traces", t]) => super::traces::page(ctx, id, t).await,
        (&Method::GET, ["devices", id, "traces", t, "export"]) => {
            super::traces::export(ctx, id, t).await
        }
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn list(ctx: &Ctx) -> Resp {
    let q = ctx.query.text("q").unwrap_or_default();
    let state = ctx.query.text("state").unwrap_or_default();
    let owner = ctx.query.text("owner").unwrap_or_default();
    let mut f = DeviceFilter {
        text: Some(q.to_lowercase()).filter(|s| !s.is_empty()),
        ..DeviceFilter::default()
    };
    f.state = match state.as_str() {
        "enrolled" => Some(DeviceState::Enrolled),
        "unenrolled" => Some(DeviceState::Unenrolled),
        _ => None,
    };
    use crate::owner::OwnerStatus as O;
    let owner_status = match owner.as_str() {
        "active" => Some(O::Active),
        "disabled" => Some(O::Disabled),
        "orphaned" => Some(O::Orphaned),
        "device_only" => Some(O::DeviceOnly),
        _ => None,
    };
    let cursor = ctx.query.text("cursor");
    let page = match svc::list(&ctx.app, cursor.clone(), PAGE, f, owner_status).await {
        Ok(p) => p,
        Err(e) => return error_page(&e, Some(ctx.nav("devices")), "/ui/devices"),
    };
    let rows = page
        .devices
        .iter()
        .map(|v| {
            let d = &v.device;
            Row {
                href: device_href(&d.device_id),
                name: display_name(d),
                id: d.device_id.clone(),
                user: d.upn.clone().unwrap_or_else(|| "(device only)".into()),
                owner_note: match v.owner_status {
                    O::Orphaned => "owner deleted".into(),
                    O::Disabled => "owner disabled".into(),
                    _ => String::new(),
                },
                model: d
                    .inventory
                    .get("./DevInfo/Mod")
                    .cloned()
                    .unwrap_or_default(),
                state: match d.state {
                    DeviceState::Enrolled => "enrolled",
                    DeviceState::Unenrolled => "unenrolled",
                },
                last_seen: d.last_seen.map(Time::at),
            }
        })
        .collect();
    let base = format!(
        "/ui/devices?q={}&state={}&owner={}",
        enc(&q),
        enc(&state),
        enc(&owner)
    );
    html(
        StatusCode::OK,
        &ListPage {
            nav: Some(ctx.nav("devices")),
            notice: notice(ctx.query.get("notice")),
            q,
            state,
            owner,
            rows,
            first_href: cursor.is_some().then(|| base.clone()),
            next_href: page.next.map(|n| format!("{base}&cursor={}", enc(&n))),
        },
    )
}

struct CommandRow {
    id: String,
    verb: String,
    target: String,
    state: &'static str,
    status: String,
    results: String,
    created: Time,
    completed: Option<Time>,
}

struct ProfileRow {
    id: String,
    version: u32,
    status: String,
    failures: Vec<String>,
}

/// One app the device's ESP waits for.
struct EspItem {
    app_href: String,
    app_name: String,
    scope: String,
    node: String,
    state: String,
    error: String,
}

/// One configuration profile the device's ESP waits for.
struct EspPolicy {
    href: String,
    name: String,
    scope: String,
    nodes: usize,
    state: String,
    error: String,
}

/// How a phase of the device's ESP ended.
struct EspPhaseEnd {
    phase: &'static str,
    at: Time,
    success: bool,
    reason: String,
}

/// The device's ESP progress.
struct EspView {
    esp_href: String,
    esp_name: String,
    phase: String,
    started: Time,
    deadline: Time,
    timeout_minutes: u32,
    items: Vec<EspItem>,
    policies: Vec<EspPolicy>,
    ended: Vec<EspPhaseEnd>,
}

/// Apps named on a device page at most (one read each).
const MAX_APPS_NAMED: usize = 50;

/// The device's app states (named) and ESP progress, as far as the service has them.
async fn apps_and_esp(
    app: &std::sync::Arc<App>,
    id: &str,
) -> Result<(Vec<super::apps::StateRow>, Option<EspView>), crate::service::ServiceError> {
    use crate::service::apps as apps_svc;
    use crate::service::ServiceError;
    let states = apps_svc::device_apps(app, id).await?;
    let progress = match apps_svc::device_esp(app, id).await {
        Ok(p) => Some(p),
        Err(ServiceError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut names: Vec<(String, String)> = Vec::new();
    let mut wanted: Vec<String> = states.iter().map(|s| s.app_id.clone()).collect();
    if let Some(p) = &progress {
        wanted.extend(p.tracking.expected.iter().map(|e| e.app_id.clone()));
    }
    for a in wanted {
        if names.len() >= MAX_APPS_NAMED || names.iter().any(|(x, _)| *x == a) {
            continue;
        }
        if let Ok(d) = apps_svc::get(app, &a).await {
            names.push((a, d.app.name));
        }
    }
    let name_of = |a: &str| names.iter().find(|(x, _)| x == a).map(|(_, n)| n.as_str());
    let rows = states
        .iter()
        .map(|s| super::apps::StateRow::of(s, name_of(&s.app_id)))
        .collect();
    let esp = match progress {
        None => None,
        Some(p) => {
            let t = &p.tracking;
            let esp_name = match apps_svc::get_esp(app, &t.esp_id).await {
                Ok(d) => d.esp.name,
                Err(_) => format!("{} (deleted)", t.esp_id),
            };
            let text = |v: &serde_json::Value, k: &str| match &v[k] {
                serde_json::Value::String(s) => s.replace('_', " "),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            let items = p
                .items
                .iter()
                .map(|v| {
                    let a = text(v, "app_id");
                    EspItem {
                        app_href: super::apps::href(v["app_id"].as_str().unwrap_or("")),
                        app_name: name_of(v["app_id"].as_str().unwrap_or(""))
                            .map_or(a, str::to_string),
                        scope: text(v, "scope"),
                        node: v["node"].as_str().unwrap_or("").to_string(),
                        state: match text(v, "state") {
                            s if s.is_empty() => "not delivered yet".into(),
                            s => s,
                        },
                        error: text(v, "error"),
                    }
                })
                .collect();
            let mut policies = Vec::new();
            for v in p.policies.iter().take(MAX_APPS_NAMED) {
                let id = v["profile_id"].as_str().unwrap_or("");
                let name = match crate::service::groups::get_profile(app, id).await {
                    Ok(d) => d.profile.name,
                    Err(_) => format!("{id} (deleted)"),
                };
                policies.push(EspPolicy {
                    href: super::profiles::href(id),
                    name,
                    scope: text(v, "scope"),
                    nodes: v["nodes"].as_array().map_or(0, Vec::len),
                    state: text(v, "state"),
                    error: text(v, "error"),
                });
            }
            let ended = [("device", &t.device), ("user", &t.user)]
                .into_iter()
                .filter_map(|(phase, r)| {
                    r.as_ref().map(|r| EspPhaseEnd {
                        phase,
                        at: Time::at(r.at),
                        success: r.success,
                        reason: r.reason.clone(),
                    })
                })
                .collect();
            Some(EspView {
                esp_href: format!("/ui/esp/{}", enc(&t.esp_id)),
                esp_name,
                phase: p.phase.clone(),
                started: Time::at(t.started_at),
                deadline: Time::at(p.deadline),
                timeout_minutes: t.timeout_minutes,
                items,
                policies,
                ended,
            })
        }
    };
    Ok((rows, esp))
}

#[derive(Template)]
#[template(path = "ui/device.html")]
struct DevicePage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    name: String,
    id: String,
    actions: Vec<ActionLink>,
    summary: Vec<(&'static str, String)>,
    enrolled: Time,
    last_seen: Option<Time>,
    cert: svc::CertificateView,
    cert_expires: Time,
    cert_revoked: Option<Time>,
    renewals: usize,
    inventory: Vec<(String, String)>,
    groups: Vec<String>,
    profiles: Vec<ProfileRow>,
    apps: Vec<super::apps::StateRow>,
    esp: Option<EspView>,
    commands: Vec<CommandRow>,
    traces: Vec<super::traces::TraceRow>,
    recording: bool,
    trace_action: String,
    csrf: String,
}

/// The state of a command as the page names it.
pub fn state_name(s: CommandState) -> &'static str {
    match s {
        CommandState::Pending => "pending",
        CommandState::Sent => "sent",
        CommandState::Done => "done",
        CommandState::Failed => "failed",
        CommandState::Cancelled => "cancelled",
        CommandState::CancelledByDevice => "cancelled by device",
        CommandState::NotExecuted => "not executed",
        CommandState::RolledBack => "rolled back",
    }
}

async fn page(ctx: &Ctx, id: &str) -> Resp {
    let nav = ctx.nav("devices");
    let app = &ctx.app;
    let detail = match svc::get(app, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(nav), "/ui/devices"),
    };
    let (commands, groups, profiles, (apps, esp)) = match tokio::try_join!(
        svc::commands(app, id),
        svc::groups_of(app, id),
        svc::profiles(app, id),
        apps_and_esp(app, id),
    ) {
        Ok(x) => x,
        Err(e) => return error_page(&e, Some(nav), "/ui/devices"),
    };
    let d = &detail.device;
    let href = device_href(id);
    let actions = ACTIONS
        .iter()
        .map(|(key, label, _, danger)| ActionLink {
            key,
            label,
            danger: *danger,
            href: format!("{href}/confirm?do={key}"),
        })
        .collect();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let summary = vec![
        (
            "User",
            d.upn.clone().unwrap_or_else(|| "(device only)".into()),
        ),
        ("Owner", format!("{:?}", detail.owner_status).to_lowercase()),
        (
            "State",
            match d.state {
                DeviceState::Enrolled => "enrolled".into(),
                DeviceState::Unenrolled => "unenrolled".into(),
            },
        ),
        ("LoginStatus", opt(&d.login_status)),
        ("Enrollment type", d.enrollment_type.clone()),
        ("Device type", opt(&d.device_type)),
        ("OS version", opt(&d.os_version)),
        ("OS edition", opt(&d.os_edition)),
        ("Group tag", opt(&d.group_tag)),
        (
            "TenantLockdown",
            match d.tenant_lockdown {
                Some(true) => "on".into(),
                Some(false) => "off".into(),
                None => "not set".into(),
            },
        ),
        (
            "Commands",
            format!(
                "{} pending, {} sent, {} done, {} failed",
                detail.queue.pending, detail.queue.sent, detail.queue.done, detail.queue.failed
            ),
        ),
    ];
    let commands = commands
        .iter()
        .rev()
        .map(|c| CommandRow {
            id: c.command_id.clone(),
            verb: c.verb.clone(),
            target: c.target.clone().unwrap_or_default(),
            state: state_name(c.state),
            status: c.status.map(|s| s.to_string()).unwrap_or_default(),
            results: c
                .results
                .iter()
                .map(|r| {
                    format!(
                        "{} = {}",
                        r.target.as_deref().unwrap_or("?"),
                        r.data.as_deref().unwrap_or("")
                    )
                })
                .chain(c.error.clone())
                .collect::<Vec<_>>()
                .join("; "),
            created: Time::at(c.created_at),
            completed: c.completed_at.map(Time::at),
        })
        .collect();
    let profiles = profiles
        .iter()
        .map(|p| ProfileRow {
            id: p.profile_id.clone(),
            version: p.version,
            status: match &p.reason {
                Some(r) => format!("{} – {r}", p.status),
                None => p.status.clone(),
            },
            failures: p
                .failures
                .iter()
                .map(|f| {
                    format!(
                        "{} {}",
                        f.targets.join(", "),
                        f.status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| state_name(f.state).into())
                    )
                })
                .collect(),
        })
        .collect();
    let admin = ctx.s.actor.role == crate::service::TokenRole::Admin;
    let (traces, recording) = if admin {
        super::traces::section(ctx, id).await
    } else {
        (Vec::new(), false)
    };
    let page = DevicePage {
        csrf: nav.csrf.clone(),
        nav: Some(nav),
        notice: notice(ctx.query.get("notice")),
        admin,
        name: display_name(d),
        id: d.device_id.clone(),
        actions,
        summary,
        enrolled: Time::at(d.enrolled_at),
        last_seen: d.last_seen.map(Time::at),
        cert_expires: Time::at(detail.certificate.not_after),
        cert_revoked: detail.certificate.revoked_at.map(Time::at),
        cert: detail.certificate.clone(),
        renewals: d.renewals.len(),
        inventory: d
            .inventory
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        groups,
        profiles,
        apps,
        esp,
        commands,
        traces,
        recording,
        trace_action: format!("{href}/trace"),
    };
    html(StatusCode::OK, &page)
}

fn find_action(
    key: Option<&str>,
) -> Option<&'static (&'static str, &'static str, &'static str, bool)> {
    let key = key?;
    ACTIONS.iter().find(|a| a.0 == key)
}

async fn confirm(ctx: &Ctx, id: &str) -> Resp {
    let nav = ctx.nav("devices");
    let href = device_href(id);
    let Some((key, label, question, danger)) = find_action(ctx.query.get("do")) else {
        return plain(StatusCode::NOT_FOUND, "unknown action");
    };
    let detail = match svc::get(&ctx.app, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(nav), "/ui/devices"),
    };
    let d = &detail.device;
    let named = format!(
        "{} ({}, user {})",
        display_name(d),
        d.device_id,
        d.upn.as_deref().unwrap_or("none")
    );
    confirm_page(
        nav,
        Confirm {
            label: format!("{label}: {}", display_name(d)),
            question: format!("{question} the device {named}?"),
            action: format!("{href}/do"),
            key: (*key).into(),
            danger: *danger,
            back: href,
        },
    )
}

async fn act(ctx: &Ctx, id: &str) -> Resp {
    let nav = ctx.nav("devices");
    let href = device_href(id);
    let (app, actor): (&std::sync::Arc<App>, _) = (&ctx.app, &ctx.s.actor);
    let out = match ctx.form.get("do") {
        Some("tenant-lockdown-on") => svc::tenant_lockdown(app, actor, id, true)
            .await
            .map(|_| "queued"),
        Some("tenant-lockdown-off") => svc::tenant_lockdown(app, actor, id, false)
            .await
            .map(|_| "queued"),
        Some("delete") => match svc::delete(app, actor, id).await {
            Ok(()) => return redirect("/ui/devices?notice=deleted"),
            Err(e) => Err(e),
        },
        Some(a @ ("sync" | "reboot" | "retire" | "wipe" | "wipe-protected")) => {
            svc::request_action(app, actor, id, a)
                .await
                .map(|_| "queued")
        }
        _ => return plain(StatusCode::BAD_REQUEST, "unknown action"),
    };
    match out {
        Ok(n) => redirect(&format!("{href}?notice={n}")),
        Err(e) => error_page(&e, Some(nav), &href),
    }
}
