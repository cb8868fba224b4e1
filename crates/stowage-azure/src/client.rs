//! Requests: a [`Call`] describes one Blob service request; the [`Client`]
//! signs it afresh for every attempt (Shared Key, or the configured SAS
//! appended to the query), sends it with the attempt's deadline, and turns
//! an error status into a [`Failure`] with the service's error code. Also
//! the few response headers every read needs.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use percent_encoding::utf8_percent_encode;
use reqwest::header::HeaderMap;
use reqwest::Method;
use stowage_core::{Error, ObjectMeta, Result, StoragePath};

use crate::auth::{
    shared_key_header, string_to_sign, AccountKey, Auth, ConfiguredSas, API_VERSION, PATH_SET,
    QUERY_SET,
};
use crate::error::{is_auth_code, Failure, StatusFailure, DRIVER};
use crate::xml;
use crate::AzureConfig;

/// Error answers are read up to this size (they are small XML documents).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How long an idle pooled connection is reused: below the 5 s keep-alive
/// of Node-based servers such as Azurite, so the driver does not send on a
/// connection the server is closing.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// One request to the Blob service, signed again for every attempt.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The HTTP method.
    pub(crate) method: Method,
    /// The blob name (as stored, not encoded); `None` for the container.
    pub(crate) blob: Option<String>,
    /// Query parameters, decoded.
    pub(crate) query: Vec<(String, String)>,
    /// Headers, lowercase names.
    pub(crate) headers: Vec<(String, String)>,
    /// The body; a `PUT` without one sends an empty body.
    pub(crate) body: Option<Bytes>,
    /// The attempt's deadline, when not the driver's default for the body.
    pub(crate) timeout: Option<Duration>,
}

impl Call {
    /// A request to blob `name`.
    pub(crate) fn blob(method: Method, name: &str) -> Self {
        Self {
            method,
            blob: Some(name.to_string()),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// A request to the container.
    pub(crate) fn container(method: Method) -> Self {
        Self {
            method,
            blob: None,
            query: vec![("restype".into(), "container".into())],
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// Adds a query parameter.
    pub(crate) fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_string(), value.into()));
        self
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Adds a header when `value` is set.
    pub(crate) fn header_opt(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.header(name, v),
            None => self,
        }
    }

    /// Sets the body.
    pub(crate) fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }

    /// Sets the attempt's deadline.
    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// The HTTP client, endpoint and credentials of one driver.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    account_url: String,
    container: String,
    auth: Auth,
    first_byte_timeout: Duration,
}

impl Client {
    /// The client of `config` (which was checked).
    ///
    /// # Errors
    /// [`Error::Config`] without a usable credential; a backend error when
    /// the HTTP client cannot be built.
    pub(crate) fn new(config: &AzureConfig) -> Result<Self> {
        let auth = match (&config.account_key, &config.sas_token) {
            (Some(key), _) => Auth::SharedKey {
                account: config.account.clone(),
                key: AccountKey::decode(key).ok_or_else(|| {
                    let mut errs = stowage_core::config::ConfigErrors::default();
                    errs.push(crate::keys::AZURE_ACCOUNT_KEY, "is not base64");
                    Error::Config(errs)
                })?,
            },
            (None, Some(sas)) => Auth::Sas(ConfiguredSas::parse(sas)),
            (None, None) => return Err(Error::Config(config.problems())),
        };
        // reqwest is built without a TLS provider of its own: aws-lc, which
        // the AWS SDK links already, is the process's default unless the
        // embedding program chose one.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(POOL_IDLE)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::backend(DRIVER, false, "building the HTTP client", e))?;
        Ok(Self {
            http,
            account_url: config.account_url(),
            container: config.container.clone(),
            auth,
            first_byte_timeout: config.first_byte_timeout,
        })
    }

    /// How requests are authorized.
    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The container's URL.
    pub(crate) fn container_url(&self) -> String {
        format!("{}/{}", self.account_url, self.container)
    }

    /// The URL of blob `name` (no query).
    pub(crate) fn blob_url(&self, name: &str) -> String {
        format!(
            "{}/{}/{}",
            self.account_url,
            self.container,
            utf8_percent_encode(name, PATH_SET)
        )
    }

