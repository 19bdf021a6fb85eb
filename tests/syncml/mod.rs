//! syncml tests
