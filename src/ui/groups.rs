//! Console pages of device groups: the list and create form (static or dynamic; the query
//! editor shows syntax errors and how many devices match while typing, through
//! `GET /ui/groups/preview`, the same parser as on save), and a group's page: edit (name,
//! description, query), members (paginated; a static group's are picked from the paginated
//! device list and removed by ticking them), the profiles assigned, and delete behind a
//! confirmation naming the group.

use askama::Template;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};

use super::form::enc;
use super::{
    confirm_page, error_page, html, may_confirm, notice, plain, redirect, Confirm, Ctx, Nav, Time,
    PAGE,
};
use crate::groups::{GroupKind, GroupPatch, NewGroup};
use crate::http::body::Resp;
use crate::service::groups as svc;
use crate::service::ServiceError;
use crate::store::DeviceFilter;

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
    rows: Vec<(String, &'static str, String, String, String)>,
    next_href: Option<String>,
}

pub(super) async fn route(ctx: &Ctx, method: &Method) -> Resp {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["groups"]) => page(ctx, None, StatusCode::OK).await,
        (&Method::GET, ["groups", "preview"]) => preview(ctx).await,
        (&Method::POST, ["groups"]) => create(ctx).await,
        (&Method::GET, ["groups", id]) => group(ctx, id, None, StatusCode::OK).await,
        (&Method::POST, ["groups", id]) => patch(ctx, id).await,
        (&Method::POST, ["groups", id, "members"]) => members(ctx, id).await,
        (&Method::GET, ["groups", id, "confirm"]) => confirm(ctx, id).await,
        (&Method::POST, ["groups", id, "do"]) => act(ctx, id).await,
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
                        href(&g.id),
                    )
                })
                .collect(),
            next_href: list.next.map(|n| format!("/ui/groups?cursor={}", enc(&n))),
        },
    )
}

fn href(id: &str) -> String {
    format!("/ui/groups/{}", enc(id))
}

/// Profiles named on a group's page at most.
const MAX_PROFILES_NAMED: usize = 50;

struct MemberRow {
    id: String,
    href: String,
    since: Time,
}

struct PickRow {
    id: String,
    name: String,
    user: String,
}

#[derive(Template)]
#[template(path = "ui/group.html")]
struct GroupPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    href: String,
    id: String,
    name: String,
    description: String,
    dynamic: bool,
    query: String,
    error: Option<String>,
    profiles: Vec<(String, String)>,
    members: Vec<MemberRow>,
    members_next: Option<String>,
    q: String,
    picks: Vec<PickRow>,
    picks_next: Option<String>,
}

/// A group's page; `error` (a refused edit) keeps the posted values.
async fn group(ctx: &Ctx, id: &str, error: Option<String>, status: StatusCode) -> Resp {
    let nav = ctx.nav("groups");
    let app = &ctx.app;
    let mcursor = ctx.query.text("mcursor");
    let (d, members) = match tokio::try_join!(
        svc::get(app, id),
        svc::members(app, id, mcursor.clone(), PAGE)
    ) {
        Ok(x) => x,
        Err(e) => return error_page(&e, Some(nav), "/ui/groups"),
    };
    let g = d.group;
    let h = href(&g.id);
    let dynamic = g.kind == GroupKind::Dynamic;
    let q = ctx.query.text("q").unwrap_or_default();
    let dcursor = ctx.query.text("dcursor");
    let (picks, picks_next) = if dynamic || !nav.admin {
        (Vec::new(), None)
    } else {
        let f = DeviceFilter {
            text: Some(q.to_lowercase()).filter(|s| !s.is_empty()),
            ..DeviceFilter::default()
        };
        match crate::service::devices::list(app, dcursor, PAGE, f, None).await {
            Ok(p) => (
                p.devices
                    .iter()
                    .map(|v| PickRow {
                        id: v.device.device_id.clone(),
                        name: v.device.device_name.clone().unwrap_or_default(),
                        user: v.device.upn.clone().unwrap_or_default(),
                    })
                    .collect(),
                p.next
                    .map(|n| format!("{h}?q={}&dcursor={}#add-h", enc(&q), enc(&n))),
            ),
            Err(e) => return error_page(&e, Some(nav), &h),
        }
    };
    // The names of the first profiles assigned (one read each; the API lists every id).
    let mut names = Vec::new();
    for pid in d.profiles.iter().take(MAX_PROFILES_NAMED) {
        let name = match svc::get_profile(app, pid).await {
            Ok(p) => p.profile.name,
            Err(_) => pid.clone(),
        };
        names.push((format!("/ui/profiles/{}", enc(pid)), name));
    }
    let posted = |k: &str, stored: String| {
        if error.is_some() {
            ctx.form.get(k).unwrap_or("").to_string()
        } else {
            stored
        }
    };
    html(
        status,
        &GroupPage {
            admin: nav.admin,
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            href: h.clone(),
            name: posted("name", g.name.clone()),
            description: posted("description", g.description.clone().unwrap_or_default()),
            query: posted("query", g.query.clone().unwrap_or_default()),
            id: g.id,
            dynamic,
            error,
            profiles: names,
            members: members
                .items
                .iter()
                .map(|m| MemberRow {
                    id: m.device_id.clone(),
                    href: format!("/ui/devices/{}", enc(&m.device_id)),
                    since: Time::at(m.since),
                })
                .collect(),
            members_next: members
                .next
                .map(|n| format!("{h}?mcursor={}#members-h", enc(&n))),
            q,
            picks,
            picks_next,
        },
    )
}

