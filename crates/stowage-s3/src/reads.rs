//! Reads: GetObject (whole or a range; a broken body resumes, see
//! [`crate::resume`]) and HeadObject.

use chrono::{DateTime, Utc};
use stowage_core::{ByteRange, Error, GetOptions, GetResult, ObjectMeta, Result, StoragePath};

use crate::error::from_sdk;
use crate::S3Storage;

pub(crate) fn to_chrono(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
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
}
