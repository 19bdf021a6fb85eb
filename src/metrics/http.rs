//! The HTTP side of the metrics: `GET /metrics` on the admin listener (behind a token whose
//! role may scrape: `metrics`, `read-only` or `admin`), and the optional plain-HTTP listener
//! `--metrics-listen` that serves only `GET /metrics`, without authentication (what Prometheus
//! expects; bind it to loopback or a private interface).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::admin::tokens::{self, TokenRole};
use crate::admin::ApiError;
use crate::app::App;
use crate::http::routes::{text, Resp};

/// The path.
pub const PATH: &str = "/metrics";
/// Connections the plain listener serves at once.
const MAX_PLAIN_CONNECTIONS: usize = 16;
/// Longest a plain-listener connection stays open.
const PLAIN_CONNECTION_LIMIT: Duration = Duration::from_secs(60);

/// Whether a token of `role` may read `/metrics`.
pub fn may_scrape(role: TokenRole) -> bool {
    matches!(
        role,
        TokenRole::Admin | TokenRole::ReadOnly | TokenRole::Metrics
    )
}

fn method_not_allowed() -> Resp {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET"));
    r
}

/// `GET /metrics` on the admin listener: 401 without a valid token, 403 for a role that may
/// not scrape (none today: every role may), else the exposition.
pub async fn scrape(app: Arc<App>, req: Request<Incoming>) -> Resp {
    if req.method() != Method::GET {
        return method_not_allowed();
    }
    let actor = match tokens::authenticate(&app, &req).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    tracing::Span::current().record("actor", actor.name.as_str());
    if !may_scrape(actor.role) {
        return ApiError::from(crate::service::ServiceError::Forbidden {
            reason: format!("token {:?} may not read /metrics", actor.name),
        })
        .into_response();
    }
    render(app).await
}

/// The exposition as an HTTP response.
pub async fn render(app: Arc<App>) -> Resp {
    let body = match tokio::task::spawn_blocking(move || app.metrics.render(&app)).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "metrics: rendering failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(super::CONTENT_TYPE));
    r
}

async fn plain(app: Arc<App>, req: Request<Incoming>) -> Resp {
    if req.uri().path() != PATH {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if req.method() != Method::GET {
        return method_not_allowed();
    }
    render(app).await
}

/// Binds `--metrics-listen`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr).await?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics listener is not on loopback: /metrics is served there without authentication");
    }
    Ok(l)
}

/// Serves `GET /metrics` over plain HTTP/1.1 on `listener` until `stop` turns true.
pub async fn serve_plain(
    listener: TcpListener,
    app: Arc<App>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if let Ok(a) = listener.local_addr() {
        tracing::info!(addr = %a, "listening (plain HTTP, GET /metrics only)");
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_PLAIN_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "metrics listener: too many connections; closing this one");
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(plain(app, req).await) }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let conn = b.serve_connection(TokioIo::new(tcp), svc);
            if tokio::time::timeout(PLAIN_CONNECTION_LIMIT, conn)
                .await
                .is_err()
            {
                tracing::debug!(%peer, "metrics connection closed after its time limit");
            }
        });
    }
}
