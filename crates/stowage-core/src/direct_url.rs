//! URLs that let a client talk to the backend directly (presigned S3,
//! CloudFront signed), and the request context that shapes them.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The HTTP method a direct URL is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UrlMethod {
    /// Download.
    Get,
    /// Metadata only.
    Head,
    /// Upload.
    Put,
}

/// What a download URL is for: the client and the repository asking.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DownloadUrlOptions {
    /// `Get` or `Head`.
    pub method: UrlMethod,
    /// The pulling client's address, when known (CloudFront policies and
    /// in-AWS bypass use it).
    pub client_ip: Option<IpAddr>,
    /// The repository namespace, for per-namespace domains.
    pub namespace: Option<String>,
    /// How long the URL stays valid.
    pub expires_in: Duration,
    /// Extra query parameters to sign into the URL
    /// (e.g. `response-content-disposition`).
    pub extra_query: Vec<(String, String)>,
}

impl Default for DownloadUrlOptions {
    fn default() -> Self {
        Self {
            method: UrlMethod::Get,
            client_ip: None,
            namespace: None,
            expires_in: Duration::from_secs(600),
            extra_query: Vec::new(),
        }
    }
}

impl DownloadUrlOptions {
    /// A `HEAD` URL instead of `GET`.
    pub fn head(mut self) -> Self {
        self.method = UrlMethod::Head;
        self
    }
    /// Sets the client address.
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }
    /// Sets the namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
    /// Sets the lifetime.
    pub fn with_expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = expires_in;
        self
    }
    /// Adds a query parameter.
    pub fn with_query(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_query.push((key.into(), value.into()));
        self
    }
}

/// What an upload URL is for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UploadUrlOptions {
    /// The content type the uploader must send.
    pub content_type: Option<String>,
    /// How long the URL stays valid.
    pub expires_in: Duration,
}

impl Default for UploadUrlOptions {
    fn default() -> Self {
        Self {
            content_type: None,
            expires_in: Duration::from_secs(600),
        }
    }
}

impl UploadUrlOptions {
    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }
    /// Sets the lifetime.
    pub fn with_expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = expires_in;
        self
    }
}

/// What produced a direct URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UrlSource {
    /// An S3 (SigV4) presigned URL.
    S3Presigned,
    /// A URL signed for a CDN in front of the storage (the CloudFront layer's
    /// signed URLs).
    CdnSigned,
}

impl UrlSource {
    /// A short stable name, for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::S3Presigned => "s3_presigned",
            Self::CdnSigned => "cdn_signed",
        }
    }
}

/// Why a driver gave a URL other than its preferred kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fallback {
    /// A short stable cause, usable as a metric label (`key_missing`, ...).
    pub cause: &'static str,
    /// A sentence for humans.
    pub detail: String,
}

impl Fallback {
    /// A fallback with its `cause` label and `detail` sentence.
    pub fn new(cause: &'static str, detail: impl Into<String>) -> Self {
        Self {
            cause,
            detail: detail.into(),
        }
    }
}

/// A URL the client uses directly, with what it needs to know about it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DirectUrl {
    /// The URL.
    pub url: String,
    /// The method it is valid for.
    pub method: UrlMethod,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// What produced it.
    pub source: UrlSource,
    /// Set when the preferred kind could not be produced.
    pub fallback: Option<Fallback>,
    /// Headers the client must send with it (e.g. `content-type` on PUT).
    pub headers: Vec<(String, String)>,
}

impl DirectUrl {
    /// A URL from its parts, with no fallback and no headers.
    pub fn new(
        url: impl Into<String>,
        method: UrlMethod,
        expires_at: DateTime<Utc>,
        source: UrlSource,
    ) -> Self {
        Self {
            url: url.into(),
            method,
            expires_at,
            source,
            fallback: None,
            headers: Vec::new(),
        }
    }

    /// Records a fallback.
    pub fn with_fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Adds a header the client must send.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a driver can do, as data, so callers and the conformance suite can
/// pick what applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `download_url` returns URLs.
    pub direct_download: bool,
    /// `upload_url` returns URLs.
    pub direct_upload: bool,
    /// `copy` happens inside the backend, without moving bytes through us.
    pub server_side_copy: bool,
    /// Completing a chunked upload assembles it inside the backend.
    pub server_side_assembly: bool,
}

impl Capabilities {
    /// Sets `direct_download` and `direct_upload`.
    pub fn with_direct_urls(mut self, yes: bool) -> Self {
        self.direct_download = yes;
        self.direct_upload = yes;
        self
    }
    /// Sets `server_side_copy`.
    pub fn with_server_side_copy(mut self, yes: bool) -> Self {
        self.server_side_copy = yes;
        self
    }
    /// Sets `server_side_assembly`.
    pub fn with_server_side_assembly(mut self, yes: bool) -> Self {
        self.server_side_assembly = yes;
        self
    }
}
