//! The CA itself: generate / load, and issue device and TLS server certificates.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration as StdDuration;

use rcgen::{
    string::PrintableString, BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, NameConstraints, PublicKeyData, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{check_device_id, hex_lower, thumbprint, CaError, CsrVerified, KeyAlgorithm};

/// Validity of a generated CA certificate: ten years.
pub const CA_VALIDITY: Duration = Duration::days(3652);
/// How far a generated CA certificate is backdated (device clocks a little behind).
pub const CA_BACKDATE: Duration = Duration::hours(1);
/// How far issued certificates are backdated: clock skew only, never days.
pub const LEAF_BACKDATE: Duration = Duration::minutes(5);
/// Validity of a TLS server certificate from [`Ca::issue_server_cert`] (under the 398 days
/// browsers and Apple accept).
pub const SERVER_CERT_VALIDITY: Duration = Duration::days(365);

/// The certificate authority: CA certificate, its key, and the rcgen issuer built from them.
///
/// `Send + Sync`; share it behind an `Arc`. `Debug` never prints the key.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    /// The self-signed root above this CA when this CA is an intermediate.
    root_der: Option<Vec<u8>>,
    thumbprint: String,
    not_after: OffsetDateTime,
    /// Certificates whose signature by this CA already verified (see `verified`).
    pub(super) verified: super::verified::VerifiedCerts,
}

/// What [`Ca::generate_constrained`] restricts.
struct CaLimits {
    name_constraints: NameConstraints,
    ekus: Vec<ExtendedKeyUsagePurpose>,
}

/// A device certificate issued by [`Ca::issue_device_cert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// DER certificate (goes base64 into the provisioning document's `EncodedCertificate`).
    pub der: Vec<u8>,
    /// The same certificate as PEM.
    pub pem: String,
    /// Serial number, lower-case hex without colons (32 characters).
    pub serial_hex: String,
    /// Upper-case hex SHA-1 of `der` (the provisioning document's characteristic name).
    pub thumbprint: String,
    /// `CN=<DeviceID>`.
    pub subject: String,
    /// NotBefore as encoded (whole seconds).
    pub not_before: OffsetDateTime,
    /// NotAfter as encoded (whole seconds).
    pub not_after: OffsetDateTime,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("thumbprint", &self.thumbprint)
            .field("not_after", &self.not_after)
            .field("key", &"[secret]")
            .finish()
    }
}

impl Ca {
    /// Generates a new self-signed CA: key of `alg`, subject `CN=<common_name>, O=winmdm`,
    /// BasicConstraints CA:TRUE pathlen 0 (critical), KeyUsage keyCertSign + cRLSign
    /// (critical), SubjectKeyIdentifier, random serial, valid from `now` − 1 hour for ten years.
    pub fn generate(
        alg: KeyAlgorithm,
        common_name: &str,
        now: OffsetDateTime,
    ) -> Result<Ca, CaError> {
        Ca::generate_with(alg, common_name, None, now)
    }

