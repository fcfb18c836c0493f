//! Times each GPU kernel at the real model's shapes (a prefill of N tokens), to see where a
//! forward pass spends its time on an adapter: `cargo run --release --example gpu_kernels -- 256`.

use std::time::Instant;

use lmz::backend::cpu::{self, KvCache};
use lmz::backend::gpu::{Gpu, GpuOptions};
use lmz::pack::{Q4Matrix, Q8Matrix};
use lmz::tiny::Rng;

fn main() -> lmz::Result<()> {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let dot4 = match std::env::args().nth(2).as_deref() {
        Some("scalar") => Some(lmz::shaders::Dot4::Scalar),
        Some("packed") => Some(lmz::shaders::Dot4::Packed),
        _ => None,
    };
    let mut g = Gpu::new(GpuOptions { dot4 })?;
    println!("{} — {n} tokens", g.describe());
    let mut r = Rng(1);
    let mut q4 = |rows: usize, cols: usize| Q4Matrix {
        rows,
        cols,
        nib: (0..rows * cols / 2).map(|_| r.next_u64() as u8).collect(),
        d: vec![100; rows * cols / 32],
        m: vec![-50; rows * cols / 32],
        e: vec![10; rows],
    };
    let (wq, wd) = (q4(576, 576), q4(576, 1536));
    let mut r = Rng(2);
    let z: Vec<i32> = (0..n * 1536).map(|_| (r.next_u64() as i32) >> 12).collect();
    let a576 = cpu::quantize(&z[..n * 576], 576, 10);
    let a1536 = cpu::quantize(&z, 1536, 10);
    let emb = Q8Matrix {
        rows: 49152,
        cols: 576,
        q: (0..49152 * 576).map(|_| r.next_u64() as i8).collect(),
        d: vec![300; 49152 * 18],
        e: vec![20; 49152],
    };
    let (gq, gd, ge) = (g.upload_q4(&wq), g.upload_q4(&wd), g.upload_q8(&emb));
    let (ga576, ga1536) = (g.upload_q(&a576), g.upload_q(&a1536));
    let x = g.upload_buf(&z[..n * 576], 576);
    let sync = |g: &mut Gpu, b: &lmz::backend::gpu::GpuBuf| g.read_buf(b).map(|v| v.len());
    let time = |what: &str, g: &mut Gpu, f: &mut dyn FnMut(&mut Gpu) -> lmz::backend::gpu::GpuBuf| -> lmz::Result<()> {
        let b = f(g);
        sync(g, &b)?; // warm (pipeline compilation)
        let t = Instant::now();
        let b = f(g);
        sync(g, &b)?;
        println!("{what:<48} {:>9.1} ms", t.elapsed().as_secs_f64() * 1e3);
        Ok(())
    };
    let m = n.min(64);
    // Each matmul with both kernels: one row per invocation, then the tiled one (the
    // engine's choice from TILED_FROM rows).
    for (from, kernel) in [(usize::MAX, "per row"), (1, "tiled")] {
        g.set_tiled_from(from);
        time(&format!("matmul_q4 576×576 (q, o), {kernel}"), &mut g, &mut |g| {
            g.matmul_q4(&gq, &ga576, 10)
        })?;
        time(&format!("matmul_q4 576×1536 (down), {kernel}"), &mut g, &mut |g| {
            g.matmul_q4(&gd, &ga1536, 12)
        })?;
        time(&format!("matmul_q8 49152×576, {m} rows, {kernel}"), &mut g, &mut |g| {
            g.matmul_q8(&ge, &ga576, 10, 0, m)
        })?;
    }
    g.set_tiled_from(lmz::backend::gpu::TILED_FROM);
    let t = lmz::pack::Tables {
        rope_cos: vec![0; 2048 * 32],
        rope_sin: vec![0; 2048 * 32],
        att_exp: lmz::tables::exp2_table(8, 15),
        out_exp: lmz::tables::exp2_table(10, 24),
        silu: lmz::tables::silu(),
    };
    let gt = g.upload_tables(&t, 64);
    time("rmsnorm 576", &mut g, &mut |g| {
        g.rmsnorm(
            &x,
            &g.upload_norm(&lmz::pack::NormWeight {
                g: vec![4096; 576],
                g_exp: 12,
                z_frac: 20,
            }),
            168,
        )
    })?;
    time("silu_mul 1536", &mut g, &mut |g| {
        let h = g.upload_buf(&z, 1536);
        g.silu_mul(&h, &h, &gt)
    })?;
    let cache = KvCache {
        k: vec![100; n * 192],
        k_exp: vec![3; n * 3],
        v: vec![1000; n * 192],
    };
    let gc = g.upload_kv(&cache, 3, 64);
    let pos: Vec<u32> = (0..n as u32).collect();
    let base = vec![0u32; n];
    time("attention 9 heads, causal", &mut g, &mut |g| {
        g.attention(&x, &gc, &base, &pos, n, 9, &gt).expect("shapes are valid")
    })?;
    let logits = g.upload_buf(
        &z[..m * 1536]
            .iter()
            .cycle()
            .take(m * 49152)
            .copied()
            .collect::<Vec<_>>(),
        49152,
    );
    let t0 = Instant::now();
    g.read_freq(&logits, &gt)?;
    let t1 = Instant::now();
    g.read_freq(&logits, &gt)?;
    println!(
        "{:<48} {:>9.1} ms (first {:.1} ms)",
        format!("freq {m} rows (incl. readback)"),
        t1.elapsed().as_secs_f64() * 1e3,
        (t1 - t0).as_secs_f64() * 1e3
    );
    Ok(())
}
