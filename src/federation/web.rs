//! The two browser pages: the federated login page (discovery `AuthenticationServiceUrl`,
//! MS-MDE2 §3.2) and the Entra MDM application's terms of use. Small, accessible HTML
//! (labels, `lang`, no external resources), strict response headers, every peer-supplied value
//! HTML-escaped.
//!
//! Login (`/EnrollmentServer/Auth`):
//! * `GET ?appru=<ms-app://…>&login_hint=<upn>` → the form (UPN pre-filled, `appru` in a hidden
//!   field). Only `ms-app://` return addresses are accepted; anything else gets a 400 page with
//!   no form, and a log line.
//! * `POST` (form: `upn`, `password`, `appru`) → `appru` re-validated; the password is checked
//!   (argon2, disabled users refused); success answers a page that auto-POSTs `wresult=<token>`
//!   to `appru` (inline script, plus a visible Continue button for no-JS), failure the form
//!   again with the error.
//!
//! Terms (`/EnrollmentServer/ToS`):
//! * `GET ?redirect_uri=<ms-appx-web://…>&client-request-id=<guid>` → the terms with Accept and
//!   Decline buttons (a form POSTing back here).
//! * `POST` (form: `redirect_uri`, `client-request-id`, `action=accept|decline`) → 302 to
//!   `redirect_uri?IsAccepted=true&OpaqueBlob=<blob>` or
//!   `redirect_uri?IsAccepted=false&error=access_denied&error_description=…`. Only
//!   `ms-appx-web://` redirect URIs; others get a 400 page. The `Authorization: Bearer` header
//!   Windows sends is not needed to show terms and is ignored.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::config::paths;
use crate::http::routes::{content_type, read_body, Resp};

/// Largest form body accepted.
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// Longest `appru` / `redirect_uri` accepted.
pub const MAX_RETURN_URL: usize = 2048;

