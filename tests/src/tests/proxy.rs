//! The data path: round trips, streaming both ways, keep-alive on both sides.

use std::time::Duration;

use futures_util::StreamExt;

use crate::client::{self, url, Raw};
use crate::gateway;
use crate::origin::Origin;

const TEN_MB: u64 = 10 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_round_trip() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let http = client::http(&gw.ca);

    let r = http.get(url(gw.addr, "/")).send().await.expect("GET");
    assert_eq!(r.status(), 200);
    let id = r
        .headers()
        .get("x-request-id")
        .expect("request id")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(r.text().await.expect("body"), "ok");

    let r = http
        .post(url(gw.addr, "/sink"))
        .body("hello")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["bytes"], 5);
    assert_eq!(
        v["sum"],
        b"hello".iter().map(|&b| u64::from(b)).sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_by_moat() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let request = b"GET /headers HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 6.6.6.6\r\nX-Request-Id: client-chosen\r\n\
Connection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\n\
TE: trailers\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n";
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, request).await;
    let r = r.expect("response");
    assert_eq!(r.status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(seen["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(seen["x-forwarded-proto"], serde_json::json!(["https"]));
    assert_eq!(
        seen["forwarded"],
        serde_json::json!(["for=127.0.0.1;proto=https;host=\"localhost\""])
    );
    assert_eq!(seen["x-kept"], serde_json::json!(["yes"]));
    let upstream_id = seen["x-request-id"][0].as_str().expect("request id");
    assert_ne!(
        upstream_id, "client-chosen",
        "untrusted request ids are replaced"
    );
    assert_eq!(r.header("x-request-id"), Some(upstream_id));
    for hop in [
        "x-private",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(seen.get(hop).is_none(), "{hop} was forwarded: {seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_request_id_is_kept() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .http("trust_request_id = true")
        .run();
    let request =
        b"GET /headers HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: client-chosen-1\r\n\r\n";
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, request).await;
    let r = r.expect("response");
    let seen: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(seen["x-request-id"], serde_json::json!(["client-chosen-1"]));
    assert_eq!(r.header("x-request-id"), Some("client-chosen-1"));
}

/// 10 MB each way, streamed: the upstream sees the upload's first bytes while the client is
/// still holding back the rest, and moat's peak memory stays far below the body size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_stream_both_ways_with_bounded_memory() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let http = client::http(&gw.ca);
    // Warm up (TLS, pools, allocator arenas), then take the baseline.
    assert_eq!(
        http.get(url(gw.addr, "/"))
            .send()
            .await
            .expect("warm-up")
            .status(),
        200
    );
    let baseline = gw.memory_baseline_kib();

    let piece: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (body, feeder) = client::held_back_upload(TEN_MB, piece, origin.seen.clone());
    let r = http
        .post(url(gw.addr, "/sink"))
        .header("content-length", TEN_MB)
        .body(body)
        .send()
        .await
        .expect("upload");
    feeder.await.expect("feeder");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["bytes"], TEN_MB);
    assert_eq!(v["chunked"], false);

    client::download_pattern(&http, url(gw.addr, &format!("/bytes/{TEN_MB}")), TEN_MB).await;

    let peak = gw.memory_kib("VmHWM");
    let grew = peak.saturating_sub(baseline);
    assert!(
        grew < 8 * 1024,
        "moat's peak RSS grew by {grew} KiB while moving 20 MB (baseline {baseline} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_both_ways_with_trailers() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    c.send(b"POST /sink HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n")
        .await
        .expect("send");
    let r = c.read_response(false).await.expect("response");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["bytes"], 11);
    assert_eq!(v["chunked"], true, "the upstream received a chunked body");
    assert_eq!(
        v["trailers"]["x-checksum"], "42",
        "trailers reached the upstream"
    );

    // A response without a length reaches the client chunked, on the same connection.
    c.send(b"GET /chunked/100000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    let r = c.read_response(false).await.expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), 100_000);
}

/// Five requests on one client connection travel over one upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_on_both_sides() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    for _ in 0..5 {
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("send");
        let r = c
            .read_response(false)
            .await
            .expect("response on the same connection");
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
    c.send(b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .expect("send");
    assert_eq!(c.read_response(false).await.expect("post").status, 200);
    c.send(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    let r = c.read_response(true).await.expect("head");
    assert_eq!((r.status, r.body.len()), (200, 0));
    c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    assert_eq!(
        c.read_response(false).await.expect("after HEAD").text(),
        "ok"
    );
    assert_eq!(
        origin.connections(),
        1,
        "the upstream connection was reused"
    );

    // A second client reuses the pooled upstream connection too.
    let (r, _) = client::raw_exchange(
        gw.addr,
        &gw.ca,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(r.expect("response").status, 200);
    assert_eq!(origin.connections(), 1);

    // `Connection: close` is honoured.
    c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let r = c.read_response(false).await.expect("last");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_answered_before_the_body() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    c.send(b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        .await
        .expect("send head");
    let interim = c.read_head().await.expect("interim response");
    assert_eq!(interim.status, 100);
    c.send(b"data").await.expect("send body");
    let r = c.read_response(false).await.expect("final");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["bytes"], 4);
}

/// The first SSE event reaches the client while the upstream is still waiting to send the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_arrive_before_the_upstream_finishes() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let http = client::http(&gw.ca);
    let r = http
        .get(url(gw.addr, "/sse"))
        .send()
        .await
        .expect("GET /sse");
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut got = Vec::new();
    while !got.ends_with(b"data: first\n\n") {
        let piece = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("first event did not arrive while the upstream held the stream open")
            .expect("stream open")
            .expect("piece");
        got.extend_from_slice(&piece);
    }
    origin.release();
    while let Some(piece) = stream.next().await {
        got.extend_from_slice(&piece.expect("piece"));
    }
    assert_eq!(got, b"data: first\n\ndata: second\n\ndata: [DONE]\n\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind unix");
    // A minimal HTTP/1.1 responder on the unix socket.
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                crate::origin::answer_one_head(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nunix",
                )
                .await;
            });
        }
    });
    let gw = gateway::new(format!("unix:{}", path.display())).run();
    let (r, _) = client::raw_exchange(
        gw.addr,
        &gw.ca,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(r.expect("response").text(), "unix");
}

