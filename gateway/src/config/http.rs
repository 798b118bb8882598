//! `[http]` and `[http2]`: request limits and timeouts.

use std::time::Duration;

use super::validate::Validator;
use super::{raw, ConfigError};

/// HTTP limits and timeouts.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Keep an incoming `X-Request-Id` instead of replacing it.
    pub trust_request_id: bool,
    /// Forward header fields whose names contain `_` (dropped by default, as nginx does: an
    /// upstream that folds `_` into `-`, as CGI and WSGI do, would read `X_Moat_Principal` as
    /// moat's own header). Even when forwarded, a name that folds onto a field moat sets or
    /// removes is dropped.
    pub underscores_in_headers: bool,
    /// Longest request line (431 beyond).
    pub max_request_line_bytes: usize,
    /// Largest request head, request line included (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields in a request (431 beyond).
    pub max_headers: usize,
    /// Largest request body (413 beyond); also the most a compressed request body may decode to.
    pub max_request_body_bytes: u64,
    /// Most decoded bytes per encoded byte of a compressed body that redaction decodes (past the
    /// first MiB): a request beyond it gets 413, a response follows the profile's fail mode.
    pub max_decompression_ratio: u64,
    /// Time allowed to receive a whole request head once it started (and the TLS handshake).
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection waits for the next request.
    pub keepalive_timeout: Duration,
    /// Longest pause in a body transfer, either direction; resets on every byte of progress.
    pub body_idle_timeout: Duration,
    /// The waiting a request body may cause before it has earned more (see `min_body_rate`).
    pub body_timeout: Duration,
    /// Bytes per second of request body that earn one more second of waiting; 0: only
    /// `body_idle_timeout` bounds a slow body.
    pub min_body_rate: u64,
    /// On shutdown, how long requests and streams in flight may take to finish.
    pub drain_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            trust_request_id: false,
            underscores_in_headers: false,
            max_request_line_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_request_body_bytes: 32 * 1024 * 1024,
            max_decompression_ratio: 100,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(20),
            min_body_rate: 500,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// HTTP/2 limits (`[http2]`). The header count limit is `http.max_headers`, shared with HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Config {
    /// Streams a client may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// Largest decoded header list (`SETTINGS_MAX_HEADER_LIST_SIZE`); bounds HPACK bombs and
    /// CONTINUATION floods, which are refused once past it.
    pub max_header_list_bytes: u32,
    /// Flow-control window of each request stream.
    pub initial_stream_window: u32,
    /// Flow-control window of the whole connection: what one client can make moat hold of
    /// request bodies not yet passed on.
    pub initial_connection_window: u32,
    /// Largest frame payload accepted (`SETTINGS_MAX_FRAME_SIZE`).
    pub max_frame_size: u32,
    /// Response bytes buffered per stream before moat waits for the client's window.
    pub max_send_buffer: usize,
    /// Streams reset by the client before moat accepted them, pending at once; past it the
    /// connection gets GOAWAY (Rapid Reset, CVE-2023-44487).
    pub max_pending_accept_reset_streams: usize,
    /// Streams moat had to reset for the client's protocol errors on one connection; past it
    /// the connection gets GOAWAY ("MadeYouReset").
    pub max_local_error_reset_streams: usize,
    /// Frames that carry no request (SETTINGS, PING, PRIORITY, empty DATA or CONTINUATION,
    /// unknown types) a client may send at once; past it the connection gets GOAWAY
    /// (`ENHANCE_YOUR_CALM`).
    pub max_control_frames: u32,
    /// How fast that allowance refills, in frames a second.
    pub control_frames_per_second: u32,
    /// How often an HTTP/2 connection is checked with a PING.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_header_list_bytes: 16 * 1024,
            initial_stream_window: 256 * 1024,
            initial_connection_window: 1024 * 1024,
            max_frame_size: 16 * 1024,
            max_send_buffer: 256 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 256,
            max_control_frames: 1000,
            control_frames_per_second: 100,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

