//! Downloads to a local file in parallel ranges, the way s3transfer does:
//! the object is read as ranges of [`DownloadOptions::range_size`] bytes,
//! [`DownloadOptions::concurrency`] at a time, each written at its offset
//! as its bytes arrive, so memory stays bounded by the ranges in flight
//! times one network chunk, whatever the object's size. Every range must
//! come from the version the first answer named (its ETag): an object
//! replaced mid-download fails the download, never mixes versions. The
//! file appears whole at its name or not at all: bytes go to a temporary
//! file created exclusively beside it (an unpredictable name, never an
//! existing file or a symlink), synced, then renamed into place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{FutureExt, StreamExt, TryStreamExt};

use crate::{ByteRange, Error, GetOptions, ObjectMeta, Result, Storage, StoragePath};

/// Settings of [`download_to_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadOptions {
    /// Bytes per range (default 16 MiB): large enough that a request's
    /// overhead is small, small enough that a resumed range costs little.
    pub range_size: u64,
    /// Ranges in flight (default 8).
    pub concurrency: usize,
    /// Whether the file is synced to disk before it is renamed into place
    /// (default true): after a crash the name holds the whole file or the
    /// old one.
    pub sync: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            range_size: 16 << 20,
            concurrency: 8,
            sync: true,
        }
    }
}

impl DownloadOptions {
    /// Sets the range size (at least 1 byte).
    pub fn with_range_size(mut self, bytes: u64) -> Self {
        self.range_size = bytes.max(1);
        self
    }

    /// Sets the ranges in flight (at least 1).
    pub fn with_concurrency(mut self, ranges: usize) -> Self {
        self.concurrency = ranges.max(1);
        self
    }

    /// Sets whether the file is synced before the rename.
    pub fn with_sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }
}

/// What [`download_to_file`] tells its caller as it goes.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum DownloadEvent<'a> {
    /// The object was found (`size` bytes) and its bytes go to the
    /// temporary file `partial`, renamed to the destination at the end (a
    /// caller that may exit abruptly removes it then).
    Started {
        /// The temporary file.
        partial: &'a Path,
        /// The object's size.
        size: u64,
    },
    /// This many more bytes were written.
    Bytes(u64),
}

/// An event callback that ignores every event.
pub fn ignore_events(_event: DownloadEvent<'_>) {}

/// The temporary file, removed when dropped unless it was renamed.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A local file failure.
fn io(what: String, e: std::io::Error) -> Error {
    Error::Backend {
        driver: "local file",
        retryable: false,
        message: format!("{what}: {e}"),
        operation: None,
        source: Some(Box::new(e)),
    }
}

/// Creates the temporary file beside `dest`: `.NAME.<random>.partial`,
/// created exclusively (`O_EXCL`: an existing file or symlink of that name
/// is an error, never followed), readable by its owner only until renamed.
fn create_partial(dest: &Path) -> Result<(std::fs::File, Partial)> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("download");
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut last = None;
    for _ in 0..8 {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let path = dir.join(format!(".{name}.{}.partial", &tag[..16]));
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        match open.open(&path) {
            Ok(file) => return Ok((file, Partial { path, done: false })),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io(format!("cannot create {}", path.display()), e)),
        }
    }
    Err(io(
        format!("cannot create a temporary file beside {}", dest.display()),
        last.unwrap_or_else(|| std::io::Error::other("name collisions")),
    ))
}

/// Writes `data` at `offset` of `file`, off the async threads; with
/// `writeback`, starts writing those bytes to disk without waiting for
/// them ([`start_writeback`]).
async fn write_at(
    file: Arc<std::fs::File>,
    offset: u64,
    data: bytes::Bytes,
    writeback: bool,
) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&data, offset)?;
            if writeback {
                start_writeback(&file, offset, data.len() as u64);
            }
            Ok(())
        }
        #[cfg(not(unix))]
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = &*file;
            f.seek(SeekFrom::Start(offset))?;
            f.write_all(&data)
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to
/// disk and returns at once (Linux `sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`), so the writeback overlaps the download and
/// the sync before the rename waits only for the last bytes. Only a hint:
/// a failure is ignored, since the sync reports any error.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is borrowed from `file`, open for the whole
    // call; the call reads and writes no memory of this process.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Elsewhere the sync before the rename writes everything.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &std::fs::File, _: u64, _: u64) {}

