//! The credential chain: which hop failed and why, the `assume_role` hop
//! read when it cannot be assumed unattended, and the session a hold needs.

use crate::aws::{self, Principal, RetryPolicy, Session, Telemetry};
use crate::error::Error;
use crate::readiness::{Check, Findings, Trust, trust_allows};
use std::time::Duration;

/// AWS caps a session reached by role chaining at one hour: "if you assume a
/// role using role chaining and provide a DurationSeconds parameter value
/// greater than one hour, the operation fails" (STS API reference,
/// AssumeRole, DurationSeconds).
const CHAINED_MAX: u32 = 3600;
/// `AssumeRole`'s default session length (same reference).
pub(super) const DEFAULT_SESSION: u32 = 3600;

/// A credential chain that did not resolve: which hop, and what to fix.
pub(super) fn credential_finding(found: &mut Findings, e: Error) {
    let text = e.to_string();
    let body = text.strip_prefix("credentials: ").unwrap_or(&text);
    let (subject, message) = match body.split_once(": ") {
        Some((hop, rest)) if hop.contains("assume") || hop.starts_with("profile") => {
            (hop.to_string(), rest.to_string())
        }
        _ => ("credential chain".to_string(), body.to_string()),
    };
    let fix = if message.contains("MFA code") {
        "pass --mfa-code (readiness never prompts), or run it on a terminal"
    } else if message.contains("AccessDenied") || message.contains("not authorized") {
        "the role is gone, its trust policy no longer names the previous hop, that hop lost sts:AssumeRole, or the MFA code was wrong: restore the role and its trust policy, and check the hop's own policies"
    } else if [
        "ExpiredToken",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    ]
    .iter()
    .any(|c| message.contains(c))
    {
        "the profile's key is expired, rotated or deleted: put the current break-glass key in the profile"
    } else if matches!(e, Error::Config(_) | Error::Usage { .. }) {
        "fix the profile in the AWS config file (`breakglass whoami` shows the chain)"
    } else {
        "`breakglass whoami` shows where the chain stops"
    };
    found.error(Check::Credentials, subject, message, fix);
}

/// The playbook's `assume_role` hop when it was not assumed (it needs an
/// MFA code and none was given): the MFA device it names is still the
/// user's, the role's trust policy still names the caller, and the session
/// it asks for is one AWS grants. A hop that was assumed proved all of it.
pub(super) async fn read_role_hop(
    found: &mut Findings,
    session: &Session,
    hop: &crate::spec::AssumeRoleSpec,
    retry: &RetryPolicy,
    telemetry: &Telemetry,
) {
    let subject = format!("executor.assume_role {}", hop.role_arn);
    let id = &session.identity;
    // As the run sends it (`session::assume_role` caps it at 12 hours).
    let asked = hop.duration_seconds.unwrap_or(DEFAULT_SESSION).min(43_200);
    if asked < 900 {
        found.error(
            Check::Session,
            &subject,
            format!(
                "duration_seconds {asked} is under 900: AWS refuses the AssumeRole (900 to 43200)"
            ),
            "set duration_seconds to 900 or more",
        );
    }
    if matches!(id.principal, Principal::AssumedRole { .. }) && asked > CHAINED_MAX {
        found.error(
            Check::Session,
            &subject,
            format!(
                "duration_seconds {asked} is over one hour, and the hop is role chaining (the caller {} is itself a role session): AWS refuses the AssumeRole",
                id.arn
            ),
            "set duration_seconds to 3600 or less, or assume the role from a user's key",
        );
    }
    if let Some(serial) = &hop.mfa_serial {
        check_mfa_device(found, session, serial, retry, telemetry).await;
    }
    let role_account = hop.role_arn.split(':').nth(4).unwrap_or_default();
    let role_name = hop.role_arn.rsplit('/').next().unwrap_or_default();
    if role_account != id.account {
        found.warn(
            Check::Credentials,
            &subject,
            format!("the role is in account {role_account}: its trust policy and session limit cannot be read from {}", id.account),
            "run readiness with --mfa-code to assume it for real",
        );
        return;
    }
    let facts = match aws::probe::role_facts(
        &session.clients,
        &id.account,
        role_name,
        retry,
        telemetry,
    )
    .await
    {
        Ok(f) => f,
        Err(e) if e.kind == aws::ErrorKind::NotFound => {
            found.error(
                Check::Credentials,
                &subject,
                "the role does not exist",
                "recreate the break-glass role, or point executor.assume_role.role_arn at its new ARN",
            );
            return;
        }
        Err(e) => {
            found.warn(
                Check::Credentials,
                &subject,
                format!("the role cannot be read: {e}"),
                "allow iam:GetRole on it to have its trust policy and session limit checked",
            );
            return;
        }
    };
    if let Some(max) = facts.max_session_seconds
        && i64::from(asked) > i64::from(max)
    {
        found.error(
            Check::Session,
            &subject,
            format!("duration_seconds {asked} exceeds the role's MaxSessionDuration {max}: AWS refuses the AssumeRole"),
            format!("lower duration_seconds to {max}, or raise the role's maximum session duration"),
        );
    }
    // The caller as a trust policy names it: a user, or a role with its path.
    let caller = match &id.principal {
        Principal::AssumedRole { role_name, .. } => {
            match aws::probe::role_facts(&session.clients, &id.account, role_name, retry, telemetry)
                .await
            {
                Ok(f) => f.arn,
                // Without its path the ARN may not match the trust policy:
                // not judged rather than judged wrong.
                Err(e) => {
                    found.warn(
                        Check::Credentials,
                        &subject,
                        format!("the caller's role {role_name} cannot be read ({e}), so the trust policy was not judged"),
                        "allow iam:GetRole on the caller's own role",
                    );
                    return;
                }
            }
        }
        _ => id.arn.clone(),
    };
    match trust_allows(&facts.trust_policy, &caller, &id.account) {
        Trust::Allows { by_account: false } => found.ok(
            Check::Credentials,
            &subject,
            format!("its trust policy lets {caller} assume it"),
        ),
        Trust::Allows { by_account: true } => found.warn(
            Check::Credentials,
            &subject,
            format!("its trust policy trusts account {}: {caller} also needs sts:AssumeRole on the role in its own policies, which is not read here", id.account),
            "name the break-glass principal in the trust policy, or run readiness with --mfa-code to assume it for real",
        ),
        Trust::Denies => found.error(
            Check::Credentials,
            &subject,
            format!("its trust policy does not let {caller} assume it (no Allow names it or its account, a Deny names it, or it asks for an external id, which a run never sends)"),
            format!("restore the trust policy: an Allow of sts:AssumeRole for {caller}"),
        ),
        Trust::Unreadable => found.warn(
            Check::Credentials,
            &subject,
            "its trust policy is not JSON",
            "read it with `aws iam get-role`",
        ),
    }
}

