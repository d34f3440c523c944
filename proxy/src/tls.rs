//! rustls configuration from PEM files: the listener side (with optional client-certificate
//! verification = mTLS) and the upstream side (CA, optional client certificate).

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCert { path: String },
    #[error("{path}: no PEM private key found")]
    NoKey { path: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    Verifier(String),
    #[error(
        "no `ca` given and no system CA bundle found (SSL_CERT_FILE, {}): set the cluster's `tls.ca`",
        SYSTEM_CA_BUNDLES.join(", ")
    )]
    NoSystemRoots,
}

/// Where the system's CA bundle usually is (Debian/Ubuntu/Alpine, Fedora/RHEL, BSD/macOS).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let p = path.display().to_string();
    let data = std::fs::read(path).map_err(|e| TlsError::Read {
        path: p.clone(),
        source: e,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCert { path: p });
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let p = path.display().to_string();
    let data = std::fs::read(path).map_err(|e| TlsError::Read {
        path: p.clone(),
        source: e,
    })?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .ok()
        .flatten()
        .ok_or(TlsError::NoKey { path: p })
}

fn root_store(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// The system's trust store, for upstream TLS without a `ca`: the bundle named by
/// `SSL_CERT_FILE`, else the first of [`SYSTEM_CA_BUNDLES`] that exists (certificates the
/// verifier cannot parse are skipped, as other TLS clients do).
fn system_roots() -> Result<rustls::RootCertStore, TlsError> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let path = from_env
        .into_iter()
        .chain(SYSTEM_CA_BUNDLES.iter().map(std::path::PathBuf::from))
        .find(|p| p.is_file())
        .ok_or(TlsError::NoSystemRoots)?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(load_certs(&path)?);
    if added == 0 {
        return Err(TlsError::NoCert {
            path: path.display().to_string(),
        });
    }
    Ok(roots)
}

/// Listener TLS: ALPN `h2` and `http/1.1`; with `client_ca`, a client certificate is required.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(root_store(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(load_certs(cert)?, load_key(key)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Upstream TLS: trust `ca` (the system's trust store without it), present `cert`/`key` when
/// given, offer ALPN h2 only for HTTP/2 clusters.
pub fn client_config(
    ca: Option<&Path>,
    cert_key: Option<(&Path, &Path)>,
    http2: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = match ca {
        Some(ca) => root_store(ca)?,
        None => system_roots()?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut cfg = match cert_key {
        Some((c, k)) => builder.with_client_auth_cert(load_certs(c)?, load_key(k)?)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(cfg))
}

/// What a verified peer certificate says about the peer (for `connection.*` properties and the
/// access log's principal).
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity {
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    pub subject: Option<String>,
}

/// Reads SANs and subject of a DER certificate; an unparsable certificate yields nothing.
pub fn peer_identity(cert: &CertificateDer<'_>) -> PeerIdentity {
    use x509_parser::extensions::GeneralName;
    let Ok((_, x)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return PeerIdentity::default();
    };
    let mut id = PeerIdentity {
        subject: Some(x.subject().to_string()),
        ..Default::default()
    };
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::URI(u) => id.uri_sans.push(u.to_string()),
                GeneralName::DNSName(d) => id.dns_sans.push(d.to_string()),
                _ => {}
            }
        }
    }
    id
}
