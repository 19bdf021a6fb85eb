//! Requests shaped like the ones Windows sends (see `../shared/conformance/`), for the test suite,
//! the benches and the load tool. Not part of the stable API.
#![allow(missing_docs)]

use base64::Engine;

/// What a device knows about itself.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub device_id: String,
    pub hw_dev_id: String,
    pub upn: String,
    pub password: String,
    pub enrollment_type: &'static str,
    pub device_name: String,
    pub os_edition: String,
    pub request_version: String,
}

impl DeviceInfo {
    pub fn new(n: u32, upn: &str, password: &str) -> DeviceInfo {
        DeviceInfo {
            device_id: format!("{:032X}", 0xD0D0_0000u64 + u64::from(n)),
            hw_dev_id: format!("{:064X}", 0xAB00_0000u64 + u64::from(n)),
            upn: upn.into(),
            password: password.into(),
            enrollment_type: "Full",
            device_name: format!("DESKTOP-TEST{n:03}"),
            os_edition: "72".into(),
            request_version: "4.0".into(),
        }
    }
}

pub fn message_id() -> String {
    format!("urn:uuid:{}", crate::clock::random_hex(16))
}

pub fn discover_xml(email: &str, request_version: &str, policies: &[&str], mid: &str) -> String {
    let pol: String = policies
        .iter()
        .map(|p| format!("<AuthPolicy>{p}</AuthPolicy>"))
        .collect();
    format!(
        r#"<s:Envelope xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:s="http://www.w3.org/2003/05/soap-envelope">
  <s:Header>
    <a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/Discover</a:Action>
    <a:MessageID>{mid}</a:MessageID>
    <a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>
    <a:To s:mustUnderstand="1">https://enterpriseenrollment.example.com:443/EnrollmentServer/Discovery.svc</a:To>
  </s:Header>
  <s:Body>
    <Discover xmlns="http://schemas.microsoft.com/windows/management/2012/01/enrollment">
      <request xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
        <EmailAddress>{email}</EmailAddress>
        <RequestVersion>{request_version}</RequestVersion>
        <DeviceType>CIMClient_Windows</DeviceType>
        <ApplicationVersion>10.0.26100.1</ApplicationVersion>
        <OSEdition>72</OSEdition>
        <AuthPolicies>{pol}</AuthPolicies>
      </request>
    </Discover>
  </s:Body>
</s:Envelope>"#
    )
}

fn security(upn: &str, password: &str) -> String {
    format!(
        r#"<wsse:Security s:mustUnderstand="1">
      <wsse:UsernameToken u:Id="uuid-1">
        <wsse:Username>{upn}</wsse:Username>
        <wsse:Password wsse:Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">{password}</wsse:Password>
      </wsse:UsernameToken>
    </wsse:Security>"#
    )
}

pub fn policy_xml(upn: &str, password: &str, to: &str, mid: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:u="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512" xmlns:ac="http://schemas.xmlsoap.org/ws/2006/12/authorization">
  <s:Header>
    <a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies</a:Action>
    <a:MessageID>{mid}</a:MessageID>
    <a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>
    <a:To s:mustUnderstand="1">{to}</a:To>
    {sec}
  </s:Header>
  <s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
    <GetPolicies xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy">
      <client><lastUpdate xsi:nil="true"/><preferredLanguage xsi:nil="true"/></client>
      <requestFilter xsi:nil="true"/>
    </GetPolicies>
  </s:Body>
</s:Envelope>"#,
        sec = security(upn, password)
    )
}

pub fn rst_xml(info: &DeviceInfo, csr_der: &[u8], to: &str, mid: &str) -> String {
    let items = [
        ("UXInitiated", "true".to_string()),
        ("HWDevID", info.hw_dev_id.clone()),
        ("Locale", "en-US".into()),
        ("TargetedUserLoggedIn", "true".into()),
        ("OSEdition", info.os_edition.clone()),
        ("DeviceName", info.device_name.clone()),
        ("MAC", "00-0C-29-51-60-9D".into()),
        ("MAC", "00-0C-29-51-60-9D".into()),
        ("MAC", "00-0C-29-51-60-A7".into()),
        ("DeviceID", info.device_id.clone()),
        ("EnrollmentType", info.enrollment_type.into()),
        ("DeviceType", "CIMClient_Windows".into()),
        ("OSVersion", "10.0.26100.1".into()),
        ("ApplicationVersion", "10.0.26100.1".into()),
        ("NotInOobe", "false".into()),
    ];
    let ctx: String = items
        .iter()
        .map(|(k, v)| {
            format!(r#"<ac:ContextItem Name="{k}"><ac:Value>{v}</ac:Value></ac:ContextItem>"#)
        })
        .collect();
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:u="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512" xmlns:ac="http://schemas.xmlsoap.org/ws/2006/12/authorization">
  <s:Header>
    <a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep</a:Action>
    <a:MessageID>{mid}</a:MessageID>
    <a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>
    <a:To s:mustUnderstand="1">{to}</a:To>
    {sec}
  </s:Header>
  <s:Body>
    <wst:RequestSecurityToken>
      <wst:TokenType>http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken</wst:TokenType>
      <wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType>
      <wsse:BinarySecurityToken ValueType="http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10" EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary">{csr}</wsse:BinarySecurityToken>
      <ac:AdditionalContext xmlns="http://schemas.xmlsoap.org/ws/2006/12/authorization">{ctx}</ac:AdditionalContext>
    </wst:RequestSecurityToken>
  </s:Body>
</s:Envelope>"#,
        sec = security(&info.upn, &info.password),
        csr = base64::engine::general_purpose::STANDARD.encode(csr_der),
    )
}
