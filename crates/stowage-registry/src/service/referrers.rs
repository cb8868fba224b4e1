//! The referrers API (OCI distribution 1.1): `GET /v2/<name>/referrers/<digest>`
//! answers an image index of the manifests whose `subject` is `<digest>`,
//! optionally only those of one `artifactType`.
//!
//! A manifest put with a `subject` leaves a small record of its descriptor
//! at `repositories/<name>/_referrers/<subject>/<manifest>`; deleting the
//! manifest removes it. Listing the referrers of a subject is one listing
//! of that prefix and one read per referrer, whichever replica answers.
//!
//! The answer is paged the way the spec allows (a `Link` header to the
//! next page): with `n`, or for a request without credentials at most
//! [`DEFAULT_REFERRERS_PAGE`] referrers, each page one `list_page` of the
//! records (after `last`, a referrer digest) and one read per record; a
//! request with credentials and no `n` gets them all.

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, LINK};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Map, Value};
use stowage::{ErrorKind, PutOptions, StorageExt, StoragePath};

use crate::digest::Digest;
use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::layout;
use crate::registry::Registry;
use crate::service::list_options;
use crate::service::manifests::{OCI_INDEX, OCI_MANIFEST};

/// The page size of a referrers listing for a request without credentials
/// that names no `n`.
pub(crate) const DEFAULT_REFERRERS_PAGE: usize = 100;

/// The `OCI-Filters-Applied` header.
const FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// Referrer records read at once.
const READS_IN_FLIGHT: usize = 16;

/// The descriptor of a manifest for the referrers index: media type,
/// digest, size, `artifactType` (the manifest's own, else for an image
/// manifest its config's media type, as the spec says) and annotations.
pub(crate) fn descriptor(media_type: &str, digest: &Digest, size: usize, doc: &Value) -> Value {
    let mut out = Map::new();
    out.insert("mediaType".into(), json!(media_type));
    out.insert("digest".into(), json!(digest.to_string()));
    out.insert("size".into(), json!(size));
    let artifact_type = doc
        .get("artifactType")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .or_else(|| {
            (media_type == OCI_MANIFEST)
                .then(|| doc.get("config")?.get("mediaType")?.as_str())
                .flatten()
        });
    if let Some(t) = artifact_type {
        out.insert("artifactType".into(), json!(t));
    }
    if let Some(a) = doc.get("annotations").filter(|a| a.is_object()) {
        out.insert("annotations".into(), a.clone());
    }
    Value::Object(out)
}

impl Registry {
    /// Records that manifest `digest` of `repo` refers to `subject`.
    pub(crate) async fn record_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        digest: &Digest,
        descriptor: &Value,
    ) -> RegistryResult<()> {
        let body = serde_json::to_vec(descriptor).expect("descriptors serialize");
        self.storage
            .put(
                &layout::referrer(repo, subject, digest),
                body.into(),
                PutOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| RegistryError::storage(e, ErrorCode::ManifestInvalid))
    }

    /// Removes the record of manifest `digest` of `repo` as a referrer of
    /// `subject` (gone already is fine).
    pub(crate) async fn forget_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        digest: &Digest,
    ) -> RegistryResult<()> {
        self.storage
            .delete(&layout::referrer(repo, subject, digest))
            .await
            .map_err(|e| RegistryError::storage(e, ErrorCode::ManifestUnknown))
    }

    /// `GET /v2/<name>/referrers/<digest>[?artifactType=][&n=][&last=]`: an
    /// image index of the referrers (empty when there are none, or the
    /// subject is unknown), sorted by digest; with `artifactType`, only
    /// those of that type and the header `OCI-Filters-Applied:
    /// artifactType`. With `page`, at most that many records are read,
    /// after the referrer `last`, and a `Link` header names the next page
    /// when there is one (a filtered page may hold fewer).
    pub(crate) async fn list_referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        page: Option<usize>,
        last: Option<&Digest>,
    ) -> RegistryResult {
        let failed = |e: stowage::Error| RegistryError::storage(e, ErrorCode::ManifestUnknown);
        let prefix = layout::referrers(repo, subject);
        let mut paths: Vec<StoragePath> = Vec::new();
        let mut more = false;
        if page != Some(0) {
            let mut start_after = last.map(|d| layout::referrer(repo, subject, d).to_string());
            loop {
                let listed = self
                    .storage
                    .list_page(list_options(prefix.clone(), false, start_after, page))
                    .await
                    .map_err(failed)?;
                paths.extend(listed.objects.into_iter().map(|m| m.path));
                start_after = listed.next_start_after;
                if page.is_some() || start_after.is_none() {
                    more = start_after.is_some();
                    break;
                }
            }
        }
        let last_listed = paths.last().and_then(layout::digest_at_end);
        let read: Vec<Option<Value>> = futures::stream::iter(paths)
            .map(|path| async move {
                match self.storage.get_bytes(&path).await {
                    Ok(bytes) => Ok(serde_json::from_slice::<Value>(&bytes).ok()),
                    // Deleted meanwhile.
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(failed(e)),
                }
            })
            .buffered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut manifests: Vec<Value> = read
            .into_iter()
            .flatten()
            .filter(|d| d.get("digest").and_then(Value::as_str).is_some())
            .filter(|d| {
                artifact_type
                    .is_none_or(|t| d.get("artifactType").and_then(Value::as_str) == Some(t))
            })
            .collect();
        manifests.sort_by(|a, b| {
            let key = |v: &Value| v.get("digest").and_then(Value::as_str).map(str::to_string);
            key(a).cmp(&key(b))
        });
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        });
        let body = serde_json::to_vec(&index).expect("an index serializes");
        let mut response = Response::new(Body::from(body.clone()));
        *response.status_mut() = StatusCode::OK;
        let h = response.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
        h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        if artifact_type.is_some() {
            h.insert(FILTERS_APPLIED, HeaderValue::from_static("artifactType"));
        }
        if let (true, Some(n), Some(last)) = (more, page, last_listed) {
            let mut next = format!("/v2/{repo}/referrers/{subject}?n={n}&last={last}");
            if let Some(t) = artifact_type {
                next.push_str("&artifactType=");
                next.push_str(&query_escape(t));
            }
            if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
                h.insert(LINK, v);
            }
        }
        Ok(response)
    }
}

/// `value` for a URL's query: bytes other than letters, digits and
/// `-._~/` percent-encoded (a `+` in a media type must not read as a
/// space).
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_escaped_for_the_link() {
        assert_eq!(
            query_escape("application/vnd.example+json; x=1"),
            "application/vnd.example%2Bjson%3B%20x%3D1"
        );
    }

    #[test]
    fn descriptors_take_the_config_media_type_when_no_artifact_type() {
        let d = Digest::sha256_of(b"m");
        let doc = json!({"config": {"mediaType": "application/vnd.example.sbom"},
                         "annotations": {"a": "b"}});
        let v = descriptor(OCI_MANIFEST, &d, 10, &doc);
        assert_eq!(v["artifactType"], "application/vnd.example.sbom");
        assert_eq!(v["annotations"]["a"], "b");
        assert_eq!(v["size"], 10);
        let doc = json!({"artifactType": "application/x", "config": {"mediaType": "y"}});
        assert_eq!(
            descriptor(OCI_MANIFEST, &d, 1, &doc)["artifactType"],
            "application/x"
        );
        let index = json!({"manifests": []});
        assert!(descriptor(OCI_INDEX, &d, 1, &index)
            .get("artifactType")
            .is_none());
    }
}
