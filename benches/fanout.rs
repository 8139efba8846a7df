//! The fan-out benchmark (issue #7): `playbooks/credential-lockdown.yaml`
//! across an organization of many member accounts, behind the loopback proxy
//! that charges each call a round-trip latency and meters mutating calls per
//! (service, region, account), as AWS does. Accounts are independent lanes,
//! so the run should take about as long as one account does, unless the
//! emulator itself is the limit. Both floors are measured in the same run:
//!
//! - the single-account floor: the same playbook on one seeded account alone;
//! - the emulator floor: the org run's calls ÷ the calls per second moto
//!   sustains when driven with raw HTTP requests (no SDK, no proxy, no latency).
//!
//! The target is a wall time within 1.5 × the larger floor, and every member
//! account contained (read back straight from moto). Run it with
//! `scripts/bench.sh org` (see the README).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::proxy::Shaping;
use common::{ADMIN_KEY, Estate, Member, repo_playbook};
use futures_util::{StreamExt, stream};

struct Args {
    accounts: usize,
    users: usize,
    latency_ms: u64,
    concurrency: u16,
}

fn args() -> Result<Args, String> {
    // Under `cargo test --all-targets` (no `--bench`): a smoke run, so the
    // benchmark cannot rot unnoticed.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(Args {
            accounts: 3,
            users: 4,
            latency_ms: 20,
            concurrency: 16,
        });
    }
    let mut a = Args {
        accounts: 50,
        users: 20,
        latency_ms: 80,
        concurrency: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match flag.as_str() {
            "--accounts" => a.accounts = num("--accounts")? as usize,
            "--users" => a.users = num("--users")? as usize,
            "--latency-ms" => a.latency_ms = num("--latency-ms")?,
            "--concurrency" => a.concurrency = num("--concurrency")? as u16,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// (user, key id) per seeded account.
type Keys = Vec<(String, String)>;

async fn seed(m: &Member, users: usize) -> Keys {
    stream::iter(0..users)
        .map(|i| async move {
            let name = format!("user-{i:03}");
            let key = m.user_with_key(&name).await;
            (name, key)
        })
        .buffer_unordered(4)
        .collect()
        .await
}

/// What one run of the binary took, and the calls it made: every request
/// the proxy saw during it (preflight, assume-role and read-back included).
struct Run {
    wall: Duration,
    code: i32,
    calls: u64,
    throttled: u64,
    /// Calls moto itself answered (not throttled, not a permission check
    /// the proxy answers).
    served: u64,
    /// (phase, seconds, calls) from the audit log's step records.
    phases: Vec<(String, f64, usize)>,
}

/// Where the time went: before the run (connecting, entering the accounts,
/// the preflight), each step, and the read-back, with the calls of each.
fn phases(
    log: &std::path::Path,
    started: SystemTime,
    ended: SystemTime,
    seen: &[common::proxy::Seen],
) -> Vec<(String, f64, usize)> {
    let records: Vec<serde_json::Value> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        // A signed (v2) line carries its record under `record`.
        .map(|v| v.get("record").cloned().unwrap_or(v))
        .collect();
    let ts = |r: &serde_json::Value| -> Option<SystemTime> {
        let t: jiff::Timestamp = r["ts"].as_str()?.parse().ok()?;
        Some(SystemTime::from(t))
    };
    let mut marks = vec![("before the run".to_string(), started)];
    for r in &records {
        match r["event"].as_str() {
            Some("step_start") => marks.push((
                format!("step {}", r["name"].as_str().unwrap_or("?")),
                ts(r).unwrap_or(started),
            )),
            Some("step_end") => marks.push(("read-back".into(), ts(r).unwrap_or(started))),
            _ => {}
        }
    }
    // Each step's end mark is replaced by the next step's start.
    let mut cut: Vec<(String, SystemTime)> = Vec::new();
    for (name, at) in marks {
        if cut.last().is_some_and(|(n, _)| n == "read-back") {
            cut.pop();
        }
        cut.push((name, at));
    }
    cut.push(("end".into(), ended));
    cut.windows(2)
        .map(|w| {
            let (name, a) = &w[0];
            let b = w[1].1;
            let calls = seen.iter().filter(|s| s.at >= *a && s.at < b).count();
            let secs = b.duration_since(*a).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            (name.clone(), secs, calls)
        })
        .collect()
}

fn run(e: &Estate, shaping: &Shaping, accounts: &str, concurrency: u16, log: &str) -> Run {
    let seen_before = shaping.log.lock().map(|l| l.len()).unwrap_or(0);
    let pb = repo_playbook("credential-lockdown.yaml");
    let log = e.path(log);
    let started = Instant::now();
    let started_at = SystemTime::now();
    let out = e
        .cmd()
        .args(["--accounts", accounts, "--concurrency"])
        .arg(concurrency.to_string())
        .args(["--output", "json", "run"])
        .arg(&pb)
        .args(["--yes", "--var", "case_id=BENCH-7", "--audit-log"])
        .arg(&log)
        .write_stdin("")
        .output();
    let wall = started.elapsed();
    let ended_at = SystemTime::now();
    let code = match &out {
        Ok(o) => o.status.code().unwrap_or(-1),
        Err(_) => -1,
    };
    if code != 0
        && let Ok(o) = &out
    {
        eprintln!(
            "breakglass exited {code}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let seen = shaping
        .log
        .lock()
        .map(|l| l[seen_before..].to_vec())
        .unwrap_or_default();
    Run {
        wall,
        code,
        calls: seen.len() as u64,
        throttled: seen.iter().filter(|s| s.throttled).count() as u64,
        served: seen
            .iter()
            .filter(|s| !s.throttled && s.action != "SimulatePrincipalPolicy")
            .count() as u64,
        phases: phases(&log, started_at, ended_at, &seen),
    }
}

/// The raw HTTP request moto would get for one call of `action` (on
/// throwaway principals of the management account, which no run of this
/// benchmark touches): the run's own mix of calls, without the SDK.
fn raw_request(port: u16, service: &str, action: &str, n: usize, probe: &Probe) -> String {
    let (user, key) = &probe.users[n % probe.users.len()];
    let doc = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Deny%22%2C%22Action%22%3A%22*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D";
    let policy = "PolicyName=breakglass-revoke-older-sessions";
    let (content_type, target, body) = match (service, action) {
        ("organizations", a) => (
            "application/x-amz-json-1.1",
            format!("X-Amz-Target: AWSOrganizationsV20161128.{a}\r\n"),
            "{}".to_string(),
        ),
        ("sts", "AssumeRole") => (
            "application/x-www-form-urlencoded; charset=utf-8",
            String::new(),
            format!(
                "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A{}%3Arole%2FOrganizationAccountAccessRole&RoleSessionName=probe&Version=2011-06-15",
                probe.member
            ),
        ),
        ("sts", a) => (
            "application/x-www-form-urlencoded; charset=utf-8",
            String::new(),
            format!("Action={a}&Version=2011-06-15"),
        ),
        (_, a) => {
            let params = match a {
                "ListUsers" | "ListRoles" => String::new(),
                "UpdateAccessKey" => format!(
                    "&UserName={user}&AccessKeyId={key}&Status={}",
                    if n.is_multiple_of(2) {
                        "Inactive"
                    } else {
                        "Active"
                    }
                ),
                "PutUserPolicy" => format!("&UserName={user}&{policy}&PolicyDocument={doc}"),
                "GetUserPolicy" => format!("&UserName={user}&{policy}"),
                "PutRolePolicy" => {
                    format!("&RoleName={}&{policy}&PolicyDocument={doc}", probe.role)
                }
                "GetRolePolicy" => format!("&RoleName={}&{policy}", probe.role),
                "GetRole" => format!("&RoleName={}", probe.role),
                _ => format!("&UserName={user}"),
            };
            (
                "application/x-www-form-urlencoded; charset=utf-8",
                String::new(),
                format!("Action={a}{params}&Version=2010-05-08"),
            )
        }
    };
    format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n{target}Authorization: AWS4-HMAC-SHA256 Credential={ADMIN_KEY}/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\nX-Amz-Date: 20260101T000000Z\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Throwaway principals for the emulator probe.
struct Probe {
    users: Vec<(String, String)>,
    role: String,
    member: String,
}

/// Calls per second moto answers when driven by raw HTTP requests from
/// `threads` threads (a connection per request, as the proxy makes), in the
/// mix of calls that reached moto in `mix` (proxy-answered permission checks
/// and throttled attempts never reach it).
fn emulator_rate(
    port: u16,
    mix: &[common::proxy::Seen],
    probe: &Probe,
    total: usize,
    threads: usize,
) -> f64 {
    let served: Vec<&common::proxy::Seen> = mix
        .iter()
        .filter(|s| !s.throttled && s.action != "SimulatePrincipalPolicy")
        .collect();
    if served.is_empty() {
        return f64::NAN;
    }
    let requests: Arc<Vec<String>> = Arc::new(
        (0..total)
            .map(|n| {
                let s = served[n % served.len()];
                raw_request(port, &s.service, &s.action, n, probe)
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (next, requests) = (next.clone(), requests.clone());
            std::thread::spawn(move || {
                while let Some(request) = requests.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                        let _ = s.write_all(request.as_bytes());
                        let mut sink = Vec::new();
                        let _ = s.read_to_end(&mut sink);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "workload: {} member accounts × {} users (one key and a console password each), plus one account alone for the single-account floor; --concurrency {}",
        a.accounts, a.users, a.concurrency
    );
    let e = Estate::new().await;
    e.organization().await;
    let seed_start = Instant::now();
    let members = e.members(a.accounts + 1).await;
    let keys: Vec<Keys> = stream::iter(&members)
        .map(|m| seed(m, a.users))
        .buffered(4)
        .collect()
        .await;
    let mut users = Vec::new();
    for i in 0..20 {
        let name = format!("floor-{i:02}");
        users.push((name.clone(), e.user_with_key(&name).await));
    }
    e.role("floor-role", "/").await;
    println!(
        "seeded moto in {:.1} s (straight to moto)",
        seed_start.elapsed().as_secs_f64()
    );

    let shaping = Arc::new(Shaping::new(
        Duration::from_millis(a.latency_ms),
        common::proxy::aws_limits(),
    ));
    e.proxy().shape(shaping.clone());
    println!(
        "proxy: latency {} ms ± 20 %; mutating calls limited per (service, region, account): iam 20/s burst 20, sts 20/s burst 20",
        a.latency_ms
    );

    let (alone, fleet) = members.split_at(1);
    let single = run(&e, &shaping, &alone[0].id, a.concurrency, "single.jsonl");
    println!(
        "\nsingle account ({}): {:.2} s, {} calls, {} throttled, exit {}",
        alone[0].id,
        single.wall.as_secs_f64(),
        single.calls,
        single.throttled,
        single.code
    );
    // The emulator's own rate, on the single run's mix of calls, measured
    // between the two runs.
    let probe = Probe {
        users,
        role: "floor-role".into(),
        member: alone[0].id.clone(),
    };
    let mix = shaping.log.lock().map(|l| l.clone()).unwrap_or_default();
    let probe_calls = if a.accounts > 10 { 4000 } else { 400 };
    let rate = emulator_rate(
        e.moto.port,
        &mix,
        &probe,
        probe_calls,
        usize::from(a.concurrency),
    );
    println!(
        "emulator: {rate:.0} calls/s sustained ({probe_calls} raw HTTP calls in the single run's mix, from {} threads; no SDK, no proxy, no latency)",
        a.concurrency
    );
    let org = run(
        &e,
        &shaping,
        &format!("all,!{}", alone[0].id),
        a.concurrency,
        "org.jsonl",
    );
    println!(
        "{} accounts: {:.2} s, {} calls, {} throttled, exit {}",
        fleet.len(),
        org.wall.as_secs_f64(),
        org.calls,
        org.throttled,
        org.code
    );

    for (name, r) in [("single account", &single), ("organization", &org)] {
        println!("\n{name}, by phase (wall s, calls, calls/s):");
        for (phase, secs, calls) in &r.phases {
            println!(
                "  {phase:<48} {secs:>7.2} {calls:>7} {:>7.0}",
                *calls as f64 / secs.max(0.001)
            );
        }
    }

    let single_floor = single.wall.as_secs_f64();
    let emulator_floor = org.served as f64 / rate;
    let floor = single_floor.max(emulator_floor);
    let ratio = org.wall.as_secs_f64() / floor;
    println!(
        "\nfloors: single account {single_floor:.2} s; emulator {emulator_floor:.2} s ({} calls moto answered ÷ {rate:.0} calls/s; {} calls in all)",
        org.served, org.calls
    );
    println!(
        "ratio: {:.2} s ÷ {floor:.2} s = {ratio:.2} × the larger floor (target ≤ 1.50)",
        org.wall.as_secs_f64()
    );

    let mut missed = Vec::new();
    for (m, mine) in members.iter().zip(&keys) {
        for (user, key) in mine {
            if m.key_status(user, key).await != "Inactive" {
                missed.push(format!("key {key} of {user} in {}", m.id));
            }
            if m.has_login_profile(user).await {
                missed.push(format!("console password of {user} in {}", m.id));
            }
        }
    }
    println!(
        "end-state check (straight from moto): {}",
        if missed.is_empty() {
            format!("every account contained ({} accounts)", members.len())
        } else {
            format!("{} NOT contained", missed.len())
        }
    );
    for m in missed.iter().take(20) {
        println!("  not contained: {m}");
    }
    if missed.is_empty() && single.code == 0 && org.code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
