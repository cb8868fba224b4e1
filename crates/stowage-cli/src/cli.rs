//! Command-line arguments.

use std::path::PathBuf;

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
    /// Run the example OCI registry (no authentication) on the selected
    /// location: the embedded local store when there is no --config.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5000")]
        listen: std::net::SocketAddr,
        /// Directory of the upload records (uploads survive restarts).
        #[arg(long, default_value = "./stowage-registry-state")]
        state_dir: PathBuf,
        /// Serve blob bytes even when the driver has direct URLs.
        #[arg(long)]
        no_redirect: bool,
    },
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
    /// The URL (or, with a custom policy, a `*` pattern) to sign.
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
