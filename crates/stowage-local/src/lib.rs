//! The embedded default stowage driver: objects as files under a directory
//! (Quay's `LocalStorage`), or in memory for tests, on `object_store`.
//!
//! Writes are atomic (a staging file renamed into place), chunked uploads
//! keep their chunks under `_uploads/`, and there are no direct URLs.
//! [`LocalStorage::from_object_store`] puts the same behaviour over any
//! `object_store` store an embedder has.
//!
//! ```no_run
//! # async fn demo() -> stowage_core::Result<()> {
//! use stowage_core::{PutOptions, StorageExt, StoragePath, Storage};
//! let storage = stowage_local::LocalStorage::open("./stowage-data")?;
//! let path = StoragePath::parse("hello.txt")?;
//! storage.put(&path, "hi".into(), PutOptions::default()).await?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod listing;
mod paths;
mod storage;

pub use config::LocalConfig;
pub use storage::LocalStorage;

/// The `object_store` crate [`LocalStorage`] is built on, for
/// [`LocalStorage::from_object_store`].
pub use object_store;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;
    use stowage_core::{PutOptions, Storage, StorageExt, StoragePath};

    use crate::LocalStorage;

    #[tokio::test]
    async fn wraps_an_object_store_the_embedder_has() {
        let store = Arc::new(InMemory::new());
        let storage = LocalStorage::from_object_store(store.clone());
        let path = StoragePath::parse("blobs/a b").unwrap();
        storage
            .put(&path, "hello".into(), PutOptions::default())
            .await
            .unwrap();
        let seen = store
            .head(&Path::from_iter(["blobs", "a b"]))
            .await
            .unwrap();
        assert_eq!(seen.size, 5, "written to the embedder's store");
        assert_eq!(storage.get_bytes(&path).await.unwrap(), "hello");
        assert!(storage.root().is_none());
        assert_eq!(storage.driver(), "local");
    }
}
