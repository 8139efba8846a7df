//! Raw command-line flags (clap) and their validation into what the commands use.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::Error;
use crate::aws::credentials::Secret;
use crate::aws::{Connection, DEFAULT_PROFILE, Endpoint};
use crate::spec::{AccountsSpec, ExecutorSpec};

const EXIT_CODES: &str = "\
Exit codes:
  0  all done / contained
  1  some step failed or something stays uncontained (or the audit log does not verify,
     or readiness found a playbook that would not run)
  2  bad usage or invalid playbook; nothing was changed
  3  refused: identity mismatch, confirmation declined, safety rule";

/// The top-level help's ending: what to do first, then the exit codes.
const FIRST_STEPS: &str = "\
First steps:
  1. Put the break-glass credential in its own profile (~/.aws/config, `[profile breakglass]`),
     never in the environment: `breakglass whoami` shows who a run would be.
  2. `breakglass validate playbooks/*.yaml` checks playbooks without any AWS call.
  3. `breakglass plan PLAYBOOK` lists every call; `breakglass run PLAYBOOK --dry-run` asks AWS too.
  4. `breakglass tabletop PLAYBOOK --scenario SCENARIO` rehearses it against a local emulator.
  5. `breakglass readiness playbooks/*.yaml` on a schedule proves the path still works.
  Completions: `breakglass completions bash` (zsh, fish, powershell, elvish); manual: `breakglass man`.

Exit codes:
  0  all done / contained
  1  some step failed or something stays uncontained (or the audit log does not verify,
     or readiness found a playbook that would not run)
  2  bad usage or invalid playbook; nothing was changed
  3  refused: identity mismatch, confirmation declined, safety rule";

/// `0.1.0 (commit 1a2b3c4d5e6f, debug build)`: the version, and which build
/// of it this is.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BREAKGLASS_COMMIT"),
    ", ",
    env!("BREAKGLASS_PROFILE"),
    " build)"
);

/// Incident-response lockdown for AWS: run containment playbooks with an
/// out-of-band credential, an honest dry run and a tamper-evident audit log.
#[derive(Debug, Parser)]
#[command(name = "breakglass", version = VERSION, after_help = EXIT_CODES, after_long_help = FIRST_STEPS)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Named profile with the break-glass credential [default: executor.profile,
    /// else AWS_PROFILE, else `breakglass`]. Environment credentials are never
    /// used in its place.
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Region for API calls [default: AWS_REGION, else AWS_DEFAULT_REGION, else
    /// the profile's region, else us-east-1].
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// Send every call to this endpoint (an emulator, a VPC endpoint). Also read
    /// from AWS_ENDPOINT_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Output format: text for people, json (one document) for automation.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// AWS calls in flight at once in each throttling lane (an account's
    /// service in a region, reads and changes apart): a slow lane never
    /// holds a fast one's share.
    #[arg(long, global = true, default_value_t = 16, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=512))]
    pub concurrency: u16,
    /// How long one AWS call may take before it is abandoned and retried
    /// (a call that timed out counts as transient: it may have happened).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration,
          default_value = "30s")]
    pub call_timeout: std::time::Duration,
    /// The MFA code for the credential chain (`mfa_serial` of a profile, or
    /// `executor.assume_role`); `-` reads it from standard input, out of
    /// `ps` and the shell history [default: asked on the terminal].
    #[arg(long, global = true, value_name = "CODE|-")]
    pub mfa_code: Option<Secret>,
    /// No colors in diagnostics (also honours NO_COLOR).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Less: no line for a step that ended clean; what failed or is not
    /// contained is always shown (JSON output keeps every target).
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More: every target on a line of its own, with the call made for it
    /// [default: a line per step, and each target that failed or is not
    /// contained].
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    /// Run the playbook's IAM and EC2 steps across the organization, in place
    /// of its `accounts:`: comma-separated `all`, OU ids (ou-…), account ids,
    /// `!ID` to leave one out, `management` to include the management account.
    #[arg(long, global = true, value_name = "SELECTION", value_parser = parse_accounts)]
    pub accounts: Option<AccountsSpec>,
}

