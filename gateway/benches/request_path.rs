//! Costs on the request path that must stay linear in the input, however it is cut:
//!
//! - canonical-path checking of paths with 250 to 4,000 segments (up to 16 KiB);
//! - the model look-ahead over a JSON body whose `model` comes last, read whole and read one byte
//!   per push (a client dripping its body), 16 KiB to 1 MiB.
//!
//! `cargo bench -p moat --bench request_path` — throughput per size shows the scaling: equal
//! bytes per second at every size (and for dripped and whole reads) means linear cost.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use moat::lookahead::{Model, ModelScan};
use moat::policy::canonical_path;

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("canonical_path");
    g.measurement_time(Duration::from_secs(2));
    for segments in [250usize, 1000, 4000] {
        // "/abc" per segment: 4 bytes each, 16 KiB at 4,000 segments.
        let path = "/abc".repeat(segments);
        g.throughput(Throughput::Bytes(path.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(segments), &path, |b, p| {
            b.iter(|| canonical_path(black_box(p)).is_ok());
        });
    }
    g.finish();
}

/// A JSON body of about `size` bytes whose `model` member comes last.
fn body(size: usize) -> Vec<u8> {
    let filler = "x".repeat(size.saturating_sub(40));
    format!(r#"{{"prompt":"{filler}","model":"gpt-x"}}"#).into_bytes()
}

fn model(c: &mut Criterion) {
    let mut g = c.benchmark_group("model_lookahead");
    g.measurement_time(Duration::from_secs(3)).sample_size(20);
    for size in [16 * 1024, 256 * 1024, 1024 * 1024] {
        let b = body(size);
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_with_input(BenchmarkId::new("whole", size), &b, |bench, b| {
            bench.iter(|| {
                let mut scan = ModelScan::new();
                assert!(matches!(scan.push(black_box(b)), Model::Found(_)));
            });
        });
        g.bench_with_input(
            BenchmarkId::new("one_byte_per_read", size),
            &b,
            |bench, b| {
                bench.iter(|| {
                    let mut scan = ModelScan::new();
                    for byte in b.chunks(1) {
                        scan.push(black_box(byte));
                    }
                    assert!(matches!(scan.result(), Model::Found(_)));
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, paths, model);
criterion_main!(benches);
