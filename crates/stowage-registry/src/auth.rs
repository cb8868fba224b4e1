//! Authentication: the [`Authenticator`] the server asks before every API
//! request, and [`HtpasswdAuth`], HTTP Basic against an htpasswd file of
//! bcrypt entries (as `htpasswd -B` writes them and distribution reads
//! them).
//!
//! The server tells the authenticator what a request needs ([`Access`]:
//! pull or push on repositories, or the registry itself for `/v2/` and
//! `/metrics`) and who asks (the client address, after trusted proxies),
//! and gets back who made it ([`Identity`]) or a [`Challenge`] (401 with
//! its `WWW-Authenticate` value and an OCI `UNAUTHORIZED` body, or 429
//! `TOOMANYREQUESTS` with `Retry-After` when the client must slow down).
//! A bearer-token authenticator (distribution's `token` auth) fits the same
//! trait: it would check a token's signature and scopes against the
//! `Access` and answer `Bearer realm=...,service=...,scope=...` challenges.
//!
//! Passwords never leave this module: not in logs, not in errors, not in
//! the caches of verified and failed credentials (keyed by a salted
//! SHA-256).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use base64::Engine as _;
use futures::future::BoxFuture;
use sha2::Digest as _;
use tokio::sync::Semaphore;

use crate::errors::{ErrorCode, RegistryError};
use crate::server::FileVersion;

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Reads: `GET` and `HEAD` of blobs, manifests, tags, referrers.
    Pull,
    /// Writes: uploads, manifest puts, deletes.
    Push,
}

/// One repository and what is done to it (a bearer token's scope).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scope {
    /// The repository name.
    pub repository: String,
    /// What is done to it.
    pub action: Action,
}

/// What a request needs. No scopes: the registry itself (`/v2/`, the
/// endpoint clients probe to learn how to authenticate, and `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Access {
    /// The repositories and actions (a mount pulls from one repository and
    /// pushes to another).
    pub scopes: Vec<Scope>,
}

impl Access {
    /// The registry itself, no repository.
    pub fn registry() -> Self {
        Self::default()
    }

    /// `action` on `repository`.
    pub fn repository(repository: &str, action: Action) -> Self {
        Self::default().and(repository, action)
    }

    /// Adds `action` on `repository`.
    pub fn and(mut self, repository: &str, action: Action) -> Self {
        self.scopes.push(Scope {
            repository: repository.to_string(),
            action,
        });
        self
    }

    /// Whether the request only reads repositories (and names at least
    /// one): what anonymous pulls may do.
    pub fn is_pull_only(&self) -> bool {
        !self.scopes.is_empty() && self.scopes.iter().all(|s| s.action == Action::Pull)
    }
}

/// Who made a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user name; `None` for an anonymous pull.
    pub user: Option<String>,
}

impl Identity {
    /// Nobody in particular (an anonymous pull).
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// The user `name`.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            user: Some(name.into()),
        }
    }
}

/// Why a request is refused, and how to authenticate: answered 401 with
/// `WWW-Authenticate: <www_authenticate>` and an `UNAUTHORIZED` error; or,
/// with `retry_after`, 429 with `Retry-After` and a `TOOMANYREQUESTS`
/// error (the credentials were not checked: the client, or the server,
/// is busy).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Challenge {
    /// The `WWW-Authenticate` value, e.g. `Basic realm="stowage"`.
    pub www_authenticate: String,
    /// The error message for the client (never a password).
    pub message: String,
    /// When set, the request is refused for now rather than for its
    /// credentials: 429, and the client may retry after this long.
    pub retry_after: Option<Duration>,
}

impl Challenge {
    /// A 401 challenge: `WWW-Authenticate: <www_authenticate>` and
    /// `message` (set `retry_after` to answer 429 instead).
    pub fn new(www_authenticate: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            www_authenticate: www_authenticate.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// The HTTP status the challenge is answered with: 401, or 429 with
    /// `retry_after`.
    pub fn status(&self) -> u16 {
        match self.retry_after {
            Some(_) => 429,
            None => 401,
        }
    }
}

/// Whole seconds for `Retry-After`, at least 1.
fn retry_after_seconds(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

impl From<Challenge> for RegistryError {
    /// 401 `UNAUTHORIZED` with `WWW-Authenticate`, or 429
    /// `TOOMANYREQUESTS` with `Retry-After`.
    fn from(challenge: Challenge) -> Self {
        match challenge.retry_after {
            Some(wait) => RegistryError::new(ErrorCode::TooManyRequests, challenge.message)
                .with_header(RETRY_AFTER, retry_after_seconds(wait).to_string()),
            None => RegistryError::new(ErrorCode::Unauthorized, challenge.message)
                .with_header(WWW_AUTHENTICATE, challenge.www_authenticate),
        }
    }
}

/// Decides who a request comes from and whether it may do what it asks.
/// The server calls it before each API request (not for `/healthz` and
/// `/readyz`).
pub trait Authenticator: Send + Sync + std::fmt::Debug + 'static {
    /// The request's identity, or the challenge it gets (401, or 429 with
    /// [`Challenge::retry_after`]).
    ///
    /// `authorization` is the request's `Authorization` header, if it has
    /// one (a value that is not text arrives as a string that no scheme
    /// accepts).
    fn authenticate<'a>(
        &'a self,
        authorization: Option<&'a str>,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<Identity, Challenge>>;

    /// The same for a request from `client` (its address, after trusted
    /// proxies; `None` when unknown), so an authenticator can limit and
    /// log failures per client. The default ignores the address.
    fn authenticate_from<'a>(
        &'a self,
        authorization: Option<&'a str>,
        access: &'a Access,
        _client: Option<IpAddr>,
    ) -> BoxFuture<'a, Result<Identity, Challenge>> {
        self.authenticate(authorization, access)
    }

    /// Whether the authenticator can decide at all; `Err` with a reason
    /// anyone may read (no secrets, no paths) when it refuses every
    /// credential for now, as [`HtpasswdAuth`] does while its file cannot
    /// be used. `/readyz` answers 503 with the reason. The default: ready.
    ///
    /// # Errors
    /// The reason the authenticator cannot decide.
    fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The realm `stowage serve` names in its challenges.
