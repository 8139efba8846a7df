//! The audit log: signed, hash-chained JSON Lines, each record fsynced
//! before the next AWS call, so the record of a run survives the run and
//! nobody without the responder's audit key can rewrite it.
//!
//! The format (version 2), one line per record:
//!
//! ```text
//! {"v":2,"record":RECORD,"hash":"HEX","sig":"HEX"}
//! ```
//!
//! `RECORD` is the record's JSON exactly as written; `hash` is the SHA-256
//! of those bytes (never of a re-serialization, so every build and any
//! third-party script agree); `sig` is the Ed25519 signature of the 32-byte
//! digest by the audit key whose public half the run-start record names;
//! each record's `prev` is the previous line's `hash`. Editing, deleting,
//! inserting or reordering a record, cutting the log short, or re-sealing
//! it without the key shows; `scripts/verify-audit-log.py` checks a log
//! with nothing but Python.

mod log;
mod mirror;
mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::actions::Op;
use crate::aws::{AwsError, CallCounts, Endpoint, Endpoints, Identity};
use crate::report::{Counts, Outcome};
use crate::targets::Target;

pub use crate::signing::AuditKey;
pub use log::{AuditLog, Mirror, MirrorReport};
pub use mirror::{bucket_client, compare_mirror};
pub use verify::{Trust, Verification, read};

/// The line format written now.
pub const FORMAT: u32 = 2;

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub ts: jiff::Timestamp,
    pub run_id: String,
    pub prev: String,
    #[serde(flatten)]
    pub event: Event,
}

// A run start is larger than the other records; each is written once, so
// boxing it would only cost clarity.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStart {
        tool_version: String,
        playbook: String,
        playbook_name: String,
        playbook_digest: String,
        dry_run: bool,
        identity: Identity,
        profile: String,
        /// The profile, and the role and MFA device when one was assumed.
        #[serde(default)]
        credential_source: String,
        region: String,
        endpoint: Option<Endpoint>,
        /// Every endpoint the run used, per service too.
        #[serde(default)]
        endpoints: Endpoints,
        /// The playbook's `executor.assume_role`, for a rollback to connect
        /// the same way.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        executor: Option<ExecutorRecord>,
        vars: BTreeMap<String, String>,
        args: Vec<String>,
        /// For a rollback: the run whose changes it undoes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollback_of: Option<String>,
        /// The public half of the key that signs every record (hex).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audit_key: Option<String>,
        /// The playbook's `protect` patterns: rollback leaves what they
        /// match alone, as the run did.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        protect: Vec<String>,
    },
    /// The accounts a fanned-out run reaches, and those it cannot (each with
    /// the reason): written right after the run start.
    Accounts {
        accounts: Vec<crate::actions::AccountStatus>,
        /// `executor.member_role` as used: what a rollback assumes again.
        member_role: String,
    },
    StepStart {
        step: usize,
        name: String,
        action: String,
    },
    /// Written and fsynced before the call it announces.
    Intent {
        step: usize,
        target: Target,
        call: String,
        op: Op,
    },
    /// A rollback's intent: written and fsynced before the undoing call.
    UndoIntent {
        /// `seq` of the original run's intent record being undone.
        of: u64,
        target: Target,
        call: String,
        undo: crate::actions::undo::Undo,
    },
    /// The outcome for one target; `intent` points at the intent record's `seq`
    /// when a call was made.
    Result {
        step: usize,
        target: Target,
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intent: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<AwsError>,
        /// What the call created, as AWS returned it (snapshot ids, groups).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        effect: Option<serde_json::Value>,
    },
    StepEnd {
        step: usize,
        status: String,
        counts: Counts,
        /// Per account, when the step fanned out.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        accounts: BTreeMap<String, Counts>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// One check while holding the line after a run.
    HoldCheck {
        check: u64,
        /// Targets found drifted and re-contained in this check.
        recontained: Vec<String>,
        /// Targets found drifted that could not be re-contained.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<String>,
    },
    RunEnd {
        /// `completed`, `completed_with_failures`, `not_contained`,
        /// `aborted`, `refused` or `interrupted`.
        status: String,
        totals: Counts,
        calls: CallCounts,
        /// Targets the read-back after the run found not contained.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_contained: Option<Vec<String>>,
    },
}

/// The playbook's `executor.assume_role` as a run used it (never a code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRecord {
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
}

/// `s3://bucket/prefix` split into bucket and key prefix (ending in `/` or empty).
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    Some((bucket.to_string(), prefix))
}

/// A new run id: sortable by time, unique enough to tell runs apart.
pub fn new_run_id(now: jiff::Timestamp) -> String {
    let mut h = Sha256::new();
    h.update(now.as_nanosecond().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let digest = hex::encode(h.finalize());
    format!("{}-{}", now.strftime("%Y%m%dT%H%M%SZ"), &digest[..8])
}

/// The default log path: in `breakglass-audit/`, named after the run.
pub fn default_path(run_id: &str, dry_run: bool) -> PathBuf {
    let suffix = if dry_run { "-dry-run" } else { "" };
    PathBuf::from("breakglass-audit").join(format!("run-{run_id}{suffix}.jsonl"))
}
