//! `AzureStorage` configuration: Quay's keys plus stowage's transfer and
//! retry settings. Every key, its default and meaning is listed in
//! `docs/configuration.md`.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use stowage_core::config::{ConfigErrors, FromParams, Params, Secret};

use crate::keys;
use crate::limits::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};

const MIB: u64 = 1024 * 1024;

/// The largest `azure_max_attempts` accepted.
pub(crate) const MAX_ATTEMPTS_LIMIT: u32 = 20;

// The accepted values, in one place for the reader (in the keys' units)
// and for [`AzureConfig::problems`] (in the fields' units).

/// `azure_upload_concurrency`: blocks in flight per write.
const UPLOAD_CONCURRENCY: std::ops::RangeInclusive<u64> = 1..=64;
/// `azure_max_blocks_in_flight`: blocks being sent across every write.
const MAX_BLOCKS_IN_FLIGHT: std::ops::RangeInclusive<u64> = 1..=1024;
/// The retry budget and the connect, first-byte and progress timeouts,
/// in seconds.
const TIMEOUT_SECONDS: std::ops::RangeInclusive<u64> = 1..=3600;
/// `azure_request_timeout_seconds` and `azure_copy_timeout_seconds`.
const LONG_TIMEOUT_SECONDS: std::ops::RangeInclusive<u64> = 1..=86_400;
/// `azure_min_upload_rate_kib`, in KiB/s.
const MIN_UPLOAD_RATE_KIB: std::ops::RangeInclusive<u64> = 1..=10 * 1024 * 1024;

/// A validated `AzureStorage` configuration.
///
/// `Debug` shows the account, container, endpoint and root, and which
/// credential is configured, never the key or the token.
#[derive(Clone)]
#[non_exhaustive]
pub struct AzureConfig {
    /// Storage account (`azure_account_name`).
    pub account: String,
    /// Container (`azure_container`).
    pub container: String,
    /// The account's access key (`azure_account_key`), base64 as the portal
    /// shows it. Signs every request (Shared Key) and the SAS of direct
    /// URLs; takes precedence over `sas_token`, as in Quay.
    pub account_key: Option<Secret>,
    /// A SAS token (`sas_token`, without the leading `?`), used when there
    /// is no account key.
    pub sas_token: Option<Secret>,
    /// The account URL (`endpoint_url`, without a trailing `/`), e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1` for Azurite; `None`:
    /// `https://<account>.blob.core.windows.net`.
    pub endpoint: Option<String>,
    /// Prefix of every blob name (`storage_path`, without leading or
    /// trailing `/`; empty for the container root).
    pub root: String,
    /// Block size of streamed writes (`azure_block_size_mb`, default 8).
    pub block_size: u64,
    /// Blocks in flight per write (`azure_upload_concurrency`, default 4).
    pub upload_concurrency: usize,
    /// Blocks being sent at once across every write of the driver
    /// (`azure_max_blocks_in_flight`, default 16).
    pub max_blocks_in_flight: usize,
    /// Whether Put Blob and Put Block carry a Content-MD5 the server checks
    /// (`azure_content_md5`); `None`: on for `http://` endpoints only.
    pub content_md5: Option<bool>,
    /// Assemble chunked uploads inside Azure with Put Block From URL
    /// (`server_side_assembly`, default true).
    pub server_side_assembly: bool,
    /// Attempts per request, the first included (`azure_max_attempts`,
    /// default 15).
    pub max_attempts: u32,
    /// Time budget of one request across its attempts
    /// (`azure_retry_timeout_seconds`, default 180).
    pub retry_timeout: Duration,
    /// Connect timeout (`azure_connect_timeout_seconds`, default 10).
    pub connect_timeout: Duration,
    /// How long one attempt of a request without a body may wait for its
    /// answer (`azure_first_byte_timeout_seconds`, default 30).
    pub first_byte_timeout: Duration,
    /// How long a streamed read may go without a byte before it resumes
    /// from the next byte (`azure_progress_timeout_seconds`, default 30).
    pub progress_timeout: Duration,
    /// The slowest upload rate, in bytes per second, an attempt that sends
    /// a body allows for (`azure_min_upload_rate_kib`, default 64 KiB/s).
    pub min_upload_rate: u64,
    /// The most one attempt of any request may take
    /// (`azure_request_timeout_seconds`, default 3600).
    pub request_timeout: Duration,
    /// How long a copy that Azure runs in the background may take before
    /// it is aborted (`azure_copy_timeout_seconds`, default 600).
    pub copy_timeout: Duration,
}

