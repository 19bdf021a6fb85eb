//! [`SyncMl`] → bytes. Deterministic, no white space between elements, no XML declaration,
//! children in OMA DTD order, `xmlns="syncml:metinf"` on every `Meta` child as Windows expects.
//! Text escapes `&`, `<`, `>` and CR (as `&#13;`, so it survives XML line-end normalisation).
//!
//! The same code computes the exact output size ([`written_len`], [`Command::written_len`]), so
//! `written_len(msg) == written_len(&envelope) + Σ cmd.written_len()` where `envelope` is `msg`
//! without commands: the management layer can fill a message up to the device's `MaxMsgSize`.

use super::scan::find_any;
use super::types::*;

/// Where output goes: a buffer, or a counter for [`written_len`].
trait Sink {
    fn raw(&mut self, s: &str);
    fn text(&mut self, s: &str);
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn raw(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }

    #[inline]
    fn text(&mut self, s: &str) {
        let b = s.as_bytes();
        let mut i = 0;
        while let Some(j) = find_any(b, i, [b'&', b'<', b'>', b'\r']) {
            self.extend_from_slice(&b[i..j]);
            self.extend_from_slice(match b[j] {
                b'&' => b"&amp;",
                b'<' => b"&lt;",
                b'>' => b"&gt;",
                _ => b"&#13;",
            });
            i = j + 1;
        }
        self.extend_from_slice(&b[i..]);
    }
}

struct Counter(usize);

impl Sink for Counter {
    #[inline(always)]
    fn raw(&mut self, s: &str) {
        self.0 += s.len();
    }

    #[inline]
    fn text(&mut self, s: &str) {
        let b = s.as_bytes();
        let mut n = b.len();
        let mut i = 0;
        while let Some(j) = find_any(b, i, [b'&', b'<', b'>', b'\r']) {
            n += if b[j] == b'<' || b[j] == b'>' { 3 } else { 4 };
            i = j + 1;
        }
        self.0 += n;
    }
}

/// Appends `msg` to `out` (which is not cleared, so a buffer can be reused).
///
/// ```
/// use winmdm::syncml::*;
/// let mut msg = SyncMl::default();
/// msg.hdr.ver_dtd = "1.2".into();
/// msg.hdr.ver_proto = "DM/1.2".into();
/// msg.hdr.session_id = "1".into();
/// msg.hdr.msg_id = "1".into();
/// msg.hdr.target = Location::new("DEVICE1");
/// msg.hdr.source = Location::new("https://mdm.example/MDM.svc");
/// let item = Item { target: Some(Location::new("./DevDetail/SwV")), ..Item::default() };
/// msg.body.commands.push(Command::Get(ItemCommand::new("2", [item])));
/// msg.body.is_final = true;
/// let mut out = Vec::new();
/// write(&msg, &mut out);
/// assert_eq!(out.len(), written_len(&msg));
/// assert!(out.starts_with(br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD>"#));
/// assert!(out.ends_with(b"<Get><CmdID>2</CmdID><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item></Get><Final/></SyncBody></SyncML>"));
/// assert_eq!(parse(&out)?, msg);
/// # Ok::<(), ParseError>(())
/// ```
pub fn write(msg: &SyncMl<'_>, out: &mut Vec<u8>) {
    w_msg(msg, out);
}

/// The exact number of bytes [`write()`] appends for `msg`.
pub fn written_len(msg: &SyncMl<'_>) -> usize {
    let mut c = Counter(0);
    w_msg(msg, &mut c);
    c.0
}

/// Appends commands without an envelope (the form [`parse_fragment`](super::parse_fragment)
/// reads).
pub fn write_fragment(cmds: &[Command<'_>], out: &mut Vec<u8>) {
    for c in cmds {
        w_cmd(c, out);
    }
}

impl Command<'_> {
    /// The exact number of bytes this command adds to a written message.
    pub fn written_len(&self) -> usize {
        let mut c = Counter(0);
        w_cmd(self, &mut c);
        c.0
    }

    /// Appends this command alone.
    pub fn write(&self, out: &mut Vec<u8>) {
        w_cmd(self, out);
    }
}

impl SyncMl<'_> {
    /// Writes the message into a new buffer of the exact size.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(written_len(self));
        write(self, &mut out);
        out
    }
}

macro_rules! leaf {
    ($s:expr, $tag:literal, $v:expr) => {{
        $s.raw(concat!("<", $tag, ">"));
        $s.text($v);
        $s.raw(concat!("</", $tag, ">"));
    }};
}

macro_rules! opt_leaf {
    ($s:expr, $tag:literal, $v:expr) => {
        if let Some(v) = $v {
            leaf!($s, $tag, v);
        }
    };
}

macro_rules! meta_leaf {
    ($s:expr, $tag:literal, $v:expr) => {
        if let Some(v) = $v {
            $s.raw(concat!("<", $tag, " xmlns=\"syncml:metinf\">"));
            $s.text(v);
            $s.raw(concat!("</", $tag, ">"));
        }
    };
}

