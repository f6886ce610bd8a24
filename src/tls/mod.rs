//! `tls`: everything TLS of the agent in one place: the crypto provider ([`provider`]), the PEM
//! files TLS is configured with ([`files`]), the UMS channel's client configuration
//! ([`client`]), the verifier that accepts any certificate ([`insecure`], for the `check`
//! probe and `[ums] allow_insecure`), the handshake `check` uses to read a server's
//! certificate ([`probe`]), and a certificate's validity dates ([`mod@validity`]).
//!
//! The repository client (`crate::repository`) builds its reqwest clients with the provider
//! and CA files from here; the UMS channel (`crate::ums`) connects with [`client`]'s
//! configuration; `check` reports what [`probe`] and [`validity()`] read. This module never
//! sends application data and never decides on its own to trust a certificate: trust comes
//! from the configured CA files, or from the configuration asking for `allow_insecure`.

pub mod client;
pub mod files;
pub mod insecure;
pub mod probe;
pub mod provider;
pub mod validity;

pub use client::ums_client_config;
pub use files::read_certificates;
pub use probe::peer_certificate;
pub use validity::{Validity, validity};
