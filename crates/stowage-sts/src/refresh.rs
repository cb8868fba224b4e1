//! The credential cache of [`crate::StsCredentials`]: requests never wait
//! for STS while valid credentials are held.
//!
//! - Valid credentials are handed out at once, from memory.
//! - From the refresh margin before their expiry on, the first request
//!   starts one background refresh (never more than one at a time); every
//!   request keeps getting the held credentials meanwhile.
//! - A failed background refresh is logged at warn (without secrets),
//!   counted (`stowage_sts_failures_total`,
//!   `stowage_sts_kept_after_failure_total`) and tried again with jittered
//!   exponential backoff (1 s doubling up to 30 s) while the held
//!   credentials stay valid.
//! - Requests wait only when no valid credentials are held (the first
//!   request, or one after an expiry nobody renewed, e.g. in an idle
//!   process), and then all of them wait for one STS call and share its
//!   outcome, success or failure.
//! - The margin is the configured one (at least [`MIN_MARGIN`]) but never
//!   more than a third of the session ([`effective_margin`]), so a session
//!   no longer than the configured margin still serves two thirds of its
//!   life from memory instead of calling STS on every request.
//!
//! At most one STS call is in flight at any time: background refreshes and
//! blocking loads take the same lock. Credentials are not handed out in
//! their last [`EXPIRY_SKEW`], so that a request signed with them does not
//! reach S3 after they expired.
//!
//! Deadlines are kept on two clocks, tokio's monotonic clock (which tests
//! pause and advance) and the wall clock STS gives the expiry in; a deadline
//! has passed when either clock says so, so neither a suspended machine nor
//! a wall clock set back makes expired credentials look valid.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;
use stowage_core::CredentialsFailure;
use tokio::time::Instant;

use crate::credentials::TrackedProvider;

/// Credentials are not handed out in their last seconds.
pub(crate) const EXPIRY_SKEW: Duration = Duration::from_secs(5);

/// The smallest refresh margin (unless the session is shorter than three
/// times this): a background refresh gets a few seconds before the held
/// credentials stop being handed out.
pub(crate) const MIN_MARGIN: Duration = Duration::from_secs(10);

/// The refresh margin is at most this part of a session (1/3).
const MARGIN_SHARE: u32 = 3;

/// Credentials without an expiry (static keys found by the SDK's default
/// chain) are loaded again this often, in the background, so rotated keys
/// are picked up (the SDK's own cache does the same).
const RENEW_WITHOUT_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// The wait after the first failed background refresh; it doubles with
/// every further failure, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between two background refresh attempts.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Deadlines further away than this are cut to it (the clocks' arithmetic
/// must not overflow on an expiry in a distant year).
const LONGEST: Duration = Duration::from_secs(366 * 24 * 3600);

/// The refresh margin used for a session of length `session` (from the
/// moment the credentials arrive to their expiry): the configured margin,
/// at least [`MIN_MARGIN`], at most a third of the session.
pub(crate) fn effective_margin(configured: Duration, session: Duration) -> Duration {
    configured.max(MIN_MARGIN).min(session / MARGIN_SHARE)
}

/// The wait before background attempt `attempt + 1` (`attempt` failures so
/// far, counted from 0): exponential, between half and all of the step, so
/// that replicas refreshing against the same STS do not retry in step.
fn retry_delay(attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
    let step = RETRY_FIRST.saturating_mul(factor).min(RETRY_MAX);
    step.mul_f64(0.5 + 0.5 * random_fraction())
}

/// A random number in [0, 1), from the standard library's randomly keyed
/// hasher (jitter needs no better randomness).
fn random_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A moment on both clocks.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    monotonic: Instant,
    wall: SystemTime,
}

impl Deadline {
    /// `wait` from now.
    fn after(wait: Duration) -> Self {
        let wait = wait.min(LONGEST);
        Self {
            monotonic: Instant::now() + wait,
            wall: SystemTime::now() + wait,
        }
    }

