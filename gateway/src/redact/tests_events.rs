//! Streams of JSON events (SSE and NDJSON): every shape a model server streams, each value split
//! at every position; random shapes against whole-document redaction; wrong shapes never panic.

use std::collections::HashMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::ndjson::NdjsonRedactor;
use super::sse::SseRedactor;
use super::stream::StreamRedactor;
use super::{Detectors, Entity, Operator, Profile, Redactor, State};

/// One profile for every test here (building detectors is the slow part).
fn profile() -> Arc<Profile> {
    static PROFILE: std::sync::OnceLock<Arc<Profile>> = std::sync::OnceLock::new();
    PROFILE.get_or_init(make_profile).clone()
}

fn make_profile() -> Arc<Profile> {
    Arc::new(Profile {
        name: "test".into(),
        redactor: Redactor::new(
            Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
            HashMap::new(),
            Operator::Replace { numbered: false },
        ),
        requests: true,
        responses: true,
        fail_open: false,
        max_hold_back: 8 * 1024,
        block_other_content: false,
        paths: Default::default(),
    })
}

/// Whole-document redaction of `text` under [`profile`].
fn whole(text: &str) -> String {
    profile()
        .redactor
        .redact(text, &mut State::default())
        .expect("redact")
}

/// Personal data the streams carry.
const SECRETS: &[&str] = &[
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "+44 20 7946 0958",
    "DE89 3704 0044 0532 0130 00",
];

const TEXT: &str = "Reach jane.doe@example.com or card 4111 1111 1111 1111, ok";

/// How events are framed.
#[derive(Clone, Copy, Debug)]
enum Frame {
    Sse,
    Ndjson,
}

fn redactor(frame: Frame) -> Box<dyn StreamRedactor> {
    match frame {
        Frame::Sse => Box::new(SseRedactor::new(profile())),
        Frame::Ndjson => Box::new(NdjsonRedactor::new(profile())),
    }
}

fn encode(frame: Frame, name: Option<&str>, v: &Value) -> String {
    match (frame, name) {
        (Frame::Sse, Some(n)) => format!("event: {n}\ndata: {v}\n\n"),
        (Frame::Sse, None) => format!("data: {v}\n\n"),
        (Frame::Ndjson, _) => format!("{v}\n"),
    }
}

/// The JSON events of an output stream, in order (`[DONE]` and non-JSON data left out).
fn decode(frame: Frame, out: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(out.to_vec()).expect("output is UTF-8");
    match frame {
        Frame::Sse => text
            .split("\n\n")
            .filter_map(|e| {
                let data: Vec<&str> = e.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                serde_json::from_str(&data.join("\n")).ok()
            })
            .collect(),
        Frame::Ndjson => text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    }
}

