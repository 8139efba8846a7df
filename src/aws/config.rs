//! The one place every SDK configuration and client is built: the run's
//! region, endpoints, timeouts and retry policy, around whichever
//! credential a hop provides. The executor, member-account sessions, the
//! credential chain's own STS and SSO calls, the audit mirror, rollback,
//! plan and verify all come through here, so no call can go elsewhere than
//! the responder was shown.
//!
//! Endpoints are never picked up implicitly: the SDK's own loader would
//! read `AWS_ENDPOINT_URL_<SERVICE>` variables and a profile's
//! `endpoint_url` behind the responder's back, so the configuration is
//! cleared of them and only the endpoints resolved here (and shown, and
//! logged) are set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::Region;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use serde::{Deserialize, Serialize};

/// Where calls go when not to AWS's public endpoints, and who said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Endpoint {
    pub url: String,
    /// `--endpoint-url`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_IAM`,
    /// `profile NAME endpoint_url`, or `the audit log`.
    pub source: String,
}

/// Every endpoint the run uses: one for all services, and per service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Endpoints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<Endpoint>,
    /// Service id (`iam`, `ec2`, `sts`, …) → its endpoint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Endpoint>,
}

/// Endpoint sources that name an endpoint on purpose.
pub const EXPLICIT: &[&str] = &["--endpoint-url", "the audit log"];

/// The services breakglass calls, by the id the SDK's endpoint variables use
/// (`AWS_ENDPOINT_URL_<ID>`).
pub const SERVICES: &[&str] = &[
    "iam",
    "ec2",
    "organizations",
    "sts",
    "s3",
    "cloudtrail",
    "sso",
    "kms",
    "backup",
    "s3_control",
    "sso_admin",
    "identitystore",
];

impl Endpoints {
    pub fn is_empty(&self) -> bool {
        self.global.is_none() && self.services.is_empty()
    }

    /// The endpoint calls to `service` go to, `None` for AWS's own.
    pub fn for_service(&self, service: &str) -> Option<&Endpoint> {
        self.services.get(service).or(self.global.as_ref())
    }

    /// Every endpoint set by a variable or a profile rather than named on
    /// purpose: what a live run and a rollback refuse unless allowed.
    pub fn implicit(&self) -> Vec<&Endpoint> {
        self.global
            .iter()
            .chain(self.services.values())
            .filter(|e| !EXPLICIT.contains(&e.source.as_str()))
            .collect()
    }

    /// One line for the responder: where calls go.
    pub fn describe(&self, region: &str) -> String {
        if self.is_empty() {
            return format!("AWS public endpoints, region {region}");
        }
        let mut parts = Vec::new();
        if let Some(g) = &self.global {
            parts.push(format!("{} (from {})", g.url, g.source));
        }
        for (service, e) in &self.services {
            parts.push(format!("{service}: {} (from {})", e.url, e.source));
        }
        if self.global.is_none() {
            parts.push(format!(
                "other services: AWS public endpoints, region {region}"
            ));
        }
        parts.join("; ")
    }
}

/// Service settings from variables and profiles are not read: the one
/// that matters, the endpoint, is resolved and shown by breakglass.
#[derive(Debug)]
struct NoServiceConfig;

impl aws_types::service_config::LoadServiceConfig for NoServiceConfig {
    fn load_config(&self, _: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        None
    }
}

/// Region, endpoints, timeouts and retries: everything about a call but
/// the credential.
#[derive(Debug, Clone)]
pub struct Factory {
    pub region: String,
    pub endpoints: Endpoints,
    base: aws_config::SdkConfig,
}

