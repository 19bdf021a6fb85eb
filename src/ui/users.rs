//! Console pages of users (list, create, disable/enable, set password, delete) and of the
//! audit log.

use askama::Template;
use hyper::{Method, StatusCode};

use super::form::enc;
use super::{error_page, html, notice, plain, redirect, Ctx, Nav, Time, PAGE};
use crate::http::body::Resp;
use crate::service::users::{self as svc, UserPatch};
use crate::service::ServiceError;

struct UserRow {
    href: String,
    upn: String,
    disabled: bool,
    created: Time,
}

#[derive(Template)]
#[template(path = "ui/users.html")]
struct ListPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    error: Option<String>,
    upn: String,
    q: String,
    rows: Vec<UserRow>,
    first_href: Option<String>,
    next_href: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/user.html")]
struct UserPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    upn: String,
    disabled: bool,
    created: Time,
    failures: String,
    devices: Vec<(String, String)>,
    self_href: String,
}

fn user_href(upn: &str) -> String {
    format!("/ui/users/{}", enc(upn))
}

pub(super) async fn route(ctx: &Ctx, method: &Method) -> Resp {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["users"]) => list(ctx, None, String::new(), StatusCode::OK).await,
        (&Method::POST, ["users"]) => create(ctx).await,
        (&Method::GET, ["users", upn]) => page(ctx, upn).await,
        (&Method::POST, ["users", upn, "state"]) => {
            let disabled = ctx.form.get("disabled") == Some("true");
            let p = UserPatch {
                password: None,
                disabled: Some(disabled),
            };
            update(ctx, upn, p).await
        }
        (&Method::POST, ["users", upn, "password"]) => {
            let p = UserPatch {
                password: Some(ctx.form.get("password").unwrap_or("").to_string()),
                disabled: None,
            };
            update(ctx, upn, p).await
        }
        (&Method::GET, ["users", upn, "confirm-delete"]) => confirm_delete(ctx, upn),
        (&Method::POST, ["users", upn, "delete"]) => {
            match svc::delete(&ctx.app, &ctx.s.actor, upn).await {
                Ok(()) => redirect("/ui/users?notice=deleted"),
                Err(e) => error_page(&e, Some(ctx.nav("users")), &user_href(upn)),
            }
        }
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn list(ctx: &Ctx, error: Option<String>, upn: String, status: StatusCode) -> Resp {
    let nav = ctx.nav("users");
    let q = ctx.query.text("q").unwrap_or_default();
    let cursor = ctx.query.text("cursor");
    let search = Some(q.clone()).filter(|s| !s.is_empty());
    let page = match svc::list(&ctx.app, cursor.clone(), PAGE, search).await {
        Ok(p) => p,
        Err(e) => return error_page(&e, Some(nav), "/ui/dashboard"),
    };
    let base = format!("/ui/users?q={}", enc(&q));
    html(
        status,
        &ListPage {
            admin: nav.admin,
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            error,
            upn,
            q,
            rows: page
                .items
                .iter()
                .map(|u| UserRow {
                    href: user_href(&u.upn),
                    upn: u.upn.clone(),
                    disabled: u.disabled,
                    created: Time::at(u.created_at),
                })
                .collect(),
            first_href: cursor.is_some().then(|| base.clone()),
            next_href: page.next.map(|n| format!("{base}&cursor={}", enc(&n))),
        },
    )
}

async fn create(ctx: &Ctx) -> Resp {
    let upn = ctx.form.get("upn").unwrap_or("").to_string();
    let password = ctx.form.get("password").unwrap_or("").to_string();
    match svc::create(&ctx.app, &ctx.s.actor, &upn, password).await {
        Ok(u) => redirect(&format!("{}?notice=created", user_href(&u.upn))),
        // A rule the input broke is shown on the form, with the UPN kept.
        Err(e @ (ServiceError::BadRequest { .. } | ServiceError::Conflict { .. })) => {
            tracing::info!(error = %e, "console: user not created");
            let status = if matches!(e, ServiceError::Conflict { .. }) {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            list(ctx, Some(e.to_string()), upn, status).await
        }
        Err(e) => error_page(&e, Some(ctx.nav("users")), "/ui/users"),
    }
}

async fn page(ctx: &Ctx, upn: &str) -> Resp {
    let nav = ctx.nav("users");
    let u = match svc::get(&ctx.app, upn).await {
        Ok(u) => u,
        Err(e) => return error_page(&e, Some(nav), "/ui/users"),
    };
    html(
        StatusCode::OK,
        &UserPage {
            admin: nav.admin,
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            self_href: user_href(&u.user.upn),
            upn: u.user.upn,
            disabled: u.user.disabled,
            created: Time::at(u.user.created_at),
            failures: u
                .password_failures
                .map(|f| serde_json::to_string(&f).unwrap_or_default())
                .unwrap_or_else(|| "none".into()),
            devices: u
                .devices
                .iter()
                .map(|d| (d.clone(), format!("/ui/devices/{}", enc(d))))
                .collect(),
        },
    )
}

async fn update(ctx: &Ctx, upn: &str, p: UserPatch) -> Resp {
    match svc::update(&ctx.app, &ctx.s.actor, upn, p).await {
        Ok(u) => redirect(&format!("{}?notice=updated", user_href(&u.upn))),
        Err(e) => error_page(&e, Some(ctx.nav("users")), &user_href(upn)),
    }
}

#[derive(Template)]
#[template(path = "ui/confirm.html")]
struct ConfirmPage {
    nav: Option<Nav>,
    notice: Option<String>,
    label: String,
    question: String,
    action: String,
    csrf: String,
    key: String,
    danger: bool,
    back: String,
}

fn confirm_delete(ctx: &Ctx, upn: &str) -> Resp {
    let nav = ctx.nav("users");
    let href = user_href(upn);
    html(
        StatusCode::OK,
        &ConfirmPage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: None,
            label: format!("Delete user {upn}"),
            question: format!(
                "Delete the user {upn}? Its devices stay managed, as orphans; its bulk packages stop working."
            ),
            action: format!("{href}/delete"),
            key: "delete".into(),
            danger: true,
            back: href,
        },
    )
}

struct AuditRow {
    at: Time,
    actor: String,
    action: String,
    target: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    nav: Option<Nav>,
    notice: Option<String>,
    rows: Vec<AuditRow>,
    first_href: Option<String>,
    next_href: Option<String>,
}

pub(super) async fn audit(ctx: &Ctx) -> Resp {
    let nav = ctx.nav("audit");
    let cursor = ctx.query.text("cursor");
    let after = cursor.as_deref().and_then(|c| c.parse::<u64>().ok());
    let page = match svc::audit_log(&ctx.app, after, PAGE).await {
        Ok(p) => p,
        Err(e) => return error_page(&e, Some(nav), "/ui/dashboard"),
    };
    html(
        StatusCode::OK,
        &AuditPage {
            nav: Some(nav),
            notice: None,
            rows: page
                .entries
                .iter()
                .map(|e| AuditRow {
                    at: Time::at(e.at),
                    actor: e.actor.clone(),
                    action: e.action.clone(),
                    target: e.target.clone(),
                    detail: e.detail.to_string(),
                })
                .collect(),
            first_href: cursor.is_some().then(|| "/ui/audit".to_string()),
            next_href: page.next.map(|n| format!("/ui/audit?cursor={}", enc(&n))),
        },
    )
}
