//! Fuzzes the decoder: any bytes given to `info`, `decompress` and `decompress_raw` must give
//! an error or bytes, never a panic, a hang or an allocation sized by a header field; the
//! same bytes cut into several items for `decompress_many` and `decompress_raw_many` (on a
//! cache of 128 positions shared by every item in flight, so the streams' regions grow, move
//! and wait) must give each item what it gets alone.
//! Inputs that once failed go to `../regressions/`, which `cargo test` replays
//! (crate/tests/container/hostile.rs, `regression_corpus_never_panics`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmz::backend::cpu::CpuBackend;
use lmz::container::{info, Codec};
use std::sync::OnceLock;

/// KV positions the many-item calls share (crate/tests/container/many.rs uses the same).
const SMALL_CACHE: usize = 128;

struct Tiny {
    model: lmz::Model,
    codec: Codec,
}

fn tiny() -> &'static Tiny {
    static T: OnceLock<Tiny> = OnceLock::new();
    T.get_or_init(|| {
        // The same seeded tiny model as the tests, so the corpus's valid files decode.
        let model = lmz::tiny::tiny_model(5, lmz::tiny::TinyShape::default()).expect("tiny model");
        let codec = Codec::new(&model).expect("codec");
        Tiny { model, codec }
    })
}

fuzz_target!(|data: &[u8]| {
    let t = tiny();
    let _ = info(data);
    let mut b = CpuBackend::new(&t.model, t.model.config().ctx).expect("backend");
    let _ = t.codec.decompress(&mut b, data, &mut |_, _| {});
    if let Some((&n, raw)) = data.split_first() {
        let _ = t.codec.decompress_raw(&mut b, raw, n as u64, &mut |_, _| {});
    }
    // Items: the data cut at every 0xF7 byte (a byte no tag is), each raw stream's length its
    // first byte.
    let parts: Vec<&[u8]> = data.split(|&x| x == 0xF7).collect();
    let raws: Vec<(&[u8], u64)> = parts
        .iter()
        .filter_map(|p| p.split_first().map(|(&n, r)| (r, n as u64)))
        .collect();
    // A cache of 128 positions (the tests' "far too small" cache): items of a few dozen bytes
    // already outgrow their regions, move, and wait or go back to the queue.
    let mut small = CpuBackend::with_slots(&t.model, 1, SMALL_CACHE.min(t.model.config().ctx)).expect("backend");
    let many = t.codec.decompress_raw_many(&mut small, &raws, None, &mut |_, _| {}).expect("no engine error");
    for (m, &(r, n)) in many.iter().zip(&raws) {
        let alone = t.codec.decompress_raw(&mut b, r, n, &mut |_, _| {});
        assert_eq!(m.as_ref().ok(), alone.as_ref().ok(), "a raw stream decodes alone as with the others");
    }
    let _ = t.codec.decompress_raw_many(&mut small, &raws, Some(3), &mut |_, _| {});
    let files = t.codec.decompress_many(&mut small, &parts, &mut |_, _| {}).expect("no engine error");
    for (m, f) in files.iter().zip(&parts) {
        let alone = t.codec.decompress(&mut b, f, &mut |_, _| {});
        assert_eq!(m.as_ref().ok(), alone.as_ref().ok(), "a file decodes alone as with the others");
    }
});
