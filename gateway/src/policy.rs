//! Policy stage: decides, per request, whether this principal may use this route and model from
//! this region. Rules are tried in order, the first that matches decides, and a request no rule
//! matches is denied. Every decision names the rule that made it.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::identity::{Principal, PrincipalKind};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forward the request.
    Allow,
    /// Refuse it (403).
    Deny,
}

/// One `[[policy.rules]]` entry. Every list is "any of"; an empty list matches anything.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Rule id, recorded with every decision it makes (shared with them, not copied).
    pub id: std::sync::Arc<str>,
    /// Principal kinds.
    pub kinds: Vec<PrincipalKind>,
    /// Principal ids (`*` wildcards).
    pub principals: Vec<String>,
    /// Groups the principal must have one of.
    pub groups: Vec<String>,
    /// Attributes the principal must have: for each name, one of the listed values.
    pub attributes: std::collections::BTreeMap<String, Vec<String>>,
    /// Source networks.
    pub source_cidrs: Vec<IpNet>,
    /// Hosts (SNI/Host, `*.` wildcards).
    pub hosts: Vec<String>,
    /// Methods.
    pub methods: Vec<http::Method>,
    /// Path patterns: exact, `*` (one segment) and a trailing `/**` (any rest).
    pub paths: Vec<String>,
    /// Model names (`*` wildcards), from the JSON body's `model` field.
    pub models: Vec<String>,
    /// Whether the caller's regions must include moat's region.
    pub require_region: bool,
    /// What to do.
    pub action: Action,
    /// Upstream to use (allow only; default: the listener's).
    pub upstream: Option<std::sync::Arc<str>>,
    /// Redaction profile applied to allowed requests (none: no redaction).
    pub redaction: Option<std::sync::Arc<str>>,
}

/// The facts a rule is matched against.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Who is asking.
    pub principal: &'a Principal,
    /// Client address.
    pub client: IpAddr,
    /// Host (without port).
    pub host: &'a str,
    /// Method.
    pub method: &'a http::Method,
    /// Canonical path (see [`canonical_path`]).
    pub path: &'a str,
    /// Model name, when the body named one.
    pub model: Option<&'a str>,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub action: Action,
    /// The rule that decided, or `default-deny`.
    pub rule: std::sync::Arc<str>,
    /// Upstream named by the rule.
    pub upstream: Option<std::sync::Arc<str>>,
    /// Redaction profile named by the rule.
    pub redaction: Option<std::sync::Arc<str>>,
    /// Why, for the audit record (never shown to the client).
    pub reason: std::borrow::Cow<'static, str>,
}

/// The rule named when no rule matched: one string, shared by every such refusal.
static DEFAULT_DENY: std::sync::LazyLock<std::sync::Arc<str>> =
    std::sync::LazyLock::new(|| std::sync::Arc::from("default-deny"));

