//! The hardware-hash CSV that `Get-WindowsAutoPilotInfo -OutputFile` writes, decoded and checked
//! row by row. Pure.
//!
//! * Encodings: UTF-8 (with or without BOM) and UTF-16 with BOM (PowerShell 5's `Out-File`
//!   default is UTF-16LE with BOM), or UTF-16LE without BOM (recognised by its zero bytes).
//! * RFC 4180 fields: commas, `"quoted, fields"` with `""` escapes and line breaks inside quotes;
//!   CRLF or LF line ends; blank lines are skipped.
//! * Header (case and spaces around names ignored): `Device Serial Number`, `Windows Product ID`,
//!   `Hardware Hash` are required; `Group Tag` and `Assigned User` are optional; other columns
//!   (e.g. the `Manufacturer name`/`Device model` of partner files) are ignored.
//! * Rows are numbered as a spreadsheet shows them: the header is row 1.

use base64::Engine;

/// Longest serial number accepted.
pub const MAX_SERIAL: usize = 128;
/// Longest hardware hash accepted (base64 characters; real ones are about 4,000).
pub const MAX_HASH: usize = 64 * 1024;
/// Longest group tag accepted.
pub const MAX_GROUP_TAG: usize = 128;

/// A problem with the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Not UTF-8 or UTF-16.
    #[error("the file is neither UTF-8 nor UTF-16 text: {0}")]
    Encoding(String),
    /// No header line.
    #[error("the file is empty: expected the header line `Device Serial Number,Windows Product ID,Hardware Hash`")]
    Empty,
    /// A required column is missing.
    #[error("the header has no {0:?} column (expected `Device Serial Number,Windows Product ID,Hardware Hash[,Group Tag][,Assigned User]`)")]
    MissingColumn(&'static str),
    /// A column appears twice.
    #[error("the header names the column {0:?} twice")]
    DuplicateColumn(String),
}

/// One data row, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Spreadsheet row number (header = 1).
    pub row: usize,
    /// `Device Serial Number`.
    pub serial: String,
    /// `Windows Product ID` (may be empty).
    pub product_id: Option<String>,
    /// `Hardware Hash`, base64.
    pub hardware_hash: String,
    /// `Group Tag`.
    pub group_tag: Option<String>,
    /// `Assigned User` (UPN, lower-cased).
    pub assigned_user: Option<String>,
}

/// A refused row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    /// Spreadsheet row number (header = 1).
    pub row: usize,
    /// Why, for the admin.
    pub error: String,
}

/// The rows of a file: good ones and refused ones.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Rows that passed every check, in file order.
    pub rows: Vec<Row>,
    /// Rows that did not, in file order.
    pub errors: Vec<RowError>,
}

/// The key serials are compared by (trimmed, upper case): serials are case-insensitive.
pub fn serial_key(serial: &str) -> String {
    serial.trim().to_ascii_uppercase()
}

/// Decodes the file's bytes to text (see the module doc for the encodings).
pub fn decode(bytes: &[u8]) -> Result<String, FileError> {
    let utf16 = |b: &[u8], le: bool| -> Result<String, FileError> {
        if !b.len().is_multiple_of(2) {
            return Err(FileError::Encoding(
                "UTF-16 text with an odd number of bytes".into(),
            ));
        }
        let units = b.chunks_exact(2).map(|c| {
            if le {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| FileError::Encoding(format!("invalid UTF-16: {e}")))
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false);
    }
    let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    if body.len() >= 2 && body[0] != 0 && body[1] == 0 {
        return utf16(body, true);
    }
    String::from_utf8(body.to_vec()).map_err(|e| FileError::Encoding(format!("invalid UTF-8: {e}")))
}

/// Splits CSV text into records (fields unquoted). A record ending inside an unterminated quote
/// is returned with `Err` holding its first line number.
pub struct Records<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Records<'a> {
    /// Records of `text`.
    pub fn new(text: &'a str) -> Records<'a> {
        Records {
            text,
            pos: 0,
            line: 0,
        }
    }
}

impl Iterator for Records<'_> {
    /// (record number from 1, fields) or the record number of an unterminated quote.
    type Item = Result<(usize, Vec<String>), usize>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.text.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        self.line += 1;
        let number = self.line;
        // Fast path: a line without quotes or stray CRs is split at its commas.
        let rest = &self.text[self.pos..];
        let line_end = rest.find('\n').unwrap_or(rest.len());
        let line = &rest[..line_end];
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !line.contains('"') && !line.contains('\r') {
            self.pos = (self.pos + line_end + 1).min(b.len());
            return Some(Ok((number, line.split(',').map(str::to_string).collect())));
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut i = self.pos;
        loop {
            // Start of a field.
            if i < b.len() && b[i] == b'"' {
                i += 1;
                loop {
                    let Some(q) = self.text[i..].find('"') else {
                        self.pos = b.len();
                        return Some(Err(number));
                    };
                    field.push_str(&self.text[i..i + q]);
                    i += q + 1;
                    if i < b.len() && b[i] == b'"' {
                        field.push('"');
                        i += 1;
                    } else {
                        break;
                    }
                }
                // Tolerate text after the closing quote, up to the separator.
                let end = self.text[i..]
                    .find([',', '\n', '\r'])
                    .map_or(b.len(), |e| i + e);
                field.push_str(&self.text[i..end]);
                i = end;
            } else {
                let end = self.text[i..]
                    .find([',', '\n', '\r'])
                    .map_or(b.len(), |e| i + e);
                field.push_str(&self.text[i..end]);
                i = end;
            }
            fields.push(std::mem::take(&mut field));
            if i < b.len() && b[i] == b',' {
                i += 1;
                continue;
            }
            // End of record: CRLF, LF, CR or end of text.
            if i < b.len() && b[i] == b'\r' {
                i += 1;
            }
            if i < b.len() && b[i] == b'\n' {
                i += 1;
            }
            self.pos = i;
            return Some(Ok((number, fields)));
        }
    }
}

