//! Writes the Windows Configuration Designer (WCD) *customizations* XML of a bulk-enrollment
//! provisioning package: the document WCD imports (Advanced provisioning › Import a
//! customizations.xml) and builds into the `.ppkg` a device applies. Pure: no I/O.
//!
//! Sources of each part:
//! - `WindowsCustomizations` / `PackageConfig` (`urn:schemas-Microsoft-com:Windows-ICD-Package-Config.v1.0`)
//!   with `ID` (a GUID in braces), `Name`, `Version` (major.minor), `OwnerType` and `Rank`: the
//!   header WCD writes into every exported `customizations.xml` (Microsoft Learn, "Provisioning
//!   packages" / "Create a provisioning package (advanced)"; `OwnerType` ITAdmin with `Rank` 0 is
//!   what WCD uses for packages built by IT admins).
//! - `Settings` (`urn:schemas-microsoft-com:windows-provisioning`) › `Customizations` › `Common` ›
//!   `Workplace` › `Enrollments` › `UPN UPN="…" Name="…"`: the WCD "Workplace > Enrollments" setting (WCD
//!   reference "Workplace"), which applies the Provisioning CSP node
//!   `./Vendor/MSFT/Provisioning/Enrollments/<UPN>/…` (PROTOCOL.md §1 "Bulk (.ppkg)", Microsoft
//!   Learn "Bulk enrollment using Windows Configuration Designer"):
//!   - `AuthPolicy`: `OnPremise` — the device authenticates with UPN + `Secret` in a WS-Security
//!     UsernameToken (MS-MDE2 §3.3 OnPremise), which is what our enrollment endpoints check;
//!   - `DiscoveryServiceFullUrl`: the discovery endpoint (required; replaces DNS discovery);
//!   - `EnrollmentServiceFullUrl`, `PolicyServiceFullUrl`: the MS-WSTEP / MS-XCEP endpoints
//!     (optional in the CSP; given so the device need not rely on the discovery answer);
//!
//!   WCD spells these settings `…FullUrl` (WCD reference "Workplace", and the element names in
//!   customizations.xml files WCD exports), while the Provisioning CSP node it writes is
//!   `…FullURL`; the file must use WCD's spelling. WCD also writes the UPN both as the `UPN` and
//!   the `Name` attribute of the `UPN` element, and so do we.
//!   - `Secret`: the password (for `OnPremise`; a certificate thumbprint for `Certificate`).

use crate::xml::XmlWriter;

/// Namespace of the `PackageConfig` header.
pub const PACKAGE_CONFIG_NS: &str = "urn:schemas-Microsoft-com:Windows-ICD-Package-Config.v1.0";
/// Namespace of `Settings`.
pub const PROVISIONING_NS: &str = "urn:schemas-microsoft-com:windows-provisioning";

/// Everything the customizations document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkPackage<'a> {
    /// Package GUID without braces (lower-case hex with dashes).
    pub guid: &'a str,
    /// Package name shown in WCD and on the device.
    pub name: &'a str,
    /// `major.minor`.
    pub version: &'a str,
    /// The bulk-enrollment account.
    pub upn: &'a str,
    /// Its enrollment secret (password).
    pub secret: &'a str,
    /// Full discovery URL.
    pub discovery_url: &'a str,
    /// Full MS-XCEP policy URL.
    pub policy_url: &'a str,
    /// Full MS-WSTEP enrollment URL.
    pub enrollment_url: &'a str,
}

/// The customizations XML (UTF-8, with declaration).
pub fn customizations_xml(p: &BulkPackage) -> String {
    let mut w = XmlWriter::new();
    w.decl();
    w.open("WindowsCustomizations", &[]);
    w.open("PackageConfig", &[("xmlns", PACKAGE_CONFIG_NS)]);
    w.leaf("ID", &[], &format!("{{{}}}", p.guid));
    w.leaf("Name", &[], p.name);
    w.leaf("Version", &[], p.version);
    w.leaf("OwnerType", &[], "ITAdmin");
    w.leaf("Rank", &[], "0");
    w.close("PackageConfig");
    w.open("Settings", &[("xmlns", PROVISIONING_NS)]);
    w.open("Customizations", &[]);
    w.open("Common", &[]);
    w.open("Workplace", &[]);
    w.open("Enrollments", &[]);
    w.open("UPN", &[("UPN", p.upn), ("Name", p.upn)]);
    w.leaf("AuthPolicy", &[], "OnPremise");
    w.leaf("DiscoveryServiceFullUrl", &[], p.discovery_url);
    w.leaf("EnrollmentServiceFullUrl", &[], p.enrollment_url);
    w.leaf("PolicyServiceFullUrl", &[], p.policy_url);
    w.leaf("Secret", &[], p.secret);
    w.close("UPN");
    w.close("Enrollments");
    w.close("Workplace");
    w.close("Common");
    w.close("Customizations");
    w.close("Settings");
    w.close("WindowsCustomizations");
    w.finish()
}

