//! The SyncML element grammar on top of the parser core in [`super::parse`]: which children each
//! element takes, which are required, which may repeat. Order of children is not enforced.

use super::error::ParseError;
use super::reader::{unexpected, El, Parser, R};
use super::types::*;

pub(super) fn missing(element: &'static str) -> Box<ParseError> {
    Box::new(ParseError::MissingElement {
        path: String::new(),
        element,
    })
}

pub(super) fn set_once<T>(slot: &mut Option<T>, v: T, at: usize, name: &'static str) -> R<()> {
    if slot.is_some() {
        return Err(ParseError::DuplicateElement {
            path: String::new(),
            element: name,
            offset: at,
        }
        .into());
    }
    *slot = Some(v);
    Ok(())
}

pub(super) fn set_flag(slot: &mut bool, el: &El<'_>, name: &'static str) -> R<()> {
    if *slot {
        return Err(ParseError::DuplicateElement {
            path: String::new(),
            element: name,
            offset: el.at,
        }
        .into());
    }
    *slot = true;
    Ok(())
}

impl<'a> Parser<'a, '_> {
    pub(super) fn syncml(&mut self, root: &El<'a>) -> R<SyncMl<'a>> {
        let mut hdr = None;
        let mut body = None;
        while let Some(el) = self.child(root)? {
            match (el.local, el.ns.is_syncml()) {
                ("SyncHdr", true) => {
                    let at = el.at;
                    let h = self.within(el, Parser::hdr)?;
                    set_once(&mut hdr, h, at, "SyncHdr")?;
                }
                ("SyncBody", true) => {
                    let at = el.at;
                    let b = self.within(el, Parser::body)?;
                    if body.is_some() {
                        return Err(ParseError::DuplicateElement {
                            path: String::new(),
                            element: "SyncBody",
                            offset: at,
                        }
                        .into());
                    }
                    body = Some(b);
                }
                _ => return Err(unexpected(&el)),
            }
        }
        Ok(SyncMl {
            hdr: hdr.ok_or_else(|| missing("SyncHdr"))?,
            body: body.ok_or_else(|| missing("SyncBody"))?,
        })
    }

    pub(super) fn hdr(&mut self, hdr_el: &El<'a>) -> R<SyncHdr<'a>> {
        let (mut ver_dtd, mut ver_proto, mut session_id, mut msg_id) = (None, None, None, None);
        let (mut target, mut source, mut resp_uri, mut cred, mut meta) =
            (None, None, None, None, None);
        let mut no_resp = false;
        while let Some(el) = self.child(hdr_el)? {
            if !el.ns.is_syncml() {
                return Err(unexpected(&el));
            }
            match el.local {
                "VerDTD" => self.leaf(el, &mut ver_dtd, "VerDTD")?,
                "VerProto" => self.leaf(el, &mut ver_proto, "VerProto")?,
                "SessionID" => self.leaf(el, &mut session_id, "SessionID")?,
                "MsgID" => self.leaf(el, &mut msg_id, "MsgID")?,
                "RespURI" => self.leaf(el, &mut resp_uri, "RespURI")?,
                "Target" => {
                    let at = el.at;
                    let v = self.within_loc(el)?;
                    set_once(&mut target, v, at, "Target")?;
                }
                "Source" => {
                    let at = el.at;
                    let v = self.within_loc(el)?;
                    set_once(&mut source, v, at, "Source")?;
                }
                "NoResp" => {
                    set_flag(&mut no_resp, &el, "NoResp")?;
                    self.flag(el)?;
                }
                "Cred" => self.cred(el, &mut cred)?,
                "Meta" => self.meta(el, &mut meta)?,
                _ => return Err(unexpected(&el)),
            }
        }
        Ok(SyncHdr {
            ver_dtd: ver_dtd.ok_or_else(|| missing("VerDTD"))?,
            ver_proto: ver_proto.ok_or_else(|| missing("VerProto"))?,
            session_id: session_id.ok_or_else(|| missing("SessionID"))?,
            msg_id: msg_id.ok_or_else(|| missing("MsgID"))?,
            target: target.ok_or_else(|| missing("Target"))?,
            source: source.ok_or_else(|| missing("Source"))?,
            resp_uri,
            no_resp,
            cred,
            meta,
        })
    }

    /// A leaf text element stored in a single-valued slot.
    #[inline]
    pub(super) fn leaf(
        &mut self,
        el: El<'a>,
        slot: &mut Option<Text<'a>>,
        name: &'static str,
    ) -> R<()> {
        if slot.is_some() {
            return Err(ParseError::DuplicateElement {
                path: String::new(),
                element: name,
                offset: el.at,
            }
            .into());
        }
        *slot = Some(self.text(el)?);
        Ok(())
    }

    /// `Target`/`Source`.
    pub(super) fn within_loc(&mut self, el: El<'a>) -> R<Location<'a>> {
        self.within(el, |p, loc_el| {
            let (mut uri, mut name) = (None, None);
            while let Some(c) = p.child(loc_el)? {
                match (c.local, c.ns.is_syncml()) {
                    ("LocURI", true) => p.leaf(c, &mut uri, "LocURI")?,
                    ("LocName", true) => p.leaf(c, &mut name, "LocName")?,
                    _ => return Err(unexpected(&c)),
                }
            }
            Ok(Location {
                loc_uri: uri.ok_or_else(|| missing("LocURI"))?,
                loc_name: name,
            })
        })
    }

    pub(super) fn cred(&mut self, el: El<'a>, slot: &mut Option<Cred<'a>>) -> R<()> {
        if slot.is_some() {
            return Err(ParseError::DuplicateElement {
                path: String::new(),
                element: "Cred",
                offset: el.at,
            }
            .into());
        }
        let c = self.within(el, |p, cred_el| {
            let (mut meta, mut data) = (None, None);
            while let Some(c) = p.child(cred_el)? {
                match (c.local, c.ns.is_syncml()) {
                    ("Meta", true) => p.meta(c, &mut meta)?,
                    ("Data", true) => p.leaf(c, &mut data, "Data")?,
                    _ => return Err(unexpected(&c)),
                }
            }
            Ok(Cred {
                meta,
                data: data.ok_or_else(|| missing("Data"))?,
            })
        })?;
        *slot = Some(c);
        Ok(())
    }

    pub(super) fn meta(&mut self, el: El<'a>, slot: &mut Option<Meta<'a>>) -> R<()> {
        if slot.is_some() {
            return Err(ParseError::DuplicateElement {
                path: String::new(),
                element: "Meta",
                offset: el.at,
            }
            .into());
        }
        let m = slot.insert(Meta::default());
        self.within(el, |p, e| p.meta_content(e, m))
    }

    pub(super) fn meta_content(&mut self, meta_el: &El<'a>, m: &mut Meta<'a>) -> R<()> {
        while let Some(c) = self.child(meta_el)? {
            if !c.ns.is_meta_child() {
                return Err(unexpected(&c));
            }
            match c.local {
                "Format" => self.leaf(c, &mut m.format, "Format")?,
                "Type" => self.leaf(c, &mut m.ty, "Type")?,
                "Mark" => self.leaf(c, &mut m.mark, "Mark")?,
                "Size" => self.leaf(c, &mut m.size, "Size")?,
                "Version" => self.leaf(c, &mut m.version, "Version")?,
                "NextNonce" => self.leaf(c, &mut m.next_nonce, "NextNonce")?,
                "MaxMsgSize" => self.leaf(c, &mut m.max_msg_size, "MaxMsgSize")?,
                "MaxObjSize" => self.leaf(c, &mut m.max_obj_size, "MaxObjSize")?,
                _ => return Err(unexpected(&c)),
            }
        }
        Ok(())
    }

    pub(super) fn body(&mut self, body_el: &El<'a>) -> R<SyncBody<'a>> {
        let mut body = SyncBody::default();
        while let Some(el) = self.child(body_el)? {
            if body.is_final {
                return Err(unexpected(&el));
            }
            if el.local == "Final" && el.ns.is_syncml() {
                self.flag(el)?;
                body.is_final = true;
                continue;
            }
            if let Some(el) = self.command(el, &mut body.commands)? {
                return Err(unexpected(&el));
            }
        }
        Ok(body)
    }

    pub(super) fn item(&mut self, item_el: &El<'a>, it: &mut Item<'a>) -> R<()> {
        while let Some(el) = self.child(item_el)? {
            if !el.ns.is_syncml() {
                return Err(unexpected(&el));
            }
            match el.local {
                "Target" => {
                    let at = el.at;
                    let v = self.within_loc(el)?;
                    set_once(&mut it.target, v, at, "Target")?;
                }
                "Source" => {
                    let at = el.at;
                    let v = self.within_loc(el)?;
                    set_once(&mut it.source, v, at, "Source")?;
                }
                "Meta" => self.meta(el, &mut it.meta)?,
                "Data" => self.leaf(el, &mut it.data, "Data")?,
                "MoreData" => {
                    set_flag(&mut it.more_data, &el, "MoreData")?;
                    self.flag(el)?;
                }
                _ => return Err(unexpected(&el)),
            }
        }
        Ok(())
    }
}
