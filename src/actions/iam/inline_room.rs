//! How much room a principal's inline policies leave for a breakglass
//! deny: IAM caps the aggregate of a user's inline policies at 2,048
//! characters and a role's at 10,240, not counting white space (IAM User
//! Guide, "IAM and AWS STS quotas"). At the cap `Put{User,Role}Policy`
//! answers `LimitExceeded`, and the run falls back to a managed deny.

use super::*;
use crate::actions::undo::current_policy;

/// Every page of an IAM listing for one user or role, by marker.
macro_rules! iam_pages {
    ($ctx:expr, $op:literal, $call:ident, $key:ident, $principal:expr) => {
        $ctx.pages(
            None,
            $op,
            |marker| {
                $ctx.iam()
                    .$call()
                    .$key(&$principal.name)
                    .set_marker(marker)
                    .send()
            },
            |p| p.is_truncated.then(|| p.marker.clone()).flatten(),
        )
        .await?
    };
}

/// A user's inline policies, all together, in non-white-space characters.
pub const USER_INLINE_LIMIT: usize = 2_048;
/// A role's inline policies, all together, in non-white-space characters.
pub const ROLE_INLINE_LIMIT: usize = 10_240;

/// What a principal's inline policies use of their quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineRoom {
    pub used: usize,
    pub limit: usize,
}

/// Characters IAM counts against the quota: all but white space.
pub fn counted(document: &str) -> usize {
    document.chars().filter(|c| !c.is_whitespace()).count()
}

/// Reads every inline policy of `principal` (except `skip`, the one a
/// breakglass put would replace) and sums what IAM counts.
pub async fn inline_room(
    ctx: &Ctx,
    principal: &PrincipalRef,
    skip: &str,
) -> Result<InlineRoom, AwsError> {
    let names: Vec<String> = match principal.kind {
        PrincipalKind::User => iam_pages!(
            ctx,
            "iam:ListUserPolicies",
            list_user_policies,
            user_name,
            principal
        )
        .into_iter()
        .flat_map(|p| p.policy_names)
        .collect(),
        PrincipalKind::Role => iam_pages!(
            ctx,
            "iam:ListRolePolicies",
            list_role_policies,
            role_name,
            principal
        )
        .into_iter()
        .flat_map(|p| p.policy_names)
        .collect(),
    };
    let mut used = 0;
    for name in names.iter().filter(|n| *n != skip) {
        if let Some(doc) = current_policy(ctx, principal, name).await? {
            used += counted(&doc);
        }
    }
    Ok(InlineRoom {
        used,
        limit: match principal.kind {
            PrincipalKind::User => USER_INLINE_LIMIT,
            PrincipalKind::Role => ROLE_INLINE_LIMIT,
        },
    })
}

/// How many managed policies the principal has attached, and how many its
/// account allows (GetAccountSummary's `AttachedPoliciesPer{User,Role}Quota`,
/// 10 by default, up to 20: IAM User Guide, "IAM and AWS STS quotas"): the
/// room a managed deny needs when the inline quota is full.
pub async fn managed_room(ctx: &Ctx, principal: &PrincipalRef) -> Result<InlineRoom, AwsError> {
    let used = match principal.kind {
        PrincipalKind::User => iam_pages!(
            ctx,
            "iam:ListAttachedUserPolicies",
            list_attached_user_policies,
            user_name,
            principal
        )
        .iter()
        .map(|p| p.attached_policies().len())
        .sum(),
        PrincipalKind::Role => iam_pages!(
            ctx,
            "iam:ListAttachedRolePolicies",
            list_attached_role_policies,
            role_name,
            principal
        )
        .iter()
        .map(|p| p.attached_policies().len())
        .sum(),
    };
    let summary = ctx
        .call("iam:GetAccountSummary", || {
            ctx.iam().get_account_summary().send()
        })
        .await?;
    let key = match principal.kind {
        PrincipalKind::User => aws_sdk_iam::types::SummaryKeyType::AttachedPoliciesPerUserQuota,
        PrincipalKind::Role => aws_sdk_iam::types::SummaryKeyType::AttachedPoliciesPerRoleQuota,
    };
    let limit = summary
        .summary_map()
        .and_then(|m| m.get(&key))
        .map_or(10, |n| usize::try_from(*n).unwrap_or(10));
    Ok(InlineRoom { used, limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_space_is_not_counted() {
        assert_eq!(counted("{ \"a\" :\n\t1 }"), 7);
        let deny = PolicyKind::DenyAll.render(jiff::Timestamp::UNIX_EPOCH);
        assert!(counted(&deny) < 300, "the quarantine deny is small: {deny}");
    }
}
