//! What a manifest must be before it is stored, beyond being JSON of a
//! supported media type: `schemaVersion` 2; an image manifest or an index,
//! never both at once (a document with `layers` and `manifests`, the
//! ambiguity of CVE-2021-41190, where one digest could be read as either
//! by different clients); and URLs in descriptors only when the operator
//! allows them.
//!
//! A descriptor's `urls` tell clients to fetch the bytes from elsewhere,
//! and a layer with URLs need not be in the repository. Left open, anyone
//! who may push could point every puller at a server of their choosing
//! (tracking, or content that is not what the digest promises until it is
//! checked). So URLs are refused by default, as distribution does without
//! `validation.manifests.urls.allow`; [`ManifestUrls`] lists regular
//! expressions of those allowed and those denied (`--manifest-urls-allow`,
//! `--manifest-urls-deny`), and only `http` and `https` URLs without
//! credentials or fragments pass at all.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::errors::{ErrorCode, RegistryError};
use crate::service::manifests::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// The longest URL a descriptor may carry.
const MAX_URL_BYTES: usize = 2048;

/// How much of a refused URL an error message repeats.
const QUOTED_URL_CHARS: usize = 200;

/// A regular expression a descriptor URL is matched against (anywhere in
/// the URL, unless anchored with `^` and `$`): `^https://cdn\.example\.com/`.
/// Matching takes time linear in the URL, whatever the pattern.
#[derive(Clone)]
pub struct UrlPattern(regex_lite::Regex);

impl UrlPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether `url` matches.
    pub fn is_match(&self, url: &str) -> bool {
        self.0.is_match(url)
    }
}

impl fmt::Debug for UrlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UrlPattern").field(&self.as_str()).finish()
    }
}

impl fmt::Display for UrlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A URL pattern that is not a regular expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPatternError {
    pattern: String,
    reason: String,
}

impl fmt::Display for UrlPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad URL pattern {:?}: {}",
            self.pattern,
            self.reason.trim()
        )
    }
}

impl std::error::Error for UrlPatternError {}

impl FromStr for UrlPattern {
    type Err = UrlPatternError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        regex_lite::Regex::new(pattern)
            .map(Self)
            .map_err(|e| UrlPatternError {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })
    }
}

/// Which URLs manifests may carry in their descriptors (distribution's
/// `validation.manifests.urls`): a URL passes when it is `http` or
/// `https` (no credentials, no fragment, no spaces), matches an `allow`
/// pattern and no `deny` pattern. The default allows none: a manifest
/// with URLs is refused with 400 `MANIFEST_INVALID`, and so it is when
/// only `deny` patterns are given.
#[derive(Debug, Clone, Default)]
pub struct ManifestUrls {
    allow: Vec<UrlPattern>,
    deny: Vec<UrlPattern>,
}

impl ManifestUrls {
    /// URLs matching one of `allow` and none of `deny`.
    pub fn new(allow: Vec<UrlPattern>, deny: Vec<UrlPattern>) -> Self {
        Self { allow, deny }
    }

    /// The patterns of allowed URLs.
    pub fn allow(&self) -> &[UrlPattern] {
        &self.allow
    }

    /// The patterns of denied URLs.
    pub fn deny(&self) -> &[UrlPattern] {
        &self.deny
    }

    /// Whether `url` may appear in a manifest.
    ///
    /// # Errors
    /// Why not, for the client: not an `http`/`https` URL one can fetch
    /// from as it stands, no URLs allowed at all, or not allowed, or
    /// denied, by the patterns.
    pub fn check(&self, url: &str) -> Result<(), String> {
        if let Some(problem) = url_problem(url) {
            return Err(problem.to_string());
        }
        if self.allow.is_empty() {
            return Err("is refused: this registry accepts no URLs in manifests \
                 (an operator may allow some with --manifest-urls-allow)"
                .to_string());
        }
        if !self.allow.iter().any(|p| p.is_match(url)) {
            return Err("is not allowed: it matches no --manifest-urls-allow pattern".to_string());
        }
        if let Some(denied) = self.deny.iter().find(|p| p.is_match(url)) {
            return Err(format!(
                "is denied: it matches the --manifest-urls-deny pattern {:?}",
                denied.as_str()
            ));
        }
        Ok(())
    }
}

/// What makes `url` unfit for a descriptor, if anything: only absolute
/// `http` and `https` URLs of printable ASCII, with a host, without
/// credentials (`user@`) or a fragment, and without backslashes (which
/// some clients read as `/`, so that a pattern would see another host
/// than they do).
fn url_problem(url: &str) -> Option<&'static str> {
    if url.len() > MAX_URL_BYTES {
        return Some("is longer than 2048 bytes");
    }
    if url.bytes().any(|b| !b.is_ascii_graphic() || b == b'\\') {
        return Some("holds spaces, control characters, backslashes or non-ASCII characters");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("is not an absolute http or https URL");
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Some("is not an http or https URL");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Some("has no host");
    }
    if authority.contains('@') {
        return Some("carries credentials (user@host)");
    }
    if url.contains('#') {
        return Some("has a fragment");
    }
    None
}

