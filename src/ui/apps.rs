//! Console pages of the app catalog: the list (kind, version, size, devices per install
//! state) with the upload form (an MSI streamed, as it arrives, into the API's upload code:
//! [`crate::service::apps::begin_upload`]) and the external-app form (URL and SHA-256); an
//! app's page with its metadata, a newer version's upload, assignments to groups (device or
//! user context, required or uninstall) and the per-device install state linked to the device
//! pages; delete behind a confirmation naming the app. A refused input is shown against its
//! field, in the service's words.

use askama::Template;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, StatusCode};

use super::form::{enc, FieldErrors, Form};
use super::multipart::{self, Event, Streaming};
use super::{
    confirm_page, error_page, html, may_confirm, notice, plain, redirect, refused, session,
    Confirm, Ctx, Nav, Time, PAGE,
};
use crate::apps::deliver::Intent;
use crate::apps::state::{AppState, DeviceAppState};
use crate::apps::{AppKind, AppRecord, ExternalApp, InstallOptions, UploadMeta};
use crate::http::body::{BodyTimeout, Resp};
use crate::profiles::Scope;
use crate::service::apps::{self as svc, AssignInput, UploadFailure};
use crate::service::ServiceError;

/// Deployments counted per app on the list (more: the count says so).
const COUNTED: usize = 1000;
/// Groups offered in the assignment picker.
const GROUP_CHOICES: usize = 200;
/// After a refused upload, at most this much of the rest of the body is read (and dropped)
/// so that the browser, still sending, gets the page with the error.
const DRAIN_MAX: u64 = 1 << 30;

/// The name of an install state on the pages.
pub fn state_name(s: AppState) -> &'static str {
    match s {
        AppState::Pending => "pending",
        AppState::Downloading => "downloading",
        AppState::Installing => "installing",
        AppState::Installed => "installed",
        AppState::Failed => "failed",
        AppState::NotApplicable => "not applicable",
        AppState::Uninstalling => "uninstalling",
        AppState::Uninstalled => "uninstalled",
    }
}

/// `device` or `user`.
pub fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Device => "device",
        Scope::User => "user",
    }
}

/// `required` or `uninstall`.
pub fn intent_name(i: Intent) -> &'static str {
    match i {
        Intent::Required => "required",
        Intent::Uninstall => "uninstall",
    }
}

fn kind_name(a: &AppRecord) -> &'static str {
    match (a.kind, a.url.is_some()) {
        (AppKind::Msi, false) => "MSI",
        (AppKind::Msix, false) => "MSIX",
        (AppKind::Msi, true) => "MSI (external)",
        (AppKind::Msix, true) => "MSIX (external)",
    }
}

fn size_text(n: Option<u64>) -> String {
    match n {
        None => "—".into(),
        Some(n) if n < 1024 => format!("{n} B"),
        Some(n) if n < 1 << 20 => format!("{:.1} KiB", n as f64 / 1024.0),
        Some(n) => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
    }
}

/// The link of an app's page.
pub fn href(id: &str) -> String {
    format!("/ui/apps/{}", enc(id))
}

struct Row {
    href: String,
    name: String,
    kind: &'static str,
    version: String,
    size: String,
    counts: String,
    id: String,
}

#[derive(Template)]
#[template(path = "ui/apps.html")]
struct ListPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    max_mb: u64,
    rows: Vec<Row>,
    next_href: Option<String>,
    /// The upload form's values and errors.
    up: Form,
    uerr: FieldErrors,
    /// The external-app form's values and errors.
    x: Form,
    xerr: FieldErrors,
    xerror: Option<String>,
    xfields: &'static [(&'static str, &'static str)],
}

/// The text fields of the external-app form: (field, label).
const XFIELDS: &[(&str, &str)] = &[
    ("name", "Name"),
    ("url", "HTTPS URL of the package"),
    ("sha256", "SHA-256 of the package (64 hex digits)"),
    ("product_code", "MSI: ProductCode {GUID}"),
    ("product_version", "ProductVersion (required for an MSI)"),
    (
        "package_family_name",
        "MSIX: package family name (Name_PublisherId)",
    ),
];

/// What a refused form left to show on the list page.
#[derive(Default)]
struct Refused {
    up: Form,
    uerr: FieldErrors,
    x: Form,
    xerr: FieldErrors,
    xerror: Option<String>,
}

