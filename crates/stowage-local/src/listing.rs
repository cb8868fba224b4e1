//! Paged listings: a walk of the directory tree in listing order that reads
//! only the directories a page needs, so a page of a large store costs a
//! page, not the store.
//!
//! `object_store` keeps names percent-encoded on disk and lists a directory
//! in no particular order, so its `list_with_offset` (which compares the
//! encoded names, and walks everything before the offset too) cannot give
//! the bytewise order of the decoded paths. Instead each directory is read
//! once with `list_with_delimiter`, its children sorted by full path (a
//! directory `a/b` as `a/b/`, which puts every path below it in the right
//! place among its siblings), and visited smallest first; directories whose
//! paths all sort before `start_after` are never read, and the walk stops
//! once the page and one entry after it are known.

use object_store::path::Path;
use object_store::ObjectStore;
use stowage_core::listing::PageBuilder;
use stowage_core::{ListOptions, ListPage, ObjectMeta, Result, StoragePath};

use crate::error::from_object_store;
use crate::paths::{from_store, to_store};
use crate::LocalStorage;

/// A child of a directory being walked.
enum Child {
    Object(ObjectMeta),
    Dir(StoragePath),
}

/// Whether a directory whose paths all start with `dir_key` (`a/b/`) can
/// hold a path sorting after `start_after`.
fn reaches_past(dir_key: &str, start_after: Option<&str>) -> bool {
    start_after.is_none_or(|s| dir_key > s || s.starts_with(dir_key))
}

impl LocalStorage {
    /// One page of [`stowage_core::Storage::list_page`].
    ///
    /// With `delimiter`, the prefix's directory is read, and each directory
    /// that makes it into the page is checked to hold an object (a
    /// directory left empty, or holding only a write's staging file, is no
    /// prefix on S3 either); without, the tree below the prefix is walked
    /// in order, skipping the directories before `start_after`.
    pub(crate) async fn walk_page(&self, options: ListOptions) -> Result<ListPage> {
        if options.delimiter {
            if let Some(page) = self.directory_page(&options).await? {
                return Ok(page);
            }
        }
        let mut page = PageBuilder::new(&options);
        let start_after = options.start_after.as_deref();
        // The children still to visit, the smallest last.
        let mut pending = if reaches_past(&options.base(), start_after) {
            self.children(options.prefix.as_ref()).await?
        } else {
            Vec::new()
        };
        while let Some((key, child)) = pending.pop() {
            if page.is_full() {
                break;
            }
            match child {
                Child::Object(meta) => page.push_object(meta),
                Child::Dir(dir) if options.delimiter => {
                    if page.wants(&key) && self.holds_objects(&dir).await? {
                        page.push_prefix(dir);
                    }
                }
                Child::Dir(dir) => {
                    if reaches_past(&key, start_after) {
                        // Everything below `dir` sorts before what is left.
                        pending.extend(self.children(Some(&dir)).await?);
                    }
                }
            }
        }
        Ok(page.finish(None))
    }

    /// The objects and directories directly in `dir` (the root when
    /// `None`), each with its full path, sorted largest first.
    async fn children(&self, dir: Option<&StoragePath>) -> Result<Vec<(String, Child)>> {
        let location = dir.map(to_store);
        let listed = ObjectStore::list_with_delimiter(&*self.store, location.as_ref())
            .await
            .map_err(|e| from_object_store(e, dir.map_or("", StoragePath::as_str)))?;
        let mut children = Vec::with_capacity(listed.objects.len() + listed.common_prefixes.len());
        for object in listed.objects {
            let meta = self.meta(object)?;
            children.push((meta.path.as_str().to_string(), Child::Object(meta)));
        }
        for prefix in &listed.common_prefixes {
            let dir = from_store(prefix)?;
            children.push((format!("{dir}/"), Child::Dir(dir)));
        }
        children.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        Ok(children)
    }

