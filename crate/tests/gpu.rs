//! CPU == GPU, bit for bit: every WGSL kernel against the CPU kernel of the same name on
//! seeded random inputs and the extreme values, then whole forward passes (tiny models,
//! batched, stepped and with several sequence slots; the real model on a short text).
//!
//! These tests need a GPU adapter (the test command installs Mesa lavapipe: `apt-get install
//! mesa-vulkan-drivers libvulkan1`). Without one, each says why it skips — except in CI (`CI`
//! set), where they FAIL: nothing skips there. `LMZ_SKIP_GPU=1` skips them anywhere.

use lmz::backend::cpu::{self, CpuBackend, KvCache, QAct};
use lmz::backend::gpu::{Gpu, GpuBackend, GpuOptions};
use lmz::backend::Backend as _;
use lmz::container::{Codec, ModelUse, Options};
use lmz::eval::{score, KvMode, Policy};
use lmz::model::{forward, forward_seq, Batch, Fracs};
use lmz::pack::{Config, Model, NormWeight, Q4Matrix, Q8Matrix, Tables};
use lmz::shaders::Dot4;
use lmz::tiny::{tiny_model, Rng, TinyShape};

mod common;

/// The device, or `None` when there is none outside CI (the test says why it skips; in CI,
/// which installs Mesa lavapipe, no adapter fails the test), or when `LMZ_SKIP_GPU=1`.
fn gpu_with(dot4: Option<Dot4>) -> Option<Gpu> {
    match Gpu::new(GpuOptions { dot4 }) {
        Ok(g) => {
            eprintln!("GPU: {}", g.describe());
            Some(g)
        }
        Err(e) if std::env::var("LMZ_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("SKIPPED (LMZ_SKIP_GPU=1): {e}");
            None
        }
        Err(e) => common::skip_outside_ci(&format!(
            "{e}\n(no GPU adapter: apt-get install mesa-vulkan-drivers libvulkan1, as `bash scripts/test.sh rust` does)"
        )),
    }
}

fn gpu() -> Option<Gpu> {
    gpu_with(None)
}

/// Both matmul variants: dot4I8Packed where the instance has it, and the scalar fallback.
fn gpus_both_dot4() -> Vec<Gpu> {
    let Some(g) = gpu() else { return Vec::new() };
    let mut v = vec![gpu_with(Some(Dot4::Scalar)).expect("the adapter opened a moment ago")];
    if g.dot4() == Dot4::Packed {
        v.push(g);
    }
    v
}

const EXTREMES: [i32; 9] = [
    0,
    1,
    -1,
    i32::MAX,
    i32::MIN,
    i32::MAX - 1,
    i32::MIN + 1,
    i32::MAX / 3,
    -(1 << 20),
];

/// Rows of `width`: zeros, all-max, all-min, the extremes cycled, one outlier among small
/// values, and random values at several magnitudes.
fn test_rows(r: &mut Rng, width: usize) -> Vec<i32> {
    let mut v = Vec::new();
    v.extend(std::iter::repeat_n(0, width));
    v.extend(std::iter::repeat_n(i32::MAX, width));
    v.extend(std::iter::repeat_n(i32::MIN, width));
    v.extend((0..width).map(|i| EXTREMES[i % EXTREMES.len()]));
    v.extend((0..width).map(|i| if i == 5 { 100_000_000 } else { (i as i32 % 7) - 3 }));
    v.extend((0..width).map(|i| {
        if i == 7 {
            -24_600 << 12
        } else {
            (r.below(2001) as i32 - 1000) << 4
        }
    }));
    for sh in [0, 4, 8, 12, 16, 20, 24, 28, 31] {
        v.extend((0..width).map(|_| (r.next_u64() as i32) >> sh));
    }
    v
}

fn random_q4(r: &mut Rng, rows: usize, cols: usize, extreme: bool) -> Q4Matrix {
    let nb = rows * cols / 32;
    let pick = |r: &mut Rng, hi: i64| {
        if extreme {
            [hi, -hi][r.below(2) as usize]
        } else {
            r.below(2 * hi as u64 + 1) as i64 - hi
        }
    };
    Q4Matrix {
        rows,
        cols,
        nib: (0..rows * cols / 2)
            .map(|_| {
                if extreme {
                    [0x00, 0xFF, 0x0F, 0xF0][r.below(4) as usize]
                } else {
                    r.next_u64() as u8
                }
            })
            .collect(),
        d: (0..nb).map(|_| pick(r, 8191) as i16).collect(),
        m: (0..nb).map(|_| pick(r, 8191) as i16).collect(),
        e: (0..rows).map(|_| r.below(40) as i8 - 8).collect(),
    }
}

