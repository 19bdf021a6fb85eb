//! Redaction: what a trace never keeps. Applied to every body and header before anything is
//! written (to the store, an export, a log line).
//!
//! * WS-Security secrets: the text of every `Password` element (UsernameToken, any namespace)
//!   and of every `BinarySecurityToken` inside a SOAP `Header` (the federated `wresult` token,
//!   the Entra access token). The body's `BinarySecurityToken` (the PKCS#10 or PKCS#7 request)
//!   and the provisioning document's certificates are public and kept.
//! * Sign-in forms: the values of form fields (`application/x-www-form-urlencoded` bodies and
//!   HTML `<input>`s) named `password`, `passwd`, `wresult`, `token`, `access_token`,
//!   `id_token`, `refresh_token`, `client_secret`, `code` or `secret`.
//! * JSON Web Tokens anywhere in a body: the signature part (the header and claims stay
//!   readable; without the signature the token is useless to whoever reads the trace).
//! * Headers: `authorization`, `cookie`, `set-cookie`, `proxy-authorization` and the
//!   message-signature headers are replaced; only the headers in [`KEPT_HEADERS`] are kept.
//!
//! Pure and total: any input (malformed XML included) gives an output; when the XML cannot be
//! read, a textual pass still blanks the contents of those elements.

use quick_xml::events::Event;
use quick_xml::Reader;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Headers a trace keeps (others are dropped); the secret ones among them are redacted.
pub const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "user-agent",
    "host",
    "accept",
    "ms-cv",
    "client-request-id",
    "x-ms-clientrequestid",
    "retry-after",
    "location",
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
    "mdm-signature",
    "client-request-signature",
];

const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
    "mdm-signature",
    "client-request-signature",
];

const SECRET_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "wresult",
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "client_secret",
    "code",
    "secret",
];

/// The headers a trace keeps, lower-cased, secrets redacted.
pub fn headers<'a>(all: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in all {
        let name = name.to_ascii_lowercase();
        if !KEPT_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = if SECRET_HEADERS.contains(&name.as_str()) {
            REDACTED.to_string()
        } else {
            value.chars().take(256).collect()
        };
        out.push((name, value));
    }
    out
}

/// A body with every secret this module knows of redacted.
pub fn body(text: &str) -> String {
    let mut s = if looks_like_xml(text) {
        xml(text)
    } else if looks_like_form(text) {
        form(text)
    } else {
        text.to_string()
    };
    if s.contains("<input") || s.contains("<INPUT") {
        s = html_inputs(&s);
    }
    jwt_signatures(&s)
}

fn looks_like_xml(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<')
}

fn looks_like_form(text: &str) -> bool {
    !text.contains('<') && !text.contains(char::is_whitespace) && text.contains('=')
}

fn is_secret_field(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    SECRET_FIELDS.contains(&n.as_str())
}

/// Blanks the text of `Password` elements and of `BinarySecurityToken`s under a SOAP `Header`.
fn xml(text: &str) -> String {
    match xml_spans(text) {
        Some(spans) => replace_spans(text, &spans, REDACTED),
        None => textual_xml(text),
    }
}

/// The byte spans of secret element contents, or `None` when the XML cannot be read.
fn xml_spans(text: &str) -> Option<Vec<(usize, usize)>> {
    element_spans(text, |local, in_header| {
        local.eq_ignore_ascii_case("Password") || (local == "BinarySecurityToken" && in_header)
    })
}

/// The byte spans of the contents of the elements `want(local name, inside a SOAP Header)`
/// picks (outermost only), or `None` when the XML cannot be read.
pub(crate) fn element_spans(
    text: &str,
    want: impl Fn(&str, bool) -> bool,
) -> Option<Vec<(usize, usize)>> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = false;
    let mut stack: Vec<String> = Vec::new();
    let mut open: Option<(usize, usize)> = None; // (depth, content start)
    let mut spans = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let local = e.local_name().into_inner().to_string();
                let in_header = stack.iter().any(|n| n == "Header");
                let picked = want(&local, in_header);
                stack.push(local);
                if picked && open.is_none() {
                    open = Some((stack.len(), reader.buffer_position() as usize));
                }
            }
            Ok(Event::End(_)) => {
                if let Some((depth, start)) = open {
                    if depth == stack.len() {
                        spans.push((start, before));
                        open = None;
                    }
                }
                stack.pop();
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    if open.is_some() {
        return None;
    }
    Some(spans)
}

