//! One link of a credential chain: fetched, cached, and renewed before it
//! expires, so a long `--hold` never runs on a dead session.

use super::*;

/// How one link of the chain gets its credentials.
pub(super) enum Fetch {
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
pub(super) struct Link {
    pub(super) fetch: Fetch,
    pub(super) label: String,
    pub(super) cached: tokio::sync::Mutex<Option<Credentials>>,
    pub(super) telemetry: Telemetry,
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
    pub(super) fn new(fetch: Fetch, label: String) -> Link {
        Link {
            fetch,
            label,
            cached: tokio::sync::Mutex::new(None),
            telemetry: Telemetry::new(1),
        }
    }

    pub(super) async fn current(&self) -> Result<Credentials, CredentialError> {
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
    pub(super) async fn sts_call<T, F, Fut>(&self, operation: &str, f: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsError>>,
    {
        let lane = self.telemetry.lane("", operation, None);
        call(&RetryPolicy::default(), &self.telemetry, &lane, f).await
    }

    /// New credentials, and the principal they act as when the answer says.
    pub(super) async fn fetch(&self) -> Result<(Credentials, Option<String>), CredentialError> {
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
                        crate::aws::errors::error_chain(&e)
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
                        crate::aws::errors::error_chain(&e)
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

pub(super) fn session(
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
pub(super) fn sso_token(profile: &str, cache_key: &str) -> Result<String, CredentialError> {
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
