//! Console pages of Windows Autopilot: settings, profiles (a form whose seed rules are checked
//! live in `app.js` and by the service on save), the hardware-hash CSV import with each refused
//! row shown against its content, and the registered devices.

use askama::Template;
use hyper::{Method, StatusCode};

use super::form::{enc, Form};
use super::{error_page, html, notice, plain, redirect, Ctx, Nav, PAGE};
use crate::autopilot::devices::Filter;
use crate::autopilot::Settings;
use crate::http::body::Resp;
use crate::service::autopilot as svc;
use crate::service::ServiceError;

struct ProfileRow {
    name: String,
    device_type: &'static str,
    mode: &'static str,
    groups: String,
    export_href: String,
}

struct DeviceRow {
    serial: String,
    group_tag: String,
    user: String,
    device_name: String,
    linked: String,
    linked_href: Option<String>,
}

/// A refused row: its number, what it held, why.
pub struct RowShown {
    row: usize,
    content: String,
    error: String,
}

/// An import's outcome as shown.
pub struct Report {
    imported: usize,
    errors: Vec<RowShown>,
}

#[derive(Template)]
#[template(path = "ui/autopilot.html")]
struct MainPage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    tenant_lockdown: bool,
    exportable: bool,
    profiles: Vec<ProfileRow>,
    devices: Vec<DeviceRow>,
    report: Option<Report>,
    first_href: Option<String>,
    next_href: Option<String>,
}

/// The profile form's values (kept when the server refuses them) and the refused field.
#[derive(Default)]
struct Values {
    name: String,
    description: String,
    device_type: String,
    deployment_mode: String,
    allow_pre_provisioning: bool,
    user_account_type: String,
    language: String,
    auto_configure_keyboard: bool,
    device_name_template: String,
    license_terms: String,
    tenant_lockdown: String,
    groups: String,
    all_groups: bool,
    field: String,
    reason: String,
}

impl Values {
    /// The server's message for `field`, if it refused that one.
    fn err(&self, field: &str) -> &str {
        if self.field == field {
            &self.reason
        } else {
            ""
        }
    }

    fn of(f: &Form) -> Values {
        let s = |k: &str| f.get(k).unwrap_or("").trim().to_string();
        Values {
            name: s("name"),
            description: s("description"),
            device_type: s("device_type"),
            deployment_mode: s("deployment_mode"),
            allow_pre_provisioning: f.get("allow_pre_provisioning") == Some("true"),
            user_account_type: s("user_account_type"),
            language: s("language"),
            auto_configure_keyboard: f.get("auto_configure_keyboard") == Some("true"),
            device_name_template: s("device_name_template"),
            license_terms: s("license_terms"),
            tenant_lockdown: s("tenant_lockdown"),
            groups: s("groups"),
            all_groups: f.get("all_groups") == Some("true"),
            field: String::new(),
            reason: String::new(),
        }
    }

    /// The API's JSON form of these values (decoded by the same [`svc::profile_input`]).
    fn json(&self) -> serde_json::Value {
        let opt = |v: &str| {
            if v.is_empty() {
                serde_json::Value::Null
            } else {
                v.into()
            }
        };
        let mut m = serde_json::json!({
            "name": self.name,
            "description": opt(&self.description),
            "device_type": opt(&self.device_type),
            "deployment_mode": opt(&self.deployment_mode),
            "allow_pre_provisioning": self.allow_pre_provisioning,
            "user_account_type": opt(&self.user_account_type),
            "language": opt(&self.language),
            "auto_configure_keyboard": self.auto_configure_keyboard,
            "device_name_template": opt(&self.device_name_template),
            "groups": self.groups.split(',').map(str::trim).filter(|g| !g.is_empty()).collect::<Vec<_>>(),
            "all_groups": self.all_groups,
        });
        if !self.license_terms.is_empty() {
            m["license_terms"] = self.license_terms.as_str().into();
        }
        m["tenant_lockdown"] = match self.tenant_lockdown.as_str() {
            "true" => true.into(),
            "false" => false.into(),
            _ => serde_json::Value::Null,
        };
        m
    }
}

