//! `POST /api/v1/backup`: streams a backup archive ([`crate::backup`]) of the running server.
//!
//! The body is `{}` or `{"passphrase": "…"}` (12 to 1024 characters): with a passphrase the key
//! files are sealed in the archive. Admin tokens only (a read-only token would walk away with
//! the CA key); audited; one backup at a time per node (409 otherwise). The snapshot is taken
//! before the answer starts, so a store that cannot be read gets its error (503) instead of a
//! 200 with a broken archive; a failure later aborts the transfer, and the archive, lacking its
//! manifest, is refused by `winmdm restore`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::{json_body, ApiError};
use crate::app::App;
use crate::backup::{self, WriteOptions};
use crate::http::routes::Resp;
use crate::http::stream::{streamed, ChannelWriter};
use crate::service::backup as svc;
use crate::service::{Actor, ServiceError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request_ {
    #[serde(default)]
    passphrase: Option<String>,
}

/// `POST /api/v1/backup`.
pub async fn create(
    app: &Arc<App>,
    actor: &Actor,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let body: Request_ = json_body(req).await?;
    let permit = svc::begin(actor, body.passphrase.as_deref())?;
    let encrypted = body.passphrase.is_some();
    let now = app.clock.now_unix();
    let (tx, rx) = mpsc::channel(8);
    let (started_tx, started_rx) = oneshot::channel::<Result<bool, ServiceError>>();
    let a = app.clone();
    let opts = WriteOptions {
        passphrase: body.passphrase,
    };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let snap = match a.store.snapshot() {
            Ok(s) => s,
            Err(e) => {
                let _ = started_tx.send(Err(e.into()));
                return;
            }
        };
        if started_tx.send(Ok(snap.is_some())).is_err() {
            return;
        }
        let w = ChannelWriter::new(tx.clone());
        match backup::write(snap.as_deref(), &a.cfg.data_dir, now, &opts, w) {
            Ok(m) => {
                let records: u64 = m.store.iter().flat_map(|s| s.tables.values()).sum();
                tracing::info!(
                    records,
                    key_files = m.key_files.len(),
                    encrypted = m.sealed.is_some(),
                    "backup sent"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "backup failed; the transfer is aborted");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let store_included = started_rx.await.map_err(|_| ServiceError::Internal {
        reason: "the backup task ended early".into(),
    })??;
    svc::audited(app, actor, encrypted, store_included).await;
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"winmdm-backup-{now}.tar\""))
    {
        h.insert(CONTENT_DISPOSITION, v);
    }
    h.insert(
        "x-winmdm-store-included",
        HeaderValue::from_static(if store_included { "true" } else { "false" }),
    );
    Ok(streamed(resp, rx))
}
