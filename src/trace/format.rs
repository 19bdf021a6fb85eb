//! The device trace file format, version 1 (documented in `docs/TRACES.md`): NDJSON, one
//! [`Header`] line, then one [`Exchange`] line per HTTP request and answer, in the order the
//! server received them.
//!
//! Pure: reads and writes text, does no I/O. Reading is bounded ([`MAX_FILE_BYTES`],
//! [`MAX_EXCHANGES`]) and never panics on any input.

use serde::{Deserialize, Serialize};

/// The `format` value of every trace header.
pub const FORMAT: &str = "winmdm-trace";
/// The version this code writes and reads.
pub const VERSION: u32 = 1;
/// Largest trace file read (export, import, replay).
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
/// Most exchanges in one trace.
pub const MAX_EXCHANGES: usize = 2_000;

/// The first line of a trace file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] for files this code writes.
    pub version: u32,
    /// The trace's id.
    pub id: String,
    /// The traced device, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// When recording started (Unix seconds).
    pub started_at: i64,
    /// What wrote it: `winmdm <version>`, `har`, `conformance`, `fixture`.
    pub source: String,
    /// Whether secrets were redacted (always true for what winmdm records).
    pub redacted: bool,
    /// Free text (why the trace was taken, what it shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Which endpoint an exchange went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// MS-MDE2 discovery (`GET` probe or `POST` Discover).
    Discovery,
    /// MS-XCEP GetPolicies.
    Policy,
    /// MS-WSTEP enrollment (RequestSecurityToken, Issue).
    Enrollment,
    /// MS-WSTEP renewal over mutual TLS.
    Renewal,
    /// One OMA-DM message and its answer.
    Management,
    /// The federated sign-in page.
    Auth,
    /// Anything else the device asked for.
    Other,
}

impl Endpoint {
    /// Lower-case name, as in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Discovery => "discovery",
            Endpoint::Policy => "policy",
            Endpoint::Enrollment => "enrollment",
            Endpoint::Renewal => "renewal",
            Endpoint::Management => "management",
            Endpoint::Auth => "auth",
            Endpoint::Other => "other",
        }
    }

    /// The endpoint of a request path (winmdm's and Windows' well-known paths).
    pub fn of_path(path: &str) -> Endpoint {
        let p = path.to_ascii_lowercase();
        if p.contains("discovery.svc") {
            Endpoint::Discovery
        } else if p.contains("policyservice") || p.contains("policy.svc") || p.contains("/policy") {
            Endpoint::Policy
        } else if p.contains("renew") {
            Endpoint::Renewal
        } else if p.contains("enrollmentservice") || p.contains("enrollment.svc") {
            Endpoint::Enrollment
        } else if p.contains("managementserver") || p.contains("/manage") {
            Endpoint::Management
        } else if p.contains("auth") || p.contains("login") {
            Endpoint::Auth
        } else {
            Endpoint::Other
        }
    }
}

/// One side of an exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The headers that matter (lower-case names, in order); secrets are redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The body as text (UTF-8; a body that was not is written with U+FFFD replacements and
    /// `lossy` set).
    #[serde(default)]
    pub body: String,
    /// The body was not valid UTF-8.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lossy: bool,
    /// The body was longer than the recorder keeps; `body` holds its first bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_from: Option<u64>,
}

impl Message {
    /// A message from raw bytes (lossy UTF-8).
    pub fn from_bytes(headers: Vec<(String, String)>, body: &[u8], keep: usize) -> Message {
        let (kept, truncated_from) = if body.len() > keep {
            (&body[..keep], Some(body.len() as u64))
        } else {
            (body, None)
        };
        let (body, lossy) = match std::str::from_utf8(kept) {
            Ok(s) => (s.to_string(), false),
            Err(_) => (String::from_utf8_lossy(kept).into_owned(), true),
        };
        Message {
            headers,
            body,
            lossy,
            truncated_from,
        }
    }

    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// Position in the trace, from 1.
    pub seq: u32,
    /// When the request arrived (Unix milliseconds).
    pub at_ms: i64,
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// HTTP method.
    pub method: String,
    /// Request path (and query).
    pub path: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// Server time spent on it, in microseconds.
    #[serde(default)]
    pub took_us: u64,
    /// The request.
    pub request: Message,
    /// The answer.
    pub response: Message,
    /// OMA-DM session id (management exchanges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Ids of our queued commands the answer delivered (management exchanges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<String>,
    /// Attached to the device's trace by the client's address (discovery, policy and sign-in
    /// carry no DeviceID), not by the device's identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub correlated: bool,
}

/// A whole trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The header line.
    pub header: Header,
    /// The exchanges, in order.
    pub exchanges: Vec<Exchange>,
}

/// Why a trace file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("trace file larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    /// More than [`MAX_EXCHANGES`] exchanges.
    #[error("more than {MAX_EXCHANGES} exchanges")]
    TooMany,
    /// Empty file.
    #[error("empty trace file")]
    Empty,
    /// A line that is not what the format says.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Another format or a version this code does not read.
    #[error("not a {FORMAT} version {VERSION} file: {0}")]
    Version(String),
    /// A HAR file that could not be read.
    #[error("HAR: {0}")]
    Har(String),
}

