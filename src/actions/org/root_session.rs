//! Privileged root sessions in member accounts (`sts:AssumeRoot`), and the
//! root user's credentials read and deleted through them.
//!
//! AWS's procedure (IAM User Guide, "Perform a privileged task on an AWS
//! Organizations member account"): from the management account or the
//! delegated administrator for IAM, `AssumeRoot` with a task policy, then
//! IAM calls with no `UserName`, which act on the root user ("When you make
//! this request with root user credentials, you must use an AssumeRoot
//! session to omit the user name", IAM API reference, DeactivateMFADevice).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use serde::{Deserialize, Serialize};

use crate::actions::Ctx;
use crate::aws::{self, AwsError, ErrorKind};

/// "The value can range from 0 seconds up to the maximum session duration of
/// 900 seconds (15 minutes)" (STS API reference, AssumeRoot): one session
/// per account and task, used at once.
const SESSION_SECONDS: i32 = 900;

/// The AWS managed task policy that scopes a root session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Reads the root user's credentials only (discovery, verify).
    Audit,
    /// Deletes them (the change).
    Delete,
}

impl Task {
    fn arn(self, partition: &str) -> String {
        let name = match self {
            Task::Audit => "IAMAuditRootUserCredentials",
            Task::Delete => "IAMDeleteRootUserCredentials",
        };
        format!("arn:{partition}:iam::aws:policy/root-task/{name}")
    }
}

/// What a member account's root user can sign in or sign with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCredentials {
    /// A console password (a login profile).
    #[serde(default)]
    pub password: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    /// Serial numbers (the device ARN for a virtual device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mfa_devices: Vec<String>,
}

impl RootCredentials {
    pub fn is_empty(&self) -> bool {
        !self.password
            && self.access_keys.is_empty()
            && self.certificates.is_empty()
            && self.mfa_devices.is_empty()
    }

    /// "a password, access keys AKIA…, MFA devices arn:…", or "nothing".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.password {
            parts.push("a password".to_string());
        }
        for (what, list) in [
            ("access keys", &self.access_keys),
            ("signing certificates", &self.certificates),
            ("MFA devices", &self.mfa_devices),
        ] {
            if !list.is_empty() {
                parts.push(format!("{what} {}", list.join(", ")));
            }
        }
        match parts.is_empty() {
            true => "nothing".into(),
            false => parts.join("; "),
        }
    }
}

/// A context that acts as the root user of `account` for `task`: its IAM
/// client signs with an `AssumeRoot` session, its calls are paced in that
/// account's lane. `AssumeRoot` changes nothing (it only mints a session),
/// so a retry after a lost answer is harmless.
pub async fn root_ctx(ctx: &Ctx, account: &str, task: Task) -> Result<Ctx, AwsError> {
    let op = "sts:AssumeRoot";
    let sts = ctx.clients.sts();
    let policy = aws_sdk_sts::types::PolicyDescriptorType::builder()
        .arn(task.arn(aws::partition(&ctx.identity.arn)))
        .build();
    let out = ctx
        .call(op, || {
            sts.assume_root()
                .target_principal(account)
                .task_policy_arn(policy.clone())
                .duration_seconds(SESSION_SECONDS)
                .send()
        })
        .await?;
    let c = out
        .credentials()
        .ok_or_else(|| aws::local(op, "no credentials in the answer".into()))?;
    let expiry = SystemTime::try_from(*c.expiration())
        .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(SESSION_SECONDS as u64));
    let creds = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        Some(expiry),
        "breakglass-assume-root",
    );
    let mut root = ctx.clone();
    root.clients = ctx
        .clients
        .with_credentials(SharedCredentialsProvider::new(creds));
    root.identity.account = account.to_string();
    root.identity.access_key_id = c.access_key_id().to_string();
    Ok(root)
}

fn is_no_such_entity(e: &AwsError) -> bool {
    e.kind == ErrorKind::NotFound || e.code.as_deref() == Some("NoSuchEntity")
}

