//! Server configuration: command-line flags, environment variables and an optional TOML file,
//! merged into one validated [`Config`].
//!
//! Precedence, highest first: flag, environment variable (`WINMDM_*`), config file
//! (`--config`), built-in default. This module opens no sockets and no database; it only reads
//! the config file when asked to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::ca::KeyAlgorithm;
use crate::soap::provisioning::PollSchedule;

/// Everything `winmdm serve` may be told. Every field is optional so that the flag, the
/// environment and the file can be merged; see [`ServeOptions::resolve`].
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ServeOptions {
    /// Address the TLS listener binds (default 127.0.0.1:8443).
    #[arg(long, env = "WINMDM_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The https URL devices use to reach this server; every URL handed to a device is built
    /// from it (default https://localhost:8443).
    #[arg(long, env = "WINMDM_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Directory holding the store, the CA and the TLS keys (default ./winmdm-data).
    #[arg(long, env = "WINMDM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Serve the admin API (`/api/v1`) on this separate address instead of the main listener.
    #[arg(long, env = "WINMDM_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// The https URL of the mutual-TLS management endpoint (OMA-DM and certificate renewal),
    /// the only one that asks for a client certificate; it goes into every provisioning
    /// document (w7 ADDR, WSTEP/Renew ServerURL). Default: the public URL's host on the next
    /// port (https://localhost:8444).
    #[arg(long, env = "WINMDM_MGMT_URL")]
    pub mgmt_url: Option<String>,
    /// Address of the mutual-TLS management listener (default: --listen's address on the next
    /// port, 127.0.0.1:8444), or `off` to have no second listener and pick the management
    /// TLS configuration by SNI on the main listener (needs --mgmt-url with another host name
    /// on the public URL's port).
    #[arg(long, env = "WINMDM_MGMT_LISTEN")]
    pub mgmt_listen: Option<String>,
    /// PEM certificate chain for the TLS listener (e.g. from a public CA). Needs --tls-key.
    #[arg(long, env = "WINMDM_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "WINMDM_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate of an existing enrollment CA to use instead of generating one. Needs --ca-key.
    #[arg(long, env = "WINMDM_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// PEM private key for --ca-cert.
    #[arg(long, env = "WINMDM_CA_KEY")]
    pub ca_key: Option<PathBuf>,
    /// Key algorithm of a generated CA: rsa2048 (default), rsa3072, rsa4096, ecdsa-p256.
    #[arg(long, env = "WINMDM_CA_KEY_ALGORITHM")]
    pub ca_key_algorithm: Option<String>,
    /// Lifetime of issued device certificates, in days (default 365).
    #[arg(long, env = "WINMDM_CERT_VALIDITY_DAYS")]
    pub cert_validity_days: Option<u32>,
    /// DMClient provider id written into provisioning documents (default "winmdm").
    #[arg(long, env = "WINMDM_PROVIDER_ID")]
    pub provider_id: Option<String>,
    /// Display name of the management service on the device (default "winmdm").
    #[arg(long, env = "WINMDM_SERVICE_NAME")]
    pub service_name: Option<String>,
    /// Poll schedule, "first_interval,first_count,second_interval,second_count,remaining_interval,remaining_count"
    /// in minutes (default "3,10,15,8,1440,0").
    #[arg(long, env = "WINMDM_POLL_SCHEDULE")]
    pub poll_schedule: Option<String>,
    /// Largest request body accepted, in bytes (default 1048576).
    #[arg(long, env = "WINMDM_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Management requests per second across all devices of this node before devices get 429 (0 = no limit, the default). Per node: with N nodes behind a load balancer the fleet-wide bound is N times this.
    #[arg(long, env = "WINMDM_MANAGEMENT_RATE")]
    pub management_rate: Option<u32>,
    /// Devices one user may have enrolled at once; a further enrollment by that user (of a new
    /// DeviceID) is refused with `s:Authorization` (default 15; 0 = no limit). Bulk-enrollment
    /// accounts and device-only Entra enrollments are not counted.
    #[arg(long, env = "WINMDM_MAX_DEVICES_PER_USER")]
    pub max_devices_per_user: Option<usize>,
    /// Seconds a throttled device is told to wait (`Retry-After`, default 60).
    #[arg(long, env = "WINMDM_RETRY_AFTER")]
    pub retry_after: Option<u32>,
    /// Accept management requests without a TLS client certificate when they carry a valid
    /// `MDM-Signature` (DMClient RequireMessageSigning), for TLS-terminating proxies. Off by default.
    #[arg(long, env = "WINMDM_MESSAGE_SIGNING")]
    pub message_signing: Option<bool>,
    /// Seconds allowed for a TLS handshake (default 10).
    #[arg(long, env = "WINMDM_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<u64>,
    /// Seconds allowed to receive a request's headers (HTTP/1.1, default 10).
    #[arg(long, env = "WINMDM_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,
    /// Seconds allowed to receive a request body (default 30).
    #[arg(long, env = "WINMDM_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,
    /// Seconds a connection may stay without any traffic between requests before it is
    /// closed (default 60).
    #[arg(long, env = "WINMDM_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Connections held at once; at the limit the idlest connection is closed to admit a new
    /// one (default 8192).
    #[arg(long, env = "WINMDM_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Memory for the embedded store's page cache, in MiB (default 128).
    #[arg(long, env = "WINMDM_STORE_CACHE_MB")]
    pub store_cache_mb: Option<u64>,
    /// Keep the store in PostgreSQL instead of the embedded store in the data directory:
    /// `postgres://user[:password]@host[:port]/database[?sslmode=require]`. Several nodes may
    /// share one database. The password is never logged.
    #[arg(long, env = "WINMDM_DATABASE_URL")]
    pub database_url: Option<DatabaseUrl>,
    /// Password checks (argon2id, 19 MiB each) run at once across the server (default: the
    /// number of cores). Up to 8 more requests per worker wait, each at most
    /// --password-wait-ms; beyond that enrollment gets a "try again later" fault.
    #[arg(long, env = "WINMDM_PASSWORD_WORKERS")]
    pub password_workers: Option<usize>,
    /// Longest wait for a password-check worker, in milliseconds (default 2000).
    #[arg(long, env = "WINMDM_PASSWORD_WAIT_MS")]
    pub password_wait_ms: Option<u64>,
    /// How long an admin request that starts a background job (a profile's reconciliation)
    /// waits for it before answering 202 with the job, in milliseconds (default 2000).
    #[arg(long, env = "WINMDM_JOB_WAIT_MS")]
    pub job_wait_ms: Option<u64>,
    /// How long answered and cancelled commands stay in a device's history before a background
    /// sweep deletes them: a number with s, m, h or d (default 90d; 0 keeps them forever).
    /// Unanswered commands, and those a profile deployment still reports on, are never deleted.
    #[arg(long, env = "WINMDM_COMMAND_RETENTION")]
    pub command_retention: Option<String>,
    /// SMTP server for invitation e-mails: smtp://[user@]host[:port] (plain; add ?tls=required
    /// for STARTTLS) or smtps://[user@]host[:port]. The password comes from WINMDM_SMTP_PASSWORD.
    #[arg(long, env = "WINMDM_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender of invitation e-mails (e.g. "MDM <mdm@example.com>"). Needs --smtp-url.
    #[arg(long, env = "WINMDM_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Password of the `--smtp-url` user: only from `WINMDM_SMTP_PASSWORD` (read by `winmdm
    /// serve`), never a flag (process list) nor a config-file key.
    #[arg(skip)]
    #[serde(skip)]
    pub smtp_password: Option<String>,
    /// Which discovery AuthPolicy to answer: onpremise (default; user name + password in the
    /// WS-Security header), federated (our login page at /EnrollmentServer/Auth issues a token),
    /// or both (federated preferred when the device offers it, OnPremise otherwise).
    #[arg(long, env = "WINMDM_AUTH_POLICY")]
    pub auth_policy: Option<String>,
    /// Entra ID tenant ids (GUIDs, comma-separated) whose access tokens are accepted.
    #[arg(long, env = "WINMDM_ENTRA_TENANTS")]
    pub entra_tenants: Option<String>,
    /// Accepted `aud` values of Entra tokens: the MDM application's id and/or App ID URI (comma-separated).
    #[arg(long, env = "WINMDM_ENTRA_AUDIENCES")]
    pub entra_audiences: Option<String>,
    /// Entra signing keys: a JWKS file path or an https URL (e.g.
    /// https://login.microsoftonline.com/common/discovery/v2.0/keys). Setting it enables Entra tokens.
    #[arg(long, env = "WINMDM_ENTRA_JWKS")]
    pub entra_jwks: Option<String>,
    /// Delegated scope a user token must carry in `scp` (default mdm_delegation).
    #[arg(long, env = "WINMDM_ENTRA_SCOPE")]
    pub entra_scope: Option<String>,
    /// App role an app-only token (device enrollment without a user, e.g. Autopilot
    /// self-deploying) must carry in `roles`. Unset: app-only tokens are refused.
    #[arg(long, env = "WINMDM_ENTRA_DEVICE_ROLE")]
    pub entra_device_role: Option<String>,
    /// Create unknown Entra users on first enrollment (enabled, no usable password). Off by default.
    #[arg(long, env = "WINMDM_ENTRA_AUTO_CREATE_USERS")]
    pub entra_auto_create_users: Option<bool>,
    /// HTML or text fragment shown on the terms-of-use page (default: a short built-in text).
    #[arg(long, env = "WINMDM_TOS_FILE")]
    pub tos_file: Option<PathBuf>,
    /// Certificate renewal (ROBO): `on` (default) advertises it in provisioning documents and
    /// accepts renewal requests; `off` does neither.
    #[arg(long, env = "WINMDM_RENEWAL")]
    pub renewal: Option<String>,
    /// Days before expiry the device starts renewing (`WSTEP/Renew/RenewPeriod`, 1-1000; default
    /// 42, the CSP default, or less when certificates live shorter). Renewals earlier are refused.
    #[arg(long, env = "WINMDM_RENEW_PERIOD_DAYS")]
    pub renew_period_days: Option<u32>,
    /// Days the device waits before retrying a failed renewal (`WSTEP/Renew/RetryInterval`,
    /// 1-1000, default 7).
    #[arg(long, env = "WINMDM_RENEW_RETRY_DAYS")]
    pub renew_retry_days: Option<u32>,
    /// Days a renewed device's old certificate stays accepted if the device does not use its new
    /// one first (default 7; 0 = only until the renewal itself).
    #[arg(long, env = "WINMDM_RENEW_GRACE_DAYS")]
    pub renew_grace_days: Option<u32>,
    /// Entra tenant id (GUID) written into exported Autopilot configuration files.
    #[arg(long, env = "WINMDM_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Entra tenant primary domain (e.g. contoso.onmicrosoft.com) for Autopilot exports.
    #[arg(long, env = "WINMDM_TENANT_DOMAIN")]
    pub tenant_domain: Option<String>,
    /// Also serve `GET /metrics` without authentication over plain HTTP on this address
    /// (e.g. 127.0.0.1:9464 for a local Prometheus). `/metrics` on the admin listener, behind a
    /// token, is always there.
    #[arg(long, env = "WINMDM_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format on stderr: `text` (default) or `json` (one JSON object per line, with the
    /// request span's fields: trace id, device id, session id, admin actor).
    #[arg(long, env = "WINMDM_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Results webhook: every command result, enrollment, unenrollment, renewal, Autopilot link
    /// and profile state change is POSTed here as signed JSON (https; plain http only for a
    /// loopback receiver). Needs a secret (--webhook-secret-file or WINMDM_WEBHOOK_SECRET).
    #[arg(long, env = "WINMDM_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// File holding the webhook's HMAC-SHA256 key (16-4096 bytes; white space around it is
    /// ignored). Or give the key in WINMDM_WEBHOOK_SECRET.
    #[arg(long, env = "WINMDM_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// The webhook key from `WINMDM_WEBHOOK_SECRET` (read by `winmdm serve`): never a flag nor
    /// a config-file key.
    #[arg(skip)]
    #[serde(skip)]
    pub webhook_secret: Option<String>,
    /// PEM CA certificate(s) trusted for the webhook receiver, besides the system roots.
    #[arg(long, env = "WINMDM_WEBHOOK_CA")]
    pub webhook_ca: Option<PathBuf>,
    /// Delivery attempts of one event before it moves to the dead letters (default 20, with
    /// exponential backoff capped at 15 minutes: about 2.8 hours).
    #[arg(long, env = "WINMDM_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: Option<u32>,
    /// Age after which an undelivered event moves to the dead letters: a number with s, m, h or
    /// d (default 3d).
    #[arg(long, env = "WINMDM_WEBHOOK_MAX_AGE")]
    pub webhook_max_age: Option<String>,
    /// Largest app package (MSI) accepted by `POST /api/v1/apps`, in MiB (default 2048).
    #[arg(long, env = "WINMDM_APP_MAX_MB")]
    pub app_max_mb: Option<u64>,
    /// Total size of all uploaded app packages, in MiB (default 20480).
    #[arg(long, env = "WINMDM_APP_QUOTA_MB")]
    pub app_quota_mb: Option<u64>,
    /// Validity of the signed app download URLs handed to devices: a number with s, m, h or d
    /// (default 24h). A URL is signed when its install command is sent.
    #[arg(long, env = "WINMDM_APP_URL_TTL")]
    pub app_url_ttl: Option<String>,
    /// Microsoft tenant: login (token) base URL (default https://login.microsoftonline.com; a
    /// national cloud's, e.g. https://login.microsoftonline.us).
    #[arg(long, env = "WINMDM_GRAPH_LOGIN_URL")]
    pub graph_login_url: Option<String>,
    /// Microsoft tenant: Graph base URL (default https://graph.microsoft.com).
    #[arg(long, env = "WINMDM_GRAPH_URL")]
    pub graph_url: Option<String>,
    /// PEM CA certificate(s) trusted for the login and Graph hosts, besides the system roots
    /// (a proxy's CA, or a test stand-in's).
    #[arg(long, env = "WINMDM_GRAPH_CA")]
    pub graph_ca: Option<PathBuf>,
    /// How often the tenant's Autopilot devices are pulled: a number with s, m, h or d
    /// (default 1h; 0: only on demand, `winmdm tenant sync`).
    #[arg(long, env = "WINMDM_TENANT_SYNC_INTERVAL")]
    pub tenant_sync_interval: Option<String>,
    /// How often pending changes are pushed to the tenant and imports followed (default 30s).
    #[arg(long, env = "WINMDM_TENANT_POLL")]
    pub tenant_poll: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default format).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<LogFormat, ConfigError> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(ConfigError::Invalid {
                field: "log_format",
                reason: format!("{other:?} is not text or json"),
            }),
        }
    }
}

