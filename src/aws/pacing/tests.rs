//! The lanes under test: their keys, their probing, and a simulation of a
//! lane against a token bucket on a virtual clock.

use super::*;

/// Slow EC2 reads filling their lane's permits never keep an IAM call
/// off the wire: each lane has its own. (With one shared limit of 2,
/// the IAM call would wait the full second.)
#[tokio::test(start_paused = true)]
async fn a_slow_lane_never_holds_a_fast_lanes_permits() {
    let telemetry = Arc::new(Telemetry::new(2));
    let policy = RetryPolicy::default();
    let slow = telemetry.lane("111122223333", "ec2:DescribeInstances", Some("us-east-1"));
    let mut busy = Vec::new();
    for _ in 0..4 {
        let (telemetry, slow) = (telemetry.clone(), slow.clone());
        busy.push(tokio::spawn(async move {
            call(&policy, &telemetry, &slow, || async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, AwsError>(())
            })
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fast = telemetry.lane("111122223333", "iam:ListUsers", None);
    let started = tokio::time::Instant::now();
    let answered = call(&policy, &telemetry, &fast, || async {
        Ok::<_, AwsError>(())
    })
    .await;
    assert!(answered.is_ok());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the IAM call waited {:?} behind EC2's permits",
        started.elapsed()
    );
    // The slow lane itself keeps to its own limit: 4 calls, 2 at a time.
    let started = tokio::time::Instant::now();
    for b in busy {
        assert!(b.await.is_ok_and(|r| r.is_ok()));
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

/// EC2 reads are paced per API, as EC2 meters them; a check's DryRun
/// calls are paced as reads of their API, never with the changes; a
/// check's reads share the run's lanes (the same buckets).
#[test]
fn lanes_follow_the_buckets_aws_meters() {
    let run = Telemetry::new(16);
    let check = run.read_only();
    let lane = |t: &Telemetry, op: &str| t.lane("111122223333", op, Some("eu-west-1"));
    let same = |a: &Arc<Lane>, b: &Arc<Lane>| Arc::ptr_eq(a, b);
    let attribute = lane(&run, "ec2:DescribeInstanceAttribute");
    assert!(!same(&attribute, &lane(&run, "ec2:DescribeSnapshots")));
    assert!(same(
        &attribute,
        &lane(&check, "ec2:DescribeInstanceAttribute")
    ));
    let changes = lane(&run, "ec2:ModifyInstanceAttribute");
    assert!(same(&changes, &lane(&run, "ec2:LockSnapshot")));
    assert!(!same(
        &changes,
        &lane(&check, "ec2:ModifyInstanceAttribute")
    ));
    assert!(same(
        &lane(&run, "iam:ListUsers"),
        &lane(&check, "iam:GetUser")
    ));
}

fn rate(lane: &Lane) -> Option<f64> {
    lane.lock().model.as_ref().map(|m| m.rate)
}

/// A lane whose calls come slower than its pace keeps its pace: a minute
/// of a check's DryRun calls, one every 0.6 s, once multiplied a learned
/// 20 a second a hundredfold, and the next step spent half its calls
/// refused. Held back by the pace, it still probes up.
#[test]
fn a_lane_probes_up_only_while_its_pace_holds_calls_back() {
    let lane = Lane::new(16);
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    for i in 0..20 {
        lane.success_at(at(i));
    }
    lane.throttled_at(at(20));
    let learned = rate(&lane).expect("a model after the first refusal");
    for i in 0..100 {
        lane.success_at(at(5_000 + 600 * i));
    }
    assert_eq!(rate(&lane), Some(learned), "an idle pace is not raised");
    // Now every call waits for its slot: the pace binds, so it probes up.
    let busy = 70_000;
    for i in 0..40 {
        let now = at(busy + 100 * i);
        // Slots until one waits (the refilled burst goes first).
        assert!((0..100).any(|_| lane.slot(now).is_some()));
        lane.success_at(now);
    }
    assert!(
        rate(&lane).is_some_and(|r| r > learned),
        "{:?} > {learned}",
        rate(&lane)
    );
}

/// A lane paced at `rate`, throttled since `since`.
fn model(rate: f64, since: Instant) -> Model {
    Model {
        rate,
        capacity: 20.0,
        tokens: 0.0,
        at: since,
        since,
        last_throttle: since,
        last_raise: since,
        last_cut: None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A cut that did not lower the refused share is undone once; the lane
/// is cut again a window later instead of staying at the rate that was
/// refused. (Judged again and again, it stayed at 40 for good.)
#[test]
fn a_cut_that_did_not_help_is_undone_once() {
    let t0 = Instant::now();
    let mut m = model(40.0, t0);
    m.adjust(20.0, 0.5, t0);
    assert!(
        close(m.rate, 21.0),
        "cut to just above what got through: {}",
        m.rate
    );
    m.adjust(19.0, 0.5, t0 + Duration::from_millis(2500));
    assert!(
        close(m.rate, 40.0),
        "the share did not fall: undone: {}",
        m.rate
    );
    m.adjust(20.0, 0.5, t0 + Duration::from_millis(5000));
    assert!(
        close(m.rate, 21.0),
        "an undone cut is not judged again: {}",
        m.rate
    );
}

/// Refusals that pause after a cut mean it worked: when they come back,
/// the lane is cut again, never sent back up to the rate before.
#[test]
fn a_cut_that_worked_is_not_undone_when_refusals_return() {
    let t0 = Instant::now();
    let mut m = model(40.0, t0);
    m.adjust(20.0, 0.5, t0);
    // No refusal for more than a window: a new measuring window starts.
    m.since = t0 + Duration::from_millis(2600);
    m.adjust(18.0, 0.5, t0 + Duration::from_millis(3200));
    assert!(close(m.rate, 18.0 * 1.05), "{}", m.rate);
}

/// A cut from long ago (an earlier step) is not judged against today's
/// refusals.
#[test]
fn an_old_cut_is_not_judged() {
    let t0 = Instant::now();
    let mut m = model(40.0, t0);
    m.adjust(20.0, 0.5, t0);
    m.adjust(19.0, 0.5, t0 + Duration::from_secs(30));
    assert!(close(m.rate, 19.0 * 1.05), "{}", m.rate);
}

mod simulation {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// Runs `calls` calls, `in_flight` at a time, through `lane` against a
    /// server token bucket (`rate`/s, `burst`, `server_tokens` at the
    /// start), 80 ms round trips, on a virtual clock from `t0`: (seconds
    /// taken, refusals).
    pub(super) fn run(
        lane: &Lane,
        t0: Instant,
        calls: usize,
        in_flight: usize,
        (rate, burst, server_tokens): (f64, f64, f64),
    ) -> (f64, usize) {
        let half = Duration::from_millis(40);
        let mut tokens = server_tokens;
        let mut server_at = t0;
        // (when, worker, what happens): 0 wants a slot, 1 arrives at the
        // server, 2 gets its answer (admitted in `answer`).
        let mut heap: BinaryHeap<Reverse<(Instant, usize, u8)>> = BinaryHeap::new();
        for w in 0..in_flight.min(calls) {
            heap.push(Reverse((t0, w, 0)));
        }
        let (mut started, mut refused) = (0usize, 0usize);
        let mut retry = vec![false; in_flight];
        let mut answer = vec![false; in_flight];
        let mut end = t0;
        while let Some(Reverse((now, w, what))) = heap.pop() {
            match what {
                0 => {
                    if !retry[w] {
                        if started == calls {
                            continue;
                        }
                        started += 1;
                    }
                    let wait = lane.slot(now).unwrap_or_default();
                    heap.push(Reverse((now + wait + half, w, 1)));
                }
                1 => {
                    tokens =
                        (tokens + now.duration_since(server_at).as_secs_f64() * rate).min(burst);
                    server_at = now;
                    answer[w] = tokens >= 1.0;
                    if answer[w] {
                        tokens -= 1.0;
                    }
                    heap.push(Reverse((now + half, w, 2)));
                }
                _ => {
                    if answer[w] {
                        lane.success_at(now);
                        end = end.max(now);
                    } else {
                        lane.throttled_at(now);
                        refused += 1;
                    }
                    retry[w] = !answer[w];
                    heap.push(Reverse((now, w, 0)));
                }
            }
        }
        (end.duration_since(t0).as_secs_f64(), refused)
    }

    /// A lane learns a bucket it was never told (20 a second, burst 40,
    /// EC2's write bucket in the benchmark) and keeps to it through four
    /// steps one after the other: each within 15 % of what the bucket
    /// allows, at most one call in four refused, on a virtual clock.
    #[test]
    fn a_lane_keeps_to_a_bucket_it_learned_step_after_step() {
        let lane = Lane::new(16);
        let t0 = Instant::now();
        // (calls, tokens in the server's bucket when the step starts)
        for (i, (n, full)) in [(200usize, 40.0), (100, 40.0), (200, 0.0), (206, 0.0)]
            .into_iter()
            .enumerate()
        {
            let start = t0 + Duration::from_secs(100 * i as u64);
            let (took, refused) = run(&lane, start, n, 16, (20.0, 40.0, full));
            let ideal = (n as f64 - full) / 20.0;
            assert!(
                took <= ideal * 1.15 + 0.2,
                "step {i}: {took:.2} s, ideal {ideal:.2} s"
            );
            // Refusals cost a round trip each, not time at the bucket; a
            // pace far above it would strand calls in backoff at the end of
            // the step. A cut judged again and again kept the lane at 27/s
            // here, 43 % refused in steps 2 and 3; judged once, 15 %.
            assert!(refused * 4 <= n, "step {i}: {refused} refused of {n}");
        }
    }
}
