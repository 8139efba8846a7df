//! Self-lockout analysis: before any change, find every step that would deny
//! or disable the principal the run uses, and refuse the run if there is one.
//!
//! Selectors such as `all: true` that merely include the executor are fine:
//! discovery skips it with a reason. What is refused is a playbook that names
//! the executor explicitly, or an SCP that would not exempt it.

use crate::actions::BoundStep;
use crate::actions::{ActionKind, ActionParams, Ctx, org};
use crate::aws::PrincipalKind;

/// One reason the run would lock its own responders out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub step: usize,
    pub step_name: String,
    pub reason: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {} ({}): {}",
            self.step + 1,
            self.step_name,
            self.reason
        )
    }
}

pub fn self_lockout(ctx: &Ctx, steps: &[BoundStep]) -> Vec<Finding> {
    let id = &ctx.identity;
    let mut out = Vec::new();
    for step in steps {
        let mut find = |reason: String| {
            out.push(Finding {
                step: step.index,
                step_name: step.name.clone(),
                reason,
            })
        };
        let t = &step.targets;
        let chain_key = |ids: &[String]| {
            id.chain_keys()
                .find(|k| ids.iter().any(|i| i == k))
                .map(str::to_string)
        };
        if let Some(users) = &t.users {
            for name in users
                .names
                .iter()
                .filter(|n| id.is_self(&id.account, PrincipalKind::User, n))
            {
                find(format!(
                    "`{}` names the user {name} of the executor's credential chain",
                    step.action.id()
                ));
            }
            if let Some(key) = chain_key(&users.access_key_ids) {
                find(format!(
                    "`{}` selects the user of key {key}, which the executor's credential chain signs with",
                    step.action.id()
                ));
            }
        }
        if let Some(keys) = &t.access_keys
            && let Some(key) = chain_key(&keys.ids)
        {
            find(format!(
                "`{}` names key {key}, which the executor's credential chain signs with",
                step.action.id()
            ));
        }
        if let Some(roles) = &t.roles {
            for name in roles
                .names
                .iter()
                .filter(|n| id.is_self(&id.account, PrincipalKind::Role, n))
            {
                find(format!(
                    "`{}` names the role {name} of the executor's credential chain: every session of it, this run's included, would be cut",
                    step.action.id()
                ));
            }
        }
        if let (Some(role), Some(roles)) = (&ctx.fleet.role, &t.roles)
            && ctx.fleet.accounts(step.index).is_some()
        {
            let member = role.arn("*");
            let name = member.rsplit('/').next().unwrap_or_default();
            if roles.names.iter().any(|n| n == name) {
                find(format!(
                    "`{}` names the member role {name} this run acts through in every account: its sessions, this run's included, would be cut",
                    step.action.id()
                ));
            }
        }
        if step.action == ActionKind::OrgApplyScp {
            if ctx.executor_arn.is_empty() {
                find("the executor's role ARN could not be read (iam:GetRole), so no SCP can be shown to exempt it".into());
            } else if let ActionParams::OrgApplyScp(p) = &step.params
                && let Some(doc) = &p.document
            {
                let principals =
                    std::iter::once(ctx.executor_arn.clone()).chain(ctx.fleet.member_role_arns());
                for arn in principals {
                    if let Err(reason) = org::exempts(doc, &arn) {
                        find(format!("policy {}: {reason}", p.policy));
                        break;
                    }
                }
            }
        }
    }
    out
}

/// The `protect` list as SCP exemptions, and what the responder must know
/// about it. An SCP exempts exact ARNs only: an entry whose name holds a
/// wildcard (`role/IR-*`) would exempt any principal an attacker names to
/// match, in every account, so it is replaced by the principals it matches
/// in this account now, and the responder is told which. An entry that
/// matches nothing here is most likely a typo that leaves a responder
/// unprotected. Entries of another account cannot be checked from here and
/// are kept as written when exact.
pub async fn resolve_protections(ctx: &Ctx, protect: &[String]) -> (Vec<String>, Vec<String>) {
    let parts = |p: &str| -> (String, String) {
        let account = p.split(':').nth(4).unwrap_or("*").to_string();
        let resource = p.splitn(6, ':').nth(5).unwrap_or_default().to_string();
        (account, resource)
    };
    let is_glob = |r: &str| r.contains(['*', '?']);
    let ours = |account: &str| account == ctx.identity.account || account.contains(['*', '?']);
    let needs_listing = protect.iter().any(|p| {
        let (account, _) = parts(p);
        ours(&account)
    });
    let arns: Option<Vec<String>> = if needs_listing {
        match list_principal_arns(ctx).await {
            Ok(a) => Some(a),
            Err(e) => {
                let mut warnings = vec![format!(
                    "cannot list users and roles to check the protect list ({e}): only its exact entries are exempted"
                )];
                let exact: Vec<String> = protect
                    .iter()
                    .filter(|p| !is_glob(&parts(p).1))
                    .cloned()
                    .collect();
                if exact.len() < protect.len() {
                    warnings.push(
                        "protect patterns with wildcards in the name are not exempted by the SCP"
                            .into(),
                    );
                }
                return (exact, warnings);
            }
        }
    } else {
        None
    };
    let arns = arns.unwrap_or_default();
    let mut exact = Vec::new();
    let mut warnings = Vec::new();
    for p in protect {
        let (account, resource) = parts(p);
        let matches: Vec<&String> = arns
            .iter()
            .filter(|a| crate::targets::glob_match(p, a))
            .collect();
        if is_glob(&resource) {
            let names: Vec<&str> = matches.iter().map(|a| a.as_str()).collect();
            warnings.push(format!(
                "protect entry {p} is a pattern: an SCP exempts exact principals only, so it exempts its {} match(es) in account {} now{}; a principal created later under that name is contained like any other",
                names.len(),
                ctx.identity.account,
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                }
            ));
            exact.extend(matches.into_iter().cloned());
            continue;
        }
        if ours(&account) && matches.is_empty() {
            warnings.push(format!(
                "protect entry {p} matches no user or role in account {}: check its spelling (role ARNs include their path)",
                ctx.identity.account
            ));
        }
        exact.push(p.clone());
    }
    exact.sort();
    exact.dedup();
    (exact, warnings)
}

async fn list_principal_arns(ctx: &Ctx) -> Result<Vec<String>, crate::aws::AwsError> {
    use crate::actions::iam::list_principals;
    use crate::aws::PrincipalKind;
    let users = list_principals(ctx, PrincipalKind::User, None).await?;
    let roles = list_principals(ctx, PrincipalKind::Role, None).await?;
    Ok(users.into_iter().chain(roles).map(|p| p.arn).collect())
}
