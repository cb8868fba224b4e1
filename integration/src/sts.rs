//! Coordinates of a real STS (Ceph RGW's), from `STOWAGE_STS_TEST_*` and
//! `STOWAGE_OIDC_*` (integration/servers/rgw-up.sh writes them).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use std::ops::Deref;
use std::sync::Arc;

use stowage_core::config::Secret;
use stowage_s3::S3Storage;
use stowage_sts::{CredentialStats, StsConfig, StsCredentials, StsSource};

use crate::S3Env;

/// An STS endpoint with a role the S3 test user may assume, and a role
/// trusting the test OIDC provider.
#[derive(Debug, Clone)]
pub struct StsEnv {
    /// The S3 side (bucket, endpoint; its keys are the IAM user's keys).
    pub s3: S3Env,
    /// `STOWAGE_STS_TEST_ENDPOINT`.
    pub endpoint: String,
    /// `STOWAGE_STS_TEST_ROLE_ARN`: the role the user may assume.
    pub role_arn: String,
    /// `STOWAGE_STS_TEST_WEB_ROLE_ARN`: the role trusting the OIDC provider.
    pub web_role_arn: String,
    /// `STOWAGE_RGW_ADMIN_ACCESS_KEY` (a second user, owner of buckets the
    /// test user cannot reach).
    pub admin_access_key: String,
    /// `STOWAGE_RGW_ADMIN_SECRET_KEY`.
    pub admin_secret_key: String,
    oidc_script: String,
    oidc_state: String,
    oidc_port: String,
}

fn need(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!("{name} is not set: run integration/test-all.sh (the STS tests need Ceph RGW started by integration/servers/rgw-up.sh)")
        })
}

impl StsEnv {
    /// Reads the environment; panics with what is missing.
    pub fn get() -> Self {
        Self {
            s3: S3Env::get(),
            endpoint: need("STOWAGE_STS_TEST_ENDPOINT"),
            role_arn: need("STOWAGE_STS_TEST_ROLE_ARN"),
            web_role_arn: need("STOWAGE_STS_TEST_WEB_ROLE_ARN"),
            admin_access_key: need("STOWAGE_RGW_ADMIN_ACCESS_KEY"),
            admin_secret_key: need("STOWAGE_RGW_ADMIN_SECRET_KEY"),
            oidc_script: need("STOWAGE_OIDC_SCRIPT"),
            oidc_state: need("STOWAGE_OIDC_STATE"),
            oidc_port: need("STOWAGE_OIDC_PORT"),
        }
    }

    fn base(&self, label: &str) -> StsConfig {
        let mut s3 = self.s3.config(label);
        s3.access_key = None;
        s3.secret_key = None;
        let mut c = StsConfig::assume_role(s3, &self.role_arn);
        c.sts_endpoint = Some(self.endpoint.clone());
        c.session_name = "stowage-it".into();
        c
    }

    /// AssumeRole of the test role, signed with the S3 test user's keys.
    pub fn assume_role_config(&self, label: &str) -> StsConfig {
        let mut c = self.base(label);
        c.source = StsSource::AssumeRole {
            user_access_key: Some(self.s3.access_key.clone()),
            user_secret_key: Some(Secret::new(&self.s3.secret_key)),
        };
        c
    }

    /// Web identity with the token in `token_file`.
    pub fn web_identity_config(&self, label: &str, token_file: &Path) -> StsConfig {
        let mut c = self.base(label);
        c.role_arn = Some(self.web_role_arn.clone());
        c.source = StsSource::WebIdentity {
            token_file: token_file.to_path_buf(),
        };
        c
    }

    /// A token from the test OIDC provider, valid for `ttl_seconds`
    /// (negative: already expired).
    pub fn mint_token(&self, subject: &str, ttl_seconds: i64) -> String {
        let out = std::process::Command::new("python3")
            .arg(&self.oidc_script)
            .args([
                "mint",
                "--state",
                &self.oidc_state,
                "--port",
                &self.oidc_port,
            ])
            .args(["--sub", subject, "--ttl", &ttl_seconds.to_string()])
            .output()
            .expect("run oidc_idp.py mint");
        assert!(
            out.status.success(),
            "oidc_idp.py mint failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A token file valid for an hour, shared by the tests of one process.
    pub fn shared_token_file(&self) -> PathBuf {
        static FILE: OnceLock<PathBuf> = OnceLock::new();
        FILE.get_or_init(|| {
            let path = std::env::temp_dir().join(format!(
                "stowage-it-web-identity-{}.jwt",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::write(&path, self.mint_token("conformance", 3600)).unwrap();
            path
        })
        .clone()
    }

    /// A raw S3 client signing with the admin user's keys.
    pub fn admin_s3(&self) -> aws_sdk_s3::Client {
        self.s3
            .sdk_with(&self.admin_access_key, &self.admin_secret_key)
    }
}

/// The shortest session the server grants (Ceph RGW's `rgw sts min
/// session duration`, 60 s in rgw-up.sh; AWS: 900 s).
pub fn shortest_session() -> Duration {
    Duration::from_secs(
        std::env::var("STOWAGE_STS_TEST_MIN_SESSION_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    )
}

/// The S3 driver with STS credentials (what the factory builds for
/// `STSS3Storage`), with the source kept for its counters.
#[derive(Debug, Clone)]
pub struct StsS3 {
    /// The driver.
    pub storage: S3Storage,
    /// Its credential source.
    pub credentials: Arc<StsCredentials>,
}

impl StsS3 {
    /// Opens the driver of `config`.
    pub async fn open(config: StsConfig) -> Self {
        let (storage, credentials) = stowage_sts::open_s3(config).await.expect("driver");
        Self {
            storage,
            credentials,
        }
    }

    /// What the credential source has done.
    pub fn credential_stats(&self) -> &CredentialStats {
        self.credentials.stats()
    }
}

impl Deref for StsS3 {
    type Target = S3Storage;
    fn deref(&self) -> &S3Storage {
        &self.storage
    }
}
