//! Quay's `GoogleCloudStorage` driver: Google Cloud Storage through its
//! S3-compatible XML API (`https://storage.googleapis.com`) with HMAC keys.
//!
//! Quay builds it on boto3 with that endpoint, the HMAC key's access id and
//! secret (`access_key`, `secret_key`), `bucket_name` and `storage_path`,
//! and lists with ListObjects version 1. Stowage reads the same keys into
//! an [`S3Config`] with the S3 driver's GCS profile
//! ([`ServerProfile::Gcs`]), which avoids what GCS lacks: ListObjectsV2
//! (as Quay), DeleteObjects, UploadPartCopy and the SDK's `x-id` query
//! parameter (`docs/gcs.md` lists each with its source).

use stowage_core::config::{ConfigErrors, Params};
use stowage_s3::{PartChecksum, S3Config, ServerProfile};

/// GCS's XML API endpoint, the one Quay uses.
const GCS_ENDPOINT: &str = "https://storage.googleapis.com";

/// The longest bucket name GCS accepts (names with dots; 63 without).
const MAX_BUCKET_NAME: usize = 222;

/// Reads the parameters of a `GoogleCloudStorage` location (Quay's keys,
/// plus stowage's `endpoint_url`, `s3_region`, the `secret_key_file` /
/// `secret_key_env` forms of the secret and the `s3_*` transfer keys) into
/// the S3 configuration it runs on: GCS's endpoint, path-style addressing,
/// no server-side encryption header, the GCS profile, and a Content-MD5 on
/// every body (GCS checks it on PUTs and parts). Unknown keys are
/// reported.
///
/// | key | default |
/// |---|---|
/// | `access_key`, `secret_key` | required: the HMAC key's access id and secret |
/// | `bucket_name` | required |
/// | `storage_path` | bucket root |
/// | `endpoint_url` | `https://storage.googleapis.com` (not Quay's: for tests and emulators) |
/// | `s3_region` | `us-east-1` (what Quay's boto3 signs with; GCS accepts any) |
///
/// # Errors
/// Every problem found, each with its key path and Quay's key name.
pub fn read_gcs(mut params: Params<'_>) -> Result<S3Config, ConfigErrors> {
    let parsed = read(&mut params);
    params.finish_with(parsed)
}

fn read(params: &mut Params<'_>) -> Option<S3Config> {
    let before = params.problem_count();
    let access_key = params.required_string("access_key");
    let secret_given =
        params.has("secret_key") || params.has("secret_key_file") || params.has("secret_key_env");
    let secret_key = params.secret("secret_key");
    let bucket = params.required_string("bucket_name");
    let storage_path = params.string("storage_path");
    let endpoint = params.http_url("endpoint_url");
    let region = params.string("s3_region");

    if !secret_given {
        params.problem("secret_key", "required key is missing");
    }
    if let Some(s) = &secret_key {
        if s.expose().is_empty() {
            params.problem("secret_key", "required key has no value");
        }
    }
    if let Some(b) = &bucket {
        if let Some(why) = bucket_problem(b) {
            params.problem("bucket_name", format!("{b:?}: {why}"));
        }
    }
    let root = storage_path
        .as_deref()
        .map(|p| p.trim_matches('/').to_string())
        .unwrap_or_default();
    if root.split('/').any(|s| s == "." || s == "..") || root.contains("//") {
        params.problem(
            "storage_path",
            format!(
                "{:?} has an empty, '.' or '..' segment",
                storage_path.as_deref().unwrap_or("")
            ),
        );
    }
    if let Some(r) = &region {
        if r.is_empty() || r.contains(char::is_whitespace) {
            params.problem("s3_region", format!("{r:?} is not a region name"));
        }
    }

    let mut config = S3Config::new(bucket.clone().unwrap_or_default());
    // GCS checks a Content-MD5 on single PUTs and on parts; `auto` would
    // compare part MD5s with ETags and send CRC32C headers GCS has no use
    // for. `s3_part_checksum` (a transfer key) may still change it.
    config.part_checksum = PartChecksum::Md5;
    config.read_transfer_keys(params);
    if params.problem_count() != before {
        return None;
    }
    let (bucket, access_key, secret_key) = (bucket?, access_key?, secret_key?);
    let endpoint = endpoint.map_or_else(
        || GCS_ENDPOINT.to_string(),
        |url| url.as_str().trim_end_matches('/').to_string(),
    );
    config.bucket = bucket;
    let mut config = config
        .with_endpoint(endpoint)
        .with_static_keys(access_key, secret_key)
        .with_root(&root)
        .with_profile(ServerProfile::Gcs);
    if let Some(r) = region {
        config = config.with_region(r);
    }
    // Assembly streams whatever this says (no UploadPartCopy on GCS);
    // the capability says so too.
    config.server_side_assembly = false;
    Some(config)
}

