//! The HTTPS client of the S3 driver (and of the STS source, which builds
//! its client from the same [`S3Config`]): rustls on aws-lc as the SDK's
//! own default client, with extra trusted CA certificates and the proxy
//! settings of the environment, and TLS handshake failures told apart from
//! connection errors.
//!
//! - Trusted roots: the system's (as the SDK's default client; OpenSSL's
//!   `SSL_CERT_FILE` and `SSL_CERT_DIR` replace them), plus every
//!   certificate of `s3_ca_bundle`, of the files of a Quay config bundle's
//!   `extra_ca_certs/` folder (and its `extra_ca*` files), and of the PEM
//!   files named by `STOWAGE_CA_BUNDLE` and `AWS_CA_BUNDLE`.
//! - Proxies: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`
//!   (either case), as the SDK's default client reads them.
//! - A handshake that fails for a reason another attempt cannot change (an
//!   untrusted CA, a name the certificate does not cover, an expired
//!   certificate, a port that does not speak TLS) becomes a [`TlsFailure`]
//!   naming the endpoint: the driver does not retry it and says what to do.

use std::error::Error as StdError;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, Connector};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use stowage_core::config::ConfigErrors;
use stowage_core::{Error, Result};

use crate::keys;
use crate::S3Config;

impl S3Config {
    /// The environment variable naming a PEM file of CA certificates the
    /// S3 and STS clients trust besides the system's.
    pub const CA_BUNDLE_ENV: &'static str = "STOWAGE_CA_BUNDLE";
    /// The AWS CLI's variable for the same; honoured too (added to the
    /// system's roots, where the AWS CLI replaces them).
    pub const AWS_CA_BUNDLE_ENV: &'static str = "AWS_CA_BUNDLE";

    /// Trusts the CA certificates of the PEM file `file` besides the
    /// system's (`s3_ca_bundle`).
    pub fn with_ca_bundle(mut self, file: impl Into<PathBuf>) -> Self {
        self.ca_bundle = Some(file.into());
        self
    }

    /// Trusts the CA certificates of each of `files` (PEM) besides the
    /// system's; a file without a usable certificate is skipped with a
    /// warning. [`S3Config::read`] adds those of the config bundle by
    /// itself ([`S3Config::quay_extra_ca_certs`]).
    pub fn with_extra_ca_certs(mut self, files: impl IntoIterator<Item = PathBuf>) -> Self {
        for file in files {
            if !self.extra_ca_certs.contains(&file) {
                self.extra_ca_certs.push(file);
            }
        }
        self
    }

    /// The extra CA certificate files of the Quay config bundle in
    /// `bundle_dir` (the directory holding `config.yaml`), as Quay installs
    /// them: every file of its `extra_ca_certs/` folder, and every file of
    /// the bundle whose name starts with `extra_ca` (a single
    /// `extra_ca_certs` file, or the operator's `extra_ca_cert_*` files).
    /// Symbolic links are followed (Kubernetes mounts secrets that way);
    /// sorted, each once.
    pub fn quay_extra_ca_certs(bundle_dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let folder = bundle_dir.join("extra_ca_certs");
        if folder.is_dir() {
            for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
                let path = entry.path();
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if !hidden && path.is_file() {
                    files.push(path);
                }
            }
        }
        for entry in std::fs::read_dir(bundle_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with("extra_ca") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        files.dedup();
        files
    }

    /// The HTTPS client the driver uses when the embedder gives none:
    /// rustls on aws-lc (the SDK's default), trusting the system's roots
    /// plus [`S3Config::ca_bundle`], [`S3Config::extra_ca_certs`] and the
    /// files named by `STOWAGE_CA_BUNDLE` and `AWS_CA_BUNDLE`, with the
    /// proxy settings of the environment (`HTTPS_PROXY`, `HTTP_PROXY`,
    /// `NO_PROXY`), and TLS handshake failures reported as [`TlsFailure`]s.
    /// The STS source calls its STS endpoint through the same client.
    ///
    /// # Errors
    /// [`Error::Config`] when `s3_ca_bundle` or one of the variables names
    /// a file that cannot be read or holds no usable CA certificate.
    pub fn https_client(&self) -> Result<SharedHttpClient> {
        self.https_client_with_env(&|name| std::env::var_os(name))
    }

