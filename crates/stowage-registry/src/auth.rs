//! Authentication: the [`Authenticator`] the server asks before every API
//! request, and [`HtpasswdAuth`], HTTP Basic against an htpasswd file of
//! bcrypt entries (as `htpasswd -B` writes them and distribution reads
//! them).
//!
//! The server tells the authenticator what a request needs ([`Access`]:
//! pull or push on repositories, or the registry itself for `/v2/` and
//! `/metrics`) and gets back who made it ([`Identity`]) or a [`Challenge`]
//! (401 with its `WWW-Authenticate` value and an OCI `UNAUTHORIZED` body).
//! A bearer-token authenticator (distribution's `token` auth) fits the same
//! trait: it would check a token's signature and scopes against the
//! `Access` and answer `Bearer realm=...,service=...,scope=...` challenges.
//!
//! Passwords never leave this module: not in logs, not in errors, not in
//! the cache of verified credentials (keyed by a salted SHA-256).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use base64::Engine as _;
use futures::future::BoxFuture;
use sha2::Digest as _;
use tokio::sync::Semaphore;

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Reads: `GET` and `HEAD` of blobs, manifests, tags, referrers.
    Pull,
    /// Writes: uploads, manifest puts, deletes.
    Push,
}

/// One repository and what is done to it (a bearer token's scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The repository name.
    pub repository: String,
    /// What is done to it.
    pub action: Action,
}

/// What a request needs. No scopes: the registry itself (`/v2/`, the
/// endpoint clients probe to learn how to authenticate, and `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
/// `WWW-Authenticate: <www_authenticate>` and an `UNAUTHORIZED` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The `WWW-Authenticate` value, e.g. `Basic realm="stowage"`.
    pub www_authenticate: String,
    /// The error message for the client (never a password).
    pub message: String,
}

/// Decides who a request comes from and whether it may do what it asks.
/// The server calls it before each API request (not for `/healthz` and
/// `/readyz`).
pub trait Authenticator: Send + Sync + std::fmt::Debug + 'static {
    /// The request's identity, or the challenge it gets (401).
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<Identity, Challenge>>;
}

/// The realm `stowage serve` names in its challenges.
pub const DEFAULT_REALM: &str = "stowage";

/// How often the htpasswd file is checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// How many successful verifications are remembered.
const CACHE_ENTRIES: usize = 1024;

/// How long a successful verification is remembered.
const CACHE_TTL: Duration = Duration::from_secs(15 * 60);

/// A problem with an htpasswd file: unreadable, or an entry that is not
/// `user:bcrypt-hash`. Names the file and the line, never a hash.
#[derive(Debug)]
pub struct HtpasswdError {
    file: PathBuf,
    message: String,
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
    modified: Option<SystemTime>,
    checked: Instant,
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
        if self.entries.len() >= CACHE_ENTRIES {
            self.entries.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        if self.entries.len() >= CACHE_ENTRIES {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (hash, Instant::now()));
    }
}

/// HTTP Basic authentication against an htpasswd file of bcrypt entries
/// (`$2y$`, `$2b$`, `$2a$`; `htpasswd -B`). Every user may pull and push
/// every repository (as with distribution's htpasswd); with
/// [`HtpasswdAuth::with_anonymous_pull`], requests that only read
/// repositories need no credentials (wrong credentials are still refused).
///
/// bcrypt is slow on purpose (tens of milliseconds at the usual costs): it
/// runs on the blocking pool, a few at a time, and successful
/// verifications are remembered for 15 minutes in a bounded map (1024
/// entries) keyed by a salted SHA-256 of user and password, so a push of
/// hundreds of requests pays bcrypt once. Failures are not remembered. An
/// unknown user costs a bcrypt verification too, so timing does not tell
/// which users exist.
///
/// The file is read again when its modification time changes (checked at
/// most every 5 s); a file that becomes unreadable or invalid keeps the
/// users it had, with a warning in the log.
pub struct HtpasswdAuth {
    file: PathBuf,
    realm: String,
    anonymous_pull: bool,
    loaded: RwLock<Loaded>,
    verified: Mutex<Verified>,
    salt: [u8; 32],
    bcrypt_slots: Semaphore,
}

impl std::fmt::Debug for HtpasswdAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users = self
            .loaded
            .read()
            .map(|l| l.users.len())
            .unwrap_or_default();
        f.debug_struct("HtpasswdAuth")
            .field("file", &self.file)
            .field("realm", &self.realm)
            .field("anonymous_pull", &self.anonymous_pull)
            .field("users", &users)
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
    let error = |message: String| HtpasswdError {
        file: file.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(file).map_err(|e| error(format!("cannot read it: {e}")))?;
    parse_htpasswd(&text).map_err(error)
}

fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

/// `Authorization: Basic ...`: `Ok(None)` when absent (or empty
/// credentials, which some clients send when they have none).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, Vec<u8>)>, &'static str> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "a malformed Authorization header")?;
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

