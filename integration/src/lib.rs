//! Helpers of the end-to-end tests: the servers' coordinates come from the
//! environment (`integration/servers/*-up.sh` write them; point them at
//! MinIO or AWS to run the same tests there, see integration/README.md).

use std::sync::Arc;

pub mod azure;
pub mod bench;
pub mod cloudfront;
pub mod faults;
pub mod registry;
pub mod sim;
pub mod sts;

use stowage_core::config::Secret;
use stowage_core::Storage;
use stowage_s3::{S3Config, S3Storage};

/// An S3 endpoint to test against, from `STOWAGE_S3_TEST_*`.
#[derive(Debug, Clone)]
pub struct S3Env {
    /// `STOWAGE_S3_TEST_ENDPOINT` (empty for AWS itself).
    pub endpoint: Option<String>,
    /// `STOWAGE_S3_TEST_ACCESS_KEY`.
    pub access_key: String,
    /// `STOWAGE_S3_TEST_SECRET_KEY`.
    pub secret_key: String,
    /// `STOWAGE_S3_TEST_BUCKET`.
    pub bucket: String,
    /// `STOWAGE_S3_TEST_REGION` (default `us-east-1`).
    pub region: String,
    /// `STOWAGE_S3_TEST_SERVER`: `rgw`, `garage`, `minio`, `aws`, ...
    pub server: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3Env {
    /// Reads the environment; panics with what is missing, so a test run
    /// without a server fails loudly instead of passing silently.
    pub fn get() -> Self {
        let need = |name: &str| {
            var(name).unwrap_or_else(|| {
                panic!("{name} is not set: run integration/test-all.sh, or see integration/README.md to point the tests at a server")
            })
        };
        Self {
            endpoint: var("STOWAGE_S3_TEST_ENDPOINT"),
            access_key: need("STOWAGE_S3_TEST_ACCESS_KEY"),
            secret_key: need("STOWAGE_S3_TEST_SECRET_KEY"),
            bucket: need("STOWAGE_S3_TEST_BUCKET"),
            region: var("STOWAGE_S3_TEST_REGION").unwrap_or_else(|| "us-east-1".into()),
            server: var("STOWAGE_S3_TEST_SERVER").unwrap_or_else(|| "unknown".into()),
        }
    }

    /// A configuration under a fresh random root, with small parts and a
    /// low multipart-copy threshold so tests cross every size limit with
    /// small objects.
    pub fn config(&self, label: &str) -> S3Config {
        let root = format!("stowage-it/{label}-{}", uuid::Uuid::new_v4().simple());
        let mut c = S3Config::new(&self.bucket)
            .with_root(&root)
            .with_region(&self.region)
            .with_static_keys(&self.access_key, Secret::new(&self.secret_key));
        if let Some(e) = &self.endpoint {
            c = c.with_endpoint(e);
        }
        c.part_size = 5 * 1024 * 1024;
        c.multipart_copy_threshold = 6 * 1024 * 1024;
        c.multipart_copy_part_size = 5 * 1024 * 1024;
        // Reads of 2 MiB and more fetch two 1 MiB ranges ahead (off by
        // default), so that the tests' reads go through the read-ahead.
        c.read_ahead_ranges = 2;
        c.read_ahead_range_size = 1024 * 1024;
        c
    }

    /// A driver under a fresh random root.
    pub async fn storage(&self, label: &str) -> S3Storage {
        S3Storage::new(self.config(label)).await.expect("driver")
    }

    /// The same, as a trait object.
    pub async fn shared(&self, label: &str) -> Arc<dyn Storage> {
        Arc::new(self.storage(label).await)
    }

    /// A raw SDK client with the same credentials, to look behind the
    /// driver's back (orphaned multipart uploads, raw keys).
    pub async fn sdk(&self) -> aws_sdk_s3::Client {
        self.sdk_with(&self.access_key, &self.secret_key)
    }

    /// A raw SDK client signing with other keys.
    pub fn sdk_with(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        let creds =
            aws_sdk_s3::config::Credentials::new(access_key, secret_key, None, None, "test");
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(self.region.clone()))
            .credentials_provider(creds)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        if let Some(e) = &self.endpoint {
            b = b.endpoint_url(e).force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(b.build())
    }
}

/// Multipart uploads in progress under `prefix` (key, upload id).
pub async fn multipart_uploads(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Vec<(String, String)> {
    let out = client
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("ListMultipartUploads");
    out.uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or("").to_string(),
                u.upload_id().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The `stowage` binary next to the test executables (`cargo build -p
/// stowage-cli` puts it there; integration/test-all.sh does so).
pub fn stowage_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("stowage");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p stowage-cli` first",
        bin.display()
    );
    bin
}