    /// [`S3Config::https_client`] with the environment looked up in `env`.
    pub(crate) fn https_client_with_env(
        &self,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<SharedHttpClient> {
        let roots = extra_roots(self, env).map_err(Error::Config)?;
        let mut store = TrustStore::default();
        for pem in roots.pems {
            store = store.with_pem_certificate(pem);
        }
        let context = TlsContext::builder()
            .with_trust_store(store)
            .build()
            .map_err(|e| {
                let mut errs = ConfigErrors::default();
                errs.push(
                    keys::S3_CA_BUNDLE,
                    format!("the TLS settings are refused: {e}"),
                );
                Error::Config(errs)
            })?;
        if roots.certificates > 0 {
            tracing::info!(
                certificates = roots.certificates,
                from = %roots.sources.join(", "),
                "S3 and STS requests trust extra CA certificates besides the system's"
            );
        }
        Ok(naming_tls_failures(rustls_client(context)))
    }
}

/// The SDK's default HTTPS client (rustls on aws-lc, the proxy settings of
/// the environment) with `context`'s trusted roots.
fn rustls_client(context: TlsContext) -> SharedHttpClient {
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = Connector::builder().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.tls_context(context.clone()).build()
    })
}

/// The extra CA certificates to trust, as PEM, with where they come from.
#[derive(Debug, Default)]
struct ExtraRoots {
    pems: Vec<Vec<u8>>,
    sources: Vec<String>,
    certificates: usize,
}

/// Reads `s3_ca_bundle`, the config bundle's extra certificates and the
/// files named by the environment. The setting and the variables must
/// name usable files (a problem each); a config bundle file that is not
/// usable is skipped with a warning, as Quay's own installer ignores it.
fn extra_roots(
    config: &S3Config,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> std::result::Result<ExtraRoots, ConfigErrors> {
    let mut roots = ExtraRoots::default();
    let mut errs = ConfigErrors::default();
    let mut required: Vec<(String, PathBuf)> = Vec::new();
    if let Some(file) = &config.ca_bundle {
        required.push((keys::S3_CA_BUNDLE.to_string(), file.clone()));
    }
    for var in [S3Config::CA_BUNDLE_ENV, S3Config::AWS_CA_BUNDLE_ENV] {
        if let Some(value) = env(var).filter(|v| !v.is_empty()) {
            required.push((var.to_string(), PathBuf::from(value)));
        }
    }
    for (what, file) in required {
        match read_bundle(&file) {
            Ok((pem, n)) => roots.add(pem, n, &file),
            Err(why) => errs.push(what, why),
        }
    }
    for file in &config.extra_ca_certs {
        match read_bundle(file) {
            Ok((pem, n)) => roots.add(pem, n, file),
            Err(why) => tracing::warn!(
                "extra CA certificate file skipped: {why} (S3 and STS endpoints signed by \
                 this CA are not trusted)"
            ),
        }
    }
    if errs.is_empty() {
        Ok(roots)
    } else {
        Err(errs)
    }
}

impl ExtraRoots {
    fn add(&mut self, pem: Vec<u8>, certificates: usize, file: &Path) {
        self.pems.push(pem);
        self.certificates += certificates;
        self.sources.push(file.display().to_string());
    }
}

/// Reads the PEM file `file` and checks every certificate in it can be a
/// trust anchor: its bytes and the number of certificates, or why not
/// (naming the file).
pub(crate) fn read_bundle(file: &Path) -> std::result::Result<(Vec<u8>, usize), String> {
    let shown = file.display();
    let bytes = std::fs::read(file)
        .map_err(|e| format!("CA certificate file {shown} cannot be read: {e}"))?;
    let n = check_bundle(&bytes).map_err(|why| format!("CA certificate file {shown} {why}"))?;
    Ok((bytes, n))
}

/// How many certificates the PEM text `pem` holds, each usable as a trust
/// anchor; why not otherwise. Other PEM blocks (keys) are ignored.
fn check_bundle(pem: &[u8]) -> std::result::Result<usize, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("is not valid PEM: {e}"))?;
    if certificates.is_empty() {
        return Err(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----); a DER file \
                    converts with openssl x509 -inform der -in FILE -out FILE.pem"
                .into(),
        );
    }
    let n = certificates.len();
    let mut store = rustls::RootCertStore::empty();
    for (i, certificate) in certificates.into_iter().enumerate() {
        store.add(certificate).map_err(|e| {
            format!(
                "has a certificate ({} of {n}) that cannot be trusted: {e}",
                i + 1
            )
        })?;
    }
    Ok(n)
}

