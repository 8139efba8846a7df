//! The break-glass credential, resolved by breakglass itself from a named
//! profile, hop by hop, and the playbook's `executor.assume_role` on top.
//!
//! aws-config's profile provider is not used for this: it builds its STS
//! client without the run's region, endpoint and timeouts, takes no MFA
//! code and ignores `duration_seconds`. Here every hop is explicit, so it
//! can be shown before confirmation, written to the audit log, protected
//! from the lockdown, sent to the endpoint the responder saw, and renewed
//! before it expires for however long a hold lasts.
//!
//! Supported: static keys (with or without a session token),
//! `credential_process`, IAM Identity Center (`sso_session` and legacy),
//! `web_identity_token_file`, `role_arn` with `source_profile` (any depth)
//! or `credential_source` (`Ec2InstanceMetadata`, `EcsContainer`), with
//! `mfa_serial`, `external_id`, `duration_seconds`, `role_session_name`.
//! `credential_source = Environment` is refused: environment variables are
//! never the break-glass credential.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::profile::ProfileSet;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use sha1::Digest;

use super::config::Factory;
use super::errors::{AwsError, ErrorKind, aws_error, local};
use super::identity::Hop;
use super::pacing::{RetryPolicy, Telemetry, call};

/// Renew a session this long before it expires.
pub const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// `AssumeRole`'s own default session length.
const DEFAULT_DURATION: i32 = 3600;

/// Why the credential could not be set up: a configuration problem (exit
/// 2), a call that failed (exit 1), or a refusal (exit 3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Refused(String),
}

