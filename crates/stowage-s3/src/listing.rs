//! Listings: ListObjectsV2 paged by hand, so that a dropped or repeated
//! continuation token fails instead of ending short or looping; the marker
//! check ListMultipartUploads shares.

use std::collections::HashSet;

use futures::stream::{self, BoxStream, StreamExt};
use futures::TryStreamExt;
use stowage_core::{Error, ListStream, ObjectMeta, Result, StoragePath};

use crate::error::{from_sdk, DRIVER};
use crate::reads::to_chrono;
use crate::S3Storage;

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

impl S3Storage {
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
