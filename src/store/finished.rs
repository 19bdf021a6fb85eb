//! The index of finished commands by the time they are due for the history sweep
//! ([`crate::mdm::retention`]), so that a sweep reads only the commands it deletes, not the
//! whole history.
//!
//! One generic record ([`KIND`], no value) per finished command, keyed
//! `due (16 hex digits) \0 device \0 command id`: key order is due order. [`super::tx::put_command`]
//! adds the entry, in the transaction that records the final state, with `due` = the time the
//! command finished ([`CommandRecord::finished_at`]); [`super::tx::delete_finished`] removes it
//! with the command. The sweep may move an entry to a later `due` (a command a deployment still
//! needs is looked at again one retention later) and drops entries whose command is gone.
//!
//! The index is a hint: the sweep decides from the command record itself, read again, so a
//! stale entry (its command deleted with its device, or re-timed) costs one read and is dropped.
//! The sweep walks the whole history once when [`BUILT`] (the time of the last complete walk) is
//! absent (an upgrade, a restored older backup) or older than the retention, and adds the
//! missing entries.

use super::CommandRecord;

/// Record kind of the index entries.
pub const KIND: &str = "command_finished";

/// Record kind and key of the time (Unix seconds, decimal) of the sweep's last walk of the whole
/// history, which gave every finished command its entry.
pub const BUILT: (&str, &str) = ("command_finished_index", "built");

/// The entry key of command `command_id` of `device_id`, due at `due` (Unix seconds; times
/// before 1970 count as 0).
pub fn key(due: i64, device_id: &str, command_id: &str) -> String {
    format!("{:016x}\0{device_id}\0{command_id}", due.max(0))
}

/// The entry key of a finished command (at the time it finished), `None` if it is unanswered.
pub fn key_of(c: &CommandRecord) -> Option<String> {
    c.finished_at().map(|t| key(t, &c.device_id, &c.command_id))
}

/// An entry key's (due, device id, command id); `None` if it is not one.
pub fn parse(key: &str) -> Option<(i64, &str, &str)> {
    let (due, rest) = key.split_once('\0')?;
    let (device, command) = rest.split_once('\0')?;
    if due.len() != 16 {
        return None;
    }
    let due = i64::from_str_radix(due, 16).ok()?;
    Some((due, device, command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_due_and_parse_back() {
        let a = key(9, "dev-b", "c1");
        let b = key(10, "dev-a", "c0");
        let c = key(1_800_000_000, "dev-a", "c0");
        assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
        assert_eq!(parse(&c), Some((1_800_000_000, "dev-a", "c0")));
        assert_eq!(parse(&key(-5, "d", "x")), Some((0, "d", "x")));
        assert_eq!(parse("0000000000000001\0dev"), None);
        assert_eq!(parse("1\0dev\0cmd"), None);
        assert_eq!(parse("zzzzzzzzzzzzzzzz\0dev\0cmd"), None);
    }
}
