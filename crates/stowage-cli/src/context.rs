//! The loaded configuration and opened storages of one invocation.

use std::sync::Arc;

use stowage::{Location, Storage, StowageConfig};

use crate::cli::Global;
use crate::failure::Failure;

/// Configuration plus the selected location.
pub(crate) struct Context {
    pub(crate) config: StowageConfig,
    pub(crate) location: Option<String>,
}

impl Context {
    pub(crate) fn load(global: &Global) -> Result<Self, Failure> {
        let config = match &global.config {
            Some(path) => StowageConfig::from_file(path)?,
            None => StowageConfig::embedded_default(),
        };
        Ok(Self {
            config,
            location: global.location.clone(),
        })
    }

    /// The selected location.
    pub(crate) fn selected(&self) -> Result<&Location, Failure> {
        Ok(self.config.location(self.location.as_deref())?)
    }

    /// Opens the selected location.
    pub(crate) async fn storage(&self) -> Result<Arc<dyn Storage>, Failure> {
        Ok(stowage::open(self.selected()?).await?)
    }

    /// Opens a named location.
    pub(crate) async fn storage_named(&self, name: &str) -> Result<Arc<dyn Storage>, Failure> {
        Ok(stowage::open(self.config.location(Some(name))?).await?)
    }
}
