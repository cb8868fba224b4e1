//! Objects: metadata, ranges, and the options and results of reads and writes.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::{Error, Sha256Digest, StoragePath};

/// A stream of bytes, as read from or written to storage.
pub type ByteStream = BoxStream<'static, Result<Bytes, Error>>;

/// What `stat` knows about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectMeta {
    /// Where it is.
    pub path: StoragePath,
    /// Its size in bytes.
    pub size: u64,
    /// The backend's entity tag, when it has one.
    pub etag: Option<String>,
    /// When it was last written, when the backend says.
    pub last_modified: Option<DateTime<Utc>>,
    /// Its content type, when one was stored.
    pub content_type: Option<String>,
}

impl ObjectMeta {
    /// Metadata with only a path and a size.
    pub fn new(path: StoragePath, size: u64) -> Self {
        Self {
            path,
            size,
            etag: None,
            last_modified: None,
            content_type: None,
        }
    }

    /// Sets the etag.
    pub fn with_etag(mut self, etag: Option<String>) -> Self {
        self.etag = etag;
        self
    }

    /// Sets the modification time.
    pub fn with_last_modified(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.last_modified = at;
        self
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: Option<String>) -> Self {
        self.content_type = content_type;
        self
    }
}

/// A byte range of an object.
///
/// A range that starts at or past the end of a non-empty object is an
/// [`Error::InvalidRange`]; one that ends past the end is cut at the end, as
/// HTTP does. `From(0)` of an empty object is the empty range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `start..end` (end exclusive).
    Bounded {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// From an offset to the end.
    From(u64),
    /// The last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The range at `offset` of `length` bytes, or to the end.
    pub fn at(offset: u64, length: Option<u64>) -> Self {
        match length {
            Some(len) => Self::Bounded {
                start: offset,
                end: offset.saturating_add(len),
            },
            None => Self::From(offset),
        }
    }

    /// The concrete byte positions for an object of `size` bytes.
    ///
    /// # Errors
    /// [`Error::InvalidRange`] when the range is empty or starts past the end.
    pub fn resolve(&self, path: &StoragePath, size: u64) -> Result<Range<u64>, Error> {
        let invalid = || Error::InvalidRange {
            path: path.to_string(),
            range: self.to_string(),
            size,
        };
        match *self {
            Self::From(0) if size == 0 => Ok(0..0),
            Self::From(start) if start < size => Ok(start..size),
            Self::Bounded { start, end } if start < end && start < size => Ok(start..end.min(size)),
            Self::Suffix(n) if n > 0 && size > 0 => Ok(size.saturating_sub(n)..size),
            _ => Err(invalid()),
        }
    }

    /// Parses a single-range HTTP `Range` header (`bytes=a-b`, `bytes=a-`,
    /// `bytes=-n`), the inverse of [`ByteRange::to_http_header`]. Several
    /// ranges give `Ok(None)`: serving the whole object is what HTTP allows;
    /// so does a unit other than `bytes`, which HTTP says to ignore.
    ///
    /// Never overflows: a last byte position at or past the largest `u64`
    /// (`bytes=0-18446744073709551615`, or more digits than fit) means "to
    /// the end", as a last position past the end of the object does in
    /// HTTP; a suffix length that does not fit means the whole object.
    ///
    /// # Errors
    /// A message naming the header when it is not a byte range (signs,
    /// spaces inside numbers, a last position before the first, a first
    /// position too large to be a byte offset).
    pub fn from_http_header(text: &str) -> Result<Option<Self>, String> {
        let bad = || format!("bad Range header {text:?}: expected bytes=<first>-<last>");
        let (unit, spec) = text.trim().split_once('=').ok_or_else(bad)?;
        // A unit other than bytes (compared without case) is one HTTP says
        // to ignore: the whole object.
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return Ok(None);
        }
        if spec.contains(',') {
            return Ok(None);
        }
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        let (a, b) = (a.trim(), b.trim());
        let first = http_number(a).ok_or_else(bad)?;
        let last = http_number(b).ok_or_else(bad)?;
        Ok(Some(match (first, last) {
            (HttpNumber::Absent, HttpNumber::Value(n)) => Self::Suffix(n),
            (HttpNumber::Absent, HttpNumber::TooLarge) => Self::Suffix(u64::MAX),
            (HttpNumber::Value(start), HttpNumber::Absent | HttpNumber::TooLarge) => {
                Self::From(start)
            }
            (HttpNumber::Value(start), HttpNumber::Value(last)) => {
                if last < start {
                    return Err(format!(
                        "bad Range header {text:?}: the last byte ({last}) is before the first ({start})"
                    ));
                }
                match last.checked_add(1) {
                    Some(end) => Self::Bounded { start, end },
                    // The last byte is the largest offset there is: to the end.
                    None => Self::From(start),
                }
            }
            (HttpNumber::TooLarge, _) => {
                return Err(format!(
                    "bad Range header {text:?}: the first byte position is too large"
                ))
            }
            (HttpNumber::Absent, HttpNumber::Absent) => return Err(bad()),
        }))
    }

    /// The value of an HTTP `Range` header for this range.
    pub fn to_http_header(&self) -> String {
        match *self {
            Self::Bounded { start, end } => format!("bytes={start}-{}", end.saturating_sub(1)),
            Self::From(start) => format!("bytes={start}-"),
            Self::Suffix(n) => format!("bytes=-{n}"),
        }
    }
}

