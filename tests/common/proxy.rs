//! A loopback proxy in front of moto that answers what moto 5.2 does not
//! implement (EC2 `LockSnapshot`, `DescribeLockedSnapshots`, and block
//! public access for snapshots and AMIs through the tabletop shim's own
//! emulation) and injects chosen faults; every other request is forwarded
//! to moto unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Snapshot id → (lock mode, duration in days).
pub type Locks = Arc<Mutex<BTreeMap<String, (String, u32)>>>;

/// AWS on its worst day, aimed at single actions: answers lost after the
/// call was carried out, and refusals of chosen calls.
#[derive(Default)]
pub struct WorstDay {
    /// Action → how many more of its calls moto carries out and the proxy
    /// then answers with a 5xx, as when the answer is lost on the way back.
    pub lose: BTreeMap<String, usize>,
    /// (action, nth call of it, counting from 1) → (HTTP status, error
    /// code): answered with that error before moto sees the call.
    pub refuse: BTreeMap<(String, usize), (u16, String)>,
    /// Calls seen so far, per action (DryRun checks not counted).
    pub seen: BTreeMap<String, usize>,
    /// Answers lost so far, per action.
    pub lost: BTreeMap<String, usize>,
    /// The parameters of every `AssumeRole` and `AssumeRoleWithWebIdentity`
    /// that came through (MFA serial and code, external id, duration,
    /// session name), to show what the credential chain sent.
    pub assumed: Vec<BTreeMap<String, String>>,
    /// When set, sessions STS issues expire after this long (the answer says
    /// so), and a call signed with an expired one gets `ExpiredToken`, as AWS
    /// answers it.
    pub session_length: Option<std::time::Duration>,
    /// Session key id → when it expires (see `session_length`).
    pub expiries: BTreeMap<String, std::time::SystemTime>,
    /// When set, a session is refused this long after it was issued,
    /// whatever its answer said (see `sessions_die_after`).
    pub session_dies: Option<std::time::Duration>,
    /// Bearer tokens the SSO portal accepts → (account, role name):
    /// `GetRoleCredentials` answers with a session of that role, minted by
    /// moto's STS, as IAM Identity Center hands out role credentials.
    pub sso_tokens: BTreeMap<String, (String, String)>,
    /// Temporary key id → CloudTrail events made with it (the JSON of each
    /// event's `CloudTrailEvent`): what `LookupEvents` answers, as CloudTrail
    /// documents it, since moto does not implement it.
    pub trail_events: BTreeMap<String, Vec<String>>,
    /// AWS's quotas, which moto does not enforce (see [`quota_wall`]).
    pub quotas: Quotas,
    /// After an `EnablePolicyType`, this many `AttachPolicy` calls are
    /// refused with `PolicyTypeNotEnabledException`: the enable is
    /// asynchronous on AWS ("performs in the background").
    pub enable_lag: usize,
    /// How many `AttachPolicy` calls `enable_lag` refused.
    pub lagged: usize,
    /// An `EnablePolicyType` came through.
    pub enabled: bool,
    /// The next this-many EC2 `DryRun` checks are throttled, as EC2 does.
    pub throttle_dry_runs: usize,
    /// The next this-many `SimulatePrincipalPolicy` calls are throttled.
    pub throttle_simulations: usize,
    /// DryRun checks and simulations throttled so far.
    pub dry_runs_throttled: usize,
    pub simulations_throttled: usize,
    /// `SimulatePrincipalPolicy` answers HTTP 500, every time.
    pub simulation_down: bool,
    /// Regions where every EC2 call answers 503 (a regional outage).
    pub failing_regions: BTreeSet<String>,
    /// Regions disabled for the account: `DescribeRegions` leaves them out,
    /// as it lists "the Regions that are enabled for your account" unless
    /// AllRegions is set (EC2 API reference, DescribeRegions).
    pub disabled_regions: BTreeSet<String>,
    /// Regions where every call first waits this long.
    pub slow_regions: BTreeMap<String, std::time::Duration>,
    /// Every resource ARN `SimulatePrincipalPolicy` was asked about.
    pub simulated_resources: BTreeSet<String>,
    /// Session key id from `GetSessionToken` → the long-term key that asked
    /// for it. AWS answers `GetCallerIdentity` for such a session with the
    /// IAM user who owns it ("details about the IAM user or role whose
    /// credentials are used", STS API reference, GetCallerIdentity); moto
    /// answers `user/moto`, so the proxy asks moto as the parent key.
    pub session_parents: BTreeMap<String, String>,
}

/// Quota walls, each answered with the error AWS gives.
#[derive(Default)]
pub struct Quotas {
    /// Five SCPs per root, OU or account (Organizations quotas): counted
    /// from moto's own state at each `AttachPolicy`.
    pub scps_per_target: bool,
    /// Users and roles whose inline policies already fill IAM's aggregate
    /// size limit (2,048 characters for a user, 10,240 for a role): any
    /// `Put{User,Role}Policy` is refused with `LimitExceeded`.
    pub inline_full: BTreeSet<String>,
    /// Users and roles already at the managed-policy quota (10 by default):
    /// any `Attach{User,Role}Policy` is refused with `LimitExceeded`.
    pub managed_full: BTreeSet<String>,
}