use CredentialError::{Config, Failed, Refused};

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// For clap: a flag's value (an MFA code) held as a secret from the start.
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

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
    fn profile(&self) -> &str {
        match self {
            Base::Static { profile, .. }
            | Base::Process { profile, .. }
            | Base::Sso { profile, .. }
            | Base::WebIdentity { profile, .. }
            | Base::Instance { profile, .. } => profile,
        }
    }

    fn via(&self) -> &'static str {
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
    fn label(&self) -> String {
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

fn static_keys(
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
fn own_base(
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

/// Where MFA codes come from: `--mfa-code` (or standard input with `-`)
/// once, then the terminal when a session must be renewed.
pub struct Mfa {
    given: std::sync::Mutex<Option<Secret>>,
    terminal: bool,
}

impl Mfa {
    pub fn new(given: Option<Secret>, terminal: bool) -> Arc<Mfa> {
        Arc::new(Mfa {
            given: std::sync::Mutex::new(given),
            terminal,
        })
    }

    fn code(&self, hop: &RoleHop, serial: &str) -> Result<String, CredentialError> {
        if let Some(code) = self.given.lock().ok().and_then(|mut g| g.take()) {
            return Ok(code.0);
        }
        if !self.terminal {
            return Err(Refused(format!(
                "{} needs an MFA code from {serial}: pass --mfa-code (--mfa-code - reads it from standard input), or run on a terminal",
                hop.label()
            )));
        }
        let prompt = format!("MFA code for {serial} ({})", hop.role_arn);
        tokio::task::block_in_place(|| {
            dialoguer::Password::new()
                .with_prompt(prompt)
                .interact()
                .map(|c| c.trim().to_string())
                .map_err(|e| Refused(format!("MFA code not read: {e}")))
        })
    }
}

/// How one link of the chain gets its credentials.
enum Fetch {
    Static(Credentials),
    Process(aws_config::credential_process::CredentialProcessProvider),
    Instance(SharedCredentialsProvider),
    Sso {
        client: aws_sdk_sso::Client,
        profile: String,
        cache_key: String,
        account_id: String,
        role_name: String,
    },
    WebIdentity {
        sts: aws_sdk_sts::Client,
        profile: String,
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
    },
    Role {
        sts: aws_sdk_sts::Client,
        hop: RoleHop,
        session_name: String,
        /// The principal that assumes it, for error messages.
        caller: String,
        mfa: Arc<Mfa>,
    },
}

/// One link: its credentials kept, and fetched again when less than
/// [`RENEW_BEFORE`] is left of them; concurrent callers share one renewal.
struct Link {
    fetch: Fetch,
    label: String,
    cached: tokio::sync::Mutex<Option<Credentials>>,
    telemetry: Telemetry,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("label", &self.label).finish()
    }
}

/// A session renews when less than [`RENEW_BEFORE`] is left of it.
pub fn needs_renewal(expiry: Option<SystemTime>, now: SystemTime) -> bool {
    expiry.is_some_and(|e| e <= now + RENEW_BEFORE)
}

impl Link {
    fn new(fetch: Fetch, label: String) -> Link {
        Link {
            fetch,
            label,
            cached: tokio::sync::Mutex::new(None),
            telemetry: Telemetry::new(1),
        }
    }

    async fn current(&self) -> Result<Credentials, CredentialError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached
            .as_ref()
            .filter(|c| !needs_renewal(c.expiry(), SystemTime::now()))
        {
            return Ok(c.clone());
        }
        let (c, _) = self.fetch().await?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// A call of the chain, paced and retried like every call of a run.
    async fn sts_call<T, F, Fut>(&self, operation: &str, f: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsError>>,
    {
        let lane = self.telemetry.lane("", operation, None);
        call(&RetryPolicy::default(), &self.telemetry, &lane, f).await
    }

    /// New credentials, and the principal they act as when the answer says.
    async fn fetch(&self) -> Result<(Credentials, Option<String>), CredentialError> {
        match &self.fetch {
            Fetch::Static(c) => Ok((c.clone(), None)),
            Fetch::Process(p) => p
                .provide_credentials()
                .await
                .map(|c| (c, None))
                .map_err(|e| {
                    Failed(format!(
                        "{}: {}",
                        self.label,
                        aws_sdk_iam::error::DisplayErrorContext(&e)
                    ))
                }),
            Fetch::Instance(p) => p
                .provide_credentials()
                .await
                .map(|c| (c, None))
                .map_err(|e| {
                    Failed(format!(
                        "{}: {}",
                        self.label,
                        aws_sdk_iam::error::DisplayErrorContext(&e)
                    ))
                }),
            Fetch::Sso {
                client,
                profile,
                cache_key,
                account_id,
                role_name,
            } => {
                let token = sso_token(profile, cache_key)?;
                let op = "sso:GetRoleCredentials";
                let out = self
                    .sts_call(op, || async {
                        client
                            .get_role_credentials()
                            .access_token(&token)
                            .account_id(account_id)
                            .role_name(role_name)
                            .send()
                            .await
                            .map_err(|e| aws_error(op, e))
                    })
                    .await
                    .map_err(|e| {
                        let hint = match e.kind {
                            ErrorKind::AccessDenied => " (is the SSO login still valid? run `aws sso login`; does the user hold that permission set in that account?)",
                            _ => "",
                        };
                        Failed(format!("{}: {e}{hint}", self.label))
                    })?;
                let c = out.role_credentials().ok_or_else(|| {
                    Failed(format!(
                        "{}: the SSO portal returned no credentials",
                        self.label
                    ))
                })?;
                let (Some(key), Some(secret)) = (c.access_key_id(), c.secret_access_key()) else {
                    return Err(Failed(format!(
                        "{}: the SSO portal returned incomplete credentials",
                        self.label
                    )));
                };
                let expiry = u64::try_from(c.expiration())
                    .ok()
                    .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
                Ok((
                    Credentials::new(
                        key,
                        secret,
                        c.session_token().map(str::to_string),
                        expiry,
                        "breakglass-sso",
                    ),
                    None,
                ))
            }
            Fetch::WebIdentity {
                sts,
                profile,
                token_file,
                role_arn,
                session_name,
            } => {
                let token = std::fs::read_to_string(token_file).map_err(|e| {
                    Config(format!(
                        "profile `{profile}`: cannot read web_identity_token_file {}: {e}",
                        token_file.display()
                    ))
                })?;
                let op = "sts:AssumeRoleWithWebIdentity";
                let out = self
                    .sts_call(op, || async {
                        sts.assume_role_with_web_identity()
                            .role_arn(role_arn)
                            .role_session_name(session_name)
                            .web_identity_token(token.trim())
                            .send()
                            .await
                            .map_err(|e| aws_error(op, e))
                    })
                    .await
                    .map_err(|e| Failed(format!("{}: {e}", self.label)))?;
                let arn = out.assumed_role_user().map(|u| u.arn().to_string());
                session(out.credentials(), &self.label).map(|c| (c, arn))
            }
            Fetch::Role {
                sts,
                hop,
                session_name,
                caller,
                mfa,
            } => {
                let code = match &hop.mfa_serial {
                    Some(serial) => Some((serial.clone(), mfa.code(hop, serial)?)),
                    None => None,
                };
                let op = "sts:AssumeRole";
                let out = self
                    .sts_call(op, || async {
                        let mut req = sts
                            .assume_role()
                            .role_arn(&hop.role_arn)
                            .role_session_name(session_name)
                            .duration_seconds(hop.duration_seconds.unwrap_or(DEFAULT_DURATION))
                            .set_external_id(hop.external_id.clone());
                        if let Some((serial, code)) = &code {
                            req = req.serial_number(serial).token_code(code);
                        }
                        req.send().await.map_err(|e| aws_error(op, e))
                    })
                    .await
                    .map_err(|e| {
                        let hint = match e.kind {
                            ErrorKind::AccessDenied => format!(
                                " (is {caller} allowed sts:AssumeRole on it, and does the role's trust policy admit it{}?)",
                                if hop.mfa_serial.is_some() {
                                    " with this MFA device"
                                } else {
                                    ""
                                }
                            ),
                            _ => String::new(),
                        };
                        Failed(format!("{}: {e}{hint}", hop.label()))
                    })?;
                let arn = out.assumed_role_user().map(|u| u.arn().to_string());
                session(out.credentials(), &self.label).map(|c| (c, arn))
            }
        }
    }
}

fn session(
    c: Option<&aws_sdk_sts::types::Credentials>,
    label: &str,
) -> Result<Credentials, CredentialError> {
    let c = c.ok_or_else(|| Failed(format!("{label}: STS returned no credentials")))?;
    Ok(Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        SystemTime::try_from(*c.expiration()).ok(),
        "breakglass-session",
    ))
}

impl ProvideCredentials for Link {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.current()
                .await
                .map_err(|e| CredentialsError::provider_error(e.to_string()))
        })
    }
}

