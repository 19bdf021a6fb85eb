//! The label values of the metrics: small enums, so recording never builds a string.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use crate::store::{CommandState, StoreError};

/// Defines a label-value enum: its variants, their label text and [`EncodeLabelValue`].
macro_rules! label_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)+ }
        impl $name {
            /// Every value, in declaration order (`ALL[v as usize] == v`).
            pub const ALL: &'static [$name] = &[$($name::$v,)+];
            /// The label text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)+ }
            }
        }
        impl EncodeLabelValue for $name {
            fn encode(&self, e: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                e.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// The enrollment endpoint a SOAP request went to.
    pub enum EnrollEndpoint {
        /// MS-MDE2 discovery.
        Discovery => "discovery",
        /// MS-XCEP GetPolicies.
        Policy => "policy",
        /// MS-WSTEP RequestSecurityToken on the public listener (a new enrollment).
        Enrollment => "enrollment",
        /// MS-WSTEP on the mutual-TLS listener (certificate renewal, ROBO).
        Renewal => "renewal",
    }
}

label_enum! {
    /// The SOAP fault an enrollment request got (`none` when it succeeded): the MS-MDE2
    /// errortype when there is one, else the fault subcode.
    pub enum Fault {
        /// Success.
        None => "none",
        /// `s:MessageFormat`.
        MessageFormat => "MessageFormat",
        /// `s:Authentication`.
        Authentication => "Authentication",
        /// `s:Authorization`.
        Authorization => "Authorization",
        /// `s:CertificateRequest`.
        CertificateRequest => "CertificateRequest",
        /// `s:EnrollmentServer`.
        EnrollmentServer => "EnrollmentServer",
        /// `a:InvalidSecurity`.
        InvalidSecurity => "InvalidSecurity",
        /// `DeviceNotSupported`.
        DeviceNotSupported => "DeviceNotSupported",
        /// `NotSupported`.
        NotSupported => "NotSupported",
        /// `NotEligibleToRenew`.
        NotEligibleToRenew => "NotEligibleToRenew",
        /// `DeviceCapReached`.
        DeviceCapReached => "DeviceCapReached",
        /// `InMaintenance`.
        InMaintenance => "InMaintenance",
        /// `InMaintenance` because every password-check worker was busy.
        Busy => "Busy",
    }
}

impl Fault {
    /// The label of an enrollment failure.
    pub fn of(e: &crate::soap::fault::EnrollError) -> Fault {
        use crate::soap::fault::EnrollError as E;
        match e {
            E::MessageFormat { .. } => Fault::MessageFormat,
            E::Authentication { .. } => Fault::Authentication,
            E::Authorization { .. } => Fault::Authorization,
            E::CertificateRequest { .. } => Fault::CertificateRequest,
            E::EnrollmentServer { .. } => Fault::EnrollmentServer,
            E::InvalidSecurity { .. } => Fault::InvalidSecurity,
            E::DeviceNotSupported { .. } => Fault::DeviceNotSupported,
            E::NotSupported { .. } => Fault::NotSupported,
            E::NotEligibleToRenew { .. } => Fault::NotEligibleToRenew,
            E::DeviceCapReached { .. } => Fault::DeviceCapReached,
            E::InMaintenance { .. } => Fault::InMaintenance,
            E::Busy { .. } => Fault::Busy,
        }
    }
}

label_enum! {
    /// Whether a request succeeded.
    pub enum Outcome {
        /// Answered normally.
        Ok => "ok",
        /// Answered with the protocol's error.
        Fault => "fault",
    }
}

label_enum! {
    /// How a management request (one OMA-DM round) ended, by its HTTP status.
    pub enum RoundOutcome {
        /// 200: the round was applied (or a retransmission answered).
        Ok => "ok",
        /// 400: malformed SyncML or header.
        BadRequest => "bad_request",
        /// 401: no client certificate (or signature).
        Unauthenticated => "unauthenticated",
        /// 403: certificate revoked, of another device, or no longer enrolled.
        Forbidden => "forbidden",
        /// 408: body not received in time.
        Timeout => "timeout",
        /// 409: out-of-order message, not applied.
        OutOfOrder => "out_of_order",
        /// 413: body too large.
        TooLarge => "too_large",
        /// 415: not SyncML XML.
        UnsupportedMedia => "unsupported_media",
        /// 429: `--management-rate` throttle.
        Throttled => "throttled",
        /// 503: store unavailable or the round kept conflicting.
        Unavailable => "unavailable",
        /// 500 or any other status.
        Error => "error",
    }
}

impl RoundOutcome {
    /// The outcome of an HTTP status.
    pub fn of_status(status: u16) -> RoundOutcome {
        match status {
            200 => RoundOutcome::Ok,
            400 => RoundOutcome::BadRequest,
            401 => RoundOutcome::Unauthenticated,
            403 => RoundOutcome::Forbidden,
            408 => RoundOutcome::Timeout,
            409 => RoundOutcome::OutOfOrder,
            413 => RoundOutcome::TooLarge,
            415 => RoundOutcome::UnsupportedMedia,
            429 => RoundOutcome::Throttled,
            503 => RoundOutcome::Unavailable,
            _ => RoundOutcome::Error,
        }
    }
}

label_enum! {
    /// How a management session ended.
    pub enum SessionEnd {
        /// The server had nothing more to send and the device nothing more to say.
        Completed => "completed",
        /// The device sent the unenrollment alert.
        Unenrolled => "unenrolled",
        /// The device aborted it (Alert 1223).
        AbortedByDevice => "aborted_by_device",
    }
}

label_enum! {
    /// The state a command left (`new` for an enqueue; `unanswered` for an admin cancel, where
    /// pending and sent are not told apart; `answered` for a deletion by the retention sweep).
    pub enum CmdFrom {
        /// Not queued before.
        New => "new",
        /// `pending`.
        Pending => "pending",
        /// `sent`.
        Sent => "sent",
        /// `pending` or `sent`.
        Unanswered => "unanswered",
        /// A final state.
        Answered => "answered",
    }
}

label_enum! {
    /// The state a command entered (`deleted`: removed from the history by the retention sweep).
    pub enum CmdTo {
        /// `pending`.
        Pending => "pending",
        /// `sent`.
        Sent => "sent",
        /// `done`.
        Done => "done",
        /// `failed`.
        Failed => "failed",
        /// `cancelled` (by an admin).
        Cancelled => "cancelled",
        /// `cancelled_by_device` (214).
        CancelledByDevice => "cancelled_by_device",
        /// `not_executed` (215).
        NotExecuted => "not_executed",
        /// `rolled_back` (216).
        RolledBack => "rolled_back",
        /// Deleted from the history.
        Deleted => "deleted",
    }
}

impl CmdFrom {
    pub(crate) fn of(s: CommandState) -> CmdFrom {
        match s {
            CommandState::Pending => CmdFrom::Pending,
            CommandState::Sent => CmdFrom::Sent,
            _ => CmdFrom::Answered,
        }
    }
}

impl CmdTo {
    pub(crate) fn of(s: CommandState) -> CmdTo {
        match s {
            CommandState::Pending => CmdTo::Pending,
            CommandState::Sent => CmdTo::Sent,
            CommandState::Done => CmdTo::Done,
            CommandState::Failed => CmdTo::Failed,
            CommandState::Cancelled => CmdTo::Cancelled,
            CommandState::CancelledByDevice => CmdTo::CancelledByDevice,
            CommandState::NotExecuted => CmdTo::NotExecuted,
            CommandState::RolledBack => CmdTo::RolledBack,
        }
    }
}

label_enum! {
    /// A command's verb, as the queue gauges count it.
    pub enum Verb {
        /// `Get`.
        Get => "Get",
        /// `Add`.
        Add => "Add",
        /// `Replace`.
        Replace => "Replace",
        /// `Delete`.
        Delete => "Delete",
        /// `Exec`.
        Exec => "Exec",
        /// `Atomic`.
        Atomic => "Atomic",
        /// `Sequence`.
        Sequence => "Sequence",
        /// Anything else.
        Other => "other",
    }
}

impl Verb {
    /// The label of a stored verb.
    pub fn of(v: &str) -> Verb {
        Verb::ALL
            .iter()
            .copied()
            .find(|x| x.as_str() == v)
            .unwrap_or(Verb::Other)
    }
}

label_enum! {
    /// Which listener a TLS connection arrived on.
    pub enum Listener {
        /// `--listen` (and the management role chosen by SNI on it).
        Main => "main",
        /// `--mgmt-listen`.
        Management => "management",
        /// `--admin-listen`.
        Admin => "admin",
    }
}

label_enum! {
    /// Why a TLS handshake failed.
    pub enum TlsFailure {
        /// Not finished within `--handshake-timeout`.
        Timeout => "timeout",
        /// The client closed or reset the connection during the handshake.
        Closed => "closed",
        /// The client's certificate was refused (unknown issuer, expired, wrong usage…).
        BadCertificate => "bad_certificate",
        /// The client sent a TLS alert (often: it does not trust our certificate).
        AlertReceived => "alert_received",
        /// No protocol version or cipher suite in common.
        Incompatible => "incompatible",
        /// Not TLS, or a malformed or unexpected handshake message.
        Protocol => "protocol",
        /// Any other error.
        Other => "other",
    }
}

impl TlsFailure {
    /// Classifies the I/O error a handshake ended with.
    pub fn of(e: &std::io::Error) -> TlsFailure {
        use std::io::ErrorKind as K;
        if let Some(r) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return match r {
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    TlsFailure::BadCertificate
                }
                rustls::Error::AlertReceived(_) => TlsFailure::AlertReceived,
                rustls::Error::PeerIncompatible(_) => TlsFailure::Incompatible,
                rustls::Error::InappropriateMessage { .. }
                | rustls::Error::InappropriateHandshakeMessage { .. }
                | rustls::Error::InvalidMessage(_)
                | rustls::Error::PeerMisbehaved(_) => TlsFailure::Protocol,
                _ => TlsFailure::Other,
            };
        }
        match e.kind() {
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                TlsFailure::Closed
            }
            K::InvalidData => TlsFailure::Protocol,
            _ => TlsFailure::Other,
        }
    }
}

