//! `STSS3Storage` configuration: Quay's keys (`sts_role_arn`,
//! `sts_user_access_key`, `sts_user_secret_key`) plus STS endpoint, region,
//! external id, session name and duration, web identity, and every
//! `S3Storage` key. `docs/configuration.md` lists them with their defaults.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use stowage_core::config::{parse_http_url, ConfigErrors, FromParams, Params, Secret};

use crate::keys;
use stowage_s3::S3Config;

/// Where the role's credentials come from.
#[derive(Clone)]
#[non_exhaustive]
pub enum StsSource {
    /// `AssumeRole`, signed with the IAM user's keys when given
    /// (`sts_user_access_key` + `sts_user_secret_key`), else with the SDK's
    /// default credential chain.
    AssumeRole {
        /// The IAM user's access key id.
        user_access_key: Option<String>,
        /// The IAM user's secret key.
        user_secret_key: Option<Secret>,
    },
    /// `AssumeRoleWithWebIdentity` with the token in `token_file`, read
    /// again at every refresh (`sts_web_identity_token_file`, or
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN`).
    WebIdentity {
        /// The token file (a projected service-account token).
        token_file: PathBuf,
    },
    /// No STS settings at all: the SDK's default chain, which assumes the
    /// role of a shared config profile with `role_arn` +
    /// `web_identity_token_file` (what OpenShift's Cloud Credential
    /// Operator mounts).
    SdkDefaultChain,
}

impl fmt::Debug for StsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AssumeRole {
                user_access_key, ..
            } => f
                .debug_struct("AssumeRole")
                .field("user_access_key", &user_access_key.as_ref().map(|_| "***"))
                .finish_non_exhaustive(),
            Self::WebIdentity { token_file } => f
                .debug_struct("WebIdentity")
                .field("token_file", token_file)
                .finish(),
            Self::SdkDefaultChain => f.write_str("SdkDefaultChain"),
        }
    }
}

impl StsSource {
    /// A short name for reports: `assume-role`, `web-identity`, `sdk-profile`.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::AssumeRole { .. } => "assume-role",
            Self::WebIdentity { .. } => "web-identity",
            Self::SdkDefaultChain => "sdk-profile",
        }
    }
}

/// A validated `STSS3Storage` configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StsConfig {
    /// The bucket these credentials are for (every `S3Storage` key of the
    /// location): `open_s3` builds the driver on it, and refused user keys
    /// are diagnosed against it.
    pub s3: S3Config,
    /// The role to assume (`sts_role_arn`; `AWS_ROLE_ARN` for web identity
    /// from the environment). `None` only with [`StsSource::SdkDefaultChain`].
    pub role_arn: Option<String>,
    /// Where the credentials come from.
    pub source: StsSource,
    /// STS endpoint of a non-AWS server (`sts_endpoint_url`; default: the
    /// S3 `endpoint_url` when one is set, else AWS's regional STS).
    pub sts_endpoint: Option<String>,
    /// Region of the STS calls (`sts_region`; default `s3_region`).
    pub sts_region: String,
    /// External id the role's trust policy may require (`sts_external_id`).
    pub external_id: Option<String>,
    /// Session name (`sts_session_name`, default `stowage`; for web
    /// identity from the environment, `AWS_ROLE_SESSION_NAME` when set).
    pub session_name: String,
    /// Requested session length (`sts_duration_seconds`, default 3600;
    /// AWS accepts 900 to the role's maximum).
    pub duration: Duration,
    /// Credentials are refreshed this long before they expire
    /// (`sts_refresh_margin_seconds`, default 300), in the background while
    /// requests go on with the held ones. The margin applied to a session
    /// is `min(max(margin, 10 s), session / 3)`: never more than a third of
    /// the session, so a session no longer than the margin (e.g.
    /// `sts_duration_seconds: 60` with the default margin) is still used
    /// for two thirds of its life instead of calling STS on every request.
    pub refresh_margin: Duration,
}

/// What is said of `s3_access_key` or `s3_secret_key` given with STS.
const S3_KEYS_WITH_STS: &str = "with STS keys, requests are signed with the assumed role's \
     credentials, not s3_access_key; put the IAM user's keys in sts_user_access_key and \
     sts_user_secret_key";

impl StsConfig {
    /// Every problem of this configuration, each with the key of the field
    /// it is about: those of [`StsConfig::s3`] ([`S3Config::problems`]),
    /// static S3 keys (requests are signed by the role), a role ARN that
    /// is not a role's (or none where stowage assumes the role itself),
    /// one IAM user key without the other, an STS endpoint that is not an
    /// `http(s)://` URL, an empty region, external id or token file, a
    /// session name or length AWS refuses.
    ///
    /// The one check of a configuration, however it was built:
    /// [`StsConfig::read_over`] runs it on what it read, and
    /// [`crate::StsCredentials::new`] refuses a configuration with
    /// problems, listing all of them. The refresh margin is not compared
    /// with the session length here: the margin applied is capped at a
    /// third of the session anyway (the reader refuses a margin written
    /// as long as the session, as a mistake of the file).
    pub fn problems(&self) -> ConfigErrors {
        let mut errs = self.s3.problems();
        if self.s3.access_key.is_some() || self.s3.secret_key.is_some() {
            errs.push(stowage_s3::keys::S3_ACCESS_KEY, S3_KEYS_WITH_STS);
        }
        match (&self.role_arn, &self.source) {
            (Some(arn), _) => {
                if let Some(why) = role_arn_problem(arn) {
                    errs.push(keys::STS_ROLE_ARN, why);
                }
            }
            (None, StsSource::SdkDefaultChain) => {}
            (None, _) => errs.push(
                keys::STS_ROLE_ARN,
                "missing: the role to assume (e.g. arn:aws:iam::123456789012:role/quay)",
            ),
        }
        match &self.source {
            StsSource::AssumeRole {
                user_access_key,
                user_secret_key,
            } => match (user_access_key, user_secret_key) {
                (Some(_), None) | (None, Some(_)) => errs.push(
                    keys::STS_USER_ACCESS_KEY,
                    "sts_user_access_key and sts_user_secret_key go together; give both or neither",
                ),
                (Some(id), Some(_)) if id.trim().is_empty() => {
                    errs.push(
                        keys::STS_USER_ACCESS_KEY,
                        "empty: give the IAM user's access key id",
                    );
                }
                _ => {}
            },
            StsSource::WebIdentity { token_file } => {
                if token_file.as_os_str().is_empty() {
                    errs.push(
                        keys::STS_WEB_IDENTITY_TOKEN_FILE,
                        "empty: give the file holding the web identity token",
                    );
                }
            }
            StsSource::SdkDefaultChain => {}
        }
        if let Some(endpoint) = &self.sts_endpoint {
            if let Err(why) = parse_http_url(endpoint) {
                errs.push(keys::STS_ENDPOINT_URL, why);
            }
        }
        if self.sts_region.is_empty() || self.sts_region.contains(char::is_whitespace) {
            errs.push(
                keys::STS_REGION,
                format!("{:?} is not a region name", self.sts_region),
            );
        }
        if let Some(id) = &self.external_id {
            if id.trim().is_empty() {
                errs.push(
                    keys::STS_EXTERNAL_ID,
                    "empty: give the external id the role's trust policy asks for, or none",
                );
            }
        }
        if let Some(why) = session_name_problem(&self.session_name) {
            errs.push(keys::STS_SESSION_NAME, why);
        }
        if let Some(why) = duration_problem(self.duration) {
            errs.push(keys::STS_DURATION_SECONDS, why);
        }
        errs
    }

