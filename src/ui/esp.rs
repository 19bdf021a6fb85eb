//! Console pages of Enrollment Status Page configurations: the list, the form (apps and
//! configuration profiles that block, timeout, blocking and the remediation the user is offered, log collection, error
//! text, skipped pages, the Autopilot profiles it is attached to) whose refusals are shown
//! against their fields in the service's words ([`crate::service::apps::create_esp`] and
//! [`crate::service::apps::update_esp`] hold the rules), an ESP's page with its groups
//! (assign, remove) and delete behind a confirmation naming it.

use askama::Template;
use hyper::{Method, StatusCode};

use super::form::{enc, FieldErrors};
use super::{
    confirm_page, error_page, html, may_confirm, notice, plain, redirect, Confirm, Ctx, Nav, Time,
    PAGE,
};
use crate::apps::esp::{Esp, EspInput};
use crate::http::body::Resp;
use crate::service::apps as svc;
use crate::service::ServiceError;

/// Apps offered as blocking on the form.
const APP_CHOICES: usize = 200;
/// Configuration profiles offered as blocking on the form.
const POLICY_CHOICES: usize = 200;
/// Groups offered in the assignment picker.
const GROUP_CHOICES: usize = 200;

fn href(id: &str) -> String {
    format!("/ui/esp/{}", enc(id))
}

/// What the user may do when the page fails, as the page says it.
fn remediation(e: &Esp) -> String {
    if !e.block {
        return "does not block".into();
    }
    let mut v = Vec::new();
    if e.allow_reset {
        v.push("reset");
    }
    if e.allow_retry {
        v.push("retry");
    }
    if e.allow_continue {
        v.push("continue");
    }
    format!("blocks; on failure: {}", v.join(", "))
}

struct Row {
    href: String,
    name: String,
    apps: usize,
    timeout: u32,
    blocking: String,
    id: String,
}

#[derive(Template)]
#[template(path = "ui/esps.html")]
struct ListPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    rows: Vec<Row>,
    next_href: Option<String>,
}

/// What the form has ticked.
#[derive(Default)]
struct Ticked {
    /// Apps that block.
    apps: Vec<String>,
    /// Configuration profiles that block (ExpectedPolicies).
    policies: Vec<String>,
    /// Autopilot profiles it is attached to.
    autopilot: Vec<String>,
}

/// A checkbox of the form (an app, a configuration profile or an Autopilot profile).
struct Choice {
    id: String,
    name: String,
    detail: String,
    checked: bool,
}

/// The form's values (kept when the service refuses them).
struct Values {
    name: String,
    timeout: String,
    block: bool,
    allow_reset: bool,
    allow_retry: bool,
    allow_continue: bool,
    allow_collect_logs: bool,
    custom_error_text: String,
    skip_device_page: bool,
    skip_user_page: bool,
}

#[derive(Template)]
#[template(path = "ui/esp_form.html")]
struct FormPage {
    nav: Option<Nav>,
    notice: Option<String>,
    csrf: String,
    heading: String,
    action: String,
    back: String,
    v: Values,
    apps: Vec<Choice>,
    policies: Vec<Choice>,
    profiles: Vec<Choice>,
    errs: FieldErrors,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/esp.html")]
struct EspPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    href: String,
    e: Esp,
    block_value: u32,
    remediation: String,
    apps: Vec<(String, String)>,
    policies: Vec<(String, String)>,
    profiles: Vec<String>,
    groups: Vec<(String, String)>,
    choices: Vec<(String, String)>,
    created: Time,
}

