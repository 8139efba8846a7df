//! The scenario format: a compromised estate to seed into the emulator and the
//! attacker's moves during the response. Validated like playbooks: every
//! problem with file:line:column, all at once, before the emulator starts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::yaml::{self, Located, Pos};
use crate::yaml::{Problem, Problems};

pub use super::buckets::BucketSeed;
use super::identity_seeds::check_identity_center;
pub use super::identity_seeds::{IdentityCenterSeed, SessionSeed, SsoGroupSeed, SsoUserSeed};
pub use super::move_kind::MoveKind;

/// Longest an exercise may script: the attacker's last move comes before this.
pub const MAX_MOVE_AT: Duration = Duration::from_secs(600);

/// A scenario file, as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The break-glass identity the run signs with: an IAM user created with
    /// one access key for the exercise.
    #[serde(default)]
    pub executor: ExecutorSeed,
    /// Create an AWS Organization with this account as its management account.
    #[serde(default)]
    pub organization: bool,
    /// Member accounts created in the organization (needs `organization`).
    /// breakglass runs in the management account; the report says what
    /// reached the members (the SCP) and what did not (IAM and EC2 steps).
    #[serde(default)]
    pub accounts: Vec<Located<AccountSeed>>,
    /// Centralized root access is on (`RootCredentialsManagement`), so the
    /// management account can delete member root credentials. Emulated by
    /// the shim: moto has no root user.
    #[serde(default)]
    pub centralized_root_access: bool,
    /// SCPs attached to the organization's root before the incident,
    /// `FullAWSAccess` included (2 to 5; AWS allows 5 on one target). At 5
    /// the freeze must go on the OUs and accounts under the root instead.
    #[serde(default)]
    pub root_scps: Option<Located<u8>>,
    /// Playbook variables for the run (`--var` on the command line wins).
    /// `@access_key:USER` stands for USER's first seeded access key id and
    /// `@instance:REGION` for the first seeded instance there.
    #[serde(default)]
    pub vars: BTreeMap<String, Located<String>>,
    #[serde(default)]
    pub users: Vec<Located<UserSeed>>,
    #[serde(default)]
    pub roles: Vec<Located<RoleSeed>>,
    #[serde(default)]
    pub instances: Vec<Located<InstanceSeed>>,
    /// Snapshots that exist before the incident (the account's own backups).
    #[serde(default)]
    pub backups: Vec<Located<BackupSeed>>,
    /// CloudTrail trails logging before the incident (each with its bucket).
    #[serde(default)]
    pub trails: Vec<Located<TrailSeed>>,
    /// S3 buckets with a few objects each, before the incident.
    #[serde(default)]
    pub buckets: Vec<Located<BucketSeed>>,
    /// IAM Identity Center in this account: its groups and users, with the
    /// permission sets assigned to them here.
    #[serde(default)]
    pub identity_center: Option<Located<IdentityCenterSeed>>,
    /// Role sessions the attacker holds (a temporary key taken from a
    /// laptop's cache or an instance's metadata), each of a declared role.
    #[serde(default)]
    pub stolen_sessions: Vec<Located<SessionSeed>>,
    /// The attacker's moves, timed from the start of the run.
    #[serde(default)]
    pub attacker: Vec<Located<Move>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSeed {
    #[serde(default = "default_executor")]
    pub user: String,
    #[serde(default = "default_executor_path")]
    pub path: String,
}

impl Default for ExecutorSeed {
    fn default() -> Self {
        ExecutorSeed {
            user: default_executor(),
            path: default_executor_path(),
        }
    }
}

fn default_executor() -> String {
    "ir-responder".into()
}

