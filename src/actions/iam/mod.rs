//! IAM credential containment: access keys, console passwords, session
//! revocation and quarantine policies.
//!
//! Pitfalls handled here: deactivating a key does not end sessions already made
//! from it (pair with revocation); revocation works through `aws:TokenIssueTime`,
//! which long-term keys do not carry; service-linked roles take no inline policy;
//! the executor's own principal and key are never touched.

pub mod deactivate_access_key;
pub mod delete_login_profile;
mod inline_room;
mod keys;
mod policies;
mod principals;
pub mod put_inline_policy;
mod sessions;
mod simulation;
pub mod steps;
pub use deactivate_access_key::DeactivateAccessKey;
pub use delete_login_profile::DeleteLoginProfile;
pub use inline_room::{InlineRoom, counted, inline_room, managed_room};
use keys::*;
use policies::*;
pub use policies::{Ours, is_session_userid, written_by_breakglass};
pub(crate) use policies::{plan_role_policies, plan_role_revocations, url_decode};
pub(crate) use principals::list_principals;
use principals::*;
pub use put_inline_policy::PutInlinePolicy;
pub use sessions::temporary_key_reason;
use sessions::*;
use simulation::*;
pub use simulation::{Simulator, simulate};

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_iam::types::StatusType;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use super::BoundStep;
use super::{ActionInfo, Ctx, Disposition, Op, Planned, Reversibility, Sink, TargetKind};
use crate::aws::{
    self, AwsError, Clients, ErrorKind, PrincipalKind, RetryPolicy, Telemetry, local,
};
use crate::criteria::PrincipalCriteria;
use crate::spec::{RoleSelector, SessionSelector, UserSelector};
use crate::targets::{Resource, Scope, SkipReason, Target};

/// Name of the inline policy that revokes older sessions.
pub const REVOKE_POLICY_NAME: &str = "breakglass-revoke-older-sessions";
/// Name of the inline deny-all quarantine policy.
pub const QUARANTINE_POLICY_NAME: &str = "breakglass-quarantine";
/// Name of the inline policy that denies named sessions of a role.
pub const DENY_SESSIONS_POLICY_NAME: &str = "breakglass-deny-sessions";
/// Name of the inline policy that denies an instance role's credentials
/// anywhere but on their own instance.
pub const INSTANCE_GUARD_POLICY_NAME: &str = "breakglass-instance-guard";

const MANAGED_FALLBACK_NOTE: &str = "A principal whose inline policies are at IAM's size limit gets the deny in a managed policy under /breakglass/ instead (rollback detaches and deletes it).";

/// A user or role named by an inline-policy op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRef {
    pub kind: PrincipalKind,
    pub name: String,
}

/// Which breakglass policy an inline-policy op writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicyKind {
    /// Deny everything to sessions issued before the cutoff.
    RevokeSessions,
    /// Deny everything.
    DenyAll,
    /// Deny everything to these sessions only, by `aws:userid`
    /// (`<role id>:<session name>`), sorted.
    DenySessions { userids: Vec<String> },
    /// Deny an instance role's credentials when used off their instance:
    /// outside its VPC or its private IP (IAM User Guide, global condition
    /// keys, `aws:Ec2InstanceSourceVpc`).
    InstanceGuard,
}

impl PolicyKind {
    /// The inline policy's name: one per kind, so that each is recognised
    /// and rolled back on its own.
    pub fn policy_name(&self) -> &'static str {
        match self {
            PolicyKind::RevokeSessions => REVOKE_POLICY_NAME,
            PolicyKind::DenyAll => QUARANTINE_POLICY_NAME,
            PolicyKind::DenySessions { .. } => DENY_SESSIONS_POLICY_NAME,
            PolicyKind::InstanceGuard => INSTANCE_GUARD_POLICY_NAME,
        }
    }
}

impl PolicyKind {
    pub fn render(&self, now: jiff::Timestamp) -> String {
        let statement = match self {
            PolicyKind::InstanceGuard => return instance_guard(),
            PolicyKind::RevokeSessions => serde_json::json!({
                "Sid": "BreakglassRevokeOlderSessions",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": { "DateLessThan": { "aws:TokenIssueTime": iso_seconds(now) } }
            }),
            PolicyKind::DenyAll => serde_json::json!({
                "Sid": "BreakglassQuarantine",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*"
            }),
            // IAM User Guide, policy variables: for a role session,
            // `aws:userid` is "role-id:caller-specified-role-name".
            PolicyKind::DenySessions { userids } => serde_json::json!({
                "Sid": "BreakglassDenySessions",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": { "StringEquals": { "aws:userid": userids } }
            }),
        };
        serde_json::json!({ "Version": "2012-10-17", "Statement": [statement] }).to_string()
    }
}

