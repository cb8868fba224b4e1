//! The `stowage` command line.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 usage or configuration
//! error, 130 and 143 stopped by SIGINT and SIGTERM (`serve` stops
//! gracefully on either and exits 0).

mod cli;
mod commands;
mod context;
mod failure;
mod interrupt;
mod progress;
mod target;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// glibc gives each thread that allocates its own arena (up to 8 per
/// core); buffers allocated on one runtime thread and freed on another then
/// strand memory in many arenas. Two arenas keep a long-running `stowage
/// serve` close to what it really holds.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only adjusts allocator tuning; it is called
        // before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // Request logs of `stowage serve` (with their request ids)
                // at info; everything else only when it warns.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,stowage_registry=info")
                }),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stowage: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(commands::run(args));
    // An interrupted command may leave a read of stdin or a file operation
    // running on a blocking thread: the process does not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("stowage: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