/// The access token `aws sso login` cached, as the AWS CLI stores it: in
/// `~/.aws/sso/cache/`, named by the SHA-1 of the session name (or of the
/// start URL for a legacy profile).
fn sso_token(profile: &str, cache_key: &str) -> Result<String, CredentialError> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| Config("HOME is not set: cannot find the SSO token cache".into()))?;
    let name = hex::encode(sha1::Sha1::digest(cache_key.as_bytes()));
    let path = PathBuf::from(home)
        .join(".aws/sso/cache")
        .join(format!("{name}.json"));
    let login = format!("run `aws sso login --profile {profile}`");
    let text = std::fs::read_to_string(&path).map_err(|_| {
        Config(format!(
            "profile `{profile}`: no SSO login found ({} is missing): {login}",
            path.display()
        ))
    })?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Config(format!(
            "profile `{profile}`: the SSO token cache {} is not JSON ({e}): {login}",
            path.display()
        ))
    })?;
    let token = doc["accessToken"].as_str().unwrap_or_default();
    let expires: Option<jiff::Timestamp> = doc["expiresAt"].as_str().and_then(|t| t.parse().ok());
    if token.is_empty() {
        return Err(Config(format!(
            "profile `{profile}`: the SSO token cache holds no access token: {login}"
        )));
    }
    match expires {
        Some(t) if t > jiff::Timestamp::now() => Ok(token.to_string()),
        Some(t) => Err(Config(format!(
            "profile `{profile}`: the SSO login expired at {t}: {login}"
        ))),
        None => Err(Config(format!(
            "profile `{profile}`: the SSO token cache has no expiresAt: {login}"
        ))),
    }
}

/// The chain, built and tried: the executor's credential, and each hop as
/// it will be shown, logged and protected.
pub struct Built {
    pub provider: SharedCredentialsProvider,
    pub hops: Vec<Hop>,
}

