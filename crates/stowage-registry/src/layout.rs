//! Where the registry keeps things in storage (the same shape as
//! distribution's, so an operator recognises it):
//!
//! ```text
//! blobs/<alg>/<ab>/<hex>                                  blob bytes (shared by all repositories)
//! repositories/<name>/_layers/<alg>/<hex>                 the repository may serve this blob
//! repositories/<name>/_manifests/revisions/<alg>/<hex>    a manifest of the repository (holds its media type)
//! repositories/<name>/_manifests/tags/<tag>               a tag (holds the manifest digest)
//! repositories/<name>/_referrers/<alg>/<hex>/<alg>/<hex>  a manifest whose subject is the first digest
//!                                                         (holds its descriptor, for the referrers API)
//! _registry/uploads/<id>/<offset>-<sha256 hex>.json       upload records (the default upload store)
//! _registry/verify/<id>-<random>                          a sha512 upload being checked before it is stored
//! ```
//!
//! `<alg>` is `sha256` or `sha512`. Repository name components never start
//! with `_`, so `_layers`, `_manifests` and `_referrers` cannot collide with
//! a nested repository, and `_registry` is not a repository.

use stowage::StoragePath;

use crate::digest::Digest;

fn path(text: String) -> StoragePath {
    StoragePath::parse(text).expect("names and digests were checked before")
}

/// The bytes of a blob.
pub fn blob(digest: impl Into<Digest>) -> StoragePath {
    let digest = digest.into();
    let hex = digest.hex();
    path(format!("blobs/{}/{}/{hex}", digest.algorithm(), &hex[..2]))
}

/// The link that lets `repo` serve a blob.
pub fn layer_link(repo: &str, digest: impl Into<Digest>) -> StoragePath {
    let digest = digest.into();
    path(format!(
        "repositories/{repo}/_layers/{}/{}",
        digest.algorithm(),
        digest.hex()
    ))
}

/// The link that records a manifest of `repo` (content: its media type).
pub fn revision(repo: &str, digest: impl Into<Digest>) -> StoragePath {
    let digest = digest.into();
    path(format!(
        "repositories/{repo}/_manifests/revisions/{}/{}",
        digest.algorithm(),
        digest.hex()
    ))
}

/// Every manifest of `repo` whose `subject` is `subject`, for the
/// referrers API.
pub fn referrers(repo: &str, subject: impl Into<Digest>) -> StoragePath {
    let subject = subject.into();
    path(format!(
        "repositories/{repo}/_referrers/{}/{}",
        subject.algorithm(),
        subject.hex()
    ))
}

/// The record of manifest `referrer` of `repo` pointing at `subject`
/// (content: the manifest's descriptor as JSON).
pub fn referrer(
    repo: &str,
    subject: impl Into<Digest>,
    referrer: impl Into<Digest>,
) -> StoragePath {
    let referrer = referrer.into();
    let prefix = referrers(repo, subject);
    path(format!(
        "{prefix}/{}/{}",
        referrer.algorithm(),
        referrer.hex()
    ))
}

/// Where the default upload store keeps its records.
pub fn upload_records() -> StoragePath {
    path("_registry/uploads".to_string())
}

/// Where sha512 uploads are assembled and checked before they are stored.
pub fn verify_area() -> StoragePath {
    path("_registry/verify".to_string())
}

/// The tag of `repo` (content: the manifest digest).
pub fn tag(repo: &str, tag: &str) -> StoragePath {
    path(format!("repositories/{repo}/_manifests/tags/{tag}"))
}

/// Every tag of `repo`, for listing.
pub fn tags(repo: &str) -> StoragePath {
    path(format!("repositories/{repo}/_manifests/tags"))
}

/// Everything of `repo` (to tell whether it exists).
pub fn repository(repo: &str) -> StoragePath {
    path(format!("repositories/{repo}"))
}
