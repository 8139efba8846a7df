//! What a run did, target by target and step by step: the typed report the
//! executor produces, the audit log records and the renderers print.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::{AwsError, CallCounts};
use crate::spec::OnFailure;
use crate::targets::Target;

/// What happened to one target.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Listed first in reports: what needs the responder's attention.
    Failed,
    Changed,
    /// Plan or dry run: this call would be made.
    WouldChange,
    Unchanged,
    Skipped,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Counts {
    pub changed: u64,
    pub would_change: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
}

impl Outcome {
    /// The word the JSON report uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Failed => "failed",
            Outcome::Changed => "changed",
            Outcome::WouldChange => "would_change",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
        }
    }
}

impl Counts {
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Changed => self.changed += 1,
            Outcome::WouldChange => self.would_change += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed => self.failed += 1,
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        self.changed += other.changed;
        self.would_change += other.would_change;
        self.unchanged += other.unchanged;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Item {
    pub target: Target,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    // Boxed, as is `effect`: most items have neither, and a plan holds
    // tens of thousands of items at once (not a doc comment: it would
    // land in the report's JSON Schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<AwsError>>,
    /// What the call created (snapshot ids, security groups), as AWS returned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Box<serde_json::Value>>,
    /// In plans and read-backs: what is wrong with the target now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Done,
    Failed,
    /// An earlier step failed with `on_failure: abort`, or was refused.
    NotRun,
    /// A safety limit (`max_targets`) stopped it before any change.
    Refused,
}

impl StepStatus {
    /// The word the JSON report uses.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::NotRun => "not_run",
            StepStatus::Refused => "refused",
        }
    }
}

/// One step's part of the run report; the tabletop reads it back from the
/// run's JSON through this same type.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepReport {
    pub index: usize,
    pub name: String,
    pub action: std::borrow::Cow<'static, str>,
    pub status: StepStatus,
    pub on_failure: OnFailure,
    pub counts: Counts,
    pub items: Vec<Item>,
    /// Facts discovery wants the responder to know (what an action cannot reach).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub millis: u64,
    /// The step's AWS calls (discovery included), throttled and retried.
    pub calls: CallCounts,
    /// Counts per account, when the step fanned out across accounts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accounts: BTreeMap<String, Counts>,
}

impl Item {
    pub fn new(target: Target, outcome: Outcome) -> Self {
        Item {
            target,
            outcome,
            call: None,
            reason: None,
            error: None,
            effect: None,
            drift: None,
        }
    }

    pub fn call(mut self, call: String) -> Self {
        self.call = Some(call);
        self
    }

    pub fn reason(mut self, reason: String) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn error(mut self, error: AwsError) -> Self {
        self.error = Some(Box::new(error));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_are_the_json_words() {
        for o in [
            Outcome::Failed,
            Outcome::Changed,
            Outcome::WouldChange,
            Outcome::Unchanged,
            Outcome::Skipped,
        ] {
            assert_eq!(serde_json::to_value(o).ok(), Some(o.as_str().into()));
        }
        for s in [
            StepStatus::Done,
            StepStatus::Failed,
            StepStatus::NotRun,
            StepStatus::Refused,
        ] {
            assert_eq!(serde_json::to_value(s).ok(), Some(s.as_str().into()));
        }
    }

    /// A plan over 10,000 principals holds some 32,000 items until it
    /// prints them (issue 18 gives it 64 MB in all): the rare parts stay
    /// boxed. Unboxed, an item took 336 bytes.
    #[test]
    fn an_item_stays_small() {
        assert!(
            std::mem::size_of::<Item>() <= 200,
            "{} bytes",
            std::mem::size_of::<Item>()
        );
    }

    /// Boxing changes neither the JSON nor what reads it back.
    #[test]
    fn a_boxed_error_reads_back_as_written() {
        let item = Item::new(
            Target {
                scope: crate::targets::Scope {
                    account: "123456789012".into(),
                    region: None,
                },
                resource: crate::targets::Resource::User {
                    name: "alice".into(),
                    arn: "arn:aws:iam::123456789012:user/alice".into(),
                },
            },
            Outcome::Failed,
        )
        .error(AwsError {
            operation: "iam:DeleteLoginProfile".into(),
            code: Some("AccessDenied".into()),
            message: "denied".into(),
            kind: crate::aws::ErrorKind::AccessDenied,
        });
        let json = serde_json::to_value(&item).unwrap_or_default();
        assert_eq!(json["error"]["code"], "AccessDenied");
        let back: Item = serde_json::from_value(json).expect("an item reads back");
        assert_eq!(back.error.map(|e| e.message), Some("denied".to_string()));
    }
}
