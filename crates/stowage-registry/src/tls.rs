//! HTTPS: a certificate chain and its private key from PEM files, served
//! with rustls on the aws-lc-rs provider (the crypto library the AWS SDK
//! already links; no second one). TLS 1.2 and 1.3, HTTP/1.1 by ALPN. The
//! files are watched: a renewed certificate is served without a restart,
//! and a pair that cannot be used leaves the previous one in service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::server::FileVersion;

/// A server certificate and key, ready to serve, and the files they come
/// from. Clones share one certificate: [`TlsConfig::reload_if_changed`]
/// on any of them changes what every clone serves.
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Inner>,
}

/// The files, the configuration served now, and the versions of the files
/// last read (or tried).
struct Inner {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<rustls::ServerConfig>>,
    seen: Mutex<(Option<FileVersion>, Option<FileVersion>)>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert", &self.inner.cert)
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

/// A certificate or key file that cannot be used; names the file (never
/// the key's bytes).
#[derive(Debug)]
pub struct TlsError {
    file: PathBuf,
    message: String,
}

impl TlsError {
    fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }

    /// The file at fault.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for TlsError {}

/// Reads `cert` and `key` into a server configuration.
fn load(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| TlsError::new(cert, format!("cannot read the certificate file: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::new(cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new(
            cert,
            "no certificate found (expected PEM blocks \"BEGIN CERTIFICATE\")",
        ));
    }
    let key_pem = std::fs::read(key)
        .map_err(|e| TlsError::new(key, format!("cannot read the key file: {e}")))?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        TlsError::new(
            key,
            format!("no private key found (expected a PEM PKCS#8, RSA or EC private key): {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new(cert, format!("TLS set-up failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| {
            TlsError::new(
                key,
                format!(
                    "the key cannot serve the certificate in {}: {e}",
                    cert.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl TlsConfig {
    /// The certificate chain in `cert` (PEM, the server's certificate
    /// first, then intermediates) and its private key in `key` (PEM:
    /// PKCS#8, PKCS#1 RSA or SEC1 EC).
    ///
    /// # Errors
    /// A file that cannot be read, holds no certificate or key, or a key
    /// that does not belong to the certificate; the error names the file.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let seen = (FileVersion::of(cert), FileVersion::of(key));
        let config = load(cert, key)?;
        Ok(Self {
            inner: Arc::new(Inner {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                current: RwLock::new(Arc::new(config)),
                seen: Mutex::new(seen),
            }),
        })
    }

    /// Reads the certificate and key again when either file changed since
    /// they were last read (modification time, size, or a new file in its
    /// place), and serves them from the next handshake on; `true` when a
    /// new pair is served. A pair that cannot be used (a file missing or
    /// half written, a key that does not fit the certificate) is logged at
    /// warn level, naming the file, and the pair served stays; it is tried
    /// again when a file changes again. Reads files: call it off the async
    /// threads (`stowage serve` checks every 5 s on the blocking pool).
    pub fn reload_if_changed(&self) -> bool {
        let versions = (
            FileVersion::of(&self.inner.cert),
            FileVersion::of(&self.inner.key),
        );
        {
            let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == versions {
                return false;
            }
            *seen = versions;
        }
        match load(&self.inner.cert, &self.inner.key) {
            Ok(config) => {
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                tracing::info!(
                    cert = %self.inner.cert.display(),
                    key = %self.inner.key.display(),
                    "TLS certificate and key read again: serving them from the next handshake"
                );
                true
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "TLS certificate or key changed but cannot be used: still serving the previous pair"
                );
                false
            }
        }
    }

    /// The acceptor that runs handshakes on accepted connections, with the
    /// certificate served now.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let current = self
            .inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = TlsConfig::from_pem_files(&missing, &junk).unwrap_err();
        assert_eq!(err.file(), missing.as_path());
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = TlsConfig::from_pem_files(&junk, &missing).unwrap_err();
        assert_eq!(err.file(), junk.as_path());
        assert!(err.to_string().contains("no certificate"), "{err}");
    }
}
