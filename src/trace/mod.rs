//! Device traces: what one device sent and what we answered, recorded on an admin's request,
//! shown as a conversation, exported in a documented format (`docs/TRACES.md`) and replayed
//! against any MS-MDE2 / OMA-DM server.
//!
//! * [`format`] — the versioned NDJSON file format (and [`har`] import); pure.
//! * [`redact`] — what is removed before anything is written; pure.
//! * [`record`] — the recorder: which devices are traced (rules in the store, cached in memory
//!   so an untraced request costs one atomic load), and the bounded trace records.
//! * [`replay`] — plays a trace's device side against a server and diffs the answers.
//! * [`view`] — a trace as a conversation (commands, their Status codes and meanings, large
//!   objects reassembled); pure.
//!
//! Records (all through the generic record table, so every backend and node shares them):
//! `trace_rule` (device id → [`Rule`]), `trace` (trace id → [`TraceMeta`]), `device_trace`
//! (`device_id \0 trace_id`), `trace_entry` (`trace_id \0 <time-ordered key>` → exchange).

pub mod format;
pub mod har;
pub mod record;
pub mod redact;
pub mod replay;
pub mod view;

use serde::{Deserialize, Serialize};

use crate::store::records::Kind;

pub use format::{Endpoint, Exchange, Message, Trace};
pub use record::Tracer;

/// Active recording rules by device id.
pub const RULES: Kind<Rule> = Kind::new("trace_rule");
/// Rules tracing the next enrollments of a user, by lower-case UPN.
pub const USER_RULES: Kind<UserRule> = Kind::new("trace_user_rule");
/// Traces by id.
pub const TRACES: Kind<TraceMeta> = Kind::new("trace");
/// `device_id \0 trace_id` → `true`.
pub const DEVICE_TRACES: Kind<bool> = Kind::new("device_trace");
/// `trace_id \0 key` → one exchange (keys sort in arrival order).
pub const ENTRIES: Kind<Exchange> = Kind::new("trace_entry");

/// Body bytes kept per request or answer (larger ones keep this prefix and say so).
pub const MAX_BODY_KEPT: usize = 1024 * 1024;
/// Bytes of bodies one trace keeps before it stops recording.
pub const MAX_TRACE_BYTES: u64 = 32 * 1024 * 1024;
/// Exchanges one trace keeps before it stops recording.
pub const MAX_TRACE_EXCHANGES: u32 = format::MAX_EXCHANGES as u32;
/// Traces kept per device: starting one more deletes the oldest finished one.
pub const MAX_TRACES_PER_DEVICE: usize = 20;
/// Devices traced at once (a group start refuses past it).
pub const MAX_ACTIVE_RULES: usize = 1_000;
/// Longest recording window.
pub const MAX_DURATION_SECS: i64 = 7 * 24 * 3600;
/// Default recording window.
pub const DEFAULT_DURATION_SECS: i64 = 3600;
/// Most OMA-DM sessions one trace may be asked to record.
pub const MAX_SESSIONS: u32 = 1_000;
/// Default number of OMA-DM sessions recorded.
pub const DEFAULT_SESSIONS: u32 = 10;
/// Age after which a finished trace is deleted by the retention sweep.
pub const RETENTION_SECS: i64 = 30 * 24 * 3600;
/// Longest note.
pub const MAX_NOTE: usize = 500;

/// An active recording: the device's next exchanges go to `trace_id` until `until` or until
/// `max_sessions` OMA-DM sessions have been seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The trace being written.
    pub trace_id: String,
    /// End of the window (Unix seconds).
    pub until: i64,
    /// OMA-DM sessions to record.
    pub max_sessions: u32,
}

/// "Trace the next `enrollments` devices this user enrolls": each successful enrollment
/// claiming the UPN starts a device trace with this window and session count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRule {
    /// Enrollments still to trace.
    pub enrollments_left: u32,
    /// Each device trace's window, in seconds.
    pub window_secs: i64,
    /// Each device trace's OMA-DM sessions.
    pub max_sessions: u32,
    /// The rule itself ends then (Unix seconds).
    pub until: i64,
    /// Who asked.
    pub started_by: String,
    /// Why.
    #[serde(default)]
    pub note: Option<String>,
}

/// Most enrollments one user rule may ask for.
pub const MAX_USER_ENROLLMENTS: u32 = 20;

/// Why a trace stopped recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// The window ended.
    Expired,
    /// The session count was reached.
    Sessions,
    /// [`MAX_TRACE_BYTES`] or [`MAX_TRACE_EXCHANGES`] was reached.
    Full,
    /// An admin stopped it.
    Admin,
    /// The device was deleted.
    DeviceDeleted,
}

/// A trace's summary record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceMeta {
    /// Trace id (random hex).
    pub id: String,
    /// The traced device.
    pub device_id: String,
    /// When recording was asked for (Unix seconds).
    pub started_at: i64,
    /// Who asked (token name).
    pub started_by: String,
    /// End of the window.
    pub until: i64,
    /// Sessions asked for.
    pub max_sessions: u32,
    /// OMA-DM sessions seen so far.
    pub sessions: u32,
    /// The last OMA-DM session id seen (a new one counts a session).
    #[serde(default)]
    pub last_session: Option<String>,
    /// Exchanges recorded.
    pub exchanges: u32,
    /// Body bytes recorded.
    pub bytes: u64,
    /// Last write (Unix seconds).
    pub updated_at: i64,
    /// `None` while recording.
    #[serde(default)]
    pub stopped: Option<Stopped>,
    /// Free text given when it started.
    #[serde(default)]
    pub note: Option<String>,
}

impl TraceMeta {
    /// A new trace of `device_id` started at `now` by `by`, recording `secs` seconds and
    /// `max_sessions` sessions, with its rule.
    pub fn start(
        device_id: &str,
        by: &str,
        now: i64,
        secs: i64,
        max_sessions: u32,
        note: Option<String>,
    ) -> (TraceMeta, Rule) {
        let meta = TraceMeta {
            id: crate::clock::random_hex(8),
            device_id: device_id.to_string(),
            started_at: now,
            started_by: by.to_string(),
            until: now + secs,
            max_sessions,
            sessions: 0,
            last_session: None,
            exchanges: 0,
            bytes: 0,
            updated_at: now,
            stopped: None,
            note,
        };
        let rule = Rule {
            trace_id: meta.id.clone(),
            until: meta.until,
            max_sessions,
        };
        (meta, rule)
    }

    /// Still recording at `now`.
    pub fn recording(&self, now: i64) -> bool {
        self.stopped.is_none() && now < self.until
    }
}

/// The `SessionID` of an OMA-DM message, when it parses.
pub fn syncml_session(body: &str) -> Option<String> {
    let m = crate::syncml::parse(body.as_bytes()).ok()?;
    let s = m.hdr.session_id.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The `Source/LocURI` (the DeviceID) of a device's OMA-DM message, when it parses.
pub fn syncml_source(body: &str) -> Option<String> {
    let m = crate::syncml::parse(body.as_bytes()).ok()?;
    let s = m.hdr.source.loc_uri.trim();
    (!s.is_empty()).then(|| s.to_string())
}