impl ServeOptions {
    /// Reads a TOML config file holding the same keys as the flags (snake_case).
    pub fn from_file(path: &Path) -> Result<ServeOptions, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Fills every unset field of `self` from `lower` (self wins).
    pub fn or(self, lower: ServeOptions) -> ServeOptions {
        ServeOptions {
            listen: self.listen.or(lower.listen),
            public_url: self.public_url.or(lower.public_url),
            data_dir: self.data_dir.or(lower.data_dir),
            admin_listen: self.admin_listen.or(lower.admin_listen),
            mgmt_url: self.mgmt_url.or(lower.mgmt_url),
            mgmt_listen: self.mgmt_listen.or(lower.mgmt_listen),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            ca_cert: self.ca_cert.or(lower.ca_cert),
            ca_key: self.ca_key.or(lower.ca_key),
            ca_key_algorithm: self.ca_key_algorithm.or(lower.ca_key_algorithm),
            cert_validity_days: self.cert_validity_days.or(lower.cert_validity_days),
            provider_id: self.provider_id.or(lower.provider_id),
            service_name: self.service_name.or(lower.service_name),
            poll_schedule: self.poll_schedule.or(lower.poll_schedule),
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
            management_rate: self.management_rate.or(lower.management_rate),
            max_devices_per_user: self.max_devices_per_user.or(lower.max_devices_per_user),
            retry_after: self.retry_after.or(lower.retry_after),
            message_signing: self.message_signing.or(lower.message_signing),
            handshake_timeout: self.handshake_timeout.or(lower.handshake_timeout),
            header_timeout: self.header_timeout.or(lower.header_timeout),
            body_timeout: self.body_timeout.or(lower.body_timeout),
            idle_timeout: self.idle_timeout.or(lower.idle_timeout),
            max_connections: self.max_connections.or(lower.max_connections),
            store_cache_mb: self.store_cache_mb.or(lower.store_cache_mb),
            database_url: self.database_url.or(lower.database_url),
            password_workers: self.password_workers.or(lower.password_workers),
            password_wait_ms: self.password_wait_ms.or(lower.password_wait_ms),
            job_wait_ms: self.job_wait_ms.or(lower.job_wait_ms),
            command_retention: self.command_retention.or(lower.command_retention),
            smtp_url: self.smtp_url.or(lower.smtp_url),
            smtp_from: self.smtp_from.or(lower.smtp_from),
            smtp_password: self.smtp_password.or(lower.smtp_password),
            auth_policy: self.auth_policy.or(lower.auth_policy),
            entra_tenants: self.entra_tenants.or(lower.entra_tenants),
            entra_audiences: self.entra_audiences.or(lower.entra_audiences),
            entra_jwks: self.entra_jwks.or(lower.entra_jwks),
            entra_scope: self.entra_scope.or(lower.entra_scope),
            entra_device_role: self.entra_device_role.or(lower.entra_device_role),
            entra_auto_create_users: self
                .entra_auto_create_users
                .or(lower.entra_auto_create_users),
            tos_file: self.tos_file.or(lower.tos_file),
            renewal: self.renewal.or(lower.renewal),
            renew_period_days: self.renew_period_days.or(lower.renew_period_days),
            renew_retry_days: self.renew_retry_days.or(lower.renew_retry_days),
            renew_grace_days: self.renew_grace_days.or(lower.renew_grace_days),
            tenant_id: self.tenant_id.or(lower.tenant_id),
            tenant_domain: self.tenant_domain.or(lower.tenant_domain),
            metrics_listen: self.metrics_listen.or(lower.metrics_listen),
            log_format: self.log_format.or(lower.log_format),
            webhook_url: self.webhook_url.or(lower.webhook_url),
            webhook_secret_file: self.webhook_secret_file.or(lower.webhook_secret_file),
            webhook_secret: self.webhook_secret.or(lower.webhook_secret),
            webhook_ca: self.webhook_ca.or(lower.webhook_ca),
            webhook_max_attempts: self.webhook_max_attempts.or(lower.webhook_max_attempts),
            webhook_max_age: self.webhook_max_age.or(lower.webhook_max_age),
            app_max_mb: self.app_max_mb.or(lower.app_max_mb),
            app_quota_mb: self.app_quota_mb.or(lower.app_quota_mb),
            app_url_ttl: self.app_url_ttl.or(lower.app_url_ttl),
            graph_login_url: self.graph_login_url.or(lower.graph_login_url),
            graph_url: self.graph_url.or(lower.graph_url),
            graph_ca: self.graph_ca.or(lower.graph_ca),
            tenant_sync_interval: self.tenant_sync_interval.or(lower.tenant_sync_interval),
            tenant_poll: self.tenant_poll.or(lower.tenant_poll),
        }
    }

