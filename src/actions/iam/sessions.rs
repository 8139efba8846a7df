//! Whose session a temporary key is: the owner of a stolen `ASIA…` key,
//! found through CloudTrail, never widened to everyone when not found.

use super::*;

pub(super) fn missing_key(ctx: &Ctx, key_id: &str, reason: String) -> Planned {
    Planned {
        target: Target {
            scope: scope(ctx),
            resource: Resource::AccessKey {
                user: String::new(),
                key_id: key_id.to_string(),
            },
        },
        disposition: Disposition::Missing { reason },
    }
}

/// A stolen session this step cannot contain as asked: it fails the step
/// whatever `on_missing` says, since the key stays usable.
pub(super) fn uncontained_session(ctx: &Ctx, key_id: &str, reason: String) -> Planned {
    Planned {
        disposition: Disposition::Unreadable {
            error: local("iam.revoke_session", reason),
        },
        ..missing_key(ctx, key_id, String::new())
    }
}

/// Who minted a step's temporary keys.
pub(super) struct SessionOwners {
    /// Users whose GetSessionToken or GetFederationToken sessions they are.
    pub users: Vec<Principal>,
    pub roles: Vec<RoleSessions>,
}

/// A role and which of its sessions were stolen.
pub(super) struct RoleSessions {
    pub role: Principal,
    /// The `aws:userid` of each stolen session whose name is known.
    pub userids: BTreeSet<String>,
    /// Keys whose session is not known by name (the role was named without
    /// `session_name`).
    pub unnamed: Vec<String>,
}

/// One stolen key's session of a role, as far as it is known.
enum SessionRef {
    /// From CloudTrail: the session's `principalId` (its `aws:userid`),
    /// and the key it was read for.
    UserId(String, String),
    /// From the selector's `session_name`: the role's id goes in front.
    Name(String),
    /// Not known: the key id.
    Unknown(String),
}

/// The users and roles that minted a step's temporary keys.
pub(super) async fn select_session_owners(
    ctx: &Ctx,
    sel: &SessionSelector,
    scope: crate::spec::SessionScope,
    out: &mut Vec<Planned>,
) -> Result<SessionOwners, AwsError> {
    let named = |v: &Option<String>| v.clone().filter(|n| !n.trim().is_empty());
    let mut users = BTreeSet::new();
    let mut roles: BTreeMap<String, Vec<SessionRef>> = BTreeMap::new();
    // Named without a key: the role and the session's name say it all.
    let keys: Vec<&String> = sel
        .key_ids
        .iter()
        .filter(|k| !k.trim().is_empty())
        .collect();
    if let (true, Some(role), Some(session)) =
        (keys.is_empty(), named(&sel.role), named(&sel.session_name))
    {
        roles
            .entry(role)
            .or_default()
            .push(SessionRef::Name(session));
    }
    for key_id in keys {
        let owner = match (named(&sel.role), named(&sel.user)) {
            (Some(role), _) => {
                let session = match named(&sel.session_name) {
                    Some(n) => SessionRef::Name(n),
                    None => SessionRef::Unknown(key_id.clone()),
                };
                roles.entry(role).or_default().push(session);
                continue;
            }
            (None, Some(user)) => Ok((PrincipalKind::User, user, None)),
            (None, None) => match session_owner(ctx, key_id).await? {
                // Not found here, as a name is: `on_missing` decides.
                Err(Unminted::Elsewhere(reason)) => {
                    out.push(missing_key(ctx, key_id, reason));
                    continue;
                }
                Err(Unminted::Unknown(reason)) => Err(reason),
                Ok(minter) => Ok(minter),
            },
        };
        match owner {
            Ok((PrincipalKind::Role, name, userid)) => {
                let session = match userid {
                    Some(id) => SessionRef::UserId(id, key_id.clone()),
                    None => SessionRef::Unknown(key_id.clone()),
                };
                roles.entry(name).or_default().push(session);
            }
            Ok((PrincipalKind::User, name, _)) => {
                users.insert(name);
            }
            Err(reason) => out.push(uncontained_session(ctx, key_id, reason)),
        }
    }
    let mut found = SessionOwners {
        users: Vec::new(),
        roles: Vec::new(),
    };
    let wanted = users
        .into_iter()
        .map(|n| (PrincipalKind::User, n, Vec::new()))
        .chain(
            roles
                .into_iter()
                .map(|(n, sessions)| (PrincipalKind::Role, n, sessions)),
        );
    for (kind, name, sessions) in wanted {
        let Some(p) = get_principal(ctx, kind, &name).await? else {
            out.push(missing(ctx, kind, &name));
            continue;
        };
        // A session this step cannot end must fail it, never pass as
        // "skipped": the stolen key would stay usable.
        let why = if p.path.starts_with("/aws-reserved/sso.amazonaws.com/") {
            Some(format!(
                "{} is an IAM Identity Center role (AWSReservedSSO_*), which IAM cannot edit: contain the Identity Center user instead (a deny in its permission set, then ProvisionPermissionSet)",
                p.name
            ))
        } else {
            guard(ctx, kind, &p).map(|reason| {
                format!(
                    "the key was minted by {} ({reason}): its sessions cannot be revoked from this identity; contain it from another",
                    p.name
                )
            })
        };
        if let Some(reason) = why {
            out.push(Planned {
                target: match kind {
                    PrincipalKind::User => user_target(ctx, &p),
                    PrincipalKind::Role => role_target(ctx, &p),
                },
                disposition: Disposition::Unreadable {
                    error: local("iam.revoke_session", reason),
                },
            });
            continue;
        }
        if kind == PrincipalKind::User {
            found.users.push(p);
            continue;
        }
        let mut role = RoleSessions {
            role: p,
            userids: BTreeSet::new(),
            unnamed: Vec::new(),
        };
        for s in sessions {
            match s {
                // The session's role id must be this role's: a role deleted
                // and made again under the same name has another id, and a
                // deny naming the old one would deny nothing.
                // Under `all_sessions` the role's own sessions are revoked
                // by issue time, whatever the session's name.
                SessionRef::UserId(id, key)
                    if scope == crate::spec::SessionScope::Session
                        && id.split(':').next() != Some(role.role.id.as_str()) =>
                {
                    out.push(uncontained_session(
                        ctx,
                        &key,
                        format!(
                            "CloudTrail names session {id}, but role {} has id {}: the role was made again since, and the session cannot be denied by name; revoke every session of the role (`with: {{ scope: all_sessions }}`)",
                            role.role.name, role.role.id
                        ),
                    ));
                }
                SessionRef::UserId(id, _) => {
                    role.userids.insert(id);
                }
                SessionRef::Name(n) => {
                    role.userids.insert(format!("{}:{n}", role.role.id));
                }
                SessionRef::Unknown(key) => role.unnamed.push(key),
            }
        }
        found.roles.push(role);
    }
    Ok(found)
}

