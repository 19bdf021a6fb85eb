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
    /// Management requests per second across all devices before devices get 429 (0 = no limit, the default).
    #[arg(long, env = "WINMDM_MANAGEMENT_RATE")]
    pub management_rate: Option<u32>,
    /// Seconds a throttled device is told to wait (`Retry-After`, default 60).
    #[arg(long, env = "WINMDM_RETRY_AFTER")]
    pub retry_after: Option<u32>,
    /// Accept management requests without a TLS client certificate when they carry a valid
    /// `MDM-Signature` (DMClient RequireMessageSigning), for TLS-terminating proxies. Off by default.
    #[arg(long, env = "WINMDM_MESSAGE_SIGNING")]
    pub message_signing: Option<bool>,
    /// Entra tenant id (GUID) written into exported Autopilot configuration files.
    #[arg(long, env = "WINMDM_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Entra tenant primary domain (e.g. contoso.onmicrosoft.com) for Autopilot exports.
    #[arg(long, env = "WINMDM_TENANT_DOMAIN")]
    pub tenant_domain: Option<String>,
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
            retry_after: self.retry_after.or(lower.retry_after),
            message_signing: self.message_signing.or(lower.message_signing),
            tenant_id: self.tenant_id.or(lower.tenant_id),
            tenant_domain: self.tenant_domain.or(lower.tenant_domain),
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
        let max_body_bytes = self.max_body_bytes.unwrap_or(1 << 20);
        if max_body_bytes < 4096 {
            return Err(ConfigError::Invalid {
                field: "max_body_bytes",
                reason: "must be at least 4096".into(),
            });
        }
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
        Ok(Config {
            tenant_id,
            tenant_domain,
            listen: self
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443))),
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
            retry_after: self.retry_after.unwrap_or(60).clamp(1, 86_400),
            message_signing: self.message_signing.unwrap_or(false),
        })
    }
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
    /// `Retry-After` seconds on 429.
    pub retry_after: u32,
    /// Accept `MDM-Signature` instead of a TLS client certificate.
    pub message_signing: bool,
    /// Entra tenant id (lower-case GUID) for Autopilot exports.
    pub tenant_id: Option<String>,
    /// Entra tenant primary domain for Autopilot exports.
    pub tenant_domain: Option<String>,
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
}
