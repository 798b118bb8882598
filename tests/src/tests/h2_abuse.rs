//! HTTP/2 abuse, bounded and on loopback: each attack is cut off (GOAWAY, reset or refusal),
//! moat's memory stays bounded, nothing malformed reaches the upstream, and a normal request on
//! another connection is served meanwhile.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use crate::client::{self, url};
use crate::gateway::{self, Gateway};
use crate::h2raw::{self, encode_frame, H2Raw};
use crate::origin::Origin;

/// Requests [`under_attack`] sends as a normal client (before, during and after the attack).
const NORMAL: u64 = 3;

/// A well-behaved client on its own connection gets its answer while the attack runs.
async fn served_meanwhile(gw: &Gateway) {
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        client::http2(&gw.ca).get(url(gw.addr, "/")).send(),
    )
    .await
    .expect("a normal request waited on the attack")
    .expect("normal request");
    assert_eq!(r.status(), 200);
}

fn get(path: &str) -> Vec<u8> {
    h2raw::block_owned(&h2raw::request("GET", path))
}

/// Runs `attack` on one connection while a normal client is served on another; returns what
/// the attacking connection saw. Checks memory, and that a connection cut off with GOAWAY left
/// a `reject` record.
async fn under_attack<F, Fut>(gw: &Gateway, attack: F) -> h2raw::Seen
where
    F: FnOnce(H2Raw) -> Fut,
    Fut: std::future::Future<Output = h2raw::Seen>,
{
    served_meanwhile(gw).await;
    let baseline = gw.memory_baseline_kib();
    let conn = H2Raw::connect(gw.addr, &gw.ca).await;
    let (seen, ()) = tokio::join!(attack(conn), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        served_meanwhile(gw).await;
    });
    served_meanwhile(gw).await;
    let grew = gw.memory_kib("VmHWM").saturating_sub(baseline);
    assert!(
        grew < 32 * 1024,
        "moat's peak RSS grew by {grew} KiB under attack"
    );
    if seen.goaway.is_some() {
        assert!(
            connection_rejected(gw).await,
            "GOAWAY without a reject record: {seen:?}"
        );
    }
    seen
}