pub const DEFAULT_REALM: &str = "stowage";

/// How often the htpasswd file is checked for changes (by default).
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// How many successful verifications are remembered.
const CACHE_ENTRIES: usize = 1024;

/// How long a successful verification is remembered.
const CACHE_TTL: Duration = Duration::from_secs(15 * 60);

/// How long a failure is remembered: the same wrong credentials again are
/// refused without bcrypt, and failures count against their client and
/// user for this long.
const FAILURE_WINDOW: Duration = Duration::from_secs(30);

/// Failed credentials, clients, users and log keys remembered at most
/// (each map; the oldest go first).
const FAILURE_ENTRIES: usize = 4096;

/// Failed verifications from one client (an IPv4 address, an IPv6 /64)
/// within [`FAILURE_WINDOW`] after which its new credentials get 429
/// until the window ends.
const FAILURES_PER_CLIENT: u32 = 10;

/// Failed verifications of one user name within [`FAILURE_WINDOW`], from
/// any client, after which new credentials for it get 429 until the
/// window ends (credentials already verified keep working).
const FAILURES_PER_USER: u32 = 50;

/// At most one log line per user and client this often; the next one says
/// how many were left out.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// bcrypt verifications that may wait for a free slot, per slot, before
/// new ones are refused with 429.
const QUEUED_PER_SLOT: usize = 16;

/// What a client is told to wait when the bcrypt queue is full.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// The longest user name a log line shows.
const LOGGED_USER_CHARS: usize = 64;

/// A problem with an htpasswd file: unreadable, or an entry that is not
/// `user:bcrypt-hash`. Names the file and the line, never a hash.
#[derive(Debug)]
pub struct HtpasswdError {
    file: PathBuf,
    message: String,
    unreadable: bool,
}

impl std::fmt::Display for HtpasswdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "htpasswd file {}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for HtpasswdError {}

/// Users from the file: name to bcrypt hash.
type Users = Arc<HashMap<String, String>>;

/// The users and when the file was last looked at (no `Debug`: it holds
/// password hashes).
struct Loaded {
    users: Users,
    version: Option<FileVersion>,
    checked: Instant,
    /// Why the file cannot be used (then `users` is empty: every credential
    /// is refused until a valid file is back), safe to show anyone.
    problem: Option<&'static str>,
}

/// Makes room in `map` for one more entry when it holds `max`: entries
/// older than `ttl` go first, then the oldest.
fn make_room<K: Copy + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    now: Instant,
    ttl: Duration,
    since: impl Fn(&V) -> Instant,
) {
    if map.len() < max {
        return;
    }
    map.retain(|_, v| now.saturating_duration_since(since(v)) < ttl);
    if map.len() >= max {
        if let Some(oldest) = map.iter().min_by_key(|(_, v)| since(v)).map(|(k, _)| *k) {
            map.remove(&oldest);
        }
    }
}

/// Successful verifications: salted SHA-256 of user and password to the
/// hash they were verified against, and when. A changed entry (the file
/// was edited) no longer matches, so a changed password takes effect at
/// once.
#[derive(Default)]
struct Verified {
    entries: HashMap<[u8; 32], (String, Instant)>,
}

impl Verified {
    fn hit(&mut self, key: &[u8; 32], hash: &str) -> bool {
        match self.entries.get(key) {
            Some((h, at)) if h == hash && at.elapsed() < CACHE_TTL => true,
            Some(_) => {
                self.entries.remove(key);
                false
            }
            None => false,
        }
    }

    fn insert(&mut self, key: [u8; 32], hash: String) {
        let now = Instant::now();
        make_room(
            &mut self.entries,
            CACHE_ENTRIES,
            now,
            CACHE_TTL,
            |(_, at)| *at,
        );
        self.entries.insert(key, (hash, now));
    }
}

/// Failures counted in a window that starts with the first.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

/// The last log line of a user and client, and how many were left out
/// since.
#[derive(Debug, Clone, Copy)]
struct LogWindow {
    logged: Instant,
    suppressed: u64,
}

/// Recent failures, all bounded and keyed by fixed-size values (no user
/// name or password is kept): failed credentials (salted SHA-256 of user
/// and password, with the entry they failed against: `None` for an
/// unknown user), failures per client and per user, and when each user
/// and client was last logged.
#[derive(Default)]
struct Failures {
    credentials: HashMap<[u8; 32], (Option<String>, Instant)>,
    clients: HashMap<IpAddr, Window>,
    users: HashMap<[u8; 32], Window>,
    logged: HashMap<[u8; 32], LogWindow>,
}

impl Failures {
    /// Whether these credentials failed against this same entry within
    /// the window.
    fn known(&mut self, key: &[u8; 32], entry: Option<&str>, now: Instant) -> bool {
        match self.credentials.get(key) {
            Some((failed, at))
                if failed.as_deref() == entry
                    && now.saturating_duration_since(*at) < FAILURE_WINDOW =>
            {
                true
            }
            Some(_) => {
                self.credentials.remove(key);
                false
            }
            None => false,
        }
    }