/// Bytes gathered before one positional write: network chunks are small
/// (tens of KiB), and a blocking-pool hop per chunk costs more than the
/// write itself.
const WRITE_BATCH: usize = 1 << 20;

/// Writes a range's chunks at their offsets in batches of [`WRITE_BATCH`].
struct Batch {
    file: Arc<std::fs::File>,
    /// Whether written bytes start going to disk at once (the download
    /// is synced before its rename).
    writeback: bool,
    /// Where the gathered bytes go.
    at: u64,
    buf: bytes::BytesMut,
}

impl Batch {
    fn new(file: Arc<std::fs::File>, at: u64, writeback: bool) -> Self {
        Self {
            file,
            writeback,
            at,
            buf: bytes::BytesMut::new(),
        }
    }

    /// Adds `chunk`; writes when a batch is full.
    async fn push(&mut self, chunk: &[u8]) -> Result<()> {
        if self.buf.is_empty() && self.buf.capacity() < WRITE_BATCH {
            self.buf.reserve(WRITE_BATCH);
        }
        self.buf.extend_from_slice(chunk);
        if self.buf.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes what is gathered.
    async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = self.buf.split().freeze();
        let n = data.len() as u64;
        write_at(self.file.clone(), self.at, data, self.writeback)
            .await
            .map_err(|e| io("writing the download".into(), e))?;
        self.at += n;
        Ok(())
    }
}

/// The error of a download whose object was replaced between two ranges.
fn changed(path: &StoragePath, first: &Option<String>, now: &Option<String>) -> Error {
    Error::Backend {
        driver: "download",
        retryable: false,
        message: format!(
            "downloading {path}: the object was replaced while it was being downloaded (ETag \
             {} then {}); nothing was written at the destination",
            first.as_deref().unwrap_or("none"),
            now.as_deref().unwrap_or("none")
        ),
        operation: None,
        source: None,
    }
}

