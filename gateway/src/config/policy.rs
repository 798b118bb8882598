//! `[policy]`: authorization rules, checked against the upstreams and redaction profiles.

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;

use super::validate::Validator;
use super::{raw, ConfigError, UpstreamConfig};
use crate::identity::PrincipalKind;
use crate::policy::{Action, Policy, Rule};
use crate::redact::Profile;

impl Validator<'_> {
    pub(super) fn policy(
        &self,
        raw: &raw::RawPolicy,
        region: Option<String>,
        upstreams: &BTreeMap<String, UpstreamConfig>,
        profiles: &BTreeMap<String, Arc<Profile>>,
    ) -> Result<(Policy, Vec<String>), ConfigError> {
        let mut rules: Vec<Rule> = Vec::new();
        for (i, r) in raw.rules.iter().enumerate() {
            let p = format!("policy.rules.{i}");
            if r.id.is_empty() || rules.iter().any(|x| *x.id == *r.id) {
                return Err(self.invalid(
                    &format!("{p}.id"),
                    &r.id,
                    "rule ids must be present and unique",
                ));
            }
            let mut kinds = Vec::new();
            for (j, k) in r.kinds.iter().enumerate() {
                kinds.push(PrincipalKind::parse(k).ok_or_else(|| {
                    self.invalid(
                        &format!("{p}.kinds.{j}"),
                        k,
                        "expected anonymous, api_key, jwt or mtls",
                    )
                })?);
            }
            let mut source_cidrs = Vec::new();
            for (j, c) in r.source_cidrs.iter().enumerate() {
                source_cidrs.push(c.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
                    self.invalid(&format!("{p}.source_cidrs.{j}"), c, "expected a CIDR")
                })?);
            }
            let mut methods = Vec::new();
            for (j, m) in r.methods.iter().enumerate() {
                methods.push(
                    http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        self.invalid(&format!("{p}.methods.{j}"), m, "not a method")
                    })?,
                );
            }
            for (j, path) in r.paths.iter().enumerate() {
                if !path.starts_with('/') {
                    return Err(self.invalid(
                        &format!("{p}.paths.{j}"),
                        path,
                        "a path pattern starts with /",
                    ));
                }
            }
            let action = match r.action.as_str() {
                "allow" => Action::Allow,
                "deny" => Action::Deny,
                v => {
                    return Err(self.invalid(
                        &format!("{p}.action"),
                        v,
                        "expected \"allow\" or \"deny\"",
                    ))
                }
            };
            if let Some(u) = &r.upstream {
                if !upstreams.contains_key(u) {
                    return Err(self.invalid(&format!("{p}.upstream"), u, "no such upstream"));
                }
            }
            if let Some(name) = &r.redaction {
                if !profiles.contains_key(name) {
                    let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                    return Err(self.invalid(
                        &format!("{p}.redaction"),
                        name,
                        format!(
                            "no such redaction profile (defined: [{}])",
                            known.join(", ")
                        ),
                    ));
                }
            }
            let require_region = r.require_region.unwrap_or(true);
            if require_region && region.is_none() && action == Action::Allow {
                return Err(self.invalid(
                    &format!("{p}.require_region"),
                    "true",
                    "residency.region is not set; set it, or require_region = false for this rule",
                ));
            }
            rules.push(Rule {
                id: r.id.as_str().into(),
                attributes: r.attributes.clone(),
                kinds,
                principals: r.principals.clone(),
                groups: r.groups.clone(),
                source_cidrs,
                hosts: r.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                methods,
                paths: r.paths.clone(),
                models: r.models.clone(),
                require_region,
                action,
                upstream: r.upstream.as_deref().map(Into::into),
                redaction: r.redaction.as_deref().map(Into::into),
            });
        }
        let warnings = shadowed(&rules);
        Ok((Policy { region, rules }, warnings))
    }
}

/// Warnings for rules that can never match because an earlier rule matches everything they do.
fn shadowed(rules: &[Rule]) -> Vec<String> {
    fn covers<T: PartialEq>(earlier: &[T], later: &[T]) -> bool {
        earlier.is_empty() || (!later.is_empty() && later.iter().all(|x| earlier.contains(x)))
    }
    let mut out = Vec::new();
    for (i, later) in rules.iter().enumerate() {
        if let Some(earlier) = rules[..i].iter().find(|e| {
            covers(&e.kinds, &later.kinds)
                && covers(&e.principals, &later.principals)
                && covers(&e.groups, &later.groups)
                && e.attributes.iter().all(|(k, v)| {
                    later
                        .attributes
                        .get(k)
                        .is_some_and(|lv| lv.iter().all(|x| v.contains(x)))
                })
                && covers(&e.source_cidrs, &later.source_cidrs)
                && covers(&e.hosts, &later.hosts)
                && covers(&e.methods, &later.methods)
                && covers(&e.paths, &later.paths)
                && covers(&e.models, &later.models)
                && (!e.require_region || later.require_region)
        }) {
            out.push(format!(
                "policy rule `{}` is shadowed by the earlier rule `{}` and never matches",
                later.id, earlier.id
            ));
        }
    }
    out
}
