//! Targets: what a step acts on, where it lives, and the rules that keep
//! some targets out of reach (the executor itself, the protect list).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::TargetKind;
use crate::spec::TargetSpec;
use crate::yaml::Pos;

/// Where a target lives. Every target carries its account and (for regional
/// services) its region, so fan-out across accounts and regions needs no new types.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Scope {
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// One thing a step acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Resource {
    User {
        name: String,
        arn: String,
    },
    Role {
        name: String,
        arn: String,
    },
    AccessKey {
        user: String,
        key_id: String,
    },
    Instance {
        id: String,
    },
    Snapshot {
        id: String,
    },
    /// A member account of the organization (moved by `org.move_accounts`).
    Account {
        id: String,
    },
    /// A service control policy and where it is (to be) attached.
    Scp {
        name: String,
        targets: Vec<String>,
    },
    /// A whole region of the scope, when it could not be read: what stands
    /// in for the targets nobody could list there.
    Region {},
    /// A resource of a kind its action names (`trail`, `key`, `vault`), so
    /// that a new action needs no new variant here.
    Named {
        kind: String,
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Target {
    pub scope: Scope,
    #[serde(flatten)]
    pub resource: Resource,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resource {
            Resource::User { name, .. } => write!(f, "user {name}"),
            Resource::Role { name, .. } => write!(f, "role {name}"),
            Resource::AccessKey { user, key_id } if user.is_empty() => write!(f, "key {key_id}"),
            Resource::AccessKey { user, key_id } => write!(f, "key {key_id} of user {user}"),
            Resource::Instance { id } => match &self.scope.region {
                Some(r) => write!(f, "instance {id} ({r})"),
                None => write!(f, "instance {id}"),
            },
            Resource::Snapshot { id } => match &self.scope.region {
                Some(r) => write!(f, "snapshot {id} ({r})"),
                None => write!(f, "snapshot {id}"),
            },
            Resource::Account { id } => write!(f, "account {id}"),
            Resource::Named { kind, id } => match &self.scope.region {
                Some(r) => write!(f, "{kind} {id} ({r})"),
                None => write!(f, "{kind} {id}"),
            },
            Resource::Scp { name, targets } => write!(f, "SCP {name} on {}", targets.join(", ")),
            Resource::Region {} => write!(
                f,
                "region {} of account {}",
                self.scope.region.as_deref().unwrap_or("?"),
                self.scope.account
            ),
        }
    }
}

/// Why a discovered target is left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The principal the run itself uses.
    Executor,
    /// The access key the run signs its calls with.
    ExecutorKey,
    /// Matches a `protect` pattern.
    Protected { pattern: String },
    /// AWS manages it; inline policies cannot be attached.
    ServiceLinkedRole,
    /// An IAM Identity Center role (`AWSReservedSSO_*`): IAM cannot edit it;
    /// its users are contained with `sso.contain_users`.
    IdentityCenterRole,
    /// An earlier snapshot of this instance failed: stopping it would destroy
    /// the memory and disk state that is now the only evidence.
    SnapshotFailed,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Executor => f.write_str("the executor itself"),
            SkipReason::ExecutorKey => f.write_str("the key this run signs with"),
            SkipReason::Protected { pattern } => write!(f, "protected by {pattern}"),
            SkipReason::ServiceLinkedRole => {
                f.write_str("service-linked role (AWS allows no inline policy on it)")
            }
            SkipReason::IdentityCenterRole => f.write_str(
                "IAM Identity Center role (AWSReservedSSO_*), which IAM cannot edit: contain its users with sso.contain_users",
            ),
            SkipReason::SnapshotFailed => f.write_str(
                "its snapshot failed earlier in this run: not stopped, to keep the evidence",
            ),
        }
    }
}

/// The protect list plus the executor, checked before any target is planned.
#[derive(Debug, Clone)]
pub struct Protection {
    patterns: Vec<String>,
}

impl Protection {
    pub fn new(patterns: &[String]) -> Self {
        Protection {
            patterns: patterns.to_vec(),
        }
    }

    /// The first pattern that matches `arn`, if any.
    pub fn matching(&self, arn: &str) -> Option<&str> {
        self.patterns
            .iter()
            .find(|p| glob_match(p, arn))
            .map(String::as_str)
    }
}

/// How `ArnLike` and `ArnNotLike` compare: "each of the six colon-delimited
/// components of the ARN is checked separately" (IAM User Guide, condition
/// operators, ARN condition operators), each with `*` and `?` wildcards. So
/// `arn:aws:iam::*` matches no role ARN: its `*` cannot reach across the
/// colons into the resource part.
pub fn arn_like(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| glob_match(p, a))
}