/// The rules and moat's own region.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// moat's region (`residency.region`).
    pub region: Option<String>,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// Whether any rule looks at the model, so the body's `model` field must be read first.
    pub fn needs_model(&self) -> bool {
        self.rules.iter().any(|r| !r.models.is_empty())
    }

    /// First match wins; nothing matches → deny.
    pub fn decide(&self, f: &Facts<'_>) -> Decision {
        let mut region_miss: Option<&str> = None;
        for rule in &self.rules {
            if !self.matches_request(rule, f) {
                continue;
            }
            if rule.require_region && !self.region_ok(f.principal) {
                region_miss.get_or_insert(&*rule.id);
                continue;
            }
            return Decision {
                action: rule.action,
                rule: rule.id.clone(),
                upstream: rule.upstream.clone(),
                redaction: rule.redaction.clone(),
                reason: match rule.action {
                    Action::Allow => "allowed".into(),
                    Action::Deny => "denied by rule".into(),
                },
            };
        }
        Decision {
            action: Action::Deny,
            rule: DEFAULT_DENY.clone(),
            upstream: None,
            redaction: None,
            reason: match region_miss {
                Some(id) => format!(
                    "region mismatch: rule {id} requires region {}, caller may use [{}]",
                    self.region.as_deref().unwrap_or("(unset)"),
                    f.principal.regions.join(", ")
                )
                .into(),
                None => "no rule matched".into(),
            },
        }
    }

    fn region_ok(&self, p: &Principal) -> bool {
        match &self.region {
            Some(r) => p.regions.iter().any(|x| x == r),
            // No region configured: a rule requiring one can never be satisfied.
            None => false,
        }
    }

    fn matches_request(&self, r: &Rule, f: &Facts<'_>) -> bool {
        let any = |list: &[String], pred: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|x| pred(x))
        };
        (r.kinds.is_empty() || r.kinds.contains(&f.principal.kind))
            && any(&r.principals, &|p| glob(p, &f.principal.id))
            && (r.groups.is_empty() || r.groups.iter().any(|g| f.principal.groups.contains(g)))
            && r.attributes.iter().all(|(k, vs)| {
                f.principal
                    .attributes
                    .get(k)
                    .is_some_and(|v| vs.contains(v))
            })
            && (r.source_cidrs.is_empty() || r.source_cidrs.iter().any(|n| n.contains(&f.client)))
            && any(&r.hosts, &|h| host_matches(h, f.host))
            && (r.methods.is_empty() || r.methods.contains(f.method))
            && any(&r.paths, &|p| path_matches(p, f.path))
            && (r.models.is_empty() || f.model.is_some_and(|m| r.models.iter().any(|x| glob(x, m))))
    }
}

