//! SyncML codec (in progress)
