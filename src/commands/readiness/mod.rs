//! `readiness`: whether each playbook would run as written today, checked
//! read-only before the incident: the credential chain, the identity pins,
//! member roles, regions, permissions, quotas and the audit destination.

mod chain;
mod destination;
mod estate;

use super::load::{Loaded, load};
use super::record::audit_destinations;
use super::session::{assume_role, check_identity, session_name};
use crate::aws::{self, RetryPolicy, Session, Telemetry};
use crate::cli::GlobalArgs;
use crate::error::{Error, ExitCode};
use crate::readiness::{Check, Findings, Severity};
use crate::render::Printer;
use chain::{check_hold, credential_finding, read_role_hop};
use destination::{check_audit, check_mirror};
use estate::check_estate;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) struct ReadinessRequest<'a> {
    pub(super) playbooks: &'a [PathBuf],
    pub(super) vars: &'a [(String, String)],
    pub(super) hold: Option<Duration>,
    pub(super) audit_log: &'a [String],
    pub(super) audit_bucket_owner: Option<&'a str>,
}

pub(super) async fn readiness(
    global: &GlobalArgs,
    out: &Printer,
    req: ReadinessRequest<'_>,
) -> Result<ExitCode, Error> {
    let (local, mut mirror) = audit_destinations(req.audit_log)?;
    if mirror.is_some() && req.audit_bucket_owner.is_none() {
        return Err(Error::Usage {
            flag: "--audit-bucket-owner".into(),
            message: "an s3:// audit log needs the account that owns the bucket".into(),
        });
    }
    // Several playbooks share the command line: each takes the variables
    // it declares, and one no playbook declares is a typo.
    let declared: Vec<BTreeSet<String>> = req
        .playbooks
        .iter()
        .map(|p| {
            // One that does not load takes every variable: its own finding
            // says what is wrong with it, not a usage error.
            crate::playbook::load(p)
                .map(|pb| pb.vars.keys().cloned().collect())
                .unwrap_or_else(|_| req.vars.iter().map(|(k, _)| k.clone()).collect())
        })
        .collect();
    if let Some((k, _)) = req
        .vars
        .iter()
        .find(|(k, _)| !declared.iter().any(|d| d.contains(k)))
    {
        return Err(Error::Usage {
            flag: "--var".into(),
            message: format!("no playbook given declares the variable `{k}`"),
        });
    }
    let mut all = Vec::new();
    let mut sessions = Sessions::new();
    for (n, (path, declared)) in req.playbooks.iter().zip(&declared).enumerate() {
        let vars: Vec<(String, String)> = req
            .vars
            .iter()
            .filter(|(k, _)| declared.contains(k))
            .cloned()
            .collect();
        let mut found = Findings::new(path.display().to_string());
        let session = check_playbook(global, &req, path, &vars, &mut sessions, &mut found).await;
        // The destination is the same for every playbook: checked once,
        // with the first that connects.
        if n == 0 {
            check_audit(&mut found, local.as_deref());
        }
        if let (Some(session), Some(owner)) = (&session, req.audit_bucket_owner)
            && let Some((bucket, prefix)) = mirror.take()
        {
            check_mirror(&mut found, session, &bucket, &prefix, owner).await;
        }
        if n + 1 == req.playbooks.len()
            && let Some((bucket, prefix)) = mirror.take()
        {
            found.error(
                Check::Audit,
                format!("s3://{bucket}/{prefix}"),
                "not checked: no playbook's credential chain connected",
                "fix the credential chain first",
            );
        }
        out.readiness(&found.list);
        all.extend(found.list);
    }
    Ok(if all.iter().any(|f| f.severity == Severity::Error) {
        ExitCode::Failed
    } else {
        ExitCode::Success
    })
}

