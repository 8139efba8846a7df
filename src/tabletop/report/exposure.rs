//! What the attacker can still do after a tabletop run, read straight from
//! the emulator rather than from the tool's own report.

use super::*;
use crate::actions::iam::{QUARANTINE_POLICY_NAME as QUARANTINE, REVOKE_POLICY_NAME as REVOKE};
use crate::tabletop::seed::{ATTACKER_ACCOUNT, shared_with_attacker};

/// Reads the emulator back and lists what stayed exposed.
pub async fn exposures(
    admin: &Admin,
    scenario: &Scenario,
    seeded: &Seeded,
    run: &RunView,
    moves: &[MoveRecord],
    timeline: &[StepTime],
    emulator_gaps: &[usize],
) -> Vec<Exposed> {
    let mut out = super::identities::identities(admin, scenario, seeded).await;
    let actions: Vec<&str> = timeline.iter().map(|s| s.action.as_str()).collect();
    if scenario.file.organization && actions.contains(&"org.apply_scp") {
        out.push(Exposed {
            kind: ExposureKind::OutOfReach,
            what: format!("account {} (the management account)", seeded.account),
            why: "SCPs never restrict the management account: its users and roles are held only by the IAM steps, and whoever holds its root user is not held at all".into(),
        });
    }
    let attacker_resources: Vec<&String> = moves
        .iter()
        .filter(|m| m.succeeded)
        .flat_map(|m| &m.resources)
        .collect();
    let scp = timeline
        .iter()
        .find(|t| t.action == "org.apply_scp" && t.status == "done");
    for (name, id) in &seeded.member_accounts {
        let fanned = run.accounts.iter().find(|a| a.account == *id);
        if let Some(a) = fanned {
            // The run reached into it: its targets are in the run's own results.
            if let Some(e) = &a.error {
                out.push(Exposed {
                    kind: ExposureKind::Open,
                    what: format!("account {id} ({name})"),
                    why: format!("member account the run could not reach: {e}"),
                });
            }
            continue;
        }
        let why = match scp {
            Some(t) => format!(
                "member account: the deny-all SCP has bound it since {}, but this run's IAM and EC2 steps ran only in the management account, so its keys, sessions and instances are untouched",
                secs(t.end_ms)
            ),
            None => "member account: nothing in this playbook reaches it (no SCP step; the IAM and EC2 steps ran only in the management account)".to_string(),
        };
        out.push(Exposed {
            kind: ExposureKind::Open,
            what: format!("account {id} ({name})"),
            why,
        });
    }
    for n in run.not_contained.iter().flatten() {
        // The attacker's own work is listed below, with when and how.
        if attacker_resources.iter().any(|r| n.contains(r.as_str())) {
            continue;
        }
        let gap = emulator_gaps
            .iter()
            .find(|i| n.starts_with(&format!("step {} (", *i + 1)));
        let (kind, what, why) = match gap {
            Some(i) => (
                ExposureKind::OutOfReach,
                format!(
                    "step {} ({})",
                    i + 1,
                    timeline
                        .iter()
                        .find(|t| t.index == *i)
                        .map_or("", |t| t.name.as_str())
                ),
                "not done here: the emulator lacks a call this step needs (AWS has it)".to_string(),
            ),
            None => (
                ExposureKind::Open,
                n.chars().take(240).collect(),
                "read back after the run: not contained".to_string(),
            ),
        };
        out.push(Exposed { kind, what, why });
    }
    out.extend(super::member_moves::member_moves(admin, seeded, moves, timeline).await);
    out.extend(super::member_estate::member_estates(admin, seeded, run).await);
    out.extend(super::buckets::bucket_moves(admin, scenario, moves, timeline).await);
    out.extend(super::instances::instance_moves(admin, moves).await);
    let iam = admin.iam();
    // Moves in member accounts are judged above.
    for m in moves.iter().filter(|m| m.succeeded && m.account.is_none()) {
        let when = secs(m.at_ms);
        match m.action {
            MoveKind::CreateAccessKey | MoveKind::ReactivateAccessKeys => {
                let user = m.subject.trim_start_matches("user ");
                let keys = iam.list_access_keys().user_name(user).send().await;
                let active: Vec<String> = keys
                    .iter()
                    .flat_map(|k| k.access_key_metadata())
                    .filter(|k| k.status().map(|s| s.as_str()) == Some("Active"))
                    .filter_map(|k| k.access_key_id().map(str::to_string))
                    .filter(|id| m.resources.contains(id))
                    .collect();
                let key_step = timeline
                    .iter()
                    .find(|t| t.action == "iam.deactivate_access_keys")
                    .map(|t| (t.start_ms, t.end_ms));
                for id in active {
                    let verb = match m.action {
                        MoveKind::CreateAccessKey => "created",
                        _ => "re-activated",
                    };
                    let why = match key_step {
                        Some((start, _)) if m.at_ms < start => format!(
                            "{verb} by the attacker at {when}, before the key step, which did not select it"
                        ),
                        Some((_, end)) if m.at_ms <= end => format!(
                            "{verb} by the attacker at {when}, while the key step ran, after it had listed {user}'s keys"
                        ),
                        Some(_) => format!("{verb} by the attacker at {when}, after the key step"),
                        None => format!(
                            "{verb} by the attacker at {when}; the playbook has no key step"
                        ),
                    };
                    out.push(Exposed {
                        kind: ExposureKind::Open,
                        what: format!("access key {id} of user {user}"),
                        why: format!("{why}; `--hold` or a second run would catch it"),
                    });
                }
            }
            MoveKind::CreateAdminUser => {
                let user = m.subject.trim_start_matches("user ");
                let (kind, why) = match cut_off(admin, &m.subject).await {
                    true => (
                        ExposureKind::Leftover,
                        format!(
                            "an administrator made by the attacker at {when}; its key and sessions are cut: delete the user after the investigation"
                        ),
                    ),
                    false => (
                        ExposureKind::Open,
                        format!(
                            "an administrator made by the attacker at {when}, still able to act (an active key, or sessions not revoked); `--hold` or a second run would catch it"
                        ),
                    ),
                };
                out.push(Exposed {
                    kind,
                    what: format!("administrator user {user}"),
                    why,
                });
            }
            MoveKind::FederationToken => {
                out.extend(super::persistence::federation_token(admin, m, &when).await);
            }
            MoveKind::DeleteTrail => {
                let (_, region) = trail_of(scenario, &m.subject);
                out.extend(super::persistence::deleted_trail(admin, m, region, &when).await);
            }
            MoveKind::BackdoorRole | MoveKind::CreateBackdoorRole => {
                let role = m.subject.trim_start_matches("role ");
                let trust = match iam.get_role().role_name(role).send().await {
                    Ok(r) => r
                        .role()
                        .and_then(|r| r.assume_role_policy_document())
                        .map(crate::actions::iam::url_decode),
                    // Unread is not safe.
                    Err(_) => Some(ATTACKER_ACCOUNT.to_string()),
                };
                if !trust.is_some_and(|t| t.contains(ATTACKER_ACCOUNT)) {
                    continue;
                }
                // The management account's roles are bound by no SCP or RCP:
                // only a deny on the role itself holds the sessions the
                // attacker can mint from outside.
                let held = has_inline(admin, "role", role, QUARANTINE).await;
                let opened = match m.action {
                    MoveKind::CreateBackdoorRole => "made by the attacker, trusting",
                    _ => "its trust opened to",
                };
                let (kind, why) = match held {
                    true => (
                        ExposureKind::Leftover,
                        format!(
                            "{opened} the attacker's account {ATTACKER_ACCOUNT} at {when}; the role is quarantined: restore its trust policy after the investigation"
                        ),
                    ),
                    false => (
                        ExposureKind::Open,
                        format!(
                            "{opened} the attacker's account {ATTACKER_ACCOUNT} at {when}: the attacker mints new sessions from outside, which no revocation by issue time ends; quarantine the role (iam.quarantine_principals) and restore its trust policy"
                        ),
                    ),
                };
                out.push(Exposed {
                    kind,
                    what: format!("role {role}"),
                    why,
                });
            }
            MoveKind::OpenPort22 => {
                // A group open to the internet matters through the
                // instances still in it; isolation moves them out.
                let ec2 = admin.ec2(&m.subject);
                let found = ec2.describe_instances().send().await;
                let Ok(found) = found else {
                    // Unread is not safe: each opened group stays open.
                    for group in &m.resources {
                        out.push(Exposed {
                            kind: ExposureKind::Open,
                            what: format!("security group {group} ({})", m.subject),
                            why: format!("port 22 opened to the internet by the attacker at {when}; its instances could not be read back"),
                        });
                    }
                    continue;
                };
                for group in &m.resources {
                    let exposed: Vec<String> = found
                        .reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .filter(|i| crate::tabletop::moves::alive(i))
                        .filter(|i| {
                            i.network_interfaces()
                                .iter()
                                .flat_map(|n| n.groups())
                                .any(|g| g.group_id() == Some(group.as_str()))
                        })
                        .filter_map(|i| i.instance_id().map(str::to_string))
                        .collect();
                    let (kind, why) = if exposed.is_empty() {
                        (
                            ExposureKind::Leftover,
                            format!(
                                "port 22 opened to the internet by the attacker at {when}; no instance is in the group any more (isolated): close the rule after the investigation"
                            ),
                        )
                    } else {
                        (
                            ExposureKind::Open,
                            format!(
                                "port 22 opened to the internet by the attacker at {when}, and {} still in it: ec2.isolate_instances moves them out",
                                exposed.join(", ")
                            ),
                        )
                    };
                    out.push(Exposed {
                        kind,
                        what: format!("security group {group} ({})", m.subject),
                        why,
                    });
                }
            }
            MoveKind::CreateLoginProfile => {
                let user = m.subject.trim_start_matches("user ");
                let still = has_password(admin, user).await;
                let step = timeline
                    .iter()
                    .find(|t| t.action == "iam.delete_login_profiles");
                if still {
                    let why = match step {
                        Some(t) if m.at_ms >= t.start_ms => format!(
                            "console password set by the attacker at {when}, after the password step began; `--hold` or a second run would catch it"
                        ),
                        Some(_) => format!(
                            "console password set by the attacker at {when}, before the password step, which did not select {user}"
                        ),
                        None => format!(
                            "console password set by the attacker at {when}; the playbook has no password step (iam.delete_login_profiles)"
                        ),
                    };
                    out.push(Exposed {
                        kind: ExposureKind::Open,
                        what: format!("console password of user {user}"),
                        why,
                    });
                }
            }
            MoveKind::AttachAdminPolicy => {
                let attached = match m.subject.split_once(' ') {
                    Some(("role", role)) => iam
                        .list_attached_role_policies()
                        .role_name(role)
                        .send()
                        .await
                        .map(|p| {
                            p.attached_policies()
                                .iter()
                                .any(|p| p.policy_name() == Some("AdministratorAccess"))
                        })
                        .unwrap_or(false),
                    Some((_, user)) => iam
                        .list_attached_user_policies()
                        .user_name(user)
                        .send()
                        .await
                        .map(|p| {
                            p.attached_policies()
                                .iter()
                                .any(|p| p.policy_name() == Some("AdministratorAccess"))
                        })
                        .unwrap_or(false),
                    None => false,
                };
                if attached {
                    // Harmless only while nobody can act as the principal.
                    let (kind, why) = if cut_off(admin, &m.subject).await {
                        (
                            ExposureKind::Leftover,
                            format!(
                                "attached by the attacker at {when}: breakglass cuts credentials and sessions but does not detach policies; remove it after the investigation"
                            ),
                        )
                    } else {
                        (
                            ExposureKind::Open,
                            format!(
                                "attached by the attacker at {when}, and {} can still act with it (an active key, a console password, or new role sessions): quarantine it (iam.quarantine_principals)",
                                m.subject
                            ),
                        )
                    };
                    out.push(Exposed {
                        kind,
                        what: format!("AdministratorAccess on {}", m.subject),
                        why,
                    });
                }
            }
            MoveKind::DeleteSnapshots => {
                let lock_items: Vec<String> = steps_of(run, "ec2.lock_snapshots")
                    .flat_map(|s| &s.items)
                    .map(|i| serde_json::to_string(&i.target).unwrap_or_default())
                    .collect();
                // A snapshot deleted before any lock step began never met one.
                let first_lock = timeline
                    .iter()
                    .filter(|t| t.action == "ec2.lock_snapshots")
                    .map(|t| t.start_ms)
                    .min();
                for id in &m.resources {
                    let why = if lock_items.iter().any(|t| t.contains(id.as_str())) {
                        format!(
                            "evidence lost: deleted by the attacker at {when}, before the run locked it"
                        )
                    } else if let Some(start) = first_lock.filter(|s| m.at_ms < *s) {
                        format!(
                            "evidence lost: deleted by the attacker at {when}, before the first lock step began (at {})",
                            secs(start)
                        )
                    } else {
                        format!(
                            "deleted by the attacker at {when}: no lock step of the playbook selects it"
                        )
                    };
                    out.push(Exposed {
                        kind: ExposureKind::Lost,
                        what: format!("snapshot {id} ({})", m.subject),
                        why,
                    });
                }
            }
            MoveKind::TerminateInstances => {
                let ec2 = admin.ec2(&m.subject);
                for id in &m.resources {
                    let launched = moves
                        .iter()
                        .find(|l| l.action == MoveKind::LaunchInstance && l.resources.contains(id));
                    if let Some(l) = launched {
                        out.push(Exposed {
                            kind: ExposureKind::Lost,
                            what: format!("instance {id} ({})", m.subject),
                            why: format!(
                                "the attacker's own instance (launched at {}), terminated at {when}: whatever ran on it is gone",
                                secs(l.at_ms)
                            ),
                        });
                        continue;
                    }
                    let saved = ec2
                        .describe_snapshots()
                        .owner_ids("self")
                        .filters(
                            aws_sdk_ec2::types::Filter::builder()
                                .name(format!("tag:{SOURCE_TAG}"))
                                .values(id)
                                .build(),
                        )
                        .send()
                        .await
                        .map(|s| s.snapshots().len())
                        .unwrap_or(0);
                    let (kind, why) = if saved > 0 {
                        (
                            ExposureKind::Leftover,
                            format!(
                                "terminated by the attacker at {when}; its disks were snapshotted first ({saved} snapshots)"
                            ),
                        )
                    } else {
                        (
                            ExposureKind::Lost,
                            format!(
                                "terminated by the attacker at {when} before its disks were snapshotted: evidence lost"
                            ),
                        )
                    };
                    out.push(Exposed {
                        kind,
                        what: format!("instance {id} ({})", m.subject),
                        why,
                    });
                }
            }
            MoveKind::StopLogging => {
                let (trail, region) = trail_of(scenario, &m.subject);
                let logging = admin
                    .cloudtrail(region)
                    .get_trail_status()
                    .name(trail)
                    .send()
                    .await
                    .ok()
                    .and_then(|s| s.is_logging());
                if logging != Some(true) {
                    let remedy = if actions.contains(&"cloudtrail.ensure_logging") {
                        "cloudtrail.ensure_logging did not restart it (see its step), or the attacker stopped it again after: run with --hold to keep it on"
                    } else {
                        "no step of this playbook restarts it: add cloudtrail.ensure_logging right after the freeze"
                    };
                    out.push(Exposed {
                        kind: ExposureKind::Open,
                        what: format!("CloudTrail trail {trail} ({region})"),
                        why: format!(
                            "logging stopped by the attacker at {when}: what happened since is unrecorded; {remedy}"
                        ),
                    });
                }
            }
            MoveKind::MuteTrail => {
                let (trail, region) = trail_of(scenario, &m.subject);
                let selectors = admin
                    .cloudtrail(region)
                    .get_event_selectors()
                    .trail_name(trail)
                    .send()
                    .await;
                // Logged again when any basic selector takes every
                // management event (the advanced form is not what this move
                // writes).
                let logged = selectors.is_ok_and(|s| {
                    s.event_selectors().iter().any(|e| {
                        e.include_management_events() != Some(false)
                            && e.read_write_type()
                                .is_none_or(|r| *r == aws_sdk_cloudtrail::types::ReadWriteType::All)
                            && e.exclude_management_event_sources().is_empty()
                    })
                });
                if !logged {
                    out.push(Exposed {
                        kind: ExposureKind::Open,
                        what: format!("CloudTrail trail {trail} ({region})"),
                        why: format!(
                            "its event selectors muted every management event at {when}: it logs, and records nothing the attacker does; cloudtrail.ensure_logging (management_events) adds them back"
                        ),
                    });
                }
            }
            MoveKind::ShareSnapshots => {
                for id in &m.resources {
                    // A snapshot gone since (deleted by a later move) shares nothing.
                    let shared = shared_with_attacker(admin, &m.subject, id).await;
                    if shared == Some(true) {
                        out.push(Exposed {
                            kind: ExposureKind::Open,
                            what: format!("snapshot {id} ({})", m.subject),
                            why: format!(
                                "shared with the attacker's account {} at {when}, and still is: ec2.unshare takes such grants back",
                                ATTACKER_ACCOUNT
                            ),
                        });
                    }
                }
            }
            // Judged above, in their own modules.
            MoveKind::LeaveOrganization
            | MoveKind::S3RansomwareBatch
            | MoveKind::S3RansomwareIndividual
            | MoveKind::S3RansomwareSseC
            | MoveKind::BackdoorBucketPolicy
            | MoveKind::ExpireTrailLogs
            | MoveKind::ShareImages
            | MoveKind::DeregisterImages
            | MoveKind::GetPasswordData
            | MoveKind::ModifyUserData
            | MoveKind::DownloadUserData
            | MoveKind::RemoveFlowLogs => {}
            MoveKind::ConsoleLogin => {
                out.extend(super::persistence::console_session(admin, m, &when).await);
            }
            MoveKind::LaunchInstance => {
                for id in &m.resources {
                    let terminated_later = moves.iter().any(|t| {
                        t.action == MoveKind::TerminateInstances && t.resources.contains(id)
                    });
                    if !terminated_later && !isolated(admin, &m.subject, id).await {
                        out.push(Exposed {
                            kind: ExposureKind::Open,
                            what: format!("instance {id} ({})", m.subject),
                            why: format!("launched by the attacker at {when}, after the isolation step found its targets"),
                        });
                    }
                }
            }
        }
    }
    if actions.contains(&"ec2.isolate_instances") {
        let terminated: Vec<&String> = moves
            .iter()
            .filter(|m| m.action == MoveKind::TerminateInstances)
            .flat_map(|m| &m.resources)
            .collect();
        let ran = steps_of(run, "ec2.isolate_instances").any(|s| s.status != StepStatus::NotRun);
        let items: Vec<&Item> = steps_of(run, "ec2.isolate_instances")
            .flat_map(|s| &s.items)
            .collect();
        let isolate_regions: Vec<&str> = items
            .iter()
            .filter_map(|i| i.target.scope.region.as_deref())
            .collect();
        for (region, ids) in &seeded.instances {
            for id in ids.iter().filter(|id| !terminated.contains(id)) {
                if isolated(admin, region, id).await {
                    continue;
                }
                let targeted = items.iter().any(|i| {
                    serde_json::to_string(&i.target)
                        .unwrap_or_default()
                        .contains(id.as_str())
                });
                // An instance the playbook leaves out is its choice (a
                // bystander, say): named, but not counted as a loss.
                let (kind, why) = if !ran {
                    let why = "not isolated: the isolation step did not run";
                    (ExposureKind::Open, why.to_string())
                } else if targeted {
                    let why = "not isolated: see the isolation step's outcome";
                    (ExposureKind::Open, why.to_string())
                } else if items.is_empty() {
                    // A selector that matched nothing is no choice to respect.
                    let why = "not isolated: the isolation step selected no instance at all";
                    (ExposureKind::Open, why.to_string())
                } else if !isolate_regions.contains(&region.as_str()) {
                    let why = format!("in {region}, a region the playbook did not select");
                    (ExposureKind::NotSelected, why)
                } else {
                    let why = "not among the playbook's targets".to_string();
                    (ExposureKind::NotSelected, why)
                };
                out.push(Exposed {
                    kind,
                    what: format!("instance {id} ({region})"),
                    why,
                });
            }
        }
    }
    if actions.contains(&"iam.revoke_role_sessions") {
        for r in &scenario.file.roles {
            if r.path.starts_with("/aws-service-role/") {
                out.push(Exposed {
                    kind: ExposureKind::OutOfReach,
                    what: format!("role {}", r.name),
                    why: "service-linked role: AWS owns it and refuses changes, so its sessions are not revoked".into(),
                });
            }
        }
    }
    out
}

