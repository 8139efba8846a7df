//! Judgments of the attacker's persistence and evasion moves that outlive
//! the credential they were made with: a federation token, a deleted trail.

use super::{Exposed, ExposureKind};
use crate::tabletop::actor::{Actor, policies_of};
use crate::tabletop::admin::Admin;
use crate::tabletop::evaluate::{Decision, Request, evaluate};
use crate::tabletop::moves::{MINTED, MoveRecord};

/// A federation token works until it expires (up to 36 hours), whatever
/// happens to the key it was minted with: "deactivating the key alone fails"
/// (Stratus `persistence.sts-federation-token`). A deny in the user's own
/// policies binds its federated sessions, so it is held when the user is
/// quarantined, or its sessions revoked with a cutoff after the minting.
pub async fn federation_token(admin: &Admin, m: &MoveRecord, when: &str) -> Option<Exposed> {
    let user = m.subject.trim_start_matches("user ");
    let token = m.resources.first()?;
    let minted = minted_at(m);
    if held(admin, user, minted).await {
        return None;
    }
    Some(Exposed {
        kind: ExposureKind::Open,
        what: format!("federation token {token} of user {user}"),
        why: format!(
            "minted with {user}'s access key at {when}, it works until it expires whatever becomes of the key: revoke {user}'s sessions after it was minted (iam.revoke_user_sessions, or `--hold`) or quarantine the user"
        ),
    })
}

/// When a move minted its session or token (its `minted:` resource).
fn minted_at(m: &MoveRecord) -> Option<jiff::Timestamp> {
    m.resources
        .iter()
        .find_map(|r| r.strip_prefix(MINTED))
        .and_then(|t| t.parse().ok())
}

/// Whether the user's policies, all of them as AWS evaluates them, deny a
/// session of the user minted at `minted` explicitly: a quarantine, a
/// revocation whose cutoff is later, the managed fallback under
/// `/breakglass/`. Unread proves nothing.
async fn held(admin: &Admin, user: &str, minted: Option<jiff::Timestamp>) -> bool {
    let actor = Actor::User(user.to_string());
    let (Ok(policies), Ok(got)) = (
        policies_of(admin, &actor).await,
        admin.iam().get_user().user_name(user).send().await,
    ) else {
        return false;
    };
    let Some(arn) = got.user().map(|u| u.arn().to_string()) else {
        return false;
    };
    let mut request = Request {
        action: "ec2:DescribeInstances".into(),
        resource: "*".into(),
        principal: arn.clone(),
        management_account: true,
        ..Request::default()
    }
    .with("aws:PrincipalArn", arn);
    if let Some(t) = minted {
        request = request.with("aws:TokenIssueTime", t.to_string());
    }
    matches!(evaluate(&request, &policies), Decision::Denied(why) if why.contains("explicit deny"))
}

/// A console session outlives the password it was opened with (deleting a
/// login profile ends no session): held only by a quarantine, or a
/// revocation of the user's sessions with a cutoff after the sign-in.
pub async fn console_session(admin: &Admin, m: &MoveRecord, when: &str) -> Option<Exposed> {
    let user = m.subject.trim_start_matches("user ");
    if held(admin, user, minted_at(m)).await {
        return None;
    }
    Some(Exposed {
        kind: ExposureKind::Open,
        what: format!("console session of user {user}"),
        why: format!(
            "opened by the attacker at {when} with {user}'s password and no MFA: it lasts until it expires, password deleted or not: revoke {user}'s sessions after the sign-in (iam.revoke_user_sessions) or quarantine the user"
        ),
    })
}

/// A deleted trail records nothing, and no step brings it back.
pub async fn deleted_trail(
    admin: &Admin,
    m: &MoveRecord,
    region: &str,
    when: &str,
) -> Option<Exposed> {
    let trail = m.subject.trim_start_matches("trail ");
    let exists = admin
        .cloudtrail(region)
        .get_trail()
        .name(trail)
        .send()
        .await
        .is_ok();
    (!exists).then(|| Exposed {
        kind: ExposureKind::Lost,
        what: format!("CloudTrail trail {trail} ({region})"),
        why: format!(
            "deleted by the attacker at {when}: nothing is logged since, and no step brings a trail back. In member accounts the `preserve` SCP (or the freeze) denies cloudtrail:DeleteTrail; in the management account only cutting the attacker's credentials first does: recreate the trail"
        ),
    })
}