impl fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureConfig")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("account_url", &self.account_url())
            .field("root", &self.root)
            .field("credential", &self.credential_kind())
            .field("block_size", &self.block_size)
            .field("upload_concurrency", &self.upload_concurrency)
            .finish_non_exhaustive()
    }
}

impl AzureConfig {
    /// A configuration of `container` in `account` with every default and
    /// no credential yet (give one with [`AzureConfig::with_account_key`] or
    /// [`AzureConfig::with_sas_token`]).
    pub fn new(account: impl Into<String>, container: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            container: container.into(),
            account_key: None,
            sas_token: None,
            endpoint: None,
            root: String::new(),
            block_size: 8 * MIB,
            upload_concurrency: 4,
            max_blocks_in_flight: 16,
            content_md5: None,
            server_side_assembly: true,
            max_attempts: 15,
            retry_timeout: Duration::from_secs(180),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            progress_timeout: Duration::from_secs(30),
            min_upload_rate: 64 * 1024,
            request_timeout: Duration::from_secs(3600),
            copy_timeout: Duration::from_secs(600),
        }
    }

    /// Sets the account key.
    pub fn with_account_key(mut self, key: Secret) -> Self {
        self.account_key = Some(key);
        self
    }

    /// Sets a SAS token (a leading `?` is dropped).
    pub fn with_sas_token(mut self, token: Secret) -> Self {
        self.sas_token = Some(normalize_sas(&token));
        self
    }

    /// Sets the account URL (a trailing `/` is dropped).
    pub fn with_endpoint(mut self, account_url: impl Into<String>) -> Self {
        self.endpoint = Some(account_url.into().trim_end_matches('/').to_string());
        self
    }

    /// Sets the blob name prefix (leading and trailing `/` are dropped).
    pub fn with_root(mut self, root: &str) -> Self {
        self.root = normalize_root(root);
        self
    }

    /// The account URL requests go to: `endpoint_url`, else
    /// `https://<account>.blob.core.windows.net`.
    pub fn account_url(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{}.blob.core.windows.net", self.account))
    }

    /// Whether requests go over plain HTTP.
    pub fn is_plain_http(&self) -> bool {
        self.account_url()
            .to_ascii_lowercase()
            .starts_with("http://")
    }

    /// Whether Put Blob and Put Block carry a Content-MD5: as configured,
    /// else on plain HTTP only (nothing else protects the bytes there;
    /// over HTTPS every TLS record is authenticated).
    pub fn uses_content_md5(&self) -> bool {
        self.content_md5.unwrap_or_else(|| self.is_plain_http())
    }

    /// Which credential signs requests: `account key`, `SAS token`, or
    /// `none`.
    pub fn credential_kind(&self) -> &'static str {
        match (&self.account_key, &self.sas_token) {
            (Some(_), _) => "account key",
            (None, Some(_)) => "SAS token",
            (None, None) => "none",
        }
    }

    /// The timeout of one attempt of a request that sends `size` body
    /// bytes: the first-byte timeout plus the body at `min_upload_rate`, at
    /// most `request_timeout`: 158 s for a default 8 MiB block (30 s + 128 s).
    pub fn body_attempt_timeout(&self, size: u64) -> Duration {
        let transfer = Duration::from_secs(size / self.min_upload_rate.max(1));
        (self.first_byte_timeout + transfer).min(self.request_timeout)
    }

    /// Every problem of this configuration, each with the key it is about:
    /// names Azure refuses, no credential, an account key that is not
    /// base64, a SAS token without signature or version, an endpoint that
    /// is not an `http(s)://` account URL, a blob prefix with an empty,
    /// `.` or `..` segment, sizes, counts, attempts and timeouts outside
    /// what the keys accept (zero included).
    ///
    /// The one check of a configuration, however it was built:
    /// [`AzureConfig::read`] runs it on what it read (reporting with key
    /// paths the problems the values as written did not already show), and
    /// [`crate::AzureStorage::new`] refuses a configuration with problems,
    /// listing all of them.
    pub fn problems(&self) -> ConfigErrors {
        let mut errs = ConfigErrors::default();
        if let Some(p) = account_problem(&self.account) {
            errs.push(keys::AZURE_ACCOUNT_NAME, p);
        }
        if let Some(p) = container_problem(&self.container) {
            errs.push(keys::AZURE_CONTAINER, p);
        }
        match (&self.account_key, &self.sas_token) {
            (None, None) => errs.push(
                keys::AZURE_ACCOUNT_KEY,
                "give azure_account_key or sas_token: one of them authenticates the requests",
            ),
            (key, sas) => {
                if let Some(p) = key.as_ref().and_then(key_problem) {
                    errs.push(keys::AZURE_ACCOUNT_KEY, p);
                }
                if let Some(p) = sas.as_ref().and_then(sas_problem) {
                    errs.push(keys::SAS_TOKEN, p);
                }
            }
        }
        if let Some(e) = &self.endpoint {
            if let Some(p) = endpoint_problem(e) {
                errs.push(keys::ENDPOINT_URL, p);
            }
        }
        if let Some(p) = root_problem(&self.root) {
            errs.push(keys::STORAGE_PATH, format!("{:?} {p}", self.root));
        }
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size) {
            errs.push(
                keys::AZURE_BLOCK_SIZE_MB,
                "blocks are 1 MiB to 4000 MiB (Azure's largest block)",
            );
        }
        errs.check_count(
            keys::AZURE_UPLOAD_CONCURRENCY,
            "upload_concurrency",
            self.upload_concurrency as u64,
            UPLOAD_CONCURRENCY,
        );
        errs.check_count(
            keys::AZURE_MAX_BLOCKS_IN_FLIGHT,
            "max_blocks_in_flight",
            self.max_blocks_in_flight as u64,
            MAX_BLOCKS_IN_FLIGHT,
        );
        errs.check_count(
            keys::AZURE_MAX_ATTEMPTS,
            "max_attempts",
            u64::from(self.max_attempts),
            1..=u64::from(MAX_ATTEMPTS_LIMIT),
        );
        let short = Duration::from_secs(*TIMEOUT_SECONDS.end());
        let long = Duration::from_secs(*LONG_TIMEOUT_SECONDS.end());
        for (key, field, value, longest) in [
            (
                keys::AZURE_RETRY_TIMEOUT_SECONDS,
                "retry_timeout",
                self.retry_timeout,
                short,
            ),
            (
                keys::AZURE_CONNECT_TIMEOUT_SECONDS,
                "connect_timeout",
                self.connect_timeout,
                short,
            ),
            (
                keys::AZURE_FIRST_BYTE_TIMEOUT_SECONDS,
                "first_byte_timeout",
                self.first_byte_timeout,
                short,
            ),
            (
                keys::AZURE_PROGRESS_TIMEOUT_SECONDS,
                "progress_timeout",
                self.progress_timeout,
                short,
            ),
            (
                keys::AZURE_REQUEST_TIMEOUT_SECONDS,
                "request_timeout",
                self.request_timeout,
                long,
            ),
            (
                keys::AZURE_COPY_TIMEOUT_SECONDS,
                "copy_timeout",
                self.copy_timeout,
                long,
            ),
        ] {
            errs.check_duration(key, field, value, longest);
        }
        let rate = MIN_UPLOAD_RATE_KIB;
        errs.check_size(
            keys::AZURE_MIN_UPLOAD_RATE_KIB,
            "min_upload_rate (per second)",
            self.min_upload_rate,
            rate.start() * 1024..=rate.end() * 1024,
        );
        errs
    }

    /// Reads the Azure keys from `params`, recording every problem there
    /// with its key path; `None` when a problem was recorded. Ends with
    /// [`AzureConfig::problems`] on what it read (the names, the
    /// credentials, the storage path).
    pub fn read(params: &mut Params<'_>) -> Option<Self> {
        let before = params.problem_count();
        let container = params.required_string(keys::AZURE_CONTAINER);
        let account = params.required_string(keys::AZURE_ACCOUNT_NAME);
        let mut c = Self::new(
            account.clone().unwrap_or_default(),
            container.clone().unwrap_or_default(),
        );
        c.account_key = params.secret(keys::AZURE_ACCOUNT_KEY);
        c.sas_token = params.secret(keys::SAS_TOKEN).map(|t| normalize_sas(&t));
        let credential_keys = [
            keys::AZURE_ACCOUNT_KEY,
            "azure_account_key_file",
            "azure_account_key_env",
            keys::SAS_TOKEN,
            "sas_token_file",
            "sas_token_env",
        ];
        let any_credential_key = credential_keys.iter().any(|k| params.has(k));
        if !any_credential_key {
            params.problem(
                keys::AZURE_ACCOUNT_KEY,
                "give azure_account_key or sas_token (or their _file/_env forms): one of them \
                 authenticates the requests",
            );
        }
        if let Some(url) = params.http_url(keys::ENDPOINT_URL) {
            let text = url.as_str().trim_end_matches('/').to_string();
            match endpoint_problem(&text) {
                Some(p) => params.problem(keys::ENDPOINT_URL, p),
                None => c.endpoint = Some(text),
            }
        }
        if let Some(root) = params.string(keys::STORAGE_PATH) {
            c.root = normalize_root(&root);
        }
        c.read_transfer_keys(params);
        // The checks of any configuration, on the keys whose values as
        // written had no problem. A credential given in a form that failed
        // (an unreadable file, an unset variable) has its own problem
        // already: "give one" would only mislead.
        let mut checks = c.problems();
        if any_credential_key && c.account_key.is_none() {
            checks.0.retain(|p| p.key != keys::AZURE_ACCOUNT_KEY);
        }
        params.extend_unreported(checks);
        let complete = container.is_some() && account.is_some();
        (params.problem_count() == before && complete).then_some(c)
    }

    /// Reads stowage's transfer, retry and timeout keys into `self`,
    /// recording problems in `params`; `false` when one was recorded.
    /// Every value is range-checked before any arithmetic.
    pub fn read_transfer_keys(&mut self, params: &mut Params<'_>) -> bool {
        let before = params.problem_count();
        let blocks_mib = MIN_BLOCK_SIZE / MIB..=MAX_BLOCK_SIZE / MIB;
        if let Some(mb) = params.u64_in(keys::AZURE_BLOCK_SIZE_MB, blocks_mib) {
            self.block_size = mb * MIB;
        }
        if let Some(n) = params.u64_in(keys::AZURE_UPLOAD_CONCURRENCY, UPLOAD_CONCURRENCY) {
            self.upload_concurrency = n as usize;
        }
        if let Some(n) = params.u64_in(keys::AZURE_MAX_BLOCKS_IN_FLIGHT, MAX_BLOCKS_IN_FLIGHT) {
            self.max_blocks_in_flight = n as usize;
        }
        if let Some(b) = params.bool(keys::AZURE_CONTENT_MD5) {
            self.content_md5 = Some(b);
        }
        if let Some(b) = params.bool(keys::SERVER_SIDE_ASSEMBLY) {
            self.server_side_assembly = b;
        }
        if let Some(n) = params.u64_in(keys::AZURE_MAX_ATTEMPTS, 1..=u64::from(MAX_ATTEMPTS_LIMIT))
        {
            self.max_attempts = n as u32;
        }
        if let Some(s) = params.u64_in(keys::AZURE_RETRY_TIMEOUT_SECONDS, TIMEOUT_SECONDS) {
            self.retry_timeout = Duration::from_secs(s);
        }
        if let Some(s) = params.u64_in(keys::AZURE_CONNECT_TIMEOUT_SECONDS, TIMEOUT_SECONDS) {
            self.connect_timeout = Duration::from_secs(s);
        }
        if let Some(s) = params.u64_in(keys::AZURE_FIRST_BYTE_TIMEOUT_SECONDS, TIMEOUT_SECONDS) {
            self.first_byte_timeout = Duration::from_secs(s);
        }
        if let Some(s) = params.u64_in(keys::AZURE_PROGRESS_TIMEOUT_SECONDS, TIMEOUT_SECONDS) {
            self.progress_timeout = Duration::from_secs(s);
        }
        if let Some(k) = params.u64_in(keys::AZURE_MIN_UPLOAD_RATE_KIB, MIN_UPLOAD_RATE_KIB) {
            self.min_upload_rate = k * 1024;
        }
        if let Some(s) = params.u64_in(keys::AZURE_REQUEST_TIMEOUT_SECONDS, LONG_TIMEOUT_SECONDS) {
            self.request_timeout = Duration::from_secs(s);
        }
        if let Some(s) = params.u64_in(keys::AZURE_COPY_TIMEOUT_SECONDS, LONG_TIMEOUT_SECONDS) {
            self.copy_timeout = Duration::from_secs(s);
        }
        params.problem_count() == before
    }
}

