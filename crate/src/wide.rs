//! Exact 64-bit integer arithmetic built from 32-bit words.
//!
//! WGSL has no 64-bit integers, and every kernel of the forward pass must be computable in
//! WGSL with the same bits as here. The few places where a product or a sum needs more than
//! 32 bits (listed in ARCHITECTURE.md) use this module, whose operations are written with
//! `u32`/`i32` words and 16-bit partial products exactly as `shaders/wide.wgsl` will be, so
//! the CPU code *is* the GPU algorithm. Tests compare every operation with native `i64`.
//!
//! A [`Wide`] is a two's-complement 64-bit integer `hi·2^32 + lo`.

/// Two's-complement 64-bit integer as two 32-bit words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wide {
    pub hi: u32,
    pub lo: u32,
}

/// Full 32×32→64 unsigned product from four 16×16→32 partial products.
#[inline]
pub fn mul_u32(a: u32, b: u32) -> Wide {
    let (a0, a1) = (a & 0xFFFF, a >> 16);
    let (b0, b1) = (b & 0xFFFF, b >> 16);
    let p00 = a0 * b0; // each partial < 2^32: no overflow
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // middle = p01 + p10 + (p00 >> 16) can reach 2^33: add in two steps, tracking carries.
    let (mid, c1) = p01.overflowing_add(p10);
    let (mid, c2) = mid.overflowing_add(p00 >> 16);
    let carry = (c1 as u32 + c2 as u32) << 16;
    let lo = (mid << 16) | (p00 & 0xFFFF);
    let hi = p11.wrapping_add(mid >> 16).wrapping_add(carry);
    Wide { hi, lo }
}

// `add`, `sub`, `neg`, `shl`, `shr` are named after the WGSL functions they mirror word for
// word (`wide_add`…); operator traits would hide that every one is a deliberate 2-word step.
#[allow(clippy::should_implement_trait)]
impl Wide {
    pub const ZERO: Wide = Wide { hi: 0, lo: 0 };

    #[inline]
    pub fn from_i32(v: i32) -> Wide {
        Wide {
            hi: if v < 0 { u32::MAX } else { 0 },
            lo: v as u32,
        }
    }

    #[inline]
    pub fn is_neg(self) -> bool {
        (self.hi as i32) < 0
    }

    #[inline]
    pub fn add(self, o: Wide) -> Wide {
        let (lo, c) = self.lo.overflowing_add(o.lo);
        Wide {
            hi: self.hi.wrapping_add(o.hi).wrapping_add(c as u32),
            lo,
        }
    }

    #[inline]
    pub fn neg(self) -> Wide {
        let lo = (!self.lo).wrapping_add(1);
        let hi = (!self.hi).wrapping_add((lo == 0) as u32);
        Wide { hi, lo }
    }

    #[inline]
    pub fn sub(self, o: Wide) -> Wide {
        self.add(o.neg())
    }

    /// Signed 32×32→64 product.
    #[inline]
    pub fn mul_i32(a: i32, b: i32) -> Wide {
        let p = mul_u32(a.unsigned_abs(), b.unsigned_abs());
        if (a < 0) != (b < 0) {
            p.neg()
        } else {
            p
        }
    }

    /// `self + a·b` for signed 32-bit `a`, `b`.
    #[inline]
    pub fn mul_add(self, a: i32, b: i32) -> Wide {
        self.add(Wide::mul_i32(a, b))
    }

    /// Arithmetic shift right by `s` (0..=63), rounding toward −∞.
    #[inline]
    pub fn shr(self, s: u32) -> Wide {
        if s == 0 {
            self
        } else if s < 32 {
            Wide {
                hi: ((self.hi as i32) >> s) as u32,
                lo: (self.lo >> s) | (self.hi << (32 - s)),
            }
        } else {
            let h = self.hi as i32;
            Wide {
                hi: (h >> 31) as u32,
                lo: (h >> (s - 32).min(31)) as u32,
            }
        }
    }

    /// Shift left by `s` (0..=63), bits shifted out are lost (callers check the range first).
    #[inline]
    pub fn shl(self, s: u32) -> Wide {
        if s == 0 {
            self
        } else if s < 32 {
            Wide {
                hi: (self.hi << s) | (self.lo >> (32 - s)),
                lo: self.lo << s,
            }
        } else {
            Wide {
                hi: self.lo << (s - 32).min(31),
                lo: 0,
            }
        }
    }

    /// Saturate to `i32`.
    #[inline]
    pub fn to_i32_sat(self) -> i32 {
        let h = self.hi as i32;
        let l = self.lo as i32;
        // Fits when hi is the sign extension of lo.
        if (h == 0 && l >= 0) || (h == -1 && l < 0) {
            l
        } else if h < 0 {
            i32::MIN
        } else {
            i32::MAX
        }
    }

