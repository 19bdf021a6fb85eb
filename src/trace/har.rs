//! HAR import (the HTTP Archive format Fiddler and browsers export, version 1.2): each entry
//! becomes an [`Exchange`], redacted like everything winmdm records.
//!
//! Pure; a HAR that is not an object with `log.entries` is refused, entries that are not
//! HTTP requests with a method and URL are refused with their index.

use serde_json::Value;

use super::format::{Endpoint, Exchange, FormatError, Header, Message, Trace, FORMAT, VERSION};
use super::redact;

/// Bytes of a body kept from a HAR entry.
const MAX_BODY: usize = 4 * 1024 * 1024;

fn headers_of(v: &Value) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| {
                    Some((
                        h.get("name")?.as_str()?.to_string(),
                        h.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    redact::headers(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

fn message(headers: &Value, text: Option<&str>, base64: bool) -> Result<Message, String> {
    let raw = match (text, base64) {
        (None, _) => Vec::new(),
        (Some(t), false) => t.as_bytes().to_vec(),
        (Some(t), true) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(t.trim())
                .map_err(|e| format!("content is not base64: {e}"))?
        }
    };
    let mut m = Message::from_bytes(headers_of(headers), &raw, MAX_BODY);
    m.body = redact::body(&m.body);
    Ok(m)
}

fn path_of(url: &str) -> String {
    // scheme://host[:port]/path?query → /path?query
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    match after_scheme.find('/') {
        Some(i) => after_scheme[i..].to_string(),
        None => "/".to_string(),
    }
}

fn at_ms(started: Option<&str>) -> i64 {
    started
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Reads a parsed HAR document.
pub fn from_har(v: &Value) -> Result<Trace, FormatError> {
    let entries = v
        .get("log")
        .and_then(|l| l.get("entries"))
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::Har("no log.entries array".into()))?;
    if entries.len() > super::format::MAX_EXCHANGES {
        return Err(FormatError::TooMany);
    }
    let mut exchanges = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let bad = |what: &str| FormatError::Har(format!("entry {i}: {what}"));
        let req = e.get("request").ok_or_else(|| bad("no request"))?;
        let resp = e.get("response").ok_or_else(|| bad("no response"))?;
        let method = req
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no request.method"))?;
        let url = req
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no request.url"))?;
        let path = path_of(url);
        let post = req.get("postData");
        let request = message(
            req.get("headers").unwrap_or(&Value::Null),
            post.and_then(|p| p.get("text")).and_then(Value::as_str),
            false,
        )
        .map_err(|r| bad(&r))?;
        let content = resp.get("content");
        let response = message(
            resp.get("headers").unwrap_or(&Value::Null),
            content.and_then(|c| c.get("text")).and_then(Value::as_str),
            content
                .and_then(|c| c.get("encoding"))
                .and_then(Value::as_str)
                == Some("base64"),
        )
        .map_err(|r| bad(&r))?;
        let mut endpoint = Endpoint::of_path(&path);
        if endpoint == Endpoint::Enrollment && request.body.contains("/Renew<") {
            endpoint = Endpoint::Renewal;
        }
        let took_ms = e.get("time").and_then(Value::as_f64).unwrap_or(0.0);
        exchanges.push(Exchange {
            seq: (i + 1) as u32,
            at_ms: at_ms(e.get("startedDateTime").and_then(Value::as_str)),
            endpoint,
            method: method.to_string(),
            path,
            status: resp
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(0),
            took_us: (took_ms.max(0.0) * 1000.0) as u64,
            session_id: None,
            delivered: Vec::new(),
            correlated: false,
            request,
            response,
        });
    }
    let started_at = exchanges.first().map_or(0, |x| x.at_ms / 1000);
    let device_id = exchanges
        .iter()
        .filter(|x| x.endpoint == Endpoint::Management)
        .find_map(|x| super::syncml_source(&x.request.body));
    for x in &mut exchanges {
        if x.endpoint == Endpoint::Management {
            x.session_id = super::syncml_session(&x.request.body);
        }
    }
    Ok(Trace {
        header: Header {
            format: FORMAT.into(),
            version: VERSION,
            id: format!("har-{started_at}"),
            device_id,
            started_at,
            source: "har".into(),
            redacted: true,
            note: None,
        },
        exchanges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_fiddler_style_har_and_redacts_it() {
        let har = serde_json::json!({"log": {"version": "1.2", "entries": [
            {"startedDateTime": "2024-05-01T10:00:00.000Z", "time": 12.5,
             "request": {"method": "POST", "url": "https://mdm.example.com/EnrollmentServer/Policy.svc",
                "headers": [{"name": "Content-Type", "value": "application/soap+xml"}],
                "postData": {"mimeType": "application/soap+xml",
                   "text": "<s:Envelope xmlns:s=\"s\"><s:Header><wsse:Password xmlns:wsse=\"w\">pw1</wsse:Password></s:Header></s:Envelope>"}},
             "response": {"status": 200, "headers": [], "content": {"size": 3, "text": "b2s=", "encoding": "base64"}}},
            {"startedDateTime": "2024-05-01T10:00:01.000Z", "time": 3,
             "request": {"method": "POST", "url": "https://mdm.example.com/ManagementServer/MDM.svc",
                "headers": [], "postData": {"text": "<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>5</SessionID><MsgID>1</MsgID><Target><LocURI>https://mdm.example.com/ManagementServer/MDM.svc</LocURI></Target><Source><LocURI>DEV-1</LocURI></Source></SyncHdr><SyncBody><Final/></SyncBody></SyncML>"}},
             "response": {"status": 200, "headers": [], "content": {"text": "<SyncML/>"}}}
        ]}});
        let t = Trace::parse(&har.to_string()).unwrap();
        assert_eq!(t.exchanges.len(), 2);
        assert_eq!(t.exchanges[0].endpoint, Endpoint::Policy);
        assert!(!t.exchanges[0].request.body.contains("pw1"));
        assert_eq!(t.exchanges[0].response.body, "ok");
        assert_eq!(t.exchanges[0].took_us, 12_500);
        assert_eq!(t.exchanges[1].path, "/ManagementServer/MDM.svc");
        assert_eq!(t.exchanges[1].session_id.as_deref(), Some("5"));
        assert_eq!(t.header.device_id.as_deref(), Some("DEV-1"));
        assert_eq!(t.header.started_at, 1_714_557_600);
    }

    #[test]
    fn refuses_entries_without_a_request() {
        let har = serde_json::json!({"log": {"entries": [{"response": {}}]}});
        assert!(matches!(
            Trace::parse(&har.to_string()),
            Err(FormatError::Har(r)) if r.contains("entry 0")
        ));
    }
}
