//! `org.remove_member_root_credentials`: the root users of member accounts
//! lose their password, access keys, signing certificates and MFA devices,
//! through AWS's centralized root access (IAM User Guide, "Centralize root
//! access for member accounts").

use super::root_session::{RootCredentials, Task, delete_all, read, root_ctx};
use super::*;
use crate::actions::call::{ArnOf, Call, Inverse, Inverting};
use crate::actions::{Action, Runs};
use crate::spec::NoParams;

/// Why the deletion is not undone.
const IRREVERSIBLE: &str = "AWS keeps no copy of a deleted root credential: only the account's root user can create them again, after `IAMCreateRootUserPassword` lets it recover a password by email";

/// The feature `ListOrganizationsFeatures` must show: it lets the
/// management account and the delegated administrator for IAM "manage root
/// user credentials for member accounts" (IAM API reference,
/// EnableOrganizationsRootCredentialsManagement).
const FEATURE: &str = "RootCredentialsManagement";

/// How to turn centralized root access on, as the IAM User Guide does. The
/// API reference ties credential management to `RootCredentialsManagement`
/// and "privileged tasks" to `RootSessions`; the console turns both on, and
/// so does this advice, since `AssumeRoot` is a privileged session.
const HOW_TO_ENABLE: &str = "enable trusted access for IAM (`aws organizations enable-aws-service-access --service-principal iam.amazonaws.com`), then root credentials management and privileged root sessions (`aws iam enable-organizations-root-credentials-management` and `aws iam enable-organizations-root-sessions`), from the management account (IAM User Guide, \"Centralize root access for member accounts\")";

/// The other feature: without it, `AssumeRoot` may be refused.
const SESSIONS: &str = "RootSessions";

pub struct RemoveMemberRootCredentials;

impl Action for RemoveMemberRootCredentials {
    const INFO: ActionInfo = ActionInfo {
        id: "org.remove_member_root_credentials",
        summary: "Delete the root user's password, access keys and signing certificates, and deactivate its MFA devices, in the step's member accounts.",
        targets: &[],
        params: &[],
        calls: &[
            "iam:ListOrganizationsFeatures (centralized root access must be on)",
            "sts:AssumeRoot (IAMAuditRootUserCredentials to read, IAMDeleteRootUserCredentials to delete; 900 s, regional STS)",
            "iam:DeleteAccessKey",
            "iam:DeleteLoginProfile",
            "iam:DeleteSigningCertificate",
            "iam:DeactivateMFADevice",
        ],
        reversibility: Reversibility::Irreversible(IRREVERSIBLE),
        notes: &[
            "The accounts come from `accounts:`. The management account's root user is out of reach (`AssumeRoot` targets member accounts only): selected, it is reported, never claimed.",
            "The deny-all SCP (`org.apply_scp`) lets `AssumeRoot` sessions read and delete root credentials and nothing else, so this step works in frozen accounts.",
            "Needs centralized root access (`RootCredentialsManagement`); when it is off, every account is reported with how to turn it on, and nothing changes.",
            "Runs from the management account or the delegated administrator for IAM. An account whose root user is in the executor's credential chain is skipped.",
            "A console session the root user already has is not ended by deleting its password: an SCP (`org.apply_scp`) binds member-account root users too.",
        ],
    };
    const RUNS: Runs = Runs::OverAccounts;
    type Params = NoParams;

