//! Judgments of the attacker's moves on images, instances' user data and
//! flow logs, read back from the emulator.

use super::exposure::isolated;
use super::{Exposed, ExposureKind, secs};
use crate::tabletop::admin::Admin;
use crate::tabletop::moves::MoveRecord;
use crate::tabletop::scenario::MoveKind;
use crate::tabletop::seed::ATTACKER_ACCOUNT;

/// What the image, user-data and flow-log moves that succeeded left behind.
pub async fn instance_moves(admin: &Admin, moves: &[MoveRecord]) -> Vec<Exposed> {
    let mut out = Vec::new();
    for m in moves.iter().filter(|m| m.succeeded && m.account.is_none()) {
        let region = m.subject.as_str();
        let ec2 = admin.ec2(region);
        let when = secs(m.at_ms);
        match m.action {
            MoveKind::ShareImages => {
                for id in &m.resources {
                    let attr = ec2
                        .describe_image_attribute()
                        .image_id(id)
                        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
                        .send()
                        .await;
                    let shared = attr.is_ok_and(|a| {
                        a.launch_permissions()
                            .iter()
                            .any(|p| p.user_id() == Some(ATTACKER_ACCOUNT))
                    });
                    if shared {
                        out.push(Exposed {
                            kind: ExposureKind::Open,
                            what: format!("image {id} ({region})"),
                            why: format!(
                                "shared with the attacker's account {ATTACKER_ACCOUNT} at {when}, and still is: ec2.unshare takes such grants back (a copy already made is beyond reach)"
                            ),
                        });
                    }
                }
            }
            MoveKind::DeregisterImages => {
                for id in &m.resources {
                    // CreateImage's snapshots say so in their description.
                    let marker = format!("for {id}");
                    let snaps = ec2.describe_snapshots().owner_ids("self").send().await;
                    let kept: Vec<String> = snaps
                        .iter()
                        .flat_map(|s| s.snapshots())
                        .filter(|s| s.description().is_some_and(|d| d.ends_with(&marker)))
                        .filter_map(|s| s.snapshot_id().map(str::to_string))
                        .collect();
                    let (kind, why) = match kept.is_empty() {
                        true => (
                            ExposureKind::Lost,
                            format!(
                                "deregistered by the attacker at {when}, and its snapshots are gone too: the image cannot be registered again"
                            ),
                        ),
                        false => (
                            ExposureKind::Leftover,
                            format!(
                                "deregistered by the attacker at {when}; its snapshots remain ({}): register it again from them (RegisterImage), and keep them locked (ec2.lock_snapshots)",
                                kept.join(", ")
                            ),
                        ),
                    };
                    out.push(Exposed {
                        kind,
                        what: format!("image {id} ({region})"),
                        why,
                    });
                }
            }
            MoveKind::ModifyUserData => {
                for id in &m.resources {
                    let cut_off = match isolated(admin, region, id).await {
                        true => "it ran cut off from the network (isolated)",
                        false => "it ran on the network: isolate the instance",
                    };
                    out.push(Exposed {
                        kind: ExposureKind::Lost,
                        what: format!("instance {id} ({region})"),
                        why: format!(
                            "stopped by the attacker at {when} to rewrite its user data, then started: its memory is gone, and the attacker's script runs at every start; {cut_off}, and restore its user data. ec2.enable_termination_protection, run before, sets stop protection, which refuses the stop (lifting it takes ec2:ModifyInstanceAttribute: cut the principal too)"
                        ),
                    });
                }
            }
            MoveKind::GetPasswordData => {
                for id in &m.resources {
                    out.push(Exposed {
                        kind: ExposureKind::Open,
                        what: format!("instance {id} ({region})"),
                        why: format!(
                            "its Windows administrator password data was read at {when}: the attacker can decrypt it with the key pair's private key, if it holds that too: change the password"
                        ),
                    });
                }
            }
            MoveKind::RemoveFlowLogs => {
                let left = ec2.describe_flow_logs().send().await;
                if left.is_ok_and(|l| l.flow_logs().is_empty()) {
                    out.push(Exposed {
                        kind: ExposureKind::Lost,
                        what: format!("VPC flow logs ({region})"),
                        why: format!(
                            "deleted by the attacker at {when} ({}): the network traffic since is unrecorded. In member accounts the `preserve` SCP or the freeze denies ec2:DeleteFlowLogs beforehand; here only cutting the attacker's credentials first does: create them again",
                            m.resources.join(", ")
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    out
}
