//! S3 with STS credentials behind CloudFront, composed in code, without a
//! configuration file: the three independent choices (credentials, storage,
//! CDN layer) that make Quay's `CloudFrontedS3Storage` with `sts_*` keys.
//!
//! 1. an `S3Config` from its builders (bucket, region, prefix, endpoint);
//! 2. one STS credential source (`StsCredentials`, AssumeRole with an IAM
//!    user's keys or the default chain), shared by
//! 3. an `S3Storage` (`S3Storage::with_credential_source`) and a
//!    `CloudFrontedS3Storage` over the same bucket
//!    (`CloudFrontedS3Storage::with_credential_source`).
//!
//! It writes one small object, then prints its download URLs with their
//! source (`s3_presigned` or `cdn_signed`) and, when the CloudFront layer
//! had to fall back to S3, why; then how many URLs took each route.
//!
//! Running it needs a real bucket, role and distribution (it calls STS and
//! S3; building it needs nothing). Settings come from environment variables
//! named after the Quay keys they stand for:
//!
//! ```text
//! STOWAGE_EXAMPLE_S3_BUCKET=registry-bucket \
//! STOWAGE_EXAMPLE_STS_ROLE_ARN=arn:aws:iam::123456789012:role/registry \
//! STOWAGE_EXAMPLE_CLOUDFRONT_DISTRIBUTION_DOMAIN=d111111abcdef8.cloudfront.net \
//! STOWAGE_EXAMPLE_CLOUDFRONT_KEY_ID=K2JCJMDEHXQW5F \
//! STOWAGE_EXAMPLE_CLOUDFRONT_PRIVATEKEY_FILENAME=/keys/cloudfront.pem \
//!   cargo run -p stowage --example s3_sts_cloudfront [-- <object path>]
//! ```
//!
//! Optional: `STOWAGE_EXAMPLE_S3_REGION` (default `us-east-1`),
//! `STOWAGE_EXAMPLE_STORAGE_PATH` (key prefix), `STOWAGE_EXAMPLE_ENDPOINT_URL`
//! (a non-AWS S3 server), `STOWAGE_EXAMPLE_STS_ENDPOINT_URL`,
//! `STOWAGE_EXAMPLE_STS_USER_ACCESS_KEY` with
//! `STOWAGE_EXAMPLE_STS_USER_SECRET_KEY` (else the SDK's default chain signs
//! AssumeRole), `STOWAGE_EXAMPLE_CLIENT_IP` (the puller's address the
//! CloudFront URL is signed for, default `203.0.113.9`). It exits with
//! status 2, naming what is missing, when a required variable is not set.
//! Needs the `sts` and `cloudfront` features (both default).

use std::error::Error as StdError;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use stowage::cloudfront::{CloudFrontConfig, CloudFrontedS3Storage, Route};
use stowage::config::Secret;
use stowage::s3::{CredentialSource, S3Config, S3Storage};
use stowage::sts::{StsConfig, StsCredentials, StsSource};
use stowage::{DirectUrl, DownloadUrlOptions, PutOptions, Storage, StoragePath, UrlSource};

/// The prefix of every environment variable the example reads.
const PREFIX: &str = "STOWAGE_EXAMPLE_";

/// The required variables (without the prefix) and what each gives.
const REQUIRED: &[(&str, &str)] = &[
    ("S3_BUCKET", "the bucket"),
    ("STS_ROLE_ARN", "the role to assume for S3"),
    (
        "CLOUDFRONT_DISTRIBUTION_DOMAIN",
        "the distribution's domain",
    ),
    (
        "CLOUDFRONT_KEY_ID",
        "the signing key's id (K... or APKA...)",
    ),
    (
        "CLOUDFRONT_PRIVATEKEY_FILENAME",
        "the signing key's PEM file",
    ),
];

/// The puller's address when `STOWAGE_EXAMPLE_CLIENT_IP` is not set (a
/// documentation address, outside AWS).
const DEFAULT_CLIENT_IP: &str = "203.0.113.9";

