//! Connecting: the credential chain a command runs as, the playbook's
//! identity pins, and rollback's pin to the identity its run recorded.

use super::load::Loaded;
use crate::audit::{self};
use crate::aws::{self, Identity, Principal, Session};
use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::playbook::Playbook;

/// Whether endpoints set outside the command line (variables, the
/// profile) may be used: shown always, refused for changes unless allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoints {
    /// Read-only commands, or `--allow-env-endpoint`.
    Allowed,
    /// A live run or a rollback without `--allow-env-endpoint`.
    FlagOnly,
}

/// Connects with the chosen profile and refuses a mismatched identity.
pub(super) async fn connect(
    global: &GlobalArgs,
    loaded: Option<&Loaded>,
    endpoints: Endpoints,
) -> Result<Session, Error> {
    let playbook = loaded.map(|l| &l.playbook);
    let mut conn = global.connection(playbook.map(|p| &p.executor))?;
    conn.allow_implicit_endpoints = endpoints == Endpoints::Allowed;
    if let Some(loaded) = loaded {
        conn.session_name = session_name(loaded);
        conn.assume = assume_role(loaded, &conn.session_name);
    } else {
        conn.session_name = session_name_for("whoami");
    }
    let session = aws::connect(&conn).await?;
    if let Some(pb) = playbook {
        check_identity(pb, &session.identity)?;
    }
    Ok(session)
}

/// The playbook's `executor.assume_role`, the last hop of the chain.
pub(super) fn assume_role(
    loaded: &Loaded,
    session_name: &str,
) -> Option<aws::credentials::RoleHop> {
    let spec = loaded.playbook.executor.assume_role.as_ref()?;
    Some(aws::credentials::RoleHop {
        profile: None,
        role_arn: spec.role_arn.clone(),
        mfa_serial: spec.mfa_serial.clone(),
        external_id: None,
        duration_seconds: spec.duration_seconds.map(|d| d.min(43_200) as i32),
        session_name: Some(
            spec.session_name
                .clone()
                .unwrap_or_else(|| session_name.to_string()),
        ),
    })
}

/// `breakglass-<case id>` (or the time): what CloudTrail shows for every
/// role session the run opens, so the investigation can find the response.
pub(super) fn session_name(loaded: &Loaded) -> String {
    session_name_for(&loaded.vars.get("case_id").cloned().unwrap_or_else(|| {
        jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string()
    }))
}

/// `breakglass-<tag>`, cut to what STS accepts as a session name.
pub(super) fn session_name_for(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c))
        .take(52)
        .collect();
    format!("breakglass-{tag}")
}

pub(super) fn check_identity(pb: &Playbook, id: &Identity) -> Result<(), Error> {
    if let Some(acct) = &pb.executor.expect_account
        && acct.value != id.account
    {
        return Err(Error::IdentityMismatch {
            expected_what: "account",
            expected: acct.value.clone(),
            actual_arn: id.arn.clone(),
            actual_account: id.account.clone(),
        });
    }
    if let Some(arn) = &pb.executor.expect_principal
        && !principal_matches(&arn.value, id)
    {
        return Err(Error::IdentityMismatch {
            expected_what: "principal",
            expected: arn.value.clone(),
            actual_arn: id.arn.clone(),
            actual_account: id.account.clone(),
        });
    }
    Ok(())
}

/// `expect_principal` names a user ARN, or a role ARN (with or without its
/// path) for a credential that is a session of that role.
pub(super) fn principal_matches(expected: &str, id: &Identity) -> bool {
    if expected == id.arn {
        return true;
    }
    let account_ok = expected.split(':').nth(4) == Some(id.account.as_str());
    let resource = expected.splitn(6, ':').nth(5).unwrap_or_default();
    let last = resource.rsplit('/').next().unwrap_or_default();
    match &id.principal {
        Principal::AssumedRole { role_name, .. } => {
            account_ok && resource.starts_with("role/") && last == role_name
        }
        Principal::User { name } => account_ok && resource.starts_with("user/") && last == name,
        _ => false,
    }
}

/// What a run recorded about how it connected.
pub(super) struct RunConnection<'a> {
    pub(super) profile: &'a str,
    pub(super) region: &'a str,
    pub(super) endpoints: &'a aws::Endpoints,
    /// Logs from before `endpoints` was recorded.
    pub(super) endpoint: Option<&'a aws::Endpoint>,
    pub(super) executor: Option<&'a audit::ExecutorRecord>,
    pub(super) run_id: &'a str,
    pub(super) allow_env_endpoint: bool,
}

/// A rollback connects as the run did: the run's profile, region,
/// endpoints and `executor.assume_role` (with a fresh MFA code), unless
/// `--profile`, `--region` or `--endpoint-url` say otherwise on the command
/// line. A rollback of an emulator run goes to that emulator, never to AWS.
pub(super) async fn connect_as_run(
    global: &GlobalArgs,
    run: RunConnection<'_>,
) -> Result<Session, Error> {
    let mut conn = global.connection(None)?;
    if global.profile.is_none() {
        conn.profile = run.profile.to_string();
        conn.profile_source = "the audit log".into();
    }
    if global.region.is_none() {
        conn.region = Some((run.region.to_string(), "the audit log".into()));
    }
    let logged = run.endpoints.global.as_ref().or(run.endpoint);
    if global.endpoint_url.is_none() {
        match logged {
            // Recorded when the run was made: that is where its changes are.
            Some(e) => {
                conn.endpoint_flag = Some(aws::Endpoint {
                    url: e.url.clone(),
                    source: "the audit log".into(),
                })
            }
            None if !run.endpoints.services.is_empty() => {
                return Err(Error::Refused(
                    "the run sent some services to endpoints of their own: pass --endpoint-url to say where to roll back".into(),
                ));
            }
            None => {}
        }
    }
    conn.allow_implicit_endpoints = run.allow_env_endpoint;
    conn.session_name = session_name_for(&format!(
        "rollback-{}",
        run.run_id.chars().take(40).collect::<String>()
    ));
    conn.assume = run.executor.map(|e| aws::credentials::RoleHop {
        profile: None,
        role_arn: e.role_arn.clone(),
        mfa_serial: e.mfa_serial.clone(),
        external_id: None,
        duration_seconds: e.duration_seconds.map(|d| d.min(43_200) as i32),
        session_name: None,
    });
    Ok(aws::connect(&conn).await?)
}

/// The rollback acts as the run's own principal (the same user, or the same
/// role, in the same account), unless `--profile` chose another on purpose.
pub(super) fn pin_to_run(global: &GlobalArgs, run: &Identity, now: &Identity) -> Result<(), Error> {
    let mismatch = |what: &'static str, expected: &str| Error::IdentityMismatch {
        expected_what: what,
        expected: expected.to_string(),
        actual_arn: now.arn.clone(),
        actual_account: now.account.clone(),
    };
    if now.account != run.account {
        return Err(mismatch("account of the run", &run.account));
    }
    if global.profile.is_none() && now.principal != run.principal {
        let same_role = matches!(
            (&now.principal, &run.principal),
            (Principal::AssumedRole { role_name: a, .. }, Principal::AssumedRole { role_name: b, .. }) if a == b
        );
        if !same_role {
            return Err(mismatch(
                "principal of the run (--profile to choose another)",
                &run.arn,
            ));
        }
    }
    Ok(())
}
