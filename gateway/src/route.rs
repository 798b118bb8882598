//! What a request is served with: the listener's [`Route`] (limits, upstreams, identity,
//! policy, redaction, audit) and the [`Peer`] facts of the connection it came on. Both sit below
//! the protocol modules and the request sequence, which only read them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::audit::record::{GuardFacts, TlsFacts};
use crate::audit::Auditor;
use crate::config::{Http2Config, HttpConfig};
use crate::identity::{Identifier, PeerCert, Source};
use crate::policy::Policy;
use crate::protocol::h1::Limits;
use crate::protocol::{ClientAddr, ClientText};
use crate::redact::Profile;
use crate::upstream::Upstream;

/// What a listener's connections share. A reload replaces it whole; a request keeps the one it
/// started with.
#[derive(Debug, Clone)]
pub struct Route {
    /// Listener name, for logs, records and metric labels (shared by them).
    pub listener: Arc<str>,
    /// moat's region (`residency.region`), stamped on every request and refusal record.
    pub region: Option<Arc<str>>,
    /// HTTP limits and timeouts.
    pub http: HttpConfig,
    /// HTTP/2 limits.
    pub http2: Http2Config,
    /// Becomes true when moat shuts down: connections finish what is in flight and close.
    pub drain: tokio::sync::watch::Receiver<bool>,
    /// Upstream used unless the deciding policy rule names another.
    pub default_upstream: Arc<str>,
    /// Every upstream, by name.
    pub upstreams: Arc<HashMap<String, Arc<Upstream>>>,
    /// The audit trail.
    pub audit: Auditor,
    /// Whether responses wait for their record to be durable (`fsync = "always"`).
    pub audit_waits: bool,
    /// The guard's state, stamped on request records.
    pub guard: Arc<GuardFacts>,
    /// Identity sources of this listener, in order.
    pub identity_sources: Vec<Source>,
    /// Verifies credentials.
    pub identifier: Arc<Identifier>,
    /// Pass the principal upstream in `x-moat-*` headers.
    pub forward_identity: bool,
    /// Authorization rules.
    pub policy: Arc<Policy>,
    /// Redaction profiles by name.
    pub profiles: Arc<BTreeMap<String, Arc<Profile>>>,
    /// This listener's request-duration histogram (looked up once, not per request).
    pub request_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Route {
    /// The pace this listener's request bodies must keep.
    pub fn body_pace(&self) -> crate::protocol::pace::BodyPace {
        crate::protocol::pace::BodyPace {
            allowance: self.http.body_timeout,
            min_rate: self.http.min_body_rate,
        }
    }

    /// The request-head limits of this listener.
    pub fn limits(&self) -> Limits {
        Limits {
            max_request_line: self.http.max_request_line_bytes,
            max_head: self.http.max_header_bytes,
            max_headers: self.http.max_headers,
        }
    }
}

/// A connection's route and the reloads it picks up: a reload applies from the next request
/// (HTTP/1.1) or stream (HTTP/2) on; the one in flight keeps its configuration.
#[derive(Debug)]
pub struct Routes {
    current: Arc<Route>,
    updates: tokio::sync::watch::Receiver<Arc<Route>>,
}

impl Routes {
    /// `current`, replaced by what `updates` carries from now on.
    pub fn new(current: Arc<Route>, updates: tokio::sync::watch::Receiver<Arc<Route>>) -> Self {
        Self { current, updates }
    }

    /// The route in force now.
    pub fn current(&self) -> &Arc<Route> {
        &self.current
    }

    /// The route for the next request: the newest reload's, if one came.
    pub fn latest(&mut self) -> &Arc<Route> {
        if self.updates.has_changed().unwrap_or(false) {
            self.current = self.updates.borrow_and_update().clone();
        }
        &self.current
    }
}

/// The facts of one downstream connection that every request on it shares.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Who opened it.
    pub client: ClientAddr,
    /// The same, as text: formatted once for the connection, shared by its requests' records
    /// and forwarding headers.
    pub text: ClientText,
    /// Its TLS session (empty for cleartext h2c and plain transparent connections).
    pub tls: Arc<TlsFacts>,
    /// The client certificate it presented, if any.
    pub cert: Option<PeerCert>,
}

impl Peer {
    /// A connection from `client`.
    pub fn new(client: ClientAddr, tls: Arc<TlsFacts>, cert: Option<PeerCert>) -> Self {
        Self {
            client,
            text: ClientText::of(client),
            tls,
            cert,
        }
    }
}
