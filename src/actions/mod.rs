//! The action catalog and the mutating calls actions plan.
//!
//! An action turns a bound step into [`Planned`] items by reading AWS state
//! (discovery); each item that needs a change carries an [`Op`]: one concrete,
//! serializable AWS call with the prior state needed to undo it. The executor
//! only ever sees `Op`s, so new services plug in here without touching it.
//! Actions neither print nor write the audit log.

pub mod iam;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::aws::{AwsError, Identity, RetryPolicy, Telemetry};
use crate::playbook::BoundStep;
use crate::playbook::model::NoParams;
use crate::playbook::yaml::{self, DecodeError, Node};
use crate::targets::{Protection, SkipReason, Target};

/// Every action breakglass knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ActionKind {
    #[serde(rename = "iam.deactivate_access_keys")]
    IamDeactivateAccessKeys,
    #[serde(rename = "iam.delete_login_profiles")]
    IamDeleteLoginProfiles,
    #[serde(rename = "iam.revoke_role_sessions")]
    IamRevokeRoleSessions,
    #[serde(rename = "iam.revoke_user_sessions")]
    IamRevokeUserSessions,
    #[serde(rename = "iam.quarantine_principals")]
    IamQuarantinePrincipals,
}

/// The kinds of target a step may select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Users,
    Roles,
    AccessKeys,
}

impl TargetKind {
    /// The key under `targets:` in a playbook.
    pub fn key(self) -> &'static str {
        match self {
            TargetKind::Users => "users",
            TargetKind::Roles => "roles",
            TargetKind::AccessKeys => "access_keys",
        }
    }
}

/// Whether rollback can undo an action, and how or why not.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Reversibility {
    Reversible(&'static str),
    Irreversible(&'static str),
}

/// What `breakglass actions` prints about an action.
#[derive(Debug, Clone, Serialize)]
pub struct ActionInfo {
    pub id: &'static str,
    pub summary: &'static str,
    pub targets: &'static [TargetKind],
    /// `with:` parameters: (name, description).
    pub params: &'static [(&'static str, &'static str)],
    pub calls: &'static [&'static str],
    pub reversibility: Reversibility,
    pub notes: &'static [&'static str],
}

impl ActionKind {
    pub const ALL: &'static [ActionKind] = &[
        ActionKind::IamDeactivateAccessKeys,
        ActionKind::IamDeleteLoginProfiles,
        ActionKind::IamRevokeRoleSessions,
        ActionKind::IamRevokeUserSessions,
        ActionKind::IamQuarantinePrincipals,
    ];

    pub fn id(self) -> &'static str {
        self.info().id
    }

    pub fn from_id(id: &str) -> Option<ActionKind> {
        Self::ALL.iter().copied().find(|a| a.id() == id)
    }

    pub fn info(self) -> ActionInfo {
        match self {
            ActionKind::IamDeactivateAccessKeys => iam::DEACTIVATE_ACCESS_KEYS,
            ActionKind::IamDeleteLoginProfiles => iam::DELETE_LOGIN_PROFILES,
            ActionKind::IamRevokeRoleSessions => iam::REVOKE_ROLE_SESSIONS,
            ActionKind::IamRevokeUserSessions => iam::REVOKE_USER_SESSIONS,
            ActionKind::IamQuarantinePrincipals => iam::QUARANTINE_PRINCIPALS,
        }
    }

    /// Decodes the step's `with:` block into this action's parameters.
    pub fn decode_params(self, with: Option<&Node>) -> Result<ActionParams, DecodeError> {
        match with {
            None => Ok(ActionParams::None),
            Some(node) => {
                let _: Option<NoParams> = yaml::decode(node)?;
                Ok(ActionParams::None)
            }
        }
    }

    /// JSON Schema of this action's `with:` block.
    pub fn params_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<NoParams>()
    }
}

/// Decoded `with:` parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionParams {
    None,
}

/// What discovery decided for one target.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub target: Target,
    pub disposition: Disposition,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "disposition", rename_all = "snake_case")]
pub enum Disposition {
    /// Needs this call.
    Change { op: Op },
    /// Already in the state the step wants.
    Unchanged { reason: String },
    /// Left alone on purpose.
    Skip { reason: SkipReason },
}

/// Read access and the rules discovery needs.
#[derive(Clone)]
pub struct Ctx {
    pub iam: aws_sdk_iam::Client,
    pub identity: Identity,
    pub protection: Protection,
    /// Parallel reads during discovery.
    pub concurrency: usize,
    /// When this run started: revocations at or after it count as already done.
    pub run_started: jiff::Timestamp,
    pub retry: RetryPolicy,
    pub telemetry: Arc<Telemetry>,
}

/// Finds a step's targets and decides, for each, what call (if any) it needs.
pub async fn discover(ctx: &Ctx, step: &BoundStep) -> Result<Vec<Planned>, AwsError> {
    iam::discover(ctx, step).await
}

/// One mutating AWS call, with the prior state rollback needs. Serialized into
/// the audit log's intent record before the call is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    DeactivateAccessKey {
        user: String,
        key_id: String,
        prior_status: String,
    },
    DeleteLoginProfile {
        user: String,
    },
    PutInlinePolicy {
        principal: iam::PrincipalRef,
        policy_name: String,
        policy: iam::PolicyKind,
        /// The exact document sent; filled in by [`Op::prepare`] right before the call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        document: Option<String>,
        /// The document of the same name that was there before, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prior_document: Option<String>,
    },
}

impl Op {
    /// Fixes time-dependent content (a revocation's cutoff) at the moment of the call.
    pub fn prepare(&mut self, now: jiff::Timestamp) {
        if let Op::PutInlinePolicy {
            policy, document, ..
        } = self
        {
            *document = Some(policy.render(now));
        }
    }

    /// The call, as a responder would read it in a plan.
    pub fn describe(&self) -> String {
        iam::describe(self)
    }

    pub async fn apply(&self, ctx: &Ctx) -> Result<(), AwsError> {
        iam::apply(ctx, self).await
    }
}
