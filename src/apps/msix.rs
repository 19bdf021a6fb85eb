//! MSIX/APPX package identity: the package family name `Name_PublisherId`, where PublisherId
//! is what Windows derives from the manifest's `Identity/@Publisher`: the first 8 bytes of the
//! SHA-256 of the publisher string in UTF-16LE, in base32 with the alphabet
//! `0123456789abcdefghjkmnpqrstvwxyz` (13 characters; the 65th bit is a zero pad).
//!
//! [`read`] takes the identity from an uploaded package: a ZIP holding `AppxManifest.xml`
//! (`.msix`/`.appx`: root `Package`) or `AppxMetadata/AppxBundleManifest.xml`
//! (`.msixbundle`/`.appxbundle`: root `Bundle`), whose `Identity` element carries `Name`,
//! `Publisher` and `Version`. Hostile archives are bounded: the central directory (what the
//! ZIP reader holds in memory) at [`MAX_CENTRAL_DIRECTORY`] bytes, the manifest at
//! [`MAX_MANIFEST`] bytes *decompressed* (read through a limit, whatever its header claims),
//! and the manifest is parsed by [`crate::xml`] (no DTD, bounded depth and element count).

use std::io::{Read, Seek, SeekFrom};

/// Largest manifest read (decompressed).
pub const MAX_MANIFEST: u64 = 1 << 20;
/// Largest ZIP central directory accepted.
pub const MAX_CENTRAL_DIRECTORY: u64 = 16 << 20;

/// The manifest of a package.
pub const PACKAGE_MANIFEST: &str = "AppxManifest.xml";
/// The manifest of a bundle.
pub const BUNDLE_MANIFEST: &str = "AppxMetadata/AppxBundleManifest.xml";

/// The identity of an MSIX/APPX package or bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsixInfo {
    /// `Identity/@Name`.
    pub name: String,
    /// `Identity/@Publisher`.
    pub publisher: String,
    /// `Identity/@Version` (`major.minor.build.revision`).
    pub version: String,
    /// `Name_PublisherId`.
    pub family_name: String,
    /// `Properties/DisplayName` when it is plain text (not an `ms-resource:` reference).
    pub display_name: Option<String>,
    /// A bundle (`AppxBundleManifest.xml`).
    pub bundle: bool,
}

/// Whether `v` is a package version: four numbers 0..=65535.
pub fn valid_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
        && parts
            .iter()
            .all(|p| p.parse::<u32>().is_ok_and(|n| n <= 65535))
}

/// Compares two package versions field by field.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let f = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    f(a).cmp(&f(b))
}

/// Size of the ZIP central directory as the end records say (ZIP64 too); refuses what has no
/// end record.
fn central_directory_size<R: Read + Seek>(r: &mut R) -> Result<u64, String> {
    let len = r
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("reading the package: {e}"))?;
    // The end record (22 bytes) plus a comment of up to 65535 bytes.
    let tail_len = len.min(22 + 65535);
    let start = len - tail_len;
    r.seek(SeekFrom::Start(start))
        .map_err(|e| format!("reading the package: {e}"))?;
    let mut tail = vec![0u8; tail_len as usize];
    r.read_exact(&mut tail)
        .map_err(|e| format!("reading the package: {e}"))?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or("not a ZIP archive (no end of central directory record)")?;
    let u16_at = |b: &[u8], i: usize| u64::from(u16::from_le_bytes([b[i], b[i + 1]]));
    let u32_at =
        |b: &[u8], i: usize| u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    let entries = u16_at(&tail, eocd + 10);
    let size = u32_at(&tail, eocd + 12);
    if entries != 0xFFFF && size != 0xFFFF_FFFF {
        return Ok(size);
    }
    // ZIP64: the locator (20 bytes) right before the end record points at the ZIP64 record.
    if eocd < 20 || tail[eocd - 20..eocd - 16] != [0x50, 0x4b, 0x06, 0x07] {
        return Err("a ZIP64 archive without its ZIP64 end record locator".into());
    }
    let l = eocd - 20;
    let at = u32_at(&tail, l + 8) | (u32_at(&tail, l + 12) << 32);
    r.seek(SeekFrom::Start(at))
        .map_err(|e| format!("reading the package: {e}"))?;
    let mut rec = [0u8; 56];
    r.read_exact(&mut rec)
        .map_err(|_| "the ZIP64 end record lies outside the file".to_string())?;
    if rec[..4] != [0x50, 0x4b, 0x06, 0x06] {
        return Err("the ZIP64 end record is missing".into());
    }
    Ok(u32_at(&rec, 40) | (u32_at(&rec, 44) << 32))
}

