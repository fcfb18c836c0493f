//! AVX2 versions of the matmul row kernels, reading the Q4 nibbles packed as stored.
//!
//! - `x4`: four tokens per pass over a weight row; the 32-element block dots with
//!   `maddubs`/`madd`, the four horizontal sums with `hadd`, the block terms and split
//!   accumulators in 4-lane vectors (prefill).
//! - `x1`: one token at a time, eight blocks per step: eight block dots reduced to one
//!   8-lane vector, the block terms `T` in 8 lanes, and `Σ T·a` exact in 64-bit lanes
//!   (decoding, and the tokens left over after the groups of 4).
//!
//! Same integer arithmetic as [`super::dot_q4`] / [`super::dot_q8`]: the exact sum
//! `Σ T_b·a_b` and then one rounding shift, so the bits are identical (tested below on
//! random and extreme inputs). Each returns how many tokens it has handled so far (without
//! AVX2 it handles none and the scalar kernels do them all).

use super::{Groups, QAct};
use crate::pack::{Q4Matrix, Q8Matrix};

/// Q4: handles tokens `0..4·g.n` of row `r`; returns `4·g.n` (or 0 without AVX2).
pub fn rows_q4_x4(w: &Q4Matrix, x: &QAct, g: &Groups, frac_out: i32, r: usize, o: &mut [i32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if g.n > 0 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked above); all slices are indexed within bounds
        // that `QAct`/`Q4Matrix` shapes guarantee (asserted in the kernel).
        unsafe { x86::rows_q4(w, x, g, frac_out, r, o) };
        return 4 * g.n;
    }
    let _ = (w, x, g, frac_out, r, o);
    0
}

/// Q8: handles tokens `0..4·g.n` of row `r`; returns `4·g.n` (or 0 without AVX2).
pub fn rows_q8_x4(w: &Q8Matrix, x: &QAct, g: &Groups, frac_out: i32, r: usize, o: &mut [i32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if g.n > 0 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: as above.
        unsafe { x86::rows_q8(w, x, g, frac_out, r, o) };
        return 4 * g.n;
    }
    let _ = (w, x, g, frac_out, r, o);
    0
}

/// Q4: handles tokens `from..` of row `r` one at a time; returns the tokens done.
pub fn rows_q4_x1(w: &Q4Matrix, x: &QAct, frac_out: i32, r: usize, o: &mut [i32], from: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; bounds asserted in the kernel.
        unsafe { x86::rows_q4_1(w, x, frac_out, r, o, from) };
        return x.tokens;
    }
    let _ = (w, x, frac_out, r, o);
    from
}

