//! TLS clients that trust the gateway's CA: a full HTTP client (reqwest) and a raw one that
//! writes exact bytes and parses responses by hand, for framing and timeout cases.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub(crate) fn tls_config(ca: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    tls_config_with(ca, alpn, None)
}

/// A client configuration that presents `cert` (chain PEM, key PEM) when asked.
fn tls_config_with(
    ca: &Path,
    alpn: &[&[u8]],
    cert: Option<(&Path, &Path)>,
) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(cert.expect("ca pem")).expect("add ca");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut c = match cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain)
                .expect("chain")
                .map(|c| c.expect("pem"))
                .collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        }
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    c
}

/// The `x-request-id` moat set on a response.
pub fn request_id(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id")
        .to_owned()
}

/// Reads a body the test origin's `/bytes/N` sent; returns its length and whether every byte
/// matched the origin's pattern.
pub async fn read_pattern(r: reqwest::Response) -> (u64, bool) {
    use futures_util::StreamExt;
    let mut stream = r.bytes_stream();
    let (mut n, mut ok) = (0u64, true);
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("piece");
        for (i, b) in piece.iter().enumerate() {
            ok &= u64::from(*b) == ((n + i as u64) % (64 * 1024)) % 251;
        }
        n += piece.len() as u64;
    }
    (n, ok)
}

/// The text of an OpenAI chat-completion SSE body: every `choices[0].delta.content`, joined.
pub fn sse_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// An HTTP/2 client (ALPN `h2` only) for `https://localhost:<port>` that trusts `ca`: every
/// request is a stream on one connection.
pub fn http2(ca: &Path) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(ca, &[b"h2"]))
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// An HTTP client for `https://localhost:<port>` that trusts `ca`; one connection per host kept.
pub fn http(ca: &Path) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(ca, &[b"http/1.1"]))
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// `https://localhost:<port><path>`.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.port())
}

/// A response read by [`Raw`].
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header fields, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Decoded body.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One TLS connection on which the test writes exact bytes.
#[derive(Debug)]
pub struct Raw {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and completes the TLS handshake.
    pub async fn connect(addr: SocketAddr, ca: &Path) -> Self {
        Self::try_connect(addr, ca, None)
            .await
            .expect("TLS handshake")
    }

    /// Connects presenting a client certificate (chain PEM, key PEM) when one is given; the
    /// handshake error, if any, is returned.
    pub async fn try_connect(
        addr: SocketAddr,
        ca: &Path,
        cert: Option<(&Path, &Path)>,
    ) -> std::io::Result<Self> {
        let connector = TlsConnector::from(Arc::new(tls_config_with(ca, &[b"http/1.1"], cert)));
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
        let tls = connector.connect(name, tcp).await?;
        Ok(Self {
            tls,
            buf: Vec::new(),
        })
    }

    /// Connects, writes `preamble` on the bare TCP connection (a PROXY header), then completes
    /// the TLS handshake; the handshake error, if any, is returned.
    pub async fn connect_after(
        addr: SocketAddr,
        ca: &Path,
        preamble: &[u8],
    ) -> std::io::Result<Self> {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(preamble).await?;
        Self::over(tcp, ca).await
    }

    /// Completes the TLS handshake over a TCP connection the caller made (from a chosen local
    /// address, say); the handshake error, if any, is returned.
    pub async fn over(tcp: TcpStream, ca: &Path) -> std::io::Result<Self> {
        let connector = TlsConnector::from(Arc::new(tls_config(ca, &[b"http/1.1"])));
        let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
        let tls = connector.connect(name, tcp).await?;
        Ok(Self {
            tls,
            buf: Vec::new(),
        })
    }

    /// Writes bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes).await?;
        self.tls.flush().await
    }

    async fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 16 * 1024];
        match tokio::time::timeout(Duration::from_secs(10), self.tls.read(&mut tmp)).await {
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Ok(Err(_)) => 0,
            Err(_) => panic!("no data from the gateway within 10 s"),
        }
    }

    /// Reads one response head (interim 1xx included); `None` if the connection closed first.
    pub async fn read_head(&mut self) -> Option<RawResponse> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut res = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = res.parse(&self.buf) {
                let head = RawResponse {
                    status: res.code.unwrap_or(0),
                    headers: res
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                };
                self.buf.drain(..n);
                return Some(head);
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }

    /// Reads one complete final response (skipping interim ones); `None` if the connection closed
    /// before a head arrived.
    pub async fn read_response(&mut self, head_request: bool) -> Option<RawResponse> {
        let mut resp = loop {
            let r = self.read_head().await?;
            if r.status >= 200 {
                break r;
            }
        };
        if head_request || resp.status == 204 || resp.status == 304 {
            return Some(resp);
        }
        if resp.header("transfer-encoding").is_some() {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().await > 0, "closed inside a chunked body");
                };
                let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .expect("chunk size");
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers until an empty line.
                    loop {
                        if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            self.buf.drain(..i + 2);
                            if i == 0 {
                                return Some(resp);
                            }
                            continue;
                        }
                        assert!(self.fill().await > 0, "closed inside trailers");
                    }
                }
                while self.buf.len() < size + 2 {
                    assert!(self.fill().await > 0, "closed inside a chunk");
                }
                resp.body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().expect("content-length");
            while self.buf.len() < len {
                assert!(self.fill().await > 0, "closed inside a body");
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            while self.fill().await > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Some(resp)
    }

    /// Whether the gateway closed the connection (reads end of stream or an error).
    pub async fn is_closed(&mut self) -> bool {
        let mut tmp = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.tls.read(&mut tmp)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// One request through `Raw`: connect, send, read the response.
pub async fn raw_exchange(
    addr: SocketAddr,
    ca: &Path,
    request: &[u8],
) -> (Option<RawResponse>, Raw) {
    let mut c = Raw::connect(addr, ca).await;
    c.send(request).await.expect("send");
    let r = c.read_response(false).await;
    (r, c)
}

/// A streamed upload of `total` bytes, `piece` after `piece`, whose second half is held back
/// until the upstream has received part of the first: a gateway that read whole bodies before
/// forwarding them never lets it finish (the feeder panics after 10 s). Await the handle after
/// the request.
pub fn held_back_upload(
    total: u64,
    piece: Vec<u8>,
    seen: Arc<crate::origin::Seen>,
) -> (reqwest::Body, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let feeder = tokio::spawn(async move {
        let pieces = total / piece.len() as u64;
        for i in 0..pieces {
            if i == pieces / 2 {
                let mut waited = 0;
                while seen.sink_progress.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    assert!(
                        waited < 200,
                        "upstream received nothing while the client held back: the body was buffered"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    waited += 1;
                }
            }
            tx.send(Ok(piece.clone())).await.expect("send piece");
        }
    });
    let body =
        reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    (body, feeder)
}

/// Downloads `url`, which the origin serves as `n` bytes of its pattern with a length, and checks
/// that exactly those bytes arrived.
pub async fn download_pattern(http: &reqwest::Client, url: String, n: u64) {
    let r = http.get(url).send().await.expect("download");
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(n));
    let (got, ok) = read_pattern(r).await;
    assert_eq!(got, n);
    assert!(ok, "downloaded bytes differ from what the upstream sent");
}
