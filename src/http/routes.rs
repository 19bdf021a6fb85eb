//! Routing: (method, path) → handler, with body limits, content-type checks, and the one place
//! where flow errors become HTTP responses (SOAP faults for enrollment). No protocol logic.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::{Peer, Role};
use crate::app::App;
use crate::config::paths;
use crate::mdm::enroll::{self, Failure};
use crate::metrics::{EnrollEndpoint, Fault};
use crate::soap::fault::{self, EnrollError, FaultAction, SoapFault};
use tracing::Instrument;

pub use super::body::{read_body, BodyError, BodyTimeout, Resp};

/// SOAP 1.2 media type of enrollment responses.
pub const SOAP_CT: &str = "application/soap+xml; charset=utf-8";

/// Largest SOAP request accepted (a Windows RST is about 4 KB).
pub const MAX_SOAP_BODY: usize = 256 * 1024;

/// Dispatches one request.
pub async fn handle(
    app: Arc<App>,
    peer: Arc<Peer>,
    role: Role,
    mut req: Request<Incoming>,
) -> Resp {
    req.extensions_mut()
        .insert(BodyTimeout(app.cfg.conn.body_timeout));
    let path = req.uri().path().to_string();
    let admin_here = matches!(role, Role::AdminOnly | Role::Main { admin: true });
    let trace_id = trace_id(&req);
    if path == "/api/v1" || path.starts_with("/api/v1/") {
        if admin_here {
            let span = tracing::info_span!(
                "admin",
                %trace_id,
                method = %req.method(),
                path = %crate::soap::envelope::clip(&path),
                actor = tracing::field::Empty,
            );
            return crate::admin::handle(app, req).instrument(span).await;
        }
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if path == crate::metrics::http::PATH && admin_here {
        let span = tracing::info_span!("metrics", %trace_id, actor = tracing::field::Empty);
        return crate::metrics::http::scrape(app, req)
            .instrument(span)
            .await;
    }
    if path == "/ui" || path.starts_with("/ui/") {
        if admin_here {
            return crate::ui::handle(app, peer.addr, req).await;
        }
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if role == Role::AdminOnly {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    let method = req.method().clone();
    if role == Role::Management {
        // The mutual-TLS endpoint: OMA-DM and certificate renewal, nothing else.
        return match (method, path.as_str()) {
            (Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
            (Method::GET, "/readyz") => readyz(app).await,
            (Method::POST, paths::MANAGEMENT) => manage(app, peer, req, trace_id).await,
            (Method::POST, paths::ENROLLMENT) => {
                soap(app, peer, req, Endpoint::Renewal, trace_id).await
            }
            (_, paths::ENROLLMENT | paths::MANAGEMENT) => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                r.headers_mut()
                    .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
                r
            }
            _ => text(StatusCode::NOT_FOUND, "not found"),
        };
    }
    match (method, path.as_str()) {
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (Method::GET, "/readyz") => readyz(app).await,
        // MS-MDE2 §3.1: the device probes with GET before POSTing Discover.
        (Method::GET, paths::DISCOVERY) => {
            match super::record::Capture::begin(&app, &req, peer.addr.ip()) {
                None => empty(StatusCode::OK),
                Some(cap) => {
                    use super::record::{finish, Extra, Owner};
                    let r = empty(StatusCode::OK);
                    let ep = crate::trace::Endpoint::Discovery;
                    finish(&app, cap, ep, Owner::Unknown, b"", r, Extra::default()).await
                }
            }
        }
        (Method::POST, paths::DISCOVERY) => {
            soap(app, peer, req, Endpoint::Discovery, trace_id).await
        }
        (Method::POST, paths::POLICY) => soap(app, peer, req, Endpoint::Policy, trace_id).await,
        (Method::POST, paths::ENROLLMENT) => {
            soap(app, peer, req, Endpoint::Enrollment, trace_id).await
        }
        (Method::POST, paths::MANAGEMENT) => manage(app, peer, req, trace_id).await,
        (_, p) if p.starts_with(super::app_content::PREFIX) => {
            super::app_content::serve(app, req).await
        }
        (Method::GET, p) if p.starts_with(crate::service::invitations::LANDING_PREFIX) => {
            let token = p[crate::service::invitations::LANDING_PREFIX.len()..].to_string();
            super::landing::invite(app, token).await
        }
        (_, paths::AUTH) => crate::federation::web::auth(app, req).await,
        (_, paths::TOS) => crate::federation::web::tos(app, req).await,
        (_, paths::DISCOVERY | paths::POLICY | paths::ENROLLMENT | paths::MANAGEMENT) => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, POST"));
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Discovery,
    Policy,
    /// RequestSecurityToken on the public listener.
    Enrollment,
    /// RequestSecurityToken on the mutual-TLS endpoint (certificate renewal).
    Renewal,
}

impl Endpoint {
    fn fault_action(self) -> FaultAction {
        match self {
            // MS-MDE2 §2.2.10 shows the RSTRC action on enrollment faults; the WCF dispatcher
            // fault action (MS-WSTEP §4.1.4) elsewhere.
            Endpoint::Discovery | Endpoint::Policy => FaultAction::Dispatcher,
            Endpoint::Enrollment | Endpoint::Renewal => FaultAction::Rstrc,
        }
    }

    fn metric(self) -> EnrollEndpoint {
        match self {
            Endpoint::Discovery => EnrollEndpoint::Discovery,
            Endpoint::Policy => EnrollEndpoint::Policy,
            Endpoint::Enrollment => EnrollEndpoint::Enrollment,
            Endpoint::Renewal => EnrollEndpoint::Renewal,
        }
    }
}

/// The request's trace id: the trace-id of a valid W3C `traceparent` header (a proxy's trace
/// continues here), else 16 random hex digits. It names the request's span in the logs and is
/// sent back in SOAP faults.
pub fn trace_id<B>(req: &Request<B>) -> String {
    let from_header = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let mut parts = v.trim().split('-');
            let (_version, id) = (parts.next()?, parts.next()?);
            let hex = id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            (hex && id.bytes().any(|b| b != b'0')).then(|| id.to_string())
        });
    from_header.unwrap_or_else(|| crate::clock::random_hex(8))
}

async fn soap(
    app: Arc<App>,
    peer: Arc<Peer>,
    req: Request<Incoming>,
    ep: Endpoint,
    trace_id: String,
) -> Resp {
    let span = tracing::info_span!(
        "enroll",
        endpoint = ep.metric().as_str(),
        %trace_id,
        peer = %peer.addr,
        device_id = tracing::field::Empty,
    );
    let metrics = app.metrics.clone();
    let cap = super::record::Capture::begin(&app, &req, peer.addr.ip());
    let cert = peer.client_cert.clone();
    let (resp, fault, body) = soap_inner(app.clone(), peer, req, ep, trace_id)
        .instrument(span.clone())
        .await;
    metrics.enrollment(ep.metric(), fault);
    match cap {
        None => resp,
        Some(cap) => {
            let body = body.unwrap_or_default();
            let (tep, owner) = trace_owner(&app, ep, &body, cert).await;
            let extra = super::record::Extra::default();
            super::record::finish(&app, cap, tep, owner, &body, resp, extra)
                .instrument(span)
                .await
        }
    }
}

/// Whose trace an enrollment-side exchange belongs to (only asked while something is traced):
/// renewal by the authenticated certificate, enrollment by the DeviceID it claims, discovery
/// and policy by nobody yet.
async fn trace_owner(
    app: &Arc<App>,
    ep: Endpoint,
    body: &[u8],
    cert: Option<rustls::pki_types::CertificateDer<'static>>,
) -> (crate::trace::Endpoint, super::record::Owner) {
    use super::record::{claimed_device_id, Owner};
    use crate::trace::Endpoint as T;
    match ep {
        Endpoint::Discovery => (T::Discovery, Owner::Unknown),
        Endpoint::Policy => (T::Policy, Owner::Unknown),
        Endpoint::Enrollment => (
            T::Enrollment,
            claimed_device_id(body).map_or(Owner::Unknown, Owner::Device),
        ),
        Endpoint::Renewal => {
            let a = app.clone();
            let device = tokio::task::spawn_blocking(move || {
                let now = a.clock.now_unix();
                crate::mdm::identity::authenticate(
                    a.store.as_ref(),
                    &a.ca,
                    cert.as_ref().map(|c| c.as_ref()),
                    now,
                )
                .ok()
                .map(|auth| auth.device_id().to_string())
            })
            .await
            .ok()
            .flatten();
            (T::Renewal, device.map_or(Owner::Unknown, Owner::Device))
        }
    }
}

async fn soap_inner(
    app: Arc<App>,
    peer: Arc<Peer>,
    req: Request<Incoming>,
    ep: Endpoint,
    trace_id: String,
) -> (Resp, Option<Fault>, Option<Bytes>) {
    let ct = content_type(&req);
    if !ct.starts_with("application/soap+xml") {
        let f = Failure::from(EnrollError::MessageFormat {
            reason: format!("Content-Type {ct:?} is not application/soap+xml"),
        });
        let (r, fault) = fault_response(
            &app,
            ep,
            &f,
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            trace_id,
        );
        return (r, fault, None);
    }
    let limit = MAX_SOAP_BODY.min(app.cfg.max_body_bytes);
    let body = match read_body(req.into_body(), limit, app.cfg.conn.body_timeout).await {
        Ok(b) => b,
        Err(e) => {
            let (status, reason) = match e {
                BodyError::TooLarge(n) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than {n} bytes"),
                ),
                BodyError::Timeout => (
                    StatusCode::REQUEST_TIMEOUT,
                    "body not received in time".to_string(),
                ),
                BodyError::Broken(r) => (StatusCode::BAD_REQUEST, format!("body unreadable: {r}")),
            };
            let f = Failure::from(EnrollError::MessageFormat { reason });
            let (r, fault) = fault_response(&app, ep, &f, Some(status), trace_id);
            return (r, fault, None);
        }
    };
    let kept = body.clone();
    let app2 = app.clone();
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || {
        let _in_span = span.enter();
        match ep {
            Endpoint::Discovery => enroll::discover(&app2, &body),
            Endpoint::Policy => enroll::get_policies(&app2, &body),
            // Renewal (ROBO) authenticates with the TLS client certificate.
            Endpoint::Enrollment | Endpoint::Renewal => {
                enroll::enroll(&app2, &body, peer.client_cert.as_ref().map(|c| c.as_ref()))
            }
        }
    })
    .await;
    let (r, fault) = match result {
        Ok(Ok(xml)) => {
            let mut r = Response::new(Full::new(Bytes::from(xml)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(SOAP_CT));
            (r, None)
        }
        Ok(Err(f)) => fault_response(&app, ep, &f, None, trace_id),
        Err(join) => {
            tracing::error!(endpoint = ?ep, error = %join, "enrollment handler panicked");
            let f = Failure::from(EnrollError::EnrollmentServer {
                reason: "internal error".into(),
            });
            fault_response(&app, ep, &f, None, trace_id)
        }
    };
    (r, fault, Some(kept))
}

/// The one map from an enrollment failure to its HTTP response (a SOAP 1.2 fault), with the
/// fault's metric label; the refusal is queued for the dashboard ([`crate::mdm::refusals`]).
fn fault_response(
    app: &App,
    ep: Endpoint,
    f: &Failure,
    status: Option<StatusCode>,
    trace_id: String,
) -> (Resp, Option<Fault>) {
    tracing::warn!(endpoint = ?ep, error = %f.error, relates_to = ?f.relates_to, %trace_id, "enrollment request refused");
    app.refusals.record(
        app.clock.now_unix(),
        ep.metric().as_str(),
        Fault::of(&f.error).as_str(),
        &f.error.to_string(),
    );
    let sf = SoapFault::from(&f.error).with_trace_id(trace_id);
    let body = fault::write_fault(&sf, f.relates_to.as_deref(), ep.fault_action());
    let status = status.unwrap_or_else(|| {
        StatusCode::from_u16(f.error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    });
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(SOAP_CT));
    if let Some(secs) = f.error.retry_after() {
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    (r, Some(Fault::of(&f.error)))
}

/// `GET /readyz` for load balancers: 200 when the store answers (and, on PostgreSQL, its schema
/// is the one this binary expects) within 5 s; else 503 with `Retry-After`. `GET /healthz` only
/// says the process is alive.
async fn readyz(app: Arc<App>) -> Resp {
    let store = app.store.clone();
    let check = tokio::task::spawn_blocking(move || store.records().check_ready());
    let why = match tokio::time::timeout(std::time::Duration::from_secs(5), check).await {
        Ok(Ok(Ok(()))) => return text(StatusCode::OK, "ready"),
        Ok(Ok(Err(e))) => e.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the store did not answer within 5 s".to_string(),
    };
    tracing::warn!(reason = %why, "not ready");
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "not ready");
    if let Ok(v) = HeaderValue::from_str(&app.cfg.retry_after.to_string()) {
        r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, msg: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(msg.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// SyncML media type (OMA SyncML HTTP binding).
pub const SYNCML_CT: &str = "application/vnd.syncml.dm+xml";

/// The management endpoint: device authentication on every request, then one OMA-DM round;
/// counted and timed for the metrics.
async fn manage(app: Arc<App>, peer: Arc<Peer>, req: Request<Incoming>, trace_id: String) -> Resp {
    let span = tracing::info_span!(
        "manage",
        %trace_id,
        peer = %peer.addr,
        device_id = tracing::field::Empty,
        session_id = tracing::field::Empty,
    );
    let metrics = app.metrics.clone();
    let cap = super::record::Capture::begin(&app, &req, peer.addr.ip());
    let (resp, took, traced) = manage_inner(app.clone(), peer, req, cap.is_some())
        .instrument(span.clone())
        .await;
    metrics.round(resp.status().as_u16(), took);
    match (cap, traced) {
        (Some(cap), Some(t)) => {
            use super::record::{finish, Extra, Owner};
            let extra = Extra {
                session_id: crate::trace::syncml_session(&String::from_utf8_lossy(&t.body)),
                delivered: t.delivered,
            };
            let ep = crate::trace::Endpoint::Management;
            finish(
                &app,
                cap,
                ep,
                Owner::Device(t.device_id),
                &t.body,
                resp,
                extra,
            )
            .instrument(span)
            .await
        }
        _ => resp,
    }
}

/// What a traced management exchange adds to its answer.
struct Traced {
    device_id: String,
    body: Bytes,
    delivered: Vec<String>,
}

async fn manage_inner(
    app: Arc<App>,
    peer: Arc<Peer>,
    req: Request<Incoming>,
    tracing_on: bool,
) -> (Resp, Option<std::time::Duration>, Option<Traced>) {
    if let Some(t) = &app.throttle {
        if !t.try_acquire() {
            tracing::warn!(peer = %peer.addr, retry_after = app.cfg.retry_after, "management request throttled (429)");
            let mut r = empty(StatusCode::TOO_MANY_REQUESTS);
            if let Ok(v) = HeaderValue::from_str(&app.cfg.retry_after.to_string()) {
                r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
            return (r, None, None);
        }
    }
    let ct = content_type(&req);
    if !ct.starts_with(SYNCML_CT) {
        tracing::warn!(peer = %peer.addr, content_type = %ct, "management request refused: not SyncML XML");
        let r = text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/vnd.syncml.dm+xml",
        );
        return (r, None, None);
    }
    let signature = if app.cfg.message_signing {
        crate::ca::SIGNATURE_HEADER_NAMES
            .iter()
            .find_map(|h| req.headers().get(*h))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    } else {
        None
    };
    let body = match read_body(
        req.into_body(),
        app.cfg.max_body_bytes,
        app.cfg.conn.body_timeout,
    )
    .await
    {
        Ok(b) => b,
        Err(BodyError::TooLarge(_)) => {
            return (
                text(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
                None,
                None,
            )
        }
        Err(BodyError::Timeout) => {
            return (
                text(StatusCode::REQUEST_TIMEOUT, "body not received in time"),
                None,
                None,
            )
        }
        Err(BodyError::Broken(_)) => {
            return (text(StatusCode::BAD_REQUEST, "body unreadable"), None, None)
        }
    };
    let started = std::time::Instant::now();
    let kept = tracing_on.then(|| body.clone());
    let result = if app.store.reads_inline() {
        // The embedded store: the round runs on this task, and its commit is awaited.
        crate::wait::catch_unwind(management_round(app.clone(), peer, signature, body, true)).await
    } else {
        // Reads are network round trips (PostgreSQL): the round takes a blocking thread.
        let app2 = app.clone();
        let rt = tokio::runtime::Handle::current();
        crate::wait::on_blocking_pool(move || {
            rt.block_on(management_round(app2, peer, signature, body, false))
        })
        .await
        .map_err(|join| join.to_string())
    };
    let took = Some(started.elapsed());
    let mut traced = None;
    let resp = match result {
        Ok(Ok((device_id, reply))) => {
            if let Some(body) = kept {
                traced = Some(Traced {
                    device_id,
                    body,
                    delivered: reply.delivered,
                });
            }
            let mut r = Response::new(Full::new(Bytes::from(reply.xml)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(SYNCML_CT));
            r
        }
        Ok(Err(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = empty(status);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                // The store is down or the device's rounds kept colliding: come back later.
                if let Ok(v) = HeaderValue::from_str(&app.cfg.retry_after.to_string()) {
                    r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
                }
            }
            r
        }
        Err(join) => {
            tracing::error!(error = %join, "management handler panicked");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    (resp, took, traced)
}

/// Authenticates the device of a management request and runs its round; on an async worker
/// (`on_worker`) only with a store whose reads are quick (`SessionStore::reads_inline`).
async fn management_round(
    app: Arc<App>,
    peer: Arc<Peer>,
    signature: Option<String>,
    body: Bytes,
    on_worker: bool,
) -> Result<(String, crate::mdm::manage::RoundReply), u16> {
    let now = app.clock.now_unix();
    let cert = peer.client_cert.as_ref().map(|c| c.as_ref());
    let store = app.store.as_ref();
    let authenticated = match (cert, &signature) {
        // Behind a TLS-terminating proxy: the device's message signature stands in for the
        // client certificate (only when enabled).
        (None, Some(sig)) => {
            crate::mdm::identity::authenticate_signed(store, &app.ca, sig, &body, now)
        }
        _ => crate::mdm::identity::authenticate_on(store, &app.ca, cert, now, &peer.identity),
    };
    let auth = match authenticated {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(peer = %peer.addr, error = %e, "management request refused: device not authenticated");
            return Err(e.http_status());
        }
    };
    tracing::Span::current().record("device_id", auth.device_id());
    let runs = if on_worker {
        crate::mdm::manage::Runs::OnWorker(&app)
    } else {
        crate::mdm::manage::Runs::Blocking
    };
    crate::mdm::manage::handle_round_async(&app, &auth, &body, runs)
        .await
        .map(|r| (auth.device_id().to_string(), r))
        .map_err(|e| {
            tracing::warn!(peer = %peer.addr, device_id = %auth.device_id(), error = %e, "management round failed");
            e.http_status()
        })
}

/// The request's `Content-Type`, lower-cased (empty if absent or not text).
pub fn content_type<B>(req: &Request<B>) -> String {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}
