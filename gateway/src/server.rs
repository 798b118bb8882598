//! Composition: listeners accept TCP, the TLS stage terminates it, the proxy serves HTTP/1.1 on
//! it. This is the one place the stages are wired together; read it top to bottom.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::audit::record::{GuardFacts, TlsFacts};
use crate::audit::Auditor;
use crate::config::Config;
use crate::proxy::{self, ClientAddr, Route};
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

/// A gateway whose listeners are bound; [`Gateway::run`] serves until shutdown.
pub struct Gateway {
    listeners: Vec<(TcpListener, Arc<Route>)>,
    acceptor: TlsAcceptor,
    handshake_timeout: std::time::Duration,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listeners", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads TLS material, creates upstream pools and binds every listener. Every request is
    /// recorded through `audit`; `guard` is the egress guard's state stamped on each record.
    pub async fn bind(
        config: &Config,
        audit: Auditor,
        guard: GuardFacts,
    ) -> Result<Self, StartError> {
        let acceptor = TlsAcceptor::from(tls::server_config(&config.tls)?);
        let upstreams: std::collections::HashMap<&str, Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|(name, u)| (name.as_str(), Upstream::new(name.clone(), u.clone())))
            .collect();
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let socket = TcpListener::bind(l.address)
                .await
                .map_err(|source| StartError::Bind {
                    addr: l.address,
                    source,
                })?;
            // Validation guarantees the upstream exists; an absent one would be a bug, so fail
            // loudly rather than serve a listener with nowhere to send requests.
            let Some(upstream) = upstreams.get(l.upstream.as_str()) else {
                return Err(StartError::Bind {
                    addr: l.address,
                    source: std::io::Error::other(format!("unknown upstream {}", l.upstream)),
                });
            };
            let route = Arc::new(Route {
                listener: l.name.clone(),
                http: config.http.clone(),
                upstream: upstream.clone(),
                upstream_label: format!("{}@{}", l.upstream, upstream.config().address),
                audit: audit.clone(),
                audit_waits: config.audit.fsync == crate::audit::FsyncMode::Always,
                guard: guard.clone(),
            });
            listeners.push((socket, route));
        }
        Ok(Self {
            listeners,
            acceptor,
            handshake_timeout: config.http.header_timeout,
        })
    }

    /// The bound addresses, in configuration order.
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Accepts and serves connections until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut accept_loops = JoinSet::new();
        for (listener, route) in self.listeners {
            let acceptor = self.acceptor.clone();
            let handshake_timeout = self.handshake_timeout;
            accept_loops.spawn(accept_loop(listener, route, acceptor, handshake_timeout));
        }
        let _ = shutdown.wait_for(|stop| *stop).await;
        accept_loops.abort_all();
    }
}

async fn accept_loop(
    listener: TcpListener,
    route: Arc<Route>,
    acceptor: TlsAcceptor,
    handshake_timeout: std::time::Duration,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let route = route.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let facts = tls_facts(tls.get_ref().1);
            proxy::serve(tls, ClientAddr(peer), facts, route).await;
        });
    }
}

/// What the audit trail records of a TLS session.
fn tls_facts(conn: &rustls::ServerConnection) -> TlsFacts {
    TlsFacts {
        version: conn.protocol_version().map(|v| format!("{v:?}")),
        cipher: conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite())),
        sni: conn.server_name().map(str::to_owned),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        client_cert_sha256: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| crate::audit::sha256_hex(c.as_ref())),
    }
}
