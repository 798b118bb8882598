//! Memory per idle TLS connection. The proxy is restarted; a warm-up opens N TLS connections
//! and keeps them open; the proxy's resident memory (`VmRSS`) is read once it has settled; N
//! more connections are opened and left idle (HTTP/1.1: the handshake only; HTTP/2: also the
//! connection preface and the SETTINGS exchange), in ten steps of N/10, with the memory read
//! again once settled after each step; every connection is closed. The figure is the growth
//! over the steps in which the memory did not shrink, divided by the connections those steps
//! opened.
//!
//! The warm-up is there because a freshly started process still holds memory it has freed:
//! moat's allocator (mimalloc) returns it to the system lazily, when the thread that freed it
//! allocates again, which the first several hundred accepted connections bring about. Measured from
//! a cold start, that release falls inside the measurement and the figure comes out too small,
//! even negative (seen with the redaction profile, whose start-up frees tens of MiB). The
//! warm-up connections stay open so that the measured ones cannot reuse their memory. Even so
//! the release sometimes comes later, within one step of the measured connections: the memory
//! shrinks over that step, and the step is left out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::client::{connect, tls_config, ATTEMPT};
use super::parse::Sample;
use super::procs::Procs;
use super::sys::vm_rss_kib;

/// Connections being opened at the same time (below every listen backlog).
const OPEN_AT_ONCE: usize = 64;
/// Interval of the memory readings while waiting for the figure to settle.
const READING: Duration = Duration::from_millis(200);
/// Readings in a row within [`STEADY_KIB`] of each other that count as settled.
const STEADY_READINGS: usize = 3;
const STEADY_KIB: u64 = 64;
/// The measured connections are opened in this many steps, with a reading after each.
const STEPS: usize = 10;
/// Longest wait for the memory to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// HTTP/2 frame type SETTINGS, GOAWAY, and the ACK flag.
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

/// An HTTP/2 frame header (9 bytes: length, type, flags, stream id).
pub(super) fn frame_header(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; 9] {
    let l = (len as u32).to_be_bytes();
    let s = (stream & 0x7fff_ffff).to_be_bytes();
    [l[1], l[2], l[3], kind, flags, s[0], s[1], s[2], s[3]]
}

/// Length, type and flags of an HTTP/2 frame header.
pub(super) fn parse_frame_header(h: &[u8; 9]) -> (usize, u8, u8) {
    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
    (len, h[3], h[4])
}

/// Sends the client preface and an empty SETTINGS frame, then reads frames until the server's
/// SETTINGS (acknowledged at once) and the server's ACK of ours have both arrived.
async fn h2_preface(tls: &mut TlsStream<TcpStream>) -> Result<()> {
    let mut hello = PREFACE.to_vec();
    hello.extend_from_slice(&frame_header(0, SETTINGS, 0, 0));
    tls.write_all(&hello).await?;
    let (mut settings, mut acked) = (false, false);
    let mut payload = Vec::new();
    while !(settings && acked) {
        let mut h = [0_u8; 9];
        tls.read_exact(&mut h).await.context("reading a frame")?;
        let (len, kind, flags) = parse_frame_header(&h);
        if len > 1 << 20 {
            bail!("a {len}-byte frame");
        }
        payload.resize(len, 0);
        tls.read_exact(&mut payload).await?;
        match (kind, flags & ACK) {
            (SETTINGS, 0) => {
                settings = true;
                tls.write_all(&frame_header(0, SETTINGS, ACK, 0)).await?;
            }
            (SETTINGS, _) => acked = true,
            (GOAWAY, _) => bail!("the server sent GOAWAY"),
            _ => {} // WINDOW_UPDATE and the like
        }
    }
    Ok(())
}

/// Opens one idle connection.
async fn open(
    connector: TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
    h2: bool,
) -> Result<TlsStream<TcpStream>> {
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let opening = async {
        let mut tls = connect(&connector, addr, name, alpn).await?;
        if h2 {
            h2_preface(&mut tls).await?;
        }
        anyhow::Ok(tls)
    };
    timeout(ATTEMPT, opening)
        .await
        .unwrap_or_else(|_| bail!("not open within {ATTEMPT:?}"))
}

/// Whether the server has closed a connection (a read that does not wait).
async fn is_closed(tls: &mut TlsStream<TcpStream>) -> bool {
    let mut buf = [0_u8; 512];
    match timeout(Duration::ZERO, tls.read(&mut buf)).await {
        Err(_) => false,     // nothing to read: still open
        Ok(Ok(n)) => n == 0, // data (a ticket, a PING) or the end
        Ok(Err(_)) => true,  // reset
    }
}

