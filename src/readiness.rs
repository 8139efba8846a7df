//! Readiness findings: what stands between a playbook and a run today, each
//! with what it concerns (a hop, an account, a region, a quota) and its fix.

use serde::Serialize;

/// How much a finding matters: an `error` means the playbook would not run
/// as written today (readiness exits 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warning,
    Error,
}

/// Which part of the break-glass path a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Playbook,
    Credentials,
    Mfa,
    Session,
    Identity,
    MemberRoles,
    Regions,
    Targets,
    Permissions,
    Quota,
    Support,
    Safety,
    Audit,
}

impl Check {
    pub fn label(self) -> &'static str {
        match self {
            Check::Playbook => "playbook",
            Check::Credentials => "credentials",
            Check::Mfa => "mfa",
            Check::Session => "session",
            Check::Identity => "identity",
            Check::MemberRoles => "member roles",
            Check::Regions => "regions",
            Check::Targets => "targets",
            Check::Permissions => "permissions",
            Check::Quota => "quota",
            Check::Support => "support",
            Check::Safety => "safety",
            Check::Audit => "audit",
        }
    }
}

/// One finding, as printed and as one JSON line for monitoring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub check: Check,
    /// The playbook file it was found for.
    pub playbook: String,
    /// What it concerns: `hop 2 (assume role …)`, `account 111122223333`,
    /// `region eu-west-3`, `root r-ab12`, `--audit-log`.
    pub subject: String,
    pub message: String,
    /// What to change so the finding goes away.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The findings for one playbook, gathered in the order they are checked.
pub struct Findings {
    playbook: String,
    pub list: Vec<Finding>,
}

impl Findings {
    pub fn new(playbook: impl Into<String>) -> Findings {
        Findings {
            playbook: playbook.into(),
            list: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        severity: Severity,
        check: Check,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: Option<String>,
    ) {
        self.list.push(Finding {
            severity,
            check,
            playbook: self.playbook.clone(),
            subject: subject.into(),
            message: message.into(),
            fix,
        });
    }

    pub fn ok(&mut self, check: Check, subject: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Ok, check, subject, message, None);
    }

    pub fn warn(
        &mut self,
        check: Check,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(Severity::Warning, check, subject, message, Some(fix.into()));
    }

    pub fn error(
        &mut self,
        check: Check,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(Severity::Error, check, subject, message, Some(fix.into()));
    }
}

/// What a role's trust policy says about a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// An `Allow` of `sts:AssumeRole` names the caller (`by_account:
    /// false`), or only its account, which hands the decision to the
    /// account's own IAM policies (IAM User Guide, "Cross account resource
    /// access in IAM").
    Allows { by_account: bool },
    /// No usable `Allow`, or a `Deny` that names the caller (an explicit
    /// deny wins, IAM policy evaluation logic).
    Denies,
    /// Not JSON.
    Unreadable,
}

