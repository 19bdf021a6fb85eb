//! Protocol flows: each takes a parsed message, consults the store and the CA, and returns the
//! message to write. No HTTP here; the `http` module calls in and writes out.

pub mod actions;
pub mod commands;
pub mod enroll;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod manage;
pub mod refusals;
pub mod renew;
pub mod retention;
pub mod session;