fn invalid(message: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorCode::ManifestInvalid, message)
}

/// At most [`QUOTED_URL_CHARS`] characters of `url`, for a message.
fn quoted(url: &str) -> String {
    match url.char_indices().nth(QUOTED_URL_CHARS) {
        Some((end, _)) => format!("{:?}…", &url[..end]),
        None => format!("{url:?}"),
    }
}

/// Whether `doc` has `key` with a value (`null` counts as absent, as when
/// distribution reads the document).
fn has(doc: &Value, key: &str) -> bool {
    doc.get(key).is_some_and(|v| !v.is_null())
}

/// Checks the `urls` of the descriptor `descriptor`, named `name` in
/// messages (`layers[2]`).
fn check_urls(
    name: &dyn Fn() -> String,
    descriptor: &Value,
    rules: &ManifestUrls,
) -> Result<(), RegistryError> {
    let urls = match descriptor.get("urls") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(urls)) => urls,
        Some(_) => return Err(invalid(format!("{}.urls is not a list of URLs", name()))),
    };
    for (i, url) in urls.iter().enumerate() {
        let Some(url) = url.as_str() else {
            return Err(invalid(format!("{}.urls[{i}] is not a string", name())));
        };
        if let Err(why) = rules.check(url) {
            return Err(invalid(format!(
                "{}.urls[{i}] {} {why}",
                name(),
                quoted(url)
            )));
        }
    }
    Ok(())
}