/// What about a TLS handshake another attempt cannot change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    /// The certificate chains to a CA that is not trusted.
    UntrustedCa,
    /// The certificate does not cover the endpoint's name.
    WrongName,
    /// The certificate has expired or is not valid yet.
    NotValidNow,
    /// Another certificate problem.
    Certificate,
    /// The port does not speak TLS (an `http://` server).
    NotTls,
    /// The server refused the handshake (no common protocol, a client
    /// certificate required, ...).
    Refused,
}

/// A TLS handshake with an endpoint that failed for a reason another
/// attempt cannot change: the endpoint's certificate is signed by a CA that
/// is not trusted, does not cover the endpoint's name, has expired, or the
/// endpoint does not speak TLS. Requests that meet one are not retried;
/// its message names the endpoint and what to do. Found in an error's
/// source chain with [`stowage_core::find_in_chain`].
#[derive(Debug)]
pub struct TlsFailure {
    endpoint: String,
    problem: Problem,
    detail: String,
    source: BoxError,
}

impl TlsFailure {
    /// The endpoint (`https://host[:port]`) whose handshake failed.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether the endpoint's certificate is signed by a CA that is not
    /// trusted (the fix is trusting that CA).
    pub fn is_untrusted_ca(&self) -> bool {
        self.problem == Problem::UntrustedCa
    }

    /// The TLS failure in `err`: a [`TlsFailure`] in its chain, or a
    /// handshake failure of a client that does not name them (an
    /// embedder's), then with the endpoint unknown.
    pub(crate) fn of(err: &(dyn StdError + 'static)) -> Option<String> {
        if let Some(named) = stowage_core::find_in_chain::<TlsFailure>(err) {
            return Some(named.to_string());
        }
        classify(err).map(|(problem, detail)| describe(&"the endpoint", problem, &detail))
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(&self.endpoint, self.problem, &self.detail))
    }
}

impl StdError for TlsFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.source.as_ref())
    }
}

/// What an operator reads: the endpoint, what is wrong, what to do.
fn describe(endpoint: &dyn fmt::Display, problem: Problem, detail: &str) -> String {
    match problem {
        Problem::UntrustedCa => format!(
            "the TLS certificate of {endpoint} is signed by a CA that is not trusted \
             ({detail}); trust that CA with s3_ca_bundle, the config bundle's \
             extra_ca_certs/ folder or STOWAGE_CA_BUNDLE (a PEM file)"
        ),
        Problem::WrongName => format!(
            "the TLS certificate of {endpoint} does not cover that name ({detail}); use a \
             name the certificate was issued for in the endpoint"
        ),
        Problem::NotValidNow => format!(
            "the TLS certificate of {endpoint} has expired or is not valid yet ({detail}); \
             renew it, or check this host's clock"
        ),
        Problem::Certificate => {
            format!("the TLS certificate of {endpoint} is refused ({detail})")
        }
        Problem::NotTls => {
            format!("{endpoint} does not answer TLS ({detail}); is it an http:// endpoint?")
        }
        Problem::Refused => format!("{endpoint} refused the TLS handshake ({detail})"),
    }
}

