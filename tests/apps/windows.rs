//! The fake device's app side, acting as Windows does for EnterpriseDesktopAppManagement: it
//! runs each `DownloadInstall` job it receives (downloads every ContentURL from the signed URL
//! with `Range` requests, checks the SHA-256 against FileHash, "runs msiexec"), keeps the
//! `Status`/`LastError` nodes it answers `Get`s with, and reports the result with the generic
//! alert `com.microsoft.mdm.win32csp_install` in its next session. For
//! EnterpriseModernAppManagement it runs each `AppInstallation/{PFN}/HostedInstall` it receives:
//! downloads the `Application/@PackageUri` the same way and keeps the package; installed at
//! once (Status 3), or, with `hosted_async`, left installing (Status 1) until the test ends it
//! with [`WindowsApps::finish_hosted`] (success: the AppInstallation node is removed, as Windows
//! does; failure: Status 2 with LastError), optionally with the
//! `com.microsoft.mdm.EnterpriseHostedAppInstall.result` alert.

use std::collections::HashMap;

use crate::support::mdm_device::{ManagedDevice, Received};
use crate::support::Client;

/// What "msiexec" does with a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1603 (fatal error during installation).
    Fails1603,
    /// The download arrives altered: the hash check fails (CRYPT_E_HASH_VALUE).
    CorruptDownload,
}

/// CRYPT_E_HASH_VALUE as the signed 32-bit integer the alert carries.
pub const HASH_MISMATCH: i64 = 0x8009_1007u32 as i32 as i64;

/// One `HostedInstall` the device ran.
#[derive(Debug, Clone)]
pub struct HostedJob {
    /// The `{PackageFamilyName}` segment of the target.
    pub pfn: String,
    /// `…/AppInstallation/{PFN}`.
    pub base: String,
    /// `Application/@PackageUri`.
    pub url: String,
    /// What was downloaded.
    pub downloaded: Vec<u8>,
}

/// One install job the device ran.
#[derive(Debug, Clone)]
pub struct Job {
    /// `MsiInstallJob/@id`.
    pub id: String,
    /// `Product/@Version`.
    pub version: String,
    /// The ContentURL.
    pub url: String,
    /// `Enforcement/CommandLine`.
    pub command_line: String,
    /// What was downloaded.
    pub downloaded: Vec<u8>,
    /// The result sent in the alert.
    pub code: i64,
}

pub struct WindowsApps {
    pub dev: ManagedDevice,
    /// Downloads: no client certificate, like BITS.
    pub http: Client,
    /// Outcome per ProductCode (default success).
    pub outcome: HashMap<String, Outcome>,
    /// Every job run, in order.
    pub jobs: Vec<Job>,
    /// Every HostedInstall run, in order.
    pub hosted: Vec<HostedJob>,
    /// HostedInstall leaves the app installing until [`WindowsApps::finish_hosted`].
    pub hosted_async: bool,
    /// Alerts for the next session: (Meta/Type, Source, Data).
    alerts: Vec<(&'static str, String, i64)>,
}

const MSI_ALERT: &str = "Reversed-Domain-Name:com.microsoft.mdm.win32csp_install";
const HOSTED_ALERT: &str =
    "Reversed-Domain-Name:com.microsoft.mdm.EnterpriseHostedAppInstall.result";

fn sha256_hex(b: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02X}"))
        .collect()
}

fn node_base(exec_target: &str) -> String {
    exec_target
        .strip_suffix("/DownloadInstall")
        .expect("a DownloadInstall target")
        .to_string()
}

impl WindowsApps {
    pub fn new(dev: ManagedDevice, http: Client) -> WindowsApps {
        WindowsApps {
            dev,
            http,
            outcome: HashMap::new(),
            jobs: Vec::new(),
            hosted: Vec::new(),
            hosted_async: false,
            alerts: Vec::new(),
        }
    }

    /// One management session (carrying the alerts of jobs that ended since the last one);
    /// then runs the install jobs received. Returns the commands received.
    pub async fn session(&mut self) -> Vec<Received> {
        let mut extra = String::new();
        for (n, (ty, target, code)) in self.alerts.drain(..).enumerate() {
            extra.push_str(&format!(
                r#"<Alert><CmdID>{}</CmdID><Data>1226</Data><Item><Source><LocURI>{target}</LocURI></Source><Meta><Type xmlns="syncml:metinf">{ty}</Type><Format xmlns="syncml:metinf">int</Format><Mark xmlns="syncml:metinf">informational</Mark></Meta><Data>{code}</Data></Item></Alert>"#,
                100 + n
            ));
        }
        let got = self.dev.session_with(&extra).await;
        for c in &got {
            if c.verb == "Exec"
                && c.target
                    .as_deref()
                    .is_some_and(|t| t.ends_with("/DownloadInstall"))
            {
                self.run(c).await;
            }
            if c.verb == "Exec"
                && c.target
                    .as_deref()
                    .is_some_and(|t| t.ends_with("/HostedInstall"))
            {
                self.run_hosted(c).await;
            }
        }
        got
    }