/// The guard the IAM User Guide documents as an SCP under
/// `aws:Ec2InstanceSourcePrivateIPv4` (global condition keys: it "denies
/// access to all resources unless the request arrives through a VPC
/// Endpoint in the same VPC as the role credentials", and the second
/// statement limits them to the instance's own primary private IPv4), here
/// on the role rather than in an SCP. `StringNotEquals` matches a key that
/// is absent (policy variables with no value), so a request from outside
/// any VPC endpoint is denied. `ec2:SourceInstanceARN` is
/// present only in instance credentials, so the role's other sessions are
/// untouched; `aws:ViaAWSService` spares calls AWS services make for it.
fn instance_guard() -> String {
    let statement = |sid: &str, operator_key: &str, variable: &str| {
        serde_json::json!({
            "Sid": sid,
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "StringNotEquals": { operator_key: variable },
                "Null": { "ec2:SourceInstanceARN": "false" },
                "BoolIfExists": { "aws:ViaAWSService": "false" }
            }
        })
    };
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            statement("BreakglassInstanceGuardVpc", "aws:Ec2InstanceSourceVpc", "${aws:SourceVpc}"),
            statement(
                "BreakglassInstanceGuardIp",
                "aws:Ec2InstanceSourcePrivateIPv4",
                "${aws:VpcSourceIp}"
            ),
        ]
    })
    .to_string()
}

/// `2026-11-22T21:40:00Z`: the format IAM condition operators document. Rounded
/// up to the next second so a session issued in the current second is covered.
fn iso_seconds(t: jiff::Timestamp) -> String {
    let secs = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    jiff::Timestamp::from_second(secs)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A selected IAM principal.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) name: String,
    /// The unique id (AIDA…, AROA…): a role session's `aws:userid` is
    /// `<role id>:<session name>`.
    pub(crate) id: String,
    pub(crate) arn: String,
    pub(crate) path: String,
}

