//! The conformance suite: one documented `pub async fn` per behaviour, each
//! taking a fresh, empty storage that it may fill and must leave empty.
//!
//! A driver's test file is a few lines:
//!
//! ```text
//! stowage_core::conformance_tests!(|| async {
//!     std::sync::Arc::new(MyStorage::new_under_a_fresh_prefix()) as std::sync::Arc<dyn Storage>
//! });
//! ```
//!
//! The macro makes one `#[tokio::test]` per behaviour (named after it) that
//! runs the behaviour, then checks the run left nothing behind. Wrappers
//! (STS, CloudFront) run the same suite. [`run_all`] runs every behaviour in
//! sequence on one storage, for a quick check of a live endpoint.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rand::{Rng, RngCore, SeedableRng};

use crate::{
    ByteRange, CompleteOptions, Error, GetOptions, ListOptions, ListPage, PutOptions, Sha256Digest,
    Storage, StorageExt, StoragePath, UploadState,
};

/// Every behaviour, in the order [`run_all`] runs them.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            put_get_round_trip, empty_object, ranges_at_the_edges,
            special_character_keys_round_trip, overwrite_replaces_content,
            missing_objects, list_pages_past_1000_keys, list_and_delete_prefix_are_segment_wise,
            list_page_orders_groups_and_resumes,
            copy_object, digest_mismatch_stores_nothing, failed_stream_stores_nothing,
            dropped_write_stores_nothing, chunked_upload_many_chunks_resumed_from_json,
            chunked_upload_wrong_offset, racing_writers_at_one_offset_never_corrupt,
            chunked_upload_digest_mismatch,
            chunked_upload_cancel_leaves_nothing, chunked_upload_empty_and_single_chunk,
            completing_an_upload_twice_gives_the_same_object,
            cleanup_removes_only_stale_uploads, concurrent_writes, concurrent_chunked_uploads,
            large_streamed_object, direct_urls_match_capabilities, validate_passes
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let storage: ::std::sync::Arc<dyn $crate::Storage> = ($make)().await;
                $crate::testkit::$name(&*storage).await;
                $crate::testkit::assert_left_nothing(&*storage).await;
            }
        )*
    };
}

/// Runs every behaviour in sequence on `storage`, which must be empty and
/// dedicated to the run (the cleanup behaviour removes stale uploads).
pub async fn run_all(storage: &dyn Storage) {
    put_get_round_trip(storage).await;
    empty_object(storage).await;
    ranges_at_the_edges(storage).await;
    special_character_keys_round_trip(storage).await;
    overwrite_replaces_content(storage).await;
    missing_objects(storage).await;
    list_pages_past_1000_keys(storage).await;
    list_and_delete_prefix_are_segment_wise(storage).await;
    list_page_orders_groups_and_resumes(storage).await;
    copy_object(storage).await;
    digest_mismatch_stores_nothing(storage).await;
    failed_stream_stores_nothing(storage).await;
    dropped_write_stores_nothing(storage).await;
    chunked_upload_many_chunks_resumed_from_json(storage).await;
    chunked_upload_wrong_offset(storage).await;
    racing_writers_at_one_offset_never_corrupt(storage).await;
    chunked_upload_digest_mismatch(storage).await;
    chunked_upload_cancel_leaves_nothing(storage).await;
    chunked_upload_empty_and_single_chunk(storage).await;
    completing_an_upload_twice_gives_the_same_object(storage).await;
    cleanup_removes_only_stale_uploads(storage).await;
    concurrent_writes(storage).await;
    concurrent_chunked_uploads(storage).await;
    large_streamed_object(storage).await;
    direct_urls_match_capabilities(storage).await;
    validate_passes(storage).await;
    assert_left_nothing(storage).await;
}

fn p(s: &str) -> StoragePath {
    StoragePath::parse(s).unwrap_or_else(|e| panic!("test path {s:?}: {e}"))
}

fn random_bytes(seed: u64, len: usize) -> Bytes {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    Bytes::from(v)
}

fn stream_of(parts: Vec<Bytes>) -> crate::WriteStream<'static> {
    futures::stream::iter(parts.into_iter().map(Ok)).boxed()
}

async fn list_paths(s: &dyn Storage, prefix: Option<&StoragePath>) -> Vec<String> {
    let mut v: Vec<String> = s
        .list(prefix)
        .map_ok(|m| m.path.to_string())
        .try_collect()
        .await
        .expect("list");
    v.sort();
    v
}

/// Asserts the storage holds no object and no upload data.
pub async fn assert_left_nothing(s: &dyn Storage) {
    let left = list_paths(s, None).await;
    assert!(left.is_empty(), "the run left objects behind: {left:?}");
}

/// put then get, stat and exists agree on content, size and metadata.
pub async fn put_get_round_trip(s: &dyn Storage) {
    let path = p("blobs/sha256/ab/abcdef/data");
    let body = random_bytes(1, 100_000);
    let put = s
        .put(&path, body.clone(), PutOptions::default())
        .await
        .expect("put");
    assert_eq!(put.size, body.len() as u64);
    assert_eq!(s.get_bytes(&path).await.expect("get"), body);
    let meta = s.stat(&path).await.expect("stat");
    assert_eq!(meta.path, path);
    assert_eq!(meta.size, body.len() as u64);
    assert!(
        meta.last_modified.is_some(),
        "stat gives a modification time"
    );
    assert!(s.exists(&path).await.expect("exists"));
    let got = s.get(&path, GetOptions::default()).await.expect("get");
    assert_eq!(got.range, 0..body.len() as u64);
    assert_eq!(got.meta.size, body.len() as u64);
    s.delete(&path).await.expect("delete");
    assert!(!s.exists(&path).await.expect("exists after delete"));
}

