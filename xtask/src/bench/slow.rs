//! The slow-clients row: `cargo xtask bench __slow …` opens connections that trickle a request
//! head (as slowloris does) and connections that trickle a request body (as R-U-Dead-Yet does),
//! one byte a second each, opened at [`OPEN_RATE`] a second; meanwhile a normal client on a
//! thread of its own sends [`NORMAL_RATE`] small GETs a second over one keep-alive connection and
//! times each. It stops when every slow connection is closed by the proxy or has trickled for
//! [`WINDOW`], and prints what the normal client saw and when the proxy closed the slow ones
//! (see [`summary`]).
//!
//! The slow bodies carry the API key, so a proxy that authenticates callers holds them as it
//! would hold a real caller's slow upload, not refuse them at the head.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant, MissedTickBehavior};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::client::{connect, status_of, tls_config, ATTEMPT};
use super::parse::quantile;

/// The hidden subcommand that runs the slow clients.
pub(super) const SLOW: &str = "__slow";
/// Slow connections opened per second.
pub(super) const OPEN_RATE: u32 = 200;
/// How long a slow connection trickles before the client stops waiting for the proxy to close it.
pub(super) const WINDOW: Duration = Duration::from_secs(30);
/// Requests per second of the normal client.
pub(super) const NORMAL_RATE: u32 = 10;
/// The declared length of each slow body: far more than it will ever send.
const BODY_LENGTH: u32 = 100_000;

/// Settings of the slow-clients subcommand.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SlowArgs {
    pub(super) addr: SocketAddr,
    pub(super) host: String,
    pub(super) key: String,
    /// Connections trickling a request head.
    pub(super) heads: u32,
    /// Connections trickling a request body.
    pub(super) bodies: u32,
    /// Where the slow bodies are posted.
    pub(super) body_path: String,
}

impl SlowArgs {
    /// The command line that [`SlowArgs::parse`] reads back.
    pub(super) fn to_args(&self) -> Vec<String> {
        [
            "bench",
            SLOW,
            "--addr",
            &self.addr.to_string(),
            "--host",
            &self.host,
            "--key",
            &self.key,
            "--heads",
            &self.heads.to_string(),
            "--bodies",
            &self.bodies.to_string(),
            "--body-path",
            &self.body_path,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    pub(super) fn parse(args: &[String]) -> Result<Self> {
        let (mut addr, mut host, mut key, mut heads, mut bodies, mut body_path) =
            (None, None, None, None, None, None);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--addr" => addr = Some(crate::flag_number(&mut it, a)?),
                "--host" => host = Some(crate::flag_value(&mut it, a)?),
                "--key" => key = Some(crate::flag_value(&mut it, a)?),
                "--heads" => heads = Some(crate::flag_number(&mut it, a)?),
                "--bodies" => bodies = Some(crate::flag_number(&mut it, a)?),
                "--body-path" => body_path = Some(crate::flag_value(&mut it, a)?),
                _ => bail!("{SLOW}: unknown argument {a:?}"),
            }
        }
        Ok(Self {
            addr: addr.context("--addr is required")?,
            host: host.context("--host is required")?,
            key: key.context("--key is required")?,
            heads: heads.context("--heads is required")?,
            bodies: bodies.context("--bodies is required")?,
            body_path: body_path.context("--body-path is required")?,
        })
    }

    /// What a slow connection sends first, and the byte it then trickles.
    fn opening(&self, body: bool) -> (Vec<u8>, u8) {
        if body {
            let head = format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: \
                 application/json\r\nContent-Length: {BODY_LENGTH}\r\n\r\n",
                self.body_path, self.host, self.key
            );
            (head.into_bytes(), b' ')
        } else {
            let head = format!("GET / HTTP/1.1\r\nHost: {}\r\nX-Slow: ", self.host);
            (head.into_bytes(), b'x')
        }
    }
}

/// How one slow connection ended.
#[derive(Debug, Clone, PartialEq)]
enum Held {
    /// The proxy closed it, this long after the connection was made.
    Closed(Duration),
    /// Still open when its [`WINDOW`] ran out.
    Open,
    /// It could not be made.
    Failed(String),
}

