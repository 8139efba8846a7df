//! Connecting: which profile, region and endpoints, each with where it came
//! from; the credential chain built on them; and who it turns out to be.

use std::sync::Arc;
use std::time::Duration;

use aws_config::profile::ProfileSet;

use super::config::{Clients, Endpoint, Endpoints, Factory, SERVICES};
use super::credentials::{self, CredentialError, Mfa, RoleHop};
use super::identity::Identity;

/// Profile used when nothing names one.
pub const DEFAULT_PROFILE: &str = "breakglass";
/// Region used when nothing names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Everything needed to connect, before anything is loaded.
#[derive(Debug, Clone)]
pub struct Connection {
    pub profile: String,
    /// `--profile`, `executor.profile`, `AWS_PROFILE` or `the default profile name`.
    pub profile_source: String,
    /// From `--region`, `AWS_REGION` or `AWS_DEFAULT_REGION`, with its
    /// source; `None`: the profile's own, else us-east-1.
    pub region: Option<(String, String)>,
    /// An endpoint named on purpose: `--endpoint-url`, or the one a run's
    /// audit log recorded (for its rollback). It wins over every other.
    pub endpoint_flag: Option<Endpoint>,
    /// Whether endpoints from variables or the profile may be used: yes
    /// for read-only commands (shown), only with `--allow-env-endpoint`
    /// for a live run or a rollback.
    pub allow_implicit_endpoints: bool,
    /// One attempt's limit: past it the attempt is abandoned and counts as
    /// transient.
    pub call_timeout: Duration,
    /// The playbook's `executor.assume_role`, the chain's last hop.
    pub assume: Option<RoleHop>,
    /// Names the sessions breakglass starts itself (`breakglass-<case id>`).
    pub session_name: String,
    /// `--mfa-code`, read from standard input when given as `-`.
    pub mfa_code: Option<crate::aws::credentials::Secret>,
}

/// A loaded credential and its verified identity.
#[derive(Clone)]
pub struct Session {
    pub clients: Clients,
    pub identity: Identity,
    pub profile: String,
    pub profile_source: String,
    pub region: String,
    pub region_source: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the clients: they can reach the credential.
        f.debug_struct("Session")
            .field("identity", &self.identity)
            .field("profile", &self.profile)
            .field("region", &self.region)
            .finish()
    }
}

impl Session {
    pub fn endpoints(&self) -> &Endpoints {
        &self.clients.factory().endpoints
    }

    pub fn endpoint_display(&self) -> String {
        self.endpoints().describe(&self.region)
    }

    /// The credential chain on one line: each hop, then the executor.
    pub fn source(&self) -> String {
        let mut hops: Vec<String> = self
            .identity
            .chain
            .iter()
            .map(ToString::to_string)
            .collect();
        if hops.is_empty() {
            hops.push(format!("profile {}", self.profile));
        }
        format!(
            "{} (profile from {})",
            hops.join(" → "),
            self.profile_source
        )
    }
}

/// Reads the AWS config and credentials files (`AWS_CONFIG_FILE` and
/// `AWS_SHARED_CREDENTIALS_FILE` are honoured, as the AWS CLI does).
pub async fn profiles() -> Result<ProfileSet, CredentialError> {
    aws_config::profile::load(
        &aws_types::os_shim_internal::Fs::real(),
        &aws_types::os_shim_internal::Env::real(),
        &Default::default(),
        None,
    )
    .await
    .map_err(|e| {
        CredentialError::Config(format!(
            "cannot read the AWS config files: {}",
            crate::aws::errors::error_chain(&e)
        ))
    })
}

