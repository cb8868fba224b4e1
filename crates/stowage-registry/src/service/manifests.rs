//! Manifests by tag or digest: `PUT` (referenced blobs and manifests must be
//! in the repository, except non-distributable layers), `GET`, `HEAD`,
//! `DELETE`. OCI and Docker v2 media types; sha256 or sha512 digests; a
//! manifest with a `subject` is recorded for the referrers API and answered
//! with `OCI-Subject`.

use std::time::Instant;

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use stowage::{ErrorKind, PutOptions, StorageExt, StoragePath};

use super::{empty, internal, location, DIGEST_HEADER};
use crate::digest::Digest;
use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::layout;
use crate::names::{is_tag, parse_digest};
use crate::registry::Registry;

/// Manifests larger than this are refused (the spec's suggested limit).
pub(crate) const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Referenced blobs looked up at once when a manifest is put.
const BLOB_CHECKS_IN_FLIGHT: usize = 8;

/// Tags read at once when a manifest is deleted.
const TAG_READS_IN_FLIGHT: usize = 16;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The `OCI-Subject` header: the subject of a manifest just put.
const SUBJECT_HEADER: HeaderName = HeaderName::from_static("oci-subject");

/// Whether a layer need not be in the registry: a non-distributable
/// ("foreign") layer, whose bytes live elsewhere and which clients fetch
/// from its `urls` (OCI `...layer.nondistributable.v1.tar[+gzip|+zstd]`,
/// Docker `...rootfs.foreign.diff.tar[.gzip]`), or any layer that carries
/// `urls`. The spec lets registries accept such manifests without the blobs.
fn is_foreign_layer(layer: &Value) -> bool {
    let media_type = layer.get("mediaType").and_then(Value::as_str).unwrap_or("");
    media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.foreign.")
        || layer
            .get("urls")
            .and_then(Value::as_array)
            .is_some_and(|urls| !urls.is_empty())
}

fn invalid(message: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorCode::ManifestInvalid, message)
}

fn unknown(repo: &str, reference: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is unknown to {repo}"),
    )
}

/// The media type of a manifest: the `Content-Type` sent, else its
/// `mediaType` field, else inferred (an OCI manifest may omit both).
fn media_type(header: Option<&str>, doc: &Value) -> Result<String, RegistryError> {
    let declared = doc.get("mediaType").and_then(Value::as_str);
    let inferred = if doc.get("manifests").is_some() {
        OCI_INDEX
    } else {
        OCI_MANIFEST
    };
    let header = header
        .map(|h| h.split(';').next().unwrap_or(h).trim())
        .filter(|h| !h.is_empty() && *h != "application/octet-stream");
    let chosen = header.or(declared).unwrap_or(inferred).to_string();
    if let (Some(h), Some(d)) = (header, declared) {
        if h != d {
            return Err(invalid(format!(
                "Content-Type {h} differs from the manifest's mediaType {d}"
            )));
        }
    }
    match chosen.as_str() {
        OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST => Ok(chosen),
        other => Err(invalid(format!(
            "media type {other} is not supported: {OCI_MANIFEST}, {OCI_INDEX}, \
             {DOCKER_MANIFEST} or {DOCKER_LIST}"
        ))),
    }
}

/// The digests a manifest refers to: blobs (config and layers, except
/// non-distributable ones) and, for an index, child manifests.
fn references(media_type: &str, doc: &Value) -> Result<(Vec<String>, Vec<String>), RegistryError> {
    let digests = |list: Option<&Value>, what: &str| -> Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        for item in list.and_then(Value::as_array).into_iter().flatten() {
            if what == "layers" && is_foreign_layer(item) {
                continue;
            }
            let d = item
                .get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("a {what} entry has no digest")))?;
            out.push(d.to_string());
        }
        Ok(out)
    };
    match media_type {
        OCI_INDEX | DOCKER_LIST => Ok((Vec::new(), digests(doc.get("manifests"), "manifests")?)),
        _ => {
            let config = doc
                .get("config")
                .ok_or_else(|| invalid("an image manifest needs a config"))?;
            let mut blobs = digests(Some(&Value::Array(vec![config.clone()])), "config")?;
            blobs.extend(digests(doc.get("layers"), "layers")?);
            Ok((blobs, Vec::new()))
        }
    }
}