label_enum! {
    /// What happened to a background job on this node.
    pub enum JobEvent {
        /// Claimed and started (or resumed).
        Started => "started",
        /// Finished: done.
        Done => "done",
        /// Finished: given up after repeated failures.
        Failed => "failed",
        /// Another node took it over.
        LeaseLost => "lease_lost",
        /// One step failed (retried).
        StepFailed => "step_failed",
    }
}

label_enum! {
    /// A background sweep.
    pub enum Sweep {
        /// The job sweep (takes up queued and orphaned jobs).
        Jobs => "jobs",
        /// The command-history retention sweep.
        CommandRetention => "command_retention",
    }
}

label_enum! {
    /// How a sweep pass ended.
    pub enum SweepOutcome {
        /// Ran to its end.
        Ok => "ok",
        /// Another node holds the sweep's lease: nothing done here.
        Skipped => "skipped",
        /// Failed (retried at the next interval).
        Error => "error",
    }
}

label_enum! {
    /// The result of one webhook delivery attempt.
    pub enum WebhookOutcome {
        /// The receiver answered 2xx.
        Delivered => "delivered",
        /// The attempt failed; the event stays in the outbox and is retried.
        Retry => "retry",
        /// Given up: the event moved to the dead-letter list.
        DeadLetter => "dead_letter",
    }
}

label_enum! {
    /// The kind of a store failure.
    pub enum StoreErrorKind {
        /// [`StoreError::AlreadyExists`].
        AlreadyExists => "already_exists",
        /// [`StoreError::Backend`].
        Backend => "backend",
        /// [`StoreError::Unavailable`].
        Unavailable => "unavailable",
        /// [`StoreError::Corrupt`].
        Corrupt => "corrupt",
    }
}

impl StoreErrorKind {
    pub(crate) fn of(e: &StoreError) -> StoreErrorKind {
        match e {
            StoreError::AlreadyExists { .. } => StoreErrorKind::AlreadyExists,
            StoreError::Backend { .. } => StoreErrorKind::Backend,
            StoreError::Unavailable { .. } => StoreErrorKind::Unavailable,
            StoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
        }
    }
}

label_enum! {
    /// An unanswered command's state, as the queue gauges count it.
    pub enum QueueState {
        /// Waiting for the device's next session.
        Pending => "pending",
        /// Sent, no Status yet.
        Sent => "sent",
    }
}
