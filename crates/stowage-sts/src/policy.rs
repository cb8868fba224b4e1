//! The trust policy a role needs for the configured STS mode (the
//! permission policy comes from `stowage_s3::iam`).

use serde_json::{json, Value};

use crate::{StsConfig, StsSource};

/// The trust policy of the role, with placeholders (`ACCOUNT_ID`,
/// `USER_NAME`, `OIDC_ISSUER`, `NAMESPACE`, `SERVICE_ACCOUNT`) where the
/// configuration cannot know the value.
pub fn trust_policy(config: &StsConfig) -> Value {
    let account = config
        .role_arn
        .as_deref()
        .and_then(|arn| arn.split(':').nth(4))
        .filter(|a| !a.is_empty())
        .unwrap_or("ACCOUNT_ID")
        .to_string();
    let statement = match &config.source {
        StsSource::AssumeRole { .. } => {
            let mut s = json!({
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:user/USER_NAME")},
                "Action": "sts:AssumeRole",
            });
            if config.external_id.is_some() {
                s["Condition"] =
                    json!({"StringEquals": {"sts:ExternalId": "THE_VALUE_OF_sts_external_id"}});
            }
            s
        }
        StsSource::WebIdentity { .. } | StsSource::SdkDefaultChain => json!({
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{account}:oidc-provider/OIDC_ISSUER")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                "OIDC_ISSUER:aud": "sts.amazonaws.com",
                "OIDC_ISSUER:sub": "system:serviceaccount:NAMESPACE:SERVICE_ACCOUNT",
            }},
        }),
    };
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_s3::S3Config;

    #[test]
    fn assume_role_trust_names_the_account_and_external_id() {
        let mut c =
            StsConfig::assume_role(S3Config::new("b"), "arn:aws:iam::123456789012:role/quay");
        c.external_id = Some("secret-ish".into());
        let p = trust_policy(&c).to_string();
        assert!(
            p.contains("arn:aws:iam::123456789012:user/USER_NAME"),
            "{p}"
        );
        assert!(p.contains("sts:ExternalId"), "{p}");
        assert!(!p.contains("secret-ish"), "{p}");
    }

    #[test]
    fn web_identity_trust_is_federated() {
        let mut c =
            StsConfig::assume_role(S3Config::new("b"), "arn:aws:iam::123456789012:role/quay");
        c.source = StsSource::WebIdentity {
            token_file: "/t".into(),
        };
        let p = trust_policy(&c).to_string();
        assert!(
            p.contains("sts:AssumeRoleWithWebIdentity") && p.contains("oidc-provider"),
            "{p}"
        );
    }
}
