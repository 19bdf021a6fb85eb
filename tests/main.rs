//! The one integration test binary: each module below is one area.
mod support;

mod autopilot;
mod ca;
mod cli;
mod crash;
mod enroll;
mod fuzz_corpus;
mod lifecycle;
mod manage;
mod replay;
mod soap;
mod store;
mod syncml;
