//! `validate`: what the configuration says about the credentials (a SAS
//! token's permissions and expiry, how download URLs are made), then one
//! List Blobs of the container, sent once, so that a wrong key, a missing
//! container, denied access and an unreachable endpoint each get their own
//! message; then the probe object every driver writes, reads and deletes.

use chrono::Utc;
use reqwest::Method;
use stowage_core::validate::probe;
use stowage_core::{CheckStatus, ValidationReport};

use crate::auth::Auth;
use crate::client::Call;
use crate::error::{into_error, is_auth_code, Failure, DRIVER};
use crate::storage::ServerCopy;
use crate::AzureStorage;

impl AzureStorage {
    pub(crate) async fn validate_container(&self) -> ValidationReport {
        let mut report = ValidationReport::new(DRIVER);
        let c = &self.config;
        report.fact("account", c.account.clone());
        report.fact("container", c.container.clone());
        report.fact(
            "root",
            if c.root.is_empty() {
                "<container root>".to_string()
            } else {
                c.root.clone()
            },
        );
        report.fact("endpoint", c.account_url());
        match self.client.auth() {
            Auth::SharedKey { .. } => {
                report.fact("credentials", "account key (Shared Key)");
                if c.sas_token.is_some() {
                    report.fact(
                        "sas_token",
                        "not used: the account key signs every request, as in Quay",
                    );
                }
            }
            Auth::Sas(sas) => {
                report.fact(
                    "credentials",
                    format!(
                        "SAS token (permissions {}, expires {})",
                        sas.permissions.as_str(),
                        sas.expiry.map_or_else(
                            || "at an unreadable time".to_string(),
                            |t| t.to_rfc3339()
                        )
                    ),
                );
                let missing = sas.permissions.missing_for_driver();
                if sas.policy && sas.permissions.as_str().is_empty() {
                    report.check(
                        "SAS token permissions",
                        CheckStatus::Degraded,
                        "the token's permissions come from its stored access policy (si): not \
                         checked here; the probe below shows what it allows",
                    );
                } else if missing.is_empty() {
                    report.check(
                        "SAS token permissions",
                        CheckStatus::Ok,
                        format!(
                            "sp={} covers read, write, delete and list",
                            sas.permissions.as_str()
                        ),
                    );
                } else {
                    let letters: String = missing.iter().collect();
                    report.check(
                        "SAS token permissions",
                        CheckStatus::Failed,
                        format!(
                            "sas_token does not grant {letters} (sp={}): the driver reads (r), \
                             writes (w), deletes (d) and lists (l) blobs",
                            sas.permissions.as_str()
                        ),
                    );
                }
                let now = Utc::now();
                match sas.expiry {
                    None if sas.policy => report.check(
                        "SAS token expiry",
                        CheckStatus::Degraded,
                        "the token's expiry comes from its stored access policy (si): not \
                         checked here",
                    ),
                    Some(t) if t <= now => report.check(
                        "SAS token expiry",
                        CheckStatus::Failed,
                        format!("sas_token expired at {}", t.to_rfc3339()),
                    ),
                    Some(t) if t - now < chrono::Duration::days(7) => report.check(
                        "SAS token expiry",
                        CheckStatus::Degraded,
                        format!(
                            "sas_token expires at {}, in {} hours: give a new one before",
                            t.to_rfc3339(),
                            (t - now).num_hours()
                        ),
                    ),
                    Some(t) => report.check(
                        "SAS token expiry",
                        CheckStatus::Ok,
                        format!("expires at {}", t.to_rfc3339()),
                    ),
                    None => report.check(
                        "SAS token expiry",
                        CheckStatus::Degraded,
                        "the token's expiry (se) could not be read",
                    ),
                }
            }
        }
        let (signed, detail) = self.direct_download_status();
        report.check(
            "direct download URLs",
            if signed {
                CheckStatus::Ok
            } else {
                CheckStatus::Degraded
            },
            detail,
        );
        for kind in [ServerCopy::PutBlockFromUrl, ServerCopy::CopyBlob] {
            if self.server_copy_refused(kind) {
                report.check(
                    "server-side copies",
                    CheckStatus::Degraded,
                    format!(
                        "the server refused {} lately (Azurite does not implement Put Block From \
                         URL): {} stream the bytes through this process for now",
                        kind.name(),
                        match kind {
                            ServerCopy::PutBlockFromUrl => "chunked-upload assemblies",
                            ServerCopy::CopyBlob => "copies",
                        }
                    ),
                );
            }
        }
        // One listing of one name, sent once: an unreachable endpoint is
        // reported at once, not after the retry budget.
        let mut call = Call::container(Method::GET)
            .query("comp", "list")
            .query("maxresults", "1");
        if !c.root.is_empty() {
            call = call.query("prefix", format!("{}/", c.root));
        }
        let check = "container reachable";
        match self.client.send(&call, c.first_byte_timeout).await {
            Ok(_) => report.check(
                check,
                CheckStatus::Ok,
                format!("container {} in account {} answers", c.container, c.account),
            ),
            Err(f) => {
                let detail = self.explain(f);
                report.check(check, CheckStatus::Failed, detail);
                return report;
            }
        }
        let probed = probe(self).await;
        report.checks.extend(probed.checks);
        report
    }

    /// What a failed container listing means, in words.
    fn explain(&self, failure: Failure) -> String {
        match self.describe(&failure) {
            Some(text) => text,
            None => into_error(failure, self.op("ListBlobs", ""), "").chain(),
        }
    }

    /// [`AzureStorage::explain`] for the failures it has words for.
    fn describe(&self, failure: &Failure) -> Option<String> {
        let c = &self.config;
        let key = self.has_account_key();
        Some(match failure {
            Failure::Status(s) if s.is("ContainerNotFound") => format!(
                "container {} does not exist in account {} (create it, or check \
                 azure_container)",
                c.container, c.account
            ),
            Failure::Status(s) if s.code.as_deref().is_some_and(is_auth_code) => {
                let code = s.code.clone().unwrap_or_default();
                if key {
                    format!(
                        "the account key is wrong for account {}: the service answered {} {code} \
                         (Azure says AuthenticationFailed, Azurite AuthorizationFailure); check \
                         azure_account_key and azure_account_name",
                        c.account, s.status
                    )
                } else {
                    format!(
                        "the SAS token was refused: the service answered {} {code} (a wrong \
                         signature, another account or container, or outside its start and \
                         expiry); check sas_token",
                        s.status
                    )
                }
            }
            Failure::Status(s) if s.status == 403 => format!(
                "listing container {} is denied for these credentials ({}){}",
                c.container,
                s.code.as_deref().unwrap_or("403"),
                if key {
                    ""
                } else {
                    ": the SAS token needs l (list)"
                }
            ),
            Failure::Transport(_) | Failure::Timeout(_) => format!(
                "cannot reach the account URL {}: {failure}",
                c.account_url()
            ),
            _ => return None,
        })
    }
}
