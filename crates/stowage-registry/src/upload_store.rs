//! The store of blob uploads in progress: the repository and the trait's
//! serializable [`UploadState`] of each upload, kept as small JSON objects
//! through the `Storage` trait.
//!
//! By default the records live in the registry's own storage location
//! (`_registry/uploads/`), so every replica of the registry sees every
//! upload (any replica continues an upload another started) and a restart
//! loses nothing. [`UploadStore::open`] keeps them in a local directory
//! instead (`stowage serve --state-dir`), for a single server.
//!
//! # Races between writers
//!
//! The storage has no compare-and-swap, so a record is never replaced: each
//! state is written under a key of its own,
//! `<id>/<offset, 20 digits>-<SHA-256 of the bytes so far>.json`, and the
//! current state of an upload is the record with the largest key (the
//! largest offset; among records at one offset, the largest hash, the same
//! choice on every replica). A writer holding a stale state (it read offset
//! X, another writer has since reached Y) cannot overwrite the newer record:
//! its own record has another key. When its record lands past Y it becomes
//! the current one, which is a consistent state too (the bytes up to X, and
//! its own chunk): the upload forked, the other client's next chunk gets
//! 416, and no state ever describes bytes it does not have.
//!
//! Two records can only share a key when they describe the same offset and
//! the same bytes (their SHA-256 covers everything received); either one is
//! then a correct description of the upload, so the last write winning is
//! harmless. Completion checks the client's digest against the current
//! record's running hash, and the storage assembles exactly the chunks
//! that record lists (each chunk under a key of its own, which the core's
//! upload code guarantees), so a race never stores a blob whose bytes differ
//! from its digest. As a second line of defence, an upload found with more
//! than one record at completion (a writer raced another) is checked by
//! reading the assembled bytes back before they are stored
//! (`UploadStore::get_contested`).
//!
//! After a record is written, the record it replaced is deleted (best
//! effort; a reader that listed it and finds it gone lists again). Removing
//! an upload deletes everything under its id; deleting something already
//! gone succeeds, so several replicas cleaning up at once do no harm.
//!
//! # Finishing records
//!
//! A finishing `PUT` that carries a body leaves a finishing record next to
//! the state its body reached (`<id>/finishing-<offset, 20 digits>-<SHA-256
//! so far>.json`, written before that state's record), naming its digest
//! and where its body started: a retry of that `PUT` (its answer lost, or
//! sent to another replica) finds it with the record and does not append
//! the body again. Its name is not a record's, so it is never taken for
//! the upload's state; it goes with the upload.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use stowage::{ErrorKind, PutOptions, Storage, StorageExt, StoragePath, UploadState};

use crate::errors::{ErrorCode, RegistryError};

/// An upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UploadRecord {
    /// The repository it was started in.
    pub repository: String,
    /// Where it stands.
    pub state: UploadState,
}

impl UploadRecord {
    /// An upload of `repository` standing at `state`.
    pub fn new(repository: impl Into<String>, state: UploadState) -> Self {
        Self {
            repository: repository.into(),
            state,
        }
    }
}

/// What a finishing `PUT` recorded with the state its body reached (see
/// the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Finishing {
    /// The digest the `PUT` named, `<algorithm>:<hex>`.
    pub(crate) digest: String,
    /// The upload's size before the `PUT`'s body: where the body started.
    pub(crate) from: u64,
}

/// Upload records, in the registry's storage or in a local directory.
#[derive(Debug, Clone)]
pub struct UploadStore {
    storage: Arc<dyn Storage>,
    root: StoragePath,
}

/// How many times a lookup lists again when the record it found was
/// replaced meanwhile.
const LOOKUP_ATTEMPTS: usize = 4;

fn storage_error(e: stowage::Error) -> RegistryError {
    // Never "unknown": the store could not be asked. A 500, whose details
    // go to the log only.
    RegistryError::new(ErrorCode::Unknown, format!("upload store: {}", e.chain()))
}

fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The offset and hash a record's file name carries, for ordering.
fn record_key(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(".json")?;
    let (offset, hash) = stem.split_once('-')?;
    if offset.len() != 20 || hash.len() != 64 {
        return None;
    }
    Some((offset.parse().ok()?, hash))
}

impl UploadStore {
    /// Records in the registry's own storage, under `_registry/uploads/`:
    /// shared by every replica on the same location, and kept across
    /// restarts.
    pub fn in_storage(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            root: crate::layout::upload_records(),
        }
    }

    /// Records in the local directory `dir` (created when missing), for a
    /// single server: a replica on another machine does not see them.
    ///
    /// # Errors
    /// When the directory cannot be created or used.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let local = stowage::local::LocalStorage::open(dir)
            .map_err(|e| std::io::Error::other(e.chain()))?;
        Ok(Self {
            storage: Arc::new(local),
            root: StoragePath::parse("uploads").expect("a valid path"),
        })
    }

    fn area(&self, id: &str) -> StoragePath {
        StoragePath::parse(format!("{}/{id}", self.root)).expect("ids are hex")
    }

    fn record_path(&self, state: &UploadState) -> StoragePath {
        StoragePath::parse(format!(
            "{}/{}/{:020}-{}.json",
            self.root,
            state.id,
            state.size,
            state.digest().hex()
        ))
        .expect("ids are hex")
    }

    fn finishing_path(&self, state: &UploadState) -> StoragePath {
        StoragePath::parse(format!(
            "{}/{}/finishing-{:020}-{}.json",
            self.root,
            state.id,
            state.size,
            state.digest().hex()
        ))
        .expect("ids are hex")
    }

    /// The path of the newest record of upload `id`, if any, and how many
    /// records the upload has.
    async fn newest(&self, id: &str) -> Result<(Option<StoragePath>, usize), RegistryError> {
        let paths: Vec<StoragePath> = self
            .storage
            .list(Some(&self.area(id)))
            .map_ok(|m| m.path)
            .try_collect()
            .await
            .map_err(storage_error)?;
        let records: Vec<(String, StoragePath)> = paths
            .into_iter()
            .filter_map(|p| {
                let name = p.as_str().rsplit('/').next()?.to_string();
                record_key(&name)?;
                Some((name, p))
            })
            .collect();
        let count = records.len();
        let newest = records
            .into_iter()
            .max_by(|(a, _), (b, _)| {
                let (ka, kb) = (record_key(a), record_key(b));
                ka.cmp(&kb)
            })
            .map(|(_, p)| p);
        Ok((newest, count))
    }

    /// The current record of upload `id`, whatever its repository, and how
    /// many records the upload has.
    async fn current(&self, id: &str) -> Result<Option<(UploadRecord, usize)>, RegistryError> {
        if !valid_id(id) {
            return Ok(None);
        }
        for _ in 0..LOOKUP_ATTEMPTS {
            let (Some(path), count) = self.newest(id).await? else {
                return Ok(None);
            };
            let bytes = match self.storage.get_bytes(&path).await {
                Ok(b) => b,
                // Replaced (and its old record pruned) meanwhile: look again.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(storage_error(e)),
            };
            let record: UploadRecord = serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::new(ErrorCode::BlobUploadInvalid, format!("upload record: {e}"))
            })?;
            record
                .state
                .check()
                .map_err(|e| RegistryError::new(ErrorCode::BlobUploadInvalid, e.to_string()))?;
            if record.state.id != id {
                return Err(RegistryError::new(
                    ErrorCode::BlobUploadInvalid,
                    "upload record filed under another upload's id",
                ));
            }
            return Ok(Some((record, count)));
        }
        Err(RegistryError::new(
            ErrorCode::Unknown,
            format!("upload store: the record of upload {id} kept changing while it was read"),
        ))
    }

    /// The record of upload `id` in `repository`: its newest state.
    ///
    /// # Errors
    /// `BLOB_UPLOAD_UNKNOWN` when there is none (or it belongs to another
    /// repository); a 500 when the storage fails.
    pub async fn get(&self, repository: &str, id: &str) -> Result<UploadRecord, RegistryError> {
        self.get_contested(repository, id)
            .await
            .map(|(record, _)| record)
    }

    /// As [`UploadStore::get`], and whether the upload has more than one
    /// record: normally a writer deletes the record it replaced, so a
    /// second one means another writer took part (two requests raced on
    /// the upload), and completion should not trust the chunk objects
    /// without checking what they hold.
    pub(crate) async fn get_contested(
        &self,
        repository: &str,
        id: &str,
    ) -> Result<(UploadRecord, bool), RegistryError> {
        let unknown = || {
            RegistryError::new(
                ErrorCode::BlobUploadUnknown,
                format!("no upload {id:?} in {repository}"),
            )
        };
        match self.current(id).await? {
            Some((record, count)) if record.repository == repository => Ok((record, count > 1)),
            _ => Err(unknown()),
        }
    }

    /// Saves a new record (a new upload, or a state that moved on), under a
    /// key of its own: an existing record is never replaced by another
    /// state (see the module documentation).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn put(&self, record: &UploadRecord) -> Result<(), RegistryError> {
        let json = serde_json::to_vec(record).expect("records serialize");
        self.storage
            .put(
                &self.record_path(&record.state),
                json.into(),
                PutOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    /// Saves `to`, the state `from` moved on to, then deletes `from`'s
    /// record (best effort: a left-over older record is never chosen while
    /// a newer one exists, and goes with the upload).
    ///
    /// # Errors
    /// Storage failures writing `to`.
    pub async fn advance(
        &self,
        from: &UploadRecord,
        to: &UploadRecord,
    ) -> Result<(), RegistryError> {
        self.put(to).await?;
        let old = self.record_path(&from.state);
        if old != self.record_path(&to.state) {
            if let Err(e) = self.storage.delete(&old).await {
                tracing::debug!(error = %e.chain(), "an older upload record stays until the upload ends");
            }
        }
        Ok(())
    }

    /// Records that a finishing `PUT` appended its body and reached `state`.
    /// Written before the record of `state`, so whoever finds that record
    /// finds this too.
    ///
    /// # Errors
    /// Storage failures.
    pub(crate) async fn mark_finishing(
        &self,
        state: &UploadState,
        finishing: &Finishing,
    ) -> Result<(), RegistryError> {
        let json = serde_json::to_vec(finishing).expect("finishing records serialize");
        self.storage
            .put(
                &self.finishing_path(state),
                json.into(),
                PutOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    /// What a finishing `PUT` recorded with `state`, if one did.
    ///
    /// # Errors
    /// `BLOB_UPLOAD_INVALID` for a record that is not one; storage failures.
    pub(crate) async fn finishing(
        &self,
        state: &UploadState,
    ) -> Result<Option<Finishing>, RegistryError> {
        match self.storage.get_bytes(&self.finishing_path(state)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                RegistryError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!("upload finishing record: {e}"),
                )
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Forgets an upload: every record of it. Records already gone are
    /// fine (another replica may be removing it too).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn remove(&self, id: &str) -> Result<(), RegistryError> {
        if !valid_id(id) {
            return Ok(());
        }
        match self.storage.delete_prefix(&self.area(id)).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Uploads whose newest record is older than `older_than`, for cleanup:
    /// each id with its current record (`None` when it cannot be read).
    ///
    /// # Errors
    /// Storage failures while listing.
    pub async fn stale(
        &self,
        older_than: Duration,
    ) -> Result<Vec<(String, Option<UploadRecord>)>, RegistryError> {
        // An age past what time can represent: nothing is that old.
        let Some(cutoff) = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
        else {
            return Ok(Vec::new());
        };
        let mut newest: std::collections::BTreeMap<String, Option<DateTime<Utc>>> =
            std::collections::BTreeMap::new();
        let mut listing = self.storage.list(Some(&self.root));
        while let Some(meta) = listing.try_next().await.map_err(storage_error)? {
            let rest = meta
                .path
                .as_str()
                .strip_prefix(self.root.as_str())
                .unwrap_or_default()
                .trim_start_matches('/');
            let Some(id) = rest.split('/').next().filter(|id| valid_id(id)) else {
                continue;
            };
            let entry = newest.entry(id.to_string()).or_default();
            *entry = (*entry).max(meta.last_modified);
        }
        drop(listing);
        let mut out = Vec::new();
        for (id, modified) in newest {
            if modified.is_none_or(|m| m >= cutoff) {
                continue;
            }
            let record = self.current(&id).await.ok().flatten().map(|(r, _)| r);
            out.push((id, record));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_order_by_offset_then_hash() {
        let a = format!("{:020}-{}.json", 5, "a".repeat(64));
        let b = format!("{:020}-{}.json", 40, "0".repeat(64));
        let c = format!("{:020}-{}.json", 40, "f".repeat(64));
        assert!(record_key(&a) < record_key(&b));
        assert!(record_key(&b) < record_key(&c));
        assert_eq!(record_key("x.json"), None);
        assert_eq!(
            record_key(&format!("{:020}-{}.tmp", 5, "a".repeat(64))),
            None
        );
    }

    #[tokio::test]
    async fn the_newest_record_wins_and_stale_writers_cannot_replace_it() {
        let storage: Arc<dyn Storage> = Arc::new(stowage::local::LocalStorage::in_memory());
        let store = UploadStore::in_storage(storage.clone());
        let start = UploadRecord {
            repository: "app".into(),
            state: storage.start_upload().await.unwrap(),
        };
        let id = start.state.id.clone();
        store.put(&start).await.unwrap();
        use futures::StreamExt;
        let chunk = |data: &'static [u8]| -> stowage::WriteStream<'static> {
            futures::stream::once(async move {
                Ok::<_, stowage::Error>(bytes::Bytes::from_static(data))
            })
            .boxed()
        };
        let ten = storage
            .write_chunk(&start.state, 0, chunk(b"0123456789"))
            .await
            .unwrap();
        let ten = UploadRecord {
            repository: "app".into(),
            state: ten,
        };
        store.advance(&start, &ten).await.unwrap();
        // A stale writer still holding the start state writes 3 bytes.
        let three = storage
            .write_chunk(&start.state, 0, chunk(b"abc"))
            .await
            .unwrap();
        store
            .put(&UploadRecord {
                repository: "app".into(),
                state: three,
            })
            .await
            .unwrap();
        let got = store.get("app", &id).await.unwrap();
        assert_eq!(
            got.state.size, 10,
            "the stale writer did not replace the newer record"
        );
        assert_eq!(got.state, ten.state);
        assert_eq!(
            store.get("other", &id).await.unwrap_err().code,
            ErrorCode::BlobUploadUnknown
        );
        // Nothing is stale yet; everything is after a zero age.
        assert!(store
            .stale(Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty());
        assert!(store.stale(Duration::MAX).await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let stale = store.stale(Duration::ZERO).await.unwrap();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].0, id);
        // A finishing record sits next to the state it describes and is
        // never taken for the upload's record.
        let finishing = Finishing {
            digest: "sha512:00".into(),
            from: 4,
        };
        store.mark_finishing(&ten.state, &finishing).await.unwrap();
        assert_eq!(store.finishing(&ten.state).await.unwrap(), Some(finishing));
        assert_eq!(store.finishing(&start.state).await.unwrap(), None);
        assert_eq!(store.get("app", &id).await.unwrap().state, ten.state);
        // Removing twice (two replicas cleaning up) is fine.
        store.remove(&id).await.unwrap();
        store.remove(&id).await.unwrap();
        assert_eq!(
            store.get("app", &id).await.unwrap_err().code,
            ErrorCode::BlobUploadUnknown
        );
        assert_eq!(
            store.finishing(&ten.state).await.unwrap(),
            None,
            "removing the upload removes its finishing record"
        );
    }
}
