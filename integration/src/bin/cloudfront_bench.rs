//! CloudFront signing benchmark (docs/benchmarks.md): signed URLs per second
//! through stowage (RSA and ECDSA uncached over SHA-1 and SHA-256, through
//! the driver with and without its cache) and through botocore's
//! `CloudFrontSigner`, interleaved over several rounds in one run, plus
//! `openssl speed rsa2048` as the reference for raw RSA-2048 signing. One
//! core each; medians of per-round ratios. The report names the signing
//! backend (aws-lc, or pure-rust with `--features
//! stowage-cloudfront/pure-rust`).
//!
//! `cargo run --release -p stowage-integration --bin cloudfront_bench --
//! [--rounds 5] [--count 2000]` (needs python3 with botocore, and openssl;
//! no S3 server: signing never calls S3).

use std::net::IpAddr;
use std::process::Command;
use std::time::Instant;

use stowage_cloudfront::signer::{
    normalize_url, CloudFrontSigner, HashAlgorithm, PrivateKey, SIGNING_BACKEND,
};
use stowage_cloudfront::{CloudFrontConfig, CloudFrontedS3Storage};
use stowage_core::{DownloadUrlOptions, Storage, StoragePath};
use stowage_integration::bench::{arg, median};
use stowage_integration::cloudfront::{key_file, script};

const PREFIX: &str = "https://d111111abcdef8.cloudfront.net/registry/blobs/sha256/";

fn signer(key: &str, hash: HashAlgorithm) -> CloudFrontSigner {
    CloudFrontSigner::new(
        "K2JCJMDEHXQW5F",
        PrivateKey::from_pem_file(&key_file(key)).expect("test key"),
    )
    .with_hash(hash)
}

/// Distinct URLs signed one after another on this thread.
fn signer_rate(signer: &CloudFrontSigner, count: u64, round: u64) -> f64 {
    let urls: Vec<String> = (0..count)
        .map(|i| normalize_url(&format!("{PREFIX}{round}-{i}")).unwrap())
        .collect();
    let started = Instant::now();
    for url in &urls {
        std::hint::black_box(signer.signed_url_canned(url, 1_900_000_000).unwrap());
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn botocore_rate(count: u64) -> f64 {
    let out = Command::new("python3")
        .arg(script("botocore_oracle.py"))
        .args(["bench", "--key"])
        .arg(key_file("rsa2048-pkcs1.pem"))
        .args(["--key-id", "K2JCJMDEHXQW5F", "--count", &count.to_string()])
        .args(["--url-prefix", PREFIX])
        .output()
        .expect("python3 runs botocore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench JSON");
    v["per_second"].as_f64().unwrap()
}

/// RSA-2048 signatures per second on one core, from `openssl speed -mr`.
fn openssl_rate() -> f64 {
    let out = Command::new("openssl")
        .args(["speed", "-mr", "-seconds", "2", "rsa2048"])
        .output()
        .expect("openssl runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // "+F2:<n>:2048:<sign>:<verify>": signatures per second (OpenSSL 3), or
    // seconds per signature (older releases).
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.strip_prefix("+F2:")?.split(':').collect();
            (f.get(1) == Some(&"2048"))
                .then(|| f.get(2)?.parse::<f64>().ok())
                .flatten()
        })
        .map(|v| if v > 1.0 { v } else { 1.0 / v })
        .unwrap_or_else(|| panic!("no +F2 line for rsa2048 in:\n{text}"))
}

async fn driver(cache_size: usize, key: &str, id: &str) -> CloudFrontedS3Storage {
    let s3 = stowage_s3::S3Config::new("bench-bucket")
        .with_root("registry")
        .with_endpoint("http://127.0.0.1:9");
    let mut c = CloudFrontConfig::new(s3, "d111111abcdef8.cloudfront.net", id, key_file(key));
    c.cache_size = cache_size;
    CloudFrontedS3Storage::new(c).await.expect("driver")
}

/// Download URLs per second through the driver for `paths` distinct blobs,
/// `passes` times over (with a cache, every pass after the first hits it).
async fn driver_rate(storage: &CloudFrontedS3Storage, paths: &[StoragePath], passes: u64) -> f64 {
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let options = DownloadUrlOptions::default().with_client_ip(ip);
    for p in paths {
        storage.download_url(p, &options).await.unwrap();
    }
    let started = Instant::now();
    for _ in 0..passes {
        for p in paths {
            std::hint::black_box(storage.download_url(p, &options).await.unwrap());
        }
    }
    (passes * paths.len() as u64) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds = arg("--rounds", 5);
    let count = arg("--count", 2000);
    let rsa = signer("rsa2048-pkcs1.pem", HashAlgorithm::Sha1);
    let rsa256 = signer("rsa2048-pkcs1.pem", HashAlgorithm::Sha256);
    let ecdsa = signer("ec-p256-pkcs8.pem", HashAlgorithm::Sha256);
    let ecdsa1 = signer("ec-p256-pkcs8.pem", HashAlgorithm::Sha1);
    let cached = driver(100_000, "rsa2048-pkcs1.pem", "K2JCJMDEHXQW5F").await;
    let uncached = driver(0, "rsa2048-pkcs1.pem", "K2JCJMDEHXQW5F").await;
    let paths: Vec<StoragePath> = (0..1000)
        .map(|i| StoragePath::parse(format!("blobs/sha256/{i:064x}")).unwrap())
        .collect();

    let names = [
        "botocore RSA (sha1)",
        "stowage RSA sha1, uncached",
        "stowage RSA sha256, uncached",
        "stowage ECDSA P-256 sha256, uncached",
        "stowage driver RSA, cache off",
        "stowage driver RSA, cached",
        "openssl speed rsa2048 (sign/s)",
        "stowage ECDSA P-256 sha1, uncached",
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..rounds {
        // Alternate the order so drift in machine load hits every contender.
        let mut order: Vec<usize> = (0..names.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let r = match i {
                0 => botocore_rate(count),
                1 => signer_rate(&rsa, count, round),
                2 => signer_rate(&rsa256, count, round),
                3 => signer_rate(&ecdsa, count * 10, round),
                4 => driver_rate(&uncached, &paths[..(count as usize).min(1000)], 1).await,
                5 => driver_rate(&cached, &paths, 200).await,
                6 => openssl_rate(),
                _ => signer_rate(&ecdsa1, count * 10, round),
            };
            rates[i].push(r);
        }
        eprintln!(
            "round {}: {:?}",
            round + 1,
            rates
                .iter()
                .map(|r| r.last().copied().unwrap_or(0.0) as u64)
                .collect::<Vec<_>>()
        );
    }
    println!("signing backend: {SIGNING_BACKEND}\n");
    println!("| signer | median URLs/s | median ratio to botocore RSA |");
    println!("|---|---|---|");
    for (i, name) in names.iter().enumerate() {
        let ratios: Vec<f64> = rates[i].iter().zip(&rates[0]).map(|(a, b)| a / b).collect();
        println!(
            "| {name} | {:.0} | {:.2}x |",
            median(rates[i].clone()),
            median(ratios)
        );
    }
    let vs_openssl: Vec<f64> = rates[1].iter().zip(&rates[6]).map(|(a, b)| a / b).collect();
    println!(
        "\nstowage RSA uncached / openssl speed rsa2048: median {:.2}x over {rounds} rounds",
        median(vs_openssl)
    );
}