impl HtpasswdAuth {
    /// Reads `file` (bcrypt entries only).
    ///
    /// # Errors
    /// When the file cannot be read, or a line is not `user:bcrypt-hash`
    /// (the error names the file and the line).
    pub fn open(file: &Path) -> Result<Self, HtpasswdError> {
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
            loaded: RwLock::new(Loaded {
                users: Arc::new(users),
                modified: modified(file),
                checked: Instant::now(),
            }),
            verified: Mutex::default(),
            salt,
            bcrypt_slots: Semaphore::new(slots),
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

    /// How many users the file has.
    pub fn users(&self) -> usize {
        self.current().len()
    }

    /// The users, read again when the file changed.
    fn current(&self) -> Users {
        {
            let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
            if loaded.checked.elapsed() < RELOAD_CHECK {
                return loaded.users.clone();
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        if loaded.checked.elapsed() < RELOAD_CHECK {
            return loaded.users.clone();
        }
        loaded.checked = Instant::now();
        let now = modified(&self.file);
        if now != loaded.modified {
            match read_htpasswd(&self.file) {
                Ok(users) => {
                    tracing::info!(file = %self.file.display(), users = users.len(), "htpasswd file read again");
                    loaded.users = Arc::new(users);
                    loaded.modified = now;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "htpasswd file changed but cannot be used; keeping the users it had");
                }
            }
        }
        loaded.users.clone()
    }

    fn cache_key(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.salt);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password);
        let mut out = [0u8; 32];
        out.copy_from_slice(&h.finalize());
        out
    }

    /// Whether `password` is `user`'s.
    async fn verify(&self, user: &str, password: Vec<u8>) -> bool {
        let users = self.current();
        let hash = users.get(user).cloned();
        let key = self.cache_key(user, &password);
        if let Some(hash) = &hash {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.hit(&key, hash) {
                return true;
            }
        }
        // An unknown user is checked against some entry anyway, so the
        // answer takes as long as for a known one.
        let Some(against) = hash.clone().or_else(|| users.values().next().cloned()) else {
            return false;
        };
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let checked = tokio::task::spawn_blocking(move || {
            bcrypt::verify(&password, &against).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        match hash {
            Some(hash) if checked => {
                self.verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, hash);
                true
            }
            _ => false,
        }
    }

    fn challenge(&self, message: &str) -> Challenge {
        Challenge {
            www_authenticate: format!("Basic realm=\"{}\"", self.realm.replace('"', "'")),
            message: message.to_string(),
        }
    }
}

impl Authenticator for HtpasswdAuth {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<Identity, Challenge>> {
        Box::pin(async move {
            match basic_credentials(headers) {
                Err(why) => Err(self.challenge(why)),
                Ok(None) if self.anonymous_pull && access.is_pull_only() => {
                    Ok(Identity::anonymous())
                }
                Ok(None) => Err(self.challenge("authentication required")),
                Ok(Some((user, password))) => {
                    if self.verify(&user, password).await {
                        Ok(Identity::user(user))
                    } else {
                        tracing::info!(user = ?user, "authentication failed: unknown user or wrong password");
                        Err(self.challenge("invalid user name or password"))
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        h
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
        assert_eq!(basic_credentials(&HeaderMap::new()), Ok(None));
        assert_eq!(basic_credentials(&basic("", "")), Ok(None));
        assert_eq!(
            basic_credentials(&basic("a", "b:c")),
            Ok(Some(("a".to_string(), b"b:c".to_vec())))
        );
        let mut bearer = HeaderMap::new();
        bearer.insert(AUTHORIZATION, HeaderValue::from_static("Bearer xyz"));
        assert!(basic_credentials(&bearer).is_err());
        let mut junk = HeaderMap::new();
        junk.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(basic_credentials(&junk).is_err());
    }

    #[tokio::test]
    async fn verifies_caches_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let hash = bcrypt::hash("s3cret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        std::fs::write(&file, format!("alice:{hash}\n")).unwrap();
        let auth = HtpasswdAuth::open(&file).unwrap();
        let push = Access::repository("app", Action::Push);
        let pull = Access::repository("app", Action::Pull);
        let who = auth
            .authenticate(&basic("alice", "s3cret"), &push)
            .await
            .unwrap();
        assert_eq!(who, Identity::user("alice"));
        // Cached: the same answer again.
        let who = auth
            .authenticate(&basic("alice", "s3cret"), &push)
            .await
            .unwrap();
        assert_eq!(who.user.as_deref(), Some("alice"));
        assert_eq!(auth.verified.lock().unwrap().entries.len(), 1);
        for (user, password) in [("alice", "wrong"), ("mallory", "s3cret")] {
            let c = auth
                .authenticate(&basic(user, password), &pull)
                .await
                .unwrap_err();
            assert_eq!(c.www_authenticate, "Basic realm=\"stowage\"");
            assert!(!c.message.contains(password));
        }
        assert!(auth.authenticate(&HeaderMap::new(), &pull).await.is_err());
        let auth = auth.with_anonymous_pull(true);
        assert_eq!(
            auth.authenticate(&HeaderMap::new(), &pull).await.unwrap(),
            Identity::anonymous()
        );
        assert!(auth.authenticate(&HeaderMap::new(), &push).await.is_err());
        assert!(auth
            .authenticate(&HeaderMap::new(), &Access::registry())
            .await
            .is_err());
        assert!(auth
            .authenticate(&basic("alice", "wrong"), &pull)
            .await
            .is_err());
        let mount = Access::repository("dst", Action::Push).and("src", Action::Pull);
        assert!(!mount.is_pull_only());
    }
}
