//! Paged listings: the [`ListOptions`] and [`ListPage`] of
//! [`Storage::list_page`], the [`PageBuilder`] drivers assemble pages with,
//! and [`list_page_by_listing`], the generic implementation over
//! [`Storage::list`].
//!
//! A listing below a prefix is one ordered sequence of entries: objects and,
//! with `delimiter`, the "directories" directly below the prefix, in
//! bytewise order of their full path, a directory `a/b` sorting as `a/b/`.
//! A page holds the first `max_entries` entries whose full path sorts
//! strictly after `start_after`. Its `next_start_after` is the full path of
//! its last entry, so when that entry is a directory, `a/b/`, the next page
//! skips everything below `a/b`: what S3's ListObjectsV2 does with a
//! StartAfter (or a ListObjects marker) that is a common prefix.
//!
//! ```
//! # async fn demo(storage: &dyn stowage_core::Storage) -> stowage_core::Result<()> {
//! use stowage_core::{ListOptions, StoragePath};
//! let tags = StoragePath::parse("repositories/library/app/_manifests/tags")?;
//! let page = storage
//!     .list_page(
//!         ListOptions::default()
//!             .with_prefix(tags)
//!             .with_delimiter(true)
//!             .with_start_after("repositories/library/app/_manifests/tags/v1/")
//!             .with_max_entries(100),
//!     )
//!     .await?;
//! for tag in &page.prefixes {
//!     println!("{}", tag.segments().last().unwrap_or_default());
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use futures::TryStreamExt;

use crate::{ObjectMeta, Result, Storage, StoragePath};

/// The most entries a page holds, and the page size when none is asked
/// for (S3's ListObjectsV2 limit).
pub const MAX_PAGE_ENTRIES: usize = 1000;

/// Options of [`Storage::list_page`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListOptions {
    /// List below this path (`prefix/...`); `None`: the whole storage.
    pub prefix: Option<StoragePath>,
    /// Group entries at the next `/` below the prefix into
    /// [`ListPage::prefixes`] (like S3's delimiter `/`).
    pub delimiter: bool,
    /// Only entries (objects or prefixes) whose full path sorts strictly
    /// after this one (bytewise; a prefix `a/b` sorts as `a/b/`); S3's
    /// StartAfter.
    pub start_after: Option<String>,
    /// At most this many entries (objects + prefixes) in the page; `None`:
    /// the driver's page size (1000). Clamped to 1..=1000.
    pub max_entries: Option<usize>,
}

impl ListOptions {
    /// Lists below `prefix`.
    pub fn with_prefix(mut self, prefix: StoragePath) -> Self {
        self.prefix = Some(prefix);
        self
    }

    /// Groups entries into the directories directly below the prefix.
    pub fn with_delimiter(mut self, delimiter: bool) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Starts strictly after this full path (a page's `next_start_after`).
    pub fn with_start_after(mut self, start_after: impl Into<String>) -> Self {
        self.start_after = Some(start_after.into());
        self
    }

    /// At most this many entries (clamped to 1..=1000).
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = Some(max_entries);
        self
    }

    /// The page size: `max_entries` clamped to 1..=[`MAX_PAGE_ENTRIES`],
    /// [`MAX_PAGE_ENTRIES`] when unset.
    pub fn page_size(&self) -> usize {
        self.max_entries
            .map_or(MAX_PAGE_ENTRIES, |n| n.clamp(1, MAX_PAGE_ENTRIES))
    }

    /// What every listed full path starts with: `prefix/`, or the empty
    /// string for the whole storage.
    pub fn base(&self) -> String {
        self.prefix
            .as_ref()
            .map(|p| format!("{p}/"))
            .unwrap_or_default()
    }

    /// Whether an entry whose full path is `key` (a directory's with its
    /// trailing `/`) sorts strictly after `start_after`.
    pub fn is_after_start(&self, key: &str) -> bool {
        self.start_after.as_deref().is_none_or(|s| key > s)
    }
}

