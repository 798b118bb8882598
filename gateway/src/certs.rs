//! `moat cert init`: a local CA, a server certificate and a client certificate, for first start,
//! the demo and tests. Keys are ECDSA P-256; private key files are written with mode 0600.
//!
//! The certificates are made as public CAs make them, so that strict clients and scanners
//! accept them (RFC 5280 and the CA/Browser Forum's baseline): the CA is constrained to issue
//! end-entity certificates only (`pathLenConstraint` 0), may sign certificates and CRLs, and is
//! valid for [`CA_DAYS`]; each leaf names its key and its issuer's (Subject and Authority Key
//! Identifiers), is no CA, may only sign (`digitalSignature`, which is all an ECDSA key does in
//! TLS 1.3) for its one purpose (`serverAuth` or `clientAuth`), and is valid for [`LEAF_DAYS`].
//! Every certificate is valid from an hour ago, for clocks slightly behind.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

/// How long the CA is valid, in days (ten years).
pub const CA_DAYS: i64 = 3650;
/// How long a server or client certificate is valid, in days: the most a publicly trusted TLS
/// certificate may have (CA/Browser Forum baseline requirements).
pub const LEAF_DAYS: i64 = 397;

/// Parameters every certificate starts from: valid from an hour ago for `days`.
fn params(days: i64) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut p = CertificateParams::default();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
    p
}

/// Parameters of a leaf for one purpose, issued by the CA.
fn leaf(name: &str, purpose: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut p = params(LEAF_DAYS);
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::ExplicitNoCa;
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![purpose];
    p
}

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
    let mut ca_params = params(CA_DAYS);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "moat local CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut server_params = leaf(
        hosts.first().map_or("localhost", String::as_str),
        ExtendedKeyUsagePurpose::ServerAuth,
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
    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let mut client_params = leaf("moat-client", ExtendedKeyUsagePurpose::ClientAuth);
    client_params.subject_alt_names = vec![SanType::URI(
        "spiffe://moat.local/client"
            .try_into()
            .map_err(|_| CertError::Host("spiffe".into()))?,
    )];
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

    /// Each certificate's validity, in days from now: (starts, ends).
    fn days(c: &x509_parser::certificate::X509Certificate<'_>) -> (f64, f64) {
        let now = OffsetDateTime::now_utc().unix_timestamp() as f64;
        let v = c.validity();
        (
            (v.not_before.timestamp() as f64 - now) / 86_400.0,
            (v.not_after.timestamp() as f64 - now) / 86_400.0,
        )
    }

    fn der(pem_file: &Path) -> Vec<u8> {
        let text = fs::read(pem_file).expect("pem");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&text).expect("pem block");
        pem.contents
    }

    /// The CA issues end-entity certificates only and lives ten years; each leaf names its key
    /// and its issuer's, is no CA, only signs, serves one purpose and lives at most 397 days.
    #[test]
    fn certificates_carry_the_extensions_strict_clients_require() {
        use x509_parser::extensions::ParsedExtension;
        use x509_parser::prelude::*;
        let dir = tempfile::tempdir().expect("tempdir");
        let files = init(dir.path(), &["localhost".into(), "127.0.0.1".into()]).expect("init");
        let ca_der = der(&files.ca_cert);
        let (_, ca) = X509Certificate::from_der(&ca_der).expect("CA");
        let bc = ca
            .basic_constraints()
            .expect("ok")
            .expect("basicConstraints");
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint == Some(0));
        let ku = ca.key_usage().expect("ok").expect("keyUsage").value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
        let ca_ski = ca
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .expect("the CA's subject key identifier");
        let (from, to) = days(&ca);
        assert!((-0.1..0.0).contains(&from), "CA valid from {from} days");
        assert!(
            (CA_DAYS as f64 - 0.1..=CA_DAYS as f64).contains(&to),
            "CA until {to}"
        );

        for (file, purpose) in [
            (&files.server_cert, "serverAuth"),
            (&files.client_cert, "clientAuth"),
        ] {
            let leaf_der = der(file);
            let (_, c) = X509Certificate::from_der(&leaf_der).expect("leaf");
            let bc = c
                .basic_constraints()
                .expect("ok")
                .expect("basicConstraints");
            assert!(!bc.value.ca, "{purpose}: no CA");
            let ku = c.key_usage().expect("ok").expect("keyUsage");
            assert!(ku.critical, "{purpose}: keyUsage critical");
            assert_eq!(ku.value.flags, 1, "{purpose}: digitalSignature only");
            let eku = c
                .extended_key_usage()
                .expect("ok")
                .expect("extendedKeyUsage")
                .value;
            let purposes = (eku.server_auth, eku.client_auth);
            let expected = (purpose == "serverAuth", purpose == "clientAuth");
            assert_eq!(purposes, expected, "{purpose}");
            let mut ski = None;
            let mut aki = None;
            for e in c.iter_extensions() {
                match e.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
                    ParsedExtension::AuthorityKeyIdentifier(k) => {
                        aki = k.key_identifier.as_ref().map(|k| k.0.to_vec());
                    }
                    _ => {}
                }
            }
            assert!(
                ski.is_some_and(|k| !k.is_empty()),
                "{purpose}: subject key identifier"
            );
            assert_eq!(
                aki.as_ref(),
                Some(&ca_ski),
                "{purpose}: authority key identifier"
            );
            let (from, to) = days(&c);
            assert!(
                (-0.1..0.0).contains(&from),
                "{purpose}: valid from {from} days"
            );
            assert!(
                (LEAF_DAYS as f64 - 0.1..=LEAF_DAYS as f64).contains(&to),
                "{purpose}: valid until {to} days"
            );
        }
    }

    /// OpenSSL's strict X.509 checks accept the chain, for each certificate's purpose.
    #[test]
    fn openssl_verifies_the_certificates_strictly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = init(dir.path(), &["localhost".into(), "127.0.0.1".into()]).expect("init");
        for (file, purpose) in [
            (&files.server_cert, "sslserver"),
            (&files.client_cert, "sslclient"),
        ] {
            let out = std::process::Command::new("openssl")
                .args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
                .arg(&files.ca_cert)
                .arg(file)
                .output()
                .expect("openssl (Debian package `openssl`) runs");
            let said = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && said.contains(": OK"),
                "{purpose}: {said}"
            );
        }
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
