//! Deleting a user's console password: irreversible, so the playbook says so.

use super::*;
use crate::actions::call::{ArnOf, Call, Inverse, Inverting};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteLoginProfile {
    pub user: String,
}

impl Call for DeleteLoginProfile {
    fn describe(&self) -> String {
        let Self { user } = self;
        format!("iam:DeleteLoginProfile UserName={user}")
    }

    fn drift(&self) -> String {
        "has a console password".into()
    }

    fn permission_checks(&self, arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        let Self { user: u } = self;
        vec![("iam:DeleteLoginProfile", arn_of("user", u, None))]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self { user } = self;
        if ctx
            .identity
            .is_self(&ctx.identity.account, PrincipalKind::User, user)
        {
            return Err(refuse("iam:DeleteLoginProfile", "the executor's own user"));
        }
        let r = ctx
            .call("iam:DeleteLoginProfile", || {
                ctx.iam().delete_login_profile().user_name(user).send()
            })
            .await
            .map(|_| ());
        match r {
            // Gone already (a retried call that had succeeded): the goal state holds.
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            other => other.map(|()| None),
        }
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Irreversible {
            why: "the console password was deleted: issue a new one out of band".into(),
        }
    }
}
