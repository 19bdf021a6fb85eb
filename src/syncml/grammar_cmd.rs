//! Grammar of the SyncBody commands (OMA SyncML RepPro 1.2.2 §6.6): which children each command
//! takes, which are required. Companion of [`super::grammar`].

use super::error::ParseError;
use super::grammar::{missing, set_flag};
use super::reader::{unexpected, El, Parser, R};
use super::types::*;

impl<'a> Parser<'a, '_> {
    /// Parses a command element into `out` (in place: commands are large); gives the element
    /// back if it is not a command.
    pub(super) fn command(&mut self, el: El<'a>, out: &mut Vec<Command<'a>>) -> R<Option<El<'a>>> {
        if !el.ns.is_syncml() {
            return Ok(Some(el));
        }
        let cmd = match el.local {
            "Get" => Command::Get(ItemCommand::default()),
            "Add" => Command::Add(ItemCommand::default()),
            "Replace" => Command::Replace(ItemCommand::default()),
            "Delete" => Command::Delete(ItemCommand::default()),
            "Exec" => Command::Exec(ItemCommand::default()),
            "Copy" => Command::Copy(ItemCommand::default()),
            "Alert" => Command::Alert(Alert::default()),
            "Status" => Command::Status(Status::default()),
            "Results" => Command::Results(Results::default()),
            "Atomic" => Command::Atomic(Container::default()),
            "Sequence" => Command::Sequence(Container::default()),
            _ => return Ok(Some(el)),
        };
        self.commands += 1;
        if self.commands > self.limits.max_commands {
            return Err(ParseError::TooManyCommands {
                path: String::new(),
                max: self.limits.max_commands,
            }
            .into());
        }
        out.push(cmd);
        let Some(cmd) = out.last_mut() else {
            return Ok(None);
        };
        match cmd {
            Command::Exec(c) => self.within(el, |p, e| p.item_command(e, true, c))?,
            Command::Get(c)
            | Command::Add(c)
            | Command::Replace(c)
            | Command::Delete(c)
            | Command::Copy(c) => self.within(el, |p, e| p.item_command(e, false, c))?,
            Command::Alert(c) => self.within(el, |p, e| p.alert(e, c))?,
            Command::Status(c) => self.within(el, |p, e| p.status(e, c))?,
            Command::Results(c) => self.within(el, |p, e| p.results(e, c))?,
            Command::Atomic(c) | Command::Sequence(c) => {
                self.within(el, |p, e| p.container(e, c))?
            }
        }
        Ok(None)
    }

    pub(super) fn check_cmd_id(&self, cmd_id: &Option<Text<'a>>) -> R<()> {
        if cmd_id.is_none() && !self.fragment {
            return Err(missing("CmdID"));
        }
        Ok(())
    }

    pub(super) fn push_item(&mut self, el: El<'a>, items: &mut List<Item<'a>>) -> R<()> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(ParseError::TooManyItems {
                path: String::new(),
                max: self.limits.max_items,
            }
            .into());
        }
        items.push(Item::default());
        match items.last_mut() {
            Some(it) => self.within(el, |p, e| p.item(e, it)),
            None => Ok(()),
        }
    }

    pub(super) fn item_command(
        &mut self,
        cmd_el: &El<'a>,
        exec: bool,
        c: &mut ItemCommand<'a>,
    ) -> R<()> {
        while let Some(el) = self.child(cmd_el)? {
            if !el.ns.is_syncml() {
                return Err(unexpected(&el));
            }
            match el.local {
                "CmdID" => self.leaf(el, &mut c.cmd_id, "CmdID")?,
                "NoResp" => {
                    set_flag(&mut c.no_resp, &el, "NoResp")?;
                    self.flag(el)?;
                }
                "Cred" => self.cred(el, &mut c.cred)?,
                "Meta" => self.meta(el, &mut c.meta)?,
                "Correlator" if exec => self.leaf(el, &mut c.correlator, "Correlator")?,
                "Item" => self.push_item(el, &mut c.items)?,
                _ => return Err(unexpected(&el)),
            }
        }
        self.check_cmd_id(&c.cmd_id)?;
        if c.items.is_empty() {
            return Err(missing("Item"));
        }
        Ok(())
    }

    pub(super) fn alert(&mut self, cmd_el: &El<'a>, c: &mut Alert<'a>) -> R<()> {
        while let Some(el) = self.child(cmd_el)? {
            if !el.ns.is_syncml() {
                return Err(unexpected(&el));
            }
            match el.local {
                "CmdID" => self.leaf(el, &mut c.cmd_id, "CmdID")?,
                "NoResp" => {
                    set_flag(&mut c.no_resp, &el, "NoResp")?;
                    self.flag(el)?;
                }
                "Cred" => self.cred(el, &mut c.cred)?,
                "Data" => self.leaf(el, &mut c.data, "Data")?,
                "Correlator" => self.leaf(el, &mut c.correlator, "Correlator")?,
                "Item" => self.push_item(el, &mut c.items)?,
                _ => return Err(unexpected(&el)),
            }
        }
        self.check_cmd_id(&c.cmd_id)?;
        Ok(())
    }

    pub(super) fn status(&mut self, cmd_el: &El<'a>, s: &mut Status<'a>) -> R<()> {
        let mut cmd_id = None;
        let (mut msg_ref, mut cmd_ref, mut cmd, mut data) = (None, None, None, None);
        while let Some(el) = self.child(cmd_el)? {
            if !el.ns.is_syncml() {
                return Err(unexpected(&el));
            }
            match el.local {
                "CmdID" => self.leaf(el, &mut cmd_id, "CmdID")?,
                "MsgRef" => self.leaf(el, &mut msg_ref, "MsgRef")?,
                "CmdRef" => self.leaf(el, &mut cmd_ref, "CmdRef")?,
                "Cmd" => self.leaf(el, &mut cmd, "Cmd")?,
                "TargetRef" => {
                    let t = self.text(el)?;
                    s.target_refs.push(t);
                }
                "SourceRef" => {
                    let t = self.text(el)?;
                    s.source_refs.push(t);
                }
                "Cred" => self.cred(el, &mut s.cred)?,
                "Chal" => {
                    if s.chal.is_some() {
                        return Err(ParseError::DuplicateElement {
                            path: String::new(),
                            element: "Chal",
                            offset: el.at,
                        }
                        .into());
                    }
                    let chal = self.within(el, |p, chal_el| {
                        let mut meta = None;
                        while let Some(c) = p.child(chal_el)? {
                            match (c.local, c.ns.is_syncml()) {
                                ("Meta", true) => p.meta(c, &mut meta)?,
                                _ => return Err(unexpected(&c)),
                            }
                        }
                        Ok(Chal {
                            meta: meta.ok_or_else(|| missing("Meta"))?,
                        })
                    })?;
                    s.chal = Some(chal);
                }
                "Data" => self.leaf(el, &mut data, "Data")?,
                "Item" => self.push_item(el, &mut s.items)?,
                _ => return Err(unexpected(&el)),
            }
        }
        self.check_cmd_id(&cmd_id)?;
        s.cmd_id = cmd_id;
        s.msg_ref = msg_ref.ok_or_else(|| missing("MsgRef"))?;
        s.cmd_ref = cmd_ref.ok_or_else(|| missing("CmdRef"))?;
        s.cmd = cmd.ok_or_else(|| missing("Cmd"))?;
        s.data = data.ok_or_else(|| missing("Data"))?;
        Ok(())
    }

    pub(super) fn results(&mut self, cmd_el: &El<'a>, r: &mut Results<'a>) -> R<()> {
        let mut cmd_ref = None;
        while let Some(el) = self.child(cmd_el)? {
            if !el.ns.is_syncml() {
                return Err(unexpected(&el));
            }
            match el.local {
                "CmdID" => self.leaf(el, &mut r.cmd_id, "CmdID")?,
                "MsgRef" => self.leaf(el, &mut r.msg_ref, "MsgRef")?,
                "CmdRef" => self.leaf(el, &mut cmd_ref, "CmdRef")?,
                "Meta" => self.meta(el, &mut r.meta)?,
                "TargetRef" => {
                    let t = self.text(el)?;
                    r.target_refs.push(t);
                }
                "SourceRef" => {
                    let t = self.text(el)?;
                    r.source_refs.push(t);
                }
                "Item" => self.push_item(el, &mut r.items)?,
                _ => return Err(unexpected(&el)),
            }
        }
        self.check_cmd_id(&r.cmd_id)?;
        r.cmd_ref = cmd_ref.ok_or_else(|| missing("CmdRef"))?;
        if r.items.is_empty() {
            return Err(missing("Item"));
        }
        Ok(())
    }

    pub(super) fn container(&mut self, cmd_el: &El<'a>, c: &mut Container<'a>) -> R<()> {
        while let Some(el) = self.child(cmd_el)? {
            if el.ns.is_syncml() {
                match el.local {
                    "CmdID" => {
                        self.leaf(el, &mut c.cmd_id, "CmdID")?;
                        continue;
                    }
                    "NoResp" => {
                        set_flag(&mut c.no_resp, &el, "NoResp")?;
                        self.flag(el)?;
                        continue;
                    }
                    "Meta" => {
                        self.meta(el, &mut c.meta)?;
                        continue;
                    }
                    _ => {}
                }
            }
            if let Some(el) = self.command(el, &mut c.commands)? {
                return Err(unexpected(&el));
            }
        }
        self.check_cmd_id(&c.cmd_id)?;
        if c.commands.is_empty() {
            return Err(missing("command"));
        }
        Ok(())
    }
}
