//! A downstream connection once accepted: its TLS facts read, then served as HTTP/2 when ALPN
//! (or the h2c preface) says so, else as HTTP/1.1. Shared by ordinary and transparent
//! listeners.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

use crate::audit::record::TlsFacts;
use crate::identity::PeerCert;
use crate::protocol::ClientAddr;
use crate::route::{Peer, Route, Routes};

/// Serves a connection past its TLS handshake.
///
/// The stream comes boxed: each layer that serves it (this one, the protocol, its reader) holds
/// a pointer, not a copy of the TLS state, for as long as the connection lives.
pub(crate) async fn serve_tls(
    tls: Box<TlsStream<TcpStream>>,
    client: ClientAddr,
    route: Arc<Route>,
    updates: watch::Receiver<Arc<Route>>,
) {
    let conn = tls.get_ref().1;
    let peer = Peer::new(
        client,
        Arc::new(tls_facts(conn)),
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| PeerCert {
                der: c.as_ref().to_vec(),
            }),
    );
    if conn.alpn_protocol() == Some(b"h2") {
        // Boxed: the HTTP/1.1 connection's state does not have to make room for HTTP/2's.
        Box::pin(crate::http2::serve(tls, peer, Routes::new(route, updates))).await;
    } else {
        crate::http1::serve(tls, peer, Routes::new(route, updates)).await;
    }
}

/// Serves a cleartext connection: HTTP/2 with prior knowledge when `h2`, else HTTP/1.1.
pub(crate) async fn serve_plain(
    tcp: TcpStream,
    client: ClientAddr,
    h2: bool,
    route: Arc<Route>,
    updates: watch::Receiver<Arc<Route>>,
) {
    let peer = Peer::new(client, Arc::default(), None);
    if h2 {
        crate::http2::serve(tcp, peer, Routes::new(route, updates)).await;
    } else {
        crate::http1::serve(tcp, peer, Routes::new(route, updates)).await;
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
