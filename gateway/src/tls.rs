//! TLS stage: terminates TLS 1.2/1.3 with rustls and picks the server certificate by SNI.
//!
//! Only forward-secret AEAD suites are offered (ECDHE with AES-GCM or ChaCha20-Poly1305; every
//! TLS 1.3 suite). ALPN offers `http/1.1`. Session tickets are on, so returning clients resume
//! without a full handshake.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::aws_lc_rs as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{TlsConfig, TlsVersion};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{key_path}: cannot load {file}: {reason}")]
    Load {
        /// Config key path of the certificate entry.
        key_path: String,
        /// The file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the settings.
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The suites moat offers: forward-secret AEAD only.
const SUITES: &[CipherSuite] = &[
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// How a listener asks for client certificates.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// CA bundle client certificates must chain to.
    pub ca_file: PathBuf,
    /// Refuse the handshake without a certificate (else a certificate is optional, and a
    /// connection without one falls to the next identity source).
    pub required: bool,
}

/// Builds the rustls server configuration from validated settings, without client certificates.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(cfg, None)
}

/// Builds the rustls server configuration, asking for client certificates when `client` is set.
pub fn server_config_with(
    cfg: &TlsConfig,
    client: Option<&ClientAuth>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut prov = provider::default_provider();
    prov.cipher_suites.retain(|s| SUITES.contains(&s.suite()));
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let prov = Arc::new(prov);
    let resolver = SniResolver::load(cfg, &prov)?;
    let builder =
        ServerConfig::builder_with_provider(prov.clone()).with_protocol_versions(versions)?;
    let builder = match client {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let err = |reason: String| TlsError::Load {
                key_path: "listener.client_ca".into(),
                file: c.ca_file.clone(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&c.ca_file).map_err(|e| err(e.to_string()))? {
                roots
                    .add(cert.map_err(|e| err(e.to_string()))?)
                    .map_err(|e| err(e.to_string()))?;
            }
            let v =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), prov);
            let v = if c.required {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| err(e.to_string()))?)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = provider::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// Every server name moat holds a certificate for (exact names and `*.` wildcards, lower-case),
/// as the SNI resolver matches them.
pub fn server_names(cfg: &TlsConfig) -> Vec<String> {
    let mut out = Vec::new();
    for c in &cfg.certificates {
        match &c.server_names {
            Some(n) => out.extend(n.iter().map(|n| n.to_ascii_lowercase())),
            None => {
                let leaf = CertificateDer::pem_file_iter(&c.cert_file)
                    .ok()
                    .and_then(|mut it| it.next())
                    .and_then(Result::ok);
                if let Some(names) = leaf.and_then(|l| dns_names(&l).ok()) {
                    out.extend(names.iter().map(|n| n.to_ascii_lowercase()));
                }
            }
        }
    }
    out
}

/// Whether `sni` is one of `names` (exact, or under a `*.` wildcard one label deep).
pub fn holds_name(names: &[String], sni: &str) -> bool {
    let sni = sni.to_ascii_lowercase();
    names.iter().any(|n| match n.strip_prefix("*.") {
        Some(suffix) => sni.split_once('.').is_some_and(|(_, rest)| rest == suffix),
        None => *n == sni,
    })
}

