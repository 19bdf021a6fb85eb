//! The `wap-provisioningdoc` returned inside the RSTR (MS-MDE2 §2.2.9, PROTOCOL.md §4
//! "Provisioning document").
//!
//! Owns: building the document from already-computed values. Pure and deterministic: the same
//! [`ProvisioningDoc`] always gives the same bytes (golden-tested). Must not: compute
//! thumbprints, touch certificates beyond base64-encoding the DER given, read clocks or do I/O.
//!
//! Contents (names are case-sensitive; w7 parms upper-case):
//! * `CertificateStore/Root/System/<root SHA-1>/EncodedCertificate`, and
//!   `CertificateStore/CA/System/<intermediate SHA-1>/EncodedCertificate` when the issuing CA is
//!   an intermediate;
//! * `CertificateStore/My/{User|System}/<cert SHA-1>/EncodedCertificate` + `PrivateKeyContainer`;
//! * `CertificateStore/My/WSTEP/Renew/…` only when [`ProvisioningDoc::renew`] is `Some`;
//! * `APPLICATION` (w7, MS-MDE2 §2.2.9.5): APPID, PROVIDER-ID, NAME, ADDR, retry/back-off,
//!   BACKCOMPATRETRYDISABLED, DEFAULTENCODING (XML, not WBXML), SSLCLIENTCERTSEARCHCRITERIA
//!   and the formally required APPAUTH CLIENT/DIGEST and APPSRV/BASIC entries (unused with TLS
//!   client certificates);
//! * `DMClient/Provider/<PROVIDER-ID>`: EntDMID, EntDeviceName, UPN, `Poll`.

use base64::Engine as _;

use super::enroll::EnrollmentType;
use crate::xml::XmlWriter;

/// Where the device stores its MDM client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStore {
    /// `My/User` (EnrollmentType `Full`).
    MyUser,
    /// `My/System` (EnrollmentType `Device`).
    MySystem,
}

impl CertStore {
    /// Store for an enrollment type: Full → `My/User`, Device → `My/System`.
    pub fn for_enrollment(t: EnrollmentType) -> Self {
        match t {
            EnrollmentType::Full => CertStore::MyUser,
            EnrollmentType::Device => CertStore::MySystem,
        }
    }

    fn characteristic(self) -> &'static str {
        match self {
            CertStore::MyUser => "User",
            CertStore::MySystem => "System",
        }
    }

    /// `Stores=` value of SSLCLIENTCERTSEARCHCRITERIA, URI-escaped (`My%5CUser`).
    fn search_store(self) -> &'static str {
        match self {
            CertStore::MyUser => "My%5CUser",
            CertStore::MySystem => "My%5CSystem",
        }
    }
}

/// DMClient `Poll` schedule in minutes (DMClient CSP; PROTOCOL.md §7). Note the CSP's rules:
/// `IntervalForRemainingScheduledRetries` must be ≥ 1440 (or 0 = off) and at most one schedule
/// may be infinite (count 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSchedule {
    /// `IntervalForFirstSetOfRetries`.
    pub first_interval: u32,
    /// `NumberOfFirstRetries` (never 0).
    pub first_count: u32,
    /// `IntervalForSecondSetOfRetries`.
    pub second_interval: u32,
    /// `NumberOfSecondRetries`.
    pub second_count: u32,
    /// `IntervalForRemainingScheduledRetries` (≥ 1440).
    pub remaining_interval: u32,
    /// `NumberOfRemainingScheduledRetries` (0 = infinite).
    pub remaining_count: u32,
    /// `PollOnLogin`.
    pub poll_on_login: bool,
}

impl Default for PollSchedule {
    /// PROTOCOL.md §4 skeleton: every 3 min ×10, then every 15 min ×8 (first ~2.5 h after
    /// enrollment, when commands are most likely queued), then daily forever; poll on login.
    fn default() -> Self {
        PollSchedule {
            first_interval: 3,
            first_count: 10,
            second_interval: 15,
            second_count: 8,
            remaining_interval: 1440,
            remaining_count: 0,
            poll_on_login: true,
        }
    }
}

