//! `tls::provider`: the one crypto provider of the agent, ring, for every TLS connection it
//! makes (reqwest for the repositories and IDF URLs, tokio-rustls for the UMS channel and the
//! `check` probe), and the protocol versions they allow (rustls's safe defaults: TLS 1.2 and
//! 1.3).
//!
//! It must never choose what a connection trusts (that is [`super::client`], [`super::insecure`]
//! and the repository client's CA files) and never open a connection.

use std::sync::{Arc, Once};

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;

static INSTALLED: Once = Once::new();

/// The crypto provider, for a configuration built by hand.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs the provider as the process default, which reqwest (built without a provider of its
/// own) uses. Idempotent.
pub fn install_default() {
    INSTALLED.call_once(|| {
        // Fails only if another provider was installed first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client configuration on [`provider`] with the safe default protocol versions, still to be
/// told what it trusts.
pub fn client_config_builder()
-> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, String> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))
}
