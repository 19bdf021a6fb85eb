//! SyncML status codes (OMA SyncML RepPro 1.2.2 §10, as Windows uses them per MS-MDM and the
//! Windows "OMA DM protocol support" page; see PROTOCOL.md §6 "Status codes").

use std::fmt;

/// A SyncML status code, the `Data` of a `Status` command.
///
/// ```
/// use winmdm::syncml::StatusCode;
/// assert!(StatusCode::ACCEPTED_FOR_PROCESSING.is_success());
/// assert_eq!(StatusCode(404).meaning(), "not found: the target node does not exist");
/// assert_eq!(StatusCode::OK.to_string(), "200 OK");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 200: the command completed successfully.
    pub const OK: StatusCode = StatusCode(200);
    /// 202: accepted; the device applies it asynchronously.
    pub const ACCEPTED_FOR_PROCESSING: StatusCode = StatusCode(202);
    /// 204: success, no data returned.
    pub const NO_CONTENT: StatusCode = StatusCode(204);
    /// 212: authentication accepted for the rest of the session.
    pub const AUTHENTICATION_ACCEPTED: StatusCode = StatusCode(212);
    /// 213: large object chunk accepted and buffered.
    pub const CHUNKED_ITEM_ACCEPTED: StatusCode = StatusCode(213);
    /// 214: operation cancelled.
    pub const OPERATION_CANCELLED: StatusCode = StatusCode(214);
    /// 215: not executed (the user cancelled or did not confirm).
    pub const NOT_EXECUTED: StatusCode = StatusCode(215);
    /// 216: an Atomic was rolled back successfully.
    pub const ATOMIC_ROLL_BACK_OK: StatusCode = StatusCode(216);
    /// 400: bad request (malformed command).
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    /// 401: invalid credentials.
    pub const INVALID_CREDENTIALS: StatusCode = StatusCode(401);
    /// 403: forbidden.
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    /// 404: the target node was not found.
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    /// 405: command not allowed on this node.
    pub const COMMAND_NOT_ALLOWED: StatusCode = StatusCode(405);
    /// 406: optional feature not supported.
    pub const OPTIONAL_FEATURE_NOT_SUPPORTED: StatusCode = StatusCode(406);
    /// 407: credentials missing.
    pub const MISSING_CREDENTIALS: StatusCode = StatusCode(407);
    /// 415: unsupported media type or format.
    pub const UNSUPPORTED_MEDIA_TYPE: StatusCode = StatusCode(415);
    /// 418: the node already exists.
    pub const ALREADY_EXISTS: StatusCode = StatusCode(418);
    /// 424: size mismatch of a large object.
    pub const SIZE_MISMATCH: StatusCode = StatusCode(424);
    /// 425: permission denied.
    pub const PERMISSION_DENIED: StatusCode = StatusCode(425);
    /// 500: command failed.
    pub const COMMAND_FAILED: StatusCode = StatusCode(500);
    /// 507: an Atomic failed (one of its commands failed; all were rolled back).
    pub const ATOMIC_FAILED: StatusCode = StatusCode(507);
    /// 516: an Atomic's roll back failed.
    pub const ATOMIC_ROLL_BACK_FAILED: StatusCode = StatusCode(516);

    /// A one-line meaning an administrator can read.
    pub fn meaning(&self) -> &'static str {
        match self.0 {
            200 => "OK",
            202 => "accepted: the device will apply it asynchronously",
            204 => "OK, no content returned",
            212 => "authentication accepted for the session",
            213 => "large object chunk accepted and buffered",
            214 => "operation cancelled",
            215 => "not executed: the user cancelled or did not confirm",
            216 => "atomic roll back succeeded",
            400 => "bad request: the command was malformed",
            401 => "invalid credentials",
            403 => "forbidden",
            404 => "not found: the target node does not exist",
            405 => "command not allowed on this node (read-only node, or a device-only setting in user scope)",
            406 => "optional feature not supported by the device",
            407 => "credentials missing",
            415 => "unsupported media type or format",
            418 => "already exists",
            424 => "size mismatch in a large object",
            425 => "permission denied",
            500 => "command failed on the device",
            507 => "atomic failed: one command failed and all were rolled back",
            516 => "atomic roll back failed",
            c => match c / 100 {
                1 => "informational",
                2 => "success",
                3 => "redirection",
                4 => "originator error",
                5 => "recipient error",
                _ => "unknown status code",
            },
        }
    }

    /// `true` for 2xx codes.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.0)
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.meaning())
    }
}

impl From<u16> for StatusCode {
    fn from(v: u16) -> Self {
        StatusCode(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_codes_have_specific_meanings() {
        let all = [
            200, 202, 204, 212, 213, 214, 215, 216, 400, 401, 403, 404, 405, 406, 407, 415, 418,
            424, 425, 500, 507, 516,
        ];
        for c in all {
            let m = StatusCode(c).meaning();
            assert!(
                !["success", "originator error", "recipient error"].contains(&m),
                "{c} has no specific meaning"
            );
        }
        assert_eq!(StatusCode(299).meaning(), "success");
        assert_eq!(StatusCode(999).meaning(), "unknown status code");
    }

    #[test]
    fn success_is_2xx() {
        assert!(StatusCode::OK.is_success());
        assert!(StatusCode(299).is_success());
        assert!(!StatusCode(199).is_success());
        assert!(!StatusCode::NOT_FOUND.is_success());
        assert_eq!(
            StatusCode::ATOMIC_FAILED.to_string(),
            "507 atomic failed: one command failed and all were rolled back"
        );
    }
}
