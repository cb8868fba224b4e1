//! Azure throughput benchmark, the stowage side (docs/benchmarks.md): one
//! transfer per process through `AzureStorage` with the driver's defaults,
//! so that `integration/bench-azure.sh` can run it interleaved with the
//! Python SDK's transfers (`integration/bench/azure_python.py`) and measure
//! each process's peak RSS with GNU time.
//!
//! ```text
//! azure_bench describe                          the settings the transfers use
//! azure_bench write FILE BLOB [--no-content-md5] FILE streamed into BLOB (put_stream)
//! azure_bench read BLOB                         BLOB streamed (get), bytes counted and dropped
//! azure_bench get BLOB FILE                     BLOB downloaded to FILE (download_to_file)
//! azure_bench delete BLOB...                    removes blobs (clean-up, untimed)
//! ```
//!
//! `write`, `read` and `get` print one line, `BYTES SECONDS`: the bytes
//! moved and the seconds the transfer took, timed inside the process
//! (start-up excluded), the same line the Python contenders print. BLOB is
//! a blob name in the container (the driver's root is the container's
//! root, so both sides name the same blob). The account comes from
//! `STOWAGE_AZURE_TEST_*`, which `integration/servers/azurite-up.sh`
//! writes.
//!
//! Run with `integration/bench-azure.sh` (starts Azurite), or with
//! `STOWAGE_AZURE_TEST_*` set: `cargo build --release -p
//! stowage-integration --bin azure_bench`, then `target/release/azure_bench
//! write in.bin bench/blob`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt};
use stowage_azure::{AzureConfig, AzureStorage};
use stowage_core::config::Secret;
use stowage_core::download::DownloadOptions;
use stowage_core::{GetOptions, PutOptions, Storage, StorageExt, StoragePath, WriteStream};
use stowage_integration::azure::AzureEnv;
use tokio::io::AsyncReadExt;

const MIB: u64 = 1024 * 1024;

/// Bytes per read of the local file: what `stowage put` reads at a time.
const READ_BUFFER: usize = 1024 * 1024;

const USAGE: &str = "usage: azure_bench describe | write FILE BLOB [--no-content-md5] | \
                     read BLOB | get BLOB FILE | delete BLOB...";

/// A failure: the message, and whether it was a usage error (exit 2).
struct Failure {
    message: String,
    usage: bool,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            usage: true,
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            usage: false,
        }
    }
}

/// The driver on the account of `STOWAGE_AZURE_TEST_*` with its defaults
/// (block size, blocks in flight, Content-MD5 on `http://`), rooted at the
/// container's root; `content_md5` is `azure_content_md5` (`None`: unset).
fn storage(content_md5: Option<bool>) -> Result<AzureStorage, Failure> {
    let env = AzureEnv::get();
    let mut config = AzureConfig::new(env.account, env.container)
        .with_account_key(Secret::new(env.key))
        .with_endpoint(env.account_url);
    config.content_md5 = content_md5;
    AzureStorage::new(config).map_err(|e| Failure::failed(format!("driver: {e}")))
}

fn blob_path(blob: &str) -> Result<StoragePath, Failure> {
    StoragePath::parse(blob).map_err(|e| Failure::usage(format!("blob name {blob:?}: {e}")))
}

/// The file's bytes in reads of up to [`READ_BUFFER`], each in a buffer
/// of its own (what `stowage put`'s reader stream hands the driver).
fn file_stream(file: tokio::fs::File, label: String) -> WriteStream<'static> {
    futures::stream::try_unfold(file, |mut f| async move {
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        let n = f.read_buf(&mut buf).await?;
        Ok::<_, std::io::Error>((n > 0).then(|| (buf.freeze(), f)))
    })
    .map_err(move |e| stowage_core::Error::input_stream(format!("reading {label}"), e))
    .boxed()
}