    /// Applies defaults and validates.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let public_url = PublicUrl::parse(
            self.public_url
                .as_deref()
                .unwrap_or("https://localhost:8443"),
        )?;
        let pair = |a: &Option<PathBuf>, b: &Option<PathBuf>, what: &'static str| {
            if a.is_some() != b.is_some() {
                Err(ConfigError::Incomplete { what })
            } else {
                Ok(())
            }
        };
        pair(
            &self.tls_cert,
            &self.tls_key,
            "--tls-cert and --tls-key go together",
        )?;
        pair(
            &self.ca_cert,
            &self.ca_key,
            "--ca-cert and --ca-key go together",
        )?;
        let ca_key_algorithm = match self.ca_key_algorithm.as_deref() {
            None => KeyAlgorithm::default(),
            Some(s) => s.parse().map_err(|_| ConfigError::Invalid {
                field: "ca_key_algorithm",
                reason: format!("{s:?} is not one of rsa2048, rsa3072, rsa4096, ecdsa-p256"),
            })?,
        };
        let days = self.cert_validity_days.unwrap_or(365);
        if !(1..=3650).contains(&days) {
            return Err(ConfigError::Invalid {
                field: "cert_validity_days",
                reason: format!("{days} is outside 1..=3650"),
            });
        }
        let renewal = resolve_renewal(&self, days)?;
        let poll = match self.poll_schedule.as_deref() {
            None => PollSchedule::default(),
            Some(s) => parse_poll_schedule(s)?,
        };
        let provider_id = self.provider_id.unwrap_or_else(|| "winmdm".into());
        if provider_id.is_empty()
            || !provider_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(ConfigError::Invalid {
                field: "provider_id",
                reason: "use letters, digits, '-', '_' and '.' only".into(),
            });
        }
        let smtp = match (self.smtp_url, self.smtp_from) {
            (None, None) => None,
            (Some(url), Some(from)) => {
                let mut smtp = SmtpConfig::parse(url, from)?;
                smtp.password = self.smtp_password.filter(|p| !p.is_empty());
                if let (Some(user), None) = (&smtp.user, &smtp.password) {
                    return Err(ConfigError::Invalid {
                        field: "smtp_url",
                        reason: format!(
                            "it names the user {user:?} but WINMDM_SMTP_PASSWORD is not set"
                        ),
                    });
                }
                Some(smtp)
            }
            _ => {
                return Err(ConfigError::Incomplete {
                    what: "--smtp-url and --smtp-from go together",
                })
            }
        };
        let max_body_bytes = self.max_body_bytes.unwrap_or(1 << 20);
        if max_body_bytes < 4096 {
            return Err(ConfigError::Invalid {
                field: "max_body_bytes",
                reason: "must be at least 4096".into(),
            });
        }
        let secs = |v: Option<u64>, default: u64, field: &'static str| {
            let v = v.unwrap_or(default);
            if (1..=3600).contains(&v) {
                Ok(Duration::from_secs(v))
            } else {
                Err(ConfigError::Invalid {
                    field,
                    reason: format!("{v} seconds is outside 1..=3600"),
                })
            }
        };
        let conn = ConnLimits {
            handshake_timeout: secs(self.handshake_timeout, 10, "handshake_timeout")?,
            header_timeout: secs(self.header_timeout, 10, "header_timeout")?,
            body_timeout: secs(self.body_timeout, 30, "body_timeout")?,
            idle_timeout: secs(self.idle_timeout, 60, "idle_timeout")?,
            max_connections: match self.max_connections.unwrap_or(8192) {
                n @ 1..=1_000_000 => n,
                n => {
                    return Err(ConfigError::Invalid {
                        field: "max_connections",
                        reason: format!("{n} is outside 1..=1000000"),
                    })
                }
            },
        };
        let store_cache_mb = self.store_cache_mb.unwrap_or(128);
        if !(8..=65_536).contains(&store_cache_mb) {
            return Err(ConfigError::Invalid {
                field: "store_cache_mb",
                reason: format!("{store_cache_mb} is outside 8..=65536"),
            });
        }
        let password_workers = self
            .password_workers
            .unwrap_or_else(crate::password_work::PasswordWork::default_permits);
        if !(1..=1024).contains(&password_workers) {
            return Err(ConfigError::Invalid {
                field: "password_workers",
                reason: format!("{password_workers} is outside 1..=1024"),
            });
        }
        let password_wait_ms = self
            .password_wait_ms
            .unwrap_or(crate::password_work::DEFAULT_WAIT_MS);
        if password_wait_ms > 60_000 {
            return Err(ConfigError::Invalid {
                field: "password_wait_ms",
                reason: format!("{password_wait_ms} is more than 60000"),
            });
        }
        let job_wait_ms = self.job_wait_ms.unwrap_or(2_000);
        if job_wait_ms > 60_000 {
            return Err(ConfigError::Invalid {
                field: "job_wait_ms",
                reason: format!("{job_wait_ms} is more than 60000"),
            });
        }
        let apps = AppsConfig::resolve(
            self.app_max_mb,
            self.app_quota_mb,
            self.app_url_ttl.as_deref(),
        )?;
        let command_retention = match self.command_retention.as_deref() {
            None => Some(Duration::from_secs(90 * 86_400)),
            Some(v) => parse_retention(v).map_err(|reason| ConfigError::Invalid {
                field: "command_retention",
                reason,
            })?,
        };
        let auth_policy = match self.auth_policy.as_deref() {
            None => AuthPolicyMode::OnPremise,
            Some(s) => s.parse().map_err(|_| ConfigError::Invalid {
                field: "auth_policy",
                reason: format!("{s:?} is not one of onpremise, federated, both"),
            })?,
        };
        let entra = resolve_entra(
            self.entra_jwks,
            self.entra_tenants.as_deref(),
            self.entra_audiences.as_deref(),
            self.entra_scope,
            self.entra_device_role,
            self.entra_auto_create_users.unwrap_or(false),
        )?;
        let tenant_id = self.tenant_id.map(|t| t.trim().to_ascii_lowercase());
        if let Some(t) = &tenant_id {
            if !is_guid(t) {
                return Err(ConfigError::Invalid {
                    field: "tenant_id",
                    reason: format!("{t:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"),
                });
            }
        }
        let tenant_domain = self.tenant_domain.map(|d| d.trim().to_ascii_lowercase());
        if let Some(d) = &tenant_domain {
            if !is_domain(d) {
                return Err(ConfigError::Invalid {
                    field: "tenant_domain",
                    reason: format!(
                        "{d:?} is not a DNS domain name such as contoso.onmicrosoft.com"
                    ),
                });
            }
        }
        let listen = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443)));
        let (mgmt_url, mgmt_listen) = resolve_mgmt(
            &public_url,
            listen,
            self.mgmt_url.as_deref(),
            self.mgmt_listen.as_deref(),
        )?;
        if let Some(url) = &self.database_url {
            url.check()?;
        }
        let log_format = match self.log_format.as_deref() {
            None => LogFormat::Text,
            Some(f) => f.parse()?,
        };
        let webhook = crate::webhook::WebhookOptions {
            url: self.webhook_url,
            secret_file: self.webhook_secret_file,
            secret: self.webhook_secret,
            ca: self.webhook_ca,
            max_attempts: self.webhook_max_attempts,
            max_age: self.webhook_max_age,
        }
        .resolve()
        .map_err(|(field, reason)| ConfigError::Invalid { field, reason })?;
        let tenant = crate::tenant::TenantOptions {
            login_url: self.graph_login_url,
            graph_url: self.graph_url,
            ca: self.graph_ca,
            sync_interval: self.tenant_sync_interval,
            poll: self.tenant_poll,
        }
        .resolve()
        .map_err(|(field, reason)| ConfigError::Invalid { field, reason })?;
        Ok(Config {
            apps,
            tenant,
            metrics_listen: self.metrics_listen,
            log_format,
            webhook,
            mgmt_url,
            mgmt_listen,
            store_cache_bytes: store_cache_mb << 20,
            database_url: self.database_url,
            password_workers,
            password_wait: Duration::from_millis(password_wait_ms),
            job_wait: Duration::from_millis(job_wait_ms),
            command_retention,
            conn,
            auth_policy,
            entra,
            tos_file: self.tos_file,
            renewal,
            tenant_id,
            tenant_domain,
            listen,
            public_url,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from("winmdm-data")),
            admin_listen: self.admin_listen,
            tls_cert: self.tls_cert.zip(self.tls_key),
            ca_cert: self.ca_cert.zip(self.ca_key),
            ca_key_algorithm,
            cert_validity: Duration::from_secs(u64::from(days) * 86_400),
            provider_id,
            service_name: self.service_name.unwrap_or_else(|| "winmdm".into()),
            poll,
            max_body_bytes,
            management_rate: self.management_rate.unwrap_or(0),
            max_devices_per_user: match self.max_devices_per_user.unwrap_or(15) {
                0 => None,
                n => Some(n),
            },
            retry_after: self.retry_after.unwrap_or(60).clamp(1, 86_400),
            message_signing: self.message_signing.unwrap_or(false),
            smtp,
        })
    }
}

