//! Cost per request of each identity source: JWT verification (RS256, ES256, EdDSA) against a
//! JWKS, and API key lookup (SHA-256 plus a constant-time comparison with every configured key).
//!
//! `cargo bench -p moat --bench identity` — prints ns per verification, single thread.

use std::hint::black_box;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use moat::identity::api_key::{ApiKey, ApiKeys};
use moat::identity::jwt::{JwtSettings, JwtVerifier, ALLOWED};
use serde_json::json;
use tokio::time::Instant;

fn pem(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let b64 = STANDARD.encode(der);
    let lines: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Runs `f` for about a second after a warm-up and returns ns per call.
fn measure(mut f: impl FnMut()) -> f64 {
    for _ in 0..200 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_millis() < 1000 {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let rsa_c = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec");
    let ec_raw = ec.public_key_raw().to_vec();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed");
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": B64.encode(&rsa_c.n), "e": B64.encode(&rsa_c.e)},
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": B64.encode(&ec_raw[1..33]), "y": B64.encode(&ec_raw[33..65])},
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": B64.encode(ed.public_key_raw())},
    ]});
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks.to_string()).expect("jwks");
    let v = JwtVerifier::new(JwtSettings {
        jwks_file: file,
        issuers: vec!["https://idp.example".into()],
        audiences: vec!["moat".into()],
        algorithms: ALLOWED.to_vec(),
        leeway_secs: 30,
        subject_claim: "sub".into(),
        groups_claim: "groups".into(),
        regions_claim: "regions".into(),
        attribute_claims: vec![],
    })
    .expect("verifier");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({"iss": "https://idp.example", "aud": "moat", "sub": "alice", "exp": now + 3600,
                        "groups": ["ml-users"], "regions": ["eu-central"]});
    let sign = |alg: Algorithm, kid: &str, key: &EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims, key).expect("sign")
    };
    let rsa_key = EncodingKey::from_rsa_pem(
        pem("PRIVATE KEY", rsa.as_der().expect("der").as_ref()).as_bytes(),
    )
    .expect("rsa");
    let tokens = [
        (
            "JWT RS256 (2048-bit)",
            sign(Algorithm::RS256, "rsa", &rsa_key),
        ),
        (
            "JWT ES256 (P-256)",
            sign(
                Algorithm::ES256,
                "ec",
                &EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("ec"),
            ),
        ),
        (
            "JWT EdDSA (Ed25519)",
            sign(
                Algorithm::EdDSA,
                "ed",
                &EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).expect("ed"),
            ),
        ),
    ];
    println!("| identity source | ns per request | verifications/s (one core) |");
    println!("|---|---:|---:|");
    for (name, token) in &tokens {
        assert!(v.verify(token).is_ok(), "{name} does not verify");
        let ns = measure(|| {
            black_box(v.verify_uncached(black_box(token)).ok());
        });
        println!("| {name}, full verification | {ns:.0} | {:.0} |", 1e9 / ns);
    }
    let (_, token) = &tokens[0];
    let ns = measure(|| {
        black_box(v.verify(black_box(token)).ok());
    });
    println!(
        "| JWT, token seen before (cache hit) | {ns:.0} | {:.0} |",
        1e9 / ns
    );
    for n in [10usize, 1000] {
        use sha2::{Digest, Sha256};
        let keys: Vec<ApiKey> = (0..n)
            .map(|i| ApiKey {
                id: format!("key-{i}"),
                sha256: Sha256::digest(format!("secret-{i}").as_bytes()).into(),
                groups: Default::default(),
                regions: Default::default(),
                attributes: Default::default(),
            })
            .collect();
        let keys = ApiKeys::new(keys);
        let presented = format!("secret-{}", n / 2);
        assert!(keys.identify(&presented).is_some());
        let ns = measure(|| {
            black_box(keys.identify(black_box(&presented)));
        });
        println!(
            "| API key, {n} keys configured | {ns:.0} | {:.0} |",
            1e9 / ns
        );
    }
}
