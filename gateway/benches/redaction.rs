//! Redaction throughput with the default profile (every built-in detector, `replace`), on one
//! core, measured with criterion:
//! - `json_body/pii/{1KiB,16KiB,1MiB}`: chat-completion request bodies of prose with one email
//!   address and one card number per ~470 bytes, through the production path (validate, detect
//!   on decoded strings, rewrite in place); throughput in bytes;
//! - `json_body/sparse/*`: the same prose with one email address in one paragraph of eight
//!   (one value per ~3.8 KB; the 1 KiB body holds one);
//! - `json_body/clean/*`: the same prose without those values (the common case);
//! - `sse/chat_chunks`: a 16k-event stream of OpenAI chat chunks of four characters each
//!   (parse, hold-back, rewrite); throughput in events (the inverse is the cost per event);
//! - `sse/first_event`: one event through the redactor (what redaction adds to the time to
//!   first token).
//!
//! `cargo bench -p moat --bench redaction`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use moat::redact::rewrite::redact_json;
use moat::redact::sse::SseRedactor;
use moat::redact::{Detectors, Entity, Operator, Profile, Redactor, State};

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

const PII: &str =
    "The quarterly report shows steady growth across all regions, and the team would \
    like to discuss the next steps during Thursday's meeting. Please send your comments to \
    jane.doe@example.com before noon. The invoice was paid with card 4111 1111 1111 1111 and \
    the confirmation number is 20261130-0042. Let me know if anything in the numbers looks off, \
    especially the section on logistics costs, which grew faster than expected this quarter. ";

const SPARSE: &str =
    "The quarterly report shows steady growth across all regions, and the team would \
    like to discuss the next steps during Thursday's meeting. Please send your comments to \
    jane.doe@example.com before noon. The invoice was paid last week and the confirmation \
    arrived by mail the same day. Let me know if anything in the numbers looks off, especially \
    the section on logistics costs, which grew faster than expected this quarter, and why. ";

const CLEAN: &str = "The quarterly report shows steady growth across all regions, and the team \
    would like to discuss the next steps during Thursday's meeting. Please send your comments to \
    the finance team before noon. The invoice was paid last week and the confirmation arrived \
    by mail the same day. Let me know if anything in the numbers looks off, especially the \
    section on logistics costs, which grew faster than expected this quarter, and why. ";

/// A chat-completion request body of about `size` bytes made of `paras` repeated in turn.
fn chat_body(paras: &[&str], size: usize) -> Vec<u8> {
    let mut content = String::new();
    for para in paras.iter().cycle() {
        if content.len() + para.len() >= size.saturating_sub(120) {
            break;
        }
        content.push_str(para);
    }
    serde_json::to_vec(
        &serde_json::json!({"model": "gpt-x", "messages": [{"role": "user", "content": content}]}),
    )
    .expect("json")
}

fn json_bodies(c: &mut Criterion) {
    let p = profile();
    let mut g = c.benchmark_group("json_body");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let sparse = [SPARSE, CLEAN, CLEAN, CLEAN, CLEAN, CLEAN, CLEAN, CLEAN];
    for (kind, paras) in [
        ("pii", &[PII][..]),
        ("sparse", &sparse[..]),
        ("clean", &[CLEAN][..]),
    ] {
        for (name, size) in [("1KiB", 1024), ("16KiB", 16 * 1024), ("1MiB", 1024 * 1024)] {
            let body = chat_body(paras, size);
            g.throughput(Throughput::Bytes(body.len() as u64));
            g.sample_size(if size > 100_000 { 20 } else { 100 });
            g.bench_with_input(BenchmarkId::new(kind, name), &body, |b, body| {
                b.iter(|| {
                    let mut st = State::default();
                    redact_json(&p.redactor, black_box(body), &mut st, &p.paths).expect("redact")
                });
            });
        }
    }
    g.finish();
}

fn sse(c: &mut Criterion) {
    let p = profile();
    let text = String::from_utf8(chat_body(&[PII], 64 * 1024)).expect("utf8");
    let chars: Vec<char> = text.chars().collect();
    let events: Vec<Vec<u8>> = chars
        .chunks(4)
        .map(|t| {
            let t: String = t.iter().collect();
            let v = serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": null}]});
            format!("data: {v}\n\n").into_bytes()
        })
        .collect();
    let mut g = c.benchmark_group("sse");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("chat_chunks", |b| {
        b.iter(|| {
            let mut r = SseRedactor::new(p.clone());
            let mut out = 0usize;
            for e in &events {
                out += r.push(black_box(e)).len();
            }
            out + r.finish().len()
        });
    });
    let first = serde_json::json!({"choices": [{"index": 0, "delta": {"content": "Hello there, "}, "finish_reason": null}]});
    let first = format!("data: {first}\n\n");
    g.throughput(Throughput::Elements(1));
    g.sample_size(100);
    let mut r = SseRedactor::new(p);
    g.bench_function("first_event", |b| {
        b.iter(|| r.push(black_box(first.as_bytes())));
    });
    g.finish();
}

criterion_group!(benches, json_bodies, sse);
criterion_main!(benches);
