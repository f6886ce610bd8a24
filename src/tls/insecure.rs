//! `tls::insecure`: the verifier that accepts any server certificate. It serves the `check`
//! probe ([`super::probe`], which only reads a certificate's dates) and `[ums] allow_insecure`
//! (tests only; `check` warns about it).
//!
//! It still checks the handshake signatures against the presented certificate, so the server
//! must hold that certificate's key. It must never be used for a repository or an IDF URL, and
//! never without the configuration (or the probe) asking for it.

use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, WantsVerifier};

/// Accepts every server certificate, but still checks the handshake signatures against it.
/// Only for reading a certificate's dates: trust is decided by the repository's own client.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A verifier that accepts any server certificate (handshake signatures still checked with
/// `provider`'s algorithms): for reading certificates, and for `[ums] allow_insecure` in tests.
pub fn any_certificate(provider: &CryptoProvider) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    })
}

/// `builder` told to accept any server certificate, checking handshake signatures with its
/// own provider's algorithms.
pub fn accept_any(
    builder: rustls::ConfigBuilder<ClientConfig, WantsVerifier>,
) -> rustls::ConfigBuilder<ClientConfig, WantsClientCert> {
    let verifier = any_certificate(builder.crypto_provider());
    builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
}
