//! `GET`/`HEAD /apps/{app_id}/content?token=...` on the main listener: the package bytes for
//! a device's install job. No client certificate (Windows downloads with BITS, which does not
//! present the MDM certificate): the signed token is the authority
//! ([`crate::apps::authorize_download`]); anything wrong is a bare 403. One `Range` (`bytes=a-b`,
//! `a-`, `-n`) gets 206 with `Content-Range`; an unsatisfiable one 416; several ranges are
//! answered with the whole file (200), as RFC 9110 allows. The body is streamed from the store
//! chunk by chunk.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, RANGE,
};
use hyper::{Method, Request, Response, StatusCode};

use super::body::Resp;
use crate::app::App;
use crate::apps::content;

/// Path prefix.
pub const PREFIX: &str = "/apps/";

fn status(code: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// A `Range` that cannot be served (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A byte range asked for, resolved against `size`: `Ok(None)` whole file, `Err` unsatisfiable.
pub fn parse_range(h: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(h) = h else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None); // another unit: ignore the header
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Result<u64, Unsatisfiable> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(Unsatisfiable);
        }
        s.parse().map_err(|_| Unsatisfiable)
    };
    if a.is_empty() {
        let n = num(b)?;
        if n == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        return Ok(Some((size.saturating_sub(n), size - 1)));
    }
    let start = num(a)?;
    if start >= size {
        return Err(Unsatisfiable);
    }
    let end = if b.is_empty() {
        size - 1
    } else {
        num(b)?.min(size - 1)
    };
    if end < start {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

fn token_of(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix("token="))
        .map(str::to_string)
}

/// Serves one request under [`PREFIX`].
pub async fn serve<B>(app: Arc<App>, req: Request<B>) -> Resp {
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD {
        let mut r = status(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    let Some(app_id) = path
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix("/content"))
        .filter(|id| {
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        .map(str::to_string)
    else {
        return status(StatusCode::NOT_FOUND);
    };
    let token = token_of(req.uri().query().unwrap_or("")).unwrap_or_default();
    let range = req
        .headers()
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let a = app.clone();
    let id = app_id.clone();
    let checked =
        tokio::task::spawn_blocking(move || crate::apps::authorize_download(&a, &id, &token)).await;
    let (rec, device_id) = match checked {
        Ok(Ok(x)) => x,
        Ok(Err(crate::apps::Denied::Store(e))) => {
            tracing::warn!(app_id, error = %e, "app download: store unavailable");
            return status(StatusCode::SERVICE_UNAVAILABLE);
        }
        Ok(Err(e)) => {
            tracing::info!(app_id, reason = %e, "app download refused");
            return status(StatusCode::FORBIDDEN);
        }
        Err(e) => {
            tracing::error!(app_id, error = %e, "app download check failed");
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let (Some(content_id), Some(size)) = (rec.content_id.clone(), rec.size) else {
        return status(StatusCode::FORBIDDEN);
    };
    let (code, start, end) = match parse_range(range.as_deref(), size) {
        Ok(None) => (StatusCode::OK, 0, size.saturating_sub(1)),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(Unsatisfiable) => {
            tracing::info!(app_id, device_id, range = ?range, size, "app download: unsatisfiable range");
            let mut r = status(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let mut r = status(code);
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", rec.sha256)) {
        h.insert(ETAG, v);
    }
    if code == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            h.insert(CONTENT_RANGE, v);
        }
    }
    tracing::info!(app_id, device_id, start, len, "app download");
    if method == Method::HEAD || len == 0 {
        return r;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let store = app.clone();
    tokio::task::spawn_blocking(move || {
        let s = store.store.records();
        let chunk = content::CHUNK as u64;
        let mut pos = start;
        while pos <= end {
            let index = pos / chunk;
            let data = match content::chunk(s, &content_id, index) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(content_id, index, error = %e, "app download: reading content failed");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let off = (pos - index * chunk) as usize;
            let stop = ((end - index * chunk + 1) as usize).min(data.len());
            if off >= stop {
                let _ = tx.blocking_send(Err(std::io::Error::other(
                    "app content shorter than its size",
                )));
                return;
            }
            let piece = Bytes::copy_from_slice(&data[off..stop]);
            pos += piece.len() as u64;
            if tx.blocking_send(Ok(piece)).is_err() {
                return; // the client went away
            }
        }
    });
    super::stream::streamed(r, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=90-200"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-200"), 100), Ok(Some((0, 99))));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=5-1"), 100), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=-0"), 100), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=x-1"), 100), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 100), Ok(None));
    }
}
