//! What can be compared between two Autopilot hardware hashes (the "4K hardware hash": the CSV's
//! `Hardware Hash` column and the device's `./DevDetail/Ext/DeviceHardwareData`, which is where
//! `Get-WindowsAutoPilotInfo` reads it).
//!
//! Microsoft does not document the format; its own decoder is `oa3tool.exe /DecodeHwHash`. What
//! real hashes show, and what this module relies on: base64 of a binary blob that starts with
//! the magic `OA`, a 32-byte header (format version and the *capture time*, which is why two
//! captures of the same device never give the same string), then a sequence of fields, each a
//! little-endian `u16` type, a little-endian `u16` length (header included) and the value. The
//! fields compared here are the ones that identify the hardware and do not change between
//! captures:
//!
//! | type | field (oa3tool name) | value |
//! |---|---|---|
//! | 12 | SmbiosUuid | 16 bytes |
//! | 14 | SmbiosSystemSerialNumber | NUL-terminated ASCII |
//! | 15 | SmbiosSystemManufacturer | NUL-terminated ASCII |
//! | 17 | SmbiosSystemProductName | NUL-terminated ASCII |
//! | 25 | TPM EK public key | bytes |
//!
//! Everything else (disk, NIC, CPU, TPM version strings, the header's time) is ignored: its
//! encoding is not certain and some of it changes with firmware or drivers. A hash that does not
//! have this shape (a synthetic one, a future format) decodes to `None` and nothing is compared.

use base64::Engine;

/// The hardware fields of a decoded hash (`None`: absent from it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Type 12.
    pub smbios_uuid: Option<Vec<u8>>,
    /// Type 14.
    pub serial: Option<String>,
    /// Type 15.
    pub manufacturer: Option<String>,
    /// Type 17.
    pub product: Option<String>,
    /// Type 25.
    pub tpm_ek_public: Option<Vec<u8>>,
}

const MAGIC: &[u8] = b"OA";
const HEADER_LEN: usize = 32;

fn text(v: &[u8]) -> Option<String> {
    let v = v.split(|b| *b == 0).next().unwrap_or(&[]);
    let s = std::str::from_utf8(v).ok()?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Decodes the identity fields of a base64 hardware hash; `None` when it does not have the shape
/// described in the module documentation (every length must fit; a truncated hash is refused).
pub fn decode(b64: &str) -> Option<Identity> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()?;
    if raw.len() < HEADER_LEN || !raw.starts_with(MAGIC) {
        return None;
    }
    let mut id = Identity::default();
    let mut fields = 0;
    let mut i = HEADER_LEN;
    while i < raw.len() {
        let head = raw.get(i..i + 4)?;
        let ty = u16::from_le_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        if len < 4 {
            return None;
        }
        let v = raw.get(i + 4..i + len)?;
        match ty {
            12 => id.smbios_uuid = Some(v.to_vec()),
            14 => id.serial = text(v),
            15 => id.manufacturer = text(v),
            17 => id.product = text(v),
            25 => id.tpm_ek_public = Some(v.to_vec()),
            _ => {}
        }
        fields += 1;
        i += len;
    }
    (fields > 0 && id != Identity::default()).then_some(id)
}

/// The outcome of comparing a registration with what a device reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashCheck {
    /// Both hashes decode and every identity field present in both is equal (and the serial
    /// is the reported one).
    Match,
    /// A field differs: the device is not the registered hardware (or lies about its serial).
    Mismatch {
        /// Which field, and the two values, for the admin.
        reason: String,
    },
    /// The imported hash does not decode: there is nothing to compare against.
    Unverified,
}

impl HashCheck {
    /// `match`, `mismatch` or `unverified`, as the API shows it.
    pub fn name(&self) -> &'static str {
        match self {
            HashCheck::Match => "match",
            HashCheck::Mismatch { .. } => "mismatch",
            HashCheck::Unverified => "unverified",
        }
    }
}

