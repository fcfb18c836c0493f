//! Shared helpers: the real model pack, and the seeded tiny model with its codec and texts
//! (the container tests).

#![allow(dead_code)]

use lmz::backend::cpu::CpuBackend;
use lmz::container::Codec;
use lmz::pack::Model;
use lmz::tiny::{tiny_model, Rng, TinyShape};
use std::sync::OnceLock;

/// The real model pack (fetched by the test command), or `None` when it is missing outside
/// CI: the test then says why it skips and returns. In CI (`CI` set, as `.ci/run` runs) a
/// missing pack fails the test with the fix: CI fetches it, so nothing skips there.
pub fn real_model() -> Option<Model> {
    static PACK: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    let bytes = PACK.get_or_init(|| {
        let path = lmz::fetch::default_pack_path(None);
        std::fs::read(&path).map_err(|e| {
            format!(
                "model pack {} not readable ({e}): run `lmz model fetch` first (`bash scripts/test.sh rust` does)",
                path.display()
            )
        })
    });
    match bytes {
        Ok(b) => Some(Model::from_pack_bytes(b).expect("model pack is valid")),
        Err(why) => skip_outside_ci(why),
    }
}

pub use lmz::tiny::skip_outside_ci;

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
