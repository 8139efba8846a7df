//! Pacing and retries: every call goes through a lane (one per account,
//! service, region and read/write, and per API for EC2's reads, as AWS
//! meters them), so throttling is waited out in line and never reported as
//! done or as "nothing to do".

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::errors::{AwsError, ErrorKind, local};

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
            throttle_attempts: 12,
            transient_attempts: 3,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        }
    }
}

/// Call counters and pacing lanes. The preflight, the steps and the
/// read-back of a run each count their own calls but share the lanes
/// ([`Telemetry::read_only`]): they meet the same AWS buckets, at once when
/// they overlap, so one model per bucket learns its rate.
#[derive(Debug)]
pub struct Telemetry {
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
    pub retries: AtomicU64,
    lanes: Arc<std::sync::Mutex<HashMap<LaneKey, Arc<Lane>>>>,
    /// `--concurrency`: calls in flight per lane. Each lane has its own
    /// permits, so slow EC2 reads never keep a fast IAM lane off the wire.
    per_lane: usize,
    /// A ceiling over every lane together, far above what one lane uses:
    /// it only bounds open sockets when a run spans many regions and accounts.
    wire: Arc<tokio::sync::Semaphore>,
    /// Calls of a phase that changes nothing ([`Telemetry::read_only`]).
    dry: bool,
}

/// Calls in flight over every lane together, at most.
const WIRE_CEILING: usize = 512;

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
            lanes: Arc::default(),
            per_lane: concurrency.max(1),
            wire: Arc::new(tokio::sync::Semaphore::new(WIRE_CEILING)),
            dry: false,
        }
    }

    /// Counters of its own on the same lanes and the same ceiling, for a
    /// phase that changes nothing (a check, a read-back). Its calls named
    /// like changes are DryRun checks, paced as reads of their API and
    /// never in the lane of the changes: AWS does not say which bucket a
    /// DryRun draws on, and one that answers from another (the benchmark's
    /// proxy meters it as a read of its API) would teach the changes'
    /// lane a pace the changes never get. A hundred DryRun answers in half
    /// a second once set it to 200 a second, and the step after spent two
    /// calls in three refused, then waited out its stragglers' backoff.
    pub fn read_only(&self) -> Telemetry {
        Telemetry {
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            lanes: self.lanes.clone(),
            per_lane: self.per_lane,
            wire: self.wire.clone(),
            dry: true,
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
    ///
    /// EC2 meters each API in a bucket of its own ("each API is evaluated
    /// individually ... requests for other APIs are not affected", EC2
    /// Developer Guide, "Request throttling for the Amazon EC2 API"), so its
    /// reads get a lane per API: a throttled `DescribeInstanceAttribute`
    /// never paces `DescribeSnapshots`. The same page meters EC2's changes
    /// per API too, but they share one lane per region: one pace for all
    /// is slower than a pace per bucket, never faster than one bucket
    /// allows (the benchmark's proxy meters them in one bucket per region).
    pub fn lane(&self, account: &str, operation: &str, region: Option<&str>) -> Arc<Lane> {
        let (service, name) = operation.split_once(':').unwrap_or(("", operation));
        let write = !self.dry && !READ_PREFIXES.iter().any(|p| name.starts_with(p));
        let key = LaneKey {
            account: account.to_string(),
            service: service.to_string(),
            region: region.unwrap_or("global").to_string(),
            write,
            api: (service == "ec2" && !write).then(|| name.to_string()),
        };
        let mut lanes = match self.lanes.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        lanes
            .entry(key)
            .or_insert_with(|| Arc::new(Lane::new(self.per_lane)))
            .clone()
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
    /// The API, for services that meter each API apart (EC2's reads).
    api: Option<String>,
}

/// Client-side pacing for one throttling bucket. AWS meters calls with token
/// buckets (a burst, then a refill rate) that it does not publish per account;
/// a lane starts unpaced, and from the first throttling answer on models the
/// bucket it learned: the burst is what got through before that answer, the
/// rate is what keeps getting through while calls are refused. Calls then
/// leave at the refill rate instead of bouncing, and an idle lane refills, so
/// the next step starts with a burst again. Without throttling it probes up.
#[derive(Debug)]
pub struct Lane {
    bucket: std::sync::Mutex<Bucket>,
    /// Calls of this lane on the wire: taken after the lane's slot, so a
    /// call waiting out the pacing holds no permit.
    in_flight: tokio::sync::Semaphore,
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
    /// When a caller last had to wait for its slot: the pace is what holds
    /// calls back, and only then is probing up worth a refusal.
    waited: Option<Instant>,
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
    last_cut: Option<Cut>,
}

/// The lane's last cut of its rate, judged once a window after it.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Not judged yet: the rate before it, the refused share that caused
    /// it, when.
    Pending {
        before: f64,
        share: f64,
        at: Instant,
    },
    /// Judged and undone at `at`; never judged again.
    Undone { at: Instant },
}

/// Window over which the refill rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// The least refill rate a lane assumes before it has measured one.
const MIN_GUESS: f64 = 10.0;
/// Least evidence before a rate estimate replaces the guess.
const MIN_SPAN: Duration = Duration::from_millis(500);

impl Lane {
    pub fn new(in_flight: usize) -> Self {
        Lane {
            bucket: std::sync::Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(in_flight.max(1)),
        }
    }

    /// Waits for this lane's next slot (at once while the lane is unpaced).
    pub async fn acquire(&self) {
        if let Some(wait) = self.slot(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes the next slot at `now`: how long to wait for it, if at all.
    fn slot(&self, now: Instant) -> Option<Duration> {
        let mut b = self.lock();
        let m = b.model.as_mut()?;
        m.refill(now);
        m.tokens -= 1.0;
        if m.tokens >= 0.0 {
            return None;
        }
        let wait = Duration::from_secs_f64(-m.tokens / m.rate);
        b.waited = Some(now);
        Some(wait)
    }

    pub fn success(&self) {
        self.success_at(Instant::now())
    }

    fn success_at(&self, now: Instant) {
        let mut guard = self.lock();
        let b = &mut *guard;
        // Calls held back by the pace lately: a faster pace would send more.
        let held_back = b
            .waited
            .is_some_and(|w| now.duration_since(w) <= RATE_WINDOW);
        match b.model.as_mut() {
            None => b.before = b.before.saturating_add(1),
            Some(m) => {
                // Quiet for a while while the pace held calls back: the
                // bucket may allow more than we send. A lane whose calls
                // come slower than its pace (a check's DryRun calls, say)
                // never raises it, or a later step would start far above
                // the bucket and spend its time refused.
                if held_back
                    && now.duration_since(m.last_throttle) > RATE_WINDOW
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
        self.throttled_at(Instant::now())
    }

    fn throttled_at(&self, now: Instant) {
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
    /// Refusals that last then swing the lane between the two rates, a
    /// window at each, rather than leave it at the faster one.
    fn adjust(&mut self, measured: f64, refused_share: f64, now: Instant) {
        let estimate = (measured * 1.05).max(0.5);
        if estimate >= self.rate {
            self.rate = estimate;
            return;
        }
        match self.last_cut {
            Some(Cut::Pending { at, .. } | Cut::Undone { at })
                if now.duration_since(at) < RATE_WINDOW => {}
            // Judged once, in the window after the cut, and only if the
            // refusals never paused since (a pause means it worked). A cut
            // judged again and again, or one from an earlier step, kept the
            // lane above its bucket for as long as the refusals lasted.
            Some(Cut::Pending { before, share, at })
                if self.since <= at
                    && now.duration_since(at) < 2 * RATE_WINDOW
                    && refused_share >= share * 0.8 =>
            {
                self.rate = before;
                self.last_cut = Some(Cut::Undone { at: now });
            }
            _ => {
                self.last_cut = Some(Cut::Pending {
                    before: self.rate,
                    share: refused_share,
                    at: now,
                });
                self.rate = estimate;
            }
        }
    }

    /// Tokens earned since the last refill. `now` is read before the lock,
    /// so a caller can arrive with an instant older than the last one: it
    /// earns nothing, and the clock never goes back (or time would be
    /// earned twice).
    fn refill(&mut self, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.at) else {
            return;
        };
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.capacity);
        self.at = now;
    }
}

#[derive(
    Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema,
)]
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
        let permits = (
            lane.in_flight.acquire().await,
            telemetry.wire.acquire().await,
        );
        telemetry.calls.fetch_add(1, Ordering::Relaxed);
        let result = f().await;
        drop(permits);
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
        // the backoff. Only a call refused again and again (its lane shares
        // the bucket with another client, say) adds exponential backoff on
        // top, starting small: a call merely unlucky while its lane learns
        // the bucket waits 0.4 s, not 6 s at the end of its step, and a
        // lane that keeps refusing still gets about 30 s before its calls
        // fail (12 attempts).
        match err.kind {
            ErrorKind::Transient => tokio::time::sleep(backoff(policy, spent)).await,
            _ if spent > 4 => tokio::time::sleep(backoff(policy, spent - 4)).await,
            _ => {}
        }
    }
}

