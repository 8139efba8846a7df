//! Test harness: a moto server per test on a loopback port of its own, a profile
//! directory holding the executor's dummy credential, SDK clients to seed and
//! read back state, and the `breakglass` binary wired to all of them.

#![allow(dead_code)]

pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};

/// A moto server on 127.0.0.1, killed on drop. It picks its own port (the
/// library's launcher reads it back), so two tests never share a server.
pub struct Moto {
    server: breakglass::tabletop::emulator::Emulator,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let exe = moto_server();
        let server = breakglass::tabletop::emulator::Emulator::launch(&exe, &[])
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        Moto {
            port: server.port,
            server,
        }
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }
}

pub fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("BREAKGLASS_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server")
}

/// IAM client signing with `key` (moto accepts any secret for unknown keys).
pub fn iam_client(endpoint: &str, key: &str, secret: &str) -> aws_sdk_iam::Client {
    let conf = aws_sdk_iam::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        .retry_config(seeding_retries())
        .timeout_config(seeding_timeouts())
        .build();
    aws_sdk_iam::Client::from_conf(conf)
}

/// Seeding must not fail on a loaded machine: moto is single-threaded and
/// slow to answer its first call of each service.
fn seeding_retries() -> aws_sdk_iam::config::retry::RetryConfig {
    aws_sdk_iam::config::retry::RetryConfig::standard().with_max_attempts(6)
}

fn seeding_timeouts() -> aws_sdk_iam::config::timeout::TimeoutConfig {
    aws_sdk_iam::config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .operation_attempt_timeout(std::time::Duration::from_secs(60))
        .build()
}

/// An account seeded through the SDK, with the executor's profile on disk.
pub struct Estate {
    pub moto: Moto,
    /// Admin client (moto's default root-ish identity).
    pub iam: aws_sdk_iam::Client,
    pub dir: tempfile::TempDir,
    pub executor_user: String,
    pub executor_key: String,
    pub executor_secret: String,
    /// When set, the binary talks to moto through this proxy.
    pub proxy: Option<proxy::Proxy>,
}

pub const ADMIN_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// Every session token moto's STS issues starts with this (moto/sts/utils.py).
pub const MOTO_SESSION_TOKEN_PREFIX: &str = "FQoGZXIvYXdzEBYaD";

impl Estate {
    /// A moto server with an executor user `ir-responder` (path /ir/) whose key
    /// is written to the `breakglass` profile.
    pub async fn new() -> Estate {
        let moto = Moto::start();
        let iam = iam_client(&moto.endpoint(), ADMIN_KEY, "admin-secret");
        iam.create_user()
            .user_name("ir-responder")
            .path("/ir/")
            .send()
            .await
            .expect("create executor");
        let key = iam
            .create_access_key()
            .user_name("ir-responder")
            .send()
            .await
            .expect("executor key");
        let key = key.access_key().expect("key");
        iam.create_login_profile()
            .user_name("ir-responder")
            .password("Resp0nder!Pass")
            .send()
            .await
            .expect("executor login");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut estate = Estate {
            moto,
            iam,
            dir,
            executor_user: "ir-responder".into(),
            executor_key: key.access_key_id().to_string(),
            executor_secret: key.secret_access_key().to_string(),
            proxy: None,
        };
        estate.with_proxy();
        estate.write_profile("breakglass", &estate.executor_key, &estate.executor_secret);
        estate
    }

    pub fn write_profile(&self, name: &str, key: &str, secret: &str) {
        let creds = self.dir.path().join("credentials");
        let mut text = std::fs::read_to_string(&creds).unwrap_or_default();
        text.push_str(&format!(
            "[{name}]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
        ));
        std::fs::write(&creds, text).expect("write credentials");
        let config = self.dir.path().join("config");
        let mut text = std::fs::read_to_string(&config).unwrap_or_default();
        text.push_str(&format!("[profile {name}]\nregion = us-east-1\n"));
        std::fs::write(&config, text).expect("write config");
    }

