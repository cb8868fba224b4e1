//! Direct URLs: a service SAS for one blob, signed with the account key
//! (`sr=b`; `sp=r` to download, `sp=cw` to upload; `spr=https` on HTTPS
//! endpoints; at most 7 days).
//!
//! Without the account key the driver cannot sign: a user delegation SAS
//! would need Azure AD credentials, which stowage does not use. Download
//! URLs then carry the configured SAS token when it grants reading and
//! nothing more (only `r`, `l`) and has not expired, with a fallback saying
//! so; any other token is never handed to clients (it would let them write
//! or delete), and `download_url` returns `None`, counted by cause in
//! `stowage_azure_direct_url_fallbacks_total`. Upload URLs need the key.

use std::time::Duration;

use chrono::{DateTime, Utc};
use stowage_core::{
    DirectUrl, DownloadUrlOptions, Error, Fallback, Result, StoragePath, UploadUrlOptions,
    UrlMethod, UrlSource,
};

use crate::auth::{service_sas, Auth, ConfiguredSas, ResponseOverrides, SasRequest, SasResource};
use crate::error::DRIVER;
use crate::AzureStorage;

/// The longest lifetime of a signed URL: longer requests are shortened.
pub(crate) const MAX_URL_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The `response-*` query parameters of a download URL as the SAS fields
/// that make the service send those headers.
fn response_overrides(extra: &[(String, String)]) -> Result<ResponseOverrides> {
    let mut o = ResponseOverrides::default();
    for (name, value) in extra {
        let slot = match name.as_str() {
            "response-cache-control" => &mut o.cache_control,
            "response-content-disposition" => &mut o.disposition,
            "response-content-encoding" => &mut o.encoding,
            "response-content-language" => &mut o.language,
            "response-content-type" => &mut o.content_type,
            _ => {
                return Err(Error::Unsupported {
                    operation: "query parameters other than response-* on Azure download URLs",
                    driver: DRIVER,
                })
            }
        };
        *slot = Some(value.clone());
    }
    Ok(o)
}

/// `now + lifetime` in whole seconds (what the SAS says).
fn expiry_after(lifetime: Duration) -> Result<DateTime<Utc>> {
    if lifetime.is_zero() {
        return Err(Error::invalid_argument(
            "a signed URL needs a lifetime of at least 1 s",
        ));
    }
    let lifetime = lifetime.min(MAX_URL_LIFETIME);
    let at = Utc::now()
        + chrono::Duration::from_std(lifetime).unwrap_or_else(|_| chrono::Duration::days(7));
    Ok(DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at))
}

/// Why the configured SAS is not handed to clients, as a metric cause.
fn withheld(sas: &ConfiguredSas) -> Option<&'static str> {
    if !sas.permissions.grants('r') {
        Some("sas_without_read")
    } else if sas.expiry.is_some_and(|t| t <= Utc::now()) {
        Some("sas_expired")
    } else if !sas.permissions.is_read_only() {
        Some("sas_grants_more_than_read")
    } else {
        None
    }
}

impl AzureStorage {
    /// Whether `download_url` returns URLs: with the account key, or a
    /// configured SAS that is read-only and not expired.
    pub(crate) fn direct_download(&self) -> bool {
        match self.client.auth() {
            Auth::SharedKey { .. } => true,
            Auth::Sas(sas) => withheld(sas).is_none(),
        }
    }

