//! The deny-all SCP's document, and the check that it exempts the executor
//! (compared the way Organizations evaluates `ArnNotLike`).

/// What an intruder destroys first to cover tracks or hold data to ransom,
/// and what the built-in `preserve` SCP denies to every principal but the
/// responders, in accounts the deny-all freeze does not cover: silencing
/// CloudTrail or VPC flow logs, scheduling KMS keys for deletion, deleting snapshots and
/// recovery points or lifting their locks, and expiring S3 objects through
/// a lifecycle rule (`s3:PutLifecycleConfiguration` is the IAM action of
/// `PutBucketLifecycleConfiguration`).
///
/// It also denies undoing what breakglass's own preservation steps set:
/// versioning suspended, bucket encryption or public access blocks changed,
/// snapshot and AMI public sharing unblocked, keys disabled or their policy
/// replaced, recovery points' lifecycles shortened, and leaving the
/// organization (which takes an account out from under every SCP).
pub const PRESERVE_ACTIONS: &[&str] = &[
    "cloudtrail:StopLogging",
    "cloudtrail:DeleteTrail",
    "cloudtrail:UpdateTrail",
    "cloudtrail:PutEventSelectors",
    "cloudtrail:DeleteEventDataStore",
    "kms:ScheduleKeyDeletion",
    "kms:DisableKey",
    "kms:PutKeyPolicy",
    "ec2:DeleteSnapshot",
    "ec2:UnlockSnapshot",
    "ec2:DisableSnapshotBlockPublicAccess",
    "ec2:DisableImageBlockPublicAccess",
    "ec2:DeleteFlowLogs",
    "backup:DeleteRecoveryPoint",
    "backup:UpdateRecoveryPointLifecycle",
    "backup:DeleteBackupVault",
    "backup:DeleteBackupVaultLockConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutAccountPublicAccessBlock",
    "s3:DeleteObjectVersion",
    "organizations:LeaveOrganization",
];

/// What the member role may never do while the freeze exempts it for a
/// fanned-out run: what an intruder holding the management account does
/// through that role (it trusts the management account) and breakglass
/// never does, in a run or a rollback. So the window in which the run
/// needs the role is not a window for leaving the organization, minting
/// users, keys or roles, launching or terminating instances, or destroying
/// evidence. SCPs bind every principal of a member account, this role
/// included (Organizations User Guide, "Service control policies").
pub const MEMBER_ROLE_DENIED: &[&str] = &[
    "organizations:LeaveOrganization",
    "iam:CreateUser",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:CreateRole",
    "iam:UpdateAssumeRolePolicy",
    "ec2:RunInstances",
    "ec2:TerminateInstances",
    "ec2:DeleteSnapshot",
    "ec2:DeleteVolume",
    "ec2:DeregisterImage",
    "ec2:DeleteFlowLogs",
    "cloudtrail:StopLogging",
    "cloudtrail:DeleteTrail",
    "cloudtrail:UpdateTrail",
    "kms:ScheduleKeyDeletion",
    "backup:DeleteRecoveryPoint",
    "backup:DeleteBackupVault",
    "s3:DeleteBucket",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "backup:UpdateRecoveryPointLifecycle",
    "kms:DisableKey",
    "kms:PutKeyPolicy",
    "rds:DeleteDBInstance",
    "rds:DeleteDBCluster",
    "rds:DeleteDBSnapshot",
    "rds:DeleteDBClusterSnapshot",
    "dynamodb:DeleteTable",
    "dynamodb:DeleteBackup",
    "efs:DeleteFileSystem",
    "glacier:DeleteArchive",
    "glacier:DeleteVault",
    "ssm:SendCommand",
    "ssm:StartSession",
    "lambda:CreateFunction",
    "lambda:UpdateFunctionCode",
    "lambda:AddPermission",
    "iam:CreateOpenIDConnectProvider",
    "iam:CreateSAMLProvider",
    "rds:ModifyDBSnapshotAttribute",
    "rds:ModifyDBClusterSnapshotAttribute",
    "secretsmanager:GetSecretValue",
    "cloudtrail:DeleteEventDataStore",
    "cloudtrail:StopEventDataStoreIngestion",
    "logs:DeleteLogGroup",
    "logs:DeleteLogStream",
    "logs:PutRetentionPolicy",
];

