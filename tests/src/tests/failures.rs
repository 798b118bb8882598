//! Upstream failures and slow clients.

use std::time::Duration;

use crate::client::{self, Raw};
use crate::gateway;
use crate::origin::Origin;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn assert_json_error(r: &client::RawResponse, kind: &str) {
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json body");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    let text = r.text();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("refused"),
        "internals leaked: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_the_gateway_keeps_serving() {
    // Reserve the port without listening: connects are refused, and no other socket can take
    // the port before the model server "comes up" on it.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    let mut gw = gateway::new(format!("127.0.0.1:{port}")).run();
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, GET).await;
    let r = r.expect("response");
    assert_eq!(r.status, 502);
    assert_json_error(&r, "upstream_unavailable");

    // The model server comes up on that port: the same gateway now forwards.
    let listener = socket.listen(64).expect("listen");
    let _origin = Origin::serve(listener);
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, GET).await;
    assert_eq!(r.expect("response").text(), "ok");
    assert!(gw.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_is_504_and_the_gateway_keeps_serving() {
    let origin = Origin::start().await;
    let mut gw = gateway::new(origin.addr.to_string()).run();
    let (r, _) = client::raw_exchange(
        gw.addr,
        &gw.ca,
        b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let r = r.expect("response");
    assert_eq!(r.status, 504);
    assert_json_error(&r, "upstream_timeout");
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, GET).await;
    assert_eq!(r.expect("response").text(), "ok");
    assert!(gw.is_running());
}

/// A pooled connection the upstream closed meanwhile is replaced, not reported as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_pooled_connection_is_replaced() {
    // An upstream that answers one request per connection, then closes without saying so.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                crate::origin::answer_one_head(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                )
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Dropping closes the connection moat has pooled.
            });
        }
    });
    let gw = gateway::new(addr.to_string()).run();
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    for i in 0..3 {
        c.send(GET).await.expect("send");
        let r = c.read_response(false).await.expect("response");
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "request {i}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// A client sending its head one byte per second is cut off by the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_by_the_header_timeout() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .http("header_timeout = \"2s\"")
        .run();
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1234567890\r\n\r\n";
    let mut sent = 0;
    for b in head.iter() {
        if c.send(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if sent > 3 {
            break;
        }
    }
    // The gateway answers 408 and closes well before the head could have been completed.
    let r = c.read_response(false).await.expect("408 before close");
    assert_eq!(r.status, 408);
    assert!(c.is_closed().await);
    assert!(sent < head.len());
    assert_eq!(origin.connections(), 0);
}

/// A request body that stops arriving gets 408 after the body idle timeout; the upstream never
/// receives a complete request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_body_gets_408() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .http("body_idle_timeout = \"1s\"")
        .run();
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    c.send(b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly part")
        .await
        .expect("send");
    let r = c.read_response(false).await.expect("408");
    assert_eq!(r.status, 408);
    assert!(c.is_closed().await);
    let got = origin
        .seen
        .sink_progress
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        got < 100,
        "the upstream received a complete body ({got} bytes)"
    );
}

/// One retry rule for both protocols: a request the pooled connection dropped is sent again
/// only when it is idempotent and nothing of it was consumed from the client. A PUT whose body
/// was still arriving when it was forwarded gets 502 and reached the upstream once; the same PUT
/// on a route that reads bodies whole (a redaction profile for requests) is sent again and
/// answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_read_whole_is_retried_a_streamed_one_is_not_over_both_protocols() {
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (streamed, whole) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (st, wh) = (streamed.clone(), whole.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (st, wh) = (st.clone(), wh.clone());
            tokio::spawn(async move {
                for nth in 0.. {
                    let Some(head) = crate::origin::read_one_head(&mut s).await else {
                        return;
                    };
                    if head.starts_with(b"PUT /stream") {
                        st.fetch_add(1, SeqCst);
                    } else if head.starts_with(b"PUT /whole") {
                        wh.fetch_add(1, SeqCst);
                    }
                    if nth == 1 {
                        return; // the second request on a connection: vanish without answering
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    let policy = r#"
[redaction.profiles.requests]
direction = "request"

[[policy.rules]]
id = "whole"
paths = ["/whole"]
require_region = false
redaction = "requests"
action = "allow"

[[policy.rules]]
id = "streamed"
require_region = false
action = "allow"
"#;
    for (n, http) in [client::http, client::http2].into_iter().enumerate() {
        let gw = gateway::new(addr.to_string()).policy(policy).run();
        let http = http(&gw.ca);
        // The body's second half comes 300 ms after the first, so it is still arriving when
        // the request is forwarded (the route that reads it whole waits for it).
        let put = |path: &str| {
            let halves = [r#"{"input":"#, r#""hello"}"#].map(Ok::<_, std::io::Error>);
            let body = futures_util::stream::iter(halves).then(|half| async move {
                if half.as_ref().is_ok_and(|h| h.starts_with('"')) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                half
            });
            http.put(client::url(gw.addr, path))
                .header("content-type", "application/json")
                .header("content-length", 17)
                .body(reqwest::Body::wrap_stream(body))
                .send()
        };
        let get = || http.get(client::url(gw.addr, "/")).send();
        assert_eq!(get().await.expect("GET").status(), 200);
        assert_eq!(put("/stream").await.expect("PUT").status(), 502);
        assert_eq!(
            streamed.load(SeqCst),
            n as u64 + 1,
            "a streamed body was sent again"
        );
        assert_eq!(get().await.expect("GET").status(), 200);
        let r = put("/whole").await.expect("PUT");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("body"), "ok");
        assert_eq!(
            whole.load(SeqCst),
            2 * (n as u64 + 1),
            "a whole body was not sent again"
        );
    }
}

/// An upstream that drops a reused connection right after reading a request: a GET is retried
/// once on a new connection; a POST is not (it may have had effects), and gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_retried() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let posts = Arc::new(AtomicU64::new(0));
    let gets = Arc::new(AtomicU64::new(0));
    let (p, g) = (posts.clone(), gets.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (p, g) = (p.clone(), g.clone());
            tokio::spawn(async move {
                for nth in 0.. {
                    let Some(have) = crate::origin::read_one_head(&mut s).await else {
                        return;
                    };
                    if have.starts_with(b"POST") {
                        p.fetch_add(1, SeqCst)
                    } else {
                        g.fetch_add(1, SeqCst)
                    };
                    if nth == 1 {
                        return; // the second request on a connection: vanish without answering
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    let gw = gateway::new(addr.to_string()).run();
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    c.send(GET).await.expect("send");
    assert_eq!(c.read_response(false).await.expect("first").status, 200);

    c.send(b"POST /sink HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("send");
    assert_eq!(c.read_response(false).await.expect("post").status, 502);
    assert_eq!(posts.load(SeqCst), 1, "the POST was sent again");

    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    c.send(GET).await.expect("send");
    assert_eq!(c.read_response(false).await.expect("fresh").status, 200);
    c.send(GET).await.expect("send");
    let r = c.read_response(false).await.expect("retried");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(
        gets.load(SeqCst),
        4,
        "the GET on the dropped connection was retried once"
    );
}
