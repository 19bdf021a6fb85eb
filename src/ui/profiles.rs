//! Console pages of configuration profiles: the list, the form (OMA-URI settings rows or raw
//! SyncML; a refused row is named by the service's `settings[i]` field and shown against that
//! row), a profile's page with its operations, assignments to groups (add, remove), push and
//! delete behind a confirmation naming the profile, and the per-device status with the failing
//! LocURIs and codes. Everything goes through [`crate::service::groups`], the JSON API's code.

use askama::Template;
use hyper::{Method, StatusCode};

use super::form::{enc, Form};
use super::{
    confirm_page, error_page, html, may_confirm, notice, plain, redirect, Confirm, Ctx, Nav, Time,
    PAGE,
};
use crate::http::body::Resp;
use crate::profiles::{self, Profile, ProfileInput, Scope, Setting};
use crate::service::groups as svc;
use crate::service::ServiceError;

/// Settings rows the form offers (more: give the profile as SyncML).
pub const MAX_ROWS: usize = 20;
/// Blank rows shown under the filled ones.
const BLANK_ROWS: usize = 3;
/// Groups offered in the assignment picker.
const GROUP_CHOICES: usize = 200;
/// The verbs of a settings row.
const VERBS: [&str; 4] = ["Replace", "Add", "Delete", "Exec"];

/// One settings row of the form, with its error.
struct RowForm {
    n: usize,
    verb: String,
    target: String,
    format: String,
    ty: String,
    data: String,
    error: String,
}

/// The form's values (kept when the service refuses them).
struct Values {
    name: String,
    description: String,
    scope: String,
    windows_pc: bool,
    hololens: bool,
    syncml: String,
    rows: Vec<RowForm>,
}

#[derive(Template)]
#[template(path = "ui/profile_form.html")]
struct FormPage {
    nav: Option<Nav>,
    notice: Option<String>,
    csrf: String,
    heading: String,
    action: String,
    back: String,
    v: Values,
    verbs: [&'static str; 4],
    error: Option<String>,
}

struct ListRow {
    href: String,
    name: String,
    scope: &'static str,
    version: u32,
    operations: usize,
    updated: Time,
}

#[derive(Template)]
#[template(path = "ui/profiles.html")]
struct ListPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    rows: Vec<ListRow>,
    next_href: Option<String>,
}

struct OpRow {
    verb: String,
    targets: String,
}

struct StatusRow {
    device_href: String,
    device_id: String,
    version: u32,
    status: String,
    reason: String,
    failures: Vec<String>,
    updated: Time,
}

#[derive(Template)]
#[template(path = "ui/profile.html")]
struct ProfilePage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    href: String,
    p: Profile,
    scope: &'static str,
    device_types: String,
    operations: Vec<OpRow>,
    assigned: Vec<(String, String)>,
    choices: Vec<(String, String)>,
    statuses: Vec<StatusRow>,
    status_next: Option<String>,
    updated: Time,
}

pub(super) fn href(id: &str) -> String {
    format!("/ui/profiles/{}", enc(id))
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Device => "device",
        Scope::User => "user",
    }
}

pub(super) async fn route(ctx: &Ctx, method: &Method) -> Resp {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["profiles"]) => list(ctx).await,
        (&Method::GET, ["profiles", "new"]) => new_form(ctx),
        (&Method::POST, ["profiles"]) => save(ctx, None).await,
        (&Method::GET, ["profiles", id]) => page(ctx, id).await,
        (&Method::GET, ["profiles", id, "edit"]) => edit_form(ctx, id).await,
        (&Method::POST, ["profiles", id]) => save(ctx, Some(id)).await,
        (&Method::GET, ["profiles", id, "confirm"]) => confirm(ctx, id).await,
        (&Method::POST, ["profiles", id, "do"]) => act(ctx, id).await,
        (&Method::POST, ["profiles", id, "assign"]) => assign(ctx, id, true).await,
        (&Method::POST, ["profiles", id, "unassign"]) => assign(ctx, id, false).await,
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn list(ctx: &Ctx) -> Resp {
    let nav = ctx.nav("profiles");
    let cursor = ctx.query.text("cursor");
    let page = match svc::list_profiles(&ctx.app, cursor, PAGE).await {
        Ok(p) => p,
        Err(e) => return error_page(&e, Some(nav), "/ui/dashboard"),
    };
    html(
        StatusCode::OK,
        &ListPage {
            admin: nav.admin,
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            rows: page
                .items
                .iter()
                .map(|p| ListRow {
                    href: href(&p.id),
                    name: p.name.clone(),
                    scope: scope_name(p.scope),
                    version: p.version,
                    operations: p.operations.len(),
                    updated: Time::at(p.updated_at),
                })
                .collect(),
            next_href: page
                .next
                .map(|n| format!("/ui/profiles?cursor={}", enc(&n))),
        },
    )
}

