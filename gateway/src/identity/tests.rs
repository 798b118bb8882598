use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::api_key::{ApiKey, ApiKeys};
use super::jwt::{JwtFailure, JwtSettings, JwtVerifier, ALLOWED};
use super::*;

/// Keys the tests sign with, and the JWKS that publishes their public halves.
struct TestKeys {
    rsa: EncodingKey,
    rsa_public_der: Vec<u8>,
    ec: EncodingKey,
    ed: EncodingKey,
    jwks: serde_json::Value,
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn keys() -> TestKeys {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let der = rsa.as_der().expect("pkcs8");
    let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
    let rsa_public_der = rsa.public_key().as_ref().to_vec();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec");
    let ec_raw = ec.public_key_raw().to_vec();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed");
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": B64.encode(&components.n), "e": B64.encode(&components.e)},
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": B64.encode(&ec_raw[1..33]), "y": B64.encode(&ec_raw[33..65])},
        {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": B64.encode(ed.public_key_raw())},
    ]});
    TestKeys {
        rsa: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", der.as_ref()).as_bytes())
            .expect("rsa key"),
        rsa_public_der,
        ec: EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("ec key"),
        ed: EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).expect("ed key"),
        jwks,
    }
}

fn verifier(dir: &Path, k: &TestKeys) -> JwtVerifier {
    verifier_with_leeway(dir, k, 5)
}

fn verifier_with_leeway(dir: &Path, k: &TestKeys, leeway_secs: u64) -> JwtVerifier {
    let file = dir.join("jwks.json");
    std::fs::write(&file, k.jwks.to_string()).expect("jwks");
    JwtVerifier::new(JwtSettings {
        jwks_file: file,
        issuers: vec!["https://idp.example/oauth2/default".into()],
        audiences: vec!["moat".into()],
        algorithms: ALLOWED.to_vec(),
        leeway_secs,
        subject_claim: "sub".into(),
        groups_claim: "groups".into(),
        regions_claim: "regions".into(),
        attribute_claims: vec![],
    })
    .expect("verifier")
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims() -> serde_json::Value {
    json!({
        "iss": "https://idp.example/oauth2/default",
        "aud": "moat",
        "sub": "alice@example.com",
        "exp": now() + 300,
        "groups": ["ml-users"],
        "regions": ["eu-central"],
    })
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &serde_json::Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, key).expect("sign")
}

#[test]
fn valid_tokens_of_each_algorithm_identify_the_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys();
    let v = verifier(dir.path(), &k);
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-1", &k.rsa),
        (Algorithm::PS256, "rsa-1", &k.rsa),
        (Algorithm::ES256, "ec-1", &k.ec),
        (Algorithm::EdDSA, "ed-1", &k.ed),
    ] {
        let p = v
            .verify(&sign(alg, kid, key, &claims()))
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(p.kind, PrincipalKind::Jwt);
        assert_eq!(p.id, "alice@example.com");
        assert_eq!(*p.groups, ["ml-users"]);
        assert_eq!(*p.regions, ["eu-central"]);
    }
}

#[test]
fn bad_tokens_are_refused_with_the_right_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys();
    let v = verifier(dir.path(), &k);
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims();
        f(&mut c);
        sign(Algorithm::RS256, "rsa-1", &k.rsa, &c)
    };
    let good = with(&|_| {});
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = {
        let mut payload: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).expect("b64")).expect("json");
        payload["sub"] = json!("mallory");
        format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(payload.to_string()),
            parts[2]
        )
    };
    let none = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none", "kid": "rsa-1", "typ": "JWT"}).to_string()),
        parts[1]
    );
    // Algorithm confusion: HS256 "signed" with the RSA public key as the shared secret.
    let confused = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa-1".into());
        jsonwebtoken::encode(
            &h,
            &claims(),
            &EncodingKey::from_secret(&k.rsa_public_der).expect("secret"),
        )
        .expect("hs256")
    };
    let cases = [
        (
            "expired",
            with(&|c| c["exp"] = json!(now() - 600)),
            JwtFailure::Expired,
        ),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(now() + 600)),
            JwtFailure::NotYetValid,
        ),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.example")),
            JwtFailure::WrongIssuer,
        ),
        (
            "missing iss",
            with(&|c| drop(c.as_object_mut().map(|o| o.remove("iss")))),
            JwtFailure::WrongIssuer,
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!("someone-else")),
            JwtFailure::WrongAudience,
        ),
        (
            "missing aud",
            with(&|c| drop(c.as_object_mut().map(|o| o.remove("aud")))),
            JwtFailure::WrongAudience,
        ),
        (
            "unknown kid",
            sign(Algorithm::RS256, "rsa-9", &k.rsa, &claims()),
            JwtFailure::UnknownKid,
        ),
        ("alg none", none, JwtFailure::AlgorithmNotAllowed),
        (
            "HS256 with the public key",
            confused,
            JwtFailure::AlgorithmNotAllowed,
        ),
        ("tampered payload", tampered, JwtFailure::BadSignature),
        (
            "ES256 header on an RSA key",
            sign(Algorithm::ES256, "rsa-1", &k.ec, &claims()),
            JwtFailure::KeyMismatch,
        ),
        (
            "signed by another key",
            sign(Algorithm::ES256, "ec-1", &keys().ec, &claims()),
            JwtFailure::BadSignature,
        ),
    ];
    for (name, token, want) in cases {
        assert_eq!(v.verify(&token).err(), Some(want), "{name}");
    }
}

