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
    let id = r.header("x-request-id").expect("id").to_owned();
    let mut record = None;
    for _ in 0..100 {
        record = std::fs::read_dir(gw.audit_dir())
            .expect("audit")
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
            .find(|l| l.contains(&id));
        if record.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let record: serde_json::Value = serde_json::from_str(&record.expect("record")).expect("json");
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
