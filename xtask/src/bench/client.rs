//! The benchmark's own TLS client (tokio + rustls): the TLS settings of the handshake and idle
//! rows, and the handshake load generator, which runs as a hidden subcommand
//! (`cargo xtask bench __handshake …`) so that it can be pinned and accounted for like h2load.
//!
//! Every connection is a full TLS 1.3 handshake with X25519: session resumption is off, so no
//! connection reuses an earlier one's keys (h2load and wrk, given `Connection: close`, reconnect
//! but resume the session, which skips the certificate and its signature). The client checks
//! neither the certificate chain nor the server's handshake signature: it is a load generator on
//! one core against a proxy on one core, and a signature check costs the client more than the
//! signature costs the server. The proxy's work is the same either way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ProtocolVersion, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::parse::handshake_summary;

/// The hidden subcommand that runs the handshake load generator.
pub(super) const HANDSHAKE: &str = "__handshake";
/// Longest one connection (connect, handshake, request, response) may take.
pub(super) const ATTEMPT: Duration = Duration::from_secs(5);

/// Accepts any certificate and any handshake signature (see the module's documentation).
#[derive(Debug)]
struct Unchecked(Vec<SignatureScheme>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// TLS 1.3 only, X25519 only, no resumption, offering `alpn`.
pub(super) fn tls_config(alpn: &[u8]) -> Result<Arc<ClientConfig>> {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with X25519 is not available")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unchecked(schemes)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// Connects to `addr` and completes a TLS handshake, checking TLS 1.3 and the ALPN protocol.
pub(super) async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
    alpn: &[u8],
) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let tls = connector
        .connect(name, tcp)
        .await
        .context("TLS handshake failed")?;
    let conn = tls.get_ref().1;
    ensure!(
        conn.protocol_version() == Some(ProtocolVersion::TLSv1_3),
        "negotiated {:?}, not TLS 1.3",
        conn.protocol_version()
    );
    ensure!(
        conn.alpn_protocol() == Some(alpn),
        "negotiated ALPN {:?}, not {:?}",
        conn.alpn_protocol().map(String::from_utf8_lossy),
        String::from_utf8_lossy(alpn)
    );
    Ok(tls)
}

/// The status code of an HTTP/1.x response head.
pub(super) fn status_of(response: &[u8]) -> Option<u16> {
    let rest = response
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| response.strip_prefix(b"HTTP/1.0 "))?;
    let code = std::str::from_utf8(rest.get(..3)?).ok()?;
    code.parse().ok().filter(|c| (100..600).contains(c))
}

/// The request each handshake carries: a small GET that asks the server to close afterwards.
pub(super) fn close_request(host: &str, key: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
}

/// One new connection: handshake, one request, the response until the server closes. Returns
/// the response's status.
async fn one_request(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
    request: &[u8],
) -> Result<u16> {
    let mut tls = connect(connector, addr, name, b"http/1.1").await?;
    tls.write_all(request).await?;
    let mut response = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 4096];
    loop {
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            // A close without close_notify after the response is fine here.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).context("reading the response"),
        }
    }
    status_of(&response).with_context(|| {
        format!(
            "no HTTP/1.1 response: {:?}",
            String::from_utf8_lossy(&response[..response.len().min(80)])
        )
    })
}

/// What one handshake task counted.
#[derive(Debug, Default)]
struct Counts {
    ok: u64,
    non_2xx: u64,
    errors: u64,
    first_error: Option<String>,
}

/// New connections one after another until `deadline`.
async fn handshake_loop(
    connector: TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
    request: Arc<[u8]>,
    deadline: Instant,
) -> Counts {
    let mut c = Counts::default();
    while Instant::now() < deadline {
        let error = match timeout(
            ATTEMPT,
            one_request(&connector, addr, name.clone(), &request),
        )
        .await
        {
            Ok(Ok(status)) if (200..400).contains(&status) => {
                c.ok += 1;
                continue;
            }
            Ok(Ok(status)) => {
                c.non_2xx += 1;
                c.first_error
                    .get_or_insert_with(|| format!("status {status}"));
                continue;
            }
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("no answer within {ATTEMPT:?}"),
        };
        c.errors += 1;
        c.first_error.get_or_insert(error);
    }
    c
}