/// Builds every link of the chain on `factory` and fetches each once, in
/// order: a hop that fails is named with its cause before anything else
/// happens. `session_name` names the sessions breakglass starts itself.
pub async fn build(
    factory: &Factory,
    base: Base,
    roles: Vec<RoleHop>,
    session_name: &str,
    mfa: Arc<Mfa>,
) -> Result<Built, CredentialError> {
    let profile = base.profile().to_string();
    let label = format!("profile `{profile}` ({})", base.via());
    let mut hop = Hop {
        via: base.via().into(),
        profile: Some(profile.clone()),
        principal: String::new(),
        access_key_id: None,
        mfa_serial: None,
        session_name: None,
    };
    let fetch = match base {
        Base::Static {
            key, secret, token, ..
        } => {
            if token.is_none() {
                hop.access_key_id = Some(key.clone());
            }
            Fetch::Static(Credentials::new(
                key,
                secret.0,
                token.map(|t| t.0),
                None,
                "breakglass-profile",
            ))
        }
        Base::Process { command, .. } => {
            Fetch::Process(aws_config::credential_process::CredentialProcessProvider::new(command))
        }
        Base::Instance { source, .. } => Fetch::Instance(if source == "EcsContainer" {
            SharedCredentialsProvider::new(
                aws_config::ecs::EcsCredentialsProvider::builder().build(),
            )
        } else {
            SharedCredentialsProvider::new(
                aws_config::imds::credentials::ImdsCredentialsProvider::builder().build(),
            )
        }),
        Base::Sso {
            cache_key,
            region,
            account_id,
            role_name,
            ..
        } => Fetch::Sso {
            client: factory.sso(&region),
            profile: profile.clone(),
            cache_key,
            account_id,
            role_name,
        },
        Base::WebIdentity {
            token_file,
            role_arn,
            session_name: named,
            ..
        } => Fetch::WebIdentity {
            sts: factory.sts(&factory.config(None)),
            profile: profile.clone(),
            token_file: PathBuf::from(token_file),
            role_arn,
            session_name: named.unwrap_or_else(|| session_name.to_string()),
        },
    };
    let first = Link::new(fetch, label.clone());
    let (creds, arn) = first.fetch().await?;
    if hop.access_key_id.is_none() && creds.access_key_id().starts_with("AKIA") {
        hop.access_key_id = Some(creds.access_key_id().to_string());
    }
    *first.cached.lock().await = Some(creds);
    let mut provider = SharedCredentialsProvider::new(first);
    hop.principal = match arn {
        Some(arn) => arn,
        None => caller_arn(factory, &provider, &label).await?,
    };
    let mut hops = vec![hop];
    for role in roles {
        let caller = hops.last().map(|h| h.principal.clone()).unwrap_or_default();
        let session = role
            .session_name
            .clone()
            .unwrap_or_else(|| session_name.to_string());
        let link = Link::new(
            Fetch::Role {
                sts: factory.sts(&factory.config(Some(provider.clone()))),
                hop: role.clone(),
                session_name: session.clone(),
                caller,
                mfa: mfa.clone(),
            },
            role.label(),
        );
        let (creds, _) = link.fetch().await?;
        *link.cached.lock().await = Some(creds);
        hops.push(Hop {
            via: "assume role".into(),
            profile: role.profile.clone(),
            principal: role.role_arn.clone(),
            access_key_id: None,
            mfa_serial: role.mfa_serial.clone(),
            session_name: Some(session),
        });
        provider = SharedCredentialsProvider::new(link);
    }
    Ok(Built { provider, hops })
}

/// Who a base credential is (`sts:GetCallerIdentity`).
async fn caller_arn(
    factory: &Factory,
    provider: &SharedCredentialsProvider,
    label: &str,
) -> Result<String, CredentialError> {
    let sts = factory.sts(&factory.config(Some(provider.clone())));
    let telemetry = Telemetry::new(1);
    let op = "sts:GetCallerIdentity";
    let lane = telemetry.lane("", op, None);
    call(&RetryPolicy::default(), &telemetry, &lane, || async {
        sts.get_caller_identity()
            .send()
            .await
            .map_err(|e| aws_error(op, e))
    })
    .await
    .map(|o| o.arn().unwrap_or_default().to_string())
    .map_err(|e| Failed(format!("{label}: {e}")))
}

/// `sts:GetCallerIdentity` for the executor's own credential, paced and
/// retried: who the run acts as, and the key it signs with.
pub async fn whoami(
    factory: &Factory,
    provider: &SharedCredentialsProvider,
) -> Result<
    (
        aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput,
        String,
    ),
    AwsError,
