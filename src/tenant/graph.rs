//! The token client and the Graph client.
//!
//! * Token: `POST {login}/{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`,
//!   `scope={graph}/.default` and either `client_assertion_type` + `client_assertion`
//!   ([`super::assertion`]) or `client_secret`
//!   (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>).
//!   The token is cached until five minutes before it expires (half its life when shorter).
//! * Graph: JSON requests with `Authorization: Bearer`; a `401` drops the cached token and tries
//!   once more with a new one; `429` and `503`/`504` are retried after `Retry-After` (or an
//!   exponential pause when absent), at most [`MAX_RETRIES`] times
//!   (<https://learn.microsoft.com/graph/throttling>); errors are read from Graph's
//!   `{"error":{"code","message"}}` (<https://learn.microsoft.com/graph/errors>); collections
//!   are followed through `@odata.nextLink` (<https://learn.microsoft.com/graph/paging>), only
//!   on the Graph host itself so the token never goes elsewhere.
//! * Every write (POST, PATCH, DELETE) that Graph accepted is appended to the audit log as
//!   `tenant.graph` with the acting name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::credential::Credential;
use super::state::Connection;
use crate::app::App;

/// Retries of one request after 429/503/504.
pub const MAX_RETRIES: u32 = 5;
/// Longest pause honoured from a `Retry-After`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Most pages followed in one collection.
pub const MAX_PAGES: usize = 10_000;
/// Most items read from one collection.
pub const MAX_ITEMS: usize = 200_000;

/// A cached access token.
pub struct CachedToken {
    key: String,
    token: String,
    refresh_at: Instant,
}

/// Why a Graph call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// No access token: the credential was refused (revoked, wrong certificate, wrong tenant).
    #[error("token request refused: {0}")]
    Auth(String),
    /// The tenant is not connected.
    #[error("no Microsoft tenant is connected")]
    NotConnected,
    /// Graph answered an error.
    #[error("Graph {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Graph's error code.
        code: String,
        /// Graph's message.
        message: String,
    },
    /// Still throttled after the retries.
    #[error("Graph kept answering 429 (throttled) after {0} retries")]
    Throttled(u32),
    /// The network or TLS failed.
    #[error("cannot reach Microsoft: {0}")]
    Transport(String),
    /// An answer Graph does not give.
    #[error("unexpected answer from Microsoft: {0}")]
    Unexpected(String),
}

impl GraphError {
    /// Whether the whole connection is at fault (stop the pass, keep every change pending)
    /// rather than this one request.
    pub fn is_connection(&self) -> bool {
        match self {
            GraphError::Auth(_)
            | GraphError::NotConnected
            | GraphError::Throttled(_)
            | GraphError::Transport(_) => true,
            GraphError::Api { status, .. } => matches!(status, 401 | 403 | 500..=599),
            GraphError::Unexpected(_) => false,
        }
    }

    /// A 404 from Graph.
    pub fn is_not_found(&self) -> bool {
        matches!(self, GraphError::Api { status: 404, .. })
    }
}

/// Percent-encodes a form or query value.
pub fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn first_line(s: &str) -> String {
    crate::store::clip_bytes(s.lines().next().unwrap_or("").trim(), 512)
}

/// Reads Graph's error body.
fn api_error(status: u16, body: &[u8]) -> GraphError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = crate::store::clip_bytes(v["error"]["code"].as_str().unwrap_or(""), 128);
    let message = v["error"]["message"]
        .as_str()
        .map(first_line)
        .unwrap_or_else(|| first_line(&String::from_utf8_lossy(body)));
    GraphError::Api {
        status,
        code: if code.is_empty() {
            "unknown".into()
        } else {
            code
        },
        message,
    }
}

/// A connected tenant's client: the connection record, its credential, the node's runtime.
pub struct Client {
    app: Arc<App>,
    conn: Connection,
    cred: Arc<Credential>,
    /// Who the writes are audited as.
    pub actor: String,
}

