//! Times the CPU matmul and attention kernels on one thread (shapes of SmolLM2-135M), so a
//! kernel change can be judged on a noisy shared machine: run it twice, compare best-of-N.
//! `cargo run --release --example kernels`
use lmz::backend::cpu::{matmul_q4, matmul_q8, quantize, CpuQ4, CpuQ8};
use lmz::pack::{Q4Matrix, Q8Matrix};
use lmz::tiny::Rng;
use std::time::Instant;

fn best<F: FnMut()>(n: usize, mut f: F) -> f64 {
    (0..n).map(|_| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    }).fold(f64::INFINITY, f64::min)
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut r = Rng(1);
    let (rows, cols) = (1536, 576);
    let nb = cols / 32;
    let w = Q4Matrix { rows, cols, nib: (0..rows * cols / 2).map(|_| r.below(256) as u8).collect(), d: (0..rows * nb).map(|_| r.below(8000) as i16 - 4000).collect(), m: (0..rows * nb).map(|_| r.below(8000) as i16 - 4000).collect(), e: vec![20; rows] };
    let w8 = Q8Matrix { rows: 8192, cols, q: (0..8192 * cols).map(|_| r.next_u64() as i8).collect(), d: (0..8192 * nb).map(|_| r.below(4000) as i16 - 2000).collect(), e: vec![20; 8192] };
    let (w, w8) = (CpuQ4::new(&w), CpuQ8::new(&w8));
    for tokens in [1, 2, 4, 256] {
        let z: Vec<i32> = (0..tokens * cols).map(|_| (r.next_u64() as i32) >> 12).collect();
        let x = quantize(&z, cols, 10);
        let reps = (256 / tokens).max(1);
        let s4 = pool.install(|| best(5, || { for _ in 0..reps { std::hint::black_box(matmul_q4(&w, &x, 10)); } }));
        let s8 = pool.install(|| best(5, || { for _ in 0..reps { std::hint::black_box(matmul_q8(&w8, &x, 10)); } }));
        let macs = (reps * tokens * cols) as f64;
        println!("tokens {tokens:4}: q4 {:.2} GMAC/s, q8 {:.2} GMAC/s (1 thread)", macs * rows as f64 / s4 / 1e9, macs * 8192.0 / s8 / 1e9);
    }
}
