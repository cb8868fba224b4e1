//! Validated storage paths.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The longest path accepted, in bytes (S3's key limit).
pub const MAX_PATH_BYTES: usize = 1024;

/// A validated, relative, `/`-separated object path.
///
/// Every driver maps a `StoragePath` under its own root prefix (Quay's
/// `storage_path`), so the same path names the same object on any backend.
///
/// Rules, each reported by name when broken: not empty, not absolute (no
/// leading `/`), no trailing `/`, no empty segment (`a//b`), no `.` or `..`
/// segment, no backslash, no NUL or other control character, at most
/// [`MAX_PATH_BYTES`] bytes. Anything else, spaces, `+`, `%`, `=`, `~`, `@`,
/// `,` and non-ASCII included, is kept exactly as given.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StoragePath(String);

impl StoragePath {
    /// Validates `path`.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] naming the path and the rule it broke.
    pub fn parse(path: impl Into<String>) -> Result<Self, Error> {
        let path = path.into();
        match check(&path) {
            Ok(()) => Ok(Self(path)),
            Err(reason) => Err(Error::InvalidPath {
                path,
                reason: reason.to_string(),
            }),
        }
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// This path with `child` (one or more segments) appended.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] when the joined path breaks a rule.
    pub fn join(&self, child: &str) -> Result<Self, Error> {
        Self::parse(format!("{}/{}", self.0, child))
    }

    /// Whether this path lies strictly below `prefix` (segment-wise: `a/bc`
    /// is not below `a/b`).
    pub fn is_below(&self, prefix: &StoragePath) -> bool {
        self.0.len() > prefix.0.len()
            && self.0.starts_with(&prefix.0)
            && self.0.as_bytes()[prefix.0.len()] == b'/'
    }
}

fn check(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("path is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return Err("path is longer than 1024 bytes");
    }
    if path.starts_with('/') {
        return Err("path is absolute (starts with '/'); storage paths are relative");
    }
    if path.ends_with('/') {
        return Err("path ends with '/'");
    }
    if path.contains('\\') {
        return Err("path contains a backslash");
    }
    if path.chars().any(|c| c == '\0') {
        return Err("path contains a NUL character");
    }
    if path.chars().any(char::is_control) {
        return Err("path contains a control character");
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err("path has an empty segment ('//')"),
            "." | ".." => return Err("path has a '.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoragePath({:?})", self.0)
    }
}

impl TryFrom<String> for StoragePath {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::parse(value)
    }
}

impl TryFrom<&str> for StoragePath {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self, Error> {
        Self::parse(value)
    }
}

impl From<StoragePath> for String {
    fn from(value: StoragePath) -> Self {
        value.0
    }
}

impl std::str::FromStr for StoragePath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl AsRef<str> for StoragePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(path: &str) -> String {
        match StoragePath::parse(path) {
            Err(Error::InvalidPath { reason, path: p }) => {
                assert_eq!(p, path);
                reason
            }
            other => panic!("{path:?} should be rejected, got {other:?}"),
        }
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        assert!(reason("").contains("empty"));
        assert!(reason("/abs").contains("absolute"));
        assert!(reason("a/").contains("ends with"));
        assert!(reason("a//b").contains("empty segment"));
        assert!(reason("a/./b").contains("'.'"));
        assert!(reason("a/../b").contains("'..'"));
        assert!(reason("..").contains("'..'"));
        assert!(reason("a\\b").contains("backslash"));
        assert!(reason("a\0b").contains("NUL"));
        assert!(reason("a\nb").contains("control"));
        assert!(reason("a\u{7f}b").contains("control"));
        assert!(reason(&"x".repeat(1025)).contains("1024"));
    }

    #[test]
    fn keeps_special_characters_verbatim() {
        for p in [
            "a b/c+d/e%20f/g=h/~i@j,k",
            "ünïcødé/日本語/😀",
            "sha256/ab/abcdef",
            ".hidden/..dots../x.",
            &"y".repeat(1024),
        ] {
            assert_eq!(StoragePath::parse(p).unwrap().as_str(), p);
        }
    }

    #[test]
    fn error_message_names_path_and_rule() {
        let err = StoragePath::parse("a//b").unwrap_err().to_string();
        assert!(err.contains("\"a//b\""), "{err}");
        assert!(err.contains("empty segment"), "{err}");
    }

    #[test]
    fn is_below_is_segment_wise() {
        let p = |s: &str| StoragePath::parse(s).unwrap();
        assert!(p("a/b/c").is_below(&p("a/b")));
        assert!(!p("a/bc").is_below(&p("a/b")));
        assert!(!p("a/b").is_below(&p("a/b")));
    }

    #[test]
    fn serde_validates() {
        let ok: StoragePath = serde_json::from_str("\"a/b\"").unwrap();
        assert_eq!(ok.as_str(), "a/b");
        assert!(serde_json::from_str::<StoragePath>("\"../x\"").is_err());
    }
}
