//! Reads: Get Blob (whole or a range; a broken body resumes, see
//! [`crate::resume`]) and Get Blob Properties.
//!
//! Ranges are checked against the blob's size from the answer, never taken
//! on trust: a range starting at or past the end is
//! [`Error::InvalidRange`] whatever the server answered (Azurite answers
//! `206` with `bytes 10240-10239/10240` to a range starting at the end of a
//! 10240-byte blob), an answer covering other bytes than asked fails, and a
//! `200` with the whole blob (a proxy that ignored the range) is served by
//! skipping to the range. Azure has no suffix ranges (`bytes=-n`; Azurite
//! answers 500): the size is read first and the range asked for from its
//! offset, pinned to the ETag read.

use reqwest::Method;
use stowage_core::{ByteRange, Error, GetOptions, GetResult, ObjectMeta, Result, StoragePath};

use crate::client::{content_length, header, meta_from, Call};
use crate::error::{into_error, DRIVER};
use crate::resume::Span;
use crate::AzureStorage;

/// A `Content-Range: bytes FIRST-LAST/TOTAL` value as (span, total): the
/// span (`first..last + 1`) `None` when it is `*` or not a span, the total
/// `None` when it is `*`; `None` when the value is not a byte range.
/// A Content-Range: the span (`first..last + 1`, `None` for `*`) and the
/// total (`None` for `*`).
pub(crate) type ContentRange = (Option<(u64, u64)>, Option<u64>);

pub(crate) fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let span = span.split_once('-').and_then(|(first, last)| {
        let first: u64 = first.trim().parse().ok()?;
        let last: u64 = last.trim().parse().ok()?;
        if last < first {
            return None;
        }
        Some((first, last.checked_add(1)?))
    });
    Some((span, total))
}

impl AzureStorage {
    pub(crate) async fn get_blob(
        &self,
        path: &StoragePath,
        options: GetOptions,
    ) -> Result<GetResult> {
        let name = self.blob_name(path);
        // A whole-blob request, even when the range says "from 0".
        let range = options.range.filter(|r| *r != ByteRange::From(0));
        let (header_value, pin) = match range {
            None => (None, None),
            Some(r @ ByteRange::Bounded { start, end }) if start >= end => {
                return Err(self.invalid_range(path, r, None).await);
            }
            Some(r @ ByteRange::Suffix(_)) => {
                let meta = self.blob_properties(path).await?;
                let asked = r.resolve(path, meta.size)?;
                (
                    Some(format!("bytes={}-{}", asked.start, asked.end - 1)),
                    meta.etag,
                )
            }
            Some(r) => (Some(r.to_http_header()), None),
        };
        let call = Call::blob(Method::GET, &name)
            .header_opt("x-ms-range", header_value)
            .header_opt("if-match", pin);
        let response = match self.send("GetBlob", &call).await {
            Ok(response) => response,
            Err(f) => {
                if let (true, Some(r)) = (f.has_status(416), range) {
                    let size = f
                        .status()
                        .and_then(|s| s.content_range.as_deref())
                        .and_then(parse_content_range)
                        .and_then(|(_, total)| total);
                    return Err(self.invalid_range(path, r, size).await);
                }
                return Err(into_error(f, self.op("GetBlob", &name), path.as_str()));
            }
        };
        let headers = response.headers().clone();
        let status = response.status().as_u16();
        let Some(length) = content_length(&headers) else {
            return Err(self.bad_answer(&name, "the answer has no Content-Length".into()));
        };
        // What the answer covers: the Content-Range of a 206, or the whole
        // blob for a 200.
        let (size, served) = match (status, range) {
            (206, Some(_)) => {
                let cr = header(&headers, "content-range").unwrap_or_default();
                match parse_content_range(&cr) {
                    Some((span, Some(total))) => (total, span),
                    _ => {
                        return Err(self.bad_answer(
                            &name,
                            format!("the answer's Content-Range {cr:?} does not give the size"),
                        ))
                    }
                }
            }
            _ => (length, Some((0, length))),
        };
        // The bytes asked for, against the blob's size.
        let (start, end) = match range {
            Some(r) => {
                let asked = r.resolve(path, size)?;
                (asked.start, asked.end)
            }
            None => (0, size),
        };
        let Some((body_start, body_end)) = served.filter(|(s, e)| e - s == length) else {
            return Err(self.bad_answer(
                &name,
                format!(
                    "asked for bytes {start}-{end}, the answer's Content-Range does not match \
                     its {length} bytes"
                ),
            ));
        };
        if body_start > start || body_end < end {
            return Err(self.bad_answer(
                &name,
                format!(
                    "asked for bytes {start}-{end}, the server answered bytes \
                     {body_start}-{body_end}"
                ),
            ));
        }
        if range.is_some() && status != 206 {
            self.retries
                .counters
                .ranges_ignored
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                blob = %name,
                start,
                end,
                size,
                "a ranged Get Blob was answered with the whole blob; serving only the range"
            );
        }
        let meta = meta_from(path, &headers, size);
        let stream = crate::resume::resuming_stream(
            self.clone(),
            path.clone(),
            name,
            meta.etag.clone(),
            Span {
                start,
                end,
                skip: start - body_start,
            },
            response,
        );
        Ok(GetResult::new(meta, start..end, stream))
    }

    /// Get Blob Properties.
    pub(crate) async fn blob_properties(&self, path: &StoragePath) -> Result<ObjectMeta> {
        let name = self.blob_name(path);
        let response = self
            .send("GetBlobProperties", &Call::blob(Method::HEAD, &name))
            .await
            .map_err(|f| into_error(f, self.op("GetBlobProperties", &name), path.as_str()))?;
        let headers = response.headers();
        Ok(meta_from(
            path,
            headers,
            content_length(headers).unwrap_or(0),
        ))
    }

    /// The [`Error::InvalidRange`] of `range`, with the blob's size (read
    /// when not known; a missing blob is [`Error::NotFound`]).
    async fn invalid_range(
        &self,
        path: &StoragePath,
        range: ByteRange,
        size: Option<u64>,
    ) -> Error {
        let size = match size {
            Some(s) => s,
            None => match self.blob_properties(path).await {
                Ok(meta) => meta.size,
                Err(e) => return e,
            },
        };
        Error::InvalidRange {
            path: path.to_string(),
            range: range.to_string(),
            size,
        }
    }

    /// An answer that cannot be served as asked.
    fn bad_answer(&self, name: &str, detail: String) -> Error {
        Error::Backend {
            driver: DRIVER,
            retryable: false,
            message: format!("reading {}/{name}: {detail}", self.container()),
            operation: Some(Box::new(self.op("GetBlob", name).operation())),
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges_parse_strictly() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((Some((0, 10)), Some(100)))
        );
        assert_eq!(
            parse_content_range("bytes 5-5/*"),
            Some((Some((5, 6)), None))
        );
        assert_eq!(parse_content_range("bytes */100"), Some((None, Some(100))));
        // Azurite's answer to a range starting at the end, and to a range
        // of an empty blob: the size is there, the span is not.
        assert_eq!(
            parse_content_range("bytes 10240-10239/10240"),
            Some((None, Some(10240)))
        );
        assert_eq!(parse_content_range("bytes 0--1/0"), Some((None, Some(0))));
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes 0-1/x"), None);
    }
}