    /// Appends raw text to the AWS config file (profiles of any kind).
    pub fn add_config(&self, text: &str) {
        let config = self.dir.path().join("config");
        let mut all = std::fs::read_to_string(&config).unwrap_or_default();
        all.push_str(text);
        std::fs::write(&config, all).expect("write config");
    }

    /// Creates a user with one active key and a console password; returns the key id.
    pub async fn user_with_key(&self, name: &str) -> String {
        user_with_key(&self.iam, name).await
    }

    pub async fn add_key(&self, user: &str) -> String {
        add_key(&self.iam, user).await
    }

    pub async fn role(&self, name: &str, path: &str) {
        self.iam
            .create_role()
            .role_name(name)
            .path(path)
            .assume_role_policy_document("{}")
            .send()
            .await
            .expect("create role");
    }

    pub async fn key_status(&self, user: &str, key: &str) -> String {
        key_status(&self.iam, user, key).await
    }

    pub async fn has_login_profile(&self, user: &str) -> bool {
        has_login_profile(&self.iam, user).await
    }

    /// The inline policy document of a user or role, parsed, if present.
    pub async fn inline_policy(
        &self,
        kind: &str,
        name: &str,
        policy: &str,
    ) -> Option<serde_json::Value> {
        let doc = match kind {
            "user" => self
                .iam
                .get_user_policy()
                .user_name(name)
                .policy_name(policy)
                .send()
                .await
                .ok()?
                .policy_document()
                .to_string(),
            _ => self
                .iam
                .get_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send()
                .await
                .ok()?
                .policy_document()
                .to_string(),
        };
        let decoded = if doc.starts_with('{') {
            doc
        } else {
            percent_decode(&doc)
        };
        Some(serde_json::from_str(&decoded).expect("policy is JSON"))
    }

    /// The binary, wired to this estate's profile files and endpoint, with no
    /// stray AWS variables from the outer environment.
    pub fn cmd(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.std_cmd())
    }

    /// The binary with the estate's profile and endpoint, as a plain process
    /// (for tests that signal it while it runs).
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("breakglass"));
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env(
            "AWS_SHARED_CREDENTIALS_FILE",
            self.dir.path().join("credentials"),
        )
        .env("AWS_CONFIG_FILE", self.dir.path().join("config"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        // Nothing of the real home (an SSO token cache, ~/.aws) is read.
        .env("HOME", self.dir.path())
        .arg("--endpoint-url")
        .arg(
            self.proxy
                .as_ref()
                .map(|p| p.endpoint())
                .unwrap_or_else(|| self.moto.endpoint()),
        )
        .current_dir(self.dir.path());
        cmd
    }

    /// The proxy the binary talks to moto through: it answers what moto
    /// lacks (snapshot locks, permission simulation) and injects faults.
    pub fn with_proxy(&mut self) -> &proxy::Proxy {
        let port = self.moto.port;
        self.proxy.get_or_insert_with(|| proxy::Proxy::start(port))
    }

    pub fn proxy(&self) -> &proxy::Proxy {
        self.proxy
            .as_ref()
            .expect("the harness always starts the proxy")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf8")
}

/// `args` with `-v` in front, unless they choose a verbosity themselves.
fn with_every_target<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let chosen = ["-v", "-q", "--verbose", "--quiet"];
    let mut all = Vec::with_capacity(args.len() + 1);
    if !args.iter().any(|a| chosen.contains(a)) {
        all.push("-v");
    }
    all.extend_from_slice(args);
    all
}

