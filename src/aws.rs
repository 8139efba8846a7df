//! Credentials, identity pinning, SDK clients and AWS error classification.
//!
//! The break-glass credential is chosen explicitly: the named profile only,
//! through an explicit profile provider, so that stray `AWS_ACCESS_KEY_ID`
//! variables never silently replace it. Region and endpoint are resolved here
//! too, with their source, so the responder sees exactly where calls will go.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::Region;
use aws_config::meta::region::ProvideRegion;
use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use serde::Serialize;

use crate::Error;

/// Profile used when neither `--profile` nor `executor.profile` names one.
pub const DEFAULT_PROFILE: &str = "breakglass";
/// Region used for global services when nothing else names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where the SDK will send calls and with which credential, before anything is loaded.
#[derive(Debug, Clone)]
pub struct Connection {
    pub profile: String,
    /// Where the profile name came from: `--profile`, `executor.profile` or the default.
    pub profile_source: &'static str,
    pub region: Option<String>,
    pub endpoint: Option<Endpoint>,
    /// Attempts per call inside the SDK (its own retry with backoff), before ours.
    pub sdk_max_attempts: u32,
    /// Per attempt: past it the attempt is abandoned and counts as transient.
    pub call_timeout: Duration,
    /// The break-glass role to assume from the profile's credential.
    pub assume: Option<AssumeRole>,
}

/// An STS `AssumeRole` to make before anything else (aws-config's own
/// provider cannot take an MFA code, so breakglass calls STS itself).
#[derive(Clone)]
pub struct AssumeRole {
    pub role_arn: String,
    pub session_name: String,
    pub duration_seconds: u32,
    /// MFA device and the code the responder typed.
    pub mfa: Option<(String, String)>,
}

impl fmt::Debug for AssumeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The MFA code is a secret for its 30 seconds: never print it.
        f.debug_struct("AssumeRole")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("mfa_serial", &self.mfa.as_ref().map(|(s, _)| s))
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub url: String,
    /// `--endpoint-url` or `AWS_ENDPOINT_URL`.
    pub source: String,
}

/// A loaded credential and its verified identity.
#[derive(Clone)]
pub struct Session {
    pub config: aws_config::SdkConfig,
    pub identity: Identity,
    pub profile: String,
    pub profile_source: &'static str,
    pub region: String,
    pub endpoint: Option<Endpoint>,
    /// How the credential was obtained: the profile, and the role and MFA
    /// device when one was assumed.
    pub source: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the SdkConfig: it can reach the credential.
        f.debug_struct("Session")
            .field("identity", &self.identity)
            .field("profile", &self.profile)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Session {
    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.config)
    }

    pub fn endpoint_display(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("{} (from {})", e.url, e.source),
            None => format!("AWS public endpoints, region {}", self.region),
        }
    }
}

/// The principal behind the credential, from `sts:GetCallerIdentity`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
    /// The long-term access key id the calls are signed with (not a secret; lets
    /// actions skip it and CloudTrail readers find the run).
    pub access_key_id: String,
    pub principal: Principal,
}

/// What kind of principal the executor is, with the names needed to protect it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Principal {
    User { name: String },
    AssumedRole { role_name: String, session: String },
    Root,
    FederatedUser { name: String },
    Other,
}

impl Identity {
    pub fn from_caller(
        account: String,
        arn: String,
        user_id: String,
        access_key_id: String,
    ) -> Self {
        let principal = parse_principal(&arn);
        Identity {
            account,
            arn,
            user_id,
            access_key_id,
            principal,
        }
    }

    /// True when `arn` names the executor's own principal (a user ARN, or the role
    /// its session belongs to). IAM names are unique per account, so the account
    /// and the last path segment decide.
    pub fn is_self(&self, account: &str, kind: PrincipalKind, name: &str) -> bool {
        if account != self.account {
            return false;
        }
        match (&self.principal, kind) {
            (Principal::User { name: n }, PrincipalKind::User) => n == name,
            (Principal::AssumedRole { role_name, .. }, PrincipalKind::Role) => role_name == name,
            _ => false,
        }
    }
}

