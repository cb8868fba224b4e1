//! `CloudFrontedS3Storage` configuration: every `S3Storage` key, Quay's
//! CloudFront keys (`cloudfront_distribution_domain`, `cloudfront_key_id`,
//! `cloudfront_privatekey_filename`, `cloudfront_distribution_org_overrides`)
//! and stowage's own (signing mode, key group keys, policy, hash, bypass,
//! cache). Listed with defaults in `docs/configuration.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stowage_core::config::{ConfigErrors, FromParams, Params};
use stowage_s3::S3Config;

use crate::keys;
use crate::signer::{resolve_mode, HashAlgorithm, SigningMode};

/// One signing key: its CloudFront id and the private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyEntry {
    /// `APKA…` (legacy key pair) or `K…` (public key of a key group); with
    /// `key_id_file`, the id the file held when the configuration was read.
    pub key_id: String,
    /// PEM file of the private key (read when the driver starts, and again
    /// when it changes).
    pub private_key_file: PathBuf,
    /// A file holding the key id (`cloudfront_key_id_file`, `key_id_file`
    /// in `cloudfront_key_group_keys`), read again with the key when either
    /// changes, so that a rotation replaces both; `None` when the id is
    /// given in the configuration.
    pub key_id_file: Option<PathBuf>,
}

impl KeyEntry {
    /// The key `key_id` in `private_key_file`, its id given (no
    /// `key_id_file`).
    pub fn new(key_id: impl Into<String>, private_key_file: impl Into<PathBuf>) -> Self {
        Self {
            key_id: key_id.into(),
            private_key_file: private_key_file.into(),
            key_id_file: None,
        }
    }
}

/// Canned or custom policies on download URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyKind {
    /// `Expires=`: the shortest URLs (Quay's choice).
    #[default]
    Canned,
    /// `Policy=`: carries the client IP when `restrict_to_client_ip` is set.
    Custom,
}

/// What is said when there is no signing key.
const NO_KEY: &str = "no signing key: give cloudfront_key_id + cloudfront_privatekey_filename, or \
                      cloudfront_key_group_keys (a list of key_id + private_key_filename)";

/// What is said of several keys in legacy mode.
const LEGACY_ONE_KEY: &str = "legacy key pairs sign with one root-account key pair \
                              (cloudfront_key_id); several keys for rotation need a trusted key \
                              group (K... ids)";

/// What is said of a client IP restriction on a canned policy.
const CANNED_NO_IP: &str =
    "a canned policy cannot carry the client IP; set cloudfront_policy: custom";

/// The longest `cloudfront_expiry_granularity_seconds` and
/// `cloudfront_key_reload_seconds`.
const LONGEST_SECONDS: u64 = 3600;

