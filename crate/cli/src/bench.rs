//! `lmz bench`: lmz against gzip -9, xz -9, zstd -19 and brotli -11 (their Rust crates), side
//! by side in one run, as a Markdown table (part of `main.rs`, not of the library).
//!
//! Every round trip is checked byte for byte; speeds are input bytes per second of wall
//! time. Machines are shared and noisy: compare ratios of times within one run. `--speed`
//! reports lmz alone in tokens/s, the unit of llama.cpp's prompt evaluation; `--ablation`
//! what each part of lmz contributes to the ratio.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use lmz::{Error, Result};

type Codec = (
    &'static str,
    fn(&[u8]) -> std::io::Result<Vec<u8>>,
    fn(&[u8]) -> std::io::Result<Vec<u8>>,
);

fn gzip_c(d: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    e.write_all(d)?;
    e.finish()
}
fn gzip_d(d: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut o = Vec::new();
    flate2::read::GzDecoder::new(d).read_to_end(&mut o)?;
    Ok(o)
}
fn xz_c(d: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 9);
    e.write_all(d)?;
    e.finish()
}
fn xz_d(d: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut o = Vec::new();
    liblzma::read::XzDecoder::new(d).read_to_end(&mut o)?;
    Ok(o)
}
fn zstd_c(d: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(d, 19)
}
fn zstd_d(d: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::stream::decode_all(d)
}
fn brotli_c(d: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut o = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut o, 1 << 16, 11, 24);
        w.write_all(d)?;
    }
    Ok(o)
}
fn brotli_d(d: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut o = Vec::new();
    brotli::Decompressor::new(d, 1 << 16).read_to_end(&mut o)?;
    Ok(o)
}

const CLASSIC: [Codec; 4] = [
    ("gzip -9", gzip_c, gzip_d),
    ("xz -9", xz_c, xz_d),
    ("zstd -19", zstd_c, zstd_d),
    ("brotli -11", brotli_c, brotli_d),
];

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let r = f()?;
    Ok((r, t.elapsed().as_secs_f64().max(1e-9)))
}

/// What `lmz bench` measures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// lmz and the classic compressors: size, bpb, bytes/s.
    All,
    /// The classic compressors only.
    Classic,
    /// lmz only, in tokens/s (`--speed`).
    Speed,
    /// lmz's parts, one row each (`--ablation`).
    Ablation,
}

pub fn run(
    model_flag: Option<&Path>,
    files: &[PathBuf],
    mode: Mode,
    threads: Option<usize>,
    backend: crate::engine::BackendKind,
) -> Result<()> {
    crate::engine::on_threads(threads, || run_on_pool(model_flag, files, mode, backend))?
}

fn run_on_pool(
    model_flag: Option<&Path>,
    files: &[PathBuf],
    mode: Mode,
    backend: crate::engine::BackendKind,
) -> Result<()> {
    let with_lmz = mode != Mode::Classic;
    let model = if with_lmz {
        Some(lmz::fetch::load(&lmz::fetch::default_pack_path(model_flag))?)
    } else {
        None
    };
    let engine = if let Some(model) = &model {
        let codec = lmz::container::Codec::new(model)?;
        // Four sequence slots: the chunks of a file decode in lock-step, as with `lmz -d`.
        let backend = crate::engine::Engine::open(backend, model, 4, codec.default_policy().window)?;
        eprintln!("lmz engine: {}", backend.describe());
        Some((codec, backend))
    } else {
        None
    };
    let mut engine = engine;
    if mode == Mode::Speed {
        println!("| file | bytes | tokens | engine | bpb | compress tok/s | compress B/s | decompress tok/s | decompress B/s |");
        println!("|---|---|---|---|---|---|---|---|---|");
    } else if mode == Mode::Ablation {
        println!("| file | bytes | tokens | lmz | bpb | vs the row above |");
        println!("|---|---|---|---|---|---|");
    } else {
        println!("| file | bytes | compressor | size | bpb | compress B/s | decompress B/s |");
        println!("|---|---|---|---|---|---|---|");
    }
    for f in files {
        let data = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        let name = f
            .file_name()
            .map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into_owned());
        let row = |what: &str, size: usize, tc: f64, td: f64| {
            let bpb = if data.is_empty() {
                0.0
            } else {
                8.0 * size as f64 / data.len() as f64
            };
            println!(
                "| {name} | {} | {what} | {size} | {bpb:.3} | {:.0} | {:.0} |",
                data.len(),
                data.len() as f64 / tc,
                data.len() as f64 / td
            );
        };
        if let (Some((codec, backend)), Some(model), Mode::Ablation) = (engine.as_mut(), &model, mode) {
            ablation(model, &name, &data, codec, backend)?;
            continue;
        }
        if let Some((codec, backend)) = engine.as_mut() {
            let opts = lmz::container::Options::default();
            let label = format!("lmz ({})", backend.name());
            let (z, tc) = timed(
                || crate::engine::with_engine!(&mut *backend, b => codec.compress(b, &data, &opts, &mut |_, _| {})),
            )?;
            let (back, td) =
                timed(|| crate::engine::with_engine!(&mut *backend, b => codec.decompress(b, &z, &mut |_, _| {})))?;
            if back != data {
                return Err(Error::FormatCorrupt(format!("{name}: lmz did not round-trip")));
            }
            if mode == Mode::Speed {
                let n = codec.tokenizer().encode(&data).len() as f64;
                let bpb = if data.is_empty() {
                    0.0
                } else {
                    8.0 * z.len() as f64 / data.len() as f64
                };
                let b = data.len() as f64;
                println!(
                    "| {name} | {} | {n} | {} | {bpb:.4} | {:.1} | {:.0} | {:.1} | {:.0} |",
                    data.len(),
                    backend.describe(),
                    n / tc,
                    b / tc,
                    n / td,
                    b / td
                );
                continue;
            }
            row(&label, z.len(), tc, td);
        }
        for (what, c, d) in CLASSIC {
            let io = |e: std::io::Error| Error::io(f, e);
            let (z, tc) = timed(|| c(&data).map_err(io))?;
            let (back, td) = timed(|| d(&z).map_err(io))?;
            if back != data {
                return Err(Error::FormatCorrupt(format!("{name}: {what} did not round-trip")));
            }
            row(what, z.len(), tc, td);
        }
    }
    println!();
    match mode {
        Mode::Ablation => println!("threads: {}; bpb of the first three rows: ideal code length of the whole text as one sequence (windows of {}, the context kept in the KV cache); the last: the .lmz file's size", rayon::current_num_threads(), lmz::eval::SHIFT_WINDOW),
        Mode::Speed => println!("threads: {}; tokens (of the model's tokenizer) and input bytes per second of wall time, model load excluded", rayon::current_num_threads()),
        _ => println!("threads: {}; speeds are input bytes per second of wall time", rayon::current_num_threads()),
    }
    Ok(())
}

