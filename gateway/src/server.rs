//! Composition: listeners accept TCP, the TLS stage terminates it, the proxy serves HTTP/1.1 on
//! it with identity, policy and audit. This is the one place the stages are wired together; read
//! it top to bottom.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::audit::record::GuardFacts;
use crate::audit::Auditor;
use crate::config::Config;
use crate::identity::Identifier;
use crate::protocol::ClientAddr;
use crate::route::Route;
use crate::tls;
use crate::upstream::Upstream;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A bound listener with everything its connections need.
struct Listener {
    socket: TcpListener,
    /// What new connections are served with; replaced whole by a reload.
    served: watch::Receiver<Arc<Served>>,
    /// The route alone, which open connections pick up for their next request.
    routes: watch::Receiver<Arc<Route>>,
    /// Its open connections, against its caps.
    counts: Arc<crate::caps::Counts>,
}

/// What a listener serves new connections with. A connection keeps the one it started with,
/// so a reload never changes a request in flight.
struct Served {
    route: Arc<Route>,
    /// Redirected connections: forwarded by their original destination.
    transparent: Option<crate::transparent::Options>,
    /// TLS, or none for an h2c listener.
    acceptor: Option<TlsAcceptor>,
    /// Sources whose connections start with a PROXY v2 header.
    proxy_from: Arc<Vec<ipnet::IpNet>>,
    /// Connection caps.
    caps: crate::caps::Limits,
}

