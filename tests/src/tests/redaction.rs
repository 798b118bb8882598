//! Request redaction end to end: what the model server receives, 422 for blocked values, counts
//! in the audit record.

use std::sync::atomic::Ordering::SeqCst;

use crate::client;
use crate::gateway::{self, Gateway};
use crate::origin::Origin;

const PROFILE: &str = r#"
[redaction.profiles.default]
operators = { CLOUD_ACCESS_KEY = "block", CREDIT_CARD = "mask" }

[[policy.rules]]
id = "redacted"
require_region = false
redaction = "default"
action = "allow"
"#;

async fn post(gw: &Gateway, body: &str) -> client::RawResponse {
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, req.as_bytes()).await;
    r.expect("response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_masked_before_they_leave() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).policy(PROFILE).run();
    // Plain, JSON-escaped and full-width forms of the same kinds of values.
    let body = r#"{"model":"gpt-x","temperature":0.2,"messages":[{"role":"user","content":"mail jane.doe@example.com or bob\u0040example.org, card 4111 1111 1111 1111, ip 10.20.30.40, ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ"}]}"#;
    let r = post(&gw, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen: serde_json::Value =
        serde_json::from_slice(&r.body).expect("the upstream received valid JSON");
    let content = seen["messages"][0]["content"].as_str().expect("content");
    assert_eq!(seen["model"], "gpt-x", "other fields untouched");
    assert_eq!(seen["temperature"], 0.2);
    for raw in [
        "jane.doe",
        "bob@",
        "example.org",
        "4111 1111 1111 1111",
        "10.20.30.40",
        "ｊａｎｅ",
    ] {
        assert!(
            !content.contains(raw),
            "{raw} reached the upstream: {content}"
        );
    }
    assert!(
        content.contains("<EMAIL_ADDRESS>")
            && content.contains("**** **** **** 1111")
            && content.contains("<IP_ADDRESS>"),
        "{content}"
    );

    // The audit record counts what was masked, never the values.
    let record = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(record["redactions"]["EMAIL_ADDRESS.request"], 3, "{record}");
    assert_eq!(record["redactions"]["CREDIT_CARD.request"], 1, "{record}");
    assert!(!record.to_string().contains("jane.doe"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_value_is_refused_and_nothing_is_forwarded() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string()).policy(PROFILE).run();
    let r = post(
        &gw,
        r#"{"messages":[{"role":"user","content":"my key is AKIAIOSFODNN7EXAMPLE"}]}"#,
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(!r.text().contains("AKIA"), "{}", r.text());
    let r = post(&gw, "{not json").await;
    assert_eq!(
        r.status, 422,
        "a body that cannot be redacted is refused (fail closed)"
    );
    assert_eq!(
        origin.seen.requests.load(SeqCst),
        0,
        "the upstream received a request"
    );
    assert!(!gw.log().contains("AKIAIOSFODNN7EXAMPLE"));
}

const RESPONSES: &str = r#"
[redaction.profiles.out]
direction = "response"

[[policy.rules]]
id = "redacted-out"
require_region = false
redaction = "out"
action = "allow"
"#;

/// The email split across two events comes out masked, and the text before it reaches the
/// client while the upstream is still holding the stream open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_responses_are_masked_as_they_stream() {
    use futures_util::StreamExt;
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .policy(RESPONSES)
        .run();
    let http = client::http(&gw.ca);
    let r = http
        .get(client::url(gw.addr, "/sse-pii"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let id = client::request_id(&r);
    let mut stream = r.bytes_stream();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("Hello, my email is ") {
        let piece = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("safe text did not arrive while the upstream held the stream open")
            .expect("open")
            .expect("piece");
        got.extend_from_slice(&piece);
    }
    assert!(
        !String::from_utf8_lossy(&got).contains("ja\""),
        "the possible start of a value was released early"
    );
    origin.release();
    while let Some(piece) = stream.next().await {
        got.extend_from_slice(&piece.expect("piece"));
    }
    let text = client::sse_text(&got);
    assert_eq!(text, "Hello, my email is <EMAIL_ADDRESS>. Bye");
    assert!(String::from_utf8_lossy(&got).ends_with("data: [DONE]\n\n"));
    let rec = gw.audit_record(&id).await;
    assert_eq!(rec["redactions"]["EMAIL_ADDRESS.response"], 1, "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streamed_responses_are_masked_and_unredactable_streams_end_with_an_error() {
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .policy(RESPONSES)
        .run();
    // The request passes unmasked (direction = response); the echoed response is masked.
    let r = post(&gw, r#"{"note":"reach me at jane.doe@example.com","n":1}"#).await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("valid JSON");
    assert_eq!(
        v,
        serde_json::json!({"note": "reach me at <EMAIL_ADDRESS>", "n": 1})
    );

    let (r, _) = client::raw_exchange(
        gw.addr,
        &gw.ca,
        b"GET /sse-bad HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let r = r.expect("response");
    let body = r.text();
    assert!(body.contains("redaction_failed"), "{body}");
    assert!(
        !body.contains("jane@example.com"),
        "unmasked text passed: {body}"
    );
    let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(rec["failed"], "internal");
    assert!(
        rec["reason"]
            .as_str()
            .is_some_and(|s| s.contains("redaction failed")),
        "{rec}"
    );
}

/// A streamed plain-text response is masked through the same hold-back, and its safe start
/// reaches the client while the upstream still holds the stream open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_responses_are_masked_as_they_stream() {
    use futures_util::StreamExt;
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .policy(RESPONSES)
        .run();
    let http = client::http(&gw.ca);
    let r = http
        .get(client::url(gw.addr, "/text-pii"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut got = Vec::new();
    while !got.ends_with(b"Hello, my email is ") {
        let piece = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("safe text did not arrive while the upstream held the stream open")
            .expect("open")
            .expect("piece");
        got.extend_from_slice(&piece);
    }
    origin.release();
    while let Some(piece) = stream.next().await {
        got.extend_from_slice(&piece.expect("piece"));
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        "Hello, my email is <EMAIL_ADDRESS>. Bye"
    );
}

/// Under a profile for both directions, bodies no profile can touch (`application/octet-stream`)
/// stream through untouched, both ways: an upload reaches the upstream while the client still
/// holds half of it back, a 20 MiB download (larger than the 16 MiB a response is read whole
/// for redaction) arrives byte for byte, and moat's memory does not grow by the bodies' size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_bodies_pass_untouched_and_streamed_under_a_profile() {
    const UPLOAD: u64 = 10 * 1024 * 1024;
    const DOWNLOAD: u64 = 20 * 1024 * 1024;
    let origin = Origin::start().await;
    let gw = gateway::new(origin.addr.to_string())
        .policy(
            r#"
[redaction.profiles.both]
direction = "both"

[[policy.rules]]
id = "redacted"
require_region = false
redaction = "both"
action = "allow"
"#,
        )
        .run();
    let http = client::http(&gw.ca);
    assert_eq!(
        http.get(client::url(gw.addr, "/"))
            .send()
            .await
            .expect("warm-up")
            .status(),
        200
    );
    let baseline = gw.memory_baseline_kib();

    // Bytes that would be masked if they were read as text.
    let piece: Vec<u8> = b"jane.doe@example.com 4111 1111 1111 1111 "
        .iter()
        .copied()
        .cycle()
        .take(64 * 1024)
        .collect();
    let (body, feeder) = client::held_back_upload(UPLOAD, piece, origin.seen.clone());
    let r = http
        .post(client::url(gw.addr, "/sink"))
        .header("content-type", "application/octet-stream")
        .header("content-length", UPLOAD)
        .body(body)
        .send()
        .await
        .expect("upload");
    feeder.await.expect("feeder");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["bytes"], UPLOAD, "the upload arrived whole and unchanged");

    client::download_pattern(
        &http,
        client::url(gw.addr, &format!("/octets/{DOWNLOAD}")),
        DOWNLOAD,
    )
    .await;

    let grew = gw.memory_kib("VmHWM").saturating_sub(baseline);
    assert!(
        grew < 8 * 1024,
        "moat's peak RSS grew by {grew} KiB while moving 30 MiB of opaque bytes"
    );
}