#[derive(Clone, Default)]
struct State {
    shaping: Arc<Mutex<Option<Arc<Shaping>>>>,
    locks: Locks,
    failing: Arc<Mutex<BTreeSet<String>>>,
    denied: Arc<Mutex<BTreeSet<String>>>,
    mutations: Arc<Mutex<Vec<String>>>,
    denied_dry_runs: Arc<Mutex<BTreeSet<String>>>,
    denied_roles: Arc<Mutex<BTreeSet<String>>>,
    key_accounts: KeyAccounts,
    simulated: Arc<Mutex<BTreeSet<String>>>,
    worst: Arc<Mutex<WorstDay>>,
    /// When each snapshot was locked: its lock expires `days` later.
    lock_times: Arc<Mutex<BTreeMap<String, std::time::SystemTime>>>,
    blocks: breakglass::tabletop::shim::Blocks,
    sse_c: breakglass::tabletop::shim::SseC,
    unprovisioned: breakglass::tabletop::shim::Unprovisioned,
    roots: breakglass::tabletop::roots::Roots,
}

/// (service, region, account): one token bucket each, as AWS meters.
type BucketKey = (String, String, String);

/// Access key id → the account its session belongs to, learned from the
/// `AssumeRole` answers that went through (AWS meters per account).
pub type KeyAccounts = Arc<Mutex<BTreeMap<String, String>>>;

/// Read-only API calls by name prefix; everything else counts as a mutation.
const READ_PREFIXES: &[&str] = &["Describe", "List", "Get", "Simulate", "Lookup"];