/// A role's ARN with its path (what `aws:PrincipalArn` carries for its
/// sessions, and what a deny must name to spare them).
pub async fn role_arn(
    clients: &Clients,
    account: &str,
    role_name: &str,
    retry: &RetryPolicy,
    telemetry: &Telemetry,
) -> Result<String, AwsError> {
    Ok(
        aws::probe::role_facts(clients, account, role_name, retry, telemetry)
            .await?
            .arn,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("%7B%22a%22%3A1%7D"), "{\"a\":1}");
        assert_eq!(url_decode("{\"a\":1}"), "{\"a\":1}");
        assert_eq!(url_decode("%7"), "%7");
    }

    #[test]
    fn who_minted_a_temporary_key() {
        let role = r#"{"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/app/i-1","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::111122223333:role/svc/app","userName":"app"}}}}"#;
        assert_eq!(
            minted_by(role),
            Some(Ok((PrincipalKind::Role, "app".to_string(), None)))
        );
        // The principalId names the session: its aws:userid.
        let named = role.replace(
            r#""type":"AssumedRole","#,
            r#""type":"AssumedRole","principalId":"AROAEXAMPLE:i-1","#,
        );
        assert_eq!(
            minted_by(&named),
            Some(Ok((
                PrincipalKind::Role,
                "app".to_string(),
                Some("AROAEXAMPLE:i-1".to_string())
            )))
        );
        let user =
            r#"{"userIdentity":{"type":"IAMUser","userName":"alice","accessKeyId":"ASIAXXX"}}"#;
        assert_eq!(
            minted_by(user),
            Some(Ok((PrincipalKind::User, "alice".to_string(), None)))
        );
        let fed = r#"{"userIdentity":{"type":"FederatedUser","sessionContext":{"sessionIssuer":{"type":"IAMUser","userName":"bob"}}}}"#;
        assert_eq!(
            minted_by(fed),
            Some(Ok((PrincipalKind::User, "bob".to_string(), None)))
        );
        assert!(matches!(
            minted_by(r#"{"userIdentity":{"type":"Root"}}"#),
            Some(Err(_))
        ));
        assert_eq!(minted_by("not json"), None);
    }

    /// The guard is the IAM User Guide's example, byte for byte in meaning:
    /// a missing `Version` would make IAM read `${aws:SourceVpc}` literally
    /// and cut the instance off; an extra condition could switch it off.
    #[test]
    fn the_instance_guard_is_the_documented_policy_and_nothing_else_passes() {
        let documented = r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"BreakglassInstanceGuardVpc","Effect":"Deny","Action":"*","Resource":"*",
             "Condition":{"StringNotEquals":{"aws:Ec2InstanceSourceVpc":"${aws:SourceVpc}"},
                          "Null":{"ec2:SourceInstanceARN":"false"},
                          "BoolIfExists":{"aws:ViaAWSService":"false"}}},
            {"Sid":"BreakglassInstanceGuardIp","Effect":"Deny","Action":"*","Resource":"*",
             "Condition":{"StringNotEquals":{"aws:Ec2InstanceSourcePrivateIPv4":"${aws:VpcSourceIp}"},
                          "Null":{"ec2:SourceInstanceARN":"false"},
                          "BoolIfExists":{"aws:ViaAWSService":"false"}}}]}"#;
        let rendered: serde_json::Value =
            serde_json::from_str(&PolicyKind::InstanceGuard.render(jiff::Timestamp::now()))
                .expect("json");
        let expected: serde_json::Value = serde_json::from_str(documented).expect("json");
        assert_eq!(rendered, expected);
        assert_eq!(
            written_by_breakglass(INSTANCE_GUARD_POLICY_NAME, documented),
            Some(Ours::InstanceGuard)
        );
        let one_statement = {
            let mut v = expected.clone();
            v["Statement"].as_array_mut().expect("list").pop();
            v.to_string()
        };
        let if_exists = documented.replace("\"StringNotEquals\"", "\"StringNotEqualsIfExists\"");
        let extra = documented.replacen(
            "\"Null\":{\"ec2:SourceInstanceARN\":\"false\"}",
            "\"Null\":{\"ec2:SourceInstanceARN\":\"false\"},\"Bool\":{\"aws:SecureTransport\":\"false\"}",
            1,
        );
        let no_version = documented.replace("\"Version\":\"2012-10-17\",", "");
        for fake in [one_statement, if_exists, extra, no_version] {
            assert_eq!(
                written_by_breakglass(INSTANCE_GUARD_POLICY_NAME, &fake),
                None,
                "{fake}"
            );
        }
    }

    #[test]
    fn only_the_documents_breakglass_writes_count() {
        let now = jiff::Timestamp::now();
        let ours = PolicyKind::RevokeSessions.render(now);
        assert!(matches!(
            written_by_breakglass(REVOKE_POLICY_NAME, &ours),
            Some(Ours::Revocation(_))
        ));
        let deny = PolicyKind::DenyAll.render(now);
        assert_eq!(
            written_by_breakglass(QUARANTINE_POLICY_NAME, &deny),
            Some(Ours::Quarantine)
        );
        let ids = vec!["AROAEXAMPLE:i-0abc".to_string(), "AROAEXAMPLE:ci".into()];
        let sessions = PolicyKind::DenySessions {
            userids: ids.clone(),
        };
        assert_eq!(
            written_by_breakglass(DENY_SESSIONS_POLICY_NAME, &sessions.render(now)),
            Some(Ours::Sessions(ids))
        );
        // A wildcard, a user id or an empty list under that name is not ours:
        // it would deny nobody, or everybody.
        for userid in [
            r#"["AROA*"]"#,
            r#"["AIDAEXAMPLE"]"#,
            "[]",
            r#"["AROAX:a*"]"#,
        ] {
            let doc = format!(
                r#"{{"Statement":[{{"Effect":"Deny","Action":"*","Resource":"*","Condition":{{"StringEquals":{{"aws:userid":{userid}}}}}}}]}}"#
            );
            assert_eq!(
                written_by_breakglass(DENY_SESSIONS_POLICY_NAME, &doc),
                None,
                "{doc}"
            );
        }
        // A planted look-alike: a far cutoff plus a condition that never matches.
        let planted = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"2099-01-01T00:00:00Z"},"StringEquals":{"aws:username":"nobody"}}}]}"#;
        assert_eq!(written_by_breakglass(REVOKE_POLICY_NAME, planted), None);
        for doc in [
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
            r#"{"Statement":[{"Effect":"Deny","NotAction":"iam:*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"},{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        ] {
            assert_eq!(
                written_by_breakglass(QUARANTINE_POLICY_NAME, doc),
                None,
                "{doc}"
            );
        }
    }

    #[test]
    fn cutoff_rounds_up() {
        let t: jiff::Timestamp = "2026-11-22T21:40:00.5Z".parse().expect("ts");
        assert_eq!(iso_seconds(t), "2026-11-22T21:40:01Z");
        let t: jiff::Timestamp = "2026-11-22T21:40:00Z".parse().expect("ts");
        assert_eq!(iso_seconds(t), "2026-11-22T21:40:00Z");
    }
}
