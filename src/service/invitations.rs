//! One-time, expiring enrollment invitations: create (optionally e-mailed), list, revoke.
//!
//! The landing page `GET /enroll/invite/<token>` (public listener, no admin token,
//! [`crate::http::landing`]) shows the `ms-device-enrollment:` deep link and the manual steps.
//! Only the SHA-256 digest of the link token is stored (index kind [`BY_TOKEN`]), so the store
//! never holds a usable link. An invitation is *used* once a device of its user completes an
//! enrollment after it was created ([`mark_used`], called by the enrollment flow); the landing page
//! then answers 410, as it does for expired and revoked ones.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{audit, blocking, enabled_user, tokens, validate_upn, Actor, Page, ServiceError};
use crate::app::App;
use crate::config::paths;
use crate::store::records::Kind;
use crate::store::StoreError;

/// Validity when `expires_in_hours` is not given.
pub const DEFAULT_HOURS: u32 = 72;
/// Longest validity.
pub const MAX_HOURS: u32 = 720;
/// Path prefix of landing pages.
pub const LANDING_PREFIX: &str = "/enroll/invite/";

/// An invitation as stored (the link token only as its digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// `inv-<created_at hex><sequence hex><random hex>`: sorts by creation.
    pub id: String,
    /// The invited user.
    pub upn: String,
    /// Digest of the landing-page token.
    pub token_digest: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// The admin token that created it.
    pub created_by: String,
    /// Whether the e-mail was handed to the SMTP server.
    pub sent: bool,
    /// When an admin revoked it.
    pub revoked_at: Option<i64>,
    /// When a device of the user enrolled after it was created.
    pub used_at: Option<i64>,
    /// That device.
    pub used_by_device: Option<String>,
}

/// Where an invitation stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationState {
    /// Usable.
    Open,
    /// Consumed by an enrollment.
    Used,
    /// Revoked by an admin.
    Revoked,
    /// Past `expires_at`.
    Expired,
}

impl Invitation {
    /// The state at `now` (used and revoked win over expired).
    pub fn state(&self, now: i64) -> InvitationState {
        if self.used_at.is_some() {
            InvitationState::Used
        } else if self.revoked_at.is_some() {
            InvitationState::Revoked
        } else if now >= self.expires_at {
            InvitationState::Expired
        } else {
            InvitationState::Open
        }
    }
}

/// Invitations by id.
pub const INVITES: Kind<Invitation> = Kind::new("invitation");
/// Index: token digest → invitation id.
pub const BY_TOKEN: Kind<String> = Kind::new("invitation_token");
/// Index: `<upn> <id>` → id (one user's invitations are contiguous).
pub const BY_USER: Kind<String> = Kind::new("invitation_user");

const TOKEN_LABEL: &str = "winmdm invitation link v1";

/// The digest under which a landing token is stored.
pub fn token_digest(token: &str) -> String {
    tokens::digest(TOKEN_LABEL, token)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// The `ms-device-enrollment:` deep link that opens the MDM-only enrollment for `upn` against
/// this server's discovery URL (MS-MDE2 entry points, PROTOCOL.md §1).
pub fn deep_link(app: &App, upn: &str) -> String {
    format!(
        "ms-device-enrollment:?mode=mdm&username={}&servername={}",
        url_encode(upn),
        app.cfg.public_url.join(paths::DISCOVERY)
    )
}

/// The plain-text message an admin can paste (also the e-mail body).
pub fn message(
    app: &App,
    upn: &str,
    landing_url: &str,
    deep_link: &str,
    expires_at: i64,
) -> String {
    let name = &app.cfg.service_name;
    format!(
        "Hello,\n\
         \n\
         You are invited to enroll your Windows device in {name} (device management).\n\
         \n\
         On the Windows device, open this page and follow it:\n\
         {landing_url}\n\
         \n\
         Or enroll by hand:\n\
         1. Open Settings > Accounts > Access work or school and select\n\
         \x20  \"Enroll only in device management\".\n\
         2. Enter your user name: {upn}\n\
         3. Sign in with your password when asked.\n\
         \n\
         Direct enrollment link (opens the enrollment on Windows):\n\
         {deep_link}\n\
         \n\
         This invitation works once and expires at {} (UTC).\n",
        crate::clock::rfc3339(expires_at)
    )
}

/// Subject of the invitation e-mail.
pub fn subject(app: &App) -> String {
    format!("Enroll your Windows device in {}", app.cfg.service_name)
}

/// A new invitation's request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    /// The invited user.
    pub upn: String,
    /// Validity in hours (default [`DEFAULT_HOURS`]).
    pub expires_in_hours: Option<u32>,
    /// Send the message by e-mail (needs `--smtp-url`).
    #[serde(default)]
    pub send_email: bool,
}

