//! What the CloudFront layer did with each download URL, as counters, and
//! a warning logged once per fallback cause (no log flood).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use stowage_core::Metric;

/// Why a download URL is an S3 presigned URL although CloudFront is
/// configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// Signed by CloudFront, freshly.
    Signed = 0,
    /// Signed by CloudFront, from the cache.
    Cached = 1,
    /// Bypass: no client address was given.
    NoClientIp = 2,
    /// Bypass: the client is inside AWS.
    ClientInAws = 3,
    /// Fallback: the private key is missing, unreadable or invalid.
    KeyUnavailable = 4,
    /// Fallback: signing failed at request time.
    SigningFailed = 5,
}

impl Route {
    const ALL: [Route; 6] = [
        Route::Signed,
        Route::Cached,
        Route::NoClientIp,
        Route::ClientInAws,
        Route::KeyUnavailable,
        Route::SigningFailed,
    ];

    /// A stable label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Signed => "signed",
            Self::Cached => "cached",
            Self::NoClientIp => "no_client_ip",
            Self::ClientInAws => "client_in_aws",
            Self::KeyUnavailable => "key_unavailable",
            Self::SigningFailed => "signing_failed",
        }
    }

    fn is_fallback(&self) -> bool {
        matches!(self, Self::KeyUnavailable | Self::SigningFailed)
    }
}

/// One counter per route, one "already logged" flag per fallback cause.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    counts: [AtomicU64; 6],
    logged: [AtomicBool; 6],
}

impl Counters {
    /// Counts one URL; logs a warning the first time a fallback cause is seen.
    pub(crate) fn record(&self, route: Route, detail: &str) {
        let i = route as usize;
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        if route.is_fallback() && !self.logged[i].swap(true, Ordering::Relaxed) {
            tracing::warn!(
                cause = route.as_str(),
                "CloudFront download URLs fall back to S3 presigned URLs: {detail} \
                 (logged once per cause; see the stowage_cloudfront_urls_total metric)"
            );
        }
    }

    /// The count for `route`.
    pub(crate) fn get(&self, route: Route) -> u64 {
        self.counts[route as usize].load(Ordering::Relaxed)
    }

    /// Every counter as a metric sample.
    pub(crate) fn metrics(&self) -> Vec<Metric> {
        Route::ALL
            .iter()
            .map(|r| {
                Metric::counter(
                    "stowage_cloudfront_urls_total",
                    "Download URLs by route: signed, cached, bypass (no_client_ip, client_in_aws) or fallback to S3 (key_unavailable, signing_failed).",
                    self.get(*r),
                )
                .with_label("route", r.as_str())
            })
            .collect()
    }
}
