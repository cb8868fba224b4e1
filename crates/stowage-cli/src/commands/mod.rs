//! One module per group of subcommands.

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

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Context::load(&cli.global)?;
    match cli.command {
        Command::Validate { json } => validate::run(&ctx, json).await,
        Command::Put {
            local,
            path,
            content_type,
        } => transfer::put(&ctx, &local, &path, content_type).await,
        Command::Get { path, local } => transfer::get(&ctx, &path, &local).await,
        Command::Cat { path } => transfer::get(&ctx, &path, "-".as_ref()).await,
        Command::Cp { source, dest } => transfer::cp(&ctx, &source, &dest).await,
        Command::Ls { prefix, long } => inspect::ls(&ctx, prefix.as_deref(), long).await,
        Command::Stat { path, json } => inspect::stat(&ctx, &path, json).await,
        Command::Rm { path, recursive } => inspect::rm(&ctx, &path, recursive).await,
        Command::IamPolicy { with_setup, only } => iam_policy::run(&ctx, with_setup, only),
        Command::Sign(args) => sign::run(&ctx, &args),
        Command::Setup => setup::run(&ctx).await,
        Command::Serve {
            listen,
            state_dir,
            no_redirect,
        } => serve::run(&ctx, listen, state_dir, !no_redirect).await,
    }
}

/// Parses a storage path argument.
pub(crate) fn storage_path(arg: &str) -> Result<stowage::StoragePath, Failure> {
    Ok(stowage::StoragePath::parse(arg)?)
}
