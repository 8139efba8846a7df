//! `s3.block_public_access`: the account-level S3 Block Public Access
//! setting, all four flags on, so that no bucket of the account can be
//! opened to the world while the incident lasts (an attacker's quickest
//! exfiltration is a public bucket policy or ACL). This file is the whole
//! action: its catalog entry, its discovery, its call and its undo.
//!
//! AWS behaviour relied on (Amazon S3 API reference,
//! `PublicAccessBlockConfiguration` for S3 Control):
//! - `BlockPublicAcls` and `BlockPublicPolicy` refuse new public ACLs and
//!   bucket policies; "enabling this setting doesn't affect existing
//!   policies or ACLs".
//! - `IgnorePublicAcls` makes S3 "ignore all public ACLs on buckets in this
//!   account and any objects that they contain", and `RestrictPublicBuckets`
//!   limits a bucket with a public policy to AWS service principals and
//!   authorized users of the bucket owner's account: these two cut access
//!   that already exists.
//! - `GetPublicAccessBlock` answers `NoSuchPublicAccessBlockConfiguration`
//!   when the account has none; `PutPublicAccessBlock` replaces the whole
//!   configuration (a retry after a lost answer is harmless);
//!   `DeletePublicAccessBlock` removes it. They need
//!   `s3:{Get,Put}AccountPublicAccessBlock` and take the account id.

use aws_sdk_s3control::types::PublicAccessBlockConfiguration;
use serde::{Deserialize, Serialize};

use crate::actions::call::{ArnOf, Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo};
use crate::actions::{
    Action, ActionInfo, BoundStep, Ctx, Disposition, Op, Planned, Reversibility, Runs, Sink,
};
use crate::aws::{self, AwsError};
use crate::spec::NoParams;
use crate::targets::{Resource, Scope, Target};

pub struct BlockPublicAccess;

impl Action for BlockPublicAccess {
    const INFO: ActionInfo = ActionInfo {
        id: "s3.block_public_access",
        summary: "Turn on all four S3 Block Public Access flags for the whole account.",
        targets: &[],
        params: &[],
        calls: &["s3:PutAccountPublicAccessBlock (S3 Control PutPublicAccessBlock)"],
        reversibility: Reversibility::Reversible(
            "puts the account's prior configuration back (or deletes it, if it had none)",
        ),
        notes: &[
            "IgnorePublicAcls and RestrictPublicBuckets cut access that exists now (public ACLs stop granting; a public bucket policy admits only AWS services and the owner's account); BlockPublicAcls and BlockPublicPolicy only refuse new ones.",
            "It covers every bucket of the account in every region, and access points; shares with named outside accounts are not public and stay (an RCP or the bucket policy decides those).",
            "Workloads that serve public content from S3 (a website bucket) stop serving it: name them before a tabletop becomes a real run.",
            "An account whose public access block an organization-level S3 policy manages refuses the change (403): the organization's management account sets it there.",
        ],
    };
    const RUNS: Runs = Runs::InAccounts;
    type Params = NoParams;

    async fn discover(
        ctx: &Ctx,
        _step: &BoundStep,
        _p: &NoParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let account = ctx.identity.account.clone();
        let target = Target {
            scope: Scope {
                account: account.clone(),
                region: None,
            },
            resource: Resource::Named {
                kind: "S3 account public access block".into(),
                id: account.clone(),
            },
        };
        let disposition = match read(ctx).await {
            Ok(Some(f)) if f == Flags::ALL => Disposition::Unchanged {
                reason: "all four flags already on".into(),
            },
            Ok(prior) => Disposition::Change {
                op: Op::BlockS3PublicAccess(BlockS3PublicAccess { account, prior }),
            },
            Err(error) => Disposition::Unreadable { error },
        };
        sink.emit(Planned {
            target,
            disposition,
        });
        Ok(Vec::new())
    }
}

/// The four flags, as S3 Control holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl Flags {
    const ALL: Flags = Flags {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };

    fn config(self) -> PublicAccessBlockConfiguration {
        PublicAccessBlockConfiguration::builder()
            .block_public_acls(self.block_public_acls)
            .ignore_public_acls(self.ignore_public_acls)
            .block_public_policy(self.block_public_policy)
            .restrict_public_buckets(self.restrict_public_buckets)
            .build()
    }

    fn off(self) -> Vec<&'static str> {
        [
            (self.block_public_acls, "BlockPublicAcls"),
            (self.ignore_public_acls, "IgnorePublicAcls"),
            (self.block_public_policy, "BlockPublicPolicy"),
            (self.restrict_public_buckets, "RestrictPublicBuckets"),
        ]
        .into_iter()
        .filter(|(on, _)| !on)
        .map(|(_, name)| name)
        .collect()
    }
}