/// A validated `CloudFrontedS3Storage` configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CloudFrontConfig {
    /// The S3 side: bucket, prefix, credentials, endpoint.
    pub s3: S3Config,
    /// Base URL of the distribution (`cloudfront_distribution_domain`; a bare
    /// domain means `https://domain`).
    pub distribution_url: String,
    /// Base URLs per namespace (`cloudfront_distribution_org_overrides`).
    pub org_overrides: BTreeMap<String, String>,
    /// The mode as configured (`cloudfront_signing_mode`, default `auto`).
    pub configured_mode: SigningMode,
    /// The mode in force (`auto` resolved from the key id).
    pub mode: SigningMode,
    /// Signing keys: the first signs, the others stay loaded for rotation.
    pub keys: Vec<KeyEntry>,
    /// Canned or custom policy (`cloudfront_policy`, default `canned`).
    pub policy: PolicyKind,
    /// Restrict custom-policy URLs to the client's address
    /// (`cloudfront_restrict_to_client_ip`, default false).
    pub restrict_to_client_ip: bool,
    /// Hash of signatures (`cloudfront_hash_algorithm`, default `sha1`).
    pub hash: HashAlgorithm,
    /// Without a client IP, hand out S3 URLs (Quay's behaviour)
    /// (`cloudfront_bypass_without_client_ip`, default true).
    pub bypass_without_client_ip: bool,
    /// AWS's `ip-ranges.json`, reloaded when it changes
    /// (`cloudfront_aws_ip_ranges_file`); clients inside get S3 URLs.
    pub aws_ip_ranges_file: Option<PathBuf>,
    /// Only these AWS regions count as inside AWS
    /// (`cloudfront_aws_bypass_regions`; empty: all of AWS).
    pub aws_bypass_regions: Vec<String>,
    /// Signed URLs kept (`cloudfront_url_cache_size`, default 10000; 0
    /// turns the cache off).
    pub cache_size: usize,
    /// Expiries are rounded up to a multiple of this, so one signed URL
    /// serves every pull in the window (`cloudfront_expiry_granularity_seconds`,
    /// default 60).
    pub expiry_granularity: Duration,
    /// `validate` fetches a signed URL of its probe object through the
    /// distribution (`cloudfront_validate_fetch`, default true).
    pub validate_fetch: bool,
    /// How often the key files (and key id files) are looked at for a
    /// change (`cloudfront_key_reload_seconds`, default 10; zero: only
    /// [`crate::reload_signing_keys`], which `stowage serve` calls on
    /// SIGHUP).
    pub key_reload_interval: Duration,
}

impl CloudFrontConfig {
    /// A configuration signing with `key_id` and `private_key_file` for
    /// `distribution`, with every other default.
    pub fn new(
        s3: S3Config,
        distribution: &str,
        key_id: impl Into<String>,
        private_key_file: impl Into<PathBuf>,
    ) -> Self {
        let key_id = key_id.into();
        let mode = resolve_mode(SigningMode::Auto, &key_id).unwrap_or(SigningMode::KeyGroup);
        Self {
            s3,
            distribution_url: base_url(distribution),
            org_overrides: BTreeMap::new(),
            configured_mode: SigningMode::Auto,
            mode,
            keys: vec![KeyEntry {
                key_id,
                private_key_file: private_key_file.into(),
                key_id_file: None,
            }],
            policy: PolicyKind::Canned,
            restrict_to_client_ip: false,
            hash: HashAlgorithm::Sha1,
            bypass_without_client_ip: true,
            aws_ip_ranges_file: None,
            aws_bypass_regions: Vec::new(),
            cache_size: 10_000,
            expiry_granularity: Duration::from_secs(60),
            validate_fetch: true,
            key_reload_interval: Duration::from_secs(10),
        }
    }

