//! Blob reads: `HEAD` and `GET` by digest, with `Range`, or a redirect to
//! the driver's direct download URL; `DELETE` of a repository's link.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use stowage::{ByteRange, DownloadUrlOptions, ErrorKind, GetOptions, ObjectMeta};

use super::{empty, location, DIGEST_HEADER};
use crate::digest::Digest;
use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::layout;
use crate::registry::Registry;

impl Registry {
    /// Whether `repo` may serve the blob: its layer link exists. A missing
    /// link is `BLOB_UNKNOWN`; a storage failure stays a storage failure.
    async fn check_link(&self, repo: &str, digest: &Digest) -> RegistryResult<()> {
        match self.storage.stat(&layout::layer_link(repo, digest)).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(RegistryError::new(
                ErrorCode::BlobUnknown,
                format!("blob {digest} is unknown to {repo}"),
            )),
            Err(e) => Err(RegistryError::storage(e, ErrorCode::BlobUnknown)),
        }
    }

    /// The blob's metadata, if `repo` may serve it. The link and the blob
    /// are looked up at the same time: one round trip to storage, not two.
    pub(crate) async fn linked_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> RegistryResult<ObjectMeta> {
        let blob = async {
            self.storage
                .stat(&layout::blob(digest))
                .await
                .map_err(|e| RegistryError::storage(e, ErrorCode::BlobUnknown))
        };
        self.with_link(repo, digest, blob).await
    }

    /// Runs `lookup` of a blob alongside the check of `repo`'s link to it,
    /// and lets the link decide. A missing link answers at once and drops
    /// the lookup (closing an S3 response already on its way), so a
    /// repository without the blob learns nothing of it, not even from how
    /// long the answer took; otherwise the lookup's own result is returned.
    async fn with_link<T>(
        &self,
        repo: &str,
        digest: &Digest,
        lookup: impl std::future::Future<Output = RegistryResult<T>>,
    ) -> RegistryResult<T> {
        let link = self.check_link(repo, digest);
        tokio::pin!(link, lookup);
        tokio::select! {
            biased;
            checked = &mut link => {
                checked?;
                lookup.await
            }
            found = &mut lookup => {
                link.await?;
                found
            }
        }
    }

    /// `DELETE /v2/<name>/blobs/<digest>` (only with
    /// [`Registry::with_deletes`]): removes the repository's link to the
    /// blob, 202; the bytes are shared by every repository and stay until a
    /// garbage collection finds no manifest refers to them. A repository
    /// without the link: 404 `BLOB_UNKNOWN`.
    pub(crate) async fn delete_blob(&self, repo: &str, digest: &Digest) -> RegistryResult {
        self.check_link(repo, digest).await?;
        self.storage
            .delete(&layout::layer_link(repo, digest))
            .await
            .map_err(|e| RegistryError::storage(e, ErrorCode::BlobUnknown))?;
        Ok(empty(
            StatusCode::ACCEPTED,
            &[(DIGEST_HEADER, digest.to_string())],
        ))
    }

    /// `HEAD /v2/<name>/blobs/<digest>`.
    pub(crate) async fn head_blob(&self, repo: &str, digest: &Digest) -> RegistryResult {
        let meta = self.linked_blob(repo, digest).await?;
        let mut response = empty(StatusCode::OK, &[(DIGEST_HEADER, digest.to_string())]);
        let h = response.headers_mut();
        h.insert(CONTENT_LENGTH, HeaderValue::from(meta.size));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        Ok(response)
    }

    /// `GET /v2/<name>/blobs/<digest>`: a 307 to the driver's direct URL
    /// (S3 presigned, CloudFront signed) when it gives one, else the bytes,
    /// streamed, honouring `Range`.
    pub(crate) async fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
        headers: &HeaderMap,
        client_ip: Option<IpAddr>,
    ) -> RegistryResult {
        let path = layout::blob(digest);
        let range = match headers.get(RANGE).and_then(|v| v.to_str().ok()) {
            Some(text) => ByteRange::from_http_header(text)
                .map_err(|why| RegistryError::new(ErrorCode::RangeInvalid, why))?,
            None => None,
        };
        // Whether the link was checked already, on the way to a redirect.
        let mut linked = false;
        if self.redirect && self.storage.capabilities().direct_download {
            self.linked_blob(repo, digest).await?;
            linked = true;
            let mut options = DownloadUrlOptions::default()
                .with_namespace(repo.split('/').next().unwrap_or(repo))
                .with_expires_in(self.url_lifetime);
            if let Some(ip) = client_ip {
                options = options.with_client_ip(ip);
            }
            match self.storage.download_url(&path, &options).await {
                Ok(Some(url)) => {
                    if let Some(f) = &url.fallback {
                        tracing::debug!(cause = f.cause, "direct URL is a fallback");
                    }
                    return Ok(empty(
                        StatusCode::TEMPORARY_REDIRECT,
                        &[location(url.url), (DIGEST_HEADER, digest.to_string())],
                    ));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e.chain(), "no direct URL; serving the bytes");
                }
            }
        }
        let mut get = GetOptions::default();
        if let Some(r) = range {
            get = get.with_range(r);
        }
        // The link check and the read go out together, so the first bytes
        // arrive one round trip sooner. A missing link wins over whatever
        // the read said (a range error would tell another repository's
        // blob size).
        let read = async {
            self.storage.get(&path, get).await.map_err(|e| match e {
                stowage::Error::InvalidRange { size, .. } => {
                    RegistryError::new(ErrorCode::RangeInvalid, e.to_string())
                        .with_header(CONTENT_RANGE, format!("bytes */{size}"))
                }
                other => RegistryError::storage(other, ErrorCode::BlobUnknown),
            })
        };
        let result = if linked {
            read.await?
        } else {
            self.with_link(repo, digest, read).await?
        };
        let size = result.meta.size;
        let served = result.range.clone();
        let mut response = Response::new(Body::from_stream(result.stream));
        let h = response.headers_mut();
        h.insert(
            CONTENT_LENGTH,
            HeaderValue::from(served.end.saturating_sub(served.start)),
        );
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
            h.insert(DIGEST_HEADER, v);
        }
        // `bytes=0-` of an empty blob is the whole of it: a 200, as a 206
        // cannot name an empty range (`bytes 0-0/0` would claim a byte).
        if range.is_some() && served.start < served.end {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let value = format!(
                "bytes {}-{}/{}",
                served.start,
                served.end.saturating_sub(1),
                size
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(CONTENT_RANGE, v);
            }
        }
        Ok(response)
    }
}
