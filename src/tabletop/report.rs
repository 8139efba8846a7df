//! What the exercise showed: the timeline of steps and attacker moves, time to
//! first and to full containment, per-resource outcomes, and what stayed
//! exposed with the reason, read back from the emulator after the run. Written
//! for the debrief as Markdown and as one self-contained HTML page.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::scenario::{MoveKind, Scenario};
use super::seed::{Admin, MoveRecord, Seeded};
use crate::actions::ec2::{QUARANTINE_GROUP, SOURCE_TAG};

/// One step on the timeline (milliseconds from the start of the run).
#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub index: usize,
    pub name: String,
    pub action: String,
    pub status: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub calls: u64,
    pub throttled: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// One target's fate in one step.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub step: usize,
    pub target: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// Something the run did not contain, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Exposed {
    pub what: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub playbook: String,
    pub endpoint: String,
    pub run_id: String,
    /// The run's own status (`completed`, `completed_with_failures`, …).
    pub status: String,
    pub exit_code: i32,
    pub seeded: Seeded,
    pub timeline: Vec<StepTime>,
    /// When the first containment was in place, and what it was.
    pub first_containment_ms: Option<u64>,
    pub first_containment: String,
    /// When every step had finished with nothing left exposed by a failure.
    pub full_containment_ms: Option<u64>,
    pub attacker: Vec<MoveRecord>,
    pub outcomes: Vec<Outcome>,
    pub exposed: Vec<Exposed>,
    /// Where the emulator differs from AWS, so a gap is not mistaken for the playbook's.
    pub emulator_notes: Vec<String>,
    pub audit_log: String,
    pub total_ms: u64,
}

fn target_text(t: &Value) -> String {
    if let (Some(key), Some(user)) = (t["key_id"].as_str(), t["user"].as_str()) {
        return format!("access key {key} of user {user}");
    }
    let kind = t["type"].as_str().unwrap_or("target");
    let name = t["name"]
        .as_str()
        .or_else(|| t["id"].as_str())
        .or_else(|| t["arn"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| t.to_string());
    match t["scope"]["region"].as_str() {
        Some(r) => format!("{kind} {name} ({r})"),
        None => format!("{kind} {name}"),
    }
}

/// The run report's steps that ran `action`.
fn steps_of<'a>(run: &'a Value, action: &'a str) -> impl Iterator<Item = &'a Value> {
    run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |s| s["action"] == action)
}

/// A step's per-target items.
fn items_of(step: &Value) -> impl Iterator<Item = &Value> {
    step["items"].as_array().into_iter().flatten()
}

/// Outcomes from the run's JSON report.
pub fn outcomes(run: &Value) -> Vec<Outcome> {
    let mut out = Vec::new();
    for s in run["steps"].as_array().into_iter().flatten() {
        let step = s["index"].as_u64().unwrap_or_default() as usize;
        for i in items_of(s) {
            let why = i["reason"]
                .as_str()
                .map(str::to_string)
                .or_else(|| i["error"]["message"].as_str().map(str::to_string));
            out.push(Outcome {
                step,
                target: target_text(&i["target"]),
                outcome: i["outcome"].as_str().unwrap_or("?").to_string(),
                why,
            });
        }
    }
    out
}

fn secs(ms: u64) -> String {
    format!("+{:.1} s", ms as f64 / 1000.0)
}

