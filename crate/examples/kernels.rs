//! Times the CPU engine's matmul and attention kernels on one thread (shapes of
//! SmolLM2-135M), once per implementation this machine runs ([`Isa::available`]: portable,
//! AVX2), so a kernel change can be judged on a noisy shared machine: the implementations
//! are timed back to back in one run, best of 5. The wasm32 twin of this (SIMD128 and
//! portable, in Node) is the ignored test `backend::cpu::simd::tests::bench_kernels`
//! (`scripts/wasm-bench.sh`).
//! `cargo run --release --example kernels`
use lmz::backend::cpu::{attention_head_with, matmul_q4_with, matmul_q8_with, quantize, CpuQ4, CpuQ8, Isa, KvCache};
use lmz::pack::{Config, Q4Matrix, Q8Matrix};
use lmz::tiny::Rng;
use std::time::Instant;

fn best<F: FnMut()>(n: usize, mut f: F) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
    let mut r = Rng(1);
    let (rows, cols) = (1536, 576);
    let nb = cols / 32;
    let w = Q4Matrix { rows, cols, nib: (0..rows * cols / 2).map(|_| r.below(256) as u8).collect(), d: (0..rows * nb).map(|_| r.below(8000) as i16 - 4000).collect(), m: (0..rows * nb).map(|_| r.below(8000) as i16 - 4000).collect(), e: vec![20; rows] };
    let w8 = Q8Matrix { rows: 8192, cols, q: (0..8192 * cols).map(|_| r.next_u64() as i8).collect(), d: (0..8192 * nb).map(|_| r.below(4000) as i16 - 2000).collect(), e: vec![20; 8192] };
    let (w, w8) = (CpuQ4::new(&w), CpuQ8::new(&w8));
    println!("matmul GMAC/s, 1 thread, best of 5 (Q4 {rows}x{cols}, Q8 8192x{cols})");
    for tokens in [1, 2, 4, 256] {
        let z: Vec<i32> = (0..tokens * cols).map(|_| (r.next_u64() as i32) >> 12).collect();
        let x = quantize(&z, cols, 10);
        let reps = (256 / tokens).max(1);
        let macs = (reps * tokens * cols) as f64;
        for isa in Isa::available() {
            let s4 = pool.install(|| best(5, || (0..reps).for_each(|_| drop(std::hint::black_box(matmul_q4_with(isa, &w, &x, 10))))));
            let s8 = pool.install(|| best(5, || (0..reps).for_each(|_| drop(std::hint::black_box(matmul_q8_with(isa, &w8, &x, 10))))));
            println!("tokens {tokens:4} {:>9}: q4 {:6.2}  q8 {:6.2}", format!("{isa:?}"), macs * rows as f64 / s4 / 1e9, macs * 8192.0 / s8 / 1e9);
        }
    }
    // One query row (9 heads) over n cached positions of one layer: 2·9·64·n MACs.
    let cfg = Config { name: String::new(), n_layers: 1, dim: 576, hidden: 1536, n_heads: 9, n_kv_heads: 3, head_dim: 64, vocab: 2, ctx: 8192, rope_base: 1e5, bos: 0, eos: 0, doc_start: 0, norm_eps_q24: 0 };
    let exp = lmz::tables::exp2_table(8, 15);
    let n = 1024;
    let cache = KvCache { k: (0..n * 192).map(|_| (r.below(1023) as i32 - 511) as i16).collect(), k_exp: (0..n * 3).map(|_| r.below(8) as i32).collect(), v: (0..n * 192).map(|_| (r.next_u64() as i16) >> 4).collect() };
    let q: Vec<i32> = (0..576).map(|_| (r.next_u64() as i32) >> 16).collect();
    println!("attention, one row of 9 heads over {n} positions, 1 thread, best of 5");
    for isa in Isa::available() {
        let (mut out, mut sc, mut pr) = (vec![0; 64], Vec::new(), Vec::new());
        let s = best(5, || {
            for _ in 0..16 {
                for h in 0..9 {
                    attention_head_with(isa, &q[h * 64..(h + 1) * 64], h, &cache, 0, n - 1, &cfg, &exp, &mut out, &mut sc, &mut pr);
                }
            }
        });
        println!("{:>9}: {:6.2} GMAC/s ({:.1} µs per row)", format!("{isa:?}"), (16 * 2 * 9 * 64 * n) as f64 / s / 1e9, s / 16.0 * 1e6);
    }
}
