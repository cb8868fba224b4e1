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
            stowage::s3::iam::permission_policy(&c.cloudfront.s3, with_setup),
            c.sts.as_ref().map(stowage::sts::trust_policy),
        ),
        DriverConfig::Sts(c) => (
            stowage::s3::iam::permission_policy(&c.s3, with_setup),
            Some(stowage::sts::trust_policy(c)),
        ),
        DriverConfig::S3Compatible { config, .. } => {
            (stowage::s3::iam::permission_policy(config, with_setup), None)
        }
        other => {
            return Err(Failure::usage(format!(
            "location {} uses {}, which needs no IAM policy (only S3 locations do: S3Storage, STSS3Storage, CloudFrontedS3Storage, RadosGWStorage, RHOCSStorage, IBMCloudStorage)",
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
                "location {} ({}) assumes no role, so there is no trust policy",
                location.name,
                location.driver.driver_name()
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
            if let DriverConfig::S3Compatible { driver, .. } = &location.driver {
                doc["note"] = json!(format!(
                    "{driver} is not AWS: apply these statements as the bucket policy where \
                     the server supports one (Ceph RGW, OpenShift Data Foundation); IBM Cloud \
                     Object Storage grants access with IBM Cloud IAM roles instead"
                ));
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
