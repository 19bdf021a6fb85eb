//! A trace as a conversation: per exchange, the commands each side sent in order; for every
//! command of ours, the `Status` the device answered it with (found in the device's next
//! message of the same session by `MsgRef`/`CmdRef`) and the code's meaning; large objects
//! the device sent in `MoreData` chunks reassembled; SOAP messages summarised (body element,
//! fault code). Pure: a trace in, a serialisable view out.

use serde::Serialize;

use super::format::{Endpoint, Exchange};
use crate::syncml::{self, Command, StatusCode};

/// One exchange, as the admin reads it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Turn {
    /// Position, from 1.
    pub seq: u32,
    /// Arrival (Unix ms).
    pub at_ms: i64,
    /// Endpoint.
    pub endpoint: Endpoint,
    /// HTTP status.
    pub status: u16,
    /// Server time (µs).
    pub took_us: u64,
    /// Attached by client address (see `record`).
    pub correlated: bool,
    /// OMA-DM session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// What the device sent.
    pub device: Side,
    /// What we answered.
    pub server: Side,
    /// Our queued command ids the answer delivered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<String>,
}

/// One message.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Side {
    /// Body bytes.
    pub bytes: usize,
    /// A one-line summary (SOAP body element and fault, or `MsgID n, k commands`).
    pub summary: String,
    /// The SyncML commands, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Cmd>,
    /// Large objects completed in this message (all their chunks reassembled).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<LargeObject>,
}

/// One SyncML command.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Cmd {
    /// `CmdID`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd_id: Option<String>,
    /// Element name (`Replace`, `Status`…).
    pub verb: String,
    /// Target (or source) LocURIs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// For `Status`: the answered (MsgRef, CmdRef, Cmd); for `Alert`: the alert code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refers_to: Option<String>,
    /// Data, clipped to 200 characters (a `Status`'s code; an item's value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// An item of a large object (`MoreData`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_data: bool,
    /// For a command of ours: the device's answer (code and meaning), when the trace has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// Nested commands (`Atomic`, `Sequence`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nested: Vec<Cmd>,
}

/// A status code with its meaning.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Answer {
    /// The code.
    pub code: u16,
    /// What it means (OMA-DM RepPro §10 / MS-MDM).
    pub meaning: String,
}

/// A large object reassembled.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LargeObject {
    /// Its LocURI.
    pub locuri: String,
    /// Chunks it came in.
    pub chunks: usize,
    /// Reassembled data (clipped to 64 KiB for the view; the export keeps every chunk).
    pub data: String,
    /// Total size.
    pub bytes: usize,
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn item_uris(items: &[syncml::Item<'_>]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| {
            i.target
                .as_ref()
                .or(i.source.as_ref())
                .map(|l| l.loc_uri.to_string())
        })
        .collect()
}

