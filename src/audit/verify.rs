//! Reading a log back: the hash chain over each record's exact bytes, the
//! signature of every record, the key that made them, completeness.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AuditKey, Event, GENESIS, Record};
use crate::Error;
use crate::signing as key;

/// Which signing key a reader trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// This machine's audit key (`~/.config/breakglass/audit-key`).
    Local,
    /// A public key given on the command line (hex), e.g. a colleague's.
    Key(String),
}

/// What `audit verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub path: String,
    /// 2, or 1 for a log written before records were signed.
    pub format: u32,
    pub records: usize,
    pub run_id: Option<String>,
    pub dry_run: Option<bool>,
    /// The hash of the last good record.
    pub head: Option<String>,
    /// The first break in the chain or its signatures (lines are 1-based).
    pub broken: Option<String>,
    /// True when the log ends with its run-end record.
    pub complete: bool,
    /// The last line was cut mid-write (no newline, nothing after it): the
    /// process was killed while writing it. Linux can cut a write that
    /// spans pages when a fatal signal arrives ("generic_perform_write"
    /// stops at a pending SIGKILL), so one `write` per record is not
    /// atomic against SIGKILL. The records before it verify; the record it
    /// would have been was never complete, so the call an intent there
    /// announced never started (calls start after their intent is
    /// written). Not a break, but not a complete log either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn: Option<String>,
    /// Calls announced but never resolved: they may or may not have happened.
    pub uncertain: Vec<String>,
    /// The public key every record is signed with.
    pub signed_by: Option<String>,
    /// That key is this machine's, or the one given with `--key`.
    pub trusted_key: bool,
    /// `--expect-head`: whether the log ends with that hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_matches: Option<bool>,
}

impl Verification {
    /// Signed, and by a key this reader trusts (or anchored by a head hash
    /// kept elsewhere).
    pub fn authentic(&self) -> bool {
        self.format >= 2
            && self.signed_by.is_some()
            && self.broken.is_none()
            && self.head_matches != Some(false)
            && (self.trusted_key || self.head_matches == Some(true))
    }

    pub fn ok(&self) -> bool {
        self.authentic() && self.complete && self.uncertain.is_empty()
    }
}

/// The three parts of a version 2 line: the record's exact bytes, their
/// hash and signature.
fn split_v2(text: &str) -> Option<(&str, &str, &str)> {
    let rest = text.strip_prefix("{\"v\":2,\"record\":")?;
    let (rest, sig) = rest.strip_suffix("\"}")?.rsplit_once(",\"sig\":\"")?;
    let (record, hash) = rest.strip_suffix('"')?.rsplit_once(",\"hash\":\"")?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(hash, 64) && hex(sig, 128)).then_some((record, hash, sig))
}

/// A version 1 line (no signature; `hash` inside the record): the record's
/// bytes as written, without the `hash` member, and that hash. Hashing the
/// bytes as written, not a re-serialization, verifies it with any build.
fn split_v1(text: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let hash = value.get("hash")?.as_str()?.to_string();
    value.get("seq")?;
    let member = format!("\"hash\":\"{hash}\"");
    let at = text.find(&member)?;
    let (before, after) = (&text[..at], &text[at + member.len()..]);
    let body = if let Some(b) = before.strip_suffix(',') {
        format!("{b}{after}")
    } else if let Some(a) = after.strip_prefix(',') {
        format!("{before}{a}")
    } else {
        format!("{before}{after}")
    };
    Some((body, hash))
}