/// Parses a `--command-retention` value: `0` (keep forever) or a positive number with a unit
/// `s`, `m`, `h` or `d` (at least one minute, at most ten years).
pub fn parse_retention(v: &str) -> Result<Option<Duration>, String> {
    let v = v.trim();
    if v == "0" {
        return Ok(None);
    }
    let split = v.len().saturating_sub(1);
    let (num, unit) = (v.get(..split).unwrap_or(""), v.get(split..).unwrap_or(""));
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{v:?}: expected 0 or a number with s, m, h or d (e.g. 90d)"
            ))
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{v:?}: {num:?} is not a whole number"))?;
    let secs = n.saturating_mul(scale);
    if !(60..=10 * 366 * 86_400).contains(&secs) {
        return Err(format!("{v:?} is outside 1m..=3660d"));
    }
    Ok(Some(Duration::from_secs(secs)))
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Main TLS listener address.
    pub listen: SocketAddr,
    /// The public https base URL.
    pub public_url: PublicUrl,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Separate admin listener, if any.
    pub admin_listen: Option<SocketAddr>,
    /// The public base URL of the mutual-TLS management endpoint (w7 `ADDR`, `WSTEP/Renew`
    /// `ServerURL`).
    pub mgmt_url: PublicUrl,
    /// The mutual-TLS listener's address; `None` = management is chosen by SNI
    /// (`mgmt_url.host`) on the main listener.
    pub mgmt_listen: Option<SocketAddr>,
    /// Admin-supplied TLS certificate and key paths.
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    /// Admin-supplied CA certificate and key paths.
    pub ca_cert: Option<(PathBuf, PathBuf)>,
    /// Algorithm of a generated CA key.
    pub ca_key_algorithm: KeyAlgorithm,
    /// Device certificate lifetime.
    pub cert_validity: Duration,
    /// DMClient provider id.
    pub provider_id: String,
    /// Display name of the service.
    pub service_name: String,
    /// Poll schedule written into provisioning documents.
    pub poll: PollSchedule,
    /// Request body limit.
    pub max_body_bytes: usize,
    /// Management requests per second before 429 (0 = unlimited).
    pub management_rate: u32,
    /// Enrolled devices per user at most (`None`: no limit); see `store::tx::record_enrollment`.
    pub max_devices_per_user: Option<usize>,
    /// `Retry-After` seconds on 429.
    pub retry_after: u32,
    /// Accept `MDM-Signature` instead of a TLS client certificate.
    pub message_signing: bool,
    /// SMTP server for invitation e-mails, if configured.
    pub smtp: Option<SmtpConfig>,
    /// Connection time limits and the connection cap.
    pub conn: ConnLimits,
    /// Page cache of the embedded store, in bytes.
    pub store_cache_bytes: u64,
    /// The PostgreSQL store, when set (else the embedded store in `data_dir`).
    pub database_url: Option<DatabaseUrl>,
    /// Password checks run at once ([`crate::password_work`]).
    pub password_workers: usize,
    /// Longest wait for a password-check worker.
    pub password_wait: Duration,
    /// How long an admin request waits for the background job it started.
    pub job_wait: Duration,
    /// Age after which answered and cancelled commands are deleted (`None`: never).
    pub command_retention: Option<Duration>,
    /// Discovery AuthPolicy choice.
    pub auth_policy: AuthPolicyMode,
    /// Entra ID token validation, when enabled (`entra_jwks` set).
    pub entra: Option<EntraConfig>,
    /// Terms-of-use fragment file.
    pub tos_file: Option<PathBuf>,
    /// Certificate renewal (ROBO).
    pub renewal: RenewalSettings,
    /// Entra tenant id (lower-case GUID) for Autopilot exports.
    pub tenant_id: Option<String>,
    /// Entra tenant primary domain for Autopilot exports.
    pub tenant_domain: Option<String>,
    /// Plain-HTTP `GET /metrics` listener, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// The results webhook, when `--webhook-url` is set.
    pub webhook: Option<crate::webhook::WebhookConfig>,
    /// App packages: size limits and download URL validity.
    pub apps: AppsConfig,
    /// The Microsoft tenant integration's endpoints and intervals.
    pub tenant: crate::tenant::TenantConfig,
}

