//! The invariants: what a write, read, copy, delete or chunk may leave
//! behind, as pure functions of the model, the outcome and the truth; and
//! the helpers that read the truth without faults.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use stowage_core::upload::UploadState;
use stowage_core::{ByteRange, Error, ObjectMeta, Sha256Digest, Storage, StorageExt, StoragePath};
use stowage_s3::S3Storage;

/// One broken promise, with what is needed to replay it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The seed.
    pub seed: u64,
    /// The step (1-based; the final checks come after the last step).
    pub step: usize,
    /// The operation of the step.
    pub operation: String,
    /// What went wrong.
    pub message: String,
    /// The faults injected during the step.
    pub faults: Vec<String>,
    /// The command that replays the seed.
    pub replay: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "VIOLATION seed {} step {} ({}): {}",
            self.seed, self.step, self.operation, self.message
        )?;
        if self.faults.is_empty() {
            writeln!(f, "  faults in this step: none")?;
        }
        for fault in &self.faults {
            writeln!(f, "  fault: {fault}")?;
        }
        write!(f, "  replay: {}", self.replay)
    }
}

/// What a read returned: the range it says it covers, the object size it
/// reports, and the bytes.
pub(crate) type ReadOutcome = Result<(Range<u64>, u64, Bytes), Error>;

/// `absent`, or the size and the start of the SHA-256 of `content`.
pub(crate) fn show(content: Option<&Bytes>) -> String {
    match content {
        None => "absent".into(),
        Some(b) => format!(
            "{} bytes (sha256 {})",
            b.len(),
            &Sha256Digest::of(b).hex()[..12]
        ),
    }
}

/// Where `got` first differs from `expected`.
pub(crate) fn difference(expected: &[u8], got: &[u8]) -> String {
    match expected.iter().zip(got).position(|(a, b)| a != b) {
        Some(i) => format!("first difference at byte {i}"),
        None if expected.len() != got.len() => format!(
            "{} bytes expected, {} there, equal as far as both go",
            expected.len(),
            got.len()
        ),
        None => "identical".into(),
    }
}

/// The first line of an error, at most 300 characters.
pub(crate) fn one_line(e: &Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("");
    line.chars().take(300).collect()
}

/// What a write may leave at its key. `old` was there before, `new` is what
/// it tried to store, `now` is there after; `wrong_digest` says the write
/// expected a digest its bytes do not have.
pub(crate) fn after_write(
    result: &Result<ObjectMeta, Error>,
    wrong_digest: bool,
    old: Option<&Bytes>,
    new: &Bytes,
    now: Option<&Bytes>,
) -> Option<String> {
    let is_old = now == old;
    let is_new = now == Some(new);
    match result {
        Ok(_) if wrong_digest => Some(format!(
            "the write returned Ok although its expected digest was wrong; the object is now {}",
            show(now)
        )),
        Ok(_) if !is_new => Some(format!(
            "the write returned Ok but the object is {} instead of its {} ({})",
            show(now),
            show(Some(new)),
            now.map_or_else(|| "absent".to_string(), |b| difference(new, b))
        )),
        Ok(meta) if meta.size != new.len() as u64 => Some(format!(
            "the write stored its {} bytes but returned size {}",
            new.len(),
            meta.size
        )),
        Ok(_) => None,
        Err(Error::DigestMismatch { .. }) if !wrong_digest => Some(
            "the write failed with a digest mismatch although its expected digest was right"
                .into(),
        ),
        Err(_) if is_old => None,
        Err(e) if wrong_digest => Some(format!(
            "the write with a wrong expected digest failed ({}) but changed the object from {} to {}",
            one_line(e),
            show(old),
            show(now)
        )),
        // Only a write that says it cannot tell may have stored its bytes
        // and still fail; any other error means they were not stored.
        Err(e) if is_new && e.to_string().contains("outcome is unknown") => None,
        Err(e) if now.is_none() => Some(format!(
            "the write failed ({}) and removed the object that was there ({})",
            one_line(e),
            show(old)
        )),
        Err(e) => Some(format!(
            "the write failed ({}) and left bytes that are neither the previous object ({}) nor \
             the new one ({}): {}, {} from the new bytes",
            one_line(e),
            show(old),
            show(Some(new)),
            show(now),
            now.map_or_else(String::new, |b| difference(new, b))
        )),
    }
}

