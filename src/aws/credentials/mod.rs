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

mod chain;
mod link;
pub use chain::{Base, RoleHop, chain_of};
pub use link::needs_renewal;
use link::*;

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
        .map_err(|e| local("credentials", crate::aws::errors::error_chain(&e)))?
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
