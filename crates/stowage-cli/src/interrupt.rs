//! SIGINT and SIGTERM. The first one stops the running command: its future
//! is dropped, so an S3 multipart upload in flight is aborted by the
//! driver's guard and a download's partial file is removed; the command
//! then waits (a few seconds at most) for the abort, says on stderr what
//! happened and exits 130 (SIGINT) or 143 (SIGTERM). A second signal exits
//! at once. `stowage serve` takes the signals itself (see `commands::serve`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use stowage::multipart::{dropped_aborts, wait_for_aborts, AbortTally};

use crate::failure::Failure;

/// How long an interrupted command waits for the aborts of the uploads it
/// cancelled.
pub(crate) const ABORT_WAIT: Duration = Duration::from_secs(5);

/// A signal that asks the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    /// SIGINT (Ctrl-C).
    Int,
    /// SIGTERM.
    Term,
}

impl Interrupt {
    /// The conventional exit code: 128 + the signal number.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Int => 130,
            Self::Term => 143,
        }
    }
}

impl std::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Int => "SIGINT",
            Self::Term => "SIGTERM",
        })
    }
}

/// SIGINT and SIGTERM, caught from [`Signals::install`] on (their default
/// action, ending the process, no longer happens).
#[derive(Debug)]
pub(crate) struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts catching the signals; needs the runtime.
    pub(crate) fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The next signal.
    pub(crate) async fn recv(&mut self) -> Interrupt {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => Interrupt::Int,
                _ = self.term.recv() => Interrupt::Term,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            Interrupt::Int
        }
    }
}

/// What the running command moves, for the message an interrupt prints.
#[derive(Debug, Clone)]
pub(crate) enum Activity {
    /// Writing an object to storage; `what` names it ("the upload of a to
    /// s3:b").
    Write { what: String },
    /// Reading an object into a local file or stdout; `partial` is the file
    /// being written, removed when the read stops.
    Read {
        what: String,
        partial: Option<PathBuf>,
    },
}

static CURRENT: Mutex<Option<Activity>> = Mutex::new(None);

/// Records what the command is moving now.
pub(crate) fn begin(activity: Activity) {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(activity);
}

fn current() -> Option<Activity> {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs `command` to its end, or until the first SIGINT or SIGTERM: then
/// drops it (cancelling what it was doing), waits up to [`ABORT_WAIT`] for
/// the multipart aborts that started, and fails with the signal's exit
/// code and a message that says what was stopped and what was left. From
/// the first signal on, a second one exits the process at once.
pub(crate) async fn cancel_on_signal<F>(command: F) -> Result<(), Failure>
where
    F: Future<Output = Result<(), Failure>>,
{
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "cannot catch SIGINT/SIGTERM: an interrupt ends the command without cleaning up"
            );
            return command.await;
        }
    };
    let before = dropped_aborts();
    let mut command = Box::pin(command);
    let signal = tokio::select! {
        // A command that finished wins over a signal that came with it.
        biased;
        result = &mut command => return result,
        signal = signals.recv() => signal,
    };
    let activity = current();
    tokio::spawn(exit_on_second_signal(signals, activity.clone()));
    // Dropping the command cancels it: the S3 driver's guards start the
    // aborts of its open multipart uploads, a download's partial file goes.
    drop(command);
    if dropped_aborts().since(before).running > 0 {
        eprintln!(
            "stowage: {signal}: aborting the multipart upload (up to {} s; {signal} again exits at once)",
            ABORT_WAIT.as_secs()
        );
    }
    let aborts = wait_for_aborts(ABORT_WAIT).await.since(before);
    Err(Failure {
        code: signal.exit_code(),
        message: interrupted(signal, activity.as_ref(), aborts),
    })
}

/// Waits for another signal and ends the process, removing a partial
/// download first.
async fn exit_on_second_signal(mut signals: Signals, activity: Option<Activity>) {
    let signal = signals.recv().await;
    if let Some(Activity::Read {
        partial: Some(partial),
        ..
    }) = &activity
    {
        let _ = std::fs::remove_file(partial);
    }
    let note = if dropped_aborts().running > 0 {
        "; a multipart upload may stay open (with its parts, which cost storage) until a \
         bucket lifecycle rule or the driver's cleanup_uploads aborts it"
    } else {
        ""
    };
    eprintln!("stowage: {signal} again: exiting at once{note}");
    std::process::exit(signal.exit_code().into());
}

