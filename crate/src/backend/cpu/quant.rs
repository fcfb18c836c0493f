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

/// Quantises one row `z` (fixed point with `frac` fraction bits) in place into `q`, `a`,
/// `sum`; returns the row's exponent.
pub fn quantize_row(z: &[i32], frac: i32, q: &mut [i8], a: &mut [u16], sum: &mut [i32]) -> i32 {
    let m_all = z.iter().fold(0u32, |m, v| m.max(v.unsigned_abs()));
    // Smallest E with every block mantissa ≤ 4096 (E ≤ 21 since m < 2^32).
    let mut e = 0u32;
    while act_mant(m_all, e) > ACT_MANT_MAX {
        e += 1;
    }
    quantize_blocks(z, e, q, a, sum);
    e as i32 - 7 - frac
}

multiversion!(quantize_blocks(z: &[i32], e: u32, q: &mut [i8], a: &mut [u16], sum: &mut [i32]) {
    // q = round_half_up(num / den) with num = |v|·2^(7−e) (|v| when e ≥ 7; < 2^31 when e < 7,
    // as |v| ≤ mb ≤ 127·4096) and den = ab·2^(e−7) (≤ 4096·2^14 = 2^26, as e ≤ 21); then
    // |v| ≤ ab·127·2^(e−7), so q ≤ 127.
    //
    // By a multiplication in f64 (which vectorises; a u128 product per element did not, and
    // was 7 % of decoding many streams at once), made exact in integers: y = num·(1/den) + ½
    // is within 2^-40 of num/den + ½ (a few roundings of 2^-53 relative, on values < 2^8),
    // so floor(y) is the exact q or, only where num/den + ½ is an integer, one off it. The
    // remainder r = num − floor(y)·den (|r| < 2·den < 2^27: exact in i32 after a wrapping
    // u32 product, itself < 2^32) tells which: rounding half up means −den ≤ 2r < den.
    let sh = 7u32.saturating_sub(e);
    for (b, (blk, qb)) in z.chunks_exact(32).zip(q.chunks_exact_mut(32)).enumerate() {
        let mb = blk.iter().fold(0u32, |m, v| m.max(v.unsigned_abs()));
        let ab = act_mant(mb, e);
        a[b] = ab as u16;
        if ab == 0 {
            qb.fill(0);
            sum[b] = 0;
            continue;
        }
        let den = if e >= 7 { ab << (e - 7) } else { ab };
        let inv = 1.0 / den as f64;
        let mut s = 0i32;
        for (o, &v) in qb.iter_mut().zip(blk) {
            let num = v.unsigned_abs() << sh;
            // SAFETY: the value is in [0, 129) (see above): an i32, so the conversion needs
            // no saturation (`as` saturates, and kept the loop scalar).
            let mut qu = unsafe { (num as f64 * inv + 0.5).to_int_unchecked::<i32>() } as u32;
            let r2 = 2 * num.wrapping_sub(qu.wrapping_mul(den)) as i32;
            qu = qu + (r2 >= den as i32) as u32 - (r2 < -(den as i32)) as u32;
            let qv = if v < 0 { -(qu as i32) } else { qu as i32 };
            *o = qv as i8;
            s += qv;
        }
        sum[b] = s;
    }
});

/// Quantises `[tokens, width]`.
pub fn quantize(z: &[i32], width: usize, frac: i32) -> QAct {
    quantize_rows(z.len() / width, width, frac, |t, row| {
        row.copy_from_slice(&z[t * width..(t + 1) * width])
    })
}

/// Quantises `tokens` rows of `width`, row `t` written by `make(t, row)` into a buffer of the
/// thread: a step fused with the quantisation after it (RMSNorm, SiLU: `rmsnorm_quantize`,
/// `silu_mul_quantize` of the engine) makes each row in the same parallel loop, in cache,
/// instead of in a loop of its own with a whole matrix between the two.
pub fn quantize_rows(tokens: usize, width: usize, frac: i32, make: impl Fn(usize, &mut [i32]) + Sync + Send) -> QAct {
    let nb = width / 32;
    let mut out = QAct {
        tokens,
        width,
        q: vec![0; tokens * width],
        a: vec![0; tokens * nb],
        sum: vec![0; tokens * nb],
        exp: vec![0; tokens],
    };
    let one = |z: &mut Vec<i32>, (t, (((q, a), sum), exp)): QuantRow| {
        z.resize(width, 0);
        make(t, z);
        *exp = quantize_row(z, frac, q, a, sum);
    };
    #[cfg(feature = "parallel")]
    if tokens >= PAR_ROWS {
        // Rows are independent: in parallel for a batch (serial, they were 6 % of compression).
        out.q
            .par_chunks_mut(width)
            .zip(out.a.par_chunks_mut(nb))
            .zip(out.sum.par_chunks_mut(nb))
            .zip(out.exp.par_iter_mut())
            .enumerate()
            .for_each_init(Vec::new, one);
        return out;
    }
    let mut z = Vec::new();
    out.q
        .chunks_mut(width)
        .zip(out.a.chunks_mut(nb))
        .zip(out.sum.chunks_mut(nb))
        .zip(out.exp.iter_mut())
        .enumerate()
        .for_each(|r| one(&mut z, r));
    out
}

