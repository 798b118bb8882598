//! Content codings (RFC 9110 §8.4.1): `gzip`, `deflate`, `br` and `zstd` bodies decoded as they
//! stream, so redaction can read what a compressed body says.
//!
//! Decoding is bounded by design, not by luck: each step writes at most [`STEP`] bytes of
//! output, and after every step the total is checked against an absolute limit and a ratio to
//! the encoded bytes read so far, so a decompression bomb is refused within the bound without
//! allocating beyond it. zstd windows are limited to 8 MiB (as RFC 8878 asks of HTTP decoders)
//! and brotli's large-window extension is refused. One coding per body: a stacked coding
//! (`gzip, br`) or an unknown one is [`CodingError::Unsupported`].

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use flate2::{Crc, Decompress, FlushDecompress, Status};

/// Most output one decoding step writes.
pub const STEP: usize = 32 * 1024;

/// Output allowed before the ratio is checked (small bodies compress well).
const RATIO_GRACE: u64 = 1024 * 1024;

/// zstd window limit (2^23 = 8 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// A content coding moat decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Brotli (RFC 7932).
    Br,
    /// zlib-wrapped deflate (RFC 1950); raw deflate is accepted too, as browsers do.
    Deflate,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard (RFC 8878).
    Zstd,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodingError {
    /// An unknown coding, or more than one applied in turn.
    #[error("content coding not supported: {0}")]
    Unsupported(String),
    /// The encoded bytes are not valid for their coding.
    #[error("{coding} body is corrupt: {why}")]
    Corrupt {
        /// The coding.
        coding: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// The encoded body ended before its coding did.
    #[error("{0} body ends early")]
    Truncated(&'static str),
    /// More decoded bytes than the absolute limit.
    #[error("decoded body larger than {0} bytes")]
    TooLarge(u64),
    /// More decoded bytes per encoded byte than the ratio limit.
    #[error("decoded body more than {0} times its encoded size")]
    Ratio(u64),
}

/// Bounds on what one body may decode to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most decoded bytes in all.
    pub max_bytes: u64,
    /// Most decoded bytes per encoded byte (checked past the first MiB).
    pub max_ratio: u64,
}

impl Coding {
    /// The coding's name as `Content-Encoding` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Deflate => "deflate",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }

    /// The coding a message's `Content-Encoding` fields declare: `Ok(None)` for none (or
    /// `identity`), an error for an unknown or stacked coding.
    pub fn of(headers: &http::HeaderMap) -> Result<Option<Self>, CodingError> {
        let mut found = None;
        for value in headers.get_all(http::header::CONTENT_ENCODING) {
            let text = value
                .to_str()
                .map_err(|_| CodingError::Unsupported("(not ASCII)".into()))?;
            for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                let coding = match token.to_ascii_lowercase().as_str() {
                    "identity" => continue,
                    "gzip" | "x-gzip" => Self::Gzip,
                    "deflate" => Self::Deflate,
                    "br" => Self::Br,
                    "zstd" => Self::Zstd,
                    other => return Err(CodingError::Unsupported(other.to_owned())),
                };
                if found.is_some() {
                    return Err(CodingError::Unsupported(format!("stacked ({text})")));
                }
                found = Some(coding);
            }
        }
        Ok(found)
    }
}

/// A streaming decoder of one body.
pub struct Decoder {
    coding: Coding,
    inner: Inner,
    limits: Limits,
    read: u64,
    written: u64,
}

enum Inner {
    /// gzip: the header being read, then deflate, then the trailer.
    Gzip(Gzip),
    /// zlib or raw deflate, decided by the first two bytes.
    Deflate {
        first: Vec<u8>,
        z: Option<Decompress>,
        done: bool,
    },
    Br {
        state: Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>,
        done: bool,
    },
    Zstd {
        z: zstd::stream::raw::Decoder<'static>,
        /// At a frame boundary (nothing pending).
        idle: bool,
    },
}

struct Gzip {
    stage: GzStage,
    buf: Vec<u8>,
    z: Decompress,
    crc: Crc,
}