    /// BITS: a HEAD for the size, then the file in two ranges.
    async fn download(&self, url: &str) -> Vec<u8> {
        let head = self.http.request("HEAD", url, &[], Vec::new()).await;
        assert_eq!(head.status, 200, "HEAD {url}");
        let size: usize = head.headers["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let first = self
            .http
            .request("GET", url, &[("range", "bytes=0-999")], Vec::new())
            .await;
        assert_eq!(first.status, 206);
        assert_eq!(
            first.headers["content-range"].to_str().unwrap(),
            format!("bytes 0-{}/{size}", size.min(1000) - 1)
        );
        let mut data = first.body;
        if size > 1000 {
            let rest = self
                .http
                .request("GET", url, &[("range", "bytes=1000-")], Vec::new())
                .await;
            assert_eq!(rest.status, 206);
            data.extend(rest.body);
        }
        assert_eq!(data.len(), size);
        data
    }

    async fn run_hosted(&mut self, c: &Received) {
        let target = c.target.clone().unwrap_or_default();
        let base = target
            .strip_suffix("/HostedInstall")
            .expect("a HostedInstall target");
        let pfn = base.rsplit('/').next().unwrap_or_default().to_string();
        assert!(
            base.ends_with(&format!(
                "/EnterpriseModernAppManagement/AppInstallation/{pfn}"
            )),
            "{target}"
        );
        let xml = c.data.clone().expect("Application in Data");
        let doc = roxmltree::Document::parse(&xml).expect("HostedInstall data is XML");
        let a = doc.root_element();
        assert_eq!(a.tag_name().name(), "Application", "{xml}");
        let url = a
            .attribute("PackageUri")
            .expect("Application/@PackageUri")
            .to_string();
        let downloaded = self.download(&url).await;
        let status = if self.hosted_async { "1" } else { "3" };
        self.dev
            .nodes
            .insert(format!("{base}/Status"), status.into());
        self.dev
            .nodes
            .insert(format!("{base}/LastError"), "0".into());
        self.hosted.push(HostedJob {
            pfn,
            base: base.to_string(),
            url,
            downloaded,
        });
    }

    /// Ends the last HostedInstall of `pfn`: `code` 0 removes its AppInstallation node (Gets
    /// answer 404), another is Status 2 with that LastError; `alert` also reports it.
    pub fn finish_hosted(&mut self, pfn: &str, code: i64, alert: bool) {
        let base = self
            .hosted
            .iter()
            .rev()
            .find(|j| j.pfn == pfn)
            .map(|j| j.base.clone())
            .expect("a HostedInstall of that family");
        for n in ["Status", "LastError"] {
            let t = format!("{base}/{n}");
            if code == 0 {
                self.dev.nodes.remove(&t);
                self.dev.status_for.insert(t, 404);
            } else {
                let v = if n == "Status" {
                    "2".to_string()
                } else {
                    code.to_string()
                };
                self.dev.nodes.insert(t, v);
            }
        }
        if alert {
            self.alerts
                .push((HOSTED_ALERT, format!("{base}/HostedInstall"), code));
        }
    }

    /// Windows' view of a job before it ran: Initialized.
    pub fn initialized(&mut self, exec_target: &str) {
        let b = node_base(exec_target);
        self.dev.nodes.insert(format!("{b}/Status"), "10".into());
        self.dev.nodes.insert(format!("{b}/LastError"), "0".into());
    }

    async fn run(&mut self, c: &Received) {
        let target = c.target.clone().unwrap_or_default();
        let xml = c.data.clone().expect("MsiInstallJob in Data");
        let doc = roxmltree::Document::parse(&xml).expect("MsiInstallJob is XML");
        let job = doc.root_element();
        assert_eq!(job.tag_name().name(), "MsiInstallJob");
        let text = |name: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == name)
                .and_then(|n| n.text())
                .map(|t| t.trim().to_string())
                .unwrap_or_else(|| panic!("MsiInstallJob without {name}: {xml}"))
        };
        let version = doc
            .descendants()
            .find(|n| n.tag_name().name() == "Product")
            .and_then(|n| n.attribute("Version"))
            .expect("Product/@Version")
            .to_string();
        let url = text("ContentURL");
        let hash = text("FileHash");
        for t in ["TimeOut", "RetryCount", "RetryInterval"] {
            assert!(text(t).parse::<u32>().is_ok(), "{t} is a number");
        }
        let id = job.attribute("id").expect("MsiInstallJob/@id").to_string();
        let mut data = self.download(&url).await;
        let size = data.len();
        let outcome = self.outcome.get(&id).copied().unwrap_or(Outcome::Success);
        if outcome == Outcome::CorruptDownload {
            data[size / 2] ^= 0xff;
        }
        let (status, code) = if !sha256_hex(&data).eq_ignore_ascii_case(&hash) {
            ("30", HASH_MISMATCH)
        } else if outcome == Outcome::Fails1603 {
            ("60", 1603)
        } else {
            ("70", 0)
        };
        let b = node_base(&target);
        self.dev.nodes.insert(format!("{b}/Status"), status.into());
        self.dev
            .nodes
            .insert(format!("{b}/LastError"), code.to_string());
        self.alerts.push((MSI_ALERT, target, code));
        self.jobs.push(Job {
            id,
            version,
            url,
            command_line: text("CommandLine"),
            downloaded: data,
            code,
        });
    }
}
