//! The registry's side of the garbage collection protocol (see
//! [`crate::gc`] and docs/registry.md, "Garbage collection"): what a
//! manifest `PUT` and a mount do before they rely on blobs that exist
//! already, so that a collection running at the same time either keeps
//! those blobs or the request fails; never a manifest that names a blob
//! the collection deleted.
//!
//! - A mount always writes a "used" marker for the blob (a new object
//!   under `_registry/gc/used/<digest>/`; its modification time says when),
//!   so a collection keeps the blob for its grace period, as it keeps a blob
//!   just uploaded.
//! - Then, and for a manifest `PUT` after its revision is written, the
//!   registry looks for recent collection records (`_registry/gc/runs/`).
//!   None: no collection deleted anything since the request checked its
//!   blobs, and every collection that starts later sees the revision (or
//!   the marker). One, or a request slower than [`gc::FAST_PATH_LIMIT`]:
//!   markers for the manifest and its blobs, then for each blob the
//!   collections' tombstones are awaited and its existence checked again.
//!   A collection that writes its tombstone after that finds the marker and
//!   keeps the blob; one whose tombstone was there has decided once it
//!   removes it, and the blob is then there or not.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use stowage::{PutOptions, StorageExt, StoragePath};

use super::{internal, list_options};
use crate::digest::Digest;
use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::gc;
use crate::layout;
use crate::registry::Registry;

/// Markers written, and blobs settled, at once.
const IN_FLIGHT: usize = 8;

fn failed(e: stowage::Error) -> RegistryError {
    // Never "unknown": the storage could not be asked.
    RegistryError::new(ErrorCode::Unknown, e.chain())
}

/// `duration` as a chrono duration (saturating).
fn delta(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

impl Registry {
    /// Whether a garbage collection wrote its record within
    /// [`gc::RUN_LINGER`] (running, or finished recently): requests that
    /// rely on existing blobs then take the careful path.
    pub(crate) async fn collection_recent(&self) -> RegistryResult<bool> {
        let page = self
            .storage
            .list_page(list_options(layout::gc_runs(), false, None, None))
            .await
            .map_err(failed)?;
        let since = Utc::now() - delta(gc::RUN_LINGER);
        Ok(page
            .objects
            .iter()
            .any(|record| record.last_modified.is_none_or(|at| at >= since)))
    }

    /// Writes a new "used" marker for each of `digests`; their paths, in
    /// the same order.
    pub(crate) async fn mark_used(&self, digests: &[Digest]) -> RegistryResult<Vec<StoragePath>> {
        // Owned items: closures over borrowed ones are not general enough
        // for the `Send` check of the handler's future.
        futures::stream::iter(digests.to_vec())
            .map(|digest| async move {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let marker = layout::gc_used_marker(digest, &id);
                self.storage
                    .put(&marker, digest.to_string().into(), PutOptions::default())
                    .await
                    .map(|_| marker)
            })
            .buffered(IN_FLIGHT)
            .try_collect()
            .await
            .map_err(failed)
    }

    /// For each digest (with the marker just written for it): waits until
    /// no collection is deciding about its blob, then checks the blob is
    /// still there. The digests whose blobs are gone.
    pub(crate) async fn settle(
        &self,
        digests: &[Digest],
        markers: &[StoragePath],
    ) -> RegistryResult<Vec<Digest>> {
        let pairs: Vec<(Digest, StoragePath)> = digests
            .iter()
            .cloned()
            .zip(markers.iter().cloned())
            .collect();
        let gone: Vec<Option<Digest>> = futures::stream::iter(pairs)
            .map(|(digest, marker)| async move {
                self.wait_for_sweeps(&digest, &marker).await?;
                let there = self
                    .storage
                    .exists(&layout::blob(digest))
                    .await
                    .map_err(failed)?;
                Ok::<_, RegistryError>((!there).then_some(digest))
            })
            .buffered(IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(gone.into_iter().flatten().collect())
    }

    /// What a manifest `PUT` does once its revision is written (`uses`: the
    /// manifest itself and the blobs it names, checked at `checked_at`):
    /// nothing more when no collection is recent; otherwise markers, then
    /// [`Registry::settle`]. The digests whose blobs are gone.
    pub(crate) async fn guard_manifest(
        &self,
        uses: &[Digest],
        checked_at: Instant,
    ) -> RegistryResult<Vec<Digest>> {
        if checked_at.elapsed() < gc::FAST_PATH_LIMIT && !self.collection_recent().await? {
            return Ok(Vec::new());
        }
        let markers = self.mark_used(uses).await?;
        self.settle(uses, &markers).await
    }

    /// What a mount does before it links `digest` (its source checked at
    /// `checked_at`): a marker, and when a collection is recent, the blob
    /// settled. Whether the blob is there to link.
    pub(crate) async fn guard_mount(
        &self,
        digest: &Digest,
        checked_at: Instant,
    ) -> RegistryResult<bool> {
        let uses = [*digest];
        let markers = self.mark_used(&uses).await?;
        if checked_at.elapsed() < gc::FAST_PATH_LIMIT && !self.collection_recent().await? {
            return Ok(true);
        }
        Ok(self.settle(&uses, &markers).await?.is_empty())
    }

    /// Waits until no live tombstone of a collection is left on the blob
    /// of `digest` (a tombstone older than [`gc::TOMBSTONE_DEAD`], by the
    /// storage's clock read from `marker`, belongs to a collection that
    /// gave up or died). Polls for at most [`gc::TOMBSTONE_WAIT`].
    ///
    /// # Errors
    /// Storage failures; a 500 when a live tombstone stays that long.
    async fn wait_for_sweeps(&self, digest: &Digest, marker: &StoragePath) -> RegistryResult<()> {
        let started = Instant::now();
        let mut marked_at: Option<DateTime<Utc>> = None;
        loop {
            let page = self
                .storage
                .list_page(list_options(layout::gc_sweeping(digest), false, None, None))
                .await
                .map_err(failed)?;
            if page.objects.is_empty() {
                return Ok(());
            }
            let marked = match marked_at {
                Some(at) => at,
                None => {
                    let at = match self.storage.stat(marker).await {
                        Ok(meta) => meta.last_modified.unwrap_or_else(Utc::now),
                        Err(_) => Utc::now(),
                    };
                    marked_at = Some(at);
                    at
                }
            };
            let now = marked + delta(started.elapsed());
            let live = page.objects.iter().any(|tombstone| {
                tombstone
                    .last_modified
                    .is_none_or(|at| now - at < delta(gc::TOMBSTONE_DEAD))
            });
            if !live {
                return Ok(());
            }
            if started.elapsed() >= gc::TOMBSTONE_WAIT {
                return Err(internal(format!(
                    "a garbage collection has been deciding about blob {digest} for more than {} s; \
                     the request can be retried",
                    gc::TOMBSTONE_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(gc::TOMBSTONE_POLL).await;
        }
    }
}