/// Reads the identity of a package or bundle; the error says why the file is not a usable
/// one. A panic of the ZIP reader on a hostile file is caught and reported as invalid.
pub fn read<R: Read + Seek>(r: R) -> Result<MsixInfo, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_inner(r))).unwrap_or_else(|_| {
        tracing::warn!("the ZIP reader panicked on an uploaded file");
        Err("not an MSIX/APPX package (the ZIP reader gave up on it)".into())
    })
}

/// The first child named `local`, in whatever namespace (manifests use several schema versions).
fn child<'e>(e: &'e crate::xml::Element, local: &str) -> Option<&'e crate::xml::Element> {
    e.children.iter().find(|c| c.local == local)
}

fn read_inner<R: Read + Seek>(mut r: R) -> Result<MsixInfo, String> {
    let cd = central_directory_size(&mut r)?;
    if cd > MAX_CENTRAL_DIRECTORY {
        return Err(format!(
            "the ZIP central directory is {cd} bytes (at most {MAX_CENTRAL_DIRECTORY})"
        ));
    }
    r.seek(SeekFrom::Start(0))
        .map_err(|e| format!("reading the package: {e}"))?;
    let mut zip = zip::ZipArchive::new(r).map_err(|e| format!("not a ZIP archive: {e}"))?;
    let find = |zip: &zip::ZipArchive<R>, name: &str| {
        zip.index_for_name(name).or_else(|| {
            zip.file_names_raw()
                .position(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        })
    };
    let (index, bundle) = match (find(&zip, BUNDLE_MANIFEST), find(&zip, PACKAGE_MANIFEST)) {
        (Some(i), _) => (i, true),
        (None, Some(i)) => (i, false),
        (None, None) => {
            return Err(format!(
                "the ZIP has neither {PACKAGE_MANIFEST} nor {BUNDLE_MANIFEST}"
            ))
        }
    };
    let mut entry = zip
        .by_index(index)
        .map_err(|e| format!("reading the manifest: {e}"))?;
    if entry.size() > MAX_MANIFEST {
        return Err(format!(
            "the manifest is {} bytes (at most {MAX_MANIFEST})",
            entry.size()
        ));
    }
    let mut xml = Vec::new();
    (&mut entry)
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut xml)
        .map_err(|e| format!("reading the manifest: {e}"))?;
    if xml.len() as u64 > MAX_MANIFEST {
        return Err(format!(
            "the manifest decompresses to more than {MAX_MANIFEST} bytes"
        ));
    }
    drop(entry);
    let limits = crate::xml::Limits {
        max_bytes: MAX_MANIFEST as usize,
        max_depth: 64,
        max_elements: 65_536,
    };
    let doc = crate::xml::parse_with(&xml, &limits)
        .map_err(|e| format!("the manifest is not acceptable XML: {e}"))?;
    let root = if bundle { "Bundle" } else { "Package" };
    if doc.local != root {
        return Err(format!(
            "the manifest's root element is {:?}, not {root}",
            doc.local
        ));
    }
    let id = child(&doc, "Identity").ok_or("the manifest has no Identity element")?;
    let attr = |k: &str| {
        id.attr(None, k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("the manifest's Identity has no {k}"))
    };
    let (name, publisher, version) = (attr("Name")?, attr("Publisher")?, attr("Version")?);
    if !valid_name(name) {
        return Err(format!(
            "Identity/@Name {name:?} is not 3-50 of letters, digits, '.' and '-'"
        ));
    }
    if publisher.len() > 8192 || publisher.chars().any(char::is_control) {
        return Err("Identity/@Publisher is too long or has control characters".into());
    }
    if !valid_version(version) {
        return Err(format!(
            "Identity/@Version {version:?} is not major.minor.build.revision"
        ));
    }
    let display_name = child(&doc, "Properties")
        .and_then(|p| child(p, "DisplayName"))
        .map(|d| d.text_trimmed().to_string())
        .filter(|d| {
            !d.is_empty()
                && !d.starts_with("ms-resource:")
                && d.chars().count() <= 128
                && !d.chars().any(char::is_control)
        });
    Ok(MsixInfo {
        name: name.to_string(),
        publisher: publisher.to_string(),
        version: version.to_string(),
        family_name: family_name(name, publisher),
        display_name,
        bundle,
    })
}

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

    /// A ZIP of `files` (deflated), for tests that need a package.
    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            if let Err(e) = w
                .start_file(*name, opts)
                .and_then(|()| Ok(w.write_all(data)?))
            {
                panic!("writing {name} into a test ZIP: {e}");
            }
        }
        match w.finish() {
            Ok(c) => c.into_inner(),
            Err(e) => panic!("finishing a test ZIP: {e}"),
        }
    }

    const MS: &str =
        "CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US";

    fn manifest(root: &str, ns: &str, name: &str, version: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><{root} xmlns="{ns}"><Identity Name="{name}" Publisher="{MS}" Version="{version}" ProcessorArchitecture="x64"/><Properties><DisplayName>Contoso Notes</DisplayName></Properties></{root}>"#
        )
    }

    const PKG_NS: &str = "http://schemas.microsoft.com/appx/manifest/foundation/windows10";
    const BUNDLE_NS: &str = "http://schemas.microsoft.com/appx/2013/bundle";

    fn read_bytes(b: &[u8]) -> Result<MsixInfo, String> {
        read(std::io::Cursor::new(b.to_vec()))
    }

    #[test]
    fn reads_a_package_and_a_bundle() {
        let m = manifest("Package", PKG_NS, "Contoso.Notes", "1.2.3.0");
        let pkg = zip_of(&[
            ("AppxManifest.xml", m.as_bytes()),
            ("Notes.exe", b"MZ..."),
            ("AppxBlockMap.xml", b"<BlockMap/>"),
        ]);
        let i = read_bytes(&pkg).unwrap();
        assert_eq!(i.name, "Contoso.Notes");
        assert_eq!(i.publisher, MS);
        assert_eq!(i.version, "1.2.3.0");
        assert_eq!(i.family_name, "Contoso.Notes_8wekyb3d8bbwe");
        assert_eq!(i.display_name.as_deref(), Some("Contoso Notes"));
        assert!(!i.bundle);
        let b = manifest("Bundle", BUNDLE_NS, "Contoso.Notes", "1.2.4.0");
        let bundle = zip_of(&[
            ("Contoso.Notes_x64.msix", &pkg),
            ("AppxMetadata/AppxBundleManifest.xml", b.as_bytes()),
        ]);
        let i = read_bytes(&bundle).unwrap();
        assert!(i.bundle);
        assert_eq!(i.version, "1.2.4.0");
        assert_eq!(i.family_name, "Contoso.Notes_8wekyb3d8bbwe");
    }

    #[test]
    fn refuses_malformed_packages() {
        let err = |b: &[u8]| read_bytes(b).unwrap_err();
        assert!(err(b"PK\x03\x04 truncated").contains("ZIP"));
        assert!(err(&zip_of(&[("readme.txt", b"hi")])).contains("AppxManifest.xml"));
        // The wrong root for the file, a DTD, a bad identity.
        let bundle_as_pkg = manifest("Bundle", BUNDLE_NS, "Contoso.Notes", "1.0.0.0");
        assert!(err(&zip_of(&[("AppxManifest.xml", bundle_as_pkg.as_bytes())])).contains("root"));
        let dtd = format!(
            "<!DOCTYPE Package [<!ENTITY x \"y\">]>{}",
            manifest("Package", PKG_NS, "Contoso.Notes", "1.0.0.0")
        );
        assert!(err(&zip_of(&[("AppxManifest.xml", dtd.as_bytes())])).contains("XML"));
        for (name, version) in [
            ("ab", "1.0.0.0"),
            ("Contoso Notes", "1.0.0.0"),
            ("Contoso.Notes", "1.0.0"),
            ("Contoso.Notes", "1.0.0.70000"),
        ] {
            let m = manifest("Package", PKG_NS, name, version);
            assert!(
                read_bytes(&zip_of(&[("AppxManifest.xml", m.as_bytes())])).is_err(),
                "{name} {version}"
            );
        }
        let no_publisher = format!(
            r#"<Package xmlns="{PKG_NS}"><Identity Name="Contoso.Notes" Version="1.0.0.0"/></Package>"#
        );
        assert!(
            err(&zip_of(&[("AppxManifest.xml", no_publisher.as_bytes())])).contains("Publisher")
        );
    }

    #[test]
    fn refuses_an_oversized_manifest_and_a_huge_central_directory() {
        // 4 MiB of blanks deflate to a few KiB: the decompressed size is what counts.
        let mut big = manifest("Package", PKG_NS, "Contoso.Notes", "1.0.0.0").into_bytes();
        big.extend(std::iter::repeat_n(b' ', 4 << 20));
        let z = zip_of(&[("AppxManifest.xml", &big)]);
        assert!(z.len() < 64 * 1024, "{}", z.len());
        let e = read_bytes(&z).unwrap_err();
        assert!(
            e.contains("manifest is") && e.contains("at most 1048576"),
            "{e}"
        );
        // An end record claiming a 4 GiB central directory.
        let mut z = zip_of(&[("AppxManifest.xml", b"<Package/>")]);
        let n = z.len();
        z[n - 10..n - 6].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let e = read_bytes(&z).unwrap_err();
        assert!(e.contains("central directory"), "{e}");
    }

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
