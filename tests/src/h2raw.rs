//! A raw HTTP/2 client that writes frames exactly as told, for the abuse cases no well-behaved
//! client would send: resets, CONTINUATION and empty DATA floods, HPACK bombs, bad lengths.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Frame types.
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

/// Flags.
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Error codes.
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// What the server sent back, frame by frame.
#[derive(Debug, Default)]
pub struct Seen {
    /// GOAWAY error code, if one came.
    pub goaway: Option<u32>,
    /// RST_STREAM frames: (stream, error code).
    pub resets: Vec<(u32, u32)>,
    /// Streams that got a HEADERS frame (a response).
    pub answered: Vec<u32>,
    /// The connection was closed.
    pub closed: bool,
    /// Acknowledgements of the client's SETTINGS and PING frames.
    pub acks: usize,
}

/// One raw HTTP/2 connection over TLS (ALPN `h2`).
pub struct H2Raw {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
    /// Answer PINGs (as every client must); off to play a dead peer.
    pub answer_pings: bool,
}

impl H2Raw {
    /// Connects, sends the preface and an empty SETTINGS frame.
    pub async fn connect(addr: SocketAddr, ca: &Path) -> Self {
        let mut c = Self::connect_bare(addr, ca).await;
        c.frame(SETTINGS, 0, 0, &[]).await;
        c
    }

    /// Connects and sends the preface's magic only: the client's SETTINGS are left to the test.
    pub async fn connect_bare(addr: SocketAddr, ca: &Path) -> Self {
        let connector = TlsConnector::from(Arc::new(crate::client::tls_config(ca, &[b"h2"])));
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut c = Self {
            tls,
            buf: Vec::new(),
            answer_pings: true,
        };
        c.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        c
    }

    async fn write(&mut self, b: &[u8]) -> bool {
        self.tls.write_all(b).await.is_ok() && self.tls.flush().await.is_ok()
    }

    /// Writes one frame; false once the server has closed.
    pub async fn frame(&mut self, ty: u8, flags: u8, stream: u32, payload: &[u8]) -> bool {
        self.write(&encode_frame(ty, flags, stream, payload)).await
    }

    /// Writes many frames in one write; false once the server has closed.
    pub async fn frames(&mut self, frames: &[Vec<u8>]) -> bool {
        self.write(&frames.concat()).await
    }

    /// Reads frames until the connection closes, a GOAWAY arrives, or `wait` has passed;
    /// answers SETTINGS and PING as a client must.
    pub async fn read(&mut self, wait: Duration) -> Seen {
        let mut seen = Seen::default();
        let until = tokio::time::Instant::now() + wait;
        loop {
            while self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16
                    | usize::from(self.buf[1]) << 8
                    | usize::from(self.buf[2]);
                if self.buf.len() < 9 + len {
                    break;
                }
                let (ty, flags) = (self.buf[3], self.buf[4]);
                let stream =
                    u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                        & 0x7fff_ffff;
                let payload: Vec<u8> = self.buf[9..9 + len].to_vec();
                self.buf.drain(..9 + len);
                match ty {
                    SETTINGS if flags & 1 == 0 => {
                        self.frame(SETTINGS, 1, 0, &[]).await;
                    }
                    SETTINGS | PING if flags & 1 == 1 => seen.acks += 1,
                    PING if flags & 1 == 0 && self.answer_pings => {
                        self.frame(PING, 1, 0, &payload).await;
                    }
                    GOAWAY if payload.len() >= 8 => {
                        seen.goaway = Some(u32::from_be_bytes([
                            payload[4], payload[5], payload[6], payload[7],
                        ]));
                        return seen;
                    }
                    RST_STREAM if payload.len() == 4 => seen.resets.push((
                        stream,
                        u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                    )),
                    HEADERS => seen.answered.push(stream),
                    _ => {}
                }
            }
            let mut tmp = [0u8; 16 * 1024];
            match tokio::time::timeout_at(until, self.tls.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    seen.closed = true;
                    return seen;
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&tmp[..n]),
                Err(_) => return seen,
            }
        }
    }
}

/// One frame's bytes.
pub fn encode_frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix whose other bits are `first`.
pub fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = v - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A header block of literal fields without indexing (names and values sent as they are).
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        literal(&mut out, name.as_bytes(), value.as_bytes(), false);
    }
    out
}

/// Appends one literal field; `index` adds it to the dynamic table.
pub fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8], index: bool) {
    out.push(if index { 0x40 } else { 0x00 });
    hpack_str(out, name);
    hpack_str(out, value);
}

/// The pseudo-headers of a request to moat.
pub fn request(method: &str, path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", method.to_owned()),
        (":scheme", "https".to_owned()),
        (":authority", "localhost".to_owned()),
        (":path", path.to_owned()),
    ]
}

/// [`block`] for owned fields.
pub fn block_owned(fields: &[(&str, String)]) -> Vec<u8> {
    let refs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    block(&refs)
}
