//! Signing keys that follow their files, without a restart: the private
//! key files and key id files are looked at every
//! `cloudfront_key_reload_seconds` (size, modification time, inode, so an
//! atomic rename or Kubernetes' symlink swap is seen), read again once a
//! change has held still for one more look (a key and its id written one
//! after the other are taken together), and swapped in whole. Until the new
//! keys load, the old ones sign: a file that fails to load is logged and
//! changes nothing. [`reload_signing_keys`] reloads every CloudFront
//! location of the process at once (what `stowage serve` does on SIGHUP).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::SystemTime;

use super::storage::Inner;
use crate::config::{read_key_id, CloudFrontConfig};
use crate::signer::{check_key_for_mode, resolve_mode, CloudFrontSigner, PrivateKey, SignError};

/// The loaded signing keys: the first signs; the others are kept for
/// rotation (validated at start, ready to take over).
#[derive(Debug)]
pub(crate) struct Keys {
    pub(crate) signers: Vec<CloudFrontSigner>,
}

/// The keys in force, replaced whole by a reload.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The keys, or why there are none (the driver falls back to S3).
    pub(crate) keys: Result<Keys, SignError>,
    /// How many times the keys were replaced: part of the signed-URL cache
    /// key, so no URL signed with a replaced key is handed out again.
    pub(crate) generation: u64,
}

/// What a reload of the signing keys did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyReload {
    /// The files have not changed, or hold the keys in force.
    Unchanged,
    /// The files changed since the last look; they are read once they stay
    /// the same for one more look.
    Settling,
    /// New keys sign from now on.
    Loaded {
        /// The id of the key that signs now.
        key_id: String,
    },
    /// The changed files could not be used: the keys in force stay (or,
    /// without any, downloads keep falling back to S3).
    Kept {
        /// Why the new files were refused.
        reason: String,
    },
}

impl std::fmt::Display for KeyReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unchanged => f.write_str("signing keys unchanged"),
            Self::Settling => f.write_str("signing key files changing; read at the next look"),
            Self::Loaded { key_id } => write!(f, "signing with {key_id} from now on"),
            Self::Kept { reason } => {
                write!(f, "new signing keys refused, the old ones stay: {reason}")
            }
        }
    }
}

/// Size, modification time and inode of a file; `None` when it cannot be
/// looked at. Metadata follows symbolic links.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

/// Every file the keys are read from: each entry's private key file, then
/// its key id file when it has one.
fn watched_files(config: &CloudFrontConfig) -> Vec<&Path> {
    config
        .keys
        .iter()
        .flat_map(|e| std::iter::once(e.private_key_file.as_path()).chain(e.key_id_file.as_deref()))
        .collect()
}

fn stamps(config: &CloudFrontConfig) -> Vec<Option<Stamp>> {
    watched_files(config).into_iter().map(stamp).collect()
}

/// What the last looks saw.
#[derive(Debug, Default)]
struct Watch {
    /// The files as they were when the keys in force were read.
    loaded: Vec<Option<Stamp>>,
    /// A change seen at the last look, read when the next one sees the same.
    pending: Option<Vec<Option<Stamp>>>,
}

/// The signing keys of one location and what their files looked like.
#[derive(Debug)]
pub(crate) struct KeyRing {
    current: RwLock<Arc<Loaded>>,
    watch: Mutex<Watch>,
}

impl KeyRing {
    /// Reads the keys of `config` (an error is kept: the driver falls back
    /// to S3 until a reload succeeds).
    pub(crate) fn load(config: &CloudFrontConfig) -> Self {
        // Looked at before reading, so a change while reading is seen at
        // the next look.
        let seen = stamps(config);
        Self {
            current: RwLock::new(Arc::new(Loaded {
                keys: load_keys(config),
                generation: 0,
            })),
            watch: Mutex::new(Watch {
                loaded: seen,
                pending: None,
            }),
        }
    }