/// The root user's credentials, read in a root session (`root_ctx`).
pub async fn read(root: &Ctx) -> Result<RootCredentials, AwsError> {
    let iam = root.iam();
    let password = match root
        .call("iam:GetLoginProfile", || iam.get_login_profile().send())
        .await
    {
        Ok(_) => true,
        Err(e) if is_no_such_entity(&e) => false,
        Err(e) => return Err(e),
    };
    let keys = root
        .pages(
            None,
            "iam:ListAccessKeys",
            |m| iam.list_access_keys().set_marker(m).send(),
            |p| {
                p.is_truncated()
                    .then(|| p.marker().unwrap_or_default().to_string())
            },
        )
        .await?;
    let certs = root
        .pages(
            None,
            "iam:ListSigningCertificates",
            |m| iam.list_signing_certificates().set_marker(m).send(),
            |p| {
                p.is_truncated()
                    .then(|| p.marker().unwrap_or_default().to_string())
            },
        )
        .await?;
    let mfa = root
        .pages(
            None,
            "iam:ListMFADevices",
            |m| iam.list_mfa_devices().set_marker(m).send(),
            |p| {
                p.is_truncated()
                    .then(|| p.marker().unwrap_or_default().to_string())
            },
        )
        .await?;
    Ok(RootCredentials {
        password,
        access_keys: keys
            .iter()
            .flat_map(|p| p.access_key_metadata())
            .filter_map(|k| k.access_key_id().map(str::to_string))
            .collect(),
        certificates: certs
            .iter()
            .flat_map(|p| p.certificates())
            .map(|c| c.certificate_id().to_string())
            .collect(),
        mfa_devices: mfa
            .iter()
            .flat_map(|p| p.mfa_devices())
            .map(|d| d.serial_number().to_string())
            .collect(),
    })
}

/// Deletes every credential the root user has now (MFA devices are
/// deactivated: a virtual device stays, unassigned and unusable) (read first, so that one
/// added since the plan goes too), then reads again: `Ok` only when nothing
/// is left. Returns what was there. A retry after a lost answer meets
/// `NoSuchEntity`, which is the goal.
pub async fn delete_all(root: &Ctx) -> Result<RootCredentials, AwsError> {
    let iam = root.iam();
    let found = read(root).await?;
    // Belt and braces (discovery skips such an account): a root key that
    // signs this run's own chain is never deleted.
    if let Some(k) = found
        .access_keys
        .iter()
        .find(|k| root.identity.chain_keys().any(|c| c == k.as_str()))
    {
        return Err(aws::local(
            "iam:DeleteAccessKey",
            format!("{k} signs this run's credential chain: nothing deleted"),
        ));
    }
    let gone = |r: Result<(), AwsError>| match r {
        Err(e) if is_no_such_entity(&e) => Ok(()),
        other => other,
    };
    // Keys first: they work from anywhere without MFA.
    for key in &found.access_keys {
        gone(
            root.call("iam:DeleteAccessKey", || {
                iam.delete_access_key().access_key_id(key).send()
            })
            .await
            .map(|_| ()),
        )?;
    }
    if found.password {
        gone(
            root.call("iam:DeleteLoginProfile", || {
                iam.delete_login_profile().send()
            })
            .await
            .map(|_| ()),
        )?;
    }
    for cert in &found.certificates {
        gone(
            root.call("iam:DeleteSigningCertificate", || {
                iam.delete_signing_certificate().certificate_id(cert).send()
            })
            .await
            .map(|_| ()),
        )?;
    }
    for serial in &found.mfa_devices {
        gone(
            root.call("iam:DeactivateMFADevice", || {
                iam.deactivate_mfa_device().serial_number(serial).send()
            })
            .await
            .map(|_| ()),
        )?;
    }
    let left = read(root).await?;
    match left.is_empty() {
        true => Ok(found),
        false => Err(aws::local(
            "iam:ListAccessKeys",
            format!(
                "after the deletions the root user still has {}",
                left.describe()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_policies_are_aws_managed_root_task_policies() {
        // STS API reference, AssumeRoot, TaskPolicyArn.
        assert_eq!(
            Task::Delete.arn("aws"),
            "arn:aws:iam::aws:policy/root-task/IAMDeleteRootUserCredentials"
        );
        assert_eq!(
            Task::Audit.arn("aws-us-gov"),
            "arn:aws-us-gov:iam::aws:policy/root-task/IAMAuditRootUserCredentials"
        );
    }

    #[tokio::test]
    async fn the_sdk_resolves_sts_to_the_regional_endpoint() {
        // "The STS global endpoint is not supported for AssumeRoot. You must
        // send this request to a Regional STS endpoint" (STS API reference,
        // AssumeRoot). The Rust SDK does not use the global endpoint
        // (`UseGlobalEndpoint` is false unless set, and breakglass never sets it).
        use aws_sdk_sts::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
        let params = Params::builder()
            .region("us-east-1".to_string())
            .use_global_endpoint(false)
            .use_fips(false)
            .use_dual_stack(false)
            .build();
        let url = match params {
            Ok(p) => DefaultResolver::new()
                .resolve_endpoint(&p)
                .await
                .map(|e| e.url().to_string())
                .unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        assert_eq!(url, "https://sts.us-east-1.amazonaws.com");
    }
}
