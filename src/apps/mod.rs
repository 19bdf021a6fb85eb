//! Apps: a catalog of Windows packages (MSI for EnterpriseDesktopAppManagement, MSIX/APPX for
//! EnterpriseModernAppManagement), delivered to device groups through the configuration-profile
//! reconciler, with a per-device install state.
//!
//! * [`content`]: uploaded package bytes, chunked in the store (every node serves them).
//! * [`msi`] / [`msix`]: package identity (ProductCode, ProductVersion from the MSI; Identity and
//!   package family name from the MSIX/APPX manifest); [`read_identity`] tells them apart.
//! * [`token`]: the signed, short-lived download URLs handed to devices.
//! * [`deliver`]: an assignment (app, group, device/user scope, required/uninstall intent) is a
//!   *managed profile* whose operations are the CSP commands; the reconciler of
//!   [`crate::profiles::reconcile`] queues them per device, deletes the app node (uninstall) when
//!   the assignment or membership goes, and re-delivers a new version (upgrade).
//! * [`state`]: the per-device state, from the queued commands, the device's generic alerts and
//!   the `Status`/`LastError` nodes read back.

pub mod content;
pub mod deliver;
pub mod esp;
pub mod msi;
pub mod msix;
pub mod poll;
pub mod state;
pub mod token;

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::groups::GroupError;
use crate::store::records::Kind;
use crate::store::RecordOp;

/// App records by id.
pub const APPS: Kind<AppRecord> = Kind::new("app");
/// Total bytes of uploaded content (key `""`).
pub const USAGE: Kind<u64> = Kind::new("app_usage");

/// Longest external URL.
pub const MAX_URL: usize = 2048;

/// Package type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// Windows Installer package (EnterpriseDesktopAppManagement CSP).
    Msi,
    /// MSIX/APPX package (EnterpriseModernAppManagement CSP).
    Msix,
}

/// An app of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// Id (random hex).
    pub id: String,
    /// Display name (the MSI's ProductName unless given).
    pub name: String,
    /// Package type.
    pub kind: AppKind,
    /// Content stored in winmdm (`None`: an external URL).
    #[serde(default)]
    pub content_id: Option<String>,
    /// The external HTTPS URL devices download from (external apps only).
    #[serde(default)]
    pub url: Option<String>,
    /// Size in bytes (uploaded content).
    #[serde(default)]
    pub size: Option<u64>,
    /// SHA-256 of the package, lower-case hex.
    pub sha256: String,
    /// MSI ProductCode `{GUID}` (upper-case).
    #[serde(default)]
    pub product_code: Option<String>,
    /// MSI ProductVersion.
    #[serde(default)]
    pub product_version: Option<String>,
    /// MSI Manufacturer / MSIX publisher.
    #[serde(default)]
    pub publisher: Option<String>,
    /// MSI UpgradeCode.
    #[serde(default)]
    pub upgrade_code: Option<String>,
    /// MSIX package family name.
    #[serde(default)]
    pub package_family_name: Option<String>,
    /// msiexec command line (MsiInstallJob `CommandLine`).
    pub command_line: String,
    /// MsiInstallJob `TimeOut`, minutes.
    pub timeout_minutes: u32,
    /// MsiInstallJob `RetryCount`.
    pub retry_count: u32,
    /// MsiInstallJob `RetryInterval`, minutes.
    pub retry_interval_minutes: u32,
    /// Bumped by every new content (upgrade).
    pub revision: u32,
    /// Creation (Unix seconds).
    pub created_at: i64,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// Install options an admin may set (defaults: `/quiet`, 10 min, 3 retries, 5 min apart).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallOptions {
    /// msiexec command line.
    #[serde(default)]
    pub command_line: Option<String>,
    /// Minutes.
    #[serde(default)]
    pub timeout_minutes: Option<u32>,
    /// Retries.
    #[serde(default)]
    pub retry_count: Option<u32>,
    /// Minutes.
    #[serde(default)]
    pub retry_interval_minutes: Option<u32>,
}

