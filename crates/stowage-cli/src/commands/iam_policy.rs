//! `stowage iam-policy`: the IAM documents an S3 or STS location needs.

use serde_json::{json, Value};
use stowage::DriverConfig;

use crate::cli::PolicyKind;
use crate::context::Context;
use crate::failure::Failure;

/// Prints the permission policy (and trust policy) of the selected location.
pub(crate) fn run(
    ctx: &Context,
    with_setup: bool,
    only: Option<PolicyKind>,
) -> Result<(), Failure> {
    let location = ctx.selected()?;
    let (permission, trust): (Value, Option<Value>) = match &location.driver {
        DriverConfig::S3(c) => (stowage::s3::iam::permission_policy(c, with_setup), None),
        DriverConfig::CloudFront(c) => (
            stowage::s3::iam::permission_policy(&c.s3, with_setup),
            None,
        ),
        DriverConfig::Sts(c) => (
            stowage::s3::iam::permission_policy(&c.s3, with_setup),
            Some(stowage::sts::trust_policy(c)),
        ),
        other => {
            return Err(Failure::usage(format!(
            "location {} uses {}, which needs no IAM policy (only S3Storage, STSS3Storage and CloudFrontedS3Storage do)",
            location.name,
            other.driver_name()
        )))
        }
    };
    let out = match (only, trust) {
        (Some(PolicyKind::Permission), _) => permission,
        (Some(PolicyKind::Trust), Some(trust)) => trust,
        (Some(PolicyKind::Trust), None) => {
            return Err(Failure::usage(format!(
                "location {} is S3Storage: it assumes no role, so there is no trust policy",
                location.name
            )))
        }
        (None, trust) => {
            let mut doc = json!({
                "location": location.name,
                "driver": location.driver.driver_name(),
                "permission_policy": permission,
            });
            if let Some(t) = trust {
                doc["trust_policy"] = t;
            }
            doc
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("JSON values serialize")
    );
    Ok(())
}
