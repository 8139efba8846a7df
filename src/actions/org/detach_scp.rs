//! Detaching an SCP, and attaching it back.

use super::*;
use crate::actions::call::{ArnOf, Call, Inverse, Inverting, Revert};
use crate::actions::undo::{Check, Undo};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetachScp {
    pub policy_id: String,
    pub target_id: String,
}

impl Call for DetachScp {
    fn describe(&self) -> String {
        let Self {
            policy_id,
            target_id,
        } = self;
        format!("organizations:DetachPolicy PolicyId={policy_id} TargetId={target_id}")
    }

    fn drift(&self) -> String {
        let Self {
            policy_id,
            target_id,
        } = self;
        format!("SCP {policy_id} is still attached to {target_id}")
    }

    fn management_call(&self) -> bool {
        true
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![("organizations:DetachPolicy", "*".to_string())]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let org = ctx.clients.org();
        let Self {
            policy_id,
            target_id,
        } = self;
        let r = ctx
            .call("organizations:DetachPolicy", || {
                org.detach_policy()
                    .policy_id(policy_id)
                    .target_id(target_id)
                    .send()
            })
            .await
            .map(|_| ());
        aws::goal_if(r, &["PolicyNotAttachedException"]).map(|()| None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        let undo = Inverse::Undo;
        let Self {
            policy_id,
            target_id,
        } = self;
        undo(Undo::AttachScp(AttachScp {
            policy_id: policy_id.clone(),
            target_id: target_id.clone(),
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachScp {
    pub policy_id: String,
    pub target_id: String,
}

impl Revert for AttachScp {
    fn describe(&self) -> String {
        let Self {
            policy_id,
            target_id,
        } = self;
        format!("organizations:AttachPolicy PolicyId={policy_id} TargetId={target_id}")
    }

    fn management_call(&self) -> bool {
        true
    }

    async fn check(&self, _ctx: &Ctx) -> Result<Check, AwsError> {
        Ok(Check::Ready)
    }

    async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        let Self {
            policy_id,
            target_id,
        } = self;
        let org = ctx.clients.org();
        let r = ctx
            .call("organizations:AttachPolicy", || {
                org.attach_policy()
                    .policy_id(policy_id)
                    .target_id(target_id)
                    .send()
            })
            .await
            .map(|_| ());
        crate::aws::goal_if(r, &["DuplicatePolicyAttachmentException"])
    }
}
