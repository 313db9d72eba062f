//! The TLS of the probes' HTTPS requests (STS, and a container endpoint given as `https://`):
//! rustls with *ring*, the provider the web server already uses, and the platform's trust store
//! (reqwest's rustls-platform-verifier). IMDS itself is plain HTTP and never uses it.
//!
//! reqwest builds a TLS configuration for every client, plain-HTTP ones included, from the
//! process's default rustls provider; [`install_provider`] installs *ring* as that default, once,
//! before the first client is built (a provider installed earlier is left as it is). Building
//! that configuration also loads and parses the platform's root certificates, for every client:
//! [`for_url`] spares a plain `http://` client (IMDS, the Pod Identity agent) that cost with a
//! configuration that trusts nothing, since it never makes a TLS connection.

use std::sync::Once;

/// Makes *ring* the process's default rustls provider (idempotent).
pub fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Deprecated in rustls only for lacking a post-quantum key exchange (web/tls.rs says why
        // the exporter accepts that).
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let _ = provider.install_default();
    });
}

/// `builder` set up for requests to `url`: an `https://` URL gets the platform's trust store;
/// any other gets a TLS configuration without roots (it is never used, and costs nothing to
/// build).
pub fn for_url(builder: reqwest::ClientBuilder, url: &reqwest::Url) -> reqwest::ClientBuilder {
    install_provider();
    if url.scheme() == "https" {
        return builder;
    }
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(config) => builder.tls_backend_preconfigured(
            config
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
        Err(_) => builder,
    }
}
