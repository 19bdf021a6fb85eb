//! CLI for access and onboarding: `winmdm token …`, `winmdm invite …`, `winmdm invitation …`,
//! `winmdm bulk …`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::http::Client;
use super::{call, enc, pages, pages_json, raw, str_of, table, time_of, w, Failure};

/// A token's role.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleArg {
    /// Every route.
    Admin,
    /// GET routes only (and GET /metrics).
    ReadOnly,
    /// GET /metrics only (a Prometheus scraper).
    Metrics,
}

/// `winmdm token …`.
#[derive(Subcommand, Debug, Clone)]
pub enum TokenCmd {
    /// Create a named token; its secret is printed once.
    Create {
        /// Name (a-z, 0-9, '-'), recorded as the actor of its audit entries.
        name: String,
        /// Role.
        #[arg(long, value_enum, default_value = "admin")]
        role: RoleArg,
    },
    /// List named tokens (never their secrets).
    List,
    /// Revoke a named token.
    #[command(alias = "rm")]
    Revoke {
        /// Its name.
        name: String,
    },
}

/// `winmdm invitation …`.
#[derive(Subcommand, Debug, Clone)]
pub enum InvitationCmd {
    /// List invitations and their state (every page).
    List,
    /// Revoke an invitation.
    Revoke {
        /// The invitation id.
        id: String,
    },
}

/// `winmdm bulk …`.
#[derive(Subcommand, Debug, Clone)]
pub enum BulkCmd {
    /// Download the Windows Configuration Designer customizations XML (with a new package secret).
    Package {
        /// The windows-bulkenroll… account.
        upn: String,
        /// Write it to this file (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Revoke a package's secret.
    Revoke {
        /// The package id.
        package_id: String,
    },
}

pub(super) async fn token(
    c: &Client,
    json_out: bool,
    cmd: TokenCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        TokenCmd::Create { name, role } => {
            let role = match role {
                RoleArg::Admin => "admin",
                RoleArg::ReadOnly => "read-only",
                RoleArg::Metrics => "metrics",
            };
            let (body, v) = call(
                c,
                "POST",
                "/api/v1/tokens",
                Some(json!({ "name": name, "role": role })),
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(
                out,
                &format!(
                    "created {role} token {}; it is shown only now:\n{}\n",
                    str_of(&v["name"]),
                    str_of(&v["token"])
                ),
            )
        }
        TokenCmd::List => {
            let (tokens, body, n) = pages(c, "/api/v1/tokens", "tokens", None, None, true).await?;
            if json_out {
                return pages_json(out, "tokens", &tokens, &body, n);
            }
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        str_of(&t["name"]),
                        str_of(&t["role"]),
                        time_of(&t["created_at"]),
                        str_of(&t["created_by"]),
                    ]
                })
                .collect();
            w(out, &table(&["NAME", "ROLE", "CREATED", "BY"], rows))
        }
        TokenCmd::Revoke { name } => {
            let (body, _) =
                call(c, "DELETE", &format!("/api/v1/tokens/{}", enc(&name)), None).await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("revoked token {name}\n"))
        }
    }
}

pub(super) async fn invite(
    c: &Client,
    json_out: bool,
    upn: String,
    send: bool,
    expires_in_hours: Option<u32>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut req = json!({ "upn": upn, "send_email": send });
    if let Some(h) = expires_in_hours {
        req["expires_in_hours"] = h.into();
    }
    let (body, v) = call(c, "POST", "/api/v1/invitations", Some(req)).await?;
    if json_out {
        return raw(out, &body);
    }
    let mut s = format!(
        "invitation {} for {} (expires {})\nlanding page: {}\ndeep link:    {}\n",
        str_of(&v["id"]),
        str_of(&v["upn"]),
        time_of(&v["expires_at"]),
        str_of(&v["landing_url"]),
        str_of(&v["deep_link"]),
    );
    if v["sent"] == true {
        s.push_str("e-mail sent\n");
    } else {
        if send {
            s.push_str(&format!("e-mail NOT sent: {}\n", str_of(&v["send_error"])));
        }
        s.push_str("\nmessage to send to the user:\n\n");
        s.push_str(v["message"].as_str().unwrap_or(""));
    }
    w(out, &s)
}

pub(super) async fn invitation(
    c: &Client,
    json_out: bool,
    cmd: InvitationCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        InvitationCmd::List => {
            let (invs, body, n) =
                pages(c, "/api/v1/invitations", "invitations", None, None, true).await?;
            if json_out {
                return pages_json(out, "invitations", &invs, &body, n);
            }
            let rows = invs
                .iter()
                .map(|i| {
                    vec![
                        str_of(&i["id"]),
                        str_of(&i["upn"]),
                        str_of(&i["state"]),
                        time_of(&i["expires_at"]),
                        str_of(&i["sent"]),
                        str_of(&i["used_by_device"]),
                    ]
                })
                .collect();
            w(
                out,
                &table(&["ID", "UPN", "STATE", "EXPIRES", "SENT", "USED_BY"], rows),
            )
        }
        InvitationCmd::Revoke { id } => {
            let (body, _) = call(
                c,
                "DELETE",
                &format!("/api/v1/invitations/{}", enc(&id)),
                None,
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("revoked invitation {id}\n"))
        }
    }
}

pub(super) async fn bulk(
    c: &Client,
    json_out: bool,
    cmd: BulkCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        BulkCmd::Package { upn, out: file } => {
            let (body, _) = call(
                c,
                "GET",
                &format!("/api/v1/bulk-enrollment/package?upn={}", enc(&upn)),
                None,
            )
            .await?;
            match file {
                None => raw(out, &body),
                Some(path) => {
                    write_secret_file(&path, &body)?;
                    w(
                        out,
                        &format!(
                            "wrote {} (it holds an enrollment secret: keep it private)\n",
                            path.display()
                        ),
                    )
                }
            }
        }
        BulkCmd::Revoke { package_id } => {
            let (body, _) = call(
                c,
                "DELETE",
                &format!("/api/v1/bulk-enrollment/packages/{}", enc(&package_id)),
                None,
            )
            .await?;
            if json_out {
                return raw(out, &body);
            }
            w(out, &format!("revoked package {package_id}\n"))
        }
    }
}

/// Writes a file readable by its owner only (it holds a secret), atomically: an existing file
/// is replaced only once the new content is complete and on disk.
fn write_secret_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), Failure> {
    crate::fsio::write_atomic(path, bytes, 0o600)
        .map_err(|e| Failure::Local(format!("writing {}: {e}", path.display())))
}
