//! `s3.protect_buckets`: what S3 ransomware relies on, taken away bucket by
//! bucket. With versioning on, an overwrite or a delete keeps the old
//! version; with SSE-C blocked, an intruder cannot rewrite objects under an
//! encryption key only they hold (the extortion pattern seen since 2025).
//! This file is the whole action: its catalog entry, discovery, two calls
//! and the undo of one.
//!
//! AWS behaviour relied on (Amazon S3 API reference and User Guide):
//! - `PutBucketVersioning Status=Enabled`. "Once you version-enable a
//!   bucket, it can never return to an unversioned state", only
//!   `Suspended`: rollback keeps it on and says how to suspend it.
//! - `PutBucketEncryption` replaces the bucket's whole default-encryption
//!   configuration, so the rule it had (algorithm, KMS key, bucket key) is
//!   read and written back with `BlockedEncryptionTypes` = `SSE-C` added:
//!   then "any PutObject, CopyObject, PostObject, or Multipart Upload or
//!   replication requests that specify SSE-C encryption will be rejected",
//!   while objects already written stay readable. `GetBucketEncryption`
//!   answers `ServerSideEncryptionConfigurationNotFoundError` when a bucket
//!   has none; both need `s3:{Get,Put}EncryptionConfiguration`.
//! - `ListBuckets` lists every general purpose bucket of the account, in
//!   every region, with its `BucketRegion` (else `GetBucketLocation`, where
//!   an empty constraint is us-east-1 and `EU` is eu-west-1).

use std::collections::BTreeSet;

use aws_sdk_s3::types::{
    BlockedEncryptionTypes, BucketVersioningStatus, EncryptionType, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    VersioningConfiguration,
};
use futures_util::{StreamExt, stream};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::actions::call::{ArnOf, Call, Inverse, Inverting, Revert};
use crate::actions::regions::target_in;
use crate::actions::undo::{Check, Undo};
use crate::actions::{
    Action, ActionInfo, BoundStep, Ctx, Disposition, Op, Planned, Reversibility, Runs, Sink,
};
use crate::aws::{AwsError, local};
use crate::targets::{Resource, Scope, Target};

/// `with:` of `s3.protect_buckets`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtectBucketsParams {
    /// Bucket names. Empty: every bucket the account owns in the selected
    /// regions.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// Turn versioning on (default true).
    #[serde(default = "yes")]
    pub versioning: bool,
    /// Block writes encrypted with customer-provided keys (default true).
    #[serde(default = "yes")]
    pub block_sse_c: bool,
}

fn yes() -> bool {
    true
}

pub struct ProtectBuckets;