/// Output of a finished command, for assertions and secret checks.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Estate {
    /// Runs the binary and checks that no secret of the executor leaked to
    /// its output. With `-v` unless the test says `-q` or `-v` itself: the
    /// tests read the line of each target, which the default text leaves out.
    pub fn run(&self, args: &[&str]) -> Ran {
        self.run_as_typed(&with_every_target(args))
    }

    /// Runs the binary with exactly these arguments (see [`Estate::run`]).
    pub fn run_as_typed(&self, args: &[&str]) -> Ran {
        let out = self
            .cmd()
            .args(args)
            .write_stdin("")
            .output()
            .expect("run binary");
        let ran = Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.assert_no_secret_in(&ran.stdout, "stdout");
        self.assert_no_secret_in(&ran.stderr, "stderr");
        self.assert_no_secret_in_files();
        ran
    }

    /// Runs the binary with extra variables and standard input, checking
    /// for leaked secrets as [`Estate::run`] does.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Ran {
        let mut cmd = self.cmd();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .args(with_every_target(args))
            .write_stdin(stdin.to_string())
            .output()
            .expect("run binary");
        let ran = Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.assert_no_secret_in(&ran.stdout, "stdout");
        self.assert_no_secret_in(&ran.stderr, "stderr");
        self.assert_no_secret_in_files();
        ran
    }

    /// The binary without `--endpoint-url`: only for commands that find
    /// their endpoint elsewhere (a rollback's audit log, a variable in
    /// `env`) or refuse before sending anything. No test may reach AWS.
    pub fn run_without_endpoint(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let std = self.std_cmd();
        let mut cmd = std::process::Command::new(std.get_program());
        for (k, v) in std.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.current_dir(self.dir.path()).args(args);
        let out = cmd.stdin(Stdio::null()).output().expect("run binary");
        let ran = Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.assert_no_secret_in(&ran.stdout, "stdout");
        self.assert_no_secret_in(&ran.stderr, "stderr");
        ran
    }

    /// The secret checks of [`Estate::run`] for a process a test ran itself.
    pub fn assert_no_secret_leaked(&self, out: &std::process::Output) {
        self.assert_no_secret_in(&String::from_utf8_lossy(&out.stdout), "stdout");
        self.assert_no_secret_in(&String::from_utf8_lossy(&out.stderr), "stderr");
        self.assert_no_secret_in_files();
    }

    /// Neither the executor's secret key nor any session token moto issued
    /// (they all start with the same prefix) appears in `text`.
    pub fn assert_no_secret_in(&self, text: &str, what: &str) {
        assert!(
            !text.contains(&self.executor_secret),
            "the executor's secret key leaked into {what}"
        );
        assert!(
            !text.contains(MOTO_SESSION_TOKEN_PREFIX),
            "a session token leaked into {what}"
        );
    }

    /// No audit log or report the binary wrote (anywhere under the estate's
    /// directory) holds the executor's secret key.
    pub fn assert_no_secret_in_files(&self) {
        let mut dirs = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.file_name().is_some_and(|n| n != "credentials")
                    && let Ok(text) = std::fs::read(&path)
                {
                    self.assert_no_secret_in(
                        &String::from_utf8_lossy(&text),
                        &path.display().to_string(),
                    );
                }
            }
        }
    }
}

/// Writes a playbook into the estate's directory.
pub fn playbook(estate: &Estate, name: &str, text: &str) -> PathBuf {
    let p = estate.path(name);
    std::fs::write(&p, text).expect("write playbook");
    p
}

pub fn repo_playbook(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("playbooks")
        .join(name)
}

/// The shipped flagship's steps over `regions` only, written into `dir`:
/// `regions: all` would walk every region moto lists, and a run of many
/// (a crash test, a benchmark) measures the same steps over fewer. Run it
/// with `--no-hold`: the flagship holds until stopped.
#[allow(dead_code)] // not every test binary uses it
pub fn flagship_over(dir: &Path, regions: &[&str]) -> PathBuf {
    let shipped = std::fs::read_to_string(repo_playbook("full-lockdown.yaml")).expect("flagship");
    assert!(
        shipped.contains("\nregions: all\n") && shipped.contains("\nhold: true\n"),
        "the flagship covers every region and holds"
    );
    let pinned = format!("\nregions: [{}]\n", regions.join(", "));
    let pb = dir.join("full-lockdown.yaml");
    std::fs::write(&pb, shipped.replace("\nregions: all\n", &pinned)).expect("playbook");
    pb
}