pub struct Proxy {
    pub port: u16,
    shaping: Arc<Mutex<Option<Arc<Shaping>>>>,
    pub locks: Locks,
    /// Instances whose `CreateSnapshots` fails with `IncorrectState`.
    pub failing_snapshots: Arc<Mutex<BTreeSet<String>>>,
    /// Actions `SimulatePrincipalPolicy` answers `implicitDeny` for.
    pub denied_actions: Arc<Mutex<BTreeSet<String>>>,
    /// Every mutating call forwarded or answered, by action name.
    pub mutations: Arc<Mutex<Vec<String>>>,
    /// EC2 actions whose `DryRun=true` answers `UnauthorizedOperation`.
    pub denied_dry_runs: Arc<Mutex<BTreeSet<String>>>,
    /// Role ARNs whose `AssumeRole` answers `AccessDenied`.
    pub denied_roles: Arc<Mutex<BTreeSet<String>>>,
    /// Every principal `SimulatePrincipalPolicy` was asked about.
    pub simulated: Arc<Mutex<BTreeSet<String>>>,
    /// Lost answers, refusals and CloudTrail history (see [`WorstDay`]).
    pub worst: Arc<Mutex<WorstDay>>,
    /// (region, `Snapshot` or `Image`) → (block public access state, who
    /// manages it), answered by the tabletop shim's emulation.
    pub blocks: breakglass::tabletop::shim::Blocks,
    /// Buckets whose default encryption blocks SSE-C (moto drops it).
    pub sse_c: breakglass::tabletop::shim::SseC,
    /// Centralized root access and member root users, answered by the
    /// tabletop shim's emulation (moto has none).
    pub roots: breakglass::tabletop::roots::Roots,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let state = State::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, upstream, &state);
                });
            }
        });
        Proxy {
            port,
            shaping: state.shaping,
            locks: state.locks,
            failing_snapshots: state.failing,
            denied_actions: state.denied,
            mutations: state.mutations,
            denied_dry_runs: state.denied_dry_runs,
            denied_roles: state.denied_roles,
            simulated: state.simulated,
            worst: state.worst,
            blocks: state.blocks,
            sse_c: state.sse_c,
            roots: state.roots,
        }
    }

    /// The next `n` calls of `action` are carried out and their answers lost.
    pub fn lose(&self, action: &str, n: usize) {
        if let Ok(mut w) = self.worst.lock() {
            *w.lose.entry(action.to_string()).or_default() += n;
        }
    }

    /// The `nth` call of `action` (counting from 1) is refused with `code`.
    pub fn refuse(&self, action: &str, nth: usize, status: u16, code: &str) {
        if let Ok(mut w) = self.worst.lock() {
            w.refuse
                .insert((action.to_string(), nth), (status, code.to_string()));
        }
    }

    /// How many answers of `action` were lost so far.
    pub fn lost(&self, action: &str) -> usize {
        self.worst
            .lock()
            .map(|w| w.lost.get(action).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Every AssumeRole-like call seen, with its parameters.
    pub fn assumed(&self) -> Vec<BTreeMap<String, String>> {
        self.worst
            .lock()
            .map(|w| w.assumed.clone())
            .unwrap_or_default()
    }

    /// Sessions STS issues from now on last `length`, enforced.
    pub fn short_sessions(&self, length: std::time::Duration) {
        if let Ok(mut w) = self.worst.lock() {
            w.session_length = Some(length);
        }
    }

    /// Sessions are refused (`ExpiredToken`) after `dead`, sooner than the
    /// expiry their answer states: a client still signing with a session
    /// it should have renewed fails, instead of passing unnoticed.
    pub fn sessions_die_after(&self, dead: std::time::Duration) {
        if let Ok(mut w) = self.worst.lock() {
            w.session_dies = Some(dead);
        }
    }

    /// The SSO portal accepts `token` for `role` in `account`.
    pub fn sso_token(&self, token: &str, account: &str, role: &str) {
        if let Ok(mut w) = self.worst.lock() {
            w.sso_tokens
                .insert(token.to_string(), (account.to_string(), role.to_string()));
        }
    }

    /// CloudTrail shows `event` (an event's JSON) as made with `key_id`.
    pub fn trail_event(&self, key_id: &str, event: &str) {
        if let Ok(mut w) = self.worst.lock() {
            w.trail_events
                .entry(key_id.to_string())
                .or_default()
                .push(event.to_string());
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, every request pays `shaping`'s latency and its token buckets.
    pub fn shape(&self, shaping: Arc<Shaping>) {
        if let Ok(mut s) = self.shaping.lock() {
            *s = Some(shaping);
        }
    }
}

/// Real AWS's cost per call, for the benchmark: a round-trip latency and,
/// for mutating calls, a token bucket per (service, region) that answers
/// with the service's own throttling error when empty.
pub struct Shaping {
    pub latency: std::time::Duration,
    /// Relative spread of the latency (0.2 = ±20 %).
    pub jitter: f64,
    /// service → (refill per second, burst).
    pub limits: BTreeMap<String, (f64, f64)>,
    /// service → (refill per second, burst) for reads (`Describe*`, `List*`,
    /// `Get*`, DryRun checks), one bucket per API: EC2 meters each
    /// non-mutating API on its own (DescribeHosts: 100 burst, 20 per second;
    /// EC2 developer guide, "Request throttling for the Amazon EC2 API").
    pub read_limits: BTreeMap<String, (f64, f64)>,
    /// Per account: (refill per second, burst) for every service, in place
    /// of `limits` (a member account that AWS throttles hard).
    pub account_limits: BTreeMap<String, (f64, f64)>,
    buckets: Mutex<BTreeMap<BucketKey, (f64, std::time::Instant)>>,
    /// Every request seen: when it arrived, service, region, action, whether
    /// it mutates, whether it was throttled.
    pub log: Mutex<Vec<Seen>>,
    /// Failures injected at random into any call, before it reaches moto.
    pub faults: Faults,
    /// How many of each were injected: resets, server errors, throttles.
    pub injected: Mutex<[usize; 3]>,
    /// The next this-many follow-up pages of any listing (requests with a
    /// `Marker` or `NextToken`) are answered with a 5xx.
    pub page_failures: Mutex<usize>,
    /// Slow answers and failed pages injected.
    pub slowed: Mutex<usize>,
    pub pages_failed: Mutex<usize>,
}

/// Probabilities per request (0.0 to 1.0). Every fault is injected before
/// the request is forwarded, so moto never sees a call that then failed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// The service's throttling error, whatever its bucket holds.
    pub throttle: f64,
    /// A 500 or 503 with the protocol's error body.
    pub server_error: f64,
    /// The connection closed with no answer.
    pub reset: f64,
    /// Forwarded to moto (so it happens), answered only after `slow_by`:
    /// past the client's timeout, the caller cannot know it happened.
    pub slow: f64,
    pub slow_by: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub at: std::time::SystemTime,
    pub service: String,
    pub region: String,
    pub action: String,
    pub mutating: bool,
    pub throttled: bool,
    /// A listing's second or later page (it carries a `Marker` or `NextToken`).
    pub follow_up: bool,
}

impl Shaping {
    pub fn new(latency: std::time::Duration, limits: BTreeMap<String, (f64, f64)>) -> Shaping {
        Shaping {
            latency,
            jitter: 0.2,
            limits,
            read_limits: BTreeMap::new(),
            account_limits: BTreeMap::new(),
            buckets: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            faults: Faults::default(),
            injected: Mutex::new([0; 3]),
            page_failures: Mutex::new(0),
            slowed: Mutex::new(0),
            pages_failed: Mutex::new(0),
        }
    }

    /// Takes a token from the bucket of the call's (service, region,
    /// account), reads and changes apart; `false` when it is empty.
    fn admit(
        &self,
        service: &str,
        action: &str,
        region: &str,
        account: &str,
        mutating: bool,
    ) -> bool {
        let limit = if mutating {
            self.account_limits
                .get(account)
                .or_else(|| self.limits.get(service))
        } else {
            self.read_limits.get(service)
        };
        let Some(&(rate, burst)) = limit else {
            return true;
        };
        let now = std::time::Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        let (tokens, at) = buckets
            .entry((
                if mutating {
                    service.to_string()
                } else {
                    format!("{service}:{action}")
                },
                region.to_string(),
                account.to_string(),
            ))
            .or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn delay(&self) -> std::time::Duration {
        let spread = 1.0 + self.jitter * (2.0 * random_unit() - 1.0);
        self.latency.mul_f64(spread.max(0.0))
    }
}

fn random_unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x2545_F491_4F6C_DD1D);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The operation of a REST request, named by its method and path (the
/// AWS Backup and S3 Control API references give each its route).
fn rest_action(head: &str) -> Option<String> {
    let line = head.lines().next()?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?, words.next()?);
    let path = path.split('?').next()?;
    let route = |suffix: &str| path.starts_with("/backup-vaults/") && path.ends_with(suffix);
    let block = path == "/v20180820/configuration/publicAccessBlock";
    let name = match method {
        "PUT" if route("/vault-lock") => "PutBackupVaultLockConfiguration",
        "DELETE" if route("/vault-lock") => "DeleteBackupVaultLockConfiguration",
        "GET" if block => "GetPublicAccessBlock",
        "PUT" if block => "PutPublicAccessBlock",
        "DELETE" if block => "DeletePublicAccessBlock",
        _ => return None,
    };
    Some(name.to_string())
}

/// A 5xx in the protocol's own error format.
fn server_error(s: &mut TcpStream, service: &str) -> std::io::Result<()> {
    match service {
        "ec2" => respond(
            s,
            "503 Service Unavailable",
            "<Response><Errors><Error><Code>Unavailable</Code><Message>injected: the service is unavailable</Message></Error></Errors><RequestID>proxy-fault</RequestID></Response>",
        ),
        "organizations" | "cloudtrail" | "kms" => {
            let body = r#"{"__type":"ServiceException","Message":"injected: internal error"}"#;
            write!(
                s,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        other => respond(
            s,
            "500 Internal Server Error",
            &format!(
                "<ErrorResponse xmlns=\"https://{other}.amazonaws.com/doc/2010-05-08/\"><Error><Type>Receiver</Type><Code>ServiceFailure</Code><Message>injected: internal error</Message></Error><RequestId>proxy-fault</RequestId></ErrorResponse>"
            ),
        ),
    }
}

/// An error in the protocol's own format: EC2's `Response/Errors`, the JSON
/// protocols' `__type`, and the query protocols' `ErrorResponse`.
fn error_answer(
    s: &mut TcpStream,
    service: &str,
    status: u16,
    code: &str,
    message: &str,
) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Error",
    };
    match service {
        "ec2" => respond(
            s,
            &format!("{status} {reason}"),
            &format!(
                "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>proxy</RequestID></Response>"
            ),
        ),
        "organizations" | "cloudtrail" | "kms" => {
            let body = serde_json::json!({ "__type": code, "Message": message }).to_string();
            write!(
                s,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        other => respond(
            s,
            &format!("{status} {reason}"),
            &format!(
                "<ErrorResponse xmlns=\"https://{other}.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
            ),
        ),
    }
}

/// The throttling answer each protocol sends, as AWS sends it.
fn throttle(s: &mut TcpStream, service: &str) -> std::io::Result<()> {
    match service {
        "ec2" => respond(
            s,
            "503 Service Unavailable",
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>proxy-throttle</RequestID></Response>",
        ),
        "organizations" => {
            let body = r#"{"__type":"TooManyRequestsException","Message":"AWS Organizations can't complete your request because another request is already in progress. Try again later.","Type":"RequestThrottled"}"#;
            write!(
                s,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: proxy-throttle\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        // IAM and STS (awsQuery): 400 with an ErrorResponse document.
        other => respond(
            s,
            "400 Bad Request",
            &format!(
                "<ErrorResponse xmlns=\"https://{other}.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>proxy-throttle</RequestId></ErrorResponse>"
            ),
        ),
    }
}

/// Service, region and access key id from the SigV4 credential.
fn credential_of(head: &str) -> (String, String, String) {
    head.lines()
        .find_map(|l| {
            let lower = l.to_ascii_lowercase();
            let i = lower.find("credential=")?;
            let scope: Vec<&str> = l[i + "credential=".len()..]
                .split([',', ' '])
                .next()?
                .split('/')
                .collect();
            Some((
                scope.get(3)?.to_string(),
                scope.get(2)?.to_string(),
                scope.first()?.to_string(),
            ))
        })
        .unwrap_or_default()
}

/// The text between `<tag>` and `</tag>`, first occurrence.
fn xml_text<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(&body[start..end])
}

use breakglass::tabletop::shim::read_request;

fn params(body: &str) -> Vec<(String, String)> {
    breakglass::tabletop::shim::form(body).into_iter().collect()
}

fn respond(s: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

fn handle(mut client: TcpStream, upstream: u16, state: &State) -> std::io::Result<()> {
    let (locks, failing) = (&state.locks, &state.failing);
    let request = read_request(&mut client)?;
    let split = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(request.len());
    let body = String::from_utf8_lossy(&request[split..]).into_owned();
    let p = params(&body);
    if std::env::var_os("PROXY_DEBUG").is_some() {
        eprintln!("proxy: {body}");
    }
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let action = get("Action").or_else(|| {
        // JSON protocols (Organizations, STS JSON) name the call in a header.
        let head = String::from_utf8_lossy(&request[..split]).to_string();
        head.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("x-amz-target:")
                    .then(|| l.rsplit('.').next().map(|a| a.trim().to_string()))
            })
            .flatten()
            .or_else(|| rest_action(&head))
    });
    let head_text = String::from_utf8_lossy(&request[..split]).to_string();
    if head_text.starts_with("GET /federation/credentials") {
        return sso_role_credentials(&mut client, upstream, state, &head_text);
    }
    let (_, _, signing_key) = credential_of(&head_text);
    let expired = state.worst.lock().ok().is_some_and(|w| {
        w.expiries
            .get(&signing_key)
            .is_some_and(|t| *t < std::time::SystemTime::now())
    });
    if expired {
        let (service, _, _) = credential_of(&head_text);
        return error_answer(
            &mut client,
            &service,
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
        );
    }
    if let Some(answer) = regional_or_check_fault(&head_text, &p, action.as_deref(), state) {
        return match answer {
            Fault::Throttle(service) => throttle(&mut client, &service),
            Fault::Down(service) => server_error(&mut client, &service),
        };
    }
    if matches!(
        action.as_deref(),
        Some("AssumeRole" | "AssumeRoleWithWebIdentity")
    ) && let Ok(mut w) = state.worst.lock()
    {
        w.assumed.push(p.iter().cloned().collect());
    }
    let shaping = state.shaping.lock().ok().and_then(|s| s.clone());
    let mut slow_by = None;
    if let (Some(shaping), Some(a)) = (shaping, &action) {
        std::thread::sleep(shaping.delay());
        let head = String::from_utf8_lossy(&request[..split]).to_string();
        let (service, region, key) = credential_of(&head);
        let account = state
            .key_accounts
            .lock()
            .ok()
            .and_then(|k| k.get(&key).cloned())
            .unwrap_or_default();
        let mutating = get("DryRun").as_deref() != Some("true")
            && !READ_PREFIXES.iter().any(|r| a.starts_with(r));
        let roll = random_unit();
        let f = shaping.faults;
        let fault = [
            f.reset,
            f.reset + f.server_error,
            f.reset + f.server_error + f.throttle,
        ]
        .iter()
        .position(|&p| roll < p);
        let follow_up = get("Marker").is_some() || get("NextToken").is_some();
        if follow_up
            && let Ok(mut left) = shaping.page_failures.lock()
            && *left > 0
        {
            *left -= 1;
            if let Ok(mut n) = shaping.pages_failed.lock() {
                *n += 1;
            }
            return server_error(&mut client, &service);
        }
        if f.slow > 0.0 && random_unit() < f.slow {
            if let Ok(mut n) = shaping.slowed.lock() {
                *n += 1;
            }
            slow_by = Some(f.slow_by);
        }
        if let (Some(i), Ok(mut n)) = (fault, shaping.injected.lock()) {
            n[i] += 1;
        }
        match fault {
            // Dropping the stream closes the connection with no answer.
            Some(0) => return Ok(()),
            Some(1) => return server_error(&mut client, &service),
            _ => {}
        }
        let throttled =
            fault == Some(2) || !shaping.admit(&service, a, &region, &account, mutating);
        if let Ok(mut log) = shaping.log.lock() {
            log.push(Seen {
                at: std::time::SystemTime::now(),
                service: service.clone(),
                region,
                action: a.clone(),
                mutating,
                throttled,
                follow_up,
            });
        }
        if throttled {
            return throttle(&mut client, &service);
        }
    }
    if let Some(a) = &action {
        let dry = get("DryRun").as_deref() == Some("true");
        if !dry
            && !READ_PREFIXES.iter().any(|r| a.starts_with(r))
            && let Ok(mut m) = state.mutations.lock()
        {
            m.push(a.clone());
        }
    }
    let dry_denied = get("DryRun").as_deref() == Some("true")
        && action.as_ref().is_some_and(|a| {
            state
                .denied_dry_runs
                .lock()
                .map(|d| d.contains(a))
                .unwrap_or(false)
        });
    if dry_denied {
        return respond(
            &mut client,
            "403 Forbidden",
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>proxy</RequestID></Response>",
        );
    }
    let dry = get("DryRun").as_deref() == Some("true");
    let mut lose_answer = false;
    if let (Some(a), false) = (&action, dry) {
        let head = String::from_utf8_lossy(&request[..split]).to_string();
        let (service, _, _) = credential_of(&head);
        let refusal = state.worst.lock().ok().and_then(|mut w| {
            let n = {
                let seen = w.seen.entry(a.clone()).or_default();
                *seen += 1;
                *seen
            };
            if let Some(left) = w.lose.get_mut(a)
                && *left > 0
            {
                *left -= 1;
                *w.lost.entry(a.clone()).or_default() += 1;
                lose_answer = true;
            }
            w.refuse.get(&(a.clone(), n)).cloned()
        });
        if let Some((status, code, message)) = quota_wall(&request, split, &p, a, upstream, state) {
            return error_answer(&mut client, &service, status, &code, &message);
        }
        if let Some((status, code)) = refusal {
            return error_answer(
                &mut client,
                &service,
                status,
                &code,
                &format!("injected: call {a} refused"),
            );
        }
        if a == "LookupEvents" {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let key = json["LookupAttributes"][0]["AttributeValue"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let events: Vec<serde_json::Value> = state
                .worst
                .lock()
                .map(|w| w.trail_events.get(&key).cloned().unwrap_or_default())
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    serde_json::json!({
                        "EventId": format!("proxy-{i}"),
                        "EventName": "GetCallerIdentity",
                        "AccessKeyId": key,
                        "CloudTrailEvent": e,
                    })
                })
                .collect();
            let body = serde_json::json!({ "Events": events }).to_string();
            return write!(
                client,
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    }
    if let Some((status, answer)) = breakglass::tabletop::roots::answer(
        &head_text,
        &breakglass::tabletop::shim::form(&body),
        &state.roots,
    ) {
        // Carried out by the emulation; a lost answer is lost after it.
        if lose_answer {
            let (service, _, _) = credential_of(&head_text);
            return server_error(&mut client, &service);
        }
        return respond(&mut client, status, &answer);
    }
    if let Some(target) = breakglass::tabletop::shim::json_target(&head_text)
        && let Some((status, answer)) =
            breakglass::tabletop::shim::permission_sets(&target, &body, &state.unprovisioned)
    {
        return respond(&mut client, status, &answer);
    }
    if lose_answer {
        // Carried out by moto; the answer never comes back.
        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
        up.write_all(&request)?;
        let mut response = Vec::new();
        up.read_to_end(&mut response)?;
        let head = String::from_utf8_lossy(&request[..split]).to_string();
        let (service, _, _) = credential_of(&head);
        return server_error(&mut client, &service);
    }
    let (_, region, _) = credential_of(&head_text);
    let form = breakglass::tabletop::shim::form(&body);
    if let Some((status, answer)) =
        breakglass::tabletop::shim::block_public_access(&form, &region, &state.blocks)
    {
        return respond(&mut client, status, &answer);
    }
    match action.as_deref() {
        Some("AssumeRole")
            if get("RoleArn").is_some_and(|r| {
                state
                    .denied_roles
                    .lock()
                    .map(|d| d.contains(&r))
                    .unwrap_or(false)
            }) =>
        {
            let role = get("RoleArn").unwrap_or_default();
            respond(
                &mut client,
                "403 Forbidden",
                &format!(
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to perform: sts:AssumeRole on resource: {role}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
                ),
            )
        }
        Some("SimulatePrincipalPolicy") => {
            if let (Some(arn), Ok(mut seen)) = (get("PolicySourceArn"), state.simulated.lock()) {
                seen.insert(arn);
            }
            // One answer per listed resource, as IAM gives them.
            let action_name = get("ActionNames.member.1").unwrap_or_default();
            let mut resources: Vec<String> = (1..)
                .map_while(|n| get(&format!("ResourceArns.member.{n}")))
                .collect();
            if let Ok(mut w) = state.worst.lock() {
                w.simulated_resources.extend(resources.iter().cloned());
            }
            if resources.is_empty() {
                resources.push("*".into());
            }
            let denied = state
                .denied
                .lock()
                .map(|d| d.contains(&action_name))
                .unwrap_or(false);
            let decision = if denied { "implicitDeny" } else { "allowed" };
            let members: String = resources
                .iter()
                .map(|r| format!("<member><EvalActionName>{action_name}</EvalActionName><EvalResourceName>{r}</EvalResourceName><EvalDecision>{decision}</EvalDecision><MatchedStatements/><MissingContextValues/></member>"))
                .collect();
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<SimulatePrincipalPolicyResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated><EvaluationResults>{members}</EvaluationResults></SimulatePrincipalPolicyResult><ResponseMetadata><RequestId>proxy</RequestId></ResponseMetadata></SimulatePrincipalPolicyResponse>"
                ),
            )
        }
        Some("LockSnapshot") => {
            let id = get("SnapshotId").unwrap_or_default();
            let mut mode = get("LockMode").unwrap_or_default();
            // A compliance lock with a cool-off reads `compliance-cooloff`
            // until the cool-off ends (EC2 API reference, LockSnapshot).
            if mode == "compliance" && get("CoolOffPeriod").is_some() {
                mode = "compliance-cooloff".into();
            }
            let days: u32 = get("LockDuration")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            if get("DryRun").as_deref() == Some("true") {
                return respond(
                    &mut client,
                    "412 Precondition Failed",
                    "<Response><Errors><Error><Code>DryRunOperation</Code><Message>Request would have succeeded, but DryRun flag is set.</Message></Error></Errors><RequestID>proxy</RequestID></Response>",
                );
            }
            if let Ok(mut l) = locks.lock() {
                l.insert(id.clone(), (mode.clone(), days));
            }
            if let Ok(mut t) = state.lock_times.lock() {
                t.insert(id.clone(), std::time::SystemTime::now());
            }
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<LockSnapshotResponse xmlns=\"{NS}\"><requestId>proxy</requestId><snapshotId>{id}</snapshotId><lockState>{mode}</lockState><lockDuration>{days}</lockDuration></LockSnapshotResponse>"
                ),
            )
        }
        Some("UnlockSnapshot") => {
            let id = get("SnapshotId").unwrap_or_default();
            if let Ok(mut l) = locks.lock() {
                l.remove(&id);
            }
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<UnlockSnapshotResponse xmlns=\"{NS}\"><requestId>proxy</requestId><snapshotId>{id}</snapshotId></UnlockSnapshotResponse>"
                ),
            )
        }
        Some("DescribeLockedSnapshots") => {
            let wanted: Vec<String> = p
                .iter()
                .filter(|(k, _)| k.starts_with("SnapshotId."))
                .map(|(_, v)| v.clone())
                .collect();
            let items: String = locks
                .lock()
                .map(|l| {
                    l.iter()
                        .filter(|(id, _)| wanted.is_empty() || wanted.contains(id))
                        .map(|(id, (mode, days))| {
                            let at = state
                                .lock_times
                                .lock()
                                .ok()
                                .and_then(|t| t.get(id).copied())
                                .unwrap_or_else(std::time::SystemTime::now);
                            let until = at + std::time::Duration::from_secs(u64::from(*days) * 86_400);
                            let until = jiff::Timestamp::try_from(until)
                                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S.000Z").to_string())
                                .unwrap_or_default();
                            format!("<item><ownerId>123456789012</ownerId><snapshotId>{id}</snapshotId><lockState>{mode}</lockState><lockDuration>{days}</lockDuration><lockExpiresOn>{until}</lockExpiresOn></item>")
                        })
                        .collect()
                })
                .unwrap_or_default();
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<DescribeLockedSnapshotsResponse xmlns=\"{NS}\"><requestId>proxy</requestId><snapshotSet>{items}</snapshotSet></DescribeLockedSnapshotsResponse>"
                ),
            )
        }
        Some("CreateSnapshots")
            if get("DryRun").as_deref() != Some("true")
                && get("InstanceSpecification.InstanceId")
                    .is_some_and(|i| failing.lock().map(|f| f.contains(&i)).unwrap_or(false)) =>
        {
            respond(
                &mut client,
                "400 Bad Request",
                "<Response><Errors><Error><Code>IncorrectState</Code><Message>injected: the volume is busy</Message></Error></Errors><RequestID>proxy</RequestID></Response>",
            )
        }
        _ => {
            let parent = (action.as_deref() == Some("GetCallerIdentity"))
                .then(|| {
                    state
                        .worst
                        .lock()
                        .ok()
                        .and_then(|w| w.session_parents.get(&signing_key).cloned())
                })
                .flatten();
            let request = match parent {
                Some(parent) => String::from_utf8_lossy(&request)
                    .replacen(
                        &format!("Credential={signing_key}/"),
                        &format!("Credential={parent}/"),
                        1,
                    )
                    .into_bytes(),
                None => request,
            };
            breakglass::tabletop::shim::note_sse_c(&head_text, &body, &state.sse_c);
            let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
            up.write_all(&request)?;
            let mut response = Vec::new();
            up.read_to_end(&mut response)?;
            response = breakglass::tabletop::shim::patch_answer(&head_text, response, &state.sse_c);
            if action.as_deref() == Some("DescribeRegions") {
                let disabled = state
                    .worst
                    .lock()
                    .map(|w| w.disabled_regions.clone())
                    .unwrap_or_default();
                response = drop_regions(response, &disabled);
            }
            if action.as_deref() == Some("GetSessionToken") {
                let text = String::from_utf8_lossy(&response);
                if let (Some(key), Ok(mut w)) = (xml_text(&text, "AccessKeyId"), state.worst.lock())
                {
                    w.session_parents
                        .insert(key.to_string(), signing_key.clone());
                }
            }
            if matches!(
                action.as_deref(),
                Some("AssumeRole" | "AssumeRoleWithWebIdentity")
            ) {
                response = shorten_session(response, state);
            }
            if action.as_deref() == Some("AssumeRole") {
                let text = String::from_utf8_lossy(&response);
                let account = xml_text(&text, "Arn").and_then(|a| a.split(':').nth(4));
                if let (Some(key), Some(account), Ok(mut k)) = (
                    xml_text(&text, "AccessKeyId"),
                    account,
                    state.key_accounts.lock(),
                ) {
                    k.insert(key.to_string(), account.to_string());
                }
            }
            if let Some(d) = slow_by {
                std::thread::sleep(d);
            }
            client.write_all(&response)
        }
    }
}

