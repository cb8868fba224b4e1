//! Quay's S3-compatible drivers: `RadosGWStorage` (Ceph's RADOS Gateway),
//! `RHOCSStorage` (OpenShift Data Foundation, which Quay runs as RadosGW),
//! `IBMCloudStorage` (IBM Cloud Object Storage) and `GoogleCloudStorage`
//! (Google Cloud Storage's XML API with HMAC keys, read in `quay_gcs.rs`).
//!
//! Quay builds them on boto3 with an endpoint made of `hostname`, `port`
//! and `is_secure`, static keys (`access_key`, `secret_key`), `bucket_name`
//! and `storage_path`. Stowage reads the same keys into an [`S3Config`]
//! (path-style addressing, no server-side encryption, as Quay sends none to
//! these servers) and runs the location on the S3 driver.

use std::fmt;

use stowage_core::config::{ConfigErrors, Params};
use stowage_s3::S3Config;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Smallest part S3 accepts other than the last, in MiB.
const MIN_PART_MB: f64 = 5.0;
/// Largest part S3 accepts, in MiB.
const MAX_PART_MB: f64 = 5120.0;

/// Which of Quay's S3-compatible drivers a location names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum S3CompatibleDriver {
    /// `RadosGWStorage`: Ceph's RADOS Gateway.
    RadosGw,
    /// `RHOCSStorage`: OpenShift Data Foundation (formerly OpenShift
    /// Container Storage); Quay runs it exactly as `RadosGWStorage`.
    Rhocs,
    /// `IBMCloudStorage`: IBM Cloud Object Storage.
    IbmCloud,
    /// `GoogleCloudStorage`: Google Cloud Storage's XML API
    /// (`https://storage.googleapis.com`) with HMAC keys, on the S3 driver's
    /// GCS profile ([`crate::read_gcs`]).
    GoogleCloud,
}

impl S3CompatibleDriver {
    /// Every one of them.
    pub const ALL: [Self; 4] = [
        Self::RadosGw,
        Self::Rhocs,
        Self::IbmCloud,
        Self::GoogleCloud,
    ];

    /// Quay's name of the driver.
    pub fn quay_name(self) -> &'static str {
        match self {
            Self::RadosGw => "RadosGWStorage",
            Self::Rhocs => "RHOCSStorage",
            Self::IbmCloud => "IBMCloudStorage",
            Self::GoogleCloud => "GoogleCloudStorage",
        }
    }

    /// The driver Quay calls `name`, if it is one of these.
    pub fn from_quay_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.quay_name() == name)
    }

    /// What the server behind the driver may lack compared with AWS S3,
    /// for messages of `setup` and the like (`None`: nothing known).
    pub fn known_gaps(self) -> Option<&'static str> {
        match self {
            Self::RadosGw | Self::Rhocs => Some(
                "older Ceph RGW releases and some OpenShift Data Foundation (NooBaa) \
                 versions do not support bucket CORS (Quay hands out no direct URLs that \
                 need CORS for these drivers); registry pulls and pushes need no CORS",
            ),
            Self::IbmCloud => None,
            Self::GoogleCloud => Some(
                "Google Cloud Storage takes bucket CORS rules in its own document (CorsConfig), \
                 not S3's CORSConfiguration: set them with `gcloud storage buckets update \
                 gs://BUCKET --cors-file=cors.json` instead; registry pulls and pushes need no \
                 CORS",
            ),
        }
    }
}

impl fmt::Display for S3CompatibleDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.quay_name())
    }
}

/// Reads the parameters of a location of `driver` (Quay's keys, plus
/// stowage's `s3_region`, `server_side_assembly`, the `secret_key_file` /
/// `secret_key_env` forms of the secret and the `s3_*` transfer keys) into
/// the S3 configuration the location runs on, reporting unknown keys.
///
/// | key | default |
/// |---|---|
/// | `hostname` | required (may carry `http://`/`https://` and a port, as in Quay) |
/// | `port` | none: the scheme's port |
/// | `is_secure` | required unless `hostname` carries the scheme: `https` when true |
/// | `access_key`, `secret_key` | required |
/// | `bucket_name` | required |
/// | `storage_path` | bucket root |
/// | `maximum_chunk_size_mb` (RadosGW, RHOCS) | 32 |
/// | `minimum_chunk_size_mb` (IBMCloud) | 100 |
/// | `maximum_chunk_size_gb` (IBMCloud) | 5 |
///
/// # Errors
/// Every problem found, each with its key path and Quay's key name.
pub fn read_s3_compatible(
    driver: S3CompatibleDriver,
    mut params: Params<'_>,
) -> Result<S3Config, ConfigErrors> {
    if driver == S3CompatibleDriver::GoogleCloud {
        // Keys of its own (no hostname: GCS's endpoint is fixed).
        return crate::quay_gcs::read_gcs(params);
    }
    let parsed = read(driver, &mut params);
    params.finish_with(parsed)
}