fn random_q8(r: &mut Rng, rows: usize, cols: usize, extreme: bool) -> Q8Matrix {
    Q8Matrix {
        rows,
        cols,
        q: (0..rows * cols)
            .map(|_| {
                if extreme {
                    [-128i8, 127, -127][r.below(3) as usize]
                } else {
                    r.next_u64() as i8
                }
            })
            .collect(),
        d: (0..rows * cols / 32)
            .map(|_| {
                if extreme {
                    [2047i16, -2047][r.below(2) as usize]
                } else {
                    r.below(4095) as i16 - 2047
                }
            })
            .collect(),
        e: (0..rows).map(|_| r.below(40) as i8 - 10).collect(),
    }
}

/// Activations: quantised test rows (consistent sums), plus rows at the bounds (q = ±127,
/// a = 4096).
fn random_act(r: &mut Rng, tokens: usize, width: usize) -> QAct {
    let z: Vec<i32> = test_rows(r, width).into_iter().cycle().take(tokens * width).collect();
    let mut a = cpu::quantize(&z, width, 10);
    let nb = width / 32;
    for t in 0..tokens {
        if t % 3 == 1 {
            let s = if t % 2 == 0 { 127 } else { -127 };
            a.q[t * width..(t + 1) * width].iter_mut().for_each(|q| *q = s);
            a.a[t * nb..(t + 1) * nb].iter_mut().for_each(|x| *x = 4096);
            a.sum[t * nb..(t + 1) * nb].iter_mut().for_each(|x| *x = 32 * s as i32);
        }
        a.exp[t] = r.below(60) as i32 - 30;
    }
    a
}

/// The oracle: `cpu::dot_q4` for every (token, row), `[tokens, rows]`.
fn oracle_q4(w: &Q4Matrix, a: &QAct, frac_out: i32) -> Vec<i32> {
    let (cols, nb) = (w.cols, w.cols / 32);
    let mut out = Vec::new();
    for t in 0..a.tokens {
        for r in 0..w.rows {
            out.push(cpu::dot_q4(
                &w.nib[r * cols / 2..(r + 1) * cols / 2],
                &w.d[r * nb..(r + 1) * nb],
                &w.m[r * nb..(r + 1) * nb],
                w.e[r] as i32,
                &a.q[t * cols..(t + 1) * cols],
                &a.a[t * nb..(t + 1) * nb],
                &a.sum[t * nb..(t + 1) * nb],
                a.exp[t],
                frac_out,
            ));
        }
    }
    out
}

/// The oracle: `cpu::dot_q8` for every (token, row), `[tokens, rows]`.
fn oracle_q8(w: &Q8Matrix, a: &QAct, frac_out: i32) -> Vec<i32> {
    let (cols, nb) = (w.cols, w.cols / 32);
    let mut out = Vec::new();
    for t in 0..a.tokens {
        for r in 0..w.rows {
            out.push(cpu::dot_q8(
                &w.q[r * cols..(r + 1) * cols],
                &w.d[r * nb..(r + 1) * nb],
                w.e[r] as i32,
                &a.q[t * cols..(t + 1) * cols],
                &a.a[t * nb..(t + 1) * nb],
                a.exp[t],
                frac_out,
            ));
        }
    }
    out
}

#[test]
fn quantize() {
    let Some(mut g) = gpu() else { return };
    let mut r = Rng(11);
    for width in [32, 96, 576, 1536] {
        let z = test_rows(&mut r, width);
        for frac in [0, 10, 23] {
            let want = cpu::quantize(&z, width, frac);
            let zb = g.upload_buf(&z, width);
            let q = g.quantize(&zb, frac);
            assert_eq!(g.read_q(&q).unwrap(), want, "width {width} frac {frac}");
        }
    }
}

/// Either matmul kernel on every batch: `tiled_from` 1 runs `matmul_q*_tiled.wgsl` even on
/// one row, `usize::MAX` never; the engine's default switches at `gpu::TILED_FROM` rows.
const TILED: [(usize, &str); 3] = [
    (usize::MAX, "one row per invocation"),
    (1, "tiled"),
    (lmz::backend::gpu::TILED_FROM, "default"),
];

