//! The embedded default stowage driver: objects as files under a directory
//! (Quay's `LocalStorage`), or in memory for tests, on `object_store`.
//!
//! Writes are atomic (a staging file renamed into place), chunked uploads
//! keep their chunks under `_uploads/`, and there are no direct URLs.
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