    /// Every problem of this configuration, each with the key of the field
    /// it is about: those of [`CloudFrontConfig::s3`]
    /// ([`S3Config::problems`]), a distribution or override that is not a
    /// domain (or an `http(s)://` URL of one), no signing key, key ids that
    /// contradict the signing mode or each other, a `mode` other than the
    /// one the key ids give, several keys in legacy mode, an empty key
    /// file name, a client IP restriction on a canned policy, an expiry
    /// granularity or key reload interval above an hour. Key files are not
    /// read: a key that cannot be loaded does not stop the driver (its
    /// URLs fall back to S3 presigned ones).
    ///
    /// The one check of a configuration, however it was built:
    /// [`CloudFrontConfig::read`] runs it on what it read, and
    /// [`crate::CloudFrontedS3Storage::new`] (and `with_credential_source`)
    /// refuses a configuration with problems, listing all of them.
    pub fn problems(&self) -> ConfigErrors {
        let mut errs = self.s3.problems();
        if let Some(why) = domain_problem(&self.distribution_url) {
            errs.push(keys::CLOUDFRONT_DISTRIBUTION_DOMAIN, why);
        }
        for (namespace, url) in &self.org_overrides {
            if let Some(why) = domain_problem(url) {
                errs.push(
                    format!(
                        "{}.{namespace}",
                        keys::CLOUDFRONT_DISTRIBUTION_ORG_OVERRIDES
                    ),
                    why,
                );
            }
        }
        if self.keys.is_empty() {
            errs.push(keys::CLOUDFRONT_KEY_ID, NO_KEY);
        }
        // One key is the top-level keys' (`cloudfront_key_id`), several a
        // key group's.
        let single = self.keys.len() == 1;
        let mut mode = self.configured_mode;
        let mut ids_agree = true;
        for (i, entry) in self.keys.iter().enumerate() {
            let (id_key, file_key) = if single {
                (
                    keys::CLOUDFRONT_KEY_ID.to_string(),
                    keys::CLOUDFRONT_PRIVATEKEY_FILENAME.to_string(),
                )
            } else {
                let at = format!("{}[{i}]", keys::CLOUDFRONT_KEY_GROUP_KEYS);
                (format!("{at}.key_id"), format!("{at}.private_key_filename"))
            };
            match resolve_mode(mode, &entry.key_id) {
                Ok(m) => mode = m,
                Err(why) => {
                    errs.push(id_key, why);
                    ids_agree = false;
                }
            }
            if entry.private_key_file.as_os_str().is_empty() {
                errs.push(file_key, "empty: give the PEM file of the private key");
            }
        }
        if ids_agree && !self.keys.is_empty() && mode != self.mode {
            errs.push(
                keys::CLOUDFRONT_SIGNING_MODE,
                format!(
                    "mode is {} but the key ids (with the configured mode {}) give {mode}",
                    self.mode, self.configured_mode
                ),
            );
        }
        if mode == SigningMode::LegacyKeyPair && self.keys.len() > 1 {
            errs.push(keys::CLOUDFRONT_KEY_GROUP_KEYS, LEGACY_ONE_KEY);
        }
        if self.restrict_to_client_ip && self.policy == PolicyKind::Canned {
            errs.push(keys::CLOUDFRONT_RESTRICT_TO_CLIENT_IP, CANNED_NO_IP);
        }
        let longest = Duration::from_secs(LONGEST_SECONDS);
        if self.expiry_granularity > longest {
            errs.push(
                keys::CLOUDFRONT_EXPIRY_GRANULARITY_SECONDS,
                format!(
                    "expiry_granularity is {:?}: it would stretch URL lifetimes by more than an \
                     hour; use at most {longest:?}",
                    self.expiry_granularity
                ),
            );
        }
        if self.key_reload_interval > longest {
            errs.push(
                keys::CLOUDFRONT_KEY_RELOAD_SECONDS,
                format!(
                    "key_reload_interval is {:?}: use zero (reload on SIGHUP only) up to \
                     {longest:?}",
                    self.key_reload_interval
                ),
            );
        }
        errs
    }

