//! Fan-out across an organization: which accounts each step reaches, and
//! the credentials that reach them.
//!
//! The organization is read once (`ListAccounts`, and the OU tree for `ous:`
//! selections); every selected account other than the executor's own is
//! entered with STS `AssumeRole` on `executor.member_role`, all at once
//! before anything changes. An account whose role cannot be assumed is
//! *unreachable*: it is reported in the plan, the summary and the audit log,
//! and the run exits 1. It is never dropped silently.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use futures_util::future::join_all;
use serde::Serialize;

use super::BoundStep;
use super::{Clients, Ctx};
use crate::aws::credentials::needs_renewal;
use crate::aws::{self, AwsError, Identity};
use crate::spec::AccountsSpec;

/// The role assumed in member accounts when `executor.member_role` is not set:
/// the one Organizations creates in every account it creates.
pub const DEFAULT_MEMBER_ROLE: &str = "OrganizationAccountAccessRole";

/// Length of member sessions: each is renewed (see `MemberCredentials`) when
/// less than `RENEW_BEFORE` of it is left, so a long hold outlives it.
const SESSION_SECONDS: i32 = 3600;

/// The role assumed in each member account: a name, or an ARN template with
/// `{account}`, in the executor's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole {
    spec: String,
    partition: String,
}

impl MemberRole {
    pub fn new(spec: Option<&str>, partition: &str) -> Self {
        MemberRole {
            spec: spec.unwrap_or(DEFAULT_MEMBER_ROLE).to_string(),
            partition: partition.to_string(),
        }
    }

    /// As written in the playbook (recorded in the audit log for rollback).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    pub fn arn(&self, account: &str) -> String {
        if self.spec.starts_with("arn:") {
            self.spec.replace("{account}", account)
        } else {
            format!("arn:{}:iam::{account}:role/{}", self.partition, self.spec)
        }
    }

    /// The role in every account, as an `aws:PrincipalArn` pattern: what an
    /// SCP must exempt so the freeze does not shut the fan-out out.
    pub fn pattern(&self) -> String {
        self.arn("*")
    }
}

/// How one account is reached.
#[derive(Clone)]
pub enum Reach {
    Reached {
        clients: Box<Clients>,
        identity: Box<Identity>,
    },
    /// Its role could not be assumed: nothing was read or changed there.
    Unreachable { error: String },
}

