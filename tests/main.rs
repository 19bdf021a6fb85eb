//! The one integration test binary: each module below is one area.
mod support;

mod admin;
mod apps;
mod autopilot;
mod backup;
mod ca;
mod cli;
mod cluster;
mod console;
mod crash;
mod durable_files;
mod enroll;
mod federation;
mod fuzz_corpus;
mod groups;
mod hostile;
mod lifecycle;
mod load;
mod manage;
mod ops;
mod renew;
mod replay;
mod soap;
mod store;
mod syncml;
mod webhook;