/// Streams `file` into `blob` the way `stowage put` does (1 MiB reads, the
/// size as a hint); returns the bytes written and the seconds taken.
async fn write(storage: &AzureStorage, file: &Path, blob: &str) -> Result<(u64, f64), Failure> {
    let path = blob_path(blob)?;
    let t = Instant::now();
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| Failure::failed(format!("cannot open {}: {e}", file.display())))?;
    let size = f
        .metadata()
        .await
        .map_err(|e| Failure::failed(format!("cannot stat {}: {e}", file.display())))?
        .len();
    let data = file_stream(f, file.display().to_string());
    let meta = storage
        .put_stream(&path, data, PutOptions::default().with_size_hint(size))
        .await
        .map_err(|e| Failure::failed(format!("writing {blob}: {e}")))?;
    let secs = t.elapsed().as_secs_f64();
    if meta.size != size {
        return Err(Failure::failed(format!(
            "wrote {} bytes to {blob}, the file has {size}",
            meta.size
        )));
    }
    Ok((size, secs))
}

/// Streams `blob` (one Get Blob), counting and dropping the bytes.
async fn read(storage: &AzureStorage, blob: &str) -> Result<(u64, f64), Failure> {
    let path = blob_path(blob)?;
    let t = Instant::now();
    let got = storage
        .get(&path, GetOptions::default())
        .await
        .map_err(|e| Failure::failed(format!("reading {blob}: {e}")))?;
    let size = got.meta.size;
    let mut stream = got.stream;
    let mut n = 0u64;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| Failure::failed(format!("reading {blob} after {n} bytes: {e}")))?
    {
        n += chunk.len() as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    if n != size {
        return Err(Failure::failed(format!(
            "read {n} bytes of {blob}, its size is {size}"
        )));
    }
    Ok((n, secs))
}

/// Downloads `blob` to `file` with core's `download_to_file` and its
/// defaults (parallel ranges, synced, renamed into place).
async fn get(storage: &AzureStorage, blob: &str, file: &Path) -> Result<(u64, f64), Failure> {
    let path = blob_path(blob)?;
    let t = Instant::now();
    let meta = storage
        .download_to_file(&path, file, DownloadOptions::default())
        .await
        .map_err(|e| Failure::failed(format!("downloading {blob}: {e}")))?;
    let secs = t.elapsed().as_secs_f64();
    let on_disk = std::fs::metadata(file)
        .map_err(|e| Failure::failed(format!("cannot stat {}: {e}", file.display())))?
        .len();
    if on_disk != meta.size {
        return Err(Failure::failed(format!(
            "{} has {on_disk} bytes, {blob} has {}",
            file.display(),
            meta.size
        )));
    }
    Ok((on_disk, secs))
}

/// The settings the transfers use, on one line for the report's header.
fn describe(storage: &AzureStorage) {
    let c = storage.config();
    let d = DownloadOptions::default();
    println!(
        "stowage: blocks of {} MiB, {} in flight per write (about ({} + 1) x {} MiB of blocks), \
         Content-MD5 {} (azure_content_md5 unset); a read is one streamed Get Blob; \
         download_to_file {} MiB ranges x {} in flight, {}",
        c.block_size / MIB,
        c.upload_concurrency,
        c.upload_concurrency,
        c.block_size / MIB,
        if c.uses_content_md5() { "on" } else { "off" },
        d.range_size / MIB,
        d.concurrency,
        if d.sync {
            "synced before the rename"
        } else {
            "not synced"
        },
    );
}

async fn run(args: &[String]) -> Result<(), Failure> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = match words.as_slice() {
        ["describe"] => {
            describe(&storage(None)?);
            None
        }
        ["write", file, blob] => Some(write(&storage(None)?, Path::new(file), blob).await?),
        ["write", file, blob, "--no-content-md5"] => {
            Some(write(&storage(Some(false))?, Path::new(file), blob).await?)
        }
        ["read", blob] => Some(read(&storage(None)?, blob).await?),
        ["get", blob, file] => Some(get(&storage(None)?, blob, Path::new(file)).await?),
        ["delete", blobs @ ..] if !blobs.is_empty() => {
            let driver = storage(None)?;
            for blob in blobs {
                driver
                    .delete(&blob_path(blob)?)
                    .await
                    .map_err(|e| Failure::failed(format!("deleting {blob}: {e}")))?;
            }
            None
        }
        _ => return Err(Failure::usage(USAGE)),
    };
    if let Some((bytes, secs)) = done {
        println!("{bytes} {secs:.6}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("azure_bench: {}", f.message);
            ExitCode::from(if f.usage { 2 } else { 1 })
        }
    }
}
