//! S3 throughput benchmark (docs/benchmarks.md): a 1 GiB object written and
//! read through stowage (the library, with and without its part checksum,
//! and the CLI from and to a file), through a plain aws-sdk-s3 loop with the
//! same part size, through boto3 the way Quay does it (sequential 5 MiB
//! parts) and through boto3's `upload_file`/`download_file` with
//! s3transfer's defaults, interleaved over several rounds; reports median
//! ratios and the peak RSS of the stowage upload (measured in a child
//! process of its own). Each writer's object is deleted before the next
//! writer starts; the readers all read one object the library writes
//! before them; dirty pages are synced before every contender.
//!
//! Run with `integration/bench-s3.sh` (starts Ceph RGW), or with
//! `STOWAGE_S3_TEST_*` set: `cargo build --release -p stowage-cli -p
//! stowage-integration --bin stowage --bin s3_bench`, then
//! `target/release/s3_bench [--size-mib N] [--rounds N]`. Other modes:
//! `--compare-read ROUNDS` (the three read streams alone, many short
//! rounds), `--compare-write ROUNDS [CONTENDER...]` (library uploads with
//! part checksums and part sizes, with client CPU), `--profile-read
//! stowage|sdk` (a process to profile) and
//! `--child-upload KEY` (one upload, for its peak RSS).

use std::io::Write;
use std::path::{Path, PathBuf};
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
    // The driver's defaults, not the tests' small parts and read-ahead
    // (which a bench run once measured by mistake: 1 MiB ranges read at
    // half the speed of one stream).
    let defaults = stowage_s3::S3Config::new("x");
    config.part_size = defaults.part_size;
    config.upload_concurrency = defaults.upload_concurrency;
    config.multipart_copy_threshold = defaults.multipart_copy_threshold;
    config.multipart_copy_part_size = defaults.multipart_copy_part_size;
    config.read_ahead_ranges = defaults.read_ahead_ranges;
    config.read_ahead_range_size = defaults.read_ahead_range_size;
    config.root = "stowage-bench".into();
    // STOWAGE_BENCH_PART_CHECKSUM=md5|sha256|none: the child writers that measure
    // what each `s3_part_checksum` costs (unset: the driver's default).
    match std::env::var("STOWAGE_BENCH_PART_CHECKSUM").as_deref() {
        Ok("md5") => config.part_checksum = stowage_s3::PartChecksum::Md5,
        Ok("sha256") => config.part_checksum = stowage_s3::PartChecksum::Sha256,
        Ok("none") => config.part_checksum = stowage_s3::PartChecksum::Off,
        _ => {}
    }
    // STOWAGE_BENCH_PARTS=MIB,IN_FLIGHT: the part size and parts in
    // flight to measure (unset: the driver's defaults).
    if let Ok(spec) = std::env::var("STOWAGE_BENCH_PARTS") {
        let mut it = spec.split(',').map(|v| v.trim().parse::<u64>().ok());
        if let (Some(Some(mib)), Some(Some(n))) = (it.next(), it.next()) {
            config.part_size = mib * MIB;
            config.upload_concurrency = n as usize;
        }
    }
    // STOWAGE_BENCH_READ_AHEAD=RANGES,MIB: the read-ahead to measure
    // (unset: the driver's default).
    if let Ok(spec) = std::env::var("STOWAGE_BENCH_READ_AHEAD") {
        let mut it = spec.split(',').map(|v| v.trim().parse::<u64>().ok());
        if let (Some(Some(ranges)), Some(Some(mib))) = (it.next(), it.next()) {
            config.read_ahead_ranges = ranges as usize;
            config.read_ahead_range_size = mib * MIB;
        }
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
    println!(
        "{:.3} {:.1} {:.2}",
        t.elapsed().as_secs_f64(),
        peak_rss_mib(),
        cpu_seconds()
    );
}

/// CPU (user and system) this process has used so far, in seconds, from
/// `/proc/self/stat` (0 where it cannot be read).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, in clock ticks.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
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

/// Runs a reader the way a server runs its handlers: in a task of its own
/// on the runtime's workers, where the connection's task and the reader
/// wake each other without crossing threads; with
/// `STOWAGE_BENCH_READ_IN=main`, on the thread that blocks on `main`
/// instead, whose every chunk then wakes another thread (measured in
/// docs/benchmarks.md).
async fn reading<F>(read: F) -> f64
where
    F: std::future::Future<Output = f64> + Send + 'static,
{
    if std::env::var("STOWAGE_BENCH_READ_IN").as_deref() == Ok("main") {
        read.await
    } else {
        tokio::spawn(read).await.expect("reader task")
    }
}

