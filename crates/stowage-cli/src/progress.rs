//! Progress bars for large transfers when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Transfers smaller than this get no bar.
const MIN_SIZE: u64 = 4 * 1024 * 1024;

/// A bar for a transfer of `size` bytes (unknown: `None`), or a hidden one.
pub(crate) fn bar(size: Option<u64>, label: &str) -> ProgressBar {
    let show = std::io::stderr().is_terminal() && size.is_none_or(|s| s >= MIN_SIZE);
    if !show {
        return ProgressBar::hidden();
    }
    let bar = match size {
        Some(s) => ProgressBar::new(s).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .expect("valid template"),
        ),
    };
    bar.with_message(label.to_string())
}
