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
        (Entity::ApiKey, "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".into(), vec!["gsk_J0RlgLKOmxgJTeKdNnFRIBXuDL7DxtpYlSXpfKtH".into(), "gsx_F4vUCsMehGAkWvj7FAc9QeWJKY40uvSwMFLZDe1f8rESQedUStPK".into()]),
        (Entity::ApiKey, "r8_R0CsTy4Qwb8DwkNhFdnXsiVpzz63FfkCzJr4i".into(), vec!["r8_0B3JrTAwR4y9ojfljoQo".into()]),
        (Entity::ApiKey, "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".into(), vec!["pplx-khvMdgaKjIg8xNbe3nNyjOq9wMxEhh".into()]),
        (Entity::ApiKey, "xai-2FDEEtfjgVvVqE1SkHbn88HxjSI6bWHtP3fS2qHx6kwXoIIXGvOoNZYW2mZp0zVZomHFwUbbYrEqmSM9".into(), vec!["xai-wCZ7Uw9xfogoEmvnEN5N1aE6PwZPf1Qh6yYTWmE4".into()]),
        (Entity::ApiKey, "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".into(), vec!["lsv2_pt_e50454f31af3176813e02ea68ef786e_4d3cea27d2".into()]),
        (Entity::ApiKey, "pcsk_5Xj8T_PQxjq4i9DoV8gz4FkQ1okTBGzvAmwufUxbvJDCTbyvHNsG9eh6Yo4gfqrc5X".into(), vec!["pcsk_lrWi0".into()]),
        (Entity::ApiKey, "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".into(), vec!["tvly-fM2oeq3hDavJA76rNicH".into()]),
        (Entity::ApiKey, "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".into(), vec!["GOCSPX-bUGJmGEp7CgQ".into()]),
        (Entity::ApiKey, "key-caf4941d4072014b3ce107f80e222f82".into(), vec!["key-8767efc2f91624a8940f".into(), "key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into()]),
        (Entity::ApiKey, "sq0atp-dFrRgSnRFsTHsDDDXh5Jmt".into(), vec!["sq0atp-f7EbsDe0G9".into()]),
        (Entity::ApiKey, "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".into(), vec!["shpat_0aac36098b2cc2bd818319478da6bd".into(), "shpxx_0c621de49f145fda9988c79fc35526f7".into()]),
        (Entity::ApiKey, "dop_v1_eaed46725a2a7b860dcd6c8a1f8b46287cced9041dff02cee737443e21047194".into(), vec!["dop_v1_8d33296c87009e8a7f770d9106fd287db7f1adbc60926f6967e7893f57fd".into()]),
        (Entity::ApiKey, "pypi-AgEIcHlwaS5vcmc6Qd8Mj7zdnbMjAdTdlzC5T4uUhf7kvmlP7HVDctQUy1xvCkgafrfwA94hJ9W".into(), vec!["pypi-AgEIcHlwaS5vcmcnywX0t0ZBf".into()]),
        (Entity::ApiKey, "dckr_pat_dTEmxI6CmuxV5EbOApZOXzcycDe".into(), vec!["dckr_pat_Z6dqmVe5Mvxr".into()]),
        (Entity::ApiKey, "dapia18a8902073fec8df4f50947aaeb26c5".into(), vec!["dapi7d21fa5d328263dfe574".into()]),
        (Entity::ApiKey, "lin_api_ADN5RpVI2XQWhX1ssrKrxqVqmCplppjs46Lmuezq".into(), vec!["lin_api_pGHoPZgPDcgaE40o1C6xc4sohdmM0L".into()]),
        (Entity::ApiKey, "PMAK-62b5e803b61ba4168160adb5-9261ff2d3c425c8d99d19bdd0b6cc60d5d".into(), vec!["PMAK-32cbe54014c2b54b95523cf6".into()]),
        (Entity::ApiKey, "sbp_941fa1c257c6f561c5cb347611a3ce9d97dcbee5".into(), vec!["sbp_00fe7ee5fc324bdb2e1142a21c402364f9572b8".into()]),
        (Entity::ApiKey, "NRAK-KUR3JQ64NQ6PUXCMLZKRUYKQH7D".into(), vec!["NRAK-X297GQ8ZXQYXJXVF2OLD".into()]),
        (Entity::ApiKey, "https://discord.com/api/webhooks/484495003249668502/_DfcgaTMnTC0MrAU8urbFt5misIZHbhS4-FvafhdZxEuhnbzs0z1wNiMg9aW37k5wCnH".into(), vec!["https://discord.com/api/webhooks/123/abc".into()]),
        (Entity::CloudKey, "LTAIoPchv5V7S82qTdrOJRBR".into(), vec!["LTAIY6HqsP795nf4".into()]),
        (Entity::CloudKey, "AKIDGakq5p1Vm8kV6um4yvMpy62O6SQ1IEE1".into(), vec!["AKIDHSa2bB9UoK4tYnzNLeK6".into()]),
        (Entity::AccessToken, "glptt-5410335b400141212b62c376631129f34369aad8".into(), vec!["glptt-bwq7sdTWx6".into()]),
        (Entity::AccessToken, "ATBBuX9MGE2sNVbYAbBHXgwETdIKnT30fK0s".into(), vec!["ATBBgFSY0l9FLw91".into()]),
        (Entity::AccessToken, "HRKU-HuKBD-vok_nPTmZYl2dVAMH2vWD6qeSPt5Pv74GDqQ7EyIMttFPSuEPyHnvn".into(), vec!["HRKU-myjjYtUtBrmgO6grn4yDcaz2YBSoGO".into()]),
        (Entity::AccessToken, "hvs.sDbjqMVzaVp62BSKLVPA2oQUP44XPSL2oRlPhDBuqOSg5ApYzTTOkq2BEDbN2AHRQ73l5PuXay1F6gcqInkTY88mHwg2KDI".into(), vec!["hvs.nTEGbOY1xHvAV8DnRlzG".into()]),
        (Entity::AccessToken, "1950446600:AAeA6AOSRwLqgotVz89HoZ9zDnki7XeZZOm".into(), vec!["1234567890:BBEPJUo09jwQO10Y0ADsWJPiX1EwY2orTyR".into()]),
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