impl Action for ProtectBuckets {
    const INFO: ActionInfo = ActionInfo {
        id: "s3.protect_buckets",
        summary: "Turn on versioning and block SSE-C writes on the account's S3 buckets (what S3 ransomware needs).",
        targets: &[],
        params: &[
            (
                "buckets",
                "bucket names, acted on in whatever region they are (default: every bucket the account owns in the selected regions)",
            ),
            ("versioning", "turn versioning on (default true)"),
            (
                "block_sse_c",
                "block writes with customer-provided keys (default true)",
            ),
        ],
        calls: &["s3:PutBucketVersioning", "s3:PutEncryptionConfiguration"],
        reversibility: Reversibility::Reversible(
            "the SSE-C block: the bucket's own encryption rule is put back; versioning is kept on (a bucket can only be suspended, never unversioned)",
        ),
        notes: &[
            "Versioning keeps what is overwritten or deleted from now on; objects already destroyed are not brought back, and old versions cost storage until a lifecycle rule expires them.",
            "Enabling versioning can take up to 15 minutes to reach every write (S3 User Guide): writes in that window may still replace unversioned objects.",
            "A bucket with MFA delete needs the root user's MFA to change versioning: such a bucket fails and says so.",
            "Objects already encrypted with SSE-C stay readable only with their key: blocking stops new ones.",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = ProtectBucketsParams;

    fn check(p: &ProtectBucketsParams) -> Result<(), String> {
        if !p.versioning && !p.block_sse_c {
            return Err("`versioning: false` with `block_sse_c: false` protects nothing".into());
        }
        match p.buckets.iter().find(|b| !valid_bucket(b)) {
            Some(b) => Err(format!("`{b}` is not an S3 bucket name")),
            None => Ok(()),
        }
    }

    fn names_subjects(p: &ProtectBucketsParams) -> bool {
        !p.buckets.is_empty()
    }

    async fn discover(
        ctx: &Ctx,
        _step: &BoundStep,
        p: &ProtectBucketsParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let listed = list_buckets(ctx).await?;
        let wanted: BTreeSet<&str> = p.buckets.iter().map(String::as_str).collect();
        for name in wanted
            .iter()
            .filter(|n| !listed.iter().any(|(b, _)| b == *n))
        {
            sink.emit(Planned {
                target: Target {
                    scope: Scope {
                        account: ctx.identity.account.clone(),
                        region: None,
                    },
                    resource: bucket_resource(VERSIONING, name),
                },
                disposition: Disposition::Missing {
                    reason: format!("account {} owns no bucket {name}", ctx.identity.account),
                },
            });
        }
        let chosen: Vec<(String, String)> = listed
            .into_iter()
            .filter(|(b, _)| wanted.is_empty() || wanted.contains(b.as_str()))
            .collect();
        // A bucket the playbook names is acted on wherever it is; the
        // others only in the selected regions.
        let in_scope = |r: &String| !wanted.is_empty() || ctx.regions.contains(r);
        let elsewhere = chosen.iter().filter(|(_, r)| !in_scope(r)).count();
        stream::iter(chosen.into_iter().filter(|(_, r)| in_scope(r)))
            .map(|(bucket, region)| async move { plan_bucket(ctx, &bucket, &region, p).await })
            .buffer_unordered(ctx.concurrency.max(1))
            .for_each(|planned| {
                sink.emit_all(planned);
                std::future::ready(())
            })
            .await;
        let mut notes = Vec::new();
        if elsewhere > 0 {
            notes.push(format!(
                "{elsewhere} bucket(s) of account {} are in regions this playbook does not select: left as they are.",
                ctx.identity.account
            ));
        }
        Ok(notes)
    }
}

const VERSIONING: &str = "S3 bucket versioning";
const SSE_C: &str = "S3 bucket SSE-C block";

fn bucket_resource(kind: &str, bucket: &str) -> Resource {
    Resource::Named {
        kind: kind.into(),
        id: bucket.to_string(),
    }
}

/// S3's naming rules, loosely: 3 to 255 letters, digits, dots, hyphens and
/// underscores (old us-east-1 buckets may have capitals and underscores).
/// A typo such as a space or an `s3://` prefix is caught here.
fn valid_bucket(b: &str) -> bool {
    (3..=255).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Every bucket the account owns, with its region.
async fn list_buckets(ctx: &Ctx) -> Result<Vec<(String, String)>, AwsError> {
    let home = ctx
        .regions
        .first()
        .cloned()
        .unwrap_or_else(|| "us-east-1".into());
    let s3 = ctx.clients.s3(&home);
    let pages = ctx
        .pages(
            Some(&home),
            "s3:ListAllMyBuckets",
            |token| s3.list_buckets().set_continuation_token(token).send(),
            |page| page.continuation_token().map(str::to_string),
        )
        .await?;
    let mut out = Vec::new();
    for b in pages.iter().flat_map(|p| p.buckets()) {
        let Some(name) = b.name() else { continue };
        let region = match b.bucket_region().filter(|r| !r.is_empty()) {
            Some(r) => r.to_string(),
            None => {
                let located = ctx
                    .call_in(&home, "s3:GetBucketLocation", || {
                        s3.get_bucket_location().bucket(name).send()
                    })
                    .await?;
                match located.location_constraint().map(|c| c.as_str()) {
                    None | Some("") => "us-east-1".to_string(),
                    Some("EU") => "eu-west-1".to_string(),
                    Some(r) => r.to_string(),
                }
            }
        };
        out.push((name.to_string(), region));
    }
    Ok(out)
}

/// The bucket's default-encryption rule, as it is kept for rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncryptionRule {
    pub algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_key: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<String>,
}

impl EncryptionRule {
    fn blocks_sse_c(&self) -> bool {
        self.blocked.iter().any(|b| b == "SSE-C")
    }

    /// The configuration `PutBucketEncryption` takes (its builders refuse
    /// only a missing algorithm or rule list, which are always set here).
    fn config(&self) -> Result<ServerSideEncryptionConfiguration, AwsError> {
        let bad = |e: aws_sdk_s3::error::BuildError| {
            local("s3:PutEncryptionConfiguration", e.to_string())
        };
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::from(self.algorithm.as_str()))
            .set_kms_master_key_id(self.kms_key.clone())
            .build()
            .map_err(bad)?;
        let blocked = (!self.blocked.is_empty()).then(|| {
            BlockedEncryptionTypes::builder()
                .set_encryption_type(Some(
                    self.blocked
                        .iter()
                        .map(|b| EncryptionType::from(b.as_str()))
                        .collect(),
                ))
                .build()
        });
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(default)
            .set_bucket_key_enabled(self.bucket_key)
            .set_blocked_encryption_types(blocked)
            .build();
        ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(bad)
    }
}

/// Plans one bucket's two settings.
async fn plan_bucket(
    ctx: &Ctx,
    bucket: &str,
    region: &str,
    p: &ProtectBucketsParams,
) -> Vec<Planned> {
    let mut out = Vec::new();
    if p.versioning {
        let disposition = match versioning(ctx, bucket, region).await {
            Ok(status) if status.as_deref() == Some("Enabled") => Disposition::Unchanged {
                reason: "versioning already on".into(),
            },
            Ok(prior) => Disposition::Change {
                op: Op::EnableVersioning(EnableVersioning {
                    bucket: bucket.to_string(),
                    region: region.to_string(),
                    prior,
                }),
            },
            Err(error) => Disposition::Unreadable { error },
        };
        out.push(Planned {
            target: target_in(ctx, region, bucket_resource(VERSIONING, bucket)),
            disposition,
        });
    }
    if p.block_sse_c {
        let disposition = match encryption(ctx, bucket, region).await {
            Ok(Some(rule)) if rule.blocks_sse_c() => Disposition::Unchanged {
                reason: "SSE-C writes already blocked".into(),
            },
            Ok(prior) => Disposition::Change {
                op: Op::BlockSseC(BlockSseC {
                    bucket: bucket.to_string(),
                    region: region.to_string(),
                    prior,
                }),
            },
            Err(error) => Disposition::Unreadable { error },
        };
        out.push(Planned {
            target: target_in(ctx, region, bucket_resource(SSE_C, bucket)),
            disposition,
        });
    }
    out
}

async fn versioning(ctx: &Ctx, bucket: &str, region: &str) -> Result<Option<String>, AwsError> {
    let s3 = ctx.clients.s3(region);
    let owner = &ctx.identity.account;
    let out = ctx
        .call_in(region, "s3:GetBucketVersioning", || {
            s3.get_bucket_versioning()
                .bucket(bucket)
                .expected_bucket_owner(owner)
                .send()
        })
        .await?;
    Ok(out.status().map(|s| s.as_str().to_string()))
}

/// The bucket's first default-encryption rule; `None` when it has none.
async fn encryption(
    ctx: &Ctx,
    bucket: &str,
    region: &str,
) -> Result<Option<EncryptionRule>, AwsError> {
    let s3 = ctx.clients.s3(region);
    let owner = &ctx.identity.account;
    let got = ctx
        .call_in(region, "s3:GetEncryptionConfiguration", || {
            s3.get_bucket_encryption()
                .bucket(bucket)
                .expected_bucket_owner(owner)
                .send()
        })
        .await;
    let out = match got {
        Err(e) if e.code.as_deref() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
            return Ok(None);
        }
        other => other?,
    };
    let rule = out
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first());
    Ok(rule.map(|r| {
        let default = r.apply_server_side_encryption_by_default();
        EncryptionRule {
            algorithm: default
                .map(|d| d.sse_algorithm().as_str().to_string())
                .unwrap_or_else(|| "AES256".into()),
            kms_key: default
                .and_then(|d| d.kms_master_key_id())
                .map(str::to_string),
            // Off and absent are the same setting: compared as absent.
            bucket_key: r.bucket_key_enabled().filter(|on| *on),
            blocked: r
                .blocked_encryption_types()
                .map(|b| {
                    b.encryption_type()
                        .iter()
                        .map(|t| t.as_str().to_string())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }))
}

async fn put_encryption(
    ctx: &Ctx,
    bucket: &str,
    region: &str,
    rule: &EncryptionRule,
) -> Result<(), AwsError> {
    let s3 = ctx.clients.s3(region);
    let owner = &ctx.identity.account;
    let config = rule.config()?;
    ctx.call_in(region, "s3:PutEncryptionConfiguration", || {
        s3.put_bucket_encryption()
            .bucket(bucket)
            .expected_bucket_owner(owner)
            .server_side_encryption_configuration(config.clone())
            .send()
    })
    .await
    .map(|_| ())
}

/// `PutBucketVersioning Status=Enabled` on one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnableVersioning {
    pub bucket: String,
    pub region: String,
    /// `Suspended`, or `None` for a bucket never versioned.
    pub prior: Option<String>,
}

impl Call for EnableVersioning {
    fn describe(&self) -> String {
        format!(
            "s3:PutBucketVersioning Bucket={} Status=Enabled (in {}; was {})",
            self.bucket,
            self.region,
            self.prior.as_deref().unwrap_or("never versioned")
        )
    }

    fn drift(&self) -> String {
        "is not versioned".into()
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![(
            "s3:PutBucketVersioning",
            format!("arn:aws:s3:::{}", self.bucket),
        )]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let s3 = ctx.clients.s3(&self.region);
        let owner = &ctx.identity.account;
        let on = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        ctx.call_in(&self.region, "s3:PutBucketVersioning", || {
            s3.put_bucket_versioning()
                .bucket(&self.bucket)
                .expected_bucket_owner(owner)
                .versioning_configuration(on.clone())
                .send()
        })
        .await?;
        Ok(None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Kept {
            why: format!(
                "bucket {} stays versioned: suspending it lets overwrites destroy data again (s3:PutBucketVersioning Status=Suspended by hand if wanted)",
                self.bucket
            ),
        }
    }
}

/// `PutBucketEncryption` with the bucket's own rule plus SSE-C blocked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockSseC {
    pub bucket: String,
    pub region: String,
    /// The rule before the run; `None`: the bucket had no configuration.
    pub prior: Option<EncryptionRule>,
}

impl BlockSseC {
    fn wanted(&self) -> EncryptionRule {
        let mut rule = self.prior.clone().unwrap_or(EncryptionRule {
            algorithm: "AES256".into(),
            kms_key: None,
            bucket_key: None,
            blocked: Vec::new(),
        });
        rule.blocked.retain(|b| b != "NONE");
        rule.blocked.push("SSE-C".into());
        rule
    }
}

impl Call for BlockSseC {
    fn describe(&self) -> String {
        let kept = self
            .prior
            .as_ref()
            .map(|r| format!("its {} default kept", r.algorithm))
            .unwrap_or_else(|| "SSE-S3 default, as AWS applies to every bucket".into());
        format!(
            "s3:PutBucketEncryption Bucket={} BlockedEncryptionTypes=SSE-C (in {}; {kept})",
            self.bucket, self.region
        )
    }

    fn drift(&self) -> String {
        "accepts SSE-C writes".into()
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![(
            "s3:PutEncryptionConfiguration",
            format!("arn:aws:s3:::{}", self.bucket),
        )]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        put_encryption(ctx, &self.bucket, &self.region, &self.wanted()).await?;
        Ok(None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Undo(Undo::RestoreBucketEncryption(RestoreBucketEncryption {
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            set: self.wanted(),
            prior: self.prior.clone(),
        }))
    }
}

/// Puts a bucket's default-encryption configuration back as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreBucketEncryption {
    pub bucket: String,
    pub region: String,
    /// What the run wrote: anything else now is someone else's, left alone.
    pub set: EncryptionRule,
    pub prior: Option<EncryptionRule>,
}

impl Revert for RestoreBucketEncryption {
    fn describe(&self) -> String {
        match &self.prior {
            None => format!(
                "s3:DeleteBucketEncryption Bucket={} (it had no configuration)",
                self.bucket
            ),
            Some(r) => format!(
                "s3:PutBucketEncryption Bucket={} (its {} rule, SSE-C {})",
                self.bucket,
                r.algorithm,
                if r.blocks_sse_c() {
                    "blocked"
                } else {
                    "allowed"
                }
            ),
        }
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let now = encryption(ctx, &self.bucket, &self.region).await?;
        Ok(if now == self.prior {
            Check::Done("already as it was".into())
        } else if now.as_ref() != Some(&self.set) {
            Check::Conflict("its encryption was changed since the run: left alone".into())
        } else {
            Check::Ready
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        match &self.prior {
            Some(rule) => put_encryption(ctx, &self.bucket, &self.region, rule).await,
            None => {
                let s3 = ctx.clients.s3(&self.region);
                let owner = &ctx.identity.account;
                ctx.call_in(&self.region, "s3:PutEncryptionConfiguration", || {
                    s3.delete_bucket_encryption()
                        .bucket(&self.bucket)
                        .expected_bucket_owner(owner)
                        .send()
                })
                .await
                .map(|_| ())
            }
        }
    }
}
