//! The fake device's management side: OMA-DM sessions over mutual TLS with the identity
//! certificate from enrollment, answering every command the way Windows does (a Status per
//! command, Results for each Get), and recording what it received.

use std::collections::HashMap;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::device::Enrolled;
use super::{Client, HttpResponse, TestServer};

/// A command as the device saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub verb: String,
    pub cmd_id: String,
    pub target: Option<String>,
    pub format: Option<String>,
    pub data: Option<String>,
    /// The item carried `MoreData` (a chunk of a large object).
    pub more_data: bool,
    /// `Meta/Size` of the item, if declared.
    pub size: Option<String>,
}

/// One parsed server reply.
#[derive(Debug)]
pub struct Reply {
    pub msg_id: String,
    pub session_id: String,
    pub target: String,
    /// (CmdRef, Cmd, Data) of every Status, in order.
    pub statuses: Vec<(String, String, String)>,
    pub commands: Vec<Received>,
    pub is_final: bool,
    pub raw: String,
}

pub struct ManagedDevice {
    pub device_id: String,
    pub root_der: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
    pub client: Client,
    pub mgmt_path: String,
    pub next_session: u32,
    pub login_status: String,
    pub max_msg_size: Option<u32>,
    /// Status code to answer per target (default 200).
    pub status_for: HashMap<String, u16>,
    /// Values returned for Gets.
    pub nodes: HashMap<String, String>,
    /// Every reply of the last session.
    pub replies: Vec<Reply>,
    /// Large objects reassembled from chunks: target → data.
    pub assembled: HashMap<String, String>,
    pub partial: HashMap<String, String>,
}

fn child_text(n: roxmltree::Node, name: &str) -> Option<String> {
    n.children()
        .find(|c| c.tag_name().name() == name)
        .map(|c| c.text().unwrap_or("").to_string())
}

fn commands_of(parent: roxmltree::Node, out: &mut Vec<Received>) {
    for c in parent.children().filter(|c| c.is_element()) {
        let name = c.tag_name().name();
        if !matches!(
            name,
            "Alert"
                | "Get"
                | "Add"
                | "Replace"
                | "Delete"
                | "Exec"
                | "Copy"
                | "Atomic"
                | "Sequence"
                | "Results"
        ) {
            continue;
        }
        let item = c.children().find(|i| i.tag_name().name() == "Item");
        let target = item
            .and_then(|i| i.children().find(|t| t.tag_name().name() == "Target"))
            .and_then(|t| child_text(t, "LocURI"));
        let format = item
            .and_then(|i| i.descendants().find(|m| m.tag_name().name() == "Format"))
            .and_then(|f| f.text().map(str::to_string));
        out.push(Received {
            verb: name.to_string(),
            cmd_id: child_text(c, "CmdID").unwrap_or_default(),
            target,
            format,
            data: item
                .and_then(|i| child_text(i, "Data"))
                .or_else(|| child_text(c, "Data")),
            more_data: item
                .is_some_and(|i| i.children().any(|m| m.tag_name().name() == "MoreData")),
            size: item
                .and_then(|i| i.descendants().find(|m| m.tag_name().name() == "Size"))
                .and_then(|m| m.text().map(str::to_string)),
        });
        if matches!(name, "Atomic" | "Sequence") {
            commands_of(c, out);
        }
    }
}

