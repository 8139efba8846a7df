//! Seeding the emulator with a scenario's estate, with the emulator's own
//! administrator (moto maps any unknown key to its default account). Only
//! ever pointed at the emulator the tabletop started. The attacker's moves
//! are in `moves`.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{IamInstanceProfileSpecification, ResourceType, Tag, TagSpecification};
use serde::Serialize;

use super::admin::Admin;
use super::roots::{RootUser, Roots};
use super::scenario::{BackupSeed, IdentityCenterSeed, InstanceSeed, Scenario, UserSeed};
use crate::Error;
use crate::yaml::Located;

/// Any AMI id launches in moto; its catalogue is off (see `Emulator::launch`).
pub(super) const IMAGE: &str = "ami-12c6146b";
pub(super) const ADMIN_POLICY: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
/// The account the attacker shares snapshots with: outside the organization.
pub const ATTACKER_ACCOUNT: &str = "999999999999";

/// Whether snapshot `id` in `region` is still shared with the attacker's
/// account; `None` when it can no longer be read (deleted since).
pub async fn shared_with_attacker(admin: &Admin, region: &str, id: &str) -> Option<bool> {
    let grants = admin
        .ec2(region)
        .describe_snapshot_attribute()
        .snapshot_id(id)
        .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
        .send()
        .await
        .ok()?;
    Some(
        grants
            .create_volume_permissions()
            .iter()
            .any(|p| p.user_id() == Some(ATTACKER_ACCOUNT)),
    )
}

fn fail<E: std::error::Error>(what: &str, e: E) -> Error {
    Error::Emulator(format!(
        "seeding: {what}: {}",
        aws_sdk_iam::error::DisplayErrorContext(e)
    ))
}

/// What seeding created, for the report.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Seeded {
    pub executor_key: String,
    #[serde(skip)]
    pub executor_secret: String,
    pub account: String,
    pub users: usize,
    pub access_keys: usize,
    /// user → the access key ids seeded for it (what `@access_key:USER` names).
    pub user_keys: BTreeMap<String, Vec<String>>,
    /// Access key id → its secret, for moves that sign as a seeded user
    /// (a federation token minted with a user's key).
    #[serde(skip)]
    pub user_secrets: BTreeMap<String, String>,
    pub roles: usize,
    /// region → instance ids.
    pub instances: BTreeMap<String, Vec<String>>,
    pub volumes: usize,
    pub snapshots: usize,
    pub trails: usize,
    /// Role → the region and id of the first seeded instance holding it:
    /// where the attacker's stolen instance credentials come from.
    #[serde(skip)]
    pub instance_roles: BTreeMap<String, (String, String)>,
    /// AMIs made before the incident.
    #[serde(skip_serializing_if = "is_zero")]
    pub images: usize,
    /// Buckets seeded (trail buckets aside), and their objects.
    #[serde(skip_serializing_if = "is_zero")]
    pub buckets: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub objects: usize,
    /// region → the backup snapshots seeded there.
    #[serde(skip)]
    pub backup_ids: BTreeMap<String, Vec<String>>,
    /// Member account name → id.
    pub member_accounts: BTreeMap<String, String>,
    /// Member account name → what was seeded in it, through its member role.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub member_estates: BTreeMap<String, super::estate::MemberEstate>,
    /// Member accounts seeded without their member role.
    #[serde(skip)]
    pub roleless: Vec<String>,
    /// Role sessions the attacker holds (names only: nothing to create).
    pub stolen_sessions: usize,
    /// Member account name → its root user's credentials, as seeded into
    /// the shim (which answers for root users: moto has none).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub root_users: BTreeMap<String, RootUser>,
    /// The shim's root users, read again after the run.
    #[serde(skip)]
    pub roots: Option<Roots>,
    /// Identity Center, when the scenario seeds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_center: Option<SeededIdentityCenter>,
}

/// The Identity Center instance a scenario seeded, and its users.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SeededIdentityCenter {
    pub instance_arn: String,
    pub identity_store_id: String,
    /// Permission set name → ARN.
    pub permission_sets: BTreeMap<String, String>,
    /// User name → identity store user id.
    pub users: BTreeMap<String, String>,
}