#[test]
fn matmul_q4() {
    let mut r = Rng(12);
    for mut g in gpus_both_dot4() {
        // Tiles of 64 rows × 16 tokens: shapes below, at and past both, and with slabs of 4
        // blocks that do not divide the row (18 and 48 blocks, and 1).
        for (rows, cols, tokens) in [
            (70, 576, 1),
            (64, 576, 9),
            (130, 1536, 6),
            (3, 32, 5),
            (64, 576, 16),
            (129, 576, 17),
            (70, 1536, 33),
            (3, 32, 20),
        ] {
            for extreme in [false, true] {
                let w = random_q4(&mut r, rows, cols, extreme);
                let a = random_act(&mut r, tokens, cols);
                let (gw, ga) = (g.upload_q4(&w), g.upload_q(&a));
                for frac_out in [8, 10, 12] {
                    let want = oracle_q4(&w, &a, frac_out);
                    assert_eq!(cpu::matmul_q4(&cpu::CpuQ4::new(&w), &a, frac_out), want); // the CPU engine agrees too
                    for (from, kernel) in TILED {
                        g.set_tiled_from(from);
                        let out = g.matmul_q4(&gw, &ga, frac_out);
                        assert_eq!(
                            g.read_buf(&out).unwrap(),
                            want,
                            "{rows}×{cols}, {tokens} tokens, extreme {extreme}, {:?}, {kernel}",
                            g.dot4()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_q8() {
    let mut r = Rng(13);
    for mut g in gpus_both_dot4() {
        for (rows, cols, tokens) in [
            (300, 576, 1),
            (129, 1024, 7),
            (5, 64, 13),
            (300, 576, 16),
            (129, 576, 35),
            (5, 64, 40),
        ] {
            for extreme in [false, true] {
                let w = random_q8(&mut r, rows, cols, extreme);
                let a = random_act(&mut r, tokens, cols);
                let (gw, ga) = (g.upload_q8(&w), g.upload_q(&a));
                let want = oracle_q8(&w, &a, cpu::LOGIT_FRAC);
                assert_eq!(cpu::matmul_q8(&cpu::CpuQ8::new(&w), &a, cpu::LOGIT_FRAC), want);
                for (from, kernel) in TILED {
                    g.set_tiled_from(from);
                    let out = g.matmul_q8(&gw, &ga, cpu::LOGIT_FRAC, 0, tokens);
                    assert_eq!(
                        g.read_buf(&out).unwrap(),
                        want,
                        "{rows}×{cols}, {tokens} tokens, {:?}, {kernel}",
                        g.dot4()
                    );
                    // A chunk of rows (what the engine does for long batches).
                    let (t0, n) = (tokens / 2, tokens - tokens / 2);
                    let out = g.matmul_q8(&gw, &ga, cpu::LOGIT_FRAC, t0, n);
                    assert_eq!(
                        g.read_buf(&out).unwrap(),
                        want[t0 * rows..].to_vec(),
                        "rows {t0}.. of {tokens}, {kernel}"
                    );
                }
            }
        }
    }
}

#[test]
fn embed() {
    let Some(mut g) = gpu() else { return };
    let mut r = Rng(14);
    for extreme in [false, true] {
        let mut w = random_q8(&mut r, 50, 96, extreme);
        w.e[3] = 40; // a large right shift
        w.e[4] = -20; // a left shift that saturates
        let tokens: Vec<u32> = (0..40).map(|i| if i < 5 { i } else { r.below(50) as u32 }).collect();
        let gw = g.upload_q8(&w);
        let out = g.embed(&gw, &tokens).unwrap();
        let cw = cpu::CpuQ8::new(&w);
        assert_eq!(g.read_buf(&out).unwrap(), cpu::embed(&cw, &tokens).unwrap());
        let e = g.embed(&gw, &[1, 50]).unwrap_err();
        assert_eq!(e.code(), cpu::embed(&cw, &[1, 50]).unwrap_err().code());
    }
}

#[test]
fn rmsnorm_row() {
    let Some(mut g) = gpu() else { return };
    let mut r = Rng(15);
    for dim in [64, 576, 1024] {
        let x = test_rows(&mut r, dim);
        for (g_exp, z_frac, eps) in [(12, 20, 168), (14, 26, 0), (0, 30, 1 << 20)] {
            let gain: Vec<i32> = (0..dim)
                .map(|i| {
                    if i % 5 == 0 {
                        [32767, -32767][i % 2]
                    } else {
                        r.below(65535) as i32 - 32767
                    }
                })
                .collect();
            let nw = NormWeight { g: gain, g_exp, z_frac };
            let mut want = vec![0; x.len()];
            for (xr, zr) in x.chunks(dim).zip(want.chunks_mut(dim)) {
                cpu::rmsnorm_row(xr, &nw, eps, zr);
            }
            let gn = g.upload_norm(&nw);
            let xb = g.upload_buf(&x, dim);
            let out = g.rmsnorm(&xb, &gn, eps);
            assert_eq!(
                g.read_buf(&out).unwrap(),
                want,
                "dim {dim} g_exp {g_exp} z_frac {z_frac}"
            );
        }
    }
}

fn test_tables(ctx: usize, head_dim: usize) -> Tables {
    let (rope_cos, rope_sin) = lmz::tables::rope(ctx, head_dim, 1e4);
    Tables {
        rope_cos,
        rope_sin,
        att_exp: lmz::tables::exp2_table(8, 15),
        out_exp: lmz::tables::exp2_table(10, 24),
        silu: lmz::tables::silu(),
    }
}

#[test]
fn rope_row() {
    let Some(mut g) = gpu() else { return };
    let mut r = Rng(16);
    let (ctx, hd) = (300, 64);
    let mut t = test_tables(ctx, hd);
    t.rope_cos[hd / 2] = -16384; // ±2^14 at the table's extremes
    t.rope_sin[hd / 2 + 1] = 16384;
    let gt = g.upload_tables(&t, hd);
    for heads in [1, 3, 9] {
        let w = heads * hd;
        let x = test_rows(&mut r, w);
        let pos: Vec<u32> = (0..x.len() / w)
            .map(|i| if i < 3 { i as u32 } else { r.below(ctx as u64) as u32 })
            .collect();
        let mut want = x.clone();
        for (row, &p) in want.chunks_mut(w).zip(&pos) {
            cpu::rope_row(row, hd, p as usize, &t);
        }
        let xb = g.upload_buf(&x, w);
        g.rope(&xb, hd, &pos, &gt);
        assert_eq!(g.read_buf(&xb).unwrap(), want, "{heads} heads");
    }
}

#[test]
fn silu_mul() {
    let Some(mut g) = gpu() else { return };
    let mut r = Rng(17);
    let t = test_tables(4, 4);
    let gt = g.upload_tables(&t, 4);
    let mut gate = test_rows(&mut r, 96);
    gate.extend((-1100..1100).map(|i| i * 16 + (i & 15))); // every table segment and its ends
    let up: Vec<i32> = gate.iter().rev().map(|&v| v.rotate_left(7)).collect();
    let mut want = vec![0; gate.len()];
    cpu::silu_mul(&gate, &up, &t.silu, &mut want);
    let (gb, ub) = (g.upload_buf(&gate, 1), g.upload_buf(&up, 1));
    let out = g.silu_mul(&gb, &ub, &gt);
    assert_eq!(g.read_buf(&out).unwrap(), want);
}

#[test]
fn add() {
    let Some(mut g) = gpu() else { return };
    let mut r = Rng(18);
    let x = test_rows(&mut r, 64);
    let mut y: Vec<i32> = x.iter().map(|&v| v.rotate_right(3)).collect();
    y[..EXTREMES.len()].copy_from_slice(&EXTREMES);
    let want: Vec<i32> = x.iter().zip(&y).map(|(a, b)| a.saturating_add(*b)).collect();
    let (xb, yb) = (g.upload_buf(&x, 64), g.upload_buf(&y, 64));
    g.add(&xb, &yb);
    assert_eq!(g.read_buf(&xb).unwrap(), want);
}

fn attn_cfg(n_heads: usize, n_kv: usize, head_dim: usize, ctx: usize) -> Config {
    Config {
        name: String::new(),
        n_layers: 1,
        dim: n_heads * head_dim,
        hidden: 64,
        n_heads,
        n_kv_heads: n_kv,
        head_dim,
        vocab: 2,
        ctx,
        rope_base: 1e4,
        bos: 0,
        eos: 0,
        doc_start: 0,
        norm_eps_q24: 0,
    }
}

#[test]
fn kv_store() {
    let Some(mut g) = gpu() else { return };
    let mut r = Rng(19);
    let (n_kv, hd) = (3, 64);
    let kvd = n_kv * hd;
    let k = test_rows(&mut r, kvd);
    let rows = k.len() / kvd;
    let v: Vec<i32> = k.iter().map(|&x| x.rotate_left(9)).collect();
    let cache_rows = 2 * rows + 5;
    let dst: Vec<u32> = (0..rows).map(|i| (2 * i + 1) as u32).collect();
    let mut want = KvCache {
        k: vec![0; cache_rows * kvd],
        k_exp: vec![0; cache_rows * n_kv],
        v: vec![0; cache_rows * kvd],
    };
    for (i, &d) in dst.iter().enumerate() {
        cpu::kv_store(
            &mut want,
            d as usize,
            &k[i * kvd..(i + 1) * kvd],
            &v[i * kvd..(i + 1) * kvd],
            hd,
        );
    }
    let c = g.new_kv(cache_rows, n_kv, hd);
    let (kb, vb) = (g.upload_buf(&k, kvd), g.upload_buf(&v, kvd));
    g.kv_store(&c, &kb, &vb, &dst);
    let got = g.read_kv(&c).unwrap();
    assert_eq!((got.k, got.k_exp, got.v), (want.k, want.k_exp, want.v));
}

#[test]
fn kv_shift() {
    let Some(mut g) = gpu() else { return };
    let mut r = Rng(23);
    for (n_kv, hd) in [(3, 64), (2, 32)] {
        let t = test_tables(300, hd);
        let gt = g.upload_tables(&t, hd);
        let kvd = n_kv * hd;
        let rows = 90;
        // Keys as kv_store leaves them (|·| ≤ 511), and the whole i16 range, which the kernel
        // must also take exactly; exponents up to 30.
        let cache = KvCache {
            k: (0..rows * kvd)
                .map(|i| {
                    if i < 40 * kvd {
                        r.below(1023) as i16 - 511
                    } else if i % 5 == 0 {
                        [i16::MAX, i16::MIN][i % 2]
                    } else {
                        r.next_u64() as i16
                    }
                })
                .collect(),
            k_exp: (0..rows * n_kv).map(|_| r.below(31) as i32).collect(),
            v: (0..rows * kvd).map(|_| r.next_u64() as i16).collect(),
        };
        // Overlapping ranges, disjoint ones, a shift by 0, a long shift (table row 49).
        for (src, dst, n) in [(10, 1, 60), (50, 1, 40), (7, 7, 30), (49, 0, 20), (3, 2, 87)] {
            let mut want = cache.clone();
            cpu::kv_shift(&mut want, src, dst, n, n_kv, hd, &t);
            let c = g.upload_kv(&cache, n_kv, hd);
            let scratch = g.new_kv(n, n_kv, hd);
            g.kv_shift(&c, &scratch, src, dst, n, &gt);
            let got = g.read_kv(&c).unwrap();
            assert!(
                got.k == want.k && got.k_exp == want.k_exp && got.v == want.v,
                "n_kv {n_kv}, hd {hd}: {src}..+{n} → {dst}"
            );
        }
    }
}

#[test]
fn attention_row() {
    let Some(mut g) = gpu() else { return };
    let mut r = Rng(20);
    for (n_heads, n_kv, hd, cache_len, slots) in [(9, 3, 64, 700, 2), (4, 2, 32, 64, 3), (2, 1, 32, 2048, 1)] {
        let cfg = attn_cfg(n_heads, n_kv, hd, cache_len);
        let kvd = n_kv * hd;
        let rows = slots * cache_len;
        let extreme = cache_len == 2048;
        let cache = KvCache {
            k: (0..rows * kvd)
                .map(|i| {
                    if extreme {
                        [511, -511][i % 3 % 2]
                    } else {
                        r.below(1023) as i16 - 511
                    }
                })
                .collect(),
            k_exp: (0..rows * n_kv)
                .map(|i| if extreme { (i % 24) as i32 } else { r.below(14) as i32 })
                .collect(),
            v: (0..rows * kvd)
                .map(|i| {
                    if extreme || i % 11 == 0 {
                        [i16::MAX, i16::MIN][i % 2]
                    } else {
                        r.next_u64() as i16
                    }
                })
                .collect(),
        };
        let qd = n_heads * hd;
        let mut q = test_rows(&mut r, qd);
        q.extend((0..qd).map(|i| (i as i32 - 100) << 10)); // ordinary Q10 values
        let nq = q.len() / qd;
        let slot: Vec<u32> = (0..nq).map(|i| (i % slots) as u32).collect();
        let pos: Vec<u32> = (0..nq)
            .map(|i| {
                if i < 2 {
                    [0, cache_len as u32 - 1][i]
                } else {
                    r.below(cache_len as u64) as u32
                }
            })
            .collect();
        let mut want = vec![0; q.len()];
        let mut scratch = Vec::new();
        for i in 0..nq {
            cpu::attention_row(
                &q[i * qd..(i + 1) * qd],
                &cache,
                slot[i] as usize * cache_len,
                pos[i] as usize,
                &cfg,
                &lmz::tables::exp2_table(8, 15),
                &mut want[i * qd..(i + 1) * qd],
                &mut scratch,
            );
        }
        let t = test_tables(4, hd);
        let gt = g.upload_tables(&t, hd);
        let gc = g.upload_kv(&cache, n_kv, hd);
        let qb = g.upload_buf(&q, qd);
        let out = g.attention(&qb, &gc, &slot, &pos, cache_len, n_heads, &gt).unwrap();
        assert_eq!(
            g.read_buf(&out).unwrap(),
            want,
            "{n_heads}/{n_kv} heads of {hd}, cache {cache_len}"
        );
        // Rows in chunks of 3 (several dispatches sharing one scratch buffer): the same bits.
        g.set_chunk_bytes(3 * n_heads * cache_len * 4);
        let out = g.attention(&qb, &gc, &slot, &pos, cache_len, n_heads, &gt).unwrap();
        assert_eq!(g.read_buf(&out).unwrap(), want, "in chunks of 3 rows");
        g.set_chunk_bytes(32 << 20);
    }
}

#[test]
fn freq_table() {
    let Some(mut g) = gpu() else { return };
    let t = test_tables(4, 4);
    let gt = g.upload_tables(&t, 4);
    for v in [266usize, 49152] {
        let vi = v as i32;
        let rows: Vec<Vec<i32>> = vec![
            vec![0; v],
            vec![i32::MAX; v],
            vec![i32::MIN; v],
            (0..vi).map(|i| if i % 2 == 0 { i32::MIN } else { i32::MAX }).collect(),
            (0..vi).map(|i| i * 37 % 20000).collect(),
            (0..vi).map(|i| if i == 7 { 100 << 10 } else { 0 }).collect(),
            (0..vi)
                .map(|i| {
                    if i == v as i32 - 1 || i == 3 {
                        5 << 10
                    } else {
                        -(i % 50) << 10
                    }
                })
                .collect(),
            (0..vi)
                .map(|i| ((i as i64 * 2654435761) % 40000) as i32 - 20000)
                .collect(),
        ];
        let flat: Vec<i32> = rows.concat();
        let mut want = vec![0u32; flat.len()];
        for (l, f) in flat.chunks(v).zip(want.chunks_mut(v)) {
            lmz::freq::freq_table(l, &t.out_exp, f);
        }
        let lb = g.upload_buf(&flat, v);
        assert_eq!(g.read_freq(&lb, &gt).unwrap(), want, "vocab {v}");
    }
}

#[test]
fn ranges() {
    // shaders/ranges.wgsl ↔ coder::cum_freq on the tables of freq.wgsl: the first and the
    // last symbol, the top symbol (where the remainder went), and others.
    let Some(mut g) = gpu() else { return };
    let t = test_tables(4, 4);
    let gt = g.upload_tables(&t, 4);
    let mut r = Rng(23);
    for v in [266usize, 49152] {
        let vi = v as i32;
        let rows: Vec<Vec<i32>> = vec![
            vec![0; v],
            vec![i32::MIN; v],
            (0..vi).map(|i| i * 37 % 20000).collect(),
            (0..vi).map(|i| if i == 7 { 100 << 10 } else { 0 }).collect(),
            (0..vi)
                .map(|i| ((i as i64 * 2654435761) % 40000) as i32 - 20000)
                .collect(),
        ];
        let flat: Vec<i32> = rows.concat();
        let lb = g.upload_buf(&flat, v);
        let tables = g.freq(&lb, &gt);
        let mut want_tables = vec![0u32; flat.len()];
        for (l, f) in flat.chunks(v).zip(want_tables.chunks_mut(v)) {
            lmz::freq::freq_table(l, &t.out_exp, f);
        }
        for symbols in [
            vec![0u32; rows.len()],
            vec![v as u32 - 1; rows.len()],
            vec![7; rows.len()],
            (0..rows.len()).map(|_| r.below(v as u64) as u32).collect(),
        ] {
            let rb = g.ranges(&tables, rows.len(), v, &symbols);
            let got: Vec<u32> = g.read(&rb, 0, 2 * rows.len()).unwrap();
            let want: Vec<u32> = want_tables
                .chunks(v)
                .zip(&symbols)
                .flat_map(|(f, &s)| {
                    let (c, q) = lmz::coder::cum_freq(f, s).unwrap();
                    [c, q]
                })
                .collect();
            assert_eq!(got, want, "vocab {v} symbols {symbols:?}");
        }
    }
}

// --- whole forward passes ---

fn tables_of<B: lmz::backend::Backend>(b: &mut B, m: &Model, batches: &[Batch]) -> Vec<Vec<u32>> {
    let fr = Fracs::new(&m.weights);
    let mut out = Vec::new();
    for batch in batches {
        forward(b, m.config(), &fr, batch, &mut |_, f| {
            out.push(f.to_vec());
            Ok(())
        })
        .unwrap();
    }
    out
}

fn seq_batches(tokens: &[u32], step: usize) -> Vec<Batch> {
    tokens
        .chunks(step)
        .enumerate()
        .map(|(i, c)| {
            let mut b = Batch::default();
            b.push_seq(0, c, i * step, 0);
            b
        })
        .collect()
}

fn gpu_backend(m: &Model, slots: usize, cache_len: usize) -> Option<GpuBackend> {
    let g = gpu()?;
    Some(GpuBackend::on(g, m, slots, cache_len).unwrap())
}

#[test]
fn tiny_model_cpu_equals_gpu_batched_and_stepped() {
    for (seed, shape) in [
        (1, TinyShape::default()),
        (
            2,
            TinyShape {
                n_layers: 3,
                dim: 96,
                hidden: 160,
                n_heads: 6,
                n_kv_heads: 2,
                ctx: 64,
                ..TinyShape::default()
            },
        ),
    ] {
        let m = tiny_model(seed, shape).unwrap();
        let n = 60.min(m.config().ctx);
        let mut r = Rng(seed);
        let toks: Vec<u32> = (0..n).map(|_| r.below(m.config().vocab as u64) as u32).collect();
        let Some(mut gb) = gpu_backend(&m, 1, n) else { return };
        let mut cb = CpuBackend::new(&m, n).unwrap();
        let want = tables_of(&mut cb, &m, &seq_batches(&toks, n));
        assert_eq!(want.len(), n);
        assert_eq!(tables_of(&mut gb, &m, &seq_batches(&toks, n)), want, "batched");
        let Some(mut gb) = gpu_backend(&m, 1, n) else { return };
        assert_eq!(
            tables_of(&mut gb, &m, &seq_batches(&toks, 1)),
            want,
            "one token at a time"
        );
        let Some(mut gb) = gpu_backend(&m, 1, n) else { return };
        assert_eq!(tables_of(&mut gb, &m, &seq_batches(&toks, 7)), want, "chunks of 7");
        // Logits and frequency tables 5 rows at a time, attention in chunks of rows too.
        let Some(mut gb) = gpu_backend(&m, 1, n) else { return };
        gb.gpu().set_chunk_bytes(5 * m.config().vocab * 4);
        assert_eq!(tables_of(&mut gb, &m, &seq_batches(&toks, n)), want, "small chunks");
    }
}

/// Three sequences in lock-step: a prefill of each one's first half (wanting only some rows),
/// then the rest one token per sequence per batch.
fn lockstep_batches(m: &Model) -> Vec<Batch> {
    let mut r = Rng(5);
    let seqs: Vec<Vec<u32>> = (0..3)
        .map(|i| {
            (0..20 + 5 * i)
                .map(|_| r.below(m.config().vocab as u64) as u32)
                .collect()
        })
        .collect();
    let mut batches = Vec::new();
    let mut b = Batch::default();
    for (s, q) in seqs.iter().enumerate() {
        b.push_seq(s, &q[..10], 0, 3 + s);
    }
    batches.push(b);
    for i in 10..30 {
        let mut b = Batch::default();
        for (s, q) in seqs.iter().enumerate() {
            if i < q.len() {
                b.push_seq(s, &q[i..i + 1], i, 0);
            }
        }
        batches.push(b);
    }
    batches
}

#[test]
fn tiny_model_slots_and_gathered_rows() {
    let m = tiny_model(3, TinyShape::default()).unwrap();
    let batches = lockstep_batches(&m);
    let mut cb = CpuBackend::with_slots(&m, 3, 32).unwrap();
    let want = tables_of(&mut cb, &m, &batches);
    let Some(mut gb) = gpu_backend(&m, 3, 32) else { return };
    assert_eq!(tables_of(&mut gb, &m, &batches), want);
}

/// The browser's CPU engine opens with one slot and re-sizes its KV cache for a file of
/// several chunks (`set_slots`): after a first use with one slot, three slots give the tables
/// of a fresh three-slot engine; 0 slots are refused.
#[test]
fn cpu_set_slots_equals_a_fresh_engine() {
    let m = tiny_model(3, TinyShape::default()).unwrap();
    let batches = lockstep_batches(&m);
    let want = tables_of(&mut CpuBackend::with_slots(&m, 3, 32).unwrap(), &m, &batches);
    let mut b = CpuBackend::with_slots(&m, 1, 32).unwrap();
    let mut first = Batch::default();
    first.push_seq(0, &[1, 2, 3, 4, 5], 0, 1);
    tables_of(&mut b, &m, &[first]);
    b.set_slots(3).unwrap();
    assert_eq!(b.slots(), 3);
    assert_eq!(tables_of(&mut b, &m, &batches), want);
    assert!(b.set_slots(0).is_err());
    b.set_slots(1).unwrap();
    assert_eq!(b.slots(), 1);
}

fn scored<B: lmz::backend::Backend>(b: &mut B, m: &Model, toks: &[u32], p: &Policy) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    score(
        b,
        m.config(),
        &Fracs::new(&m.weights),
        toks,
        p,
        &mut |i, f| {
            assert_eq!(i, out.len());
            out.push(f.to_vec());
            Ok(())
        },
        &mut |_, _| {},
    )
    .unwrap();
    out
}

/// The sliding window: later windows keep their context through `kv_shift`, on both engines
/// the same tables, and a multi-chunk file coded on the GPU is the CPU's file and decodes in
/// lock-step slots.
#[test]
fn tiny_model_sliding_window_cpu_equals_gpu() {
    let m = tiny_model(7, TinyShape::default()).unwrap();
    let cfg = m.config().clone();
    let mut r = Rng(9);
    let toks: Vec<u32> = (0..300).map(|_| r.below(cfg.vocab as u64) as u32).collect();
    for (window, stride) in [(40, 9), (64, 32), (33, 32)] {
        let p = Policy {
            window,
            stride,
            start: cfg.doc_start,
            kv: KvMode::Shift,
            adapt: false,
            ngram: false,
        };
        let mut cb = CpuBackend::new(&m, window).unwrap();
        let want = scored(&mut cb, &m, &toks, &p);
        assert_eq!(want.len(), toks.len());
        let Some(mut gb) = gpu_backend(&m, 1, window) else {
            return;
        };
        assert!(
            scored(&mut gb, &m, &toks, &p) == want,
            "window {window}, stride {stride}"
        );
        // The first window is the recomputing policy's; later ones differ where context is
        // kept (window 33, stride 32 keeps none: the same tables).
        let mut cb = CpuBackend::new(&m, window).unwrap();
        let recomputed = scored(
            &mut cb,
            &m,
            &toks,
            &Policy {
                kv: KvMode::Recompute,
                ..p
            },
        );
        assert!(recomputed[..window] == want[..window]);
        assert!(
            (recomputed == want) == (window - stride - 1 == 0),
            "window {window}, stride {stride}"
        );
    }
    let codec = Codec::new(&m).unwrap();
    let text: Vec<u8> = (0..1200).map(|i| b"the thin anthem and a note\n"[i % 27]).collect();
    let opts = Options {
        model: ModelUse::Force,
        chunk_tokens: 150,
        compact: false,
        ..Options::default()
    };
    let mut cb = CpuBackend::with_slots(&m, 1, cfg.ctx).unwrap();
    let file = codec.compress(&mut cb, &text, &opts, &mut |_, _| {}).unwrap();
    assert_eq!(lmz::container::info(&file).unwrap().kv, KvMode::Shift);
    let Some(mut gb) = gpu_backend(&m, 3, cfg.ctx) else {
        return;
    };
    assert!(codec.compress(&mut gb, &text, &opts, &mut |_, _| {}).unwrap() == file);
    assert!(codec.decompress(&mut gb, &file, &mut |_, _| {}).unwrap() == text);
}

#[test]
fn tiny_model_errors_are_typed() {
    let m = tiny_model(4, TinyShape::default()).unwrap();
    let Some(mut gb) = gpu_backend(&m, 1, 16) else { return };
    let fr = Fracs::new(&m.weights);
    let e = forward_seq(&mut gb, m.config(), &fr, &[9999], 0, 0, &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(e.code(), "LMZ_INVALID_ARGUMENT");
    let e = forward_seq(&mut gb, m.config(), &fr, &[1; 17], 0, 0, &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(e.code(), "LMZ_CONTEXT_OVERFLOW");
    assert!(matches!(
        GpuBackend::on(gpu().expect("opened above"), &m, 0, 16),
        Err(lmz::Error::InvalidArgument(_))
    ));
}

#[test]
fn real_model_cpu_equals_gpu_on_a_short_text() {
    let Some(m) = common::real_model() else { return };
    let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/alice-chapter1.txt")).unwrap();
    let tok = lmz::tokenizer::Tokenizer::new(&m.tokenizer).unwrap();
    let mut toks = vec![m.config().doc_start];
    toks.extend(tok.encode(&text).into_iter().take(199));
    let n = toks.len();
    let Some(mut gb) = gpu_backend(&m, 1, n) else { return };
    let mut cb = CpuBackend::new(&m, n).unwrap();
    // A prefill of most of the text, then single steps through the KV cache.
    let split = n - 8;
    let mut batches = seq_batches(&toks[..split], split);
    for i in split..n {
        let mut b = Batch::default();
        b.push_seq(0, &toks[i..i + 1], i, 0);
        batches.push(b);
    }
    let want = tables_of(&mut cb, &m, &batches);
    assert_eq!(want.len(), n);
    let got = tables_of(&mut gb, &m, &batches);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(a == b, "table {i} differs");
    }
    assert_eq!(got.len(), want.len());
}
