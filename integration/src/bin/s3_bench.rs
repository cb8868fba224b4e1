//! S3 throughput benchmark (docs/benchmarks.md): a 1 GiB object written and
//! read through stowage, through a plain aws-sdk-s3 loop with the same part
//! size, and through boto3 the way Quay does it (sequential 5 MiB parts),
//! interleaved over several rounds; reports median ratios and the peak RSS
//! of the stowage upload (measured in a child process of its own).
//!
//! Run with `integration/bench-s3.sh` (starts Ceph RGW), or with
//! `STOWAGE_S3_TEST_*` set: `cargo run --release -p stowage-integration
//! --bin s3_bench -- [--size-mib N] [--rounds N]`.

use std::process::Command;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use stowage_core::{GetOptions, PutOptions, Storage, StoragePath};
use stowage_integration::bench::{arg, median};
use stowage_integration::S3Env;

const MIB: u64 = 1024 * 1024;

fn block() -> Bytes {
    Bytes::from((0..MIB).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>())
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn stowage_storage(env: &S3Env) -> stowage_s3::S3Storage {
    let mut config = env.config("bench");
    // The driver's defaults, not the tests' small parts.
    let defaults = stowage_s3::S3Config::new("x");
    config.part_size = defaults.part_size;
    config.upload_concurrency = defaults.upload_concurrency;
    config.root = "stowage-bench".into();
    // STOWAGE_BENCH_PART_CHECKSUM=md5|none measures what Content-MD5 costs
    // (unset: the driver's default, `auto`: md5 on this plain-HTTP server).
    match std::env::var("STOWAGE_BENCH_PART_CHECKSUM").as_deref() {
        Ok("md5") => config.part_checksum = stowage_s3::PartChecksum::Md5,
        Ok("none") => config.part_checksum = stowage_s3::PartChecksum::Off,
        _ => {}
    }
    stowage_s3::S3Storage::new(config).await.expect("driver")
}

/// Child mode: upload through stowage, print seconds and peak RSS.
async fn child_upload(env: &S3Env, key: &str, size: u64) {
    let storage = stowage_storage(env).await;
    let b = block();
    let n = size / MIB;
    let data = futures::stream::iter((0..n).map(move |_| Ok(b.clone()))).boxed();
    let t = Instant::now();
    let meta = storage
        .put_stream(
            &StoragePath::parse(key).unwrap(),
            data,
            PutOptions::default().with_size_hint(size),
        )
        .await
        .expect("stowage upload");
    assert_eq!(meta.size, size);
    println!("{:.3} {:.1}", t.elapsed().as_secs_f64(), peak_rss_mib());
}

async fn sdk_upload(
    env: &S3Env,
    client: &aws_sdk_s3::Client,
    key: &str,
    size: u64,
    part: u64,
) -> f64 {
    let b = block();
    let t = Instant::now();
    let up = client
        .create_multipart_upload()
        .bucket(&env.bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_string();
    let mut parts = Vec::new();
    let mut sent = 0;
    let mut number = 0;
    while sent < size {
        let len = part.min(size - sent);
        let mut buf = BytesMut::with_capacity(len as usize);
        while (buf.len() as u64) < len {
            let take = (len - buf.len() as u64).min(MIB) as usize;
            buf.extend_from_slice(&b[..take]);
        }
        number += 1;
        let out = client
            .upload_part()
            .bucket(&env.bucket)
            .key(key)
            .upload_id(&id)
            .part_number(number)
            .body(SdkBody::from(buf.freeze()))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().unwrap_or_default())
                .build(),
        );
        sent += len;
    }
    client
        .complete_multipart_upload()
        .bucket(&env.bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    t.elapsed().as_secs_f64()
}

async fn sdk_download(env: &S3Env, client: &aws_sdk_s3::Client, key: &str, size: u64) -> f64 {
    let t = Instant::now();
    let mut body = client
        .get_object()
        .bucket(&env.bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body;
    let mut n = 0u64;
    while let Some(chunk) = body.try_next().await.unwrap() {
        n += chunk.len() as u64;
    }
    assert_eq!(n, size);
    t.elapsed().as_secs_f64()
}

async fn stowage_download(storage: &dyn Storage, key: &str, size: u64) -> f64 {
    let t = Instant::now();
    let mut stream = storage
        .get(&StoragePath::parse(key).unwrap(), GetOptions::default())
        .await
        .unwrap()
        .stream;
    let mut n = 0u64;
    while let Some(chunk) = stream.try_next().await.unwrap() {
        n += chunk.len() as u64;
    }
    assert_eq!(n, size);
    t.elapsed().as_secs_f64()
}

fn boto3(op: &str, key: &str, size: u64) -> f64 {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/boto3_s3.py");
    let out = Command::new("python3")
        .args([script, op, key, &size.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "boto3 {op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds")
}

fn gc() {
    if let Ok(conf) = std::env::var("STOWAGE_RGW_CONF") {
        let _ = Command::new("radosgw-admin")
            .args(["-c", &conf, "gc", "process", "--include-all"])
            .output();
    }
}

#[tokio::main]
async fn main() {
    let env = S3Env::get();
    let size = arg("--size-mib", 1024) * MIB;
    if std::env::args().any(|a| a == "--child-upload") {
        child_upload(&env, "bench/stowage-object", size).await;
        return;
    }
    let rounds = arg("--rounds", 3) as usize;
    let storage = stowage_storage(&env).await;
    let part = storage.config().part_size;
    let client = env.sdk().await;
    let mib = (size / MIB) as f64;
    println!(
        "object {} MiB, stowage part {} MiB x {} in flight, SDK loop part {} MiB sequential, boto3 5 MiB sequential, {rounds} rounds, server {}",
        size / MIB, part / MIB, storage.config().upload_concurrency, part / MIB, env.server
    );
    let (mut w_sdk, mut w_boto, mut r_sdk, mut r_boto, mut rss) =
        (vec![], vec![], vec![], vec![], vec![]);
    let full_key = |k: &str| format!("stowage-bench/{k}");
    for round in 0..rounds {
        // Rotate the order so no contender always goes first.
        let mut times = [0.0f64; 6];
        for slot in 0..3 {
            match (slot + round) % 3 {
                0 => {
                    let out = Command::new(std::env::current_exe().unwrap())
                        .args(["--child-upload", "--size-mib", &(size / MIB).to_string()])
                        .output()
                        .expect("child");
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let text = String::from_utf8_lossy(&out.stdout);
                    let mut it = text.split_whitespace();
                    times[0] = it.next().unwrap().parse().unwrap();
                    rss.push(it.next().unwrap().parse::<f64>().unwrap());
                }
                1 => {
                    times[1] = sdk_upload(&env, &client, &full_key("sdk-object"), size, part).await
                }
                _ => times[2] = boto3("upload", &full_key("boto3-object"), size),
            }
            gc();
        }
        for slot in 0..3 {
            match (slot + round) % 3 {
                0 => times[3] = stowage_download(&storage, "bench/stowage-object", size).await,
                1 => times[4] = sdk_download(&env, &client, &full_key("sdk-object"), size).await,
                _ => times[5] = boto3("download", &full_key("sdk-object"), size),
            }
        }
        println!(
            "round {}: write MiB/s stowage {:.0}, sdk loop {:.0}, boto3 {:.0}; read MiB/s stowage {:.0}, sdk {:.0}, boto3 {:.0}; stowage upload peak RSS {:.0} MiB",
            round + 1, mib / times[0], mib / times[1], mib / times[2], mib / times[3], mib / times[4], mib / times[5], rss[round]
        );
        w_sdk.push(times[1] / times[0]);
        w_boto.push(times[2] / times[0]);
        r_sdk.push(times[4] / times[3]);
        r_boto.push(times[5] / times[3]);
        let _ = storage
            .delete_prefix(&StoragePath::parse("bench").unwrap())
            .await;
        for k in ["sdk-object", "boto3-object"] {
            let _ = client
                .delete_object()
                .bucket(&env.bucket)
                .key(full_key(k))
                .send()
                .await;
        }
        gc();
    }
    let bound = (storage.config().upload_concurrency as f64 + 2.0) * (part / MIB) as f64 + 64.0;
    println!("median throughput ratios (stowage / other, higher is better):");
    println!(
        "  write: vs sdk loop {:.2}x, vs boto3 sequential {:.2}x",
        median(w_sdk),
        median(w_boto)
    );
    println!(
        "  read:  vs sdk {:.2}x, vs boto3 {:.2}x",
        median(r_sdk),
        median(r_boto)
    );
    println!("  stowage upload peak RSS: max {:.0} MiB over rounds (bound (in flight + 2) x part + 64 MiB = {bound:.0} MiB)",
        rss.iter().cloned().fold(0.0, f64::max));
}