/// Settings of the handshake subcommand.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct HandshakeArgs {
    pub(super) addr: SocketAddr,
    pub(super) host: String,
    pub(super) connections: u32,
    pub(super) duration: u64,
    pub(super) key: String,
}

impl HandshakeArgs {
    /// The command line that [`HandshakeArgs::parse`] reads back.
    pub(super) fn to_args(&self) -> Vec<String> {
        vec![
            "bench".into(),
            HANDSHAKE.into(),
            "--addr".into(),
            self.addr.to_string(),
            "--host".into(),
            self.host.clone(),
            "--connections".into(),
            self.connections.to_string(),
            "--duration".into(),
            self.duration.to_string(),
            "--key".into(),
            self.key.clone(),
        ]
    }

    pub(super) fn parse(args: &[String]) -> Result<Self> {
        let (mut addr, mut host, mut connections, mut duration, mut key) =
            (None, None, None, None, None);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--addr" => addr = Some(crate::flag_number(&mut it, a)?),
                "--host" => host = Some(crate::flag_value(&mut it, a)?),
                "--connections" => connections = Some(crate::flag_number(&mut it, a)?),
                "--duration" => duration = Some(crate::flag_number(&mut it, a)?),
                "--key" => key = Some(crate::flag_value(&mut it, a)?),
                _ => anyhow::bail!("{HANDSHAKE}: unknown argument {a:?}"),
            }
        }
        Ok(Self {
            addr: addr.context("--addr is required")?,
            host: host.context("--host is required")?,
            connections: connections.context("--connections is required")?,
            duration: duration.context("--duration is required")?,
            key: key.context("--key is required")?,
        })
    }
}

/// `cargo xtask bench __handshake`: `--connections` tasks each open new TLS connections one
/// after another for `--duration` seconds, each carrying one GET with `Connection: close`;
/// prints the counts (see [`handshake_summary`]).
pub(super) fn handshake_main(args: &[String]) -> Result<()> {
    let a = HandshakeArgs::parse(args)?;
    let name = ServerName::try_from(a.host.clone())
        .with_context(|| format!("bad server name {:?}", a.host))?;
    let connector = TlsConnector::from(tls_config(b"http/1.1")?);
    let request: Arc<[u8]> = close_request(&a.host, &a.key).into_bytes().into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (counts, secs) = rt.block_on(async {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(a.duration);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..a.connections {
            tasks.spawn(handshake_loop(
                connector.clone(),
                a.addr,
                name.clone(),
                request.clone(),
                deadline,
            ));
        }
        let mut all = Counts::default();
        while let Some(c) = tasks.join_next().await {
            let c = c.context("a handshake task failed")?;
            all.ok += c.ok;
            all.non_2xx += c.non_2xx;
            all.errors += c.errors;
            if all.first_error.is_none() {
                all.first_error = c.first_error;
            }
        }
        anyhow::Ok((all, start.elapsed().as_secs_f64()))
    })?;
    if let Some(e) = &counts.first_error {
        eprintln!("{HANDSHAKE}: first failure: {e}");
    }
    println!(
        "{}",
        handshake_summary(counts.ok, counts.non_2xx, counts.errors, secs)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503 x"), Some(503));
        assert_eq!(status_of(b"HTTP/1.1 20"), None);
        assert_eq!(status_of(b"HTTP/2 200"), None);
        assert_eq!(status_of(b"HTTP/1.1 999 x"), None);
    }

    #[test]
    fn handshake_args_round_trip() -> Result<()> {
        let a = HandshakeArgs {
            addr: "127.0.0.1:8443".parse()?,
            host: "localhost".into(),
            connections: 32,
            duration: 3,
            key: "k".into(),
        };
        let args = a.to_args();
        assert_eq!(&args[..2], ["bench", HANDSHAKE]);
        assert_eq!(HandshakeArgs::parse(&args[2..])?, a);
        assert!(HandshakeArgs::parse(&args[2..6]).is_err(), "missing flags");
        Ok(())
    }

    #[test]
    fn requests_close_and_carry_the_key() {
        let r = close_request("localhost", "KEY");
        assert!(r.starts_with("GET / HTTP/1.1\r\n"));
        assert!(r.contains("\r\nConnection: close\r\n"));
        assert!(r.contains("\r\nAuthorization: Bearer KEY\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn client_offers_one_protocol() -> Result<()> {
        let c = tls_config(b"h2")?;
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(!c.enable_early_data);
        Ok(())
    }
}
