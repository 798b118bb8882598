use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::redact::events::redact_document;
use crate::redact::json::FieldPath;
use crate::redact::{Detectors, Entity, Operator};

fn redactor(ops: &[(Entity, Operator)]) -> Redactor {
    Redactor::new(
        Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
        ops.iter().cloned().collect::<HashMap<_, _>>(),
        Operator::Replace { numbered: false },
    )
}

fn rewrite(r: &Redactor, body: &str, paths: &Paths) -> Result<String, RewriteError> {
    let out = redact_json(r, body.as_bytes(), &mut State::default(), paths)?;
    Ok(out.map_or_else(|| body.to_owned(), |o| String::from_utf8(o).expect("utf8")))
}

#[test]
fn untouched_bytes_stay_as_they_were() {
    let r = redactor(&[]);
    let body =
        "{ \"n\" : 1.0E+2 ,\"s\":\"mail jane@example.com\\n\",\"k\":[ true ,null ], \"n\":2}";
    let out = rewrite(&r, body, &Paths::default()).expect("rewrite");
    assert_eq!(
        out,
        "{ \"n\" : 1.0E+2 ,\"s\":\"mail <EMAIL_ADDRESS>\\n\",\"k\":[ true ,null ], \"n\":2}"
    );
    let clean = "{\"model\": \"m\", \"messages\": [{\"content\": \"hello\"}]}";
    assert_eq!(
        redact_json(
            &r,
            clean.as_bytes(),
            &mut State::default(),
            &Paths::default()
        ),
        Ok(None),
        "nothing found: no copy"
    );
}

#[test]
fn escapes_are_decoded_before_detection() {
    let r = redactor(&[]);
    let out = rewrite(
        &r,
        r#"{"a":"jane\u0040example.com","b":"4111\u00201111 1111 1111"}"#,
        &Paths::default(),
    )
    .expect("rewrite");
    let v: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v, json!({"a": "<EMAIL_ADDRESS>", "b": "<CREDIT_CARD>"}));
}