/// Q8: handles tokens `from..` of row `r` one at a time; returns the tokens done.
pub fn rows_q8_x1(w: &Q8Matrix, x: &QAct, frac_out: i32, r: usize, o: &mut [i32], from: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: as above.
        unsafe { x86::rows_q8_1(w, x, frac_out, r, o, from) };
        return x.tokens;
    }
    let _ = (w, x, frac_out, r, o);
    from
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::{Groups, QAct};
    use crate::pack::{Q4Matrix, Q8Matrix};
    use crate::wide::round_shift_sat_i64;
    use std::arch::x86_64::*;

    /// Sums of four 8-lane vectors → one 4-lane vector.
    #[inline(always)]
    unsafe fn hsum4(p0: __m256i, p1: __m256i, p2: __m256i, p3: __m256i) -> __m128i {
        let h = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
        _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
    }

    /// Sums of eight 8-lane vectors → one 8-lane vector, lane k = Σ p[k].
    #[inline(always)]
    unsafe fn hsum8(p: &[__m256i; 8]) -> __m256i {
        let a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        let b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
        _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(a, b), _mm256_permute2x128_si256::<0x31>(a, b))
    }

    /// The 32 nibbles of one block (16 packed bytes, ggml order) as bytes 0..15.
    #[inline(always)]
    unsafe fn nib32(p: *const u8) -> __m256i {
        let raw = _mm_loadu_si128(p as *const __m128i);
        let m = _mm_set1_epi8(15);
        _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(raw), m), _mm_and_si128(raw, m))
    }

    /// Σ nib·q of one block as 8 partial sums (maddubs pairs ≤ 2·15·127, no saturation).
    #[inline(always)]
    unsafe fn dot_q4_block(w: __m256i, q: *const i8) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_loadu_si256(q as *const __m256i)), _mm256_set1_epi16(1))
    }

    /// Σ w·q of one int8 block as 8 partial sums: maddubs needs an unsigned operand, so |w|
    /// (128 for −128 reads as unsigned 128) times q with w's sign; pair sums ≤ 2·128·127 < 2^15.
    #[inline(always)]
    unsafe fn dot_q8_block(w: __m256i, q: *const i8) -> __m256i {
        let wa = _mm256_abs_epi8(w);
        _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(_mm256_loadu_si256(q as *const __m256i), w)), _mm256_set1_epi16(1))
    }

    /// `Σ t·a` over 8 lanes added into 4 i64 lanes (exact: |t·a| < 2^42).
    #[inline(always)]
    unsafe fn mul_acc64(acc: __m256i, t: __m256i, a: __m256i) -> __m256i {
        let ev = _mm256_mul_epi32(t, a);
        let od = _mm256_mul_epi32(_mm256_srli_epi64::<32>(t), _mm256_srli_epi64::<32>(a));
        _mm256_add_epi64(acc, _mm256_add_epi64(ev, od))
    }

    #[inline(always)]
    unsafe fn hsum64(acc: __m256i) -> i64 {
        let mut l = [0i64; 4];
        _mm256_storeu_si256(l.as_mut_ptr() as *mut __m256i, acc);
        l[0] + l[1] + l[2] + l[3]
    }

    /// Split accumulator (see `SplitAcc`) in four lanes.
    struct Acc4 {
        hi: __m128i,
        lo: __m128i,
        n: u32,
    }

    impl Acc4 {
        #[inline(always)]
        unsafe fn new() -> Self {
            Acc4 { hi: _mm_setzero_si128(), lo: _mm_setzero_si128(), n: 0 }
        }
        #[inline(always)]
        unsafe fn add(&mut self, t: __m128i, a: __m128i) {
            self.hi = _mm_add_epi32(self.hi, _mm_mullo_epi32(_mm_srai_epi32::<16>(t), a));
            self.lo = _mm_add_epi32(self.lo, _mm_mullo_epi32(_mm_and_si128(t, _mm_set1_epi32(0xFFFF)), a));
            self.n += 1;
            if self.n == 8 {
                self.fold();
            }
        }
        #[inline(always)]
        unsafe fn fold(&mut self) {
            self.hi = _mm_add_epi32(self.hi, _mm_srli_epi32::<16>(self.lo));
            self.lo = _mm_and_si128(self.lo, _mm_set1_epi32(0xFFFF));
            self.n = 0;
        }
        #[inline(always)]
        unsafe fn finish(mut self, shifts: [i32; 4], o: &mut [i32]) {
            self.fold();
            let (mut hi, mut lo) = ([0i32; 4], [0u32; 4]);
            _mm_storeu_si128(hi.as_mut_ptr() as *mut __m128i, self.hi);
            _mm_storeu_si128(lo.as_mut_ptr() as *mut __m128i, self.lo);
            for k in 0..4 {
                o[k] = round_shift_sat_i64(((hi[k] as i64) << 16) + lo[k] as i64, shifts[k]);
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn rows_q4(w: &Q4Matrix, x: &QAct, g: &Groups, frac_out: i32, r: usize, o: &mut [i32]) {
        let (cols, nb) = (w.cols, w.cols / 32);
        assert!(w.nib.len() >= (r + 1) * cols / 2 && x.q.len() >= 4 * g.n * cols && o.len() >= 4 * g.n && g.sum.len() >= g.n * nb * 4);
        let wr = w.nib.as_ptr().add(r * cols / 2);
        for gi in 0..g.n {
            let q = x.q.as_ptr().add(4 * gi * cols);
            let mut acc = Acc4::new();
            for b in 0..nb {
                let wv = nib32(wr.add(16 * b));
                let dot = |k: usize| dot_q4_block(wv, q.add(k * cols + 32 * b));
                let s = hsum4(dot(0), dot(1), dot(2), dot(3)); // Σ nib·q, |·| ≤ 15·127·32
                let xs = _mm_loadu_si128(g.sum.as_ptr().add((gi * nb + b) * 4) as *const __m128i);
                let a = _mm_loadu_si128(g.a.as_ptr().add((gi * nb + b) * 4) as *const __m128i);
                let s1 = _mm_sub_epi32(s, _mm_slli_epi32::<3>(xs)); // S' = S − 8X
                let t = _mm_add_epi32(_mm_mullo_epi32(_mm_set1_epi32(w.d[r * nb + b] as i32), s1), _mm_mullo_epi32(_mm_set1_epi32(w.m[r * nb + b] as i32), xs));
                acc.add(t, a);
            }
            let e = w.e[r] as i32;
            let sh = [0, 1, 2, 3].map(|k| e - x.exp[4 * gi + k] - frac_out);
            acc.finish(sh, &mut o[4 * gi..4 * gi + 4]);
        }
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn rows_q8(w: &Q8Matrix, x: &QAct, g: &Groups, frac_out: i32, r: usize, o: &mut [i32]) {
        let (cols, nb) = (w.cols, w.cols / 32);
        assert!(w.q.len() >= (r + 1) * cols && x.q.len() >= 4 * g.n * cols && o.len() >= 4 * g.n && g.a.len() >= g.n * nb * 4);
        let wr = w.q.as_ptr().add(r * cols);
        for gi in 0..g.n {
            let q = x.q.as_ptr().add(4 * gi * cols);
            let mut acc = Acc4::new();
            for b in 0..nb {
                let wv = _mm256_loadu_si256(wr.add(32 * b) as *const __m256i);
                let dot = |k: usize| dot_q8_block(wv, q.add(k * cols + 32 * b));
                let s = hsum4(dot(0), dot(1), dot(2), dot(3));
                let a = _mm_loadu_si128(g.a.as_ptr().add((gi * nb + b) * 4) as *const __m128i);
                acc.add(_mm_mullo_epi32(_mm_set1_epi32(w.d[r * nb + b] as i32), s), a);
            }
            let e = w.e[r] as i32;
            let sh = [0, 1, 2, 3].map(|k| e - x.exp[4 * gi + k] - frac_out);
            acc.finish(sh, &mut o[4 * gi..4 * gi + 4]);
        }
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn rows_q4_1(w: &Q4Matrix, x: &QAct, frac_out: i32, r: usize, o: &mut [i32], from: usize) {
        let (cols, nb) = (w.cols, w.cols / 32);
        assert!(w.nib.len() >= (r + 1) * cols / 2 && w.d.len() >= (r + 1) * nb && x.q.len() >= x.tokens * cols && x.a.len() >= x.tokens * nb && o.len() >= x.tokens);
        let wr = w.nib.as_ptr().add(r * cols / 2);
        let (d, m) = (&w.d[r * nb..(r + 1) * nb], &w.m[r * nb..(r + 1) * nb]);
        for t in from..x.tokens {
            let q = x.q.as_ptr().add(t * cols);
            let (a, sum) = (&x.a[t * nb..(t + 1) * nb], &x.sum[t * nb..(t + 1) * nb]);
            let mut acc = _mm256_setzero_si256();
            let mut b = 0;
            while b + 8 <= nb {
                let p: [__m256i; 8] = std::array::from_fn(|k| dot_q4_block(nib32(wr.add(16 * (b + k))), q.add(32 * (b + k))));
                let s = hsum8(&p);
                let xs = _mm256_loadu_si256(sum.as_ptr().add(b) as *const __m256i);
                let dv = _mm256_cvtepi16_epi32(_mm_loadu_si128(d.as_ptr().add(b) as *const __m128i));
                let mv = _mm256_cvtepi16_epi32(_mm_loadu_si128(m.as_ptr().add(b) as *const __m128i));
                let av = _mm256_cvtepu16_epi32(_mm_loadu_si128(a.as_ptr().add(b) as *const __m128i));
                let s1 = _mm256_sub_epi32(s, _mm256_slli_epi32::<3>(xs)); // S' = S − 8X
                let tv = _mm256_add_epi32(_mm256_mullo_epi32(dv, s1), _mm256_mullo_epi32(mv, xs)); // |T| < 2^29
                acc = mul_acc64(acc, tv, av);
                b += 8;
            }
            let mut total = hsum64(acc);
            for b in b..nb {
                let s = super::super::dot32_nib(&w.nib[r * cols / 2 + 16 * b..r * cols / 2 + 16 * (b + 1)], &x.q[t * cols + 32 * b..t * cols + 32 * (b + 1)]);
                let tb = d[b] as i32 * (s - 8 * sum[b]) + m[b] as i32 * sum[b];
                total += tb as i64 * a[b] as i64;
            }
            o[t] = round_shift_sat_i64(total, w.e[r] as i32 - x.exp[t] - frac_out);
        }
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn rows_q8_1(w: &Q8Matrix, x: &QAct, frac_out: i32, r: usize, o: &mut [i32], from: usize) {
        let (cols, nb) = (w.cols, w.cols / 32);
        assert!(w.q.len() >= (r + 1) * cols && w.d.len() >= (r + 1) * nb && x.q.len() >= x.tokens * cols && x.a.len() >= x.tokens * nb && o.len() >= x.tokens);
        let wr = w.q.as_ptr().add(r * cols);
        let d = &w.d[r * nb..(r + 1) * nb];
        for t in from..x.tokens {
            let q = x.q.as_ptr().add(t * cols);
            let a = &x.a[t * nb..(t + 1) * nb];
            let mut acc = _mm256_setzero_si256();
            let mut b = 0;
            while b + 8 <= nb {
                let p: [__m256i; 8] = std::array::from_fn(|k| dot_q8_block(_mm256_loadu_si256(wr.add(32 * (b + k)) as *const __m256i), q.add(32 * (b + k))));
                let s = hsum8(&p);
                let dv = _mm256_cvtepi16_epi32(_mm_loadu_si128(d.as_ptr().add(b) as *const __m128i));
                let av = _mm256_cvtepu16_epi32(_mm_loadu_si128(a.as_ptr().add(b) as *const __m128i));
                acc = mul_acc64(acc, _mm256_mullo_epi32(dv, s), av); // |d·S| < 2^30
                b += 8;
            }
            let mut total = hsum64(acc);
            for b in b..nb {
                let mut s = 0i32;
                for i in 0..32 {
                    s += w.q[r * cols + 32 * b + i] as i32 * x.q[t * cols + 32 * b + i] as i32;
                }
                total += (d[b] as i32 * s) as i64 * a[b] as i64;
            }
            o[t] = round_shift_sat_i64(total, w.e[r] as i32 - x.exp[t] - frac_out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{dot_q4, dot_q8, quantize};
    use super::*;
    use crate::tiny::Rng;

    fn act(r: &mut Rng, tokens: usize, width: usize, extreme: bool) -> QAct {
        let z: Vec<i32> = (0..tokens * width).map(|i| if extreme { [i32::MAX, i32::MIN, 1, -1][i % 4] } else { (r.next_u64() as i32) >> (r.below(28) as u32) }).collect();
        quantize(&z, width, 3)
    }

    #[test]
    fn simd_q4_equals_scalar() {
        let mut r = Rng(21);
        for (rows, cols, tokens, extreme) in [(5, 1536, 9, false), (3, 64, 4, true), (7, 576, 13, false), (4, 1536, 3, true), (3, 288, 1, false)] {
            let nb = cols / 32;
            let ext = |r: &mut Rng, v: i16| if extreme { [v, -v][r.below(2) as usize] } else { (r.below(2 * v as u64 + 1) as i32 - v as i32) as i16 };
            let w = Q4Matrix {
                rows,
                cols,
                nib: (0..rows * cols / 2).map(|_| if extreme { 0xF0 } else { r.below(256) as u8 }).collect(),
                d: (0..rows * nb).map(|_| ext(&mut r, 8191)).collect(),
                m: (0..rows * nb).map(|_| ext(&mut r, 8191)).collect(),
                e: (0..rows).map(|_| r.below(30) as i8).collect(),
            };
            let x = act(&mut r, tokens, cols, extreme);
            let g = x.groups();
            for row in 0..rows {
                let mut o = vec![0; tokens];
                let done = rows_q4_x4(&w, &x, &g, 10, row, &mut o);
                let done = rows_q4_x1(&w, &x, 10, row, &mut o, done);
                #[cfg(target_arch = "x86_64")]
                assert_eq!(done, if std::arch::is_x86_feature_detected!("avx2") { tokens } else { 0 });
                for t in 0..done {
                    let want = dot_q4(&w.nib[row * cols / 2..(row + 1) * cols / 2], &w.d[row * nb..(row + 1) * nb], &w.m[row * nb..(row + 1) * nb], w.e[row] as i32, &x.q[t * cols..(t + 1) * cols], &x.a[t * nb..(t + 1) * nb], &x.sum[t * nb..(t + 1) * nb], x.exp[t], 10);
                    assert_eq!(o[t], want, "row {row} token {t}");
                }
            }
        }
    }

    #[test]
    fn simd_q8_equals_scalar() {
        let mut r = Rng(22);
        for (rows, cols, tokens, extreme) in [(6, 1024, 8, false), (3, 1024, 4, true), (5, 576, 11, false), (3, 1024, 2, true), (2, 96, 1, false)] {
            let nb = cols / 32;
            let w = Q8Matrix {
                rows,
                cols,
                q: (0..rows * cols).map(|_| if extreme { -128 } else { r.next_u64() as i8 }).collect(),
                d: (0..rows * nb).map(|_| if extreme { 2047 } else { (r.below(4095) as i32 - 2047) as i16 }).collect(),
                e: (0..rows).map(|_| r.below(30) as i8).collect(),
            };
            let x = act(&mut r, tokens, cols, extreme);
            let g = x.groups();
            for row in 0..rows {
                let mut o = vec![0; tokens];
                let done = rows_q8_x4(&w, &x, &g, 10, row, &mut o);
                let done = rows_q8_x1(&w, &x, 10, row, &mut o, done);
                #[cfg(target_arch = "x86_64")]
                assert_eq!(done, if std::arch::is_x86_feature_detected!("avx2") { tokens } else { 0 });
                for t in 0..done {
                    let want = dot_q8(&w.q[row * cols..(row + 1) * cols], &w.d[row * nb..(row + 1) * nb], w.e[row] as i32, &x.q[t * cols..(t + 1) * cols], &x.a[t * nb..(t + 1) * nb], x.exp[t], 10);
                    assert_eq!(o[t], want, "row {row} token {t}");
                }
            }
        }
    }
}
