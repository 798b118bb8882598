//! Complete response inspection end to end: every stream shape a model server sends, the value
//! split at every position, over HTTP/1.1 and HTTP/2 to HTTP/1.1 and h2c upstreams. With a
//! profile masking both ways no personal data reaches the client or the model; without one the
//! streams pass byte for byte.

use crate::client;
use crate::gateway::{self, Gateway};
use crate::model::{self, Model, CASES, SECRETS, TEXT};

const BOTH: &str = r#"
[redaction.profiles.both]
direction = "both"

[[policy.rules]]
id = "both"
require_region = false
redaction = "both"
action = "allow"
"#;

/// A gateway in front of `model`, redacting both ways when `redact`.
fn gateway_for(model: &Model, h2c: bool, redact: bool) -> Gateway {
    let mut b = gateway::new(model.addr.to_string());
    if h2c {
        b = b.upstream("protocol = \"h2c\"");
    }
    if redact {
        b = b.policy(BOTH);
    }
    b.run()
}

/// Every case at every split through `gw`, with `http`; returns the bodies by (case, split).
async fn fetch_all(gw: &Gateway, http: &reqwest::Client) -> Vec<(String, usize, Vec<u8>)> {
    let mut out = Vec::new();
    for case in CASES {
        for split in (1..TEXT.len()).filter(|&i| TEXT.is_char_boundary(i)) {
            let r = http
                .get(client::url(gw.addr, &format!("/case/{case}/{split}")))
                .send()
                .await
                .expect("GET");
            assert_eq!(r.status(), 200, "{case}/{split}");
            let body = r.bytes().await.expect("body").to_vec();
            out.push(((*case).to_owned(), split, body));
        }
    }
    out
}

