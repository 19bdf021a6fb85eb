//! `multipart/form-data` bodies (RFC 7578) of the console's upload forms: text fields and one
//! file part named `file`, read whole ([`parse`]) or as the body arrives ([`Streaming`], for
//! app packages larger than memory should hold). Bounded: at most [`super::form::MAX_FIELDS`]
//! parts, text fields of at most [`super::MAX_FORM_BODY`] bytes together.

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
    /// The text fields are larger than a form may be.
    #[error("form fields too large")]
    TooLarge,
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

/// Largest header block of one part.
const MAX_PART_HEADERS: usize = 8 * 1024;
/// Largest preamble before the first delimiter.
const MAX_PREAMBLE: usize = 1024;

/// What a [`Streaming`] parser found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole text field.
    Field(String, String),
    /// The `file` part begins.
    FileStart,
    /// Bytes of the `file` part, in order.
    FileData(Vec<u8>),
    /// The `file` part ended.
    FileEnd,
    /// The closing delimiter: the form is complete.
    End,
}

#[derive(Debug)]
enum State {
    Preamble,
    AfterDelimiter,
    Headers,
    Field(String),
    File,
    Done,
}

/// An incremental `multipart/form-data` parser: fed the body as it arrives, it hands the
/// `file` part on in pieces (never holding more than a delimiter's length of it) and the text
/// fields whole (together at most [`super::MAX_FORM_BODY`] bytes, [`MAX_FIELDS`] parts).
#[derive(Debug)]
pub struct Streaming {
    buf: Vec<u8>,
    /// `\r\n--boundary`.
    delim: Vec<u8>,
    state: State,
    parts: usize,
    field_bytes: usize,
}

impl Streaming {
    /// A parser for `boundary`.
    pub fn new(boundary: &str) -> Streaming {
        Streaming {
            buf: Vec::new(),
            delim: format!("\r\n--{boundary}").into_bytes(),
            state: State::Preamble,
            parts: 0,
            field_bytes: 0,
        }
    }