/// A random (version 4) GUID, lower-case, without braces.
pub fn random_guid() -> String {
    let h = crate::clock::random_hex(16);
    let mut b: Vec<char> = h.chars().collect();
    b[12] = '4';
    // Variant 10xx: the first hex digit of the fourth group is 8, 9, a or b.
    b[16] = match b[16].to_digit(16).unwrap_or(0) & 0x3 {
        0 => '8',
        1 => '9',
        2 => 'a',
        _ => 'b',
    };
    let s: String = b.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_shape_and_escaping() {
        let xml = customizations_xml(&BulkPackage {
            guid: "0f8fad5b-d9cb-469f-a165-70867728950e",
            name: "pkg <1>",
            version: "1.0",
            upn: "windows-bulkenroll@contoso.com",
            secret: "a&b\"c",
            discovery_url: "https://mdm.contoso.com/EnrollmentServer/Discovery.svc",
            policy_url: "https://mdm.contoso.com/EnrollmentServer/Policy.svc",
            enrollment_url: "https://mdm.contoso.com/EnrollmentServer/Enrollment.svc",
        });
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "WindowsCustomizations");
        let pc = root
            .children()
            .find(|n| n.has_tag_name((PACKAGE_CONFIG_NS, "PackageConfig")))
            .unwrap();
        let text = |parent: roxmltree::Node, ns: &str, name: &str| {
            parent
                .children()
                .find(|n| n.has_tag_name((ns, name)))
                .and_then(|n| n.text())
                .map(str::to_string)
        };
        assert_eq!(
            text(pc, PACKAGE_CONFIG_NS, "ID").as_deref(),
            Some("{0f8fad5b-d9cb-469f-a165-70867728950e}")
        );
        assert_eq!(
            text(pc, PACKAGE_CONFIG_NS, "Name").as_deref(),
            Some("pkg <1>")
        );
        assert_eq!(
            text(pc, PACKAGE_CONFIG_NS, "OwnerType").as_deref(),
            Some("ITAdmin")
        );
        assert_eq!(text(pc, PACKAGE_CONFIG_NS, "Rank").as_deref(), Some("0"));
        let upn = doc
            .descendants()
            .find(|n| n.has_tag_name((PROVISIONING_NS, "UPN")))
            .unwrap();
        let path: Vec<&str> = upn
            .ancestors()
            .skip(1)
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name())
            .collect();
        assert_eq!(
            path,
            [
                "Enrollments",
                "Workplace",
                "Common",
                "Customizations",
                "Settings",
                "WindowsCustomizations"
            ]
        );
        assert_eq!(
            upn.attribute("Name"),
            Some("windows-bulkenroll@contoso.com")
        );
        assert_eq!(upn.attribute("UPN"), upn.attribute("Name"));
        assert_eq!(
            text(upn, PROVISIONING_NS, "AuthPolicy").as_deref(),
            Some("OnPremise")
        );
        assert_eq!(
            text(upn, PROVISIONING_NS, "Secret").as_deref(),
            Some("a&b\"c")
        );
        assert!(text(upn, PROVISIONING_NS, "DiscoveryServiceFullUrl")
            .unwrap()
            .ends_with("/EnrollmentServer/Discovery.svc"));
    }

    #[test]
    fn guids_are_v4() {
        for _ in 0..50 {
            let g = random_guid();
            assert_eq!(g.len(), 36);
            assert_eq!(&g[14..15], "4");
            assert!("89ab".contains(&g[19..20]), "{g}");
        }
        assert_ne!(random_guid(), random_guid());
    }
}
