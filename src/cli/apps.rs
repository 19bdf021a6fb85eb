//! `winmdm apps …`: the app catalog, assignments and per-device install state.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::http::Client;
use super::{call, enc, pages, pages_json, raw, str_of, table, w, Failure};

/// Device or user install.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeArg {
    /// Per-device (./Device/...).
    Device,
    /// Per-user (./User/..., once the user signed in).
    User,
}

/// Install or uninstall.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentArg {
    /// Install and keep installed.
    Required,
    /// Uninstall.
    Uninstall,
}

/// `winmdm apps …`.
#[derive(Subcommand, Debug, Clone)]
pub enum AppsCmd {
    /// Upload an MSI (its ProductCode, ProductVersion and name are read from it) or an
    /// MSIX/APPX package or bundle (its identity and family name are read from the manifest).
    Upload {
        /// The .msi, .msix, .appx, .msixbundle or .appxbundle file.
        file: PathBuf,
        /// Display name (default: the MSI's ProductName or the MSIX's DisplayName).
        #[arg(long)]
        name: Option<String>,
        /// msiexec command line (default /quiet).
        #[arg(long)]
        command_line: Option<String>,
        /// Install timeout in minutes (default 10).
        #[arg(long)]
        timeout_minutes: Option<u32>,
        /// Retries (default 3).
        #[arg(long)]
        retry_count: Option<u32>,
        /// Minutes between retries (default 5).
        #[arg(long)]
        retry_interval_minutes: Option<u32>,
    },
    /// Register a package devices download from an external https URL.
    Register {
        /// Display name.
        #[arg(long)]
        name: String,
        /// https URL of the package.
        #[arg(long)]
        url: String,
        /// SHA-256 of the package (hex).
        #[arg(long)]
        sha256: String,
        /// msi (default) or msix.
        #[arg(long, default_value = "msi")]
        kind: String,
        /// MSI ProductCode {GUID}.
        #[arg(long)]
        product_code: Option<String>,
        /// MSI ProductVersion.
        #[arg(long)]
        product_version: Option<String>,
        /// MSIX package family name (or --package-name with --publisher).
        #[arg(long)]
        package_family_name: Option<String>,
        /// MSIX Identity/@Name.
        #[arg(long)]
        package_name: Option<String>,
        /// MSIX Identity/@Publisher (the PublisherId is computed from it).
        #[arg(long)]
        publisher: Option<String>,
    },
    /// Replace an uploaded package by a newer version of the same product or package family (assigned devices upgrade).
    Upgrade {
        /// The app id.
        app_id: String,
        /// The newer .msi or .msix file.
        file: PathBuf,
    },
    /// List apps.
    List {
        /// Page size (1-1000).
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this cursor.
        #[arg(long)]
        cursor: Option<String>,
        /// Follow `next` cursors to the end.
        #[arg(long)]
        all: bool,
    },
    /// Show one app and its assignments.
    Show {
        /// The app id.
        app_id: String,
    },
    /// Delete an app (assigned devices uninstall it).
    Delete {
        /// The app id.
        app_id: String,
    },
    /// Assign an app to a device group.
    Assign {
        /// The app id.
        app_id: String,
        /// The group id.
        group_id: String,
        /// device (default) or user.
        #[arg(long, value_enum, default_value = "device")]
        scope: ScopeArg,
        /// required (default) or uninstall.
        #[arg(long, value_enum, default_value = "required")]
        intent: IntentArg,
    },
    /// Remove an app's assignment to a group (devices leaving uninstall it).
    Unassign {
        /// The app id.
        app_id: String,
        /// The group id.
        group_id: String,
    },
    /// The app's install state on each device.
    Devices {
        /// The app id.
        app_id: String,
        /// Follow `next` cursors to the end.
        #[arg(long)]
        all: bool,
    },
    /// Every app's install state on one device.
    Device {
        /// The DeviceID.
        device_id: String,
    },
}

