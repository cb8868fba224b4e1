//! The concurrency layer: at most N operations at once.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::forward::{Around, Call, Outcome, Wraps};
use crate::{Error, GetOptions, GetResult, ListStream, Result, Storage, StoragePath};

/// Lets at most `limit` operations run at once; the others wait for a
/// permit, in order. A call holds its permit until it returns; a `get`
/// and a `list` hold theirs until their stream ends, fails or is dropped,
/// since the backend is still working for them. `driver`, `capabilities`,
/// `metrics` and `validate` take none.
///
/// The permits are the layer's: every storage it wraps (and every clone's)
/// shares them, so one limit can cover several locations.
///
/// A caller that keeps a read stream open while it starts another
/// operation through the same layer (copying from one path to another by
/// hand, say) holds one permit while waiting for a second: with as many
/// such callers as permits, they wait for each other forever. Keep the
/// limit above the number of such callers, or finish the read first.
#[derive(Debug, Clone)]
pub struct ConcurrencyLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLayer {
    /// At most `limit` operations at once (at least 1).
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

impl super::Layer for ConcurrencyLayer {
    fn layer(&self, inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        Arc::new(ConcurrencyLimited {
            inner,
            permits: Arc::clone(&self.permits),
        })
    }
}

/// A storage behind a [`ConcurrencyLayer`].
#[derive(Debug)]
struct ConcurrencyLimited {
    inner: Arc<dyn Storage>,
    permits: Arc<Semaphore>,
}

/// The error for a closed semaphore (this layer never closes its own).
fn closed(driver: &'static str) -> Error {
    Error::Backend {
        driver,
        retryable: false,
        message: "the concurrency limit's permits are closed".into(),
        operation: None,
        source: None,
    }
}

impl ConcurrencyLimited {
    async fn permit(&self) -> Result<OwnedSemaphorePermit> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| closed(self.inner.driver()))
    }
}

impl Wraps for ConcurrencyLimited {
    type Inner = dyn Storage;
    fn wrapped(&self) -> &dyn Storage {
        &*self.inner
    }
}

impl Around for ConcurrencyLimited {
    fn around<'a, T: Outcome + 'a>(
        &'a self,
        _call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let _permit = self.permit().await?;
            run.await
        })
    }
}

/// What a listing being limited is at: waiting for its permit, or running
/// with it.
struct Listing<'a> {
    entries: ListStream<'a>,
    permits: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    driver: &'static str,
    failed: bool,
}

crate::forward_storage! {
    impl Storage for ConcurrencyLimited;
    forward [driver capabilities validate metrics];
    around [put_stream put stat delete delete_prefix list_page copy download_url upload_url
            start_upload write_chunk complete_upload abort_upload cleanup_uploads];

    /// Holds the permit until the stream ends, fails or is dropped.
    async fn get(&self, path: &StoragePath, options: GetOptions) -> Result<GetResult> {
        let permit = self.permit().await?;
        let mut got = self.inner.get(path, options).await?;
        got.stream = super::watch_bytes(got.stream, move |_, _| drop(permit));
        Ok(got)
    }

    /// Takes a permit when first polled and holds it until the listing
    /// ends or is dropped.
    fn list(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        let start = Listing {
            entries: self.inner.list(prefix),
            permits: Arc::clone(&self.permits),
            permit: None,
            driver: self.inner.driver(),
            failed: false,
        };
        futures::stream::unfold(start, |mut at| async move {
            if at.failed {
                return None;
            }
            if at.permit.is_none() {
                match Arc::clone(&at.permits).acquire_owned().await {
                    Ok(permit) => at.permit = Some(permit),
                    Err(_) => {
                        at.failed = true;
                        let err = closed(at.driver);
                        return Some((Err(err), at));
                    }
                }
            }
            let entry = at.entries.next().await?;
            Some((entry, at))
        })
        .fuse()
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::super::testing::{p, Memory};
    use super::super::LayerExt;
    use super::*;
    use crate::PutOptions;

    async fn stored() -> (Arc<dyn Storage>, ConcurrencyLayer) {
        let layer = ConcurrencyLayer::new(1);
        let storage = (Arc::new(Memory::default()) as Arc<dyn Storage>).layer(&layer);
        storage
            .put(
                &p("a"),
                Bytes::from_static(b"abcdef"),
                PutOptions::default(),
            )
            .await
            .unwrap();
        (storage, layer)
    }

    /// Whether a `stat` gets through within a moment.
    async fn stat_gets_through(storage: &Arc<dyn Storage>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), storage.stat(&p("a")))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_read_holds_its_permit_until_its_stream_is_dropped() {
        let (storage, layer) = stored().await;
        let mut got = storage.get(&p("a"), GetOptions::default()).await.unwrap();
        assert_eq!(layer.available(), 0);
        assert!(
            !stat_gets_through(&storage).await,
            "the read holds the only permit"
        );
        got.stream.next().await.unwrap().unwrap();
        assert!(!stat_gets_through(&storage).await, "still reading");
        drop(got);
        assert_eq!(layer.available(), 1);
        assert!(stat_gets_through(&storage).await);
    }

    #[tokio::test]
    async fn a_read_gives_its_permit_back_when_its_stream_ends() {
        let (storage, layer) = stored().await;
        let mut got = storage.get(&p("a"), GetOptions::default()).await.unwrap();
        while got.stream.next().await.is_some() {}
        assert_eq!(layer.available(), 1, "the stream ended, though not dropped");
        assert!(stat_gets_through(&storage).await);
    }

    #[tokio::test]
    async fn a_listing_holds_a_permit_from_its_first_poll_to_its_end() {
        let (storage, layer) = stored().await;
        let mut listing = storage.list(None);
        assert_eq!(layer.available(), 1, "not polled yet");
        listing.next().await.unwrap().unwrap();
        assert_eq!(layer.available(), 0);
        assert!(listing.next().await.is_none());
        assert_eq!(layer.available(), 1);
        assert!(stat_gets_through(&storage).await);
    }

    #[tokio::test]
    async fn calls_wait_for_each_other_and_all_finish() {
        let layer = ConcurrencyLayer::new(2);
        let storage = (Arc::new(Memory::default()) as Arc<dyn Storage>).layer(&layer);
        let storage = &storage;
        futures::future::try_join_all((0..20).map(|i| async move {
            storage
                .put(
                    &p(&format!("many/{i}")),
                    Bytes::from_static(b"x"),
                    PutOptions::default(),
                )
                .await
        }))
        .await
        .unwrap();
        assert_eq!(layer.available(), 2);
        assert_eq!(
            storage
                .list(Some(&p("many")))
                .collect::<Vec<_>>()
                .await
                .len(),
            20
        );
    }
}
