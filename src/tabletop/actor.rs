//! Who the attacker acts as (`as: user NAME`, `as: role NAME`), which of
//! that principal's credentials it holds when a move comes, and whether AWS
//! would let any of them make it. moto lets every request through, so a
//! move with `as:` is first evaluated against the principal's policies as
//! they stand then ([`super::evaluate`]); refused, it is not played and
//! reads as AWS's error.

use super::admin::Admin;
use super::evaluate::{Decision, Named, Policies, Request, evaluate};
use super::moves::MoveRecord;
use std::time::Duration;

use super::moves::{MINTED, error_text};
use super::scenario::{Move, MoveKind, Scenario, ScenarioFile, parse_offset};
use super::seed::ATTACKER_ACCOUNT;
use super::seed::Seeded;
use crate::actions::iam::url_decode;

/// The principal a move is made as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(String),
    Role(String),
}

impl Actor {
    /// `user NAME` or `role NAME`.
    pub fn parse(s: &str) -> Option<Actor> {
        match s.trim().split_once(' ')? {
            ("user", name) if !name.trim().is_empty() => Some(Actor::User(name.trim().into())),
            ("role", name) if !name.trim().is_empty() => Some(Actor::Role(name.trim().into())),
            _ => None,
        }
    }
}

/// Why `as: ACTOR` on a move at `at` is wrong: not `user NAME` or
/// `role NAME`, or naming a principal that neither the scenario declares
/// nor an earlier move creates.
pub fn check(actor: &str, kind: MoveKind, file: &ScenarioFile, at: Duration) -> Option<String> {
    // Made in the same account, and strictly before (moves at one time
    // have no order a scenario can rely on).
    let created_by = |kind: MoveKind, name: &str| {
        file.attacker.iter().any(|m| {
            m.action == kind
                && m.account.is_none()
                && (m.user.as_deref() == Some(name) || m.role.as_deref() == Some(name))
                && parse_offset(&m.at).is_ok_and(|t| t < at)
        })
    };
    if kind == MoveKind::ConsoleLogin {
        return Some(format!(
            "`do: console_login` is the user's own sign-in, which no IAM policy authorizes: drop `as: {actor}`"
        ));
    }
    match Actor::parse(actor) {
        None => Some(format!("`as: {actor}` is not `user NAME` or `role NAME`")),
        Some(Actor::User(n))
            if !file.users.iter().any(|u| u.name == n)
                && !created_by(MoveKind::CreateAdminUser, &n) =>
        {
            Some(format!(
                "`as: {actor}`: user `{n}` is not declared under `users`, nor created by an earlier move"
            ))
        }
        Some(Actor::Role(n))
            if !file.roles.iter().any(|r| r.name == n)
                && !created_by(MoveKind::CreateBackdoorRole, &n) =>
        {
            Some(format!(
                "`as: {actor}`: role `{n}` is not declared under `roles`, nor created by an earlier move"
            ))
        }
        Some(_) => None,
    }
}

