//! Activation quantisation: rows of fixed-point values into int8 blocks of 32 with a
//! per-block mantissa and a per-row exponent ([`QAct`]), the input of every matmul; the oracle
//! of `shaders/quantize.wgsl`.

use super::fixed::ACT_MANT_MAX;
#[cfg(feature = "parallel")]
use super::par::PAR_ROWS;

#[cfg(feature = "parallel")]
use rayon::prelude::*;

/// int8 activations in blocks of 32: value ≈ `q · a[block] · 2^exp[token]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QAct {
    pub tokens: usize,
    pub width: usize,
    /// `[tokens, width]`, |q| ≤ 127
    pub q: Vec<i8>,
    /// `[tokens, width/32]`, ≤ 4096
    pub a: Vec<u16>,
    /// `[tokens, width/32]`, Σ q over the block (|·| ≤ 4064)
    pub sum: Vec<i32>,
    /// `[tokens]`
    pub exp: Vec<i32>,
}

/// `ceil(m · 2^(7−e) / 127)`; callers ensure the result is what they want to test against 4096.
fn act_mant(m: u32, e: u32) -> u32 {
    if e >= 7 {
        // divisor 127·2^(e−7) < 2^31 for e ≤ 30; m + divisor − 1 < 2^32.
        let div = 127u32 << (e - 7).min(24);
        (m / div) + !m.is_multiple_of(div) as u32
    } else if m >= 1 << 24 {
        u32::MAX // certainly > 4096: m·2^(7−e)/127 ≥ 2^24·2/127
    } else {
        let num = m << (7 - e); // < 2^31
        num.div_ceil(127)
    }
}

/// `floor(num / den)` for `num < 2^31`, `1 ≤ den ≤ 2^28`, with `inv = ceil(2^64 / den)` (any
/// value when `den = 1`): `floor(num · inv / 2^64)` is exact, because the error
/// `num · (inv − 2^64/den) / 2^64 < 2^-33` is below the gap `1/den ≥ 2^-28` between `num/den`
/// and the next integer.
#[inline(always)]
fn div_by(num: u32, den: u32, inv: u64) -> u32 {
    if den == 1 {
        num
    } else {
        ((num as u128 * inv as u128) >> 64) as u32
    }
}

/// Quantises one row `z` (fixed point with `frac` fraction bits) in place into `q`, `a`,
/// `sum`; returns the row's exponent.
pub fn quantize_row(z: &[i32], frac: i32, q: &mut [i8], a: &mut [u16], sum: &mut [i32]) -> i32 {
    let mut m_all = 0u32;
    for &v in z {
        m_all = m_all.max(v.unsigned_abs());
    }
    // Smallest E with every block mantissa ≤ 4096 (E ≤ 21 since m < 2^32).
    let mut e = 0u32;
    while act_mant(m_all, e) > ACT_MANT_MAX {
        e += 1;
    }
    for (b, blk) in z.chunks_exact(32).enumerate() {
        let mb = blk.iter().fold(0u32, |m, v| m.max(v.unsigned_abs()));
        let ab = act_mant(mb, e);
        a[b] = ab as u16;
        let mut s = 0i32;
        // q = round(|v| / den), den = ab · 2^(e−7), by a multiplication with ceil(2^64/den)
        // instead of a division per element (see `div_by`).
        let den = if e >= 7 { ab << (e - 7) } else { ab };
        let inv = if den > 1 {
            (1u128 << 64).div_ceil(den as u128) as u64
        } else {
            0
        };
        for (i, &v) in blk.iter().enumerate() {
            let qv = if ab == 0 {
                0
            } else {
                // q = round(|v| / (ab · 2^(e−7))), exact: num < 2^31 (|v| ≤ mb ≤ 127·4096 when e < 7),
                // den ≤ 4096·2^14. |v| ≤ ab·127·2^(e−7) so q ≤ 127.
                let num = if e >= 7 {
                    v.unsigned_abs()
                } else {
                    v.unsigned_abs() << (7 - e)
                };
                let qu = div_by(num, den, inv);
                let r = num - qu * den;
                let qu = qu + (r >= den - r) as u32; // r ≥ den/2, no overflow
                if v < 0 {
                    -(qu as i32)
                } else {
                    qu as i32
                }
            };
            q[32 * b + i] = qv as i8;
            s += qv;
        }
        sum[b] = s;
    }
    e as i32 - 7 - frac
}

