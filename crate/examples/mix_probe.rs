//! Probes online models on top of the coder's tables (LM + adaptive bias), in floats, in one
//! model run (issue 9).
//!
//! `cargo run --release --example mix_probe -- FILE OUT.tsv [TOKENS]`
//!
//! Prints (stderr) the code length of the coder's tables and, for each setting, of a second,
//! decaying bias on top of them (recency: `q2 ∝ q·exp(b)`, `b ← decay·b + rate·(onehot − q2)`).
//! Writes one line per token for `scripts/research/ngram-offline.py --geometric`: the token, the
//! table's frequency of it, then `v:f_v` for every token v that followed the last k tokens
//! earlier in the text, for k = 1..=ORDERS (what a sparse n-gram model can boost).

mod common;

use lmz::backend::cpu::CpuBackend;
use lmz::eval::{score, Policy};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;

const ORDERS: usize = 4;
const RATES: [f64; 3] = [0.05, 0.1, 0.2];
const DECAYS: [f64; 3] = [0.98, 0.995, 0.999];

fn main() -> lmz::Result<()> {
    let common::Probe {
        model,
        cfg,
        fr,
        tokens,
        out: mut w,
    } = common::probe("mix_probe")?;
    let policy = Policy::default_for(&cfg);
    let mut b = CpuBackend::new(&model, policy.window)?;
    let toks = tokens.clone();
    let variants: Vec<(f64, f64)> = RATES
        .iter()
        .flat_map(|&r| DECAYS.iter().map(move |&d| (r, d)))
        .collect();
    let mut bias = vec![vec![0f64; cfg.vocab]; variants.len()];
    let mut vbits = vec![0f64; variants.len()];
    let mut bits = 0f64;
    let mut follow: Vec<HashMap<u64, BTreeSet<u32>>> = vec![HashMap::new(); ORDERS + 1];
    let mut e = vec![0f64; cfg.vocab];
    score(
        &mut b,
        &cfg,
        &fr,
        &tokens,
        &policy,
        &mut |i, q| {
            let t = toks[i] as usize;
            let z = (1u64 << 24) as f64;
            bits -= (q[t] as f64 / z).log2();
            for (j, &(rate, decay)) in variants.iter().enumerate() {
                let b = &mut bias[j];
                let mut s = 0.0;
                for v in 0..q.len() {
                    e[v] = q[v] as f64 * b[v].exp();
                    s += e[v];
                }
                vbits[j] -= (e[t] / s).log2();
                for v in 0..q.len() {
                    b[v] = decay * b[v] - rate * e[v] / s;
                }
                b[t] += rate;
            }
            // The tokens that followed the last k tokens before, k = 1..=ORDERS.
            let mut seen = BTreeSet::new();
            let mut h = 0u64;
            let mut hs = Vec::new();
            for k in 1..=ORDERS.min(i) {
                h = h
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(toks[i - k] as u64 + 1);
                hs.push((k, h));
                if let Some(f) = follow[k].get(&h) {
                    seen.extend(f.iter().copied());
                }
            }
            let mut line = format!("{t}\t{}", q[t]);
            for v in seen {
                line.push_str(&format!("\t{v}:{}", q[v as usize]));
            }
            line.push('\n');
            w.write_all(line.as_bytes()).map_err(|e| lmz::Error::io("dump", e))?;
            for (k, h) in hs {
                follow[k].entry(h).or_default().insert(t as u32);
            }
            Ok(())
        },
        &mut |d, n| eprint!("\r{d}/{n}"),
    )?;
    eprintln!();
    let n = tokens.len().max(1) as f64;
    eprintln!(
        "the coder's tables: {:.4} bits/token over {} tokens",
        bits / n,
        tokens.len()
    );
    for (j, (rate, decay)) in variants.iter().enumerate() {
        eprintln!(
            "decaying bias rate {rate} decay {decay}: {:.4} ({:+.2} %)",
            vbits[j] / n,
            100.0 * (vbits[j] / bits - 1.0)
        );
    }
    Ok(())
}
