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
//! * [`service`] holds every admin operation, HTTP-free: typed inputs and outputs, the role
//!   check and the audit entry of each change.
//! * [`http`], [`admin`] (the JSON API) and [`ui`] (the web console) are the only modules that
//!   speak HTTP (hyper over tokio-rustls); `admin` and `ui` are thin adapters over [`service`].
//!
//! Dependencies point down: `http` → `admin`/`ui` → `service` → `mdm` →
//! `soap`/`syncml`/`ca`/`store`. One exception is left: the enrollment flow (`mdm::enroll`) calls
//! `service::invitations::mark_used` and `service::bulk::verify_package_secret`, whose records
//! want a domain module of their own below `mdm`.
#![forbid(unsafe_code)]
// The OpenAPI document (admin/openapi.rs) is one large `serde_json::json!`.
#![recursion_limit = "256"]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod apps;
pub mod auth;
pub mod autopilot;
pub mod backup;
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
pub mod metrics;
pub mod owner;
pub mod password_work;
pub mod pki;
pub mod profiles;
pub mod service;
pub mod soap;
pub mod store;
pub mod syncml;
pub mod tenant;
#[doc(hidden)]
pub mod testkit;
pub mod trace;
pub mod ui;
pub mod upn;
pub mod wait;
pub mod webhook;
pub mod xml;