fn clients(gw: &Gateway) -> [(&'static str, reqwest::Client); 2] {
    [
        ("HTTP/1.1", client::http(&gw.ca)),
        ("HTTP/2", client::http2(&gw.ca)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_personal_data_reaches_the_client_in_any_stream_shape() {
    for h2c in [false, true] {
        let model = Model::start_as(h2c).await;
        let gw = gateway_for(&model, h2c, true);
        for (proto, http) in clients(&gw) {
            for (case, split, body) in fetch_all(&gw, &http).await {
                let text = String::from_utf8_lossy(&body);
                for s in SECRETS {
                    assert!(
                        !text.contains(s),
                        "{proto} to {} upstream, {case} split at {split}: {s} passed\n{text}",
                        if h2c { "h2c" } else { "HTTP/1.1" }
                    );
                }
                if case == "sse-comment" {
                    assert!(
                        text.lines().all(|l| !l.starts_with(':') || l == ":"),
                        "{proto}, {case}/{split}: comment text is dropped\n{text}"
                    );
                } else {
                    assert!(
                        text.contains("<EMAIL_ADDRESS>"),
                        "{proto}, {case}/{split}: the text arrived masked\n{text}"
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_profile_every_stream_passes_byte_for_byte() {
    for h2c in [false, true] {
        let model = Model::start_as(h2c).await;
        let gw = gateway_for(&model, h2c, false);
        for (proto, http) in clients(&gw) {
            for (case, split, body) in fetch_all(&gw, &http).await {
                let (_, frames) = model::stream(&case, split).expect("known case");
                assert_eq!(
                    String::from_utf8_lossy(&body),
                    frames.concat(),
                    "{proto}, h2c={h2c}, {case}/{split}"
                );
            }
        }
    }
}

/// NDJSON request bodies are masked line by line before they reach the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_request_bodies_are_masked_before_they_leave() {
    let model = Model::start().await;
    let gw = gateway_for(&model, false, true);
    let body = format!(
        "{}\n{}\n",
        serde_json::json!({"prompt": TEXT}),
        serde_json::json!({"messages": [{"content": "card 4111 1111 1111 1111"}]})
    );
    for (proto, http) in clients(&gw) {
        let r = http
            .post(client::url(gw.addr, "/echo"))
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200, "{proto}");
        let echoed = r.text().await.expect("body");
        assert_eq!(echoed.lines().count(), 2, "{proto}: {echoed}");
        assert!(echoed.contains("<EMAIL_ADDRESS>"), "{proto}: {echoed}");
    }
    assert_eq!(model.leaks(), 0, "personal data reached the model");
}

/// Compressed bodies are decoded and inspected: streams (SSE and NDJSON) and whole JSON in every
/// coding, a gzip request body; each reaches the client decoded, with no `Content-Encoding`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_are_decoded_and_inspected() {
    for h2c in [false, true] {
        let model = Model::start_as(h2c).await;
        let gw = gateway_for(&model, h2c, true);
        for (proto, http) in clients(&gw) {
            for coding in ["gzip", "deflate", "br", "zstd"] {
                let mut paths = vec![format!("/json/{coding}")];
                for case in ["chat-content", "chat-tool-arguments", "ollama-chat"] {
                    for split in [1, 9, 20, 40] {
                        paths.push(format!("/case/{case}/{split}/{coding}"));
                    }
                }
                for path in paths {
                    let r = http
                        .get(client::url(gw.addr, &path))
                        .send()
                        .await
                        .expect("GET");
                    assert_eq!(r.status(), 200, "{proto} {path}");
                    assert!(
                        r.headers().get("content-encoding").is_none(),
                        "{proto} {path}: sent decoded"
                    );
                    let text = r.text().await.expect("text");
                    assert!(text.contains("<EMAIL_ADDRESS>"), "{proto} {path}: {text}");
                    for s in SECRETS {
                        assert!(!text.contains(s), "{proto} {path}: {s} passed\n{text}");
                    }
                }
            }
            let body = serde_json::json!({"messages": [{"content": TEXT}]}).to_string();
            let r = http
                .post(client::url(gw.addr, "/echo"))
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(model::compress("gzip", body.as_bytes()))
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status(), 200, "{proto}");
            let echoed = r.text().await.expect("text");
            assert!(echoed.contains("<EMAIL_ADDRESS>"), "{proto}: {echoed}");
        }
        assert_eq!(model.leaks(), 0, "personal data reached the model");
    }
}

/// A request body in an unknown or stacked coding is refused with 415 on a redacting route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_request_codings_are_refused() {
    let model = Model::start().await;
    let gw = gateway_for(&model, false, true);
    for (proto, http) in clients(&gw) {
        for coding in ["compress", "gzip, br"] {
            let r = http
                .post(client::url(gw.addr, "/echo"))
                .header("content-type", "application/json")
                .header("content-encoding", coding)
                .body(model::compress("gzip", b"{}"))
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status(), 415, "{proto} {coding}");
        }
    }
    assert_eq!(model.leaks(), 0);
}

/// Policy reads the `model` of a compressed request body from its decoded JSON: a rule naming
/// the model allows it, another model is refused, over both protocols and every coding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_of_a_compressed_body_is_read_decoded() {
    let model = Model::start().await;
    let gw = gateway::new(model.addr.to_string())
        .policy("[[policy.rules]]\nid = \"gpt-x\"\nmodels = [\"gpt-x\"]\nrequire_region = false\naction = \"allow\"\n")
        .run();
    for (proto, http) in clients(&gw) {
        for coding in ["gzip", "deflate", "br", "zstd"] {
            for (name, status) in [("gpt-x", 200), ("other", 403)] {
                let body = serde_json::json!({"model": name, "messages": [{"content": "hi"}]});
                let r = http
                    .post(client::url(gw.addr, "/echo"))
                    .header("content-type", "application/json")
                    .header("content-encoding", coding)
                    .body(model::compress(coding, body.to_string().as_bytes()))
                    .send()
                    .await
                    .expect("POST");
                assert_eq!(r.status(), status, "{proto} {coding} {name}");
                if status == 200 {
                    let id = client::request_id(&r);
                    let record = gw.audit_record(&id).await;
                    assert_eq!(record["model"], name, "{proto} {coding}");
                }
            }
        }
    }
}

/// A body the model look-ahead read to its end (JSON cut short: the scan never decided) is still
/// inspected under the deciding rule's request profile: refused (422), nothing forwarded, over
/// both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_read_by_the_model_look_ahead_is_still_redacted() {
    let model = Model::start().await;
    let policy = "[redaction.profiles.req]\ndirection = \"request\"\n\n[[policy.rules]]\nid = \"gpt-x\"\nmodels = [\"gpt-x\"]\nrequire_region = false\naction = \"allow\"\n\n[[policy.rules]]\nid = \"others\"\nrequire_region = false\nredaction = \"req\"\naction = \"allow\"\n";
    let gw = gateway::new(model.addr.to_string()).policy(policy).run();
    for (proto, http) in clients(&gw) {
        let whole = serde_json::json!({"messages": [{"content": TEXT}]}).to_string();
        let cut = whole[..whole.len() - 3].to_owned();
        let r = http
            .post(client::url(gw.addr, "/echo"))
            .header("content-type", "application/json")
            .body(cut)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 422, "{proto}");
        let _ = r.bytes().await;
        assert_eq!(
            model.leaks(),
            0,
            "{proto}: personal data reached the upstream"
        );
    }
}

/// A decompression bomb is refused within the bound; a corrupt gzip stream ends with the error
/// event. Both are audited with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_and_corrupt_streams_fail_closed_and_are_audited() {
    let model = Model::start().await;
    let gw = gateway_for(&model, false, true);
    let http = client::http(&gw.ca);
    let r = http
        .get(client::url(gw.addr, "/bomb/json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 502);
    let id = client::request_id(&r);
    let rec = gw.audit_record(&id).await;
    assert!(
        rec["reason"]
            .as_str()
            .is_some_and(|s| s.contains("decoded body")),
        "{rec}"
    );
    for path in ["/bomb/sse", "/corrupt"] {
        let r = http
            .get(client::url(gw.addr, path))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200, "{path}");
        let id = client::request_id(&r);
        let text = r.text().await.expect("text");
        assert!(text.contains("redaction_failed"), "{path}: {text}");
        for s in SECRETS {
            assert!(!text.contains(s), "{path}: {s} passed");
        }
        let rec = gw.audit_record(&id).await;
        assert_eq!(rec["failed"], "internal", "{path}: {rec}");
        assert!(
            rec["reason"]
                .as_str()
                .is_some_and(|s| s.contains("response body")),
            "{path}: {rec}"
        );
    }
}

/// 100 concurrent first requests to a cold h2c upstream share one connection: one request
/// opens it while the others wait, none holding a lock across the connect. The upstream answers
/// its handshake slowly, so the requests overlap the opening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_h2c_upstream_gets_one_connection() {
    let model = Model::start_h2c_slow(std::time::Duration::from_millis(100)).await;
    let gw = gateway_for(&model, true, false);
    let http = client::http2(&gw.ca);
    let requests = (0..100).map(|i| {
        let http = http.clone();
        let url = client::url(gw.addr, &format!("/case/chat-content/{}", 1 + i % 40));
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "{statuses:?}"
    );
    assert_eq!(model.connections(), 1, "one h2c connection for all");
}

/// A listening socket whose accept queue is full: connecting to it stalls (the SYN is dropped)
/// until the connecting side gives up. Returns it, the queued connections and its address.
fn stalled_listener() -> (
    std::os::fd::OwnedFd,
    Vec<std::net::TcpStream>,
    std::net::SocketAddr,
) {
    use nix::sys::socket::{
        bind, getsockname, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(127, 0, 0, 1, 0),
    )
    .expect("bind");
    listen(&fd, Backlog::new(0).expect("backlog")).expect("listen");
    let local: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).expect("getsockname");
    let addr = std::net::SocketAddr::from((local.ip(), local.port()));
    let mut queued = Vec::new();
    while let Ok(s) =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300))
    {
        queued.push(s);
        assert!(queued.len() < 16, "the accept queue does not fill");
    }
    (fd, queued, addr)
}

