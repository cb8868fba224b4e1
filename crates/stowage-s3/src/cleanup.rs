//! Cleanup: stale chunked uploads and orphaned multipart uploads, one
//! process at a time, touching only what is the driver's own.
//!
//! - Scope. With a root, every multipart upload under `ROOT/`. With an
//!   empty root the driver shares the bucket's top level with whatever else
//!   writes there, and nothing in a multipart upload's listing (key, id,
//!   initiator, owner, storage class, initiation time) tells the driver's
//!   own uploads apart: metadata set by CreateMultipartUpload is not
//!   listed. So it aborts only uploads under `_uploads/`, the temporary
//!   area core reserves; orphans of final objects (a killed process's
//!   multipart write of a blob) are left to a bucket lifecycle rule
//!   (`AbortIncompleteMultipartUpload`), or a root avoids the question.
//! - Age. An upload is stale when its last activity is older than the
//!   threshold: the newest part's `LastModified` (ListParts), or its
//!   initiation when it has no part. Only uploads initiated before the
//!   cutoff are asked about. Credentials without
//!   `s3:ListMultipartUploadParts` make the round fall back to the
//!   initiation time (with a warning).
//! - Failures. A failed delete, abort or part listing is logged at warn,
//!   counted in [`CleanupReport::failures`] and left for the next round;
//!   the round goes on. Only a failed listing of the uploads ends it with
//!   an error.
//! - One round at a time. A round first takes a lease, the object
//!   `ROOT/_uploads/.cleanup-lease` (`{"holder", "expires_at"}`), with a
//!   conditional PUT (`If-None-Match: *` for a new lease, `If-Match: ETAG`
//!   to replace an expired one), reads it back and runs only when it holds
//!   it; otherwise it reports [`CleanupReport::skipped_lease_held`] and does
//!   nothing. The read-back makes the lease work on servers that ignore
//!   the conditions (Garage) except when two rounds interleave exactly, and
//!   even then both rounds are safe: every delete and abort is idempotent.
//!   The lease lasts ten minutes, is renewed while a long round goes on,
//!   and is deleted (`If-Match`) at the end; a process that dies holding
//!   it holds it until it expires.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use stowage_core::upload::{self, CleanupReport, UPLOADS_AREA};
use stowage_core::{Error, GetOptions, Result, Storage, StoragePath};

use crate::error::from_sdk;
use crate::listing::next_page_marker;
use crate::reads::to_chrono;
use crate::writes::{body_md5, send_body};
use crate::S3Storage;

/// The lease object, below the root.
const LEASE_PATH: &str = "_uploads/.cleanup-lease";

/// How long a lease holds unless renewed. A round renews it once less than
/// half is left.
const LEASE_SECONDS: i64 = 600;

impl S3Storage {
    /// Takes the cleanup lease, then removes chunked uploads untouched for
    /// `older_than` and aborts the driver's multipart uploads without
    /// activity for that long (those a killed process left behind; they
    /// cost money until aborted). See the module docs for what is touched.
    pub(crate) async fn cleanup(&self, older_than: Duration) -> Result<CleanupReport> {
        let Some(mut lease) = self.take_lease().await? else {
            tracing::debug!(bucket = %self.bucket(), "another process holds the cleanup lease; skipping this round");
            return Ok(CleanupReport::skipped());
        };
        let result = self.cleanup_round(older_than, &mut lease).await;
        self.release_lease(lease).await;
        result
    }