pub(super) async fn route(ctx: &Ctx, method: &Method) -> Resp {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["apps"]) => list(ctx, Refused::default(), StatusCode::OK).await,
        (&Method::POST, ["apps"]) => register(ctx).await,
        (&Method::GET, ["apps", id]) => page(ctx, id, None, StatusCode::OK).await,
        (&Method::POST, ["apps", id, "assign"]) => assign(ctx, id).await,
        (&Method::POST, ["apps", id, "unassign"]) => unassign(ctx, id).await,
        (&Method::GET, ["apps", id, "confirm"]) => confirm(ctx, id).await,
        (&Method::POST, ["apps", id, "do"]) => act(ctx, id).await,
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Whether a POST to `segs` is an upload (read as a stream by [`upload`], not as a form).
pub(super) fn upload_target(segs: &[&str]) -> Option<Option<String>> {
    match segs {
        ["apps", "upload"] => Some(None),
        ["apps", id, "content"] => Some(Some((*id).to_string())),
        _ => None,
    }
}

fn counts_text(c: &svc::StateCounts) -> String {
    if c.counts.is_empty() {
        return "no device".into();
    }
    let mut s = c
        .counts
        .iter()
        .map(|(st, n)| format!("{n} {}", state_name(*st)))
        .collect::<Vec<_>>()
        .join(", ");
    if !c.complete {
        s.push_str(&format!(" (first {COUNTED} deployments)"));
    }
    s
}

async fn list(ctx: &Ctx, r: Refused, status: StatusCode) -> Resp {
    let nav = ctx.nav("apps");
    let cursor = ctx.query.text("cursor");
    let page = match svc::list(&ctx.app, cursor, PAGE).await {
        Ok(p) => p,
        Err(e) => return error_page(&e, Some(nav), "/ui/dashboard"),
    };
    let mut rows = Vec::new();
    for a in &page.items {
        let counts = match svc::state_counts(&ctx.app, &a.id, COUNTED).await {
            Ok(c) => counts_text(&c),
            Err(e) => return error_page(&e, Some(nav), "/ui/dashboard"),
        };
        rows.push(Row {
            href: href(&a.id),
            name: a.name.clone(),
            kind: kind_name(a),
            version: a.product_version.clone().unwrap_or_else(|| "—".into()),
            size: size_text(a.size),
            counts,
            id: a.id.clone(),
        });
    }
    html(
        status,
        &ListPage {
            admin: nav.admin,
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            max_mb: ctx.app.cfg.apps.max_bytes >> 20,
            rows,
            next_href: page.next.map(|n| format!("/ui/apps?cursor={}", enc(&n))),
            up: r.up,
            uerr: r.uerr,
            x: r.x,
            xerr: r.xerr,
            xerror: r.xerror,
            xfields: XFIELDS,
        },
    )
}

/// A whole number field (empty: `None`); the error names the field.
fn number(f: &Form, k: &'static str) -> Result<Option<u32>, (String, String)> {
    match f.text(k) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| (k.to_string(), format!("{k} must be a whole number"))),
    }
}

/// The install options of a form (the rules are the service's; only numbers are read here).
fn options(f: &Form) -> Result<InstallOptions, (String, String)> {
    Ok(InstallOptions {
        command_line: f.text("command_line"),
        timeout_minutes: number(f, "timeout_minutes")?,
        retry_count: number(f, "retry_count")?,
        retry_interval_minutes: number(f, "retry_interval_minutes")?,
    })
}

/// Registers an app by URL and SHA-256.
async fn register(ctx: &Ctx) -> Resp {
    let f = &ctx.form;
    let mut r = Refused {
        x: f.clone(),
        ..Refused::default()
    };
    let opts = match options(f) {
        Ok(o) => o,
        Err((field, msg)) => {
            r.xerr.set(field, msg);
            return list(ctx, r, StatusCode::BAD_REQUEST).await;
        }
    };
    let e = ExternalApp {
        kind: Some(if f.get("kind") == Some("msix") {
            AppKind::Msix
        } else {
            AppKind::Msi
        }),
        name: f.value("name").to_string(),
        url: f.value("url").to_string(),
        sha256: f.value("sha256").to_string(),
        product_code: f.text("product_code"),
        product_version: f.text("product_version"),
        package_family_name: f.text("package_family_name"),
        package_name: None,
        publisher: f.text("publisher"),
        options: opts,
    };
    match svc::register(&ctx.app, &ctx.s.actor, e).await {
        Ok(a) => redirect(&format!("{}?notice=created", href(&a.id))),
        Err(ServiceError::Invalid { field, reason }) => {
            r.xerr.set(field, reason);
            list(ctx, r, StatusCode::BAD_REQUEST).await
        }
        Err(
            e @ (ServiceError::BadRequest { .. }
            | ServiceError::Conflict { .. }
            | ServiceError::ConflictState { .. }
            | ServiceError::Refused { .. }),
        ) => {
            r.xerror = Some(e.to_string());
            list(ctx, r, StatusCode::BAD_REQUEST).await
        }
        Err(e) => error_page(&e, Some(ctx.nav("apps")), "/ui/apps"),
    }
}

