//! Centralized root access, which moto lacks (it has no `sts:AssumeRoot`,
//! no `iam:ListOrganizationsFeatures` and no root user): the shim answers
//! them from its own table, as AWS documents them.
//!
//! - `ListOrganizationsFeatures` lists the enabled features, or fails with
//!   `ServiceAccessNotEnabledException` while trusted access for IAM is off
//!   (IAM API reference, ListOrganizationsFeatures).
//! - `AssumeRoot` mints a session of at most 900 seconds for a member account
//!   (never the management account) scoped by one of the root-task policies
//!   (STS API reference, AssumeRoot).
//! - IAM calls signed with that session and naming no user act on the root
//!   user; the task policy decides which are allowed: the audit policy
//!   reads, the delete policy also deletes access keys, the password and
//!   signing certificates and deactivates MFA devices (IAM User Guide,
//!   "Perform a privileged task on an AWS Organizations member account").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The root user of one member account: what it can sign in or sign with.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RootUser {
    pub password: bool,
    pub access_keys: Vec<String>,
    pub certificates: Vec<String>,
    pub mfa_devices: Vec<String>,
}

impl RootUser {
    pub fn is_empty(&self) -> bool {
        *self == RootUser::default()
    }

    /// "a password, 1 access key(s), 1 MFA device(s)".
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.password {
            parts.push("a password".into());
        }
        for (n, what) in [
            (self.access_keys.len(), "access key(s)"),
            (self.certificates.len(), "signing certificate(s)"),
            (self.mfa_devices.len(), "MFA device(s)"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(", ")
    }
}

/// The organization's centralized root access and its member root users.
#[derive(Debug, Default)]
pub struct RootAccess {
    /// Enabled features (`RootCredentialsManagement`, `RootSessions`);
    /// `None` while trusted access for IAM is not enabled.
    pub features: Option<BTreeSet<String>>,
    /// The management account, which `AssumeRoot` cannot target.
    pub management: String,
    /// The organization's member accounts: `AssumeRoot` refuses any other
    /// target (an account outside the organization, a typo).
    pub members: BTreeSet<String>,
    /// Member account → its root user; an account absent here has no root
    /// credentials, as accounts Organizations creates have none.
    pub users: BTreeMap<String, RootUser>,
    /// Session access key id → (account, task policy name, expiry).
    sessions: BTreeMap<String, (String, String, SystemTime)>,
}

impl RootAccess {
    /// Every root session minted so far, as (account, task policy name).
    pub fn sessions(&self) -> Vec<(String, String)> {
        self.sessions
            .values()
            .map(|(account, task, _)| (account.clone(), task.clone()))
            .collect()
    }
}

pub type Roots = Arc<Mutex<RootAccess>>;

/// The reads both task policies allow.
const READS: &[&str] = &[
    "GetLoginProfile",
    "ListAccessKeys",
    "ListSigningCertificates",
    "ListMFADevices",
];

/// The access key id a SigV4-signed request names (`Credential=AKID/…`).
fn signing_key(head: &str) -> String {
    head.split("Credential=")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_default()
        .to_string()
}

fn error(status: &'static str, ns: &str, code: &str, message: &str) -> (&'static str, String) {
    (
        status,
        format!(
            "<ErrorResponse xmlns=\"{ns}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>shim</RequestId></ErrorResponse>"
        ),
    )
}

fn ok(action: &str, result: &str) -> (&'static str, String) {
    (
        "200 OK",
        format!(
            "<{action}Response xmlns=\"{IAM_NS}\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>shim</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
}

fn done(action: &str) -> (&'static str, String) {
    (
        "200 OK",
        format!(
            "<{action}Response xmlns=\"{IAM_NS}\"><ResponseMetadata><RequestId>shim</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
}

/// The shim's answer to `params` (a Query request), or `None` when it is
/// not about root access and goes to moto.
pub fn answer(
    head: &str,
    params: &BTreeMap<String, String>,
    roots: &Roots,
) -> Option<(&'static str, String)> {
    let action = params.get("Action")?.as_str();
    let mut roots = roots.lock().ok()?;
    let key = signing_key(head);
    if let Some((account, task, until)) = roots.sessions.get(&key).cloned() {
        if until < SystemTime::now() {
            return Some(error(
                "403 Forbidden",
                IAM_NS,
                "ExpiredToken",
                "The security token included in the request is expired",
            ));
        }
        return Some(in_session(&mut roots, &account, &task, action, params));
    }
    match action {
        "ListOrganizationsFeatures" => Some(match &roots.features {
            None => error(
                "400 Bad Request",
                IAM_NS,
                "ServiceAccessNotEnabledException",
                "The request was rejected because trusted access is not enabled for IAM in AWS Organizations.",
            ),
            Some(f) => ok(
                action,
                &format!(
                    "<EnabledFeatures>{}</EnabledFeatures>",
                    f.iter()
                        .map(|f| format!("<member>{f}</member>"))
                        .collect::<String>()
                ),
            ),
        }),
        "AssumeRoot" => Some(assume_root(&mut roots, params)),
        _ => None,
    }
}

fn assume_root(
    roots: &mut RootAccess,
    params: &BTreeMap<String, String>,
) -> (&'static str, String) {
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let (target, policy) = (get("TargetPrincipal"), get("TaskPolicyArn.arn"));
    let seconds: u64 = get("DurationSeconds").parse().unwrap_or(900);
    let task = policy
        .rsplit_once(":policy/root-task/")
        .map(|(_, t)| t.to_string())
        .unwrap_or_default();
    let account = target.split(':').nth(4).unwrap_or(&target).to_string();
    if seconds > 900 {
        return error(
            "400 Bad Request",
            STS_NS,
            "ValidationError",
            "DurationSeconds exceeds the 900 second upper limit",
        );
    }
    if !roots
        .features
        .as_ref()
        .is_some_and(|f| f.contains("RootCredentialsManagement"))
    {
        return error(
            "403 Forbidden",
            STS_NS,
            "AccessDenied",
            "centralized root access is not enabled for this organization",
        );
    }
    if account == roots.management || !roots.members.contains(&account) {
        return error(
            "403 Forbidden",
            STS_NS,
            "AccessDenied",
            &format!("AssumeRoot cannot target {target}: not a member account"),
        );
    }
    if !matches!(
        task.as_str(),
        "IAMAuditRootUserCredentials" | "IAMDeleteRootUserCredentials"
    ) {
        return error(
            "400 Bad Request",
            STS_NS,
            "ValidationError",
            &format!("unsupported task policy {policy}"),
        );
    }
    let key = format!("ASIAROOT{:012}", roots.sessions.len() + 1);
    let until = SystemTime::now() + Duration::from_secs(seconds);
    let expiration = jiff::Timestamp::try_from(until)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    roots.sessions.insert(key.clone(), (account, task, until));
    (
        "200 OK",
        format!(
            "<AssumeRootResponse xmlns=\"{STS_NS}\"><AssumeRootResult><Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>shim-root-secret</SecretAccessKey><SessionToken>shim-root-token-{key}</SessionToken><Expiration>{expiration}</Expiration></Credentials></AssumeRootResult><ResponseMetadata><RequestId>shim</RequestId></ResponseMetadata></AssumeRootResponse>"
        ),
    )
}

/// One IAM call signed with a root session of `account` scoped by `task`.
fn in_session(
    roots: &mut RootAccess,
    account: &str,
    task: &str,
    action: &str,
    params: &BTreeMap<String, String>,
) -> (&'static str, String) {
    let deletes = task == "IAMDeleteRootUserCredentials"
        && matches!(
            action,
            "DeleteAccessKey"
                | "DeleteLoginProfile"
                | "DeleteSigningCertificate"
                | "DeactivateMFADevice"
        );
    // The task policies allow these actions on the root user only.
    if params.contains_key("UserName") || !(READS.contains(&action) || deletes) {
        return error(
            "403 Forbidden",
            IAM_NS,
            "AccessDenied",
            &format!(
                "User: arn:aws:iam::{account}:root is not authorized to perform: iam:{action} with the task policy {task}"
            ),
        );
    }
    let user = roots.users.entry(account.to_string()).or_default();
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let missing = |what: &str| {
        error(
            "404 Not Found",
            IAM_NS,
            "NoSuchEntity",
            &format!("The {what} cannot be found."),
        )
    };
    let remove = |list: &mut Vec<String>, id: &str| {
        let before = list.len();
        list.retain(|k| k != id);
        before != list.len()
    };
    let members = |list: &[String], f: &dyn Fn(&str) -> String| {
        list.iter()
            .map(|i| format!("<member>{}</member>", f(i)))
            .collect::<String>()
    };
    const DATE: &str = "2026-01-01T00:00:00Z";
    match action {
        "GetLoginProfile" if user.password => ok(
            action,
            &format!(
                "<LoginProfile><UserName>root</UserName><CreateDate>{DATE}</CreateDate></LoginProfile>"
            ),
        ),
        "GetLoginProfile" => missing("login profile of the root user"),
        "ListAccessKeys" => ok(
            action,
            &format!(
                "<AccessKeyMetadata>{}</AccessKeyMetadata><IsTruncated>false</IsTruncated>",
                members(&user.access_keys, &|k| format!(
                    "<AccessKeyId>{k}</AccessKeyId><Status>Active</Status><CreateDate>{DATE}</CreateDate>"
                ))
            ),
        ),
        "ListSigningCertificates" => ok(
            action,
            &format!(
                "<Certificates>{}</Certificates><IsTruncated>false</IsTruncated>",
                members(&user.certificates, &|c| format!(
                    "<UserName>root</UserName><CertificateId>{c}</CertificateId><CertificateBody>-----BEGIN CERTIFICATE-----</CertificateBody><Status>Active</Status>"
                ))
            ),
        ),
        "ListMFADevices" => ok(
            action,
            &format!(
                "<MFADevices>{}</MFADevices><IsTruncated>false</IsTruncated>",
                members(&user.mfa_devices, &|s| format!(
                    "<UserName>root</UserName><SerialNumber>{s}</SerialNumber><EnableDate>{DATE}</EnableDate>"
                ))
            ),
        ),
        "DeleteLoginProfile" if user.password => {
            user.password = false;
            done(action)
        }
        "DeleteLoginProfile" => missing("login profile of the root user"),
        "DeleteAccessKey" if remove(&mut user.access_keys, &get("AccessKeyId")) => done(action),
        "DeleteSigningCertificate" if remove(&mut user.certificates, &get("CertificateId")) => {
            done(action)
        }
        "DeactivateMFADevice" if remove(&mut user.mfa_devices, &get("SerialNumber")) => {
            done(action)
        }
        _ => missing("credential of the root user"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SIGNED: &str = "Authorization: AWS4-HMAC-SHA256 Credential=";

    #[test]
    fn an_audit_session_reads_but_cannot_delete_and_the_management_account_is_refused() {
        let roots: Roots = Arc::default();
        if let Ok(mut r) = roots.lock() {
            r.features = Some(["RootCredentialsManagement".to_string()].into());
            r.management = "111111111111".into();
            r.members = ["222222222222".to_string()].into();
            r.users.insert(
                "222222222222".into(),
                RootUser {
                    access_keys: vec!["AKIAROOTKEY".into()],
                    ..RootUser::default()
                },
            );
        }
        let assume = |account: &str, task: &str| {
            answer(
                &format!("{SIGNED}AKIAMGMT/20261202/us-east-1/sts/aws4_request"),
                &form(&[
                    ("Action", "AssumeRoot"),
                    ("TargetPrincipal", account),
                    (
                        "TaskPolicyArn.arn",
                        &format!("arn:aws:iam::aws:policy/root-task/{task}"),
                    ),
                ]),
                &roots,
            )
            .unwrap_or(("none", String::new()))
        };
        assert_eq!(
            assume("111111111111", "IAMAuditRootUserCredentials").0,
            "403 Forbidden"
        );
        let (status, body) = assume("222222222222", "IAMAuditRootUserCredentials");
        assert_eq!(status, "200 OK");
        let key = body
            .split("<AccessKeyId>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_default()
            .to_string();
        let call = |action: &str, extra: &[(&str, &str)]| {
            let mut p = form(&[("Action", action)]);
            p.extend(form(extra));
            answer(
                &format!("{SIGNED}{key}/20261202/us-east-1/iam/aws4_request"),
                &p,
                &roots,
            )
            .unwrap_or(("none", String::new()))
        };
        assert!(call("ListAccessKeys", &[]).1.contains("AKIAROOTKEY"));
        assert_eq!(
            call("DeleteAccessKey", &[("AccessKeyId", "AKIAROOTKEY")]).0,
            "403 Forbidden"
        );
        assert_eq!(
            call("ListAccessKeys", &[("UserName", "alice")]).0,
            "403 Forbidden"
        );
        assert_eq!(call("GetLoginProfile", &[]).0, "404 Not Found");
    }
}
