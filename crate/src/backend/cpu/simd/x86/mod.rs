//! x86-64: [`Isa::Avx2`](super::Isa::Avx2), [`Isa::AvxVnni`](super::Isa::AvxVnni) and
//! [`Isa::Avx512Vnni`](super::Isa::Avx512Vnni) (see the module docs of [`super`]).
//!
//! [`avx2`]: the 256-bit kernels (AVX2, and AVX-VNNI's `vpdpbusd` on 256-bit vectors);
//! [`avx512`]: the AVX-512 VNNI ones. Here: the helpers both use, and every kernel by name
//! for the dispatch of [`super`].

// What the kernels of avx2.rs and avx512.rs name as `super::NAME` (as they did in x86.rs).
use super::{p_norm, pair_words, portable, recip};
use crate::wide::round_shift_sat_i64;
use std::arch::x86_64::*;

mod avx2;
mod avx512;

pub use avx2::{group_q4, group_q8, head_probs, head_scores, head_values, vnni_q4, vnni_q8};
pub use avx512::{head_scores512, head_values512, vnni512_q4, vnni512_q8};

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