/// An ESP's settings, as `esp create` and `esp update` take them.
#[derive(clap::Args, Debug, Clone)]
pub struct EspSettings {
    /// Name.
    #[arg(long)]
    name: String,
    /// A blocking app id (repeat for several).
    #[arg(long = "app")]
    apps: Vec<String>,
    /// A blocking configuration profile id (repeat for several): ExpectedPolicies.
    #[arg(long = "profile")]
    profiles: Vec<String>,
    /// TimeOutUntilSyncFailure in minutes (default 60).
    #[arg(long)]
    timeout_minutes: Option<u32>,
    /// Do not block the device (the page shows progress only).
    #[arg(long)]
    no_block: bool,
    /// Let the user continue anyway on failure.
    #[arg(long)]
    allow_continue: bool,
    /// Offer a device reset on failure.
    #[arg(long)]
    allow_reset: bool,
    /// Do not offer a retry on failure (offered by default).
    #[arg(long)]
    no_retry: bool,
    /// Do not offer to collect logs on failure (offered by default).
    #[arg(long)]
    no_collect_logs: bool,
    /// Text shown on failure.
    #[arg(long)]
    custom_error_text: Option<String>,
    /// Skip the device phase page.
    #[arg(long)]
    skip_device_page: bool,
    /// Skip the user phase page.
    #[arg(long)]
    skip_user_page: bool,
    /// Attach to an Autopilot profile (id or name; repeat for several).
    #[arg(long = "autopilot-profile")]
    autopilot_profiles: Vec<String>,
}

impl EspSettings {
    /// The body of `POST /api/v1/esp` and `PUT /api/v1/esp/{id}`.
    fn body(self) -> serde_json::Value {
        // Every setting, so that `esp update` (a replacement) leaves none at a value it did not
        // show.
        let mut b = json!({
            "name": self.name,
            "apps": self.apps,
            "profiles": self.profiles,
            "block": !self.no_block,
            "allow_continue": self.allow_continue,
            "allow_reset": self.allow_reset,
            "allow_retry": !self.no_retry,
            "allow_collect_logs": !self.no_collect_logs,
            "skip_device_page": self.skip_device_page,
            "skip_user_page": self.skip_user_page,
            "autopilot_profiles": self.autopilot_profiles,
        });
        if let Some(t) = self.timeout_minutes {
            b["timeout_minutes"] = json!(t);
        }
        if let Some(t) = self.custom_error_text {
            b["custom_error_text"] = json!(t);
        }
        b
    }
}

/// `winmdm esp …`.
#[derive(Subcommand, Debug, Clone)]
pub enum EspCmd {
    /// Create an Enrollment Status Page configuration.
    Create {
        /// The ESP's settings.
        #[command(flatten)]
        settings: EspSettings,
    },
    /// Replace an ESP's settings with the ones given (the flags of `create`: what is not given
    /// takes its default, as at creation). Its group assignments are kept; a device whose page
    /// has started keeps the apps, profiles and timeout it started with.
    Update {
        /// The ESP id.
        esp_id: String,
        /// The ESP's new settings.
        #[command(flatten)]
        settings: EspSettings,
    },
    /// List ESP configurations.
    List,
    /// Show one ESP and its groups.
    Show {
        /// The ESP id.
        esp_id: String,
    },
    /// Delete an ESP.
    Delete {
        /// The ESP id.
        esp_id: String,
    },
    /// Assign an ESP to a device group.
    Assign {
        /// The ESP id.
        esp_id: String,
        /// The group id.
        group_id: String,
    },
    /// Remove an ESP's assignment to a group.
    Unassign {
        /// The ESP id.
        esp_id: String,
        /// The group id.
        group_id: String,
    },
    /// A device's ESP progress.
    Progress {
        /// The DeviceID.
        device_id: String,
    },
}

