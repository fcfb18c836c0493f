//! Shared helpers: the real model pack, and the seeded tiny model with its codec and texts
//! (the container tests).

#![allow(dead_code)]

use lmz::backend::cpu::CpuBackend;
use lmz::container::Codec;
use lmz::pack::Model;
use lmz::tiny::{tiny_model, Rng, TinyShape};
use std::sync::OnceLock;

/// The real model pack (fetched by the test command). Tests that need it fail loudly, with
/// the fix, when it is absent: CI always fetches it, so nothing is silently skipped.
pub fn real_model() -> Model {
    static PACK: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = PACK.get_or_init(|| {
        let path = lmz::fetch::default_pack_path(None);
        std::fs::read(&path).unwrap_or_else(|e| panic!("model pack {} not readable ({e}): run `cargo run --release -- model fetch` first (the test command does)", path.display()))
    });
    Model::from_pack_bytes(bytes).expect("model pack is valid")
}

/// The seeded tiny model (seed 5) and its codec, made once per test binary.
pub struct Tiny {
    pub model: Model,
    pub codec: Codec,
}

pub fn tiny() -> &'static Tiny {
    static T: OnceLock<Tiny> = OnceLock::new();
    T.get_or_init(|| {
        let model = tiny_model(5, TinyShape::default()).unwrap();
        let codec = Codec::new(&model).unwrap();
        Tiny { model, codec }
    })
}

/// A CPU engine on the tiny model, one slot of its whole context.
pub fn backend() -> CpuBackend {
    CpuBackend::new(&tiny().model, tiny().model.config().ctx).unwrap()
}

/// `n` bytes of text in the tiny vocabulary's words (which its merges tokenise), seeded.
pub fn words_text(n: usize, seed: u64) -> Vec<u8> {
    let words = [
        "the", "then", "theme", "in", "an", "anthem", "thin", "and", "there", "is", "a", "note",
    ];
    let mut r = Rng(seed);
    let mut s = String::new();
    while s.len() < n {
        s.push_str(words[r.below(words.len() as u64) as usize]);
        s.push(if r.below(9) == 0 { '\n' } else { ' ' });
    }
    s.truncate(n);
    s.into_bytes()
}
