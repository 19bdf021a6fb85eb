//! What winmdm reads from an MSI: the Property table's ProductCode, ProductVersion,
//! ProductName, Manufacturer and UpgradeCode, through the `msi` crate (which parses the
//! compound file and the database's string pool).

use std::io::{Read, Seek};

/// The identity of an MSI package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsiInfo {
    /// `ProductCode`: `{GUID}`, upper-case.
    pub product_code: String,
    /// `ProductVersion` (`major.minor.build`).
    pub product_version: String,
    /// `ProductName`.
    pub product_name: String,
    /// `Manufacturer`, if set.
    pub manufacturer: Option<String>,
    /// `UpgradeCode`, if set.
    pub upgrade_code: Option<String>,
}

/// Longest property value kept.
const MAX_VALUE: usize = 256;

/// Normalises a `{GUID}` (braces, 8-4-4-4-12 hex digits) to upper case; `None` if not one.
pub fn guid(s: &str) -> Option<String> {
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let groups: Vec<&str> = inner.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    (groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit())))
    .then(|| format!("{{{}}}", inner.to_ascii_uppercase()))
}

/// Whether `v` is an MSI ProductVersion: `major.minor[.build[.revision]]`, each numeric
/// (major, minor < 256, build < 65536).
pub fn valid_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Compares two ProductVersions field by field (Windows Installer compares the first three).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let f = |v: &str| -> Vec<u32> {
        v.split('.')
            .take(3)
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (mut x, mut y) = (f(a), f(b));
    x.resize(3, 0);
    y.resize(3, 0);
    x.cmp(&y)
}

/// Reads the package identity; the error says why the file is not a usable MSI. A panic of the
/// parser on a hostile file is caught and reported as an invalid package.
pub fn read<R: Read + Seek>(r: R) -> Result<MsiInfo, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_inner(r))).unwrap_or_else(|_| {
        tracing::warn!("the MSI parser panicked on an uploaded file");
        Err("not an MSI package (the parser gave up on it)".into())
    })
}

fn read_inner<R: Read + Seek>(r: R) -> Result<MsiInfo, String> {
    let mut pkg = msi::Package::open(r).map_err(|e| format!("not an MSI package: {e}"))?;
    if !pkg.has_table("Property") {
        return Err("the MSI has no Property table".into());
    }
    let rows = pkg
        .select_rows(msi::Select::table("Property"))
        .map_err(|e| format!("reading the Property table: {e}"))?;
    let (mut code, mut version, mut name, mut manufacturer, mut upgrade) =
        (None, None, None, None, None);
    for row in rows {
        if row.len() < 2 {
            return Err("the MSI's Property table has fewer than 2 columns".into());
        }
        let (msi::Value::Str(k), msi::Value::Str(v)) = (&row[0], &row[1]) else {
            continue;
        };
        let v: String = v.chars().take(MAX_VALUE).collect();
        match k.as_str() {
            "ProductCode" => code = Some(v),
            "ProductVersion" => version = Some(v),
            "ProductName" => name = Some(v),
            "Manufacturer" => manufacturer = Some(v),
            "UpgradeCode" => upgrade = Some(v),
            _ => {}
        }
    }
    let code = code.ok_or("the MSI has no ProductCode property")?;
    let product_code =
        guid(&code).ok_or_else(|| format!("the MSI's ProductCode {code:?} is not a {{GUID}}"))?;
    let product_version = version.ok_or("the MSI has no ProductVersion property")?;
    if !valid_version(&product_version) {
        return Err(format!(
            "the MSI's ProductVersion {product_version:?} is not major.minor.build"
        ));
    }
    Ok(MsiInfo {
        product_code,
        product_version,
        product_name: name.unwrap_or_default(),
        manufacturer,
        upgrade_code: upgrade.as_deref().and_then(guid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] = include_bytes!("../../protocol-fixtures/apps/winmdm-test-1.0.0.msi");

    #[test]
    fn reads_the_fixture_built_by_wixl() {
        let i = read(std::io::Cursor::new(FIXTURE)).unwrap();
        assert_eq!(i.product_code, "{6F7CB29F-1319-4816-B345-0856916EB801}");
        assert_eq!(i.product_version, "1.0.0");
        assert_eq!(i.product_name, "winmdm test app");
        assert_eq!(i.manufacturer.as_deref(), Some("winmdm tests"));
        assert_eq!(
            i.upgrade_code.as_deref(),
            Some("{2C9B1B0A-5D44-4C1E-9E1A-6A3F0E1D7C11}")
        );
    }

    #[test]
    fn refuses_what_is_not_an_msi() {
        assert!(read(std::io::Cursor::new(b"MZ not an msi".to_vec())).is_err());
        // A truncated compound file.
        assert!(read(std::io::Cursor::new(FIXTURE[..2048].to_vec())).is_err());
    }

    #[test]
    fn guids_and_versions() {
        assert_eq!(
            guid("{6f7cb29f-1319-4816-b345-0856916eb801}").as_deref(),
            Some("{6F7CB29F-1319-4816-B345-0856916EB801}")
        );
        assert!(guid("6F7CB29F-1319-4816-B345-0856916EB801").is_none());
        assert!(guid("{6F7CB29F-1319-4816-B345-0856916EB80}").is_none());
        assert!(valid_version("1.2.3") && !valid_version("1") && !valid_version("1.x"));
        assert!(compare_versions("1.10.0", "1.9.9").is_gt());
        assert!(compare_versions("1.0.0.5", "1.0.0").is_eq());
    }
}
