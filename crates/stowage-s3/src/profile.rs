//! Server profiles: what the S3 driver does differently for a server that
//! lacks operations AWS has. `Standard` is the driver as it always was;
//! `Gcs` is Google Cloud Storage's XML API with HMAC keys (`docs/gcs.md`
//! lists what GCS lacks, with sources). Each difference is one predicate
//! here, read where the driver decides:
//!
//! | predicate | `Gcs` | read in |
//! |---|---|---|
//! | [`ServerProfile::lists_with_v2`] | no: ListObjects (v1) with Marker | `listing.rs` |
//! | [`ServerProfile::deletes_in_batches`] | no: one DeleteObject per key, several at once | `deletes.rs` |
//! | [`ServerProfile::copies_parts`] | no: assembly and large copies stream | `copies.rs` |
//! | [`ServerProfile::deleting_missing_is_404`] | yes: a 404 on DeleteObject is success | `deletes.rs` |
//! | [`ServerProfile::accepts_x_id`] | no: the SDK's `x-id` query parameter is dropped before signing | `storage.rs` |

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;

/// The kind of server a bucket lives on, where it lacks operations AWS S3
/// has (`S3Config::profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ServerProfile {
    /// AWS S3 and servers with its operations (Ceph RGW, Garage, MinIO):
    /// the default.
    #[default]
    Standard,
    /// Google Cloud Storage's XML API (`https://storage.googleapis.com`)
    /// with HMAC keys: listings with ListObjects (v1), deletes one key at a
    /// time, no UploadPartCopy (chunked uploads are assembled and large
    /// copies made by streaming through the process), a 404 on deleting a
    /// missing key taken as success, and no `x-id` query parameter.
    Gcs,
}

impl ServerProfile {
    /// Whether listings use ListObjectsV2 (else ListObjects, version 1,
    /// paged with Marker).
    pub fn lists_with_v2(self) -> bool {
        matches!(self, Self::Standard)
    }

    /// Whether prefixes are deleted with DeleteObjects batches (else one
    /// DeleteObject per key, several in flight).
    pub fn deletes_in_batches(self) -> bool {
        matches!(self, Self::Standard)
    }

    /// Whether the server copies byte ranges into parts (UploadPartCopy);
    /// without it, chunked uploads are assembled and copies above the
    /// multipart-copy threshold made by streaming the bytes through.
    pub fn copies_parts(self) -> bool {
        matches!(self, Self::Standard)
    }

    /// Whether DeleteObject of a missing key is answered 404 `NoSuchKey`
    /// (GCS) rather than 204; the driver then takes the 404 as the success
    /// [`stowage_core::Storage::delete`] promises.
    pub fn deleting_missing_is_404(self) -> bool {
        matches!(self, Self::Gcs)
    }

    /// Whether the server accepts the `x-id` query parameter the SDK adds
    /// to some operations (GetObject, PutObject, UploadPart, ...); GCS
    /// refuses unknown query parameters.
    pub fn accepts_x_id(self) -> bool {
        matches!(self, Self::Standard)
    }

    /// The profile's name in messages (`standard`, `gcs`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Gcs => "gcs",
        }
    }
}

/// Drops the `x-id` query parameter (`?x-id=GetObject`) before a request
/// is signed, for servers that refuse unknown query parameters (GCS). It
/// runs for presigned URLs too, so they do not carry it either.
#[derive(Debug)]
pub(crate) struct WithoutXId;

impl Intercept for WithoutXId {
    fn name(&self) -> &'static str {
        "stowage-s3 WithoutXId"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        if let Some(uri) = without_x_id(request.uri()) {
            request.set_uri(uri)?;
        }
        Ok(())
    }
}

/// `uri` without its `x-id` query parameters; `None` when it has none.
fn without_x_id(uri: &str) -> Option<String> {
    let (base, query) = uri.split_once('?')?;
    let is_x_id = |pair: &&str| *pair == "x-id" || pair.starts_with("x-id=");
    if !query.split('&').any(|pair| is_x_id(&pair)) {
        return None;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !is_x_id(pair))
        .collect();
    Some(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

#[cfg(test)]
mod tests {
    use super::{without_x_id, ServerProfile};

    #[test]
    fn x_id_is_dropped_and_nothing_else() {
        assert_eq!(
            without_x_id("https://h/b/k?x-id=GetObject").as_deref(),
            Some("https://h/b/k")
        );
        assert_eq!(
            without_x_id("https://h/b/k?x-id=UploadPart&partNumber=2&uploadId=u%3D1").as_deref(),
            Some("https://h/b/k?partNumber=2&uploadId=u%3D1")
        );
        assert_eq!(
            without_x_id("/b/k?uploadId=u&x-id=AbortMultipartUpload").as_deref(),
            Some("/b/k?uploadId=u")
        );
        assert_eq!(without_x_id("https://h/b/k"), None);
        assert_eq!(without_x_id("https://h/b/k?uploads"), None);
        assert_eq!(
            without_x_id("https://h/b?x-idx=1&prefix=a"),
            None,
            "only the x-id parameter itself"
        );
    }

    #[test]
    fn standard_keeps_every_operation_gcs_drops_what_gcs_lacks() {
        let s = ServerProfile::default();
        assert_eq!(s, ServerProfile::Standard);
        assert!(s.lists_with_v2() && s.deletes_in_batches() && s.copies_parts());
        assert!(s.accepts_x_id() && !s.deleting_missing_is_404());
        let g = ServerProfile::Gcs;
        assert!(!g.lists_with_v2() && !g.deletes_in_batches() && !g.copies_parts());
        assert!(!g.accepts_x_id() && g.deleting_missing_is_404());
        assert_eq!((s.name(), g.name()), ("standard", "gcs"));
    }

    #[tokio::test]
    async fn a_gcs_driver_copies_no_parts_and_drops_x_id() {
        use stowage_core::Storage;
        let gcs =
            crate::S3Storage::new(crate::S3Config::new("bkt").with_profile(ServerProfile::Gcs))
                .await
                .unwrap();
        let standard = crate::S3Storage::new(crate::S3Config::new("bkt"))
            .await
            .unwrap();
        assert!(gcs.part_copy_refused() && !gcs.copies_server_side());
        assert!(!standard.part_copy_refused() && standard.copies_server_side());
        let (g, s) = (gcs.capabilities(), standard.capabilities());
        assert!(!g.server_side_assembly && g.server_side_copy && g.direct_download);
        assert!(s.server_side_assembly && s.server_side_copy);
        assert_eq!(
            gcs.client.config().interceptors().count(),
            standard.client.config().interceptors().count() + 1,
            "the GCS client has the x-id interceptor, the standard one not"
        );
    }
}
