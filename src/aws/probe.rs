//! Read-only probes of a credential hop that `readiness` does not assume:
//! the MFA devices a user holds, and a role's trust policy and session
//! limit. A scheduled check has no MFA code, so the hop that needs one is
//! read instead of used.

use super::config::Clients;
use super::errors::{AwsError, aws_error};
use super::pacing::{RetryPolicy, Telemetry, call};

/// What IAM says about a role a hop would assume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFacts {
    /// The role's ARN, with its path (what `aws:PrincipalArn` carries).
    pub arn: String,
    /// The trust policy, decoded (IAM returns it URL-encoded).
    pub trust_policy: String,
    /// The longest session `AssumeRole` grants for it, in seconds.
    pub max_session_seconds: Option<i32>,
}

/// The serial numbers of the MFA devices assigned to `user` (IAM API
/// reference, ListMFADevices: "Lists the MFA devices for an IAM user").
pub async fn mfa_devices(
    clients: &Clients,
    account: &str,
    user: &str,
    retry: &RetryPolicy,
    telemetry: &Telemetry,
) -> Result<Vec<String>, AwsError> {
    let lane = telemetry.lane(account, "iam:ListMFADevices", None);
    let mut serials = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = call(retry, telemetry, &lane, || async {
            clients
                .iam
                .list_mfa_devices()
                .user_name(user)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| aws_error("iam:ListMFADevices", e))
        })
        .await?;
        serials.extend(
            page.mfa_devices()
                .iter()
                .map(|d| d.serial_number().to_string()),
        );
        match page.marker() {
            Some(m) if page.is_truncated() => marker = Some(m.to_string()),
            _ => return Ok(serials),
        }
    }
}

/// The role's ARN, trust policy and `MaxSessionDuration` (IAM API reference,
/// GetRole; "AssumeRolePolicyDocument … URL-encoded compliant with RFC
/// 3986").
pub async fn role_facts(
    clients: &Clients,
    account: &str,
    role_name: &str,
    retry: &RetryPolicy,
    telemetry: &Telemetry,
) -> Result<RoleFacts, AwsError> {
    let lane = telemetry.lane(account, "iam:GetRole", None);
    let out = call(retry, telemetry, &lane, || async {
        clients
            .iam
            .get_role()
            .role_name(role_name)
            .send()
            .await
            .map_err(|e| aws_error("iam:GetRole", e))
    })
    .await?;
    let role = out.role().ok_or_else(|| {
        super::errors::local("iam:GetRole", format!("no role {role_name} in the answer"))
    })?;
    Ok(RoleFacts {
        arn: role.arn().to_string(),
        trust_policy: role
            .assume_role_policy_document()
            .map(|d| super::percent_decode(d, false))
            .unwrap_or_default(),
        max_session_seconds: role.max_session_duration(),
    })
}
