//! The console page of device groups: list, create (static or dynamic; the query editor shows
//! syntax errors and how many devices match while typing, through `GET /ui/groups/preview`,
//! the same parser as on save).

use askama::Template;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};

use super::form::enc;
use super::{error_page, html, notice, plain, redirect, Ctx, Nav, PAGE};
use crate::groups::{GroupKind, NewGroup};
use crate::http::body::Resp;
use crate::service::groups as svc;
use crate::service::ServiceError;

#[derive(Template)]
#[template(path = "ui/groups.html")]
struct GroupsPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    error: Option<String>,
    name: String,
    description: String,
    query: String,
    rows: Vec<(String, &'static str, String, String)>,
    next_href: Option<String>,
}

pub(super) async fn route(ctx: &Ctx, method: &Method) -> Resp {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["groups"]) => page(ctx, None, StatusCode::OK).await,
        (&Method::GET, ["groups", "preview"]) => preview(ctx).await,
        (&Method::POST, ["groups"]) => create(ctx).await,
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn preview(ctx: &Ctx) -> Resp {
    let q = ctx.query.get("q").unwrap_or("");
    match svc::preview(&ctx.app, q).await {
        Ok(p) => {
            let body = serde_json::to_vec(&p).unwrap_or_default();
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => error_page(&e, Some(ctx.nav("groups")), "/ui/groups"),
    }
}

async fn create(ctx: &Ctx) -> Resp {
    let text = |k: &str| ctx.form.text(k);
    let ng = NewGroup {
        name: text("name").unwrap_or_default(),
        description: text("description"),
        query: text("query"),
    };
    match svc::create(&ctx.app, &ctx.s.actor, ng).await {
        Ok(_) => redirect("/ui/groups?notice=created"),
        Err(
            e @ (ServiceError::BadRequest { .. }
            | ServiceError::Conflict { .. }
            | ServiceError::ConflictState { .. }),
        ) => page(ctx, Some(e.to_string()), StatusCode::BAD_REQUEST).await,
        Err(e) => error_page(&e, Some(ctx.nav("groups")), "/ui/groups"),
    }
}

async fn page(ctx: &Ctx, error: Option<String>, status: StatusCode) -> Resp {
    let nav = ctx.nav("groups");
    let cursor = ctx.query.text("cursor");
    let list = match svc::list(&ctx.app, cursor, PAGE).await {
        Ok(l) => l,
        Err(e) => return error_page(&e, Some(nav), "/ui/dashboard"),
    };
    let keep = |k: &str| {
        if error.is_some() {
            ctx.form.get(k).unwrap_or("").to_string()
        } else {
            String::new()
        }
    };
    html(
        status,
        &GroupsPage {
            admin: nav.admin,
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            name: keep("name"),
            description: keep("description"),
            query: keep("query"),
            error,
            rows: list
                .items
                .iter()
                .map(|g| {
                    (
                        g.name.clone(),
                        match g.kind {
                            GroupKind::Static => "static",
                            GroupKind::Dynamic => "dynamic",
                        },
                        g.query.clone().unwrap_or_default(),
                        g.id.clone(),
                    )
                })
                .collect(),
            next_href: list.next.map(|n| format!("/ui/groups?cursor={}", enc(&n))),
        },
    )
}