/// Limits of the app catalog ([`crate::apps`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppsConfig {
    /// Largest package, in bytes.
    pub max_bytes: u64,
    /// Total of all uploaded packages, in bytes.
    pub quota_bytes: u64,
    /// Validity of a signed download URL.
    pub url_ttl: Duration,
}

impl Default for AppsConfig {
    fn default() -> AppsConfig {
        AppsConfig {
            max_bytes: 2048 << 20,
            quota_bytes: 20480 << 20,
            url_ttl: Duration::from_secs(86_400),
        }
    }
}

impl AppsConfig {
    fn resolve(
        max_mb: Option<u64>,
        quota_mb: Option<u64>,
        ttl: Option<&str>,
    ) -> Result<AppsConfig, ConfigError> {
        let d = AppsConfig::default();
        let mb = |field: &'static str, v: Option<u64>, default: u64| match v {
            None => Ok(default),
            Some(n) if (1..=1 << 22).contains(&n) => Ok(n << 20),
            Some(n) => Err(ConfigError::Invalid {
                field,
                reason: format!("{n} is outside 1..=4194304 MiB"),
            }),
        };
        let max_bytes = mb("app_max_mb", max_mb, d.max_bytes)?;
        let quota_bytes = mb("app_quota_mb", quota_mb, d.quota_bytes)?;
        let url_ttl = match ttl {
            None => d.url_ttl,
            Some(v) => match parse_retention(v) {
                Ok(Some(t)) if t <= Duration::from_secs(30 * 86_400) => t,
                Ok(_) => {
                    return Err(ConfigError::Invalid {
                        field: "app_url_ttl",
                        reason: format!("{v:?}: give 1m..=30d"),
                    })
                }
                Err(reason) => {
                    return Err(ConfigError::Invalid {
                        field: "app_url_ttl",
                        reason,
                    })
                }
            },
        };
        Ok(AppsConfig {
            max_bytes,
            quota_bytes,
            url_ttl,
        })
    }
}

/// A PostgreSQL URL. Its `Debug` and `Display` hide the password, so a logged [`Config`] never
/// shows it; [`DatabaseUrl::expose`] gives the whole URL to the code that connects.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::Invalid {
            field: "database_url",
            reason,
        };
        if !crate::store::pg::is_database_url(&self.0) {
            return Err(bad(format!(
                "{self}: expected postgres://user@host[:port]/database"
            )));
        }
        self.0
            .parse::<tokio_postgres::Config>()
            .map(|_| ())
            .map_err(|e| bad(format!("{self}: {e}")))
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl(s.to_string()))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::store::pg::redact_url(&self.0))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// How long a connection may take at each step, and how many are held at once: the defences
/// against slow and idle clients (see the README's security table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// TLS handshake.
    pub handshake_timeout: Duration,
    /// Request headers (HTTP/1.1).
    pub header_timeout: Duration,
    /// Request body.
    pub body_timeout: Duration,
    /// No traffic at all while no request is in progress.
    pub idle_timeout: Duration,
    /// Connections held at once.
    pub max_connections: usize,
}

/// Where invitation e-mails go out.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// `smtp://` or `smtps://` URL (no password).
    pub url: String,
    /// The `From` mailbox.
    pub from: String,
    /// SMTP user name (from the URL).
    pub user: Option<String>,
    /// Its password (`WINMDM_SMTP_PASSWORD`); never printed.
    pub password: Option<String>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("url", &self.url)
            .field("from", &self.from)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl SmtpConfig {
    /// Checks `--smtp-url` and `--smtp-from` (syntax only; nothing is contacted).
    pub fn parse(url: String, from: String) -> Result<SmtpConfig, ConfigError> {
        let bad = |field: &'static str, reason: String| ConfigError::Invalid { field, reason };
        let rest = url
            .strip_prefix("smtp://")
            .or_else(|| url.strip_prefix("smtps://"))
            .ok_or_else(|| {
                bad(
                    "smtp_url",
                    format!("{url:?} must start with smtp:// or smtps://"),
                )
            })?;
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(bad("smtp_url", format!("{url:?}: missing host")));
        }
        if userinfo.is_some_and(|u| u.contains(':')) {
            return Err(bad(
                "smtp_url",
                "put the SMTP password in WINMDM_SMTP_PASSWORD, not in the URL".into(),
            ));
        }
        let at = from.rfind('@');
        if from.trim().is_empty() || at.is_none() || from.contains(['\r', '\n']) {
            return Err(bad(
                "smtp_from",
                format!("{from:?} is not an e-mail address"),
            ));
        }
        Ok(SmtpConfig {
            user: userinfo.filter(|u| !u.is_empty()).map(str::to_string),
            url,
            from,
            password: None,
        })
    }
}

/// `--auth-policy`: what discovery answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthPolicyMode {
    /// `OnPremise` only (user name + password).
    #[default]
    OnPremise,
    /// `Federated` only (our login page issues the token).
    Federated,
    /// Both; `Federated` is answered when the device offers it.
    Both,
}

impl std::str::FromStr for AuthPolicyMode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "onpremise" | "on-premise" => Ok(AuthPolicyMode::OnPremise),
            "federated" => Ok(AuthPolicyMode::Federated),
            "both" => Ok(AuthPolicyMode::Both),
            _ => Err(()),
        }
    }
}

impl AuthPolicyMode {
    /// Whether OnPremise (password) credentials are accepted.
    pub fn allows_onpremise(self) -> bool {
        matches!(self, AuthPolicyMode::OnPremise | AuthPolicyMode::Both)
    }
    /// Whether the federated login page and its tokens are enabled.
    pub fn allows_federated(self) -> bool {
        matches!(self, AuthPolicyMode::Federated | AuthPolicyMode::Both)
    }
}

/// Where Entra signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local JWKS file (re-read when a token names an unknown `kid`).
    File(PathBuf),
    /// An https URL (fetched, cached, refreshed on an unknown `kid`).
    Url(String),
}

/// Validated Entra ID settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraConfig {
    /// Signing keys.
    pub jwks: JwksSource,
    /// Allowed tenant ids (lower-case).
    pub tenants: Vec<String>,
    /// Allowed audiences.
    pub audiences: Vec<String>,
    /// Delegated scope required in `scp` of user tokens.
    pub scope: String,
    /// App role required in `roles` of app-only tokens; `None` refuses them.
    pub device_role: Option<String>,
    /// Create unknown users on first enrollment.
    pub auto_create_users: bool,
}

