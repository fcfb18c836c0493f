//! The KV cache: its rows ([`KvCache`]), the re-quantisation of a key (or query) head to
//! |·| ≤ 511 ([`quantize_qk`]), the store of a row ([`kv_store`], twin of
//! `shaders/kv_store.wgsl`) and the sliding window's shift ([`kv_shift`], twin of
//! `shaders/kv_shift.wgsl`). Attention reads it: `attention.rs`.

use super::fixed::QK_INT_MAX;
use crate::pack::Tables;
use crate::wide;

/// Re-quantises a vector to |·| ≤ 511 with a power-of-two scale: returns the exponent.
pub fn quantize_qk(x: &[i32], out: &mut [i16]) -> i32 {
    let m = x.iter().fold(0u32, |m, v| m.max(v.unsigned_abs()));
    let rs = |v: u32, e: u32| if e == 0 { v } else { (v >> e) + ((v >> (e - 1)) & 1) }; // round half up
    let mut e = 0u32;
    while rs(m, e) > QK_INT_MAX {
        e += 1;
    }
    for (o, &v) in out.iter_mut().zip(x) {
        let q = rs(v.unsigned_abs(), e) as i16;
        *o = if v < 0 { -q } else { q };
    }
    e as i32
}

/// A layer's KV cache: keys quantised per (position, kv head), values Q8 in i16. Row
/// `slot·cache_len + pos` holds position `pos` of sequence `slot`.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// `[slots·cache_len, n_kv·head_dim]`
    pub k: Vec<i16>,
    /// `[slots·cache_len, n_kv]`
    pub k_exp: Vec<i32>,
    /// `[slots·cache_len, n_kv·head_dim]`
    pub v: Vec<i16>,
}

/// Writes cache row `row` from a rotated Q10 key row and a Q8 value row.
pub fn kv_store(cache: &mut KvCache, row: usize, k: &[i32], v: &[i32], head_dim: usize) {
    let kvd = k.len();
    for (h, kh) in k.chunks_exact(head_dim).enumerate() {
        let e = quantize_qk(
            kh,
            &mut cache.k[row * kvd + h * head_dim..row * kvd + (h + 1) * head_dim],
        );
        cache.k_exp[row * (kvd / head_dim) + h] = e;
    }
    for (o, &x) in cache.v[row * kvd..(row + 1) * kvd].iter_mut().zip(v) {
        *o = x.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
    }
}

/// Moves cache rows `src..src + n` to `dst..dst + n` (`dst ≤ src`, rows of one sequence),
/// the keys re-rotated from position `p` to `p − (src − dst)`: the context a sliding window
/// keeps ([`crate::eval::KvMode::Shift`]). Per key head: each stored pair (integers in units
/// of 2^e) is rotated by −δθ with the RoPE table's row δ = `src − dst` (products < 2^24,
/// rounded half up like [`rope_row`](super::rope_row)), then re-quantised to |·| ≤ 511 by [`quantize_qk`],
/// whose exponent adds to e (a pair's length is kept, so that is at most +1 per shift, and
/// rarely any). Values are copied. Rows are done in increasing order, each read whole
/// before it is written, so an overlap of the two ranges is safe.
pub fn kv_shift(cache: &mut KvCache, src: usize, dst: usize, n: usize, nkv: usize, head_dim: usize, t: &Tables) {
    debug_assert!(dst <= src && head_dim <= 256);
    let delta = src - dst;
    let kvd = nkv * head_dim;
    let half = head_dim / 2;
    let (cos, sin) = (
        &t.rope_cos[delta * half..(delta + 1) * half],
        &t.rope_sin[delta * half..(delta + 1) * half],
    );
    let mut rot = [0i32; 256];
    let mut q = [0i16; 256];
    for r in 0..n {
        let (s, d) = (src + r, dst + r);
        for h in 0..nkv {
            let ks = &cache.k[s * kvd + h * head_dim..s * kvd + (h + 1) * head_dim];
            for i in 0..half {
                let (x0, x1) = (ks[2 * i] as i64, ks[2 * i + 1] as i64);
                let (c, sn) = (cos[i] as i64, sin[i] as i64);
                rot[2 * i] = wide::round_shift_sat_i64(x0 * c + x1 * sn, crate::tables::ROPE_FRAC as i32);
                rot[2 * i + 1] = wide::round_shift_sat_i64(x1 * c - x0 * sn, crate::tables::ROPE_FRAC as i32);
            }
            let e2 = quantize_qk(&rot[..head_dim], &mut q[..head_dim]);
            let e = cache.k_exp[s * nkv + h] + e2;
            cache.k[d * kvd + h * head_dim..d * kvd + (h + 1) * head_dim].copy_from_slice(&q[..head_dim]);
            cache.k_exp[d * nkv + h] = e;
        }
        cache.v.copy_within(s * kvd..(s + 1) * kvd, d * kvd);
    }
}

