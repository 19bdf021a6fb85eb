//! The invitation landing page, `GET /enroll/invite/<token>` on the public listener (no admin
//! token: the unguessable token is the credential to *see* the page; enrolling still needs the
//! user's password). Minimal accessible HTML without scripts: the `ms-device-enrollment:` deep link
//! as a button-styled link and the manual steps. Unknown tokens get a 404 page; expired, revoked
//! and used invitations (or a user since deleted or disabled) a 410 page. Every answer is logged.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::routes::Resp;
use crate::app::App;
use crate::service::invitations::{self, InvitationState};
use crate::xml::escape_text as esc;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1b1b1b}\
a.button{display:inline-block;padding:.75rem 1.25rem;background:#0b57d0;color:#fff;border-radius:.25rem;text-decoration:none;font-weight:600}\
a.button:focus{outline:3px solid #1b1b1b;outline-offset:2px}";

fn page(status: StatusCode, title: &str, main: &str) -> Resp {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{main}</main>\n</body>\n</html>\n",
        esc(title)
    );
    let mut r = Response::new(Full::new(Bytes::from(html)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The token is in the URL: never send it on as a Referer; no scripts, no external loads.
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn gone(service: &str, why: &str) -> Resp {
    page(
        StatusCode::GONE,
        &format!("Invitation no longer valid – {service}"),
        &format!(
            "<h1>This invitation is no longer valid</h1>\n<p>{}</p>\n<p>Ask your administrator for a new invitation.</p>\n",
            esc(why)
        ),
    )
}

fn not_found(service: &str) -> Resp {
    page(
        StatusCode::NOT_FOUND,
        &format!("Invitation not found – {service}"),
        "<h1>Invitation not found</h1>\n<p>Check that you opened the whole link from your invitation, or ask your administrator for a new one.</p>\n",
    )
}

/// The HTML of an open invitation.
pub fn invitation_html(service: &str, upn: &str, deep_link: &str, expires_at: i64) -> String {
    let (service, upn) = (esc(service), esc(upn));
    format!(
        "<h1>Enroll your Windows device in {service}</h1>\n\
         <p>This invitation is for <strong>{upn}</strong>. It works once and expires at {} (UTC).</p>\n\
         <h2>On this Windows device</h2>\n\
         <p><a class=\"button\" href=\"{}\">Start the enrollment</a></p>\n\
         <h2>Or enroll by hand</h2>\n\
         <ol>\n\
         <li>Open <strong>Settings &gt; Accounts &gt; Access work or school</strong> and select <strong>Enroll only in device management</strong>.</li>\n\
         <li>Enter your user name: <strong>{upn}</strong>.</li>\n\
         <li>Sign in with your password when asked.</li>\n\
         </ol>\n",
        esc(&crate::clock::rfc3339(expires_at)),
        crate::xml::escape_attr(deep_link)
    )
}

/// Serves `GET /enroll/invite/<token>`.
pub async fn invite(app: Arc<App>, token: String) -> Resp {
    let service = app.cfg.service_name.clone();
    // Landing tokens are 64 lower-case hex characters; anything else is not looked up.
    if token.len() != 64
        || !token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        tracing::info!("invitation landing page: malformed token (404)");
        return not_found(&service);
    }
    let a = app.clone();
    let found = tokio::task::spawn_blocking(move || {
        let inv = invitations::find_by_token(&a, &token)?;
        let user = match &inv {
            Some(i) => a.store.get_user(&i.upn)?,
            None => None,
        };
        Ok::<_, crate::store::StoreError>((inv, user))
    })
    .await;
    let (inv, user) = match found {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "invitation landing page: store error");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Error – {service}"),
                "<h1>Something went wrong</h1>\n<p>Try again later.</p>\n",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "invitation landing page: task failed");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Error – {service}"),
                "<h1>Something went wrong</h1>\n<p>Try again later.</p>\n",
            );
        }
    };
    let Some(inv) = inv else {
        tracing::info!("invitation landing page: unknown token (404)");
        return not_found(&service);
    };
    let now = app.clock.now_unix();
    let state = inv.state(now);
    let why = match (state, &user) {
        (InvitationState::Used, _) => Some("It was already used to enroll a device."),
        (InvitationState::Revoked, _) => Some("It was revoked by an administrator."),
        (InvitationState::Expired, _) => Some("It has expired."),
        (InvitationState::Open, None) => Some("The account it was made for no longer exists."),
        (InvitationState::Open, Some(u)) if u.disabled => {
            Some("The account it was made for is disabled.")
        }
        (InvitationState::Open, Some(_)) => None,
    };
    if let Some(why) = why {
        tracing::info!(invitation = %inv.id, upn = %inv.upn, ?state, reason = why, "invitation landing page refused (410)");
        return gone(&service, why);
    }
    tracing::info!(invitation = %inv.id, upn = %inv.upn, "invitation landing page served");
    let link = invitations::deep_link(&app, &inv.upn);
    page(
        StatusCode::OK,
        &format!("Enroll your device – {service}"),
        &invitation_html(&service, &inv.upn, &link, inv.expires_at),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        let h = invitation_html(
            "<MDM>",
            "a&b@example.com",
            "ms-device-enrollment:?mode=mdm&username=a%26b%40example.com&servername=https://x/y\"",
            0,
        );
        assert!(h.contains("&lt;MDM&gt;"));
        assert!(h.contains("a&amp;b@example.com"));
        assert!(h.contains("href=\"ms-device-enrollment:?mode=mdm&amp;username=a%26b%40example.com&amp;servername=https://x/y&quot;\""));
        assert!(!h.contains("<MDM>"));
    }
}