    /// Signs and sends one attempt of `call`, waiting at most `timeout`
    /// for the answer's headers. An error status is read (its code and
    /// message) into [`Failure::Status`].
    pub(crate) async fn send(
        &self,
        call: &Call,
        timeout: Duration,
    ) -> std::result::Result<reqwest::Response, Failure> {
        let base = match &call.blob {
            Some(name) => self.blob_url(name),
            None => self.container_url(),
        };
        let mut query: Vec<String> = call
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_SET)))
            .collect();
        if let Auth::Sas(sas) = &self.auth {
            query.push(sas.query().to_string());
        }
        let text = if query.is_empty() {
            base
        } else {
            format!("{base}?{}", query.join("&"))
        };
        // Never the URL itself in the message: it may carry the SAS.
        let url = reqwest::Url::parse(&text)
            .map_err(|e| Failure::Invalid(format!("the request URL does not parse ({e})")))?;
        let mut headers = call.headers.clone();
        headers.push(("x-ms-date".into(), http_date(Utc::now())));
        headers.push(("x-ms-version".into(), API_VERSION.into()));
        let body = call
            .body
            .clone()
            .or_else(|| (call.method == Method::PUT).then(Bytes::new));
        let length = body.as_ref().map_or(0, |b| b.len() as u64);
        if let Auth::SharedKey { account, key } = &self.auth {
            let text = string_to_sign(
                call.method.as_str(),
                url.path(),
                &call.query,
                &headers,
                length,
                account,
            );
            headers.push((
                "authorization".into(),
                shared_key_header(account, key, &text),
            ));
        }
        let mut request = self.http.request(call.method.clone(), url);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = body {
            // An empty body goes out without a Content-Length otherwise,
            // and Azure refuses a PUT without one (400).
            if body.is_empty() {
                request = request.header("content-length", "0");
            }
            request = request.body(body);
        }
        let response = match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => return Err(Failure::Timeout(timeout)),
            Ok(Err(e)) => return Err(Failure::Transport(e.without_url())),
            Ok(Ok(response)) => response,
        };
        if response.status().as_u16() < 300 {
            return Ok(response);
        }
        Err(Failure::Status(
            read_failure(response, self.first_byte_timeout).await,
        ))
    }
}

/// The code, message and Content-Range of an error answer.
async fn read_failure(response: reqwest::Response, timeout: Duration) -> StatusFailure {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut code = header(&headers, "x-ms-error-code");
    let content_range = header(&headers, "content-range");
    let body = match tokio::time::timeout(timeout, response.bytes()).await {
        Ok(Ok(b)) if b.len() <= MAX_ERROR_BODY => Some(b),
        _ => None,
    };
    let mut message = None;
    if let Some(doc) = body
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|t| xml::parse(t).ok())
    {
        if code.is_none() {
            code = doc
                .text_of("Code")
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty());
        }
        message = doc
            .text_of("Message")
            .and_then(|m| m.lines().next())
            .map(|m| m.trim().chars().take(300).collect::<String>())
            .filter(|m| !m.is_empty());
    }
    // The service's words about a refused signature may quote it.
    if code.as_deref().is_some_and(is_auth_code) {
        message = None;
    }
    StatusFailure {
        status,
        code,
        message,
        content_range,
    }
}

/// An HTTP date (`x-ms-date`).
pub(crate) fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// A header's value, when it is there and is text.
pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The `Content-Length` header.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    header(headers, "content-length").and_then(|v| v.trim().parse().ok())
}

/// An HTTP date header (`Last-Modified`).
pub(crate) fn date_header(headers: &HeaderMap, name: &str) -> Option<DateTime<Utc>> {
    header(headers, name)
        .and_then(|v| DateTime::parse_from_rfc2822(v.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// An object's metadata from the headers of a Get Blob or Get Blob
/// Properties answer, with the blob's `size`.
pub(crate) fn meta_from(path: &StoragePath, headers: &HeaderMap, size: u64) -> ObjectMeta {
    ObjectMeta::new(path.clone(), size)
        .with_etag(header(headers, "etag"))
        .with_last_modified(date_header(headers, "last-modified"))
        .with_content_type(header(headers, "content-type"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_urls() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(http_date(at), "Sun, 06 Dec 2026 20:00:00 GMT");
        let config = AzureConfig::new("devstoreaccount1", "test1")
            .with_account_key(stowage_core::config::Secret::new("a2V5"))
            .with_endpoint("http://127.0.0.1:10000/devstoreaccount1");
        let client = Client::new(&config).unwrap();
        assert_eq!(
            client.blob_url("r/a b+c/ü~x.y"),
            "http://127.0.0.1:10000/devstoreaccount1/test1/r/a%20b%2Bc/%C3%BC~x.y"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "last-modified",
            "Sun, 06 Dec 2026 20:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(date_header(&headers, "last-modified"), Some(at));
    }
}
