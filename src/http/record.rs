//! The HTTP side of device traces: captures a request's method, path and headers when anything
//! is traced (nothing at all otherwise), and after the answer is built hands the exchange to the
//! recorder (`crate::trace::record`). The recorder decides whether the device is traced.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::Full;
use hyper::{Request, Response};

use super::body::Resp;
use crate::app::App;
use crate::trace::{redact, Endpoint, Exchange, Message, MAX_BODY_KEPT};

/// What is known of a request before its body is read.
pub struct Capture {
    ip: IpAddr,
    at_ms: i64,
    started: Instant,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Capture {
    /// `None` (and no work) unless some device is traced.
    pub fn begin<B>(app: &App, req: &Request<B>, ip: IpAddr) -> Option<Capture> {
        if !app.tracer.is_on() {
            return None;
        }
        let headers = redact::headers(
            req.headers()
                .iter()
                .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))),
        );
        Some(Capture {
            ip,
            at_ms: app.clock.now_unix() * 1000 + i64::from(crate::clock::subsec_millis()),
            started: Instant::now(),
            method: req.method().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_string(), |p| p.to_string()),
            headers,
        })
    }
}

/// Who the exchange belongs to.
pub enum Owner {
    /// An authenticated device (OMA-DM, renewal) or the DeviceID an enrollment claims.
    Device(String),
    /// No DeviceID (discovery, policy): held for an enrollment from the same address.
    Unknown,
}

/// What the OMA-DM layer adds to a management exchange.
#[derive(Default)]
pub struct Extra {
    /// The message's SessionID.
    pub session_id: Option<String>,
    /// Our queued commands the answer carried.
    pub delivered: Vec<String>,
}

/// Hands a finished exchange to the recorder; returns the answer unchanged.
pub async fn finish(
    app: &Arc<App>,
    cap: Capture,
    endpoint: Endpoint,
    owner: Owner,
    request_body: &[u8],
    resp: Resp,
    extra: Extra,
) -> Resp {
    let took_us = cap.started.elapsed().as_micros() as u64;
    let ip = cap.ip;
    let (parts, body) = resp.into_parts();
    let answer = body.into_inner().unwrap_or_default();
    let resp_headers = redact::headers(
        parts
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))),
    );
    let mut request = Message::from_bytes(cap.headers, request_body, MAX_BODY_KEPT);
    request.body = redact::body(&request.body);
    let mut response = Message::from_bytes(resp_headers, &answer, MAX_BODY_KEPT);
    response.body = redact::body(&response.body);
    let x = Exchange {
        seq: 0,
        at_ms: cap.at_ms,
        endpoint,
        method: cap.method,
        path: cap.path,
        status: parts.status.as_u16(),
        took_us,
        request,
        response,
        session_id: extra.session_id,
        delivered: extra.delivered,
        correlated: false,
    };
    let status = parts.status;
    let resp = Response::from_parts(parts, Full::new(answer));
    match owner {
        Owner::Unknown => app.tracer.hold(ip, x),
        Owner::Device(device_id) => {
            let enrolled = endpoint == Endpoint::Enrollment && status.as_u16() == 200;
            if enrolled && app.tracer.is_on() {
                // A user rule may start this device's trace: the device record (written by the
                // enrollment just answered) says whose it is, whatever the request claimed.
                let (a, d) = (app.clone(), device_id.clone());
                let r = tokio::task::spawn_blocking(move || {
                    let Some(upn) = a.store.get_device(&d)?.and_then(|dev| dev.upn) else {
                        return Ok(());
                    };
                    let upn = upn.to_lowercase();
                    a.tracer
                        .enrolled_by_user(a.store.records(), a.clock.now_unix(), &d, &upn)
                })
                .await;
                if let Ok(Err(e)) = r {
                    tracing::warn!(error = %e, "device trace: user rule not applied");
                }
            }
            if app.tracer.wants(&device_id) {
                let a = app.clone();
                let r = tokio::task::spawn_blocking(move || {
                    a.tracer.record(
                        a.store.records(),
                        a.clock.now_unix(),
                        &device_id,
                        Some(ip),
                        x,
                    )
                })
                .await;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "device trace: exchange not recorded"),
                    Err(e) => tracing::warn!(error = %e, "device trace: recording task failed"),
                }
            }
        }
    }
    resp
}

/// The DeviceID an enrollment request claims (`AdditionalContext/ContextItem[@Name="DeviceID"]`).
pub fn claimed_device_id(body: &[u8]) -> Option<String> {
    fn walk(e: &crate::xml::Element) -> Option<String> {
        if e.local == "ContextItem"
            && e.attrs
                .iter()
                .any(|a| a.local == "Name" && a.value == "DeviceID")
        {
            return e
                .children
                .iter()
                .find(|c| c.local == "Value")
                .map(|v| v.text.trim().to_string())
                .filter(|v| !v.is_empty() && v.len() <= 128);
        }
        e.children.iter().find_map(walk)
    }
    walk(&crate::xml::parse(body).ok()?)
}