fn item_data(items: &[syncml::Item<'_>]) -> Option<String> {
    items
        .iter()
        .find_map(|i| i.data.as_ref().map(|d| clip(d, 200)))
}

fn cmd_of(c: &Command<'_>) -> Cmd {
    let mut out = Cmd {
        verb: c.name().to_string(),
        ..Cmd::default()
    };
    match c {
        Command::Alert(a) => {
            out.cmd_id = a.cmd_id.as_ref().map(|s| s.to_string());
            out.refers_to = a.data.as_ref().map(|d| format!("alert {d}"));
            out.targets = item_uris(&a.items);
            out.data = item_data(&a.items);
        }
        Command::Status(s) => {
            out.cmd_id = s.cmd_id.as_ref().map(|s| s.to_string());
            out.refers_to = Some(format!("{} {} of message {}", s.cmd, s.cmd_ref, s.msg_ref));
            out.data = Some(s.data.to_string());
            out.targets = s.target_refs.iter().map(|t| t.to_string()).collect();
            out.answer = s.code().map(|c| Answer {
                code: c.0,
                meaning: c.meaning().to_string(),
            });
        }
        Command::Results(r) => {
            out.cmd_id = r.cmd_id.as_ref().map(|s| s.to_string());
            out.refers_to = Some(format!("Get {}", r.cmd_ref));
            out.targets = item_uris(&r.items);
            out.data = item_data(&r.items);
            out.more_data = r.items.iter().any(|i| i.more_data);
        }
        Command::Get(i)
        | Command::Add(i)
        | Command::Replace(i)
        | Command::Delete(i)
        | Command::Exec(i)
        | Command::Copy(i) => {
            out.cmd_id = i.cmd_id.as_ref().map(|s| s.to_string());
            out.targets = item_uris(&i.items);
            out.data = item_data(&i.items);
            out.more_data = i.items.iter().any(|i| i.more_data);
        }
        Command::Atomic(k) | Command::Sequence(k) => {
            out.cmd_id = k.cmd_id.as_ref().map(|s| s.to_string());
            out.nested = k.commands.iter().map(cmd_of).collect();
        }
    }
    out
}

/// Chunks of large objects seen so far, per LocURI: (data, chunks).
type Pending = std::collections::HashMap<String, (String, usize)>;

/// Adds the data items of `cmds` to `pending`; an object whose last chunk (no `MoreData`) is
/// here, after more than one chunk, goes to `out`.
fn reassemble(cmds: &[Command<'_>], pending: &mut Pending, out: &mut Vec<LargeObject>) {
    for (uri, data, more) in data_items(cmds) {
        let e = pending.entry(uri.clone()).or_insert((String::new(), 0));
        e.0.push_str(data);
        e.1 += 1;
        if !more {
            if let Some((all, chunks)) = pending.remove(&uri) {
                if chunks > 1 {
                    out.push(LargeObject {
                        locuri: uri,
                        chunks,
                        bytes: all.len(),
                        data: clip(&all, 64 * 1024),
                    });
                }
            }
        }
    }
}

/// Items carrying data of a message, for reassembly: (LocURI, data, more_data).
fn data_items<'a>(cmds: &'a [Command<'a>]) -> Vec<(String, &'a str, bool)> {
    let mut out = Vec::new();
    for c in cmds {
        let items: &[syncml::Item<'_>] = match c {
            Command::Results(r) => &r.items,
            Command::Replace(i) | Command::Add(i) => &i.items,
            Command::Alert(a) => &a.items,
            _ => continue,
        };
        for i in items {
            let uri = i
                .source
                .as_ref()
                .or(i.target.as_ref())
                .map(|l| l.loc_uri.to_string())
                .unwrap_or_default();
            if let Some(d) = &i.data {
                out.push((uri, d.as_ref(), i.more_data));
            }
        }
    }
    out
}

fn soap_summary(body: &str) -> String {
    let Ok(doc) = crate::xml::parse(body.as_bytes()) else {
        return if body.trim().is_empty() {
            "(empty)".to_string()
        } else {
            "(not XML)".to_string()
        };
    };
    let Some(b) = doc.children.iter().find(|e| e.local == "Body") else {
        return format!("<{}>", doc.local);
    };
    fn values(e: &crate::xml::Element, out: &mut Vec<String>) {
        if e.local == "Value" {
            out.push(e.text.trim().to_string());
        }
        for c in &e.children {
            values(c, out);
        }
    }
    match b.children.first() {
        Some(f) if f.local == "Fault" => {
            let mut sub = Vec::new();
            values(f, &mut sub);
            format!("Fault {}", sub.join(" / "))
        }
        Some(e) => e.local.clone(),
        None => "(empty Body)".to_string(),
    }
}

/// The conversation of a trace's exchanges.
pub fn conversation(exchanges: &[Exchange]) -> Vec<Turn> {
    let parsed: Vec<(Option<syncml::SyncMl<'_>>, Option<syncml::SyncMl<'_>>)> = exchanges
        .iter()
        .map(|x| {
            if x.endpoint == Endpoint::Management {
                (
                    syncml::parse(x.request.body.as_bytes()).ok(),
                    syncml::parse(x.response.body.as_bytes()).ok(),
                )
            } else {
                (None, None)
            }
        })
        .collect();
    // Large objects being reassembled, per LocURI: the device's, and ours.
    let mut pending: Pending = Default::default();
    let mut from_server: Pending = Default::default();
    let mut turns = Vec::with_capacity(exchanges.len());
    for (i, x) in exchanges.iter().enumerate() {
        let mut turn = Turn {
            seq: x.seq,
            at_ms: x.at_ms,
            endpoint: x.endpoint,
            status: x.status,
            took_us: x.took_us,
            correlated: x.correlated,
            session_id: x.session_id.clone(),
            device: Side {
                bytes: x.request.body.len(),
                ..Side::default()
            },
            server: Side {
                bytes: x.response.body.len(),
                ..Side::default()
            },
            delivered: x.delivered.clone(),
        };
        match &parsed[i] {
            (Some(req), resp) => {
                turn.device.summary = format!(
                    "MsgID {}, {} commands{}",
                    req.hdr.msg_id,
                    req.body.commands.len(),
                    if req.body.is_final { ", Final" } else { "" }
                );
                turn.device.commands = req.body.commands.iter().map(cmd_of).collect();
                reassemble(&req.body.commands, &mut pending, &mut turn.device.objects);
                if let Some(resp) = resp {
                    turn.server.summary = format!(
                        "MsgID {}, {} commands{}",
                        resp.hdr.msg_id,
                        resp.body.commands.len(),
                        if resp.body.is_final { ", Final" } else { "" }
                    );
                    turn.server.commands = resp.body.commands.iter().map(cmd_of).collect();
                    reassemble(
                        &resp.body.commands,
                        &mut from_server,
                        &mut turn.server.objects,
                    );
                    let next = exchanges
                        .iter()
                        .zip(&parsed)
                        .skip(i + 1)
                        .find(|(n, _)| {
                            n.endpoint == Endpoint::Management && n.session_id == x.session_id
                        })
                        .and_then(|(_, p)| p.0.as_ref());
                    if let Some(next) = next {
                        answer_ours(&mut turn.server.commands, &resp.hdr.msg_id, next);
                    }
                } else if !x.response.body.is_empty() {
                    turn.server.summary = "(not SyncML)".to_string();
                }
            }
            (None, _) if x.endpoint == Endpoint::Management => {
                turn.device.summary = "(not SyncML)".to_string();
            }
            _ => {
                turn.device.summary = soap_summary(&x.request.body);
                turn.server.summary = soap_summary(&x.response.body);
            }
        }
        turns.push(turn);
    }
    turns
}

/// Sets `answer` on each of our commands from the device's next message's Statuses.
fn answer_ours(ours: &mut [Cmd], msg_id: &str, next: &syncml::SyncMl<'_>) {
    let statuses: Vec<&syncml::Status<'_>> = next
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Status(s) => Some(s),
            _ => None,
        })
        .collect();
    fn walk(cmds: &mut [Cmd], msg_id: &str, statuses: &[&syncml::Status<'_>]) {
        for c in cmds {
            if c.verb != "Status" && c.verb != "Results" {
                if let Some(id) = &c.cmd_id {
                    if let Some(s) = statuses
                        .iter()
                        .find(|s| s.msg_ref.trim() == msg_id.trim() && s.cmd_ref.trim() == id)
                    {
                        let code = s.code().unwrap_or(StatusCode(0));
                        c.answer = Some(Answer {
                            code: code.0,
                            meaning: code.meaning().to_string(),
                        });
                    }
                }
            }
            walk(&mut c.nested, msg_id, statuses);
        }
    }
    walk(ours, msg_id, &statuses);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::format::Message;

    fn mgmt(seq: u32, req: &str, resp: &str) -> Exchange {
        Exchange {
            seq,
            at_ms: 0,
            endpoint: Endpoint::Management,
            method: "POST".into(),
            path: "/ManagementServer/MDM.svc".into(),
            status: 200,
            took_us: 0,
            request: Message::from_bytes(vec![], req.as_bytes(), 1 << 20),
            response: Message::from_bytes(vec![], resp.as_bytes(), 1 << 20),
            session_id: Some("7".into()),
            delivered: vec![],
            correlated: false,
        }
    }

    fn msg(id: u32, source: &str, body: &str) -> String {
        format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>7</SessionID><MsgID>{id}</MsgID><Target><LocURI>x</LocURI></Target><Source><LocURI>{source}</LocURI></Source></SyncHdr><SyncBody>{body}<Final/></SyncBody></SyncML>"#
        )
    }

    #[test]
    fn matches_statuses_to_our_commands_and_reassembles_large_objects() {
        let x1 = mgmt(
            1,
            &msg(
                1,
                "DEV",
                r#"<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>"#,
            ),
            &msg(
                1,
                "srv",
                r#"<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status><Get><CmdID>2</CmdID><Item><Target><LocURI>./DevDetail/Big</LocURI></Target></Item></Get><Replace><CmdID>3</CmdID><Item><Target><LocURI>./Vendor/X</LocURI></Target><Data>1</Data></Item></Replace>"#,
            ),
        );
        let x2 = mgmt(
            2,
            &msg(
                2,
                "DEV",
                r#"<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>2</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status><Status><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>3</CmdRef><Cmd>Replace</Cmd><Data>405</Data></Status><Results><CmdID>3</CmdID><MsgRef>1</MsgRef><CmdRef>2</CmdRef><Item><Source><LocURI>./DevDetail/Big</LocURI></Source><Data>abc</Data><MoreData/></Item></Results>"#,
            ),
            &msg(2, "srv", ""),
        );
        let x3 = mgmt(
            3,
            &msg(
                3,
                "DEV",
                r#"<Results><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>2</CmdRef><Item><Source><LocURI>./DevDetail/Big</LocURI></Source><Data>def</Data></Item></Results>"#,
            ),
            &msg(3, "srv", ""),
        );
        let v = conversation(&[x1, x2, x3]);
        let ours = &v[0].server.commands;
        assert_eq!(ours[1].verb, "Get");
        assert_eq!(ours[1].answer.as_ref().map(|a| a.code), Some(200));
        assert_eq!(ours[2].answer.as_ref().map(|a| a.code), Some(405));
        assert!(!ours[2].answer.as_ref().unwrap().meaning.is_empty());
        assert_eq!(v[2].device.objects.len(), 1);
        assert_eq!(v[2].device.objects[0].data, "abcdef");
        assert_eq!(v[2].device.objects[0].chunks, 2);
    }

    #[test]
    fn summarises_soap_faults() {
        let mut x = mgmt(1, "", "");
        x.endpoint = Endpoint::Enrollment;
        x.response.body = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>a:AuthenticationFailure</s:Value></s:Subcode></s:Code></s:Fault></s:Body></s:Envelope>"#.into();
        let v = conversation(&[x]);
        assert!(
            v[0].server.summary.starts_with("Fault"),
            "{}",
            v[0].server.summary
        );
        assert!(v[0].server.summary.contains("AuthenticationFailure"));
    }
}
