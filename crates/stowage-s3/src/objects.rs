//! Reads, stats, lists, deletes and copies.

use std::collections::HashSet;

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

/// The page marker to ask for after a listing page, `None` when the
/// listing is complete. `next` is the page's continuation token (or, for
/// ListMultipartUploads, its key and upload-id markers together).
///
/// # Errors
/// A listing the server says is truncated but without a marker to go on
/// with, or with a marker it already gave (the listing would end short or
/// loop forever): the error names the operation, the bucket and prefix, and
/// the marker.
pub(crate) fn next_page_marker(
    operation: &str,
    what: &str,
    truncated: Option<bool>,
    next: Option<String>,
    seen: &mut HashSet<String>,
    listed: u64,
) -> Result<Option<String>> {
    let next = next.filter(|m| !m.is_empty());
    // A server that leaves IsTruncated out but sends a marker is followed.
    if !truncated.unwrap_or(next.is_some()) {
        return Ok(None);
    }
    let fail = |detail: String| Error::Backend {
        driver: DRIVER,
        retryable: false,
        message: format!(
            "{operation} {what}: {detail} after {listed} entries; stopping rather than \
             returning part of the listing or listing in a loop"
        ),
        operation: None,
        source: None,
    };
    match next {
        None => Err(fail(
            "the server said the listing goes on (IsTruncated) but sent no marker to continue \
             from"
                .into(),
        )),
        Some(marker) if !seen.insert(marker.clone()) => Err(fail(format!(
            "the server sent the marker {marker:?} a second time"
        ))),
        Some(marker) => Ok(Some(marker)),
    }
}

/// Where a ListObjectsV2 listing stands.
struct ListPages {
    prefix: String,
    token: Option<String>,
    seen: HashSet<String>,
    listed: u64,
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
        }
        let header = range.map(|r| r.to_http_header());
        let sent = self
            .retrying("GetObject", &key, || {
                let mut request = self.client.get_object().bucket(self.bucket()).key(&key);
                if let Some(h) = &header {
                    request = request.range(h.clone());
                }
                request.send()
            })
            .await;
        let out = match sent {
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
        let known_length = out.content_length().map(|l| l.max(0) as u64);
        let length = known_length.unwrap_or(0);
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
        // A body that breaks is asked for again from the next byte, pinned
        // to this answer's ETag (resume.rs).
        let stream = crate::resume::resuming_stream(
            self.clone(),
            path.clone(),
            key,
            out.e_tag().map(str::to_string),
            start,
            known_length.map(|l| start + l),
            out.body,
        );
        Ok(GetResult::new(meta, start..start + length, stream))
    }

    pub(crate) async fn head_object(&self, path: &StoragePath) -> Result<ObjectMeta> {
        let key = self.object_key(path);
        let out = self
            .retrying("HeadObject", &key, || {
                self.client
                    .head_object()
                    .bucket(self.bucket())
                    .key(&key)
                    .send()
            })
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
        // The server refuses bytes damaged on the way (BadDigest), and the
        // request is sent again from `data`.
        let md5 = if self.config.sends_content_md5() {
            Some(crate::upload::content_md5(data.clone()).await)
        } else {
            None
        };
        let out = self
            .retrying("PutObject", &key, || {
                let request = self
                    .client
                    .put_object()
                    .bucket(self.bucket())
                    .key(&key)
                    .content_length(size as i64)
                    .set_content_md5(md5.clone())
                    .body(SdkBody::from(data.clone()))
                    .set_content_type(options.content_type.clone());
                self.with_write_settings_put(request).send()
            })
            .await
            .map_err(|e| from_sdk(e, self.op("PutObject", &key), path.as_str()))?;
        Ok(ObjectMeta::new(path.clone(), size)
            .with_etag(out.e_tag().map(str::to_string))
            .with_content_type(options.content_type))
    }

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

    /// Every key under a raw key prefix, paging lazily.
    pub(crate) fn list_keys(&self, prefix: &str) -> BoxStream<'_, Result<String>> {
        self.list_raw(prefix).map_ok(|(key, _)| key).boxed()
    }

    /// Every object under a raw key prefix, a page at a time. Each page is
    /// retried on its own; a server that drops or repeats a continuation
    /// token ends the listing with an error (see [`next_page_marker`]),
    /// never with a silently short listing or a loop.
    fn list_raw(&self, prefix: &str) -> BoxStream<'_, Result<(String, aws_sdk_s3::types::Object)>> {
        let start = ListPages {
            prefix: prefix.to_string(),
            token: None,
            seen: HashSet::new(),
            listed: 0,
        };
        stream::unfold(Some(start), move |pages| async move {
            let mut pages = pages?;
            match self.list_page(&mut pages).await {
                Ok((objects, more)) => {
                    let items: Vec<_> = objects.into_iter().map(Ok).collect();
                    Some((stream::iter(items), more.then_some(pages)))
                }
                Err(e) => Some((stream::iter(vec![Err(e)]), None)),
            }
        })
        .flatten()
        .boxed()
    }

    /// One ListObjectsV2 page: its objects, and whether another follows
    /// (`pages.token` then says where it starts).
    async fn list_page(
        &self,
        pages: &mut ListPages,
    ) -> Result<(Vec<(String, aws_sdk_s3::types::Object)>, bool)> {
        let shown = pages.prefix.clone();
        let token = pages.token.clone();
        let page = self
            .retrying("ListObjectsV2", &shown, || {
                self.client
                    .list_objects_v2()
                    .bucket(self.bucket())
                    .prefix(&shown)
                    .set_continuation_token(token.clone())
                    .send()
            })
            .await
            .map_err(|e| from_sdk(e, self.op("ListObjectsV2", &shown), &shown))?;
        let objects: Vec<_> = page
            .contents()
            .iter()
            .filter_map(|o| o.key().map(|k| (k.to_string(), o.clone())))
            .collect();
        pages.listed += objects.len() as u64;
        let what = format!("s3://{}/{}", self.bucket(), shown);
        pages.token = next_page_marker(
            "ListObjectsV2",
            &what,
            page.is_truncated(),
            page.next_continuation_token().map(str::to_string),
            &mut pages.seen,
            pages.listed,
        )?;
        Ok((objects, pages.token.is_some()))
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::next_page_marker;

    #[test]
    fn listing_markers_end_follow_or_fail() {
        let mut seen = HashSet::new();
        let next = |t: Option<bool>, m: Option<&str>, seen: &mut HashSet<String>| {
            next_page_marker(
                "ListObjectsV2",
                "s3://b/p/",
                t,
                m.map(str::to_string),
                seen,
                7,
            )
        };
        assert_eq!(next(Some(false), None, &mut seen).unwrap(), None);
        assert_eq!(
            next(Some(false), Some("t1"), &mut seen).unwrap(),
            None,
            "not truncated: done"
        );
        assert_eq!(
            next(Some(true), Some("t1"), &mut seen).unwrap().as_deref(),
            Some("t1")
        );
        assert_eq!(
            next(None, Some("t2"), &mut seen).unwrap().as_deref(),
            Some("t2"),
            "no IsTruncated but a token: followed"
        );
        let repeated = next(Some(true), Some("t1"), &mut seen)
            .unwrap_err()
            .to_string();
        assert!(
            repeated.contains("ListObjectsV2 s3://b/p/") && repeated.contains("\"t1\""),
            "{repeated}"
        );
        for missing in [None, Some("")] {
            let e = next(Some(true), missing, &mut seen)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("IsTruncated") && e.contains("after 7 entries"),
                "{e}"
            );
        }
    }
}