/// A byte position or length in a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpNumber {
    /// Nothing written (`bytes=5-`, `bytes=-5`).
    Absent,
    /// A number that fits a `u64`.
    Value(u64),
    /// Digits only, but more than a `u64` holds.
    TooLarge,
}

/// Digits only (no sign, no spaces), as HTTP writes byte positions;
/// `None` for anything else.
fn http_number(s: &str) -> Option<HttpNumber> {
    if s.is_empty() {
        return Some(HttpNumber::Absent);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match s.parse::<u64>() {
        Ok(n) => HttpNumber::Value(n),
        Err(_) => HttpNumber::TooLarge,
    })
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Bounded { start, end } => write!(f, "{start}..{end}"),
            Self::From(start) => write!(f, "{start}.."),
            Self::Suffix(n) => write!(f, "last {n} bytes"),
        }
    }
}

/// Options of [`Storage::get`](crate::Storage::get).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct GetOptions {
    /// Only these bytes; the whole object when `None`.
    pub range: Option<ByteRange>,
}

impl GetOptions {
    /// Reads only `range`.
    pub fn with_range(mut self, range: ByteRange) -> Self {
        self.range = Some(range);
        self
    }
}

/// An object being read: its metadata, the bytes covered, and the stream.
#[non_exhaustive]
pub struct GetResult {
    /// The whole object's metadata.
    pub meta: ObjectMeta,
    /// The byte positions the stream covers.
    pub range: Range<u64>,
    /// The bytes.
    pub stream: ByteStream,
}

impl GetResult {
    /// A result from its parts.
    pub fn new(meta: ObjectMeta, range: Range<u64>, stream: ByteStream) -> Self {
        Self {
            meta,
            range,
            stream,
        }
    }

    /// Collects the stream into memory.
    ///
    /// # Errors
    /// Whatever the stream yields.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        use futures::TryStreamExt;
        let len = self.range.end.saturating_sub(self.range.start);
        // A capacity hint only: never more than a modest buffer up front.
        let capacity = usize::try_from(len).unwrap_or(0).min(64 << 20);
        let mut out = bytes::BytesMut::with_capacity(capacity);
        let mut stream = self.stream;
        while let Some(chunk) = stream.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// Options of [`Storage::put_stream`](crate::Storage::put_stream).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PutOptions {
    /// Content type stored with the object.
    pub content_type: Option<String>,
    /// When set, the write fails with [`Error::DigestMismatch`] unless the
    /// bytes have this digest, and nothing becomes visible.
    pub expected_digest: Option<Sha256Digest>,
    /// The total size, when the caller knows it (lets drivers choose part
    /// sizes up front).
    pub size_hint: Option<u64>,
}

impl PutOptions {
    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Requires the content to have `digest`.
    pub fn with_expected_digest(mut self, digest: Sha256Digest) -> Self {
        self.expected_digest = Some(digest);
        self
    }

