//! Where the registry keeps things in storage (the same shape as
//! distribution's, so an operator recognises it):
//!
//! ```text
//! blobs/sha256/<ab>/<hex>                                 blob bytes (shared by all repositories)
//! repositories/<name>/_layers/sha256/<hex>                the repository may serve this blob
//! repositories/<name>/_manifests/revisions/sha256/<hex>   a manifest of the repository (holds its media type)
//! repositories/<name>/_manifests/tags/<tag>               a tag (holds the manifest digest)
//! ```
//!
//! Repository name components never start with `_`, so `_layers` and
//! `_manifests` cannot collide with a nested repository.

use stowage::{Sha256Digest, StoragePath};

fn path(text: String) -> StoragePath {
    StoragePath::parse(text).expect("names and digests were checked before")
}

/// The bytes of a blob.
pub fn blob(digest: &Sha256Digest) -> StoragePath {
    let hex = digest.hex();
    path(format!("blobs/sha256/{}/{hex}", &hex[..2]))
}

/// The link that lets `repo` serve a blob.
pub fn layer_link(repo: &str, digest: &Sha256Digest) -> StoragePath {
    path(format!(
        "repositories/{repo}/_layers/sha256/{}",
        digest.hex()
    ))
}

/// The link that records a manifest of `repo` (content: its media type).
pub fn revision(repo: &str, digest: &Sha256Digest) -> StoragePath {
    path(format!(
        "repositories/{repo}/_manifests/revisions/sha256/{}",
        digest.hex()
    ))
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
