//! Injected faults (aws-smithy-mocks) on the executor's real code path:
//! throttling is retried to success and never counted as done or as "nothing
//! found"; AccessDenied fails only its target; `on_failure` is honoured; and
//! the audit log stays verifiable throughout.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iam::config::retry::RetryConfig;
use aws_sdk_iam::error::ErrorMetadata;
use aws_sdk_iam::operation::list_access_keys::{ListAccessKeysError, ListAccessKeysOutput};
use aws_sdk_iam::operation::list_users::{ListUsersError, ListUsersOutput};
use aws_sdk_iam::operation::update_access_key::{UpdateAccessKeyError, UpdateAccessKeyOutput};
use aws_sdk_iam::types::{AccessKeyMetadata, StatusType, User};
use aws_smithy_mocks::{MockResponse, RuleMode, mock, mock_client};
use breakglass::actions::{Clients, Ctx};
use breakglass::audit::AuditLog;
use breakglass::aws::{Identity, RetryPolicy, Telemetry};
use breakglass::executor;
use breakglass::report::{Outcome, StepReport, StepStatus};
use breakglass::targets::Protection;

fn user(name: &str) -> User {
    User::builder()
        .user_name(name)
        .user_id(format!("AIDA{name}"))
        .arn(format!("arn:aws:iam::123456789012:user/{name}"))
        .path("/")
        .create_date(aws_sdk_iam::primitives::DateTime::from_secs(0))
        .build()
        .expect("user")
}

fn key_of(user: &str) -> String {
    format!("AKIA{}KEY0000000000", user.to_uppercase())
}

fn error(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

async fn ctx(iam: aws_sdk_iam::Client) -> Ctx {
    let factory = breakglass::aws::Factory::new(
        "us-east-1".into(),
        Default::default(),
        Duration::from_secs(5),
    )
    .await;
    Ctx {
        clients: Clients::with_iam(iam, Arc::new(factory)),
        identity: Identity::from_caller(
            "123456789012".into(),
            "arn:aws:iam::123456789012:user/ir/responder".into(),
            "AIDAR".into(),
            "AKIARESPONDER0000000".into(),
        ),
        protection: Protection::new(&[]),
        concurrency: 4,
        run_started: jiff::Timestamp::now(),
        retry: RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
        telemetry: Arc::new(Telemetry::default()),
        executor_arn: "arn:aws:iam::123456789012:user/ir/responder".into(),
        exempt: vec!["arn:aws:iam::123456789012:user/ir/responder".into()],
        member_exempt: None,
        regions: vec!["us-east-1".into()],
        check_permissions: false,
        permissions_only: false,
        run: Arc::default(),
        fleet: Arc::default(),
        audit_key: None,
    }
}

fn steps(on_failure: &str) -> Vec<breakglass::actions::BoundStep> {
    let text = format!(
        "name: t\nsteps:\n  - action: iam.deactivate_access_keys\n    targets: {{ users: {{ all: true }} }}\n    on_failure: {on_failure}\n  - action: iam.deactivate_access_keys\n    targets: {{ users: {{ all: true }} }}\n"
    );
    breakglass::playbook::parse_playbook("t.yaml", &text)
        .expect("valid")
        .bind(&[])
        .expect("bound")
}

/// ListAccessKeys for `user`: one active key.
fn one_active_key(user: &str) -> ListAccessKeysOutput {
    ListAccessKeysOutput::builder()
        .access_key_metadata(
            AccessKeyMetadata::builder()
                .user_name(user)
                .access_key_id(key_of(user))
                .status(StatusType::Active)
                .build(),
        )
        .build()
        .expect("out")
}

/// Users alice and bob with one active key each; ListUsers throttled once.
fn estate_rules(update: aws_smithy_mocks::Rule) -> Vec<aws_smithy_mocks::Rule> {
    let list_users = mock!(aws_sdk_iam::Client::list_users)
        .sequence()
        .error(|| ListUsersError::generic(error("Throttling", "Rate exceeded")))
        .output(|| {
            ListUsersOutput::builder()
                .users(user("alice"))
                .users(user("bob"))
                .build()
                .expect("out")
        })
        .repeatedly()
        .build();
    let list_keys = mock!(aws_sdk_iam::Client::list_access_keys)
        .then_compute_output(|req| one_active_key(req.user_name().unwrap_or_default()));
    vec![list_users, list_keys, update]
}

#[tokio::test]
async fn throttled_twice_then_success_is_changed() {
    let update = mock!(aws_sdk_iam::Client::update_access_key)
        .sequence()
        .error(|| UpdateAccessKeyError::generic(error("Throttling", "Rate exceeded")))
        .times(2)
        .output(|| UpdateAccessKeyOutput::builder().build())
        .repeatedly()
        .build();
    let rules = estate_rules(update);
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &rules, |c| c
        .retry_config(RetryConfig::disabled()));
    let ctx = ctx(iam).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = breakglass::audit::AuditKey::at(&dir.path().join("key")).expect("key");
    let log = AuditLog::create(&dir.path().join("a.jsonl"), "r", Arc::new(key)).expect("log");
    let opts = executor::Options {
        dry_run: false,
        audit: Some(&log),
        progress: None,
        interrupt: None,
    };
    let reports = executor::execute(&ctx, &steps("abort")[..1], &opts, |_| {})
        .await
        .expect("runs");
    let step = &reports[0];
    assert_eq!(step.status, StepStatus::Done, "{step:?}");
    assert_eq!(step.counts.changed, 2, "{step:?}");
    assert_eq!(step.counts.failed, 0);
    let t = ctx.telemetry.snapshot();
    assert_eq!(t.throttled, 3, "ListUsers once, UpdateAccessKey twice");
    assert_eq!(t.retries, 3);
}

