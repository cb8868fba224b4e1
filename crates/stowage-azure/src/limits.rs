//! Azure's block blob limits (API version 2019-12-12 and later): the
//! writer of core takes them from here.

use stowage_core::multipart::PartLimits;

/// The most committed blocks of one blob.
pub const MAX_BLOCKS: u32 = 50_000;
/// The smallest block stowage stages (Azure has no minimum; smaller blocks
/// only cost requests).
pub const MIN_BLOCK_SIZE: u64 = 1024 * 1024;
/// Azure's largest block (Put Block, Put Block From URL): 4000 MiB.
pub const MAX_BLOCK_SIZE: u64 = 4000 * 1024 * 1024;
/// The largest range one Put Block From URL copies here: larger chunks are
/// copied in several blocks, so that no single server-side copy runs long
/// enough to time out.
pub const MAX_COPY_BLOCK_SIZE: u64 = 256 * 1024 * 1024;

/// The three limits together, for core's multipart writer.
pub const AZURE_BLOCK_LIMITS: PartLimits =
    PartLimits::new(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, MAX_BLOCKS);
