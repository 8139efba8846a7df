//! What a run writes about itself: where its audit log goes, its start
//! record, and the S3 mirror.

use super::session::session_name_for;
use crate::audit::{self, Event};
use crate::aws::{self, Session};
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::playbook::Playbook;
use std::collections::BTreeMap;

/// Where a run's records go: a local file and, optionally, an S3 bucket and prefix.
pub(super) type AuditDestinations = (Option<std::path::PathBuf>, Option<(String, String)>);

/// `--audit-log` values: at most one local path and one `s3://` mirror.
pub(super) fn audit_destinations(values: &[String]) -> Result<AuditDestinations, Error> {
    let usage = |message: String| Error::Usage {
        flag: "--audit-log".into(),
        message,
    };
    let mut local = None;
    let mut mirror = None;
    for v in values {
        if v.starts_with("s3://") {
            let parsed = audit::parse_s3_url(v)
                .ok_or_else(|| usage(format!("`{v}` is not s3://bucket/prefix")))?;
            if mirror.replace(parsed).is_some() {
                return Err(usage("give at most one s3:// mirror".into()));
            }
        } else if local.replace(std::path::PathBuf::from(v)).is_some() {
            return Err(usage("give at most one local path".into()));
        }
    }
    Ok((local, mirror))
}

/// The run-start record: what ran, as whom, through which chain, where.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_start(
    session: &Session,
    playbook: &str,
    name: &str,
    digest: &str,
    dry_run: bool,
    vars: BTreeMap<String, String>,
    rollback_of: Option<String>,
    executor: Option<audit::ExecutorRecord>,
    protect: &[String],
    key: &audit::AuditKey,
) -> Event {
    Event::RunStart {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        playbook: playbook.to_string(),
        playbook_name: name.to_string(),
        playbook_digest: digest.to_string(),
        dry_run,
        identity: session.identity.clone(),
        profile: session.profile.clone(),
        credential_source: session.source(),
        region: session.region.clone(),
        endpoint: session.endpoints().global.clone(),
        endpoints: session.endpoints().clone(),
        executor,
        vars,
        args: redacted_args(std::env::args().skip(1)),
        rollback_of,
        audit_key: Some(key.public()),
        protect: protect.to_vec(),
    }
}

/// The S3 copy of the log: the bucket of the forensic account (checked to
/// be that account's with `ExpectedBucketOwner`), in its own region,
/// written with `--audit-profile` or the break-glass credential. A bucket
/// without Object Lock in compliance mode is said to be deletable.
pub(super) async fn audit_mirror(
    global: &GlobalArgs,
    session: &Session,
    bucket: String,
    prefix: String,
    owner: &str,
    profile: Option<&str>,
) -> Result<audit::Mirror, Error> {
    let clients = match profile {
        None => session.clients.clone(),
        Some(p) => {
            let mut conn = global.connection(None)?;
            conn.profile = p.to_string();
            conn.profile_source = "--audit-profile".into();
            conn.allow_implicit_endpoints = false;
            conn.session_name = session_name_for("audit-mirror");
            aws::connect(&conn).await?.clients
        }
    };
    // An unreachable mirror is loud but stops no containment: the run's
    // status then says the mirror is incomplete, and it exits 1.
    let client = match audit::bucket_client(&clients, &session.region, &bucket, owner).await {
        Ok(c) => c,
        Err(e) => {
            errln!("warning: audit mirror s3://{bucket}/{prefix}: {e}");
            clients.s3(&session.region)
        }
    };
    let compliance = crate::actions::s3::compliance_locked(&client, &bucket, owner).await;
    if !compliance {
        errln!(
            "warning: audit mirror s3://{bucket}/{prefix}: the bucket has no default Object Lock retention in COMPLIANCE mode: whoever holds its account's admin can delete the copy"
        );
    }
    Ok(audit::Mirror {
        client,
        bucket,
        prefix,
        owner: owner.to_string(),
    })
}

/// What a rollback needs to connect as the run did: the playbook's
/// `executor.assume_role` (the MFA device, never a code).
pub(super) fn executor_record(pb: &Playbook) -> Option<audit::ExecutorRecord> {
    pb.executor
        .assume_role
        .as_ref()
        .map(|a| audit::ExecutorRecord {
            role_arn: a.role_arn.clone(),
            mfa_serial: a.mfa_serial.clone(),
            duration_seconds: a.duration_seconds,
        })
}

/// The command line for the audit log, with secret values (the MFA code)
/// replaced: nothing secret is ever written there.
pub(super) fn redacted_args(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in args {
        if hide_next {
            out.push("<redacted>".into());
            hide_next = false;
        } else if a == "--mfa-code" {
            hide_next = true;
            out.push(a);
        } else if a.starts_with("--mfa-code=") {
            out.push("--mfa-code=<redacted>".into());
        } else {
            out.push(a);
        }
    }
    out
}