    /// How long the client or the user must wait, when either failed too
    /// often within the window.
    fn throttled(&self, client: Option<IpAddr>, user: &[u8; 32], now: Instant) -> Option<Duration> {
        let over = |w: Option<&Window>, limit: u32| {
            let w = w?;
            let age = now.saturating_duration_since(w.started);
            if age < FAILURE_WINDOW && w.count >= limit {
                Some(FAILURE_WINDOW - age)
            } else {
                None
            }
        };
        let by_client = client.and_then(|c| over(self.clients.get(&c), FAILURES_PER_CLIENT));
        let by_user = over(self.users.get(user), FAILURES_PER_USER);
        by_client.max(by_user)
    }

    /// Records a verification that failed.
    fn record(
        &mut self,
        key: [u8; 32],
        entry: Option<String>,
        client: Option<IpAddr>,
        user: [u8; 32],
        now: Instant,
    ) {
        make_room(
            &mut self.credentials,
            FAILURE_ENTRIES,
            now,
            FAILURE_WINDOW,
            |(_, at)| *at,
        );
        self.credentials.insert(key, (entry, now));
        if let Some(client) = client {
            count(&mut self.clients, client, now);
        }
        count(&mut self.users, user, now);
    }

    /// Whether a failure of this user and client is logged now: `Some`
    /// with the number left out since the last line, or `None` (left out).
    fn log_now(&mut self, key: [u8; 32], now: Instant) -> Option<u64> {
        if let Some(w) = self.logged.get_mut(&key) {
            if now.saturating_duration_since(w.logged) < FAILURE_LOG_EVERY {
                w.suppressed += 1;
                return None;
            }
            let suppressed = w.suppressed;
            *w = LogWindow {
                logged: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        make_room(
            &mut self.logged,
            FAILURE_ENTRIES,
            now,
            FAILURE_LOG_EVERY,
            |w| w.logged,
        );
        self.logged.insert(
            key,
            LogWindow {
                logged: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

/// One more failure in `key`'s window (a new window when the last ended).
fn count<K: Copy + Eq + Hash>(map: &mut HashMap<K, Window>, key: K, now: Instant) {
    if let Some(w) = map.get_mut(&key) {
        if now.saturating_duration_since(w.started) < FAILURE_WINDOW {
            w.count = w.count.saturating_add(1);
        } else {
            *w = Window {
                started: now,
                count: 1,
            };
        }
        return;
    }
    make_room(map, FAILURE_ENTRIES, now, FAILURE_WINDOW, |w| w.started);
    map.insert(
        key,
        Window {
            started: now,
            count: 1,
        },
    );
}

/// Where bcrypt runs: at most `running` verifications at once on the
/// blocking pool, and at most `queued` more waiting for a slot; past that
/// new ones are refused at once. Both places are held by the blocking task
/// itself, so a client that disconnects does not free them while its
/// verification still runs.
#[derive(Debug)]
struct BcryptQueue {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    /// Verifications started (for tests and curiosity).
    started: AtomicU64,
}

impl BcryptQueue {
    fn new(running: usize, queued: usize) -> Self {
        let running = running.clamp(1, Semaphore::MAX_PERMITS);
        let admitted = running.saturating_add(queued).min(Semaphore::MAX_PERMITS);
        Self {
            running: Arc::new(Semaphore::new(running)),
            admitted: Arc::new(Semaphore::new(admitted)),
            started: AtomicU64::new(0),
        }
    }

    /// Whether `password` matches `hash`; `None` when the queue is full.
    ///
    /// # Cancel safety
    /// Dropped while waiting for a slot, it leaves the queue; dropped once
    /// running, the verification finishes on the blocking pool and only
    /// then frees its places.
    async fn verify(&self, password: Vec<u8>, hash: String) -> Option<bool> {
        let admitted = self.admitted.clone().try_acquire_owned().ok()?;
        let slot = self.running.clone().acquire_owned().await.ok()?;
        self.started.fetch_add(1, Ordering::Relaxed);
        let task = tokio::task::spawn_blocking(move || {
            let _places = (admitted, slot);
            bcrypt::verify(&password, &hash).unwrap_or(false)
        });
        Some(task.await.unwrap_or(false))
    }
}

/// The outcome of checking credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The password is the user's.
    Verified,
    /// Unknown user or wrong password.
    Refused,
    /// Not checked: the client or user failed too often (wait this long).
    Throttled(Duration),
    /// Not checked: too many verifications waiting.
    Busy,
}

/// HTTP Basic authentication against an htpasswd file of bcrypt entries
/// (`$2y$`, `$2b$`, `$2a$`; `htpasswd -B`). Every user may pull and push
/// every repository (as with distribution's htpasswd); with
/// [`HtpasswdAuth::with_anonymous_pull`], requests that only read
/// repositories need no credentials (wrong credentials are still refused).
///
/// bcrypt is slow on purpose (tens of milliseconds at the usual costs), so
/// its work is bounded: verifications run on the blocking pool, one per
/// core at a time, with at most 16 per core waiting (past that: 429 with
/// `Retry-After`); a verification keeps its place until it ends, even when
/// its client has gone. Successful verifications are remembered for 15
/// minutes in a bounded map (1024 entries) keyed by a salted SHA-256 of
/// user and password, so a push of hundreds of requests pays bcrypt once.
/// Failed ones are remembered for 30 s the same way, so the same wrong
/// credentials again cost nothing; a client (an IPv4 address, an IPv6
/// /64) with 10 failures, or a user name with 50, within 30 s gets 429
/// for new credentials until the 30 s are over. An unknown user costs a
/// bcrypt verification too, so timing does not tell which users exist.
/// Failures are logged with the user and the client, at most one line per
/// user and client every 10 s (the next line counts those left out).
///
/// The file is read again when it changes (checked at most every 5 s). A
/// file that goes away or becomes invalid fails closed: the error is
/// logged, every credential is refused until a valid file is back, and
/// [`Authenticator::readiness`] says so (`/readyz` answers 503).
pub struct HtpasswdAuth {
    file: PathBuf,
    realm: String,
    anonymous_pull: bool,
    reload_every: Duration,
    loaded: RwLock<Loaded>,
    verified: Mutex<Verified>,
    failures: Mutex<Failures>,
    /// Failed-login lines logged so far (after the rate limit).
    failure_lines: std::sync::atomic::AtomicU64,
    salt: [u8; 32],
    bcrypt: BcryptQueue,
}

impl std::fmt::Debug for HtpasswdAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (users, problem) = self
            .loaded
            .read()
            .map(|l| (l.users.len(), l.problem))
            .unwrap_or_default();
        f.debug_struct("HtpasswdAuth")
            .field("file", &self.file)
            .field("realm", &self.realm)
            .field("anonymous_pull", &self.anonymous_pull)
            .field("users", &users)
            .field("problem", &problem)
            .finish_non_exhaustive()
    }
}

/// Parses htpasswd text: `user:hash` lines, blank lines and `#` comments
/// ignored; only bcrypt hashes. The first entry of a user counts.
fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = n + 1;
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {number}: expected user:hash"));
        };
        if user.is_empty() {
            return Err(format!("line {number}: the user name is empty"));
        }
        let hash = hash.trim();
        let bcrypt = ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p));
        if !bcrypt {
            let kind = if hash.starts_with("$apr1$") {
                "an MD5 ($apr1$) entry"
            } else if hash.starts_with("{SHA}") {
                "a SHA-1 ({SHA}) entry"
            } else {
                "not a bcrypt entry"
            };
            return Err(format!(
                "line {number} (user {user:?}): {kind}; only bcrypt entries are accepted \
                 (create them with htpasswd -B)"
            ));
        }
        let well_formed = hash.len() == 60
            && hash.as_bytes()[6] == b'$'
            && hash[4..6].bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return Err(format!(
                "line {number} (user {user:?}): a malformed bcrypt hash"
            ));
        }
        users
            .entry(user.to_string())
            .or_insert_with(|| hash.to_string());
    }
    Ok(users)
}