    /// Number of significant bits of a non-negative value (0 for 0).
    #[inline]
    pub fn bit_len_unsigned(self) -> u32 {
        if self.hi != 0 {
            64 - self.hi.leading_zeros()
        } else {
            32 - self.lo.leading_zeros()
        }
    }

    /// `round(self · 2^-s)` (half up) for `s > 0`, `self · 2^-s` exactly for `s <= 0`,
    /// saturated to `i32`. `s` in −63..=62, and |self| < 2^62 (every caller is below 2^56).
    #[inline]
    pub fn round_shift_sat(self, s: i32) -> i32 {
        if s > 0 {
            let s = s.unsigned_abs();
            let half = Wide { hi: 0, lo: 0 }.add(Wide::one_shl(s - 1));
            self.add(half).shr(s).to_i32_sat()
        } else if s == 0 {
            self.to_i32_sat()
        } else {
            let s = s.unsigned_abs();
            // Left shift saturates if any bit (or the sign) would be lost.
            let back = self.shl(s).shr(s);
            if back != self || s >= 32 && self != Wide::ZERO {
                if self.is_neg() {
                    i32::MIN
                } else {
                    i32::MAX
                }
            } else {
                self.shl(s).to_i32_sat()
            }
        }
    }

    #[inline]
    fn one_shl(s: u32) -> Wide {
        if s < 32 {
            Wide { hi: 0, lo: 1 << s }
        } else {
            Wide {
                hi: 1 << (s - 32),
                lo: 0,
            }
        }
    }

    /// Unsigned comparison `self >= o` (both non-negative).
    #[inline]
    pub fn ge_unsigned(self, o: Wide) -> bool {
        self.hi > o.hi || (self.hi == o.hi && self.lo >= o.lo)
    }
}

/// `round(a·b · 2^-s)` (half up; exact left shift for `s <= 0`), saturated to `i32`.
/// Same bits as `Wide::mul_i32(a, b).round_shift_sat(s)` (tested), computed in `i64`.
#[inline(always)]
pub fn mul_shift(a: i32, b: i32, s: i32) -> i32 {
    round_shift_sat_i64(a as i64 * b as i64, s)
}

