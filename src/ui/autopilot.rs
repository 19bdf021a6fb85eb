//! Console pages of Windows Autopilot: settings, profiles (create and edit: a form whose seed
//! rules are checked live in `app.js` and by the service on save), the hardware-hash CSV import
//! with each refused row shown against its content, and the registered devices (edit user,
//! user-friendly name, device name, group tag, with the seed's rules shown live and checked by
//! the service; delete behind a confirmation naming the serial).

use askama::Template;
use hyper::{Method, StatusCode};

use super::form::{enc, Form};
use super::{
    confirm_page, error_page, html, may_confirm, notice, plain, redirect, Confirm, Ctx, Nav, PAGE,
};
use crate::autopilot::devices::Filter;
use crate::autopilot::Settings;
use crate::http::body::Resp;
use crate::service::autopilot as svc;
use crate::service::ServiceError;

struct ProfileRow {
    name: String,
    edit_href: String,
    device_type: &'static str,
    mode: &'static str,
    groups: String,
    export_href: String,
}

struct DeviceRow {
    serial: String,
    edit_href: String,
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
    heading: String,
    action: String,
    v: Values,
}

/// The profile as the form's values.
fn values_of(p: &crate::autopilot::profile::Profile) -> Values {
    let j = serde_json::to_value(p).unwrap_or_default();
    let s = |k: &str| j[k].as_str().unwrap_or("").to_string();
    Values {
        name: p.name.clone(),
        description: p.description.clone().unwrap_or_default(),
        device_type: s("device_type"),
        deployment_mode: s("deployment_mode"),
        allow_pre_provisioning: p.allow_pre_provisioning,
        user_account_type: s("user_account_type"),
        language: p.language.clone().unwrap_or_default(),
        auto_configure_keyboard: p.auto_configure_keyboard,
        device_name_template: p.device_name_template.clone().unwrap_or_default(),
        license_terms: s("license_terms"),
        tenant_lockdown: match p.tenant_lockdown {
            Some(true) => "true".into(),
            Some(false) => "false".into(),
            None => String::new(),
        },
        groups: p.groups.join(", "),
        all_groups: p.all_groups,
        field: String::new(),
        reason: String::new(),
    }
}

/// An Autopilot device's edit form: values (kept when refused) and the refused field.
#[derive(Default)]
struct DeviceValues {
    user: String,
    user_friendly_name: String,
    device_name: String,
    group_tag: String,
    field: String,
    reason: String,
}

impl DeviceValues {
    fn err(&self, field: &str) -> &str {
        if self.field == field {
            &self.reason
        } else {
            ""
        }
    }
}

#[derive(Template)]
#[template(path = "ui/ap_device.html")]
struct DevicePage {
    nav: Option<Nav>,
    notice: Option<String>,
    admin: bool,
    csrf: String,
    serial: String,
    href: String,
    linked: Option<(String, String)>,
    group_tag_max: usize,
    friendly_max: usize,
    error: Option<String>,
    v: DeviceValues,
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
            profile_form(ctx, None, v, None, StatusCode::OK)
        }
        (&Method::POST, ["autopilot", "profiles"]) => save_profile(ctx, None).await,
        (&Method::GET, ["autopilot", "profiles", id, "edit"]) => {
            if let Err(e) = ctx
                .s
                .actor
                .require_admin(&format!("PUT /api/v1/autopilot/profiles/{id}"))
            {
                return error_page(&e, Some(ctx.nav("autopilot")), "/ui/autopilot");
            }
            match svc::get_profile(&ctx.app, id).await {
                Ok(p) => profile_form(ctx, Some(&p.id), values_of(&p), None, StatusCode::OK),
                Err(e) => error_page(&e, Some(ctx.nav("autopilot")), "/ui/autopilot"),
            }
        }
        (&Method::POST, ["autopilot", "profiles", id]) => save_profile(ctx, Some(id)).await,
        (&Method::GET, ["autopilot", "devices", serial]) => {
            device_page(ctx, serial, None, None, StatusCode::OK).await
        }
        (&Method::POST, ["autopilot", "devices", serial]) => save_device(ctx, serial).await,
        (&Method::GET, ["autopilot", "devices", serial, "confirm"]) => {
            confirm_device_delete(ctx, serial).await
        }
        (&Method::POST, ["autopilot", "devices", serial, "delete"]) => {
            match svc::delete_device(&ctx.app, &ctx.s.actor, serial).await {
                Ok(()) => redirect("/ui/autopilot?notice=deleted"),
                Err(e) => error_page(&e, Some(ctx.nav("autopilot")), &device_href(serial)),
            }
        }
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

