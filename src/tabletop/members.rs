//! Moves in member accounts. The attacker holding the management account
//! reaches each member through `OrganizationAccountAccessRole`, where the
//! organization's SCPs bind it. moto enforces no SCP, so every such move is
//! first evaluated against the SCPs from the organization's root down to the
//! account ([`super::evaluate`]); refused, it is not played. With `as:`, the
//! attacker enters with that management-account principal's credential,
//! which must still be allowed `sts:AssumeRole` ([`super::actor`]): cutting
//! it in the management account shuts the attacker out of every member.

use super::actor::action_of;
use super::admin::Admin;
use super::evaluate::{Decision, Named, Policies, Request, evaluate};
use super::moves::Played;
use super::scenario::{Move, MoveKind, ScenarioFile};
use super::seed::Seeded;

/// The role Organizations creates in the accounts it creates, with
/// AdministratorAccess (Organizations User Guide, "Accessing member
/// accounts in your organization").
pub const MEMBER_ROLE: &str = "OrganizationAccountAccessRole";

/// The moves that can be made in a member account.
const IN_MEMBERS: &[MoveKind] = &[
    MoveKind::CreateAdminUser,
    MoveKind::CreateBackdoorRole,
    MoveKind::LaunchInstance,
    MoveKind::LeaveOrganization,
    // Judged by what the scenario seeded there (`report::member_estate`).
    MoveKind::DeleteSnapshots,
    MoveKind::TerminateInstances,
    // Judged against the RCPs over the account (`report::member_moves`).
    MoveKind::BackdoorBucketPolicy,
];

/// What is wrong with a move's `account:`, if anything.
pub fn check(m: &Move, file: &ScenarioFile) -> Option<String> {
    let name = m.account.as_deref()?;
    if !file.accounts.iter().any(|a| a.name == name) {
        return Some(format!("account `{name}` is not declared under `accounts`"));
    }
    if !IN_MEMBERS.contains(&m.action) {
        let kinds: Vec<&str> = IN_MEMBERS.iter().map(|k| k.id()).collect();
        return Some(format!(
            "`do: {}` is not made in member accounts (these are: {})",
            m.action.id(),
            kinds.join(", ")
        ));
    }
    None
}

/// The account id of the move's member account.
fn account_id<'a>(seeded: &'a Seeded, m: &Move) -> Option<&'a str> {
    let name = m.account.as_deref()?;
    seeded.member_accounts.get(name).map(String::as_str)
}

/// The principal a member-account move is made as.
fn member_principal(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/{MEMBER_ROLE}")
}

/// Why the organization's SCPs refuse `m` now, or `None`.
pub async fn refusal(admin: &Admin, seeded: &Seeded, m: &Move) -> Option<String> {
    let account = account_id(seeded, m)?;
    let scps = match scps_of(admin, account).await {
        Ok(s) => s,
        Err(e) => {
            return Some(format!(
                "the tabletop could not read the SCPs over {account}, so the move is not played: {e}"
            ));
        }
    };
    let request = Request {
        action: action_of(m).into(),
        resource: "*".into(),
        principal: format!(
            "User: arn:aws:sts::{account}:assumed-role/{MEMBER_ROLE}/tabletop-attacker"
        ),
        management_account: false,
        service_linked: false,
        ..Request::default()
    }
    .with("aws:PrincipalArn", member_principal(account))
    .with("aws:PrincipalAccount", account)
    // A session it has just minted.
    .with("aws:TokenIssueTime", jiff::Timestamp::now().to_string());
    bound(&request, scps)
}

/// Whether `request` (by a principal with AdministratorAccess) is refused
/// under `scps`, and AWS's words.
pub fn bound(request: &Request, scps: Vec<Vec<Named>>) -> Option<String> {
    refused_under(request, scps, Vec::new())
}

/// Whether the RCPs over a member account refuse `request` (for one of its
/// resources, which the resource's own policy grants), and AWS's words.
pub fn rcp_bound(request: &Request, rcps: Vec<Vec<Named>>) -> Option<String> {
    refused_under(request, Vec::new(), rcps)
}

