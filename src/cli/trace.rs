//! `winmdm trace start|start-user|stop|stop-user|list|show|export|delete`: device traces from
//! the command line (the admin API's `/api/v1/devices/{id}/trace…` routes).

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::http::Client;
use super::{call, enc, raw, str_of, table, time_of, w, Failure};

/// `winmdm trace …`.
#[derive(Subcommand, Debug, Clone)]
pub enum TraceCmd {
    /// Record a device's next exchanges (secrets redacted).
    Start {
        /// The DeviceID.
        device_id: String,
        /// Recording window in minutes (default 60).
        #[arg(long)]
        minutes: Option<u32>,
        /// OMA-DM sessions to record (default 10).
        #[arg(long)]
        sessions: Option<u32>,
        /// Why (kept with the trace).
        #[arg(long)]
        note: Option<String>,
    },
    /// Trace the next enrollments of a user (each one starts a device trace).
    StartUser {
        /// The user's UPN.
        upn: String,
        /// Enrollments to trace (default 1).
        #[arg(long)]
        enrollments: Option<u32>,
        /// Each trace's window in minutes (default 60).
        #[arg(long)]
        minutes: Option<u32>,
        /// Each trace's OMA-DM sessions (default 10).
        #[arg(long)]
        sessions: Option<u32>,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Trace every member of a device group.
    StartGroup {
        /// The group id.
        group_id: String,
        /// Recording window in minutes (default 60).
        #[arg(long)]
        minutes: Option<u32>,
        /// OMA-DM sessions to record (default 10).
        #[arg(long)]
        sessions: Option<u32>,
    },
    /// Stop recording a device (its trace is kept).
    Stop {
        /// The DeviceID.
        device_id: String,
    },
    /// Stop tracing a user's next enrollments.
    StopUser {
        /// The user's UPN.
        upn: String,
    },
    /// List a device's traces, newest first.
    List {
        /// The DeviceID.
        device_id: String,
    },
    /// Show a trace as a conversation.
    Show {
        /// The DeviceID.
        device_id: String,
        /// The trace id.
        trace_id: String,
    },
    /// Write a trace in the winmdm-trace file format (docs/TRACES.md).
    Export {
        /// The DeviceID.
        device_id: String,
        /// The trace id.
        trace_id: String,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Replay a trace file's device side against a server (this one or any MS-MDE2/OMA-DM
    /// server, at --server, trusting --ca-cert) and compare every answer with the recorded one.
    /// Prints `accepted`, `refused` or `differs` per message; exits 1 unless all are accepted.
    Replay {
        /// The trace file (winmdm-trace NDJSON, or a HAR file).
        file: PathBuf,
        /// Password to put where the trace's credentials were redacted.
        #[arg(long, env = "WINMDM_REPLAY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Enroll as this DeviceID (default: a fresh random one).
        #[arg(long, conflicts_with = "same_device_id")]
        device_id: Option<String>,
        /// Keep the recorded DeviceID.
        #[arg(long)]
        same_device_id: bool,
        /// Queue the commands the recording delivered again (winmdm servers; uses the admin
        /// token), so the live answers can match the recorded ones.
        #[arg(long)]
        requeue: bool,
        /// Device certificate (PEM) for a trace without enrollment.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Its private key (PKCS#8 PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
    },
    /// Delete a trace.
    Delete {
        /// The DeviceID.
        device_id: String,
        /// The trace id.
        trace_id: String,
    },
}

/// `/api/v1/devices/{device}/traces/{trace}`.
fn trace_path(device_id: &str, trace_id: &str) -> String {
    format!(
        "/api/v1/devices/{}/traces/{}",
        enc(device_id),
        enc(trace_id)
    )
}

fn opts(pairs: &[(&str, Option<Value>)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in pairs {
        if let Some(v) = v {
            m.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(m)
}

fn summary_rows(traces: &[Value]) -> Vec<Vec<String>> {
    traces
        .iter()
        .map(|t| {
            vec![
                str_of(&t["id"]),
                time_of(&t["started_at"]),
                str_of(&t["started_by"]),
                format!("{}/{}", str_of(&t["sessions"]), str_of(&t["max_sessions"])),
                str_of(&t["exchanges"]),
                str_of(&t["bytes"]),
                if t["stopped"].is_null() {
                    format!("recording until {}", time_of(&t["until"]))
                } else {
                    format!("stopped: {}", str_of(&t["stopped"]))
                },
            ]
        })
        .collect()
}

const SUMMARY: &[&str] = &[
    "TRACE",
    "STARTED",
    "BY",
    "SESSIONS",
    "EXCHANGES",
    "BYTES",
    "STATE",
];

/// The conversation as text: one block per exchange, our commands with the device's answer.
fn conversation_text(v: &Value) -> String {
    let mut s = String::new();
    for t in v["conversation"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        s.push_str(&format!(
            "#{} {} HTTP {} {} µs{}{}\n",
            str_of(&t["seq"]),
            str_of(&t["endpoint"]),
            str_of(&t["status"]),
            str_of(&t["took_us"]),
            t["session_id"]
                .as_str()
                .map(|x| format!(" session {x}"))
                .unwrap_or_default(),
            if t["correlated"].as_bool() == Some(true) {
                " (matched by client address)"
            } else {
                ""
            }
        ));
        for (side, arrow) in [("device", "  device →"), ("server", "  server ←")] {
            s.push_str(&format!("{arrow} {}\n", str_of(&t[side]["summary"])));
            for c in t[side]["commands"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let targets: Vec<String> = c["targets"]
                    .as_array()
                    .map(|a| a.iter().map(str_of).collect())
                    .unwrap_or_default();
                let mut line = format!(
                    "      {} {}",
                    str_of(&c["verb"]),
                    c["cmd_id"].as_str().unwrap_or("")
                );
                if let Some(r) = c["refers_to"].as_str() {
                    line.push_str(&format!(" ({r})"));
                }
                if !targets.is_empty() {
                    line.push_str(&format!(" {}", targets.join(", ")));
                }
                if let Some(a) = c["answer"].as_object() {
                    line.push_str(&format!(
                        " → {} {}",
                        str_of(&a["code"]),
                        str_of(&a["meaning"])
                    ));
                }
                s.push_str(&line);
                s.push('\n');
            }
            for o in t[side]["objects"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                s.push_str(&format!(
                    "      large object {}: {} bytes in {} chunks\n",
                    str_of(&o["locuri"]),
                    str_of(&o["bytes"]),
                    str_of(&o["chunks"])
                ));
            }
        }
        if let Some(d) = t["delivered"].as_array() {
            let ids: Vec<String> = d.iter().map(str_of).collect();
            s.push_str(&format!("  delivered: {}\n", ids.join(", ")));
        }
    }
    s
}

pub(super) async fn run(
    c: &Client,
    json_out: bool,
    cmd: TraceCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        TraceCmd::Start {
            device_id,
            minutes,
            sessions,
            note,
        } => {
            let body = opts(&[
                ("minutes", minutes.map(|m| json!(m))),
                ("sessions", sessions.map(|m| json!(m))),
                ("note", note.map(|m| json!(m))),
            ]);
            let path = format!("/api/v1/devices/{}/trace", enc(&device_id));
            let (b, v) = call(c, "POST", &path, Some(body)).await?;
            if json_out {
                return raw(out, &b);
            }
            w(
                out,
                &format!(
                    "tracing {device_id}: trace {} until {} or {} sessions\n",
                    str_of(&v["id"]),
                    time_of(&v["until"]),
                    str_of(&v["max_sessions"])
                ),
            )
        }
        TraceCmd::StartUser {
            upn,
            enrollments,
            minutes,
            sessions,
            note,
        } => {
            let body = opts(&[
                ("enrollments", enrollments.map(|m| json!(m))),
                ("minutes", minutes.map(|m| json!(m))),
                ("sessions", sessions.map(|m| json!(m))),
                ("note", note.map(|m| json!(m))),
            ]);
            let path = format!("/api/v1/users/{}/trace", enc(&upn));
            let (b, v) = call(c, "POST", &path, Some(body)).await?;
            if json_out {
                return raw(out, &b);
            }
            w(
                out,
                &format!(
                    "tracing the next {} enrollment(s) of {upn} until {}\n",
                    str_of(&v["enrollments_left"]),
                    time_of(&v["until"])
                ),
            )
        }
        TraceCmd::StartGroup {
            group_id,
            minutes,
            sessions,
        } => {
            let body = opts(&[
                ("minutes", minutes.map(|m| json!(m))),
                ("sessions", sessions.map(|m| json!(m))),
            ]);
            let path = format!("/api/v1/groups/{}/trace", enc(&group_id));
            let (b, v) = call(c, "POST", &path, Some(body)).await?;
            if json_out {
                return raw(out, &b);
            }
            let traces = v["traces"].as_array().cloned().unwrap_or_default();
            w(out, &table(SUMMARY, summary_rows(&traces)))?;
            for s in v["skipped"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                w(out, &format!("skipped {}\n", str_of(s)))?;
            }
            Ok(())
        }
        TraceCmd::Stop { device_id } => {
            let path = format!("/api/v1/devices/{}/trace", enc(&device_id));
            let (b, v) = call(c, "DELETE", &path, None).await?;
            if json_out {
                return raw(out, &b);
            }
            w(
                out,
                &format!(
                    "stopped trace {}: {} exchanges, {} bytes\n",
                    str_of(&v["id"]),
                    str_of(&v["exchanges"]),
                    str_of(&v["bytes"])
                ),
            )
        }
        TraceCmd::StopUser { upn } => {
            let path = format!("/api/v1/users/{}/trace", enc(&upn));
            call(c, "DELETE", &path, None).await?;
            if json_out {
                return Ok(());
            }
            w(out, &format!("no longer tracing enrollments of {upn}\n"))
        }
        TraceCmd::List { device_id } => {
            let path = format!("/api/v1/devices/{}/traces", enc(&device_id));
            let (b, v) = call(c, "GET", &path, None).await?;
            if json_out {
                return raw(out, &b);
            }
            let traces = v["traces"].as_array().cloned().unwrap_or_default();
            w(out, &table(SUMMARY, summary_rows(&traces)))
        }
        TraceCmd::Show {
            device_id,
            trace_id,
        } => {
            let path = trace_path(&device_id, &trace_id);
            let (b, v) = call(c, "GET", &path, None).await?;
            if json_out {
                return raw(out, &b);
            }
            w(out, &table(SUMMARY, summary_rows(&[v["trace"].clone()])))?;
            w(out, &conversation_text(&v))
        }
        TraceCmd::Export {
            device_id,
            trace_id,
            output,
        } => {
            let path = format!("{}/export", trace_path(&device_id, &trace_id));
            let r = c.request("GET", &path, None).await?;
            if !(200..300).contains(&r.status) {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                return Err(Failure::Api {
                    status: r.status,
                    message: v["error"].as_str().unwrap_or("export failed").to_string(),
                });
            }
            match output {
                None => out
                    .write_all(&r.body)
                    .map_err(|e| Failure::Local(format!("writing output: {e}"))),
                Some(p) => {
                    std::fs::write(&p, &r.body)
                        .map_err(|e| Failure::Local(format!("writing {}: {e}", p.display())))?;
                    w(
                        out,
                        &format!("wrote {} ({} bytes)\n", p.display(), r.body.len()),
                    )
                }
            }
        }
        TraceCmd::Replay { .. } => Err(Failure::Local("trace replay is run by run_replay".into())),
        TraceCmd::Delete {
            device_id,
            trace_id,
        } => {
            let path = trace_path(&device_id, &trace_id);
            call(c, "DELETE", &path, None).await?;
            if json_out {
                return Ok(());
            }
            w(out, &format!("deleted trace {trace_id}\n"))
        }
    }
}

/// `winmdm trace replay`: needs no admin token unless `--requeue`.
pub(super) async fn run_replay(
    server: &str,
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    admin_token: Option<String>,
    cmd: TraceCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let TraceCmd::Replay {
        file,
        password,
        device_id,
        same_device_id,
        requeue: _,
        cert,
        key,
    } = cmd
    else {
        return Err(Failure::Local("not a replay".into()));
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Failure::Local(format!("reading {}: {e}", file.display())))?;
    let trace = crate::trace::Trace::parse(&text)
        .map_err(|e| Failure::Local(format!("{}: {e}", file.display())))?;
    let identity = match (cert, key) {
        (Some(c), Some(k)) => {
            use rustls::pki_types::pem::PemObject;
            let cert = rustls::pki_types::CertificateDer::from_pem_file(&c)
                .map_err(|e| Failure::Local(format!("{}: {e}", c.display())))?;
            let key = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(&k)
                .map_err(|e| Failure::Local(format!("{}: {e}", k.display())))?;
            Some((cert.to_vec(), key.secret_pkcs8_der().to_vec()))
        }
        _ => None,
    };
    let opts = crate::trace::replay::Options {
        server: server.to_string(),
        roots,
        password,
        device_id,
        same_device_id,
        admin_token,
        identity,
    };
    let lines = crate::trace::replay::replay(&trace, &opts)
        .await
        .map_err(|e| Failure::Local(e.to_string()))?;
    let mut bad = 0;
    for l in &lines {
        if l.verdict != crate::trace::replay::Verdict::Accepted {
            bad += 1;
        }
        w(out, &format!("{l}\n"))?;
    }
    if bad > 0 {
        return Err(Failure::Local(format!(
            "{bad} of {} messages not accepted",
            lines.len()
        )));
    }
    w(out, &format!("all {} messages accepted\n", lines.len()))
}
