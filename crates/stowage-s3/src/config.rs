//! `S3Storage` configuration: Quay's keys plus what operators of other S3
//! servers need. Every key, its default and meaning is listed in
//! `docs/configuration.md`.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits::{MAX_PART_SIZE, MIN_PART_SIZE};
use crate::ServerProfile;
use stowage_core::config::{parse_http_url, ConfigErrors, FromParams, Params, Secret};

use crate::keys;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Server-side encryption requested on every write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerSideEncryption {
    /// None (servers without SSE).
    None,
    /// SSE-S3 (`AES256`), what Quay always sends.
    Aes256,
    /// SSE-KMS with an optional key id (the bucket default when absent).
    Kms {
        /// The KMS key id or ARN.
        key_id: Option<String>,
    },
}

/// The largest `s3_max_attempts` accepted.
pub(crate) const MAX_ATTEMPTS_LIMIT: u32 = 20;

// The accepted values, in one place for the reader (in the keys' units)
// and for [`S3Config::problems`] (in the fields' units).

/// `s3_upload_concurrency`: parts in flight per write.
const UPLOAD_CONCURRENCY: RangeInclusive<u64> = 1..=64;
/// `s3_max_parts_in_flight`: part buffers across every write.
const MAX_PARTS_IN_FLIGHT: RangeInclusive<u64> = 1..=1024;
/// `s3_read_ahead_ranges`: ranges fetched ahead per read (0: off).
const READ_AHEAD_RANGES: RangeInclusive<u64> = 0..=16;
/// `s3_read_ahead_range_mb`: the size of a range read ahead, in MiB.
const READ_AHEAD_RANGE_MB: RangeInclusive<u64> = 1..=256;
/// `s3_max_ranges_in_flight`: ranges read ahead across every read.
const MAX_RANGES_IN_FLIGHT: RangeInclusive<u64> = 1..=4096;
/// `s3_multipart_copy_threshold_mb`: up to CopyObject's limit, 5 GiB.
const MULTIPART_COPY_THRESHOLD_MB: RangeInclusive<u64> = 1..=5120;
/// Timeouts and the retry budget, in seconds. Bounded: a deadline of
/// `u64::MAX` seconds would overflow the clock arithmetic of whoever adds
/// it to an instant.
const TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=3600;
/// `s3_request_timeout_seconds`: one attempt of any request.
const REQUEST_TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=86_400;
/// `s3_min_upload_rate_kib`, in KiB/s.
const MIN_UPLOAD_RATE_KIB: RangeInclusive<u64> = 1..=10 * 1024 * 1024;

/// What [`S3Config::problems`] says when only one of the static keys is
/// given.
const KEY_PAIR: &str = "s3_access_key and s3_secret_key go together; give both or neither \
                        (neither uses the default credential chain)";

/// Which checksum the server verifies on written bytes
/// (`s3_part_checksum`). A part or PUT the server refuses as damaged is
/// sent again from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartChecksum {
    /// The cheapest check the server is seen to make (`auto`, the
    /// default): a CRC32C on single PUTs, which servers that verify
    /// flexible checksums (AWS, Garage, MinIO) check and echo, with a
    /// Content-MD5 until the server has echoed one; parts sent unsigned
    /// while their MD5 is computed beside the send and compared with the
    /// ETag the server answers (the MD5 of what it received), a part that
    /// differs sent again before the upload completes. With SSE-KMS or
    /// SSE-C, whose ETags are not MD5s, parts carry a Content-MD5.
    Auto,
    /// A Content-MD5 on every body, sent as `UNSIGNED-PAYLOAD` (`md5`).
    /// The server computes a part's MD5 for its ETag anyway, so checking
    /// it costs the server nothing; the client hashes once per part.
    Md5,
    /// The SHA-256 of each body signed into its request
    /// (`x-amz-content-sha256`, `sha256`), which the server recomputes and
    /// checks: a second pass over the bytes on the server, and
    /// hardware-accelerated SHA-256 on most clients.
    Sha256,
    /// Neither (`none`): unsigned payloads; only TLS, where used, protects
    /// the bytes.
    Off,
}

