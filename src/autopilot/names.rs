//! Computer names (NetBIOS rules as Autopilot applies them) and device name templates.
//!
//! A name is 1-15 characters of letters, digits and hyphens, and not only digits (the rules
//! Windows Autopilot documents for its device name template). A template may hold `%SERIAL%`
//! (the hardware serial number) and `%RAND:n%` (n random digits, 1 ≤ n ≤ 15); after expansion it
//! must still be a valid name. Pure.

/// Longest NetBIOS computer name.
pub const MAX_NAME: usize = 15;

/// Why a name or template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("a device name cannot be empty")]
    Empty,
    /// Too long.
    #[error("{name:?} is {len} characters long after expansion; computer names have at most 15")]
    TooLong {
        /// The name or template.
        name: String,
        /// Its (least) expanded length.
        len: usize,
    },
    /// A character outside letters, digits and hyphens.
    #[error("{ch:?} is not allowed in a computer name: use letters, digits and hyphens only")]
    BadChar {
        /// The offending character.
        ch: char,
    },
    /// Only digits.
    #[error("a computer name cannot be made of digits only")]
    OnlyDigits,
    /// A `%...%` macro that is not `%SERIAL%` or `%RAND:n%`.
    #[error("{0:?} is not a template macro: use %SERIAL% or %RAND:n% (n from 1 to 15)")]
    BadMacro(String),
}

/// Checks a concrete computer name.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(NameError::BadChar { ch });
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong {
            name: name.to_string(),
            len: name.len(),
        });
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(NameError::OnlyDigits);
    }
    Ok(())
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal characters.
    Text(String),
    /// `%SERIAL%`.
    Serial,
    /// `%RAND:n%`.
    Rand(usize),
}

/// Splits a template into literal text and macros.
pub fn parse_template(t: &str) -> Result<Vec<Part>, NameError> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find('%') {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 1..];
        let end = after
            .find('%')
            .ok_or_else(|| NameError::BadMacro(rest[start..].to_string()))?;
        let body = &after[..end];
        let whole = format!("%{body}%");
        if body.eq_ignore_ascii_case("SERIAL") {
            parts.push(Part::Serial);
        } else if let Some(n) = body
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("RAND:"))
            .and_then(|_| body[5..].parse::<usize>().ok())
        {
            if !(1..=MAX_NAME).contains(&n) {
                return Err(NameError::BadMacro(whole));
            }
            parts.push(Part::Rand(n));
        } else {
            return Err(NameError::BadMacro(whole));
        }
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

/// Checks a template: valid macros and characters, at most 15 characters once expanded
/// (`%SERIAL%` counts at least one character: a longer serial is cut to fit, see [`expand`]),
/// and never digits only.
pub fn check_template(t: &str) -> Result<(), NameError> {
    let parts = parse_template(t)?;
    let mut len = 0;
    let mut has_serial = false;
    let mut letter_or_hyphen = false;
    for p in &parts {
        match p {
            Part::Text(s) => {
                if let Some(ch) = s
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
                {
                    return Err(NameError::BadChar { ch });
                }
                letter_or_hyphen |= s.chars().any(|c| !c.is_ascii_digit());
                len += s.len();
            }
            Part::Serial => {
                has_serial = true;
                len += 1;
            }
            Part::Rand(n) => len += n,
        }
    }
    if len == 0 {
        return Err(NameError::Empty);
    }
    if len > MAX_NAME {
        return Err(NameError::TooLong {
            name: t.to_string(),
            len,
        });
    }
    // Only digits whatever the serial: no literal letter and no serial to bring one.
    if !letter_or_hyphen && !has_serial {
        return Err(NameError::OnlyDigits);
    }
    Ok(())
}

/// Expands a (checked) template for a device: `%SERIAL%` becomes the serial's letters and digits,
/// cut from the left so the name fits in 15 characters (the end of a serial is what tells
/// devices of one model apart); `%RAND:n%` takes `n` digits from `digits`.
pub fn expand(t: &str, serial: &str, mut digits: impl FnMut() -> u8) -> Result<String, NameError> {
    let parts = parse_template(t)?;
    let fixed: usize = parts
        .iter()
        .map(|p| match p {
            Part::Text(s) => s.len(),
            Part::Rand(n) => *n,
            Part::Serial => 0,
        })
        .sum();
    let serials = parts.iter().filter(|p| **p == Part::Serial).count();
    let clean: String = serial
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let room = MAX_NAME
        .saturating_sub(fixed)
        .checked_div(serials)
        .unwrap_or(0);
    let cut = &clean[clean.len().saturating_sub(room)..];
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(s) => out.push_str(&s),
            Part::Serial => out.push_str(cut),
            Part::Rand(n) => (0..n).for_each(|_| out.push(char::from(b'0' + digits() % 10))),
        }
    }
    check_name(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["DESKTOP-1", "A", "PC-0123456789AB", "a-b"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name("12345"), Err(NameError::OnlyDigits));
        assert!(matches!(
            check_name("PC_1"),
            Err(NameError::BadChar { ch: '_' })
        ));
        assert!(matches!(
            check_name("PC 1"),
            Err(NameError::BadChar { ch: ' ' })
        ));
        assert!(matches!(
            check_name("ABCDEFGHIJKLMNOP"),
            Err(NameError::TooLong { len: 16, .. })
        ));
    }

    #[test]
    fn templates() {
        for ok in [
            "CONTOSO-%SERIAL%",
            "PC-%RAND:5%",
            "%SERIAL%",
            "KIOSK-%rand:9%",
            "AB-%RAND:4%-%SERIAL%",
        ] {
            assert_eq!(check_template(ok), Ok(()), "{ok}");
        }
        assert!(matches!(
            check_template("CONTOSO-DESK-%RAND:4%"),
            Err(NameError::TooLong { len: 17, .. })
        ));
        assert!(matches!(
            check_template("ABCDEFGHIJKLMNO%SERIAL%"),
            Err(NameError::TooLong { len: 16, .. })
        ));
        assert_eq!(check_template("%RAND:6%"), Err(NameError::OnlyDigits));
        assert_eq!(check_template("12-%RAND:2%"), Ok(()));
        assert!(matches!(
            check_template("PC-%NAME%"),
            Err(NameError::BadMacro(_))
        ));
        assert!(matches!(
            check_template("PC-%RAND:0%"),
            Err(NameError::BadMacro(_))
        ));
        assert!(matches!(
            check_template("PC-%RAND:x%"),
            Err(NameError::BadMacro(_))
        ));
        assert!(matches!(
            check_template("PC-%SERIAL"),
            Err(NameError::BadMacro(_))
        ));
        assert!(matches!(
            check_template("PC.%SERIAL%"),
            Err(NameError::BadChar { ch: '.' })
        ));
    }

    #[test]
    fn expansion_fits_fifteen_characters() {
        let mut n = 0u8;
        let digits = move || {
            n += 1;
            n
        };
        assert_eq!(
            expand("CONTOSO-%SERIAL%", "PF-3X9K2ZL1 77", digits).unwrap(),
            "CONTOSO-K2ZL177"
        );
        assert_eq!(expand("PC-%RAND:4%", "x", || 7).unwrap(), "PC-7777");
        assert_eq!(
            expand("%SERIAL%", "5CG1234XYZ", || 0).unwrap(),
            "5CG1234XYZ"
        );
        assert_eq!(
            expand("%SERIAL%", "123456", || 0),
            Err(NameError::OnlyDigits)
        );
    }
}