/// An empty object can be written, stated, read whole and from offset 0;
/// any other range of it is an invalid range.
pub async fn empty_object(s: &dyn Storage) {
    let path = p("empty");
    s.put(&path, Bytes::new(), PutOptions::default())
        .await
        .expect("put empty");
    assert_eq!(s.stat(&path).await.expect("stat").size, 0);
    assert!(s.get_bytes(&path).await.expect("get").is_empty());
    assert!(s
        .get_range_bytes(&path, ByteRange::From(0))
        .await
        .expect("range 0..")
        .is_empty());
    let err = s
        .get_range_bytes(&path, ByteRange::at(0, Some(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRange { .. }), "{err}");
    s.delete(&path).await.expect("delete");
}

/// Ranges: first byte, last byte, middle, suffix, an end past the object
/// (cut at the end); a start at or past the end is [`Error::InvalidRange`].
pub async fn ranges_at_the_edges(s: &dyn Storage) {
    let path = p("ranged");
    let body = random_bytes(2, 10_000);
    s.put(&path, body.clone(), PutOptions::default())
        .await
        .expect("put");
    let path = &path;
    let r = |range| async move { s.get_range_bytes(path, range).await };
    assert_eq!(
        r(ByteRange::at(0, Some(1))).await.unwrap(),
        body.slice(0..1)
    );
    assert_eq!(
        r(ByteRange::at(9_999, Some(1))).await.unwrap(),
        body.slice(9_999..)
    );
    assert_eq!(
        r(ByteRange::at(100, Some(900))).await.unwrap(),
        body.slice(100..1000)
    );
    assert_eq!(
        r(ByteRange::From(5_000)).await.unwrap(),
        body.slice(5_000..)
    );
    assert_eq!(r(ByteRange::Suffix(10)).await.unwrap(), body.slice(9_990..));
    assert_eq!(
        r(ByteRange::at(9_990, Some(100))).await.unwrap(),
        body.slice(9_990..)
    );
    let got = s
        .get(
            path,
            GetOptions::default().with_range(ByteRange::at(10, Some(20))),
        )
        .await
        .unwrap();
    assert_eq!(got.range, 10..30);
    assert_eq!(got.meta.size, 10_000, "meta describes the whole object");
    // Extremes a hostile client can ask for, passed through as they are:
    // lengths and positions past the end or at the largest u64.
    for (range, from) in [
        (ByteRange::Suffix(u64::MAX), 0),
        (ByteRange::Suffix(20_000), 0),
        (
            ByteRange::Bounded {
                start: 0,
                end: u64::MAX,
            },
            0,
        ),
        (
            ByteRange::Bounded {
                start: 9_000,
                end: u64::MAX,
            },
            9_000,
        ),
    ] {
        let got = r(range).await.unwrap_or_else(|e| panic!("{range}: {e}"));
        assert!(got == body.slice(from..), "{range}: {} bytes", got.len());
    }
    for bad in [
        ByteRange::From(10_000),
        ByteRange::at(20_000, Some(5)),
        ByteRange::From(u64::MAX),
        ByteRange::Bounded {
            start: u64::MAX - 1,
            end: u64::MAX,
        },
    ] {
        let err = r(bad).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidRange { size: 10_000, .. }),
            "{bad}: {err}"
        );
    }
    s.delete(path).await.unwrap();
}

/// Keys with spaces, `+`, `%`, `=`, `~`, `@`, `,`, `&`, `#`, `?`, quotes and
/// non-ASCII are stored, read, stated and listed exactly as given.
pub async fn special_character_keys_round_trip(s: &dyn Storage) {
    let keys = [
        "sp ace/a b",
        "plus/a+b",
        "pct/100%/a%2Fb",
        "eq/a=b,c@d~e",
        "amp/a&b#c?d",
        "quote/it's \"q\"",
        "uni/ünïcødé/日本語/😀",
        "dots/.hidden/a..b/c.",
    ];
    for (i, k) in keys.iter().enumerate() {
        let path = p(k);
        s.put(
            &path,
            Bytes::from(format!("body {i}")),
            PutOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("put {k:?}: {e}"));
        assert_eq!(
            s.get_bytes(&path).await.unwrap(),
            format!("body {i}"),
            "{k:?}"
        );
        assert_eq!(
            s.stat(&path).await.unwrap().size,
            format!("body {i}").len() as u64
        );
    }
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(list_paths(s, None).await, expected);
    assert_eq!(
        list_paths(s, Some(&p("pct/100%"))).await,
        vec!["pct/100%/a%2Fb".to_string()]
    );
    for k in keys {
        s.delete(&p(k)).await.unwrap();
    }
}