/// Requests waiting for an h2c connection that does not come up wait at most `connect_timeout`
/// each (one request connects; the others wait for it without holding a lock), not one timeout
/// per request queued before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_stalled_h2c_upstream_is_bounded() {
    let (_listener, _queued, addr) = stalled_listener();
    // The test gateway's upstreams have `connect_timeout = "1s"`.
    let gw = gateway::new(addr.to_string())
        .upstream("protocol = \"h2c\"")
        .run();
    let http = client::http2(&gw.ca);
    let started = tokio::time::Instant::now();
    let requests = (0..4).map(|_| {
        let http = http.clone();
        let url = client::url(gw.addr, "/case/chat-content/5");
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let statuses = futures_util::future::join_all(requests).await;
    let took = started.elapsed();
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(502 | 504))),
        "{statuses:?}"
    );
    assert!(
        took < std::time::Duration::from_secs(3),
        "four waiters took {took:?}: the connect timeout was served one after another"
    );
}

/// One request of the shared table: gateway, method, path, content type, content encoding, body.
type Case<'a> = (
    &'a Gateway,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Vec<u8>,
);

/// HTTP/1.1 and HTTP/2 decide the same and record the same for a table of inspection and
/// upstream cases: status, deciding rule, what failed and why, and the redaction counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_protocols_decide_and_record_the_same() {
    let model = Model::start().await;
    let gw = gateway_for(&model, false, true);
    let down = gateway::new(format!("127.0.0.1:{}", gateway::free_port()))
        .policy(BOTH)
        .run();
    let pii = serde_json::json!({"messages": [{"content": TEXT}]}).to_string();
    let gz = model::compress("gzip", pii.as_bytes());
    let cases: Vec<Case<'_>> = vec![
        (
            &gw,
            "POST",
            "/echo",
            "application/json",
            None,
            pii.clone().into_bytes(),
        ),
        (
            &gw,
            "POST",
            "/echo",
            "application/json",
            Some("gzip"),
            gz.clone(),
        ),
        (
            &gw,
            "POST",
            "/echo",
            "application/json",
            Some("compress"),
            gz.clone(),
        ),
        (
            &gw,
            "POST",
            "/echo",
            "application/json",
            None,
            b"{not json".to_vec(),
        ),
        (&gw, "GET", "/json/br", "", None, Vec::new()),
        (
            &gw,
            "GET",
            "/case/chat-tool-arguments/9",
            "",
            None,
            Vec::new(),
        ),
        (
            &gw,
            "GET",
            "/case/ollama-chat/13/zstd",
            "",
            None,
            Vec::new(),
        ),
        (&gw, "GET", "/bomb/json", "", None, Vec::new()),
        (&gw, "GET", "/corrupt", "", None, Vec::new()),
        (&gw, "GET", "/nothing-here", "", None, Vec::new()),
        (&down, "GET", "/json/gzip", "", None, Vec::new()),
    ];
    let fields = ["status", "rule", "failed", "reason", "redactions"];
    for (g, method, path, ct, coding, body) in cases {
        let mut records = Vec::new();
        for (proto, http) in clients(g) {
            let mut req = http.request(method.parse().expect("method"), client::url(g.addr, path));
            if !ct.is_empty() {
                req = req.header("content-type", ct);
            }
            if let Some(c) = coding {
                req = req.header("content-encoding", c);
            }
            if method == "POST" {
                req = req.body(body.clone());
            }
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let id = client::request_id(&r);
            let _ = r.bytes().await;
            records.push((proto, status, g.audit_record(&id).await));
        }
        let (a, b) = (&records[0], &records[1]);
        assert_eq!(
            a.1, b.1,
            "{method} {path} {coding:?}: status {} vs {}",
            a.0, b.0
        );
        for f in fields {
            assert_eq!(
                a.2[f], b.2[f],
                "{method} {path} {coding:?}: {f} differs\n{}: {}\n{}: {}",
                a.0, a.2, b.0, b.2
            );
        }
    }
    assert_eq!(model.leaks(), 0);
}

