//! PROXY protocol version 2 on listeners behind a load balancer (`listener[].proxy_protocol_from`).
//!
//! A connection from a trusted source must begin with a PROXY v2 header; its source address
//! becomes the client address moat authorizes, logs and audits. A connection from anywhere else
//! that begins with one is refused (a client must not be able to claim an address), and one that
//! does not is served as usual. Listeners without trusted sources never look for a header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The 12 bytes every PROXY v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Largest header accepted (addresses and TLVs).
const MAX_LEN: usize = 1024;

/// Why a connection's PROXY header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// A trusted source sent no header.
    #[error("no PROXY v2 header from a trusted source")]
    Missing,
    /// A trusted source sent a version 1 (text) header.
    #[error("PROXY v1 header: only v2 is accepted")]
    V1,
    /// A header from a source not in `proxy_protocol_from`.
    #[error("PROXY header from an untrusted source")]
    Untrusted,
    /// The header does not parse.
    #[error("malformed PROXY v2 header: {0}")]
    Malformed(&'static str),
    /// The header did not arrive in time, or the connection failed.
    #[error("PROXY v2 header not received: {0}")]
    Io(String),
}

/// Parses a complete header (signature included). `Ok(None)`: a LOCAL command or an address
/// family without an address (the connection's own peer stands).
pub fn parse(h: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    if h.len() < 16 || h[..12] != SIGNATURE {
        return Err(ProxyError::Malformed("bad signature"));
    }
    let (ver_cmd, fam) = (h[12], h[13]);
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("not version 2"));
    }
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    let body = h
        .get(16..16 + len)
        .ok_or(ProxyError::Malformed("shorter than its length"))?;
    match ver_cmd & 0x0f {
        0x0 => return Ok(None), // LOCAL: a health check from the balancer itself.
        0x1 => {}
        _ => return Err(ProxyError::Malformed("unknown command")),
    }
    match fam >> 4 {
        0x1 => {
            let a = body
                .get(..12)
                .ok_or(ProxyError::Malformed("short IPv4 addresses"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        0x2 => {
            let a = body
                .get(..36)
                .ok_or(ProxyError::Malformed("short IPv6 addresses"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        _ => Ok(None),
    }
}

/// Reads the PROXY header a connection must (or must not) carry; returns the client address.
pub async fn accept(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    trusted: &[IpNet],
    within: Duration,
) -> Result<SocketAddr, ProxyError> {
    if trusted.is_empty() {
        return Ok(peer);
    }
    let io = |e: std::io::Error| ProxyError::Io(e.to_string());
    if !trusted.iter().any(|n| n.contains(&peer.ip())) {
        // Not trusted: look (without consuming) whether it starts like a header.
        let starts = tokio::time::timeout(within, starts_with_signature(tcp))
            .await
            .map_err(|_| ProxyError::Io("timed out".into()))?
            .map_err(io)?;
        return if starts {
            Err(ProxyError::Untrusted)
        } else {
            Ok(peer)
        };
    }
    let read = async {
        let mut head = [0u8; 16];
        tcp.read_exact(&mut head).await.map_err(io)?;
        if head[..12] != SIGNATURE {
            return Err(if head.starts_with(b"PROXY ") {
                ProxyError::V1
            } else {
                ProxyError::Missing
            });
        }
        let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
        if len > MAX_LEN {
            return Err(ProxyError::Malformed("longer than 1024 bytes"));
        }
        let mut all = head.to_vec();
        all.resize(16 + len, 0);
        tcp.read_exact(&mut all[16..]).await.map_err(io)?;
        Ok(parse(&all)?.unwrap_or(peer))
    };
    tokio::time::timeout(within, read)
        .await
        .map_err(|_| ProxyError::Io("timed out".into()))?
}

/// Whether the first bytes (peeked, not consumed) are the PROXY v2 signature.
async fn starts_with_signature(tcp: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 12];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 || buf[..n] != SIGNATURE[..n] {
            return Ok(false);
        }
        if n == SIGNATURE.len() {
            return Ok(true);
        }
        // A prefix of the signature so far: wait for more.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A PROXY v2 header for `src` → `dst`.
#[cfg(test)]
fn header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.push(0x21);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&v6(d).octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_writes_and_refuses_the_rest() {
        let src: SocketAddr = "203.0.113.7:5555".parse().expect("addr");
        let dst: SocketAddr = "10.0.0.1:8443".parse().expect("addr");
        assert_eq!(parse(&header(src, dst)), Ok(Some(src)));
        let src6: SocketAddr = "[2001:db8::7]:5555".parse().expect("addr");
        let dst6: SocketAddr = "[2001:db8::1]:8443".parse().expect("addr");
        assert_eq!(parse(&header(src6, dst6)), Ok(Some(src6)));
        let mut local = header(src, dst);
        local[12] = 0x20;
        assert_eq!(parse(&local), Ok(None));
        let mut v1 = header(src, dst);
        v1[12] = 0x11;
        assert!(matches!(parse(&v1), Err(ProxyError::Malformed(_))));
        let short = &header(src, dst)[..20];
        assert!(matches!(parse(short), Err(ProxyError::Malformed(_))));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(ProxyError::Malformed(_))
        ));
    }

    /// A trusted balancer sending a text (v1) header is told that only v2 is accepted.
    #[tokio::test]
    async fn a_v1_header_is_named_as_such() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 8443\r\n")
                .await
                .expect("write");
            c
        });
        let (mut tcp, peer) = listener.accept().await.expect("accept");
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("net")];
        let got = accept(&mut tcp, peer, &trusted, Duration::from_secs(5)).await;
        assert_eq!(got, Err(ProxyError::V1));
        assert_eq!(
            ProxyError::V1.to_string(),
            "PROXY v1 header: only v2 is accepted"
        );
        drop(client.await);
    }
}