/// One row of [`quantize_rows`]: its index, and its `q`, `a`, `sum` and `exp` to fill.
type QuantRow<'a> = (usize, (((&'a mut [i8], &'a mut [u16]), &'a mut [i32]), &'a mut i32));

#[cfg(test)]
mod tests {
    use super::super::tests::rows;
    use super::*;
    use crate::tiny::Rng;
    // On wasm32 these run under `wasm-bindgen-test-runner` (Node): scripts/test.sh.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Checks `quantize_row`'s output for `z` against the exact rounding in i128; returns how
    /// many elements lay exactly half-way between two outputs.
    fn check_exact(z: &[i32]) -> usize {
        let nb = z.len() / 32;
        let (mut q, mut a, mut s) = (vec![0i8; z.len()], vec![0u16; nb], vec![0i32; nb]);
        let exp = quantize_row(z, 0, &mut q, &mut a, &mut s);
        let e = exp + 7; // frac = 0
        assert!(e >= 0);
        let mut halves = 0;
        for b in 0..nb {
            assert!(a[b] as u32 <= ACT_MANT_MAX);
            assert_eq!(s[b], q[32 * b..32 * b + 32].iter().map(|&x| x as i32).sum::<i32>());
            for i in 0..32 {
                let (zi, qi) = (z[32 * b + i] as i128, q[32 * b + i] as i128);
                assert!(qi.abs() <= 127);
                if a[b] == 0 {
                    assert_eq!(zi, 0);
                    continue;
                }
                // q = round(|z| / (a·2^(e−7))) half up, with the sign of z, computed exactly.
                let den = (a[b] as i128) << e; // times 2^-7
                let want = ((zi.abs() * 128 * 2 + den) / (2 * den)) * zi.signum();
                halves += ((zi.abs() * 128 * 2) % (2 * den) == den) as usize;
                assert_eq!(qi, want, "z {zi} a {} e {e}", a[b]);
            }
        }
        halves
    }

    #[test]
    fn quantize_is_exact_rounding_within_bounds() {
        let mut r = Rng(1);
        for z in rows(&mut r, 96) {
            check_exact(&z);
        }
    }

    /// The f64 quotient made exact: every row exponent (0–21), block maxima across each
    /// power of two, and elements exactly half-way between two outputs (where the f64 value
    /// may land either side of the integer), at both signs and the largest magnitudes.
    #[test]
    fn quantize_rounds_half_way_values_up_at_every_exponent() {
        let mut r = Rng(5);
        let mut halves = 0;
        for bits in 0..32u32 {
            for _ in 0..24 {
                // The row's largest magnitude, about 2^bits: it fixes the exponent.
                let top = if bits == 31 {
                    u32::MAX >> 1
                } else {
                    (1u32 << bits) + r.below(1 << bits) as u32
                };
                let mut z: Vec<i32> = (0..96).map(|_| (r.next_u64() as u32 % (top + 1)) as i32).collect();
                z[0] = top as i32;
                // Block 1: from its own maximum, the elements half-way between outputs.
                let mb = (r.next_u64() as u32 % (top + 1)).max(1);
                z[32] = mb as i32;
                let mut e = 0;
                while act_mant(top, e) > ACT_MANT_MAX {
                    e += 1;
                }
                let ab = act_mant(mb, e) as u64;
                let den = ab << e; // the divisor of 128·|z|
                for v in &mut z[33..64] {
                    let k = r.below(127);
                    let twice = (2 * k + 1) * den; // 256·|z| for |z| at k + ½ steps
                    if twice.is_multiple_of(256) && twice / 256 <= mb as u64 {
                        *v = (twice / 256) as i32;
                    }
                }
                for v in z.iter_mut() {
                    if r.below(2) == 0 {
                        *v = -*v;
                    }
                }
                halves += check_exact(&z);
            }
        }
        assert!(
            halves > 1000,
            "only {halves} half-way elements: the test lost its point"
        );
    }
}
