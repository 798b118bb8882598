//! Strict framing end to end: each refused request gets its status, the connection is closed,
//! and the upstream receives nothing at all.

use crate::client::Raw;
use crate::gateway;
use crate::origin::Origin;

const CASES: &[(&str, &[u8], u16)] = &[
    ("CL with TE", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("differing CL", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("CL list", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 6\r\n\r\nhello!", 400),
    ("signed CL", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("TE not ending in chunked", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\nhello", 400),
    ("obfuscated TE", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", 400),
    ("TE with space before colon", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("negative chunk size", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    ("overflowing chunk size", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size with 0x", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk extension with control", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00\r\nhello\r\n0\r\n\r\n", 400),
    ("whitespace before colon", b"GET / HTTP/1.1\r\nHost : localhost\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("bare CR", b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: localhost\n\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n", 400),
    ("control in value", b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x1bb\r\n\r\n", 400),
    ("control in name", b"GET / HTTP/1.1\r\nHost: localhost\r\nX\x01A: b\r\n\r\n", 400),
    ("missing Host", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("duplicate Host", b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n", 400),
    ("two spaces in request line", b"GET  / HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
    ("no version", b"GET /\r\nHost: localhost\r\n\r\n", 400),
    ("HTTP/2 version", b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n", 400),
    ("absolute-form", b"GET http://evil.example/ HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
    ("TE gzip, chunked", b"POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("CONNECT", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 405),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_never_reach_the_upstream() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    for (name, request, status) in CASES {
        let mut c = Raw::connect(gw.addr, &gw.ca).await;
        c.send(request).await.expect("send");
        let r = c
            .read_response(false)
            .await
            .unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(r.status, *status, "{name}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{name}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json error");
        assert!(v["error"]["type"].is_string(), "{name}: {v}");
        assert!(c.is_closed().await, "{name}: connection left open");
    }
    assert_eq!(
        origin.connections(),
        0,
        "a refused request opened an upstream connection"
    );
    assert_eq!(origin.bytes(), 0, "a refused request sent bytes upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_answer_431_and_413() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .http("max_request_line_bytes = 256\nmax_header_bytes = 1024\nmax_headers = 10\nmax_request_body_bytes = 100")
        .run();
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(300)
    );
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1100)
    );
    let many: String = (0..11).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: localhost\r\n{many}\r\n");
    let big_body = format!(
        "POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 101\r\n\r\n{}",
        "x".repeat(101)
    );
    let big_chunked = format!(
        "POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n{}\r\n0\r\n\r\n",
        "x".repeat(101)
    );
    let cases = [
        ("long request line", long_line, 431),
        ("large head", big_head, 431),
        ("many headers", many, 431),
        ("large body", big_body, 413),
        ("large chunked body", big_chunked, 413),
    ];
    for (name, request, status) in cases {
        let mut c = Raw::connect(gw.addr, &gw.ca).await;
        c.send(request.as_bytes()).await.expect("send");
        let r = c
            .read_response(false)
            .await
            .unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(r.status, status, "{name}");
        assert!(c.is_closed().await, "{name}: connection left open");
    }
    assert_eq!(origin.connections(), 0);
    assert_eq!(origin.bytes(), 0);
}