/// Checks a manifest document of `media_type` (one of the four the
/// registry takes, as the manifest `PUT` decided it) before anything is
/// stored: a JSON object with `schemaVersion` 2; an image manifest without
/// `manifests`, an index without `config` or `layers` (never both kinds at
/// once); and the `urls` of every descriptor (config, layers, manifests,
/// subject, blobs) allowed by `urls`.
///
/// # Errors
/// 400 `MANIFEST_INVALID` naming the problem (and the descriptor, as
/// `layers[1].urls[0]`).
pub(crate) fn check_manifest(
    doc: &Value,
    media_type: &str,
    urls: &ManifestUrls,
) -> Result<(), RegistryError> {
    if !doc.is_object() {
        return Err(invalid("a manifest is a JSON object"));
    }
    match doc.get("schemaVersion") {
        Some(v) if v.as_u64() == Some(2) => {}
        Some(v) => {
            return Err(invalid(format!(
                "schemaVersion {v} is not supported: it must be 2"
            )))
        }
        None => return Err(invalid("schemaVersion is missing: it must be 2")),
    }
    if has(doc, "manifests") && (has(doc, "layers") || has(doc, "config")) {
        return Err(invalid(
            "the document has both manifests (an index) and layers or config (an image \
             manifest): it must be one or the other",
        ));
    }
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST if has(doc, "manifests") => {
            return Err(invalid(format!(
                "an image manifest ({media_type}) must not have manifests"
            )));
        }
        OCI_INDEX | DOCKER_LIST if has(doc, "layers") || has(doc, "config") => {
            return Err(invalid(format!(
                "an index ({media_type}) must not have layers or config"
            )));
        }
        _ => {}
    }
    for key in ["config", "subject"] {
        if let Some(descriptor) = doc.get(key).filter(|d| d.is_object()) {
            check_urls(&|| key.to_string(), descriptor, urls)?;
        }
    }
    for key in ["layers", "manifests", "blobs"] {
        let Some(list) = doc.get(key).and_then(Value::as_array) else {
            continue;
        };
        for (i, descriptor) in list.iter().enumerate() {
            check_urls(&|| format!("{key}[{i}]"), descriptor, urls)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> ManifestUrls {
        let parse = |list: &[&str]| -> Vec<UrlPattern> {
            list.iter().map(|p| p.parse().unwrap()).collect()
        };
        ManifestUrls::new(parse(allow), parse(deny))
    }

    fn image(layer_urls: Value) -> Value {
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:aa", "size": 2},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                 "digest": "sha256:bb", "size": 5},
                {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                 "digest": "sha256:cc", "size": 5, "urls": layer_urls},
            ],
        })
    }

    fn message(e: RegistryError) -> String {
        assert_eq!(e.code, ErrorCode::ManifestInvalid, "{}", e.message);
        e.message
    }

    #[test]
    fn urls_are_refused_unless_allowed_and_not_denied() {
        let url = json!(["https://cdn.example.com/layers/cc.tar.gz"]);
        let why = message(
            check_manifest(&image(url.clone()), OCI_MANIFEST, &ManifestUrls::default())
                .unwrap_err(),
        );
        assert!(
            why.contains("layers[1].urls[0]") && why.contains("--manifest-urls-allow"),
            "{why}"
        );
        let why = message(
            check_manifest(&image(url.clone()), OCI_MANIFEST, &rules(&[], &["evil"])).unwrap_err(),
        );
        assert!(
            why.contains("accepts no URLs"),
            "deny alone allows nothing: {why}"
        );

        let cdn = rules(&[r"^https://cdn\.example\.com/"], &[r"/private/"]);
        assert!(check_manifest(&image(url), OCI_MANIFEST, &cdn).is_ok());
        assert!(
            check_manifest(&image(Value::Null), OCI_MANIFEST, &ManifestUrls::default()).is_ok()
        );
        assert!(check_manifest(&image(json!([])), OCI_MANIFEST, &ManifestUrls::default()).is_ok());
        for (urls, expected) in [
            (json!(["https://cdn.example.com.evil.net/x"]), "matches no"),
            (json!(["https://cdn.example.com/private/x"]), "is denied"),
            (json!(["http://other.example.com/x"]), "matches no"),
            (json!(["ftp://cdn.example.com/x"]), "not an http or https"),
            (json!(["file:///etc/passwd"]), "not an http or https"),
            (json!(["/relative/path"]), "not an absolute"),
            (json!(["https://cdn.example.com@evil.net/x"]), "credentials"),
            (json!(["https://cdn.example.com/x#frag"]), "fragment"),
            (json!(["https://cdn.example.com/a b"]), "spaces"),
            (
                json!(["https://cdn.example.com\\@evil.net/"]),
                "backslashes",
            ),
            (json!(["https:///x"]), "no host"),
            (
                json!([format!("https://cdn.example.com/{}", "a".repeat(3000))]),
                "longer",
            ),
            (json!("https://cdn.example.com/x"), "not a list"),
            (json!([7]), "not a string"),
        ] {
            let why =
                message(check_manifest(&image(urls.clone()), OCI_MANIFEST, &cdn).unwrap_err());
            assert!(why.contains(expected), "{urls}: {why}");
            assert!(why.len() < 600, "messages stay short: {why}");
        }
        // Any descriptor: config, index entries, subject.
        let mut doc = image(Value::Null);
        doc["config"]["urls"] = json!(["https://tracker.example/c"]);
        let why = message(check_manifest(&doc, OCI_MANIFEST, &cdn).unwrap_err());
        assert!(why.starts_with("config.urls[0]"), "{why}");
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:dd", "size": 1,
                           "urls": ["https://tracker.example/m"]}],
        });
        let why = message(check_manifest(&index, OCI_INDEX, &cdn).unwrap_err());
        assert!(why.starts_with("manifests[0].urls[0]"), "{why}");
        let mut doc = image(Value::Null);
        doc["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": "sha256:ee", "size": 1,
                                "urls": ["https://tracker.example/s"]});
        let why = message(check_manifest(&doc, OCI_MANIFEST, &cdn).unwrap_err());
        assert!(why.starts_with("subject.urls[0]"), "{why}");
    }

    #[test]
    fn ambiguous_documents_and_other_schema_versions_are_refused() {
        let none = ManifestUrls::default();
        let both = json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:aa", "size": 2},
            "layers": [],
            "manifests": [],
        });
        for media_type in [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST] {
            let why = message(check_manifest(&both, media_type, &none).unwrap_err());
            assert!(why.contains("both"), "{media_type}: {why}");
        }
        let index_with_layers = json!({"schemaVersion": 2, "layers": []});
        let why = message(check_manifest(&index_with_layers, OCI_INDEX, &none).unwrap_err());
        assert!(why.contains("must not have layers"), "{why}");
        let manifest_with_manifests = json!({"schemaVersion": 2, "manifests": []});
        let why =
            message(check_manifest(&manifest_with_manifests, DOCKER_MANIFEST, &none).unwrap_err());
        assert!(why.contains("must not have manifests"), "{why}");
        // `null` is absent.
        let fine = json!({"schemaVersion": 2, "manifests": [], "layers": null});
        assert!(check_manifest(&fine, OCI_INDEX, &none).is_ok());

        for (version, expected) in [
            (json!(1), "schemaVersion 1"),
            (json!(3), "schemaVersion 3"),
            (json!("2"), "must be 2"),
            (json!(2.5), "must be 2"),
            (json!(-2), "must be 2"),
        ] {
            let mut doc = image(Value::Null);
            doc["schemaVersion"] = version;
            let why = message(check_manifest(&doc, OCI_MANIFEST, &none).unwrap_err());
            assert!(why.contains(expected), "{why}");
        }
        let mut doc = image(Value::Null);
        doc.as_object_mut().unwrap().remove("schemaVersion");
        let why = message(check_manifest(&doc, OCI_MANIFEST, &none).unwrap_err());
        assert!(why.contains("missing"), "{why}");
        let why = message(check_manifest(&json!([1, 2]), OCI_MANIFEST, &none).unwrap_err());
        assert!(why.contains("JSON object"), "{why}");
    }

    #[test]
    fn patterns_parse_or_say_why() {
        let p: UrlPattern = r"^https://cdn\.example\.com/".parse().unwrap();
        assert_eq!(p.to_string(), r"^https://cdn\.example\.com/");
        assert!(p.is_match("https://cdn.example.com/x"));
        assert!(!p.is_match("https://cdnXexample.com/x"));
        let e = "(unclosed".parse::<UrlPattern>().unwrap_err();
        assert!(
            e.to_string().contains("bad URL pattern \"(unclosed\""),
            "{e}"
        );
    }
}
