//! breakglass: incident-response lockdown for AWS.
//!
//! Data flows one way: YAML → [`playbook::Playbook`] → bound steps → the
//! [`executor`] → AWS, with the [`audit`] log beside the executor. Actions plan
//! concrete calls ([`actions::Op`]); the executor records and makes them.

#[macro_use]
mod output;

pub mod actions;
pub mod audit;
pub mod aws;
pub mod cli;
pub mod commands;
pub mod criteria;
pub mod error;
pub mod executor;
pub mod files;
pub mod playbook;
pub mod progress;
pub mod readiness;
pub mod render;
pub mod report;
pub mod rollback;
pub mod safety;
pub mod signing;
pub mod spec;
pub mod tabletop;
pub mod targets;
pub mod yaml;

pub use error::{Error, ExitCode};
