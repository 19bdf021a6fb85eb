//! Console pages of users (list, create, disable/enable, set password, delete) and of the
//! audit log.

use askama::Template;
use hyper::{Method, StatusCode};

use super::form::enc;
use super::{
    confirm_page, error_page, html, notice, plain, redirect, Confirm, Ctx, Nav, Time, PAGE,
};
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
    invitations: Vec<InvitationRow>,
    smtp: bool,
    bulk: bool,
    packages: Vec<(String, Time, String)>,
}

struct InvitationRow {
    id: String,
    state: &'static str,
    open: bool,
    expires: Time,
    by: String,
}

#[derive(Template)]
#[template(path = "ui/invited.html")]
struct InvitedPage {
    nav: Option<Nav>,
    notice: Option<String>,
    upn: String,
    expires: Time,
    sent: bool,
    send_error: Option<String>,
    landing_url: String,
    message: String,
    back: String,
}

/// Invitations read at most to list one user's (oldest first).
const INVITATION_SCAN: usize = 5_000;

/// The invitations of `upn` among the first [`INVITATION_SCAN`].
async fn invitations_of(
    ctx: &Ctx,
    upn: &str,
) -> Result<Vec<crate::service::invitations::InvitationView>, ServiceError> {
    use crate::service::invitations as inv;
    let mut out = Vec::new();
    let mut cursor = None;
    let mut read = 0;
    while read < INVITATION_SCAN {
        let page = inv::list(&ctx.app, cursor, 500).await?;
        read += page.items.len();
        out.extend(page.items.into_iter().filter(|i| i.upn == upn));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    Ok(out)
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
        (&Method::POST, ["users", upn, "invite"]) => invite(ctx, upn).await,
        (&Method::POST, ["users", upn, "package"]) => package(ctx, upn).await,
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
    let invitations = match invitations_of(ctx, &u.user.upn).await {
        Ok(v) => v,
        Err(e) => return error_page(&e, Some(nav), "/ui/users"),
    };
    use crate::service::invitations::InvitationState as S;
    let invitations = invitations
        .iter()
        .map(|i| InvitationRow {
            id: i.id.clone(),
            state: match i.state {
                S::Open => "open",
                S::Used => "used",
                S::Revoked => "revoked",
                S::Expired => "expired",
            },
            open: matches!(i.state, S::Open | S::Expired),
            expires: Time::at(i.expires_at),
            by: i.created_by.clone(),
        })
        .collect();
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
            invitations,
            smtp: ctx.app.cfg.smtp.is_some(),
            bulk: crate::store::is_bulk_account(upn_of(upn).as_str()),
            packages: u
                .bulk_packages
                .iter()
                .map(|p| {
                    (
                        p.package_id.clone(),
                        Time::at(p.created_at),
                        p.created_by.clone(),
                    )
                })
                .collect(),
        },
    )
}

fn upn_of(upn: &str) -> String {
    crate::store::normalize_upn(upn)
}

/// `POST /ui/users/{upn}/package`: the WCD customizations of a new package (a download).
async fn package(ctx: &Ctx, upn: &str) -> Resp {
    match crate::service::bulk::package(&ctx.app, &ctx.s.actor, upn).await {
        Ok(p) => {
            let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(p.xml)));
            let h = r.headers_mut();
            h.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/xml; charset=utf-8"),
            );
            if let Ok(v) = hyper::header::HeaderValue::from_str(&format!(
                "attachment; filename=\"{}\"",
                p.file_name
            )) {
                h.insert(hyper::header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e) => error_page(&e, Some(ctx.nav("users")), &user_href(upn)),
    }
}

/// `POST /ui/packages/{id}/revoke`.
pub(super) async fn revoke_package(ctx: &Ctx, id: &str) -> Resp {
    let back = ctx
        .form
        .get("back")
        .filter(|b| b.starts_with("/ui/users/") && !b.contains("//"))
        .unwrap_or("/ui/users")
        .to_string();
    match crate::service::bulk::revoke(&ctx.app, &ctx.s.actor, id).await {
        Ok(()) => redirect(&format!("{back}?notice=updated")),
        Err(e) => error_page(&e, Some(ctx.nav("users")), &back),
    }
}

async fn invite(ctx: &Ctx, upn: &str) -> Resp {
    use crate::service::invitations::{self as inv, NewInvitation};
    let back = user_href(upn);
    let hours = match ctx.form.text("hours").map(|h| h.parse::<u32>()) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => {
            let e = ServiceError::bad("expires_in_hours must be a whole number of hours");
            return error_page(&e, Some(ctx.nav("users")), &back);
        }
    };
    let ni = NewInvitation {
        upn: upn.to_string(),
        expires_in_hours: hours,
        send_email: ctx.form.get("send_email") == Some("true"),
    };
    match inv::create(&ctx.app, &ctx.s.actor, ni).await {
        Ok(c) => html(
            StatusCode::CREATED,
            &InvitedPage {
                nav: Some(ctx.nav("users")),
                notice: None,
                upn: c.upn,
                expires: Time::at(c.expires_at),
                sent: c.sent,
                send_error: c.send_error,
                landing_url: c.landing_url,
                message: c.message,
                back,
            },
        ),
        Err(e) => error_page(&e, Some(ctx.nav("users")), &back),
    }
}

/// `POST /ui/invitations/{id}/revoke` (back to the page named by the form's `back`, when it is
/// a user page of ours).
pub(super) async fn revoke_invitation(ctx: &Ctx, id: &str) -> Resp {
    let back = ctx
        .form
        .get("back")
        .filter(|b| b.starts_with("/ui/users/") && !b.contains("//"))
        .unwrap_or("/ui/users")
        .to_string();
    match crate::service::invitations::revoke(&ctx.app, &ctx.s.actor, id).await {
        Ok(()) => redirect(&format!("{back}?notice=updated")),
        Err(e) => error_page(&e, Some(ctx.nav("users")), &back),
    }
}

async fn update(ctx: &Ctx, upn: &str, p: UserPatch) -> Resp {
    match svc::update(&ctx.app, &ctx.s.actor, upn, p).await {
        Ok(u) => redirect(&format!("{}?notice=updated", user_href(&u.upn))),
        Err(e) => error_page(&e, Some(ctx.nav("users")), &user_href(upn)),
    }
}

fn confirm_delete(ctx: &Ctx, upn: &str) -> Resp {
    let nav = ctx.nav("users");
    let href = user_href(upn);
    confirm_page(
        nav,
        Confirm {
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
