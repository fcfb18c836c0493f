//! AVX2 versions of the CPU kernels' hot loops.
//!
//! Matmul (`group_q4`, `group_q8`): one group of 8 rows in the engine's interleaved layout
//! (see [`super::CpuQ4`]), one lane per row, so nothing is summed horizontally. Per block and
//! token: eight `maddubs` of a 32-byte weight step (4 weights of each row) with the token's 4
//! activations broadcast, summed in i16 (Q4: each `maddubs` pair ≤ 2·15·127, eight of them ≤
//! 30480 < 2^15), one `madd` to the block dots `S` of the 8 rows, the block terms `T` in 8
//! lanes and `Σ T·a` exact in 64-bit lanes; up to four tokens share each weight load. Same
//! integer arithmetic as [`super::dot_q4`] / [`super::dot_q8`]: the exact sum `Σ T_b·a_b`,
//! then one rounding shift, so the bits are identical (tested below on random and extreme
//! inputs).
//!
//! Each returns whether it ran (false without AVX2: the scalar kernels do the work).

use super::{CpuQ4, CpuQ8, QAct, GROUP};

/// Q4: rows `8g..8g+8` for every token into `o` (`[8, tokens]`); false without AVX2.
pub fn group_q4(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let nb = w.cols / 32;
        assert!(w.cols % 32 == 0 && x.width == w.cols && w.w.len() >= (g + 1) * nb * 128 && w.d.len() >= (g + 1) * nb * GROUP && w.m.len() >= (g + 1) * nb * GROUP && w.e.len() >= (g + 1) * GROUP);
        assert!(x.q.len() >= x.tokens * x.width && x.a.len() >= x.tokens * nb && x.sum.len() >= x.tokens * nb && o.len() >= GROUP * x.tokens);
        let mut t = 0;
        // SAFETY: AVX2 is present (checked above); the shapes are asserted just above.
        unsafe {
            while t + 4 <= x.tokens {
                x86::group_q4::<4>(w, g, x, frac_out, o, t);
                t += 4;
            }
            match x.tokens - t {
                3 => x86::group_q4::<3>(w, g, x, frac_out, o, t),
                2 => x86::group_q4::<2>(w, g, x, frac_out, o, t),
                1 => x86::group_q4::<1>(w, g, x, frac_out, o, t),
                _ => {}
            }
        }
        return true;
    }
    let _ = (w, g, x, frac_out, o);
    false
}

/// Q8: rows `8g..8g+8` for every token into `o` (`[8, tokens]`); false without AVX2.
pub fn group_q8(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let nb = w.cols / 32;
        assert!(w.cols % 32 == 0 && x.width == w.cols && w.q.len() >= (g + 1) * nb * 256 && w.d.len() >= (g + 1) * nb * GROUP && w.e.len() >= (g + 1) * GROUP);
        assert!(x.q.len() >= x.tokens * x.width && x.a.len() >= x.tokens * nb && o.len() >= GROUP * x.tokens);
        let mut t = 0;
        // SAFETY: as above.
        unsafe {
            while t + 4 <= x.tokens {
                x86::group_q8::<4>(w, g, x, frac_out, o, t);
                t += 4;
            }
            match x.tokens - t {
                3 => x86::group_q8::<3>(w, g, x, frac_out, o, t),
                2 => x86::group_q8::<2>(w, g, x, frac_out, o, t),
                1 => x86::group_q8::<1>(w, g, x, frac_out, o, t),
                _ => {}
            }
        }
        return true;
    }
    let _ = (w, g, x, frac_out, o);
    false
}

/// Attention scores of one head over `n = scores.len()` keys (head dim 64) as in
/// [`super::attention_head`]: `t_j = round_shift_sat(q·k_j, shift0 − k_exp_j)`; returns the
/// maximum, or `None` when AVX2 or the shape is not there (the caller runs the scalar loop).
#[allow(clippy::too_many_arguments)]
pub fn head_scores(qi: &[i16], k: &[i16], k_exp: &[i32], kvd: usize, n_kv: usize, kvh: usize, shift0: i32, scores: &mut [i32]) -> Option<i32> {
    #[cfg(target_arch = "x86_64")]
    if qi.len() == 64 && shift0 <= 12 && std::arch::is_x86_feature_detected!("avx2") {
        let n = scores.len();
        assert!(k.len() >= n * kvd && k_exp.len() >= n * n_kv && kvh < n_kv && (kvh + 1) * 64 <= kvd);
        // SAFETY: AVX2 is present; bounds asserted just above.
        return Some(unsafe { x86::head_scores(qi, k, k_exp, kvd, n_kv, kvh, shift0, scores) });
    }
    let _ = (qi, k, k_exp, kvd, n_kv, kvh, shift0, scores);
    None
}