/// One slow connection: connect, send `first`, then `trickle` once a second until the proxy
/// closes the connection or [`WINDOW`] passes. Anything the proxy answers (a 408, a 400) is
/// read and ignored: only the close counts.
async fn hold(
    connector: TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
    first: Arc<[u8]>,
    trickle: u8,
) -> Held {
    let tls = match timeout(ATTEMPT, connect(&connector, addr, name, b"http/1.1")).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Held::Failed(format!("{e:#}")),
        Err(_) => return Held::Failed(format!("no TLS connection within {ATTEMPT:?}")),
    };
    let opened = Instant::now();
    let (mut rx, mut tx) = tokio::io::split(tls);
    let closed = |at: Instant| Held::Closed(at.duration_since(opened));
    if tx.write_all(&first).await.is_err() || tx.flush().await.is_err() {
        return closed(Instant::now());
    }
    let deadline = opened + WINDOW;
    let mut tick =
        tokio::time::interval_at(opened + Duration::from_secs(1), Duration::from_secs(1));
    let mut scratch = [0_u8; 1024];
    loop {
        tokio::select! {
            read = rx.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return closed(Instant::now()),
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if tx.write_all(&[trickle]).await.is_err() || tx.flush().await.is_err() {
                    return closed(Instant::now());
                }
            }
            () = sleep_until(deadline) => return Held::Open,
        }
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` (or none: an empty body) from `tls`,
/// keeping whatever follows it in `buf`; returns its status.
async fn read_response(tls: &mut TlsStream<TcpStream>, buf: &mut Vec<u8>) -> Result<u16> {
    let mut chunk = [0_u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = status_of(head.as_bytes())
                .with_context(|| format!("not an HTTP/1.1 response: {head:?}"))?;
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse())
                .transpose()
                .context("bad content-length")?
                .unwrap_or(0);
            let total = end + 4 + length;
            while buf.len() < total {
                let n = tls.read(&mut chunk).await?;
                if n == 0 {
                    bail!("the connection closed inside a response body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Ok(status);
        }
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            bail!("the connection closed before a response");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What the normal client saw.
#[derive(Debug, Default)]
struct Normal {
    /// Milliseconds from sending each answered request to the end of its response.
    times: Vec<f64>,
    /// Seconds after the start at which the slowest of them was sent.
    slowest_at: f64,
    non_2xx: u64,
    errors: u64,
    first_error: Option<String>,
}

/// [`NORMAL_RATE`] keep-alive GETs a second over one connection (made again after an error)
/// until `stop` is set.
async fn normal(
    connector: TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
    request: Vec<u8>,
    stop: Arc<AtomicBool>,
) -> Normal {
    let mut seen = Normal::default();
    let began = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / NORMAL_RATE);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn: Option<TlsStream<TcpStream>> = None;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let attempt = async {
            let tls = match &mut conn {
                Some(tls) => tls,
                None => {
                    buf.clear();
                    conn.insert(connect(&connector, addr, name.clone(), b"http/1.1").await?)
                }
            };
            let start = Instant::now();
            tls.write_all(&request).await?;
            let status = read_response(tls, &mut buf).await?;
            anyhow::Ok((status, start.elapsed(), start))
        };
        match timeout(ATTEMPT, attempt).await {
            Ok(Ok((status, took, sent))) => {
                let ms = took.as_secs_f64() * 1000.0;
                if seen.times.iter().all(|t| *t < ms) {
                    seen.slowest_at = sent.duration_since(began).as_secs_f64();
                }
                seen.times.push(ms);
                if !(200..400).contains(&status) {
                    seen.non_2xx += 1;
                }
            }
            failed => {
                let e = match failed {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => format!("no answer within {ATTEMPT:?}"),
                };
                seen.errors += 1;
                seen.first_error.get_or_insert(e);
                conn = None;
            }
        }
    }
    seen
}

/// What the slow connections came to.
#[derive(Debug, Default, PartialEq)]
struct SlowCounts {
    closed: u32,
    /// The longest a closed one was held open, in seconds.
    slowest_close: f64,
    open: u32,
    failed: u32,
}

impl SlowCounts {
    fn add(&mut self, held: &Held) {
        match held {
            Held::Closed(after) => {
                self.closed += 1;
                self.slowest_close = self.slowest_close.max(after.as_secs_f64());
            }
            Held::Open => self.open += 1,
            Held::Failed(_) => self.failed += 1,
        }
    }
}

/// The two lines the subcommand prints, read back by `parse::parse_slow`.
fn summary(normal: &Normal, heads: &SlowCounts, bodies: &SlowCounts, secs: f64) -> String {
    let mut times = normal.times.clone();
    times.sort_by(f64::total_cmp);
    let ms = |q: f64| quantile(&times, q).unwrap_or(f64::NAN);
    let part = |what: &str, c: &SlowCounts| {
        format!(
            "{what} {} closed (slowest after {:.1} s), {} open after {} s, {} failed",
            c.closed,
            c.slowest_close,
            c.open,
            WINDOW.as_secs(),
            c.failed
        )
    };
    format!(
        "normal: {} answered, {} non-2xx, {} errors, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms at \
         {:.1} s\n\
         slow: {}; {}; in {secs:.1} s",
        times.len(),
        normal.non_2xx,
        normal.errors,
        ms(0.5),
        ms(0.99),
        ms(1.0),
        normal.slowest_at,
        part("heads", heads),
        part("bodies", bodies)
    )
}

/// The order the slow connections are opened in (`true` for a body): heads and bodies
/// alternating while both last.
fn interleaved(heads: u32, bodies: u32) -> Vec<bool> {
    (0..heads.max(bodies))
        .flat_map(|i| [(i < heads).then_some(false), (i < bodies).then_some(true)])
        .flatten()
        .collect()
}

/// `cargo xtask bench __slow`: see the module's documentation.
pub(super) fn slow_main(args: &[String]) -> Result<()> {
    let a = SlowArgs::parse(args)?;
    let name = ServerName::try_from(a.host.clone())
        .with_context(|| format!("bad server name {:?}", a.host))?;
    let connector = TlsConnector::from(tls_config(b"http/1.1")?);
    let stop = Arc::new(AtomicBool::new(false));

    // The normal client on a thread and runtime of its own, so that the slow connections' work
    // in this process does not delay it.
    let normal_thread = {
        let (connector, name, stop) = (connector.clone(), name.clone(), stop.clone());
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            a.host, a.key
        )
        .into_bytes();
        let addr = a.addr;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || rt.block_on(normal(connector, addr, name, request, stop)))
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let (heads, bodies, first_failure) = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let mut open = tokio::time::interval(Duration::from_secs(1) / OPEN_RATE);
        for body in interleaved(a.heads, a.bodies) {
            open.tick().await;
            let (first, trickle) = a.opening(body);
            let (connector, name) = (connector.clone(), name.clone());
            tasks.spawn(async move {
                (
                    body,
                    hold(connector, a.addr, name, first.into(), trickle).await,
                )
            });
        }
        let (mut heads, mut bodies, mut first_failure) =
            (SlowCounts::default(), SlowCounts::default(), None);
        while let Some(done) = tasks.join_next().await {
            let (body, held) = done.context("a slow connection's task failed")?;
            if let Held::Failed(e) = &held {
                first_failure.get_or_insert_with(|| e.clone());
            }
            if body { &mut bodies } else { &mut heads }.add(&held);
        }
        anyhow::Ok((heads, bodies, first_failure))
    })?;
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let normal = normal_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the normal client's thread panicked"))?;
    if let Some(e) = &normal.first_error {
        eprintln!("{SLOW}: normal client's first failure: {e}");
    }
    if let Some(e) = &first_failure {
        eprintln!("{SLOW}: first slow connection that could not be made: {e}");
    }
    println!("{}", summary(&normal, &heads, &bodies, secs));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_args_round_trip() -> Result<()> {
        let a = SlowArgs {
            addr: "127.0.0.1:8443".parse()?,
            host: "localhost".into(),
            key: "k".into(),
            heads: 250,
            bodies: 250,
            body_path: "/post".into(),
        };
        let args = a.to_args();
        assert_eq!(&args[..2], ["bench", SLOW]);
        assert_eq!(SlowArgs::parse(&args[2..])?, a);
        assert!(SlowArgs::parse(&args[2..8]).is_err(), "missing flags");
        Ok(())
    }

    #[test]
    fn slow_heads_never_end_and_slow_bodies_carry_the_key() -> Result<()> {
        let a = SlowArgs::parse(
            &SlowArgs {
                addr: "127.0.0.1:1".parse()?,
                host: "h".into(),
                key: "KEY".into(),
                heads: 1,
                bodies: 1,
                body_path: "/p".into(),
            }
            .to_args()[2..],
        )?;
        let (head, t) = a.opening(false);
        assert!(!head.windows(4).any(|w| w == b"\r\n\r\n"), "a whole head");
        assert_eq!(t, b'x');
        let (post, t) = a.opening(true);
        let post = String::from_utf8(post)?;
        assert!(post.starts_with("POST /p HTTP/1.1\r\n"));
        assert!(post.contains("Authorization: Bearer KEY\r\n"));
        assert!(post.contains(&format!("Content-Length: {BODY_LENGTH}\r\n")));
        assert!(post.ends_with("\r\n\r\n"));
        assert_eq!(t, b' ', "whitespace keeps the JSON body valid so far");
        Ok(())
    }

    #[test]
    fn heads_and_bodies_alternate() {
        assert_eq!(interleaved(2, 3), [false, true, false, true, true]);
        assert_eq!(interleaved(1, 0), [false]);
        assert!(interleaved(0, 0).is_empty());
    }

    #[test]
    fn counts_and_summary() {
        let mut heads = SlowCounts::default();
        for h in [
            Held::Closed(Duration::from_millis(10_100)),
            Held::Closed(Duration::from_millis(9_900)),
            Held::Open,
            Held::Failed("refused".into()),
        ] {
            heads.add(&h);
        }
        assert_eq!(
            heads,
            SlowCounts {
                closed: 2,
                slowest_close: 10.1,
                open: 1,
                failed: 1
            }
        );
        let normal = Normal {
            times: vec![3.0, 1.0, 2.0, 40.0],
            slowest_at: 12.34,
            non_2xx: 1,
            errors: 0,
            first_error: None,
        };
        let s = summary(&normal, &heads, &SlowCounts::default(), 31.3);
        assert_eq!(
            s,
            "normal: 4 answered, 1 non-2xx, 0 errors, p50 2.00 ms, p99 40.00 ms, max 40.00 ms at 12.3 s\n\
             slow: heads 2 closed (slowest after 10.1 s), 1 open after 30 s, 1 failed; bodies 0 \
             closed (slowest after 0.0 s), 0 open after 30 s, 0 failed; in 31.3 s"
        );
    }
}