enum Fault {
    Throttle(String),
    Down(String),
}

/// A slow or failing region, a throttled permission check, or a permission
/// simulator that is down (see [`WorstDay`]).
fn regional_or_check_fault(
    head: &str,
    p: &[(String, String)],
    action: Option<&str>,
    state: &State,
) -> Option<Fault> {
    let (service, region, _) = credential_of(head);
    let dry = p.iter().any(|(k, v)| k == "DryRun" && v == "true");
    let simulation = action == Some("SimulatePrincipalPolicy");
    let slow = {
        let mut w = state.worst.lock().ok()?;
        if service == "ec2" && w.failing_regions.contains(&region) {
            return Some(Fault::Down(service));
        }
        if simulation && w.simulation_down {
            return Some(Fault::Down(service));
        }
        if dry && w.throttle_dry_runs > 0 {
            w.throttle_dry_runs -= 1;
            w.dry_runs_throttled += 1;
            return Some(Fault::Throttle(service));
        }
        if simulation && w.throttle_simulations > 0 {
            w.throttle_simulations -= 1;
            w.simulations_throttled += 1;
            return Some(Fault::Throttle(service));
        }
        w.slow_regions.get(&region).copied()
    };
    if let Some(d) = slow {
        std::thread::sleep(d);
    }
    None
}