    /// Whether either clock has reached the deadline.
    fn passed(&self) -> bool {
        Instant::now() >= self.monotonic || SystemTime::now() >= self.wall
    }
}

/// The credentials in use, with when to renew them and when to stop
/// handing them out.
#[derive(Debug, Clone)]
struct Held {
    credentials: Credentials,
    /// `None`: they do not expire.
    usable_until: Option<Deadline>,
    refresh_from: Deadline,
}

impl Held {
    fn new(credentials: Credentials, margin: Duration) -> Self {
        match credentials.expiry() {
            None => Self {
                credentials,
                usable_until: None,
                refresh_from: Deadline::after(RENEW_WITHOUT_EXPIRY),
            },
            Some(expiry) => {
                let session = expiry.duration_since(SystemTime::now()).unwrap_or_default();
                let margin = effective_margin(margin, session);
                Self {
                    credentials,
                    usable_until: Some(Deadline::after(session.saturating_sub(EXPIRY_SKEW))),
                    refresh_from: Deadline::after(session.saturating_sub(margin)),
                }
            }
        }
    }

    /// May still be handed out.
    fn usable(&self) -> bool {
        self.usable_until.is_none_or(|d| !d.passed())
    }

    /// Inside the refresh margin.
    fn due(&self) -> bool {
        self.refresh_from.passed()
    }
}

/// What the cache holds and what it is doing.
#[derive(Debug, Default)]
struct State {
    held: Option<Held>,
    /// A background refresh task is running (or sleeping before its next
    /// attempt): no other is started.
    refreshing: bool,
    /// Blocking loads completed so far: a request that waited while one
    /// ran takes its outcome instead of calling STS again.
    loads: u64,
    /// The failure of the last blocking load, for the requests that waited
    /// for it.
    last_failure: Option<CredentialsFailure>,
}

/// The cache, shared by the provider's clones and its background refresh.
#[derive(Debug)]
struct Inner {
    source: TrackedProvider,
    /// The configured margin (see [`effective_margin`]).
    margin: Duration,
    state: Mutex<State>,
    /// Held during every STS call: one call at a time.
    sts: tokio::sync::Mutex<()>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A load for a request that has no valid credentials: one STS call at
    /// a time, its outcome shared with the requests that waited for it.
    /// `seen` is the number of completed loads when the request found none.
    async fn load(&self, seen: u64) -> Result<Credentials, CredentialsFailure> {
        let _one_call = self.sts.lock().await;
        {
            // What a load (or background refresh) finished while this
            // request waited.
            let state = self.state();
            if let Some(held) = state.held.as_ref().filter(|h| h.usable()) {
                return Ok(held.credentials.clone());
            }
            if let Some(failure) = state.last_failure.as_ref().filter(|_| state.loads != seen) {
                return Err(failure.clone());
            }
        }
        self.source.stats().count_blocking_load();
        let outcome = self.source.fetch().await;
        let mut state = self.state();
        state.loads = state.loads.wrapping_add(1);
        match outcome {
            Ok(credentials) => {
                state.held = Some(Held::new(credentials.clone(), self.margin));
                state.last_failure = None;
                Ok(credentials)
            }
            Err(failure) => {
                state.last_failure = Some(failure.clone());
                drop(state);
                tracing::warn!(
                    role = %self.source.role(),
                    "no role credentials: {}",
                    failure.message
                );
                Err(failure)
            }
        }
    }

