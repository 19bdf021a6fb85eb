//! Sends invitation e-mails over SMTP (lettre, rustls on aws-lc-rs, the system's root store).
//!
//! `--smtp-url` forms: `smtp://host[:port]` (plain, port 25), `smtp://host:587?tls=required`
//! (STARTTLS), `smtps://host[:port]` (implicit TLS, port 465); a user name may precede the host
//! (`smtp://mailer@host`), its password comes from `WINMDM_SMTP_PASSWORD` only (read by `winmdm
//! serve` into [`SmtpConfig::password`]), never the URL, so it appears neither in the process list
//! nor in the config file.

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::SmtpConfig;

/// Time allowed for the whole SMTP exchange.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The recipient is not a valid address.
    #[error("recipient {0:?} is not an e-mail address")]
    Recipient(String),
    /// The message could not be built.
    #[error("message: {0}")]
    Build(String),
    /// A user name is configured but no password.
    #[error("--smtp-url names a user but WINMDM_SMTP_PASSWORD is not set")]
    NoPassword,
    /// The SMTP exchange failed.
    #[error("SMTP: {0}")]
    Smtp(String),
}

/// The text as a `7bit` body when it is one under RFC 5322 (ASCII, no NUL, lines of at most 998
/// octets, CRLF endings). lettre's own chooser folds every line of 76+ characters into
/// quoted-printable, which would break the long deep link for a reader copying it from the raw
/// message; 7bit keeps every link on one line.
fn seven_bit(text: &str) -> Option<Body> {
    let normalized = text.replace("\r\n", "\n");
    let ok = normalized
        .bytes()
        .all(|b| b.is_ascii() && b != 0 && b != b'\r')
        && normalized.split('\n').all(|l| l.len() <= 998);
    ok.then(|| {
        Body::dangerous_pre_encoded(
            normalized.replace('\n', "\r\n").into_bytes(),
            ContentTransferEncoding::SevenBit,
        )
    })
}

/// Sends one plain-text message to `to`.
pub async fn send(cfg: &SmtpConfig, to: &str, subject: &str, text: &str) -> Result<(), MailError> {
    let to_box: Mailbox = to.parse().map_err(|_| MailError::Recipient(to.into()))?;
    let from: Mailbox = cfg
        .from
        .parse()
        .map_err(|e| MailError::Build(format!("--smtp-from: {e}")))?;
    let body = seven_bit(text).unwrap_or_else(|| Body::new(text.to_string()));
    let msg = Message::builder()
        .from(from)
        .to(to_box)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| MailError::Build(e.to_string()))?;
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::from_url(&cfg.url)
        .map_err(|e| MailError::Smtp(e.to_string()))?
        .timeout(Some(SMTP_TIMEOUT));
    if let Some(user) = &cfg.user {
        let pw = cfg.password.clone().ok_or(MailError::NoPassword)?;
        b = b.credentials(Credentials::new(user.clone(), pw));
    }
    let transport = b.build();
    let resp = tokio::time::timeout(SMTP_TIMEOUT, transport.send(msg))
        .await
        .map_err(|_| MailError::Smtp("timed out".into()))?
        .map_err(|e| MailError::Smtp(e.to_string()))?;
    tracing::info!(%to, code = %resp.code(), "invitation e-mail accepted by the SMTP server");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ascii_lines_stay_7bit_and_the_rest_falls_back() {
        let long = format!("a\n{}\n", "x".repeat(200));
        let b = seven_bit(&long).expect("7bit");
        assert_eq!(b.encoding(), ContentTransferEncoding::SevenBit);
        assert_eq!(
            b.into_vec(),
            format!("a\r\n{}\r\n", "x".repeat(200)).into_bytes()
        );
        assert!(seven_bit("caf\u{e9}").is_none());
        assert!(seven_bit(&"y".repeat(999)).is_none());
        assert!(seven_bit("bare\rcr").is_none());
    }
}
