//! User principal names: the one place a UPN from outside is read.
//!
//! Every UPN that comes in — an admin creating a user or an invitation, a bulk package request,
//! a WS-Security `UsernameToken`, the federated login page, a login token, an Entra token's
//! `upn` claim — goes through [`parse`], which normalises it and refuses what could spell one
//! account in two ways or hide what it is:
//!
//! 1. trimmed, Unicode NFKC (so fullwidth `ａlice` is `alice`), lower-cased;
//! 2. refused: invisible, format and direction-changing characters (zero-width joiner, RLO…),
//!    control characters and spaces, and then any character outside ASCII. UPNs are ASCII, as
//!    in Entra ID (`A-Z a-z 0-9 ' . - _ ! # ^ ~` and the other RFC 5322 atext characters in the
//!    local part, except `/`); this also refuses look-alike letters from other scripts (Cyrillic `і` in
//!    `alіce`), which no normalisation folds. Internationalised domains are written in their
//!    `xn--` form;
//! 3. exactly one `@`; the local part 1-64 characters of RFC 5322 atext and dots (no leading,
//!    trailing or double dot); the host 1-253 characters of DNS labels (letters, digits,
//!    hyphens; 1-63 each; no leading or trailing hyphen) and no trailing dot; at most
//!    [`MAX_UPN_LEN`] in all;
//! 4. or no `@` at all: a plain account name under the local-part rules of 3. Windows sends what
//!    the user typed at the OnPremise credential prompt as the `UsernameToken`, and a real device
//!    was captured sending a bare name (`../shared/conformance/fleet/…-getpolicies-…`), so such
//!    accounts must be possible. Two or more `@` are always refused.
//!
//! [`fold`] is step 1 alone: the key form under which the store keeps users, used for lookups
//! of names that were [`parse`]d when they were stored (admin reads and deletes), so a user
//! stored before these rules can still be found and removed.

use unicode_normalization::UnicodeNormalization;

/// Longest UPN accepted.
pub const MAX_UPN_LEN: usize = 256;

/// Why a UPN was refused (safe to show: it describes the caller's own input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user name refused: {0}")]
pub struct UpnError(pub String);

/// The store's key form of a UPN: trimmed, NFKC, lower-cased. Refuses nothing.
pub fn fold(upn: &str) -> String {
    upn.trim().nfkc().collect::<String>().to_lowercase()
}

/// Characters that change how text is shown without being seen (Unicode format characters
/// and bidirectional controls); named in the refusal so a log reader sees what was sent.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{E0000}'..='\u{E0FFF}')
}

/// RFC 5322 atext, without `/` (UPNs are URL path segments of the admin API).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-=?^_`{|}~".contains(c)
}

/// Normalises `upn` ([`fold`]) and checks it (module docs); the result is the user's key.
pub fn parse(upn: &str) -> Result<String, UpnError> {
    let bad = |why: String| Err(UpnError(why));
    if upn.len() > 4 * MAX_UPN_LEN {
        return bad(format!("longer than {MAX_UPN_LEN} characters"));
    }
    let n = fold(upn);
    if n.is_empty() {
        return bad("empty".into());
    }
    if let Some(c) = n.chars().find(|&c| is_invisible(c)) {
        return bad(format!(
            "contains the invisible or direction-changing character U+{:04X}",
            c as u32
        ));
    }
    if let Some(c) = n.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return bad(format!(
            "contains the space or control character U+{:04X}",
            c as u32
        ));
    }
    if let Some(c) = n.chars().find(|c| !c.is_ascii()) {
        return bad(format!(
            "contains U+{:04X} {c:?}: user names are ASCII (write internationalised domains as xn--)",
            c as u32
        ));
    }
    if n.len() > MAX_UPN_LEN {
        return bad(format!("longer than {MAX_UPN_LEN} characters"));
    }
    let mut parts = n.split('@');
    let (Some(local), host, None) = (parts.next(), parts.next(), parts.next()) else {
        return bad(format!(
            "needs one '@' or none (has {})",
            n.matches('@').count()
        ));
    };
    if local.is_empty() || local.len() > 64 {
        return bad("the part before '@' must be 1-64 characters".into());
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return bad("the part before '@' has a leading, trailing or double dot".into());
    }
    if let Some(c) = local.chars().find(|&c| c != '.' && !is_atext(c)) {
        return bad(format!("the part before '@' contains {c:?}"));
    }
    // A plain account name (rule 4).
    let Some(host) = host else { return Ok(n) };
    if host.ends_with('.') {
        return bad("the domain ends with a dot".into());
    }
    if host.is_empty() || host.len() > 253 {
        return bad("the domain must be 1-253 characters".into());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return bad(format!(
                "the domain label {label:?} is not 1-63 letters, digits or inner hyphens"
            ));
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_spellings_are_one_user_or_refused() {
        assert_eq!(parse(" Alice@Example.COM ").unwrap(), "alice@example.com");
        assert_eq!(
            parse("\u{FF41}lice@example.com").unwrap(),
            "alice@example.com",
            "fullwidth folds by NFKC"
        );
        assert!(parse("al\u{0456}ce@example.com").is_err(), "Cyrillic і");
        assert!(
            parse("alice@example.com\u{200D}").is_err(),
            "zero-width joiner"
        );
        assert!(parse("alice@example.com.").is_err(), "trailing dot");
        assert!(parse("\u{202E}moc.elpmaxe@ecila").is_err(), "RLO");
    }

    #[test]
    fn shape_rules() {
        for ok in [
            "windows-bulkenroll+abc@contoso.com",
            "o'brien@x.example",
            "a@localhost",
            "first.last@sub.xn--bcher-kva.example",
            "demio",
            "first.last",
        ] {
            assert_eq!(parse(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "   ",
            ".alice",
            "al ice",
            "alice@@example.com",
            "a@b@example.com",
            "@example.com",
            "alice@",
            ".alice@example.com",
            "al..ice@example.com",
            "al ice@example.com",
            "al/ice@example.com",
            "alice@exa_mple.com",
            "alice@-example.com",
            "alice@example..com",
            "alice@ex\u{0000}ample.com",
            "jos\u{00E9}@example.com",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(parse(&format!("a@{}.com", "b".repeat(64))).is_err());
    }

    #[test]
    fn fold_is_the_key_form_and_idempotent() {
        let once = fold(" \u{FF21}LICE@example.com");
        assert_eq!(once, "alice@example.com");
        assert_eq!(fold(&once), once);
    }
}