/// Quantises `[tokens, width]`.
pub fn quantize(z: &[i32], width: usize, frac: i32) -> QAct {
    let tokens = z.len() / width;
    let nb = width / 32;
    let mut out = QAct {
        tokens,
        width,
        q: vec![0; z.len()],
        a: vec![0; tokens * nb],
        sum: vec![0; tokens * nb],
        exp: vec![0; tokens],
    };
    let row = |(((q, a), sum), (exp, z)): QuantRow| *exp = quantize_row(z, frac, q, a, sum);
    #[cfg(feature = "parallel")]
    if tokens >= PAR_ROWS {
        // Rows are independent: in parallel for a batch (serial, they were 6 % of compression).
        out.q
            .par_chunks_mut(width)
            .zip(out.a.par_chunks_mut(nb))
            .zip(out.sum.par_chunks_mut(nb))
            .zip(out.exp.par_iter_mut().zip(z.par_chunks(width)))
            .for_each(row);
        return out;
    }
    out.q
        .chunks_mut(width)
        .zip(out.a.chunks_mut(nb))
        .zip(out.sum.chunks_mut(nb))
        .zip(out.exp.iter_mut().zip(z.chunks(width)))
        .for_each(row);
    out
}

/// One row of [`quantize`]: its `q`, `a`, `sum` and `exp` to fill, and its input.
type QuantRow<'a> = (((&'a mut [i8], &'a mut [u16]), &'a mut [i32]), (&'a mut i32, &'a [i32]));

#[cfg(test)]
mod tests {
    use super::super::tests::rows;
    use super::*;
    use crate::tiny::Rng;
    // On wasm32 these run under `wasm-bindgen-test-runner` (Node): scripts/test.sh.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn quantize_is_exact_rounding_within_bounds() {
        let mut r = Rng(1);
        for z in rows(&mut r, 96) {
            let (mut q, mut a, mut s) = (vec![0i8; 96], vec![0u16; 3], vec![0i32; 3]);
            let exp = quantize_row(&z, 0, &mut q, &mut a, &mut s);
            let e = exp + 7; // frac = 0
            assert!(e >= 0);
            for b in 0..3 {
                assert!(a[b] as u32 <= ACT_MANT_MAX);
                assert_eq!(s[b], q[32 * b..32 * b + 32].iter().map(|&x| x as i32).sum::<i32>());
                for i in 0..32 {
                    let (zi, qi) = (z[32 * b + i] as i128, q[32 * b + i] as i128);
                    assert!(qi.abs() <= 127);
                    if a[b] == 0 {
                        assert_eq!(zi, 0);
                        continue;
                    }
                    // q = round(|z| / (a·2^(e−7))) with the sign of z, computed exactly.
                    let den = (a[b] as i128) << e; // times 2^-7
                    let want = ((zi.abs() * 128 * 2 + den) / (2 * den)) * zi.signum();
                    assert_eq!(qi, want, "z {zi} a {} e {e}", a[b]);
                }
            }
        }
    }

    /// The division by a multiplication is exact over its whole domain: every power-of-two
    /// boundary of the divisor, random and extreme numerators.
    #[test]
    fn division_by_multiplication_is_exact() {
        let mut r = Rng(5);
        for sh in 0..=28 {
            for den in [
                1u32 << sh,
                (1 << sh) + 1,
                ((1u64 << sh) - 1).max(1) as u32,
                (r.next_u64() as u32 >> (32 - sh.max(1))).max(1),
            ] {
                let inv = if den > 1 {
                    (1u128 << 64).div_ceil(den as u128) as u64
                } else {
                    0
                };
                for num in [
                    0,
                    1,
                    den - 1,
                    den,
                    den.saturating_mul(127).min((1 << 31) - 1),
                    (1 << 31) - 1,
                    r.next_u64() as u32 >> 1,
                    (r.next_u64() as u32 >> 1) / den * den,
                ] {
                    assert_eq!(div_by(num, den, inv), num / den, "{num} / {den}");
                }
            }
        }
    }
}