fn profile_form(
    ctx: &Ctx,
    id: Option<&str>,
    v: Values,
    error: Option<String>,
    status: StatusCode,
) -> Resp {
    let nav = ctx.nav("autopilot");
    let (heading, action) = match id {
        Some(id) => (
            format!("Edit Autopilot profile {}", v.name),
            format!("/ui/autopilot/profiles/{}", enc(id)),
        ),
        None => (
            "New Autopilot profile".to_string(),
            "/ui/autopilot/profiles".to_string(),
        ),
    };
    html(
        status,
        &ProfilePage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: None,
            error,
            heading,
            action,
            v,
        },
    )
}

/// Creates (`id` `None`) or replaces a profile. The edit form does not show every setting
/// (conversion, privacy and account-change pages): those keep their stored values.
async fn save_profile(ctx: &Ctx, id: Option<&str>) -> Resp {
    let mut v = Values::of(&ctx.form);
    let out = match id {
        None => match svc::profile_input(v.json()) {
            Ok(input) => svc::create_profile(&ctx.app, &ctx.s.actor, input)
                .await
                .map(|_| "created"),
            Err(e) => Err(e),
        },
        Some(id) => match svc::get_profile(&ctx.app, id).await {
            Ok(cur) => {
                let mut j = serde_json::to_value(&cur).unwrap_or_default();
                if let Some(m) = j.as_object_mut() {
                    for k in ["id", "created_at", "updated_at"] {
                        m.remove(k);
                    }
                    if let Some(form) = v.json().as_object() {
                        m.extend(form.clone());
                    }
                }
                match svc::profile_input(j) {
                    Ok(input) => svc::replace_profile(&ctx.app, &ctx.s.actor, id, input)
                        .await
                        .map(|_| "updated"),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        },
    };
    match out {
        Ok(n) => redirect(&format!("/ui/autopilot?notice={n}")),
        // A broken rule: the form again, with the values and the reason at the field.
        Err(ServiceError::Invalid { field, reason }) => {
            tracing::info!(%field, %reason, "console: Autopilot profile refused");
            let msg = format!("Not saved: {reason}");
            v.field = field;
            v.reason = reason;
            profile_form(ctx, id, v, Some(msg), StatusCode::BAD_REQUEST)
        }
        Err(
            e @ (ServiceError::BadRequest { .. }
            | ServiceError::Refused { .. }
            | ServiceError::Conflict { .. }),
        ) => {
            let msg = format!("Not saved: {e}");
            profile_form(ctx, id, v, Some(msg), StatusCode::BAD_REQUEST)
        }
        Err(e) => error_page(&e, Some(ctx.nav("autopilot")), "/ui/autopilot"),
    }
}

fn device_href(serial: &str) -> String {
    format!("/ui/autopilot/devices/{}", enc(serial))
}

/// A registered device's page with its edit form; `refused` (values and the service's error)
/// after a refused edit.
async fn device_page(
    ctx: &Ctx,
    serial: &str,
    refused: Option<DeviceValues>,
    error: Option<String>,
    status: StatusCode,
) -> Resp {
    let nav = ctx.nav("autopilot");
    let d = match svc::get_device(&ctx.app, serial).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(nav), "/ui/autopilot"),
    };
    let v = refused.unwrap_or_else(|| DeviceValues {
        user: d.assigned_user.clone().unwrap_or_default(),
        user_friendly_name: d.user_friendly_name.clone().unwrap_or_default(),
        device_name: d.device_name.clone().unwrap_or_default(),
        group_tag: d.group_tag.clone().unwrap_or_default(),
        ..DeviceValues::default()
    });
    html(
        status,
        &DevicePage {
            admin: nav.admin,
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            notice: notice(ctx.query.get("notice")),
            href: device_href(&d.serial),
            linked: d
                .linked_device_id
                .as_ref()
                .map(|id| (format!("/ui/devices/{}", enc(id)), id.clone())),
            serial: d.serial,
            group_tag_max: crate::autopilot::csv::MAX_GROUP_TAG,
            friendly_max: crate::autopilot::devices::MAX_FRIENDLY_NAME,
            error,
            v,
        },
    )
}