/// An invitation as listed.
#[derive(Debug, Clone, Serialize)]
pub struct InvitationView {
    /// Id.
    pub id: String,
    /// Invited user.
    pub upn: String,
    /// State now.
    pub state: InvitationState,
    /// Creation time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// Creator token.
    pub created_by: String,
    /// E-mailed.
    pub sent: bool,
    /// Revocation time.
    pub revoked_at: Option<i64>,
    /// Use time.
    pub used_at: Option<i64>,
    /// The device that used it.
    pub used_by_device: Option<String>,
}

fn view(i: &Invitation, now: i64) -> InvitationView {
    InvitationView {
        id: i.id.clone(),
        upn: i.upn.clone(),
        state: i.state(now),
        created_at: i.created_at,
        expires_at: i.expires_at,
        created_by: i.created_by.clone(),
        sent: i.sent,
        revoked_at: i.revoked_at,
        used_at: i.used_at,
        used_by_device: i.used_by_device.clone(),
    }
}

/// A created invitation: the link (shown once: only its digest is stored) and the message.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedInvitation {
    /// Id.
    pub id: String,
    /// Invited user.
    pub upn: String,
    /// Expiry.
    pub expires_at: i64,
    /// `ms-device-enrollment:` link.
    pub deep_link: String,
    /// Landing page URL (carries the token).
    pub landing_url: String,
    /// Text to paste or e-mail.
    pub message: String,
    /// Handed to the SMTP server.
    pub sent: bool,
    /// Why the e-mail was not sent, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_error: Option<String>,
}

/// Creates an invitation for an enabled user (and e-mails it when asked and configured).
pub async fn create(
    app: &Arc<App>,
    actor: &Actor,
    ni: NewInvitation,
) -> Result<CreatedInvitation, ServiceError> {
    actor.require_admin("POST /api/v1/invitations")?;
    let upn = validate_upn(&ni.upn)?;
    let hours = ni.expires_in_hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ServiceError::bad(format!(
            "expires_in_hours must be in 1..={MAX_HOURS}"
        )));
    }
    let now = app.clock.now_unix();
    let token = crate::clock::random_hex(32);
    // Creation second, then a process-wide sequence: ids (and so list pages) sort by creation.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let inv = Invitation {
        id: format!("inv-{now:010x}{seq:08x}{}", crate::clock::random_hex(3)),
        upn: upn.clone(),
        token_digest: token_digest(&token),
        created_at: now,
        expires_at: now + i64::from(hours) * 3600,
        created_by: actor.name.clone(),
        sent: false,
        revoked_at: None,
        used_at: None,
        used_by_device: None,
    };
    let a = app.clone();
    let rec = inv.clone();
    blocking(move || {
        enabled_user(&a, &rec.upn, "an invitation")?;
        let ops = [
            INVITES.expect_absent(&rec.id),
            BY_TOKEN.expect_absent(&rec.token_digest),
            INVITES.put_op(&rec.id, &rec),
            BY_TOKEN.put_op(&rec.token_digest, &rec.id),
            BY_USER.put_op(&format!("{} {}", rec.upn, rec.id), &rec.id),
        ];
        if !a.store.records().apply_records(&ops)? {
            return Err(ServiceError::Internal {
                reason: "invitation id collision".into(),
            });
        }
        Ok(())
    })
    .await?;
    let landing_url = format!("{}{LANDING_PREFIX}{token}", app.cfg.public_url.base);
    let link = deep_link(app, &upn);
    let text = message(app, &upn, &landing_url, &link, inv.expires_at);
    let mut send_error = None;
    let mut sent = false;
    if ni.send_email {
        match &app.cfg.smtp {
            None => {
                tracing::info!(%upn, id = %inv.id, "invitation e-mail requested but no SMTP server is configured");
                send_error =
                    Some("no SMTP server configured (--smtp-url, --smtp-from)".to_string());
            }
            Some(smtp) => match super::mail::send(smtp, &upn, &subject(app), &text).await {
                Ok(()) => sent = true,
                Err(e) => {
                    tracing::warn!(%upn, id = %inv.id, error = %e, "invitation e-mail not sent");
                    send_error = Some(e.to_string());
                }
            },
        }
    }
    if sent {
        let a = app.clone();
        let id = inv.id.clone();
        blocking(move || {
            INVITES.update(a.store.records(), &id, |cur| {
                Ok(cur.map(|i| Invitation { sent: true, ..i }))
            })?;
            Ok(())
        })
        .await?;
    }
    tracing::info!(%upn, id = %inv.id, expires_at = inv.expires_at, sent, "invitation created");
    audit(
        app,
        actor,
        "invitation.create",
        &upn,
        serde_json::json!({ "invitation_id": inv.id, "expires_at": inv.expires_at, "sent": sent }),
    )
    .await;
    Ok(CreatedInvitation {
        id: inv.id,
        upn,
        expires_at: inv.expires_at,
        deep_link: link,
        landing_url,
        message: text,
        sent,
        send_error,
    })
}

