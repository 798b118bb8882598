//! API keys, stored only as SHA-256 hashes and compared in constant time. The key id — never the
//! key — identifies the caller.

use subtle::ConstantTimeEq;

use super::{Principal, PrincipalKind};

/// One configured key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The id logged and audited for this key.
    pub id: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Groups of its holder.
    pub groups: Vec<String>,
    /// Regions its holder may use.
    pub regions: Vec<String>,
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

impl ApiKeys {
    /// A set of keys.
    pub fn new(keys: Vec<ApiKey>) -> Self {
        Self { keys }
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The principal of a presented key. Every configured hash is compared (no early exit), so
    /// the time taken says nothing about which key, if any, nearly matched.
    pub fn identify(&self, presented: &str) -> Option<Principal> {
        use sha2::{Digest, Sha256};
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.sha256.ct_eq(&hash)) {
                found = Some(k);
            }
        }
        found.map(|k| Principal {
            kind: PrincipalKind::ApiKey,
            id: k.id.clone(),
            groups: k.groups.clone(),
            regions: k.regions.clone(),
            cert_sha256: None,
        })
    }
}
