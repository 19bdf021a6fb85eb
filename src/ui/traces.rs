//! Console pages of device traces: the device page's "Traces" section (start with a window and
//! a session count, stop, the list), a trace as a conversation, and its export. Admin tokens
//! only (the service refuses others; a read-only session sees no trace section).

use askama::Template;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::form::enc;
use super::{error_page, html, redirect, Ctx, Nav, Time};
use crate::http::body::Resp;
use crate::service::traces::{self as svc, StartTrace};
use crate::service::ServiceError;
use crate::trace::view::{Cmd, Turn};
use crate::trace::TraceMeta;

/// One trace on the device page.
pub(super) struct TraceRow {
    pub href: String,
    pub id: String,
    pub started: Time,
    pub by: String,
    pub sessions: String,
    pub exchanges: u32,
    pub bytes: u64,
    pub state: String,
}

impl TraceRow {
    fn of(device_id: &str, m: &TraceMeta, now: i64) -> TraceRow {
        TraceRow {
            href: format!("/ui/devices/{}/traces/{}", enc(device_id), enc(&m.id)),
            id: m.id.clone(),
            started: Time::at(m.started_at),
            by: m.started_by.clone(),
            sessions: format!("{} of {}", m.sessions, m.max_sessions),
            exchanges: m.exchanges,
            bytes: m.bytes,
            state: match m.stopped {
                None if m.recording(now) => "recording".into(),
                None => "ended".into(),
                Some(s) => format!("stopped ({})", format!("{s:?}").to_lowercase()),
            },
        }
    }
}

/// The device page's trace section: the rows and whether one is recording.
pub(super) async fn section(ctx: &Ctx, device_id: &str) -> (Vec<TraceRow>, bool) {
    match svc::list(&ctx.app, &ctx.s.actor, device_id).await {
        Ok(list) => {
            let now = ctx.app.clock.now_unix();
            let recording = list.iter().any(|m| m.recording(now));
            (
                list.iter()
                    .map(|m| TraceRow::of(device_id, m, now))
                    .collect(),
                recording,
            )
        }
        Err(_) => (Vec::new(), false),
    }
}

/// One line of a side of a turn.
struct Line {
    text: String,
    answer: String,
    failed: bool,
}

fn lines(cmds: &[Cmd], depth: usize, out: &mut Vec<Line>) {
    for c in cmds {
        let mut text = format!("{}{}", "  ".repeat(depth), c.verb);
        if let Some(id) = &c.cmd_id {
            text.push_str(&format!(" {id}"));
        }
        if let Some(r) = &c.refers_to {
            text.push_str(&format!(" ({r})"));
        }
        if !c.targets.is_empty() {
            text.push_str(&format!(" {}", c.targets.join(", ")));
        }
        if let Some(d) = &c.data {
            if c.verb != "Status" {
                text.push_str(&format!(" = {d}"));
            }
        }
        if c.more_data {
            text.push_str(" [MoreData]");
        }
        let (answer, failed) = match &c.answer {
            Some(a) => (
                format!("{} {}", a.code, a.meaning),
                !(200..300).contains(&a.code),
            ),
            None => (String::new(), false),
        };
        out.push(Line {
            text,
            answer,
            failed,
        });
        lines(&c.nested, depth + 1, out);
    }
}

struct TurnView {
    seq: u32,
    at: Time,
    endpoint: &'static str,
    status: u16,
    took: String,
    session: String,
    correlated: bool,
    device_summary: String,
    device: Vec<Line>,
    server_summary: String,
    server: Vec<Line>,
    objects: Vec<String>,
    delivered: String,
}

