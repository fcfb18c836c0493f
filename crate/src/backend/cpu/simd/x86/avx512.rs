//! The 512-bit kernels of [`Isa::Avx512Vnni`](super::super::Isa::Avx512Vnni): matmul over two
//! groups at once (16 rows), attention scores and values.

use super::{hsum8, p_norm8, prefetch_ahead, scores_by8};
use crate::backend::cpu::{CpuQ4, CpuQ8, QAct};
use crate::wide::round_shift_sat_i64;
use std::arch::x86_64::*;

/// Writes the 16 rows' rounded outputs of token `t` from a two-group kernel: `acc_e`
/// holds rows 0, 2, …, 14 and `acc_o` rows 1, 3, …, 15 as exact i64 sums.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn finish16(
    acc_e: __m512i,
    acc_o: __m512i,
    e: &[i8],
    exp: i32,
    frac_out: i32,
    o: &mut [i32],
    t: usize,
    tokens: usize,
) {
    let (mut ev, mut od) = ([0i64; 8], [0i64; 8]);
    _mm512_storeu_si512(ev.as_mut_ptr() as *mut __m512i, acc_e);
    _mm512_storeu_si512(od.as_mut_ptr() as *mut __m512i, acc_o);
    for i in 0..8 {
        o[(2 * i) * tokens + t] = round_shift_sat_i64(ev[i], e[2 * i] as i32 - exp - frac_out);
        o[(2 * i + 1) * tokens + t] = round_shift_sat_i64(od[i], e[2 * i + 1] as i32 - exp - frac_out);
    }
}

/// The 32-byte steps of groups `g` and `g + 1` at the same offset as one 512-bit vector
/// (group `g` in the low half: lane `r` is row `r` of the pair).
#[inline(always)]
unsafe fn pair_load(p0: *const u8, p1: *const u8) -> __m512i {
    _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_loadu_si256(p0 as *const __m256i)),
        _mm256_loadu_si256(p1 as *const __m256i),
    )
}

/// Per-row block values of groups `g` and `g + 1` (8 i16 each) widened to 16 i32 lanes.
#[inline(always)]
unsafe fn pair_i16(p0: *const i16, p1: *const i16) -> __m512i {
    _mm512_cvtepi16_epi32(_mm256_set_m128i(
        _mm_loadu_si128(p1 as *const __m128i),
        _mm_loadu_si128(p0 as *const __m128i),
    ))
}

/// Tokens `t0..t0+N` of Q4 groups `g` and `g + 1` with AVX-512 VNNI: the arithmetic of
/// [`vnni_q4`](super::vnni_q4) lane for lane, on 16 lanes (the two groups' rows) instead of 8, so each
/// activation broadcast, `vpdpbusd` and block scaling serves 16 rows.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
pub unsafe fn vnni512_q4<const N: usize>(w: &CpuQ4, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let m4 = _mm512_set1_epi8(15);
    let mut acc_e = [_mm512_setzero_si512(); N];
    let mut acc_o = [_mm512_setzero_si512(); N];
    let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
    for b in 0..nb {
        let (i0, i1) = (g * nb + b, (g + 1) * nb + b);
        let (wp0, wp1) = (w.w.as_ptr().add(i0 * 128), w.w.as_ptr().add(i1 * 128));
        prefetch_ahead(wp0, 128);
        prefetch_ahead(wp1, 128);
        let mut s32 = [_mm512_setzero_si512(); N];
        for p in 0..4 {
            let raw = pair_load(wp0.add(32 * p), wp1.add(32 * p));
            let lo = _mm512_and_si512(raw, m4);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4);
            for k in 0..N {
                let q = qp[k].add(32 * b + 8 * p);
                let (ql, qh) = (
                    _mm512_set1_epi32(std::ptr::read_unaligned(q as *const i32)),
                    _mm512_set1_epi32(std::ptr::read_unaligned(q.add(4) as *const i32)),
                );
                s32[k] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s32[k], lo, ql), hi, qh);
            }
        }
        let d32 = pair_i16(w.d.as_ptr().add(i0 * 8), w.d.as_ptr().add(i1 * 8));
        // (m_r, d_r) as the halves of lane r: m in the low 16 bits, d in the high.
        let md = _mm512_or_si512(
            _mm512_and_si512(
                pair_i16(w.m.as_ptr().add(i0 * 8), w.m.as_ptr().add(i1 * 8)),
                _mm512_set1_epi32(0xffff),
            ),
            _mm512_slli_epi32::<16>(d32),
        );
        for k in 0..N {
            let t = t0 + k;
            let xs = *x.sum.get_unchecked(t * nb + b);
            let xp = _mm512_set1_epi32(((xs.wrapping_mul(-8) as u32) << 16 | (xs as u32 & 0xffff)) as i32);
            let av = _mm512_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
            let tv = _mm512_add_epi32(_mm512_mullo_epi32(s32[k], d32), _mm512_madd_epi16(md, xp));
            acc_e[k] = _mm512_add_epi64(acc_e[k], _mm512_mul_epi32(tv, av));
            acc_o[k] = _mm512_add_epi64(acc_o[k], _mm512_mul_epi32(_mm512_srli_epi64::<32>(tv), av));
        }
    }
    for k in 0..N {
        finish16(
            acc_e[k],
            acc_o[k],
            &w.e[g * 8..g * 8 + 16],
            x.exp[t0 + k],
            frac_out,
            o,
            t0 + k,
            x.tokens,
        );
    }
}