/// Why `name` is not a GCS bucket name, if it is not: 3 to 63 lowercase
/// letters, digits, `-`, `_` and `.` (up to 222 with dots, each
/// dot-separated part at most 63), starting and ending with a letter or
/// digit.
fn bucket_problem(name: &str) -> Option<&'static str> {
    let max = if name.contains('.') {
        MAX_BUCKET_NAME
    } else {
        63
    };
    if name.len() < 3 || name.len() > max {
        return Some("bucket names have 3 to 63 characters (222 with dots)");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.'))
    {
        return Some("bucket names use lowercase letters, digits, '-', '_' and '.'");
    }
    let edge = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge(name.bytes().next()) || !edge(name.bytes().last()) {
        return Some("bucket names start and end with a letter or a digit");
    }
    if name
        .split('.')
        .any(|part| part.is_empty() || part.len() > 63)
    {
        return Some("each dot-separated part of a bucket name has 1 to 63 characters");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};
    use stowage_s3::ServerSideEncryption;

    fn parse(v: Value) -> Result<S3Config, ConfigErrors> {
        let map: Map<String, Value> = serde_json::from_value(v).unwrap();
        read_gcs(Params::new("loc[1]", &map))
    }

    #[test]
    fn quays_keys_make_a_gcs_profile_config() {
        let c = parse(json!({
            "access_key": "GOOG1EXAMPLEACCESSID", "secret_key": "very-secret-hmac",
            "bucket_name": "quay-gcs", "storage_path": "/datastorage/registry"
        }))
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some(GCS_ENDPOINT));
        assert_eq!(c.profile, ServerProfile::Gcs);
        assert!(c.path_style);
        assert_eq!(c.sse, ServerSideEncryption::None);
        assert_eq!(c.bucket, "quay-gcs");
        assert_eq!(c.root, "datastorage/registry");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.access_key.as_deref(), Some("GOOG1EXAMPLEACCESSID"));
        assert_eq!(c.part_checksum, PartChecksum::Md5);
        assert!(!c.server_side_assembly);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("very-secret-hmac"), "{dbg}");
        assert!(dbg.contains("Gcs"), "{dbg}");
    }

    #[test]
    fn endpoint_region_and_transfer_keys_are_stowages() {
        let c = parse(json!({
            "access_key": "A", "secret_key": "S", "bucket_name": "b_1.example",
            "endpoint_url": "http://127.0.0.1:9000/", "s3_region": "auto",
            "s3_part_size_mb": 8, "s3_part_checksum": "sha256"
        }))
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.region, "auto");
        assert_eq!(c.part_size, 8 * 1024 * 1024);
        assert_eq!(c.part_checksum, PartChecksum::Sha256);
        assert_eq!(c.root, "");
    }

    #[test]
    fn every_problem_is_named_with_quays_keys() {
        let errs = parse(json!({
            "bucket_name": "Bad/Bucket", "storage_path": "/a/../b", "endpoint_url": "ftp://x",
            "s3_part_size_mb": 1, "hostname": "storage.googleapis.com", "s3_bucket": "typo"
        }))
        .unwrap_err();
        let text = errs.to_string();
        for needle in [
            "loc[1].access_key: required key is missing",
            "loc[1].secret_key: required key is missing",
            "loc[1].bucket_name: \"Bad/Bucket\"",
            "loc[1].storage_path:",
            "loc[1].endpoint_url:",
            "loc[1].s3_part_size_mb:",
            "loc[1].hostname: unknown key",
            "loc[1].s3_bucket: unknown key",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        let errs = parse(json!({"access_key": "A", "secret_key": "", "bucket_name": "b-1"}))
            .unwrap_err()
            .to_string();
        assert!(
            errs.contains("loc[1].secret_key: required key has no value"),
            "{errs}"
        );
        let errs = parse(json!({"access_key": "A", "secret_key": "gcs-secret-value",
                                "secret_key_env": "X", "bucket_name": "b-1"}))
        .unwrap_err()
        .to_string();
        assert!(
            errs.contains("loc[1].secret_key: give the secret only one way"),
            "{errs}"
        );
        assert!(!errs.contains("gcs-secret-value"), "{errs}");
    }

    #[test]
    fn bucket_names_follow_gcs_rules() {
        for good in ["abc", "quay-gcs", "my_bucket", "a.b.c", "0bucket9"] {
            assert_eq!(bucket_problem(good), None, "{good}");
        }
        let long_dotted = format!("{}.{}", "a".repeat(63), "b".repeat(63));
        assert_eq!(bucket_problem(&long_dotted), None);
        let too_long = "a".repeat(64);
        let long_part = format!("{too_long}.b");
        for bad in [
            "ab",
            "Upper",
            "-dash",
            "dash-",
            "has space",
            "a..b",
            too_long.as_str(),
            long_part.as_str(),
        ] {
            assert!(bucket_problem(bad).is_some(), "{bad}");
        }
    }
}
