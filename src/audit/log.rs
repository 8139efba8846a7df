//! Writing a log: one signed line per record, fsynced before the call it
//! announces, in a private file; and its copy in S3.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AuditKey, Event, FORMAT, GENESIS, Record};
use crate::Error;
use crate::files;

/// An open audit log for one run. Appends are serialized and fsynced.
pub struct AuditLog {
    path: PathBuf,
    run_id: String,
    key: Arc<AuditKey>,
    inner: Mutex<Chain>,
    mirror: Mutex<Option<Running>>,
}

struct Chain {
    file: File,
    seq: u64,
    prev: String,
    sig: String,
}

/// Where a run's records are copied: a bucket of the forensic account,
/// ideally with Object Lock in compliance mode.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub prefix: String,
    /// The account that must own the bucket (`ExpectedBucketOwner` on every
    /// write): a bucket name an attacker registered elsewhere gets nothing.
    pub owner: String,
}

/// A copy of every record in S3, one object per record, named by `seq`,
/// written only if absent (`If-None-Match: *`). Uploads run in the
/// background: a failing mirror never slows or stops containment, but it
/// makes the run's status say so.
struct Running {
    tx: tokio::sync::mpsc::UnboundedSender<(u64, String)>,
    task: tokio::task::JoinHandle<MirrorReport>,
}

/// What the mirror managed to copy.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct MirrorReport {
    pub target: String,
    pub uploaded: u64,
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl MirrorReport {
    /// Every record that was handed over is in the bucket.
    pub fn complete(&self) -> bool {
        self.failed == 0 && self.first_error.is_none()
    }
}

impl AuditLog {
    /// Creates a new log, 0600, in a folder of ours; never overwrites, never
    /// writes through a symbolic link.
    pub fn create(path: &Path, run_id: &str, key: Arc<AuditKey>) -> Result<Self, Error> {
        let err = |message: String| Error::Audit {
            path: path.to_path_buf(),
            message,
        };
        if let Some(dir) = path.parent() {
            files::private_dir(dir).map_err(err)?;
        }
        let file = files::create_private(path).map_err(|e| err(format!("cannot create: {e}")))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            run_id: run_id.to_string(),
            key,
            inner: Mutex::new(Chain {
                file,
                seq: 0,
                prev: GENESIS.to_string(),
                sig: String::new(),
            }),
            mirror: Mutex::new(None),
        })
    }

    pub fn key(&self) -> &AuditKey {
        &self.key
    }

    /// Mirrors every record appended from now on to
    /// `s3://bucket/prefix<run id>/<seq>.json`.
    pub fn mirror_to(&self, m: Mirror) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, String)>();
        let run_id = self.run_id.clone();
        let target = format!("s3://{}/{}{run_id}/", m.bucket, m.prefix);
        let task = tokio::spawn(async move {
            let mut report = MirrorReport {
                target,
                ..MirrorReport::default()
            };
            while let Some((seq, line)) = rx.recv().await {
                let key = object_key(&m.prefix, &run_id, seq);
                let put =
                    crate::actions::s3::put_record(&m.client, &m.bucket, &key, &m.owner, line)
                        .await;
                match put {
                    Ok(()) => report.uploaded += 1,
                    Err(e) => {
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
        if let Ok(mut slot) = self.mirror.lock() {
            *slot = Some(Running { tx, task });
        }
    }

    /// Waits (at most `limit`) for the mirror to upload what it was handed.
    pub async fn close_mirror(&self, limit: std::time::Duration) -> Option<MirrorReport> {
        let running = self.mirror.lock().ok()?.take()?;
        drop(running.tx);
        match tokio::time::timeout(limit, running.task).await {
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

    /// Appends one record, signed, and fsyncs it; returns its `seq`. A
    /// failure here must stop the run: a change without its intent record
    /// is not allowed.
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
        let body = serde_json::to_string(&record)
            .map_err(|e| err(format!("cannot encode record: {e}")))?;
        let (line, hash, sig) = seal(&body, &self.key);
        // One write per record, newline included: a process killed between two
        // writes would leave a torn record that reads like tampering.
        chain
            .file
            .write_all(line.as_bytes())
            .and_then(|_| chain.file.sync_data())
            .map_err(|e| err(format!("cannot write: {e}")))?;
        chain.seq += 1;
        chain.prev = hash;
        chain.sig = sig;
        // Never blocks: a dead mirror must not hold up containment.
        if let Ok(m) = self.mirror.lock()
            && let Some(m) = m.as_ref()
        {
            let _ = m.tx.send((record.seq, line));
        }
        Ok(record.seq)
    }

    /// The hash of the last record written and its signature (printed so
    /// they can be kept elsewhere: `audit verify --expect-head`).
    pub fn head(&self) -> String {
        self.inner
            .lock()
            .map(|c| c.prev.clone())
            .unwrap_or_default()
    }

    pub fn head_signature(&self) -> String {
        self.inner.lock().map(|c| c.sig.clone()).unwrap_or_default()
    }
}

/// The object a record is mirrored to.
pub fn object_key(prefix: &str, run_id: &str, seq: u64) -> String {
    format!("{prefix}{run_id}/{seq:06}.json")
}

/// The line for a record's exact bytes: its hash and signature added
/// around it, never re-serialized.
pub fn seal(body: &str, key: &AuditKey) -> (String, String, String) {
    let digest = Sha256::digest(body.as_bytes());
    let hash = hex::encode(digest);
    let sig = key.sign(&digest);
    let line =
        format!("{{\"v\":{FORMAT},\"record\":{body},\"hash\":\"{hash}\",\"sig\":\"{sig}\"}}\n");
    (line, hash, sig)
}
