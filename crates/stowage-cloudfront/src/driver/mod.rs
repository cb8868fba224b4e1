//! `CloudFrontedS3Storage` and what it needs: the AWS address ranges that
//! bypass CloudFront, the signed-URL cache, the route counters, the keys
//! that follow their files, and what `validate` checks.

mod aws_ranges;
mod cache;
mod counters;
mod rotation;
mod storage;
mod validation;

pub use aws_ranges::AwsIpRanges;
pub use counters::Route;
pub use rotation::{reload_signing_keys, KeyReload};
pub use storage::{CloudFrontedS3Storage, DRIVER};
