//! The credential chain: which hop failed and why, the `assume_role` hop
//! read when it cannot be assumed unattended, and the session a hold needs.

use crate::aws::{self, Principal, RetryPolicy, Session, Telemetry};
use crate::error::Error;
use crate::readiness::{Check, Findings, trust_allows};
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
        "the role is gone or its trust policy no longer lets the previous hop assume it: restore the role and its trust policy"
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

/// The playbook's `assume_role` hop: the MFA device it names is still the
/// user's, the role's trust policy still names the caller (when the hop was
/// not assumed), and the session it asks for is one AWS grants.
pub(super) async fn check_role_hop(
    found: &mut Findings,
    session: &Session,
    hop: &crate::spec::AssumeRoleSpec,
    unattended: bool,
    hold: Option<Duration>,
    retry: &RetryPolicy,
    telemetry: &Telemetry,
) {
    let subject = format!("executor.assume_role {}", hop.role_arn);
    let id = &session.identity;
    // The principal that calls AssumeRole: the base when the hop was not
    // taken, else the hop before the last.
    let caller_is_role = if unattended {
        matches!(id.principal, Principal::AssumedRole { .. })
    } else {
        id.chain.len() >= 2
            && id.chain[..id.chain.len() - 1]
                .last()
                .is_some_and(|h| h.principal.contains(":assumed-role/") || h.via != "static key")
    };
    let asked = hop.duration_seconds.unwrap_or(DEFAULT_SESSION);
    if caller_is_role && asked > CHAINED_MAX {
        found.error(
            Check::Session,
            &subject,
            format!(
                "duration_seconds {asked} is over one hour, and the hop is role chaining (the caller is itself a role session): AWS refuses the AssumeRole"
            ),
            "set duration_seconds to 3600 or less, or assume the role from a user's key",
        );
    }
    if let (Some(serial), Principal::User { name }, true) =
        (&hop.mfa_serial, &id.principal, unattended)
    {
        match aws::probe::mfa_devices(&session.clients, &id.account, name, retry, telemetry).await
        {
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
    let role_account = hop.role_arn.split(':').nth(4).unwrap_or_default();
    let role_name = hop.role_arn.rsplit('/').next().unwrap_or_default();
    if role_account != id.account {
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
            if unattended {
                found.warn(
                    Check::Credentials,
                    &subject,
                    format!("the role cannot be read: {e}"),
                    "allow iam:GetRole on it to have its trust policy and session limit checked",
                );
            }
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
    if let Some(hold) = hold
        && hop.mfa_serial.is_some()
        && hold.as_secs() > u64::from(asked)
    {
        found.warn(
            Check::Session,
            &subject,
            format!(
                "a {}s hold outlasts the {asked}s session, and renewing it needs a new MFA code on a terminal",
                hold.as_secs()
            ),
            "hold from a terminal, or raise duration_seconds (and the role's MaxSessionDuration) to cover the hold",
        );
    }
    if !unattended {
        return;
    }
    let caller = match &id.principal {
        Principal::AssumedRole { role_name, .. } => {
            format!(
                "arn:{}:iam::{}:role/{role_name}",
                aws::partition(&id.arn),
                id.account
            )
        }
        _ => id.arn.clone(),
    };
    match trust_allows(&facts.trust_policy, &caller, &id.account) {
        Some(true) => found.ok(
            Check::Credentials,
            &subject,
            format!("its trust policy lets {caller} assume it"),
        ),
        Some(false) => found.error(
            Check::Credentials,
            &subject,
            format!("its trust policy does not let {caller} assume it (nor its account)"),
            format!("restore the trust policy: an Allow of sts:AssumeRole for {caller}"),
        ),
        None => found.warn(
            Check::Credentials,
            &subject,
            "its trust policy is not JSON",
            "read it with `aws iam get-role`",
        ),
    }
}

/// A hold longer than a session that needs an MFA code to renew.
pub(super) fn check_hold(found: &mut Findings, session: &Session, hold: Option<Duration>) {
    let Some(hold) = hold else { return };
    let mfa = session
        .identity
        .chain
        .iter()
        .filter(|h| h.profile.is_some())
        .find_map(|h| h.mfa_serial.as_ref());
    if let Some(serial) = mfa
        && hold.as_secs() > u64::from(DEFAULT_SESSION)
    {
        found.warn(
            Check::Session,
            format!("profile hop with MFA {serial}"),
            format!(
                "a {}s hold may outlast the profile's role session, and renewing it needs a new MFA code on a terminal",
                hold.as_secs()
            ),
            "hold from a terminal, or give the profile's role a longer duration_seconds",
        );
    } else {
        found.ok(
            Check::Session,
            "hold",
            format!("a {}s hold renews its sessions on its own", hold.as_secs()),
        );
    }
}
