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
use std::time::{Duration, Instant};

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
}

fn run(e: &Estate, shaping: &Shaping, accounts: &str, concurrency: u16, log: &str) -> Run {
    let seen_before = shaping.log.lock().map(|l| l.len()).unwrap_or(0);
    let pb = repo_playbook("credential-lockdown.yaml");
    let log = e.path(log);
    let started = Instant::now();
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
    }
}

/// Calls per second moto answers when driven by raw HTTP requests from
/// `threads` threads (a connection per request, as the proxy makes): reads
/// and key updates on throwaway users of the management account, which no
/// run of this benchmark touches.
fn emulator_rate(port: u16, users: &[(String, String)], total: usize, threads: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let users = Arc::new(users.to_vec());
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (next, users) = (next.clone(), users.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let (user, key) = &users[i % users.len()];
                    let body = if i % 2 == 0 {
                        format!("Action=ListAccessKeys&UserName={user}&Version=2010-05-08")
                    } else {
                        let status = if i % 4 == 1 { "Inactive" } else { "Active" };
                        format!(
                            "Action=UpdateAccessKey&UserName={user}&AccessKeyId={key}&Status={status}&Version=2010-05-08"
                        )
                    };
                    let request = format!(
                        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nAuthorization: AWS4-HMAC-SHA256 Credential={ADMIN_KEY}/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\nX-Amz-Date: 20260101T000000Z\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
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
    let mut throwaway = Vec::new();
    for i in 0..20 {
        let name = format!("floor-{i:02}");
        throwaway.push((name.clone(), e.user_with_key(&name).await));
    }
    println!(
        "seeded moto in {:.1} s (straight to moto)",
        seed_start.elapsed().as_secs_f64()
    );

    let probe_calls = if a.accounts > 10 { 4000 } else { 400 };
    let rate = emulator_rate(
        e.moto.port,
        &throwaway,
        probe_calls,
        usize::from(a.concurrency),
    );
    println!(
        "emulator: {rate:.0} calls/s sustained ({probe_calls} raw HTTP calls from {} threads, no SDK, no proxy, no latency)",
        a.concurrency
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

    let single_floor = single.wall.as_secs_f64();
    let emulator_floor = org.calls as f64 / rate;
    let floor = single_floor.max(emulator_floor);
    let ratio = org.wall.as_secs_f64() / floor;
    println!(
        "\nfloors: single account {single_floor:.2} s; emulator {emulator_floor:.2} s ({} calls ÷ {rate:.0} calls/s)",
        org.calls
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
