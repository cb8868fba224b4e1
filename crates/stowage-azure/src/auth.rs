//! Signing: Shared Key (the HMAC-SHA256 of the canonical request with the
//! account key, on every request when a key is configured), service SAS
//! tokens signed with the key (direct URLs, copy sources), and a SAS token
//! from the configuration (appended to every request when there is no
//! key). Keys and tokens never appear in `Debug` output, logs or errors.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use stowage_core::config::Secret;
use stowage_core::{Error, Result};

/// The Blob service API version every request and SAS names.
pub(crate) const API_VERSION: &str = "2021-08-06";

/// Characters kept as they are in a blob URL's path: unreserved ones and
/// `/`; everything else is percent-encoded (UTF-8).
pub(crate) const PATH_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Characters kept as they are in a query value: unreserved ones only.
pub(crate) const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The format of SAS times (`st`, `se`).
const SAS_TIME: &str = "%Y-%m-%dT%H:%M:%SZ";

/// A decoded account key; `Debug` shows `***`.
#[derive(Clone)]
pub(crate) struct AccountKey(Arc<Vec<u8>>);

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountKey(***)")
    }
}

impl AccountKey {
    /// The key of the base64 text the portal shows; `None` when it is not
    /// base64.
    pub(crate) fn decode(secret: &Secret) -> Option<Self> {
        base64::engine::general_purpose::STANDARD
            .decode(secret.expose().trim())
            .ok()
            .filter(|k| !k.is_empty())
            .map(|k| Self(Arc::new(k)))
    }

    /// The base64 HMAC-SHA256 of `text` with this key.
    pub(crate) fn sign(&self, text: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(text.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }
}

/// The permissions a SAS grants (its `sp` field), e.g. `racwdl`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SasPermissions(String);

impl SasPermissions {
    /// The permissions of an `sp` value.
    pub fn parse(sp: &str) -> Self {
        Self(sp.trim().to_string())
    }

    /// The `sp` letters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether permission `letter` is granted (`r` read, `w` write, `d`
    /// delete, `l` list, `c` create, `a` add, ...).
    pub fn grants(&self, letter: char) -> bool {
        self.0.contains(letter)
    }

    /// Whether it grants reading and nothing that changes data: only `r`
    /// and `l` (the only kind of token stowage hands to clients).
    pub fn is_read_only(&self) -> bool {
        self.grants('r') && self.0.chars().all(|c| c == 'r' || c == 'l')
    }

    /// The permissions the driver needs (`r` read, `w` write, `d` delete,
    /// `l` list) that this SAS does not grant.
    pub fn missing_for_driver(&self) -> Vec<char> {
        ['r', 'w', 'd', 'l']
            .into_iter()
            .filter(|c| !self.grants(*c))
            .collect()
    }
}

/// A SAS token from the configuration, with what it says about itself.
/// `Debug` shows the permissions and expiry, never the token.
#[derive(Clone)]
pub(crate) struct ConfiguredSas {
    token: Secret,
    /// Its `sp` field.
    pub(crate) permissions: SasPermissions,
    /// Its `se` field, when it parses.
    pub(crate) expiry: Option<DateTime<Utc>>,
    /// Whether it names a stored access policy (`si`), which may grant
    /// what `sp` and `se` do not say.
    pub(crate) policy: bool,
}

impl fmt::Debug for ConfiguredSas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfiguredSas")
            .field("permissions", &self.permissions)
            .field("expiry", &self.expiry)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ConfiguredSas {
    /// Reads a token (without its leading `?`).
    pub(crate) fn parse(token: &Secret) -> Self {
        let mut permissions = SasPermissions::default();
        let mut expiry = None;
        let mut policy = false;
        for (name, value) in url::form_urlencoded::parse(token.expose().as_bytes()) {
            match name.as_ref() {
                "sp" => permissions = SasPermissions::parse(&value),
                // Form decoding reads a raw `+` of a time zone as a space.
                "se" => expiry = parse_sas_time(&value.replace(' ', "+")),
                "si" => policy = true,
                _ => {}
            }
        }
        Self {
            token: token.clone(),
            permissions,
            expiry,
            policy,
        }
    }

    /// The token, to append to a request's query. Never log it.
    pub(crate) fn query(&self) -> &str {
        self.token.expose()
    }
}

/// A SAS time: ISO 8601 with or without seconds, or a date alone.
fn parse_sas_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%MZ") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// How the driver's requests are authorized.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// Shared Key with the account key.
    SharedKey {
        /// The account name.
        account: String,
        /// The key.
        key: AccountKey,
    },
    /// A SAS token from the configuration, appended to every request.
    Sas(ConfiguredSas),
}

