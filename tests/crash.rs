//! Crash consistency: a live full lockdown killed with SIGKILL at 20 random
//! points (after a random audit record, plus a few milliseconds so that calls
//! are in flight). Each time the log's chain verifies up to its last record,
//! `audit verify` calls the run interrupted and names exactly the calls that
//! were announced without a result; a rerun then converges to full
//! containment with no duplicated side effect: one SCP, one quarantine group
//! per VPC, one snapshot per volume.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Estate;

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

struct Seeded {
    root: String,
    users: Vec<(String, String)>,
    instances: Vec<(&'static str, String)>,
}

async fn seed(e: &Estate) -> Seeded {
    let root = e.organization().await;
    let mut users = Vec::new();
    for i in 0..3 {
        let name = format!("user-{i}");
        users.push((name.clone(), e.user_with_key(&name).await));
    }
    e.role("app", "/").await;
    let mut instances = Vec::new();
    for region in REGIONS {
        for id in e.instances(region, 1, false).await {
            instances.push((region, id));
        }
    }
    Seeded {
        root,
        users,
        instances,
    }
}

/// The flagship over this estate's two regions: what a crash interrupts is
/// the same, twenty-odd runs over.
fn run_args(log: &Path) -> Vec<String> {
    let pb = common::flagship_over(log.parent().expect("log dir"), &REGIONS);
    [
        "--output",
        "json",
        "run",
        pb.to_str().expect("path"),
        "--yes",
        "--no-hold",
        "--skip-preflight",
        "--no-verify",
        "--var",
        "case_id=IR-CRASH",
        "--audit-log",
        log.to_str().expect("path"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn records_in(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Intents in the log with no result: what may or may not have happened.
fn open_intents(path: &Path) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(path).expect("log");
    let mut open = BTreeSet::new();
    // A last line cut mid-write by the SIGKILL is no record.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    for line in whole.lines() {
        let line: serde_json::Value = serde_json::from_str(line).expect("record");
        let r = &line["record"];
        match r["event"].as_str() {
            Some("intent") => {
                open.insert(r["seq"].as_u64().expect("seq"));
            }
            Some("result") => {
                if let Some(i) = r["intent"].as_u64() {
                    open.remove(&i);
                }
            }
            _ => {}
        }
    }
    open
}

/// What one killed run and its rerun showed.
struct Kill {
    after_records: usize,
    records: usize,
    uncertain: usize,
    finished_first: bool,
}

async fn killed_then_rerun(kill_after: usize, jitter: Duration) -> Kill {
    let e = Estate::new().await;
    let seeded = seed(&e).await;
    let log = e.path("killed.jsonl");
    let mut child = e
        .std_cmd()
        .args(run_args(&log))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut finished_first = false;
    loop {
        if child.try_wait().expect("wait").is_some() {
            finished_first = true;
            break;
        }
        if records_in(&log) >= kill_after {
            std::thread::sleep(jitter);
            break;
        }
        assert!(Instant::now() < deadline, "the run neither ended nor wrote");
        std::thread::sleep(Duration::from_millis(1));
    }
    // SIGKILL: no destructor, no flush, no run-end record.
    let _ = child.kill();
    child.wait().expect("reaped");

    let records = records_in(&log);
    let verify = e.run(&[
        "--output",
        "json",
        "audit",
        "verify",
        log.to_str().expect("path"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&verify.stdout).expect("verification");
    assert!(v["broken"].is_null(), "the chain holds after SIGKILL: {v}");
    assert_eq!(v["records"], records, "every record written is confirmed");
    let uncertain = v["uncertain"].as_array().map_or(0, Vec::len);
    // Killed after its run-end record (while exiting) counts as finished.
    finished_first |= v["complete"] == true;
    if !finished_first {
        assert_eq!(v["complete"], false, "{v}");
        assert_eq!(verify.code, 1, "an interrupted run does not verify clean");
        let text = e.run(&["audit", "verify", log.to_str().expect("path")]);
        assert!(text.stdout.contains("INTERRUPTED"), "{}", text.stdout);
        assert_eq!(
            uncertain,
            open_intents(&log).len(),
            "every announced call without a result is named: {v}"
        );
    }

    let log2 = e.path("rerun.jsonl");
    let mut args = run_args(&log2);
    args.retain(|a| a != "--no-verify");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rerun = e.run(&args);
    assert_eq!(
        rerun.code, 0,
        "the rerun converges (killed after {kill_after}):\n{}\n{}",
        rerun.stdout, rerun.stderr
    );
    assert_contained_once(&e, &seeded).await;
    assert_eq!(
        e.run(&["audit", "verify", log2.to_str().expect("path")])
            .code,
        0
    );
    Kill {
        after_records: kill_after,
        records,
        uncertain,
        finished_first,
    }
}

/// Full containment, each side effect exactly once.
async fn assert_contained_once(e: &Estate, s: &Seeded) {
    for (user, key) in &s.users {
        assert_eq!(e.key_status(user, key).await, "Inactive", "{user}");
        assert!(!e.has_login_profile(user).await, "{user}");
    }
    let org = e.org();
    let policies = org
        .list_policies()
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("policies");
    let ours: Vec<_> = policies
        .policies()
        .iter()
        .filter(|p| p.name() == Some("breakglass-deny-all"))
        .collect();
    assert_eq!(ours.len(), 1, "one deny-all SCP");
    let attached = org
        .list_policies_for_target()
        .target_id(&s.root)
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("attached");
    assert_eq!(
        attached
            .policies()
            .iter()
            .filter(|p| p.name() == Some("breakglass-deny-all"))
            .count(),
        1,
        "attached to the root once"
    );
    for region in REGIONS {
        let ec2 = e.ec2(region);
        let mut per_vpc: BTreeMap<String, usize> = BTreeMap::new();
        for g in e
            .security_groups_named(region, "breakglass-quarantine")
            .await
        {
            *per_vpc
                .entry(g.vpc_id().unwrap_or("-").to_string())
                .or_default() += 1;
        }
        assert!(
            !per_vpc.is_empty() && per_vpc.values().all(|&n| n == 1),
            "{region}: one quarantine group per VPC: {per_vpc:?}"
        );
        let snaps = ec2
            .describe_snapshots()
            .owner_ids("self")
            .send()
            .await
            .expect("snapshots");
        let mut per_volume: BTreeMap<String, usize> = BTreeMap::new();
        for snap in snaps.snapshots() {
            *per_volume
                .entry(snap.volume_id().unwrap_or("-").to_string())
                .or_default() += 1;
        }
        assert!(
            per_volume.values().all(|&n| n == 1),
            "{region}: one snapshot per volume: {per_volume:?}"
        );
    }
    for (region, id) in &s.instances {
        let i = e.instance(region, id).await;
        let groups: Vec<_> = i.network_interfaces()[0]
            .groups()
            .iter()
            .filter_map(|g| g.group_name())
            .collect();
        assert_eq!(groups, ["breakglass-quarantine"], "{id} isolated");
        let volumes = i
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|b| b.volume_id()))
            .count();
        assert!(volumes > 0, "{id} has volumes");
    }
}

/// A small deterministic generator: the failing kill point is in the message.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn killed_at_random_points_the_log_holds_and_a_rerun_converges() {
    let kills: usize = std::env::var("BREAKGLASS_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    // How many records an uninterrupted run writes: kill points fall within.
    let total = runtime().block_on(async {
        let e = Estate::new().await;
        let seeded = seed(&e).await;
        let log = e.path("whole.jsonl");
        let args = run_args(&log);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = e.run(&args);
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
        assert_contained_once(&e, &seeded).await;
        records_in(&log)
    });
    assert!(total > 10, "a whole run writes records: {total}");

    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let points: Vec<(usize, Duration)> = (0..kills)
        .map(|_| {
            let after = 1 + (xorshift(&mut state) as usize) % (total - 1);
            let jitter = Duration::from_millis(xorshift(&mut state) % 8);
            (after, jitter)
        })
        .collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                let rt = runtime();
                while let Some(&(after, jitter)) = points.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let kill = rt.block_on(killed_then_rerun(after, jitter));
                    results.lock().expect("results").push(kill);
                }
            });
        }
    });
    let results = results.into_inner().expect("results");
    assert_eq!(results.len(), kills, "every kill ran to its checks");
    let interrupted = results.iter().filter(|k| !k.finished_first).count();
    let uncertain: usize = results.iter().map(|k| k.uncertain).sum();
    eprintln!(
        "crash: {kills} SIGKILLs over a {total}-record run; {interrupted} interrupted mid-run, \
         {uncertain} calls left uncertain in all; every log verified, every rerun converged"
    );
    for k in &results {
        eprintln!(
            "  killed after record {} ({} on disk): {} uncertain{}",
            k.after_records,
            k.records,
            k.uncertain,
            if k.finished_first {
                ", run had ended"
            } else {
                ""
            }
        );
    }
    assert!(
        interrupted * 2 >= kills,
        "most kill points land inside the run"
    );
}
