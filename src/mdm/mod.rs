//! MDM flows (in progress)
