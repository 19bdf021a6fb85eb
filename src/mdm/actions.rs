//! Device actions (`POST /api/v1/devices/{id}/actions`): named, canned commands queued like any
//! other (PROTOCOL.md §7). An action's id is its command's id, `<action>-<random hex>`, so its
//! state is the command's state.

use crate::app::App;
use crate::store::{CommandRecord, Enqueued};

use super::commands::{enqueue, CommandError, NewCommand};

/// What an admin can ask a device to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// RemoteWipe `doWipe` (Reset this PC).
    Wipe,
    /// RemoteWipe `doWipeProtected` (survives power loss mid-wipe).
    WipeProtected,
    /// Reboot `RebootNow`.
    Reboot,
    /// DMClient `Unenroll`: the device then sends the 1226 unenrollment alert.
    Retire,
    /// A harmless `Get ./DevDetail/SwV`, to make the device answer.
    Sync,
}

impl Action {
    /// Every action, longest name first (so id prefixes are unambiguous).
    pub const ALL: [Action; 5] = [
        Action::WipeProtected,
        Action::Wipe,
        Action::Reboot,
        Action::Retire,
        Action::Sync,
    ];

    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Wipe => "wipe",
            Action::WipeProtected => "wipe-protected",
            Action::Reboot => "reboot",
            Action::Retire => "retire",
            Action::Sync => "sync",
        }
    }

    /// Parses an API name.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The action an action id (a command id) belongs to.
    pub fn of_id(id: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| {
            id.strip_prefix(a.name())
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit()))
        })
    }

    /// Whether a still-unanswered action of the same kind is reused instead of queuing another.
    pub fn is_destructive(self) -> bool {
        matches!(self, Action::Wipe | Action::WipeProtected | Action::Retire)
    }

    /// The command (without id) for a server whose DMClient provider id is `provider_id`.
    pub fn command(self, provider_id: &str) -> NewCommand {
        let exec = |target: String, format: &str, data: Option<&str>| NewCommand {
            verb: Some("Exec".into()),
            target: Some(target),
            format: Some(format.into()),
            data: data.map(str::to_string),
            ..NewCommand::default()
        };
        match self {
            Action::Wipe => exec(
                "./Device/Vendor/MSFT/RemoteWipe/doWipe".into(),
                "chr",
                Some("1"),
            ),
            Action::WipeProtected => exec(
                "./Device/Vendor/MSFT/RemoteWipe/doWipeProtected".into(),
                "chr",
                Some("1"),
            ),
            Action::Reboot => exec("./Device/Vendor/MSFT/Reboot/RebootNow".into(), "null", None),
            Action::Retire => exec(
                format!("./Vendor/MSFT/DMClient/Provider/{provider_id}/Unenroll"),
                "chr",
                Some("1"),
            ),
            Action::Sync => NewCommand {
                verb: Some("Get".into()),
                target: Some("./DevDetail/SwV".into()),
                ..NewCommand::default()
            },
        }
    }
}

/// Serialises the check-then-queue of destructive actions within this process.
static QUEUE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Queues `action` for an enrolled device; a destructive action still unanswered is returned
/// as [`Enqueued::Existing`] instead of queuing a second one.
pub fn request(app: &App, device_id: &str, action: Action) -> Result<Enqueued, CommandError> {
    let mut cmd = action.command(&app.cfg.provider_id);
    let _g = QUEUE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if action.is_destructive() && app.store.get_device(device_id)?.is_some() {
        if let Some(c) = app
            .store
            .queued(device_id)?
            .into_iter()
            .find(|c| Action::of_id(&c.command_id) == Some(action))
        {
            return Ok(Enqueued::Existing(c));
        }
    }
    cmd.command_id = Some(format!(
        "{}-{}",
        action.name(),
        crate::clock::random_hex(12)
    ));
    enqueue(app, device_id, cmd)
}

/// An action as the API shows it.
#[derive(Debug, serde::Serialize)]
pub struct ActionView {
    /// The action id (its command id).
    pub action_id: String,
    /// The action name.
    pub action: &'static str,
    /// The command's state.
    pub state: crate::store::CommandState,
    /// The device's Status code.
    pub status: Option<u16>,
    /// When it was requested.
    pub created_at: i64,
    /// When the device answered (or it was cancelled).
    pub completed_at: Option<i64>,
}

impl ActionView {
    /// The view of a command that is an action, `None` for other commands.
    pub fn of(c: &CommandRecord) -> Option<ActionView> {
        let action = Action::of_id(&c.command_id)?;
        Some(ActionView {
            action_id: c.command_id.clone(),
            action: action.name(),
            state: c.state,
            status: c.status,
            created_at: c.created_at,
            completed_at: c.completed_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.name()), Some(a));
            assert_eq!(Action::of_id(&format!("{}-0a1b2c", a.name())), Some(a));
            let c = crate::mdm::commands::prepare("D", a.command("winmdm"), 1).unwrap();
            assert!(c.target.is_some());
        }
        assert_eq!(Action::parse("format-c"), None);
        assert_eq!(
            Action::of_id("wipe-protected-00ff"),
            Some(Action::WipeProtected)
        );
        assert_eq!(Action::of_id("wipe-"), None);
        assert_eq!(Action::of_id("wipe-xyz"), None);
        assert_eq!(Action::of_id("swv-1"), None);
    }
}
