//! xml (in progress)
