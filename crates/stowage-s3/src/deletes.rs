//! Deletes: one object, and everything below a prefix in DeleteObjects
//! batches of 1,000.

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::TryStreamExt;
use stowage_core::{Error, Result, StoragePath};

use crate::error::{from_sdk, DRIVER};
use crate::S3Storage;

impl S3Storage {
    pub(crate) async fn delete_object(&self, path: &StoragePath) -> Result<()> {
        let key = self.object_key(path);
        self.retrying("DeleteObject", &key, || {
            self.client
                .delete_object()
                .bucket(self.bucket())
                .key(&key)
                .send()
        })
        .await
        .map_err(|e| from_sdk(e, self.op("DeleteObject", &key), path.as_str()))?;
        Ok(())
    }

    /// Deletes by DeleteObjects batches of up to 1,000 keys.
    pub(crate) async fn delete_objects_below(&self, prefix: &StoragePath) -> Result<u64> {
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
