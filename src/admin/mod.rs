//! Admin JSON API (in progress)
