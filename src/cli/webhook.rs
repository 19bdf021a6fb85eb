//! `winmdm webhook status|dead-letters|show|redeliver|delete`: the results webhook's state and
//! its dead letters from the command line.

use std::io::Write;

use clap::Subcommand;
use serde_json::Value;

use super::http::Client;
use super::{call, enc, pages, pages_json, raw, str_of, table, time_of, w, Failure};

/// `winmdm webhook …`.
#[derive(Subcommand, Debug, Clone)]
pub enum WebhookCmd {
    /// The receiver, pending events, dead letters and this node's delivery counts.
    Status,
    /// List the dead letters (events given up on), oldest first.
    DeadLetters {
        /// Page size (1-1000).
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this cursor (the `next` of a previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow `next` cursors to the end.
        #[arg(long)]
        all: bool,
    },
    /// Show one dead letter with the body it was sent with.
    Show {
        /// The event id.
        event_id: String,
    },
    /// Queue a dead letter again (at the end of its device's outbox, same event id).
    Redeliver {
        /// The event id.
        event_id: String,
    },
    /// Delete a dead letter.
    Delete {
        /// The event id.
        event_id: String,
    },
}

pub(super) async fn run(
    c: &Client,
    json_out: bool,
    cmd: WebhookCmd,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        WebhookCmd::Status => {
            let (body, v) = call(c, "GET", "/api/v1/webhook", None).await?;
            if json_out {
                return raw(out, &body);
            }
            let rows = [
                "configured",
                "url",
                "pending",
                "dead_letters",
                "delivered",
                "failed",
                "dead_lettered",
            ]
            .iter()
            .map(|k| vec![k.to_string(), str_of(&v[*k])])
            .collect();
            w(out, &table(&["FIELD", "VALUE"], rows))
        }
        WebhookCmd::DeadLetters { limit, cursor, all } => {
            let (found, body, n) = pages(
                c,
                "/api/v1/webhook/dead-letters",
                "dead_letters",
                limit,
                cursor,
                all,
            )
            .await?;
            if json_out {
                return pages_json(out, "dead_letters", &found, &body, n);
            }
            let next = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["next"].as_str().map(str::to_string));
            let rows = found
                .iter()
                .map(|e| {
                    vec![
                        str_of(&e["event_id"]),
                        str_of(&e["type"]),
                        str_of(&e["device_id"]),
                        time_of(&e["created_at"]),
                        str_of(&e["attempts"]),
                        str_of(&e["dead_reason"]),
                    ]
                })
                .collect();
            w(
                out,
                &table(
                    &[
                        "EVENT ID", "TYPE", "DEVICE", "CREATED", "ATTEMPTS", "REASON",
                    ],
                    rows,
                ),
            )?;
            if let (Some(n), false) = (next, all) {
                w(
                    out,
                    &format!("more dead letters: --cursor {n} (or --all)\n"),
                )?;
            }
            Ok(())
        }
        WebhookCmd::Show { event_id } => {
            let path = format!("/api/v1/webhook/dead-letters/{}", enc(&event_id));
            let (body, _) = call(c, "GET", &path, None).await?;
            raw(out, &body)
        }
        WebhookCmd::Redeliver { event_id } => {
            let path = format!("/api/v1/webhook/dead-letters/{}/redeliver", enc(&event_id));
            let (body, v) = call(c, "POST", &path, None).await?;
            if json_out {
                return raw(out, &body);
            }
            w(
                out,
                &format!(
                    "queued again: {} ({}, device {})\n",
                    str_of(&v["event_id"]),
                    str_of(&v["type"]),
                    str_of(&v["device_id"])
                ),
            )
        }
        WebhookCmd::Delete { event_id } => {
            let path = format!("/api/v1/webhook/dead-letters/{}", enc(&event_id));
            call(c, "DELETE", &path, None).await?;
            if json_out {
                return Ok(());
            }
            w(out, &format!("deleted: {event_id}\n"))
        }
    }
}
