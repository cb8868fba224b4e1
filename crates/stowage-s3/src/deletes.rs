//! Deletes: one object, and everything below a prefix in DeleteObjects
//! batches of 1,000 (or, for a server without DeleteObjects, one
//! DeleteObject per key with several in flight: the GCS profile).

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::TryStreamExt;
use stowage_core::{Error, Result, StoragePath};

use crate::error::{from_sdk, DRIVER};
use crate::S3Storage;

/// DeleteObject requests in flight when a prefix is deleted one key at a
/// time (servers without DeleteObjects).
const SINGLE_DELETES_IN_FLIGHT: usize = 16;

impl S3Storage {
    pub(crate) async fn delete_object(&self, path: &StoragePath) -> Result<()> {
        let key = self.object_key(path);
        self.delete_key(&key, path.as_str()).await
    }

    /// DeleteObject of `key` (`shown` in errors), retried. GCS answers 404
    /// `NoSuchKey` for a key that is not there (S3 answers 204): with the
    /// GCS profile that is the success the trait promises, also when an
    /// earlier attempt whose answer was lost deleted it.
    async fn delete_key(&self, key: &str, shown: &str) -> Result<()> {
        let sent = self
            .retrying("DeleteObject", key, || {
                self.client
                    .delete_object()
                    .bucket(self.bucket())
                    .key(key)
                    .send()
            })
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => match from_sdk(e, self.op("DeleteObject", key), shown) {
                Error::NotFound { .. } if self.config.profile.deleting_missing_is_404() => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Deletes by DeleteObjects batches of up to 1,000 keys; with a profile
    /// whose server has no DeleteObjects (GCS), one DeleteObject per key.
    pub(crate) async fn delete_objects_below(&self, prefix: &StoragePath) -> Result<u64> {
        if !self.config.profile.deletes_in_batches() {
            return self.delete_each_below(prefix).await;
        }
        let mut keys = self.list_keys(&self.list_prefix(Some(prefix)));
        let mut deleted = 0u64;
        let mut batch = Vec::with_capacity(1000);
        loop {
            let next = keys.try_next().await?;
            if let Some(key) = &next {
                batch.push(key.clone());
            }
            if batch.len() == 1000 || (next.is_none() && !batch.is_empty()) {
                deleted += self.delete_batch(std::mem::take(&mut batch)).await?;
            }
            if next.is_none() {
                return Ok(deleted);
            }
        }
    }

    /// Deletes every key below `prefix` with one DeleteObject each,
    /// [`SINGLE_DELETES_IN_FLIGHT`] at a time, as the listing goes (a
    /// listing paged by key is not disturbed by deleting what it already
    /// returned). Stops at the first failure; deletes are idempotent, so
    /// running it again finishes the job. Returns how many keys it deleted.
    async fn delete_each_below(&self, prefix: &StoragePath) -> Result<u64> {
        self.list_keys(&self.list_prefix(Some(prefix)))
            .map_ok(|key| async move { self.delete_key(&key, &key).await.map(|()| 1u64) })
            .try_buffer_unordered(SINGLE_DELETES_IN_FLIGHT)
            .try_fold(0u64, |deleted, one| async move { Ok(deleted + one) })
            .await
    }

    pub(crate) async fn delete_batch(&self, keys: Vec<String>) -> Result<u64> {
        let count = keys.len() as u64;
        let ids: Vec<ObjectIdentifier> = keys
            .iter()
            .map(|k| {
                ObjectIdentifier::builder()
                    .key(k)
                    .build()
                    .expect("key is set")
            })
            .collect();
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .expect("objects are set");
        let first = keys.first().cloned().unwrap_or_default();
        let out = self
            .retrying("DeleteObjects", &first, || {
                self.client
                    .delete_objects()
                    .bucket(self.bucket())
                    .delete(delete.clone())
                    .send()
            })
            .await
            .map_err(|e| from_sdk(e, self.op("DeleteObjects", &first), &first))?;
        if let Some(e) = out.errors().first() {
            return Err(Error::Backend {
                driver: DRIVER,
                retryable: false,
                message: format!(
                    "DeleteObjects s3://{}/{}: {} of {count} keys failed, first: {}",
                    self.bucket(),
                    e.key().unwrap_or(""),
                    out.errors().len(),
                    e.code().unwrap_or("error")
                ),
                operation: None,
                source: None,
            });
        }
        Ok(count)
    }
}
