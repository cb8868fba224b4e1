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
//! _registry/gc/runs/<run id>.json                         a garbage collection, running (its heartbeat) or finished
//! _registry/gc/used/<alg>/<hex>/<id>                      the blob was relied on (a mount; a manifest put near a gc)
//! _registry/gc/sweeping/<alg>/<hex>/<run id>              a garbage collection is deciding whether to delete the blob
//! ```
//!
//! The `_registry/gc/` objects are the garbage collection protocol
//! ([`crate::gc`] and docs/registry.md).
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

/// Every repository (the top of the walk for the catalog and garbage
/// collection).
pub fn repositories() -> StoragePath {
    path("repositories".to_string())
}

/// Every blob.
pub fn blobs() -> StoragePath {
    path("blobs".to_string())
}

/// The manifests and tags of `repo` (a repository is a path with this
/// below it).
pub fn manifests(repo: &str) -> StoragePath {
    path(format!("repositories/{repo}/_manifests"))
}

/// Every manifest (revision link) of `repo`.
pub fn revisions(repo: &str) -> StoragePath {
    path(format!("repositories/{repo}/_manifests/revisions"))
}

/// Every blob link of `repo`.
pub fn layer_links(repo: &str) -> StoragePath {
    path(format!("repositories/{repo}/_layers"))
}

/// Every referrer record of `repo`.
pub fn all_referrers(repo: &str) -> StoragePath {
    path(format!("repositories/{repo}/_referrers"))
}

/// The records of garbage collections in progress.
pub fn gc_runs() -> StoragePath {
    path("_registry/gc/runs".to_string())
}

/// The record of garbage collection `run`.
pub fn gc_run(run: &str) -> StoragePath {
    path(format!("_registry/gc/runs/{run}.json"))
}

/// Every "used" marker of a blob.
pub fn gc_used(digest: impl Into<Digest>) -> StoragePath {
    let digest = digest.into();
    path(format!(
        "_registry/gc/used/{}/{}",
        digest.algorithm(),
        digest.hex()
    ))
}

/// A "used" marker of a blob: written new (`id` is random) each time the
/// registry relies on the blob; its modification time says when.
pub fn gc_used_marker(digest: impl Into<Digest>, id: &str) -> StoragePath {
    path(format!("{}/{id}", gc_used(digest)))
}

/// Every "used" marker of every blob.
pub fn gc_markers() -> StoragePath {
    path("_registry/gc/used".to_string())
}

/// Every tombstone of a blob: the garbage collections deciding whether to
/// delete it.
pub fn gc_sweeping(digest: impl Into<Digest>) -> StoragePath {
    let digest = digest.into();
    path(format!(
        "_registry/gc/sweeping/{}/{}",
        digest.algorithm(),
        digest.hex()
    ))
}

/// The tombstone garbage collection `run` writes while it decides whether
/// to delete a blob.
pub fn gc_tombstone(digest: impl Into<Digest>, run: &str) -> StoragePath {
    path(format!("{}/{run}", gc_sweeping(digest)))
}

/// Every tombstone of every blob.
pub fn gc_tombstones() -> StoragePath {
    path("_registry/gc/sweeping".to_string())
}

/// The digest a `.../<alg>/<hex>` path ends with (a link, a revision, a
/// referrer record, a marker), if it ends with one.
pub fn digest_at_end(path: &StoragePath) -> Option<Digest> {
    let mut segments = path.as_str().rsplit('/');
    let hex = segments.next()?;
    let algorithm = segments.next()?;
    Digest::parse(&format!("{algorithm}:{hex}")).ok()
}

/// The digest of a blob path (`blobs/<alg>/<ab>/<hex>`), if it is one.
pub fn blob_digest(path: &StoragePath) -> Option<Digest> {
    let mut segments = path.as_str().split('/');
    let (Some("blobs"), Some(algorithm), Some(ab), Some(hex), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return None;
    };
    let digest = Digest::parse(&format!("{algorithm}:{hex}")).ok()?;
    (hex.get(..2) == Some(ab)).then_some(digest)
}