/// The partition of an ARN (`aws`, `aws-cn`, `aws-us-gov`), `aws` when it
/// cannot be read: ARNs breakglass writes use the executor's own.
pub fn partition(arn: &str) -> &str {
    match arn.split(':').nth(1) {
        Some(p) if arn.starts_with("arn:") && !p.is_empty() => p,
        _ => "aws",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    Role,
}

fn parse_principal(arn: &str) -> Principal {
    // arn:PARTITION:SERVICE::ACCOUNT:RESOURCE
    let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
    if resource == "root" {
        return Principal::Root;
    }
    let mut parts = resource.split('/');
    match parts.next() {
        Some("user") => match resource.rsplit('/').next() {
            Some(name) if !name.is_empty() => Principal::User {
                name: name.to_string(),
            },
            _ => Principal::Other,
        },
        Some("assumed-role") => {
            let rest: Vec<&str> = parts.collect();
            match rest.as_slice() {
                [role, session] => Principal::AssumedRole {
                    role_name: role.to_string(),
                    session: session.to_string(),
                },
                _ => Principal::Other,
            }
        }
        Some("federated-user") => Principal::FederatedUser {
            name: parts.collect::<Vec<_>>().join("/"),
        },
        _ => Principal::Other,
    }
}

/// Builds the SDK configuration for `conn` and asks STS who it is.
pub async fn connect(conn: &Connection) -> Result<Session, Error> {
    let credentials = ProfileFileCredentialsProvider::builder()
        .profile_name(&conn.profile)
        .build();
    let region = match &conn.region {
        Some(r) => r.clone(),
        None => ProfileFileRegionProvider::builder()
            .profile_name(&conn.profile)
            .build()
            .region()
            .await
            .map(|r| r.to_string())
            .unwrap_or_else(|| DEFAULT_REGION.to_string()),
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .profile_name(&conn.profile)
        .credentials_provider(credentials)
        .region(Region::new(region.clone()))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(conn.sdk_max_attempts)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(conn.call_timeout)
                .operation_timeout(conn.call_timeout + Duration::from_secs(5))
                .build(),
        );
    if let Some(e) = &conn.endpoint {
        loader = loader.endpoint_url(&e.url);
    }
    let mut config = loader.load().await;
    let mut source = format!("profile {} (from {})", conn.profile, conn.profile_source);
    if let Some(a) = &conn.assume {
        config = assume_role(&config, a).await?;
        source.push_str(&format!(" → role {}", a.role_arn));
        if let Some((serial, _)) = &a.mfa {
            source.push_str(&format!(" with MFA {serial}"));
        }
    }

    let provider = config
        .credentials_provider()
        .ok_or_else(|| Error::Credentials("no credentials provider configured".into()))?;
    let creds = aws_sdk_iam::config::ProvideCredentials::provide_credentials(&provider)
        .await
        .map_err(|e| {
            Error::Credentials(format!(
                "profile `{}` (from {}): {}",
                conn.profile,
                conn.profile_source,
                aws_sdk_iam::error::DisplayErrorContext(&e)
            ))
        })?;
    let access_key_id = creds.access_key_id().to_string();

    let sts = aws_sdk_sts::Client::new(&config);
    let who = before_the_run("sts:GetCallerIdentity", || async {
        sts.get_caller_identity()
            .send()
            .await
            .map_err(|e| aws_error("sts:GetCallerIdentity", e))
    })
    .await?;
    let identity = Identity::from_caller(
        who.account().unwrap_or_default().to_string(),
        who.arn().unwrap_or_default().to_string(),
        who.user_id().unwrap_or_default().to_string(),
        access_key_id,
    );
    Ok(Session {
        config,
        identity,
        profile: conn.profile.clone(),
        profile_source: conn.profile_source,
        region,
        endpoint: conn.endpoint.clone(),
        source,
    })
}

/// A call made while connecting, before a run's telemetry exists: retried
/// like any other, so one throttled STS answer does not end the response.
async fn before_the_run<T, F, Fut>(operation: &str, f: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    let telemetry = Telemetry::new(1);
    let lane = telemetry.lane("", operation, None);
    call(&RetryPolicy::default(), &telemetry, &lane, f).await
}

/// Calls STS `AssumeRole` with the base credential and returns a configuration
/// that signs with the resulting session.
async fn assume_role(
    base: &aws_config::SdkConfig,
    a: &AssumeRole,
) -> Result<aws_config::SdkConfig, Error> {
    let sts = aws_sdk_sts::Client::new(base);
    let mut req = sts
        .assume_role()
        .role_arn(&a.role_arn)
        .role_session_name(&a.session_name)
        .duration_seconds(a.duration_seconds as i32);
    if let Some((serial, code)) = &a.mfa {
        req = req.serial_number(serial).token_code(code);
    }
    let out = before_the_run("sts:AssumeRole", || {
        let req = req.clone();
        async move { req.send().await.map_err(|e| aws_error("sts:AssumeRole", e)) }
    })
    .await?;
    let c = out
        .credentials()
        .ok_or_else(|| Error::Credentials("sts:AssumeRole returned no credentials".into()))?;
    let expiry = std::time::SystemTime::try_from(*c.expiration()).ok();
    let creds = aws_sdk_iam::config::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        expiry,
        "breakglass-assume-role",
    );
    Ok(base
        .to_builder()
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(creds))
        .build())
}