/// One page of invitations, oldest first.
pub async fn list(
    app: &Arc<App>,
    cursor: Option<String>,
    limit: usize,
) -> Result<Page<InvitationView>, ServiceError> {
    let a = app.clone();
    let (recs, next) =
        blocking(move || Ok(INVITES.page(a.store.records(), cursor.as_deref(), limit)?)).await?;
    let now = app.clock.now_unix();
    Ok(Page {
        items: recs.iter().map(|(_, i)| view(i, now)).collect(),
        next,
    })
}

/// Revokes an open (or expired) invitation.
pub async fn revoke(app: &Arc<App>, actor: &Actor, id: &str) -> Result<(), ServiceError> {
    actor.require_admin(&format!("DELETE /api/v1/invitations/{id}"))?;
    let now = app.clock.now_unix();
    let a = app.clone();
    let i = id.to_string();
    let upn = blocking(move || {
        let mut refusal = None;
        let out = INVITES.update(a.store.records(), &i, |cur| {
            refusal = None;
            let Some(inv) = cur else {
                refusal = Some(ServiceError::not_found(format!("invitation {i}")));
                return Ok(None);
            };
            match inv.state(now) {
                InvitationState::Used | InvitationState::Revoked => {
                    refusal = Some(ServiceError::Conflict {
                        what: format!("invitation {i} is {:?}; a revocation", inv.state(now)),
                    });
                    Ok(Some(inv))
                }
                _ => Ok(Some(Invitation {
                    revoked_at: Some(now),
                    ..inv
                })),
            }
        })?;
        match (refusal, out) {
            (Some(e), _) => Err(e),
            (None, Some(inv)) => Ok(inv.upn),
            (None, None) => Err(ServiceError::not_found(format!("invitation {i}"))),
        }
    })
    .await?;
    tracing::info!(%upn, %id, "invitation revoked");
    audit(
        app,
        actor,
        "invitation.revoke",
        &upn,
        serde_json::json!({ "invitation_id": id }),
    )
    .await;
    Ok(())
}

/// The invitation a landing token belongs to, if any.
pub fn find_by_token(app: &App, token: &str) -> Result<Option<Invitation>, StoreError> {
    let r = app.store.records();
    match BY_TOKEN.get(r, &token_digest(token))? {
        Some(id) => INVITES.get(r, &id),
        None => Ok(None),
    }
}

/// Marks every open invitation of `upn` created at or before `now` as used by `device_id`
/// (called once a device of that user completed an enrollment). Failures are logged only: the
/// enrollment itself succeeded.
pub fn mark_used(app: &App, upn: &str, device_id: &str, now: i64) {
    let r = app.store.records();
    let prefix = format!("{upn} ");
    let mut after = upn.to_string();
    loop {
        let page = match BY_USER.list(r, Some(&after), 100) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%upn, error = %e, "invitations of an enrolled user not read");
                return;
            }
        };
        let full = page.len() == 100;
        for (k, id) in page {
            if !k.starts_with(&prefix) {
                return;
            }
            after = k;
            let res = INVITES.update(r, &id, |cur| {
                Ok(cur.map(|i| {
                    if i.state(now) == InvitationState::Open && i.created_at <= now {
                        Invitation {
                            used_at: Some(now),
                            used_by_device: Some(device_id.to_string()),
                            ..i
                        }
                    } else {
                        i
                    }
                }))
            });
            match res {
                Ok(Some(i))
                    if i.used_at == Some(now) && i.used_by_device.as_deref() == Some(device_id) =>
                {
                    tracing::info!(%upn, invitation = %id, %device_id, "invitation used by an enrollment")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(%upn, invitation = %id, error = %e, "invitation not marked used")
                }
            }
        }
        if !full {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        let i = Invitation {
            id: "inv-1".into(),
            upn: "a@b".into(),
            token_digest: String::new(),
            created_at: 100,
            expires_at: 200,
            created_by: "bootstrap".into(),
            sent: false,
            revoked_at: None,
            used_at: None,
            used_by_device: None,
        };
        assert_eq!(i.state(150), InvitationState::Open);
        assert_eq!(i.state(200), InvitationState::Expired);
        let used = Invitation {
            used_at: Some(150),
            ..i.clone()
        };
        assert_eq!(used.state(300), InvitationState::Used);
        let revoked = Invitation {
            revoked_at: Some(150),
            ..i
        };
        assert_eq!(revoked.state(160), InvitationState::Revoked);
    }

    #[test]
    fn url_encoding() {
        assert_eq!(url_encode("a.b@c d+e&f"), "a.b%40c%20d%2Be%26f");
    }
}