/// An event stream in a coding moat cannot read: a fail-closed profile ends it with the error
/// event; a fail-open one passes it as it came, and the audit record says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_coding_follows_the_fail_mode() {
    let model = Model::start().await;
    let closed = gateway_for(&model, false, true);
    let open = gateway::new(model.addr.to_string())
        .policy(&BOTH.replace(
            "direction = \"both\"",
            "direction = \"both\"\nfail = \"open\"",
        ))
        .run();
    for (gw, fail_open) in [(&closed, false), (&open, true)] {
        let r = client::http(&gw.ca)
            .get(client::url(gw.addr, "/labelled/compress"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
        let id = client::request_id(&r);
        let coding = r.headers().get("content-encoding").cloned();
        let text = r.text().await.expect("text");
        let rec = gw.audit_record(&id).await;
        if fail_open {
            assert_eq!(
                coding.as_ref().map(|c| c.as_bytes()),
                Some(&b"compress"[..])
            );
            assert!(text.contains(SECRETS[0]), "passed as it came: {text}");
            assert!(
                rec["reason"]
                    .as_str()
                    .is_some_and(|s| s.contains("failed open")),
                "{rec}"
            );
        } else {
            assert!(text.contains("redaction_failed"), "{text}");
            assert!(!text.contains(SECRETS[0]), "{text}");
            assert!(
                rec["reason"]
                    .as_str()
                    .is_some_and(|s| s.contains("not supported")),
                "{rec}"
            );
        }
    }
}