/// The IAM action of a move's first call: what AWS authorizes.
pub fn action_of(m: &Move) -> &'static str {
    match m.action {
        MoveKind::CreateAccessKey => "iam:CreateAccessKey",
        MoveKind::ReactivateAccessKeys => "iam:UpdateAccessKey",
        MoveKind::AttachAdminPolicy if m.role.is_some() => "iam:AttachRolePolicy",
        MoveKind::AttachAdminPolicy => "iam:AttachUserPolicy",
        MoveKind::DeleteSnapshots => "ec2:DeleteSnapshot",
        MoveKind::TerminateInstances => "ec2:TerminateInstances",
        MoveKind::LaunchInstance => "ec2:RunInstances",
        MoveKind::StopLogging => "cloudtrail:StopLogging",
        MoveKind::MuteTrail => "cloudtrail:PutEventSelectors",
        MoveKind::ShareSnapshots => "ec2:ModifySnapshotAttribute",
        MoveKind::CreateLoginProfile => "iam:CreateLoginProfile",
        MoveKind::OpenPort22 => "ec2:AuthorizeSecurityGroupIngress",
        MoveKind::CreateAdminUser => "iam:CreateUser",
        MoveKind::BackdoorRole => "iam:UpdateAssumeRolePolicy",
        MoveKind::CreateBackdoorRole => "iam:CreateRole",
        MoveKind::FederationToken => "sts:GetFederationToken",
        MoveKind::DeleteTrail => "cloudtrail:DeleteTrail",
        MoveKind::LeaveOrganization => "organizations:LeaveOrganization",
        // DeleteObjects is authorized object by object as s3:DeleteObject
        // (S3 API reference, DeleteObjects).
        MoveKind::S3RansomwareBatch | MoveKind::S3RansomwareIndividual => "s3:DeleteObject",
        MoveKind::S3RansomwareSseC => "s3:PutObject",
        MoveKind::BackdoorBucketPolicy => "s3:PutBucketPolicy",
        MoveKind::ExpireTrailLogs => "s3:PutLifecycleConfiguration",
        MoveKind::ShareImages => "ec2:ModifyImageAttribute",
        MoveKind::DeregisterImages => "ec2:DeregisterImage",
        MoveKind::GetPasswordData => "ec2:GetPasswordData",
        MoveKind::ModifyUserData => "ec2:StopInstances",
        MoveKind::DownloadUserData => "ec2:DescribeInstanceAttribute",
        MoveKind::RemoveFlowLogs => "ec2:DeleteFlowLogs",
        // Signing in is not an IAM-authorized API call: a deny-all does not
        // stop it (only deleting the password does).
        MoveKind::ConsoleLogin => "signin:AuthenticatePassword",
    }
}

/// What the actor itself must be allowed: the move's own action, or for a
/// move in a member account `sts:AssumeRole` into its member role (the move
/// is then made as that role, under the member's SCPs: see
/// [`super::members`]).
fn entry_action(m: &Move) -> &'static str {
    match m.account {
        Some(_) => "sts:AssumeRole",
        None => action_of(m),
    }
}

/// What the move acts on, as the move's record names it.
pub fn subject_of(m: &Move) -> String {
    if m.action == MoveKind::LeaveOrganization {
        return format!("account {}", m.account.as_deref().unwrap_or_default());
    }
    if let Some(b) = &m.bucket {
        return format!("bucket {b}");
    }
    if m.action == MoveKind::ExpireTrailLogs {
        let trail = m.trail.as_deref().unwrap_or_default();
        return format!("bucket {}", super::buckets::trail_bucket(trail));
    }
    match (&m.user, &m.role, &m.trail, &m.region) {
        (Some(u), _, _, _) => format!("user {u}"),
        (_, Some(r), _, _) => format!("role {r}"),
        (_, _, Some(t), _) => format!("trail {t}"),
        (_, _, _, Some(region)) => region.clone(),
        _ => String::new(),
    }
}

/// One credential of the principal the attacker holds.
struct Credential {
    /// `key AKIA…`, `console session issued 2026-…`.
    label: String,
    /// Sessions carry `aws:TokenIssueTime`; long-term keys do not.
    issued: Option<jiff::Timestamp>,
    /// What AWS refuses to this credential whatever the policies: an
    /// inactive key, a federation token calling IAM.
    barred: Option<&'static str>,
    /// Request context keys of its own (instance credentials carry the
    /// instance's ARN, VPC and address).
    context: Vec<(&'static str, String)>,
}

impl Credential {
    fn new(label: String, issued: Option<jiff::Timestamp>) -> Credential {
        Credential {
            label,
            issued,
            barred: None,
            context: Vec::new(),
        }
    }
}

/// What AWS answers for a key it no longer accepts.
const INVALID_KEY: &str =
    "InvalidClientTokenId: The security token included in the request is invalid";

/// The principal a move is made as, read from IAM: what a request of its
/// carries, the credentials the attacker holds of it, and its policies.
struct Principal {
    /// `User: arn:…`, for AWS's message.
    shown: String,
    arn: String,
    userid: String,
    held: Vec<Credential>,
    policies: Policies,
    service_linked: bool,
}

/// What the refusal needs to know of the run so far.
struct Moment<'a> {
    admin: &'a Admin,
    scenario: &'a Scenario,
    seeded: &'a Seeded,
    m: &'a Move,
    earlier: &'a [MoveRecord],
    t0: jiff::Timestamp,
    now: jiff::Timestamp,
}

