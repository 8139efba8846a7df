//! `org.apply_rcp`: a resource control policy that denies principals outside
//! the organization on the services an intruder uses to carry data away or
//! come back in (S3, STS role assumption, KMS, SQS, Secrets Manager). An SCP
//! binds only the organization's own principals; a bucket policy or role
//! trust the attacker planted for an account of their own is closed only by
//! an RCP. It is created, attached, quota'd and rolled back exactly like the
//! deny-all SCP (`ApplyScp` with `kind: rcp`).
//!
//! AWS behaviour relied on (AWS Organizations User Guide, "Resource control
//! policies"; AWS KMS Developer Guide, "Resource control policies in AWS
//! KMS"):
//! - "RCPs don't affect resources in the management account"; they "do not
//!   apply to AWS managed keys"; and an AWS service acting for the account
//!   is exempted here by `aws:PrincipalIsAWSService`.
//! - Statements name `"Principal": "*"`. `aws:PrincipalOrgID` is absent for
//!   anonymous and federated callers, so `StringNotEqualsIfExists` denies
//!   them; the STS actions are the ones AWS's data perimeter examples list,
//!   which leave out `AssumeRoleWithSAML` and `AssumeRoleWithWebIdentity`:
//!   sign-in through IAM Identity Center or an OIDC provider keeps working.
//! - A target holds at most five RCPs, `RCPFullAWSAccess` included.

use schemars::JsonSchema;
use serde::Deserialize;

use super::*;
use crate::actions::{Action, Runs};
use crate::spec::{OneOrMany, check_target};

/// What the built-in RCP denies to principals outside the organization.
pub const RCP_ACTIONS: &[&str] = &[
    "s3:*",
    "kms:*",
    "sqs:*",
    "secretsmanager:*",
    "sts:AssumeRole",
    "sts:DecodeAuthorizationMessage",
    "sts:GetAccessKeyInfo",
    "sts:GetFederationToken",
    "sts:GetServiceBearerToken",
    "sts:GetSessionToken",
    "sts:SetContext",
];

/// `with:` of `org.apply_rcp`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRcpParams {
    /// `root`, OU ids (`ou-…`) or 12-digit account ids, one or a list.
    pub target: OneOrMany,
    /// Name of the RCP created in the organization.
    #[serde(default = "rcp_name")]
    pub name: String,
}

fn rcp_name() -> String {
    "breakglass-deny-outside".into()
}

/// The built-in RCP: the services above, denied to every principal that is
/// neither in organization `org_id`, nor an AWS service, nor exempted.
pub fn outside_document(org_id: &str, exempt: &[String]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "BreakglassDenyOutsideOrganization",
            "Effect": "Deny",
            "Principal": "*",
            "Action": RCP_ACTIONS,
            "Resource": "*",
            "Condition": {
                "StringNotEqualsIfExists": { "aws:PrincipalOrgID": org_id },
                "BoolIfExists": { "aws:PrincipalIsAWSService": "false" },
                "ArnNotLike": { "aws:PrincipalArn": exempt }
            }
        }]
    })
    .to_string()
}

/// Whether an ARN names one account (`arn:aws:iam::111122223333:…`).
fn one_account(arn: &str) -> bool {
    arn.split(':')
        .nth(4)
        .is_some_and(|a| a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()))
}

pub struct ApplyRcp;

impl Action for ApplyRcp {
    const INFO: ActionInfo = ActionInfo {
        id: "org.apply_rcp",
        summary: "Deny principals outside the organization on S3, STS, KMS, SQS and Secrets Manager, with a resource control policy.",
        targets: &[],
        params: &[
            (
                "target",
                "root, OU ids (ou-…) or account ids: one or a list",
            ),
            ("name", "RCP name (default breakglass-deny-outside)"),
        ],
        calls: &[
            "organizations:EnablePolicyType (root, if RCPs are off)",
            "organizations:CreatePolicy (or UpdatePolicy)",
            "organizations:AttachPolicy",
        ],
        reversibility: Reversibility::Reversible("DetachPolicy, then DeletePolicy"),
        notes: &[
            "RCPs do not affect resources in the management account, nor AWS managed KMS keys.",
            "AWS services acting for the account, the executor and `protect` entries of one account are exempt (a `protect` ARN with a wildcard account would spare the attacker's own roles of that name, so it is dropped); so are federated sign-ins (AssumeRoleWithSAML, AssumeRoleWithWebIdentity).",
            "Anonymous access is outside the organization too: public buckets in member accounts stop serving.",
            "Runs from the management account or a delegated administrator; a target holds at most five RCPs, RCPFullAWSAccess included.",
        ],
    };
    const RUNS: Runs = Runs::Organization;
    type Params = ApplyRcpParams;

    fn check(p: &ApplyRcpParams) -> Result<(), String> {
        p.target.items().iter().try_for_each(|t| check_target(t))
    }

    async fn discover(
        ctx: &Ctx,
        _step: &BoundStep,
        p: &ApplyRcpParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        if ctx.executor_arn.is_empty() {
            return Err(local(
                "org.apply_rcp",
                "the executor's role ARN could not be read (iam:GetRole), so the RCP cannot exempt it: refusing to lock the responders out".into(),
            ));
        }
        let org = describe_org(ctx).await?;
        if org.id.is_empty() {
            return Err(local(
                "organizations:DescribeOrganization",
                "no organization id: the RCP could not name who is inside".into(),
            ));
        }
        let mut notes = vec![format!(
            "RCPs do not affect resources in the management account {} nor AWS managed KMS keys.",
            org.management_account
        )];
        let targets: Vec<String> = p
            .target
            .items()
            .into_iter()
            .map(|t| if t == "root" { org.root_id.clone() } else { t })
            .collect();
        // An exemption names outsiders here, not the organization's own
        // principals: `arn:aws:iam::*:role/IR-BreakGlass` would spare a role
        // of that name in any account, the attacker's included. Only ARNs of
        // one account are kept (inside the organization nobody needs one).
        let (exempt, dropped): (Vec<String>, Vec<String>) =
            ctx.exempt.iter().cloned().partition(|a| one_account(a));
        if !dropped.is_empty() {
            notes.push(format!(
                "Not exempted, since their account is a wildcard and an RCP binds outsiders: {} (inside the organization they need no exemption).",
                dropped.join(", ")
            ));
        }
        let document = outside_document(&org.id, &exempt);
        if document.len() > SCP_MAX_CHARS {
            return Err(local(
                "org.apply_rcp",
                format!(
                    "the RCP document is {} characters; AWS allows {SCP_MAX_CHARS}: shorten the protect list",
                    document.len()
                ),
            ));
        }
        notes.push(format!(
            "Outside organization {} and exempted: {}",
            org.id,
            exempt.join(", ")
        ));
        let existing = find_policy(ctx, PolicyKind::Rcp, &p.name).await?;
        let planned = plan_policy(
            ctx,
            &org,
            PolicyKind::Rcp,
            &p.name,
            document,
            &targets,
            existing,
            &mut notes,
        )
        .await?;
        sink.emit_all(planned);
        Ok(notes)
    }
}