#[derive(Template)]
#[template(path = "ui/ap_profile.html")]
struct ProfilePage {
    nav: Option<Nav>,
    notice: Option<String>,
    csrf: String,
    error: Option<String>,
    v: Values,
}

pub(super) async fn route(ctx: &Ctx, method: &Method, upload: Option<bytes::Bytes>) -> Resp {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (&Method::GET, ["autopilot"]) => main(ctx, None, StatusCode::OK).await,
        (&Method::POST, ["autopilot", "settings"]) => {
            let on = ctx.form.get("tenant_lockdown") == Some("on");
            match svc::put_settings(
                &ctx.app,
                &ctx.s.actor,
                Settings {
                    tenant_lockdown: on,
                },
            )
            .await
            {
                Ok(_) => redirect("/ui/autopilot?notice=updated"),
                Err(e) => error_page(&e, Some(ctx.nav("autopilot")), "/ui/autopilot"),
            }
        }
        (&Method::GET, ["autopilot", "profiles", "new"]) => {
            let v = Values {
                device_type: "windows-pc".into(),
                deployment_mode: "user-driven".into(),
                user_account_type: "standard".into(),
                ..Values::default()
            };
            profile_form(ctx, v, None, StatusCode::OK)
        }
        (&Method::POST, ["autopilot", "profiles"]) => create_profile(ctx).await,
        (&Method::POST, ["autopilot", "import"]) => import(ctx, upload).await,
        (&Method::GET, ["autopilot", "profiles", id, "export"]) => {
            match svc::export_profile(&ctx.app, id).await {
                Ok(body) => {
                    let mut r =
                        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                    let h = r.headers_mut();
                    h.insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    h.insert(
                        hyper::header::CONTENT_DISPOSITION,
                        hyper::header::HeaderValue::from_static(
                            "attachment; filename=\"AutopilotConfigurationFile.json\"",
                        ),
                    );
                    r
                }
                Err(e) => error_page(&e, Some(ctx.nav("autopilot")), "/ui/autopilot"),
            }
        }
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

fn profile_form(ctx: &Ctx, v: Values, error: Option<String>, status: StatusCode) -> Resp {
    let nav = ctx.nav("autopilot");
    html(
        status,
        &ProfilePage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: None,
            error,
            v,
        },
    )
}

async fn create_profile(ctx: &Ctx) -> Resp {
    let mut v = Values::of(&ctx.form);
    let out = match svc::profile_input(v.json()) {
        Ok(input) => svc::create_profile(&ctx.app, &ctx.s.actor, input)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    match out {
        Ok(()) => redirect("/ui/autopilot?notice=created"),
        // A broken rule: the form again, with the values and the reason at the field.
        Err(ServiceError::Invalid { field, reason }) => {
            tracing::info!(%field, %reason, "console: Autopilot profile refused");
            let msg = format!("Not saved: {reason}");
            v.field = field;
            v.reason = reason;
            profile_form(ctx, v, Some(msg), StatusCode::BAD_REQUEST)
        }
        Err(
            e @ (ServiceError::BadRequest { .. }
            | ServiceError::Refused { .. }
            | ServiceError::Conflict { .. }),
        ) => {
            let msg = format!("Not saved: {e}");
            profile_form(ctx, v, Some(msg), StatusCode::BAD_REQUEST)
        }
        Err(e) => error_page(&e, Some(ctx.nav("autopilot")), "/ui/autopilot"),
    }
}

/// The lines of an uploaded file as text (UTF-8, or UTF-16 with a byte-order mark), to show a
/// refused row next to its error; `None` when it is neither.
fn lines_of(file: &[u8]) -> Option<Vec<String>> {
    let text = match file {
        [0xFF, 0xFE, rest @ ..] => String::from_utf16(
            &rest
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        )
        .ok()?,
        [0xFE, 0xFF, rest @ ..] => String::from_utf16(
            &rest
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        )
        .ok()?,
        b => String::from_utf8(b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b).to_vec()).ok()?,
    };
    Some(text.lines().map(str::to_string).collect())
}