/// An account's place in the run, for reports and the audit log.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct AccountStatus {
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `executor` (the run's own account), `member` (through the member
    /// role) or `unreachable`.
    pub reach: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every account the run reaches, and which steps go where. The default (no
/// `accounts:` in the playbook) runs everything in the executor's account.
#[derive(Clone, Default)]
pub struct Fleet {
    pub role: Option<MemberRole>,
    /// The executor's account and principal ARN: what a context moved back
    /// home acts as.
    home: String,
    home_arn: String,
    /// The executor's own clients, for contexts moved back home even when
    /// its account is not among the selected ones.
    home_reach: Option<Reach>,
    pub management: Option<String>,
    reach: BTreeMap<String, Reach>,
    names: BTreeMap<String, String>,
    steps: BTreeMap<usize, Vec<String>>,
    /// What the responder must know about the selection (management account,
    /// suspended accounts, ids that are not members).
    pub notes: Vec<String>,
}

impl Fleet {
    /// The accounts a step runs in, or `None` for the executor's account only.
    pub fn accounts(&self, step: usize) -> Option<&[String]> {
        self.steps.get(&step).map(Vec::as_slice)
    }

    pub fn reach(&self, account: &str) -> Option<&Reach> {
        self.reach
            .get(account)
            .or_else(|| self.home_reach.as_ref().filter(|_| account == self.home))
    }

    /// The principal ARN the run acts as in `account`: the executor at home,
    /// the member role elsewhere.
    pub fn principal_arn(&self, account: &str) -> Option<String> {
        if account == self.home {
            Some(self.home_arn.clone())
        } else {
            self.role.as_ref().map(|r| r.arn(account))
        }
    }

    /// Every account of the run with how it is reached, in account order.
    pub fn statuses(&self) -> Vec<AccountStatus> {
        self.reach
            .iter()
            .map(|(account, r)| {
                let (reach, error) = match r {
                    Reach::Reached { .. } if *account == self.home => ("executor", None),
                    Reach::Reached { .. } => ("member", None),
                    Reach::Unreachable { error } => ("unreachable", Some(error.clone())),
                };
                AccountStatus {
                    account: account.clone(),
                    name: self.names.get(account).cloned(),
                    reach: reach.into(),
                    error,
                }
            })
            .collect()
    }

    pub fn unreachable(&self) -> Vec<(String, String)> {
        self.reach
            .iter()
            .filter_map(|(a, r)| match r {
                Reach::Unreachable { error } => Some((a.clone(), error.clone())),
                Reach::Reached { .. } => None,
            })
            .collect()
    }

    /// The member role's ARN in each reached or attempted member account, for
    /// checking that a custom SCP exempts every one of them.
    pub fn member_role_arns(&self) -> Vec<String> {
        let Some(role) = &self.role else {
            return Vec::new();
        };
        self.reach
            .keys()
            .filter(|a| **a != self.home)
            .map(|a| role.arn(a))
            .collect()
    }

    /// Reads the organization, resolves every step's `accounts:` and assumes
    /// the member role in each selected account (concurrently). Fails only
    /// when the organization cannot be read: then no account can be chosen.
    pub async fn connect(
        ctx: &Ctx,
        steps: &[BoundStep],
        role: MemberRole,
        session_name: &str,
    ) -> Result<Fleet, AwsError> {
        let org = Organization::read(ctx).await?;
        let home = &ctx.identity.account;
        let mut fleet = Fleet {
            role: Some(role.clone()),
            home: home.clone(),
            home_arn: ctx.executor_arn.clone(),
            home_reach: Some(home_reach(ctx)),
            management: Some(org.management.clone()),
            names: org
                .accounts
                .iter()
                .map(|(id, a)| (id.clone(), a.name.clone()))
                .collect(),
            ..Fleet::default()
        };
        let mut missing = BTreeSet::new();
        for step in steps {
            let Some(spec) = &step.accounts else { continue };
            let picked = org.select(ctx, spec).await?;
            missing.extend(picked.missing);
            fleet.steps.insert(step.index, picked.accounts);
        }
        let wanted: BTreeSet<String> = fleet.steps.values().flatten().cloned().collect();
        if wanted.contains(&org.management) {
            fleet.notes.push(format!(
                "The management account {} is included: steps run there {}, and no SCP binds it.",
                org.management,
                if *home == org.management {
                    "with the executor's own credential"
                } else {
                    "through the member role"
                }
            ));
        } else {
            fleet.notes.push(format!(
                "The management account {} is not selected: its users, keys and instances are left as they are, and no SCP binds it (`include_management: true` contains it too).",
                org.management
            ));
        }
        let suspended: Vec<&String> = org
            .accounts
            .iter()
            .filter(|(_, a)| !a.active)
            .map(|(id, _)| id)
            .collect();
        if !suspended.is_empty() {
            fleet.notes.push(format!(
                "Not active, so not selected: {}.",
                suspended
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }

        fleet.reach = enter_all(ctx, &wanted, &missing, &role, session_name).await;
        Ok(fleet)
    }

    /// The accounts of an earlier run, entered again (for its rollback).
    pub async fn enter(
        ctx: &Ctx,
        accounts: &BTreeSet<String>,
        role: MemberRole,
        session_name: &str,
    ) -> Fleet {
        let reach = enter_all(ctx, accounts, &BTreeSet::new(), &role, session_name).await;
        Fleet {
            role: Some(role),
            home: ctx.identity.account.clone(),
            home_arn: ctx.executor_arn.clone(),
            home_reach: Some(home_reach(ctx)),
            reach,
            ..Fleet::default()
        }
    }
}

fn home_reach(ctx: &Ctx) -> Reach {
    Reach::Reached {
        clients: Box::new(ctx.clients.clone()),
        identity: Box::new(ctx.identity.clone()),
    }
}

/// Assumes the member role in every account of `wanted` at once; the
/// executor's own account is used as it is.
async fn enter_all(
    ctx: &Ctx,
    wanted: &BTreeSet<String>,
    missing: &BTreeSet<String>,
    role: &MemberRole,
    session_name: &str,
) -> BTreeMap<String, Reach> {
    let home = &ctx.identity.account;
    let sts = &ctx.clients.sts();
    join_all(wanted.iter().map(|account| async move {
        if account == home {
            return (account.clone(), home_reach(ctx));
        }
        if missing.contains(account) {
            let error = "not an active account of this organization".to_string();
            return (account.clone(), Reach::Unreachable { error });
        }
        let reach = match enter(ctx, sts, &role.arn(account), session_name).await {
            Ok((clients, identity)) => Reach::Reached {
                clients: Box::new(clients),
                identity: Box::new(identity),
            },
            Err(e) => Reach::Unreachable {
                error: format!("cannot assume {}: {e}", role.arn(account)),
            },
        };
        (account.clone(), reach)
    }))
    .await
    .into_iter()
    .collect()
}

/// Assumes `role_arn` and returns clients that sign with it, its session
/// renewed before it expires.
async fn enter(
    ctx: &Ctx,
    sts: &aws_sdk_sts::Client,
    role_arn: &str,
    session_name: &str,
) -> Result<(Clients, Identity), AwsError> {
    let provider = MemberCredentials {
        sts: sts.clone(),
        role_arn: role_arn.to_string(),
        session_name: session_name.to_string(),
        telemetry: ctx.telemetry.clone(),
        retry: ctx.retry,
        home: ctx.identity.account.clone(),
        session: tokio::sync::Mutex::new(None),
    };
    let (creds, mut identity) = provider.assume().await?;
    *provider.session.lock().await = Some(creds);
    // The executor's own chain stays protected in every account it reaches.
    identity.chain = ctx.identity.chain.clone();
    // The provider keeps its own session (the factory turns the SDK's
    // shared cache off: it holds 64 credentials at most, and an
    // organization has more accounts than that).
    let clients = ctx
        .clients
        .with_credentials(SharedCredentialsProvider::new(provider));
    Ok((clients, identity))
}

/// Credentials of one member account's role session, kept and renewed
/// (`AssumeRole` again, paced and retried like every call of the run) when
/// less than `RENEW_BEFORE` is left; concurrent callers share one renewal.
struct MemberCredentials {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
    telemetry: Arc<aws::Telemetry>,
    retry: aws::RetryPolicy,
    home: String,
    session: tokio::sync::Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for MemberCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberCredentials")
            .field("role_arn", &self.role_arn)
            .finish()
    }
}

impl MemberCredentials {
    async fn assume(&self) -> Result<(Credentials, Identity), AwsError> {
        let op = "sts:AssumeRole";
        let lane = self.telemetry.lane(&self.home, op, None);
        let out = aws::call(&self.retry, &self.telemetry, &lane, || async {
            self.sts
                .assume_role()
                .role_arn(&self.role_arn)
                .role_session_name(&self.session_name)
                .duration_seconds(SESSION_SECONDS)
                .send()
                .await
                .map_err(|e| aws::aws_error(op, e))
        })
        .await?;
        let c = out
            .credentials()
            .ok_or_else(|| aws::local(op, "no credentials in the answer".into()))?;
        let expiry = SystemTime::try_from(*c.expiration())
            .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
        let creds = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(expiry),
            "breakglass-member-role",
        );
        let arn = out
            .assumed_role_user()
            .map(|u| u.arn().to_string())
            .unwrap_or_default();
        let account = self
            .role_arn
            .split(':')
            .nth(4)
            .unwrap_or_default()
            .to_string();
        let user_id = out
            .assumed_role_user()
            .map(|u| u.assumed_role_id().to_string())
            .unwrap_or_default();
        let identity = Identity::from_caller(account, arn, user_id, c.access_key_id().to_string());
        Ok((creds, identity))
    }

    async fn current(&self) -> Result<Credentials, AwsError> {
        let mut session = self.session.lock().await;
        let now = SystemTime::now();
        if let Some(c) = session.as_ref().filter(|c| !needs_renewal(c.expiry(), now)) {
            return Ok(c.clone());
        }
        let (c, _) = self.assume().await?;
        *session = Some(c.clone());
        Ok(c)
    }
}

impl ProvideCredentials for MemberCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.current()
                .await
                .map_err(|e| CredentialsError::provider_error(format!("{}: {e}", self.role_arn)))
        })
    }
}