/// One file's ablation rows: the model's tables alone, with the format's adaptive bias, with
/// the n-gram mixer after it (all three from one model run over the whole text), then the
/// real file (chunks, container), checked by a round trip.
fn ablation(
    model: &lmz::pack::Model,
    name: &str,
    data: &[u8],
    codec: &lmz::container::Codec,
    backend: &mut crate::engine::Engine,
) -> Result<()> {
    use lmz::eval::{score, Policy};
    let cfg = model.config().clone();
    let fr = lmz::model::Fracs::new(&model.weights);
    let tokens = codec.tokenizer().encode(data);
    let policy = Policy::shift_for(&cfg);
    let stack = |adapt, ngram| {
        lmz::adapt::Online::new(cfg.vocab, adapt, ngram)
            .ok_or_else(|| Error::InvalidArgument("internal: no online model".into()))
    };
    let (mut biased_only, mut mixed_too) = (stack(true, false)?, stack(true, true)?);
    let (mut lm, mut biased, mut mixed) = (0f64, 0f64, 0f64);
    let bar = crate::eval::progress_bar(tokens.len() as u64, "scoring");
    crate::engine::with_engine!(&mut *backend, b => score(b, &cfg, &fr, &tokens, &policy, &mut |i, f| {
        lm += lmz::freq::bits(f, tokens[i]);
        let t = tokens[i];
        biased_only.step(f, |q| {
            biased += lmz::freq::bits(q, t);
            Ok(t)
        })?;
        mixed_too.step(f, |r| {
            mixed += lmz::freq::bits(r, t);
            Ok(t)
        })?;
        Ok(())
    }, &mut |done, _| bar.set_position(done as u64)))?;
    bar.finish_and_clear();
    let z = crate::engine::with_engine!(&mut *backend, b => codec.compress(b, data, &lmz::container::Options::default(), &mut |_, _| {}))?;
    let back = crate::engine::with_engine!(&mut *backend, b => codec.decompress(b, &z, &mut |_, _| {}))?;
    if back != data {
        return Err(Error::FormatCorrupt(format!("{name}: lmz did not round-trip")));
    }
    let bpb = |bits: f64| if data.is_empty() { 0.0 } else { bits / data.len() as f64 };
    let stored = 8.0 * z.len() as f64;
    let mut prev: Option<f64> = None;
    for (what, bits) in [
        ("the LM alone (ideal)", lm),
        ("+ adaptive bias (ideal)", biased),
        ("+ n-gram mixer (ideal)", mixed),
        ("the .lmz file (chunks, container)", stored),
    ] {
        let delta = match prev {
            Some(p) if p > 0.0 => format!("{:+.2} %", 100.0 * (bits / p - 1.0)),
            _ => "—".into(),
        };
        println!(
            "| {name} | {} | {} | {what} | {:.4} | {delta} |",
            data.len(),
            tokens.len(),
            bpb(bits)
        );
        prev = Some(bits);
    }
    Ok(())
}
