//! The fake device's app side, acting as Windows does for EnterpriseDesktopAppManagement: it
//! runs each `DownloadInstall` job it receives (downloads every ContentURL from the signed URL
//! with `Range` requests, checks the SHA-256 against FileHash, "runs msiexec"), keeps the
//! `Status`/`LastError` nodes it answers `Get`s with, and reports the result with the generic
//! alert `com.microsoft.mdm.win32csp_install` in its next session. For
//! EnterpriseModernAppManagement it runs each `AppInstallation/{PFN}/HostedInstall` it receives:
//! downloads the `Application/@PackageUri` the same way and keeps the package.

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
    alerts: Vec<(String, i64)>,
}

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
            alerts: Vec::new(),
        }
    }

    /// One management session (carrying the alerts of jobs that ended since the last one);
    /// then runs the install jobs received. Returns the commands received.
    pub async fn session(&mut self) -> Vec<Received> {
        let mut extra = String::new();
        for (n, (target, code)) in self.alerts.drain(..).enumerate() {
            extra.push_str(&format!(
                r#"<Alert><CmdID>{}</CmdID><Data>1226</Data><Item><Source><LocURI>{target}</LocURI></Source><Meta><Type xmlns="syncml:metinf">Reversed-Domain-Name:com.microsoft.mdm.win32csp_install</Type><Format xmlns="syncml:metinf">int</Format><Mark xmlns="syncml:metinf">informational</Mark></Meta><Data>{code}</Data></Item></Alert>"#,
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
        self.dev.nodes.insert(format!("{base}/Status"), "3".into());
        self.dev
            .nodes
            .insert(format!("{base}/LastError"), "0".into());
        self.hosted.push(HostedJob {
            pfn,
            url,
            downloaded,
        });
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
        self.alerts.push((target, code));
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