    /// Tells the driver the total size.
    pub fn with_size_hint(mut self, size: u64) -> Self {
        self.size_hint = Some(size);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_range_headers_parse_and_round_trip() {
        assert_eq!(
            ByteRange::from_http_header("bytes=0-9").unwrap(),
            Some(ByteRange::Bounded { start: 0, end: 10 })
        );
        assert_eq!(
            ByteRange::from_http_header("bytes=5-").unwrap(),
            Some(ByteRange::From(5))
        );
        assert_eq!(
            ByteRange::from_http_header("bytes=-3").unwrap(),
            Some(ByteRange::Suffix(3))
        );
        assert_eq!(ByteRange::from_http_header("bytes=0-1,4-5").unwrap(), None);
        assert!(ByteRange::from_http_header("bytes=9-2").is_err());
        assert_eq!(ByteRange::from_http_header("items=0-1").unwrap(), None);
        assert_eq!(
            ByteRange::from_http_header("Bytes=0-1").unwrap(),
            Some(ByteRange::Bounded { start: 0, end: 2 })
        );
        assert!(ByteRange::from_http_header("0-1").is_err());
        assert!(ByteRange::from_http_header("bytes=-").is_err());
        assert!(ByteRange::from_http_header("bytes=+1-2").is_err());
        assert!(ByteRange::from_http_header("bytes=1-+2").is_err());
        assert!(ByteRange::from_http_header("bytes=1 0-20").is_err());
        assert!(ByteRange::from_http_header("bytes=a-b").is_err());
        assert!(ByteRange::from_http_header("bytes=1-2-3").is_err());
        assert!(ByteRange::from_http_header("bytes=").is_err());
        assert!(ByteRange::from_http_header("").is_err());
        for r in [
            ByteRange::Bounded { start: 3, end: 8 },
            ByteRange::From(7),
            ByteRange::Suffix(2),
        ] {
            assert_eq!(
                ByteRange::from_http_header(&r.to_http_header()).unwrap(),
                Some(r)
            );
        }
    }

    #[test]
    fn huge_range_positions_never_overflow() {
        let p = |t: &str| ByteRange::from_http_header(t);
        // The last byte at u64::MAX: from the first byte to the end.
        assert_eq!(
            p("bytes=0-18446744073709551615").unwrap(),
            Some(ByteRange::From(0))
        );
        assert_eq!(
            p("bytes=7-18446744073709551615").unwrap(),
            Some(ByteRange::From(7))
        );
        assert_eq!(
            p("bytes=0-18446744073709551614").unwrap(),
            Some(ByteRange::Bounded {
                start: 0,
                end: u64::MAX
            })
        );
        // More digits than a u64 holds.
        assert_eq!(
            p("bytes=3-99999999999999999999999999").unwrap(),
            Some(ByteRange::From(3))
        );
        assert_eq!(
            p("bytes=-99999999999999999999999999").unwrap(),
            Some(ByteRange::Suffix(u64::MAX))
        );
        let err = p("bytes=99999999999999999999999999-").unwrap_err();
        assert!(err.contains("Range"), "{err}");
        let err = p("bytes=18446744073709551615-0").unwrap_err();
        assert!(err.contains("Range"), "{err}");
        // They resolve against a real object without overflow either.
        let path = StoragePath::parse("x").unwrap();
        for text in [
            "bytes=0-18446744073709551615",
            "bytes=0-18446744073709551614",
            "bytes=-18446744073709551615",
            "bytes=-99999999999999999999999999",
        ] {
            let range = p(text).unwrap().unwrap();
            assert_eq!(range.resolve(&path, 10).unwrap(), 0..10, "{text}");
        }
        let range = p("bytes=18446744073709551615-").unwrap().unwrap();
        assert!(range.resolve(&path, 10).is_err());
        // And round-trip through the header form.
        for r in [
            ByteRange::Bounded {
                start: 0,
                end: u64::MAX,
            },
            ByteRange::From(u64::MAX),
            ByteRange::Suffix(u64::MAX),
        ] {
            assert_eq!(p(&r.to_http_header()).unwrap(), Some(r));
        }
    }

    #[test]
    fn ranges_resolve_at_the_edges() {
        let p = StoragePath::parse("x").unwrap();
        let r = |range: ByteRange, size| range.resolve(&p, size).ok();
        assert_eq!(r(ByteRange::From(0), 0), Some(0..0));
        assert_eq!(r(ByteRange::From(0), 10), Some(0..10));
        assert_eq!(r(ByteRange::From(9), 10), Some(9..10));
        assert_eq!(r(ByteRange::From(10), 10), None);
        assert_eq!(r(ByteRange::at(2, Some(3)), 10), Some(2..5));
        assert_eq!(r(ByteRange::at(8, Some(5)), 10), Some(8..10));
        assert_eq!(r(ByteRange::at(2, Some(0)), 10), None);
        assert_eq!(r(ByteRange::at(11, Some(1)), 10), None);
        assert_eq!(r(ByteRange::Suffix(3), 10), Some(7..10));
        assert_eq!(r(ByteRange::Suffix(30), 10), Some(0..10));
        assert_eq!(r(ByteRange::Suffix(0), 10), None);
        assert_eq!(r(ByteRange::Suffix(1), 0), None);
    }

    #[test]
    fn http_headers() {
        assert_eq!(ByteRange::at(2, Some(3)).to_http_header(), "bytes=2-4");
        assert_eq!(ByteRange::From(7).to_http_header(), "bytes=7-");
        assert_eq!(ByteRange::Suffix(4).to_http_header(), "bytes=-4");
    }
}