/// One line about an ESP the server returned after `what` (created, updated).
fn esp_line(what: &str, v: &serde_json::Value) -> String {
    format!(
        "{what} ESP {} {:?}: {} blocking app(s), {} blocking profile(s), timeout {} min\n",
        str_of(&v["id"]),
        str_of(&v["name"]),
        v["apps"].as_array().map_or(0, Vec::len),
        v["profiles"].as_array().map_or(0, Vec::len),
        str_of(&v["timeout_minutes"])
    )
}

pub(super) async fn esp(
    c: &Client,
    json_out: bool,
    cmd: EspCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        EspCmd::Create { settings } => {
            let (body, v) = call(c, "POST", "/api/v1/esp", Some(settings.body())).await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &esp_line("created", &v))
        }
        EspCmd::Update { esp_id, settings } => {
            let path = format!("/api/v1/esp/{}", enc(&esp_id));
            let (body, v) = call(c, "PUT", &path, Some(settings.body())).await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &esp_line("updated", &v))
        }
        EspCmd::List => {
            let (found, body, _) = pages(c, "/api/v1/esp", "esp", None, None, true).await?;
            if json_out {
                return raw(out, &body);
            }
            let rows = found
                .iter()
                .map(|e| {
                    vec![
                        str_of(&e["id"]),
                        str_of(&e["name"]),
                        e["apps"].as_array().map_or(0, Vec::len).to_string(),
                        e["profiles"].as_array().map_or(0, Vec::len).to_string(),
                        str_of(&e["timeout_minutes"]),
                        str_of(&e["block"]),
                    ]
                })
                .collect();
            w(
                out,
                &table(
                    &["ID", "NAME", "APPS", "PROFILES", "TIMEOUT", "BLOCK"],
                    rows,
                ),
            )
        }
        EspCmd::Show { esp_id } => {
            let (body, _) = call(c, "GET", &format!("/api/v1/esp/{}", enc(&esp_id)), None).await?;
            raw(out, &body)
        }
        EspCmd::Delete { esp_id } => {
            call(c, "DELETE", &format!("/api/v1/esp/{}", enc(&esp_id)), None).await?;
            w(out, &format!("deleted ESP {esp_id}\n"))
        }
        EspCmd::Assign { esp_id, group_id } => {
            let (body, _) = call(
                c,
                "POST",
                &format!("/api/v1/esp/{}/assignments", enc(&esp_id)),
                Some(json!({"group_id": group_id})),
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("assigned ESP {esp_id} to group {group_id}\n"))
        }
        EspCmd::Unassign { esp_id, group_id } => {
            call(
                c,
                "DELETE",
                &format!(
                    "/api/v1/esp/{}/assignments/{}",
                    enc(&esp_id),
                    enc(&group_id)
                ),
                None,
            )
            .await?;
            w(
                out,
                &format!("unassigned ESP {esp_id} from group {group_id}\n"),
            )
        }
        EspCmd::Progress { device_id } => {
            let (body, v) = call(
                c,
                "GET",
                &format!("/api/v1/devices/{}/esp", enc(&device_id)),
                None,
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(
                out,
                &format!(
                    "ESP {} on {device_id}: phase {}, deadline {}\n",
                    str_of(&v["esp_id"]),
                    str_of(&v["phase"]),
                    str_of(&v["deadline"])
                ),
            )?;
            let rows = v["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|i| {
                    vec![
                        str_of(&i["app_id"]),
                        str_of(&i["scope"]),
                        str_of(&i["state"]),
                        str_of(&i["error"]),
                    ]
                })
                .collect();
            w(out, &table(&["APP", "SCOPE", "STATE", "ERROR"], rows))?;
            let policies = v["policies"].as_array().cloned().unwrap_or_default();
            if !policies.is_empty() {
                let rows = policies
                    .iter()
                    .map(|p| {
                        vec![
                            str_of(&p["profile_id"]),
                            str_of(&p["scope"]),
                            str_of(&p["state"]),
                            str_of(&p["error"]),
                        ]
                    })
                    .collect();
                w(out, &table(&["PROFILE", "SCOPE", "STATE", "ERROR"], rows))?;
            }
            for phase in ["device", "user"] {
                if v[phase].is_object() {
                    w(
                        out,
                        &format!(
                            "{phase} phase released: success={} ({})\n",
                            str_of(&v[phase]["success"]),
                            str_of(&v[phase]["reason"])
                        ),
                    )?;
                }
            }
            Ok(())
        }
    }
}

