//! Who `sso.contain_users` contains: the Identity Center instance, the
//! users the step names (by name, email or group), and the screening that
//! keeps the executor's own user out.

use std::collections::BTreeSet;

use aws_sdk_identitystore::types::{AlternateIdentifier, MemberId, UniqueAttribute};
use aws_smithy_types::Document;
use futures_util::{StreamExt, stream};

use super::ContainUsersParams;
use crate::actions::regions::target_in;
use crate::actions::{Ctx, Disposition, Planned, Sink};
use crate::aws::{AwsError, ErrorKind, local};
use crate::targets::{Resource, SkipReason};

/// The Identity Center instance the step acts on.
pub(super) struct Store {
    pub region: String,
    pub instance_arn: String,
    pub identity_store_id: String,
}

/// A user the step contains: identity store id and user name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct User {
    pub id: String,
    pub name: String,
}

pub(super) const USER: &str = "Identity Center user";
const GROUP: &str = "Identity Center group";

pub(super) fn named(kind: &str, id: impl Into<String>) -> Resource {
    Resource::Named {
        kind: kind.into(),
        id: id.into(),
    }
}

pub(super) async fn instance(ctx: &Ctx, region: &str) -> Result<Store, AwsError> {
    let sso = ctx.clients.sso_admin(region);
    let pages = ctx
        .pages(
            Some(region),
            "sso:ListInstances",
            |token| sso.list_instances().set_next_token(token).send(),
            |page| page.next_token().map(str::to_string),
        )
        .await?;
    let found: Vec<Store> = pages
        .iter()
        .flat_map(|p| p.instances())
        .filter_map(|i| {
            Some(Store {
                region: region.to_string(),
                instance_arn: i.instance_arn()?.to_string(),
                identity_store_id: i.identity_store_id()?.to_string(),
            })
        })
        .collect();
    // More than one (an organization instance and account instances): which
    // one the user signs in through is not for breakglass to guess.
    if found.len() > 1 {
        let arns: Vec<&str> = found.iter().map(|s| s.instance_arn.as_str()).collect();
        return Err(local(
            "sso:ListInstances",
            format!(
                "{} Identity Center instances in {region} ({}): contain the users from the account that holds theirs",
                found.len(),
                arns.join(", ")
            ),
        ));
    }
    found
        .into_iter()
        .next()
        .ok_or_else(|| {
            local(
                "sso:ListInstances",
                format!("no IAM Identity Center instance in {region}: name its region in `with: {{ region: … }}`"),
            )
        })
}

fn unique(path: &str, value: &str) -> Result<AlternateIdentifier, AwsError> {
    UniqueAttribute::builder()
        .attribute_path(path)
        .attribute_value(Document::String(value.to_string()))
        .build()
        .map(AlternateIdentifier::UniqueAttribute)
        .map_err(|e| local("identitystore:UniqueAttribute", e.to_string()))
}