/// `request`, allowed by its principal's own policies (AdministratorAccess,
/// or a resource policy's grant), under these SCPs and RCPs.
fn refused_under(
    request: &Request,
    scps: Vec<Vec<Named>>,
    rcps: Vec<Vec<Named>>,
) -> Option<String> {
    let policies = Policies {
        identity: vec![Named {
            name: "AdministratorAccess".into(),
            document: serde_json::json!({
                "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }]
            }),
        }],
        scps,
        rcps,
    };
    match evaluate(request, &policies) {
        Decision::Allowed => None,
        Decision::Denied(why) => Some(why),
    }
}

/// The account is not (or no longer) in the organization.
fn gone<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(e: &E) -> bool {
    matches!(
        e.code(),
        Some("AccountNotFoundException" | "ChildNotFoundException")
    )
}

/// Plays a member-account move.
pub async fn play(admin: &Admin, seeded: &Seeded, m: &Move) -> (String, Played) {
    let name = m.account.clone().unwrap_or_default();
    let Some(account) = account_id(seeded, m) else {
        return (
            format!("account {name}"),
            Err(format!("account {name} was not created")),
        );
    };
    if m.action == MoveKind::LeaveOrganization {
        // moto has no LeaveOrganization: the management account's
        // RemoveAccountFromOrganization leaves the organization in the
        // same state.
        let r = admin
            .org()
            .remove_account_from_organization()
            .account_id(account)
            .send()
            .await
            .map(|_| (vec![account.to_string()], Vec::new()))
            .map_err(|e| super::moves::error_text(&e));
        return (format!("account {name}"), r);
    }
    match admin.in_account(account, MEMBER_ROLE).await {
        Ok(member) => super::moves::play(&member, seeded, m).await,
        Err(e) => (super::actor::subject_of(m), Err(e)),
    }
}

/// The SCPs over `account`, level by level from the organization's root
/// down to the account itself; none for an account that has left the
/// organization (no SCP binds it any more).
pub async fn scps_of(admin: &Admin, account: &str) -> Result<Vec<Vec<Named>>, String> {
    policies_over(
        admin,
        account,
        aws_sdk_organizations::types::PolicyType::ServiceControlPolicy,
    )
    .await
}

/// The RCPs over `account`, level by level, as [`scps_of`] reads SCPs.
pub async fn rcps_of(admin: &Admin, account: &str) -> Result<Vec<Vec<Named>>, String> {
    policies_over(
        admin,
        account,
        aws_sdk_organizations::types::PolicyType::ResourceControlPolicy,
    )
    .await
}

/// The policies of `kind` over `account`, from the root down.
async fn policies_over(
    admin: &Admin,
    account: &str,
    kind: aws_sdk_organizations::types::PolicyType,
) -> Result<Vec<Vec<Named>>, String> {
    let org = admin.org();
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let mut targets = vec![account.to_string()];
    let mut child = account.to_string();
    // An organization is at most five OUs deep under its root.
    for _ in 0..7 {
        let parents = match org.list_parents().child_id(&child).send().await {
            Ok(p) => p,
            Err(e) if child == account && gone(&e) => return Ok(Vec::new()),
            Err(e) => return Err(text(&e)),
        };
        let Some(parent) = parents.parents().first().and_then(|p| p.id()) else {
            break;
        };
        targets.push(parent.to_string());
        if parent.starts_with("r-") {
            break;
        }
        child = parent.to_string();
    }
    targets.reverse();
    let mut levels = Vec::new();
    for target in &targets {
        let listed = org
            .list_policies_for_target()
            .target_id(target)
            .filter(kind.clone())
            .send()
            .await
            .map_err(|e| text(&e))?;
        let mut level = Vec::new();
        for p in listed.policies() {
            let Some(id) = p.id() else { continue };
            let described = org
                .describe_policy()
                .policy_id(id)
                .send()
                .await
                .map_err(|e| text(&e))?;
            let content = described.policy().and_then(|p| p.content()).unwrap_or("{}");
            // A document that does not parse could hide a deny: refuse to
            // evaluate rather than drop it.
            let document =
                serde_json::from_str(content).map_err(|e| format!("SCP {id} is not JSON: {e}"))?;
            level.push(Named {
                name: p.name().unwrap_or(id).to_string(),
                document,
            });
        }
        levels.push(level);
    }
    Ok(levels)
}