    /// As [`Ca::generate`], but the CA can only vouch for `hosts` (the server's public and
    /// management host names): the certificate carries
    /// * NameConstraints (critical): permitted dNSName = each DNS host, permitted iPAddress =
    ///   each IP host (/32 or /128); every IP address excluded when no host is one, and only the
    ///   reserved name `invalid` permitted when no host is a DNS name;
    /// * ExtendedKeyUsage serverAuth + clientAuth, which CryptoAPI intersects with every
    ///   certificate below it: nothing it issues is trusted for code signing, e-mail, time
    ///   stamping and so on.
    ///
    /// This is the CA the provisioning document installs in every device's machine root store
    /// (`CertificateStore/Root/System`): whoever steals its key can no longer issue a TLS
    /// certificate that enrolled devices trust for another site. Device identity certificates
    /// (`CN=<DeviceID>`, no subjectAltName) carry no name of a constrained type (RFC 5280
    /// applies dNSName constraints to dNSName subjectAltNames only), so they stay valid.
    pub fn generate_constrained(
        alg: KeyAlgorithm,
        common_name: &str,
        hosts: &[String],
        now: OffsetDateTime,
    ) -> Result<Ca, CaError> {
        if hosts.is_empty() {
            return Err(CaError::InvalidHost {
                host: String::new(),
            });
        }
        let mut permitted = Vec::new();
        let (mut dns, mut ip) = (false, false);
        for h in hosts {
            match san_for_host(h)? {
                SanType::DnsName(n) => {
                    dns = true;
                    permitted.push(GeneralSubtree::DnsName(n.as_str().to_owned()));
                }
                SanType::IpAddress(a) => {
                    ip = true;
                    let prefix = if a.is_ipv4() { 32 } else { 128 };
                    permitted.push(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                        a, prefix,
                    )));
                }
                _ => {
                    return Err(CaError::InvalidHost {
                        host: h.chars().take(260).collect(),
                    })
                }
            }
        }
        let mut excluded = Vec::new();
        if !ip {
            excluded.push(GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])));
            excluded.push(GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])));
        }
        if !dns {
            permitted.push(GeneralSubtree::DnsName("invalid".into()));
        }
        let limits = CaLimits {
            name_constraints: NameConstraints {
                permitted_subtrees: permitted,
                excluded_subtrees: excluded,
            },
            ekus: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        Ca::generate_with(alg, common_name, Some(limits), now)
    }

    fn generate_with(
        alg: KeyAlgorithm,
        common_name: &str,
        limits: Option<CaLimits>,
        now: OffsetDateTime,
    ) -> Result<Ca, CaError> {
        let generate = |reason: String| CaError::Generate { reason };
        if common_name.trim().is_empty() {
            return Err(generate("empty common name".into()));
        }
        let key = alg
            .generate_key()
            .map_err(|e| generate(format!("{alg} key: {e}")))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "winmdm");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial().map_err(|e| generate(e.to_string()))?);
        params.not_before = whole_seconds_up(now - CA_BACKDATE);
        params.not_after = whole_seconds_down(now + CA_VALIDITY);
        if let Some(l) = limits {
            params.name_constraints = Some(l.name_constraints);
            params.extended_key_usages = l.ekus;
        }
        let cert = params
            .self_signed(&key)
            .map_err(|e| generate(format!("self-signing: {e}")))?;
        Ca::from_parts(cert.der().to_vec(), key).map_err(|e| generate(e.to_string()))
    }

    /// Loads a CA from PEM: the CA certificate (the first `CERTIFICATE` block of `cert_pem`)
    /// and its private key (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY`; RSA ≥ 2048, EC P-256/P-384). Used at restart, or for an
    /// admin-supplied CA. The certificate must be a CA (BasicConstraints CA:TRUE; KeyUsage, if
    /// present, with keyCertSign) and the key must match its public key; otherwise
    /// [`CaError::Load`].
    ///
    /// The CA may be an intermediate: then `cert_pem` must hold, after it, the self-signed root
    /// that issued it (a bundle, CA first). The provisioning document installs the root under
    /// `CertificateStore/Root/System` and the intermediate under `CertificateStore/CA/System`;
    /// MS-MDE2 allows one root and one intermediate there, so a deeper chain, a bundle whose
    /// second certificate did not issue the first, or an intermediate without its root is
    /// refused with [`CaError::Load`] saying what to fix.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CaError> {
        let load = |reason: String| CaError::Load { reason };
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| load(format!("certificate PEM: {e}")))?;
        let Some(cert) = certs.first() else {
            return Err(load("certificate PEM: no CERTIFICATE block".into()));
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| load(format!("private key: {e}")))?;
        let mut ca = Ca::from_parts(cert.to_vec(), key)?;
        ca.root_der = chain_root(cert, &certs[1..])?;
        Ok(ca)
    }

    fn from_parts(cert_der: Vec<u8>, key: KeyPair) -> Result<Ca, CaError> {
        let load = |reason: &str| CaError::Load {
            reason: reason.to_owned(),
        };
        let (rest, x509) = X509Certificate::from_der(&cert_der).map_err(|e| CaError::Load {
            reason: format!("certificate DER: {e}"),
        })?;
        if !rest.is_empty() {
            return Err(load("trailing bytes after the certificate"));
        }
        match x509.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {}
            _ => {
                return Err(load(
                    "not a CA certificate (BasicConstraints CA:TRUE missing)",
                ))
            }
        }
        match x509.key_usage() {
            Ok(None) => {}
            Ok(Some(ku)) if ku.value.key_cert_sign() => {}
            _ => return Err(load("KeyUsage does not allow keyCertSign")),
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(load("private key does not match the certificate"));
        }
        // rcgen's Issuer panics on an empty RDN and refuses multi-valued ones: check first.
        if x509.subject().iter().any(|rdn| rdn.iter().count() != 1) {
            return Err(load("subject has an empty or multi-valued RDN"));
        }
        let not_after = x509.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.as_slice()), key)
            .map_err(|e| CaError::Load {
                reason: format!("issuer: {e}"),
            })?;
        Ok(Ca {
            thumbprint: thumbprint(&cert_der),
            issuer,
            cert_der,
            root_der: None,
            not_after,
            verified: Default::default(),
        })
    }

    /// The root to install under `CertificateStore/Root/System`: this CA when it is
    /// self-signed, else the root given after it in the `--ca-cert` bundle (DER).
    pub fn root_der(&self) -> &[u8] {
        self.root_der.as_deref().unwrap_or(&self.cert_der)
    }

    /// This CA's certificate when it is an intermediate (install it under
    /// `CertificateStore/CA/System`), `None` when it is its own root.
    pub fn intermediate_der(&self) -> Option<&[u8]> {
        self.root_der.as_ref().map(|_| self.cert_der.as_slice())
    }

    /// Whether a TLS certificate for `host` issued by this CA satisfies the CA's own name
    /// constraints (always `true` for an unconstrained CA). Checked before the server issues
    /// itself a TLS certificate, so a constrained CA made for another host name is noticed at
    /// start instead of by every client.
    pub fn permits_host(&self, host: &str) -> bool {
        use x509_parser::extensions::GeneralName;
        let Ok(x509) = self.issuer_cert() else {
            return false;
        };
        let nc = match x509.name_constraints() {
            Ok(Some(nc)) => nc.value.clone(),
            Ok(None) => return true,
            Err(_) => return false,
        };
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip = literal.parse::<IpAddr>().ok();
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let matches = |g: &GeneralName<'_>| match (g, ip) {
            (GeneralName::DNSName(c), None) => {
                let c = c.trim_start_matches('.').to_ascii_lowercase();
                name == c || name.ends_with(&format!(".{c}"))
            }
            (GeneralName::IPAddress(b), Some(a)) => ip_in(a, b),
            _ => false,
        };
        let same_type = |g: &GeneralName<'_>| {
            matches!(
                (g, ip),
                (GeneralName::DNSName(_), None) | (GeneralName::IPAddress(_), Some(_))
            )
        };
        let excluded = nc
            .excluded_subtrees
            .iter()
            .flatten()
            .any(|s| matches(&s.base));
        let permitted = nc.permitted_subtrees.as_ref().is_none_or(|p| {
            !p.iter().any(|s| same_type(&s.base)) || p.iter().any(|s| matches(&s.base))
        });
        !excluded && permitted
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    /// The CA private key as PKCS#8 PEM. **Secret: persist it with restrictive permissions,
    /// never log it.**
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Upper-case hex SHA-1 of the CA certificate (the provisioning document's
    /// `CertificateStore/Root/System/<thumbprint>` name).
    pub fn thumbprint(&self) -> String {
        self.thumbprint.clone()
    }

    /// NotAfter of the CA certificate; issued certificates never outlive it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Issues the device identity certificate for a verified request: `CN=<device_id>`, the
    /// request's public key byte for byte, and the profile in the [module docs](super).
    ///
    /// `device_id` must pass the subject checks ([`CaError::InvalidDeviceId`]) and, when the
    /// request carries the Windows DeviceID extension, equal it ignoring ASCII case
    /// ([`CaError::DeviceIdMismatch`]). NotBefore is `now` − 5 minutes, NotAfter is
    /// `now + validity`, clamped to the CA's NotAfter ([`CaError::InvalidValidity`] if
    /// `validity` is zero or the CA has expired).
    pub fn issue_device_cert(
        &self,
        csr: &CsrVerified,
        device_id: &str,
        validity: StdDuration,
        now: OffsetDateTime,
    ) -> Result<IssuedCert, CaError> {
        check_device_id(device_id)?;
        if let Some(in_csr) = csr.device_id_ext() {
            if !in_csr.eq_ignore_ascii_case(device_id) {
                return Err(CaError::DeviceIdMismatch {
                    requested: device_id.to_owned(),
                    in_csr: in_csr.to_owned(),
                });
            }
        }
        let (not_before, not_after) = self.leaf_validity(validity, now)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn_value(device_id));
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = if csr.key_algorithm() == "RSA" {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            // An EC key cannot encipher keys.
            vec![KeyUsagePurpose::DigitalSignature]
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial().map_err(|e| CaError::Sign {
            reason: e.to_string(),
        })?;
        let serial_hex = hex_lower(serial.as_ref());
        params.serial_number = Some(serial);
        params.not_before = not_before;
        params.not_after = not_after;

        let cert = params
            .signed_by(csr.rcgen_key(), &self.issuer)
            .map_err(|e| CaError::Sign {
                reason: e.to_string(),
            })?;
        let der = cert.der().to_vec();
        Ok(IssuedCert {
            pem: pem_encode("CERTIFICATE", &der),
            thumbprint: thumbprint(&der),
            serial_hex,
            subject: format!("CN={device_id}"),
            not_before,
            not_after,
            der,
        })
    }

    /// Issues a TLS server certificate for `hosts` (the public URL's host first): a fresh key
    /// of `alg`, subject `CN=<hosts[0]>`, one subjectAltName per host (an IP address for IP
    /// literals, a DNS name otherwise), EKU serverAuth, KeyUsage digitalSignature (+
    /// keyEncipherment for RSA), CA:FALSE, valid from `now` − 5 minutes for one year (clamped
    /// to the CA's NotAfter). Returns `(certificate PEM, PKCS#8 key PEM)`; the certificate PEM
    /// holds the leaf only; append [`Ca::cert_pem`] to serve the chain.
    ///
    /// Windows only trusts this certificate for enrollment if the CA is already in its root
    /// store (the provisioning document installs it only after enrollment): use a public
    /// certificate in production, this one for tests and lab setups.
    pub fn issue_server_cert(
        &self,
        hosts: &[String],
        alg: KeyAlgorithm,
        now: OffsetDateTime,
    ) -> Result<(String, String), CaError> {
        let first = hosts.first().ok_or_else(|| CaError::InvalidHost {
            host: String::new(),
        })?;
        let sans = hosts
            .iter()
            .map(|h| san_for_host(h))
            .collect::<Result<Vec<_>, _>>()?;
        let validity = StdDuration::from_secs(SERVER_CERT_VALIDITY.whole_seconds().unsigned_abs());
        let (not_before, not_after) = self.leaf_validity(validity, now)?;
        let sign = |reason: String| CaError::Sign { reason };
        let key = alg
            .generate_key()
            .map_err(|e| sign(format!("{alg} key: {e}")))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, first.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = if alg.is_rsa() {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial().map_err(|e| sign(e.to_string()))?);
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| sign(e.to_string()))?;
        Ok((pem_encode("CERTIFICATE", cert.der()), key.serialize_pem()))
    }

    /// (NotBefore, NotAfter) for a leaf issued at `now`, in whole seconds.
    fn leaf_validity(
        &self,
        validity: StdDuration,
        now: OffsetDateTime,
    ) -> Result<(OffsetDateTime, OffsetDateTime), CaError> {
        let invalid = |reason: String| CaError::InvalidValidity { reason };
        if validity.is_zero() {
            return Err(invalid("zero validity".into()));
        }
        let validity = Duration::try_from(validity)
            .map_err(|_| invalid(format!("{validity:?} is out of range")))?;
        let not_before = whole_seconds_up(now - LEAF_BACKDATE);
        let wanted = now
            .checked_add(validity)
            .ok_or_else(|| invalid("validity overflows the calendar".into()))?;
        let not_after = whole_seconds_down(wanted.min(self.not_after));
        if now >= self.not_after || not_after <= not_before {
            return Err(invalid(format!("the CA expired at {}", self.not_after)));
        }
        Ok((not_before, not_after))
    }

    pub(super) fn issuer_cert(&self) -> Result<X509Certificate<'_>, CaError> {
        X509Certificate::from_der(&self.cert_der)
            .map(|(_, c)| c)
            .map_err(|e| CaError::Load {
                reason: format!("CA certificate: {e}"),
            })
    }
}