/// IAM-style wildcard match: `*` any run of characters, `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Static checks of a step's selectors against its action: which target kinds
/// it accepts and requires, and that each selector selects something definite.
/// Returns (message, position, hint) triples.
pub fn check_spec(
    action: &str,
    takes: &[TargetKind],
    spec: &TargetSpec,
    pos: Pos,
) -> Vec<(String, Pos, Option<String>)> {
    let mut out = Vec::new();
    let present: Vec<(TargetKind, Pos)> = [
        spec.users.as_ref().map(|s| (TargetKind::Users, s.pos)),
        spec.roles.as_ref().map(|s| (TargetKind::Roles, s.pos)),
        spec.access_keys
            .as_ref()
            .map(|s| (TargetKind::AccessKeys, s.pos)),
        spec.sessions
            .as_ref()
            .map(|s| (TargetKind::Sessions, s.pos)),
        spec.instances
            .as_ref()
            .map(|s| (TargetKind::Instances, s.pos)),
        spec.snapshots
            .as_ref()
            .map(|s| (TargetKind::Snapshots, s.pos)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let accepted: Vec<&str> = takes.iter().map(|k| k.key()).collect();
    for (kind, at) in &present {
        if !takes.contains(kind) {
            out.push((
                format!("`{action}` does not take `{}` targets", kind.key()),
                *at,
                Some(format!("it takes: {}", accepted.join(", "))),
            ));
        }
    }
    if !takes.is_empty() && present.is_empty() {
        out.push((
            format!("`{action}` needs `targets`"),
            pos,
            Some(format!(
                "select with one of: {} (for example `{}: {{ all: true }}`)",
                accepted.join(", "),
                accepted.first().copied().unwrap_or("users")
            )),
        ));
    }
    if let Some(u) = &spec.users {
        let s = &u.value;
        check_selector(
            "users",
            u.pos,
            s.all,
            !s.names.is_empty() || !s.access_key_ids.is_empty(),
            s.path_prefix.as_deref(),
            !s.tags.is_empty(),
            &mut out,
        );
        for id in &s.access_key_ids {
            check_key_id(id, u.pos, &mut out);
        }
        check_names("users", u.pos, &s.names, &s.exclude, &mut out);
    }
    if let Some(r) = &spec.roles {
        let s = &r.value;
        check_selector(
            "roles",
            r.pos,
            s.all,
            !s.names.is_empty(),
            s.path_prefix.as_deref(),
            !s.tags.is_empty(),
            &mut out,
        );
        check_names("roles", r.pos, &s.names, &s.exclude, &mut out);
    }
    if let Some(i) = &spec.instances {
        let s = &i.value;
        check_selector(
            "instances",
            i.pos,
            s.all,
            !s.ids.is_empty(),
            None,
            !s.tags.is_empty() || !s.vpc_ids.is_empty(),
            &mut out,
        );
        check_ids("instances.ids", i.pos, "i-", &s.ids, &mut out);
        check_ids("instances.exclude", i.pos, "i-", &s.exclude, &mut out);
        check_ids("instances.vpc_ids", i.pos, "vpc-", &s.vpc_ids, &mut out);
    }
    if let Some(sn) = &spec.snapshots {
        let s = &sn.value;
        let any = s.all
            || s.created_by_run
            || !s.ids.is_empty()
            || !s.tags.is_empty()
            || !s.volume_ids.is_empty()
            || !s.instance_ids.is_empty();
        if !any {
            out.push((
                "`snapshots` selects nothing".into(),
                sn.pos,
                Some("use ids, tags, volume_ids, instance_ids, created_by_run or all".into()),
            ));
        }
        check_ids("snapshots.ids", sn.pos, "snap-", &s.ids, &mut out);
        check_ids(
            "snapshots.volume_ids",
            sn.pos,
            "vol-",
            &s.volume_ids,
            &mut out,
        );
        check_ids(
            "snapshots.instance_ids",
            sn.pos,
            "i-",
            &s.instance_ids,
            &mut out,
        );
    }
    if let Some(sess) = &spec.sessions {
        // Templates are checked once bound: an unset variable leaves it empty.
        let given = |v: &Option<String>| {
            v.as_deref()
                .is_some_and(|n| !n.trim().is_empty() && !n.contains("{{"))
        };
        let pending = |v: &Option<String>| v.as_deref().is_some_and(|n| n.contains("{{"));
        // A key id, or a role and its session's name: the session is named
        // either way, never left to mean "every session".
        let keys: Vec<&String> = sess
            .key_ids
            .iter()
            .filter(|k| !k.trim().is_empty())
            .collect();
        let session_named = (given(&sess.role) || pending(&sess.role))
            && (given(&sess.session_name) || pending(&sess.session_name));
        if keys.is_empty() && !session_named {
            out.push((
                "`sessions.key_ids` is empty".into(),
                sess.pos,
                Some(
                    "list the temporary key ids, such as ASIA…, or name the role and its session (`role:`, `session_name:`)"
                        .into(),
                ),
            ));
        }
        for id in keys {
            check_key_id(id, sess.pos, &mut out);
            if !id.contains("{{") && !id.starts_with("ASIA") {
                out.push((
                    format!("`{id}` is not a temporary key id (ASIA…)"),
                    sess.pos,
                    Some(
                        "a long-term key (AKIA…) is contained with iam.deactivate_access_keys"
                            .into(),
                    ),
                ));
            }
        }
        if given(&sess.role) && given(&sess.user) {
            out.push((
                "`sessions` names both a role and a user".into(),
                sess.pos,
                Some("a session is minted by one principal: keep the one that made it".into()),
            ));
        }
        if given(&sess.session_name)
            && !given(&sess.role)
            && !sess.role.as_deref().unwrap_or("").contains("{{")
        {
            out.push((
                "`sessions.session_name` without `role`".into(),
                sess.pos,
                Some("name the role whose session it is".into()),
            ));
        }
        // STS API reference, AssumeRole: RoleSessionName is 2 to 64 of [\w+=,.@-].
        if given(&sess.session_name)
            && let Some(n) = &sess.session_name
            && !crate::spec::is_role_session_name(n)
        {
            out.push((
                format!("`sessions.session_name`: `{n}` is not a role session name"),
                sess.pos,
                Some(
                    "2 to 64 letters, digits or _+=,.@- (the last part of assumed-role/ROLE/NAME)"
                        .into(),
                ),
            ));
        }
        for n in [&sess.role, &sess.user].into_iter().flatten() {
            if n.contains(['*', '?', '/']) {
                out.push((
                    format!("`sessions`: `{n}` is not a role or user name"),
                    sess.pos,
                    None,
                ));
            }
        }
    }
    if let Some(k) = &spec.access_keys {
        if k.ids.is_empty() {
            out.push((
                "`access_keys.ids` is empty".into(),
                k.pos,
                Some("list the access key ids, such as AKIA…".into()),
            ));
        }
        for id in &k.ids {
            check_key_id(id, k.pos, &mut out);
        }
    }
    out
}

fn check_selector(
    what: &str,
    pos: Pos,
    all: bool,
    named: bool,
    path_prefix: Option<&str>,
    tagged: bool,
    out: &mut Vec<(String, Pos, Option<String>)>,
) {
    if all && named {
        out.push((
            format!("`{what}` has both `all: true` and explicit names"),
            pos,
            Some("keep one: `all: true` selects everything already".into()),
        ));
    }
    if !all && !named && path_prefix.is_none() && !tagged {
        out.push((
            format!("`{what}` selects nothing"),
            pos,
            Some("use `all: true`, `names`, `path_prefix` or `tags`".into()),
        ));
    }
    if let Some(p) = path_prefix
        && !p.contains("{{")
    {
        if !(p.starts_with('/') && p.ends_with('/')) {
            out.push((
                format!("`{what}.path_prefix` `{p}` must start and end with `/`"),
                pos,
                None,
            ));
        } else if p == "/" {
            // `/` is every principal: a variable set to it must not turn a
            // narrow selector into the whole account.
            out.push((
                format!("`{what}.path_prefix` `/` selects every principal"),
                pos,
                Some("write `all: true` to mean every principal".into()),
            ));
        }
    }
}

/// Names are looked up literally; an empty one (a variable left unset)
/// would name nobody, or worse, the caller.
fn check_names(
    what: &str,
    pos: Pos,
    names: &[String],
    exclude: &[String],
    out: &mut Vec<(String, Pos, Option<String>)>,
) {
    for n in names.iter().chain(exclude) {
        if n.contains("{{") {
            continue;
        }
        if n.trim().is_empty() {
            out.push((
                format!("`{what}` holds an empty name"),
                pos,
                Some("is a variable unset? pass it with --var".into()),
            ));
        } else if n.contains(['*', '?']) {
            out.push((
                format!("`{what}` name `{n}` holds a wildcard: names are matched exactly"),
                pos,
                Some("use `path_prefix` or `tags` to select a group".into()),
            ));
        }
    }
}

/// EC2 ids are sent as Describe filters, where `*` and `?` are wildcards:
/// only a literal id of the right kind may reach one.
fn check_ids(
    what: &str,
    pos: Pos,
    prefix: &str,
    ids: &[String],
    out: &mut Vec<(String, Pos, Option<String>)>,
) {
    for id in ids {
        if id.contains("{{") {
            continue;
        }
        let literal = id.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty() && rest.len() <= 32 && rest.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !literal {
            out.push((
                format!("`{what}`: `{id}` is not an id of the form {prefix}…"),
                pos,
                Some(format!(
                    "ids are literal, such as {prefix}0123456789abcdef0"
                )),
            ));
        }
    }
}

fn check_key_id(id: &str, pos: Pos, out: &mut Vec<(String, Pos, Option<String>)>) {
    if id.contains("{{") {
        return;
    }
    let well_formed = id.len() >= 16
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !well_formed {
        out.push((
            format!("`{id}` is not an access key id"),
            pos,
            Some("access key ids look like AKIAIOSFODNN7EXAMPLE".into()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "arn:aws:iam::*:role/IR-*",
            "arn:aws:iam::111122223333:role/IR-BreakGlass"
        ));
        assert!(!glob_match(
            "arn:aws:iam::*:role/IR-*",
            "arn:aws:iam::111122223333:role/ops/Admin"
        ));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
    }
}
