//! vendorwatch: a passive sensor that finds the hosts whose software talks to banned vendors.
//!
//! Stages, each in its own module and each knowing only the types of the stage before it:
//! `capture` (packets from files or interfaces) → `decode` (link, IP, transport) →
//! `extract` (DNS, TLS, HTTP names, per-flow state) → `detect` (rule packs, compiled matcher)
//! → `hosts` (the shared inventory) → `output` (alerts, events, report, summary).
//! `pipeline` wires them with threads; `metrics` holds the counters every stage bumps.
#![deny(unsafe_code)]

pub mod capture;
pub mod cli;
pub mod config;
pub mod decode;
pub mod detect;
pub mod extract;
pub mod hosts;
pub mod mac;
pub mod metrics;
pub mod operator_input;
pub mod output;
pub mod pipeline;
pub mod reload;
pub mod serve;
pub mod suppress;
pub mod time;
