//! HTTP/1.1 message bodies: [`Decoder`] turns buffered bytes into frames without buffering the
//! whole body, [`Encoder`] frames each piece for the other side.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{malformed, trim_ows, H1Error};
use crate::protocol::{BodyKind, Frame};

/// Longest chunk-size line, extensions included; longer ones are refused as extension abuse.
const MAX_CHUNK_LINE: usize = 1024;

/// Decodes a body from buffered bytes without doing I/O itself.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// Bytes of body decoded so far.
    pub total: u64,
    max_total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    Eof,
    Done,
}

impl Decoder {
    /// A decoder for a body of the given kind, refusing more than `max_total` bytes.
    pub fn new(kind: BodyKind, max_total: u64) -> Self {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::ChunkSize,
            BodyKind::CloseDelimited => State::Eof,
        };
        Self {
            state,
            total: 0,
            max_total,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes the next frame from `buf`. `Ok(None)` means more input is needed, or the body
    /// is complete (see [`Self::is_done`]).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, H1Error> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Length(rem) | State::ChunkData(rem) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = rem.min(buf.len() as u64);
                    let left = rem - n;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkDataEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok(Some(Frame::Data(self.take(buf, n as usize)?)));
                }
                State::Eof => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = buf.len();
                    return Ok(Some(Frame::Data(self.take(buf, n)?)));
                }
                State::ChunkSize => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let size = parse_chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkDataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    // The trailer section ends with an empty line; bound it like a head.
                    let end = if buf.starts_with(b"\r\n") {
                        Some(0)
                    } else {
                        memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 2)
                    };
                    let Some(end) = end else {
                        if buf.len() > 64 * 1024 {
                            return Err(malformed("trailer section too large"));
                        }
                        if memchr::memchr(b'\n', buf).is_some_and(|i| i == 0 || buf[i - 1] != b'\r')
                        {
                            return Err(malformed("bare LF"));
                        }
                        return Ok(None);
                    };
                    let block = buf.split_to(end).freeze();
                    buf.advance(2);
                    if memchr::memchr_iter(b'\n', &block).any(|i| i == 0 || block[i - 1] != b'\r') {
                        return Err(malformed("bare LF"));
                    }
                    if !block.is_empty() {
                        let mut slots = [httparse::EMPTY_HEADER; 64];
                        let mut with_end = BytesMut::with_capacity(block.len() + 2);
                        with_end.put_slice(&block);
                        with_end.put_slice(b"\r\n");
                        match httparse::parse_headers(&with_end, &mut slots) {
                            Ok(httparse::Status::Complete(_)) => {}
                            _ => return Err(malformed("invalid trailer section")),
                        }
                    }
                    self.state = State::Done;
                    return Ok(Some(Frame::Trailers(block)));
                }
            }
        }
    }

    /// Called when the stream ended: fine for a close-delimited body, an error otherwise.
    pub fn finish_at_eof(&mut self) -> Result<(), H1Error> {
        match self.state {
            State::Eof | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(H1Error::UnexpectedEof),
        }
    }

    fn take(&mut self, buf: &mut BytesMut, n: usize) -> Result<Bytes, H1Error> {
        self.total += n as u64;
        if self.total > self.max_total {
            return Err(H1Error::BodyTooLarge);
        }
        Ok(buf.split_to(n).freeze())
    }
}

/// Cuts one CRLF-terminated line (without the CRLF) off `buf`, refusing lines longer than `max`.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, H1Error> {
    match memchr::memchr(b'\n', buf) {
        Some(i) if i == 0 || buf[i - 1] != b'\r' => Err(malformed("bare LF")),
        Some(i) if i - 1 > max => Err(malformed("chunk line too long")),
        Some(i) => {
            let line = buf.split_to(i - 1).freeze();
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() > max + 1 => Err(malformed("chunk line too long")),
        None => Ok(None),
    }
}

/// Parses `1*HEXDIG [ BWS ";" chunk-ext ]`, refusing signs, prefixes, overflow and control bytes.
fn parse_chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(malformed("invalid chunk size"));
    }
    if digits > 16 {
        return Err(malformed("chunk size overflow"));
    }
    let rest = &line[digits..];
    let ext = trim_ows(rest);
    if !rest.is_empty() && !ext.starts_with(b";") {
        return Err(malformed("invalid chunk size"));
    }
    if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(malformed("control character in chunk extension"));
    }
    let mut n: u64 = 0;
    for &b in &line[..digits] {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        n = n
            .checked_mul(16)
            .and_then(|n| n.checked_add(u64::from(d)))
            .ok_or(malformed("chunk size overflow"))?;
    }
    Ok(n)
}

/// Frames body pieces for the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// Bytes are written as they are (Content-Length or close-delimited).
    Raw,
    /// Each piece becomes a chunk; trailers follow the last chunk.
    Chunked,
}

impl Encoder {
    /// Appends one frame, framed, to `out`.
    pub fn encode(self, frame: &Frame, out: &mut BytesMut) {
        match (self, frame) {
            (Self::Raw, Frame::Data(d)) => out.extend_from_slice(d),
            (Self::Raw, Frame::Trailers(_)) => {}
            (Self::Chunked, Frame::Data(d)) => {
                if d.is_empty() {
                    return;
                }
                write_hex(out, d.len());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(d);
                out.extend_from_slice(b"\r\n");
            }
            (Self::Chunked, Frame::Trailers(t)) => {
                out.extend_from_slice(b"0\r\n");
                out.extend_from_slice(t);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Appends the end of the body when the decoder ended without a trailer frame.
    pub fn finish(self, out: &mut BytesMut) {
        if self == Self::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
}

fn write_hex(out: &mut BytesMut, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    let mut v = n;
    loop {
        i -= 1;
        tmp[i] = HEX[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}