impl Registry {
    /// The digest `reference` names in `repo` (a tag is looked up).
    async fn resolve(&self, repo: &str, reference: &str) -> RegistryResult<Digest> {
        if reference.contains(':') {
            return parse_digest(reference);
        }
        if !is_tag(reference) {
            return Err(RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("{reference:?} is neither a tag nor a digest"),
            ));
        }
        let text = self
            .storage
            .get_bytes(&layout::tag(repo, reference))
            .await
            .map_err(|e| match e {
                stowage::Error::NotFound { .. } => unknown(repo, reference),
                other => RegistryError::storage(other, ErrorCode::ManifestUnknown),
            })?;
        parse_digest(String::from_utf8_lossy(&text).trim())
    }

    /// `PUT /v2/<name>/manifests/<reference>`.
    pub(crate) async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> RegistryResult {
        let bytes = manifest_body(body).await?;
        // By tag, the manifest is known by its SHA-256; by digest, by the
        // digest named (sha256 or sha512), which must be its own.
        let (digest, tag) = if is_tag(reference) {
            (Digest::sha256_of(&bytes), Some(reference))
        } else {
            let named = parse_digest(reference)?;
            let actual = named.of_same_algorithm(&bytes);
            if named != actual {
                return Err(RegistryError::new(
                    ErrorCode::DigestInvalid,
                    format!("the manifest's digest is {actual}, not {named}"),
                ));
            }
            (named, None)
        };
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let media_type = media_type(content_type, &doc)?;
        crate::validation::check_manifest(&doc, &media_type, &self.manifest_urls)?;
        let (blobs, manifests) = references(&media_type, &doc)?;
        let subject = match doc.get("subject") {
            None | Some(Value::Null) => None,
            Some(s) => {
                let d = s
                    .get("digest")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("the subject has no digest"))?;
                Some(parse_digest(d)?)
            }
        };
        // The referenced blobs are checked a few at a time. A storage
        // failure wins over an unknown blob (the client is not told a blob
        // is missing when storage could not be asked); among unknown
        // blobs, the first in the manifest is named.
        let digests = blobs
            .iter()
            .map(|d| parse_digest(d))
            .collect::<RegistryResult<Vec<_>>>()?;
        // When the blobs were checked, for the garbage collection protocol.
        let checked_at = Instant::now();
        let checked: Vec<(Digest, RegistryResult<_>)> = futures::stream::iter(digests.clone())
            .map(|digest: Digest| async move {
                let checked = self.linked_blob(repo, &digest).await;
                (digest, checked)
            })
            .buffered(BLOB_CHECKS_IN_FLIGHT)
            .collect()
            .await;
        let mut unknown = None;
        for (digest, result) in checked {
            match result {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::BlobUnknown => {
                    unknown.get_or_insert(digest);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(digest) = unknown {
            return Err(RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("blob {digest} referenced by the manifest is unknown to {repo}"),
            ));
        }
        for d in manifests {
            let child = parse_digest(&d)?;
            if !self.exists(&layout::revision(repo, child)).await? {
                return Err(RegistryError::new(
                    ErrorCode::ManifestBlobUnknown,
                    format!("manifest {d} referenced by the index is unknown to {repo}"),
                ));
            }
        }
        let put = |path: StoragePath, data: Bytes| async move {
            self.storage
                .put(&path, data, PutOptions::default())
                .await
                .map_err(|e| RegistryError::storage(e, ErrorCode::ManifestInvalid))
        };
        let size = bytes.len();
        put(layout::blob(digest), bytes.clone()).await?;
        put(layout::revision(repo, digest), media_type.clone().into()).await?;
        // A garbage collection may have deleted a blob since it was checked
        // (see `usage`): the manifest's own bytes are written again; a
        // missing blob undoes the revision and fails the request.
        let mut uses = vec![digest];
        for d in digests {
            if !uses.contains(&d) {
                uses.push(d);
            }
        }
        let gone = self.guard_manifest(&uses, checked_at).await?;
        if gone.contains(&digest) {
            put(layout::blob(digest), bytes.clone()).await?;
        }
        if let Some(missing) = gone.into_iter().find(|d| *d != digest) {
            if let Err(e) = self.storage.delete(&layout::revision(repo, digest)).await {
                tracing::warn!(error = %e.chain(), "undoing the revision of a manifest whose blob is gone failed");
            }
            return Err(RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!(
                    "blob {missing} referenced by the manifest was removed by a garbage \
                     collection while the manifest was put; push the blob again"
                ),
            ));
        }
        if let Some(subject) = &subject {
            let descriptor = super::referrers::descriptor(&media_type, &digest, size, &doc);
            self.record_referrer(repo, subject, &digest, &descriptor)
                .await?;
        }
        if let Some(tag) = tag {
            put(layout::tag(repo, tag), digest.to_string().into()).await?;
        }
        let mut headers = vec![
            location(format!("/v2/{repo}/manifests/{digest}")),
            (DIGEST_HEADER, digest.to_string()),
        ];
        if let Some(subject) = subject {
            headers.push((SUBJECT_HEADER, subject.to_string()));
        }
        Ok(empty(StatusCode::CREATED, &headers))
    }

    /// The subject of manifest `digest`, read from its stored bytes (`None`
    /// when it has none, or is gone).
    async fn subject_of(&self, digest: &Digest) -> RegistryResult<Option<Digest>> {
        let bytes = match self.storage.get_bytes(&layout::blob(digest)).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RegistryError::storage(e, ErrorCode::ManifestUnknown)),
        };
        let subject = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|doc| {
                let d = doc.get("subject")?.get("digest")?.as_str()?.to_string();
                Digest::parse(&d).ok()
            });
        Ok(subject)
    }

    async fn exists(&self, path: &StoragePath) -> RegistryResult<bool> {
        self.storage
            .exists(path)
            .await
            .map_err(|e| RegistryError::storage(e, ErrorCode::ManifestUnknown))
    }

    /// `GET` / `HEAD /v2/<name>/manifests/<reference>`.
    pub(crate) async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        head: bool,
    ) -> RegistryResult {
        let digest = self.resolve(repo, reference).await?;
        let media_type = self
            .storage
            .get_bytes(&layout::revision(repo, digest))
            .await
            .map_err(|e| match e {
                stowage::Error::NotFound { .. } => unknown(repo, reference),
                other => RegistryError::storage(other, ErrorCode::ManifestUnknown),
            })?;
        let bytes = self
            .storage
            .get_bytes(&layout::blob(digest))
            .await
            .map_err(|e| RegistryError::storage(e, ErrorCode::ManifestUnknown))?;
        let mut response = Response::new(if head {
            Body::empty()
        } else {
            Body::from(bytes.clone())
        });
        let h = response.headers_mut();
        h.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_bytes(&media_type).map_err(|_| internal("bad stored media type"))?,
        );
        h.insert(
            DIGEST_HEADER,
            HeaderValue::from_str(&digest.to_string()).map_err(|_| internal("digest"))?,
        );
        Ok(response)
    }

    /// `DELETE /v2/<name>/manifests/<reference>` (only with
    /// [`Registry::with_deletes`]): a tag removes the tag only (OCI 1.1); a
    /// digest removes the manifest from the repository: its referrer
    /// record, every tag pointing at it, then its revision. The bytes stay
    /// until a garbage collection finds nothing refers to them.
    pub(crate) async fn delete_manifest(&self, repo: &str, reference: &str) -> RegistryResult {
        let delete = |path: StoragePath| async move {
            self.storage
                .delete(&path)
                .await
                .map_err(|e| RegistryError::storage(e, ErrorCode::ManifestUnknown))
        };
        if is_tag(reference) {
            let path = layout::tag(repo, reference);
            if !self.exists(&path).await? {
                return Err(unknown(repo, reference));
            }
            delete(path).await?;
            return Ok(empty(StatusCode::ACCEPTED, &[]));
        }
        let digest = parse_digest(reference)?;
        let revision = layout::revision(repo, digest);
        if !self.exists(&revision).await? {
            return Err(unknown(repo, reference));
        }
        let tags: Vec<StoragePath> = self
            .storage
            .list(Some(&layout::tags(repo)))
            .map_ok(|m| m.path)
            .try_collect()
            .await
            .map_err(|e| RegistryError::storage(e, ErrorCode::ManifestUnknown))?;
        if let Some(subject) = self.subject_of(&digest).await? {
            self.forget_referrer(repo, &subject, &digest).await?;
        }
        let target = digest.to_string();
        let target = target.as_bytes();
        futures::stream::iter(tags)
            .map(|tag| async move {
                let points = match self.storage.get_bytes(&tag).await {
                    Ok(points) => points,
                    // Deleted meanwhile.
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(RegistryError::storage(e, ErrorCode::ManifestUnknown)),
                };
                if points == target {
                    delete(tag).await?;
                }
                Ok(())
            })
            .buffer_unordered(TAG_READS_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        delete(revision).await?;
        Ok(empty(StatusCode::ACCEPTED, &[]))
    }
}

