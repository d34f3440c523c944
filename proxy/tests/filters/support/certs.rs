//! Certificates for TLS tests, generated with rcgen: a CA, a server certificate (SAN
//! `localhost` and `127.0.0.1`) and a client certificate (URI SAN `spiffe://weir.test/client`),
//! written as PEM files into a directory, plus ready-made rustls configurations.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const CLIENT_SPIFFE_ID: &str = "spiffe://weir.test/client";

pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    ca_der: CertificateDer<'static>,
    server_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
    client_der: CertificateDer<'static>,
    client_key_der: Vec<u8>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Certs {
    /// Generates the CA, server and client certificates and writes them into `dir`.
    pub fn generate(dir: &Path) -> Certs {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "weir test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");

        let server_key = KeyPair::generate().expect("server key");
        let mut sp = CertificateParams::new(Vec::<String>::new()).expect("server params");
        sp.distinguished_name.push(DnType::CommonName, "localhost");
        sp.subject_alt_names = vec![
            SanType::DnsName("localhost".to_string().try_into().expect("ia5")),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        let server = sp
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server cert");

        let client_key = KeyPair::generate().expect("client key");
        let mut cp = CertificateParams::new(Vec::<String>::new()).expect("client params");
        cp.distinguished_name
            .push(DnType::CommonName, "weir test client");
        cp.subject_alt_names = vec![SanType::URI(
            CLIENT_SPIFFE_ID.to_string().try_into().expect("ia5"),
        )];
        let client = cp
            .signed_by(&client_key, &ca, &ca_key)
            .expect("client cert");

        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write pem");
            p
        };
        Certs {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server-key.pem", server_key.serialize_pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
            ca_der: ca.der().clone(),
            server_der: server.der().clone(),
            server_key_der: server_key.serialize_der(),
            client_der: client.der().clone(),
            client_key_der: client_key.serialize_der(),
        }
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add ca");
        Arc::new(roots)
    }

    /// Server side (the test upstreams): ALPN `alpn`, client certificates required when
    /// `require_client_cert`.
    pub fn server_config(&self, alpn: &[&str], require_client_cert: bool) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_cert {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                self.roots(),
                provider(),
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut cfg = builder
            .with_single_cert(vec![self.server_der.clone()], key)
            .expect("server cert");
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(cfg)
    }

    /// Client side (the test clients): trusts the CA, offers ALPN `alpn`, presents the client
    /// certificate when `with_client_cert`.
    pub fn client_config(&self, alpn: &[&str], with_client_cert: bool) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(self.roots());
        let mut cfg = if with_client_cert {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.client_key_der.clone()));
            builder
                .with_client_auth_cert(vec![self.client_der.clone()], key)
                .expect("client cert")
        } else {
            builder.with_no_client_auth()
        };
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(cfg)
    }
}
