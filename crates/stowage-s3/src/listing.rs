//! Listings: ListObjectsV2 paged by hand, so that a dropped or repeated
//! continuation token fails instead of ending short or looping; the marker
//! check ListMultipartUploads shares; and `list_page`, one ListObjectsV2
//! request with Prefix, Delimiter, StartAfter and MaxKeys. With a server
//! profile without ListObjectsV2 (GCS), the same with ListObjects
//! (version 1): Marker is both StartAfter and where a listing goes on.

use std::collections::HashSet;

use futures::stream::{self, BoxStream, StreamExt};
use futures::TryStreamExt;
use stowage_core::listing::{PageBuilder, MAX_PAGE_ENTRIES};
use stowage_core::{Error, ListOptions, ListPage, ListStream, ObjectMeta, Result, StoragePath};

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
            match self.list_objects_page(&mut pages).await {
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
    async fn list_objects_page(
        &self,
        pages: &mut ListPages,
    ) -> Result<(Vec<(String, aws_sdk_s3::types::Object)>, bool)> {
        // Server profile without ListObjectsV2 (GCS): version 1.
        if !self.config.profile.lists_with_v2() {
            return self.list_objects_v1_page(pages).await;
        }
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

    /// One ListObjects (version 1) page, for a server without
    /// ListObjectsV2 (the GCS profile): `pages.token` is the Marker, the
    /// answer's NextMarker or else its last key ([`v1_next_marker`]). The
    /// same checks as ListObjectsV2: a marker dropped or repeated fails.
    async fn list_objects_v1_page(
        &self,
        pages: &mut ListPages,
    ) -> Result<(Vec<(String, aws_sdk_s3::types::Object)>, bool)> {
        let shown = pages.prefix.clone();
        let marker = pages.token.clone();
        let page = self
            .retrying("ListObjects", &shown, || {
                self.client
                    .list_objects()
                    .bucket(self.bucket())
                    .prefix(&shown)
                    .set_marker(marker.clone())
                    .send()
            })
            .await
            .map_err(|e| from_sdk(e, self.op("ListObjects", &shown), &shown))?;
        let objects: Vec<_> = page
            .contents()
            .iter()
            .filter_map(|o| o.key().map(|k| (k.to_string(), o.clone())))
            .collect();
        pages.listed += objects.len() as u64;
        let what = format!("s3://{}/{}", self.bucket(), shown);
        let next = v1_next_marker(
            page.is_truncated(),
            page.next_marker(),
            objects.iter().map(|(k, _)| k.as_str()),
        );
        pages.token = next_page_marker(
            "ListObjects",
            &what,
            page.is_truncated(),
            next,
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

/// What `start_after` leaves of a listing whose full paths all start with
/// `base` (`prefix/`, or empty for the whole storage).
#[derive(Debug, PartialEq, Eq)]
enum Window<'a> {
    /// All of it: no `start_after`, or one sorting before `base` (sent as
    /// is, some servers, Garage among them, would end the listing at the
    /// first key outside the prefix and return nothing).
    Whole,
    /// The keys after this full path.
    After(&'a str),
    /// Nothing: `start_after` sorts after every path below `base`.
    Empty,
}

fn window<'a>(base: &str, start_after: Option<&'a str>) -> Window<'a> {
    match start_after {
        None | Some("") => Window::Whole,
        Some(s) if s.starts_with(base) => Window::After(s),
        Some(s) if s < base => Window::Whole,
        Some(_) => Window::Empty,
    }
}

/// Keeps the largest of the full paths an answer listed.
fn note_last(last: &mut Option<String>, relative: &str) {
    if last.as_deref().is_none_or(|l| relative > l) {
        *last = Some(relative.to_string());
    }
}

/// Where a ListObjects (version 1) listing goes on: the answer's
/// NextMarker; when a truncated answer has none (S3 returns it only with a
/// delimiter), the last key or common prefix it listed, which the S3 API
/// reference of ListObjects says to use as the next Marker. `None` when
/// the answer is not truncated and names no marker.
fn v1_next_marker<'a>(
    truncated: Option<bool>,
    next_marker: Option<&'a str>,
    listed: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    match (next_marker.filter(|m| !m.is_empty()), truncated) {
        (Some(marker), _) => Some(marker.to_string()),
        (None, Some(true)) => listed.into_iter().max().map(str::to_string),
        (None, _) => None,
    }
}

impl S3Storage {
    /// A listed key relative to the root (a common prefix keeps its
    /// trailing `/`), `None` outside the root.
    fn relative_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        if self.config.root.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(self.config.root.as_str())?
                .strip_prefix('/')
        }
    }

    /// One page of [`stowage_core::Storage::list_page`]: one ListObjectsV2
    /// request (retried like every request) with Prefix, Delimiter `/`,
    /// StartAfter and MaxKeys (ListObjects version 1 with Marker for a
    /// server profile without ListObjectsV2). Keys and common prefixes
    /// outside the root or not valid paths are skipped. The page is what
    /// the answer holds, even when the server cut it short;
    /// `next_start_after` is then the last key or common prefix it
    /// returned.
    ///
    /// Servers differ on a StartAfter that is a common prefix (`a/b/`) or
    /// inside one: AWS and Ceph RGW skip the whole common prefix, Garage
    /// returns it again. Entries up to `start_after` are dropped here, and
    /// one more entry is asked for when that can happen, so every server
    /// gives the same pages. An answer left with no entry at all (every
    /// key skipped) that says more follows is continued with its
    /// continuation token, so a page is never empty unless it is the last.
    pub(crate) async fn list_keys_page(&self, options: ListOptions) -> Result<ListPage> {
        let base = options.base();
        let start_after = match window(&base, options.start_after.as_deref()) {
            Window::Empty => return Ok(ListPage::default()),
            Window::Whole => None,
            Window::After(relative) => Some(relative),
        };
        let size = options.page_size();
        // A directory named by `start_after` may come back first.
        let repeated_dir = options.delimiter
            && start_after.is_some_and(|s| s.get(base.len()..).is_some_and(|r| r.contains('/')));
        let ask = if repeated_dir {
            (size + 1).min(MAX_PAGE_ENTRIES)
        } else {
            size
        };
        let max_keys = i32::try_from(ask).unwrap_or(1000);
        let start_key = start_after.map(|s| self.key_of(s));
        let delimiter = options.delimiter.then(|| "/".to_string());
        let shown = self.list_prefix(options.prefix.as_ref());
        let what = format!("s3://{}/{}", self.bucket(), shown);

        let mut page = PageBuilder::new(&options);
        let mut token: Option<String> = None;
        let mut seen = HashSet::new();
        let mut listed = 0u64;
        let mut last: Option<String> = None;
        loop {
            let (operation, truncated, next) = if self.config.profile.lists_with_v2() {
                let continuing = token.clone();
                let answer = self
                    .retrying("ListObjectsV2", &shown, || {
                        self.client
                            .list_objects_v2()
                            .bucket(self.bucket())
                            .prefix(&shown)
                            .set_delimiter(delimiter.clone())
                            .set_start_after(if continuing.is_none() {
                                start_key.clone()
                            } else {
                                None
                            })
                            .set_continuation_token(continuing.clone())
                            .max_keys(max_keys)
                            .send()
                    })
                    .await
                    .map_err(|e| from_sdk(e, self.op("ListObjectsV2", &shown), &shown))?;
                listed += self.offer_answer(
                    &mut page,
                    &mut last,
                    answer.contents(),
                    answer.common_prefixes(),
                );
                (
                    "ListObjectsV2",
                    answer.is_truncated(),
                    answer.next_continuation_token().map(str::to_string),
                )
            } else {
                // Server profile without ListObjectsV2 (GCS): ListObjects
                // (version 1), whose Marker is StartAfter on the first
                // request and where the listing goes on after that.
                let marker = token.clone().or_else(|| start_key.clone());
                let answer = self
                    .retrying("ListObjects", &shown, || {
                        self.client
                            .list_objects()
                            .bucket(self.bucket())
                            .prefix(&shown)
                            .set_delimiter(delimiter.clone())
                            .set_marker(marker.clone())
                            .max_keys(max_keys)
                            .send()
                    })
                    .await
                    .map_err(|e| from_sdk(e, self.op("ListObjects", &shown), &shown))?;
                listed += self.offer_answer(
                    &mut page,
                    &mut last,
                    answer.contents(),
                    answer.common_prefixes(),
                );
                let listed_keys = answer
                    .contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .chain(answer.common_prefixes().iter().filter_map(|p| p.prefix()));
                let next = v1_next_marker(answer.is_truncated(), answer.next_marker(), listed_keys);
                ("ListObjects", answer.is_truncated(), next)
            };
            token = next_page_marker(operation, &what, truncated, next, &mut seen, listed)?;
            if token.is_none() || !page.is_empty() {
                break;
            }
        }
        Ok(page.finish(token.and(last)))
    }

    /// Offers the objects and common prefixes of one listing answer to
    /// `page` (skipping those outside the root or not valid paths), notes
    /// the largest relative path in `last`, and returns how many entries
    /// the answer held.
    fn offer_answer(
        &self,
        page: &mut PageBuilder,
        last: &mut Option<String>,
        objects: &[aws_sdk_s3::types::Object],
        prefixes: &[aws_sdk_s3::types::CommonPrefix],
    ) -> u64 {
        for object in objects {
            let Some(key) = object.key() else { continue };
            let Some(relative) = self.relative_key(key) else {
                continue;
            };
            note_last(last, relative);
            let Some(path) = self.path_of(key) else {
                tracing::warn!(key = %key, "skipping a key that is not a valid storage path");
                continue;
            };
            page.push_listed(
                ObjectMeta::new(path, object.size().unwrap_or(0).max(0) as u64)
                    .with_etag(object.e_tag().map(str::to_string))
                    .with_last_modified(to_chrono(object.last_modified())),
            );
        }
        for common in prefixes {
            let Some(key) = common.prefix() else { continue };
            let Some(relative) = self.relative_key(key) else {
                continue;
            };
            note_last(last, relative);
            let Some(dir) = key.strip_suffix('/').and_then(|k| self.path_of(k)) else {
                tracing::warn!(prefix = %key, "skipping a prefix that is not a valid path");
                continue;
            };
            page.push_prefix(dir);
        }
        (objects.len() + prefixes.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::{next_page_marker, v1_next_marker, window, Window};

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

    #[test]
    fn v1_listings_go_on_from_next_marker_else_the_last_entry() {
        let keys = ["p/a", "p/c", "p/b/"];
        assert_eq!(
            v1_next_marker(Some(true), Some("p/b/"), keys).as_deref(),
            Some("p/b/"),
            "NextMarker when the server sends one"
        );
        assert_eq!(
            v1_next_marker(Some(true), None, keys).as_deref(),
            Some("p/c"),
            "else the largest key or common prefix listed"
        );
        assert_eq!(
            v1_next_marker(Some(true), Some(""), keys).as_deref(),
            Some("p/c")
        );
        assert_eq!(v1_next_marker(Some(false), None, keys), None);
        assert_eq!(v1_next_marker(None, None, keys), None);
        assert_eq!(
            v1_next_marker(Some(true), None, []),
            None,
            "truncated with nothing to go on: next_page_marker fails it"
        );
    }

    #[test]
    fn start_after_outside_the_prefix_lists_all_or_nothing() {
        assert_eq!(window("l/", None), Window::Whole);
        assert_eq!(window("l/", Some("")), Window::Whole);
        assert_eq!(window("l/", Some("a")), Window::Whole);
        assert_eq!(window("l/", Some("l")), Window::Whole);
        assert_eq!(window("l/", Some("l-sibling")), Window::Whole);
        assert_eq!(window("l/", Some("l/")), Window::After("l/"));
        assert_eq!(window("l/", Some("l/b/")), Window::After("l/b/"));
        assert_eq!(window("l/", Some("l0")), Window::Empty);
        assert_eq!(window("l/", Some("m")), Window::Empty);
        assert_eq!(window("", Some("m")), Window::After("m"));
    }
}