    fn irreversible(_: &NoParams) -> Option<&'static str> {
        Some(IRREVERSIBLE)
    }

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &NoParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let accounts = ctx.fleet.accounts(step.index).unwrap_or_default();
        let management = ctx.fleet.management.clone().unwrap_or_default();
        let found = match accounts.is_empty() {
            true => Ok(vec![FEATURE.to_string(), SESSIONS.to_string()]),
            false => features(ctx).await?,
        };
        let mut notes = vec![
            "Deleting root credentials stops new sign-ins and key use; with root credentials management on, the accounts cannot recover a root password either (IAM User Guide). It cannot be undone by breakglass.".to_string(),
        ];
        let not_ready = match &found {
            Err(why) => Some(why.clone()),
            Ok(f) if !f.iter().any(|f| f == FEATURE) => Some(format!(
                "centralized root access is not enabled (`{FEATURE}` is off): {HOW_TO_ENABLE}"
            )),
            Ok(f) => {
                if !f.iter().any(|f| f == SESSIONS) {
                    notes.push(format!("`{SESSIONS}` (privileged root sessions) is off: if `AssumeRoot` is refused, run `aws iam enable-organizations-root-sessions` from the management account."));
                }
                None
            }
        };
        let (management, not_ready) = (&management, &not_ready);
        let decide = |account: String| async move {
            let root_arn = format!(
                "arn:{}:iam::{account}:root",
                aws::partition(&ctx.identity.arn)
            );
            if ctx.identity.root_accounts().contains(&account) {
                Disposition::Skip {
                    reason: SkipReason::Executor,
                }
            } else if account == *management {
                Disposition::OutOfReach {
                    reason: "the management account's root user cannot be reached by `AssumeRoot`, which targets member accounts only: secure it by hand (sign in as root, delete its access keys, keep its MFA)".into(),
                }
            } else if let Some(reason) = not_ready {
                Disposition::OutOfReach {
                    reason: reason.clone(),
                }
            } else {
                match audit(ctx, &account).await {
                    Err(error) => Disposition::Unreadable { error },
                    Ok(found) if found.is_empty() => Disposition::Unchanged {
                        reason: "its root user has no password, access keys, signing certificates or MFA devices".into(),
                    },
                    Ok(found) => Disposition::Change {
                        op: Op::DeleteRootCredentials(DeleteRootCredentials {
                            account,
                            root_arn,
                            found,
                        }),
                    },
                }
            }
        };
        super::moves::each_account(ctx, accounts, decide, sink).await;
        if accounts.contains(&ctx.identity.account) {
            notes.push(format!(
                "The executor's own account {} is among them: its root user loses its credentials too (the executor's role or user is untouched).",
                ctx.identity.account
            ));
        }
        Ok(notes)
    }
}

/// The enabled centralized root access features, or why they cannot be
/// read (said with how to turn them on). An error that says nothing about
/// the feature (a denial, throttling past its retries) fails the step.
async fn features(ctx: &Ctx) -> Result<Result<Vec<String>, String>, AwsError> {
    let iam = ctx.iam();
    let r = ctx
        .call("iam:ListOrganizationsFeatures", || {
            iam.list_organizations_features().send()
        })
        .await;
    // Error names per the IAM API reference, ListOrganizationsFeatures; the
    // wire codes carry an `Exception` suffix.
    let code = |e: &AwsError| {
        e.code
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches("Exception")
            .to_string()
    };
    Ok(match r {
        Ok(out) => Ok(out
            .enabled_features()
            .iter()
            .map(|f| f.as_str().to_string())
            .collect()),
        Err(e) => Err(match code(&e).as_str() {
            "ServiceAccessNotEnabled" => format!(
                "trusted access for IAM is not enabled in Organizations: {HOW_TO_ENABLE}"
            ),
            "AccountNotManagementOrDelegatedAdministrator" => {
                "the executor's account is neither the management account nor the delegated administrator for IAM: run this step from one of them".into()
            }
            "OrganizationNotInAllFeaturesMode" => {
                "the organization does not have all features enabled, which centralized root access needs: enable all features (Organizations console, Settings; every member account must approve), then centralized root access".into()
            }
            "OrganizationNotFound" => "the executor's account is in no organization".into(),
            _ => return Err(e),
        }),
    })
}

/// The root user's credentials in `account`, read in an audit session.
async fn audit(ctx: &Ctx, account: &str) -> Result<RootCredentials, AwsError> {
    read(&root_ctx(ctx, account, Task::Audit).await?).await
}

/// Deletes every credential of a member account's root user, in a root
/// session scoped to `IAMDeleteRootUserCredentials`. `found` is what the
/// plan saw; a credential added since is deleted too, and the result
/// records what was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteRootCredentials {
    pub account: String,
    /// `arn:…:iam::{account}:root`: what `sts:AssumeRoot` is allowed on.
    pub root_arn: String,
    pub found: RootCredentials,
}

impl Call for DeleteRootCredentials {
    fn describe(&self) -> String {
        let Self { account, found, .. } = self;
        format!(
            "sts:AssumeRoot TargetPrincipal={account} (IAMDeleteRootUserCredentials), then delete the root user's {}",
            found.describe()
        )
    }

    fn drift(&self) -> String {
        format!("its root user has {}", self.found.describe())
    }

    /// `AssumeRoot` is asked of the management account (or the delegated
    /// administrator), whatever account it targets.
    fn management_call(&self) -> bool {
        true
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![("sts:AssumeRoot", self.root_arn.clone())]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let root = root_ctx(ctx, &self.account, Task::Delete).await?;
        let deleted = delete_all(&root).await?;
        Ok(Some(serde_json::json!({ "deleted": deleted })))
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Irreversible {
            why: IRREVERSIBLE.into(),
        }
    }
}
