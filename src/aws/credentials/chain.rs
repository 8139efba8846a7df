//! Which credentials a profile stands on, and the role hops above them,
//! read from the AWS config files as the CLI reads them.

use super::*;

/// Where the chain starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Static {
        profile: String,
        key: String,
        secret: Secret,
        token: Option<Secret>,
    },
    Process {
        profile: String,
        command: String,
    },
    Sso {
        profile: String,
        /// The `sso_session` name, or the start URL of a legacy profile:
        /// what names the token file `aws sso login` wrote.
        cache_key: String,
        region: String,
        account_id: String,
        role_name: String,
    },
    WebIdentity {
        profile: String,
        token_file: String,
        role_arn: String,
        session_name: Option<String>,
    },
    Instance {
        profile: String,
        /// `Ec2InstanceMetadata` or `EcsContainer`.
        source: String,
    },
}

impl Base {
    pub(super) fn profile(&self) -> &str {
        match self {
            Base::Static { profile, .. }
            | Base::Process { profile, .. }
            | Base::Sso { profile, .. }
            | Base::WebIdentity { profile, .. }
            | Base::Instance { profile, .. } => profile,
        }
    }

    pub(super) fn via(&self) -> &'static str {
        match self {
            Base::Static { .. } => "static key",
            Base::Process { .. } => "credential_process",
            Base::Sso { .. } => "sso",
            Base::WebIdentity { .. } => "web identity",
            Base::Instance { .. } => "instance role",
        }
    }
}

/// One `AssumeRole` of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleHop {
    /// The profile it comes from; `None` for the playbook's `executor.assume_role`.
    pub profile: Option<String>,
    pub role_arn: String,
    pub mfa_serial: Option<String>,
    pub external_id: Option<String>,
    pub duration_seconds: Option<i32>,
    pub session_name: Option<String>,
}

impl RoleHop {
    pub(super) fn label(&self) -> String {
        match &self.profile {
            Some(p) => format!("profile `{p}` assumes {}", self.role_arn),
            None => format!("executor.assume_role {}", self.role_arn),
        }
    }
}

/// The profile's own settings for the chain: its base and the roles assumed
/// on top of it, innermost first.
pub fn chain_of(
    profiles: &ProfileSet,
    name: &str,
) -> Result<(Base, Vec<RoleHop>), CredentialError> {
    let mut hops = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut current = name.to_string();
    let base = loop {
        if seen.contains(&current) {
            return Err(Config(format!(
                "profile `{name}`: source_profile goes round in a circle ({} → {current})",
                seen.join(" → ")
            )));
        }
        let Some(p) = profiles.get_profile(&current) else {
            return Err(Config(match seen.last() {
                None => format!(
                    "profile `{current}` is in neither the AWS config file nor the credentials file"
                ),
                Some(from) => format!(
                    "profile `{from}` names source_profile `{current}`, which is in neither the AWS config file nor the credentials file"
                ),
            }));
        };
        seen.push(current.clone());
        let get = |k: &str| {
            p.get(k)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let Some(role_arn) = get("role_arn") else {
            break own_base(&current, &get, profiles)?;
        };
        if let Some(token_file) = get("web_identity_token_file") {
            break Base::WebIdentity {
                profile: current.clone(),
                token_file,
                role_arn,
                session_name: get("role_session_name"),
            };
        }
        let duration_seconds = match get("duration_seconds") {
            None => None,
            Some(d) => match d.parse::<i32>() {
                Ok(n) if (900..=43_200).contains(&n) => Some(n),
                _ => {
                    return Err(Config(format!(
                        "profile `{current}`: duration_seconds `{d}` is not a number of seconds from 900 to 43200"
                    )));
                }
            },
        };
        hops.push(RoleHop {
            profile: Some(current.clone()),
            role_arn,
            mfa_serial: get("mfa_serial"),
            external_id: get("external_id"),
            duration_seconds,
            session_name: get("role_session_name"),
        });
        match (get("source_profile"), get("credential_source")) {
            (Some(_), Some(_)) => {
                return Err(Config(format!(
                    "profile `{current}` sets both source_profile and credential_source: keep one"
                )));
            }
            (Some(src), None) if src == current => {
                break static_keys(&current, &get)?.ok_or_else(|| {
                    Config(format!(
                        "profile `{current}` is its own source_profile but holds no access keys"
                    ))
                })?;
            }
            (Some(src), None) => current = src,
            (None, Some(source)) => {
                break match source.as_str() {
                    "Environment" => {
                        return Err(Refused(format!(
                            "profile `{current}`: credential_source = Environment is refused: environment variables are never the break-glass credential (use a profile of its own)"
                        )));
                    }
                    "Ec2InstanceMetadata" | "EcsContainer" => Base::Instance {
                        profile: current.clone(),
                        source,
                    },
                    other => {
                        return Err(Config(format!(
                            "profile `{current}`: credential_source `{other}` is not Ec2InstanceMetadata or EcsContainer"
                        )));
                    }
                };
            }
            (None, None) => {
                return Err(Config(format!(
                    "profile `{current}` has role_arn but neither source_profile nor credential_source: nothing to assume it with"
                )));
            }
        }
    };
    hops.reverse();
    Ok((base, hops))
}

pub(super) fn static_keys(
    profile: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Base>, CredentialError> {
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(key), Some(secret)) => Ok(Some(Base::Static {
            profile: profile.to_string(),
            key,
            secret: Secret(secret),
            token: get("aws_session_token").map(Secret),
        })),
        (None, None) => Ok(None),
        _ => Err(Config(format!(
            "profile `{profile}` has only one of aws_access_key_id and aws_secret_access_key"
        ))),
    }
}

/// A profile with no `role_arn`: keys, a process, or SSO.
pub(super) fn own_base(
    profile: &str,
    get: &dyn Fn(&str) -> Option<String>,
    profiles: &ProfileSet,
) -> Result<Base, CredentialError> {
    if let Some(base) = static_keys(profile, get)? {
        return Ok(base);
    }
    if let Some(command) = get("credential_process") {
        return Ok(Base::Process {
            profile: profile.to_string(),
            command,
        });
    }
    let need = |k: &str| {
        get(k).ok_or_else(|| Config(format!("profile `{profile}` is an SSO profile without {k}")))
    };
    if let Some(session) = get("sso_session") {
        let section = profiles.sso_session(&session).ok_or_else(|| {
            Config(format!(
                "profile `{profile}` names sso_session `{session}`, which has no [sso-session {session}] section"
            ))
        })?;
        let region = section
            .get("sso_region")
            .map(str::to_string)
            .ok_or_else(|| Config(format!("[sso-session {session}] has no sso_region")))?;
        return Ok(Base::Sso {
            profile: profile.to_string(),
            cache_key: session,
            region,
            account_id: need("sso_account_id")?,
            role_name: need("sso_role_name")?,
        });
    }
    if let Some(start_url) = get("sso_start_url") {
        return Ok(Base::Sso {
            profile: profile.to_string(),
            cache_key: start_url,
            region: need("sso_region")?,
            account_id: need("sso_account_id")?,
            role_name: need("sso_role_name")?,
        });
    }
    if get("web_identity_token_file").is_some() {
        return Err(Config(format!(
            "profile `{profile}` has web_identity_token_file but no role_arn to assume with it"
        )));
    }
    Err(Config(format!(
        "profile `{profile}` holds no credential: no access keys, credential_process, SSO settings or role_arn"
    )))
}
