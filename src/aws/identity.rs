//! Who the run acts as: the principal behind the credential, and every
//! principal of the chain that leads to it (all of them protected).

use serde::{Deserialize, Serialize};

/// The principal behind the credential, from `sts:GetCallerIdentity`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
    /// The access key id the calls are signed with (not a secret; lets
    /// actions skip it and CloudTrail readers find the run).
    pub access_key_id: String,
    pub principal: Principal,
    /// The hops that lead to this principal: the base credential, then each
    /// role assumed, the executor's own role last. Every one of them is as
    /// protected as the executor: deactivating the base key or revoking an
    /// intermediate role would lock every later run, hold and rollback out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<Hop>,
}

/// One hop of the credential chain, as shown before confirmation and
/// written to the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Hop {
    /// `static key`, `credential_process`, `sso`, `web identity`,
    /// `instance role` or `assume role`.
    pub via: String,
    /// The profile the hop comes from; none for the playbook's
    /// `executor.assume_role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The principal it acts as: a user ARN, a role ARN as configured, or
    /// the session ARN STS answered with.
    pub principal: String,
    /// The long-term access key it signs with (never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
}

impl std::fmt::Display for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.via)?;
        if let Some(p) = &self.profile {
            write!(f, " (profile {p})")?;
        }
        write!(f, ": {}", self.principal)?;
        if let Some(k) = &self.access_key_id {
            write!(f, " key {k}")?;
        }
        if let Some(m) = &self.mfa_serial {
            write!(f, " with MFA {m}")?;
        }
        if let Some(s) = &self.session_name {
            write!(f, " session {s}")?;
        }
        Ok(())
    }
}

/// What kind of principal the executor is, with the names needed to protect it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Principal {
    User { name: String },
    AssumedRole { role_name: String, session: String },
    Root,
    FederatedUser { name: String },
    Other,
}

impl Identity {
    pub fn from_caller(
        account: String,
        arn: String,
        user_id: String,
        access_key_id: String,
    ) -> Self {
        let principal = parse_principal(&arn);
        Identity {
            account,
            arn,
            user_id,
            access_key_id,
            principal,
            chain: Vec::new(),
        }
    }