/// Writing an existing path replaces the content and the size.
pub async fn overwrite_replaces_content(s: &dyn Storage) {
    let path = p("over/write");
    s.put(&path, random_bytes(3, 5000), PutOptions::default())
        .await
        .unwrap();
    let second = random_bytes(4, 300);
    s.put(&path, second.clone(), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(s.get_bytes(&path).await.unwrap(), second);
    assert_eq!(s.stat(&path).await.unwrap().size, 300);
    s.delete(&path).await.unwrap();
}

/// get and stat of a missing object are [`Error::NotFound`] naming the
/// path; deleting it succeeds; exists is false.
pub async fn missing_objects(s: &dyn Storage) {
    let path = p("no/such/object");
    let err = s.get(&path, GetOptions::default()).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { path, .. } if path == "no/such/object"),
        "{err}"
    );
    let err = s.stat(&path).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = s
        .get_range_bytes(&path, ByteRange::From(3))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    s.delete(&path)
        .await
        .expect("deleting a missing object succeeds");
    assert!(!s.exists(&path).await.unwrap());
    assert!(list_paths(s, Some(&p("no"))).await.is_empty());
}

/// Listing returns every key exactly once past the backends' 1000-key page.
pub async fn list_pages_past_1000_keys(s: &dyn Storage) {
    let n = 1_005;
    futures::stream::iter(0..n)
        .map(|i| async move {
            s.put(
                &p(&format!("many/{i:05}")),
                Bytes::from_static(b"x"),
                PutOptions::default(),
            )
            .await
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("write many");
    let listed = list_paths(s, Some(&p("many"))).await;
    let expected: Vec<String> = (0..n).map(|i| format!("many/{i:05}")).collect();
    assert_eq!(listed.len(), n, "listed count");
    assert_eq!(listed, expected);
    assert_eq!(s.delete_prefix(&p("many")).await.unwrap(), n as u64);
    assert!(list_paths(s, Some(&p("many"))).await.is_empty());
}

/// list and delete_prefix work on whole segments: `a/b` does not reach
/// `a/bc`, and the object `a/b` itself is not below `a/b`.
pub async fn list_and_delete_prefix_are_segment_wise(s: &dyn Storage) {
    for k in ["a/b/1", "a/b/c/2", "a/bc/3", "a/b.txt"] {
        s.put(&p(k), Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(
        list_paths(s, Some(&p("a/b"))).await,
        vec!["a/b/1", "a/b/c/2"]
    );
    assert_eq!(list_paths(s, Some(&p("a"))).await.len(), 4);
    assert_eq!(s.delete_prefix(&p("a/b")).await.unwrap(), 2);
    assert_eq!(list_paths(s, None).await, vec!["a/b.txt", "a/bc/3"]);
    assert_eq!(s.delete_prefix(&p("a")).await.unwrap(), 2);
    assert_eq!(
        s.delete_prefix(&p("a")).await.unwrap(),
        0,
        "deleting an empty prefix"
    );
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// The entries of a page in order: objects as their path, prefixes with a
/// trailing slash (checking each list is sorted, as promised).
fn page_entries(page: &ListPage) -> Vec<String> {
    let objects: Vec<String> = page.objects.iter().map(|m| m.path.to_string()).collect();
    let prefixes: Vec<String> = page.prefixes.iter().map(|d| format!("{d}/")).collect();
    assert!(
        objects.windows(2).all(|w| w[0] < w[1]),
        "objects sorted: {objects:?}"
    );
    assert!(
        prefixes.windows(2).all(|w| w[0] < w[1]),
        "prefixes sorted: {prefixes:?}"
    );
    let mut all = [objects, prefixes].concat();
    all.sort();
    all
}

/// One page's entries and `next_start_after`.
async fn one_page(s: &dyn Storage, options: ListOptions) -> (Vec<String>, Option<String>) {
    let page = s
        .list_page(options.clone())
        .await
        .unwrap_or_else(|e| panic!("list_page {options:?}: {e}"));
    (page_entries(&page), page.next_start_after)
}

/// Every entry, walking pages of at most `max` through `next_start_after`.
async fn walk_pages(s: &dyn Storage, options: &ListOptions, max: usize) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let mut options = options.clone().with_max_entries(max);
    for _ in 0..100 {
        let (entries, next) = one_page(s, options.clone()).await;
        assert!(
            entries.len() <= max,
            "at most {max} entries: {entries:?} ({options:?})"
        );
        if let (Some(first), Some(last)) = (entries.first(), all.last()) {
            assert!(
                first > last,
                "pages follow each other: {last:?} then {first:?} ({options:?})"
            );
        }
        all.extend(entries.iter().cloned());
        let Some(next) = next else {
            return all;
        };
        assert!(
            !entries.is_empty(),
            "a page that is not the last holds entries ({options:?})"
        );
        assert_eq!(
            Some(&next),
            entries.last(),
            "next_start_after is the page's last entry ({options:?})"
        );
        options.start_after = Some(next);
    }
    panic!("the listing did not end after 100 pages ({options:?})");
}

/// list_page: objects and (with the delimiter) the directories directly
/// below the prefix interleave in bytewise order of their full path (a
/// directory `l/b` as `l/b/`); pages of 1 to 3 entries walked through
/// `next_start_after` give every entry exactly once, in order;
/// `start_after` a directory (`l/b/`), or inside one, skips everything below
/// it; a missing prefix, or one that is an object, lists nothing.
pub async fn list_page_orders_groups_and_resumes(s: &dyn Storage) {
    let paths = [
        "l/a",
        "l/b/1",
        "l/b/2",
        "l/c",
        "l/d/x/y",
        "l/e",
        "l-sibling",
    ];
    for (i, path) in paths.iter().enumerate() {
        s.put(
            &p(path),
            Bytes::from(vec![b'x'; i + 1]),
            PutOptions::default(),
        )
        .await
        .expect("put");
    }
    let flat = ListOptions::default().with_prefix(p("l"));
    let grouped = flat.clone().with_delimiter(true);
    let all_flat = ["l/a", "l/b/1", "l/b/2", "l/c", "l/d/x/y", "l/e"];
    let all_grouped = ["l/a", "l/b/", "l/c", "l/d/", "l/e"];

    let page = s.list_page(flat.clone()).await.expect("list_page");
    assert_eq!(page_entries(&page), all_flat);
    assert!(
        page.prefixes.is_empty(),
        "no prefixes without the delimiter"
    );
    assert_eq!(page.next_start_after, None);
    let sizes: Vec<u64> = page.objects.iter().map(|m| m.size).collect();
    assert_eq!(sizes, [1, 2, 3, 4, 5, 6], "sizes of the listed objects");
    let page = s.list_page(grouped.clone()).await.expect("list_page");
    assert_eq!(page_entries(&page), all_grouped);
    assert_eq!(
        page.prefixes,
        [p("l/b"), p("l/d")],
        "without trailing slash"
    );
    assert_eq!(page.next_start_after, None);
    // The whole storage: `l-sibling` sorts before `l/` ('-' < '/').
    assert_eq!(
        one_page(s, ListOptions::default().with_delimiter(true)).await,
        (strings(&["l-sibling", "l/"]), None)
    );
    assert_eq!(
        one_page(s, ListOptions::default()).await.0,
        [&["l-sibling"][..], &all_flat[..]].concat()
    );

    for max in 1..=3 {
        assert_eq!(walk_pages(s, &flat, max).await, all_flat, "pages of {max}");
        assert_eq!(
            walk_pages(s, &grouped, max).await,
            all_grouped,
            "pages of {max}, grouped"
        );
    }
    assert_eq!(
        one_page(s, grouped.clone().with_max_entries(2)).await,
        (strings(&["l/a", "l/b/"]), Some("l/b/".to_string())),
        "a page ending with a directory"
    );
    assert_eq!(
        one_page(s, grouped.clone().with_max_entries(0)).await,
        (strings(&["l/a"]), Some("l/a".to_string())),
        "max_entries 0 is 1"
    );

    let cases = [
        (&grouped, "l/b/", vec!["l/c", "l/d/", "l/e"]),
        (&grouped, "l/b/1", vec!["l/c", "l/d/", "l/e"]),
        (&grouped, "l/b", vec!["l/b/", "l/c", "l/d/", "l/e"]),
        (&grouped, "l/c", vec!["l/d/", "l/e"]),
        (&grouped, "a", all_grouped.to_vec()),
        (&grouped, "l/e", vec![]),
        (&grouped, "m", vec![]),
        (
            &flat,
            "l/b/",
            vec!["l/b/1", "l/b/2", "l/c", "l/d/x/y", "l/e"],
        ),
        (&flat, "l/b/1", vec!["l/b/2", "l/c", "l/d/x/y", "l/e"]),
        (&flat, "l/d/", vec!["l/d/x/y", "l/e"]),
        (&flat, "a", all_flat.to_vec()),
        (&flat, "l/e", vec![]),
        (&flat, "m", vec![]),
    ];
    for (options, start, expected) in cases {
        assert_eq!(
            one_page(s, options.clone().with_start_after(start)).await,
            (strings(&expected), None),
            "start after {start:?}, delimiter {}",
            options.delimiter
        );
    }

    for prefix in ["nothing", "l/a", "l/b/1"] {
        for delimiter in [false, true] {
            let options = ListOptions::default()
                .with_prefix(p(prefix))
                .with_delimiter(delimiter);
            assert_eq!(
                one_page(s, options).await,
                (Vec::new(), None),
                "below {prefix:?} (delimiter {delimiter})"
            );
        }
    }
    assert_eq!(
        one_page(s, grouped.clone().with_prefix(p("l/d"))).await,
        (strings(&["l/d/x/"]), None)
    );
    assert_eq!(
        one_page(s, grouped.clone().with_prefix(p("l/d/x"))).await,
        (strings(&["l/d/x/y"]), None)
    );

    assert_eq!(s.delete_prefix(&p("l")).await.expect("delete_prefix"), 6);
    s.delete(&p("l-sibling")).await.expect("delete");
    assert_eq!(
        one_page(s, ListOptions::default().with_delimiter(true)).await,
        (Vec::new(), None),
        "nothing left"
    );
}

/// copy duplicates content and leaves the source; a missing source is
/// [`Error::NotFound`].
pub async fn copy_object(s: &dyn Storage) {
    let (from, to) = (p("copy/src file"), p("copy/dst/ünï"));
    let body = random_bytes(5, 70_000);
    s.put(&from, body.clone(), PutOptions::default())
        .await
        .unwrap();
    let meta = s.copy(&from, &to).await.expect("copy");
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(s.get_bytes(&to).await.unwrap(), body);
    assert_eq!(s.get_bytes(&from).await.unwrap(), body);
    let err = s.copy(&p("copy/missing"), &p("copy/x")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(!s.exists(&p("copy/x")).await.unwrap());
    s.delete_prefix(&p("copy")).await.unwrap();
}

/// A write whose content does not match the expected digest fails with
/// [`Error::DigestMismatch`]; nothing new is visible, an existing object
/// keeps its content.
pub async fn digest_mismatch_stores_nothing(s: &dyn Storage) {
    let path = p("digest/new");
    let body = random_bytes(6, 20_000);
    let wrong = Sha256Digest::of(b"something else");
    let err = s
        .put_stream(
            &path,
            stream_of(vec![body.slice(..10_000), body.slice(10_000..)]),
            PutOptions::default().with_expected_digest(wrong),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(
        !s.exists(&path).await.unwrap(),
        "nothing visible after a digest mismatch"
    );
    let err = s
        .put(
            &path,
            body.clone(),
            PutOptions::default().with_expected_digest(wrong),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(!s.exists(&path).await.unwrap());
    let existing = p("digest/existing");
    s.put(&existing, Bytes::from_static(b"old"), PutOptions::default())
        .await
        .unwrap();
    let _ = s
        .put_stream(
            &existing,
            stream_of(vec![body.clone()]),
            PutOptions::default().with_expected_digest(wrong),
        )
        .await
        .unwrap_err();
    assert_eq!(s.get_bytes(&existing).await.unwrap(), "old");
    let ok = s
        .put_stream(
            &path,
            stream_of(vec![body.clone()]),
            PutOptions::default().with_expected_digest(Sha256Digest::of(&body)),
        )
        .await
        .expect("matching digest");
    assert_eq!(ok.size, 20_000);
    s.delete_prefix(&p("digest")).await.unwrap();
}

/// A stream that fails midway fails the write and stores nothing.
pub async fn failed_stream_stores_nothing(s: &dyn Storage) {
    let path = p("failing/stream");
    let parts: Vec<crate::Result<Bytes>> = vec![
        Ok(random_bytes(7, 1 << 20)),
        Err(Error::Backend {
            driver: "test",
            retryable: false,
            message: "client went away".into(),
            operation: None,
            source: None,
        }),
    ];
    let err = s
        .put_stream(
            &path,
            futures::stream::iter(parts).boxed(),
            PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("client went away"), "{err}");
    assert!(!s.exists(&path).await.unwrap());
}

/// A write whose future is dropped midway (its stream stalls, a timeout
/// cancels it) stores nothing.
pub async fn dropped_write_stores_nothing(s: &dyn Storage) {
    let path = p("dropped/write");
    let first = futures::stream::iter(vec![Ok(random_bytes(8, 1 << 20))]);
    let stalled = first.chain(futures::stream::pending()).boxed();
    let r = tokio::time::timeout(
        Duration::from_millis(500),
        s.put_stream(&path, stalled, PutOptions::default()),
    )
    .await;
    assert!(
        r.is_err(),
        "the stalled write must still be running when cancelled"
    );
    // Background aborts (S3) need a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !s.exists(&path).await.unwrap(),
        "a dropped write left an object"
    );
}

/// Many chunks of uneven sizes, the state going through JSON between each
/// (as if each chunk reached another process), complete with the right
/// digest; chunks are gone afterwards.
pub async fn chunked_upload_many_chunks_resumed_from_json(s: &dyn Storage) {
    let body = random_bytes(9, 600_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let mut json = s.start_upload().await.expect("start").to_json();
    let mut offset = 0usize;
    let mut chunks = 0;
    while offset < body.len() {
        let len = rng.gen_range(1..60_000).min(body.len() - offset);
        let state = UploadState::from_json(&json).expect("state from json");
        let chunk = body.slice(offset..offset + len);
        let next = s
            .write_chunk(&state, offset as u64, stream_of(vec![chunk]))
            .await
            .expect("chunk");
        offset += len;
        chunks += 1;
        assert_eq!(next.size, offset as u64);
        json = next.to_json();
    }
    assert!(chunks >= 10, "exercised {chunks} chunks");
    let state = UploadState::from_json(&json).unwrap();
    assert_eq!(state.digest(), Sha256Digest::of(&body));
    let dest = p("uploads-done/many");
    let meta = s
        .complete_upload(
            &state,
            &dest,
            CompleteOptions::default().with_expected_digest(Sha256Digest::of(&body)),
        )
        .await
        .expect("complete");
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(s.get_bytes(&dest).await.unwrap(), body);
    assert!(
        list_paths(s, Some(&state.area())).await.is_empty(),
        "chunks removed after completion"
    );
    s.delete(&dest).await.unwrap();
}

/// A chunk at the wrong offset is [`Error::OffsetMismatch`] carrying the
/// offset the upload expects; the upload continues at the right one.
pub async fn chunked_upload_wrong_offset(s: &dyn Storage) {
    let state = s.start_upload().await.unwrap();
    let state = s
        .write_chunk(&state, 0, stream_of(vec![Bytes::from_static(b"hello ")]))
        .await
        .unwrap();
    for wrong in [0, 3, 7, 100] {
        let err = s
            .write_chunk(&state, wrong, stream_of(vec![Bytes::from_static(b"x")]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::OffsetMismatch { expected: 6, got } if got == wrong),
            "{err}"
        );
    }
    let state = s
        .write_chunk(&state, 6, stream_of(vec![Bytes::from_static(b"world")]))
        .await
        .unwrap();
    let dest = p("offset/done");
    s.complete_upload(&state, &dest, CompleteOptions::default())
        .await
        .unwrap();
    assert_eq!(s.get_bytes(&dest).await.unwrap(), "hello world");
    s.delete(&dest).await.unwrap();
}

/// Two writers race on the same offset of one upload (two registry
/// replicas, a retried PATCH): each gets a state recording its own chunk,
/// and completing either stores exactly that writer's bytes, whose digest
/// the state holds. Never a blob whose bytes differ from its digest.
pub async fn racing_writers_at_one_offset_never_corrupt(s: &dyn Storage) {
    let start = s.start_upload().await.unwrap();
    let first = s
        .write_chunk(&start, 0, stream_of(vec![Bytes::from_static(b"head ")]))
        .await
        .unwrap();
    let (a, b) = futures::join!(
        s.write_chunk(&first, 5, stream_of(vec![Bytes::from(vec![b'a'; 3000])])),
        s.write_chunk(&first, 5, stream_of(vec![Bytes::from(vec![b'b'; 2000])])),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(
        a.chunk_path(1),
        b.chunk_path(1),
        "racing writes of one offset are stored apart"
    );
    // B's write finished too, but A's state completes: A's bytes only.
    let dest = p("race/blob");
    let digest = a.digest();
    s.complete_upload(
        &a,
        &dest,
        CompleteOptions::default().with_expected_digest(digest),
    )
    .await
    .unwrap();
    let stored = s.get_bytes(&dest).await.unwrap();
    let mut expected = b"head ".to_vec();
    expected.extend(vec![b'a'; 3000]);
    assert_eq!(stored.len(), expected.len());
    assert!(stored == expected, "the stored bytes are A's");
    assert_eq!(crate::Sha256Digest::of(&stored), digest);
    // B's state no longer completes into a corrupt blob: its chunk 0 may be
    // gone with A's completion, so it fails, or it stores B's own bytes.
    let dest_b = p("race/blob-b");
    match s
        .complete_upload(
            &b,
            &dest_b,
            CompleteOptions::default().with_expected_digest(b.digest()),
        )
        .await
    {
        Ok(_) => {
            let got = s.get_bytes(&dest_b).await.unwrap();
            assert_eq!(crate::Sha256Digest::of(&got), b.digest());
            s.delete(&dest_b).await.unwrap();
        }
        Err(_) => {
            let _ = s.abort_upload(&b).await;
        }
    }
    s.delete(&dest).await.unwrap();
}

/// Completing with the wrong digest is [`Error::DigestMismatch`]: nothing
/// at the destination, the upload kept; abort then removes it.
pub async fn chunked_upload_digest_mismatch(s: &dyn Storage) {
    let state = s.start_upload().await.unwrap();
    let state = s
        .write_chunk(&state, 0, stream_of(vec![random_bytes(11, 1000)]))
        .await
        .unwrap();
    let state = s
        .write_chunk(&state, 1000, stream_of(vec![random_bytes(12, 1000)]))
        .await
        .unwrap();
    let dest = p("mismatch/dest");
    let err = s
        .complete_upload(
            &state,
            &dest,
            CompleteOptions::default().with_expected_digest(Sha256Digest::of(b"nope")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(!s.exists(&dest).await.unwrap());
    assert_eq!(
        list_paths(s, Some(&state.area())).await.len(),
        2,
        "upload kept after a mismatch"
    );
    s.abort_upload(&state).await.unwrap();
    assert!(list_paths(s, Some(&state.area())).await.is_empty());
}

/// Cancelling an upload removes every temporary byte; completing it after
/// that is [`Error::InvalidUploadState`].
pub async fn chunked_upload_cancel_leaves_nothing(s: &dyn Storage) {
    let mut state = s.start_upload().await.unwrap();
    for i in 0..3u64 {
        state = s
            .write_chunk(
                &state,
                state.size,
                stream_of(vec![random_bytes(20 + i, 5000)]),
            )
            .await
            .unwrap();
    }
    assert_eq!(list_paths(s, Some(&state.area())).await.len(), 3);
    s.abort_upload(&state).await.expect("abort");
    assert!(list_paths(s, Some(&state.area())).await.is_empty());
    let err = s
        .complete_upload(&state, &p("cancelled/dest"), CompleteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidUploadState { .. }), "{err}");
    assert!(!s.exists(&p("cancelled/dest")).await.unwrap());
    s.abort_upload(&state)
        .await
        .expect("aborting twice is fine");
}

/// An upload with no bytes completes to an empty object with the empty
/// digest; empty chunks store nothing; one chunk completes too.
pub async fn chunked_upload_empty_and_single_chunk(s: &dyn Storage) {
    let state = s.start_upload().await.unwrap();
    let state = s.write_chunk(&state, 0, stream_of(vec![])).await.unwrap();
    assert_eq!(state.size, 0);
    assert!(state.chunks.is_empty());
    let dest = p("edge/empty");
    s.complete_upload(
        &state,
        &dest,
        CompleteOptions::default().with_expected_digest(Sha256Digest::of(b"")),
    )
    .await
    .expect("empty upload");
    assert_eq!(s.stat(&dest).await.unwrap().size, 0);

    let body = random_bytes(30, 123_457);
    let state = s.start_upload().await.unwrap();
    let state = s
        .write_chunk(&state, 0, stream_of(vec![body.slice(..1), body.slice(1..)]))
        .await
        .unwrap();
    let dest1 = p("edge/single");
    s.complete_upload(
        &state,
        &dest1,
        CompleteOptions::default().with_expected_digest(Sha256Digest::of(&body)),
    )
    .await
    .expect("single chunk");
    assert_eq!(s.get_bytes(&dest1).await.unwrap(), body);
    assert!(list_paths(s, Some(&state.area())).await.is_empty());
    s.delete_prefix(&p("edge")).await.unwrap();
}

/// Completing the same state twice (a retried request, a second replica)
/// answers the same object both times, for an upload of one chunk and of
/// several: the second completion finds the chunks gone, checks that the
/// destination holds exactly the upload's bytes, and answers with it. A
/// destination holding other bytes (of the same size or not) or nothing is
/// refused with [`Error::InvalidUploadState`] and left as it was; a wrong
/// digest is still [`Error::DigestMismatch`].
pub async fn completing_an_upload_twice_gives_the_same_object(s: &dyn Storage) {
    let body = random_bytes(35, 150_000);
    let digest = Sha256Digest::of(&body);
    let options = || CompleteOptions::default().with_expected_digest(digest);
    for (name, sizes) in [
        ("one-chunk", vec![150_000]),
        ("three-chunks", vec![50_000, 60_000, 40_000]),
    ] {
        let mut state = s.start_upload().await.unwrap();
        let mut offset = 0;
        for len in sizes {
            let chunk = body.slice(offset..offset + len);
            state = s
                .write_chunk(&state, offset as u64, stream_of(vec![chunk]))
                .await
                .unwrap();
            offset += len;
        }
        let dest = p(&format!("twice/{name}"));
        let first = s
            .complete_upload(&state, &dest, options())
            .await
            .unwrap_or_else(|e| panic!("{name}: first completion: {e}"));
        let second = s
            .complete_upload(&state, &dest, options())
            .await
            .unwrap_or_else(|e| panic!("{name}: completing again: {e}"));
        assert_eq!(second.path, first.path, "{name}");
        assert_eq!(second.size, first.size, "{name}");
        assert_eq!(second.size, body.len() as u64, "{name}");
        assert_eq!(
            second.etag,
            s.stat(&dest).await.unwrap().etag,
            "{name}: the second answer describes the stored object"
        );
        assert!(
            s.get_bytes(&dest).await.unwrap() == body,
            "{name}: the object holds the upload's bytes"
        );
        assert!(
            list_paths(s, Some(&state.area())).await.is_empty(),
            "{name}: no chunk left"
        );

        // Other bytes of the same size at the destination: refused, kept.
        let other = random_bytes(36, body.len());
        s.put(&dest, other.clone(), PutOptions::default())
            .await
            .unwrap();
        let err = s
            .complete_upload(&state, &dest, options())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidUploadState { .. }),
            "{name}: {err}"
        );
        assert!(
            s.get_bytes(&dest).await.unwrap() == other,
            "{name}: the destination kept its bytes"
        );
        // A prefix of the upload, and no object at all: refused too.
        s.put(&dest, body.slice(..1000), PutOptions::default())
            .await
            .unwrap();
        let err = s
            .complete_upload(&state, &dest, options())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidUploadState { .. }),
            "{name}: {err}"
        );
        assert_eq!(s.stat(&dest).await.unwrap().size, 1000, "{name}");
        let elsewhere = p(&format!("twice/{name}-elsewhere"));
        let err = s
            .complete_upload(&state, &elsewhere, options())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidUploadState { .. }),
            "{name}: {err}"
        );
        assert!(!s.exists(&elsewhere).await.unwrap(), "{name}");
        // The digest is checked first, as on a first completion.
        let err = s
            .complete_upload(
                &state,
                &dest,
                CompleteOptions::default().with_expected_digest(Sha256Digest::of(b"nope")),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{name}: {err}");
        s.delete(&dest).await.unwrap();
    }
}

/// cleanup_uploads removes uploads older than the threshold and keeps
/// fresher ones, and says how many it removed.
pub async fn cleanup_removes_only_stale_uploads(s: &dyn Storage) {
    let old = s.start_upload().await.unwrap();
    let old = s
        .write_chunk(&old, 0, stream_of(vec![random_bytes(40, 100)]))
        .await
        .unwrap();
    let old = s
        .write_chunk(&old, 100, stream_of(vec![random_bytes(41, 100)]))
        .await
        .unwrap();
    // Servers keep Last-Modified in whole seconds (truncated, so an object
    // looks up to a second older than it is): the old upload is more than
    // a second older than the limit, the fresh one more than a second
    // younger.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let fresh = s.start_upload().await.unwrap();
    let fresh = s
        .write_chunk(&fresh, 0, stream_of(vec![random_bytes(42, 100)]))
        .await
        .unwrap();
    let kept = s
        .cleanup_uploads(Duration::from_secs(3600))
        .await
        .expect("cleanup");
    assert_eq!(kept.uploads_removed, 0, "nothing is an hour old");
    let report = s
        .cleanup_uploads(Duration::from_secs(2))
        .await
        .expect("cleanup");
    assert_eq!(
        report.uploads_removed, 1,
        "exactly the stale upload: {report:?}"
    );
    assert!(list_paths(s, Some(&old.area())).await.is_empty());
    assert_eq!(list_paths(s, Some(&fresh.area())).await.len(), 1);
    s.abort_upload(&fresh).await.unwrap();
}

/// Parallel writes of distinct objects all land; parallel writes of one
/// path leave exactly one of the contents, whole.
pub async fn concurrent_writes(s: &dyn Storage) {
    futures::future::try_join_all((0..16u64).map(|i| async move {
        s.put(
            &p(&format!("conc/{i}")),
            random_bytes(50 + i, 50_000),
            PutOptions::default(),
        )
        .await
    }))
    .await
    .expect("parallel puts");
    for i in 0..16u64 {
        assert_eq!(
            s.get_bytes(&p(&format!("conc/{i}"))).await.unwrap(),
            random_bytes(50 + i, 50_000)
        );
    }
    let same = p("conc/same");
    let bodies: Vec<Bytes> = (0..8u64).map(|i| random_bytes(70 + i, 200_000)).collect();
    futures::future::try_join_all(bodies.iter().map(|b| {
        let same = same.clone();
        async move {
            s.put_stream(
                &same,
                stream_of(vec![b.slice(..100_000), b.slice(100_000..)]),
                PutOptions::default(),
            )
            .await
        }
    }))
    .await
    .expect("parallel writes of one path");
    let got = s.get_bytes(&same).await.unwrap();
    assert!(bodies.contains(&got), "the object is one whole write");
    s.delete_prefix(&p("conc")).await.unwrap();
}

/// Eight chunked uploads interleaved in parallel each complete with their
/// own content.
pub async fn concurrent_chunked_uploads(s: &dyn Storage) {
    futures::future::try_join_all((0..8u64).map(|i| async move {
        let body = random_bytes(100 + i, 90_000);
        let mut state = s.start_upload().await?;
        for c in 0..3 {
            let chunk = body.slice(c * 30_000..(c + 1) * 30_000);
            state = s
                .write_chunk(&state, state.size, stream_of(vec![chunk]))
                .await?;
        }
        let dest = p(&format!("par/{i}"));
        s.complete_upload(
            &state,
            &dest,
            CompleteOptions::default().with_expected_digest(Sha256Digest::of(&body)),
        )
        .await?;
        assert_eq!(s.get_bytes(&dest).await?, body);
        Ok::<_, Error>(())
    }))
    .await
    .expect("parallel uploads");
    assert_eq!(s.delete_prefix(&p("par")).await.unwrap(), 8);
}

/// Size of [`large_streamed_object`], at least 256 MiB.
pub const LARGE_OBJECT_SIZE: u64 = 256 * 1024 * 1024;

/// A 256 MiB object streamed in 1 MiB pieces (never held whole in memory),
/// written with its digest checked and read back streaming with the same
/// digest.
pub async fn large_streamed_object(s: &dyn Storage) {
    use sha2::Digest as _;
    let path = p("large/object");
    let piece = random_bytes(200, 1 << 20);
    let count = (LARGE_OBJECT_SIZE >> 20) as usize;
    let make = |i: usize| {
        let mut b = piece.to_vec();
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        Bytes::from(b)
    };
    let mut h = sha2::Sha256::new();
    for i in 0..count {
        h.update(make(i));
    }
    let digest = Sha256Digest::from_bytes(h.finalize().into());
    let data = futures::stream::iter((0..count).map(move |i| Ok(make(i)))).boxed();
    let meta = s
        .put_stream(
            &path,
            data,
            PutOptions::default()
                .with_expected_digest(digest)
                .with_size_hint(LARGE_OBJECT_SIZE),
        )
        .await
        .expect("large write");
    assert_eq!(meta.size, LARGE_OBJECT_SIZE);
    let mut stream = s
        .get(&path, GetOptions::default())
        .await
        .expect("large read")
        .stream;
    let mut h = sha2::Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = stream.try_next().await.expect("read chunk") {
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!(n, LARGE_OBJECT_SIZE);
    assert_eq!(Sha256Digest::from_bytes(h.finalize().into()), digest);
    let tail = s
        .get_range_bytes(&path, ByteRange::Suffix(5))
        .await
        .unwrap();
    assert_eq!(tail, piece.slice(piece.len() - 5..));
    s.delete(&path).await.unwrap();
}

/// Drivers without direct URLs return `None`; drivers with them return a
/// URL that expires in the future (fetching it is up to the driver's own
/// tests, which have an HTTP client).
pub async fn direct_urls_match_capabilities(s: &dyn Storage) {
    let caps = s.capabilities();
    let path = p("direct/url");
    s.put(&path, Bytes::from_static(b"direct"), PutOptions::default())
        .await
        .unwrap();
    let down = s
        .download_url(&path, &Default::default())
        .await
        .expect("download url");
    assert_eq!(
        down.is_some(),
        caps.direct_download,
        "download_url vs capabilities"
    );
    if let Some(u) = down {
        assert!(u.expires_at > chrono::Utc::now());
        assert!(u.url.starts_with("http"), "{}", u.url);
    }
    let up = s
        .upload_url(&path, &Default::default())
        .await
        .expect("upload url");
    assert_eq!(
        up.is_some(),
        caps.direct_upload,
        "upload_url vs capabilities"
    );
    s.delete(&path).await.unwrap();
}

/// validate() passes on a working storage and leaves no probe behind.
pub async fn validate_passes(s: &dyn Storage) {
    let report = s.validate().await;
    assert!(report.is_ok(), "validate failed: {report:?}");
    assert!(report.checks.len() >= 4, "{report:?}");
}

/// A storage handle usable by the macro's tests.
pub type SharedStorage = Arc<dyn Storage>;