/// Reads the emulator back and lists what stayed exposed.
pub async fn exposures(
    admin: &Admin,
    scenario: &Scenario,
    seeded: &Seeded,
    run: &Value,
    moves: &[MoveRecord],
    timeline: &[StepTime],
    emulator_gaps: &[usize],
) -> Vec<Exposed> {
    let mut out = Vec::new();
    let actions: Vec<&str> = timeline.iter().map(|s| s.action.as_str()).collect();
    if scenario.file.organization && actions.contains(&"org.apply_scp") {
        out.push(Exposed {
            what: format!("account {} (the management account)", seeded.account),
            why: "SCPs never restrict the management account: its users and roles are held only by the IAM steps, and whoever holds its root user is not held at all".into(),
        });
    }
    let attacker_resources: Vec<&String> = moves
        .iter()
        .filter(|m| m.succeeded)
        .flat_map(|m| &m.resources)
        .collect();
    let scp = timeline
        .iter()
        .find(|t| t.action == "org.apply_scp" && t.status == "done");
    for (name, id) in &seeded.member_accounts {
        let fanned = run["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["account"].as_str() == Some(id.as_str()));
        if let Some(a) = fanned {
            // The run reached into it: its targets are in the run's own results.
            if let Some(e) = a["error"].as_str() {
                out.push(Exposed {
                    what: format!("account {id} ({name})"),
                    why: format!("member account the run could not reach: {e}"),
                });
            }
            continue;
        }
        let why = match scp {
            Some(t) => format!(
                "member account: the deny-all SCP has bound it since {}, but this run's IAM and EC2 steps ran only in the management account, so its keys, sessions and instances are untouched",
                secs(t.end_ms)
            ),
            None => "member account: nothing in this playbook reaches it (no SCP step; the IAM and EC2 steps ran only in the management account)".to_string(),
        };
        out.push(Exposed {
            what: format!("account {id} ({name})"),
            why,
        });
    }
    for n in run["not_contained"].as_array().into_iter().flatten() {
        let Some(n) = n.as_str() else { continue };
        // The attacker's own work is listed below, with when and how.
        if attacker_resources.iter().any(|r| n.contains(r.as_str())) {
            continue;
        }
        let gap = emulator_gaps
            .iter()
            .find(|i| n.starts_with(&format!("step {} (", *i + 1)));
        let (what, why) = match gap {
            Some(i) => (
                format!(
                    "step {} ({})",
                    i + 1,
                    timeline
                        .iter()
                        .find(|t| t.index == *i)
                        .map_or("", |t| t.name.as_str())
                ),
                "not done here: the emulator lacks a call this step needs (AWS has it)".to_string(),
            ),
            None => (
                n.chars().take(240).collect(),
                "read back after the run: not contained".to_string(),
            ),
        };
        out.push(Exposed { what, why });
    }
    let iam = admin.iam();
    for m in moves.iter().filter(|m| m.succeeded) {
        let when = secs(m.at_ms);
        match m.action {
            MoveKind::CreateAccessKey | MoveKind::ReactivateAccessKeys => {
                let user = m.subject.trim_start_matches("user ");
                let keys = iam.list_access_keys().user_name(user).send().await;
                let active: Vec<String> = keys
                    .iter()
                    .flat_map(|k| k.access_key_metadata())
                    .filter(|k| k.status().map(|s| s.as_str()) == Some("Active"))
                    .filter_map(|k| k.access_key_id().map(str::to_string))
                    .filter(|id| m.resources.contains(id))
                    .collect();
                let key_step = timeline
                    .iter()
                    .find(|t| t.action == "iam.deactivate_access_keys")
                    .map(|t| (t.start_ms, t.end_ms));
                for id in active {
                    let verb = match m.action {
                        MoveKind::CreateAccessKey => "created",
                        _ => "re-activated",
                    };
                    let why = match key_step {
                        Some((start, _)) if m.at_ms < start => format!(
                            "{verb} by the attacker at {when}, before the key step, which did not select it"
                        ),
                        Some((_, end)) if m.at_ms <= end => format!(
                            "{verb} by the attacker at {when}, while the key step ran, after it had listed {user}'s keys"
                        ),
                        Some(_) => format!("{verb} by the attacker at {when}, after the key step"),
                        None => format!(
                            "{verb} by the attacker at {when}; the playbook has no key step"
                        ),
                    };
                    out.push(Exposed {
                        what: format!("access key {id} of user {user}"),
                        why: format!("{why}; `--hold` or a second run would catch it"),
                    });
                }
            }
            MoveKind::AttachAdminPolicy => {
                let attached = match m.subject.split_once(' ') {
                    Some(("role", role)) => iam
                        .list_attached_role_policies()
                        .role_name(role)
                        .send()
                        .await
                        .map(|p| {
                            p.attached_policies()
                                .iter()
                                .any(|p| p.policy_name() == Some("AdministratorAccess"))
                        })
                        .unwrap_or(false),
                    Some((_, user)) => iam
                        .list_attached_user_policies()
                        .user_name(user)
                        .send()
                        .await
                        .map(|p| {
                            p.attached_policies()
                                .iter()
                                .any(|p| p.policy_name() == Some("AdministratorAccess"))
                        })
                        .unwrap_or(false),
                    None => false,
                };
                if attached {
                    out.push(Exposed {
                        what: format!("AdministratorAccess on {}", m.subject),
                        why: format!(
                            "attached by the attacker at {when}: breakglass cuts credentials and sessions but does not detach policies; remove it after the investigation"
                        ),
                    });
                }
            }
            MoveKind::DeleteSnapshots => {
                let lock_items: Vec<String> = steps_of(run, "ec2.lock_snapshots")
                    .flat_map(items_of)
                    .map(|i| i["target"].to_string())
                    .collect();
                for id in &m.resources {
                    let why = if lock_items.iter().any(|t| t.contains(id.as_str())) {
                        format!(
                            "evidence lost: deleted by the attacker at {when}, before the run locked it"
                        )
                    } else {
                        format!(
                            "deleted by the attacker at {when}: the playbook never locks it (it locks only the snapshots it takes)"
                        )
                    };
                    out.push(Exposed {
                        what: format!("snapshot {id} ({})", m.subject),
                        why,
                    });
                }
            }
            MoveKind::TerminateInstances => {
                let ec2 = admin.ec2(&m.subject);
                for id in &m.resources {
                    let launched = moves
                        .iter()
                        .find(|l| l.action == MoveKind::LaunchInstance && l.resources.contains(id));
                    if let Some(l) = launched {
                        out.push(Exposed {
                            what: format!("instance {id} ({})", m.subject),
                            why: format!(
                                "the attacker's own instance (launched at {}), terminated at {when}: whatever ran on it is gone",
                                secs(l.at_ms)
                            ),
                        });
                        continue;
                    }
                    let saved = ec2
                        .describe_snapshots()
                        .owner_ids("self")
                        .filters(
                            aws_sdk_ec2::types::Filter::builder()
                                .name(format!("tag:{SOURCE_TAG}"))
                                .values(id)
                                .build(),
                        )
                        .send()
                        .await
                        .map(|s| s.snapshots().len())
                        .unwrap_or(0);
                    let why = if saved > 0 {
                        format!(
                            "terminated by the attacker at {when}; its disks were snapshotted first ({saved} snapshots)"
                        )
                    } else {
                        format!(
                            "terminated by the attacker at {when} before its disks were snapshotted: evidence lost"
                        )
                    };
                    out.push(Exposed {
                        what: format!("instance {id} ({})", m.subject),
                        why,
                    });
                }
            }
            MoveKind::StopLogging => {
                let trail = m.subject.trim_start_matches("trail ");
                let region = scenario
                    .file
                    .trails
                    .iter()
                    .find(|t| t.name == trail)
                    .map_or("us-east-1", |t| t.region.as_str());
                let logging = admin
                    .cloudtrail(region)
                    .get_trail_status()
                    .name(trail)
                    .send()
                    .await
                    .ok()
                    .and_then(|s| s.is_logging());
                if logging != Some(true) {
                    out.push(Exposed {
                        what: format!("CloudTrail trail {trail} ({region})"),
                        why: format!(
                            "logging stopped by the attacker at {when}: what happened since is unrecorded; breakglass has no step that restarts it, so start it first (StartLogging)"
                        ),
                    });
                }
            }
            MoveKind::LaunchInstance => {
                for id in &m.resources {
                    let terminated_later = moves.iter().any(|t| {
                        t.action == MoveKind::TerminateInstances && t.resources.contains(id)
                    });
                    if !terminated_later && !isolated(admin, &m.subject, id).await {
                        out.push(Exposed {
                            what: format!("instance {id} ({})", m.subject),
                            why: format!("launched by the attacker at {when}, after the isolation step found its targets"),
                        });
                    }
                }
            }
        }
    }
    if actions.contains(&"ec2.isolate_instances") {
        let terminated: Vec<&String> = moves
            .iter()
            .filter(|m| m.action == MoveKind::TerminateInstances)
            .flat_map(|m| &m.resources)
            .collect();
        let ran = steps_of(run, "ec2.isolate_instances").any(|s| s["status"] != "not_run");
        let items: Vec<&Value> = steps_of(run, "ec2.isolate_instances")
            .flat_map(items_of)
            .collect();
        let isolate_regions: Vec<&str> = items
            .iter()
            .filter_map(|i| i["target"]["scope"]["region"].as_str())
            .collect();
        for (region, ids) in &seeded.instances {
            for id in ids.iter().filter(|id| !terminated.contains(id)) {
                if isolated(admin, region, id).await {
                    continue;
                }
                let targeted = items
                    .iter()
                    .any(|i| i["target"].to_string().contains(id.as_str()));
                let why = if !ran {
                    "not isolated: the isolation step did not run".to_string()
                } else if targeted {
                    "not isolated: see the isolation step's outcome".to_string()
                } else if !isolate_regions.contains(&region.as_str()) {
                    format!("in {region}, a region the playbook did not select")
                } else {
                    "not among the playbook's targets".to_string()
                };
                out.push(Exposed {
                    what: format!("instance {id} ({region})"),
                    why,
                });
            }
        }
    }
    if actions.contains(&"iam.revoke_role_sessions") {
        for r in &scenario.file.roles {
            if r.path.starts_with("/aws-service-role/") {
                out.push(Exposed {
                    what: format!("role {}", r.name),
                    why: "service-linked role: AWS owns it and refuses changes, so its sessions are not revoked".into(),
                });
            }
        }
    }
    out
}

async fn isolated(admin: &Admin, region: &str, id: &str) -> bool {
    let Ok(d) = admin
        .ec2(region)
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
    else {
        return false;
    };
    d.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.network_interfaces())
        .all(|n| {
            n.groups()
                .iter()
                .all(|g| g.group_name() == Some(QUARANTINE_GROUP))
        })
}