/// Chooses a certificate by SNI: exact names first, then `*.` wildcards, then the first
/// certificate as the default (clients without SNI, or with an unknown name).
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn load(cfg: &TlsConfig, prov: &rustls::crypto::CryptoProvider) -> Result<Self, TlsError> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for c in &cfg.certificates {
            let err = |file: &Path, reason: String| TlsError::Load {
                key_path: c.key_path.clone(),
                file: file.to_owned(),
                reason,
            };
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert_file)
                .map_err(|e| err(&c.cert_file, e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| err(&c.cert_file, e.to_string()))?;
            let Some(leaf) = chain.first() else {
                return Err(err(&c.cert_file, "no certificate in the file".to_owned()));
            };
            let names = match &c.server_names {
                Some(n) => n.clone(),
                None => dns_names(leaf).map_err(|e| err(&c.cert_file, e))?,
            };
            let key = PrivateKeyDer::from_pem_file(&c.key_file)
                .map_err(|e| err(&c.key_file, e.to_string()))?;
            let signer = prov
                .key_provider
                .load_private_key(key)
                .map_err(|e| err(&c.key_file, e.to_string()))?;
            let ck = CertifiedKey::new(chain, signer);
            ck.keys_match().map_err(|e| {
                err(
                    &c.key_file,
                    format!("key does not match the certificate: {e}"),
                )
            })?;
            let ck = Arc::new(ck);
            for n in names {
                let n = n.to_ascii_lowercase();
                match n.strip_prefix("*.") {
                    Some(suffix) => wildcard
                        .entry(suffix.to_owned())
                        .or_insert_with(|| ck.clone()),
                    None => exact.entry(n).or_insert_with(|| ck.clone()),
                };
            }
            default.get_or_insert(ck);
        }
        // Validation guarantees at least one certificate entry.
        let default = default.ok_or_else(|| TlsError::Load {
            key_path: "tls.certificate".to_owned(),
            file: PathBuf::new(),
            reason: "no certificate configured".to_owned(),
        })?;
        Ok(Self {
            exact,
            wildcard,
            default,
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(ck) = self.exact.get(&name) {
            return Some(ck.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(ck) = self.wildcard.get(parent) {
                return Some(ck.clone());
            }
        }
        Some(self.default.clone())
    }
}

/// The DNS subject alternative names of a certificate.
fn dns_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("invalid certificate: {e}"))?;
    let mut out = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                out.push((*d).to_owned());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::CertificateConfig;

    fn certs(dir: &Path, name: &str) -> (CertificateConfig, PathBuf) {
        let files = crate::certs::init(&dir.join(name), &[name.to_owned()]).expect("certs");
        let c = CertificateConfig {
            cert_file: files.server_cert,
            key_file: files.server_key,
            server_names: None,
            key_path: format!("tls.certificate.{name}"),
        };
        (c, files.ca_cert)
    }

    fn client(
        ca: &Path,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).expect("ca") {
            roots.add(c.expect("pem")).expect("root");
        }
        let mut c =
            rustls::ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        c
    }

    /// Handshakes over an in-memory pipe; returns the negotiated version and ALPN, or the error.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: rustls::ClientConfig,
        sni: &str,
    ) -> Result<(rustls::ProtocolVersion, Option<Vec<u8>>), String> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let srv = tokio::spawn(async move {
            let mut s = acceptor.accept(b).await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            s.write_all(b"pong").await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
        let mut c = connector
            .connect(name, a)
            .await
            .map_err(|e| e.to_string())?;
        c.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        srv.await.map_err(|e| e.to_string())??;
        let (_, conn) = c.get_ref();
        Ok((
            conn.protocol_version().ok_or("no version")?,
            conn.alpn_protocol().map(<[u8]>::to_vec),
        ))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sni_picks_the_certificate_and_alpn_prefers_h2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, ca_a) = certs(dir.path(), "a.example");
        let (b, ca_b) = certs(dir.path(), "b.example");
        let cfg = TlsConfig {
            min_version: TlsVersion::Tls12,
            certificates: vec![a, b],
        };
        let server = server_config(&cfg).expect("server config");
        let all = &[&rustls::version::TLS13, &rustls::version::TLS12];
        // Each name verifies only against its own CA, so success proves which certificate was sent.
        let (_, alpn) = handshake(server.clone(), client(&ca_a, all), "a.example")
            .await
            .expect("a");
        assert_eq!(
            alpn.as_deref(),
            Some(&b"h2"[..]),
            "h2 when the client offers it"
        );
        handshake(server.clone(), client(&ca_b, all), "b.example")
            .await
            .expect("b");
        assert!(handshake(server.clone(), client(&ca_b, all), "a.example")
            .await
            .is_err());
        // An unknown name gets the default (first) certificate, which then fails verification.
        assert!(handshake(server, client(&ca_a, all), "c.example")
            .await
            .is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn versions_follow_min_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, ca) = certs(dir.path(), "a.example");
        let tls12 = TlsConfig {
            min_version: TlsVersion::Tls12,
            certificates: vec![a.clone()],
        };
        let tls13 = TlsConfig {
            min_version: TlsVersion::Tls13,
            certificates: vec![a],
        };
        let only12 = client(&ca, &[&rustls::version::TLS12]);
        let (v, _) = handshake(
            server_config(&tls12).expect("cfg"),
            only12.clone(),
            "a.example",
        )
        .await
        .expect("1.2");
        assert_eq!(v, rustls::ProtocolVersion::TLSv1_2);
        let (v, _) = handshake(
            server_config(&tls12).expect("cfg"),
            client(&ca, &[&rustls::version::TLS13]),
            "a.example",
        )
        .await
        .expect("1.3");
        assert_eq!(v, rustls::ProtocolVersion::TLSv1_3);
        assert!(
            handshake(server_config(&tls13).expect("cfg"), only12, "a.example")
                .await
                .is_err()
        );
    }

    #[test]
    fn only_forward_secret_aead_suites_are_offered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, _) = certs(dir.path(), "a.example");
        let cfg = TlsConfig {
            min_version: TlsVersion::Tls12,
            certificates: vec![a],
        };
        let server = server_config(&cfg).expect("server config");
        let offered = &server.crypto_provider().cipher_suites;
        assert!(!offered.is_empty());
        for s in offered {
            let name = format!("{:?}", s.suite());
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
            assert!(
                name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_key_that_does_not_match_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut a, _) = certs(dir.path(), "a.example");
        let (b, _) = certs(dir.path(), "b.example");
        a.key_file = b.key_file;
        let cfg = TlsConfig {
            min_version: TlsVersion::Tls12,
            certificates: vec![a],
        };
        let e = server_config(&cfg).expect_err("mismatch");
        assert!(e.to_string().contains("does not match"), "{e}");
    }
}