pub(super) async fn route(ctx: &Ctx, method: &Method) -> Resp {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["esp"]) => list(ctx).await,
        (&Method::GET, ["esp", "new"]) => new_form(ctx).await,
        (&Method::POST, ["esp"]) => save(ctx, None).await,
        (&Method::GET, ["esp", id]) => page(ctx, id).await,
        (&Method::GET, ["esp", id, "edit"]) => edit_form(ctx, id).await,
        (&Method::POST, ["esp", id]) => save(ctx, Some(id)).await,
        (&Method::POST, ["esp", id, "assign"]) => assign(ctx, id, true).await,
        (&Method::POST, ["esp", id, "unassign"]) => assign(ctx, id, false).await,
        (&Method::GET, ["esp", id, "confirm"]) => confirm(ctx, id).await,
        (&Method::POST, ["esp", id, "do"]) => act(ctx, id).await,
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn list(ctx: &Ctx) -> Resp {
    let nav = ctx.nav("esp");
    let cursor = ctx.query.text("cursor");
    let page = match svc::list_esp(&ctx.app, cursor, PAGE).await {
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
                .map(|e| Row {
                    href: href(&e.id),
                    name: e.name.clone(),
                    apps: e.apps.len(),
                    timeout: e.timeout_minutes,
                    blocking: remediation(e),
                    id: e.id.clone(),
                })
                .collect(),
            next_href: page.next.map(|n| format!("/ui/esp?cursor={}", enc(&n))),
        },
    )
}

/// The apps, configuration profiles and Autopilot profiles the form offers, `t`'s ticked.
async fn choices(
    ctx: &Ctx,
    t: &Ticked,
) -> Result<(Vec<Choice>, Vec<Choice>, Vec<Choice>), ServiceError> {
    let (catalog, policies, aps) = tokio::try_join!(
        svc::list(&ctx.app, None, APP_CHOICES),
        crate::service::groups::list_profiles(&ctx.app, None, POLICY_CHOICES),
        crate::service::autopilot::list_profiles(&ctx.app),
    )?;
    let apps = catalog
        .items
        .into_iter()
        .map(|a| Choice {
            checked: t.apps.contains(&a.id),
            detail: match (&a.product_version, &a.package_family_name) {
                (_, Some(f)) => f.clone(),
                (Some(v), None) => format!("version {v}"),
                (None, None) => String::new(),
            },
            id: a.id,
            name: a.name,
        })
        .collect();
    // An app's own managed profile is the app's business: the service refuses it here.
    let policies = policies
        .items
        .into_iter()
        .filter(|p| p.app.is_none())
        .map(|p| Choice {
            checked: t.policies.contains(&p.id),
            detail: format!("{:?} scope, {} setting(s)", p.scope, p.operations.len())
                .to_lowercase(),
            id: p.id,
            name: p.name,
        })
        .collect();
    let profiles = aps
        .into_iter()
        .map(|p| Choice {
            checked: t.autopilot.contains(&p.id),
            detail: String::new(),
            id: p.id,
            name: p.name,
        })
        .collect();
    Ok((apps, policies, profiles))
}

async fn form_page(
    ctx: &Ctx,
    id: Option<&str>,
    v: Values,
    ticked: &Ticked,
    errs: FieldErrors,
    error: Option<String>,
    status: StatusCode,
) -> Resp {
    let nav = ctx.nav("esp");
    let (apps, policies, profiles) = match choices(ctx, ticked).await {
        Ok(c) => c,
        Err(e) => return error_page(&e, Some(nav), "/ui/esp"),
    };
    let (heading, action, back) = match id {
        Some(id) => (format!("Edit ESP {}", v.name), href(id), href(id)),
        None => (
            "New Enrollment Status Page".to_string(),
            "/ui/esp".to_string(),
            "/ui/esp".to_string(),
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
            apps,
            policies,
            profiles,
            errs,
            error,
        },
    )
}

fn values_of(e: &Esp) -> Values {
    Values {
        name: e.name.clone(),
        timeout: e.timeout_minutes.to_string(),
        block: e.block,
        allow_reset: e.allow_reset,
        allow_retry: e.allow_retry,
        allow_continue: e.allow_continue,
        allow_collect_logs: e.allow_collect_logs,
        custom_error_text: e.custom_error_text.clone().unwrap_or_default(),
        skip_device_page: e.skip_device_page,
        skip_user_page: e.skip_user_page,
    }
}

async fn new_form(ctx: &Ctx) -> Resp {
    if let Err(e) = ctx.s.actor.require_admin("POST /api/v1/esp") {
        return error_page(&e, Some(ctx.nav("esp")), "/ui/esp");
    }
    // The service's defaults: what an ESP given only a name gets (see the browser test).
    let v = Values {
        name: String::new(),
        timeout: String::new(),
        block: true,
        allow_reset: false,
        allow_retry: true,
        allow_continue: false,
        allow_collect_logs: true,
        custom_error_text: String::new(),
        skip_device_page: false,
        skip_user_page: false,
    };
    form_page(
        ctx,
        None,
        v,
        &Ticked::default(),
        FieldErrors::default(),
        None,
        StatusCode::OK,
    )
    .await
}