impl Factory {
    /// `call_timeout` bounds one attempt; the SDK makes one attempt per call
    /// (breakglass's own pacing retries on top, see `aws::pacing`).
    pub async fn new(region: String, endpoints: Endpoints, call_timeout: Duration) -> Factory {
        let loaded = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .no_credentials()
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(call_timeout)
                    .operation_timeout(call_timeout + Duration::from_secs(5))
                    .build(),
            )
            .load()
            .await;
        let mut builder = loaded.to_builder();
        // Only what was resolved and shown: never the loader's own picks.
        builder.set_endpoint_url(endpoints.global.as_ref().map(|e| e.url.clone()));
        builder.set_service_config(Some(NoServiceConfig));
        Factory {
            region,
            endpoints,
            base: builder.build(),
        }
    }

    /// The configuration that signs with `credentials` (`None`: unsigned,
    /// for SSO's bearer-token and web-identity calls). The provider keeps
    /// and renews its own credentials, so the SDK's cache is off.
    pub fn config(&self, credentials: Option<SharedCredentialsProvider>) -> aws_config::SdkConfig {
        let mut b = self.base.to_builder();
        b.set_credentials_provider(credentials);
        b.set_identity_cache(Some(aws_sdk_iam::config::IdentityCache::no_cache()));
        b.build()
    }

    pub fn clients(self: &Arc<Self>, credentials: SharedCredentialsProvider) -> Clients {
        Clients::new(self.clone(), self.config(Some(credentials)))
    }

    fn url(&self, service: &str) -> Option<String> {
        self.endpoints.for_service(service).map(|e| e.url.clone())
    }

    /// An STS client for `config` (the region's STS endpoint, as the
    /// credential chain and member sessions need).
    pub fn sts(&self, config: &aws_config::SdkConfig) -> aws_sdk_sts::Client {
        let mut b = aws_sdk_sts::config::Builder::from(config);
        b.set_endpoint_url(self.url("sts"));
        aws_sdk_sts::Client::from_conf(b.build())
    }

    /// An SSO portal client in the SSO region (unsigned: it takes the
    /// bearer token from `aws sso login`).
    pub fn sso(&self, region: &str) -> aws_sdk_sso::Client {
        let mut b = aws_sdk_sso::config::Builder::from(&self.config(None))
            .region(aws_sdk_sso::config::Region::new(region.to_string()));
        b.set_endpoint_url(self.url("sso"));
        aws_sdk_sso::Client::from_conf(b.build())
    }
}

/// Service clients for one credential; EC2 and CloudTrail clients per
/// region, made once.
#[derive(Clone)]
pub struct Clients {
    pub iam: aws_sdk_iam::Client,
    factory: Arc<Factory>,
    config: aws_config::SdkConfig,
    ec2: Arc<std::sync::Mutex<BTreeMap<String, aws_sdk_ec2::Client>>>,
}

impl Clients {
    fn new(factory: Arc<Factory>, config: aws_config::SdkConfig) -> Clients {
        let mut iam = aws_sdk_iam::config::Builder::from(&config);
        iam.set_endpoint_url(factory.url("iam"));
        Clients {
            iam: aws_sdk_iam::Client::from_conf(iam.build()),
            factory,
            config,
            ec2: Arc::default(),
        }
    }

    /// For tests that inject a mocked IAM client.
    pub fn with_iam(iam: aws_sdk_iam::Client, factory: Arc<Factory>) -> Clients {
        let config = factory.config(None);
        Clients {
            iam,
            factory,
            config,
            ec2: Arc::default(),
        }
    }

    /// The same endpoints and settings, signing with another credential (a
    /// member account's session).
    pub fn with_credentials(&self, credentials: SharedCredentialsProvider) -> Clients {
        self.factory.clients(credentials)
    }

    pub fn factory(&self) -> &Arc<Factory> {
        &self.factory
    }

    /// The credential these clients sign with.
    pub fn credentials(&self) -> Option<SharedCredentialsProvider> {
        self.config.credentials_provider()
    }

    pub fn org(&self) -> aws_sdk_organizations::Client {
        let mut b = aws_sdk_organizations::config::Builder::from(&self.config);
        b.set_endpoint_url(self.factory.url("organizations"));
        aws_sdk_organizations::Client::from_conf(b.build())
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        self.factory.sts(&self.config)
    }

    pub fn cloudtrail(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        let mut b = aws_sdk_cloudtrail::config::Builder::from(&self.config)
            .region(aws_sdk_cloudtrail::config::Region::new(region.to_string()));
        b.set_endpoint_url(self.factory.url("cloudtrail"));
        aws_sdk_cloudtrail::Client::from_conf(b.build())
    }