impl Moment<'_> {
    /// Earlier moves of one of `kinds` that succeeded on `subject` in this
    /// account.
    fn done<'s>(
        &'s self,
        kinds: &'s [MoveKind],
        subject: &'s str,
    ) -> impl DoubleEndedIterator<Item = &'s MoveRecord> + 's {
        self.earlier.iter().filter(move |r| {
            r.succeeded && r.account.is_none() && kinds.contains(&r.action) && r.subject == subject
        })
    }

    /// `t0` plus a move's offset.
    fn at(&self, ms: u64) -> jiff::Timestamp {
        self.t0
            .checked_add(jiff::SignedDuration::from_millis(ms as i64))
            .unwrap_or(self.t0)
    }
}

/// When the attacker's sessions from before the incident were issued: ten
/// minutes before the run, well within a role session's default hour, so
/// any revocation the run writes covers them.
fn before_the_run(t0: jiff::Timestamp) -> jiff::Timestamp {
    t0.checked_sub(jiff::SignedDuration::from_secs(600))
        .unwrap_or(t0)
}

/// Fail closed: a principal that cannot be read is not played as an
/// administrator.
fn unreadable(what: &str, e: String) -> String {
    format!("the tabletop could not evaluate {what}, so the move is not played: {e}")
}

/// Why AWS would refuse `m` to its actor now, or `None` when it would not
/// (or the move names no actor).
pub async fn refusal(
    admin: &Admin,
    scenario: &Scenario,
    seeded: &Seeded,
    m: &Move,
    earlier: &[MoveRecord],
    t0: jiff::Timestamp,
) -> Option<String> {
    let actor = Actor::parse(m.actor.as_deref()?)?;
    let at = Moment {
        admin,
        scenario,
        seeded,
        m,
        earlier,
        t0,
        now: jiff::Timestamp::now(),
    };
    let read = match &actor {
        Actor::User(name) => user_principal(&at, name).await,
        Actor::Role(name) => role_principal(&at, name).await,
    };
    let p = match read {
        Ok(p) => p,
        Err(refused) => return Some(refused),
    };
    if p.held.is_empty() {
        return Some(format!(
            "the attacker holds no credential of {}",
            subject_of_actor(&actor)
        ));
    }
    let mut reasons = Vec::new();
    for c in &p.held {
        if let Some(why) = c.barred {
            reasons.push(format!("{}: {why}", c.label));
            continue;
        }
        let mut request = Request {
            action: entry_action(m).into(),
            resource: "*".into(),
            principal: p.shown.clone(),
            // Every move acts in the account the run started in: the
            // management account, or an account in no organization.
            management_account: true,
            service_linked: p.service_linked,
            ..Request::default()
        }
        .with("aws:PrincipalArn", p.arn.clone())
        .with("aws:userid", p.userid.clone())
        .with("aws:PrincipalAccount", seeded.account.clone());
        if let Some(t) = c.issued {
            request = request.with("aws:TokenIssueTime", t.to_string());
        }
        for (k, v) in &c.context {
            request = request.with(k, v.clone());
        }
        match evaluate(&request, &p.policies) {
            Decision::Allowed => return None,
            Decision::Denied(why) => reasons.push(format!("{}: {why}", c.label)),
        }
    }
    Some(reasons.join("; "))
}