/// An app registered by URL (`POST /api/v1/apps` with JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalApp {
    /// `msi` or `msix`.
    pub kind: Option<AppKind>,
    /// Display name.
    pub name: String,
    /// HTTPS URL of the package.
    pub url: String,
    /// SHA-256 of the package (hex).
    pub sha256: String,
    /// MSI: ProductCode `{GUID}`.
    #[serde(default)]
    pub product_code: Option<String>,
    /// MSI: ProductVersion.
    #[serde(default)]
    pub product_version: Option<String>,
    /// MSIX: package family name, or give `package_name` and `publisher`.
    #[serde(default)]
    pub package_family_name: Option<String>,
    /// MSIX: Identity/@Name of the manifest.
    #[serde(default)]
    pub package_name: Option<String>,
    /// MSIX: Identity/@Publisher of the manifest (the PublisherId is computed from it).
    #[serde(default)]
    pub publisher: Option<String>,
    /// Install options.
    #[serde(flatten)]
    pub options: InstallOptions,
}

fn invalid(m: impl Into<String>) -> GroupError {
    GroupError::Invalid(m.into())
}

fn validate_name(name: &str) -> Result<String, GroupError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) {
        return Err(invalid(
            "name must be 1-128 characters without control characters",
        ));
    }
    Ok(n.to_string())
}

/// A SHA-256 in hex, lower-cased; `None` if not 64 hex digits.
pub fn sha256_hex(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// Applies `o` over the defaults (or over `base`).
fn options(
    o: &InstallOptions,
    base: Option<&AppRecord>,
) -> Result<(String, u32, u32, u32), GroupError> {
    let command_line = match &o.command_line {
        Some(c) => {
            if c.len() > 1024 || c.chars().any(char::is_control) {
                return Err(invalid(
                    "command_line must be at most 1024 bytes without control characters",
                ));
            }
            c.trim().to_string()
        }
        None => base.map_or_else(|| "/quiet".to_string(), |b| b.command_line.clone()),
    };
    let bounded = |v: Option<u32>, dflt: u32, max: u32, what: &str| match v {
        Some(n) if n > max => Err(invalid(format!("{what} must be at most {max}"))),
        Some(n) => Ok(n),
        None => Ok(dflt),
    };
    Ok((
        command_line,
        bounded(
            o.timeout_minutes,
            base.map_or(10, |b| b.timeout_minutes),
            1440,
            "timeout_minutes",
        )?,
        bounded(
            o.retry_count,
            base.map_or(3, |b| b.retry_count),
            10,
            "retry_count",
        )?,
        bounded(
            o.retry_interval_minutes,
            base.map_or(5, |b| b.retry_interval_minutes),
            1440,
            "retry_interval_minutes",
        )?,
    ))
}

fn validate_url(url: &str) -> Result<String, GroupError> {
    let u = url.trim();
    let rest = u
        .strip_prefix("https://")
        .ok_or_else(|| invalid("url must start with https://"))?;
    if u.len() > MAX_URL
        || rest.is_empty()
        || rest.starts_with('/')
        || u.chars()
            .any(|c| c.is_control() || c == ' ' || c == '"' || c == '<' || c == '>')
    {
        return Err(invalid(format!(
            "url must be an https URL of at most {MAX_URL} bytes without spaces, quotes or angle brackets"
        )));
    }
    Ok(u.to_string())
}

/// Registers an app whose package winmdm does not hold (devices download it from `url`).
pub fn create_external(app: &App, e: ExternalApp) -> Result<AppRecord, GroupError> {
    let name = validate_name(&e.name)?;
    let url = validate_url(&e.url)?;
    let sha256 = sha256_hex(&e.sha256).ok_or_else(|| invalid("sha256 must be 64 hex digits"))?;
    let kind = e.kind.unwrap_or(AppKind::Msi);
    let (command_line, timeout_minutes, retry_count, retry_interval_minutes) =
        options(&e.options, None)?;
    let now = app.clock.now_unix();
    let mut rec = AppRecord {
        id: crate::clock::random_hex(8),
        name,
        kind,
        content_id: None,
        url: Some(url),
        size: None,
        sha256,
        product_code: None,
        product_version: None,
        publisher: None,
        upgrade_code: None,
        package_family_name: None,
        command_line,
        timeout_minutes,
        retry_count,
        retry_interval_minutes,
        revision: 1,
        created_at: now,
        updated_at: now,
    };
    match kind {
        AppKind::Msi => {
            if e.package_family_name.is_some() || e.package_name.is_some() {
                return Err(invalid(
                    "package_family_name/package_name are for kind msix",
                ));
            }
            let code = e
                .product_code
                .as_deref()
                .ok_or_else(|| invalid("product_code ({GUID}) is required for an MSI"))?;
            rec.product_code =
                Some(msi::guid(code).ok_or_else(|| invalid("product_code must be a {GUID}"))?);
            let v = e
                .product_version
                .ok_or_else(|| invalid("product_version is required for an MSI"))?;
            if !msi::valid_version(&v) {
                return Err(invalid(
                    "product_version must be major.minor[.build[.revision]]",
                ));
            }
            rec.product_version = Some(v);
            rec.publisher = e.publisher;
        }
        AppKind::Msix => {
            if e.product_code.is_some() {
                return Err(invalid("product_code is for kind msi"));
            }
            let pfn = match (&e.package_family_name, &e.package_name, &e.publisher) {
                (Some(f), None, _) => f.trim().to_string(),
                (None, Some(n), Some(p)) => {
                    if !msix::valid_name(n.trim()) || p.trim().is_empty() || p.len() > 8192 {
                        return Err(invalid("package_name must be 3-50 of [A-Za-z0-9.-] and publisher non-empty"));
                    }
                    msix::family_name(n.trim(), p.trim())
                }
                _ => {
                    return Err(invalid(
                        "give package_family_name, or package_name and publisher (the manifest's Identity)",
                    ))
                }
            };
            if !msix::valid_family_name(&pfn) {
                return Err(invalid(format!(
                    "{pfn:?} is not a package family name (Name_PublisherId)"
                )));
            }
            rec.package_family_name = Some(pfn);
            rec.publisher = e.publisher.map(|p| p.trim().to_string());
            rec.product_version = e.product_version;
        }
    }
    APPS.put(app.store.records(), &rec.id, &rec)?;
    tracing::info!(app_id = %rec.id, name = %rec.name, kind = ?rec.kind, "app registered (external URL)");
    Ok(rec)
}

/// Where an upload stands: checked against the limits as bytes arrive.
pub struct Upload {
    /// Chunk writer (its content id).
    pub writer: content::ContentWriter,
    hash: aws_lc_rs::digest::Context,
    /// Bytes received.
    pub size: u64,
    /// Largest accepted.
    pub max: u64,
    /// Quota left when the upload started.
    pub room: u64,
}

/// Why an upload stopped.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Larger than `--app-max-mb`.
    #[error("package larger than {0} bytes")]
    TooLarge(u64),
    /// The quota (`--app-quota-mb`) is used up.
    #[error("app storage quota exceeded: {0}")]
    Quota(String),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] GroupError),
}

