//! Judgments of the attacker's moves in member accounts, read back from the
//! emulator and, for what the organization's SCPs bind, evaluated against
//! the SCPs over the account as they stand at the end.

use super::exposure::isolated;
use super::{Exposed, ExposureKind, StepTime, secs};
use crate::tabletop::admin::Admin;
use crate::tabletop::evaluate::Request;
use crate::tabletop::members::{MEMBER_ROLE, bound, rcp_bound, rcps_of, scps_of};
use crate::tabletop::moves::MoveRecord;
use crate::tabletop::scenario::MoveKind;
use crate::tabletop::seed::ATTACKER_ACCOUNT;
use crate::tabletop::seed::Seeded;

/// What the member-account moves that succeeded left behind.
pub async fn member_moves(
    admin: &Admin,
    seeded: &Seeded,
    moves: &[MoveRecord],
    timeline: &[StepTime],
) -> Vec<Exposed> {
    let scp = timeline
        .iter()
        .find(|t| t.action == "org.apply_scp" && t.status == "done");
    let mut out = Vec::new();
    for m in moves.iter().filter(|m| m.succeeded) {
        let Some(name) = &m.account else { continue };
        let Some(account) = seeded.member_accounts.get(name) else {
            continue;
        };
        let when = secs(m.at_ms);
        let freeze = match scp {
            Some(t) if t.end_ms > m.at_ms => {
                format!("the SCP step ended at {}, after the move", secs(t.end_ms))
            }
            Some(_) => "the move came after the SCP step, which did not bind it".into(),
            None => "no step of this playbook attaches an SCP".into(),
        };
        match m.action {
            MoveKind::LeaveOrganization => {
                let still_in = admin
                    .org()
                    .describe_account()
                    .account_id(account)
                    .send()
                    .await
                    .is_ok();
                if !still_in {
                    out.push(Exposed {
                        kind: ExposureKind::Lost,
                        what: format!("account {account} ({name})"),
                        why: format!(
                            "left the organization at {when}: no SCP binds it any more and the organization no longer reaches it. The freeze and the `preserve` SCP deny organizations:LeaveOrganization, but only once attached: {freeze}"
                        ),
                    });
                }
            }
            MoveKind::CreateAdminUser | MoveKind::CreateBackdoorRole => {
                let (kind, principal) = match m.action {
                    MoveKind::CreateAdminUser => ("user", m.subject.trim_start_matches("user ")),
                    _ => ("role", m.subject.trim_start_matches("role ")),
                };
                let arn = format!("arn:aws:iam::{account}:{kind}/{principal}");
                let request = Request {
                    action: "iam:CreateAccessKey".into(),
                    resource: "*".into(),
                    principal: arn.clone(),
                    ..Request::default()
                }
                .with("aws:PrincipalArn", arn)
                .with("aws:PrincipalAccount", account.clone());
                let held = match scps_of(admin, account).await {
                    Ok(scps) => bound(&request, scps).is_some(),
                    Err(_) => false,
                };
                // The run may have fanned out to the account and cut it.
                let cut = match admin.in_account(account, MEMBER_ROLE).await {
                    Ok(member) => cut_in_member(&member, kind, principal).await,
                    Err(_) => false,
                };
                let (exposure, why) = if held {
                    (
                        ExposureKind::Leftover,
                        format!(
                            "made by the attacker in account {name} at {when} ({freeze}); the SCP now denies it everything, but it works again the moment the SCP is lifted: delete it first"
                        ),
                    )
                } else if cut {
                    (
                        ExposureKind::Leftover,
                        format!(
                            "made by the attacker in account {name} at {when}; the run cut it (no active key, or quarantined): delete it after the investigation"
                        ),
                    )
                } else {
                    (
                        ExposureKind::Open,
                        format!(
                            "made by the attacker in account {name} at {when}, with AdministratorAccess, and nothing binds it: {freeze}"
                        ),
                    )
                };
                out.push(Exposed {
                    kind: exposure,
                    what: format!("{kind} {principal} in account {account} ({name})"),
                    why,
                });
            }
            MoveKind::BackdoorBucketPolicy => {
                out.extend(backdoored_bucket(admin, m, account, name, &when).await);
            }
            MoveKind::LaunchInstance => {
                let Ok(member) = admin.in_account(account, MEMBER_ROLE).await else {
                    continue;
                };
                for id in &m.resources {
                    if isolated(&member, &m.subject, id).await {
                        continue;
                    }
                    out.push(Exposed {
                        kind: ExposureKind::Open,
                        what: format!("instance {id} ({}) in account {account} ({name})", m.subject),
                        why: format!(
                            "launched by the attacker in account {name} at {when} ({freeze}); an SCP stops new calls, not a running instance, and no step isolated it"
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether a principal in a member account is cut off by the run's own
/// steps there: quarantined, or (a user) with no active key left.
async fn cut_in_member(member: &Admin, kind: &str, name: &str) -> bool {
    let iam = member.iam();
    let quarantine = crate::actions::iam::QUARANTINE_POLICY_NAME;
    if kind == "role" {
        let got = iam
            .get_role_policy()
            .role_name(name)
            .policy_name(quarantine);
        return got.send().await.is_ok();
    }
    let got = iam
        .get_user_policy()
        .user_name(name)
        .policy_name(quarantine);
    if got.send().await.is_ok() {
        return true;
    }
    iam.list_access_keys()
        .user_name(name)
        .send()
        .await
        .is_ok_and(|k| {
            k.access_key_metadata()
                .iter()
                .all(|k| k.status().map(|s| s.as_str()) != Some("Active"))
        })
}

/// A member account's bucket whose policy the attacker opened to its own
/// account: open while the grant stays, unless the RCPs over the account
/// refuse principals outside the organization (what `org.apply_rcp`
/// writes), evaluated as AWS would for the outsider's `s3:GetObject`.
async fn backdoored_bucket(
    admin: &Admin,
    m: &MoveRecord,
    account: &str,
    name: &str,
    when: &str,
) -> Option<Exposed> {
    let bucket = m.subject.trim_start_matches("bucket ");
    let what = format!("bucket {bucket} in account {account} ({name})");
    let member = match admin.in_account(account, MEMBER_ROLE).await {
        Ok(member) => member,
        // What cannot be read back is not reported contained.
        Err(e) => {
            return Some(Exposed {
                kind: ExposureKind::Open,
                what,
                why: format!(
                    "opened to the attacker's account {ATTACKER_ACCOUNT} at {when}; the tabletop could not read it back, so it counts as open: {e}"
                ),
            });
        }
    };
    let policy = member
        .s3("us-east-1")
        .get_bucket_policy()
        .bucket(bucket)
        .send()
        .await;
    let granted = policy
        .ok()
        .and_then(|p| p.policy().map(str::to_string))
        .is_some_and(|p| p.contains(ATTACKER_ACCOUNT));
    if !granted {
        return None;
    }
    let outsider = format!("arn:aws:iam::{ATTACKER_ACCOUNT}:root");
    let request = Request {
        action: "s3:GetObject".into(),
        resource: format!("arn:aws:s3:::{bucket}/*"),
        principal: outsider.clone(),
        ..Request::default()
    }
    .with("aws:PrincipalArn", outsider)
    .with("aws:PrincipalAccount", ATTACKER_ACCOUNT)
    .with("aws:PrincipalIsAWSService", "false");
    let grant = format!(
        "its policy grants the attacker's account {ATTACKER_ACCOUNT} read access since {when}"
    );
    Some(
        match rcps_of(admin, account)
            .await
            .map(|r| rcp_bound(&request, r))
        {
            Ok(Some(why)) => Exposed {
                kind: ExposureKind::Leftover,
                what,
                why: format!(
                    "{grant}, and the RCPs over the account refuse it ({why}): remove the statement after the investigation"
                ),
            },
            Ok(None) => Exposed {
                kind: ExposureKind::Open,
                what,
                why: format!(
                    "{grant}, and no RCP over the account denies principals outside the organization: org.apply_rcp would, or delete the statement"
                ),
            },
            Err(e) => Exposed {
                kind: ExposureKind::Open,
                what,
                why: format!(
                    "{grant}; the tabletop could not read the RCPs over the account, so it counts as open: {e}"
                ),
            },
        },
    )
}
