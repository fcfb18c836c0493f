//! The 256-bit kernels: [`Isa::Avx2`](super::super::Isa::Avx2) (matmul groups and
//! attention) and [`Isa::AvxVnni`](super::super::Isa::AvxVnni) (matmul groups with `vpdpbusd`).

use super::{hsum8, p_norm8, prefetch_ahead, scores_by8};
use crate::backend::cpu::{CpuQ4, CpuQ8, QAct};
use crate::wide::round_shift_sat_i64;
use std::arch::x86_64::*;

/// Four activations (bytes) broadcast to every lane.
#[inline(always)]
unsafe fn bcast4(q: *const i8) -> __m256i {
    _mm256_set1_epi32(std::ptr::read_unaligned(q as *const i32))
}

/// Writes the 8 rows' rounded outputs of token `t`: `acc_e` holds rows 0,2,4,6 and
/// `acc_o` rows 1,3,5,7 as exact i64 sums.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn finish(
    acc_e: __m256i,
    acc_o: __m256i,
    e: &[i8],
    exp: i32,
    frac_out: i32,
    o: &mut [i32],
    t: usize,
    tokens: usize,
) {
    let (mut ev, mut od) = ([0i64; 4], [0i64; 4]);
    _mm256_storeu_si256(ev.as_mut_ptr() as *mut __m256i, acc_e);
    _mm256_storeu_si256(od.as_mut_ptr() as *mut __m256i, acc_o);
    for i in 0..4 {
        o[(2 * i) * tokens + t] = round_shift_sat_i64(ev[i], e[2 * i] as i32 - exp - frac_out);
        o[(2 * i + 1) * tokens + t] = round_shift_sat_i64(od[i], e[2 * i + 1] as i32 - exp - frac_out);
    }
}

/// Tokens `t0..t0+N` of Q4 group `g` (see [`super::super::group_q4`]).
/// `T = d·(S − 8X) + m·X`, |T| < 2^29; `T·a` < 2^42 in i64 lanes. Per block, each 32-byte
/// load of nibbles is split into its two steps and used by every token at once, so the
/// registers hold N i16 partial dots and 2N accumulators (no spill up to N = 4).
///
/// `T` takes two `madd`s and no 32-bit multiply: `T = d·S + (m·X − 8d·X)`, the first the
/// i16 pair sums of row r (lanes `2r`, `2r+1`, each ≤ 4·2·15·127 = 30,480) times
/// `(d_r, d_r)`, |·| ≤ 2·8191·30,480 < 2^31; the second `(m_r, d_r)` times `(X, −8X)`
/// (|8X| ≤ 32,512 fits i16), |·| ≤ 8191·(4064 + 32,512) < 2^31. Their i32 sum wraps
/// exactly to T since |T| < 2^31.
#[target_feature(enable = "avx2")]
pub unsafe fn group_q4<const N: usize>(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let m4 = _mm256_set1_epi8(15);
    let mut acc_e = [_mm256_setzero_si256(); N];
    let mut acc_o = [_mm256_setzero_si256(); N];
    let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
    for b in 0..nb {
        let wp = w.w.as_ptr().add((g * nb + b) * 128);
        prefetch_ahead(wp, 128);
        let mut s16 = [_mm256_setzero_si256(); N];
        for p in 0..4 {
            let raw = _mm256_loadu_si256(wp.add(32 * p) as *const __m256i);
            let lo = _mm256_and_si256(raw, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
            for k in 0..N {
                let q = qp[k].add(32 * b + 8 * p);
                let pair = _mm256_add_epi16(
                    _mm256_maddubs_epi16(lo, bcast4(q)),
                    _mm256_maddubs_epi16(hi, bcast4(q.add(4))),
                );
                s16[k] = _mm256_add_epi16(s16[k], pair);
            }
        }
        let d = _mm_loadu_si128(w.d.as_ptr().add((g * nb + b) * 8) as *const __m128i);
        let m = _mm_loadu_si128(w.m.as_ptr().add((g * nb + b) * 8) as *const __m128i);
        let dd = _mm256_set_m128i(_mm_unpackhi_epi16(d, d), _mm_unpacklo_epi16(d, d)); // (d_r, d_r)
        let md = _mm256_set_m128i(_mm_unpackhi_epi16(m, d), _mm_unpacklo_epi16(m, d)); // (m_r, d_r)
        for k in 0..N {
            let t = t0 + k;
            // (X, −8X) as the halves of one i32 (`madd` reads each half as i16).
            let xs = *x.sum.get_unchecked(t * nb + b);
            let xp = _mm256_set1_epi32(((xs.wrapping_mul(-8) as u32) << 16 | (xs as u32 & 0xffff)) as i32);
            let av = _mm256_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
            let tv = _mm256_add_epi32(_mm256_madd_epi16(s16[k], dd), _mm256_madd_epi16(md, xp));
            acc_e[k] = _mm256_add_epi64(acc_e[k], _mm256_mul_epi32(tv, av));
            acc_o[k] = _mm256_add_epi64(acc_o[k], _mm256_mul_epi32(_mm256_srli_epi64::<32>(tv), av));
        }
    }
    for k in 0..N {
        finish(
            acc_e[k],
            acc_o[k],
            &w.e[g * 8..g * 8 + 8],
            x.exp[t0 + k],
            frac_out,
            o,
            t0 + k,
            x.tokens,
        );
    }
}

/// Tokens `t0..t0+N` of Q8 group `g`: `maddubs` of |w| with the activations carrying w's
/// sign (pairs ≤ 2·128·127 < 2^15), one `madd` per step by `(d_r, d_r)`, which makes `T =
/// d·S` without a 32-bit multiply: a step's lane is ≤ 2047·2·32,512 < 2^27, eight < 2^30.
#[target_feature(enable = "avx2")]
pub unsafe fn group_q8<const N: usize>(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let mut acc_e = [_mm256_setzero_si256(); N];
    let mut acc_o = [_mm256_setzero_si256(); N];
    let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
    for b in 0..nb {
        let wp = w.q.as_ptr().add((g * nb + b) * 256);
        prefetch_ahead(wp, 256);
        let d = _mm_loadu_si128(w.d.as_ptr().add((g * nb + b) * 8) as *const __m128i);
        let dd = _mm256_set_m128i(_mm_unpackhi_epi16(d, d), _mm_unpacklo_epi16(d, d)); // (d_r, d_r)
                                                                                       // Each weight step is loaded once and used by every token (N i32 partial T).
        let mut tk = [_mm256_setzero_si256(); N];
        for st in 0..8 {
            let wk = _mm256_loadu_si256(wp.add(32 * st) as *const __m256i);
            let wa = _mm256_abs_epi8(wk);
            for k in 0..N {
                let p = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(bcast4(qp[k].add(32 * b + 4 * st)), wk));
                tk[k] = _mm256_add_epi32(tk[k], _mm256_madd_epi16(p, dd));
            }
        }
        for k in 0..N {
            let t = t0 + k;
            let av = _mm256_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
            let tv = tk[k];
            acc_e[k] = _mm256_add_epi64(acc_e[k], _mm256_mul_epi32(tv, av));
            acc_o[k] = _mm256_add_epi64(acc_o[k], _mm256_mul_epi32(_mm256_srli_epi64::<32>(tv), av));
        }
    }
    for k in 0..N {
        finish(
            acc_e[k],
            acc_o[k],
            &w.e[g * 8..g * 8 + 8],
            x.exp[t0 + k],
            frac_out,
            o,
            t0 + k,
            x.tokens,
        );
    }
}