/// Uploads can be large: allow this long for the answer.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

fn read_file(p: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(p).map_err(|e| Failure::Local(format!("reading {}: {e}", p.display())))
}

async fn send_file(
    c: &Client,
    method: &str,
    path: &str,
    data: Vec<u8>,
) -> Result<(Vec<u8>, Value), Failure> {
    let r = c
        .request_bytes(
            method,
            path,
            Some(("application/octet-stream", data)),
            UPLOAD_TIMEOUT,
        )
        .await?;
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if (200..300).contains(&r.status) {
        return Ok((r.body, v));
    }
    let message = v["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string());
    Err(Failure::Api {
        status: r.status,
        message,
    })
}

fn app_line(v: &Value) -> String {
    format!(
        "app {} {:?}: {} {} {} (sha256 {})\n",
        str_of(&v["id"]),
        str_of(&v["name"]),
        str_of(&v["kind"]),
        if v["package_family_name"].is_string() {
            str_of(&v["package_family_name"])
        } else {
            str_of(&v["product_code"])
        },
        str_of(&v["product_version"]),
        str_of(&v["sha256"]),
    )
}

fn state_rows(items: &[Value]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|s| {
            vec![
                str_of(&s["device_id"]),
                str_of(&s["app_id"]),
                str_of(&s["scope"]),
                str_of(&s["intent"]),
                str_of(&s["state"]),
                str_of(&s["version"]),
                match (&s["error_code"], &s["error"]) {
                    (Value::String(c), Value::String(e)) => format!("{c}: {e}"),
                    (_, Value::String(e)) => e.clone(),
                    _ => str_of(&s["reason"]),
                },
            ]
        })
        .collect()
}

const STATE_HEAD: [&str; 7] = [
    "DEVICE", "APP", "SCOPE", "INTENT", "STATE", "VERSION", "DETAIL",
];

