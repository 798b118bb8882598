//! `[audit.ship]`: every trail line, as written, to an in-region syslog collector — RFC 5424
//! messages ([`super::syslog`]) over RFC 5425 TLS with octet-counting framing, which rsyslog and
//! syslog-ng receive as they are.
//!
//! A thread of its own reads the trail's segment files from a cursor and writes to the
//! collector; requests never wait for it, and the trail is written whether the collector is
//! there or not. Delivery is at least once:
//!
//! - Syslog over TLS has no acknowledgement, so a record counts as delivered once more than the
//!   socket's whole send buffer (fixed at [`SEND_BUFFER`]; the kernel doubles it) was written
//!   after it without an error: by then the collector's TCP stack has acknowledged its bytes.
//!   The last delivered `seq` is kept in `ship.cursor` beside the trail, at most once a second.
//! - After any failure, and after a restart, shipping starts again after the cursor: the
//!   collector may receive a record twice (`moat audit verify --keys` counts and tolerates
//!   duplicates), never miss one that is still in the trail.
//! - While the collector cannot be reached, the thread retries with backoff (0.5 s doubling to
//!   `retry_max`) and a `shipping_stopped` lifecycle record says why; `shipping_resumed` says
//!   when it came back and how many records waited. Both go to the collector too, in order.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;

use super::record::{LifecycleRecord, Record};
use super::{segments, syslog, Auditor};
use crate::metrics::METRICS;

/// Send buffer asked of the kernel for the collector's socket (it doubles it): the most that
/// can be written and still be unacknowledged, so the bound on what a failure can lose.
pub const SEND_BUFFER: usize = 64 * 1024;
/// The file beside the trail holding the last delivered `seq`.
pub const CURSOR_FILE: &str = "ship.cursor";
/// How often the thread looks for new records when it has sent everything.
const POLL: Duration = Duration::from_millis(100);
/// First retry delay after a failure; doubled up to `retry_max`.
const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest a connection attempt or a blocked write may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most plaintext bytes read from the trail per write.
const BATCH_BYTES: usize = 256 * 1024;

/// Validated `[audit.ship]` settings.
#[derive(Debug, Clone)]
pub struct ShipConfig {
    /// The collector's TLS syslog port (loopback or an in-region network).
    pub address: SocketAddr,
    /// The name its certificate must hold (default: the address's IP).
    pub server_name: ServerName<'static>,
    /// CA certificates the collector's certificate must chain to (PEM).
    pub ca_file: PathBuf,
    /// moat's client certificate and key (PEM), when the collector asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// HOSTNAME of every message, and the `host` of its structured data.
    pub hostname: String,
    /// Longest wait between two connection attempts.
    pub retry_max: Duration,
}

/// Why shipping could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("audit.ship: {0}")]
    Tls(String),
    #[error("audit.ship: cannot start the shipping thread: {0}")]
    Thread(std::io::Error),
}

/// The TLS client configuration for the collector: its CA, TLS 1.2 or 1.3, and moat's client
/// certificate when configured.
pub fn client_config(cfg: &ShipConfig) -> Result<Arc<ClientConfig>, ShipError> {
    let err = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
        ShipError::Tls(format!("{what} {}: {e}", p.display()))
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&cfg.ca_file)
        .map_err(|e| err("cannot read ca_file", &cfg.ca_file, &e))?;
    for cert in certs {
        let cert = cert.map_err(|e| err("bad certificate in ca_file", &cfg.ca_file, &e))?;
        roots
            .add(cert)
            .map_err(|e| err("unusable certificate in ca_file", &cfg.ca_file, &e))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in ca_file", &cfg.ca_file, &"empty"));
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match &cfg.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| err("cannot read client_cert", cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err("bad certificate in client_cert", cert, &e))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| err("cannot read client_key", key, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ShipError::Tls(format!("client certificate and key: {e}")))?
        }
    };
    Ok(Arc::new(config))
}