/// Binds a listening socket with `backlog` queued connections; `tproxy` sets `IP_TRANSPARENT`
/// first (needs `CAP_NET_ADMIN`), so TPROXY can hand it connections for addresses that are not
/// the host's.
fn listen(addr: std::net::SocketAddr, tproxy: bool, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if tproxy {
        use std::os::fd::AsFd;
        let fd = socket.as_fd();
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::IpTransparent, &true)
            .map_err(std::io::Error::from)?;
    }
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Builds what each configured listener serves with: routes (upstream pools, policy, redaction
/// profiles, identity), TLS acceptors with their certificates, PROXY sources.
fn build(
    config: &Config,
    audit: &Auditor,
    guard: &GuardFacts,
    identifier: Arc<Identifier>,
    drain: &watch::Receiver<bool>,
) -> Result<Vec<(std::net::SocketAddr, Served)>, StartError> {
    let upstreams: Arc<HashMap<String, Arc<Upstream>>> = Arc::new(
        config
            .upstreams
            .iter()
            .map(|(name, u)| (name.clone(), Upstream::new(name.clone(), u.clone())))
            .collect(),
    );
    let policy = Arc::new(config.policy.clone());
    let profiles = Arc::new(config.redaction.clone());
    let plain = tls::server_config(&config.tls)?;
    let names = Arc::new(tls::server_names(&config.tls));
    let mut out = Vec::new();
    for l in &config.listeners {
        let tls_config = match &l.client_ca {
            None => plain.clone(),
            Some(ca) => tls::server_config_with(
                &config.tls,
                Some(&tls::ClientAuth {
                    ca_file: ca.clone(),
                    required: l.client_cert_required,
                }),
            )?,
        };
        let route = Arc::new(Route {
            listener: l.name.as_str().into(),
            region: config.policy.region.as_deref().map(Arc::from),
            http: config.http.clone(),
            http2: config.http2.clone(),
            drain: drain.clone(),
            default_upstream: l.upstream.as_str().into(),
            upstreams: upstreams.clone(),
            audit: audit.clone(),
            audit_waits: config.audit.fsync == crate::audit::FsyncMode::Always,
            guard: Arc::new(guard.clone()),
            identity_sources: l.identity.clone(),
            identifier: identifier.clone(),
            forward_identity: config.identity.forward_headers,
            policy: policy.clone(),
            profiles: profiles.clone(),
            request_seconds: crate::metrics::METRICS
                .request_seconds
                .get_or_create(&crate::metrics::ListenerLabels {
                    listener: l.name.as_str().into(),
                })
                .clone(),
        });
        out.push((
            l.address,
            Served {
                route,
                transparent: l.transparent.then(|| crate::transparent::Options {
                    names: names.clone(),
                    passthrough: l.passthrough,
                }),
                acceptor: (!l.h2c).then(|| TlsAcceptor::from(tls_config)),
                proxy_from: Arc::new(l.proxy_protocol_from.clone()),
                caps: crate::caps::Limits {
                    total: l.max_connections,
                    per_ip: l.max_connections_per_ip,
                },
            },
        ));
    }
    Ok(out)
}

/// A running listener's address and where its new configuration goes.
type ListenerHandles = (
    std::net::SocketAddr,
    watch::Sender<Arc<Served>>,
    watch::Sender<Arc<Route>>,
);

/// Swaps a new configuration into running listeners.
#[derive(Clone)]
pub struct Reloader {
    senders: Arc<Vec<ListenerHandles>>,
    audit: Auditor,
    guard: GuardFacts,
    drain: watch::Receiver<bool>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    /// Builds everything `config` needs (certificates and keys loaded, policy and profiles
    /// compiled) and only then swaps it in, every listener at once; connections in flight keep
    /// what they started with. Listener addresses cannot change without a restart: a config
    /// that changes them is refused, like one that does not build, and the running one stays.
    pub fn apply(&self, config: &Config, identifier: Arc<Identifier>) -> Result<(), String> {
        let built = build(config, &self.audit, &self.guard, identifier, &self.drain)
            .map_err(|e| e.to_string())?;
        let running: Vec<_> = self.senders.iter().map(|(a, ..)| *a).collect();
        let wanted: Vec<_> = built.iter().map(|(a, _)| *a).collect();
        if running != wanted {
            return Err(format!(
                "listener addresses {wanted:?} differ from the running {running:?}; they change \
                 with a restart"
            ));
        }
        for ((_, served_tx, routes_tx), (_, served)) in self.senders.iter().zip(built) {
            routes_tx.send_replace(served.route.clone());
            served_tx.send_replace(Arc::new(served));
        }
        Ok(())
    }
}

/// A gateway whose listeners are bound; [`Gateway::run`] serves until shutdown.
pub struct Gateway {
    listeners: Vec<Listener>,
    handshake_timeout: std::time::Duration,
    drain_timeout: std::time::Duration,
    drain: watch::Sender<bool>,
    connections: Arc<Connections>,
    reloader: Reloader,
}

/// Open client connections, counted so a shutdown can wait for them.
#[derive(Default)]
struct Connections {
    open: std::sync::atomic::AtomicUsize,
    closed: tokio::sync::Notify,
}

/// One open connection; dropping it counts it closed.
struct Open(Arc<Connections>);

impl Open {
    fn new(c: &Arc<Connections>) -> Self {
        c.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        crate::metrics::METRICS.connections_active.inc();
        Self(c.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        crate::metrics::METRICS.connections_active.dec();
        self.0.closed.notify_waiters();
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listeners", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads TLS material, creates upstream pools and binds every listener. Requests are
    /// identified by `identifier`, authorized by the configured policy and recorded through
    /// `audit`; `guard` is the egress guard's state stamped on each record.
    pub async fn bind(
        config: &Config,
        audit: Auditor,
        guard: GuardFacts,
        identifier: Arc<Identifier>,
    ) -> Result<Self, StartError> {
        let (drain, drain_rx) = watch::channel(false);
        let built = build(config, &audit, &guard, identifier, &drain_rx)?;
        let mut listeners = Vec::new();
        let mut senders = Vec::new();
        for ((addr, served), l) in built.into_iter().zip(&config.listeners) {
            let socket = listen(addr, l.tproxy, l.backlog)
                .map_err(|source| StartError::Bind { addr, source })?;
            let (routes_tx, routes) = watch::channel(served.route.clone());
            let (tx, rx) = watch::channel(Arc::new(served));
            listeners.push(Listener {
                socket,
                served: rx,
                routes,
                counts: Arc::default(),
            });
            senders.push((addr, tx, routes_tx));
        }
        Ok(Self {
            listeners,
            handshake_timeout: config.http.header_timeout,
            drain_timeout: config.http.drain_timeout,
            drain,
            connections: Arc::default(),
            reloader: Reloader {
                senders: Arc::new(senders),
                audit,
                guard,
                drain: drain_rx,
            },
        })
    }

    /// Becomes true when the gateway starts draining (for readiness).
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// A handle that swaps in a new configuration (see [`Reloader::apply`]).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The bound addresses, in configuration order.
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.socket.local_addr().ok())
            .collect()
    }

    /// Accepts and serves connections until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut accept_loops = JoinSet::new();
        for l in self.listeners {
            accept_loops.spawn(accept_loop(
                l,
                self.handshake_timeout,
                self.connections.clone(),
            ));
        }
        let _ = shutdown.wait_for(|stop| *stop).await;
        // Stop accepting (the listening sockets close), then let what is in flight finish:
        // HTTP/2 connections get GOAWAY, HTTP/1.1 ones close after their current request.
        accept_loops.abort_all();
        while accept_loops.join_next().await.is_some() {}
        let _ = self.drain.send(true);
        let open = || {
            self.connections
                .open
                .load(std::sync::atomic::Ordering::SeqCst)
        };
        let drained = tokio::time::timeout(self.drain_timeout, async {
            while open() > 0 {
                let closed = self.connections.closed.notified();
                if open() == 0 {
                    break;
                }
                closed.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = open(),
                "drain timeout: closing connections still in flight"
            );
        }
    }
}

async fn accept_loop(
    l: Listener,
    handshake_timeout: std::time::Duration,
    connections: Arc<Connections>,
) {
    loop {
        let (tcp, peer) = match l.socket.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let served = l.served.borrow().clone();
        let caps = served.caps;
        let mut admitted = match l.counts.admit(caps) {
            Ok(a) => a,
            Err(over) => {
                // Closed unserved: nothing is read, no TLS is started.
                cap_refused(&served.route, &l.counts, over, peer);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let counts = l.counts.clone();
        let acceptor = served.acceptor.clone();
        let route = served.route.clone();
        let proxy_from = served.proxy_from.clone();
        let transparent = served.transparent.clone();
        let mut updates = l.routes.clone();
        updates.mark_unchanged();
        let open = Open::new(&connections);
        tokio::spawn(async move {
            let _open = open;
            let mut tcp = tcp;
            // Behind a load balancer: the PROXY v2 header names the client.
            let peer =
                match crate::proxy_protocol::accept(&mut tcp, peer, &proxy_from, handshake_timeout)
                    .await
                {
                    Ok(client) => client,
                    Err(e) => {
                        // The connection is closed; no HTTP was spoken.
                        crate::pipeline::record_connection_refusal(
                            &route,
                            "proxy_protocol_refused",
                            &e.to_string(),
                            &crate::protocol::ClientText::of(ClientAddr(peer)),
                        );
                        return;
                    }
                };
            if let Err(over) = admitted.from_ip(peer.ip(), caps) {
                cap_refused(&route, &counts, over, peer);
                return;
            }
            // The other kinds of connection are boxed, so a TLS connection's state does not
            // have to make room for theirs.
            if let Some(options) = transparent {
                Box::pin(crate::transparent::serve(
                    tcp,
                    ClientAddr(peer),
                    acceptor,
                    &options,
                    route,
                    updates,
                ))
                .await;
                return;
            }
            let Some(acceptor) = acceptor else {
                // h2c: cleartext HTTP/2 with prior knowledge, from this host only.
                Box::pin(crate::session::serve_plain(
                    tcp,
                    ClientAddr(peer),
                    true,
                    route,
                    updates,
                ))
                .await;
                return;
            };
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                    handshake_failed(&route);
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %peer, "TLS handshake timed out");
                    handshake_failed(&route);
                    return;
                }
            };
            crate::session::serve_tls(Box::new(tls), ClientAddr(peer), route, updates).await;
        });
    }
}

/// A connection closed for a cap: counted, and logged at most once a second per listener.
fn cap_refused(
    route: &Route,
    counts: &crate::caps::Counts,
    over: crate::caps::Over,
    peer: std::net::SocketAddr,
) {
    crate::metrics::METRICS
        .connections_refused
        .get_or_create(&crate::metrics::CapLabels {
            listener: route.listener.clone(),
            reason: over.reason(),
        })
        .inc();
    if counts.logged.ready() {
        tracing::warn!(listener = %route.listener, client = %peer, cap = over.reason(), "connection refused: over the connection cap (further refusals this second are counted, not logged)");
    }
}

fn handshake_failed(route: &Route) {
    crate::metrics::METRICS
        .tls_handshake_failures
        .get_or_create(&crate::metrics::ListenerLabels {
            listener: route.listener.clone(),
        })
        .inc();
}