/// What a delete may leave: nothing after `Ok`; nothing or the object
/// that was there after an error.
pub(crate) fn after_delete(
    result: &Result<(), Error>,
    old: Option<&Bytes>,
    now: Option<&Bytes>,
) -> Option<String> {
    match (result, now) {
        (_, None) => None,
        (Ok(()), Some(_)) => Some(format!(
            "delete returned Ok but the object is still there ({})",
            show(now)
        )),
        (Err(_), Some(_)) if now == old => None,
        (Err(e), Some(_)) => Some(format!(
            "delete failed ({}) and the object changed from {} to {}",
            one_line(e),
            show(old),
            show(now)
        )),
    }
}

/// What a read of `range` (the whole object when `None`) of `path` may
/// return when `stored` is there.
pub(crate) fn after_read(
    path: &StoragePath,
    stored: Option<&Bytes>,
    range: Option<ByteRange>,
    got: &ReadOutcome,
) -> Option<String> {
    let asked = range.map_or_else(|| "the whole object".to_string(), |r| format!("range {r}"));
    let Some(data) = stored else {
        return match got {
            Ok((_, _, bytes)) => Some(format!(
                "reading {asked} of a missing object returned Ok with {} bytes",
                bytes.len()
            )),
            Err(Error::InvalidRange { .. }) => Some(format!(
                "reading {asked} of a missing object failed with InvalidRange, not NotFound"
            )),
            Err(_) => None,
        };
    };
    let size = data.len() as u64;
    let span = match range {
        None => Ok(0..size),
        Some(r) => r.resolve(path, size),
    };
    match (span, got) {
        (Err(_), Ok((at, _, bytes))) => Some(format!(
            "{asked} of a {size}-byte object is invalid, but the read returned Ok with {} bytes \
             as {at:?}",
            bytes.len()
        )),
        (Err(_), Err(Error::NotFound { .. })) => Some(format!(
            "reading {asked} of an existing {size}-byte object failed with NotFound"
        )),
        (Err(_), Err(_)) => None,
        (Ok(_), Err(e @ (Error::NotFound { .. } | Error::InvalidRange { .. }))) => Some(format!(
            "reading {asked} of an existing {size}-byte object failed with \"{}\"",
            one_line(e)
        )),
        (Ok(_), Err(_)) => None,
        (Ok(span), Ok((at, reported, bytes))) => {
            let start = usize::try_from(span.start).unwrap_or(usize::MAX);
            let end = usize::try_from(span.end).unwrap_or(usize::MAX);
            let want = &data[start..end];
            let read: &[u8] = bytes;
            if read != want {
                return Some(format!(
                    "reading {asked} of a {size}-byte object returned {} bytes that are not the \
                     stored bytes {span:?} ({} bytes): {}",
                    bytes.len(),
                    want.len(),
                    difference(want, bytes)
                ));
            }
            if *at != span {
                return Some(format!(
                    "reading {asked} returned the right bytes but says they are {at:?}, not \
                     {span:?}"
                ));
            }
            if *reported != size {
                return Some(format!(
                    "reading {asked} reports an object of {reported} bytes; it has {size}"
                ));
            }
            None
        }
    }
}

/// What `stat` may answer when `stored` is there.
pub(crate) fn after_stat(
    stored: Option<&Bytes>,
    got: &Result<ObjectMeta, Error>,
) -> Option<String> {
    match (stored, got) {
        (Some(data), Ok(meta)) if meta.size != data.len() as u64 => Some(format!(
            "stat says {} bytes; the object has {}",
            meta.size,
            data.len()
        )),
        (None, Ok(meta)) => Some(format!(
            "stat of a missing object returned Ok ({} bytes)",
            meta.size
        )),
        (Some(data), Err(Error::NotFound { .. })) => Some(format!(
            "stat of an existing {}-byte object failed with NotFound",
            data.len()
        )),
        _ => None,
    }
}

/// Whether `after`, the state a chunk write returned for an upload that
/// was at `before`, holds `expected` (every byte written so far).
pub(crate) fn after_chunk(
    before: &UploadState,
    after: &UploadState,
    expected: &[u8],
) -> Option<String> {
    if after.id != before.id {
        return Some(format!(
            "the upload id changed from {} to {}",
            before.id, after.id
        ));
    }
    if after.size != expected.len() as u64 {
        return Some(format!(
            "the new state has {} bytes; {} were written",
            after.size,
            expected.len()
        ));
    }
    let digest = Sha256Digest::of(expected);
    if after.digest() != digest {
        return Some(format!(
            "the new state's digest is {}, the bytes written have {digest}",
            after.digest()
        ));
    }
    if let Err(e) = after.check() {
        return Some(format!("the new state is inconsistent: {e}"));
    }
    None
}

