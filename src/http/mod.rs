//! HTTP (in progress)