/// Whether a connection-level `reject` record was written (within a few seconds).
async fn connection_rejected(gw: &Gateway) -> bool {
    for _ in 0..50 {
        if gw
            .audit_records()
            .iter()
            .any(|r| r["kind"] == "reject" && r["reason"] == "h2_protocol_error")
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_flood_is_cut_off() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let seen = under_attack(&gw, |mut c| async move {
        let block = get("/");
        let mut id = 1u32;
        for _ in 0..100 {
            let mut batch = Vec::new();
            for _ in 0..100 {
                batch.push(encode_frame(
                    h2raw::HEADERS,
                    h2raw::END_STREAM | h2raw::END_HEADERS,
                    id,
                    &block,
                ));
                batch.push(encode_frame(
                    h2raw::RST_STREAM,
                    0,
                    id,
                    &h2raw::CANCEL.to_be_bytes(),
                ));
                id += 2;
            }
            if !c.frames(&batch).await {
                break;
            }
        }
        c.read(Duration::from_secs(5)).await
    })
    .await;
    assert!(
        seen.goaway == Some(h2raw::ENHANCE_YOUR_CALM) || seen.closed,
        "10,000 reset streams and no GOAWAY: {seen:?}"
    );
    let forwarded = origin.seen.requests.load(SeqCst) - NORMAL;
    assert!(forwarded < 1000, "{forwarded} reset streams were forwarded");
    assert!(
        connection_rejected(&gw).await,
        "no reject record for the connection: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let seen = under_attack(&gw, |mut c| async move {
        let mut first = get("/");
        first.truncate(first.len() - 1);
        c.frame(h2raw::HEADERS, 0, 1, &first).await;
        // Header block fragments that never end: 64 MB offered, in 16 KB frames.
        let junk = {
            let mut b = Vec::new();
            h2raw::literal(&mut b, b"x-junk", &[b'a'; 16_000], false);
            b
        };
        for _ in 0..4096 / 16 {
            let batch: Vec<Vec<u8>> = (0..16)
                .map(|_| encode_frame(h2raw::CONTINUATION, 0, 1, &junk))
                .collect();
            if !c.frames(&batch).await {
                break;
            }
        }
        c.read(Duration::from_secs(5)).await
    })
    .await;
    assert!(
        seen.goaway.is_some() || seen.closed,
        "endless CONTINUATION frames were accepted: {seen:?}"
    );
    assert_eq!(origin.seen.requests.load(SeqCst), NORMAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_bomb_is_refused() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let seen = under_attack(&gw, |mut c| async move {
        // One 4 KB value into the dynamic table, then streams that reference it 4,000 times
        // (16 MB decoded from 4 KB on the wire).
        let mut id = 1;
        let mut b = get("/");
        h2raw::literal(&mut b, b"x-bomb", &[b'b'; 4000], true);
        c.frame(
            h2raw::HEADERS,
            h2raw::END_STREAM | h2raw::END_HEADERS,
            id,
            &b,
        )
        .await;
        for _ in 0..20 {
            id += 2;
            let mut b = get("/");
            for _ in 0..4000 {
                h2raw::hpack_int(&mut b, 0x80, 7, 62);
            }
            if !c
                .frame(
                    h2raw::HEADERS,
                    h2raw::END_STREAM | h2raw::END_HEADERS,
                    id,
                    &b,
                )
                .await
            {
                break;
            }
        }
        c.read(Duration::from_secs(5)).await
    })
    .await;
    assert!(
        seen.goaway.is_some() || seen.closed || !seen.resets.is_empty() || seen.answered.len() > 1,
        "the bombs were neither refused nor answered: {seen:?}"
    );
    assert!(
        origin.seen.requests.load(SeqCst) <= NORMAL + 1,
        "a bomb reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_count_bomb_is_refused_with_431() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let seen = under_attack(&gw, |mut c| async move {
        // 150 small fields: inside the header list size, past http.max_headers.
        let mut fields = h2raw::request("GET", "/");
        for i in 0..150 {
            fields.push(("x-n", i.to_string()));
        }
        let b = h2raw::block_owned(&fields);
        c.frame(
            h2raw::HEADERS,
            h2raw::END_STREAM | h2raw::END_HEADERS,
            1,
            &b,
        )
        .await;
        let first = c.read(Duration::from_secs(2)).await;
        // And 3,000: past the header list size too, in frames of the allowed size.
        let mut fields = h2raw::request("GET", "/");
        for i in 0..3000 {
            fields.push(("x-n", i.to_string()));
        }
        let b = h2raw::block_owned(&fields);
        let parts: Vec<&[u8]> = b.chunks(16_384).collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let (ty, flags) = match (i, last) {
                (0, true) => (h2raw::HEADERS, h2raw::END_STREAM | h2raw::END_HEADERS),
                (0, false) => (h2raw::HEADERS, h2raw::END_STREAM),
                (_, true) => (h2raw::CONTINUATION, h2raw::END_HEADERS),
                (_, false) => (h2raw::CONTINUATION, 0),
            };
            c.frame(ty, flags, 3, part).await;
        }
        let second = c.read(Duration::from_secs(3)).await;
        assert!(
            second.answered.contains(&3)
                || second.resets.iter().any(|&(s, _)| s == 3)
                || second.goaway.is_some()
                || second.closed,
            "3,000 header fields were neither answered nor refused: {second:?}"
        );
        first
    })
    .await;
    assert!(seen.answered.contains(&1) || seen.closed, "{seen:?}");
    assert_eq!(origin.seen.requests.load(SeqCst), NORMAL);
    let refused = gw
        .audit_records()
        .into_iter()
        .filter(|r| r["kind"] == "reject" && r["status"] == 431)
        .count();
    assert!(refused >= 1, "no 431 reject record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_data_flood_is_cut_off() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let seen = under_attack(&gw, |mut c| async move {
        let b = h2raw::block_owned(&h2raw::request("POST", "/sink"));
        c.frame(h2raw::HEADERS, h2raw::END_HEADERS, 1, &b).await;
        let empty = encode_frame(h2raw::DATA, 0, 1, &[]);
        for _ in 0..200 {
            let batch = vec![empty.clone(); 1000];
            if !c.frames(&batch).await {
                break;
            }
        }
        c.read(Duration::from_secs(5)).await
    })
    .await;
    assert!(
        seen.goaway == Some(h2raw::ENHANCE_YOUR_CALM) || seen.closed,
        "200,000 empty DATA frames were accepted: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_mismatch_never_reaches_the_upstream() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let seen = under_attack(&gw, |mut c| async move {
        // H2.CL: a declared length of 5 and 10 bytes of DATA (the extra 5 would be a smuggled
        // request on an HTTP/1.1 upstream connection).
        let mut fields = h2raw::request("POST", "/sink");
        fields.push(("content-length", "5".into()));
        let b = h2raw::block_owned(&fields);
        c.frame(h2raw::HEADERS, h2raw::END_HEADERS, 1, &b).await;
        c.frame(h2raw::DATA, h2raw::END_STREAM, 1, b"0123456789")
            .await;
        // Connection-specific, malformed and smuggling-shaped heads, one stream each.
        let bad: Vec<Vec<(&str, String)>> = vec![
            [
                h2raw::request("GET", "/"),
                vec![("connection", "keep-alive".into())],
            ]
            .concat(),
            [
                h2raw::request("GET", "/"),
                vec![("transfer-encoding", "chunked".into())],
            ]
            .concat(),
            [
                h2raw::request("GET", "/"),
                vec![("x-a", "b\r\nx-b: c".into())],
            ]
            .concat(),
            [h2raw::request("GET", "/"), vec![("X-Upper", "1".into())]].concat(),
            h2raw::request("GET", "no-slash"),
            vec![(":method", "GET".into()), (":scheme", "https".into())],
        ];
        let mut id = 3;
        for fields in bad {
            let b = h2raw::block_owned(&fields);
            c.frame(
                h2raw::HEADERS,
                h2raw::END_STREAM | h2raw::END_HEADERS,
                id,
                &b,
            )
            .await;
            id += 2;
        }
        c.read(Duration::from_secs(3)).await
    })
    .await;
    assert!(
        seen.resets.iter().any(|&(s, _)| s == 1) || seen.goaway.is_some() || seen.closed,
        "the length mismatch was not refused: {seen:?}"
    );
    assert_eq!(
        origin.seen.sink_progress.load(SeqCst),
        0,
        "body bytes of a mismatched stream reached the upstream"
    );
    assert!(
        origin.seen.requests.load(SeqCst) <= NORMAL + 1,
        "a malformed request reached the upstream"
    );
}