/// The error AWS answers when a call meets a full quota (see [`Quotas`]),
/// or when an attach comes too soon after `EnablePolicyType`.
fn quota_wall(
    request: &[u8],
    split: usize,
    p: &[(String, String)],
    action: &str,
    upstream: u16,
    state: &State,
) -> Option<(u16, String, String)> {
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut w = state.worst.lock().ok()?;
    match action {
        "EnablePolicyType" => {
            w.enabled = true;
            None
        }
        "AttachPolicy" if w.enabled && w.enable_lag > 0 => {
            w.enable_lag -= 1;
            w.lagged += 1;
            Some((
                400,
                "PolicyTypeNotEnabledException".into(),
                "This operation can be performed only for enabled policy types.".into(),
            ))
        }
        "AttachPolicy" if w.quotas.scps_per_target => {
            drop(w);
            let body: serde_json::Value =
                serde_json::from_slice(&request[split..]).unwrap_or_default();
            let target = body["TargetId"].as_str()?.to_string();
            let listing = upstream_json(
                upstream,
                &request[..split],
                "ListPoliciesForTarget",
                &serde_json::json!({ "TargetId": target, "Filter": "SERVICE_CONTROL_POLICY" }),
            )?;
            let on = listing["Policies"].as_array().map(Vec::len).unwrap_or(0);
            (on >= 5).then(|| {
                (
                    400,
                    "ConstraintViolationException".into(),
                    "You have attached the maximum number of policies to this target. (POLICY_NUMBER_LIMIT_EXCEEDED)".into(),
                )
            })
        }
        // IAM policy names are unique in an account whatever the path
        // (CreatePolicy API reference); moto keys them by ARN.
        "CreatePolicy" if get("PolicyName").is_some() => {
            drop(w);
            let name = get("PolicyName")?;
            let listing = upstream_call(
                upstream,
                &request[..split],
                None,
                "Action=ListPolicies&Version=2010-05-08&Scope=Local&MaxItems=1000",
            )?;
            listing
                .contains(&format!("<PolicyName>{name}</PolicyName>"))
                .then(|| {
                    (
                        409,
                        "EntityAlreadyExists".into(),
                        format!("A policy called {name} already exists. Duplicate names are not allowed."),
                    )
                })
        }
        "PutUserPolicy" | "PutRolePolicy" => {
            let (who, name) = match action {
                "PutUserPolicy" => ("user", get("UserName")?),
                _ => ("role", get("RoleName")?),
            };
            let limit = if who == "user" { 2048 } else { 10240 };
            w.quotas.inline_full.contains(&name).then(|| {
                (
                    409,
                    "LimitExceeded".into(),
                    format!("Maximum policy size of {limit} bytes exceeded for {who} {name}"),
                )
            })
        }
        "AttachUserPolicy" | "AttachRolePolicy" => {
            let (who, name) = match action {
                "AttachUserPolicy" => ("PoliciesPerUser", get("UserName")?),
                _ => ("PoliciesPerRole", get("RoleName")?),
            };
            w.quotas.managed_full.contains(&name).then(|| {
                (
                    409,
                    "LimitExceeded".into(),
                    format!("Cannot exceed quota for {who}: 10"),
                )
            })
        }
        _ => None,
    }
}