#[tokio::test]
async fn throttling_that_never_ends_is_a_failure_not_a_success() {
    let update = mock!(aws_sdk_iam::Client::update_access_key)
        .then_error(|| UpdateAccessKeyError::generic(error("Throttling", "Rate exceeded")));
    let rules = estate_rules(update);
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &rules, |c| c
        .retry_config(RetryConfig::disabled()));
    let ctx = ctx(iam).await;
    let opts = executor::Options {
        dry_run: false,
        audit: None,
        progress: None,
        interrupt: None,
    };
    let reports = executor::execute(&ctx, &steps("abort")[..1], &opts, |_| {})
        .await
        .expect("runs");
    let step = &reports[0];
    assert_eq!(step.counts.failed, 2, "{step:?}");
    assert_eq!(step.counts.changed, 0);
    for item in &step.items {
        let e = item.error.as_ref().expect("error kept");
        assert_eq!(e.code.as_deref(), Some("Throttling"));
    }
}

async fn access_denied_for_bob(
    on_failure: &str,
) -> (Vec<StepReport>, std::path::PathBuf, tempfile::TempDir) {
    let update = mock!(aws_sdk_iam::Client::update_access_key).then_compute_response(|req| {
        if req.user_name() == Some("bob") {
            MockResponse::Error(UpdateAccessKeyError::generic(error(
                "AccessDenied",
                "not authorized",
            )))
        } else {
            MockResponse::Output(UpdateAccessKeyOutput::builder().build())
        }
    });
    let rules = estate_rules(update);
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &rules, |c| c
        .retry_config(RetryConfig::disabled()));
    let ctx = ctx(iam).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.jsonl");
    let key = breakglass::audit::AuditKey::at(&dir.path().join("key")).expect("key");
    let log = AuditLog::create(&path, "r", Arc::new(key)).expect("log");
    let opts = executor::Options {
        dry_run: false,
        audit: Some(&log),
        progress: None,
        interrupt: None,
    };
    let reports = executor::execute(&ctx, &steps(on_failure), &opts, |_| {})
        .await
        .expect("runs");
    (reports, path, dir)
}

#[tokio::test]
async fn access_denied_fails_its_target_and_abort_stops_the_run() {
    let (reports, path, _dir) = access_denied_for_bob("abort").await;
    let first = &reports[0];
    assert_eq!(first.status, StepStatus::Failed);
    let outcome = |u: &str| {
        first
            .items
            .iter()
            .find(|i| i.target.to_string().contains(&format!("user {u}")))
            .map(|i| i.outcome)
    };
    assert_eq!(outcome("alice"), Some(Outcome::Changed));
    assert_eq!(outcome("bob"), Some(Outcome::Failed));
    assert_eq!(reports[1].status, StepStatus::NotRun);
    // Every call announced in the log has its result, the failure included.
    let text = std::fs::read_to_string(&path).expect("log");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["record"].take())
        .collect();
    let intents: Vec<u64> = records
        .iter()
        .filter(|r| r["event"] == "intent")
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert_eq!(intents.len(), 2);
    for seq in intents {
        let result = records
            .iter()
            .find(|r| r["event"] == "result" && r["intent"] == seq)
            .expect("a result for every intent");
        assert!(result["outcome"] == "changed" || result["error"]["code"] == "AccessDenied");
    }
}

#[tokio::test]
async fn access_denied_with_continue_runs_the_next_step() {
    let (reports, _, _dir) = access_denied_for_bob("continue").await;
    assert_eq!(reports[0].status, StepStatus::Failed);
    assert_ne!(reports[1].status, StepStatus::NotRun);
    assert_eq!(reports[1].items.len(), 2);
}

#[tokio::test]
async fn a_target_whose_state_cannot_be_read_fails_alone() {
    // bob's keys cannot even be listed: bob is failed with the error, and
    // alice's key is still deactivated in the same step.
    let list_users = mock!(aws_sdk_iam::Client::list_users).then_output(|| {
        ListUsersOutput::builder()
            .users(user("alice"))
            .users(user("bob"))
            .build()
            .expect("out")
    });
    let list_keys = mock!(aws_sdk_iam::Client::list_access_keys).then_compute_response(|req| {
        let name = req.user_name().unwrap_or_default().to_string();
        if name == "bob" {
            return MockResponse::Error(ListAccessKeysError::generic(error(
                "AccessDenied",
                "not authorized to list bob's keys",
            )));
        }
        MockResponse::Output(one_active_key(&name))
    });
    let update = mock!(aws_sdk_iam::Client::update_access_key)
        .then_output(|| UpdateAccessKeyOutput::builder().build());
    let rules = vec![list_users, list_keys, update];
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &rules, |c| c
        .retry_config(RetryConfig::disabled()));
    let ctx = ctx(iam).await;
    let opts = executor::Options {
        dry_run: false,
        audit: None,
        progress: None,
        interrupt: None,
    };
    let reports = executor::execute(&ctx, &steps("continue"), &opts, |_| {})
        .await
        .expect("runs");
    let first = &reports[0];
    assert_eq!(first.status, StepStatus::Failed, "{first:?}");
    assert!(first.error.is_none(), "the step itself went on: {first:?}");
    let item = |u: &str| {
        first
            .items
            .iter()
            .find(|i| i.target.to_string().contains(u))
            .unwrap_or_else(|| panic!("{u} reported: {first:?}"))
    };
    assert_eq!(item("alice").outcome, Outcome::Changed);
    let bob = item("bob");
    assert_eq!(bob.outcome, Outcome::Failed);
    assert_eq!(
        bob.error.as_ref().and_then(|e| e.code.as_deref()),
        Some("AccessDenied")
    );
}