/// A validated `S3Storage` configuration.
#[derive(Clone)]
#[non_exhaustive]
pub struct S3Config {
    /// Bucket (`s3_bucket`).
    pub bucket: String,
    /// Key prefix every path is stored under (`storage_path`, without
    /// leading or trailing `/`; empty for the bucket root).
    pub root: String,
    /// Static access key (`s3_access_key`); the SDK's default chain when
    /// absent.
    pub access_key: Option<String>,
    /// Static secret key (`s3_secret_key`).
    pub secret_key: Option<Secret>,
    /// Session token for static keys (`s3_session_token`).
    pub session_token: Option<Secret>,
    /// Region (`s3_region`, default `us-east-1`).
    pub region: String,
    /// Endpoint of a non-AWS server (`endpoint_url`, or `host` + `port`).
    pub endpoint: Option<String>,
    /// Path-style addressing (`s3_path_style`; on by default with an endpoint).
    pub path_style: bool,
    /// Server-side encryption.
    pub sse: ServerSideEncryption,
    /// Storage class (`s3_storage_class`), e.g. `STANDARD_IA`.
    pub storage_class: Option<String>,
    /// Part size of streamed writes (`s3_part_size_mb`, default 8).
    pub part_size: u64,
    /// Parts in flight per write (`s3_upload_concurrency`, default 8: the
    /// MD5 lanes' width, so a write's part checksums are hashed together).
    pub upload_concurrency: usize,
    /// Part buffers across all writes of the driver, being filled or sent
    /// (`s3_max_parts_in_flight`, default 32): with the part size, the
    /// memory budget of many concurrent writes.
    pub max_parts_in_flight: usize,
    /// Ranges fetched ahead of a large read, beside its first answer
    /// (`s3_read_ahead_ranges`, default 0: off): a read of at least two
    /// ranges is carried by that many more connections. It pays where one
    /// connection carries less than the link (AWS S3 across a network);
    /// against a server bound by its own CPU it does not (docs/benchmarks.md).
    pub read_ahead_ranges: usize,
    /// The size of a range read ahead (`s3_read_ahead_range_mb`, default 8).
    pub read_ahead_range_size: u64,
    /// Ranges read ahead across all reads of the driver
    /// (`s3_max_ranges_in_flight`, default 32): with the range size, the
    /// memory budget of read-ahead; a read that finds it spent reads one
    /// stream.
    pub max_ranges_in_flight: usize,
    /// Smallest chunk assembled server-side (`minimum_chunk_size_mb`, default 5).
    pub min_chunk_size: u64,
    /// Largest part copied in one UploadPartCopy (`maximum_chunk_size_gb`, default 5).
    pub max_chunk_size: u64,
    /// Assemble chunked uploads inside S3 (`server_side_assembly`, default true).
    pub server_side_assembly: bool,
    /// Copies above this use a multipart copy (`s3_multipart_copy_threshold_mb`,
    /// default 5120: CopyObject's limit).
    pub multipart_copy_threshold: u64,
    /// Part size of multipart copies (`s3_multipart_copy_part_size_mb`, default 512).
    pub multipart_copy_part_size: u64,
    /// Attempts per request, first included (`s3_max_attempts`, default 15):
    /// the driver's retry policy (connection errors, timeouts, 5xx,
    /// throttling), which replaces the SDK's.
    pub max_attempts: u32,
    /// Time budget of one request across its attempts
    /// (`s3_retry_timeout_seconds`, default 180): no retry starts after it.
    pub retry_timeout: Duration,
    /// The checksum the server verifies on parts and single PUTs
    /// (`s3_part_checksum`, default `auto`: `md5` on `http://` endpoints,
    /// `sha256` otherwise).
    pub part_checksum: PartChecksum,
    /// Connect timeout (`s3_connect_timeout_seconds`, default 10: a TCP
    /// and TLS handshake on any working link).
    pub connect_timeout: Duration,
    /// How long a request without a body (HEAD, the headers of a GET,
    /// CompleteMultipartUpload, AbortMultipartUpload, listings) may wait
    /// for its answer in one attempt (`s3_first_byte_timeout_seconds`,
    /// default 30), so that a hung request is retried inside the retry
    /// budget; an attempt that sends a body adds its transfer time.
    pub first_byte_timeout: Duration,
    /// How long a streamed read may go without a byte before it resumes
    /// from the next byte (`s3_progress_timeout_seconds`, default 30).
    pub progress_timeout: Duration,
    /// The slowest upload rate an attempt that sends a body allows for, per
    /// part in flight (`s3_min_upload_rate_kib`, KiB/s, default 32, i.e.
    /// about 0.25 Mbit/s per part, 2 Mbit/s for the 8 parts in flight by
    /// default).
    pub min_upload_rate: u64,
    /// The most one attempt of any request may take
    /// (`s3_request_timeout_seconds`, default 3600).
    pub request_timeout: Duration,
    /// What the server lacks compared with AWS S3 (default
    /// [`ServerProfile::Standard`]; Quay's `GoogleCloudStorage` sets
    /// [`ServerProfile::Gcs`]). No key of its own.
    pub profile: ServerProfile,
    /// A PEM file of CA certificates trusted besides the system's
    /// (`s3_ca_bundle`), for endpoints with a private CA; STS is called
    /// through the same client.
    pub ca_bundle: Option<PathBuf>,
    /// More PEM files of trusted CA certificates: those of the Quay config
    /// bundle the configuration was read from (its `extra_ca_certs/`
    /// folder, see [`S3Config::quay_extra_ca_certs`]). A file without a
    /// usable certificate is skipped with a warning.
    pub extra_ca_certs: Vec<PathBuf>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("access_key", &self.access_key.as_ref().map(|_| "***"))
            .field("sse", &self.sse)
            .field("part_size", &self.part_size)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("profile", &self.profile)
            .field("ca_bundle", &self.ca_bundle)
            .field("extra_ca_certs", &self.extra_ca_certs)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// A configuration for `bucket` with every default.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            root: String::new(),
            access_key: None,
            secret_key: None,
            session_token: None,
            region: "us-east-1".into(),
            endpoint: None,
            path_style: false,
            sse: ServerSideEncryption::Aes256,
            storage_class: None,
            part_size: 8 * MIB,
            upload_concurrency: 8,
            max_parts_in_flight: 32,
            read_ahead_ranges: 0,
            read_ahead_range_size: 8 * MIB,
            max_ranges_in_flight: 32,
            min_chunk_size: 5 * MIB,
            max_chunk_size: 5 * GIB,
            server_side_assembly: true,
            multipart_copy_threshold: 5 * GIB,
            multipart_copy_part_size: 512 * MIB,
            max_attempts: 15,
            retry_timeout: Duration::from_secs(180),
            part_checksum: PartChecksum::Auto,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            progress_timeout: Duration::from_secs(30),
            min_upload_rate: 32 * 1024,
            request_timeout: Duration::from_secs(3600),
            profile: ServerProfile::Standard,
            ca_bundle: None,
            extra_ca_certs: Vec::new(),
        }
    }

    /// Sets the key prefix (leading and trailing `/` are dropped).
    pub fn with_root(mut self, root: &str) -> Self {
        self.root = normalize_root(root);
        self
    }

    /// Sets a non-AWS endpoint, turning path-style addressing and no SSE on.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self.path_style = true;
        self.sse = ServerSideEncryption::None;
        self
    }

    /// Sets static credentials.
    pub fn with_static_keys(mut self, access_key: impl Into<String>, secret_key: Secret) -> Self {
        self.access_key = Some(access_key.into());
        self.secret_key = Some(secret_key);
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Sets the server profile: what the server lacks, and the paths the
    /// driver takes instead (see [`ServerProfile`]).
    pub fn with_profile(mut self, profile: ServerProfile) -> Self {
        self.profile = profile;
        self
    }

    /// The checksum written bodies carry: `part_checksum`, with `auto`
    /// resolved to `md5` when server-side encryption with KMS or customer
    /// keys makes ETags other than MD5s (nothing then compares a part's
    /// MD5 with its ETag).
    pub fn part_checksum_in_use(&self) -> PartChecksum {
        match (self.part_checksum, &self.sse) {
            (PartChecksum::Auto, ServerSideEncryption::Kms { .. }) => PartChecksum::Md5,
            (other, _) => other,
        }
    }

    /// Whether parts are checked by comparing their MD5, computed beside
    /// the send, with the ETag the server answers (`auto`).
    pub fn checks_part_etags(&self) -> bool {
        self.part_checksum_in_use() == PartChecksum::Auto
    }

    /// The timeout of one attempt of a request that sends `size` body
    /// bytes (UploadPart, PutObject): the first-byte timeout plus the body
    /// at `min_upload_rate`, at most `request_timeout`: 286 s for an 8 MiB
    /// part by default. It scales with the part, so a large part on a slow
    /// link can finish; the retry budget starts when an attempt fails, so
    /// a stalled attempt is always sent again.
    pub fn body_attempt_timeout(&self, size: u64) -> Duration {
        let transfer = Duration::from_secs(size / self.min_upload_rate.max(1));
        (self.first_byte_timeout + transfer).min(self.request_timeout)
    }

    /// Whether UploadPart and PutObject carry a Content-MD5 (`md5`; with
    /// `auto`, single PUTs do until the server has shown it checks CRC32C).
    pub fn sends_content_md5(&self) -> bool {
        self.part_checksum_in_use() == PartChecksum::Md5
    }

    /// Whether UploadPart and PutObject sign their payload's SHA-256 (the
    /// server checks it); `false` sends `UNSIGNED-PAYLOAD`.
    pub fn signs_payload(&self) -> bool {
        self.part_checksum_in_use() == PartChecksum::Sha256
    }

    /// Every problem of this configuration, each with the `S3Storage` key
    /// of the field it is about (the message names the field): an empty
    /// bucket, a storage path with an empty, `.` or `..` segment, one
    /// static key without the other, a region that cannot be one, an
    /// endpoint that is not an `http(s)://` URL, sizes, counts, attempts
    /// and timeouts outside what the keys accept (zero included).
    ///
    /// The one check of a configuration, however it was built:
    /// [`S3Config::read`] runs it on what it read (reporting with key
    /// paths the problems the values as written did not already show), and
    /// every constructor of [`crate::S3Storage`] refuses a configuration
    /// with problems, listing all of them (with those of the CA
    /// certificates, which are checked when the client is built). The
    /// rules of AWS bucket names are `s3_bucket`'s, checked by the reader
    /// only: Quay's S3-compatible drivers and GCS accept other names.
    pub fn problems(&self) -> ConfigErrors {
        let mut errs = ConfigErrors::default();
        if let Some(why) = bucket_name_problem(&self.bucket) {
            errs.push(keys::S3_BUCKET, why);
        }
        if let Some(why) = root_problem(&self.root) {
            errs.push(keys::STORAGE_PATH, format!("{:?} {why}", self.root));
        }
        match (&self.access_key, &self.secret_key) {
            (Some(_), None) | (None, Some(_)) => errs.push(keys::S3_ACCESS_KEY, KEY_PAIR),
            (Some(id), Some(_)) if id.trim().is_empty() => {
                errs.push(keys::S3_ACCESS_KEY, "empty: give the access key id");
            }
            _ => {}
        }
        if self.region.is_empty() || self.region.contains(char::is_whitespace) {
            errs.push(
                keys::S3_REGION,
                format!("{:?} is not a region name", self.region),
            );
        }
        if let Some(endpoint) = &self.endpoint {
            if let Err(why) = parse_http_url(endpoint) {
                errs.push(keys::ENDPOINT_URL, why);
            }
        }
        if let ServerSideEncryption::Kms { key_id: Some(id) } = &self.sse {
            if id.trim().is_empty() {
                errs.push(
                    keys::S3_SSE_KMS_KEY_ID,
                    "empty: give the KMS key's id or ARN, or none for the bucket's default key",
                );
            }
        }
        let parts = MIN_PART_SIZE..=MAX_PART_SIZE;
        errs.check_size(
            keys::S3_PART_SIZE_MB,
            "part_size",
            self.part_size,
            parts.clone(),
        );
        errs.check_count(
            keys::S3_UPLOAD_CONCURRENCY,
            "upload_concurrency",
            self.upload_concurrency as u64,
            UPLOAD_CONCURRENCY,
        );
        errs.check_count(
            keys::S3_MAX_PARTS_IN_FLIGHT,
            "max_parts_in_flight",
            self.max_parts_in_flight as u64,
            MAX_PARTS_IN_FLIGHT,
        );
        errs.check_count(
            keys::S3_READ_AHEAD_RANGES,
            "read_ahead_ranges",
            self.read_ahead_ranges as u64,
            READ_AHEAD_RANGES,
        );
        errs.check_size(
            keys::S3_READ_AHEAD_RANGE_MB,
            "read_ahead_range_size",
            self.read_ahead_range_size,
            READ_AHEAD_RANGE_MB.start() * MIB..=READ_AHEAD_RANGE_MB.end() * MIB,
        );
        errs.check_count(
            keys::S3_MAX_RANGES_IN_FLIGHT,
            "max_ranges_in_flight",
            self.max_ranges_in_flight as u64,
            MAX_RANGES_IN_FLIGHT,
        );
        errs.check_size(
            keys::MINIMUM_CHUNK_SIZE_MB,
            "min_chunk_size",
            self.min_chunk_size,
            parts.clone(),
        );
        errs.check_size(
            keys::MAXIMUM_CHUNK_SIZE_GB,
            "max_chunk_size",
            self.max_chunk_size,
            1..=MAX_PART_SIZE,
        );
        if self.max_chunk_size < self.min_chunk_size.saturating_mul(2) {
            errs.push(
                keys::MAXIMUM_CHUNK_SIZE_GB,
                "must be at least twice minimum_chunk_size_mb, so that the pieces a large chunk \
                 is split into stay above the minimum part size",
            );
        }
        let threshold = MULTIPART_COPY_THRESHOLD_MB;
        errs.check_size(
            keys::S3_MULTIPART_COPY_THRESHOLD_MB,
            "multipart_copy_threshold",
            self.multipart_copy_threshold,
            threshold.start() * MIB..=threshold.end() * MIB,
        );
        errs.check_size(
            keys::S3_MULTIPART_COPY_PART_SIZE_MB,
            "multipart_copy_part_size",
            self.multipart_copy_part_size,
            parts,
        );
        errs.check_count(
            keys::S3_MAX_ATTEMPTS,
            "max_attempts",
            u64::from(self.max_attempts),
            1..=u64::from(MAX_ATTEMPTS_LIMIT),
        );
        let longest = Duration::from_secs(*TIMEOUT_SECONDS.end());
        for (key, field, value) in [
            (
                keys::S3_RETRY_TIMEOUT_SECONDS,
                "retry_timeout",
                self.retry_timeout,
            ),
            (
                keys::S3_CONNECT_TIMEOUT_SECONDS,
                "connect_timeout",
                self.connect_timeout,
            ),
            (
                keys::S3_FIRST_BYTE_TIMEOUT_SECONDS,
                "first_byte_timeout",
                self.first_byte_timeout,
            ),
            (
                keys::S3_PROGRESS_TIMEOUT_SECONDS,
                "progress_timeout",
                self.progress_timeout,
            ),
        ] {
            errs.check_duration(key, field, value, longest);
        }
        errs.check_duration(
            keys::S3_REQUEST_TIMEOUT_SECONDS,
            "request_timeout",
            self.request_timeout,
            Duration::from_secs(*REQUEST_TIMEOUT_SECONDS.end()),
        );
        let rate = MIN_UPLOAD_RATE_KIB;
        errs.check_size(
            keys::S3_MIN_UPLOAD_RATE_KIB,
            "min_upload_rate (per second)",
            self.min_upload_rate,
            rate.start() * 1024..=rate.end() * 1024,
        );
        errs
    }

    /// Reads the S3 keys from `params`, recording problems there, for
    /// drivers that add keys of their own (STS, CloudFront) and then call
    /// [`Params::finish`]. `None` when a problem was recorded. Ends with
    /// [`S3Config::problems`] on what it read.
    pub fn read(params: &mut Params<'_>) -> Option<Self> {
        let before = params.problem_count();
        let bucket = params.required_string(keys::S3_BUCKET);
        if let Some(b) = &bucket {
            if let Some(reason) = bucket_problem(b) {
                params.problem(keys::S3_BUCKET, reason);
            }
        }
        let mut c = Self::new(bucket.clone().unwrap_or_default());
        if let Some(root) = params.string(keys::STORAGE_PATH) {
            // Checked by `problems` below.
            c.root = normalize_root(&root);
        }
        c.access_key = params.string(keys::S3_ACCESS_KEY);
        c.secret_key = params.secret(keys::S3_SECRET_KEY);
        c.session_token = params.secret(keys::S3_SESSION_TOKEN);
        if let Some(region) = params.string(keys::S3_REGION) {
            c.region = region;
        }
        let endpoint_given = params.has(keys::ENDPOINT_URL);
        let endpoint_url = params.http_url(keys::ENDPOINT_URL);
        let host = params.string(keys::HOST);
        let port = params.u64(keys::PORT);
        c.endpoint = match (endpoint_url, host) {
            (_, Some(_)) if endpoint_given => {
                params.problem(keys::HOST, "give endpoint_url or host (+ port), not both");
                None
            }
            (Some(url), _) => Some(url.as_str().trim_end_matches('/').to_string()),
            (None, Some(host)) => {
                let base = if host.contains("://") {
                    host.clone()
                } else {
                    format!("https://{host}")
                };
                match url::Url::parse(&base) {
                    Ok(mut url) if url.host().is_some() => {
                        if let Some(p) = port.and_then(|p| u16::try_from(p).ok()) {
                            let _ = url.set_port(Some(p));
                        }
                        Some(url.as_str().trim_end_matches('/').to_string())
                    }
                    _ => {
                        params.problem(keys::HOST, format!("{host:?} is not a host name"));
                        None
                    }
                }
            }
            (None, None) => {
                if port.is_some() {
                    params.problem(keys::PORT, "port needs host");
                }
                None
            }
        };
        if let Some(p) = port {
            if p == 0 || p > 65535 {
                params.problem(keys::PORT, format!("{p} is not a TCP port"));
            }
        }
        let custom = c.endpoint.as_deref().is_some_and(|e| !is_aws_endpoint(e));
        c.path_style = params.bool(keys::S3_PATH_STYLE).unwrap_or(custom);
        let sse = params.string(keys::S3_SERVER_SIDE_ENCRYPTION);
        let kms_key = params.string(keys::S3_SSE_KMS_KEY_ID);
        c.sse = match sse.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None if kms_key.is_some() => ServerSideEncryption::Kms {
                key_id: kms_key.clone(),
            },
            None if custom => ServerSideEncryption::None,
            None | Some("aes256") => ServerSideEncryption::Aes256,
            Some("aws:kms") | Some("kms") => ServerSideEncryption::Kms {
                key_id: kms_key.clone(),
            },
            Some("none") | Some("") => ServerSideEncryption::None,
            Some(other) => {
                params.problem(
                    keys::S3_SERVER_SIDE_ENCRYPTION,
                    format!("{other:?}: accepted values are AES256, aws:kms, none"),
                );
                ServerSideEncryption::None
            }
        };
        if kms_key.is_some() && !matches!(c.sse, ServerSideEncryption::Kms { .. }) {
            params.problem(
                keys::S3_SSE_KMS_KEY_ID,
                "only used with s3_server_side_encryption: aws:kms",
            );
        }
        c.storage_class = params.string(keys::S3_STORAGE_CLASS);
        if let Some(mb) = params.f64(keys::MINIMUM_CHUNK_SIZE_MB) {
            // Range first, so that no arithmetic below can overflow.
            if !(5.0..=5120.0).contains(&mb) {
                params.problem(
                    keys::MINIMUM_CHUNK_SIZE_MB,
                    format!("{mb}: S3 parts other than the last are 5 MiB to 5 GiB; use 5 to 5120"),
                );
            } else {
                c.min_chunk_size = (mb * MIB as f64) as u64;
            }
        }
        if let Some(gb) = params.f64(keys::MAXIMUM_CHUNK_SIZE_GB) {
            // `gb` is finite (Params::f64 refuses NaN and infinities).
            if gb <= 0.0 || gb > 5.0 {
                params.problem(
                    keys::MAXIMUM_CHUNK_SIZE_GB,
                    format!("{gb}: S3 parts are at most 5 GiB; use above 0 up to 5"),
                );
            } else {
                c.max_chunk_size = (gb * GIB as f64) as u64;
            }
        }
        c.server_side_assembly = params.bool(keys::SERVER_SIDE_ASSEMBLY).unwrap_or(true);
        c.read_transfer_keys(params);
        // The checks of any configuration (the static key pair, the
        // region, the storage path, the chunk sizes together, ...), on
        // the keys whose values as written had no problem.
        params.extend_unreported(c.problems());
        (params.problem_count() == before && bucket.is_some()).then_some(c)
    }

    /// Reads stowage's transfer keys (part size, concurrency, copy sizes,
    /// attempts, timeouts: every `s3_*` key of `docs/configuration.md` that
    /// tunes transfers, and the trusted CAs of `s3_ca_bundle`) from `params`
    /// into `self`, recording problems there; for drivers built on S3 with
    /// keys of their own (Quay's S3-compatible drivers). `false` when a
    /// problem was recorded. Every size is checked before any arithmetic,
    /// so no value overflows. When `params` knows the config bundle's
    /// directory ([`Params::with_base_dir`]), its extra CA certificates are
    /// trusted too ([`S3Config::quay_extra_ca_certs`]).
    pub fn read_transfer_keys(&mut self, params: &mut Params<'_>) -> bool {
        let before = params.problem_count();
        if let Some(file) = params.path(keys::S3_CA_BUNDLE) {
            if let Err(why) = crate::tls::read_bundle(&file) {
                params.problem(keys::S3_CA_BUNDLE, why);
            }
            self.ca_bundle = Some(file);
        }
        if let Some(dir) = params.base_dir() {
            let files = Self::quay_extra_ca_certs(dir);
            self.extra_ca_certs = files;
        }
        // S3's part sizes, in MiB.
        let parts_mib = MIN_PART_SIZE / MIB..=MAX_PART_SIZE / MIB;
        let c = self;
        if let Some(mb) = params.u64_in(keys::S3_PART_SIZE_MB, parts_mib.clone()) {
            c.part_size = mb * MIB;
        }
        if let Some(n) = params.u64_in(keys::S3_UPLOAD_CONCURRENCY, UPLOAD_CONCURRENCY) {
            c.upload_concurrency = n as usize;
        }
        if let Some(n) = params.u64_in(keys::S3_MAX_PARTS_IN_FLIGHT, MAX_PARTS_IN_FLIGHT) {
            c.max_parts_in_flight = n as usize;
        }
        if let Some(n) = params.u64_in(keys::S3_READ_AHEAD_RANGES, READ_AHEAD_RANGES) {
            c.read_ahead_ranges = n as usize;
        }
        if let Some(mb) = params.u64_in(keys::S3_READ_AHEAD_RANGE_MB, READ_AHEAD_RANGE_MB) {
            c.read_ahead_range_size = mb * MIB;
        }
        if let Some(n) = params.u64_in(keys::S3_MAX_RANGES_IN_FLIGHT, MAX_RANGES_IN_FLIGHT) {
            c.max_ranges_in_flight = n as usize;
        }
        if let Some(mb) = params.u64_in(
            keys::S3_MULTIPART_COPY_THRESHOLD_MB,
            MULTIPART_COPY_THRESHOLD_MB,
        ) {
            c.multipart_copy_threshold = mb * MIB;
        }
        if let Some(mb) = params.u64_in(keys::S3_MULTIPART_COPY_PART_SIZE_MB, parts_mib) {
            c.multipart_copy_part_size = mb * MIB;
        }
        if let Some(n) = params.u64_in(keys::S3_MAX_ATTEMPTS, 1..=u64::from(MAX_ATTEMPTS_LIMIT)) {
            c.max_attempts = n as u32;
        }
        if let Some(s) = params.u64_in(keys::S3_CONNECT_TIMEOUT_SECONDS, TIMEOUT_SECONDS) {
            c.connect_timeout = Duration::from_secs(s);
        }
        if let Some(s) = params.u64_in(keys::S3_FIRST_BYTE_TIMEOUT_SECONDS, TIMEOUT_SECONDS) {
            c.first_byte_timeout = Duration::from_secs(s);
        }
        if let Some(s) = params.u64_in(keys::S3_PROGRESS_TIMEOUT_SECONDS, TIMEOUT_SECONDS) {
            c.progress_timeout = Duration::from_secs(s);
        }
        if let Some(k) = params.u64_in(keys::S3_MIN_UPLOAD_RATE_KIB, MIN_UPLOAD_RATE_KIB) {
            c.min_upload_rate = k * 1024;
        }
        if let Some(s) = params.u64_in(keys::S3_REQUEST_TIMEOUT_SECONDS, REQUEST_TIMEOUT_SECONDS) {
            c.request_timeout = Duration::from_secs(s);
        }
        if let Some(s) = params.u64_in(keys::S3_RETRY_TIMEOUT_SECONDS, TIMEOUT_SECONDS) {
            c.retry_timeout = Duration::from_secs(s);
        }
        if let Some(v) = params.one_of(
            keys::S3_PART_CHECKSUM,
            &[
                ("auto", PartChecksum::Auto),
                ("sha256", PartChecksum::Sha256),
                ("md5", PartChecksum::Md5),
                ("none", PartChecksum::Off),
                ("off", PartChecksum::Off),
            ],
        ) {
            c.part_checksum = v;
        }
        params.problem_count() == before
    }
}