async fn edit_form(ctx: &Ctx, id: &str) -> Resp {
    if let Err(e) = ctx.s.actor.require_admin(&format!("PUT /api/v1/esp/{id}")) {
        return error_page(&e, Some(ctx.nav("esp")), &href(id));
    }
    let d = match svc::get_esp(&ctx.app, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(ctx.nav("esp")), "/ui/esp"),
    };
    let e = d.esp;
    form_page(
        ctx,
        Some(id),
        values_of(&e),
        &Ticked {
            apps: e.apps.clone(),
            policies: e.profiles.clone(),
            autopilot: e.autopilot_profiles.clone(),
        },
        FieldErrors::default(),
        None,
        StatusCode::OK,
    )
    .await
}

async fn save(ctx: &Ctx, id: Option<&str>) -> Resp {
    let f = &ctx.form;
    let on = |k: &str| f.get(k).is_some();
    let ticked_of = |k: &str| -> Vec<String> {
        f.all(k)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect()
    };
    let ticked = Ticked {
        apps: ticked_of("apps"),
        policies: ticked_of("profiles"),
        autopilot: ticked_of("autopilot_profiles"),
    };
    let v = Values {
        name: f.value("name").to_string(),
        timeout: f.value("timeout_minutes").to_string(),
        block: on("block"),
        allow_reset: on("allow_reset"),
        allow_retry: on("allow_retry"),
        allow_continue: on("allow_continue"),
        allow_collect_logs: on("allow_collect_logs"),
        custom_error_text: f.value("custom_error_text").to_string(),
        skip_device_page: on("skip_device_page"),
        skip_user_page: on("skip_user_page"),
    };
    let mut errs = FieldErrors::default();
    let timeout_minutes = match f.text("timeout_minutes") {
        None => None,
        Some(t) => match t.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                errs.set("timeout_minutes", "timeout_minutes must be a whole number");
                None
            }
        },
    };
    if !errs.is_empty() {
        return form_page(ctx, id, v, &ticked, errs, None, StatusCode::BAD_REQUEST).await;
    }
    let input = EspInput {
        name: v.name.clone(),
        apps: ticked.apps.clone(),
        profiles: ticked.policies.clone(),
        timeout_minutes,
        block: Some(v.block),
        allow_reset: Some(v.allow_reset),
        allow_retry: Some(v.allow_retry),
        allow_continue: Some(v.allow_continue),
        allow_collect_logs: Some(v.allow_collect_logs),
        custom_error_text: Some(v.custom_error_text.trim().to_string()).filter(|t| !t.is_empty()),
        skip_device_page: Some(v.skip_device_page),
        skip_user_page: Some(v.skip_user_page),
        autopilot_profiles: ticked.autopilot.clone(),
    };
    let out = match id {
        None => svc::create_esp(&ctx.app, &ctx.s.actor, input)
            .await
            .map(|e| (e.id, "created")),
        Some(id) => svc::update_esp(&ctx.app, &ctx.s.actor, id, input)
            .await
            .map(|e| (e.id, "updated")),
    };
    let error = match out {
        Ok((eid, n)) => return redirect(&format!("{}?notice={n}", href(&eid))),
        Err(ServiceError::Invalid { field, reason }) => {
            errs.set(field, reason);
            None
        }
        Err(
            e @ (ServiceError::BadRequest { .. }
            | ServiceError::Conflict { .. }
            | ServiceError::ConflictState { .. }
            | ServiceError::Refused { .. }),
        ) => Some(e.to_string()),
        // An app or profile ticked on the form is gone meanwhile: say so on the form.
        Err(ServiceError::NotFound { what }) if !what.starts_with("ESP ") => {
            Some(format!("{what} not found (deleted meanwhile?)"))
        }
        Err(e) => return error_page(&e, Some(ctx.nav("esp")), "/ui/esp"),
    };
    form_page(ctx, id, v, &ticked, errs, error, StatusCode::BAD_REQUEST).await
}