impl FromParams for AzureConfig {
    fn read_params(params: &mut Params<'_>) -> Option<Self> {
        Self::read(params)
    }
}

fn normalize_root(root: &str) -> String {
    root.trim_matches('/').to_string()
}

fn normalize_sas(token: &Secret) -> Secret {
    Secret::new(token.expose().trim().trim_start_matches('?'))
}

fn root_problem(root: &str) -> Option<&'static str> {
    (!root.is_empty()
        && root
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".."))
    .then_some("has an empty, '.' or '..' segment")
}

/// Azure's rule for account names.
fn account_problem(name: &str) -> Option<String> {
    let ok = (3..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (!ok).then(|| {
        format!("{name:?}: account names have 3 to 24 characters, lowercase letters and digits")
    })
}

/// Azure's rule for container names (and the special `$root` and `$web`).
fn container_problem(name: &str) -> Option<String> {
    if name == "$root" || name == "$web" {
        return None;
    }
    let bytes = name.as_bytes();
    let ok = (3..=63).contains(&name.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && !name.contains("--");
    (!ok).then(|| {
        format!(
            "{name:?}: container names have 3 to 63 characters, lowercase letters, digits and \
             single '-' between them"
        )
    })
}

/// Whether a key is the base64 text of an account key (never echoing it).
fn key_problem(key: &Secret) -> Option<String> {
    match base64::engine::general_purpose::STANDARD.decode(key.expose().trim()) {
        Ok(bytes) if !bytes.is_empty() => None,
        _ => Some(
            "is not an account key: expected the base64 text the portal shows (Access keys)".into(),
        ),
    }
}

/// Whether a SAS token looks like one: a query string with a signature
/// (`sig`) and a version (`sv`); the permissions and expiry may come from
/// a stored access policy (`si`) instead. Never echoes the token.
fn sas_problem(token: &Secret) -> Option<String> {
    let has =
        |name: &str| url::form_urlencoded::parse(token.expose().as_bytes()).any(|(k, _)| k == name);
    let missing: Vec<&str> = ["sv", "sig"].into_iter().filter(|n| !has(n)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "is not a SAS token: it lacks {} (a SAS token is a query string such as \
             sv=...&sp=...&se=...&sig=...)",
            missing.join(" and ")
        )
    })
}