    pub fn backup(&self, region: &str) -> aws_sdk_backup::Client {
        let mut b = aws_sdk_backup::config::Builder::from(&self.config)
            .region(aws_sdk_backup::config::Region::new(region.to_string()));
        b.set_endpoint_url(self.factory.url("backup"));
        aws_sdk_backup::Client::from_conf(b.build())
    }

    /// The region the session resolved (`--region`, the profile, the
    /// default): where a service that lives in one region (Identity
    /// Center) is asked when the playbook names none.
    pub fn region(&self) -> Option<String> {
        self.config.region().map(|r| r.to_string())
    }

    pub fn sso_admin(&self, region: &str) -> aws_sdk_ssoadmin::Client {
        let mut b = aws_sdk_ssoadmin::config::Builder::from(&self.config)
            .region(aws_sdk_ssoadmin::config::Region::new(region.to_string()));
        b.set_endpoint_url(self.factory.url("sso_admin"));
        aws_sdk_ssoadmin::Client::from_conf(b.build())
    }

    pub fn identitystore(&self, region: &str) -> aws_sdk_identitystore::Client {
        let mut b = aws_sdk_identitystore::config::Builder::from(&self.config).region(
            aws_sdk_identitystore::config::Region::new(region.to_string()),
        );
        b.set_endpoint_url(self.factory.url("identitystore"));
        aws_sdk_identitystore::Client::from_conf(b.build())
    }

    pub fn kms(&self, region: &str) -> aws_sdk_kms::Client {
        let mut b = aws_sdk_kms::config::Builder::from(&self.config)
            .region(aws_sdk_kms::config::Region::new(region.to_string()));
        b.set_endpoint_url(self.factory.url("kms"));
        aws_sdk_kms::Client::from_conf(b.build())
    }

    /// S3 Control, whose settings are the account's, in every region: asked
    /// in the session's region. Against a loopback emulator its
    /// account-prefixed host resolves to that emulator (see `loopback`).
    pub fn s3control(&self) -> aws_sdk_s3control::Client {
        let url = self.factory.url("s3_control");
        let mut b = aws_sdk_s3control::config::Builder::from(&self.config);
        if let Some(client) = url
            .as_deref()
            .and_then(super::loopback::account_prefixed_client)
        {
            b = b.http_client(client);
        }
        b.set_endpoint_url(url);
        aws_sdk_s3control::Client::from_conf(b.build())
    }

    /// S3 in the bucket's region; path-style against an emulator endpoint.
    pub fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        let url = self.factory.url("s3");
        let mut b = aws_sdk_s3::config::Builder::from(&self.config)
            .region(aws_sdk_s3::config::Region::new(region.to_string()))
            .force_path_style(url.is_some());
        b.set_endpoint_url(url);
        aws_sdk_s3::Client::from_conf(b.build())
    }

    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let mut map = match self.ec2.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(region.to_string())
            .or_insert_with(|| {
                let mut b = aws_sdk_ec2::config::Builder::from(&self.config)
                    .region(aws_sdk_ec2::config::Region::new(region.to_string()));
                b.set_endpoint_url(self.factory.url("ec2"));
                aws_sdk_ec2::Client::from_conf(b.build())
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str, source: &str) -> Endpoint {
        Endpoint {
            url: url.into(),
            source: source.into(),
        }
    }

    #[test]
    fn a_service_endpoint_wins_over_the_global_one() {
        let e = Endpoints {
            global: Some(ep("http://a", "--endpoint-url")),
            services: [("iam".to_string(), ep("http://b", "AWS_ENDPOINT_URL_IAM"))].into(),
        };
        assert_eq!(
            e.for_service("iam").map(|e| e.url.as_str()),
            Some("http://b")
        );
        assert_eq!(
            e.for_service("ec2").map(|e| e.url.as_str()),
            Some("http://a")
        );
        assert_eq!(e.implicit().len(), 1);
        assert!(
            e.describe("us-east-1")
                .contains("iam: http://b (from AWS_ENDPOINT_URL_IAM)")
        );
    }
}