fn read(driver: S3CompatibleDriver, params: &mut Params<'_>) -> Option<S3Config> {
    let mut ok = true;
    let mut bad = |params: &mut Params<'_>, key: &str, msg: String| {
        params.problem(key, msg);
        ok = false;
    };

    let hostname = params.required_string("hostname");
    let port = params.u64("port");
    let is_secure = params.bool("is_secure");
    let access_key = params.required_string("access_key");
    let secret_given =
        params.has("secret_key") || params.has("secret_key_file") || params.has("secret_key_env");
    let secret_key = params.secret("secret_key");
    let bucket = params.required_string("bucket_name");
    let storage_path = params.string("storage_path");
    let region = params.string("s3_region");
    let server_side_assembly = params.bool("server_side_assembly");

    if !secret_given {
        bad(params, "secret_key", "required key is missing".into());
    }
    if let Some(s) = &secret_key {
        if s.expose().is_empty() {
            bad(params, "secret_key", "required key has no value".into());
        }
    }
    if let Some(p) = port {
        if p == 0 || p > 65535 {
            bad(params, "port", format!("{p} is not a TCP port"));
        }
    }
    let endpoint = match &hostname {
        Some(h) => match endpoint_url(h, port, is_secure) {
            Ok(url) => Some(url),
            Err(EndpointProblem::NeedsIsSecure) => {
                if !params.has("is_secure") {
                    bad(
                        params,
                        "is_secure",
                        "required key is missing (true: https, false: http)".into(),
                    );
                }
                None
            }
            Err(EndpointProblem::Hostname(why)) => {
                bad(params, "hostname", why);
                None
            }
        },
        None => None,
    };
    if let Some(b) = &bucket {
        if b.contains('/') || b.contains(char::is_whitespace) {
            bad(
                params,
                "bucket_name",
                format!("{b:?} is not a bucket name (no '/' or spaces)"),
            );
        }
    }
    let root = storage_path
        .as_deref()
        .map(|p| p.trim_matches('/').to_string())
        .unwrap_or_default();
    if root.split('/').any(|s| s == "." || s == "..") || root.contains("//") {
        bad(
            params,
            "storage_path",
            format!(
                "{:?} has an empty, '.' or '..' segment",
                storage_path.as_deref().unwrap_or("")
            ),
        );
    }
    if let Some(r) = &region {
        if r.is_empty() || r.contains(char::is_whitespace) {
            bad(params, "s3_region", format!("{r:?} is not a region name"));
        }
    }

    // Chunk sizes: the keys Quay reads for each driver, range-checked
    // before any arithmetic.
    let (mut min_chunk, mut max_chunk) = match driver {
        // GoogleCloud is read by quay_gcs.rs and never gets here.
        S3CompatibleDriver::RadosGw
        | S3CompatibleDriver::Rhocs
        | S3CompatibleDriver::GoogleCloud => (5 * MIB, 32 * MIB),
        S3CompatibleDriver::IbmCloud => (100 * MIB, 5 * GIB),
    };
    let max_key = match driver {
        S3CompatibleDriver::RadosGw
        | S3CompatibleDriver::Rhocs
        | S3CompatibleDriver::GoogleCloud => {
            if let Some(mb) = params.f64("maximum_chunk_size_mb") {
                if (MIN_PART_MB..=MAX_PART_MB).contains(&mb) {
                    max_chunk = (mb * MIB as f64) as u64;
                } else {
                    bad(
                        params,
                        "maximum_chunk_size_mb",
                        format!("{}: S3 parts are 5 MiB to 5 GiB; use 10 to 5120", num(mb)),
                    );
                }
            }
            "maximum_chunk_size_mb"
        }
        S3CompatibleDriver::IbmCloud => {
            if let Some(mb) = params.f64("minimum_chunk_size_mb") {
                if (MIN_PART_MB..=MAX_PART_MB).contains(&mb) {
                    min_chunk = (mb * MIB as f64) as u64;
                } else {
                    bad(
                        params,
                        "minimum_chunk_size_mb",
                        format!(
                            "{}: S3 parts other than the last are 5 MiB to 5 GiB; use 5 to 5120",
                            num(mb)
                        ),
                    );
                }
            }
            if let Some(gb) = params.f64("maximum_chunk_size_gb") {
                if gb > 0.0 && gb <= 5.0 {
                    max_chunk = (gb * GIB as f64) as u64;
                } else {
                    bad(
                        params,
                        "maximum_chunk_size_gb",
                        format!(
                            "{}: S3 parts are at most 5 GiB; use above 0 up to 5",
                            num(gb)
                        ),
                    );
                }
            }
            "maximum_chunk_size_gb"
        }
    };
    if max_chunk < min_chunk.saturating_mul(2) {
        bad(
            params,
            max_key,
            format!(
                "must be at least twice the minimum chunk size ({} MiB), so that the pieces a \
                 large chunk is split into stay above the minimum part size",
                min_chunk / MIB
            ),
        );
    }

    let mut config = S3Config::new(bucket.clone().unwrap_or_default());
    let transfer_ok = config.read_transfer_keys(params);
    if !(ok && transfer_ok) {
        return None;
    }
    let (bucket, endpoint, access_key, secret_key) = (bucket?, endpoint?, access_key?, secret_key?);
    config.bucket = bucket;
    let mut config = config
        .with_endpoint(endpoint)
        .with_static_keys(access_key, secret_key)
        .with_root(&root);
    if let Some(r) = region {
        config = config.with_region(r);
    }
    config.min_chunk_size = min_chunk;
    config.max_chunk_size = max_chunk;
    config.server_side_assembly = server_side_assembly.unwrap_or(true);
    Some(config)
}