    /// A configuration assuming `role_arn` with the default credential chain
    /// as base credentials.
    pub fn assume_role(s3: S3Config, role_arn: impl Into<String>) -> Self {
        let region = s3.region.clone();
        Self {
            sts_endpoint: s3.endpoint.clone(),
            s3,
            role_arn: Some(role_arn.into()),
            source: StsSource::AssumeRole {
                user_access_key: None,
                user_secret_key: None,
            },
            sts_region: region,
            external_id: None,
            session_name: "stowage".into(),
            duration: Duration::from_secs(3600),
            refresh_margin: Duration::from_secs(300),
        }
    }

    /// Reads the keys; `env` looks up environment variables (a parameter so
    /// tests need not touch the process environment).
    pub fn read(params: &mut Params<'_>, env: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let s3 = S3Config::read(params);
        Self::read_over(params, env, s3)
    }

    /// Reads the STS keys of a location whose S3 keys were read already
    /// (`s3`, `None` when they had problems): how a CloudFront location with
    /// STS keys gets its credentials. `None` when a problem was recorded.
    pub fn read_over(
        params: &mut Params<'_>,
        env: &dyn Fn(&str) -> Option<String>,
        s3: Option<S3Config>,
    ) -> Option<Self> {
        // Problems of the STS keys (S3's are in `s3` being `None`).
        let before = params.problem_count();
        let role_arn = params.string(keys::STS_ROLE_ARN);
        let (user_access_key, user_secret_key) =
            match params.key_pair(keys::STS_USER_ACCESS_KEY, keys::STS_USER_SECRET_KEY) {
                Some((ak, sk)) => (Some(ak), Some(sk)),
                None => (None, None),
            };
        let token_file = params.path(keys::STS_WEB_IDENTITY_TOKEN_FILE);
        let sts_endpoint = params
            .http_url(keys::STS_ENDPOINT_URL)
            .map(|u| u.as_str().trim_end_matches('/').to_string());
        let sts_region = params.string(keys::STS_REGION);
        let external_id = params.string(keys::STS_EXTERNAL_ID);
        let session_name = params.string(keys::STS_SESSION_NAME);
        let duration = params.u64(keys::STS_DURATION_SECONDS);
        let margin = params.u64(keys::STS_REFRESH_MARGIN_SECONDS);

        // The problems of the values as written; `problems` (below) runs
        // the same checks on the configuration built.
        if params.has(stowage_s3::keys::S3_ACCESS_KEY)
            || params.has(stowage_s3::keys::S3_SECRET_KEY)
        {
            params.problem(stowage_s3::keys::S3_ACCESS_KEY, S3_KEYS_WITH_STS);
        }
        if let Some(arn) = &role_arn {
            if let Some(why) = role_arn_problem(arn) {
                params.problem(keys::STS_ROLE_ARN, why);
            }
        }
        if let Some(why) = session_name.as_deref().and_then(session_name_problem) {
            params.problem(keys::STS_SESSION_NAME, why);
        }
        let duration = Duration::from_secs(duration.unwrap_or(3600));
        if let Some(why) = duration_problem(duration) {
            params.problem(keys::STS_DURATION_SECONDS, why);
        }
        // The margin applied to a session is capped at a third of it (see
        // `refresh_margin`), so the default needs no adjusting to short
        // sessions; a margin given explicitly must fit in the session.
        let refresh_margin = Duration::from_secs(margin.unwrap_or(300));
        if let Some(m) = margin {
            if m >= duration.as_secs() {
                params.problem(
                    keys::STS_REFRESH_MARGIN_SECONDS,
                    format!(
                        "{m} is not below sts_duration_seconds ({}): give a margin shorter \
                         than the session (stowage applies at most a third of the session)",
                        duration.as_secs()
                    ),
                );
            }
        }

        let (source, role_arn) = match (token_file, role_arn, user_access_key) {
            (Some(_), _, Some(_)) => {
                params.problem(
                    keys::STS_WEB_IDENTITY_TOKEN_FILE,
                    "web identity needs no user keys; remove sts_user_access_key and \
                     sts_user_secret_key, or remove the token file to use AssumeRole",
                );
                return None;
            }
            (Some(_), None, None) => {
                params.problem(
                    keys::STS_ROLE_ARN,
                    "sts_web_identity_token_file needs the role to assume in sts_role_arn",
                );
                return None;
            }
            (Some(file), Some(role), None) => {
                (StsSource::WebIdentity { token_file: file }, Some(role))
            }
            (None, Some(role), key) => (
                StsSource::AssumeRole {
                    user_access_key: key,
                    user_secret_key,
                },
                Some(role),
            ),
            (None, None, Some(_)) => {
                params.problem(
                    keys::STS_ROLE_ARN,
                    "missing: the role the user keys assume (e.g. arn:aws:iam::123456789012:role/quay)",
                );
                return None;
            }
            (None, None, None) => match (env("AWS_ROLE_ARN"), env("AWS_WEB_IDENTITY_TOKEN_FILE")) {
                (Some(role), Some(file)) => (
                    StsSource::WebIdentity {
                        token_file: PathBuf::from(file),
                    },
                    Some(role),
                ),
                _ => (StsSource::SdkDefaultChain, None),
            },
        };
        if matches!(source, StsSource::SdkDefaultChain) {
            // The SDK's chain assumes the profile's role itself: these
            // settings would be silently ignored.
            for key in [
                "sts_duration_seconds",
                "sts_session_name",
                "sts_external_id",
                "sts_endpoint_url",
            ] {
                if params.has(key) {
                    params.problem(
                        key,
                        "applies only when stowage assumes the role itself (give sts_role_arn, \
                         or AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE); with a shared config \
                         profile the SDK assumes the role: set it in the profile instead",
                    );
                }
            }
        }
        let s3 = s3?;
        if params.problem_count() != before {
            return None;
        }
        let session_name = session_name
            .or_else(|| match source {
                StsSource::WebIdentity { .. } => env("AWS_ROLE_SESSION_NAME"),
                _ => None,
            })
            .unwrap_or_else(|| "stowage".into());
        let config = Self {
            sts_endpoint: sts_endpoint
                .map(|u| u.trim_end_matches('/').to_string())
                .or_else(|| s3.endpoint.clone()),
            sts_region: sts_region.unwrap_or_else(|| s3.region.clone()),
            s3,
            role_arn,
            source,
            external_id,
            session_name,
            duration,
            refresh_margin,
        };
        // The checks of any configuration, on what the environment gave
        // too (AWS_ROLE_ARN, AWS_ROLE_SESSION_NAME) and on the keys not
        // checked above (region, external id).
        params.extend_unreported(config.problems());
        (params.problem_count() == before).then_some(config)
    }
}

