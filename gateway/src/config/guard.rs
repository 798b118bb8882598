//! `[guard]`: the eBPF egress fence around the model workload.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::validate::Validator;
use super::{raw, ConfigError, ListenerConfig};
use crate::guard::{AllowRule, GuardConfig, GuardMode};

impl Validator<'_> {
    pub(super) fn guard(
        &self,
        g: &raw::RawGuard,
        listeners: &[ListenerConfig],
    ) -> Result<GuardConfig, ConfigError> {
        let d = GuardConfig::default();
        let mode = match g.mode.as_deref() {
            None | Some("off") => GuardMode::Off,
            Some("monitor") => GuardMode::Monitor,
            Some("enforce") => GuardMode::Enforce,
            Some(v) => {
                return Err(self.invalid(
                    "guard.mode",
                    v,
                    "expected \"enforce\", \"monitor\" or \"off\"",
                ))
            }
        };
        let mut allow = Vec::new();
        for (i, a) in g.allow.iter().enumerate() {
            let rule: AllowRule = a.parse().map_err(|e: crate::guard::rules::RuleError| {
                self.invalid(
                    &format!("guard.allow.{i}"),
                    a,
                    format!("{e} (expected NET[:PORT][/PROTO], e.g. 10.0.0.53:53/udp)"),
                )
            })?;
            allow.push(rule);
        }
        for (i, a) in g.gateway.iter().enumerate() {
            let addr: SocketAddr = a.parse().map_err(|_| {
                self.invalid(
                    &format!("guard.gateway.{i}"),
                    a,
                    "expected IP:port such as 10.1.2.3:443",
                )
            })?;
            allow.push(AllowRule::gateway(addr));
        }
        if let Err(e) = crate::guard::rules::compile(&allow) {
            return Err(self.invalid("guard.allow", allow.len(), e.to_string()));
        }
        let mut cgroups = Vec::new();
        for (i, c) in g.cgroups.iter().enumerate() {
            let p = PathBuf::from(c);
            if p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
                || c.is_empty()
            {
                return Err(self.invalid(
                    &format!("guard.cgroups.{i}"),
                    c,
                    "expected a cgroup directory without `..`",
                ));
            }
            cgroups.push(p);
        }
        if mode != GuardMode::Off && cgroups.is_empty() {
            return Err(ConfigError::Missing {
                path: "guard.cgroups".to_owned(),
                reason: "at least one cgroup to fence when guard.mode is not \"off\"".to_owned(),
            });
        }
        // moat's own listeners always serve clients from outside: their replies must leave.
        let mut serve_ports: Vec<u16> = listeners.iter().map(|l| l.address.port()).collect();
        serve_ports.extend(g.serve_ports.iter().copied());
        serve_ports.sort_unstable();
        serve_ports.dedup();
        if let Some(i) = g.serve_ports.iter().position(|&p| p == 0) {
            return Err(self.invalid(&format!("guard.serve_ports.{i}"), 0, "a port is 1–65535"));
        }
        let pin_dir = match &g.pin_dir {
            None => d.pin_dir,
            Some(p) if p.starts_with('/') => PathBuf::from(p),
            Some(p) => {
                return Err(self.invalid("guard.pin_dir", p, "expected an absolute path on bpffs"))
            }
        };
        Ok(GuardConfig {
            mode,
            cgroups,
            allow,
            serve_ports,
            required: g.required.unwrap_or(d.required),
            pin_dir,
        })
    }
}
