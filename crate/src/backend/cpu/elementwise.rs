//! Embedding, RMSNorm, RoPE and SiLU, row by row: the oracles of `shaders/embed.wgsl`,
//! `shaders/rmsnorm.wgsl`, `shaders/rope.wgsl` and `shaders/silu_mul.wgsl`.

use super::fixed::{FFN_FRAC, RESID_FRAC};
use super::layout::CpuQ8;
use crate::error::{Error, Result};
use crate::pack::{NormWeight, Tables};
use crate::wide::{self, mul_shift};

/// Residual rows (Q12) of the given tokens from the Q8_0 embedding.
pub fn embed(w: &CpuQ8, tokens: &[u32]) -> Result<Vec<i32>> {
    let dim = w.cols;
    let mut out = Vec::with_capacity(tokens.len() * dim);
    for &t in tokens {
        let r = t as usize;
        if r >= w.rows {
            return Err(Error::InvalidArgument(format!(
                "token id {t} is outside the vocabulary of {}",
                w.rows
            )));
        }
        let sh = w.exp(r) as i32 - RESID_FRAC;
        for c in 0..dim {
            let (q, d) = w.at(r, c);
            // |d·q| ≤ 2047·127 < 2^18
            out.push(wide::round_shift_sat_i64(d as i64 * q as i64, sh));
        }
    }
    Ok(out)
}

/// RMSNorm of one Q12 row times the gain, output with `g.z_frac` fraction bits.
///
/// Sum of squares on a dynamically pre-shifted copy (|x| >> s < 2^11, so dim·2^22 < 2^32 for
/// dim ≤ 1024); the unshifted x is then multiplied by 1/rms (a 16-bit reciprocal of a 16-bit
/// integer square root), so channels far below the outlier channels keep their precision.
pub fn rmsnorm_row(x: &[i32], g: &NormWeight, eps_q24: u32, z: &mut [i32]) {
    let m = x.iter().fold(0u32, |m, v| m.max(v.unsigned_abs()));
    let mut s = 0u32;
    while (m >> s) >= 2048 {
        s += 1;
    }
    let mut ss = 0u32;
    for v in x {
        let u = v.unsigned_abs() >> s;
        ss += u * u;
    }
    let v = ss / x.len() as u32 + (eps_q24 >> (2 * s).min(31));
    if v == 0 {
        z.iter_mut().for_each(|o| *o = 0);
        return;
    }
    // v < 2^22 + eps: normalise to [2^28, 2^30) by an even shift, then sqrt(4v') ∈ [2^15, 2^16).
    let mut vn = v;
    let mut k = 0i32;
    while vn < 1 << 28 {
        vn <<= 2;
        k += 1;
    }
    let sq = wide::isqrt(vn << 2);
    // 1/sqrt(v) = r · 2^(k−30), r = round(2^31 / sq) ∈ (2^15, 2^16]
    let r = ((1u32 << 31) + sq / 2) / sq;
    // y (Q24) = x · 2^-s / sqrt(v) = x · r · 2^(k − s − 6); |y| ≤ ~sqrt(dim)·2^24 < 2^30
    let sh_y = s as i32 + 6 - k;
    let sh_z = 24 + g.g_exp - g.z_frac;
    for ((o, &xi), &gi) in z.iter_mut().zip(x).zip(&g.g) {
        let y = mul_shift(xi, r as i32, sh_y);
        *o = mul_shift(y, gi, sh_z);
    }
}

/// Rotates adjacent pairs (llama.cpp's normal RoPE mode) of each head of one row at `pos`.
/// Values Q10 (any range: the products are [`Wide`](crate::wide::Wide)); tables Q1.14.
pub fn rope_row(x: &mut [i32], head_dim: usize, pos: usize, t: &Tables) {
    let half = head_dim / 2;
    let (cos, sin) = (
        &t.rope_cos[pos * half..(pos + 1) * half],
        &t.rope_sin[pos * half..(pos + 1) * half],
    );
    for h in x.chunks_exact_mut(head_dim) {
        for i in 0..half {
            let (x0, x1) = (h[2 * i], h[2 * i + 1]);
            let (c, s) = (cos[i] as i32, sin[i] as i32);
            // |x·c − y·s| ≤ 2·2^31·2^14 = 2^46: a `Wide` in WGSL, i64 here (same bits).
            let (x0, x1, c, s) = (x0 as i64, x1 as i64, c as i64, s as i64);
            h[2 * i] = wide::round_shift_sat_i64(x0 * c - x1 * s, crate::tables::ROPE_FRAC as i32);
            h[2 * i + 1] = wide::round_shift_sat_i64(x0 * s + x1 * c, crate::tables::ROPE_FRAC as i32);
        }
    }
}

