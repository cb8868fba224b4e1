//! `LocalStorage` configuration (Quay's keys).

use std::path::PathBuf;

use stowage_core::config::{FromParams, Params};

/// The directory objects live in: `storage_path`, as in Quay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalConfig {
    /// Root directory (created when missing).
    pub storage_path: PathBuf,
}

impl LocalConfig {
    /// A config for `storage_path`.
    pub fn new(storage_path: impl Into<PathBuf>) -> Self {
        Self {
            storage_path: storage_path.into(),
        }
    }
}

/// A `LocalStorage` location: `storage_path`.
impl FromParams for LocalConfig {
    fn read_params(params: &mut Params<'_>) -> Option<Self> {
        let storage_path = params.required_string("storage_path")?;
        if storage_path.is_empty() {
            params.problem("storage_path", "must not be empty");
            return None;
        }
        Some(Self::new(storage_path))
    }
}