#[test]
fn jwks_reload_picks_up_new_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys();
    let v = verifier(dir.path(), &k);
    let other = keys();
    let token = sign(Algorithm::ES256, "ec-2", &other.ec, &claims());
    assert_eq!(v.verify(&token).err(), Some(JwtFailure::UnknownKid));
    let mut jwks = k.jwks;
    let mut ec2 = other.jwks["keys"][1].clone();
    ec2["kid"] = json!("ec-2");
    jwks["keys"].as_array_mut().expect("keys").push(ec2);
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).expect("write");
    v.reload().expect("reload");
    assert!(v.verify(&token).is_ok());
    // A broken file keeps the keys in use.
    std::fs::write(dir.path().join("jwks.json"), "{").expect("write");
    assert!(v.reload().is_err());
    assert!(v.verify(&token).is_ok());
}

fn api_keys() -> ApiKeys {
    use sha2::{Digest, Sha256};
    ApiKeys::new(vec![ApiKey {
        id: "batch-job".into(),
        sha256: Sha256::digest(b"s3cr3t-key").into(),
        groups: ["batch".to_owned()].into(),
        regions: ["eu-central".to_owned()].into(),
        attributes: [("team".to_owned(), "search".to_owned())].into(),
    }])
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    h
}

#[test]
fn sources_are_tried_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys();
    let id = Identifier {
        jwt: Some(verifier(dir.path(), &k)),
        api_keys: api_keys(),
    };
    let all = [Source::Mtls, Source::Jwt, Source::ApiKey];
    let jwt = sign(Algorithm::ES256, "ec-1", &k.ec, &claims());

    let p = id
        .identify(
            &all,
            &headers(&[("authorization", &format!("Bearer {jwt}"))]),
            None,
        )
        .expect("jwt");
    assert_eq!(p.kind, PrincipalKind::Jwt);
    let p = id
        .identify(
            &all,
            &headers(&[("authorization", "Bearer s3cr3t-key")]),
            None,
        )
        .expect("key");
    assert_eq!(
        (p.kind, p.id.as_str()),
        (PrincipalKind::ApiKey, "batch-job")
    );
    let p = id
        .identify(&all, &headers(&[("x-api-key", "s3cr3t-key")]), None)
        .expect("x-api-key");
    assert_eq!(p.id, "batch-job");
    assert_eq!(
        id.identify(&all, &headers(&[("authorization", "Bearer wrong")]), None),
        Err(IdentityError::UnknownApiKey)
    );
    assert_eq!(
        id.identify(&all, &headers(&[]), None),
        Err(IdentityError::Missing)
    );
    assert_eq!(
        id.identify(&all, &headers(&[("authorization", "Basic eDp5")]), None),
        Err(IdentityError::MalformedAuthorization)
    );
    // An invalid JWT does not fall through to the API key source.
    let expired = {
        let mut c = claims();
        c["exp"] = json!(now() - 600);
        sign(Algorithm::ES256, "ec-1", &k.ec, &c)
    };
    let e = id
        .identify(
            &all,
            &headers(&[("authorization", &format!("Bearer {expired}"))]),
            None,
        )
        .expect_err("expired");
    assert_eq!(e.reason(), "jwt_expired");
    // No sources: anonymous.
    assert_eq!(
        id.identify(&[], &headers(&[]), None)
            .expect("anonymous")
            .kind,
        PrincipalKind::Anonymous
    );
}

#[test]
fn mtls_principal_prefers_the_spiffe_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = crate::certs::init(dir.path(), &["localhost".into()]).expect("certs");
    let pem = std::fs::read(&files.client_cert).expect("client cert");
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("one")
        .expect("pem");
    use rustls_pki_types::pem::PemObject;
    let cert = PeerCert {
        der: der.as_ref().to_vec(),
    };
    let id = Identifier::default();
    let p = id
        .identify(&[Source::Mtls, Source::ApiKey], &headers(&[]), Some(&cert))
        .expect("mtls");
    assert_eq!(
        (p.kind, p.id.as_str()),
        (PrincipalKind::Mtls, "spiffe://moat.local/client")
    );
    assert_eq!(p.cert_sha256.as_deref().map(str::len), Some(64));
}

#[test]
fn verified_tokens_are_cached_until_they_expire_or_the_keys_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys();
    let v = verifier_with_leeway(dir.path(), &k, 0);
    let short = {
        let mut c = claims();
        c["exp"] = json!(now() + 1);
        sign(Algorithm::ES256, "ec-1", &k.ec, &c)
    };
    assert!(v.verify(&short).is_ok());
    assert!(v.verify(&short).is_ok(), "a cache hit");
    // Past exp (no leeway in these settings), the cached token is refused.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(v.verify(&short).err(), Some(JwtFailure::Expired));

    // A key removed from the JWKS stops working at once, even for a token verified before.
    let token = sign(Algorithm::ES256, "ec-1", &k.ec, &claims());
    assert!(v.verify(&token).is_ok());
    let mut jwks = k.jwks;
    jwks["keys"].as_array_mut().expect("keys").remove(1);
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).expect("write");
    v.reload().expect("reload");
    assert_eq!(v.verify(&token).err(), Some(JwtFailure::UnknownKid));
}