/// One streaming shape: how a piece is carried, what closes it, where a client reads it.
struct Case {
    name: &'static str,
    frame: Frame,
    piece: fn(&str) -> (Option<&'static str>, Value),
    close: fn() -> Vec<(Option<&'static str>, Value)>,
    read: fn(&Value) -> Option<&str>,
}

fn chat(delta: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
}

fn chat_stop() -> Vec<(Option<&'static str>, Value)> {
    vec![(
        None,
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    )]
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "openai chat content",
            frame: Frame::Sse,
            piece: |t| (None, chat(json!({"content": t}))),
            close: chat_stop,
            read: |v| v["choices"][0]["delta"]["content"].as_str(),
        },
        Case {
            name: "openai chat reasoning_content",
            frame: Frame::Sse,
            piece: |t| (None, chat(json!({"reasoning_content": t}))),
            close: chat_stop,
            read: |v| v["choices"][0]["delta"]["reasoning_content"].as_str(),
        },
        Case {
            name: "openai chat reasoning",
            frame: Frame::Sse,
            piece: |t| (None, chat(json!({"reasoning": t}))),
            close: chat_stop,
            read: |v| v["choices"][0]["delta"]["reasoning"].as_str(),
        },
        Case {
            name: "openai chat refusal",
            frame: Frame::Sse,
            piece: |t| (None, chat(json!({"refusal": t}))),
            close: chat_stop,
            read: |v| v["choices"][0]["delta"]["refusal"].as_str(),
        },
        Case {
            name: "openai chat tool-call arguments",
            frame: Frame::Sse,
            piece: |t| {
                (
                    None,
                    chat(json!({"tool_calls": [{"index": 0, "function": {"arguments": t}}]})),
                )
            },
            close: || {
                vec![(
                    None,
                    json!({"object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
                )]
            },
            read: |v| v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str(),
        },
        Case {
            name: "responses function-call arguments",
            frame: Frame::Sse,
            piece: |t| {
                (
                    Some("response.function_call_arguments.delta"),
                    json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1",
                        "output_index": 1, "delta": t, "sequence_number": 4}),
                )
            },
            close: || {
                vec![(
                    Some("response.function_call_arguments.done"),
                    json!({"type": "response.function_call_arguments.done", "item_id": "fc_1",
                        "output_index": 1, "arguments": "{}", "sequence_number": 9}),
                )]
            },
            read: |v| match v["type"].as_str() {
                Some("response.function_call_arguments.delta") => v["delta"].as_str(),
                _ => None,
            },
        },
        Case {
            name: "responses output text",
            frame: Frame::Sse,
            piece: |t| {
                (
                    Some("response.output_text.delta"),
                    json!({"type": "response.output_text.delta", "item_id": "msg_1",
                        "output_index": 0, "content_index": 0, "delta": t}),
                )
            },
            close: || {
                vec![(
                    Some("response.completed"),
                    json!({"type": "response.completed", "response": {"status": "completed"}}),
                )]
            },
            read: |v| match v["type"].as_str() {
                Some("response.output_text.delta") => v["delta"].as_str(),
                _ => None,
            },
        },
        Case {
            name: "anthropic tool input (partial_json)",
            frame: Frame::Sse,
            piece: |t| {
                (
                    Some("content_block_delta"),
                    json!({"type": "content_block_delta", "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": t}}),
                )
            },
            close: || {
                vec![(
                    Some("content_block_stop"),
                    json!({"type": "content_block_stop", "index": 1}),
                )]
            },
            read: |v| v["delta"]["partial_json"].as_str(),
        },
        Case {
            name: "anthropic thinking",
            frame: Frame::Sse,
            piece: |t| {
                (
                    Some("content_block_delta"),
                    json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "thinking_delta", "thinking": t}}),
                )
            },
            close: || vec![(Some("message_stop"), json!({"type": "message_stop"}))],
            read: |v| v["delta"]["thinking"].as_str(),
        },
        Case {
            name: "ollama chat",
            frame: Frame::Ndjson,
            piece: |t| {
                (
                    None,
                    json!({"model": "llama3", "created_at": "2026-12-02T10:00:00Z",
                        "message": {"role": "assistant", "content": t}, "done": false}),
                )
            },
            close: || {
                vec![(
                    None,
                    json!({"model": "llama3", "message": {"role": "assistant", "content": ""},
                        "done": true, "done_reason": "stop", "eval_count": 12}),
                )]
            },
            read: |v| v["message"]["content"].as_str(),
        },
        Case {
            name: "ollama chat thinking",
            frame: Frame::Ndjson,
            piece: |t| {
                (
                    None,
                    json!({"model": "qwen3", "message": {"role": "assistant", "content": "",
                        "thinking": t}, "done": false}),
                )
            },
            close: || vec![(None, json!({"model": "qwen3", "done": true}))],
            read: |v| v["message"]["thinking"].as_str(),
        },
        Case {
            name: "ollama generate",
            frame: Frame::Ndjson,
            piece: |t| {
                (
                    None,
                    json!({"model": "llama3", "response": t, "done": false}),
                )
            },
            close: || {
                vec![(
                    None,
                    json!({"model": "llama3", "response": "", "done": true}),
                )]
            },
            read: |v| v["response"].as_str(),
        },
    ]
}

/// Runs `events` through a fresh redactor, each split across two reads at `cut`.
fn run(frame: Frame, events: &[(Option<&str>, Value)], cut: usize) -> Vec<u8> {
    let mut r = redactor(frame);
    let mut out = Vec::new();
    for (name, v) in events {
        let bytes = encode(frame, *name, v);
        let at = cut.min(bytes.len());
        out.extend(r.push(&bytes.as_bytes()[..at]));
        out.extend(r.push(&bytes.as_bytes()[at..]));
    }
    if let Frame::Sse = frame {
        out.extend(r.push(b"data: [DONE]\n\n"));
    }
    out.extend(r.finish());
    assert!(r.failure().is_none(), "{:?}", r.failure());
    out
}

fn assert_clean(name: &str, out: &[u8]) {
    let s = String::from_utf8_lossy(out);
    for secret in SECRETS {
        assert!(
            !s.contains(secret),
            "{name}: {secret} reached the client: {s}"
        );
    }
}