pub(super) async fn run(
    c: &Client,
    json_out: bool,
    cmd: AppsCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        AppsCmd::Upload {
            file,
            name,
            command_line,
            timeout_minutes,
            retry_count,
            retry_interval_minutes,
        } => {
            let mut q = Vec::new();
            if let Some(n) = name {
                q.push(format!("name={}", enc(&n)));
            }
            if let Some(n) = command_line {
                q.push(format!("command_line={}", enc(&n)));
            }
            for (k, v) in [
                ("timeout_minutes", timeout_minutes),
                ("retry_count", retry_count),
                ("retry_interval_minutes", retry_interval_minutes),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={v}"));
                }
            }
            let path = if q.is_empty() {
                "/api/v1/apps".to_string()
            } else {
                format!("/api/v1/apps?{}", q.join("&"))
            };
            let (body, v) = send_file(c, "POST", &path, read_file(&file)?).await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("uploaded {}", app_line(&v)))
        }
        AppsCmd::Register {
            name,
            url,
            sha256,
            kind,
            product_code,
            product_version,
            package_family_name,
            package_name,
            publisher,
        } => {
            let mut b = json!({"kind": kind, "name": name, "url": url, "sha256": sha256});
            for (k, v) in [
                ("product_code", product_code),
                ("product_version", product_version),
                ("package_family_name", package_family_name),
                ("package_name", package_name),
                ("publisher", publisher),
            ] {
                if let Some(v) = v {
                    b[k] = Value::String(v);
                }
            }
            let (body, v) = call(c, "POST", "/api/v1/apps", Some(b)).await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("registered {}", app_line(&v)))
        }
        AppsCmd::Upgrade { app_id, file } => {
            let path = format!("/api/v1/apps/{}/content", enc(&app_id));
            let (body, v) = send_file(c, "PUT", &path, read_file(&file)?).await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("upgraded {}", app_line(&v)))
        }
        AppsCmd::List { limit, cursor, all } => {
            let (found, body, n) = pages(c, "/api/v1/apps", "apps", limit, cursor, all).await?;
            if json_out {
                return pages_json(out, "apps", &found, &body, n);
            }
            let rows = found
                .iter()
                .map(|a| {
                    vec![
                        str_of(&a["id"]),
                        str_of(&a["name"]),
                        str_of(&a["kind"]),
                        if a["package_family_name"].is_string() {
                            str_of(&a["package_family_name"])
                        } else {
                            str_of(&a["product_code"])
                        },
                        str_of(&a["product_version"]),
                        str_of(&a["size"]),
                    ]
                })
                .collect();
            w(
                out,
                &table(&["ID", "NAME", "KIND", "PRODUCT", "VERSION", "SIZE"], rows),
            )
        }
        AppsCmd::Show { app_id } => {
            let (body, _) = call(c, "GET", &format!("/api/v1/apps/{}", enc(&app_id)), None).await?;
            raw(out, &body)
        }
        AppsCmd::Delete { app_id } => {
            let (body, v) =
                call(c, "DELETE", &format!("/api/v1/apps/{}", enc(&app_id)), None).await?;
            if json_out {
                return raw(out, &body);
            }
            w(
                out,
                &format!(
                    "deleted app {app_id} ({} reconciliation job(s))\n",
                    v["jobs"].as_array().map_or(0, Vec::len)
                ),
            )
        }
        AppsCmd::Assign {
            app_id,
            group_id,
            scope,
            intent,
        } => {
            let b = json!({
                "group_id": group_id,
                "scope": if scope == ScopeArg::User { "user" } else { "device" },
                "intent": if intent == IntentArg::Uninstall { "uninstall" } else { "required" },
            });
            let (body, v) = call(
                c,
                "POST",
                &format!("/api/v1/apps/{}/assignments", enc(&app_id)),
                Some(b),
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            let queued: u64 = v["jobs"]
                .as_array()
                .map_or(0, |j| j.iter().filter_map(|x| x["queued"].as_u64()).sum());
            w(out, &format!("assigned app {app_id} to group {group_id} ({} {}): {queued} command(s) queued\n", str_of(&v["scope"]), str_of(&v["intent"])))
        }
        AppsCmd::Unassign { app_id, group_id } => {
            let (body, v) = call(
                c,
                "DELETE",
                &format!(
                    "/api/v1/apps/{}/assignments/{}",
                    enc(&app_id),
                    enc(&group_id)
                ),
                None,
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            let queued: u64 = v["jobs"]
                .as_array()
                .map_or(0, |j| j.iter().filter_map(|x| x["queued"].as_u64()).sum());
            w(out, &format!("unassigned app {app_id} from group {group_id}: {queued} uninstall command(s) queued\n"))
        }
        AppsCmd::Devices { app_id, all } => {
            let (found, body, n) = pages(
                c,
                &format!("/api/v1/apps/{}/devices", enc(&app_id)),
                "devices",
                None,
                None,
                all,
            )
            .await?;
            if json_out {
                return pages_json(out, "devices", &found, &body, n);
            }
            w(out, &table(&STATE_HEAD, state_rows(&found)))
        }
        AppsCmd::Device { device_id } => {
            let (body, v) = call(
                c,
                "GET",
                &format!("/api/v1/devices/{}/apps", enc(&device_id)),
                None,
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            let items = v["apps"].as_array().cloned().unwrap_or_default();
            w(out, &table(&STATE_HEAD, state_rows(&items)))
        }
    }
}