/// Whether the last readings are within `tolerance` KiB of each other.
pub(super) fn is_steady(readings: &[u64], last: usize, tolerance: u64) -> bool {
    let Some(window) = readings
        .len()
        .checked_sub(last)
        .map(|from| &readings[from..])
    else {
        return false;
    };
    let (lo, hi) = window
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    hi.saturating_sub(lo) <= tolerance
}

/// The process's resident memory once it has stopped changing (a restarted moat recovers its
/// audit trail, for one, and frees what that took): readings every [`READING`] until
/// [`STEADY_READINGS`] in a row are within [`STEADY_KIB`], or the last after [`SETTLE_LIMIT`].
async fn steady_rss(pid: u32) -> Result<u64> {
    let mut readings = vec![vm_rss_kib(pid)?];
    let limit = SETTLE_LIMIT.as_millis() / READING.as_millis();
    for _ in 0..limit {
        if is_steady(&readings, STEADY_READINGS, STEADY_KIB) {
            break;
        }
        tokio::time::sleep(READING).await;
        readings.push(vm_rss_kib(pid)?);
    }
    readings.last().copied().context("no reading")
}

/// What holding the connections showed.
struct Held {
    /// Warm-up connections that failed to open.
    warm_failed: usize,
    /// `VmRSS` in KiB before the first step and after each.
    readings: Vec<u64>,
    /// Connections opened by each step.
    opened: Vec<usize>,
    failed: usize,
    closed: usize,
    first_error: Option<String>,
}

/// Connections opened, and how many failed (with the first failure).
#[derive(Default)]
struct Opened {
    conns: Vec<TlsStream<TcpStream>>,
    failed: usize,
    first_error: Option<String>,
}

/// Opens `n` connections, [`OPEN_AT_ONCE`] at a time.
async fn open_many(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &ServerName<'static>,
    h2: bool,
    n: usize,
) -> Opened {
    let mut o = Opened {
        conns: Vec::with_capacity(n),
        ..Opened::default()
    };
    let mut opening = JoinSet::new();
    let mut collect = |r: Result<Result<TlsStream<TcpStream>>, tokio::task::JoinError>| match r {
        Ok(Ok(c)) => o.conns.push(c),
        Ok(Err(e)) => {
            o.failed += 1;
            o.first_error.get_or_insert_with(|| format!("{e:#}"));
        }
        Err(e) => {
            o.failed += 1;
            o.first_error.get_or_insert_with(|| e.to_string());
        }
    };
    for _ in 0..n {
        if opening.len() >= OPEN_AT_ONCE {
            if let Some(r) = opening.join_next().await {
                collect(r);
            }
        }
        opening.spawn(open(connector.clone(), addr, name.clone(), h2));
    }
    while let Some(r) = opening.join_next().await {
        collect(r);
    }
    o
}

/// Connections in step `step` of [`STEPS`] when `n` are opened in all.
pub(super) fn step_size(n: usize, step: usize) -> usize {
    n / STEPS + usize::from(step < n % STEPS)
}

/// KiB per connection: the growth over the steps in which the memory did not shrink, over the
/// connections those steps opened. A step in which the process gave back memory it had freed
/// earlier shows as a shrink, and is left out. (Not a median of the steps: allocators grow in
/// chunks of megabytes, so single steps are lumpy and only their sum is meaningful.)
pub(super) fn per_connection(readings: &[u64], opened: &[usize]) -> Option<f64> {
    let (grown, conns) = readings
        .windows(2)
        .zip(opened)
        .filter(|(w, _)| w[1] >= w[0])
        .fold((0, 0), |(g, c), (w, n)| (g + (w[1] - w[0]), c + n));
    (conns > 0).then(|| grown as f64 / conns as f64)
}

async fn hold(
    pid: u32,
    addr: SocketAddr,
    name: ServerName<'static>,
    h2: bool,
    n: usize,
) -> Result<Held> {
    let connector = TlsConnector::from(tls_config(if h2 { b"h2" } else { b"http/1.1" })?);
    // Warm-up: connections that stay open through the measurement (see the module's
    // documentation).
    let warm = open_many(&connector, addr, &name, h2, n).await;
    let mut readings = vec![steady_rss(pid).await?];
    let (mut conns, mut opened, mut failed, mut first_error) = (Vec::new(), Vec::new(), 0, None);
    for step in 0..STEPS {
        let o = open_many(&connector, addr, &name, h2, step_size(n, step)).await;
        opened.push(o.conns.len());
        conns.extend(o.conns);
        failed += o.failed;
        first_error = first_error.or(o.first_error);
        readings.push(steady_rss(pid).await?);
    }
    let mut closed = 0;
    for c in &mut conns {
        if is_closed(c).await {
            closed += 1;
        }
    }
    drop(conns); // every connection closed
    drop(warm.conns);
    Ok(Held {
        warm_failed: warm.failed,
        readings,
        opened,
        failed,
        closed,
        first_error,
    })
}

