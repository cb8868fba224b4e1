//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Storage for container registries: inspect and move objects in the
/// configured storage locations.
#[derive(Debug, Parser)]
#[command(name = "stowage", version)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options of every command.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Quay-format config file (YAML or JSON) with DISTRIBUTED_STORAGE_CONFIG.
    /// Without it: the embedded local store under ./stowage-data.
    #[arg(long, global = true, env = "STOWAGE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Storage location to use (default: the first preferred one).
    #[arg(long, global = true, env = "STOWAGE_LOCATION")]
    pub(crate) location: Option<String>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check locations: write, read and delete a probe object, and the
    /// driver's own checks (all locations unless --location is given).
    Validate {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Upload a local file (`-` for stdin) to PATH.
    Put {
        /// Local file, or `-` for stdin.
        local: PathBuf,
        /// Storage path.
        path: String,
        /// Content type to store.
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Download PATH to a local file (`-` for stdout).
    Get {
        /// Storage path.
        path: String,
        /// Local file, or `-` for stdout.
        local: PathBuf,
        #[command(flatten)]
        download: DownloadArgs,
    },
    /// Print an object to stdout.
    Cat {
        /// Storage path.
        path: String,
    },
    /// List objects below a prefix.
    Ls {
        /// Prefix (whole segments); everything when absent.
        prefix: Option<String>,
        /// Show size and modification time.
        #[arg(short, long)]
        long: bool,
    },
    /// Show an object's metadata.
    Stat {
        /// Storage path.
        path: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Delete an object, or with --recursive everything below a prefix.
    Rm {
        /// Storage path or prefix.
        path: String,
        /// Delete everything below PATH too.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Copy between locations, or between the local disk and a location.
    /// Storage arguments are LOCATION:PATH; anything else is a local file
    /// (`-` for stdin/stdout).
    Cp {
        /// Source.
        source: String,
        /// Destination.
        dest: String,
        #[command(flatten)]
        download: DownloadArgs,
    },
    /// Print the least-privilege IAM policy of an S3 or STS location:
    /// exactly the S3 actions stowage calls, scoped to its bucket and
    /// storage_path, and for STSS3Storage the role's trust policy.
    IamPolicy {
        /// Also allow the one-off bucket set-up (CORS for browser uploads).
        #[arg(long)]
        with_setup: bool,
        /// Print only one document (to pass straight to `aws iam`).
        #[arg(long, value_enum)]
        only: Option<PolicyKind>,
    },
    /// One-off set-up of the selected S3 location (S3Storage, STSS3Storage,
    /// CloudFrontedS3Storage): the bucket's CORS rules for browser uploads
    /// and downloads, as Quay sets them.
    Setup,
    /// Sign a CloudFront URL, or make signed cookies, with a key given here
    /// or the key of a CloudFrontedS3Storage location.
    Sign(SignArgs),
    /// Run the example OCI registry on the selected location: the embedded
    /// local store when there is no --config. Without --htpasswd anyone who
    /// reaches the port can push (and, with --allow-delete, delete).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5000")]
        listen: std::net::SocketAddr,
        /// Keep upload records in this local directory (a single server)
        /// instead of in the storage location itself, where every replica
        /// on the same location sees them.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Serve blob bytes even when the driver has direct URLs.
        #[arg(long)]
        no_redirect: bool,
        /// Serve DELETE of manifests (with their tags), of tags and of a
        /// repository's blob links (202). Without it every such DELETE is
        /// 405 UNSUPPORTED. The bytes nothing refers to any more are
        /// removed by `stowage gc`.
        #[arg(long)]
        allow_delete: bool,
        #[command(flatten)]
        limits: ServeLimits,
        #[command(flatten)]
        security: ServeSecurity,
    },
    /// Garbage collection of the registry's storage on the selected
    /// location (the embedded local store when there is no --config), safe
    /// while registries serve it: blobs no manifest refers to and older
    /// than --grace, the repository links to them, and uploads untouched
    /// for longer than --grace. Prints each blob removed and the bytes
    /// freed; progress goes to stderr.
    Gc {
        /// Keep unreferenced blobs written (or mounted) within this time,
        /// and uploads touched within it, as a push in progress needs:
        /// 90s, 30m, 1h, 2d, 1h30m.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        grace: Duration,
        /// Print what would be removed and the bytes it would free; change
        /// nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `stowage serve`'s authentication and TLS.
#[derive(Debug, Args)]
pub(crate) struct ServeSecurity {
    /// Require HTTP Basic credentials from this htpasswd file (bcrypt
    /// entries, as `htpasswd -B` writes them) for every API request and
    /// /metrics; /healthz and /readyz stay open.
    #[arg(long, value_name = "FILE")]
    pub(crate) htpasswd: Option<PathBuf>,
    /// With --htpasswd: let GET and HEAD of repositories through without
    /// credentials (pushes, deletes and /v2/ itself still need them).
    #[arg(long, requires = "htpasswd")]
    pub(crate) anonymous_pull: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Accept manifests whose descriptors carry URLs matching this regular
    /// expression (repeatable; http(s) only, e.g.
    /// '^https://cdn\.example\.com/'). Without it, manifests with URLs are
    /// refused (400 MANIFEST_INVALID).
    #[arg(long, value_name = "REGEX")]
    pub(crate) manifest_urls_allow: Vec<stowage_registry::UrlPattern>,
    /// Refuse URLs matching this regular expression even when allowed
    /// (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub(crate) manifest_urls_deny: Vec<stowage_registry::UrlPattern>,
}

/// `stowage serve`'s defences against slow, silent or lying clients.
#[derive(Debug, Args)]
pub(crate) struct ServeLimits {
    /// Load balancers whose X-Forwarded-For is believed (comma-separated
    /// CIDRs, IPv4 or IPv6: 10.0.0.0/8,2001:db8::/32). From a peer inside
    /// them the client is the right-most address of X-Forwarded-For that is
    /// not itself trusted; from any other peer the header is ignored.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub(crate) trusted_proxies: Vec<stowage_registry::Cidr>,
    /// A client that sends nothing of a request body, or reads nothing of a
    /// response, for this long loses its connection (the chunk in flight is
    /// dropped; the upload stays resumable). 0: never.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub(crate) idle_timeout_seconds: u64,
    /// The time a client has to send a request's headers (and to start its
    /// next request on a kept-alive connection). 0: no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub(crate) header_read_timeout_seconds: u64,
    /// Refuse blob uploads that would grow past this size (413,
    /// SIZE_INVALID): bytes, or with a unit (500MiB, 10GiB, 2TB). Default
    /// 10GiB; 0: no limit.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "10GiB")]
    pub(crate) max_upload_size: Option<u64>,
    /// The most connections served at once; past it, new connections wait
    /// (in the listen backlog) until one closes. 0: no limit.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub(crate) max_connections: usize,
    /// On SIGTERM or SIGINT the server stops accepting connections and
    /// gives the requests in flight this long to finish, then closes what
    /// is left and exits 0 (a chunk cut short stays resumable). A second
    /// signal exits at once. 0: close at once.
    #[arg(
        long,
        alias = "shutdown-grace",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub(crate) shutdown_grace_seconds: u64,
}

/// A size in bytes: digits, optionally followed by a unit (`k`/`KB` =
/// 1000, `KiB` = 1024, up to `T`/`TiB`), case-insensitive. Overflow is an
/// error, never a wrapped value.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a size: expected bytes, e.g. 1073741824 or 1GiB"
        ));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u64.pow(2),
        "g" | "gb" => 1000u64.pow(3),
        "t" | "tb" => 1000u64.pow(4),
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A duration: numbers each followed by a unit, `s`, `m`, `h` or `d` (also
/// `sec`, `min`, `hour(s)`, `day(s)`), summed (`1h30m`); `0` alone is
/// zero. Overflow is an error, never a wrapped value.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected =
        || format!("{text:?} is not a duration: expected e.g. 90s, 30m, 1h, 2d or 1h30m");
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(expected());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        if number.is_empty() || unit.is_empty() {
            return Err(expected());
        }
        let seconds: u64 = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use s, m, h or d)"
                ))
            }
        };
        let too_large = || format!("{text:?} is too long a duration");
        let n: u64 = number.parse().map_err(|_| too_large())?;
        total = n
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(too_large)?;
        rest = after;
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_without_overflow() {
        let secs = |s: u64| Ok(Duration::from_secs(s));
        assert_eq!(parse_duration("0"), secs(0));
        assert_eq!(parse_duration("0s"), secs(0));
        assert_eq!(parse_duration("90s"), secs(90));
        assert_eq!(parse_duration("30m"), secs(1800));
        assert_eq!(parse_duration("1h"), secs(3600));
        assert_eq!(parse_duration("2d"), secs(172_800));
        assert_eq!(parse_duration("1h30m"), secs(5400));
        assert_eq!(parse_duration(" 2Days "), secs(172_800));
        for bad in [
            "",
            "1",
            "h",
            "1.5h",
            "-1h",
            "1w",
            "1h 30m",
            "99999999999999999999s",
            "999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_parse_without_overflow() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500 MiB"), Ok(500 << 20));
        assert_eq!(parse_size("2TB"), Ok(2_000_000_000_000));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "GiB",
            "-1",
            "1.5GiB",
            "1e3",
            "18446744073709551616",
            "18446744073709551615KiB",
            "99999999999TiB",
            "10 parsecs",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}

