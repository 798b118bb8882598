//! Redaction throughput with the default profile (every built-in detector, `replace`):
//! MB/s per core for chat-completion JSON request bodies of 1 KiB, 16 KiB and 1 MiB, and the
//! cost per SSE event of streamed output (OpenAI chat chunks of a few tokens each).
//!
//! `cargo bench -p moat --bench redaction`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use moat::redact::sse::SseRedactor;
use moat::redact::{Detectors, Entity, Operator, Profile, Redactor, State};
use tokio::time::Instant;

fn profile() -> Arc<Profile> {
    Arc::new(Profile {
        name: "default".into(),
        redactor: Redactor::new(
            Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
            HashMap::new(),
            Operator::Replace { numbered: false },
        ),
        requests: true,
        responses: true,
        fail_open: false,
        max_hold_back: 8192,
        block_other_content: false,
        paths: Default::default(),
    })
}

/// Prose with one email and one card number per ~1 KiB, like a chat transcript.
fn chat_body(size: usize) -> Vec<u8> {
    let para = "The quarterly report shows steady growth across all regions, and the team would like to \
                discuss the next steps during Thursday's meeting. Please send your comments to \
                jane.doe@example.com before noon. The invoice was paid with card 4111 1111 1111 1111 and \
                the confirmation number is 20261130-0042. Let me know if anything in the numbers looks off, \
                especially the section on logistics costs, which grew faster than expected this quarter. ";
    let mut content = String::new();
    while content.len() + para.len() < size.saturating_sub(120) {
        content.push_str(para);
    }
    serde_json::to_vec(
        &serde_json::json!({"model": "gpt-x", "messages": [{"role": "user", "content": content}]}),
    )
    .expect("json")
}

fn main() {
    let p = profile();
    println!("| workload | size | MB/s (one core) | µs per item |");
    println!("|---|---:|---:|---:|");
    for size in [1024usize, 16 * 1024, 1024 * 1024] {
        let body = chat_body(size);
        let iters = (64 * 1024 * 1024 / body.len()).clamp(20, 20_000);
        // Warm-up, then timed.
        for _ in 0..iters / 10 + 1 {
            let mut v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            moat::redact::json::redact_value(&p.redactor, &mut v, &mut State::default())
                .expect("redact");
        }
        let start = Instant::now();
        for _ in 0..iters {
            let mut v: serde_json::Value = serde_json::from_slice(black_box(&body)).expect("json");
            moat::redact::json::redact_value(&p.redactor, &mut v, &mut State::default())
                .expect("redact");
            black_box(serde_json::to_vec(&v).expect("json"));
        }
        let secs = start.elapsed().as_secs_f64();
        let mb_s = (body.len() * iters) as f64 / secs / 1e6;
        println!(
            "| JSON request body (parse, redact, serialize) | {} B | {mb_s:.1} | {:.1} |",
            body.len(),
            secs * 1e6 / iters as f64
        );
    }

    // SSE: one event per ~4 characters of output, as models stream.
    let text = String::from_utf8(chat_body(64 * 1024)).expect("utf8");
    let pieces: Vec<String> = text
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect())
        .collect();
    let events: Vec<Vec<u8>> = pieces
        .iter()
        .map(|t| {
            let v = serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": null}]});
            format!("data: {v}\n\n").into_bytes()
        })
        .collect();
    let total: usize = events.iter().map(Vec::len).sum();
    let start = Instant::now();
    let mut r = SseRedactor::new(p.clone());
    let mut out = 0usize;
    for e in &events {
        out += r.push(black_box(e)).len();
    }
    out += r.finish().len();
    let secs = start.elapsed().as_secs_f64();
    black_box(out);
    println!(
        "| SSE chat chunks (parse, hold-back, rewrite) | {} events | {:.1} | {:.2} |",
        events.len(),
        total as f64 / secs / 1e6,
        secs * 1e6 / events.len() as f64
    );
    // Time to first token: the first event's text is released by its own push.
    let mut r = SseRedactor::new(p);
    let first = serde_json::json!({"choices": [{"index": 0, "delta": {"content": "Hello there, "}, "finish_reason": null}]});
    let first = format!("data: {first}\n\n");
    let start = Instant::now();
    let n = 10_000;
    for _ in 0..n {
        black_box(r.push(black_box(first.as_bytes())));
    }
    println!(
        "| added time to first token (one event through the redactor) | 1 event | — | {:.2} |",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
}