impl Client {
    /// A client for `conn` with `cred`, writing audit entries as `actor`.
    pub fn new(app: &Arc<App>, conn: Connection, cred: Credential, actor: &str) -> Client {
        Client {
            app: app.clone(),
            conn,
            cred: Arc::new(cred),
            actor: actor.to_string(),
        }
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn rt(&self) -> &super::Runtime {
        &self.app.tenant
    }

    fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.rt().cfg.login_url,
            self.conn.tenant_id
        )
    }

    fn cache_key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.conn.tenant_id,
            self.conn.client_id,
            self.cred.summary().thumbprint.unwrap_or_default()
        )
    }

    /// An access token (cached).
    pub async fn token(&self) -> Result<String, GraphError> {
        let key = self.cache_key();
        {
            let t = self.rt().token.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = t.as_ref() {
                if t.key == key && Instant::now() < t.refresh_at {
                    return Ok(t.token.clone());
                }
            }
        }
        let url = self.token_url();
        let mut form = format!(
            "client_id={}&scope={}&grant_type=client_credentials",
            enc(&self.conn.client_id),
            enc(&format!("{}/.default", self.rt().cfg.graph_url))
        );
        match self.cred.as_ref() {
            Credential::Certificate(c) => {
                let jwt = super::assertion::sign(
                    c,
                    &self.conn.client_id,
                    &url,
                    self.app.clock.now_unix(),
                    &crate::clock::random_hex(16),
                )
                .map_err(GraphError::Auth)?;
                form.push_str(&format!(
                    "&client_assertion_type={}&client_assertion={}",
                    enc(super::assertion::ASSERTION_TYPE),
                    enc(&jwt)
                ));
            }
            Credential::Secret(s) => form.push_str(&format!("&client_secret={}", enc(s))),
        }
        let http = self.rt().http().map_err(GraphError::Transport)?;
        let a = http
            .send(
                "POST",
                &url,
                &[],
                Some(("application/x-www-form-urlencoded", form.into_bytes())),
            )
            .await
            .map_err(GraphError::Transport)?;
        let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        if a.status != 200 {
            let e = crate::store::clip_bytes(v["error"].as_str().unwrap_or("error"), 128);
            let d = v["error_description"]
                .as_str()
                .map(first_line)
                .unwrap_or_default();
            tracing::warn!(status = a.status, error = %e, description = %d, "tenant: token request refused");
            return Err(GraphError::Auth(format!("{e}: {d}")));
        }
        let token = v["access_token"]
            .as_str()
            .filter(|t| !t.is_empty() && t.len() < 16 * 1024)
            .ok_or_else(|| GraphError::Unexpected("token answer without access_token".into()))?
            .to_string();
        let expires = v["expires_in"].as_u64().unwrap_or(3599).clamp(60, 86_400);
        let margin = if expires > 600 { 300 } else { expires / 2 };
        *self.rt().token.lock().unwrap_or_else(|p| p.into_inner()) = Some(CachedToken {
            key,
            token: token.clone(),
            refresh_at: Instant::now() + Duration::from_secs(expires - margin),
        });
        Ok(token)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.rt().cfg.graph_url, path)
    }

    /// One Graph request on `path` (`/v1.0/...`, `/beta/...`) or an absolute URL on the Graph
    /// host (a next link). Returns the status and the JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), GraphError> {
        let url = if path.starts_with("https://") {
            // Only the Graph host gets the token.
            let base = format!("{}/", self.rt().cfg.graph_url);
            if !path.starts_with(&base) {
                return Err(GraphError::Unexpected(format!(
                    "a next link outside {}",
                    self.rt().cfg.graph_url
                )));
            }
            path.to_string()
        } else {
            self.url(path)
        };
        let http = self.rt().http().map_err(GraphError::Transport)?;
        let payload = body.map(|b| b.to_string().into_bytes());
        let mut retries = 0;
        let mut renewed = false;
        loop {
            let token = self.token().await?;
            let headers = [("authorization", format!("Bearer {token}"))];
            let a = http
                .send(
                    method,
                    &url,
                    &headers,
                    payload.clone().map(|p| ("application/json", p)),
                )
                .await
                .map_err(GraphError::Transport)?;
            match a.status {
                401 if !renewed => {
                    self.rt().forget_token();
                    renewed = true;
                    continue;
                }
                429 | 503 | 504 => {
                    if retries >= MAX_RETRIES {
                        return Err(if a.status == 429 {
                            GraphError::Throttled(retries)
                        } else {
                            api_error(a.status, &a.body)
                        });
                    }
                    let wait = a
                        .retry_after
                        .map(Duration::from_secs)
                        .unwrap_or(Duration::from_secs(1 << retries.min(6)))
                        .min(MAX_RETRY_AFTER);
                    retries += 1;
                    tracing::info!(status = a.status, method, path = %crate::store::clip_bytes(path, 300), wait_s = wait.as_secs(), retry = retries, "Graph throttled: waiting as Retry-After asks");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                s if (200..300).contains(&s) => {
                    let v = if a.body.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&a.body).map_err(|e| {
                            GraphError::Unexpected(format!("{method} {path}: not JSON ({e})"))
                        })?
                    };
                    if method != "GET" {
                        self.audit(method, path, s).await;
                    }
                    return Ok((s, v));
                }
                s => {
                    let e = api_error(s, &a.body);
                    tracing::warn!(method, path = %crate::store::clip_bytes(path, 300), error = %e, "Graph request failed");
                    return Err(e);
                }
            }
        }
    }

    async fn audit(&self, method: &str, path: &str, status: u16) {
        let entry = crate::store::AuditEntry {
            id: 0,
            at: self.app.clock.now_unix(),
            actor: self.actor.clone(),
            action: "tenant.graph".into(),
            target: path.split('?').next().unwrap_or(path).to_string(),
            detail: serde_json::json!({ "method": method, "status": status, "tenant_id": self.conn.tenant_id }),
        };
        let a = self.app.clone();
        if let Err(e) = crate::service::blocking(move || Ok(a.store.append_audit(entry)?)).await {
            tracing::error!(error = %e, "audit entry of a Graph write not written");
        }
    }

    /// GET, JSON object answer.
    pub async fn get(&self, path: &str) -> Result<Value, GraphError> {
        Ok(self.call("GET", path, None).await?.1)
    }

    /// Every item of a collection, following `@odata.nextLink` (bounded).
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, GraphError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        let mut pages = 0;
        while let Some(p) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(GraphError::Unexpected(format!(
                    "more than {MAX_PAGES} pages"
                )));
            }
            let v = self.get(&p).await?;
            let items = v["value"]
                .as_array()
                .ok_or_else(|| GraphError::Unexpected(format!("GET {path}: no value array")))?;
            out.extend(items.iter().cloned());
            if out.len() > MAX_ITEMS {
                return Err(GraphError::Unexpected(format!(
                    "more than {MAX_ITEMS} items"
                )));
            }
            next = v["@odata.nextLink"].as_str().map(str::to_string);
        }
        Ok(out)
    }
}
