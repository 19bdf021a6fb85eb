//! [`ParseError`] and the parser's [`Limits`].

/// Bounds on what the parser accepts; exceeding one gives a typed [`ParseError`].
///
/// ```
/// use winmdm::syncml::{parse_with_limits, Limits, ParseError};
/// let limits = Limits { max_input_bytes: 10, ..Limits::default() };
/// let err = parse_with_limits(b"<SyncML>...</SyncML>", &limits).unwrap_err();
/// assert!(matches!(err, ParseError::InputTooLarge { max: 10, .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes (default 8 MiB).
    pub max_input_bytes: usize,
    /// Deepest element nesting, the root counting 1 (default 32; a plain message needs 7, each
    /// nested `Atomic`/`Sequence` one more). The parser recurses once per nested
    /// `Atomic`/`Sequence`, so this also bounds its stack use: keep it in the hundreds at most.
    pub max_depth: usize,
    /// Most commands per message, nested ones included (default 10 000).
    pub max_commands: usize,
    /// Most `Item`s per message, over all commands (default 20 000).
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 8 << 20,
            max_depth: 32,
            max_commands: 10_000,
            max_items: 20_000,
        }
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "(document)"
    } else {
        path
    }
}

/// Why a SyncML message or fragment was rejected.
///
/// `path` is the element path from the root, e.g. `SyncML/SyncBody/Replace/Item`; `offset` a byte
/// offset into the input. The management layer answers any of these with a `400` (or drops the
/// message); none is an internal error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input is larger than [`Limits::max_input_bytes`].
    #[error("input of {len} bytes exceeds the limit of {max} bytes")]
    InputTooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// First invalid byte.
        offset: usize,
    },
    /// A `<!DOCTYPE`: DTDs and entity declarations are never processed.
    #[error("document type declarations are not allowed (byte {offset})")]
    DoctypeForbidden {
        /// Where it starts.
        offset: usize,
    },
    /// The input ended inside an element (or held no element at all).
    #[error("{}: unexpected end of input", at(.path))]
    UnexpectedEof {
        /// Element path.
        path: String,
    },
    /// The bytes are not well-formed XML.
    #[error("{}: malformed XML at byte {offset}: {reason}", at(.path))]
    Syntax {
        /// Element path.
        path: String,
        /// Where.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// An end tag does not close the open element.
    #[error("{}: </{found}> at byte {offset} does not close <{expected}>", at(.path))]
    MismatchedTag {
        /// Element path.
        path: String,
        /// The open element.
        expected: String,
        /// The end tag found.
        found: String,
        /// Where.
        offset: usize,
    },
    /// An entity other than the five predefined ones (no DTD, so no others exist).
    #[error("{}: unknown entity &{entity}; at byte {offset}", at(.path))]
    UnknownEntity {
        /// Element path.
        path: String,
        /// The entity name (truncated).
        entity: String,
        /// Where.
        offset: usize,
    },
    /// A character reference that is malformed or names a character XML does not allow.
    #[error("{}: invalid character reference &{reference}; at byte {offset}", at(.path))]
    InvalidCharRef {
        /// Element path.
        path: String,
        /// The reference text (truncated).
        reference: String,
        /// Where.
        offset: usize,
    },
    /// A namespace prefix with no `xmlns:prefix` declaration in scope.
    #[error("{}: undeclared namespace prefix `{prefix}` at byte {offset}", at(.path))]
    UnboundPrefix {
        /// Element path.
        path: String,
        /// The prefix.
        prefix: String,
        /// Where.
        offset: usize,
    },
    /// The root element is not `SyncML`.
    #[error("root element is <{element}>, expected <SyncML>")]
    NotSyncMl {
        /// The root found.
        element: String,
    },
    /// An element that the SyncML DTD does not allow here (unknown elements are rejected, never
    /// skipped).
    #[error("{}: unexpected element <{element}> at byte {offset}", at(.path))]
    UnexpectedElement {
        /// Path of the parent element.
        path: String,
        /// The element, as written.
        element: String,
        /// Where.
        offset: usize,
    },
    /// A known element name in a namespace that is neither SyncML's, `syncml:metinf` nor none.
    #[error("{}: <{element}> at byte {offset} is in foreign namespace `{namespace}`", at(.path))]
    ForeignNamespace {
        /// Path of the parent element.
        path: String,
        /// The element, as written.
        element: String,
        /// Its namespace.
        namespace: String,
        /// Where.
        offset: usize,
    },
    /// Non-white-space text where only elements are allowed.
    #[error("{}: unexpected text at byte {offset}", at(.path))]
    UnexpectedText {
        /// Element path.
        path: String,
        /// Where.
        offset: usize,
    },
    /// A required child element is absent.
    #[error("{}: missing <{element}>", at(.path))]
    MissingElement {
        /// Element path.
        path: String,
        /// The missing child.
        element: &'static str,
    },
    /// A child element that may appear once appears again.
    #[error("{}: duplicate <{element}> at byte {offset}", at(.path))]
    DuplicateElement {
        /// Element path.
        path: String,
        /// The repeated child.
        element: &'static str,
        /// Where the second one starts.
        offset: usize,
    },
    /// Something other than white space, comments or processing instructions after the root.
    #[error("content after the root element at byte {offset}")]
    TrailingContent {
        /// Where.
        offset: usize,
    },
    /// A fragment holds no command.
    #[error("the fragment holds no command")]
    NoCommands,
    /// Elements nest deeper than [`Limits::max_depth`].
    #[error("{}: nesting deeper than {max} elements", at(.path))]
    TooDeep {
        /// Element path.
        path: String,
        /// The limit.
        max: usize,
    },
    /// More commands than [`Limits::max_commands`].
    #[error("{}: more than {max} commands", at(.path))]
    TooManyCommands {
        /// Element path.
        path: String,
        /// The limit.
        max: usize,
    },
    /// More items than [`Limits::max_items`].
    #[error("{}: more than {max} items", at(.path))]
    TooManyItems {
        /// Element path.
        path: String,
        /// The limit.
        max: usize,
    },
}

