//! HTTP/2 end to end: streams on one connection, each through the whole pipeline and audited;
//! SSE redaction as over HTTP/1.1; large bodies both ways with bounded memory; trailers.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;

use crate::client::{self, url};
use crate::gateway;
use crate::origin::Origin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_share_one_connection_and_each_is_audited() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let h2 = client::http2(&gw.ca);
    let requests = (0..24).map(|i| {
        let h2 = h2.clone();
        let addr = gw.addr;
        async move {
            let r = h2
                .post(url(addr, "/echo"))
                .body(format!("stream {i}"))
                .send()
                .await
                .expect("request");
            assert_eq!(r.version(), reqwest::Version::HTTP_2);
            assert_eq!(r.status(), 200);
            let id = client::request_id(&r);
            assert_eq!(r.text().await.expect("body"), format!("stream {i}"));
            id
        }
    });
    let ids: Vec<String> = futures_util::future::join_all(requests).await;
    let mut clients = BTreeSet::new();
    for id in &ids {
        let rec = gw.audit_record(id).await;
        assert_eq!(rec["status"], 200);
        assert_eq!(rec["tls"]["alpn"], "h2", "{rec}");
        assert_eq!(rec["method"], "POST");
        clients.insert(rec["client"].as_str().expect("client").to_owned());
    }
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        24,
        "one record per stream"
    );
    assert_eq!(
        clients.len(),
        1,
        "all streams came over one connection: {clients:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_is_redacted_as_it_streams() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .policy(
            "[redaction.profiles.out]\ndirection = \"response\"\n\n[[policy.rules]]\nid = \"r\"\nrequire_region = false\nredaction = \"out\"\naction = \"allow\"\n",
        )
        .run();
    let r = client::http2(&gw.ca)
        .get(url(gw.addr, "/sse-pii"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let id = client::request_id(&r);
    let mut stream = r.bytes_stream();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("Hello, my email is ") {
        let piece = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("safe text did not arrive while the upstream held the stream open")
            .expect("open")
            .expect("piece");
        got.extend_from_slice(&piece);
    }
    assert!(!String::from_utf8_lossy(&got).contains("ja\""));
    origin.release();
    while let Some(piece) = stream.next().await {
        got.extend_from_slice(&piece.expect("piece"));
    }
    let text = client::sse_text(&got);
    assert_eq!(text, "Hello, my email is <EMAIL_ADDRESS>. Bye");
    let rec = gw.audit_record(&id).await;
    assert_eq!(rec["redactions"]["EMAIL_ADDRESS.response"], 1, "{rec}");
}

const BIG: u64 = 32 * 1024 * 1024;

/// 32 MB each way over one stream: flow control carries it without moat holding the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_with_bounded_memory() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .http("max_request_body_bytes = 67108864")
        .run();
    let h2 = client::http2(&gw.ca);
    assert_eq!(
        h2.get(url(gw.addr, "/"))
            .send()
            .await
            .expect("warm-up")
            .status(),
        200
    );
    let baseline = gw.memory_baseline_kib();

    // With a declared length the upstream gets it as declared; without one, chunked.
    for declared in [true, false] {
        let piece: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
            (0..BIG / piece.len() as u64).map(move |_| Ok::<_, std::io::Error>(piece.clone())),
        ));
        let mut req = h2.post(url(gw.addr, "/sink"));
        if declared {
            req = req.header("content-length", BIG);
        }
        let r = req.body(body).send().await.expect("upload");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["bytes"], BIG);
        assert_eq!(v["chunked"], !declared);
    }

    let r = h2
        .get(url(gw.addr, &format!("/bytes/{BIG}")))
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), 200);
    let (n, ok) = client::read_pattern(r).await;
    assert_eq!(n, BIG);
    assert!(ok, "downloaded bytes differ from what the upstream sent");
    let grew = gw.memory_kib("VmHWM").saturating_sub(baseline);
    assert!(
        grew < 16 * 1024,
        "moat's peak RSS grew by {grew} KiB while moving 128 MB over HTTP/2"
    );
}