impl From<crate::store::StoreError> for UploadError {
    fn from(e: crate::store::StoreError) -> UploadError {
        UploadError::Other(e.into())
    }
}

fn usage(app: &App) -> Result<u64, crate::store::StoreError> {
    Ok(USAGE.get(app.store.records(), "")?.unwrap_or(0))
}

impl Upload {
    /// Starts an upload (refused when the quota is already used up).
    pub fn begin(app: &App) -> Result<Upload, UploadError> {
        let used = usage(app)?;
        let quota = app.cfg.apps.quota_bytes;
        if used >= quota {
            return Err(UploadError::Quota(format!("{used} of {quota} bytes used")));
        }
        Ok(Upload {
            writer: content::ContentWriter::new(),
            hash: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            size: 0,
            max: app.cfg.apps.max_bytes,
            room: quota - used,
        })
    }

    /// Takes `data` (hashing it); returns the full chunks to store.
    pub fn take(&mut self, data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, UploadError> {
        self.size += data.len() as u64;
        if self.size > self.max {
            return Err(UploadError::TooLarge(self.max));
        }
        if self.size > self.room {
            return Err(UploadError::Quota(format!(
                "{} bytes left, the package is larger",
                self.room
            )));
        }
        self.hash.update(data);
        Ok(self.writer.push(data))
    }

    /// The last chunk and the SHA-256 (hex).
    pub fn end(
        mut self,
    ) -> (
        content::ContentWriter,
        Option<(String, Vec<u8>)>,
        String,
        u64,
    ) {
        let last = self.writer.finish();
        let sha = crate::clock::hex(self.hash.finish().as_ref());
        (self.writer, last, sha, self.size)
    }
}

/// What an upload is for: a new app, or new content for an app (an upgrade).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UploadMeta {
    /// Display name (default: the MSI's ProductName; the MSIX manifest's DisplayName, else
    /// its Identity Name).
    pub name: Option<String>,
    /// Install options.
    pub options: InstallOptions,
}