/// `addr` within the constraint `bytes` (address then mask, 8 or 32 bytes).
fn ip_in(addr: IpAddr, bytes: &[u8]) -> bool {
    let a: Vec<u8> = match addr {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    if bytes.len() != 2 * a.len() {
        return false;
    }
    let (net, mask) = bytes.split_at(a.len());
    a.iter()
        .zip(net)
        .zip(mask)
        .all(|((x, n), m)| x & m == n & m)
}

/// For an intermediate CA `cert`, the self-signed root in `rest` that issued it (see
/// [`Ca::from_pem`]); `None` for a self-signed CA.
fn chain_root(
    cert: &CertificateDer<'_>,
    rest: &[CertificateDer<'static>],
) -> Result<Option<Vec<u8>>, CaError> {
    let load = |reason: String| CaError::Load { reason };
    fn parse(d: &[u8]) -> Result<X509Certificate<'_>, CaError> {
        X509Certificate::from_der(d)
            .map(|(_, c)| c)
            .map_err(|e| CaError::Load {
                reason: format!("certificate DER: {e}"),
            })
    }
    let ca = parse(cert)?;
    let self_signed = |c: &X509Certificate<'_>| {
        c.subject().as_raw() == c.issuer().as_raw() && c.verify_signature(None).is_ok()
    };
    if self_signed(&ca) {
        if !rest.is_empty() {
            return Err(load(format!(
                "the CA certificate is self-signed but the file holds {} more certificate(s) after it: give the CA alone",
                rest.len()
            )));
        }
        return Ok(None);
    }
    let Some(root_der) = rest.first() else {
        return Err(load(format!(
            "the CA certificate is not self-signed (issued by {}): append the root CA certificate that issued it to the --ca-cert file (Windows installs one root under CertificateStore/Root/System and this CA under CertificateStore/CA/System)",
            ca.issuer()
        )));
    };
    let root = parse(root_der)?;
    if root.subject().as_raw() != ca.issuer().as_raw()
        || ca.verify_signature(Some(root.public_key())).is_err()
    {
        return Err(load(format!(
            "the second certificate of --ca-cert ({}) did not issue the CA (issued by {})",
            root.subject(),
            ca.issuer()
        )));
    }
    if !self_signed(&root) {
        return Err(load(format!(
            "the CA's issuer ({}) is not a self-signed root: the provisioning document can install one root and one intermediate only, so use a CA directly below the root",
            root.subject()
        )));
    }
    if rest.len() > 1 {
        return Err(load(format!(
            "--ca-cert holds {} certificates after the CA: give the CA and its root only",
            rest.len()
        )));
    }
    match root.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        _ => return Err(load("the root certificate is not a CA".into())),
    }
    Ok(Some(root_der.to_vec()))
}

