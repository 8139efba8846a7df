//! The calls that undo recorded changes, each checked against the
//! resource's state now before it is made. Which change gets which undo is
//! `rollback`'s to decide; making the calls is here, with the actions.

use super::Ctx;
use super::iam::PrincipalRef;
use crate::aws::PrincipalKind;
use crate::aws::{AwsError, ErrorKind};

pub use super::registry::Undo;

/// Whether an undo can go ahead, given the resource's state now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Ready,
    /// Already in the state the undo would produce.
    Done(String),
    /// Someone changed the resource since the run.
    Conflict(String),
}

pub(crate) fn conflict(what: &str) -> AwsError {
    AwsError {
        operation: "rollback".into(),
        code: Some("BreakglassConflict".into()),
        message: what.to_string(),
        kind: ErrorKind::Other,
    }
}

pub(crate) fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

pub(crate) async fn current_policy(
    ctx: &Ctx,
    principal: &PrincipalRef,
    policy_name: &str,
) -> Result<Option<String>, AwsError> {
    let iam = ctx.iam();
    let r = match principal.kind {
        PrincipalKind::User => ctx
            .call("iam:GetUserPolicy", || {
                iam.get_user_policy()
                    .user_name(&principal.name)
                    .policy_name(policy_name)
                    .send()
            })
            .await
            .map(|o| o.policy_document().to_string()),
        PrincipalKind::Role => ctx
            .call("iam:GetRolePolicy", || {
                iam.get_role_policy()
                    .role_name(&principal.name)
                    .policy_name(policy_name)
                    .send()
            })
            .await
            .map(|o| o.policy_document().to_string()),
    };
    match r {
        Ok(doc) => Ok(Some(crate::actions::iam::url_decode(&doc))),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs a conflict-checked undo: `Ok(None)` when nothing was needed.
pub async fn undo_one(ctx: &Ctx, undo: &Undo, force: bool) -> Result<Option<String>, AwsError> {
    match undo.check(ctx).await? {
        Check::Done(why) => Ok(Some(why)),
        Check::Conflict(why) if !force => Err(conflict(&format!(
            "{why}; left alone (--force undoes it anyway)"
        ))),
        Check::Ready | Check::Conflict(_) => undo.apply(ctx).await.map(|()| None),
    }
}

/// The SCP an undo detaches: the id the log recorded, or, for a freeze that
/// failed before AWS returned one, the policy of the name it made.
pub(crate) async fn scp_id(
    ctx: &Ctx,
    kind: crate::actions::org::PolicyKind,
    recorded: &str,
    name: &str,
) -> Result<Option<String>, AwsError> {
    if !recorded.is_empty() {
        return Ok(Some(recorded.to_string()));
    }
    if name.is_empty() {
        return Ok(None);
    }
    crate::actions::org::policy_id_by_name(ctx, kind, name).await
}
