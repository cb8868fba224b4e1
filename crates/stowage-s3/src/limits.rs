//! S3's multipart limits (AWS's, which RGW, Garage and MinIO share): the
//! writer of core takes them from here.

use stowage_core::multipart::PartLimits;

/// The most parts of one S3 multipart upload.
pub const MAX_PARTS: u32 = 10_000;
/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// The three limits together, for core's multipart writer.
pub const S3_PART_LIMITS: PartLimits = PartLimits::new(MIN_PART_SIZE, MAX_PART_SIZE, MAX_PARTS);
