//! Tabletop exercises through the binary: each shipped scenario with the
//! playbooks it exercises, a local moto started by breakglass itself, the
//! attacker moving during the run, and the report's numbers and exposed
//! items checked; the HTML report must parse and draw every step.

mod common;

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use common::{MOTO_SESSION_TOKEN_PREFIX, moto_server, repo_playbook};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

struct Exercise {
    code: Option<i32>,
    report: serde_json::Value,
    html: String,
    markdown: String,
}

fn tabletop(playbook: &str, scenario: &str, extra: &[&str]) -> Exercise {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::cargo_bin("breakglass").expect("binary");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let base = dir.path().join("report");
    let out = cmd
        .env("BREAKGLASS_MOTO_SERVER", moto_server())
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .args(["--output", "json", "tabletop"])
        .arg(repo_playbook(playbook))
        .arg("--scenario")
        .arg(repo(&format!("scenarios/{scenario}")))
        .arg("--report")
        .arg(&base)
        .args(extra)
        .timeout(Duration::from_secs(300))
        .output()
        .expect("tabletop runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains(MOTO_SESSION_TOKEN_PREFIX),
            "a session token leaked"
        );
        assert!(
            !text.contains("aws_secret_access_key"),
            "a credential leaked"
        );
    }
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("a JSON report ({e}):\n{stdout}\n{stderr}"));
    let html = std::fs::read_to_string(base.with_extension("html")).expect("HTML report");
    let markdown = std::fs::read_to_string(base.with_extension("md")).expect("Markdown report");
    Exercise {
        code: out.status.code(),
        report,
        html,
        markdown,
    }
}