impl Estate {
    /// An EC2 client for `region`, as the seeding admin.
    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(region.to_string()))
            .endpoint_url(self.moto.endpoint())
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                ADMIN_KEY,
                "admin-secret",
                None,
                None,
                "test",
            ))
            .retry_config(seeding_retries())
            .timeout_config(seeding_timeouts())
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    }

    /// A CloudTrail client for `region`, as the seeding admin.
    pub fn cloudtrail(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        let conf = aws_sdk_cloudtrail::Config::builder()
            .behavior_version(aws_sdk_cloudtrail::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudtrail::config::Region::new(region.to_string()))
            .endpoint_url(self.moto.endpoint())
            .credentials_provider(aws_sdk_cloudtrail::config::Credentials::new(
                ADMIN_KEY,
                "admin-secret",
                None,
                None,
                "test",
            ))
            .retry_config(seeding_retries())
            .timeout_config(seeding_timeouts())
            .build();
        aws_sdk_cloudtrail::Client::from_conf(conf)
    }

    /// An AWS Backup client for `region`, as the seeding admin.
    pub fn backup(&self, region: &str) -> aws_sdk_backup::Client {
        let conf = aws_sdk_backup::Config::builder()
            .behavior_version(aws_sdk_backup::config::BehaviorVersion::latest())
            .region(aws_sdk_backup::config::Region::new(region.to_string()))
            .endpoint_url(self.moto.endpoint())
            .credentials_provider(aws_sdk_backup::config::Credentials::new(
                ADMIN_KEY,
                "admin-secret",
                None,
                None,
                "test",
            ))
            .retry_config(seeding_retries())
            .timeout_config(seeding_timeouts())
            .build();
        aws_sdk_backup::Client::from_conf(conf)
    }

    /// Vault `name`'s minimum retention if it is locked.
    pub async fn vault_lock(&self, region: &str, name: &str) -> Option<i64> {
        let out = self
            .backup(region)
            .describe_backup_vault()
            .backup_vault_name(name)
            .send()
            .await;
        let out = out.expect("vault");
        (out.locked() == Some(true)).then(|| out.min_retention_days().unwrap_or(0))
    }

    /// An IAM Identity Center admin client in us-east-1, as the seeding admin.
    pub fn sso_admin(&self) -> aws_sdk_ssoadmin::Client {
        self.sso_admin_at(&self.moto.endpoint())
    }

    /// The same, through `endpoint` (the proxy, to change what it tracks).
    pub fn sso_admin_at(&self, endpoint: &str) -> aws_sdk_ssoadmin::Client {
        let conf = aws_sdk_ssoadmin::Config::builder()
            .behavior_version(aws_sdk_ssoadmin::config::BehaviorVersion::latest())
            .region(aws_sdk_ssoadmin::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_ssoadmin::config::Credentials::new(
                ADMIN_KEY,
                "admin-secret",
                None,
                None,
                "test",
            ))
            .retry_config(seeding_retries())
            .timeout_config(seeding_timeouts())
            .build();
        aws_sdk_ssoadmin::Client::from_conf(conf)
    }

    /// An Identity Store client in us-east-1, as the seeding admin.
    pub fn identitystore(&self) -> aws_sdk_identitystore::Client {
        let conf = aws_sdk_identitystore::Config::builder()
            .behavior_version(aws_sdk_identitystore::config::BehaviorVersion::latest())
            .region(aws_sdk_identitystore::config::Region::new("us-east-1"))
            .endpoint_url(self.moto.endpoint())
            .credentials_provider(aws_sdk_identitystore::config::Credentials::new(
                ADMIN_KEY,
                "admin-secret",
                None,
                None,
                "test",
            ))
            .retry_config(seeding_retries())
            .timeout_config(seeding_timeouts())
            .build();
        aws_sdk_identitystore::Client::from_conf(conf)
    }

    /// A KMS client for `region`, as the seeding admin.
    pub fn kms(&self, region: &str) -> aws_sdk_kms::Client {
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new(region.to_string()))
            .endpoint_url(self.moto.endpoint())
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                ADMIN_KEY,
                "admin-secret",
                None,
                None,
                "test",
            ))
            .retry_config(seeding_retries())
            .timeout_config(seeding_timeouts())
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    }

    /// The state of KMS key `id` in `region` (`Enabled`, `PendingDeletion`…).
    pub async fn key_state(&self, region: &str, id: &str) -> String {
        let out = self.kms(region).describe_key().key_id(id).send().await;
        let out = out.expect("describe key");
        let meta = out.key_metadata().expect("metadata");
        meta.key_state().expect("state").as_str().to_string()
    }

    /// Whether trail `name` (homed in `region`) is logging.
    pub async fn trail_logging(&self, region: &str, name: &str) -> bool {
        let status = self
            .cloudtrail(region)
            .get_trail_status()
            .name(name)
            .send()
            .await;
        status.expect("trail status").is_logging() == Some(true)
    }

    pub fn org(&self) -> aws_sdk_organizations::Client {
        let conf = aws_sdk_organizations::Config::builder()
            .behavior_version(aws_sdk_organizations::config::BehaviorVersion::latest())
            .region(aws_sdk_organizations::config::Region::new("us-east-1"))
            .endpoint_url(self.moto.endpoint())
            .credentials_provider(aws_sdk_organizations::config::Credentials::new(
                ADMIN_KEY,
                "admin-secret",
                None,
                None,
                "test",
            ))
            .retry_config(seeding_retries())
            .timeout_config(seeding_timeouts())
            .build();
        aws_sdk_organizations::Client::from_conf(conf)
    }

    /// Launches `n` instances in `region`; returns their ids.
    pub async fn instances(&self, region: &str, n: i32, stop_protected: bool) -> Vec<String> {
        // moto launches any AMI id; its catalogue is off (see `Emulator::launch`).
        self.ec2(region)
            .run_instances()
            .image_id("ami-12c6146b")
            .min_count(n)
            .max_count(n)
            .disable_api_stop(stop_protected)
            .send()
            .await
            .expect("run instances")
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect()
    }

    /// Security groups in `region` with this name (one per VPC at most).
    pub async fn security_groups_named(
        &self,
        region: &str,
        name: &str,
    ) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
        self.ec2(region)
            .describe_security_groups()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("group-name")
                    .values(name)
                    .build(),
            )
            .send()
            .await
            .expect("groups")
            .security_groups()
            .to_vec()
    }

    /// Creates the organization (all features); returns its root id.
    pub async fn organization(&self) -> String {
        self.org()
            .create_organization()
            .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
            .send()
            .await
            .expect("organization");
        self.org()
            .list_roots()
            .send()
            .await
            .expect("roots")
            .roots()
            .first()
            .and_then(|r| r.id())
            .expect("root")
            .to_string()
    }

    /// The service control policies with this name: (id, document).
    pub async fn scps(&self, name: &str) -> Vec<(String, serde_json::Value)> {
        let scp = aws_sdk_organizations::types::PolicyType::ServiceControlPolicy;
        self.policies(scp, name).await
    }

    /// The organization policies of this type and name: (id, document).
    pub async fn policies(
        &self,
        kind: aws_sdk_organizations::types::PolicyType,
        name: &str,
    ) -> Vec<(String, serde_json::Value)> {
        let org = self.org();
        let list = org
            .list_policies()
            .filter(kind)
            .send()
            .await
            .expect("policies");
        let mut out = Vec::new();
        for p in list.policies().iter().filter(|p| p.name() == Some(name)) {
            let id = p.id().expect("id").to_string();
            let content = org
                .describe_policy()
                .policy_id(&id)
                .send()
                .await
                .expect("describe")
                .policy()
                .and_then(|p| p.content())
                .expect("content")
                .to_string();
            out.push((id, serde_json::from_str(&content).expect("json")));
        }
        out
    }

    pub async fn instance(&self, region: &str, id: &str) -> aws_sdk_ec2::types::Instance {
        self.ec2(region)
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("describe")
            .reservations()
            .first()
            .and_then(|r| r.instances().first())
            .cloned()
            .expect("instance")
    }
}