/// One page of [`Storage::list_page`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ListPage {
    /// Objects, sorted by path.
    pub objects: Vec<ObjectMeta>,
    /// With `delimiter`: the "directories" directly below the prefix,
    /// sorted, each a path without trailing slash (e.g.
    /// `repositories/library`).
    pub prefixes: Vec<StoragePath>,
    /// Where the next page starts (pass it as `start_after`); `None` on the
    /// last page. The full path of the page's last entry: `a/b/` (with the
    /// slash) when that entry is the prefix `a/b`.
    pub next_start_after: Option<String>,
}

impl ListPage {
    /// The number of entries (objects + prefixes).
    pub fn len(&self) -> usize {
        self.objects.len() + self.prefixes.len()
    }

    /// Whether the page holds no entry.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.prefixes.is_empty()
    }
}

/// An entry of a page being assembled.
#[derive(Debug)]
enum Entry {
    Object(ObjectMeta),
    Prefix(StoragePath),
}

/// Assembles a page from entries offered in any order: it keeps the entries
/// after `start_after`, only the first `page_size` of them in order plus one
/// more (which tells that the listing goes on), so its memory stays bounded
/// whatever the listing's length.
///
/// A driver that offers entries in order can stop once
/// [`PageBuilder::is_full`]; one that lists a backend page at a time hands
/// the backend's own "more follows after" to [`PageBuilder::finish`].
#[derive(Debug)]
pub struct PageBuilder {
    base: String,
    delimiter: bool,
    start_after: Option<String>,
    size: usize,
    entries: BTreeMap<String, Entry>,
}

impl PageBuilder {
    /// An empty page for `options`.
    pub fn new(options: &ListOptions) -> Self {
        Self {
            base: options.base(),
            delimiter: options.delimiter,
            start_after: options.start_after.clone(),
            size: options.page_size(),
            entries: BTreeMap::new(),
        }
    }

    /// Whether an entry with full path `key` (a directory's with its
    /// trailing `/`) would be kept if offered now; lets a driver skip work
    /// (such as checking a directory holds objects) for entries that would
    /// not be.
    pub fn wants(&self, key: &str) -> bool {
        if self.start_after.as_deref().is_some_and(|s| key <= s) {
            return false;
        }
        if self.entries.len() <= self.size {
            return true;
        }
        self.entries
            .last_key_value()
            .is_some_and(|(last, _)| key < last.as_str())
    }

    /// Whether the page holds its `page_size` entries and the one after
    /// them: an entry offered later in order cannot change it.
    pub fn is_full(&self) -> bool {
        self.entries.len() > self.size
    }

    /// Whether no entry was kept yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Offers an object as [`Storage::list`] gives it: ignored when not
    /// below the prefix; with `delimiter`, an object deeper than directly
    /// below the prefix counts as its directory.
    pub fn push_listed(&mut self, meta: ObjectMeta) {
        let path = meta.path.as_str();
        let Some(rest) = path.strip_prefix(self.base.as_str()) else {
            return;
        };
        let slash = if self.delimiter { rest.find('/') } else { None };
        if let Some(slash) = slash {
            // A path's leading segments are a valid path too.
            if let Ok(dir) = StoragePath::parse(&path[..self.base.len() + slash]) {
                self.push_prefix(dir);
            }
            return;
        }
        self.push_object(meta);
    }

    /// Offers an object (directly below the prefix when listing with a
    /// delimiter).
    pub fn push_object(&mut self, meta: ObjectMeta) {
        let key = meta.path.as_str().to_string();
        self.insert(key, Entry::Object(meta));
    }

    /// Offers a directory directly below the prefix (one that holds at
    /// least one object).
    pub fn push_prefix(&mut self, prefix: StoragePath) {
        let key = format!("{prefix}/");
        self.insert(key, Entry::Prefix(prefix));
    }