impl TurnView {
    fn of(t: &Turn) -> TurnView {
        let mut device = Vec::new();
        lines(&t.device.commands, 0, &mut device);
        let mut server = Vec::new();
        lines(&t.server.commands, 0, &mut server);
        TurnView {
            seq: t.seq,
            at: Time::at(t.at_ms / 1000),
            endpoint: t.endpoint.as_str(),
            status: t.status,
            took: format!("{:.1} ms", t.took_us as f64 / 1000.0),
            session: t.session_id.clone().unwrap_or_default(),
            correlated: t.correlated,
            device_summary: t.device.summary.clone(),
            device,
            server_summary: t.server.summary.clone(),
            server,
            objects: t
                .device
                .objects
                .iter()
                .chain(&t.server.objects)
                .map(|o| format!("{}: {} bytes in {} chunks", o.locuri, o.bytes, o.chunks))
                .collect(),
            delivered: t.delivered.join(", "),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/trace.html")]
struct TracePage {
    nav: Option<Nav>,
    notice: Option<String>,
    device_href: String,
    device_id: String,
    row: TraceRow,
    note: String,
    export_href: String,
    turns: Vec<TurnView>,
}

/// `GET /ui/devices/{id}/traces/{trace}`.
pub(super) async fn page(ctx: &Ctx, device_id: &str, trace_id: &str) -> Resp {
    let nav = ctx.nav("devices");
    let back = format!("/ui/devices/{}", enc(device_id));
    let (meta, turns) = match svc::get(&ctx.app, &ctx.s.actor, device_id, trace_id).await {
        Ok(x) => x,
        Err(e) => return error_page(&e, Some(nav), &back),
    };
    let now = ctx.app.clock.now_unix();
    let row = TraceRow::of(device_id, &meta, now);
    html(
        StatusCode::OK,
        &TracePage {
            nav: Some(nav),
            notice: None,
            export_href: format!("{}/export", row.href),
            device_href: back,
            device_id: device_id.to_string(),
            note: meta.note.clone().unwrap_or_default(),
            row,
            turns: turns.iter().map(TurnView::of).collect(),
        },
    )
}

/// `GET /ui/devices/{id}/traces/{trace}/export`: the trace file.
pub(super) async fn export(ctx: &Ctx, device_id: &str, trace_id: &str) -> Resp {
    let back = format!("/ui/devices/{}", enc(device_id));
    match svc::export(&ctx.app, &ctx.s.actor, device_id, trace_id).await {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            let name = format!(
                "attachment; filename=\"winmdm-trace-{}.ndjson\"",
                enc(trace_id)
            );
            if let Ok(v) = HeaderValue::from_str(&name) {
                r.headers_mut().insert(CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e) => error_page(&e, Some(ctx.nav("devices")), &back),
    }
}

fn number(ctx: &Ctx, field: &str) -> Result<Option<u32>, ServiceError> {
    match ctx.form.get(field).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ServiceError::bad(format!("{field} must be a whole number"))),
    }
}

/// `POST /ui/devices/{id}/trace` with `do=start` (minutes, sessions, note) or `do=stop`.
pub(super) async fn act(ctx: &Ctx, device_id: &str) -> Resp {
    let back = format!("/ui/devices/{}", enc(device_id));
    let out = match ctx.form.get("do") {
        Some("start") => {
            let opts = (|| {
                Ok::<_, ServiceError>(StartTrace {
                    minutes: number(ctx, "minutes")?,
                    sessions: number(ctx, "sessions")?,
                    note: ctx
                        .form
                        .get("note")
                        .map(str::to_string)
                        .filter(|n| !n.trim().is_empty()),
                })
            })();
            match opts {
                Ok(o) => svc::start(&ctx.app, &ctx.s.actor, device_id, o)
                    .await
                    .map(|_| "trace-started"),
                Err(e) => Err(e),
            }
        }
        Some("stop") => svc::stop(&ctx.app, &ctx.s.actor, device_id)
            .await
            .map(|_| "trace-stopped"),
        _ => Err(ServiceError::bad("unknown trace action")),
    };
    match out {
        Ok(n) => redirect(&format!("{back}?notice={n}#traces-h")),
        Err(e) => error_page(&e, Some(ctx.nav("devices")), &back),
    }
}