    /// One background refresh attempt: `Some(wait)` when it failed while the
    /// held credentials stay valid and should be tried again after `wait`;
    /// `None` when it is over (renewed, or nothing valid left to protect:
    /// the next request then loads and waits).
    async fn refresh_once(&self, attempt: u32) -> Option<Duration> {
        let _one_call = self.sts.lock().await;
        // A blocking load may have renewed the credentials meanwhile.
        let needed = self
            .state()
            .held
            .as_ref()
            .is_some_and(|h| h.usable() && h.due());
        if !needed {
            return None;
        }
        let outcome = self.source.fetch().await;
        let mut state = self.state();
        match outcome {
            Ok(credentials) => {
                state.held = Some(Held::new(credentials, self.margin));
                None
            }
            Err(failure) => {
                let kept = state
                    .held
                    .as_ref()
                    .filter(|h| h.usable())
                    .map(|h| h.credentials.expiry());
                drop(state);
                let Some(expiry) = kept else {
                    tracing::warn!(
                        role = %self.source.role(),
                        "refreshing role credentials failed and the held ones have expired; \
                         the next request loads new ones: {}",
                        failure.message
                    );
                    return None;
                };
                self.source.stats().count_kept();
                let wait = retry_delay(attempt);
                tracing::warn!(
                    role = %self.source.role(),
                    expires = ?expiry.map(chrono::DateTime::<chrono::Utc>::from),
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "refreshing role credentials failed; the held ones stay in use until they \
                     expire, and STS is asked again: {}",
                    failure.message
                );
                Some(wait)
            }
        }
    }
}

/// Marks a background refresh as running; dropping it (when the refresh
/// ends, whichever way, or its task is dropped with the runtime) lets the
/// next request inside the margin start another.
#[derive(Debug)]
struct Refreshing(Weak<Inner>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.state().refreshing = false;
        }
    }
}

/// Starts the background refresh; without a tokio runtime there is none
/// (the credentials are loaded by a request once they are no longer valid).
fn start_refresh(inner: &Arc<Inner>) {
    let flag = Refreshing(Arc::downgrade(inner));
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(refresh_in_background(flag));
        }
        Err(_) => drop(flag),
    }
}

/// Refreshes until renewed or the held credentials are no longer valid,
/// with backoff between failures. Holds the cache only during an attempt,
/// so dropping the credential source ends it.
async fn refresh_in_background(flag: Refreshing) {
    let mut attempt: u32 = 0;
    loop {
        let Some(inner) = flag.0.upgrade() else {
            return;
        };
        let Some(wait) = inner.refresh_once(attempt).await else {
            return;
        };
        drop(inner);
        tokio::time::sleep(wait).await;
        attempt = attempt.saturating_add(1);
    }
}

/// The credentials provider the S3 client asks on every request (its own
/// identity cache is off for this source): answers from the held
/// credentials, renewing them as the module documentation says.
#[derive(Debug, Clone)]
pub(crate) struct RefreshingProvider {
    inner: Arc<Inner>,
}

impl RefreshingProvider {
    /// A cache over `source`, refreshing `margin` (see [`effective_margin`])
    /// before expiry. Nothing is loaded until the first request.
    pub(crate) fn new(source: TrackedProvider, margin: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                margin,
                state: Mutex::new(State::default()),
                sts: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The provider that calls STS (for `validate`, which asks outside the
    /// cache).
    pub(crate) fn source(&self) -> &TrackedProvider {
        &self.inner.source
    }

    /// Expiry of the credentials held now (those requests are signed with).
    pub(crate) fn expiry(&self) -> Option<SystemTime> {
        self.inner
            .state()
            .held
            .as_ref()
            .and_then(|h| h.credentials.expiry())
    }

    /// Credentials for one request: the held ones while they are valid
    /// (starting a background refresh inside the margin), else the outcome
    /// of the one load all waiting requests share.
    ///
    /// # Errors
    /// The failure of that load, explained, when no valid credentials are
    /// held and STS gave none.
    ///
    /// # Cancel safety
    /// Dropping the future while it waits for a load leaves the cache as it
    /// was; dropping it during the STS call cancels that call, and the next
    /// waiting request makes its own.
    pub(crate) async fn credentials(&self) -> Result<Credentials, CredentialsFailure> {
        let seen = {
            let mut state = self.inner.state();
            if let Some(held) = state.held.as_ref().filter(|h| h.usable()) {
                let credentials = held.credentials.clone();
                let start = held.due() && !state.refreshing;
                if start {
                    state.refreshing = true;
                }
                drop(state);
                if start {
                    start_refresh(&self.inner);
                }
                return Ok(credentials);
            }
            state.loads
        };
        self.inner.load(seen).await
    }
}

impl ProvideCredentials for RefreshingProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.credentials()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::credentials::CredentialStats;

    /// A fake STS: counts calls and how many run at once, answers after a
    /// delay (tokio time, so paused tests advance it), with credentials of
    /// a chosen lifetime or a failure.
    #[derive(Debug, Default)]
    struct FakeSts {
        calls: AtomicU64,
        in_flight: AtomicU64,
        most_in_flight: AtomicU64,
        fail: AtomicBool,
        delay_ms: AtomicU64,
        lifetime_secs: AtomicU64,
    }

    impl FakeSts {
        fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }

        fn most_in_flight(&self) -> u64 {
            self.most_in_flight.load(Ordering::SeqCst)
        }

        fn set_fail(&self, fail: bool) {
            self.fail.store(fail, Ordering::SeqCst);
        }

        fn set_delay(&self, delay: Duration) {
            self.delay_ms
                .store(delay.as_millis() as u64, Ordering::SeqCst);
        }
    }

