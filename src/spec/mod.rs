//! The playbook's data, as every later stage sees it: the file model (the
//! decoder's target and the JSON Schema's source), which action a step runs
//! with which parameters, and the bound step. Data only: reading YAML is
//! `playbook/`, acting on it is `actions/`.

mod kind;
pub mod model;
mod step;

pub use kind::{ActionKind, ActionParams, TargetKind, check_target};
pub use model::*;
pub use step::BoundStep;
