//! `LocalStorage` configuration (Quay's keys).

use std::path::PathBuf;

use stowage_core::config::{ConfigErrors, Params};

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

    /// Reads the parameters of a `LocalStorage` location.
    ///
    /// # Errors
    /// Every problem found, each with its key path.
    pub fn from_params(mut params: Params<'_>) -> Result<Self, ConfigErrors> {
        let storage_path = params.required_string("storage_path");
        if storage_path.as_deref() == Some("") {
            params.problem("storage_path", "must not be empty");
        }
        params.finish()?;
        Ok(Self::new(storage_path.unwrap_or_default()))
    }
}
