//! TLS for the network sinks: rustls (ring), the system's roots or a custom
//! CA, optional client certificates; certificate and host name verification
//! on by default (Vector's `tls.*` keys).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `tls.*` of a sink.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA(s) to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), for servers that require one.
    pub crt_file: Option<PathBuf>,
    /// PEM private key of `crt_file`.
    pub key_file: Option<PathBuf>,
    /// Verify the server's certificate chain. Turning it off is for tests.
    #[serde(default = "yes")]
    pub verify_certificate: bool,
    /// Verify that the certificate names the host connected to.
    #[serde(default = "yes")]
    pub verify_hostname: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            crt_file: None,
            key_file: None,
            verify_certificate: true,
            verify_hostname: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: cannot read {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("tls: {path} holds no {what}")]
    Empty { what: &'static str, path: PathBuf },
    #[error("tls: crt_file and key_file go together")]
    HalfClientAuth,
    #[error("tls: no trusted roots: {0}")]
    NoRoots(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_err = |reason: String| TlsError::Read {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

impl TlsConfig {
    /// The rustls client configuration these settings describe.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(ca) => {
                for cert in certs(ca, "CA certificates")? {
                    roots.add(cert)?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 && self.verify_certificate {
                    let errors: Vec<String> = native.errors.iter().map(|e| e.to_string()).collect();
                    return Err(TlsError::NoRoots(format!(
                        "the system has no CA certificates ({}); set tls.ca_file",
                        errors.join("; ")
                    )));
                }
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if self.verify_certificate && self.verify_hostname {
            builder.with_root_certificates(roots)
        } else {
            let inner = if self.verify_certificate {
                Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError::NoRoots(e.to_string()))?,
                )
            } else {
                None
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(RelaxedVerifier { inner, provider }))
        };
        let config = match (&self.crt_file, &self.key_file) {
            (Some(crt), Some(key)) => {
                let chain = certs(crt, "client certificates")?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
                    what: "client key",
                    path: key.clone(),
                    reason: e.to_string(),
                })?;
                builder.with_client_auth_cert(chain, key_der)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsError::HalfClientAuth),
        };
        Ok(config)
    }
}

/// A rustls server configuration (for Lumen's own endpoints, such as the
/// audit webhook): the server's certificate chain and key, and, with
/// `client_ca`, client certificates required and verified against it.
pub fn server_config(
    crt: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca, "client CA certificates")? {
                roots.add(cert)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| TlsError::NoRoots(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = certs(crt, "server certificates")?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
        what: "server key",
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let mut config = builder.with_single_cert(chain, key_der)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// `verify_certificate = false` (no chain check) or `verify_hostname =
/// false` (chain checked, name not): handshake signatures are still checked.
#[derive(Debug)]
struct RelaxedVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for RelaxedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named() {
        let c = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let e = c.client_config().unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/ca.pem") && e.contains("CA certificates"),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = TlsConfig {
            crt_file: Some(dir.path().join("c.pem")),
            verify_certificate: false,
            ..TlsConfig::default()
        };
        assert!(matches!(c.client_config(), Err(TlsError::HalfClientAuth)));
    }
}
