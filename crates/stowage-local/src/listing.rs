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