/// What [`create_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created<T> {
    /// This call made it.
    New(T),
    /// An earlier attempt whose answer was lost had made it: found and
    /// adopted. It is this run's creation all the same.
    Adopted(T),
    /// It was there before this run tried to make it (the first attempt was
    /// refused as a duplicate): not this run's creation.
    Existed(T),
}

impl<T> Created<T> {
    pub fn into_inner(self) -> T {
        match self {
            Created::New(t) | Created::Adopted(t) | Created::Existed(t) => t,
        }
    }

    /// Made by this run (sent now, or by an attempt whose answer was lost).
    pub fn by_this_run(&self) -> bool {
        !matches!(self, Created::Existed(_))
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
        if lost.is_some()
            && let Some(found) = look_again(&mut lookup).await?
        {
            return Ok(Created::Adopted(found));
        }
        match create().await {
            Ok(v) => return Ok(Created::New(v)),
            Err(e) if e.kind == ErrorKind::Transient => lost = Some(e),
            Err(e) if e.code.as_deref().is_some_and(|c| duplicate.contains(&c)) => {
                let found = look_again(&mut lookup).await?;
                return match (found, lost.is_some()) {
                    (Some(f), true) => Ok(Created::Adopted(f)),
                    (Some(f), false) => Ok(Created::Existed(f)),
                    (None, _) => Err(e),
                };
            }
            Err(e) => return Err(e),
        }
    }
    // The last answer was lost too: one more look before calling it failed.
    if let Some(found) = look_again(&mut lookup).await? {
        return Ok(Created::Adopted(found));
    }
    Err(lost.unwrap_or_else(|| local("create", "no attempt was made".into())))
}

/// Looks for what a create made, a few times, since reads right after a
/// write may not see it yet.
async fn look_again<T, L, LF>(lookup: &mut L) -> Result<Option<T>, AwsError>
where
    L: FnMut() -> LF,
    LF: std::future::Future<Output = Result<Option<T>, AwsError>>,
{
    for look in 0..LOOKS {
        if let Some(found) = lookup().await? {
            return Ok(Some(found));
        }
        if look + 1 < LOOKS {
            tokio::time::sleep(LOOK_PAUSE).await;
        }
    }
    Ok(None)
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
mod tests;
