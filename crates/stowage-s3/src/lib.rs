//! The S3 driver of stowage (Quay's `S3Storage`), on `aws-sdk-s3`.
//!
//! - Streamed writes: one PUT for objects up to one part, else a multipart
//!   upload with several parts in flight and memory bounded by about
//!   `(s3_upload_concurrency + 1) x s3_part_size_mb`; a failed, cancelled or
//!   dropped write aborts its multipart upload.
//! - Chunked uploads: one temporary object per chunk under `_uploads/`,
//!   assembled inside S3 with UploadPartCopy when the chunks are large
//!   enough, else streamed.
//! - Faults: one retry policy for every request (attempts and a time
//!   budget, jittered exponential backoff, only what another attempt can
//!   change), reads that resume from the next byte with the ETag pinned,
//!   a CompleteMultipartUpload whose answer was lost reconciled with a
//!   HEAD, a checksum the server verifies on every part (Content-MD5 over
//!   plain HTTP, the signed SHA-256 otherwise: `s3_part_checksum`),
//!   listings that fail rather than loop or stop short. See `docs/s3.md`.
//! - Credentials from the configuration's static keys, the SDK's default
//!   chain, or a [`CredentialSource`] (stowage-sts's, or the embedder's)
//!   giving stowage's own [`Credentials`], not the SDK's types.
//! - A configuration is checked when the driver is built, however it was
//!   made ([`S3Config::problems`]): every problem at once, by key.
//! - Presigned GET/HEAD/PUT URLs; cleanup of stale uploads and orphaned
//!   multipart uploads; `validate` that tells a missing bucket, denied
//!   access, a wrong region and an unreachable endpoint apart.
//!
//! Works with AWS and S3-compatible servers (Ceph RGW, Garage, MinIO):
//! the SDK's optional CRC checksums (trailers many servers refuse) are off,
//! and ETags
//! missing from CompleteMultipartUpload answers are read back with HEAD.
//! Google Cloud Storage's XML API runs with [`ServerProfile::Gcs`], which
//! avoids the operations GCS lacks (`docs/gcs.md`).
//!
//! ```no_run
//! # async fn demo() -> stowage_core::Result<()> {
//! use stowage_s3::{S3Config, S3Storage};
//! let config = S3Config::new("my-bucket").with_root("registry").with_region("eu-west-1");
//! let storage = S3Storage::new(config).await?;
//! # Ok(()) }
//! ```

// Set-up and the driver type.
mod builder;
mod config;
mod credentials;
mod error;
pub mod keys;
pub mod limits;
// What a server lacks (Google Cloud Storage), and the paths taken instead.
mod profile;
mod retry;
mod storage;
mod tls;
// What the driver does, one concern per file.
mod cleanup;
mod copies;
mod deletes;
mod listing;
mod md5_lanes;
mod multipart;
mod plan;
mod presign;
mod read_ahead;
mod reads;
mod resume;
mod setup;
mod validation;
mod writes;
// The least-privilege IAM policy of these calls.
pub mod iam;

pub use config::{PartChecksum, S3Config, ServerSideEncryption};
pub use credentials::{CredentialSource, Credentials};
pub use profile::ServerProfile;
pub use storage::S3Storage;
pub use tls::TlsFailure;
