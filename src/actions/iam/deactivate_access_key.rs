//! Deactivating an access key, and turning it back on (only when asked: a
//! compromised key should stay off).

use super::*;
use crate::actions::call::{ArnOf, Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeactivateAccessKey {
    pub user: String,
    pub key_id: String,
    pub prior_status: String,
    /// The owner's ARN as IAM lists it (path included), for permission
    /// checks; absent in logs from before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_arn: String,
}

impl Call for DeactivateAccessKey {
    fn describe(&self) -> String {
        let Self { user, key_id, .. } = self;
        format!("iam:UpdateAccessKey UserName={user} AccessKeyId={key_id} Status=Inactive")
    }

    fn drift(&self) -> String {
        let Self { prior_status, .. } = self;
        format!("is {prior_status}")
    }

    fn permission_checks(&self, arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        let Self {
            user: u, user_arn, ..
        } = self;
        vec![(
            "iam:UpdateAccessKey",
            arn_of("user", u, Some(user_arn.as_str())),
        )]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self { user, key_id, .. } = self;
        // Defence in depth: discovery already skipped it.
        if *key_id == ctx.identity.access_key_id {
            return Err(refuse("iam:UpdateAccessKey", "the key this run signs with"));
        }
        ctx.call("iam:UpdateAccessKey", || {
            ctx.iam()
                .update_access_key()
                .user_name(user)
                .access_key_id(key_id)
                .status(StatusType::Inactive)
                .send()
        })
        .await
        .map(|_| None)
    }

    fn inverse(&self, facts: &Inverting) -> Inverse {
        let choices = facts;
        let undo = Inverse::Undo;
        let Self {
            user,
            key_id,
            prior_status,
            ..
        } = self;
        if prior_status != "Active" {
            Inverse::Kept {
                why: format!("it was {prior_status} before the run"),
            }
        } else if choices.reactivate_keys {
            undo(Undo::ReactivateAccessKey(ReactivateAccessKey {
                user: user.clone(),
                key_id: key_id.clone(),
            }))
        } else {
            Inverse::Kept {
                why: "a compromised key should stay inactive: pass --reactivate-keys to turn it back on".into(),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactivateAccessKey {
    pub user: String,
    pub key_id: String,
}

impl Revert for ReactivateAccessKey {
    fn describe(&self) -> String {
        let Self { user, key_id } = self;
        format!("iam:UpdateAccessKey UserName={user} AccessKeyId={key_id} Status=Active")
    }

    async fn check(&self, ctx: &Ctx) -> Result<Check, AwsError> {
        let Self { user, key_id } = self;
        let keys = ctx
            .call("iam:ListAccessKeys", || {
                ctx.iam().list_access_keys().user_name(user).send()
            })
            .await?;
        let status = keys
            .access_key_metadata()
            .iter()
            .find(|k| k.access_key_id() == Some(key_id))
            .and_then(|k| k.status())
            .map(|s| s.as_str().to_string());
        Ok(match status.as_deref() {
            Some("Inactive") => Check::Ready,
            Some("Active") => Check::Done("already Active".into()),
            _ => Check::Conflict("the key no longer exists".into()),
        })
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self { user, key_id } = self;
        ctx.call("iam:UpdateAccessKey", || {
            ctx.iam()
                .update_access_key()
                .user_name(user)
                .access_key_id(key_id)
                .status(aws_sdk_iam::types::StatusType::Active)
                .send()
        })
        .await
        .map(|_| ())
    }
}
