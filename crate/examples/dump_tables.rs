//! Dumps what an online model on top of the LM would see, to design it offline (issue 9).
//!
//! `cargo run --release --example dump_tables -- FILE OUT.tsv [TOKENS]`
//!
//! Scores FILE's first TOKENS tokens (default all) under the default policy and writes one
//! line per token: its id, the LM's frequency of it (of 2^24), for each temperature in
//! `TEMPS` the code length of the token under `freq^(1/T)` renormalised, then for every
//! match order k = 1..=MAX_ORDER the token that followed the most recent earlier occurrence
//! of the last k tokens (or -1) with the LM's frequency of that token, and the length of
//! the longest such match (capped at 255).

use lmz::backend::cpu::CpuBackend;
use lmz::eval::{score, Policy};
use lmz::model::Fracs;
use std::collections::HashMap;
use std::io::Write;

const TEMPS: [f64; 7] = [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3];
const MAX_ORDER: usize = 12;

fn main() -> lmz::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (file, out) = match (args.get(1), args.get(2)) {
        (Some(f), Some(o)) => (f, o),
        _ => return Err(lmz::Error::InvalidArgument("usage: dump_tables FILE OUT.tsv [TOKENS]".into())),
    };
    let text = std::fs::read(file).map_err(|e| lmz::Error::io(file, e))?;
    let model = lmz::fetch::load(&lmz::fetch::default_pack_path(None))?;
    let cfg = model.config().clone();
    let tok = lmz::tokenizer::Tokenizer::new(&model.tokenizer)?;
    let mut tokens = tok.encode(&text);
    if let Some(n) = args.get(3).and_then(|s| s.parse().ok()) {
        tokens.truncate(n);
    }
    let fr = Fracs::new(&model.weights);
    let policy = Policy::default_for(&cfg);
    let mut b = CpuBackend::new(&model, policy.window)?;
    // Most recent end position of each k-gram (hash of the k tokens ending at i, exclusive).
    let mut last: Vec<HashMap<u64, usize>> = vec![HashMap::new(); MAX_ORDER + 1];
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).map_err(|e| lmz::Error::io(out, e))?);
    let toks = tokens.clone();
    score(&mut b, &cfg, &fr, &tokens, &policy, &mut |i, f| {
        let t = toks[i] as usize;
        let mut line = format!("{t}\t{}", f[t]);
        for &temp in &TEMPS {
            let e = 1.0 / temp;
            let z: f64 = f.iter().map(|&x| (x as f64).powf(e)).sum();
            line.push_str(&format!("\t{:.5}", -((f[t] as f64).powf(e) / z).log2()));
        }
        let mut longest = 0usize;
        let mut h = 0u64;
        for k in 1..=MAX_ORDER {
            if k > i {
                line.push_str("\t-1\t0");
                continue;
            }
            h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(toks[i - k] as u64 + 1);
            match last[k].get(&h) {
                Some(&p) => {
                    let c = toks[p] as usize;
                    line.push_str(&format!("\t{c}\t{}", f[c]));
                    // Verify and extend the match backwards.
                    let mut m = 0;
                    while m < 255 && m < p && toks[p - 1 - m] == toks[i - 1 - m] {
                        m += 1;
                    }
                    longest = longest.max(m);
                }
                None => line.push_str("\t-1\t0"),
            }
        }
        line.push_str(&format!("\t{longest}\n"));
        w.write_all(line.as_bytes()).map_err(|e| lmz::Error::io("dump", e))?;
        // Register the k-grams ending at i (so position i is "what followed" them).
        let mut h = 0u64;
        for k in 1..=MAX_ORDER.min(i) {
            h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(toks[i - k] as u64 + 1);
            last[k].insert(h, i);
        }
        Ok(())
    }, &mut |d, n| eprint!("\r{d}/{n}"))?;
    eprintln!();
    Ok(())
}