/// Whether a role's trust policy lets `principal` (a user or role ARN in
/// `account`) call `sts:AssumeRole`, as far as its text says: an `Allow`
/// for the action naming the principal, its account (`ACCOUNT` or
/// `arn:…:root`) or `*`, and no `Deny` naming it. An `Allow` that asks for
/// `sts:ExternalId` does not count: a run never sends one. Other
/// conditions (MFA, source IP) are not judged here.
pub fn trust_allows(policy: &str, principal: &str, account: &str) -> Trust {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(policy) else {
        return Trust::Unreadable;
    };
    let statements = match doc.get("Statement") {
        Some(serde_json::Value::Array(s)) => s.clone(),
        Some(one) => vec![one.clone()],
        None => return Trust::Denies,
    };
    let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
        match v {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let partition = principal.split(':').nth(1).unwrap_or("aws");
    let root = format!("arn:{partition}:iam::{account}:root");
    // (names the principal itself, names it by its account or `*`)
    let names = |s: &serde_json::Value| -> (bool, bool) {
        let principals = match s.get("Principal") {
            Some(serde_json::Value::String(p)) => vec![p.clone()],
            Some(p) => strings(p.get("AWS")),
            None => Vec::new(),
        };
        (
            principals.iter().any(|p| p == principal),
            principals
                .iter()
                .any(|p| p == "*" || p == account || *p == root),
        )
    };
    let assumes = |s: &serde_json::Value| {
        strings(s.get("Action")).iter().any(|a| {
            let a = a.to_ascii_lowercase();
            a == "*" || a == "sts:*" || a == "sts:assumerole"
        })
    };
    let effect =
        |s: &serde_json::Value, e: &str| s.get("Effect").and_then(|x| x.as_str()) == Some(e);
    let external_id = |s: &serde_json::Value| {
        s.get("Condition").is_some_and(|c| {
            c.to_string()
                .to_ascii_lowercase()
                .contains("sts:externalid")
        })
    };
    // A Deny with a condition (an organization id, MFA) may not apply to
    // a run: only an unconditional one is judged here.
    let denied = statements.iter().any(|s| {
        let (me, mine) = names(s);
        effect(s, "Deny") && assumes(s) && (me || mine) && s.get("Condition").is_none()
    });
    if denied {
        return Trust::Denies;
    }
    let allowing: Vec<(bool, bool)> = statements
        .iter()
        .filter(|s| effect(s, "Allow") && assumes(s) && !external_id(s))
        .map(names)
        .collect();
    if allowing.iter().any(|(me, _)| *me) {
        Trust::Allows { by_account: false }
    } else if allowing.iter().any(|(_, mine)| *mine) {
        Trust::Allows { by_account: true }
    } else {
        Trust::Denies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "arn:aws:iam::123456789012:user/ir/ir-responder";

    #[test]
    fn a_trust_policy_naming_the_user_allows_it_and_its_account_defers() {
        let named = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/ir/ir-responder"},"Action":"sts:AssumeRole","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}}]}"#;
        assert_eq!(
            trust_allows(named, USER, "123456789012"),
            Trust::Allows { by_account: false }
        );
        let account = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["123456789012"]},"Action":["sts:AssumeRole","sts:TagSession"]}}"#;
        assert_eq!(
            trust_allows(account, USER, "123456789012"),
            Trust::Allows { by_account: true }
        );
        let root = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:*"}]}"#;
        assert_eq!(
            trust_allows(root, USER, "123456789012"),
            Trust::Allows { by_account: true }
        );
        let role = "arn:aws:iam::123456789012:role/ir/Responder";
        let with_path = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/ir/Responder"},"Action":"sts:AssumeRole"}]}"#;
        assert_eq!(
            trust_allows(with_path, role, "123456789012"),
            Trust::Allows { by_account: false }
        );
    }

    #[test]
    fn a_trust_policy_for_someone_else_a_deny_or_an_external_id_does_not() {
        let other = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/mallory"},"Action":"sts:AssumeRole"}]}"#;
        assert_eq!(trust_allows(other, USER, "123456789012"), Trust::Denies);
        let service = r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        assert_eq!(trust_allows(service, USER, "123456789012"), Trust::Denies);
        let conditional = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/ir/ir-responder"},"Action":"sts:AssumeRole"},{"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringNotEquals":{"aws:PrincipalOrgID":"o-abc"}}}]}"#;
        assert_eq!(
            trust_allows(conditional, USER, "123456789012"),
            Trust::Allows { by_account: false }
        );
        let deny_wins = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole"},{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/ir/ir-responder"},"Action":"sts:AssumeRole"}]}"#;
        assert_eq!(trust_allows(deny_wins, USER, "123456789012"), Trust::Denies);
        let external = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/ir/ir-responder"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"x"}}}]}"#;
        assert_eq!(trust_allows(external, USER, "123456789012"), Trust::Denies);
        let wrong_action = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRoleWithSAML"}]}"#;
        assert_eq!(
            trust_allows(wrong_action, USER, "123456789012"),
            Trust::Denies
        );
        assert_eq!(
            trust_allows("not json", USER, "123456789012"),
            Trust::Unreadable
        );
    }
}