/// The Shared Key string to sign of a Blob service request (version
/// 2015-02-21 and later): the verb, eleven standard headers (a zero
/// Content-Length as the empty string), the `x-ms-` headers sorted, and the
/// canonicalized resource: `/account` + the URL's path as sent + each
/// query parameter, lowercase and sorted, with its decoded value.
///
/// `headers` have lowercase names; `query` holds decoded values.
pub(crate) fn string_to_sign(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    content_length: u64,
    account: &str,
) -> String {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let length = if content_length == 0 {
        String::new()
    } else {
        content_length.to_string()
    };
    let mut out = String::with_capacity(256);
    out.push_str(method);
    out.push('\n');
    for name in [
        "content-encoding",
        "content-language",
        "content-length",
        "content-md5",
        "content-type",
        "date",
        "if-modified-since",
        "if-match",
        "if-none-match",
        "if-unmodified-since",
        "range",
    ] {
        if name == "content-length" {
            out.push_str(&length);
        } else {
            out.push_str(header(name));
        }
        out.push('\n');
    }
    let mut ms: Vec<&(String, String)> = headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-ms-"))
        .collect();
    ms.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in ms {
        out.push_str(name);
        out.push(':');
        out.push_str(value.trim());
        out.push('\n');
    }
    out.push('/');
    out.push_str(account);
    out.push_str(path);
    let mut params: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, value) in query {
        params
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.as_str());
    }
    for (name, mut values) in params {
        values.sort_unstable();
        out.push('\n');
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
    }
    out
}

/// The `Authorization` header value for `string_to_sign`.
pub(crate) fn shared_key_header(account: &str, key: &AccountKey, string_to_sign: &str) -> String {
    format!("SharedKey {account}:{}", key.sign(string_to_sign))
}

/// What a service SAS is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SasResource<'a> {
    /// One blob (`sr=b`).
    Blob {
        /// Its container.
        container: &'a str,
        /// Its name, as stored (not URL-encoded).
        blob: &'a str,
    },
    /// A whole container (`sr=c`).
    Container {
        /// The container.
        container: &'a str,
    },
}

/// Response headers a blob SAS makes the service send (`rscd`, ...): the
/// `response-*` query parameters of a download URL.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResponseOverrides {
    /// `rscc`: Cache-Control.
    pub(crate) cache_control: Option<String>,
    /// `rscd`: Content-Disposition.
    pub(crate) disposition: Option<String>,
    /// `rsce`: Content-Encoding.
    pub(crate) encoding: Option<String>,
    /// `rscl`: Content-Language.
    pub(crate) language: Option<String>,
    /// `rsct`: Content-Type.
    pub(crate) content_type: Option<String>,
}

/// A service SAS to sign.
#[derive(Debug, Clone)]
pub(crate) struct SasRequest<'a> {
    /// The permissions (`sp`), e.g. `r`.
    pub(crate) permissions: &'a str,
    /// When it stops working (`se`).
    pub(crate) expiry: DateTime<Utc>,
    /// `spr=https`: refused over plain HTTP.
    pub(crate) https_only: bool,
    /// What it covers.
    pub(crate) resource: SasResource<'a>,
    /// Response headers it sets.
    pub(crate) overrides: ResponseOverrides,
}