fn read_htpasswd(file: &Path) -> Result<HashMap<String, String>, HtpasswdError> {
    let text = std::fs::read_to_string(file).map_err(|e| HtpasswdError {
        file: file.to_path_buf(),
        message: format!("cannot read it: {e}"),
        unreadable: true,
    })?;
    parse_htpasswd(&text).map_err(|message| HtpasswdError {
        file: file.to_path_buf(),
        message,
        unreadable: false,
    })
}

/// `Authorization: Basic ...`: `Ok(None)` when absent (or empty
/// credentials, which some clients send when they have none).
fn basic_credentials(
    authorization: Option<&str>,
) -> Result<Option<(String, Vec<u8>)>, &'static str> {
    let Some(value) = authorization else {
        return Ok(None);
    };
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or("a malformed Authorization header")?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("only Basic authentication is accepted here");
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| "a malformed Authorization header")?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or("a malformed Authorization header")?;
    let user = String::from_utf8(decoded[..colon].to_vec())
        .map_err(|_| "a malformed Authorization header")?;
    let password = decoded[colon + 1..].to_vec();
    if user.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some((user, password)))
}

/// A user name as a log line shows it: at most [`LOGGED_USER_CHARS`]
/// characters (the rest is cut, marked with `…`).
fn logged_user(user: &str) -> String {
    match user.char_indices().nth(LOGGED_USER_CHARS) {
        Some((end, _)) => format!("{}…", &user[..end]),
        None => user.to_string(),
    }
}