impl Trace {
    /// Writes the trace as NDJSON (one header line, then one line per exchange).
    pub fn to_ndjson(&self) -> String {
        let mut out = String::new();
        push_line(&mut out, &self.header);
        for x in &self.exchanges {
            push_line(&mut out, x);
        }
        out
    }

    /// Reads a trace file: NDJSON of this format, or a HAR file (detected by its first
    /// non-blank character being `{` followed by a `"log"` member).
    pub fn parse(text: &str) -> Result<Trace, FormatError> {
        if text.len() > MAX_FILE_BYTES {
            return Err(FormatError::TooLarge);
        }
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        if trimmed.is_empty() {
            return Err(FormatError::Empty);
        }
        let first = trimmed.lines().next().unwrap_or_default();
        let first_is_header = serde_json::from_str::<serde_json::Value>(first)
            .ok()
            .and_then(|v| v.get("format").cloned())
            .is_some();
        if !first_is_header {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(trimmed) {
                if v.get("log").is_some() {
                    return super::har::from_har(&v);
                }
            }
        }
        Self::parse_ndjson(trimmed)
    }

    fn parse_ndjson(text: &str) -> Result<Trace, FormatError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (n, first) = lines.next().ok_or(FormatError::Empty)?;
        let header: Header = serde_json::from_str(first).map_err(|e| FormatError::Line {
            line: n + 1,
            reason: format!("header: {e}"),
        })?;
        if header.format != FORMAT {
            return Err(FormatError::Version(format!("format {:?}", header.format)));
        }
        if header.version != VERSION {
            return Err(FormatError::Version(format!("version {}", header.version)));
        }
        let mut exchanges = Vec::new();
        for (n, line) in lines {
            if exchanges.len() >= MAX_EXCHANGES {
                return Err(FormatError::TooMany);
            }
            let x: Exchange = serde_json::from_str(line).map_err(|e| FormatError::Line {
                line: n + 1,
                reason: e.to_string(),
            })?;
            exchanges.push(x);
        }
        Ok(Trace { header, exchanges })
    }
}

fn push_line<T: Serialize>(out: &mut String, v: &T) {
    // Serialising these plain structs cannot fail (no maps with non-string keys).
    if let Ok(s) = serde_json::to_string(v) {
        out.push_str(&s);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trace {
        Trace {
            header: Header {
                format: FORMAT.into(),
                version: VERSION,
                id: "t1".into(),
                device_id: Some("DEV".into()),
                started_at: 1_700_000_000,
                source: "winmdm test".into(),
                redacted: true,
                note: None,
            },
            exchanges: vec![Exchange {
                seq: 1,
                at_ms: 1_700_000_000_000,
                endpoint: Endpoint::Management,
                method: "POST".into(),
                path: "/ManagementServer/MDM.svc".into(),
                status: 200,
                took_us: 812,
                request: Message::from_bytes(
                    vec![(
                        "content-type".into(),
                        "application/vnd.syncml.dm+xml".into(),
                    )],
                    b"<SyncML>\n</SyncML>",
                    1024,
                ),
                response: Message::from_bytes(vec![], b"<SyncML/>", 1024),
                session_id: Some("1".into()),
                delivered: vec!["c1".into()],
                correlated: false,
            }],
        }
    }

    #[test]
    fn round_trips_through_ndjson() {
        let t = sample();
        let text = t.to_ndjson();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(Trace::parse(&text).unwrap(), t);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let mut t = sample();
        t.header.version = 2;
        assert!(matches!(
            Trace::parse(&t.to_ndjson()),
            Err(FormatError::Version(_))
        ));
        assert_eq!(Trace::parse("  \n"), Err(FormatError::Empty));
        assert!(matches!(
            Trace::parse("{\"format\":\"winmdm-trace\",\"version\":1}\n"),
            Err(FormatError::Line { line: 1, .. })
        ));
        let mut text = sample().to_ndjson();
        text.push_str("{not json\n");
        assert!(matches!(
            Trace::parse(&text),
            Err(FormatError::Line { line: 3, .. })
        ));
    }

    #[test]
    fn keeps_a_prefix_of_long_or_binary_bodies() {
        let m = Message::from_bytes(vec![], b"abcdef", 3);
        assert_eq!(m.body, "abc");
        assert_eq!(m.truncated_from, Some(6));
        let m = Message::from_bytes(vec![], &[0xff, b'a'], 10);
        assert!(m.lossy);
        assert_eq!(m.body, "\u{fffd}a");
    }

    #[test]
    fn endpoints_of_well_known_paths() {
        assert_eq!(
            Endpoint::of_path("/EnrollmentServer/Discovery.svc"),
            Endpoint::Discovery
        );
        assert_eq!(
            Endpoint::of_path("/ManagementServer/MDM.svc"),
            Endpoint::Management
        );
    }
}