#[test]
fn every_streamed_field_is_masked_wherever_it_is_split() {
    let want = whole(TEXT);
    assert!(want.contains("<EMAIL_ADDRESS>") && want.contains("<CREDIT_CARD>"));
    for case in cases() {
        for i in (1..TEXT.len()).filter(|&i| TEXT.is_char_boundary(i)) {
            let mut events = vec![(case.piece)(&TEXT[..i]), (case.piece)(&TEXT[i..])];
            events.extend((case.close)());
            let out = run(case.frame, &events, i % 17);
            assert_clean(case.name, &out);
            let got: String = decode(case.frame, &out)
                .iter()
                .filter_map(|v| (case.read)(v))
                .collect();
            assert_eq!(got, want, "{}: split at {i}", case.name);
        }
        // Three pieces, one a single character.
        for i in (1..TEXT.len() - 1)
            .filter(|&i| TEXT.is_char_boundary(i) && TEXT.is_char_boundary(i + 1))
        {
            let mut events = vec![
                (case.piece)(&TEXT[..i]),
                (case.piece)(&TEXT[i..=i]),
                (case.piece)(&TEXT[i + 1..]),
            ];
            events.extend((case.close)());
            let out = run(case.frame, &events, 5);
            let got: String = decode(case.frame, &out)
                .iter()
                .filter_map(|v| (case.read)(v))
                .collect();
            assert_eq!(got, want, "{}: pieces at {i}", case.name);
        }
    }
}

#[test]
fn parallel_tool_calls_are_held_apart() {
    let a = r#"{"to":"jane.doe@example.com"}"#;
    let b = r#"{"card":"4111 1111 1111 1111"}"#;
    let call = |i: u64, t: &str| {
        (
            None,
            chat(json!({"tool_calls": [{"index": i, "function": {"arguments": t}}]})),
        )
    };
    let mut events = Vec::new();
    for k in 0..a.len().max(b.len()) {
        if k < a.len() {
            events.push(call(0, &a[k..=k]));
        }
        if k < b.len() {
            events.push(call(1, &b[k..=k]));
        }
    }
    events.extend(chat_stop());
    let out = run(Frame::Sse, &events, 3);
    assert_clean("parallel", &out);
    let args = |i: u64| -> String {
        decode(Frame::Sse, &out)
            .iter()
            .filter_map(|v| {
                let call = &v["choices"][0]["delta"]["tool_calls"][0];
                (call["index"] == i).then(|| call["function"]["arguments"].as_str())?
            })
            .collect()
    };
    assert_eq!(args(0), whole(a));
    assert_eq!(args(1), whole(b));
}

#[test]
fn every_sse_line_kind_is_read() {
    let mut r = SseRedactor::new(profile());
    let input = "\u{feff}: ping from jane.doe@example.com\r\n\
                 event: note +44 20 7946 0958\r\n\
                 id: 4111 1111 1111 1111\r\n\
                 retry: 3000\r\n\
                 x-custom: DE89 3704 0044 0532 0130 00\r\n\
                 data: {\"text\":\r\n\
                 data: \"write to jane.doe@example.com\"}\r\n\r\n\
                 : keep-alive\r\r\
                 data: plain text jane.doe@\r\r\
                 data: example.com and more\n\n\
                 data: [DONE]\n\n";
    let mut out = Vec::new();
    for b in input.as_bytes().chunks(7) {
        out.extend(r.push(b));
    }
    out.extend(r.finish());
    assert!(r.failure.is_none(), "{:?}", r.failure);
    let s = String::from_utf8(out).expect("utf8");
    assert_clean("line kinds", s.as_bytes());
    assert!(s.starts_with(":\nevent: "), "comment text is dropped: {s}");
    assert!(s.contains("event: note <PHONE_NUMBER>\n"), "{s}");
    assert!(s.contains("id: <CREDIT_CARD>\n"), "{s}");
    assert!(s.contains("retry: 3000\n"), "{s}");
    assert!(!s.contains("x-custom"), "unknown fields are dropped: {s}");
    assert!(
        s.contains(r#"data: {"text":"write to <EMAIL_ADDRESS>"}"#),
        "{s}"
    );
    assert!(s.contains("\n\n:\n\n"), "a keep-alive stays: {s}");
    let plain: String = s
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| !d.starts_with('{') && *d != "[DONE]")
        .collect();
    assert_eq!(plain, "plain text <EMAIL_ADDRESS> and more", "{s}");
    assert!(s.ends_with("data: [DONE]\n\n"), "{s}");
}