/// The credentials a root user is seeded with, named after its account.
fn root_user(account: &str, r: &crate::tabletop::scenario::RootSeed) -> RootUser {
    let tail = &account[account.len().saturating_sub(6)..];
    RootUser {
        password: r.password,
        access_keys: (1..=r.access_keys)
            .map(|n| format!("AKIAROOT{tail}KEY{n:03}"))
            .collect(),
        certificates: (1..=r.certificates)
            .map(|n| format!("ROOTCERT{tail}{n:02}"))
            .collect(),
        mfa_devices: match r.mfa {
            true => vec![format!(
                "arn:aws:iam::{account}:mfa/root-account-mfa-device"
            )],
            false => Vec::new(),
        },
    }
}

/// Creates the scenario's estate in the emulator.
pub async fn seed(admin: &Admin, scenario: &Scenario) -> Result<Seeded, Error> {
    let s = &scenario.file;
    let iam = admin.iam();
    let mut out = Seeded::default();

    iam.create_user()
        .user_name(&s.executor.user)
        .path(&s.executor.path)
        .send()
        .await
        .map_err(|e| fail("executor user", e))?;
    let key = iam
        .create_access_key()
        .user_name(&s.executor.user)
        .send()
        .await
        .map_err(|e| fail("executor key", e))?;
    let key = key
        .access_key()
        .ok_or_else(|| Error::Emulator("seeding: executor key: none returned".into()))?;
    out.executor_key = key.access_key_id().to_string();
    out.executor_secret = key.secret_access_key().to_string();

    if s.organization {
        let org = admin.org();
        org.create_organization()
            .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
            .send()
            .await
            .map_err(|e| fail("organization", e))?;
        for a in &s.accounts {
            let created = org
                .create_account()
                .account_name(&a.name)
                .email(format!("{}@tabletop.invalid", a.name))
                .send()
                .await
                .map_err(|e| fail(&format!("account {}", a.name), e))?;
            let id = created
                .create_account_status()
                .and_then(|c| c.account_id())
                .unwrap_or_default()
                .to_string();
            if !a.member_role {
                out.roleless.push(id.clone());
            }
            if let Some(r) = &a.root {
                out.root_users.insert(a.name.clone(), root_user(&id, r));
            }
            out.member_accounts.insert(a.name.clone(), id);
        }
        for a in s.accounts.iter().filter(|a| super::estate::has_estate(a)) {
            let Some(id) = out.member_accounts.get(&a.name).cloned() else {
                continue;
            };
            let estate = super::estate::seed_member(admin, a, &id).await?;
            out.member_estates.insert(a.name.clone(), estate);
        }
        if let Some(n) = &s.root_scps {
            fill_root(&org, n.value).await?;
        }
    }

    seed_users(admin, &s.users, &mut out).await?;
    for r in &s.roles {
        iam.create_role()
            .role_name(&r.name)
            .path(&r.path)
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .map_err(|e| fail(&format!("role {}", r.name), e))?;
        if r.admin {
            iam.attach_role_policy()
                .role_name(&r.name)
                .policy_arn(ADMIN_POLICY)
                .send()
                .await
                .map_err(|e| fail(&format!("role {}", r.name), e))?;
        }
        out.roles += 1;
    }

    seed_instances(admin, &s.instances, &mut out).await?;
    seed_backups(admin, &s.backups, &mut out).await?;
    for b in &s.buckets {
        out.objects += super::buckets::seed(admin, b)
            .await
            .map_err(Error::Emulator)?;
        out.buckets += 1;
    }
    for t in &s.trails {
        let bucket = super::buckets::trail_bucket(&t.name);
        super::buckets::create(admin, &t.region, &bucket)
            .await
            .map_err(|e| Error::Emulator(format!("seeding: trail bucket {bucket}: {e}")))?;
        let ct = admin.cloudtrail(&t.region);
        ct.create_trail()
            .name(&t.name)
            .s3_bucket_name(&bucket)
            .send()
            .await
            .map_err(|e| fail(&format!("trail {}", t.name), e))?;
        ct.start_logging()
            .name(&t.name)
            .send()
            .await
            .map_err(|e| fail(&format!("trail {}", t.name), e))?;
        out.trails += 1;
    }
    out.volumes += count_volumes(admin, &out).await;
    out.account = admin
        .iam()
        .get_user()
        .user_name(&s.executor.user)
        .send()
        .await
        .ok()
        .and_then(|u| u.user().map(|u| u.arn().to_string()))
        .and_then(|arn| arn.split(':').nth(4).map(str::to_string))
        .unwrap_or_default();
    if let Some(ic) = &s.identity_center {
        out.identity_center = Some(seed_identity_center(admin, ic, &out.account).await?);
    }
    out.stolen_sessions = s.stolen_sessions.len();
    Ok(out)
}