/// The account's configuration; `None` when it has none.
async fn read(ctx: &Ctx) -> Result<Option<Flags>, AwsError> {
    let s3control = ctx.clients.s3control();
    let account = &ctx.identity.account;
    let got = ctx
        .call("s3:GetAccountPublicAccessBlock", || {
            s3control
                .get_public_access_block()
                .account_id(account)
                .send()
        })
        .await;
    let out = match got {
        // Only this code means "none": any other error (an unknown account,
        // a refusal) must not be read as a configuration to delete later.
        Err(e) if e.code.as_deref() == Some("NoSuchPublicAccessBlockConfiguration") => {
            return Ok(None);
        }
        other => other?,
    };
    let c = out.public_access_block_configuration();
    let on = |f: Option<bool>| f.unwrap_or(false);
    Ok(Some(Flags {
        block_public_acls: on(c.and_then(|c| c.block_public_acls())),
        ignore_public_acls: on(c.and_then(|c| c.ignore_public_acls())),
        block_public_policy: on(c.and_then(|c| c.block_public_policy())),
        restrict_public_buckets: on(c.and_then(|c| c.restrict_public_buckets())),
    }))
}

async fn put(ctx: &Ctx, flags: Flags) -> Result<(), AwsError> {
    let s3control = ctx.clients.s3control();
    let account = &ctx.identity.account;
    ctx.call("s3:PutAccountPublicAccessBlock", || {
        s3control
            .put_public_access_block()
            .account_id(account)
            .public_access_block_configuration(flags.config())
            .send()
    })
    .await
    .map(|_| ())
}

/// Turns all four flags on, recording the configuration it replaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockS3PublicAccess {
    pub account: String,
    /// The configuration before the run; `None`: it had none.
    pub prior: Option<Flags>,
}

impl Call for BlockS3PublicAccess {
    fn describe(&self) -> String {
        let off = self.prior.unwrap_or(Flags {
            block_public_acls: false,
            ignore_public_acls: false,
            block_public_policy: false,
            restrict_public_buckets: false,
        });
        format!(
            "s3control:PutPublicAccessBlock AccountId={} all four flags on (was off: {})",
            self.account,
            off.off().join(", ")
        )
    }

    fn drift(&self) -> String {
        "does not block all public access".into()
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![("s3:PutAccountPublicAccessBlock", "*".into())]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        put(ctx, Flags::ALL).await?;
        Ok(None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Undo(Undo::RestoreS3PublicAccess(RestoreS3PublicAccess {
            account: self.account.clone(),
            prior: self.prior,
        }))
    }
}

/// Puts the account's configuration back as it was before the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreS3PublicAccess {
    pub account: String,
    pub prior: Option<Flags>,
}

impl Revert for RestoreS3PublicAccess {
    fn describe(&self) -> String {
        match self.prior {
            None => format!(
                "s3control:DeletePublicAccessBlock AccountId={} (it had none)",
                self.account
            ),
            Some(f) => format!(
                "s3control:PutPublicAccessBlock AccountId={} (the flags it had; off: {})",
                self.account,
                f.off().join(", ")
            ),
        }
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let now = read(ctx).await?;
        Ok(if now == self.prior {
            Check::Done("already as it was".into())
        } else if now != Some(Flags::ALL) {
            Check::Conflict("changed since the run: left alone".into())
        } else {
            Check::Ready
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        match self.prior {
            Some(f) => put(ctx, f).await,
            None => {
                let s3control = ctx.clients.s3control();
                let account = &self.account;
                let r = ctx
                    .call("s3:PutAccountPublicAccessBlock", || {
                        s3control
                            .delete_public_access_block()
                            .account_id(account)
                            .send()
                    })
                    .await
                    .map(|_| ());
                // A retry after a lost answer finds it already gone.
                aws::goal_if(r, &["NoSuchPublicAccessBlockConfiguration"])
            }
        }
    }
}
