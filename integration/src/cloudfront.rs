//! The CloudFront stand-in of the end-to-end tests: `integration/cloudfront/
//! edge_verifier.py`, an HTTP proxy that checks signed URLs and cookies the
//! way CloudFront does and forwards valid requests to the S3 server.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use stowage_cloudfront::{CloudFrontConfig, CloudFrontedS3Storage};
use stowage_core::Storage;

use crate::S3Env;

/// The throwaway test keys of the CloudFront crate.
pub fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/stowage-cloudfront/testdata")
        .join(name)
}

/// The scripts under `integration/cloudfront/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("cloudfront")
        .join(name)
}

/// How a distribution trusts signers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Trusted key groups (`K…` public key ids).
    KeyGroups,
    /// Legacy trusted signers (`APKA…` key pair ids).
    Signers,
}

/// A running edge; killed when dropped.
#[derive(Debug)]
pub struct Edge {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Edge {
    /// Starts an edge in front of the S3 server of `env`, trusting
    /// `keys` (id, public key file) the way `trust` says. Client addresses
    /// come from `X-Forwarded-For`, so tests can act as other clients.
    pub fn start(env: &S3Env, trust: Trust, keys: &[(&str, &str)]) -> Self {
        let flag = match trust {
            Trust::KeyGroups => "--trusted-key-group",
            Trust::Signers => "--trusted-signer",
        };
        let mut cmd = Command::new("python3");
        cmd.arg(script("edge_verifier.py"))
            .args(["--listen", "127.0.0.1:0", "--trust-forwarded-for"])
            .args(["--origin", env.endpoint.as_deref().expect("an S3 endpoint")])
            .args(["--bucket", &env.bucket, "--region", &env.region])
            .env("ORIGIN_ACCESS_KEY", &env.access_key)
            .env("ORIGIN_SECRET_KEY", &env.secret_key)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (id, public) in keys {
            cmd.arg(flag)
                .arg(format!("{id}={}", key_file(public).display()));
        }
        let mut child = cmd.spawn().expect("python3 runs the edge verifier");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("edge verifier output");
        let port = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("edge verifier did not start: {line:?}"))
            .to_string();
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CloudFront configuration under a fresh root of the S3 server, for the
/// distribution at `distribution`, signing with `key_id` and `private_key`
/// (a file in the test keys).
pub fn config(
    env: &S3Env,
    label: &str,
    distribution: &str,
    key_id: &str,
    private_key: &str,
) -> CloudFrontConfig {
    let mut c = CloudFrontConfig::new(
        env.config(label),
        distribution,
        key_id,
        key_file(private_key),
    );
    c.validate_fetch = false;
    c
}

/// A driver for the conformance suite (CloudFront at an unused address:
/// the suite does not fetch download URLs).
pub async fn shared(env: &S3Env, label: &str) -> Arc<dyn Storage> {
    let c = config(
        env,
        label,
        "http://127.0.0.1:9",
        "K2JCJMDEHXQW5F",
        "rsa2048-pkcs8.pem",
    );
    Arc::new(CloudFrontedS3Storage::new(c).await.expect("driver"))
}