    /// The keys in force.
    pub(crate) fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Looks at the files and reads them again when they changed and held
    /// still since the last look (at once with `now`). Reads files: call it
    /// off the async workers.
    pub(crate) fn reload(&self, config: &CloudFrontConfig, now: bool) -> KeyReload {
        let seen = stamps(config);
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if !now {
            if seen == watch.loaded {
                watch.pending = None;
                return KeyReload::Unchanged;
            }
            if watch.pending.as_ref() != Some(&seen) {
                watch.pending = Some(seen);
                return KeyReload::Settling;
            }
        }
        // A failure is logged once per change of the files, not per look.
        watch.pending = None;
        watch.loaded = seen;
        let old = self.current();
        match (load_keys(config), &old.keys) {
            (Ok(new), Ok(held)) if same_keys(&new, held) => KeyReload::Unchanged,
            (Ok(new), _) => {
                let key_id = new.signers[0].key_id().to_string();
                tracing::info!(
                    key_id = %key_id,
                    keys = new.signers.len(),
                    "CloudFront signing keys reloaded: signing with {key_id} from now on"
                );
                self.replace(Loaded {
                    keys: Ok(new),
                    generation: old.generation + 1,
                });
                KeyReload::Loaded { key_id }
            }
            (Err(e), Ok(held)) => {
                tracing::warn!(
                    error = %e,
                    key_id = %held.signers[0].key_id(),
                    "CloudFront signing key files changed but cannot be used; the keys in \
                     force keep signing"
                );
                KeyReload::Kept {
                    reason: e.to_string(),
                }
            }
            (Err(e), Err(_)) => {
                tracing::warn!(
                    error = %e,
                    "CloudFront signing keys still unavailable; download URLs keep falling \
                     back to S3"
                );
                let reason = e.to_string();
                self.replace(Loaded {
                    keys: Err(e),
                    generation: old.generation,
                });
                KeyReload::Kept { reason }
            }
        }
    }

    fn replace(&self, loaded: Loaded) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded);
    }
}

/// Whether two key sets sign the same way: the same ids, hashes and keys
/// (compared by their public halves).
fn same_keys(a: &Keys, b: &Keys) -> bool {
    a.signers.len() == b.signers.len()
        && a.signers.iter().zip(&b.signers).all(|(x, y)| {
            x.key_id() == y.key_id()
                && x.hash() == y.hash()
                && x.key().public_key_pem() == y.key().public_key_pem()
        })
}

/// Reads and checks every key of `config`, with the ids of key id files
/// read again (they must fit the mode in force).
pub(crate) fn load_keys(config: &CloudFrontConfig) -> Result<Keys, SignError> {
    let mut signers = Vec::new();
    for entry in &config.keys {
        let key_id = match &entry.key_id_file {
            Some(file) => {
                let refused = |reason: String| SignError::Key {
                    source_name: file.display().to_string(),
                    reason,
                };
                let id = read_key_id(file).map_err(refused)?;
                resolve_mode(config.mode, &id).map_err(refused)?;
                id
            }
            None => entry.key_id.clone(),
        };
        let key = PrivateKey::from_pem_file(&entry.private_key_file)?;
        check_key_for_mode(
            &key,
            config.mode,
            &entry.private_key_file.display().to_string(),
        )?;
        signers.push(CloudFrontSigner::new(key_id, key).with_hash(config.hash));
    }
    if signers.is_empty() {
        return Err(SignError::Key {
            source_name: "configuration".into(),
            reason: "no signing key configured".into(),
        });
    }
    Ok(Keys { signers })
}

/// Every live CloudFront location of the process, for
/// [`reload_signing_keys`].
static LIVE: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

/// Remembers `inner` for [`reload_signing_keys`] and starts looking at its
/// key files every `cloudfront_key_reload_seconds` (when not 0, and when
/// called inside a Tokio runtime). Neither keeps the location alive.
pub(super) fn watch(inner: &Arc<Inner>) {
    {
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(inner));
    }
    let every = inner.config.key_reload_interval;
    if every.is_zero() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(inner);
    // Detached: the task ends at the first look after the location is gone.
    drop(runtime.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(inner) = weak.upgrade() else {
                break;
            };
            let looked = tokio::task::spawn_blocking(move || inner.reload_keys(false)).await;
            if looked.is_err() {
                // The runtime is shutting down.
                break;
            }
        }
    }));
}