/// The detail of the newest connection-level `reject` record that names `code`, once written.
async fn rejected_with(gw: &Gateway, code: &str) -> Option<String> {
    let found = gw
        .wait_for_records(1, |r| {
            r["kind"] == "reject" && r["detail"].as_str().is_some_and(|d| d.contains(code))
        })
        .await;
    found
        .last()
        .and_then(|r| r["detail"].as_str())
        .map(str::to_owned)
}

/// Sends `count` copies of one frame in batches of 1,000 without reading anything, as a flooding
/// client does; stops when moat closes or stops taking bytes.
async fn flood(c: &mut H2Raw, frame: &[u8], count: usize) {
    let batch = vec![frame.to_vec(); 1000];
    for _ in 0..count / 1000 {
        match tokio::time::timeout(Duration::from_secs(3), c.frames(&batch)).await {
            Ok(true) => {}
            _ => break,
        }
    }
}

/// SETTINGS and PING floods (20,000 frames each, never reading the answers) end in GOAWAY
/// `ENHANCE_YOUR_CALM` once the connection's budget of frames without a request (1,000 by
/// default) is spent, with no more answers than that budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ping_floods_are_cut_off() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    for (name, frame) in [
        ("SETTINGS", encode_frame(h2raw::SETTINGS, 0, 0, &[])),
        ("PING", encode_frame(h2raw::PING, 0, 0, &[7; 8])),
    ] {
        let seen = under_attack(&gw, |mut c| async move {
            flood(&mut c, &frame, 20_000).await;
            c.read(Duration::from_secs(5)).await
        })
        .await;
        assert!(
            seen.goaway == Some(h2raw::ENHANCE_YOUR_CALM) || seen.closed,
            "a {name} flood of 20,000 frames was not cut off: {seen:?}"
        );
        assert!(
            seen.acks <= 1001,
            "{} {name} frames were answered",
            seen.acks
        );
        let detail = rejected_with(&gw, "ENHANCE_YOUR_CALM").await;
        assert!(
            detail.is_some_and(|d| d.contains("frames without a request")),
            "no reject record for the {name} flood"
        );
    }
}

