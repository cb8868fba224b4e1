//! Cleanup: stale resumable uploads and orphaned multipart uploads (safe
//! to run from several processes at once).

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use stowage_core::upload::{self, CleanupReport};
use stowage_core::{Error, Result};

use crate::error::from_sdk;
use crate::listing::next_page_marker;
use crate::reads::to_chrono;
use crate::S3Storage;

impl S3Storage {
    /// Removes chunked uploads untouched for `older_than` and aborts
    /// multipart uploads under the root started longer ago than that
    /// (those a killed process left behind; they cost money until aborted).
    pub(crate) async fn cleanup(&self, older_than: Duration) -> Result<CleanupReport> {
        let mut report = upload::cleanup_chunk_objects(self, older_than).await?;
        let cutoff: chrono::DateTime<Utc> = upload::cutoff_for(older_than);
        let prefix = self.list_prefix(None);
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        // Markers seen, so that a server repeating one ends the cleanup with
        // an error instead of spinning forever.
        let mut seen = HashSet::new();
        let mut listed = 0u64;
        loop {
            let page = self
                .retrying("ListMultipartUploads", &prefix, || {
                    self.client
                        .list_multipart_uploads()
                        .bucket(self.bucket())
                        .prefix(&prefix)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send()
                })
                .await
                .map_err(|e| from_sdk(e, self.op("ListMultipartUploads", &prefix), &prefix))?;
            listed += page.uploads().len() as u64;
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let stale = to_chrono(u.initiated()).is_some_and(|t| t < cutoff);
                if !stale {
                    continue;
                }
                match self
                    .retrying("AbortMultipartUpload", key, || {
                        self.client
                            .abort_multipart_upload()
                            .bucket(self.bucket())
                            .key(key)
                            .upload_id(id)
                            .send()
                    })
                    .await
                {
                    Ok(_) => report.multipart_aborted += 1,
                    Err(e) => match from_sdk(e, self.op("AbortMultipartUpload", key), key) {
                        Error::NotFound { .. } => {}
                        other => return Err(other),
                    },
                }
            }
            let next_key = page.next_key_marker().filter(|m| !m.is_empty());
            let next_id = page.next_upload_id_marker().filter(|m| !m.is_empty());
            // Both markers together say where the next page starts.
            let marker = (next_key.is_some() || next_id.is_some()).then(|| {
                format!(
                    "key-marker={} upload-id-marker={}",
                    next_key.unwrap_or(""),
                    next_id.unwrap_or("")
                )
            });
            let what = format!("s3://{}/{}", self.bucket(), prefix);
            if next_page_marker(
                "ListMultipartUploads",
                &what,
                page.is_truncated(),
                marker,
                &mut seen,
                listed,
            )?
            .is_none()
            {
                return Ok(report);
            }
            key_marker = next_key.map(str::to_string);
            id_marker = next_id.map(str::to_string);
        }
    }
}