/// The message of an interrupted command.
fn interrupted(signal: Interrupt, activity: Option<&Activity>, aborts: AbortTally) -> String {
    let head = format!("interrupted by {signal}");
    let left_open = "its parts stay in the bucket (and cost storage) until a lifecycle rule \
                     for incomplete multipart uploads or the driver's cleanup_uploads removes them";
    let abort_trouble = if aborts.running > 0 {
        Some(format!(
            "aborting its multipart upload did not finish within {} s: {left_open}",
            ABORT_WAIT.as_secs()
        ))
    } else if aborts.failed > 0 {
        Some(format!(
            "aborting its multipart upload failed (see the warning above): {left_open}"
        ))
    } else {
        None
    };
    match activity {
        Some(Activity::Write { what }) => match abort_trouble {
            Some(trouble) => format!("{head}: {what} was stopped, but {trouble}"),
            None if aborts.succeeded > 0 => {
                format!("{head}: {what} was aborted, nothing was stored")
            }
            None => format!("{head}: {what} was cancelled, nothing was stored"),
        },
        Some(Activity::Read { what, partial }) => {
            // The download's guard removed its partial file when it was
            // dropped; this catches one it could not.
            let left = match partial {
                Some(partial) if partial.exists() => match std::fs::remove_file(partial) {
                    Ok(()) => "no partial file is left".to_string(),
                    Err(e) => format!("the partial file {} is left: {e}", partial.display()),
                },
                Some(_) => "no partial file is left".to_string(),
                None => "what was written is incomplete".to_string(),
            };
            match abort_trouble {
                Some(trouble) => format!(
                    "{head}: {what} was stopped; {left}; an upload was stopped too, but {trouble}"
                ),
                None => format!("{head}: {what} was stopped; {left}"),
            }
        }
        None => match abort_trouble {
            Some(trouble) => format!("{head}: an upload was stopped, but {trouble}"),
            None if aborts.succeeded > 0 => {
                format!("{head}: the multipart upload in flight was aborted")
            }
            None => head,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::field_reassign_with_default)] // a non-exhaustive struct
    fn tally(succeeded: u64, failed: u64, running: usize) -> AbortTally {
        let mut t = AbortTally::default();
        t.succeeded = succeeded;
        t.failed = failed;
        t.running = running;
        t
    }

    #[test]
    fn an_interrupt_names_what_was_stopped_and_what_was_left() {
        let upload = Activity::Write {
            what: "the upload of in.bin to s3:big".into(),
        };
        let aborted = interrupted(Interrupt::Int, Some(&upload), tally(1, 0, 0));
        assert_eq!(
            aborted,
            "interrupted by SIGINT: the upload of in.bin to s3:big was aborted, nothing was stored"
        );
        let cancelled = interrupted(Interrupt::Term, Some(&upload), tally(0, 0, 0));
        assert!(
            cancelled.starts_with("interrupted by SIGTERM: "),
            "{cancelled}"
        );
        assert!(cancelled.ends_with("was cancelled, nothing was stored"));
        let slow = interrupted(Interrupt::Int, Some(&upload), tally(0, 0, 1));
        assert!(slow.contains("did not finish within 5 s"), "{slow}");
        assert!(slow.contains("lifecycle rule"), "{slow}");
        let failed = interrupted(Interrupt::Int, Some(&upload), tally(0, 1, 0));
        assert!(
            failed.contains("aborting its multipart upload failed"),
            "{failed}"
        );

        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join(".out.stowage-partial");
        std::fs::write(&partial, b"half").unwrap();
        let download = Activity::Read {
            what: "the download of s3:big to out".into(),
            partial: Some(partial.clone()),
        };
        let stopped = interrupted(Interrupt::Int, Some(&download), tally(0, 0, 0));
        assert!(stopped.ends_with("no partial file is left"), "{stopped}");
        assert!(!partial.exists());
        let stopped = interrupted(Interrupt::Int, Some(&download), tally(0, 0, 0));
        assert!(stopped.ends_with("no partial file is left"), "{stopped}");

        assert_eq!(
            interrupted(Interrupt::Term, None, tally(0, 0, 0)),
            "interrupted by SIGTERM"
        );
        assert_eq!(Interrupt::Int.exit_code(), 130);
        assert_eq!(Interrupt::Term.exit_code(), 143);
    }
}
