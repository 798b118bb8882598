//! The principal of a verified client certificate: SAN URI (SPIFFE ID) first, then the first DNS
//! SAN, then the subject CN.

use x509_parser::extensions::GeneralName;

use super::{PeerCert, Principal, PrincipalKind};

/// The principal for a certificate rustls has already verified against the listener's CA.
pub fn principal(cert: &PeerCert) -> Principal {
    let sha = crate::audit::sha256_hex(&cert.der);
    let id = x509_parser::parse_x509_certificate(&cert.der)
        .ok()
        .and_then(|(_, c)| {
            let sans: Vec<GeneralName<'_>> = c
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|s| s.value.general_names.clone())
                .unwrap_or_default();
            let uri = sans.iter().find_map(|n| match n {
                GeneralName::URI(u) => Some((*u).to_owned()),
                _ => None,
            });
            let dns = sans.iter().find_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                _ => None,
            });
            let cn = c
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned);
            uri.or(dns).or(cn)
        })
        // A verified certificate with no usable name is still identified, by its fingerprint.
        .unwrap_or_else(|| format!("sha256:{sha}"));
    Principal {
        kind: PrincipalKind::Mtls,
        id,
        groups: Default::default(),
        regions: Default::default(),
        cert_sha256: Some(sha),
        attributes: Default::default(),
    }
}
