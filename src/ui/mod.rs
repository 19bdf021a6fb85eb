//! The admin web console at `/ui/` on the admin listener: server-rendered pages (askama
//! templates under `templates/ui/`, checked at compile time, HTML-escaped) over the same service
//! layer as the JSON API ([`crate::service`]); no rule is implemented twice.
//!
//! | method | path | page |
//! |---|---|---|
//! | GET/POST | `/ui/signin` | sign in with a token ([`session`]) |
//! | POST | `/ui/signout` | end the session |
//! | GET | `/ui/dashboard` | figures ([`crate::service::dashboard`]) |
//! | GET | `/ui/devices?q=&state=&owner=&cursor=` | devices ([`crate::service::devices::list`]) |
//! | GET | `/ui/devices/{id}` | a device: summary, certificate, inventory, groups, profiles, commands |
//! | GET, POST | `/ui/devices/{id}/confirm?do=`, `/ui/devices/{id}/do` | an action behind a confirmation naming the device |
//! | GET, POST | `/ui/users`, `/ui/users/{upn}[/state\|/password\|/confirm-delete\|/delete\|/invite\|/package]` | users, their invitations and bulk packages |
//! | POST | `/ui/invitations/{id}/revoke` | revoke an invitation |
//! | POST | `/ui/users/{upn}/package`, `/ui/packages/{id}/revoke` | bulk-enrollment packages (download, revoke) |
//! | GET, POST | `/ui/autopilot[/settings\|/profiles/new\|/profiles\|/import\|/profiles/{id}/export]` | Autopilot |
//! | GET | `/ui/audit?actor=&action=&target=&cursor=` | the audit log, filtered |
//! | GET | `/ui/enrollments/refused` | enrollment requests refused in the last day, with reasons |
//! | GET, POST | `/ui/tokens`, `/ui/tokens/{name}/revoke` | named admin tokens |
//! | GET, POST | `/ui/groups`, `GET /ui/groups/preview?q=` (JSON) | device groups; the query editor's live check |
//! | GET, POST | `/ui/groups/{id}[?q=&dcursor=&mcursor=]`, `/ui/groups/{id}/members`, `/ui/groups/{id}/confirm?do=delete`, `/ui/groups/{id}/do` | a group: edit, members (pick, remove), delete |
//! | GET, POST | `/ui/profiles`, `/ui/profiles/new`, `/ui/profiles/{id}[/edit\|/confirm?do=\|/do\|/assign\|/unassign]` | configuration profiles ([`profiles`]) |
//! | GET, POST | `/ui/apps`, `/ui/apps/upload` (multipart, streamed), `/ui/apps/{id}[/content\|/assign\|/unassign\|/confirm?do=delete\|/do]` | the app catalog ([`apps`]) |
//! | GET, POST | `/ui/esp`, `/ui/esp/new`, `/ui/esp/{id}[/edit\|/assign\|/unassign\|/confirm?do=delete\|/do]` | Enrollment Status Page configurations ([`esp`]) |
//! | GET | `/ui/static/app.css`, `/ui/static/app.js` | compiled into the binary |
//!
//! Every answer carries a strict Content-Security-Policy (`default-src 'self'`, no inline script
//! or style, `frame-ancestors 'none'`), `X-Frame-Options: DENY`, `Referrer-Policy: same-origin`,
//! `nosniff` and `Cache-Control: no-store`. Every POST needs the session's CSRF token and a
//! same-origin `Origin` when the browser sends one; every change is the service's, which checks
//! the role and writes the audit log. [`error_page`] is the one map from [`ServiceError`] to a
//! page.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::http::body::{read_body, BodyTimeout, Resp};
use crate::service::ServiceError;

mod apps;
mod autopilot;
mod devices;
mod esp;
pub mod form;
mod groups;
pub mod multipart;
mod profiles;
pub mod session;
mod tokens;
mod traces;
mod users;

use form::Form;
use session::Signed;

/// Largest form body.
pub const MAX_FORM_BODY: usize = 64 * 1024;
/// Largest upload (a hardware-hash CSV: 32 MiB is ~8,000 rows in UTF-8 with real hashes).
pub const MAX_UPLOAD: usize = 32 * 1024 * 1024;
/// Rows per list page.
pub const PAGE: usize = 25;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                       base-uri 'none'; object-src 'none'";

