//! Reading the load generators' output, and what one measured run gives.

use anyhow::{bail, ensure, Context, Result};

/// One measured run of one row against one target.
#[derive(Debug, Clone, Default)]
pub(super) struct Sample {
    /// The row's figure: req/s, MiB/s, handshakes/s or KiB per idle connection.
    pub(super) value: f64,
    /// Requests (or connections, for the idle rows) attempted.
    pub(super) requests: u64,
    /// Responses other than 2xx/3xx.
    pub(super) non_2xx: u64,
    /// Socket errors, failed, errored and timed-out requests, handshakes that failed, idle
    /// connections that could not be opened or were closed by the proxy.
    pub(super) errors: u64,
    /// Latency percentiles, where the run gives them.
    pub(super) p50_ms: Option<f64>,
    pub(super) p99_ms: Option<f64>,
    /// TLS version and ALPN protocol the load generator reports (h2load).
    pub(super) tls: Option<String>,
    pub(super) alpn: Option<String>,
    /// CPU time of the measured proxy over the run, in percent of one core.
    pub(super) server_cpu: Option<f64>,
    /// Steal time of the proxy's CPU over the run, in percent.
    pub(super) steal: Option<f64>,
    /// Steal time of the whole machine over the run, in percent.
    pub(super) machine_steal: Option<f64>,
    /// How busy each CPU of the machine was over the run, in percent.
    pub(super) core_busy: Vec<f64>,
    /// CPU time used over the run by anything but the benchmark's own processes, in percent of
    /// one core: other work disturbing the figures.
    pub(super) other_cpu: Option<f64>,
    /// Proxy-CPU steal (percent) of the runs thrown away because it was above `--max-steal`.
    pub(super) discarded_steal: Vec<f64>,
    /// What else the run showed, for the notes under the table (the slow-clients row: how the
    /// proxy dealt with the slow connections).
    pub(super) detail: Option<String>,
}

/// Reads requests/s, the failures, the TLS version and the ALPN protocol from h2load's output.
pub(super) fn parse_h2load(text: &str) -> Result<Sample> {
    let mut r = Sample::default();
    let mut rps = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            rps = rest
                .split(", ")
                .nth(1)
                .and_then(|v| v.strip_suffix(" req/s"))
                .and_then(|v| v.parse::<f64>().ok());
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(", ") {
                let mut it = part.split(' ');
                let n: u64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("bad request count {part:?}"))?;
                match it.next() {
                    Some("total") => r.requests = n,
                    Some("failed" | "errored" | "timeout") => r.errors += n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            for part in rest.split(", ") {
                let (n, class) = part
                    .split_once(' ')
                    .with_context(|| format!("bad status count {part:?}"))?;
                let n: u64 = n
                    .parse()
                    .with_context(|| format!("bad status count {part:?}"))?;
                if !matches!(class, "2xx" | "3xx") {
                    r.non_2xx += n;
                }
            }
        } else if let Some(v) = line.strip_prefix("TLS Protocol:") {
            r.tls = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Application protocol:") {
            r.alpn = Some(v.trim().to_owned());
        }
    }
    r.value = rps.context("no req/s line")?;
    Ok(r)
}

/// The `q`-quantile (0 < q <= 1) of sorted values, by the nearest-rank method.
pub(super) fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (q * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// p50 and p99, in milliseconds, of the request times in an h2load `--log-file` (tab-separated:
/// start time in µs since the epoch, status code, µs until the end of the response).
pub(super) fn parse_h2load_log(text: &str) -> Result<(f64, f64)> {
    let mut times = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let us: f64 = line
            .split('\t')
            .nth(2)
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("bad h2load log line {line:?}"))?;
        times.push(us / 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let p50 = quantile(&times, 0.50).context("the h2load log is empty")?;
    let p99 = quantile(&times, 0.99).context("the h2load log is empty")?;
    Ok((p50, p99))
}

/// Reads requests/s, the 50th and 99th percentiles and the error counts from wrk's output.
pub(super) fn parse_wrk(text: &str) -> Result<Sample> {
    let mut r = Sample::default();
    let mut rps = None;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().context("bad Non-2xx count")?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in v.split(',') {
                let n = part.split_whitespace().last().unwrap_or("0");
                r.errors += n.parse::<u64>().context("bad socket error count")?;
            }
        } else if line.contains(" requests in ") {
            r.requests = words
                .next()
                .and_then(|w| w.parse().ok())
                .context("bad request count")?;
        } else if let (Some(pct), Some(v), None) = (words.next(), words.next(), words.next()) {
            match pct {
                "50%" => r.p50_ms = Some(duration_ms(v)?),
                "99%" => r.p99_ms = Some(duration_ms(v)?),
                _ => {}
            }
        }
    }
    r.value = rps.context("no Requests/sec line")?;
    ensure!(
        r.p50_ms.is_some(),
        "no 50% latency line (was --latency given?)"
    );
    ensure!(r.p99_ms.is_some(), "no 99% latency line");
    Ok(r)
}