/// An `STSS3Storage` location: the S3 keys and the STS keys, with
/// `AWS_ROLE_ARN` and friends from the process environment.
impl FromParams for StsConfig {
    fn read_params(params: &mut Params<'_>) -> Option<Self> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self::read(params, &env)
    }
}

/// Why `arn` cannot be a role ARN, if it cannot.
fn role_arn_problem(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "iam" {
        return Some(format!(
            "{arn:?} is not a role ARN (expected arn:aws:iam::ACCOUNT:role/NAME)"
        ));
    }
    if !parts[5].starts_with("role/") {
        return Some(format!(
            "{arn:?} names an IAM {:?}, not a role: STS can only assume roles",
            parts[5].split('/').next().unwrap_or("")
        ));
    }
    None
}

/// Why `name` is not a role session name AWS accepts (2 to 64 characters
/// of `[\w+=,.@-]`), if it is not.
fn session_name_problem(name: &str) -> Option<String> {
    let valid = (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=,.@-_+".contains(c));
    (!valid).then(|| {
        format!(
            "{name:?} is not a role session name: 2 to 64 characters of letters, digits and \
             =,.@-_+"
        )
    })
}

/// Why `duration` cannot be a session length, if it cannot.
fn duration_problem(duration: Duration) -> Option<String> {
    let seconds = duration.as_secs();
    (!(60..=43_200).contains(&seconds)).then(|| {
        format!("{seconds} is outside 60..=43200 (AWS itself accepts 900 up to the role's maximum)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};
    use stowage_core::config::ConfigErrors;

    fn parse(v: Value, env: &[(&str, &str)]) -> Result<StsConfig, ConfigErrors> {
        let map: Map<String, Value> = v.as_object().unwrap().clone();
        let mut params = Params::new("loc", &map);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let parsed = StsConfig::read(&mut params, &lookup);
        params.finish()?;
        Ok(parsed.expect("no problem recorded but no config"))
    }

    fn messages(e: ConfigErrors) -> String {
        e.to_string()
    }

    #[test]
    fn quay_assume_role_keys() {
        let c = parse(
            json!({"s3_bucket": "registry-bucket", "storage_path": "/registry", "sts_role_arn": "arn:aws:iam::123456789012:role/quay",
                   "sts_user_access_key": "AKIAEXAMPLE", "sts_user_secret_key": "s3cr3t-value", "s3_region": "eu-west-1"}),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/quay")
        );
        assert_eq!(c.sts_region, "eu-west-1");
        assert_eq!(c.session_name, "stowage");
        assert!(matches!(
            c.source,
            StsSource::AssumeRole {
                user_access_key: Some(_),
                ..
            }
        ));
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cr3t-value") && !debug.contains("AKIAEXAMPLE"),
            "{debug}"
        );
    }

    #[test]
    fn web_identity_from_config_and_from_environment() {
        let c = parse(
            json!({"s3_bucket": "registry-bucket", "sts_role_arn": "arn:aws:iam::1:role/r", "sts_web_identity_token_file": "/var/run/token"}),
            &[],
        )
        .unwrap();
        assert!(matches!(c.source, StsSource::WebIdentity { .. }));
        let c = parse(
            json!({"s3_bucket": "registry-bucket"}),
            &[
                ("AWS_ROLE_ARN", "arn:aws:iam::1:role/env"),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
                ("AWS_ROLE_SESSION_NAME", "pod-1"),
            ],
        )
        .unwrap();
        assert_eq!(c.role_arn.as_deref(), Some("arn:aws:iam::1:role/env"));
        assert_eq!(c.session_name, "pod-1");
        let c = parse(json!({"s3_bucket": "registry-bucket"}), &[]).unwrap();
        assert!(matches!(c.source, StsSource::SdkDefaultChain));
    }

    #[test]
    fn sts_endpoint_defaults_to_the_s3_endpoint() {
        let c = parse(
            json!({"s3_bucket": "registry-bucket", "endpoint_url": "http://127.0.0.1:7480/", "sts_role_arn": "arn:aws:iam:::role/x"}),
            &[],
        )
        .unwrap();
        assert_eq!(c.sts_endpoint.as_deref(), Some("http://127.0.0.1:7480"));
    }

    #[test]
    fn every_mistake_is_reported_with_its_key() {
        let e = parse(
            json!({"s3_bucket": "registry-bucket", "sts_role_arn": "arn:aws:iam::1:user/bob", "s3_access_key": "AK", "s3_secret_key": "SK",
                   "sts_user_access_key": "x", "sts_duration_seconds": 10, "sts_session_name": "has space",
                   "sts_endpoint_url": "sts.local"}),
            &[],
        )
        .unwrap_err();
        let m = messages(e);
        for key in [
            "sts_role_arn",
            "s3_access_key",
            "sts_user_access_key",
            "sts_duration_seconds",
            "sts_session_name",
            "sts_endpoint_url",
        ] {
            assert!(m.contains(key), "{key} not in {m}");
        }
        assert!(!m.contains("SK\""), "{m}");
    }

    #[test]
    fn margin_must_be_below_the_session_length() {
        let m = messages(
            parse(
                json!({"s3_bucket": "registry-bucket", "sts_role_arn": "arn:aws:iam::1:role/r", "sts_duration_seconds": 900, "sts_refresh_margin_seconds": 900}),
                &[],
            )
            .unwrap_err(),
        );
        assert!(m.contains("sts_refresh_margin_seconds"), "{m}");
    }

    #[test]
    fn the_default_margin_fits_sessions_shorter_than_it() {
        // A 120 s session with the default 300 s margin is accepted; the
        // margin applied to it is 40 s, not the whole session.
        let c = parse(
            json!({"s3_bucket": "registry-bucket", "sts_role_arn": "arn:aws:iam::1:role/r", "sts_duration_seconds": 120}),
            &[],
        )
        .unwrap();
        assert_eq!(c.duration, Duration::from_secs(120));
        assert_eq!(c.refresh_margin, Duration::from_secs(300));
        assert_eq!(
            crate::refresh::effective_margin(c.refresh_margin, c.duration),
            Duration::from_secs(40)
        );
    }

    #[test]
    fn a_config_built_in_code_names_every_problem() {
        let mut s3 = S3Config::new("").with_region("eu west");
        s3.access_key = Some("AK".into());
        s3.secret_key = Some(Secret::new("SK"));
        let mut c = StsConfig::assume_role(s3, "arn:aws:iam::1:user/bob");
        c.source = StsSource::AssumeRole {
            user_access_key: Some("AKIDUSER".into()),
            user_secret_key: None,
        };
        c.sts_endpoint = Some("sts.local".into());
        c.sts_region = String::new();
        c.external_id = Some(" ".into());
        c.session_name = "has space".into();
        c.duration = Duration::from_secs(10);
        let errs = c.problems();
        let text = errs.to_string();
        for key in [
            "s3_bucket",
            "s3_region",
            "s3_access_key",
            "sts_role_arn",
            "sts_user_access_key",
            "sts_endpoint_url",
            "sts_region",
            "sts_external_id",
            "sts_session_name",
            "sts_duration_seconds",
        ] {
            assert!(
                errs.0.iter().any(|p| p.key == key),
                "no problem reported for {key}: {text}"
            );
        }
        assert!(!text.contains("\"SK\""), "{text}");
        let mut c = StsConfig::assume_role(S3Config::new("bkt"), "arn:aws:iam::1:role/r");
        assert!(c.problems().is_empty(), "{}", c.problems());
        c.role_arn = None;
        assert!(c.problems().to_string().contains("sts_role_arn: missing"));
        c.source = StsSource::SdkDefaultChain;
        assert!(c.problems().is_empty(), "the profile names the role");
        // A margin as long as the session is capped, not refused, in code.
        let mut c = StsConfig::assume_role(S3Config::new("bkt"), "arn:aws:iam::1:role/r");
        c.refresh_margin = c.duration;
        assert!(c.problems().is_empty());
    }

    #[tokio::test]
    async fn the_source_refuses_a_config_with_problems_naming_them_all() {
        let mut c = StsConfig::assume_role(S3Config::new("bkt"), "not-an-arn");
        c.duration = Duration::ZERO;
        let e = crate::StsCredentials::new(c).await.unwrap_err();
        let stowage_core::Error::Config(errs) = &e else {
            panic!("not a configuration error: {e}");
        };
        let keys: Vec<&str> = errs.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["sts_role_arn", "sts_duration_seconds"], "{e}");
    }

    #[test]
    fn settings_the_profile_chain_would_ignore_are_errors() {
        let e = messages(
            parse(
                json!({"s3_bucket": "registry-bucket", "sts_duration_seconds": 900,
                       "sts_session_name": "quay"}),
                &[],
            )
            .unwrap_err(),
        );
        assert!(e.contains("loc.sts_duration_seconds"), "{e}");
        assert!(e.contains("loc.sts_session_name"), "{e}");
        assert!(e.contains("set it in the profile"), "{e}");
        assert!(parse(json!({"s3_bucket": "registry-bucket"}), &[]).is_ok());
    }
}
