//! `winmdm tenant connect|status|disconnect|sync|group|profiles|assign`: the Microsoft tenant
//! (Graph) integration from the command line, over the admin API (`/api/v1/tenant`).

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::http::Client;
use super::{call, enc, raw, str_of, table, time_of, w, Failure};

/// `winmdm tenant …`.
#[derive(Subcommand, Debug, Clone)]
pub enum TenantCmd {
    /// Connect a Microsoft Entra tenant (validated by a token and the organization).
    Connect {
        /// Entra tenant id (GUID).
        #[arg(long)]
        tenant_id: String,
        /// Application (client) id of the app registration (GUID).
        #[arg(long)]
        client_id: String,
        /// PEM certificate uploaded to the app registration (preferred).
        #[arg(long, requires = "key", conflicts_with = "client_secret_file")]
        certificate: Option<PathBuf>,
        /// PEM RSA private key of the certificate.
        #[arg(long, requires = "certificate")]
        key: Option<PathBuf>,
        /// File holding a client secret (or set WINMDM_TENANT_CLIENT_SECRET).
        #[arg(long)]
        client_secret_file: Option<PathBuf>,
    },
    /// The connection's state: ids, credential, last sync, last error, pending changes.
    Status,
    /// Disconnect (the stored credential is removed; nothing is deleted in the tenant).
    Disconnect,
    /// Run a sync pass now: push pending changes, follow imports, pull the tenant's devices.
    Sync {
        /// Only show what the pass would change (nothing is written on either side).
        #[arg(long)]
        dry_run: bool,
    },
    /// Entra device groups created from winmdm.
    Group {
        /// What to do.
        #[command(subcommand)]
        cmd: GroupCmd,
    },
    /// The Autopilot profiles' state in the tenant.
    Profiles,
    /// Assign an Autopilot profile to an Entra group (the profile is created in the tenant
    /// first if needed).
    Assign {
        /// Profile id or name.
        profile: String,
        /// Entra group object id, or `all-devices`.
        #[arg(long)]
        group: String,
    },
}

/// `winmdm tenant group …`.
#[derive(Subcommand, Debug, Clone)]
pub enum GroupCmd {
    /// Create a security group in the tenant.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Dynamic: Autopilot devices with this group tag ([OrderID]:<tag>).
        #[arg(long, group = "membership")]
        group_tag: Option<String>,
        /// Dynamic: the Autopilot device with this ZTDId.
        #[arg(long, group = "membership")]
        ztd_id: Option<String>,
        /// Dynamic: every Autopilot device.
        #[arg(long, group = "membership")]
        all_autopilot: bool,
        /// Static: a device (serial number) registered in the tenant; repeat for more.
        #[arg(long = "device", group = "membership")]
        devices: Vec<String>,
    },
    /// Add devices (serial numbers registered in the tenant) to a static group winmdm created.
    AddDevices {
        /// Entra group object id.
        group_id: String,
        /// A serial number; repeat for more.
        #[arg(long = "device", required = true)]
        devices: Vec<String>,
    },
    /// List the groups winmdm created.
    List,
    /// Delete a group winmdm created.
    Delete {
        /// Entra group object id.
        group_id: String,
    },
}

fn read(path: &PathBuf, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Local(format!("reading {what} {}: {e}", path.display())))
}

fn status_rows(v: &Value) -> String {
    let err = match &v["last_error"] {
        Value::Null => String::new(),
        e => format!("{} ({})", str_of(&e["message"]), time_of(&e["at"])),
    };
    let rows = vec![
        vec!["state".into(), str_of(&v["state"])],
        vec!["tenant_id".into(), str_of(&v["tenant_id"])],
        vec!["organization".into(), str_of(&v["organization"])],
        vec!["client_id".into(), str_of(&v["client_id"])],
        vec!["credential".into(), str_of(&v["credential"]["kind"])],
        vec!["thumbprint".into(), str_of(&v["credential"]["thumbprint"])],
        vec!["connected_at".into(), time_of(&v["connected_at"])],
        vec!["last_sync".into(), time_of(&v["last_sync"])],
        vec!["last_pull".into(), time_of(&v["last_pull"])],
        vec!["last_error".into(), err],
        vec!["pending_devices".into(), str_of(&v["pending_devices"])],
        vec!["import_errors".into(), str_of(&v["import_errors"])],
        vec!["pending_profiles".into(), str_of(&v["pending_profiles"])],
        vec!["graph_url".into(), str_of(&v["graph_url"])],
    ];
    table(&["FIELD", "VALUE"], rows)
}

