//! Every WGSL kernel against the CPU kernel of the same name, on seeded random inputs and the
//! extreme values.

use crate::{gpu, gpus_both_dot4};
use lmz::backend::cpu::{self, KvCache, QAct};
use lmz::pack::{Config, NormWeight, Q4Matrix, Q8Matrix, Tables};
use lmz::tiny::Rng;

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
        // The kernel takes each row's cache base: slot s at row s·cache_len.
        let base: Vec<u32> = slot.iter().map(|&s| s * cache_len as u32).collect();
        let out = g.attention(&qb, &gc, &base, &pos, cache_len, n_heads, &gt).unwrap();
        assert_eq!(
            g.read_buf(&out).unwrap(),
            want,
            "{n_heads}/{n_kv} heads of {hd}, cache {cache_len}"
        );
        // Rows in chunks of 3 (several dispatches sharing one scratch buffer): the same bits.
        g.set_chunk_bytes(3 * n_heads * cache_len * 4);
        let out = g.attention(&qb, &gc, &base, &pos, cache_len, n_heads, &gt).unwrap();
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