    /// Reads the keys into `params`; `None` when a problem was recorded.
    /// Ends with [`CloudFrontConfig::problems`] on what it read.
    pub fn read(params: &mut Params<'_>) -> Option<Self> {
        let domain = params.required_string(keys::CLOUDFRONT_DISTRIBUTION_DOMAIN);
        let key_id = params.string(keys::CLOUDFRONT_KEY_ID);
        let key_id_file = params.path(keys::CLOUDFRONT_KEY_ID_FILE);
        let key_file = params.path(keys::CLOUDFRONT_PRIVATEKEY_FILENAME);
        let mode_text = params.string(keys::CLOUDFRONT_SIGNING_MODE);
        let group = params.list_of_maps(keys::CLOUDFRONT_KEY_GROUP_KEYS);
        let overrides = params.map(keys::CLOUDFRONT_DISTRIBUTION_ORG_OVERRIDES);
        let policy = params.string(keys::CLOUDFRONT_POLICY);
        let restrict = params.bool(keys::CLOUDFRONT_RESTRICT_TO_CLIENT_IP);
        let hash = params.string(keys::CLOUDFRONT_HASH_ALGORITHM);
        let bypass = params.bool(keys::CLOUDFRONT_BYPASS_WITHOUT_CLIENT_IP);
        let ranges = params.path(keys::CLOUDFRONT_AWS_IP_RANGES_FILE);
        let regions = params.string_list(keys::CLOUDFRONT_AWS_BYPASS_REGIONS);
        let cache_size = params.u64(keys::CLOUDFRONT_URL_CACHE_SIZE);
        let granularity = params.u64(keys::CLOUDFRONT_EXPIRY_GRANULARITY_SECONDS);
        let validate_fetch = params.bool(keys::CLOUDFRONT_VALIDATE_FETCH);
        let reload = params.u64(keys::CLOUDFRONT_KEY_RELOAD_SECONDS);
        let s3 = S3Config::read(params);
        // Problems of the CloudFront keys (S3's are in `s3` being `None`).
        let before = params.problem_count();
        if let Some(d) = &domain {
            if let Some(why) = domain_problem(d) {
                params.problem(keys::CLOUDFRONT_DISTRIBUTION_DOMAIN, why);
            }
        }
        let mut org_overrides = BTreeMap::new();
        for (ns, value) in overrides.into_iter().flatten() {
            let key = format!("cloudfront_distribution_org_overrides.{ns}");
            match value.as_str() {
                Some(d) => match domain_problem(d) {
                    None => {
                        org_overrides.insert(ns.clone(), base_url(d));
                    }
                    Some(why) => params.problem(&key, why),
                },
                None => params.problem(&key, "expected a domain name"),
            }
        }
        let configured_mode = match mode_text.as_deref().map(SigningMode::parse) {
            None => SigningMode::Auto,
            Some(Ok(m)) => m,
            Some(Err(why)) => {
                params.problem(keys::CLOUDFRONT_SIGNING_MODE, why);
                SigningMode::Auto
            }
        };

        let mut keys = Vec::new();
        // The top-level key's id: given, or read from a file (`Err` when
        // that file is refused, already recorded as a problem).
        let top_id = match (key_id, key_id_file) {
            (Some(_), Some(_)) => {
                params.problem(
                    keys::CLOUDFRONT_KEY_ID_FILE,
                    "give cloudfront_key_id or cloudfront_key_id_file, not both",
                );
                Err(())
            }
            (Some(id), None) => Ok(Some((id, None))),
            (None, Some(file)) => match read_key_id(&file) {
                Ok(id) => Ok(Some((id, Some(file)))),
                Err(why) => {
                    params.problem(
                        keys::CLOUDFRONT_KEY_ID_FILE,
                        format!("{}: {why}", file.display()),
                    );
                    Err(())
                }
            },
            (None, None) => Ok(None),
        };
        match (top_id, key_file) {
            (Ok(Some((id, id_file))), Some(file)) => keys.push(KeyEntry {
                key_id: id,
                private_key_file: file,
                key_id_file: id_file,
            }),
            (Ok(Some(_)), None) => params.problem(
                keys::CLOUDFRONT_PRIVATEKEY_FILENAME,
                "cloudfront_key_id needs cloudfront_privatekey_filename, the PEM file of its \
                 private key",
            ),
            (Ok(None), Some(_)) => params.problem(
                keys::CLOUDFRONT_KEY_ID,
                "cloudfront_privatekey_filename needs cloudfront_key_id (or \
                 cloudfront_key_id_file), the id CloudFront shows for the key",
            ),
            (Ok(None), None) | (Err(()), _) => {}
        }
        let top_keys = keys.len();
        for (i, entry) in group.iter().flatten().enumerate() {
            let at = format!("cloudfront_key_group_keys[{i}]");
            let id = entry.get("key_id").and_then(|v| v.as_str());
            let id_file = entry.get("key_id_file").and_then(|v| v.as_str());
            let file = entry.get("private_key_filename").and_then(|v| v.as_str());
            for k in entry.keys() {
                if !["key_id", "key_id_file", "private_key_filename"].contains(&k.as_str()) {
                    params.problem(
                        &format!("{at}.{k}"),
                        "unknown key; accepted keys: key_id, key_id_file, private_key_filename",
                    );
                }
            }
            let (key_id, key_id_file) = match (id, id_file) {
                (Some(_), Some(_)) => {
                    params.problem(
                        &format!("{at}.key_id_file"),
                        "give key_id or key_id_file, not both",
                    );
                    continue;
                }
                (Some(id), None) => (id.to_string(), None),
                (None, Some(name)) => {
                    let path = params.resolve_path(name);
                    match read_key_id(&path) {
                        Ok(id) => (id, Some(path)),
                        Err(why) => {
                            params.problem(
                                &format!("{at}.key_id_file"),
                                format!("{}: {why}", path.display()),
                            );
                            continue;
                        }
                    }
                }
                (None, None) => {
                    params.problem(
                        &at,
                        "each entry needs key_id (K...) or key_id_file, and private_key_filename",
                    );
                    continue;
                }
            };
            match file {
                Some(file) => keys.push(KeyEntry {
                    key_id,
                    private_key_file: params.resolve_path(file),
                    key_id_file,
                }),
                None => params.problem(
                    &at,
                    "each entry needs key_id (K...) or key_id_file, and private_key_filename",
                ),
            }
        }
        if keys.is_empty() && params.problem_count() == before {
            params.problem(keys::CLOUDFRONT_KEY_ID, NO_KEY);
        }
        let mut mode = configured_mode;
        for (i, entry) in keys.iter().enumerate() {
            let field = if entry.key_id_file.is_some() {
                "key_id_file"
            } else {
                "key_id"
            };
            let at = if i < top_keys {
                format!("cloudfront_{field}")
            } else {
                format!("cloudfront_key_group_keys[{}].{field}", i - top_keys)
            };
            match resolve_mode(mode, &entry.key_id) {
                Ok(m) => mode = m,
                Err(why) => params.problem(&at, why),
            }
        }
        if mode == SigningMode::LegacyKeyPair && keys.len() > 1 {
            params.problem(keys::CLOUDFRONT_KEY_GROUP_KEYS, LEGACY_ONE_KEY);
        }
        let policy = match policy.as_deref() {
            None | Some("canned") => PolicyKind::Canned,
            Some("custom") => PolicyKind::Custom,
            Some(other) => {
                params.problem(
                    keys::CLOUDFRONT_POLICY,
                    format!("{other:?} is not a policy kind: canned or custom"),
                );
                PolicyKind::Canned
            }
        };
        let restrict_to_client_ip = restrict.unwrap_or(false);
        if restrict_to_client_ip
            && policy == PolicyKind::Canned
            && params.has(keys::CLOUDFRONT_POLICY)
        {
            params.problem(keys::CLOUDFRONT_RESTRICT_TO_CLIENT_IP, CANNED_NO_IP);
        }
        let hash = match hash.as_deref().map(HashAlgorithm::parse) {
            None => HashAlgorithm::Sha1,
            Some(Ok(h)) => h,
            Some(Err(why)) => {
                params.problem(keys::CLOUDFRONT_HASH_ALGORITHM, why);
                HashAlgorithm::Sha1
            }
        };
        let granularity = granularity.unwrap_or(60);
        if granularity > LONGEST_SECONDS {
            params.problem(keys::CLOUDFRONT_EXPIRY_GRANULARITY_SECONDS,
                format!("{granularity} s would stretch URL lifetimes by up to an hour; use at most 3600")
            );
        }
        let reload = reload.unwrap_or(10);
        if reload > LONGEST_SECONDS {
            params.problem(
                keys::CLOUDFRONT_KEY_RELOAD_SECONDS,
                format!("{reload}: use 0 (reload on SIGHUP only) to 3600"),
            );
        }
        if params.problem_count() != before {
            return None;
        }
        let config = Self {
            s3: s3?,
            distribution_url: base_url(&domain?),
            org_overrides,
            configured_mode,
            mode,
            keys,
            policy: if restrict_to_client_ip {
                PolicyKind::Custom
            } else {
                policy
            },
            restrict_to_client_ip,
            hash,
            bypass_without_client_ip: bypass.unwrap_or(true),
            aws_ip_ranges_file: ranges,
            aws_bypass_regions: regions.unwrap_or_default(),
            cache_size: usize::try_from(cache_size.unwrap_or(10_000)).unwrap_or(usize::MAX),
            expiry_granularity: Duration::from_secs(granularity.max(1)),
            validate_fetch: validate_fetch.unwrap_or(true),
            key_reload_interval: Duration::from_secs(reload),
        };
        // The checks of any configuration, on what was read (the S3 keys'
        // problems are recorded by `S3Config::read` already).
        params.extend_unreported(config.problems());
        (params.problem_count() == before).then_some(config)
    }