/// An upload's refusal against a field of the form, or a page (not allowed, not found, ...).
fn upload_refusal(e: UploadFailure) -> Result<(String, String), ServiceError> {
    match e {
        UploadFailure::TooLarge(n) => Ok((
            "file".into(),
            format!(
                "The package is larger than the limit of {} MiB (--app-max-mb).",
                n >> 20
            ),
        )),
        UploadFailure::Service(ServiceError::Invalid { field, reason }) => Ok((field, reason)),
        UploadFailure::Service(
            e @ (ServiceError::BadRequest { .. }
            | ServiceError::Conflict { .. }
            | ServiceError::ConflictState { .. }
            | ServiceError::Refused { .. }),
        ) => Ok(("file".into(), e.to_string())),
        UploadFailure::Service(e) => Err(e),
    }
}

/// Reads an upload form as it arrives: its text fields (the CSRF token must come before the
/// file), then the `file` part, fed to the API's upload code piece by piece. `replace`: new
/// content for that app (an upgrade).
pub(super) async fn upload(ctx: &Ctx, req: Request<Incoming>, replace: Option<String>) -> Resp {
    let nav = ctx.nav("apps");
    let raw_ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let boundary = match multipart::boundary(&raw_ct) {
        Some(b)
            if raw_ct
                .to_ascii_lowercase()
                .starts_with("multipart/form-data") =>
        {
            b
        }
        _ => {
            return refused(
                StatusCode::BAD_REQUEST,
                Some(nav),
                "expected a multipart/form-data upload",
            )
        }
    };
    let idle = BodyTimeout::of(&req);
    let mut body = req.into_body();
    let mut parser = Streaming::new(&boundary);
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut up: Option<svc::Uploading> = None;
    let mut meta: Option<UploadMeta> = None;
    let mut csrf_ok = false;
    let mut failed: Option<(String, String)> = None;
    let mut drained: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(f))) => f,
            Err(_) | Ok(Some(Err(_))) => {
                if let Some(u) = up.take() {
                    u.abort().await;
                }
                tracing::info!("console upload broke off or stalled");
                return refused(
                    StatusCode::BAD_REQUEST,
                    Some(nav),
                    "the upload broke off or was not received in time",
                );
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if failed.is_some() {
            drained += data.len() as u64;
            if drained > DRAIN_MAX {
                break;
            }
            continue;
        }
        let events = match parser.push(&data) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::info!(error = %e, "console upload: malformed multipart body");
                failed = Some((
                    "file".into(),
                    format!("The upload form could not be read: {e}."),
                ));
                Vec::new()
            }
        };
        for ev in events {
            match ev {
                Event::Field(k, v) => fields.push((k, v)),
                Event::FileStart => {
                    let form = Form::from_pairs(fields.clone());
                    if !session::check_csrf(&ctx.s, form.get("csrf")) {
                        return refused(
                            StatusCode::FORBIDDEN,
                            Some(nav),
                            "the form's CSRF token is missing or wrong: reload the page and try again",
                        );
                    }
                    csrf_ok = true;
                    if up.is_some() {
                        failed = Some(("file".into(), "Send one file.".into()));
                        break;
                    }
                    match options(&form) {
                        Ok(o) => {
                            meta = Some(UploadMeta {
                                name: form.text("name"),
                                options: o,
                            })
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                    match svc::begin_upload(&ctx.app, &ctx.s.actor, replace.as_deref()).await {
                        Ok(u) => up = Some(u),
                        Err(e) => match upload_refusal(e) {
                            Ok(f) => {
                                failed = Some(f);
                                break;
                            }
                            Err(e) => return error_page(&e, Some(nav), "/ui/apps"),
                        },
                    }
                }
                Event::FileData(d) => {
                    if let Some(u) = up.as_mut() {
                        if let Err(e) = u.write(&d).await {
                            match upload_refusal(e) {
                                Ok(f) => failed = Some(f),
                                Err(e) => {
                                    if let Some(u) = up.take() {
                                        u.abort().await;
                                    }
                                    return error_page(&e, Some(nav), "/ui/apps");
                                }
                            }
                            break;
                        }
                    }
                }
                Event::FileEnd | Event::End => {}
            }
        }
        if failed.is_some() {
            if let Some(u) = up.take() {
                u.abort().await;
            }
        }
    }
    let form = Form::from_pairs(fields);
    if !csrf_ok && !session::check_csrf(&ctx.s, form.get("csrf")) {
        if let Some(u) = up.take() {
            u.abort().await;
        }
        return refused(
            StatusCode::FORBIDDEN,
            Some(nav),
            "the form's CSRF token is missing or wrong: reload the page and try again",
        );
    }
    if failed.is_none() && !parser.complete() {
        failed = Some(("file".into(), "The upload arrived incomplete.".into()));
    }
    let done = match (failed, up, meta) {
        (None, Some(u), Some(m)) => match u.finish(&ctx.s.actor, m, replace.clone()).await {
            Ok(rec) => {
                let n = if replace.is_some() {
                    "upgraded"
                } else {
                    "uploaded"
                };
                return redirect(&format!("{}?notice={n}", href(&rec.value.id)));
            }
            Err(e) => match upload_refusal(e) {
                Ok(f) => f,
                Err(e) => return error_page(&e, Some(nav), "/ui/apps"),
            },
        },
        (Some(f), up, _) => {
            if let Some(u) = up {
                u.abort().await;
            }
            f
        }
        (None, up, _) => {
            if let Some(u) = up {
                u.abort().await;
            }
            // No file part: a read-only session learns that first.
            if let Err(e) = ctx.s.actor.require_admin("POST /api/v1/apps") {
                return error_page(&e, Some(nav), "/ui/apps");
            }
            (
                "file".into(),
                "Choose a package file (MSI or MSIX/APPX).".into(),
            )
        }
    };
    tracing::info!(field = %done.0, reason = %done.1, "console upload refused");
    match replace {
        Some(id) => {
            page(
                ctx,
                &id,
                Some(format!("The new version was refused: {}", done.1)),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        None => {
            let mut r = Refused {
                up: form,
                ..Refused::default()
            };
            r.uerr.set(done.0, done.1);
            list(ctx, r, StatusCode::BAD_REQUEST).await
        }
    }
}

struct AssignRow {
    group_id: String,
    group_name: String,
    group_href: String,
    scope: &'static str,
    intent: &'static str,
}

/// One device's state of an app, as the app and device pages show it.
pub struct StateRow {
    /// App (the device page links it).
    pub app_id: String,
    /// App name (device page).
    pub app_name: String,
    /// The app's page.
    pub app_href: String,
    /// Device.
    pub device_id: String,
    /// The device's page.
    pub device_href: String,
    /// `device` / `user`.
    pub scope: &'static str,
    /// `required` / `uninstall`.
    pub intent: &'static str,
    /// State name.
    pub state: &'static str,
    /// Installed version.
    pub version: String,
    /// The device's error code.
    pub error_code: String,
    /// What it means.
    pub error: String,
    /// More detail.
    pub reason: String,
    /// Last change.
    pub updated: Time,
}

impl StateRow {
    /// The row of `s` (`app_name`: the app's name when known).
    pub fn of(s: &DeviceAppState, app_name: Option<&str>) -> StateRow {
        StateRow {
            app_id: s.app_id.clone(),
            app_name: app_name.unwrap_or(&s.app_id).to_string(),
            app_href: href(&s.app_id),
            device_id: s.device_id.clone(),
            device_href: format!("/ui/devices/{}", enc(&s.device_id)),
            scope: scope_name(s.scope),
            intent: intent_name(s.intent),
            state: state_name(s.state),
            version: s.version.clone().unwrap_or_default(),
            error_code: s.error_code.clone().unwrap_or_default(),
            error: s.error.clone().unwrap_or_default(),
            reason: s.reason.clone().unwrap_or_default(),
            updated: Time::at(s.updated_at),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/app.html")]
struct AppPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    href: String,
    a: AppRecord,
    kind: &'static str,
    size: String,
    uploaded: bool,
    error: Option<String>,
    assignments: Vec<AssignRow>,
    groups: Vec<(String, String)>,
    states: Vec<StateRow>,
    states_next: Option<String>,
    created: Time,
    updated: Time,
}

/// An app's page; `error`: a refused change, said at the top.
async fn page(ctx: &Ctx, id: &str, error: Option<String>, status: StatusCode) -> Resp {
    let nav = ctx.nav("apps");
    let app = &ctx.app;
    let cursor = ctx.query.text("cursor");
    let (d, states, groups) = match tokio::try_join!(
        svc::get(app, id),
        svc::devices(app, id, cursor, PAGE),
        crate::service::groups::list(app, None, GROUP_CHOICES),
    ) {
        Ok(x) => x,
        Err(e) => return error_page(&e, Some(nav), "/ui/apps"),
    };
    let name_of = |gid: &str| {
        groups
            .items
            .iter()
            .find(|g| g.id == gid)
            .map_or_else(|| gid.to_string(), |g| g.name.clone())
    };
    let a = d.app;
    let h = href(&a.id);
    html(
        status,
        &AppPage {
            admin: nav.admin,
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            href: h.clone(),
            kind: kind_name(&a),
            size: size_text(a.size),
            uploaded: a.kind == AppKind::Msi && a.content_id.is_some(),
            error,
            assignments: d
                .assignments
                .iter()
                .map(|x| AssignRow {
                    group_name: name_of(&x.group_id),
                    group_href: format!("/ui/groups/{}", enc(&x.group_id)),
                    group_id: x.group_id.clone(),
                    scope: scope_name(x.scope),
                    intent: intent_name(x.intent),
                })
                .collect(),
            groups: groups
                .items
                .iter()
                .map(|g| (g.id.clone(), g.name.clone()))
                .collect(),
            states: states
                .items
                .iter()
                .map(|s| StateRow::of(s, Some(&a.name)))
                .collect(),
            states_next: states
                .next
                .map(|n| format!("{h}?cursor={}#states-h", enc(&n))),
            created: Time::at(a.created_at),
            updated: Time::at(a.updated_at),
            a,
        },
    )
}

async fn assign(ctx: &Ctx, id: &str) -> Resp {
    let f = &ctx.form;
    let input = AssignInput {
        group_id: f.value("group_id").to_string(),
        scope: if f.get("scope") == Some("user") {
            Scope::User
        } else {
            Scope::Device
        },
        intent: if f.get("intent") == Some("uninstall") {
            Intent::Uninstall
        } else {
            Intent::Required
        },
    };
    match svc::assign(&ctx.app, &ctx.s.actor, id, input).await {
        Ok(_) => redirect(&format!("{}?notice=assigned", href(id))),
        Err(
            e @ (ServiceError::BadRequest { .. }
            | ServiceError::Invalid { .. }
            | ServiceError::Conflict { .. }
            | ServiceError::ConflictState { .. }
            | ServiceError::Refused { .. }),
        ) => page(ctx, id, Some(e.to_string()), StatusCode::BAD_REQUEST).await,
        Err(e) => error_page(&e, Some(ctx.nav("apps")), &href(id)),
    }
}

async fn unassign(ctx: &Ctx, id: &str) -> Resp {
    match svc::unassign(&ctx.app, &ctx.s.actor, id, ctx.form.value("group_id")).await {
        Ok(_) => redirect(&format!("{}?notice=unassigned", href(id))),
        Err(e) => error_page(&e, Some(ctx.nav("apps")), &href(id)),
    }
}

async fn confirm(ctx: &Ctx, id: &str) -> Resp {
    if ctx.query.get("do") != Some("delete") {
        return plain(StatusCode::NOT_FOUND, "unknown action");
    }
    let nav = match may_confirm(ctx, "apps", &format!("DELETE /api/v1/apps/{id}"), &href(id)) {
        Ok(nav) => nav,
        Err(page) => return *page,
    };
    let d = match svc::get(&ctx.app, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(nav), "/ui/apps"),
    };
    let a = &d.app;
    confirm_page(
        nav,
        Confirm::delete(
            format!("Delete app {}", a.name),
            format!(
                "Delete the app {} ({}, {} {})? Its {} assignments go: the devices that have it installed by winmdm uninstall it.",
                a.name,
                a.id,
                kind_name(a),
                a.product_version.as_deref().unwrap_or(""),
                d.assignments.len()
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
        Ok(_) => redirect("/ui/apps?notice=deleted"),
        Err(e) => error_page(&e, Some(ctx.nav("apps")), &href(id)),
    }
}