/// Everything but the audit destination; returns the session reached, for
/// the S3 mirror's check.
async fn check_playbook(
    global: &GlobalArgs,
    req: &ReadinessRequest<'_>,
    path: &Path,
    vars: &[(String, String)],
    sessions: &mut Sessions,
    found: &mut Findings,
) -> Option<Session> {
    let loaded = match load(path, vars, global.accounts.as_ref()) {
        Ok(l) => l,
        Err(e) => {
            // Each problem on its own line, without the quoted source.
            let message = match &e {
                Error::InvalidPlaybook(problems) => problems
                    .0
                    .iter()
                    .map(|p| match p.pos {
                        Some(at) => format!("{}:{}: {}", at.line, at.column, p.message),
                        None => p.message.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            };
            found.error(
                Check::Playbook,
                path.display().to_string(),
                message,
                format!(
                    "`breakglass validate {}` lists every problem",
                    path.display()
                ),
            );
            return None;
        }
    };
    let steps = loaded.steps.len();
    found.ok(
        Check::Playbook,
        &loaded.playbook.name,
        format!("valid, {steps} step{}", if steps == 1 { "" } else { "s" }),
    );
    // A hop that needs an MFA code is read, not assumed, unless a code was
    // given: a scheduled check has none, and must not hang on a prompt.
    let mfa_hop = loaded
        .playbook
        .executor
        .assume_role
        .as_ref()
        .filter(|a| a.mfa_serial.is_some());
    let unattended = mfa_hop.is_some() && global.mfa_code.is_none();
    let session = match connect(global, &loaded, !unattended, sessions).await {
        Ok(s) => s,
        Err(e) => {
            credential_finding(found, e);
            return None;
        }
    };
    let base = &session.identity;
    let retry = RetryPolicy::default();
    let telemetry = Telemetry::new(usize::from(global.concurrency));
    let hop = loaded.playbook.executor.assume_role.as_deref();
    check_hold(found, &session, hop, req.hold);
    if unattended {
        if let Some(hop) = mfa_hop {
            read_role_hop(found, &session, hop, &retry, &telemetry).await;
            // Not proven is not ready: a monitor must not stay green over
            // a path nobody could check.
            found.error(
                Check::Credentials,
                format!("executor.assume_role {}", hop.role_arn),
                "not assumed without an MFA code: identity pins, member roles, regions, permissions and quotas were not checked",
                "run readiness with --mfa-code (`--mfa-code -` reads it from standard input, e.g. from the device's TOTP seed in a secret store)",
            );
        }
        return Some(session);
    }
    let hops: Vec<String> = base.chain.iter().map(ToString::to_string).collect();
    found.ok(
        Check::Credentials,
        "credential chain",
        match hops.len() {
            0 | 1 => format!("resolves to {}", base.arn),
            n => format!("{n} hops resolve to {}: {}", base.arn, hops.join(" → ")),
        },
    );
    match check_identity(&loaded.playbook, base) {
        Ok(()) => {
            let pins: Vec<&str> = [
                ("expect_account", loaded.playbook.executor.expect_account.is_some()),
                ("expect_principal", loaded.playbook.executor.expect_principal.is_some()),
            ]
            .iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| *name)
            .collect();
            if !pins.is_empty() {
                found.ok(Check::Identity, "executor", format!("{} match{}", pins.join(" and "), if pins.len() == 1 { "es" } else { "" }));
            } else {
                found.warn(
                    Check::Identity,
                    "executor",
                    "the playbook pins no identity: any credential the profile resolves to would run it",
                    format!("add executor.expect_account: \"{}\"", base.account),
                );
            }
        }
        Err(e) => found.error(
            Check::Identity,
            "executor",
            e.to_string(),
            "point the profile back at the break-glass identity, or update executor.expect_account / expect_principal if it moved on purpose",
        ),
    }
    check_estate(global, found, &session, &loaded).await;
    Some(session)
}

/// Sessions by how they were reached: playbooks that connect the same way
/// share one, since an MFA code is good for one `AssumeRole` and the chain
/// needs proving once.
type Sessions = std::collections::BTreeMap<String, Session>;

/// Connects as the playbook would, with or without its `assume_role` hop.
async fn connect(
    global: &GlobalArgs,
    loaded: &Loaded,
    with_hop: bool,
    sessions: &mut Sessions,
) -> Result<Session, Error> {
    let mut conn = global.connection(Some(&loaded.playbook.executor))?;
    conn.session_name = session_name(loaded);
    // As a live run connects: an endpoint from a variable or the profile
    // is refused unless the run is told otherwise (`--allow-env-endpoint`).
    conn.allow_implicit_endpoints = false;
    if with_hop {
        conn.assume = assume_role(loaded, &conn.session_name);
    }
    let key = format!(
        "{}|{:?}|{:?}|{:?}",
        conn.profile,
        conn.region,
        conn.endpoint_flag.as_ref().map(|e| &e.url),
        conn.assume
            .as_ref()
            .map(|h| (&h.role_arn, &h.mfa_serial, h.duration_seconds))
    );
    if let Some(s) = sessions.get(&key) {
        return Ok(s.clone());
    }
    let session = aws::connect(&conn).await?;
    sessions.insert(key, session.clone());
    Ok(session)
}