async fn save_device(ctx: &Ctx, serial: &str) -> Resp {
    let f = &ctx.form;
    let s = |k: &str| f.get(k).unwrap_or("").trim().to_string();
    let mut v = DeviceValues {
        user: s("user"),
        user_friendly_name: s("user_friendly_name"),
        device_name: s("device_name"),
        group_tag: s("group_tag"),
        ..DeviceValues::default()
    };
    // Every field is sent as shown (blank: none); the service applies the seed's rules.
    let some = |x: &str| Some(Some(x.to_string()).filter(|x| !x.is_empty()));
    let patch = crate::autopilot::devices::DevicePatch {
        user: some(&v.user),
        user_friendly_name: some(&v.user_friendly_name),
        device_name: some(&v.device_name),
        group_tag: some(&v.group_tag),
        linked_device_id: None,
    };
    match svc::patch_device(&ctx.app, &ctx.s.actor, serial, patch).await {
        Ok(_) => redirect(&format!("{}?notice=updated", device_href(serial))),
        Err(ServiceError::Invalid { field, reason }) => {
            let msg = format!("Not saved: {reason}");
            v.field = field;
            v.reason = reason;
            device_page(ctx, serial, Some(v), Some(msg), StatusCode::BAD_REQUEST).await
        }
        Err(e @ (ServiceError::BadRequest { .. } | ServiceError::Refused { .. })) => {
            let msg = format!("Not saved: {e}");
            device_page(ctx, serial, Some(v), Some(msg), StatusCode::BAD_REQUEST).await
        }
        Err(e) => error_page(&e, Some(ctx.nav("autopilot")), &device_href(serial)),
    }
}

async fn confirm_device_delete(ctx: &Ctx, serial: &str) -> Resp {
    let nav = match may_confirm(
        ctx,
        "autopilot",
        &format!("DELETE /api/v1/autopilot/devices/{serial}"),
        &device_href(serial),
    ) {
        Ok(nav) => nav,
        Err(page) => return *page,
    };
    let d = match svc::get_device(&ctx.app, serial).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(nav), "/ui/autopilot"),
    };
    confirm_page(
        nav,
        Confirm {
            label: format!("Delete Autopilot device {}", d.serial),
            question: format!(
                "Delete the Autopilot registration of serial {} (user {}, group tag {})? The device no longer gets an Autopilot profile.",
                d.serial,
                d.assigned_user.as_deref().unwrap_or("none"),
                d.group_tag.as_deref().unwrap_or("none")
            ),
            action: format!("{}/delete", device_href(&d.serial)),
            key: "delete".into(),
            danger: true,
            back: device_href(&d.serial),
        },
    )
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
            edit_href: format!("/ui/autopilot/profiles/{}/edit", enc(&p.id)),
        })
        .collect();
    let devices = page
        .items
        .iter()
        .map(|d| DeviceRow {
            serial: d.serial.clone(),
            edit_href: device_href(&d.serial),
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
