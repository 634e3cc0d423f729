//! Optional https for the test server: a private CA made at run time (never written anywhere
//! but where a test puts it), a server certificate signed by it, and the rustls acceptor.

use std::fmt;
use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Serve https with this certificate (see [`crate::ServerConfig::tls`]).
#[derive(Clone)]
pub struct TlsConfig {
    /// Server certificate chain, leaf first, PEM.
    pub cert_chain_pem: String,
    /// The server certificate's private key, PEM.
    pub key_pem: String,
    /// The CA certificate that signed the chain, PEM, for clients to trust (set by
    /// [`TlsConfig::generate`]; what [`crate::TestServer::ca_pem`] returns).
    pub ca_pem: Option<String>,
}

/// The key stays out of debug output.
impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"<redacted>")
            .field("ca_pem", &self.ca_pem)
            .finish()
    }
}

fn gen_err(what: &str, e: rcgen::Error) -> io::Error {
    io::Error::other(format!("generating the {what}: {e}"))
}

impl TlsConfig {
    /// A new private CA ("bucketfs test CA") and a server certificate signed by it, valid for
    /// `names`: DNS names, or IP address literals (which become IP subject alt names).
    pub fn generate(names: &[&str]) -> io::Result<TlsConfig> {
        let mut ca = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| gen_err("CA parameters", e))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "bucketfs test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(|e| gen_err("CA key", e))?;
        let ca_cert = ca
            .self_signed(&ca_key)
            .map_err(|e| gen_err("CA certificate", e))?;
        let issuer = Issuer::new(ca, ca_key);

        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut leaf = CertificateParams::new(names.clone())
            .map_err(|e| gen_err("server certificate parameters", e))?;
        leaf.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().map_err(|e| gen_err("server key", e))?;
        let leaf_cert = leaf
            .signed_by(&leaf_key, &issuer)
            .map_err(|e| gen_err("server certificate", e))?;
        Ok(TlsConfig {
            cert_chain_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            ca_pem: Some(ca_cert.pem()),
        })
    }

    /// The acceptor for this certificate (TLS 1.2 and 1.3, ring, ALPN http/1.1).
    pub(crate) fn acceptor(&self) -> io::Result<tokio_rustls::TlsAcceptor> {
        let bad = |what: &str, e: &dyn fmt::Display| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
        };
        let certs = CertificateDer::pem_slice_iter(self.cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("certificate chain PEM", &e))?;
        if certs.is_empty() {
            return Err(bad("certificate chain PEM", &"no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| bad("private key PEM", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS versions", &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad("server certificate", &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}
