//! Micro-benchmarks of each pipeline stage on a generated workload held in memory:
//! `cargo bench --bench stages`. The same stage functions drive `abacus bench`.

use std::sync::OnceLock;

use abacus::bench::{self, Workload};

const EVENTS: u64 = 50_000;

fn workload() -> &'static Workload {
    static W: OnceLock<(tempfile::TempDir, Workload)> = OnceLock::new();
    &W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let w = Workload::generate(dir.path(), EVENTS).expect("generate the workload");
        (dir, w)
    })
    .1
}

fn main() {
    divan::main();
}

#[divan::bench]
fn decompress(b: divan::Bencher) {
    let w = workload();
    b.counter(divan::counter::BytesCount::new(w.decoded.len()))
        .bench(|| bench::decompress(&w.compressed));
}

#[divan::bench]
fn line_split(b: divan::Bencher) {
    let w = workload();
    b.counter(divan::counter::BytesCount::new(w.decoded.len()))
        .bench(|| bench::split_lines(&w.decoded));
}

#[divan::bench]
fn parse_and_extract(b: divan::Bencher) {
    let w = workload();
    let (mut events, mut keys) = (Vec::new(), Vec::new());
    b.counter(divan::counter::ItemsCount::new(EVENTS))
        .bench_local(|| bench::parse_all(w, &mut events, &mut keys));
}

#[divan::bench]
fn route(b: divan::Bencher) {
    let w = workload();
    let (mut events, mut keys) = (Vec::new(), Vec::new());
    bench::parse_all(w, &mut events, &mut keys);
    let mut buckets = vec![Vec::new(); 16];
    b.counter(divan::counter::ItemsCount::new(events.len()))
        .bench_local(|| bench::route(&events, 16, &mut buckets));
}

#[divan::bench]
fn window_and_dedup_state(b: divan::Bencher) {
    let w = workload();
    let (mut events, mut keys) = (Vec::new(), Vec::new());
    bench::parse_all(w, &mut events, &mut keys);
    b.counter(divan::counter::ItemsCount::new(events.len()))
        .bench_local(|| bench::count_all(w, &events, &keys));
}

#[divan::bench(sample_count = 10)]
fn parquet_encode(b: divan::Bencher) {
    let dir = tempfile::tempdir().expect("temporary directory");
    b.counter(divan::counter::ItemsCount::new(100_000usize))
        .bench(|| bench::encode_parquet(dir.path(), 100_000).expect("encode"));
}