/// `silu(gate) · up`, all Q10. SiLU by linear interpolation in a table of step 1/64 on
/// [−16, 16]; outside it silu(g) = g (g ≥ 16) or 0 (g < −16), both within 2^-10 of exact.
pub fn silu_mul(gate: &[i32], up: &[i32], silu: &[i32], out: &mut [i32]) {
    let centre = (silu.len() / 2) as i32;
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        let idx = (g >> 4) + centre;
        let s = if idx < 0 {
            0
        } else if idx >= 2 * centre {
            g
        } else {
            let (a, b) = (silu[idx as usize], silu[idx as usize + 1]);
            a + (((b - a) * (g & 15) + 8) >> 4) // |b − a| ≤ 18: no overflow
        };
        *o = mul_shift(s, u, FFN_FRAC);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::rows;
    use super::super::{attention_row, KvCache};
    use super::*;
    use crate::pack::Config;
    use crate::tiny::Rng;
    // On wasm32 these run under `wasm-bindgen-test-runner` (Node): scripts/test.sh.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rmsnorm_is_accurate_and_never_overflows() {
        let mut r = Rng(4);
        let g = NormWeight {
            g: (0..64).map(|i| 4096 + 100 * i).collect(),
            g_exp: 12,
            z_frac: 20,
        };
        for x in rows(&mut r, 64) {
            let mut z = vec![0; 64];
            rmsnorm_row(&x, &g, 168, &mut z);
            let xf: Vec<f64> = x.iter().map(|&v| v as f64 / 4096.0).collect();
            let rms = (xf.iter().map(|v| v * v).sum::<f64>() / 64.0 + 1e-5).sqrt();
            let want: Vec<f64> = (0..64)
                .map(|i| xf[i] / rms * g.g[i] as f64 / 4096.0 * (1 << 20) as f64)
                .collect();
            let zmax = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            for i in 0..64 {
                let want = want[i];
                // 2^-10 relative to the row's largest output (the pre-shifted sum of squares).
                let tol = 2.0 + zmax / 1024.0;
                assert!((z[i] as f64 - want).abs() <= tol, "x {} z {} want {want}", x[i], z[i]);
            }
        }
    }

    #[test]
    fn rope_silu_attention_saturate_instead_of_overflowing() {
        let mut r = Rng(5);
        let t = Tables {
            rope_cos: vec![16384, -16384, 11585, 0],
            rope_sin: vec![0, 16384, -11585, -16384],
            att_exp: crate::tables::exp2_table(8, 15),
            out_exp: vec![],
            silu: crate::tables::silu(),
        };
        for mut x in rows(&mut r, 8) {
            let orig = x.clone();
            rope_row(&mut x, 4, 1, &t); // cos = -1, sin = -1/√2·… : just must not panic
            rope_row(&mut x, 4, 0, &t);
            let _ = orig;
            let mut out = vec![0; 8];
            silu_mul(&x, &x.iter().rev().copied().collect::<Vec<_>>(), &t.silu, &mut out);
        }
        // silu(0) = 0, silu(large) = g, silu(very negative) = 0, and the table midpoint.
        let mut o = vec![0; 4];
        silu_mul(&[0, 20 << 10, -(20 << 10), 1 << 10], &[1 << 10; 4], &t.silu, &mut o);
        assert_eq!(o, vec![0, 20 << 10, 0, 749]); // silu(1) = 0.7311 · 1024 = 748.6
                                                  // Attention with the largest keys, values and a full 8192-position context.
        let cfg = Config {
            name: String::new(),
            n_layers: 1,
            dim: 64,
            hidden: 64,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 32,
            vocab: 2,
            ctx: 8192,
            rope_base: 1e4,
            bos: 0,
            eos: 0,
            doc_start: 0,
            norm_eps_q24: 0,
        };
        let n = 8192;
        let cache = KvCache {
            k: (0..n * 32).map(|i| if i % 3 == 0 { 511 } else { -511 }).collect(),
            k_exp: (0..n).map(|i| (i % 24) as i32).collect(),
            v: (0..n * 32)
                .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
                .collect(),
        };
        for q in [
            vec![i32::MAX; 64],
            vec![i32::MIN; 64],
            vec![0; 64],
            (0..64).map(|i| if i % 2 == 0 { i32::MAX } else { i32::MIN }).collect(),
        ] {
            let mut out = vec![0; 64];
            attention_row(&q, &cache, 0, n - 1, &cfg, &t.att_exp, &mut out, &mut Vec::new());
            assert!(out.iter().all(|&o| o.unsigned_abs() <= (1u32 << 30) + (1 << 27)));
        }
        // Uniform attention over equal keys averages the values exactly.
        let cache = KvCache {
            k: vec![0; 4 * 32],
            k_exp: vec![0; 4],
            v: (0..4 * 32).map(|i| ((i / 32) * 256) as i16).collect(),
        };
        let mut out = vec![0; 64];
        attention_row(&vec![0; 64], &cache, 0, 3, &cfg, &t.att_exp, &mut out, &mut Vec::new());
        assert!(out.iter().all(|&o| o == 384 << 15), "{:?}", &out[..2]); // mean(0,1,2,3)·256 = 384 in Q8, p' = 2^13 each (Q0.15)
    }
}