/// How an AWS error should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, thiserror::Error, Serialize, serde::Deserialize)]
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

/// A target the playbook names that discovery did not find: a failure of
/// its own kind, so the preflight can tell it from a denial.
pub fn missing(message: String) -> AwsError {
    AwsError {
        operation: "discovery".into(),
        code: Some("NotFound".into()),
        message,
        kind: ErrorKind::NotFound,
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
    let message = match err.message() {
        Some(m) => m.to_string(),
        None => aws_sdk_iam::error::DisplayErrorContext(&err).to_string(),
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

/// Our retry on top of the SDK's: throttling is expected during an attack and
/// must end in success or an honest failure, never in "done" or "nothing found".
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts for a throttled call (the SDK has already retried inside each).
    pub throttle_attempts: u32,
    /// Attempts for a 5xx, timeout or dropped connection.
    pub transient_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// For creates without an idempotency token: throttling is retried (a
    /// throttled call never happened), a transient failure is not (it may
    /// have happened): [`create_once`] decides what comes next.
    pub fn once(self) -> RetryPolicy {
        RetryPolicy {
            transient_attempts: 1,
            ..self
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            throttle_attempts: 8,
            transient_attempts: 3,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        }
    }
}

/// Call counters, pacing lanes and the bound on calls in flight, shared by
/// every task of a run.
#[derive(Debug)]
pub struct Telemetry {
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
    pub retries: AtomicU64,
    lanes: std::sync::Mutex<HashMap<LaneKey, Arc<Lane>>>,
    /// `--concurrency`: taken after the lane's slot, so a call waiting out
    /// its lane's pacing never keeps another lane's call from the wire.
    in_flight: tokio::sync::Semaphore,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new(16)
    }
}

impl Telemetry {
    pub fn new(concurrency: usize) -> Self {
        Telemetry {
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            lanes: std::sync::Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(concurrency.max(1)),
        }
    }

    pub fn snapshot(&self) -> CallCounts {
        CallCounts {
            calls: self.calls.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    /// The lane `operation` (such as `ec2:StopInstances`) is metered in: AWS
    /// keeps one bucket per account, service and region, and separate ones
    /// for reads and changes. Global services pass `None`.
    pub fn lane(&self, account: &str, operation: &str, region: Option<&str>) -> Arc<Lane> {
        let (service, name) = operation.split_once(':').unwrap_or(("", operation));
        let key = LaneKey {
            account: account.to_string(),
            service: service.to_string(),
            region: region.unwrap_or("global").to_string(),
            write: !READ_PREFIXES.iter().any(|p| name.starts_with(p)),
        };
        let mut lanes = match self.lanes.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        lanes.entry(key).or_default().clone()
    }
}

/// Operations AWS meters as reads, by name prefix.
const READ_PREFIXES: &[&str] = &["Describe", "List", "Get", "Simulate", "Lookup"];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LaneKey {
    account: String,
    service: String,
    region: String,
    write: bool,
}

/// Client-side pacing for one throttling bucket. AWS meters calls with token
/// buckets (a burst, then a refill rate) that it does not publish per account;
/// a lane starts unpaced, and from the first throttling answer on models the
/// bucket it learned: the burst is what got through before that answer, the
/// rate is what keeps getting through while calls are refused. Calls then
/// leave at the refill rate instead of bouncing, and an idle lane refills, so
/// the next step starts with a burst again. Without throttling it probes up.
#[derive(Debug, Default)]
pub struct Lane {
    bucket: std::sync::Mutex<Bucket>,
}

#[derive(Debug, Default)]
struct Bucket {
    /// `None` until the first throttling answer: no pacing.
    model: Option<Model>,
    /// Successes before the first throttle: the burst estimate.
    before: u32,
    /// Success times since the lane was last throttled, for the rate estimate.
    successes: VecDeque<Instant>,
    /// Refusal times within the window, to tell whether slowing down helped.
    refusals: VecDeque<Instant>,
}

#[derive(Debug)]
struct Model {
    rate: f64,
    capacity: f64,
    /// Tokens at `at`; negative when callers hold reservations ahead.
    tokens: f64,
    at: Instant,
    /// Start of the current measuring window (the first throttle after a quiet period).
    since: Instant,
    last_throttle: Instant,
    last_raise: Instant,
    /// The last cut: the rate before it, the refused share that caused it, when.
    last_cut: Option<(f64, f64, Instant)>,
}

/// Window over which the refill rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// The least refill rate a lane assumes before it has measured one.
const MIN_GUESS: f64 = 10.0;
/// Least evidence before a rate estimate replaces the guess.
const MIN_SPAN: Duration = Duration::from_millis(500);

impl Lane {
    /// Waits for this lane's next slot (at once while the lane is unpaced).
    pub async fn acquire(&self) {
        let wait = {
            let mut b = self.lock();
            let Some(m) = b.model.as_mut() else {
                return;
            };
            let now = Instant::now();
            m.refill(now);
            m.tokens -= 1.0;
            if m.tokens >= 0.0 {
                return;
            }
            Duration::from_secs_f64(-m.tokens / m.rate)
        };
        tokio::time::sleep(wait).await;
    }

    pub fn success(&self) {
        let now = Instant::now();
        let mut b = self.lock();
        match b.model.as_mut() {
            None => b.before = b.before.saturating_add(1),
            Some(m) => {
                // Quiet for a while: the bucket may allow more than we send.
                if now.duration_since(m.last_throttle) > RATE_WINDOW
                    && now.duration_since(m.last_raise) > Duration::from_millis(500)
                {
                    m.rate *= 1.1;
                    m.last_raise = now;
                }
                b.successes.push_back(now);
                while b
                    .successes
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
                {
                    b.successes.pop_front();
                }
            }
        }
    }

    pub fn throttled(&self) {
        let now = Instant::now();
        let mut guard = self.lock();
        let b = &mut *guard;
        let successes = b.successes.len() as f64;
        match b.model.as_mut() {
            None => {
                // Everything before this answer was the burst; until the rate
                // is measured, assume the bucket refills its burst each second
                // (too high costs a few refused calls, too low costs time).
                let capacity = f64::from(b.before.max(1));
                b.model = Some(Model {
                    rate: capacity.max(MIN_GUESS),
                    capacity,
                    tokens: 0.0,
                    at: now,
                    since: now,
                    last_throttle: now,
                    last_raise: now,
                    last_cut: None,
                });
                b.successes.clear();
            }
            Some(m) => {
                m.refill(now);
                // The server's bucket is empty now, whatever the model said.
                m.tokens = m.tokens.min(0.0);
                b.refusals.push_back(now);
                while b
                    .refusals
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
                {
                    b.refusals.pop_front();
                }
                if now.duration_since(m.last_throttle) > RATE_WINDOW {
                    m.since = now;
                    b.successes.clear();
                } else {
                    let span = now.duration_since(m.since).min(RATE_WINDOW);
                    if span >= MIN_SPAN {
                        let refused = b.refusals.len() as f64;
                        let share = refused / (refused + successes).max(1.0);
                        m.adjust(successes / span.as_secs_f64(), share, now);
                    }
                }
                m.last_throttle = now;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        match self.bucket.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Model {
    /// While calls are refused, what gets through is the refill rate: pace
    /// just above it. A cut is judged a window later: if the refused share
    /// did not fall, the refusals are not about our rate (another client on
    /// the same bucket, a service in trouble), and the cut is undone rather
    /// than repeated, so random refusals never spiral the lane to a crawl.
    fn adjust(&mut self, measured: f64, refused_share: f64, now: Instant) {
        let estimate = (measured * 1.05).max(0.5);
        if estimate >= self.rate {
            self.rate = estimate;
            return;
        }
        match self.last_cut {
            Some((_, _, at)) if now.duration_since(at) < RATE_WINDOW => {}
            Some((before, share, _)) if refused_share >= share * 0.8 => {
                self.rate = before;
                self.last_cut = Some((before, share, now));
            }
            _ => {
                self.last_cut = Some((self.rate, refused_share, now));
                self.rate = estimate;
            }
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.capacity);
        self.at = now;
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CallCounts {
    pub calls: u64,
    pub throttled: u64,
    pub retries: u64,
}

impl CallCounts {
    /// What was counted since `earlier` (a step's share of the run).
    pub fn since(&self, earlier: &CallCounts) -> CallCounts {
        CallCounts {
            calls: self.calls.saturating_sub(earlier.calls),
            throttled: self.throttled.saturating_sub(earlier.throttled),
            retries: self.retries.saturating_sub(earlier.retries),
        }
    }
}

/// Runs one AWS call under `policy` in `lane`: every attempt waits for the
/// lane's slot; a throttled attempt teaches the lane and goes back in line
/// (the lane's pacing is the backoff); transient failures are retried with
/// capped exponential backoff and full jitter; others return at once.
pub async fn call<T, F, Fut>(
    policy: &RetryPolicy,
    telemetry: &Telemetry,
    lane: &Lane,
    mut f: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    // Separate budgets: a call refused twice for throttling still gets its
    // full share of retries for a 5xx or a dropped connection, and the other way round.
    let (mut throttled, mut transient) = (0u32, 0u32);
    loop {
        lane.acquire().await;
        let permit = telemetry.in_flight.acquire().await;
        telemetry.calls.fetch_add(1, Ordering::Relaxed);
        let result = f().await;
        drop(permit);
        let err = match result {
            Ok(v) => {
                lane.success();
                return Ok(v);
            }
            Err(e) => e,
        };
        let (spent, limit) = match err.kind {
            ErrorKind::Throttled => {
                telemetry.throttled.fetch_add(1, Ordering::Relaxed);
                lane.throttled();
                throttled += 1;
                (throttled, policy.throttle_attempts)
            }
            ErrorKind::Transient => {
                transient += 1;
                (transient, policy.transient_attempts)
            }
            _ => return Err(err),
        };
        if spent >= limit {
            return Err(err);
        }
        telemetry.retries.fetch_add(1, Ordering::Relaxed);
        // A throttled call goes back in its lane's line: the lane's pacing is
        // the backoff. Only a lane that keeps refusing (shared with another
        // client, say) adds exponential backoff on top.
        if err.kind == ErrorKind::Transient || spent > 4 {
            tokio::time::sleep(backoff(policy, spent)).await;
        }
    }
}

/// What [`create_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created<T> {
    /// This call made it.
    New(T),
    /// An earlier call whose answer was lost had made it: found and adopted.
    Adopted(T),
}

impl<T> Created<T> {
    pub fn into_inner(self) -> T {
        match self {
            Created::New(t) | Created::Adopted(t) => t,
        }
    }

    pub fn is_new(&self) -> bool {
        matches!(self, Created::New(_))
    }
}

/// How often a create whose answer is lost is looked for before it is sent
/// again, and how long to wait between looks (reads right after a write may
/// not see it yet: IAM, Organizations and EC2 are eventually consistent).
const LOOKS: u32 = 3;
const LOOK_PAUSE: Duration = Duration::from_millis(700);

/// A call that creates something and takes no idempotency token
/// (`organizations:CreatePolicy`, `ec2:CreateSecurityGroup`,
/// `ec2:CreateSnapshots`). `create` must not retry transient failures
/// itself ([`RetryPolicy::once`]): a timeout or 5xx may come after AWS
/// acted, so before sending it again `lookup` reads whether it happened,
/// and a duplicate-name refusal (`duplicate`) adopts what exists. So a
/// create happens once, however many answers are lost.
pub async fn create_once<T, C, CF, L, LF>(
    duplicate: &[&str],
    mut create: C,
    mut lookup: L,
) -> Result<Created<T>, AwsError>
where
    C: FnMut() -> CF,
    CF: std::future::Future<Output = Result<T, AwsError>>,
    L: FnMut() -> LF,
    LF: std::future::Future<Output = Result<Option<T>, AwsError>>,
{
    let mut lost = None;
    for _ in 0..RetryPolicy::default().transient_attempts {
        if lost.is_some() {
            for look in 0..LOOKS {
                if let Some(found) = lookup().await? {
                    return Ok(Created::Adopted(found));
                }
                if look + 1 < LOOKS {
                    tokio::time::sleep(LOOK_PAUSE).await;
                }
            }
        }
        match create().await {
            Ok(v) => return Ok(Created::New(v)),
            Err(e) if e.kind == ErrorKind::Transient => lost = Some(e),
            Err(e) if e.code.as_deref().is_some_and(|c| duplicate.contains(&c)) => {
                for look in 0..LOOKS {
                    if let Some(found) = lookup().await? {
                        return Ok(Created::Adopted(found));
                    }
                    if look + 1 < LOOKS {
                        tokio::time::sleep(LOOK_PAUSE).await;
                    }
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(lost.unwrap_or_else(|| local("create", "no attempt was made".into())))
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base
        .saturating_mul(1u32 << attempt.min(16))
        .min(policy.cap);
    // Full jitter keeps concurrent retries from arriving together again.
    exp.mul_f64(jitter())
}

/// A number in [0.5, 1.0): cheap randomness without a dependency.
fn jitter() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    0.5 + (x % 1000) as f64 / 2000.0
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

    #[test]
    fn principals_parse() {
        assert_eq!(
            parse_principal("arn:aws:iam::111122223333:user/ops/alice"),
            Principal::User {
                name: "alice".into()
            }
        );
        assert_eq!(
            parse_principal("arn:aws:sts::111122223333:assumed-role/IR-BreakGlass/bob"),
            Principal::AssumedRole {
                role_name: "IR-BreakGlass".into(),
                session: "bob".into()
            }
        );
        assert_eq!(
            parse_principal("arn:aws:iam::111122223333:root"),
            Principal::Root
        );
        assert_eq!(parse_principal("garbage"), Principal::Other);
    }
}