/// Who minted a temporary key: `sts:GetAccessKeyInfo` tells the account,
/// CloudTrail's event history (`LookupEvents` by `AccessKeyId`, 90 days of
/// management events in each region) the principal, from the
/// `userIdentity` of any event made with the key. The API references of
/// both document exactly this use.
pub(super) async fn session_owner(
    ctx: &Ctx,
    key_id: &str,
) -> Result<Result<Minter, Unminted>, AwsError> {
    let hint = "name it with --var role=NAME --var session=NAME (or --var user=NAME for GetSessionToken and GetFederationToken sessions)";
    let sts = ctx.clients.sts();
    let info = ctx
        .call("sts:GetAccessKeyInfo", || {
            sts.get_access_key_info().access_key_id(key_id).send()
        })
        .await?;
    let account = info.account().unwrap_or_default();
    if !account.is_empty() && account != ctx.identity.account {
        return Ok(Err(Unminted::Elsewhere(format!(
            "{key_id} belongs to account {account}, not {}: run in that account (--accounts {account})",
            ctx.identity.account
        ))));
    }
    let mut regions: Vec<String> = ctx.regions.clone();
    if !regions.iter().any(|r| r == "us-east-1") {
        regions.push("us-east-1".into());
    }
    let attribute = aws_sdk_cloudtrail::types::LookupAttribute::builder()
        .attribute_key(aws_sdk_cloudtrail::types::LookupAttributeKey::AccessKeyId)
        .attribute_value(key_id)
        .build()
        .map_err(|e| local("cloudtrail:LookupEvents", e.to_string()))?;
    for region in &regions {
        let trail = ctx.clients.cloudtrail(region);
        let events = ctx
            .call_in(region, "cloudtrail:LookupEvents", || {
                trail
                    .lookup_events()
                    .lookup_attributes(attribute.clone())
                    .max_results(5)
                    .send()
            })
            .await?;
        for e in events.events() {
            let Some(json) = e.cloud_trail_event() else {
                continue;
            };
            if let Some(owner) = minted_by(json) {
                return Ok(owner.map_err(Unminted::Unknown));
            }
        }
    }
    Ok(Err(Unminted::Unknown(format!(
        "cannot tell who minted {key_id}: CloudTrail holds no event made with it in {}; {hint}",
        regions.join(", ")
    ))))
}