/// The endpoints calls go to. `--endpoint-url` wins over everything and
/// makes the rest irrelevant; otherwise `AWS_ENDPOINT_URL`, the service
/// variables `AWS_ENDPOINT_URL_<SERVICE>` and the profile's `endpoint_url`,
/// as the SDKs read them (none of them when
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`). A profile's `services`
/// section is not followed: it is refused, naming it.
pub fn resolve_endpoints(
    flag: Option<&Endpoint>,
    env: &dyn Fn(&str) -> Option<String>,
    profile: Option<(&str, &aws_config::profile::Profile)>,
) -> Result<Endpoints, CredentialError> {
    let checked = |url: String, source: String| -> Result<Endpoint, CredentialError> {
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(Endpoint { url, source })
        } else {
            Err(CredentialError::Config(format!(
                "{source}: `{url}` is not an http(s) URL"
            )))
        }
    };
    if let Some(e) = flag {
        return Ok(Endpoints {
            global: Some(checked(e.url.clone(), e.source.clone())?),
            services: Default::default(),
        });
    }
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if set("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(Endpoints::default());
    }
    let mut out = Endpoints::default();
    if let Some(url) = set("AWS_ENDPOINT_URL") {
        out.global = Some(checked(url, "AWS_ENDPOINT_URL".into())?);
    }
    for service in SERVICES {
        let var = format!("AWS_ENDPOINT_URL_{}", service.to_ascii_uppercase());
        if let Some(url) = set(&var) {
            out.services.insert(service.to_string(), checked(url, var)?);
        }
    }
    if let Some((name, p)) = profile {
        if let Some(url) = p.get("endpoint_url").filter(|u| !u.trim().is_empty())
            && out.global.is_none()
        {
            out.global = Some(checked(
                url.trim().to_string(),
                format!("profile {name} endpoint_url"),
            )?);
        }
        if let Some(section) = p.get("services") {
            return Err(CredentialError::Config(format!(
                "profile `{name}` sends services to endpoints of its own (services = {section}), which breakglass does not follow: pass --endpoint-url"
            )));
        }
    }
    Ok(out)
}

/// `--region`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the
/// profile's `region`, else us-east-1: the region and where it came from.
pub fn resolve_region(
    flag: Option<&(String, String)>,
    profile: Option<(&str, &aws_config::profile::Profile)>,
) -> (String, String) {
    if let Some((r, source)) = flag {
        return (r.clone(), source.clone());
    }
    if let Some((name, p)) = profile
        && let Some(r) = p.get("region").map(str::trim).filter(|r| !r.is_empty())
    {
        return (r.to_string(), format!("profile {name}"));
    }
    (DEFAULT_REGION.to_string(), "the default".to_string())
}

/// Resolves and builds the credential chain for `conn`, on the one
/// configuration factory, and asks STS who it is. Endpoints from anything
/// but `--endpoint-url` are refused before the first call unless allowed:
/// a redirected endpoint would see every signed request.
pub async fn connect(conn: &Connection) -> Result<Session, CredentialError> {
    let profiles = profiles().await?;
    let named = profiles
        .get_profile(&conn.profile)
        .map(|p| (conn.profile.as_str(), p));
    let endpoints = resolve_endpoints(
        conn.endpoint_flag.as_ref(),
        &|k| std::env::var(k).ok(),
        named,
    )?;
    let implicit = endpoints.implicit();
    if !conn.allow_implicit_endpoints && !implicit.is_empty() {
        let list: Vec<String> = implicit
            .iter()
            .map(|e| format!("{} (from {})", e.url, e.source))
            .collect();
        return Err(CredentialError::Refused(format!(
            "calls would go to {}, set outside the command line: pass --endpoint-url to mean it, or --allow-env-endpoint; nothing was sent",
            list.join(", ")
        )));
    }
    let (region, region_source) = resolve_region(conn.region.as_ref(), named);
    let (base, mut hops) = credentials::chain_of(&profiles, &conn.profile)?;
    hops.extend(conn.assume.clone());
    let factory = Arc::new(Factory::new(region.clone(), endpoints, conn.call_timeout).await);
    let terminal = {
        use std::io::IsTerminal;
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    };
    let mfa = Mfa::new(conn.mfa_code.clone(), terminal);
    let built = credentials::build(&factory, base, hops, &conn.session_name, mfa).await?;
    let (who, key) = credentials::whoami(&factory, &built.provider)
        .await
        .map_err(|e| {
            CredentialError::Failed(format!(
                "profile `{}` (from {}): {e}",
                conn.profile, conn.profile_source
            ))
        })?;
    let mut identity = Identity::from_caller(
        who.account().unwrap_or_default().to_string(),
        who.arn().unwrap_or_default().to_string(),
        who.user_id().unwrap_or_default().to_string(),
        key,
    );
    identity.chain = built.hops;
    Ok(Session {
        clients: factory.clients(built.provider),
        identity,
        profile: conn.profile.clone(),
        profile_source: conn.profile_source.clone(),
        region,
        region_source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_flag_wins_and_every_other_source_is_named() {
        let vars = env(&[
            ("AWS_ENDPOINT_URL", "http://env"),
            ("AWS_ENDPOINT_URL_IAM", "http://iam"),
        ]);
        let flag = Endpoint {
            url: "http://flag".into(),
            source: "--endpoint-url".into(),
        };
        let flagged = resolve_endpoints(Some(&flag), &vars, None).expect("ok");
        assert_eq!(
            flagged.global.as_ref().map(|e| e.url.as_str()),
            Some("http://flag")
        );
        assert!(flagged.services.is_empty() && flagged.implicit().is_empty());
        let implicit = resolve_endpoints(None, &vars, None).expect("ok");
        let sources: Vec<&str> = implicit
            .implicit()
            .iter()
            .map(|e| e.source.as_str())
            .collect();
        assert_eq!(sources, ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IAM"]);
        let ignored = env(&[
            ("AWS_ENDPOINT_URL_STS", "http://sts"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert!(
            resolve_endpoints(None, &ignored, None)
                .expect("ok")
                .is_empty()
        );
        let ftp = Endpoint {
            url: "ftp://x".into(),
            source: "--endpoint-url".into(),
        };
        assert!(resolve_endpoints(Some(&ftp), &vars, None).is_err());
    }

    #[test]
    fn region_precedence() {
        let flag = ("eu-west-1".to_string(), "AWS_REGION".to_string());
        assert_eq!(resolve_region(Some(&flag), None), flag);
        assert_eq!(
            resolve_region(None, None),
            ("us-east-1".to_string(), "the default".to_string())
        );
    }
}
