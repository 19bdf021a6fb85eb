//! Thin JSON handlers of bulk-enrollment provisioning packages ([`crate::service::bulk`]).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/api/v1/bulk-enrollment/package?upn=<windows-bulkenroll…>` | 200 `application/xml`: the WCD customizations ([`crate::service::wcd`]); 400 not a bulk account; 404 unknown user; 409 disabled |
//! | DELETE | `/api/v1/bulk-enrollment/packages/{package_id}` | 204 (its secret no longer enrolls); 404 |

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::{bad, no_content, percent_decode, ApiError};
use crate::app::App;
use crate::http::body::Resp;
use crate::service::bulk as svc;
pub use crate::service::bulk::{packages_of, verify_package_secret, PackageView};
use crate::service::Actor;

/// `GET /api/v1/bulk-enrollment/package?upn=`.
pub(super) async fn package(app: &Arc<App>, actor: &Actor, query: &str) -> Result<Resp, ApiError> {
    let mut upn = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("upn", v) => upn = Some(percent_decode(&v.replace('+', " "))?),
            (k, _) => return Err(bad(format!("unknown query parameter {k:?}"))),
        }
    }
    let upn = upn.ok_or_else(|| bad("upn is required"))?;
    let p = svc::package(app, actor, &upn).await?;
    let mut r = Response::new(Full::new(Bytes::from(p.xml)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", p.file_name)) {
        r.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&p.package_id) {
        r.headers_mut().insert("x-winmdm-package-id", v);
    }
    *r.status_mut() = StatusCode::OK;
    Ok(r)
}

/// `DELETE /api/v1/bulk-enrollment/packages/{package_id}`.
pub(super) async fn revoke(app: &Arc<App>, actor: &Actor, id: &str) -> Result<Resp, ApiError> {
    svc::revoke(app, actor, id).await?;
    Ok(no_content())
}
