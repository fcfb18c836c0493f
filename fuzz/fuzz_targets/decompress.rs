//! Fuzzes the decoder: any bytes given to `info`, `decompress` and `decompress_raw` must give
//! an error or bytes, never a panic, a hang or an allocation sized by a header field.
//! Inputs that once failed go to `../regressions/`, which `cargo test` replays
//! (crate/tests/container/hostile.rs, `regression_corpus_never_panics`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmz::backend::cpu::CpuBackend;
use lmz::container::{info, Codec};
use std::sync::OnceLock;

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
});