/// Arguments of `stowage sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// Key id: a key group's public key id (K...) or a legacy key pair id
    /// (APKA...). Without it, the key of the CloudFront location selected by
    /// --config/--location signs.
    #[arg(long, requires = "private_key")]
    pub(crate) key_id: Option<String>,
    /// PEM private key (PKCS#1, PKCS#8 or SEC1; RSA or ECDSA P-256).
    #[arg(long, requires = "key_id")]
    pub(crate) private_key: Option<PathBuf>,
    /// Policy kind; default canned, or custom when --not-before, --ip or a
    /// `*` in the URL needs one.
    #[arg(long, value_enum)]
    pub(crate) policy: Option<SignPolicy>,
    /// Expiry as epoch seconds.
    #[arg(long, conflicts_with = "expires_in")]
    pub(crate) expires: Option<i64>,
    /// Expiry as seconds from now (default 3600).
    #[arg(long)]
    pub(crate) expires_in: Option<u64>,
    /// Not valid before this epoch second (custom policy).
    #[arg(long)]
    pub(crate) not_before: Option<i64>,
    /// Only clients in this address or CIDR (custom policy).
    #[arg(long)]
    pub(crate) ip: Option<String>,
    /// Signature hash (default: the location's, else sha1).
    #[arg(long, value_enum)]
    pub(crate) hash: Option<SignHash>,
    /// Print signed cookies (one `Name=Value` per line) instead of a URL.
    #[arg(long)]
    pub(crate) cookies: bool,
    /// The URL (or, with a custom policy, a `*` pattern) to sign; `-` signs
    /// each line of standard input (one URL per line, empty lines skipped)
    /// and prints one signed URL per line, loading the key once. A line that
    /// cannot be signed is named on stderr and the others are still signed;
    /// the exit code is then 2 (a bad URL or option) or 1 (signing failed).
    pub(crate) url: String,
}

