//! `[identity]`: JWT verification and API keys.

use std::time::Duration;

use super::validate::Validator;
use super::{raw, ConfigError, ListenerConfig};
use crate::identity::api_key::ApiKey;
use crate::identity::jwt::{JwtSettings, ALLOWED};
use crate::identity::Source;

/// Validated `[identity]` settings.
#[derive(Debug, Clone, Default)]
pub struct IdentitySettings {
    /// Pass the principal upstream in `x-moat-principal`, `x-moat-principal-kind` and
    /// `x-moat-groups`.
    pub forward_headers: bool,
    /// JWT verification.
    pub jwt: Option<JwtSettings>,
    /// API keys.
    pub api_keys: Vec<ApiKey>,
}

impl Validator<'_> {
    pub(super) fn identity(
        &self,
        raw: &raw::RawIdentity,
        listeners: &[ListenerConfig],
    ) -> Result<IdentitySettings, ConfigError> {
        let uses = |s: Source| listeners.iter().any(|l| l.identity.contains(&s));
        let jwt = match &raw.jwt {
            None if uses(Source::Jwt) => {
                return Err(ConfigError::Missing {
                    path: "identity.jwt".into(),
                    reason: "a listener uses the jwt identity source".into(),
                })
            }
            None => None,
            Some(j) => {
                let jwks_file = self.existing_file("identity.jwt.jwks_file", &j.jwks_file)?;
                if j.issuers.is_empty() {
                    return Err(ConfigError::Missing {
                        path: "identity.jwt.issuers".into(),
                        reason: "at least one accepted `iss`".into(),
                    });
                }
                if j.audiences.is_empty() {
                    return Err(ConfigError::Missing {
                        path: "identity.jwt.audiences".into(),
                        reason: "at least one accepted `aud`".into(),
                    });
                }
                let algorithms = match &j.algorithms {
                    None => ALLOWED.to_vec(),
                    Some(names) => {
                        let mut out = Vec::new();
                        for (i, n) in names.iter().enumerate() {
                            let alg = ALLOWED.iter().find(|a| format!("{a:?}") == *n).ok_or_else(
                                || {
                                    self.invalid(
                                        &format!("identity.jwt.algorithms.{i}"),
                                        n,
                                        "expected RS256, PS256, ES256 or EdDSA",
                                    )
                                },
                            )?;
                            out.push(*alg);
                        }
                        out
                    }
                };
                let leeway = self.duration(
                    "identity.jwt.leeway",
                    j.leeway.as_deref(),
                    Duration::from_secs(30),
                )?;
                if leeway > Duration::from_secs(300) {
                    return Err(self.invalid(
                        "identity.jwt.leeway",
                        j.leeway.as_deref().unwrap_or(""),
                        "at most 5m",
                    ));
                }
                let settings = JwtSettings {
                    jwks_file,
                    issuers: j.issuers.clone(),
                    audiences: j.audiences.clone(),
                    algorithms,
                    leeway_secs: leeway.as_secs(),
                    subject_claim: j.subject_claim.clone().unwrap_or_else(|| "sub".into()),
                    groups_claim: j.groups_claim.clone().unwrap_or_else(|| "groups".into()),
                    regions_claim: j.regions_claim.clone().unwrap_or_else(|| "regions".into()),
                    attribute_claims: j.attribute_claims.clone(),
                };
                // Load it now, so a bad JWKS is a configuration error, not a failed start.
                crate::identity::jwt::JwtVerifier::new(settings.clone())
                    .map_err(|e| self.invalid("identity.jwt.jwks_file", &j.jwks_file, e.reason))?;
                Some(settings)
            }
        };
        let mut api_keys = Vec::new();
        let mut add_keys = |keys: &[raw::RawApiKey], prefix: &str| -> Result<(), ConfigError> {
            for (i, k) in keys.iter().enumerate() {
                let p = format!("{prefix}.{i}");
                let sha = crate::audit::unhex(&k.sha256)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        self.invalid(
                            &format!("{p}.sha256"),
                            "(hidden)",
                            "expected the key's SHA-256 as 64 hex digits",
                        )
                    })?;
                if k.id.is_empty() || api_keys.iter().any(|x: &ApiKey| x.id == k.id) {
                    return Err(self.invalid(
                        &format!("{p}.id"),
                        &k.id,
                        "key ids must be present and unique",
                    ));
                }
                api_keys.push(ApiKey {
                    id: k.id.clone(),
                    attributes: k.attributes.clone(),
                    sha256: sha,
                    groups: k.groups.clone().into(),
                    regions: k.regions.clone().into(),
                });
            }
            Ok(())
        };
        add_keys(&raw.api_keys, "identity.api_keys")?;
        if let Some(f) = &raw.api_keys_file {
            let path = self.existing_file("identity.api_keys_file", f)?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| self.invalid("identity.api_keys_file", f, e.to_string()))?;
            let file: raw::RawApiKeysFile = toml::from_str(&text)
                .map_err(|e| self.invalid("identity.api_keys_file", f, e.message().to_owned()))?;
            add_keys(&file.api_keys, "identity.api_keys_file: api_keys")?;
        }
        if uses(Source::ApiKey) && api_keys.is_empty() {
            return Err(ConfigError::Missing {
                path: "identity.api_keys".into(),
                reason: "a listener uses the api_key identity source".into(),
            });
        }
        Ok(IdentitySettings {
            forward_headers: raw.forward_headers.unwrap_or(true),
            jwt,
            api_keys,
        })
    }
}