/// The MFA device a hop names is still assigned to the user (IAM
/// `ListMFADevices`); a device that was replaced fails every AssumeRole.
async fn check_mfa_device(
    found: &mut Findings,
    session: &Session,
    serial: &str,
    retry: &RetryPolicy,
    telemetry: &Telemetry,
) {
    let id = &session.identity;
    let Principal::User { name } = &id.principal else {
        found.warn(
            Check::Mfa,
            serial,
            format!(
                "MFA devices belong to IAM users, and the base credential is {}: not checked",
                id.arn
            ),
            "run readiness with --mfa-code to assume the role for real",
        );
        return;
    };
    match aws::probe::mfa_devices(&session.clients, &id.account, name, retry, telemetry).await {
        Ok(devices) if devices.iter().any(|d| d == serial) => {
            found.ok(Check::Mfa, serial, format!("assigned to user {name}"))
        }
        Ok(devices) => found.error(
            Check::Mfa,
            serial,
            format!(
                "not assigned to user {name} (assigned: {}): the device was replaced or removed, and AssumeRole with it fails",
                if devices.is_empty() {
                    "none".to_string()
                } else {
                    devices.join(", ")
                }
            ),
            "put the user's current device in executor.assume_role.mfa_serial, or assign the device again",
        ),
        Err(e) => found.warn(
            Check::Mfa,
            serial,
            format!("the user's MFA devices cannot be read: {e}"),
            "allow iam:ListMFADevices on the break-glass user to have this checked",
        ),
    }
}

/// A hold longer than a session that needs an MFA code to renew: renewed
/// only from a terminal. A profile's role is taken to last an hour (the
/// `AssumeRole` default) unless the run was told otherwise.
pub(super) fn check_hold(
    found: &mut Findings,
    session: &Session,
    hop: Option<&crate::spec::AssumeRoleSpec>,
    hold: Option<Duration>,
) {
    let Some(hold) = hold else { return };
    let mut gated: Vec<(String, u64)> = session
        .identity
        .chain
        .iter()
        .filter(|h| h.profile.is_some() && h.mfa_serial.is_some())
        .map(|h| {
            (
                format!("profile hop {}", h.principal),
                u64::from(DEFAULT_SESSION),
            )
        })
        .collect();
    if let Some(h) = hop.filter(|h| h.mfa_serial.is_some()) {
        let secs = h.duration_seconds.unwrap_or(DEFAULT_SESSION).min(43_200);
        gated.push((
            format!("executor.assume_role {}", h.role_arn),
            u64::from(secs),
        ));
    }
    let mut short = false;
    for (subject, secs) in gated.into_iter().filter(|(_, secs)| hold.as_secs() > *secs) {
        short = true;
        found.warn(
            Check::Session,
            subject,
            format!(
                "a {}s hold outlasts its {secs}s session, and renewing it needs a new MFA code on a terminal: unattended, the hold's calls fail once it ends",
                hold.as_secs()
            ),
            "hold from a terminal, or raise duration_seconds (and the role's MaxSessionDuration) to cover the hold",
        );
    }
    if !short {
        found.ok(
            Check::Session,
            "hold",
            format!("a {}s hold renews its sessions on its own", hold.as_secs()),
        );
    }
}
