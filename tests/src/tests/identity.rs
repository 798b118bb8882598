//! Identity and policy end to end: JWTs signed by keys the test makes, API keys, client
//! certificates, region and model rules, and what the upstream receives.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::client::{self, Raw};
use crate::gateway::{self, Gateway};
use crate::idp::{Idp, ISS};
use crate::origin::Origin;

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn identity_section(idp: &Idp) -> String {
    format!(
        r#"[identity.jwt]
jwks_file = "{}"
issuers = ["{ISS}"]
audiences = ["moat"]
leeway = "5s"

[[identity.api_keys]]
id = "batch-job"
sha256 = "{}"
groups = ["batch"]
regions = ["eu-central"]
"#,
        idp.jwks(),
        sha256_hex("batch-s3cr3t")
    )
}

const POLICY: &str = r#"
[[policy.rules]]
id = "ml-users-chat"
kinds = ["jwt"]
groups = ["ml-users"]
paths = ["/v1/chat/completions", "/headers"]
action = "allow"

[[policy.rules]]
id = "batch-gpt-x"
kinds = ["api_key"]
models = ["gpt-x"]
action = "allow"

[[policy.rules]]
id = "service-mtls"
kinds = ["mtls"]
principals = ["spiffe://moat.local/*"]
require_region = false
action = "allow"
"#;

async fn gateway(origin: &Origin, idp: &Idp) -> Gateway {
    gateway::new(origin.addr.to_string())
        .listener("identity = [\"mtls\", \"jwt\", \"api_key\"]\nclient_ca = \"tls/ca.pem\"\nclient_cert = \"optional\"")
        .section(&format!("[residency]\nregion = \"eu-central\"\n{}", identity_section(idp)))
        .policy(POLICY)
        .run()
}

async fn send(gw: &Gateway, request: &str) -> client::RawResponse {
    let (r, _) = client::raw_exchange(gw.addr, &gw.ca, request.as_bytes()).await;
    r.expect("response")
}

fn chat(auth: &str, model: &str) -> String {
    let body = format!(
        "{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}"
    );
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_rejections_carry_their_reason_to_the_audit_record() {
    let origin = Origin::start().await;
    let idp = Idp::new();
    let gw = gateway(&origin, &idp).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let good = idp.token(|_| {});
    let r = send(
        &gw,
        &chat(&format!("Authorization: Bearer {good}\r\n"), "gpt-x"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(
        (
            rec["principal"].as_str(),
            rec["principal_kind"].as_str(),
            rec["rule"].as_str()
        ),
        (
            Some("alice@example.com"),
            Some("jwt"),
            Some("ml-users-chat")
        )
    );

    let parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let tampered = {
        let mut p: serde_json::Value =
            serde_json::from_slice(&B64.decode(&parts[1]).expect("b64")).expect("json");
        p["groups"] = json!(["admins", "ml-users"]);
        format!("{}.{}.{}", parts[0], B64.encode(p.to_string()), parts[2])
    };
    let none = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none", "kid": "k1"}).to_string()),
        parts[1]
    );
    let confused = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let c: serde_json::Value =
            serde_json::from_slice(&B64.decode(&parts[1]).expect("b64")).expect("json");
        jsonwebtoken::encode(
            &h,
            &c,
            &EncodingKey::from_secret(&idp.public_raw).expect("secret"),
        )
        .expect("hs256")
    };
    let unknown_kid = {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k9".into());
        let c: serde_json::Value =
            serde_json::from_slice(&B64.decode(&parts[1]).expect("b64")).expect("json");
        jsonwebtoken::encode(&h, &c, &idp.key).expect("sign")
    };
    let cases = [
        (
            "expired",
            idp.token(|c| c["exp"] = json!(now - 600)),
            401,
            "jwt_expired",
        ),
        (
            "not yet valid",
            idp.token(|c| c["nbf"] = json!(now + 600)),
            401,
            "jwt_not_yet_valid",
        ),
        (
            "wrong iss",
            idp.token(|c| c["iss"] = json!("https://evil.example")),
            401,
            "jwt_wrong_issuer",
        ),
        (
            "wrong aud",
            idp.token(|c| c["aud"] = json!("other")),
            401,
            "jwt_wrong_audience",
        ),
        ("unknown kid", unknown_kid, 401, "jwt_unknown_kid"),
        ("alg none", none, 401, "jwt_algorithm_not_allowed"),
        (
            "HS256 with the public key",
            confused,
            401,
            "jwt_algorithm_not_allowed",
        ),
        ("tampered payload", tampered, 401, "jwt_bad_signature"),
        (
            "another region",
            idp.token(|c| c["regions"] = json!(["us-east"])),
            403,
            "region mismatch",
        ),
    ];
    for (name, token, status, reason) in cases {
        let r = send(
            &gw,
            &chat(&format!("Authorization: Bearer {token}\r\n"), "gpt-x"),
        )
        .await;
        assert_eq!(r.status, status, "{name}");
        if status == 401 {
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"moat\""),
                "{name}"
            );
        }
        let body = r.text();
        assert!(
            !body.contains("jwt") && !body.contains("region"),
            "{name}: the client is told no reason: {body}"
        );
        let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
        assert_eq!(rec["kind"], "reject", "{name}");
        assert!(
            rec["detail"].as_str().is_some_and(|d| d.contains(reason)),
            "{name}: {rec}"
        );
    }
    assert_eq!(
        origin
            .seen
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the good token was forwarded"
    );
}

