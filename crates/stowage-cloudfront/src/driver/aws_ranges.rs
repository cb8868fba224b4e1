//! "Is this client inside AWS?": AWS's published `ip-ranges.json`, read from
//! a file the operator supplies and read again when the file changes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the file's modification time is looked at.
const RECHECK: Duration = Duration::from_secs(1);

/// Networks by prefix length, masked: a lookup is one hash probe per length.
#[derive(Debug, Default)]
struct Networks {
    v4: HashMap<u8, HashSet<u128>>,
    v6: HashMap<u8, HashSet<u128>>,
    count: usize,
}

fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

fn bits_of(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (u128::from(u32::from(v4)), 32),
            None => (u128::from(v6), 128),
        },
    }
}

impl Networks {
    fn insert(&mut self, cidr: &str) -> bool {
        let Ok(net) = crate::signer::IpCidr::parse(cidr) else {
            return false;
        };
        let (bits, width) = match net.addr {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let table = if width == 32 {
            &mut self.v4
        } else {
            &mut self.v6
        };
        table
            .entry(net.prefix)
            .or_default()
            .insert(masked(bits, width, net.prefix));
        self.count += 1;
        true
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (bits, width) = bits_of(ip);
        let table = if width == 32 { &self.v4 } else { &self.v6 };
        table
            .iter()
            .any(|(prefix, set)| set.contains(&masked(bits, width, *prefix)))
    }
}

#[derive(Debug)]
struct Loaded {
    modified: Option<SystemTime>,
    checked: Instant,
    networks: Networks,
    error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    regions: Vec<String>,
    state: Mutex<Loaded>,
    reloading: AtomicBool,
}

/// AWS address ranges from `ip-ranges.json`, optionally limited to regions.
/// Lookups never touch the file: a changed file is read again on the
/// blocking pool (or a thread) while lookups go on with the ranges loaded.
#[derive(Debug)]
pub struct AwsIpRanges {
    shared: Arc<Shared>,
}

impl AwsIpRanges {
    /// Loads `path` (an error is kept and reported, not fatal: until the
    /// file is readable, no client counts as inside AWS).
    pub fn load(path: &Path, regions: Vec<String>) -> Self {
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            regions,
            state: Mutex::new(Loaded {
                modified: None,
                checked: Instant::now(),
                networks: Networks::default(),
                error: None,
            }),
            reloading: AtomicBool::new(false),
        });
        shared.reload_if_changed(true);
        Self { shared }
    }

    /// Whether `ip` is inside AWS (inside one of the listed regions, when
    /// regions are listed). Starts a reload in the background when the file
    /// may have changed.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (inside, due) = {
            let mut state = self.shared.lock();
            let due = state.checked.elapsed() >= RECHECK;
            if due {
                state.checked = Instant::now();
            }
            (state.networks.contains(ip), due)
        };
        if due && !self.shared.reloading.swap(true, Ordering::AcqRel) {
            let shared = self.shared.clone();
            let task = move || {
                shared.reload_if_changed(false);
                shared.reloading.store(false, Ordering::Release);
            };
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => drop(handle.spawn_blocking(task)),
                Err(_) => drop(std::thread::spawn(task)),
            }
        }
        inside
    }

    /// How many networks are loaded, and the last load error.
    pub fn status(&self) -> (usize, Option<String>) {
        let state = self.shared.lock();
        (state.networks.count, state.error.clone())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the file again when its modification time changed (or when
    /// `force`), parsing outside the lock.
    fn reload_if_changed(&self, force: bool) {
        let now = modified(&self.path);
        if !force && now == self.lock().modified {
            return;
        }
        let parsed = self.parse();
        let mut state = self.lock();
        state.modified = now;
        match parsed {
            Ok(networks) => {
                tracing::info!(
                    file = %self.path.display(),
                    networks = networks.count,
                    "loaded AWS ip ranges"
                );
                state.networks = networks;
                state.error = None;
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "AWS ip ranges not loaded; keeping the previous ones");
                state.error = Some(e);
            }
        }
    }

    fn parse(&self) -> Result<Networks, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", self.path.display()))?;
        let mut networks = Networks::default();
        for (list, field) in [("prefixes", "ip_prefix"), ("ipv6_prefixes", "ipv6_prefix")] {
            for entry in doc[list].as_array().into_iter().flatten() {
                let region = entry["region"].as_str().unwrap_or("");
                if !self.regions.is_empty() && !self.regions.iter().any(|r| r == region) {
                    continue;
                }
                if let Some(cidr) = entry[field].as_str() {
                    networks.insert(cidr);
                }
            }
        }
        if networks.count == 0 && doc["prefixes"].as_array().is_none() {
            return Err(format!(
                "{} has no \"prefixes\" list: not AWS's ip-ranges.json",
                self.path.display()
            ));
        }
        Ok(networks)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, prefixes: &[(&str, &str)]) {
        let list: Vec<serde_json::Value> = prefixes
            .iter()
            .map(|(p, r)| {
                if p.contains(':') {
                    serde_json::json!({"ipv6_prefix": p, "region": r, "service": "AMAZON"})
                } else {
                    serde_json::json!({"ip_prefix": p, "region": r, "service": "AMAZON"})
                }
            })
            .collect();
        let (v6, v4): (Vec<_>, Vec<_>) = list
            .into_iter()
            .partition(|e| e.get("ipv6_prefix").is_some());
        let doc = serde_json::json!({"syncToken": "1", "prefixes": v4, "ipv6_prefixes": v6});
        std::fs::write(path, doc.to_string()).unwrap();
    }

    /// Polls `check` for up to 3 s (reloads happen in the background).
    fn eventually(mut check: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if check() {
                return true;
            }
            std::thread::sleep(RECHECK / 4);
        }
        false
    }

    #[test]
    fn matches_prefixes_and_regions_and_reloads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ip-ranges.json");
        write(
            &path,
            &[
                ("3.5.140.0/22", "ap-northeast-2"),
                ("52.94.0.0/16", "us-east-1"),
                ("2600:1f18::/36", "us-east-1"),
            ],
        );
        let all = AwsIpRanges::load(&path, Vec::new());
        assert!(all.contains("3.5.143.9".parse().unwrap()));
        assert!(all.contains("52.94.1.1".parse().unwrap()));
        assert!(all.contains("2600:1f18::1".parse().unwrap()));
        assert!(all.contains("::ffff:52.94.1.1".parse().unwrap()));
        assert!(!all.contains("8.8.8.8".parse().unwrap()));
        let us = AwsIpRanges::load(&path, vec!["us-east-1".into()]);
        assert!(!us.contains("3.5.143.9".parse().unwrap()));
        assert!(us.contains("52.94.1.1".parse().unwrap()));

        // A changed file is picked up (after the recheck interval).
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        write(&path, &[("8.8.8.0/24", "us-east-1")]);
        let later = SystemTime::now() + Duration::from_secs(5);
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(later).unwrap();
        assert!(eventually(|| all.contains("8.8.8.8".parse().unwrap())));
        assert!(!all.contains("52.94.1.1".parse().unwrap()));

        // A broken file keeps the previous ranges and says why.
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        std::fs::write(&path, "{not json").unwrap();
        f.set_modified(later + Duration::from_secs(5)).unwrap();
        assert!(eventually(|| {
            all.contains("8.8.8.8".parse().unwrap());
            all.status().1.is_some_and(|e| e.contains("not JSON"))
        }));
        assert!(
            all.contains("8.8.8.8".parse().unwrap()),
            "previous ranges kept"
        );
    }

    #[test]
    fn missing_file_means_nobody_is_inside() {
        let r = AwsIpRanges::load(Path::new("/nonexistent/ip-ranges.json"), Vec::new());
        assert!(!r.contains("52.94.1.1".parse().unwrap()));
        assert!(r.status().1.unwrap().contains("cannot read"));
    }
}