/// 16 random bytes, top bit clear (positive) and second bit set (so the DER INTEGER is always
/// exactly 16 bytes): 126 bits of entropy.
fn random_serial() -> Result<SerialNumber, aws_lc_rs::error::Unspecified> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b)?;
    b[0] = (b[0] & 0x3f) | 0x40;
    Ok(SerialNumber::from_slice(&b))
}

/// The subject CN as a PrintableString whenever `value` fits that alphabet (every Windows
/// DeviceID does), else a UTF8String. Known-good MDM client certificates (Windows' own CSR
/// subjects, the certificates other MDM servers issue) use PrintableString, CryptoAPI's default
/// string type; if the DM client compares encoded names when it looks up
/// `SSLCLIENTCERTSEARCHCRITERIA=Subject=CN%3D<DeviceID>`, this is the encoding it expects.
pub(crate) fn cn_value(value: &str) -> DnValue {
    match PrintableString::try_from(value) {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(value.to_owned()),
    }
}

fn san_for_host(host: &str) -> Result<SanType, CaError> {
    let bad = || CaError::InvalidHost {
        host: host.chars().take(260).collect(),
    };
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(bad());
    }
    let ia5 = name.to_ascii_lowercase().try_into().map_err(|_| bad())?;
    Ok(SanType::DnsName(ia5))
}