impl Validator<'_> {
    /// Validates `[http]`.
    pub(super) fn http(&self, h: &raw::RawHttp) -> Result<HttpConfig, ConfigError> {
        let d = HttpConfig::default();
        let http = HttpConfig {
            trust_request_id: h.trust_request_id.unwrap_or(d.trust_request_id),
            underscores_in_headers: h.underscores_in_headers.unwrap_or(d.underscores_in_headers),
            max_request_line_bytes: self.positive(
                "http.max_request_line_bytes",
                h.max_request_line_bytes,
                d.max_request_line_bytes,
            )?,
            max_header_bytes: self.positive(
                "http.max_header_bytes",
                h.max_header_bytes,
                d.max_header_bytes,
            )?,
            max_headers: self.positive("http.max_headers", h.max_headers, d.max_headers)?,
            max_request_body_bytes: h.max_request_body_bytes.unwrap_or(d.max_request_body_bytes),
            max_decompression_ratio: self.positive(
                "http.max_decompression_ratio",
                h.max_decompression_ratio,
                100,
            )? as u64,
            header_timeout: self.duration(
                "http.header_timeout",
                h.header_timeout.as_deref(),
                d.header_timeout,
            )?,
            keepalive_timeout: self.duration(
                "http.keepalive_timeout",
                h.keepalive_timeout.as_deref(),
                d.keepalive_timeout,
            )?,
            body_idle_timeout: self.duration(
                "http.body_idle_timeout",
                h.body_idle_timeout.as_deref(),
                d.body_idle_timeout,
            )?,
            body_timeout: self.duration(
                "http.body_timeout",
                h.body_timeout.as_deref(),
                d.body_timeout,
            )?,
            min_body_rate: h.min_body_rate.unwrap_or(d.min_body_rate),
            drain_timeout: self.duration(
                "http.drain_timeout",
                h.drain_timeout.as_deref(),
                d.drain_timeout,
            )?,
        };
        if http.max_request_line_bytes > http.max_header_bytes {
            return Err(self.invalid(
                "http.max_request_line_bytes",
                http.max_request_line_bytes,
                "must not exceed http.max_header_bytes",
            ));
        }
        Ok(http)
    }

    /// Validates `[http2]`; windows and frame sizes within the bounds of RFC 9113.
    pub(super) fn http2(&self, h2: &raw::RawHttp2) -> Result<Http2Config, ConfigError> {
        let d2 = Http2Config::default();
        let int = |path: &str, v: Option<u32>, default: u32, lo: u32, hi: u32| match v {
            None => Ok(default),
            Some(v) if (lo..=hi).contains(&v) => Ok(v),
            Some(v) => Err(self.invalid(path, v, format!("must be between {lo} and {hi}"))),
        };
        Ok(Http2Config {
            max_concurrent_streams: int(
                "http2.max_concurrent_streams",
                h2.max_concurrent_streams,
                d2.max_concurrent_streams,
                1,
                10_000,
            )?,
            max_header_list_bytes: int(
                "http2.max_header_list_bytes",
                h2.max_header_list_bytes,
                d2.max_header_list_bytes,
                1024,
                1024 * 1024,
            )?,
            // RFC 9113 §6.5.2: windows up to 2^31-1, frames 2^14..2^24-1.
            initial_stream_window: int(
                "http2.initial_stream_window_bytes",
                h2.initial_stream_window_bytes,
                d2.initial_stream_window,
                65_535,
                i32::MAX as u32,
            )?,
            initial_connection_window: int(
                "http2.initial_connection_window_bytes",
                h2.initial_connection_window_bytes,
                d2.initial_connection_window,
                65_535,
                i32::MAX as u32,
            )?,
            max_frame_size: int(
                "http2.max_frame_bytes",
                h2.max_frame_bytes,
                d2.max_frame_size,
                16_384,
                16_777_215,
            )?,
            max_send_buffer: self.positive(
                "http2.max_send_buffer_bytes",
                h2.max_send_buffer_bytes,
                d2.max_send_buffer,
            )?,
            max_pending_accept_reset_streams: self.positive(
                "http2.max_pending_accept_resets",
                h2.max_pending_accept_resets,
                d2.max_pending_accept_reset_streams,
            )?,
            max_local_error_reset_streams: self.positive(
                "http2.max_local_error_resets",
                h2.max_local_error_resets,
                d2.max_local_error_reset_streams,
            )?,
            max_control_frames: int(
                "http2.max_control_frames",
                h2.max_control_frames,
                d2.max_control_frames,
                10,
                1_000_000,
            )?,
            control_frames_per_second: int(
                "http2.control_frames_per_second",
                h2.control_frames_per_second,
                d2.control_frames_per_second,
                1,
                1_000_000,
            )?,
            keepalive_interval: self.duration(
                "http2.keepalive_interval",
                h2.keepalive_interval.as_deref(),
                d2.keepalive_interval,
            )?,
            keepalive_timeout: self.duration(
                "http2.keepalive_timeout",
                h2.keepalive_timeout.as_deref(),
                d2.keepalive_timeout,
            )?,
        })
    }
}
