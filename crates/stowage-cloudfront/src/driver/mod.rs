//! `CloudFrontedS3Storage` and what it needs: the AWS address ranges that
//! bypass CloudFront, the signed-URL cache, and the route counters.

mod aws_ranges;
mod cache;
mod counters;
mod storage;

pub use aws_ranges::AwsIpRanges;
pub use counters::Route;
pub use storage::{CloudFrontedS3Storage, DRIVER};
