use bytes::{Bytes, BytesMut};

use super::*;
use crate::protocol::Frame;

const LIMITS: Limits = Limits {
    max_request_line: 64,
    max_head: 512,
    max_headers: 8,
};

/// Cuts and parses a request the way the proxy does, from raw bytes.
fn parse(raw: &[u8]) -> Result<RequestHead, H1Error> {
    let mut r = Reader::new(tokio_test::io::Builder::new().read(raw).build());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let head = rt
        .block_on(r.read_head(&LIMITS))?
        .ok_or(H1Error::UnexpectedEof)?;
    parse_request(&head, &LIMITS, 1000)
}

fn reason(raw: &[u8]) -> String {
    match parse(raw) {
        Ok(_) => "accepted".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn accepts_a_plain_request() {
    let req = parse(b"GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n").expect("valid");
    assert_eq!(req.method, http::Method::GET);
    assert_eq!(req.path(), "/v1/models");
    assert_eq!(&req.host[..], b"a");
    assert_eq!(req.body, BodyKind::Empty);
    assert!(req.keep_alive);
}

#[test]
fn framing_from_headers() {
    let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").expect("cl");
    assert_eq!(r.body, BodyKind::Length(5));
    let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").expect("te");
    assert_eq!(r.body, BodyKind::Chunked);
    let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n")
        .expect("te case");
    assert_eq!(r.body, BodyKind::Chunked);
    let r = parse(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n").expect("1.0");
    assert!(!r.keep_alive);
    let r = parse(b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n").expect("1.0 ka");
    assert!(r.keep_alive);
    let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").expect("close");
    assert!(!r.keep_alive);
    let r =
        parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n")
            .expect("expect");
    assert!(r.expect_continue);
}

/// Every request RFC 9112 §6.1–6.3 says a proxy must not guess about.
#[test]
fn refuses_ambiguous_framing_and_bad_syntax() {
    let cases: &[(&[u8], &str)] = &[
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "Content-Length with Transfer-Encoding"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "duplicate Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", "duplicate Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", "malformed Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", "malformed Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "malformed Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", "malformed Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", "malformed Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", "does not end in a single chunked"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", "does not end in a single chunked"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "does not end in a single chunked"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", "does not end in a single chunked"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", "obfuscated Transfer-Encoding"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "does not end in a single chunked"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n", "obfuscated Transfer-Encoding"),
        (b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in HTTP/1.0"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "invalid header name"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", "invalid header name"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", "invalid header value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", "invalid header value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n", "header value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX\x00A: b\r\n\r\n", "invalid header name"),
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", "bare LF"),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", "bare LF"),
        (b"GET / HTTP/1.1\r\n\r\n", "missing Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "duplicate Host"),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "invalid Host"),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "request line"),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "invalid line ending"),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "request line"),
        (b"GET /\r\nHost: a\r\n\r\n", "request line"),
        (b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "not origin-form"),
        (b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n", "request line"),
    ];
    for (raw, expected) in cases {
        let got = reason(raw);
        assert!(
            got.contains(expected),
            "{:?}: expected {expected:?}, got {got:?}",
            String::from_utf8_lossy(raw)
        );
        let status = parse(raw)
            .err()
            .map(|e| crate::error::Reject::from(&e).status.as_u16());
        assert_eq!(status, Some(400), "{:?}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn limits_give_431_and_413() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100));
    assert!(matches!(
        parse(long_target.as_bytes()),
        Err(H1Error::RequestLineTooLong)
    ));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: {}\r\n\r\n",
        "b".repeat(600)
    );
    assert!(matches!(parse(big.as_bytes()), Err(H1Error::HeadTooLarge)));
    let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert!(matches!(
        parse(many.as_bytes()),
        Err(H1Error::TooManyHeaders)
    ));
    let body = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n";
    assert!(matches!(parse(body), Err(H1Error::BodyTooLarge)));
    for e in [
        H1Error::RequestLineTooLong,
        H1Error::HeadTooLarge,
        H1Error::TooManyHeaders,
    ] {
        assert_eq!(crate::error::Reject::from(&e).status.as_u16(), 431);
    }
    assert_eq!(
        crate::error::Reject::from(&H1Error::BodyTooLarge)
            .status
            .as_u16(),
        413
    );
}

#[test]
fn unsupported_codings_methods_and_expectations() {
    let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert!(matches!(r, Err(H1Error::UnsupportedTransferCoding)));
    let r = parse(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(matches!(r, Err(H1Error::MethodNotAllowed)));
    let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n");
    assert!(matches!(r, Err(H1Error::ExpectationFailed)));
}

fn decode_all(kind: BodyKind, wire: &[u8], max: u64) -> Result<Vec<Frame>, H1Error> {
    let mut dec = Decoder::new(kind, max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    // Feed one byte at a time: every split point must decode the same.
    for b in wire {
        buf.extend_from_slice(&[*b]);
        while let Some(f) = dec.decode(&mut buf)? {
            frames.push(f);
        }
    }
    if !dec.is_done() {
        dec.finish_at_eof()?;
    }
    Ok(frames)
}

fn data(frames: &[Frame]) -> Vec<u8> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data(d) => Some(d.to_vec()),
            Frame::Trailers(_) => None,
        })
        .flatten()
        .collect()
}

#[test]
fn decodes_chunked_with_extensions_and_trailers() {
    let wire = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n";
    let frames = decode_all(BodyKind::Chunked, wire, 100).expect("valid");
    assert_eq!(data(&frames), b"hello world");
    assert_eq!(
        frames.last(),
        Some(&Frame::Trailers(Bytes::from_static(b"X-Checksum: abc\r\n")))
    );
}

#[test]
fn refuses_bad_chunks() {
    let cases: &[&[u8]] = &[
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5 x\r\nhello\r\n0\r\n\r\n",
        b"10000000000000000\r\n",
        b"fffffffffffffffff\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"zz\r\n",
        b"\r\n",
        b"5;a\x01=b\r\nhello\r\n0\r\n\r\n",
        b"0\r\nBad Trailer\r\n\r\n",
    ];
    for wire in cases {
        assert!(
            decode_all(BodyKind::Chunked, wire, 1 << 40).is_err(),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(2000));
    assert!(
        decode_all(BodyKind::Chunked, long_ext.as_bytes(), 100).is_err(),
        "extension abuse"
    );
    let over = b"a\r\n0123456789\r\n0\r\n\r\n";
    assert!(matches!(
        decode_all(BodyKind::Chunked, over, 5),
        Err(H1Error::BodyTooLarge)
    ));
}

#[test]
fn length_and_eof_bodies() {
    let frames = decode_all(BodyKind::Length(5), b"hello", 100).expect("length");
    assert_eq!(data(&frames), b"hello");
    assert!(matches!(
        decode_all(BodyKind::Length(6), b"hello", 100),
        Err(H1Error::UnexpectedEof)
    ));
    let frames = decode_all(BodyKind::CloseDelimited, b"until close", 100).expect("eof");
    assert_eq!(data(&frames), b"until close");
}

#[test]
fn chunked_encoding_round_trips() {
    let mut out = BytesMut::new();
    Encoder::Chunked.encode(&Frame::Data(Bytes::from_static(&[b'x'; 300])), &mut out);
    Encoder::Chunked.encode(&Frame::Trailers(Bytes::from_static(b"A: b\r\n")), &mut out);
    assert!(out.starts_with(b"12c\r\n"));
    let frames = decode_all(BodyKind::Chunked, &out, 1000).expect("round trip");
    assert_eq!(data(&frames).len(), 300);
    assert_eq!(
        frames.last(),
        Some(&Frame::Trailers(Bytes::from_static(b"A: b\r\n")))
    );
}

#[test]
fn response_framing() {
    let get = http::Method::GET;
    let head = |raw: &'static [u8]| Bytes::from_static(raw);
    let r = parse_response(
        &head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"),
        &get,
        16,
    )
    .expect("cl");
    assert_eq!((r.body, r.keep_alive), (BodyKind::Length(3), true));
    let r = parse_response(&head(b"HTTP/1.1 200 OK\r\n\r\n"), &get, 16).expect("eof");
    assert_eq!((r.body, r.keep_alive), (BodyKind::CloseDelimited, false));
    let r = parse_response(&head(b"HTTP/1.1 204 No Content\r\n\r\n"), &get, 16).expect("204");
    assert_eq!(r.body, BodyKind::Empty);
    let r = parse_response(
        &head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
        &get,
        16,
    )
    .expect("304");
    assert_eq!(r.body, BodyKind::Empty);
    let r = parse_response(
        &head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
        &http::Method::HEAD,
        16,
    )
    .expect("head");
    assert_eq!(r.body, BodyKind::Empty);
    let r = parse_response(
        &head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        &get,
        16,
    )
    .expect("chunked");
    assert_eq!(r.body, BodyKind::Chunked);
    let bad = parse_response(
        &head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        &get,
        16,
    );
    assert!(bad.is_err());
}

#[test]
fn hop_by_hop_includes_connection_named_headers() {
    let raw = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nProxy-Authorization: x\r\nX-Kept: 1\r\n\r\n");
    let req = parse_request(&raw, &LIMITS, 10).expect("valid");
    let dropped: Vec<&str> = req
        .headers
        .keys()
        .filter(|n| is_hop_by_hop(n, &req.headers))
        .map(HeaderName::as_str)
        .collect();
    assert_eq!(
        dropped,
        [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-authorization"
        ]
    );
}

/// Mutated requests and bodies never panic the codec: each either parses or is refused.
#[test]
fn mutations_never_panic() {
    let seeds: &[&[u8]] = &[
        b"POST /a?b=c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close, X\r\n\r\nabc",
    ];
    // xorshift: deterministic, no extra dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let interesting = [
        b'\r', b'\n', b' ', b'\t', b':', b';', b'0', b'f', 0, 0x7f, 0xff, b',',
    ];
    for round in 0..20_000 {
        let mut m = seeds[round % seeds.len()].to_vec();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % m.len();
            match next() % 3 {
                0 => m[i] = interesting[(next() as usize) % interesting.len()],
                1 => {
                    m.remove(i);
                }
                _ => m.insert(i, interesting[(next() as usize) % interesting.len()]),
            }
            if m.is_empty() {
                break;
            }
        }
        let mut buf = BytesMut::from(&m[..]);
        let mut r = Reader::new(tokio_test::io::Builder::new().build());
        r.buf = buf.split();
        let Ok(Some(end)) = r.scan_head(&LIMITS) else {
            continue;
        };
        let head = r.buf.split_to(end).freeze();
        let Ok(req) = parse_request(&head, &LIMITS, 1 << 20) else {
            continue;
        };
        let mut dec = Decoder::new(req.body, 1 << 20);
        while let Ok(Some(_)) = dec.decode(&mut r.buf) {}
    }
}

/// Heads with more fields than fit on the stack are parsed with room for the configured limit,
/// and the limit still holds on both sides of that boundary.
#[test]
fn header_count_limit_holds_beyond_the_stack_slots() {
    let limits = Limits {
        max_request_line: 64,
        max_head: 64 * 1024,
        max_headers: 100,
    };
    let request = |n: usize| {
        let fields: String = (1..n).map(|i| format!("X-{i}: v\r\n")).collect();
        Bytes::from(format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n"))
    };
    for n in [1, 31, 32, 33, 64, 100] {
        let r = parse_request(&request(n), &limits, 0).expect("within the limit");
        assert_eq!(r.headers.len(), n, "{n} fields");
    }
    assert!(matches!(
        parse_request(&request(101), &limits, 0),
        Err(H1Error::TooManyHeaders)
    ));
    let response = |n: usize| {
        let fields: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
        Bytes::from(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n{fields}\r\n"
        ))
    };
    let get = http::Method::GET;
    let r = parse_response(&response(60), &get, 100).expect("61 fields");
    assert_eq!(r.headers.len(), 61);
    assert!(matches!(
        parse_response(&response(100), &get, 100),
        Err(H1Error::TooManyHeaders)
    ));
}