async fn sdk_download(env: &S3Env, client: &aws_sdk_s3::Client, key: &str, size: u64) -> f64 {
    let (client, bucket, key) = (client.clone(), env.bucket.clone(), key.to_string());
    reading(async move {
        let t = Instant::now();
        let mut body = client
            .get_object()
            .bucket(&bucket)
            .key(&key)
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
    })
    .await
}

async fn stowage_download(storage: &stowage_s3::S3Storage, key: &str, size: u64) -> f64 {
    let (storage, path) = (storage.clone(), StoragePath::parse(key).unwrap());
    reading(async move {
        let t = Instant::now();
        let mut stream = storage
            .get(&path, GetOptions::default())
            .await
            .unwrap()
            .stream;
        let mut n = 0u64;
        while let Some(chunk) = stream.try_next().await.unwrap() {
            n += chunk.len() as u64;
        }
        assert_eq!(n, size);
        t.elapsed().as_secs_f64()
    })
    .await
}

/// `--profile-read stowage|sdk`: writes one object (unless it is there),
/// then reads it three times through the stowage stream or the raw SDK body, printing MiB/s;
/// the process to run under `perf record` for the read path's profile
/// (docs/benchmarks.md).
async fn profile_read(env: &S3Env, which: &str, size: u64) {
    let storage = stowage_storage(env).await;
    let key = "profile-read";
    let b = block();
    let n = size / MIB;
    let data = futures::stream::iter((0..n).map(move |_| Ok(b.clone()))).boxed();
    let path = StoragePath::parse(key).unwrap();
    // Written once: a second run profiles the reads alone.
    if storage.stat(&path).await.ok().map(|m| m.size) != Some(size) {
        storage
            .put_stream(&path, data, PutOptions::default())
            .await
            .unwrap();
    }
    let client = env.sdk().await;
    for _ in 0..3 {
        let secs = match which {
            "sdk" => sdk_download(env, &client, &format!("stowage-bench/{key}"), size).await,
            _ => stowage_download(&storage, key, size).await,
        };
        println!("{which} read {:.0} MiB/s", (size / MIB) as f64 / secs);
    }
}

/// `--compare-read ROUNDS`: the stowage stream against the raw SDK body
/// and boto3's stream on one object (written once), the three in an
/// order rotated every round; prints each round's MiB/s and the median
/// per-round ratios. Many short rounds give steadier ratios than the
/// whole benchmark's few long ones.
async fn compare_read(env: &S3Env, rounds: usize, size: u64) {
    let storage = stowage_storage(env).await;
    let key = "compare-read";
    let path = StoragePath::parse(key).unwrap();
    if storage.stat(&path).await.ok().map(|m| m.size) != Some(size) {
        let b = block();
        let data = futures::stream::iter((0..size / MIB).map(move |_| Ok(b.clone()))).boxed();
        storage
            .put_stream(&path, data, PutOptions::default())
            .await
            .unwrap();
    }
    let client = env.sdk().await;
    let full = format!("stowage-bench/{key}");
    let mib = (size / MIB) as f64;
    let (mut vs_sdk, mut vs_boto3) = (vec![], vec![]);
    let mut cpus = [vec![], vec![], vec![]];
    for round in 0..rounds {
        let mut t = [0.0f64; 3];
        let mut cpu = [0.0f64; 3];
        for slot in 0..3 {
            let which = (slot + round) % 3;
            let before = cpu_seconds();
            (t[which], cpu[which]) = match which {
                0 => (stowage_download(&storage, key, size).await, 0.0),
                1 => (sdk_download(env, &client, &full, size).await, 0.0),
                _ => {
                    let (secs, _, cpu) = boto3_run("download", &full, &size.to_string());
                    (secs, cpu)
                }
            };
            if which < 2 {
                cpu[which] = cpu_seconds() - before;
            }
        }
        println!(
            "round {}: read MiB/s stowage {:.0} / SDK {:.0} / boto3 stream {:.0}; client CPU s {:.2} / {:.2} / {:.2}",
            round + 1,
            mib / t[0],
            mib / t[1],
            mib / t[2],
            cpu[0],
            cpu[1],
            cpu[2]
        );
        vs_sdk.push(t[1] / t[0]);
        vs_boto3.push(t[2] / t[0]);
        for (all, one) in cpus.iter_mut().zip(cpu) {
            all.push(one);
        }
    }
    let [c0, c1, c2] = cpus;
    println!(
        "median ratios over {rounds} rounds: stowage stream vs SDK {:.2}x, vs boto3 stream {:.2}x; median client CPU s {:.2} / {:.2} / {:.2}",
        median(vs_sdk),
        median(vs_boto3),
        median(c0),
        median(c1),
        median(c2)
    );
}