/// Tokens `t0..t0+N` of Q4 group `g` with AVX-VNNI: per block and token, eight
/// `vpdpbusd` (nibbles as u8 × activations as i8) give each row's exact block dot `S` in
/// an i32 lane (|S| ≤ 32·15·127 < 2^16), then `T = d·S + (m·X − 8d·X)`: `d·S` one
/// `mullo` (|·| < 2^13·2^16 = 2^29), the rest the `madd` of [`group_q4`]; the i32 sum
/// wraps exactly to T (|T| < 2^31). `Σ T·a` as there.
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn vnni_q4<const N: usize>(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let m4 = _mm256_set1_epi8(15);
    let mut acc_e = [_mm256_setzero_si256(); N];
    let mut acc_o = [_mm256_setzero_si256(); N];
    let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
    for b in 0..nb {
        let wp = w.w.as_ptr().add((g * nb + b) * 128);
        prefetch_ahead(wp, 128);
        let mut s32 = [_mm256_setzero_si256(); N];
        for p in 0..4 {
            let raw = _mm256_loadu_si256(wp.add(32 * p) as *const __m256i);
            let lo = _mm256_and_si256(raw, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
            for k in 0..N {
                let q = qp[k].add(32 * b + 8 * p);
                s32[k] = _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(s32[k], lo, bcast4(q)), hi, bcast4(q.add(4)));
            }
        }
        let d = _mm_loadu_si128(w.d.as_ptr().add((g * nb + b) * 8) as *const __m128i);
        let m = _mm_loadu_si128(w.m.as_ptr().add((g * nb + b) * 8) as *const __m128i);
        let d32 = _mm256_cvtepi16_epi32(d);
        let md = _mm256_set_m128i(_mm_unpackhi_epi16(m, d), _mm_unpacklo_epi16(m, d)); // (m_r, d_r)
        for k in 0..N {
            let t = t0 + k;
            let xs = *x.sum.get_unchecked(t * nb + b);
            let xp = _mm256_set1_epi32(((xs.wrapping_mul(-8) as u32) << 16 | (xs as u32 & 0xffff)) as i32);
            let av = _mm256_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
            let tv = _mm256_add_epi32(_mm256_mullo_epi32(s32[k], d32), _mm256_madd_epi16(md, xp));
            acc_e[k] = _mm256_add_epi64(acc_e[k], _mm256_mul_epi32(tv, av));
            acc_o[k] = _mm256_add_epi64(acc_o[k], _mm256_mul_epi32(_mm256_srli_epi64::<32>(tv), av));
        }
    }
    for k in 0..N {
        finish(
            acc_e[k],
            acc_o[k],
            &w.e[g * 8..g * 8 + 8],
            x.exp[t0 + k],
            frac_out,
            o,
            t0 + k,
            x.tokens,
        );
    }
}

