//! A fake Windows device for trying a running server by hand: it enrolls (discovery → policy →
//! enrollment, as Windows does), then runs one OMA-DM session over mutual TLS and prints every
//! command it receives, answering each with Status 200 (and Results for a Get).
//!
//! ```sh
//! cargo run --release -- serve &                     # terminal 1
//! TOKEN=$(cat winmdm-data/admin-token)
//! curl -sk -X POST https://localhost:8443/api/v1/users -H "authorization: Bearer $TOKEN" \
//!      -H 'content-type: application/json' -d '{"upn":"alice@example.com","password":"pw"}'
//! cargo run --release --example fake_device -- --upn alice@example.com --password pw \
//!      --ca winmdm-data/ca/ca.pem --state /tmp/dev1        # enrolls, then a first session
//! curl -sk -X PUT https://localhost:8443/api/v1/devices/<id>/tenant-lockdown -H "authorization: Bearer $TOKEN" \
//!      -H 'content-type: application/json' -d '{"require_network_in_oobe":true}'
//! cargo run --release --example fake_device -- --ca winmdm-data/ca/ca.pem --state /tmp/dev1   # next session
//! ```
//! `--state DIR` keeps the device's certificate and key, so later runs reuse the enrollment.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use winmdm::ca::KeyAlgorithm;
use winmdm::syncml::Command;
use winmdm::testkit::{self, DeviceInfo};

#[derive(Parser)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    addr: std::net::SocketAddr,
    /// TLS server name.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// CA certificate (PEM) to trust for the server's TLS certificate.
    #[arg(long)]
    ca: PathBuf,
    /// User to enroll as (first run only).
    #[arg(long, default_value = "alice@example.com")]
    upn: String,
    /// Password.
    #[arg(long, default_value = "pw")]
    password: String,
    /// Device number (makes the DeviceID).
    #[arg(long, default_value_t = 1)]
    n: u32,
    /// Directory keeping the device's identity between runs.
    #[arg(long)]
    state: PathBuf,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Where to connect and which TLS name to ask for.
struct Endpoint {
    addr: std::net::SocketAddr,
    host: String,
}

impl Endpoint {
    /// The public endpoint (`--addr`, `--host`).
    fn public(args: &Args) -> Endpoint {
        Endpoint {
            addr: args.addr,
            host: args.host.clone(),
        }
    }

    /// The endpoint of a URL the server handed out (the management `ADDR`): its host and port.
    /// A URL on `--host` is reached at `--addr`'s IP with the URL's port (the server may listen
    /// on loopback only while `localhost` also resolves to `::1`).
    async fn of_url(args: &Args, url: &str) -> Res<Endpoint> {
        let authority = url
            .split_once("://")
            .map(|(_, r)| r.split('/').next().unwrap_or(r))
            .ok_or_else(|| format!("not a URL: {url}"))?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>()?),
            None => (authority.to_string(), 443),
        };
        let addr = if host.eq_ignore_ascii_case(&args.host) {
            std::net::SocketAddr::new(args.addr.ip(), port)
        } else {
            tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .ok_or_else(|| format!("{host} does not resolve"))?
        };
        Ok(Endpoint { addr, host })
    }
}

async fn request(
    to: &Endpoint,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
    ct: &str,
    body: String,
) -> Res<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(to.addr).await?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from(to.host.clone())?, tcp)
        .await?;
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", &to.host)
        .header("content-type", ct)
        .body(Full::new(Bytes::from(body)))?;
    let resp = tx.send_request(req).await?;
    let st = resp.status().as_u16();
    let b = resp.into_body().collect().await?.to_bytes();
    Ok((st, String::from_utf8_lossy(&b).into_owned()))
}

fn path_of(url: &str) -> String {
    url.split_once("://")
        .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_string()))
        .unwrap_or_else(|| "/".into())
}

fn text_of(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}"))?;
    let open_end = start + xml[start..].find('>')? + 1;
    let end = open_end + xml[open_end..].find("</")?;
    Some(xml[open_end..end].to_string())
}

fn client(
    args: &Args,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Res<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&args.ca)? {
        roots.add(c?)?;
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    Ok(Arc::new(match identity {
        Some((c, k)) => b.with_client_auth_cert(vec![c], k)?,
        None => b.with_no_client_auth(),
    }))
}

