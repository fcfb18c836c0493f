//! Dumps what an online model on top of the LM would see, to design it offline (issue 9).
//!
//! `cargo run --release --example dump_tables -- FILE OUT.tsv [TOKENS]`
//!
//! Scores FILE's first TOKENS tokens (default all) under the default policy without the
//! adaptive bias (`Policy::shift_for`) and writes one
//! line per token: its id, the LM's frequency of it (of 2^24), for each temperature in
//! `TEMPS` the code length of the token under `freq^(1/T)` renormalised, then for every
//! match order k = 1..=MAX_ORDER the token that followed the most recent earlier occurrence
//! of the last k tokens (or -1) with the LM's frequency of that token, and the length of
//! the longest such match (capped at 255).
//!
//! At the end it prints (stderr) what two document-adaptive models would have saved, in
//! floats: an adaptive log-space bias (`q ∝ f·exp(b)`, `b += lr·(onehot − q)` after each
//! token, for each rate in `BIAS_LRS`) and a unigram cache mixed linearly with the LM
//! (`q = (1−λ)·p + λ·count/total` over the tokens so far, for each λ in `CACHE_MIX`).

mod common;

use lmz::backend::cpu::CpuBackend;
use lmz::eval::{score, Policy};
use std::collections::HashMap;
use std::io::Write;

const TEMPS: [f64; 7] = [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3];
const MAX_ORDER: usize = 12;
const BIAS_LRS: [f64; 5] = [0.001, 0.003, 0.01, 0.03, 0.1];
const CACHE_MIX: [f64; 4] = [0.005, 0.01, 0.02, 0.05];

fn main() -> lmz::Result<()> {
    let common::Probe {
        model,
        cfg,
        fr,
        tokens,
        out: mut w,
    } = common::probe("dump_tables")?;
    // The model's own tables (no adaptive bias): the models below are measured against them.
    let policy = Policy::shift_for(&cfg);
    let mut b = CpuBackend::new(&model, policy.window)?;
    // Most recent end position of each k-gram (hash of the k tokens ending at i, exclusive).
    let mut last: Vec<HashMap<u64, usize>> = vec![HashMap::new(); MAX_ORDER + 1];
    let toks = tokens.clone();
    let mut bias = vec![vec![0f64; cfg.vocab]; BIAS_LRS.len()];
    let mut bias_bits = [0f64; BIAS_LRS.len()];
    let mut cache_bits = [0f64; CACHE_MIX.len()];
    let mut lm_bits = 0f64;
    let mut counts = vec![0u32; cfg.vocab];
    let mut q = vec![0f64; cfg.vocab];
    score(
        &mut b,
        &cfg,
        &fr,
        &tokens,
        &policy,
        &mut |i, f| {
            let t = toks[i] as usize;
            let p_lm = f[t] as f64 / (1u64 << 24) as f64;
            lm_bits -= p_lm.log2();
            for (j, &lam) in CACHE_MIX.iter().enumerate() {
                let pc = if i == 0 { 0.0 } else { counts[t] as f64 / i as f64 };
                cache_bits[j] -= ((1.0 - lam) * p_lm + lam * pc).log2();
            }
            counts[t] += 1;
            for (j, &lr) in BIAS_LRS.iter().enumerate() {
                let b = &mut bias[j];
                let mut z = 0.0;
                for (v, qv) in q.iter_mut().enumerate() {
                    *qv = f[v] as f64 * b[v].exp();
                    z += *qv;
                }
                bias_bits[j] -= (q[t] / z).log2();
                for (v, bv) in b.iter_mut().enumerate() {
                    *bv -= lr * q[v] / z;
                }
                b[t] += lr;
            }
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
                h = h
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(toks[i - k] as u64 + 1);
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
                h = h
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(toks[i - k] as u64 + 1);
                last[k].insert(h, i);
            }
            Ok(())
        },
        &mut |d, n| eprint!("\r{d}/{n}"),
    )?;
    eprintln!();
    let n = tokens.len().max(1) as f64;
    eprintln!("LM alone: {:.4} bits/token over {} tokens", lm_bits / n, tokens.len());
    for (j, lr) in BIAS_LRS.iter().enumerate() {
        eprintln!(
            "adaptive bias, rate {lr}: {:.4} ({:+.2} %)",
            bias_bits[j] / n,
            100.0 * (bias_bits[j] / lm_bits - 1.0)
        );
    }
    for (j, lam) in CACHE_MIX.iter().enumerate() {
        eprintln!(
            "unigram cache, weight {lam}: {:.4} ({:+.2} %)",
            cache_bits[j] / n,
            100.0 * (cache_bits[j] / lm_bits - 1.0)
        );
    }
    Ok(())
}