    /// The base URL for `namespace` (its override, else the distribution).
    pub fn base_url_for(&self, namespace: Option<&str>) -> &str {
        namespace
            .and_then(|ns| self.org_overrides.get(ns))
            .unwrap_or(&self.distribution_url)
    }
}

impl FromParams for CloudFrontConfig {
    fn read_params(params: &mut Params<'_>) -> Option<Self> {
        Self::read(params)
    }
}

/// A key id read from `file`: its text without surrounding whitespace.
///
/// # Errors
/// Why the file cannot give an id.
pub(crate) fn read_key_id(file: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("cannot read the key id file: {e}"))?;
    let id = text.trim();
    if id.is_empty() {
        return Err("the key id file is empty".into());
    }
    if id.contains(char::is_whitespace) {
        return Err("the key id file holds more than one word; it holds the key id only".into());
    }
    Ok(id.to_string())
}

/// `https://domain` for a bare domain; a URL with a scheme is kept (without
/// a trailing `/`), which lets tests and private CDNs use `http://host:port`.
fn base_url(domain: &str) -> String {
    let d = domain.trim().trim_end_matches('/');
    if d.contains("://") {
        d.to_string()
    } else {
        format!("https://{d}")
    }
}

/// Why `domain` cannot be a distribution's domain, if it cannot: parsed
/// with `url::Url` (a bare domain as `https://domain`), it must be an
/// http(s) URL of a host, without path, query, fragment or credentials.
fn domain_problem(domain: &str) -> Option<String> {
    let d = domain.trim().trim_end_matches('/');
    let text = if d.contains("://") {
        d.to_string()
    } else {
        format!("https://{d}")
    };
    let bad = || {
        Some(format!(
            "{domain:?} is not a distribution domain (e.g. d111111abcdef8.cloudfront.net or \
             cdn.example.com, without a path)"
        ))
    };
    let Ok(url) = url::Url::parse(&text) else {
        return bad();
    };
    if !matches!(url.scheme(), "https" | "http") {
        return Some(format!("{domain:?}: the scheme must be https or http"));
    }
    let plain = url
        .host_str()
        .is_some_and(|h| !h.is_empty() && !h.starts_with('.'))
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && d.is_ascii()
        && !d.contains(' ');
    if plain {
        None
    } else {
        bad()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use stowage_core::config::Params;

    use super::*;

    fn parse(v: Value) -> Result<CloudFrontConfig, String> {
        let map = v.as_object().unwrap().clone();
        CloudFrontConfig::from_params(Params::new("loc[1]", &map)).map_err(|e| e.to_string())
    }

    fn base() -> Value {
        json!({
            "s3_bucket": "registry-bucket",
            "storage_path": "/registry",
            "cloudfront_distribution_domain": "d111111abcdef8.cloudfront.net",
            "cloudfront_key_id": "APKAEIBAERJR2EXAMPLE",
            "cloudfront_privatekey_filename": "/keys/cf.pem",
        })
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        v[key] = value;
        v
    }

    #[test]
    fn quay_keys_give_legacy_mode_by_shape() {
        let c = parse(base()).unwrap();
        assert_eq!(c.mode, SigningMode::LegacyKeyPair);
        assert_eq!(c.configured_mode, SigningMode::Auto);
        assert_eq!(c.distribution_url, "https://d111111abcdef8.cloudfront.net");
        assert_eq!(c.s3.root, "registry");
        assert_eq!(c.policy, PolicyKind::Canned);
        assert!(c.bypass_without_client_ip);
    }

    #[test]
    fn key_group_with_rotation_keys() {
        let v = json!({
            "s3_bucket": "registry-bucket",
            "cloudfront_distribution_domain": "http://127.0.0.1:8080",
            "cloudfront_signing_mode": "key_group",
            "cloudfront_key_group_keys": [
                {"key_id": "K2JCJMDEHXQW5F", "private_key_filename": "/k/new.pem"},
                {"key_id": "K3OLDKEY000001", "private_key_filename": "/k/old.pem"},
            ],
            "cloudfront_distribution_org_overrides": {"acme": "acme.cdn.example.com"},
            "cloudfront_hash_algorithm": "SHA256",
        });
        let c = parse(v).unwrap();
        assert_eq!(c.mode, SigningMode::KeyGroup);
        assert_eq!(c.keys.len(), 2);
        assert_eq!(c.keys[0].key_id, "K2JCJMDEHXQW5F");
        assert_eq!(c.hash, HashAlgorithm::Sha256);
        assert_eq!(c.base_url_for(Some("acme")), "https://acme.cdn.example.com");
        assert_eq!(c.base_url_for(Some("other")), "http://127.0.0.1:8080");
    }

    #[test]
    fn mode_contradicting_the_id_is_a_config_error() {
        let e = parse(with(base(), "cloudfront_signing_mode", json!("key_group"))).unwrap_err();
        assert!(e.contains("loc[1].cloudfront_key_id"), "{e}");
        assert!(e.contains("legacy CloudFront key pair id"), "{e}");
        let v = with(
            with(base(), "cloudfront_key_id", json!("K2JCJMDEHXQW5F")),
            "cloudfront_signing_mode",
            json!("legacy_key_pair"),
        );
        let e = parse(v).unwrap_err();
        assert!(e.contains("public key in a key group"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let v = json!({
            "s3_bucket": "registry-bucket",
            "cloudfront_distribution_domain": "https://d.example.net/path",
            "cloudfront_key_id": "K2JCJMDEHXQW5F",
            "cloudfront_signing_mode": "sometimes",
            "cloudfront_policy": "lax",
            "cloudfront_hash_algorithm": "md5",
            "cloudfront_key_group_keys": [{"key_id": "K3X"}],
            "cloudfront_unknown": 1,
        });
        let e = parse(v).unwrap_err();
        for key in [
            "loc[1].cloudfront_distribution_domain",
            "loc[1].cloudfront_privatekey_filename",
            "loc[1].cloudfront_signing_mode",
            "loc[1].cloudfront_policy",
            "loc[1].cloudfront_hash_algorithm",
            "loc[1].cloudfront_key_group_keys[0]",
            "loc[1].cloudfront_unknown",
        ] {
            assert!(e.contains(key), "{key} missing from:\n{e}");
        }
    }

    #[test]
    fn no_key_at_all_is_an_error() {
        let v = json!({"s3_bucket": "registry-bucket", "cloudfront_distribution_domain": "d.example.net"});
        let e = parse(v).unwrap_err();
        assert!(e.contains("no signing key"), "{e}");
    }

    #[test]
    fn key_ids_from_files_and_the_reload_interval() {
        let dir = tempfile::tempdir().unwrap();
        let id_file = dir.path().join("key-id");
        std::fs::write(&id_file, "K2JCJMDEHXQW5F\n").unwrap();
        let v = json!({
            "s3_bucket": "registry-bucket",
            "cloudfront_distribution_domain": "d.example.net",
            "cloudfront_key_id_file": id_file.to_str().unwrap(),
            "cloudfront_privatekey_filename": "/k/cf.pem",
            "cloudfront_key_reload_seconds": 0,
        });
        let c = parse(v).unwrap();
        assert_eq!(c.mode, SigningMode::KeyGroup, "from the id in the file");
        assert_eq!(c.keys[0].key_id, "K2JCJMDEHXQW5F");
        assert_eq!(c.keys[0].key_id_file.as_deref(), Some(id_file.as_path()));
        assert_eq!(c.key_reload_interval, Duration::ZERO);
        assert_eq!(
            parse(base()).unwrap().key_reload_interval,
            Duration::from_secs(10)
        );

        let v = json!({
            "s3_bucket": "registry-bucket",
            "cloudfront_distribution_domain": "d.example.net",
            "cloudfront_key_id_file": dir.path().join("missing").to_str().unwrap(),
            "cloudfront_privatekey_filename": "/k/cf.pem",
            "cloudfront_key_group_keys": [
                {"key_id": "K3X", "key_id_file": "/x", "private_key_filename": "/k"},
            ],
            "cloudfront_key_reload_seconds": 7200,
        });
        let e = parse(v).unwrap_err();
        for key in [
            "loc[1].cloudfront_key_id_file",
            "loc[1].cloudfront_key_group_keys[0].key_id_file",
            "loc[1].cloudfront_key_reload_seconds",
        ] {
            assert!(e.contains(key), "{key} missing from:\n{e}");
        }
        assert!(!e.contains("needs cloudfront_key_id"), "{e}");
    }

    #[test]
    fn a_config_built_in_code_names_every_problem() {
        let s3 = S3Config::new("").with_endpoint("x y");
        let mut c = CloudFrontConfig::new(s3, "https://d.example.net/path", "nope", "");
        c.org_overrides
            .insert("acme".into(), "ftp://acme.example.net".into());
        c.restrict_to_client_ip = true;
        c.expiry_granularity = Duration::from_secs(7200);
        c.key_reload_interval = Duration::from_secs(86_400);
        let errs = c.problems();
        let text = errs.to_string();
        for key in [
            "s3_bucket",
            "endpoint_url",
            "cloudfront_distribution_domain",
            "cloudfront_distribution_org_overrides.acme",
            "cloudfront_key_id",
            "cloudfront_privatekey_filename",
            "cloudfront_restrict_to_client_ip",
            "cloudfront_expiry_granularity_seconds",
            "cloudfront_key_reload_seconds",
        ] {
            assert!(
                errs.0.iter().any(|p| p.key == key),
                "no problem reported for {key}: {text}"
            );
        }
        let s3 = S3Config::new("registry-bucket");
        let mut c = CloudFrontConfig::new(s3, "d.example.net", "K2JCJMDEHXQW5F", "/k.pem");
        assert!(c.problems().is_empty(), "{}", c.problems());
        c.mode = SigningMode::LegacyKeyPair;
        assert!(
            c.problems().to_string().contains("cloudfront_signing_mode"),
            "{}",
            c.problems()
        );
        assert!(parse(base()).unwrap().problems().is_empty());
    }

    #[tokio::test]
    async fn the_driver_refuses_a_config_with_problems_naming_them_all() {
        let s3 = S3Config::new("registry-bucket").with_region("");
        let c = CloudFrontConfig::new(s3, "d.example.net", "nope", "/k.pem");
        let e = crate::CloudFrontedS3Storage::new(c).await.unwrap_err();
        let stowage_core::Error::Config(errs) = &e else {
            panic!("not a configuration error: {e}");
        };
        let keys: Vec<&str> = errs.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["s3_region", "cloudfront_key_id"], "{e}");
    }

    #[test]
    fn legacy_mode_takes_one_key_only() {
        let v = with(
            base(),
            "cloudfront_key_group_keys",
            json!([{"key_id": "APKAOTHER0000000000", "private_key_filename": "/k"}]),
        );
        let e = parse(v).unwrap_err();
        assert!(e.contains("one root-account key pair"), "{e}");
    }
}