/// Asks moto itself (Organizations, JSON protocol) with the caller's own
/// headers, for a quota count; moto does not check signatures.
fn upstream_json(
    upstream: u16,
    head: &[u8],
    action: &str,
    body: &serde_json::Value,
) -> Option<serde_json::Value> {
    let answer = upstream_call(upstream, head, Some(action), &body.to_string())?;
    serde_json::from_str(&answer).ok()
}

/// Sends `body` to moto with the caller's headers (the `X-Amz-Target`
/// action replaced when given); the answer's body.
fn upstream_call(upstream: u16, head: &[u8], action: Option<&str>, body: &str) -> Option<String> {
    let head = String::from_utf8_lossy(head);
    let mut lines: Vec<String> = Vec::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if let (true, Some(action)) = (lower.starts_with("x-amz-target:"), action) {
            let prefix = line
                .split(':')
                .nth(1)?
                .trim()
                .rsplit_once('.')?
                .0
                .to_string();
            lines.push(format!("X-Amz-Target: {prefix}.{action}"));
        } else if lower.starts_with("content-length:")
            || lower.starts_with("connection:")
            || lower.starts_with("expect:")
        {
            continue;
        } else {
            lines.push(line.to_string());
        }
    }
    lines.push(format!("Content-Length: {}", body.len()));
    lines.push("Connection: close".into());
    let request = format!("{}\r\n\r\n{body}", lines.join("\r\n"));
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    up.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).ok()?;
    let at = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some(String::from_utf8_lossy(&response[at..]).into_owned())
}