impl Estate {
    /// An S3 client (path-style, as moto needs) for the seeding admin.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(self.moto.endpoint())
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ADMIN_KEY,
                "admin-secret",
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

/// One member account of a seeded organization, with clients signed by a
/// session of its `OrganizationAccountAccessRole` (moto gives each account
/// its own state).
pub struct Member {
    pub id: String,
    pub iam: aws_sdk_iam::Client,
    pub ec2: aws_sdk_ec2::Client,
}

impl Estate {
    /// Creates `n` member accounts in the organization (which must exist);
    /// returns them with clients that act inside each.
    pub async fn members(&self, n: usize) -> Vec<Member> {
        let org = self.org();
        for i in 0..n {
            org.create_account()
                .account_name(format!("member-{i}"))
                .email(format!("member-{i}@example.invalid"))
                .send()
                .await
                .expect("create account");
        }
        let listed = org.list_accounts().send().await.expect("accounts");
        let mut out = Vec::new();
        for a in listed.accounts() {
            let id = a.id().expect("id").to_string();
            if id == "123456789012" {
                continue;
            }
            out.push(self.member(&id).await);
        }
        assert_eq!(out.len(), n, "member accounts");
        out
    }

    /// Clients acting in account `id` through its member role.
    pub async fn member(&self, id: &str) -> Member {
        let sts_conf = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.moto.endpoint())
            .credentials_provider(Credentials::new(
                ADMIN_KEY,
                "admin-secret",
                None,
                None,
                "test",
            ))
            .retry_config(seeding_retries())
            .timeout_config(seeding_timeouts())
            .build();
        let out = aws_sdk_sts::Client::from_conf(sts_conf)
            .assume_role()
            .role_arn(format!(
                "arn:aws:iam::{id}:role/OrganizationAccountAccessRole"
            ))
            .role_session_name("seed")
            .send()
            .await
            .expect("assume member role");
        let c = out.credentials().expect("credentials");
        let creds = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "seed",
        );
        let iam = aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(self.moto.endpoint())
                .credentials_provider(creds.clone())
                .retry_config(seeding_retries())
                .timeout_config(seeding_timeouts())
                .build(),
        );
        let ec2 = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(self.moto.endpoint())
                .credentials_provider(creds)
                .retry_config(seeding_retries())
                .timeout_config(seeding_timeouts())
                .build(),
        );
        Member {
            id: id.to_string(),
            iam,
            ec2,
        }
    }
}

