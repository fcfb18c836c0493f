//! Dumps, per token, what the coder sees under the format's default (the LM plus the integer
//! adaptive bias of `adapt.rs`), to design the next online model offline (issue 9).
//!
//! `cargo run --release --example dump_adapted -- FILE OUT.tsv [TOKENS]`
//!
//! One line per token: its id, the adapted table's frequency of it (of 2^24), the table's
//! entropy in bits, its most likely token and that token's frequency. With these, any model
//! mixed linearly with the table (`(1−λ)·q + λ·p`) can be replayed exactly: the mixture's
//! probability of the coded token needs only the two models' probabilities of it.

mod common;

use lmz::backend::cpu::CpuBackend;
use lmz::eval::{score, Policy};
use std::io::Write;

fn main() -> lmz::Result<()> {
    let common::Probe {
        model,
        cfg,
        fr,
        tokens,
        out: mut w,
    } = common::probe("dump_adapted")?;
    let policy = Policy::default_for(&cfg);
    let mut b = CpuBackend::new(&model, policy.window)?;
    let toks = tokens.clone();
    assert!(
        policy.adapt,
        "the default policy adapts: `score` hands out the adapted tables"
    );
    let mut bits = 0f64;
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
            let h: f64 = q
                .iter()
                .map(|&x| x as f64 / z)
                .filter(|&p| p > 0.0)
                .map(|p| -p * p.log2())
                .sum();
            let (top, &qt) = q
                .iter()
                .enumerate()
                .max_by_key(|&(v, &x)| (x, std::cmp::Reverse(v)))
                .unwrap_or((0, &0));
            writeln!(w, "{t}\t{}\t{h:.4}\t{top}\t{qt}", q[t]).map_err(|e| lmz::Error::io("dump", e))?;
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
    Ok(())
}
