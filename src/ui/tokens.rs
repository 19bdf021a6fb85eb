//! The console page of named admin tokens: list, create (the token shown once), revoke.

use askama::Template;
use hyper::{Method, StatusCode};

use super::form::enc;
use super::{error_page, html, notice, plain, redirect, Ctx, Nav, Time, PAGE};
use crate::http::body::Resp;
use crate::service::tokens as svc;
use crate::service::{ServiceError, TokenRole};

struct TokenRow {
    name: String,
    role: &'static str,
    created: Time,
    by: String,
}

#[derive(Template)]
#[template(path = "ui/tokens.html")]
struct TokensPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    created: Option<(String, String)>,
    error: Option<String>,
    rows: Vec<TokenRow>,
    next_href: Option<String>,
}

pub(super) async fn route(ctx: &Ctx, method: &Method) -> Resp {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["tokens"]) => page(ctx, None, None, StatusCode::OK).await,
        (&Method::POST, ["tokens"]) => {
            let name = ctx.form.get("name").unwrap_or("").trim().to_string();
            let role = match ctx.form.get("role") {
                Some("admin") => TokenRole::Admin,
                Some("metrics") => TokenRole::Metrics,
                _ => TokenRole::ReadOnly,
            };
            match svc::create(&ctx.app, &ctx.s.actor, name, role).await {
                Ok(t) => page(ctx, Some((t.view.name, t.token)), None, StatusCode::CREATED).await,
                Err(e @ (ServiceError::BadRequest { .. } | ServiceError::Conflict { .. })) => {
                    page(ctx, None, Some(e.to_string()), StatusCode::BAD_REQUEST).await
                }
                Err(e) => error_page(&e, Some(ctx.nav("tokens")), "/ui/tokens"),
            }
        }
        (&Method::POST, ["tokens", name, "revoke"]) => {
            match svc::revoke(&ctx.app, &ctx.s.actor, name.to_string()).await {
                // Revoking the token of this very session ends it: the next page asks to sign in.
                Ok(()) => redirect("/ui/tokens?notice=deleted"),
                Err(e) => error_page(&e, Some(ctx.nav("tokens")), "/ui/tokens"),
            }
        }
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn page(
    ctx: &Ctx,
    created: Option<(String, String)>,
    error: Option<String>,
    status: StatusCode,
) -> Resp {
    let nav = ctx.nav("tokens");
    let cursor = ctx.query.text("cursor");
    let list = match svc::list(&ctx.app, cursor, PAGE).await {
        Ok(l) => l,
        Err(e) => return error_page(&e, Some(nav), "/ui/dashboard"),
    };
    html(
        status,
        &TokensPage {
            admin: nav.admin,
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            created,
            error,
            rows: list
                .items
                .iter()
                .map(|t| TokenRow {
                    name: t.name.clone(),
                    role: match t.role {
                        TokenRole::Admin => "admin",
                        TokenRole::ReadOnly => "read-only",
                        TokenRole::Metrics => "metrics",
                    },
                    created: Time::at(t.created_at),
                    by: t.created_by.clone(),
                })
                .collect(),
            next_href: list.next.map(|n| format!("/ui/tokens?cursor={}", enc(&n))),
        },
    )
}