#[test]
fn dropped_members_take_their_commas_with_them() {
    let r = redactor(&[(Entity::EmailAddress, Operator::Drop)]);
    let p = Paths::default();
    for (body, want) in [
        (
            r#"{"a":1,"e":"jane@example.com","b":2}"#,
            r#"{"a":1,"b":2}"#,
        ),
        (r#"{"e":"jane@example.com","b":2}"#, r#"{"b":2}"#),
        (r#"{"a":1,"e":"jane@example.com"}"#, r#"{"a":1}"#),
        (r#"{"e":"jane@example.com"}"#, r#"{}"#),
        (
            r#"{"a":1, "e":"jane@example.com", "f":"x@example.org" ,"b":2}"#,
            r#"{"a":1, "b":2}"#,
        ),
        (
            r#"{"a":1,"e":"jane@example.com","f":"x@example.org"}"#,
            r#"{"a":1}"#,
        ),
        (
            r#"{"e":"jane@example.com","o":{"f":"x@example.org","k":[1]},"g":"bob@example.net"}"#,
            r#"{"o":{"k":[1]}}"#,
        ),
        (r#"["jane@example.com",1]"#, r#"["",1]"#),
    ] {
        let out = rewrite(&r, body, &p).expect("rewrite");
        assert_eq!(out, want, "{body}");
        serde_json::from_str::<Value>(&out).expect("valid JSON");
    }
}

/// The same result as redacting a parsed tree, over documents with nesting, escapes,
/// field paths and every operator but `block`.
#[test]
fn agrees_with_the_tree_redaction() {
    let docs = [
        json!({"model": "m", "messages": [{"role": "user", "content": "mail jane@example.com, card 4111 1111 1111 1111"}]}),
        json!({"user": "customer 415-555-0123", "metadata": {"ip": "10.1.2.3", "n": [1, 2.5, -3e2]}, "x": null}),
        json!([{"a": "DE89 3704 0044 0532 0130 00"}, ["\u{200B}jane@example.com", "ok"], "AKIAIOSFODNN7EXAMPLE"]),
        json!({"deep": {"er": {"est": ["quote \" and \\ and \n", "123-45-6789"]}}}),
        json!("just a string with bob@example.org"),
        json!({"empty": {}, "list": [], "t": true, "f": false}),
    ];
    let paths = Paths {
        always: vec![FieldPath::parse("$.metadata.*").expect("path")],
        never: vec![FieldPath::parse("$.messages[0].role").expect("path")],
    };
    for ops in [
        vec![],
        vec![(Entity::EmailAddress, Operator::Mask { keep_suffix: 4 })],
        vec![(Entity::IpAddress, Operator::Replace { numbered: true })],
    ] {
        let r = redactor(&ops);
        for doc in &docs {
            for p in [Paths::default(), paths.clone()] {
                let body = serde_json::to_string(doc).expect("json");
                let out = rewrite(&r, &body, &p).expect("rewrite");
                let got: Value = serde_json::from_str(&out).expect("valid JSON");
                let mut want = doc.clone();
                redact_document(&r, &mut want, &mut State::default(), &p).expect("tree");
                assert_eq!(got, want, "{body} with {ops:?}");
            }
        }
    }
}

/// Valid exactly when serde_json says so: every one-byte deletion, duplication and
/// replacement of a document that exercises each part of the grammar.
#[test]
fn validates_like_serde_json() {
    let r = redactor(&[]);
    let doc = br#"{"a":[1,-0.5e+3,true,false,null],"b":{"c":"d\u00e9\n\ud83d\ude00"},"e":"f"}"#;
    let mut checked = 0;
    let mut check = |b: &[u8]| {
        let ours = redact_json(&r, b, &mut State::default(), &Paths::default()).is_ok();
        let theirs = serde_json::from_slice::<Value>(b).is_ok();
        assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(b));
        checked += 1;
    };
    check(doc);
    for i in 0..doc.len() {
        let mut v = doc.to_vec();
        v.remove(i);
        check(&v);
        let mut v = doc.to_vec();
        v.insert(i, doc[i]);
        check(&v);
        for c in [b' ', b'"', b'\\', b'{', b']', b',', b'0', b'x', 0x01, 0xff] {
            let mut v = doc.to_vec();
            v[i] = c;
            check(&v);
        }
    }
    for bad in [
        &b"\"\\ud800\""[..],
        b"[1,]",
        b"01",
        b"1.",
        b"-",
        b"",
        b"{\"a\" 1}",
        b"\"a\" \"b\"",
    ] {
        check(bad);
    }
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert!(matches!(
        redact_json(
            &r,
            deep.as_bytes(),
            &mut State::default(),
            &Paths::default()
        ),
        Err(RewriteError::Invalid("nested too deeply", _))
    ));
    assert!(checked > 900);
}

#[test]
fn block_refuses() {
    let r = redactor(&[(Entity::UsSsn, Operator::Block)]);
    assert_eq!(
        redact_json(
            &r,
            br#"{"a":"ssn 123-45-6789"}"#,
            &mut State::default(),
            &Paths::default()
        ),
        Err(RewriteError::Blocked(Blocked(Entity::UsSsn)))
    );
}

/// A member whose name says it holds a secret is masked whole when nothing in its text
/// matched: in request bodies, in streamed JSON documents, and as `inspect_json` reports it.
#[test]
fn members_named_as_secrets_are_credentials() {
    let r = redactor(&[]);
    let body = r#"{"user":"bob","password":"hunter22","max_tokens":5,"token":"Hello","client_secret":"Zx9Qw8Er7Ty6Ui5Op4As","db":{"PASSWORD":"${DB_PASSWORD}"},"note":"password"}"#;
    let want = r#"{"user":"bob","password":"<CREDENTIAL>","max_tokens":5,"token":"Hello","client_secret":"<CREDENTIAL>","db":{"PASSWORD":"${DB_PASSWORD}"},"note":"password"}"#;
    assert_eq!(rewrite(&r, body, &Paths::default()).expect("rewrite"), want);
    let mut v: Value = serde_json::from_str(body).expect("json");
    redact_document(&r, &mut v, &mut State::default(), &Paths::default()).expect("redact");
    assert_eq!(v, serde_json::from_str::<Value>(want).expect("json"));
    let seen = inspect_json(&r, body.as_bytes(), &Paths::default()).expect("inspect");
    let found: Vec<(String, &str)> = seen
        .iter()
        .map(|s| (format!("{:?}", s.path), s.found[0].detector))
        .collect();
    assert_eq!(
        found,
        [
            (r#"[Key("password")]"#.to_owned(), "json_member"),
            (r#"[Key("client_secret")]"#.to_owned(), "json_member"),
        ]
    );
    // Without the credential detector, names are only names.
    let emails = Redactor::new(
        Detectors::new(&[Entity::EmailAddress], &[], &[]).expect("detectors"),
        HashMap::new(),
        Operator::Replace { numbered: false },
    );
    assert_eq!(
        rewrite(&emails, body, &Paths::default()).expect("rewrite"),
        body
    );
}
