//! Certificates for the UMS channel (mutual TLS) and the stand-in's rustls server configuration.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::super::tls::{CertKey, TestCa, Validity};

/// Everything a UMS channel test needs: the UMS CA with a server certificate for `localhost`
/// and `127.0.0.1` and a client certificate for the device, plus a foreign CA with the same two
/// kinds of certificate (which the stand-in, or the device, must refuse).
///
/// The files live in the CAs' temp dirs, so keep the `UmsPki` alive as long as they are used.
pub struct UmsPki {
    /// The UMS CA: the device's `[ums] ca_certificate`, and the CA client certificates must
    /// chain to for [`UmsStandIn::start`](super::UmsStandIn::start).
    pub ca: TestCa,
    /// Server certificate for `localhost` and `127.0.0.1`, signed by `ca`.
    pub server: CertKey,
    /// The device's client certificate (CN `test-device`), signed by `ca`.
    pub device: CertKey,
    /// A CA that nobody trusts; kept because its files live in its temp dir.
    _foreign_ca: TestCa,
    /// Server certificate for `localhost` and `127.0.0.1`, signed by `foreign_ca`.
    pub foreign_server: CertKey,
    /// A client certificate (CN `test-device`) signed by `foreign_ca`.
    pub foreign_device: CertKey,
}

impl UmsPki {
    pub fn new() -> UmsPki {
        let ca = TestCa::new("UMS test root CA");
        let server = ca.server_cert(&["localhost", "127.0.0.1"], Validity::CURRENT);
        let device = ca.client_cert("test-device");
        let foreign_ca = TestCa::new("foreign test root CA");
        let foreign_server = foreign_ca.server_cert(&["localhost", "127.0.0.1"], Validity::CURRENT);
        let foreign_device = foreign_ca.client_cert("test-device");
        UmsPki {
            ca,
            server,
            device,
            _foreign_ca: foreign_ca,
            foreign_server,
            foreign_device,
        }
    }
}

impl Default for UmsPki {
    fn default() -> Self {
        UmsPki::new()
    }
}

/// Certificates in a PEM text (a chain, or a CA bundle).
pub fn certs_from_pem(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|err| panic!("bad certificate PEM: {err}"))
}

/// The private key in a PEM text.
pub fn key_from_pem(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .unwrap_or_else(|err| panic!("bad private key PEM: {err}"))
}

/// TLS 1.2 and 1.3 with the ring provider, presenting `server`, and requiring a client
/// certificate that chains to `client_ca_pem` (`WebPkiClientVerifier`, not optional).
pub fn server_config(server: &CertKey, client_ca_pem: &str) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(client_ca_pem) {
        roots
            .add(cert)
            .unwrap_or_else(|err| panic!("the client CA is unusable: {err}"));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap_or_else(|err| panic!("cannot build the client certificate verifier: {err}"));
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs_from_pem(&server.cert_pem),
            key_from_pem(&server.key_pem),
        )
        .unwrap_or_else(|err| panic!("the stand-in's server certificate is unusable: {err}"));
    Arc::new(config)
}
