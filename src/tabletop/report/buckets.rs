//! Judgments of the attacker's bucket moves, read back from the emulator:
//! whether what ransomware destroyed can be brought back from earlier
//! versions, and whether a backdoor policy or a log-expiry rule is still
//! there.

use super::{Exposed, ExposureKind, StepTime, secs};
use crate::tabletop::admin::Admin;
use crate::tabletop::buckets::{EXPIRY_RULE, RANSOM_NOTE};
use crate::tabletop::moves::MoveRecord;
use crate::tabletop::scenario::{MoveKind, Scenario};
use crate::tabletop::seed::ATTACKER_ACCOUNT;

/// What the bucket moves that succeeded left behind.
pub async fn bucket_moves(
    admin: &Admin,
    scenario: &Scenario,
    moves: &[MoveRecord],
    timeline: &[StepTime],
) -> Vec<Exposed> {
    let protect = timeline.iter().find(|t| t.action == "s3.protect_buckets");
    let mut out = Vec::new();
    for m in moves.iter().filter(|m| m.succeeded && m.account.is_none()) {
        let bucket = m.subject.trim_start_matches("bucket ");
        let region = scenario
            .file
            .buckets
            .iter()
            .find(|b| b.name == bucket)
            .map(|b| b.region.clone())
            .or_else(|| {
                let trails = &scenario.file.trails;
                trails
                    .iter()
                    .find(|t| crate::tabletop::buckets::trail_bucket(&t.name) == bucket)
                    .map(|t| t.region.clone())
            })
            .unwrap_or_else(|| "us-east-1".into());
        let s3 = admin.s3(&region);
        let when = secs(m.at_ms);
        let what = format!("bucket {bucket} ({region})");
        match m.action {
            MoveKind::S3RansomwareBatch
            | MoveKind::S3RansomwareIndividual
            | MoveKind::S3RansomwareSseC => {
                let mut lost = Vec::new();
                for key in &m.resources {
                    if !has_earlier_version(&s3, bucket, key).await {
                        lost.push(key.as_str());
                    }
                }
                let verb = match m.action {
                    MoveKind::S3RansomwareSseC => "rewritten under the attacker's own key (SSE-C)",
                    _ => "deleted",
                };
                let (kind, why) = if lost.is_empty() {
                    (
                        ExposureKind::Leftover,
                        format!(
                            "{} objects {verb} by the attacker at {when}, each with its earlier version kept (the bucket was versioned by then): restore those versions and delete {RANSOM_NOTE}",
                            m.resources.len()
                        ),
                    )
                } else {
                    let remedy = match protect {
                        Some(t) if t.end_ms > m.at_ms => format!(
                            "s3.protect_buckets ended at {}, after it",
                            secs(t.end_ms)
                        ),
                        Some(_) => "s3.protect_buckets did not cover this bucket".into(),
                        None => "no step turns versioning on or blocks SSE-C: add s3.protect_buckets right after the freeze".into(),
                    };
                    (
                        ExposureKind::Lost,
                        format!(
                            "{} of {} objects {verb} by the attacker at {when} with no earlier version to restore: gone ({remedy}); a ransom note {RANSOM_NOTE} is left",
                            lost.len(),
                            m.resources.len()
                        ),
                    )
                };
                out.push(Exposed { kind, what, why });
            }
            MoveKind::BackdoorBucketPolicy => {
                let policy = s3.get_bucket_policy().bucket(bucket).send().await;
                let open = policy
                    .ok()
                    .and_then(|p| p.policy().map(str::to_string))
                    .is_some_and(|p| p.contains(ATTACKER_ACCOUNT));
                if open {
                    out.push(Exposed {
                        kind: ExposureKind::Open,
                        what,
                        why: format!(
                            "its policy grants the attacker's account {ATTACKER_ACCOUNT} read access since {when}: Block Public Access does not cover a named account. In member accounts an RCP (org.apply_rcp) denies principals outside the organization; here no step removes the statement: delete it"
                        ),
                    });
                }
            }
            MoveKind::ExpireTrailLogs => {
                let rules = s3
                    .get_bucket_lifecycle_configuration()
                    .bucket(bucket)
                    .send()
                    .await;
                let expiring =
                    rules.is_ok_and(|r| r.rules().iter().any(|r| r.id() == Some(EXPIRY_RULE)));
                if expiring {
                    out.push(Exposed {
                        kind: ExposureKind::Open,
                        what,
                        why: format!(
                            "a lifecycle rule set by the attacker at {when} deletes the trail's logs after a day: the `preserve` SCP denies s3:PutLifecycleConfiguration in member accounts; here no step removes the rule: delete it, and copy the logs out first"
                        ),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether `key` has a version other than its latest one (what a delete
/// marker or an SSE-C rewrite hides) in `bucket`.
async fn has_earlier_version(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    let listed = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await;
    listed.is_ok_and(|l| {
        l.versions()
            .iter()
            .any(|v| v.key() == Some(key) && v.is_latest() == Some(false))
    })
}