fn split_list(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn resolve_entra(
    jwks: Option<String>,
    tenants: Option<&str>,
    audiences: Option<&str>,
    scope: Option<String>,
    device_role: Option<String>,
    auto_create_users: bool,
) -> Result<Option<EntraConfig>, ConfigError> {
    let tenants: Vec<String> = split_list(tenants)
        .into_iter()
        .map(|t| t.to_ascii_lowercase())
        .collect();
    let audiences = split_list(audiences);
    let Some(jwks) = jwks.filter(|j| !j.trim().is_empty()) else {
        if !tenants.is_empty() || !audiences.is_empty() {
            return Err(ConfigError::Incomplete {
                what: "--entra-tenants/--entra-audiences need --entra-jwks",
            });
        }
        return Ok(None);
    };
    let bad = |field, reason: String| ConfigError::Invalid { field, reason };
    if tenants.is_empty() {
        return Err(bad(
            "entra_tenants",
            "at least one tenant id is required with --entra-jwks".into(),
        ));
    }
    for t in &tenants {
        let ok = t.len() == 36
            && t.chars().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        if !ok {
            return Err(bad(
                "entra_tenants",
                format!("{t:?} is not a tenant id (GUID)"),
            ));
        }
    }
    if audiences.is_empty() {
        return Err(bad(
            "entra_audiences",
            "at least one audience is required with --entra-jwks".into(),
        ));
    }
    let jwks = jwks.trim().to_string();
    let jwks = if jwks.starts_with("https://") {
        JwksSource::Url(jwks)
    } else if jwks.contains("://") {
        return Err(bad(
            "entra_jwks",
            format!("{jwks:?}: only https URLs or file paths"),
        ));
    } else {
        JwksSource::File(PathBuf::from(jwks))
    };
    let scope = scope
        .unwrap_or_else(|| "mdm_delegation".into())
        .trim()
        .to_string();
    if scope.is_empty() || scope.contains(' ') {
        return Err(bad("entra_scope", "one scope name without spaces".into()));
    }
    Ok(Some(EntraConfig {
        jwks,
        tenants,
        audiences,
        scope,
        device_role: device_role
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty()),
        auto_create_users,
    }))
}

/// Resolves `--mgmt-url` and `--mgmt-listen` (see [`ServeOptions::mgmt_url`]): defaults, and
/// the rule that devices can always reach a listener asking for their certificate.
fn resolve_mgmt(
    public: &PublicUrl,
    listen: SocketAddr,
    url: Option<&str>,
    bind: Option<&str>,
) -> Result<(PublicUrl, Option<SocketAddr>), ConfigError> {
    let bad = |field: &'static str, reason: String| ConfigError::Invalid { field, reason };
    let mgmt_url = match url {
        Some(u) => PublicUrl::parse(u).map_err(|e| match e {
            ConfigError::Invalid { reason, .. } => bad("mgmt_url", reason),
            other => other,
        })?,
        None => {
            let port = public.port().checked_add(1).ok_or_else(|| {
                bad(
                    "mgmt_url",
                    "the public URL uses port 65535: set --mgmt-url".into(),
                )
            })?;
            let host = if public.host.contains(':') {
                format!("[{}]", public.host)
            } else {
                public.host.clone()
            };
            PublicUrl::parse(&format!("https://{host}:{port}"))?
        }
    };
    let same_port = mgmt_url.port() == public.port();
    let same_host = mgmt_url.host == public.host;
    let mgmt_listen = match bind.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("off") => {
            if same_host || !same_port {
                return Err(bad(
                    "mgmt_listen",
                    format!(
                        "off needs --mgmt-url on another host name at the public URL's port {} (management is then chosen by SNI), not {}",
                        public.port(),
                        mgmt_url.base
                    ),
                ));
            }
            None
        }
        Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
            bad(
                "mgmt_listen",
                format!("{v:?} is neither an address such as 0.0.0.0:8444 nor off"),
            )
        })?),
        None => {
            let port = if listen.port() == 0 {
                0
            } else {
                listen.port().checked_add(1).ok_or_else(|| {
                    bad(
                        "mgmt_listen",
                        "--listen uses port 65535: set --mgmt-listen".into(),
                    )
                })?
            };
            Some(SocketAddr::new(listen.ip(), port))
        }
    };
    if same_host && same_port {
        return Err(bad(
            "mgmt_url",
            format!(
                "{} is the public URL: the management endpoint needs its own port or host name, because enrollment must never be asked for a client certificate",
                mgmt_url.base
            ),
        ));
    }
    Ok((mgmt_url, mgmt_listen))
}

/// Certificate renewal settings (see `mdm::renew`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalSettings {
    /// Advertise ROBO and accept renewal requests.
    pub enabled: bool,
    /// `RenewPeriod`: days before expiry renewal opens (1-1000, less than the certificate lifetime).
    pub period_days: u32,
    /// `RetryInterval` in days (1-1000).
    pub retry_days: u32,
    /// How long a replaced certificate stays accepted, in seconds.
    pub grace_secs: i64,
}

/// Applies the defaults and rules of the renewal settings; `validity_days` is the device
/// certificate lifetime.
fn resolve_renewal(o: &ServeOptions, validity_days: u32) -> Result<RenewalSettings, ConfigError> {
    let enabled = match o.renewal.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => true,
        Some(s) if matches!(s.as_str(), "on" | "true" | "yes" | "1") => true,
        Some(s) if matches!(s.as_str(), "off" | "false" | "no" | "0") => false,
        Some(s) => {
            return Err(ConfigError::Invalid {
                field: "renewal",
                reason: format!("{s:?} is neither on nor off"),
            })
        }
    };
    let days = |field: &'static str, v: u32| {
        if (1..=1000).contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::Invalid {
                field,
                reason: format!("{v} is outside 1..=1000 (CertificateStore CSP range)"),
            })
        }
    };
    let period_days = match o.renew_period_days {
        Some(v) => {
            let v = days("renew_period_days", v)?;
            if v >= validity_days {
                return Err(ConfigError::Invalid {
                    field: "renew_period_days",
                    reason: format!(
                        "{v} days is not shorter than the certificate lifetime ({validity_days} days)"
                    ),
                });
            }
            v
        }
        // The CSP default, but never the whole lifetime of a short-lived certificate.
        None => 42.min(validity_days.div_ceil(2)).max(1),
    };
    let grace_days = o.renew_grace_days.unwrap_or(7);
    if grace_days > 1000 {
        return Err(ConfigError::Invalid {
            field: "renew_grace_days",
            reason: format!("{grace_days} is outside 0..=1000"),
        });
    }
    Ok(RenewalSettings {
        enabled,
        period_days,
        retry_days: days("renew_retry_days", o.renew_retry_days.unwrap_or(7))?,
        grace_secs: i64::from(grace_days) * 86_400,
    })
}

/// Whether `s` is a GUID in its 8-4-4-4-12 hex form.
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether `s` is a DNS name of at least two labels (letters, digits, hyphens).
pub fn is_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    s.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl Config {
    /// A configuration for tests: listen on an ephemeral loopback port, data in `data_dir`.
    pub fn for_tests(data_dir: &Path) -> Config {
        ServeOptions {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            data_dir: Some(data_dir.to_path_buf()),
            ..ServeOptions::default()
        }
        .resolve()
        .unwrap_or_else(|e| panic!("test config invalid: {e}"))
    }
}

/// Parses `--poll-schedule` `"a,b,c,d,e,f"` (minutes and counts) into the DMClient `Poll`
/// schedule (MS-MDE2 §2.2.9.4; DMClient CSP `Poll/`) and checks the CSP's rules.
pub fn parse_poll_schedule(s: &str) -> Result<PollSchedule, ConfigError> {
    let bad = |reason: String| ConfigError::Invalid {
        field: "poll_schedule",
        reason,
    };
    let v: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad(format!("{s:?}: expected six comma-separated integers")))?;
    let [first_interval, first_count, second_interval, second_count, remaining_interval, remaining_count] =
        v[..]
    else {
        return Err(bad(format!("{s:?}: expected six values, got {}", v.len())));
    };
    if first_count == 0 {
        return Err(bad("NumberOfFirstRetries must not be 0".into()));
    }
    if remaining_interval != 0 && remaining_interval < 1440 {
        return Err(bad(
            "IntervalForRemainingScheduledRetries must be 0 or at least 1440 minutes".into(),
        ));
    }
    if first_interval == 0 && second_interval == 0 && remaining_interval == 0 {
        return Err(bad("at least one poll interval must be non-zero".into()));
    }
    Ok(PollSchedule {
        first_interval,
        first_count,
        second_interval,
        second_count,
        remaining_interval,
        remaining_count,
        poll_on_login: true,
    })
}