/// One account as Organizations lists it.
struct Account {
    name: String,
    active: bool,
}

/// The organization as read once per run.
struct Organization {
    management: String,
    accounts: BTreeMap<String, Account>,
}

/// What one `accounts:` selection resolved to.
struct Picked {
    accounts: Vec<String>,
    /// Listed ids that are not active accounts of the organization.
    missing: Vec<String>,
}

impl Organization {
    async fn read(ctx: &Ctx) -> Result<Organization, AwsError> {
        let org = ctx.clients.org();
        let desc = ctx
            .call("organizations:DescribeOrganization", || {
                org.describe_organization().send()
            })
            .await?;
        let management = desc
            .organization()
            .and_then(|o| o.master_account_id())
            .unwrap_or_default()
            .to_string();
        let pages = ctx
            .pages(
                None,
                "organizations:ListAccounts",
                |token| org.list_accounts().set_next_token(token).send(),
                |p| p.next_token().map(str::to_string),
            )
            .await?;
        let accounts = pages
            .iter()
            .flat_map(|p| p.accounts())
            .filter_map(|a| {
                let id = a.id()?.to_string();
                let active = a
                    .state()
                    .map(|s| s.as_str() == "ACTIVE")
                    .unwrap_or_else(|| a.status().map(|s| s.as_str() == "ACTIVE").unwrap_or(true));
                let name = a.name().unwrap_or_default().to_string();
                Some((id, Account { name, active }))
            })
            .collect();
        Ok(Organization {
            management,
            accounts,
        })
    }