/// Every request and refusal record answers the auditor's questions: moat's region, the regions
/// the caller's credential claims, and the model the body names, also on a route whose rule
/// names no models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_name_the_region_the_callers_regions_and_the_model() {
    let origin = Origin::start().await;
    let idp = Idp::new();
    let gw = gateway(&origin, &idp).await;

    // `ml-users-chat` names no models.
    let token = idp.token(|_| {});
    let r = send(
        &gw,
        &chat(&format!("Authorization: Bearer {token}\r\n"), "llama-3"),
    )
    .await;
    assert_eq!(r.status, 200);
    let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(rec["kind"], "request");
    assert_eq!(rec["rule"], "ml-users-chat");
    assert_eq!(rec["model"], "llama-3", "{rec}");
    assert_eq!(rec["region"], "eu-central", "{rec}");
    assert_eq!(
        rec["caller_regions"],
        serde_json::json!(["eu-central"]),
        "{rec}"
    );

    // Refused by policy after the model was read: the same facts on the refusal.
    let r = send(
        &gw,
        &chat("Authorization: Bearer batch-s3cr3t\r\n", "gpt-y"),
    )
    .await;
    assert_eq!(r.status, 403);
    let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(rec["kind"], "reject");
    assert_eq!(
        (&rec["principal"], &rec["model"], &rec["region"]),
        (&"batch-job".into(), &"gpt-y".into(), &"eu-central".into()),
        "{rec}"
    );
    assert_eq!(
        rec["caller_regions"],
        serde_json::json!(["eu-central"]),
        "{rec}"
    );

    // Refused before identity: moat's region still, no caller.
    let r = send(&gw, &chat("", "gpt-x")).await;
    assert_eq!(r.status, 401);
    let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(rec["region"], "eu-central", "{rec}");
    assert_eq!(rec["caller_regions"], serde_json::json!([]), "{rec}");

    // Refused for its path before identity: the record carries the id the client was given.
    let r = send(
        &gw,
        "GET /v1/chat%2fcompletions HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
    let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(
        (&rec["kind"], &rec["reason"]),
        (&"reject".into(), &"bad_request".into()),
        "{rec}"
    );

    // No rule anywhere names a model: the record names it all the same.
    let plain = gateway::new(origin.addr.to_string()).run();
    let (r, _) =
        client::raw_exchange(plain.addr, &plain.ca, chat("", "mistral-7b").as_bytes()).await;
    let r = r.expect("response");
    assert_eq!(r.status, 200);
    let rec = plain
        .audit_record(r.header("x-request-id").expect("id"))
        .await;
    assert_eq!(rec["model"], "mistral-7b", "{rec}");
    assert_eq!(
        rec["region"],
        serde_json::Value::Null,
        "no residency.region: {rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_models_and_traversal() {
    let origin = Origin::start().await;
    let idp = Idp::new();
    let gw = gateway(&origin, &idp).await;

    let key = "Authorization: Bearer batch-s3cr3t\r\n";
    let r = send(&gw, &chat(key, "gpt-x")).await;
    assert_eq!(r.status, 200, "model gpt-x is allowed for the batch key");
    let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(
        (rec["principal"].as_str(), rec["model"].as_str()),
        (Some("batch-job"), Some("gpt-x"))
    );
    let r = send(&gw, &chat(key, "gpt-y")).await;
    assert_eq!(r.status, 403, "model gpt-y is not");
    let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(rec["rule"], "default-deny");

    let r = send(&gw, &chat("Authorization: Bearer wrong-key\r\n", "gpt-x")).await;
    assert_eq!(r.status, 401);
    let r = send(&gw, &chat("X-Api-Key: batch-s3cr3t\r\n", "gpt-x")).await;
    assert_eq!(r.status, 200, "X-Api-Key works too");
    let r = send(&gw, &chat("", "gpt-x")).await;
    assert_eq!(r.status, 401, "no credentials");

    // Deny by default: the JWT caller's rule covers two paths only.
    let token = idp.token(|_| {});
    let auth = format!("Authorization: Bearer {token}\r\n");
    let r = send(
        &gw,
        &format!("GET /v1/models HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n"),
    )
    .await;
    assert_eq!(r.status, 403);
    for path in [
        "/v1/chat/completions/../../admin",
        "/v1/chat/completions/%2e%2e/admin",
        "/v1//chat/completions",
        "/v1/chat%2fcompletions",
    ] {
        let r = send(
            &gw,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n"),
        )
        .await;
        assert!(
            r.status == 400 || r.status == 403,
            "{path} got {}",
            r.status
        );
    }

    let all: String = gw.audit_records().iter().map(|r| r.to_string()).collect();
    assert!(
        !all.contains("batch-s3cr3t"),
        "an API key reached the audit trail"
    );
    assert!(
        !gw.log().contains("batch-s3cr3t"),
        "an API key reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates() {
    let origin = Origin::start().await;
    let idp = Idp::new();
    let gw = gateway(&origin, &idp).await;
    let tls = gw.tls_dir();
    let get = b"GET /headers HTTP/1.1\r\nHost: localhost\r\n\r\n";

    // A certificate from the configured CA: the SPIFFE ID is the principal the policy sees.
    let mut c = Raw::try_connect(
        gw.addr,
        &gw.ca,
        Some((&tls.join("client.pem"), &tls.join("client.key"))),
    )
    .await
    .expect("mTLS");
    c.send(get).await.expect("send");
    let r = c.read_response(false).await.expect("response");
    assert_eq!(r.status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        seen["x-moat-principal"],
        json!(["spiffe://moat.local/client"])
    );
    let rec = gw.audit_record(r.header("x-request-id").expect("id")).await;
    assert_eq!(rec["rule"], "service-mtls");
    assert!(rec["tls"]["client_cert_sha256"]
        .as_str()
        .is_some_and(|s| s.len() == 64));

    // A certificate from another CA is refused at the handshake.
    let other = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(gateway::binary())
        .args(["cert", "init", "--dir"])
        .arg(other.path())
        .args(["--host", "localhost"])
        .output()
        .expect("cert init");
    assert!(out.status.success());
    let foreign = Raw::try_connect(
        gw.addr,
        &gw.ca,
        Some((
            &other.path().join("client.pem"),
            &other.path().join("client.key"),
        )),
    )
    .await;
    let refused = match foreign {
        Err(_) => true,
        Ok(mut c) => {
            let _ = c.send(get).await;
            c.read_response(false).await.is_none()
        }
    };
    assert!(refused, "a certificate from another CA was accepted");

    // No certificate (optional mTLS): the next source, an API key, identifies the caller.
    let r = send(
        &gw,
        &chat("Authorization: Bearer batch-s3cr3t\r\n", "gpt-x"),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_injected_credential_never_the_callers() {
    let origin = Origin::start().await;
    let idp = Idp::new();
    let cred = tempfile::tempdir().expect("tempdir");
    let cred_file = cred.path().join("model.token");
    std::fs::write(&cred_file, "Bearer model-server-token\n").expect("credential");
    let gw = gateway::new(origin.addr.to_string())
        .listener("identity = [\"jwt\", \"api_key\"]")
        .upstream(&format!("credential_file = \"{}\"", cred_file.display()))
        .section(&format!(
            "[residency]\nregion = \"eu-central\"\n{}",
            identity_section(&idp)
        ))
        .policy(POLICY)
        .run();
    let token = idp.token(|_| {});
    let r = send(
        &gw,
        &format!("GET /headers HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nX-Moat-Principal: root\r\nX_Moat_Principal: admin\r\ntransfer_encoding: chunked\r\nX-Api-Key: batch-s3cr3t\r\nCookie: session=abc\r\n\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        seen["authorization"],
        json!(["Bearer model-server-token"]),
        "{seen}"
    );
    assert!(
        seen.get("x-api-key").is_none() && seen.get("cookie").is_none(),
        "{seen}"
    );
    assert_eq!(
        seen["x-moat-principal"],
        json!(["alice@example.com"]),
        "a spoofed x-moat-principal was forwarded: {seen}"
    );
    assert_eq!(seen["x-moat-principal-kind"], json!(["jwt"]));
    assert!(!seen.to_string().contains(&token));
    // Names with `_`, which an upstream folding `_` into `-` would read as moat's own fields,
    // never arrive.
    let names: Vec<&String> = seen.as_object().expect("object").keys().collect();
    assert!(names.iter().all(|n| !n.contains('_')), "{names:?}");
    assert!(!seen.to_string().contains("admin"), "{seen}");
}

/// Identity and policy decide the same over HTTP/2 as over HTTP/1.1: the same credentials and
/// models get the same status and the same deciding rule in the audit record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_gets_the_same_decisions() {
    let origin = Origin::start().await;
    let idp = Idp::new();
    let gw = gateway(&origin, &idp).await;
    let h2 = client::http2(&gw.ca);
    let token = idp.token(|_| {});
    let cases: [(&str, &str, &str); 5] = [
        ("authorization", "Bearer batch-s3cr3t", "gpt-x"),
        ("authorization", "Bearer batch-s3cr3t", "gpt-y"),
        ("authorization", "Bearer wrong-key", "gpt-x"),
        ("x-api-key", "batch-s3cr3t", "gpt-x"),
        ("authorization", &format!("Bearer {token}"), "gpt-x"),
    ];
    for (name, value, model) in cases {
        let h1 = send(&gw, &chat(&format!("{name}: {value}\r\n"), model)).await;
        let body = format!(
            "{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}"
        );
        let r = h2
            .post(client::url(gw.addr, "/v1/chat/completions"))
            .header(name, value)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("h2 request");
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(
            r.status().as_u16(),
            h1.status,
            "{name}: {value} for {model}"
        );
        let id2 = client::request_id(&r);
        let rec1 = gw
            .audit_record(h1.header("x-request-id").expect("id"))
            .await;
        let rec2 = gw.audit_record(&id2).await;
        for field in ["rule", "principal", "model", "status", "reason"] {
            assert_eq!(
                rec1[field], rec2[field],
                "{field} for {name}: {value} {model}"
            );
        }
        if h1.status == 200 {
            assert_eq!(rec2["tls"]["alpn"], "h2", "{rec2}");
        }
    }
}

/// Refusals sent before a POST's body has all arrived reach Debian's curl over HTTP/2 intact,
/// 100 in a row: moat reads and drops the rest of the body, so the stream ends with the client's
/// END_STREAM instead of a reset racing the response (curl 7.88 then fails with "(92) Stream
/// error in the HTTP/2 framing layer").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_curl_over_http2_intact() {
    let origin = Origin::start().await;
    let idp = Idp::new();
    let gw = gateway(&origin, &idp).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("chat.json");
    let filler = "x".repeat(256 * 1024);
    std::fs::write(
        &body,
        format!(r#"{{"model":"gpt-y","messages":[{{"role":"user","content":"{filler}"}}]}}"#),
    )
    .expect("body");
    let url = client::url(gw.addr, "/v1/chat/completions");
    for i in 0..100 {
        // Without a credential: 401 before the body is read; with the batch key and a model
        // no rule allows: 403 once the body's start named it.
        let (auth, expected) = if i % 2 == 0 {
            ("x-nothing: 1", "401")
        } else {
            ("authorization: Bearer batch-s3cr3t", "403")
        };
        let out = tokio::process::Command::new("curl")
            .args(["--http2", "-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg("--cacert")
            .arg(&gw.ca)
            .args(["-H", "content-type: application/json", "-H", auth])
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(&url)
            .output()
            .await
            .expect("curl runs");
        let code = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && code == expected,
            "refusal {i}: curl {:?}, status {code}, {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        origin
            .seen
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// An HTTP/1.1 refusal keeps the connection when nothing of the request is left unread: the
/// next request on it is served; a refusal with a body still on its way closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_keep_the_connection_when_nothing_is_left_unread() {
    let origin = Origin::start().await;
    let idp = Idp::new();
    let gw = gateway(&origin, &idp).await;
    let mut c = Raw::connect(gw.addr, &gw.ca).await;
    c.send(b"GET /headers HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    let r = c.read_response(false).await.expect("refusal");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("connection"),
        None,
        "a bodiless refusal closed the connection"
    );
    // A body that came whole with its head is dropped, and the connection stays too.
    c.send(chat("", "gpt-x").as_bytes()).await.expect("send");
    let r = c.read_response(false).await.expect("refusal");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("connection"), None);
    c.send(chat("Authorization: Bearer batch-s3cr3t\r\n", "gpt-x").as_bytes())
        .await
        .expect("send");
    let r = c
        .read_response(false)
        .await
        .expect("served on the same connection");
    assert_eq!(r.status, 200);
    // Refused before its body arrived: the connection closes.
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
        .await
        .expect("send");
    let r = c.read_response(false).await.expect("refusal");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed().await);
}
