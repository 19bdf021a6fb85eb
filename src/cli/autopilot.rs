//! `winmdm autopilot profile|device|settings …`: the Autopilot admin API from the command line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Map, Value};

use super::http::Client;
use super::{call, enc, items, pages, pages_json, raw, str_of, table, time_of, w, Failure, OnOff};

/// How long an import may take (a 10,000-row file is ~40 MB).
pub const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);

/// `winmdm autopilot …`.
#[derive(Subcommand, Debug, Clone)]
pub enum AutopilotCmd {
    /// Deployment profiles.
    Profile {
        /// What to do.
        #[command(subcommand)]
        cmd: ProfileCmd,
    },
    /// Registered Autopilot devices (hardware hashes).
    Device {
        /// What to do.
        #[command(subcommand)]
        cmd: ApDeviceCmd,
    },
    /// Show the global settings, or change them.
    Settings {
        /// Queue TenantLockdown RequireNetworkInOOBE=true for devices enrolled through Autopilot.
        #[arg(long)]
        tenant_lockdown: Option<OnOff>,
    },
}

/// `windows-pc` or `hololens`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum DeviceTypeArg {
    /// Windows 10/11 PCs.
    WindowsPc,
    /// HoloLens 2.
    Hololens,
}

/// `self-deploying` or `user-driven`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ModeArg {
    /// No user interaction.
    SelfDeploying,
    /// The user signs in during OOBE.
    UserDriven,
}

/// `administrator` or `standard`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum AccountArg {
    /// Local administrator.
    Administrator,
    /// Standard user.
    Standard,
}

/// `show` or `hide`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum VisibilityArg {
    /// Shown.
    Show,
    /// Hidden.
    Hide,
}

fn kebab<T: ValueEnum>(v: T) -> Value {
    v.to_possible_value()
        .map(|p| Value::String(p.get_name().to_string()))
        .unwrap_or(Value::Null)
}