/// Global flags about reaching AWS: hidden from the help of the commands
/// that make no AWS call.
const AWS_FLAGS: &[&str] = &[
    "profile",
    "region",
    "endpoint_url",
    "concurrency",
    "call_timeout",
    "mfa_code",
    "accounts",
];
/// Commands that never reach AWS.
const LOCAL_COMMANDS: &[&str] = &[
    "validate",
    "schema",
    "actions",
    "version",
    "completions",
    "man",
];

/// The command line as shown and parsed: each command's help offers only
/// the global flags it uses (`tabletop` signs with its own executor against
/// its own emulator, so `--profile`, `--endpoint-url`, `--region`,
/// `--mfa-code` and `--call-timeout` are not offered there). The flags are still accepted everywhere, as global flags are.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    // A command that already holds a global flag keeps its own copy (clap
    // propagates only what is missing): the copy is the same flag, hidden.
    let hide = |names: &'static [&'static str]| {
        let globals = globals.clone();
        move |sub: clap::Command| {
            globals
                .iter()
                .filter(|a| names.contains(&a.get_id().as_str()))
                .fold(sub, |sub, a| sub.arg(a.clone().hide(true)))
        }
    };
    let mut cmd = cmd;
    for name in LOCAL_COMMANDS {
        cmd = cmd.mut_subcommand(name, hide(AWS_FLAGS));
    }
    cmd = cmd.mut_subcommand("audit", |audit| {
        audit.mut_subcommand("show", hide(AWS_FLAGS))
    });
    // The run a rollback undoes says which accounts it reached.
    for name in ["whoami", "rollback"] {
        cmd = cmd.mut_subcommand(name, hide(&["accounts"]));
    }
    cmd.mut_subcommand(
        "tabletop",
        hide(&[
            "profile",
            "endpoint_url",
            "region",
            "mfa_code",
            "call_timeout",
        ]),
    )
}