impl FromParams for S3Config {
    fn read_params(params: &mut Params<'_>) -> Option<Self> {
        Self::read(params)
    }
}

fn normalize_root(root: &str) -> String {
    root.trim_matches('/').to_string()
}

fn is_aws_endpoint(endpoint: &str) -> bool {
    url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| h.ends_with(".amazonaws.com") || h.ends_with(".amazonaws.com.cn"))
}

/// Why `root`, a normalized storage path, cannot be a key prefix, if it
/// cannot.
fn root_problem(root: &str) -> Option<&'static str> {
    (!root.is_empty()
        && root
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".."))
    .then_some("has an empty, '.' or '..' segment")
}

/// Why `bucket` cannot name a bucket on any server, if it cannot. AWS's
/// naming rules are `s3_bucket`'s ([`bucket_problem`], checked by the
/// reader): S3-compatible servers and GCS accept other names.
fn bucket_name_problem(bucket: &str) -> Option<String> {
    if bucket.trim().is_empty() {
        return Some("empty: name the bucket".into());
    }
    if bucket.contains('/') || bucket.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "{bucket:?} is not a bucket name (no '/', spaces or control characters)"
        ));
    }
    None
}

/// Why `b` is not an AWS bucket name (`s3_bucket`), if it is not.
fn bucket_problem(b: &str) -> Option<&'static str> {
    if b.len() < 3 || b.len() > 63 {
        return Some("bucket names have 3 to 63 characters");
    }
    if !b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
    {
        return Some("bucket names use lowercase letters, digits, '-' and '.'");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn parse(json: &str) -> Result<S3Config, stowage_core::config::ConfigErrors> {
        let map: Map<String, Value> = serde_json::from_str(json).unwrap();
        S3Config::from_params(Params::new("loc[1]", &map))
    }

    #[test]
    fn quay_keys_with_defaults() {
        let c = parse(r#"{"s3_bucket": "quay-bucket", "storage_path": "/datastorage/registry", "s3_access_key": "AK", "s3_secret_key": "SK", "s3_region": "eu-west-1"}"#).unwrap();
        assert_eq!(c.root, "datastorage/registry");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(
            c.sse,
            ServerSideEncryption::Aes256,
            "AWS default is Quay's AES256"
        );
        assert!(!c.path_style);
        assert!(c.endpoint.is_none());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SK") && !dbg.contains("\"AK\""), "{dbg}");
    }

    #[test]
    fn custom_endpoint_turns_on_path_style_and_off_sse() {
        let c = parse(r#"{"s3_bucket": "b-1", "host": "rgw.local", "port": 8080}"#).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("https://rgw.local:8080"));
        assert!(c.path_style);
        assert_eq!(c.sse, ServerSideEncryption::None);
        let c = parse(r#"{"s3_bucket": "b-1", "endpoint_url": "http://127.0.0.1:9000/", "s3_path_style": false, "s3_server_side_encryption": "AES256"}"#).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(!c.path_style);
        assert_eq!(c.sse, ServerSideEncryption::Aes256);
        let c =
            parse(r#"{"s3_bucket": "b-1", "endpoint_url": "https://s3.eu-west-1.amazonaws.com"}"#)
                .unwrap();
        assert!(!c.path_style, "AWS endpoints keep virtual-hosted style");
    }

    #[test]
    fn every_bad_value_is_named() {
        let errs = parse(r#"{"s3_bucket": "Bad_Bucket", "s3_access_key": "AK", "port": 99999, "host": "h",
            "s3_server_side_encryption": "rot13", "s3_part_size_mb": 1, "minimum_chunk_size_mb": 2,
            "s3_upload_concurrency": 0, "s3_max_attempts": "many", "endpoint_url": "ftp://x", "s3_bucket_name": "typo"}"#)
            .unwrap_err();
        let keys: Vec<String> = errs.0.iter().map(|p| p.key.clone()).collect();
        for k in [
            "s3_bucket",
            "s3_access_key",
            "port",
            "host",
            "s3_server_side_encryption",
            "s3_part_size_mb",
            "minimum_chunk_size_mb",
            "s3_upload_concurrency",
            "s3_max_attempts",
            "s3_bucket_name",
        ] {
            assert!(
                keys.contains(&format!("loc[1].{k}")),
                "no problem reported for {k}: {errs}"
            );
        }
    }

    #[test]
    fn huge_sizes_are_errors_naming_their_key_never_overflows() {
        let errs = parse(
            r#"{"s3_bucket": "bkt", "minimum_chunk_size_mb": 1e300, "maximum_chunk_size_gb": "1e300",
            "s3_part_size_mb": 18446744073709551615, "s3_multipart_copy_threshold_mb": 18446744073709551615,
            "s3_multipart_copy_part_size_mb": 18446744073709551615,
            "s3_connect_timeout_seconds": 18446744073709551615, "s3_request_timeout_seconds": 18446744073709551615}"#,
        )
        .unwrap_err();
        let keys: Vec<String> = errs.0.iter().map(|p| p.key.clone()).collect();
        for k in [
            "minimum_chunk_size_mb",
            "maximum_chunk_size_gb",
            "s3_part_size_mb",
            "s3_multipart_copy_threshold_mb",
            "s3_multipart_copy_part_size_mb",
            "s3_connect_timeout_seconds",
            "s3_request_timeout_seconds",
        ] {
            assert!(
                keys.contains(&format!("loc[1].{k}")),
                "no problem reported for {k}: {errs}"
            );
        }
        let errs = parse(r#"{"s3_bucket": "bkt", "minimum_chunk_size_mb": "NaN"}"#).unwrap_err();
        assert!(
            errs.to_string()
                .contains("loc[1].minimum_chunk_size_mb: expected a finite number"),
            "{errs}"
        );
        let errs = parse(r#"{"s3_bucket": "bkt", "maximum_chunk_size_gb": "-inf"}"#).unwrap_err();
        assert!(
            errs.to_string().contains("loc[1].maximum_chunk_size_gb"),
            "{errs}"
        );
    }

    #[test]
    fn chunk_sizes_in_range_are_kept() {
        let c = parse(
            r#"{"s3_bucket": "bkt", "minimum_chunk_size_mb": 10, "maximum_chunk_size_gb": 0.5, "s3_part_size_mb": 5120}"#,
        )
        .unwrap();
        assert_eq!(c.min_chunk_size, 10 * MIB);
        assert_eq!(c.max_chunk_size, GIB / 2);
        assert_eq!(c.part_size, 5 * GIB);
        let errs = parse(
            r#"{"s3_bucket": "bkt", "minimum_chunk_size_mb": 5000, "maximum_chunk_size_gb": 5}"#,
        )
        .unwrap_err();
        assert!(
            errs.to_string()
                .contains("at least twice minimum_chunk_size_mb"),
            "{errs}"
        );
    }

    #[test]
    fn a_bucket_key_without_value_is_an_error_not_a_panic() {
        let map: Map<String, Value> = serde_json::from_str(r#"{"s3_bucket": null}"#).unwrap();
        let errs = S3Config::from_params(Params::new("loc[1]", &map)).unwrap_err();
        assert!(
            errs.to_string()
                .contains("loc[1].s3_bucket: required key has no value"),
            "{errs}"
        );
        let errs = parse(r#"{"s3_bucket": ""}"#).unwrap_err();
        assert!(
            errs.to_string()
                .contains("loc[1].s3_bucket: required key has no value"),
            "{errs}"
        );
    }

    #[test]
    fn attempt_deadlines_scale_with_the_body_and_fit_the_budget() {
        let c = parse(r#"{"s3_bucket": "bkt"}"#).unwrap();
        // Bodiless requests: several attempts fit the 180 s budget.
        assert_eq!(c.first_byte_timeout, Duration::from_secs(30));
        assert!(c.first_byte_timeout * 3 < c.retry_timeout);
        let part = c.body_attempt_timeout(c.part_size);
        assert_eq!(part, Duration::from_secs(30 + 256), "8 MiB at 32 KiB/s");
        // A 64 MiB part on a link giving each part 32 KiB/s still finishes.
        assert!(c.body_attempt_timeout(64 << 20) >= Duration::from_secs(2048));
        assert_eq!(c.body_attempt_timeout(0), c.first_byte_timeout);
        assert_eq!(
            c.body_attempt_timeout(u64::MAX),
            c.request_timeout,
            "capped by s3_request_timeout_seconds"
        );
        let c = parse(
            r#"{"s3_bucket": "bkt", "s3_request_timeout_seconds": 5,
                "s3_first_byte_timeout_seconds": 2, "s3_progress_timeout_seconds": 3,
                "s3_min_upload_rate_kib": 1024}"#,
        )
        .unwrap();
        assert_eq!(c.body_attempt_timeout(16 << 20), Duration::from_secs(5));
        assert_eq!(c.body_attempt_timeout(1 << 20), Duration::from_secs(3));
        assert_eq!(c.progress_timeout, Duration::from_secs(3));
    }

    #[test]
    fn retry_budget_and_part_checksum_keys() {
        let c = parse(r#"{"s3_bucket": "bkt"}"#).unwrap();
        assert_eq!(c.max_attempts, 15);
        assert_eq!(c.retry_timeout, Duration::from_secs(180));
        assert_eq!(c.part_checksum, PartChecksum::Auto);
        assert_eq!(c.part_checksum_in_use(), PartChecksum::Auto, "AWS");
        assert!(c.checks_part_etags() && !c.signs_payload() && !c.sends_content_md5());
        let c = parse(r#"{"s3_bucket": "bkt", "endpoint_url": "HTTP://127.0.0.1:7480"}"#).unwrap();
        assert_eq!(c.part_checksum_in_use(), PartChecksum::Auto);
        let c = parse(
            r#"{"s3_bucket": "bkt", "s3_server_side_encryption": "aws:kms", "s3_sse_kms_key_id": "k"}"#,
        )
        .unwrap();
        assert_eq!(
            c.part_checksum_in_use(),
            PartChecksum::Md5,
            "KMS ETags are not MD5s: Content-MD5 instead"
        );
        assert!(c.sends_content_md5() && !c.checks_part_etags());
        let c = parse(
            r#"{"s3_bucket": "bkt", "endpoint_url": "http://127.0.0.1:7480", "s3_part_checksum": "SHA256"}"#,
        )
        .unwrap();
        assert!(c.signs_payload() && !c.sends_content_md5());
        let c = parse(
            r#"{"s3_bucket": "bkt", "endpoint_url": "http://127.0.0.1:7480", "s3_part_checksum": "none",
            "s3_retry_timeout_seconds": 30, "s3_max_attempts": 4}"#,
        )
        .unwrap();
        assert!(!c.sends_content_md5() && !c.signs_payload());
        assert_eq!(c.retry_timeout, Duration::from_secs(30));
        assert_eq!(c.max_attempts, 4);
        let c = parse(r#"{"s3_bucket": "bkt", "s3_part_checksum": "MD5"}"#).unwrap();
        assert!(c.sends_content_md5() && !c.signs_payload());
        let errs = parse(
            r#"{"s3_bucket": "bkt", "s3_part_checksum": "crc7", "s3_retry_timeout_seconds": 0}"#,
        )
        .unwrap_err();
        let keys: Vec<String> = errs.0.iter().map(|p| p.key.clone()).collect();
        for k in ["s3_part_checksum", "s3_retry_timeout_seconds"] {
            assert!(
                keys.contains(&format!("loc[1].{k}")),
                "no problem reported for {k}: {errs}"
            );
        }
    }

    #[test]
    fn profile_defaults_to_standard_and_is_shown() {
        let c = parse(r#"{"s3_bucket": "bkt"}"#).unwrap();
        assert_eq!(c.profile, ServerProfile::Standard);
        let c = c.with_profile(ServerProfile::Gcs);
        assert_eq!(c.profile, ServerProfile::Gcs);
        assert!(format!("{c:?}").contains("profile: Gcs"), "{c:?}");
    }

    #[test]
    fn ca_bundle_is_checked_and_the_bundle_folder_trusted() {
        let dir = std::env::temp_dir().join(format!(
            "stowage-s3-config-ca-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(dir.join("extra_ca_certs")).unwrap();
        std::fs::write(
            dir.join("extra_ca_certs/ca.crt"),
            "read when the client is built",
        )
        .unwrap();
        let read = |json: &str| {
            let map: Map<String, Value> = serde_json::from_str(json).unwrap();
            S3Config::from_params(Params::new("loc[1]", &map).with_base_dir(&dir))
        };
        let errs = read(r#"{"s3_bucket": "bkt", "s3_ca_bundle": "missing.pem"}"#).unwrap_err();
        let text = errs.to_string();
        assert!(
            text.contains("loc[1].s3_ca_bundle: CA certificate file")
                && text.contains("missing.pem"),
            "{text}"
        );
        let c = read(r#"{"s3_bucket": "bkt"}"#).unwrap();
        assert_eq!(c.extra_ca_certs, [dir.join("extra_ca_certs/ca.crt")]);
        assert!(format!("{c:?}").contains("extra_ca_certs"));
        let c = parse(r#"{"s3_bucket": "bkt"}"#).unwrap();
        assert!(c.extra_ca_certs.is_empty() && c.ca_bundle.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_config_built_in_code_names_every_problem() {
        let mut c = S3Config::new(" ")
            .with_endpoint("x y")
            .with_region("")
            .with_root("a//b");
        c.access_key = Some("AK".into());
        c.part_size = 1024;
        c.upload_concurrency = 0;
        c.max_parts_in_flight = 5000;
        c.min_chunk_size = 0;
        c.max_attempts = 99;
        c.first_byte_timeout = Duration::ZERO;
        c.request_timeout = Duration::from_secs(u64::MAX);
        c.min_upload_rate = 0;
        let errs = c.problems();
        let text = errs.to_string();
        for key in [
            "s3_bucket",
            "endpoint_url",
            "s3_region",
            "storage_path",
            "s3_access_key",
            "s3_part_size_mb",
            "s3_upload_concurrency",
            "s3_max_parts_in_flight",
            "minimum_chunk_size_mb",
            "s3_max_attempts",
            "s3_first_byte_timeout_seconds",
            "s3_request_timeout_seconds",
            "s3_min_upload_rate_kib",
        ] {
            assert!(
                errs.0.iter().any(|p| p.key == key),
                "no problem reported for {key}: {text}"
            );
        }
        assert!(text.contains("s3_bucket: empty"), "{text}");
        assert!(
            text.contains("endpoint_url: \"x y\" is not a URL"),
            "{text}"
        );
        assert!(
            text.contains("s3_part_size_mb: part_size is 1 KiB: use 5 MiB to 5 GiB"),
            "{text}"
        );
        assert!(S3Config::new("bkt").problems().is_empty());
        assert!(parse(r#"{"s3_bucket": "bkt"}"#)
            .unwrap()
            .problems()
            .is_empty());
    }

    #[test]
    fn the_readers_own_checks_are_reported_once_with_their_key_path() {
        let errs = parse(
            r#"{"s3_bucket": "bkt", "s3_region": "eu west", "storage_path": "a/./b",
                "s3_secret_key": "SK"}"#,
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "loc[1].s3_region",
            "loc[1].storage_path",
            "loc[1].s3_access_key",
        ] {
            assert_eq!(
                keys.iter().filter(|key| **key == k).count(),
                1,
                "{k} once: {errs}"
            );
        }
        let errs = parse(r#"{"s3_bucket": ""}"#).unwrap_err();
        assert_eq!(
            errs.0.len(),
            1,
            "no second problem for the empty bucket: {errs}"
        );
    }

    #[test]
    fn kms_key_implies_kms() {
        let c = parse(r#"{"s3_bucket": "bkt", "s3_sse_kms_key_id": "arn:aws:kms:k"}"#).unwrap();
        assert_eq!(
            c.sse,
            ServerSideEncryption::Kms {
                key_id: Some("arn:aws:kms:k".into())
            }
        );
    }
}