/// The identity of an uploaded package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An MSI (a compound file).
    Msi(msi::MsiInfo),
    /// An MSIX/APPX package or bundle (a ZIP).
    Msix(msix::MsixInfo),
}

/// Magic of a compound file (MSI).
const CFB_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
/// Magic of a ZIP local file header (MSIX/APPX).
const ZIP_MAGIC: [u8; 4] = [0x50, 0x4B, 0x03, 0x04];

/// Reads the identity of a package: an MSI or an MSIX/APPX package or bundle, told apart by
/// their first bytes (not the file name).
pub fn read_identity<R: std::io::Read + std::io::Seek>(mut r: R) -> Result<Identity, String> {
    let mut magic = [0u8; 8];
    let n = std::io::Read::read(&mut r, &mut magic).map_err(|e| format!("reading: {e}"))?;
    std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(0))
        .map_err(|e| format!("reading: {e}"))?;
    if n == 8 && magic == CFB_MAGIC {
        msi::read(r)
            .map(Identity::Msi)
            .map_err(|e| format!("not a valid MSI: {e}"))
    } else if n >= 4 && magic[..4] == ZIP_MAGIC {
        msix::read(r)
            .map(Identity::Msix)
            .map_err(|e| format!("not a valid MSIX/APPX package: {e}"))
    } else {
        Err("not a valid MSI or MSIX/APPX package: neither a compound file (MSI) nor a ZIP (MSIX, APPX, bundles)".into())
    }
}

/// Reads the identity of stored content; deletes the content when it is not a usable package.
fn identify(app: &App, content_id: &str, size: u64) -> Result<Identity, GroupError> {
    let s = app.store.records();
    match read_identity(content::ContentReader::new(s, content_id, size)) {
        Ok(i) => Ok(i),
        Err(reason) => {
            if let Err(e) = content::delete(s, content_id) {
                tracing::warn!(error = %e, content_id, "deleting a refused upload failed");
            }
            tracing::info!(%reason, "upload refused");
            Err(invalid(format!("the file is {reason}")))
        }
    }
}

/// Adds `delta` (may be negative) to the usage counter with compare-and-swap; `false` when
/// the result would exceed `quota` (nothing changed).
fn usage_ops(
    app: &App,
    delta: i64,
    quota: Option<u64>,
) -> Result<Option<Vec<RecordOp>>, GroupError> {
    let old = USAGE.get(app.store.records(), "")?;
    let cur = old.unwrap_or(0);
    let new = if delta >= 0 {
        cur.saturating_add(delta as u64)
    } else {
        cur.saturating_sub(delta.unsigned_abs())
    };
    if quota.is_some_and(|q| new > q) {
        return Ok(None);
    }
    Ok(Some(vec![
        RecordOp::Expect {
            kind: USAGE.name,
            key: String::new(),
            value: old.map(|v| crate::store::tx::encode(&v)),
        },
        USAGE.put_op("", &new),
    ]))
}

/// Commits an upload whose chunks are all stored: a new MSI or MSIX app (`replace: None`) or
/// new content of app `replace` (a newer ProductVersion of the same MSI product line, or a
/// newer Version of the same MSIX package family). The content is deleted when refused.
pub fn commit_upload(
    app: &App,
    content_id: &str,
    size: u64,
    sha256: String,
    meta: UploadMeta,
    replace: Option<&str>,
) -> Result<(AppRecord, Option<AppRecord>), GroupError> {
    let info = identify(app, content_id, size)?;
    let r = commit_identified(app, content_id, size, sha256, meta, replace, info);
    if r.is_err() {
        if let Err(e) = content::delete(app.store.records(), content_id) {
            tracing::warn!(error = %e, content_id, "deleting a refused upload failed");
        }
    }
    r
}