pub(super) async fn run(
    c: &Client,
    json_out: bool,
    cmd: TenantCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        TenantCmd::Connect {
            tenant_id,
            client_id,
            certificate,
            key,
            client_secret_file,
        } => {
            let mut body = json!({ "tenant_id": tenant_id, "client_id": client_id });
            match (certificate, key, client_secret_file) {
                (Some(cert), Some(key), None) => {
                    body["certificate_pem"] = read(&cert, "certificate")?.into();
                    body["private_key_pem"] = read(&key, "private key")?.into();
                }
                (None, None, Some(f)) => {
                    body["client_secret"] = read(&f, "client secret")?.trim().into();
                }
                (None, None, None) => match std::env::var("WINMDM_TENANT_CLIENT_SECRET") {
                    Ok(s) if !s.trim().is_empty() => body["client_secret"] = s.trim().into(),
                    _ => {
                        return Err(Failure::Local(
                            "give --certificate and --key, or --client-secret-file, or set WINMDM_TENANT_CLIENT_SECRET".into(),
                        ))
                    }
                },
                _ => {
                    return Err(Failure::Local(
                        "give --certificate with --key, or a client secret, not both".into(),
                    ))
                }
            }
            let (b, v) = call(c, "PUT", "/api/v1/tenant", Some(body)).await?;
            if json_out {
                return raw(out, &b);
            }
            w(out, &status_rows(&v))
        }
        TenantCmd::Status => {
            let (b, v) = call(c, "GET", "/api/v1/tenant", None).await?;
            if json_out {
                return raw(out, &b);
            }
            w(out, &status_rows(&v))
        }
        TenantCmd::Disconnect => {
            call(c, "DELETE", "/api/v1/tenant", None).await?;
            if json_out {
                return Ok(());
            }
            w(
                out,
                "tenant disconnected (its credential removed from this server)\n",
            )
        }
        TenantCmd::Sync { dry_run } => {
            let path = format!("/api/v1/tenant/sync?dry_run={dry_run}");
            let (b, v) = call(c, "POST", &path, None).await?;
            if json_out {
                raw(out, &b)?;
            } else {
                let rows = v["changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|ch| {
                        vec![
                            str_of(&ch["action"]),
                            str_of(&ch["target"]),
                            ch["detail"].to_string(),
                        ]
                    })
                    .collect();
                w(out, &table(&["ACTION", "TARGET", "DETAIL"], rows))?;
                for f in v["failures"].as_array().into_iter().flatten() {
                    w(
                        out,
                        &format!(
                            "failed: {} {}: {}\n",
                            str_of(&f["action"]),
                            str_of(&f["target"]),
                            str_of(&f["detail"]["error"])
                        ),
                    )?;
                }
                w(
                    out,
                    &format!(
                        "{} change(s){}\n",
                        v["changes"].as_array().map_or(0, Vec::len),
                        if dry_run {
                            " would be made (dry run: nothing written)"
                        } else {
                            ""
                        }
                    ),
                )?;
            }
            match v["error"].as_str() {
                Some(e) => Err(Failure::Api {
                    status: 200,
                    message: format!(
                        "the sync pass stopped: {e} (pending changes are kept and retried)"
                    ),
                }),
                None => Ok(()),
            }
        }
        TenantCmd::Group { cmd } => match cmd {
            GroupCmd::Create {
                name,
                description,
                group_tag,
                ztd_id,
                all_autopilot,
                devices,
            } => {
                let mut body = json!({ "name": name });
                if let Some(d) = description {
                    body["description"] = d.into();
                }
                if let Some(t) = group_tag {
                    body["group_tag"] = t.into();
                }
                if let Some(z) = ztd_id {
                    body["ztd_id"] = z.into();
                }
                if all_autopilot {
                    body["all_autopilot"] = true.into();
                }
                if !devices.is_empty() {
                    body["devices"] = json!(devices);
                }
                let (b, v) = call(c, "POST", "/api/v1/tenant/groups", Some(body)).await?;
                if json_out {
                    return raw(out, &b);
                }
                w(
                    out,
                    &format!(
                        "created Entra group {} ({}): {}\n",
                        str_of(&v["id"]),
                        str_of(&v["kind"]),
                        str_of(&v["membership_rule"])
                    ),
                )
            }
            GroupCmd::AddDevices { group_id, devices } => {
                let path = format!("/api/v1/tenant/groups/{}/members", enc(&group_id));
                let (b, v) = call(c, "POST", &path, Some(json!({ "devices": devices }))).await?;
                if json_out {
                    return raw(out, &b);
                }
                let all: Vec<String> = v["devices"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(str_of)
                    .collect();
                w(
                    out,
                    &format!("Entra group {group_id} now holds: {}\n", all.join(", ")),
                )
            }
            GroupCmd::List => {
                let (b, v) = call(c, "GET", "/api/v1/tenant/groups", None).await?;
                if json_out {
                    return raw(out, &b);
                }
                let rows = v["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|g| {
                        vec![
                            str_of(&g["id"]),
                            str_of(&g["display_name"]),
                            str_of(&g["kind"]),
                            str_of(&g["membership_rule"]),
                        ]
                    })
                    .collect();
                w(out, &table(&["ID", "NAME", "KIND", "RULE"], rows))
            }
            GroupCmd::Delete { group_id } => {
                let path = format!("/api/v1/tenant/groups/{}", enc(&group_id));
                call(c, "DELETE", &path, None).await?;
                if json_out {
                    return Ok(());
                }
                w(out, &format!("deleted Entra group {group_id}\n"))
            }
        },
        TenantCmd::Profiles => {
            let (b, v) = call(c, "GET", "/api/v1/tenant/profiles", None).await?;
            if json_out {
                return raw(out, &b);
            }
            let rows = v["profiles"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let groups: Vec<String> = p["assignments"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| str_of(&a["group_id"]))
                        .collect();
                    vec![
                        str_of(&p["name"]),
                        str_of(&p["graph_id"]),
                        if p["push"] == true || p["delete"] == true {
                            "yes"
                        } else {
                            "no"
                        }
                        .into(),
                        groups.join(","),
                        str_of(&p["last_error"]),
                    ]
                })
                .collect();
            w(
                out,
                &table(&["PROFILE", "GRAPH ID", "PENDING", "GROUPS", "ERROR"], rows),
            )
        }
        TenantCmd::Assign { profile, group } => {
            let path = format!("/api/v1/tenant/profiles/{}/assignments", enc(&profile));
            let (b, v) = call(c, "POST", &path, Some(json!({ "group_id": group }))).await?;
            if json_out {
                return raw(out, &b);
            }
            w(
                out,
                &format!(
                    "profile {} (Graph id {}) assigned to Entra group {group}\n",
                    str_of(&v["name"]),
                    str_of(&v["graph_id"])
                ),
            )
        }
    }
}