/// Escapes text for HTML element content and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `application/x-www-form-urlencoded` (also a URL query): `+` is a space, `%XX` bytes
/// must form UTF-8. `None` when malformed.
pub fn parse_form(s: &str) -> Option<Vec<(String, String)>> {
    fn decode(s: &str) -> Option<String> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = b.get(i + 1..i + 3)?;
                    let hex = std::str::from_utf8(hex).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Checks a return address: `scheme` prefix (case-insensitive), at most [`MAX_RETURN_URL`]
/// characters, printable ASCII without spaces, quotes or angle brackets.
pub fn valid_return_url(url: &str, scheme: &str) -> bool {
    url.len() > scheme.len()
        && url.len() <= MAX_RETURN_URL
        && url
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        && url.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`' | b'\\')
        })
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;\
padding:0 1rem;line-height:1.5}label{display:block;margin-top:1rem}input{width:100%;\
padding:.5rem;font-size:1rem;box-sizing:border-box}button{margin-top:1rem;padding:.5rem 1.5rem;\
font-size:1rem}.error{color:#a00000;border:1px solid #a00000;padding:.5rem}";

fn page(status: StatusCode, title: &str, body: &str) -> Resp {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>\n",
        html_escape(title)
    );
    let mut r = Response::new(Full::new(Bytes::from(html)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    r
}

fn bad_request(title: &str, msg: &str) -> Resp {
    page(
        StatusCode::BAD_REQUEST,
        title,
        &format!("<h1>{}</h1><p>{}</p>", html_escape(title), html_escape(msg)),
    )
}

fn method_not_allowed() -> Resp {
    let mut r = crate::http::routes::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, POST"));
    r
}

/// Reads the query (GET) or the form body (POST). `Err` is the response to send.
async fn read_params(req: Request<Incoming>) -> Result<(Method, Vec<(String, String)>), Resp> {
    let method = req.method().clone();
    let raw = match method {
        Method::GET => req.uri().query().unwrap_or("").to_string(),
        Method::POST => {
            if !content_type(&req).starts_with("application/x-www-form-urlencoded") {
                return Err(bad_request("Bad request", "Expected a form submission."));
            }
            let timeout = crate::http::routes::BodyTimeout::of(&req);
            match read_body(req.into_body(), MAX_FORM_BYTES, timeout).await {
                Ok(b) => match String::from_utf8(b.to_vec()) {
                    Ok(s) => s,
                    Err(_) => return Err(bad_request("Bad request", "The form is not UTF-8.")),
                },
                Err(_) => return Err(bad_request("Bad request", "The form could not be read.")),
            }
        }
        _ => return Err(method_not_allowed()),
    };
    match parse_form(&raw) {
        Some(f) => Ok((method, f)),
        None => Err(bad_request(
            "Bad request",
            "The request parameters are malformed.",
        )),
    }
}

fn login_form(appru: &str, upn: &str, error: Option<&str>) -> Resp {
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", html_escape(e)))
        .unwrap_or_default();
    page(
        StatusCode::OK,
        "Sign in to enroll this device",
        &format!(
            "<h1>Sign in to enroll this device</h1>{err}\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"appru\" value=\"{appru}\">\
<label for=\"upn\">User name</label>\
<input id=\"upn\" name=\"upn\" type=\"email\" autocomplete=\"username\" required value=\"{upn}\">\
<label for=\"password\">Password</label>\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required{autofocus}>\
<button type=\"submit\">Sign in</button></form>",
            action = paths::AUTH,
            appru = html_escape(appru),
            upn = html_escape(upn),
            autofocus = if upn.is_empty() { "" } else { " autofocus" },
        ),
    )
}

/// `/EnrollmentServer/Auth` (GET form, POST sign-in).
pub async fn auth(app: Arc<App>, req: Request<Incoming>) -> Resp {
    if !app.cfg.auth_policy.allows_federated() {
        return crate::http::routes::text(StatusCode::NOT_FOUND, "not found");
    }
    let (method, form) = match read_params(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let appru = field(&form, "appru").unwrap_or("");
    if !valid_return_url(appru, "ms-app://") {
        tracing::warn!(appru = %crate::soap::envelope::clip(appru), ?method, "login page refused: appru is not an ms-app:// address");
        return bad_request(
            "Invalid request",
            "This sign-in page only returns to the Windows enrollment app (ms-app://).",
        );
    }
    if method == Method::GET {
        return login_form(appru, field(&form, "login_hint").unwrap_or("").trim(), None);
    }
    let typed = field(&form, "upn").unwrap_or("");
    let upn = match crate::upn::parse(typed) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(upn = %crate::soap::envelope::clip(typed), error = %e, "federated sign-in refused: bad user name");
            return login_form(
                appru,
                typed.trim(),
                Some("The user name or password is incorrect."),
            );
        }
    };
    let password = field(&form, "password").unwrap_or("").to_string();
    let appru = appru.to_string();
    let app2 = app.clone();
    let upn2 = upn.clone();
    let outcome = tokio::task::spawn_blocking(move || sign_in(&app2, &upn2, &password)).await;
    match outcome {
        Ok(Ok(token)) => {
            tracing::info!(%upn, "federated sign-in succeeded; login token issued");
            auto_post(&appru, &token)
        }
        Ok(Err(SignInError::Refused { reason, shown })) => {
            tracing::warn!(%upn, %reason, "federated sign-in refused");
            login_form(&appru, &upn, Some(shown))
        }
        Ok(Err(SignInError::Server(e))) => {
            tracing::error!(%upn, error = %e, "federated sign-in failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in unavailable",
                "<h1>Sign-in unavailable</h1><p>The server encountered an error. Try again later.</p>",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "federated sign-in task failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in unavailable",
                "<h1>Sign-in unavailable</h1>",
            )
        }
    }
}

enum SignInError {
    Refused { reason: String, shown: &'static str },
    Server(String),
}

fn sign_in(app: &App, upn: &str, password: &str) -> Result<String, SignInError> {
    const WRONG: &str = "The user name or password is incorrect.";
    const BUSY: &str = "The server is busy. Wait a few seconds and sign in again.";
    let user = app
        .store
        .get_user(upn)
        .map_err(|e| SignInError::Server(format!("store: {e}")))?;
    let busy = |b: crate::password_work::Busy| SignInError::Refused {
        reason: format!("password not checked: {b}"),
        shown: BUSY,
    };
    let Some(user) = user else {
        crate::lockout::equalise_unknown(app, password).map_err(busy)?;
        return Err(SignInError::Refused {
            reason: "unknown user".into(),
            shown: WRONG,
        });
    };
    let verdict =
        crate::lockout::check(app, upn, password, &user.password_hash).map_err(|e| match e {
            crate::lockout::CheckError::Busy(b) => busy(b),
            crate::lockout::CheckError::Store(e) => SignInError::Server(format!("store: {e}")),
        })?;
    if let Some(reason) = crate::mdm::enroll::refusal(upn, verdict) {
        return Err(SignInError::Refused {
            reason,
            shown: WRONG,
        });
    }
    if user.disabled {
        return Err(SignInError::Refused {
            reason: "user is disabled".into(),
            shown: "This account is disabled. Contact your administrator.",
        });
    }
    app.federation
        .sts
        .issue(app.store.records(), &user.upn, app.clock.now_unix())
        .map_err(|e| SignInError::Server(e.to_string()))
}

fn auto_post(appru: &str, token: &str) -> Resp {
    page(
        StatusCode::OK,
        "Signed in",
        &format!(
            "<h1>Signed in</h1><p>Returning to device enrollment…</p>\
<form id=\"wresult-form\" method=\"post\" action=\"{appru}\">\
<input type=\"hidden\" name=\"wresult\" value=\"{token}\">\
<button type=\"submit\">Continue</button></form>\
<script>document.getElementById(\"wresult-form\").submit();</script>",
            appru = html_escape(appru),
            token = html_escape(token),
        ),
    )
}

/// `/EnrollmentServer/ToS` (GET terms, POST accept/decline).
pub async fn tos(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let (method, form) = match read_params(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let redirect = field(&form, "redirect_uri").unwrap_or("");
    if !valid_return_url(redirect, "ms-appx-web://") {
        tracing::warn!(redirect_uri = %crate::soap::envelope::clip(redirect), "terms page refused: redirect_uri is not an ms-appx-web:// address");
        return bad_request(
            "Invalid request",
            "The terms of use can only return to Windows (ms-appx-web://).",
        );
    }
    let request_id = field(&form, "client-request-id").unwrap_or("");
    if method == Method::GET {
        return page(
            StatusCode::OK,
            "Terms of use",
            &format!(
                "<h1>Terms of use</h1><section aria-label=\"Terms\">{terms}</section>\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"redirect_uri\" value=\"{redirect}\">\
<input type=\"hidden\" name=\"client-request-id\" value=\"{rid}\">\
<button type=\"submit\" name=\"action\" value=\"accept\">Accept</button> \
<button type=\"submit\" name=\"action\" value=\"decline\">Decline</button></form>",
                terms = app.federation.tos_html,
                action = paths::TOS,
                redirect = html_escape(redirect),
                rid = html_escape(request_id),
            ),
        );
    }
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let location = match field(&form, "action") {
        Some("accept") => {
            let blob = serde_json::json!({
                "tos_accepted_at": app.clock.now_unix(),
                "client_request_id": request_id,
            });
            let blob = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob.to_string());
            tracing::info!(client_request_id = %crate::soap::envelope::clip(request_id), "terms of use accepted");
            format!("{redirect}{sep}IsAccepted=true&OpaqueBlob={blob}")
        }
        Some("decline") => {
            tracing::info!(client_request_id = %crate::soap::envelope::clip(request_id), "terms of use declined");
            format!(
                "{redirect}{sep}IsAccepted=false&error=access_denied&error_description={}",
                percent_encode("The user declined the terms of use.")
            )
        }
        _ => return bad_request("Bad request", "Choose Accept or Decline."),
    };
    let Ok(loc) = HeaderValue::from_str(&location) else {
        return bad_request("Invalid request", "The return address is not usable.");
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut().insert(LOCATION, loc);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_forms() {
        assert_eq!(
            html_escape(r#"<a href="x">'&"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
        assert_eq!(
            parse_form("a=1+2&b=%C3%A9%26&c&=x").unwrap(),
            vec![
                ("a".into(), "1 2".into()),
                ("b".into(), "é&".into()),
                ("c".into(), "".into()),
                ("".into(), "x".into())
            ]
        );
        assert!(parse_form("a=%zz").is_none());
        assert!(parse_form("a=%C3").is_none());
        assert!(parse_form("a=%4").is_none());
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn return_urls() {
        assert!(valid_return_url("ms-app://s-1-15-2-1-2-3/", "ms-app://"));
        assert!(valid_return_url("MS-APP://x", "ms-app://"));
        for bad in [
            "ms-app://",
            "https://evil.example/",
            "javascript:alert(1)",
            "ms-app://x\"><script>",
            "ms-app://x y",
            " ms-app://x",
        ] {
            assert!(!valid_return_url(bad, "ms-app://"), "{bad}");
        }
        assert!(!valid_return_url(
            &format!("ms-app://{}", "a".repeat(MAX_RETURN_URL)),
            "ms-app://"
        ));
        assert!(valid_return_url(
            "ms-appx-web://Microsoft.AAD.BrokerPlugin/x",
            "ms-appx-web://"
        ));
        assert!(!valid_return_url("ms-app://x", "ms-appx-web://"));
    }
}
