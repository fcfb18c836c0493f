//! x86-64: [`Isa::Avx2`](super::Isa::Avx2), [`Isa::AvxVnni`](super::Isa::AvxVnni) and
//! [`Isa::Avx512Vnni`](super::Isa::Avx512Vnni) (see the module docs of [`super`]).

use super::{CpuQ4, CpuQ8, QAct};
use crate::wide::round_shift_sat_i64;
use std::arch::x86_64::*;

/// Sums of eight 8-lane vectors → one 8-lane vector, lane k = Σ p[k].
#[inline(always)]
unsafe fn hsum8(p: &[__m256i; 8]) -> __m256i {
    let a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    let b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(a, b),
        _mm256_permute2x128_si256::<0x31>(a, b),
    )
}

/// Asks for the weights `PREFETCH` bytes ahead of `p` (a block of `len` bytes, 64-byte
/// lines): decoding one token streams every weight from memory once, and the hardware
/// prefetcher alone leaves the kernel waiting on it. A hint: it changes no result, and
/// an address past the end of the weights is harmless (prefetches do not fault).
#[inline(always)]
unsafe fn prefetch_ahead<T>(p: *const T, len: usize) {
    const PREFETCH: usize = 2048;
    let mut o = 0;
    while o < len {
        _mm_prefetch::<_MM_HINT_T0>((p as *const i8).wrapping_add(PREFETCH + o));
        o += 64;
    }
}

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

/// Tokens `t0..t0+N` of Q4 group `g` (see [`super::group_q4`]).
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
/// [`vnni_q4`] lane for lane, on 16 lanes (the two groups' rows) instead of 8, so each
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
/// no 512-bit `sign_epi8` for [`vnni_q8`]'s form), so `vpdpbusd` sums `Σ (w+128)·q` exactly
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

/// See [`super::head_scores`]. Eight keys per step: four `madd`s per key, the eight
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

/// [`head_scores`] with AVX-512 VNNI, sixteen keys per step: a key's 64-element dot is
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

/// The scores of [`head_scores`] from `dot8(j)`, the exact dots of keys `j..j+8` in eight
/// lanes: the per-key rounding shift in 8 lanes: for `s > 0` `(t + 2^(s−1)) >> s` (|t| <
/// 2^24, s ≤ 12: no overflow), for `s ≤ 0` a left shift that saturates when shifting back
/// does not give `t` (also for shifts ≥ 32, where it is 0). The last `n mod 8` keys go
/// one by one.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn scores_by8(
    dot8: impl Fn(usize) -> __m256i,
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
    let kp = k.as_ptr().add(kvh * 64);
    let mut vmax = _mm256_set1_epi32(i32::MIN);
    let (one, zero) = (_mm256_set1_epi32(1), _mm256_setzero_si256());
    let mut j = 0;
    while j + 8 <= n {
        let t = dot8(j);
        let ek: [i32; 8] = std::array::from_fn(|i| k_exp[(j + i) * n_kv + kvh]);
        let s = _mm256_sub_epi32(
            _mm256_set1_epi32(shift0),
            _mm256_loadu_si256(ek.as_ptr() as *const __m256i),
        );
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
        let d: i32 = qi.iter().enumerate().map(|(i, &q)| q as i32 * *r.add(i) as i32).sum();
        *sc = round_shift_sat_i64(d as i64, shift0 - k_exp[jj * n_kv + kvh]);
        tmax = tmax.max(*sc);
    }
    tmax
}

/// See [`super::head_probs`]: eight keys per step, the table read by a gather; a shift
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

/// `pn = floor((p·2^15 + sum/2) · inv / 2^64)` in eight lanes (`inv = ceil(2^64/sum)`, as
/// [`super::p_norm`]; `p = 0` gives 0): with `inv = ih·2^32 + il`, `num·inv / 2^64 =
/// (num·ih + (num·il >> 32)) >> 32` exactly (num·ih < 2^48, num·il < 2^63).
#[inline(always)]
unsafe fn p_norm8(p: __m256i, half: __m256i, ih: __m256i, il: __m256i) -> __m256i {
    let num = _mm256_add_epi32(_mm256_slli_epi32::<15>(p), half);
    let q = |x: __m256i| {
        _mm256_srli_epi64::<32>(_mm256_add_epi64(
            _mm256_mul_epu32(x, ih),
            _mm256_srli_epi64::<32>(_mm256_mul_epu32(x, il)),
        ))
    };
    let (qe, qo) = (q(num), q(_mm256_srli_epi64::<32>(num)));
    _mm256_or_si256(qe, _mm256_slli_epi64::<32>(qo))
}

/// See [`super::head_values`]. The normalised probabilities are made eight at a time
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

/// [`head_values`] with AVX-512 VNNI: a key's 64 values are two 32-element vectors, and a
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