/// One JSON log line per request, with metadata only: no query string, no body, no header values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_holds_metadata_only() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let request = b"POST /sink?api_key=querysecret HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer headersecret\r\n\
Content-Length: 10\r\n\r\nbodysecret";
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, request).await;
    let id = r
        .expect("response")
        .header("x-request-id")
        .expect("id")
        .to_owned();
    let mut line = None;
    for _ in 0..100 {
        line = gw
            .log()
            .lines()
            .find(|l| l.contains(&id))
            .map(str::to_owned);
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = line.expect("access log line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/sink");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_in"], 10);
    assert!(v["duration_ms"].is_number());
    let all = gw.log();
    for secret in ["querysecret", "headersecret", "bodysecret"] {
        assert!(!all.contains(secret), "{secret} reached the log");
    }
}

/// An idle keep-alive connection holds no buffers: 400 TLS connections, each idle after one
/// request, cost moat at most 16 KiB apiece (the read buffer, the request's state and the TLS
/// stream are not kept for the wait; this was 36 KiB when they were).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_hold_no_buffers() {
    const N: u64 = 400;
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .runtime("worker_threads = 1")
        .run();
    let mut open = Vec::new();
    let one = async || {
        let mut c = Raw::connect(gw.addr, &gw.ca).await;
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("send");
        let r = c.read_response(false).await.expect("response");
        assert_eq!(r.status, 200);
        c
    };
    // Warm-up: allocator arenas, pools, the upstream connection.
    for _ in 0..20 {
        open.push(one().await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = gw.memory_kib("VmRSS");
    for _ in 0..N {
        open.push(one().await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_connection = gw.memory_kib("VmRSS").saturating_sub(baseline) / N;
    assert!(
        per_connection <= 16,
        "{per_connection} KiB per idle keep-alive connection"
    );
    drop(open);
}

/// The upstream pool keeps as many idle connections as requests ran at once (up to
/// `pool_max_idle`, 1024 by default): a second wave of 150 concurrent requests reuses the first
/// wave's 150 upstream connections instead of closing and reopening most of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_waves_reuse_the_upstream_pool() {
    const WAVE: usize = 150;
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let http = client::http(&gw.ca);
    let wave = async || {
        let requests = (0..WAVE).map(|_| {
            let http = http.clone();
            let url = url(gw.addr, "/delay");
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status()) })
        });
        for r in futures_util::future::join_all(requests).await {
            assert_eq!(r.expect("task").expect("request"), 200);
        }
    };
    wave().await;
    let first = origin.connections();
    assert!(first >= WAVE as u64 / 2, "the wave overlapped: {first}");
    wave().await;
    assert_eq!(
        origin.connections(),
        first,
        "the second wave opened new upstream connections"
    );
}