/// The statement that keeps the exempted member role to containment: it
/// is denied [`MEMBER_ROLE_DENIED`] unless the principal is a responder.
/// A deny-list, not an allow-list: an allow-list that missed one call a
/// step needs would shut the response out of every member account, which
/// no test against moto (which evaluates no SCP) would catch.
fn member_statement(member: &str, exempt: &[String]) -> serde_json::Value {
    serde_json::json!({
        "Sid": "BreakglassMemberRoleContainsOnly",
        "Effect": "Deny",
        "Action": MEMBER_ROLE_DENIED,
        "Resource": "*",
        "Condition": {
            "ArnLike": { "aws:PrincipalArn": [member] },
            "ArnNotLike": { "aws:PrincipalArn": exempt }
        }
    })
}

/// The built-in document, with the member-role statement when the whole
/// fits AWS's limit on an SCP's size; `true` when the statement is in.
/// That statement costs about 2,000 of the 5,120 characters: a protect
/// list long enough to crowd it out must not cost the freeze itself, so the
/// role is then exempt without the limit (and the plan says so).
pub fn builtin_fitting(policy: &str, exempt: &[String], member: Option<&str>) -> (String, bool) {
    let full = builtin_document(policy, exempt, member);
    match member {
        Some(m) if full.len() > super::SCP_MAX_CHARS => {
            let mut all = exempt.to_vec();
            all.push(m.to_string());
            (builtin_document(policy, &all, None), false)
        }
        Some(_) => (full, true),
        None => (full, false),
    }
}

/// The built-in document `policy` names (`deny-all` or `preserve`),
/// exempting `exempt` and, while a fanned-out run needs it, the member
/// role.
pub fn builtin_document(policy: &str, exempt: &[String], member: Option<&str>) -> String {
    match policy {
        "preserve" => {
            let all: Vec<&str> = exempt.iter().map(String::as_str).chain(member).collect();
            let mut statements = vec![serde_json::json!({
                "Sid": "BreakglassPreserveEvidence",
                "Effect": "Deny",
                "Action": PRESERVE_ACTIONS,
                "Resource": "*",
                "Condition": { "ArnNotLike": { "aws:PrincipalArn": all } }
            })];
            statements.extend(member.map(|m| member_statement(m, exempt)));
            serde_json::json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
        }
        _ => deny_all_document(exempt, member),
    }
}

/// What an `AssumeRoot` session may still do under the freeze: read and
/// delete the member root user's credentials (`org.remove_member_root_credentials`,
/// the actions of the `IAMDeleteRootUserCredentials` task). SCPs bind a
/// member account's root user, and a root session acts as it
/// (`aws:PrincipalArn` is `arn:aws:iam::ACCOUNT:root`), so without this the
/// freeze would shut the credential removal out. Every other root-session
/// task (password recovery, deleting a bucket or queue policy) stays denied.
pub const ROOT_SESSION_ACTIONS: &[&str] = &[
    "iam:GetLoginProfile",
    "iam:ListAccessKeys",
    "iam:ListSigningCertificates",
    "iam:ListMFADevices",
    "iam:DeleteAccessKey",
    "iam:DeleteLoginProfile",
    "iam:DeleteSigningCertificate",
    "iam:DeactivateMFADevice",
];