/// Iterates over `error` and each error after it: after an `io::Error` its
/// payload (`io::Error::source` skips the payload, and the TLS stack nests
/// rustls's error two `io::Error`s deep), after any other error its source.
fn error_chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&error| {
        match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => error.source(),
        }
    })
}

/// The handshake problem another attempt cannot change in `err`'s chain,
/// with rustls's words for it.
fn classify(err: &(dyn StdError + 'static)) -> Option<(Problem, String)> {
    error_chain(err)
        .filter_map(|e| e.downcast_ref::<rustls::Error>())
        .find_map(|e| problem_of(e).map(|p| (p, e.to_string())))
}

/// Which rustls errors are lasting: those of certificates and of the
/// handshake itself. Damaged records (a decrypt error, a bad MAC) may be
/// the network's, and stay connection errors that are retried.
fn problem_of(err: &rustls::Error) -> Option<Problem> {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    Some(match err {
        E::InvalidCertificate(Cert::UnknownIssuer) => Problem::UntrustedCa,
        E::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            Problem::WrongName
        }
        E::InvalidCertificate(
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. },
        ) => Problem::NotValidNow,
        E::InvalidCertificate(_)
        | E::NoCertificatesPresented
        | E::UnsupportedNameType
        | E::InvalidCertRevocationList(_) => Problem::Certificate,
        E::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
            | rustls::InvalidMessage::UnknownProtocolVersion,
        ) => Problem::NotTls,
        E::PeerIncompatible(_)
        | E::AlertReceived(
            Alert::HandshakeFailure
            | Alert::ProtocolVersion
            | Alert::InsufficientSecurity
            | Alert::UnknownCA
            | Alert::BadCertificate
            | Alert::CertificateRequired
            | Alert::UnrecognisedName
            | Alert::NoApplicationProtocol
            | Alert::AccessDenied,
        ) => Problem::Refused,
        _ => return None,
    })
}