    /// Why download URLs are not what they could be, for `validate`:
    /// `Ok` text when they are signed with the key, else the reason.
    pub(crate) fn direct_download_status(&self) -> (bool, String) {
        match self.client.auth() {
            Auth::SharedKey { .. } => (
                true,
                "service SAS per blob, signed with the account key (at most 7 days)".into(),
            ),
            Auth::Sas(sas) => match withheld(sas) {
                None => (
                    false,
                    "no account key: the configured read-only sas_token is handed out as it is \
                     (its own expiry; a user delegation SAS would need Azure AD credentials)"
                        .into(),
                ),
                Some(cause) => (
                    false,
                    format!(
                        "no account key, and the configured sas_token cannot be handed to \
                         clients ({}): download_url returns None and clients are served \
                         through the registry; a user delegation SAS would need Azure AD \
                         credentials, which stowage does not use",
                        match cause {
                            "sas_without_read" => "it does not grant reading",
                            "sas_expired" => "it has expired",
                            _ => "it grants more than reading, so clients could write or delete",
                        }
                    ),
                ),
            },
        }
    }

    pub(crate) fn signed_download(
        &self,
        path: &StoragePath,
        options: &DownloadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        let overrides = response_overrides(&options.extra_query)?;
        let method = match options.method {
            UrlMethod::Head => UrlMethod::Head,
            _ => UrlMethod::Get,
        };
        let name = self.blob_name(path);
        let base = self.client.blob_url(&name);
        match self.client.auth() {
            Auth::SharedKey { account, key } => {
                let expiry = expiry_after(options.expires_in)?;
                let sas = service_sas(
                    account,
                    key,
                    &SasRequest {
                        permissions: "r",
                        expiry,
                        https_only: !self.config.is_plain_http(),
                        resource: SasResource::Blob {
                            container: self.container(),
                            blob: &name,
                        },
                        overrides,
                    },
                );
                // Azure's service SAS has no kind of its own in core:
                // a URL signed for the storage itself.
                Ok(Some(DirectUrl::new(
                    format!("{base}?{sas}"),
                    method,
                    expiry,
                    UrlSource::S3Presigned,
                )))
            }
            Auth::Sas(sas) => {
                if let Some(cause) = withheld(sas) {
                    self.retries.counters.count_url_fallback(cause);
                    tracing::debug!(blob = %name, cause, "no download URL: no account key to sign one, and the configured SAS is not handed to clients");
                    return Ok(None);
                }
                if !options.extra_query.is_empty() {
                    return Err(Error::Unsupported {
                        operation: "response-* query parameters on download URLs without an \
                                    account key",
                        driver: DRIVER,
                    });
                }
                let requested = Utc::now()
                    + chrono::Duration::from_std(options.expires_in.min(MAX_URL_LIFETIME))
                        .unwrap_or_else(|_| chrono::Duration::days(7));
                let expires_at = sas.expiry.unwrap_or(requested);
                Ok(Some(
                    DirectUrl::new(
                        format!("{base}?{}", sas.query()),
                        method,
                        expires_at,
                        UrlSource::S3Presigned,
                    )
                    .with_fallback(Fallback::new(
                        "configured_sas",
                        format!(
                            "no azure_account_key to sign a SAS for this blob: the configured \
                             read-only sas_token is handed out as it is, valid until {} \
                             whatever lifetime was asked for (a user delegation SAS would need \
                             Azure AD credentials, which stowage does not use)",
                            sas.expiry
                                .map_or_else(|| "its own expiry".to_string(), |t| t.to_rfc3339())
                        ),
                    )),
                ))
            }
        }
    }