fn same_serial(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Compares the registration's imported hash with the serial the device reported and the hash
/// it reported (`None`: it did not answer the hash `Get`). When the imported hash decodes, the
/// device must report a hash that decodes too and agrees on every identity field both carry;
/// when it does not decode, nothing can be compared ([`HashCheck::Unverified`]).
pub fn check(imported: &str, reported_serial: &str, reported_hash: Option<&str>) -> HashCheck {
    let mismatch = |reason: String| HashCheck::Mismatch { reason };
    let device = reported_hash.and_then(decode);
    if let Some(s) = device.as_ref().and_then(|d| d.serial.as_deref()) {
        if !same_serial(s, reported_serial) {
            return mismatch(format!(
                "the device reported serial {reported_serial:?} but its own hardware hash says {s:?}"
            ));
        }
    }
    let Some(reg) = decode(imported) else {
        return HashCheck::Unverified;
    };
    let Some(device) = device else {
        return mismatch(
            "the registered hardware hash names the hardware, but the device did not report a hardware hash (./DevDetail/Ext/DeviceHardwareData) that decodes".into(),
        );
    };
    if let Some(s) = reg.serial.as_deref() {
        if !same_serial(s, reported_serial) {
            return mismatch(format!(
                "the registered hardware hash names serial {s:?}, the device reported {reported_serial:?}"
            ));
        }
    }
    let text_fields = [
        ("SmbiosSystemSerialNumber", &reg.serial, &device.serial),
        (
            "SmbiosSystemManufacturer",
            &reg.manufacturer,
            &device.manufacturer,
        ),
        ("SmbiosSystemProductName", &reg.product, &device.product),
    ];
    for (name, a, b) in text_fields {
        if let (Some(a), Some(b)) = (a, b) {
            if !same_serial(a, b) {
                return mismatch(format!("{name}: registered {a:?}, device reports {b:?}"));
            }
        }
    }
    let byte_fields = [
        ("SmbiosUuid", &reg.smbios_uuid, &device.smbios_uuid),
        (
            "TPM EK public key",
            &reg.tpm_ek_public,
            &device.tpm_ek_public,
        ),
    ];
    for (name, a, b) in byte_fields {
        if let (Some(a), Some(b)) = (a, b) {
            if a != b {
                return mismatch(format!("{name} differs from the registered hash"));
            }
        }
    }
    HashCheck::Match
}

/// Builds a hash of this shape (tests and examples): the header, then the given fields.
pub fn encode(id: &Identity, capture_time: u32) -> String {
    let mut raw = Vec::with_capacity(512);
    raw.extend_from_slice(MAGIC);
    raw.extend_from_slice(&[0x06, 0x04, 0x01, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x0a, 0x00]);
    raw.extend_from_slice(&[0xe8, 0x03]);
    raw.extend_from_slice(&capture_time.to_le_bytes());
    raw.resize(HEADER_LEN, 0);
    let mut field = |ty: u16, v: &[u8]| {
        let len = u16::try_from(v.len() + 4).unwrap_or(u16::MAX);
        raw.extend_from_slice(&ty.to_le_bytes());
        raw.extend_from_slice(&len.to_le_bytes());
        raw.extend_from_slice(&v[..usize::from(len) - 4]);
    };
    field(3, b"GenuineIntel\0");
    if let Some(u) = &id.smbios_uuid {
        field(12, u);
    }
    let z = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    if let Some(s) = &id.serial {
        field(14, &z(s));
    }
    if let Some(s) = &id.manufacturer {
        field(15, &z(s));
    }
    if let Some(s) = &id.product {
        field(17, &z(s));
    }
    if let Some(k) = &id.tpm_ek_public {
        field(25, k);
    }
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 752 bytes of a real hash (a Hyper-V VM's, as published on oofhours.com,
    /// 2022-08-02), cut at a field boundary: every field walks, the identity ones decode.
    const REAL_PREFIX: &str = "T0EGBAEAHAAAAAoA6ANGYgAACgDoA0Zi0xd8KuQCCQgCABAACQABAAEAAgABAAAABQAZAAQAAAAAAAAAAAgAAAAAAAACAAEAAwMAEQBBdXRoZW50aWNBTUQABAA0AEFNRCBSeXplbiBUaHJlYWRyaXBwZXIgUFJPIDM5NDVXWCAxMi1Db3JlcyAgICAgAAYAEACIAAAAAAAAAAoA/wEHAB4AfFZpcnR1YWwgRGlzayAgICB8TXNmdCAgICAIAB4AAAAAAAAVXenbbwwAAABWAE0AQgBVAFMAAAAJABAAAAAAAAAEAAP/////GwAIAAAAAAAKAAkAAwEBAAANAFYAVFBNLVZlcnNpb246Mi4wIC1MZXZlbDowLVJldmlzaW9uOjEuMTYtVmVuZG9ySUQ6J01TRlQnLUZpcm13YXJlOjUzODI0NzQ0My4xMzk0NzIyABkABAGp8Yu54jr1cGTCjqRSYPycs05AsOulrKuzmVVXkr9ma/AxvBRUqMvaui5Ubvi8wz6SSkB5bzBXOGb4TgafmIXkJREHpGZCZfMXdDtBnN4t1lo+kd1+2BBtDEmzWFo8aKI9LRo2G2MM/hINAjDXuuQcEI7zBXdfw+4tT4GBjHkYXvoWkSCpiEMDlHZVu6bq+RCGI/OpQG4hBYNKRyBQ8F/SREvEAWMYg2jn3SGiWPaSZj/ZmDDBsnI0/0QRfCKDvlkKfOLjp2nuWVMhzyCT0tC3c/galCNjAELJt8QM/ukKV4aL5V033PrfbwHNjeY2iV+meT9LlDhLrl/Z8XMXmWZlCwAuAAAAAAABACAAAADQsFnSvrbyk0HOljdNOXiAksuIqDajr3uebzoqQEY5OwwAFAAhrnu0kZJvTZh2tPCyqPeODgAlADM3NjItNjAzMS05MzUxLTg3NTgtODIyMi05NjAxLTI4AA8AGgBNaWNyb3NvZnQgQ29ycG9yYXRpb24AEAAaAE1pY3Jvc29mdCBDb3Jwb3JhdGlvbgA=";

    #[test]
    fn a_real_hash_decodes_to_its_smbios_fields() {
        let id = decode(REAL_PREFIX).expect("decodes");
        assert_eq!(
            id.serial.as_deref(),
            Some("3762-6031-9351-8758-8222-9601-28")
        );
        assert_eq!(id.manufacturer.as_deref(), Some("Microsoft Corporation"));
        assert_eq!(id.smbios_uuid.as_ref().map(Vec::len), Some(16));
        assert_eq!(id.tpm_ek_public.as_ref().map(Vec::len), Some(256));
    }

    #[test]
    fn synthetic_or_truncated_blobs_do_not_decode() {
        assert_eq!(decode("AAECAwQFBgcICQ=="), None);
        assert_eq!(decode("not base64 at all"), None);
        let whole = encode(
            &Identity {
                serial: Some("S1".into()),
                ..Identity::default()
            },
            1,
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&whole)
            .unwrap();
        let cut = base64::engine::general_purpose::STANDARD.encode(&raw[..raw.len() - 2]);
        assert_eq!(decode(&cut), None, "a field running past the end");
    }

    #[test]
    fn captures_at_different_times_match_and_other_hardware_does_not() {
        let me = Identity {
            smbios_uuid: Some(vec![7; 16]),
            serial: Some("5CG1234XYZ".into()),
            manufacturer: Some("HP".into()),
            product: Some("EliteBook 840 G8".into()),
            tpm_ek_public: Some(vec![9; 256]),
        };
        let a = encode(&me, 1_650_000_000);
        let b = encode(&me, 1_700_000_000);
        assert_ne!(a, b, "the capture time changes the string");
        assert_eq!(check(&a, "5cg1234xyz", Some(&b)), HashCheck::Match);
        let other = encode(
            &Identity {
                serial: Some("OTHER-1".into()),
                ..me.clone()
            },
            5,
        );
        assert!(matches!(
            check(&a, "5CG1234XYZ", Some(&other)),
            HashCheck::Mismatch { .. }
        ));
        let other_tpm = encode(
            &Identity {
                tpm_ek_public: Some(vec![1; 256]),
                ..me.clone()
            },
            5,
        );
        assert!(matches!(
            check(&a, "5CG1234XYZ", Some(&other_tpm)),
            HashCheck::Mismatch { .. }
        ));
        assert!(matches!(
            check(&a, "5CG1234XYZ", None),
            HashCheck::Mismatch { .. }
        ));
        assert_eq!(check("AAECAwQFBgcICQ==", "X", None), HashCheck::Unverified);
        assert!(matches!(
            check("AAECAwQFBgcICQ==", "X", Some(&a)),
            HashCheck::Mismatch { .. }
        ));
    }
}