/// The built-in deny-all document: every action, every resource, every
/// principal except the exempted ARN patterns; an `AssumeRoot` session
/// (which carries `aws:AssumedRoot`, absent from every other request: AWS's
/// own SCP example "Prevent root credentials management in member accounts"
/// tests it with `Null`) only as far as [`ROOT_SESSION_ACTIONS`]. While
/// `member` (the member role's ARN pattern) is exempted, it is still denied
/// [`MEMBER_ROLE_DENIED`].
pub fn deny_all_document(exempt: &[String], member: Option<&str>) -> String {
    let Some(member) = member else {
        return deny_all_statements(exempt).to_string();
    };
    let mut all = exempt.to_vec();
    all.push(member.to_string());
    let mut doc = deny_all_statements(&all);
    if let Some(statements) = doc["Statement"].as_array_mut() {
        statements.push(member_statement(member, exempt));
    }
    doc.to_string()
}

/// The deny-all's two statements, exempting `exempt`.
fn deny_all_statements(exempt: &[String]) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "BreakglassDenyAllExceptResponders",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "ArnNotLike": { "aws:PrincipalArn": exempt },
                "Null": { "aws:AssumedRoot": "true" }
            }
        }, {
            "Sid": "BreakglassDenyRootSessionsButCredentialRemoval",
            "Effect": "Deny",
            "NotAction": ROOT_SESSION_ACTIONS,
            "Resource": "*",
            "Condition": {
                "ArnNotLike": { "aws:PrincipalArn": exempt },
                "Null": { "aws:AssumedRoot": "false" }
            }
        }]
    })
}

/// How a condition operator compares a pattern with the principal's ARN.
#[derive(Clone, Copy)]
pub(super) enum Compare {
    /// `Arn*`: component by component, with wildcards.
    Arn,
    /// `StringLike`-style: the whole string, with wildcards.
    Glob,
    /// `StringEquals`-style: literally.
    Literal,
}

/// A custom SCP must spare a principal: every Deny statement needs an
/// `aws:PrincipalArn` exemption that matches its ARN. Per the IAM condition
/// operator reference, `ArnNotLike`, `ArnNotEquals` and `StringNotLike`
/// compare with `*` and `?` wildcards, while `StringNotEquals` compares
/// literally: a pattern there exempts nothing but its own spelling.
pub fn exempts(document: &str, principal_arn: &str) -> Result<(), String> {
    let doc: serde_json::Value =
        serde_json::from_str(document).map_err(|e| format!("the SCP is not JSON: {e}"))?;
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(s) => s.clone(),
        s @ serde_json::Value::Object(_) => vec![s.clone()],
        _ => return Err("the SCP has no Statement".into()),
    };
    for (i, s) in statements.iter().enumerate() {
        if s["Effect"] != "Deny" {
            continue;
        }
        let spared = [
            ("ArnNotLike", Compare::Arn),
            ("ArnNotEquals", Compare::Arn),
            ("StringNotLike", Compare::Glob),
            ("StringNotEquals", Compare::Literal),
        ]
        .iter()
        .filter_map(|(op, glob)| s["Condition"].get(*op).map(|b| (b, *glob)))
        .filter_map(|(block, glob)| block.as_object().map(|b| (b, glob)))
        .flat_map(|(block, glob)| block.iter().map(move |(k, v)| (k, v, glob)))
        .filter(|(key, _, _)| key.eq_ignore_ascii_case("aws:PrincipalArn"))
        .flat_map(|(_, v, glob)| {
            let patterns: Vec<String> = match v {
                serde_json::Value::String(p) => vec![p.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            patterns.into_iter().map(move |p| (p, glob))
        })
        .any(|(pattern, compare)| match compare {
            Compare::Arn => crate::targets::arn_like(&pattern, principal_arn),
            Compare::Glob => crate::targets::glob_match(&pattern, principal_arn),
            Compare::Literal => pattern == principal_arn,
        });
        if !spared {
            let sid = s["Sid"]
                .as_str()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default();
            return Err(format!(
                "Deny statement {}{sid} does not exempt {principal_arn} through aws:PrincipalArn: applying it would lock the responders out",
                i + 1
            ));
        }
    }
    Ok(())
}