/// wrk's durations ("812.00us", "1.05ms", "2.00s", "1.00m") in milliseconds.
pub(super) fn duration_ms(v: &str) -> Result<f64> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {v:?}"))?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("bad number in {v:?}"))?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => bail!("unknown unit in {v:?}"),
    };
    Ok(n * factor)
}

/// The summary line the handshake client prints (see `client::handshake_main`).
pub(super) fn handshake_summary(ok: u64, non_2xx: u64, errors: u64, secs: f64) -> String {
    format!("handshakes: {ok} ok, {non_2xx} non-2xx, {errors} errors in {secs:.3} s")
}

/// Reads the handshake client's summary: the figure is completed handshakes (each with one
/// 2xx answer) per second.
pub(super) fn parse_handshake(text: &str) -> Result<Sample> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("handshakes: "))
        .context("no handshakes: line")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize, label: &str| -> Result<f64> {
        ensure!(
            words.get(i + 1) == Some(&label),
            "expected {label:?} after word {i} of {line:?}"
        );
        words
            .get(i)
            .and_then(|w| w.trim_end_matches(',').parse().ok())
            .with_context(|| format!("bad number before {label:?} in {line:?}"))
    };
    let ok = num(0, "ok,")?;
    let non_2xx = num(2, "non-2xx,")?;
    let errors = num(4, "errors")?;
    let secs = num(7, "s")?;
    ensure!(secs > 0.0, "no time passed in {line:?}");
    Ok(Sample {
        value: ok / secs,
        requests: (ok + non_2xx + errors) as u64,
        non_2xx: non_2xx as u64,
        errors: errors as u64,
        tls: Some("TLSv1.3".into()),
        alpn: Some("http/1.1".into()),
        ..Sample::default()
    })
}