    /// Whether any object lies below `dir`, stopping at the first
    /// directory that holds one.
    async fn holds_objects(&self, dir: &StoragePath) -> Result<bool> {
        if let Some(found) = self.holds_objects_on_disk(dir).await {
            return Ok(found);
        }
        let mut dirs: Vec<Path> = vec![to_store(dir)];
        while let Some(location) = dirs.pop() {
            let listed = ObjectStore::list_with_delimiter(&*self.store, Some(&location))
                .await
                .map_err(|e| from_object_store(e, dir.as_str()))?;
            if !listed.objects.is_empty() {
                return Ok(true);
            }
            dirs.extend(listed.common_prefixes);
        }
        Ok(false)
    }
}

/// Whether a name read from disk is a stored segment as it is: what
/// `object_store` writes without encoding (it percent-encodes `%`, `#`,
/// `~`, non-ASCII and more), so the name is the key's segment.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An entry of a directory read from disk.
enum Entry {
    /// A stored object (its segment).
    Object(String),
    /// A directory (its segment).
    Dir(String),
}

/// The entries of `dir` on disk, or `None` when one of them is not a plain
/// name (an encoded segment, something other than a file or directory),
/// and the directory is then listed through `object_store`. A write's
/// staging file (`<name>#<n>`, with a `#` no stored name has) is left out.
fn read_plain_dir(dir: &std::path::Path) -> std::io::Result<Option<Vec<Entry>>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Ok(None);
        };
        let kind = entry.file_type()?;
        if kind.is_file() && name.contains('#') {
            continue;
        }
        if !plain(name) {
            return Ok(None);
        }
        if kind.is_dir() {
            entries.push(Entry::Dir(name.to_string()));
        } else if kind.is_file() {
            entries.push(Entry::Object(name.to_string()));
        } else {
            return Ok(None);
        }
    }
    Ok(Some(entries))
}

/// Whether any plain stored object lies below `dir` on disk, depth first,
/// stopping at the first one; `None` when a name on the way is not plain.
fn holds_plain_objects(dir: &std::path::Path) -> std::io::Result<Option<bool>> {
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Some(entries) = read_plain_dir(&dir)? else {
            return Ok(None);
        };
        for entry in entries {
            match entry {
                Entry::Object(_) => return Ok(Some(true)),
                Entry::Dir(name) => dirs.push(dir.join(name)),
            }
        }
    }
    Ok(Some(false))
}

impl LocalStorage {
    /// The on-disk directory of `dir` (the root when `None`), for a store
    /// on disk.
    /// `None` in memory, or when a segment of `dir` is not plain (its
    /// directory on disk has an encoded name).
    fn disk_dir(&self, dir: Option<&StoragePath>) -> Option<std::path::PathBuf> {
        let root = self.root()?;
        if dir.is_some_and(|d| !d.segments().all(plain)) {
            return None;
        }
        Some(match dir {
            Some(dir) => dir.segments().fold(root.to_path_buf(), |p, s| p.join(s)),
            None => root.to_path_buf(),
        })
    }

    /// [`LocalStorage::holds_objects`] read from disk without a stat per
    /// entry; `None` when it must go through `object_store`.
    async fn holds_objects_on_disk(&self, dir: &StoragePath) -> Option<bool> {
        let path = self.disk_dir(Some(dir))?;
        tokio::task::spawn_blocking(move || holds_plain_objects(&path))
            .await
            .ok()?
            .ok()?
    }