/// Tokens `t0..t0+N` of Q8 groups `g` and `g + 1` with AVX-512 VNNI. The weights go in as
/// unsigned bytes `w + 128` (one `xor` per weight load, shared by the tokens; AVX-512 has
/// no 512-bit `sign_epi8` for [`vnni_q8`](super::vnni_q8)'s form), so `vpdpbusd` sums `Σ (w+128)·q` exactly
/// in an i32 lane (≤ 32·255·127 < 2^20), and `S = that − 128·X` with X the block's
/// activation sum (|X| ≤ 4064); then `T = d·S` (|T| ≤ 2047·2^19 < 2^30) as there.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
pub unsafe fn vnni512_q8<const N: usize>(w: &CpuQ8, g: usize, x: &QAct, frac_out: i32, o: &mut [i32], t0: usize) {
    let (cols, nb) = (w.cols, w.cols / 32);
    let bias = _mm512_set1_epi8(-128);
    let mut acc_e = [_mm512_setzero_si512(); N];
    let mut acc_o = [_mm512_setzero_si512(); N];
    let qp: [*const i8; N] = std::array::from_fn(|k| x.q.as_ptr().add((t0 + k) * cols));
    for b in 0..nb {
        let (i0, i1) = (g * nb + b, (g + 1) * nb + b);
        let (wp0, wp1) = (
            w.q.as_ptr().add(i0 * 256) as *const u8,
            w.q.as_ptr().add(i1 * 256) as *const u8,
        );
        prefetch_ahead(wp0, 256);
        prefetch_ahead(wp1, 256);
        let d32 = pair_i16(w.d.as_ptr().add(i0 * 8), w.d.as_ptr().add(i1 * 8));
        let mut sk = [_mm512_setzero_si512(); N];
        for st in 0..8 {
            let wu = _mm512_xor_si512(pair_load(wp0.add(32 * st), wp1.add(32 * st)), bias);
            for k in 0..N {
                let q = _mm512_set1_epi32(std::ptr::read_unaligned(qp[k].add(32 * b + 4 * st) as *const i32));
                sk[k] = _mm512_dpbusd_epi32(sk[k], wu, q);
            }
        }
        for k in 0..N {
            let t = t0 + k;
            let xs = _mm512_set1_epi32(*x.sum.get_unchecked(t * nb + b) << 7);
            let av = _mm512_set1_epi32(*x.a.get_unchecked(t * nb + b) as i32);
            let tv = _mm512_mullo_epi32(_mm512_sub_epi32(sk[k], xs), d32);
            acc_e[k] = _mm512_add_epi64(acc_e[k], _mm512_mul_epi32(tv, av));
            acc_o[k] = _mm512_add_epi64(acc_o[k], _mm512_mul_epi32(_mm512_srli_epi64::<32>(tv), av));
        }
    }
    for k in 0..N {
        finish16(
            acc_e[k],
            acc_o[k],
            &w.e[g * 8..g * 8 + 16],
            x.exp[t0 + k],
            frac_out,
            o,
            t0 + k,
            x.tokens,
        );
    }
}

