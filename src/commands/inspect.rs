//! `whoami` and the `audit` commands: looking, never changing.

use super::session::{Endpoints, connect};
use crate::audit::{self};
use crate::cli::GlobalArgs;
use crate::error::{Error, ExitCode};
use crate::render::Printer;

pub(super) async fn whoami(global: &GlobalArgs, out: &Printer) -> Result<ExitCode, Error> {
    let session = connect(global, None, Endpoints::Allowed).await?;
    out.whoami(&session);
    Ok(ExitCode::Success)
}

/// Checks a log: chain, signatures, the signing key, completeness; with
/// `--against`, that its S3 mirror holds exactly the same records.
pub(super) async fn audit_verify(
    global: &GlobalArgs,
    out: &Printer,
    path: &std::path::Path,
    trust: &crate::cli::TrustArgs,
    against: Option<&str>,
    owner: Option<&str>,
) -> Result<ExitCode, Error> {
    let (v, _) = audit::read(path, &trust.trust(), trust.expect_head.as_deref())?;
    out.verification(&v);
    let mut ok = v.ok();
    if let Some(url) = against {
        let (bucket, prefix) = audit::parse_s3_url(url).ok_or_else(|| Error::Usage {
            flag: "--against".into(),
            message: format!("`{url}` is not s3://bucket/prefix"),
        })?;
        let owner = owner.ok_or_else(|| Error::Usage {
            flag: "--bucket-owner".into(),
            message: "comparing with a mirror needs the account that owns the bucket".into(),
        })?;
        let session = connect(global, None, Endpoints::Allowed).await?;
        let differences = audit::compare_mirror(
            &session.clients,
            &session.region,
            path,
            &v,
            &bucket,
            &prefix,
            owner,
        )
        .await?;
        out.mirror_comparison(url, &differences);
        ok &= differences.is_empty();
    }
    Ok(if ok {
        ExitCode::Success
    } else {
        ExitCode::Failed
    })
}

pub(super) fn audit_show(
    out: &Printer,
    path: &std::path::Path,
    trust: &crate::cli::TrustArgs,
) -> Result<ExitCode, Error> {
    let (v, records) = audit::read(path, &trust.trust(), trust.expect_head.as_deref())?;
    out.timeline(&v, &records);
    Ok(if v.ok() {
        ExitCode::Success
    } else {
        ExitCode::Failed
    })
}
