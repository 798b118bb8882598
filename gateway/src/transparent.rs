//! Transparent mode (`listener[].mode = "transparent"`): connections that nftables `redirect`
//! (or TPROXY) sends to moat although the client addressed the model.
//!
//! moat learns where the client meant to go (`SO_ORIGINAL_DST` after a NAT redirect, else the
//! connection's local address, which TPROXY preserves) and forwards only when that destination
//! is an upstream moat knows: its `address` or its `transparent_address`. Anything else is
//! refused and audited. What the client sends decides how it is served, through the same
//! pipeline as any listener: a TLS handshake is terminated with moat's certificates; plain
//! HTTP/1.1 (or HTTP/2 with prior knowledge) is served as it comes. TLS for a name moat holds
//! no certificate for, and other protocols, are passed through as bytes to that upstream with one
//! audit record per connection when the listener says `passthrough = true`, else refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::error::{Reject, Side};
use crate::protocol::ClientAddr;
use crate::route::Route;

/// What a transparent listener needs besides its route.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server names moat holds certificates for.
    pub names: Arc<Vec<String>>,
    /// Pass other connections through instead of refusing them.
    pub passthrough: bool,
}

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
    crate::pipeline::record_refusal(
        route,
        &r,
        None,
        None,
        &detail,
        &crate::protocol::ClientText::of(client),
    );
}

/// Serves one redirected connection.
pub async fn serve(
    tcp: TcpStream,
    client: ClientAddr,
    acceptor: Option<TlsAcceptor>,
    options: &Options,
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
    meant.default_upstream = upstream.into();
    let route = Arc::new(meant);
    let mut first = [0u8; 24];
    let n = match tokio::time::timeout(route.http.header_timeout, tcp.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return,
    };
    let head = &first[..n];
    if head[0] == 0x16 {
        let hello = peek_record(&tcp, route.http.header_timeout).await;
        let sni = client_hello_sni(&hello);
        // Without SNI (clients addressing an IP) moat's default certificate answers.
        let ours = sni
            .as_deref()
            .is_none_or(|s| crate::tls::holds_name(&options.names, s));
        if !ours {
            if options.passthrough {
                return pass(tcp, client, dst, &route, "tls", sni).await;
            }
            return refuse(
                &route,
                client,
                "transparent_passthrough_refused",
                format!("TLS for {sni:?} to {dst}: no certificate for it, and passthrough is off"),
            );
        }
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
        crate::session::serve_tls(Box::new(tls), client, route, updates).await;
        return;
    }
    if head.starts_with(b"PRI * HTTP/2.0") || looks_like_http1(head) {
        let h2 = head.starts_with(b"PRI * HTTP/2.0");
        crate::session::serve_plain(tcp, client, h2, route, updates).await;
        return;
    }
    if options.passthrough {
        return pass(tcp, client, dst, &route, "tcp", None).await;
    }
    refuse(
        &route,
        client,
        "transparent_protocol_refused",
        format!("not TLS or HTTP, to {dst}, and passthrough is off"),
    );
}

/// The first TLS record, peeked (not consumed): the ClientHello.
async fn peek_record(tcp: &TcpStream, within: std::time::Duration) -> Vec<u8> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    let _ = tokio::time::timeout(within, async {
        loop {
            let Ok(n) = tcp.peek(&mut buf).await else {
                return;
            };
            have = n;
            let want = buf
                .get(3..5)
                .filter(|_| n >= 5)
                .map_or(5, |l| 5 + usize::from(u16::from_be_bytes([l[0], l[1]])));
            if n == 0 || n >= want.min(buf.len()) {
                return;
            }
            // Part of the record so far: wait for the rest.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await;
    buf.truncate(have);
    buf
}

/// The server name a ClientHello asks for, if it names one.
pub fn client_hello_sni(b: &[u8]) -> Option<String> {
    // TLS record header, then the handshake header of a ClientHello.
    if b.first() != Some(&22) {
        return None;
    }
    let rec = b.get(5..)?;
    if rec.first() != Some(&1) {
        return None;
    }
    let u16_at = |p: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *rec.get(p)?,
            *rec.get(p + 1)?,
        ])))
    };
    let mut p = 4 + 2 + 32; // handshake header, version, random
    p += 1 + usize::from(*rec.get(p)?); // session id
    p += 2 + u16_at(p)?; // cipher suites
    p += 1 + usize::from(*rec.get(p)?); // compression methods
    let end = (p + 2 + u16_at(p)?).min(rec.len());
    p += 2;
    while p + 4 <= end {
        let (ty, len) = (u16_at(p)?, u16_at(p + 2)?);
        p += 4;
        if ty == 0 {
            // server_name: list length, then entries of type, length, name.
            let list = rec.get(p..p + len)?;
            if list.get(2) != Some(&0) {
                return None;
            }
            let n = usize::from(u16::from_be_bytes([*list.get(3)?, *list.get(4)?]));
            let name = list.get(5..5 + n)?;
            return std::str::from_utf8(name).ok().map(str::to_ascii_lowercase);
        }
        p += len;
    }
    None
}

/// Passes a connection through to its upstream as bytes, and records it when it ends.
async fn pass(
    mut tcp: TcpStream,
    client: ClientAddr,
    dst: SocketAddr,
    route: &Route,
    protocol: &str,
    sni: Option<String>,
) {
    let started = tokio::time::Instant::now();
    let Some(upstream) = route.upstreams.get(&*route.default_upstream) else {
        return;
    };
    let (bytes_in, bytes_out, failed) = match upstream.connect().await {
        Ok(conn) => {
            let mut up = conn.reader.io;
            match tokio::io::copy_bidirectional(&mut tcp, &mut up).await {
                Ok((i, o)) => (i, o, None),
                Err(e) => (0, 0, Some(e.to_string())),
            }
        }
        Err(e) => (0, 0, Some(e.to_string())),
    };
    let record = crate::audit::record::ConnectionRecord {
        listener: route.listener.clone(),
        client: client.0.to_string(),
        destination: dst.to_string(),
        upstream: upstream.label.to_string(),
        protocol: protocol.to_owned(),
        sni,
        bytes_in,
        bytes_out,
        duration_ms: crate::telemetry::millis(started),
        failed,
    };
    let _ = route
        .audit
        .record(crate::audit::Record::Connection(Box::new(record)));
}

/// An HTTP/1 request line's start: a method token and a space.
fn looks_like_http1(head: &[u8]) -> bool {
    let method = head.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method) && head.get(method) == Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::{client_hello_sni, looks_like_http1};

    /// A real ClientHello (from rustls) names its server.
    #[test]
    fn finds_the_sni_of_a_client_hello() {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("Model.Example").expect("name");
        let mut conn =
            rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).expect("hello");
        assert_eq!(client_hello_sni(&hello).as_deref(), Some("model.example"));
        for cut in 0..hello.len() {
            // Never panics on a cut record; a cut before the name finds none.
            let _ = client_hello_sni(&hello[..cut]);
        }
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1"), None);
    }

    #[test]
    fn sniffs_http1() {
        assert!(looks_like_http1(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http1(b"POST /v1 HTTP/1.1"));
        assert!(!looks_like_http1(b"\x16\x03\x01"));
        assert!(!looks_like_http1(b"SSH-2.0-OpenSSH"));
        assert!(!looks_like_http1(b"G"));
    }
}