fn whole_seconds_down(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn whole_seconds_up(t: OffsetDateTime) -> OffsetDateTime {
    if t.nanosecond() == 0 {
        t
    } else {
        whole_seconds_down(t) + Duration::SECOND
    }
}

/// PEM with 64-column base64 lines and a trailing newline.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    s.push_str("-----BEGIN ");
    s.push_str(label);
    s.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str("-----END ");
    s.push_str(label);
    s.push_str("-----\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_shape() {
        for _ in 0..64 {
            let s = random_serial().unwrap();
            let b = s.to_bytes();
            assert_eq!(b.len(), 16);
            assert_eq!(b[0] & 0xc0, 0x40);
        }
    }

    #[test]
    fn hosts() {
        assert!(matches!(
            san_for_host("mdm.example.com"),
            Ok(SanType::DnsName(_))
        ));
        assert!(matches!(
            san_for_host("Localhost."),
            Ok(SanType::DnsName(_))
        ));
        assert!(matches!(
            san_for_host("10.0.0.1"),
            Ok(SanType::IpAddress(_))
        ));
        assert!(matches!(san_for_host("[::1]"), Ok(SanType::IpAddress(_))));
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a b",
            "mdm.example.com:443",
            "*.example.com",
        ] {
            assert!(
                matches!(san_for_host(bad), Err(CaError::InvalidHost { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn seconds_rounding() {
        let s = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let t = s + Duration::milliseconds(500);
        assert_eq!(whole_seconds_down(t), s);
        assert_eq!(whole_seconds_up(t), s + Duration::SECOND);
        assert_eq!(whole_seconds_up(s), s);
    }

    #[test]
    fn pem_lines() {
        let p = pem_encode("X", &[0u8; 100]);
        assert!(p.starts_with("-----BEGIN X-----\n"));
        assert!(p.ends_with("-----END X-----\n"));
        assert!(p.lines().all(|l| l.len() <= 64));
    }
}
