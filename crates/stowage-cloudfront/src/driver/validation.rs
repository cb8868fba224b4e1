//! What `validate` checks of the signing layer: mode, key id, key type,
//! a signature made and verified with each key, the fallback in force, the
//! AWS ranges file, and (when `cloudfront_validate_fetch` is on) a signed
//! URL of a probe object fetched through the distribution.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use stowage_core::{
    CheckStatus, DownloadUrlOptions, PutOptions, Storage, StoragePath, ValidationReport,
};

use super::storage::CloudFrontedS3Storage;
use crate::config::PolicyKind;
use crate::signer::{Policy, SigningMode};

impl CloudFrontedS3Storage {
    /// The report lines of the signing layer.
    pub(super) fn validate_signing(&self, report: &mut ValidationReport) -> bool {
        let c = &self.inner.config;
        report.fact("distribution", c.distribution_url.clone());
        report.fact(
            "signing mode",
            if c.configured_mode == SigningMode::Auto {
                format!("{} (auto, from the key id)", c.mode)
            } else {
                c.mode.to_string()
            },
        );
        let loaded = self.inner.keys.current();
        let key_id = match &loaded.keys {
            Ok(keys) => keys.signers[0].key_id().to_string(),
            Err(_) => c.keys[0].key_id.clone(),
        };
        report.fact("key id", key_id);
        if let Some(file) = &c.keys[0].key_id_file {
            report.fact("key id file", file.display().to_string());
        }
        report.fact(
            "private key file",
            c.keys[0].private_key_file.display().to_string(),
        );
        report.fact(
            "key reload",
            if c.key_reload_interval.is_zero() {
                "on SIGHUP only".to_string()
            } else {
                format!(
                    "files looked at every {} s, and on SIGHUP",
                    c.key_reload_interval.as_secs()
                )
            },
        );
        report.fact("hash", c.hash.as_str());
        report.fact(
            "policy",
            match (c.policy, c.restrict_to_client_ip) {
                (PolicyKind::Canned, _) => "canned",
                (PolicyKind::Custom, true) => "custom, restricted to the client IP",
                (PolicyKind::Custom, false) => "custom",
            },
        );
        if let Ok(keys) = &loaded.keys {
            if keys.signers.len() > 1 {
                let others: Vec<&str> = keys.signers[1..].iter().map(|s| s.key_id()).collect();
                report.fact("rotation keys", others.join(", "));
            }
        } else if c.keys.len() > 1 {
            let others: Vec<&str> = c.keys[1..].iter().map(|k| k.key_id.as_str()).collect();
            report.fact("rotation keys", others.join(", "));
        }
        if let Some(r) = &self.inner.aws_ranges {
            let (count, error) = r.status();
            match error {
                None => report.check(
                    "aws ip ranges",
                    CheckStatus::Ok,
                    format!("{count} networks; clients inside AWS get S3 URLs"),
                ),
                Some(e) => report.check("aws ip ranges", CheckStatus::Degraded, e),
            }
        }
        let keys = match &loaded.keys {
            Ok(k) => k,
            Err(e) => {
                report.fact("fallback in force", "S3 presigned URLs for every download");
                report.check(
                    "signing key",
                    CheckStatus::Degraded,
                    format!("{e}; download URLs fall back to S3 presigned URLs"),
                );
                return false;
            }
        };
        report.fact("key type", keys.signers[0].key().kind().to_string());
        report.fact("fallback in force", "none");
        for signer in &keys.signers {
            let url = format!("{}/_stowage_validate/probe", c.distribution_url);
            let policy = Policy::canned(&url, Utc::now().timestamp() + 60);
            let verified = signer.sign_policy(&policy).is_ok_and(|s| {
                crate::signer::decode_cloudfront_base64(&s.signature).is_ok_and(|sig| {
                    signer
                        .key()
                        .verify(s.policy_json.as_bytes(), &sig, signer.hash())
                })
            });
            report.check(
                format!("sign {}", signer.key_id()),
                if verified {
                    CheckStatus::Ok
                } else {
                    CheckStatus::Failed
                },
                if verified {
                    format!(
                        "signed a URL with the {} key and verified it with its public half",
                        signer.key().kind()
                    )
                } else {
                    "the signature did not verify with the key's public half".into()
                },
            );
        }
        true
    }

    /// Fetches a signed URL of a probe object through the distribution:
    /// the only check that sees what the distribution trusts.
    pub(super) async fn validate_fetch(&self, report: &mut ValidationReport) {
        let probe = match StoragePath::parse(format!(
            "_stowage_validate/cloudfront-{}",
            Utc::now().timestamp_micros()
        )) {
            Ok(p) => p,
            Err(_) => return,
        };
        let body = Bytes::from_static(b"stowage cloudfront probe");
        if let Err(e) = self
            .s3
            .put(&probe, body.clone(), PutOptions::default())
            .await
        {
            report.fail("fetch through CloudFront", &e);
            return;
        }
        let c = &self.inner.config;
        let options = DownloadUrlOptions::default().with_expires_in(Duration::from_secs(120));
        let url = self.unsigned_url(&probe, &options);
        let expires = Utc::now().timestamp() + 120;
        let signer = self.signer();
        let signed_with = signer
            .as_ref()
            .map(|s| s.key_id().to_string())
            .unwrap_or_else(|_| c.keys[0].key_id.clone());
        let outcome = match signer {
            Ok(signer) => match signer.signed_url_canned(&url, expires) {
                Ok(signed) => fetch(&signed).await,
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let _ = self.s3.delete(&probe).await;
        match outcome {
            Ok((200, got)) if got == body => report.check(
                "fetch through CloudFront",
                CheckStatus::Ok,
                format!(
                    "{} served a signed URL of a probe object",
                    c.distribution_url
                ),
            ),
            Ok((403, _)) => report.check(
                "fetch through CloudFront",
                CheckStatus::Failed,
                format!(
                    "{} answered 403 to a URL signed with {} ({} mode). Most often the \
                     distribution does not trust this key id: one with trusted key groups \
                     needs the id of a public key in one of its groups (K...); one with \
                     trusted signers needs the root account's key pair id (APKA...). Else \
                     the private key is not the one whose public half was uploaded, or the \
                     origin refused CloudFront (bucket policy, origin access control)",
                    c.distribution_url, signed_with, c.mode
                ),
            ),
            Ok((status, _)) => report.check(
                "fetch through CloudFront",
                CheckStatus::Failed,
                format!(
                    "{} answered {status} to a signed URL of the probe object (expected 200 \
                     with its bytes): check the distribution's origin is this bucket",
                    c.distribution_url
                ),
            ),
            Err(e) => report.check(
                "fetch through CloudFront",
                CheckStatus::Failed,
                format!("cannot fetch through {}: {e}", c.distribution_url),
            ),
        }
    }
}

async fn fetch(url: &str) -> std::result::Result<(u16, Bytes), String> {
    // reqwest is built without a TLS provider of its own (no second crypto
    // library): aws-lc, which the AWS SDK links already, is the process's
    // default unless the embedding program chose one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(|e| {
        // The URL carries a signature: say where, not what.
        format!("request failed ({})", e.without_url())
    })?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| e.without_url().to_string())?;
    Ok((status, body))
}
