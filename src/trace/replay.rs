//! Replay: plays the device side of a trace against a running MS-MDE2 / OMA-DM server, as the
//! device would, and compares every answer with the recorded one.
//!
//! * An enrollment in the trace is made again with a **fresh key** and, unless told otherwise, a
//!   **fresh DeviceID**: every occurrence of the recorded DeviceID in later messages becomes the
//!   new one, the recorded server URLs become the live server's (the discovery answer gives the
//!   policy and enrollment URLs, the provisioning document the management URL), and the
//!   redacted password is replaced with `--password`.
//! * OMA-DM messages are sent in order over mutual TLS with the certificate the enrollment
//!   returned. The device's `Status`/`Results` refer to our `CmdID`s and `MsgID`s: they are
//!   renumbered to the live answer's.
//! * With an admin token (winmdm only), the queued commands each recorded answer delivered are
//!   queued again on the live server, under the same command ids, before the message whose
//!   answer delivered them (a large object sent in chunks is queued once, reassembled).
//! * Each answer is compared structurally ([`normalize`]): what must differ is ignored (our
//!   `MsgID`s and `CmdID`s, timestamps, message ids, certificate bytes and thumbprints, the
//!   DeviceID and server URLs, which are rewritten), everything else must match.
//!
//! Per message: `accepted` (same HTTP status, same structure), `refused` (an HTTP error or SOAP
//! fault the recording did not have) or `differs` (with the first difference).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::format::{Endpoint, Exchange, Trace};
use super::redact::{element_spans, replace_spans, REDACTED};
use crate::syncml::{self, Command};
use crate::testkit::load::{self as net, host_port, path_of, provisioning_parts};

/// What a replay needs beside the trace.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The server's base URL (`https://host:port`): discovery goes there.
    pub server: String,
    /// CA certificates the server's TLS certificate chains to.
    pub roots: Vec<CertificateDer<'static>>,
    /// The password to put where the trace has `[redacted]` in a `Password` element.
    pub password: Option<String>,
    /// The DeviceID to enroll as (default: a fresh random one).
    pub device_id: Option<String>,
    /// Keep the recorded DeviceID.
    pub same_device_id: bool,
    /// An admin token of the server (winmdm): re-queue the commands the recording delivered.
    pub admin_token: Option<String>,
    /// A device identity for a trace without enrollment: certificate and PKCS#8 key (DER).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The outcome of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same status and structure.
    Accepted,
    /// The server answered with an error the recording did not have.
    Refused(String),
    /// The answer's structure differs (first difference).
    Differs(String),
    /// Not sent (why).
    Skipped(String),
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The exchange's position in the trace.
    pub seq: u32,
    /// Its endpoint.
    pub endpoint: Endpoint,
    /// What happened.
    pub verdict: Verdict,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{} {}: ", self.seq, self.endpoint.as_str())?;
        match &self.verdict {
            Verdict::Accepted => write!(f, "accepted"),
            Verdict::Refused(r) => write!(f, "refused: {r}"),
            Verdict::Differs(r) => write!(f, "differs: {r}"),
            Verdict::Skipped(r) => write!(f, "skipped: {r}"),
        }
    }
}

/// Why a replay could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Bad options.
    #[error("{0}")]
    Usage(String),
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let auth = rest.split(['/', '?']).next()?;
    (!auth.is_empty()).then(|| format!("{scheme}://{auth}"))
}

/// The server origins a trace's device messages name (`a:To`, `SyncHdr/Target/LocURI`).
pub fn recorded_origins(t: &Trace) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in &t.exchanges {
        let body = &x.request.body;
        let mut found = Vec::new();
        for (open, close) in [
            (":To ", "</"),
            (":To>", "</"),
            ("<To>", "</"),
            ("<LocURI>", "</LocURI>"),
        ] {
            let mut from = 0;
            while let Some(i) = body[from..].find(open).map(|i| i + from) {
                let Some(gt) = body[i..].find('>').map(|g| g + i + 1) else {
                    break;
                };
                let end = body[gt..].find(close).map_or(body.len(), |e| e + gt);
                if let Some(o) = origin_of(body[gt..end].trim()) {
                    found.push(o);
                }
                from = end;
            }
        }
        for o in found {
            if o.starts_with("https://") && !out.contains(&o) {
                out.push(o);
            }
        }
    }
    out
}