fn commit_identified(
    app: &App,
    content_id: &str,
    size: u64,
    sha256: String,
    meta: UploadMeta,
    replace: Option<&str>,
    info: Identity,
) -> Result<(AppRecord, Option<AppRecord>), GroupError> {
    let now = app.clock.now_unix();
    let s = app.store.records();
    let kind = match &info {
        Identity::Msi(_) => AppKind::Msi,
        Identity::Msix(_) => AppKind::Msix,
    };
    for _ in 0..8 {
        let old = match replace {
            Some(id) => Some(get(app, id)?),
            None => None,
        };
        let (command_line, timeout_minutes, retry_count, retry_interval_minutes) =
            options(&meta.options, old.as_ref())?;
        let name = match (&meta.name, &old, &info) {
            (Some(n), _, _) => validate_name(n)?,
            (None, Some(o), _) => o.name.clone(),
            (None, None, Identity::Msi(i)) if !i.product_name.trim().is_empty() => {
                validate_name(&i.product_name)?
            }
            (None, None, Identity::Msi(_)) => {
                return Err(invalid("the MSI has no ProductName: give a name"))
            }
            (None, None, Identity::Msix(i)) => {
                validate_name(i.display_name.as_deref().unwrap_or(&i.name))?
            }
        };
        // The identity fields the package sets.
        let fresh = |base: AppRecord| match &info {
            Identity::Msi(i) => AppRecord {
                product_code: Some(i.product_code.clone()),
                product_version: Some(i.product_version.clone()),
                publisher: i.manufacturer.clone().or(base.publisher.clone()),
                upgrade_code: i.upgrade_code.clone().or(base.upgrade_code.clone()),
                ..base
            },
            Identity::Msix(i) => AppRecord {
                product_version: Some(i.version.clone()),
                publisher: Some(i.publisher.clone()),
                package_family_name: Some(i.family_name.clone()),
                ..base
            },
        };
        let mut ops = Vec::new();
        let rec = match &old {
            None => fresh(AppRecord {
                id: crate::clock::random_hex(8),
                name,
                kind,
                content_id: Some(content_id.to_string()),
                url: None,
                size: Some(size),
                sha256: sha256.clone(),
                product_code: None,
                product_version: None,
                publisher: None,
                upgrade_code: None,
                package_family_name: None,
                command_line,
                timeout_minutes,
                retry_count,
                retry_interval_minutes,
                revision: 1,
                created_at: now,
                updated_at: now,
            }),
            Some(o) => {
                if o.kind != kind || o.content_id.is_none() {
                    return Err(invalid(format!(
                        "only an uploaded {} app takes this package as new content",
                        if kind == AppKind::Msi { "MSI" } else { "MSIX" }
                    )));
                }
                let older = o.product_version.as_deref().unwrap_or("0.0");
                let (newer, what) = match &info {
                    Identity::Msi(i) => {
                        let same_line = o.product_code.as_deref() == Some(i.product_code.as_str())
                            || (o.upgrade_code.is_some() && o.upgrade_code == i.upgrade_code);
                        if !same_line {
                            return Err(invalid(format!(
                                "the new MSI ({} {}) is not the same product: neither its ProductCode nor its UpgradeCode matches the app's",
                                i.product_code, i.product_version
                            )));
                        }
                        (
                            msi::compare_versions(&i.product_version, older).is_gt(),
                            format!("ProductVersion {}", i.product_version),
                        )
                    }
                    Identity::Msix(i) => {
                        if o.package_family_name.as_deref() != Some(i.family_name.as_str()) {
                            return Err(invalid(format!(
                                "the new package ({}) is not the app's package family",
                                i.family_name
                            )));
                        }
                        (
                            msix::compare_versions(&i.version, older).is_gt(),
                            format!("Version {}", i.version),
                        )
                    }
                };
                if !newer {
                    return Err(GroupError::Conflict(format!(
                        "{what} is not newer than the app's {older}"
                    )));
                }
                ops.push(RecordOp::Expect {
                    kind: APPS.name,
                    key: o.id.clone(),
                    value: Some(crate::store::tx::encode(o)),
                });
                fresh(AppRecord {
                    content_id: Some(content_id.to_string()),
                    size: Some(size),
                    sha256: sha256.clone(),
                    command_line,
                    timeout_minutes,
                    retry_count,
                    retry_interval_minutes,
                    name,
                    revision: o.revision + 1,
                    updated_at: now,
                    ..o.clone()
                })
            }
        };
        let freed = old.as_ref().and_then(|o| o.size).unwrap_or(0);
        let Some(u) = usage_ops(
            app,
            size as i64 - freed as i64,
            Some(app.cfg.apps.quota_bytes),
        )?
        else {
            return Err(GroupError::Conflict(
                "app storage quota exceeded (--app-quota-mb)".into(),
            ));
        };
        ops.extend(u);
        ops.push(APPS.put_op(&rec.id, &rec));
        if s.apply_records(&ops)? {
            if let Some(o) = &old {
                if let Some(cid) = &o.content_id {
                    content::delete(s, cid)?;
                }
            }
            tracing::info!(app_id = %rec.id, kind = ?rec.kind, product_code = ?rec.product_code, package_family_name = ?rec.package_family_name, version = ?rec.product_version, size, "app content stored");
            return Ok((rec, old));
        }
    }
    Err(GroupError::Conflict(
        "the app or the storage usage changed meanwhile; try again".into(),
    ))
}