/// Reads the signing keys of every CloudFront location of the process
/// again, now, from their files (private keys and key id files): the hook
/// for SIGHUP. Each location keeps its keys when the new files cannot be
/// used. Returns each location's distribution URL with what happened.
/// Reads files: call it from a blocking thread
/// (`tokio::task::spawn_blocking`) in async code.
pub fn reload_signing_keys() -> Vec<(String, KeyReload)> {
    let live: Vec<Arc<Inner>> = {
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|w| w.strong_count() > 0);
        live.iter().filter_map(Weak::upgrade).collect()
    };
    live.iter()
        .map(|inner| {
            (
                inner.config.distribution_url.clone(),
                inner.reload_keys(true),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use stowage_core::config::Secret;
    use stowage_core::{DirectUrl, DownloadUrlOptions, Storage, StoragePath, UrlSource};

    use super::*;
    use crate::signer::{decode_cloudfront_base64, HashAlgorithm, Policy};
    use crate::{CloudFrontedS3Storage, Route};

    const OLD_ID: &str = "K2JCJMDEHXQW5F";
    const NEW_ID: &str = "K3SECONDKEY001";

    fn testdata(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(testdata(name)).unwrap()
    }

    /// Writes `contents` to `path` through a rename, as an atomic update
    /// does.
    fn replace(path: &Path, contents: &[u8]) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// A location signing with the key in `key_file` and the id in
    /// `id_file`, looked at every `reload` (zero: only when told).
    fn config(
        distribution: &str,
        key_file: PathBuf,
        id_file: PathBuf,
        reload: Duration,
    ) -> CloudFrontConfig {
        let s3 = stowage_s3::S3Config::new("registry-bucket")
            .with_static_keys("AKIDEXAMPLE", Secret::new("not-a-real-secret"));
        let mut c = CloudFrontConfig::new(s3, distribution, OLD_ID, key_file);
        c.keys[0].key_id_file = Some(id_file);
        c.key_reload_interval = reload;
        c
    }

    fn options() -> DownloadUrlOptions {
        DownloadUrlOptions::default().with_client_ip("203.0.113.7".parse().unwrap())
    }

    /// The key id a canned-policy URL names, after checking its signature
    /// with the public half of that key (what CloudFront does).
    fn verified_key_id(url: &DirectUrl, keys: &[(&str, &PrivateKey)]) -> String {
        assert_eq!(url.source, UrlSource::CdnSigned, "{:?}", url.fallback);
        let (base, query) = url.url.split_once('?').unwrap();
        let param = |name: &str| {
            let prefix = format!("{name}=");
            query
                .split('&')
                .find_map(|p| p.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("{name} missing from {}", url.url))
                .to_string()
        };
        let expires: i64 = param("Expires").parse().unwrap();
        let signature = decode_cloudfront_base64(&param("Signature")).unwrap();
        let id = param("Key-Pair-Id");
        let key = keys
            .iter()
            .find(|(k, _)| *k == id)
            .unwrap_or_else(|| panic!("unknown key id {id}"))
            .1;
        let policy = Policy::canned(base, expires).to_json();
        assert!(
            key.verify(policy.as_bytes(), &signature, HashAlgorithm::Sha1),
            "the signature of {} does not verify with {id}'s key",
            url.url
        );
        id
    }

    /// Several tasks sign URLs without a pause while the key and its id
    /// are replaced together (a Kubernetes secret update: the `..data`
    /// symbolic link swapped). No request fails or falls back, and every
    /// URL verifies with the key in force when it was signed.
    #[cfg(unix)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_key_rotated_under_load_fails_no_request() {
        use std::os::unix::fs::symlink;

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (version, key, id) in [
            ("v1", "rsa2048-pkcs8.pem", OLD_ID),
            ("v2", "rsa2048-second.pem", NEW_ID),
        ] {
            std::fs::create_dir(d.join(version)).unwrap();
            std::fs::write(d.join(version).join("key.pem"), read(key)).unwrap();
            std::fs::write(d.join(version).join("key-id"), format!("{id}\n")).unwrap();
        }
        symlink("v1", d.join("..data")).unwrap();
        symlink("..data/key.pem", d.join("key.pem")).unwrap();
        symlink("..data/key-id", d.join("key-id")).unwrap();
        let mut c = config(
            "d111111abcdef8.cloudfront.net",
            d.join("key.pem"),
            d.join("key-id"),
            Duration::from_millis(25),
        );
        // Every URL signed, none from the cache.
        c.cache_size = 0;
        let storage = CloudFrontedS3Storage::new(c).await.unwrap();
        assert_eq!(storage.signer().unwrap().key_id(), OLD_ID);

        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let storage = storage.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut signed = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let path = StoragePath::parse(format!("blobs/{t}/{i}")).unwrap();
                        let before = storage.signer().unwrap().key_id().to_string();
                        let url = storage.download_url(&path, &options()).await;
                        let after = storage.signer().unwrap().key_id().to_string();
                        signed.push((url, before, after));
                        i += 1;
                    }
                    signed
                })
            })
            .collect();

        tokio::time::sleep(Duration::from_millis(300)).await;
        symlink("v2", d.join("..data.new")).unwrap();
        std::fs::rename(d.join("..data.new"), d.join("..data")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while storage.signer().unwrap().key_id() != NEW_ID {
            assert!(Instant::now() < deadline, "the new key was never loaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);

        let old_key = PrivateKey::from_pem_file(&testdata("rsa2048-pkcs8.pem")).unwrap();
        let new_key = PrivateKey::from_pem_file(&testdata("rsa2048-second.pem")).unwrap();
        let keys = [(OLD_ID, &old_key), (NEW_ID, &new_key)];
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for task in tasks {
            for (url, before, after) in task.await.unwrap() {
                let url = url.expect("no request fails").expect("a URL");
                let id = verified_key_id(&url, &keys);
                assert!(
                    id == before || id == after,
                    "signed with {id} while {before}, then {after}, was in force"
                );
                *by_key.entry(id).or_default() += 1;
            }
        }
        assert!(
            by_key.get(OLD_ID).is_some_and(|n| *n > 0)
                && by_key.get(NEW_ID).is_some_and(|n| *n > 0),
            "{by_key:?}"
        );
        assert_eq!(storage.route_count(Route::SigningFailed), 0);
        assert_eq!(storage.route_count(Route::KeyUnavailable), 0);
    }

    /// A key file replaced by one that cannot be used (cut short, of a
    /// type CloudFront does not take, an id of the other mode) is refused
    /// and logged; the key in force keeps signing.
    #[tokio::test]
    async fn a_key_that_cannot_be_loaded_leaves_the_old_one_signing() {
        let dir = tempfile::tempdir().unwrap();
        let (key_file, id_file) = (dir.path().join("key.pem"), dir.path().join("key-id"));
        let pem = read("rsa2048-pkcs8.pem");
        std::fs::write(&key_file, &pem).unwrap();
        std::fs::write(&id_file, OLD_ID).unwrap();
        let storage = CloudFrontedS3Storage::new(config(
            "d-kept.cloudfront.net",
            key_file.clone(),
            id_file.clone(),
            Duration::ZERO,
        ))
        .await
        .unwrap();
        let old_key = PrivateKey::from_pem(std::str::from_utf8(&pem).unwrap()).unwrap();
        let path = StoragePath::parse("blobs/x").unwrap();

        replace(&key_file, &pem[..pem.len() / 2]);
        let KeyReload::Kept { reason } = storage.reload_keys() else {
            panic!("a truncated key is refused");
        };
        assert!(reason.contains("key.pem"), "{reason}");
        replace(&key_file, &read("ed25519.pem"));
        let KeyReload::Kept { reason } = storage.reload_keys() else {
            panic!("an EdDSA key is refused");
        };
        assert!(reason.contains("EdDSA"), "{reason}");
        replace(&key_file, &pem);
        replace(&id_file, b"APKAEIBAERJR2EXAMPLE");
        let KeyReload::Kept { reason } = storage.reload_keys() else {
            panic!("a legacy key pair id in key group mode is refused");
        };
        assert!(
            reason.contains("key-id") && reason.contains("key_group"),
            "{reason}"
        );

        assert_eq!(storage.signer().unwrap().key_id(), OLD_ID);
        let url = storage
            .download_url(&path, &options())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(verified_key_id(&url, &[(OLD_ID, &old_key)]), OLD_ID);
        replace(&id_file, OLD_ID.as_bytes());
        assert_eq!(storage.reload_keys(), KeyReload::Unchanged, "the same key");
        assert_eq!(storage.route_count(Route::SigningFailed), 0);
    }

    /// A key file missing at start (S3 URLs, saying why) is picked up
    /// when it appears, without a restart.
    #[tokio::test]
    async fn a_key_missing_at_start_is_used_once_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let (key_file, id_file) = (dir.path().join("key.pem"), dir.path().join("key-id"));
        std::fs::write(&id_file, OLD_ID).unwrap();
        let storage = CloudFrontedS3Storage::new(config(
            "d-late.cloudfront.net",
            key_file.clone(),
            id_file,
            Duration::from_millis(20),
        ))
        .await
        .unwrap();
        let path = StoragePath::parse("blobs/x").unwrap();
        let url = storage
            .download_url(&path, &options())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(url.fallback.map(|f| f.cause), Some("key_unavailable"));

        replace(&key_file, &read("rsa2048-pkcs8.pem"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while storage.signer().is_err() {
            assert!(Instant::now() < deadline, "the key was never loaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let url = storage
            .download_url(&path, &options())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(url.source, UrlSource::CdnSigned);
    }

    /// After a reload (the SIGHUP hook, for every location of the process)
    /// the cache hands out no URL signed with the replaced key.
    #[tokio::test]
    async fn the_reload_hook_replaces_keys_and_cached_urls() {
        let dir = tempfile::tempdir().unwrap();
        let (key_file, id_file) = (dir.path().join("key.pem"), dir.path().join("key-id"));
        std::fs::write(&key_file, read("rsa2048-pkcs8.pem")).unwrap();
        std::fs::write(&id_file, OLD_ID).unwrap();
        let storage = CloudFrontedS3Storage::new(config(
            "d-hook.cloudfront.net",
            key_file.clone(),
            id_file.clone(),
            Duration::ZERO,
        ))
        .await
        .unwrap();
        let path = StoragePath::parse("blobs/x").unwrap();
        let first = storage
            .download_url(&path, &options())
            .await
            .unwrap()
            .unwrap();
        let again = storage
            .download_url(&path, &options())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.url, again.url);
        assert_eq!(storage.route_count(Route::Cached), 1);

        replace(&key_file, &read("rsa2048-second.pem"));
        replace(&id_file, NEW_ID.as_bytes());
        let reloaded = tokio::task::spawn_blocking(reload_signing_keys)
            .await
            .unwrap();
        let ours: Vec<&KeyReload> = reloaded
            .iter()
            .filter(|(distribution, _)| distribution == "https://d-hook.cloudfront.net")
            .map(|(_, outcome)| outcome)
            .collect();
        assert_eq!(
            ours,
            [&KeyReload::Loaded {
                key_id: NEW_ID.into()
            }]
        );
        let after = storage
            .download_url(&path, &options())
            .await
            .unwrap()
            .unwrap();
        let new_key = PrivateKey::from_pem_file(&testdata("rsa2048-second.pem")).unwrap();
        assert_eq!(verified_key_id(&after, &[(NEW_ID, &new_key)]), NEW_ID);
        assert_eq!(storage.route_count(Route::Cached), 1, "not from the cache");
        drop(storage);
        let gone = tokio::task::spawn_blocking(reload_signing_keys)
            .await
            .unwrap();
        assert!(
            gone.iter()
                .all(|(distribution, _)| distribution != "https://d-hook.cloudfront.net"),
            "a dropped location is not kept alive"
        );
    }
}