/// Text substitutions applied to the recorded messages (both sides) before sending and
/// comparing: DeviceID and server origins.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    pairs: Vec<(String, String)>,
}

impl Rewrite {
    /// Adds `from` → `to` (ignored when equal or empty).
    pub fn add(&mut self, from: &str, to: &str) {
        if from.is_empty() || from == to || self.pairs.iter().any(|(f, _)| f == from) {
            return;
        }
        self.pairs.push((from.to_string(), to.to_string()));
        // Longer first, so `https://h:1` is not cut by `https://h`.
        self.pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    /// Sets `from` → `to`, replacing an earlier target of `from` (what the live server says
    /// wins over the first guess).
    pub fn set(&mut self, from: &str, to: &str) {
        self.pairs.retain(|(f, _)| f != from);
        if from.is_empty() || from == to {
            return;
        }
        self.pairs.push((from.to_string(), to.to_string()));
        self.pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    /// `text` with every substitution applied in one pass (a replacement is never rewritten
    /// again; at each position the longest match wins).
    pub fn apply(&self, text: &str) -> String {
        if self.pairs.iter().all(|(f, _)| !text.contains(f.as_str())) {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            match self
                .pairs
                .iter()
                .find(|(f, _)| rest.starts_with(f.as_str()))
            {
                Some((f, t)) => {
                    out.push_str(t);
                    i += f.len();
                }
                None => {
                    let c = rest.chars().next().map_or(1, char::len_utf8);
                    out.push_str(&rest[..c]);
                    i += c;
                }
            }
        }
        out
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Puts `password` in every `Password` element whose text was redacted.
pub fn restore_password(body: &str, password: &str) -> String {
    let spans =
        element_spans(body, |local, _| local.eq_ignore_ascii_case("Password")).unwrap_or_default();
    let spans: Vec<_> = spans
        .into_iter()
        .filter(|&(s, e)| body.get(s..e) == Some(REDACTED))
        .collect();
    replace_spans(body, &spans, &xml_escape(password))
}

/// Replaces the body's `BinarySecurityToken` (the PKCS#10 request) with `csr_der`.
pub fn replace_csr(body: &str, csr_der: &[u8]) -> String {
    let spans = element_spans(body, |local, in_header| {
        local == "BinarySecurityToken" && !in_header
    })
    .unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(csr_der);
    replace_spans(body, &spans, &b64)
}

/// A value that must differ between two runs (certificates, keys, thumbprints, times, ids).
fn volatile(v: &str) -> bool {
    let v = v.trim();
    let blob = v.len() >= 40
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\r' | b'\n'));
    let time =
        v.len() >= 19 && v.as_bytes().get(4) == Some(&b'-') && v.as_bytes().get(10) == Some(&b'T');
    let uuid = v.starts_with("urn:uuid:") || v.starts_with("uuid:");
    blob || time || uuid
}

const VOLATILE_ELEMENTS: &[&str] = &["MessageID", "RelatesTo", "Created", "Expires", "ActivityId"];

fn soap_lines(e: &crate::xml::Element, path: &str, rw: &Rewrite, out: &mut Vec<String>) {
    let here = format!("{path}/{}", e.local);
    let mut attrs: Vec<String> = e
        .attrs
        .iter()
        .filter(|a| !volatile(&a.value))
        .map(|a| format!("@{}={}", a.local, a.value))
        .collect();
    attrs.sort();
    let text = e.text.trim();
    let shown = if VOLATILE_ELEMENTS.contains(&e.local.as_str()) || volatile(text) {
        String::new()
    } else {
        text.to_string()
    };
    out.push(
        format!("{here} {} {shown}", attrs.join(" "))
            .trim_end()
            .to_string(),
    );
    if e.local == "BinarySecurityToken" {
        // A provisioning document: compare its structure too.
        if let Ok(doc) = crate::soap::envelope::decode_base64_lenient(&e.text) {
            let doc = rw.apply(&String::from_utf8_lossy(&doc));
            if let Ok(x) = crate::xml::parse(doc.as_bytes()) {
                soap_lines(&x, &format!("{here}/(decoded)"), rw, out);
            }
        }
    }
    for c in &e.children {
        soap_lines(c, &here, rw, out);
    }
}

fn syncml_item_lines(items: &[syncml::Item<'_>]) -> String {
    items
        .iter()
        .map(|i| {
            let t = i.target.as_ref().map(|l| l.loc_uri.to_string());
            let s = i.source.as_ref().map(|l| l.loc_uri.to_string());
            let fmt = i
                .meta
                .as_ref()
                .and_then(|m| m.format.as_ref())
                .map(|f| f.to_string());
            let data = i.data.as_ref().map(|d| {
                if volatile(d) {
                    "(volatile)".to_string()
                } else {
                    d.to_string()
                }
            });
            format!(
                "[{}{}{}{}{}]",
                t.map(|t| format!("target={t}")).unwrap_or_default(),
                s.map(|s| format!(" source={s}")).unwrap_or_default(),
                fmt.map(|f| format!(" format={f}")).unwrap_or_default(),
                data.map(|d| format!(" data={d}")).unwrap_or_default(),
                if i.more_data { " MoreData" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("")
}

fn syncml_cmd_line(c: &Command<'_>, out: &mut Vec<String>) {
    match c {
        Command::Status(s) => out.push(format!(
            "Status {} cmdref={} msgref={} code={}",
            s.cmd, s.cmd_ref, s.msg_ref, s.data
        )),
        Command::Alert(a) => out.push(format!(
            "Alert {} {}",
            a.data.as_deref().unwrap_or(""),
            syncml_item_lines(&a.items)
        )),
        Command::Results(r) => out.push(format!(
            "Results cmdref={} {}",
            r.cmd_ref,
            syncml_item_lines(&r.items)
        )),
        Command::Get(i)
        | Command::Add(i)
        | Command::Replace(i)
        | Command::Delete(i)
        | Command::Exec(i)
        | Command::Copy(i) => out.push(format!("{} {}", c.name(), syncml_item_lines(&i.items))),
        Command::Atomic(k) | Command::Sequence(k) => {
            out.push(format!("{} (", c.name()));
            for n in &k.commands {
                syncml_cmd_line(n, out);
            }
            out.push(")".to_string());
        }
    }
}

/// An answer as comparable lines: SOAP as element paths with their non-volatile texts and
/// attributes (a provisioning document decoded), SyncML as header fields and one line per
/// command without its `CmdID`; anything else as its text. `rw` is applied to base64-wrapped
/// documents (the provisioning document) once decoded.
pub fn normalize(endpoint: Endpoint, body: &str, rw: &Rewrite) -> Vec<String> {
    if endpoint == Endpoint::Management {
        if let Ok(m) = syncml::parse(body.as_bytes()) {
            let mut out = vec![format!(
                "SyncHdr {} {} session={} target={}",
                m.hdr.ver_dtd, m.hdr.ver_proto, m.hdr.session_id, m.hdr.target.loc_uri
            )];
            for c in &m.body.commands {
                syncml_cmd_line(c, &mut out);
            }
            if m.body.is_final {
                out.push("Final".into());
            }
            return out;
        }
    }
    match crate::xml::parse(body.as_bytes()) {
        Ok(x) => {
            let mut out = Vec::new();
            soap_lines(&x, "", rw, &mut out);
            out
        }
        Err(_) => body.lines().map(str::to_string).collect(),
    }
}

/// The first difference of two normalised answers, or `None`.
pub fn first_difference(recorded: &[String], live: &[String]) -> Option<String> {
    for (i, (r, l)) in recorded.iter().zip(live).enumerate() {
        if r != l {
            return Some(format!("line {}: recorded `{r}`, got `{l}`", i + 1));
        }
    }
    match recorded.len().cmp(&live.len()) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => Some(format!(
            "line {}: recorded `{}`, got nothing more",
            live.len() + 1,
            recorded[live.len()]
        )),
        std::cmp::Ordering::Less => Some(format!(
            "line {}: got `{}`, recorded nothing more",
            recorded.len() + 1,
            live[recorded.len()]
        )),
    }
}

/// CmdIDs (top-level and nested) of a server message's own commands, in order.
fn server_cmd_ids(body: &str) -> (Option<String>, Vec<String>) {
    let Ok(m) = syncml::parse(body.as_bytes()) else {
        return (None, Vec::new());
    };
    fn walk(c: &Command<'_>, out: &mut Vec<String>) {
        if matches!(c, Command::Status(_) | Command::Results(_)) {
            return;
        }
        if let Some(id) = c.cmd_id() {
            out.push(id.to_string());
        }
        if let Command::Atomic(k) | Command::Sequence(k) = c {
            for n in &k.commands {
                walk(n, out);
            }
        }
    }
    let mut ids = Vec::new();
    for c in &m.body.commands {
        walk(c, &mut ids);
    }
    (Some(m.hdr.msg_id.trim().to_string()), ids)
}

/// Renumbering of our MsgIDs and CmdIDs within a session: recorded → live.
#[derive(Debug, Default, Clone)]
pub struct Renumber {
    msg: HashMap<String, String>,
    cmd: HashMap<String, String>,
}

impl Renumber {
    /// Learns from a recorded answer and the live answer to the same message.
    pub fn learn(&mut self, recorded: &str, live: &str) {
        let (rm, rc) = server_cmd_ids(recorded);
        let (lm, lc) = server_cmd_ids(live);
        if let (Some(r), Some(l)) = (rm, lm) {
            self.msg.insert(r, l);
        }
        for (r, l) in rc.into_iter().zip(lc) {
            self.cmd.insert(r, l);
        }
    }

    /// A device message with its `MsgRef`s and `CmdRef`s renumbered.
    pub fn apply(&self, body: &str) -> String {
        let once = replace_tag_values(body, "MsgRef", &self.msg);
        replace_tag_values(&once, "CmdRef", &self.cmd)
    }
}

fn replace_tag_values(body: &str, tag: &str, map: &HashMap<String, String>) -> String {
    if map.is_empty() {
        return body.to_string();
    }
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find(&open) {
        let start = i + open.len();
        let Some(len) = rest[start..].find(&close) else {
            break;
        };
        out.push_str(&rest[..start]);
        let v = &rest[start..start + len];
        out.push_str(map.get(v.trim()).map_or(v, String::as_str));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// The command fragments to queue again before each exchange: (exchange index, command id,
/// SyncML fragment). A command sent in chunks (`MoreData`) is reassembled into one fragment.
pub fn prime_plan(t: &Trace) -> Vec<(usize, String, String)> {
    let mut plan: Vec<(usize, String, String)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, x) in t.exchanges.iter().enumerate() {
        if x.endpoint != Endpoint::Management || x.delivered.is_empty() {
            continue;
        }
        let Ok(m) = syncml::parse(x.response.body.as_bytes()) else {
            continue;
        };
        let ours: Vec<&Command<'_>> = m
            .body
            .commands
            .iter()
            .filter(|c| {
                !matches!(
                    c,
                    Command::Status(_) | Command::Results(_) | Command::Alert(_)
                )
            })
            .collect();
        if ours.len() != x.delivered.len() {
            continue;
        }
        for (c, id) in ours.into_iter().zip(&x.delivered) {
            let mut c = c.clone();
            if let Some(&at) = seen.get(id) {
                // A later chunk: append its data to the fragment planned first.
                if let Command::Replace(i) | Command::Add(i) = &c {
                    if let Some(d) = i.items.first().and_then(|it| it.data.as_ref()) {
                        if let Some(p) = plan.get_mut(at) {
                            p.2 = append_chunk(&p.2, d);
                        }
                    }
                }
                continue;
            }
            strip_chunking(&mut c);
            let mut frag = Vec::new();
            syncml::write_fragment(std::slice::from_ref(&c), &mut frag);
            seen.insert(id.clone(), plan.len());
            plan.push((i, id.clone(), String::from_utf8_lossy(&frag).into_owned()));
        }
    }
    plan
}

fn strip_chunking(c: &mut Command<'_>) {
    if let Command::Replace(i) | Command::Add(i) | Command::Exec(i) = c {
        for it in i.items.iter_mut() {
            it.more_data = false;
            if let Some(m) = it.meta.as_mut() {
                m.size = None;
            }
        }
    }
}

/// Appends `data` to the (single item's) `Data` of a fragment.
fn append_chunk(fragment: &str, data: &str) -> String {
    let Ok(mut cmds) = syncml::parse_fragment(fragment.as_bytes()) else {
        return fragment.to_string();
    };
    let Some(c) = cmds.first_mut() else {
        return fragment.to_string();
    };
    if let Command::Replace(i) | Command::Add(i) = c {
        if let Some(it) = i.items.first_mut() {
            let whole = format!("{}{}", it.data.as_deref().unwrap_or(""), data);
            it.data = Some(whole.into());
        }
    }
    let mut out = Vec::new();
    syncml::write_fragment(std::slice::from_ref(c), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn verdict(x: &Exchange, status: u16, live: &str, rw: &Rewrite) -> Verdict {
    let recorded_fault = x.response.body.contains(":Fault>") || x.response.body.contains("<Fault>");
    let live_fault = live.contains(":Fault>") || live.contains("<Fault>");
    if (status >= 400 && x.status < 400) || (live_fault && !recorded_fault) {
        let why = crate::trace::view::conversation(&[Exchange {
            response: super::format::Message {
                body: live.to_string(),
                ..Default::default()
            },
            ..x.clone()
        }])
        .first()
        .map(|t| t.server.summary.clone())
        .unwrap_or_default();
        let reason = crate::xml::parse(live.as_bytes())
            .ok()
            .and_then(|e| fault_text(&e))
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        return Verdict::Refused(format!("HTTP {status} {why}{reason}").trim().to_string());
    }
    if status != x.status {
        return Verdict::Differs(format!("HTTP {status}, recorded {}", x.status));
    }
    let recorded = normalize(x.endpoint, &rw.apply(&x.response.body), rw);
    let got = normalize(x.endpoint, live, &Rewrite::default());
    match first_difference(&recorded, &got) {
        None => Verdict::Accepted,
        Some(d) => Verdict::Differs(d),
    }
}

/// The `Reason/Text` of a SOAP fault.
fn fault_text(e: &crate::xml::Element) -> Option<String> {
    if e.local == "Text" && !e.text.trim().is_empty() {
        return Some(e.text.trim().chars().take(300).collect());
    }
    e.children.iter().find_map(fault_text)
}

struct Conn {
    cfg: Arc<rustls::ClientConfig>,
}

impl Conn {
    async fn send(
        &self,
        url_origin: &str,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), String> {
        let (host, port) = host_port(&format!("{url_origin}/")).map_err(|e| e.to_string())?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("{host}:{port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}:{port}: no address"))?;
        let ep = net::Endpoint {
            addr,
            host: host.clone(),
        };
        let mut tx = net::connect(&ep, self.cfg.clone())
            .await
            .map_err(|e| e.to_string())?;
        let host_header = format!("{host}:{port}");
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| vec![("content-type", c)])
            .unwrap_or_default();
        net::request(&mut tx, method, &host_header, path, &headers, body)
            .await
            .map_err(|e| e.to_string())
    }
}

fn roots_store(
    roots: &[CertificateDer<'static>],
) -> Result<Arc<rustls::RootCertStore>, ReplayError> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store
            .add(r.clone())
            .map_err(|e| ReplayError::Usage(format!("CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// A fresh request shaped like Windows' (subject `CN=…!<device_id>`, the DeviceID extension),
/// with a new EC P-256 key: (DER request, PKCS#8 key).
fn fresh_csr(device_id: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let (csr, key) =
        crate::ca::testing::try_device_csr(device_id, crate::ca::KeyAlgorithm::EcdsaP256)
            .map_err(|e| e.to_string())?;
    Ok((csr, key.serialize_der()))
}

/// Replays `t` against `opts.server`; one [`Line`] per exchange.
pub async fn replay(t: &Trace, opts: &Options) -> Result<Vec<Line>, ReplayError> {
    let server = opts.server.trim_end_matches('/').to_string();
    origin_of(&server).filter(|o| o == &server).ok_or_else(|| {
        ReplayError::Usage(format!(
            "--server must be https://host[:port], not {server:?}"
        ))
    })?;
    let roots = roots_store(&opts.roots)?;
    let public = Conn {
        cfg: net::tls_client(roots.clone(), None, true)
            .map_err(|e| ReplayError::Usage(e.to_string()))?,
    };
    let old_id = t.header.device_id.clone().unwrap_or_default();
    let new_id = if opts.same_device_id {
        old_id.clone()
    } else {
        opts.device_id
            .clone()
            .unwrap_or_else(|| crate::clock::random_hex(16).to_uppercase())
    };
    let mut rw = Rewrite::default();
    rw.add(&old_id, &new_id);
    for o in recorded_origins(t) {
        rw.add(&o, &server);
    }
    let plan = prime_plan(t);
    let admin = match &opts.admin_token {
        Some(tok) => Some(
            crate::cli::http::Client::new(&server, tok.clone(), opts.roots.clone())
                .map_err(|e| ReplayError::Usage(e.to_string()))?,
        ),
        None => None,
    };
    // Where each endpoint lives on the live server (the discovery answer and the provisioning
    // document say; until then, the recorded path on --server).
    let mut policy_url: Option<String> = None;
    let mut enroll_url: Option<String> = None;
    let mut mgmt: Option<(String, String, Conn)> = None; // (origin, path, mTLS conn)
    if let Some((cert, key)) = &opts.identity {
        let id = (
            CertificateDer::from(cert.clone()),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
        );
        let cfg = net::tls_client(roots.clone(), Some(id), true)
            .map_err(|e| ReplayError::Usage(e.to_string()))?;
        mgmt = Some((server.clone(), String::new(), Conn { cfg }));
    }
    let mut renumber: HashMap<String, Renumber> = HashMap::new();
    let mut lines = Vec::new();
    for (i, x) in t.exchanges.iter().enumerate() {
        let line = |verdict| Line {
            seq: x.seq,
            endpoint: x.endpoint,
            verdict,
        };
        let mut body = rw.apply(&x.request.body);
        if body.contains(REDACTED) {
            if let Some(pw) = &opts.password {
                body = restore_password(&body, pw);
            }
        }
        let ct = x.request.header("content-type").map(str::to_string);
        let (origin, path) = match x.endpoint {
            Endpoint::Policy => policy_url
                .as_deref()
                .and_then(|u| Some((origin_of(u)?, path_of(u))))
                .unwrap_or((server.clone(), x.path.clone())),
            Endpoint::Enrollment => enroll_url
                .as_deref()
                .and_then(|u| Some((origin_of(u)?, path_of(u))))
                .unwrap_or((server.clone(), x.path.clone())),
            _ => (server.clone(), x.path.clone()),
        };
        if body.contains(&format!(">{REDACTED}<")) {
            lines.push(line(Verdict::Skipped(
                "the recording's credentials are redacted; pass --password".into(),
            )));
            continue;
        }
        let mut key_der = None;
        if x.endpoint == Endpoint::Enrollment {
            match fresh_csr(&new_id) {
                Ok((csr, key)) => {
                    body = replace_csr(&body, &csr);
                    key_der = Some(key);
                }
                Err(e) => {
                    lines.push(line(Verdict::Skipped(format!("no key: {e}"))));
                    continue;
                }
            }
        }
        let answer = match x.endpoint {
            Endpoint::Management | Endpoint::Renewal => {
                let Some((m_origin, m_path, conn)) = &mgmt else {
                    lines.push(line(Verdict::Skipped(
                        "no device identity (the trace has no enrollment; pass a certificate and key)"
                            .into(),
                    )));
                    continue;
                };
                let session = x.session_id.clone().unwrap_or_default();
                if x.endpoint == Endpoint::Management {
                    if let Some(r) = renumber.get(&session) {
                        body = r.apply(&body);
                    }
                    if let Some(admin) = &admin {
                        for (_, id, frag) in plan.iter().filter(|p| p.0 == i) {
                            let cmd =
                                serde_json::json!({"syncml": rw.apply(frag), "command_id": id});
                            let path = format!("/api/v1/devices/{new_id}/commands");
                            match admin.request("POST", &path, Some(&cmd)).await {
                                Ok(r) if (200..300).contains(&r.status) => {}
                                Ok(r) => {
                                    tracing::warn!(command_id = %id, status = r.status, body = %String::from_utf8_lossy(&r.body), "replay: command not queued again")
                                }
                                Err(e) => {
                                    tracing::warn!(command_id = %id, error = %e, "replay: command not queued again")
                                }
                            }
                        }
                    }
                }
                let query = x
                    .path
                    .split_once('?')
                    .map(|(_, q)| format!("?{q}"))
                    .unwrap_or_default();
                let p = if m_path.is_empty() || x.endpoint == Endpoint::Renewal {
                    x.path.clone()
                } else {
                    format!("{m_path}{query}")
                };
                conn.send(m_origin, &x.method, &p, ct.as_deref(), body.into_bytes())
                    .await
            }
            _ => {
                public
                    .send(&origin, &x.method, &path, ct.as_deref(), body.into_bytes())
                    .await
            }
        };
        let (status, live) = match answer {
            Ok((s, b)) => (s, String::from_utf8_lossy(&b).into_owned()),
            Err(e) => {
                lines.push(line(Verdict::Refused(format!("no answer: {e}"))));
                continue;
            }
        };
        // Learn what later messages need.
        match x.endpoint {
            Endpoint::Discovery if x.method == "POST" => {
                if let Ok(crate::soap::client::Reply::Ok(d)) =
                    crate::soap::client::parse_discover_response(live.as_bytes())
                {
                    policy_url = Some(d.policy_url.clone()).filter(|u| !u.is_empty());
                    enroll_url = Some(d.enrollment_url.clone()).filter(|u| !u.is_empty());
                }
            }
            Endpoint::Enrollment => {
                if let Ok(crate::soap::client::Reply::Ok(doc)) =
                    crate::soap::client::parse_rstr(live.as_bytes())
                {
                    let doc = String::from_utf8_lossy(&doc).into_owned();
                    if let (Some((cert, addr)), Some(key)) = (provisioning_parts(&doc), key_der) {
                        let id = (
                            CertificateDer::from(cert),
                            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
                        );
                        if let (Ok(cfg), Some(o)) = (
                            net::tls_client(roots.clone(), Some(id), true),
                            origin_of(&addr),
                        ) {
                            // The recorded management URL (the recorded provisioning
                            // document's ADDR, else the device's Target) becomes the live one.
                            let rec_addr =
                                match crate::soap::client::parse_rstr(x.response.body.as_bytes()) {
                                    Ok(crate::soap::client::Reply::Ok(d)) => {
                                        provisioning_parts(&String::from_utf8_lossy(&d))
                                            .map(|(_, a)| a)
                                    }
                                    _ => None,
                                };
                            if let Some(rec) = rec_addr.or_else(|| recorded_mgmt_url(t)) {
                                rw.set(&rec, &addr);
                                if let Some(ro) = origin_of(&rec) {
                                    rw.set(&ro, &o);
                                }
                            }
                            mgmt = Some((o, path_of(&addr), Conn { cfg }));
                        }
                    }
                }
            }
            Endpoint::Management => {
                let session = x.session_id.clone().unwrap_or_default();
                renumber
                    .entry(session)
                    .or_default()
                    .learn(&rw.apply(&x.response.body), &live);
            }
            _ => {}
        }
        // Compare with the recording, renumbered to the live numbering.
        // (`verdict` applies `rw` to the recorded answer.)
        let mut xr = x.clone();
        if x.endpoint == Endpoint::Management {
            let session = x.session_id.clone().unwrap_or_default();
            let r = renumber.get(&session).cloned().unwrap_or_default();
            xr.response.body = renumber_answer(&x.response.body, &r);
        }
        lines.push(line(verdict(&xr, status, &live, &rw)));
    }
    Ok(lines)
}

/// The management URL the recorded device used (its first OMA-DM message's `Target`).
fn recorded_mgmt_url(t: &Trace) -> Option<String> {
    t.exchanges
        .iter()
        .filter(|x| x.endpoint == Endpoint::Management)
        .find_map(|x| {
            let m = syncml::parse(x.request.body.as_bytes()).ok()?;
            Some(m.hdr.target.loc_uri.trim().to_string())
        })
}

/// A recorded answer with our `MsgID` and `CmdID`s renumbered (so only real differences show).
fn renumber_answer(body: &str, r: &Renumber) -> String {
    let once = replace_tag_values(body, "MsgID", &r.msg);
    replace_tag_values(&once, "CmdID", &r.cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_rewrites() {
        assert_eq!(
            origin_of("https://mdm.example.com:8443/EnrollmentServer/Policy.svc").as_deref(),
            Some("https://mdm.example.com:8443")
        );
        let mut rw = Rewrite::default();
        rw.add("https://a", "https://b:9");
        rw.add("https://a:1", "https://c:2");
        assert_eq!(
            rw.apply("x https://a:1/p https://a/q"),
            "x https://c:2/p https://b:9/q"
        );
    }

    #[test]
    fn passwords_come_back_only_where_redacted() {
        let b = "<s:Envelope xmlns:s=\"s\"><wsse:Password xmlns:wsse=\"w\">[redacted]</wsse:Password><x>[redacted]</x></s:Envelope>";
        let r = restore_password(b, "p<w");
        assert!(r.contains(">p&lt;w</wsse:Password>"), "{r}");
        assert!(r.contains("<x>[redacted]</x>"));
    }

    #[test]
    fn volatile_values_are_ignored_in_soap_answers() {
        let a = r#"<s:Envelope xmlns:s="s"><s:Header><a:RelatesTo xmlns:a="a">urn:uuid:1</a:RelatesTo></s:Header><s:Body><X t="2024-01-01T00:00:00Z">AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA</X><Y>kept</Y></s:Body></s:Envelope>"#;
        let b = r#"<s:Envelope xmlns:s="s"><s:Header><a:RelatesTo xmlns:a="a">urn:uuid:2</a:RelatesTo></s:Header><s:Body><X t="2025-02-02T00:00:00Z">BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB</X><Y>kept</Y></s:Body></s:Envelope>"#;
        let none = Rewrite::default();
        let na = normalize(Endpoint::Enrollment, a, &none);
        assert_eq!(
            first_difference(&na, &normalize(Endpoint::Enrollment, b, &none)),
            None
        );
        let c = b.replace("<Y>kept</Y>", "<Y>changed</Y>");
        let d = first_difference(&na, &normalize(Endpoint::Enrollment, &c, &none)).unwrap();
        assert!(d.contains("kept") && d.contains("changed"), "{d}");
    }

    #[test]
    fn device_refs_follow_the_live_numbering() {
        let hdr = |m: u32| {
            format!(
                r#"<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>{m}</MsgID><Target><LocURI>D</LocURI></Target><Source><LocURI>S</LocURI></Source></SyncHdr>"#
            )
        };
        let rec = format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Get><CmdID>4</CmdID><Item><Target><LocURI>./a</LocURI></Target></Item></Get><Final/></SyncBody></SyncML>"#,
            hdr(1)
        );
        let live = format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2">{}<SyncBody><Get><CmdID>7</CmdID><Item><Target><LocURI>./a</LocURI></Target></Item></Get><Final/></SyncBody></SyncML>"#,
            hdr(2)
        );
        let mut r = Renumber::default();
        r.learn(&rec, &live);
        let dev = "<Status><MsgRef>1</MsgRef><CmdRef>4</CmdRef></Status><Status><MsgRef>1</MsgRef><CmdRef>0</CmdRef></Status>";
        assert_eq!(
            r.apply(dev),
            "<Status><MsgRef>2</MsgRef><CmdRef>7</CmdRef></Status><Status><MsgRef>2</MsgRef><CmdRef>0</CmdRef></Status>"
        );
        assert_eq!(
            first_difference(
                &normalize(
                    Endpoint::Management,
                    &renumber_answer(&rec, &r),
                    &Rewrite::default()
                ),
                &normalize(Endpoint::Management, &live, &Rewrite::default())
            ),
            None
        );
    }
}