/// `CertificateStore/My/WSTEP/Renew` settings (CertificateStore CSP; PROTOCOL.md §7), written
/// when certificate renewal is enabled (`mdm::renew::renew_block`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewConfig {
    /// `ServerURL` (renewal endpoint), when it differs from the enrollment URL.
    pub server_url: Option<String>,
    /// `RenewPeriod`: days before expiry to start renewing (1–1000).
    pub renew_period_days: u32,
    /// `RetryInterval` in days.
    pub retry_interval_days: u32,
    /// `ROBOSupport`.
    pub robo_support: bool,
}

/// Everything the provisioning document contains; thumbprints and subject are computed by
/// the caller (the CA).
#[derive(Debug, Clone)]
pub struct ProvisioningDoc<'a> {
    /// DER of the enrollment root CA.
    pub root_ca_der: &'a [u8],
    /// Hex SHA-1 of `root_ca_der` (written upper-case whatever the input case).
    pub root_thumbprint: &'a str,
    /// The issuing CA when it is an intermediate below `root_ca_der`: (DER, hex SHA-1),
    /// installed under `CertificateStore/CA/System` (MS-MDE2 §2.2.9: one root and one
    /// intermediate at most in this document).
    pub intermediate_ca: Option<(&'a [u8], &'a str)>,
    /// DER of the issued client certificate.
    pub client_cert_der: &'a [u8],
    /// Hex SHA-1 of `client_cert_der` (written upper-case whatever the input case).
    pub client_thumbprint: &'a str,
    /// `My/User` or `My/System`.
    pub cert_store: CertStore,
    /// w7 `PROVIDER-ID` = DMClient `Provider/<id>`.
    pub provider_id: &'a str,
    /// w7 `NAME` (shown in Settings).
    pub name: &'a str,
    /// w7 `ADDR`: the management (OMA-DM) URL.
    pub mgmt_url: &'a str,
    /// Issued certificate subject as an RFC 4514 string, e.g. `CN=1E08C6E9…`.
    pub client_cert_subject: &'a str,
    /// DMClient `Poll`.
    pub poll: PollSchedule,
    /// DMClient `EntDMID` (our device id).
    pub ent_dmid: &'a str,
    /// DMClient `EntDeviceName`.
    pub ent_device_name: Option<&'a str>,
    /// DMClient `UPN`.
    pub upn: Option<&'a str>,
    /// `WSTEP/Renew` block; `None` omits it.
    pub renew: Option<RenewConfig>,
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parm(w: &mut XmlWriter, name: &str, value: &str) {
    w.empty("parm", &[("name", name), ("value", value)]);
}

fn typed(w: &mut XmlWriter, name: &str, value: &str, datatype: &str) {
    w.empty(
        "parm",
        &[("name", name), ("value", value), ("datatype", datatype)],
    );
}

fn open_c(w: &mut XmlWriter, t: &str) {
    w.open("characteristic", &[("type", t)]);
}

fn close_c(w: &mut XmlWriter) {
    w.close("characteristic");
}

/// `CertificateStore/My/WSTEP/Renew` (inside `My`). Every parm carries its datatype (the
/// docs: "if the datatype … exist[s], they must be set explicitly").
fn wstep_renew(w: &mut XmlWriter, r: &RenewConfig) {
    open_c(w, "WSTEP");
    open_c(w, "Renew");
    if let Some(url) = &r.server_url {
        typed(w, "ServerURL", url, "string");
    }
    typed(
        w,
        "ROBOSupport",
        if r.robo_support { "true" } else { "false" },
        "boolean",
    );
    typed(
        w,
        "RenewPeriod",
        &r.renew_period_days.to_string(),
        "integer",
    );
    typed(
        w,
        "RetryInterval",
        &r.retry_interval_days.to_string(),
        "integer",
    );
    close_c(w);
    close_c(w);
}

/// The document of a renewal response (MS-MDE2 §3.5; Microsoft's "certificate renewal"
/// example): only `CertificateStore/My/{User|System}/<new SHA-1>/EncodedCertificate` +
/// `PrivateKeyContainer` (the key the device generated for the renewal request), and the
/// `WSTEP/Renew` block when given, so the device's schedule follows the server's settings. No
/// root (unchanged), no w7 `APPLICATION` (the DM account stays as it is).
#[derive(Debug, Clone)]
pub struct RenewalDoc<'a> {
    /// DER of the new client certificate.
    pub client_cert_der: &'a [u8],
    /// Hex SHA-1 of it (written upper-case).
    pub client_thumbprint: &'a str,
    /// `My/User` or `My/System`, as at enrollment.
    pub cert_store: CertStore,
    /// `WSTEP/Renew` block; `None` omits it.
    pub renew: Option<RenewConfig>,
}

