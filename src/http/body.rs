//! Request bodies and the response type shared by every HTTP adapter (the device endpoints, the
//! admin JSON API, the web console): bounded reads in size and time. A leaf module: it imports no
//! handler, so adapters depend on it without depending on the router.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};

/// The response type of every handler.
pub type Resp = Response<Full<Bytes>>;

/// The body timeout of the server a request arrived on (a request extension, so that code
/// holding only the request can bound its body read).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub std::time::Duration);

impl BodyTimeout {
    /// The timeout recorded on `req`, else the default (30 s).
    pub fn of<B>(req: &Request<B>) -> std::time::Duration {
        req.extensions()
            .get::<BodyTimeout>()
            .map_or(std::time::Duration::from_secs(30), |t| t.0)
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the limit.
    TooLarge(usize),
    /// Not received within the body timeout.
    Timeout,
    /// The connection failed.
    Broken(String),
}

/// Reads a whole body, bounded in size and time (`--body-timeout`).
pub async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(BodyError::TooLarge(limit))
            } else {
                Err(BodyError::Broken(e.to_string()))
            }
        }
    }
}