/// Runs `integration/bench/boto3_s3.py OP KEY ARG`; returns the seconds
/// it measured around the transfer (interpreter start-up and imports
/// excluded).
fn boto3(op: &str, key: &str, arg: &str) -> f64 {
    boto3_run(op, key, arg).0
}

/// [`boto3`]'s seconds and the whole process's, start-up included (what
/// a user timing the command sees, as the CLI's figures are taken).
fn boto3_whole(op: &str, key: &str, arg: &str) -> (f64, f64) {
    let (inner, whole, _) = boto3_run(op, key, arg);
    (inner, whole)
}

/// [`boto3_whole`]'s two figures and the CPU seconds the script used
/// around the transfer.
fn boto3_run(op: &str, key: &str, arg: &str) -> (f64, f64, f64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/boto3_s3.py");
    let t = Instant::now();
    let out = Command::new("python3")
        .args([script, op, key, arg])
        .output()
        .expect("python3");
    let whole = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "boto3 {op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut figures = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    let inner = figures.next().flatten().expect("seconds");
    let cpu = figures.next().flatten().unwrap_or(0.0);
    (inner, whole, cpu)
}

/// Runs the `stowage` binary built next to this one; returns the seconds
/// the whole process took (start-up and configuration included) and its
/// peak RSS in MiB, measured by GNU time (`/usr/bin/time -f %M`; 0 where
/// it is missing).
fn cli_rss(config: &Path, args: &[&str]) -> (f64, f64) {
    let bin = std::env::current_exe().unwrap().with_file_name("stowage");
    let timed = Path::new("/usr/bin/time").exists();
    let mut cmd = if timed {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "stowage-peak-rss-kib %M"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let t = Instant::now();
    let out = cmd
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (build it with -p stowage-cli)", bin.display()));
    let secs = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stowage {args:?}: {stderr}");
    let rss = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("stowage-peak-rss-kib "))
        .next_back()
        .and_then(|k| k.trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0);
    (secs, rss)
}

/// A child process uploading through the library: seconds and peak RSS.
/// `checksum` is `STOWAGE_BENCH_PART_CHECKSUM` for it (None: the default).
fn child(size: u64, key: &str, checksum: Option<&str>) -> (f64, f64) {
    let (secs, rss, _) = child_cpu(size, key, checksum, None);
    (secs, rss)
}

/// [`child`]'s seconds and peak RSS, and the CPU seconds the child used;
/// `parts` is `STOWAGE_BENCH_PARTS` for it (None: as this process has it).
fn child_cpu(size: u64, key: &str, checksum: Option<&str>, parts: Option<&str>) -> (f64, f64, f64) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--child-upload",
        key,
        "--size-mib",
        &(size / MIB).to_string(),
    ]);
    match checksum {
        Some(c) => cmd.env("STOWAGE_BENCH_PART_CHECKSUM", c),
        None => cmd.env_remove("STOWAGE_BENCH_PART_CHECKSUM"),
    };
    if let Some(parts) = parts {
        cmd.env("STOWAGE_BENCH_PARTS", parts);
    }
    let out = cmd.output().expect("child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let mut next = || it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (next(), next(), next())
}

