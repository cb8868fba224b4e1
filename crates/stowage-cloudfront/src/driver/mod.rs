//! `CloudFrontedS3Storage` and what it needs: the AWS address ranges that
//! bypass CloudFront, the signed-URL cache, the route counters, and what
//! `validate` checks.

mod aws_ranges;
mod cache;
mod counters;
mod storage;
mod validation;

pub use aws_ranges::AwsIpRanges;
pub use counters::Route;
pub use storage::{CloudFrontedS3Storage, DRIVER};
