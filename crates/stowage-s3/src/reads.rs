//! Reads: GetObject (whole or a range; a broken body resumes, see
//! [`crate::resume`]) and HeadObject.

use chrono::{DateTime, Utc};
use stowage_core::{ByteRange, Error, GetOptions, GetResult, ObjectMeta, Result, StoragePath};

use crate::error::{from_sdk, DRIVER};
use crate::S3Storage;

pub(crate) fn to_chrono(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// What a GetObject answer covers.
#[derive(Clone, Copy)]
enum Answered {
    /// The whole object (a 200).
    Whole,
    /// Bytes from `start` of an object of `total` bytes (a 206).
    Part { start: u64, total: u64 },
}

/// `Content-Range: bytes START-LAST/TOTAL` as `(start, last + 1, total)`,
/// the total `None` when it is `*`.
pub(crate) fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    if last < first {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first, last.checked_add(1)?, total))
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
        // What the answer covers: the Content-Range of a 206, or the whole
        // object for a 200 (a server, proxy or CDN that ignored `Range`).
        let answered = match (range, out.content_range()) {
            (None, _) => Answered::Whole,
            (Some(_), Some(cr)) => match parse_content_range(cr) {
                Some((start, end, total)) if end - start == length => Answered::Part {
                    start,
                    total: total.unwrap_or(length),
                },
                _ => {
                    return Err(Error::Backend {
                        driver: DRIVER,
                        retryable: false,
                        message: format!(
                            "reading s3://{}/{key}: the answer's Content-Range {cr:?} does not \
                             match its {length} bytes",
                            self.bucket()
                        ),
                        operation: None,
                        source: None,
                    })
                }
            },
            (Some(_), None) => Answered::Whole,
        };
        let size = match answered {
            Answered::Whole => length,
            Answered::Part { total, .. } => total,
        };
        // The bytes asked for, against the object's size.
        let (start, end) = match range {
            Some(r) => {
                let asked = r.resolve(path, size)?;
                (asked.start, asked.end)
            }
            None => (0, length),
        };
        // Where the body starts: an answer that begins before the range
        // asked for is skipped up to it; one that begins after it (or ends
        // short of it) cannot serve the range.
        let body_start = match answered {
            Answered::Whole => 0,
            Answered::Part { start, .. } => start,
        };
        if body_start > start || (known_length.is_some() && body_start + length < end) {
            return Err(Error::Backend {
                driver: DRIVER,
                retryable: false,
                message: format!(
                    "reading s3://{}/{key}: asked for bytes {start}-{end}, the server answered \
                     bytes {body_start}-{}",
                    self.bucket(),
                    body_start + length
                ),
                operation: None,
                source: None,
            });
        }
        if range.is_some() && matches!(answered, Answered::Whole) {
            self.retries
                .counters
                .ranges_ignored
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                key = %key,
                start,
                end,
                size,
                "a ranged GetObject was answered with the whole object; serving only the range"
            );
        }
        let meta = ObjectMeta::new(path.clone(), size)
            .with_etag(out.e_tag().map(str::to_string))
            .with_last_modified(to_chrono(out.last_modified()))
            .with_content_type(out.content_type().map(str::to_string));
        // A body that breaks is asked for again from the next byte, pinned
        // to this answer's ETag (resume.rs).
        let etag = out.e_tag().map(str::to_string);
        let stream = crate::resume::resuming_stream(
            self.clone(),
            path.clone(),
            key.clone(),
            etag.clone(),
            crate::resume::Span {
                start,
                end: known_length.map(|_| end),
                skip: start - body_start,
            },
            out.body,
        );
        // Large reads fetch their next ranges beside this body.
        let stream = match known_length {
            Some(_) => self.read_ahead(path, key, etag.as_deref(), start, end, stream),
            None => stream,
        };
        Ok(GetResult::new(meta, start..end, stream))
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

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges_parse_strictly() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((0, 10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 6, None)));
        assert_eq!(parse_content_range("bytes 9-0/100"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
