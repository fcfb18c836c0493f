//! What the online models (adaptive bias + n-gram mixer, `adapt::Online`) cost the host per
//! token, on tables of the real vocabulary: the part of coding that stays on the CPU whichever
//! engine runs the model (BENCHMARKS.md, the H100 goal). `cargo run --release --example
//! online_cost`.

use std::time::Instant;
fn main() -> lmz::Result<()> {
    let v = 49152;
    let mut r = lmz::tiny::Rng(3);
    // Tables summing to 2^24 with one symbol holding most of the mass, like the LM's; tokens
    // drawn at random, so the n-gram contexts rarely repeat (real text, whose contexts do,
    // costs the mixer more).
    let mut tables = Vec::new();
    for _ in 0..16 {
        let mut f: Vec<u32> = (0..v).map(|_| 1 + r.below(100) as u32).collect();
        let s: u32 = f.iter().sum();
        let top = r.below(v as u64) as usize;
        f[top] += (1 << 24) - s;
        tables.push(f);
    }
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| -> lmz::Result<()> {
            let mut on = lmz::adapt::Online::new(v, true, true).unwrap();
            let n = 2000;
            let t = Instant::now();
            for i in 0..n {
                let tok = r.below(v as u64) as u32;
                on.step(&tables[i % 16], |_| Ok(tok))?;
            }
            println!(
                "{threads} threads: {:.1} µs per token (bias + n-gram)",
                t.elapsed().as_secs_f64() / n as f64 * 1e6
            );
            Ok(())
        })?;
    }
    Ok(())
}
