//! `put`, `get`, `cat` and `cp`: streaming transfers with bounded memory.

use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use stowage::download::DownloadOptions;
use stowage::{GetOptions, PutOptions, Storage, StoragePath, WriteStream};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::storage_path;
use crate::context::Context;
use crate::failure::Failure;
use crate::interrupt::{self, Activity};
use crate::progress;
use crate::target::Target;

const READ_BUFFER: usize = 1024 * 1024;

fn is_std(local: &Path) -> bool {
    local.as_os_str() == "-"
}

fn io_error(what: &str, e: std::io::Error) -> stowage::Error {
    stowage::Error::backend("local-file", false, what.to_string(), e)
}

fn reader_stream(
    reader: impl AsyncRead + Send + 'static,
    bar: ProgressBar,
    label: String,
) -> WriteStream<'static> {
    ReaderStream::with_capacity(reader, READ_BUFFER)
        .map_err(move |e| io_error(&format!("reading {label}"), e))
        .inspect_ok(move |chunk| bar.inc(chunk.len() as u64))
        .boxed()
}

/// Uploads a local file or stdin to `path`, which `to` names in messages
/// (`LOCATION:PATH`).
async fn upload(
    storage: &dyn Storage,
    local: &Path,
    path: &StoragePath,
    options: PutOptions,
    to: &str,
) -> Result<(), Failure> {
    let from = if is_std(local) {
        "stdin".to_string()
    } else {
        local.display().to_string()
    };
    interrupt::begin(Activity::Write {
        what: format!("the upload of {from} to {to}"),
    });
    let (data, size) = if is_std(local) {
        let bar = progress::bar(None, "put");
        (reader_stream(tokio::io::stdin(), bar, "stdin".into()), None)
    } else {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| Failure::failed(format!("cannot open {}: {e}", local.display())))?;
        let size = file.metadata().await.ok().map(|m| m.len());
        let bar = progress::bar(size, "put");
        (reader_stream(file, bar, local.display().to_string()), size)
    };
    let options = match size {
        Some(s) => options.with_size_hint(s),
        None => options,
    };
    storage.put_stream(path, data, options).await?;
    Ok(())
}

/// Downloads `path`, which `from` names in messages (`LOCATION:PATH`), to a
/// local file (written beside it, then renamed: no partial file on failure
/// or interrupt) or stdout.
async fn download(
    storage: &dyn Storage,
    path: &StoragePath,
    local: &Path,
    from: &str,
    options: DownloadOptions,
) -> Result<(), Failure> {
    if !is_std(local) {
        return download_file(storage, path, local, from, options).await;
    }
    interrupt::begin(Activity::Read {
        what: format!("the download of {from} to stdout"),
        partial: None,
    });
    let got = storage.get(path, GetOptions::default()).await?;
    let bar = progress::bar(Some(got.meta.size), "get");
    let mut stream = got.stream;
    let mut out = tokio::io::stdout();
    while let Some(chunk) = stream.try_next().await? {
        out.write_all(&chunk)
            .await
            .map_err(|e| Failure::failed(format!("writing stdout: {e}")))?;
        bar.inc(chunk.len() as u64);
    }
    out.flush()
        .await
        .map_err(|e| Failure::failed(format!("writing stdout: {e}")))?;
    Ok(())
}

/// Downloads `path` to the local file `local` in parallel ranges
/// ([`stowage::download`]): the bytes go to a temporary file created
/// exclusively beside it (an unpredictable name, no symlink followed),
/// renamed into place when whole; on a failure or an interrupt the
/// temporary file is removed and `local` is untouched.
async fn download_file(
    storage: &dyn Storage,
    path: &StoragePath,
    local: &Path,
    from: &str,
    options: DownloadOptions,
) -> Result<(), Failure> {
    let what = format!("the download of {from} to {}", local.display());
    interrupt::begin(Activity::Read {
        what: what.clone(),
        partial: None,
    });
    let bar = std::sync::OnceLock::new();
    let events = |event: stowage::download::DownloadEvent<'_>| match event {
        stowage::download::DownloadEvent::Started { partial, size } => {
            interrupt::begin(Activity::Read {
                what: what.clone(),
                partial: Some(partial.to_path_buf()),
            });
            let _ = bar.set(progress::bar(Some(size), "get"));
        }
        stowage::download::DownloadEvent::Bytes(n) => {
            if let Some(bar) = bar.get() {
                bar.inc(n);
            }
        }
        _ => {}
    };
    stowage::download::download_to_file(storage, path, local, options, &events).await?;
    if let Some(bar) = bar.get() {
        bar.finish_and_clear();
    }
    Ok(())
}

/// `stowage put LOCAL PATH`.
pub(crate) async fn put(
    ctx: &Context,
    local: &Path,
    path: &str,
    content_type: Option<String>,
) -> Result<(), Failure> {
    let path = storage_path(path)?;
    let to = format!("{}:{path}", ctx.selected()?.name);
    let storage = ctx.storage().await?;
    let mut options = PutOptions::default();
    if let Some(ct) = content_type {
        options = options.with_content_type(ct);
    }
    upload(&*storage, local, &path, options, &to).await
}

/// `stowage get PATH LOCAL` and `stowage cat PATH`; `options` for a
/// download to a file.
pub(crate) async fn get(
    ctx: &Context,
    path: &str,
    local: &Path,
    options: DownloadOptions,
) -> Result<(), Failure> {
    let path = storage_path(path)?;
    let from = format!("{}:{path}", ctx.selected()?.name);
    let storage = ctx.storage().await?;
    download(&*storage, &path, local, &from, options).await
}

/// `stowage cp SOURCE DEST`; `options` for a download to a file.
pub(crate) async fn cp(
    ctx: &Context,
    source: &str,
    dest: &str,
    options: DownloadOptions,
) -> Result<(), Failure> {
    let open = |location: String| async move { ctx.storage_named(&location).await };
    match (
        Target::parse(source, &ctx.config),
        Target::parse(dest, &ctx.config),
    ) {
        (Target::Local(_), Target::Local(_)) => Err(Failure::usage(
            "cp needs at least one LOCATION:PATH argument; for local files use cp(1)",
        )),
        (Target::Local(local), Target::Storage { location, path }) => {
            let path = storage_path(&path)?;
            upload(
                &*open(location).await?,
                &local,
                &path,
                PutOptions::default(),
                dest,
            )
            .await
        }
        (Target::Storage { location, path }, Target::Local(local)) => {
            let path = storage_path(&path)?;
            download(&*open(location).await?, &path, &local, source, options).await
        }
        (
            Target::Storage {
                location: from_loc,
                path: from,
            },
            Target::Storage {
                location: to_loc,
                path: to,
            },
        ) => {
            let (from, to) = (storage_path(&from)?, storage_path(&to)?);
            interrupt::begin(Activity::Write {
                what: format!("the copy of {source} to {dest}"),
            });
            let source: Arc<dyn Storage> = open(from_loc.clone()).await?;
            if from_loc == to_loc {
                source.copy(&from, &to).await?;
                return Ok(());
            }
            let target = open(to_loc).await?;
            let got = source.get(&from, GetOptions::default()).await?;
            let bar = progress::bar(Some(got.meta.size), "cp");
            let options = PutOptions::default().with_size_hint(got.meta.size);
            let options = match got.meta.content_type.clone() {
                Some(ct) => options.with_content_type(ct),
                None => options,
            };
            let stream = got
                .stream
                .inspect_ok(move |c| bar.inc(c.len() as u64))
                .boxed();
            target.put_stream(&to, stream, options).await?;
            Ok(())
        }
    }
}
