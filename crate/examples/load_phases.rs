//! Where loading the model goes: reading the pack, its SHA-256, parsing it, the codec, and
//! building the CPU engine (its weight layout: from a borrowed model, then from the model
//! itself, as the browser does) — natively, each phase timed.
//!
//! `cargo run --release --example load_phases [PACK]`

use std::time::Instant;

use lmz::backend::cpu::CpuBackend;
use lmz::container::Codec;
use lmz::pack::Model;

fn main() -> lmz::Result<()> {
    let path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| lmz::fetch::default_pack_path(None));
    let t = Instant::now();
    let bytes = std::fs::read(&path).map_err(|e| lmz::Error::io(&path, e))?;
    let read = t.elapsed();
    let t = Instant::now();
    let fp = lmz::pack::sha256(&bytes);
    let hash = t.elapsed();
    let t = Instant::now();
    let model = Model::from_pack_bytes(&bytes)?;
    let parse = t.elapsed();
    assert_eq!(fp, model.fingerprint);
    let t = Instant::now();
    let codec = Codec::new(&model)?;
    let codec_t = t.elapsed();
    let window = codec.default_policy().window;
    let t = Instant::now();
    let b = CpuBackend::new(&model, window)?;
    let engine = t.elapsed();
    drop(b);
    // The browser's way: the layout made in the model's own memory.
    let t = Instant::now();
    let b = CpuBackend::from_model(model, 1, window)?;
    let consumed = t.elapsed();
    drop(b);
    println!(
        "{} bytes: read {read:.2?}, SHA-256 {hash:.2?}, parse (SHA-256 included) {parse:.2?}, codec (tokenizer) {codec_t:.2?}, CPU engine (weight layout, KV cache) {engine:.2?}, from the model itself (CpuBackend::from_model) {consumed:.2?}",
        bytes.len()
    );
    Ok(())
}