/// A service SAS token (query string, without `?`) signed with `key`
/// (version 2020-12-06 and later string to sign: permissions, start,
/// expiry, canonicalized resource, identifier, IP, protocol, version,
/// resource, snapshot time, encryption scope, then the five response
/// headers).
pub(crate) fn service_sas(account: &str, key: &AccountKey, request: &SasRequest<'_>) -> String {
    let expiry = request.expiry.format(SAS_TIME).to_string();
    let (resource, sr) = match request.resource {
        SasResource::Blob { container, blob } => {
            (format!("/blob/{account}/{container}/{blob}"), "b")
        }
        SasResource::Container { container } => (format!("/blob/{account}/{container}"), "c"),
    };
    let protocol = if request.https_only { "https" } else { "" };
    let o = &request.overrides;
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        request.permissions.to_string(),
        String::new(),
        expiry.clone(),
        resource,
        String::new(),
        String::new(),
        protocol.to_string(),
        API_VERSION.to_string(),
        sr.to_string(),
        String::new(),
        String::new(),
        field(&o.cache_control),
        field(&o.disposition),
        field(&o.encoding),
        field(&o.language),
        field(&o.content_type),
    ];
    let signature = key.sign(&fields.join("\n"));
    let mut query: Vec<(&str, String)> = vec![
        ("sv", API_VERSION.to_string()),
        ("se", expiry),
        ("sr", sr.to_string()),
        ("sp", request.permissions.to_string()),
    ];
    if request.https_only {
        query.push(("spr", "https".to_string()));
    }
    for (name, value) in [
        ("rscc", &o.cache_control),
        ("rscd", &o.disposition),
        ("rsce", &o.encoding),
        ("rscl", &o.language),
        ("rsct", &o.content_type),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    query.push(("sig", signature));
    query
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_SET)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A container service SAS token (`sr=c`, without the leading `?`) signed
/// with the account key `key` (base64, as the portal shows it): what an
/// operator gives as `sas_token` to a location without the key, and what
/// the tests use. `permissions` is an `sp` value such as `racwdl`; the
/// token works over HTTP and HTTPS.
///
/// # Errors
/// [`Error::InvalidArgument`] when `key` is not base64.
pub fn container_sas(
    account: &str,
    key: &Secret,
    container: &str,
    permissions: &str,
    expiry: DateTime<Utc>,
) -> Result<String> {
    let key = AccountKey::decode(key)
        .ok_or_else(|| Error::invalid_argument("the account key is not base64"))?;
    Ok(service_sas(
        account,
        &key,
        &SasRequest {
            permissions,
            expiry,
            https_only: false,
            resource: SasResource::Container { container },
            overrides: ResponseOverrides::default(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azurite's published development key.
    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn key() -> AccountKey {
        AccountKey::decode(&Secret::new(KEY)).unwrap()
    }

    /// The expected strings and signatures were computed independently
    /// (Python's hmac) and the same requests were accepted by Azurite.
    #[test]
    fn shared_key_matches_a_known_signature() {
        let headers = [
            (
                "content-md5".to_string(),
                "XUFAKrxLKna5cZ2REBfFkg==".to_string(),
            ),
            ("x-ms-version".to_string(), "2021-08-06".to_string()),
            (
                "x-ms-date".to_string(),
                "Sun, 06 Dec 2026 20:00:00 GMT".to_string(),
            ),
        ];
        let query = [
            ("comp".to_string(), "block".to_string()),
            ("blockid".to_string(), "QUFBQQ==".to_string()),
        ];
        let text = string_to_sign(
            "PUT",
            "/devstoreaccount1/test1/a%20b",
            &query,
            &headers,
            5,
            "devstoreaccount1",
        );
        assert_eq!(
            text,
            "PUT\n\n\n5\nXUFAKrxLKna5cZ2REBfFkg==\n\n\n\n\n\n\n\nx-ms-date:Sun, 06 Dec 2026 \
             20:00:00 GMT\nx-ms-version:2021-08-06\n/devstoreaccount1/devstoreaccount1/test1/\
             a%20b\nblockid:QUFBQQ==\ncomp:block"
        );
        assert_eq!(
            shared_key_header("devstoreaccount1", &key(), &text),
            "SharedKey devstoreaccount1:XzMKMgx5bW4fRYLHQaiTyYvlujFA3BE2nffkO4NIrA0="
        );
        let empty = string_to_sign("GET", "/a/c", &[], &[], 0, "a");
        assert_eq!(empty, "GET\n\n\n\n\n\n\n\n\n\n\n\n/a/a/c");
    }

    #[test]
    fn blob_sas_matches_a_known_signature() {
        let expiry = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let token = service_sas(
            "devstoreaccount1",
            &key(),
            &SasRequest {
                permissions: "r",
                expiry,
                https_only: false,
                resource: SasResource::Blob {
                    container: "test1",
                    blob: "dir/a b",
                },
                overrides: ResponseOverrides {
                    disposition: Some("attachment; filename=\"x\"".into()),
                    ..ResponseOverrides::default()
                },
            },
        );
        assert_eq!(
            token,
            "sv=2021-08-06&se=2030-01-01T00%3A00%3A00Z&sr=b&sp=r\
             &rscd=attachment%3B%20filename%3D%22x%22\
             &sig=PXg%2FUd1x5Bkz03aa03hfN8DcsxlSKBbjYgQ%2BrXLWXk0%3D"
        );
        let container = container_sas(
            "devstoreaccount1",
            &Secret::new(KEY),
            "test1",
            "racwdl",
            expiry,
        )
        .unwrap();
        assert!(
            container.ends_with("&sig=XUtLVOf0nW2pz0kkI8TpEN5UspNj2QQ4zFwJnqJ5ABI%3D"),
            "{container}"
        );
        assert!(container_sas("a", &Secret::new("not base64!"), "c", "r", expiry).is_err());
    }

    #[test]
    fn configured_tokens_say_what_they_grant() {
        let sas = ConfiguredSas::parse(&Secret::new(
            "sv=2021-08-06&sr=c&sp=racwdl&se=2030-01-01T00:00:00Z&sig=abc",
        ));
        assert!(sas.permissions.grants('w') && !sas.permissions.is_read_only());
        assert!(sas.permissions.missing_for_driver().is_empty());
        assert_eq!(
            sas.expiry,
            Some(
                DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
        let read = ConfiguredSas::parse(&Secret::new("sv=x&sp=rl&se=2030-01-01&sig=s"));
        assert!(read.permissions.is_read_only());
        assert_eq!(read.permissions.missing_for_driver(), vec!['w', 'd']);
        assert!(read.expiry.is_some(), "a date alone is an expiry");
        let debug = format!("{read:?}");
        assert!(!debug.contains("sig"), "{debug}");
        assert!(SasPermissions::parse("l")
            .missing_for_driver()
            .contains(&'r'));
        assert!(!SasPermissions::parse("l").is_read_only());
        assert_eq!(
            parse_sas_time("2030-01-01T10:30Z").map(|t| t.to_rfc3339()),
            Some("2030-01-01T10:30:00+00:00".to_string())
        );
        assert_eq!(format!("{:?}", key()), "AccountKey(***)");
    }
}
