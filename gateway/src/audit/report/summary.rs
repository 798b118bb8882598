//! The numbers of a report, computed from records and nothing else: [`Summary`] is built from an
//! iterator of `(host, record)` and holds plain counts the HTML only prints (and tests compare).

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use crate::audit::record::{Envelope, Record};

/// The outcome of a `reject` record refused by moat (every reason but `client_aborted`).
pub const REFUSED: &str = "refused";
/// A `reject` record's reason, and outcome, when the client went away before its request was
/// forwarded: no refusal (`docs/audit.md`).
pub const CLIENT_ABORTED: &str = "client_aborted";
/// What a missing string field is shown as (no principal, no rule, …).
pub const NONE: &str = "(none)";
/// A caller region or gateway region that is not set.
pub const NO_REGION: &str = "none";

/// Which records a report counts: `time` in `[since, until)`, host among `hosts` (all when
/// empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Records before this time.
    pub until: Option<OffsetDateTime>,
    /// Only these hosts (exact names); every host when empty.
    pub hosts: Vec<String>,
}

impl Filters {
    /// Whether `host` is reported on.
    pub fn host(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h == host)
    }

    /// Whether a record at `t` is in the window. A record whose time cannot be read is in it only
    /// when there is no time filter.
    pub fn time(&self, t: Option<OffsetDateTime>) -> bool {
        match t {
            Some(t) => self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u),
            None => self.since.is_none() && self.until.is_none(),
        }
    }
}

/// The width of a time bucket, chosen from the span of the records counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Spans up to 3 hours.
    Minute,
    /// Spans up to 7 days.
    Hour,
    /// Longer spans.
    Day,
}

impl Bucket {
    /// The bucket for records spanning `seconds` (last time minus first).
    pub fn for_span(seconds: i64) -> Self {
        if seconds <= 3 * 3600 {
            Self::Minute
        } else if seconds <= 7 * 86_400 {
            Self::Hour
        } else {
            Self::Day
        }
    }

    /// Width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }

    /// `minute`, `hour` or `day`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The start (Unix seconds, UTC) of the bucket holding `unix`.
    pub fn start(self, unix: i64) -> i64 {
        unix.div_euclid(self.seconds()) * self.seconds()
    }

    /// The bucket starting at `start`, as a label: `2026-12-04 13:05`, `2026-12-04 13:00` or
    /// `2026-12-04` (UTC).
    pub fn label(self, start: i64) -> String {
        let Ok(t) = OffsetDateTime::from_unix_timestamp(start) else {
            return start.to_string();
        };
        let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
        match self {
            Self::Day => format!("{y:04}-{m:02}-{d:02}"),
            _ => format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", t.hour(), t.minute()),
        }
    }
}

/// Request attempts by outcome: forwarded (`request` records), refused (`reject` records but
/// `client_aborted`), aborted (`reject` records with reason `client_aborted`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `request` records.
    pub forwarded: u64,
    /// `reject` records, but `client_aborted`.
    pub refused: u64,
    /// `reject` records with reason `client_aborted`.
    pub aborted: u64,
}

impl Counts {
    /// All three.
    pub fn total(&self) -> u64 {
        self.forwarded + self.refused + self.aborted
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Forwarded => self.forwarded += 1,
            Outcome::Refused => self.refused += 1,
            Outcome::Aborted => self.aborted += 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Forwarded,
    Refused,
    Aborted,
}

/// Egress the guard reported for one process, destination or host. A `guard` record with
/// `repeats` N stands for N + 1 events (identical events coalesced within a second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Egress {
    /// Refused events (records plus their repeats).
    pub refused_events: u64,
    /// `guard` records with verdict `refused`.
    pub refused_records: u64,
    /// Monitored events: let through (monitor mode) and reported.
    pub monitored_events: u64,
    /// `guard` records with verdict `monitored`.
    pub monitored_records: u64,
}

/// A principal's or client IP's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Talker {
    /// Request attempts by outcome.
    pub counts: Counts,
    /// Request body bytes (`request` records).
    pub bytes_in: u64,
    /// Response body bytes (`request` records).
    pub bytes_out: u64,
}

impl Talker {
    /// `bytes_in + bytes_out`.
    pub fn bytes(&self) -> u64 {
        self.bytes_in.saturating_add(self.bytes_out)
    }
}

/// A `guard_attached` or `guard_unattached` lifecycle record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardEvent {
    /// The record's `time`, as written.
    pub time: String,
    /// When, in Unix seconds (`None` when `time` cannot be read).
    pub unix: Option<i64>,
    /// The host that wrote it.
    pub host: String,
    /// `guard_attached` or `guard_unattached`.
    pub event: String,
    /// Its `detail`.
    pub detail: Option<String>,
}