#[test]
fn every_string_of_an_unknown_event_is_masked_whole() {
    let mut r = SseRedactor::new(profile());
    let ev = json!({"type": "vendor.new_thing", "payload": {"notes": ["call +44 20 7946 0958"],
        "nested": [{"deep": {"x": "mail jane.doe@example.com"}}]}, "n": 3});
    let mut out = r.push(format!("data: {ev}\n\n").as_bytes());
    out.extend(r.finish());
    assert_clean("unknown event", &out);
    let v = &decode(Frame::Sse, &out)[0];
    assert_eq!(v["payload"]["notes"][0], "call <PHONE_NUMBER>");
    assert_eq!(
        v["payload"]["nested"][0]["deep"]["x"],
        "mail <EMAIL_ADDRESS>"
    );
    assert_eq!(v["n"], 3);
}

/// A random JSON value of depth at most `depth`, its strings drawn from safe words and
/// personal data.
fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    let words = ["hello", "order 7731", "v1.2.3", "2026-12-02", "ok"];
    match rng.random_range(0..if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => json!(rng.random_range(-1000..1000)),
        2 => {
            let mut s = String::new();
            for _ in 0..rng.random_range(1..4) {
                let pool: &[&str] = if rng.random_bool(0.4) {
                    SECRETS
                } else {
                    &words
                };
                s.push_str(pool[rng.random_range(0..pool.len())]);
                // Values are kept apart: two number groups run together are one candidate to
                // the detectors, whole or streamed alike.
                s.push_str(", ");
            }
            Value::String(s)
        }
        3 => Value::Bool(rng.random_bool(0.5)),
        4 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|i| (format!("k{i}"), random_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// Random streams: several choices and tool calls interleaved, random extra members in every
/// event, random split points and read sizes. What a client reassembles per field equals the
/// whole-document redaction of that field, and every other string equals its whole redaction.
#[test]
fn streaming_equals_whole_document_redaction_for_random_streams() {
    let mut rng = StdRng::seed_from_u64(0x6d6f_6174);
    for round in 0..300 {
        // Stream fields: (choice, tool call or none), each with a full text.
        let fields: Vec<(u64, Option<u64>, String)> = (0..rng.random_range(1..4))
            .map(|i| {
                let text = match random_value(&mut rng, 0) {
                    Value::String(s) => s,
                    _ => format!("write to {} now", SECRETS[i % SECRETS.len()]),
                };
                // Keys are unique: (choice, no tool call) at most once per choice.
                let tool = (i >= 2 || rng.random_bool(0.5)).then_some(i as u64);
                ((i % 2) as u64, tool, text)
            })
            .collect();
        let mut cursors = vec![0usize; fields.len()];
        let mut events = Vec::new();
        let mut extras = Vec::new();
        while cursors.iter().zip(&fields).any(|(c, f)| *c < f.2.len()) {
            let k = rng.random_range(0..fields.len());
            let (choice, tool, text) = &fields[k];
            if cursors[k] >= text.len() {
                continue;
            }
            let mut end = (cursors[k] + rng.random_range(1..12)).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            let piece = &text[cursors[k]..end];
            cursors[k] = end;
            let delta = match tool {
                Some(t) => json!({"tool_calls": [{"index": t, "function": {"arguments": piece}}]}),
                None => json!({"content": piece}),
            };
            let extra = random_value(&mut rng, 3);
            extras.push(extra.clone());
            events.push((
                None,
                json!({"object": "chat.completion.chunk", "extra": extra,
                    "choices": [{"index": choice, "delta": delta, "finish_reason": null}]}),
            ));
        }
        let mut r = SseRedactor::new(profile());
        let mut out = Vec::new();
        let bytes: String = events
            .iter()
            .map(|(n, v)| encode(Frame::Sse, *n, v))
            .collect();
        let mut rest = bytes.as_bytes();
        while !rest.is_empty() {
            let n = rng.random_range(1..64).min(rest.len());
            out.extend(r.push(&rest[..n]));
            rest = &rest[n..];
        }
        out.extend(r.push(b"data: [DONE]\n\n"));
        out.extend(r.finish());
        assert!(r.failure.is_none(), "round {round}: {:?}", r.failure);
        assert_clean("random", &out);
        let decoded = decode(Frame::Sse, &out);
        for (choice, tool, text) in &fields {
            let got: String = decoded
                .iter()
                .filter_map(|v| {
                    let c = v["choices"]
                        .as_array()?
                        .iter()
                        .find(|c| c["index"] == *choice)?;
                    match tool {
                        Some(t) => {
                            let call = c["delta"]["tool_calls"]
                                .as_array()?
                                .iter()
                                .find(|x| x["index"] == *t)?;
                            call["function"]["arguments"].as_str()
                        }
                        None => c["delta"]["content"].as_str(),
                    }
                })
                .collect();
            assert_eq!(
                got,
                whole(text),
                "round {round}: choice {choice} tool {tool:?}"
            );
        }
        let got_extras: Vec<&Value> = decoded.iter().filter_map(|v| v.get("extra")).collect();
        let want_extras: Vec<Value> = extras
            .into_iter()
            .map(|mut e| {
                super::events::redact_document(
                    &profile().redactor,
                    &mut e,
                    &mut State::default(),
                    &Default::default(),
                )
                .expect("redact");
                e
            })
            .collect();
        // Releases synthesized from a template carry its extra member again; compare the
        // original events' extras in order.
        let mut wanted = want_extras.iter().peekable();
        for g in got_extras {
            if wanted.peek() == Some(&g) {
                wanted.next();
            }
        }
        assert!(
            wanted.peek().is_none(),
            "round {round}: an extra member differs"
        );
    }
}

/// Upstream JSON of every wrong shape: nothing panics, nothing unmasked passes.
#[test]
fn wrong_shapes_never_panic() {
    let pii = "jane.doe@example.com";
    let deep = format!("{}\"{pii}\"{}", "[".repeat(300), "]".repeat(300));
    let shapes: Vec<String> = vec![
        json!({"choices": {"index": 0, "delta": {"content": pii}}}).to_string(),
        json!({"choices": [{"index": 0, "delta": pii, "finish_reason": 5}]}).to_string(),
        json!({"choices": [{"index": "zero", "delta": [pii], "finish_reason": null}]}).to_string(),
        json!({"choices": [{"index": -1, "delta": {"content": 42, "tool_calls": pii}}]}).to_string(),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 99999999999u64, "function": pii}]}, "finish_reason": "stop"}]}).to_string(),
        json!({"choices": [null, 3, pii]}).to_string(),
        json!({"type": 7, "delta": {"text": pii}}).to_string(),
        json!({"type": "content_block_delta", "index": "x", "delta": pii}).to_string(),
        json!({"type": "content_block_stop", "index": [1]}).to_string(),
        json!({"type": "response.output_text.delta", "output_index": {"a": 1}, "delta": {"x": pii}}).to_string(),
        json!({"type": "response.output_text.done", "text": pii}).to_string(),
        json!({"message": pii, "done": "yes"}).to_string(),
        json!({"message": {"content": [pii]}, "done": false}).to_string(),
        json!({"response": {"x": pii}, "done": true}).to_string(),
        json!([pii, {"delta": pii}]).to_string(),
        json!(pii).to_string(),
        "null".into(),
        "1e999".into(),
        "184467440737095516161844674407370955161".into(),
        format!("{{\"delta\": {{\"content\": \"{pii}\"}}, \"n\": 1e400}}"),
        deep,
        format!("{{\"unterminated\": \"{pii}"),
    ];
    for frame in [Frame::Sse, Frame::Ndjson] {
        for shape in &shapes {
            let mut r = redactor(frame);
            let input = match frame {
                Frame::Sse => format!("data: {shape}\n\n"),
                Frame::Ndjson => format!("{shape}\n"),
            };
            let mut out = r.push(input.as_bytes());
            out.extend(r.finish());
            assert!(
                !String::from_utf8_lossy(&out).contains(pii),
                "{frame:?} {shape}: {}",
                String::from_utf8_lossy(&out)
            );
        }
        let mut r = redactor(frame);
        let mut out = r.push(b"data: {\"a\": \"\xff\xfe\"}\n\n");
        out.extend(r.finish());
        assert!(
            r.failure().is_some(),
            "{frame:?}: invalid UTF-8 fails closed"
        );
    }
}

#[test]
fn ndjson_lines_split_across_reads_and_a_last_line_without_newline() {
    let mut r = NdjsonRedactor::new(profile());
    let a = json!({"response": "mail jane.doe@exa", "done": false}).to_string();
    let b = json!({"response": "mple.com", "done": true}).to_string();
    let input = format!("{a}\r\n{b}");
    let mut out = Vec::new();
    for piece in input.as_bytes().chunks(3) {
        out.extend(r.push(piece));
    }
    out.extend(r.finish());
    let s = String::from_utf8(out).expect("utf8");
    assert_clean("ndjson", s.as_bytes());
    let got: String = decode(Frame::Ndjson, s.as_bytes())
        .iter()
        .filter_map(|v| v["response"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(got, "mail <EMAIL_ADDRESS>");
    assert!(s.contains("\r\n"), "line ends are kept: {s:?}");
}
