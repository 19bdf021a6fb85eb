//! ca tests