/// A user and the credentials of it the attacker holds: its keys (seeded,
/// or made by earlier moves), federation tokens it minted, and its console
/// session. `Err` is the refusal.
async fn user_principal(at: &Moment<'_>, name: &str) -> Result<Principal, String> {
    let iam = at.admin.iam();
    let got = match iam.get_user().user_name(name).send().await {
        Ok(u) => u,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            return Err(format!(
                "InvalidClientTokenId: user {name} does not exist, so no credential of it works"
            ));
        }
        Err(e) => return Err(unreadable(&format!("user {name}"), error_text(&e))),
    };
    let user = got
        .user()
        .ok_or_else(|| unreadable(&format!("user {name}"), "no user in the answer".into()))?;
    let subject = format!("user {name}");
    let mut held = Vec::new();
    let mut known: Vec<String> = at.seeded.user_keys.get(name).cloned().unwrap_or_default();
    let made = [MoveKind::CreateAccessKey, MoveKind::CreateAdminUser];
    for r in at.done(&made, &subject) {
        known.extend(
            r.resources
                .iter()
                .filter(|k| k.starts_with("AKIA"))
                .cloned(),
        );
    }
    let keys = iam
        .list_access_keys()
        .user_name(name)
        .send()
        .await
        .map_err(|e| unreadable(&format!("{name}'s keys"), error_text(&e)))?;
    for id in known {
        let active = keys.access_key_metadata().iter().any(|k| {
            k.access_key_id() == Some(id.as_str())
                && k.status().map(|s| s.as_str()) == Some("Active")
        });
        let mut key = Credential::new(format!("key {id}"), None);
        key.barred = (!active).then_some(INVALID_KEY);
        held.push(key);
    }
    // A federation token minted earlier outlives the key it was minted
    // with; it can call neither IAM nor STS (but GetCallerIdentity), as the
    // STS API reference has it for GetFederationToken.
    let token_barred = ["iam:", "sts:"]
        .iter()
        .any(|p| entry_action(at.m).starts_with(p));
    for r in at.done(&[MoveKind::FederationToken], &subject) {
        let minted = r
            .resources
            .iter()
            .find_map(|x| x.strip_prefix(MINTED))
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let Some(minted) = minted else { continue };
        let label = format!("federation token minted {}", seconds(minted));
        let mut token = Credential::new(label, Some(minted));
        token.barred = token_barred
            .then_some("AccessDenied: a federation token cannot call IAM or STS operations");
        held.push(token);
    }
    // GetFederationToken must be signed with a long-term key (STS API
    // reference): no session can make it. Otherwise a password still there
    // signs in afresh, and a console session opened earlier outlives the
    // password's deletion.
    if at.m.action != MoveKind::FederationToken {
        let seeded_console = at
            .scenario
            .file
            .users
            .iter()
            .any(|u| u.name == *name && u.console);
        let signed_in = [MoveKind::CreateLoginProfile, MoveKind::ConsoleLogin];
        let opened = at.done(&signed_in, &subject).next_back().map(|r| r.at_ms);
        if has_password(at.admin, name).await {
            held.push(Credential::new(
                "a new console sign-in".into(),
                Some(at.now),
            ));
        } else if seeded_console || opened.is_some() {
            // The latest sign-in the attacker made, else the session it
            // held before the run.
            let issued = opened.map_or_else(|| before_the_run(at.t0), |ms| at.at(ms));
            let label = format!("console session issued {}", seconds(issued));
            held.push(Credential::new(label, Some(issued)));
        }
    }
    let policies = policies_of(at.admin, &Actor::User(name.to_string()))
        .await
        .map_err(|e| unreadable(&format!("{name}'s policies"), e))?;
    let arn = user.arn().to_string();
    Ok(Principal {
        shown: format!("User: {arn}"),
        arn,
        userid: user.user_id().to_string(),
        held,
        policies,
        service_linked: false,
    })
}