/// `text` with the contents at `spans` replaced by `with`.
pub(crate) fn replace_spans(text: &str, spans: &[(usize, usize)], with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for &(start, end) in spans {
        if start < at || end < start || end > text.len() {
            continue;
        }
        out.push_str(text.get(at..start).unwrap_or_default());
        out.push_str(with);
        at = end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// The fallback for XML quick-xml refuses: after any start tag whose name ends in `Password`
/// or `BinarySecurityToken`, everything up to the next `<` is blanked (a malformed body keeps
/// its shape for debugging but loses the secret).
fn textual_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        let Some(gt) = rest[lt..].find('>').map(|g| lt + g) else {
            break;
        };
        let tag = &rest[lt + 1..gt];
        out.push_str(&rest[..=gt]);
        rest = &rest[gt + 1..];
        let name = tag.split(|c: char| c.is_whitespace() || c == '/').next();
        let name = name.unwrap_or_default();
        let local = name.rsplit(':').next().unwrap_or_default();
        let secret = !tag.starts_with('/')
            && !tag.ends_with('/')
            && (local.eq_ignore_ascii_case("Password") || local == "BinarySecurityToken");
        if secret {
            let end = rest.find('<').unwrap_or(rest.len());
            if end > 0 {
                out.push_str(REDACTED);
            }
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// `a=b&password=x` → `a=b&password=[redacted]`.
fn form(text: &str) -> String {
    text.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_field(&percent_decode(k)) => format!("{k}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Blanks the `value` of `<input>` elements whose `name` is a secret field (any attribute
/// order, either quote).
fn html_inputs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        let Some(i) = lower.find("<input") else {
            break;
        };
        let Some(end) = lower[i..].find('>').map(|e| i + e) else {
            break;
        };
        out.push_str(&rest[..i]);
        let tag = &rest[i..=end];
        let secret = attr(tag, "name").is_some_and(|n| is_secret_field(&n));
        if secret {
            out.push_str(&blank_attr(tag, "value"));
        } else {
            out.push_str(tag);
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The position of an attribute's value (start, end, excluding quotes) in a tag.
fn attr_span(tag: &str, name: &str) -> Option<(usize, usize)> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find(name).map(|p| from + p) {
        let before_ok = p > 0 && lower.as_bytes()[p - 1].is_ascii_whitespace();
        let after = lower[p + name.len()..].trim_start();
        if before_ok && after.starts_with('=') {
            let eq = lower.len() - after.len();
            let value_start = eq + 1 + (lower[eq + 1..].len() - lower[eq + 1..].trim_start().len());
            let q = lower.as_bytes().get(value_start).copied();
            return match q {
                Some(q @ (b'"' | b'\'')) => {
                    let close = lower[value_start + 1..].find(q as char)? + value_start + 1;
                    Some((value_start + 1, close))
                }
                Some(_) => {
                    let close = lower[value_start..]
                        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                        .map_or(lower.len(), |c| c + value_start);
                    Some((value_start, close))
                }
                None => None,
            };
        }
        from = p + name.len();
    }
    None
}

fn attr(tag: &str, name: &str) -> Option<String> {
    attr_span(tag, name).map(|(s, e)| tag[s..e].to_string())
}

fn blank_attr(tag: &str, name: &str) -> String {
    match attr_span(tag, name) {
        Some((s, e)) => format!("{}{}{}", &tag[..s], REDACTED, &tag[e..]),
        None => tag.to_string(),
    }
}

/// Replaces the signature of every compact JWT (`eyJ….eyJ….sig`) with [`REDACTED`].
fn jwt_signatures(text: &str) -> String {
    let b = text.as_bytes();
    let is_b64url = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut i = 0;
    while i + 3 < b.len() {
        let starts = &b[i..i + 3] == b"eyJ" && (i == 0 || !is_b64url(b[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        // header
        let mut j = i;
        while j < b.len() && is_b64url(b[j]) {
            j += 1;
        }
        if j >= b.len() || b[j] != b'.' {
            i = j.max(i + 1);
            continue;
        }
        // claims
        let mut k = j + 1;
        while k < b.len() && is_b64url(b[k]) {
            k += 1;
        }
        if k == j + 1 || k >= b.len() || b[k] != b'.' {
            i = k.max(i + 1);
            continue;
        }
        // signature
        let mut m = k + 1;
        while m < b.len() && is_b64url(b[m]) {
            m += 1;
        }
        if m > k + 1 {
            out.push_str(&text[at..=k]);
            out.push_str(REDACTED);
            at = m;
        }
        i = m;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><s:Header><wsse:Security><wsse:UsernameToken><wsse:Username>alice@example.com</wsse:Username><wsse:Password wsse:Type="PasswordText">Sup3r&amp;Secret</wsse:Password></wsse:UsernameToken></wsse:Security></s:Header><s:Body><x/></s:Body></s:Envelope>"#;

    #[test]
    fn blanks_ws_security_passwords_and_keeps_the_rest() {
        let r = body(POLICY);
        assert!(!r.contains("Sup3r"), "{r}");
        assert!(r.contains("<wsse:Password wsse:Type=\"PasswordText\">[redacted]</wsse:Password>"));
        assert!(r.contains("alice@example.com"));
        assert_eq!(
            r.len(),
            POLICY.len() - "Sup3r&amp;Secret".len() + REDACTED.len()
        );
    }

    #[test]
    fn blanks_header_tokens_but_keeps_the_csr() {
        let x = r#"<s:Envelope xmlns:s="s" xmlns:wsse="w"><s:Header><wsse:Security><wsse:BinarySecurityToken ValueType="urn:ietf:params:oauth:token-type:jwt">ZXlKaGJHY2lPaUpTVXpJMU5pSjkuZXlKemRXSWlPaUo0SW4wLnNpZw==</wsse:BinarySecurityToken></wsse:Security></s:Header><s:Body><wst:RequestSecurityToken xmlns:wst="t"><wsse:BinarySecurityToken ValueType="pkcs10">MIICSURPUBLIC</wsse:BinarySecurityToken></wst:RequestSecurityToken></s:Body></s:Envelope>"#;
        let r = body(x);
        assert!(!r.contains("ZXlKaGJHY2"), "{r}");
        assert!(r.contains("MIICSURPUBLIC"), "{r}");
    }

    #[test]
    fn malformed_xml_still_loses_its_secrets() {
        let x = "<s:Envelope><wsse:Password>hunter2</wsse:Password><unclosed>";
        let r = body(x);
        assert!(!r.contains("hunter2"), "{r}");
        assert!(r.contains("<unclosed>"));
    }

    #[test]
    fn blanks_form_fields_and_html_inputs() {
        let f = body("login=alice&password=hunter2&wresult=tok%20en&next=%2F");
        assert_eq!(
            f,
            "login=alice&password=[redacted]&wresult=[redacted]&next=%2F"
        );
        let h = body(
            r#"<html><form><input type="hidden" name="wresult" value="SECRETTOKEN"/><INPUT value='keep' name="appru"></form></html>"#,
        );
        assert!(!h.contains("SECRETTOKEN"), "{h}");
        assert!(h.contains("value='keep'"), "{h}");
    }

    #[test]
    fn strips_jwt_signatures_anywhere() {
        let t = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl and more";
        let r = body(t);
        assert_eq!(
            r,
            "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.[redacted] and more"
        );
        // Not a JWT: left alone.
        assert_eq!(body("eyJ.only"), "eyJ.only");
    }

    #[test]
    fn keeps_only_known_headers_and_redacts_secret_ones() {
        let h = headers([
            ("Content-Type", "application/soap+xml"),
            ("Authorization", "Bearer abc"),
            ("X-Random", "dropped"),
        ]);
        assert_eq!(
            h,
            vec![
                (
                    "content-type".to_string(),
                    "application/soap+xml".to_string()
                ),
                ("authorization".to_string(), REDACTED.to_string()),
            ]
        );
    }

    #[test]
    fn any_input_gives_an_output() {
        for s in [
            "",
            "<",
            "<<>>",
            "eyJ",
            "eyJa.eyJb.",
            "=&=&",
            "<input name=password value",
            "\u{fffd}<a:Password>",
        ] {
            let _ = body(s);
        }
    }
}