fn blank_row(n: usize) -> RowForm {
    RowForm {
        n,
        verb: "Replace".into(),
        target: String::new(),
        format: String::new(),
        ty: String::new(),
        data: String::new(),
        error: String::new(),
    }
}

/// Pads `rows` with blank ones (up to [`MAX_ROWS`]).
fn with_blanks(mut rows: Vec<RowForm>) -> Vec<RowForm> {
    let want = (rows.len() + BLANK_ROWS).min(MAX_ROWS);
    while rows.len() < want {
        rows.push(blank_row(rows.len()));
    }
    rows
}

fn form_page(
    ctx: &Ctx,
    id: Option<&str>,
    v: Values,
    error: Option<String>,
    status: StatusCode,
) -> Resp {
    let nav = ctx.nav("profiles");
    let (heading, action, back) = match id {
        Some(id) => (format!("Edit profile {}", v.name), href(id), href(id)),
        None => (
            "New profile".to_string(),
            "/ui/profiles".to_string(),
            "/ui/profiles".to_string(),
        ),
    };
    html(
        status,
        &FormPage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: None,
            heading,
            action,
            back,
            v,
            verbs: VERBS,
            error,
        },
    )
}

fn new_form(ctx: &Ctx) -> Resp {
    if let Err(e) = ctx.s.actor.require_admin("POST /api/v1/profiles") {
        return error_page(&e, Some(ctx.nav("profiles")), "/ui/profiles");
    }
    let v = Values {
        name: String::new(),
        description: String::new(),
        scope: "device".into(),
        windows_pc: false,
        hololens: false,
        syncml: String::new(),
        rows: with_blanks(Vec::new()),
    };
    form_page(ctx, None, v, None, StatusCode::OK)
}