    async fn select(&self, ctx: &Ctx, spec: &AccountsSpec) -> Result<Picked, AwsError> {
        let mut chosen = BTreeSet::new();
        if spec.all {
            chosen.extend(
                self.accounts
                    .iter()
                    .filter(|(_, a)| a.active)
                    .map(|(id, _)| id.clone()),
            );
        }
        for ou in &spec.ous {
            for id in accounts_under(ctx, ou).await? {
                if self.accounts.get(&id).is_some_and(|a| a.active) {
                    chosen.insert(id);
                }
            }
        }
        let mut missing = Vec::new();
        for id in &spec.ids {
            if !self.accounts.get(id).is_some_and(|a| a.active) {
                missing.push(id.clone());
            }
            chosen.insert(id.clone());
        }
        if spec.include_management {
            chosen.insert(self.management.clone());
        } else {
            chosen.remove(&self.management);
        }
        for x in &spec.exclude {
            chosen.remove(x);
        }
        Ok(Picked {
            accounts: chosen.into_iter().collect(),
            missing,
        })
    }
}

/// Every account under an OU, nested OUs included.
async fn accounts_under(ctx: &Ctx, ou: &str) -> Result<Vec<String>, AwsError> {
    let org = ctx.clients.org();
    let mut out = Vec::new();
    let mut pending = vec![ou.to_string()];
    while let Some(parent) = pending.pop() {
        let accounts = ctx
            .call("organizations:ListAccountsForParent", || {
                org.list_accounts_for_parent()
                    .parent_id(&parent)
                    .into_paginator()
                    .send()
                    .try_collect()
            })
            .await?;
        out.extend(
            accounts
                .iter()
                .flat_map(|p| p.accounts())
                .filter_map(|a| a.id().map(str::to_string)),
        );
        let children = ctx
            .call("organizations:ListOrganizationalUnitsForParent", || {
                org.list_organizational_units_for_parent()
                    .parent_id(&parent)
                    .into_paginator()
                    .send()
                    .try_collect()
            })
            .await?;
        pending.extend(
            children
                .iter()
                .flat_map(|p| p.organizational_units())
                .filter_map(|u| u.id().map(str::to_string)),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_role_names_and_templates() {
        let r = MemberRole::new(None, "aws");
        assert_eq!(
            r.arn("123456789012"),
            "arn:aws:iam::123456789012:role/OrganizationAccountAccessRole"
        );
        assert_eq!(
            r.pattern(),
            "arn:aws:iam::*:role/OrganizationAccountAccessRole"
        );
        let t = MemberRole::new(Some("arn:aws:iam::{account}:role/ir/Responder"), "aws");
        assert_eq!(
            MemberRole::new(None, "aws-cn").arn("111122223333"),
            "arn:aws-cn:iam::111122223333:role/OrganizationAccountAccessRole"
        );
        assert_eq!(
            t.arn("111122223333"),
            "arn:aws:iam::111122223333:role/ir/Responder"
        );
        assert_eq!(t.pattern(), "arn:aws:iam::*:role/ir/Responder");
    }
}
