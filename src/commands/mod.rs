//! One module per command (run, plan and verify, rollback, the audit
//! commands), and the stages `run` is built from: load, connect, build the
//! context, preflight, confirm, execute, hold, read back, record.

mod context;
mod hold;
mod inspect;
mod load;
mod preflight;
mod read_only;
mod readiness;
mod record;
mod rollback;
mod run;
mod session;

use self::inspect::{audit_show, audit_verify, whoami};
use self::load::validate;
use self::read_only::{plan, verify};
use self::readiness::{ReadinessRequest, readiness};
use self::rollback::{RollbackRequest, rollback};
use self::run::{RunRequest, run};
use crate::actions::ActionKind;
use crate::cli::{AuditCommand, Cli, Command, OutputFormat};
use crate::error::{Error, ExitCode};
use crate::playbook::{self, Problems};
use crate::render::{Detail, Printer};

/// Writes generated text to standard output; a reader that went away
/// (`breakglass man | head`) is not an error worth a panic.
fn emit(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// The manual: the top-level page, then one section per command with its
/// own flags (clap_mangen refers to them as `breakglass-run(1)` and so on).
fn manual() -> Vec<u8> {
    let cli = crate::cli::command();
    let mut out = Vec::new();
    // Rendering into memory has no I/O to fail.
    let _ = clap_mangen::Man::new(cli.clone()).render(&mut out);
    for sub in cli.get_subcommands() {
        let page = sub
            .clone()
            .display_name(format!("breakglass-{}", sub.get_name()))
            .version(crate::cli::VERSION);
        let _ = clap_mangen::Man::new(page).render(&mut out);
    }
    out
}

/// Runs the parsed command line and returns the exit code.
pub async fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    let detail = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => Detail::Quiet,
        (_, true) => Detail::Every,
        _ => Detail::Summary,
    };
    let out = Printer::new(cli.global.output, detail, cli.global.no_color);
    match &cli.command {
        Command::Validate {
            playbooks,
            vars,
            scenario,
        } => validate(&out, playbooks, vars, *scenario),
        Command::Plan {
            playbook,
            vars,
            check_permissions,
        } => plan(&cli.global, &out, playbook, vars, *check_permissions).await,
        Command::Run {
            playbook,
            dry_run,
            yes,
            vars,
            audit_log,
            audit_bucket_owner,
            audit_profile,
            allow_env_endpoint,
            skip_preflight,
            no_verify,
            hold,
            no_hold,
            every,
        } => {
            let req = RunRequest {
                playbook,
                dry_run: *dry_run,
                yes: *yes,
                vars,
                audit_log,
                audit_bucket_owner: audit_bucket_owner.as_deref(),
                audit_profile: audit_profile.as_deref(),
                allow_env_endpoint: *allow_env_endpoint,
                skip_preflight: *skip_preflight,
                no_verify: *no_verify,
                hold: *hold,
                no_hold: *no_hold,
                every: *every,
            };
            run(&cli.global, &out, req).await
        }
        Command::Readiness {
            playbooks,
            vars,
            hold,
            audit_log,
            audit_bucket_owner,
        } => {
            let req = ReadinessRequest {
                playbooks,
                vars,
                hold: *hold,
                audit_log,
                audit_bucket_owner: audit_bucket_owner.as_deref(),
            };
            readiness(&cli.global, &out, req).await
        }
        Command::Verify { playbook, vars } => verify(&cli.global, &out, playbook, vars).await,
        Command::Rollback {
            path,
            allow_env_endpoint,
            trust,
            dry_run,
            yes,
            steps,
            reactivate_keys,
            force,
            audit_log,
        } => {
            let req = RollbackRequest {
                path,
                trust,
                allow_env_endpoint: *allow_env_endpoint,
                dry_run: *dry_run,
                yes: *yes,
                force: *force,
                audit_log: audit_log.as_deref(),
                choices: crate::rollback::Choices {
                    reactivate_keys: *reactivate_keys,
                    steps: steps.clone(),
                },
            };
            rollback(&cli.global, &out, req).await
        }
        Command::Audit(AuditCommand::Verify {
            path,
            trust,
            against,
            bucket_owner,
        }) => {
            audit_verify(
                &cli.global,
                &out,
                path,
                trust,
                against.as_deref(),
                bucket_owner.as_deref(),
            )
            .await
        }
        Command::Audit(AuditCommand::Show { path, trust }) => audit_show(&out, path, trust),
        Command::Whoami => whoami(&cli.global, &out).await,
        Command::Actions => {
            out.actions(ActionKind::ALL);
            Ok(ExitCode::Success)
        }
        Command::Version => {
            emit(format!("breakglass {}\n", crate::cli::VERSION).as_bytes());
            Ok(ExitCode::Success)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(
                *shell,
                &mut crate::cli::command(),
                "breakglass",
                &mut script,
            );
            emit(&script);
            Ok(ExitCode::Success)
        }
        Command::Man => {
            emit(&manual());
            Ok(ExitCode::Success)
        }
        Command::Schema { scenario, report } => {
            out.json(&if *scenario {
                crate::tabletop::scenario::schema()
            } else if *report {
                crate::render::report_schema()
            } else {
                playbook::schema::playbook_schema()
            });
            Ok(ExitCode::Success)
        }
        Command::Tabletop {
            playbook,
            scenario,
            report,
            keep,
            vars,
            hold,
            every,
            readiness,
        } => {
            let req = crate::tabletop::Request {
                readiness: *readiness,
                playbook,
                scenario,
                report: report.as_deref(),
                keep: *keep,
                vars,
                hold: *hold,
                every: *every,
            };
            crate::tabletop::tabletop(&cli.global, &out, req).await
        }
    }
}

/// Renders an error for the chosen output format; returns its exit code.
pub fn report_error(format: OutputFormat, err: Error) -> ExitCode {
    let code = err.exit_code();
    match format {
        OutputFormat::Json => {
            let problems = match &err {
                Error::InvalidPlaybook(Problems(p)) => serde_json::to_value(p).ok(),
                _ => None,
            };
            let doc = serde_json::json!({
                "error": err.to_string(),
                "exit_code": code as i32,
                "problems": problems,
            });
            outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Text => match err {
            Error::InvalidPlaybook(problems) => errln!("{problems}"),
            other => {
                // The message and help may quote AWS or a log: cleaned before
                // miette adds its own colours, which must stay colours.
                let shown = Cleaned {
                    message: crate::output::clean(&other.to_string()).into_owned(),
                    code: miette::Diagnostic::code(&other).map(|c| c.to_string()),
                    help: other.help().map(|h| crate::output::clean(&h).into_owned()),
                };
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr().lock(), "{:?}", miette::Report::new(shown));
            }
        },
    }
    code
}

/// An error as shown: its text already cleaned of terminal controls.
#[derive(Debug)]
pub(super) struct Cleaned {
    pub(super) message: String,
    pub(super) code: Option<String>,
    pub(super) help: Option<String>,
}

impl std::fmt::Display for Cleaned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cleaned {}

impl miette::Diagnostic for Cleaned {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.code
            .as_ref()
            .map(|c| Box::new(c) as Box<dyn std::fmt::Display>)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
}