fn endpoint_problem(url: &str) -> Option<String> {
    match url::Url::parse(url) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host().is_none() => Some(format!(
            "{url:?} must be an http:// or https:// account URL with a host"
        )),
        Ok(u) if u.query().is_some() || u.fragment().is_some() => Some(
            "the account URL carries a query: give a SAS token as sas_token, not in endpoint_url"
                .into(),
        ),
        Ok(_) => None,
        Err(e) => Some(format!("{url:?} is not a URL ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn parse(json: &str) -> Result<AzureConfig, ConfigErrors> {
        let map: Map<String, Value> = serde_json::from_str(json).unwrap();
        AzureConfig::from_params(Params::new("loc[1]", &map))
    }

    #[test]
    fn quay_keys_with_defaults() {
        let c = parse(&format!(
            r#"{{"azure_container": "quay", "azure_account_name": "quayacct",
                "azure_account_key": "{KEY}", "storage_path": "/datastorage/registry"}}"#
        ))
        .unwrap();
        assert_eq!(c.root, "datastorage/registry");
        assert_eq!(c.account_url(), "https://quayacct.blob.core.windows.net");
        assert_eq!(c.block_size, 8 * MIB);
        assert!(!c.uses_content_md5(), "HTTPS: no Content-MD5 by default");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(KEY) && dbg.contains("account key"), "{dbg}");
    }

    #[test]
    fn an_emulator_account_url_and_a_sas_token() {
        let c = parse(
            r#"{"azure_container": "quay", "azure_account_name": "devstoreaccount1",
                "sas_token": "?sv=2021-08-06&sr=c&sp=racwdl&se=2030-01-01T00:00:00Z&sig=abc%3D",
                "endpoint_url": "http://127.0.0.1:10000/devstoreaccount1/"}"#,
        )
        .unwrap();
        assert_eq!(c.account_url(), "http://127.0.0.1:10000/devstoreaccount1");
        assert!(c.uses_content_md5(), "plain HTTP: Content-MD5 on");
        let sas = c.sas_token.as_ref().unwrap().expose().to_string();
        assert!(sas.starts_with("sv="), "leading ? dropped: {sas}");
        assert_eq!(c.credential_kind(), "SAS token");
        assert!(!format!("{c:?}").contains("sig="));
    }

    #[test]
    fn missing_credentials_name_both_keys() {
        let errs = parse(r#"{"azure_container": "quay", "azure_account_name": "quayacct"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            errs.contains("loc[1].azure_account_key: give azure_account_key or sas_token"),
            "{errs}"
        );
    }

    #[test]
    fn every_bad_value_is_named_and_no_secret_is_echoed() {
        let errs = parse(
            r#"{"azure_container": "Bad_Container", "azure_account_name": "x",
                "azure_account_key": "not base64 !!", "sas_token": "sp=r",
                "endpoint_url": "ftp://h", "storage_path": "a/../b",
                "azure_block_size_mb": 5000, "azure_upload_concurrency": 0,
                "azure_max_attempts": "many", "azure_contianer": "typo"}"#,
        )
        .unwrap_err();
        let keys: Vec<String> = errs.0.iter().map(|p| p.key.clone()).collect();
        for k in [
            "azure_container",
            "azure_account_name",
            "azure_account_key",
            "sas_token",
            "endpoint_url",
            "storage_path",
            "azure_block_size_mb",
            "azure_upload_concurrency",
            "azure_max_attempts",
            "azure_contianer",
        ] {
            assert!(
                keys.contains(&format!("loc[1].{k}")),
                "no problem reported for {k}: {errs}"
            );
        }
        let text = errs.to_string();
        assert!(!text.contains("not base64 !!"), "{text}");
        assert!(text.contains("unknown key; accepted keys:"), "{text}");
    }

    #[test]
    fn required_keys_without_values_are_problems_not_panics() {
        let errs = parse(r#"{"azure_container": null, "azure_account_name": ""}"#)
            .unwrap_err()
            .to_string();
        assert!(
            errs.contains("loc[1].azure_container: required key has no value"),
            "{errs}"
        );
        assert!(
            errs.contains("loc[1].azure_account_name: required key has no value"),
            "{errs}"
        );
    }

    #[test]
    fn an_endpoint_with_a_query_is_refused() {
        let errs = parse(&format!(
            r#"{{"azure_container": "quay", "azure_account_name": "quayacct",
                "azure_account_key": "{KEY}",
                "endpoint_url": "https://quayacct.blob.core.windows.net/?sv=1&sig=x"}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(errs.contains("give a SAS token as sas_token"), "{errs}");
        assert!(!errs.contains("sig=x"), "{errs}");
    }

    #[test]
    fn transfer_keys_and_timeouts() {
        let c = parse(&format!(
            r#"{{"azure_container": "quay", "azure_account_name": "quayacct",
                "azure_account_key": "{KEY}", "azure_block_size_mb": 1,
                "azure_upload_concurrency": 8, "azure_max_blocks_in_flight": 32,
                "azure_content_md5": true, "server_side_assembly": false,
                "azure_max_attempts": 4, "azure_retry_timeout_seconds": 30,
                "azure_first_byte_timeout_seconds": 2, "azure_min_upload_rate_kib": 1024,
                "azure_request_timeout_seconds": 5, "azure_copy_timeout_seconds": 60}}"#
        ))
        .unwrap();
        assert_eq!(c.block_size, MIB);
        assert_eq!(c.upload_concurrency, 8);
        assert_eq!(c.max_blocks_in_flight, 32);
        assert!(c.uses_content_md5() && !c.server_side_assembly);
        assert_eq!(c.max_attempts, 4);
        assert_eq!(c.retry_timeout, Duration::from_secs(30));
        assert_eq!(c.copy_timeout, Duration::from_secs(60));
        assert_eq!(c.body_attempt_timeout(MIB), Duration::from_secs(3));
        assert_eq!(c.body_attempt_timeout(u64::MAX), Duration::from_secs(5));
        assert!(c.problems().is_empty());
    }

    #[test]
    fn configurations_built_in_code_are_checked_too() {
        let c = AzureConfig::new("UPPER", "ok-container");
        let text = c.problems().to_string();
        assert!(text.contains("azure_account_name"), "{text}");
        assert!(
            text.contains("give azure_account_key or sas_token"),
            "{text}"
        );
        let c = AzureConfig::new("acct", "ok-container")
            .with_account_key(Secret::new(KEY))
            .with_endpoint("http://127.0.0.1:10000/acct/");
        assert!(c.problems().is_empty(), "{}", c.problems());
        assert_eq!(c.account_url(), "http://127.0.0.1:10000/acct");
    }

    #[test]
    fn a_config_built_in_code_names_every_problem() {
        let mut c = AzureConfig::new("X", "")
            .with_account_key(Secret::new("not base64 !!"))
            .with_endpoint("x y")
            .with_root("a/../b");
        c.block_size = 0;
        c.upload_concurrency = 0;
        c.max_blocks_in_flight = 0;
        c.max_attempts = 0;
        c.connect_timeout = Duration::ZERO;
        c.copy_timeout = Duration::from_secs(u64::MAX);
        c.min_upload_rate = 0;
        let errs = c.problems();
        let text = errs.to_string();
        for key in [
            "azure_account_name",
            "azure_container",
            "azure_account_key",
            "endpoint_url",
            "storage_path",
            "azure_block_size_mb",
            "azure_upload_concurrency",
            "azure_max_blocks_in_flight",
            "azure_max_attempts",
            "azure_connect_timeout_seconds",
            "azure_copy_timeout_seconds",
            "azure_min_upload_rate_kib",
        ] {
            assert!(
                errs.0.iter().any(|p| p.key == key),
                "no problem reported for {key}: {text}"
            );
        }
        assert!(!text.contains("not base64 !!"), "{text}");
        assert!(
            text.contains("endpoint_url: \"x y\" is not a URL"),
            "{text}"
        );
        // The driver refuses it, naming them all in one error.
        let e = crate::AzureStorage::new(c).unwrap_err();
        let stowage_core::Error::Config(refused) = &e else {
            panic!("not a configuration error: {e}");
        };
        assert_eq!(refused, &errs);
    }

    #[test]
    fn a_credential_that_failed_to_load_is_not_also_reported_missing() {
        let errs = parse(
            r#"{"azure_container": "quay", "azure_account_name": "quayacct",
                "azure_account_key_env": "STOWAGE_TEST_SURELY_UNSET_VARIABLE"}"#,
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["loc[1].azure_account_key_env"], "{errs}");
    }

    #[test]
    fn container_names_follow_azure_rules() {
        for ok in ["abc", "quay-registry", "a1b", "$root", "$web"] {
            assert!(container_problem(ok).is_none(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["ab", "-abc", "abc-", "a--b", "ABC", "a_b", long.as_str()] {
            assert!(container_problem(bad).is_some(), "{bad}");
        }
    }
}