/// `--compare-write ROUNDS [CONTENDER...]`: library uploads, each in a
/// child process of its own, in an order rotated every round; prints each
/// round's MiB/s and client CPU seconds, and the median per-round ratios
/// of the first contender to each other. A contender is a part checksum
/// (`auto`, `md5`, `sha256`, `none`), optionally with `/MIBxN` parts of
/// MIB MiB, N in flight; default `auto none`. Many short rounds give
/// steadier ratios than the whole benchmark's few long ones.
fn compare_write(rounds: usize, size: u64, contenders: &[String]) {
    let mib = (size / MIB) as f64;
    let n = contenders.len();
    let (mut speed, mut cpu) = (vec![vec![]; n], vec![vec![]; n]);
    for round in 0..rounds {
        let mut r = vec![(0.0f64, 0.0f64, 0.0f64); n];
        for slot in 0..n {
            let which = (slot + round) % n;
            let (checksum, parts) = contenders[which]
                .split_once('/')
                .map_or((contenders[which].as_str(), None), |(c, p)| (c, Some(p)));
            let parts = parts.map(|p| p.replace('x', ","));
            settle();
            r[which] = child_cpu(
                size,
                &format!("compare-write/{which}"),
                (checksum != "auto").then_some(checksum),
                parts.as_deref(),
            );
            gc();
        }
        let line: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "{} {:.0} MiB/s {:.2} s CPU",
                    contenders[i],
                    mib / r[i].0,
                    r[i].2
                )
            })
            .collect();
        println!("round {}: {}", round + 1, line.join(" / "));
        for i in 0..n {
            speed[i].push(r[i].0 / r[0].0);
            cpu[i].push(r[0].2 - r[i].2);
        }
    }
    for i in 1..n {
        println!(
            "median over {rounds} rounds: {} vs {} {:.2}x, extra client CPU {:.2} s",
            contenders[0],
            contenders[i],
            median(speed[i].clone()),
            median(cpu[i].clone())
        );
    }
}

/// Writes the page cache's dirty pages out (`sync`) before a contender
/// starts, so that no contender pays for the writeback of the file the one
/// before it wrote (download_file does not sync its file; 1 GiB of it was
/// once flushed during the next round's writers).
fn settle() {
    let _ = Command::new("sync").status();
}

fn gc() {
    if let Ok(conf) = std::env::var("STOWAGE_RGW_CONF") {
        let _ = Command::new("radosgw-admin")
            .args(["-c", &conf, "gc", "process", "--include-all"])
            .output();
    }
}

/// A config file with one S3Storage location on the benchmark's server,
/// rooted at `stowage-bench` like the library contender.
fn cli_config(env: &S3Env, dir: &Path) -> PathBuf {
    let path = dir.join("config.yaml");
    let endpoint = env
        .endpoint
        .as_deref()
        .map(|e| format!("      endpoint_url: {e}\n"))
        .unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  s3:\n    - S3Storage\n    - s3_bucket: {}\n{endpoint}      s3_region: {}\n      storage_path: /stowage-bench\n      s3_access_key: {}\n      s3_secret_key_env: STOWAGE_S3_TEST_SECRET_KEY\nDISTRIBUTED_STORAGE_PREFERENCE: [s3]\n",
            env.bucket, env.region, env.access_key,
        ),
    )
    .unwrap();
    path
}

/// The writers, in the order of `main`'s match arms and of the indices its
/// ratios use (0 is stowage with the default checksum).
const WRITERS: [&str; 7] = [
    "stowage",
    "stowage, s3_part_checksum sha256",
    "stowage, s3_part_checksum none",
    "stowage put (CLI, file)",
    "SDK loop",
    "boto3 sequential 5 MiB",
    "boto3 upload_file",
];
/// The object every reader reads (below the library's root), written by
/// the library before the readers run.
const READ_KEY: &str = "bench/read-object";

/// The readers, in the order of `main`'s match arms and ratio indices.
const READERS: [&str; 5] = [
    "stowage",
    "stowage get (CLI, file)",
    "SDK",
    "boto3 stream",
    "boto3 download_file",
];