/// `https://host[:port]` of a request URI (no path or query).
fn origin_of(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(url) => {
            let host = url.host_str().unwrap_or_default();
            match url.port() {
                Some(port) => format!("{}://{host}:{port}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            }
        }
        Err(_) => uri.split(['?', '#']).next().unwrap_or_default().to_string(),
    }
}

/// `http` with lasting TLS handshake failures turned into [`TlsFailure`]s
/// naming the request's endpoint, as connector errors no retry classifier
/// retries (the SDK's, for STS, included). Anything else passes unchanged.
pub(crate) fn naming_tls_failures(http: SharedHttpClient) -> SharedHttpClient {
    SharedHttpClient::new(NamingClient { inner: http })
}

#[derive(Debug)]
struct NamingClient {
    inner: SharedHttpClient,
}

impl HttpClient for NamingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(NamingConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        self.inner
            .validate_base_client_config(runtime_components, cfg)
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        self.inner.validate_final_config(runtime_components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct NamingConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for NamingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let endpoint = origin_of(request.uri());
        let answer = self.inner.call(request);
        HttpConnectorFuture::new(
            async move { answer.await.map_err(|err| name_failure(err, endpoint)) },
        )
    }
}

/// `err` as a [`TlsFailure`] of `endpoint` when it is a lasting handshake
/// failure; unchanged otherwise.
fn name_failure(err: ConnectorError, endpoint: String) -> ConnectorError {
    if err.is_timeout() || err.is_user() {
        return err;
    }
    match classify(&err) {
        Some((problem, detail)) => ConnectorError::other(
            Box::new(TlsFailure {
                endpoint,
                problem,
                detail,
                source: Box::new(err),
            }),
            None,
        ),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;

    /// A throwaway self-signed CA (P-256) for these tests only.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBpjCCAUugAwIBAgIUVYWY/yKl8REnm4F7GXIf0yAFoW0wCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUc3Rvd2FnZSB1bml0IHRlc3QgQ0EwIBcNMjYxMjA2MjEwNzE4
WhgPMjEyNjExMTIyMTA3MThaMB8xHTAbBgNVBAMMFHN0b3dhZ2UgdW5pdCB0ZXN0
IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOjKme1ZziXxJXXfedqmEHyld
yv8JPote99qpi6BeQ3IdQPTh7lfVrP50f2+ZyvtFLP07St+ngakh1PYeGhqCe6Nj
MGEwHQYDVR0OBBYEFBsgc/S1Eaej82Wh8uu/dLrKk0aOMB8GA1UdIwQYMBaAFBsg
c/S1Eaej82Wh8uu/dLrKk0aOMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQD
AgEGMAoGCCqGSM49BAMCA0kAMEYCIQCAhp4Qj842L6NkG38NE1nxs+rmo11xbJ9U
EMoV0l+6ZQIhAPfncKVq+ZcQ7+S/lv3sQ6tJNU9/QeaCq7fJVt7mA/FN
-----END CERTIFICATE-----
";

    /// A fresh directory under the system's temporary directory.
    fn scratch(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "stowage-s3-tls-{label}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// How hyper-rustls hands over a certificate rejection: rustls's error
    /// inside an `InvalidData` I/O error inside another I/O error.
    fn rejection(cert: CertificateError) -> ConnectorError {
        ConnectorError::io(Box::new(std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(cert),
        ))))
    }

    #[test]
    fn an_untrusted_ca_is_named_with_the_endpoint_and_not_retried() {
        let named = name_failure(
            rejection(CertificateError::UnknownIssuer),
            origin_of("https://rgw.example.net:8443/bucket/key?uploads"),
        );
        assert!(!named.is_io(), "no longer a connection error");
        assert_eq!(named.as_other(), None, "no retry classifier retries it");
        let failure = stowage_core::find_in_chain::<TlsFailure>(&named).expect("a TlsFailure");
        assert!(failure.is_untrusted_ca());
        assert_eq!(failure.endpoint(), "https://rgw.example.net:8443");
        let text = failure.to_string();
        assert!(
            text.contains("https://rgw.example.net:8443")
                && text.contains("not trusted")
                && text.contains("s3_ca_bundle")
                && !text.contains("uploads"),
            "{text}"
        );
        assert_eq!(TlsFailure::of(&named), Some(text));
    }

    #[test]
    fn lasting_handshake_failures_are_told_apart_and_others_pass() {
        let expired = name_failure(rejection(CertificateError::Expired), "https://h".into());
        assert!(TlsFailure::of(&expired).unwrap().contains("expired"));
        let name = name_failure(
            rejection(CertificateError::NotValidForName),
            "https://h".into(),
        );
        assert!(TlsFailure::of(&name).unwrap().contains("does not cover"));
        let plain = ConnectorError::io(Box::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        )));
        let plain = name_failure(plain, "https://127.0.0.1:7480".into());
        assert!(TlsFailure::of(&plain)
            .unwrap()
            .contains("does not answer TLS"));
        // A damaged record may be the network's: still a connection error.
        let damaged = ConnectorError::io(Box::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::DecryptError,
        )));
        let damaged = name_failure(damaged, "https://h".into());
        assert!(damaged.is_io() && TlsFailure::of(&damaged).is_none());
        let reset = ConnectorError::io(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )));
        assert!(name_failure(reset, "https://h".into()).is_io());
        // Without the naming layer (an embedder's client) it is still found.
        let raw = rejection(CertificateError::UnknownIssuer);
        assert!(TlsFailure::of(&raw).unwrap().contains("the endpoint"));
    }

    #[test]
    fn bundles_need_usable_certificates_and_name_the_file() {
        let dir = scratch("bundles");
        let good = dir.join("ca.pem");
        std::fs::write(&good, format!("# a comment\n{TEST_CA}{TEST_CA}")).unwrap();
        assert_eq!(read_bundle(&good).unwrap().1, 2);
        let key_only = dir.join("key.pem");
        std::fs::write(
            &key_only,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = read_bundle(&key_only).unwrap_err();
        assert!(
            e.contains("key.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let broken = dir.join("broken.pem");
        std::fs::write(&broken, TEST_CA.replace("MIIBpjCC", "MIIBpjCD")).unwrap();
        let e = read_bundle(&broken).unwrap_err();
        assert!(e.contains("broken.pem"), "{e}");
        let e = read_bundle(&dir.join("missing.pem")).unwrap_err();
        assert!(
            e.contains("missing.pem") && e.contains("cannot be read"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn settings_and_variables_must_be_usable_bundle_files_need_not() {
        let dir = scratch("roots");
        let good = dir.join("ca.pem");
        std::fs::write(&good, TEST_CA).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();

        let config = S3Config::new("bkt")
            .with_ca_bundle(&good)
            .with_extra_ca_certs([junk.clone(), good.clone()]);
        let env_good = good.clone().into_os_string();
        let roots = extra_roots(&config, &|name| {
            (name == S3Config::AWS_CA_BUNDLE_ENV).then(|| env_good.clone())
        })
        .unwrap();
        assert_eq!(roots.certificates, 3, "setting, variable, one bundle file");
        assert!(config.https_client_with_env(&|_| None).is_ok());

        let config = S3Config::new("bkt").with_ca_bundle(&junk);
        let missing = dir.join("missing.pem").into_os_string();
        let errs = extra_roots(&config, &|name| {
            (name == S3Config::CA_BUNDLE_ENV).then(|| missing.clone())
        })
        .unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["s3_ca_bundle", "STOWAGE_CA_BUNDLE"], "{errs:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quay_bundles_give_their_extra_ca_files() {
        let bundle = scratch("bundle");
        std::fs::write(bundle.join("config.yaml"), "x: 1\n").unwrap();
        std::fs::create_dir_all(bundle.join("extra_ca_certs/..data")).unwrap();
        std::fs::write(bundle.join("extra_ca_certs/rgw.crt"), TEST_CA).unwrap();
        std::fs::write(bundle.join("extra_ca_certs/.hidden"), TEST_CA).unwrap();
        std::fs::write(bundle.join("extra_ca_cert_proxy.crt"), TEST_CA).unwrap();
        let files = S3Config::quay_extra_ca_certs(&bundle);
        assert_eq!(
            files,
            [
                bundle.join("extra_ca_cert_proxy.crt"),
                bundle.join("extra_ca_certs/rgw.crt"),
            ]
        );
        assert!(S3Config::quay_extra_ca_certs(&bundle.join("nowhere")).is_empty());
        std::fs::remove_dir_all(&bundle).unwrap();
    }

    /// A plain-HTTP server on a port the driver calls with `https://`:
    /// the handshake fails on the first attempt, with the endpoint named.
    #[tokio::test]
    async fn a_port_without_tls_fails_at_once_naming_it() {
        use bytes::Bytes;
        use std::io::{Read, Write};
        use stowage_core::{PutOptions, Storage, StoragePath};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(20) {
                let Ok(mut stream) = stream else { continue };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut hello = [0u8; 1024];
                let _ = stream.read(&mut hello);
                let _ = stream.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        let endpoint = format!("https://127.0.0.1:{port}");
        let config = S3Config::new("bkt")
            .with_endpoint(&endpoint)
            .with_static_keys("AK", stowage_core::config::Secret::new("SK"));
        let storage = crate::S3Storage::new(config).await.unwrap();
        let started = std::time::Instant::now();
        let e = storage
            .put(
                &StoragePath::parse("a/b").unwrap(),
                Bytes::from_static(b"x"),
                PutOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(!e.is_retryable(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&endpoint) && text.contains("does not answer TLS"),
            "{text}"
        );
        let retries: u64 = storage
            .metrics()
            .iter()
            .filter(|m| m.name == "stowage_s3_retries_total")
            .map(|m| m.value)
            .sum();
        assert_eq!(retries, 0);
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "one handshake, no retry"
        );
    }

    #[test]
    fn origins_drop_paths_and_queries() {
        assert_eq!(
            origin_of("https://b.s3.eu-west-1.amazonaws.com/k?x-id=PutObject"),
            "https://b.s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(origin_of("http://[::1]:9000/b"), "http://[::1]:9000");
    }
}