/// Consecutive requests of one host (by time) served under one guard mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardRun {
    /// The host.
    pub host: String,
    /// `guard.mode` of the requests.
    pub mode: String,
    /// Time of the first request (Unix milliseconds).
    pub from_ms: i64,
    /// Time of the last request (Unix milliseconds).
    pub to_ms: i64,
    /// Requests in the run.
    pub requests: u64,
}

/// Everything a report shows, counted from the records that pass the [`Filters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records counted (every kind).
    pub records: u64,
    /// Records counted by `kind`.
    pub by_kind: BTreeMap<String, u64>,
    /// Hosts with at least one record counted.
    pub hosts: BTreeSet<String>,
    /// Earliest and latest record time (Unix milliseconds).
    pub first_ms: Option<i64>,
    /// Latest record time.
    pub last_ms: Option<i64>,
    /// Records whose `time` could not be read (counted, but on no time axis).
    pub untimed: u64,
    /// The time bucket of the series below.
    pub bucket: Bucket,
    /// Request attempts per bucket start (Unix seconds) and outcome: a `request` record's
    /// `decision`, `refused` or `client_aborted`.
    pub decisions: BTreeMap<i64, BTreeMap<String, u64>>,
    /// Request attempts per bucket start and rule (`(none)` without one).
    pub rules: BTreeMap<i64, BTreeMap<String, Counts>>,
    /// Request attempts per caller: (`principal`, `principal_kind`).
    pub callers: BTreeMap<(String, String), Counts>,
    /// Request attempts per (caller regions joined by `,`, gateway `region`); `none` when empty.
    pub regions: BTreeMap<(String, String), Counts>,
    /// `reject` records per (`reason`, `status`).
    pub refusals: BTreeMap<(String, u16), u64>,
    /// Values masked per (entity, direction), from `request` records' `redactions`.
    pub masked: BTreeMap<(String, String), u64>,
    /// `request` records with at least one value masked.
    pub masked_requests: u64,
    /// Guard events per process name (`comm`).
    pub egress_by_process: BTreeMap<String, Egress>,
    /// Guard events per destination (`addr:port`).
    pub egress_by_destination: BTreeMap<String, Egress>,
    /// Guard events per host.
    pub egress_by_host: BTreeMap<String, Egress>,
    /// `guard_attached` / `guard_unattached` records, by time.
    pub guard_events: Vec<GuardEvent>,
    /// `request` records per bucket start and `guard.mode`.
    pub guard_modes: BTreeMap<i64, BTreeMap<String, u64>>,
    /// Runs of requests under one guard mode, per host, by time.
    pub guard_runs: Vec<GuardRun>,
    /// Traffic per principal (`(none)` without one).
    pub principals: BTreeMap<String, Talker>,
    /// Traffic per client IP (the `client` without its port).
    pub clients: BTreeMap<String, Talker>,
}

impl Summary {
    /// Counts the records that pass `filters`.
    pub fn build<'a, H: AsRef<str>>(
        records: impl IntoIterator<Item = (H, &'a Envelope)>,
        filters: &Filters,
    ) -> Self {
        let mut b = Builder::new(filters.clone());
        for (host, env) in records {
            b.add(host.as_ref(), env);
        }
        b.finish()
    }
}

/// Builds a [`Summary`] one record at a time (a trail need not be held in memory).
#[derive(Debug)]
pub struct Builder {
    filters: Filters,
    s: Summary,
    /// Per-minute series, merged into the chosen bucket by [`Builder::finish`].
    decisions: BTreeMap<i64, BTreeMap<String, u64>>,
    rules: BTreeMap<i64, BTreeMap<String, Counts>>,
    modes: BTreeMap<i64, BTreeMap<String, u64>>,
    /// Per host: (time ms, seq, mode index) of each timed request.
    mode_points: BTreeMap<String, Vec<(i64, u64, usize)>>,
    mode_names: Vec<String>,
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The IP of a `client` (`IP:port`, `[v6]:port`); the text itself when it is no address.
pub fn client_ip(client: &str) -> String {
    match client.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => client.to_owned(),
    }
}