/// `winmdm autopilot profile …`.
#[derive(Subcommand, Debug, Clone)]
pub enum ProfileCmd {
    /// Create a profile (the server checks the rules between settings).
    Add {
        /// Unique name.
        name: String,
        /// Device type.
        #[arg(long, value_enum)]
        device_type: DeviceTypeArg,
        /// Deployment mode (HoloLens: self-deploying).
        #[arg(long, value_enum)]
        mode: ModeArg,
        /// Allow pre-provisioning (user-driven only).
        #[arg(long)]
        pre_provisioning: bool,
        /// User account type (default standard).
        #[arg(long, value_enum)]
        account: Option<AccountArg>,
        /// Language (locale tag such as fr-FR; default: the OS language).
        #[arg(long)]
        language: Option<String>,
        /// Configure the keyboard automatically (needs --language).
        #[arg(long)]
        auto_keyboard: bool,
        /// Device name template (%SERIAL%, %RAND:n%; at most 15 characters).
        #[arg(long)]
        name_template: Option<String>,
        /// Convert all targeted devices to Autopilot.
        #[arg(long)]
        convert_all: bool,
        /// Microsoft Software License Terms page (user-driven only).
        #[arg(long, value_enum)]
        license_terms: Option<VisibilityArg>,
        /// Privacy settings page (user-driven only).
        #[arg(long, value_enum)]
        privacy_settings: Option<VisibilityArg>,
        /// Change-account options (user-driven, standard account only).
        #[arg(long, value_enum)]
        change_account_options: Option<VisibilityArg>,
        /// TenantLockdown for this profile's devices (default: the global setting).
        #[arg(long, value_enum)]
        tenant_lockdown: Option<OnOff>,
        /// Assign to this device group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Assign to all groups (one profile at most).
        #[arg(long)]
        all_groups: bool,
    },
    /// List profiles.
    List,
    /// Show one profile (by id or name).
    Show {
        /// Id or name.
        profile: String,
    },
    /// Delete a profile (by id or name).
    #[command(alias = "delete")]
    Rm {
        /// Id or name.
        profile: String,
    },
    /// Write the profile's AutopilotConfigurationFile.json (standard output, or --output).
    Export {
        /// Id or name.
        profile: String,
        /// File to write (e.g. AutopilotConfigurationFile.json).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// `winmdm autopilot device …`.
#[derive(Subcommand, Debug, Clone)]
pub enum ApDeviceCmd {
    /// Import the CSV written by Get-WindowsAutoPilotInfo (UTF-8 or UTF-16).
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// List registered devices.
    List {
        /// Serial number prefix.
        #[arg(long)]
        serial: Option<String>,
        /// Group tag.
        #[arg(long)]
        group_tag: Option<String>,
        /// Assigned user.
        #[arg(long)]
        user: Option<String>,
        /// Only linked (true) or unlinked (false) devices.
        #[arg(long)]
        linked: Option<bool>,
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
    /// Edit a device (an empty value unsets; the device name cannot be unset once set).
    Set {
        /// Serial number.
        serial: String,
        /// Assigned user (UPN).
        #[arg(long)]
        user: Option<String>,
        /// User-friendly name (needs a user).
        #[arg(long)]
        friendly_name: Option<String>,
        /// Computer name.
        #[arg(long)]
        device_name: Option<String>,
        /// Group tag.
        #[arg(long)]
        group_tag: Option<String>,
    },
    /// Delete a registered device.
    #[command(alias = "delete")]
    Rm {
        /// Serial number.
        serial: String,
    },
}

/// Runs one `autopilot` subcommand.
pub(super) async fn run(
    c: &Client,
    json_out: bool,
    cmd: AutopilotCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        AutopilotCmd::Profile { cmd } => profile(c, json_out, cmd, out).await,
        AutopilotCmd::Device { cmd } => device(c, json_out, cmd, out).await,
        AutopilotCmd::Settings { tenant_lockdown } => {
            let (body, v) = match tenant_lockdown {
                Some(s) => {
                    let on = s == OnOff::On;
                    call(
                        c,
                        "PUT",
                        "/api/v1/autopilot/settings",
                        Some(json!({ "tenant_lockdown": on })),
                    )
                    .await?
                }
                None => call(c, "GET", "/api/v1/autopilot/settings", None).await?,
            };
            if json_out {
                return raw(out, &body);
            }
            let mut line = format!("tenant_lockdown: {}", str_of(&v["tenant_lockdown"]));
            if let Some(n) = v["queued"].as_u64() {
                line.push_str(&format!(" (queued for {n} linked devices)"));
            }
            w(out, &format!("{line}\n"))
        }
    }
}

fn profile_row(p: &Value) -> Vec<String> {
    let assigned = if p["all_groups"] == true {
        "all groups".to_string()
    } else {
        str_of(&p["groups"])
    };
    vec![
        str_of(&p["id"]),
        str_of(&p["name"]),
        str_of(&p["device_type"]),
        str_of(&p["deployment_mode"]),
        assigned,
    ]
}

const PROFILE_HEADERS: [&str; 5] = ["ID", "NAME", "TYPE", "MODE", "ASSIGNED"];

async fn profile(
    c: &Client,
    json_out: bool,
    cmd: ProfileCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        ProfileCmd::Add {
            name,
            device_type,
            mode,
            pre_provisioning,
            account,
            language,
            auto_keyboard,
            name_template,
            convert_all,
            license_terms,
            privacy_settings,
            change_account_options,
            tenant_lockdown,
            groups,
            all_groups,
        } => {
            let mut b = Map::new();
            b.insert("name".into(), name.into());
            b.insert("device_type".into(), kebab(device_type));
            b.insert("deployment_mode".into(), kebab(mode));
            b.insert("allow_pre_provisioning".into(), pre_provisioning.into());
            b.insert("auto_configure_keyboard".into(), auto_keyboard.into());
            b.insert("convert_all_targeted".into(), convert_all.into());
            b.insert("groups".into(), groups.into());
            b.insert("all_groups".into(), all_groups.into());
            if let Some(a) = account {
                b.insert("user_account_type".into(), kebab(a));
            }
            if let Some(l) = language {
                b.insert("language".into(), l.into());
            }
            if let Some(t) = name_template {
                b.insert("device_name_template".into(), t.into());
            }
            for (k, v) in [
                ("license_terms", license_terms),
                ("privacy_settings", privacy_settings),
                ("change_account_options", change_account_options),
            ] {
                if let Some(v) = v {
                    b.insert(k.into(), kebab(v));
                }
            }
            if let Some(t) = tenant_lockdown {
                b.insert("tenant_lockdown".into(), (t == OnOff::On).into());
            }
            let (body, v) = call(
                c,
                "POST",
                "/api/v1/autopilot/profiles",
                Some(Value::Object(b)),
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(
                out,
                &format!(
                    "created Autopilot profile {} ({})\n",
                    str_of(&v["name"]),
                    str_of(&v["id"])
                ),
            )
        }
        ProfileCmd::List => {
            let (body, v) = call(c, "GET", "/api/v1/autopilot/profiles", None).await?;
            if json_out {
                return raw(out, &body);
            }
            let rows = items(&v["profiles"]).map(profile_row).collect();
            w(out, &table(&PROFILE_HEADERS, rows))
        }
        ProfileCmd::Show { profile } => {
            let path = format!("/api/v1/autopilot/profiles/{}", enc(&profile));
            let (body, v) = call(c, "GET", &path, None).await?;
            if json_out {
                return raw(out, &body);
            }
            let rows = v
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, x)| {
                            let val = if k.ends_with("_at") {
                                time_of(x)
                            } else {
                                str_of(x)
                            };
                            vec![k.clone(), val]
                        })
                        .collect()
                })
                .unwrap_or_default();
            w(out, &table(&["SETTING", "VALUE"], rows))
        }
        ProfileCmd::Rm { profile } => {
            let path = format!("/api/v1/autopilot/profiles/{}", enc(&profile));
            let (body, _) = call(c, "DELETE", &path, None).await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("deleted Autopilot profile {profile}\n"))
        }
        ProfileCmd::Export { profile, output } => {
            let path = format!("/api/v1/autopilot/profiles/{}/export", enc(&profile));
            let (body, _) = call(c, "GET", &path, None).await?;
            match output {
                Some(p) => {
                    crate::fsio::write_atomic(&p, &body, 0o666)
                        .map_err(|e| Failure::Local(format!("writing {}: {e}", p.display())))?;
                    w(out, &format!("wrote {}\n", p.display()))
                }
                None => w(out, &String::from_utf8_lossy(&body)),
            }
        }
    }
}

