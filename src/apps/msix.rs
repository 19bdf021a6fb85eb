//! MSIX/APPX package identity: the package family name `Name_PublisherId`, where PublisherId
//! is what Windows derives from the manifest's `Identity/@Publisher`: the first 8 bytes of the
//! SHA-256 of the publisher string in UTF-16LE, in base32 with the alphabet
//! `0123456789abcdefghjkmnpqrstvwxyz` (13 characters; the 65th bit is a zero pad).

/// The base32 alphabet of package publisher ids.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The PublisherId Windows computes for `publisher` (the manifest's distinguished name).
pub fn publisher_id(publisher: &str) -> String {
    let utf16: Vec<u8> = publisher
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &utf16);
    let mut bits: u128 = 0;
    for b in &d.as_ref()[..8] {
        bits = (bits << 8) | u128::from(*b);
    }
    bits <<= 1; // 64 bits + 1 pad bit = 13 groups of 5
    (0..13)
        .rev()
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// Whether `s` is a package name (Identity/@Name: 3-50 of letters, digits, `.` and `-`).
pub fn valid_name(s: &str) -> bool {
    (3..=50).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Whether `s` is a package family name `Name_PublisherId`.
pub fn valid_family_name(s: &str) -> bool {
    match s.rsplit_once('_') {
        Some((name, id)) => {
            valid_name(name) && id.len() == 13 && id.bytes().all(|b| ALPHABET.contains(&b))
        }
        None => false,
    }
}

/// `Name_PublisherId`.
pub fn family_name(name: &str, publisher: &str) -> String {
    format!("{name}_{}", publisher_id(publisher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_ids_match_windows() {
        // Microsoft's own packages: Microsoft.WindowsCalculator_8wekyb3d8bbwe.
        let ms = "CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US";
        assert_eq!(publisher_id(ms), "8wekyb3d8bbwe");
        assert_eq!(
            family_name("Microsoft.WindowsCalculator", ms),
            "Microsoft.WindowsCalculator_8wekyb3d8bbwe"
        );
        assert!(valid_family_name(
            "Microsoft.WindowsCalculator_8wekyb3d8bbwe"
        ));
        assert!(!valid_family_name(
            "Microsoft.WindowsCalculator_8wekyb3d8bbwi"
        ));
        assert!(!valid_family_name("no-publisher-id"));
        assert!(!valid_family_name("a_8wekyb3d8bbwe"));
    }
}
