//! S3 Control against an emulator. S3 Control puts the account id in front
//! of the endpoint's host (`123456789012.s3-control.us-east-1.amazonaws.com`;
//! with an endpoint override, `{AccountId}.{authority}`), and an emulator on
//! a loopback address has no such name: `123456789012.127.0.0.1` resolves
//! nowhere. For a loopback endpoint only, that one name resolves to the same
//! address, so S3 Control reaches the emulator the responder named and no
//! other host; every other endpoint keeps the SDK's own client.

use std::net::IpAddr;

use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The HTTP client S3 Control needs for `endpoint`, when it is a loopback
/// address; `None` for any other endpoint (the SDK's default client).
pub fn account_prefixed_client(endpoint: &str) -> Option<SharedHttpClient> {
    let ip = loopback_ip(endpoint)?;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    Some(
        aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build_with_resolver(AccountPrefixed { ip }),
    )
}

/// The loopback IP an `http://127.0.0.1:5000`-style endpoint names.
fn loopback_ip(endpoint: &str) -> Option<IpAddr> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let ip: IpAddr = host.parse().ok()?;
    ip.is_loopback().then_some(ip)
}

/// Resolves `<12-digit account>.<ip>` (and the bare `<ip>`) to `ip`, and
/// refuses every other name.
#[derive(Debug, Clone)]
struct AccountPrefixed {
    ip: IpAddr,
}

impl ResolveDns for AccountPrefixed {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        let ip = self.ip.to_string();
        let account = name
            .strip_suffix(&ip)
            .and_then(|p| p.strip_suffix('.'))
            .is_some_and(|a| a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()));
        let answer = if name == ip || account {
            Ok(vec![self.ip])
        } else {
            Err(ResolveDnsError::new(format!(
                "{name} is not the emulator endpoint's address"
            )))
        };
        DnsFuture::ready(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_endpoints_get_the_resolver() {
        assert_eq!(
            loopback_ip("http://127.0.0.1:5000"),
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(
            loopback_ip("http://[::1]:5000/"),
            Some("::1".parse().expect("ip"))
        );
        assert_eq!(loopback_ip("https://10.0.0.5:443"), None);
        assert_eq!(loopback_ip("https://s3-control.example.com"), None);
    }

    #[tokio::test]
    async fn the_account_prefixed_name_and_nothing_else_resolves() {
        let r = AccountPrefixed {
            ip: "127.0.0.1".parse().expect("ip"),
        };
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            r.resolve_dns("123456789012.127.0.0.1").await.ok(),
            Some(vec![ip])
        );
        for other in [
            "evil.example.com",
            "12345.127.0.0.1",
            "x123456789012.127.0.0.1",
        ] {
            assert!(r.resolve_dns(other).await.is_err(), "{other}");
        }
    }
}