/// Tokens `t0..t0+N` of Q8 group `g` with AVX-VNNI: one `vpdpbusd` per step of |w| (u8,
/// ≤ 128) with the activations carrying w's sign (|q| ≤ 127), so each row's block dot
/// `S` sums exactly in an i32 lane (|S| ≤ 32·128·127 < 2^19), then `T = d·S` by one `mullo`
/// per block (|T| ≤ 2047·2^19 < 2^30).
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn vnni_q8<const N: usize>(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let mut acc_e = [_mm256_setzero_si256(); N];
    let mut acc_o = [_mm256_setzero_si256(); N];
    let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
    for b in 0..nb {
        let wp = w.q.as_ptr().add((g * nb + b) * 256);
        prefetch_ahead(wp, 256);
        let d32 = _mm256_cvtepi16_epi32(_mm_loadu_si128(w.d.as_ptr().add((g * nb + b) * 8) as *const __m128i));
        let mut sk = [_mm256_setzero_si256(); N];
        for st in 0..8 {
            let wk = _mm256_loadu_si256(wp.add(32 * st) as *const __m256i);
            let wa = _mm256_abs_epi8(wk);
            for k in 0..N {
                sk[k] = _mm256_dpbusd_avx_epi32(sk[k], wa, _mm256_sign_epi8(bcast4(qp[k].add(32 * b + 4 * st)), wk));
            }
        }
        for k in 0..N {
            let t = t0 + k;
            let av = _mm256_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
            let tv = _mm256_mullo_epi32(sk[k], d32);
            acc_e[k] = _mm256_add_epi64(acc_e[k], _mm256_mul_epi32(tv, av));
            acc_o[k] = _mm256_add_epi64(acc_o[k], _mm256_mul_epi32(_mm256_srli_epi64::<32>(tv), av));
        }
    }
    for k in 0..N {
        finish(
            acc_e[k],
            acc_o[k],
            &w.e[g * 8..g * 8 + 8],
            x.exp[t0 + k],
            frac_out,
            o,
            t0 + k,
            x.tokens,
        );
    }
}

/// See [`super::super::head_scores`]. Eight keys per step: four `madd`s per key, the eight
/// sums reduced to one vector, then the per-key rounding shift of [`scores_by8`].
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn head_scores(
    qi: &[i16],
    k: &[i16],
    k_exp: &[i32],
    kvd: usize,
    n_kv: usize,
    kvh: usize,
    shift0: i32,
    scores: &mut [i32],
) -> i32 {
    let q: [__m256i; 4] = std::array::from_fn(|c| _mm256_loadu_si256(qi.as_ptr().add(16 * c) as *const __m256i));
    let kp = k.as_ptr().add(kvh * 64);
    let dot = |j: usize| {
        let r = kp.add(j * kvd);
        let m = |c: usize| _mm256_madd_epi16(q[c], _mm256_loadu_si256(r.add(16 * c) as *const __m256i));
        _mm256_add_epi32(_mm256_add_epi32(m(0), m(1)), _mm256_add_epi32(m(2), m(3)))
    };
    scores_by8(
        |j| hsum8(&std::array::from_fn(|i| dot(j + i))),
        qi,
        k,
        k_exp,
        kvd,
        n_kv,
        kvh,
        shift0,
        scores,
    )
}