/// A gRPC client over TLS (ALPN `h2`) to moat, moat to an h2c gRPC server: unary and server
/// streaming calls carry their messages and their `grpc-status` trailers through, `te: trailers`
/// reaches the server, and each call has its audit record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_server_streaming_through_to_an_h2c_upstream() {
    let (grpc_addr, _server) = crate::grpc::start().await;
    let gw = gateway::new(grpc_addr.to_string())
        .upstream("protocol = \"h2c\"")
        .run();
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(client::tls_config(&gw.ca, &[b"h2"])));
    let tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS");
    let (sender, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    for (method, copies) in [("Unary", 1), ("Stream", 3)] {
        let mut sender = sender.clone().ready().await.expect("ready");
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("https://localhost/moat.test.Echo/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let (response, mut send) = sender.send_request(req, false).expect("send");
        send.send_data(crate::grpc::frame(b"hello grpc"), true)
            .expect("data");
        let resp = response.await.expect("response");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert_eq!(
            resp.headers()["x-seen-te"],
            "trailers",
            "te: trailers reached the server"
        );
        let id = resp.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .to_owned();
        let mut body = resp.into_body();
        let mut got = bytes::BytesMut::new();
        while let Some(d) = body.data().await {
            let d = d.expect("data");
            let _ = body.flow_control().release_capacity(d.len());
            got.extend_from_slice(&d);
        }
        let trailers = body
            .trailers()
            .await
            .expect("trailers")
            .expect("some trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["grpc-message"], "done");
        let msgs = crate::grpc::messages(got.freeze());
        assert_eq!(msgs.len(), copies, "{method}");
        assert!(msgs.iter().all(|m| &m[..] == b"hello grpc"));
        let rec = gw.audit_record(&id).await;
        assert_eq!(rec["status"], 200);
        assert_eq!(rec["path"], format!("/moat.test.Echo/{method}"));
        assert!(rec["upstream"]
            .as_str()
            .is_some_and(|u| u.starts_with("model@")));
    }
}

/// A peer that stops answering PINGs is cut off; one that answers stays connected while idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_keepalive_pings_close_the_connection() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .section("[http2]\nkeepalive_interval = \"500ms\"\nkeepalive_timeout = \"500ms\"")
        .run();
    let mut alive = crate::h2raw::H2Raw::connect(gw.addr, &gw.ca).await;
    let mut dead = crate::h2raw::H2Raw::connect(gw.addr, &gw.ca).await;
    dead.answer_pings = false;
    let (a, d) = tokio::join!(
        alive.read(Duration::from_secs(3)),
        dead.read(Duration::from_secs(3))
    );
    assert!(
        a.goaway.is_none() && !a.closed,
        "a peer answering PINGs was cut off: {a:?}"
    );
    assert!(
        d.goaway.is_some() || d.closed,
        "a peer ignoring PINGs for 3 s is still connected: {d:?}"
    );
}

/// SIGTERM while an SSE stream is open over HTTP/2: new connections are refused, the stream
/// finishes (GOAWAY lets it), moat exits 0 and the audit trail verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_stream_in_flight_finish() {
    let origin = Origin::start().await;
    let mut gw = gateway::new(origin.addr.to_string())
        .http("drain_timeout = \"20s\"")
        .run();
    let r = client::http2(&gw.ca)
        .get(url(gw.addr, "/sse-pii"))
        .send()
        .await
        .expect("GET");
    let mut stream = r.bytes_stream();
    let mut got = Vec::new();
    got.extend_from_slice(
        &tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("first piece")
            .expect("open")
            .expect("piece"),
    );
    gw.terminate();
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if tokio::net::TcpStream::connect(gw.addr).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "moat still accepts connections after SIGTERM");
    origin.release();
    while let Some(piece) = stream.next().await {
        got.extend_from_slice(&piece.expect("the stream in flight was cut"));
    }
    assert!(
        String::from_utf8_lossy(&got).ends_with("data: [DONE]\n\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let status = gw
        .wait_exit(Duration::from_secs(15))
        .expect("moat did not exit after its streams finished");
    assert!(status.success(), "{status}");
    let out = std::process::Command::new(gateway::binary())
        .args(["audit", "verify"])
        .arg(gw.audit_dir())
        .output()
        .expect("audit verify");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An h2c listener (cleartext HTTP/2, prior knowledge) serves clients on this host through the
/// same pipeline: answered, audited, with no TLS facts in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_listener_serves_in_host_clients() {
    let origin = Origin::start().await;
    let port = gateway::free_port();
    let gw = gateway::new(origin.addr.to_string())
        .listener(&format!(
            "\n[[listener]]\nname = \"local\"\naddress = \"127.0.0.1:{port}\"\nupstream = \"model\"\nprotocol = \"h2c\""
        ))
        .run();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the h2c listener");
    let (sender, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut sender = sender.ready().await.expect("ready");
    let req = http::Request::builder()
        .uri(format!("http://127.0.0.1:{port}/"))
        .body(())
        .expect("request");
    let (response, _) = sender.send_request(req, true).expect("send");
    let resp = response.await.expect("response");
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let rec = gw.audit_record(&id).await;
    assert_eq!(rec["listener"], "local");
    assert!(rec["tls"]["version"].is_null(), "{rec}");
    // The TLS listener still answers as before.
    assert_eq!(
        client::http2(&gw.ca)
            .get(url(gw.addr, "/"))
            .send()
            .await
            .expect("TLS")
            .status(),
        200
    );
}

/// An HTTP/1.1 client reaches an h2c upstream too: its request becomes a stream on the
/// upstream's connection, the answer comes back chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_reach_an_h2c_upstream() {
    let (grpc_addr, _server) = crate::grpc::start().await;
    let gw = gateway::new(grpc_addr.to_string())
        .upstream("protocol = \"h2c\"")
        .run();
    let http = client::http(&gw.ca);
    for (method, copies) in [("Unary", 1), ("Stream", 3)] {
        let r = http
            .post(url(gw.addr, &format!("/moat.test.Echo/{method}")))
            .header("content-type", "application/grpc")
            .body(crate::grpc::frame(b"over http/1.1").to_vec())
            .send()
            .await
            .expect("request");
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-seen-content-type"], "application/grpc");
        let msgs = crate::grpc::messages(r.bytes().await.expect("body"));
        assert_eq!(msgs.len(), copies, "{method}");
        assert!(msgs.iter().all(|m| &m[..] == b"over http/1.1"));
    }
}

/// A body the client sent whole with its head, without a length, reaches an HTTP/1.1 upstream
/// with one (head and body in one write); a body still coming streams on, chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_with_its_head_goes_upstream_with_its_length() {
    use crate::h2raw::{self, encode_frame, H2Raw};
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let mut c = H2Raw::connect(gw.addr, &gw.ca).await;
    let head = h2raw::block_owned(&h2raw::request("POST", "/sink"));

    c.frames(&[
        encode_frame(h2raw::HEADERS, h2raw::END_HEADERS, 1, &head),
        encode_frame(h2raw::DATA, h2raw::END_STREAM, 1, b"hello"),
    ])
    .await;
    let seen = c.read(Duration::from_millis(1500)).await;
    assert_eq!(seen.answered, [1], "{seen:?}");
    assert_eq!(origin.seen.sink_progress.load(Ordering::SeqCst), 5);
    assert_eq!(
        origin.seen.sink_chunked.load(Ordering::SeqCst),
        0,
        "a whole body went upstream chunked"
    );

    c.frames(&[
        encode_frame(h2raw::HEADERS, h2raw::END_HEADERS, 3, &head),
        encode_frame(h2raw::DATA, 0, 3, b"part "),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.frame(h2raw::DATA, h2raw::END_STREAM, 3, b"two").await;
    let seen = c.read(Duration::from_millis(1500)).await;
    assert_eq!(seen.answered, [3], "{seen:?}");
    assert_eq!(origin.seen.sink_progress.load(Ordering::SeqCst), 8);
    assert_eq!(origin.seen.sink_chunked.load(Ordering::SeqCst), 1);
}
