//! OIDC JWT bearer tokens: keys from a JWKS file (selected by `kid`), RS256/PS256/ES256/EdDSA
//! only, `iss` and `aud` required and checked, `exp`/`nbf` with a small leeway, claims mapped to
//! subject, groups and regions by configured names. The JWKS file is re-read on SIGHUP and when
//! it changes.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{Principal, PrincipalKind};

/// Validated `[identity.jwt]` settings.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The JWKS file.
    pub jwks_file: PathBuf,
    /// Accepted `iss` values.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (a token needs one of them).
    pub audiences: Vec<String>,
    /// Accepted algorithms (a subset of RS256, PS256, ES256, EdDSA).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Claim holding the principal id.
    pub subject_claim: String,
    /// Claim holding groups (array of strings, or a space-separated string).
    pub groups_claim: String,
    /// Claim holding the regions the caller may use.
    pub regions_claim: String,
    /// Further claims copied into the principal's attributes (string claims only).
    pub attribute_claims: Vec<String>,
}

/// The algorithms moat accepts at most: asymmetric only (no `none`, no HMAC, so a public key can
/// never be used as a shared secret).
pub const ALLOWED: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// Why a token was refused (for logs and audit; the client sees only 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFailure {
    /// Not a well-formed JWT.
    Malformed,
    /// `alg` is not an accepted algorithm (`none`, HS256, …).
    AlgorithmNotAllowed,
    /// No `kid`, or no key with that id.
    UnknownKid,
    /// The key's type does not fit `alg`.
    KeyMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iss` is missing or not accepted.
    WrongIssuer,
    /// `aud` is missing or not accepted.
    WrongAudience,
    /// A required claim is missing or has the wrong type.
    MissingClaim,
}

impl JwtFailure {
    /// Short code for audit records.
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKid => "unknown_kid",
            Self::KeyMismatch => "key_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim => "missing_claim",
        }
    }
}

impl fmt::Display for JwtFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Key families, to refuse a token whose `alg` does not fit the selected key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    Ed25519,
}

impl Family {
    fn fits(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Self::Rsa, Algorithm::RS256 | Algorithm::PS256)
                | (Self::P256, Algorithm::ES256)
                | (Self::Ed25519, Algorithm::EdDSA)
        )
    }
}

type Keys = HashMap<String, (DecodingKey, Family)>;

/// Why a JWKS file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct JwksError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// Reads a JWKS file into keys by `kid`. Keys without `kid`, or of a kind moat does not accept,
/// are refused rather than skipped, so a JWKS typo cannot silently drop a key.
fn read_keys(file: &std::path::Path) -> Result<Keys, JwksError> {
    let err = |reason: String| JwksError {
        file: file.to_owned(),
        reason,
    };
    let text = std::fs::read(file).map_err(|e| err(e.to_string()))?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| err(format!("not a JWKS: {e}")))?;
    let mut keys = Keys::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| err(format!("key {i} has no kid")))?;
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Family::P256,
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Family::Ed25519
            }
            _ => {
                return Err(err(format!(
                    "key {kid}: only RSA, EC P-256 and Ed25519 keys are accepted"
                )))
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| err(format!("key {kid}: {e}")))?;
        keys.insert(kid, (key, family));
    }
    if keys.is_empty() {
        return Err(err("no keys".into()));
    }
    Ok(keys)
}

/// Verifies tokens against the current JWKS.
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: RwLock<(Arc<Keys>, Option<SystemTime>)>,
    /// Tokens verified recently, by SHA-256: the principal and the token's `exp`. Clients send
    /// the same token with many requests; a hit skips the signature check but still enforces
    /// `exp`. Cleared whenever the keys change, so a removed key stops working at once.
    cache: std::sync::Mutex<HashMap<[u8; 32], (Principal, i64)>>,
}

/// Most verified tokens remembered; the cache is emptied when it is full.
const CACHE_MAX: usize = 10_000;

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("jwks_file", &self.settings.jwks_file)
            .finish_non_exhaustive()
    }
}

/// Whether a bearer token has the shape of a JWT (`header.payload.signature`).
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

impl JwtVerifier {
    /// Loads the JWKS file.
    pub fn new(settings: JwtSettings) -> Result<Self, JwksError> {
        let keys = read_keys(&settings.jwks_file)?;
        let mtime = std::fs::metadata(&settings.jwks_file)
            .and_then(|m| m.modified())
            .ok();
        Ok(Self {
            settings,
            keys: RwLock::new((Arc::new(keys), mtime)),
            cache: Default::default(),
        })
    }

    /// Re-reads the JWKS file; on error the keys in use stay.
    pub fn reload(&self) -> Result<usize, JwksError> {
        let keys = read_keys(&self.settings.jwks_file)?;
        let n = keys.len();
        let mtime = std::fs::metadata(&self.settings.jwks_file)
            .and_then(|m| m.modified())
            .ok();
        if let Ok(mut slot) = self.keys.write() {
            *slot = (Arc::new(keys), mtime);
        }
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
        Ok(n)
    }

    /// Reloads when the file's modification time changed since the last load.
    pub fn reload_if_changed(&self) -> Option<Result<usize, JwksError>> {
        let now = std::fs::metadata(&self.settings.jwks_file)
            .and_then(|m| m.modified())
            .ok();
        let seen = self.keys.read().ok().and_then(|k| k.1);
        (now != seen).then(|| self.reload())
    }

    fn current(&self) -> Arc<Keys> {
        self.keys.read().map(|k| k.0.clone()).unwrap_or_default()
    }

    /// Verifies a token and maps its claims to a principal.
    pub fn verify(&self, token: &str) -> Result<Principal, JwtFailure> {
        use sha2::{Digest, Sha256};
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let leeway = i64::try_from(self.settings.leeway_secs).unwrap_or(0);
        if let Some((p, exp)) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            if now <= exp + leeway {
                return Ok(p);
            }
            return Err(JwtFailure::Expired);
        }
        let (p, exp) = self.verify_uncached(token)?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_MAX {
                c.clear();
            }
            c.insert(key, (p.clone(), exp));
        }
        Ok(p)
    }

    /// Full verification, bypassing the cache; returns the principal and the token's `exp`.
    pub fn verify_uncached(&self, token: &str) -> Result<(Principal, i64), JwtFailure> {
        // Read `alg` ourselves first: algorithms the library does not even know (`none`) must
        // be reported as refused algorithms, not as malformed tokens.
        let alg = header_alg(token).ok_or(JwtFailure::Malformed)?;
        if !self
            .settings
            .algorithms
            .iter()
            .any(|a| format!("{a:?}") == alg)
        {
            return Err(JwtFailure::AlgorithmNotAllowed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
            | jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => {
                JwtFailure::AlgorithmNotAllowed
            }
            _ => JwtFailure::Malformed,
        })?;
        if !ALLOWED.contains(&header.alg) || !self.settings.algorithms.contains(&header.alg) {
            return Err(JwtFailure::AlgorithmNotAllowed);
        }
        let keys = self.current();
        let (key, family) = header
            .kid
            .as_ref()
            .and_then(|k| keys.get(k))
            .ok_or(JwtFailure::UnknownKid)?;
        if !family.fits(header.alg) {
            return Err(JwtFailure::KeyMismatch);
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.settings.leeway_secs;
        v.validate_nbf = true;
        v.set_issuer(&self.settings.issuers);
        v.set_audience(&self.settings.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => JwtFailure::Expired,
                K::ImmatureSignature => JwtFailure::NotYetValid,
                K::InvalidIssuer => JwtFailure::WrongIssuer,
                K::InvalidAudience => JwtFailure::WrongAudience,
                K::InvalidSignature => JwtFailure::BadSignature,
                K::MissingRequiredClaim(c) if c == "iss" => JwtFailure::WrongIssuer,
                K::MissingRequiredClaim(c) if c == "aud" => JwtFailure::WrongAudience,
                K::MissingRequiredClaim(_) => JwtFailure::MissingClaim,
                K::InvalidAlgorithm => JwtFailure::AlgorithmNotAllowed,
                _ => JwtFailure::BadSignature,
            }
        })?;
        let claims = data.claims;
        let exp = claims["exp"].as_i64().ok_or(JwtFailure::MissingClaim)?;
        let id = claims[&self.settings.subject_claim]
            .as_str()
            .ok_or(JwtFailure::MissingClaim)?
            .to_owned();
        let principal = Principal {
            kind: PrincipalKind::Jwt,
            id,
            groups: strings(&claims[&self.settings.groups_claim]).into(),
            regions: strings(&claims[&self.settings.regions_claim]).into(),
            cert_sha256: None,
            attributes: self
                .settings
                .attribute_claims
                .iter()
                .filter_map(|c| claims[c].as_str().map(|v| (c.clone(), v.to_owned())))
                .collect(),
        };
        Ok((principal, exp))
    }
}

/// The `alg` of a token's header, undecoded otherwise.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["alg"].as_str().map(str::to_owned)
}

/// A claim as a list of strings: an array of strings, or one space-separated string.
fn strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        serde_json::Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}
