//! The errors that end a command, each mapped to one documented exit code.

use std::path::PathBuf;

use crate::aws::AwsError;
use crate::yaml::Problems;

/// Exit codes, as documented in the README and `breakglass --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything done, or everything contained.
    Success = 0,
    /// Some step failed, or something stays uncontained.
    Failed = 1,
    /// Bad usage or an invalid playbook: nothing was changed.
    Usage = 2,
    /// Refused: identity mismatch, confirmation declined, safety rule.
    Refused = 3,
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidPlaybook(Problems),

    #[error("{flag}: {message}")]
    Usage { flag: String, message: String },

    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The AWS configuration is unusable: a missing or malformed profile.
    #[error("configuration: {0}")]
    Config(String),

    /// The credential chain failed: a hop was refused or did not answer.
    #[error("credentials: {0}")]
    Credentials(String),

    #[error(transparent)]
    Aws(#[from] AwsError),

    #[error(
        "identity mismatch: the playbook expects {expected_what} {expected}, but the credentials are {actual_arn} in account {actual_account}"
    )]
    IdentityMismatch {
        expected_what: &'static str,
        expected: String,
        actual_arn: String,
        actual_account: String,
    },

    #[error("refused: {0}")]
    Refused(String),

    /// Targets the playbook names that do not exist: the run stopped
    /// before any change.
    #[error("not found, nothing was changed: {}", .0.join("; "))]
    Missing(Vec<String>),

    #[error("audit log {path}: {message}")]
    Audit { path: PathBuf, message: String },

    /// A file given as an audit log that is not one at all.
    #[error("{path} is not a breakglass audit log: {why}")]
    NotAuditLog { path: PathBuf, why: String },

    /// The tabletop's local emulator could not be found, started or driven.
    #[error("emulator: {0}")]
    Emulator(String),
}

impl From<crate::aws::credentials::CredentialError> for Error {
    fn from(e: crate::aws::credentials::CredentialError) -> Error {
        use crate::aws::credentials::CredentialError;
        match e {
            CredentialError::Config(m) => Error::Config(m),
            CredentialError::Failed(m) => Error::Credentials(m),
            CredentialError::Refused(m) => Error::Refused(m),
        }
    }
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::InvalidPlaybook(_)
            | Error::Usage { .. }
            | Error::ReadFile { .. }
            | Error::Config(_)
            | Error::NotAuditLog { .. } => ExitCode::Usage,
            Error::IdentityMismatch { .. } | Error::Refused(_) => ExitCode::Refused,
            Error::Credentials(_)
            | Error::Aws(_)
            | Error::Audit { .. }
            | Error::Emulator(_)
            | Error::Missing(_) => ExitCode::Failed,
        }
    }

    /// A short next step for the responder, where there is an obvious one.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::Config(_) => Some(
                "breakglass uses one named profile (--profile, else executor.profile, else AWS_PROFILE, else `breakglass`); environment credentials are ignored on purpose; nothing was changed"
                    .into(),
            ),
            Error::IdentityMismatch { .. } => Some(
                "check --profile and executor.expect_* in the playbook; nothing was changed"
                    .into(),
            ),
            Error::Missing(_) => Some(
                "check the ids and names passed with --var; a step may say `on_missing: skip` to go on without them"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl miette::Diagnostic for Error {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        let code = match self {
            Error::InvalidPlaybook(_) => "breakglass::invalid_playbook",
            Error::Usage { .. } => "breakglass::usage",
            Error::ReadFile { .. } => "breakglass::read_file",
            Error::Config(_) => "breakglass::config",
            Error::Credentials(_) => "breakglass::credentials",
            Error::Aws(_) => "breakglass::aws",
            Error::IdentityMismatch { .. } => "breakglass::identity_mismatch",
            Error::Refused(_) => "breakglass::refused",
            Error::Missing(_) => "breakglass::missing",
            Error::Audit { .. } => "breakglass::audit",
            Error::NotAuditLog { .. } => "breakglass::not_an_audit_log",
            Error::Emulator(_) => "breakglass::emulator",
        };
        Some(Box::new(code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Error::help(self).map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
