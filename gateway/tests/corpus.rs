//! The labelled corpus against the default redactor: precision and recall per entity, and how
//! many near misses and decoys are flagged. Prints the table and every miss; fails when an
//! entity is under 0.98 precision or recall, the whole corpus under 0.99, or more than 1 % of
//! the near misses and decoys are flagged.
//!
//! `cargo test -p moat --test corpus -- --nocapture`

use std::collections::{BTreeMap, HashMap};

use moat::redact::detect::Found;
use moat::redact::{Detectors, Entity, Operator, Redactor};
use moat_corpus::{entity, generate, Kind, Sample, Span};

const SEED: u64 = 0x6d6f_6174;
const MIN_ENTITY: f64 = 0.98;
const MIN_OVERALL: f64 = 0.99;
const MAX_FLAGGED: f64 = 0.01;
/// How far past a label a match may reach on either side and still count.
const SLACK: usize = 2;

/// Whether `f` finds the label: same entity, covers it, at most [`SLACK`] bytes wider per side.
fn hits(f: &Found, l: &Span) -> bool {
    f.entity.name() == l.entity
        && f.start <= l.start
        && f.end >= l.end
        && l.start - f.start <= SLACK
        && f.end - l.end <= SLACK
}

#[derive(Default)]
struct Score {
    labels: usize,
    found: usize,
    tp: usize,
    matched: usize,
}

impl Score {
    fn precision(&self) -> f64 {
        if self.found == 0 {
            1.0
        } else {
            self.tp as f64 / self.found as f64
        }
    }

    fn recall(&self) -> f64 {
        if self.labels == 0 {
            1.0
        } else {
            self.matched as f64 / self.labels as f64
        }
    }
}

/// A one-line excerpt of `text` around `start..end`, the value in brackets.
fn snippet(text: &str, start: usize, end: usize) -> String {
    let mut from = start.saturating_sub(40);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (end + 40).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    let value = &text[start..end];
    let value = if value.len() > 90 {
        let mut cut = 60;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…({} bytes)", &value[..cut], value.len())
    } else {
        value.to_string()
    };
    format!("{}[{}]{}", &text[from..start], value, &text[end..to]).replace('\n', "⏎")
}

#[test]
fn corpus_precision_and_recall_per_entity() {
    let redactor = Redactor::new(
        Detectors::new(&Entity::ALL, &[], &[]).expect("detectors"),
        HashMap::new(),
        Operator::Replace { numbered: false },
    );
    let corpus: Vec<Sample> = generate(SEED);
    let mut scores: BTreeMap<&str, Score> =
        entity::ALL.iter().map(|e| (*e, Score::default())).collect();
    let (mut negatives, mut flagged) = (0usize, 0usize);
    // The misses by kind and family.
    let mut misses: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for s in &corpus {
        let found = redactor.find(&s.text);
        if s.kind != Kind::Positive {
            negatives += 1;
            flagged += usize::from(!found.is_empty());
        }
        for l in &s.spans {
            let score = scores.entry(l.entity).or_default();
            score.labels += 1;
            if found.iter().any(|f| hits(f, l)) {
                score.matched += 1;
            } else {
                misses
                    .entry(("false negative", s.family))
                    .or_default()
                    .push(format!("{} {}", l.entity, snippet(&s.text, l.start, l.end)));
            }
        }
        for f in &found {
            let score = scores.entry(f.entity.name()).or_default();
            score.found += 1;
            if s.spans.iter().any(|l| hits(f, l)) {
                score.tp += 1;
            } else {
                let kind = match s.kind {
                    Kind::Positive => "false positive",
                    Kind::NearMiss => "flagged near miss",
                    Kind::Decoy => "flagged decoy",
                };
                misses.entry((kind, s.family)).or_default().push(format!(
                    "{} ({}/{}) {}",
                    f.entity.name(),
                    f.detector,
                    f.validation,
                    snippet(&s.text, f.start, f.end)
                ));
            }
        }
    }

    println!("labelled corpus, seed {SEED:#x}: {} samples", corpus.len());
    println!(
        "{:<18} {:>6} {:>6} {:>6} {:>9} {:>7}",
        "entity", "labels", "found", "TP", "precision", "recall"
    );
    let mut all = Score::default();
    let mut failures = Vec::new();
    for (e, sc) in &scores {
        println!(
            "{e:<18} {:>6} {:>6} {:>6} {:>9.3} {:>7.3}",
            sc.labels,
            sc.found,
            sc.tp,
            sc.precision(),
            sc.recall()
        );
        if sc.precision() < MIN_ENTITY || sc.recall() < MIN_ENTITY {
            failures.push(format!(
                "{e}: precision {:.3}, recall {:.3}",
                sc.precision(),
                sc.recall()
            ));
        }
        all.labels += sc.labels;
        all.found += sc.found;
        all.tp += sc.tp;
        all.matched += sc.matched;
    }
    println!(
        "{:<18} {:>6} {:>6} {:>6} {:>9.3} {:>7.3}",
        "overall",
        all.labels,
        all.found,
        all.tp,
        all.precision(),
        all.recall()
    );
    let flagged_share = flagged as f64 / negatives.max(1) as f64;
    println!(
        "near misses and decoys flagged: {flagged} of {negatives} ({:.2} %)",
        flagged_share * 100.0
    );
    for ((kind, family), lines) in &misses {
        println!("\n{kind}, family {family} ({}):", lines.len());
        for line in lines {
            println!("  {line}");
        }
    }
    if all.precision() < MIN_OVERALL || all.recall() < MIN_OVERALL {
        failures.push(format!(
            "overall: precision {:.3}, recall {:.3}",
            all.precision(),
            all.recall()
        ));
    }
    if flagged_share > MAX_FLAGGED {
        failures.push(format!(
            "{flagged} of {negatives} near misses and decoys flagged"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
