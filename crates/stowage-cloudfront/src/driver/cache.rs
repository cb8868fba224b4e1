//! A bounded cache of signed URLs, keyed by the URL, the client address a
//! custom policy names, the expiry window and the keys that signed, so a
//! hot blob pulled by many clients is signed once per window, and a URL
//! signed with a key replaced since is never handed out again.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// What makes two signed URLs the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    /// The URL before signing (domain, key, extra query).
    pub(crate) url: String,
    /// Epoch seconds the URL expires at (rounded up to the granularity).
    pub(crate) expires: i64,
    /// The client address when the policy carries it.
    pub(crate) client_ip: Option<IpAddr>,
    /// The generation of the signing keys (it grows with each reload that
    /// replaced them).
    pub(crate) generation: u64,
}

/// Least-recently-used signed URLs; `None` inside when turned off.
#[derive(Debug)]
pub(crate) struct SignedUrlCache {
    inner: Option<Mutex<LruCache<CacheKey, String>>>,
}

impl SignedUrlCache {
    /// A cache of at most `capacity` URLs (0: no cache).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    /// The signed URL for `key`, when cached.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<String> {
        let cache = self.inner.as_ref()?;
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Remembers a signed URL.
    pub(crate) fn insert(&self, key: CacheKey, signed: String) {
        if let Some(cache) = &self.inner {
            cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .put(key, signed);
        }
    }

    /// How many URLs are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).len())
            .unwrap_or(0)
    }
}

/// `at` rounded up to a multiple of `granularity` seconds.
pub(crate) fn round_up(at: i64, granularity: i64) -> i64 {
    let g = granularity.max(1);
    (at + g - 1).div_euclid(g) * g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str, expires: i64) -> CacheKey {
        CacheKey {
            url: url.into(),
            expires,
            client_ip: None,
            generation: 0,
        }
    }

    #[test]
    fn bounded_and_keyed_by_window() {
        let cache = SignedUrlCache::new(2);
        cache.insert(key("a", 60), "A60".into());
        cache.insert(key("a", 120), "A120".into());
        assert_eq!(cache.get(&key("a", 60)).as_deref(), Some("A60"));
        cache.insert(key("b", 60), "B".into());
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&key("a", 120)), None, "least recently used went");
        let off = SignedUrlCache::new(0);
        off.insert(key("a", 60), "A".into());
        assert_eq!(off.get(&key("a", 60)), None);
    }

    #[test]
    fn rounding_up_never_shortens() {
        assert_eq!(round_up(100, 60), 120);
        assert_eq!(round_up(120, 60), 120);
        assert_eq!(round_up(121, 1), 121);
    }
}