/// `all,!111122223333`, `ou-ab12-cdef3456`, `111122223333,444455556666,management`.
fn parse_accounts(s: &str) -> Result<AccountsSpec, String> {
    let mut spec = AccountsSpec::default();
    for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let id = |w: &str| w.len() == 12 && w.chars().all(|c| c.is_ascii_digit());
        match word {
            "all" => spec.all = true,
            "management" => spec.include_management = true,
            w if w.starts_with("ou-") => spec.ous.push(w.to_string()),
            w if id(w) => spec.ids.push(w.to_string()),
            w if w.strip_prefix('!').is_some_and(id) => spec.exclude.push(w[1..].to_string()),
            w => {
                return Err(format!(
                    "`{w}` is not `all`, `management`, an OU id (ou-…), a 12-digit account id or !ID"
                ));
            }
        }
    }
    if !spec.all && spec.ous.is_empty() && spec.ids.is_empty() && !spec.include_management {
        return Err(format!("`{s}` selects no account"));
    }
    Ok(spec)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check playbooks; makes no AWS call.
    Validate {
        /// Playbook files (YAML); all are checked, each problem at its line.
        #[arg(required = true, value_name = "PLAYBOOK")]
        playbooks: Vec<PathBuf>,
        /// Also check that these variables satisfy the playbook (K=V).
        #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// The files are tabletop scenarios, not playbooks.
        #[arg(long, conflicts_with = "vars")]
        scenario: bool,
    },
    /// Discover targets read-only and print every call a run would make.
    Plan {
        /// The playbook file (YAML).
        playbook: PathBuf,
        /// A playbook variable (`case_id=IR-42`), repeatable.
        #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Also ask AWS whether each call would be allowed (EC2 DryRun,
        /// iam:SimulatePrincipalPolicy for IAM and Organizations).
        #[arg(long)]
        check_permissions: bool,
    },
    /// Run a playbook: confirm the identity, then contain, step by step.
    Run {
        /// The playbook file (YAML).
        playbook: PathBuf,
        /// Read only: report what would change; the audit log is marked dry-run.
        #[arg(long)]
        dry_run: bool,
        /// Skip the typed confirmation (required without a terminal).
        #[arg(long)]
        yes: bool,
        /// A playbook variable (`case_id=IR-42`), repeatable.
        #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Where to write the audit log [default: breakglass-audit/run-<run id>.jsonl].
        /// Give it again as s3://bucket/prefix to also mirror every record to S3.
        #[arg(long, value_name = "PATH|s3://BUCKET/PREFIX")]
        audit_log: Vec<String>,
        /// The account that must own the mirror bucket (required with an
        /// s3:// audit log: every write carries ExpectedBucketOwner).
        #[arg(long, value_name = "ACCOUNT")]
        audit_bucket_owner: Option<String>,
        /// Write the S3 mirror with this profile (a forensic account's),
        /// instead of the break-glass credential.
        #[arg(long, value_name = "NAME")]
        audit_profile: Option<String>,
        /// Let a live run use endpoints set by AWS_ENDPOINT_URL* variables or
        /// the profile's endpoint_url (a stray setting must not send a
        /// lockdown, signed, somewhere unintended).
        #[arg(long)]
        allow_env_endpoint: bool,
        /// Skip the permission preflight a live run makes before confirmation.
        #[arg(long)]
        skip_preflight: bool,
        /// Skip reading every target back after a live run.
        #[arg(long)]
        no_verify: bool,
        /// After the run, keep verifying for this long and re-apply whatever
        /// drifted (an intruder re-enabling a key, say), until Ctrl-C. A dry
        /// run changes nothing, so it has nothing to hold: refused with it.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "dry_run")]
        hold: Option<std::time::Duration>,
        /// Do not hold, even when the playbook says `hold: true` (which
        /// holds until Ctrl-C or SIGTERM otherwise).
        #[arg(long, conflicts_with = "hold")]
        no_hold: bool,
        /// How often to check while holding.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "20s")]
        every: std::time::Duration,
    },
    /// Prove the break-glass path works today, read-only: the credential
    /// chain, identity pins, member roles, regions, permissions, quotas and
    /// the audit destination of each playbook (exit 1 if one would not run).
    Readiness {
        /// Playbook files (YAML); each is checked as written.
        #[arg(required = true, value_name = "PLAYBOOK")]
        playbooks: Vec<PathBuf>,
        /// A playbook variable (`case_id=IR-42`), repeatable.
        #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// The hold a run would keep (`run --hold`): each session must last
        /// that long, or renew without a person.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        hold: Option<std::time::Duration>,
        /// The audit destinations a run would use (as `run --audit-log`):
        /// the path must be writable, the s3:// mirror reachable.
        #[arg(long, value_name = "PATH|s3://BUCKET/PREFIX")]
        audit_log: Vec<String>,
        /// The account that must own the mirror bucket (with an s3:// audit log).
        #[arg(long, value_name = "ACCOUNT")]
        audit_bucket_owner: Option<String>,
    },
    /// Read state back: is each target of each step contained? (exit 1 if not)
    Verify {
        /// The playbook file (YAML).
        playbook: PathBuf,
        /// A playbook variable (`case_id=IR-42`), repeatable.
        #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Undo the reversible changes a run recorded, latest first.
    Rollback {
        /// The run's audit log (verified first: a broken chain refuses).
        path: PathBuf,
        /// Let the rollback use endpoints set by AWS_ENDPOINT_URL* variables
        /// or the profile (it connects to the run's own endpoint otherwise).
        #[arg(long)]
        allow_env_endpoint: bool,
        /// Show what would be undone; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Skip the typed confirmation (required without a terminal).
        #[arg(long)]
        yes: bool,
        /// Only undo the changes of the step with this name (repeatable).
        #[arg(long = "step", value_name = "NAME")]
        steps: Vec<String>,
        /// Also turn deactivated access keys back on (a compromised key should
        /// usually stay dead).
        #[arg(long)]
        reactivate_keys: bool,
        /// Undo even where someone changed the resource since the run.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        trust: TrustArgs,
        /// Where to write the rollback's own audit log
        /// [default: breakglass-audit/rollback-<run id>.jsonl].
        #[arg(long, value_name = "PATH")]
        audit_log: Option<PathBuf>,
    },
    /// Rehearse: start a local emulator, seed it from a scenario, run the
    /// playbook live against it while the attacker moves, and report.
    Tabletop {
        /// The playbook file (YAML).
        playbook: PathBuf,
        /// The compromised estate and the attacker's moves (YAML).
        #[arg(long, value_name = "FILE")]
        scenario: PathBuf,
        /// Write the report as PATH.md and PATH.html
        /// [default: breakglass-audit/tabletop-<run id>].
        #[arg(long, value_name = "PATH")]
        report: Option<PathBuf>,
        /// Leave the emulator running afterwards and print its endpoint.
        #[arg(long)]
        keep: bool,
        /// A playbook variable (`case_id=IR-42`), repeatable.
        #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Hold the line after the run (exercises `run --hold`).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        hold: Option<std::time::Duration>,
        /// How often to check while holding.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
        every: std::time::Duration,
        /// Check the playbook's readiness on the seeded estate instead of
        /// running it (a scenario can break it: a deleted member role, a
        /// full root).
        #[arg(long, conflicts_with_all = ["hold", "report", "keep"])]
        readiness: bool,
    },
    /// Check or read an audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show the identity and endpoint a run would use.
    Whoami,
    /// List the action catalog with parameters and reversibility.
    Actions,
    /// Print the JSON Schema of the playbook format (`--scenario` for the
    /// tabletop scenario format, `--report` for the run report).
    Schema {
        /// The tabletop scenario format, not the playbook format.
        #[arg(long)]
        scenario: bool,
        /// The run report's format (`run -o json`, dry runs included), not
        /// the playbook format.
        #[arg(long, conflicts_with = "scenario")]
        report: bool,
    },
    /// Print the version, the commit and the build profile.
    Version,
    /// Print a shell completion script: `breakglass completions bash >
    /// ~/.local/share/bash-completion/completions/breakglass`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `breakglass man | man -l -`.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain, every record's signature and that the run
    /// ended (exit 1 if not; exit 2 for a file that is no audit log).
    Verify {
        /// The audit log (JSON lines) of a run, rollback or tabletop.
        path: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        /// Also compare the log with its S3 mirror, record by record.
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        against: Option<String>,
        /// The account that owns the mirror bucket (ExpectedBucketOwner).
        #[arg(long, value_name = "ACCOUNT", requires = "against")]
        bucket_owner: Option<String>,
    },
    /// Print a run's timeline.
    Show {
        /// The audit log (JSON lines) of a run, rollback or tabletop.
        path: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
}

/// Whose signature a log must carry.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// Trust logs signed by this public key (hex, as a run prints it)
    /// [default: this machine's audit key].
    #[arg(long = "key", value_name = "PUBLIC_KEY")]
    pub key: Option<String>,
    /// The head hash the run printed at its end, kept elsewhere: the log
    /// must end with it.
    #[arg(long, value_name = "HASH")]
    pub expect_head: Option<String>,
}

