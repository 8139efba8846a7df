//! The playbook format: these types are both the decoder's target and the source
//! of `breakglass schema`, so the schema cannot drift from what is accepted.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::yaml::{Located, Node};

/// A breakglass playbook: ordered containment steps and who may run them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "breakglass playbook")]
pub struct PlaybookFile {
    /// Short name, shown in plans, summaries and the audit log.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The out-of-band identity this playbook must run as.
    #[serde(default)]
    pub executor: Option<ExecutorSpec>,
    /// Variables referenced as `{{ name }}` in step `targets` and `with`.
    #[serde(default)]
    pub vars: BTreeMap<String, VarSpec>,
    /// Principal ARN patterns (`*` and `?` wildcards) that are never touched and
    /// always exempted. The executor's own principal is added automatically.
    #[serde(default)]
    pub protect: Vec<Located<String>>,
    /// Regions for regional actions: a list, or `all`. IAM is global and ignores it.
    #[serde(default)]
    pub regions: Option<Located<Regions>>,
    /// Default for every step's `max_targets`.
    #[serde(default)]
    pub max_targets: Option<u32>,
    /// Member accounts of the organization that account-scoped steps (IAM,
    /// EC2) run in, through `executor.member_role`. Without it they run in the
    /// executor's own account only. Steps may override it.
    #[serde(default)]
    pub accounts: Option<Located<AccountsSpec>>,
    /// After the steps, hold the line until stopped (Ctrl-C or SIGTERM):
    /// every `--every`, run the steps again and re-apply whatever drifted,
    /// catching what the intruder mints after a step has passed it. `run
    /// --hold DURATION` bounds it; a dry run has nothing to hold.
    #[serde(default)]
    pub hold: bool,
    pub steps: Vec<StepFile>,
}

/// Which accounts of the organization a step reaches. Criteria add up;
/// `exclude` always wins. Only active accounts are selected.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountsSpec {
    /// Every active member account.
    #[serde(default)]
    pub all: bool,
    /// Organizational units (`ou-…`): every account under them, nested OUs included.
    #[serde(default)]
    pub ous: Vec<String>,
    /// 12-digit account ids (quoted).
    #[serde(default)]
    pub ids: Vec<String>,
    /// Account ids never selected.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Also run in the management account, with the executor's own credential
    /// when it is the management account. Off by default: the management
    /// account usually holds the break-glass identity itself, and SCPs never
    /// bind it, so what it needs is a deliberate decision.
    #[serde(default)]
    pub include_management: bool,
}

