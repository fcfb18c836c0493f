//! `lmz bench --many`: many small files (notes, records) decoded one at a time against all
//! in one call (`Codec::decompress_many`: lock-step, one forward pass per step for all of
//! them), as a Markdown table (part of `main.rs`, not of the library).
//!
//! Each FILE is one item, compressed alone to its compact `.lmz` (what `lmz -c` makes).
//! Every item is first decoded alone (timed one by one), then the first N items together for
//! each N of `--streams`: the speed-up is the sum of those N alone over the one call, and
//! every result is checked against the original. With `--repeat R` that round runs R times
//! and the table gives medians (one decode alone is memory-bound and a call of many is
//! compute-bound, so another job's load moves them differently: interleaving the two, and
//! the median of rounds, keeps a passing load from deciding the ratio).

use std::path::{Path, PathBuf};
use std::time::Instant;

use lmz::container::{Codec, Options};
use lmz::{Error, Result};

use crate::engine::{with_engine, BackendKind, Engine};

pub struct ManyArgs<'a> {
    pub model_flag: Option<&'a Path>,
    pub files: &'a [PathBuf],
    pub streams: &'a [usize],
    pub prefix: Option<u64>,
    pub kv_windows: usize,
    pub repeat: usize,
    pub backend: BackendKind,
}

pub fn run(a: ManyArgs, threads: Option<usize>) -> Result<()> {
    crate::engine::on_threads(threads, || run_on_pool(a))?
}