async fn edit_form(ctx: &Ctx, id: &str) -> Resp {
    if let Err(e) = ctx
        .s
        .actor
        .require_admin(&format!("PATCH /api/v1/profiles/{id}"))
    {
        return error_page(&e, Some(ctx.nav("profiles")), &href(id));
    }
    let d = match svc::get_profile(&ctx.app, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(ctx.nav("profiles")), "/ui/profiles"),
    };
    let p = d.profile;
    let (rows, syncml) = match profiles::settings_of(&p) {
        Some(list) if list.len() <= MAX_ROWS => (
            list.into_iter()
                .enumerate()
                .map(|(n, s)| RowForm {
                    n,
                    verb: s.verb.unwrap_or_else(|| "Replace".into()),
                    target: s.target,
                    format: s.format.unwrap_or_default(),
                    ty: s.ty.unwrap_or_default(),
                    data: s.data.unwrap_or_default(),
                    error: String::new(),
                })
                .collect(),
            String::new(),
        ),
        _ => (
            Vec::new(),
            p.operations
                .iter()
                .map(|o| o.syncml.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    };
    let v = Values {
        name: p.name.clone(),
        description: p.description.clone().unwrap_or_default(),
        scope: scope_name(p.scope).into(),
        windows_pc: p.device_types.iter().any(|t| t == "windows-pc"),
        hololens: p.device_types.iter().any(|t| t == "hololens"),
        syncml,
        rows: with_blanks(rows),
    };
    form_page(ctx, Some(id), v, None, StatusCode::OK)
}

/// The rows as posted (`r{n}_target`...), every one kept (blank ones too, to show them again).
fn posted_rows(f: &Form) -> Vec<RowForm> {
    (0..MAX_ROWS)
        .map_while(|n| {
            let get = |k: &str| f.get(&format!("r{n}_{k}")).map(str::to_string);
            let target = get("target")?;
            Some(RowForm {
                n,
                verb: get("verb")
                    .filter(|v| VERBS.contains(&v.as_str()))
                    .unwrap_or_else(|| "Replace".into()),
                target,
                format: get("format").unwrap_or_default(),
                ty: get("type").unwrap_or_default(),
                data: get("data").unwrap_or_default(),
                error: String::new(),
            })
        })
        .collect()
}

/// The posted form as the service's input, and the form row of each setting (blank rows are
/// skipped, so setting `i` is form row `rows_of[i]`).
fn input_of(f: &Form, rows: &[RowForm]) -> (ProfileInput, Vec<usize>) {
    let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let syncml = f.get("syncml").and_then(opt);
    let mut rows_of = Vec::new();
    let settings: Vec<Setting> = rows
        .iter()
        .filter(|r| !r.target.trim().is_empty())
        .map(|r| {
            rows_of.push(r.n);
            Setting {
                verb: Some(r.verb.clone()),
                target: r.target.trim().to_string(),
                format: opt(&r.format),
                ty: opt(&r.ty),
                // Data is kept as typed (leading or trailing spaces may matter).
                data: Some(r.data.clone()).filter(|d| !d.is_empty()),
            }
        })
        .collect();
    let input = ProfileInput {
        name: f.text("name"),
        description: Some(f.get("description").unwrap_or("").trim().to_string()),
        scope: Some(if f.get("scope") == Some("user") {
            Scope::User
        } else {
            Scope::Device
        }),
        device_types: Some(
            f.all("device_types")
                .filter(|t| matches!(*t, "windows-pc" | "hololens"))
                .map(str::to_string)
                .collect(),
        ),
        // Raw SyncML wins when given; rows alone otherwise. Both empty: the service says so.
        settings: (syncml.is_none() && !settings.is_empty()).then_some(settings),
        syncml,
    };
    (input, rows_of)
}

async fn save(ctx: &Ctx, id: Option<&str>) -> Resp {
    let f = &ctx.form;
    let mut rows = posted_rows(f);
    let (input, rows_of) = input_of(f, &rows);
    let out = match id {
        None => svc::create_profile(&ctx.app, &ctx.s.actor, input)
            .await
            .map(|p| (p.id, "created")),
        Some(id) => svc::update_profile(&ctx.app, &ctx.s.actor, id, Some(input))
            .await
            .map(|c| (c.profile.id, "updated")),
    };
    let e = match out {
        Ok((pid, n)) => return redirect(&format!("{}?notice={n}", href(&pid))),
        Err(e) => e,
    };
    let mut error = Some(e.to_string());
    match &e {
        ServiceError::Invalid { field, reason } => {
            let row = field
                .strip_prefix("settings[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| rows_of.get(i).copied());
            if let Some(r) = row.and_then(|n| rows.get_mut(n)) {
                r.error = reason
                    .strip_prefix(&format!("{field}: "))
                    .unwrap_or(reason)
                    .to_string();
                error = Some(format!("Row {} is not valid: see below.", r.n + 1));
            }
        }
        ServiceError::BadRequest { .. }
        | ServiceError::Conflict { .. }
        | ServiceError::ConflictState { .. } => {}
        _ => return error_page(&e, Some(ctx.nav("profiles")), "/ui/profiles"),
    }
    let v = Values {
        name: f.get("name").unwrap_or("").to_string(),
        description: f.get("description").unwrap_or("").to_string(),
        scope: if f.get("scope") == Some("user") {
            "user"
        } else {
            "device"
        }
        .into(),
        windows_pc: f.all("device_types").any(|t| t == "windows-pc"),
        hololens: f.all("device_types").any(|t| t == "hololens"),
        syncml: f.get("syncml").unwrap_or("").to_string(),
        rows: with_blanks(rows),
    };
    form_page(ctx, id, v, error, StatusCode::BAD_REQUEST)
}

/// A failure as shown: the LocURIs and the code (or the state), and the nested commands of an
/// `Atomic` that the device did not apply.
fn failure_text(f: &crate::profiles::reconcile::Failure) -> String {
    let code = f
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| super::devices::state_name(f.state).into());
    let mut s = format!("{} {code}", f.targets.join(", "));
    for n in &f.failed {
        s.push_str(&format!(
            "; {} {} {}",
            n.verb,
            n.target,
            n.status.map(|c| c.to_string()).unwrap_or_default()
        ));
    }
    if let Some(e) = &f.error {
        s.push_str(&format!(" ({e})"));
    }
    s
}

async fn page(ctx: &Ctx, id: &str) -> Resp {
    let nav = ctx.nav("profiles");
    let app = &ctx.app;
    let cursor = ctx.query.text("cursor");
    let (d, statuses, groups) = match tokio::try_join!(
        svc::get_profile(app, id),
        svc::profile_status(app, id, cursor, PAGE),
        svc::list(app, None, GROUP_CHOICES),
    ) {
        Ok(x) => x,
        Err(e) => return error_page(&e, Some(nav), "/ui/profiles"),
    };
    let name_of = |gid: &str| {
        groups
            .items
            .iter()
            .find(|g| g.id == gid)
            .map(|g| g.name.clone())
            .unwrap_or_else(|| gid.to_string())
    };
    let assigned: Vec<(String, String)> = d
        .assignments
        .iter()
        .map(|g| (g.clone(), name_of(g)))
        .collect();
    let choices = groups
        .items
        .iter()
        .filter(|g| !d.assignments.contains(&g.id))
        .map(|g| (g.id.clone(), g.name.clone()))
        .collect();
    let p = d.profile;
    let h = href(&p.id);
    let page = ProfilePage {
        admin: nav.admin,
        csrf: nav.csrf.clone(),
        nav: Some(nav),
        notice: notice(ctx.query.get("notice")),
        href: h.clone(),
        scope: scope_name(p.scope),
        device_types: if p.device_types.is_empty() {
            "all".into()
        } else {
            p.device_types.join(", ")
        },
        operations: p
            .operations
            .iter()
            .map(|o| OpRow {
                verb: o.verb.clone(),
                targets: o.targets.join(", "),
            })
            .collect(),
        assigned,
        choices,
        statuses: statuses
            .items
            .iter()
            .map(|s| StatusRow {
                device_href: format!("/ui/devices/{}", enc(&s.device_id)),
                device_id: s.device_id.clone(),
                version: s.version,
                status: s.status.clone(),
                reason: s.reason.clone().unwrap_or_default(),
                failures: s.failures.iter().map(failure_text).collect(),
                updated: Time::at(s.updated_at),
            })
            .collect(),
        status_next: statuses
            .next
            .map(|n| format!("{h}?cursor={}#status-h", enc(&n))),
        updated: Time::at(p.updated_at),
        p,
    };
    html(StatusCode::OK, &page)
}

async fn confirm(ctx: &Ctx, id: &str) -> Resp {
    let nav = match may_confirm(
        ctx,
        "profiles",
        &format!("POST /api/v1/profiles/{id}/push"),
        &href(id),
    ) {
        Ok(nav) => nav,
        Err(page) => return *page,
    };
    let d = match svc::get_profile(&ctx.app, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(nav), "/ui/profiles"),
    };
    let p = &d.profile;
    let named = format!(
        "the profile {} ({}, version {}, {} operations, assigned to {} groups)",
        p.name,
        p.id,
        p.version,
        p.operations.len(),
        d.assignments.len()
    );
    let (key, label, question, danger) = match ctx.query.get("do") {
        Some("push") => (
            "push",
            format!("Push {}", p.name),
            format!("Send every operation of {named} again to every device it applies to (a new version)?"),
            false,
        ),
        Some("delete") => (
            "delete",
            format!("Delete {}", p.name),
            format!("Delete {named}? The devices that have it get its settings deleted."),
            true,
        ),
        _ => return plain(StatusCode::NOT_FOUND, "unknown action"),
    };
    confirm_page(
        nav,
        Confirm {
            label,
            question,
            action: format!("{}/do", href(id)),
            key: key.into(),
            danger,
            back: href(id),
        },
    )
}