    #[derive(Debug, Clone)]
    struct Fake(Arc<FakeSts>);

    impl ProvideCredentials for Fake {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(async move {
                let sts = &self.0;
                let n = sts.calls.fetch_add(1, Ordering::SeqCst) + 1;
                let now = sts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                sts.most_in_flight.fetch_max(now, Ordering::SeqCst);
                let delay = Duration::from_millis(sts.delay_ms.load(Ordering::SeqCst));
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                sts.in_flight.fetch_sub(1, Ordering::SeqCst);
                if sts.fail.load(Ordering::SeqCst) {
                    return Err(CredentialsError::provider_error("the fake STS is down"));
                }
                let lifetime = Duration::from_secs(sts.lifetime_secs.load(Ordering::SeqCst));
                Ok(Credentials::new(
                    format!("ASIAFAKE{n:04}"),
                    "fake-secret",
                    Some("fake-session-token".into()),
                    Some(SystemTime::now() + lifetime),
                    "fake-sts",
                ))
            })
        }
    }

    /// A cache over a fake STS giving sessions of `lifetime` seconds, with
    /// a configured margin of `margin` seconds.
    fn setup(
        lifetime: u64,
        margin: u64,
    ) -> (RefreshingProvider, Arc<FakeSts>, Arc<CredentialStats>) {
        let sts = Arc::new(FakeSts::default());
        sts.lifetime_secs.store(lifetime, Ordering::SeqCst);
        let (tracked, stats) = TrackedProvider::for_tests(Fake(sts.clone()));
        (
            RefreshingProvider::new(tracked, Duration::from_secs(margin)),
            sts,
            stats,
        )
    }

    /// Lets spawned tasks (the background refresh) run, without moving
    /// the clock.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// `n` concurrent `provide_credentials` calls, as the S3 client makes
    /// them, each in its own task.
    async fn concurrently(
        provider: &RefreshingProvider,
        n: usize,
    ) -> Vec<Result<Credentials, CredentialsError>> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let p = provider.clone();
            tasks.spawn(async move { p.provide_credentials().await });
        }
        let mut out = Vec::with_capacity(n);
        while let Some(result) = tasks.join_next().await {
            out.push(result.expect("the task finished"));
        }
        out
    }

    async fn key(provider: &RefreshingProvider) -> String {
        provider
            .provide_credentials()
            .await
            .expect("credentials")
            .access_key_id()
            .to_string()
    }

    #[test]
    fn the_margin_is_capped_at_a_third_of_the_session() {
        let s = Duration::from_secs;
        assert_eq!(effective_margin(s(300), s(3600)), s(300));
        assert_eq!(effective_margin(s(300), s(900)), s(300));
        assert_eq!(effective_margin(s(300), s(300)), s(100));
        assert_eq!(effective_margin(s(300), s(60)), s(20));
        assert_eq!(effective_margin(s(900), s(900)), s(300));
        assert_eq!(effective_margin(s(0), s(3600)), MIN_MARGIN);
        assert_eq!(effective_margin(s(0), s(15)), s(5));
        assert_eq!(effective_margin(s(300), s(0)), s(0));
    }

    #[test]
    fn retry_delays_grow_and_are_jittered_within_bounds() {
        for attempt in 0..40 {
            let step = RETRY_FIRST
                .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
                .min(RETRY_MAX);
            let d = retry_delay(attempt);
            assert!((step / 2..=step).contains(&d), "attempt {attempt}: {d:?}");
        }
        assert!(retry_delay(10) >= RETRY_MAX / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_refresh_inside_the_margin_holds_no_request() {
        // Sessions of 120 s, margin 40 s: refreshed from 80 s, handed out
        // until 115 s.
        let (provider, sts, stats) = setup(120, 40);
        let first = key(&provider).await;
        assert_eq!(sts.calls(), 1);
        tokio::time::advance(Duration::from_secs(81)).await;
        // STS now fails, and slowly.
        sts.set_fail(true);
        sts.set_delay(Duration::from_secs(10));
        let started = Instant::now();
        let all = tokio::time::timeout(Duration::from_millis(50), concurrently(&provider, 100))
            .await
            .expect("no request waits for the refresh");
        assert!(started.elapsed() < Duration::from_millis(50));
        assert_eq!(all.len(), 100);
        for r in all {
            assert_eq!(r.expect("the held credentials").access_key_id(), first);
        }
        settle().await;
        assert_eq!(sts.calls(), 2, "one background refresh for 100 requests");

        // The refresh fails: counted, the held credentials stay in use.
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert_eq!(stats.failures(), 1);
        assert_eq!(stats.kept_after_failure(), 1);
        assert!(stats.last_error().is_some());
        let started = Instant::now();
        let all = tokio::time::timeout(Duration::from_millis(50), concurrently(&provider, 100))
            .await
            .expect("no request waits while the retry is pending");
        assert!(started.elapsed() < Duration::from_millis(50));
        for r in all {
            assert_eq!(r.expect("the held credentials").access_key_id(), first);
        }
        assert_eq!(sts.most_in_flight(), 1);
        assert_eq!(
            stats.blocking_loads(),
            1,
            "only the first load was waited for"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_background_refresh_at_a_time_retried_with_backoff() {
        let (provider, sts, stats) = setup(120, 40);
        let first = key(&provider).await;
        tokio::time::advance(Duration::from_secs(81)).await;
        sts.set_fail(true);
        sts.set_delay(Duration::from_secs(2));
        // 30 s of traffic inside the margin (to 111 s; the credentials are
        // handed out until 115 s): 20 requests every 100 ms.
        for _ in 0..300 {
            for _ in 0..20 {
                assert_eq!(key(&provider).await, first);
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert_eq!(sts.most_in_flight(), 1, "never two STS calls at once");
        // Attempts take 2 s with waits of 0.5-1, 1-2, 2-4, 4-8, 8-16 s
        // between them: 5 or 6 fit in 30 s, not one per request (6000).
        let attempts = sts.calls() - 1;
        assert!((4..=7).contains(&attempts), "{attempts} refresh attempts");
        assert_eq!(stats.kept_after_failure(), stats.failures());
        assert_eq!(stats.blocking_loads(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_background_refresh_replaces_the_credentials_without_waiting() {
        let (provider, sts, stats) = setup(120, 40);
        let first = key(&provider).await;
        tokio::time::advance(Duration::from_secs(81)).await;
        sts.set_delay(Duration::from_secs(3));
        // Served at once while the refresh runs.
        assert_eq!(key(&provider).await, first);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(key(&provider).await, first);
        tokio::time::advance(Duration::from_secs(3)).await;
        settle().await;
        let second = key(&provider).await;
        assert_ne!(second, first, "the refreshed credentials are in use");
        assert_eq!(sts.calls(), 2);
        assert_eq!(stats.blocking_loads(), 1);
        assert_eq!(stats.failures(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn without_valid_credentials_requests_share_one_load() {
        let (provider, sts, stats) = setup(120, 40);
        sts.set_delay(Duration::from_secs(3));

        // The first load: 50 requests, one STS call, all waited for it.
        let started = Instant::now();
        let all = concurrently(&provider, 50).await;
        assert!(started.elapsed() >= Duration::from_secs(3));
        let first = all[0]
            .as_ref()
            .expect("credentials")
            .access_key_id()
            .to_string();
        assert!(all
            .iter()
            .all(|r| r.as_ref().expect("credentials").access_key_id() == first));
        assert_eq!(sts.calls(), 1);
        assert_eq!(stats.blocking_loads(), 1);

        // Idle past the expiry: nothing asks STS without a request.
        tokio::time::advance(Duration::from_secs(200)).await;
        settle().await;
        assert_eq!(sts.calls(), 1);

        // Expired: 50 requests wait for one new load.
        let all = concurrently(&provider, 50).await;
        let second = all[0]
            .as_ref()
            .expect("credentials")
            .access_key_id()
            .to_string();
        assert_ne!(second, first);
        assert!(all
            .iter()
            .all(|r| r.as_ref().expect("credentials").access_key_id() == second));
        assert_eq!(sts.calls(), 2);
        assert_eq!(stats.blocking_loads(), 2);

        // Expired and STS down: the 50 share one failed call.
        tokio::time::advance(Duration::from_secs(200)).await;
        sts.set_fail(true);
        let all = concurrently(&provider, 50).await;
        for r in &all {
            let err = r.as_ref().expect_err("no credentials to give");
            let failure = CredentialsFailure::find(err).expect("the failure explained");
            assert!(failure.message.contains("fake STS is down"), "{failure:?}");
        }
        assert_eq!(sts.calls(), 3, "one STS call for 50 waiting requests");
        assert_eq!(sts.most_in_flight(), 1);

        // STS back: the next request loads.
        sts.set_fail(false);
        assert_ne!(key(&provider).await, second);
        assert_eq!(sts.calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_no_longer_than_the_margin_are_not_loaded_per_request() {
        // 60 s sessions, 300 s configured margin: the margin is 20 s.
        let (provider, sts, stats) = setup(60, 300);
        let mut keys = std::collections::HashSet::new();
        // 10 requests a second for 4 minutes.
        for _ in 0..240 {
            for _ in 0..10 {
                keys.insert(key(&provider).await);
            }
            tokio::time::advance(Duration::from_secs(1)).await;
            settle().await;
        }
        // A new session about every 40 s: 7 STS calls, not 2400.
        let calls = sts.calls();
        assert!((5..=8).contains(&calls), "{calls} STS calls");
        assert_eq!(keys.len() as u64, calls);
        assert_eq!(
            stats.blocking_loads(),
            1,
            "only the first load was waited for"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_provider_ends_the_background_retries() {
        let (provider, sts, _stats) = setup(120, 40);
        key(&provider).await;
        tokio::time::advance(Duration::from_secs(81)).await;
        sts.set_fail(true);
        key(&provider).await;
        settle().await;
        assert_eq!(sts.calls(), 2);
        drop(provider);
        for _ in 0..30 {
            tokio::time::advance(Duration::from_secs(1)).await;
            settle().await;
        }
        assert_eq!(sts.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn credentials_in_their_last_seconds_are_not_handed_out() {
        let (provider, sts, _stats) = setup(120, 40);
        let first = key(&provider).await;
        // Inside the skew, no refresh was started (no request in the
        // margin): the request waits for a new load rather than sign with
        // credentials that expire on the way.
        tokio::time::advance(Duration::from_secs(117)).await;
        assert_ne!(key(&provider).await, first);
        assert_eq!(sts.calls(), 2);
    }
}