/// Downloads `path` to the local file `dest` in parallel ranges (see the
/// module docs), replacing `dest` only once every byte is there; `events`
/// hears where the bytes go and how many were written, as they are.
/// Returns the object's metadata as the first answer gave it.
///
/// # Errors
/// As [`Storage::get`]; [`Error::Backend`] (driver `local file`) for local
/// file failures; a non-retryable backend error when the object changed
/// mid-download. On any error (and when the future is dropped) the
/// temporary file is removed and `dest` is untouched.
pub async fn download_to_file<S: Storage + ?Sized>(
    storage: &S,
    path: &StoragePath,
    dest: &Path,
    options: DownloadOptions,
    events: &(dyn Fn(DownloadEvent<'_>) + Send + Sync),
) -> Result<ObjectMeta> {
    let range_size = options.range_size.max(1);
    // The first range also tells the size and the version.
    let first = storage
        .get(
            path,
            GetOptions::default().with_range(ByteRange::Bounded {
                start: 0,
                end: range_size,
            }),
        )
        .await;
    let first = match first {
        Ok(got) => got,
        // An empty object has no first byte to ask for.
        Err(Error::InvalidRange { size: 0, .. }) => {
            storage.get(path, GetOptions::default()).await?
        }
        Err(e) => return Err(e),
    };
    let meta = first.meta.clone();
    let size = meta.size;
    let (file, mut partial) = create_partial(dest)?;
    let file = Arc::new(file);
    events(DownloadEvent::Started {
        partial: &partial.path,
        size,
    });
    let progress = &|n: u64| events(DownloadEvent::Bytes(n));
    let etag = meta.etag.clone();
    let first_end = first.range.end;
    let ranges: Vec<(u64, u64)> = (first_end..size)
        .step_by(range_size as usize)
        .map(|start| (start, (start + range_size).min(size)))
        .collect();
    let first_job: futures::future::BoxFuture<'_, Result<()>> = {
        let file = file.clone();
        async move {
            let mut stream = first.stream;
            let mut at = first.range.start;
            let mut batch = Batch::new(file, at, options.sync);
            while let Some(chunk) = stream.try_next().await? {
                let n = chunk.len() as u64;
                batch.push(&chunk).await?;
                at += n;
                progress(n);
            }
            batch.flush().await?;
            if at != first.range.end {
                return Err(short(path, first.range.start, at, first.range.end));
            }
            Ok(())
        }
        .boxed()
    };
    // A few ranges in flight; a new one starts as one ends.
    let mut in_flight = futures::stream::FuturesUnordered::new();
    in_flight.push(first_job);
    let mut next = ranges.into_iter();
    loop {
        while in_flight.len() < options.concurrency.max(1) {
            let Some((start, end)) = next.next() else {
                break;
            };
            let want = Expect {
                start,
                end,
                size,
                etag: etag.clone(),
                writeback: options.sync,
            };
            in_flight.push(fetch_range(storage, path, want, file.clone(), progress));
        }
        match in_flight.next().await {
            Some(done) => done?,
            None => break,
        }
    }
    drop(in_flight);
    let file = Arc::try_unwrap(file).map_err(|_| {
        io(
            "finishing the download".into(),
            std::io::Error::other("a range writer is still running"),
        )
    })?;
    let sync = options.sync;
    let target = dest.to_path_buf();
    let from = partial.path.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if sync {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&from, &target)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(|e| io(format!("cannot move the download to {}", dest.display()), e))?;
    partial.done = true;
    Ok(meta)
}

/// What one range must deliver.
struct Expect {
    start: u64,
    end: u64,
    size: u64,
    etag: Option<String>,
    /// Start the writeback of written bytes ([`start_writeback`]).
    writeback: bool,
}

/// Reads one range into the file at its offset, checking it comes from
/// the version and object size the first answer named.
fn fetch_range<'a, S: Storage + ?Sized>(
    storage: &'a S,
    path: &'a StoragePath,
    want: Expect,
    file: Arc<std::fs::File>,
    progress: &'a (dyn Fn(u64) + Send + Sync),
) -> futures::future::BoxFuture<'a, Result<()>> {
    async move {
        let Expect {
            start,
            end,
            size,
            etag,
            writeback,
        } = want;
        let got = storage
            .get(
                path,
                GetOptions::default().with_range(ByteRange::Bounded { start, end }),
            )
            .await?;
        if got.meta.etag != etag || got.meta.size != size {
            return Err(changed(path, &etag, &got.meta.etag));
        }
        if got.range != (start..end) {
            return Err(short(path, start, got.range.start, end));
        }
        let mut stream = got.stream;
        let mut at = start;
        let mut batch = Batch::new(file, at, writeback);
        while let Some(chunk) = stream.try_next().await? {
            let n = chunk.len() as u64;
            if at + n > end {
                return Err(short(path, start, at + n, end));
            }
            batch.push(&chunk).await?;
            at += n;
            progress(n);
        }
        batch.flush().await?;
        if at != end {
            return Err(short(path, start, at, end));
        }
        Ok(())
    }
    .boxed()
}

/// The error of a range that did not deliver what it covers.
fn short(path: &StoragePath, start: u64, got: u64, end: u64) -> Error {
    Error::Backend {
        driver: "download",
        retryable: true,
        message: format!(
            "downloading {path}: the range {start}-{end} delivered up to byte {got}, not to {end}"
        ),
        operation: None,
        source: None,
    }
}
