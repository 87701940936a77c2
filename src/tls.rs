//! TLS material: loading a node's certificate, key and cluster CA into rustls
//! configurations, and generating a CA plus per-node certificates (`raftsafe certs`).
//!
//! Invariants:
//! - One crypto provider in the process (ring), installed before any config is built.
//! - The client API uses server TLS; the internal listener requires a client certificate
//!   signed by the cluster CA, and the peer client presents the node's certificate and
//!   trusts only that CA — so no one without the cluster's credentials joins Raft traffic.
//! - Private keys are written owner-only.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {message}")]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("generating certificates: {0}")]
    Generate(String),
}

/// Installs the one TLS crypto provider of the process (ring). Idempotent; every entry
/// point that builds a rustls configuration calls it first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn file_err(what: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The three files a TLS node needs.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Everything a node needs for TLS, ready to use.
pub struct Tls {
    pub api: Arc<ServerConfig>,
    pub raft: Arc<ServerConfig>,
    pub peer_client: ClientConfig,
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = fs::read(path).map_err(|e| file_err("reading certificate", path, e))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err("parsing certificate", path, e))?;
    if certs.is_empty() {
        return Err(file_err(
            "parsing certificate",
            path,
            "no PEM certificate found",
        ));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = fs::read(path).map_err(|e| file_err("reading private key", path, e))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| file_err("parsing private key", path, e))?
        .ok_or_else(|| file_err("parsing private key", path, "no PEM private key found"))
}

pub fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| file_err("using CA certificate", ca, e))?;
    }
    Ok(roots)
}

impl Tls {
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let certs = load_certs(&files.cert)?;
        let key = load_key(&files.key)?;
        let roots = Arc::new(roots(&files.ca)?);
        let cfg = |e: rustls::Error| TlsError::Config(e.to_string());

        let mut api = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(cfg)?;
        api.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let verifier = WebPkiClientVerifier::builder(roots.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut raft = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(cfg)?;
        raft.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let peer_client = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(cfg)?;
        Ok(Tls {
            api: Arc::new(api),
            raft: Arc::new(raft),
            peer_client,
        })
    }
}

/// One node to issue a certificate for: its id and the DNS names / IP addresses it is
/// reached at.
pub struct NodeCert {
    pub id: String,
    pub names: Vec<String>,
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| file_err("creating", path, e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| file_err("writing", path, e))
}

/// Writes `ca.pem`, `ca.key` and `node-<id>.pem`/`node-<id>.key` for each node into `out`.
/// Node certificates are valid for server and client authentication.
pub fn generate(out: &Path, nodes: &[NodeCert]) -> Result<(), TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
    fs::create_dir_all(out).map_err(|e| file_err("creating directory", out, e))?;

    let ca_key = KeyPair::generate().map_err(gen)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "raftsafe cluster CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(gen)?;
    fs::write(out.join("ca.pem"), ca_cert.pem())
        .map_err(|e| file_err("writing", &out.join("ca.pem"), e))?;
    write_private(&out.join("ca.key"), &ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca_params, ca_key);

    for node in nodes {
        let key = KeyPair::generate().map_err(gen)?;
        let mut params = CertificateParams::new(node.names.clone()).map_err(gen)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("raftsafe node {}", node.id));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).map_err(gen)?;
        let pem_path = out.join(format!("node-{}.pem", node.id));
        fs::write(&pem_path, cert.pem()).map_err(|e| file_err("writing", &pem_path, e))?;
        write_private(
            &out.join(format!("node-{}.key", node.id)),
            &key.serialize_pem(),
        )?;
    }
    Ok(())
}