#[derive(Debug, PartialEq, Eq)]
enum GzStage {
    Header,
    Body,
    Trailer,
    Done,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("coding", &self.coding)
            .field("read", &self.read)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder for one body in `coding`, bounded by `limits`.
    pub fn new(coding: Coding, limits: Limits) -> Result<Self, CodingError> {
        let inner = match coding {
            Coding::Gzip => Inner::Gzip(Gzip {
                stage: GzStage::Header,
                buf: Vec::new(),
                z: Decompress::new(false),
                crc: Crc::new(),
            }),
            Coding::Deflate => Inner::Deflate {
                first: Vec::new(),
                z: None,
                done: false,
            },
            Coding::Br => Inner::Br {
                state: Box::new(BrotliState::new_strict(
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                )),
                done: false,
            },
            Coding::Zstd => {
                let mut z =
                    zstd::stream::raw::Decoder::new().map_err(|_| corrupt(coding, "decoder"))?;
                z.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(
                    ZSTD_WINDOW_LOG_MAX,
                ))
                .map_err(|_| corrupt(coding, "decoder"))?;
                Inner::Zstd { z, idle: true }
            }
        };
        Ok(Self {
            coding,
            inner,
            limits,
            read: 0,
            written: 0,
        })
    }

    /// Decodes the next encoded bytes; returns the decoded bytes they complete.
    pub fn push(&mut self, input: &[u8]) -> Result<Vec<u8>, CodingError> {
        self.read += input.len() as u64;
        let mut out = Vec::new();
        let coding = self.coding;
        let (limits, read) = (self.limits, self.read);
        let written = &mut self.written;
        let mut emit = |bytes: &[u8], out: &mut Vec<u8>| -> Result<(), CodingError> {
            *written += bytes.len() as u64;
            if *written > limits.max_bytes {
                return Err(CodingError::TooLarge(limits.max_bytes));
            }
            if *written > RATIO_GRACE && *written > read.saturating_mul(limits.max_ratio) {
                return Err(CodingError::Ratio(limits.max_ratio));
            }
            out.extend_from_slice(bytes);
            Ok(())
        };
        let mut chunk = vec![0u8; STEP];
        match &mut self.inner {
            Inner::Gzip(g) => g.push(input, &mut chunk, &mut |b, o| emit(b, o), &mut out)?,
            Inner::Deflate { first, z, done } => {
                let mut input = input;
                if z.is_none() {
                    let need = 2 - first.len().min(2);
                    let take = need.min(input.len());
                    first.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if first.len() < 2 {
                        return Ok(out);
                    }
                    // A zlib header: compression method 8, and the check bits.
                    let zlib = first[0] & 0x0f == 8
                        && (u16::from(first[0]) << 8 | u16::from(first[1])) % 31 == 0;
                    let mut d = Decompress::new(zlib);
                    let head = std::mem::take(first);
                    let (used, ended) = inflate(
                        &mut d,
                        &head,
                        &mut chunk,
                        coding,
                        &mut |b, o| emit(b, o),
                        &mut out,
                    )?;
                    if ended && (used < head.len() || !input.is_empty()) {
                        return Err(corrupt(coding, "data after the end"));
                    }
                    *done = ended;
                    *z = Some(d);
                }
                if let Some(d) = z {
                    if *done && !input.is_empty() {
                        return Err(corrupt(coding, "data after the end"));
                    }
                    let (used, ended) = inflate(
                        d,
                        input,
                        &mut chunk,
                        coding,
                        &mut |b, o| emit(b, o),
                        &mut out,
                    )?;
                    if ended && used < input.len() {
                        return Err(corrupt(coding, "data after the end"));
                    }
                    *done |= ended;
                }
            }
            Inner::Br { state, done } => {
                let mut offset = 0;
                loop {
                    if *done {
                        if offset < input.len() {
                            return Err(corrupt(coding, "data after the end"));
                        }
                        break;
                    }
                    let (mut avail_in, mut avail_out, mut out_off, mut total) =
                        (input.len() - offset, chunk.len(), 0, 0);
                    let result = BrotliDecompressStream(
                        &mut avail_in,
                        &mut offset,
                        input,
                        &mut avail_out,
                        &mut out_off,
                        &mut chunk,
                        &mut total,
                        state,
                    );
                    emit(&chunk[..out_off], &mut out)?;
                    match result {
                        BrotliResult::ResultSuccess => *done = true,
                        BrotliResult::NeedsMoreOutput => {}
                        BrotliResult::NeedsMoreInput => break,
                        BrotliResult::ResultFailure => {
                            return Err(corrupt(coding, "invalid stream"))
                        }
                    }
                }
            }
            Inner::Zstd { z, idle } => {
                use zstd::stream::raw::Operation;
                let mut input = input;
                loop {
                    let status = z
                        .run_on_buffers(input, &mut chunk)
                        .map_err(|_| corrupt(coding, "invalid frame"))?;
                    emit(&chunk[..status.bytes_written], &mut out)?;
                    input = &input[status.bytes_read..];
                    if status.bytes_read > 0 || status.bytes_written > 0 {
                        // A call that did nothing reports the next frame's needs, not this one's.
                        *idle = status.remaining == 0;
                    }
                    if status.bytes_read == 0 && status.bytes_written < chunk.len() {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// End of the encoded body: an error unless the coding ended too.
    pub fn finish(&mut self) -> Result<(), CodingError> {
        let ended = match &self.inner {
            Inner::Gzip(g) => g.stage == GzStage::Done,
            Inner::Deflate { done, .. } | Inner::Br { done, .. } => *done,
            Inner::Zstd { idle, .. } => *idle && self.read > 0,
        };
        if ended {
            Ok(())
        } else {
            Err(CodingError::Truncated(self.coding.name()))
        }
    }
}

/// Decodes a whole body.
pub fn decode_all(coding: Coding, body: &[u8], limits: Limits) -> Result<Vec<u8>, CodingError> {
    let mut d = Decoder::new(coding, limits)?;
    let mut out = Vec::new();
    // Fed in pieces, so no single step can run far past the limits.
    for piece in body.chunks(16 * 1024) {
        out.extend(d.push(piece)?);
    }
    d.finish()?;
    Ok(out)
}

fn corrupt(coding: Coding, why: &'static str) -> CodingError {
    CodingError::Corrupt {
        coding: coding.name(),
        why,
    }
}

type Emit<'a> = dyn FnMut(&[u8], &mut Vec<u8>) -> Result<(), CodingError> + 'a;

/// Inflates `input` through `d`, step by step; returns (input bytes used, stream ended).
fn inflate(
    d: &mut Decompress,
    input: &[u8],
    chunk: &mut [u8],
    coding: Coding,
    emit: &mut Emit<'_>,
    out: &mut Vec<u8>,
) -> Result<(usize, bool), CodingError> {
    let mut used = 0;
    loop {
        let (in0, out0) = (d.total_in(), d.total_out());
        let status = d
            .decompress(&input[used..], chunk, FlushDecompress::None)
            .map_err(|_| corrupt(coding, "invalid deflate data"))?;
        let consumed = usize::try_from(d.total_in() - in0).unwrap_or(usize::MAX);
        let produced = usize::try_from(d.total_out() - out0).unwrap_or(usize::MAX);
        used += consumed;
        emit(&chunk[..produced], out)?;
        match status {
            Status::StreamEnd => return Ok((used, true)),
            _ if consumed == 0 && produced < chunk.len() => return Ok((used, false)),
            _ => {}
        }
    }
}

impl Gzip {
    fn push(
        &mut self,
        mut input: &[u8],
        chunk: &mut [u8],
        emit: &mut Emit<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), CodingError> {
        let coding = Coding::Gzip;
        while !input.is_empty() {
            match self.stage {
                GzStage::Header => {
                    // The header is short; it is gathered whole, then parsed.
                    self.buf.extend_from_slice(input);
                    input = &[];
                    if self.buf.len() > 64 * 1024 {
                        return Err(corrupt(coding, "header too long"));
                    }
                    if let Some(len) = gzip_header_len(&self.buf)? {
                        let rest = self.buf.split_off(len);
                        self.buf.clear();
                        self.stage = GzStage::Body;
                        return self.push(&rest, chunk, emit, out);
                    }
                }
                GzStage::Body => {
                    let before = out.len();
                    let (used, ended) = inflate(&mut self.z, input, chunk, coding, emit, out)?;
                    self.crc.update(&out[before..]);
                    input = &input[used..];
                    if ended {
                        self.stage = GzStage::Trailer;
                    } else if used == 0 {
                        break;
                    }
                }
                GzStage::Trailer => {
                    let take = (8 - self.buf.len()).min(input.len());
                    self.buf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.buf.len() == 8 {
                        let crc = u32::from_le_bytes([
                            self.buf[0],
                            self.buf[1],
                            self.buf[2],
                            self.buf[3],
                        ]);
                        let size = u32::from_le_bytes([
                            self.buf[4],
                            self.buf[5],
                            self.buf[6],
                            self.buf[7],
                        ]);
                        if crc != self.crc.sum() || size != self.crc.amount() {
                            return Err(corrupt(coding, "checksum mismatch"));
                        }
                        self.stage = GzStage::Done;
                    }
                }
                GzStage::Done => return Err(corrupt(coding, "data after the end")),
            }
        }
        Ok(())
    }
}

/// The length of the gzip header at the start of `b`, once it is all there (RFC 1952 §2.3).
fn gzip_header_len(b: &[u8]) -> Result<Option<usize>, CodingError> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if b.len() < 10 {
        return Ok(None);
    }
    if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
        return Err(corrupt(Coding::Gzip, "not a gzip header"));
    }
    let flags = b[3];
    if flags & 0xe0 != 0 {
        return Err(corrupt(Coding::Gzip, "reserved header flags"));
    }
    let mut i = 10;
    if flags & FEXTRA != 0 {
        let Some(len) = b.get(i..i + 2) else {
            return Ok(None);
        };
        i += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let Some(end) = b.get(i..).and_then(|r| memchr::memchr(0, r)) else {
                return Ok(None);
            };
            i += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        i += 2;
    }
    Ok((b.len() >= i).then_some(i))
}

#[cfg(test)]
mod tests;