/// The example's variable `name` (without the prefix), when set and not
/// empty.
fn var(name: &str) -> Option<String> {
    std::env::var(format!("{PREFIX}{name}"))
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// The required variable `name` (checked to be set in `main`).
fn required(name: &str) -> String {
    var(name).unwrap_or_default()
}

#[tokio::main]
async fn main() -> ExitCode {
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|(name, _)| var(name).is_none())
        .map(|(name, what)| format!("  {PREFIX}{name}: {what}"))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "s3_sts_cloudfront needs a real bucket, role and CloudFront distribution; \
             set these environment variables (see the example's documentation):\n{}",
            missing.join("\n")
        );
        return ExitCode::from(2);
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("s3_sts_cloudfront: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn StdError>> {
    let object = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "stowage-example/hello.txt".into());
    let path = StoragePath::parse(object)?;
    let client_ip: IpAddr = var("CLIENT_IP")
        .unwrap_or_else(|| DEFAULT_CLIENT_IP.into())
        .parse()?;

    // 1. Where the bucket is. No credentials here: they come from STS.
    let mut s3_config = S3Config::new(required("S3_BUCKET"))
        .with_region(var("S3_REGION").unwrap_or_else(|| "us-east-1".into()));
    if let Some(root) = var("STORAGE_PATH") {
        s3_config = s3_config.with_root(&root);
    }
    if let Some(endpoint) = var("ENDPOINT_URL") {
        s3_config = s3_config.with_endpoint(endpoint);
    }

    // 2. One credential source: AssumeRole, signed with the IAM user's keys
    //    when given, else with the SDK's default chain. No STS call is made
    //    until the first request needs credentials.
    let mut sts = StsConfig::assume_role(s3_config.clone(), required("STS_ROLE_ARN"));
    if let (Some(access_key), Some(secret_key)) =
        (var("STS_USER_ACCESS_KEY"), var("STS_USER_SECRET_KEY"))
    {
        sts.source = StsSource::AssumeRole {
            user_access_key: Some(access_key),
            user_secret_key: Some(Secret::new(secret_key)),
        };
    }
    if let Some(endpoint) = var("STS_ENDPOINT_URL") {
        sts.sts_endpoint = Some(endpoint);
    }
    println!(
        "STS: {} of {}",
        sts.source.mode(),
        sts.role_arn.as_deref().unwrap_or("-")
    );
    // The configuration is checked here (every problem at once, with its
    // key): a source built in code is refused as a configuration file is.
    let source: Arc<dyn CredentialSource> = Arc::new(StsCredentials::new(sts).await?);

    // 3. The plain S3 driver and the CloudFront layer over the same bucket,
    //    both with that source: one assumed-role session for both.
    let s3 = S3Storage::with_credential_source(s3_config.clone(), Arc::clone(&source)).await?;
    let cloudfront_config = CloudFrontConfig::new(
        s3_config,
        &required("CLOUDFRONT_DISTRIBUTION_DOMAIN"),
        required("CLOUDFRONT_KEY_ID"),
        required("CLOUDFRONT_PRIVATEKEY_FILENAME"),
    );
    let cloudfront =
        CloudFrontedS3Storage::with_credential_source(cloudfront_config, source).await?;
    // A key that cannot be used does not stop the driver: its URLs fall
    // back to S3 presigned ones, saying why.
    if let Err(e) = cloudfront.signer() {
        println!("CloudFront signing unavailable: {e}");
    }

    // The object the URLs point at (the first STS call happens here).
    s3.put(
        &path,
        "hello through CloudFront\n".into(),
        PutOptions::default().with_content_type("text/plain"),
    )
    .await?;
    println!("wrote s3://{}/{}", s3.bucket(), s3.object_key(&path));

    let options = DownloadUrlOptions::default().with_expires_in(Duration::from_secs(600));
    show("S3 driver", s3.download_url(&path, &options).await?);
    show(
        "CloudFront, no client address",
        cloudfront.download_url(&path, &options).await?,
    );
    show(
        &format!("CloudFront, client {client_ip}"),
        cloudfront
            .download_url(&path, &options.clone().with_client_ip(client_ip))
            .await?,
    );

    println!("\nCloudFront routes taken:");
    for route in [
        Route::Signed,
        Route::Cached,
        Route::NoClientIp,
        Route::ClientInAws,
        Route::KeyUnavailable,
        Route::SigningFailed,
    ] {
        println!("  {:<16} {}", route.as_str(), cloudfront.route_count(route));
    }
    Ok(())
}

/// Prints a download URL: what made it, until when, and why it is not the
/// preferred kind when it is a fallback.
fn show(what: &str, url: Option<DirectUrl>) {
    println!();
    let Some(url) = url else {
        println!("{what}: no URL (the driver has no direct URLs)");
        return;
    };
    println!(
        "{what}: {} URL, valid until {}",
        url.source.as_str(),
        url.expires_at
    );
    if let Some(fallback) = &url.fallback {
        println!("  fallback ({}): {}", fallback.cause, fallback.detail);
    } else if url.source == UrlSource::S3Presigned {
        println!("  (an S3 URL by choice: the driver's own, or a CloudFront bypass)");
    }
    println!("  {}", url.url);
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