/// The server's public https base URL, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `https://host[:port]` without a trailing slash.
    pub base: String,
    /// Host name or IP literal (without brackets).
    pub host: String,
}

impl PublicUrl {
    /// Parses `https://host[:port][/]`. Paths other than `/` are refused: Windows discovery uses
    /// the fixed path `/EnrollmentServer/Discovery.svc` at the host's root.
    pub fn parse(s: &str) -> Result<PublicUrl, ConfigError> {
        let bad = |reason: &str| ConfigError::Invalid {
            field: "public_url",
            reason: format!("{s:?}: {reason}"),
        };
        let rest = s
            .strip_prefix("https://")
            .ok_or_else(|| bad("must start with https://"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        if authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad(
                "only https://host[:port] is allowed (no path, query or user)",
            ));
        }
        let host = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| bad("unclosed IPv6 bracket"))?;
            let port = &v6[end + 1..];
            if !(port.is_empty() || port.strip_prefix(':').is_some_and(valid_port)) {
                return Err(bad("invalid port"));
            }
            v6[..end].to_string()
        } else {
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            if port.is_some_and(|p| !valid_port(p)) {
                return Err(bad("invalid port"));
            }
            if host.is_empty() {
                return Err(bad("missing host"));
            }
            host.to_ascii_lowercase()
        };
        Ok(PublicUrl {
            base: format!("https://{}", authority.to_ascii_lowercase()),
            host,
        })
    }

    /// The port devices connect to (443 when the URL names none).
    pub fn port(&self) -> u16 {
        let authority = self.base.trim_start_matches("https://");
        let after_host = match authority.rfind(']') {
            Some(i) => &authority[i + 1..],
            None => authority,
        };
        after_host
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(443)
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

fn valid_port(p: &str) -> bool {
    p.parse::<u16>().is_ok_and(|n| n != 0)
}

/// Well-known paths of the services we expose.
pub mod paths {
    /// MS-MDE2 discovery; fixed by the protocol.
    pub const DISCOVERY: &str = "/EnrollmentServer/Discovery.svc";
    /// MS-XCEP enrollment policy.
    pub const POLICY: &str = "/EnrollmentServer/Policy.svc";
    /// MS-WSTEP enrollment.
    pub const ENROLLMENT: &str = "/EnrollmentServer/Enrollment.svc";
    /// OMA-DM management (the w7 `ADDR`).
    pub const MANAGEMENT: &str = "/ManagementServer/MDM.svc";
    /// Federated login page (discovery `AuthenticationServiceUrl`).
    pub const AUTH: &str = "/EnrollmentServer/Auth";
    /// Terms of use page of the Entra MDM application.
    pub const TOS: &str = "/EnrollmentServer/ToS";
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The config file is not valid TOML for our keys.
    #[error("invalid config file {path}: {reason}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Two settings that go together were not both given.
    #[error("{what}")]
    Incomplete {
        /// Which pair.
        what: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_and_metrics_listen_come_from_flags_or_the_file() {
        let file: ServeOptions =
            toml::from_str("log_format = \"json\"\nmetrics_listen = \"127.0.0.1:9464\"")
                .expect("config keys");
        let c = ServeOptions::default().or(file.clone()).resolve().unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        let flag = ServeOptions {
            log_format: Some("text".into()),
            ..Default::default()
        };
        assert_eq!(flag.or(file).resolve().unwrap().log_format, LogFormat::Text);
        let d = ServeOptions::default().resolve().unwrap();
        assert_eq!((d.log_format, d.metrics_listen), (LogFormat::Text, None));
        let bad = ServeOptions {
            log_format: Some("xml".into()),
            ..Default::default()
        };
        assert!(bad.resolve().is_err());
    }

    #[test]
    fn command_retention_values() {
        let d = |s| Some(Duration::from_secs(s));
        assert_eq!(parse_retention("90d"), Ok(d(90 * 86_400)));
        assert_eq!(parse_retention("12h"), Ok(d(12 * 3_600)));
        assert_eq!(parse_retention("10m"), Ok(d(600)));
        assert_eq!(parse_retention("0"), Ok(None));
        for bad in [
            "", "d", "10", "5s", "-3d", "1.5d", "90days", "99999d", "9é", "1x",
        ] {
            assert!(parse_retention(bad).is_err(), "{bad:?} accepted");
        }
        let c = ServeOptions::default().resolve().expect("defaults");
        assert_eq!(c.command_retention, d(90 * 86_400));
        let c = ServeOptions {
            command_retention: Some("0".into()),
            ..Default::default()
        }
        .resolve()
        .expect("0");
        assert_eq!(c.command_retention, None);
    }

    #[test]
    fn defaults() {
        let c = ServeOptions::default().resolve().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.public_url.base, "https://localhost:8443");
        assert_eq!(c.public_url.host, "localhost");
        assert_eq!(c.cert_validity, Duration::from_secs(365 * 86_400));
        assert_eq!(c.poll, PollSchedule::default());
    }

    #[test]
    fn public_url_forms() {
        let u = PublicUrl::parse("https://MDM.Example.com/").unwrap();
        assert_eq!(u.base, "https://mdm.example.com");
        assert_eq!(
            u.join(paths::DISCOVERY),
            "https://mdm.example.com/EnrollmentServer/Discovery.svc"
        );
        assert_eq!(PublicUrl::parse("https://[::1]:8443").unwrap().host, "::1");
        assert_eq!(
            PublicUrl::parse("https://127.0.0.1:1").unwrap().host,
            "127.0.0.1"
        );
        for bad in [
            "http://x",
            "https://",
            "https://x/path",
            "https://x:0",
            "https://x:99999",
            "https://[::1",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn precedence_flag_over_file() {
        let flag = ServeOptions {
            provider_id: Some("flag".into()),
            ..Default::default()
        };
        let file: ServeOptions =
            toml::from_str("provider_id = \"file\"\nservice_name = \"Corp MDM\"").unwrap();
        let c = flag.or(file).resolve().unwrap();
        assert_eq!(c.provider_id, "flag");
        assert_eq!(c.service_name, "Corp MDM");
    }

    #[test]
    fn file_rejects_unknown_keys() {
        assert!(toml::from_str::<ServeOptions>("lisen = \"1.2.3.4:1\"").is_err());
    }

    #[test]
    fn poll_rules() {
        assert!(parse_poll_schedule("3,10,15,8,1440,0").is_ok());
        assert!(parse_poll_schedule("3,0,15,8,1440,0").is_err());
        assert!(parse_poll_schedule("3,10,15,8,60,0").is_err());
        assert!(parse_poll_schedule("0,1,0,0,0,0").is_err());
        assert!(parse_poll_schedule("1,2,3").is_err());
    }

    #[test]
    fn smtp_settings() {
        let c = SmtpConfig::parse(
            "smtp://mailer@mx.example.com:2525".into(),
            "MDM <mdm@example.com>".into(),
        )
        .unwrap();
        assert_eq!(c.user.as_deref(), Some("mailer"));
        assert!(SmtpConfig::parse("smtps://mx".into(), "a@b".into())
            .unwrap()
            .user
            .is_none());
        for (u, f) in [
            ("http://mx", "a@b"),
            ("smtp://", "a@b"),
            ("smtp://u:secret@mx", "a@b"),
            ("smtp://mx", "nobody"),
        ] {
            assert!(SmtpConfig::parse(u.into(), f.into()).is_err(), "{u} {f}");
        }
        let o = ServeOptions {
            smtp_url: Some("smtp://mx".into()),
            ..Default::default()
        };
        assert!(o.resolve().is_err(), "--smtp-from is required too");
        let with_user = |pw: Option<&str>| ServeOptions {
            smtp_url: Some("smtp://mailer@mx".into()),
            smtp_from: Some("a@b".into()),
            smtp_password: pw.map(str::to_string),
            ..Default::default()
        };
        assert!(
            with_user(None).resolve().is_err(),
            "a user needs a password"
        );
        let c = with_user(Some("hunter2")).resolve().unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!(smtp.password.as_deref(), Some("hunter2"));
        assert!(!format!("{smtp:?}").contains("hunter2"));
        assert!(toml::from_str::<ServeOptions>("smtp_password = \"x\"").is_err());
    }

    #[test]
    fn auth_policy_and_entra_settings() {
        let c = ServeOptions::default().resolve().unwrap();
        assert_eq!(c.auth_policy, AuthPolicyMode::OnPremise);
        assert_eq!(c.entra, None);
        let o = |f: fn(&mut ServeOptions)| {
            let mut o = ServeOptions {
                entra_jwks: Some("/etc/winmdm/jwks.json".into()),
                entra_tenants: Some(" 72F988BF-86F1-41AF-91AB-2D7CD011DB47 ,".into()),
                entra_audiences: Some("api://a, https://mdm.example.com".into()),
                ..Default::default()
            };
            f(&mut o);
            o.resolve()
        };
        let e = o(|_| {}).unwrap().entra.unwrap();
        assert_eq!(e.tenants, vec!["72f988bf-86f1-41af-91ab-2d7cd011db47"]);
        assert_eq!(e.audiences, vec!["api://a", "https://mdm.example.com"]);
        assert_eq!(e.scope, "mdm_delegation");
        assert_eq!(e.device_role, None);
        assert!(!e.auto_create_users);
        assert_eq!(e.jwks, JwksSource::File("/etc/winmdm/jwks.json".into()));
        let e = o(|o| {
            o.entra_jwks =
                Some("https://login.microsoftonline.com/common/discovery/v2.0/keys".into())
        });
        assert!(matches!(e.unwrap().entra.unwrap().jwks, JwksSource::Url(_)));
        assert!(o(|o| o.entra_jwks = Some("http://insecure/keys".into())).is_err());
        assert!(o(|o| o.entra_tenants = Some("contoso.com".into())).is_err());
        assert!(o(|o| o.entra_tenants = None).is_err());
        assert!(o(|o| o.entra_audiences = Some(" , ".into())).is_err());
        assert!(o(|o| o.entra_scope = Some("a b".into())).is_err());
        assert!(o(|o| o.entra_jwks = None).is_err(), "tenants without keys");
        for (s, want) in [
            ("onpremise", AuthPolicyMode::OnPremise),
            ("Federated", AuthPolicyMode::Federated),
            ("both", AuthPolicyMode::Both),
        ] {
            let c = ServeOptions {
                auth_policy: Some(s.into()),
                ..Default::default()
            };
            assert_eq!(c.resolve().unwrap().auth_policy, want);
        }
        let c = ServeOptions {
            auth_policy: Some("certificate".into()),
            ..Default::default()
        };
        assert!(c.resolve().is_err());
    }

    #[test]
    fn management_endpoint_defaults_and_rules() {
        let c = ServeOptions::default().resolve().unwrap();
        assert_eq!(c.mgmt_url.base, "https://localhost:8444");
        assert_eq!(
            c.mgmt_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 8444)))
        );
        let o = |url: &str, mgmt: Option<&str>, bind: Option<&str>| ServeOptions {
            public_url: Some(url.into()),
            mgmt_url: mgmt.map(Into::into),
            mgmt_listen: bind.map(Into::into),
            ..ServeOptions::default()
        };
        let c = o("https://mdm.example.com", None, None).resolve().unwrap();
        assert_eq!(c.mgmt_url.base, "https://mdm.example.com:444");
        assert_eq!(c.public_url.port(), 443);
        let c = o("https://[::1]:9000", None, None).resolve().unwrap();
        assert_eq!(c.mgmt_url.base, "https://[::1]:9001");
        // SNI on one port: another name, the public port, no second listener.
        let c = o(
            "https://mdm.example.com",
            Some("https://dm.example.com"),
            Some("off"),
        )
        .resolve()
        .unwrap();
        assert_eq!(c.mgmt_listen, None);
        for (url, mgmt, bind) in [
            // The same URL twice: enrollment would get the CertificateRequest.
            (
                "https://mdm.example.com",
                Some("https://mdm.example.com:443"),
                None,
            ),
            // off needs another name on the same port.
            ("https://mdm.example.com", None, Some("off")),
            (
                "https://mdm.example.com",
                Some("https://dm.example.com:8444"),
                Some("off"),
            ),
            ("https://mdm.example.com", None, Some("nonsense")),
            ("https://mdm.example.com:65535", None, None),
        ] {
            assert!(
                o(url, mgmt, bind).resolve().is_err(),
                "{url} {mgmt:?} {bind:?}"
            );
        }
    }

    #[test]
    fn renewal_settings() {
        let c = ServeOptions::default().resolve().unwrap().renewal;
        assert_eq!(
            c,
            RenewalSettings {
                enabled: true,
                period_days: 42,
                retry_days: 7,
                grace_secs: 7 * 86_400
            }
        );
        let short = ServeOptions {
            cert_validity_days: Some(10),
            renewal: Some("OFF".into()),
            ..Default::default()
        };
        let r = short.resolve().unwrap().renewal;
        assert_eq!((r.enabled, r.period_days), (false, 5));
        for bad in [
            ServeOptions {
                renewal: Some("maybe".into()),
                ..Default::default()
            },
            ServeOptions {
                renew_period_days: Some(365),
                ..Default::default()
            },
            ServeOptions {
                renew_retry_days: Some(0),
                ..Default::default()
            },
            ServeOptions {
                renew_grace_days: Some(1001),
                ..Default::default()
            },
        ] {
            assert!(bad.resolve().is_err());
        }
    }

    #[test]
    fn pairs_and_ranges() {
        let o = ServeOptions {
            tls_cert: Some("a".into()),
            ..Default::default()
        };
        assert!(o.resolve().is_err());
        let o = ServeOptions {
            cert_validity_days: Some(0),
            ..Default::default()
        };
        assert!(o.resolve().is_err());
        let o = ServeOptions {
            ca_key_algorithm: Some("dsa".into()),
            ..Default::default()
        };
        assert!(o.resolve().is_err());
    }

    #[test]
    fn database_url_is_checked_and_its_password_never_shown() {
        let url = "postgres://winmdm:s3cret-pw@db.example:5432/winmdm?sslmode=require";
        let c = ServeOptions {
            database_url: Some(url.parse().expect("infallible")),
            ..Default::default()
        }
        .resolve()
        .expect("valid");
        let u = c.database_url.as_ref().expect("kept");
        assert_eq!(u.expose(), url);
        for shown in [format!("{c:?}"), format!("{u}"), format!("{u:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("winmdm:***@db.example"), "{shown}");
        }
        let from_file: ServeOptions =
            toml::from_str(&format!("database_url = \"{url}\"")).expect("config key");
        assert_eq!(
            from_file
                .database_url
                .map(|u| u.expose().to_string())
                .as_deref(),
            Some(url)
        );
        for bad in [
            "mysql://x@y/z",
            "postgres://x@y/z?sslmode=verify-full",
            "/var/lib/db",
        ] {
            let o = ServeOptions {
                database_url: Some(bad.parse().expect("infallible")),
                ..Default::default()
            };
            assert!(o.resolve().is_err(), "{bad} accepted");
        }
    }
}
