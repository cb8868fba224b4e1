//! `stowage gc`: the registry's garbage collection on the selected
//! location (see `stowage_registry::gc` and docs/registry.md), safe while
//! registries serve it.
//!
//! Standard output: one line per blob removed (`removed <digest> <bytes>`,
//! or `would remove ...` with `--dry-run`), then a summary. Progress and
//! warnings go to standard error.

use std::time::Duration;

use stowage_registry::gc::{self, GcOptions, GcProgress, GcReport};

use crate::context::Context;
use crate::failure::Failure;

/// Runs a collection (or, with `dry_run`, says what one would do).
pub(crate) async fn run(ctx: &Context, grace: Duration, dry_run: bool) -> Result<(), Failure> {
    let location = ctx.selected()?;
    let storage = ctx.storage().await?;
    eprintln!(
        "stowage gc: {} location {} ({}), grace {}",
        if dry_run {
            "dry run (nothing is changed) on"
        } else {
            "collecting on"
        },
        location.name,
        location.driver.driver_name(),
        duration_text(grace)
    );
    let options = GcOptions::default()
        .with_grace(grace)
        .with_dry_run(dry_run)
        .with_progress(|p: &GcProgress| eprintln!("stowage gc: {}", progress_line(p)));
    let report = gc::run(storage, options)
        .await
        .map_err(|e| Failure::failed(e.to_string()))?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for blob in &report.removed {
        println!("{verb} {} {}", blob.digest, blob.size);
    }
    for line in summary(&report) {
        println!("{line}");
    }
    if report.other_runs > 0 {
        eprintln!(
            "stowage gc: {} other collection(s) were running at the same time (safe; each decides for itself)",
            report.other_runs
        );
    }
    if report.failures > 0 {
        eprintln!(
            "stowage gc: {} clean-up step(s) failed (see the warnings above); the next run tries again",
            report.failures
        );
    }
    Ok(())
}

/// The summary lines of a report.
fn summary(report: &GcReport) -> [String; 2] {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    [
        format!(
            "{verb} {} blobs ({} bytes, {}), {} repository links, {} abandoned uploads",
            report.blobs_removed,
            report.bytes_freed,
            bytes_text(report.bytes_freed),
            report.links_removed,
            report.uploads_removed
        ),
        format!(
            "kept {} referenced blobs, {} younger than the grace, {} relied on within it; \
             {} repositories, {} manifests read in {:.1} s",
            report.blobs_in_use,
            report.blobs_kept_recent,
            report.blobs_kept_used + report.blobs_abandoned,
            report.repositories,
            report.manifests,
            report.elapsed.as_secs_f64()
        ),
    ]
}

/// One progress line.
fn progress_line(p: &GcProgress) -> String {
    format!(
        "{}: {} repositories, {} manifests read, {} digests marked, {} blobs listed, \
         {} removed ({}) after {:.0} s",
        p.phase,
        p.repositories,
        p.manifests,
        p.blobs_marked,
        p.blobs_listed,
        p.blobs_removed,
        bytes_text(p.bytes_freed),
        p.elapsed.as_secs_f64()
    )
}

/// `bytes` for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration as `--grace` takes it: `0s`, `90s`, `30m`, `1h`, `2d`.
fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes_text(0), "0 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(3 << 30), "3.0 GiB");
        assert_eq!(duration_text(Duration::ZERO), "0s");
        assert_eq!(duration_text(Duration::from_secs(90)), "90s");
        assert_eq!(duration_text(Duration::from_secs(1800)), "30m");
        assert_eq!(duration_text(Duration::from_secs(3600)), "1h");
        assert_eq!(duration_text(Duration::from_secs(172_800)), "2d");
    }
}