/// Looks an app up.
pub fn get(app: &App, id: &str) -> Result<AppRecord, GroupError> {
    APPS.get(app.store.records(), id)?
        .ok_or_else(|| GroupError::NotFound(format!("app {id}")))
}

/// Deletes an app record and its content; its managed profiles must be gone already.
pub fn delete_record(app: &App, id: &str) -> Result<AppRecord, GroupError> {
    let rec = get(app, id)?;
    let s = app.store.records();
    for _ in 0..8 {
        let mut ops = vec![
            RecordOp::Expect {
                kind: APPS.name,
                key: rec.id.clone(),
                value: Some(crate::store::tx::encode(&rec)),
            },
            APPS.delete_op(id),
        ];
        if let Some(size) = rec.size {
            if let Some(u) = usage_ops(app, -(size as i64), None)? {
                ops.extend(u);
            }
        }
        if s.apply_records(&ops)? {
            if let Some(cid) = &rec.content_id {
                content::delete(s, cid)?;
            }
            tracing::info!(app_id = %id, "app deleted");
            return Ok(rec);
        }
    }
    Err(GroupError::Conflict(
        "the app changed meanwhile; try again".into(),
    ))
}

/// Why a download is refused (403; the reason is logged, not sent).
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// The token is bad or expired.
    #[error(transparent)]
    Token(#[from] token::TokenError),
    /// No such app, or its package is not held by winmdm.
    #[error("no uploaded app {0}")]
    NoApp(String),
    /// The device is not enrolled, or the app is not (or no longer) to be installed on it.
    #[error("device {0} has no install of this app")]
    NotAssigned(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Checks a download: a valid, unexpired token for `app_id`, signed for a device that is
/// enrolled and has a required deployment of the app. Returns the app and the device id.
pub fn authorize_download(
    app: &App,
    app_id: &str,
    token: &str,
) -> Result<(AppRecord, String), Denied> {
    let device_id = app.app_urls.verify(app_id, token, app.clock.now_unix())?;
    let rec = APPS
        .get(app.store.records(), app_id)?
        .filter(|r| r.content_id.is_some())
        .ok_or_else(|| Denied::NoApp(app_id.to_string()))?;
    let enrolled = app
        .store
        .get_device(&device_id)?
        .is_some_and(|d| d.state == crate::store::DeviceState::Enrolled);
    let mut assigned = false;
    for (scope, intent) in deliver::KINDS {
        if intent != deliver::Intent::Required {
            continue;
        }
        let pid = deliver::profile_id(app_id, scope, intent);
        let dep = crate::profiles::reconcile::DEPLOYMENTS.get(
            app.store.records(),
            &crate::groups::pair_key(&pid, &device_id),
        )?;
        assigned |=
            dep.is_some_and(|d| d.state == crate::profiles::reconcile::DeployState::Installed);
    }
    if !enrolled || !assigned {
        return Err(Denied::NotAssigned(device_id));
    }
    Ok((rec, device_id))
}
