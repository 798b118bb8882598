//! Reading the load generators' output.

use anyhow::{bail, Context, Result};

/// What one wrk run reported.
#[derive(Debug, Clone, Default)]
pub(super) struct WrkResult {
    pub(super) requests: u64,
    pub(super) rps: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) non_2xx: u64,
    pub(super) socket_errors: u64,
    /// CPU time of the measured server process over the run, in percent of one core.
    pub(super) server_cpu: Option<f64>,
    /// How busy each CPU of the machine was over the run, in percent.
    pub(super) core_busy: Vec<f64>,
    /// CPU time used over the run by anything but the benchmark's own processes (wrk, the
    /// upstream and the proxies), in percent of one core: other work disturbing the figures.
    pub(super) other_cpu: Option<f64>,
}

impl WrkResult {
    /// Requests served per second of the measured server's CPU time.
    pub(super) fn per_cpu_second(&self) -> Option<f64> {
        self.server_cpu
            .filter(|c| *c > 0.0)
            .map(|c| self.rps * 100.0 / c)
    }
}

/// Reads requests/s, the mean and longest request time (in the p50 and p99 fields: h2load
/// reports no percentiles) and the failures from h2load's output.
pub(super) fn parse_h2load(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let (mut rps, mut mean) = (None, None);
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
                let n: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                match it.next() {
                    Some("total") => r.requests = n,
                    Some("failed" | "errored" | "timeout") => r.socket_errors += n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            r.non_2xx = rest
                .split(", ")
                .filter(|p| !p.ends_with(" 2xx") && !p.ends_with(" 3xx"))
                .filter_map(|p| p.split(' ').next()?.parse::<u64>().ok())
                .sum();
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            let cols: Vec<&str> = rest.split_whitespace().collect();
            // min, max, mean, sd, +/- sd
            if cols.len() >= 3 {
                mean = Some(duration_ms(cols[2])?);
                r.p99_ms = duration_ms(cols[1])?;
            }
        }
    }
    r.rps = rps.context("no req/s line")?;
    r.p50_ms = mean.context("no request time line")?;
    Ok(r)
}

/// Reads requests/s, the 50th and 99th percentiles and the error counts from wrk's output.
pub(super) fn parse_wrk(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let (mut rps, mut p50, mut p99) = (None, None, None);
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
                r.socket_errors += n.parse::<u64>().context("bad socket error count")?;
            }
        } else if line.contains(" requests in ") {
            r.requests = words
                .next()
                .and_then(|w| w.parse().ok())
                .context("bad request count")?;
        } else if let (Some(pct), Some(v), None) = (words.next(), words.next(), words.next()) {
            match pct {
                "50%" => p50 = Some(duration_ms(v)?),
                "99%" => p99 = Some(duration_ms(v)?),
                _ => {}
            }
        }
    }
    r.rps = rps.context("no Requests/sec line")?;
    r.p50_ms = p50.context("no 50% latency line (was --latency given?)")?;
    r.p99_ms = p99.context("no 99% latency line")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const H2LOAD_OUTPUT: &str = "starting benchmark...
finished in 10.00s, 35243.10 req/s, 2.34MB/s
requests: 352431 total, 352431 started, 352431 done, 352430 succeeded, 1 failed, 0 errored, 0 timeout
status codes: 352430 2xx, 0 3xx, 1 4xx, 0 5xx
traffic: 23.40MB (24536789) total, 1.02MB (1069842) headers (space savings 95.31%), 10.72MB (11234567) data
                     min         max         mean         sd        +/- sd
time for request:      123us     45.67ms      8.91ms      1.23ms    75.00%
";

    #[test]
    fn parses_h2load_output() -> Result<()> {
        let r = parse_h2load(H2LOAD_OUTPUT)?;
        assert_eq!(r.requests, 352_431);
        assert!((r.rps - 35_243.1).abs() < 0.01);
        assert!((r.p50_ms - 8.91).abs() < 1e-9, "mean");
        assert!((r.p99_ms - 45.67).abs() < 1e-9, "max");
        assert_eq!((r.non_2xx, r.socket_errors), (1, 1));
        assert!(parse_h2load("requests: 1 total\n").is_err());
        Ok(())
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
        assert!((r.rps - 29_000.5).abs() < 1e-9);
        assert!((r.p50_ms - 0.812).abs() < 1e-9);
        assert!((r.p99_ms - 2.21).abs() < 1e-9);
        assert_eq!(r.non_2xx, 5);
        assert_eq!(r.socket_errors, 3);
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
}