/// Reads the slow-clients subcommand's two lines (see `slow::summary`): the figure is the
/// normal client's slowest request in milliseconds; the slow line becomes the detail.
pub(super) fn parse_slow(text: &str) -> Result<Sample> {
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .with_context(|| format!("no {prefix:?} line"))
    };
    let normal = line("normal: ")?;
    let slow = line("slow: ")?;
    let mut r = Sample {
        tls: Some("TLSv1.3".into()),
        alpn: Some("http/1.1".into()),
        detail: Some(format!("normal {normal}; slow {slow}")),
        ..Sample::default()
    };
    let mut max = None;
    for part in normal.split(", ") {
        let (a, b) = part
            .split_once(' ')
            .with_context(|| format!("bad part {part:?} in {normal:?}"))?;
        let number = |v: &str| -> Result<f64> {
            v.trim_end_matches(" ms")
                .parse()
                .with_context(|| format!("bad number in {part:?}"))
        };
        match (a, b) {
            (n, "answered") => r.requests = number(n)? as u64,
            (n, "non-2xx") => r.non_2xx = number(n)? as u64,
            (n, "errors") => r.errors += number(n)? as u64,
            ("p50", v) => r.p50_ms = Some(number(v)?),
            ("p99", v) => r.p99_ms = Some(number(v)?),
            ("max", v) => max = Some(number(v.split(" at ").next().unwrap_or(v))?),
            _ => bail!("unknown part {part:?} in {normal:?}"),
        }
    }
    // Slow connections that could not even be made are errors too.
    for part in slow.split("; ") {
        if let Some(failed) = part
            .rsplit(", ")
            .next()
            .and_then(|p| p.strip_suffix(" failed"))
        {
            r.errors += failed
                .parse::<u64>()
                .with_context(|| format!("bad failure count in {part:?}"))?;
        }
    }
    r.value = max.context("no max in the normal line")?;
    ensure!(
        r.value.is_finite(),
        "the normal client got no answer: {normal:?}"
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// h2load 1.52 against an HTTP/2 proxy, cut down.
    const H2LOAD_OUTPUT: &str = "starting benchmark...
spawning thread #0: 32 total client(s). Timing-based test with 0s of warm-up time and 10s of main duration for measurements.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2

finished in 10.00s, 35243.10 req/s, 2.34MB/s
requests: 352431 total, 352431 started, 352431 done, 352430 succeeded, 1 failed, 0 errored, 0 timeout
status codes: 352430 2xx, 0 3xx, 1 4xx, 0 5xx
traffic: 23.40MB (24536789) total, 1.02MB (1069842) headers (space savings 95.31%), 10.72MB (11234567) data
                     min         max         mean         sd        +/- sd
time for request:      123us     45.67ms      8.91ms      1.23ms    75.00%
";

    #[test]
    fn parses_the_slow_clients_summary() -> Result<()> {
        let text = "normal: 312 answered, 1 non-2xx, 2 errors, p50 1.20 ms, p99 6.50 ms, max \
                    17.21 ms at 3.4 s\nslow: heads 250 closed (slowest after 10.1 s), 0 open after 30 s, 0 \
                    failed; bodies 247 closed (slowest after 20.2 s), 0 open after 30 s, 3 failed; \
                    in 22.7 s\n";
        let r = parse_slow(text)?;
        assert_eq!(r.value, 17.21);
        assert_eq!((r.p50_ms, r.p99_ms), (Some(1.2), Some(6.5)));
        assert_eq!((r.requests, r.non_2xx, r.errors), (312, 1, 5));
        assert!(r
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("bodies 247 closed")));
        assert!(parse_slow("normal: 0 answered, 0 non-2xx, 0 errors, p50 NaN ms, p99 NaN ms, max NaN ms\nslow: in 1 s").is_err());
        assert!(parse_slow("slow: in 1 s").is_err());
        Ok(())
    }

    #[test]
    fn parses_h2load_output() -> Result<()> {
        let r = parse_h2load(H2LOAD_OUTPUT)?;
        assert_eq!(r.requests, 352_431);
        assert!((r.value - 35_243.1).abs() < 0.01);
        assert_eq!((r.non_2xx, r.errors), (1, 1));
        assert_eq!(r.tls.as_deref(), Some("TLSv1.3"));
        assert_eq!(r.alpn.as_deref(), Some("h2"));
        assert_eq!((r.p50_ms, r.p99_ms), (None, None), "from the log file only");
        assert!(parse_h2load("requests: 1 total\n").is_err());
        assert!(parse_h2load("status codes: x 2xx\nfinished in 1s, 1 req/s\n").is_err());
        Ok(())
    }

    #[test]
    fn h1_download_output() -> Result<()> {
        // h2load --h1 fetching a 1 MiB body: the rate line is the same, in req/s.
        let out = "TLS Protocol: TLSv1.3\nApplication protocol: http/1.1\n\
                   finished in 3.00s, 812.33 req/s, 812.40MB/s\n\
                   requests: 2437 total, 2469 started, 2437 done, 2437 succeeded, 0 failed, 0 errored, 0 timeout\n\
                   status codes: 2437 2xx, 0 3xx, 0 4xx, 0 5xx\n";
        let r = parse_h2load(out)?;
        assert!((r.value - 812.33).abs() < 1e-9);
        assert_eq!((r.requests, r.non_2xx, r.errors), (2437, 0, 0));
        assert_eq!(r.alpn.as_deref(), Some("http/1.1"));
        Ok(())
    }

    #[test]
    fn percentiles_from_the_h2load_log() -> Result<()> {
        // 100 requests taking 1..=100 ms, in shuffled order.
        let mut log = String::new();
        for i in 0..100_u64 {
            let ms = (i * 37) % 100 + 1;
            log.push_str(&format!(
                "{}\t200\t{}\n",
                1_700_000_000_000_000 + i,
                ms * 1000
            ));
        }
        let (p50, p99) = parse_h2load_log(&log)?;
        assert!((p50 - 50.0).abs() < 1e-9, "{p50}");
        assert!((p99 - 99.0).abs() < 1e-9, "{p99}");
        assert!(parse_h2load_log("").is_err());
        assert!(parse_h2load_log("1\t200\n").is_err());
        Ok(())
    }

    #[test]
    fn nearest_rank_quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 1.0), Some(4.0));
    }

    const WRK_OUTPUT: &str = "Running 10s test @ https://127.0.0.1:8443/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  200.00us   9.00ms   90.00%
    Req/Sec    29.10k     1.00k   31.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%    1.50ms
     99%    2.21ms
  290000 requests in 10.00s, 40.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  29000.50
Transfer/sec:      4.00MB
";

    #[test]
    fn parses_wrk_output() -> Result<()> {
        let r = parse_wrk(WRK_OUTPUT)?;
        assert_eq!(r.requests, 290_000);
        assert!((r.value - 29_000.5).abs() < 1e-9);
        assert_eq!(r.p50_ms, Some(0.812));
        assert_eq!(r.p99_ms, Some(2.21));
        assert_eq!(r.non_2xx, 5);
        assert_eq!(r.errors, 3);
        Ok(())
    }

    #[test]
    fn missing_latency_is_an_error() {
        assert!(parse_wrk("Requests/sec: 10.0\n").is_err());
    }

    #[test]
    fn converts_units() -> Result<()> {
        assert!((duration_ms("1.50s")? - 1500.0).abs() < 1e-9);
        assert!((duration_ms("250.00us")? - 0.25).abs() < 1e-9);
        assert!(duration_ms("3.0x").is_err());
        Ok(())
    }

    #[test]
    fn handshake_summary_round_trips() -> Result<()> {
        let text = format!("+ connecting\n{}\n", handshake_summary(9000, 2, 1, 3.0));
        let r = parse_handshake(&text)?;
        assert!((r.value - 3000.0).abs() < 1e-9, "{}", r.value);
        assert_eq!((r.requests, r.non_2xx, r.errors), (9003, 2, 1));
        assert!(parse_handshake("handshakes: 5 ok, 0 non-2xx, 0 errors in 0.000 s").is_err());
        assert!(parse_handshake("handshakes: 5 fine").is_err());
        assert!(parse_handshake("").is_err());
        Ok(())
    }
}
