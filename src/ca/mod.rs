//! Certificate authority (in progress)