/// Users with their keys, passwords and AdministratorAccess.
pub(super) async fn seed_users(
    admin: &Admin,
    users: &[Located<UserSeed>],
    out: &mut Seeded,
) -> Result<(), Error> {
    let iam = admin.iam();
    for u in users {
        iam.create_user()
            .user_name(&u.name)
            .path(&u.path)
            .send()
            .await
            .map_err(|e| fail(&format!("user {}", u.name), e))?;
        for _ in 0..u.access_keys {
            let k = iam
                .create_access_key()
                .user_name(&u.name)
                .send()
                .await
                .map_err(|e| fail(&format!("key of {}", u.name), e))?;
            if let Some(k) = k.access_key() {
                out.user_secrets.insert(
                    k.access_key_id().to_string(),
                    k.secret_access_key().to_string(),
                );
                out.user_keys
                    .entry(u.name.clone())
                    .or_default()
                    .push(k.access_key_id().to_string());
            }
            out.access_keys += 1;
        }
        if u.console {
            iam.create_login_profile()
                .user_name(&u.name)
                .password("Tabletop-Passw0rd!")
                .send()
                .await
                .map_err(|e| fail(&format!("console password of {}", u.name), e))?;
        }
        if u.admin {
            iam.attach_user_policy()
                .user_name(&u.name)
                .policy_arn(ADMIN_POLICY)
                .send()
                .await
                .map_err(|e| fail(&format!("admin policy of {}", u.name), e))?;
        }
        out.users += 1;
    }

    Ok(())
}

/// Instance groups with their data volumes, roles, images and flow logs.
pub(super) async fn seed_instances(
    admin: &Admin,
    instances: &[Located<InstanceSeed>],
    out: &mut Seeded,
) -> Result<(), Error> {
    let iam = admin.iam();
    let mut profiles = BTreeMap::new();
    for i in instances {
        let ec2 = admin.ec2(&i.region);
        let mut run = ec2
            .run_instances()
            .image_id(IMAGE)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(i32::from(i.count))
            .max_count(i32::from(i.count));
        if let Some(role) = &i.role {
            if !profiles.contains_key(role) {
                iam.create_instance_profile()
                    .instance_profile_name(role)
                    .send()
                    .await
                    .map_err(|e| fail(&format!("instance profile {role}"), e))?;
                iam.add_role_to_instance_profile()
                    .instance_profile_name(role)
                    .role_name(role)
                    .send()
                    .await
                    .map_err(|e| fail(&format!("instance profile {role}"), e))?;
                profiles.insert(role.clone(), ());
            }
            run = run.iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(role)
                    .build(),
            );
        }
        if let Some(name) = &i.name {
            run = run.tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("Name").value(name).build())
                    .build(),
            );
        }
        let launched = run
            .send()
            .await
            .map_err(|e| fail(&format!("instances in {}", i.region), e))?;
        for inst in launched.instances() {
            let (Some(id), Some(az)) = (
                inst.instance_id(),
                inst.placement().and_then(|p| p.availability_zone()),
            ) else {
                continue;
            };
            for n in 0..i.data_volumes {
                let vol = ec2
                    .create_volume()
                    .availability_zone(az)
                    .size(8)
                    .send()
                    .await
                    .map_err(|e| fail("data volume", e))?;
                let Some(vol_id) = vol.volume_id() else {
                    continue;
                };
                let device = format!("/dev/sd{}", (b'f' + n) as char);
                ec2.attach_volume()
                    .volume_id(vol_id)
                    .instance_id(id)
                    .device(device)
                    .send()
                    .await
                    .map_err(|e| fail("attach data volume", e))?;
            }
            out.instances
                .entry(i.region.clone())
                .or_default()
                .push(id.to_string());
        }
        if let (Some(role), Some(first)) = (
            &i.role,
            launched.instances().first().and_then(|i| i.instance_id()),
        ) {
            let at = (i.region.clone(), first.to_string());
            out.instance_roles.entry(role.clone()).or_insert(at);
        }
        if let Some(first) = launched.instances().first().and_then(|i| i.instance_id()) {
            out.images += super::ec2_moves::seed(admin, i, first)
                .await
                .map_err(|e| Error::Emulator(format!("seeding: {e}")))?;
        }
    }

    Ok(())
}

