//! Measures what restarting the context at a chunk boundary costs, to choose the chunk size.
//!
//! `cargo run --release --example chunk_cost -- FILE [WINDOWS] [LEN]`
//!
//! Runs WINDOWS (default 3) windows of LEN (default 2048) tokens of FILE, starting at evenly
//! spaced token offsets, each scored from an empty context exactly as the first window of a
//! chunk is, and averages the ideal code length per position. A chunk of C tokens then costs
//! `Σ_{j<C} b(j)` for C ≤ LEN, and the steady-state rate (the mean over positions LEN/2..LEN,
//! which is the context every later window of the policy gives) for each token after LEN.
//! Prints that estimate for a range of chunk sizes next to the work per token and the number
//! of chunks per MB (the parallelism).

use lmz::backend::cpu::CpuBackend;
use lmz::eval::{score, KvMode, Policy};
use lmz::model::Fracs;

fn main() -> lmz::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let file = args
        .get(1)
        .ok_or_else(|| lmz::Error::InvalidArgument("usage: chunk_cost FILE [WINDOWS] [LEN]".into()))?;
    let n_win: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let len: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2048);
    let text = std::fs::read(file).map_err(|e| lmz::Error::io(file, e))?;
    let model = lmz::fetch::load(&lmz::fetch::default_pack_path(None))?;
    let cfg = model.config().clone();
    let tok = lmz::tokenizer::Tokenizer::new(&model.tokenizer)?;
    let tokens = tok.encode(&text);
    let bytes_per_token = text.len() as f64 / tokens.len() as f64;
    let fr = Fracs::new(&model.weights);
    let policy = Policy {
        window: len,
        stride: len / 2,
        start: cfg.doc_start,
        kv: KvMode::Recompute,
        adapt: false,
        ngram: false,
        chat: false,
    };
    let mut backend = CpuBackend::new(&model, len)?;
    let mut b = vec![0f64; len];
    let t0 = std::time::Instant::now();
    for w in 0..n_win {
        let off = (tokens.len() - len) * w / n_win.max(2).saturating_sub(1).max(1);
        let off = off.min(tokens.len() - len);
        let part = &tokens[off..off + len];
        score(
            &mut backend,
            &cfg,
            &fr,
            part,
            &policy,
            &mut |i, f| {
                b[i] += lmz::freq::bits(f, part[i]) / n_win as f64;
                Ok(())
            },
            &mut |_, _| {},
        )?;
        eprintln!("window {} at token {off}: {:.0} s", w + 1, t0.elapsed().as_secs_f64());
    }
    let steady = b[len / 2..].iter().sum::<f64>() / (len - len / 2) as f64;
    println!(
        "file {file}: {} bytes, {} tokens, {bytes_per_token:.3} bytes/token; {n_win} windows of {len} tokens",
        text.len(),
        tokens.len()
    );
    println!("bits/token by position (mean of the windows):");
    for (lo, hi) in [
        (0, 1),
        (1, 2),
        (2, 4),
        (4, 8),
        (8, 16),
        (16, 32),
        (32, 64),
        (64, 128),
        (128, 256),
        (256, 512),
        (512, 1024),
        (1024, 2048),
    ] {
        if hi <= len {
            println!(
                "  {lo:>5}..{hi:<5} {:.3}",
                b[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
            );
        }
    }
    println!(
        "steady state (positions {}..{len}): {steady:.4} bits/token = {:.4} bpb",
        len / 2,
        steady / 8.0 / bytes_per_token * 8.0
    );
    let restart: f64 = b.iter().map(|x| x - steady).sum();
    println!("cost of one restart: {restart:.0} bits ({:.0} bytes)", restart / 8.0);
    println!("| chunk (tokens) | ≈ bytes | bpb | vs one chunk | positions run per token | chunks per MB |");
    println!("|---|---|---|---|---|---|");
    const ENTRY_BYTES: f64 = 6.0; // a chunk-table entry: method + two varint lengths
    for c in [256usize, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536] {
        let head: f64 = b[..c.min(len)].iter().sum();
        let bits = head + c.saturating_sub(len) as f64 * steady + ENTRY_BYTES * 8.0;
        let bpb = bits / (c as f64 * bytes_per_token);
        let ideal = steady / bytes_per_token;
        let positions = if c <= len {
            1.0
        } else {
            (len + (c - len).div_ceil(len / 2) * len) as f64 / c as f64
        };
        println!(
            "| {c} | {:.0} | {bpb:.4} | +{:.2} % | {positions:.2} | {:.1} |",
            c as f64 * bytes_per_token,
            100.0 * (bpb / ideal - 1.0),
            1e6 / (c as f64 * bytes_per_token)
        );
    }
    Ok(())
}
