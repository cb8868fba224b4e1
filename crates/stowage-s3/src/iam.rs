//! The least-privilege IAM policy of the S3 driver: exactly the S3 actions
//! its code calls. A test reads this crate's sources and fails when an SDK
//! operation is called that [`SDK_OPERATIONS`] does not list, so the policy
//! cannot fall behind the code.

use serde_json::{json, Value};

use crate::{S3Config, ServerSideEncryption};

/// Where an action applies: objects under the root, or the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// `arn:aws:s3:::BUCKET/ROOT/*`
    Objects,
    /// `arn:aws:s3:::BUCKET` (limited to the root prefix where S3 allows).
    Bucket,
    /// `arn:aws:s3:::BUCKET`, only for `stowage` set-up (bucket CORS).
    Setup,
}

/// Every SDK operation the driver calls, with the IAM actions it needs.
pub const SDK_OPERATIONS: &[(&str, &[&str], Scope)] = &[
    ("get_object", &["s3:GetObject"], Scope::Objects),
    ("head_object", &["s3:GetObject"], Scope::Objects),
    ("put_object", &["s3:PutObject"], Scope::Objects),
    (
        "copy_object",
        &["s3:GetObject", "s3:PutObject"],
        Scope::Objects,
    ),
    ("delete_object", &["s3:DeleteObject"], Scope::Objects),
    ("delete_objects", &["s3:DeleteObject"], Scope::Objects),
    ("create_multipart_upload", &["s3:PutObject"], Scope::Objects),
    ("upload_part", &["s3:PutObject"], Scope::Objects),
    (
        "upload_part_copy",
        &["s3:GetObject", "s3:PutObject"],
        Scope::Objects,
    ),
    (
        "complete_multipart_upload",
        &["s3:PutObject"],
        Scope::Objects,
    ),
    (
        "abort_multipart_upload",
        &["s3:AbortMultipartUpload"],
        Scope::Objects,
    ),
    (
        "list_parts",
        &["s3:ListMultipartUploadParts"],
        Scope::Objects,
    ),
    ("list_objects_v2", &["s3:ListBucket"], Scope::Bucket),
    // ListObjects (v1), for servers without V2 (the GCS profile).
    ("list_objects", &["s3:ListBucket"], Scope::Bucket),
    ("head_bucket", &["s3:ListBucket"], Scope::Bucket),
    (
        "list_multipart_uploads",
        &["s3:ListBucketMultipartUploads"],
        Scope::Bucket,
    ),
    ("put_bucket_cors", &["s3:PutBucketCORS"], Scope::Setup),
];

/// The IAM actions of `scope`, sorted and without duplicates.
pub fn actions(scope: Scope) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = SDK_OPERATIONS
        .iter()
        .filter(|(_, _, s)| *s == scope)
        .flat_map(|(_, actions, _)| actions.iter().copied())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The permission policy for `config`'s bucket and root prefix. With
/// `include_setup`, a statement allowing the bucket CORS set-up as well.
pub fn permission_policy(config: &S3Config, include_setup: bool) -> Value {
    let bucket = &config.bucket;
    let (objects, prefix_condition) = if config.root.is_empty() {
        (format!("arn:aws:s3:::{bucket}/*"), None)
    } else {
        let root = &config.root;
        (
            format!("arn:aws:s3:::{bucket}/{root}/*"),
            Some(json!({"StringLike": {"s3:prefix": [format!("{root}/*")]}})),
        )
    };
    let mut statements = vec![json!({
        "Sid": "StowageObjects",
        "Effect": "Allow",
        "Action": actions(Scope::Objects),
        "Resource": objects,
    })];
    // ListBucket can be limited to the root prefix. HeadBucket needs
    // ListBucket too but sends no prefix, hence the `Null` condition (which
    // also lets a listing without prefix through: keys only, no data).
    // ListBucketMultipartUploads has no prefix condition key.
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    match prefix_condition {
        Some(condition) => {
            statements.push(json!({
                "Sid": "StowageListRoot",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": bucket_arn,
                "Condition": condition,
            }));
            statements.push(json!({
                "Sid": "StowageHeadBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": bucket_arn,
                "Condition": {"Null": {"s3:prefix": "true"}},
            }));
            statements.push(json!({
                "Sid": "StowageMultipartUploads",
                "Effect": "Allow",
                "Action": ["s3:ListBucketMultipartUploads"],
                "Resource": bucket_arn,
            }));
        }
        None => statements.push(json!({
            "Sid": "StowageBucket",
            "Effect": "Allow",
            "Action": actions(Scope::Bucket),
            "Resource": bucket_arn,
        })),
    }
    if include_setup {
        statements.push(json!({
            "Sid": "StowageSetup",
            "Effect": "Allow",
            "Action": actions(Scope::Setup),
            "Resource": format!("arn:aws:s3:::{bucket}"),
        }));
    }
    if let ServerSideEncryption::Kms { key_id } = &config.sse {
        statements.push(json!({
            "Sid": "StowageKms",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": key_id.clone().unwrap_or_else(|| "*".into()),
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `client.OPERATION(` in this crate's sources, whitespace removed
    /// first so calls split over lines are found too.
    fn called_operations() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            for (i, _) in text.match_indices("client.") {
                let rest = &text[i + "client.".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                // `client.config()` reads the client's settings: no request.
                if !name.is_empty() && name != "config" && rest[name.len()..].starts_with("()") {
                    found.push(name);
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    #[test]
    fn every_called_operation_is_in_the_policy() {
        let called = called_operations();
        assert!(
            called.len() >= 10,
            "the scan found too few calls: {called:?}"
        );
        let listed: Vec<&str> = SDK_OPERATIONS.iter().map(|(op, _, _)| *op).collect();
        let missing: Vec<&String> = called
            .iter()
            .filter(|op| !listed.contains(&op.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "S3 operations called but missing from iam::SDK_OPERATIONS (add them with their IAM actions): {missing:?}"
        );
        let unused: Vec<&&str> = listed
            .iter()
            .filter(|op| !called.iter().any(|c| c == *op))
            .collect();
        assert!(
            unused.is_empty(),
            "iam::SDK_OPERATIONS lists operations the code no longer calls: {unused:?}"
        );
    }

    #[test]
    fn policy_is_scoped_to_bucket_and_root() {
        let config = S3Config::new("registry-bucket").with_root("/quay/storage/");
        let policy = permission_policy(&config, false);
        let text = policy.to_string();
        assert!(
            text.contains("arn:aws:s3:::registry-bucket/quay/storage/*"),
            "{text}"
        );
        assert!(text.contains("\"quay/storage/*\""), "{text}");
        assert!(!text.contains("PutBucketCORS"), "{text}");
        assert!(!text.contains("\"s3:*\""));
        let with_setup = permission_policy(&config, true).to_string();
        assert!(with_setup.contains("s3:PutBucketCORS"));
        assert_eq!(
            actions(Scope::Objects),
            [
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:ListMultipartUploadParts",
                "s3:PutObject"
            ]
        );
    }
}
