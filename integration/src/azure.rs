//! The Azure Blob endpoint of the tests, from `STOWAGE_AZURE_TEST_*`
//! (`integration/servers/azurite-up.sh` writes them for Azurite; point them
//! at a real storage account to run the same tests there).

use std::sync::Arc;

use stowage_azure::{AzureConfig, AzureStorage};
use stowage_core::config::Secret;
use stowage_core::Storage;

/// An Azure storage account and container to test against. `Debug` hides
/// the key.
#[derive(Clone)]
pub struct AzureEnv {
    /// `STOWAGE_AZURE_TEST_ACCOUNT_URL`, e.g.
    /// `http://127.0.0.1:24100/devstoreaccount1`.
    pub account_url: String,
    /// `STOWAGE_AZURE_TEST_ACCOUNT`.
    pub account: String,
    /// `STOWAGE_AZURE_TEST_KEY` (base64).
    pub key: String,
    /// `STOWAGE_AZURE_TEST_CONTAINER`.
    pub container: String,
}

impl std::fmt::Debug for AzureEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureEnv")
            .field("account_url", &self.account_url)
            .field("account", &self.account)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

impl AzureEnv {
    /// Reads the environment; panics with what is missing, so a run
    /// without a server fails loudly instead of passing silently.
    pub fn get() -> Self {
        let need = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| {
                    panic!(
                        "{name} is not set: run integration/test-all.sh, or \
                         integration/servers/azurite-up.sh and source its env file"
                    )
                })
        };
        Self {
            account_url: need("STOWAGE_AZURE_TEST_ACCOUNT_URL")
                .trim_end_matches('/')
                .to_string(),
            account: need("STOWAGE_AZURE_TEST_ACCOUNT"),
            key: need("STOWAGE_AZURE_TEST_KEY"),
            container: need("STOWAGE_AZURE_TEST_CONTAINER"),
        }
    }

    /// A configuration with the account key under a fresh random root,
    /// with 1 MiB blocks so that tests cross block boundaries with small
    /// objects.
    pub fn config(&self, label: &str) -> AzureConfig {
        let root = format!("stowage-it/{label}-{}", uuid::Uuid::new_v4().simple());
        let mut c = AzureConfig::new(&self.account, &self.container)
            .with_account_key(Secret::new(&self.key))
            .with_endpoint(&self.account_url)
            .with_root(&root);
        c.block_size = 1024 * 1024;
        c
    }

    /// A container SAS token (`sp` = `permissions`) signed with the key,
    /// valid for a day.
    pub fn sas_token(&self, permissions: &str) -> String {
        stowage_azure::container_sas(
            &self.account,
            &Secret::new(&self.key),
            &self.container,
            permissions,
            chrono::Utc::now() + chrono::Duration::days(1),
        )
        .expect("the test key is base64")
    }

    /// [`AzureEnv::config`] authenticated by a container SAS token with
    /// `permissions` instead of the key.
    pub fn sas_config(&self, label: &str, permissions: &str) -> AzureConfig {
        let mut c = self.config(label);
        c.account_key = None;
        c.with_sas_token(Secret::new(self.sas_token(permissions)))
    }

    /// A driver under a fresh random root.
    pub fn storage(&self, label: &str) -> AzureStorage {
        AzureStorage::new(self.config(label)).expect("driver")
    }

    /// The same, as a trait object.
    pub fn shared(&self, label: &str) -> Arc<dyn Storage> {
        Arc::new(self.storage(label))
    }

    /// `scheme://host:port` of the account URL: what a proxy forwards to.
    pub fn origin(&self) -> String {
        let url = reqwest::Url::parse(&self.account_url).expect("the account URL parses");
        url.origin().ascii_serialization()
    }

    /// `config` with its account URL moved onto `proxy` (`http://host:port`):
    /// the same path (Azurite's account segment) through the proxy.
    pub fn through(&self, proxy: &str, config: &AzureConfig) -> AzureConfig {
        let url = reqwest::Url::parse(&self.account_url).expect("the account URL parses");
        config
            .clone()
            .with_endpoint(format!("{}{}", proxy.trim_end_matches('/'), url.path()))
    }
}