/// Build a renewal response document (UTF-8, with XML declaration, no indentation).
pub fn build_renewal(doc: &RenewalDoc<'_>) -> String {
    let mut w = XmlWriter::new();
    w.decl();
    w.open("wap-provisioningdoc", &[("version", "1.1")]);
    open_c(&mut w, "CertificateStore");
    my_store(
        &mut w,
        doc.cert_store,
        doc.client_thumbprint,
        doc.client_cert_der,
        doc.renew.as_ref(),
    );
    close_c(&mut w); // CertificateStore
    w.close("wap-provisioningdoc");
    w.finish()
}

/// `My/{User|System}/<SHA-1>/EncodedCertificate` + `PrivateKeyContainer`, and the
/// `WSTEP/Renew` block when given: the client-certificate part of both documents.
fn my_store(
    w: &mut XmlWriter,
    store: CertStore,
    thumbprint: &str,
    cert_der: &[u8],
    renew: Option<&RenewConfig>,
) {
    let b64 = base64::engine::general_purpose::STANDARD;
    open_c(w, "My");
    open_c(w, store.characteristic());
    open_c(w, &thumbprint.to_ascii_uppercase());
    parm(w, "EncodedCertificate", &b64.encode(cert_der));
    close_c(w);
    w.empty("characteristic", &[("type", "PrivateKeyContainer")]);
    close_c(w);
    if let Some(r) = renew {
        wstep_renew(w, r);
    }
    close_c(w); // My
}