    fn insert(&mut self, key: String, entry: Entry) {
        if !self.wants(&key) {
            return;
        }
        self.entries.insert(key, entry);
        if self.entries.len() > self.size + 1 {
            self.entries.pop_last();
        }
    }

    /// The page: the first `page_size` entries kept. Its `next_start_after`
    /// is the last entry's full path when an entry after them was offered;
    /// otherwise `more_after`: the full path after which the backend says
    /// its listing goes on (the last entry it returned), `None` when the
    /// listing is complete.
    pub fn finish(mut self, more_after: Option<String>) -> ListPage {
        let next_start_after = if self.entries.len() > self.size {
            self.entries.pop_last();
            self.entries.last_key_value().map(|(key, _)| key.clone())
        } else {
            more_after
        };
        let mut page = ListPage {
            next_start_after,
            ..ListPage::default()
        };
        for entry in self.entries.into_values() {
            match entry {
                Entry::Object(meta) => page.objects.push(meta),
                Entry::Prefix(prefix) => page.prefixes.push(prefix),
            }
        }
        page
    }
}

/// [`Storage::list_page`] over [`Storage::list`]: reads the whole listing
/// below the prefix (keeping only a page and one entry in memory), so each
/// page costs a full listing. Fine for small stores; drivers whose backend
/// can start a listing at a key do better.
///
/// # Errors
/// As [`Storage::list`].
pub async fn list_page_by_listing<S: Storage + ?Sized>(
    storage: &S,
    options: ListOptions,
) -> Result<ListPage> {
    let mut page = PageBuilder::new(&options);
    let mut listing = storage.list(options.prefix.as_ref());
    while let Some(meta) = listing.try_next().await? {
        page.push_listed(meta);
    }
    Ok(page.finish(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> StoragePath {
        StoragePath::parse(s).unwrap()
    }

    const PATHS: [&str; 8] = [
        "l/d/x/y",
        "l/a",
        "l-sibling",
        "l/b/2",
        "l/e",
        "l/b/1",
        "l/c",
        "m",
    ];

    /// A page of the emulation over [`PATHS`] (offered out of order).
    fn page_of(options: &ListOptions) -> ListPage {
        let mut page = PageBuilder::new(options);
        for path in PATHS {
            page.push_listed(ObjectMeta::new(p(path), 1));
        }
        page.finish(None)
    }

    /// The entries of a page in order: objects as their path, prefixes
    /// with a trailing slash.
    fn entries(page: &ListPage) -> Vec<String> {
        let mut all: Vec<String> = page
            .objects
            .iter()
            .map(|m| m.path.to_string())
            .chain(page.prefixes.iter().map(|d| format!("{d}/")))
            .collect();
        all.sort();
        all
    }

    /// Every entry, walking pages of `max` through `next_start_after`.
    fn walk(options: &ListOptions, max: usize) -> Vec<String> {
        let mut all = Vec::new();
        let mut options = options.clone().with_max_entries(max);
        loop {
            let page = page_of(&options);
            assert!(page.len() <= max, "{page:?}");
            let got = entries(&page);
            all.extend(got.iter().cloned());
            match page.next_start_after {
                Some(next) => {
                    assert_eq!(Some(&next), got.last(), "next is the last entry");
                    options.start_after = Some(next);
                }
                None => return all,
            }
        }
    }

    #[test]
    fn options_clamp_the_page_size() {
        assert_eq!(ListOptions::default().page_size(), 1000);
        assert_eq!(ListOptions::default().with_max_entries(0).page_size(), 1);
        assert_eq!(ListOptions::default().with_max_entries(7).page_size(), 7);
        assert_eq!(
            ListOptions::default().with_max_entries(5000).page_size(),
            1000
        );
        assert_eq!(ListOptions::default().base(), "");
        assert_eq!(ListOptions::default().with_prefix(p("a/b")).base(), "a/b/");
    }

    #[test]
    fn without_delimiter_every_object_below_the_prefix_in_order() {
        let options = ListOptions::default().with_prefix(p("l"));
        let page = page_of(&options);
        assert_eq!(
            entries(&page),
            ["l/a", "l/b/1", "l/b/2", "l/c", "l/d/x/y", "l/e"]
        );
        assert!(page.prefixes.is_empty());
        assert_eq!(page.next_start_after, None);
        let all = page_of(&ListOptions::default());
        assert_eq!(entries(&all)[0], "l-sibling", "'-' sorts before '/'");
        assert_eq!(all.len(), PATHS.len());
    }

    #[test]
    fn with_delimiter_directories_interleave_with_objects() {
        let options = ListOptions::default()
            .with_prefix(p("l"))
            .with_delimiter(true);
        let page = page_of(&options);
        assert_eq!(entries(&page), ["l/a", "l/b/", "l/c", "l/d/", "l/e"]);
        assert_eq!(page.prefixes, [p("l/b"), p("l/d")]);
        let root = page_of(&ListOptions::default().with_delimiter(true));
        assert_eq!(entries(&root), ["l-sibling", "l/", "m"]);
    }

    #[test]
    fn walking_pages_gives_every_entry_once_in_order() {
        for delimiter in [false, true] {
            let options = ListOptions::default()
                .with_prefix(p("l"))
                .with_delimiter(delimiter);
            let whole = entries(&page_of(&options));
            for max in 1..=4 {
                assert_eq!(walk(&options, max), whole, "max {max}, {delimiter}");
            }
        }
    }

    #[test]
    fn start_after_a_directory_skips_everything_below_it() {
        let options = ListOptions::default()
            .with_prefix(p("l"))
            .with_delimiter(true);
        let after = |s: &str| entries(&page_of(&options.clone().with_start_after(s)));
        assert_eq!(after("l/b/"), ["l/c", "l/d/", "l/e"]);
        assert_eq!(after("l/b/1"), ["l/c", "l/d/", "l/e"], "inside l/b");
        assert_eq!(after("l/b"), ["l/b/", "l/c", "l/d/", "l/e"]);
        assert_eq!(after("a"), ["l/a", "l/b/", "l/c", "l/d/", "l/e"]);
        assert!(after("l/e").is_empty());
        assert!(after("m").is_empty());
        let flat = ListOptions::default().with_prefix(p("l"));
        assert_eq!(
            entries(&page_of(&flat.with_start_after("l/b/"))),
            ["l/b/1", "l/b/2", "l/c", "l/d/x/y", "l/e"]
        );
    }

    #[test]
    fn a_prefix_that_is_an_object_or_missing_lists_nothing() {
        for prefix in ["l/a", "nothing", "l/b/1"] {
            for delimiter in [false, true] {
                let page = page_of(
                    &ListOptions::default()
                        .with_prefix(p(prefix))
                        .with_delimiter(delimiter),
                );
                assert!(page.is_empty(), "{prefix}: {page:?}");
                assert_eq!(page.next_start_after, None);
            }
        }
    }

    #[test]
    fn the_backends_more_after_is_kept_unless_an_entry_was_cut() {
        let options = ListOptions::default().with_max_entries(2);
        let mut page = PageBuilder::new(&options);
        page.push_object(ObjectMeta::new(p("a"), 1));
        let short = page.finish(Some("b-invalid".into()));
        assert_eq!(short.next_start_after.as_deref(), Some("b-invalid"));
        let mut page = PageBuilder::new(&options);
        for path in ["c", "a", "b"] {
            page.push_object(ObjectMeta::new(p(path), 1));
        }
        assert!(page.is_full());
        assert!(!page.wants("d") && page.wants("a0"));
        let cut = page.finish(Some("z".into()));
        assert_eq!(entries(&cut), ["a", "b"]);
        assert_eq!(cut.next_start_after.as_deref(), Some("b"));
    }
}