/// Markdown for the debrief (also what the terminal shows).
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Tabletop: {} × {}\n", r.scenario, r.playbook);
    let _ = writeln!(
        s,
        "Live run {} against the local emulator {}: **{}** (exit {}), {} in all.\n",
        r.run_id,
        r.endpoint,
        r.status,
        r.exit_code,
        secs(r.total_ms).trim_start_matches('+')
    );
    let _ = writeln!(
        s,
        "Seeded: {} users, {} access keys, {} roles, {} instances, {} volumes, {} backup snapshots, {} trails.\n",
        r.seeded.users,
        r.seeded.access_keys,
        r.seeded.roles,
        r.seeded.instances.values().map(Vec::len).sum::<usize>(),
        r.seeded.volumes,
        r.seeded.snapshots,
        r.seeded.trails
    );
    let first = match r.first_containment_ms {
        Some(ms) => format!("{} ({})", secs(ms), r.first_containment),
        None => "never".into(),
    };
    let full = match r.full_containment_ms {
        Some(ms) => secs(ms),
        None => "not reached (see below)".into(),
    };
    let _ = writeln!(s, "- Time to first containment: {first}");
    let _ = writeln!(s, "- Time to full containment: {full}\n");
    let _ = writeln!(s, "## Timeline\n");
    let _ = writeln!(
        s,
        "| # | Step | Start | End | Calls | Throttled | Changed | Unchanged | Skipped | Failed | Status |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for t in &r.timeline {
        let _ = writeln!(
            s,
            "| {} | {} (`{}`) | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.index + 1,
            t.name,
            t.action,
            secs(t.start_ms),
            secs(t.end_ms),
            t.calls,
            t.throttled,
            t.changed,
            t.unchanged,
            t.skipped,
            t.failed,
            t.status
        );
    }
    if !r.attacker.is_empty() {
        let _ = writeln!(s, "\n## Attacker moves\n");
        for m in &r.attacker {
            let _ = writeln!(
                s,
                "- {} `{}` on {}: {} {}",
                secs(m.at_ms),
                m.action.id(),
                m.subject,
                if m.succeeded { "succeeded" } else { "failed" },
                m.detail
            );
        }
    }
    let _ = writeln!(s, "\n## Still exposed\n");
    if r.exposed.is_empty() {
        let _ = writeln!(s, "Nothing: every target reads back contained.");
    }
    for e in &r.exposed {
        let _ = writeln!(s, "- **{}**: {}", e.what, e.why);
    }
    if !r.emulator_notes.is_empty() {
        let _ = writeln!(s, "\n## The emulator is not AWS\n");
        for n in &r.emulator_notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    let _ = writeln!(s, "\n## Per resource\n");
    for t in &r.timeline {
        let items: Vec<&Outcome> = r.outcomes.iter().filter(|o| o.step == t.index).collect();
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(s, "### {}. {}\n", t.index + 1, t.name);
        for o in items {
            match &o.why {
                Some(w) => {
                    let _ = writeln!(s, "- {}: {} ({w})", o.target, o.outcome);
                }
                None => {
                    let _ = writeln!(s, "- {}: {}", o.target, o.outcome);
                }
            }
        }
        s.push('\n');
    }
    let _ = writeln!(s, "Audit log: `{}`", r.audit_log);
    s
}