/// Column positions of a header.
struct Columns {
    serial: usize,
    product_id: usize,
    hash: usize,
    group_tag: Option<usize>,
    user: Option<usize>,
    width: usize,
}

fn columns(header: &[String]) -> Result<Columns, FileError> {
    let norm: Vec<String> = header
        .iter()
        .map(|h| {
            h.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_ascii_lowercase()
        })
        .collect();
    for (i, n) in norm.iter().enumerate() {
        if !n.is_empty() && norm[..i].contains(n) {
            return Err(FileError::DuplicateColumn(header[i].trim().to_string()));
        }
    }
    let find = |name: &str| norm.iter().position(|n| n == name);
    let need = |name: &'static str, lower: &str| find(lower).ok_or(FileError::MissingColumn(name));
    Ok(Columns {
        serial: need("Device Serial Number", "device serial number")?,
        product_id: need("Windows Product ID", "windows product id")?,
        hash: need("Hardware Hash", "hardware hash")?,
        group_tag: find("group tag"),
        user: find("assigned user"),
        width: header.len(),
    })
}

/// Checks a UPN-looking value: `name@domain`, no spaces or control characters.
pub fn valid_upn(s: &str) -> bool {
    let ok_chars = !s
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/');
    matches!(s.split_once('@'), Some((a, d)) if !a.is_empty() && !d.is_empty() && !d.contains('@'))
        && ok_chars
        && s.len() <= 256
}

/// Checks a group tag.
pub fn check_group_tag(t: &str) -> Result<(), String> {
    if t.chars().count() > MAX_GROUP_TAG || t.chars().any(char::is_control) {
        return Err(format!(
            "group tag must be at most {MAX_GROUP_TAG} characters without control characters"
        ));
    }
    Ok(())
}

/// Checks a serial number.
pub fn check_serial(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("missing device serial number".into());
    }
    if s.len() > MAX_SERIAL || s.chars().any(|c| c.is_control() || c == '/') {
        return Err(format!(
            "device serial number must be at most {MAX_SERIAL} characters without control characters or '/'"
        ));
    }
    Ok(())
}

/// Checks a hardware hash (base64 of the device's hardware data).
pub fn check_hash(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("missing hardware hash".into());
    }
    if h.len() > MAX_HASH {
        return Err(format!(
            "hardware hash is longer than {MAX_HASH} characters"
        ));
    }
    match base64::engine::general_purpose::STANDARD.decode(h) {
        Ok(raw) if !raw.is_empty() => Ok(()),
        _ => Err("hardware hash is not base64".into()),
    }
}

/// Parses and checks a whole file. Duplicate serials within the file: the first row wins, the
/// others are errors. Stops (with an error for that row) after `max_rows` data rows.
pub fn parse(bytes: &[u8], max_rows: usize) -> Result<Parsed, FileError> {
    let text = decode(bytes)?;
    let mut records = Records::new(&text)
        .filter(|r| !matches!(r, Ok((_, f)) if f.iter().all(|x| x.trim().is_empty())));
    let header = match records.next() {
        None => return Err(FileError::Empty),
        Some(Err(_)) => return Err(FileError::MissingColumn("Device Serial Number")),
        Some(Ok((_, h))) => h,
    };
    let cols = columns(&header)?;
    let mut out = Parsed::default();
    let mut seen = std::collections::HashMap::new();
    let mut data_rows = 0;
    for rec in records {
        let (row, fields) = match rec {
            Ok(r) => r,
            Err(row) => {
                out.errors.push(RowError {
                    row,
                    error: "unterminated quoted field (a '\"' is missing); the rest of the file was not read".into(),
                });
                break;
            }
        };
        data_rows += 1;
        if data_rows > max_rows {
            out.errors.push(RowError {
                row,
                error: format!(
                    "more than {max_rows} devices in one file; this row and the following were not imported"
                ),
            });
            break;
        }
        match check_row(row, &fields, &cols) {
            Err(error) => out.errors.push(RowError { row, error }),
            Ok(r) => match seen.get(&serial_key(&r.serial)) {
                Some(first) => out.errors.push(RowError {
                    row,
                    error: format!(
                        "duplicate device serial number {:?} (also on row {first})",
                        r.serial
                    ),
                }),
                None => {
                    seen.insert(serial_key(&r.serial), row);
                    out.rows.push(r);
                }
            },
        }
    }
    Ok(out)
}

