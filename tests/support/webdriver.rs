//! A small W3C WebDriver client (the JSON protocol chromedriver speaks on loopback), over hyper:
//! just the commands the console tests use. Written instead of using a WebDriver crate because
//! `thirtyfour` turns on serde_json's `preserve_order` for the whole test build, so the tests
//! would no longer run the JSON code the server ships with (found by the Autopilot export
//! goldens).

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How to find elements.
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    /// `id` attribute.
    Id(&'a str),
    /// CSS selector.
    Css(&'a str),
    /// XPath expression.
    XPath(&'a str),
    /// Part of a link's text.
    PartialLinkText(&'a str),
}

impl By<'_> {
    fn body(self) -> Value {
        let (using, value) = match self {
            By::Id(id) => ("css selector", format!("[id=\"{id}\"]")),
            By::Css(c) => ("css selector", c.to_string()),
            By::XPath(x) => ("xpath", x.to_string()),
            By::PartialLinkText(t) => ("partial link text", t.to_string()),
        };
        json!({"using": using, "value": value})
    }
}

/// One WebDriver session on chromedriver at `127.0.0.1:port`.
#[derive(Debug, Clone)]
pub struct WebDriver {
    port: u16,
    session: String,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element {
    d: WebDriver,
    id: String,
}

async fn call(port: u16, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let r = tx
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = r.status();
    let bytes = r
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("json: {e}"))?;
    if !status.is_success() {
        return Err(format!("{method} {path}: {status}: {}", v["value"]));
    }
    Ok(v["value"].clone())
}

fn element_id(v: &Value) -> Result<String, String> {
    v[ELEMENT]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("not an element: {v}"))
}

impl WebDriver {
    /// Opens a session with these capabilities.
    pub async fn new(port: u16, capabilities: Value) -> Result<WebDriver, String> {
        let v = call(
            port,
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": capabilities}})),
        )
        .await?;
        let session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId: {v}"))?
            .to_string();
        Ok(WebDriver { port, session })
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        call(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
        .await
    }

    /// Navigates and waits for the page to load.
    pub async fn goto(&self, url: impl AsRef<str>) -> Result<(), String> {
        self.cmd("POST", "/url", Some(json!({"url": url.as_ref()})))
            .await
            .map(|_| ())
    }

    /// The current URL.
    pub async fn current_url(&self) -> Result<String, String> {
        Ok(self
            .cmd("GET", "/url", None)
            .await?
            .as_str()
            .unwrap_or("")
            .to_string())
    }

    /// Reloads the page.
    pub async fn refresh(&self) -> Result<(), String> {
        self.cmd("POST", "/refresh", Some(json!({})))
            .await
            .map(|_| ())
    }

    /// The first element found.
    pub async fn find(&self, by: By<'_>) -> Result<Element, String> {
        let v = self.cmd("POST", "/element", Some(by.body())).await?;
        Ok(Element {
            d: self.clone(),
            id: element_id(&v)?,
        })
    }

    /// Every element found.
    pub async fn find_all(&self, by: By<'_>) -> Result<Vec<Element>, String> {
        let v = self.cmd("POST", "/elements", Some(by.body())).await?;
        v.as_array()
            .ok_or("not a list")?
            .iter()
            .map(|e| {
                Ok(Element {
                    d: self.clone(),
                    id: element_id(e)?,
                })
            })
            .collect()
    }

    /// Runs a script (its Promise is awaited) and returns its value.
    pub async fn execute(&self, script: &str) -> Result<Value, String> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().ok_or("no image")?)
            .map_err(|e| e.to_string())?;
        std::fs::write(path, png).map_err(|e| e.to_string())
    }

    /// Moves and resizes the window.
    pub async fn set_window_rect(&self, x: i64, y: i64, w: i64, h: i64) -> Result<(), String> {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"x": x, "y": y, "width": w, "height": h})),
        )
        .await
        .map(|_| ())
    }

    /// Ends the session (chromedriver closes the browser).
    pub async fn quit(&self) -> Result<(), String> {
        call(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        )
        .await
        .map(|_| ())
    }
}

impl Element {
    async fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Result<Value, String> {
        self.d
            .cmd(method, &format!("/element/{}{what}", self.id), body)
            .await
    }

    /// Clicks it.
    pub async fn click(&self) -> Result<(), String> {
        self.cmd("POST", "/click", Some(json!({})))
            .await
            .map(|_| ())
    }

    /// Types into it (a file input takes a path).
    pub async fn send_keys(&self, text: &str) -> Result<(), String> {
        self.cmd("POST", "/value", Some(json!({"text": text})))
            .await
            .map(|_| ())
    }

    /// Its rendered text.
    pub async fn text(&self) -> Result<String, String> {
        Ok(self
            .cmd("GET", "/text", None)
            .await?
            .as_str()
            .unwrap_or("")
            .to_string())
    }

    /// The first element inside it.
    pub async fn find(&self, by: By<'_>) -> Result<Element, String> {
        let v = self.cmd("POST", "/element", Some(by.body())).await?;
        Ok(Element {
            d: self.d.clone(),
            id: element_id(&v)?,
        })
    }
}