/// `--policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SignPolicy {
    /// `Expires=`: URL and expiry only.
    Canned,
    /// `Policy=`: not-before, source IP, wildcards.
    Custom,
}

/// `--hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SignHash {
    /// SHA-1 (CloudFront's default).
    Sha1,
    /// SHA-256 (adds Hash-Algorithm=SHA256).
    Sha256,
}

/// One of the documents `iam-policy` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PolicyKind {
    /// The permission policy (attach to the role or user).
    Permission,
    /// The role's trust policy (STSS3Storage only).
    Trust,
}

/// How `get` and `cp` download an object to a local file: in ranges
/// fetched in parallel (stdout gets one stream).
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct DownloadArgs {
    /// Ranges in flight when downloading to a file [default: 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub ranges: Option<u16>,
    /// Size of each range in MiB [default: 16].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..=5120))]
    pub range_mib: Option<u32>,
}

impl DownloadArgs {
    /// The library's download settings, with these flags over its defaults.
    pub(crate) fn options(&self) -> stowage::download::DownloadOptions {
        let mut options = stowage::download::DownloadOptions::default();
        if let Some(n) = self.ranges {
            options = options.with_concurrency(n.into());
        }
        if let Some(mib) = self.range_mib {
            options = options.with_range_size(u64::from(mib) << 20);
        }
        options
    }
}