    /// A delimited page of a store on disk, read with one pass over the
    /// prefix's directory (names only: no stat of the entries that do not
    /// make it into the page) and a check of only the entries that do. A
    /// directory of 100,000 tags answers a page of 100 without building
    /// 100,000 entries. `None` (list through `object_store`) in memory,
    /// or when a name in the directory is not plain.
    async fn directory_page(&self, options: &ListOptions) -> Result<Option<ListPage>> {
        let Some(path) = self.disk_dir(options.prefix.as_ref()) else {
            return Ok(None);
        };
        let read = tokio::task::spawn_blocking(move || read_plain_dir(&path)).await;
        let entries = match read {
            Ok(Ok(Some(entries))) => entries,
            // A missing directory lists nothing, as object_store says.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            _ => return Ok(None),
        };
        let base = options.base();
        let mut page = PageBuilder::new(options);
        let mut keys: Vec<(String, bool)> = entries
            .into_iter()
            .map(|entry| match entry {
                Entry::Object(name) => (format!("{base}{name}"), false),
                Entry::Dir(name) => (format!("{base}{name}/"), true),
            })
            .filter(|(key, _)| page.wants(key))
            .collect();
        keys.sort_unstable();
        for (key, is_dir) in keys {
            if page.is_full() {
                break;
            }
            if !page.wants(&key) {
                continue;
            }
            if is_dir {
                let dir = StoragePath::parse(key.trim_end_matches('/'))?;
                if self.holds_objects(&dir).await? {
                    page.push_prefix(dir);
                }
            } else {
                let object = StoragePath::parse(&key)?;
                match stowage_core::Storage::stat(self, &object).await {
                    Ok(meta) => page.push_object(meta),
                    // Deleted since the directory was read.
                    Err(stowage_core::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Some(page.finish(None)))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use stowage_core::{
        Capabilities, GetOptions, GetResult, ListStream, PutOptions, Storage, WriteStream,
    };

    use super::*;

    fn p(s: &str) -> StoragePath {
        StoragePath::parse(s).unwrap()
    }

    /// The local driver with the generic `list_page` (over `list`), to run
    /// the conformance case on the emulation.
    #[derive(Debug)]
    struct Emulated(LocalStorage);

    #[async_trait::async_trait]
    impl Storage for Emulated {
        fn driver(&self) -> &'static str {
            "emulated"
        }

        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }

        async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
            self.0.get(path, options).await
        }

        async fn put_stream(
            &self,
            path: &StoragePath,
            data: WriteStream<'_>,
            options: PutOptions,
        ) -> Result<ObjectMeta> {
            self.0.put_stream(path, data, options).await
        }

        async fn stat(&self, path: &StoragePath) -> Result<ObjectMeta> {
            self.0.stat(path).await
        }

        async fn delete(&self, path: &StoragePath) -> Result<()> {
            self.0.delete(path).await
        }

        fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
            self.0.list(prefix)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_emulation_passes_the_conformance_case() {
        let dir = tempfile::tempdir().unwrap();
        for storage in [
            Emulated(LocalStorage::in_memory()),
            Emulated(LocalStorage::open(dir.path()).unwrap()),
        ] {
            stowage_core::testkit::list_page_orders_groups_and_resumes(&storage).await;
            stowage_core::testkit::assert_left_nothing(&storage).await;
        }
    }

    #[test]
    fn directories_before_start_after_are_skipped() {
        assert!(reaches_past("l/b/", None));
        assert!(reaches_past("l/b/", Some("l/a")));
        assert!(reaches_past("l/b/", Some("l/b/")));
        assert!(reaches_past("l/b/", Some("l/b/1")));
        assert!(!reaches_past("l/b/", Some("l/c")));
        assert!(!reaches_past("l/b/", Some("l/b0")));
        assert!(reaches_past("", Some("anything")));
    }

    /// A delimited page read from disk (plain names) is the page the
    /// `object_store` listing gives, for every page of a walk: objects and
    /// directories mixed, a start inside the directory, a staging file,
    /// an empty directory; a directory with an encoded name is listed
    /// through `object_store` and gives the same too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_read_from_disk_match_object_stores() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalStorage::open(dir.path()).unwrap();
        let memory = LocalStorage::in_memory();
        let mut keys: Vec<String> = (0..250)
            .map(|i| format!("r/_manifests/tags/t{:03}/current/link", (i * 37) % 250))
            .collect();
        keys.extend((0..30).map(|i| format!("r/_manifests/tags/o{i:02}")));
        keys.push("r/_manifests/odd/with space/current/link".into());
        keys.push("r/_manifests/odd/plain".into());
        for key in &keys {
            for s in [&disk, &memory] {
                s.put(&p(key), Bytes::from_static(b"x"), PutOptions::default())
                    .await
                    .unwrap();
            }
        }
        let root = disk.root().unwrap().to_path_buf();
        std::fs::create_dir_all(root.join("r/_manifests/tags/t999-empty/deeper")).unwrap();
        std::fs::write(root.join("r/_manifests/tags/t100/x#7"), b"partial").unwrap();
        for (prefix, starts) in [
            (
                "r/_manifests/tags",
                vec![
                    None,
                    Some("r/_manifests/tags/o15"),
                    Some("r/_manifests/tags/t123/"),
                ],
            ),
            ("r/_manifests", vec![None]),
            (
                "r/_manifests/odd",
                vec![None, Some("r/_manifests/odd/plain")],
            ),
            ("r/missing", vec![None]),
        ] {
            for start in starts {
                for size in [1usize, 7, 100, 1000] {
                    let mut options = ListOptions::default()
                        .with_prefix(p(prefix))
                        .with_delimiter(true)
                        .with_max_entries(size);
                    if let Some(start) = start {
                        options = options.with_start_after(start);
                    }
                    let a = disk.list_page(options.clone()).await.unwrap();
                    let b = memory.list_page(options).await.unwrap();
                    let names = |page: &ListPage| {
                        let mut v: Vec<String> =
                            page.objects.iter().map(|m| m.path.to_string()).collect();
                        v.extend(page.prefixes.iter().map(|d| format!("{d}/")));
                        v.sort();
                        (v, page.next_start_after.clone())
                    };
                    assert_eq!(names(&a), names(&b), "{prefix} after {start:?}, {size}");
                }
            }
        }
    }

    /// Directories left empty, or holding only a staging file, are not
    /// prefixes, and hold no object either.
    #[tokio::test]
    async fn empty_and_staging_only_directories_are_no_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path()).unwrap();
        let root = storage.root().unwrap().to_path_buf();
        storage
            .put(&p("l/a/1"), Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap();
        std::fs::create_dir_all(root.join("l/empty/deeper")).unwrap();
        std::fs::create_dir_all(root.join("l/staging")).unwrap();
        std::fs::write(root.join("l/staging/x#1"), b"partial").unwrap();
        let grouped = storage
            .list_page(
                ListOptions::default()
                    .with_prefix(p("l"))
                    .with_delimiter(true),
            )
            .await
            .unwrap();
        assert_eq!(grouped.prefixes, [p("l/a")]);
        assert!(grouped.objects.is_empty());
        let flat = storage
            .list_page(ListOptions::default().with_prefix(p("l")))
            .await
            .unwrap();
        let paths: Vec<&str> = flat.objects.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["l/a/1"]);
        assert_eq!(flat.next_start_after, None);
    }

    /// A page never reads a directory before `start_after` or past the
    /// entry after its own end: a directory that cannot be listed (it holds
    /// a name that is not UTF-8) in either place does not fail it, while
    /// the full listing does.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_page_reads_only_the_directories_it_needs() {
        use std::os::unix::ffi::OsStrExt;

        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::open(dir.path()).unwrap();
        let root = storage.root().unwrap().to_path_buf();
        for path in ["l/a", "l/b/1", "l/c", "l/d/1", "l/e", "l/f", "l/z/1"] {
            storage
                .put(&p(path), Bytes::from_static(b"x"), PutOptions::default())
                .await
                .unwrap();
        }
        let unreadable = std::ffi::OsStr::from_bytes(b"not-utf8-\xff");
        std::fs::write(root.join("l/b").join(unreadable), b"x").unwrap();
        std::fs::write(root.join("l/z").join(unreadable), b"x").unwrap();
        let full = stowage_core::listing::list_page_by_listing(
            &storage,
            ListOptions::default().with_prefix(p("l")),
        )
        .await;
        assert!(full.is_err(), "the full listing reads l/b: {full:?}");

        let page = storage
            .list_page(
                ListOptions::default()
                    .with_prefix(p("l"))
                    .with_start_after("l/c")
                    .with_max_entries(2),
            )
            .await
            .unwrap();
        let paths: Vec<&str> = page.objects.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["l/d/1", "l/e"]);
        assert_eq!(page.next_start_after.as_deref(), Some("l/e"));

        let grouped = storage
            .list_page(
                ListOptions::default()
                    .with_prefix(p("l"))
                    .with_delimiter(true)
                    .with_start_after("l/b/")
                    .with_max_entries(2),
            )
            .await
            .unwrap();
        let paths: Vec<&str> = grouped.objects.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["l/c"]);
        assert_eq!(grouped.prefixes, [p("l/d")]);
        assert_eq!(grouped.next_start_after.as_deref(), Some("l/d/"));
    }
}