/// The running shipper; [`Shipper::stop`] sends what is left and ends it.
pub struct Shipper {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Shipper {
    /// Checks the TLS settings and starts the thread. The collector need not be up.
    pub fn start(cfg: ShipConfig, dir: PathBuf, audit: Auditor) -> Result<Self, ShipError> {
        let tls = client_config(&cfg)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("moat-audit-ship".into())
            .spawn(move || {
                Worker {
                    cursor: Cursor::load(&dir),
                    reader: TrailReader::new(dir),
                    cfg,
                    tls,
                    audit,
                    stop: s,
                    pid: std::process::id(),
                    lag_checked: tokio::time::Instant::now(),
                }
                .run();
            })
            .map_err(ShipError::Thread)?;
        Ok(Self { stop, thread })
    }

    /// Sends what the trail holds now (for at most `within`, if the collector is there) and
    /// ends the thread.
    pub fn stop(self, within: Duration) {
        self.stop.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + within;
        while !self.thread.is_finished() && tokio::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
    }
}

/// The last delivered `seq`, kept in [`CURSOR_FILE`].
struct Cursor {
    path: PathBuf,
    seq: u64,
    saved: u64,
    saved_at: tokio::time::Instant,
}

impl Cursor {
    fn load(dir: &Path) -> Self {
        let path = dir.join(CURSOR_FILE);
        let seq = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        Self {
            path,
            seq,
            saved: seq,
            saved_at: tokio::time::Instant::now(),
        }
    }

    /// Writes the cursor if it moved (at most once a second unless `now`).
    fn save(&mut self, now: bool) {
        if self.seq == self.saved || (!now && self.saved_at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        let tmp = self.path.with_extension("tmp");
        let written = std::fs::write(&tmp, format!("{}\n", self.seq))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        match written {
            Ok(()) => {
                self.saved = self.seq;
                self.saved_at = tokio::time::Instant::now();
            }
            Err(e) => {
                tracing::warn!(target: "moat::audit", error = %e, path = %self.path.display(), "cannot save the shipping cursor")
            }
        }
    }
}

/// Reads complete record lines from the trail's segments in order, from a `seq` on.
struct TrailReader {
    dir: PathBuf,
    /// The segment being read and where in it.
    segment: Option<PathBuf>,
    offset: u64,
    /// Lines with a lower `seq` are skipped.
    next_seq: u64,
    /// The first `seq` found when the trail no longer held `next_seq` (removed segments).
    skipped_to: Option<(u64, u64)>,
}

/// First `seq` of a segment, from its name (`segment-<seq>.jsonl`).
fn first_seq(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("segment-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

impl TrailReader {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            segment: None,
            offset: 0,
            next_seq: 1,
            skipped_to: None,
        }
    }

    /// Reads from `seq` on at the next [`TrailReader::read`].
    fn rewind(&mut self, seq: u64) {
        self.next_seq = seq;
        self.segment = None;
        self.offset = 0;
    }

    /// The segment that holds `next_seq`: the last whose first seq is not after it.
    fn locate(&mut self) -> std::io::Result<bool> {
        let all = segments(&self.dir).map_err(std::io::Error::other)?;
        let mut best = None;
        for p in &all {
            match first_seq(p) {
                Some(f) if f <= self.next_seq => best = Some(p.clone()),
                _ => {}
            }
        }
        if best.is_none() {
            // The records wanted are gone (segments removed): start at the oldest left.
            if let Some((p, f)) = all.first().and_then(|p| first_seq(p).map(|f| (p, f))) {
                self.skipped_to = Some((self.next_seq, f));
                self.next_seq = f;
                best = Some(p.clone());
            }
        }
        self.segment = best;
        self.offset = 0;
        Ok(self.segment.is_some())
    }

    /// Complete lines from where the reader is, up to about `max` bytes (at least one line
    /// when one is there). Empty when there is nothing new.
    fn read(&mut self, max: usize) -> std::io::Result<Vec<String>> {
        if self.segment.is_none() && !self.locate()? {
            return Ok(Vec::new());
        }
        // A small first read: when nothing is new, what is there is the zero fill.
        let mut chunk = max.min(64 * 1024);
        loop {
            let Some(path) = self.segment.clone() else {
                return Ok(Vec::new());
            };
            let mut f = std::fs::File::open(&path)?;
            f.seek(SeekFrom::Start(self.offset))?;
            let mut buf = Vec::new();
            f.take(chunk as u64).read_to_end(&mut buf)?;
            let written = super::written(&buf);
            let complete = written
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            if complete == 0 && written.len() == chunk && chunk < 64 << 20 {
                // One line longer than the chunk: read more of it.
                chunk *= 2;
                continue;
            }
            self.offset += complete as u64;
            let mut lines = Vec::new();
            for raw in written[..complete].split(|b| *b == b'\n') {
                if raw.is_empty() {
                    continue;
                }
                let line = String::from_utf8_lossy(raw).into_owned();
                // The line is hashed once, when it is sent.
                match syslog::line_seq(&line) {
                    Some(seq) if seq < self.next_seq => continue,
                    Some(seq) => self.next_seq = seq + 1,
                    None => {}
                }
                lines.push(line);
            }
            if !lines.is_empty() {
                return Ok(lines);
            }
            if complete > 0 {
                // Everything read was before `next_seq`: read on.
                continue;
            }
            // Nothing more here: move on only if a later segment exists (the writer closes a
            // segment before it opens the next).
            let later = segments(&self.dir)
                .map_err(std::io::Error::other)?
                .into_iter()
                .find(|p| first_seq(p) > first_seq(&path));
            match later {
                Some(next) => {
                    self.segment = Some(next);
                    self.offset = 0;
                }
                None => return Ok(Vec::new()),
            }
        }
    }

    /// The `seq` of the last complete line in the trail (0 for none). Reads the end of the
    /// newest segment only: its zero fill ahead of the records is at most 1 MiB.
    fn last_written(&self) -> u64 {
        let Ok(all) = segments(&self.dir) else {
            return 0;
        };
        for p in all.iter().rev() {
            let Ok(data) = tail_of(p, 4 << 20) else {
                continue;
            };
            let written = super::written(&data);
            let end = written.iter().rposition(|b| *b == b'\n');
            let Some(end) = end else { continue };
            let start = written[..end]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            if let Some(seq) = std::str::from_utf8(&written[start..end])
                .ok()
                .and_then(syslog::line_seq)
            {
                return seq;
            }
        }
        0
    }
}

/// The last `max` bytes of a file (all of it when smaller).
fn tail_of(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(max);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity((len - from) as usize);
    f.read_to_end(&mut buf)?;
    // Started inside the records: only whole lines count.
    if from > 0 {
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                buf.drain(..=i);
            }
            None => buf.clear(),
        }
    }
    Ok(buf)
}