    pub(crate) fn signed_upload(
        &self,
        path: &StoragePath,
        options: &UploadUrlOptions,
    ) -> Result<Option<DirectUrl>> {
        let Auth::SharedKey { account, key } = self.client.auth() else {
            return Ok(None);
        };
        let name = self.blob_name(path);
        let expiry = expiry_after(options.expires_in)?;
        let sas = service_sas(
            account,
            key,
            &SasRequest {
                permissions: "cw",
                expiry,
                https_only: !self.config.is_plain_http(),
                resource: SasResource::Blob {
                    container: self.container(),
                    blob: &name,
                },
                overrides: ResponseOverrides::default(),
            },
        );
        let mut url = DirectUrl::new(
            format!("{}?{sas}", self.client.blob_url(&name)),
            UrlMethod::Put,
            expiry,
            UrlSource::S3Presigned,
        )
        // Put Blob needs the blob type.
        .with_header("x-ms-blob-type", "BlockBlob");
        if let Some(ct) = &options.content_type {
            url = url.with_header("content-type", ct.clone());
        }
        Ok(Some(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::config::Secret;
    use stowage_core::Storage;

    use crate::{AzureConfig, AzureStorage};

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn storage(config: AzureConfig) -> AzureStorage {
        AzureStorage::new(config).unwrap()
    }

    #[tokio::test]
    async fn key_signed_urls_are_clamped_and_carry_no_key() {
        let s = storage(
            AzureConfig::new("acct", "quay")
                .with_account_key(Secret::new(KEY))
                .with_root("registry"),
        );
        let path = StoragePath::parse("blobs/a b").unwrap();
        let url = s
            .download_url(
                &path,
                &DownloadUrlOptions::default()
                    .with_expires_in(Duration::from_secs(30 * 24 * 3600))
                    .with_query("response-content-disposition", "attachment"),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            url.url
                .starts_with("https://acct.blob.core.windows.net/quay/registry/blobs/a%20b?sv="),
            "{}",
            url.url
        );
        assert!(
            url.url.contains("&sp=r&spr=https&rscd=attachment&sig="),
            "{}",
            url.url
        );
        assert!(!url.url.contains(KEY));
        let week = Utc::now() + chrono::Duration::days(7);
        assert!(url.expires_at <= week && url.expires_at > week - chrono::Duration::minutes(1));
        assert!(url.fallback.is_none());
        let err = s
            .download_url(&path, &DownloadUrlOptions::default().with_query("x", "y"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        let up = s
            .upload_url(
                &path,
                &UploadUrlOptions::default().with_content_type("application/octet-stream"),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(up.url.contains("&sp=cw&"), "{}", up.url);
        assert!(up
            .headers
            .contains(&("x-ms-blob-type".to_string(), "BlockBlob".to_string())));
        let caps = s.capabilities();
        assert!(caps.direct_download && caps.direct_upload && caps.server_side_assembly);
    }

    #[tokio::test]
    async fn a_configured_sas_is_handed_out_only_when_read_only() {
        let read_only = storage(
            AzureConfig::new("acct", "quay")
                .with_sas_token(Secret::new(
                    "sv=2021-08-06&sr=c&sp=rl&se=2099-01-01T00:00:00Z&sig=s",
                ))
                .with_endpoint("http://127.0.0.1:10000/acct"),
        );
        let path = StoragePath::parse("blobs/x").unwrap();
        let url = read_only
            .download_url(&path, &DownloadUrlOptions::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            url.fallback.as_ref().map(|f| f.cause),
            Some("configured_sas")
        );
        assert!(url
            .url
            .ends_with("?sv=2021-08-06&sr=c&sp=rl&se=2099-01-01T00:00:00Z&sig=s"));
        assert!(read_only.capabilities().direct_download);
        assert!(read_only
            .upload_url(&path, &UploadUrlOptions::default())
            .await
            .unwrap()
            .is_none());

        let writer = storage(AzureConfig::new("acct", "quay").with_sas_token(Secret::new(
            "sv=2021-08-06&sr=c&sp=racwdl&se=2099-01-01&sig=s",
        )));
        assert!(writer
            .download_url(&path, &DownloadUrlOptions::default())
            .await
            .unwrap()
            .is_none());
        assert!(!writer.capabilities().direct_download);
        let (_, why) = writer.direct_download_status();
        assert!(why.contains("grants more than reading"), "{why}");
        let counted: u64 = writer
            .metrics()
            .iter()
            .filter(|m| m.name == "stowage_azure_direct_url_fallbacks_total")
            .map(|m| m.value)
            .sum();
        assert_eq!(counted, 1);
    }
}
