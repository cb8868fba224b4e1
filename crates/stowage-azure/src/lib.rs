//! The Azure Blob Storage driver of stowage (Quay's `AzureStorage`), on the
//! Blob REST API.
//!
//! - Streamed writes: one Put Blob for objects up to one block, else Put
//!   Block with several blocks in flight and memory bounded by about
//!   `(azure_upload_concurrency + 1) x azure_block_size_mb`, then one Put
//!   Block List. Nothing is visible before the block list is committed: a
//!   failed, cancelled or dropped write leaves only uncommitted blocks,
//!   which no read or listing shows and Azure discards (at the next commit
//!   of the blob, else after a week).
//! - Chunked uploads: one temporary blob per chunk under `_uploads/`,
//!   assembled inside Azure with Put Block From URL (each chunk becomes a
//!   block of the destination) when the server does it, else streamed.
//! - Faults: one retry policy for every request (attempts and a time
//!   budget, jittered exponential backoff, only what another attempt can
//!   change), reads that resume from the next byte with the ETag pinned
//!   (`If-Match`), ranged reads that never label bytes with the wrong
//!   offset, a Content-MD5 the server checks on every block over plain
//!   HTTP, lost commits reconciled from the committed block list.
//! - Direct download and upload URLs: service SAS signed with the account
//!   key; copies with Copy Blob; `validate` that tells a wrong key, a
//!   missing container and an unreachable endpoint apart. See
//!   `docs/azure.md`.
//!
//! Why the REST API with `reqwest` rather than `object_store`'s `azure`
//! feature: that brings a second client stack (its own HTTP, retry and
//! credential configuration beside the ones this driver shares with the
//! rest of stowage) and hides staged blocks behind its multipart upload,
//! while this driver needs them: block ids of its own for the bounded
//! writer of core, Put Block From URL for server-side assembly, and the
//! committed block list to tell whether a commit whose answer was lost
//! happened. The API surface used is small (Put Blob, Put Block, Put Block
//! From URL, Put Block List, Get Block List, Get Blob, Get Blob
//! Properties, Delete Blob, List Blobs, Copy Blob), signed with Shared Key
//! (HMAC-SHA256) or a SAS token.
//!
//! ```no_run
//! # fn demo() -> stowage_core::Result<()> {
//! use stowage_azure::{AzureConfig, AzureStorage};
//! use stowage_core::config::Secret;
//! let config = AzureConfig::new("myaccount", "registry")
//!     .with_account_key(Secret::new("base64-account-key"))
//!     .with_root("datastorage/registry");
//! let storage = AzureStorage::new(config)?;
//! # Ok(()) }
//! ```

// Set-up, requests and the driver type.
mod auth;
mod client;
mod config;
mod error;
pub mod keys;
pub mod limits;
mod retry;
mod storage;
mod xml;
// What the driver does, one concern per file.
mod copies;
mod listing;
mod presign;
mod reads;
mod resume;
mod validation;
mod writes;

pub use auth::{container_sas, SasPermissions};
pub use config::AzureConfig;
pub use storage::AzureStorage;