/// A manifest's bytes: 413 `SIZE_INVALID` past [`MAX_MANIFEST_BYTES`] (as
/// the distribution spec asks), 400 when the body breaks off.
async fn manifest_body(body: Body) -> Result<Bytes, RegistryError> {
    let mut stream = body.into_data_stream();
    let mut bytes = bytes::BytesMut::new();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| {
            RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("the manifest's body broke off: {e}"),
            )
        })?;
        if bytes.len() + piece.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::too_large(format!(
                "manifests are limited to {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&piece);
    }
    Ok(bytes.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_layers_need_no_blob() {
        let layer = |media: &str, urls: Value| serde_json::json!({"mediaType": media, "digest": "sha256:x", "size": 1, "urls": urls});
        for (media, urls, foreign) in [
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Value::Null,
                true,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Value::Null,
                true,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar",
                serde_json::json!(["https://x/y"]),
                true,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar",
                serde_json::json!([]),
                false,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Value::Null,
                false,
            ),
        ] {
            assert_eq!(is_foreign_layer(&layer(media, urls)), foreign, "{media}");
        }
    }

    #[test]
    fn media_types() {
        let doc: Value = serde_json::json!({"schemaVersion": 2, "config": {}, "layers": []});
        assert_eq!(media_type(None, &doc).unwrap(), OCI_MANIFEST);
        assert_eq!(
            media_type(Some(DOCKER_MANIFEST), &doc).unwrap(),
            DOCKER_MANIFEST
        );
        let index: Value = serde_json::json!({"mediaType": OCI_INDEX, "manifests": []});
        assert_eq!(media_type(None, &index).unwrap(), OCI_INDEX);
        assert!(media_type(Some(OCI_MANIFEST), &index).is_err());
        assert!(media_type(Some("text/plain"), &doc).is_err());
    }
}