#[tokio::main]
async fn main() {
    let env = S3Env::get();
    let size = arg("--size-mib", 1024) * MIB;
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-upload") {
        child_upload(&env, &args[2], size).await;
        return;
    }
    if args.get(1).map(String::as_str) == Some("--profile-read") {
        profile_read(&env, &args[2], size).await;
        return;
    }
    if args.get(1).map(String::as_str) == Some("--compare-read") {
        let rounds = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(10);
        compare_read(&env, rounds, size).await;
        return;
    }
    if args.get(1).map(String::as_str) == Some("--compare-write") {
        let rounds = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(10);
        let mut contenders: Vec<String> = args[3.min(args.len())..]
            .iter()
            .take_while(|a| !a.starts_with("--"))
            .cloned()
            .collect();
        if contenders.len() < 2 {
            contenders = vec!["auto".into(), "none".into()];
        }
        compare_write(rounds, size, &contenders);
        return;
    }
    let rounds = arg("--rounds", 3) as usize;
    let storage = stowage_storage(&env).await;
    let part = storage.config().part_size;
    let client = env.sdk().await;
    let mib = (size / MIB) as f64;
    let dir = std::env::temp_dir().join(format!("stowage-s3-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = cli_config(&env, &dir);
    let input = dir.join("in.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        let b = block();
        for _ in 0..size / MIB {
            f.write_all(&b).unwrap();
        }
        f.flush().unwrap();
    }
    let input_s = input.to_str().unwrap().to_string();
    let output = dir.join("out.bin");
    let output_s = output.to_str().unwrap().to_string();
    println!(
        "object {} MiB, stowage part {} MiB x {} in flight (integrity: {:?}), SDK loop part {} MiB sequential, boto3 5 MiB sequential, boto3 upload_file/download_file with s3transfer defaults, {rounds} rounds, server {}",
        size / MIB, part / MIB, storage.config().upload_concurrency, storage.config().part_checksum_in_use(), part / MIB, env.server
    );
    let full_key = |k: &str| format!("stowage-bench/{k}");
    let mut write = vec![vec![]; WRITERS.len()];
    let mut read = vec![vec![]; READERS.len()];
    let mut rss = vec![];
    let (mut cli_put_rss, mut cli_get_rss) = (vec![], vec![]);
    // upload_file and download_file as whole processes, per round.
    let (mut xfer_put_whole, mut xfer_get_whole) = (vec![], vec![]);
    for round in 0..rounds {
        // Rotate the order so no contender always goes first.
        let mut w = [0.0f64; WRITERS.len()];
        for slot in 0..WRITERS.len() {
            let which = (slot + round) % WRITERS.len();
            settle();
            w[which] = match which {
                0 => {
                    let (secs, peak) = child(size, "bench/stowage-object", None);
                    rss.push(peak);
                    secs
                }
                1 => child(size, "bench/stowage-sha256", Some("sha256")).0,
                2 => child(size, "bench/stowage-unsigned", Some("none")).0,
                3 => {
                    let (secs, peak) = cli_rss(&config, &["put", &input_s, "bench/cli-object"]);
                    cli_put_rss.push(peak);
                    secs
                }
                4 => sdk_upload(&env, &client, &full_key("sdk-object"), size, part).await,
                5 => boto3("upload", &full_key("boto3-object"), &size.to_string()),
                _ => {
                    let (secs, whole) =
                        boto3_whole("upload_file", &full_key("xfer-object"), &input_s);
                    xfer_put_whole.push(whole);
                    secs
                }
            };
            // Every written object goes at once and RGW's collector runs,
            // so each writer starts with the server in the same state. (When
            // only the objects no reader needed went, the writer after such
            // a delete always wrote into the memory RGW's in-memory store
            // had just freed, and measured faster than the others.)
            let written = match which {
                0 => "stowage-bench/bench/stowage-object",
                1 => "stowage-bench/bench/stowage-sha256",
                2 => "stowage-bench/bench/stowage-unsigned",
                3 => "stowage-bench/bench/cli-object",
                4 => "stowage-bench/sdk-object",
                5 => "stowage-bench/boto3-object",
                _ => "stowage-bench/xfer-object",
            };
            client
                .delete_object()
                .bucket(&env.bucket)
                .key(written)
                .send()
                .await
                .expect("delete");
            gc();
        }
        // One object for every reader, written by the library, untimed.
        let b = block();
        let data = futures::stream::iter((0..size / MIB).map(move |_| Ok(b.clone()))).boxed();
        storage
            .put_stream(
                &StoragePath::parse(READ_KEY).unwrap(),
                data,
                PutOptions::default(),
            )
            .await
            .expect("the readers' object");
        let read_key = full_key(READ_KEY);
        let mut r = [0.0f64; READERS.len()];
        for slot in 0..READERS.len() {
            let which = (slot + round) % READERS.len();
            let _ = std::fs::remove_file(&output);
            settle();
            r[which] = match which {
                0 => stowage_download(&storage, READ_KEY, size).await,
                1 => {
                    let (secs, peak) = cli_rss(&config, &["get", READ_KEY, &output_s]);
                    cli_get_rss.push(peak);
                    secs
                }
                2 => sdk_download(&env, &client, &read_key, size).await,
                3 => boto3("download", &read_key, &size.to_string()),
                _ => {
                    let (secs, whole) = boto3_whole("download_file", &read_key, &output_s);
                    xfer_get_whole.push(whole);
                    secs
                }
            };
            if which == 1 || which == 4 {
                assert_eq!(std::fs::metadata(&output).unwrap().len(), size);
            }
        }
        let rate = |v: &[f64]| {
            v.iter()
                .map(|t| format!("{:.0}", mib / t))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!(
            "round {}: write MiB/s {}; read MiB/s {}; stowage upload peak RSS {:.0} MiB",
            round + 1,
            rate(&w),
            rate(&r),
            rss[round]
        );
        for (i, t) in w.iter().enumerate() {
            write[i].push(*t);
        }
        for (i, t) in r.iter().enumerate() {
            read[i].push(*t);
        }
        let _ = storage
            .delete_prefix(&StoragePath::parse("bench").unwrap())
            .await;
        for k in ["sdk-object", "boto3-object", "xfer-object"] {
            let _ = client
                .delete_object()
                .bucket(&env.bucket)
                .key(full_key(k))
                .send()
                .await;
        }
        gc();
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Per-round ratios of throughput (time of the other / time of ours),
    // then the median over rounds.
    let ratio = |times: &[Vec<f64>], ours: usize, other: usize| {
        median(
            times[ours]
                .iter()
                .zip(&times[other])
                .map(|(o, x)| x / o)
                .collect(),
        )
    };
    println!("writers: {}", WRITERS.join(" / "));
    println!("readers: {}", READERS.join(" / "));
    println!("median throughput ratios (higher is better for the first named):");
    println!(
        "  write stowage vs SDK loop:               {:.2}x",
        ratio(&write, 0, 4)
    );
    println!(
        "  write stowage vs boto3 sequential:       {:.2}x",
        ratio(&write, 0, 5)
    );
    println!(
        "  write stowage vs boto3 upload_file:      {:.2}x",
        ratio(&write, 0, 6)
    );
    println!(
        "  write stowage put vs boto3 upload_file:  {:.2}x",
        ratio(&write, 3, 6)
    );
    println!(
        "  write default vs sha256:                 {:.2}x",
        ratio(&write, 0, 1)
    );
    println!(
        "  write default vs none:                   {:.2}x",
        ratio(&write, 0, 2)
    );
    println!(
        "  write sha256 vs none:                    {:.2}x",
        ratio(&write, 1, 2)
    );
    println!(
        "  read stowage vs SDK:                     {:.2}x",
        ratio(&read, 0, 2)
    );
    println!(
        "  read stowage vs boto3 stream:            {:.2}x",
        ratio(&read, 0, 3)
    );
    println!(
        "  read stowage vs boto3 download_file:     {:.2}x",
        ratio(&read, 0, 4)
    );
    println!(
        "  read stowage get vs boto3 download_file: {:.2}x",
        ratio(&read, 1, 4)
    );
    // The CLI's process time against the Python process's (both whole).
    let whole =
        |cli: &[f64], python: &[f64]| median(cli.iter().zip(python).map(|(c, p)| p / c).collect());
    println!(
        "  stowage put vs upload_file, whole processes:   {:.2}x",
        whole(&write[3], &xfer_put_whole)
    );
    println!(
        "  stowage get vs download_file, whole processes: {:.2}x",
        whole(&read[1], &xfer_get_whole)
    );
    let bound = (storage.config().upload_concurrency as f64 + 2.0) * (part / MIB) as f64 + 64.0;
    println!("  stowage upload peak RSS: max {:.0} MiB over rounds (bound (in flight + 2) x part + 64 MiB = {bound:.0} MiB)",
        rss.iter().cloned().fold(0.0, f64::max));
    println!(
        "  stowage put / get process peak RSS: max {:.0} / {:.0} MiB over rounds",
        cli_put_rss.iter().cloned().fold(0.0, f64::max),
        cli_get_rss.iter().cloned().fold(0.0, f64::max)
    );
}
