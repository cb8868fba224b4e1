//! Mapping between stowage paths and `object_store` paths.
//!
//! `object_store` percent-encodes characters it reserves (`%`, `~`, `#`,
//! non-ASCII, ...) in each segment; decoding a listed segment gives back the
//! exact stowage path.

use object_store::path::{Path, PathPart};
use stowage_core::{Error, StoragePath};

pub(crate) fn to_store(path: &StoragePath) -> Path {
    Path::from_iter(path.segments().map(PathPart::from))
}

pub(crate) fn from_store(path: &Path) -> Result<StoragePath, Error> {
    let decoded: Result<Vec<String>, _> = path
        .parts()
        .map(|p| {
            percent_encoding::percent_decode_str(p.as_ref())
                .decode_utf8()
                .map(|s| s.into_owned())
        })
        .collect();
    let decoded = decoded.map_err(|e| Error::InvalidPath {
        path: path.to_string(),
        reason: format!("stored name is not UTF-8 after decoding: {e}"),
    })?;
    StoragePath::parse(decoded.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_characters_round_trip() {
        for p in ["a b/c+d%e=f~g@h,i", "ünï/日本/😀", "x#1/y?z*", "%2E/%25"] {
            let sp = StoragePath::parse(p).unwrap();
            assert_eq!(from_store(&to_store(&sp)).unwrap(), sp);
        }
    }
}
