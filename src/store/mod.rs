//! Store (in progress)
