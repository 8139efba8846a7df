//! What a scenario seeded in member accounts, read back there at the end:
//! keys still active, passwords still set, instances terminated or still on
//! the network, backups deleted. An account the run never reached is named
//! once, by the account-level exposure, not resource by resource.

use super::exposure::isolated;
use super::{Exposed, ExposureKind, RunView};
use crate::tabletop::admin::Admin;
use crate::tabletop::estate::MemberEstate;
use crate::tabletop::members::MEMBER_ROLE;
use crate::tabletop::seed::Seeded;

/// The seeded estate of every member account the run reached.
pub async fn member_estates(admin: &Admin, seeded: &Seeded, run: &RunView) -> Vec<Exposed> {
    let mut out = Vec::new();
    for (name, estate) in &seeded.member_estates {
        let reached = run
            .accounts
            .iter()
            .any(|a| a.account == estate.account && a.error.is_none());
        if !reached {
            continue;
        }
        let place = format!("in account {} ({name})", estate.account);
        match admin.in_account(&estate.account, MEMBER_ROLE).await {
            Ok(member) => out.extend(estate_left(&member, estate, &place, run).await),
            Err(e) => out.push(Exposed {
                kind: ExposureKind::OutOfReach,
                what: format!("the seeded estate {place}"),
                why: format!("the tabletop could not read it back: {e}"),
            }),
        }
    }
    out
}

/// What is left open or lost of one account's estate. What the run's own
/// read-back already names is not named twice.
async fn estate_left(
    member: &Admin,
    estate: &MemberEstate,
    place: &str,
    run: &RunView,
) -> Vec<Exposed> {
    let named_by_run = |id: &str| run.not_contained.iter().flatten().any(|n| n.contains(id));
    let mut out = Vec::new();
    let iam = member.iam();
    for user in estate.user_keys.keys() {
        let keys = iam.list_access_keys().user_name(user).send().await;
        let active: Vec<String> = match &keys {
            Ok(k) => k
                .access_key_metadata()
                .iter()
                .filter(|k| k.status().map(|s| s.as_str()) == Some("Active"))
                .filter_map(|k| k.access_key_id().map(str::to_string))
                .collect(),
            Err(_) => vec!["(its keys could not be read)".into()],
        };
        for key in active.iter().filter(|k| !named_by_run(k)) {
            out.push(Exposed {
                kind: ExposureKind::Open,
                what: format!("access key {key} of user {user} {place}"),
                why: "still active at the end".into(),
            });
        }
    }
    for user in &estate.console_users {
        let password = iam.get_login_profile().user_name(user).send().await;
        let gone = password.as_ref().is_err_and(|e| {
            e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception())
        });
        if !gone {
            out.push(Exposed {
                kind: ExposureKind::Open,
                what: format!("console password of user {user} {place}"),
                why: "still set at the end (or unreadable)".into(),
            });
        }
    }
    for (region, ids) in &estate.instances {
        let ec2 = member.ec2(region);
        for id in ids.iter().filter(|id| !named_by_run(id)) {
            let state = ec2
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .ok()
                .and_then(|d| {
                    d.reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .find_map(|i| i.state().and_then(|s| s.name()).cloned())
                });
            let (kind, why) = match state {
                Some(aws_sdk_ec2::types::InstanceStateName::Terminated) => (
                    ExposureKind::Lost,
                    "terminated: its disks and memory are gone".to_string(),
                ),
                _ if isolated(member, region, id).await => continue,
                _ => (ExposureKind::Open, "not isolated at the end".to_string()),
            };
            out.push(Exposed {
                kind,
                what: format!("instance {id} ({region}) {place}"),
                why,
            });
        }
    }
    for (region, ids) in &estate.snapshots {
        let ec2 = member.ec2(region);
        let owned = ec2.describe_snapshots().owner_ids("self").send().await;
        let present: Vec<&str> = match &owned {
            Ok(d) => d
                .snapshots()
                .iter()
                .filter_map(|s| s.snapshot_id())
                .collect(),
            Err(e) => {
                out.push(Exposed {
                    kind: ExposureKind::OutOfReach,
                    what: format!("backup snapshots ({region}) {place}"),
                    why: format!(
                        "the tabletop could not read them back: {}",
                        crate::tabletop::moves::error_text(e)
                    ),
                });
                continue;
            }
        };
        for id in ids.iter().filter(|id| !present.contains(&id.as_str())) {
            out.push(Exposed {
                kind: ExposureKind::Lost,
                what: format!("backup snapshot {id} ({region}) {place}"),
                why: "deleted: the backup is gone".into(),
            });
        }
    }
    out
}