/// A TLS connection to the collector.
type Conn = StreamOwned<ClientConnection, TcpStream>;

struct Worker {
    cfg: ShipConfig,
    tls: Arc<ClientConfig>,
    audit: Auditor,
    cursor: Cursor,
    reader: TrailReader,
    stop: Arc<AtomicBool>,
    pid: u32,
    /// When the lag was last measured while records waited.
    lag_checked: tokio::time::Instant,
}

/// Why a connection ended.
type Broken = String;

impl Worker {
    fn run(mut self) {
        let mut retry = RETRY_MIN;
        let mut outage: Option<(tokio::time::Instant, Broken)> = None;
        loop {
            match self.connect() {
                Ok(conn) => {
                    METRICS.audit_ship_connected.set(1);
                    retry = RETRY_MIN;
                    if let Some((since, _)) = outage.take() {
                        let waiting = self.reader.last_written().saturating_sub(self.cursor.seq);
                        self.lifecycle(
                            "shipping_resumed",
                            format!(
                                "collector {} reached again after {:.1} s; {waiting} record(s) to send from seq {}",
                                self.cfg.address,
                                since.elapsed().as_secs_f64(),
                                self.cursor.seq + 1
                            ),
                        );
                    }
                    self.reader.rewind(self.cursor.seq + 1);
                    let result = self.pump(conn);
                    METRICS.audit_ship_connected.set(0);
                    match result {
                        Ok(()) => return,
                        Err(why) => {
                            tracing::warn!(target: "moat::audit", collector = %self.cfg.address, error = %why, "audit shipping stopped; retrying");
                            self.lifecycle(
                                "shipping_stopped",
                                format!("collector {}: {why}", self.cfg.address),
                            );
                            outage = Some((tokio::time::Instant::now(), why));
                        }
                    }
                }
                Err(why) => {
                    if outage.is_none() {
                        tracing::warn!(target: "moat::audit", collector = %self.cfg.address, error = %why, "audit shipping cannot reach the collector; retrying");
                        self.lifecycle(
                            "shipping_stopped",
                            format!("collector {}: {why}", self.cfg.address),
                        );
                        outage = Some((tokio::time::Instant::now(), why));
                    }
                }
            }
            self.cursor.save(true);
            self.update_lag(None, false);
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let until = tokio::time::Instant::now() + retry;
            while tokio::time::Instant::now() < until && !self.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
            }
            retry = (retry * 2).min(self.cfg.retry_max);
        }
    }

    fn lifecycle(&self, event: &str, detail: String) {
        let _ = self.audit.record(Record::Lifecycle(LifecycleRecord {
            event: event.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            config_sha256: None,
            detail: Some(detail),
        }));
    }

    fn connect(&self) -> Result<Conn, Broken> {
        let tcp = TcpStream::connect_timeout(&self.cfg.address, IO_TIMEOUT)
            .map_err(|e| format!("cannot connect: {e}"))?;
        let sock = socket2::SockRef::from(&tcp);
        let _ = sock.set_send_buffer_size(SEND_BUFFER);
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
        let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
        let conn = ClientConnection::new(self.tls.clone(), self.cfg.server_name.clone())
            .map_err(|e| format!("TLS: {e}"))?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("TLS handshake: {e}"))?;
        }
        Ok(stream)
    }

    /// Sends records until the connection breaks (`Err`) or shutdown finds nothing left
    /// (`Ok`).
    fn pump(&mut self, mut conn: Conn) -> Result<(), Broken> {
        // What the kernel may still hold unacknowledged after a write.
        let unacked = socket2::SockRef::from(&conn.sock)
            .send_buffer_size()
            .unwrap_or(4 * 1024 * 1024) as u64;
        let mut written: u64 = 0;
        // Records written but not yet known delivered: (seq, bytes written once it was).
        let mut pending: std::collections::VecDeque<(u64, u64)> = Default::default();
        let mut last_sent_time: Option<String> = None;
        let mut frame = Vec::with_capacity(BATCH_BYTES + 4096);
        loop {
            let lines = self
                .reader
                .read(BATCH_BYTES)
                .map_err(|e| format!("cannot read the trail: {e}"))?;
            if let Some((wanted, from)) = self.reader.skipped_to.take() {
                let gone = format!(
                    "records {wanted}..{} were removed from the trail before they were shipped",
                    from - 1
                );
                tracing::warn!(target: "moat::audit", "{gone}");
                self.lifecycle("shipping_gap", gone);
            }
            if lines.is_empty() {
                if self.stop.load(Ordering::Acquire) {
                    let _ = conn.flush();
                    conn.conn.send_close_notify();
                    let _ = conn.flush();
                    // Everything was written: the collector has it once this returns.
                    if let Some((seq, _)) = pending.back() {
                        self.cursor.seq = *seq;
                    }
                    self.cursor.save(true);
                    return Ok(());
                }
                self.cursor.save(false);
                self.update_lag(last_sent_time.as_deref(), true);
                // Idle: notice a collector that went away before the next write.
                if peer_closed(&conn.sock) {
                    return Err("the collector closed the connection".into());
                }
                std::thread::sleep(POLL);
                continue;
            }
            frame.clear();
            let mut seqs = Vec::with_capacity(lines.len());
            for line in &lines {
                let Some(fields) = syslog::line_fields(line) else {
                    tracing::warn!(target: "moat::audit", "a trail line without seq, time or kind was not shipped");
                    continue;
                };
                let msg = syslog::message(&self.cfg.hostname, self.pid, line, &fields);
                syslog::frame(&mut frame, &msg);
                seqs.push((fields.seq, frame.len() as u64));
                last_sent_time = Some(fields.time.to_owned());
            }
            conn.write_all(&frame)
                .and_then(|()| conn.flush())
                .map_err(|e| format!("cannot send: {e}"))?;
            for (seq, end) in seqs {
                pending.push_back((seq, written + end));
            }
            written += frame.len() as u64;
            METRICS.audit_ship_sent.inc_by(lines.len() as u64);
            while let Some(&(seq, end)) = pending.front() {
                if end + unacked > written {
                    break;
                }
                self.cursor.seq = seq;
                pending.pop_front();
            }
            self.cursor.save(false);
            self.update_lag(last_sent_time.as_deref(), false);
        }
    }

    /// Records written but not sent, and the age of the newest one sent while any wait.
    /// `caught_up`: the reader has just found nothing new, so nothing waits.
    fn update_lag(&mut self, last_sent_time: Option<&str>, caught_up: bool) {
        if !caught_up && self.lag_checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.lag_checked = tokio::time::Instant::now();
        let behind = if caught_up {
            0
        } else {
            self.reader
                .last_written()
                .saturating_sub(self.reader.next_seq.saturating_sub(1))
        };
        METRICS.audit_ship_lag_records.set(behind as i64);
        let seconds = match (behind, last_sent_time) {
            (0, _) => 0.0,
            (_, Some(t)) => {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .and_then(|t| SystemTime::from(t).elapsed().ok())
                    .map_or(0.0, |d| d.as_secs_f64())
            }
            (_, None) => 0.0,
        };
        METRICS.audit_ship_lag_seconds.set(seconds);
    }
}