impl ParseError {
    /// The element path, if this error has one.
    pub fn path(&self) -> Option<&str> {
        use ParseError::*;
        match self {
            UnexpectedEof { path }
            | Syntax { path, .. }
            | MismatchedTag { path, .. }
            | UnknownEntity { path, .. }
            | InvalidCharRef { path, .. }
            | UnboundPrefix { path, .. }
            | UnexpectedElement { path, .. }
            | ForeignNamespace { path, .. }
            | UnexpectedText { path, .. }
            | MissingElement { path, .. }
            | DuplicateElement { path, .. }
            | TooDeep { path, .. }
            | TooManyCommands { path, .. }
            | TooManyItems { path, .. } => Some(path),
            InputTooLarge { .. }
            | InvalidUtf8 { .. }
            | DoctypeForbidden { .. }
            | NotSyncMl { .. }
            | TrailingContent { .. }
            | NoCommands => None,
        }
    }

    /// Prepends a parent element name to the path (errors travel up the element tree).
    pub(crate) fn push_parent(&mut self, parent: &str) {
        use ParseError::*;
        let path = match self {
            UnexpectedEof { path }
            | Syntax { path, .. }
            | MismatchedTag { path, .. }
            | UnknownEntity { path, .. }
            | InvalidCharRef { path, .. }
            | UnboundPrefix { path, .. }
            | UnexpectedElement { path, .. }
            | ForeignNamespace { path, .. }
            | UnexpectedText { path, .. }
            | MissingElement { path, .. }
            | DuplicateElement { path, .. }
            | TooDeep { path, .. }
            | TooManyCommands { path, .. }
            | TooManyItems { path, .. } => path,
            _ => return,
        };
        if path.is_empty() {
            path.push_str(parent);
        } else {
            path.insert(0, '/');
            path.insert_str(0, parent);
        }
    }
}
