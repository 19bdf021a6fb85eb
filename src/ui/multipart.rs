//! `multipart/form-data` bodies (RFC 7578) of the console's upload form: text fields and one
//! file part named `file`. Bounded: the body is already size-limited by the caller, and at most
//! [`super::form::MAX_FIELDS`] parts are read.

use bytes::Bytes;

use super::form::{Form, MAX_FIELDS};

/// The parts of a multipart form.
#[derive(Debug, Default)]
pub struct Parts {
    /// Text fields (UTF-8).
    pub fields: Form,
    /// The `file` part's content.
    pub file: Option<Bytes>,
}

/// Why a multipart body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// Not the shape RFC 7578 describes.
    #[error("malformed multipart body")]
    Malformed,
    /// Too many parts.
    #[error("too many parts")]
    TooManyParts,
}

/// The `boundary` parameter of a `multipart/form-data` content type (1-70 characters).
pub fn boundary(content_type: &str) -> Option<String> {
    let b = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    (!b.is_empty() && b.len() <= 70).then(|| b.to_string())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The `name="..."` of a part's `Content-Disposition` header.
fn part_name(headers: &str) -> Option<String> {
    headers
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("name="))
        .map(|n| n.trim_matches('"').to_string())
}

/// Parses a body with `boundary`.
pub fn parse(body: &[u8], boundary: &str) -> Result<Parts, MultipartError> {
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    let mut at = find(body, delim.as_bytes(), 0).ok_or(MultipartError::Malformed)? + delim.len();
    let mut parts = Parts::default();
    let mut fields = Vec::new();
    for _ in 0..=MAX_FIELDS {
        let rest = body.get(at..).ok_or(MultipartError::Malformed)?;
        if rest.starts_with(b"--") {
            parts.fields = Form::parse(
                &fields
                    .iter()
                    .map(|(k, v): &(String, String)| {
                        format!("{}={}", super::form::enc(k), super::form::enc(v))
                    })
                    .collect::<Vec<_>>()
                    .join("&"),
            )
            .map_err(|_| MultipartError::TooManyParts)?;
            return Ok(parts);
        }
        if !rest.starts_with(b"\r\n") {
            return Err(MultipartError::Malformed);
        }
        let head_start = at + 2;
        let head_end = find(body, b"\r\n\r\n", head_start).ok_or(MultipartError::Malformed)?;
        let headers = std::str::from_utf8(&body[head_start..head_end])
            .map_err(|_| MultipartError::Malformed)?;
        let content_start = head_end + 4;
        let content_end =
            find(body, next_delim.as_bytes(), content_start).ok_or(MultipartError::Malformed)?;
        let content = &body[content_start..content_end];
        match part_name(headers).as_deref() {
            Some("file") => parts.file = Some(Bytes::copy_from_slice(content)),
            Some(name) => {
                let v = std::str::from_utf8(content).map_err(|_| MultipartError::Malformed)?;
                fields.push((name.to_string(), v.to_string()));
            }
            None => return Err(MultipartError::Malformed),
        }
        at = content_end + next_delim.len();
    }
    Err(MultipartError::TooManyParts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_the_file() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\nh1,h2\r\nv1,v2\r\n\r\n--XyZ--\r\n";
        let p = parse(body, "XyZ").unwrap();
        assert_eq!(p.fields.get("csrf"), Some("abc"));
        assert_eq!(p.file.as_deref(), Some(&b"h1,h2\r\nv1,v2\r\n"[..]));
        assert_eq!(
            boundary("multipart/form-data; boundary=----WebKitFormBoundaryQ"),
            Some("----WebKitFormBoundaryQ".into())
        );
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        for b in [
            &b""[..],
            b"--XyZ",
            b"--XyZ\r\nno headers end",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
            b"--XyZ\r\nX: y\r\n\r\nv\r\n--XyZ--",
        ] {
            assert!(parse(b, "XyZ").is_err(), "{b:?}");
        }
        let many: String = (0..=MAX_FIELDS)
            .map(|i| format!("--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n"))
            .collect::<String>()
            + "--B--";
        assert_eq!(
            parse(many.as_bytes(), "B").unwrap_err(),
            MultipartError::TooManyParts
        );
    }
}
