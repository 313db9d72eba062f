//! TLS for the web server: a rustls `ServerConfig` (the *ring* provider) from the checked
//! `tls_server_config` of the web configuration file, and the Go names of the toolkit's cipher
//! suites and curves mapped to rustls'.
//!
//! rustls speaks TLS 1.2 and 1.3 only, with AEAD suites only: the CBC and RSA-key-exchange suites
//! a Go server can still be configured with do not exist here, and asking for them is an error
//! (`config_file`), not a silent downgrade or upgrade.

use std::path::Path;
use std::sync::Arc;

use rustls::SupportedCipherSuite;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use std::path::PathBuf;

/// A TLS file that cannot be used: the configuration field that names it, and why.
#[derive(Debug)]
pub struct TlsError {
    pub field: &'static str,
    pub problem: String,
}

fn err(field: &'static str, problem: impl Into<String>) -> TlsError {
    TlsError {
        field,
        problem: problem.into(),
    }
}

/// A protocol version, as the toolkit names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Who must present a client certificate. The toolkit's `RequestClientCert` and
/// `RequireAnyClientCert` (a certificate that nobody verifies) are not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    VerifyIfGiven,
    RequireAndVerify,
}

/// The TLS part of a checked file: paths resolved against the file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// Go names of the TLS 1.2 suites allowed; empty: rustls' defaults.
    pub cipher_suites: Vec<String>,
    /// Go names of the key exchange groups, in order; empty: rustls' defaults.
    pub curves: Vec<String>,
}

/// The toolkit's (Go's) names of the TLS 1.2 suites that rustls has. Go's names without
/// `_SHA256` for ChaCha20 are accepted too.
pub const CIPHER_SUITE_NAMES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

pub const CURVE_NAMES: &[&str] = &["X25519", "CurveP256", "CurveP384"];

pub fn cipher_suite(go_name: &str) -> Option<SupportedCipherSuite> {
    use ring::cipher_suite as s;
    Some(match go_name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => s::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => s::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            s::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => s::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => s::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            s::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

pub fn kx_group(go_name: &str) -> Option<&'static dyn SupportedKxGroup> {
    use ring::kx_group as k;
    Some(match go_name {
        "X25519" => k::X25519,
        "CurveP256" => k::SECP256R1,
        "CurveP384" => k::SECP384R1,
        _ => return None,
    })
}

fn read_certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = crate::config::read_file(path)
        .map_err(|e| err(field, format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(field, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(
            field,
            format!("{}: no PEM certificate in it", path.display()),
        ));
    }
    Ok(certs)
}

/// The provider with the file's suites and curves (all of *ring*'s when it names none).
fn provider(files: &TlsFiles) -> CryptoProvider {
    // rustls marks *ring*'s provider deprecated because it has no post-quantum key exchange
    // (X25519MLKEM768, which aws-lc-rs has). For a scrape inside a cluster that is an accepted
    // trade for a smaller binary and a build without cmake (docs/reliability.md).
    #[allow(deprecated)]
    let mut p = ring::default_provider();
    if !files.cipher_suites.is_empty() {
        let tls12: Vec<_> = files
            .cipher_suites
            .iter()
            .filter_map(|n| cipher_suite(n))
            .collect();
        // Go's cipher_suites configure TLS 1.2 only; TLS 1.3's suites stay as they are.
        p.cipher_suites
            .retain(|s| matches!(s, SupportedCipherSuite::Tls13(_)));
        p.cipher_suites.extend(tls12);
    }
    if !files.curves.is_empty() {
        p.kx_groups = files.curves.iter().filter_map(|n| kx_group(n)).collect();
    }
    p
}

/// Reads the certificate, key and client CA the file names and builds the server's TLS
/// configuration; an unreadable file, a key that does not match the certificate or a CA that
/// holds no certificate is an error naming the field.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certs("tls_server_config.cert_file", &files.cert_file)?;
    let key_bytes = crate::config::read_file(&files.key_file).map_err(|e| {
        err(
            "tls_server_config.key_file",
            format!("cannot read {}: {e}", files.key_file.display()),
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        err(
            "tls_server_config.key_file",
            format!(
                "{}: no usable PEM private key ({e})",
                files.key_file.display()
            ),
        )
    })?;
    let provider = Arc::new(provider(files));
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (files.min_version..=files.max_version).contains(v))
    .map(|(_, p)| p)
    .collect();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| err("tls_server_config", e.to_string()))?;
    let verifier = match (&files.client_ca_file, files.client_auth) {
        (Some(ca), ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs("tls_server_config.client_ca_file", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| err("tls_server_config.client_ca_file", e.to_string()))?;
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let b = if files.client_auth == ClientAuth::VerifyIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| err("tls_server_config.client_ca_file", e.to_string()))?
        }
        _ => WebPkiClientVerifier::no_client_auth(),
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            err(
                "tls_server_config.key_file",
                format!("does not fit cert_file: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_name_maps_to_rustls() {
        for name in CIPHER_SUITE_NAMES {
            assert!(cipher_suite(name).is_some(), "{name}");
        }
        for name in CURVE_NAMES {
            assert!(kx_group(name).is_some(), "{name}");
        }
        assert!(cipher_suite("TLS_RSA_WITH_AES_128_CBC_SHA").is_none());
        assert!(kx_group("CurveP521").is_none());
    }
}
