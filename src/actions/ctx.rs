//! What every action call runs with: clients, identity, protections, pacing,
//! and the reach into member accounts.

use super::*;

/// Read access and the rules discovery needs.
#[derive(Clone)]
pub struct Ctx {
    pub clients: Clients,
    pub identity: Identity,
    pub protection: Protection,
    /// Parallel reads during discovery.
    pub concurrency: usize,
    /// When this run started: revocations at or after it count as already done.
    pub run_started: jiff::Timestamp,
    pub retry: RetryPolicy,
    pub telemetry: Arc<Telemetry>,
    /// The executor's principal ARN as policies must name it (a role with its path).
    pub executor_arn: String,
    /// The principals every deny exempts, as exact ARNs: the executor's
    /// credential chain and `protect` (patterns resolved to their matches).
    pub exempt: Vec<String>,
    /// The member role in every account, exempted only while this run's
    /// member-account steps need it.
    pub member_exempt: Option<String>,
    /// Regions for regional actions, resolved before the run.
    pub regions: Vec<String>,
    /// In dry runs, also ask IAM (`SimulatePrincipalPolicy`) whether each IAM
    /// and Organizations call would be allowed for the executor.
    pub check_permissions: bool,
    /// A `--yes` check, whose one question is whether AWS would allow each
    /// call: termination protection reads the settings of one instance per
    /// account and region (so a read denied everywhere still refuses),
    /// checks the others as changes, and reads one only when its change is
    /// denied (a denial where nothing would change refuses nothing). The
    /// step reads them itself when it starts, so its plan is never older
    /// than its calls.
    pub permissions_only: bool,
    pub run: Arc<RunState>,
    /// The accounts steps fan out to, with their clients. The identity and
    /// clients above are those of the account this context acts in.
    pub fleet: Arc<Fleet>,
    /// This responder's audit key: it makes the tokens breakglass tags its
    /// snapshots with, and recognises them.
    pub audit_key: Option<Arc<crate::signing::AuditKey>>,
}

impl Ctx {
    /// This context moved into `account`: its clients, its identity (the
    /// member role session there), everything else shared. `None` when the
    /// account was not reached. Borrowed when it already acts there, which
    /// is every call of a run that does not fan out.
    pub fn in_account(&self, account: &str) -> Option<Cow<'_, Ctx>> {
        if account == self.identity.account {
            return Some(Cow::Borrowed(self));
        }
        match self.fleet.reach(account)? {
            Reach::Reached { clients, identity } => Some(Cow::Owned(Ctx {
                clients: (**clients).clone(),
                identity: (**identity).clone(),
                // There the run acts as the member role (what permission
                // checks ask about); SCPs still exempt the executor, from
                // the executor's own context.
                executor_arn: self
                    .fleet
                    .principal_arn(account)
                    .unwrap_or_else(|| self.executor_arn.clone()),
                ..self.clone()
            })),
            Reach::Unreachable { .. } => None,
        }
    }

    /// Where a change to a target in `account` is made: Organizations calls
    /// (`from_management`) from the executor's own account, whatever account
    /// they concern; every other call from the target's account.
    pub fn acting_on(&self, account: &str, from_management: bool) -> Option<Cow<'_, Ctx>> {
        if from_management {
            Some(Cow::Borrowed(self))
        } else {
            self.in_account(account)
        }
    }

    pub fn iam(&self) -> &aws_sdk_iam::Client {
        &self.clients.iam
    }

    /// One call to a global service (IAM, Organizations) under the run's
    /// retry policy and pacing, its error classified and named after
    /// `operation` (such as `iam:UpdateAccessKey`).
    pub async fn call<T, E, R, F, Fut>(&self, operation: &str, f: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.call_at(None, operation, f).await
    }

    /// One call to a regional service (EC2), paced in that region's lane.
    pub async fn call_in<T, E, R, F, Fut>(
        &self,
        region: &str,
        operation: &str,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.call_at(Some(region), operation, f).await
    }

    async fn call_at<T, E, R, F, Fut>(
        &self,
        region: Option<&str>,
        operation: &str,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.call_with(self.retry, region, operation, f).await
    }

    async fn call_with<T, E, R, F, Fut>(
        &self,
        policy: RetryPolicy,
        region: Option<&str>,
        operation: &str,
        mut f: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let lane = self
            .telemetry
            .lane(&self.identity.account, operation, region);
        aws::call(&policy, &self.telemetry, &lane, || {
            let fut = f();
            async move { fut.await.map_err(|e| aws::aws_error(operation, e)) }
        })
        .await
    }

    /// A create with no idempotency token, for [`aws::create_once`]: a
    /// transient failure comes back at once instead of being sent again.
    pub async fn call_once<T, E, R, F, Fut>(
        &self,
        region: Option<&str>,
        operation: &str,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.call_with(self.retry.once(), region, operation, f)
            .await
    }

    /// A paginated listing read page by page, each page one paced and
    /// retried call: a throttled or failed page is asked again alone, with
    /// the same token, and the pages before it are kept. `next` reads a
    /// page's continuation token (`Marker` when `IsTruncated`, `NextToken`).
    pub async fn pages<P, E, R, F, Fut, N>(
        &self,
        region: Option<&str>,
        operation: &str,
        mut fetch: F,
        next: N,
    ) -> Result<Vec<P>, AwsError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<P, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
        N: Fn(&P) -> Option<String>,
    {
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call_at(region, operation, || fetch(token.clone()))
                .await?;
            let following = next(&page).filter(|t| !t.is_empty());
            pages.push(page);
            match following {
                // A token that repeats would loop forever: AWS never sends one.
                Some(t) if token.as_ref() != Some(&t) => token = Some(t),
                _ => return Ok(pages),
            }
        }
    }

    /// Like [`Ctx::call`] for a body that maps its own errors.
    pub async fn call_raw<T, F, Fut>(
        &self,
        region: Option<&str>,
        operation: &str,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsError>>,
    {
        let lane = self
            .telemetry
            .lane(&self.identity.account, operation, region);
        aws::call(&self.retry, &self.telemetry, &lane, f).await
    }
}