/// A row's content as shown: cut to 120 characters (hashes are ~4,000).
fn clip(s: &str) -> String {
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.to_string()
    }
}

async fn import(ctx: &Ctx, upload: Option<bytes::Bytes>) -> Resp {
    let Some(file) = upload.filter(|f| !f.is_empty()) else {
        let e = ServiceError::bad("choose a CSV file to import");
        return error_page(&e, Some(ctx.nav("autopilot")), "/ui/autopilot");
    };
    let lines = lines_of(&file);
    match svc::import_devices(&ctx.app, &ctx.s.actor, file).await {
        Ok(r) => {
            let errors = r
                .errors
                .iter()
                .map(|e| RowShown {
                    row: e.row,
                    content: lines
                        .as_ref()
                        .and_then(|l| l.get(e.row.saturating_sub(1)))
                        .map(|l| clip(l))
                        .unwrap_or_default(),
                    error: e.error.clone(),
                })
                .collect();
            let report = Report {
                imported: r.imported,
                errors,
            };
            main(ctx, Some(report), StatusCode::OK).await
        }
        Err(e) => error_page(&e, Some(ctx.nav("autopilot")), "/ui/autopilot"),
    }
}

async fn main(ctx: &Ctx, report: Option<Report>, status: StatusCode) -> Resp {
    let nav = ctx.nav("autopilot");
    let cursor = ctx.query.text("cursor");
    let app = &ctx.app;
    let (settings, profiles, page) = match tokio::try_join!(
        svc::settings(app),
        svc::list_profiles(app),
        svc::list_devices(app, cursor.clone(), PAGE, Filter::default())
    ) {
        Ok(x) => x,
        Err(e) => return error_page(&e, Some(nav), "/ui/dashboard"),
    };
    use crate::autopilot::profile::{DeploymentMode as DeployMode, DeviceType};
    let profiles = profiles
        .iter()
        .map(|p| ProfileRow {
            name: p.name.clone(),
            device_type: match p.device_type {
                DeviceType::WindowsPc => "Windows PC",
                DeviceType::Hololens => "HoloLens",
            },
            mode: match p.deployment_mode {
                DeployMode::SelfDeploying => "self-deploying",
                DeployMode::UserDriven => "user-driven",
            },
            groups: if p.all_groups {
                "all".into()
            } else {
                p.groups.join(", ")
            },
            export_href: format!("/ui/autopilot/profiles/{}/export", enc(&p.id)),
        })
        .collect();
    let devices = page
        .items
        .iter()
        .map(|d| DeviceRow {
            serial: d.serial.clone(),
            group_tag: d.group_tag.clone().unwrap_or_default(),
            user: d.assigned_user.clone().unwrap_or_default(),
            device_name: d.device_name.clone().unwrap_or_default(),
            linked: d.linked_device_id.clone().unwrap_or_default(),
            linked_href: d
                .linked_device_id
                .as_ref()
                .map(|id| format!("/ui/devices/{}", enc(id))),
        })
        .collect();
    html(
        status,
        &MainPage {
            admin: nav.admin,
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            tenant_lockdown: settings.tenant_lockdown,
            exportable: app.cfg.tenant_id.is_some() && app.cfg.tenant_domain.is_some(),
            profiles,
            devices,
            report,
            first_href: cursor.is_some().then(|| "/ui/autopilot".to_string()),
            next_href: page
                .next
                .map(|n| format!("/ui/autopilot?cursor={}", enc(&n))),
        },
    )
}