/// A role and the session of it the attacker holds: the one it stole (an
/// instance's credentials, for a role on a seeded instance), or a fresh one
/// while the role trusts the attacker's account. `Err` is the refusal.
async fn role_principal(at: &Moment<'_>, name: &str) -> Result<Principal, String> {
    let iam = at.admin.iam();
    let got = match iam.get_role().role_name(name).send().await {
        Ok(r) => r,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            return Err(format!(
                "AccessDenied: role {name} does not exist, so no session of it can be had"
            ));
        }
        Err(e) => return Err(unreadable(&format!("role {name}"), error_text(&e))),
    };
    let role = got
        .role()
        .ok_or_else(|| unreadable(&format!("role {name}"), "no role in the answer".into()))?;
    // Trusted by the attacker's own account now, it mints a new session of
    // its own naming at will; otherwise the attacker holds the one it stole.
    let trust = role
        .assume_role_policy_document()
        .map(url_decode)
        .unwrap_or_default();
    let backdoored = trust.contains(ATTACKER_ACCOUNT);
    let stolen = at
        .scenario
        .file
        .stolen_sessions
        .iter()
        .find(|s| s.role == *name)
        .map_or("tabletop-attacker", |s| s.name.as_str());
    let (session, issued) = match backdoored {
        true => ("tabletop-attacker-new", at.now),
        false => (stolen, before_the_run(at.t0)),
    };
    // A role on a seeded instance: the stolen session is the instance's
    // own credentials, used from outside its VPC.
    let context = match (backdoored, at.seeded.instance_roles.get(name)) {
        (false, Some((region, id))) => {
            instance_context(at.admin, &at.seeded.account, region, id).await
        }
        _ => Vec::new(),
    };
    let label = match context.is_empty() {
        true => format!("session {session} issued {}", seconds(issued)),
        false => format!(
            "instance credentials issued {}, used outside the instance's VPC",
            seconds(issued)
        ),
    };
    let mut credential = Credential::new(label, Some(issued));
    credential.context = context;
    let policies = policies_of(at.admin, &Actor::Role(name.to_string()))
        .await
        .map_err(|e| unreadable(&format!("{name}'s policies"), e))?;
    Ok(Principal {
        shown: format!(
            "User: arn:aws:sts::{}:assumed-role/{name}/{session}",
            at.seeded.account
        ),
        arn: role.arn().to_string(),
        userid: format!("{}:{session}", role.role_id()),
        held: vec![credential],
        policies,
        service_linked: role.path().starts_with("/aws-service-role/"),
    })
}

/// The keys AWS adds to requests signed with an instance's credentials
/// (IAM User Guide, global condition keys: `ec2:SourceInstanceARN`,
/// `aws:Ec2InstanceSourceVpc`, `aws:Ec2InstanceSourcePrivateIPv4`); used
/// from outside, the request has no `aws:SourceVpc` or `aws:VpcSourceIp`.
async fn instance_context(
    admin: &Admin,
    account: &str,
    region: &str,
    id: &str,
) -> Vec<(&'static str, String)> {
    let found = admin
        .ec2(region)
        .describe_instances()
        .instance_ids(id)
        .send()
        .await;
    let instance = found.ok().and_then(|d| {
        d.reservations()
            .first()
            .and_then(|r| r.instances().first())
            .cloned()
    });
    let mut keys = vec![(
        "ec2:SourceInstanceARN",
        format!("arn:aws:ec2:{region}:{account}:instance/{id}"),
    )];
    if let Some(vpc) = instance.as_ref().and_then(|i| i.vpc_id()) {
        keys.push(("aws:Ec2InstanceSourceVpc", vpc.to_string()));
    }
    if let Some(ip) = instance.as_ref().and_then(|i| i.private_ip_address()) {
        keys.push(("aws:Ec2InstanceSourcePrivateIPv4", ip.to_string()));
    }
    keys
}