/// [`head_scores`](super::head_scores) with AVX-512 VNNI, sixteen keys per step: a key's 64-element dot is
/// one `madd` and one `vpdpwssd` on 32-element vectors (i16 pairs summed into i32
/// lanes: partial sums of the exact dot, |·| < 2^24 as in the portable loop), the sixteen
/// keys' vectors reduced to one (lane i = key i) by a transpose-and-add tree, then the
/// rounding shift of [`scores_by8`] on 16 lanes. The last `n mod 16` keys go to
/// [`scores_by8`].
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn head_scores512(
    qi: &[i16],
    k: &[i16],
    k_exp: &[i32],
    kvd: usize,
    n_kv: usize,
    kvh: usize,
    shift0: i32,
    scores: &mut [i32],
) -> i32 {
    let n = scores.len();
    let (q0, q1) = (
        _mm512_loadu_si512(qi.as_ptr() as *const __m512i),
        _mm512_loadu_si512(qi.as_ptr().add(32) as *const __m512i),
    );
    let kp = k.as_ptr().add(kvh * 64);
    let dot = |j: usize| {
        let r = kp.add(j * kvd);
        _mm512_dpwssd_epi32(
            _mm512_madd_epi16(q0, _mm512_loadu_si512(r as *const __m512i)),
            q1,
            _mm512_loadu_si512(r.add(32) as *const __m512i),
        )
    };
    let (one, zero) = (_mm512_set1_epi32(1), _mm512_setzero_si512());
    let mut vmax = _mm512_set1_epi32(i32::MIN);
    let mut j = 0;
    while j + 16 <= n {
        let t = sum16(&std::array::from_fn(|i| dot(j + i)));
        let ek: [i32; 16] = std::array::from_fn(|i| k_exp[(j + i) * n_kv + kvh]);
        let s = _mm512_sub_epi32(
            _mm512_set1_epi32(shift0),
            _mm512_loadu_si512(ek.as_ptr() as *const __m512i),
        );
        let right = _mm512_srav_epi32(_mm512_add_epi32(t, _mm512_sllv_epi32(one, _mm512_sub_epi32(s, one))), s);
        let l = _mm512_sub_epi32(zero, s);
        let sh = _mm512_sllv_epi32(t, l);
        let fits = _mm512_cmpeq_epi32_mask(_mm512_srav_epi32(sh, l), t);
        let sat = _mm512_xor_si512(_mm512_set1_epi32(i32::MAX), _mm512_srai_epi32::<31>(t));
        let left = _mm512_mask_blend_epi32(fits, sat, sh);
        let r = _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(s, zero), left, right);
        _mm512_storeu_si512(scores.as_mut_ptr().add(j) as *mut __m512i, r);
        vmax = _mm512_max_epi32(vmax, r);
        j += 16;
    }
    let head = if j > 0 { _mm512_reduce_max_epi32(vmax) } else { i32::MIN };
    if j == n {
        return head;
    }
    let j0 = j;
    let dot8 = |j: usize| {
        let p: [__m256i; 8] = std::array::from_fn(|i| {
            let v = dot(j0 + j + i);
            _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
        });
        hsum8(&p)
    };
    let rest = scores_by8(
        dot8,
        qi,
        &k[j * kvd..],
        &k_exp[j * n_kv..],
        kvd,
        n_kv,
        kvh,
        shift0,
        &mut scores[j..],
    );
    head.max(rest)
}

/// Sixteen 16-lane vectors → one, lane k = Σ p[k]: adds of unpacked pairs (32-bit, then
/// 64-bit), then of 128-bit lanes shuffled across pairs of vectors.
#[inline(always)]
unsafe fn sum16(p: &[__m512i; 16]) -> __m512i {
    let a: [__m512i; 8] = std::array::from_fn(|i| {
        _mm512_add_epi32(
            _mm512_unpacklo_epi32(p[2 * i], p[2 * i + 1]),
            _mm512_unpackhi_epi32(p[2 * i], p[2 * i + 1]),
        )
    });
    let b: [__m512i; 4] = std::array::from_fn(|i| {
        _mm512_add_epi32(
            _mm512_unpacklo_epi64(a[2 * i], a[2 * i + 1]),
            _mm512_unpackhi_epi64(a[2 * i], a[2 * i + 1]),
        )
    });
    // b[i], 128-bit lane L: keys 4i..4i+4, partial L.
    let c: [__m512i; 2] = std::array::from_fn(|i| {
        _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0x88>(b[2 * i], b[2 * i + 1]),
            _mm512_shuffle_i32x4::<0xDD>(b[2 * i], b[2 * i + 1]),
        )
    });
    // c[i]: [keys 8i..8i+4 (partials 0+1, then 2+3), keys 8i+4..8i+8 (the same)].
    _mm512_add_epi32(
        _mm512_shuffle_i32x4::<0x88>(c[0], c[1]),
        _mm512_shuffle_i32x4::<0xDD>(c[0], c[1]),
    )
}