impl TrustArgs {
    pub fn trust(&self) -> crate::audit::Trust {
        match &self.key {
            Some(k) => crate::audit::Trust::Key(k.clone()),
            None => crate::audit::Trust::Local,
        }
    }
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected K=V, found `{s}`")),
    }
}

/// `30m`, `20s`, `1h 30m` (or ISO 8601 `PT20S`).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    // A bare number has no unit to guess: say which to add, not the
    // duration library's own words.
    if s.chars().any(|c| c.is_ascii_digit()) && s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("`{s}` has no unit: write {s}s, {s}m or {s}h"));
    }
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 30s, 5m or 1h 30m"))?;
    let d = std::time::Duration::try_from(d).map_err(|_| format!("`{s}` is negative"))?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("`{s}` is shorter than a second"));
    }
    Ok(d)
}

impl GlobalArgs {
    /// Profile, region and endpoint, each with where it came from. The
    /// profile is `--profile`, else the playbook's `executor.profile`, else
    /// `AWS_PROFILE`, else `breakglass`; the region `--region`, else
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION` (else the profile's own, read
    /// when connecting).
    pub fn connection(&self, executor: Option<&ExecutorSpec>) -> Result<Connection, Error> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let (profile, profile_source) =
            match (&self.profile, executor.and_then(|e| e.profile.clone())) {
                (Some(p), _) => (p.clone(), "--profile".to_string()),
                (None, Some(p)) => (p, "executor.profile".to_string()),
                (None, None) => match env("AWS_PROFILE") {
                    Some(p) => (p, "AWS_PROFILE".to_string()),
                    None => (
                        DEFAULT_PROFILE.to_string(),
                        "the default profile name".to_string(),
                    ),
                },
            };
        let region = match &self.region {
            Some(r) => Some((r.clone(), "--region".to_string())),
            None => ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .find_map(|k| env(k).map(|r| (r, k.to_string()))),
        };
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::Usage {
                flag: "--endpoint-url".into(),
                message: format!("`{url}` is not an http(s) URL"),
            });
        }
        Ok(Connection {
            profile,
            profile_source,
            region,
            endpoint_flag: self.endpoint_url.as_ref().map(|url| Endpoint {
                url: url.clone(),
                source: "--endpoint-url".into(),
            }),
            allow_implicit_endpoints: true,
            call_timeout: self.call_timeout,
            assume: None,
            session_name: String::new(),
            mfa_code: self.mfa_code()?,
        })
    }

    /// `--mfa-code`, or a line of standard input for `--mfa-code -` (so the
    /// code shows in neither `ps` nor the shell history).
    fn mfa_code(&self) -> Result<Option<Secret>, Error> {
        match self.mfa_code.as_ref().map(Secret::expose) {
            Some("-") => {
                // Read once: a command that connects more than once (readiness
                // over several playbooks) gets the same code each time.
                static READ: std::sync::OnceLock<Result<String, String>> =
                    std::sync::OnceLock::new();
                let read = READ.get_or_init(|| {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map(|_| line.trim().to_string())
                        .map_err(|e| e.to_string())
                });
                let code = read.clone().map_err(|e| Error::Usage {
                    flag: "--mfa-code -".into(),
                    message: format!("cannot read the code from standard input: {e}"),
                })?;
                if code.is_empty() {
                    return Err(Error::Usage {
                        flag: "--mfa-code -".into(),
                        message: "standard input held no code".into(),
                    });
                }
                Ok(Some(Secret::new(code)))
            }
            Some(c) => Ok(Some(Secret::new(c.trim()))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_selection_survives_the_round_trip_through_the_flag() {
        let spec = parse_accounts("all, ou-ab12-cdef3456,111122223333,!444455556666,management")
            .expect("valid");
        assert!(spec.all && spec.include_management);
        assert_eq!(spec.ous, ["ou-ab12-cdef3456"]);
        assert_eq!(spec.ids, ["111122223333"]);
        assert_eq!(spec.exclude, ["444455556666"]);
        assert_eq!(parse_accounts(&spec.to_flag()), Ok(spec));
    }

    #[test]
    fn an_accounts_flag_that_selects_nothing_is_refused() {
        assert!(parse_accounts("!111122223333").is_err());
        assert!(parse_accounts("ou-x,1234").is_err());
        assert!(parse_accounts("").is_err());
    }
}