impl HtpasswdAuth {
    /// Reads `file` (bcrypt entries only).
    ///
    /// # Errors
    /// When the file cannot be read, or a line is not `user:bcrypt-hash`
    /// (the error names the file and the line).
    pub fn open(file: &Path) -> Result<Self, HtpasswdError> {
        let version = FileVersion::of(file);
        let users = read_htpasswd(file)?;
        let mut salt = [0u8; 32];
        salt[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        salt[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let slots = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2);
        Ok(Self {
            file: file.to_path_buf(),
            realm: DEFAULT_REALM.to_string(),
            anonymous_pull: false,
            reload_every: RELOAD_CHECK,
            loaded: RwLock::new(Loaded {
                users: Arc::new(users),
                version,
                checked: Instant::now(),
                problem: None,
            }),
            verified: Mutex::default(),
            failures: Mutex::default(),
            failure_lines: std::sync::atomic::AtomicU64::new(0),
            salt,
            bcrypt: BcryptQueue::new(slots, slots.saturating_mul(QUEUED_PER_SLOT)),
        })
    }

    /// Lets requests that only read repositories through without
    /// credentials.
    pub fn with_anonymous_pull(mut self, anonymous_pull: bool) -> Self {
        self.anonymous_pull = anonymous_pull;
        self
    }

    /// Names `realm` in challenges (default `stowage`).
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Checks the file for changes at most this often (default 5 s).
    pub fn with_reload_interval(mut self, every: Duration) -> Self {
        self.reload_every = every;
        self
    }

    /// Runs at most `running` bcrypt verifications at once (default: one
    /// per core, at least 2) and lets at most `queued` more wait for a slot
    /// (default 16 per slot); past that, credentials that need bcrypt get
    /// 429 with `Retry-After`.
    pub fn with_bcrypt_limits(mut self, running: usize, queued: usize) -> Self {
        self.bcrypt = BcryptQueue::new(running, queued);
        self
    }

    /// How many users the file has (none while it cannot be used).
    pub fn users(&self) -> usize {
        self.current().len()
    }

    /// The users, read again when the file changed; none while the file
    /// cannot be used.
    fn current(&self) -> Users {
        {
            let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
            if loaded.checked.elapsed() < self.reload_every {
                return loaded.users.clone();
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        if loaded.checked.elapsed() < self.reload_every {
            return loaded.users.clone();
        }
        loaded.checked = Instant::now();
        let version = FileVersion::of(&self.file);
        let unchanged = version == loaded.version;
        if unchanged && loaded.problem.is_none() {
            return loaded.users.clone();
        }
        // Changed, replaced or gone; or it could not be used last time (it
        // is read again at every check until it can: a permission fixed
        // with chmod changes none of what `FileVersion` compares).
        loaded.version = version;
        match read_htpasswd(&self.file) {
            Ok(users) => {
                tracing::info!(file = %self.file.display(), users = users.len(), "htpasswd file read again");
                loaded.users = Arc::new(users);
                loaded.problem = None;
            }
            Err(e) => {
                let problem = if e.unreadable {
                    "authentication unavailable: the htpasswd file is missing or unreadable; \
                     every credential is refused until it is back"
                } else {
                    "authentication unavailable: the htpasswd file is not valid; \
                     every credential is refused until it is fixed"
                };
                // The same problem with the same file is logged once.
                if !(unchanged && loaded.problem == Some(problem)) {
                    tracing::error!(
                        error = %e,
                        "htpasswd file cannot be used: refusing every credential until a valid file is back"
                    );
                }
                loaded.users = Arc::new(HashMap::new());
                loaded.problem = Some(problem);
            }
        }
        loaded.users.clone()
    }

    /// A salted SHA-256 of `parts`, each prefixed by its length.
    fn salted(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.salt);
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(&h.finalize());
        out
    }

    /// The key of credentials in the caches.
    fn cache_key(&self, user: &str, password: &[u8]) -> [u8; 32] {
        self.salted(&[b"credentials", user.as_bytes(), password])
    }

    /// Checks `password` for `user`, asked from `client`.
    async fn check(&self, user: &str, password: Vec<u8>, client: Option<IpAddr>) -> Verdict {
        let users = self.current();
        let entry = users.get(user).cloned();
        let key = self.cache_key(user, &password);
        if let Some(hash) = &entry {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.hit(&key, hash) {
                return Verdict::Verified;
            }
        }
        let user_key = self.salted(&[b"user", user.as_bytes()]);
        let client = client.map(crate::net::rate_key);
        let now = Instant::now();
        {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if failures.known(&key, entry.as_deref(), now) {
                return Verdict::Refused;
            }
            if let Some(wait) = failures.throttled(client, &user_key, now) {
                return Verdict::Throttled(wait);
            }
        }
        // An unknown user is checked against some entry anyway, so the
        // answer takes as long as for a known one. No entries at all (an
        // empty file, or one that cannot be used): nothing to check.
        let Some(against) = entry.clone().or_else(|| users.values().next().cloned()) else {
            return Verdict::Refused;
        };
        let Some(matched) = self.bcrypt.verify(password, against).await else {
            return Verdict::Busy;
        };
        match entry {
            Some(hash) if matched => {
                self.verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, hash);
                Verdict::Verified
            }
            entry => {
                self.failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(key, entry, client, user_key, Instant::now());
                Verdict::Refused
            }
        }
    }

    /// Logs a refused attempt, at most once per user and client every
    /// [`FAILURE_LOG_EVERY`], with the number left out since the last line.
    fn log_failure(&self, user: &str, client: Option<IpAddr>, reason: &'static str) {
        let client_text = client.map(|c| c.to_string()).unwrap_or_default();
        let key = self.salted(&[b"log", user.as_bytes(), client_text.as_bytes()]);
        let logged = self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log_now(key, Instant::now());
        if let Some(suppressed) = logged {
            self.failure_lines.fetch_add(1, Ordering::Relaxed);
            let client = if client_text.is_empty() {
                "unknown"
            } else {
                client_text.as_str()
            };
            tracing::warn!(
                user = ?logged_user(user),
                client,
                reason,
                suppressed,
                "authentication failed"
            );
        }
    }

    fn challenge(&self, message: &str) -> Challenge {
        Challenge {
            www_authenticate: format!("Basic realm=\"{}\"", self.realm.replace('"', "'")),
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// Verifications started on the blocking pool so far.
    #[cfg(test)]
    fn bcrypt_runs(&self) -> u64 {
        self.bcrypt.started.load(Ordering::Relaxed)
    }
}

impl Authenticator for HtpasswdAuth {
    fn authenticate<'a>(
        &'a self,
        authorization: Option<&'a str>,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<Identity, Challenge>> {
        self.authenticate_from(authorization, access, None)
    }

    fn authenticate_from<'a>(
        &'a self,
        authorization: Option<&'a str>,
        access: &'a Access,
        client: Option<IpAddr>,
    ) -> BoxFuture<'a, Result<Identity, Challenge>> {
        Box::pin(async move {
            match basic_credentials(authorization) {
                Err(why) => Err(self.challenge(why)),
                Ok(None) if self.anonymous_pull && access.is_pull_only() => {
                    Ok(Identity::anonymous())
                }
                Ok(None) => Err(self.challenge("authentication required")),
                Ok(Some((user, password))) => match self.check(&user, password, client).await {
                    Verdict::Verified => Ok(Identity::user(user)),
                    Verdict::Refused => {
                        self.log_failure(&user, client, "unknown user or wrong password");
                        Err(self.challenge("invalid user name or password"))
                    }
                    Verdict::Throttled(wait) => {
                        self.log_failure(&user, client, "too many failures: throttled");
                        Err(Challenge {
                            retry_after: Some(wait),
                            ..self.challenge(
                                "too many failed attempts from this client or for this user; \
                                 retry later",
                            )
                        })
                    }
                    Verdict::Busy => {
                        self.log_failure(&user, client, "too many verifications waiting");
                        Err(Challenge {
                            retry_after: Some(BUSY_RETRY),
                            ..self.challenge("too many logins at once; retry shortly")
                        })
                    }
                },
            }
        })
    }

