//! Each secret format: a value it must find, and near misses (wrong length, wrong checksum,
//! wrong prefix, not random) it must leave alone.

use super::detect::{Detectors, Entity};

/// (entity, a real-format value, near misses)
fn formats() -> Vec<(Entity, String, Vec<String>)> {
    let openai = "sk-proj-Xk3mP9qL2vN8rT5wY1zA4bC7dE0fG6hJ_iK2lM4nO6pQ8rS0tU3vW5xY7zA9bC1dE";
    let anthropic = format!(
        "sk-ant-api03-{}AA",
        "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1tU3vW5xY7zA9bC1dE3fG5hJ7kL9m"
    );
    vec![
        (
            Entity::ApiKey,
            "sk-Tq9vB2nM4kL6jH8gF0dS1aP3oI5uY7tR9eW2qZ4xC6vB8nM".into(),
            vec![
                "sk-learn".into(),
                "sk-some-long-hyphenated-identifier".into(),
                "sk-abcdefghijklmnopqrstuvwxyzabcdef".into(),
                "risk-Tq9vB2nM4kL6jH8gF0dS1aP3oI5uY7tR".into(),
            ],
        ),
        (Entity::ApiKey, openai.into(), vec!["sk-proj-short1A".into()]),
        (Entity::ApiKey, anthropic, vec!["sk-ant-api03-".into()]),
        (
            Entity::ApiKey,
            "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".into(),
            vec![
                "hf_short".into(),
                "hf_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            ],
        ),
        (
            Entity::ApiKey,
            "sk_live_51HqLyjWDarjtT1zdp7dcXYZ4bC9eF2gH".into(),
            vec!["sk_live_short".into(), "sk_prod_51HqLyjWDarjtT1zdp7dcXYZ4bC9eF2gH".into()],
        ),
        (
            Entity::ApiKey,
            "rk_live_51HqLyjWDarjtT1zdp7dcXYZ4bC9eF2gH".into(),
            vec!["rk_live_".into()],
        ),
        (
            Entity::ApiKey,
            "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".into(),
            vec![
                // One checksum digit off.
                "npm_CN6Zj4a3dDVhYRnKTbxTNJFoBinF5a42GyMz".into(),
                // One character short.
                "npm_CN6Zj4a3dDVhYRnKTbxTNJFoBinF5a42GyM".into(),
            ],
        ),
        (
            Entity::ApiKey,
            "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".into(),
            vec!["SG.ngeVfQFYQlKU0ufo8x5d1A.short".into()],
        ),
        (
            Entity::ApiKey,
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX".into(),
            vec!["https://hooks.slack.com/services/".into()],
        ),
        (
            Entity::AccessToken,
            "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".into(),
            vec![
                // Wrong checksum (the last digit changed).
                "ghp_Ky9Pf34qY6Nb3wWD25RQ4F5ZR3qa7y3gm1IM".into(),
                // Wrong length.
                "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x".into(),
                // Wrong prefix.
                "ghx_Ky9Pf34qY6Nb3wWD25RQ4F5ZR3qa7y3gm1IL".into(),
            ],
        ),
        (
            Entity::AccessToken,
            "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".into(),
            vec!["gho_Eeeby3abP3E2Zs8IQ9Y7aJZqhB6bae2dTjzy".into()],
        ),
        (
            Entity::PrivateKey,
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0rXkQBCADLqmtuE9zrd5J+1n0sdT\n=b2Xt\n-----END PGP PRIVATE KEY BLOCK-----".into(),
            vec!["-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBF0rXkQBCADLqmtuE9zrd5J+1n0sdT\n-----END PGP PUBLIC KEY BLOCK-----".into()],
        ),
        (
            Entity::PrivateKey,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----".into(),
            vec![],
        ),
    ]
}

#[test]
fn every_secret_format_is_found_and_its_near_misses_are_not() {
    let d = Detectors::new(&Entity::ALL, &[], &[]).expect("detectors");
    for (entity, value, misses) in formats() {
        let text = format!("here it is: {value} thanks");
        let found = d.find(&text);
        let at = text.find(&value).expect("value in text");
        assert!(
            found
                .iter()
                .any(|f| f.entity == entity && f.start == at && f.end == at + value.len()),
            "{entity:?} not found whole in {text:?}: {found:?}"
        );
        for miss in misses {
            let text = format!("here it is: {miss} thanks");
            let found = d.find(&text);
            assert!(
                found.iter().all(|f| f.entity != entity),
                "{entity:?} near miss flagged in {text:?}: {found:?}"
            );
        }
    }
}

/// Secrets are masked wherever a stream cuts them.
#[test]
fn a_secret_split_anywhere_in_a_stream_is_masked() {
    use super::{Operator, Redactor};
    let r = Redactor::new(
        Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
        std::collections::HashMap::new(),
        Operator::Replace { numbered: false },
    );
    for (_, value, _) in formats() {
        let text = format!("key {value} ok");
        for cut in (1..text.len()).filter(|&c| text.is_char_boundary(c)) {
            let out = streamed(&r, &text, cut);
            assert!(
                !out.contains(value.as_str()),
                "{value} leaked at cut {cut}: {out}"
            );
        }
    }
}

/// `text` redacted as a stream cut in two at `cut`.
pub(super) fn streamed(r: &super::Redactor, text: &str, cut: usize) -> String {
    use super::stream::HoldBack;
    let mut hold = HoldBack::default();
    let mut st = super::State::default();
    let max = 16 * 1024;
    let mut out = hold.push(&text[..cut], r, &mut st, max).expect("push");
    out.push_str(&hold.push(&text[cut..], r, &mut st, max).expect("push"));
    out.push_str(&hold.finish(r, &mut st).expect("finish"));
    out
}
