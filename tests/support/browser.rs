//! A real headless Chromium driven over WebDriver (Debian's `chromium` + `chromium-driver`,
//! through our small WebDriver client, `support::webdriver`). [`Browser::start`] returns `None` (the test prints `SKIP`) when either
//! binary is missing, and panics instead when `WINMDM_REQUIRE_CHROMIUM=1` (set by `.ci/run`).
//!
//! Trust: Chromium accepts exactly our test server's TLS key through
//! `--ignore-certificate-errors-spki-list=<base64 SHA-256 of its SubjectPublicKeyInfo>` (a pin:
//! any other certificate error still fails), not the blanket `--ignore-certificate-errors`.
//! chromedriver listens on a free loopback port and is killed (with its browser) on drop; the
//! profile is a fresh temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::webdriver::{By, WebDriver};

/// A running chromedriver + Chromium session.
pub struct Browser {
    pub driver: WebDriver,
    chromedriver: Child,
    port: u16,
    session: String,
    quitted: bool,
    _profile: tempfile::TempDir,
    /// Where screenshots go (`WINMDM_SCREENSHOT_DIR`, else a temporary directory kept for the run).
    pub shots: PathBuf,
    _shots_tmp: Option<tempfile::TempDir>,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of a DER certificate: Chromium's SPKI pin format.
pub fn spki_pin(cert_der: &[u8]) -> String {
    use base64::Engine;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).expect("server certificate");
    let spki = cert.tbs_certificate.subject_pki.raw;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

impl Browser {
    /// Clicks the element `by` finds.
    pub async fn click(&self, by: By<'_>) {
        let e = self.driver.find(by).await.expect("element to click");
        e.click().await.expect("click");
    }

    /// Types `text` into the element `by` finds.
    pub async fn type_in(&self, by: By<'_>, text: &str) {
        let e = self.driver.find(by).await.expect("element to type into");
        e.send_keys(text).await.expect("send keys");
    }

    /// Starts chromedriver and a headless Chromium trusting the certificate `server_cert_der`
    /// (its key only); `None` to skip.
    pub async fn start(server_cert_der: &[u8]) -> Option<Browser> {
        let require = std::env::var("WINMDM_REQUIRE_CHROMIUM").as_deref() == Ok("1");
        let chromium = find(&["chromium", "chromium-browser", "google-chrome"]);
        let driver_bin = find(&["chromedriver"]);
        let (Some(chromium), Some(driver_bin)) = (chromium, driver_bin) else {
            assert!(
                !require,
                "WINMDM_REQUIRE_CHROMIUM=1 but chromium/chromedriver are not installed \
                 (apt-get install -y chromium chromium-driver)"
            );
            eprintln!("SKIP: chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)");
            return None;
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let chromedriver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args: Vec<String> = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-crash-reporter".into(),
            "--disable-breakpad".into(),
            "--window-size=1280,800".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!(
                "--ignore-certificate-errors-spki-list={}",
                spki_pin(server_cert_der)
            ),
        ];
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.to_str().expect("path"), "args": args},
        });
        let mut chromedriver = chromedriver;
        let driver = match WebDriver::new(port, caps).await {
            Ok(d) => d,
            Err(e) => {
                kill_group(&mut chromedriver);
                panic!("chromium session: {e}");
            }
        };
        let (shots, shots_tmp) = match std::env::var_os("WINMDM_SCREENSHOT_DIR") {
            Some(d) => {
                let d = PathBuf::from(d);
                std::fs::create_dir_all(&d).expect("screenshot dir");
                (d, None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("winmdm-screenshots-")
                    .tempdir()
                    .expect("tmp");
                (t.path().to_path_buf(), Some(t))
            }
        };
        let session = driver.session_id().to_string();
        Some(Browser {
            driver,
            chromedriver,
            port,
            session,
            quitted: false,
            _profile: profile,
            shots,
            _shots_tmp: shots_tmp,
        })
    }

    /// Saves a screenshot `name.png` of the current page.
    pub async fn shot(&self, name: &str) {
        let p = self.shots.join(format!("{name}.png"));
        self.driver.screenshot(&p).await.expect("screenshot");
    }

    /// The text of the first element matching `css`, waiting up to 10 s for it to appear (a
    /// click that submits a form returns before the next page is there).
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.driver.find(By::Css(css)).await {
                Ok(e) => match e.text().await {
                    Ok(t) => return t,
                    Err(e) if Instant::now() > deadline => panic!("{css}: {e}"),
                    Err(_) => {}
                },
                Err(e) if Instant::now() > deadline => panic!("{css}: {e}"),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to 10 s for the page's path to end with `suffix`.
    pub async fn wait_path(&self, suffix: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.driver.current_url().await.expect("url");
            let path = url
                .split_once("://")
                .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_string()))
                .unwrap_or_default();
            let path = path.split(['?', '#']).next().unwrap_or("").to_string();
            if path.ends_with(suffix) {
                return;
            }
            assert!(Instant::now() < deadline, "at {path}, waited for {suffix}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether an element matches `css`.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .driver
            .find_all(By::Css(css))
            .await
            .expect("find_all")
            .is_empty()
    }

    /// Runs `script` (which may return a Promise) and returns its JSON value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.driver
            .execute(script)
            .await
            .unwrap_or_else(|e| panic!("script: {e}"))
    }

    /// Ends the session and stops chromedriver.
    pub async fn quit(mut self) {
        let _ = self.driver.quit().await;
        self.quitted = true;
        kill_group(&mut self.chromedriver);
    }

    /// The screenshot directory (kept only when `WINMDM_SCREENSHOT_DIR` names it).
    pub fn shots_dir(&self) -> &Path {
        &self.shots
    }
}

/// Stops chromedriver (the browser was closed by `quit`, or goes with its driver).
fn kill_group(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Ends a WebDriver session with a plain blocking HTTP request (usable in `Drop`, after a
/// panic): chromedriver then closes its Chromium.
fn delete_session(port: u16, session: &str) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    let req = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_ok() {
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.quitted {
            delete_session(self.port, &self.session);
        }
        kill_group(&mut self.chromedriver);
    }
}