/// [`head_values`](super::head_values) with AVX-512 VNNI: a key's 64 values are two 32-element vectors, and a
/// pair of keys goes into the sums by one unpack and one `vpdpwssd` per half vector
/// (the same products and sums as there: exact in any order). The 16-bit weight pairs of
/// 16 keys are packed in one step (`pair_words` in vectors: `min(pn, 32767)`, and the
/// rare `pn = 2^15` as a second word of 1); pairs go alternately to two sets of sums, so
/// consecutive `vpdpwssd`s do not wait on each other.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
pub unsafe fn head_values512(p: &[u32], v: &[i16], kvd: usize, off: usize, sum: u32, out: &mut [i32]) {
    let inv = super::recip(sum);
    let (ih, il, half) = (
        _mm256_set1_epi64x((inv >> 32) as i64),
        _mm256_set1_epi64x(inv as u32 as i64),
        _mm256_set1_epi32((sum / 2) as i32),
    );
    // [lo of values 0..32, hi of 0..32, lo of 32..64, hi of 32..64], twice.
    let mut acc = [[_mm512_setzero_si512(); 4]; 2];
    let vp = v.as_ptr().add(off);
    let n = p.len();
    let pair = |acc: &mut [__m512i; 4], w: i32, j: usize| {
        if w == 0 {
            return;
        }
        let ra = vp.add(j * kvd);
        let rb = if j + 1 < n { vp.add((j + 1) * kvd) } else { ra }; // its weight is 0
        let w = _mm512_set1_epi32(w);
        for c in 0..2 {
            let va = _mm512_loadu_si512(ra.add(32 * c) as *const __m512i);
            let vb = _mm512_loadu_si512(rb.add(32 * c) as *const __m512i);
            acc[2 * c] = _mm512_dpwssd_epi32(acc[2 * c], _mm512_unpacklo_epi16(va, vb), w);
            acc[2 * c + 1] = _mm512_dpwssd_epi32(acc[2 * c + 1], _mm512_unpackhi_epi16(va, vb), w);
        }
    };
    let max15 = _mm512_set1_epi32(32767);
    let (mut main, mut carry) = ([0i32; 8], [0i32; 8]);
    let mut j0 = 0;
    while j0 < n {
        let m = (n - j0).min(16);
        let x = if m == 16 {
            let lo = p_norm8(_mm256_loadu_si256(p.as_ptr().add(j0) as *const __m256i), half, ih, il);
            let hi = p_norm8(
                _mm256_loadu_si256(p.as_ptr().add(j0 + 8) as *const __m256i),
                half,
                ih,
                il,
            );
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        } else {
            let mut pn = [0u32; 16]; // 0 past the end: no weight
            for (o, &pj) in pn.iter_mut().zip(&p[j0..]) {
                *o = super::p_norm(pj, sum, inv);
            }
            _mm512_loadu_si512(pn.as_ptr() as *const __m512i)
        };
        // (pn_j, pn_j+1) as the halves of word j/2 (each ≤ 2^15, so min and >> 15 split it).
        _mm256_storeu_si256(
            main.as_mut_ptr() as *mut __m256i,
            _mm512_cvtepi32_epi16(_mm512_min_epu32(x, max15)),
        );
        let big = _mm512_cmpgt_epu32_mask(x, max15);
        for i in (0..8).step_by(2) {
            let [a0, a1] = &mut acc;
            pair(a0, main[i], j0 + 2 * i);
            pair(a1, main[i + 1], j0 + 2 * i + 2);
        }
        if big != 0 {
            _mm256_storeu_si256(
                carry.as_mut_ptr() as *mut __m256i,
                _mm512_cvtepi32_epi16(_mm512_srli_epi32::<15>(x)),
            );
            for (i, &w) in carry.iter().enumerate() {
                pair(&mut acc[0], w, j0 + 2 * i);
            }
        }
        j0 += 16;
    }
    // unpacklo/hi work per 128-bit lane: lo holds elements 8i+0..4 of each lane i, hi 8i+4..8.
    let lo_hi = |c: usize| {
        (
            _mm512_add_epi32(acc[0][2 * c], acc[1][2 * c]),
            _mm512_add_epi32(acc[0][2 * c + 1], acc[1][2 * c + 1]),
        )
    };
    let first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    let second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for c in 0..2 {
        let (lo, hi) = lo_hi(c);
        let o = out.as_mut_ptr().add(32 * c) as *mut __m512i;
        _mm512_storeu_si512(
            o,
            _mm512_add_epi32(_mm512_loadu_si512(o), _mm512_permutex2var_epi32(lo, first, hi)),
        );
        _mm512_storeu_si512(
            o.add(1),
            _mm512_add_epi32(_mm512_loadu_si512(o.add(1)), _mm512_permutex2var_epi32(lo, second, hi)),
        );
    }
}