    /// Takes the next bytes of the body; returns what they complete.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Event>, MultipartError> {
        if matches!(self.state, State::Done) {
            return Ok(Vec::new()); // the epilogue is ignored
        }
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            match &self.state {
                State::Done => {
                    self.buf.clear();
                    return Ok(out);
                }
                State::Preamble => {
                    // The first delimiter may start the body (without the CRLF before it).
                    let d = &self.delim[2..];
                    match find(&self.buf, d, 0) {
                        Some(i) => {
                            self.buf.drain(..i + d.len());
                            self.state = State::AfterDelimiter;
                        }
                        None if self.buf.len() > MAX_PREAMBLE + d.len() => {
                            return Err(MultipartError::Malformed)
                        }
                        None => return Ok(out),
                    }
                }
                State::AfterDelimiter => {
                    if self.buf.len() < 2 {
                        return Ok(out);
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = State::Done;
                        out.push(Event::End);
                    } else if self.buf.starts_with(b"\r\n") {
                        self.buf.drain(..2);
                        self.state = State::Headers;
                    } else {
                        return Err(MultipartError::Malformed);
                    }
                }
                State::Headers => {
                    let Some(end) = find(&self.buf, b"\r\n\r\n", 0) else {
                        if self.buf.len() > MAX_PART_HEADERS {
                            return Err(MultipartError::Malformed);
                        }
                        return Ok(out);
                    };
                    if end > MAX_PART_HEADERS {
                        return Err(MultipartError::Malformed);
                    }
                    self.parts += 1;
                    if self.parts > MAX_FIELDS {
                        return Err(MultipartError::TooManyParts);
                    }
                    let headers = std::str::from_utf8(&self.buf[..end])
                        .map_err(|_| MultipartError::Malformed)?;
                    let name = part_name(headers).ok_or(MultipartError::Malformed)?;
                    self.buf.drain(..end + 4);
                    if name == "file" {
                        out.push(Event::FileStart);
                        self.state = State::File;
                    } else {
                        self.state = State::Field(name);
                    }
                }
                State::Field(name) => {
                    let Some(end) = find(&self.buf, &self.delim, 0) else {
                        if self.field_bytes + self.buf.len()
                            > super::MAX_FORM_BODY + self.delim.len()
                        {
                            return Err(MultipartError::TooLarge);
                        }
                        return Ok(out);
                    };
                    self.field_bytes += end;
                    if self.field_bytes > super::MAX_FORM_BODY {
                        return Err(MultipartError::TooLarge);
                    }
                    let v = std::str::from_utf8(&self.buf[..end])
                        .map_err(|_| MultipartError::Malformed)?
                        .to_string();
                    out.push(Event::Field(name.clone(), v));
                    self.buf.drain(..end + self.delim.len());
                    self.state = State::AfterDelimiter;
                }
                State::File => match find(&self.buf, &self.delim, 0) {
                    Some(end) => {
                        if end > 0 {
                            out.push(Event::FileData(self.buf[..end].to_vec()));
                        }
                        out.push(Event::FileEnd);
                        self.buf.drain(..end + self.delim.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        // Keep what may be the start of the delimiter.
                        let safe = self.buf.len().saturating_sub(self.delim.len() - 1);
                        if safe > 0 {
                            out.push(Event::FileData(self.buf.drain(..safe).collect()));
                        }
                        return Ok(out);
                    }
                },
            }
        }
    }

    /// Whether the closing delimiter was read (call when the body ended).
    pub fn complete(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

/// Parses a whole body with `boundary` (the [`Streaming`] parser, fed at once).
pub fn parse(body: &[u8], boundary: &str) -> Result<Parts, MultipartError> {
    let mut p = Streaming::new(boundary);
    let mut parts = Parts::default();
    let mut fields = Vec::new();
    let mut file: Option<Vec<u8>> = None;
    for e in p.push(body)? {
        match e {
            Event::Field(k, v) => fields.push((k, v)),
            Event::FileStart => file = Some(Vec::new()),
            Event::FileData(d) => file.get_or_insert_with(Vec::new).extend_from_slice(&d),
            Event::FileEnd | Event::End => {}
        }
    }
    if !p.complete() {
        return Err(MultipartError::Malformed);
    }
    parts.fields = Form::from_pairs(fields);
    parts.file = file.map(Bytes::from);
    Ok(parts)
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

    /// Feeds `body` in pieces of `n` bytes: (fields, file, complete).
    fn stream(body: &[u8], n: usize) -> (Vec<(String, String)>, Vec<u8>, bool) {
        let mut p = Streaming::new("XyZ");
        let (mut fields, mut file) = (Vec::new(), Vec::new());
        let mut ended = false;
        for piece in body.chunks(n) {
            for e in p.push(piece).unwrap() {
                match e {
                    Event::Field(k, v) => fields.push((k, v)),
                    Event::FileData(d) => file.extend_from_slice(&d),
                    Event::End => ended = true,
                    Event::FileStart | Event::FileEnd => {}
                }
            }
        }
        (fields, file, ended && p.complete())
    }

    #[test]
    fn streams_the_file_in_pieces_whatever_the_frames() {
        // File content that looks like the start of the delimiter, and binary bytes.
        let content: Vec<u8> = b"MZ\r\n--Xy\r\n--XyY\x00\xff\r\n-"
            .iter()
            .copied()
            .chain((0..=255u8).cycle().take(5000))
            .collect();
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.msi\"\r\n\r\n".to_vec();
        body.extend_from_slice(&content);
        body.extend_from_slice(
            b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nApp\r\n--XyZ--\r\n",
        );
        for n in [1, 2, 3, 7, 64, 1000, body.len()] {
            let (fields, file, done) = stream(&body, n);
            assert!(done, "pieces of {n}");
            assert_eq!(file, content, "pieces of {n}");
            assert_eq!(
                fields,
                vec![("csrf".into(), "abc".into()), ("name".into(), "App".into())]
            );
        }
        let whole = parse(&body, "XyZ").unwrap();
        assert_eq!(whole.file.as_deref(), Some(&content[..]));
        // Without the closing delimiter the form is not complete.
        let (_, _, done) = stream(&body[..body.len() - 9], 5);
        assert!(!done);
        // A text field larger than a form may be is refused, however it arrives.
        let mut big = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', super::super::MAX_FORM_BODY + 100));
        let mut p = Streaming::new("XyZ");
        assert_eq!(
            big.chunks(4096).map(|c| p.push(c)).find_map(Result::err),
            Some(MultipartError::TooLarge)
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