/// Whether the peer closed the connection (or reset it): a non-blocking peek sees the end.
fn peer_closed(sock: &TcpStream) -> bool {
    if sock.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0_u8; 1];
    let closed = match sock.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    let _ = sock.set_nonblocking(false);
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(dir: &Path, first: u64, lines: &[u64], zeros: usize) {
        let mut data = Vec::new();
        for seq in lines {
            data.extend_from_slice(
                format!("{{\"v\":1,\"seq\":{seq},\"prev\":\"x\",\"time\":\"2026-12-04T00:00:00.000Z\",\"kind\":\"request\"}}\n")
                    .as_bytes(),
            );
        }
        data.extend(std::iter::repeat_n(0_u8, zeros));
        std::fs::write(dir.join(super::super::segment_name(first)), data).expect("write");
    }

    fn seqs(lines: &[String]) -> Vec<u64> {
        lines
            .iter()
            .filter_map(|l| syslog::line_fields(l).map(|f| f.seq))
            .collect()
    }

    #[test]
    fn reads_across_segments_from_a_seq_and_stops_at_the_zero_fill() {
        let dir = tempfile::tempdir().expect("dir");
        segment(dir.path(), 1, &[1, 2, 3], 0);
        segment(dir.path(), 4, &[4, 5], 4096);
        let mut r = TrailReader::new(dir.path().to_path_buf());
        r.rewind(2);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.extend(seqs(&r.read(1 << 20).expect("read")));
        }
        assert_eq!(got, [2, 3, 4, 5]);
        assert!(r.read(1 << 20).expect("read").is_empty(), "nothing new");
        assert_eq!(r.last_written(), 5);
        // A record appended where the zeros were is read next.
        segment(dir.path(), 4, &[4, 5, 6], 4096);
        assert_eq!(seqs(&r.read(1 << 20).expect("read")), [6]);
        // From the start again (after a failure): everything after the cursor.
        r.rewind(5);
        let mut again = Vec::new();
        for _ in 0..3 {
            again.extend(seqs(&r.read(1 << 20).expect("read")));
        }
        assert_eq!(again, [5, 6]);
    }

    #[test]
    fn the_last_record_of_a_large_segment_is_found_from_its_end() {
        let dir = tempfile::tempdir().expect("dir");
        let many: Vec<u64> = (1..=60_000).collect();
        segment(dir.path(), 1, &many, 1 << 20);
        let size = std::fs::metadata(dir.path().join(super::super::segment_name(1)))
            .expect("segment")
            .len();
        assert!(size > 4 << 20, "larger than the tail read: {size}");
        assert_eq!(
            TrailReader::new(dir.path().to_path_buf()).last_written(),
            60_000
        );
    }

    #[test]
    fn a_removed_segment_is_reported_and_skipped() {
        let dir = tempfile::tempdir().expect("dir");
        segment(dir.path(), 10, &[10, 11], 0);
        let mut r = TrailReader::new(dir.path().to_path_buf());
        r.rewind(3);
        assert_eq!(seqs(&r.read(1 << 20).expect("read")), [10, 11]);
        assert_eq!(r.skipped_to, Some((3, 10)));
    }

    #[test]
    fn the_cursor_survives_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let mut c = Cursor::load(dir.path());
        assert_eq!(c.seq, 0);
        c.seq = 41;
        c.save(true);
        assert_eq!(Cursor::load(dir.path()).seq, 41);
    }
}