/// `*` matches any run of characters.
pub fn glob(pattern: &str, value: &str) -> bool {
    let (Some((first, _)), Some((_, last))) = (pattern.split_once('*'), pattern.rsplit_once('*'))
    else {
        return pattern == value;
    };
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last)
    {
        return false;
    }
    if first.len() + last.len() + 1 == pattern.len() {
        // One `*`.
        return true;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    // The parts between the first `*` and the last, in order.
    for mid in pattern[first.len() + 1..pattern.len() - last.len() - 1].split('*') {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        // At least one label before the suffix: `a.example` matches `*.example`, `.example`
        // and `example` do not.
        Some(suffix) => {
            let (h, s) = (host.as_bytes(), suffix.as_bytes());
            h.len() > s.len() + 1
                && h[h.len() - s.len() - 1] == b'.'
                && h[h.len() - s.len()..].eq_ignore_ascii_case(s)
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Path patterns: segments compared exactly, `*` matches one whole segment, a final `**` matches
/// any rest (including nothing).
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut i = 0;
    for (n, p) in pat.iter().enumerate() {
        if *p == "**" && n + 1 == pat.len() {
            return true;
        }
        match segs.get(i) {
            Some(s) if *p == "*" || p == s => i += 1,
            _ => return false,
        }
    }
    i == segs.len()
}

/// Why a path is refused before policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("path is not canonical: {0}")]
pub struct NotCanonical(pub &'static str);

/// Checks that a request path is canonical, so that what policy matches is what the upstream
/// will route: no `.` or `..` segments, no empty segments, no backslashes, and no percent-encoded
/// `/`, `\`, `.` or NUL that an upstream might decode into one of those.
pub fn canonical_path(path: &str) -> Result<&str, NotCanonical> {
    if !path.starts_with('/') {
        return Err(NotCanonical("does not start with /"));
    }
    if path.contains('\\') {
        return Err(NotCanonical("backslash"));
    }
    // One pass over each `%`: an encoded separator, dot, NUL or percent sign is refused.
    let b = path.as_bytes();
    for i in memchr::memchr_iter(b'%', b) {
        let code = b
            .get(i + 1..i + 3)
            .map(|c| [c[0].to_ascii_lowercase(), c[1].to_ascii_lowercase()]);
        if matches!(code.as_ref(), Some(b"2f" | b"5c" | b"2e" | b"00" | b"25")) {
            return Err(NotCanonical("encoded separator, dot or NUL"));
        }
    }
    let body = &path[1..];
    if body.is_empty() {
        return Ok(path);
    }
    let mut segments = body.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." {
            return Err(NotCanonical("dot segment"));
        }
        if seg.is_empty() && !last {
            return Err(NotCanonical("empty segment"));
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(kind: PrincipalKind, id: &str, groups: &[&str], regions: &[&str]) -> Principal {
        Principal {
            kind,
            id: id.into(),
            groups: groups.iter().map(|s| (*s).to_owned()).collect(),
            regions: regions.iter().map(|s| (*s).to_owned()).collect(),
            cert_sha256: None,
            attributes: Default::default(),
        }
    }

    fn rule(id: &str, action: Action) -> Rule {
        Rule {
            id: id.into(),
            kinds: vec![],
            principals: vec![],
            groups: vec![],
            attributes: Default::default(),
            source_cidrs: vec![],
            hosts: vec![],
            methods: vec![],
            paths: vec![],
            models: vec![],
            require_region: false,
            action,
            upstream: None,
            redaction: None,
        }
    }

    fn facts<'a>(p: &'a Principal, path: &'a str, model: Option<&'a str>) -> Facts<'a> {
        Facts {
            principal: p,
            client: "10.0.0.7".parse().expect("ip"),
            host: "model.example",
            method: &http::Method::POST,
            path,
            model,
        }
    }

    #[test]
    fn deny_by_default() {
        let p = principal(PrincipalKind::ApiKey, "batch", &[], &[]);
        let d = Policy::default().decide(&facts(&p, "/v1/models", None));
        assert_eq!(
            (d.action, &*d.rule, &*d.reason),
            (Action::Deny, "default-deny", "no rule matched")
        );
    }

    #[test]
    fn first_match_wins() {
        let mut deny = rule("deny-batch", Action::Deny);
        deny.principals = vec!["batch".into()];
        let allow = rule("allow-all", Action::Allow);
        let policy = Policy {
            region: None,
            rules: vec![deny, allow],
        };
        let batch = principal(PrincipalKind::ApiKey, "batch", &[], &[]);
        let other = principal(PrincipalKind::ApiKey, "other", &[], &[]);
        assert_eq!(
            policy.decide(&facts(&batch, "/", None)).rule.as_ref(),
            "deny-batch"
        );
        assert_eq!(
            policy.decide(&facts(&other, "/", None)).rule.as_ref(),
            "allow-all"
        );
    }

    #[test]
    fn region_must_match() {
        let mut r = rule("eu", Action::Allow);
        r.require_region = true;
        let policy = Policy {
            region: Some("eu-central".into()),
            rules: vec![r],
        };
        let eu = principal(PrincipalKind::Jwt, "alice", &[], &["eu-central"]);
        let us = principal(PrincipalKind::Jwt, "bob", &[], &["us-east"]);
        assert_eq!(policy.decide(&facts(&eu, "/", None)).action, Action::Allow);
        let d = policy.decide(&facts(&us, "/", None));
        assert_eq!(d.action, Action::Deny);
        assert!(d.reason.contains("region mismatch"), "{}", d.reason);
    }

    #[test]
    fn models_pick_the_rule() {
        let mut allow_x = rule("gpt-x", Action::Allow);
        allow_x.models = vec!["gpt-x".into()];
        let policy = Policy {
            region: None,
            rules: vec![allow_x],
        };
        let p = principal(PrincipalKind::ApiKey, "k", &[], &[]);
        assert_eq!(
            policy
                .decide(&facts(&p, "/v1/chat/completions", Some("gpt-x")))
                .action,
            Action::Allow
        );
        assert_eq!(
            policy
                .decide(&facts(&p, "/v1/chat/completions", Some("gpt-y")))
                .action,
            Action::Deny
        );
        assert_eq!(
            policy
                .decide(&facts(&p, "/v1/chat/completions", None))
                .action,
            Action::Deny,
            "unknown model"
        );
    }

    #[test]
    fn conditions_combine() {
        let mut r = rule("narrow", Action::Allow);
        r.kinds = vec![PrincipalKind::Jwt];
        r.groups = vec!["ml".into()];
        r.source_cidrs = vec!["10.0.0.0/8".parse().expect("net")];
        r.hosts = vec!["*.example".into()];
        r.methods = vec![http::Method::POST];
        r.paths = vec!["/v1/chat/completions".into()];
        let policy = Policy {
            region: None,
            rules: vec![r],
        };
        let ok = principal(PrincipalKind::Jwt, "alice", &["ml"], &[]);
        assert_eq!(
            policy
                .decide(&facts(&ok, "/v1/chat/completions", None))
                .action,
            Action::Allow
        );
        let wrong_group = principal(PrincipalKind::Jwt, "bob", &["hr"], &[]);
        assert_eq!(
            policy
                .decide(&facts(&wrong_group, "/v1/chat/completions", None))
                .action,
            Action::Deny
        );
        let wrong_kind = principal(PrincipalKind::ApiKey, "alice", &["ml"], &[]);
        assert_eq!(
            policy
                .decide(&facts(&wrong_kind, "/v1/chat/completions", None))
                .action,
            Action::Deny
        );
        assert_eq!(
            policy.decide(&facts(&ok, "/v1/embeddings", None)).action,
            Action::Deny
        );
    }

    #[test]
    fn attributes_must_match() {
        let mut r = rule("search-team", Action::Allow);
        r.attributes
            .insert("team".into(), vec!["search".into(), "ranking".into()]);
        let policy = Policy {
            region: None,
            rules: vec![r],
        };
        let mut p = principal(PrincipalKind::ApiKey, "k", &[], &[]);
        assert_eq!(
            policy.decide(&facts(&p, "/", None)).action,
            Action::Deny,
            "no attribute"
        );
        p.attributes.insert("team".into(), "ads".into());
        assert_eq!(policy.decide(&facts(&p, "/", None)).action, Action::Deny);
        p.attributes.insert("team".into(), "ranking".into());
        assert_eq!(policy.decide(&facts(&p, "/", None)).action, Action::Allow);
    }

    #[test]
    fn path_patterns() {
        assert!(path_matches("/v1/models", "/v1/models"));
        assert!(!path_matches("/v1/models", "/v1/models/x"));
        assert!(path_matches("/v1/*/completions", "/v1/chat/completions"));
        assert!(!path_matches("/v1/*/completions", "/v1/a/b/completions"));
        assert!(path_matches("/v1/**", "/v1/chat/completions"));
        assert!(path_matches("/v1/**", "/v1"));
        assert!(!path_matches("/v1/**", "/v2/x"));
        assert!(!path_matches("/v1/chat", "/v1/chatter"));
    }

    #[test]
    fn traversal_is_not_canonical() {
        for bad in [
            "/v1/chat/../admin",
            "/v1/./x",
            "/v1//x",
            "/v1/%2e%2e/admin",
            "/v1/chat%2fx",
            "/v1\\x",
            "/a/%00",
            "/v1/%252e",
            "/v1/%2F",
            "/v1/%5C",
            "/v1/%2E%2e/x",
        ] {
            assert!(canonical_path(bad).is_err(), "{bad}");
        }
        for good in [
            "/",
            "/v1/chat/completions",
            "/v1/models/",
            "/v1/a.b",
            "/v1/..x",
        ] {
            assert!(canonical_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob("gpt-*", "gpt-4o"));
        assert!(glob("*", "anything"));
        assert!(glob("spiffe://moat.local/*", "spiffe://moat.local/client"));
        assert!(!glob("gpt-*", "claude"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(glob("a*b*c*d", "a1b2c3d"));
        assert!(!glob("a*b*c*d", "a1c2b3d"));
        assert!(glob("**", ""));
        assert!(glob("a**b", "ab"));
        assert!(!glob("ab*ba", "aba"));
        assert!(!glob("exact", "exact-not"));
    }

    #[test]
    fn host_patterns() {
        assert!(host_matches("*.example", "a.example"));
        assert!(host_matches("*.example", "A.B.Example"));
        assert!(!host_matches("*.example", ".example"));
        assert!(!host_matches("*.example", "example"));
        assert!(!host_matches("*.example", "aexample"));
        assert!(host_matches("model.example", "MODEL.example"));
        assert!(!host_matches("model.example", "model.example.evil"));
    }
}