impl Reply {
    pub fn parse(xml: &str) -> Reply {
        let doc = roxmltree::Document::parse(xml)
            .unwrap_or_else(|e| panic!("reply not XML ({e}): {xml}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "SyncML");
        assert_eq!(root.tag_name().namespace(), Some("SYNCML:SYNCML1.2"));
        let hdr = root
            .children()
            .find(|c| c.tag_name().name() == "SyncHdr")
            .expect("SyncHdr");
        let body = root
            .children()
            .find(|c| c.tag_name().name() == "SyncBody")
            .expect("SyncBody");
        let statuses = body
            .children()
            .filter(|c| c.tag_name().name() == "Status")
            .map(|s| {
                (
                    child_text(s, "CmdRef").unwrap_or_default(),
                    child_text(s, "Cmd").unwrap_or_default(),
                    child_text(s, "Data").unwrap_or_default(),
                )
            })
            .collect();
        let mut commands = Vec::new();
        commands_of(body, &mut commands);
        // Every CmdID unique in the message, never 0.
        let mut ids: Vec<String> = body
            .descendants()
            .filter(|n| n.tag_name().name() == "CmdID")
            .map(|n| n.text().unwrap_or("").to_string())
            .collect();
        assert!(
            !ids.iter().any(|i| i == "0" || i.is_empty()),
            "CmdID 0 or empty: {xml}"
        );
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate CmdID in {xml}");
        Reply {
            msg_id: child_text(hdr, "MsgID").unwrap_or_default(),
            session_id: child_text(hdr, "SessionID").unwrap_or_default(),
            target: hdr
                .children()
                .find(|c| c.tag_name().name() == "Target")
                .and_then(|t| child_text(t, "LocURI"))
                .unwrap_or_default(),
            statuses,
            commands,
            is_final: body.children().any(|c| c.tag_name().name() == "Final"),
            raw: xml.to_string(),
        }
    }
}

pub fn hdr(session: u32, msg: u32, device_id: &str, max_msg_size: Option<u32>) -> String {
    let meta = max_msg_size
        .map(|n| format!(r#"<Meta><MaxMsgSize xmlns="syncml:metinf">{n}</MaxMsgSize></Meta>"#))
        .unwrap_or_default();
    format!(
        r#"<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{msg}</MsgID><Target><LocURI>https://localhost/ManagementServer/MDM.svc</LocURI></Target><Source><LocURI>{device_id}</LocURI></Source>{meta}</SyncHdr>"#
    )
}

impl ManagedDevice {
    pub fn new(srv: &TestServer, e: &Enrolled) -> ManagedDevice {
        Self::at(srv.addr, e)
    }

    /// The device of enrollment `e`, talking to the server at `addr`.
    pub fn at(addr: std::net::SocketAddr, e: &Enrolled) -> ManagedDevice {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(e.key.serialize_der()));
        let client = Client::new(
            addr,
            e.root_der.clone(),
            Some((vec![CertificateDer::from(e.cert_der.clone())], key)),
        );
        let mgmt_path = e
            .mgmt_url
            .split_once("://")
            .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_string()))
            .expect("path");
        ManagedDevice {
            device_id: e.device_id.clone(),
            root_der: e.root_der.clone(),
            cert_der: e.cert_der.clone(),
            key_der: e.key.serialize_der(),
            client,
            mgmt_path,
            next_session: 1,
            login_status: "user".into(),
            max_msg_size: None,
            status_for: HashMap::new(),
            nodes: HashMap::new(),
            replies: Vec::new(),
            assembled: HashMap::new(),
            partial: HashMap::new(),
        }
    }

    /// The CA to trust (for a new client after a restart).
    pub fn client_root(&self) -> Vec<u8> {
        self.root_der.clone()
    }

    /// The identity to present.
    pub fn client_identity(
        &self,
    ) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        Some((
            vec![CertificateDer::from(self.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
        ))
    }

    /// POSTs a SyncML body as Windows does.
    pub async fn post(&self, body: &str) -> HttpResponse {
        self.client
            .request(
                "POST",
                &format!("{}?mode=Maintenance&Platform=WoA", self.mgmt_path),
                &[
                    ("content-type", "application/vnd.syncml.dm+xml"),
                    ("user-agent", "MSFT OMA DM Client/1.2.0.1"),
                ],
                body.as_bytes().to_vec(),
            )
            .await
    }

    /// Package 1: Alert 1201, LoginStatus, DevInfo Replace, plus `extra` commands.
    pub fn first_package(&self, session: u32, extra: &str) -> String {
        format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2">{hdr}<SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert><Alert><CmdID>3</CmdID><Data>1224</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft/MDM/LoginStatus</Type></Meta><Data>{login}</Data></Item></Alert><Replace><CmdID>4</CmdID><Item><Source><LocURI>./DevInfo/DevId</LocURI></Source><Data>{id}</Data></Item><Item><Source><LocURI>./DevInfo/Man</LocURI></Source><Data>Contoso &amp; Sons</Data></Item><Item><Source><LocURI>./DevInfo/Mod</LocURI></Source><Data>Virtual 7,1</Data></Item><Item><Source><LocURI>./DevInfo/DmV</LocURI></Source><Data>1.3</Data></Item><Item><Source><LocURI>./DevInfo/Lang</LocURI></Source><Data>en-US</Data></Item></Replace>{extra}<Final/></SyncBody></SyncML>"#,
            hdr = hdr(session, 1, &self.device_id, self.max_msg_size),
            login = self.login_status,
            id = self.device_id,
        )
    }

    /// Sends package 1 of a fresh session and says whether the server answered 200.
    pub async fn session_quiet(&self) -> bool {
        self.post(&self.first_package(1000, "")).await.status == 200
    }

    /// Runs a whole session; returns every command received, in order.
    pub async fn session(&mut self) -> Vec<Received> {
        self.session_with("").await
    }

    /// Runs a whole session whose first package carries `extra` commands.
    pub async fn session_with(&mut self, extra: &str) -> Vec<Received> {
        let session = self.next_session;
        self.next_session += 1;
        self.replies.clear();
        let mut body = self.first_package(session, extra);
        let mut msg = 1;
        let mut all = Vec::new();
        for _ in 0..50 {
            let r = self.post(&body).await;
            assert_eq!(r.status, 200, "management round: {}", r.text());
            assert_eq!(
                r.headers.get("content-type").and_then(|v| v.to_str().ok()),
                Some("application/vnd.syncml.dm+xml")
            );
            let reply = Reply::parse(&r.text());
            assert_eq!(reply.session_id, session.to_string(), "SessionID echoed");
            assert_eq!(reply.target, self.device_id, "Target is the DeviceID");
            assert!(reply.is_final, "every message carries Final: {}", reply.raw);
            assert_eq!(
                reply.statuses.first().map(|s| (s.0.as_str(), s.1.as_str())),
                Some(("0", "SyncHdr")),
                "SyncHdr status first"
            );
            let cmds = reply.commands.clone();
            let server_msg = reply.msg_id.clone();
            self.replies.push(reply);
            if cmds.is_empty() {
                return all;
            }
            msg += 1;
            let mut b = String::new();
            let mut id = 1;
            b.push_str(&format!(r#"<Status><CmdID>{id}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>"#));
            for c in &cmds {
                if c.verb == "Alert" {
                    continue;
                }
                id += 1;
                let mut code = c
                    .target
                    .as_ref()
                    .and_then(|t| self.status_for.get(t))
                    .copied()
                    .unwrap_or(200);
                if let Some(t) = &c.target {
                    if c.more_data || self.partial.contains_key(t) {
                        let buf = self.partial.entry(t.clone()).or_default();
                        buf.push_str(c.data.as_deref().unwrap_or(""));
                        if c.more_data {
                            code = 213;
                        } else if let Some(whole) = self.partial.remove(t) {
                            self.assembled.insert(t.clone(), whole);
                        }
                    }
                }
                b.push_str(&format!(
                    r#"<Status><CmdID>{id}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>{}</CmdRef><Cmd>{}</Cmd><Data>{code}</Data></Status>"#,
                    c.cmd_id, c.verb
                ));
                if c.verb == "Get" && code == 200 {
                    id += 1;
                    let t = c.target.clone().unwrap_or_default();
                    let v = self
                        .nodes
                        .get(&t)
                        .cloned()
                        .unwrap_or_else(|| format!("value-of-{t}"));
                    b.push_str(&format!(
                        r#"<Results><CmdID>{id}</CmdID><MsgRef>{server_msg}</MsgRef><CmdRef>{}</CmdRef><Item><Source><LocURI>{t}</LocURI></Source><Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data>{}</Data></Item></Results>"#,
                        c.cmd_id,
                        v.replace('&', "&amp;").replace('<', "&lt;")
                    ));
                }
            }
            all.extend(cmds);
            body = format!(
                r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody>{b}<Final/></SyncBody></SyncML>"#,
                hdr(session, msg, &self.device_id, self.max_msg_size)
            );
        }
        panic!("session did not end after 50 messages");
    }
}