> {
    let key = provider
        .provide_credentials()
        .await
        .map_err(|e| {
            local(
                "credentials",
                aws_sdk_iam::error::DisplayErrorContext(&e).to_string(),
            )
        })?
        .access_key_id()
        .to_string();
    let sts = factory.sts(&factory.config(Some(provider.clone())));
    let telemetry = Telemetry::new(1);
    let op = "sts:GetCallerIdentity";
    let lane = telemetry.lane("", op, None);
    let out = call(&RetryPolicy::default(), &telemetry, &lane, || async {
        sts.get_caller_identity()
            .send()
            .await
            .map_err(|e| aws_error(op, e))
    })
    .await?;
    Ok((out, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn profiles(config: &str, credentials: &str) -> ProfileSet {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = dir.path().join("config");
        let k = dir.path().join("credentials");
        std::fs::write(&c, config).expect("config");
        std::fs::write(&k, credentials).expect("credentials");
        let (c, k) = (c.display().to_string(), k.display().to_string());
        let env = [
            ("AWS_CONFIG_FILE", c.as_str()),
            ("AWS_SHARED_CREDENTIALS_FILE", k.as_str()),
        ];
        aws_config::profile::load(
            &aws_types::os_shim_internal::Fs::real(),
            &aws_types::os_shim_internal::Env::from_slice(&env),
            &Default::default(),
            None,
        )
        .await
        .expect("profiles parse")
    }

    #[tokio::test]
    async fn a_role_chain_resolves_innermost_first_with_every_setting() {
        let p = profiles(
            "[profile top]\nrole_arn = arn:aws:iam::1:role/Top\nsource_profile = mid\nmfa_serial = arn:aws:iam::1:mfa/me\nexternal_id = x-1\nduration_seconds = 1800\nrole_session_name = me\n\
             [profile mid]\nrole_arn = arn:aws:iam::1:role/ir/Mid\nsource_profile = base\n",
            "[base]\naws_access_key_id = AKIABASE\naws_secret_access_key = s3cr3t\n",
        )
        .await;
        let (base, hops) = chain_of(&p, "top").expect("chain");
        assert!(
            matches!(&base, Base::Static { profile, key, token: None, .. } if profile == "base" && key == "AKIABASE")
        );
        assert!(
            !format!("{base:?}").contains("s3cr3t"),
            "secrets never in Debug"
        );
        assert_eq!(hops.len(), 2);
        assert_eq!(hops[0].role_arn, "arn:aws:iam::1:role/ir/Mid");
        assert_eq!(hops[1].role_arn, "arn:aws:iam::1:role/Top");
        assert_eq!(hops[1].mfa_serial.as_deref(), Some("arn:aws:iam::1:mfa/me"));
        assert_eq!(hops[1].external_id.as_deref(), Some("x-1"));
        assert_eq!(hops[1].duration_seconds, Some(1800));
        assert_eq!(hops[1].session_name.as_deref(), Some("me"));
    }

    #[tokio::test]
    async fn sso_web_identity_and_process_profiles_resolve() {
        let p = profiles(
            "[profile sso]\nsso_session = corp\nsso_account_id = 111122223333\nsso_role_name = IR\n\
             [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n\
             [profile legacy]\nsso_start_url = https://old.awsapps.com/start\nsso_region = us-east-1\nsso_account_id = 1\nsso_role_name = R\n\
             [profile web]\nrole_arn = arn:aws:iam::1:role/Ci\nweb_identity_token_file = /tmp/t\n\
             [profile proc]\ncredential_process = /bin/echo x\n",
            "",
        )
        .await;
        assert!(
            matches!(chain_of(&p, "sso"), Ok((Base::Sso { cache_key, region, .. }, h)) if cache_key == "corp" && region == "eu-west-1" && h.is_empty())
        );
        assert!(
            matches!(chain_of(&p, "legacy"), Ok((Base::Sso { cache_key, .. }, _)) if cache_key == "https://old.awsapps.com/start")
        );
        assert!(
            matches!(chain_of(&p, "web"), Ok((Base::WebIdentity { role_arn, .. }, h)) if role_arn == "arn:aws:iam::1:role/Ci" && h.is_empty())
        );
        assert!(matches!(
            chain_of(&p, "proc"),
            Ok((Base::Process { .. }, _))
        ));
    }

    /// Every way a profile can be wrong, with the message the responder sees.
    #[tokio::test]
    async fn every_configuration_error_names_its_profile_and_cause() {
        let p = profiles(
            "[profile loop-a]\nrole_arn = arn:aws:iam::1:role/A\nsource_profile = loop-b\n\
             [profile loop-b]\nrole_arn = arn:aws:iam::1:role/B\nsource_profile = loop-a\n\
             [profile env]\nrole_arn = arn:aws:iam::1:role/A\ncredential_source = Environment\n\
             [profile odd-source]\nrole_arn = arn:aws:iam::1:role/A\ncredential_source = Floppy\n\
             [profile both]\nrole_arn = arn:aws:iam::1:role/A\nsource_profile = x\ncredential_source = Ec2InstanceMetadata\n\
             [profile orphan]\nrole_arn = arn:aws:iam::1:role/A\n\
             [profile dangling]\nrole_arn = arn:aws:iam::1:role/A\nsource_profile = nowhere\n\
             [profile empty]\nregion = us-east-1\n\
             [profile half]\naws_access_key_id = AKIAHALF\n\
             [profile long]\nrole_arn = arn:aws:iam::1:role/A\nsource_profile = half\nduration_seconds = 99999\n\
             [profile sso-bad]\nsso_session = nope\nsso_account_id = 1\nsso_role_name = R\n\
             [profile sso-half]\nsso_start_url = https://x\nsso_region = us-east-1\nsso_role_name = R\n\
             [profile web-bare]\nweb_identity_token_file = /tmp/t\n",
            "",
        )
        .await;
        type Kind = fn(&CredentialError) -> bool;
        let table: &[(&str, &str, Kind)] = &[
            (
                "missing",
                "profile `missing` is in neither the AWS config file nor the credentials file",
                |e| matches!(e, Config(_)),
            ),
            (
                "loop-a",
                "source_profile goes round in a circle (loop-a → loop-b → loop-a)",
                |e| matches!(e, Config(_)),
            ),
            (
                "env",
                "credential_source = Environment is refused: environment variables are never the break-glass credential",
                |e| matches!(e, Refused(_)),
            ),
            (
                "odd-source",
                "credential_source `Floppy` is not Ec2InstanceMetadata or EcsContainer",
                |e| matches!(e, Config(_)),
            ),
            (
                "both",
                "sets both source_profile and credential_source",
                |e| matches!(e, Config(_)),
            ),
            (
                "orphan",
                "has role_arn but neither source_profile nor credential_source",
                |e| matches!(e, Config(_)),
            ),
            (
                "dangling",
                "profile `dangling` names source_profile `nowhere`",
                |e| matches!(e, Config(_)),
            ),
            ("empty", "profile `empty` holds no credential", |e| {
                matches!(e, Config(_))
            }),
            (
                "half",
                "has only one of aws_access_key_id and aws_secret_access_key",
                |e| matches!(e, Config(_)),
            ),
            (
                "long",
                "duration_seconds `99999` is not a number of seconds from 900 to 43200",
                |e| matches!(e, Config(_)),
            ),
            (
                "sso-bad",
                "names sso_session `nope`, which has no [sso-session nope] section",
                |e| matches!(e, Config(_)),
            ),
            (
                "sso-half",
                "is an SSO profile without sso_account_id",
                |e| matches!(e, Config(_)),
            ),
            (
                "web-bare",
                "has web_identity_token_file but no role_arn",
                |e| matches!(e, Config(_)),
            ),
        ];
        for (profile, message, kind) in table {
            let err = chain_of(&p, profile).expect_err(profile);
            assert!(err.to_string().contains(message), "{profile}: {err}");
            assert!(kind(&err), "{profile}: {err:?}");
        }
    }

    #[test]
    fn sessions_renew_five_minutes_before_they_expire() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let in_ = |s: u64| Some(now + Duration::from_secs(s));
        assert!(!needs_renewal(in_(3600), now));
        assert!(!needs_renewal(in_(301), now));
        assert!(needs_renewal(in_(300), now));
        assert!(needs_renewal(Some(now - Duration::from_secs(1)), now));
        assert!(!needs_renewal(None, now));
    }
}
