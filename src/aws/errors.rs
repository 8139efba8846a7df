//! AWS errors reduced to what a responder and the audit log need, and the
//! classes that decide what happens next: retry, wait, give up, or treat as
//! the goal already reached.

use std::fmt;

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use serde::Serialize;

/// How an AWS error should be handled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Rate limited: back off and try again; never "done", never "nothing to do".
    Throttled,
    /// A 5xx, a timeout or a dropped connection: worth a bounded retry.
    Transient,
    AccessDenied,
    NotFound,
    Other,
}

/// A failed AWS call, reduced to what the responder and the audit log need.
#[derive(Debug, Clone, thiserror::Error, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[error("{operation}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    pub operation: String,
    pub code: Option<String>,
    pub message: String,
    pub kind: ErrorKind,
}

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "BandwidthLimitExceeded",
];

/// Worth a bounded retry: the service failed, or another writer held the
/// resource for a moment (IAM `ConcurrentModification`, Organizations
/// `ConcurrentModificationException`: "try again later", per their API references).
const TRANSIENT_CODES: &[&str] = &[
    "ConcurrentModification",
    "ConcurrentModificationException",
    // Organizations AttachPolicy/DetachPolicy: "changes to the effective
    // policy are in progress … try again later" (API reference).
    "PolicyChangesInProgressException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceFailure",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// An error found by breakglass itself (a check before or after a call),
/// reported like an AWS error so it lands in the same report and audit fields.
pub fn local(operation: &str, message: String) -> AwsError {
    AwsError {
        operation: operation.to_string(),
        code: Some("BreakglassCheck".into()),
        message,
        kind: ErrorKind::Other,
    }
}

/// The code of a named target discovery did not find: the preflight tells
/// it from a denial, and from a principal that vanished under an `all:`
/// listing (AWS's own `NoSuchEntity`), which stops nothing.
pub const MISSING: &str = "BreakglassNotFound";

/// The code of a change AWS would refuse for a full quota (five SCPs on a
/// target): the preflight refuses the run before any change, naming it.
pub const QUOTA: &str = "BreakglassQuota";

/// A change that would exceed an AWS quota, found before any call.
pub fn over_quota(operation: &str, message: String) -> AwsError {
    AwsError {
        operation: operation.to_string(),
        code: Some(QUOTA.into()),
        message,
        kind: ErrorKind::Other,
    }
}

/// The code of a permission check that got no answer (the simulator was
/// unavailable): neither allowed nor denied.
pub const UNCHECKED: &str = "BreakglassUnchecked";

/// A permission check that could not be made.
pub fn unchecked(message: String) -> AwsError {
    AwsError {
        operation: "permission check".into(),
        code: Some(UNCHECKED.into()),
        message,
        kind: ErrorKind::Other,
    }
}

/// A target the playbook names that discovery did not find.
pub fn missing(message: String) -> AwsError {
    AwsError {
        operation: "discovery".into(),
        code: Some(MISSING.into()),
        message,
        kind: ErrorKind::NotFound,
    }
}

impl AwsError {
    /// A target the playbook named is not there (see [`MISSING`]).
    pub fn is_missing_subject(&self) -> bool {
        self.code.as_deref() == Some(MISSING)
    }

    /// A permission check that got no answer: throttled or failed past its
    /// retries, or the simulator unavailable (see [`UNCHECKED`]).
    pub fn is_unanswered(&self) -> bool {
        matches!(self.kind, ErrorKind::Throttled | ErrorKind::Transient)
            || self.code.as_deref() == Some(UNCHECKED)
    }

    /// A change refused beforehand for a full AWS quota (see [`QUOTA`]).
    pub fn is_over_quota(&self) -> bool {
        self.code.as_deref() == Some(QUOTA)
    }
}

/// Treats the error codes that report the goal state (already enabled,
/// already attached, already gone) as success.
pub fn goal_if(r: Result<(), AwsError>, codes: &[&str]) -> Result<(), AwsError> {
    match r {
        Err(e) if e.code.as_deref().is_some_and(|c| codes.contains(&c)) => Ok(()),
        other => other,
    }
}

/// An error and its causes, each by its `Display`, joined with ": ". The
/// SDK's `DisplayErrorContext` ends with the error's `Debug` form, which
/// must not reach a responder's screen.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Whether two policy documents say the same thing (key order and spacing aside).
pub fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Classifies any SDK error (all service crates share `SdkError`).
pub fn aws_error<E, R>(operation: &str, err: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let code = err.code().map(str::to_string);
    let raw_status = match &err {
        SdkError::ServiceError(se) => raw_status(se.raw()),
        SdkError::ResponseError(re) => raw_status(re.raw()),
        _ => None,
    };
    let kind = match (&err, code.as_deref()) {
        (_, Some(c)) if THROTTLING_CODES.contains(&c) => ErrorKind::Throttled,
        (_, Some(c)) if TRANSIENT_CODES.contains(&c) => ErrorKind::Transient,
        (_, Some(c)) if c.contains("AccessDenied") || c == "UnauthorizedOperation" => {
            ErrorKind::AccessDenied
        }
        (_, Some(c)) if is_not_found(c) => ErrorKind::NotFound,
        (SdkError::TimeoutError(_) | SdkError::DispatchFailure(_), _) => ErrorKind::Transient,
        _ if raw_status == Some(429) => ErrorKind::Throttled,
        _ if raw_status.is_some_and(|s| s >= 500) => ErrorKind::Transient,
        (SdkError::ResponseError(_), _) => ErrorKind::Transient,
        _ => ErrorKind::Other,
    };
    // An answer without an AWS error in it (an emulator's HTML 500 page, a
    // proxy's) is named by its status: the SDK's full context would carry
    // the raw headers and body into every report and audit record.
    let message = match (err.message(), raw_status) {
        (Some(m), _) => m.to_string(),
        (None, Some(status)) if code.is_some() => format!("HTTP {status}"),
        (None, Some(status)) => format!("HTTP {status}, with no AWS error in the answer"),
        (None, None) => aws_sdk_iam::error::DisplayErrorContext(&err).to_string(),
    };
    AwsError {
        operation: operation.to_string(),
        code,
        message,
        kind,
    }
}

/// IAM `NoSuchEntity`, EC2 `InvalidInstanceID.NotFound`, Organizations
/// `PolicyNotFoundException` / `TargetNotFoundException` and their kin.
fn is_not_found(code: &str) -> bool {
    code == "NoSuchEntity" || code.ends_with("NotFound") || code.ends_with("NotFoundException")
}

fn raw_status<R: fmt::Debug + 'static>(raw: &R) -> Option<u16> {
    let any: &dyn std::any::Any = raw;
    any.downcast_ref::<aws_sdk_iam::config::http::HttpResponse>()
        .map(|r| r.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_codes_of_every_service() {
        for c in [
            "NoSuchEntity",
            "InvalidInstanceID.NotFound",
            "InvalidGroup.NotFound",
            "PolicyNotFoundException",
            "TargetNotFoundException",
            "AccountNotFoundException",
        ] {
            assert!(is_not_found(c), "{c}");
        }
        for c in ["PolicyNotAttachedException", "AccessDenied", "NotFoundish"] {
            assert!(!is_not_found(c), "{c}");
        }
        assert!(TRANSIENT_CODES.contains(&"ConcurrentModificationException"));
        assert!(TRANSIENT_CODES.contains(&"ConcurrentModification"));
    }
}
