//! Transparent mode (`listener[].mode = "transparent"`): connections that nftables `redirect`
//! (or TPROXY) sends to moat although the client addressed the model.
//!
//! moat learns where the client meant to go (`SO_ORIGINAL_DST` after a NAT redirect, else the
//! connection's local address, which TPROXY preserves) and forwards only when that destination
//! is an upstream moat knows: its `address` or its `transparent_address`. Anything else is
//! refused and audited. What the client sends decides how it is served, through the same
//! pipeline as any listener: a TLS handshake is terminated with moat's certificates; plain
//! HTTP/1.1 (or HTTP/2 with prior knowledge) is served as it comes. Other protocols are refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::audit::record::TlsFacts;
use crate::error::{Reject, Side};
use crate::identity::PeerCert;
use crate::proxy::{ClientAddr, Route};

/// Where a redirected connection was going.
pub fn original_destination(tcp: &TcpStream) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    if let Ok(a) = getsockopt(&tcp.as_fd(), sockopt::OriginalDst) {
        let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
        return Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)));
    }
    if let Ok(a) = getsockopt(&tcp.as_fd(), sockopt::Ip6tOriginalDst) {
        let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
        return Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)));
    }
    // TPROXY keeps the original destination as the local address.
    tcp.local_addr().ok()
}

/// The upstream a destination belongs to.
fn upstream_for(route: &Route, dst: SocketAddr) -> Option<String> {
    let mut names: Vec<&String> = route.upstreams.keys().collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let c = route.upstreams.get(name)?.config();
        let direct = matches!(&c.address, crate::config::UpstreamAddr::Tcp(a) if *a == dst);
        (direct || c.transparent_address == Some(dst)).then(|| name.clone())
    })
}

fn refuse(route: &Route, client: ClientAddr, kind: &'static str, detail: String) {
    let r = Reject {
        status: http::StatusCode::FORBIDDEN,
        kind,
        message: "connection refused",
        side: Side::Downstream,
    };
    crate::pipeline::record_refusal(route, &r, None, None, &detail, client);
}

/// Serves one redirected connection.
pub async fn serve(
    tcp: TcpStream,
    client: ClientAddr,
    acceptor: Option<TlsAcceptor>,
    route: Arc<Route>,
    updates: watch::Receiver<Arc<Route>>,
) {
    let Some(dst) = original_destination(&tcp) else {
        return refuse(
            &route,
            client,
            "transparent_destination_refused",
            "original destination unknown".into(),
        );
    };
    let Some(upstream) = upstream_for(&route, dst) else {
        return refuse(
            &route,
            client,
            "transparent_destination_refused",
            format!("original destination {dst} is not an allowed upstream"),
        );
    };
    // The connection goes to the upstream it was meant for (a policy rule may still name
    // another).
    let mut meant = (*route).clone();
    meant.default_upstream = upstream;
    let route = Arc::new(meant);
    let mut first = [0u8; 24];
    let n = match tokio::time::timeout(route.http.header_timeout, tcp.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return,
    };
    let head = &first[..n];
    if head[0] == 0x16 {
        let Some(acceptor) = acceptor else {
            return refuse(
                &route,
                client,
                "transparent_protocol_refused",
                "TLS on a listener without TLS".into(),
            );
        };
        let Ok(Ok(tls)) =
            tokio::time::timeout(route.http.header_timeout, acceptor.accept(tcp)).await
        else {
            return;
        };
        let conn = tls.get_ref().1;
        let facts = TlsFacts {
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
        };
        let peer_cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| PeerCert {
                der: c.as_ref().to_vec(),
            });
        if conn.alpn_protocol() == Some(b"h2") {
            crate::h2::serve(tls, client, facts, peer_cert, route, updates).await;
        } else {
            crate::proxy::serve(tls, client, facts, peer_cert, route, updates).await;
        }
        return;
    }
    if head.starts_with(b"PRI * HTTP/2.0") {
        crate::h2::serve(tcp, client, TlsFacts::default(), None, route, updates).await;
        return;
    }
    if looks_like_http1(head) {
        crate::proxy::serve(tcp, client, TlsFacts::default(), None, route, updates).await;
        return;
    }
    refuse(
        &route,
        client,
        "transparent_protocol_refused",
        format!("not TLS or HTTP, to {dst}"),
    );
}

/// An HTTP/1 request line's start: a method token and a space.
fn looks_like_http1(head: &[u8]) -> bool {
    let method = head.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method) && head.get(method) == Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::looks_like_http1;

    #[test]
    fn sniffs_http1() {
        assert!(looks_like_http1(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http1(b"POST /v1 HTTP/1.1"));
        assert!(!looks_like_http1(b"\x16\x03\x01"));
        assert!(!looks_like_http1(b"SSH-2.0-OpenSSH"));
        assert!(!looks_like_http1(b"G"));
    }
}
