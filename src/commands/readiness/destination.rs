//! Where the audit log goes: the local directory, the signing key and the
//! S3 mirror.

use crate::aws::Session;
use crate::readiness::{Check, Findings};
use std::path::{Path, PathBuf};

/// The local audit destination can be written, and the signing key is there.
pub(super) fn check_audit(found: &mut Findings, local: Option<&Path>) {
    let dir = match local.and_then(Path::parent) {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => PathBuf::from("breakglass-audit"),
    };
    // The run creates what is missing of the directory: the nearest part
    // that exists must be a directory it can write in.
    let nearest = dir
        .ancestors()
        .find(|a| a.as_os_str().is_empty() || a.exists())
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .unwrap_or(Path::new("."));
    let writable = if nearest.is_dir() {
        let probe = nearest.join(format!(".breakglass-readiness-{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| e.to_string())
    } else {
        Err(format!("{} is not a directory", nearest.display()))
    };
    match writable {
        Ok(()) => found.ok(
            Check::Audit,
            "--audit-log",
            format!("{} can be written", dir.display()),
        ),
        Err(e) => found.error(
            Check::Audit,
            "--audit-log",
            format!("{} cannot be written: {e}", dir.display()),
            "give --audit-log a path the responder can write, or fix the directory",
        ),
    }
    match crate::audit::AuditKey::existing() {
        Ok(Some(k)) => found.ok(Check::Audit, "signing key", format!("{} ({})", k.path().display(), k.public())),
        Ok(None) => found.warn(
            Check::Audit,
            "signing key",
            "no audit signing key yet: the first run creates one",
            "create it now (any `run --dry-run`) and keep its public key apart, to verify logs with --trust",
        ),
        Err(e) => found.error(
            Check::Audit,
            "signing key",
            e.to_string(),
            "restore the key file, or point BREAKGLASS_AUDIT_KEY at it",
        ),
    }
}

/// The S3 mirror: the bucket answers, is the named account's, and keeps
/// the copy in Object Lock compliance mode.
pub(super) async fn check_mirror(
    found: &mut Findings,
    session: &Session,
    bucket: &str,
    prefix: &str,
    owner: &str,
) {
    let subject = format!("s3://{bucket}/{prefix}");
    match crate::audit::bucket_client(&session.clients, &session.region, bucket, owner).await {
        Ok(client) => {
            if crate::actions::s3::compliance_locked(&client, bucket, owner).await {
                found.ok(Check::Audit, subject, format!("reachable, owned by {owner}, Object Lock in compliance mode"));
            } else {
                found.warn(
                    Check::Audit,
                    subject,
                    "reachable, but without default Object Lock retention in COMPLIANCE mode: the copy can be deleted",
                    "turn on Object Lock with a default COMPLIANCE retention on the bucket",
                );
            }
        }
        Err(e) => found.error(
            Check::Audit,
            subject,
            format!("the mirror bucket cannot be reached: {e}"),
            format!("create the bucket in account {owner}, or grant the break-glass identity s3:PutObject and s3:GetBucketLocation on it"),
        ),
    }
}
