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
}

/// One of the documents `iam-policy` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PolicyKind {
    /// The permission policy (attach to the role or user).
    Permission,
    /// The role's trust policy (STSS3Storage only).
    Trust,
}
