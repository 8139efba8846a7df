//! The emulator's own administrator: SDK clients signed with a key moto
//! maps to its default account, for seeding and for the attacker's moves.

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};

/// SDK clients signed as the emulator's administrator.
pub struct Admin {
    endpoint: String,
    creds: Credentials,
}

impl Admin {
    pub fn new(endpoint: String) -> Admin {
        Admin {
            endpoint,
            creds: Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "tabletop-administrator",
                None,
                None,
                "tabletop",
            ),
        }
    }

    /// The same, signed as `role` in member account `account`, reached with
    /// `sts:AssumeRole` as the attacker holding the management account would
    /// (the shim refuses it where the member role is gone, as AWS does).
    pub async fn in_account(&self, account: &str, role: &str) -> Result<Admin, String> {
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .credentials_provider(self.creds.clone())
                .build(),
        );
        let out = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/{role}"))
            .role_session_name("tabletop-attacker")
            .send()
            .await
            .map_err(|e| super::moves::error_text(&e))?;
        let c = out
            .credentials()
            .ok_or_else(|| "sts:AssumeRole returned no credentials".to_string())?;
        Ok(Admin {
            endpoint: self.endpoint.clone(),
            creds: Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                None,
                "tabletop-member",
            ),
        })
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .credentials_provider(self.creds.clone())
                .build(),
        )
    }

    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(region.to_string()))
                .endpoint_url(&self.endpoint)
                .credentials_provider(self.creds.clone())
                .build(),
        )
    }

    pub fn cloudtrail(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        aws_sdk_cloudtrail::Client::from_conf(
            aws_sdk_cloudtrail::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(region.to_string()))
                .endpoint_url(&self.endpoint)
                .credentials_provider(self.creds.clone())
                .build(),
        )
    }

    pub fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(region.to_string()))
                .endpoint_url(&self.endpoint)
                .force_path_style(true)
                .credentials_provider(self.creds.clone())
                .build(),
        )
    }

    pub fn sso_admin(&self) -> aws_sdk_ssoadmin::Client {
        aws_sdk_ssoadmin::Client::from_conf(
            aws_sdk_ssoadmin::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .credentials_provider(self.creds.clone())
                .build(),
        )
    }

    pub fn identitystore(&self) -> aws_sdk_identitystore::Client {
        aws_sdk_identitystore::Client::from_conf(
            aws_sdk_identitystore::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .credentials_provider(self.creds.clone())
                .build(),
        )
    }

    /// STS signed with someone else's key (a seeded user's, as the attacker
    /// holds it).
    pub fn sts_as(&self, key: &str, secret: &str) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .credentials_provider(Credentials::new(
                    key,
                    secret,
                    None,
                    None,
                    "tabletop-attacker",
                ))
                .build(),
        )
    }

    pub fn org(&self) -> aws_sdk_organizations::Client {
        aws_sdk_organizations::Client::from_conf(
            aws_sdk_organizations::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .credentials_provider(self.creds.clone())
                .build(),
        )
    }
}