fn check_row(row: usize, fields: &[String], cols: &Columns) -> Result<Row, String> {
    if fields.len() > cols.width {
        return Err(format!(
            "{} fields where the header has {} columns (quote values that contain commas)",
            fields.len(),
            cols.width
        ));
    }
    let get = |i: usize| fields.get(i).map(|s| s.trim()).unwrap_or("");
    let opt = |i: Option<usize>| i.map(get).filter(|s| !s.is_empty()).map(str::to_string);
    let serial = get(cols.serial);
    check_serial(serial)?;
    let hash = get(cols.hash);
    check_hash(hash)?;
    let group_tag = opt(cols.group_tag);
    if let Some(t) = &group_tag {
        check_group_tag(t)?;
    }
    let assigned_user = opt(cols.user).map(|u| u.to_lowercase());
    if let Some(u) = &assigned_user {
        if !valid_upn(u) {
            return Err(format!(
                "assigned user {u:?} is not a user principal name (name@domain)"
            ));
        }
    }
    let product_id = Some(get(cols.product_id))
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if product_id.as_deref().is_some_and(|p| p.len() > 64) {
        return Err("Windows product ID is longer than 64 characters".into());
    }
    Ok(Row {
        row,
        serial: serial.to_string(),
        product_id,
        hardware_hash: hash.to_string(),
        group_tag,
        assigned_user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "T0gCAQAcAAoAAAAAAAAAAA==";

    #[test]
    fn records_handle_quotes_and_line_ends() {
        let text = "a,\"b,1\",\"say \"\"hi\"\"\"\r\n\"multi\nline\",x\n\nlast";
        let r: Vec<_> = Records::new(text).map(Result::unwrap).collect();
        assert_eq!(r[0].1, ["a", "b,1", "say \"hi\""]);
        assert_eq!(r[1].1, ["multi\nline", "x"]);
        assert_eq!(r[2].1, [""]);
        assert_eq!(r[3].1, ["last"]);
        assert!(Records::new("\"open").next().unwrap().is_err());
    }

    #[test]
    fn encodings() {
        let text = "Device Serial Number,Windows Product ID,Hardware Hash\r\n";
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode(&le).unwrap(), text);
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode(&be).unwrap(), text);
        let no_bom: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(decode(&no_bom).unwrap(), text);
        let mut bom8 = vec![0xEF, 0xBB, 0xBF];
        bom8.extend(text.as_bytes());
        assert_eq!(decode(&bom8).unwrap(), text);
        assert!(decode(&[0xFF, 0xFE, 0x41]).is_err());
        assert!(decode(&[0xC3, 0x28]).is_err());
    }

    #[test]
    fn rows_are_checked() {
        let csv = format!(
            "device serial number , Windows Product ID,Hardware Hash,Group Tag,Assigned User\n\
             S1,,{HASH},Sales,Alice@Contoso.com\n\
             S2,,,,\n\
             s1,,{HASH},,\n\
             S3,,not base64!,,\n\
             S4,,{HASH},,not-a-upn\n\
             ,,{HASH},,\n\
             S5,1,{HASH},,,extra\n"
        );
        let p = parse(csv.as_bytes(), 100).unwrap();
        assert_eq!(p.rows.len(), 1);
        assert_eq!(
            p.rows[0].assigned_user.as_deref(),
            Some("alice@contoso.com")
        );
        assert_eq!(p.rows[0].group_tag.as_deref(), Some("Sales"));
        let errs: Vec<(usize, &str)> = p.errors.iter().map(|e| (e.row, e.error.as_str())).collect();
        assert_eq!(errs[0], (3, "missing hardware hash"));
        assert!(
            errs[1].1.contains("duplicate") && errs[1].1.contains("row 2"),
            "{errs:?}"
        );
        assert_eq!(errs[2], (5, "hardware hash is not base64"));
        assert!(errs[3].1.contains("not a user principal name"));
        assert_eq!(errs[4], (7, "missing device serial number"));
        assert!(errs[5].1.contains("6 fields"), "{errs:?}");
    }

    #[test]
    fn header_problems() {
        assert_eq!(parse(b"", 10).unwrap_err(), FileError::Empty);
        assert_eq!(
            parse(b"Device Serial Number,Hardware Hash\n", 10).unwrap_err(),
            FileError::MissingColumn("Windows Product ID")
        );
        assert!(matches!(
            parse(
                b"Device Serial Number,Windows Product ID,Hardware Hash,hardware hash\n",
                10
            ),
            Err(FileError::DuplicateColumn(_))
        ));
    }

    #[test]
    fn row_cap() {
        let mut csv = String::from("Device Serial Number,Windows Product ID,Hardware Hash\n");
        for i in 0..5 {
            csv.push_str(&format!("S{i},,{HASH}\n"));
        }
        let p = parse(csv.as_bytes(), 3).unwrap();
        assert_eq!(p.rows.len(), 3);
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].row, 5);
    }
}