fn run_on_pool(a: ManyArgs) -> Result<()> {
    let model = lmz::fetch::load(&lmz::fetch::default_pack_path(a.model_flag))?;
    let codec = Codec::new(&model)?;
    let window = codec.default_policy().window;
    let mut engine = Engine::open(a.backend, &model, a.kv_windows, window)?;
    let macs = macs_per_token(codec.config());
    eprintln!(
        "lmz engine: {}; KV cache of {} positions ({} windows)",
        engine.describe(),
        a.kv_windows * window,
        a.kv_windows
    );
    let mut texts = Vec::new();
    for f in a.files {
        texts.push(std::fs::read(f).map_err(|e| Error::io(f, e))?);
    }
    let opts = Options::default();
    let mut files = Vec::new();
    let mut tokens = Vec::new();
    let s = Instant::now();
    for t in &texts {
        files.push(with_engine!(&mut engine, b => codec.compress(b, t, &opts, &mut |_, _| {}))?);
        tokens.push(codec.tokenizer().encode(t).len() as u64);
    }
    let compress_alone = s.elapsed().as_secs_f64();
    let refs: Vec<&[u8]> = texts.iter().map(|t| &t[..]).collect();
    let s = Instant::now();
    let together = with_engine!(&mut engine, b => codec.compress_many(b, &refs, &opts, &mut |_, _| {}))?;
    let compress_together = s.elapsed().as_secs_f64();
    for (r, f) in together.into_iter().zip(&files) {
        if r? != *f {
            return Err(Error::FormatCorrupt(
                "compress_many made other bytes than compress".into(),
            ));
        }
    }
    let all: u64 = tokens.iter().sum();
    eprintln!(
        "compress {} items, {all} tokens: one at a time {compress_alone:.1} s, in one call {compress_together:.1} s ({:.2}×, {:.1} tokens/s, {:.1} GMAC/s: the batched forward pass's rate, the bound for decoding)",
        texts.len(),
        compress_alone / compress_together,
        all as f64 / compress_together,
        all as f64 * macs / compress_together / 1e9
    );
    let mut ns: Vec<usize> = a.streams.iter().map(|&n| n.min(files.len())).collect();
    ns.dedup();
    // rounds[r][k]: (the first ns[k] items one at a time, the same in one call), seconds.
    let mut rounds: Vec<Vec<(f64, f64)>> = Vec::new();
    for _ in 0..a.repeat.max(1) {
        let mut alone = Vec::new();
        for (f, t) in files.iter().zip(&texts) {
            let s = Instant::now();
            let back = with_engine!(&mut engine, b => codec.decompress(b, f, &mut |_, _| {}))?;
            alone.push(s.elapsed().as_secs_f64());
            if back != *t {
                return Err(Error::FormatCorrupt("an item did not round-trip alone".into()));
            }
        }
        let mut round = Vec::new();
        for &n in &ns {
            let refs: Vec<&[u8]> = files[..n].iter().map(|f| &f[..]).collect();
            let s = Instant::now();
            let out = with_engine!(&mut engine, b => codec.decompress_many(b, &refs, &mut |_, _| {}))?;
            let t = s.elapsed().as_secs_f64();
            for (i, r) in out.into_iter().enumerate() {
                if r? != texts[i] {
                    return Err(Error::FormatCorrupt(format!("item {i} did not round-trip in one call")));
                }
            }
            round.push((alone[..n].iter().sum::<f64>(), t));
        }
        rounds.push(round);
    }
    println!(
        "| streams | bytes | tokens | .lmz bytes | one at a time | in one call | speed-up | range ({} rounds) | tokens/s | GMAC/s |",
        rounds.len()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (k, &n) in ns.iter().enumerate() {
        let one = median(rounds.iter().map(|r| r[k].0).collect());
        let t = median(rounds.iter().map(|r| r[k].1).collect());
        let ups: Vec<f64> = rounds.iter().map(|r| r[k].0 / r[k].1).collect();
        let (lo, hi) = ups.iter().fold((f64::MAX, 0f64), |(l, h), &u| (l.min(u), h.max(u)));
        let tok: u64 = tokens[..n].iter().sum();
        println!(
            "| {n} | {} | {tok} | {} | {one:.1} s | {t:.1} s | {:.2}× | {lo:.2}–{hi:.2}× | {:.1} | {:.1} |",
            texts[..n].iter().map(Vec::len).sum::<usize>(),
            files[..n].iter().map(Vec::len).sum::<usize>(),
            median(ups),
            tok as f64 / t,
            tok as f64 * macs / t / 1e9
        );
    }
    if let Some(p) = a.prefix {
        prefixes(&codec, &mut engine, &files, &texts, p)?;
    }
    println!();
    println!(
        "engine: {}; KV cache {} positions; {:.1} M multiply-adds per token; times are wall time, model load excluded",
        engine.describe(),
        a.kv_windows * window,
        macs / 1e6
    );
    Ok(())
}

/// Every item's first `p` bytes in one call (the raw streams inside the compact files).
fn prefixes(codec: &Codec, engine: &mut Engine, files: &[Vec<u8>], texts: &[Vec<u8>], p: u64) -> Result<()> {
    let mut raws = Vec::new();
    for f in files {
        raws.push(lmz::container::compact_to_raw(f)?);
    }
    let items: Vec<(&[u8], u64)> = raws.iter().map(|(r, n)| (&r[..], *n)).collect();
    let s = Instant::now();
    let out = with_engine!(engine, b => codec.decompress_raw_many(b, &items, Some(p), &mut |_, _| {}))?;
    let t = s.elapsed().as_secs_f64();
    let mut bytes = 0;
    for (r, text) in out.into_iter().zip(texts) {
        let r = r?;
        if !text.starts_with(&r) {
            return Err(Error::FormatCorrupt("a prefix is not the start of its text".into()));
        }
        bytes += r.len();
    }
    println!();
    println!(
        "first {p} bytes of each of the {} items in one call: {t:.1} s ({bytes} bytes decoded)",
        files.len()
    );
    Ok(())
}

/// Multiply-adds of one token's forward pass: the layers' matmuls and the output layer.
pub fn macs_per_token(c: &lmz::pack::Config) -> f64 {
    let kv = c.n_kv_heads * c.head_dim;
    let per_layer = c.dim * (c.dim + 2 * kv) + c.dim * c.dim + 3 * c.dim * c.hidden;
    (c.n_layers * per_layer + c.vocab * c.dim) as f64
}

/// The median (of an odd count; the mean of the middle two of an even one).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