/// Backup snapshots of each region's volumes, taken before the incident.
pub(super) async fn seed_backups(
    admin: &Admin,
    backups: &[Located<BackupSeed>],
    out: &mut Seeded,
) -> Result<(), Error> {
    for b in backups {
        let ec2 = admin.ec2(&b.region);
        let volumes: Vec<String> = ec2
            .describe_volumes()
            .send()
            .await
            .map_err(|e| fail("volumes", e))?
            .volumes()
            .iter()
            .filter_map(|v| v.volume_id().map(str::to_string))
            .collect();
        for n in 0..usize::from(b.snapshots) {
            let Some(vol) = volumes.get(n % volumes.len().max(1)) else {
                break;
            };
            let made = ec2
                .create_snapshot()
                .volume_id(vol)
                .description("nightly backup (seeded before the incident)")
                .send()
                .await
                .map_err(|e| fail("backup snapshot", e))?;
            if let Some(id) = made.snapshot_id() {
                out.backup_ids
                    .entry(b.region.clone())
                    .or_default()
                    .push(id.to_string());
            }
            out.snapshots += 1;
        }
    }
    Ok(())
}

/// The volumes in the regions with seeded instances.
async fn count_volumes(admin: &Admin, out: &Seeded) -> usize {
    let mut n = 0;
    for region in out.instances.keys() {
        n += admin
            .ec2(region)
            .describe_volumes()
            .send()
            .await
            .map(|v| v.volumes().len())
            .unwrap_or(0);
    }
    n
}