    /// One round, under `lease`.
    async fn cleanup_round(
        &self,
        older_than: Duration,
        lease: &mut Lease,
    ) -> Result<CleanupReport> {
        let mut report = upload::cleanup_chunk_objects(self, older_than).await?;
        let cutoff = upload::cutoff_for(older_than);
        let prefix = self.cleanup_scope();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        // Markers seen, so that a server repeating one ends the cleanup with
        // an error instead of spinning forever.
        let mut seen = HashSet::new();
        let mut listed = 0u64;
        let mut parts_denied = false;
        loop {
            if !self.keep_lease(lease).await {
                tracing::warn!(bucket = %self.bucket(), "another process took the cleanup lease over; this round stops");
                return Ok(report);
            }
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
                if self.path_of(key).is_none() {
                    continue;
                }
                // Started after the cutoff: active whatever its parts say.
                let Some(initiated) = to_chrono(u.initiated()).filter(|t| *t < cutoff) else {
                    continue;
                };
                let last_part = match self.last_part_written(key, id, cutoff).await {
                    Ok(t) => t,
                    // Completed or aborted meanwhile.
                    Err(Error::NotFound { .. }) => continue,
                    Err(e @ Error::PermissionDenied { .. }) => {
                        if !parts_denied {
                            parts_denied = true;
                            tracing::warn!(error = %e.chain(), "ListParts is denied (s3:ListMultipartUploadParts): multipart uploads are aged by their initiation this round");
                        }
                        None
                    }
                    Err(e) => {
                        report.failures += 1;
                        tracing::warn!(key, error = %e.chain(), "listing the parts of a multipart upload failed; the next cleanup tries again");
                        continue;
                    }
                };
                if last_part.is_some_and(|t| t >= cutoff) {
                    report.multipart_kept_active += 1;
                    continue;
                }
                tracing::debug!(key, %initiated, ?last_part, "aborting a stale multipart upload");
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
                        other => {
                            report.failures += 1;
                            tracing::warn!(key, error = %other.chain(), "aborting a stale multipart upload failed; the next cleanup tries again");
                        }
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

    /// The key prefix whose multipart uploads are the driver's: `ROOT/`,
    /// or `_uploads/` with an empty root.
    fn cleanup_scope(&self) -> String {
        if self.config.root.is_empty() {
            format!("{UPLOADS_AREA}/")
        } else {
            self.list_prefix(None)
        }
    }

    /// When the newest part of upload `id` of `key` was written (`None`
    /// when it has no part, or the server gives no times). Stops paging at
    /// the first part written at or after `cutoff`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the upload is gone; other ListParts
    /// failures.
    async fn last_part_written(
        &self,
        key: &str,
        id: &str,
        cutoff: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let mut newest: Option<DateTime<Utc>> = None;
        let mut marker: Option<String> = None;
        let mut seen = HashSet::new();
        let mut listed = 0u64;
        loop {
            let page = self
                .retrying("ListParts", key, || {
                    self.client
                        .list_parts()
                        .bucket(self.bucket())
                        .key(key)
                        .upload_id(id)
                        .set_part_number_marker(marker.clone())
                        .send()
                })
                .await
                .map_err(|e| from_sdk(e, self.op("ListParts", key), key))?;
            listed += page.parts().len() as u64;
            newest = page
                .parts()
                .iter()
                .filter_map(|p| to_chrono(p.last_modified()))
                .chain(newest)
                .max();
            if newest.is_some_and(|t| t >= cutoff) {
                return Ok(newest);
            }
            let what = format!("s3://{}/{key} (upload {id})", self.bucket());
            match next_page_marker(
                "ListParts",
                &what,
                page.is_truncated(),
                page.next_part_number_marker().map(str::to_string),
                &mut seen,
                listed,
            )? {
                Some(next) => marker = Some(next),
                None => return Ok(newest),
            }
        }
    }

    /// Takes the cleanup lease for this round; `None` when another process
    /// holds it.
    ///
    /// # Errors
    /// Reading or writing the lease object failed.
    async fn take_lease(&self) -> Result<Option<Lease>> {
        let holder = format!("{:032x}", rand::random::<u128>());
        let now = Utc::now();
        let condition = match self.read_lease().await? {
            None => Condition::Absent,
            Some(current) if current.held_by_other(&holder, now) => return Ok(None),
            // Expired, or not a lease this build can read: replaced.
            Some(current) => Condition::Matches(current.etag),
        };
        let expires_at = now + TimeDelta::seconds(LEASE_SECONDS);
        self.write_lease(&holder, expires_at, condition).await?;
        self.confirm_lease(holder, expires_at).await
    }

    /// Reads the lease back: the lease when it names `holder`.
    async fn confirm_lease(
        &self,
        holder: String,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        Ok(match self.read_lease().await? {
            Some(record) if record.holder.as_deref() == Some(holder.as_str()) => Some(Lease {
                holder,
                etag: record.etag,
                expires_at,
                lost: false,
            }),
            _ => None,
        })
    }

    /// Renews `lease` when less than half of it is left. `false` when
    /// another process holds it now; a renewal that fails otherwise is
    /// logged and the round goes on (two rounds at once are safe, only
    /// wasteful).
    async fn keep_lease(&self, lease: &mut Lease) -> bool {
        let now = Utc::now();
        if lease.expires_at - now > TimeDelta::seconds(LEASE_SECONDS / 2) {
            return true;
        }
        let expires_at = now + TimeDelta::seconds(LEASE_SECONDS);
        let renewed = match self
            .write_lease(
                &lease.holder,
                expires_at,
                Condition::Matches(lease.etag.clone()),
            )
            .await
        {
            Ok(()) => self.confirm_lease(lease.holder.clone(), expires_at).await,
            Err(e) => Err(e),
        };
        match renewed {
            Ok(Some(new)) => {
                *lease = new;
                true
            }
            Ok(None) => {
                lease.lost = true;
                false
            }
            Err(e) => {
                tracing::warn!(error = %e.chain(), "renewing the cleanup lease failed; the round goes on");
                true
            }
        }
    }

    /// The lease object as it is now; `None` when there is none.
    ///
    /// # Errors
    /// Reading it failed.
    async fn read_lease(&self) -> Result<Option<LeaseRecord>> {
        let got = match self.get(&lease_path(), GetOptions::default()).await {
            Ok(got) => got,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let etag = got.meta.etag.clone();
        let body = got.bytes().await?;
        Ok(Some(LeaseRecord::parse(&body, etag)))
    }

    /// Writes a lease of `holder` until `expires_at` under `condition`. A
    /// failed condition (412, or 409 for a write racing another) is not an
    /// error: the read-back tells who holds the lease. A server that
    /// refuses conditional writes (501) gets an unconditional one.
    ///
    /// # Errors
    /// The PutObject failed otherwise.
    async fn write_lease(
        &self,
        holder: &str,
        expires_at: DateTime<Utc>,
        condition: Condition,
    ) -> Result<()> {
        let key = self.key_of(LEASE_PATH);
        let body = Bytes::from(
            serde_json::json!({"holder": holder, "expires_at": expires_at.to_rfc3339()})
                .to_string(),
        );
        let size = body.len() as u64;
        let md5 = body_md5(&self.config, &body).await;
        let (mut if_none_match, mut if_match) = match condition {
            Condition::Absent => (Some("*".to_string()), None),
            Condition::Matches(etag) => (None, etag),
        };
        loop {
            let sent = self
                .retrying("PutObject", &key, || {
                    let request = self
                        .client
                        .put_object()
                        .bucket(self.bucket())
                        .key(&key)
                        .content_length(size as i64)
                        .content_type("application/json")
                        .set_content_md5(md5.clone())
                        .set_if_none_match(if_none_match.clone())
                        .set_if_match(if_match.clone())
                        .body(SdkBody::from(body.clone()));
                    send_body!(self, self.with_write_settings_put(request), size)
                })
                .await;
            let err = match sent {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if matches!(status_of(&err), Some(409 | 412)) {
                // Ceph RGW 16 compares If-Match with the ETag without its
                // quotes: a quoted one it refuses even when it matches.
                if let Some(quoted) = if_match.as_deref().filter(|e| e.starts_with('"')) {
                    if_match = Some(quoted.trim_matches('"').to_string());
                    continue;
                }
                return Ok(());
            }
            let conditional = if_none_match.is_some() || if_match.is_some();
            if !(conditional && not_implemented(&err)) {
                return Err(from_sdk(err, self.op("PutObject", &key), LEASE_PATH));
            }
            tracing::debug!("the server refuses conditional PutObject; writing the cleanup lease unconditionally");
            if_none_match = None;
            if_match = None;
        }
    }

    /// Deletes the lease if it is still `lease`'s (`If-Match`; a server
    /// that refuses conditional deletes gets a read-back, then a plain
    /// delete). A failure is logged: the lease then lapses by itself.
    async fn release_lease(&self, lease: Lease) {
        if lease.lost {
            return;
        }
        let key = self.key_of(LEASE_PATH);
        let conditional = self
            .retrying("DeleteObject", &key, || {
                self.client
                    .delete_object()
                    .bucket(self.bucket())
                    .key(&key)
                    .set_if_match(lease.etag.clone())
                    .send()
            })
            .await;
        let err = match conditional {
            Ok(_) => return,
            Err(e) => e,
        };
        // Gone: nothing of ours to remove.
        if status_of(&err) == Some(404) {
            return;
        }
        // A refused condition (another process's lease now, or a server
        // that compares ETags without quotes, as Ceph RGW 16 does) or none
        // supported: read back, delete only a lease still ours.
        let failed = if matches!(status_of(&err), Some(409 | 412)) || not_implemented(&err) {
            match self.read_lease().await {
                Ok(Some(r)) if r.holder.as_deref() == Some(lease.holder.as_str()) => self
                    .retrying("DeleteObject", &key, || {
                        self.client
                            .delete_object()
                            .bucket(self.bucket())
                            .key(&key)
                            .send()
                    })
                    .await
                    .err()
                    .map(|e| from_sdk(e, self.op("DeleteObject", &key), LEASE_PATH)),
                Ok(_) => None,
                Err(e) => Some(e),
            }
        } else {
            Some(from_sdk(err, self.op("DeleteObject", &key), LEASE_PATH))
        };
        if let Some(e) = failed {
            tracing::warn!(error = %e.chain(), expires_at = %lease.expires_at, "releasing the cleanup lease failed; it lapses by itself");
        }
    }
}

/// The lease object's path.
fn lease_path() -> StoragePath {
    StoragePath::parse(LEASE_PATH).expect("a valid path")
}

/// The HTTP status of a failed request, when a response came.
fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Whether the server said it does not implement what the request asked
/// (a conditional header it does not support).
fn not_implemented<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status_of(err) == Some(501) || err.code() == Some("NotImplemented")
}

/// The condition a lease write carries.
#[derive(Debug)]
enum Condition {
    /// There is no lease object (`If-None-Match: *`).
    Absent,
    /// The lease object has this ETag (`If-Match`; none: unconditional).
    Matches(Option<String>),
}

/// The lease a round holds.
#[derive(Debug)]
struct Lease {
    /// The round's random id, written into the lease.
    holder: String,
    /// The lease object's ETag as last read back.
    etag: Option<String>,
    /// When the lease runs out unless renewed.
    expires_at: DateTime<Utc>,
    /// Another process took the lease over: not ours to release.
    lost: bool,
}

/// A lease object as read.
#[derive(Debug, PartialEq, Eq)]
struct LeaseRecord {
    /// Its holder, `None` when the object is not a readable lease.
    holder: Option<String>,
    /// When it runs out, `None` when unreadable.
    expires_at: Option<DateTime<Utc>>,
    /// The object's ETag.
    etag: Option<String>,
}

impl LeaseRecord {
    /// The record in `body` (JSON `{"holder", "expires_at"}`); anything
    /// else reads as a record without holder, which counts as expired.
    fn parse(body: &[u8], etag: Option<String>) -> Self {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        Self {
            holder: json["holder"].as_str().map(str::to_string),
            expires_at: json["expires_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            etag,
        }
    }

    /// Whether a process other than `holder` holds this lease at `now`.
    fn held_by_other(&self, holder: &str, now: DateTime<Utc>) -> bool {
        self.holder.as_deref().is_some_and(|h| h != holder)
            && self.expires_at.is_some_and(|t| t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::config::Secret;
    use stowage_core::UploadState;

    #[test]
    fn the_lease_lives_in_the_uploads_area_but_is_no_upload() {
        let path = lease_path();
        assert_eq!(path.segments().next(), Some(UPLOADS_AREA));
        // Not an upload id: core's cleanup of chunk objects passes it by.
        let name = path.segments().nth(1).unwrap().to_string();
        assert_ne!(name.len(), UploadState::new().id.len());
    }

    #[test]
    fn lease_records_are_read_leniently() {
        let now = Utc::now();
        let later = (now + TimeDelta::seconds(60)).to_rfc3339();
        let body = format!(r#"{{"holder":"a","expires_at":"{later}"}}"#);
        let r = LeaseRecord::parse(body.as_bytes(), Some("\"e\"".into()));
        assert_eq!(r.holder.as_deref(), Some("a"));
        assert_eq!(r.etag.as_deref(), Some("\"e\""));
        assert!(r.held_by_other("b", now), "another holder, not expired");
        assert!(!r.held_by_other("a", now), "our own");
        assert!(
            !r.held_by_other("b", now + TimeDelta::seconds(120)),
            "expired"
        );
        for garbage in [&b"not json"[..], b"{}", br#"{"holder":"a"}"#, b""] {
            let r = LeaseRecord::parse(garbage, None);
            assert!(!r.held_by_other("b", now), "{garbage:?} counts as expired");
        }
    }

    #[tokio::test]
    async fn the_scope_is_the_root_or_only_the_uploads_area() {
        let config = crate::S3Config::new("registry-bucket")
            .with_region("us-east-1")
            .with_static_keys("AKIDEXAMPLE", Secret::new("not-a-real-secret"));
        let rooted = S3Storage::new(config.clone().with_root("registry"))
            .await
            .unwrap();
        assert_eq!(rooted.cleanup_scope(), "registry/");
        let bare = S3Storage::new(config).await.unwrap();
        assert_eq!(bare.cleanup_scope(), "_uploads/");
    }
}