/// Every opened element is closed in order (void elements aside): the page parses.
fn assert_well_formed(html: &str) {
    const VOID: &[&str] = &["meta", "br", "hr", "img", "input", "link", "!doctype"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').expect("every tag closes");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        let self_closing = tag.ends_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect::<String>()
            .to_lowercase();
        if VOID.contains(&name.as_str()) || self_closing {
            continue;
        }
        if tag.starts_with('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.as_str()),
                "closing </{name}>"
            );
        } else {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

fn check_report(ex: &Exercise, steps: usize) {
    let r = &ex.report;
    let timeline = r["timeline"].as_array().expect("timeline");
    assert_eq!(timeline.len(), steps, "{r}");
    for t in timeline {
        assert!(t["end_ms"].as_u64() >= t["start_ms"].as_u64(), "{t}");
    }
    assert_well_formed(&ex.html);
    for t in timeline {
        let marker = format!("class=\"step\" data-step=\"{}\"", t["index"]);
        assert!(
            ex.html.contains(&marker),
            "the timeline draws step {}",
            t["index"]
        );
    }
    // A legend and a time axis with its ticks.
    assert!(ex.html.contains("class=\"legend\""));
    assert!(ex.html.contains("class=\"tick\""));
    assert!(ex.markdown.contains("Time to first containment"));
    assert!(ex.markdown.contains("## Still exposed"));
}

fn exposed(r: &serde_json::Value) -> Vec<String> {
    r["exposed"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{}: {}", e["what"], e["why"]))
        .collect()
}

/// The kinds of the exposures naming `what`.
fn exposure_kinds(r: &serde_json::Value, what: &str) -> Vec<String> {
    r["exposed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["what"].as_str().is_some_and(|w| w.contains(what)))
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect()
}

fn move_resources(r: &serde_json::Value, action: &str) -> Vec<String> {
    r["attacker"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["do"] == action && m["succeeded"] == true)
        .flat_map(|m| m["resources"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn code_spaces_against_full_lockdown() {
    let ex = tabletop("full-lockdown.yaml", "code-spaces.yaml", &[]);
    // 20 steps, and the freeze rewritten without the member role at the end.
    check_report(&ex, 21);
    let r = &ex.report;
    let timeline = r["timeline"].as_array().expect("timeline");
    let tightened = &timeline[20];
    assert!(
        tightened["name"]
            .as_str()
            .is_some_and(|n| n.contains("member-role exemption removed")),
        "{tightened}"
    );
    assert_eq!(tightened["status"], "done", "{tightened}");
    assert!(tightened["start_ms"].as_u64() > timeline[19]["end_ms"].as_u64());
    let exposed = exposed(r);
    let end_of = |i: usize, action: &str| {
        assert_eq!(timeline[i]["action"], action, "{r}");
        timeline[i]["end_ms"].as_u64().expect("step end")
    };
    // The deny-all SCP is the first containment; SCPs spare the management
    // account, and the service-linked role is AWS's.
    let freeze_end = end_of(0, "org.apply_scp");
    assert_eq!(r["first_containment_ms"], freeze_end, "{r}");
    end_of(1, "org.apply_rcp");
    let lock_end = end_of(2, "ec2.lock_snapshots");
    let protect_end = end_of(3, "ec2.enable_termination_protection");
    let keys_end = end_of(11, "iam.deactivate_access_keys");
    // The run's own snapshots exist unlocked between these two steps.
    let snapshots_start = timeline[16]["start_ms"].as_u64().expect("start");
    let snapshots_locked = end_of(17, "ec2.lock_snapshots");
    let steps_end = end_of(19, "ec2.isolate_instances");
    for needle in ["(the management account)", "role AWSServiceRoleForSupport"] {
        assert_eq!(exposure_kinds(r, needle), ["out_of_reach"], "{needle}: {r}");
    }
    let moves = r["attacker"].as_array().expect("moves");
    let at = |m: &serde_json::Value| m["at_ms"].as_u64().expect("move time");
    for m in moves {
        let management = m["account"].is_null();
        match m["do"].as_str().unwrap_or_default() {
            // Every snapshot is locked before the wipe (a machine slowed past
            // a second lets some through, and then they are named lost).
            "delete_snapshots"
                if management
                    && at(m) > lock_end
                    && !(snapshots_start..=snapshots_locked).contains(&at(m)) =>
            {
                assert_eq!(m["resources"], serde_json::json!([]), "{m}")
            }
            // Termination protection, or the backdoor's key cut, or the
            // hold's protection of the attacker's own instance.
            "terminate_instances" if management && at(m) > protect_end => {
                for id in m["resources"].as_array().into_iter().flatten() {
                    let id = id.as_str().unwrap_or_default();
                    assert!(
                        move_resources(r, "launch_instance").contains(&id.to_string()),
                        "a seeded instance {id} terminated after the protection step: {m}"
                    );
                }
            }
            // In member accounts, the freeze (its member-role statement)
            // or the management credential's cut refuses every later move:
            // no miner, no wipe, the backups account stays.
            _ if !management && at(m) > freeze_end => {
                assert_eq!(m["succeeded"], false, "{m}");
                let why = m["detail"].to_string();
                assert!(
                    why.contains("explicit deny in a service control policy")
                        || why.contains("cannot enter account"),
                    "{m}"
                );
            }
            _ => {}
        }
    }
    // Whatever was lost is named, with the move that destroyed it.
    for e in r["exposed"].as_array().into_iter().flatten() {
        if e["kind"] != "lost" {
            continue;
        }
        let what = e["what"].as_str().unwrap_or_default();
        let by_a_move = moves.iter().any(|m| {
            m["succeeded"] == true
                && m["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x.as_str().is_some_and(|x| what.contains(x)))
        });
        assert!(by_a_move, "lost without a move that explains it: {e}");
    }
    // Nothing the attacker holds or opened is usable at the end: every key
    // it minted or re-activated is caught (the hold keeps checking after the
    // last move), the trail logs every management event again, the shares
    // are taken back, and every instance in every region of every account
    // is isolated (`regions: all`, `accounts: all`).
    let kinds = |needle: &str| exposure_kinds(r, needle);
    for needle in ["access key", "console", "trail", "instance", "snapshot"] {
        assert!(
            !kinds(needle).contains(&"open".to_string()),
            "{needle}: {exposed:#?}"
        );
    }
    assert!(
        !exposed.iter().any(|e| e.contains("did not select")),
        "{exposed:#?}"
    );
    let reactivation = attacker_move(r, "reactivate_access_keys");
    if keys_end < at(&reactivation) {
        assert_eq!(
            move_resources(r, "reactivate_access_keys").len(),
            1,
            "the re-activation at 6 s went through, and the hold caught it: {r}"
        );
    }
    // The backdoored trust is bound by the quarantine; the administrator
    // made before the response and the policy on ci-deploy are cut off,
    // left to clean up.
    assert_eq!(kinds("role app-server"), ["leftover"], "{r}");
    assert_eq!(kinds("administrator user backdoor"), ["leftover"], "{r}");
    assert_eq!(
        kinds("AdministratorAccess on user ci-deploy"),
        ["leftover"],
        "{r}"
    );
    // The production bucket opened to the attacker's account at 0 s: the
    // RCP over the account refuses the outsider, as AWS evaluates it, so
    // the grant is left to remove.
    if attacker_move(r, "backdoor_bucket_policy")["succeeded"] == true {
        assert_eq!(kinds("bucket prod-exports"), ["leftover"], "{r}");
        assert!(
            exposed
                .iter()
                .any(|e| e.contains("prod-exports") && e.contains("resource control policy")),
            "{exposed:#?}"
        );
    }
    // The member accounts' own estates (keys, passwords, instances,
    // backups), read back there: only what the attacker made before the
    // freeze (the shadow administrator, the bucket's grant) is left.
    for e in r["exposed"].as_array().into_iter().flatten() {
        if e["what"].as_str().is_some_and(|w| w.contains("in account")) {
            assert_eq!(e["kind"], "leftover", "{e}");
            let what = e["what"].to_string();
            assert!(
                what.contains("shadow-admin") || what.contains("prod-exports"),
                "{e}"
            );
        }
    }
    // The verdict and the exit agree: contained when nothing is lost or
    // open (what the demo shows on a machine like CI's).
    let clean = !r["exposed"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["kind"] == "lost" || e["kind"] == "open");
    assert_eq!(ex.code, Some(if clean { 0 } else { 1 }), "{r}");
    assert_eq!(r["status"] == "completed", clean, "{r}");
    if clean {
        // Full containment is the last step's end, not the freeze's rewrite
        // after the hold.
        assert_eq!(r["full_containment_ms"], steps_end, "{r}");
    }
    // When the steps beat the moves they answer (every protection before
    // the wipe at 1 s and the terminations at 2 s, the steps over well
    // before the attacker's own instance is terminated at 12 s, no delete
    // between the run's snapshots and their lock), the flagship wins:
    // nothing lost, nothing open, exit 0. A machine slowed past that names
    // its losses above instead.
    let in_time = lock_end < 1000
        && protect_end < 2000
        && steps_end < 8000
        && !moves.iter().any(|m| {
            m["do"] == "delete_snapshots" && (snapshots_start..=snapshots_locked).contains(&at(m))
        });
    if in_time {
        assert!(clean, "the flagship loses nothing on time: {exposed:#?}");
    } else {
        eprintln!(
            "code-spaces: the steps came too late for a clean win here (locks {lock_end} ms, protection {protect_end} ms, steps {steps_end} ms); losses checked as named"
        );
    }
    // moto has no snapshot locking and lists regions AWS does not enable:
    // breakglass answers both, and says so.
    let notes = r["emulator_notes"].to_string();
    assert!(notes.contains("snapshot locking") && notes.contains("DescribeRegions"));
}

#[test]
fn a_leaked_key_is_contained_and_the_attackers_new_key_is_named() {
    let ex = tabletop("compromised-access-key.yaml", "leaked-access-key.yaml", &[]);
    check_report(&ex, 3);
    let r = &ex.report;
    // The run contained what it targeted, but the attacker's new key is
    // still usable: the exercise is not contained, whatever the run said.
    assert_eq!(ex.code, Some(1), "{r}");
    assert_eq!(r["status"], "not_contained", "{r}");
    let leaked = r["seeded"]["user_keys"]["ci-deploy"][0]
        .as_str()
        .expect("leaked key");
    assert!(
        r["outcomes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o["step"] == 0
                && o["target"].as_str().is_some_and(|t| t.contains(leaked))
                && o["outcome"] == "changed"),
        "{r}"
    );
    let minted = move_resources(r, "create_access_key");
    assert!(
        exposed(r).iter().any(|e| e.contains(&minted[0])),
        "the playbook targets one key: the attacker's new one stays exposed and is named"
    );
    assert!(r["first_containment_ms"].as_u64().is_some());
    assert_eq!(r["full_containment_ms"], serde_json::Value::Null, "{r}");
    assert_eq!(exposure_kinds(r, &minted[0]), ["open"], "{r}");
    // The federation token outlives the leaked key, but the owner is
    // quarantined: held. The backdoor role is not (the playbook quarantines
    // the key's owner only), and the deleted trail is lost for good.
    let token = move_resources(r, "federation_token");
    assert_eq!(token.len(), 2, "the token and when it was minted: {r}");
    assert!(token[1].starts_with("minted:"), "{token:?}");
    assert!(exposure_kinds(r, "federation token").is_empty(), "{r}");
    assert_eq!(exposure_kinds(r, "role ci-backdoor"), ["open"], "{r}");
    assert_eq!(
        exposure_kinds(r, "CloudTrail trail ci-trail"),
        ["lost"],
        "{r}"
    );
    // Moves made as a principal meet its policies as AWS would: the
    // owner's quarantine refuses its own credentials (its leaked key is
    // inactive, the second one denied), and no console password appears.
    let as_owner = attacker_move(r, "create_login_profile");
    let quarantined = r["timeline"][2]["end_ms"].as_u64().expect("step end");
    assert_eq!(r["timeline"][2]["action"], "iam.quarantine_principals");
    // The quarantine lands well under a second in; a machine slowed past
    // 3 s lets the move through, and then the password is named.
    if quarantined < as_owner["at_ms"].as_u64().expect("move time") {
        assert_eq!(as_owner["succeeded"], false, "{as_owner}");
        let detail = as_owner["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(&format!("key {leaked}: InvalidClientTokenId"))
                && detail.contains(&format!("key {}: AccessDenied", minted[0]))
                && detail.contains("iam:CreateLoginProfile")
                && detail.contains("cannot call IAM or STS operations")
                && detail
                    .contains("explicit deny in an identity-based policy (breakglass-quarantine)"),
            "{detail}"
        );
        assert!(
            exposure_kinds(r, "console password of user ci-deploy").is_empty(),
            "{r}"
        );
    } else {
        assert_eq!(as_owner["succeeded"], true, "{as_owner}");
    }
    // The backdoor role is bound by nothing the playbook wrote.
    let as_role = attacker_move(r, "attach_admin_policy");
    assert_eq!(as_role["succeeded"], true, "{as_role}");
    assert_eq!(
        exposure_kinds(r, "AdministratorAccess on user alice"),
        ["open"],
        "{r}"
    );
    // A playbook that touches no user leaves the token usable, and says why;
    // the same move as the owner goes through.
    let none = tabletop("protect-backups.yaml", "leaked-access-key.yaml", &[]);
    assert_eq!(
        exposure_kinds(&none.report, "federation token"),
        ["open"],
        "{}",
        none.report
    );
    assert_eq!(
        attacker_move(&none.report, "create_login_profile")["succeeded"],
        true
    );
    assert_eq!(
        exposure_kinds(&none.report, "console password of user ci-deploy"),
        ["open"],
        "{}",
        none.report
    );
}

/// S3 ransomware three ways, a backdoor bucket policy and a trail's logs set
/// to expire: recoverable only where the buckets were protected first.
#[test]
fn s3_ransomware_is_recoverable_only_where_buckets_were_protected_first() {
    let ex = tabletop("full-lockdown.yaml", "s3-ransomware.yaml", &[]);
    check_report(&ex, 21);
    let r = &ex.report;
    assert_eq!(r["seeded"]["buckets"], 4, "{r}");
    let protected = r["timeline"][10].clone();
    assert_eq!(protected["action"], "s3.protect_buckets", "{r}");
    let protected_at = protected["end_ms"].as_u64().expect("step end");
    let wiped_at = attacker_move(r, "s3_ransomware_individual")["at_ms"]
        .as_u64()
        .expect("move time");
    // The steps take under three seconds here; a machine slow enough to
    // finish them after the wipe at 4 s must report the loss instead.
    if protected_at + 100 < wiped_at {
        // Either the flagship's quarantine of every role refused the wipe
        // from the attacker's role, or versioning (on first) kept every
        // deleted object's version and the SSE-C block refused the
        // re-encryption, as S3 does (403): nothing is lost either way.
        let wipes = r["attacker"].as_array().into_iter().flatten();
        for m in wipes.filter(|m| m["planned_ms"] == 4000) {
            let quarantined = format!("{m}").contains("breakglass-quarantine");
            if m["do"] == "s3_ransomware_sse_c" || quarantined {
                assert_eq!(m["succeeded"], false, "{m}");
                assert!(format!("{m}").contains("AccessDenied"), "{m}");
            }
        }
        for bucket in [
            "bucket customer-exports",
            "bucket analytics-raw",
            "bucket invoices",
        ] {
            let kinds = exposure_kinds(r, bucket);
            assert!(!kinds.contains(&"lost".to_string()), "{bucket}: {r}");
        }
    } else {
        assert!(
            exposed(r)
                .iter()
                .any(|e| e.contains("s3.protect_buckets ended at")),
            "{r}"
        );
    }
    // The pipeline's own key is inactive by six seconds: refused.
    let keys = r["timeline"][11].clone();
    assert_eq!(keys["action"], "iam.deactivate_access_keys", "{r}");
    let late = attacker_move(r, "s3_ransomware_batch");
    assert_eq!(late["subject"], "bucket audit-archive", "{late}");
    if keys["end_ms"].as_u64().expect("step end") < late["at_ms"].as_u64().expect("move time") {
        assert!(format!("{late}").contains("InvalidClientTokenId"), "{late}");
    } else {
        assert_eq!(late["succeeded"], true, "{late}");
    }
    // No step removes a named-account grant or a lifecycle rule.
    assert_eq!(
        exposure_kinds(r, "bucket customer-exports")[0],
        "open",
        "{r}"
    );
    assert_eq!(
        exposure_kinds(r, "bucket tabletop-trail-org-trail"),
        ["open"],
        "{r}"
    );
    assert_eq!(r["status"], "not_contained", "{r}");

    // Without s3.protect_buckets every wiped object is gone, but the
    // archive versioned beforehand keeps its versions.
    let none = tabletop("protect-backups.yaml", "s3-ransomware.yaml", &[]);
    let r = &none.report;
    for bucket in [
        "bucket customer-exports",
        "bucket analytics-raw",
        "bucket invoices",
    ] {
        assert!(
            exposure_kinds(r, bucket).contains(&"lost".to_string()),
            "{bucket}: {r}"
        );
    }
    assert_eq!(
        exposure_kinds(r, "bucket audit-archive"),
        ["leftover"],
        "{r}"
    );
    assert_eq!(none.code, Some(1), "{r}");
}

/// An instance role's stolen session: what it did before the response is
/// judged from the emulator, and once the playbook revokes the role's
/// sessions every later move made as the role is refused, as AWS would.
#[test]
fn stolen_instance_credentials_are_refused_once_the_role_is_revoked() {
    let ex = tabletop(
        "compromised-instance.yaml",
        "stolen-instance-credentials.yaml",
        &[],
    );
    check_report(&ex, 5);
    let r = &ex.report;
    assert_eq!(r["seeded"]["images"], 2, "{r}");
    let shared = move_resources(r, "share_images");
    assert_eq!(shared.len(), 1, "{r}");
    assert_eq!(exposure_kinds(r, &shared[0]), ["open"], "{r}");
    assert_eq!(
        exposure_kinds(r, "VPC flow logs (us-east-1)"),
        ["lost"],
        "{r}"
    );
    let revoked = &r["timeline"][2];
    assert_eq!(revoked["action"], "ec2.detach_instance_profiles", "{r}");
    let revoked_at = revoked["end_ms"].as_u64().expect("step end");
    let why = "explicit deny in an identity-based policy (breakglass-revoke-older-sessions)";
    for late in ["deregister_images", "get_password_data", "modify_user_data"] {
        let m = attacker_move(r, late);
        // The revocation lands well under a second in; a machine slowed
        // past 3 s lets the moves through.
        if revoked_at < m["at_ms"].as_u64().expect("move time") {
            assert_eq!(m["succeeded"], false, "{m}");
            assert!(format!("{m}").contains(why), "{m}");
        } else {
            assert!(!format!("{m}").contains(why), "{m}");
        }
    }
    assert_eq!(
        ex.code,
        Some(1),
        "the shared AMI and the lost flow logs: {r}"
    );

    // A playbook that never touches the role lets them through: the AMIs
    // are deregistered (their snapshots remain), and the instance is
    // stopped and restarted with the attacker's user data.
    let none = tabletop(
        "protect-backups.yaml",
        "stolen-instance-credentials.yaml",
        &[],
    );
    let r = &none.report;
    let gone = move_resources(r, "deregister_images");
    assert_eq!(gone.len(), 2, "{r}");
    for image in &gone {
        assert_eq!(exposure_kinds(r, image), ["leftover"], "{r}");
    }
    let rewritten = move_resources(r, "modify_user_data");
    assert_eq!(rewritten.len(), 1, "{r}");
    assert_eq!(exposure_kinds(r, &rewritten[0]), ["lost"], "{r}");
    let password = attacker_move(r, "get_password_data");
    assert!(
        format!("{password}").contains("not a Windows instance"),
        "{password}"
    );
}

/// The (last) attacker move of kind `action`.
fn attacker_move(r: &serde_json::Value, action: &str) -> serde_json::Value {
    r["attacker"]
        .as_array()
        .into_iter()
        .flatten()
        .rfind(|m| m["do"] == action)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn holding_the_line_catches_the_attackers_new_key() {
    let ex = tabletop(
        "credential-lockdown.yaml",
        "leaked-access-key.yaml",
        &["--hold", "3s", "--every", "1s"],
    );
    check_report(&ex, 4);
    let r = &ex.report;
    let minted = move_resources(r, "create_access_key");
    assert_eq!(minted.len(), 1);
    assert!(
        !exposed(r).iter().any(|e| e.contains(&minted[0])),
        "a lockdown of every key, held, leaves no attacker key: {r}"
    );
}

#[test]
fn a_compromised_instance_keeps_its_evidence() {
    let ex = tabletop(
        "compromised-instance.yaml",
        "compromised-instance.yaml",
        &[],
    );
    check_report(&ex, 5);
    let r = &ex.report;
    let exposed = exposed(r);
    let terminated = move_resources(r, "terminate_instances");
    // Termination protection comes long before the attacker's try at +3 s;
    // only a machine slowed past that can lose the race, and then it is named.
    if terminated.is_empty() {
        assert_eq!(ex.code, Some(0), "{r}");
        assert!(r["full_containment_ms"].as_u64().is_some(), "{r}");
    }
    assert!(
        exposed
            .iter()
            .any(|e| e.contains("not among the playbook's targets")),
        "web-2 is not the compromised instance: {exposed:#?}"
    );
    for id in &terminated {
        assert!(
            exposed
                .iter()
                .any(|e| e.contains(id.as_str()) && e.contains("snapshotted first")),
            "{id}: {exposed:#?}"
        );
    }
}

#[test]
fn fanned_out_the_member_accounts_are_reached_not_exposed() {
    let ex = tabletop(
        "credential-lockdown.yaml",
        "code-spaces.yaml",
        &["--accounts", "all"],
    );
    check_report(&ex, 4);
    let exposed = exposed(&ex.report);
    assert!(
        !exposed.iter().any(|e| e.contains("member account")),
        "the run reached both member accounts: {exposed:#?}"
    );
}

#[test]
fn every_other_shipped_playbook_runs_against_code_spaces() {
    for (playbook, steps) in [("org-freeze.yaml", 1), ("protect-backups.yaml", 4)] {
        let pb = std::fs::read_to_string(repo_playbook(playbook)).expect("playbook");
        let declared = pb
            .matches("  - name:")
            .count()
            .max(pb.matches("action:").count());
        assert_eq!(declared, steps, "{playbook}");
        let ex = tabletop(playbook, "code-spaces.yaml", &[]);
        check_report(&ex, steps);
        // The freeze alone leaves the muted trail exposed, and the report
        // says so, read from the emulator (the shared backup is deleted by
        // the attacker later, so it shares nothing any more).
        if playbook == "org-freeze.yaml" {
            let exposed = exposed(&ex.report);
            let muted = "muted every management event";
            assert!(exposed.iter().any(|e| e.contains(muted)), "{exposed:#?}");
            // No key step: the attacker's new administrator keeps its key.
            assert_eq!(exposure_kinds(&ex.report, "user backdoor"), ["open"]);
            let admin = "AdministratorAccess on user ci-deploy";
            assert_eq!(exposure_kinds(&ex.report, admin), ["open"]);
            // No password step: the attacker's console password stays, open,
            // and so does the console session it opened with it.
            let password = "console password of user devops";
            assert!(exposed.iter().any(|e| e.contains(password)), "{exposed:#?}");
            let session = "console session of user devops";
            assert_eq!(exposure_kinds(&ex.report, session), ["open"]);
            // The group opened to the world is named either way (the
            // attacker terminates every instance in it by 8 s).
            for group in move_resources(&ex.report, "open_port_22") {
                assert_eq!(exposure_kinds(&ex.report, &group).len(), 1, "{group}");
            }
            assert_eq!(ex.report["status"], "not_contained");
        }
        // Without an SCP nothing binds the member accounts: the backups
        // account leaves the organization (lost), and the shadow
        // administrator, the miner and the bucket opened to the attacker
        // (no RCP either) in production stay open.
        if playbook == "protect-backups.yaml" {
            let r = &ex.report;
            assert_eq!(
                attacker_move(r, "leave_organization")["succeeded"],
                true,
                "{r}"
            );
            assert!(
                exposure_kinds(r, "(backups)").contains(&"lost".to_string()),
                "{r}"
            );
            assert_eq!(
                exposure_kinds(r, "in account"),
                ["open", "open", "open"],
                "{r}"
            );
        }
    }
}

/// The readiness scenario: a member account without its member role and a
/// root already at five SCPs, found before any incident, and nothing run.
#[test]
fn a_scenario_can_break_readiness_and_the_check_names_each_break() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::cargo_bin("breakglass")
        .expect("binary")
        .env("BREAKGLASS_MOTO_SERVER", moto_server())
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .args(["--accounts", "all", "-o", "json", "tabletop"])
        .arg(repo_playbook("full-lockdown.yaml"))
        .arg("--scenario")
        .arg(repo("scenarios/not-ready.yaml"))
        .arg("--readiness")
        .timeout(Duration::from_secs(120))
        .output()
        .expect("tabletop runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let findings: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |check: &str, severity: &str| -> Vec<&serde_json::Value> {
        findings
            .iter()
            .filter(|f| f["check"] == check && f["severity"] == severity)
            .collect()
    };
    let unreachable = of("member_roles", "error");
    assert_eq!(
        unreachable.len(),
        1,
        "only `legacy` lost its role: {findings:#?}"
    );
    assert!(
        unreachable[0]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("recreate OrganizationAccountAccessRole")),
        "{}",
        unreachable[0]
    );
    assert!(
        of("quota", "warning").iter().any(|f| f["message"]
            .as_str()
            .is_some_and(|m| m.contains("already holds 5 SCPs"))),
        "the full root: {findings:#?}"
    );
    assert!(
        !dir.path().join("breakglass-audit").exists()
            || std::fs::read_dir(dir.path().join("breakglass-audit"))
                .expect("dir")
                .next()
                .is_none(),
        "a readiness check writes no audit log: nothing ran"
    );
}

#[test]
fn a_bad_scenario_or_a_foreign_endpoint_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\nusers:\n  - { name: a, access_keys: 3 }\nattacker:\n  - { at: soon, do: create_access_key, user: a }\n",
    )
    .expect("write");
    let out = Command::cargo_bin("breakglass")
        .expect("binary")
        .env("BREAKGLASS_MOTO_SERVER", "/nonexistent/moto_server")
        .env("NO_COLOR", "1")
        .args(["tabletop"])
        .arg(repo_playbook("credential-lockdown.yaml"))
        .arg("--scenario")
        .arg(&bad)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.yaml:3:5"), "{stderr}");
    assert!(stderr.contains("at most 2 access keys"), "{stderr}");
    assert!(stderr.contains("bad.yaml:5:5"), "{stderr}");

    // A new administrator is a user the scenario does not already declare.
    std::fs::write(
        &bad,
        "name: bad\nusers:\n  - { name: a }\nattacker:\n  - { at: 1s, do: create_admin_user, user: a }\n",
    )
    .expect("write");
    let invalid = |path: &Path| {
        let out = Command::cargo_bin("breakglass")
            .expect("binary")
            .args(["validate", "--scenario"])
            .arg(path)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        stderr
    };
    let stderr = invalid(&bad);
    assert!(
        stderr.contains("makes a new user: `a` is declared"),
        "{stderr}"
    );

    // A backdoor role is a new one; a federation token needs the user's key.
    std::fs::write(
        &bad,
        "name: bad\nusers:\n  - { name: a }\nroles:\n  - { name: r }\nattacker:\n  - { at: 1s, do: create_backdoor_role, role: r }\n  - { at: 1s, do: federation_token, user: a }\n",
    )
    .expect("write");
    let stderr = invalid(&bad);
    assert!(
        stderr.contains("bad.yaml:7:5") && stderr.contains("makes a new role: `r` is declared"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.yaml:8:5")
            && stderr.contains("signs with `a`'s access key: it has none"),
        "{stderr}"
    );

    // `as:` names a principal the scenario has, or one made earlier;
    // `account:` a declared member account, for the moves made there.
    std::fs::write(
        &bad,
        "name: bad\norganization: true\naccounts:\n  - { name: prod }\nusers:\n  - { name: a }\nattacker:\n  - { at: 1s, do: create_access_key, user: a, as: user ghost }\n  - { at: 1s, do: create_access_key, user: a, as: group a }\n  - { at: 1s, do: create_access_key, user: a, account: prod }\n  - { at: 1s, do: leave_organization, account: staging }\n  - { at: 1s, do: leave_organization }\n  - { at: 0s, do: create_backdoor_role, role: door }\n  - { at: 1s, do: create_access_key, user: a, as: role door }\n",
    )
    .expect("write");
    let stderr = invalid(&bad);
    for (at, message) in [
        (
            "bad.yaml:8:5",
            "user `ghost` is not declared under `users`, nor created by an earlier move",
        ),
        (
            "bad.yaml:9:5",
            "`as: group a` is not `user NAME` or `role NAME`",
        ),
        (
            "bad.yaml:10:5",
            "`do: create_access_key` is not made in member accounts",
        ),
        (
            "bad.yaml:11:5",
            "account `staging` is not declared under `accounts`",
        ),
        ("bad.yaml:12:5", "`do: leave_organization` needs `account`"),
    ] {
        assert!(
            stderr.contains(at) && stderr.contains(message),
            "{at} {message}: {stderr}"
        );
    }
    assert!(
        !stderr.contains("bad.yaml:14:5"),
        "a role made earlier may act: {stderr}"
    );

    // A root can hold at most five SCPs, and only in an organization.
    std::fs::write(&bad, "name: bad\nroot_scps: 7\n").expect("write");
    let stderr = invalid(&bad);
    assert!(stderr.contains("bad.yaml:2:12"), "{stderr}");
    assert!(
        stderr.contains("root_scps needs `organization: true`"),
        "{stderr}"
    );
    assert!(stderr.contains("is not 2 to 5"), "{stderr}");

    let out = Command::cargo_bin("breakglass")
        .expect("binary")
        .args(["--endpoint-url", "https://iam.amazonaws.com", "tabletop"])
        .arg(repo_playbook("credential-lockdown.yaml"))
        .arg("--scenario")
        .arg(repo("scenarios/leaked-access-key.yaml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--endpoint-url"));

    let out = Command::cargo_bin("breakglass")
        .expect("binary")
        .env("BREAKGLASS_MOTO_SERVER", "/nonexistent/moto_server")
        .current_dir(dir.path())
        .args(["tabletop"])
        .arg(repo_playbook("credential-lockdown.yaml"))
        .arg("--scenario")
        .arg(repo("scenarios/leaked-access-key.yaml"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("setup-emulator.sh"),
        "the install command: {stderr}"
    );
}

#[test]
fn stolen_identities_are_contained_by_their_playbooks_and_named_when_not() {
    // The phished Identity Center user: denied in every permission set it
    // reached (its own and its group's), its access taken away.
    let ex = tabletop(
        "compromised-identity-center-user.yaml",
        "phished-identity-center-user.yaml",
        &[],
    );
    check_report(&ex, 1);
    let r = &ex.report;
    assert_eq!(ex.code, Some(0), "{r}");
    assert!(exposed(r).is_empty(), "{r}");
    assert!(
        r["seeded"]["identity_center"]["users"]["mallory"].is_string(),
        "{r}"
    );

    // IAM steps alone never reach it: its minted sessions and its access
    // stay open, and the exercise is not contained.
    let iam = tabletop(
        "credential-lockdown.yaml",
        "phished-identity-center-user.yaml",
        &["--var", "case_id=IR-T"],
    );
    let r = &iam.report;
    assert_eq!(iam.code, Some(1), "{r}");
    for what in [
        "mallory in permission set Admin",
        "mallory in permission set ReadOnly",
    ] {
        assert_eq!(exposure_kinds(r, what), ["open"], "{what}: {r}");
    }

    // The stolen role session: denied by its aws:userid.
    let s = tabletop("compromised-session.yaml", "stolen-session.yaml", &[]);
    check_report(&s, 1);
    assert_eq!(s.code, Some(0), "{}", s.report);
    assert!(exposed(&s.report).is_empty(), "{}", s.report);
    // A playbook that touches no role leaves it usable, and says so.
    let none = tabletop("protect-backups.yaml", "stolen-session.yaml", &[]);
    assert_eq!(none.code, Some(1), "{}", none.report);
    assert_eq!(
        exposure_kinds(&none.report, "session laptop-cache of role app-server"),
        ["open"],
        "{}",
        none.report
    );

    // Member root users: their credentials deleted through AssumeRoot; the
    // account whose root user had none is left as it is.
    let roots = tabletop(
        "member-root-lockdown.yaml",
        "compromised-member-root.yaml",
        &[],
    );
    check_report(&roots, 1);
    let r = &roots.report;
    assert_eq!(roots.code, Some(0), "{r}");
    assert!(exposed(r).is_empty(), "{r}");
    assert!(
        r["seeded"]["root_users"]["payments"]["password"] == true,
        "{r}"
    );
    // A freeze binds member root users but deletes nothing: both stay open.
    let freeze = tabletop("org-freeze.yaml", "compromised-member-root.yaml", &[]);
    let r = &freeze.report;
    assert_eq!(freeze.code, Some(1), "{r}");
    for name in ["payments", "analytics"] {
        let what = format!("root user of account {name} ");
        assert_eq!(exposure_kinds(r, &what), ["open"], "{name}: {r}");
    }
    assert!(
        exposure_kinds(r, "root user of account data-lake").is_empty(),
        "{r}"
    );
}