/// Whether nobody can act as `subject` (`user NAME`, `role NAME`): either
/// under the quarantine's deny-all, or a user with no active key, no
/// console password and its sessions revoked (GetSessionToken and console
/// sessions outlive the key and the password). A role's sessions revoked by
/// issue time do not count: new ones would still work. A read that fails
/// counts as not cut off.
/// A trail move's trail (`trail NAME`) and the region it lives in.
fn trail_of<'a>(scenario: &'a Scenario, subject: &'a str) -> (&'a str, &'a str) {
    let trail = subject.trim_start_matches("trail ");
    let region = scenario
        .file
        .trails
        .iter()
        .find(|t| t.name == trail)
        .map_or("us-east-1", |t| t.region.as_str());
    (trail, region)
}

async fn cut_off(admin: &Admin, subject: &str) -> bool {
    match subject.split_once(' ') {
        Some(("role", role)) => has_inline(admin, "role", role, QUARANTINE).await,
        Some((_, user)) => {
            let active_key = admin
                .iam()
                .list_access_keys()
                .user_name(user)
                .send()
                .await
                .map(|k| {
                    k.access_key_metadata()
                        .iter()
                        .any(|k| k.status().map(|s| s.as_str()) == Some("Active"))
                })
                .unwrap_or(true);
            has_inline(admin, "user", user, QUARANTINE).await
                || (!active_key
                    && !has_password(admin, user).await
                    && has_inline(admin, "user", user, REVOKE).await)
        }
        None => false,
    }
}

/// Whether `kind` (`user` or `role`) `name` holds the inline policy `policy`.
async fn has_inline(admin: &Admin, kind: &str, name: &str, policy: &str) -> bool {
    let iam = admin.iam();
    match kind {
        "role" => {
            let got = iam.get_role_policy().role_name(name).policy_name(policy);
            got.send().await.is_ok()
        }
        _ => {
            let got = iam.get_user_policy().user_name(name).policy_name(policy);
            got.send().await.is_ok()
        }
    }
}

/// Whether `user` has a console password: only IAM's NoSuchEntity says it
/// has none, so a read that fails counts as one.
async fn has_password(admin: &Admin, user: &str) -> bool {
    match admin.iam().get_login_profile().user_name(user).send().await {
        Ok(_) => true,
        Err(e) => !e
            .as_service_error()
            .is_some_and(|s| s.is_no_such_entity_exception()),
    }
}

pub(super) async fn isolated(admin: &Admin, region: &str, id: &str) -> bool {
    let Ok(d) = admin
        .ec2(region)
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
    else {
        return false;
    };
    d.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.network_interfaces())
        .all(|n| {
            n.groups()
                .iter()
                .all(|g| g.group_name() == Some(QUARANTINE_GROUP))
        })
}
