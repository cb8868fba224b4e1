//! Blob uploads: start (`POST`, monolithic with `?digest=`, cross-repository
//! mount with `?mount=&from=`), chunks (`PATCH` with `Content-Range`),
//! finish (`PUT ?digest=`), status (`GET`), cancel (`DELETE`). The upload's
//! state is the trait's serializable `UploadState`, kept in the upload store
//! between requests.

use std::pin::Pin;

use axum::body::Body;
use axum::http::header::{CONTENT_RANGE, RANGE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use stowage::{CompleteOptions, PutOptions, Sha256Digest, WriteStream};

use super::{body_stream, empty, location, upload_range, DIGEST_HEADER, UPLOAD_UUID};
use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::layout;
use crate::names::parse_digest;
use crate::registry::Registry;
use crate::upload_store::UploadRecord;

fn upload_url(repo: &str, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn blob_url(repo: &str, digest: &Sha256Digest) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

/// The body as a stream, or `None` when it is empty.
async fn non_empty(body: Body) -> Option<WriteStream<'static>> {
    let mut stream = body_stream(body).peekable();
    Pin::new(&mut stream).peek().await?;
    Some(stream.boxed())
}

impl Registry {
    async fn link_blob(&self, repo: &str, digest: &Sha256Digest) -> RegistryResult<()> {
        self.storage
            .put(
                &layout::layer_link(repo, digest),
                digest.to_string().into(),
                PutOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| RegistryError::storage(e, ErrorCode::BlobUnknown))
    }

    fn created(repo: &str, digest: &Sha256Digest) -> Response {
        empty(
            StatusCode::CREATED,
            &[
                location(blob_url(repo, digest)),
                (DIGEST_HEADER, digest.to_string()),
            ],
        )
    }

    fn accepted(repo: &str, record: &UploadRecord) -> Response {
        let id = &record.state.id;
        empty(
            StatusCode::ACCEPTED,
            &[
                location(upload_url(repo, id)),
                (RANGE, upload_range(record.state.size)),
                (UPLOAD_UUID, id.clone()),
            ],
        )
    }

    /// `POST /v2/<name>/blobs/uploads/`.
    pub(crate) async fn start_upload(
        &self,
        repo: &str,
        query: &[(String, String)],
        body: Body,
    ) -> RegistryResult {
        let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let (Some(mount), Some(from)) = (param("mount"), param("from")) {
            let digest = parse_digest(mount)?;
            if crate::names::check_repository(from).is_ok()
                && self.linked_blob(from, &digest).await.is_ok()
            {
                self.link_blob(repo, &digest).await?;
                return Ok(Self::created(repo, &digest));
            }
            // Not mountable: the client uploads instead (the spec's 202).
        }
        if let Some(d) = param("digest") {
            let digest = parse_digest(d)?;
            let data = non_empty(body)
                .await
                .unwrap_or_else(|| futures::stream::empty().boxed());
            self.storage
                .put_stream(
                    &layout::blob(&digest),
                    data,
                    PutOptions::default().with_expected_digest(digest),
                )
                .await
                .map_err(|e| RegistryError::storage(e, ErrorCode::BlobUploadInvalid))?;
            self.link_blob(repo, &digest).await?;
            return Ok(Self::created(repo, &digest));
        }
        let state = self
            .storage
            .start_upload()
            .await
            .map_err(|e| RegistryError::storage(e, ErrorCode::BlobUploadInvalid))?;
        let record = UploadRecord {
            repository: repo.to_string(),
            state,
        };
        self.uploads.put(&record).await?;
        Ok(Self::accepted(repo, &record))
    }

    /// `PATCH /v2/<name>/blobs/uploads/<id>`: appends a chunk. A chunk that
    /// does not start where the upload stands is refused with 416 and the
    /// `Range` received so far.
    pub(crate) async fn patch_upload(
        &self,
        repo: &str,
        id: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> RegistryResult {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let mut record = self.uploads.get(repo, id).await?;
        let size = record.state.size;
        let out_of_order = |start: u64| {
            RegistryError::new(
                ErrorCode::RangeInvalid,
                format!("chunk starts at {start}, but the upload has {size} bytes"),
            )
            .with_header(RANGE, upload_range(size))
            .with_header(axum::http::header::LOCATION, upload_url(repo, id))
            .with_header(UPLOAD_UUID, id.to_string())
        };
        if let Some(value) = headers.get(CONTENT_RANGE).and_then(|v| v.to_str().ok()) {
            let start = parse_content_range_start(value).ok_or_else(|| {
                RegistryError::new(
                    ErrorCode::RangeInvalid,
                    format!("bad Content-Range {value:?}: expected <start>-<end>"),
                )
            })?;
            if start != size {
                return Err(out_of_order(start));
            }
        }
        if let Some(data) = non_empty(body).await {
            record.state = self
                .storage
                .write_chunk(&record.state, size, data)
                .await
                .map_err(|e| match e {
                    stowage::Error::OffsetMismatch { got, .. } => out_of_order(got),
                    other => RegistryError::storage(other, ErrorCode::BlobUploadInvalid),
                })?;
            self.uploads.put(&record).await?;
        }
        Ok(Self::accepted(repo, &record))
    }

    /// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: the last chunk (if any),
    /// then assembly at the blob's path with the digest checked. A wrong
    /// digest stores nothing and cancels the upload.
    pub(crate) async fn finish_upload(
        &self,
        repo: &str,
        id: &str,
        query: &[(String, String)],
        body: Body,
    ) -> RegistryResult {
        let digest = query
            .iter()
            .find(|(n, _)| n == "digest")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                RegistryError::new(ErrorCode::DigestInvalid, "the digest parameter is missing")
            })?;
        let digest = parse_digest(digest)?;
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let mut record = self.uploads.get(repo, id).await?;
        if let Some(data) = non_empty(body).await {
            let size = record.state.size;
            record.state = self
                .storage
                .write_chunk(&record.state, size, data)
                .await
                .map_err(|e| RegistryError::storage(e, ErrorCode::BlobUploadInvalid))?;
            self.uploads.put(&record).await?;
        }
        let done = self
            .storage
            .complete_upload(
                &record.state,
                &layout::blob(&digest),
                CompleteOptions::default().with_expected_digest(digest),
            )
            .await;
        match done {
            Ok(_) => {}
            Err(e @ stowage::Error::DigestMismatch { .. }) => {
                let _ = self.storage.abort_upload(&record.state).await;
                self.uploads.remove(id).await?;
                return Err(RegistryError::new(ErrorCode::DigestInvalid, e.to_string()));
            }
            Err(e) => return Err(RegistryError::storage(e, ErrorCode::BlobUploadInvalid)),
        }
        self.link_blob(repo, &digest).await?;
        self.uploads.remove(id).await?;
        Ok(Self::created(repo, &digest))
    }

    /// `GET /v2/<name>/blobs/uploads/<id>`.
    pub(crate) async fn upload_status(&self, repo: &str, id: &str) -> RegistryResult {
        let record = self.uploads.get(repo, id).await?;
        let mut response = Self::accepted(repo, &record);
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    }

    /// `DELETE /v2/<name>/blobs/uploads/<id>`: removes every temporary byte.
    pub(crate) async fn cancel_upload(&self, repo: &str, id: &str) -> RegistryResult {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let record = self.uploads.get(repo, id).await?;
        self.storage
            .abort_upload(&record.state)
            .await
            .map_err(|e| RegistryError::storage(e, ErrorCode::BlobUploadUnknown))?;
        self.uploads.remove(id).await?;
        Ok(empty(StatusCode::NO_CONTENT, &[]))
    }

    /// Removes uploads untouched for longer than `older_than`: their records
    /// and their temporary data, then whatever the driver finds stale.
    pub async fn cleanup(&self, older_than: std::time::Duration) -> u64 {
        let mut removed = 0;
        for record in self.uploads.stale(older_than) {
            if self.storage.abort_upload(&record.state).await.is_ok()
                && self.uploads.remove(&record.state.id).await.is_ok()
            {
                removed += 1;
            }
        }
        match self.storage.cleanup_uploads(older_than).await {
            Ok(report) => tracing::info!(records = removed, ?report, "cleaned up stale uploads"),
            Err(e) => tracing::warn!(error = %e.chain(), "cleanup of stale uploads failed"),
        }
        removed
    }
}

/// The start of a `Content-Range: <start>-<end>` (also `bytes <start>-<end>/<size>`).
fn parse_content_range_start(value: &str) -> Option<u64> {
    let v = value.trim();
    let v = v.strip_prefix("bytes").map(str::trim_start).unwrap_or(v);
    let v = v.strip_prefix('=').unwrap_or(v).trim();
    let (start, _) = v.split_once('-')?;
    start.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_range_forms() {
        use super::parse_content_range_start as p;
        assert_eq!(p("0-99"), Some(0));
        assert_eq!(p("100-199"), Some(100));
        assert_eq!(p("bytes 100-199/*"), Some(100));
        assert_eq!(p("x"), None);
    }
}