fn not_a_log(path: &Path, why: &str) -> Error {
    Error::NotAuditLog {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Reads a log and its records, checking chain, signatures and trust as it
/// goes. A file that is not a breakglass audit log at all (a CloudTrail
/// export, an empty file, text) is an error of its own (exit 2), apart
/// from a log that does not verify.
pub fn read(
    path: &Path,
    trust: &Trust,
    expect_head: Option<&str>,
) -> Result<(Verification, Vec<Record>), Error> {
    let file = File::open(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut v = Verification {
        path: path.display().to_string(),
        format: 2,
        records: 0,
        run_id: None,
        dry_run: None,
        head: None,
        broken: None,
        complete: false,
        torn: None,
        uncertain: Vec::new(),
        signed_by: None,
        trusted_key: false,
        head_matches: None,
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
        let text = std::str::from_utf8(&raw).ok();
        // The first line decides what the file is.
        if line_no == 1 {
            let first = text.map(|t| t.trim_end_matches('\n')).unwrap_or_default();
            if split_v2(first).is_some() {
                v.format = 2;
            } else if split_v1(first).is_some() {
                v.format = 1;
            } else {
                return Err(not_a_log(
                    path,
                    "its first line is not a breakglass audit record",
                ));
            }
        }
        if raw.last() != Some(&b'\n') {
            // `read_until` stops short of a newline only at the end of the
            // file: this is the last line.
            v.torn = Some(format!(
                "line {line_no}: truncated record (no newline): the write was cut off, the process killed while writing it; the records before it verify"
            ));
            break;
        }
        let Some(text) = text.map(|t| &t[..t.len() - 1]) else {
            v.broken = fail("not UTF-8".into());
            break;
        };
        let (body, claimed, sig) = if v.format == 2 {
            match split_v2(text) {
                Some((b, h, s)) => (b.to_string(), h.to_string(), Some(s.to_string())),
                None => {
                    v.broken = fail("not a signed audit record".into());
                    break;
                }
            }
        } else {
            match split_v1(text) {
                Some((b, h)) => (b, h, None),
                None => {
                    v.broken = fail("not an audit record".into());
                    break;
                }
            }
        };
        let digest = Sha256::digest(body.as_bytes());
        if hex::encode(digest) != claimed {
            v.broken = fail("record was modified (its hash does not match its content)".into());
            break;
        }
        let record: Record = match serde_json::from_str(&body) {
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
                let Event::RunStart {
                    dry_run, audit_key, ..
                } = &record.event
                else {
                    v.broken = fail("the first record is not a run-start record".into());
                    break;
                };
                v.run_id = Some(record.run_id.clone());
                v.dry_run = Some(*dry_run);
                v.signed_by = audit_key.clone();
                if v.format == 2 && v.signed_by.is_none() {
                    v.broken = fail("the run-start record names no signing key".into());
                    break;
                }
            }
            (Some(id), _) if *id != record.run_id => {
                v.broken = fail(format!("record of another run ({})", record.run_id));
                break;
            }
            _ => {}
        }
        if let (Some(public), Some(sig)) = (&v.signed_by, &sig)
            && !key::verify(public, &digest, sig)
        {
            v.broken = fail(
                "signature does not match: the record was not sealed by the key the log names (re-sealed, or forged)"
                    .into(),
            );
            break;
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
    if line_no == 0 {
        return Err(not_a_log(path, "it is empty"));
    }
    v.records = records.len();
    v.complete = ended && v.broken.is_none();
    v.uncertain = open_intents.into_values().collect();
    v.trusted_key = match (trust, &v.signed_by) {
        (_, None) => false,
        (Trust::Key(k), Some(s)) => k.eq_ignore_ascii_case(s),
        (Trust::Local, Some(s)) => AuditKey::existing()
            .ok()
            .flatten()
            .is_some_and(|k| k.public() == *s),
    };
    if let Some(expected) = expect_head {
        v.head_matches = Some(
            v.head
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(expected)),
        );
    }
    Ok((v, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_line_verifies_whatever_its_key_order() {
        // As a build with serde_json's preserve_order wrote it (hash last)…
        let body = r#"{"seq":0,"ts":"2026-01-01T00:00:00Z","run_id":"r","prev":"0","event":"step_start","step":0,"name":"x","action":"a"}"#;
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        let last = format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]);
        assert_eq!(split_v1(&last), Some((body.to_string(), hash.clone())));
        // …and as one with sorted keys wrote it (hash in the middle).
        let sorted = r#"{"action":"a","event":"step_start","name":"x","prev":"0","run_id":"r","seq":0,"step":0,"ts":"2026-01-01T00:00:00Z"}"#;
        let h2 = hex::encode(Sha256::digest(sorted.as_bytes()));
        let mid = sorted.replacen("\"event\"", &format!("\"hash\":\"{h2}\",\"event\""), 1);
        assert_eq!(split_v1(&mid), Some((sorted.to_string(), h2)));
    }

    #[test]
    fn version_2_lines_split_at_their_last_members() {
        let sig = "ab".repeat(64);
        let hash = "cd".repeat(32);
        let record = r#"{"name":"\",\"hash\":\"tricky"}"#;
        let line = format!("{{\"v\":2,\"record\":{record},\"hash\":\"{hash}\",\"sig\":\"{sig}\"}}");
        assert_eq!(split_v2(&line), Some((record, hash.as_str(), sig.as_str())));
        assert_eq!(split_v2("{\"v\":2,\"record\":{}}"), None);
    }
}