/// Every user the step names, by id. A name, email or group that does not
/// exist is a missing target, never a reason to reach anyone else.
pub(super) async fn resolve(
    ctx: &Ctx,
    store: &Store,
    p: &ContainUsersParams,
    sink: &Sink,
    notes: &mut Vec<String>,
) -> Result<(BTreeSet<String>, BTreeSet<String>), AwsError> {
    let ids = ctx.clients.identitystore(&store.region);
    let (region, sid) = (store.region.as_str(), store.identity_store_id.as_str());
    let (mut users, mut groups) = (BTreeSet::new(), BTreeSet::new());
    let asked = p
        .users
        .iter()
        .map(|n| ("userName", n))
        .chain(p.emails.iter().map(|e| ("emails.value", e)));
    for (path, value) in asked {
        let who = unique(path, value)?;
        let found = ctx
            .call_in(region, "identitystore:GetUserId", || {
                ids.get_user_id()
                    .identity_store_id(sid)
                    .alternate_identifier(who.clone())
                    .send()
            })
            .await;
        match found {
            Ok(out) => {
                users.insert(out.user_id().to_string());
            }
            Err(e) if e.kind == ErrorKind::NotFound => sink.emit(Planned {
                target: target_in(ctx, region, named(USER, value)),
                disposition: Disposition::Missing {
                    reason: format!("no user with {path} {value} in identity store {sid}"),
                },
            }),
            Err(e) => return Err(e),
        }
    }
    for group in &p.groups {
        let which = unique("displayName", group)?;
        let found = ctx
            .call_in(region, "identitystore:GetGroupId", || {
                ids.get_group_id()
                    .identity_store_id(sid)
                    .alternate_identifier(which.clone())
                    .send()
            })
            .await;
        let group_id = match found {
            Ok(out) => out.group_id().to_string(),
            Err(e) if e.kind == ErrorKind::NotFound => {
                sink.emit(Planned {
                    target: target_in(ctx, region, named(GROUP, group)),
                    disposition: Disposition::Missing {
                        reason: format!("no group named {group} in identity store {sid}"),
                    },
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let pages = ctx
            .pages(
                Some(region),
                "identitystore:ListGroupMemberships",
                |token| {
                    ids.list_group_memberships()
                        .identity_store_id(sid)
                        .group_id(&group_id)
                        .set_next_token(token)
                        .send()
                },
                |page| page.next_token().map(str::to_string),
            )
            .await?;
        let members: Vec<String> = pages
            .iter()
            .flat_map(|p| p.group_memberships())
            .filter_map(|m| match m.member_id() {
                Some(MemberId::UserId(u)) => Some(u.clone()),
                _ => None,
            })
            .collect();
        if members.is_empty() {
            notes.push(format!("group {group} has no members"));
        }
        users.extend(members);
        groups.insert(group_id);
    }
    Ok((users, groups))
}

/// The executor's Identity Center user names: the session names of every
/// `AWSReservedSSO_*` role session in its credential chain (Identity Center
/// names a user's role session after the user), lowercased.
fn executor_sessions(ctx: &Ctx) -> BTreeSet<String> {
    sso_session_names(
        std::iter::once(ctx.identity.arn.as_str())
            .chain(ctx.identity.chain.iter().map(|h| h.principal.as_str())),
    )
}

/// Whether user `name` may be the executor: its session name is the user
/// name, cut to the 64 characters a role session name holds (STS
/// `RoleSessionName`), so a cut name matches every user it begins.
fn is_executor(sessions: &BTreeSet<String>, name: &str) -> bool {
    let name = name.to_lowercase();
    sessions
        .iter()
        .any(|s| *s == name || (s.chars().count() == 64 && name.starts_with(s.as_str())))
}

fn sso_session_names<'a>(arns: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    arns.filter_map(|arn| arn.split_once(":assumed-role/"))
        .filter_map(|(_, rest)| rest.split_once('/'))
        .filter(|(role, _)| role.starts_with("AWSReservedSSO_"))
        .map(|(_, session)| session.to_lowercase())
        .collect()
}

/// Reads each user's name (and whether it comes from an external identity
/// provider); the executor's own user is skipped, never contained.
pub(super) async fn screen(
    ctx: &Ctx,
    store: &Store,
    users: BTreeSet<String>,
    sink: &Sink,
    notes: &mut Vec<String>,
) -> Vec<User> {
    let ids = ctx.clients.identitystore(&store.region);
    let ids = &ids;
    let own = executor_sessions(ctx);
    let read = stream::iter(users)
        .map(|id| async move {
            let out = ctx
                .call_in(&store.region, "identitystore:DescribeUser", || {
                    ids.describe_user()
                        .identity_store_id(&store.identity_store_id)
                        .user_id(&id)
                        .send()
                })
                .await;
            (id, out)
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut chosen = Vec::new();
    for (id, out) in read {
        let out = match out {
            Ok(out) => out,
            Err(error) => {
                sink.emit(Planned {
                    target: target_in(ctx, &store.region, named(USER, &id)),
                    disposition: Disposition::Unreadable { error },
                });
                continue;
            }
        };
        let name = out.user_name().unwrap_or(&id).to_string();
        if is_executor(&own, &name) {
            sink.emit(Planned {
                target: target_in(ctx, &store.region, named(USER, &name)),
                disposition: Disposition::Skip {
                    reason: SkipReason::Executor,
                },
            });
            continue;
        }
        if !out.external_ids().is_empty() {
            notes.push(format!(
                "{name} comes from an external identity provider (SCIM): disable it there too, or the provider may add it to groups again"
            ));
        }
        chosen.push(User { id, name });
    }
    chosen.sort();
    notes.push(
        "AWS access portal sessions cannot be ended by API: delete the contained users' active sessions in the IAM Identity Center console (Users → the user → Active sessions)".into(),
    );
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_session_name_protects_every_user_it_begins() {
        let long = format!("{}@example.com", "a".repeat(70));
        let cut: String = long.chars().take(64).collect();
        let sessions: BTreeSet<String> = [cut, "bob".to_string()].into();
        assert!(is_executor(&sessions, &long));
        assert!(is_executor(&sessions, "Bob"));
        assert!(!is_executor(&sessions, "bobby"));
    }

    #[test]
    fn the_executors_identity_center_user_is_found_in_its_chain() {
        let chain = [
            "arn:aws:iam::111122223333:user/ir/bootstrap",
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_IR_0123456789abcdef/Alice@Example.com",
            "arn:aws:sts::111122223333:assumed-role/IR-BreakGlass/bob",
        ];
        assert_eq!(
            sso_session_names(chain.into_iter()),
            ["alice@example.com".to_string()].into()
        );
    }
}