    /// Every principal of the chain before the last as (account, kind,
    /// name): users by name, roles by name (a session names its role).
    fn chain_principals(&self) -> impl Iterator<Item = (String, PrincipalKind, String)> + '_ {
        self.chain.iter().filter_map(|h| {
            let account = h.principal.split(':').nth(4)?.to_string();
            match parse_principal(&h.principal) {
                Principal::User { name } => Some((account, PrincipalKind::User, name)),
                Principal::AssumedRole { role_name, .. } => {
                    Some((account, PrincipalKind::Role, role_name))
                }
                Principal::Other => {
                    let resource = h.principal.splitn(6, ':').nth(5)?;
                    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
                    Some((account, PrincipalKind::Role, name.to_string()))
                }
                _ => None,
            }
        })
    }

    /// The long-term keys the chain signs with: never deactivated.
    pub fn chain_keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.access_key_id.as_str())
            .chain(self.chain.iter().filter_map(|h| h.access_key_id.as_deref()))
    }

    /// The chain's users and roles as `aws:PrincipalArn` values for a
    /// deny to exempt: user and role ARNs exactly; a role known only from a
    /// session (its path unknown) both bare and under any path.
    pub fn chain_arns(&self) -> Vec<String> {
        let partition = partition(&self.arn).to_string();
        let mut out = Vec::new();
        for h in &self.chain {
            match parse_principal(&h.principal) {
                Principal::User { .. } => out.push(h.principal.clone()),
                Principal::AssumedRole { role_name, .. } => {
                    let account = h.principal.split(':').nth(4).unwrap_or_default();
                    out.push(format!("arn:{partition}:iam::{account}:role/{role_name}"));
                    out.push(format!("arn:{partition}:iam::{account}:role/*/{role_name}"));
                }
                _ if h.principal.contains(":role/") => out.push(h.principal.clone()),
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Accounts whose root user signs a hop of the chain (a root access
    /// key): their root credentials must never be deleted, or every later
    /// run, hold and rollback is locked out.
    pub fn root_accounts(&self) -> Vec<String> {
        std::iter::once(self.arn.as_str())
            .chain(self.chain.iter().map(|h| h.principal.as_str()))
            .filter(|p| parse_principal(p) == Principal::Root)
            .filter_map(|p| p.split(':').nth(4).map(str::to_string))
            .collect()
    }

    /// True when `arn` names the executor's own principal (a user ARN, or the role
    /// its session belongs to). IAM names are unique per account, so the account
    /// and the last path segment decide.
    pub fn is_self(&self, account: &str, kind: PrincipalKind, name: &str) -> bool {
        let own = account == self.account
            && match (&self.principal, kind) {
                (Principal::User { name: n }, PrincipalKind::User) => n == name,
                (Principal::AssumedRole { role_name, .. }, PrincipalKind::Role) => {
                    role_name == name
                }
                _ => false,
            };
        own || self
            .chain_principals()
            .any(|(a, k, n)| a == account && k == kind && n == name)
    }
}

/// The partition of an ARN (`aws`, `aws-cn`, `aws-us-gov`), `aws` when it
/// cannot be read: ARNs breakglass writes use the executor's own.
pub fn partition(arn: &str) -> &str {
    match arn.split(':').nth(1) {
        Some(p) if arn.starts_with("arn:") && !p.is_empty() => p,
        _ => "aws",
    }
}

/// An IAM user or role: what a deny policy or a protection names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    Role,
}

fn parse_principal(arn: &str) -> Principal {
    // arn:PARTITION:SERVICE::ACCOUNT:RESOURCE
    let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
    if resource == "root" {
        return Principal::Root;
    }
    let mut parts = resource.split('/');
    match parts.next() {
        Some("user") => match resource.rsplit('/').next() {
            Some(name) if !name.is_empty() => Principal::User {
                name: name.to_string(),
            },
            _ => Principal::Other,
        },
        Some("assumed-role") => {
            let rest: Vec<&str> = parts.collect();
            match rest.as_slice() {
                [role, session] => Principal::AssumedRole {
                    role_name: role.to_string(),
                    session: session.to_string(),
                },
                _ => Principal::Other,
            }
        }
        Some("federated-user") => Principal::FederatedUser {
            name: parts.collect::<Vec<_>>().join("/"),
        },
        _ => Principal::Other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_root_key_in_the_chain_names_its_account() {
        let mut id = Identity::from_caller(
            "111122223333".into(),
            "arn:aws:sts::111122223333:assumed-role/IR/s".into(),
            "AROA:s".into(),
            "ASIA".into(),
        );
        assert!(id.root_accounts().is_empty());
        id.chain.push(Hop {
            via: "static key".into(),
            profile: None,
            principal: "arn:aws:iam::444455556666:root".into(),
            access_key_id: Some("AKIAROOT".into()),
            mfa_serial: None,
            session_name: None,
        });
        assert_eq!(id.root_accounts(), ["444455556666"]);
    }

    use super::*;

    #[test]
    fn the_whole_chain_is_the_executor() {
        let mut id = Identity::from_caller(
            "111122223333".into(),
            "arn:aws:sts::111122223333:assumed-role/IR-BreakGlass/breakglass-IR-1".into(),
            "AROA:breakglass-IR-1".into(),
            "ASIAEXAMPLE".into(),
        );
        id.chain = vec![
            Hop {
                via: "static key".into(),
                profile: Some("base".into()),
                principal: "arn:aws:iam::444455556666:user/ops/alice".into(),
                access_key_id: Some("AKIAALICE".into()),
                mfa_serial: None,
                session_name: None,
            },
            Hop {
                via: "assume role".into(),
                profile: Some("hop".into()),
                principal: "arn:aws:iam::444455556666:role/ir/Jump".into(),
                access_key_id: None,
                mfa_serial: None,
                session_name: None,
            },
        ];
        assert!(id.is_self("111122223333", PrincipalKind::Role, "IR-BreakGlass"));
        assert!(id.is_self("444455556666", PrincipalKind::User, "alice"));
        assert!(id.is_self("444455556666", PrincipalKind::Role, "Jump"));
        assert!(!id.is_self("111122223333", PrincipalKind::User, "alice"));
        assert!(!id.is_self("444455556666", PrincipalKind::Role, "OrgJump"));
        assert_eq!(
            id.chain_keys().collect::<Vec<_>>(),
            ["ASIAEXAMPLE", "AKIAALICE"]
        );
        assert_eq!(
            id.chain_arns(),
            [
                "arn:aws:iam::444455556666:role/ir/Jump",
                "arn:aws:iam::444455556666:user/ops/alice"
            ]
        );
    }

    #[test]
    fn principals_parse() {
        assert_eq!(
            parse_principal("arn:aws:iam::111122223333:user/ops/alice"),
            Principal::User {
                name: "alice".into()
            }
        );
        assert_eq!(
            parse_principal("arn:aws:sts::111122223333:assumed-role/IR-BreakGlass/bob"),
            Principal::AssumedRole {
                role_name: "IR-BreakGlass".into(),
                session: "bob".into()
            }
        );
        assert_eq!(
            parse_principal("arn:aws:iam::111122223333:root"),
            Principal::Root
        );
        assert_eq!(parse_principal("garbage"), Principal::Other);
    }
}