/// Where and how the idle connections are opened.
pub(super) struct Idle<'a> {
    pub(super) addr: SocketAddr,
    pub(super) host: &'a str,
    pub(super) h2: bool,
    pub(super) connections: usize,
}

/// Restarts `process` (with the directories in `clear` removed meanwhile: moat's audit trail,
/// whose recovery would leave freed memory resident for the connections to reuse, hiding their
/// cost), then measures its memory per idle connection.
pub(super) fn measure(
    procs: &mut Procs,
    process: &'static str,
    clear: &[PathBuf],
    idle: &Idle<'_>,
) -> Result<Sample> {
    let Idle {
        addr,
        host,
        h2,
        connections: n,
    } = *idle;
    procs.restart(process, clear)?;
    let pid = procs
        .pid_of(process)
        .with_context(|| format!("{process} is not running"))?;
    let name = ServerName::try_from(host.to_owned())
        .with_context(|| format!("bad server name {host:?}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let held = rt.block_on(hold(pid, addr, name, h2, n))?;
    drop(rt);
    procs.check_alive()?;
    if let Some(e) = &held.first_error {
        eprintln!(
            "bench: {process}: {} of {n} idle connections failed to open; the first: {e}",
            held.failed
        );
    }
    if held.closed > 0 {
        eprintln!(
            "bench: {process} closed {} of the idle connections before they were counted",
            held.closed
        );
    }
    let opened: usize = held.opened.iter().sum();
    let (first, last) = (
        held.readings.first().copied().unwrap_or_default(),
        held.readings.last().copied().unwrap_or_default(),
    );
    let growth: Vec<i64> = held
        .readings
        .windows(2)
        .map(|w| w[1] as i64 - w[0] as i64)
        .collect();
    eprintln!(
        "bench: {process} {}: VmRSS {first} KiB with the warm-up connections open, {last} KiB \
         with {opened} more ({:.1} KiB each over all; growth per step of {} connections, KiB: \
         {growth:?})",
        if h2 { "h2" } else { "h1" },
        (last as f64 - first as f64) / opened.max(1) as f64,
        step_size(n, 0),
    );
    Ok(Sample {
        value: per_connection(&held.readings, &held.opened).unwrap_or(0.0),
        requests: n as u64,
        errors: (held.failed + held.closed + held.warm_failed) as u64,
        tls: Some("TLSv1.3".into()),
        alpn: Some(if h2 { "h2" } else { "http/1.1" }.into()),
        ..Sample::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_round_trip() {
        let h = frame_header(0x01_0203, SETTINGS, ACK, 0);
        assert_eq!(h, [1, 2, 3, 4, 1, 0, 0, 0, 0]);
        assert_eq!(parse_frame_header(&h), (0x01_0203, SETTINGS, ACK));
        assert_eq!(frame_header(0, SETTINGS, 0, 0), [0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(
            &frame_header(6, 8, 0, 0x8000_0003)[5..],
            [0, 0, 0, 3],
            "R bit cleared"
        );
    }

    #[test]
    fn memory_settles() {
        assert!(!is_steady(&[100, 100], 4, 64), "too few readings");
        assert!(is_steady(&[90_000, 40_000, 40_010, 40_050, 40_020], 4, 64));
        assert!(!is_steady(&[40_000, 40_010, 40_100, 40_020], 4, 64));
        assert!(is_steady(&[7], 1, 0));
    }

    #[test]
    fn steps_add_up() {
        assert_eq!((0..STEPS).map(|s| step_size(1000, s)).sum::<usize>(), 1000);
        assert_eq!((0..STEPS).map(|s| step_size(1005, s)).sum::<usize>(), 1005);
        assert_eq!(step_size(1005, 0), 101);
        assert_eq!(step_size(1005, 9), 100);
        assert_eq!(step_size(3, 5), 0);
    }

    #[test]
    fn a_release_does_not_move_the_figure() -> Result<()> {
        // 100 connections per step, the memory growing in 2 MiB chunks, and one step in which
        // 20 MiB freed at start-up went back to the system.
        let readings = [70_000, 74_096, 76_144, 80_240, 62_000, 64_048, 68_144];
        let opened = [100; 6];
        let v = per_connection(&readings, &opened).context("no figure")?;
        assert!(
            (v - 16_384.0 / 500.0).abs() < 1e-9,
            "{v}: 5 steps, 16 MiB, 500 connections"
        );
        // Steps that opened nothing add nothing.
        let v = per_connection(&[10, 10, 3610], &[0, 100]).context("no figure")?;
        assert!((v - 36.0).abs() < 1e-9, "{v}");
        assert_eq!(per_connection(&[10], &[]), None);
        assert_eq!(per_connection(&[10, 5], &[100]), None, "only a shrink");
        Ok(())
    }
}
