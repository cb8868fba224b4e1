//! The core of stowage, the storage layer container registries embed: the
//! [`Storage`] trait, validated [`StoragePath`]s, the one [`Error`] type,
//! resumable [`UploadState`]s, [`DirectUrl`]s, and (feature `testkit`) the
//! conformance suite every driver runs against itself.
//!
//! ```
//! # async fn demo(storage: &dyn stowage_core::Storage) -> stowage_core::Result<()> {
//! use stowage_core::{PutOptions, StorageExt, StoragePath};
//! let path = StoragePath::parse("sha256/ab/abcdef")?;
//! storage.put(&path, "hello".into(), PutOptions::default()).await?;
//! assert_eq!(storage.get_bytes(&path).await?, "hello");
//! # Ok(()) }
//! ```
//!
//! | feature   | what it adds                                            |
//! |-----------|---------------------------------------------------------|
//! | `testkit` | the `testkit` module: the conformance suite for drivers |

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod config;
mod digest;
mod direct_url;
pub mod download;
mod error;
pub mod forward;
pub mod layers;
pub mod listing;
pub mod metrics;
pub mod multipart;
mod object;
mod path;
pub mod retry_policy;
mod storage;
pub mod upload;
pub mod validate;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use digest::{DigestParseError, Sha256Digest};
pub use direct_url::{
    Capabilities, DirectUrl, DownloadUrlOptions, Fallback, UploadUrlOptions, UrlMethod, UrlSource,
};
pub use error::{
    find_in_chain, BoxError, CredentialsFailure, CredentialsProblem, Error, ErrorKind, Operation,
    Result,
};
pub use listing::{ListOptions, ListPage};
pub use metrics::Metric;
pub use object::{ByteRange, ByteStream, GetOptions, GetResult, ObjectMeta, PutOptions};
pub use path::{StoragePath, MAX_PATH_BYTES};
pub use storage::{ListStream, Storage, StorageExt, WriteStream};
pub use upload::{CleanupReport, CompleteOptions, UploadState};
pub use validate::{CheckStatus, ValidationReport};

pub use async_trait::async_trait;
#[doc(hidden)]
pub use bytes as __bytes;
