//! Read-ahead of large reads: while the first answer's body delivers the
//! first range, the next `s3_read_ahead_ranges` ranges of
//! `s3_read_ahead_range_mb` are fetched beside it, each with its own ranged
//! GetObject pinned to the first answer's ETag (`If-Match`) and resumed
//! like any read (resume.rs). The caller still sees one stream, in order:
//! the first range from the first body, then each fetched range as it is
//! reached, while the fetch of the one after it starts.
//!
//! One connection to S3 carries about as much as the server sends per
//! request; several carry more. Memory is bounded: a read holds at most
//! (`s3_read_ahead_ranges` + 1) ranges, and all reads of the driver
//! together hold at most `s3_max_ranges_in_flight` ranges ahead. A read
//! that finds that budget spent reads its one stream, as without
//! read-ahead. A read whose object is replaced mid-way ends with an error
//! (412 on a pinned range), never with a mix of versions.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use stowage_core::{ByteStream, Result, StoragePath};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;

use crate::S3Storage;

/// The ranges being fetched ahead of the reader; aborted when the read is
/// dropped.
struct Ahead {
    storage: S3Storage,
    path: StoragePath,
    key: String,
    etag: String,
    /// Where the next range to fetch starts, and where the read ends.
    next: u64,
    end: u64,
    range: u64,
    /// Fetches in order of their ranges.
    fetches: VecDeque<JoinHandle<Result<Vec<Bytes>>>>,
    /// The read's share of the driver's range budget.
    _permits: OwnedSemaphorePermit,
}

impl Ahead {
    /// Starts the fetch of the next range, if any is left.
    fn start_next(&mut self) {
        if self.next >= self.end {
            return;
        }
        let start = self.next;
        let stop = (start + self.range).min(self.end);
        self.next = stop;
        self.fetches
            .push_back(tokio::spawn(crate::resume::fetch_range(
                self.storage.clone(),
                self.path.clone(),
                self.key.clone(),
                self.etag.clone(),
                start,
                stop,
            )));
    }

    /// The chunks of the next range, starting the fetch of one more.
    async fn next_range(&mut self) -> Option<Result<Vec<Bytes>>> {
        let fetch = self.fetches.pop_front()?;
        self.start_next();
        Some(match fetch.await {
            Ok(chunks) => chunks,
            Err(e) => Err(stowage_core::Error::Backend {
                driver: crate::error::DRIVER,
                retryable: true,
                message: format!(
                    "reading s3://{}/{}: a range read ahead stopped: {e}",
                    self.storage.bucket(),
                    self.key
                ),
                operation: None,
                source: None,
            }),
        })
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        for fetch in &self.fetches {
            fetch.abort();
        }
    }
}

impl S3Storage {
    /// `first` (the stream of the first answer, delivering `start..end`)
    /// with the ranges after its first `s3_read_ahead_range_mb` fetched
    /// ahead; `first` itself when read-ahead is off, the read is too short
    /// to gain from it, the answer had no ETag to pin the ranges to, or
    /// the driver's range budget is spent.
    pub(crate) fn read_ahead(
        &self,
        path: &StoragePath,
        key: String,
        etag: Option<&str>,
        start: u64,
        end: u64,
        first: ByteStream,
    ) -> ByteStream {
        let ranges = self.config.read_ahead_ranges;
        let range = self.config.read_ahead_range_size;
        let Some(etag) = etag else { return first };
        if ranges == 0 || range == 0 || end.saturating_sub(start) < 2 * range {
            return first;
        }
        let Ok(permits) = self
            .range_budget
            .clone()
            .try_acquire_many_owned(ranges as u32)
        else {
            return first;
        };
        let first_end = start + range;
        let mut ahead = Ahead {
            storage: self.clone(),
            path: path.clone(),
            key,
            etag: etag.to_string(),
            next: first_end,
            end,
            range,
            fetches: VecDeque::with_capacity(ranges),
            _permits: permits,
        };
        for _ in 0..ranges {
            ahead.start_next();
        }
        let head = take_bytes(first, range);
        let rest = stream::unfold(ahead, |mut ahead| async move {
            let chunks = ahead.next_range().await?;
            Some((chunks, ahead))
        })
        .map_ok(|chunks| stream::iter(chunks.into_iter().map(Ok)))
        .try_flatten();
        head.chain(rest).boxed()
    }
}

/// The first `limit` bytes of `stream`; the stream (and its connection)
/// is dropped once they are delivered.
fn take_bytes(stream: ByteStream, limit: u64) -> ByteStream {
    stream::unfold((Some(stream), limit), |(stream, left)| async move {
        let mut stream = stream?;
        if left == 0 {
            return None;
        }
        match stream.next().await? {
            Ok(mut chunk) => {
                if chunk.len() as u64 >= left {
                    chunk.truncate(left as usize);
                    Some((Ok(chunk), (None, 0)))
                } else {
                    let left = left - chunk.len() as u64;
                    Some((Ok(chunk), (Some(stream), left)))
                }
            }
            Err(e) => Some((Err(e), (None, 0))),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[usize]) -> ByteStream {
        let items: Vec<Result<Bytes>> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| Ok(Bytes::from(vec![i as u8; *n])))
            .collect();
        stream::iter(items).boxed()
    }

    #[tokio::test]
    async fn take_bytes_stops_at_the_limit_inside_a_chunk() {
        let got: Vec<Bytes> = take_bytes(chunks(&[3, 4, 5]), 9)
            .try_collect()
            .await
            .unwrap();
        let lens: Vec<usize> = got.iter().map(Bytes::len).collect();
        assert_eq!(lens, vec![3, 4, 2]);
        let got: Vec<Bytes> = take_bytes(chunks(&[3, 4]), 7).try_collect().await.unwrap();
        assert_eq!(got.iter().map(Bytes::len).sum::<usize>(), 7);
        let got: Vec<Bytes> = take_bytes(chunks(&[3, 4]), 3).try_collect().await.unwrap();
        assert_eq!(got.iter().map(Bytes::len).collect::<Vec<_>>(), vec![3]);
    }

    #[tokio::test]
    async fn take_bytes_passes_an_error_and_ends() {
        let items: Vec<Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"ab")),
            Err(stowage_core::Error::Unsupported {
                operation: "test",
                driver: "s3",
            }),
            Ok(Bytes::from_static(b"cd")),
        ];
        let mut s = take_bytes(stream::iter(items).boxed(), 10);
        assert_eq!(s.next().await.unwrap().unwrap(), Bytes::from_static(b"ab"));
        assert!(s.next().await.unwrap().is_err());
        assert!(s.next().await.is_none());
    }
}
