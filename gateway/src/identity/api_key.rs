//! API keys, stored only as SHA-256 hashes and compared in constant time. The key id — never the
//! key — identifies the caller. Lookup is by hash, so its cost does not grow with the number of
//! keys.

use subtle::ConstantTimeEq;

use super::{Principal, PrincipalKind};

/// One configured key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The id logged and audited for this key.
    pub id: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Groups of its holder (shared with each principal it identifies).
    pub groups: std::sync::Arc<[String]>,
    /// Regions its holder may use.
    pub regions: std::sync::Arc<[String]>,
    /// Further attributes for policy (`team = "search"`).
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// The configured keys, indexed by the first 8 bytes of their hash.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    by_prefix: std::collections::HashMap<[u8; 8], Vec<ApiKey>>,
    len: usize,
}

impl ApiKeys {
    /// A set of keys.
    pub fn new(keys: Vec<ApiKey>) -> Self {
        let len = keys.len();
        let mut by_prefix: std::collections::HashMap<[u8; 8], Vec<ApiKey>> =
            std::collections::HashMap::new();
        for k in keys {
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&k.sha256[..8]);
            by_prefix.entry(prefix).or_default().push(k);
        }
        Self { by_prefix, len }
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The principal of a presented key.
    ///
    /// The presented key is hashed first, so everything after depends only on its SHA-256: the
    /// table lookup by the hash's first 8 bytes can tell an attacker at most something about a
    /// hash prefix, never about a key. The full 32-byte hash is then compared in constant time
    /// with every key in that bucket (no early exit).
    pub fn identify(&self, presented: &str) -> Option<Principal> {
        use sha2::{Digest, Sha256};
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&hash[..8]);
        let mut found = None;
        for k in self
            .by_prefix
            .get(&prefix)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
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
            attributes: k.attributes.clone(),
        })
    }
}