/// Build the provisioning document (UTF-8, with XML declaration, no indentation).
pub fn build(doc: &ProvisioningDoc<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut w = XmlWriter::new();
    w.decl();
    w.open("wap-provisioningdoc", &[("version", "1.1")]);

    open_c(&mut w, "CertificateStore");
    open_c(&mut w, "Root");
    open_c(&mut w, "System");
    open_c(&mut w, &doc.root_thumbprint.to_ascii_uppercase());
    parm(&mut w, "EncodedCertificate", &b64.encode(doc.root_ca_der));
    close_c(&mut w);
    close_c(&mut w);
    close_c(&mut w);
    if let Some((der, thumb)) = doc.intermediate_ca {
        open_c(&mut w, "CA");
        open_c(&mut w, "System");
        open_c(&mut w, &thumb.to_ascii_uppercase());
        parm(&mut w, "EncodedCertificate", &b64.encode(der));
        close_c(&mut w);
        close_c(&mut w);
        close_c(&mut w);
    }
    my_store(
        &mut w,
        doc.cert_store,
        doc.client_thumbprint,
        doc.client_cert_der,
        doc.renew.as_ref(),
    );
    close_c(&mut w); // CertificateStore

    open_c(&mut w, "APPLICATION");
    parm(&mut w, "APPID", "w7");
    parm(&mut w, "PROVIDER-ID", doc.provider_id);
    parm(&mut w, "NAME", doc.name);
    parm(&mut w, "ADDR", doc.mgmt_url);
    parm(&mut w, "CONNRETRYFREQ", "6");
    parm(&mut w, "INITIALBACKOFFTIME", "30000");
    parm(&mut w, "MAXBACKOFFTIME", "120000");
    w.empty("parm", &[("name", "BACKCOMPATRETRYDISABLED")]);
    parm(&mut w, "DEFAULTENCODING", "application/vnd.syncml.dm+xml");
    let criteria = format!(
        "Subject={}&Stores={}",
        uri_escape(doc.client_cert_subject),
        doc.cert_store.search_store()
    );
    parm(&mut w, "SSLCLIENTCERTSEARCHCRITERIA", &criteria);
    open_c(&mut w, "APPAUTH");
    parm(&mut w, "AAUTHLEVEL", "CLIENT");
    parm(&mut w, "AAUTHTYPE", "DIGEST");
    parm(&mut w, "AAUTHSECRET", "dummy");
    parm(&mut w, "AAUTHDATA", "bm9uY2U=");
    close_c(&mut w);
    open_c(&mut w, "APPAUTH");
    parm(&mut w, "AAUTHLEVEL", "APPSRV");
    parm(&mut w, "AAUTHTYPE", "BASIC");
    parm(&mut w, "AAUTHNAME", "dummy");
    parm(&mut w, "AAUTHSECRET", "dummy");
    close_c(&mut w);
    close_c(&mut w); // APPLICATION

    open_c(&mut w, "DMClient");
    open_c(&mut w, "Provider");
    open_c(&mut w, doc.provider_id);
    typed(&mut w, "EntDMID", doc.ent_dmid, "string");
    if let Some(n) = doc.ent_device_name {
        typed(&mut w, "EntDeviceName", n, "string");
    }
    if let Some(u) = doc.upn {
        typed(&mut w, "UPN", u, "string");
    }
    let p = &doc.poll;
    open_c(&mut w, "Poll");
    for (name, v) in [
        ("IntervalForFirstSetOfRetries", p.first_interval),
        ("NumberOfFirstRetries", p.first_count),
        ("IntervalForSecondSetOfRetries", p.second_interval),
        ("NumberOfSecondRetries", p.second_count),
        ("IntervalForRemainingScheduledRetries", p.remaining_interval),
        ("NumberOfRemainingScheduledRetries", p.remaining_count),
    ] {
        typed(&mut w, name, &v.to_string(), "integer");
    }
    typed(
        &mut w,
        "PollOnLogin",
        if p.poll_on_login { "true" } else { "false" },
        "boolean",
    );
    close_c(&mut w); // Poll
    close_c(&mut w); // <provider>
    close_c(&mut w); // Provider
    close_c(&mut w); // DMClient

    w.close("wap-provisioningdoc");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_upper_cased() {
        let doc = build(&ProvisioningDoc {
            root_ca_der: b"r",
            root_thumbprint: "abcdef0123456789abcdef0123456789abcdef01",
            intermediate_ca: None,
            client_cert_der: b"c",
            client_thumbprint: "fedcba9876543210fedcba9876543210fedcba98",
            cert_store: CertStore::MyUser,
            provider_id: "P",
            name: "N",
            mgmt_url: "https://x/",
            client_cert_subject: "CN=x",
            poll: PollSchedule::default(),
            ent_dmid: "x",
            ent_device_name: None,
            upn: None,
            renew: None,
        });
        assert!(doc.contains("\"ABCDEF0123456789ABCDEF0123456789ABCDEF01\""));
        assert!(doc.contains("\"FEDCBA9876543210FEDCBA9876543210FEDCBA98\""));
        assert!(!doc.contains("EntDeviceName") && !doc.contains("\"UPN\""));
    }

    #[test]
    fn renewal_doc_holds_only_the_new_certificate() {
        let doc = build_renewal(&RenewalDoc {
            client_cert_der: b"c",
            client_thumbprint: "ab",
            cert_store: CertStore::MySystem,
            renew: Some(RenewConfig {
                server_url: None,
                renew_period_days: 42,
                retry_interval_days: 7,
                robo_support: true,
            }),
        });
        assert!(doc.contains(r#"<characteristic type="My"><characteristic type="System"><characteristic type="AB"><parm name="EncodedCertificate" value="Yw=="/></characteristic><characteristic type="PrivateKeyContainer"/></characteristic><characteristic type="WSTEP"><characteristic type="Renew"><parm name="ROBOSupport" value="true" datatype="boolean"/><parm name="RenewPeriod" value="42" datatype="integer"/><parm name="RetryInterval" value="7" datatype="integer"/></characteristic></characteristic></characteristic>"#), "{doc}");
        assert!(!doc.contains("Root") && !doc.contains("APPLICATION") && !doc.contains("DMClient"));
    }

    #[test]
    fn uri_escape_subject() {
        assert_eq!(uri_escape("CN=ab 1,O=x&y"), "CN%3Dab%201%2CO%3Dx%26y");
    }

    #[test]
    fn default_poll_is_valid_for_dmclient() {
        let p = PollSchedule::default();
        assert!(p.remaining_interval >= 1440);
        assert!(p.first_count > 0);
        let infinite = [
            (p.second_interval, p.second_count),
            (p.remaining_interval, p.remaining_count),
        ]
        .iter()
        .filter(|(i, c)| *i > 0 && *c == 0)
        .count();
        assert!(infinite <= 1);
    }
}
