//! # winmdm — a Windows MDM server
//!
//! ## Design overview
//!
//! Pure protocol core, I/O at the edge:
//!
//! * [`xml`], [`soap`] and [`syncml`] parse and write the wire formats (MS-MDE2 discovery,
//!   MS-XCEP policy, MS-WSTEP enrollment, OMA-DM SyncML). They do no I/O and import only
//!   quick-xml, base64 and thiserror.
//! * [`ca`] owns the enrollment CA: it verifies PKCS#10 requests and issues certificates.
//! * [`store`] is the persistence trait ([`store::Store`]) with the embedded redb backend.
//! * [`mdm`] runs the protocol flows: it takes parsed messages, consults the store and the CA and
//!   returns messages to write. It knows nothing of HTTP.
//! * [`http`] and [`admin`] are the only modules that speak HTTP (hyper over tokio-rustls).
//!
//! Dependencies point down only: `http`/`admin` → `mdm` → `soap`/`syncml`/`ca`/`store`.
#![forbid(unsafe_code)]
// The OpenAPI document (admin/openapi.rs) is one large `serde_json::json!`.
#![recursion_limit = "256"]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod autopilot;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod config;
pub mod federation;
pub mod fsio;
pub mod groups;
pub mod http;
pub mod jobs;
pub mod lockout;
pub mod mdm;
pub mod owner;
pub mod password_work;
pub mod pki;
pub mod profiles;
pub mod service;
pub mod soap;
pub mod store;
pub mod syncml;
#[doc(hidden)]
pub mod testkit;
pub mod ui;
pub mod upn;
pub mod xml;