/// `addr:port`, with an IPv6 address in brackets.
pub fn destination(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// A `redactions` key `ENTITY.direction` as (entity, direction); `(none)` as the direction of
/// a key without a dot.
pub fn masked_key(key: &str) -> (String, String) {
    match key.rsplit_once('.') {
        Some((entity, direction)) => (entity.to_owned(), direction.to_owned()),
        None => (key.to_owned(), NONE.to_owned()),
    }
}

/// Caller regions as one label: joined by `,`; `none` when there are none.
pub fn regions_label(regions: &[String]) -> String {
    if regions.is_empty() {
        NO_REGION.to_owned()
    } else {
        regions.join(",")
    }
}

impl Builder {
    /// A builder counting what passes `filters`.
    pub fn new(filters: Filters) -> Self {
        Self {
            filters,
            s: Summary {
                records: 0,
                by_kind: BTreeMap::new(),
                hosts: BTreeSet::new(),
                first_ms: None,
                last_ms: None,
                untimed: 0,
                bucket: Bucket::Minute,
                decisions: BTreeMap::new(),
                rules: BTreeMap::new(),
                callers: BTreeMap::new(),
                regions: BTreeMap::new(),
                refusals: BTreeMap::new(),
                masked: BTreeMap::new(),
                masked_requests: 0,
                egress_by_process: BTreeMap::new(),
                egress_by_destination: BTreeMap::new(),
                egress_by_host: BTreeMap::new(),
                guard_events: Vec::new(),
                guard_modes: BTreeMap::new(),
                guard_runs: Vec::new(),
                principals: BTreeMap::new(),
                clients: BTreeMap::new(),
            },
            decisions: BTreeMap::new(),
            rules: BTreeMap::new(),
            modes: BTreeMap::new(),
            mode_points: BTreeMap::new(),
            mode_names: Vec::new(),
        }
    }

    /// Counts one record of `host`, if it passes the filters.
    pub fn add(&mut self, host: &str, env: &Envelope) {
        if !self.filters.host(host) {
            return;
        }
        let rfc = time::format_description::well_known::Rfc3339;
        let t = OffsetDateTime::parse(&env.time, &rfc).ok();
        if !self.filters.time(t) {
            return;
        }
        let ms = t.map(unix_ms);
        let s = &mut self.s;
        s.records += 1;
        *s.by_kind.entry(env.record.kind().to_owned()).or_default() += 1;
        if !s.hosts.contains(host) {
            s.hosts.insert(host.to_owned());
        }
        match ms {
            Some(ms) => {
                s.first_ms = Some(s.first_ms.map_or(ms, |f| f.min(ms)));
                s.last_ms = Some(s.last_ms.map_or(ms, |l| l.max(ms)));
            }
            None => s.untimed += 1,
        }
        let minute = ms.map(|ms| Bucket::Minute.start(ms.div_euclid(1000)));
        match &env.record {
            Record::Request(r) => {
                self.attempt(
                    minute,
                    Outcome::Forwarded,
                    &r.decision,
                    r.rule.as_deref(),
                    r.principal.as_deref(),
                    r.principal_kind.as_deref(),
                    &r.caller_regions,
                    r.region.as_deref(),
                    &r.client,
                    (r.bytes_in, r.bytes_out),
                );
                let s = &mut self.s;
                let mut any = false;
                for (key, &n) in &r.redactions {
                    *s.masked.entry(masked_key(key)).or_default() += n;
                    any |= n > 0;
                }
                if any {
                    s.masked_requests += 1;
                }
                if let Some(minute) = minute {
                    *self
                        .modes
                        .entry(minute)
                        .or_default()
                        .entry(r.guard.mode.clone())
                        .or_default() += 1;
                }
                if let Some(ms) = ms {
                    let idx = match self.mode_names.iter().position(|m| *m == r.guard.mode) {
                        Some(i) => i,
                        None => {
                            self.mode_names.push(r.guard.mode.clone());
                            self.mode_names.len() - 1
                        }
                    };
                    let points = match self.mode_points.get_mut(host) {
                        Some(p) => p,
                        None => self.mode_points.entry(host.to_owned()).or_default(),
                    };
                    points.push((ms, env.seq, idx));
                }
            }
            Record::Reject(r) => {
                let (outcome, label) = if r.reason == CLIENT_ABORTED {
                    (Outcome::Aborted, CLIENT_ABORTED)
                } else {
                    (Outcome::Refused, REFUSED)
                };
                self.attempt(
                    minute,
                    outcome,
                    label,
                    r.rule.as_deref(),
                    r.principal.as_deref(),
                    r.principal_kind.as_deref(),
                    &r.caller_regions,
                    r.region.as_deref(),
                    &r.client,
                    (0, 0),
                );
                *self
                    .s
                    .refusals
                    .entry((r.reason.clone(), r.status))
                    .or_default() += 1;
            }
            Record::Guard(g) => {
                let events = g.repeats.saturating_add(1);
                let refused = g.verdict == "refused";
                if refused || g.verdict == "monitored" {
                    let s = &mut self.s;
                    for e in [
                        s.egress_by_process.entry(g.comm.clone()).or_default(),
                        s.egress_by_destination
                            .entry(destination(&g.addr, g.port))
                            .or_default(),
                        s.egress_by_host.entry(host.to_owned()).or_default(),
                    ] {
                        if refused {
                            e.refused_events = e.refused_events.saturating_add(events);
                            e.refused_records += 1;
                        } else {
                            e.monitored_events = e.monitored_events.saturating_add(events);
                            e.monitored_records += 1;
                        }
                    }
                }
            }
            Record::Lifecycle(l)
                if l.event == "guard_attached" || l.event == "guard_unattached" =>
            {
                self.s.guard_events.push(GuardEvent {
                    time: env.time.clone(),
                    unix: ms.map(|ms| ms.div_euclid(1000)),
                    host: host.to_owned(),
                    event: l.event.clone(),
                    detail: l.detail.clone(),
                });
            }
            Record::Lifecycle(_) | Record::Connection(_) | Record::Checkpoint(_) => {}
        }
    }

    /// One request attempt (a `request` or `reject` record).
    #[allow(
        clippy::too_many_arguments,
        reason = "the fields request and reject records share"
    )]
    fn attempt(
        &mut self,
        minute: Option<i64>,
        outcome: Outcome,
        outcome_label: &str,
        rule: Option<&str>,
        principal: Option<&str>,
        principal_kind: Option<&str>,
        caller_regions: &[String],
        region: Option<&str>,
        client: &str,
        (bytes_in, bytes_out): (u64, u64),
    ) {
        let rule = rule.unwrap_or(NONE);
        if let Some(minute) = minute {
            *self
                .decisions
                .entry(minute)
                .or_default()
                .entry(outcome_label.to_owned())
                .or_default() += 1;
            self.rules
                .entry(minute)
                .or_default()
                .entry(rule.to_owned())
                .or_default()
                .add(outcome);
        }
        let s = &mut self.s;
        let principal = principal.unwrap_or(NONE);
        s.callers
            .entry((
                principal.to_owned(),
                principal_kind.unwrap_or(NONE).to_owned(),
            ))
            .or_default()
            .add(outcome);
        s.regions
            .entry((
                regions_label(caller_regions),
                region.unwrap_or(NO_REGION).to_owned(),
            ))
            .or_default()
            .add(outcome);
        for talker in [
            s.principals.entry(principal.to_owned()).or_default(),
            s.clients.entry(client_ip(client)).or_default(),
        ] {
            talker.counts.add(outcome);
            talker.bytes_in = talker.bytes_in.saturating_add(bytes_in);
            talker.bytes_out = talker.bytes_out.saturating_add(bytes_out);
        }
    }

    /// The summary: series merged into the bucket the span calls for, guard runs formed.
    pub fn finish(self) -> Summary {
        let mut s = self.s;
        let span = match (s.first_ms, s.last_ms) {
            (Some(f), Some(l)) => (l - f) / 1000,
            _ => 0,
        };
        let bucket = Bucket::for_span(span);
        s.bucket = bucket;
        for (minute, outcomes) in self.decisions {
            let into = s.decisions.entry(bucket.start(minute)).or_default();
            for (k, n) in outcomes {
                *into.entry(k).or_default() += n;
            }
        }
        for (minute, modes) in self.modes {
            let into = s.guard_modes.entry(bucket.start(minute)).or_default();
            for (k, n) in modes {
                *into.entry(k).or_default() += n;
            }
        }
        for (minute, rules) in self.rules {
            let into = s.rules.entry(bucket.start(minute)).or_default();
            for (k, c) in rules {
                let e = into.entry(k).or_default();
                e.forwarded += c.forwarded;
                e.refused += c.refused;
                e.aborted += c.aborted;
            }
        }
        for (host, mut points) in self.mode_points {
            points.sort_unstable();
            let mut run: Option<GuardRun> = None;
            for (ms, _, idx) in points {
                let mode = &self.mode_names[idx];
                match &mut run {
                    Some(r) if r.mode == *mode => {
                        r.to_ms = ms;
                        r.requests += 1;
                    }
                    _ => {
                        s.guard_runs.extend(run.take());
                        run = Some(GuardRun {
                            host: host.clone(),
                            mode: mode.clone(),
                            from_ms: ms,
                            to_ms: ms,
                            requests: 1,
                        });
                    }
                }
            }
            s.guard_runs.extend(run);
        }
        s.guard_events
            .sort_by(|a, b| (a.unix, &a.host, &a.time).cmp(&(b.unix, &b.host, &b.time)));
        s
    }
}
