//! The playbook's data, as every later stage sees it: the file model (the
//! decoder's target and the JSON Schema's source) and the kinds of target.
//! Data only: reading YAML is `playbook/`; which actions exist and what
//! they do is `actions/`, where a new action also declares its `with:`
//! parameters (the older ones keep theirs in `model.rs`).

mod kind;
pub mod model;

pub use kind::{TargetKind, check_target};
pub use model::*;
