//! The `.lmz` container on a seeded tiny model: round trips of every kind of input, the
//! compact forms' overhead, and hostile input (truncations, bit flips, wrong model, junk).
//!
//! One module per theme: [`round_trips`] (every kind of input; the context and online-model
//! policies; many windows and chunks), [`compact`] (the compact form and raw streams),
//! [`hostile`] (wrong model, truncations, bit flips, hostile headers, the fuzz regressions,
//! the decoding-work bound), [`api`] (cancelling, the async API) and [`segments`] (segment
//! cuts, streamed compression, chunk-by-chunk decoding). Here: the helpers they share.

use lmz::backend::cpu::CpuBackend;
use lmz::container::{ModelUse, Options};
use lmz::tiny::Rng;

#[path = "../common/mod.rs"]
mod common;
use common::{backend, tiny};

mod api;
mod compact;
mod hostile;
mod many;
mod round_trips;
mod segments;

fn text(n: usize) -> Vec<u8> {
    common::words_text(n, 3)
}

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..n).map(|_| r.below(256) as u8).collect()
}

fn compress(data: &[u8], opts: &Options) -> Vec<u8> {
    tiny()
        .codec
        .compress(&mut backend(), data, opts, &mut |_, _| {})
        .unwrap()
}

fn decompress(file: &[u8]) -> lmz::Result<Vec<u8>> {
    tiny().codec.decompress(&mut backend(), file, &mut |_, _| {})
}

/// Decompression with an engine of `slots` sequences (lock-step decoding of chunks).
fn decompress_slots(file: &[u8], slots: usize) -> lmz::Result<Vec<u8>> {
    let mut b = CpuBackend::with_slots(&tiny().model, slots, tiny().model.config().ctx).unwrap();
    tiny().codec.decompress(&mut b, file, &mut |_, _| {})
}

/// The tiny model is random: it predicts worse than storing, so `Always` picks stored or
/// zstd; `Force` keeps the model's output, which is what most tests exercise.
fn always() -> Options {
    Options {
        model: ModelUse::Always,
        ..Options::default()
    }
}

fn forced() -> Options {
    Options {
        model: ModelUse::Force,
        ..Options::default()
    }
}

fn multi(chunk_tokens: usize) -> Options {
    Options {
        model: ModelUse::Force,
        chunk_tokens,
        compact: false,
        ..Options::default()
    }
}