/// Whether `path` is chunked-upload data (`_uploads/<32 hex>/...`), not
/// another name in the area (the cleanup lease).
pub(crate) fn is_upload_data(path: &str) -> bool {
    let mut segments = path.split('/');
    segments.next() == Some(stowage_core::upload::UPLOADS_AREA)
        && segments.next().is_some_and(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The object at `path` read without faults (`None` when missing), asked
/// up to three times.
///
/// # Errors
/// The last error when all three reads failed.
pub(crate) async fn read_truth(
    direct: &S3Storage,
    path: &StoragePath,
) -> Result<Option<Bytes>, Error> {
    let mut tries = 0;
    loop {
        match direct.get_bytes(path).await {
            Ok(bytes) => return Ok(Some(bytes)),
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => {
                tries += 1;
                if tries >= 3 {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Every object below `prefix` (the whole root when `None`), listed
/// without faults.
///
/// # Errors
/// A listing failure.
pub(crate) async fn listed(
    direct: &S3Storage,
    prefix: Option<&StoragePath>,
) -> Result<Vec<ObjectMeta>, Error> {
    direct.list(prefix).try_collect().await
}

/// The multipart uploads open under `prefix` (key, upload id).
///
/// # Errors
/// The SDK's error, as text.
pub(crate) async fn open_uploads(
    sdk: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, String)>, String> {
    let out = sdk
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
    Ok(out
        .uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or_default().to_string(),
                u.upload_id().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn ok(size: u64) -> Result<ObjectMeta, Error> {
        Ok(ObjectMeta::new(StoragePath::parse("k").unwrap(), size))
    }

    fn failed() -> Result<ObjectMeta, Error> {
        Err(Error::InvalidArgument {
            message: "simulated".into(),
        })
    }

    #[test]
    fn failed_writes_leave_the_old_object_never_a_mix_or_a_hole() {
        let (old, new) = (b("old!"), b("new bytes"));
        assert!(after_write(&ok(9), false, Some(&old), &new, Some(&new)).is_none());
        assert!(after_write(&ok(9), false, Some(&old), &new, Some(&old)).is_some());
        assert!(after_write(&failed(), false, Some(&old), &new, Some(&old)).is_none());
        // New bytes after an error only when the error says it cannot tell.
        assert!(after_write(&failed(), false, Some(&old), &new, Some(&new)).is_some());
        let unknown: Result<ObjectMeta, Error> = Err(Error::InvalidArgument {
            message: "the outcome is unknown (simulated)".into(),
        });
        assert!(after_write(&unknown, false, Some(&old), &new, Some(&new)).is_none());
        assert!(after_write(&failed(), false, None, &new, None).is_none());
        assert!(after_write(&failed(), false, Some(&old), &new, None).is_some());
        let mix = b("new!");
        assert!(after_write(&failed(), false, Some(&old), &new, Some(&mix)).is_some());
        // A wrong digest: only the old object may be there.
        assert!(after_write(&failed(), true, Some(&old), &new, Some(&new)).is_some());
        assert!(after_write(&ok(9), true, Some(&old), &new, Some(&new)).is_some());
    }

    #[test]
    fn reads_must_return_the_stored_range() {
        let p = StoragePath::parse("k").unwrap();
        let data = b("0123456789");
        let good: ReadOutcome = Ok((2..5, 10, b("234")));
        let range = Some(ByteRange::Bounded { start: 2, end: 5 });
        assert!(after_read(&p, Some(&data), range, &good).is_none());
        let wrong: ReadOutcome = Ok((2..5, 10, b("012")));
        assert!(after_read(&p, Some(&data), range, &wrong).is_some());
        let whole: ReadOutcome = Ok((0..10, 10, data.clone()));
        assert!(after_read(&p, Some(&data), None, &whole).is_none());
        assert!(after_read(&p, None, None, &whole).is_some());
        let past = Some(ByteRange::From(10));
        let invalid: ReadOutcome = Err(Error::InvalidRange {
            path: "k".into(),
            range: "10..".into(),
            size: 10,
        });
        assert!(after_read(&p, Some(&data), past, &invalid).is_none());
        assert!(after_read(&p, Some(&data), range, &invalid).is_some());
    }

    #[test]
    fn upload_data_is_told_from_the_lease() {
        assert!(is_upload_data(
            "_uploads/0123456789abcdef0123456789abcdef/000000-0123456789abcdef"
        ));
        assert!(!is_upload_data("_uploads/.cleanup-lease"));
        assert!(!is_upload_data("blobs/a"));
    }
}