/// Why a key's minter is not known here.
pub(super) enum Unminted {
    /// The key is another account's: not this account's to contain (in a
    /// fanned-out run, the owning account's step is).
    Elsewhere(String),
    /// Nobody can name it (or it is root's): the key stays usable.
    Unknown(String),
}

/// Who minted a session: the principal's kind and name, and for a role
/// session its `aws:userid` (`<role id>:<session name>`) when known.
pub(super) type Minter = (PrincipalKind, String, Option<String>);

/// The principal behind a CloudTrail event's `userIdentity`, as the
/// CloudTrail userIdentity reference describes it: an `AssumedRole`
/// session's issuer is a role, and its `principalId` is "the role ID and the
/// role session name" (the `aws:userid` of the session); an `IAMUser` using
/// a temporary key made it with GetSessionToken; a `FederatedUser`'s issuer
/// is the IAM user that called GetFederationToken. A root session cannot be
/// revoked by policy.
pub(super) fn minted_by(event_json: &str) -> Option<Result<Minter, String>> {
    let event: serde_json::Value = serde_json::from_str(event_json).ok()?;
    let who = &event["userIdentity"];
    let issuer = &who["sessionContext"]["sessionIssuer"];
    let name = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    match who["type"].as_str()? {
        "AssumedRole" => {
            let session = who["principalId"]
                .as_str()
                .filter(|id| is_session_userid(id))
                .map(str::to_string);
            name(&issuer["userName"]).map(|n| Ok((PrincipalKind::Role, n, session)))
        }
        "IAMUser" => name(&who["userName"]).map(|n| Ok((PrincipalKind::User, n, None))),
        "FederatedUser" => name(&issuer["userName"]).map(|n| Ok((PrincipalKind::User, n, None))),
        "Root" => Some(Err(
            "the key is a session of the account's root user: no IAM policy can revoke it (rotate the root credentials)".into(),
        )),
        other => Some(Err(format!(
            "the key belongs to a {other} identity, which IAM policies cannot revoke"
        ))),
    }
}

/// Why a temporary key cannot be contained as an access key.
pub fn temporary_key_reason(key_id: &str) -> String {
    format!(
        "{key_id} is a temporary session key (ASIA…) issued by STS, not an IAM access key: \
         no key step can reach it. Contain it by revoking the sessions of the role or user \
         that minted it (playbooks/compromised-session.yaml)"
    )
}

/// The user in this account that owns an access key, or why there is none.
/// An `ASIA…` id is never looked up: it is a session, not a key. The owner
/// `GetAccessKeyLastUsed` names is confirmed with `ListAccessKeys` in this
/// account, so a key of another account never selects a same-named user here.
pub(super) async fn resolve_key(
    ctx: &Ctx,
    key_id: &str,
) -> Result<Result<String, String>, AwsError> {
    if key_id.starts_with("ASIA") {
        return Ok(Err(temporary_key_reason(key_id)));
    }
    let account = &ctx.identity.account;
    let Some(owner) = key_owner(ctx, key_id).await? else {
        return Ok(Err(format!(
            "no IAM user in account {account} owns access key {key_id} (a typo, a deleted key, or a key of another account)"
        )));
    };
    let listed = match list_keys(ctx, &owner).await {
        Ok(keys) => keys,
        Err(e) if e.kind == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    if listed.iter().any(|(k, _)| k == key_id) {
        Ok(Ok(owner))
    } else {
        Ok(Err(format!(
            "access key {key_id} is not a key of any user in account {account}"
        )))
    }
}

/// The user that owns an access key (GetAccessKeyLastUsed answers for any key in the account).
pub(super) async fn key_owner(ctx: &Ctx, key_id: &str) -> Result<Option<String>, AwsError> {
    let r = ctx
        .call("iam:GetAccessKeyLastUsed", || {
            ctx.iam()
                .get_access_key_last_used()
                .access_key_id(key_id)
                .send()
        })
        .await;
    match r {
        Ok(o) => Ok(o.user_name().map(str::to_string)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