/// A number as a person wrote it: `1e300`, not three hundred digits.
fn num(x: f64) -> String {
    if x.abs() >= 1e9 {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

enum EndpointProblem {
    /// The hostname has no scheme and `is_secure` is missing.
    NeedsIsSecure,
    /// The hostname cannot be part of a URL.
    Hostname(String),
}

/// Quay's endpoint rule: the scheme from `is_secure` unless the hostname
/// has one; the port appended unless the hostname ends with one.
fn endpoint_url(
    hostname: &str,
    port: Option<u64>,
    is_secure: Option<bool>,
) -> Result<String, EndpointProblem> {
    let h = hostname.trim().trim_end_matches('/');
    let (scheme, rest) = match h.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s.to_string(), rest),
        Some((other, _)) => {
            return Err(EndpointProblem::Hostname(format!(
                "{hostname:?}: the scheme {other:?} is not http or https"
            )))
        }
        None => match is_secure {
            Some(true) => ("https".to_string(), h),
            Some(false) => ("http".to_string(), h),
            None => return Err(EndpointProblem::NeedsIsSecure),
        },
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace)
    {
        return Err(EndpointProblem::Hostname(format!(
            "{hostname:?} is not a host name (give the host, optionally with http:// or \
             https:// and :port)"
        )));
    }
    let has_port = rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    Ok(match port {
        Some(p) if !has_port => format!("{scheme}://{rest}:{p}"),
        _ => format!("{scheme}://{rest}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn parse(driver: S3CompatibleDriver, v: Value) -> Result<S3Config, ConfigErrors> {
        let map: Map<String, Value> = serde_json::from_value(v).unwrap();
        read_s3_compatible(driver, Params::new("loc[1]", &map))
    }

    #[test]
    fn endpoint_follows_quays_rule() {
        let e = |h, p, s| endpoint_url(h, p, s).ok();
        assert_eq!(
            e("rgw.local", Some(8080), Some(false)).as_deref(),
            Some("http://rgw.local:8080")
        );
        assert_eq!(
            e("rgw.local", None, Some(true)).as_deref(),
            Some("https://rgw.local")
        );
        assert_eq!(
            e("http://rgw.local:7480/", Some(443), None).as_deref(),
            Some("http://rgw.local:7480"),
            "a port in the hostname wins, as in Quay"
        );
        assert_eq!(
            e("https://s3.example", Some(8443), Some(false)).as_deref(),
            Some("https://s3.example:8443"),
            "a scheme in the hostname wins over is_secure"
        );
        assert!(matches!(
            endpoint_url("rgw.local", None, None),
            Err(EndpointProblem::NeedsIsSecure)
        ));
        assert!(e("ftp://x", None, Some(true)).is_none());
        assert!(e("host/path", None, Some(true)).is_none());
    }

    #[test]
    fn radosgw_keys_make_a_path_style_s3_config_without_sse() {
        let c = parse(
            S3CompatibleDriver::RadosGw,
            json!({"hostname": "ceph.example", "port": "7480", "is_secure": "false",
                   "access_key": "AK", "secret_key": "very-secret", "bucket_name": "quay",
                   "storage_path": "/datastorage/registry"}),
        )
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://ceph.example:7480"));
        assert!(c.path_style);
        assert_eq!(c.sse, stowage_s3::ServerSideEncryption::None);
        assert_eq!(c.bucket, "quay");
        assert_eq!(c.root, "datastorage/registry");
        assert_eq!(c.max_chunk_size, 32 * MIB, "Quay's RadosGW default");
        assert_eq!(c.min_chunk_size, 5 * MIB);
        assert!(c.server_side_assembly);
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn ibm_cloud_chunk_defaults_and_keys() {
        let c = parse(
            S3CompatibleDriver::IbmCloud,
            json!({"hostname": "s3.eu-de.cloud-object-storage.appdomain.cloud", "is_secure": true,
                   "port": 443, "access_key": "AK", "secret_key": "SK", "bucket_name": "b",
                   "storage_path": "/r"}),
        )
        .unwrap();
        assert_eq!(
            c.endpoint.as_deref(),
            Some("https://s3.eu-de.cloud-object-storage.appdomain.cloud:443")
        );
        assert_eq!(c.min_chunk_size, 100 * MIB);
        assert_eq!(c.max_chunk_size, 5 * GIB);
        let c = parse(
            S3CompatibleDriver::IbmCloud,
            json!({"hostname": "h", "is_secure": true, "access_key": "AK", "secret_key": "SK",
                   "bucket_name": "b", "minimum_chunk_size_mb": 8, "maximum_chunk_size_gb": 1}),
        )
        .unwrap();
        assert_eq!(c.min_chunk_size, 8 * MIB);
        assert_eq!(c.max_chunk_size, GIB);
    }

    #[test]
    fn problems_name_quays_keys() {
        let errs = parse(
            S3CompatibleDriver::Rhocs,
            json!({"hostname": "h", "port": 70000, "bucket_name": null,
                   "maximum_chunk_size_mb": 1e300, "s3_bucket": "x"}),
        )
        .unwrap_err();
        let text = errs.to_string();
        for needle in [
            "loc[1].is_secure: required key is missing",
            "loc[1].access_key: required key is missing",
            "loc[1].secret_key: required key is missing",
            "loc[1].bucket_name: required key has no value",
            "loc[1].port: 70000 is not a TCP port",
            "loc[1].maximum_chunk_size_mb: 1e300",
            "loc[1].s3_bucket: unknown key",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        let errs = parse(
            S3CompatibleDriver::RadosGw,
            json!({"hostname": "h", "is_secure": true, "access_key": "AK", "secret_key": "SK",
                   "bucket_name": "b", "minimum_chunk_size_mb": 5}),
        )
        .unwrap_err();
        assert!(
            errs.to_string()
                .contains("loc[1].minimum_chunk_size_mb: unknown key"),
            "RadosGW has no minimum chunk key in Quay: {errs}"
        );
        let errs = parse(
            S3CompatibleDriver::IbmCloud,
            json!({"hostname": "h", "is_secure": true, "access_key": "AK", "secret_key": "SK",
                   "bucket_name": "b", "minimum_chunk_size_mb": "inf", "maximum_chunk_size_gb": 9}),
        )
        .unwrap_err();
        let text = errs.to_string();
        assert!(text.contains("loc[1].minimum_chunk_size_mb"), "{text}");
        assert!(text.contains("loc[1].maximum_chunk_size_gb"), "{text}");
        assert!(!text.contains("\"SK\""), "{text}");
    }

    #[test]
    fn names_round_trip() {
        for d in S3CompatibleDriver::ALL {
            assert_eq!(S3CompatibleDriver::from_quay_name(d.quay_name()), Some(d));
        }
        assert_eq!(S3CompatibleDriver::from_quay_name("S3Storage"), None);
        assert_eq!(
            S3CompatibleDriver::from_quay_name("GoogleCloudStorage"),
            Some(S3CompatibleDriver::GoogleCloud)
        );
    }

    #[test]
    fn google_cloud_storage_is_read_with_its_own_keys() {
        let c = parse(
            S3CompatibleDriver::GoogleCloud,
            json!({"access_key": "GOOG1EXAMPLE", "secret_key": "gcs-secret",
                   "bucket_name": "quay-gcs", "storage_path": "/datastorage/registry"}),
        )
        .unwrap();
        assert_eq!(
            c.endpoint.as_deref(),
            Some("https://storage.googleapis.com")
        );
        assert_eq!(c.profile, stowage_s3::ServerProfile::Gcs);
        let errs = parse(
            S3CompatibleDriver::GoogleCloud,
            json!({"hostname": "h", "access_key": "A", "secret_key": "S", "bucket_name": "b-1"}),
        )
        .unwrap_err();
        assert!(
            errs.to_string().contains("loc[1].hostname: unknown key"),
            "{errs}"
        );
    }
}
