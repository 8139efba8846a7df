//! The audit log: hash-chained JSON Lines, each record fsynced before the next
//! AWS call, so the record of a run survives the run.
//!
//! Every record carries `prev` (the previous record's hash) and `hash` (SHA-256
//! of its own canonical JSON without `hash`). Editing, deleting, inserting or
//! reordering a record, or cutting the log short, breaks the chain or the
//! run-end/intent-result pairing that `audit verify` checks. The chain shows
//! tampering by anyone who does not rewrite every later record; copying the
//! final hash elsewhere (the run summary prints it) anchors the whole log.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::actions::Op;
use crate::aws::{AwsError, CallCounts, Endpoint, Endpoints, Identity};
use crate::executor::{Counts, Outcome};
use crate::targets::Target;

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
    },
    /// The accounts a fanned-out run reaches, and those it cannot (each with
    /// the reason): written right after the run start.
    Accounts {
        accounts: Vec<crate::accounts::AccountStatus>,
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
        undo: crate::rollback::Undo,
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

/// An open audit log for one run. Appends are serialized and fsynced.
pub struct AuditLog {
    path: PathBuf,
    run_id: String,
    inner: Mutex<Chain>,
    mirror: Mutex<Option<Mirror>>,
}

/// A copy of every record in S3 (one object per record, named by `seq`),
/// meant for a bucket with Object Lock in a separate forensic account.
/// Uploads run in the background: a failing mirror is loud but never slows
/// or stops containment; the local file stays the source of truth.
struct Mirror {
    tx: tokio::sync::mpsc::UnboundedSender<(u64, String)>,
    task: tokio::task::JoinHandle<MirrorReport>,
}

/// What the mirror managed to copy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MirrorReport {
    pub target: String,
    pub uploaded: u64,
    pub failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
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

struct Chain {
    file: File,
    seq: u64,
    prev: String,
}

impl AuditLog {
    /// Creates a new log; never overwrites an existing file.
    pub fn create(path: &Path, run_id: &str) -> Result<Self, Error> {
        let err = |message: String| Error::Audit {
            path: path.to_path_buf(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create directory: {e}")))?;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
            .map_err(|e| err(format!("cannot create: {e}")))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            run_id: run_id.to_string(),
            inner: Mutex::new(Chain {
                file,
                seq: 0,
                prev: GENESIS.to_string(),
            }),
            mirror: Mutex::new(None),
        })
    }

    /// Mirrors every record appended from now on to `s3://bucket/prefix<run id>/<seq>.json`.
    pub fn mirror_to(&self, s3: aws_sdk_s3::Client, bucket: String, prefix: String) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, String)>();
        let run_id = self.run_id.clone();
        let target = format!("s3://{bucket}/{prefix}{run_id}/");
        let task = tokio::spawn(async move {
            let mut report = MirrorReport {
                target,
                ..MirrorReport::default()
            };
            while let Some((seq, line)) = rx.recv().await {
                let key = format!("{prefix}{run_id}/{seq:06}.json");
                let put = s3
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .content_type("application/json")
                    .body(aws_sdk_s3::primitives::ByteStream::from(line.into_bytes()))
                    .send()
                    .await;
                match put {
                    Ok(_) => report.uploaded += 1,
                    Err(e) => {
                        let e = crate::aws::aws_error("s3:PutObject", e);
                        if report.failed < 3 {
                            errln!("warning: audit mirror {}: {e}", report.target);
                        }
                        report.failed += 1;
                        report.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            report
        });
        if let Ok(mut m) = self.mirror.lock() {
            *m = Some(Mirror { tx, task });
        }
    }

    /// Waits (at most `limit`) for the mirror to upload what it was handed.
    pub async fn close_mirror(&self, limit: std::time::Duration) -> Option<MirrorReport> {
        let mirror = self.mirror.lock().ok()?.take()?;
        drop(mirror.tx);
        match tokio::time::timeout(limit, mirror.task).await {
            Ok(Ok(report)) => Some(report),
            _ => Some(MirrorReport {
                first_error: Some("the mirror did not finish in time".into()),
                ..MirrorReport::default()
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and fsyncs it; returns its `seq`. A failure here must
    /// stop the run: a change without its intent record is not allowed.
    pub fn append(&self, event: Event) -> Result<u64, Error> {
        let err = |message: String| Error::Audit {
            path: self.path.clone(),
            message,
        };
        let mut chain = self
            .inner
            .lock()
            .map_err(|_| err("audit writer poisoned by an earlier panic".into()))?;
        let record = Record {
            seq: chain.seq,
            ts: jiff::Timestamp::now(),
            run_id: self.run_id.clone(),
            prev: chain.prev.clone(),
            event,
        };
        let (line, hash) = seal(&record).map_err(|e| err(format!("cannot encode record: {e}")))?;
        // One write per record, newline included: a process killed between two
        // writes would leave a torn record that reads like tampering.
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        chain
            .file
            .write_all(&buf)
            .and_then(|_| chain.file.sync_data())
            .map_err(|e| err(format!("cannot write: {e}")))?;
        chain.seq += 1;
        chain.prev = hash;
        // Never blocks: a dead mirror must not hold up containment.
        if let Ok(m) = self.mirror.lock()
            && let Some(m) = m.as_ref()
        {
            let _ = m.tx.send((record.seq, line));
        }
        Ok(record.seq)
    }

    /// The hash of the last record written (printed so it can be kept elsewhere).
    pub fn head(&self) -> String {
        self.inner
            .lock()
            .map(|c| c.prev.clone())
            .unwrap_or_default()
    }
}

/// Canonical JSON of a record (keys sorted) with its `hash` added.
fn seal(record: &Record) -> Result<(String, String), serde_json::Error> {
    let mut value = serde_json::to_value(record)?;
    let hash = hash_of(&value);
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("hash".into(), serde_json::Value::String(hash.clone()));
    }
    Ok((value.to_string(), hash))
}

fn hash_of(value: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// What `audit verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub path: String,
    pub records: usize,
    pub run_id: Option<String>,
    pub dry_run: Option<bool>,
    /// The hash of the last good record.
    pub head: Option<String>,
    /// The first break in the chain, if any (line numbers are 1-based).
    pub broken: Option<String>,
    /// True when the log ends with its run-end record.
    pub complete: bool,
    /// Calls announced but never resolved: they may or may not have happened.
    pub uncertain: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.broken.is_none() && self.complete && self.uncertain.is_empty()
    }
}

/// Reads a log and its records, checking the chain as it goes.
pub fn read(path: &Path) -> Result<(Verification, Vec<Record>), Error> {
    let file = File::open(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut v = Verification {
        path: path.display().to_string(),
        records: 0,
        run_id: None,
        dry_run: None,
        head: None,
        broken: None,
        complete: false,
        uncertain: Vec::new(),
    };
    let mut records = Vec::new();
    let mut prev = GENESIS.to_string();
    let mut open_intents: BTreeMap<u64, String> = BTreeMap::new();
    let mut ended = false;
    let mut reader = BufReader::new(file);
    let mut raw = Vec::new();
    let mut line_no = 0usize;
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .map_err(|source| Error::ReadFile {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let fail = |msg: String| Some(format!("line {line_no}: {msg}"));
        if raw.last() != Some(&b'\n') {
            v.broken = fail("truncated record (no newline): the write was cut off".into());
            break;
        }
        let Ok(text) = std::str::from_utf8(&raw[..raw.len() - 1]) else {
            v.broken = fail("not UTF-8".into());
            break;
        };
        let mut value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                v.broken = fail(format!("not a JSON record: {e}"));
                break;
            }
        };
        let claimed = value
            .as_object_mut()
            .and_then(|m| m.remove("hash"))
            .and_then(|h| h.as_str().map(str::to_string));
        let Some(claimed) = claimed else {
            v.broken = fail("record has no hash".into());
            break;
        };
        if hash_of(&value) != claimed {
            v.broken = fail("record was modified (its hash does not match its content)".into());
            break;
        }
        let record: Record = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                v.broken = fail(format!("unreadable record: {e}"));
                break;
            }
        };
        if record.prev != prev {
            v.broken = fail(
                "chain broken: `prev` does not match the previous record (a record was removed, inserted or moved)"
                    .into(),
            );
            break;
        }
        if record.seq != records.len() as u64 {
            v.broken = fail(format!(
                "sequence broken: expected seq {}, found {}",
                records.len(),
                record.seq
            ));
            break;
        }
        if ended {
            v.broken = fail("record after the run-end record".into());
            break;
        }
        match (&v.run_id, records.is_empty()) {
            (None, true) => {
                let Event::RunStart { dry_run, .. } = &record.event else {
                    v.broken = fail("the first record is not a run-start record".into());
                    break;
                };
                v.run_id = Some(record.run_id.clone());
                v.dry_run = Some(*dry_run);
            }
            (Some(id), _) if *id != record.run_id => {
                v.broken = fail(format!("record of another run ({})", record.run_id));
                break;
            }
            _ => {}
        }
        match &record.event {
            Event::Intent { call, target, .. } | Event::UndoIntent { call, target, .. } => {
                open_intents.insert(record.seq, format!("{call} ({target})"));
            }
            Event::Result {
                intent: Some(i), ..
            } if open_intents.remove(i).is_none() => {
                v.broken = fail(format!("result for unknown intent {i}"));
                break;
            }
            Event::RunEnd { .. } => ended = true,
            _ => {}
        }
        prev = claimed;
        v.head = Some(prev.clone());
        records.push(record);
    }
    v.records = records.len();
    if v.broken.is_none() && records.is_empty() {
        v.broken = Some("the log is empty".into());
    }
    v.complete = ended && v.broken.is_none();
    v.uncertain = open_intents.into_values().collect();
    Ok((v, records))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> PathBuf {
        let path = dir.join("a.jsonl");
        let log = AuditLog::create(&path, "r1").expect("create");
        log.append(Event::StepStart {
            step: 0,
            name: "x".into(),
            action: "iam.deactivate_access_keys".into(),
        })
        .expect("append");
        path
    }

    #[test]
    fn first_record_must_be_run_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = sample(dir.path());
        let (v, _) = read(&path).expect("read");
        assert!(v.broken.is_some_and(|b| b.contains("run-start")));
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = sample(dir.path());
        assert!(AuditLog::create(&path, "r2").is_err());
    }
}