/// At most `n` characters, with an ellipsis when cut (labels beside bars).
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One HTML page, no external assets: the timeline drawn in inline SVG.
pub fn html(r: &Report) -> String {
    let mut s = String::new();
    let title = esc(&format!("Tabletop: {} × {}", r.scenario, r.playbook));
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:72em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}\
         .exposed{{color:#a00}}svg text{{font-size:11px}}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(
        s,
        "<p>Run {} against {}: <strong>{}</strong> (exit {}).</p>",
        esc(&r.run_id),
        esc(&r.endpoint),
        esc(&r.status),
        r.exit_code
    );
    let _ = writeln!(
        s,
        "<ul><li>Time to first containment: {}</li><li>Time to full containment: {}</li></ul>",
        r.first_containment_ms
            .map(|ms| esc(&format!("{} ({})", secs(ms), r.first_containment)))
            .unwrap_or_else(|| "never".into()),
        r.full_containment_ms
            .map(secs)
            .unwrap_or_else(|| "not reached".into())
    );

    // The timeline: one bar per step, a red line per attacker move.
    let total = r
        .timeline
        .iter()
        .map(|t| t.end_ms)
        .chain(r.attacker.iter().map(|m| m.at_ms))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (left, width, row) = (330.0, 600.0, 22.0);
    let x = |ms: u64| left + width * ms as f64 / total;
    let height = row * (r.timeline.len() as f64 + 2.0);
    let _ = writeln!(
        s,
        "<h2>Timeline</h2>\n<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"timeline of steps and attacker moves\">",
        left + width + 20.0
    );
    for (n, t) in r.timeline.iter().enumerate() {
        let y = row * (n as f64 + 1.0);
        let colour = match t.status.as_str() {
            "done" => "#2a7",
            "failed" => "#d33",
            _ => "#999",
        };
        let _ = writeln!(
            s,
            "<text x=\"4\" y=\"{:.1}\">{}. {}</text><rect class=\"step\" data-step=\"{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}: {} to {}, {} calls, {} throttled</title></rect>",
            y + 14.0,
            t.index + 1,
            esc(&short(&t.name, 48)),
            t.index,
            x(t.start_ms),
            y + 3.0,
            (x(t.end_ms) - x(t.start_ms)).max(2.0),
            row - 6.0,
            esc(&t.name),
            secs(t.start_ms),
            secs(t.end_ms),
            t.calls,
            t.throttled
        );
    }
    for m in &r.attacker {
        let _ = writeln!(
            s,
            "<line class=\"move\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{height:.1}\" stroke=\"#c00\" stroke-dasharray=\"4 2\"><title>{2} {3} on {4}</title></line>",
            x(m.at_ms),
            row * 0.5,
            secs(m.at_ms),
            m.action.id(),
            esc(&m.subject)
        );
    }
    if let Some(ms) = r.first_containment_ms {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{height:.1}\" stroke=\"#06c\"><title>first containment {1}</title></line>",
            x(ms),
            secs(ms)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{:.1}\">0 s</text><text x=\"{:.1}\" y=\"{:.1}\">{}</text></svg>",
        height - 4.0,
        left + width - 40.0,
        height - 4.0,
        secs(total as u64)
    );

    let _ = writeln!(
        s,
        "<table><tr><th>#</th><th>Step</th><th>Start</th><th>End</th><th>Calls</th><th>Throttled</th><th>Changed</th><th>Failed</th><th>Status</th></tr>"
    );
    for t in &r.timeline {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.index + 1,
            esc(&t.name),
            secs(t.start_ms),
            secs(t.end_ms),
            t.calls,
            t.throttled,
            t.changed,
            t.failed,
            esc(&t.status)
        );
    }
    let _ = writeln!(s, "</table>");
    if !r.attacker.is_empty() {
        let _ = writeln!(s, "<h2>Attacker moves</h2><ul>");
        for m in &r.attacker {
            let _ = writeln!(
                s,
                "<li>{} <code>{}</code> on {}: {} {}</li>",
                secs(m.at_ms),
                m.action.id(),
                esc(&m.subject),
                if m.succeeded { "succeeded" } else { "failed" },
                esc(&m.detail)
            );
        }
        let _ = writeln!(s, "</ul>");
    }
    let _ = writeln!(s, "<h2>Still exposed</h2><ul class=\"exposed\">");
    if r.exposed.is_empty() {
        let _ = writeln!(s, "<li>Nothing: every target reads back contained.</li>");
    }
    for e in &r.exposed {
        let _ = writeln!(
            s,
            "<li><strong>{}</strong>: {}</li>",
            esc(&e.what),
            esc(&e.why)
        );
    }
    let _ = writeln!(s, "</ul>");
    if !r.emulator_notes.is_empty() {
        let _ = writeln!(s, "<h2>The emulator is not AWS</h2><ul>");
        for n in &r.emulator_notes {
            let _ = writeln!(s, "<li>{}</li>", esc(n));
        }
        let _ = writeln!(s, "</ul>");
    }
    let _ = writeln!(
        s,
        "<h2>Per resource</h2><table><tr><th>Step</th><th>Target</th><th>Outcome</th><th>Why</th></tr>"
    );
    for o in &r.outcomes {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            o.step + 1,
            esc(&o.target),
            esc(&o.outcome),
            esc(o.why.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(
        s,
        "</table>\n<p>Audit log: <code>{}</code></p>\n</body></html>",
        esc(&r.audit_log)
    );
    s
}