/// The navigation bar of a signed-in page.
#[derive(Debug, Clone)]
pub struct Nav {
    /// Token name.
    pub who: String,
    /// `admin` or `read-only`.
    pub role: &'static str,
    /// Whether changes are offered.
    pub admin: bool,
    /// CSRF token for the forms.
    pub csrf: String,
    /// Current section (`devices`, ...).
    pub section: &'static str,
}

impl Nav {
    fn of(s: &Signed, section: &'static str) -> Nav {
        let admin = s.actor.role == crate::service::TokenRole::Admin;
        Nav {
            who: s.actor.name.clone(),
            role: if admin { "admin" } else { "read-only" },
            admin,
            csrf: s.csrf.clone(),
            section,
        }
    }
}

/// A time shown in the admin's local time by `app.js`, with UTC in `title` (and as the text
/// without JavaScript).
#[derive(Debug, Clone)]
pub struct Time {
    /// RFC 3339, UTC.
    pub iso: String,
    /// `YYYY-MM-DD HH:MM:SS UTC`.
    pub utc: String,
}

impl Time {
    /// The time of Unix seconds `t`.
    pub fn at(t: i64) -> Time {
        let iso = crate::clock::rfc3339(t).replace(".000Z", "Z");
        let utc = format!("{} UTC", iso.trim_end_matches('Z').replacen('T', " ", 1));
        Time { iso, utc }
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage {
    nav: Option<Nav>,
    notice: Option<String>,
    heading: String,
    message: String,
    back: String,
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

/// The start of every confirmation page: the admin right the confirmed change needs (`what`,
/// as the API names it) is checked first, so that a read-only session is told at once, not
/// after confirming. `Err` is the page to answer (linking back to `back`).
fn may_confirm(ctx: &Ctx, section: &'static str, what: &str, back: &str) -> Result<Nav, Box<Resp>> {
    let nav = ctx.nav(section);
    match ctx.s.actor.require_admin(what) {
        Ok(()) => Ok(nav),
        Err(e) => Err(Box::new(error_page(&e, Some(nav), back))),
    }
}

/// What a confirmation page asks before a change.
struct Confirm {
    /// Heading and button text.
    label: String,
    /// The question, naming what is changed.
    question: String,
    /// Where the confirmed form posts.
    action: String,
    /// The form's `do` value.
    key: String,
    /// Styled as a destructive action.
    danger: bool,
    /// Where "cancel" goes.
    back: String,
}

impl Confirm {
    /// The confirmation of deleting what the page at `href` shows: `do=delete` posted to
    /// `href/do`, "cancel" back to `href`.
    fn delete(label: String, question: String, href: String) -> Confirm {
        Confirm {
            label,
            question,
            action: format!("{href}/do"),
            key: "delete".into(),
            danger: true,
            back: href,
        }
    }
}

/// The confirmation page of a change (one template for every page that asks).
fn confirm_page(nav: Nav, c: Confirm) -> Resp {
    html(
        StatusCode::OK,
        &ConfirmPage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: None,
            label: c.label,
            question: c.question,
            action: c.action,
            key: c.key,
            danger: c.danger,
            back: c.back,
        },
    )
}

#[derive(Template)]
#[template(path = "ui/signin.html")]
struct SignInPage {
    nav: Option<Nav>,
    notice: Option<String>,
    error: Option<String>,
}

/// Adds the console's security headers.
fn secure(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(hyper::header::CACHE_CONTROL) {
        h.insert(
            hyper::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
    r
}

/// An HTML answer of a rendered template.
fn html(status: StatusCode, t: &impl Template) -> Resp {
    match t.render() {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn plain(status: StatusCode, msg: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(msg.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A `303 See Other` to `to` (a path of ours).
fn redirect(to: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

fn asset(body: &'static str, ct: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// The one map from a service error to a console page.
pub fn error_page(e: &ServiceError, nav: Option<Nav>, back: &str) -> Resp {
    use ServiceError as S;
    let (status, heading) = match e {
        S::Unauthorized => return redirect("/ui/signin"),
        S::Forbidden { .. } => (StatusCode::FORBIDDEN, "Not allowed"),
        S::NotFound { .. } => (StatusCode::NOT_FOUND, "Not found"),
        S::Conflict { .. } | S::ConflictState { .. } | S::Refused { .. } => {
            (StatusCode::CONFLICT, "Refused")
        }
        S::BadRequest { .. } | S::Invalid { .. } => (StatusCode::BAD_REQUEST, "Invalid input"),
        S::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "Try again later"),
        S::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "Server error"),
    };
    match e {
        S::Internal { reason } => tracing::error!(%reason, "console internal error"),
        S::Unavailable { reason } => tracing::warn!(%reason, "console: store unavailable"),
        e => tracing::info!(error = %e, "console request refused"),
    }
    html(
        status,
        &ErrorPage {
            nav,
            notice: None,
            heading: heading.into(),
            message: e.to_string(),
            back: back.into(),
        },
    )
}

/// A refusal before any service call (CSRF, origin, body): 403 or 400 with a message.
fn refused(status: StatusCode, nav: Option<Nav>, message: &str) -> Resp {
    tracing::warn!(%status, reason = message, "console request refused");
    html(
        status,
        &ErrorPage {
            nav,
            notice: None,
            heading: "Refused".into(),
            message: message.into(),
            back: "/ui/dashboard".into(),
        },
    )
}

/// Handles one `/ui` request (admin listener only).
pub async fn handle(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    secure(route(app, peer, req).await)
}

/// What a signed-in handler gets: the app, the session, the decoded path, query and form.
pub struct Ctx {
    /// The application.
    pub app: Arc<App>,
    /// The session.
    pub s: Signed,
    /// Path segments after `/ui`, decoded.
    pub segs: Vec<String>,
    /// The query string's fields.
    pub query: Form,
    /// The POST body's fields (empty for GET).
    pub form: Form,
}

impl Ctx {
    fn nav(&self, section: &'static str) -> Nav {
        Nav::of(&self.s, section)
    }
}

fn same_origin<B>(req: &Request<B>) -> bool {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if let Some(site) = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
    {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match req
        .headers()
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(o) => host.is_some_and(|h| o.strip_prefix("https://") == Some(h)),
    }
}

/// Reads a POST body: a urlencoded form, or (where `upload` allows it) a multipart form whose
/// `file` part is returned apart.
async fn read_form(
    req: Request<Incoming>,
    upload: bool,
) -> Result<(Form, Option<Bytes>), &'static str> {
    let ct = crate::http::routes::content_type(&req);
    let timeout = BodyTimeout::of(&req);
    if upload && ct.starts_with("multipart/form-data") {
        // The boundary is case-sensitive: read it from the header as sent.
        let raw = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let boundary = multipart::boundary(raw).ok_or("multipart form without a boundary")?;
        let body = read_body(req.into_body(), MAX_UPLOAD, timeout)
            .await
            .map_err(|_| "upload too large (32 MiB at most), late or broken")?;
        let parts = multipart::parse(&body, &boundary).map_err(|_| "malformed multipart form")?;
        return Ok((parts.fields, parts.file));
    }
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err("expected a form (application/x-www-form-urlencoded)");
    }
    let body = read_body(req.into_body(), MAX_FORM_BODY, timeout)
        .await
        .map_err(|_| "form body too large, late or broken")?;
    let text = std::str::from_utf8(&body).map_err(|_| "form body is not UTF-8")?;
    Ok((
        Form::parse(text).map_err(|_| "form body is not a valid form")?,
        None,
    ))
}

async fn route(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let segs: Vec<String> = match path
        .trim_start_matches("/ui")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(form::decode_segment)
        .collect::<Result<_, _>>()
    {
        Ok(s) => s,
        Err(_) => return plain(StatusCode::BAD_REQUEST, "bad path"),
    };
    let seg: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query = Form::parse(req.uri().query().unwrap_or("")).unwrap_or_default();
    match (&method, seg.as_slice()) {
        (&Method::GET, ["static", "app.css"]) => return asset(CSS, "text/css; charset=utf-8"),
        (&Method::GET, ["static", "app.js"]) => return asset(JS, "text/javascript; charset=utf-8"),
        (&Method::GET, ["signin"]) => {
            return html(
                StatusCode::OK,
                &SignInPage {
                    nav: None,
                    notice: None,
                    error: None,
                },
            )
        }
        (&Method::POST, ["signin"]) => {
            if !same_origin(&req) {
                return refused(StatusCode::FORBIDDEN, None, "cross-site sign-in refused");
            }
            return sign_in(app, peer, req).await;
        }
        _ => {}
    }
    let cookie = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)
        .map(str::to_string);
    let signed = match &cookie {
        Some(c) => match session::current(&app, c).await {
            Ok(s) => s,
            Err(e) => return error_page(&e, None, "/ui/signin"),
        },
        None => None,
    };
    let Some(s) = signed else {
        if method == Method::GET {
            return redirect("/ui/signin");
        }
        return refused(
            StatusCode::FORBIDDEN,
            None,
            "not signed in (or the session ended): sign in again",
        );
    };
    let mut form = Form::default();
    let mut upload = None;
    if method == Method::POST {
        if !same_origin(&req) {
            return refused(
                StatusCode::FORBIDDEN,
                Some(Nav::of(&s, "")),
                "cross-site form post refused",
            );
        }
        if let Some(replace) = apps::upload_target(seg.as_slice()) {
            // An app package: streamed into the store as it arrives, not read whole.
            let ctx = Ctx {
                app,
                s,
                segs: segs.clone(),
                query,
                form: Form::default(),
            };
            return apps::upload(&ctx, req, replace).await;
        }
        let uploads = seg.as_slice() == ["autopilot", "import"];
        (form, upload) = match read_form(req, uploads).await {
            Ok(f) => f,
            Err(why) => return refused(StatusCode::BAD_REQUEST, Some(Nav::of(&s, "")), why),
        };
        if !session::check_csrf(&s, form.get("csrf")) {
            return refused(
                StatusCode::FORBIDDEN,
                Some(Nav::of(&s, "")),
                "the form's CSRF token is missing or wrong: reload the page and try again",
            );
        }
    } else if method != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let ctx = Ctx {
        app,
        s,
        segs: segs.clone(),
        query,
        form,
    };
    match (&method, seg.as_slice()) {
        (&Method::GET, [] | ["dashboard"]) => dashboard(&ctx).await,
        (&Method::POST, ["signout"]) => {
            if let Some(c) = &cookie {
                if let Err(e) = session::sign_out(&ctx.app, c).await {
                    return error_page(&e, None, "/ui/signin");
                }
            }
            tracing::info!(token = %ctx.s.actor.name, "console sign-out");
            let mut r = redirect("/ui/signin");
            if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
            r
        }
        (_, ["devices", ..]) => devices::route(&ctx, &method).await,
        (_, ["users", ..]) => users::route(&ctx, &method).await,
        (_, ["autopilot", ..]) => autopilot::route(&ctx, &method, upload).await,
        (&Method::GET, ["audit"]) => users::audit(&ctx).await,
        (&Method::GET, ["enrollments", "refused"]) => refused_enrollments(&ctx).await,
        (_, ["tokens", ..]) => tokens::route(&ctx, &method).await,
        (_, ["groups", ..]) => groups::route(&ctx, &method).await,
        (_, ["profiles", ..]) => profiles::route(&ctx, &method).await,
        (_, ["apps", ..]) => apps::route(&ctx, &method).await,
        (_, ["esp", ..]) => esp::route(&ctx, &method).await,
        (&Method::POST, ["invitations", id, "revoke"]) => users::revoke_invitation(&ctx, id).await,
        (&Method::POST, ["packages", id, "revoke"]) => users::revoke_package(&ctx, id).await,
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn sign_in(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    let limiter = &app.ui_sign_in;
    let again = |error: &str, status| {
        html(
            status,
            &SignInPage {
                nav: None,
                notice: None,
                error: Some(error.into()),
            },
        )
    };
    if !limiter.allow(peer.ip()) {
        tracing::warn!(peer = %peer, "console sign-in refused: too many attempts");
        return again(
            "Too many sign-in attempts: wait a few minutes.",
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let form = match read_form(req, false).await {
        Ok((f, _)) => f,
        Err(why) => return again(why, StatusCode::BAD_REQUEST),
    };
    let token = form.get("token").unwrap_or("");
    match session::sign_in(&app, token).await {
        Ok((id, _)) => {
            limiter.succeeded(peer.ip());
            let mut r = redirect("/ui/dashboard");
            if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id)) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
            r
        }
        Err(ServiceError::Unauthorized) => {
            limiter.failed(peer.ip());
            tracing::info!(peer = %peer, "console sign-in with an invalid token");
            again(
                "That token is not valid (unknown, revoked or mistyped).",
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(e) => error_page(&e, None, "/ui/signin"),
    }
}

#[derive(Template)]
#[template(path = "ui/dashboard.html")]
struct DashboardPage {
    nav: Option<Nav>,
    notice: Option<String>,
    d: crate::service::dashboard::Dashboard,
}

async fn dashboard(ctx: &Ctx) -> Resp {
    match crate::service::dashboard::dashboard(&ctx.app).await {
        Ok(d) => html(
            StatusCode::OK,
            &DashboardPage {
                nav: Some(ctx.nav("dashboard")),
                notice: None,
                d,
            },
        ),
        Err(e) => error_page(&e, Some(ctx.nav("dashboard")), "/ui/dashboard"),
    }
}

struct RefusalRow {
    at: Time,
    endpoint: String,
    kind: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "ui/refused.html")]
struct RefusedPage {
    nav: Option<Nav>,
    notice: Option<String>,
    count: usize,
    by_kind: Vec<(String, usize)>,
    rows: Vec<RefusalRow>,
}

/// The enrollment requests refused in the last day, with their reasons.
async fn refused_enrollments(ctx: &Ctx) -> Resp {
    match crate::service::dashboard::refused(&ctx.app).await {
        Ok(r) => html(
            StatusCode::OK,
            &RefusedPage {
                nav: Some(ctx.nav("dashboard")),
                notice: None,
                count: r.count,
                by_kind: r.by_kind.into_iter().collect(),
                rows: r
                    .refusals
                    .into_iter()
                    .map(|x| RefusalRow {
                        at: Time::at(x.at),
                        endpoint: x.endpoint,
                        kind: x.kind,
                        detail: x.detail,
                    })
                    .collect(),
            },
        ),
        Err(e) => error_page(&e, Some(ctx.nav("dashboard")), "/ui/dashboard"),
    }
}

/// The notice shown after a change, by key (fixed texts: nothing from the URL is echoed).
fn notice(key: Option<&str>) -> Option<String> {
    Some(
        match key? {
            "queued" => "Queued: the device gets it at its next check-in.",
            "deleted" => "Deleted.",
            "created" => "Created.",
            "updated" => "Saved.",
            "pushed" => "Pushed: a new version goes to every device it applies to.",
            "assigned" => "Assigned: the group's devices get it at their next check-in.",
            "unassigned" => "Assignment removed.",
            "members-added" => "Devices added to the group.",
            "members-removed" => "Devices removed from the group.",
            "uploaded" => "Uploaded: assign the app to a group to deliver it.",
            "upgraded" => "New version stored: the devices it is assigned to get it.",
            "trace-started" => {
                "Tracing: the device's next exchanges are recorded (secrets removed)."
            }
            "trace-stopped" => "Tracing stopped; the trace is kept.",
            _ => return None,
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_utc() {
        let t = Time::at(1_700_000_000);
        assert_eq!(t.iso, "2023-11-14T22:13:20Z");
        assert_eq!(t.utc, "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn notices_are_fixed_texts() {
        assert_eq!(notice(Some("<script>")), None);
        assert!(notice(Some("queued")).is_some());
    }

    #[test]
    fn templates_escape() {
        let p = ErrorPage {
            nav: None,
            notice: None,
            heading: "<b>x</b>".into(),
            message: "<script>alert(1)</script>".into(),
            back: "/ui".into(),
        };
        let s = p.render().unwrap();
        assert!(!s.contains("<script>alert"));
        assert!(s.contains("&#60;script&#62;") || s.contains("&lt;script&gt;"));
    }
}
