//! Reads, stats, lists, deletes and copies.

use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use futures::TryStreamExt;
use stowage_core::{
    ByteRange, Error, GetOptions, GetResult, ListStream, ObjectMeta, PutOptions, Result,
    Sha256Digest, StoragePath,
};

use crate::error::{from_sdk, DRIVER};
use crate::S3Storage;

pub(crate) fn to_chrono(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// An SDK body as a stream of `Bytes`.
pub(crate) fn body_stream(body: SdkBody, what: String) -> stowage_core::ByteStream {
    stream::unfold(Some(body), move |body| {
        let what = what.clone();
        async move {
            let mut body = body?;
            match body.try_next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(body))),
                Ok(None) => None,
                Err(e) => Some((
                    Err(Error::backend(DRIVER, true, format!("reading {what}"), e)),
                    None,
                )),
            }
        }
    })
    .boxed()
}

fn total_from_content_range(range: Option<&str>) -> Option<u64> {
    range?.rsplit('/').next()?.parse().ok()
}

impl S3Storage {
    pub(crate) async fn get_object(
        &self,
        path: &StoragePath,
        options: GetOptions,
    ) -> Result<GetResult> {
        let key = self.object_key(path);
        let mut request = self.client.get_object().bucket(self.bucket()).key(&key);
        // A whole-object request, even when the range says "from 0" (S3
        // answers 416 to `bytes=0-` on an empty object).
        let range = options.range.filter(|r| *r != ByteRange::From(0));
        if let Some(r) = range {
            if let ByteRange::Bounded { start, end } = r {
                if start >= end {
                    let size = self.head_object(path).await?.size;
                    return Err(Error::InvalidRange {
                        path: path.to_string(),
                        range: r.to_string(),
                        size,
                    });
                }
            }
            if r == ByteRange::Suffix(0) {
                let size = self.head_object(path).await?.size;
                return Err(Error::InvalidRange {
                    path: path.to_string(),
                    range: r.to_string(),
                    size,
                });
            }
            request = request.range(r.to_http_header());
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) => {
                let err = from_sdk(e, self.op("GetObject", &key), path.as_str());
                return Err(match (err, range) {
                    (Error::Backend { message, .. }, Some(r))
                        if message.contains("InvalidRange") =>
                    {
                        let size = self.head_object(path).await?.size;
                        Error::InvalidRange {
                            path: path.to_string(),
                            range: r.to_string(),
                            size,
                        }
                    }
                    (err, _) => err,
                });
            }
        };
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        let size = if range.is_some() {
            total_from_content_range(out.content_range()).unwrap_or(length)
        } else {
            length
        };
        let start = match range {
            Some(r) => r.resolve(path, size)?.start,
            None => 0,
        };
        let meta = ObjectMeta::new(path.clone(), size)
            .with_etag(out.e_tag().map(str::to_string))
            .with_last_modified(to_chrono(out.last_modified()))
            .with_content_type(out.content_type().map(str::to_string));
        let stream = body_stream(out.body, format!("s3://{}/{key}", self.bucket()));
        Ok(GetResult::new(meta, start..start + length, stream))
    }

    pub(crate) async fn head_object(&self, path: &StoragePath) -> Result<ObjectMeta> {
        let key = self.object_key(path);
        let out = self
            .client
            .head_object()
            .bucket(self.bucket())
            .key(&key)
            .send()
            .await
            .map_err(|e| from_sdk(e, self.op("HeadObject", &key), path.as_str()))?;
        Ok(ObjectMeta::new(
            path.clone(),
            out.content_length().unwrap_or(0).max(0) as u64,
        )
        .with_etag(out.e_tag().map(str::to_string))
        .with_last_modified(to_chrono(out.last_modified()))
        .with_content_type(out.content_type().map(str::to_string)))
    }

    pub(crate) async fn put_small(
        &self,
        path: &StoragePath,
        data: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        if let Some(expected) = options.expected_digest {
            let actual = Sha256Digest::of(&data);
            if actual != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        let key = self.object_key(path);
        let size = data.len() as u64;
        let request = self
            .client
            .put_object()
            .bucket(self.bucket())
            .key(&key)
            .content_length(size as i64)
            .body(SdkBody::from(data))
            .set_content_type(options.content_type.clone());
        let out = self
            .with_write_settings_put(request)
            .send()
            .await
            .map_err(|e| from_sdk(e, self.op("PutObject", &key), path.as_str()))?;
        Ok(ObjectMeta::new(path.clone(), size)
            .with_etag(out.e_tag().map(str::to_string))
            .with_content_type(options.content_type))
    }

    pub(crate) async fn delete_object(&self, path: &StoragePath) -> Result<()> {
        let key = self.object_key(path);
        self.client
            .delete_object()
            .bucket(self.bucket())
            .key(&key)
            .send()
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
            .client
            .delete_objects()
            .bucket(self.bucket())
            .delete(delete)
            .send()
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
                source: None,
            });
        }
        Ok(count)
    }

    /// Every key under a raw key prefix, paging lazily.
    pub(crate) fn list_keys(&self, prefix: &str) -> BoxStream<'_, Result<String>> {
        self.list_raw(prefix).map_ok(|(key, _)| key).boxed()
    }

    fn list_raw(&self, prefix: &str) -> BoxStream<'_, Result<(String, aws_sdk_s3::types::Object)>> {
        let pages = self
            .client
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(prefix)
            .into_paginator()
            .send();
        let shown = prefix.to_string();
        stream::unfold(Some(pages), move |pages| {
            let shown = shown.clone();
            let op = self.op("ListObjectsV2", "");
            async move {
                let mut pages = pages?;
                match pages.next().await {
                    None => None,
                    Some(Ok(page)) => {
                        let objects: Vec<_> = page
                            .contents()
                            .iter()
                            .filter_map(|o| o.key().map(|k| Ok((k.to_string(), o.clone()))))
                            .collect();
                        Some((stream::iter(objects), Some(pages)))
                    }
                    Some(Err(e)) => Some((
                        stream::iter(vec![Err(from_sdk(
                            e,
                            crate::error::Op { key: &shown, ..op },
                            &shown,
                        ))]),
                        None,
                    )),
                }
            }
        })
        .flatten()
        .boxed()
    }

    pub(crate) fn list_objects(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        self.list_raw(&self.list_prefix(prefix))
            .try_filter_map(move |(key, o)| async move {
                let Some(path) = self.path_of(&key) else {
                    tracing::warn!(key = %key, "skipping a key that is not a valid storage path");
                    return Ok(None);
                };
                Ok(Some(
                    ObjectMeta::new(path, o.size().unwrap_or(0).max(0) as u64)
                        .with_etag(o.e_tag().map(str::to_string))
                        .with_last_modified(to_chrono(o.last_modified())),
                ))
            })
            .boxed()
    }
}