fn default_executor_path() -> String {
    "/ir/".into()
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSeed {
    pub name: String,
    #[serde(default = "root_path")]
    pub path: String,
    /// Active access keys (IAM allows at most 2).
    #[serde(default)]
    pub access_keys: u8,
    /// A console password.
    #[serde(default)]
    pub console: bool,
    /// AdministratorAccess attached.
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSeed {
    pub name: String,
    /// `/aws-service-role/…` makes a service-linked role, which breakglass
    /// never touches.
    #[serde(default = "root_path")]
    pub path: String,
    /// AdministratorAccess attached (an over-privileged instance role, say).
    #[serde(default)]
    pub admin: bool,
}

fn root_path() -> String {
    "/".into()
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSeed {
    pub region: String,
    #[serde(default = "one")]
    pub count: u16,
    /// Data volumes attached besides the root volume.
    #[serde(default)]
    pub data_volumes: u8,
    /// A role given to the instances through an instance profile.
    #[serde(default)]
    pub role: Option<String>,
    /// A `Name` tag.
    #[serde(default)]
    pub name: Option<String>,
    /// AMIs made from the group's first instance before the incident (0 to 5).
    #[serde(default)]
    pub images: u8,
    /// A VPC flow log on the region's default VPC, delivered to S3.
    #[serde(default)]
    pub flow_logs: bool,
}

fn one() -> u16 {
    1
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSeed {
    pub region: String,
    /// Snapshots of the region's seeded volumes, taken before the incident.
    pub snapshots: u16,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountSeed {
    pub name: String,
    /// `false`: the account's member role was deleted (or never made), so
    /// every `AssumeRole` into it is refused, as AWS refuses a missing role.
    /// Exercises `readiness` and an unreachable account in a run.
    #[serde(default = "yes")]
    pub member_role: bool,
    /// Credentials its root user has (accounts Organizations creates have
    /// none): what the attacker may hold of it.
    #[serde(default)]
    pub root: Option<RootSeed>,
    /// Users of the account, seeded through its member role.
    #[serde(default)]
    pub users: Vec<Located<UserSeed>>,
    /// Instances of the account (no `role`: a member account seeds no roles).
    #[serde(default)]
    pub instances: Vec<Located<InstanceSeed>>,
    /// Backup snapshots of the account's volumes.
    #[serde(default)]
    pub backups: Vec<Located<BackupSeed>>,
    /// S3 buckets of the account (names are global: unique across accounts).
    #[serde(default)]
    pub buckets: Vec<Located<BucketSeed>>,
}

/// A member account's root user credentials.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RootSeed {
    /// A console password.
    #[serde(default)]
    pub password: bool,
    /// Access keys (0 to 2, as AWS allows).
    #[serde(default)]
    pub access_keys: u8,
    #[serde(default)]
    pub certificates: u8,
    /// An MFA device.
    #[serde(default)]
    pub mfa: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrailSeed {
    pub name: String,
    #[serde(default = "home_region")]
    pub region: String,
}

fn home_region() -> String {
    "us-east-1".into()
}

/// One attacker move: what, and when (from the start of the run).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Move {
    /// When, from the start of the run: `2s`, `1500ms`, `1m`.
    pub at: String,
    #[serde(rename = "do")]
    pub action: MoveKind,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub count: Option<u16>,
    #[serde(default)]
    pub trail: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    /// The principal the attacker acts as, `user NAME` or `role NAME`: the
    /// move is first evaluated against its policies as AWS would (the
    /// emulator evaluates none), and refused as AWS would refuse it. Without
    /// it the attacker acts with an administrator nothing in the run binds.
    #[serde(default, rename = "as")]
    pub actor: Option<String>,
    /// A member account (by its name under `accounts`) the move is made in,
    /// as its `OrganizationAccountAccessRole`, which the attacker reaches
    /// from the management account: the organization's SCPs bind it.
    #[serde(default)]
    pub account: Option<String>,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub source: String,
    pub file: ScenarioFile,
    /// Moves in time order, with their offsets parsed.
    pub moves: Vec<(Duration, Move)>,
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario, crate::Error> {
    let bytes = std::fs::read(path).map_err(|source| crate::Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(&path.display().to_string(), &bytes).map_err(crate::Error::InvalidPlaybook)
}

/// Validates a scenario from raw bytes (non-UTF-8 is a problem, not a panic).
pub fn parse_bytes(source: &str, bytes: &[u8]) -> Result<Scenario, Problems> {
    let text = crate::playbook::utf8_text(source, bytes)?;
    parse_text(source, text).map_err(|p| p.quote(text))
}

fn parse_text(source: &str, text: &str) -> Result<Scenario, Problems> {
    crate::playbook::refuse_bidi_controls(source, text)?;
    let root = yaml::parse(text)
        .map_err(|e| Problems(vec![Problem::error(source, Some(e.pos), e.message)]))?;
    if root.get("steps").is_some()
        && !crate::playbook::SCENARIO_KEYS
            .iter()
            .any(|k| root.get(k).is_some())
    {
        return Err(Problems(vec![
            Problem::error(
                source,
                Some(root.pos),
                "this is a playbook (it has `steps`), not a tabletop scenario",
            )
            .with_hint(format!(
                "check it with `breakglass validate {source}`; a tabletop runs it as `tabletop {source} --scenario SCENARIO`"
            )),
        ]));
    }
    let file: ScenarioFile = yaml::decode_all(&root).map_err(|errors| {
        let found = errors
            .into_iter()
            .map(|e| Problem::from_decode(source, e, Some(root.pos)));
        Problems(found.collect())
    })?;
    check(source, file)
}

fn check(source: &str, file: ScenarioFile) -> Result<Scenario, Problems> {
    let mut problems = Vec::new();
    let mut err =
        |pos: Pos, message: String| problems.push(Problem::error(source, Some(pos), message));
    let mut roles = BTreeSet::new();
    for r in &file.roles {
        if !roles.insert(r.name.as_str()) {
            err(r.pos, format!("role `{}` is declared twice", r.name));
        }
    }
    let estate = super::estate::Estate {
        users: &file.users,
        instances: &file.instances,
        backups: &file.backups,
    };
    let regions = estate.check(&file.executor.user, Some(&roles), &mut err);
    let users: BTreeSet<&str> = file.users.iter().map(|u| u.name.as_str()).collect();
    for (name, value) in &file.vars {
        if let Some(user) = value.strip_prefix("@access_key:") {
            if !file
                .users
                .iter()
                .any(|u| u.name == user && u.access_keys > 0)
            {
                err(
                    value.pos,
                    format!(
                        "vars.{name}: `{}` names no declared user with an access key",
                        value.value
                    ),
                );
            }
        } else if let Some(region) = value.strip_prefix("@instance:")
            && !regions.contains(region)
        {
            err(
                value.pos,
                format!(
                    "vars.{name}: `{}`: no instances are declared in {region}",
                    value.value
                ),
            );
        }
    }
    let mut moves = Vec::new();
    let mut accounts = BTreeSet::new();
    for a in &file.accounts {
        if !file.organization {
            err(a.pos, "member accounts need `organization: true`".into());
        }
        if a.root.as_ref().is_some_and(|r| r.access_keys > 2) {
            err(a.pos, "a root user has at most 2 access keys".into());
        }
        if !accounts.insert(a.name.as_str()) {
            err(a.pos, format!("account `{}` is declared twice", a.name));
        }
        let estate = super::estate::Estate {
            users: &a.users,
            instances: &a.instances,
            backups: &a.backups,
        };
        estate.check(&file.executor.user, None, &mut err);
    }
    if let Some(n) = &file.root_scps {
        if !file.organization {
            err(n.pos, "root_scps needs `organization: true`".into());
        }
        if !(2..=5).contains(&n.value) {
            err(
                n.pos,
                format!(
                    "root_scps: {} is not 2 to 5 (FullAWSAccess is one, and AWS allows 5 on a target)",
                    n.value
                ),
            );
        }
    }
    if let Some(ic) = &file.identity_center {
        check_identity_center(ic, &mut err);
    }
    for session in &file.stolen_sessions {
        if !roles.contains(session.role.as_str()) {
            err(
                session.pos,
                format!("role `{}` is not declared under `roles`", session.role),
            );
        }
        if !crate::spec::is_role_session_name(&session.name) {
            err(
                session.pos,
                format!(
                    "`{}` is not a role session name (2 to 64 of letters, digits and =,.@-)",
                    session.name
                ),
            );
        }
    }
    // Bucket names are global: one name once, whichever account holds it.
    let mut buckets = BTreeSet::new();
    let member_buckets = file.accounts.iter().flat_map(|a| a.buckets.iter());
    for b in file.buckets.iter().chain(member_buckets) {
        check_region(&b.region, b.pos, &mut err);
        if !buckets.insert(b.name.as_str()) {
            err(b.pos, format!("bucket `{}` is declared twice", b.name));
        }
        if let Some(message) = super::buckets::check(b) {
            err(b.pos, message);
        }
    }
    let mut trails = BTreeSet::new();
    for t in &file.trails {
        check_region(&t.region, t.pos, &mut err);
        if !trails.insert(t.name.as_str()) {
            err(t.pos, format!("trail `{}` is declared twice", t.name));
        }
    }
    for m in &file.attacker {
        let pos_of_move = m.pos;
        let at = match parse_offset(&m.at) {
            Ok(d) if d <= MAX_MOVE_AT => d,
            Ok(_) => {
                err(m.pos, format!("`at: {}` is past the 10-minute limit", m.at));
                continue;
            }
            Err(e) => {
                err(m.pos, e);
                continue;
            }
        };
        let needs = |field: &str, have: bool| {
            (!have).then(|| format!("`do: {}` needs `{field}`", m.action.id()))
        };
        let missing = match m.action {
            MoveKind::CreateAccessKey
            | MoveKind::ReactivateAccessKeys
            | MoveKind::CreateLoginProfile
            | MoveKind::ConsoleLogin
            | MoveKind::CreateAdminUser
            | MoveKind::FederationToken => needs("user", m.user.is_some()),
            MoveKind::AttachAdminPolicy => {
                needs("user` or `role", m.user.is_some() != m.role.is_some())
            }
            MoveKind::BackdoorRole | MoveKind::CreateBackdoorRole => {
                needs("role", m.role.is_some())
            }
            MoveKind::DeleteSnapshots
            | MoveKind::TerminateInstances
            | MoveKind::LaunchInstance
            | MoveKind::ShareSnapshots
            | MoveKind::OpenPort22
            | MoveKind::ShareImages
            | MoveKind::DeregisterImages
            | MoveKind::GetPasswordData
            | MoveKind::ModifyUserData
            | MoveKind::DownloadUserData
            | MoveKind::RemoveFlowLogs => needs("region", m.region.is_some()),
            MoveKind::StopLogging
            | MoveKind::MuteTrail
            | MoveKind::DeleteTrail
            | MoveKind::ExpireTrailLogs => needs("trail", m.trail.is_some()),
            MoveKind::S3RansomwareBatch
            | MoveKind::S3RansomwareIndividual
            | MoveKind::S3RansomwareSseC
            | MoveKind::BackdoorBucketPolicy => needs("bucket", m.bucket.is_some()),
            MoveKind::LeaveOrganization => needs("account", m.account.is_some()),
        };
        if let Some(message) = missing {
            err(m.pos, message);
            continue;
        }
        // A new user is one the scenario does not declare; any other move
        // acts on a declared one.
        let creates = m.action == MoveKind::CreateAdminUser;
        if let Some(message) = super::members::check(m, &file) {
            err(m.pos, message);
            continue;
        }
        // Names in a member account are the attacker's own.
        if let Some(user) = m.user.as_ref().filter(|_| m.account.is_none())
            && users.contains(user.as_str()) == creates
        {
            let message = match creates {
                true => format!(
                    "`do: create_admin_user` makes a new user: `{user}` is declared under `users`"
                ),
                false => format!("user `{user}` is not declared under `users`"),
            };
            err(m.pos, message);
        }
        let new_role = m.action == MoveKind::CreateBackdoorRole;
        if let Some(role) = m.role.as_ref().filter(|_| m.account.is_none())
            && roles.contains(role.as_str()) == new_role
        {
            let message = match new_role {
                true => format!(
                    "`do: create_backdoor_role` makes a new role: `{role}` is declared under `roles`"
                ),
                false => format!("role `{role}` is not declared under `roles`"),
            };
            err(m.pos, message);
        }
        if m.action == MoveKind::FederationToken
            && let Some(user) = &m.user
            && file
                .users
                .iter()
                .any(|u| u.name == *user && u.access_keys == 0)
        {
            err(
                m.pos,
                format!("`do: federation_token` signs with `{user}`'s access key: it has none"),
            );
        }
        if let Some(region) = &m.region {
            check_region(region, m.pos, &mut err);
        }
        if let Some(actor) = &m.actor
            && let Some(message) = super::actor::check(actor, m.action, &file, at)
        {
            err(m.pos, message);
        }
        let mut m = m.value.clone();
        if let Some(bucket) = &m.bucket {
            // A bucket of the account the move is made in.
            let declared = match &m.account {
                Some(name) => file
                    .accounts
                    .iter()
                    .find(|a| a.name == *name)
                    .map_or(&[][..], |a| &a.buckets[..]),
                None => &file.buckets[..],
            };
            match declared.iter().find(|b| b.name == *bucket) {
                Some(b) => m.region = Some(b.region.clone()),
                None => {
                    let under = match &m.account {
                        Some(name) => format!("the `buckets` of account `{name}`"),
                        None => "`buckets`".into(),
                    };
                    err(
                        pos_of_move,
                        format!("bucket `{bucket}` is not declared under {under}"),
                    );
                    continue;
                }
            }
        }
        if let Some(trail) = &m.trail {
            match file.trails.iter().find(|t| t.name == *trail) {
                // The move acts where the trail lives.
                Some(t) => m.region = Some(t.region.clone()),
                None => {
                    err(
                        pos_of_move,
                        format!("trail `{trail}` is not declared under `trails`"),
                    );
                    continue;
                }
            }
        }
        moves.push((at, m));
    }
    moves.sort_by_key(|(at, _)| *at);
    if problems.is_empty() {
        Ok(Scenario {
            source: source.to_string(),
            file,
            moves,
        })
    } else {
        Err(Problems(problems))
    }
}

pub(super) fn check_region(region: &str, pos: Pos, err: &mut impl FnMut(Pos, String)) {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if !ok {
        err(
            pos,
            format!("`{region}` is not a region name such as us-east-1"),
        );
    }
}

/// `2s`, `1500ms`, `1m 30s` (jiff's friendly format).
pub(super) fn parse_offset(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("`at: {s}` is not a duration such as 2s or 1m: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("`at: {s}` is negative"))
}

/// The JSON Schema of the scenario format.
pub fn schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    generator.into_root_schema_for::<ScenarioFile>().to_value()
}