async fn page(ctx: &Ctx, id: &str) -> Resp {
    let nav = ctx.nav("esp");
    let app = &ctx.app;
    let (d, groups, aps) = match tokio::try_join!(
        svc::get_esp(app, id),
        crate::service::groups::list(app, None, GROUP_CHOICES),
        crate::service::autopilot::list_profiles(app),
    ) {
        Ok(x) => x,
        Err(e) => return error_page(&e, Some(nav), "/ui/esp"),
    };
    let mut apps = Vec::new();
    for a in &d.esp.apps {
        let name = match svc::get(app, a).await {
            Ok(x) => x.app.name,
            Err(_) => format!("{a} (deleted)"),
        };
        apps.push((super::apps::href(a), name));
    }
    let mut policies = Vec::new();
    for p in &d.esp.profiles {
        let name = match crate::service::groups::get_profile(app, p).await {
            Ok(x) => x.profile.name,
            Err(_) => format!("{p} (deleted)"),
        };
        policies.push((super::profiles::href(p), name));
    }
    let name_of = |gid: &str| {
        groups
            .items
            .iter()
            .find(|g| g.id == gid)
            .map_or_else(|| gid.to_string(), |g| g.name.clone())
    };
    let assigned: Vec<(String, String)> =
        d.groups.iter().map(|g| (g.clone(), name_of(g))).collect();
    let choices = groups
        .items
        .iter()
        .filter(|g| !d.groups.contains(&g.id))
        .map(|g| (g.id.clone(), g.name.clone()))
        .collect();
    let profiles = d
        .esp
        .autopilot_profiles
        .iter()
        .map(|p| {
            aps.iter()
                .find(|x| &x.id == p)
                .map_or_else(|| p.clone(), |x| x.name.clone())
        })
        .collect();
    let e = d.esp;
    html(
        StatusCode::OK,
        &EspPage {
            admin: nav.admin,
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            href: href(&e.id),
            block_value: e.block_value(),
            remediation: remediation(&e),
            apps,
            policies,
            profiles,
            groups: assigned,
            choices,
            created: Time::at(e.created_at),
            e,
        },
    )
}

async fn assign(ctx: &Ctx, id: &str, on: bool) -> Resp {
    let gid = ctx.form.value("group_id");
    let out = if on {
        svc::assign_esp(&ctx.app, &ctx.s.actor, id, gid)
            .await
            .map(|_| "assigned")
    } else {
        svc::unassign_esp(&ctx.app, &ctx.s.actor, id, gid)
            .await
            .map(|_| "unassigned")
    };
    match out {
        Ok(n) => redirect(&format!("{}?notice={n}", href(id))),
        Err(e) => error_page(&e, Some(ctx.nav("esp")), &href(id)),
    }
}

async fn confirm(ctx: &Ctx, id: &str) -> Resp {
    if ctx.query.get("do") != Some("delete") {
        return plain(StatusCode::NOT_FOUND, "unknown action");
    }
    let nav = match may_confirm(ctx, "esp", &format!("DELETE /api/v1/esp/{id}"), &href(id)) {
        Ok(nav) => nav,
        Err(page) => return *page,
    };
    let d = match svc::get_esp(&ctx.app, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(nav), "/ui/esp"),
    };
    confirm_page(
        nav,
        Confirm::delete(
            format!("Delete ESP {}", d.esp.name),
            format!(
                "Delete the Enrollment Status Page {} ({})? Its {} group assignments and {} Autopilot attachments go; devices already on it finish as they started.",
                d.esp.name,
                d.esp.id,
                d.groups.len(),
                d.esp.autopilot_profiles.len()
            ),
            href(id),
        ),
    )
}

async fn act(ctx: &Ctx, id: &str) -> Resp {
    if ctx.form.get("do") != Some("delete") {
        return plain(StatusCode::BAD_REQUEST, "unknown action");
    }
    match svc::delete_esp(&ctx.app, &ctx.s.actor, id).await {
        Ok(()) => redirect("/ui/esp?notice=deleted"),
        Err(e) => error_page(&e, Some(ctx.nav("esp")), &href(id)),
    }
}
