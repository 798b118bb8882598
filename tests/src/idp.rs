//! A JWT identity provider for tests: a JWKS file with one P-256 key (`kid` `k1`), and ES256
//! tokens signed by it for issuer [`ISS`] and audience `moat`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The issuer of [`Idp::token`]'s tokens.
pub const ISS: &str = "https://idp.example/oauth2/default";

/// A JWKS file with one P-256 key, and tokens signed by it.
pub struct Idp {
    /// Holds `jwks.json`.
    dir: tempfile::TempDir,
    /// The private key, for tokens signed otherwise than [`Idp::token`] signs them.
    pub key: EncodingKey,
    /// The public key as SEC1 bytes (`04 ‖ x ‖ y`).
    pub public_raw: Vec<u8>,
}

impl Idp {
    /// Makes the key and writes the JWKS file into a temporary directory of its own.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let raw = kp.public_key_raw().to_vec();
        let jwks = json!({"keys": [{"kty": "EC", "kid": "k1", "crv": "P-256", "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}]});
        std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).expect("jwks");
        Self {
            key: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).expect("ec"),
            public_raw: raw,
            dir,
        }
    }

    /// The JWKS file's path (for `identity.jwt.jwks_file`).
    pub fn jwks(&self) -> String {
        self.dir.path().join("jwks.json").display().to_string()
    }

    /// A token for `alice@example.com` in group `ml-users` and region `eu-central`, valid for
    /// five minutes; `edit` changes the claims first.
    pub fn token(&self, edit: impl Fn(&mut Value)) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut c = json!({"iss": ISS, "aud": "moat", "sub": "alice@example.com", "exp": now + 300,
                           "groups": ["ml-users"], "regions": ["eu-central"]});
        edit(&mut c);
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, &c, &self.key).expect("sign")
    }
}

impl Default for Idp {
    fn default() -> Self {
        Self::new()
    }
}
