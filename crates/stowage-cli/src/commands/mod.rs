//! One module per group of subcommands.

mod gc;
mod iam_policy;
mod inspect;
mod serve;
mod setup;
mod sign;
mod transfer;
mod validate;

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::failure::Failure;
use crate::interrupt;

/// Runs the parsed command line. `serve` stops gracefully on SIGINT and
/// SIGTERM; every other command is cancelled by the first one (see the
/// `interrupt` module).
pub(crate) async fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Context::load(&cli.global)?;
    match cli.command {
        Command::Serve {
            listen,
            state_dir,
            no_redirect,
            allow_delete,
            limits,
            security,
        } => {
            let redirect = !no_redirect;
            serve::run(
                &ctx,
                listen,
                state_dir,
                redirect,
                allow_delete,
                limits,
                security,
            )
            .await
        }
        command => interrupt::cancel_on_signal(run_once(&ctx, command)).await,
    }
}

/// Runs a command other than `serve`.
async fn run_once(ctx: &Context, command: Command) -> Result<(), Failure> {
    match command {
        Command::Validate { json } => validate::run(ctx, json).await,
        Command::Put {
            local,
            path,
            content_type,
        } => transfer::put(ctx, &local, &path, content_type).await,
        Command::Get {
            path,
            local,
            download,
        } => transfer::get(ctx, &path, &local, download.options()).await,
        Command::Cat { path } => transfer::get(ctx, &path, "-".as_ref(), Default::default()).await,
        Command::Cp {
            source,
            dest,
            download,
        } => transfer::cp(ctx, &source, &dest, download.options()).await,
        Command::Ls { prefix, long } => inspect::ls(ctx, prefix.as_deref(), long).await,
        Command::Stat { path, json } => inspect::stat(ctx, &path, json).await,
        Command::Rm { path, recursive } => inspect::rm(ctx, &path, recursive).await,
        Command::IamPolicy { with_setup, only } => iam_policy::run(ctx, with_setup, only),
        Command::Sign(args) => sign::run(ctx, &args),
        Command::Setup => setup::run(ctx).await,
        Command::Gc { grace, dry_run } => gc::run(ctx, grace, dry_run).await,
        Command::Serve { .. } => unreachable!("`run` serves without cancelling on a signal"),
    }
}

/// Parses a storage path argument.
pub(crate) fn storage_path(arg: &str) -> Result<stowage::StoragePath, Failure> {
    Ok(stowage::StoragePath::parse(arg)?)
}

/// Parses a prefix argument (`ls`, `rm --recursive`): one trailing `/`
/// means the prefix itself, as in `aws s3 ls dir/`; the rest of the rules
/// are [`stowage::StoragePath`]'s (`dir//` is still refused). Objects
/// never take this path: `StoragePath` keeps refusing a trailing `/`.
pub(crate) fn prefix_path(arg: &str) -> Result<stowage::StoragePath, Failure> {
    storage_path(strip_one_slash(arg))
}

/// `arg` without one trailing `/` (`dir/` is `dir`; `dir//` stays `dir/`,
/// which the path rules refuse).
pub(crate) fn strip_one_slash(arg: &str) -> &str {
    arg.strip_suffix('/').unwrap_or(arg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_slash_names_the_prefix() {
        assert_eq!(prefix_path("dir/").unwrap().as_str(), "dir");
        assert_eq!(prefix_path("a/b/").unwrap().as_str(), "a/b");
        assert_eq!(prefix_path("a/b").unwrap().as_str(), "a/b");
        for bad in ["dir//", "/", "", "/abs/", "a//b/"] {
            let e = prefix_path(bad).unwrap_err();
            assert_eq!(e.code, crate::failure::USAGE, "{bad:?}");
        }
        // Objects stay strict.
        assert!(storage_path("dir/").is_err());
    }
}
