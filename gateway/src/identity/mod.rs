//! Identity stage: turns each request's credentials into one [`Principal`].
//!
//! Sources, tried in the order a listener lists them:
//! - `mtls`: the client certificate rustls verified against the listener's CA bundle; the
//!   principal is its SAN URI (SPIFFE ID), else its first DNS SAN, else its subject CN;
//! - `jwt`: an OIDC bearer token (three dot-separated parts) verified against keys from a JWKS
//!   file ([`jwt`]);
//! - `api_key`: a bearer token or `X-Api-Key` value whose SHA-256 matches a configured hash,
//!   compared in constant time ([`api_key`]).
//!
//! A source with nothing presented passes to the next; a credential that is presented and
//! invalid fails the request (401) — it never falls through to a weaker source. A listener with
//! no sources yields the anonymous principal, which policy can allow or (by default) deny.

pub mod api_key;
pub mod jwt;
pub mod mtls;
#[cfg(test)]
mod tests;

use std::fmt;

use http::HeaderMap;

/// How a caller was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// No credentials (the listener has no identity sources).
    Anonymous,
    /// An API key.
    ApiKey,
    /// An OIDC JWT.
    Jwt,
    /// A verified client certificate.
    Mtls,
}

impl PrincipalKind {
    /// The name used in configuration and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::Mtls => "mtls",
        }
    }

    /// Parses a configuration name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "anonymous" => Some(Self::Anonymous),
            "api_key" => Some(Self::ApiKey),
            "jwt" => Some(Self::Jwt),
            "mtls" => Some(Self::Mtls),
            _ => None,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// How they were identified.
    pub kind: PrincipalKind,
    /// Stable id: SPIFFE ID / DNS name / CN, the token's subject, or the API key's id — never a
    /// secret.
    pub id: String,
    /// Groups (token claim or key attribute); shared with the key they came from.
    pub groups: std::sync::Arc<[String]>,
    /// Regions the caller may use (token claim or key attribute).
    pub regions: std::sync::Arc<[String]>,
    /// SHA-256 of the client certificate, when one was presented.
    pub cert_sha256: Option<String>,
    /// Further attributes (API key `attributes`, JWT `attribute_claims`), matched by policy.
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl Principal {
    /// The principal of a listener without identity sources.
    pub fn anonymous() -> Self {
        Self {
            kind: PrincipalKind::Anonymous,
            id: "anonymous".into(),
            groups: Default::default(),
            regions: Default::default(),
            cert_sha256: None,
            attributes: Default::default(),
        }
    }
}

/// An identity source, as named in `listener.identity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Client certificate.
    Mtls,
    /// OIDC JWT bearer token.
    Jwt,
    /// API key.
    ApiKey,
}

impl Source {
    /// Parses a configuration name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mtls" => Some(Self::Mtls),
            "jwt" => Some(Self::Jwt),
            "api_key" => Some(Self::ApiKey),
            _ => None,
        }
    }
}

/// Why a request has no principal. The client sees only "authentication required"; this goes to
/// the log and the audit record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No source found a credential.
    #[error("no credentials")]
    Missing,
    /// A JWT was presented and refused.
    #[error("jwt: {0}")]
    Jwt(jwt::JwtFailure),
    /// An API key was presented that matches no configured key.
    #[error("api key: unknown key")]
    UnknownApiKey,
    /// The Authorization header is not `Bearer <token>`.
    #[error("malformed Authorization header")]
    MalformedAuthorization,
}

impl IdentityError {
    /// Short machine-readable reason for audit records (`expired`, `bad_signature`, …).
    pub fn reason(&self) -> String {
        match self {
            Self::Missing => "missing_credentials".into(),
            Self::Jwt(f) => format!("jwt_{}", f.code()),
            Self::UnknownApiKey => "unknown_api_key".into(),
            Self::MalformedAuthorization => "malformed_authorization".into(),
        }
    }
}

/// A verified client certificate, as the TLS stage hands it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// Leaf certificate, DER.
    pub der: Vec<u8>,
}

/// Everything identity needs, shared by all requests (keys are swapped on reload).
#[derive(Debug, Default)]
pub struct Identifier {
    /// JWT verification, when configured.
    pub jwt: Option<jwt::JwtVerifier>,
    /// API keys.
    pub api_keys: api_key::ApiKeys,
}

impl Identifier {
    /// Identifies a request by trying `sources` in order.
    pub fn identify(
        &self,
        sources: &[Source],
        headers: &HeaderMap,
        peer: Option<&PeerCert>,
    ) -> Result<Principal, IdentityError> {
        if sources.is_empty() {
            return Ok(Principal::anonymous());
        }
        let bearer = bearer(headers)?;
        for source in sources {
            match source {
                Source::Mtls => {
                    if let Some(cert) = peer {
                        return Ok(mtls::principal(cert));
                    }
                }
                Source::Jwt => {
                    if let (Some(token), Some(v)) = (bearer, &self.jwt) {
                        if jwt::looks_like_jwt(token) {
                            return v.verify(token).map_err(IdentityError::Jwt);
                        }
                    }
                }
                Source::ApiKey => {
                    let key = bearer
                        .filter(|t| !(jwt::looks_like_jwt(t) && sources.contains(&Source::Jwt)))
                        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
                    if let Some(key) = key {
                        return self
                            .api_keys
                            .identify(key)
                            .ok_or(IdentityError::UnknownApiKey);
                    }
                }
            }
        }
        Err(IdentityError::Missing)
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, IdentityError> {
    let Some(v) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| IdentityError::MalformedAuthorization)?;
    let (scheme, token) = v
        .split_once(' ')
        .ok_or(IdentityError::MalformedAuthorization)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(IdentityError::MalformedAuthorization);
    }
    Ok(Some(token.trim()))
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}