async fn enroll(args: &Args, info: &DeviceInfo) -> Res<(Vec<u8>, Vec<u8>, String)> {
    let c = client(args, None)?;
    let soap = "application/soap+xml; charset=utf-8";
    let (st, body) = request(
        &Endpoint::public(args),
        c.clone(),
        "/EnrollmentServer/Discovery.svc",
        soap,
        testkit::discover_xml(&info.upn, "4.0", &["OnPremise"], &testkit::message_id()),
    )
    .await?;
    println!("discovery: HTTP {st}");
    let policy_url = text_of(&body, "EnrollmentPolicyServiceUrl").ok_or("no policy URL")?;
    let enroll_url = text_of(&body, "EnrollmentServiceUrl").ok_or("no enrollment URL")?;
    let (st, _) = request(
        &Endpoint::public(args),
        c.clone(),
        &path_of(&policy_url),
        soap,
        testkit::policy_xml(
            &info.upn,
            &info.password,
            &policy_url,
            &testkit::message_id(),
        ),
    )
    .await?;
    println!("policy: HTTP {st}");
    let (csr, key) = winmdm::ca::testing::device_csr(&info.device_id, KeyAlgorithm::Rsa2048);
    let (st, body) = request(
        &Endpoint::public(args),
        c,
        &path_of(&enroll_url),
        soap,
        testkit::rst_xml(info, &csr, &enroll_url, &testkit::message_id()),
    )
    .await?;
    println!("enrollment: HTTP {st}");
    if st != 200 {
        return Err(format!("enrollment refused: {body}").into());
    }
    let token = text_of(&body, "BinarySecurityToken").ok_or("no provisioning document")?;
    let doc = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token.trim())?)?;
    // The client certificate is the EncodedCertificate under My/User.
    let my = doc.find("type=\"My\"").ok_or("no My store")?;
    let enc = doc[my..]
        .find("EncodedCertificate")
        .ok_or("no client cert")?
        + my;
    let v = doc[enc..].find("value=\"").ok_or("no value")? + enc + 7;
    let end = doc[v..].find('"').ok_or("bad value")? + v;
    let cert = base64::engine::general_purpose::STANDARD.decode(&doc[v..end])?;
    let addr = doc
        .find("name=\"ADDR\" value=\"")
        .map(|i| i + 19)
        .and_then(|i| doc[i..].find('"').map(|e| doc[i..i + e].to_string()))
        .ok_or("no ADDR")?;
    Ok((cert, key.serialize_der(), addr))
}

#[tokio::main]
async fn main() -> Res<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.state)?;
    let info = DeviceInfo::new(args.n, &args.upn, &args.password);
    let (cert, key, addr) = match (
        std::fs::read(args.state.join("cert.der")),
        std::fs::read(args.state.join("key.der")),
        std::fs::read_to_string(args.state.join("addr")),
    ) {
        (Ok(c), Ok(k), Ok(a)) => (c, k, a),
        _ => {
            let (c, k, a) = enroll(&args, &info).await?;
            std::fs::write(args.state.join("cert.der"), &c)?;
            winmdm::pki::write_secret(&args.state.join("key.der"), &k)?;
            std::fs::write(args.state.join("addr"), &a)?;
            println!("enrolled as DeviceID {}", info.device_id);
            (c, k, a)
        }
    };
    let c = client(
        &args,
        Some((
            CertificateDer::from(cert),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )),
    )?;
    use winmdm::clock::Clock;
    let session = winmdm::clock::SystemClock.now_unix() % 100_000;
    let id = &info.device_id;
    let hdr = |msg: u32| {
        format!(
            r#"<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{msg}</MsgID><Target><LocURI>{addr}</LocURI></Target><Source><LocURI>{id}</LocURI></Source></SyncHdr>"#
        )
    };
    let mut body = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert><Alert><CmdID>3</CmdID><Data>1224</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft/MDM/LoginStatus</Type></Meta><Data>user</Data></Item></Alert><Replace><CmdID>4</CmdID><Item><Source><LocURI>./DevInfo/DevId</LocURI></Source><Data>{id}</Data></Item><Item><Source><LocURI>./DevInfo/Man</LocURI></Source><Data>Fake Device Inc.</Data></Item></Replace><Final/></SyncBody></SyncML>"#,
        hdr(1)
    );
    let path = format!("{}?mode=Maintenance&Platform=WoA", path_of(&addr));
    // Management is on its own mutual-TLS endpoint: the provisioning document's ADDR.
    let mgmt = Endpoint::of_url(&args, &addr).await?;
    for msg in 2..50 {
        let (st, reply) = request(
            &mgmt,
            c.clone(),
            &path,
            "application/vnd.syncml.dm+xml",
            body,
        )
        .await?;
        if st != 200 {
            return Err(format!("management: HTTP {st}").into());
        }
        let parsed = winmdm::syncml::parse(reply.as_bytes())?;
        let server_msg = parsed.hdr.msg_id.to_string();
        let mut out = format!(
            r#"<Status><CmdID>1</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>"#
        );
        let mut n = 1;
        let mut any = false;
        for cmd in &parsed.body.commands {
            if matches!(cmd, Command::Status(_)) {
                continue;
            }
            any = true;
            let item = cmd.items().first();
            println!(
                "received {} {} format={} data={}",
                cmd.name(),
                item.and_then(|i| i.target.as_ref())
                    .map(|t| t.loc_uri.as_ref())
                    .unwrap_or("-"),
                item.and_then(|i| i.meta.as_ref())
                    .and_then(|m| m.format.as_deref())
                    .unwrap_or("-"),
                item.and_then(|i| i.data.as_deref()).unwrap_or("-")
            );
            n += 1;
            let cid = cmd.cmd_id().unwrap_or("0");
            out.push_str(&format!(r#"<Status><CmdID>{n}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>{cid}</CmdRef><Cmd>{}</Cmd><Data>200</Data></Status>"#, cmd.name()));
            if let (Command::Get(_), Some(t)) = (cmd, item.and_then(|i| i.target.as_ref())) {
                n += 1;
                out.push_str(&format!(r#"<Results><CmdID>{n}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>{cid}</CmdRef><Item><Source><LocURI>{}</LocURI></Source><Data>fake-value</Data></Item></Results>"#, t.loc_uri));
            }
        }
        if !any {
            println!("session {session} ended after {} message(s)", msg - 1);
            return Ok(());
        }
        body = format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody>{out}<Final/></SyncBody></SyncML>"#,
            hdr(msg)
        );
    }
    Err("session did not end".into())
}