async fn patch(ctx: &Ctx, id: &str) -> Resp {
    let f = &ctx.form;
    let p = GroupPatch {
        name: f.text("name"),
        description: Some(f.get("description").unwrap_or("").trim().to_string()),
        query: f.get("query").map(|q| q.trim().to_string()),
    };
    match svc::patch(&ctx.app, &ctx.s.actor, id, p).await {
        Ok(_) => redirect(&format!("{}?notice=updated", href(id))),
        Err(
            e @ (ServiceError::BadRequest { .. }
            | ServiceError::Invalid { .. }
            | ServiceError::Conflict { .. }
            | ServiceError::ConflictState { .. }),
        ) => group(ctx, id, Some(e.to_string()), StatusCode::BAD_REQUEST).await,
        Err(e) => error_page(&e, Some(ctx.nav("groups")), &href(id)),
    }
}

/// Adds the ticked devices to a static group, or removes the ticked members.
async fn members(ctx: &Ctx, id: &str) -> Resp {
    let add = match ctx.form.get("op") {
        Some("add") => true,
        Some("remove") => false,
        _ => return plain(StatusCode::BAD_REQUEST, "unknown operation"),
    };
    let ids: Vec<String> = ctx
        .form
        .all("device")
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    let h = href(id);
    if ids.is_empty() {
        return error_page(
            &ServiceError::bad("tick at least one device"),
            Some(ctx.nav("groups")),
            &h,
        );
    }
    match svc::set_members(&ctx.app, &ctx.s.actor, id, ids, add).await {
        Ok(_) => redirect(&format!(
            "{h}?notice={}",
            if add {
                "members-added"
            } else {
                "members-removed"
            }
        )),
        Err(e) => error_page(&e, Some(ctx.nav("groups")), &h),
    }
}

async fn confirm(ctx: &Ctx, id: &str) -> Resp {
    if ctx.query.get("do") != Some("delete") {
        return plain(StatusCode::NOT_FOUND, "unknown action");
    }
    let nav = match may_confirm(
        ctx,
        "groups",
        &format!("DELETE /api/v1/groups/{id}"),
        &href(id),
    ) {
        Ok(nav) => nav,
        Err(page) => return *page,
    };
    let d = match svc::get(&ctx.app, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(nav), "/ui/groups"),
    };
    let g = &d.group;
    confirm_page(
        nav,
        Confirm::delete(
            format!("Delete group {}", g.name),
            format!(
                "Delete the group {} ({}, {})? Its members lose the {} profiles assigned to it.",
                g.name,
                g.id,
                match g.kind {
                    GroupKind::Static => "static",
                    GroupKind::Dynamic => "dynamic",
                },
                d.profiles.len()
            ),
            href(id),
        ),
    )
}

async fn act(ctx: &Ctx, id: &str) -> Resp {
    if ctx.form.get("do") != Some("delete") {
        return plain(StatusCode::BAD_REQUEST, "unknown action");
    }
    match svc::delete(&ctx.app, &ctx.s.actor, id).await {
        Ok(()) => redirect("/ui/groups?notice=deleted"),
        Err(e) => error_page(&e, Some(ctx.nav("groups")), &href(id)),
    }
}