/// With `session_length` set, the session in an STS answer expires that
/// soon: its `Expiration` is rewritten and its key remembered.
fn shorten_session(response: Vec<u8>, state: &State) -> Vec<u8> {
    let Ok(mut w) = state.worst.lock() else {
        return response;
    };
    let Some(length) = w.session_length else {
        return response;
    };
    let text = String::from_utf8_lossy(&response).into_owned();
    let (Some(key), Some(old)) = (
        xml_text(&text, "AccessKeyId"),
        xml_text(&text, "Expiration"),
    ) else {
        return response;
    };
    let until = std::time::SystemTime::now() + length;
    let dies = std::time::SystemTime::now() + w.session_dies.unwrap_or(length);
    w.expiries.insert(key.to_string(), dies);
    let stamp = jiff::Timestamp::try_from(until)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let text = text.replace(
        &format!("<Expiration>{old}</Expiration>"),
        &format!("<Expiration>{stamp}</Expiration>"),
    );
    // The body changed length: fix Content-Length.
    let Some(split) = text.find("\r\n\r\n") else {
        return text.into_bytes();
    };
    let (head, body) = text.split_at(split + 4);
    let head: String = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", body.len())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    format!("{head}{body}").into_bytes()
}

/// IAM Identity Center's `GetRoleCredentials` (`GET /federation/credentials`
/// with the `x-amz-sso_bearer_token` header), which moto lacks: a known
/// token gets a session of its role, minted by moto's STS; any other gets
/// `UnauthorizedException`, as the portal answers an expired login.
fn sso_role_credentials(
    client: &mut TcpStream,
    upstream: u16,
    state: &State,
    head: &str,
) -> std::io::Result<()> {
    let token = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-amz-sso_bearer_token:")
                .then(|| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .flatten()
        .unwrap_or_default();
    let grant = state
        .worst
        .lock()
        .ok()
        .and_then(|w| w.sso_tokens.get(&token).cloned());
    let Some((account, role)) = grant else {
        let body = r#"{"message":"Session token not found or invalid"}"#;
        return write!(
            client,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nx-amzn-ErrorType: UnauthorizedException\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let form = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A{account}%3Arole%2F{role}&RoleSessionName=sso-user"
    );
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    write!(
        up,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIASSOPORTAL0000000/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (Some(key), Some(secret), Some(session)) = (
        xml_text(&text, "AccessKeyId"),
        xml_text(&text, "SecretAccessKey"),
        xml_text(&text, "SessionToken"),
    ) else {
        return server_error(client, "sso");
    };
    let expiration = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 3_600_000)
        .unwrap_or_default();
    let body = serde_json::json!({
        "roleCredentials": {
            "accessKeyId": key,
            "secretAccessKey": secret,
            "sessionToken": session,
            "expiration": expiration,
        }
    })
    .to_string();
    write!(
        client,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// EC2's documented read metering (a non-mutating API: 100 burst, 20 per
/// second, EC2 developer guide "Request throttling for the Amazon EC2
/// API"), for the benchmarks.
pub fn aws_read_limits() -> BTreeMap<String, (f64, f64)> {
    [("ec2".to_string(), (20.0, 100.0))].into_iter().collect()
}

/// The issue #6 defaults for the benchmarks: service → (refill per second,
/// burst), one bucket per (service, region, account).
pub fn aws_limits() -> BTreeMap<String, (f64, f64)> {
    [
        ("iam", (20.0, 20.0)),
        ("ec2", (20.0, 40.0)),
        ("organizations", (5.0, 10.0)),
        ("sts", (20.0, 20.0)),
    ]
    .into_iter()
    .map(|(s, l)| (s.to_string(), l))
    .collect()
}

/// A `DescribeRegions` answer without the `<item>` of each disabled region,
/// its Content-Length set to the new body's.
fn drop_regions(response: Vec<u8>, disabled: &BTreeSet<String>) -> Vec<u8> {
    if disabled.is_empty() {
        return response;
    }
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return response;
    };
    let mut body = String::from_utf8_lossy(&response[split + 4..]).into_owned();
    for region in disabled {
        let name = format!("<regionName>{region}</regionName>");
        if let Some(at) = body.find(&name) {
            let start = body[..at].rfind("<item>").unwrap_or(at);
            let end = body[at..]
                .find("</item>")
                .map_or(at, |e| at + e + "</item>".len());
            body.replace_range(start..end, "");
        }
    }
    let head: Vec<String> = String::from_utf8_lossy(&response[..split])
        .lines()
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", body.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes()
}