#[cfg(test)]
mod tests {
    use super::super::rope_row;
    use super::*;
    use crate::tiny::Rng;
    // On wasm32 these run under `wasm-bindgen-test-runner` (Node): scripts/test.sh.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn shift_tables(ctx: usize, hd: usize) -> Tables {
        let (rope_cos, rope_sin) = crate::tables::rope(ctx, hd, 1e4);
        Tables {
            rope_cos,
            rope_sin,
            att_exp: vec![],
            out_exp: vec![],
            silu: vec![],
        }
    }

    /// A key stored at position p and shifted by δ is the key stored at p − δ, up to the
    /// rounding of one more rotation; a shift by 0 changes nothing; overlapping ranges give
    /// what a copy through a second cache gives.
    #[test]
    fn kv_shift_re_rotates_keys_to_their_new_positions() {
        let (nkv, hd, ctx) = (3, 64, 200);
        let t = shift_tables(ctx, hd);
        let kvd = nkv * hd;
        let mut r = Rng(41);
        let keys: Vec<Vec<i32>> = (0..30)
            .map(|_| {
                (0..kvd)
                    .map(|_| (r.below(1 << 16) as i32 - (1 << 15)) << r.below(8))
                    .collect()
            })
            .collect();
        let vals: Vec<i32> = (0..kvd).map(|_| r.below(60000) as i32 - 30000).collect();
        let store = |pos0: usize, rows: usize| {
            let mut c = KvCache {
                k: vec![0; rows * kvd],
                k_exp: vec![0; rows * nkv],
                v: vec![0; rows * kvd],
            };
            for (i, k) in keys.iter().enumerate() {
                let mut k = k.clone();
                rope_row(&mut k, hd, pos0 + i, &t);
                kv_store(&mut c, pos0 + i, &k, &vals, hd);
            }
            c
        };
        let (p, delta) = (120, 97);
        let mut shifted = store(p, 160);
        kv_shift(&mut shifted, p, p - delta, keys.len(), nkv, hd, &t);
        let direct = store(p - delta, 160);
        let mut worst = 0f64;
        for i in 0..keys.len() {
            let row = p - delta + i;
            assert_eq!(
                shifted.v[row * kvd..(row + 1) * kvd],
                direct.v[row * kvd..(row + 1) * kvd]
            );
            for h in 0..nkv {
                let val =
                    |c: &KvCache, j: usize| c.k[row * kvd + h * hd + j] as f64 * 2f64.powi(c.k_exp[row * nkv + h]);
                let scale = 511.0 * 2f64.powi(direct.k_exp[row * nkv + h]);
                for j in 0..hd {
                    worst = worst.max((val(&shifted, j) - val(&direct, j)).abs() / scale);
                }
            }
        }
        // Two roundings of a 9-bit mantissa: a few units in 511.
        assert!(worst < 4.0 / 511.0, "worst relative error {worst}");
        // Shift by 0: the same cache.
        let c = store(10, 50);
        let mut same = c.clone();
        kv_shift(&mut same, 10, 10, 30, nkv, hd, &t);
        assert_eq!(
            (same.k, same.k_exp, same.v),
            (c.k.clone(), c.k_exp.clone(), c.v.clone())
        );
        // Overlap (rows 10..40 → 3..33) equals going through a separate copy.
        let mut overlapped = c.clone();
        kv_shift(&mut overlapped, 10, 3, 30, nkv, hd, &t);
        let mut copy = c.clone();
        for row in 3..33 {
            // Each row shifted alone from the untouched original.
            let mut one = c.clone();
            kv_shift(&mut one, row + 7, row, 1, nkv, hd, &t);
            copy.k[row * kvd..(row + 1) * kvd].copy_from_slice(&one.k[row * kvd..(row + 1) * kvd]);
            copy.k_exp[row * nkv..(row + 1) * nkv].copy_from_slice(&one.k_exp[row * nkv..(row + 1) * nkv]);
            copy.v[row * kvd..(row + 1) * kvd].copy_from_slice(&one.v[row * kvd..(row + 1) * kvd]);
        }
        assert_eq!(
            (overlapped.k, overlapped.k_exp, overlapped.v),
            (copy.k, copy.k_exp, copy.v)
        );
    }
}