/// [`Wide::round_shift_sat`] computed in native 64-bit integers: the CPU's fast path, with
/// exactly the same bits as the 32-bit-word version that the WGSL kernels mirror (tested).
/// `|v| ≤ 2^62`, `s` in −63..=62.
#[inline(always)]
pub fn round_shift_sat_i64(v: i64, s: i32) -> i32 {
    let r = if s > 0 {
        // |v| ≤ 2^62 and the half ≤ 2^61: no overflow.
        (v + (1i64 << (s - 1))) >> s
    } else if s == 0 || v == 0 {
        v
    } else if s <= -63 || v.unsigned_abs() > (i64::MAX as u64) >> (-s) {
        if v < 0 {
            i64::MIN
        } else {
            i64::MAX
        }
    } else {
        v << (-s)
    };
    r.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// `floor(n · 2^k / d)` for non-negative wide `n`, `d > 0`, when the quotient is known to
/// fit 32 bits. Restoring long division on 32-bit words: 32 iterations, one per quotient bit.
pub fn div_shifted(n: u32, k: u32, d: Wide) -> u32 {
    debug_assert!(d != Wide::ZERO);
    // Quotient bits from high to low: q = Σ bit_i 2^i where bit_i = [n·2^k ≥ (q_hi + 2^i)·d].
    // Equivalent remainder form: r starts as the top part of n·2^k; we instead compare
    // d·2^i against the running remainder, all in Wide (values < 2^64 by the callers' bounds).
    let mut rem = Wide { hi: 0, lo: n }.shl(k);
    let mut q = 0u32;
    for i in (0..32).rev() {
        // d·2^i must fit 64 bits: callers keep d < 2^32 when i is large (see freq.rs).
        if d.bit_len_unsigned() + i > 64 {
            continue;
        }
        let t = d.shl(i);
        if rem.ge_unsigned(t) {
            rem = rem.sub(t);
            q |= 1 << i;
        }
    }
    q
}

/// Integer square root: `floor(sqrt(v))` for any `u32`, bit by bit.
pub fn isqrt(v: u32) -> u32 {
    let mut rem = v;
    let mut root = 0u32;
    let mut bit = 1u32 << 30;
    while bit > rem {
        bit >>= 2;
    }
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_i64(w: Wide) -> i64 {
        (((w.hi as u64) << 32) | w.lo as u64) as i64
    }
    fn from_i64(v: i64) -> Wide {
        Wide {
            hi: ((v as u64) >> 32) as u32,
            lo: v as u32,
        }
    }

    /// A small deterministic generator (tests must not depend on a platform RNG).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 32) as u32
        }
    }

    const EXTREMES: [i32; 9] = [0, 1, -1, 2, -2, i32::MAX, i32::MIN, i32::MAX - 1, i32::MIN + 1];

    #[test]
    fn i64_fast_path_matches_the_word_version() {
        let mut r = Lcg(7);
        let mut vals: Vec<i64> = vec![
            0,
            1,
            -1,
            2,
            -2,
            1 << 62,
            -(1 << 62),
            (1 << 62) - 1,
            i32::MAX as i64,
            i32::MIN as i64,
            1 << 31,
            -(1 << 31) - 1,
        ];
        vals.extend((0..300).map(|_| ((r.next() as u64) << 32 | r.next() as u64) as i64 >> (r.next() % 40 + 2)));
        vals.extend(
            EXTREMES
                .iter()
                .flat_map(|&a| EXTREMES.iter().map(move |&b| a as i64 * b as i64)),
        );
        for &v in &vals {
            for s in -63..=62 {
                assert_eq!(round_shift_sat_i64(v, s), from_i64(v).round_shift_sat(s), "{v} >> {s}");
            }
        }
        for &a in &EXTREMES {
            for &b in &EXTREMES {
                for s in [-40, -31, -1, 0, 1, 15, 16, 31, 32, 62] {
                    assert_eq!(
                        mul_shift(a, b, s),
                        Wide::mul_i32(a, b).round_shift_sat(s),
                        "{a}*{b}>>{s}"
                    );
                }
            }
        }
    }

    #[test]
    fn mul_matches_i64_on_extremes_and_random() {
        let mut r = Lcg(1);
        let mut vals: Vec<i32> = EXTREMES.to_vec();
        vals.extend((0..200).map(|_| r.next() as i32));
        vals.extend((0..50).map(|_| (r.next() >> 16) as i32 - 32768));
        for &a in &vals {
            for &b in &vals {
                assert_eq!(to_i64(Wide::mul_i32(a, b)), a as i64 * b as i64, "{a}*{b}");
                assert_eq!(
                    to_i64(mul_u32(a as u32, b as u32)) as u64,
                    a as u32 as u64 * b as u32 as u64
                );
            }
        }
    }

    #[test]
    fn add_sub_neg_shift_match_i64() {
        let mut r = Lcg(2);
        for _ in 0..20000 {
            let a = ((r.next() as u64) << 32 | r.next() as u64) as i64 >> (r.next() % 40);
            let b = ((r.next() as u64) << 32 | r.next() as u64) as i64 >> (r.next() % 40);
            let (wa, wb) = (from_i64(a), from_i64(b));
            assert_eq!(to_i64(wa.add(wb)), a.wrapping_add(b));
            assert_eq!(to_i64(wa.sub(wb)), a.wrapping_sub(b));
            assert_eq!(to_i64(wa.neg()), a.wrapping_neg());
            let s = r.next() % 64;
            assert_eq!(to_i64(wa.shr(s)), a >> s, "{a} >> {s}");
            assert_eq!(to_i64(wa.shl(s)), a.wrapping_shl(s), "{a} << {s}");
            assert_eq!(wa.to_i32_sat() as i64, a.clamp(i32::MIN as i64, i32::MAX as i64));
        }
    }

    #[test]
    fn round_shift_matches_i128() {
        let mut r = Lcg(3);
        let mut cases: Vec<i64> = vec![0, 1, -1, i64::MAX >> 2, i64::MIN >> 2, 3, -3, 1 << 40, -(1 << 40)];
        cases.extend((0..5000).map(|_| ((r.next() as u64) << 32 | r.next() as u64) as i64 >> (2 + r.next() % 60)));
        for &v in &cases {
            for s in -40..=62 {
                let exact: i128 = if s > 0 {
                    (v as i128 + (1i128 << (s - 1))) >> s
                } else {
                    (v as i128) << (-s)
                };
                let want = exact.clamp(i32::MIN as i128, i32::MAX as i128) as i32;
                assert_eq!(from_i64(v).round_shift_sat(s), want, "{v} shift {s}");
            }
        }
    }

    #[test]
    fn div_shifted_matches_u128() {
        let mut r = Lcg(4);
        for _ in 0..5000 {
            let d = ((r.next() as u64) << 8 | r.next() as u64 & 0xFF) >> (r.next() % 30) | 1;
            let n = r.next() >> (r.next() % 32);
            let k = r.next() % 32;
            let exact = ((n as u128) << k) / d as u128;
            if exact >> 32 != 0 {
                continue;
            }
            assert_eq!(div_shifted(n, k, from_i64(d as i64)) as u128, exact, "{n}<<{k}/{d}");
        }
    }

    #[test]
    fn isqrt_is_floor_sqrt() {
        let mut r = Lcg(5);
        let mut vals = vec![
            0u32,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            u32::MAX,
            u32::MAX - 1,
            1 << 30,
            (1 << 30) - 1,
        ];
        vals.extend((0..10000).map(|_| r.next()));
        for v in vals {
            let s = isqrt(v) as u64;
            assert!(s * s <= v as u64 && (s + 1) * (s + 1) > v as u64, "isqrt({v}) = {s}");
        }
    }
}