    fn readiness(&self) -> Result<(), String> {
        let _ = self.current();
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        match loaded.problem {
            Some(problem) => Err(problem.to_string()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn basic(user: &str, password: &str) -> Option<String> {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(format!("Basic {token}"))
    }

    /// An htpasswd line for `user` with `password` at bcrypt `cost`.
    fn entry(user: &str, password: &str, cost: u32) -> String {
        let hash = bcrypt::hash(password, cost)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        format!("{user}:{hash}\n")
    }

    /// Replaces `file` with `text` as a new file (a new inode), the way
    /// editors and Kubernetes secret updates do.
    fn replace(file: &Path, text: &str) {
        let next = file.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, file).unwrap();
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn htpasswd_lines() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let y = hash.replacen("$2b$", "$2y$", 1);
        let text = format!("# users\n\nalice:{y}\nbob:{hash}\nalice:{hash}\n");
        let users = parse_htpasswd(&text).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users["alice"], y, "the first entry counts");
        let err = parse_htpasswd("carol:$apr1$abc$def\n").unwrap_err();
        assert!(
            err.contains("line 1") && err.contains("htpasswd -B"),
            "{err}"
        );
        let err = parse_htpasswd("dave:{SHA}abc=\n").unwrap_err();
        assert!(err.contains("SHA-1"), "{err}");
        assert!(parse_htpasswd("no colon here\n").is_err());
        assert!(parse_htpasswd(":$2y$05$x\n").is_err());
        assert!(parse_htpasswd("eve:$2y$05$short\n").is_err());
    }

    #[test]
    fn basic_headers() {
        assert_eq!(basic_credentials(None), Ok(None));
        assert_eq!(basic_credentials(basic("", "").as_deref()), Ok(None));
        assert_eq!(
            basic_credentials(basic("a", "b:c").as_deref()),
            Ok(Some(("a".to_string(), b"b:c".to_vec())))
        );
        assert!(basic_credentials(Some("Bearer xyz")).is_err());
        assert!(basic_credentials(Some("Basic !!!")).is_err());
        // What the router passes for a value that is not text.
        assert!(basic_credentials(Some("\u{fffd}")).is_err());
    }

    #[tokio::test]
    async fn verifies_caches_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, entry("alice", "s3cret", 4)).unwrap();
        let auth = HtpasswdAuth::open(&file).unwrap();
        let push = Access::repository("app", Action::Push);
        let pull = Access::repository("app", Action::Pull);
        let who = auth
            .authenticate(basic("alice", "s3cret").as_deref(), &push)
            .await
            .unwrap();
        assert_eq!(who, Identity::user("alice"));
        // Cached: the same answer again.
        let who = auth
            .authenticate(basic("alice", "s3cret").as_deref(), &push)
            .await
            .unwrap();
        assert_eq!(who.user.as_deref(), Some("alice"));
        assert_eq!(auth.verified.lock().unwrap().entries.len(), 1);
        assert_eq!(auth.bcrypt_runs(), 1);
        for (user, password) in [("alice", "wrong"), ("mallory", "s3cret")] {
            let c = auth
                .authenticate(basic(user, password).as_deref(), &pull)
                .await
                .unwrap_err();
            assert_eq!(c.www_authenticate, "Basic realm=\"stowage\"");
            assert_eq!(c.status(), 401);
            assert!(!c.message.contains(password));
        }
        assert!(auth.authenticate(None, &pull).await.is_err());
        let auth = auth.with_anonymous_pull(true);
        assert_eq!(
            auth.authenticate(None, &pull).await.unwrap(),
            Identity::anonymous()
        );
        assert!(auth.authenticate(None, &push).await.is_err());
        assert!(auth.authenticate(None, &Access::registry()).await.is_err());
        assert!(auth
            .authenticate(basic("alice", "wrong").as_deref(), &pull)
            .await
            .is_err());
        let mount = Access::repository("dst", Action::Push).and("src", Action::Pull);
        assert!(!mount.is_pull_only());
    }

    /// A verification keeps its places until bcrypt is done, even when the
    /// client that asked has gone; the queue behind the slots is bounded
    /// and answers 429 when full.
    #[tokio::test]
    async fn a_verification_keeps_its_place_after_its_client_leaves_and_the_queue_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        // Slow enough (cost 8) to still run while the test goes on.
        std::fs::write(&file, entry("alice", "s3cret", 8)).unwrap();
        let auth = HtpasswdAuth::open(&file).unwrap().with_bcrypt_limits(1, 1);
        let push = Access::repository("app", Action::Push);

        // A client that disconnects once its verification runs: polled
        // once, then dropped.
        let first = basic("alice", "guess-1");
        assert!(auth
            .authenticate(first.as_deref(), &push)
            .now_or_never()
            .is_none());
        assert_eq!(auth.bcrypt_runs(), 1);

        // Its verification still holds the only slot: the next one waits
        // in the queue instead of starting a second bcrypt.
        let second = basic("alice", "guess-2");
        let mut waiting = auth.authenticate(second.as_deref(), &push);
        assert!(futures::poll!(&mut waiting).is_pending());
        assert_eq!(
            auth.bcrypt_runs(),
            1,
            "the slot was not freed by the client leaving"
        );

        // The queue (one place) is full: refused at once, with Retry-After.
        let c = auth
            .authenticate(basic("alice", "guess-3").as_deref(), &push)
            .await
            .unwrap_err();
        assert_eq!(c.retry_after, Some(BUSY_RETRY));
        assert_eq!(c.status(), 429);
        let error = RegistryError::from(c);
        assert_eq!(error.code, ErrorCode::TooManyRequests);
        assert!(error
            .headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case(RETRY_AFTER.as_str()) && value == "1"));

        // The waiting one is answered once the slot is free.
        let c = waiting.await.unwrap_err();
        assert_eq!(c.retry_after, None);
        assert_eq!(auth.bcrypt_runs(), 2);
    }

    /// The same wrong credentials again are refused without bcrypt, until
    /// the user's entry changes.
    #[tokio::test]
    async fn the_same_wrong_credentials_again_cost_no_bcrypt() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, entry("alice", "s3cret", 4)).unwrap();
        let auth = HtpasswdAuth::open(&file)
            .unwrap()
            .with_reload_interval(Duration::ZERO);
        let pull = Access::repository("app", Action::Pull);
        for _ in 0..5 {
            let c = auth
                .authenticate(basic("alice", "wrong").as_deref(), &pull)
                .await
                .unwrap_err();
            assert_eq!(c.status(), 401);
        }
        for _ in 0..3 {
            assert!(auth
                .authenticate(basic("nobody", "x").as_deref(), &pull)
                .await
                .is_err());
        }
        assert_eq!(auth.bcrypt_runs(), 2, "one per distinct failure");
        // The right password is not held back by the failures.
        assert!(auth
            .authenticate(basic("alice", "s3cret").as_deref(), &pull)
            .await
            .is_ok());
        assert_eq!(auth.bcrypt_runs(), 3);
        // "wrong" becomes alice's password: the remembered failure no
        // longer applies.
        replace(&file, &entry("alice", "wrong", 4));
        assert!(auth
            .authenticate(basic("alice", "wrong").as_deref(), &pull)
            .await
            .is_ok());
    }

    /// A client (an IPv4 address, an IPv6 /64) with 10 failures, or a user
    /// with 50, within 30 s gets 429 for new credentials; verified ones
    /// keep working, other clients and users are not affected.
    #[tokio::test]
    async fn clients_and_users_that_fail_too_often_are_throttled() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(
            &file,
            format!("{}{}", entry("alice", "s3cret", 4), entry("bob", "pw", 4)),
        )
        .unwrap();
        let auth = HtpasswdAuth::open(&file).unwrap();
        let pull = Access::repository("app", Action::Pull);
        let attacker = ip("203.0.113.7");
        let attempt = |user: &str, password: &str, client| {
            let headers = basic(user, password);
            let auth = &auth;
            let pull = &pull;
            async move {
                auth.authenticate_from(headers.as_deref(), pull, client)
                    .await
            }
        };
        // bob's right password from the attacker's address, verified
        // before the attack, stays usable from there.
        assert!(attempt("bob", "pw", attacker).await.is_ok());
        for i in 0..FAILURES_PER_CLIENT {
            let c = attempt("alice", &format!("guess-{i}"), attacker)
                .await
                .unwrap_err();
            assert_eq!(c.status(), 401, "failure {i}");
        }
        let runs = auth.bcrypt_runs();
        let c = attempt("alice", "guess-next", attacker).await.unwrap_err();
        assert_eq!(c.status(), 429);
        let wait = c.retry_after.unwrap();
        assert!(wait > Duration::ZERO && wait <= FAILURE_WINDOW, "{wait:?}");
        // Throttled: no bcrypt, whatever the user, right password or not.
        let c = attempt("alice", "s3cret", attacker).await.unwrap_err();
        assert_eq!(c.status(), 429);
        assert_eq!(auth.bcrypt_runs(), runs);
        // Already verified credentials keep working from there.
        assert!(attempt("bob", "pw", attacker).await.is_ok());
        // Another client is not throttled.
        assert!(attempt("alice", "s3cret", ip("198.51.100.1")).await.is_ok());

        // An IPv6 client is counted by its /64.
        for i in 0..FAILURES_PER_CLIENT {
            let client = ip(&format!("2001:db8:1:2::{:x}", i + 1));
            assert!(attempt("carol", &format!("x{i}"), client).await.is_err());
        }
        let c = attempt("carol", "y", ip("2001:db8:1:2:ffff::1"))
            .await
            .unwrap_err();
        assert_eq!(c.status(), 429);
        let c = attempt("carol", "y", ip("2001:db8:1:3::1"))
            .await
            .unwrap_err();
        assert_eq!(c.status(), 401, "another /64");

        // One user attacked from many addresses.
        for i in 0..FAILURES_PER_USER {
            let client = ip(&format!("10.0.{}.{}", i / 200, i % 200 + 1));
            let c = attempt("bob", &format!("guess-{i}"), client)
                .await
                .unwrap_err();
            assert_eq!(c.status(), 401, "failure {i}");
        }
        let c = attempt("bob", "another", ip("10.9.9.9")).await.unwrap_err();
        assert_eq!(c.status(), 429);
        // bob's verified password still works; alice is not affected.
        assert!(attempt("bob", "pw", ip("10.9.9.9")).await.is_ok());
        assert!(attempt("alice", "s3cret", ip("10.9.9.10")).await.is_ok());
    }

    #[test]
    fn failure_windows_and_log_lines() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        let key = [1u8; 32];
        assert_eq!(f.log_now(key, t0), Some(0));
        for s in 1..=3 {
            assert_eq!(f.log_now(key, t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(f.log_now([2u8; 32], t0), Some(0), "another user or client");
        assert_eq!(f.log_now(key, t0 + Duration::from_secs(11)), Some(3));
        assert_eq!(f.log_now(key, t0 + Duration::from_secs(12)), None);

        // Failures count within their window only.
        let user = [3u8; 32];
        let client = "192.0.2.1".parse().ok();
        for i in 0..FAILURES_PER_CLIENT {
            f.record([i as u8; 32], None, client, user, t0);
        }
        assert!(f.throttled(client, &user, t0).is_some());
        assert!(f.throttled(client, &user, t0 + FAILURE_WINDOW).is_none());
        assert!(f.known(&[0u8; 32], None, t0 + Duration::from_secs(1)));
        assert!(!f.known(&[0u8; 32], Some("$2y$changed"), t0));
        assert!(!f.known(&[1u8; 32], None, t0 + FAILURE_WINDOW));

        // Bounded: the oldest go.
        let mut map = HashMap::new();
        for i in 0..FAILURE_ENTRIES + 10 {
            let key: IpAddr = std::net::Ipv4Addr::from(i as u32).into();
            count(&mut map, key, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(map.len(), FAILURE_ENTRIES);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(29_001)), 30);
    }

    /// Refused attempts are logged with the user and the client, at most
    /// once per user and client every 10 s; never the password.
    #[tokio::test]
    async fn failed_logins_are_logged_at_a_limited_rate() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, entry("alice", "s3cret", 4)).unwrap();
        let auth = HtpasswdAuth::open(&file).unwrap();
        let pull = Access::repository("app", Action::Pull);
        let (lines, guard) = crate::server::test_log::capture();
        for _ in 0..5 {
            let headers = basic("alice", "not-her-password");
            assert!(auth
                .authenticate_from(headers.as_deref(), &pull, ip("203.0.113.7"))
                .await
                .is_err());
        }
        let headers = basic("alice", "not-her-password");
        assert!(auth
            .authenticate_from(headers.as_deref(), &pull, ip("198.51.100.2"))
            .await
            .is_err());
        drop(guard);
        // Five failures from one client and one from another: two lines.
        // (Counted by the authenticator: tracing's per-callsite interest is
        // process-wide, so a capture on this thread can miss events while
        // other tests run.)
        assert_eq!(auth.failure_lines.load(Ordering::Relaxed), 2);
        let failed: Vec<String> = lines
            .all()
            .into_iter()
            .filter(|l| l.contains("authentication failed"))
            .collect();
        if !failed.is_empty() {
            assert!(
                failed[0].contains("alice") && failed[0].contains("203.0.113.7"),
                "{failed:#?}"
            );
        }
        assert!(lines.all().iter().all(|l| !l.contains("not-her-password")));
    }

    /// A file that goes away or turns invalid refuses every credential
    /// (even verified ones) until a valid file is back, and says so in
    /// its readiness, naming neither the file nor a user.
    #[tokio::test]
    async fn a_file_that_goes_away_or_turns_invalid_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, entry("alice", "s3cret", 4)).unwrap();
        let auth = HtpasswdAuth::open(&file)
            .unwrap()
            .with_reload_interval(Duration::ZERO);
        let push = Access::repository("app", Action::Push);
        let right = basic("alice", "s3cret");
        assert!(auth.authenticate(right.as_deref(), &push).await.is_ok());
        assert_eq!(auth.readiness(), Ok(()));

        std::fs::remove_file(&file).unwrap();
        let c = auth
            .authenticate(right.as_deref(), &push)
            .await
            .unwrap_err();
        assert_eq!(c.status(), 401);
        let why = auth.readiness().unwrap_err();
        assert!(why.contains("missing"), "{why}");
        assert_eq!(auth.users(), 0);

        replace(&file, "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
        assert!(auth.authenticate(right.as_deref(), &push).await.is_err());
        let why = auth.readiness().unwrap_err();
        assert!(why.contains("not valid"), "{why}");
        for secret in ["alice", dir.path().to_str().unwrap()] {
            assert!(!why.contains(secret), "{secret} in {why}");
        }

        replace(&file, &entry("alice", "s3cret", 4));
        assert!(auth.authenticate(right.as_deref(), &push).await.is_ok());
        assert_eq!(auth.readiness(), Ok(()));
        assert_eq!(auth.users(), 1);
    }
}