async fn device(
    c: &Client,
    json_out: bool,
    cmd: ApDeviceCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        ApDeviceCmd::Import { file } => {
            let bytes = std::fs::read(&file)
                .map_err(|e| Failure::Local(format!("reading {}: {e}", file.display())))?;
            let r = c
                .request_bytes(
                    "POST",
                    "/api/v1/autopilot/devices",
                    Some(("text/csv", bytes)),
                    IMPORT_TIMEOUT,
                )
                .await?;
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            if !(200..300).contains(&r.status) {
                return Err(Failure::Api {
                    status: r.status,
                    message: v["error"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned()),
                });
            }
            if json_out {
                return raw(out, &r.body);
            }
            w(
                out,
                &format!("imported {} Autopilot devices\n", str_of(&v["imported"])),
            )?;
            let errors: Vec<Vec<String>> = items(&v["errors"])
                .map(|e| vec![str_of(&e["row"]), str_of(&e["error"])])
                .collect();
            if !errors.is_empty() {
                w(out, &format!("{} rows refused:\n", errors.len()))?;
                w(out, &table(&["ROW", "ERROR"], errors))?;
            }
            Ok(())
        }
        ApDeviceCmd::List {
            serial,
            group_tag,
            user,
            linked,
            limit,
            cursor,
            all,
        } => {
            let mut q = Vec::new();
            for (k, v) in [("serial", serial), ("group_tag", group_tag), ("user", user)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            }
            if let Some(l) = linked {
                q.push(format!("linked={l}"));
            }
            let base = if q.is_empty() {
                "/api/v1/autopilot/devices".to_string()
            } else {
                format!("/api/v1/autopilot/devices?{}", q.join("&"))
            };
            let (devices, body, n) = pages(c, &base, "devices", limit, cursor, all).await?;
            if json_out {
                return pages_json(out, "devices", &devices, &body, n);
            }
            let rows = devices
                .iter()
                .map(|d| {
                    vec![
                        str_of(&d["serial"]),
                        str_of(&d["group_tag"]),
                        str_of(&d["assigned_user"]),
                        str_of(&d["device_name"]),
                        str_of(&d["linked_device_id"]),
                    ]
                })
                .collect();
            w(
                out,
                &table(
                    &["SERIAL", "GROUP TAG", "USER", "NAME", "LINKED DEVICE"],
                    rows,
                ),
            )?;
            let next = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["next"].as_str().map(str::to_string));
            if let (Some(n), false) = (next, all) {
                w(out, &format!("more devices: --cursor {n} (or --all)\n"))?;
            }
            Ok(())
        }
        ApDeviceCmd::Set {
            serial,
            user,
            friendly_name,
            device_name,
            group_tag,
        } => {
            let mut b = Map::new();
            for (k, v) in [
                ("user", user),
                ("user_friendly_name", friendly_name),
                ("device_name", device_name),
                ("group_tag", group_tag),
            ] {
                if let Some(v) = v {
                    b.insert(k.into(), if v.is_empty() { Value::Null } else { v.into() });
                }
            }
            if b.is_empty() {
                return Err(Failure::Local(
                    "give at least one of --user, --friendly-name, --device-name, --group-tag"
                        .into(),
                ));
            }
            let path = format!("/api/v1/autopilot/devices/{}", enc(&serial));
            let (body, _) = call(c, "PATCH", &path, Some(Value::Object(b))).await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("updated Autopilot device {serial}\n"))
        }
        ApDeviceCmd::Rm { serial } => {
            let path = format!("/api/v1/autopilot/devices/{}", enc(&serial));
            let (body, _) = call(c, "DELETE", &path, None).await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("deleted Autopilot device {serial}\n"))
        }
    }
}