/// `2026-12-02T23:39:23Z`: what a reader needs of an issue time.
fn seconds(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn subject_of_actor(a: &Actor) -> String {
    match a {
        Actor::User(n) => format!("user {n}"),
        Actor::Role(n) => format!("role {n}"),
    }
}

async fn has_password(admin: &Admin, user: &str) -> bool {
    admin
        .iam()
        .get_login_profile()
        .user_name(user)
        .send()
        .await
        .is_ok()
}

/// A principal's inline and attached policies (groups are not seeded). A
/// policy that cannot be read fails the whole evaluation: dropping it
/// could drop the very deny that holds the principal.
pub(crate) async fn policies_of(admin: &Admin, actor: &Actor) -> Result<Policies, String> {
    let iam = admin.iam();
    let (inline, attached) = match actor {
        Actor::User(n) => (
            iam.list_user_policies()
                .user_name(n)
                .send()
                .await
                .map(|o| o.policy_names().to_vec())
                .map_err(|e| error_text(&e))?,
            iam.list_attached_user_policies()
                .user_name(n)
                .send()
                .await
                .map(|o| o.attached_policies().to_vec())
                .map_err(|e| error_text(&e))?,
        ),
        Actor::Role(n) => (
            iam.list_role_policies()
                .role_name(n)
                .send()
                .await
                .map(|o| o.policy_names().to_vec())
                .map_err(|e| error_text(&e))?,
            iam.list_attached_role_policies()
                .role_name(n)
                .send()
                .await
                .map(|o| o.attached_policies().to_vec())
                .map_err(|e| error_text(&e))?,
        ),
    };
    let mut identity = Vec::new();
    for name in inline {
        let document = match actor {
            Actor::User(n) => {
                let got = iam.get_user_policy().user_name(n).policy_name(&name);
                got.send()
                    .await
                    .map(|p| p.policy_document().to_string())
                    .map_err(|e| error_text(&e))?
            }
            Actor::Role(n) => {
                let got = iam.get_role_policy().role_name(n).policy_name(&name);
                got.send()
                    .await
                    .map(|p| p.policy_document().to_string())
                    .map_err(|e| error_text(&e))?
            }
        };
        identity.push(named(&name, &document).ok_or_else(|| format!("policy {name} is not JSON"))?);
    }
    for p in attached {
        identity.push(managed(admin, p.policy_name(), p.policy_arn()).await?);
    }
    Ok(Policies {
        identity,
        scps: Vec::new(),
        ..Policies::default()
    })
}

/// A managed policy's default version.
async fn managed(admin: &Admin, name: Option<&str>, arn: Option<&str>) -> Result<Named, String> {
    let iam = admin.iam();
    let arn = arn.ok_or("an attached policy without an ARN")?;
    let policy = iam
        .get_policy()
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| error_text(&e))?;
    let version = policy
        .policy()
        .and_then(|p| p.default_version_id())
        .ok_or_else(|| format!("{arn} has no default version"))?
        .to_string();
    let v = iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(version)
        .send()
        .await
        .map_err(|e| error_text(&e))?;
    let document = v
        .policy_version()
        .and_then(|v| v.document())
        .unwrap_or_default();
    named(name.unwrap_or(arn), document).ok_or_else(|| format!("{arn} is not JSON"))
}

fn named(name: &str, document: &str) -> Option<Named> {
    Some(Named {
        name: name.to_string(),
        document: serde_json::from_str(&url_decode(document)).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_user_or_role_with_a_name() {
        assert_eq!(
            Actor::parse("user devops"),
            Some(Actor::User("devops".into()))
        );
        assert_eq!(Actor::parse("role app"), Some(Actor::Role("app".into())));
        assert_eq!(Actor::parse("user "), None);
        assert_eq!(Actor::parse("group admins"), None);
        assert_eq!(Actor::parse("devops"), None);
    }
}