/// A client whose first frame is HEADERS, not SETTINGS, breaks the connection preface (RFC 9113
/// §3.4): GOAWAY `PROTOCOL_ERROR`, and the request never reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_before_the_clients_settings_are_a_connection_error() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let ca = gw.ca.clone();
    let addr = gw.addr;
    let seen = under_attack(&gw, |_| async move {
        let mut c = H2Raw::connect_bare(addr, &ca).await;
        c.frame(
            h2raw::HEADERS,
            h2raw::END_STREAM | h2raw::END_HEADERS,
            1,
            &get("/"),
        )
        .await;
        c.read(Duration::from_secs(5)).await
    })
    .await;
    assert_eq!(seen.goaway, Some(h2raw::PROTOCOL_ERROR), "{seen:?}");
    assert!(seen.answered.is_empty(), "the stream was served: {seen:?}");
    assert_eq!(
        origin.seen.requests.load(SeqCst),
        NORMAL,
        "the request reached the upstream"
    );
    let detail = rejected_with(&gw, "not SETTINGS").await;
    assert!(detail.is_some(), "no reject record for the preface");
}

/// H2.CL with a declared empty body: `content-length: 0` on a stream left open, then DATA
/// carrying a smuggled request. moat waits for the end of such a stream before forwarding, so
/// the request never reaches the upstream, and the record says 400; a client that ends the same
/// stream with an empty DATA frame is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_empty_body_followed_by_data_never_reaches_the_upstream() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).run();
    let seen = under_attack(&gw, |mut c| async move {
        let mut fields = h2raw::request("POST", "/sink");
        fields.push(("content-length", "0".into()));
        let b = h2raw::block_owned(&fields);
        c.frame(h2raw::HEADERS, h2raw::END_HEADERS, 1, &b).await;
        c.frame(h2raw::DATA, h2raw::END_STREAM, 1, &[]).await;
        c.frame(h2raw::HEADERS, h2raw::END_HEADERS, 3, &b).await;
        // The head alone first, as an attacker would send it, then the smuggled request.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let smuggled = b"GET /admin HTTP/1.1\r\nhost: model\r\n\r\n";
        c.frame(h2raw::DATA, h2raw::END_STREAM, 3, smuggled).await;
        c.read(Duration::from_secs(3)).await
    })
    .await;
    assert!(
        seen.answered.contains(&1),
        "the empty body was not served: {seen:?}"
    );
    assert!(
        !seen.answered.contains(&3),
        "the smuggling stream was answered: {seen:?}"
    );
    assert!(
        seen.resets.contains(&(3, h2raw::PROTOCOL_ERROR)),
        "the smuggling stream was not reset: {seen:?}"
    );
    assert_eq!(
        origin.seen.requests.load(SeqCst),
        NORMAL + 1,
        "the declared-empty stream with DATA reached the upstream"
    );
    let refused = gw
        .wait_for_records(1, |r| {
            r["kind"] == "reject" && r["path"] == "/sink" && r["status"] == 400
        })
        .await;
    assert!(
        !refused.is_empty(),
        "no 400 record for the smuggling stream"
    );
}