/// See [`super::super::head_probs`]: eight keys per step, the table read by a gather; a shift
/// by `d >> 8 ≥ 16` leaves 0 of an entry ≤ 2^15 (and `srlv` gives 0 for counts ≥ 32).
#[target_feature(enable = "avx2")]
pub unsafe fn head_probs(scores: &[i32], tmax: i32, exp_q15: &[u32], probs: &mut [u32]) -> u32 {
    let n = scores.len();
    let (tm, m255) = (_mm256_set1_epi32(tmax), _mm256_set1_epi32(255));
    let mut vsum = _mm256_setzero_si256();
    let mut j = 0;
    while j + 8 <= n {
        let d = _mm256_sub_epi32(tm, _mm256_loadu_si256(scores.as_ptr().add(j) as *const __m256i));
        let e = _mm256_i32gather_epi32::<4>(exp_q15.as_ptr() as *const i32, _mm256_and_si256(d, m255));
        let p = _mm256_srlv_epi32(e, _mm256_srli_epi32::<8>(d));
        _mm256_storeu_si256(probs.as_mut_ptr().add(j) as *mut __m256i, p);
        vsum = _mm256_add_epi32(vsum, p);
        j += 8;
    }
    let mut l = [0u32; 8];
    _mm256_storeu_si256(l.as_mut_ptr() as *mut __m256i, vsum);
    l.iter().sum::<u32>() + super::portable::head_probs(&scores[j..], tmax, exp_q15, &mut probs[j..])
}

/// See [`super::super::head_values`]. The normalised probabilities are made eight at a time
/// first ([`p_norm8`]), as 16-bit pairs `(pn_j, pn_j+1)`; then keys go in pairs: `madd` of
/// the interleaved values of two keys with their pair (each ≤ 32767; a `pn` of 2^15 is
/// split as 32767 + 1 in a second pass). Products ≤ 2·32767·2^15 < 2^31, and every
/// partial sum of `Σ pn·v` is bounded by `Σ pn · 2^15 ≤ (2^15 + ctx/2)·2^15 < 2^31`, so
/// the sums are exact in any order.
#[target_feature(enable = "avx2")]
pub unsafe fn head_values(p: &[u32], v: &[i16], kvd: usize, off: usize, sum: u32, out: &mut [i32]) {
    let inv = super::recip(sum);
    let (ih, il, half) = (
        _mm256_set1_epi64x((inv >> 32) as i64),
        _mm256_set1_epi64x(inv as u32 as i64),
        _mm256_set1_epi32((sum / 2) as i32),
    );
    let mut lo = [_mm256_setzero_si256(); 4];
    let mut hi = [_mm256_setzero_si256(); 4];
    let vp = v.as_ptr().add(off);
    let n = p.len();
    // 16 keys at a time: their pn as 8 pairs, then the pairs that are not (0, 0).
    let mut pn = [0u32; 16];
    let mut j0 = 0;
    while j0 < n {
        let m = (n - j0).min(16);
        if m == 16 {
            for h in 0..2 {
                let x = p_norm8(
                    _mm256_loadu_si256(p.as_ptr().add(j0 + 8 * h) as *const __m256i),
                    half,
                    ih,
                    il,
                );
                _mm256_storeu_si256(pn.as_mut_ptr().add(8 * h) as *mut __m256i, x);
            }
        } else {
            pn = [0; 16];
            for (o, &pj) in pn.iter_mut().zip(&p[j0..]) {
                *o = super::p_norm(pj, sum, inv);
            }
        }
        for i in (0..m).step_by(2) {
            let (a, b) = (pn[i], pn[i + 1]); // pn[m] is 0 past the end
            if a == 0 && b == 0 {
                continue;
            }
            let j = j0 + i;
            let ra = vp.add(j * kvd);
            let rb = if j + 1 < n { vp.add((j + 1) * kvd) } else { ra };
            for w in super::pair_words(a, b) {
                if w == 0 {
                    continue;
                }
                let w = _mm256_set1_epi32(w);
                for c in 0..4 {
                    let va = _mm256_loadu_si256(ra.add(16 * c) as *const __m256i);
                    let vb = _mm256_loadu_si256(rb.add(16 * c) as *const __m256i);
                    lo[c] = _mm256_add_epi32(lo[c], _mm256_madd_epi16(_mm256_unpacklo_epi16(va, vb), w));
                    hi[c] = _mm256_add_epi32(hi[c], _mm256_madd_epi16(_mm256_unpackhi_epi16(va, vb), w));
                }
            }
        }
        j0 += 16;
    }
    // unpacklo/hi work per 128-bit half: lo[c] holds elements 16c+0..4 and 16c+8..12,
    // hi[c] 16c+4..8 and 16c+12..16.
    for c in 0..4 {
        let o = out.as_mut_ptr().add(16 * c) as *mut __m256i;
        let (o0, o1) = (_mm256_loadu_si256(o), _mm256_loadu_si256(o.add(1)));
        _mm256_storeu_si256(o, _mm256_add_epi32(o0, _mm256_permute2x128_si256::<0x20>(lo[c], hi[c])));
        _mm256_storeu_si256(
            o.add(1),
            _mm256_add_epi32(o1, _mm256_permute2x128_si256::<0x31>(lo[c], hi[c])),
        );
    }
}