impl AccountsSpec {
    /// The same selection as a `--accounts` value (for the tabletop's child run).
    pub fn to_flag(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        if self.all {
            words.push("all".into());
        }
        if self.include_management {
            words.push("management".into());
        }
        words.extend(self.ous.iter().cloned());
        words.extend(self.ids.iter().cloned());
        words.extend(self.exclude.iter().map(|x| format!("!{x}")));
        words.join(",")
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSpec {
    /// Named profile holding the break-glass credential (overridden by `--profile`).
    #[serde(default)]
    pub profile: Option<String>,
    /// The 12-digit account id the credential must belong to (quoted).
    #[serde(default, deserialize_with = "quoted_account")]
    #[schemars(with = "Option<String>")]
    pub expect_account: Option<Located<String>>,
    /// The principal ARN the credential must resolve to (for an assumed role, the
    /// role ARN; the session name is ignored).
    #[serde(default)]
    pub expect_principal: Option<Located<String>>,
    /// Assume this role from the profile's credential before anything else,
    /// with an MFA code when `mfa_serial` is set.
    #[serde(default)]
    pub assume_role: Option<Located<AssumeRoleSpec>>,
    /// The role assumed in each member account when steps fan out across
    /// `accounts`: a role name, or an ARN template with `{account}`
    /// [default: OrganizationAccountAccessRole]. Every SCP the run applies exempts it.
    #[serde(default)]
    pub member_role: Option<Located<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssumeRoleSpec {
    /// The break-glass role, such as arn:aws:iam::111122223333:role/IR-BreakGlass.
    pub role_arn: String,
    /// The MFA device (arn:aws:iam::…:mfa/name); the code is asked for on the
    /// terminal, or given with --mfa-code.
    #[serde(default)]
    pub mfa_serial: Option<String>,
    /// Session name CloudTrail shows [default: breakglass-<case_id or time>].
    #[serde(default)]
    pub session_name: Option<String>,
    /// Session length in seconds (900 to 43200) [default: 3600].
    #[serde(default)]
    pub duration_seconds: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VarSpec {
    /// A run without this variable (and without a default) is refused before any call.
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `all`, or a list of region names.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum Regions {
    #[schemars(with = "AllKeyword")]
    All,
    List(Vec<String>),
}

#[derive(JsonSchema)]
#[allow(dead_code)] // exists only to describe the `all` keyword in the schema
enum AllKeyword {
    #[serde(rename = "all")]
    All,
}

impl<'de> Deserialize<'de> for Regions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Regions;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all` or a list of region names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Regions, E> {
                if v == "all" {
                    Ok(Regions::All)
                } else {
                    Err(E::custom(format!(
                        "expected `all` or a list of region names, found `{v}`"
                    )))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Regions, A::Error> {
                let mut out = Vec::new();
                while let Some(r) = a.next_element::<String>()? {
                    out.push(r);
                }
                Ok(Regions::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One step as written. `targets` and `with` stay raw here: they may hold
/// `{{ var }}` templates and are decoded once variables are bound.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// Shown in plans, summaries and the audit log; defaults to the action id.
    #[serde(default)]
    pub name: Option<String>,
    /// An action id from `breakglass actions`, such as `iam.deactivate_access_keys`.
    pub action: Located<String>,
    /// Which principals or resources the step acts on.
    #[serde(default)]
    #[schemars(with = "Option<TargetSpec>")]
    pub targets: Option<Node>,
    /// Action parameters (see `breakglass actions`).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub with: Option<Node>,
    /// What to do when a target of this step fails: stop the run (default) or go on.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// What to do when a target the step names (a key id, a user, an
    /// instance id) does not exist: `fail` (default: the run stops before
    /// any change, naming it) or `skip` (report it and go on).
    #[serde(default)]
    pub on_missing: OnMissing,
    /// Consent for an action nobody can undo (deleting console passwords,
    /// stopping instances, compliance-mode locks): required for those steps.
    #[serde(default)]
    pub allow_irreversible: bool,
    /// Refuse the step (and stop the run) when discovery finds more targets
    /// than this: a selector typo must not reach the whole estate.
    #[serde(default)]
    pub max_targets: Option<u32>,
    /// The accounts this step runs in, instead of the playbook's `accounts`.
    #[serde(default)]
    pub accounts: Option<Located<AccountsSpec>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    #[default]
    Abort,
    Continue,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    #[default]
    Fail,
    Skip,
}

/// Target selectors. Within a selector the criteria narrow each other; `exclude`
/// always wins.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    #[serde(default)]
    pub users: Option<Located<UserSelector>>,
    #[serde(default)]
    pub roles: Option<Located<RoleSelector>>,
    #[serde(default)]
    pub access_keys: Option<Located<AccessKeySelector>>,
    #[serde(default)]
    pub sessions: Option<Located<SessionSelector>>,
    #[serde(default)]
    pub instances: Option<Located<InstanceSelector>>,
    #[serde(default)]
    pub snapshots: Option<Located<SnapshotSelector>>,
}

/// EBS snapshots owned by the account, in the playbook's regions. Criteria
/// add up: a snapshot matching any of them is selected.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSelector {
    /// Every snapshot the account owns.
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub ids: Vec<String>,
    /// Snapshots carrying all of these tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Snapshots of these volumes.
    #[serde(default)]
    pub volume_ids: Vec<String>,
    /// Snapshots breakglass took of these instances.
    #[serde(default)]
    pub instance_ids: Vec<String>,
    /// The snapshots earlier steps of this run created.
    #[serde(default)]
    pub created_by_run: bool,
    /// Only snapshots started at least this many days ago, among those
    /// `all`, `tags` and `volume_ids` select (named `ids` and the run's own
    /// are taken whatever their age).
    #[serde(default)]
    pub older_than_days: Option<u32>,
}

/// EC2 instances in the playbook's regions. Terminated instances are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSelector {
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub ids: Vec<String>,
    /// Tags that must all match (exact values).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub vpc_ids: Vec<String>,
    /// Instance ids never selected by this step.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// One organization target or several: `root`, an OU id, or an account id.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `org.apply_scp` parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyScpParams {
    /// `root`, OU ids (`ou-…`) or 12-digit account ids, one or a list.
    pub target: OneOrMany,
    /// `preserve` (built in: denies only what destroys evidence and
    /// backups, named `breakglass-preserve` unless told otherwise),
    /// `deny-all` (built in: denies everything to every principal but the
    /// executor and `protect`), or a `.json` SCP file in the playbook's
    /// directory, whose every Deny must exempt the executor through
    /// `aws:PrincipalArn`.
    #[serde(default = "deny_all")]
    pub policy: String,
    /// Name of the SCP created in the organization.
    #[serde(default = "scp_name")]
    pub name: String,
    /// The policy file's content, read when the playbook is loaded.
    #[serde(skip)]
    #[schemars(skip)]
    pub document: Option<String>,
    /// Only rewrite a policy that exists (the run's closing rewrite without
    /// the member role): never create one.
    #[serde(skip)]
    #[schemars(skip)]
    pub only_existing: bool,
}

fn deny_all() -> String {
    "deny-all".into()
}

/// The SCP `org.apply_scp` and `org.detach_scp` name when not told.
pub const DEFAULT_SCP_NAME: &str = "breakglass-deny-all";

fn scp_name() -> String {
    DEFAULT_SCP_NAME.into()
}

/// `org.move_accounts` parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveAccountsParams {
    /// The quarantine OU (`ou-…`) the step's accounts are moved into.
    pub to: String,
}

/// `org.detach_scp` parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetachScpParams {
    pub target: OneOrMany,
    /// Name of the SCP to detach.
    #[serde(default = "scp_name")]
    pub name: String,
}

/// `ec2.lock_snapshots` parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockParams {
    /// `governance` (default: users with ec2:UnlockSnapshot can lift it) or
    /// `compliance` (nobody can delete or unlock it, not even the root user,
    /// until it expires: only when the playbook says so).
    #[serde(default)]
    pub mode: LockModeSpec,
    /// How long the lock lasts, in days (1 to 36500).
    #[serde(default = "thirty")]
    pub duration_days: u32,
    /// Compliance mode only: hours (1 to 72) during which the lock can still
    /// be lifted or changed, so a mistaken lock can be undone; after them
    /// nobody can. Absent: the compliance lock binds at once.
    #[serde(default)]
    pub cool_off_hours: Option<u32>,
}

fn thirty() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockModeSpec {
    #[default]
    Governance,
    Compliance,
}

/// `ec2.snapshot_volumes` parameters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotParams {
    /// Tags put on every snapshot at creation (templates allowed: `{{ case_id }}`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSelector {
    /// Every user in the account.
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub names: Vec<String>,
    /// The users that own these access key ids.
    #[serde(default)]
    pub access_key_ids: Vec<String>,
    /// IAM path prefix, such as `/contractors/`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Tags that must all match (exact values).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// User names never selected by this step.
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSelector {
    /// Every role in the account (service-linked roles are skipped with a reason).
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessKeySelector {
    /// Access key ids (AKIA…); the owning user is looked up.
    pub ids: Vec<String>,
}

/// Stolen temporary credentials: the role or user that minted them is
/// found in CloudTrail, or named here when CloudTrail cannot tell.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSelector {
    /// Temporary access key ids (ASIA…).
    pub key_ids: Vec<String>,
    /// The role that minted them, when CloudTrail holds no event made with
    /// them (empty: look it up).
    #[serde(default)]
    pub role: Option<String>,
    /// The user that minted them with GetSessionToken or GetFederationToken,
    /// when CloudTrail cannot tell (empty: look it up).
    #[serde(default)]
    pub user: Option<String>,
    /// With `role`: the session's name, the last part of its ARN
    /// (`assumed-role/ROLE/NAME`), so that only that session is denied.
    #[serde(default)]
    pub session_name: Option<String>,
}

/// A role session name as STS accepts it (API reference, AssumeRole
/// RoleSessionName): 2 to 64 characters of `[\w+=,.@-]`.
pub fn is_role_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

/// `iam.revoke_session` parameters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSessionParams {
    /// What a role's stolen session costs the role: `session` (the default)
    /// denies that session alone; `all_sessions` every session of the role
    /// issued before now, legitimate ones too.
    #[serde(default)]
    pub scope: SessionScope,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionScope {
    #[default]
    Session,
    AllSessions,
}

/// Parameters of actions that take none: present so a typo under `with` is an error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Account ids must be quoted: YAML reads a bare number and drops leading zeros.
fn quoted_account<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Located<String>>, D::Error> {
    let located = Located::<AccountText>::deserialize(d)?;
    Ok(Some(Located {
        pos: located.pos,
        value: located.value.0,
    }))
}

struct AccountText(String);

impl<'de> Deserialize<'de> for AccountText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = AccountText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a quoted 12-digit account id")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AccountText, E> {
                Ok(AccountText(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<AccountText, E> {
                Err(E::custom(format!(
                    "account id {v} must be quoted, such as \"012345678901\": YAML reads a bare number and drops leading zeros"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<AccountText, E> {
                self.visit_i64(v as i64)
            }
        }
        d.deserialize_any(V)
    }
}
