//! `moat cert init`: a local CA, a server certificate and a client certificate, for first start,
//! the demo and tests. Keys are ECDSA P-256; private key files are written with mode 0600.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};

/// Paths of the files [`init`] wrote.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// CA certificate (trust anchor for clients and, later, for client certificates).
    pub ca_cert: PathBuf,
    /// CA private key.
    pub ca_key: PathBuf,
    /// Server certificate chain: leaf then CA.
    pub server_cert: PathBuf,
    /// Server private key.
    pub server_key: PathBuf,
    /// Client certificate, for mutual TLS.
    pub client_cert: PathBuf,
    /// Client private key.
    pub client_key: PathBuf,
}

/// Why certificates could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Key or certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A host name is neither a DNS name nor an IP address.
    #[error("invalid host name `{0}`")]
    Host(String),
    /// A file could not be written.
    #[error("cannot write {file}: {source}")]
    Write {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Writes `ca.pem`, `ca.key`, `server.pem`, `server.key`, `client.pem` and `client.key` into `dir`
/// (created if missing). The server certificate names each of `hosts`.
pub fn init(dir: &Path, hosts: &[String]) -> Result<CertFiles, CertError> {
    let write_err = |file: &Path| {
        let file = file.to_owned();
        move |source| CertError::Write { file, source }
    };
    fs::create_dir_all(dir).map_err(write_err(dir))?;

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "moat local CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut server_params = CertificateParams::default();
    server_params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map_or("localhost", String::as_str),
    );
    server_params.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) if crate::config::valid_server_name(h) && !h.starts_with("*.") => h
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| CertError::Host(h.clone())),
            Err(_) => Err(CertError::Host(h.clone())),
        })
        .collect::<Result<_, _>>()?;
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let mut client_params = CertificateParams::default();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "moat-client");
    client_params.subject_alt_names = vec![SanType::URI(
        "spiffe://moat.local/client"
            .try_into()
            .map_err(|_| CertError::Host("spiffe".into()))?,
    )];
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let client_cert = client_params.signed_by(&client_key, &issuer)?;

    let files = CertFiles {
        ca_cert: dir.join("ca.pem"),
        ca_key: dir.join("ca.key"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    write_file(&files.ca_cert, ca_cert.pem().as_bytes(), 0o644)?;
    write_file(&files.ca_key, ca_key.serialize_pem().as_bytes(), 0o600)?;
    let chain = format!("{}{}", server_cert.pem(), ca_cert.pem());
    write_file(&files.server_cert, chain.as_bytes(), 0o644)?;
    write_file(
        &files.server_key,
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&files.client_cert, client_cert.pem().as_bytes(), 0o644)?;
    write_file(
        &files.client_key,
        client_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    Ok(files)
}

/// Writes a file with the given mode, replacing any previous one (so a key never inherits a
/// looser mode from an older file).
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        file: path.to_owned(),
        source,
    };
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(data).map_err(err)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_keys_private_and_certificates_that_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = init(dir.path(), &["localhost".into(), "127.0.0.1".into()]).expect("init");
        for key in [&files.ca_key, &files.server_key, &files.client_key] {
            let mode = fs::metadata(key).expect("key").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let pem = fs::read_to_string(&files.server_cert).expect("server.pem");
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "leaf and CA");
    }

    #[test]
    fn rejects_a_bad_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            init(dir.path(), &["bad host".into()]),
            Err(CertError::Host(_))
        ));
    }
}