/// Creates the Identity Center users, groups and permission sets, assigns
/// the permission sets in this account and provisions them there (AWS
/// provisions a permission set to an account when it is assigned there;
/// moto waits to be asked).
async fn seed_identity_center(
    admin: &Admin,
    ic: &IdentityCenterSeed,
    account: &str,
) -> Result<SeededIdentityCenter, Error> {
    use aws_sdk_identitystore::types::MemberId;
    use aws_sdk_ssoadmin::types::{PrincipalType, ProvisionTargetType, TargetType};
    let (sso, ids) = (admin.sso_admin(), admin.identitystore());
    let listed = sso
        .list_instances()
        .send()
        .await
        .map_err(|e| fail("Identity Center instance", e))?;
    let instance = listed
        .instances()
        .first()
        .ok_or_else(|| Error::Emulator("seeding: no Identity Center instance".into()))?;
    let missing = |what: &str| Error::Emulator(format!("seeding: Identity Center: no {what}"));
    let mut out = SeededIdentityCenter {
        instance_arn: instance
            .instance_arn()
            .ok_or_else(|| missing("instance ARN"))?
            .to_string(),
        identity_store_id: instance
            .identity_store_id()
            .ok_or_else(|| missing("identity store id"))?
            .to_string(),
        ..SeededIdentityCenter::default()
    };
    let (arn, store) = (out.instance_arn.clone(), out.identity_store_id.clone());
    let wanted: std::collections::BTreeSet<&String> = ic
        .groups
        .iter()
        .flat_map(|g| &g.permission_sets)
        .chain(ic.users.iter().flat_map(|u| &u.permission_sets))
        .collect();
    for name in wanted {
        let made = sso
            .create_permission_set()
            .instance_arn(&arn)
            .name(name)
            // AWS answers an ISO 8601 duration; moto's default is a number.
            .session_duration("PT1H")
            .send()
            .await
            .map_err(|e| fail(&format!("permission set {name}"), e))?;
        let ps = made
            .permission_set()
            .and_then(|p| p.permission_set_arn())
            .ok_or_else(|| missing("permission set ARN"))?;
        out.permission_sets.insert(name.clone(), ps.to_string());
    }
    let assign = |ps: String, kind: PrincipalType, who: String| {
        sso.create_account_assignment()
            .instance_arn(&arn)
            .target_id(account)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(ps)
            .principal_type(kind)
            .principal_id(who)
            .send()
    };
    let mut groups = BTreeMap::new();
    for g in &ic.groups {
        let made = ids
            .create_group()
            .identity_store_id(&store)
            .display_name(&g.name)
            .send()
            .await
            .map_err(|e| fail(&format!("group {}", g.name), e))?;
        let id = made.group_id().to_string();
        for ps in &g.permission_sets {
            let ps = out
                .permission_sets
                .get(ps)
                .cloned()
                .ok_or_else(|| missing("permission set"))?;
            assign(ps, PrincipalType::Group, id.clone())
                .await
                .map_err(|e| fail(&format!("assignment of group {}", g.name), e))?;
        }
        groups.insert(g.name.clone(), id);
    }
    for u in &ic.users {
        let name = aws_sdk_identitystore::types::Name::builder()
            .given_name(&u.name)
            .family_name("Tabletop")
            .build();
        let made = ids
            .create_user()
            .identity_store_id(&store)
            .user_name(&u.name)
            .display_name(&u.name)
            .name(name)
            .send()
            .await
            .map_err(|e| fail(&format!("Identity Center user {}", u.name), e))?;
        let id = made.user_id().to_string();
        for g in &u.groups {
            let group = groups.get(g).cloned().ok_or_else(|| missing("group"))?;
            ids.create_group_membership()
                .identity_store_id(&store)
                .group_id(group)
                .member_id(MemberId::UserId(id.clone()))
                .send()
                .await
                .map_err(|e| fail(&format!("{} in group {g}", u.name), e))?;
        }
        for ps in &u.permission_sets {
            let ps = out
                .permission_sets
                .get(ps)
                .cloned()
                .ok_or_else(|| missing("permission set"))?;
            assign(ps, PrincipalType::User, id.clone())
                .await
                .map_err(|e| fail(&format!("assignment of {}", u.name), e))?;
        }
        out.users.insert(u.name.clone(), id);
    }
    for ps in out.permission_sets.values() {
        sso.provision_permission_set()
            .instance_arn(&arn)
            .permission_set_arn(ps)
            .target_type(ProvisionTargetType::AllProvisionedAccounts)
            .send()
            .await
            .map_err(|e| fail("provisioning", e))?;
    }
    Ok(out)
}

/// Attaches allow-all SCPs to the root until it holds `total`, the default
/// `FullAWSAccess` counted: a root someone already filled to AWS's quota.
async fn fill_root(org: &aws_sdk_organizations::Client, total: u8) -> Result<(), Error> {
    let roots = org.list_roots().send().await.map_err(|e| fail("root", e))?;
    let root = roots
        .roots()
        .first()
        .map(|r| r.id().unwrap_or_default().to_string())
        .unwrap_or_default();
    for n in 2..=total {
        let name = format!("legacy-guardrail-{n}");
        let made = org
            .create_policy()
            .name(&name)
            .description("seeded: a guardrail that predates the incident")
            .r#type(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
            .content(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
            .send()
            .await
            .map_err(|e| fail(&name, e))?;
        let id = made
            .policy()
            .and_then(|p| p.policy_summary())
            .and_then(|p| p.id())
            .unwrap_or_default()
            .to_string();
        org.attach_policy()
            .policy_id(id)
            .target_id(&root)
            .send()
            .await
            .map_err(|e| fail(&name, e))?;
    }
    Ok(())
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
