//! Repository names, tags and digests as the OCI Distribution spec defines
//! them, checked before they become storage paths.

use crate::digest::Digest;

use crate::errors::{ErrorCode, RegistryError};

/// Checks a repository name: `/`-separated components of lowercase letters
/// and digits joined by `.`, `_`, `__` or runs of `-`.
///
/// # Errors
/// `NAME_INVALID` saying which component is wrong.
pub(crate) fn check_repository(name: &str) -> Result<(), RegistryError> {
    let invalid = |why: String| Err(RegistryError::new(ErrorCode::NameInvalid, why));
    if name.is_empty() || name.len() > 255 {
        return invalid(format!(
            "repository name {name:?} must have 1 to 255 characters"
        ));
    }
    for component in name.split('/') {
        let b = component.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = !b.is_empty()
            && alnum(b[0])
            && alnum(b[b.len() - 1])
            && b.iter()
                .all(|&c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
            && !component.contains("..")
            && !component.contains("___")
            && !component.contains("._")
            && !component.contains("_.")
            && !component.contains(".-")
            && !component.contains("-.")
            && !component.contains("_-")
            && !component.contains("-_");
        if !ok {
            return invalid(format!(
                "repository name {name:?}: component {component:?} must be lowercase letters and \
                 digits, separated by '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

/// Whether `reference` is a tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
pub(crate) fn is_tag(reference: &str) -> bool {
    let b = reference.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Parses a `sha256:<64 hex>` or `sha512:<128 hex>` digest.
///
/// # Errors
/// `DIGEST_INVALID` (other algorithms are not supported here).
pub(crate) fn parse_digest(text: &str) -> Result<Digest, RegistryError> {
    Digest::parse(text).map_err(|e| {
        RegistryError::new(
            ErrorCode::DigestInvalid,
            format!("{text:?} is not a digest this registry accepts (sha256 or sha512): {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in ["library/ubuntu", "a", "a-b/c__d/e.f", "x--y/z9"] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Upper",
            "a//b",
            "/a",
            "a/",
            "-a",
            "a_",
            "a..b",
            "a/_layers",
            "a b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_and_digests() {
        assert!(is_tag("latest") && is_tag("v1.2_3-x") && is_tag("_x"));
        assert!(!is_tag("-x") && !is_tag("") && !is_tag("sha256:abc") && !is_tag(&"a".repeat(129)));
        assert!(parse_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(parse_digest(&format!("sha512:{}", "a".repeat(128))).is_ok());
        assert_eq!(
            parse_digest("sha512:ab").unwrap_err().code,
            ErrorCode::DigestInvalid
        );
    }
}