impl Member {
    /// A user with a console password and one active key; returns the key id.
    pub async fn user_with_key(&self, name: &str) -> String {
        user_with_key(&self.iam, name).await
    }

    pub async fn key_status(&self, user: &str, key: &str) -> String {
        key_status(&self.iam, user, key).await
    }

    pub async fn has_login_profile(&self, user: &str) -> bool {
        has_login_profile(&self.iam, user).await
    }

    /// The inline policy names of a role.
    pub async fn role_policies(&self, role: &str) -> Vec<String> {
        self.iam
            .list_role_policies()
            .role_name(role)
            .send()
            .await
            .expect("role policies")
            .policy_names()
            .to_vec()
    }
}

/// Creates a user with one active key and a console password in the account
/// `iam` acts in; returns the key id.
pub async fn user_with_key(iam: &aws_sdk_iam::Client, name: &str) -> String {
    iam.create_user()
        .user_name(name)
        .send()
        .await
        .expect("create user");
    iam.create_login_profile()
        .user_name(name)
        .password("Pa55word!long")
        .send()
        .await
        .expect("login profile");
    add_key(iam, name).await
}

pub async fn add_key(iam: &aws_sdk_iam::Client, user: &str) -> String {
    iam.create_access_key()
        .user_name(user)
        .send()
        .await
        .expect("key")
        .access_key()
        .expect("key")
        .access_key_id()
        .to_string()
}

pub async fn key_status(iam: &aws_sdk_iam::Client, user: &str, key: &str) -> String {
    iam.list_access_keys()
        .user_name(user)
        .send()
        .await
        .expect("list keys")
        .access_key_metadata()
        .iter()
        .find(|k| k.access_key_id() == Some(key))
        .and_then(|k| k.status())
        .map(|s| s.as_str().to_string())
        .expect("key present")
}

pub async fn has_login_profile(iam: &aws_sdk_iam::Client, user: &str) -> bool {
    iam.get_login_profile().user_name(user).send().await.is_ok()
}