async fn act(ctx: &Ctx, id: &str) -> Resp {
    let nav = ctx.nav("profiles");
    let (app, actor) = (&ctx.app, &ctx.s.actor);
    let out = match ctx.form.get("do") {
        Some("push") => svc::update_profile(app, actor, id, None)
            .await
            .map(|_| format!("{}?notice=pushed", href(id))),
        Some("delete") => svc::delete_profile(app, actor, id)
            .await
            .map(|_| "/ui/profiles?notice=deleted".to_string()),
        _ => return plain(StatusCode::BAD_REQUEST, "unknown action"),
    };
    match out {
        Ok(to) => redirect(&to),
        Err(e) => error_page(&e, Some(nav), &href(id)),
    }
}

async fn assign(ctx: &Ctx, id: &str, add: bool) -> Resp {
    let nav = ctx.nav("profiles");
    let Some(gid) = ctx.form.text("group_id") else {
        return error_page(&ServiceError::bad("pick a group"), Some(nav), &href(id));
    };
    let (app, actor) = (&ctx.app, &ctx.s.actor);
    let out = if add {
        svc::assign(app, actor, id, &gid).await.map(|_| "assigned")
    } else {
        svc::unassign(app, actor, id, &gid)
            .await
            .map(|_| "unassigned")
    };
    match out {
        Ok(n) => redirect(&format!("{}?notice={n}", href(id))),
        Err(e) => error_page(&e, Some(nav), &href(id)),
    }
}