fn w_msg<S: Sink>(m: &SyncMl<'_>, s: &mut S) {
    s.raw("<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr>");
    let h = &m.hdr;
    leaf!(s, "VerDTD", &h.ver_dtd);
    leaf!(s, "VerProto", &h.ver_proto);
    leaf!(s, "SessionID", &h.session_id);
    leaf!(s, "MsgID", &h.msg_id);
    w_loc(s, "<Target>", "</Target>", &h.target);
    w_loc(s, "<Source>", "</Source>", &h.source);
    opt_leaf!(s, "RespURI", &h.resp_uri);
    if h.no_resp {
        s.raw("<NoResp/>");
    }
    w_cred(s, &h.cred);
    w_meta(s, &h.meta);
    s.raw("</SyncHdr><SyncBody>");
    for c in &m.body.commands {
        w_cmd(c, s);
    }
    if m.body.is_final {
        s.raw("<Final/>");
    }
    s.raw("</SyncBody></SyncML>");
}

#[inline]
fn w_loc<S: Sink>(s: &mut S, open: &str, close: &str, l: &Location<'_>) {
    s.raw(open);
    leaf!(s, "LocURI", &l.loc_uri);
    opt_leaf!(s, "LocName", &l.loc_name);
    s.raw(close);
}

fn w_cred<S: Sink>(s: &mut S, c: &Option<Cred<'_>>) {
    if let Some(c) = c {
        s.raw("<Cred>");
        w_meta(s, &c.meta);
        leaf!(s, "Data", &c.data);
        s.raw("</Cred>");
    }
}

#[inline]
fn w_meta<S: Sink>(s: &mut S, m: &Option<Meta<'_>>) {
    if let Some(m) = m {
        w_meta_el(s, m);
    }
}

fn w_meta_el<S: Sink>(s: &mut S, m: &Meta<'_>) {
    s.raw("<Meta>");
    meta_leaf!(s, "Format", &m.format);
    meta_leaf!(s, "Type", &m.ty);
    meta_leaf!(s, "Mark", &m.mark);
    meta_leaf!(s, "Size", &m.size);
    meta_leaf!(s, "Version", &m.version);
    meta_leaf!(s, "NextNonce", &m.next_nonce);
    meta_leaf!(s, "MaxMsgSize", &m.max_msg_size);
    meta_leaf!(s, "MaxObjSize", &m.max_obj_size);
    s.raw("</Meta>");
}

fn w_items<S: Sink>(s: &mut S, items: &[Item<'_>]) {
    for it in items {
        s.raw("<Item>");
        if let Some(t) = &it.target {
            w_loc(s, "<Target>", "</Target>", t);
        }
        if let Some(t) = &it.source {
            w_loc(s, "<Source>", "</Source>", t);
        }
        w_meta(s, &it.meta);
        opt_leaf!(s, "Data", &it.data);
        if it.more_data {
            s.raw("<MoreData/>");
        }
        s.raw("</Item>");
    }
}

fn w_refs<S: Sink>(s: &mut S, t: &[Text<'_>], src: &[Text<'_>]) {
    for r in t {
        leaf!(s, "TargetRef", r);
    }
    for r in src {
        leaf!(s, "SourceRef", r);
    }
}

fn w_cmd<S: Sink>(c: &Command<'_>, s: &mut S) {
    let name = c.name();
    s.raw("<");
    s.raw(name);
    s.raw(">");
    match c {
        Command::Alert(a) => {
            opt_leaf!(s, "CmdID", &a.cmd_id);
            if a.no_resp {
                s.raw("<NoResp/>");
            }
            w_cred(s, &a.cred);
            opt_leaf!(s, "Data", &a.data);
            opt_leaf!(s, "Correlator", &a.correlator);
            w_items(s, &a.items);
        }
        Command::Status(st) => {
            opt_leaf!(s, "CmdID", &st.cmd_id);
            leaf!(s, "MsgRef", &st.msg_ref);
            leaf!(s, "CmdRef", &st.cmd_ref);
            leaf!(s, "Cmd", &st.cmd);
            w_refs(s, &st.target_refs, &st.source_refs);
            w_cred(s, &st.cred);
            if let Some(ch) = &st.chal {
                s.raw("<Chal>");
                w_meta_el(s, &ch.meta);
                s.raw("</Chal>");
            }
            leaf!(s, "Data", &st.data);
            w_items(s, &st.items);
        }
        Command::Results(r) => {
            opt_leaf!(s, "CmdID", &r.cmd_id);
            opt_leaf!(s, "MsgRef", &r.msg_ref);
            leaf!(s, "CmdRef", &r.cmd_ref);
            w_meta(s, &r.meta);
            w_refs(s, &r.target_refs, &r.source_refs);
            w_items(s, &r.items);
        }
        Command::Get(x)
        | Command::Add(x)
        | Command::Replace(x)
        | Command::Delete(x)
        | Command::Exec(x)
        | Command::Copy(x) => {
            opt_leaf!(s, "CmdID", &x.cmd_id);
            if x.no_resp {
                s.raw("<NoResp/>");
            }
            w_cred(s, &x.cred);
            w_meta(s, &x.meta);
            opt_leaf!(s, "Correlator", &x.correlator);
            w_items(s, &x.items);
        }
        Command::Atomic(x) | Command::Sequence(x) => {
            opt_leaf!(s, "CmdID", &x.cmd_id);
            if x.no_resp {
                s.raw("<NoResp/>");
            }
            w_meta(s, &x.meta);
            for c in &x.commands {
                w_cmd(c, s);
            }
        }
    }
    s.raw("</");
    s.raw(name);
    s.raw(">");
}