/// `out = Σ_j pn_j·v_j` over keys with `pn_j = floor((p_j·2^15 + sum/2) / sum)` (head dim
/// 64), as in [`super::attention_head`]; false when AVX2 or the shape is not there.
pub fn head_values(p: &[u32], v: &[i16], kvd: usize, off: usize, sum: u32, out: &mut [i32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if out.len() == 64 && std::arch::is_x86_feature_detected!("avx2") {
        assert!(v.len() >= p.len() * kvd && off + 64 <= kvd && sum >= 1 << 15);
        // SAFETY: AVX2 is present; bounds asserted just above.
        unsafe { x86::head_values(p, v, kvd, off, sum, out) };
        return true;
    }
    let _ = (p, v, kvd, off, sum, out);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CpuQ4, CpuQ8, QAct};
    use crate::wide::round_shift_sat_i64;
    use std::arch::x86_64::*;

    /// Sums of eight 8-lane vectors → one 8-lane vector, lane k = Σ p[k].
    #[inline(always)]
    unsafe fn hsum8(p: &[__m256i; 8]) -> __m256i {
        let a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        let b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
        _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(a, b), _mm256_permute2x128_si256::<0x31>(a, b))
    }

    /// Four activations (bytes) broadcast to every lane.
    #[inline(always)]
    unsafe fn bcast4(q: *const i8) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(q as *const i32))
    }

    /// Writes the 8 rows' rounded outputs of token `t`: `acc_e` holds rows 0,2,4,6 and
    /// `acc_o` rows 1,3,5,7 as exact i64 sums.
    #[inline(always)]
    unsafe fn finish(acc_e: __m256i, acc_o: __m256i, e: &[i8], exp: i32, frac_out: i32, o: &mut [i32], t: usize, tokens: usize) {
        let (mut ev, mut od) = ([0i64; 4], [0i64; 4]);
        _mm256_storeu_si256(ev.as_mut_ptr() as *mut __m256i, acc_e);
        _mm256_storeu_si256(od.as_mut_ptr() as *mut __m256i, acc_o);
        for i in 0..4 {
            o[(2 * i) * tokens + t] = round_shift_sat_i64(ev[i], e[2 * i] as i32 - exp - frac_out);
            o[(2 * i + 1) * tokens + t] = round_shift_sat_i64(od[i], e[2 * i + 1] as i32 - exp - frac_out);
        }
    }

    /// Tokens `t0..t0+N` of Q4 group `g` (see [`super::group_q4`]).
    /// `T = d·(S − 8X) + m·X`, |T| < 2^29; `T·a` < 2^42 in i64 lanes.
    #[target_feature(enable = "avx2")]
    pub unsafe fn group_q4<const N: usize>(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
        let (cols, nb) = (w.cols, w.cols / 32);
        let m4 = _mm256_set1_epi8(15);
        let ones = _mm256_set1_epi16(1);
        let mut acc_e = [_mm256_setzero_si256(); N];
        let mut acc_o = [_mm256_setzero_si256(); N];
        for b in 0..nb {
            let wp = w.w.as_ptr().add((g * nb + b) * 128);
            let mut wv = [_mm256_setzero_si256(); 8];
            for p in 0..4 {
                let raw = _mm256_loadu_si256(wp.add(32 * p) as *const __m256i);
                wv[2 * p] = _mm256_and_si256(raw, m4);
                wv[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
            }
            let dv = _mm256_cvtepi16_epi32(_mm_loadu_si128(w.d.as_ptr().add((g * nb + b) * 8) as *const __m128i));
            let mv = _mm256_cvtepi16_epi32(_mm_loadu_si128(w.m.as_ptr().add((g * nb + b) * 8) as *const __m128i));
            for k in 0..N {
                let t = t0 + k;
                let q = x.q.as_ptr().add(t * cols + 32 * b);
                let mut s16 = _mm256_maddubs_epi16(wv[0], bcast4(q));
                for (st, wk) in wv.iter().enumerate().skip(1) {
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(*wk, bcast4(q.add(4 * st))));
                }
                let s = _mm256_madd_epi16(s16, ones); // Σ nib·q per row, |·| ≤ 15·127·32
                let xs = _mm256_set1_epi32(*x.sum.get_unchecked(t * nb + b));
                let av = _mm256_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
                let s1 = _mm256_sub_epi32(s, _mm256_slli_epi32::<3>(xs)); // S' = S − 8X
                let tv = _mm256_add_epi32(_mm256_mullo_epi32(dv, s1), _mm256_mullo_epi32(mv, xs));
                acc_e[k] = _mm256_add_epi64(acc_e[k], _mm256_mul_epi32(tv, av));
                acc_o[k] = _mm256_add_epi64(acc_o[k], _mm256_mul_epi32(_mm256_srli_epi64::<32>(tv), av));
            }
        }
        for k in 0..N {
            finish(acc_e[k], acc_o[k], &w.e[g * 8..g * 8 + 8], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
        }
    }

    /// Tokens `t0..t0+N` of Q8 group `g`: `maddubs` of |w| with the activations carrying w's
    /// sign (pairs ≤ 2·128·127 < 2^15), one `madd` per step; `T = d·S`, |T| < 2^30.
    #[target_feature(enable = "avx2")]
    pub unsafe fn group_q8<const N: usize>(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
        let (cols, nb) = (w.cols, w.cols / 32);
        let ones = _mm256_set1_epi16(1);
        let mut acc_e = [_mm256_setzero_si256(); N];
        let mut acc_o = [_mm256_setzero_si256(); N];
        for b in 0..nb {
            let wp = w.q.as_ptr().add((g * nb + b) * 256);
            let wv: [__m256i; 8] = std::array::from_fn(|k| _mm256_loadu_si256(wp.add(32 * k) as *const __m256i));
            let dv = _mm256_cvtepi16_epi32(_mm_loadu_si128(w.d.as_ptr().add((g * nb + b) * 8) as *const __m128i));
            for k in 0..N {
                let t = t0 + k;
                let q = x.q.as_ptr().add(t * cols + 32 * b);
                let mut s = _mm256_setzero_si256();
                for (st, wk) in wv.iter().enumerate() {
                    let p = _mm256_maddubs_epi16(_mm256_abs_epi8(*wk), _mm256_sign_epi8(bcast4(q.add(4 * st)), *wk));
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
                }
                let av = _mm256_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
                let tv = _mm256_mullo_epi32(dv, s);
                acc_e[k] = _mm256_add_epi64(acc_e[k], _mm256_mul_epi32(tv, av));
                acc_o[k] = _mm256_add_epi64(acc_o[k], _mm256_mul_epi32(_mm256_srli_epi64::<32>(tv), av));
            }
        }
        for k in 0..N {
            finish(acc_e[k], acc_o[k], &w.e[g * 8..g * 8 + 8], x.exp[t0 + k], frac_out, o, t0 + k, x.tokens);
        }
    }

    /// See [`super::head_scores`]. Eight keys per step: four `madd`s per key, the eight
    /// sums reduced to one vector, then the per-key rounding shift in 8 lanes: for `s > 0`
    /// `(t + 2^(s−1)) >> s` (|t| < 2^24, s ≤ 12: no overflow), for `s ≤ 0` a left shift that
    /// saturates when shifting back does not give `t` (also for shifts ≥ 32, where it is 0).
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn head_scores(qi: &[i16], k: &[i16], k_exp: &[i32], kvd: usize, n_kv: usize, kvh: usize, shift0: i32, scores: &mut [i32]) -> i32 {
        let n = scores.len();
        let q: [__m256i; 4] = std::array::from_fn(|c| _mm256_loadu_si256(qi.as_ptr().add(16 * c) as *const __m256i));
        let kp = k.as_ptr().add(kvh * 64);
        let dot = |j: usize| {
            let r = kp.add(j * kvd);
            let m = |c: usize| _mm256_madd_epi16(q[c], _mm256_loadu_si256(r.add(16 * c) as *const __m256i));
            _mm256_add_epi32(_mm256_add_epi32(m(0), m(1)), _mm256_add_epi32(m(2), m(3)))
        };
        let mut vmax = _mm256_set1_epi32(i32::MIN);
        let (one, zero) = (_mm256_set1_epi32(1), _mm256_setzero_si256());
        let mut j = 0;
        while j + 8 <= n {
            let p: [__m256i; 8] = std::array::from_fn(|i| dot(j + i));
            let t = hsum8(&p);
            let ek: [i32; 8] = std::array::from_fn(|i| k_exp[(j + i) * n_kv + kvh]);
            let s = _mm256_sub_epi32(_mm256_set1_epi32(shift0), _mm256_loadu_si256(ek.as_ptr() as *const __m256i));
            // s > 0: round half up.
            let right = _mm256_srav_epi32(_mm256_add_epi32(t, _mm256_sllv_epi32(one, _mm256_sub_epi32(s, one))), s);
            // s ≤ 0: exact left shift or saturation.
            let l = _mm256_sub_epi32(zero, s);
            let sh = _mm256_sllv_epi32(t, l);
            let fits = _mm256_cmpeq_epi32(_mm256_srav_epi32(sh, l), t);
            let sat = _mm256_xor_si256(_mm256_set1_epi32(i32::MAX), _mm256_srai_epi32::<31>(t)); // MAX or MIN by sign
            let left = _mm256_blendv_epi8(sat, sh, fits);
            let r = _mm256_blendv_epi8(left, right, _mm256_cmpgt_epi32(s, zero));
            _mm256_storeu_si256(scores.as_mut_ptr().add(j) as *mut __m256i, r);
            vmax = _mm256_max_epi32(vmax, r);
            j += 8;
        }
        let mut m = [0i32; 8];
        _mm256_storeu_si256(m.as_mut_ptr() as *mut __m256i, vmax);
        let mut tmax = m.iter().copied().max().unwrap_or(i32::MIN);
        for (jj, sc) in scores.iter_mut().enumerate().skip(j) {
            let r = kp.add(jj * kvd);
            let mut d = 0i32;
            for i in 0..64 {
                d += qi[i] as i32 * *r.add(i) as i32;
            }
            *sc = round_shift_sat_i64(d as i64, shift0 - k_exp[jj * n_kv + kvh]);
            tmax = tmax.max(*sc);
        }
        tmax
    }

    /// See [`super::head_values`]. Keys in pairs: `madd` of the interleaved values of two keys
    /// with the pair `(pn_j, pn_j+1)` (each ≤ 32767; a `pn` of 2^15 is split as 32767 + 1 in a
    /// second pass). Products ≤ 2·32767·2^15 < 2^31, and every partial sum of `Σ pn·v` is
    /// bounded by `Σ pn · 2^15 ≤ (2^15 + ctx/2)·2^15 < 2^31`, so the sums are exact in any order.
    #[target_feature(enable = "avx2")]
    pub unsafe fn head_values(p: &[u32], v: &[i16], kvd: usize, off: usize, sum: u32, out: &mut [i32]) {
        // pn = floor(num / sum), num = p·2^15 + sum/2 < 2^31, as floor(num · inv / 2^64) with
        // inv = ceil(2^64 / sum): exact (see `attention_head`).
        let inv = (((1u128 << 64) + sum as u128 - 1) / sum as u128) as u64;
        let pn = |pj: u32| if pj == 0 { 0 } else { (((((pj << 15) + sum / 2) as u64) as u128 * inv as u128) >> 64) as u32 };
        let mut lo = [_mm256_setzero_si256(); 4];
        let mut hi = [_mm256_setzero_si256(); 4];
        let vp = v.as_ptr().add(off);
        let n = p.len();
        let mut j = 0;
        while j < n {
            let (a, b) = (pn(p[j]), if j + 1 < n { pn(p[j + 1]) } else { 0 });
            if a == 0 && b == 0 {
                j += 2;
                continue;
            }
            let ra = vp.add(j * kvd);
            let rb = if j + 1 < n { vp.add((j + 1) * kvd) } else { ra };
            let (ca, cb) = ((a >> 15) as i32, (b >> 15) as i32); // 1 where pn = 2^15
            for (wa, wb) in [((a as i32 - ca), (b as i32 - cb)), (ca, cb)] {
                if wa == 0 && wb == 0 {
                    continue;
                }
                let w = _mm256_set1_epi32((wb << 16) | (wa & 0xFFFF));
                for c in 0..4 {
                    let va = _mm256_loadu_si256(ra.add(16 * c) as *const __m256i);
                    let vb = _mm256_loadu_si256(rb.add(16 * c) as *const __m256i);
                    lo[c] = _mm256_add_epi32(lo[c], _mm256_madd_epi16(_mm256_unpacklo_epi16(va, vb), w));
                    hi[c] = _mm256_add_epi32(hi[c], _mm256_madd_epi16(_mm256_unpackhi_epi16(va, vb), w));
                }
            }
            j += 2;
        }
        // unpacklo/hi work per 128-bit half: lo[c] holds elements 16c+0..4 and 16c+8..12,
        // hi[c] 16c+4..8 and 16c+12..16.
        for c in 0..4 {
            _mm256_storeu_si256(out.as_mut_ptr().add(16 * c) as *mut __m256i, _mm256_permute2x128_si256::<0x20>(lo[c], hi[c]));
            _mm256_storeu_si256(out.as_mut_ptr().add(16 * c + 8) as *mut __m256i, _mm256_permute2x128_si256::<0x31>(lo[c], hi[c]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{dot_q4, dot_q8, matmul_q4, matmul_q8, quantize, CpuQ4, CpuQ8};
    use super::*;
    use crate::pack::{Q4Matrix, Q8Matrix};
    use crate::tiny::Rng;

    fn act(r: &mut Rng, tokens: usize, width: usize, extreme: bool) -> QAct {
        let z: Vec<i32> = (0..tokens * width).map(|i| if extreme { [i32::MAX, i32::MIN, 1, -1][i % 4] } else { (r.next_u64() as i32) >> (r.below(28) as u32) }).collect();
        quantize(&z, width, 3)
    }

    /// The engine's layout and kernels (AVX2 where present, the scalar fallback otherwise,
    /// tail rows) against `dot_q4` on the pack's matrix, for every output.
    #[test]
    fn q4_engine_layout_equals_scalar() {
        let mut r = Rng(21);
        for (rows, cols, tokens, extreme) in [(21, 1536, 9, false), (8, 64, 4, true), (16, 576, 13, false), (11, 1536, 3, true), (3, 288, 1, false), (16, 96, 2, false)] {
            let nb = cols / 32;
            let ext = |r: &mut Rng, v: i16| if extreme { [v, -v][r.below(2) as usize] } else { (r.below(2 * v as u64 + 1) as i32 - v as i32) as i16 };
            let w = Q4Matrix {
                rows,
                cols,
                nib: (0..rows * cols / 2).map(|_| if extreme { [0xF0, 0x0F, 0xFF][r.below(3) as usize] } else { r.below(256) as u8 }).collect(),
                d: (0..rows * nb).map(|_| ext(&mut r, 8191)).collect(),
                m: (0..rows * nb).map(|_| ext(&mut r, 8191)).collect(),
                e: (0..rows).map(|_| r.below(30) as i8).collect(),
            };
            let x = act(&mut r, tokens, cols, extreme);
            let cw = CpuQ4::new(&w);
            for g in 0..rows / GROUP {
                for i in 0..GROUP {
                    for b in 0..nb {
                        let rr = g * GROUP + i;
                        assert_eq!(cw.block(g, i, b)[..], w.nib[rr * cols / 2 + 16 * b..rr * cols / 2 + 16 * (b + 1)]);
                    }
                }
            }
            let got = matmul_q4(&cw, &x, 10);
            for row in 0..rows {
                for t in 0..tokens {
                    let want = dot_q4(&w.nib[row * cols / 2..(row + 1) * cols / 2], &w.d[row * nb..(row + 1) * nb], &w.m[row * nb..(row + 1) * nb], w.e[row] as i32, &x.q[t * cols..(t + 1) * cols], &x.a[t * nb..(t + 1) * nb], &x.sum[t * nb..(t + 1) * nb], x.exp[t], 10);
                    assert_eq!(got[t * rows + row], want, "row {row} token {t}");
                }
            }
        }
    }

    #[test]
    fn q8_engine_layout_equals_scalar() {
        let mut r = Rng(22);
        for (rows, cols, tokens, extreme) in [(22, 1024, 8, false), (8, 1024, 4, true), (13, 576, 11, false), (16, 1024, 2, true), (9, 96, 1, false)] {
            let nb = cols / 32;
            let w = Q8Matrix {
                rows,
                cols,
                q: (0..rows * cols).map(|_| if extreme { -128 } else { r.next_u64() as i8 }).collect(),
                d: (0..rows * nb).map(|_| if extreme { 2047 } else { (r.below(4095) as i32 - 2047) as i16 }).collect(),
                e: (0..rows).map(|_| r.below(30) as i8).collect(),
            };
            let x = act(&mut r, tokens, cols, extreme);
            let cw = CpuQ8::new(&w);
            for row in 0..rows {
                for c in 0..cols {
                    assert_eq!(cw.at(row, c), (w.q[row * cols + c], w.d[row * nb + c / 32]));
                }
                assert_eq!(cw.exp(row), w.e[row]);
            }
            let got = matmul_q8(&cw, &x, 10);
            for row in 0..rows {
                for t in 0..tokens {
                    let want = dot_q8(&w.q[row * cols..(row + 1) * cols], &w.d[row * nb..(row + 1) * nb], w.e[row] as i32, &x.q[t * cols..(t + 1) * cols], &x.a[t * nb..(t + 1) * nb], x.exp[t], 10);
                    assert_eq!(got[t * rows + row], want, "row {row} token {t}");
                }
            }
        }
    }
}
